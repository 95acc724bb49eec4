#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Signals: SIGTERM/SIGINT shut down cleanly (requests in flight answered,
# workers stopped, socket removed, exit 0); SIGKILL of fanoutd leaves no
# worker behind; SIGHUP (a reload) and SIGPIPE do not stop the daemon.

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

@test "SIGTERM with a request in flight: answered at its deadline, then exit 0" {
	local c st=0 t0

	# Worker 1 never acks: the broadcast runs to its deadline, which
	# fanoutd lets it reach before it stops the workers.
	write_config "worker_path=\"$(worker_wrapper "1:--mode noack --touch $T")\"" \
	    ack_timeout_ms="$(ms 3000)"
	start_fanoutd
	t0=$(now_ms)
	spawn ctl -t "$(ms 3000)" send in flight >"$T/out" 2>"$T/err"
	c=$BG_PID
	got_message 1
	kill -TERM "$FANOUTD_PID"
	wait_for "grep -q ' STOPPING=1$' '$NOTIFY_LOG'" "$(ms 2000)"
	alive "$c" || fail "fanoutctl was answered before the deadline" \
	    "$(cat "$T/out" "$T/err")"
	alive "$FANOUTD_PID" || fail "fanoutd did not wait for the broadcast"
	wait_pid_gone "$c" "$(ms 10000)" ||
	    fail "fanoutctl got no reply after SIGTERM"
	[ $(($(now_ms) - t0)) -ge "$(ms 2900)" ] ||
	    fail "answered after $(($(now_ms) - t0)) ms, before the deadline"
	wait "$c" || st=$?
	run cat "$T/out"
	[ "$st" -eq 1 ] || fail "fanoutctl exit $st, expected 1" \
	    "$(show_run)" "$(cat "$T/err")"
	# Not acked by the deadline and fanoutd stopping: dropped, not queued.
	assert_send 2 "$ACKED" "$SHUTDOWN" "$ACKED"
	wait_pid_gone "$FANOUTD_PID" "$(ms 10000)" || fail "fanoutd still running"
	[ "$(exit_of_fanoutd)" = "exited status=0" ] ||
	    fail "fanoutd: $(exit_of_fanoutd)" "$(cat "$FANOUTD_LOG")"
	# What was still queued is logged per worker, then dropped.
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1: 1 queued message \\(9 bytes\\) dropped at shutdown"
	! grep -E 'worker [02]: .* dropped at shutdown' "$FANOUTD_LOG" ||
	    fail "workers 0 and 2 had nothing queued"
	[ ! -e "$SOCK" ] || fail "$SOCK left behind"
	nothing_left "$(ms 3000)"
}

@test "SIGTERM: a worker ignoring SIGTERM is killed after stop_timeout_ms" {
	local c st=0 t0 victim

	# ack_timeout_ms and -t are long, so the shutdown deadline, not the
	# broadcast's own, ends the broadcast.
	write_config "worker_path=\"$(worker_wrapper \
	    "1:--mode noack --ignore-term --touch $T")\"" \
	    ack_timeout_ms="$(ms 10000)" stop_timeout_ms="$(ms 1000)"
	start_fanoutd
	victim=$(worker_pid 1)
	spawn ctl -t "$(ms 10000)" send stuck >"$T/out" 2>"$T/err"
	c=$BG_PID
	got_message 1
	# t0 is taken before the signal, and each check below after what it
	# waits for: a slow machine can only lengthen the measured times.
	t0=$(now_ms)
	kill -TERM "$FANOUTD_PID"
	# The broadcast ends at the shutdown deadline; then the workers get
	# SIGTERM, and the one ignoring it SIGKILL stop_timeout_ms later.
	wait_pid_gone "$c" "$(ms 10000)" || fail "fanoutctl got no reply"
	[ $(($(now_ms) - t0)) -ge "$(ms 1000)" ] ||
	    fail "fanoutctl answered $(($(now_ms) - t0)) ms after SIGTERM," \
	    "before stop_timeout_ms"
	wait "$c" || st=$?
	run cat "$T/out"
	[ "$st" -eq 1 ] || fail "fanoutctl exit $st, expected 1" "$(show_run)"
	assert_send 2 "$ACKED" "$SHUTDOWN" "$ACKED"
	wait_pid_gone "$FANOUTD_PID" "$(ms 10000)" ||
	    fail "fanoutd did not exit"
	[ $(($(now_ms) - t0)) -ge "$(ms 2000)" ] ||
	    fail "fanoutd exited $(($(now_ms) - t0)) ms after SIGTERM;" \
	    "expected the broadcast's and the worker's stop_timeout_ms, 2 x $(ms 1000)"
	[ "$(exit_of_fanoutd)" = "exited status=0" ] ||
	    fail "fanoutd: $(exit_of_fanoutd)" "$(cat "$FANOUTD_LOG")"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(pid $victim\\) did not stop within $(ms 1000) ms; killing it"
	assert_file_line "$FANOUTD_LOG" "worker 1 \\(pid $victim\\) killed by signal 9"
	nothing_left "$(ms 3000)"
}

# held_client: connect to the control socket, prove it accepted with a
# status round trip and print "held"; after a line on stdin, send a
# CTL_SEND on that same connection and print "result=N" of its CTL_END.
held_client() {
	python3 -c '
import os, socket, struct, sys

V = int(os.environ["FANOUT_PROTO"])

def end_result(s):
    data = b""
    while True:
        while len(data) >= 16:
            length = struct.unpack(">I", data[4:8])[0]
            if len(data) < 16 + length:
                break
            frame, data = data[:16 + length], data[16 + length:]
            if frame[1] == 19:
                return struct.unpack(">I", frame[16:20])[0]
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("closed before CTL_END")
        data += chunk

s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(struct.pack(">BBHIQ", V, 17, 0, 0, 1))
print("held status result=%d" % end_result(s), flush=True)
sys.stdin.readline()
msg = b"too late"
s.sendall(struct.pack(">BBHIQ", V, 16, 0, 8 + len(msg), 2) +
          struct.pack(">II", 0, 0) + msg)
print("result=%d" % end_result(s), flush=True)
' "$SOCK"
}

@test "while stopping, new control requests are refused (exit 3)" {
	local go c

	need_python
	write_config "worker_path=\"$(worker_wrapper "1:--mode noack --ignore-term")\"" \
	    stop_timeout_ms="$(ms 5000)"
	start_fanoutd
	mkfifo "$T/go"
	exec {go}<>"$T/go"
	spawn held_client <"$T/go" >"$T/held.out" 2>&1
	c=$BG_PID
	wait_for "grep -qx 'held status result=0' '$T/held.out'" "$(ms 5000)"
	kill -TERM "$FANOUTD_PID"
	wait_for "grep -q ' STOPPING=1$' '$NOTIFY_LOG'" "$(ms 5000)"
	alive "$FANOUTD_PID" || fail "fanoutd gone before stop_timeout_ms"
	# A new connection: the listener is closed.
	run --separate-stderr ctl -t 1000 status
	assert_status 3
	# A connection opened before: a send is refused, CTL_RES_SHUTDOWN.
	echo go >&"$go"
	wait_pid_gone "$c" "$(ms 5000)" || fail "no answer on the held connection"
	exec {go}>&-
	grep -qx 'result=5' "$T/held.out" ||
	    fail "a send on the held connection was not refused:" \
	    "$(cat "$T/held.out")"
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

@test "SIGHUP: a reload of the unchanged file; the daemon keeps serving, the workers their pids" {
	local before

	start_fanoutd
	before=$(worker_pid 0)
	kill -HUP "$FANOUTD_PID"
	wait_for "grep -q 'reload: unchanged: ' '$FANOUTD_LOG'" "$(ms 5000)"
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
	# expires, before this later request's own timeout does.  Worker 1
	# is up but does not ack: both messages stay queued for it.
	run ctl send next
	assert_status 1
	assert_send 2 "$ACKED" "$(queued_re up)" "$ACKED"
	alive "$FANOUTD_PID" || fail "fanoutd died"
	run status_lines
	assert_status 0
	[[ ${lines[2]} =~ ^worker\ 1\ .*\ \ up\ +acked\ 0\ \ queued\ 2\ \ bytes\ 7\  ]] ||
	    fail "worker 1 should have both messages (7 bytes) queued" \
	    "$(show_run)"
}
