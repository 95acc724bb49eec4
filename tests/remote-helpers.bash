# SPDX-License-Identifier: MIT
# Shared by the remote worker scenarios (24 to 27), loaded after
# helpers.bash: a nats-server in the test's namespace, tests/nats-pub on
# it, fanout-remote-worker started through notify-wait, and fanoutd's word
# on its remote workers.  What is particular to one scenario stays there.

HD=$FANOUT_SRCDIR/tests/handlers
RWORKER=$FANOUT_BUILDDIR/src/fanout-remote-worker
NATS_PUB=$FANOUT_BUILDDIR/tests/nats-pub

# --- the broker ----------------------------------------------------------

# nats_setup: for setup().  NATS_SERVER, and the broker's NATS_PORT and
# NATS_URL: 4222 in a namespace of the test's own, else a port of the
# test's free range that fanoutd's local workers do not take.
nats_setup() {
	NATS_SERVER=$(command -v nats-server) ||
	    fail "nats-server not installed (build-aux/install-deps)"
	NATS_PORT=4222
	[ -n "$NS_PID" ] || NATS_PORT=$((BASE_PORT + 150))
	NATS_URL=nats://127.0.0.1:$NATS_PORT
}

# nats_start [CONF]: nats-server with JetStream, its store_dir $T/js (kept
# over a restart), or with configuration file CONF, which says where it
# listens and stores.  It has no readiness signal: its clients retry their
# connect.
nats_start() {
	if [ $# -gt 0 ]; then
		spawn in_ns "$NATS_SERVER" -c "$1" >>"$T/nats.log" 2>&1
	else
		spawn in_ns "$NATS_SERVER" -a 127.0.0.1 -p "$NATS_PORT" -js \
		    -sd "$T/js" >>"$T/nats.log" 2>&1
	fi
	NATS_PID=$BG_PID
}

nats_stop() {
	kill -TERM "$NATS_PID"
	wait_pid_gone "$NATS_PID" "$(ms 10000)" ||
	    fail "nats-server did not stop"
}

# npub ARGS...: tests/nats-pub on this test's broker, as $NATS_URL.
npub() {
	"${NS_RUN[@]}" "$NATS_PUB" -s "$NATS_URL" "$@"
}

# --- remote workers ------------------------------------------------------

# rw_launch NAME CONF STATE_DIR [ARG...]: fanout-remote-worker NAME in the
# namespace through notify-wait; returns on READY=1.  Sets RW_LAUNCHED
# (its pid), RW_SUP (its supervisor's), RW_LOG and RW_NOTIFY (this
# launch's stderr and notify-wait log).  Any other environment it needs
# is the caller's: VAR=VALUE rw_launch ...  Under FANOUT_WRAP (valgrind)
# like fanoutd.
rw_launch() {
	local name=$1 conf=$2 state=$3 out

	shift 3
	LAUNCHES=$((LAUNCHES + 1))
	RW_LOG=$T/rw.$name.$LAUNCHES.log
	RW_NOTIFY=$T/notify.$name.$LAUNCHES.log
	out=$T/nw.$LAUNCHES.out
	"${NS_RUN[@]}" env FANOUT_TEST_TAG="$T" "$NOTIFY_WAIT" \
	    -t "$(ms 20000)" -o "$RW_NOTIFY" -e "$RW_LOG" -- \
	    ${FANOUT_WRAP:-} "$RWORKER" -vv --name "$name" --config "$conf" \
	    --state-dir "$state" "$@" >"$out" ||
	    fail "fanout-remote-worker $name did not become ready" \
	    "$(tail -n 20 "$RW_LOG")"
	RW_LAUNCHED=$(cat "$out")
	RW_SUP=$(sed -n 's/.* supervisor=\([0-9]*\) .*/\1/p' "$RW_NOTIFY" |
	    head -n 1)
	SUPERVISORS+=("$RW_SUP")
}

# --- fanoutd with remote workers -----------------------------------------

# pool_config LOCAL NAME... [-- SETTING=VALUE...]: fanoutd's config, LOCAL
# workers recording to $T, the remote workers NAME...
pool_config() {
	local n=$1 names="" extra=()

	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		names+="${names:+, }\"$1\""
		shift
	done
	[ "${1:-}" = -- ] && { shift; extra=("$@"); }
	write_config workers="$n" \
	    handler="[ \"$HD/exec-record.sh\", \"$T\" ]" \
	    nats_servers="[ \"$NATS_URL\" ]" \
	    remote_workers="[ $names ]" \
	    remote_ack_wait_ms=1000 "${extra[@]}"
}

# rw_start NAME [SETTING...]: remote worker NAME of the pool, on $NATS_URL,
# recording to $T/NAME, with the SETTINGs ("key = value;") too; returns on
# READY=1.  Sets RW_PID[NAME].
rw_start() {
	local name=$1

	# Global, and declared here: 24 and 26 have no such array.
	declare -gA RW_PID
	mkdir -p "$T/$name" "$T/state.$name"
	cat >"$T/$name.conf" <<-EOC
	nats_servers = [ "$NATS_URL" ];
	handler = [ "$HD/exec-record.sh", "$T/$name" ];
	handler_timeout_ms = $(ms 10000);
	EOC
	shift
	[ $# -eq 0 ] || printf '%s\n' "$@" >>"$T/$name.conf"
	rw_launch "$name" "$T/$name.conf" "$T/state.$name"
	RW_PID[$name]=$RW_LAUNCHED
	BG_PIDS+=("$RW_LAUNCHED")
}

rw_stop() {
	kill -TERM "${RW_PID[$1]}"
	wait_pid_gone "${RW_PID[$1]}" "$(ms 10000)" ||
	    fail "fanout-remote-worker $1 did not stop"
}

# remote_state NAME: NAME's state in `fanoutctl status`.
remote_state() {
	ctl status | awk -v n="$1" '
	    $1 == "WORKER" { for (k = 1; k <= NF; k++) c[tolower($k)] = k; next }
	    $1 == n { print $c["state"]; exit }'
}

# remote_is NAME STATE: for wait_for.
remote_is() {
	[ "$(remote_state "$1")" = "$2" ]
}

# handled NAME: the messages remote worker NAME's handler got, in order
# (tests/handlers/exec-record.sh recording to $T/NAME).
handled() {
	cat "$T/$1"/msgs.* 2>/dev/null
}

lines_of() {
	handled "$1" | wc -l
}

# py EXPR: EXPR over the JSON object on stdin as `o'.
py() {
	python3 -c 'import json, sys; o = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
