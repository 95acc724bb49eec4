#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Startup: failures are reported with the worker's index, port and reason,
# and leave nothing half started; one daemon per control socket; a stale
# socket file is replaced.

load helpers

# assert_reported INDEX REASON-ERE: fanoutd's log ($lines) has a line from
# fanoutd (not from a worker) naming worker INDEX and its port, and says
# why.
assert_reported() {
	local port=$((BASE_PORT + $1))

	grep -v '^fake-worker' "$FANOUTD_LOG" | grep -E "worker $1\\b" |
	    grep -q "$port" ||
	    fail "no line names worker $1 and port $port:" "$(cat "$FANOUTD_LOG")"
	grep -v '^fake-worker' "$FANOUTD_LOG" | grep -qE "$2" ||
	    fail "the reason /$2/ is not given:" "$(cat "$FANOUTD_LOG")"
}

@test "a worker's port already taken: exit 1 naming the worker and port" {
	take_port $((BASE_PORT + 1))
	start_fanoutd_fails
	assert_reported 1 'Address already in use'
	[ ! -e "$SOCK" ] || fail "left $SOCK behind"
	nothing_left "$(ms 3000)" "$TAKER_PID" "$TAKER_SUP"
}

@test "a worker failing before READY=1 (STATUS=, ERRNO=): reported, nothing left" {
	write_config "worker_path=\"$(worker_wrapper "2:--mode fail")\""
	start_fanoutd_fails
	assert_reported 2 'simulated failure|Address already in use'
	[ ! -e "$SOCK" ] || fail "left $SOCK behind"
	nothing_left "$(ms 3000)"
}

@test "a missing worker binary: exit 1 with the reason, nothing left" {
	write_config 'worker_path="/nonexistent/fanout-worker"'
	start_fanoutd_fails
	assert_line '/nonexistent/fanout-worker.*No such file or directory'
	[ ! -e "$SOCK" ] || fail "left $SOCK behind"
	nothing_left "$(ms 3000)"
}

@test "a worker binary that cannot be executed: exit 1, the reason" {
	printf '#!/bin/sh\nexit 0\n' >"$T/not-executable"
	chmod 644 "$T/not-executable"
	write_config "worker_path=\"$T/not-executable\""
	start_fanoutd_fails
	assert_line 'Permission denied'
	[ ! -e "$SOCK" ] || fail "left $SOCK behind"
	nothing_left "$(ms 3000)"
}

@test "a worker that never becomes ready: start_timeout_ms, exit 1" {
	local t0

	mkfifo "$T/never"
	write_config "worker_path=\"$(worker_wrapper "2:--ready-after $T/never")\"" \
	    start_timeout_ms="$(ms 500)"
	t0=$(now_ms)
	start_fanoutd_fails
	[ $(($(now_ms) - t0)) -ge 450 ] || fail "gave up before start_timeout_ms"
	assert_reported 2 '.'
	[ ! -e "$SOCK" ] || fail "left $SOCK behind"
	nothing_left "$(ms 3000)"
}

@test "a worker that drops fanoutd's first two links: tried again, it starts, no restart" {
	local pid

	write_config "worker_path=\"$(worker_wrapper "1:--close-first 2")\""
	start_fanoutd
	pid=$(worker_pid 1)
	[ "$pid" = "${WORKER_PIDS[1]}" ] ||
	    fail "worker 1 is pid $pid, was started as ${WORKER_PIDS[1]}"
	grep -v '^fake-worker' "$FANOUTD_LOG" |
	    grep -qE "worker 1 .*port $((BASE_PORT + 1)).*(closed by the worker|Connection reset by peer); connecting again \\(try 3 of 3\\)" ||
	    fail "no word of the second try:" "$(cat "$FANOUTD_LOG")"
	run ctl send after the retries
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	[ "$(worker_pid 1)" = "$pid" ] || fail "worker 1 was restarted"
}

@test "a worker that drops all three of fanoutd's links: the start-up fails, exit 1" {
	write_config "worker_path=\"$(worker_wrapper "1:--close-first 3")\""
	start_fanoutd_fails
	assert_reported 1 'link lost: (connection closed by the worker|Connection reset by peer)$'
	[ ! -e "$SOCK" ] || fail "left $SOCK behind"
	nothing_left "$(ms 3000)"
}

@test "a second fanoutd on the same control socket refuses to start" {
	local first first_workers

	start_fanoutd
	first=$FANOUTD_PID
	first_workers=("${WORKER_PIDS[@]}")
	write_config base_port=$((BASE_PORT + 100))
	start_fanoutd_fails
	assert_line "$SOCK"
	write_config base_port=$((BASE_PORT - 100))
	# The first one still owns the socket and serves.
	alive "$first" || fail "the first fanoutd died"
	run ctl send still here
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	[ "$(pids_of_output | sort)" = "$(printf '%s\n' "${first_workers[@]}" | sort)" ] ||
	    fail "another daemon's workers answered"
	nothing_left "$(ms 3000)" "$first" "${first_workers[@]}" "${SUPERVISORS[0]}"
}

@test "a stale socket file at control_socket is replaced" {
	need_python
	python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$SOCK"
	[ -S "$SOCK" ]
	start_fanoutd
	run ctl send fresh
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}

@test "the control socket is created mode 0660" {
	start_fanoutd
	[ "$(stat -c %a "$SOCK")" = 660 ] ||
	    fail "mode $(stat -c %a "$SOCK"), expected 660"
}

@test "a control socket in a missing directory: exit 1 naming it, nothing left" {
	write_config "control_socket=\"$T/missing/control.sock\""
	start_fanoutd_fails
	assert_line "$T/missing/control.sock"
	nothing_left "$(ms 3000)"
}

# worker_fds PID: the worker's descriptors above 2, as readlink shows them
# (not valgrind's own, which it keeps at the top of the range).
worker_fds() {
	local f n

	for f in /proc/"$1"/fd/*; do
		n=${f##*/}
		[ "$n" -gt 2 ] && [ "$n" -lt 1000 ] && readlink "$f"
	done
	true
}

@test "worker_start fork (the default): one pool process forks them all, then exits; each worker is fanoutd's child, with nothing of the pool's" {
	local i pid cmd

	write_config workers=5
	start_fanoutd
	[ "$(children_of "$FANOUTD_PID" | sort)" = "$(printf '%s\n' "${WORKER_PIDS[@]}" | sort)" ] ||
	    fail "fanoutd's children are not its workers:" \
	    "$(children_of "$FANOUTD_PID")" "workers: ${WORKER_PIDS[*]}"
	for i in 0 1 2 3 4; do
		pid=$(worker_pid "$i")
		cmd=" $(tr '\0' ' ' <"/proc/$pid/cmdline")"
		# (under valgrind the command line is valgrind's)
		[ "$FANOUT_VALGRIND" = 1 ] ||
		[[ $cmd == *" --index $i "* && $cmd == *" --port $((BASE_PORT + i)) "* &&
		    $cmd != *--pool* && $cmd != *--secret-fd* ]] ||
		    fail "worker $i (pid $pid) shows:$cmd"
		worker_fds "$pid" | grep -E 'memfd|pipe:' &&
		    fail "worker $i holds the pool's descriptors:" \
		    "$(worker_fds "$pid")"
	done
	run ctl send together
	assert_status 0
	assert_send 5 "$ACKED" "$ACKED" "$ACKED" "$ACKED" "$ACKED"
	# A restart runs worker_path on its own, as fanoutd always did.
	pid=$(worker_pid 3)
	kill -KILL "$pid"
	wait_for "worker_is 3 up restarts 1" "$(ms 10000)"
	cmd=" $(tr '\0' ' ' <"/proc/$(worker_pid 3)/cmdline")"
	[[ $cmd == *" --index 3 "*" --secret-fd "* ]] ||
	    fail "the restarted worker 3 runs:$cmd"
}

@test "worker_start exec: worker_path is run once for each worker, with its own --index and --secret-fd" {
	local i cmd

	write_config worker_start='"exec"'
	start_fanoutd
	for i in 0 1 2; do
		cmd=" $(tr '\0' ' ' <"/proc/$(worker_pid "$i")/cmdline")"
		[[ $cmd == *" --index $i --port $((BASE_PORT + i)) "*" --secret-fd "* ]] ||
		    fail "worker $i runs:$cmd"
	done
	run ctl send apart
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}
