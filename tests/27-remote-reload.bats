#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Reload and remote workers (issues 8 and 11): fanoutctl reload adds and
# removes the remote workers remote_workers names, as it does local ones.
# An added one gets its consumer (created off the event loop); a removed
# one gets no new broadcasts, what waits on it is answered `removed', and
# its consumer stays in the broker, shown as unlisted.  nats-server is
# started by each test in its own network namespace, as in
# 25-remote-pool.bats, with the same helpers (remote-helpers.bash).

load helpers
load remote-helpers

setup() {
	fanout_setup
	nats_setup
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
	run npub info r2
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
	run npub info r2
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
	wait_for "npub info r2 | grep -q '^pending 1 '" "$(ms 10000)"
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
	wait_for "npub info r2 >/dev/null 2>&1" "$(ms 15000)"
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
	run npub info r1
	assert_line '^pending 1 '
}
