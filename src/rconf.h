/* SPDX-License-Identifier: MIT */
/*
 * A remote worker's configuration file (fanout-remote-worker(8)): the
 * broker, the worker's TLS identity, the names in the broker, and the same
 * handler settings as fanout.conf(5).  libconfig in, a plain struct out.
 */
#ifndef FANOUT_RCONF_H
#define FANOUT_RCONF_H

#include <stdint.h>
#include <stdio.h>

#define RCONF_SERVERS_MAX	16
#define RCONF_URL_MAX		255
#define RCONF_TOKEN_MAX		64	/* prefix, stream, worker name */

struct rconf {
	char		**servers;	/* NULL ended */
	char		*tls_ca;	/* NULL: no TLS unless a URL says */
	char		*tls_cert;
	char		*tls_key;	/* absolute, or a credential's name */
	char		*prefix;
	char		*stream;
	char		**handler;	/* argv, NULL ended; NULL: none */
	uint32_t	 handler_mode;	/* enum handler_mode (conf.h) */
	uint32_t	 handler_framing;
	uint32_t	 handler_timeout_ms;
	uint32_t	 max_message_bytes;
};

/* 0, or -1 after writing "file:line: setting: problem" lines to errs. */
int	rconf_load(const char *path, struct rconf *, FILE *errs);
void	rconf_free(struct rconf *);
/* A worker, stream or prefix name: 1 to RCONF_TOKEN_MAX bytes of letters,
 * digits, '-' and '_' (a prefix may also hold '.' between tokens).  0, or
 * -1 with why set. */
int	rconf_check_name(const char *, int dots, const char **why);

#endif /* FANOUT_RCONF_H */
