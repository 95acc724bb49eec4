#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The durable spool (issue 13): a `queued' verdict means the message is on
# disk and will reach its worker across kill -9, SIGTERM and restarts;
# message ids never repeat; a full spool refuses new messages, never old
# ones; fanoutctl queue shows and drops what waits; a corrupt spool stops
# fanoutd without touching the file.  What a worker handled is read from
# the exec-record.sh handler's files, not from fanoutctl's verdicts.

load helpers

HD=$FANOUT_SRCDIR/tests/handlers

setup() {
	fanout_setup
	SPOOL=$T/spool
	mkdir -p "$SPOOL" "$T/rec"
}

# sp_config [SETTING=VALUE]...: write_config with the spool on in $SPOOL
# and every worker recording what it handles into $T/rec.
sp_config() {
	write_config spool=true spool_dir="\"$SPOOL\"" \
	    handler="[\"$HD/exec-record.sh\", \"$T/rec\"]" "$@"
}

# sp_ids I: the message ids worker I's handlers got, in order.
sp_ids() {
	sed -n 's/.* id=\([0-9]*\) .*/\1/p' "$T/rec/env.$1" 2>/dev/null
}

# sp_msgs I: the messages worker I's handlers got, in order.
sp_msgs() {
	grep -v '^$' "$T/rec/msgs.$1" 2>/dev/null
}

# sp_count I: how many messages worker I handled.
sp_count() {
	sp_msgs "$1" | wc -l
}

# sp_crash: kill -9 fanoutd and every worker it had, as a crash of the
# whole service would, and wait until they are gone.
sp_crash() {
	local p

	kill -KILL "$FANOUTD_PID"
	for p in "${WORKER_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	wait_pid_gone "$FANOUTD_PID" "${WORKER_PIDS[@]}" "$(ms 10000)" ||
	    fail "fanoutd or a worker outlived SIGKILL"
	STOPPED_PIDS=()
}

@test "queued for a SIGSTOPped worker, kill -9 fanoutd: delivered in order after the restart, ids continue, nothing acked again" {
	local i ids first

	sp_config workers=2 ack_timeout_ms="$(ms 2000)"
	start_fanoutd
	run ctl send before
	assert_status 0
	stop_worker 1
	for i in 1 2 3 4 5; do
		run ctl -t "$(ms 300)" send "m$i"
		assert_status 1
		assert_send 1 "$ACKED" "$(queued_re up)"
		ids+=" $MSG_ID"
	done
	run ctl queue
	assert_status 0
	assert_line '^ +1  up +5 +10 +[0-9.]+m?s +5$'
	sp_crash

	start_fanoutd
	assert_file_line "$FANOUTD_LOG" \
	    'spool: 5 messages \(10 bytes\) queued for worker 1, delivered first'
	wait_for "[ \"\$(sp_count 1)\" -eq 6 ]" "$(ms 10000)"
	[ "$(sp_msgs 1 | tr '\n' ' ')" = "before m1 m2 m3 m4 m5 " ] ||
	    fail "worker 1 got: $(sp_msgs 1 | tr '\n' ' ')"
	# The same ids as the senders were told, in order.
	[ "$(sp_ids 1 | tail -n 5 | tr '\n' ' ')" = "${ids# } " ] ||
	    fail "ids $(sp_ids 1 | tail -n 5 | tr '\n' ' '), expected $ids"
	# Worker 0 acked them before the crash: not one again.
	[ "$(sp_msgs 0 | tr '\n' ' ')" = "before m1 m2 m3 m4 m5 " ] ||
	    fail "worker 0 got: $(sp_msgs 0 | tr '\n' ' ')"
	# Ids go on above every id handed out before.
	run ctl send after
	assert_status 0
	assert_send 2 "$ACKED" "$ACKED"
	first=${ids##* }
	[ "$MSG_ID" -gt "$first" ] || fail "id $MSG_ID after $first"
	run ctl queue
	assert_line '^0 messages queued, 0 of them in the spool$'
}

@test "SIGTERM with a worker stopped: its messages are kept in the spool, each handled exactly once over both runs" {
	local i

	sp_config workers=2 ack_timeout_ms="$(ms 2000)" \
	    stop_timeout_ms="$(ms 1000)"
	start_fanoutd
	stop_worker 1
	for i in 1 2 3; do
		run ctl -t "$(ms 200)" send "t$i"
		assert_status 1
		assert_send 1 "$ACKED" "$(queued_re up)"
	done
	stop_fanoutd
	[ "$FANOUTD_EXIT" = "exited status=0" ] ||
	    fail "fanoutd: $FANOUTD_EXIT"
	STOPPED_PIDS=()
	start_fanoutd
	wait_for "[ \"\$(sp_count 1)\" -ge 3 ]" "$(ms 10000)"
	run ctl send sync
	assert_status 0
	[ "$(sp_msgs 1 | tr '\n' ' ')" = "t1 t2 t3 sync " ] ||
	    fail "worker 1 got: $(sp_msgs 1 | tr '\n' ' ')"
}

@test "a send waiting at shutdown is answered queued, from the spool, and delivered after the restart" {
	local s rc

	# Worker 1 takes the message and never acks it.
	write_config spool=true spool_dir="\"$SPOOL\"" workers=2 \
	    ack_timeout_ms="$(ms 30000)" stop_timeout_ms="$(ms 500)" \
	    worker_path="\"$(worker_wrapper '1:--mode noack')\""
	start_fanoutd
	spawn ctl send pending >"$T/out" 2>&1
	s=$BG_PID
	wait_for "grep -qE 'fake-worker 1: message [0-9]+, 7 bytes' '$FANOUTD_LOG'" "$(ms 5000)"
	# Still waiting for worker 1 when fanoutd is told to stop: once
	# stop_timeout_ms is over, the answer comes from the spool.
	kill -TERM "$FANOUTD_PID"
	wait_pid_gone "$s" "$(ms 15000)"
	rc=0
	wait "$s" || rc=$?
	[ "$rc" -eq 1 ] || fail "send exited $rc" "$(cat "$T/out")"
	grep -qE '^worker 1  .*  queued ' "$T/out" ||
	    fail "worker 1 not answered queued" "$(cat "$T/out")"
	wait_pid_gone "$FANOUTD_PID" "$(ms 15000)"
	sp_config workers=2
	start_fanoutd
	wait_for "[ \"\$(sp_count 1)\" -eq 1 ]" "$(ms 10000)"
	[ "$(sp_msgs 1)" = pending ] || fail "worker 1: $(sp_msgs 1)"
}

# sp_queued_ids FILE: the message ids `send -` lines say were queued.
sp_queued_ids() {
	sed -nE 's/^message ([0-9]+): .*\(queued\).*/\1/p' "$1"
}

@test "crash safety: kill -9 at random points of 20 streams with a worker that never acks; every queued message is delivered, in order" {
	local round k n queued=() want got ids sorted

	for round in $(seq 1 20); do
		# Worker 1 takes messages and never acks them: each is
		# queued at its deadline, on disk.
		write_config spool=true spool_dir="\"$SPOOL\"" workers=2 \
		    ack_timeout_ms="$(ms 100)" \
		    worker_path="\"$(worker_wrapper '1:--mode noack')\""
		start_fanoutd
		seq -f "r$round-%g" 1 400 >"$T/in"
		spawn ctl send --window 16 - <"$T/in" >"$T/out.$round" 2>&1
		# Dead at a random point: once k are on disk, mid-stream
		# (fanoutctl's own output is written when it ends).
		k=$((RANDOM % 40 + 1))
		wait_for "[ \"\$(ctl queue | awk '\$1 == 1 && \$3 ~ /^[0-9]+$/ { print \$6 }')\" -ge $k ]" \
		    "$(ms 20000)"
		sp_crash
		wait_pid_gone "$BG_PID" "$(ms 10000)"
		mapfile -t -O "${#queued[@]}" queued < <(sp_queued_ids "$T/out.$round")
	done
	n=${#queued[@]}
	[ "$n" -ge 20 ] || fail "only $n messages were queued"

	# A real worker 1 now: everything queued reaches it, in id order.
	sp_config workers=2
	start_fanoutd
	wait_for "[ \"\$(ctl queue | awk '\$1 == 1 && \$3 ~ /^[0-9]+$/ { print \$3 }')\" = 0 ]" \
	    "$(ms 60000)"
	ids=$(sp_ids 1)
	sorted=$(printf '%s\n' "$ids" | sort -n)
	[ "$ids" = "$sorted" ] || fail "worker 1 got ids out of order" "$ids"
	got=$(printf '%s\n' "$ids" | sort -u)
	want=$(printf '%s\n' "${queued[@]}" | sort -u)
	[ -z "$(comm -23 <(echo "$want") <(echo "$got"))" ] ||
	    fail "queued but never delivered:" \
	    "$(comm -23 <(echo "$want") <(echo "$got") | head)"
	# Each once: this worker process never saw any of them before.
	[ "$(printf '%s\n' "$ids" | sort | uniq -d)" = "" ] ||
	    fail "delivered twice: $(printf '%s\n' "$ids" | sort | uniq -d)"
	# Ids never repeat across the 21 runs: none handed out twice.
	[ "$(printf '%s\n' "${queued[@]}" | sort | uniq -d)" = "" ] ||
	    fail "an id was handed out twice"
}

@test "spool full: new messages are full for the worker that is away, the old ones stay and are delivered" {
	local i big out=()

	# 1 MiB of spool takes fifteen 64 KiB messages, not twenty.
	sp_config workers=2 spool_max_bytes=1048576 \
	    ack_timeout_ms="$(ms 2000)" queue_max_bytes=67108864
	start_fanoutd
	stop_worker 1
	big=$(head -c 65000 /dev/zero | tr '\0' x)
	for i in $(seq -w 1 20); do
		run ctl -t "$(ms 200)" send "$i$big"
		assert_status 1
		out+=("$(echo "${lines[1]}" | awk '{ print $7 }')")
	done
	[ "${out[0]}" = queued ] || fail "first: ${out[*]}"
	[ "${out[19]}" = full ] || fail "last: ${out[*]}"
	# Once full, full: never an old one dropped for a new one.
	[[ "${out[*]}" =~ ^(queued )+(full ?)+$ ]] || fail "verdicts: ${out[*]}"
	run ctl status
	assert_line '  spool [0-9]+/1048576$'
	sp_crash
	start_fanoutd
	n=$(grep -o queued <<<"${out[*]}" | wc -l)
	wait_for "[ \"\$(sp_count 1)\" -eq $n ]" "$(ms 20000)"
	[ "$(sp_msgs 1 | cut -c1-2 | tr '\n' ' ')" = "$(seq -w 1 "$n" | tr '\n' ' ')" ] ||
	    fail "worker 1 got: $(sp_msgs 1 | cut -c1-2 | tr '\n' ' ')"
}

@test "fanoutctl queue shows a worker that is no longer configured; queue drop removes its messages with a log line" {

	sp_config workers=2 ack_timeout_ms="$(ms 2000)"
	start_fanoutd
	stop_worker 1
	run ctl -t "$(ms 200)" send one
	run ctl -t "$(ms 200)" send two
	sp_crash
	sp_config workers=1
	start_fanoutd
	assert_file_line "$FANOUTD_LOG" \
	    'spool: 2 messages \(6 bytes\) queued for worker 1, which is not configured \(workers = 1\); kept: "fanoutctl queue drop 1" removes them'
	run ctl queue
	assert_status 0
	assert_line '^ +0  up +0 +0 +- +0$'
	assert_line '^ +1  - +2 +6 +[0-9.]+m?s +2  \(not configured\)$'
	need_python
	run ctl -j queue
	json_check 'o["workers"][1] == {"worker": 1, "configured": False, "state": None, "messages": 2, "bytes": 6, "oldest_ms": o["workers"][1]["oldest_ms"], "spooled": 2}'
	run ctl queue drop 7
	assert_status 3
	[[ $output =~ no\ such\ worker ]] || fail "$(show_run)"
	run ctl queue drop 1
	assert_status 0
	[ "$output" = "worker 1: 2 messages (6 bytes) dropped" ] || fail "$(show_run)"
	assert_file_line "$FANOUTD_LOG" \
	    'worker 1 \(not configured\): 2 spooled messages \(6 bytes\) dropped by control client \(pid [0-9]+, uid [0-9]+\)'
	run ctl queue
	refute_line '^ +1 '
	# Gone from the disk too.
	stop_fanoutd
	start_fanoutd
	! grep -q 'queued for worker 1' "$FANOUTD_LOG" ||
	    fail "still in the spool" "$(cat "$FANOUTD_LOG")"
}

@test "queue drop of a configured worker that is away: what waits unsent is dropped, answered removed, gone from disk" {
	local s p1

	# Worker 1 comes up once; restarted, it fails before READY=1.
	write_config spool=true spool_dir="\"$SPOOL\"" workers=2 \
	    worker_path="\"$(worker_wrapper "1:--mode crashloop --touch $T")\""
	start_fanoutd
	p1=$(worker_pid 1)
	kill -KILL "$p1"
	wait_for "worker_is 1 backoff" "$(ms 5000)"
	run ctl send one
	assert_status 1
	assert_send 1 "$ACKED" "$(queued_re '[a-z]+')"
	# A sender still waiting for worker 1 is answered removed.
	spawn ctl -t "$(ms 30000)" send --wait two >"$T/out" 2>&1
	s=$BG_PID
	wait_for "[ \"\$(ctl queue | awk '\$1 == 1 && \$3 ~ /^[0-9]+$/ { print \$3 }')\" = 2 ]" \
	    "$(ms 5000)"
	run ctl queue drop 1
	assert_status 0
	[ "$output" = "worker 1: 2 messages (6 bytes) dropped" ] ||
	    fail "$(show_run)"
	assert_file_line "$FANOUTD_LOG" \
	    'worker 1: 2 queued messages \(ids [0-9]+ to [0-9]+, 6 bytes\) dropped by control client'
	wait_pid_gone "$s" "$(ms 10000)"
	grep -qE '^worker 1  .*  removed ' "$T/out" ||
	    fail "the waiting sender was not told removed" "$(cat "$T/out")"
	run ctl queue drop 1
	[ "$output" = "worker 1: nothing to drop" ] || fail "$(show_run)"
	# Not on disk either: a real worker 1 after a crash gets nothing.
	sp_crash
	sp_config workers=2
	start_fanoutd
	run ctl send sync
	assert_status 0
	[ "$(sp_msgs 1)" = sync ] || fail "worker 1 got: $(sp_msgs 1)"
}

@test "a corrupt spool: fanoutd refuses to start, names the file and what to do, and leaves it as it was" {
	local sum

	head -c 65536 /dev/urandom >"$SPOOL/data.mdb"
	sum=$(sha256sum <"$SPOOL/data.mdb")
	sp_config
	start_fanoutd_fails
	assert_line "$SPOOL/data.mdb"
	assert_line 'move it aside'
	[ "$(sha256sum <"$SPOOL/data.mdb")" = "$sum" ] ||
	    fail "fanoutd changed the corrupt spool"
}

@test "a missing spool_dir is an error that says what to do; spool = false needs none" {
	sp_config spool_dir="\"$T/nowhere\""
	start_fanoutd_fails
	assert_line "$T/nowhere"
	assert_line 'create .*nowhere.*or set spool_dir or spool = false'
	sp_config spool_dir="\"$T/nowhere\"" spool=false
	start_fanoutd
	run ctl status
	refute_line 'spool'
}

@test "spool settings: checked with file:line, shown by -t -v, kept by a reload until a restart" {
	echo 'spool = 1;' >"$T/bad.conf"
	run "$FANOUTD" -c "$T/bad.conf" -t
	assert_status 1
	assert_line "^$T/bad.conf:1: spool: must be true or false\$"
	echo 'spool_max_bytes = 5;' >"$T/bad.conf"
	run "$FANOUTD" -c "$T/bad.conf" -t
	assert_status 1
	assert_line "^$T/bad.conf:1: spool_max_bytes: must be between 1048576 and 1099511627776\$"
	sp_config spool_max_bytes=4294967296L
	run "$FANOUTD" -c "$CONF" -t -v
	assert_line '^spool = true;$'
	assert_line "^spool_dir = \"$SPOOL\";\$"
	assert_line '^spool_max_bytes = 4294967296L;$'
	# What -t -v prints reads back.
	"$FANOUTD" -c "$CONF" -t -v | grep -v '^configuration OK$' \
	    >"$T/printed.conf"
	run "$FANOUTD" -c "$T/printed.conf" -t
	assert_status 0
	start_fanoutd
	sp_config spool=false
	run ctl reload
	assert_status 0
	assert_line '^kept +spool: false needs a restart of fanoutd; true stays in effect until then$'
	run ctl status
	assert_line '  spool [0-9]+/4294967296$'
}
