/* SPDX-License-Identifier: MIT */
/*
 * A worker's handler: the program that does the work for each message,
 * either one process per message (exec) or one long-running process fed
 * through a pipe.  Messages go in with handler_submit; their results come
 * out through the done callback, one per message, in the order submitted.
 */
#ifndef FANOUT_HANDLER_H
#define FANOUT_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "conf.h"

/* Messages a pipe handler may have written and not yet answered. */
#define HANDLER_PIPE_WINDOW	64
/* Longest answer line a pipe handler may write. */
#define HANDLER_ANSWER_MAX	4096

struct handler_conf {
	char	*const *argv;		/* the program and its arguments */
	enum handler_mode mode;
	enum handler_framing framing;
	uint32_t timeout_ms;		/* per message */
	uint32_t restart_max_ms;	/* pipe: longest restart delay */
	uint32_t index;			/* the worker's, for the environment */
	uint16_t port;
};

struct handler;

/* A message's result: status is enum handler_status (proto.h); reason is
 * the handler's own words for a failure, reason_len bytes, no NUL. */
typedef void	(*handler_done_fn)(void *arg, uint64_t id, uint32_t status,
		    const char *reason, size_t reason_len);
/* Draining is over: nothing runs any more. */
typedef void	(*handler_idle_fn)(void *arg);

int	handler_new(sd_event *, const struct handler_conf *,
	    handler_done_fn, void *arg, struct handler **);
/* Takes a copy of the message: 0, or -ENOMEM.  It waits for
 * handler_start, so that a batch leaves in one write. */
int	handler_submit(struct handler *, uint64_t id, const uint8_t *data,
	    size_t len);
/* Starts what was submitted, as far as the handler can take it. */
void	handler_start(struct handler *);
/* Bytes of the messages taken and not yet answered. */
size_t	handler_pending_bytes(const struct handler *);
/* Stop taking messages: drop those not started, let the running ones
 * finish (each within the timeout), end the pipe handler, then call idle. */
void	handler_drain(struct handler *, handler_idle_fn);
void	handler_free(struct handler *);

#endif /* FANOUT_HANDLER_H */
