#!/bin/sh
# SPDX-License-Identifier: MIT
# exec mode: reads the message, a number, writes a first stderr line of
# 1000 "e" then 2 MiB more on stderr and 2 MiB on stdout, appends the
# message id to OUT/noise.I (I: FANOUT_WORKER_INDEX) and exits with the
# number as its status.
#	exec-noise.sh OUT
out=$1
status=$(cat)
{
	head -c 1000 /dev/zero | tr '\0' e
	echo
	yes 'stderr noise from a handler' | head -c 2097152
} >&2
yes 'stdout noise from a handler' | head -c 2097152
echo "$FANOUT_MESSAGE_ID" >>"$out/noise.$FANOUT_WORKER_INDEX"
exit "$status"
