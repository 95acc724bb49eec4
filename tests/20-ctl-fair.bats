#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The control socket is fair (issue 9): floods, slowloris, idle and
# non-reading clients, another uid filling its slots, running out of file
# descriptors; and control_socket never deletes what is not a socket.

load helpers

setup() {
	fanout_setup
	need_python
	CLIENTS=(python3 "$FANOUT_SRCDIR/tests/ctl-clients.py")
}

teardown() {
	fanout_teardown
}

# as_other: OTHER_CLIENTS runs ctl-clients.py as nobody; the socket is
# open to everyone, so that the uid, not the mode, is what the daemon
# judges.
as_other() {
	local py

	[ "$(id -u)" -eq 0 ] || skip "needs root to run as another user"
	for py in /usr/bin/python3 "$(command -v python3)" ""; do
		[ -n "$py" ] || skip "nobody cannot run python3"
		setpriv --reuid=nobody --regid=nogroup --clear-groups \
		    "$py" -c '' 2>/dev/null && break
	done
	chmod 666 "$SOCK"
	OTHER_CLIENTS=(setpriv --reuid=nobody --regid=nogroup --clear-groups
	    "$py" "$FANOUT_SRCDIR/tests/ctl-clients.py")
}

# cpu_ticks PID: user + system time of the process, in clock ticks.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# rss_kb PID: resident set size in KiB.
rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# sanitized: fanoutd is built with ASan, whose quarantine holds freed
# memory: RSS says nothing about what fanoutd keeps.
sanitized() {
	nm "$FANOUTD" 2>/dev/null | grep -q __asan_init
}

@test "1,000 connections at once and 128 slowloris from another uid: a send still gets through within 1 s" {
	local t0 elapsed

	start_fanoutd
	as_other
	spawn "${OTHER_CLIENTS[@]}" hold "$SOCK" 1000 128 \
	    >"$T/flood.out"
	wait_for "grep -q '^ready' '$T/flood.out'" "$(ms 30000)"
	# The daemon has seen the flood: it refused some of it.
	wait_for "grep -q 'refusing a control connection (pid [0-9]*, uid $(id -u nobody))' '$FANOUTD_LOG'" "$(ms 10000)"
	t0=$(now_ms)
	run ctl send under the flood
	elapsed=$(($(now_ms) - t0))
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	[ "$elapsed" -le "$(ms 1000)" ] ||
	    fail "the send took $elapsed ms under the flood"
	echo "# send under the flood: $elapsed ms" >&3
	alive "$FANOUTD_PID" || fail "fanoutd died"
}

@test "idle connections and partial frames are closed at their deadlines; a long reply is not idle" {
	local stopped

	write_config control_idle_timeout_ms="$(ms 600)" \
	    control_frame_timeout_ms="$(ms 600)" ack_timeout_ms="$(ms 2000)"
	start_fanoutd
	run "${CLIENTS[@]}" idle "$SOCK"
	assert_status 0
	# Closed after their timeout (a sweep is a quarter of it), not
	# before, and not never.
	for what in idle slow replied; do
		assert_line "^$what [0-9]+\$"
		ms_closed=$(printf '%s\n' "${lines[@]}" | awk -v w="$what" \
		    '$1 == w { print $2 }')
		[ "$ms_closed" -ge "$(ms 500)" ] ||
		    fail "$what closed too early: $ms_closed ms" "$(show_run)"
	done
	assert_file_line "$FANOUTD_LOG" 'frame not complete after [0-9]+ ms; closing the connection'
	# A client waiting for acks longer than the idle timeout: answered.
	stopped=$(worker_pid 1)
	kill -STOP "$stopped"
	run raw -t "$(ms 10000)" "$SOCK" send slow-ack
	kill -CONT "$stopped"
	assert_status 0
	assert_line '^end id=1 result=1 .* acked=2 workers=3 '
}

@test "a client that does not read its replies is cut off past its budget; memory stays bounded" {
	local before after

	write_config control_output_max_bytes=1048576 \
	    control_idle_timeout_ms=600000
	start_fanoutd
	before=$(rss_kb "$FANOUTD_PID")
	run "${CLIENTS[@]}" noread "$SOCK" 40
	assert_status 0
	assert_line '^cut 40/40$'
	assert_file_line "$FANOUTD_LOG" 'bytes of replies unread, more than control_output_max_bytes; closing'
	after=$(rss_kb "$FANOUTD_PID")
	echo "# RSS before $before KiB, after 40 non-readers $after KiB" >&3
	if ! sanitized; then
		# 40 clients x 1 MiB would be 40 MiB; freed when cut.
		[ $((after - before)) -lt 16384 ] ||
		    fail "RSS grew from $before to $after KiB"
	fi
	run ctl send after
	assert_status 0
}

@test "another uid holding all its slots does not lock root out" {
	write_config control_max_connections=16 control_idle_timeout_ms=600000
	start_fanoutd
	as_other
	spawn "${OTHER_CLIENTS[@]}" fill "$SOCK" >"$T/fill.out"
	wait_for "grep -q '^held' '$T/fill.out'" "$(ms 30000)"
	# Half of the 16 slots, no more.
	[ "$(cat "$T/fill.out")" = "held 8" ] ||
	    fail "nobody got: $(cat "$T/fill.out")"
	assert_file_line "$FANOUTD_LOG" "refusing a control connection \\(pid [0-9]+, uid $(id -u nobody)\\): uid $(id -u nobody) holds 8 connections, its most"
	run ctl send as root
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	run ctl status
	assert_status 0
}

@test "out of descriptors: accept pauses without spinning, service recovers" {
	local t0 t1 limit

	write_config control_idle_timeout_ms=600000
	start_fanoutd
	# A hard limit a few descriptors above what is open now.
	limit=$(($(ls "/proc/$FANOUTD_PID/fd" | wc -l) + 8))
	prlimit --pid "$FANOUTD_PID" --nofile="$limit:$limit"
	spawn "${CLIENTS[@]}" hold "$SOCK" 100 >"$T/hold.out"
	HOLDER=$BG_PID
	wait_for "grep -q '^ready' '$T/hold.out'" "$(ms 30000)"
	wait_for "grep -q 'Too many open files' '$FANOUTD_LOG'" "$(ms 10000)"
	# Measured over 2 s: a spinning accept would take all of it.
	t0=$(cpu_ticks "$FANOUTD_PID")
	sleep 2
	t1=$(cpu_ticks "$FANOUTD_PID")
	echo "# fanoutd CPU over 2 s out of descriptors: $((t1 - t0)) ticks" >&3
	[ $((t1 - t0)) -le 20 ] ||
	    fail "fanoutd used $((t1 - t0)) ticks of CPU in 2 s"
	[ "$(grep -c 'Too many open files' "$FANOUTD_LOG")" -le 2 ] ||
	    fail "the pause was logged again and again"
	assert_file_line "$FANOUTD_LOG" 'cannot accept control connections: Too many open files; waiting for a descriptor to be closed'

	# The connections close: the daemon serves again.
	kill -TERM "$HOLDER"
	wait_pid_gone "$HOLDER" "$(ms 5000)"
	wait_for "ctl send recovered >/dev/null 2>&1" "$(ms 10000)"
	run ctl send again
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}

@test "a hard open file limit too low for the configuration: said at start and by -t" {
	write_config control_max_connections=128
	# 3 workers x 5 + 128 + 64
	run --separate-stderr prlimit --nofile=100:100 "$FANOUTD" -t -c "$CONF"
	assert_status 0
	[[ $stderr =~ open\ file\ limit\ \(100,\ hard\)\ is\ below\ the\ 207\ descriptors ]] ||
	    fail "no warning from -t" "$(show_run)" "$stderr"
	[ "$output" = "configuration OK" ] || fail "$(show_run)"
	FANOUT_WRAP="prlimit --nofile=100:100" start_fanoutd
	assert_file_line "$FANOUTD_LOG" 'open file limit \(100, hard\) is below the 207 descriptors'
	run ctl send limited
	assert_status 0
}

@test "control_socket on a regular file: the file is left intact, a clear error, exit 1" {
	printf 'precious\n' >"$SOCK"
	start_fanoutd_fails
	assert_line "control socket $SOCK: exists and is not a socket; not removing it"
	refute_line 'removed stale control socket'
	[ "$(cat "$SOCK")" = precious ] || fail "$SOCK was changed"
}

@test "a live socket of another program at control_socket: 'another program', not 'another fanoutd'" {
	local other first

	spawn python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    except OSError:
        pass
    c.close()
' "$SOCK"
	other=$BG_PID
	wait_for "[ -S '$SOCK' ]" "$(ms 5000)"
	start_fanoutd_fails
	assert_line "another program listens on $SOCK \\(it does not answer as fanoutd does\\); not starting"
	refute_line 'another fanoutd'
	[ -S "$SOCK" ] || fail "the other program's socket was removed"
	# A real fanoutd there is still called one.
	alive "$other" || fail "the other program died"
	kill -TERM "$other"
	wait_pid_gone "$other" "$(ms 5000)"
	rm -f "$SOCK"
	start_fanoutd
	first=$FANOUTD_PID
	start_fanoutd_fails
	assert_line "another fanoutd is already running on $SOCK"
	FANOUTD_PID=$first
}
