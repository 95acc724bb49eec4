#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Misbehaving control clients for 20-ctl-fair.bats.

    ctl-clients.py hold SOCK N [SLOW]   N connections at once, plus SLOW that
                                        send a send request one byte every
                                        100 ms; "ready" on stdout, then hold
                                        them until killed (or 120 s)
    ctl-clients.py fill SOCK            connections one by one, each proven
                                        by a status round trip, until one is
                                        refused; "held N", then hold them
    ctl-clients.py idle SOCK            an idle client, a slow one and one
                                        idle after a reply: when each was
                                        closed, "NAME MS" ("NAME open" if
                                        not within 30 s)
    ctl-clients.py noread SOCK N        N clients that pipeline status
                                        requests and never read: "cut K/N"
                                        once each is closed or after 30 s

The protocol version comes from FANOUT_PROTO in the environment.
"""
import os
import resource
import select
import socket
import struct
import sys
import time

V = int(os.environ["FANOUT_PROTO"])
CTL_STATUS = 17
CTL_END = 19
CTL_SEND = 16
STATUS = struct.pack(">BBHIQ", V, CTL_STATUS, 0, 0, 1)
# A slowloris: the header of a 1000-byte send request, then its bytes one
# by one.
SLOW = struct.pack(">BBHIQ", V, CTL_SEND, 0, 1000, 1) + b"\0" * 1000


def more_files(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64 if hard == resource.RLIM_INFINITY else min(hard, n + 64)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def connect(path, blocking=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(blocking)
    try:
        s.connect(path)
    except (BlockingIOError, InterruptedError):
        pass
    return s


def gone(s):
    """The daemon closed s (EOF or reset), without reading what it sent."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def hold(path, n, slow):
    more_files(n + slow)
    held = []
    for _ in range(n):
        try:
            held.append(connect(path))
        except OSError:
            pass
    slows = []
    for _ in range(slow):
        try:
            slows.append(connect(path))
        except OSError:
            pass
    print("ready %d %d" % (len(held), len(slows)), flush=True)
    end = time.monotonic() + 120
    i = 0
    while time.monotonic() < end:
        for s in slows:
            try:
                s.send(SLOW[i:i + 1])
            except OSError:
                pass
        i += 1
        time.sleep(0.1)


def read_end(s):
    data = b""
    while True:
        while len(data) >= 16:
            length = struct.unpack(">I", data[4:8])[0]
            if len(data) < 16 + length:
                break
            frame, data = data[:16 + length], data[16 + length:]
            if frame[1] == CTL_END:
                return struct.unpack(">I", frame[16:20])[0]
        chunk = s.recv(65536)
        if not chunk:
            return None
        data += chunk


def fill(path):
    more_files(5000)
    held = []
    while len(held) < 5000:
        s = connect(path, blocking=True)
        s.settimeout(30)
        try:
            # A refused one may be closed before the request is written.
            s.sendall(STATUS)
        except OSError:
            pass
        try:
            result = read_end(s)
        except OSError:
            result = None
        if result != 0:
            s.close()
            break
        held.append(s)
    print("held %d" % len(held), flush=True)
    time.sleep(120)


def idle(path):
    start = time.monotonic()
    conns = {"idle": connect(path, True), "slow": connect(path, True),
             "replied": connect(path, True)}
    conns["replied"].sendall(STATUS)
    conns["replied"].settimeout(30)
    if read_end(conns["replied"]) != 0:
        sys.exit("no reply to a status request")
    for s in conns.values():
        s.setblocking(False)
    closed = {}
    i = 0
    while len(closed) < len(conns) and time.monotonic() < start + 30:
        try:
            conns["slow"].send(SLOW[i:i + 1])
        except OSError:
            pass
        i += 1
        for name, s in conns.items():
            if name not in closed and gone(s):
                closed[name] = int((time.monotonic() - start) * 1000)
        time.sleep(0.02)
    for name in conns:
        print("%s %s" % (name, closed.get(name, "open")))


def noread(path, n):
    more_files(n)
    conns = [connect(path, True) for _ in range(n)]
    for s in conns:
        s.setblocking(False)
    burst = STATUS * 256
    cut = set()
    end = time.monotonic() + 30
    while len(cut) < n and time.monotonic() < end:
        busy = False
        for k, s in enumerate(conns):
            if k in cut:
                continue
            try:
                s.send(burst)
                busy = True
            except BlockingIOError:
                pass
            except OSError:
                cut.add(k)
                continue
            if gone(s):
                cut.add(k)
        if not busy:
            time.sleep(0.02)
    print("cut %d/%d" % (len(cut), n), flush=True)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    what, path = sys.argv[1], sys.argv[2]
    if what == "hold":
        hold(path, int(sys.argv[3]),
             int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    elif what == "fill":
        fill(path)
    elif what == "idle":
        idle(path)
    elif what == "noread":
        noread(path, int(sys.argv[3]))
    else:
        sys.exit(__doc__)


main()
