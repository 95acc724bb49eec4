/* SPDX-License-Identifier: MIT */
/* Logging to stderr, the OpenBSD log.h API; journald priorities under systemd. */
#ifndef FANOUT_LOG_H
#define FANOUT_LOG_H

#include <stdarg.h>

/* name prefixes every line; verbose > 0 enables log_debug. */
void	log_init(const char *name, int verbose);
void	log_setverbose(int);
int	log_getverbose(void);
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif /* FANOUT_LOG_H */
