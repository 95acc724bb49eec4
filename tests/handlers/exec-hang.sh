#!/bin/sh
# SPDX-License-Identifier: MIT
# exec mode, for handler_timeout_ms: starts two children in its process
# group, one of which ignores SIGTERM, writes "PID PGID CHILD CHILD" to
# OUT/hang.I (I: FANOUT_WORKER_INDEX) and waits for them (1000 s).  Only
# killing the whole group, SIGKILL included, stops all three.
#	exec-hang.sh OUT
out=$1
i=$FANOUT_WORKER_INDEX
cat >/dev/null
(trap '' TERM; exec sleep 1000) &
k1=$!
sleep 1000 &
k2=$!
read -r stat <"/proc/$$/stat"
# shellcheck disable=SC2086  # split on purpose: state ppid pgrp ...
set -- ${stat##*) }
echo "$$ $3 $k1 $k2" >"$out/hang.$i.tmp"
mv "$out/hang.$i.tmp" "$out/hang.$i"
wait
