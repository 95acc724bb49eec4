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
