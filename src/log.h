/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr, the OpenBSD log.h API; journald priorities under
 * systemd.  The policy (fanoutd(8), LOGGING):
 *	err	the program stops: startup and configuration errors, fatal*
 *	warning	something failed: a worker that died unasked, a restart that
 *		failed, bad input from outside (rate-limited)
 *	notice	a state change: ready, degraded over, stopping; a worker up
 *		again, in backoff, restarted; acks that did not come in time
 *	info	expected events: a signal received, a worker that exited
 *		when told to
 *	debug	-v: the daemon's events in detail; -vv: a line per message
 */
#ifndef FANOUT_LOG_H
#define FANOUT_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

/* Verbosity: what -v and -vv ask for. */
#define LOG_V_EVENTS	1	/* log_debug */
#define LOG_V_MESSAGES	2	/* log_trace too: per-message lines */

/* name prefixes every line on a terminal or in a file. */
void	log_init(const char *name, int verbose);
void	log_setverbose(int);
int	log_getverbose(void);
void	logit(int pri, const char *, ...) __attribute__((format(printf, 2, 3)));
void	log_err(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_errx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_notice(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_trace(const char *, ...) __attribute__((format(printf, 1, 2)));
/* Each line of text as it is, without the name: lines that say where they
 * come from ("FILE:LINE: ..."), such as configuration errors. */
void	log_lines(int pri, const char *text);
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/*
 * Rate limiting, for messages that someone outside can cause at will: at
 * most LOG_LIMIT_BURST lines of one kind per window of LOG_LIMIT_WINDOW_MS,
 * then, once the window is over, one line with the number suppressed.  No
 * allocation; check before formatting:
 *
 *	static struct log_limit ll = LOG_LIMIT_INIT(LOG_WARNING, "bad frames");
 *
 *	if (log_limit(&ll))
 *		log_warnx("...", ...);
 */
#define LOG_LIMIT_BURST		10
#define LOG_LIMIT_WINDOW_MS	10000

struct log_limit {
	int		 pri;		/* of the "suppressed" line */
	const char	*what;		/* the kind, in that line */
	uint64_t	 start_usec;	/* of the window; 0: none open */
	unsigned	 n;		/* lines let through in the window */
	unsigned	 suppressed;	/* and held back */
	bool		 listed;
	struct log_limit *next;		/* the limits that have been used */
};
#define LOG_LIMIT_INIT(pri, what)	{ (pri), (what), 0, 0, 0, false, NULL }

/* true: log the message. */
bool	log_limit(struct log_limit *);
/* Reports what was suppressed in the windows that are over (all: in every
 * window, at exit).  Call it now and then, from a timer. */
void	log_limit_flush(bool all);

#endif /* FANOUT_LOG_H */
