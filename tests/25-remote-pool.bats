#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Remote workers (issue 11), fanoutd's side: a pool of local workers and
# fanout-remote-worker processes reading their queues in a nats-server with
# JetStream, which each test starts in its own network namespace (store_dir
# in the test's temp dir).  fanoutd creates the stream and the consumers.
# What a handler did is read from the files tests/handlers/exec-record.sh
# leaves: $T/msgs.I for local worker I, $T/NAME/msgs.* for remote NAME.

load helpers
load remote-helpers

setup() {
	fanout_setup
	nats_setup
}

@test "fanoutd -t checks the remote settings" {
	write_config nats_servers='[ "http://x" ]'
	run "$FANOUTD" -t -c "$CONF"
	assert_status 1
	assert_line 'nats_servers: "http://x": must start with nats:// or tls://'
	write_config remote_workers='[ "a.b" ]'
	run "$FANOUTD" -t -c "$CONF"
	assert_status 1
	assert_line "remote_workers: \"a.b\" may hold only letters"
	write_config nats_servers='[ "nats://127.0.0.1:1" ]' \
	    remote_workers='[ "ok", "a b" ]'
	run "$FANOUTD" -t -c "$CONF"
	assert_status 1
	assert_line "remote_workers: \"a b\" may hold only letters"
	write_config remote_workers='[ "w1" ]'
	run "$FANOUTD" -t -c "$CONF"
	assert_status 1
	assert_line 'remote_workers: needs nats_servers'
	write_config nats_servers='[ "nats://127.0.0.1:1" ]' \
	    nats_tls_cert="\"$T/missing.crt\"" nats_tls_key="\"$T/missing.key\""
	run "$FANOUTD" -t -c "$CONF"
	assert_status 1
	assert_line "nats_tls_cert: $T/missing.crt: No such file or directory"
	write_config nats_servers='[ "nats://127.0.0.1:1" ]' \
	    remote_workers='[ "w-1", "w_2" ]'
	run "$FANOUTD" -t -v -c "$CONF"
	assert_status 0
	assert_line '^remote_workers = \[ "w-1", "w_2" \];$'
	assert_line '^nats_stream = "FANOUT";$'
	assert_line '^nats_subject_prefix = "fanout";$'
	assert_line '^nats_stream_replicas = 0;$'
	# The broker is not there: said, and the rest is OK.
	assert_line '^fanoutd: the broker \(nats://127\.0\.0\.1:1\) is not reachable: [^;]+; max_payload and JetStream not checked$'
	write_config nats_servers='[ "nats://127.0.0.1:1" ]' \
	    nats_stream_replicas=6
	run "$FANOUTD" -t -c "$CONF"
	assert_status 1
	assert_line ':[0-9]+: nats_stream_replicas: must be between 0 and 5$'

	# A broker whose max_payload leaves no room for max_message_bytes,
	# and without JetStream: both said, exit 1.
	cat >"$T/small.conf" <<-EOC
	listen: 127.0.0.1:$NATS_PORT
	max_payload: 65536
	EOC
	nats_start "$T/small.conf"
	write_config nats_servers="[ \"$NATS_URL\" ]" max_message_bytes=65000
	wait_for '"${NS_RUN[@]}" "$FANOUTD" -t -c "$CONF" 2>&1 |
	    grep -q "max_payload"' "$(ms 10000)"
	run "${NS_RUN[@]}" "$FANOUTD" -t -c "$CONF"
	assert_status 1
	assert_line "^fanoutd: $CONF: max_message_bytes is 65000, but the broker takes messages of at most 65536 bytes, 1024 of them for headers \\(max_payload\\): lower max_message_bytes to 64512, or raise max_payload in nats-server\\.conf$"
	assert_line "^fanoutd: the broker has no JetStream for fanoutd's user: enable it in nats-server\\.conf \\(jetstream \\{ store_dir: \\.\\.\\. \\}\\)$"
	refute_line 'configuration OK'
	write_config nats_servers="[ \"$NATS_URL\" ]" max_message_bytes=64512
	run "${NS_RUN[@]}" "$FANOUTD" -t -c "$CONF"
	assert_status 1
	refute_line 'max_message_bytes is'
	assert_line 'has no JetStream'
	nats_stop
	# With JetStream and room: OK, nothing said.
	nats_start
	write_config nats_servers="[ \"$NATS_URL\" ]"
	wait_for '"${NS_RUN[@]}" "$FANOUTD" -t -c "$CONF" >/dev/null 2>&1' \
	    "$(ms 10000)"
	run "${NS_RUN[@]}" "$FANOUTD" -t -c "$CONF"
	assert_status 0
	[ "$output" = "configuration OK" ] || fail "not only OK" "$(show_run)"
}

@test "a mixed pool: every message reaches every handler, verdicts by name" {
	local i n

	nats_start
	pool_config 2 r1 r2 r3
	start_fanoutd
	for n in r1 r2 r3; do rw_start "$n"; done
	for n in r1 r2 r3; do
		wait_for "remote_is $n pulling" "$(ms 10000)"
	done
	for i in 1 2 3 4 5; do
		run ctl send "message $i"
		assert_status 0
		[ "${#lines[@]}" -eq 6 ] || fail "$(show_run)"
		assert_line '^worker 0  pid [0-9]+  port [0-9]+  acked +[0-9.]+ ms$'
		assert_line '^worker 1  pid [0-9]+  port [0-9]+  acked +[0-9.]+ ms$'
		for n in r1 r2 r3; do
			assert_line "^worker $n  remote  acked +[0-9.]+ ms\$"
		done
		assert_line '^delivered to 5/5 workers \(message [0-9]+\)$'
	done
	for f in "$T/msgs.0" "$T/msgs.1"; do
		[ "$(cat "$f")" = "$(printf 'message %s\n' 1 2 3 4 5)" ] ||
		    fail "$f:" "$(cat "$f")"
	done
	for n in r1 r2 r3; do
		[ "$(handled "$n")" = "$(printf 'message %s\n' 1 2 3 4 5)" ] ||
		    fail "$n:" "$(handled "$n")"
	done
	# JSON names remote workers; status shows them with their counts.
	run ctl --json send "message 6"
	assert_status 0
	json_check 'sorted(w["name"] or str(w["index"]) for w in o["workers"]) == ["0", "1", "r1", "r2", "r3"]'
	json_check 'all((w["index"], w["port"]) == (None, None) for w in o["workers"] if w["name"])'
	# What a remote worker has not is null; the counts include them.
	run ctl -j status
	assert_status 0
	json_check 'o["workers_total"] == 5 and o["workers_up"] == 5'
	json_check 'all((w["index"], w["pid"], w["port"], w["state_ms"], w["queued_bytes"], w["restarts"]) == (None,) * 6 for w in o["workers"] if w["name"])'
	json_check '[w["name"] for w in o["workers"]] == [None, None, "r1", "r2", "r3"]'
	run ctl -j stats
	assert_status 0
	json_check 'o["workers_total"] == 5 and [w["name"] or w["index"] for w in o["workers"]] == [0, 1, "r1", "r2", "r3"]'
	run ctl status
	assert_status 0
	assert_line '^fanoutd [^ ]+  pid [0-9]+  up 5/5  '
	assert_line '^5/5 workers up, [0-9]+ queued$'
	# (QUEUED is the broker's word at its last poll: not checked here.)
	assert_line '^ +r2 +- +- +pulling +- +- +6 +0 +[0-9]+ +0 +- +[0-9.]+ms '
	# Pipelined: 40 messages in flight 8 at a time, all acked by all.
	run bash -c "seq -f 'line %g' 40 | timeout -k 2 $(ms 60) \
	    '$FANOUTCTL' -s '$SOCK' send --window 8 -"
	assert_status 0
	for n in r1 r2 r3; do
		[ "$(handled "$n" | tail -n 40)" = "$(seq -f 'line %g' 40)" ] ||
		    fail "$n:" "$(handled "$n")"
	done
	# Counters and round trips per name, local ones per index.
	run ctl stats --prometheus
	assert_status 0
	assert_line '^fanout_worker_acked_total\{worker="1"\} 46$'
	assert_line '^fanout_worker_acked_total\{worker="r1"\} 46$'
	assert_line '^fanout_worker_up\{worker="r2"\} 1$'
	assert_line '^fanout_worker_ack_rtt_seconds_count\{worker="r3"\} 46$'
	run ctl stats
	assert_status 0
	assert_line '^r2 +pulling +46 +0 +0 +[0-9]+ +0 '
}

@test "broadcasts larger than the socket takes at once: whole, in order" {
	local i n

	nats_start
	pool_config 1 r1 r2 r3 r4 -- max_message_bytes=1000000
	start_fanoutd
	for n in r1 r2 r3 r4; do
		rw_start "$n" "max_message_bytes = 1000000;"
	done
	for n in r1 r2 r3 r4; do
		wait_for "remote_is $n pulling" "$(ms 10000)"
	done
	# Three messages of 1 MB for four remote workers: 12 MB to the
	# broker at once, more than a loopback socket's send buffer holds
	# (4 MiB at most), so fanoutd writes the rest as room comes.
	for i in 1 2 3; do
		head -c 750000 /dev/urandom | base64 -w 0
		echo
	done >"$T/big"
	[ "$(wc -c <"$T/big")" -eq 3000003 ] || fail "the messages' size"
	run ctl -t "$(ms 30000)" send --window 3 - <"$T/big"
	assert_status 0
	assert_line '^fanoutctl: 3 messages: 3 to all workers, 0 partial, 0 refused'
	for n in r1 r2 r3 r4; do
		cmp -s <(handled "$n") "$T/big" || fail "$n got other messages"
	done
	cmp -s "$T/msgs.0" "$T/big" || fail "worker 0 got other messages"
}

@test "a stopped remote worker: queued, then its backlog in order" {
	local i age

	nats_start
	pool_config 1 r1 r2
	start_fanoutd
	rw_start r1
	rw_start r2
	wait_for "remote_is r2 pulling" "$(ms 10000)"
	rw_stop r2
	wait_for "remote_is r2 missing" "$(ms 10000)"
	for i in 1 2 3; do
		run ctl send "backlog $i"
		assert_status 1
		assert_line '^worker 0  pid [0-9]+  port [0-9]+  acked '
		assert_line '^worker r1  remote  acked '
		assert_line '^worker r2  remote  queued +\(worker missing; stored by the broker\)$'
		assert_line '^delivered to 2/3 workers, 1 queued \(message [0-9]+\)$'
	done
	[ "$(lines_of r2)" -eq 0 ] || fail "r2 handled while stopped"
	# The monitoring check sees it away, with its backlog (as the broker
	# says at its next poll).
	wait_for "ctl check | grep -q '^WARNING: 2/3 workers up, 3 queued; not up: r2 missing | up=2;3:;1:;0;3 '" \
	    "$(ms 5000)"
	run ctl check
	assert_status 1
	# Status says how long r2's oldest has waited; r1 has none waiting.
	run ctl status
	assert_status 0
	[ "$(printf '%s\n' "$output" | awk '
	    $1 == "WORKER" { for (k = 1; k <= NF; k++) c[$k] = k; next }
	    $1 == "r1" || $1 == "r2" { printf "%s=%s\n", $1, $c["OLDEST"] }' |
	    sed 's/=[0-9.]*[0-9]m*s$/=AGE/' | tr '\n' ' ')" = "r1=- r2=AGE " ] ||
	    fail "OLDEST" "$(show_run)"
	run ctl -j status
	json_check '[(w["oldest_ms"] or 0) > 0 for w in o["workers"] if w.get("name") == "r2"] == [True]'
	age=$(py '[w["oldest_ms"] for w in o["workers"] if w["name"] == "r2"][0]' <<<"$output")
	# fanoutd restarted: the age of what it published before comes from
	# the broker (at its next poll), and has not gone back.
	stop_fanoutd
	start_fanoutd
	wait_for "ctl -j status | py '[w[\"oldest_ms\"] or 0 for w in o[\"workers\"] if w[\"name\"] == \"r2\"][0] >= $age' | grep -qx True" \
	    "$(ms 10000)" || fail "no age for r2 after a restart" "$(ctl status)"
	rw_start r2
	wait_for '[ "$(lines_of r2)" -ge 3 ]' "$(ms 15000)"
	[ "$(handled r2)" = "$(printf 'backlog %s\n' 1 2 3)" ] ||
	    fail "r2:" "$(handled r2)"
	# And new messages are acked by it again, once it pulls.
	wait_for "remote_is r2 pulling" "$(ms 10000)"
	run ctl send "after"
	assert_status 0
	assert_line '^worker r2  remote  acked '
}

@test "a remote worker's bound reached: full for that worker only" {
	local i

	nats_start
	pool_config 1 r1 r2 -- queue_max_messages=2
	start_fanoutd
	rw_start r1
	wait_for "remote_is r1 pulling" "$(ms 10000)"
	wait_for "remote_is r2 missing" "$(ms 10000)"
	for i in 1 2; do
		run ctl send "m$i"
		assert_status 1
		assert_line '^worker r2  remote  queued '
	done
	run ctl send "m3"
	assert_status 1
	assert_line '^worker 0  pid [0-9]+  port [0-9]+  acked '
	assert_line '^worker r1  remote  acked '
	assert_line '^worker r2  remote  full +\(queue full, refused\)$'
	assert_line '^delivered to 2/3 workers \(message [0-9]+\)$'
	[ "$(handled r1)" = "$(printf 'm%s\n' 1 2 3)" ] || fail "r1:" "$(handled r1)"
	# r2 gets what was stored, not what was refused.
	rw_start r2
	wait_for '[ "$(lines_of r2)" -ge 2 ]' "$(ms 15000)"
	# Until the broker says r2 pulls again, fanoutd says `queued' at once.
	wait_for "remote_is r2 pulling" "$(ms 10000)"
	run ctl send "m4"
	assert_status 0
	[ "$(handled r2)" = "$(printf 'm%s\n' 1 2 4)" ] || fail "r2:" "$(handled r2)"
}

@test "the broker restarted mid-stream: nothing reported queued is lost" {
	local i queued=()

	nats_start
	pool_config 1 r1 -- ack_timeout_ms=$(ms 2000)
	start_fanoutd
	wait_for "remote_is r1 missing" "$(ms 10000)"
	for i in 1 2 3; do
		run ctl send "before $i"
		assert_line '^worker r1  remote  queued ' && queued+=("before $i")
	done
	nats_stop
	# No broker: `down' at once, never `queued'.
	wait_for "remote_is r1 down" "$(ms 10000)"
	run ctl send "during"
	assert_status 1
	assert_line '^worker 0  pid [0-9]+  port [0-9]+  acked '
	assert_line '^worker r1  remote  down +\(not stored by the broker\)$'
	nats_start
	wait_for "remote_is r1 missing" "$(ms 15000)"
	for i in 1 2 3; do
		run ctl send "after $i"
		assert_line '^worker r1  remote  queued ' && queued+=("after $i")
	done
	[ "${#queued[@]}" -eq 6 ] || fail "queued: ${queued[*]}"
	rw_start r1
	wait_for '[ "$(lines_of r1)" -ge 6 ]' "$(ms 15000)"
	[ "$(handled r1)" = "$(printf '%s\n' "${queued[@]}")" ] ||
	    fail "r1:" "$(handled r1)"
}

@test "the broker gone: SIGTERM still stops fanoutd at once, exit 0" {
	local t0

	nats_start
	pool_config 1 r1
	start_fanoutd
	wait_for "remote_is r1 missing" "$(ms 10000)"
	nats_stop
	wait_for "remote_is r1 down" "$(ms 10000)"
	t0=$(date +%s%N)
	kill -TERM "$FANOUTD_PID"
	wait_pid_gone "$FANOUTD_PID" "$(ms 5000)" ||
	    fail "fanoutd still runs 5 s after SIGTERM with the broker gone"
	assert_file_line "$FANOUTD_LOG" '^fanoutd: stopped$'
	echo "# stopped in $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&3
}

@test "no broker at start: ready anyway, down until the broker comes" {
	pool_config 1 r1 -- start_timeout_ms=$(ms 1500)
	start_fanoutd
	assert_file_line "$FANOUTD_LOG" 'stream FANOUT not set up within [0-9]+ ms'
	run ctl send "early"
	assert_status 1
	assert_line '^worker 0  pid [0-9]+  port [0-9]+  acked '
	assert_line '^worker r1  remote  down +\(not stored by the broker\)$'
	nats_start
	wait_for "remote_is r1 missing" "$(ms 15000)"
	run ctl send "late"
	assert_line '^worker r1  remote  queued '
	rw_start r1
	wait_for '[ "$(lines_of r1)" -ge 1 ]' "$(ms 15000)"
	[ "$(handled r1)" = late ] || fail "r1:" "$(handled r1)"
}

@test "a consumer not in remote_workers is shown as unlisted, and kept" {
	nats_start
	pool_config 1 r1 old
	start_fanoutd
	wait_for "remote_is old missing" "$(ms 10000)"
	run ctl send "for old"
	assert_line '^worker old  remote  queued '
	stop_fanoutd
	pool_config 1 r1
	start_fanoutd
	wait_for "remote_is old unlisted" "$(ms 10000)"
	run ctl status
	assert_line '^ +old +- +- +unlisted +- +- +0 +0 +1 '
	run ctl send "not for old"
	assert_status 1
	[ "${#lines[@]}" -eq 3 ] || fail "$(show_run)"
	refute_line '^worker old '
	# Still in the broker, with what it held.
	run npub info old
	assert_status 0
	assert_line '^pending 1 ack_pending 0 '
}

@test "with per-user permissions: fanoutd's own, and each worker's" {
	# What fanoutd's user needs: its workers' subjects, the stream's and
	# the consumers' API, receipts and its inboxes; a worker's user only
	# its own consumer, acks, receipts and inbox (issue 11).
	cat >"$T/nats.conf" <<-EOC
	listen: 127.0.0.1:$NATS_PORT
	jetstream { store_dir: "$T/js" }
	authorization { users = [
	  { user: fanoutd, password: f, permissions: {
	    publish: { allow: [ "fanout.w.*", "\$JS.API.INFO",
	      "\$JS.API.STREAM.CREATE.FANOUT", "\$JS.API.STREAM.UPDATE.FANOUT",
	      "\$JS.API.STREAM.INFO.FANOUT", "\$JS.API.STREAM.MSG.GET.FANOUT",
	      "\$JS.API.CONSUMER.CREATE.FANOUT.>",
	      "\$JS.API.CONSUMER.DURABLE.CREATE.FANOUT.*",
	      "\$JS.API.CONSUMER.INFO.FANOUT.*",
	      "\$JS.API.CONSUMER.LIST.FANOUT" ] }
	    subscribe: { allow: [ "_INBOX.>", "fanout.r.>" ] } } }
	  { user: r1, password: p, permissions: {
	    publish: { allow: [ "\$JS.API.CONSUMER.INFO.FANOUT.r1",
	      "\$JS.API.CONSUMER.MSG.NEXT.FANOUT.r1", "\$JS.ACK.FANOUT.r1.>",
	      "fanout.r.r1.>" ] }
	    subscribe: { allow: [ "_INBOX.r1.>" ] } } }
	] }
	EOC
	nats_start "$T/nats.conf"
	NATS_URL=nats://fanoutd:f@127.0.0.1:$NATS_PORT
	pool_config 1 r1 r2
	start_fanoutd
	NATS_URL=nats://r1:p@127.0.0.1:$NATS_PORT
	rw_start r1
	wait_for "remote_is r1 pulling" "$(ms 10000)"
	run ctl send "allowed"
	assert_status 1
	assert_line '^worker r1  remote  acked '
	assert_line '^worker r2  remote  queued '
	[ "$(handled r1)" = allowed ] || fail "r1:" "$(handled r1)"
	# r1's identity cannot forge r2's receipts (whatever the sequence):
	# the broker refuses them, and r2 has handled nothing.
	for i in 1 2 3; do
		npub receipt r2 "$i.0.0" "forged" >/dev/null 2>&1 || true
	done
	# A receipt r1 may send is heard: the forged ones had their chance.
	npub receipt r1 x.0.0 "" || fail "r1 could not send its own receipt"
	wait_for 'grep -q "malformed receipt from r1" "$FANOUTD_LOG"' \
	    "$(ms 5000)"
	run ctl stats
	assert_line '^r2 +missing +0 +0 +0 +[0-9]+ '
	! grep -Eqi "permission|not permitted" "$FANOUTD_LOG" ||
	    fail "fanoutd was refused something" "$(cat "$FANOUTD_LOG")"
}

@test "malformed receipts are ignored, and fanoutd goes on" {
	local long bad

	nats_start
	pool_config 1 r1
	start_fanoutd
	rw_start r1
	wait_for "remote_is r1 pulling" "$(ms 10000)"
	run ctl send "first"
	assert_status 0
	long=$(printf '%0300d' 0)
	# In the subject, SEQ.STATUS.ID: a bad sequence, a sequence past 64
	# bits, a bad status, a status past 32 bits, a bad id, a field
	# missing, one too many, a reason past FANOUT_REASON_MAX; the form
	# without fields; and one for a name not listed (not ours: dropped
	# without a word).
	for bad in "x1.0.0 bogus" "99999999999999999999999.0.0 r" \
	    "1.ok.0 r" "1.4294967296.0 r" "1.0.x r" "1.0 r" "1.0.0.0 r" \
	    "1.0.0 $long"; do
		# shellcheck disable=SC2086  # the fields, split on purpose
		npub receipt r1 $bad || fail "nats-pub could not send: $bad"
	done
	npub receipt r1 "" "" || fail "nats-pub could not send the old form"
	npub receipt zz 1.0.0 "" || fail "nats-pub could not send the receipt"
	wait_for '[ "$(grep -c "malformed receipt from r1" "$FANOUTD_LOG")" -ge 8 ]' \
	    "$(ms 5000)"
	assert_file_line "$FANOUTD_LOG" \
	    'a receipt from r1 without its sequence and status'
	run ctl send "still fine"
	assert_status 0
	assert_line '^worker r1  remote  acked '
	[ "$(handled r1)" = "$(printf '%s\n' first "still fine")" ] ||
	    fail "r1:" "$(handled r1)"
	run ctl status
	assert_line '^ +r1 +- +- +pulling +- +- +2 +0 '
}
