#!/bin/sh
# SPDX-License-Identifier: MIT
# exec mode: lists the descriptors the handler has, as "FD TARGET" lines,
# into OUT/fds.I (I: FANOUT_WORKER_INDEX): those of this shell, then,
# after a line "self", those ls itself sees in /proc/self/fd.
#	exec-fds.sh OUT
out=$1
i=${FANOUT_WORKER_INDEX-unset}
cat >/dev/null
# Redirections only on the commands: the shell itself opens nothing more.
ls -l "/proc/$$/fd" >"$out/fds.raw.$i" 2>&1
echo self >>"$out/fds.raw.$i"
ls -l /proc/self/fd >>"$out/fds.raw.$i" 2>&1
awk '$1 == "self" { print; next }
    $(NF - 1) == "->" { print $(NF - 2), $NF }' "$out/fds.raw.$i" \
    >"$out/fds.$i"
