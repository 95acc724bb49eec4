#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Reload and remote workers (issues 8 and 11): fanoutctl reload adds and
# removes the remote workers remote_workers names, as it does local ones.
# An added one gets its consumer (created off the event loop); a removed
# one gets no new broadcasts, what waits on it is answered `removed', and
# its consumer stays in the broker, shown as unlisted.  nats-server is
# started by each test in its own network namespace, as in
# 25-remote-pool.bats, whose helpers are repeated here.

load helpers

HD=$FANOUT_SRCDIR/tests/handlers
RWORKER=$FANOUT_BUILDDIR/src/fanout-remote-worker
NATS_PUB=$FANOUT_BUILDDIR/tests/nats-pub

setup() {
	fanout_setup
	NATS_SERVER=$(command -v nats-server) ||
	    fail "nats-server not installed (build-aux/install-deps)"
	NATS_PORT=4222
	[ -n "$NS_PID" ] || NATS_PORT=$((BASE_PORT + 150))
	NATS_URL=nats://127.0.0.1:$NATS_PORT
}

teardown() {
	fanout_teardown
}

nats_start() {
	spawn in_ns "$NATS_SERVER" -a 127.0.0.1 -p "$NATS_PORT" -js \
	    -sd "$T/js" >>"$T/nats.log" 2>&1
	NATS_PID=$BG_PID
}

nats_stop() {
	kill -TERM "$NATS_PID"
	wait_pid_gone "$NATS_PID" "$(ms 10000)" ||
	    fail "nats-server did not stop"
}

# pool_config LOCAL NAME... [-- SETTING=VALUE...]: as in 25-remote-pool.
pool_config() {
	local n=$1 names="" extra=()

	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		names+="${names:+, }\"$1\""
		shift
	done
	[ "${1:-}" = -- ] && { shift; extra=("$@"); }
	write_config workers="$n" \
	    handler="[ \"$HD/exec-record.sh\", \"$T\" ]" \
	    nats_servers="[ \"$NATS_URL\" ]" \
	    remote_workers="[ $names ]" \
	    remote_ack_wait_ms=1000 "${extra[@]}"
}

declare -A RW_PID
rw_start() {
	local name=$1 out

	mkdir -p "$T/$name" "$T/state.$name"
	cat >"$T/$name.conf" <<-EOC
	nats_servers = [ "$NATS_URL" ];
	handler = [ "$HD/exec-record.sh", "$T/$name" ];
	handler_timeout_ms = $(ms 10000);
	EOC
	LAUNCHES=$((LAUNCHES + 1))
	out=$T/nw.$LAUNCHES.out
	"${NS_RUN[@]}" env FANOUT_TEST_TAG="$T" "$NOTIFY_WAIT" \
	    -t "$(ms 20000)" -o "$T/notify.$name.$LAUNCHES.log" \
	    -e "$T/rw.$name.log" -- "$RWORKER" -vv --name "$name" \
	    --config "$T/$name.conf" --state-dir "$T/state.$name" >"$out" ||
	    fail "fanout-remote-worker $name did not become ready" \
	    "$(tail -n 20 "$T/rw.$name.log")"
	RW_PID[$name]=$(cat "$out")
	SUPERVISORS+=("$(sed -n 's/.* supervisor=\([0-9]*\) .*/\1/p' \
	    "$T/notify.$name.$LAUNCHES.log" | head -n 1)")
	BG_PIDS+=("${RW_PID[$name]}")
}

rw_stop() {
	kill -TERM "${RW_PID[$1]}"
	wait_pid_gone "${RW_PID[$1]}" "$(ms 10000)" ||
	    fail "fanout-remote-worker $1 did not stop"
}

remote_state() {
	ctl status | awk -v n="$1" '
	    $1 == "WORKER" { for (k = 1; k <= NF; k++) c[tolower($k)] = k; next }
	    $1 == n { print $c["state"]; exit }'
}

remote_is() {
	[ "$(remote_state "$1")" = "$2" ]
}

handled() {
	cat "$T/$1"/msgs.* 2>/dev/null
}

lines_of() {
	handled "$1" | wc -l
}

# consumer_info NAME: the broker's word on NAME's consumer.
consumer_info() {
	"${NS_RUN[@]}" "$NATS_PUB" -s "$NATS_URL" info "$1"
}

@test "reload adds a remote worker: its consumer is created, the next send reaches it" {
	nats_start
	pool_config 1 r1
	start_fanoutd
	rw_start r1
	wait_for "remote_is r1 pulling" "$(ms 10000)"
	pool_config 1 r1 r2
	run --separate-stderr ctl reload
	assert_status 0
	assert_line '^added  *remote worker r2: its consumer is in the broker$'
	run consumer_info r2
	assert_status 0
	rw_start r2
	wait_for "remote_is r2 pulling" "$(ms 10000)"
	run ctl send "to both"
	assert_status 0
	assert_line '^worker r1  remote  acked '
	assert_line '^worker r2  remote  acked '
	[ "$(handled r2)" = "to both" ] || fail "r2:" "$(handled r2)"
	# Unchanged remote_workers: nothing said about them.
	run --separate-stderr ctl reload
	assert_line "^unchanged  *$CONF: no change$"
}

@test "reload removes a remote worker: no new broadcasts, unlisted, its consumer kept" {
	nats_start
	pool_config 1 r1 r2
	start_fanoutd
	rw_start r1
	wait_for "remote_is r1 pulling" "$(ms 10000)"
	wait_for "remote_is r2 missing" "$(ms 10000)"
	run ctl send "before"
	assert_line '^worker r2  remote  queued '
	pool_config 1 r1
	run --separate-stderr ctl reload
	assert_status 0
	assert_line "^removed  *remote worker r2: 0 waiting broadcasts answered \`removed'; its consumer and stored messages stay in the broker \\(unlisted\\)$"
	run ctl send "after"
	assert_status 0
	refute_line '^worker r2 '
	assert_line '^worker r1  remote  acked '
	wait_for "remote_is r2 unlisted" "$(ms 10000)"
	# Still in the broker, with what it held.
	run consumer_info r2
	assert_status 0
	assert_line '^pending 1 ack_pending 0 '
	# Listed again: the same consumer, its backlog delivered.
	pool_config 1 r1 r2
	run --separate-stderr ctl reload
	assert_line '^added  *remote worker r2: its consumer is in the broker$'
	rw_start r2
	wait_for '[ "$(lines_of r2)" -ge 1 ]' "$(ms 15000)"
	[ "$(handled r2)" = before ] || fail "r2:" "$(handled r2)"
}

@test "a send waiting on a remote worker that a reload removes is answered removed" {
	local out=$T/send.out

	nats_start
	pool_config 1 r1 r2
	start_fanoutd
	wait_for "remote_is r2 missing" "$(ms 10000)"
	# -w: waits for r2's receipt, which will not come.
	spawn ctl -t "$(ms 30000)" send -w "held" >"$out"
	wait_for "consumer_info r2 | grep -q '^pending 1 '" "$(ms 10000)"
	alive "$BG_PID" || fail "the send ended early" "$(cat "$out")"
	pool_config 1 r1
	run --separate-stderr ctl reload
	assert_status 0
	assert_line "^removed  *remote worker r2: 1 waiting broadcast answered \`removed'; its consumer and stored messages stay in the broker \\(unlisted\\)$"
	wait_pid_gone "$BG_PID" "$(ms 10000)" ||
	    fail "the send still waits" "$(cat "$out")"
	run cat "$out"
	assert_line '^worker r2  remote  removed'
}

@test "reload with the broker down: the worker is added, down, then live when the broker is back" {
	nats_start
	pool_config 1 r1 -- start_timeout_ms=$(ms 1000)
	start_fanoutd
	wait_for "remote_is r1 missing" "$(ms 10000)"
	nats_stop
	pool_config 1 r1 r2 -- start_timeout_ms=$(ms 1000)
	run --separate-stderr ctl reload
	assert_status 0
	assert_line '^added  *remote worker r2: the broker is not reachable; `down'"'"' until its consumer is created there$'
	run ctl send "no broker"
	assert_line '^worker r2  remote  down '
	nats_start
	wait_for "consumer_info r2 >/dev/null 2>&1" "$(ms 15000)"
	wait_for "remote_is r2 missing" "$(ms 15000)"
	rw_start r2
	wait_for "remote_is r2 pulling" "$(ms 10000)"
	run ctl send "broker back"
	assert_line '^worker r2  remote  acked '
	[ "$(handled r2)" = "broker back" ] || fail "r2:" "$(handled r2)"
}

@test "a reload keeps the broker's settings until a restart, and says so" {
	nats_start
	pool_config 1 r1
	start_fanoutd
	wait_for "remote_is r1 missing" "$(ms 10000)"
	pool_config 1 r1 -- nats_stream='"OTHER"'
	run --separate-stderr ctl reload
	assert_status 0
	assert_line '^kept  *nats_stream: "OTHER" needs a restart of fanoutd; "FANOUT" stays in effect until then$'
	refute_line '^(added|removed) '
	run ctl send "same stream"
	assert_line '^worker r1  remote  queued '
	run consumer_info r1
	assert_line '^pending 1 '
}
