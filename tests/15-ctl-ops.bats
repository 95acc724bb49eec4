#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# fanoutctl for operators (issue 10): check as a monitoring plugin (exit 0
# OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), the summary of send - and its -q,
# its progress line on a terminal, a reader that goes away (exit 4), and
# the bash completion, whose words must be the command table's.

load helpers

COMPLETION=$FANOUT_SRCDIR/data/bash-completion/fanoutctl

# check_line VERDICT UP TOTAL QUEUED: the last `run` printed one line, the
# plugin's, for these figures.
check_line() {
	local re="^$1: $2/$3 workers up, $4 queued"

	[ "${#lines[@]}" -eq 1 ] || fail "expected one line" "$(show_run)"
	[[ ${lines[0]} =~ $re ]] || fail "not /$re/" "$(show_run)"
}

# --- check -----------------------------------------------------------------

@test "check, healthy: OK, exit 0, with performance data" {
	start_fanoutd
	run --separate-stderr ctl send one
	assert_status 0
	run --separate-stderr ctl check
	assert_status 0
	[ "$output" = "OK: 3/3 workers up, 0 queued | up=3;3:;1:;0;3 queued=0;;;0 accepted=1c" ] ||
	    fail "unexpected line" "$(show_run)"
	[ -z "$stderr" ] || fail "stderr: $stderr"
}

@test "check, one worker down: WARNING, exit 1; thresholds move it" {
	local victim

	write_config "worker_path=\"$(worker_wrapper "1:--mode crashloop --touch $T")\""
	start_fanoutd
	victim=$(worker_pid 1)
	kill -KILL "$victim"
	# Every later start of worker 1 fails: it stays away.
	wait_for "worker_is 1 'backoff|starting' last exit=1" "$(ms 10000)"
	run --separate-stderr ctl check
	assert_status 1
	check_line WARNING 2 3 0
	assert_line '; not up: 1 (backoff|starting) \| up=2;3:;1:;0;3 '
	run ctl check --warn-down 2
	assert_status 0
	check_line OK 2 3 0
	run ctl check -c 1
	assert_status 2
	check_line CRITICAL 2 3 0
	assert_line ' \| up=2;3:;3:;0;3 '
}

@test "check, every worker down: CRITICAL, exit 2" {
	local p

	write_config "worker_path=\"$(worker_wrapper "*:--mode crashloop --touch $T")\""
	start_fanoutd
	for p in "${WORKER_PIDS[@]}"; do
		kill -KILL "$p"
	done
	wait_for "worker_is 0 'backoff|starting' last exit=1 &&
	    worker_is 1 'backoff|starting' last exit=1 &&
	    worker_is 2 'backoff|starting' last exit=1" "$(ms 10000)"
	run --separate-stderr ctl check
	assert_status 2
	check_line CRITICAL 0 3 0
	assert_line '; not up: 0 [a-z]+, 1 [a-z]+, 2 [a-z]+ '
}

@test "check, daemon unreachable: UNKNOWN, exit 3, on stdout" {
	run --separate-stderr ctl check
	assert_status 3
	[ "$output" = "UNKNOWN: cannot connect to $SOCK: No such file or directory (is fanoutd running?)" ] ||
	    fail "unexpected line" "$(show_run)" "stderr: $stderr"
	[ -z "$stderr" ] || fail "stderr: $stderr"
}

@test "check --warn-queued, --crit-queued: messages waiting for a worker" {
	local i

	write_config "worker_path=\"$(worker_wrapper "1:--mode noack")\"" \
	    ack_timeout_ms="$(ms 200)"
	start_fanoutd
	for i in 1 2 3; do
		run ctl send "m$i"
		assert_status 1
	done
	run ctl check
	assert_status 0
	check_line OK 3 3 3
	run ctl check --warn-queued 3
	assert_status 1
	check_line WARNING 3 3 3
	assert_line ' \(warning from 3\) \| up=3;3:;1:;0;3 queued=3;2;;0 '
	run ctl check --warn-queued 2 --crit-queued 3
	assert_status 2
	check_line CRITICAL 3 3 3
	assert_line ' \(critical from 3\) \| .* queued=3;1;2;0 '
	run ctl check --warn-queued 4
	assert_status 0
}

# --- status ------------------------------------------------------------------

@test "status: a header row, a summary; exit 0 with a worker down too" {
	local victim

	write_config "worker_path=\"$(worker_wrapper "2:--mode crashloop --touch $T")\""
	start_fanoutd
	victim=$(worker_pid 2)
	kill -KILL "$victim"
	wait_for "worker_is 2 backoff pid - last exit=1" "$(ms 10000)"
	run --separate-stderr ctl status
	assert_status 0
	[[ ${lines[1]} =~ ^WORKER\ +PID\ +PORT\ +STATE\  ]] ||
	    fail "no header row" "$(show_run)"
	[ "${lines[-1]}" = "2/3 workers up, 0 queued" ] ||
	    fail "no summary line" "$(show_run)"
	run --separate-stderr ctl -j status
	assert_status 0
	[ "${#lines[@]}" -eq 1 ] || fail "JSON output has more than one line" \
	    "$(show_run)"
	[[ $output == "{"* ]] || fail "JSON output has a header" "$(show_run)"
}

# --- send - ------------------------------------------------------------------

@test "send -: a summary on stderr; -q prints only what was not acked" {
	seq -f 'm%g' 1 100 >"$T/in"
	start_fanoutd
	run --separate-stderr ctl send -q - <"$T/in"
	assert_status 0
	[ -z "$output" ] || fail "-q printed messages acked by all" "$(show_run)"
	[[ $stderr =~ ^fanoutctl:\ 100\ messages:\ 100\ to\ all\ workers,\ 0\ partial,\ 0\ refused\ \([0-9]+\ msg/s\)$ ]] ||
	    fail "unexpected summary: $stderr"
	run --separate-stderr ctl send - <<<"one"
	assert_status 0
	[[ $stderr =~ ^fanoutctl:\ 1\ message:\ 1\ to\ all\ workers, ]] ||
	    fail "unexpected summary: $stderr"
	stop_fanoutd

	write_config "worker_path=\"$(worker_wrapper "1:--mode noack")\"" \
	    ack_timeout_ms="$(ms 200)"
	start_fanoutd
	run --separate-stderr ctl send --quiet - <<<$'a\nb'
	assert_status 1
	[ "${#lines[@]}" -eq 2 ] || fail "expected both lines" "$(show_run)"
	assert_line '^message [0-9]+: delivered to 2/3 workers; not acked: 1 \(queued\)$'
	[[ $stderr =~ ^fanoutctl:\ 2\ messages:\ 0\ to\ all\ workers,\ 2\ partial,\ 0\ refused\  ]] ||
	    fail "unexpected summary: $stderr"
}

@test "send -: its reader gone, it reads no more input and exits 4" {
	local c r st=0 n accepted line

	start_fanoutd
	mkfifo "$T/in" "$T/out"
	# Both ends opened read-write, so that no open waits for the other
	# side; closing r leaves the results with no reader.
	exec {w}<>"$T/in" {r}<>"$T/out"
	spawn ctl send - <"$T/in" >"$T/out" 2>"$T/err" {w}>&- {r}>&-
	c=$BG_PID
	echo first >&"$w"
	read -r -t 30 line <&"$r" ||
	    fail "no result line" "$(cat "$T/err")"
	[[ $line =~ ^message\ [0-9]+:\ delivered\ to\ 3/3\ workers$ ]] ||
	    fail "unexpected result line: $line"
	# Like head -1: the reader goes away after one line.
	exec {r}<&-
	seq -f 'more %g' 1 1000 >&"$w"
	exec {w}>&-
	wait_pid_gone "$c" "$(ms 10000)" || fail "fanoutctl did not stop"
	wait "$c" || st=$?
	[ "$st" -eq 4 ] || fail "exit $st, expected 4" "$(cat "$T/err")"
	n=$(sed -n 's/^fanoutctl: \([0-9]*\) messages\{0,1\}: .*; standard output closed: stopped reading input$/\1/p' "$T/err")
	[ -n "$n" ] || fail "no summary saying so" "$(cat "$T/err")"
	accepted=$(daemon_field accepted)
	[ "$accepted" = "$n" ] ||
	    fail "the summary says $n, fanoutd accepted $accepted"
	[ "$n" -lt 1001 ] || fail "all 1001 lines were sent"
}

@test "send - | head -1: the stream stops early, exit 4" {
	local first

	start_fanoutd
	first=$(seq -f 'line %g' 1 100000 |
	    { timeout -k 2 "$(ms 60)" "$FANOUTCTL" -s "$SOCK" send - \
	    2>"$T/err"; echo $? >"$T/rc"; } | head -n 1)
	[[ $first =~ ^message\ [0-9]+:\ delivered\ to\ 3/3\ workers$ ]] ||
	    fail "head saw: $first" "$(cat "$T/err")"
	[ "$(cat "$T/rc")" -eq 4 ] ||
	    fail "exit $(cat "$T/rc"), expected 4" "$(cat "$T/err")"
	[ "$(daemon_field accepted)" -lt 100000 ] ||
	    fail "every line was sent" "$(cat "$T/err")"
}

@test "send - on a terminal: a progress line once the stream lasts a second" {
	local t0 n=0 c st=0

	command -v script >/dev/null || skip "script(1) is not installed"
	start_fanoutd
	mkfifo "$T/in"
	exec {w}<>"$T/in"
	# stderr is the terminal script(1) records in $T/tty; stdout a file.
	spawn script -qfec "'$FANOUTCTL' -s '$SOCK' send - <'$T/in' >'$T/out'" \
	    "$T/tty" </dev/null {w}>&-
	c=$BG_PID
	# A stream that lasts: a line, its result, the next line...
	t0=$(now_ms)
	while [ $(($(now_ms) - t0)) -lt 1500 ]; do
		n=$((n + 1))
		echo "m$n" >&"$w"
		wait_for "[ \$(wc -l <'$T/out' 2>/dev/null || echo 0) -ge $n ]" \
		    "$(ms 5000)"
	done
	exec {w}>&-
	wait_pid_gone "$c" "$(ms 10000)" || fail "fanoutctl did not stop"
	wait "$c" || st=$?
	[ "$st" -eq 0 ] || fail "exit $st" "$(cat "$T/tty")"
	grep -qE $'\r''[0-9]+ messages? \(0 partial, 0 refused\), [0-9]+ in flight, [0-9]+ msg/s' "$T/tty" ||
	    fail "no progress line" "$(od -c "$T/tty" | tail -n 20)"
	grep -qE "fanoutctl: $n messages: $n to all workers, 0 partial, 0 refused" "$T/tty" ||
	    fail "no summary" "$(cat "$T/tty")"
	# Not in the results.
	! grep -q 'in flight' "$T/out" || fail "progress on stdout"
}

# --- completion --------------------------------------------------------------

# completions WORD...: the completion's words for a command line whose last
# WORD is being completed, sorted, one a line.
completions() {
	bash -c 'source "$1" && shift && COMP_WORDS=("$@") &&
	    COMP_CWORD=$(($# - 1)) && _fanoutctl &&
	    printf "%s\n" "${COMPREPLY[@]}"' _ "$COMPLETION" "$FANOUTCTL" "$@" |
	    sort
}

# help_commands: the commands `fanoutctl --help` lists, sorted.
help_commands() {
	"$FANOUTCTL" --help | awk '
	    /^commands:$/ { on = 1; next }
	    on && /^$/ { exit }
	    on && /^  [a-z]/ { print $1 }' | sort -u
}

# help_options [COMMAND]: the options --help lists, sorted: fanoutctl's
# own (the first section), or those of COMMAND, in its section "COMMAND
# options" if there is one, else on its lines under "commands:".
help_options() {
	"$FANOUTCTL" --help | awk -v c="$1" '
	    c == "" && /^  -/ { on = 1 }
	    c != "" && index($0, c " options") == 1 { sect = 1; on = 1; next }
	    c != "" && /^commands:$/ { incmds = 1; next }
	    incmds && /^$/ { incmds = 0 }
	    incmds && $1 == c { syn = syn "\n" $0 }
	    on && /^$/ { on = 0; if (c == "" || sect) exit }
	    on
	    END { if (c != "" && !sect) print syn }' |
	    grep -oE '(^|[ ,[])--?[a-zA-Z][a-zA-Z-]*' | tr -d ' ,[' | sort -u
}

@test "completion: every command, and only those --help lists" {
	local want got

	want=$(help_commands)
	[ -n "$want" ] || fail "no commands in fanoutctl --help"
	got=$(completions "")
	[ "$got" = "$want" ] ||
	    fail "completion offers:" "$got" "--help lists:" "$want"
	[ "$("$FANOUTCTL" --list-commands | sort)" = "$want" ] ||
	    fail "--list-commands and --help differ"
	for c in send status check stats; do
		grep -qx "$c" <<<"$got" || fail "$c is not completed"
	done
	[ "$(completions -s /x -t 100 "s")" = "$(printf '%s\n' send stats status)" ] ||
	    fail "commands after options: $(completions -s /x -t 100 s)"
}

@test "completion: the options of fanoutctl and of each command, as --help" {
	local cmd want got

	want=$(help_options)
	got=$(completions -)
	[ "$got" = "$want" ] ||
	    fail "completion offers:" "$got" "--help lists:" "$want"
	for cmd in $("$FANOUTCTL" --list-commands); do
		got=$(completions "$cmd" -)
		want=$(help_options "$cmd")
		[ "$got" = "$want" ] ||
		    fail "$cmd: completion offers:" "$got" "--help lists:" \
		    "$want"
	done
	# A value is not completed as an option or a command.
	[ -z "$(completions check -w "")" ] || fail "check -w completes"
	[ "$(completions -s "$T/")" = "$(printf '%s\n' "$T/"*)" ] ||
	    fail "-s does not complete file names: $(completions -s "$T/")"
}
