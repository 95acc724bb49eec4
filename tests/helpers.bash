# SPDX-License-Identifier: MIT
# Shared by the NN-name.bats scenarios: a temp dir and a private network
# namespace per test, config writing, starting fanoutd through notify-wait,
# and waits that end on an event or a deadline.  Teardown stops only what
# the test started and fails if any process it started is left behind.
#
# Environment:
#   FANOUT_BUILDDIR  build tree: src/ programs, tests/ helper programs
#   FANOUT_SRCDIR    source tree (data/fanout.conf)
#   FANOUT_WRAP      prefix for fanoutd launches, e.g.
#                    "valgrind --error-exitcode=99 --leak-check=full"
#   FANOUT_VALGRIND  1: run fanoutd and every real worker under valgrind
#                    memcheck; any error it reports fails the test
#   FANOUT_TIMEOUT_SCALE  multiply every deadline (default 1, 10 with a wrap)
#   FANOUT_NETNS     auto (default): a namespace per test when unshare works,
#                    free ports otherwise; yes: fail without it; no: never
#   FANOUT_KEEP      keep the temp dir of a failed test

bats_require_minimum_version 1.5.0

: "${FANOUT_BUILDDIR:=$(dirname "$BATS_TEST_DIRNAME")}"
: "${FANOUT_SRCDIR:=$(dirname "$BATS_TEST_DIRNAME")}"
: "${FANOUT_NETNS:=auto}"
: "${FANOUT_VALGRIND:=0}"
[ "$FANOUT_VALGRIND" = 1 ] && : "${FANOUT_WRAP:=valgrind}"
if [ -z "${FANOUT_TIMEOUT_SCALE:-}" ]; then
	if [ -n "${FANOUT_WRAP:-}" ]; then FANOUT_TIMEOUT_SCALE=10
	else FANOUT_TIMEOUT_SCALE=1; fi
fi

FANOUTD=$FANOUT_BUILDDIR/src/fanoutd
FANOUTCTL=$FANOUT_BUILDDIR/src/fanoutctl
WORKER_BIN=$FANOUT_BUILDDIR/src/fanout-worker
WORKER=$WORKER_BIN
NOTIFY_WAIT=$FANOUT_BUILDDIR/tests/notify-wait
PID_WAIT=$FANOUT_BUILDDIR/tests/pid-wait
CTL_RAW=$FANOUT_BUILDDIR/tests/ctl-raw
FAKE_WORKER=$FANOUT_BUILDDIR/tests/fake-worker
# The protocol version, for test clients that build frames themselves.
FANOUT_PROTO=$(awk '$1 == "#define" && $2 == "FANOUT_PROTO_VERSION" {
    print $3 }' "$FANOUT_SRCDIR/src/proto.h")
export FANOUT_PROTO

# ms N: N milliseconds, scaled for slow (valgrind) runs.
ms() {
	echo $(($1 * FANOUT_TIMEOUT_SCALE))
}

# fail MESSAGE...: say what went wrong (bats shows it) and fail.
fail() {
	printf '%s\n' "$@" >&2
	return 1
}

# show_run: the last `run` result, for failure messages.
show_run() {
	printf 'status: %s\noutput:\n%s\n' "$status" "$output"
}

# assert_status N: the last `run` exited with N.
assert_status() {
	[ "$status" -eq "$1" ] ||
	    fail "expected exit status $1, got $status" "$(show_run)"
}

# assert_line REGEX: some line of the last `run` output matches (ERE).
assert_line() {
	local l

	for l in "${lines[@]}"; do
		[[ $l =~ $1 ]] && return 0
	done
	fail "no output line matches /$1/" "$(show_run)"
}

# refute_line REGEX: no line of the last `run` output matches.
refute_line() {
	local l

	for l in "${lines[@]}"; do
		[[ $l =~ $1 ]] &&
		    fail "unexpected output line: $l" "$(show_run)"
	done
	return 0
}

# assert_file_line FILE REGEX: some line of FILE matches (ERE).
assert_file_line() {
	grep -qE -- "$2" "$1" ||
	    fail "no line of $1 matches /$2/:" "$(cat "$1" 2>&1)"
}

now_ms() {
	local t=${EPOCHREALTIME/[.,]/}

	echo $((t / 1000))
}

# wait_for CMD DEADLINE_MS: evaluate CMD until it succeeds.  A cheap check
# every 50 ms, for conditions that no event announces; prefer
# wait_pid_gone, notify-wait and blocking reads where they apply.
wait_for() {
	local cmd=$1 end=$(($(now_ms) + $2))

	until eval "$cmd"; do
		if [ "$(now_ms)" -ge "$end" ]; then
			fail "timed out after $2 ms waiting for: $cmd"
			return 1
		fi
		sleep 0.05
	done
}

# wait_pid_gone PID... DEADLINE_MS: every PID has exited (pidfd, no polling).
wait_pid_gone() {
	local deadline=${!#}

	[ $# -ge 2 ] || fail "wait_pid_gone: no pid"
	"$PID_WAIT" -t "$deadline" "${@:1:$#-1}"
}

# alive PID: the process exists and is not a zombie.
alive() {
	local st

	st=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) ||
	    return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# children_of PID: pids of the process's children.
children_of() {
	cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . ||
	    true
}

# --- network namespace ---------------------------------------------------

# ns_start: a network namespace for this test, held by a process that exits
# when its stdin closes.  Sets NS_RUN (prefix to run a command inside).
ns_start() {
	local ip line uflag=-r

	NS_PID="" NS_NET="" NS_RUN=()
	[ "$FANOUT_NETNS" = no ] && return 0
	ip=$(PATH=$PATH:/usr/sbin:/sbin command -v ip) ||
	    { [ "$FANOUT_NETNS" = yes ] && fail "ip(8) not found"; return; }
	# root needs no user namespace, and keeps setpriv usable inside.
	[ "$(id -u)" = 0 ] && uflag=
	mkfifo "$T/ns.in" "$T/ns.out"
	unshare $uflag -n sh -c "$ip link set lo up && echo up && exec cat" \
	    <"$T/ns.in" >"$T/ns.out" 2>"$T/ns.err" 3>&- &
	NS_PID=$!
	exec {NS_FD}>"$T/ns.in"
	read -r -t 10 line <"$T/ns.out" || true
	if [ "$line" != up ]; then
		exec {NS_FD}>&-
		wait "$NS_PID" 2>/dev/null || true
		NS_PID=""
		[ "$FANOUT_NETNS" = yes ] &&
		    fail "cannot create a network namespace: $(cat "$T/ns.err")"
		return 0
	fi
	NS_NET=$(readlink "/proc/$NS_PID/ns/net")
	if [ -n "$uflag" ]; then
		NS_RUN=(nsenter -t "$NS_PID" -U -n --preserve-credentials)
	else
		NS_RUN=(nsenter -t "$NS_PID" -n)
	fi
}

ns_stop() {
	[ -n "${NS_PID:-}" ] || return 0
	exec {NS_FD}>&-
	"$PID_WAIT" -t 5000 "$NS_PID" || kill -KILL "$NS_PID" 2>/dev/null
	wait "$NS_PID" 2>/dev/null || true
	NS_PID=""
}

# free_base_port N: without a namespace, a base port with N free ports.
free_base_port() {
	local n=$1 b i busy

	for i in $(seq 50); do
		b=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		busy=$(ss -Htan "( sport >= :$b and sport < :$((b + n)) )" \
		    2>/dev/null | wc -l)
		[ "$busy" -eq 0 ] && { echo "$b"; return 0; }
	done
	fail "no free port range"
}

# test_procs: every process this test started that is still running:
# those in its namespace and those carrying its tag in their environment.
test_procs() {
	local p pid

	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" = "${NS_PID:-x}" ] && continue
		[ "$pid" = "$$" ] && continue
		alive "$pid" || continue
		if { [ -n "${NS_NET:-}" ] &&
		    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$NS_NET" ]; } ||
		    grep -qzxF "FANOUT_TEST_TAG=$T" "$p/environ" 2>/dev/null
		then
			echo "$pid"
		fi
	done
}

# describe_procs PID...: one line per process, for failure messages.
describe_procs() {
	local pid

	for pid; do
		printf '  %s: %s\n' "$pid" \
		    "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
	done
}

# nothing_left DEADLINE_MS [PID...]: every process the test started, but
# the PIDs given, has exited (or does before the deadline).
nothing_left() {
	local deadline=$1 left
	shift

	left=$(test_procs | grep -vxF -f <(printf '%s\n' "$@" x) || true)
	[ -z "$left" ] && return 0
	# shellcheck disable=SC2086
	"$PID_WAIT" -t "$deadline" $left 2>/dev/null && return 0
	# shellcheck disable=SC2046
	fail "processes left running:" "$(describe_procs $(test_procs |
	    grep -vxF -f <(printf '%s\n' "$@" x)))"
}

# --- setup and teardown --------------------------------------------------

fanout_setup() {
	local b

	for b in "$FANOUTD" "$FANOUTCTL" "$WORKER" "$NOTIFY_WAIT" \
	    "$PID_WAIT" "$CTL_RAW" "$FAKE_WORKER"; do
		[ -x "$b" ] || fail "$b: not built (FANOUT_BUILDDIR=$FANOUT_BUILDDIR)"
	done
	T=$(mktemp -d "${TMPDIR:-/tmp}/fanout-test.XXXXXX")
	chmod 755 "$T"
	unset NOTIFY_SOCKET FANOUT_SOCKET
	DAEMONS=() SUPERVISORS=() WORKER_PIDS=() ALL_WORKERS=() BG_PIDS=()
	STOPPED_PIDS=()
	declare -gA DAEMON_LOG=()
	LAUNCHES=0 AS_USER=() LOGDIR=$T
	ns_start
	if [ -n "$NS_PID" ]; then
		BASE_PORT=8888
	else
		BASE_PORT=$(free_base_port 200)
	fi
	NWORKERS=3
	SOCK=$T/control.sock
	CONF=$T/fanout.conf
	write_config
	[ "$FANOUT_VALGRIND" = 1 ] && valgrind_setup
	return 0
}

fanout_teardown() {
	local rc=0 pid alive_pids=() left

	# A process a failed test left SIGSTOPped would not see SIGTERM.
	for pid in "${STOPPED_PIDS[@]}"; do
		kill -CONT "$pid" 2>/dev/null || true
	done

	# Whatever the test left running, stop it the way an admin would.
	for pid in "${DAEMONS[@]}"; do
		alive "$pid" && { kill -TERM "$pid"; alive_pids+=("$pid"); }
	done
	if [ ${#alive_pids[@]} -gt 0 ] &&
	    ! "$PID_WAIT" -t "$(ms 15000)" "${alive_pids[@]}"; then
		echo "# fanoutd did not stop on SIGTERM" >&2
		kill -KILL "${alive_pids[@]}" 2>/dev/null
		rc=1
	fi
	for pid in "${BG_PIDS[@]}"; do
		alive "$pid" && kill -TERM "$pid" 2>/dev/null
	done
	[ ${#BG_PIDS[@]} -gt 0 ] &&
	    { "$PID_WAIT" -t 5000 "${BG_PIDS[@]}" 2>/dev/null ||
	      kill -KILL "${BG_PIDS[@]}" 2>/dev/null; }
	[ ${#SUPERVISORS[@]} -gt 0 ] &&
	    "$PID_WAIT" -t "$(ms 5000)" "${SUPERVISORS[@]}" 2>/dev/null
	# Stopped here by SIGTERM, each must have exited 0 (a sanitizer or
	# valgrind error shows up as another status).
	for pid in "${alive_pids[@]}"; do
		[ -n "${DAEMON_LOG[$pid]:-}" ] || continue
		if ! grep -q ' - exited status=0$' "${DAEMON_LOG[$pid]}"; then
			echo "# fanoutd $pid did not exit 0 on SIGTERM:" \
			    "$(tail -n 1 "${DAEMON_LOG[$pid]}")" >&2
			rc=1
		fi
	done
	# No worker outlives its daemon.
	if [ ${#ALL_WORKERS[@]} -gt 0 ] &&
	    ! "$PID_WAIT" -t "$(ms 5000)" "${ALL_WORKERS[@]}"; then
		echo "# fanout-worker processes outlived fanoutd" >&2
		rc=1
	fi
	left=$(test_procs)
	if [ -n "$left" ]; then
		# shellcheck disable=SC2086
		if ! "$PID_WAIT" -t "$(ms 3000)" $left 2>/dev/null; then
			echo "# processes left running:" >&2
			# shellcheck disable=SC2046
			describe_procs $(test_procs) >&2
			# shellcheck disable=SC2046
			kill -KILL $(test_procs) 2>/dev/null
			rc=1
		fi
	fi
	[ ${#BG_PIDS[@]} -gt 0 ] && wait "${BG_PIDS[@]}" 2>/dev/null
	ns_stop
	[ "$FANOUT_VALGRIND" = 1 ] && ! valgrind_clean && rc=1
	if [ -z "${BATS_TEST_COMPLETED:-}" ] || [ "$rc" -ne 0 ]; then
		show_logs >&2
		[ -n "${FANOUT_KEEP:-}" ] && { echo "# kept $T" >&2; T=""; }
	fi
	[ -n "${T:-}" ] && rm -rf "$T"
	return "$rc"
}

# valgrind_setup: fanoutd, and the real worker through a wrapper script,
# run under memcheck, each process logging to $T/valgrind.PID.log.
valgrind_setup() {
	local vg="valgrind -q --error-exitcode=99 --leak-check=full"

	vg+=" --errors-for-leak-kinds=definite,indirect"
	vg+=" --show-leak-kinds=definite,indirect"
	vg+=" --log-file=$T/valgrind.%p.log"
	FANOUT_WRAP=$vg
	printf '#!/bin/sh\nexec %s %s "$@"\n' "$vg" "'$WORKER_BIN'" \
	    >"$T/vg-worker"
	chmod 755 "$T/vg-worker"
	WORKER=$T/vg-worker
	write_config
}

# valgrind_clean: no valgrind log says more than that it does not know
# pidfd_open (434), after which libsystemd falls back to waitid().
valgrind_clean() {
	local f bad=0 n

	# Each launch leaves a log for fanoutd and each real worker.
	n=$(find "$T" -maxdepth 1 -name 'valgrind.*.log' | wc -l)
	if [ "$LAUNCHES" -gt 0 ] && [ "$n" -eq 0 ]; then
		echo "# FANOUT_VALGRIND=1 but no process ran under valgrind" >&2
		return 1
	fi
	for f in "$T"/valgrind.*.log; do
		[ -e "$f" ] || continue
		if grep -vE 'unhandled amd64-linux syscall: 434|write your own handler|README_MISSING_SYSCALL|Nevertheless we consider|it at http://valgrind.org' \
		    "$f" | grep -q .; then
			echo "# valgrind found errors: $f" >&2
			sed 's/^/# /' "$f" >&2
			bad=1
		fi
	done
	return "$bad"
}

setup() {
	fanout_setup
}

teardown() {
	fanout_teardown
}

# show_logs: the daemons' logs and notifications, for a failed test.
show_logs() {
	local f

	for f in "$T"/fanoutd.*.log "$T"/notify.*.log "$T"/u/*.log; do
		[ -s "$f" ] || continue
		echo "# --- $f"
		tail -n 40 "$f" | sed 's/^/# /'
	done
}

# --- configuration -------------------------------------------------------

# write_config [SETTING=VALUE]...: write $CONF, one setting per line, the
# test defaults overridden by the arguments (VALUE in libconfig syntax,
# strings quoted; an empty VALUE leaves the setting out).  Sets NWORKERS,
# BASE_PORT and SOCK from what it wrote.
write_config() {
	local -A v=(
		[workers]=3
		[base_port]=$BASE_PORT
		[listen_address]='"127.0.0.1"'
		[control_socket]="\"$SOCK\""
		[worker_path]="\"$WORKER\""
		[ack_timeout_ms]=$(ms 5000)
		[max_message_bytes]=65536
		[start_timeout_ms]=$(ms 10000)
		[auth_timeout_ms]=$(ms 2000)
		[stop_timeout_ms]=$(ms 5000)
		# the default, scaled: a worker slowed down by valgrind is
		# not to be taken for a stalled one
		[stall_timeout_ms]=$(ms 30000)
	)
	local order=(workers base_port listen_address control_socket
	    worker_path ack_timeout_ms max_message_bytes start_timeout_ms
	    auth_timeout_ms
	    stop_timeout_ms stall_timeout_ms)
	local a k

	for a; do
		k=${a%%=*}
		[ -n "${v[$k]+x}" ] || order+=("$k")
		v[$k]=${a#*=}
	done
	# A wrapper (worker_wrapper, a spy) picks by --index: one exec each.
	if [ "${v[worker_path]}" != "\"$WORKER\"" ] &&
	    [ -z "${v[worker_start]+x}" ]; then
		order+=(worker_start)
		v[worker_start]='"exec"'
	fi
	{
		echo "# written by $BATS_TEST_FILENAME: $BATS_TEST_DESCRIPTION"
		for k in "${order[@]}"; do
			[ -n "${v[$k]}" ] && echo "$k = ${v[$k]};"
		done
	} >"$CONF"
	NWORKERS=${v[workers]:-3}
	BASE_PORT=${v[base_port]:-8888}
	SOCK=${v[control_socket]:-\"/run/fanout/control.sock\"}
	SOCK=${SOCK//\"/}
}

# worker_wrapper INDEX:FAKE-ARGS...: write $T/worker.sh, a worker_path that
# runs fake-worker with FAKE-ARGS for the given worker indexes ("*" for
# all) and the real fanout-worker for the others; print its path.
worker_wrapper() {
	local w=$T/worker.sh a

	# shellcheck disable=SC2016  # the script's own variables
	{
		echo '#!/bin/sh'
		echo 'idx=; prev='
		echo 'for a; do [ "$prev" = --index ] && idx=$a; prev=$a; done'
		echo 'case $idx in'
		for a; do
			echo "${a%%:*}) exec '$FAKE_WORKER' \"\$@\" ${a#*:} ;;"
		done
		echo "*) exec '$WORKER' \"\$@\" ;;"
		echo 'esac'
	} >"$w"
	chmod 755 "$w"
	echo "$w"
}

# --- running the programs ------------------------------------------------

# launch_fanoutd ARGS...: run fanoutd -c $CONF ARGS in the namespace
# through notify-wait, which returns on READY=1 or failure.  Sets
# NW_STATUS, NW_ERR (notify-wait's complaint), FANOUTD_LOG, NOTIFY_LOG
# and, when it became ready, FANOUTD_PID, SUPERVISOR_PID and WORKER_PIDS.
launch_fanoutd() {
	launch_fanoutd_bg "$@"
	finish_launch
}

# launch_fanoutd_bg ARGS...: the same, but return at once with NW_PID set;
# finish_launch then waits for notify-wait and sets the rest.
launch_fanoutd_bg() {
	LAUNCHES=$((LAUNCHES + 1))
	FANOUTD_LOG=$LOGDIR/fanoutd.$LAUNCHES.log
	NOTIFY_LOG=$LOGDIR/notify.$LAUNCHES.log
	NW_OUT=$LOGDIR/notify-wait.$LAUNCHES.out
	NW_ERRFILE=$LOGDIR/notify-wait.$LAUNCHES.err
	FANOUTD_PID="" SUPERVISOR_PID="" WORKER_PIDS=()
	# shellcheck disable=SC2086
	spawn "${NS_RUN[@]}" env FANOUT_TEST_TAG="$T" "${AS_USER[@]}" \
	    "$NOTIFY_WAIT" -t "$(ms 20000)" -o "$NOTIFY_LOG" \
	    -e "$FANOUTD_LOG" -- ${FANOUT_WRAP:-} "$FANOUTD" -c "$CONF" "$@" \
	    >"$NW_OUT" 2>"$NW_ERRFILE"
	NW_PID=$BG_PID
}

finish_launch() {
	NW_STATUS=0
	wait_pid_gone "$NW_PID" "$(ms 30000)" ||
	    fail "notify-wait itself did not return"
	wait "$NW_PID" || NW_STATUS=$?
	NW_ERR=$(cat "$NW_ERRFILE")
	SUPERVISOR_PID=$(sed -n 's/.* supervisor=\([0-9]*\) .*/\1/p' \
	    "$NOTIFY_LOG" 2>/dev/null | head -n 1)
	[ -n "$SUPERVISOR_PID" ] && SUPERVISORS+=("$SUPERVISOR_PID")
	[ "$NW_STATUS" -eq 0 ] || return 0
	FANOUTD_PID=$(cat "$NW_OUT")
	DAEMONS+=("$FANOUTD_PID")
	DAEMON_LOG[$FANOUTD_PID]=$NOTIFY_LOG
	mapfile -t WORKER_PIDS < <(children_of "$FANOUTD_PID")
	ALL_WORKERS+=("${WORKER_PIDS[@]}")
}

# start_fanoutd ARGS...: launch_fanoutd and insist that it became ready.
start_fanoutd() {
	launch_fanoutd "$@"
	[ "$NW_STATUS" -eq 0 ] || fail "fanoutd did not become ready: $NW_ERR" \
	    "$(tail -n 20 "$FANOUTD_LOG" 2>/dev/null)"
}

# start_fanoutd_fails ARGS...: launch_fanoutd and insist that it exited
# with status 1 before READY=1; its log is in $output / $lines after.
start_fanoutd_fails() {
	launch_fanoutd "$@"
	[ "$NW_STATUS" -ne 0 ] ||
	    fail "fanoutd became ready but should have failed"
	[[ $NW_ERR =~ exited\ status=1\ before\ READY=1 ]] ||
	    fail "expected fanoutd to exit with status 1, got: $NW_ERR" \
	    "$(tail -n 20 "$FANOUTD_LOG" 2>/dev/null)"
	output=$(cat "$FANOUTD_LOG")
	mapfile -t lines <"$FANOUTD_LOG"
}

# exit_of_fanoutd: how the last launched fanoutd ended, from the
# supervisor's log ("exited status=0", "killed signal=9"), once both it and
# its supervisor are gone.
exit_of_fanoutd() {
	wait_pid_gone "$SUPERVISOR_PID" "$(ms 10000)" || return 1
	sed -n 's/^[0-9.]* - \(exited status=[0-9]*\|killed signal=[0-9]*\)$/\1/p' \
	    "$NOTIFY_LOG" | tail -n 1
}

# stop_fanoutd [SIGNAL]: signal the last fanoutd (TERM by default), wait
# for it, its supervisor and its workers to be gone.  Sets FANOUTD_EXIT.
stop_fanoutd() {
	local sig=${1:-TERM}

	kill -"$sig" "$FANOUTD_PID"
	wait_pid_gone "$FANOUTD_PID" "$(ms 15000)" ||
	    fail "fanoutd did not exit after SIG$sig"
	FANOUTD_EXIT=$(exit_of_fanoutd)
	if [ ${#WORKER_PIDS[@]} -gt 0 ]; then
		wait_pid_gone "${WORKER_PIDS[@]}" "$(ms 5000)" ||
		    fail "workers outlived fanoutd after SIG$sig"
	fi
}

# ctl ARGS...: fanoutctl on this test's socket, killed after a minute
# (scaled) should it ever hang.
ctl() {
	timeout -k 2 "$(ms 60)" "${AS_USER[@]}" "$FANOUTCTL" -s "$SOCK" "$@"
}

# raw ARGS...: ctl-raw on this test's socket.
raw() {
	timeout -k 2 "$(ms 60)" "$CTL_RAW" -t "$(ms 5000)" "$@"
}

# in_ns CMD...: run a command inside this test's network namespace.
in_ns() {
	"${NS_RUN[@]}" env FANOUT_TEST_TAG="$T" "$@"
}

# spawn CMD...: start CMD in the background, remember its pid in BG_PID
# and for teardown.  "spawn ctl ARGS" and "spawn in_ns CMD" work like ctl
# and in_ns, BG_PID being the pid whose exit status `wait` reports.
spawn() {
	# Functions would leave a subshell between BG_PID and the program.
	if [ "$1" = ctl ]; then
		shift
		set -- timeout -k 2 "$(ms 60)" "${AS_USER[@]}" "$FANOUTCTL" \
		    -s "$SOCK" "$@"
	elif [ "$1" = in_ns ]; then
		shift
		set -- "${NS_RUN[@]}" env FANOUT_TEST_TAG="$T" "$@"
	fi
	"$@" 3>&- <&0 &
	BG_PID=$!
	BG_PIDS+=("$BG_PID")
}

# `fanoutctl status` prints the daemon's line, a table of the workers (a
# header row naming the columns, then a row per worker, "-" for none) and
# a summary line.  Its layout is tested in 03-send.bats; the helpers below
# find values by column name.

# status_field INDEX FIELD: from `fanoutctl status` text, worker INDEX's
# value in the column FIELD (pid, port, state, for, next, acked, failed,
# queued, bytes, rtt, restarts, last, lastfail).
status_field() {
	ctl status | awk -v i="$1" -v f="$2" '
	    $1 == "WORKER" { for (k = 1; k <= NF; k++) c[tolower($k)] = k; next }
	    (f in c) && $1 == i { print $c[f]; exit }'
}

# status_kv: `fanoutctl status` text on stdin as lines to match regexes
# against: the daemon's line as it is, then a line of name-value pairs per
# worker, "worker I  pid P  port X  STATE    acked N  queued N  bytes N
# restarts N  for D  rtt R  failed N[  lastfail F]  last L[  next D]" (the
# state padded to 8 columns; lastfail and next only when set).
status_kv() {
	awk '
	    $1 == "fanoutd" { print; next }
	    $1 == "WORKER" { for (k = 1; k <= NF; k++) c[tolower($k)] = k; next }
	    ("state" in c) && $1 ~ /^[0-9]+$/ {
		printf "worker %s  pid %s  port %s  %-8s acked %s  queued %s" \
		    "  bytes %s  restarts %s  for %s  rtt %s  failed %s", $1,
		    $c["pid"], $c["port"], $c["state"], $c["acked"],
		    $c["queued"], $c["bytes"], $c["restarts"], $c["for"],
		    $c["rtt"], $c["failed"]
		if ($c["lastfail"] != "-") printf "  lastfail %s", $c["lastfail"]
		printf "  last %s", $c["last"]
		if ($c["next"] != "-") printf "  next %s", $c["next"]
		printf "\n"
	    }'
}

# status_lines: `fanoutctl status` through status_kv, with its exit status.
status_lines() {
	local out

	out=$(ctl status) || return
	printf '%s\n' "$out" | status_kv
}

# daemon_field FIELD: from the first line of `fanoutctl status` ("fanoutd
# VERSION  pid P  up U/N  uptime DUR  accepted A"), the value after FIELD.
daemon_field() {
	ctl status | awk -v f="$1" '
	    NR == 1 && $1 == "fanoutd" {
		for (k = 3; k < NF; k++) if ($k == f) { print $(k + 1); exit }
	    }'
}

# worker_is INDEX STATE [FIELD VALUE]...: one `fanoutctl status` shows
# worker INDEX in STATE (an ERE for the whole word: "up", "backoff|up")
# with each FIELD at VALUE (a column, as for status_field); for wait_for.
worker_is() {
	local i=$1 st=$2

	shift 2
	ctl status | awk -v i="$i" -v st="^($st)\$" -v want="$*" '
	    BEGIN { n = split(want, w, " ") }
	    $1 == "WORKER" { for (k = 1; k <= NF; k++) c[tolower($k)] = k; next }
	    ("state" in c) && $1 == i {
		if ($c["state"] !~ st) exit 1
		for (k = 1; k < n; k += 2) if ($c[w[k]] != w[k + 1]) exit 1
		found = 1
	    }
	    END { exit !found }'
}

# stop_worker INDEX: SIGSTOP worker INDEX and wait until it is stopped;
# its pid in STOPPED_PID (teardown sends SIGCONT to every one).
stop_worker() {
	STOPPED_PID=$(worker_pid "$1")
	[ -n "$STOPPED_PID" ] || fail "worker $1 has no pid"
	kill -STOP "$STOPPED_PID"
	STOPPED_PIDS+=("$STOPPED_PID")
	wait_for "[ \"\$(awk '/^State:/ { print \$2 }' /proc/$STOPPED_PID/status)\" = T ]" \
	    "$(ms 5000)"
}

# worker_pid INDEX: the worker's pid according to fanoutd.
worker_pid() {
	status_field "$1" pid
}

# established PORT...: count established TCP connections to these ports
# inside the namespace.
established() {
	local p f=""

	for p; do f="${f:+$f or }dport = :$p"; done
	in_ns ss -Htn state established "( $f )" | wc -l
}

# need_python: skip unless python3 is there (JSON checks).
need_python() {
	command -v python3 >/dev/null || skip "python3 not installed"
}

# --- fanoutctl output ----------------------------------------------------

# Outcome columns of `fanoutctl send` worker lines.
ACKED='acked +[0-9]+\.[0-9]{3} ms'
QUEUED='queued +\(worker [a-z]+; kept for delivery\)'
FULL='full +\(queue full, refused\)'
SHUTDOWN='shutdown +\(fanoutd stopped before it acked\)'
# queued_re STATE: queued, the worker being in STATE (up, starting...).
queued_re() { echo "queued +\\(worker $1; kept for delivery\\)"; }

# assert_send ACKED OUTCOME...: the last `run` was a `fanoutctl send` whose
# text output has one line per worker, worker i's outcome matching the i-th
# OUTCOME (ERE), then "delivered to ACKED/N workers (message ID)", with
# ", Q queued" and ", F failed" before the parenthesis when Q > 0 worker
# lines say queued and F > 0 say failed.  Sets MSG_ID.
assert_send() {
	local acked=$1 i re n q=0 f=0 tail=""
	shift
	n=$#

	[ "${#lines[@]}" -eq $((n + 1)) ] ||
	    fail "expected $((n + 1)) lines of output" "$(show_run)"
	for ((i = 0; i < n; i++)); do
		re="^worker $i  pid [0-9]+  port $((BASE_PORT + i))  $1\$"
		[[ ${lines[i]} =~ $re ]] ||
		    fail "line $((i + 1)) does not match /$re/" "$(show_run)"
		[[ ${lines[i]} =~ ^worker\ [0-9]+\ \ pid\ [0-9]+\ \ port\ [0-9]+\ \ queued\  ]] &&
		    q=$((q + 1))
		[[ ${lines[i]} =~ ^worker\ [0-9]+\ \ pid\ [0-9]+\ \ port\ [0-9]+\ \ failed\  ]] &&
		    f=$((f + 1))
		shift
	done
	[ "$q" -gt 0 ] && tail=", $q queued"
	[ "$f" -gt 0 ] && tail+=", $f failed"
	re="^delivered to $acked/$n workers$tail \(message ([0-9]+)\)\$"
	[[ ${lines[n]} =~ $re ]] ||
	    fail "last line does not match /$re/" "$(show_run)"
	MSG_ID=${BASH_REMATCH[1]}
}

# pids_of_output: the pid column of the last `run` output's worker lines.
pids_of_output() {
	local l re='^worker [0-9]+  pid ([0-9]+)  '

	for l in "${lines[@]}"; do
		[[ $l =~ $re ]] && echo "${BASH_REMATCH[1]}"
	done
}

# json_check PY-EXPR: every line of the last `run` output is a JSON object
# for which the Python expression (over `o`) is true.
json_check() {
	printf '%s\n' "$output" | python3 -c '
import json, sys
expr = sys.argv[1]
n = 0
for line in sys.stdin:
    n += 1
    o = json.loads(line)
    if not eval(expr):
        sys.exit("line %d fails %s: %s" % (n, expr, line.strip()))
if n == 0:
    sys.exit("no output")
' "$1" || fail "JSON check failed" "$(show_run)"
}

# take_port PORT: another program listens on PORT (in the namespace);
# sets TAKER_PID and TAKER_SUP (its notify-wait supervisor).
take_port() {
	TAKER_PID=$(in_ns "$NOTIFY_WAIT" -t "$(ms 5000)" \
	    -o "$T/taker.$1.log" -- "$FAKE_WORKER" --index 99 --port "$1") ||
	    fail "cannot listen on port $1"
	TAKER_SUP=$(sed -n 's/.* supervisor=\([0-9]*\) .*/\1/p' "$T/taker.$1.log")
	BG_PIDS+=("$TAKER_PID")
}
