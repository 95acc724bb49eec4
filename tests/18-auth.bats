#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Worker links are authenticated (issue 9): only the fanoutd that started
# a worker gets messages into it.  Strangers on the worker ports
# (tests/stranger.py) try what someone without the key could: silence,
# garbage, frames as if they were fanoutd, a made-up or reflected proof,
# a real exchange recorded and replayed, partial 16 MiB frames.  What the
# workers handled is read from the handlers themselves (tests/handlers/).

load helpers

HD=$FANOUT_SRCDIR/tests/handlers
STRANGER=$FANOUT_SRCDIR/tests/stranger.py

setup() {
	fanout_setup
	need_python
}

# au_list ARG...: a libconfig list of strings.
au_list() {
	local a s=""

	for a; do
		s+="${s:+, }\"$a\""
	done
	echo "[$s]"
}

# au_ports: the worker ports, one per line.
au_ports() {
	seq "$BASE_PORT" $((BASE_PORT + NWORKERS - 1))
}

# au_stranger PORT MODE [ARG]: a stranger's line (stranger.py) in $output.
au_stranger() {
	run in_ns timeout -k 2 "$(ms 30)" python3 "$STRANGER" --hold "$(ms 10)" \
	    "$@"
}

# au_send_all TEXT...: one `fanoutctl send` per TEXT, each acked by all.
au_send_all() {
	local m

	for m; do
		run --separate-stderr ctl send "$m"
		assert_status 0
		assert_send "$NWORKERS" "$ACKED" "$ACKED" "$ACKED"
	done
}

# au_handled I: the messages worker I's exec-record.sh handler got.
au_handled() {
	cat "$T/msgs.$1" 2>/dev/null | grep . || true
}

# au_rss PID: the process's resident set, in KiB.
au_rss() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

@test "strangers on every worker port, before and after fanoutd: no ack, nothing injected, every send 3/3" {
	local p mode start pids i n connects bytes lim swarm_n=10

	write_config "handler=$(au_list "$HD/exec-record.sh" "$T")"
	start=$(now_ms)
	# More idle connections than a worker serves, from before the
	# workers listen to the end, reconnecting whenever one is closed.
	# Under valgrind fanoutd needs longer for its hello than the swarm
	# needs to cycle 8 connections, and could lose the race for its own
	# link at start more often than the three links it tries before the
	# start-up fails: there, fewer than the worker's 8 slots, still
	# reconnecting at every deadline.
	[ "$FANOUT_VALGRIND" = 1 ] && swarm_n=7
	spawn in_ns python3 "$STRANGER" swarm "$swarm_n" "$T/swarm.out" \
	    $(au_ports)
	swarm=$BG_PID
	start_fanoutd
	pids=$(status_field 0 pid; status_field 1 pid; status_field 2 pid)
	au_send_all before-1 before-2

	for p in $(au_ports); do
		for mode in nothing garbage data wrong reflect; do
			au_stranger "$p" "$mode"
			assert_status 0
			case $mode in
			wrong|reflect)
				# a challenge, then closed: no ack
				[ "$output" = "closed 80 4" ] ||
				    fail "$mode on port $p: $output" ;;
			*)
				[ "$output" = "closed 0 -" ] ||
				    fail "$mode on port $p: $output" ;;
			esac
		done
	done
	au_send_all after-1 after-2 after-3

	for i in 0 1 2; do
		[ "$(au_handled "$i")" = "$(printf '%s\n' before-1 before-2 \
		    after-1 after-2 after-3)" ] ||
		    fail "worker $i's handler got:" "$(au_handled "$i")"
	done
	# The swarm kept at it all along and never got a byte.
	kill -TERM "$swarm"
	wait_pid_gone "$swarm" "$(ms 5000)"
	read -r connects bytes <"$T/swarm.out"
	[ "$connects" -gt 30 ] && [ "$bytes" -eq 0 ] ||
	    fail "swarm: $connects connections, $bytes bytes received"
	# No worker was restarted or lost its link to fanoutd.
	[ "$(status_field 0 pid; status_field 1 pid; status_field 2 pid)" = \
	    "$pids" ] || fail "workers restarted: $pids ->" "$(ctl status)"
	! grep -E 'link lost|failed the handshake' "$FANOUTD_LOG" |
	    grep '^fanoutd:' || fail "fanoutd lost a link"
	# Warnings about strangers are rate-limited: at most 10 lines per
	# worker per 10 s window.
	lim=$((10 * (($(now_ms) - start) / 10000 + 2)))
	for i in 0 1 2; do
		n=$(grep -cE "^fanout-worker: worker $i: (bad frame|connection|[0-9]+ connections)" \
		    "$FANOUTD_LOG" || true)
		[ "$n" -le "$lim" ] ||
		    fail "worker $i: $n warnings about strangers, limit $lim"
	done
}

@test "auth_timeout_ms reaches the workers: a silent stranger is closed at that deadline, named in the log" {
	local t

	t=$(ms 700)
	write_config auth_timeout_ms="$t"
	start_fanoutd
	au_stranger "$BASE_PORT" nothing
	assert_status 0
	[ "$output" = "closed 0 -" ] || fail "stranger: $output"
	# The default is 2000: the line says which deadline the worker kept.
	grep -q "worker 0: connection not authenticated within $t ms; closing it" \
	    "$FANOUTD_LOG" || fail "no such line:" "$(cat "$FANOUTD_LOG")"
	au_send_all after-the-stranger
}

@test "a real exchange recorded through a relay and replayed to the worker: refused, nothing injected" {
	local i p

	# The workers listen 100 ports up; a relay on each worker port
	# records what fanoutd sends on its first connection.
	cat >"$T/shift.sh" <<-EOF
	#!/bin/bash
	a=()
	while [ \$# -gt 0 ]; do
		if [ "\$1" = --port ]; then a+=(--port \$((\$2 + 100))); shift 2
		else a+=("\$1"); shift; fi
	done
	exec '$WORKER' "\${a[@]}"
	EOF
	chmod 755 "$T/shift.sh"
	write_config "handler=$(au_list "$HD/exec-record.sh" "$T")" \
	    worker_path="\"$T/shift.sh\""
	for i in 0 1 2; do
		p=$((BASE_PORT + i))
		spawn in_ns python3 "$STRANGER" relay "$p" $((p + 100)) \
		    "$T/rec.$i" >"$T/relay.$i"
		wait_for "grep -q listening '$T/relay.$i'" "$(ms 10000)"
	done
	start_fanoutd
	au_send_all recorded
	for i in 0 1 2; do
		p=$((BASE_PORT + 100 + i))
		au_stranger "$p" replay "$T/rec.$i"
		assert_status 0
		[ "$output" = "closed 80 4" ] || fail "replay on port $p: $output"
		# What was replayed: hello, proof, the message.
		[ "$(stat -c %s "$T/rec.$i")" -eq $((48 + 48 + 16 + 8)) ] ||
		    fail "recorded $(stat -c %s "$T/rec.$i") bytes:" \
		    "$(od -An -tx1 "$T/rec.$i")"
	done
	au_send_all after
	for i in 0 1 2; do
		[ "$(au_handled "$i")" = "$(printf '%s\n' recorded after)" ] ||
		    fail "worker $i's handler got:" "$(au_handled "$i")"
	done
}

@test "strangers holding partial 16 MiB frames do not grow the workers" {
	local i k p rss0=() rss pid

	start_fanoutd
	for i in 0 1 2; do
		rss0[i]=$(au_rss "$(status_field "$i" pid)")
	done
	for i in 0 1 2; do
		p=$((BASE_PORT + i))
		for k in 1 2 3; do
			spawn in_ns python3 "$STRANGER" --hold "$(ms 20)" "$p" \
			    big $((16 * 1024 * 1024)) >"$T/big.$i.$k"
		done
	done
	# Each stranger has sent what the worker would take.
	wait_for "[ \$(cat '$T'/big.*.* | grep -c '^sent') -eq 9 ]" \
	    "$(ms 20000)"
	for i in 0 1 2; do
		pid=$(status_field "$i" pid)
		rss=$(au_rss "$pid")
		[ $((rss - rss0[i])) -lt 8192 ] ||
		    fail "worker $i grew from ${rss0[i]} KiB to $rss KiB"
	done
	au_send_all after-big
}

@test "the key reaches each worker on a pipe it closes at once: not in a handler's /proc/self/fd, nor the worker's" {
	local i pipe pid f

	# Before the worker runs, note what its --secret-fd is.
	cat >"$T/spy.sh" <<-EOF
	#!/bin/sh
	fd= idx= prev=
	for a; do
		[ "\$prev" = --secret-fd ] && fd=\$a
		[ "\$prev" = --index ] && idx=\$a
		prev=\$a
	done
	if [ -n "\$fd" ]; then
		readlink "/proc/\$\$/fd/\$fd" >'$T/secret.'\$idx
	else
		echo none >'$T/secret.'\$idx
	fi
	exec '$WORKER' "\$@"
	EOF
	chmod 755 "$T/spy.sh"
	write_config "handler=$(au_list "$HD/exec-fds.sh" "$T")" \
	    worker_path="\"$T/spy.sh\""
	start_fanoutd
	au_send_all look
	for i in 0 1 2; do
		pipe=$(cat "$T/secret.$i")
		[[ $pipe == pipe:* ]] ||
		    fail "worker $i: --secret-fd is not a pipe: $pipe"
		[ -s "$T/fds.$i" ] || fail "worker $i's handler listed nothing"
		grep -q '^self$' "$T/fds.$i" || fail "no /proc/self/fd listing"
		! grep -F "$pipe" "$T/fds.$i" ||
		    fail "worker $i's handler has the key's pipe" \
		    "$(cat "$T/fds.$i")"
		pid=$(status_field "$i" pid)
		for f in "/proc/$pid/fd/"* "/proc/$FANOUTD_PID/fd/"*; do
			[ "$(readlink "$f")" != "$pipe" ] ||
			    fail "$f is still the key's pipe"
		done
	done
}

@test "workers ignore SIGHUP and SIGINT (meant for fanoutd's process group) and keep delivering" {
	local i pids

	start_fanoutd -v
	pids=$(status_field 0 pid; status_field 1 pid; status_field 2 pid)
	for i in $pids; do
		kill -HUP "$i"
		kill -INT "$i"
	done
	for i in 0 1 2; do
		wait_for "grep -q '^fanout-worker: worker $i: Hangup from pid [0-9]*: ignored' '$FANOUTD_LOG'" \
		    "$(ms 5000)"
		wait_for "grep -q '^fanout-worker: worker $i: Interrupt from pid [0-9]*: ignored' '$FANOUTD_LOG'" \
		    "$(ms 5000)"
	done
	for i in $pids; do
		alive "$i" || fail "worker $i died"
	done
	au_send_all after-signals
	[ "$(pids_of_output)" = "$pids" ] ||
	    fail "workers changed: $pids ->" "$(pids_of_output)"
}
