/* SPDX-License-Identifier: MIT */
/*
 * nats.c's event-loop hooks on sd-event.  Every hook and connection
 * callback only records what it asks for (under nl->mu) and wakes the
 * loop; the loop thread alone touches sd-event sources and calls the owner.
 * A hook called on the loop thread itself applies the change at once, but
 * never calls the owner: nats.c holds its connection lock there.
 *
 * What nats.c buffers is written once per loop turn, by a defer source,
 * not by asking epoll whether the socket can take it: that was two
 * epoll_ctl calls and a wakeup for every message sent.  Only when the
 * socket is full does the source watch EPOLLOUT until nats.c has drained.
 *
 * Messages the owner is done with are destroyed in batches: nats.c hands
 * each destroyed message to its collector thread, and wakes that thread
 * for it when idle.  One by one, that was a wakeup and a fight over the
 * collector's lock for every message (perf: a fifth of fanoutd's cpu).
 *
 * The socket may be closed by a nats.c thread before the loop hears of it
 * (fixed upstream in 3.10, nats.c #814), and its number reused, by a
 * handler's pipe say: the source watches a duplicate of the socket, which
 * is ours to close, and each attach and detach bumps a generation that
 * retires it.  Input is processed only while the generation is current.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <nats/nats.h>
#include <systemd/sd-event.h>

#include "natsloop.h"

/* Messages held for one natsloop_release: so many, or their data so
 * large, or the first so old. */
#define HELD_MAX	256
#define HELD_BYTES_MAX	(1024 * 1024)
#define HELD_USEC	(1000 * 1000)

struct natsloop {
	sd_event	*ev;
	natsloop_fn	 fn;
	void		*arg;
	pthread_t	 loop_thread;
	int		 efd;
	sd_event_source	*efd_src;
	sd_event_source	*io_src;
	unsigned	 io_gen;	/* of io_src */
	natsConnection	*io_nc;		/* loop thread's copy */
	sd_event_source	*flush_src;	/* a write wanted: this turn */
	bool		 out_full;	/* the socket took only part of it */
	natsMsg		*held[HELD_MAX];	/* to destroy */
	size_t		 nheld, held_bytes;
	sd_event_source	*held_timer;

	pthread_mutex_t	 mu;		/* guards the fields below */
	natsConnection	*nc;
	int		 fd;		/* -1: detached */
	unsigned	 gen;
	uint32_t	 want;		/* EPOLLIN, EPOLLOUT */
	unsigned	 events;	/* pending, 1 << enum natsloop_event */
	natsStatus	 err;		/* of the last NL_ERROR */
};

static bool
on_loop(const struct natsloop *nl)
{
	return pthread_equal(pthread_self(), nl->loop_thread);
}

static int	on_io(sd_event_source *, int, uint32_t, void *);

/* The io source as the hooks last asked; loop thread only.  A write asked
 * for is the flush source's, unless the socket is full. */
static void
nl_apply_io(struct natsloop *nl)
{
	unsigned gen;
	uint32_t want;
	int fd, r;

	pthread_mutex_lock(&nl->mu);
	fd = nl->fd;
	gen = nl->gen;
	want = nl->want;
	nl->io_nc = nl->nc;
	/* Under the lock: a detach (which precedes a close) waits for it. */
	if (gen != nl->io_gen && fd >= 0)
		fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	pthread_mutex_unlock(&nl->mu);

	if (gen != nl->io_gen || !(want & EPOLLOUT))
		nl->out_full = false;
	if (!(want & EPOLLOUT))		/* written already: natsloop_send */
		(void)sd_event_source_set_enabled(nl->flush_src, SD_EVENT_OFF);
	else if (!nl->out_full) {
		(void)sd_event_source_set_enabled(nl->flush_src,
		    SD_EVENT_ONESHOT);
		want &= ~(uint32_t)EPOLLOUT;
	}
	if (gen != nl->io_gen || fd < 0) {
		nl->io_src = sd_event_source_disable_unref(nl->io_src);
		nl->io_gen = gen;
		if (fd < 0)
			return;
		if ((r = sd_event_add_io(nl->ev, &nl->io_src, fd, want, on_io,
		    nl)) < 0) {
			/* Cannot watch it: nats.c's pings find it dead. */
			close(fd);
			nl->io_src = NULL;
			return;
		}
		(void)sd_event_source_set_io_fd_own(nl->io_src, 1);
		(void)sd_event_source_set_description(nl->io_src, "nats");
		return;
	}
	if (nl->io_src != NULL)
		(void)sd_event_source_set_io_events(nl->io_src, want);
}

static void
nl_kick(struct natsloop *nl)
{
	uint64_t one = 1;

	if (on_loop(nl)) {
		nl_apply_io(nl);
		return;
	}
	/* EAGAIN: the counter is already non-zero, a wakeup is pending. */
	(void)write(nl->efd, &one, sizeof(one));
}

static void
nl_post(struct natsloop *nl, enum natsloop_event e, natsStatus err)
{
	uint64_t one = 1;

	pthread_mutex_lock(&nl->mu);
	nl->events |= 1u << e;
	if (e == NL_ERROR)
		nl->err = err;
	pthread_mutex_unlock(&nl->mu);
	(void)write(nl->efd, &one, sizeof(one));
}

static int
on_io(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct natsloop *nl = arg;
	natsConnection *nc = nl->io_nc;
	unsigned gen = nl->io_gen;

	(void)fd;
	pthread_mutex_lock(&nl->mu);
	if (nl->gen != gen) {
		/* Detached or attached anew since: this socket is done. */
		pthread_mutex_unlock(&nl->mu);
		nl_apply_io(nl);
		return 0;
	}
	pthread_mutex_unlock(&nl->mu);
	/* A hangup or error is read too: that is how nats.c notices. */
	if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
		natsConnection_ProcessReadEvent(nc);
	if ((revents & EPOLLOUT) && gen == nl->io_gen)
		natsConnection_ProcessWriteEvent(nc);
	/* Once nats.c has given this socket up (it reconnects on a new one,
	 * or is closed), our copy stays readable, at end of file, for ever:
	 * watch it no more.  The next attach brings a new source. */
	switch (natsConnection_Status(nc)) {
	case NATS_CONN_STATUS_DISCONNECTED:
	case NATS_CONN_STATUS_RECONNECTING:
	case NATS_CONN_STATUS_CLOSED:
		if (gen == nl->io_gen && nl->io_src == s)
			(void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
		break;
	default:
		break;
	}
	nl->fn(nl->arg, NL_INPUT, NATS_OK);
	return 0;
}

static int
on_flush(sd_event_source *s, void *arg)
{
	(void)s;
	natsloop_send(arg);
	return 0;
}

void
natsloop_send(struct natsloop *nl)
{
	unsigned gen = nl->io_gen;
	bool current, wanted;

	pthread_mutex_lock(&nl->mu);
	current = nl->gen == gen && nl->fd >= 0 && nl->io_src != NULL;
	/* Only when nats.c wants to write: with nothing buffered, it takes
	 * the write event for a dead socket. */
	wanted = (nl->want & EPOLLOUT) != 0;
	pthread_mutex_unlock(&nl->mu);
	if (!current) {
		nl_apply_io(nl);
		return;
	}
	if (!wanted)
		return;
	natsConnection_ProcessWriteEvent(nl->io_nc);
	/* Drained, nats.c has withdrawn its wish (nl_apply_io ran); if not,
	 * epoll says when the socket has room again. */
	if (gen == nl->io_gen && natsConnection_Buffered(nl->io_nc) > 0) {
		nl->out_full = true;
		nl_apply_io(nl);
	}
}

void
natsloop_dispose(struct natsloop *nl, natsMsg *m)
{
	size_t len;

	if (m == NULL)
		return;
	len = (size_t)natsMsg_GetDataLength(m);
	if (nl->nheld == HELD_MAX || nl->held_bytes + len > HELD_BYTES_MAX)
		natsloop_release(nl);
	if (len > HELD_BYTES_MAX) {
		natsMsg_Destroy(m);
		return;
	}
	if (nl->nheld == 0) {
		(void)sd_event_source_set_time_relative(nl->held_timer,
		    HELD_USEC);
		(void)sd_event_source_set_enabled(nl->held_timer,
		    SD_EVENT_ONESHOT);
	}
	nl->held[nl->nheld++] = m;
	nl->held_bytes += len;
}

void
natsloop_release(struct natsloop *nl)
{
	while (nl->nheld > 0)
		natsMsg_Destroy(nl->held[--nl->nheld]);
	nl->held_bytes = 0;
	(void)sd_event_source_set_enabled(nl->held_timer, SD_EVENT_OFF);
}

static int
on_held_timer(sd_event_source *s, uint64_t usec, void *arg)
{
	(void)s;
	(void)usec;
	natsloop_release(arg);
	return 0;
}

static int
on_wake(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct natsloop *nl = arg;
	unsigned events, e;
	natsStatus err;
	uint64_t n;

	(void)s;
	(void)revents;
	(void)read(fd, &n, sizeof(n));
	nl_apply_io(nl);
	pthread_mutex_lock(&nl->mu);
	events = nl->events;
	err = nl->err;
	nl->events = 0;
	pthread_mutex_unlock(&nl->mu);
	for (e = 0; e <= NL_ERROR; e++)
		if (events & (1u << e))
			nl->fn(nl->arg, (enum natsloop_event)e,
			    e == NL_ERROR ? err : NATS_OK);
	return 0;
}

/* The hooks.  loop is the struct natsloop given to SetEventLoop. */

static natsStatus
hook_attach(void **userData, void *loop, natsConnection *nc, natsSock fd)
{
	struct natsloop *nl = loop;

	*userData = nl;
	pthread_mutex_lock(&nl->mu);
	nl->nc = nc;
	nl->fd = fd;
	nl->gen++;
	nl->want = EPOLLIN;
	pthread_mutex_unlock(&nl->mu);
	nl_kick(nl);
	return NATS_OK;
}

static natsStatus
hook_events(struct natsloop *nl, uint32_t ev, bool add)
{
	pthread_mutex_lock(&nl->mu);
	if (add)
		nl->want |= ev;
	else
		nl->want &= ~ev;
	pthread_mutex_unlock(&nl->mu);
	nl_kick(nl);
	return NATS_OK;
}

static natsStatus
hook_read(void *userData, bool add)
{
	return hook_events(userData, EPOLLIN, add);
}

static natsStatus
hook_write(void *userData, bool add)
{
	return hook_events(userData, EPOLLOUT, add);
}

static natsStatus
hook_detach(void *userData)
{
	struct natsloop *nl = userData;

	pthread_mutex_lock(&nl->mu);
	nl->fd = -1;
	nl->gen++;
	nl->want = 0;
	pthread_mutex_unlock(&nl->mu);
	nl_kick(nl);
	return NATS_OK;
}

static void
cb_reconnected(natsConnection *nc, void *arg)
{
	(void)nc;
	nl_post(arg, NL_CONNECTED, NATS_OK);
}

static void
cb_disconnected(natsConnection *nc, void *arg)
{
	(void)nc;
	nl_post(arg, NL_DISCONNECTED, NATS_OK);
}

static void
cb_closed(natsConnection *nc, void *arg)
{
	(void)nc;
	nl_post(arg, NL_CLOSED, NATS_OK);
}

static void
cb_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
	(void)nc;
	(void)sub;
	nl_post(arg, NL_ERROR, err);
}

int
natsloop_new(sd_event *ev, natsloop_fn fn, void *arg, struct natsloop **out)
{
	struct natsloop *nl;
	int r;

	if ((nl = calloc(1, sizeof(*nl))) == NULL)
		return -ENOMEM;
	nl->ev = sd_event_ref(ev);
	nl->fn = fn;
	nl->arg = arg;
	nl->fd = -1;
	nl->loop_thread = pthread_self();
	pthread_mutex_init(&nl->mu, NULL);
	if ((nl->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1) {
		r = -errno;
		natsloop_free(nl);
		return r;
	}
	if ((r = sd_event_add_io(ev, &nl->efd_src, nl->efd, EPOLLIN, on_wake,
	    nl)) < 0 ||
	    (r = sd_event_add_defer(ev, &nl->flush_src, on_flush, nl)) < 0 ||
	    (r = sd_event_source_set_enabled(nl->flush_src, SD_EVENT_OFF)) <
	    0 ||
	    (r = sd_event_add_time_relative(ev, &nl->held_timer,
	    CLOCK_MONOTONIC, HELD_USEC, HELD_USEC / 10, on_held_timer, nl)) <
	    0 ||
	    (r = sd_event_source_set_enabled(nl->held_timer, SD_EVENT_OFF)) <
	    0) {
		natsloop_free(nl);
		return r;
	}
	(void)sd_event_source_set_description(nl->flush_src, "nats-flush");
	*out = nl;
	return 0;
}

natsStatus
natsloop_options_new(const struct natsloop_conf *c, natsOptions **out)
{
	const char **servers;
	natsOptions *o;
	natsStatus s;
	int n;

	/* nats.c wants const char **; ours are char *. */
	for (n = 0; c->servers[n] != NULL; n++)
		;
	if ((servers = calloc((size_t)n + 1, sizeof(*servers))) == NULL)
		return NATS_NO_MEMORY;
	for (n = 0; c->servers[n] != NULL; n++)
		servers[n] = c->servers[n];
	if ((s = natsOptions_Create(&o)) != NATS_OK) {
		free(servers);
		return s;
	}
	if ((s = natsOptions_SetServers(o, servers, n)) != NATS_OK ||
	    (s = natsOptions_SetName(o, c->name)) != NATS_OK ||
	    (c->inbox_prefix != NULL &&
	    (s = natsOptions_SetCustomInboxPrefix(o, c->inbox_prefix)) !=
	    NATS_OK) ||
	    (s = natsOptions_SetMaxReconnect(o, -1)) != NATS_OK ||
	    (s = natsOptions_SetReconnectWait(o, 500)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(o, c->timeout_ms)) != NATS_OK)
		goto out;
	if (c->ca != NULL &&
	    ((s = natsOptions_SetSecure(o, true)) != NATS_OK ||
	    (s = natsOptions_LoadCATrustedCertificates(o, c->ca)) != NATS_OK))
		goto out;
	if (c->cert != NULL && (s = natsOptions_LoadCertificatesChain(o,
	    c->cert, c->key)) != NATS_OK)
		goto out;
out:
	free(servers);
	if (s != NATS_OK)
		natsOptions_Destroy(o);
	else
		*out = o;
	return s;
}

natsStatus
natsloop_options(struct natsloop *nl, natsOptions *opts)
{
	natsStatus s;

	if ((s = natsOptions_SetEventLoop(opts, nl, hook_attach, hook_read,
	    hook_write, hook_detach)) != NATS_OK ||
	    (s = natsOptions_SetReconnectedCB(opts, cb_reconnected, nl)) !=
	    NATS_OK ||
	    (s = natsOptions_SetDisconnectedCB(opts, cb_disconnected, nl)) !=
	    NATS_OK ||
	    (s = natsOptions_SetClosedCB(opts, cb_closed, nl)) != NATS_OK ||
	    (s = natsOptions_SetRetryOnFailedConnect(opts, true,
	    cb_reconnected, nl)) != NATS_OK)
		return s;
	return natsOptions_SetErrorHandler(opts, cb_error, nl);
}

int
natsloop_flush(struct natsloop *nl, int ms)
{
	struct pollfd pfd = { .events = POLLOUT };
	int64_t end = nats_Now() + ms;

	nl_apply_io(nl);
	if (nl->io_nc == NULL)
		return -ENOTCONN;
	while (natsConnection_Buffered(nl->io_nc) > 0) {
		int64_t left = end - nats_Now();

		if (nl->io_src == NULL)
			return -ENOTCONN;
		pfd.fd = sd_event_source_get_io_fd(nl->io_src);
		/* ms = 0: what the socket takes now, without waiting. */
		if (poll(&pfd, 1, left > 0 ? (int)left : 0) <= 0)
			return -ETIMEDOUT;
		natsConnection_ProcessWriteEvent(nl->io_nc);
	}
	return 0;
}

void
natsloop_free(struct natsloop *nl)
{
	if (nl == NULL)
		return;
	nl->io_src = sd_event_source_disable_unref(nl->io_src);
	nl->efd_src = sd_event_source_disable_unref(nl->efd_src);
	nl->flush_src = sd_event_source_disable_unref(nl->flush_src);
	nl->held_timer = sd_event_source_disable_unref(nl->held_timer);
	if (nl->efd >= 0)
		close(nl->efd);
	pthread_mutex_destroy(&nl->mu);
	sd_event_unref(nl->ev);
	free(nl);
}

natsStatus
natsloop_next(natsSubscription *sub, natsMsg **m)
{
	int msgs = 0, bytes;

	if (natsSubscription_GetPending(sub, &msgs, &bytes) != NATS_OK ||
	    msgs <= 0)
		return NATS_TIMEOUT;
	return natsSubscription_NextMsg(m, sub, 0);
}
