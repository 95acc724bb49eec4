#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Signals: SIGTERM/SIGINT shut down cleanly (requests in flight answered,
# workers stopped, socket removed, exit 0); SIGKILL of fanoutd leaves no
# worker behind; SIGHUP and SIGPIPE do not stop the daemon.

load helpers

# got_message WORKER: wait until fake-worker WORKER got a message.
got_message() {
	wait_for "compgen -G '$T/worker-$1.msg-*' >/dev/null" "$(ms 10000)"
}

# clean_stop SIGNAL: the signal stops fanoutd with exit 0, no process left
# and no control socket.
clean_stop() {
	start_fanoutd
	[ -S "$SOCK" ] || fail "no control socket at $SOCK"
	stop_fanoutd "$1"
	[ "$FANOUTD_EXIT" = "exited status=0" ] ||
	    fail "fanoutd: $FANOUTD_EXIT" "$(cat "$FANOUTD_LOG")"
	[ ! -e "$SOCK" ] || fail "$SOCK left behind"
	nothing_left "$(ms 3000)"
}

@test "SIGTERM: exit 0, workers gone, control socket removed" {
	clean_stop TERM
}

@test "SIGINT: the same clean shutdown" {
	clean_stop INT
}

@test "SIGTERM with a request in flight: the client gets its reply" {
	local c st=0

	# Worker 1 never acks; the ack timeout is far away.
	write_config "worker_path=\"$(worker_wrapper "1:--mode noack --touch $T")\"" \
	    ack_timeout_ms=600000
	start_fanoutd
	spawn ctl -t 600000 send in flight >"$T/out" 2>"$T/err"
	c=$BG_PID
	got_message 1
	alive "$c" || fail "fanoutctl returned before worker 1 acked" \
	    "$(cat "$T/out" "$T/err")"
	kill -TERM "$FANOUTD_PID"
	wait_pid_gone "$c" "$(ms 10000)" ||
	    fail "fanoutctl got no reply after SIGTERM"
	wait "$c" || st=$?
	run cat "$T/out"
	[ "$st" -eq 1 ] || fail "fanoutctl exit $st, expected 1" \
	    "$(show_run)" "$(cat "$T/err")"
	assert_send 2 "$ACKED" "$SHUTDOWN" "$ACKED"
	wait_pid_gone "$FANOUTD_PID" "$(ms 10000)" || fail "fanoutd still running"
	[ "$(exit_of_fanoutd)" = "exited status=0" ] ||
	    fail "fanoutd: $(exit_of_fanoutd)" "$(cat "$FANOUTD_LOG")"
	[ ! -e "$SOCK" ] || fail "$SOCK left behind"
	nothing_left "$(ms 3000)"
}

@test "SIGTERM: a worker ignoring SIGTERM is killed after stop_timeout_ms" {
	local c st=0 t0

	write_config "worker_path=\"$(worker_wrapper \
	    "1:--mode noack --ignore-term --touch $T")\"" \
	    ack_timeout_ms=600000 stop_timeout_ms="$(ms 1000)"
	start_fanoutd
	spawn ctl -t 600000 send stuck >"$T/out" 2>"$T/err"
	c=$BG_PID
	got_message 1
	t0=$(now_ms)
	kill -TERM "$FANOUTD_PID"
	wait_pid_gone "$FANOUTD_PID" "$(ms 10000)" ||
	    fail "fanoutd did not exit"
	[ $(($(now_ms) - t0)) -ge 900 ] ||
	    fail "fanoutd exited before stop_timeout_ms"
	[ "$(exit_of_fanoutd)" = "exited status=0" ] ||
	    fail "fanoutd: $(exit_of_fanoutd)" "$(cat "$FANOUTD_LOG")"
	wait_pid_gone "$c" "$(ms 5000)" || fail "fanoutctl got no reply"
	wait "$c" || st=$?
	run cat "$T/out"
	[ "$st" -eq 1 ] || fail "fanoutctl exit $st, expected 1" "$(show_run)"
	assert_send 2 "$ACKED" "(shutdown|down).*" "$ACKED"
	nothing_left "$(ms 3000)"
}

@test "while stopping, new control requests are refused (exit 3)" {
	write_config "worker_path=\"$(worker_wrapper "1:--ignore-term")\"" \
	    stop_timeout_ms="$(ms 5000)"
	start_fanoutd
	kill -TERM "$FANOUTD_PID"
	wait_for "grep -q ' STOPPING=1$' '$NOTIFY_LOG'" "$(ms 5000)"
	alive "$FANOUTD_PID" || fail "fanoutd gone before stop_timeout_ms"
	run --separate-stderr ctl -t 1000 status
	assert_status 3
	wait_pid_gone "$FANOUTD_PID" "$(ms 15000)"
	[ "$(exit_of_fanoutd)" = "exited status=0" ]
}

@test "SIGKILL of fanoutd: no worker survives it" {
	local pids i

	start_fanoutd
	for i in 0 1 2; do
		pids+=" $(worker_pid "$i")"
	done
	# shellcheck disable=SC2086
	set -- $pids
	[ $# -eq 3 ] || fail "status gave pids:$pids"
	kill -KILL "$FANOUTD_PID"
	# shellcheck disable=SC2086
	wait_pid_gone $pids "$(ms 5000)" || fail "workers outlived fanoutd"
	[ "$(exit_of_fanoutd)" = "killed signal=9" ]
	nothing_left "$(ms 3000)"
}

@test "after SIGKILL: the stale socket is replaced, the ports are reused" {
	start_fanoutd
	run ctl send before
	assert_status 0
	kill -KILL "$FANOUTD_PID"
	wait_pid_gone "${WORKER_PIDS[@]}" "$(ms 5000)"
	[ -S "$SOCK" ] || skip "fanoutd removed its socket even on SIGKILL?"
	run --separate-stderr ctl status
	assert_status 3
	start_fanoutd
	run ctl send after
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}

@test "restart right after a clean stop: the worker ports are free again" {
	start_fanoutd
	run ctl send first
	assert_status 0
	stop_fanoutd
	[ "$FANOUTD_EXIT" = "exited status=0" ]
	start_fanoutd
	run ctl send second
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}

@test "SIGHUP: logged, ignored, the daemon keeps serving" {
	local before

	start_fanoutd
	before=$(worker_pid 0)
	kill -HUP "$FANOUTD_PID"
	wait_for "grep -qi 'reload' '$FANOUTD_LOG'" "$(ms 5000)"
	alive "$FANOUTD_PID" || fail "fanoutd died on SIGHUP"
	run ctl send after hup
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	[ "$(worker_pid 0)" = "$before" ] || fail "workers were restarted"
}

@test "a client that goes away mid-request does not hurt the daemon" {
	local c

	write_config "worker_path=\"$(worker_wrapper "1:--mode noack --touch $T")\"" \
	    ack_timeout_ms="$(ms 500)"
	start_fanoutd
	spawn "$FANOUTCTL" -s "$SOCK" send bye >/dev/null 2>&1
	c=$BG_PID
	got_message 1
	kill -KILL "$c"
	wait_pid_gone "$c" 5000
	# The reply to the dead client is written when its ack timeout
	# expires, before this later request's own timeout does.
	run ctl send next
	assert_status 1
	assert_send 2 "$ACKED" "timeout.*" "$ACKED"
	alive "$FANOUTD_PID" || fail "fanoutd died"
	run ctl status
	assert_status 0
}
