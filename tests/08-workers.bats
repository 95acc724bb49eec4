#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Workers that fail: killed, hung, sending garbage, closing the link.  The
# message is "queued" for such a worker (exit 1, with its state), kept and
# delivered once it is back: a killed worker is restarted, a broken link is
# reconnected to the same process; the daemon goes on serving the others.

load helpers

# with_fake_worker_1 FAKE-ARGS [SETTING=VALUE...]: start fanoutd with worker
# 1 replaced by fake-worker FAKE-ARGS.
with_fake_worker_1() {
	local args=$1
	shift
	write_config "worker_path=\"$(worker_wrapper "1:$args --touch $T")\"" "$@"
	start_fanoutd
}

# still_serving: fanoutd is alive and answers status and send; workers 0
# and 2 ack, worker 1 (still failing) gets the message queued.
still_serving() {
	alive "$FANOUTD_PID" || fail "fanoutd died" "$(cat "$FANOUTD_LOG")"
	run ctl status
	assert_status 0
	[ "${#lines[@]}" -eq 6 ] || fail "status" "$(show_run)"
	run ctl send again
	assert_status 1
	assert_send 2 "$ACKED" "$QUEUED" "$ACKED"
}

# handled_count ID: how many times fake-worker 1 logged message ID.
handled_count() {
	grep -c "^fake-worker 1: message $1, " "$FANOUTD_LOG" || true
}

# link_flaps MODE: worker 1, fake-worker in MODE, breaks its link on each
# message.  The message is queued for it; fanoutd reconnects to the same
# process after 100 ms, then after 200 ms, and sends the same message (same
# id) again each time, never restarting the process.
link_flaps() {
	local pid

	with_fake_worker_1 "--mode $1"
	pid=$(worker_pid 1)
	run ctl send provoke
	assert_status 1
	assert_send 2 "$ACKED" "$(queued_re backoff)" "$ACKED"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(port $((BASE_PORT + 1))\\): reconnecting again in 100 ms"
	# Resent on the reconnect, with the same id; it breaks the link again.
	wait_for "[ \$(handled_count $MSG_ID) -ge 2 ]" "$(ms 5000)"
	wait_for "grep -q 'reconnecting again in 200 ms' '$FANOUTD_LOG'" \
	    "$(ms 5000)"
	wait_for "worker_is 1 'backoff|starting|up' pid $pid restarts 0 last link-lost queued 1" \
	    "$(ms 5000)"
	alive "$pid" || fail "fake-worker 1 ($pid) is gone"
	still_serving
}

@test "a worker killed with SIGKILL: queued at once, restarted, then delivered" {
	local victim fd t0 newpid

	write_config "worker_path=\"$(worker_wrapper)\"" ack_timeout_ms=600000
	start_fanoutd
	victim=$(worker_pid 1)
	# Its next start waits for the test before READY=1.
	mkfifo "$T/hold"
	worker_wrapper "1:--ready-after $T/hold --touch $T" >/dev/null
	kill -KILL "$victim"
	wait_pid_gone "$victim" "$(ms 5000)"
	wait_for "[ -e '$T/hold.waiting' ]" "$(ms 5000)"
	wait_for "worker_is 1 starting restarts 1" "$(ms 5000)"
	newpid=$(worker_pid 1)
	[ "$newpid" != "$victim" ] || fail "worker 1 kept pid $victim"
	# Away: queued at once, not after the (600 s) ack timeout.
	t0=$(now_ms)
	run --separate-stderr ctl -t 600000 send after the kill
	assert_status 1
	assert_send 2 "$ACKED" "$(queued_re starting)" "$ACKED"
	[ $(($(now_ms) - t0)) -lt "$(ms 5000)" ] ||
	    fail "the sender waited for the worker that is away"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(pid $victim, port $((BASE_PORT + 1))\\) killed by signal 9"
	assert_file_line "$FANOUTD_LOG" "worker 1 restarted: pid $newpid"
	run status_lines
	assert_status 0
	[[ ${lines[2]} =~ ^worker\ 1\ \ pid\ $newpid\ \ port\ [0-9]+\ \ starting\ acked\ 0\ \ queued\ 1\ \ bytes\ 14\ \ restarts\ 1\ .*\ \ last\ signal=KILL$ ]] ||
	    fail "worker 1 should be starting, the message queued" "$(show_run)"
	# Released: it comes up and gets the message it missed.
	exec {fd}<>"$T/hold"
	wait_for "worker_is 1 up pid $newpid restarts 1 acked 1 queued 0" \
	    "$(ms 10000)"
	exec {fd}>&-
	[ -e "$T/worker-1.msg-$MSG_ID" ] ||
	    fail "worker 1 did not get message $MSG_ID"
	run ctl send later
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}

@test "a worker killed with SIGKILL is restarted: new pid, restarts 1" {
	local victim pid cmd

	start_fanoutd
	victim=$(worker_pid 1)
	kill -KILL "$victim"
	wait_pid_gone "$victim" "$(ms 5000)"
	wait_for "worker_is 1 up restarts 1 last signal=KILL" "$(ms 10000)"
	pid=$(worker_pid 1)
	[ -n "$pid" ] && [ "$pid" != "$victim" ] ||
	    fail "worker 1 has pid '$pid', the killed one was $victim"
	[[ " $(children_of "$FANOUTD_PID" | tr '\n' ' ') " == *" $pid "* ]] ||
	    fail "worker 1 (pid $pid) is no child of fanoutd"
	ALL_WORKERS+=("$pid")
	cmd=" $(tr '\0' ' ' <"/proc/$pid/cmdline")"
	[[ $cmd == *" --index 1 "* && $cmd == *" --port $((BASE_PORT + 1)) "* ]] ||
	    fail "worker 1 (pid $pid) runs:$cmd"
	# The others were left alone.
	worker_is 0 up restarts 0 || fail "worker 0 was touched"
	worker_is 2 up restarts 0 || fail "worker 2 was touched"
	[ "$(daemon_field up)" = 3/3 ] || fail "not up 3/3:" "$(ctl status)"
	run ctl send after the restart
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	[ "$(pids_of_output | sed -n 2p)" = "$pid" ] ||
	    fail "worker 1 acked from another pid than $pid" "$(show_run)"
}

@test "a worker that answers with garbage: queued, its link reconnected" {
	link_flaps garbage
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(pid [0-9]+, port $((BASE_PORT + 1))\\): sent a bad frame"
}

@test "a worker announcing a 2 GiB frame: queued, its link reconnected" {
	link_flaps hugeframe
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(pid [0-9]+, port $((BASE_PORT + 1))\\): sent a bad frame"
}

@test "a worker that closes its connection: queued, its link reconnected" {
	link_flaps close
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(pid [0-9]+, port $((BASE_PORT + 1))\\): link lost: connection closed by the worker"
}

@test "an ack for a message never sent does not count as an ack" {
	link_flaps badack
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(pid [0-9]+, port $((BASE_PORT + 1))\\): acknowledged message [0-9]+, which it was not waiting for"
	worker_is 1 'backoff|starting|up' acked 0 ||
	    fail "the bad ack counted" "$(ctl status)"
}

@test "a worker that never acks: 'queued (worker up; kept for delivery)'" {
	local first

	with_fake_worker_1 "--mode noack" ack_timeout_ms="$(ms 300)"
	run --separate-stderr ctl send hello
	assert_status 1
	assert_send 2 "$ACKED" "$(queued_re up)" "$ACKED"
	first=$MSG_ID
	run ctl send again
	assert_status 1
	assert_send 2 "$ACKED" "$(queued_re up)" "$ACKED"
	[ "$MSG_ID" -gt "$first" ] || fail "message ids do not grow"
	# Both kept for it, in order; it got both, neither acked.
	worker_is 1 up acked 0 queued 2 bytes 10 restarts 0 ||
	    fail "worker 1 should be up with 2 queued" "$(ctl status)"
	[ -e "$T/worker-1.msg-$first" ] && [ -e "$T/worker-1.msg-$MSG_ID" ] ||
	    fail "worker 1 did not get both messages"
	worker_is 0 up acked 2 queued 0 || fail "worker 0" "$(ctl status)"
	# The oldest has waited at least the ack timeout; worker 0 has none.
	[[ $(status_field 1 oldest) =~ ^[0-9.]+[hms]+$ ]] &&
	[ "$(status_field 0 oldest)" = - ] || fail "OLDEST" "$(ctl status)"
	run ctl -j status
	json_check "o['workers'][0]['oldest_ms'] is None and o['workers'][1]['oldest_ms'] >= $(ms 300)"
}

@test "the client's -t, when smaller, bounds the wait for acks" {
	local t0

	with_fake_worker_1 "--mode noack" ack_timeout_ms=600000
	t0=$(now_ms)
	run ctl -t "$(ms 200)" send hello
	assert_status 1
	assert_send 2 "$ACKED" "$(queued_re up)" "$ACKED"
	[ $(($(now_ms) - t0)) -lt $((30000 * FANOUT_TIMEOUT_SCALE)) ]
	run ctl --json -t "$(ms 200)" send hello
	assert_status 1
	json_check "o['timeout_ms'] == $(ms 200)"
}

@test "send --json reports the worker that did not ack" {
	need_python
	with_fake_worker_1 "--mode noack" ack_timeout_ms="$(ms 300)"
	run ctl --json send hello
	assert_status 1
	json_check 'o["workers_acked"] == 2 and o["workers_total"] == 3 and o["result"] == "partial"'
	json_check 'o["workers_queued"] == 1 and o["workers_failed"] == 0'
	json_check '[w["outcome"] for w in o["workers"]] == ["acked", "queued", "acked"]'
	json_check '[w["state"] for w in o["workers"]] == ["up", "up", "up"]'
	json_check 'o["workers"][1]["rtt_ms"] is None and o["workers"][0]["rtt_ms"] >= 0'
	json_check 'o["workers"][1]["status"] is None and o["workers"][1]["reason"] is None'
}

@test "send - names the workers that did not ack, and why" {
	with_fake_worker_1 "--mode noack" ack_timeout_ms="$(ms 300)"
	printf '%s\n' one two >"$T/in"
	run --separate-stderr ctl send - <"$T/in"
	assert_status 1
	[ "${#lines[@]}" -eq 2 ] || fail "expected 2 lines" "$(show_run)"
	[[ $stderr =~ ^fanoutctl:\ 2\ messages:\ 0\ to\ all\ workers,\ 2\ partial,\ 0\ refused\  ]] ||
	    fail "unexpected summary: $stderr"
	[[ ${lines[0]} =~ ^message\ [0-9]+:\ delivered\ to\ 2/3\ workers\;\ not\ acked:\ 1\ \(queued\)$ ]] ||
	    fail "bad result line" "$(show_run)"
	[[ ${lines[1]} =~ ^message\ [0-9]+:\ delivered\ to\ 2/3\ workers\;\ not\ acked:\ 1\ \(queued\)$ ]] ||
	    fail "bad result line" "$(show_run)"
}

@test "a hung worker stalls neither the daemon nor the other workers" {
	local c

	with_fake_worker_1 "--mode noack" ack_timeout_ms="$(ms 5000)"
	spawn ctl send slow >"$T/out" 2>&1
	c=$BG_PID
	wait_for "compgen -G '$T/worker-1.msg-*' >/dev/null" "$(ms 5000)"
	# Served while the first request still waits on worker 1.
	run ctl status
	assert_status 0
	run ctl -t "$(ms 200)" send meanwhile
	assert_status 1
	assert_send 2 "$ACKED" "$(queued_re up)" "$ACKED"
	alive "$c" || fail "the slow request was answered too early" "$(cat "$T/out")"
	wait_pid_gone "$c" "$(ms 15000)"
}

@test "send --wait waits for a worker that is away until it acks" {
	local victim fd c st=0

	write_config "worker_path=\"$(worker_wrapper)\"" ack_timeout_ms=600000
	start_fanoutd
	victim=$(worker_pid 1)
	mkfifo "$T/hold"
	worker_wrapper "1:--ready-after $T/hold --touch $T" >/dev/null
	kill -KILL "$victim"
	wait_for "[ -e '$T/hold.waiting' ]" "$(ms 5000)"
	wait_for "worker_is 1 starting restarts 1" "$(ms 5000)"
	spawn ctl -t "$(ms 10000)" send --wait wait for me >"$T/out" 2>"$T/err"
	c=$BG_PID
	# Accepted and queued for worker 1, the reply held back for it.
	wait_for "worker_is 1 starting queued 1" "$(ms 5000)"
	alive "$c" || fail "send --wait did not wait" "$(cat "$T/out" "$T/err")"
	exec {fd}<>"$T/hold"
	wait_pid_gone "$c" "$(ms 10000)" || fail "send --wait got no reply"
	exec {fd}>&-
	wait "$c" || st=$?
	run cat "$T/out"
	[ "$st" -eq 0 ] || fail "exit $st, expected 0" "$(show_run)" \
	    "$(cat "$T/err")"
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	[ -e "$T/worker-1.msg-$MSG_ID" ] ||
	    fail "worker 1 did not get message $MSG_ID"
}
