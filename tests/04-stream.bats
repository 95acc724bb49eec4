#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# `fanoutctl send -`: one message per stdin line, pipelined over one
# connection, one result line each; two such senders at once.

load helpers

# lines_file FILE N TAG: N numbered lines "TAG line I".
lines_file() {
	local i

	for ((i = 1; i <= $2; i++)); do
		echo "$3 line $i"
	done >"$1"
}

# check_stream FILE N: FILE holds N lines "message ID: delivered to 3/3
# workers" with distinct, growing ids.
check_stream() {
	local n

	n=$(grep -cE '^message [0-9]+: delivered to 3/3 workers$' "$1") || true
	[ "$n" -eq "$2" ] && [ "$(wc -l <"$1")" -eq "$2" ] ||
	    fail "$1: expected $2 result lines, $n good:" "$(head -n 20 "$1")"
	awk '{ id = $2 + 0; if (NR > 1 && id <= prev) exit 1; prev = id }' \
	    "$1" || fail "$1: message ids do not grow"
}

@test "send - : one result line per input line, all delivered" {
	local i

	start_fanoutd -vv
	lines_file "$T/in" 5 stream
	run --separate-stderr ctl send - <"$T/in"
	assert_status 0
	printf '%s\n' "${lines[@]}" >"$T/out"
	check_stream "$T/out" 5
	# The summary, on stderr.
	[[ $stderr =~ ^fanoutctl:\ 5\ messages:\ 5\ to\ all\ workers,\ 0\ partial,\ 0\ refused\ \([0-9]+\ msg/s\)$ ]] ||
	    fail "unexpected summary: $stderr"
	for i in 1 5; do
		assert_file_line "$FANOUTD_LOG" \
		    "worker 2 \\(pid [0-9]+\\): message [0-9]+, 13 bytes: \"stream line $i\""
	done
}

@test "send - --json: one JSON object per message" {
	need_python
	start_fanoutd
	lines_file "$T/in" 50 json
	run --separate-stderr ctl --json send - <"$T/in"
	assert_status 0
	[ "${#lines[@]}" -eq 50 ] || fail "expected 50 lines" "$(show_run)"
	# Only the workers that did not ack are listed: none here.
	json_check 'o["format"] == 1 and o["result"] == "ok" and o["workers_acked"] == 3 and o["workers"] == []'
	printf '%s\n' "$output" | python3 -c '
import json, sys
objs = [json.loads(l) for l in sys.stdin]
ids = [o["message_id"] for o in objs]
reqs = [o["request"] for o in objs]
assert ids == sorted(set(ids)), ids
assert len(set(reqs)) == 50, reqs
' || fail "message ids or request ids not distinct and in order"
}

@test "2 concurrent senders x 500 messages: every one acked by every worker" {
	local a b sa=0 sb=0 i

	start_fanoutd -vv
	lines_file "$T/in.a" 500 alpha
	lines_file "$T/in.b" 500 beta
	spawn ctl send - <"$T/in.a" >"$T/out.a" 2>"$T/err.a"
	a=$BG_PID
	spawn ctl send - <"$T/in.b" >"$T/out.b" 2>"$T/err.b"
	b=$BG_PID
	wait_pid_gone "$a" "$b" "$(ms 60000)" ||
	    fail "the senders did not finish"
	wait "$a" || sa=$?
	wait "$b" || sb=$?
	[ "$sa" -eq 0 ] && [ "$sb" -eq 0 ] ||
	    fail "sender exit status: $sa and $sb" "$(cat "$T/err.a" "$T/err.b")"
	check_stream "$T/out.a" 500
	check_stream "$T/out.b" 500
	# 1000 different messages, none reported twice.
	[ "$(cat "$T/out.a" "$T/out.b" | awk '{print $2}' | sort -u | wc -l)" -eq 1000 ] ||
	    fail "message ids are not unique across the two senders"
	run status_lines
	assert_status 0
	[[ ${lines[0]} =~ \ \ accepted\ 1000$ ]] ||
	    fail "fanoutd did not accept 1000" "$(show_run)"
	for i in 0 1 2; do
		[[ ${lines[i + 1]} =~ ^worker\ $i\ .*\ \ up\ +acked\ 1000\ \ queued\ 0\ \ bytes\ 0\  ]] ||
		    fail "worker $i did not ack 1000, or has some queued" \
		    "$(show_run)"
		# Each handled once: 1000 distinct ids.
		[ "$(grep -E "worker $i \(pid [0-9]+\): message [0-9]+, [0-9]+ bytes: \"(alpha|beta) line" "$FANOUTD_LOG" |
		    sed -E 's/.*: message ([0-9]+),.*/\1/' | sort -u | wc -l)" -eq 1000 ] ||
		    fail "worker $i did not log 1000 messages"
	done
}

@test "send - with a 1 MiB line: large messages go through whole" {
	write_config max_message_bytes=2097152
	start_fanoutd -vv
	head -c 1048576 /dev/zero | tr '\0' 'y' >"$T/in"
	echo >>"$T/in"
	echo small >>"$T/in"
	run --separate-stderr ctl send - <"$T/in"
	assert_status 0
	printf '%s\n' "${lines[@]}" >"$T/out"
	check_stream "$T/out" 2
	assert_file_line "$FANOUTD_LOG" \
	    "worker 0 \\(pid [0-9]+\\): message [0-9]+, 1048576 bytes: \"y{32}\"\\.\\.\\.\$"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 2 \\(pid [0-9]+\\): message [0-9]+, 5 bytes: \"small\"\$"
}

@test "send - with an oversized line: clear error, the stream ends, exit 3" {
	write_config max_message_bytes=10
	start_fanoutd
	printf '%s\n' short "this line is too long" after >"$T/in"
	run --separate-stderr ctl send - <"$T/in"
	assert_status 3
	[[ $stderr == *"fanoutctl: line 2: message of 21 bytes refused: larger than max_message_bytes (10)"* ]] ||
	    fail "no clear error" "stderr: $stderr"
	[[ $stderr =~ fanoutctl:\ 2\ messages:\ 1\ to\ all\ workers,\ 0\ partial,\ 1\ refused\ \([0-9]+\ msg/s\)$ ]] ||
	    fail "unexpected summary" "stderr: $stderr"
	[ "${#lines[@]}" -eq 1 ] || fail "expected 1 result line" "$(show_run)"
	printf '%s\n' "${lines[@]}" >"$T/out"
	check_stream "$T/out" 1
	[ "$(daemon_field accepted)" = 1 ] ||
	    fail "fanoutd accepted $(daemon_field accepted), not 1"
	run ctl send fine
	assert_status 0
}

@test "send - : each line goes out as soon as it is complete, not in batches" {
	local c

	start_fanoutd
	mkfifo "$T/in"
	# The writer end stays open between lines, as with tail -f (opened
	# read-write, so that neither side waits for the other to open).
	exec {w}<>"$T/in"
	spawn ctl send - <"$T/in" >"$T/out" 2>"$T/err" {w}>&-
	c=$BG_PID
	echo first >&"$w"
	# Answered while the input is still open and nothing else has come.
	wait_for "grep -qE '^message [0-9]+: delivered to 3/3 workers$' '$T/out'" \
	    "$(ms 5000)"
	echo second >&"$w"
	exec {w}>&-
	wait_pid_gone "$c" "$(ms 5000)"
	wait "$c" || fail "fanoutctl send - exited $?" "$(cat "$T/out" "$T/err")"
	check_stream "$T/out" 2
}

@test "send --window N --stats -: N in flight, latency in the summary" {
	start_fanoutd
	lines_file "$T/in" 20 win
	run --separate-stderr ctl send --window 1 --stats - <"$T/in"
	assert_status 0
	printf '%s\n' "${lines[@]}" >"$T/out"
	check_stream "$T/out" 20
	[[ $stderr =~ ^fanoutctl:\ 20\ messages:\ 20\ to\ all\ workers,\ 0\ partial,\ 0\ refused\ \([0-9]+\ msg/s\)\;\ [0-9.]+\ s,\ window\ 1\;\ latency\ p50\ [0-9.]+\ ms,\ p99\ [0-9.]+\ ms,\ max\ [0-9.]+\ ms$ ]] ||
	    fail "unexpected --stats line: $stderr"
	run ctl send --window 1025 -
	assert_status 2
	assert_line 'window: must be between 1 and 1024'
	run ctl send --stats hello
	assert_status 2
	assert_line 'go with send -'
}
