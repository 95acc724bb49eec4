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

# PrivateNetwork=yes would stop fanoutd from reaching its workers wherever
# systemd cannot bring up loopback in a new namespace (a container sharing
# the host's network: tests/system/run-container-test --host-network);
# IPAddressDeny= limits the service to localhost instead.
@test "fanoutd.service: localhost only through IPAddressDeny=, no PrivateNetwork=yes" {
	unit=$FANOUT_SRCDIR/data/fanoutd.service.in
	run grep -Ei '^PrivateNetwork=(yes|true|on|1)' "$unit"
	[ "$status" -eq 1 ]
	grep -qx 'IPAddressDeny=any' "$unit"
	grep -qx 'IPAddressAllow=localhost' "$unit"
}
