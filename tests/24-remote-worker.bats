#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Remote workers (issue 11), the worker's side: fanout-remote-worker
# against a nats-server with JetStream that each test starts in its own
# network namespace (store_dir in the test's temp dir).  tests/nats-pub
# stands in for fanoutd: it creates the stream and consumers, publishes
# and collects the receipts.  What a handler did is read from the files
# the handlers in tests/handlers/ leave.

load helpers
load remote-helpers

setup() {
	fanout_setup
	nats_setup
}

# nats_start_w1: the broker, then the stream and consumer w1 (ack wait
# 1 s, so that redeliveries come soon); nats-pub retries its connect
# until a deadline.
nats_start_w1() {
	nats_start
	npub -t "$(ms 10000)" setup -a 1000 w1 ||
	    fail "nats-server did not come up" "$(tail -n 20 "$T/nats.log")"
}

# receipts_start NAME: collects NAME's receipts in $T/receipts.NAME, one
# line each; returns once it is subscribed.
receipts_start() {
	local line="" fd

	mkfifo "$T/rc.$1"
	# Opened read-write, so that neither side blocks in open().
	exec {fd}<>"$T/rc.$1"
	spawn in_ns "$NATS_PUB" -s "$NATS_URL" receipts "$1" \
	    "$T/receipts.$1" >"$T/rc.$1"
	read -r -t "$(($(ms 10000) / 1000))" -u "$fd" line || true
	exec {fd}>&-
	[ "$line" = ready ] || fail "the receipt collector did not start"
}

# rw_config HANDLER [ARG...]: the worker's configuration file, $T/w.conf.
rw_config() {
	local a s=""

	for a; do
		s+="${s:+, }\"$a\""
	done
	cat >"$T/w.conf" <<-EOC
	nats_servers = [ "$NATS_URL" ];
	handler = [ $s ];
	handler_timeout_ms = $(ms 10000);
	${RW_EXTRA:-}
	EOC
	mkdir -p "$T/state"
}

# w1_start [--no-term-check] ARGS...: fanout-remote-worker --name w1
# with $T/w.conf (rw_launch); sets RW_PID.  Unless told, teardown stops
# it with SIGTERM and insists it exits 0.
w1_start() {
	local check=1

	[ "$1" = --no-term-check ] && { check=0; shift; }
	rw_launch w1 "$T/w.conf" "$T/state" "$@"
	RW_PID=$RW_LAUNCHED
	if [ "$check" = 1 ]; then
		DAEMONS+=("$RW_PID")
		DAEMON_LOG[$RW_PID]=$RW_NOTIFY
	fi
}

# w1_term: stops the worker w1_start started with SIGTERM; it exits 0.
w1_term() {
	kill -TERM "$RW_PID"
	wait_pid_gone "$RW_PID" "$RW_SUP" "$(ms 10000)"
	assert_file_line "$RW_NOTIFY" ' - exited status=0$'
}

# lines_in FILE: how many lines FILE has (0 if there is none).
lines_in() {
	if [ -e "$1" ]; then wc -l <"$1"; else echo 0; fi
}

# consumer_idle: w1's consumer holds nothing: all acked.
consumer_idle() {
	[[ $(npub info w1) =~ ^pending\ 0\ ack_pending\ 0\  ]]
}

@test "a bad name is refused before anything else" {
	local name

	echo 'nats_servers = [ "nats://127.0.0.1:4222" ];' >"$T/w.conf"
	for name in a.b 'a*' 'a>' 'a b' '' \
	    xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
	do
		run "$RWORKER" --name "$name" --config "$T/w.conf" \
		    --state-dir "$T"
		assert_status 2
		assert_line "^fanout-remote-worker: --name: \".*\" (may hold only|must be 1 to 64)"
	done
	run "$RWORKER" --name ok --config /nonexistent --state-dir "$T"
	assert_status 1
	assert_line '^/nonexistent: cannot read it$'
	echo 'nats_servers = [ "http://x" ]; colour = 1;' >"$T/w.conf"
	run "$RWORKER" --name ok --config "$T/w.conf" --state-dir "$T"
	assert_status 1
	assert_line 'nats_servers: "http://x": must start with nats:// or tls://'
	assert_line 'colour: unknown setting'
}

@test "messages are handled in order, each with a receipt" {
	local i

	nats_start_w1
	receipts_start w1
	rw_config "$HD/exec-record.sh" "$T"
	w1_start
	for i in 1 2 3 4 5; do
		run npub send w1 "$((100 + i))" "message $i"
		assert_status 0
		[ "$output" = "seq $i" ] || fail "$(show_run)"
	done
	wait_for '[ "$(lines_in "$T/receipts.w1")" -ge 5 ]' "$(ms 10000)"
	for i in 1 2 3 4 5; do
		assert_file_line "$T/receipts.w1" \
		    "^worker=w1 seq=$i id=$((100 + i)) status=0 reason=\$"
	done
	[ "$(cat "$T/msgs.0")" = "$(printf 'message %s\n' 1 2 3 4 5)" ] ||
	    fail "handled out of order:" "$(cat "$T/msgs.0")"
	# exec mode: FANOUT_MESSAGE_ID is the fanout id that ends Nats-Msg-Id.
	[ "$(sed -n 's/.* id=\([^ ]*\) .*/\1/p' "$T/env.0" | tr '\n' ' ')" \
	    = "101 102 103 104 105 " ] || fail "ids:" "$(cat "$T/env.0")"
	wait_for consumer_idle "$(ms 5000)"
	# A duplicate publish (same Nats-Msg-Id) is not stored again.
	run npub send w1 105 "message 5"
	[ "$output" = duplicate ] || fail "$(show_run)"
	# The records reached the disk without holding the acks back: one
	# sync for one or more messages, the last one's before exit.
	w1_term
	local n
	n=$(sed -n 's/.*stopped: 5 handled, 0 redelivered and skipped; records synced to the disk \([0-9]*\) times*$/\1/p' \
	    "$RW_LOG")
	[ -n "$n" ] && [ "$n" -ge 1 ] && [ "$n" -le 5 ] ||
	    fail "syncs: ${n:-none}" "$(tail -n 5 "$RW_LOG")"
	[[ $(tr -d '\0' <"$T/state/last-handled") =~ (^|$'\n')v2\ [0-9]+\ -?[0-9]+\ 5\ 0\  ]] ||
	    fail "the last record:" "$(tr -d '\0' <"$T/state/last-handled")"
}

@test "a failing handler's status and reason are in the receipt" {
	nats_start_w1
	receipts_start w1
	rw_config "$HD/exec-record.sh" "$T" 3 "disk on fire"
	w1_start
	npub send w1 7 "doomed"
	wait_for '[ "$(lines_in "$T/receipts.w1")" -ge 1 ]' "$(ms 10000)"
	assert_file_line "$T/receipts.w1" \
	    '^worker=w1 seq=1 id=7 status=3 reason=disk on fire$'
	# Failed is handled: acked, not redelivered.
	wait_for consumer_idle "$(ms 5000)"
	[ "$(lines_in "$T/msgs.0")" -eq 1 ] || fail "handled more than once"
}

@test "a message handled before a crash is acked again, not handled again" {
	local st

	nats_start_w1
	receipts_start w1
	# A failure, so that the receipt sent again must carry the status and
	# reason kept on disk.
	rw_config "$HD/exec-record.sh" "$T" 5 "kept reason"
	# Stops itself (SIGSTOP) once it has recorded a message as handled
	# (and sent its receipt), before its ack: the crash window, held
	# open.
	w1_start --no-term-check --debug-stop-before-ack
	STOPPED_PIDS+=("$RW_PID")
	npub send w1 41 "once only"
	wait_for '[ "$(awk "/^State:/ { print \$2 }" /proc/$RW_PID/status)" = T ]' \
	    "$(ms 10000)"
	# The record in the second slot, the first still empty.
	st=$(tr -d '\0' <"$T/state/last-handled")
	[[ $st =~ ^v2\ 1\ -?[0-9]+\ 1\ 5\ [0-9a-f]+\ [0-9a-f]{16}$ ]] ||
	    fail "state: $st"
	[ "$(stat -c %s "$T/state/last-handled")" = 1024 ] ||
	    fail "state file size"
	wait_for '[ "$(lines_in "$T/receipts.w1")" -eq 1 ]' "$(ms 5000)" ||
	    fail "no receipt before the ack"
	kill -KILL "$RW_PID"
	wait_pid_gone "$RW_PID" "$(ms 5000)"
	run npub info w1
	assert_line '^pending 0 ack_pending 1 '

	# Restarted: the message comes back after the ack wait (1 s), is
	# acked with its receipt, and the handler does not run again.
	w1_start
	wait_for '[ "$(lines_in "$T/receipts.w1")" -ge 2 ]' "$(ms 10000)"
	[ "$(sort -u "$T/receipts.w1")" = \
	    'worker=w1 seq=1 id=41 status=5 reason=kept reason' ] ||
	    fail "receipts:" "$(cat "$T/receipts.w1")"
	wait_for consumer_idle "$(ms 5000)"
	[ "$(lines_in "$T/msgs.0")" -eq 1 ] ||
	    fail "the handler ran again:" "$(cat "$T/msgs.0")"
	assert_file_line "$RW_LOG" 'sequence 1 was handled already: acked again'
	# And the next message is handled as usual.
	npub send w1 42 "the next"
	wait_for '[ "$(lines_in "$T/msgs.0")" -ge 2 ]' "$(ms 10000)"
	assert_file_line "$T/msgs.0" '^the next$'
	wait_for consumer_idle "$(ms 5000)"

	# A crash in the middle of writing the record of sequence 2 (in
	# the first slot): the record of sequence 1 is read.
	w1_term
	head -c 300 /dev/urandom | tr '\n\0' ab |
	    dd of="$T/state/last-handled" conv=notrunc status=none
	w1_start
	assert_file_line "$RW_LOG" 'sequence 1 was the last handled$'
	w1_term
	# The format before this one (a single "v1" record) is read, and
	# what is not a state file refuses to start.
	printf 'v1 %s 7 0 -\n' "$(dd if="$T/state/last-handled" bs=512 \
	    skip=1 count=1 status=none | tr -d '\0' | awk '{ print $3 }')" \
	    >"$T/state/last-handled"
	w1_start
	assert_file_line "$RW_LOG" 'sequence 7 was the last handled$'
	w1_term
	printf 'something else\n' >"$T/state/last-handled"
	run "${NS_RUN[@]}" "$RWORKER" --name w1 --config "$T/w.conf" \
	    --state-dir "$T/state"
	assert_status 1
	assert_line 'fanout-remote-worker: w1: last-handled: not a state file of this program'
}

@test "a pipe handler: one process for all messages, its answers in receipts" {
	nats_start_w1
	receipts_start w1
	RW_EXTRA='handler_mode = "pipe";' rw_config "$HD/pipe-lines.sh" "$T"
	w1_start
	npub send w1 1 "first"
	npub send w1 2 "fail 4 nope"
	npub send w1 3 "third"
	wait_for '[ "$(lines_in "$T/receipts.w1")" -ge 3 ]' "$(ms 10000)"
	assert_file_line "$T/receipts.w1" '^worker=w1 seq=1 id=1 status=0 reason=$'
	assert_file_line "$T/receipts.w1" '^worker=w1 seq=2 id=2 status=4 reason=nope$'
	assert_file_line "$T/receipts.w1" '^worker=w1 seq=3 id=3 status=0 reason=$'
	[ "$(cat "$T/msgs.0")" = "$(printf '%s\n' first third)" ] ||
	    fail "$(cat "$T/msgs.0")"
	[ "$(lines_in "$T/start.0")" -eq 1 ] || fail "started more than once"
	wait_for consumer_idle "$(ms 5000)"
}

@test "a message larger than max_message_bytes is refused, and acked" {
	nats_start_w1
	receipts_start w1
	RW_EXTRA='max_message_bytes = 8;' rw_config "$HD/exec-record.sh" "$T"
	w1_start
	npub send w1 5 "short"
	npub send w1 6 "much too long"
	npub send w1 7 "short 2"
	wait_for '[ "$(lines_in "$T/receipts.w1")" -ge 3 ]' "$(ms 10000)"
	# Not given to the handler: 513, it could not be started.
	assert_file_line "$T/receipts.w1" \
	    '^worker=w1 seq=2 id=6 status=513 reason=larger than max_message_bytes$'
	assert_file_line "$T/receipts.w1" '^worker=w1 seq=3 id=7 status=0 '
	[ "$(cat "$T/msgs.0")" = "$(printf '%s\n' short "short 2")" ] ||
	    fail "$(cat "$T/msgs.0")"
	wait_for consumer_idle "$(ms 5000)"
}

@test "SIGTERM lets the running handler finish, acks it, exits 0" {
	nats_start_w1
	receipts_start w1
	rw_config "$HD/exec-block.sh" "$T"
	w1_start
	npub send w1 9 "slow"
	wait_for '[ -e "$T/started.0" ]' "$(ms 10000)"
	kill -TERM "$RW_PID"
	# Still waiting for its handler.
	alive "$RW_PID" || fail "exited before its handler finished"
	touch "$T/release"
	# The supervisor writes how it ended once it has reaped it.
	wait_pid_gone "$RW_PID" "$RW_SUP" "$(ms 10000)"
	assert_file_line "$RW_NOTIFY" ' - exited status=0$'
	[ "$(cat "$T/done.0")" = 9 ] || fail "the handler did not finish"
	wait_for '[ "$(lines_in "$T/receipts.w1")" -ge 1 ]' "$(ms 5000)"
	assert_file_line "$T/receipts.w1" '^worker=w1 seq=1 id=9 status=0 '
	wait_for consumer_idle "$(ms 5000)"
	# Nothing of the worker's is left: no handler, no helper.
	nothing_left "$(ms 3000)" "$NATS_PID" "${BG_PIDS[@]}"
}

@test "an identity allowed only its own queue cannot take another's" {
	# w1 may read only its own consumer, send only its own receipts and
	# hear only on its own inbox prefix (issue 11's permissions).
	cat >"$T/nats.conf" <<-EOC
	listen: 127.0.0.1:$NATS_PORT
	jetstream { store_dir: "$T/js" }
	authorization { users = [
	  { user: admin, password: a }
	  { user: w1, password: p, permissions: {
	    publish: { allow: [ "\$JS.API.CONSUMER.INFO.FANOUT.w1",
	      "\$JS.API.CONSUMER.MSG.NEXT.FANOUT.w1", "\$JS.ACK.FANOUT.w1.>" ] }
	    subscribe: { allow: [ "_INBOX.w1.>" ] } } }
	] }
	EOC
	nats_start "$T/nats.conf"
	NATS_URL=nats://admin:a@127.0.0.1:$NATS_PORT
	npub -t "$(ms 10000)" setup w1 w2 ||
	    fail "nats-server did not come up" "$(tail -n 20 "$T/nats.log")"
	NATS_URL=nats://w1:p@127.0.0.1:$NATS_PORT
	rw_config "$HD/exec-record.sh" "$T"
	NATS_URL=nats://admin:a@127.0.0.1:$NATS_PORT
	# As w2: its consumer's API is refused to this identity.
	run timeout -k 2 "$(ms 60)" "${NS_RUN[@]}" "$RWORKER" --name w2 \
	    --config "$T/w.conf" --state-dir "$T/state"
	assert_status 1
	assert_line 'w2: the broker refuses: Permissions Violation for Publish to "\$JS.API.CONSUMER.INFO.FANOUT.w2"'
	# As itself: ready, but its receipts subject is not allowed: the
	# handler has run once, and the worker stops on the refusal.
	w1_start --no-term-check
	npub send w1 1 "m"
	wait_pid_gone "$RW_PID" "$RW_SUP" "$(ms 10000)"
	assert_file_line "$RW_NOTIFY" ' - exited status=1$'
	assert_file_line "$RW_LOG" 'Permissions Violation for Publish to "fanout.r.w1.1.0.1"'
	[ "$(lines_in "$T/msgs.0")" -eq 1 ] || fail "handler runs"
}

@test "it waits for its consumer, then for a broker that went away" {
	nats_start_w1
	receipts_start w1
	rw_config "$HD/exec-record.sh" "$T"
	sed -i 's/"w1"/"w2"/' "$T/w.conf"
	# No consumer w2 yet: not ready, saying why.
	LAUNCHES=$((LAUNCHES + 1))
	spawn in_ns "$NOTIFY_WAIT" -t "$(ms 20000)" -o "$T/notify.w2.log" \
	    -e "$T/rw.w2.log" -- ${FANOUT_WRAP:-} "$RWORKER" --name w2 \
	    --config "$T/w.conf" --state-dir "$T/state"
	local nw=$BG_PID
	wait_for 'grep -q "STATUS=waiting for consumer w2" "$T/notify.w2.log"' \
	    "$(ms 10000)"
	npub setup w2
	wait_pid_gone "$nw" "$(ms 10000)"
	wait "$nw" || fail "w2 did not become ready" "$(cat "$T/rw.w2.log")"
	local pid
	pid=$(sed -n 's/.* command=\([0-9]*\)$/\1/p' "$T/notify.w2.log")
	DAEMONS+=("$pid")
	DAEMON_LOG[$pid]=$T/notify.w2.log
	SUPERVISORS+=("$(sed -n 's/.* supervisor=\([0-9]*\) .*/\1/p' \
	    "$T/notify.w2.log")")
	receipts_start w2
	npub send w2 1 "before"
	wait_for '[ "$(lines_in "$T/receipts.w2")" -ge 1 ]' "$(ms 10000)"

	# The broker restarts (same store_dir): the worker reconnects, and
	# what was stored meanwhile is handled.
	nats_stop
	nats_start
	npub -t "$(ms 10000)" send w2 2 "after"
	wait_for '[ "$(lines_in "$T/msgs.0")" -ge 2 ]' "$(ms 15000)"
	[ "$(cat "$T/msgs.0")" = "$(printf '%s\n' before after)" ] ||
	    fail "$(cat "$T/msgs.0")"
}
