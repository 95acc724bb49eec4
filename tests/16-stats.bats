#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# fanoutctl stats: the counters as a table, as JSON and in the Prometheus
# text format, checked by the Prometheus project's own parser.

load helpers

# The Python of the distribution: python3-prometheus-client lives there.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

need_prom() {
	"$PY" -c 'import prometheus_client.parser' 2>/dev/null ||
	    skip "python3-prometheus-client not installed"
}

# prom_check EXPR: parse $output with prometheus_client's text parser;
# EXPR (Python) sees m: {(name, frozenset(labels.items())): value} and
# fams: {family name: type} and must hold.
prom_check() {
	printf '%s\n' "$output" | "$PY" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
m, fams = {}, {}
for f in text_string_to_metric_families(sys.stdin.read()):
    fams[f.name] = f.type
    for s in f.samples:
        m[(s.name, frozenset(s.labels.items()))] = s.value
def v(name, **labels):
    return m[(name, frozenset(labels.items()))]
if not eval(sys.argv[1]):
    sys.exit("does not hold: " + sys.argv[1])
' "$1" || fail "prometheus output" "$(show_run)"
}

@test "stats: a table of every worker's counters and round trips" {
	start_fanoutd
	run ctl send one
	assert_status 0
	run ctl send two
	assert_status 0
	run --separate-stderr ctl stats
	assert_status 0
	assert_line '^fanoutd pid [0-9]+  uptime [0-9]+s  accepted 2  up 3/3$'
	assert_line '^WORKER +STATE +ACKED +FAILED +REFUSED +QUEUED +RESTARTS +RTT-MEAN +RTT-P50 +RTT-P99$'
	assert_line '^0 +up +2 +0 +0 +0 +0 +[0-9.]+ms +<=[0-9.]+(us|ms|s) +<=[0-9.]+(us|ms|s)$'
	assert_line '^2 +up +2 +0 +0 +0 +0 '
}

@test "stats -j: format 1, counters and a histogram per worker" {
	need_python
	start_fanoutd
	run ctl send one
	assert_status 0
	run --separate-stderr ctl -j stats
	assert_status 0
	json_check 'o["format"] == 1 and o["workers_total"] == 3 and o["daemon"]["messages_accepted"] == 1 and all(w["acked_count"] == 1 and w["refused_count"] == 0 and w["rtt"]["count"] == 1 and sum(b["count"] for b in w["rtt"]["buckets"]) == 1 and w["rtt"]["buckets"][-1]["le_ms"] is None for w in o["workers"])'
}

@test "stats --prometheus: parsed by prometheus_client, counters match the sends" {
	need_prom
	write_config queue_max_messages=1
	start_fanoutd
	run ctl send one
	assert_status 0
	run --separate-stderr ctl stats --prometheus
	assert_status 0
	prom_check 'fams["fanout_worker_acked"] == "counter" and fams["fanout_worker_ack_rtt_seconds"] == "histogram" and v("fanout_up") == 1 and v("fanout_messages_accepted_total") == 1 and v("fanout_workers_up") == 3 and all(v("fanout_worker_acked_total", worker=str(i)) == 1 and v("fanout_worker_up", worker=str(i)) == 1 and v("fanout_worker_ack_rtt_seconds_count", worker=str(i)) == 1 and v("fanout_worker_ack_rtt_seconds_bucket", worker=str(i), le="+Inf") == 1 for i in range(3))'
	# A stopped worker keeps its message: the next one is refused for
	# it (queue_max_messages 1), and the counters say so.
	kill -STOP "$(worker_pid 1)"
	run ctl -t "$(ms 500)" send two
	assert_status 1
	run ctl send three
	assert_status 1
	run --separate-stderr ctl stats --prometheus
	kill -CONT "$(worker_pid 1)"
	assert_status 0
	prom_check 'v("fanout_worker_refused_total", worker="1") == 1 and v("fanout_worker_queued_messages", worker="1") == 1 and v("fanout_worker_refused_total", worker="0") == 0 and v("fanout_messages_accepted_total") == 3'
}

@test "stats: the daemon unreachable is exit 3, nothing on stdout" {
	run --separate-stderr "$FANOUTCTL" -s "$T/nothing.sock" stats --prometheus
	assert_status 3
	[ -z "$output" ] || fail "stdout not empty" "$(show_run)"
}
