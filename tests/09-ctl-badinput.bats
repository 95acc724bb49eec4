#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Bad input on the control socket: malformed, truncated, oversized and
# unknown frames get an error reply where possible and that connection is
# closed; the daemon goes on serving everyone else.

load helpers

setup() {
	fanout_setup
	write_config max_message_bytes=100
	start_fanoutd
}

# bad_case RESULT-ERE CASE...: ctl-raw CASE gets an end frame whose result
# matches RESULT-ERE (none expected if empty), the daemon closes the
# connection, and a normal send still works afterwards.
bad_case() {
	local want=$1
	shift

	run raw -c "$SOCK" "$@"
	[ "$status" -eq 0 ] || fail "ctl-raw $*:" "$(show_run)"
	[[ ${lines[-1]} == closed* ]] ||
	    fail "the daemon did not close the connection" "$(show_run)"
	[ -z "$want" ] || assert_line "^end id=[0-9]+ result=($want) "
	refute_line '^worker '
	after_ok
}

# after_ok: the daemon is alive and serves a normal request.
after_ok() {
	alive "$FANOUTD_PID" || fail "fanoutd died" "$(cat "$FANOUTD_LOG")"
	run ctl send after
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
}

@test "ctl-raw itself: a well-formed status request is answered" {
	run raw "$SOCK" status
	assert_status 0
	assert_line '^worker id=1 index=0 pid=[0-9]+ port=[0-9]+ state=up outcome=none rtt_us=0 acked=0 restarts=0 queued=0 queued_bytes=0$'
	assert_line "^daemon id=1 pid=$FANOUTD_PID accepted=0 version=[^ ]+\$"
	assert_line '^end id=1 result=0 \(ok\) acked=3 workers=3 limit=0 msg_id=0 queued=0$'
	# The daemon record comes after the workers, right before the end.
	[[ ${lines[-2]} == daemon* && ${lines[-1]} == end* ]] ||
	    fail "expected the daemon record, then the end" "$(show_run)"
	run raw "$SOCK" send hello
	assert_status 0
	# limit: the ack timeout the daemon applied (its ack_timeout_ms).
	assert_line "^end id=1 result=0 \\(ok\\) acked=3 workers=3 limit=$(ms 5000) msg_id=[1-9][0-9]* queued=0\$"
	assert_line '^worker id=1 index=2 pid=[0-9]+ port=[0-9]+ state=up outcome=acked '
	refute_line '^daemon '
}

@test "CTL_SEND flags: bits the daemon does not know are ignored" {
	run raw -F 0xfffffffe "$SOCK" send hello
	assert_status 0
	assert_line '^end id=1 result=0 \(ok\) acked=3 workers=3 '
	# CTL_SEND_WAIT with every worker up: the same answer.
	run raw -F 0xffffffff "$SOCK" send hello
	assert_status 0
	assert_line '^end id=1 result=0 \(ok\) acked=3 workers=3 '
	after_ok
}

@test "CTL_SEND_BRIEF: records only for the workers that did not ack" {
	# Every worker acked: the end record alone.
	run raw -F 2 "$SOCK" send hello
	assert_status 0
	assert_line '^end id=1 result=0 \(ok\) acked=3 workers=3 '
	refute_line '^worker '
	# A worker that does not ack in time still gets its record.
	stop_fanoutd
	write_config max_message_bytes=100 ack_timeout_ms="$(ms 300)"
	start_fanoutd
	stopped=$(worker_pid 1)
	kill -STOP "$stopped"
	run raw -F 2 "$SOCK" send hello
	kill -CONT "$stopped"
	assert_status 0
	assert_line '^end id=1 result=1 .* acked=2 workers=3 '
	assert_line '^worker id=1 index=1 .* outcome=queued '
	[ "$(printf '%s\n' "${lines[@]}" | grep -c '^worker ')" -eq 1 ] ||
	    fail "expected one worker record" "$(show_run)"
}

@test "pipelined requests in one write: one reply each, ids echoed" {
	run raw "$SOCK" pipeline 3
	assert_status 0
	[ "$(printf '%s\n' "${lines[@]}" | grep -c '^end ')" -eq 3 ] ||
	    fail "expected 3 end frames" "$(show_run)"
	assert_line '^end id=1 result=0 '
	assert_line '^end id=2 result=0 '
	assert_line '^end id=3 result=0 '
	[ "$(printf '%s\n' "${lines[@]}" | grep -c '^worker id=3 ')" -eq 3 ]
}

@test "bad protocol version: error reply, connection closed" {
	bad_case 3 badversion
}

@test "unknown frame type: 'unknown request type', connection closed" {
	bad_case 4 badtype
}

@test "a worker frame type on the control socket: error, closed" {
	bad_case '3|4' wrongtype
}

@test "garbage (an HTTP request): error reply, connection closed" {
	bad_case 3 garbage
}

@test "a length above any limit (16 MiB + 9): error, closed before the payload" {
	bad_case '2|3' oversize
}

@test "length 0xffffffff: error, connection closed" {
	bad_case '2|3' huge-length
}

@test "CTL_SEND shorter than its own header: error, closed" {
	bad_case 3 short-send
}

@test "a truncated frame (EOF inside the payload): connection closed" {
	bad_case '' truncated
}

@test "a truncated header (EOF after 7 bytes): connection closed" {
	bad_case '' truncated-header
}

@test "a message above max_message_bytes: 'too big' with the limit" {
	run raw "$SOCK" send-too-big 101
	assert_status 0
	assert_line '^end id=1 result=2 \(message larger than max_message_bytes\) acked=0 workers=[0-9]+ limit=100 msg_id=0 queued=0$'
	refute_line '^worker '
	run raw "$SOCK" send-too-big 100
	assert_status 0
	assert_line '^end id=1 result=0 .* acked=3 workers=3 '
	after_ok
}

@test "a client stuck mid-frame does not hold up the others" {
	local w c

	mkfifo "$T/hold"
	exec {w}<>"$T/hold"
	# Half a header, then silence.
	spawn "$CTL_RAW" -H -t "$(ms 5000)" "$SOCK" hex 01100000 \
	    <"$T/hold" >"$T/raw.out"
	c=$BG_PID
	wait_for "grep -qx sent '$T/raw.out'" "$(ms 5000)"
	after_ok
	run ctl status
	assert_status 0
	alive "$c" || fail "the stuck client was dropped early?" "$(cat "$T/raw.out")"
	exec {w}>&-
	kill -TERM "$c"
}

@test "many bad clients in a row, the daemon keeps serving" {
	local i what

	for i in 1 2 3 4 5; do
		for what in badversion badtype garbage oversize truncated; do
			run raw -c "$SOCK" "$what"
			[ "$status" -eq 0 ] || fail "round $i, $what:" "$(show_run)"
		done
	done
	after_ok
}

@test "past 128 control connections: 'too many' for the next, the rest served" {
	need_python
	# Hold 128 connections, each proven accepted by a status round trip
	# (so none waits in the listen backlog), then open one more: its only
	# frame must be CTL_END with CTL_RES_BUSY (6), then EOF: a 16-byte
	# header and a 32-byte CTL_END (protocol 3).
	run python3 - "$SOCK" <<'PY'
import os, socket, struct, sys

V = int(os.environ["FANOUT_PROTO"])

def read_until_end(s):
    data = b""
    while True:
        while len(data) >= 16:
            length = struct.unpack(">I", data[4:8])[0]
            if len(data) < 16 + length:
                break
            frame, data = data[:16 + length], data[16 + length:]
            if frame[1] == 19:
                return frame
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection %d closed before CTL_END" % len(held))
        data += chunk

held = []
for i in range(128):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(sys.argv[1])
    held.append(s)
    s.sendall(struct.pack(">BBHIQ", V, 17, 0, 0, i + 1))
    end = read_until_end(s)
    result = struct.unpack(">I", end[16:20])[0]
    if result != 0:
        sys.exit("connection %d: status answered with result %d" % (i + 1, result))
s = socket.socket(socket.AF_UNIX)
s.settimeout(60)
s.connect(sys.argv[1])
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print("type=%d result=%d len=%d" % (data[1], struct.unpack(">I", data[16:20])[0], len(data)))
PY
	assert_status 0
	assert_line '^type=19 result=6 len=48$'
	# The held connections are gone with the script: the daemon serves.
	after_ok
}
