#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# fanoutd needs no privilege: the whole path as a normal user (nobody when
# the suite runs as root), and fanoutctl refused by the socket's mode.

load helpers

# as_nobody: run what follows (fanoutd, fanoutctl) as nobody, with a
# directory nobody can write.  Skips when the build tree is out of reach.
as_nobody() {
	local p

	for p in "$FANOUTD" "$FANOUTCTL" "$WORKER" "$NOTIFY_WAIT"; do
		setpriv --reuid=nobody --regid=nogroup --clear-groups \
		    test -x "$p" || skip "nobody cannot run $p"
	done
	AS_USER=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
	LOGDIR=$T/u
	mkdir "$LOGDIR"
	chown nobody:nogroup "$LOGDIR"
}

@test "as a normal user: start, send, status, stop" {
	local uid pid

	uid=$(id -u)
	if [ "$uid" -eq 0 ]; then
		as_nobody
		uid=$(id -u nobody)
	fi
	SOCK=$LOGDIR/control.sock
	write_config
	start_fanoutd
	for pid in "$FANOUTD_PID" "${WORKER_PIDS[@]}"; do
		[ "$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")" -eq "$uid" ] ||
		    fail "pid $pid does not run as uid $uid"
	done
	[ "$(stat -c %u "$SOCK")" -eq "$uid" ] || fail "socket not owned by $uid"
	run ctl send as a normal user
	assert_status 0
	assert_send 3 "$ACKED" "$ACKED" "$ACKED"
	run status_lines
	assert_status 0
	[[ ${lines[0]} =~ ^fanoutd\ .*\ \ pid\ $FANOUTD_PID\ \ up\ 3/3\ .*\ \ accepted\ 1$ ]] ||
	    fail "$(show_run)"
	[ "$(printf '%s\n' "${lines[@]}" | grep -cE '^worker .*  up +acked 1  queued 0  ')" -eq 3 ] ||
	    fail "$(show_run)"
	stop_fanoutd
	[ "$FANOUTD_EXIT" = "exited status=0" ] ||
	    fail "fanoutd: $FANOUTD_EXIT" "$(cat "$FANOUTD_LOG")"
	[ ! -e "$SOCK" ] || fail "$SOCK left behind"
	nothing_left "$(ms 3000)"
}

@test "another user cannot use the socket: exit 3, 'Permission denied'" {
	[ "$(id -u)" -eq 0 ] || skip "needs root to run as another user"
	start_fanoutd
	setpriv --reuid=nobody --regid=nogroup --clear-groups \
	    test -x "$FANOUTCTL" || skip "nobody cannot run $FANOUTCTL"
	run --separate-stderr timeout 60 setpriv --reuid=nobody \
	    --regid=nogroup --clear-groups "$FANOUTCTL" -s "$SOCK" status
	assert_status 3
	[ "$stderr" = "fanoutctl: cannot connect to $SOCK: Permission denied (are you in the _fanout group?)" ] ||
	    fail "unexpected error text: $stderr"
}
