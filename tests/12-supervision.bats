#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Supervision and delivery (issue 6): workers killed, stopped, crashing at
# every start, links cut under a live process, full queues, the systemd
# watchdog and the degraded daemon.  What a worker handled is read from
# the worker itself (fanout-worker -vv logs every message it handles and
# every resend it acks without handling; fake-worker leaves files), not
# only from fanoutctl's verdicts.

load helpers

# sv_status: `fanoutctl status` into $T/status, as status_lines shows it.
sv_status() {
	status_lines >"$T/status"
}

# sv_line INDEX: worker INDEX's line of the last sv_status.
sv_line() {
	awk -v i="$1" '$1 == "worker" && $2 == i' "$T/status"
}

# sv_field INDEX FIELD: a value of worker INDEX's line of the last
# sv_status, found by the word before it (pid, restarts, queued...);
# "state" is the word after the port.
sv_field() {
	awk -v i="$1" -v f="$2" '
	    $1 == "worker" && $2 == i {
		if (f == "state") { print $7; exit }
		for (k = 3; k < NF; k++) if ($k == f) { print $(k + 1); exit }
	    }' "$T/status"
}

# sv_worker_is INDEX REGEX: a fresh status shows worker INDEX's line
# matching REGEX (ERE); the line is left in SV_LINE.
sv_worker_is() {
	sv_status || return 1
	SV_LINE=$(sv_line "$1")
	[[ $SV_LINE =~ $2 ]]
}

# sv_pid_is_stopped PID: the process is in state T (SIGSTOPped).
sv_pid_is_stopped() {
	[ "$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" = T ]
}

# sv_recvq FILTER: the Recv-Q of the one established TCP socket in the
# namespace matching the ss FILTER, e.g. "sport = :8889".
sv_recvq() {
	in_ns ss -Htn state established "( $1 )" | awk '{ print $1 }'
}

# sv_check_log LOG NWORKERS FIRST LAST: from fanout-worker -vv lines in LOG,
#  - every worker index handled every message id FIRST..LAST (some process
#    of it did);
#  - each process handled ids strictly in order and without a gap: each
#    one the previous plus one (so never one twice);
#  - every "again" (a resend acked without handling) was for an id that
#    process had handled already.
# Prints "HANDLED DUPLICATES AGAIN PROCESSES": DUPLICATES counts ids
# handled more than once by one worker index (only across processes).
sv_check_log() {
	awk -v n="$2" -v first="$3" -v last="$4" '
	function bad(msg) {
		if (++nbad <= 20)
			print msg > "/dev/stderr"
	}
	$1 == "fanout-worker:" && $2 == "worker" && $4 == "(pid" &&
	    $6 == "message" {
		idx = $3 + 0
		pid = $5 + 0
		id = $7
		sub(/,$/, "", id)
		id += 0
		if ($8 == "again:") {
			again++
			if (!(pid in lastid) || id > lastid[pid])
				bad("worker " idx " pid " pid ": acked " id \
				    " again, but it had handled only up to " \
				    lastid[pid] + 0)
			next
		}
		if ($9 != "bytes:")
			next
		handled++
		if (pid in lastid && id != lastid[pid] + 1)
			bad("worker " idx " pid " pid ": handled message " \
			    id " after " lastid[pid] " (out of order, a gap " \
			    "or twice)")
		if (!(pid in lastid))
			procs++
		lastid[pid] = id
		cnt[idx, id]++
	}
	END {
		for (i = 0; i < n; i++)
			for (id = first; id <= last; id++) {
				if (!((i, id) in cnt)) {
					missing++
					bad("worker " i ": message " id \
					    " never handled")
				} else
					dups += cnt[i, id] - 1
			}
		if (nbad > 0) {
			print nbad " problems, " missing + 0 " messages " \
			    "missing" > "/dev/stderr"
			exit 1
		}
		print handled + 0, dups + 0, again + 0, procs + 0
	}' "$1"
}

# --- worker processes killed during a stream ------------------------------

# sv_kill_loop: until $T/kill.stop exists, every 200 ms SIGKILL a random
# worker that status shows up (never the same process twice); each kill
# is appended to $T/kills as "INDEX PID".  Load generation: the pace is
# not a synchronisation.
sv_kill_loop() {
	local up pick

	while [ ! -e "$T/kill.stop" ]; do
		if status_lines >"$T/kill.status" 2>/dev/null; then
			mapfile -t up < <(awk '$1 == "worker" && $7 == "up" &&
			    $4 > 0 { print $2 " " $4 }' "$T/kill.status" |
			    grep -vxF -f "$T/kills")
			if [ ${#up[@]} -gt 0 ]; then
				pick=${up[RANDOM % ${#up[@]}]}
				kill -KILL "${pick#* }" 2>/dev/null &&
				    echo "$pick" >>"$T/kills"
			fi
		fi
		sleep 0.2
	done
}

@test "workers SIGKILLed every 200 ms during a 10,000 message stream: each handled every message, in order" {
	local kl s rc total=0 round kills first last sentinel i r k figures
	local handled dups again procs restarts=()

	write_config workers=4 restart_max_delay_ms=400 restart_reset_ms=500 \
	    queue_max_messages=100000 ack_timeout_ms="$(ms 5000)"
	start_fanoutd -vv
	: >"$T/kills"
	: >"$T/out"
	sv_kill_loop 3>&- &
	kl=$!
	BG_PIDS+=("$kl")
	# 10,000 messages.  A machine that streams them faster than 5 kills
	# take (1 s) gets more streams of 5,000 until 5 kills happened, up to
	# 100,000 messages: the kills must fall while messages flow.  The ids
	# stay consecutive: nothing else sends meanwhile.
	for ((round = 1; round <= 19; round++)); do
		if [ "$round" -eq 1 ]; then
			seq -f "r$round-%05g" 1 10000 >"$T/in"
		else
			[ "$(wc -l <"$T/kills")" -ge 5 ] && break
			seq -f "r$round-%05g" 1 5000 >"$T/in"
		fi
		total=$((total + $(wc -l <"$T/in")))
		spawn ctl -t "$(ms 5000)" send - <"$T/in" >>"$T/out" \
		    2>"$T/err.$round"
		s=$BG_PID
		wait_pid_gone "$s" "$(ms 120000)" ||
		    fail "stream $round did not end"
		rc=0
		wait "$s" || rc=$?
		[ "$rc" -le 1 ] ||
		    fail "stream $round: fanoutctl exited $rc" \
		    "$(cat "$T/err.$round")"
	done
	touch "$T/kill.stop"
	wait_pid_gone "$kl" "$(ms 10000)"
	wait "$kl" || true
	kills=$(wc -l <"$T/kills")
	[ "$kills" -ge 3 ] || fail "only $kills kills during the streams"

	# One verdict line per message, nothing lost: only acked or queued.
	[ "$(wc -l <"$T/out")" -eq "$total" ] ||
	    fail "expected $total result lines, got $(wc -l <"$T/out")"
	if grep -vE '^message [0-9]+: delivered to [0-4]/4 workers(; not acked: [0-3] \(queued\)(, [0-3] \(queued\))*)?$' \
	    "$T/out" >"$T/bad"; then
		fail "result lines other than acked or queued:" \
		    "$(head -n 20 "$T/bad")"
	fi
	first=$(awk 'NR == 1 { print $2 + 0 }' "$T/out")
	last=$(awk 'END { print $2 + 0 }' "$T/out")
	[ $((last - first + 1)) -eq "$total" ] ||
	    fail "message ids $first..$last for $total messages"

	# Queues are in order: once every worker acked this, it acked all.
	run --separate-stderr ctl -t "$(ms 30000)" send --wait sentinel
	assert_status 0
	assert_send 4 "$ACKED" "$ACKED" "$ACKED" "$ACKED"
	sentinel=$MSG_ID
	[ "$sentinel" -eq $((last + 1)) ] ||
	    fail "sentinel is message $sentinel, the stream ended at $last"

	# What the workers themselves say they handled.
	figures=$(sv_check_log "$FANOUTD_LOG" 4 "$first" "$sentinel") ||
	    fail "the workers did not handle every message once, in order"
	read -r handled dups again procs <<<"$figures"

	# Every kill was a restart; every message acked once per worker.
	sv_status
	for ((i = 0; i < 4; i++)); do
		k=$(awk -v i="$i" '$1 == i' "$T/kills" | wc -l)
		r=$(sv_field "$i" restarts)
		restarts+=("$r")
		[ "$r" -eq "$k" ] ||
		    fail "worker $i: $k kills but $r restarts" "$(cat "$T/status")"
		[[ $(sv_line "$i") =~ \ \ up\ +acked\ $((sentinel - first + 1))\ \ queued\ 0\ \ bytes\ 0\  ]] ||
		    fail "worker $i: not up with all $((sentinel - first + 1)) acked" \
		    "$(cat "$T/status")"
		[ "$k" -eq 0 ] || [[ $(sv_line "$i") =~ \ \ last\ signal=KILL ]] ||
		    fail "worker $i: last exit is not SIGKILL" "$(cat "$T/status")"
	done
	# (A process killed before it got anything handled nothing.)
	[ "$procs" -le $((4 + kills)) ] ||
	    fail "$procs worker processes handled messages, only $((4 + kills)) ran"
	echo "# kill test: $total messages (+1 sentinel) to 4 workers in" \
	    "$((round - 1)) streams, $kills kills (restarts per worker" \
	    "${restarts[*]}), $handled handled by $procs processes," \
	    "$dups duplicates across restarts, $again resends acked" \
	    "without handling" >&3
}

# --- a link cut while the worker process lives on -------------------------

@test "link cut under a live real worker (ss -K): the resend is acked without being handled twice" {
	local p1 port i id s rc

	write_config ack_timeout_ms="$(ms 5000)" stall_timeout_ms="$(ms 60000)"
	start_fanoutd -vv
	sv_status
	p1=$(sv_field 1 pid)
	port=$((BASE_PORT + 1))
	# Worker 1 stopped: what fanoutd writes waits in its socket.
	kill -STOP "$p1"
	STOPPED_PIDS+=("$p1")
	wait_for "sv_pid_is_stopped $p1" "$(ms 5000)"
	printf '%s\n' cut-1 cut-2 cut-3 >"$T/in"
	spawn ctl -t "$(ms 20000)" send --wait - <"$T/in" >"$T/out" 2>"$T/err"
	s=$BG_PID
	# 3 frames of 16 + 5 bytes.
	wait_for "[ \"\$(sv_recvq 'sport = :$port')\" = 63 ]" "$(ms 10000)"
	# Destroy fanoutd's end of the link; the process lives on.
	in_ns ss -Htn -K state established "( dport = :$port )" >/dev/null 2>&1 ||
	    true
	if [ -n "$(in_ns ss -Htn state established "( dport = :$port )")" ]; then
		kill -CONT "$p1"
		skip "ss -K cannot destroy sockets here (CONFIG_INET_DIAG_DESTROY)"
	fi
	# fanoutd reconnects to the same process: its hello (16 + 32 bytes)
	# waits in the new connection.  The link is up only once the worker
	# answers the handshake, so it runs again now; then fanoutd writes
	# the 3 again: the worker finds them twice, in the old connection
	# and the new one.
	wait_for "[ \"\$(sv_recvq 'sport = :$port')\" = 48 ]" "$(ms 10000)"
	sv_worker_is 1 '^worker 1  pid '"$p1"'  .*  starting +acked .*  last link-lost' ||
	    fail "worker 1 is not reconnecting" "$SV_LINE"
	kill -CONT "$p1"
	STOPPED_PIDS=()
	wait_for "sv_worker_is 1 '^worker 1  pid $p1  .*  up +acked .*  last link-lost'" \
	    "$(ms 10000)"

	# Acked by all, within the request's wait.
	wait_pid_gone "$s" "$(ms 30000)"
	rc=0
	wait "$s" || rc=$?
	[ "$rc" -eq 0 ] || fail "send --wait exited $rc" "$(cat "$T/out" "$T/err")"
	[ "$(grep -cE '^message [0-9]+: delivered to 3/3 workers$' "$T/out")" -eq 3 ] ||
	    fail "not every message acked by all 3" "$(cat "$T/out")"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(pid $p1, port $port\\): link lost"
	# Each handled exactly once by the process, and acked once more
	# without handling it.
	for i in 1 2 3; do
		id=$(sed -nE "s/^fanout-worker: worker 1 \\(pid $p1\\): message ([0-9]+), 5 bytes: \"cut-$i\"\$/\\1/p" \
		    "$FANOUTD_LOG")
		[ "$(echo "$id" | wc -w)" -eq 1 ] ||
		    fail "cut-$i handled as messages '$id', expected once" \
		    "$(grep -E 'worker 1|link' "$FANOUTD_LOG")"
		[ "$(grep -cE "^fanout-worker: worker 1 \\(pid $p1\\): message $id again: acked without handling it\$" "$FANOUTD_LOG")" -eq 1 ] ||
		    fail "message $id (cut-$i) not seen once more after the cut" \
		    "$(grep -E 'worker 1|link' "$FANOUTD_LOG")"
	done
	# Same process, reconnected: no restart counted.
	sv_status
	[[ $(sv_line 1) =~ ^worker\ 1\ \ pid\ $p1\ \ port\ $port\ \ up\ +acked\ 3\ \ queued\ 0\ .*\ restarts\ 0\ .*\ last\ link-lost ]] ||
	    fail "worker 1 is not the same process, up, reconnected" \
	    "$(cat "$T/status")"
	run --separate-stderr ctl send after
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	sv_check_log "$FANOUTD_LOG" 3 1 "$MSG_ID" >/dev/null ||
	    fail "the workers did not handle every message once, in order"
}

@test "a worker that drops its link but lives on gets the lost message again, handled once" {
	local p1

	write_config "worker_path=\"$(worker_wrapper "1:--mode dropafter:3 --touch $T")\""
	start_fanoutd
	sv_status
	p1=$(sv_field 1 pid)
	for i in 1 2 3; do
		run --separate-stderr ctl send "d-$i"
		assert_status 0
		assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	done
	# Handled, not acked, link closed: kept for worker 1.
	run --separate-stderr ctl send d-4
	assert_status 1
	assert_send 2 "$ACKED" "$QUEUED" "$ACKED"
	[ "$MSG_ID" -eq 4 ] || fail "d-4 is message $MSG_ID, expected 4"
	# Acked by all once it was resent after the reconnect.
	run --separate-stderr ctl -t "$(ms 10000)" send --wait d-5
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	for i in 1 2 3 4 5; do
		[ -e "$T/worker-1.msg-$i" ] || fail "message $i never handled"
	done
	[ "$(cd "$T" && echo worker-1.dup-*)" = worker-1.dup-4 ] ||
	    fail "expected exactly message 4 resent:" "$(ls "$T")"
	! compgen -G "$T/worker-1.twice-*" >/dev/null ||
	    fail "a message was handled twice:" "$(ls "$T")"
	assert_file_line "$FANOUTD_LOG" \
	    "worker 1 \\(pid $p1, port $((BASE_PORT + 1))\\): link lost: connection closed by the worker"
	sv_status
	[[ $(sv_line 1) =~ ^worker\ 1\ \ pid\ $p1\ .*\ up\ +acked\ 5\ \ queued\ 0\ .*\ restarts\ 0\ .*\ last\ link-lost ]] ||
	    fail "worker 1 is not the same process, reconnected" \
	    "$(cat "$T/status")"
}

# --- a worker that crashes at every start ---------------------------------

# sv_restart_bound MS CAP: the most restarts the backoff allows within MS
# of the first failure: retries after 100, 200, 400... ms, at most CAP.
sv_restart_bound() {
	local t=0 d=100 k=0

	while [ $((t + d)) -le "$1" ]; do
		t=$((t + d))
		k=$((k + 1))
		d=$((d * 2))
		[ "$d" -gt "$2" ] && d=$2
	done
	echo "$k"
}

@test "a worker crashing at every start: backoff, last exit shown, the others deliver at once" {
	local p1 t0 t1 r bound elapsed

	write_config "worker_path=\"$(worker_wrapper "1:--mode crashloop --touch $T")\"" \
	    restart_max_delay_ms=400 ack_timeout_ms="$(ms 30000)"
	start_fanoutd
	sv_status
	p1=$(sv_field 1 pid)
	t0=$(now_ms)
	kill -KILL "$p1"
	wait_for "sv_worker_is 1 ' restarts ([4-9]|[1-9][0-9]+) '" "$(ms 20000)"
	t1=$(now_ms)
	r=$(sv_field 1 restarts)
	# Retries after 100, 200, 400 and 400 ms: the 4th restart cannot come
	# before 1.1 s; and no more restarts than the backoff allows.
	[ $((t1 - t0)) -ge 1100 ] ||
	    fail "4 restarts within $((t1 - t0)) ms of the crash"
	bound=$(sv_restart_bound $((t1 - t0)) 400)
	[ "$r" -le "$bound" ] ||
	    fail "$r restarts in $((t1 - t0)) ms; the backoff allows $bound"
	[[ $SV_LINE =~ \ \ (backoff|starting)\ .*\ \ last\ exit=1 ]] ||
	    fail "worker 1 not in backoff with exit=1:" "$SV_LINE"
	wait_for "sv_worker_is 1 '  backoff .*  last exit=1  next [0-9]+ms\$'" \
	    "$(ms 5000)"
	# The others deliver; worker 1's copy is kept, without waiting for it.
	t0=$(now_ms)
	run --separate-stderr ctl -t "$(ms 30000)" send while crashing
	elapsed=$(($(now_ms) - t0))
	assert_status 1
	assert_send 2 "$ACKED" "$QUEUED" "$ACKED"
	[ "$elapsed" -lt "$(ms 10000)" ] ||
	    fail "send took $elapsed ms: it waited for the crashing worker"
	sv_status
	[ "$(sv_field 1 queued)" -ge 1 ] ||
	    fail "the message is not queued for worker 1" "$(cat "$T/status")"
	alive "$FANOUTD_PID" || fail "fanoutd died"
}

# --- a stopped worker during a stream ------------------------------------

@test "SIGSTOP a worker during a stream: the stream goes on, the worker is restarted and catches up in order" {
	local p1 p1new feed stream rc t0 elapsed first last

	write_config stall_timeout_ms=500 ack_timeout_ms="$(ms 20000)" \
	    restart_max_delay_ms=400
	start_fanoutd -vv
	sv_status
	p1=$(sv_field 1 pid)
	seq -f 's-%05g' 1 3000 >"$T/in"
	mkfifo "$T/feed"
	exec {feed}<>"$T/feed"
	timeout -k 2 "$(ms 120)" "$FANOUTCTL" -s "$SOCK" -t "$(ms 20000)" \
	    send - <"$T/feed" >"$T/out" 2>"$T/err" {feed}>&- 3>&- &
	stream=$!
	BG_PIDS+=("$stream")
	head -n 1000 "$T/in" >&"$feed"
	# (fanoutctl sends a line only once it has read a window's worth or
	# the end: a few of the 1000 may wait for the next lines.)
	wait_for "grep -q '^fanout-worker: worker 1 (pid $p1): message [0-9]*, 7 bytes: \"s-00900\"' '$FANOUTD_LOG'" \
	    "$(ms 30000)"
	kill -STOP "$p1"
	STOPPED_PIDS+=("$p1")
	t0=$(now_ms)
	tail -n +1001 "$T/in" >&"$feed"
	exec {feed}>&-
	wait_pid_gone "$stream" "$(ms 60000)"
	elapsed=$(($(now_ms) - t0))
	rc=0
	wait "$stream" || rc=$?
	[ "$rc" -le 1 ] || fail "fanoutctl exited $rc" "$(cat "$T/err")"
	# Nobody waited out the 20 s deadline for the stopped worker.
	[ "$elapsed" -lt "$(ms 10000)" ] ||
	    fail "the stream took $elapsed ms after the SIGSTOP"
	[ "$(wc -l <"$T/out")" -eq 3000 ] ||
	    fail "expected 3000 result lines" "$(tail "$T/out")"
	if grep -vE '^message [0-9]+: delivered to (3/3 workers|2/3 workers; not acked: 1 \(queued\))$' \
	    "$T/out" >"$T/bad"; then
		fail "workers 0 and 2 did not ack everything at once:" \
		    "$(head "$T/bad")"
	fi
	grep -q 'not acked: 1 (queued)' "$T/out" ||
	    fail "worker 1 never reported queued"
	# Stalled, killed, restarted.
	wait_for "grep -q 'worker 1 (pid $p1, port [0-9]*) stalled' '$FANOUTD_LOG'" \
	    "$(ms 5000)"
	wait_pid_gone "$p1" "$(ms 10000)" ||
	    fail "the stopped worker $p1 was not killed"
	wait_for "sv_worker_is 1 '  up +acked .* restarts [1-9]'" "$(ms 10000)"
	p1new=$(sv_field 1 pid)
	[ "$p1new" -ne "$p1" ] || fail "worker 1 still has pid $p1"
	[[ $SV_LINE =~ \ \ last\ stalled, ]] ||
	    fail "worker 1's last exit is not 'stalled':" "$SV_LINE"
	# Everything acked by all; the new process handled what the stopped
	# one missed, in order.
	run --separate-stderr ctl -t "$(ms 20000)" send --wait sentinel
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	first=$(awk 'NR == 1 { print $2 + 0 }' "$T/out")
	last=$(awk 'END { print $2 + 0 }' "$T/out")
	[ "$MSG_ID" -eq $((last + 1)) ] && [ $((last - first)) -eq 2999 ] ||
	    fail "ids $first..$last, sentinel $MSG_ID"
	sv_check_log "$FANOUTD_LOG" 3 "$first" "$MSG_ID" >/dev/null ||
	    fail "the workers did not handle every message, in order"
	grep -qE "^fanout-worker: worker 1 \\(pid $p1new\\): message [0-9]+," \
	    "$FANOUTD_LOG" || fail "the new worker 1 handled nothing"
	sv_status
	[ "$(sv_field 0 restarts)" -eq 0 ] && [ "$(sv_field 2 restarts)" -eq 0 ] ||
	    fail "workers 0 or 2 restarted" "$(cat "$T/status")"
	[ "$(sv_field 1 queued)" -eq 0 ] ||
	    fail "worker 1 still has messages queued" "$(cat "$T/status")"
}

# --- bounded queues -------------------------------------------------------

@test "queue full by count: 'full' for that worker only, nothing queued dropped" {
	local i

	write_config "worker_path=\"$(worker_wrapper "1:--mode noack --touch $T")\"" \
	    queue_max_messages=3 stall_timeout_ms=600000 \
	    ack_timeout_ms="$(ms 300)"
	start_fanoutd
	for i in 1 2 3; do
		run --separate-stderr ctl send "q-$i"
		assert_status 1
		assert_send 2 "$ACKED" "$QUEUED" "$ACKED"
	done
	for i in 4 5; do
		run --separate-stderr ctl send "q-$i"
		assert_status 1
		assert_send 2 "$ACKED" "$FULL" "$ACKED"
		sv_status
		[[ $(sv_line 1) =~ \ \ queued\ 3\ \ bytes\ 9\  ]] ||
		    fail "worker 1 does not hold the 3 older messages" \
		    "$(cat "$T/status")"
	done
	# The 3 it holds were sent to it; the refused ones never were.
	for i in 1 2 3; do
		[ -e "$T/worker-1.msg-$i" ] || fail "message $i not sent to worker 1"
	done
	[ ! -e "$T/worker-1.msg-4" ] && [ ! -e "$T/worker-1.msg-5" ] ||
	    fail "a refused message reached worker 1"
	[[ $(sv_line 0) =~ \ \ acked\ 5\ \ queued\ 0\  ]] &&
	    [[ $(sv_line 2) =~ \ \ acked\ 5\ \ queued\ 0\  ]] ||
	    fail "workers 0 and 2 did not ack all 5" "$(cat "$T/status")"
}

@test "queue full by bytes: a message too big for what is left is refused, a smaller one still fits" {
	local big

	big=$(printf 'b%.0s' $(seq 400))
	write_config "worker_path=\"$(worker_wrapper "1:--mode noack --touch $T")\"" \
	    queue_max_bytes=1024 max_message_bytes=600 \
	    stall_timeout_ms=600000 ack_timeout_ms="$(ms 300)"
	start_fanoutd
	for i in 1 2; do
		run --separate-stderr ctl send "$big"
		assert_status 1
		assert_send 2 "$ACKED" "$QUEUED" "$ACKED"
	done
	run --separate-stderr ctl send "$big"
	assert_status 1
	assert_send 2 "$ACKED" "$FULL" "$ACKED"
	run --separate-stderr ctl send small
	assert_status 1
	assert_send 2 "$ACKED" "$QUEUED" "$ACKED"
	sv_status
	[[ $(sv_line 1) =~ \ \ queued\ 3\ \ bytes\ 805\  ]] ||
	    fail "worker 1 should hold 400 + 400 + 5 bytes" "$(cat "$T/status")"
}

# --- systemd ----------------------------------------------------------------

@test "with WATCHDOG_USEC set, fanoutd pings the watchdog from its loop" {
	export WATCHDOG_USEC=200000
	start_fanoutd
	unset WATCHDOG_USEC
	wait_for "[ \"\$(grep -c '^[0-9.]* $FANOUTD_PID WATCHDOG=1\$' '$NOTIFY_LOG')\" -ge 3 ]" \
	    "$(ms 5000)"
	run ctl status
	assert_status 0
}

@test "degraded_action exit: no worker up for degraded_timeout_ms, fanoutd exits 1" {
	local p0

	write_config workers=1 \
	    "worker_path=\"$(worker_wrapper "0:--mode crashloop --touch $T")\"" \
	    degraded_timeout_ms=300 degraded_action='"exit"'
	start_fanoutd
	sv_status
	p0=$(sv_field 0 pid)
	kill -KILL "$p0"
	wait_pid_gone "$FANOUTD_PID" "$(ms 10000)" ||
	    fail "fanoutd did not exit" "$(cat "$FANOUTD_LOG")"
	[ "$(exit_of_fanoutd)" = "exited status=1" ] ||
	    fail "fanoutd: $(exit_of_fanoutd), expected exit status 1" \
	    "$(cat "$FANOUTD_LOG")"
	assert_file_line "$FANOUTD_LOG" 'degraded: no worker has been up for [0-9]+ ms'
	assert_file_line "$NOTIFY_LOG" " $FANOUTD_PID STATUS=degraded: no worker up for"
}

@test "degraded_action queue: fanoutd stays up, says degraded, queues" {
	local p0

	write_config workers=1 \
	    "worker_path=\"$(worker_wrapper "0:--mode crashloop --touch $T")\"" \
	    degraded_timeout_ms=300
	start_fanoutd
	sv_status
	p0=$(sv_field 0 pid)
	kill -KILL "$p0"
	wait_for "sv_status && head -n 1 '$T/status' | grep -qE '^fanoutd .*  up 0/1  .*  degraded [0-9.]+m?s\$'" \
	    "$(ms 10000)"
	assert_file_line "$FANOUTD_LOG" 'degraded: .*messages are queued'
	assert_file_line "$NOTIFY_LOG" " $FANOUTD_PID STATUS=degraded: no worker up for"
	run --separate-stderr ctl send still queued
	assert_status 1
	assert_send 0 "$QUEUED"
	alive "$FANOUTD_PID" || fail "fanoutd exited"
}
