#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Workers that fail: killed, hung, sending garbage, closing the link.  Each
# is reported as not acknowledging (exit 1, with the reason) and the daemon
# goes on serving the others.

load helpers

# with_fake_worker_1 FAKE-ARGS [SETTING=VALUE...]: start fanoutd with worker
# 1 replaced by fake-worker FAKE-ARGS.
with_fake_worker_1() {
	local args=$1
	shift
	write_config "worker_path=\"$(worker_wrapper "1:$args --touch $T")\"" "$@"
	start_fanoutd
}

# still_serving: fanoutd is alive and answers status and send.
still_serving() {
	alive "$FANOUTD_PID" || fail "fanoutd died" "$(cat "$FANOUTD_LOG")"
	run ctl status
	assert_status 0
	[ "${#lines[@]}" -eq 3 ] || fail "status" "$(show_run)"
	run ctl send again
	[ "$status" -le 1 ] || fail "send after the failure" "$(show_run)"
	[[ ${lines[0]} =~ \ \ $ACKED$ && ${lines[2]} =~ \ \ $ACKED$ ]] ||
	    fail "workers 0 and 2 no longer ack" "$(show_run)"
}

@test "a worker killed with SIGKILL is reported down, exit 1" {
	local victim

	start_fanoutd
	victim=$(worker_pid 1)
	kill -KILL "$victim"
	wait_pid_gone "$victim" "$(ms 5000)"
	run --separate-stderr ctl send after the kill
	assert_status 1
	assert_send 2 "$ACKED" "$DOWN" "$ACKED"
	still_serving
}

@test "a worker killed with SIGKILL: status no longer shows it up" {
	local victim

	start_fanoutd
	victim=$(worker_pid 1)
	kill -KILL "$victim"
	wait_pid_gone "$victim" "$(ms 5000)"
	# fanoutd learns about it from its own event loop: allow it a moment.
	wait_for "ctl status >'$T/st' &&
	    ! grep -qE '^worker 1  pid $victim  .*  up +acked' '$T/st'" "$(ms 5000)"
	run ctl status
	assert_status 0
	refute_line "^worker 1  pid $victim  port [0-9]+  up +acked"
}

@test "a worker that answers with garbage is marked down" {
	with_fake_worker_1 "--mode garbage"
	run ctl send provoke
	assert_status 1
	assert_send 2 "$ACKED" "$DOWN" "$ACKED"
	still_serving
}

@test "a worker announcing a 2 GiB frame is marked down" {
	with_fake_worker_1 "--mode hugeframe"
	run ctl send provoke
	assert_status 1
	assert_send 2 "$ACKED" "$DOWN" "$ACKED"
	still_serving
}

@test "a worker that closes its connection is marked down" {
	with_fake_worker_1 "--mode close"
	run ctl send provoke
	assert_status 1
	assert_send 2 "$ACKED" "$DOWN" "$ACKED"
	still_serving
}

@test "an ack for a message never sent does not count as an ack" {
	with_fake_worker_1 "--mode badack" ack_timeout_ms="$(ms 500)"
	run ctl send provoke
	assert_status 1
	assert_send 2 "$ACKED" "(down|timeout).*" "$ACKED"
	still_serving
}

@test "a worker that never acks: 'timeout (no ack within ack_timeout_ms)'" {
	with_fake_worker_1 "--mode noack" ack_timeout_ms="$(ms 300)"
	run --separate-stderr ctl send hello
	assert_status 1
	assert_send 2 "$ACKED" "$(timeout_re "$(ms 300)")" "$ACKED"
	run ctl send again
	assert_status 1
	assert_send 2 "$ACKED" "$(timeout_re "$(ms 300)")" "$ACKED"
}

@test "the client's -t, when smaller, bounds the wait for acks" {
	local t0

	with_fake_worker_1 "--mode noack" ack_timeout_ms=600000
	t0=$(now_ms)
	run ctl -t "$(ms 200)" send hello
	assert_status 1
	assert_send 2 "$ACKED" "timeout.*" "$ACKED"
	[ $(($(now_ms) - t0)) -lt $((30000 * FANOUT_TIMEOUT_SCALE)) ]
}

@test "send --json reports the worker that did not ack" {
	need_python
	with_fake_worker_1 "--mode noack" ack_timeout_ms="$(ms 300)"
	run ctl --json send hello
	assert_status 1
	json_check 'o["acked"] == 2 and o["workers"] == 3 and o["result"] != "ok"'
	json_check '[w["outcome"] for w in o["outcomes"]] == ["acked", "timeout", "acked"]'
}

@test "send - names the workers that did not ack, and why" {
	with_fake_worker_1 "--mode noack" ack_timeout_ms="$(ms 300)"
	printf '%s\n' one two >"$T/in"
	run ctl send - <"$T/in"
	assert_status 1
	[ "${#lines[@]}" -eq 2 ] || fail "expected 2 lines" "$(show_run)"
	[[ ${lines[0]} =~ ^message\ [0-9]+:\ delivered\ to\ 2/3\ workers\;\ not\ acked:\ 1\ \(timeout\)$ ]] ||
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
	assert_send 2 "$ACKED" "timeout.*" "$ACKED"
	alive "$c" || fail "the slow request was answered too early" "$(cat "$T/out")"
	wait_pid_gone "$c" "$(ms 15000)"
}
