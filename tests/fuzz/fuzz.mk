# The libFuzzer harnesses (README in fuzz.h's directory: see the top of
# each fuzz_*.c).  Not an automake file: tests/Makefile.am's "fuzz" and
# "fuzz-build" targets run it with the paths and flags of the configured
# tree, and with FUZZ_CC, the clang that configure found.  A gcc build never
# needs clang; "make fuzz" without one says so and fails.
#
#   make fuzz                                  each harness FUZZ_SECONDS
#   make fuzz FUZZ_SECONDS=10 FUZZ_TARGETS='frame conf'
#   make fuzz-build                            build only
#
# In tests/fuzz-out/ of the build tree: the programs, NAME.log, corpus/NAME
# (inputs the runs found, beyond the committed seeds in corpus/NAME of the
# source tree) and NAME-crash-*, -leak-*, -timeout-* for what failed.
# Replay one: tests/fuzz-out/fuzz_NAME tests/fuzz-out/NAME-crash-...

FUZZ_SECONDS = 60
FUZZ_TARGETS = frame ctl auth notify conf
FUZZ_CC = clang
out = fuzz-out
F = $(srcdir)/fuzz
S = $(top_srcdir)/src

# ASan, UBSan with every report fatal, and libFuzzer's coverage and main.
FUZZ_CFLAGS = -std=gnu11 -g -O1 -Wall -Wextra -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-I$(top_builddir) -I$(S) $(DEFS_FUZZ)
DEFS_FUZZ = -DSYSCONFDIR='"/etc"' -DRUNSTATEDIR='"/run"' \
	-DPKGLIBEXECDIR='"/usr/libexec/fanout"'

build: $(FUZZ_TARGETS:%=$(out)/fuzz_%)

run: build
	@fail=0; for t in $(FUZZ_TARGETS); do \
		$(SHELL) $(F)/run-harness $(out) $$t $(F) $(FUZZ_SECONDS) \
		    || fail=1; \
	done; exit $$fail

$(out)/.dir:
	@test -n "$(FUZZ_CC)" || { echo "make fuzz: needs clang" \
	    "(apt-get install clang libclang-rt-14-dev)," \
	    "then configure again" >&2; exit 1; }
	@mkdir -p $(out) && touch $@

HDRS = $(F)/fuzz.h $(S)/proto.h $(S)/frame.h $(top_builddir)/config.h

$(out)/fuzz_frame: $(out)/.dir $(F)/fuzz_frame.c $(S)/frame.c $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(F)/fuzz_frame.c

$(out)/fuzz_ctl: $(out)/.dir $(F)/fuzz_ctl.c $(S)/frame.c $(S)/payload.c \
		$(S)/payload.h $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(F)/fuzz_ctl.c $(S)/frame.c \
	    $(S)/payload.c

$(out)/fuzz_auth: $(out)/.dir $(F)/fuzz_auth.c $(S)/frame.c $(S)/auth.c \
		$(S)/auth.h $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(SODIUM_CFLAGS) -o $@ $(F)/fuzz_auth.c \
	    $(S)/frame.c $(S)/auth.c $(SODIUM_LIBS)

$(out)/fuzz_notify: $(out)/.dir $(F)/fuzz_notify.c $(S)/notify.c \
		$(S)/notify.h $(S)/util.c $(S)/util.h $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(LIBSYSTEMD_CFLAGS) -o $@ \
	    $(F)/fuzz_notify.c $(S)/notify.c $(S)/util.c $(LIBSYSTEMD_LIBS)

$(out)/fuzz_conf: $(out)/.dir $(F)/fuzz_conf.c $(S)/conf.c $(S)/conf.h \
		$(S)/rconf.c $(S)/rconf.h $(S)/sock.c $(S)/sock.h $(S)/util.c \
		$(S)/util.h $(HDRS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(LIBCONFIG_CFLAGS) -o $@ $(F)/fuzz_conf.c \
	    $(S)/conf.c $(S)/rconf.c $(S)/sock.c $(S)/util.c $(LIBCONFIG_LIBS)

.PHONY: build run
