#!/usr/bin/env bats
# SPDX-License-Identifier: MIT
# The man pages match the code: mandoc lint is clean, and every option a
# binary's --help lists, every config key the loader knows and every
# fanoutctl command appears in the matching page.

: "${FANOUT_SRCDIR:=$(dirname "$BATS_TEST_DIRNAME")}"
: "${FANOUT_BUILDDIR:=$(dirname "$BATS_TEST_DIRNAME")}"

MAN="$FANOUT_SRCDIR/man"

# fail MESSAGE...: print the message where bats shows it and fail the test.
fail() {
	printf '%s\n' "$@" >&2
	return 1
}

# help_of PROGRAM: run PROGRAM --help (built in src/), print its output.
help_of() {
	local bin="$FANOUT_BUILDDIR/src/$1" out

	# called as $(help_of ...) || ..., where set -e does not apply
	[ -x "$bin" ] || { fail "$bin: not built"; return 1; }
	out=$("$bin" --help) ||
	    { fail "$bin --help exited with status $?"; return 1; }
	[ -n "$out" ] || { fail "$bin --help printed nothing"; return 1; }
	printf '%s\n' "$out"
}

# options_in_help: read --help text, print each option it names once
# (-c, --help), from the usage line and the option lines alike.
options_in_help() {
	grep -oE '(^|[][[:space:]|,(])--?[A-Za-z][A-Za-z0-9-]*' |
	    sed -E 's/^[^-]*//' | sort -u
}

# check_options PROGRAM PAGE: every option in PROGRAM --help is a .Fl in PAGE.
check_options() {
	local prog="$1" page="$MAN/$2" help opts opt missing=""

	[ -f "$page" ] || fail "$page: missing"
	help=$(help_of "$prog") || return 1
	opts=$(options_in_help <<<"$help")
	[ -n "$opts" ] || fail "no options found in $prog --help:" "$help"
	for opt in $opts; do
		# -c -> "Fl c", --help -> "Fl -help", as a whole word
		grep -qE "(^|[[:space:]])Fl ${opt#-}([[:space:],|]|\$)" \
		    "$page" || missing="$missing $opt"
	done
	[ -z "$missing" ] ||
	    fail "$2 lacks options that $prog --help lists:$missing"
}

# conf_c_keys: the names in the config loader's table, whose rows look like
# `{ "workers", ...`.
conf_c_keys() {
	sed -nE 's/^[[:space:]]*\{ "([a-z_]+)".*/\1/p' \
	    "$FANOUT_SRCDIR/src/conf.c" | sort -u
}

# shipped_keys: the settings in data/fanout.conf, set or commented out
# (`#workers = 3;`).
shipped_keys() {
	sed -nE 's@^[[:space:]]*(#|//)?[[:space:]]*([a-z_]+)[[:space:]]*=.*;[[:space:]]*$@\2@p' \
	    "$FANOUT_SRCDIR/data/fanout.conf" | sort -u
}

# commands_in_help TEXT: print the commands fanoutctl's --help TEXT lists:
# the indented entries under a "Commands:" heading (the first word of each
# line indented like the first entry, so wrapped descriptions are skipped),
# or, failing that, the first lower-case word after the options on each
# "fanoutctl ..." usage line.
commands_in_help() {
	printf '%s\n' "$1" | awk '
	tolower($0) ~ /^[ \t]*commands:?[ \t]*$/ { inlist = 1; indent = -1; next }
	inlist {
		if ($0 ~ /^[ \t]*$/) { if (indent >= 0) inlist = 0; next }
		match($0, /^[ \t]*/)
		if (RLENGTH == 0) { inlist = 0; next }
		if (indent < 0) indent = RLENGTH
		if (RLENGTH == indent && $1 ~ /^[a-z][a-z0-9-]*$/) {
			print $1; found = 1
		}
	}
	END { exit !found }
	' && return 0
	printf '%s\n' "$1" | awk '
	{
		sub(/^[ \t]*([Uu]sage:)?[ \t]*/, "")
		if ($1 !~ /(^|\/)fanoutctl$/) next
		for (i = 2; i <= NF; i++) {
			if ($i ~ /^[a-z][a-z0-9-]*$/) { print $i; break }
			if ($i !~ /^[[-]/ && $i !~ /\]$/ && $i !~ /^[A-Z_.]+$/) break
		}
	}
	'
}

@test "mandoc -T lint -W warning is clean for every man page" {
	command -v mandoc >/dev/null || fail "mandoc is not installed"
	local page pages=0 bad=""

	for page in "$MAN"/*.[1-8]; do
		[ -f "$page" ] || continue
		pages=$((pages + 1))
		run mandoc -T lint -W warning "$page"
		if [ "$status" -ne 0 ] || [ -n "$output" ]; then
			printf '%s\n' "$output" >&2
			bad="$bad ${page##*/}"
		fi
	done
	[ "$pages" -ge 4 ] || fail "expected 4 man pages in $MAN, found $pages"
	[ -z "$bad" ] || fail "mandoc lint failed for:$bad"
}

@test "fanoutd.8 documents every option of fanoutd --help" {
	check_options fanoutd fanoutd.8
}

@test "fanoutctl.1 documents every option of fanoutctl --help" {
	check_options fanoutctl fanoutctl.1
}

@test "fanout-worker.8 documents every option of fanout-worker --help" {
	check_options fanout-worker fanout-worker.8
}

@test "fanout.conf.5 documents every key of src/conf.c and data/fanout.conf" {
	local page="$MAN/fanout.conf.5" conf_c="$FANOUT_SRCDIR/src/conf.c"
	local shipped="$FANOUT_SRCDIR/data/fanout.conf" keys key missing=""

	[ -f "$page" ] || fail "$page: missing"
	[ -f "$conf_c" ] || fail "$conf_c: missing"
	[ -f "$shipped" ] || fail "$shipped: missing"
	keys=$(conf_c_keys)
	[ -n "$keys" ] ||
	    fail "no table rows like '{ \"workers\", ...' in $conf_c"
	[ -n "$(shipped_keys)" ] || fail "no settings found in $shipped"
	keys=$(printf '%s\n%s\n' "$keys" "$(shipped_keys)" | sort -u)
	for key in $keys; do
		grep -qE "^\.It Ic $key([[:space:]]|\$)" "$page" ||
		    missing="$missing $key"
	done
	[ -z "$missing" ] || fail "fanout.conf.5 lacks .It Ic for:$missing"
}

@test "data/fanout.conf shows every key of src/conf.c and no other" {
	local conf_c="$FANOUT_SRCDIR/src/conf.c" keys shipped key missing=""

	[ -f "$conf_c" ] || fail "$conf_c: missing"
	keys=$(conf_c_keys)
	[ -n "$keys" ] ||
	    fail "no table rows like '{ \"workers\", ...' in $conf_c"
	shipped=$(shipped_keys)
	for key in $keys; do
		grep -qxF "$key" <<<"$shipped" || missing="$missing $key"
	done
	[ -z "$missing" ] || fail "data/fanout.conf lacks:$missing"
	# a key the loader does not know would be an error once uncommented
	for key in $shipped; do
		grep -qxF "$key" <<<"$keys" || missing="$missing $key"
	done
	[ -z "$missing" ] || fail "data/fanout.conf has unknown keys:$missing"
}

@test "fanoutctl.1 documents every command of fanoutctl --help" {
	local page="$MAN/fanoutctl.1" help cmds cmd missing=""

	[ -f "$page" ] || fail "$page: missing"
	help=$(help_of fanoutctl) || return 1
	cmds=$(commands_in_help "$help" | sort -u)
	[ -n "$cmds" ] || fail "no commands found in fanoutctl --help:" "$help"
	for cmd in $cmds; do
		grep -qE "(^|[[:space:]])Cm $cmd([[:space:]]|\$)" "$page" ||
		    missing="$missing $cmd"
	done
	[ -z "$missing" ] || fail "fanoutctl.1 lacks commands:$missing"
}

@test "fanout-remote-worker.8 documents every option and setting" {
	local page="$MAN/fanout-remote-worker.8" key missing=""

	check_options fanout-remote-worker fanout-remote-worker.8
	# src/rconf.c names its settings as strcmp(name, "key").
	for key in $(sed -nE 's/.*strcmp\(name, "([a-z_]+)"\).*/\1/p' \
	    "$FANOUT_SRCDIR/src/rconf.c"); do
		grep -qE "^\.It Ic .*\b$key\b" "$page" || missing+=" $key"
	done
	[ -z "$missing" ] || fail "fanout-remote-worker.8 lacks:$missing"
}
