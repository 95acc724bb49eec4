#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The configuration file: fanoutd -t on good and bad files, the exact
# "PATH:LINE: SETTING: PROBLEM" error lines, and a config error at startup
# leaving nothing behind.

load helpers

# conf_file LINE...: write $CONF with these lines, numbered from 1, and
# last, unless a line sets it, worker_path: -t checks that it can be run,
# and the default is not installed where the tests run.
conf_file() {
	printf '%s\n' "$@" >"$CONF"
	[[ "$*" == *worker_path* ]] || echo "worker_path = \"$WORKER\";" >>"$CONF"
}

# check_ok: fanoutd -t accepts $CONF.
check_ok() {
	run --separate-stderr "$FANOUTD" -t -c "$CONF"
	[ "$status" -eq 0 ] && [ "$output" = "configuration OK" ] &&
	    [ -z "$stderr" ] ||
	    fail "fanoutd -t rejected:" "$(cat "$CONF")" "$(show_run)" \
	    "stderr: $stderr"
}

# check_error REGEX: fanoutd -t rejects $CONF, exit 1, nothing on stdout,
# and one line of stderr matches ^REGEX$ (after the path, which every
# error line starts with).
check_error() {
	local l

	run --separate-stderr "$FANOUTD" -t -c "$CONF"
	[ "$status" -eq 1 ] ||
	    fail "expected exit 1 for:" "$(cat -n "$CONF")" "$(show_run)" \
	    "stderr: $stderr"
	[ -z "$output" ] || fail "wrote to stdout: $output"
	while IFS= read -r l; do
		[[ $l =~ ^$1$ ]] && return 0
	done <<<"$stderr"
	fail "no error line matches /^$1$/ for:" "$(cat -n "$CONF")" \
	    "stderr: $stderr"
}

@test "-t accepts the test config and says 'configuration OK'" {
	check_ok
}

@test "-t accepts a file that sets only worker_path: every other setting is optional" {
	conf_file "# nothing"
	check_ok
}

@test "-t accepts the shipped data/fanout.conf" {
	[ -f "$FANOUT_SRCDIR/data/fanout.conf" ] ||
	    fail "$FANOUT_SRCDIR/data/fanout.conf missing"
	# As installed, with the worker where the build has it.
	{ cat "$FANOUT_SRCDIR/data/fanout.conf"
	  echo "worker_path = \"$WORKER\";"; } >"$CONF"
	run --separate-stderr "$FANOUTD" -t -c "$CONF"
	assert_status 0
	[ "$output" = "configuration OK" ] || fail "$(show_run)"
}

@test "-t accepts every boundary value" {
	local long="/$(printf 'x%.0s' $(seq 106))"

	[ ${#long} -eq 107 ]
	conf_file "workers = 1;" "base_port = 65535;" \
	    'listen_address = "::1";' "control_socket = \"$long\";" \
	    "ack_timeout_ms = 1;" "max_message_bytes = 1;" \
	    "worker_path = \"$WORKER\";" \
	    "start_timeout_ms = 100;" "stop_timeout_ms = 100;"
	check_ok
	conf_file "workers = 1024;" "base_port = 64512;" \
	    'listen_address = "127.0.0.1";' "ack_timeout_ms = 3600000;" \
	    "max_message_bytes = 16777216;" "start_timeout_ms = 600000;" \
	    "stop_timeout_ms = 600000;"
	check_ok
	conf_file "base_port = 1;"
	check_ok
	# The supervision settings.
	conf_file "restart_max_delay_ms = 100;" "restart_reset_ms = 100;" \
	    "stall_timeout_ms = 100;" "queue_max_messages = 1;" \
	    "max_message_bytes = 1024;" "queue_max_bytes = 1024;" \
	    "degraded_timeout_ms = 100;" 'degraded_action = "queue";'
	check_ok
	conf_file "restart_max_delay_ms = 3600000;" \
	    "restart_reset_ms = 86400000;" "stall_timeout_ms = 3600000;" \
	    "queue_max_messages = 10000000;" \
	    "max_message_bytes = 16777216;" "queue_max_bytes = 16777216;" \
	    "degraded_timeout_ms = 86400000;" 'degraded_action = "exit";'
	check_ok
}

@test "workers out of range: 'PATH:2: workers: must be between 1 and 1024'" {
	conf_file "# fanout" "workers = 0;"
	check_error "$CONF:2: workers: must be between 1 and 1024"
	conf_file "# fanout" "workers = 1025;"
	check_error "$CONF:2: workers: must be between 1 and 1024"
	conf_file "# fanout" "workers = -3;"
	check_error "$CONF:2: workers: must be between 1 and 1024"
}

@test "a setting of the wrong type names the file, line and setting" {
	conf_file "# fanout" 'workers = "3";'
	check_error "$CONF:2: workers: .+"
	conf_file "# fanout" "" "base_port = 88.5;"
	check_error "$CONF:3: base_port: .+"
	conf_file "# fanout" "listen_address = 127;"
	check_error "$CONF:2: listen_address: .+"
	conf_file "# fanout" "control_socket = true;"
	check_error "$CONF:2: control_socket: .+"
}

@test "every out-of-range value is an error naming its line and setting" {
	while IFS='|' read -r setting value; do
		conf_file "# fanout" "$setting = $value;"
		check_error "$CONF:2: $setting: .+"
	done <<-EOF
	base_port|0
	base_port|65536
	listen_address|"localhost"
	listen_address|"127.0.0.256"
	listen_address|""
	control_socket|"relative/control.sock"
	control_socket|""
	control_socket|"/$(printf 'x%.0s' $(seq 107))"
	ack_timeout_ms|0
	ack_timeout_ms|3600001
	max_message_bytes|0
	max_message_bytes|16777217
	worker_path|"fanout-worker"
	worker_path|""
	start_timeout_ms|99
	start_timeout_ms|600001
	stop_timeout_ms|99
	stop_timeout_ms|600001
	restart_max_delay_ms|99
	restart_max_delay_ms|3600001
	restart_reset_ms|99
	restart_reset_ms|86400001
	stall_timeout_ms|99
	stall_timeout_ms|3600001
	queue_max_messages|0
	queue_max_messages|10000001
	queue_max_bytes|1023
	queue_max_bytes|-1
	degraded_timeout_ms|99
	degraded_timeout_ms|86400001
	degraded_action|"restart"
	degraded_action|""
	degraded_action|1
	control_max_connections|3
	control_max_connections|4097
	control_idle_timeout_ms|99
	control_idle_timeout_ms|3600001
	control_frame_timeout_ms|99
	control_frame_timeout_ms|3600001
	control_output_max_bytes|1048575
	control_output_max_bytes|2147483648
	control_buffer_max_bytes|1048575
	EOF
}

@test "degraded_action: 'PATH:2: degraded_action: \"x\" is not one of ...'" {
	conf_file "# fanout" 'degraded_action = "Exit";'
	check_error "$CONF:2: degraded_action: \"Exit\" is not one of \"queue\" or \"exit\""
}

@test "queue_max_bytes below max_message_bytes is an error naming both" {
	conf_file "max_message_bytes = 4096;" "queue_max_bytes = 2048;"
	check_error "$CONF:2: queue_max_bytes: .*max_message_bytes.*"
	# One byte short of the largest message max_message_bytes allows.
	conf_file "max_message_bytes = 16777216;" "queue_max_bytes = 16777215;"
	check_error "$CONF:2: queue_max_bytes: .*max_message_bytes.*"
	# Equal is enough: the largest message fits an empty queue.
	conf_file "max_message_bytes = 4096;" "queue_max_bytes = 4096;"
	check_ok
}

@test "control_buffer_max_bytes must hold one client's budget and largest message" {
	conf_file "control_output_max_bytes = 1048576;" \
	    "control_buffer_max_bytes = 1048576;"
	check_error "$CONF:2: control_buffer_max_bytes: .*control_output_max_bytes.*max_message_bytes.*"
	conf_file "control_output_max_bytes = 1048576;" \
	    "control_buffer_max_bytes = 1114112;"
	check_ok
	conf_file "control_max_connections = 4;" \
	    "control_idle_timeout_ms = 100;" "control_frame_timeout_ms = 100;"
	check_ok
}

@test "the last worker's port must fit: base_port + workers - 1 <= 65535" {
	conf_file "workers = 3;" "base_port = 65534;"
	check_error "$CONF:[12]: (base_port|workers): .+"
	conf_file "workers = 3;" "base_port = 65533;"
	check_ok
}

@test "an unknown setting: 'PATH:3: wokers: unknown setting'" {
	conf_file "# fanout" "base_port = 9000;" "wokers = 3;"
	check_error "$CONF:3: wokers: unknown setting"
}

@test "a syntax error: 'PATH:LINE: syntax error'" {
	conf_file "# fanout" "workers = ;"
	check_error "$CONF:2: syntax error.*"
	conf_file "workers = 3;" "" "base_port 9000"
	check_error "$CONF:[34]: syntax error.*"
}

@test "a missing file: 'fanoutd: cannot read PATH: No such file or directory'" {
	run --separate-stderr "$FANOUTD" -t -c "$T/missing.conf"
	assert_status 1
	[ -z "$output" ] || fail "wrote to stdout: $output"
	[ "$stderr" = "fanoutd: cannot read $T/missing.conf: No such file or directory" ] ||
	    fail "unexpected error text: $stderr"
}

@test "-t starts nothing and creates no control socket" {
	run "$FANOUTD" -t -c "$CONF"
	assert_status 0
	[ ! -e "$SOCK" ] || fail "fanoutd -t created $SOCK"
	nothing_left 1000
}

@test "a config error at startup: exit 1, the error, nothing left running" {
	conf_file "# fanout" "workers = 0;" "control_socket = \"$SOCK\";"
	start_fanoutd_fails
	assert_line "$CONF:2: workers: must be between 1 and 1024"
	[ ! -e "$SOCK" ] || fail "left $SOCK behind"
	nothing_left "$(ms 3000)"
}

@test "a missing config file at startup: exit 1, nothing left running" {
	CONF=$T/missing.conf
	start_fanoutd_fails
	assert_line "fanoutd: cannot read $T/missing.conf: No such file or directory"
	nothing_left "$(ms 3000)"
}
