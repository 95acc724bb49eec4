#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Remote workers on a cluster of three nats-servers (issue 11), started from
# the shipped example, data/examples/nats-server.conf, with its paths and
# host names replaced: nodes nats1, nats2 and nats3 on 127.0.0.1, .2 and .3
# in the test's own network namespace, client and route TLS with
# certificates made here as fanout-remote-worker(8) says, users mapped from
# the certificates with the example's permissions.  fanoutd and remote
# worker host7 run with the example's settings too.  What host7's handler
# did is read from the files tests/handlers/exec-record.sh leaves.  The
# failover test (last) runs only with FANOUT_CLUSTER_FAILOVER=1: see there.

load helpers
load remote-helpers

EX=$FANOUT_SRCDIR/data/examples

setup() {
	fanout_setup
	nats_setup
	command -v openssl >/dev/null || fail "openssl not installed"
	command -v python3 >/dev/null || fail "python3 not installed"
	PKI=$T/pki
	declare -gA NODE_PID=()
}

# need_ns: the nodes listen on 127.0.0.1-3, ports 4222, 6222 and 8222:
# only in a namespace of the test's own.
need_ns() {
	[ -n "$NS_PID" ] ||
	    fail "needs a network namespace of its own (unshare -n)"
}

# cert NAME SUBJECT EXTENSIONS: NAME.key and NAME.pem in $PKI, signed by
# the CA, as fanout-remote-worker(8) has them made.
cert() {
	printf '%s\n' "$3" >"$PKI/$1.ext"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
	    -subj "$2" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>>"$T/pki.log" &&
	openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.pem" \
	    -CAkey "$PKI/ca.key" -days 825 -extfile "$PKI/$1.ext" \
	    -out "$PKI/$1.pem" 2>>"$T/pki.log" ||
	    fail "cannot make the certificate of $1" "$(cat "$T/pki.log")"
}

# make_pki: the CA; the nodes' certificates (server and route client), by
# name and address; fanoutd's and host7's (client), their subjects the
# users of the example.
make_pki() {
	local i

	mkdir -p "$PKI"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
	    -days 3650 -subj "/O=fanout/CN=fanout NATS CA" \
	    -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>>"$T/pki.log" ||
	    fail "cannot make the CA" "$(cat "$T/pki.log")"
	for i in 1 2 3; do
		cert "nats$i" "/O=fanout/CN=nats$i.example.org" \
		    "subjectAltName=DNS:nats$i.example.org,IP:127.0.0.$i
extendedKeyUsage=serverAuth,clientAuth"
	done
	cert fanoutd /O=fanout/CN=fanoutd extendedKeyUsage=clientAuth
	cert host7 /O=fanout/CN=host7 extendedKeyUsage=clientAuth
	# Keys as the units pass them: credentials, by name.
	mkdir -p "$T/cred.fanoutd" "$T/cred.host7"
	cp "$PKI/fanoutd.key" "$T/cred.fanoutd/nats.key"
	cp "$PKI/host7.key" "$T/cred.host7/tls.key"
}

# local_paths: sed expressions from the example's paths and host names
# to this test's.
local_paths() {
	printf '%s\n' \
	    "s|/etc/nats-server/|$PKI/|g" \
	    "s|/etc/fanout/nats-ca\\.pem|$PKI/ca.pem|g" \
	    "s|/etc/fanout/fanoutd-nats\\.pem|$PKI/fanoutd.pem|g" \
	    "s|/etc/fanout/remote-worker-host7\\.pem|$PKI/host7.pem|g" \
	    "s|nats\\([123]\\)\\.example\\.org|127.0.0.\\1|g"
}

# node_config I: the example for node I, in $T/nats.I.conf, checked by
# nats-server -t; every line the test must change was found.
node_config() {
	local i=$1 f=$T/nats.$1.conf

	sed -f <(local_paths
	    echo "s|^server_name: nats1\\b|server_name: nats$i|"
	    echo "s|^\\(\\s*listen:\\) 0\\.0\\.0\\.0:|\\1 127.0.0.$i:|"
	    echo "s|^http: 127\\.0\\.0\\.1:|http: 127.0.0.$i:|"
	    echo "s,/nats1\\.\\(pem\\|key\\),/nats$i.\\1,"
	    echo "s|^\\(\\s*store_dir:\\) /var/lib/nats-server\$|\\1 \"$T/js.$i\"|") \
	    "$EX/nats-server.conf" >"$f"
	! grep -nE 'example\.org|/etc/|/var/lib|0\.0\.0\.0' "$f" ||
	    fail "$f: the example has a line this test does not change"
	# listen, http, cluster listen, and its own route.
	[ "$(grep -c "127\\.0\\.0\\.$i:" "$f")" -eq 4 ] &&
	    grep -q "^server_name: nats$i\\b" "$f" &&
	    [ "$(grep -c "$PKI/nats$i\\.pem" "$f")" -eq 2 ] &&
	    grep -q "store_dir: \"$T/js.$i\"" "$f" ||
	    fail "$f: not the node this test wants:" "$(cat "$f")"
	run "$NATS_SERVER" -c "$f" -t
	assert_status 0
}

# node_start I: node I, logging to $T/nats.I.log; it has no readiness
# signal, clients retry.
node_start() {
	spawn in_ns "$NATS_SERVER" -c "$T/nats.$1.conf" >>"$T/nats.$1.log" 2>&1
	NODE_PID[$1]=$BG_PID
}

# The JetStream API as fanoutd's user (its certificate): one request,
# the reply's JSON on stdout; an error, a status reply or no answer
# within 3 s fails.  NATS over TLS as nats-server 2.9 wants it: INFO in
# clear, then the handshake.
NATSJS_PY='
import json, os, socket, ssl, sys
inbox = os.environ.get("NATSJS_INBOX", "_INBOX.natsjs").encode()
hp, ca, cert, key, subj, payload = sys.argv[1:7]
host, port = hp.rsplit(":", 1)
raw = socket.create_connection((host, int(port)), timeout=3)
line = b""
while not line.endswith(b"\r\n"):
    b = raw.recv(1)
    if not b:
        sys.exit("closed before INFO")
    line += b
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(raw, server_hostname=host)
f = s.makefile("rb")
p = payload.encode()
s.sendall(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\n"
    b"SUB %s 1\r\nPUB %s %s %d\r\n%s\r\n"
    % (inbox, subj.encode(), inbox, len(p), p))
while True:
    l = f.readline()
    if not l:
        sys.exit("connection closed")
    if l.startswith(b"PING"):
        s.sendall(b"PONG\r\n")
    elif l.startswith(b"-ERR"):
        sys.exit(l.decode().strip())
    elif l.startswith(b"MSG "):
        n = int(l.split()[-1])
        print(f.read(n + 2)[:n].decode())
        break
    elif l.startswith(b"HMSG "):
        sys.exit("status reply: " + f.read(int(l.split()[-1]) + 2).decode()
            .splitlines()[0])
'

# js_api SUBJECT [JSON]: on the first node that is running.
js_api() {
	local i

	for i in 1 2 3; do
		alive "${NODE_PID[$i]:-0}" || continue
		"${NS_RUN[@]}" timeout 5 python3 -c "$NATSJS_PY" \
		    "127.0.0.$i:4222" "$PKI/ca.pem" "$PKI/fanoutd.pem" \
		    "$PKI/fanoutd.key" "\$JS.API.$1" "${2:-}"
		return
	done
	return 1
}

# stream_is R LEADER-RE: stream FANOUT has R replicas, all current, and
# a leader whose name matches.
stream_is() {
	local j

	j=$(js_api STREAM.INFO.FANOUT) || return 1
	[ "$(py 'o["config"]["num_replicas"]' <<<"$j")" = "$1" ] &&
	[ "$(py 'sum(1 for p in o["cluster"].get("replicas", []) if p["current"])' \
	    <<<"$j")" = $(($1 - 1)) ] &&
	[[ $(py 'o["cluster"].get("leader", "")' <<<"$j") =~ ^($2)$ ]]
}

# consumer_replicas NAME: how many nodes hold consumer NAME.
consumer_replicas() {
	js_api CONSUMER.INFO.FANOUT."$1" |
	    py '1 + len(o["cluster"].get("replicas", []))'
}

# fanoutd_start: one local worker and remote worker host7, on the cluster,
# with the example's settings (its TLS key as the credential nats.key).
fanoutd_start() {
	write_config workers=1 handler="[ \"$HD/exec-record.sh\", \"$T\" ]" \
	    start_timeout_ms="$(ms 20000)" ack_timeout_ms="$(ms 2000)" \
	    remote_ack_wait_ms=1000
	sed -f <(local_paths) "$EX/fanout.conf-remote" >>"$CONF"
	! grep -v '^#' "$CONF" | grep -E 'example\.org|/etc/' ||
	    fail "$CONF: the example has a line this test does not change"
	run env CREDENTIALS_DIRECTORY="$T/cred.fanoutd" "$FANOUTD" -t -c "$CONF"
	assert_status 0
	CREDENTIALS_DIRECTORY=$T/cred.fanoutd start_fanoutd
	! grep -q 'not set up within' "$FANOUTD_LOG" ||
	    fail "fanoutd did not set up the stream" "$(cat "$FANOUTD_LOG")"
}

# host7_start: remote worker host7 with the example's configuration, the
# handler recording to $T/host7; returns on READY=1.
host7_start() {
	mkdir -p "$T/host7" "$T/state.host7"
	sed -f <(local_paths
	    echo "s|^handler = .*|handler = [ \"$HD/exec-record.sh\", \"$T/host7\" ];|") \
	    "$EX/remote-worker-host7.conf" >"$T/host7.conf"
	! grep -v '^#' "$T/host7.conf" | grep -E 'example\.org|/etc/|/usr/local' ||
	    fail "host7.conf: the example has a line this test does not change"
	CREDENTIALS_DIRECTORY=$T/cred.host7 rw_launch host7 "$T/host7.conf" \
	    "$T/state.host7"
	BG_PIDS+=("$RW_LAUNCHED")
}

# send_one TEXT: a broadcast; host7's verdict in VERDICT.
send_one() {
	run ctl send "$1"
	VERDICT=$(printf '%s\n' "$output" |
	    sed -n 's/^worker host7  remote  \([a-z]*\) .*/\1/p')
	[ -n "$VERDICT" ] || fail "no verdict for host7" "$(show_run)"
	printf '%s %s\n' "$1" "$VERDICT" >>"$T/verdicts"
}

@test "the example drop-in for fanoutd.service: valid, still sandboxed" {
	local d=$T/unit

	command -v systemd-analyze >/dev/null ||
	    fail "systemd-analyze not installed"
	mkdir -p "$d/fanoutd.service.d" "$d/merged"
	sed -e "s|@sbindir@|$FANOUT_BUILDDIR/src|g" \
	    -e "s|@bindir@|$FANOUT_BUILDDIR/src|g" \
	    "$FANOUT_SRCDIR/data/fanoutd.service.in" >"$d/fanoutd.service"
	cp "$EX/fanoutd.service-remote-workers.conf" \
	    "$d/fanoutd.service.d/remote-workers.conf"
	# No unknown setting, no bad value: systemd says nothing about it.
	run env SYSTEMD_LOG_LEVEL=debug systemd-analyze verify --man=no \
	    "$d/fanoutd.service"
	assert_status 0
	assert_line "DropIn Path: $d/fanoutd.service.d/remote-workers.conf"
	refute_line 'remote-workers\.conf:[0-9]+:'
	assert_line 'IPAddressDeny: 0\.0\.0\.0/0'
	assert_line 'IPAddressAllow: 127\.0\.0\.0/8'
	assert_line 'IPAddressAllow: 192\.0\.2\.21/32'
	assert_line 'PrivateNetwork: no'
	# The credential is the key fanout.conf-remote names.
	grep -qx 'LoadCredential=nats.key:/etc/fanout/fanoutd-nats.key' \
	    "$EX/fanoutd.service-remote-workers.conf"
	grep -qx 'nats_tls_key = "nats.key";' "$EX/fanout.conf-remote"
	# The unit with the drop-in keeps its exposure level.
	cat "$d/fanoutd.service" "$d/fanoutd.service.d/remote-workers.conf" \
	    >"$d/merged/fanoutd.service"
	run "$FANOUT_SRCDIR/tests/system/security-score" \
	    "$d/merged/fanoutd.service" 2.0
	assert_status 0
	assert_line '^ok 1 '
}

# node_of USER: the node USER (a certificate's subject) is connected to,
# from the node's monitoring (the example's http:, /connz?auth=1).
node_of() {
	local i

	for i in 1 2 3; do
		alive "${NODE_PID[$i]:-0}" || continue
		"${NS_RUN[@]}" python3 -c '
import json, sys, urllib.request
o = json.load(urllib.request.urlopen(
    "http://127.0.0.%s:8222/connz?auth=1" % sys.argv[1], timeout=2))
sys.exit(not any(c.get("authorized_user") == sys.argv[2]
    for c in o.get("connections", [])))' "$i" "$1" && { echo "$i"; return; }
	done
	return 1
}

# cluster_up: the example as three nodes, fanoutd with one local worker
# and host7, each a client of the cluster through its certificate; three
# messages acked by host7.  The messages sent are in $T/verdicts.
cluster_up() {
	local i

	need_ns
	make_pki
	for i in 1 2 3; do node_config "$i"; done
	for i in 1 2 3; do node_start "$i"; done
	# fanoutd waits for the cluster (ready in about 7 s) before READY=1.
	fanoutd_start
	host7_start
	wait_for "remote_is host7 pulling" "$(ms 10000)"
	for i in 1 2 3; do
		send_one "m$i"
		[ "$VERDICT" = acked ] || fail "m$i: $VERDICT" "$(show_run)"
	done
	[ "$(handled host7)" = "$(printf 'm%s\n' 1 2 3)" ] ||
	    fail "host7:" "$(handled host7)"
}

@test "the example as a cluster of three: fanoutd and a remote worker by certificate" {
	local i h leader cleader

	cluster_up
	# fanoutd made the stream on the three nodes (nats_stream_replicas
	# in the example); the consumer follows.
	wait_for 'stream_is 3 "nats[123]"' "$(ms 15000)" ||
	    fail "not the stream fanoutd makes" "$(js_api STREAM.INFO.FANOUT)"
	wait_for '[ "$(consumer_replicas host7)" = 3 ]' "$(ms 10000)"
	# A node that leads neither the stream nor its consumer goes away,
	# host7's own if it is such a node: fanoutd and host7, if they were
	# its clients, move to another; what is sent meanwhile is stored, and
	# handled in order.
	run js_api STREAM.INFO.FANOUT
	leader=$(py 'o["cluster"]["leader"]' <<<"$output")
	run js_api CONSUMER.INFO.FANOUT.host7
	cleader=$(py 'o["cluster"]["leader"]' <<<"$output")
	h=$(node_of CN=host7,O=fanout) || fail "host7 is on no node"
	for i in "$h" 1 2 3; do
		[ "nats$i" = "$leader" ] || [ "nats$i" = "$cleader" ] || break
	done
	echo "# stream on $leader, consumer on $cleader, host7 on nats$h:" \
	    "nats$i killed" >&3
	kill -KILL "${NODE_PID[$i]}"
	wait_pid_gone "${NODE_PID[$i]}" "$(ms 10000)"
	if [ "$i" = "$h" ]; then
		wait_for 'h=$(node_of CN=host7,O=fanout)' "$(ms 10000)"
		[ "$h" != "$i" ] || fail "host7 still on the killed node"
	fi
	for i in 4 5 6; do
		send_one "m$i"
		[[ $VERDICT =~ ^(acked|queued)$ ]] ||
		    fail "m$i: $VERDICT" "$(show_run)"
	done
	wait_for '[ "$(lines_of host7)" -ge 6 ]' "$(ms 15000)" ||
	    fail "host7:" "$(handled host7)"
	[ "$(handled host7)" = "$(printf 'm%s\n' 1 2 3 4 5 6)" ] ||
	    fail "host7:" "$(handled host7)"
	# A client that trusts the CA but has no certificate of its own is
	# refused; with fanoutd's, the same request is answered.
	for i in 1 2 3; do alive "${NODE_PID[$i]}" && break; done
	run "${NS_RUN[@]}" timeout 5 python3 -c "$NATSJS_PY" "127.0.0.$i:4222" \
	    "$PKI/ca.pem" "" "" '$JS.API.STREAM.INFO.FANOUT' ""
	[ "$status" -ne 0 ] ||
	    fail "a client without a certificate got in" "$(show_run)"
	run "${NS_RUN[@]}" timeout 5 python3 -c "$NATSJS_PY" "127.0.0.$i:4222" \
	    "$PKI/ca.pem" "$PKI/fanoutd.pem" "$PKI/fanoutd.key" \
	    '$JS.API.STREAM.INFO.FANOUT' ""
	assert_status 0
	# host7's identity may not read the stream (from its own inbox).
	run "${NS_RUN[@]}" env NATSJS_INBOX=_INBOX.host7.x timeout 5 \
	    python3 -c "$NATSJS_PY" "127.0.0.$i:4222" \
	    "$PKI/ca.pem" "$PKI/host7.pem" "$PKI/host7.key" \
	    '$JS.API.STREAM.INFO.FANOUT' ""
	assert_status 1
	assert_line 'Permissions Violation for Publish to "\$JS\.API\.STREAM\.INFO\.FANOUT"'
}

# The failover of issue 11: the stream's leader is killed while messages
# are sent one after the other.  The stream has three replicas (the
# example's nats_stream_replicas), and fanoutd keeps them through the
# failover: a consumer missing from one listing is not set up again.
@test "a cluster of three, R3: the stream leader killed mid-stream, nothing queued or acked is lost" {
	local n leader victim t0 resumed=0 after=0 want replicas

	cluster_up
	wait_for 'stream_is 3 "nats[123]"' "$(ms 15000)" ||
	    fail "not three replicas" "$(js_api STREAM.INFO.FANOUT)"
	wait_for '[ "$(consumer_replicas host7)" = 3 ]' "$(ms 10000)"

	# The stream's leader is killed; messages go on, one at a time.
	leader=$(js_api STREAM.INFO.FANOUT | py 'o["cluster"]["leader"]')
	victim=${leader#nats}
	kill -KILL "${NODE_PID[$victim]}"
	wait_pid_gone "${NODE_PID[$victim]}" "$(ms 5000)"
	t0=$(now_ms)
	n=3
	# Publishing resumes: five in a row stored (acked or queued) again,
	# within 30 s.
	while [ "$after" -lt 5 ]; do
		[ $(($(now_ms) - t0)) -lt "$(ms 30000)" ] ||
		    fail "no publishing 30 s after $leader was killed:" \
		    "$(cat "$T/verdicts")"
		n=$((n + 1))
		send_one "m$n"
		case $VERDICT in
		acked|queued)
			after=$((after + 1))
			[ "$resumed" -gt 0 ] || resumed=$(($(now_ms) - t0)) ;;
		down) after=0 ;;
		*) fail "m$n: $VERDICT" "$(show_run)" ;;
		esac
	done
	echo "# $leader killed: stored again after $resumed ms," \
	    "$n messages" >&3
	# Still three replicas for the stream (two of them running).
	run js_api STREAM.INFO.FANOUT
	assert_status 0
	replicas=$(py 'o["config"]["num_replicas"]' <<<"$output")
	[ "$replicas" = 3 ] ||
	    fail "the stream has $replicas replica(s) after the failover"

	# Every message reported acked or queued is handled, once, in the
	# order it was sent, with the killed node still down; a `down' one
	# may have been stored or not.
	want=$(awk '$2 == "acked" || $2 == "queued" { print $1 }' \
	    "$T/verdicts")
	wait_for '[ -z "$(comm -23 <(printf "%s\n" "$want" | sort) \
	    <(handled host7 | sort))" ]' "$(ms 20000)" ||
	    fail "lost:" "$(comm -23 <(printf '%s\n' "$want" | sort) \
	    <(handled host7 | sort))" "handled:" "$(handled host7)"
	[ "$(handled host7 | sort | uniq -d)" = "" ] ||
	    fail "handled twice:" "$(handled host7 | sort | uniq -d)"
	[ "$(handled host7 | sed 's/^m//' | sort -n)" = \
	    "$(handled host7 | sed 's/^m//')" ] ||
	    fail "out of order:" "$(handled host7)"
	[ "$(handled host7 | awk -F m '$2 < 1 || $2 > n' n="$n")" = "" ] ||
	    fail "handled what was not sent:" "$(handled host7)"

	# The killed node comes back and catches up.
	node_start "$victim"
	wait_for 'stream_is 3 "nats[123]"' "$(ms 20000)"
}
