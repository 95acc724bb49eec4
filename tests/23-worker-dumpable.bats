#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# A worker holds its link key in memory (issue 9): no other process of its
# uid may read that memory.  The worker makes itself undumpable first thing
# (prctl PR_SET_DUMPABLE 0), which the kernel shows by giving the process's
# /proc files to root and refusing /proc/PID/mem to the same uid.

load helpers

@test "a worker's memory is closed to its own uid: /proc/PID/mem refused" {
	local uid pid u as=()

	uid=$(id -u)
	if [ "$uid" -eq 0 ]; then
		# As in 10-user.bats: the daemon as nobody, so that "the
		# same uid" is not root, which may read anything.
		setpriv --reuid=nobody --regid=nogroup --clear-groups \
		    test -x "$FANOUTD" || skip "nobody cannot run $FANOUTD"
		AS_USER=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
		as=("${AS_USER[@]}")
		LOGDIR=$T/u
		mkdir "$LOGDIR"
		chown nobody:nogroup "$LOGDIR"
		SOCK=$LOGDIR/control.sock
		write_config
		uid=$(id -u nobody)
	fi
	start_fanoutd
	[ "${#WORKER_PIDS[@]}" -eq 3 ] || fail "workers: ${WORKER_PIDS[*]}"
	for pid in "${WORKER_PIDS[@]}"; do
		u=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
		[ "$u" -eq "$uid" ] || fail "worker $pid runs as $u, not $uid"
		# Undumpable: the kernel hands /proc/PID/* to root.
		[ "$(stat -c %u "/proc/$pid/mem")" -eq 0 ] ||
		    fail "worker $pid: /proc/$pid/mem owned by" \
		    "$(stat -c %u "/proc/$pid/mem"): still dumpable"
		run "${as[@]}" dd if="/proc/$pid/mem" of=/dev/null count=0
		[ "$status" -ne 0 ] ||
		    fail "uid $uid opened /proc/$pid/mem" "$(show_run)"
		[[ $output == *"Permission denied"* ]] || fail "$(show_run)"
	done
	# Still a working worker.
	run ctl send after the check
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}
