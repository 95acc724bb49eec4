/* SPDX-License-Identifier: MIT */
/*
 * Drives one nats.c connection from an sd-event loop, through nats.c's
 * event-loop hooks (natsOptions_SetEventLoop).  nats.c calls those hooks
 * from the loop thread and from its own threads (reconnect, flusher,
 * pings); what a hook asks for is recorded under a mutex and applied on the
 * loop thread, woken through an eventfd.  The connection's state changes
 * (connected again, disconnected, closed, asynchronous errors) reach the
 * owner the same way, on the loop thread, through one callback.
 *
 * It also makes the options that fanoutd and fanout-remote-worker connect
 * with.  Not here: what is published or subscribed.  The owner must not make a
 * blocking nats.c call (Flush, Request, js_*) on the loop thread: nothing
 * reads the socket while it waits, and the call times out.
 */
#ifndef FANOUT_NATSLOOP_H
#define FANOUT_NATSLOOP_H

#include <stdint.h>

#include <nats/nats.h>
#include <systemd/sd-event.h>

enum natsloop_event {
	NL_INPUT,		/* input was processed: drain subscriptions */
	NL_CONNECTED,		/* connected late, or reconnected */
	NL_DISCONNECTED,	/* lost the server; nats.c reconnects */
	NL_CLOSED,		/* for good */
	NL_ERROR,		/* an asynchronous error: status */
};

struct natsloop;

/* A connection to the broker, as natsloop_options_new makes it. */
struct natsloop_conf {
	char *const	*servers;	/* URLs, NULL ended */
	const char	*name;		/* shown by the broker */
	const char	*inbox_prefix;	/* NULL: nats.c's */
	int64_t		 timeout_ms;	/* for a connect */
	const char	*ca;		/* NULL: no TLS */
	const char	*cert, *key;	/* NULL: no client certificate */
};

typedef void	(*natsloop_fn)(void *arg, enum natsloop_event,
		    natsStatus status);

int		natsloop_new(sd_event *, natsloop_fn, void *arg,
		    struct natsloop **);
/* The next message a synchronous subscription holds, without waiting:
 * NATS_OK, or NATS_TIMEOUT when there is none.  Unlike NextMsg with no
 * timeout, an empty queue costs no error record: drained every turn. */
natsStatus	natsloop_next(natsSubscription *, natsMsg **);
/* Options for c's connection, reconnecting for ever every 500 ms; the
 * caller destroys *out.  Blocking calls may use them as they are. */
natsStatus	natsloop_options_new(const struct natsloop_conf *c,
		    natsOptions **out);
/* Sets the event-loop hooks and the connection callbacks on opts, and
 * retries a failed first connect in the background (NL_CONNECTED when it
 * succeeds); call before natsConnection_Connect. */
natsStatus	natsloop_options(struct natsloop *, natsOptions *);
/* Destroys a message the owner is done with, later and together with
 * others (nats.c frees each destroyed message on a collector thread of its
 * own, which it wakes for one alone): when enough are held, or a second
 * after the first.  NULL is nothing. */
void		natsloop_dispose(struct natsloop *, natsMsg *);
/* Destroys the messages held now: before nats_CloseAndWait. */
void		natsloop_release(struct natsloop *);
/* On the loop thread: writes what nats.c has buffered, as far as the
 * socket takes it now, without waiting for the end of the loop's turn
 * (where it would be written anyway); the rest goes when there is room. */
void		natsloop_send(struct natsloop *);
/* On the loop thread, or once the loop has stopped: writes what nats.c
 * has buffered, waiting at most ms for the socket (0: what it takes now).
 * 0, or -ETIMEDOUT, -ENOTCONN. */
int		natsloop_flush(struct natsloop *, int ms);
/* After natsConnection_Destroy, natsloop_release and nats_CloseAndWait: no
 * nats.c thread may call a hook any more. */
void		natsloop_free(struct natsloop *);

#endif /* FANOUT_NATSLOOP_H */
