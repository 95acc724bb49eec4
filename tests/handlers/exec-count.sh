#!/bin/sh
# SPDX-License-Identifier: MIT
# exec mode: keeps the message (its stdin) in OUT/in.I (I:
# FANOUT_WORKER_INDEX) and appends "MESSAGE_ID BYTES SHA256" to
# OUT/count.I; for large and binary messages.
#	exec-count.sh OUT
out=$1
i=$FANOUT_WORKER_INDEX
cat >"$out/in.$i" || exit 1
n=$(wc -c <"$out/in.$i")
sum=$(sha256sum <"$out/in.$i")
echo "$FANOUT_MESSAGE_ID $n ${sum%% *}" >>"$out/count.$i"
