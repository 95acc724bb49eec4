#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Command lines: --help and --version of every program, usage errors (exit
# 2), and fanoutctl with no daemon to talk to (exit 3).

load helpers

version() {
	sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' \
	    "$FANOUT_BUILDDIR/config.h"
}

@test "--help and -h print usage on stdout and exit 0, for every program" {
	local prog opt

	for prog in "$FANOUTD" "$FANOUTCTL" "$WORKER"; do
		for opt in --help -h; do
			run --separate-stderr "$prog" "$opt"
			assert_status 0
			[[ $output =~ [Uu]sage ]] ||
			    fail "$prog $opt: no usage on stdout" "$(show_run)"
			[ -z "$stderr" ] ||
			    fail "$prog $opt wrote to stderr: $stderr"
		done
	done
}

@test "--help of fanoutctl names its commands and options" {
	run --separate-stderr "$FANOUTCTL" --help
	assert_status 0
	local w

	for w in send status check -s -t --json --wait --quiet --warn-down \
	    --crit-down --warn-queued --crit-queued; do
		[[ $output == *"$w"* ]] ||
		    fail "fanoutctl --help does not mention $w" "$output"
	done
}

@test "--version and -V print 'PROGRAM VERSION' and exit 0" {
	local v prog opt

	v=$(version)
	[ -n "$v" ] || fail "no PACKAGE_VERSION in $FANOUT_BUILDDIR/config.h"
	for prog in fanoutd fanoutctl fanout-worker; do
		for opt in --version -V; do
			run --separate-stderr "$FANOUT_BUILDDIR/src/$prog" "$opt"
			assert_status 0
			[ "$output" = "$prog $v" ] ||
			    fail "$prog $opt: expected '$prog $v'" "$(show_run)"
		done
	done
}

@test "fanoutd usage errors exit 2 with a message on stderr" {
	local args

	for args in "-x" "--bogus" "-c" "extra-argument" "-c $CONF extra"; do
		# shellcheck disable=SC2086
		run --separate-stderr "$FANOUTD" $args
		[ "$status" -eq 2 ] ||
		    fail "fanoutd $args: expected exit 2" "$(show_run)"
		[ -n "$stderr" ] || fail "fanoutd $args: nothing on stderr"
		[ -z "$output" ] || fail "fanoutd $args: wrote to stdout: $output"
	done
	[ ! -e "$SOCK" ] || fail "a usage error created the control socket"
}

@test "fanoutctl usage errors exit 2, even with no daemon running" {
	local args

	for args in "" "frobnicate" "send" "status extra" "-x status" \
	    "--bogus status" "-t abc status" "-t -5 status" "-t" "-s" \
	    "send --wait" "send -w" "send --bogus hi" "status --wait" \
	    "send -q hi" "send --quiet hi" "send --window" "send --window 0 -"; do
		# shellcheck disable=SC2086
		run --separate-stderr "$FANOUTCTL" -s "$T/none.sock" $args
		[ "$status" -eq 2 ] ||
		    fail "fanoutctl $args: expected exit 2" "$(show_run)" \
		    "stderr: $stderr"
		[ -n "$stderr" ] || fail "fanoutctl $args: nothing on stderr"
	done
}

@test "fanoutctl's option errors name it 'fanoutctl', not its path" {
	local args

	for args in "-x status" "--bogus status" "-s" "-t" "--socket" \
	    "send --bogus hi" "send --window"; do
		# shellcheck disable=SC2086
		run --separate-stderr "$FANOUTCTL" $args
		assert_status 2
		[[ ${stderr%%$'\n'*} == "fanoutctl: "* ]] ||
		    fail "fanoutctl $args: first line of stderr: $stderr"
		[[ $stderr != *"$FANOUTCTL"* ]] ||
		    fail "fanoutctl $args: its path in stderr: $stderr"
	done
}

@test "fanoutctl check: a usage error is UNKNOWN, exit 3, as for a plugin" {
	local args

	for args in "check extra" "check -w" "check -w 0" "check -c x" \
	    "check --warn-queued 0" "check --crit-queued -1" "check --bogus"; do
		# shellcheck disable=SC2086
		run --separate-stderr "$FANOUTCTL" -s "$T/none.sock" $args
		assert_status 3
		[[ $output == "UNKNOWN: "* ]] ||
		    fail "fanoutctl $args: no UNKNOWN line on stdout" \
		    "$(show_run)" "stderr: $stderr"
	done
}

@test "fanoutctl with an unknown command lists the valid ones" {
	run --separate-stderr "$FANOUTCTL" -s "$T/none.sock" frobnicate
	assert_status 2
	[[ $stderr == *frobnicate* ]] ||
	    fail "the error does not name the bad command: $stderr"
	[[ $stderr == *send* && $stderr == *status* ]] ||
	    fail "the error does not list send and status: $stderr"
}

@test "fanout-worker usage errors exit 2" {
	local args

	for args in "" "--index 0" "--port 8888" "--index 0 --port 0" \
	    "--index 0 --port 65536" "--index x --port 8888" \
	    "--index 0 --port 8888 --bogus" "--pool 2" "--pool 5 --index 0" \
	    "--pool 5 --port 8888" "--pool 5 --secret-fd 6"; do
		# shellcheck disable=SC2086
		run --separate-stderr in_ns "$WORKER" $args
		[ "$status" -eq 2 ] ||
		    fail "fanout-worker $args: expected exit 2" "$(show_run)" \
		    "stderr: $stderr"
	done
}

@test "fanout-worker --pool: a short or malformed record starts nothing, exit 1" {
	local bad

	# Too short for a record; a whole record of zeros (port 0).
	for bad in "printf short" "head -c 148 /dev/zero"; do
		$bad >"$T/records"
		run --separate-stderr in_ns "$WORKER" --pool 4 4<"$T/records" \
		    3>"$T/results"
		[ "$status" -eq 1 ] && [[ $stderr == *"--pool: record 0: malformed"* ]] ||
		    fail "expected exit 1 and the record named" "$(show_run)" \
		    "stderr: $stderr"
		[ ! -s "$T/results" ] || fail "a pid was reported for a bad record"
	done
}

@test "fanoutctl with no daemon: exit 3, 'is fanoutd running?'" {
	run --separate-stderr "$FANOUTCTL" -s "$T/none.sock" status
	assert_status 3
	[ "$stderr" = "fanoutctl: cannot connect to $T/none.sock: No such file or directory (is fanoutd running?)" ] ||
	    fail "unexpected error text: $stderr"
	[ -z "$output" ] || fail "wrote to stdout: $output"

	run --separate-stderr "$FANOUTCTL" -s "$T/none.sock" send hello
	assert_status 3
	[[ $stderr == "fanoutctl: cannot connect to $T/none.sock: "* ]] ||
	    fail "unexpected error text: $stderr"
}

@test "fanoutctl takes the socket from FANOUT_SOCKET; -s wins over it" {
	FANOUT_SOCKET=$T/env.sock run --separate-stderr "$FANOUTCTL" send hi
	assert_status 3
	[[ $stderr == "fanoutctl: cannot connect to $T/env.sock: "* ]] ||
	    fail "FANOUT_SOCKET not used: $stderr"

	FANOUT_SOCKET=$T/env.sock run --separate-stderr "$FANOUTCTL" \
	    -s "$T/opt.sock" status
	assert_status 3
	[[ $stderr == "fanoutctl: cannot connect to $T/opt.sock: "* ]] ||
	    fail "-s did not override FANOUT_SOCKET: $stderr"
}

@test "fanoutctl without -s or FANOUT_SOCKET uses .../fanout/control.sock" {
	local def

	def=$(strings "$FANOUTCTL" | grep -m1 '/fanout/control\.sock$') ||
	    fail "no default socket path in $FANOUTCTL"
	[ ! -e "$def" ] || skip "a fanoutd is installed and running here"
	run --separate-stderr "$FANOUTCTL" status
	assert_status 3
	[[ $stderr == "fanoutctl: cannot connect to $def: "*"(is fanoutd running?)" ]] ||
	    fail "unexpected error text: $stderr"
}

@test "fanoutctl on a dead socket (nobody listening): exit 3" {
	command -v python3 >/dev/null || skip "python3 not installed"
	python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/dead.sock"
	[ -S "$T/dead.sock" ]
	run --separate-stderr "$FANOUTCTL" -s "$T/dead.sock" status
	assert_status 3
	[[ $stderr == "fanoutctl: cannot connect to $T/dead.sock: Connection refused"* ]] ||
	    fail "unexpected error text: $stderr"
}

# stuck_listener MODE: runs fanoutctl -t 100 status against a Unix listener
# that never accepts and prints "exit=N" and fanoutctl's stderr.  MODE full:
# the backlog (listen(0)) already holds one connection, so connect() has to
# wait for room; MODE silent: connect() succeeds but no reply ever comes.
stuck_listener() {
	python3 - "$1" "$T/stuck.sock" "$FANOUTCTL" <<'PY'
import socket, subprocess, sys
mode, path, fanoutctl = sys.argv[1:]
lsn = socket.socket(socket.AF_UNIX)
lsn.bind(path)
lsn.listen(0)
if mode == "full":
    filler = socket.socket(socket.AF_UNIX)
    filler.connect(path)
p = subprocess.run([fanoutctl, "-s", path, "-t", "100", "status"],
                   capture_output=True, text=True, timeout=60)
print("exit=%d" % p.returncode)
print(p.stderr, end="")
PY
}

@test "fanoutctl on a listener whose backlog stays full: exit 3, no hang" {
	need_python
	run stuck_listener full
	assert_status 0
	assert_line '^exit=3$'
	assert_line "^fanoutctl: cannot connect to $T/stuck.sock: no room after 2100 ms \(fanoutd is not accepting connections\)$"
}

@test "fanoutctl on a daemon that never answers: exit 3 at its deadline" {
	need_python
	run stuck_listener silent
	assert_status 0
	assert_line '^exit=3$'
	assert_line '^fanoutctl: no reply from fanoutd within 2100 ms$'
}
