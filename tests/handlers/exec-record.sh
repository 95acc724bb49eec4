#!/bin/sh
# SPDX-License-Identifier: MIT
# exec mode: appends the message (its stdin) and a newline to OUT/msgs.I
# (I: FANOUT_WORKER_INDEX), and one line on how it was started to
# OUT/env.I: its environment, working directory, process group, umask and
# signal masks.  With STATUS: says REASON, then a second line, on stderr
# and exits STATUS.
#	exec-record.sh OUT [STATUS [REASON]]
out=$1 status=${2:-0} reason=${3:-}
i=${FANOUT_WORKER_INDEX-unset}
{ cat; echo; } >>"$out/msgs.$i"

read -r stat <"/proc/$$/stat"
# shellcheck disable=SC2086  # split on purpose: state ppid pgrp ...
set -- ${stat##*) }
pgid=$3
blk=unknown ign=unknown
while read -r k v; do
	case $k in
	SigBlk:) blk=$v ;;
	SigIgn:) ign=$v ;;
	esac
done <"/proc/$$/status"
echo "pid=$$ pgid=$pgid index=$i port=${FANOUT_WORKER_PORT-unset}" \
    "id=${FANOUT_MESSAGE_ID-unset} notify=${NOTIFY_SOCKET-unset}" \
    "cwd=$(pwd -P) umask=$(umask) sigblk=$blk sigign=$ign" >>"$out/env.$i"

if [ "$status" -ne 0 ]; then
	echo "$reason" >&2
	echo "this second line is not part of the reason" >&2
fi
exit "$status"
