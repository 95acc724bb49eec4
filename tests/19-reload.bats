#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Live reload (issue 8): fanoutctl reload and SIGHUP reread the file; an
# invalid file changes nothing; the pool grows and shrinks without losing a
# message; workers whose command line changed restart one at a time while
# sends go on; systemd hears RELOADING=1 and READY=1; fanoutd -t checks
# what startup checks, and -t -v prints the effective configuration.

load helpers

PIPE_LINES=$FANOUT_SRCDIR/tests/handlers/pipe-lines.sh

# set_workers N: the config file, with workers = N and the rest unchanged.
set_workers() {
	sed -i "s/^workers = [0-9]*;/workers = $1;/" "$CONF"
	NWORKERS=$1
}

# listening PORT: something listens on PORT inside the test's namespace.
listening() {
	[ "$(in_ns ss -Htln "( sport = :$1 )" | wc -l)" -gt 0 ]
}

# notified_after N TEXT: the notify log holds TEXT (a whole line's message)
# after its first N lines.
notified_after() {
	tail -n +"$(($1 + 1))" "$NOTIFY_LOG" | grep -q "^[0-9.]* [0-9]* $2\$"
}

# stream_chunk FD FIRST COUNT: write messages FIRST..FIRST+COUNT-1, one per
# line, to the stream's input.
stream_chunk() {
	local i

	for ((i = $2; i < $2 + $3; i++)); do echo "m$i"; done >&"$1"
}

@test "reload 3 -> 8 -> 2 -> 5 under a 5,000-message stream: nothing lost, pids kept, removed workers reaped" {
	local fifo=$T/in out=$T/stream.out i pid p8=() pids3=() total_for=0 handled=0

	need_python
	mkdir "$T/h"
	write_config "handler=[\"$PIPE_LINES\", \"$T/h\"]" \
	    'handler_mode="pipe"'
	start_fanoutd
	for i in 0 1 2; do pids3+=("$(worker_pid $i)"); done

	# Opened read-write, the FIFO blocks no one; the stream's copy of
	# fd 7 is closed so that closing ours is its end of input.
	mkfifo "$fifo"
	exec 7<>"$fifo"
	# -w: each message waits for the acks of every worker it was for.
	spawn ctl -j send -w - <"$fifo" >"$out" 2>"$T/stream.err" 7>&-
	local streamer=$BG_PID

	stream_chunk 7 0 1000
	set_workers 8
	run --separate-stderr ctl reload
	assert_status 0
	[ "$(grep -c '^added  *worker [3-7]: pid [0-9]*, port ' <<<"$output")" -eq 5 ] ||
	    fail "expected five workers added" "$(show_run)"
	assert_line "^reloaded: 8 workers, 8 up$"
	for i in 0 1 2 3 4 5 6 7; do p8+=("$(worker_pid $i)"); done

	stream_chunk 7 1000 1000
	set_workers 2
	run --separate-stderr ctl reload
	assert_status 0
	[ "$(grep -c '^removed  *worker [2-7]: port ' <<<"$output")" -eq 6 ] ||
	    fail "expected six workers removed" "$(show_run)"
	assert_line "^reloaded: 2 workers, 2 up$"
	# Removed: reaped, their ports free.
	wait_pid_gone "${p8[@]:2}" "$(ms 5000)" ||
	    fail "removed workers still running"
	for i in 2 3 4 5 6 7; do
		! listening $((BASE_PORT + i)) ||
		    fail "port $((BASE_PORT + i)) still listened on"
	done

	stream_chunk 7 2000 1000
	set_workers 5
	run --separate-stderr ctl reload
	assert_status 0
	[ "$(grep -c '^added  *worker [2-4]: ' <<<"$output")" -eq 3 ] ||
	    fail "expected three workers added" "$(show_run)"

	stream_chunk 7 3000 2000
	exec 7>&-
	wait_pid_gone "$streamer" "$(ms 60000)" || fail "the stream did not end"
	wait "$streamer" || fail "send - exited $?" "$(cat "$T/stream.err")"

	# Untouched workers kept their process all along.
	[ "$(worker_pid 0)" = "${pids3[0]}" ] && [ "$(worker_pid 1)" = "${pids3[1]}" ] ||
	    fail "workers 0 and 1 were restarted"
	# Every message went to every worker that was up when it was
	# accepted, and each of those handled it exactly once.
	output=$(cat "$out")
	[ "$(grep -c '"message_id":' "$out")" -eq 5000 ] ||
	    fail "expected 5000 replies" "$(tail -n 3 "$out")"
	json_check '"message_id" not in o or (o["result"] == "ok" and o["workers_acked"] == o["workers_total"] and o["workers_total"] in (2, 3, 4, 5, 6, 7, 8))'
	total_for=$(python3 -c '
import json, sys
print(sum(o["workers_total"] for o in map(json.loads, open(sys.argv[1])) if "message_id" in o))' "$out")
	handled=$(cat "$T"/h/msgs.* | wc -l)
	[ "$handled" -eq "$total_for" ] ||
	    fail "handlers handled $handled messages, replies promised $total_for"
	for i in 0 1; do
		[ "$(wc -l <"$T/h/msgs.$i")" -eq 5000 ] ||
		    fail "worker $i handled $(wc -l <"$T/h/msgs.$i") of 5000"
		[ "$(sort -u "$T/h/msgs.$i" | wc -l)" -eq 5000 ] ||
		    fail "worker $i handled a message twice"
	done
}

@test "an invalid file changes nothing: file:line on stderr, exit 3, still serving the old one" {
	local before

	start_fanoutd
	before=$(cat "$CONF")
	for bad in 'workers = ;' 'workers = 0;' 'bogus_setting = 1;'; do
		printf '%s\n%s\n' "$before" "$bad" >"$CONF"
		sed -i "0,/^workers = /s/^workers = 3;/workers = 5;/" "$CONF"
		run --separate-stderr ctl reload
		assert_status 3
		[ -z "$output" ] || fail "output on stdout" "$(show_run)"
		[[ $stderr =~ $CONF:[0-9]+: ]] ||
		    fail "no file:line for '$bad'" "$(show_run)"
		[[ $stderr == *"reload refused: configuration invalid; nothing changed"* ]] ||
		    fail "no verdict" "$(show_run)"
		run --separate-stderr ctl send still there
		assert_status 0
		assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	done
	grep -q "reload: $CONF:[0-9]*: bogus_setting: unknown setting" \
	    "$FANOUTD_LOG" || fail "the error is not in fanoutd's log"
	run --separate-stderr ctl -j reload
	assert_status 3
	json_check 'o["result"] == "refused" and o["changes"][0]["kind"] == "error"'
}

@test "a changed handler restarts the workers one at a time while sends keep completing" {
	local i old=() new=() order

	mkdir "$T/h"
	write_config "handler=[\"$PIPE_LINES\", \"$T/h\"]" \
	    'handler_mode="pipe"'
	start_fanoutd
	for i in 0 1 2; do old+=("$(worker_pid $i)"); done
	sed -i "s|^handler = .*|handler = [\"$PIPE_LINES\", \"$T/h\", \"again\"];|" "$CONF"
	# Sends in a loop while the reload runs: each must reach 3/3, the
	# worker being restarted acking once it is back (-w).
	spawn bash -c 'while [ ! -e "$1/stop" ]; do
		"$2" -s "$3" send -w during || exit 1
	    done' sender "$T" "$FANOUTCTL" "$SOCK"
	local sender=$BG_PID
	run --separate-stderr ctl reload
	touch "$T/stop"
	assert_status 0
	assert_line '^set  *handler: .* -> .*again.*\(workers restart one at a time\)$'
	order=$(sed -n 's/^restarted  *worker \([0-9]\): .*/\1/p' <<<"$output" | tr -d '\n')
	[ "$order" = 012 ] || fail "restarts not one by one in order: $order" "$(show_run)"
	wait "$sender" || fail "a send during the reload failed"
	for i in 0 1 2; do
		new[i]=$(worker_pid $i)
		[ "${new[i]}" != "${old[i]}" ] || fail "worker $i kept its pid"
		alive "${old[i]}" && fail "old worker $i still alive"
		grep -q 'again' "/proc/${new[i]}/cmdline" ||
		    fail "worker $i does not run the new handler"
	done
	# The restarts came one after the other: each new process started
	# after the one before it was up (pids grow, as spawn order does).
	[ "${new[0]}" -lt "${new[1]}" ] && [ "${new[1]}" -lt "${new[2]}" ] ||
	    fail "pids ${new[*]}"
	# A setting that cannot change live: said, and kept.
	sed -i "s|^control_socket = .*|control_socket = \"$T/other.sock\";|" "$CONF"
	run --separate-stderr ctl reload
	assert_status 0
	assert_line "^kept  *control_socket: \"$T/other.sock\" needs a restart of fanoutd; \"$SOCK\" stays in effect until then$"
	[ -S "$SOCK" ] && [ ! -e "$T/other.sock" ] || fail "control socket moved"
}

@test "SIGHUP reloads as fanoutctl reload does; systemd hears RELOADING=1, then READY=1 with what changed" {
	local n

	start_fanoutd
	n=$(wc -l <"$NOTIFY_LOG")
	set_workers 4
	kill -HUP "$FANOUTD_PID"
	wait_for "worker_is 3 up" "$(ms 10000)"
	wait_for "notified_after $n 'STATUS=reloaded: 3 → 4 workers, 4/4 connected'" "$(ms 5000)"
	# In this order: RELOADING=1 with its timestamp, then READY=1.
	tail -n +"$((n + 1))" "$NOTIFY_LOG" | awk '
	    $3 == "RELOADING=1" { r = NR }
	    $3 ~ /^MONOTONIC_USEC=[0-9]+$/ && r && !m { m = NR }
	    $3 == "READY=1" && m { ok = 1 }
	    END { exit !ok }' || fail "notifications out of order" "$(cat "$NOTIFY_LOG")"
	grep -q 'reload: added: worker 3: pid [0-9]*, port ' "$FANOUTD_LOG" ||
	    fail "the change is not logged"
	run --separate-stderr ctl send after the hangup
	assert_status 0
	assert_send 4 "$ACKED" "$ACKED" "$ACKED" "$ACKED"

	# An invalid file on SIGHUP: logged, nothing changed.
	sed -i 's/^workers = 4;/workers = "many";/' "$CONF"
	kill -HUP "$FANOUTD_PID"
	wait_for "grep -q 'reload failed: the configuration is unchanged' '$FANOUTD_LOG'" "$(ms 5000)"
	grep -q "reload: $CONF:[0-9]*: workers: must be an integer" "$FANOUTD_LOG" ||
	    fail "no file:line in the log" "$(cat "$FANOUTD_LOG")"
	run --separate-stderr ctl send still four
	assert_status 0
	assert_send 4 "$ACKED" "$ACKED" "$ACKED" "$ACKED"
}

@test "a reload while one is under way is refused with exit 3; a file without changes says so" {
	# Worker 3, once there, never becomes ready: the reload that adds
	# it waits for it until start_timeout_ms.
	mkfifo "$T/never"
	write_config start_timeout_ms="$(ms 3000)" \
	    "worker_path=\"$(worker_wrapper "3:--ready-after $T/never")\""
	start_fanoutd
	run --separate-stderr ctl reload
	assert_status 0
	assert_line "^unchanged  *$CONF: no change$"
	set_workers 4
	spawn ctl reload
	local first=$BG_PID
	wait_for "grep -q 'reloading $CONF' '$FANOUTD_LOG'" "$(ms 5000)"
	run --separate-stderr ctl reload
	assert_status 3
	[[ $stderr == *"busy: fanoutd is starting or already reloading"* ]] ||
	    fail "unexpected message" "$(show_run)"
	wait "$first" && fail "the first reload should report worker 3 failed"
	true
}

@test "a retiring worker that never acks: its messages are reported, not silently dropped" {
	local victim

	write_config stall_timeout_ms="$(ms 1000)" ack_timeout_ms="$(ms 200)" \
	    "worker_path=\"$(worker_wrapper "2:--mode noack")\""
	start_fanoutd
	victim=$(worker_pid 2)
	run --separate-stderr ctl send held back
	assert_status 1
	set_workers 2
	run --separate-stderr ctl reload
	assert_status 0
	assert_line '^removed  *worker 2: 1 queued message \(ids [0-9]+ to [0-9]+\) not delivered$'
	wait_pid_gone "$victim" "$(ms 10000)" || fail "worker 2 not reaped"
}

@test "fanoutd -t checks worker_path as startup does; -t -v prints every setting" {
	write_config "worker_path=\"$T/missing\""
	run --separate-stderr "$FANOUTD" -t -c "$CONF"
	assert_status 1
	[[ $stderr == "$CONF:"[0-9]*": worker_path: $T/missing: No such file or directory" ]] ||
	    fail "unexpected error" "$(show_run)"
	write_config workers=4
	run --separate-stderr "$FANOUTD" -t -v -c "$CONF"
	assert_status 0
	assert_line '^workers = 4;$'
	assert_line '^ack_timeout_ms = [0-9]+;$'
	assert_line '^restart_max_delay_ms = 30000;$'
	assert_line '^handler_mode = "exec";$'
	assert_line '^# handler: none$'
	assert_line '^configuration OK$'
	# What -t -v prints is a valid file with the same meaning.
	grep -v '^configuration OK$' <<<"$output" >"$T/printed.conf"
	run --separate-stderr "$FANOUTD" -t -v -c "$T/printed.conf"
	assert_status 0
}
