#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The logging policy of fanoutd(8), LOGGING, read from a simulated journal
# stream: JOURNAL_STREAM names the file fanoutd's stderr goes to, so every
# line carries its "<N>" syslog priority.  Errors that stop the daemon at
# err (3), failures at warning (4), state changes at notice (5), the rest at
# info (6) and debug (7); per-message lines only with -vv; what anyone can
# cause at will rate-limited.

load helpers

# journal_next: the next launch's log file is "the journal": create it and
# point JOURNAL_STREAM at it (st_dev and st_ino, as journald sets them).
journal_next() {
	local f=$LOGDIR/fanoutd.$((LAUNCHES + 1)).log

	: >"$f"
	JOURNAL_STREAM=$(stat -c '%d:%i' "$f")
	export JOURNAL_STREAM
}

# all_prefixed FILE: every line of FILE has a priority prefix.
all_prefixed() {
	! grep -vE '^<[0-7]>' "$1" ||
	    fail "lines without a priority prefix in $1:" "$(cat "$1")"
}

# count FILE ERE: how many lines of FILE match.
count() {
	grep -cE -- "$2" "$1" || true
}

# suppressed_sum FILE WHAT: the sum of the "WHAT: N similar messages
# suppressed" counts in FILE.
suppressed_sum() {
	sed -nE "s/^<[0-7]>$2: ([0-9]+) similar messages? suppressed\$/\\1/p" \
	    "$1" | awk '{ s += $1 } END { print s + 0 }'
}

@test "configuration errors and a failed startup are logged at err (<3>)" {
	local st=0 log=$T/direct.log

	printf 'workers = 0;\nno_such_setting = 1;\n' >"$CONF"
	: >"$log"
	JOURNAL_STREAM=$(stat -c '%d:%i' "$log") \
	    "$FANOUTD" -c "$CONF" 2>>"$log" || st=$?
	[ "$st" -eq 1 ] || fail "fanoutd exited $st, expected 1"
	assert_file_line "$log" "^<3>$CONF:1: workers: "
	assert_file_line "$log" "^<3>$CONF:2: no_such_setting: unknown setting\$"
	all_prefixed "$log"
	# On a terminal or in a file: the same text, without the prefix.
	run --separate-stderr "$FANOUTD" -c "$CONF"
	assert_status 1
	[[ $stderr == "$CONF:1: workers: "* ]] || fail "plain: $stderr"

	: >"$log"
	JOURNAL_STREAM=$(stat -c '%d:%i' "$log") \
	    "$FANOUTD" -c "$T/missing.conf" 2>>"$log" || st=$?
	assert_file_line "$log" "^<3>fanoutd: cannot read $T/missing.conf: "

	# A worker that cannot start: the daemon's startup fails, at err.
	write_config
	take_port $((BASE_PORT + 1))
	journal_next
	start_fanoutd_fails
	assert_file_line "$FANOUTD_LOG" \
	    "^<3>worker 1 \\(port $((BASE_PORT + 1))\\) failed to start: .*Address already in use"
	assert_file_line "$FANOUTD_LOG" '^<3>startup failed; stopping the workers$'
	all_prefixed "$FANOUTD_LOG"
	nothing_left "$(ms 3000)" "$TAKER_PID" "$TAKER_SUP"
}

@test "ready, an unexpected SIGKILL, the restart, shutdown: their priorities" {
	local victim newpid

	journal_next
	start_fanoutd
	wait_for "grep -qE '^<5>ready: 3/3 workers connected, control socket ' '$FANOUTD_LOG'" \
	    "$(ms 5000)"
	victim=$(worker_pid 1)
	kill -KILL "$victim"
	# The death is a warning; what fanoutd does about it, notices.
	wait_for "worker_is 1 up restarts 1" "$(ms 10000)"
	assert_file_line "$FANOUTD_LOG" \
	    "^<4>worker 1 \\(pid $victim, port $((BASE_PORT + 1))\\) killed by signal 9"
	# (Its link may be seen to go first: then it is reconnecting.)
	assert_file_line "$FANOUTD_LOG" \
	    "^<5>worker 1 \\(port $((BASE_PORT + 1))\\): (reconnecting|restarting) again in [0-9]+ ms\$"
	newpid=$(worker_pid 1)
	assert_file_line "$FANOUTD_LOG" "^<5>worker 1 restarted: pid $newpid\$"
	wait_for "grep -qE '^<5>worker 1 \\(pid $newpid, port [0-9]+\\) up\$' '$FANOUTD_LOG'" \
	    "$(ms 5000)"
	stop_fanoutd
	[ "$FANOUTD_EXIT" = "exited status=0" ] || fail "fanoutd: $FANOUTD_EXIT"
	assert_file_line "$FANOUTD_LOG" '^<6>received Terminated$'
	assert_file_line "$FANOUTD_LOG" '^<5>shutting down$'
	assert_file_line "$FANOUTD_LOG" '^<6>stopped$'
	# Workers that exit 0 when told to are no news at the default level.
	! grep -E '^<[0-6]>worker [0-9]+ .*exited with status 0' \
	    "$FANOUTD_LOG" || fail "a requested clean exit logged above debug"
	! grep -E '^<[0-2]>|^<7>' "$FANOUTD_LOG" ||
	    fail "unexpected priorities at the default level"
	all_prefixed "$FANOUTD_LOG"
}

# send_and_stop FLAG...: start fanoutd with these flags under the journal,
# send one message, stop; sets MSG_ID, the log is in $FANOUTD_LOG.
send_and_stop() {
	journal_next
	start_fanoutd "$@"
	run ctl send hello
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	stop_fanoutd
	all_prefixed "$FANOUTD_LOG"
}

@test "-v adds debug lines about events, -vv a line per message (<7>)" {
	local msg='message [0-9]+'

	send_and_stop
	! grep -E '^<7>' "$FANOUTD_LOG" || fail "debug lines without -v"

	send_and_stop -v
	assert_file_line "$FANOUTD_LOG" \
	    '^<7>worker 0 \(pid [0-9]+\): connecting -> up$'
	assert_file_line "$FANOUTD_LOG" '^<7>worker 2: connection accepted$'
	! grep -E "^<[0-7]>.*$msg" "$FANOUTD_LOG" ||
	    fail "per-message lines with -v" "$(grep -E "$msg" "$FANOUTD_LOG")"

	send_and_stop -vv
	# From each worker, and one from fanoutd for the broadcast.
	for i in 0 1 2; do
		assert_file_line "$FANOUTD_LOG" \
		    "^<7>worker $i \\(pid [0-9]+\\): message $MSG_ID, 5 bytes: \"hello\"\$"
	done
	assert_file_line "$FANOUTD_LOG" \
	    "^<7>message $MSG_ID, 5 bytes, 3 workers: 3 acked, 0 failed, 0 queued\$"
}

@test "the workers get the same verbosity as fanoutd" {
	local pid

	start_fanoutd -vv
	for pid in "${WORKER_PIDS[@]}"; do
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE ' -vv( |$)' ||
		    fail "worker $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
	done
	stop_fanoutd
	start_fanoutd -v
	for pid in "${WORKER_PIDS[@]}"; do
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE ' -v( |$)' ||
		    fail "worker $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
	done
}

@test "acks not in time: one notice per broadcast, rate-limited" {
	local stopped n s

	write_config ack_timeout_ms="$(ms 300)"
	journal_next
	start_fanoutd
	stopped=$(worker_pid 1)
	kill -STOP "$stopped"
	seq -f 'late %g' 1 15 >"$T/in"
	run ctl send - <"$T/in"
	kill -CONT "$stopped"
	[ "$(grep -cE '^message [0-9]+: delivered to 2/3 workers' <<<"$output")" -eq 15 ] ||
	    fail "expected 15 partial deliveries" "$(show_run)"
	stop_fanoutd
	n=$(count "$FANOUTD_LOG" \
	    "^<5>message [0-9]+: not acknowledged within $(ms 300) ms by 1 of 3 workers \\(worker 1\\); kept queued\$")
	s=$(suppressed_sum "$FANOUTD_LOG" 'acknowledgement timeouts')
	[ "$n" -ge 1 ] && [ "$n" -le 10 ] ||
	    fail "$n notice lines, expected 1 to 10" "$(cat "$FANOUTD_LOG")"
	[ $((n + s)) -eq 15 ] ||
	    fail "$n lines and $s suppressed, expected 15 in all" \
	    "$(cat "$FANOUTD_LOG")"
	# Nothing per worker and message above that.
	! grep -E '^<[0-7]>worker 1 .*message' "$FANOUTD_LOG" ||
	    fail "per-worker lines for the late acks"
}

@test "a flood of 1000 bad control requests: a bounded number of lines" {
	local i t0 t1 windows n s

	journal_next
	start_fanoutd
	t0=$(now_ms)
	for i in $(seq 1000); do
		"$CTL_RAW" -t "$(ms 5000)" "$SOCK" garbage >/dev/null ||
		    fail "ctl-raw garbage #$i failed"
	done
	t1=$(now_ms)
	alive "$FANOUTD_PID" || fail "fanoutd died"
	run ctl send after
	assert_status 0
	# At most 10 lines per 10 s window the flood lasted.
	windows=$(((t1 - t0) / 10000 + 1))
	n=$(count "$FANOUTD_LOG" \
	    '^<4>control client \(pid [0-9]+, uid [0-9]+\): unsupported protocol version; closing the connection$')
	[ "$n" -ge 10 ] && [ "$n" -le $((10 * windows)) ] ||
	    fail "$n lines for $windows window(s)" "$(head -n 40 "$FANOUTD_LOG")"
	# Once the window is over, the count of what was held back.
	wait_for "grep -qE '^<4>bad control requests: [0-9]+ similar messages suppressed\$' '$FANOUTD_LOG'" \
	    "$(ms 15000)"
	stop_fanoutd
	s=$(suppressed_sum "$FANOUTD_LOG" 'bad control requests')
	[ $((n + s)) -eq 1000 ] ||
	    fail "$n lines and $s suppressed, expected 1000 in all"
	[ "$(grep -cvE '^<[0-7]>(control client|bad control requests: )' "$FANOUTD_LOG")" -le 20 ] ||
	    fail "more lines than expected" "$(head -n 60 "$FANOUTD_LOG")"
}

@test "garbage on a worker's port: rate-limited in the worker too" {
	local n s

	journal_next
	start_fanoutd
	# Each connection gets a bad frame; the worker closes it.
	in_ns bash -c '
	    for i in $(seq 200); do
		exec 3<>/dev/tcp/127.0.0.1/'"$BASE_PORT"' || exit 1
		printf "GET / HTTP/1.0\r\n\r\n" >&3
		read -r -t 5 -u 3 || true
		exec 3<&-
	    done' || fail "cannot connect to the worker"
	run ctl send after
	assert_status 0
	stop_fanoutd
	n=$(count "$FANOUTD_LOG" \
	    '^<4>worker 0: bad frame: .*; closing the connection$')
	s=$(suppressed_sum "$FANOUTD_LOG" 'bad frames and connections')
	[ "$n" -ge 1 ] && [ "$n" -le 20 ] ||
	    fail "$n lines, expected 1 to 20" "$(head -n 40 "$FANOUTD_LOG")"
	[ $((n + s)) -eq 200 ] ||
	    fail "$n lines and $s suppressed, expected 200 in all" \
	    "$(cat "$FANOUTD_LOG")"
}
