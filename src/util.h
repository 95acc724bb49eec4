/* SPDX-License-Identifier: MIT */
/* Small helpers with no better home: bounded number parsing, clocks. */
#ifndef FANOUT_UTIL_H
#define FANOUT_UTIL_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>

#define nitems(a)	(sizeof(a) / sizeof((a)[0]))
/* "1 byte", "2 bytes": printf("%u byte%s", n, PLURAL(n)) */
#define PLURAL(n)	((n) == 1 ? "" : "s")

/* Parses a whole decimal string into [min, max]: 0, or -EINVAL/-ERANGE. */
int		 parse_uint(const char *, uint64_t min, uint64_t max,
		    uint64_t *);
/* v in decimal at p, not terminated; returns the end.  For text made once
 * a message, where snprintf showed in perf (frame.h's put_u64 is
 * binary). */
char		*put_decimal(char *p, uint64_t v);
/* CLOCK_MONOTONIC in microseconds. */
uint64_t	 now_usec(void);
/* Milliseconds from since to now, at least 1: 0 is kept for "none". */
uint64_t	 age_ms(uint64_t now, uint64_t since);
/* Escapes bytes for a log line: printable ASCII kept, the rest as \xNN. */
void		 str_escape(char *out, size_t outlen, const void *in,
		    size_t inlen);
/* A file a configuration names (a TLS key): the path itself if absolute,
 * else the credential of that name in $CREDENTIALS_DIRECTORY (systemd's
 * LoadCredential=); NULL if there is no such directory, or no memory.
 * The caller frees it. */
char		*credential_path(const char *);
/* Frees a NULL-ended list of strings (an argv, a list setting) and the
 * strings in it; NULL is no list. */
void		 strv_free(char **);

/*
 * Signals whose default action would end or stop a process, that no one
 * may send it on purpose and that fanoutd and its workers give no meaning:
 * SIGUSR1, SIGUSR2, the timers', SIGIO, SIGPWR, SIGSTKFLT, the terminal
 * stops, SIGXCPU, SIGXFSZ and the real-time signals.  Each program blocks
 * them and reads them through sd-event, so that one sent by mistake is
 * logged and changes nothing.  Blocked, not SIG_IGN: a child undoes a
 * blocked mask, while an ignored signal would stay ignored across exec.
 * Not here: SIGQUIT (a core dump asked for) and the faults (SIGSEGV...).
 * Adds them to set; returns how many there are, at most SIG_STRAY_MAX.
 */
#define SIG_STRAY_MAX	64
size_t		 sig_stray(sigset_t *set, int sigs[SIG_STRAY_MAX]);
/* Sets each signal in set back to SIG_DFL: one ignored by whoever started
 * the program (nohup ignores SIGHUP) would never reach a signalfd. */
void		 sig_default(const sigset_t *set);
/* What fanoutd and both workers do first, before they fork or start a
 * thread (either inherits the mask): SIGTERM, SIGINT, SIGHUP, SIGCHLD and
 * the stray signals set back to SIG_DFL (sig_default) and blocked, for
 * sd-event to read; SIGPIPE ignored.  Fills stray as sig_stray does, and
 * set, unless NULL, with what it blocked.  Returns how many stray signals
 * there are, or a negative errno. */
int		 sig_setup(sigset_t *set, int stray[SIG_STRAY_MAX]);
/* Opens /dev/null on each of descriptors 0, 1 and 2 that is closed, so
 * that no socket or pipe opened later becomes one of them.  Returns a mask
 * of those that were closed (1 << fd), or -1 if one could not be opened. */
int		 std_fds_open(void);
/* Blocking I/O of a whole buffer, through EINTR and short counts: for the
 * few descriptors that are not on the event loop.  read_all returns the
 * bytes read (fewer at end of file) or -1; write_all 0 or -1 (errno). */
ssize_t		 read_all(int fd, void *, size_t);
int		 write_all(int fd, const void *, size_t);

#endif /* FANOUT_UTIL_H */
