#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A stranger on a worker's port, for 18-auth.bats: what someone who can
reach the port but does not have the key might send.

    stranger.py PORT MODE [ARG]

MODE:
    nothing     connect and send nothing
    garbage     bytes that are not a frame
    data        100 MSG_DATA frames "INJECTED-n", as if it were fanoutd
    wrong       a hello, then a made-up proof, then MSG_DATA frames
    reflect     a hello, then the worker's own proof sent back as the
                daemon's, then MSG_DATA frames
    replay FILE the bytes in FILE (a real fanoutd's side of a link,
                recorded), then MSG_DATA frames
    big N       a MSG_DATA header announcing N bytes, then N - 1 of them,
                then wait for the worker to close the connection

    stranger.py swarm K OUT PORT...
keeps K idle connections open to each PORT, connecting again as soon as
one is closed (or refused), until SIGTERM; then writes "CONNECTS BYTES"
to OUT: connections made, bytes received on all of them.

    stranger.py relay LISTEN TARGET FILE
listens on LISTEN (prints "listening" once it does), relays each
connection to TARGET and back, and records what the first connection
sent towards TARGET in FILE: a real exchange, for replay.  Until SIGTERM.

Otherwise it reads what the worker sends until the worker closes the
connection, or for --hold seconds (default 10), and prints one line:
    closed|open BYTES TYPES
TYPES: the frame types received, comma separated ("-" for none);
"garbage" if the bytes were not frames.  Exit 0.
The frame version is $FANOUT_PROTO.
"""
import os
import selectors
import signal
import socket
import struct
import sys
import time

VERSION = int(os.environ.get("FANOUT_PROTO", "4"))
MSG_DATA, MSG_AUTH_HELLO, MSG_AUTH_CHALLENGE, MSG_AUTH_PROOF = 1, 3, 4, 5


def frame(ftype, payload, fid=0):
    return struct.pack(">BBHIQ", VERSION, ftype, 0, len(payload), fid) + payload


def injected(n=100):
    return b"".join(frame(MSG_DATA, b"INJECTED-%d" % i, 10**9 + i)
                    for i in range(n))


def send(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass  # closed on us: what the worker should do


def recv_exact(s, n, deadline):
    buf = b""
    while len(buf) < n:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            b = s.recv(n - len(buf))
        except (socket.timeout, OSError):
            return buf
        if not b:
            return buf
        buf += b
    return buf


def swarm(k, out, ports):
    sel = selectors.DefaultSelector()
    stats = {"connects": 0, "bytes": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

    def connect(port):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_READ, port)
        stats["connects"] += 1

    for p in ports:
        for _ in range(k):
            connect(p)
    while not stop:
        for key, _ in sel.select(timeout=0.2):
            s, port = key.fileobj, key.data
            try:
                b = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                b = b""
            if b:
                stats["bytes"] += len(b)
                continue
            sel.unregister(s)
            s.close()
            time.sleep(0.01)
            connect(port)
    with open(out, "w") as f:
        f.write("%d %d\n" % (stats["connects"], stats["bytes"]))


def relay(listen, target, record):
    sel = selectors.DefaultSelector()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen))
    ls.listen(8)
    sel.register(ls, selectors.EVENT_READ, None)
    print("listening", flush=True)
    rec = open(record, "wb")
    first = None
    while not stop:
        for key, _ in sel.select(timeout=0.2):
            if key.data is None:
                c, _ = ls.accept()
                t = socket.create_connection(("127.0.0.1", target))
                sel.register(c, selectors.EVENT_READ, (t, c))
                sel.register(t, selectors.EVENT_READ, (c, None))
                if first is None:
                    first = c
                continue
            src, (dst, tag) = key.fileobj, key.data
            try:
                b = src.recv(65536)
            except OSError:
                b = b""
            if not b:
                for x in (src, dst):
                    try:
                        sel.unregister(x)
                    except (KeyError, ValueError):
                        pass
                    x.close()
                continue
            if src is first:
                rec.write(b)
                rec.flush()
            dst.sendall(b)


def main():
    args = sys.argv[1:]
    if args and args[0] == "relay":
        relay(int(args[1]), int(args[2]), args[3])
        return
    if args and args[0] == "swarm":
        swarm(int(args[1]), args[2], [int(p) for p in args[3:]])
        return
    hold = 10.0
    if args and args[0] == "--hold":
        hold = float(args[1])
        args = args[2:]
    port, mode = int(args[0]), args[1]
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    got = b""
    deadline = time.monotonic() + hold
    if mode == "nothing":
        pass
    elif mode == "garbage":
        send(s, b"GET / HTTP/1.0\r\n\r\n" + os.urandom(4000))
    elif mode == "data":
        send(s, injected())
    elif mode in ("wrong", "reflect"):
        send(s, frame(MSG_AUTH_HELLO, os.urandom(32)))
        got = recv_exact(s, 16 + 64, deadline)
        if mode == "wrong":
            proof = os.urandom(32)
        else:
            proof = got[16 + 32:16 + 64].ljust(32, b"\0")
        send(s, frame(MSG_AUTH_PROOF, proof) + injected())
    elif mode == "replay":
        with open(args[2], "rb") as f:
            send(s, f.read())
        send(s, injected())
    elif mode == "big":
        n = int(args[2])
        send(s, struct.pack(">BBHIQ", VERSION, MSG_DATA, 0, n, 10**9))
        chunk = b"x" * 65536
        left = n - 1
        try:
            while left > 0:
                s.sendall(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
        except OSError:
            pass
        print("sent %d" % (n - 1 - left), flush=True)
    else:
        sys.exit("unknown mode " + mode)
    closed = False
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True
            break
        if not b:
            closed = True
            break
        got += b
    types, off = [], 0
    while off + 16 <= len(got):
        v, t, _, ln, _ = struct.unpack(">BBHIQ", got[off:off + 16])
        if v != VERSION:
            types = ["garbage"]
            break
        types.append(str(t))
        off += 16 + ln
    print("%s %d %s" % ("closed" if closed else "open", len(got),
                        ",".join(types) or "-"), flush=True)


if __name__ == "__main__":
    main()
