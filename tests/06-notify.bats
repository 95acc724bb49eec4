#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Readiness as systemd sees it, through a test NOTIFY_SOCKET: READY=1 only
# once every worker is connected, STATUS= kept current, STOPPING=1 at
# shutdown; workers' own READY=1 accepted only from the worker's pid.

load helpers

# notify_lines PATTERN: line numbers in $NOTIFY_LOG of fanoutd's
# notifications matching the ERE.
notify_lines() {
	awk -v pid="$FANOUTD_PID" -v re="$1" '$2 == pid {
		text = $0; sub(/^[^ ]+ [^ ]+ /, "", text)
		if (text ~ re) print NR
	    }' "$NOTIFY_LOG"
}

@test "READY=1 comes only after every worker is connected" {
	local fd

	mkfifo "$T/release"
	write_config "worker_path=\"$(worker_wrapper "2:--ready-after $T/release")\""
	launch_fanoutd_bg
	# Workers 0 and 1 are connected; worker 2 waits for the test.
	wait_for "[ -e '$T/release.waiting' ]" "$(ms 10000)"
	wait_for "[ \$(established $BASE_PORT $((BASE_PORT + 1))) -eq 2 ]" \
	    "$(ms 10000)"
	! grep -q 'READY=1' "$NOTIFY_LOG" ||
	    fail "READY=1 with worker 2 not ready:" "$(cat "$NOTIFY_LOG")"
	alive "$NW_PID" || fail "notify-wait returned early" "$(cat "$NW_ERRFILE")"
	# Read-write: never blocks, even should worker 2 be gone.
	exec {fd}<>"$T/release"
	finish_launch
	exec {fd}>&-
	[ "$NW_STATUS" -eq 0 ] || fail "fanoutd did not become ready: $NW_ERR"
	# At READY=1 every worker is up.
	run status_lines
	assert_status 0
	[[ ${lines[0]} =~ \ \ up\ 3/3\  ]] ||
	    fail "the daemon line does not say up 3/3" "$(show_run)"
	[ "$(printf '%s\n' "${lines[@]}" | grep -cE '^worker [0-2]  pid [0-9]+  port [0-9]+  up +acked 0  ')" -eq 3 ] ||
	    fail "not every worker up at READY=1" "$(show_run)"
	[ "$(established "$BASE_PORT" $((BASE_PORT + 1)) $((BASE_PORT + 2)))" -eq 3 ] ||
	    fail "not 3 connections at READY=1"
	[ -n "$(notify_lines '^STATUS=3/3 workers connected$')" ] ||
	    fail "no STATUS=3/3 workers connected" "$(cat "$NOTIFY_LOG")"
}

@test "STOPPING=1 at shutdown, after READY=1, before the exit" {
	local ready stopping exited

	start_fanoutd
	stop_fanoutd
	[ "$FANOUTD_EXIT" = "exited status=0" ]
	ready=$(notify_lines '^READY=1$' | head -n 1)
	stopping=$(notify_lines '^STOPPING=1$' | head -n 1)
	exited=$(grep -n ' - exited ' "$NOTIFY_LOG" | cut -d: -f1)
	[ -n "$ready" ] && [ -n "$stopping" ] && [ -n "$exited" ] &&
	    [ "$ready" -lt "$stopping" ] && [ "$stopping" -lt "$exited" ] ||
	    fail "expected READY=1, then STOPPING=1, then the exit:" \
	    "$(cat "$NOTIFY_LOG")"
	[ "$(notify_lines '^READY=1$' | wc -l)" -eq 1 ] ||
	    fail "READY=1 sent more than once" "$(cat "$NOTIFY_LOG")"
}

@test "STATUS= follows the workers: 2/3 while one restarts, 3/3 again" {
	local victim down up

	start_fanoutd
	victim=$(worker_pid 1)
	kill -KILL "$victim"
	wait_for "[ -n \"\$(notify_lines '^STATUS=2/3 workers connected$')\" ]" \
	    "$(ms 5000)"
	# Restarted after its backoff: 3/3 again, after the 2/3.
	wait_for "worker_is 1 up restarts 1" "$(ms 10000)"
	alive "$FANOUTD_PID" || fail "fanoutd died with its worker"
	[ "$(worker_pid 1)" != "$victim" ] || fail "worker 1 has its old pid"
	down=$(notify_lines '^STATUS=2/3 workers connected$' | head -n 1)
	up=$(notify_lines '^STATUS=3/3 workers connected$' | tail -n 1)
	[ -n "$up" ] && [ "$up" -gt "$down" ] ||
	    fail "no STATUS=3/3 after the 2/3:" "$(cat "$NOTIFY_LOG")"
	[ "$(notify_lines '^READY=1$' | wc -l)" -eq 1 ] ||
	    fail "READY=1 sent again on the restart" "$(cat "$NOTIFY_LOG")"
}

@test "a worker's READY=1 is accepted only from the worker's own pid" {
	write_config \
	    "worker_path=\"$(worker_wrapper "1:--ready-from-child")\"" \
	    start_timeout_ms="$(ms 1000)"
	start_fanoutd_fails
	assert_line 'worker 1'
	! grep -q 'READY=1' "$NOTIFY_LOG" || fail "fanoutd sent READY=1"
	[ ! -e "$SOCK" ] || fail "left $SOCK behind"
	nothing_left "$(ms 3000)"
}

@test "started by hand without NOTIFY_SOCKET it works the same" {
	local d st=0

	spawn in_ns "$FANOUTD" -c "$CONF" 2>"$T/fanoutd.direct.log"
	d=$BG_PID
	DAEMONS+=("$d")
	# No readiness signal to wait for: ask until all workers are up.
	wait_for "ctl status 2>/dev/null | grep -q '^fanoutd .*  up 3/3  '" \
	    "$(ms 10000)"
	run ctl send by hand
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	kill -TERM "$d"
	wait_pid_gone "$d" "$(ms 10000)"
	wait "$d" || st=$?
	[ "$st" -eq 0 ] || fail "fanoutd exited $st" "$(cat "$T/fanoutd.direct.log")"
	nothing_left "$(ms 3000)"
}

@test "logging: <N> priority prefixes when stderr is the journal, plain otherwise" {
	local log=$T/journal.log st=0

	write_config worker_path='"/nonexistent/fanout-worker"'
	: >"$log"
	# journald's way of saying "your stderr is me": device and inode.
	JOURNAL_STREAM=$(stat -c '%d:%i' "$log") \
	    "$FANOUTD" -c "$CONF" 2>>"$log" || st=$?
	[ "$st" -eq 1 ] || fail "fanoutd exited $st, expected 1"
	grep -qxE "<3>$CONF:[0-9]+: worker_path: /nonexistent/fanout-worker: No such file or directory" \
	    "$log" || fail "no <3> line in the journal stream:" "$(cat "$log")"
	# Another stream's id: plain lines with the program name.
	run --separate-stderr env JOURNAL_STREAM=1:1 "$FANOUTD" -c "$CONF"
	assert_status 1
	[[ $stderr =~ ^$CONF:[0-9]+:\ worker_path:\ /nonexistent/fanout-worker:\ No\ such\ file\ or\ directory$ ]] ||
	    fail "unexpected plain log: $stderr"
}
