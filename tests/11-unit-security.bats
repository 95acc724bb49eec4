#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The service's sandbox: "systemd-analyze security" must rate the unit we
# build at an exposure level of 2.0 ("OK") or better.

: "${FANOUT_SRCDIR:=$(dirname "$BATS_TEST_DIRNAME")}"

@test "fanoutd.service: systemd-analyze security exposure at most 2.0" {
	run "$FANOUT_SRCDIR/tests/system/security-score"
	printf '%s\n' "$output"
	[ "$status" -eq 0 ]
	[[ $output == *$'\nok 1 - fanoutd.service exposure level '* ]]
}
