/* SPDX-License-Identifier: MIT */
/*
 * The sd_notify readiness protocol in both directions: telling our own
 * supervisor (systemd, or fanoutd for a worker) and, in fanoutd, hearing
 * from the workers on a socket of each worker's own.
 */
#ifndef FANOUT_NOTIFY_H
#define FANOUT_NOTIFY_H

#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>

#define NOTIFY_STATUS_MAX	256
#define NOTIFY_DGRAM_MAX	4096	/* longer datagrams are truncated */

struct notify_msg {
	pid_t		 pid;		/* sender, from SCM_CREDENTIALS */
	bool		 ready;		/* READY=1 */
	bool		 stopping;	/* STOPPING=1 */
	int		 errnum;	/* ERRNO=, 0 if absent */
	char		 status[NOTIFY_STATUS_MAX];	/* STATUS=, "" if absent */
};

/* To our supervisor; no-ops without NOTIFY_SOCKET. */
void	notify_ready(const char *status);
void	notify_status(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
void	notify_stopping(void);
void	notify_reloading(void);
void	notify_failure(int errnum, const char *status);

/* Room for a NOTIFY_SOCKET value: "@" and a sun_path, with its NUL. */
#define NOTIFY_NAME_MAX	108

/* A datagram socket on an autobound abstract address; name gets the
 * NOTIFY_SOCKET value ("@..."). Returns the fd or -errno. */
int	notify_listen(char *name, size_t namelen);
/* One datagram: 0, -EAGAIN when none is queued, -EBADMSG without
 * credentials, or -errno. */
int	notify_recv(int fd, struct notify_msg *);
/* Parses "KEY=VALUE\n..." lines; unknown keys are ignored. */
void	notify_parse(const char *buf, size_t len, struct notify_msg *);

#endif /* FANOUT_NOTIFY_H */
