#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# pipe mode, lines framing: appends its pid to OUT/start.I (I:
# FANOUT_WORKER_INDEX) at start, then appends each message to OUT/msgs.I
# and answers ok, until the message "quit": then it waits (5 s at most)
# until the worker has written more after it, and exits 0 without
# answering, leaving at least one more message in flight.
#	pipe-quit.py OUT
import os
import select
import sys

out = sys.argv[1]
idx = os.environ.get("FANOUT_WORKER_INDEX", "unset")
with open(os.path.join(out, "start." + idx), "a") as f:
    print(os.getpid(), file=f)
log = open(os.path.join(out, "msgs." + idx), "ab")
buf = b""
while True:
    nl = buf.find(b"\n")
    if nl < 0:
        data = os.read(0, 65536)
        if not data:
            break
        buf += data
        continue
    line, buf = buf[:nl], buf[nl + 1:]
    if line == b"quit":
        if not buf:
            select.select([0], [], [], 5)
        sys.exit(0)
    log.write(line + b"\n")
    log.flush()
    sys.stdout.write("ok\n")
    sys.stdout.flush()
