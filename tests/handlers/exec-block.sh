#!/bin/sh
# SPDX-License-Identifier: MIT
# exec mode, for SIGTERM while a handler runs: writes its pid to
# OUT/started.I (I: FANOUT_WORKER_INDEX), waits until OUT/release exists,
# then writes the message id to OUT/done.I.
#	exec-block.sh OUT
out=$1
i=$FANOUT_WORKER_INDEX
cat >/dev/null
echo $$ >"$out/started.$i.tmp"
mv "$out/started.$i.tmp" "$out/started.$i"
while [ ! -e "$out/release" ]; do
	sleep 0.05
done
echo "$FANOUT_MESSAGE_ID" >"$out/done.$i"
