#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Issue 9, the smaller parts: config files and includes that are not what
# they should be, signals with no meaning, a flood on a worker's notify
# socket, and fanoutctl with bad standard descriptors or an endless line.

load helpers

# check_conf: fanoutd -t -c $CONF from /, bounded; $status and $output.
check_conf() {
	run -- timeout -k 2 "$(ms 10)" sh -c 'cd / && exec "$@"' sh \
	    "$FANOUTD" -t -c "$CONF" "$@" 2>&1
}

# --- configuration files and includes -----------------------------------

@test "a FIFO as the configuration file is refused at once, no wait" {
	mkfifo "$T/fifo.conf"
	CONF=$T/fifo.conf
	check_conf
	[ "$status" -eq 1 ] || fail "expected status 1 (124: it hung)" \
	    "$(show_run)"
	[[ $output == *"cannot read $T/fifo.conf: not a regular file"* ]] ||
	    fail "no reason given" "$(show_run)"
	# Started for real, the same, before READY=1.
	start_fanoutd_fails
	[[ $output == *"not a regular file"* ]] || fail "$output"
}

@test "a FIFO as an include is refused at once, named" {
	local line

	mkfifo "$T/fifo.conf"
	echo '@include "fifo.conf"' >>"$CONF"
	line=$(wc -l <"$CONF")
	check_conf
	[ "$status" -eq 1 ] || fail "expected status 1 (124: it hung)" \
	    "$(show_run)"
	[[ $output == *"$CONF:$line: @include \"fifo.conf\": not a regular file"* ]] ||
	    fail "the include is not named" "$(show_run)"
}

@test "relative includes resolve against the config file's directory" {
	mkdir "$T/conf.d"
	echo 'workers = 2;' >"$T/conf.d/workers.conf"
	echo 'base_port = 9100;' >"$T/port.conf"
	grep -v -e '^workers' -e '^base_port' "$CONF" >"$T/main.conf"
	{
		echo '@include "conf.d/workers.conf"'
		echo '@include "port.conf"'
	} >>"$T/main.conf"
	CONF=$T/main.conf
	# From /, where neither name exists.
	check_conf -v
	[ "$status" -eq 0 ] || fail "$(show_run)"
	[[ $output == *"workers = 2;"* ]] || fail "$(show_run)"
	[[ $output == *"base_port = 9100;"* ]] || fail "$(show_run)"
}

@test "a missing include is reported with its name" {
	local line

	echo '@include "nothere.conf"' >>"$CONF"
	line=$(wc -l <"$CONF")
	check_conf
	[ "$status" -eq 1 ] || fail "$(show_run)"
	[[ $output == *"$CONF:$line: @include \"nothere.conf\": No such file or directory"* ]] ||
	    fail "the include is not named" "$(show_run)"
}

@test "includes outside the config file's directory are refused" {
	mkdir "$T/etc"
	# A file fanoutd can read but the configuration has no business with.
	echo 'SECRET-CONTENT' >"$T/secret"
	ln -s "$T/secret" "$T/etc/link.conf"
	for inc in "$T/secret" ../secret link.conf; do
		sed '/^@include/d' "$CONF" >"$T/etc/fanout.conf"
		echo "@include \"$inc\"" >>"$T/etc/fanout.conf"
		CONF=$T/etc/fanout.conf
		check_conf
		[ "$status" -eq 1 ] || fail "$inc: $(show_run)"
		[[ $output == *"@include \"$inc\": "*"directory of the configuration file"* ]] ||
		    fail "$inc: not refused as outside" "$(show_run)"
		# Refused before anything was read from it.
		[[ $output != *secret:1* ]] || fail "$inc: read" "$(show_run)"
	done
}

# --- signals -------------------------------------------------------------

@test "SIGUSR1, SIGUSR2, SIGALRM: fanoutd keeps serving, says it ignored them" {
	local sig name pids

	start_fanoutd
	pids=${WORKER_PIDS[*]}
	for sig in USR1 USR2 ALRM VTALRM PROF IO TSTP TTIN TTOU XFSZ RTMIN+1; do
		kill -s "$sig" "$FANOUTD_PID"
	done
	for name in 'User defined signal 1' 'User defined signal 2' \
	    'Alarm clock'; do
		wait_for "grep -q '^fanoutd: $name from pid [0-9]*: ignored\$' '$FANOUTD_LOG'" \
		    "$(ms 5000)"
	done
	run ctl send after-signals
	assert_status 0
	alive "$FANOUTD_PID" || fail "fanoutd is gone"
	grep -q '^T' <(awk '/^State:/ { print $2 }' "/proc/$FANOUTD_PID/status") &&
	    fail "fanoutd is stopped"
	[ "$(children_of "$FANOUTD_PID" | xargs)" = "$pids" ] ||
	    fail "the workers changed: $pids -> $(children_of "$FANOUTD_PID" | xargs)"
}

@test "signals meant for fanoutd's process group: no worker dies" {
	local sig pids

	start_fanoutd
	pids=${WORKER_PIDS[*]}
	# What a group signal does, without hitting the test's supervisor:
	# every process of the pool gets it.
	for sig in HUP INT USR1 USR2 ALRM TSTP TTIN TTOU; do
		[ "$sig" = INT ] && continue	# fanoutd's own: it stops
		kill -s "$sig" "${WORKER_PIDS[@]}"
		[ "$sig" = HUP ] || kill -s "$sig" "$FANOUTD_PID"
	done
	kill -s INT "${WORKER_PIDS[@]}"
	run ctl send after-group-signals
	assert_status 0
	# The same workers, none restarted.
	[ "$(children_of "$FANOUTD_PID" | xargs)" = "$pids" ] ||
	    fail "the workers changed: $pids -> $(children_of "$FANOUTD_PID" | xargs)"
	! grep -q 'killed by signal\|restarting' "$FANOUTD_LOG" ||
	    fail "$(cat "$FANOUTD_LOG")"
	stop_fanoutd
	[ "$FANOUTD_EXIT" = "exited status=0" ]
}

# --- log floods ----------------------------------------------------------

@test "100,000 bad datagrams on a worker's notify socket: a few lines and a count" {
	local wpid sock fd n

	need_python
	mkfifo "$T/release"
	write_config "worker_path=\"$(worker_wrapper "2:--ready-after $T/release")\""
	launch_fanoutd_bg
	wait_for "[ -e '$T/release.waiting' ]" "$(ms 10000)"
	wpid=$(pgrep -f -- "--ready-after $T/release")
	sock=$(tr '\0' '\n' <"/proc/$wpid/environ" | sed -n 's/^NOTIFY_SOCKET=//p')
	[ -n "$sock" ] || fail "no NOTIFY_SOCKET for worker 2 ($wpid)"
	in_ns python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
addr = "\0" + sys.argv[1][1:]
for i in range(100000):
    s.sendto(b"READY=1\nSTATUS=flood %d" % i, addr)
' "$sock"
	exec {fd}<>"$T/release"
	finish_launch
	exec {fd}>&-
	[ "$NW_STATUS" -eq 0 ] || fail "fanoutd did not become ready: $NW_ERR"
	stop_fanoutd
	n=$(grep -c 'notification from pid' "$FANOUTD_LOG" || true)
	[ "$n" -le 20 ] || fail "$n lines about the flood"
	grep -qE '^fanoutd: [^:]*: [0-9]+ similar messages? suppressed$' \
	    "$FANOUTD_LOG" || fail "no count of what was suppressed" \
	    "$(tail -n 20 "$FANOUTD_LOG")"
	[ "$(wc -l <"$FANOUTD_LOG")" -lt 100 ] ||
	    fail "$(wc -l <"$FANOUTD_LOG") lines in the log"
}

# --- fanoutctl -----------------------------------------------------------

@test "fanoutctl send -: a read error on stdin is an error, not a success" {
	start_fanoutd
	run ctl send - <"$T"
	[ "$status" -ne 0 ] || fail "exit 0 on EISDIR" "$(show_run)"
	[[ $output == *"reading standard input: Is a directory"* ]] ||
	    fail "$(show_run)"
	# A closed stdin: not an empty stream.
	run bash -c '"$1" -s "$2" send - <&-' sh "$FANOUTCTL" "$SOCK"
	[ "$status" -ne 0 ] || fail "exit 0 with stdin closed" "$(show_run)"
	[[ $output == *"reading standard input: it is closed"* ]] ||
	    fail "$(show_run)"
}

@test "fanoutctl send -: an endless line is refused within a bounded memory" {
	local limit=

	start_fanoutd
	# Address space: 24 MiB over what fanoutctl has when idle.  The line
	# buffer stops one byte past 16 MiB; a buffer doubled to 32 MiB
	# (glibc grows it in place with mremap) would not fit.  Not under a
	# sanitizer, which reserves terabytes of address space.
	if ! ldd "$FANOUTCTL" | grep -q 'libasan\|libubsan'; then
		limit=$(( $(ctl_vsz_kib) + 24 * 1024 ))
	fi
	run bash -c 'yes | tr -d "\n" | exec ${1:+prlimit --as=$(($1 * 1024))} \
	    timeout -k 2 60 "$2" -s "$3" send -' sh "$limit" "$FANOUTCTL" "$SOCK"
	[ "$status" -eq 3 ] || fail "$(show_run)"
	[[ $output == *"line 1: message of more than 16777216 bytes refused"* ]] ||
	    fail "$(show_run)"
}

# ctl_vsz_kib: fanoutctl's address space, idle (blocked reading stdin).
ctl_vsz_kib() {
	local pid fd v

	mkfifo "$T/ctl-in"
	"$FANOUTCTL" -s "$SOCK" send - <"$T/ctl-in" >/dev/null 2>&1 &
	pid=$!
	exec {fd}>"$T/ctl-in"
	# Connected: it has set up all it needs before reading.
	wait_for "ls -l /proc/$pid/fd 2>/dev/null | grep -q socket:" \
	    "$(ms 5000)" >&2
	v=$(awk '/^VmPeak:/ { print $2 }' "/proc/$pid/status")
	exec {fd}>&-
	wait "$pid" || true
	echo "$v"
}

@test "fanoutctl with stdout closed: nothing into the control socket, exit 4" {
	start_fanoutd
	# bats' run captures stdout: close it inside.
	run bash -c '"$1" -s "$2" send closed-stdout >&-' sh "$FANOUTCTL" \
	    "$SOCK"
	[ "$status" -eq 4 ] || fail "expected 4" "$(show_run)"
	run bash -c '"$1" -s "$2" status >&-' sh "$FANOUTCTL" "$SOCK"
	[ "$status" -eq 4 ] || fail "expected 4" "$(show_run)"
	# send - sends nothing when no one can read the results.
	run bash -c 'printf "a\nb\n" | "$1" -s "$2" send - >&-' sh \
	    "$FANOUTCTL" "$SOCK"
	[ "$status" -eq 4 ] || fail "expected 4" "$(show_run)"
	! grep -q 'control client' "$FANOUTD_LOG" ||
	    fail "the daemon got garbage" "$(cat "$FANOUTD_LOG")"
	# One message went through: the first one.
	run status_lines
	assert_status 0
	[ "$(printf '%s\n' "${lines[@]}" | grep -cE '^worker [0-2] .*  acked 1  ')" -eq 3 ] ||
	    fail "expected 1 message acked by each worker" "$(show_run)"
}

@test "fanoutd started with stdin, stdout and stderr closed: /dev/null stands in, it serves" {
	local pid

	# Not under notify-wait: its own descriptors are what is tested.
	spawn in_ns bash -c 'exec "$1" -c "$2" <&- >&- 2>&-' sh "$FANOUTD" "$CONF"
	pid=$BG_PID
	wait_for "[ -S '$SOCK' ] && ctl status >/dev/null 2>&1" "$(ms 10000)"
	for fd in 0 1 2; do
		[ "$(readlink "/proc/$pid/fd/$fd")" = /dev/null ] ||
		    fail "fd $fd of fanoutd is $(readlink "/proc/$pid/fd/$fd")"
	done
	run --separate-stderr ctl send with closed stdio
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	kill -TERM "$pid"
	wait_pid_gone "$pid" "$(ms 10000)" || fail "fanoutd did not stop"
}
