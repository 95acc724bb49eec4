#!/bin/sh
# SPDX-License-Identifier: MIT
# pipe mode, lines framing: the shell loop of fanout.conf(5), plus commands
# for the tests.  At start it appends one line on how it was started (pid,
# process group, environment, working directory, umask, signal masks) to
# OUT/start.I (I: FANOUT_WORKER_INDEX).  Then, for each message:
#	fail N TEXT	answers "N TEXT"
#	kill		SIGKILLs itself, unanswered
#	block		creates OUT/blocked.I, waits until OUT/release
#			exists, then as any message
#	hang		ignores SIGTERM, starts a child that does too, writes
#			"PID PGID CHILD" to OUT/hang.I, waits for the child
#	noise		writes 2 MiB on stderr, then as any message
#	garbage		answers "maybe", which is no answer
#	spew		answers with one line of 1 MiB
#	anything else	appended to OUT/msgs.I, answered "ok"
#	pipe-lines.sh OUT
out=$1
i=${FANOUT_WORKER_INDEX-unset}

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
    "cwd=$(pwd -P) umask=$(umask) sigblk=$blk sigign=$ign" >>"$out/start.$i"

while IFS= read -r line; do
	case $line in
	"fail "*)
		echo "${line#fail }"
		continue ;;
	kill)
		kill -KILL $$ ;;
	block)
		: >"$out/blocked.$i"
		while [ ! -e "$out/release" ]; do
			sleep 0.05
		done ;;
	hang)
		trap '' TERM
		sleep 1000 &
		echo "$$ $pgid $!" >"$out/hang.$i.tmp"
		mv "$out/hang.$i.tmp" "$out/hang.$i"
		wait
		continue ;;
	noise)
		yes 'stderr noise from a pipe handler' | head -c 2097152 >&2 ;;
	garbage)
		echo maybe
		continue ;;
	spew)
		head -c 1048576 /dev/zero | tr '\0' x
		echo
		continue ;;
	esac
	printf '%s\n' "$line" >>"$out/msgs.$i" || { echo 1 cannot write; continue; }
	echo ok
done
