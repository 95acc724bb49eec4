#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The basic path: fanoutd starts its workers, `fanoutctl send` reaches every
# one of them and each acknowledges; `status`; JSON output.

load helpers

@test "send: every worker acks, one line each, 'delivered to 3/3 workers'" {
	local i pid

	start_fanoutd -vv
	run --separate-stderr ctl send hello world
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	[ -z "$stderr" ] || fail "stderr: $stderr"
	[ "$(pids_of_output | sort)" = "$(printf '%s\n' "${WORKER_PIDS[@]}" | sort)" ] ||
	    fail "the pids shown are not fanoutd's children (${WORKER_PIDS[*]})" \
	    "$(show_run)"
	# With -vv each worker logged the message (at debug level, with its
	# pid) before it acknowledged it.
	for i in 0 1 2; do
		pid=$(pids_of_output | sed -n "$((i + 1))p")
		assert_file_line "$FANOUTD_LOG" \
		    "worker $i \\(pid $pid\\): message $MSG_ID, 11 bytes: \"hello world\"\$"
	done
}

@test "without -v the workers log nothing per message" {
	start_fanoutd
	run ctl send quiet please
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	run ctl send twice
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	! grep -E 'message [0-9]+|quiet please' "$FANOUTD_LOG" ||
	    fail "a worker logged a message without -v" "$(cat "$FANOUTD_LOG")"
}

@test "the workers are fanout-worker --index I --port BASE+I, listening" {
	local i pid cmd

	start_fanoutd
	[ "${#WORKER_PIDS[@]}" -eq 3 ] ||
	    fail "fanoutd has ${#WORKER_PIDS[@]} children, expected 3"
	for i in 0 1 2; do
		pid=$(worker_pid "$i")
		[ -n "$pid" ] || fail "status shows no pid for worker $i"
		cmd=" $(tr '\0' ' ' <"/proc/$pid/cmdline")"
		# (under valgrind the process image, and so the command line
		# a pool-forked worker rewrites, is valgrind's)
		[ "$FANOUT_VALGRIND" = 1 ] ||
		[[ $cmd == *" --index $i "* && $cmd == *" --port $((BASE_PORT + i)) "* ]] ||
		    fail "worker $i (pid $pid) runs:$cmd"
		[ "$FANOUT_VALGRIND" = 1 ] ||
		[ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$WORKER")" ] ||
		    fail "worker $i is not $WORKER: $(readlink "/proc/$pid/exe")"
		[ "$(in_ns ss -Htln "sport = :$((BASE_PORT + i))" | wc -l)" -eq 1 ] ||
		    fail "nothing listens on port $((BASE_PORT + i))"
	done
}

@test "message ids grow from one send to the next" {
	local first

	start_fanoutd
	run ctl send one
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	first=$MSG_ID
	run ctl send two
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	[ "$MSG_ID" -gt "$first" ] ||
	    fail "second message id $MSG_ID is not above $first"
}

@test "send joins its arguments with single spaces" {
	start_fanoutd -vv
	run ctl send a b "c  d"
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 0 \\(pid [0-9]+\\): message $MSG_ID, 8 bytes: \"a b c  d\"\$"
}

@test "the worker log shows at most 32 bytes, escaped" {
	local x40

	x40=$(printf 'x%.0s' $(seq 40))
	start_fanoutd -vv
	run ctl send "$x40"
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(pid [0-9]+\\): message $MSG_ID, 40 bytes: \"x{32}([^x]|$)"

	run ctl send $'tab\there\001'
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 2 \\(pid [0-9]+\\): message $MSG_ID, 9 bytes: \"tab"
	! grep -q $'\t' "$FANOUTD_LOG" ||
	    fail "a raw tab reached the log" "$(grep $'\t' "$FANOUTD_LOG")"
	! grep -q $'\001' "$FANOUTD_LOG" || fail "a raw ^A reached the log"
}

@test "an empty message is delivered too" {
	start_fanoutd -vv
	run ctl send ""
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 0 \\(pid [0-9]+\\): message $MSG_ID, 0 bytes"
}

# columns_aligned: the last `run` output's worker table is aligned: each
# cell of a row starts where its column's name starts in the header, or
# for a number ends where it ends.
columns_aligned() {
	printf '%s\n' "$output" | python3 -c '
import re, sys
lines = sys.stdin.read().splitlines()
h = next(i for i, l in enumerate(lines) if l.startswith("WORKER "))
right = {"WORKER", "PID", "PORT", "ACKED", "FAILED", "QUEUED", "BYTES",
         "RESTARTS"}
cols = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", lines[h])]
rows = 0
for l in lines[h + 1:]:
    if not re.match(r" *[0-9]+ ", l):
        break
    rows += 1
    cells = [(m.start(), m.end()) for m in re.finditer(r"\S+", l)]
    assert len(cells) == len(cols), "%d cells, not %d: %r" % (len(cells), len(cols), l)
    for (name, s, e), (cs, ce) in zip(cols, cells):
        assert (ce == e) if name in right else (cs == s), \
            "column %s misaligned: %r" % (name, l)
assert l.endswith(" queued") and re.match(r"[0-9]+/[0-9]+ workers up, ", l), l
print(rows)
' || fail "the table is not aligned" "$(show_run)"
}

# status_re I STATE ACKED QUEUED: the documented table row of worker I:
# WORKER PID PORT STATE FOR NEXT ACKED FAILED QUEUED BYTES OLDEST RTT RESTARTS
# LAST LASTFAIL, numbers aligned right.
status_re() {
	local oldest='[0-9.hms]+'

	[ "$4" != 0 ] || oldest=-
	printf '%s' "^ +$1 +([0-9]+) +$((BASE_PORT + $1)) +$2 +[0-9.hms]+ +- +" \
	    "$3 +0 +$4 +[0-9]+ +$oldest +([0-9]+\\.[0-9]{3}ms|-) +0 +- +-\$"
}

@test "status: the daemon, a table of the workers, a summary; counts follow" {
	local i pid re

	need_python
	start_fanoutd
	run --separate-stderr ctl status
	assert_status 0
	[ -z "$stderr" ] || fail "stderr: $stderr"
	[ "${#lines[@]}" -eq 6 ] || fail "expected 6 lines" "$(show_run)"
	re="^fanoutd [^ ]+  pid $FANOUTD_PID  up 3/3  uptime [0-9.hms]+  accepted 0\$"
	[[ ${lines[0]} =~ $re ]] || fail "bad daemon line, not /$re/" "$(show_run)"
	re='^WORKER +PID  PORT  STATE +FOR +NEXT  ACKED  FAILED  QUEUED  BYTES  OLDEST  RTT +RESTARTS  LAST +LASTFAIL$'
	[[ ${lines[1]} =~ $re ]] || fail "bad header, not /$re/" "$(show_run)"
	for i in 0 1 2; do
		re=$(status_re "$i" up 0 0)
		[[ ${lines[i + 2]} =~ $re ]] ||
		    fail "bad row $((i + 3)), not /$re/" "$(show_run)"
		pid=${BASH_REMATCH[1]}
		[ "${BASH_REMATCH[2]}" = - ] ||
		    fail "worker $i has an rtt before any ack" "$(show_run)"
		[[ " ${WORKER_PIDS[*]} " == *" $pid "* ]] ||
		    fail "worker $i pid $pid is no child of fanoutd"
	done
	[ "${lines[5]}" = "3/3 workers up, 0 queued" ] ||
	    fail "bad summary line" "$(show_run)"
	columns_aligned >/dev/null
	run ctl send one
	assert_status 0
	run ctl send two
	assert_status 0
	run ctl status
	assert_status 0
	[[ ${lines[0]} =~ \ \ up\ 3/3\ .*\ \ accepted\ 2$ ]] ||
	    fail "the daemon should have accepted 2" "$(show_run)"
	for i in 0 1 2; do
		re=$(status_re "$i" up 2 0)
		[[ ${lines[i + 2]} =~ $re ]] ||
		    fail "worker $i should have acked 2, queued 0" "$(show_run)"
		[ "${BASH_REMATCH[2]}" != - ] ||
		    fail "worker $i shows no rtt after two acks" "$(show_run)"
	done
	[ "${lines[5]}" = "3/3 workers up, 0 queued" ] ||
	    fail "bad summary line" "$(show_run)"
}

@test "status: columns stay aligned past worker 9 and without a pid (-)" {
	local victim rows

	need_python
	write_config workers=12 \
	    "worker_path=\"$(worker_wrapper "10:--mode crashloop --touch $T")\""
	start_fanoutd
	victim=$(worker_pid 10)
	kill -KILL "$victim"
	# Each later start of worker 10 fails: it is in backoff, no process.
	wait_for "worker_is 10 backoff pid - last exit=1" "$(ms 10000)"
	run --separate-stderr ctl status
	assert_status 0
	rows=$(columns_aligned) || return
	[ "$rows" -eq 12 ] || fail "expected 12 rows, got $rows" "$(show_run)"
	assert_line '^ +10  +-  [0-9]+  backoff  '
	assert_line '^11/12 workers up, 0 queued$'
}

@test "send --json: one object with the documented fields" {
	need_python
	start_fanoutd
	# timeout_ms: the ack timeout applied, ack_timeout_ms here.
	run --separate-stderr ctl -t "$(ms 5000)" --json send hello
	assert_status 0
	[ "${#lines[@]}" -eq 1 ] || fail "expected one line" "$(show_run)"
	json_check 'o["format"] == 1 and o["result"] == "ok"'
	json_check 'o["workers_acked"] == 3 and o["workers_total"] == 3'
	json_check 'o["workers_queued"] == 0 and o["workers_failed"] == 0'
	json_check 'o["timeout_ms"] == '"$(ms 5000)"
	json_check 'isinstance(o["request"], int) and isinstance(o["message_id"], int)'
	json_check '[w["index"] for w in o["workers"]] == [0, 1, 2]'
	json_check 'all(w["outcome"] == "acked" and w["rtt_ms"] >= 0 for w in o["workers"])'
	json_check 'all(w["status"] is None and w["status_text"] is None and w["reason"] is None for w in o["workers"])'
	json_check 'all(w["state"] == "up" for w in o["workers"])'
	json_check "[w['port'] for w in o['workers']] == [$BASE_PORT, $((BASE_PORT + 1)), $((BASE_PORT + 2))]"
	json_check "sorted(w['pid'] for w in o['workers']) == sorted([${WORKER_PIDS[*]/%/,}])"

	run ctl -j send hello
	assert_status 0
	json_check 'o["result"] == "ok"'
}

@test "status --json: one object, the daemon and every worker" {
	need_python
	start_fanoutd
	run ctl send x
	assert_status 0
	run --separate-stderr ctl -j status
	assert_status 0
	[ "${#lines[@]}" -eq 1 ] || fail "expected one line" "$(show_run)"
	json_check 'o["format"] == 1 and o["workers_up"] == 3 and o["workers_total"] == 3 and len(o["workers"]) == 3'
	json_check "o['daemon']['pid'] == $FANOUTD_PID and o['daemon']['messages_accepted'] == 1"
	json_check 'isinstance(o["daemon"]["version"], str) and o["daemon"]["uptime_ms"] >= 0 and o["daemon"]["degraded_ms"] is None'
	json_check 'all(w["state"] == "up" and w["acked_count"] == 1 and w["failed_count"] == 0 for w in o["workers"])'
	json_check 'all(w["queued_count"] == 0 and w["queued_bytes"] == 0 and w["restarts"] == 0 for w in o["workers"])'
	json_check 'all(w["last_rtt_ms"] >= 0 and w["next_try_ms"] is None and w["state_ms"] >= 0 for w in o["workers"])'
	json_check 'all(w["last_exit"] is None and w["last_failure"] is None for w in o["workers"])'
	json_check "[(w['index'], w['port']) for w in o['workers']] == [(i, $BASE_PORT + i) for i in range(3)]"
	json_check "sorted(w['pid'] for w in o['workers']) == sorted([${WORKER_PIDS[*]/%/,}])"
}

@test "FANOUT_SOCKET in the environment reaches the daemon" {
	start_fanoutd
	FANOUT_SOCKET=$SOCK run timeout 60 "$FANOUTCTL" send via env
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}

@test "a message above max_message_bytes: clear error, exit 3, daemon fine" {
	local m100

	write_config max_message_bytes=100
	start_fanoutd
	m100=$(printf 'm%.0s' $(seq 100))
	run ctl send "$m100"
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"

	run --separate-stderr ctl send "${m100}x"
	assert_status 3
	[ "$stderr" = "fanoutctl: message of 101 bytes refused: larger than max_message_bytes (100)" ] ||
	    fail "unexpected error text" "$(show_run)" "stderr: $stderr"

	run ctl send after
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}

@test "one worker, and many: 20 workers start in parallel and all ack" {
	write_config workers=1
	start_fanoutd
	run ctl send solo
	assert_status 0
	assert_send 1 "$ACKED"
	stop_fanoutd

	write_config workers=20
	start_fanoutd
	run ctl send many
	assert_status 0
	[ "${lines[20]}" = "delivered to 20/20 workers (message ${lines[20]##*message }" ] ||
	    fail "$(show_run)"
	run status_lines
	assert_status 0
	[ "$(printf '%s\n' "${lines[@]}" | grep -cE '^worker .*  up +acked 1  queued 0  ')" -eq 20 ] ||
	    fail "$(show_run)"
	[[ ${lines[0]} =~ \ \ up\ 20/20\  ]] || fail "$(show_run)"
}

@test "IPv6: listen_address ::1" {
	write_config 'listen_address="::1"'
	start_fanoutd
	run ctl send over v6
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	[ "$(in_ns ss -Htln "sport = :$BASE_PORT" | awk '{print $4}')" = "[::1]:$BASE_PORT" ] ||
	    fail "worker 0 does not listen on [::1]:$BASE_PORT"
}
