#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# pipe mode, binary framing: the Python loop of fanout.conf(5).  Appends
# "pid=PID" to OUT/start.I (I: FANOUT_WORKER_INDEX) at start; then reads
# each "ID LENGTH\n" header and exactly LENGTH bytes, appends
# "ID LENGTH SHA256" to OUT/bin.I and answers ok.  A header it cannot
# parse, or input ending inside a message, makes it complain on stderr and
# exit 1.
#	pipe-binary.py OUT
import hashlib
import os
import sys

out = sys.argv[1]
idx = os.environ.get("FANOUT_WORKER_INDEX", "unset")
inp = sys.stdin.buffer
with open(os.path.join(out, "start." + idx), "a") as f:
    print("pid=%d" % os.getpid(), file=f)
log = open(os.path.join(out, "bin." + idx), "a")
while header := inp.readline():
    try:
        msg_id, length = map(int, header.split())
    except ValueError:
        sys.exit("pipe-binary.py: bad header %r" % header[:100])
    data = inp.read(length)
    if len(data) != length:
        sys.exit("pipe-binary.py: message %d: %d of %d bytes"
                 % (msg_id, len(data), length))
    print(msg_id, length, hashlib.sha256(data).hexdigest(), file=log,
          flush=True)
    print("ok", flush=True)
