#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# Every member of fanoutctl's JSON output is documented in fanoutctl(1)'s
# JSON section, and every object says "format": 1: the schema and its
# documentation cannot drift apart unnoticed.

load helpers

# The member names fanoutctl(1) documents: the words its JSON section sets
# with Li.
documented() {
	awk '/^\.Ss JSON/,/^\.Sh ENVIRONMENT/' "$FANOUT_SRCDIR/man/fanoutctl.1" |
	    grep -oE '^\.(It )?Li [a-z_]+' | awk '{ print $NF }' | sort -u
}

# undocumented_keys: the member names of the JSON objects in $output
# (one per line) that the man page does not list; also fails unless each
# object has "format": 1.
undocumented_keys() {
	printf '%s\n' "$output" | python3 -c '
import json, sys
doc = set(open(sys.argv[1]).read().split())
seen = set()
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            seen.add(k)
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
n = 0
for line in sys.stdin:
    o = json.loads(line)
    if o.get("format") != 1:
        sys.exit("no \"format\": 1 in " + line)
    walk(o)
    n += 1
if n == 0:
    sys.exit("no JSON object")
print(" ".join(sorted(seen - doc)))
' "$T/documented"
}

@test "JSON of send, send -, status and stats: every member documented, format 1" {
	need_python
	documented >"$T/documented"
	[ -s "$T/documented" ] || fail "no members found in fanoutctl(1)"
	write_config queue_max_messages=1
	start_fanoutd
	kill -STOP "$(worker_pid 1)"
	# acked, queued (worker 1 stopped) and full (its queue is full)
	run --separate-stderr ctl -j -t "$(ms 300)" send one
	assert_status 1
	local out=$output
	run --separate-stderr ctl -j send two
	out+=$'\n'$output
	kill -CONT "$(worker_pid 1)"
	run --separate-stderr ctl -j status
	assert_status 0
	out+=$'\n'$output
	run --separate-stderr ctl -j stats
	assert_status 0
	out+=$'\n'$output
	run --separate-stderr ctl -j send - <<<$'three\nfour'
	out+=$'\n'$output
	output=$out
	run undocumented_keys
	assert_status 0
	[ -z "$output" ] || fail "members fanoutctl(1) does not document: $output"
}
