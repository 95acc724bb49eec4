/* SPDX-License-Identifier: MIT */
/*
 * The TCP link to a worker: non-blocking connect, the handshake that proves
 * it is our worker (auth.c), writing the worker's queue with writev, and
 * the acks coming back in order.  It reports what
 * happens through pool_link_up, pool_link_lost and bcast_acked; the queue
 * and the process are not its business.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/uio.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fanoutd.h"
#include "log.h"
#include "sock.h"
#include "util.h"

#define PEER_IOV_MAX	64	/* pieces per writev */
#define PEER_MSGS_MAX	1024	/* messages per writev */
/* Frames up to this size are copied together into one piece: the kernel
 * pays ~100 ns for each iovec it copies from, memcpy ~10 ns for 80 bytes.
 * Longer ones are written from where they are. */
#define PEER_COPY_MAX	512
#define PEER_STAGE_BYTES (64 * 1024)
#define PEER_EVENTS_MAX	256	/* links handled per turn of the loop */

/*
 * The links live in an epoll set of their own, one source of sd-event's:
 * sd-event dispatches one source per turn and calls epoll_wait at every
 * turn, so a burst of acks from N workers cost N turns.  Here one turn
 * takes every link that is ready.  A link closed while a batch is being
 * handled is struck from what is left of it (tcp_close).
 */
static struct epoll_event batch[PEER_EVENTS_MAX];
static int batch_n, batch_i;

static void	tcp_event(struct worker *, uint32_t);

/* A change to the links' epoll set, which sd-event holds for fanoutd. */
static int
links_ctl(struct worker *w, int op, int fd, uint32_t events)
{
	struct epoll_event e = { .events = events, .data.ptr = w };

	if (epoll_ctl(sd_event_source_get_io_fd(w->d->links_src), op, fd,
	    &e) == -1)
		return -errno;
	return 0;
}

/*
 * Edge-triggered: a link is reported once for what arrived, not at every
 * epoll_wait while it waits its turn.  tcp_read reads until a short read or
 * EAGAIN, tcp_flush writes until EAGAIN, so no edge is missed.  Level-
 * triggered, every epoll_wait polled and copied out again every link still
 * ready: 17% of the daemon's CPU at 64 workers.  The events are set only
 * when they change, not at every write.
 */
static void
tcp_set_events(struct worker *w)
{
	uint32_t ev = EPOLLIN | EPOLLET;

	if (w->state == W_UP && !w->draining && w->q.nsent < w->q.n)
		ev |= EPOLLOUT;
	if (ev != w->link.events &&
	    links_ctl(w, EPOLL_CTL_MOD, w->link.fd, ev) == 0)
		w->link.events = ev;
}

static int
on_links(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	(void)s;
	(void)revents;
	(void)arg;
	do
		batch_n = epoll_wait(fd, batch, PEER_EVENTS_MAX, 0);
	while (batch_n == -1 && errno == EINTR);
	for (batch_i = 0; batch_i < batch_n; batch_i++)
		if (batch[batch_i].data.ptr != NULL)
			tcp_event(batch[batch_i].data.ptr,
			    batch[batch_i].events);
	batch_n = 0;
	return 0;
}

static int
links_open(struct fanoutd *d)
{
	int fd, r;

	if (d->links_src != NULL)
		return 0;
	if ((fd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		return -errno;
	if ((r = sd_event_add_io(d->ev, &d->links_src, fd, EPOLLIN, on_links,
	    d)) < 0) {
		close(fd);
		return r;
	}
	(void)sd_event_source_set_io_fd_own(d->links_src, true);
	return 0;
}

void
peer_free(struct fanoutd *d)
{
	/* Owned: unref closes the epoll set too. */
	d->links_src = sd_event_source_disable_unref(d->links_src);
}

/* The worker acknowledged message id: it must be the oldest one sent. */
static int
tcp_ack(struct worker *w, const struct frame_hdr *h, const uint8_t *p)
{
	struct msg_ack ack;

	if (msg_ack_decode(p, h->len, &ack) < 0 ||
	    h->len - MSG_ACK_LEN > FANOUT_REASON_MAX)
		return -EBADMSG;
	if (w->q.nsent == 0 || queue_at(&w->q, 0)->id != h->id)
		return -ENOENT;
	bcast_acked(w, ack.status, p + MSG_ACK_LEN, h->len - MSG_ACK_LEN);
	return 0;
}

static void
tcp_lost(struct worker *w, const char *why)
{
	w->link.ops->close(w, false);
	pool_link_lost(w, why);
}

/* A handshake frame, on a socket that has nothing else queued: all of it
 * fits in an empty send buffer, so a short write is a broken link. */
static int
tcp_write_auth(struct worker *w, const uint8_t *frame, size_t len)
{
	ssize_t n;

	do
		n = write(w->link.fd, frame, len);
	while (n == -1 && errno == EINTR);
	if (n == (ssize_t)len)
		return 0;
	return n == -1 ? -errno : -EIO;
}

/* A frame that arrived before the worker proved itself: it must be its
 * challenge with the right proof; then ours goes out and the link is up. */
static int
tcp_auth(struct worker *w, const struct frame_hdr *h, const uint8_t *p)
{
	struct link *l = &w->link;
	uint8_t out[AUTH_FRAME_MAX];
	char why[160];
	ssize_t n;
	int r;

	if ((n = auth_daemon_recv(&l->auth, h, p, out)) < 0) {
		snprintf(why, sizeof(why), "failed the handshake: %s (type "
		    "%u, %u byte%s); is it this fanoutd's worker?",
		    auth_strerror((int)n), h->type, h->len, PLURAL(h->len));
		tcp_lost(w, why);
		return -1;
	}
	if ((r = tcp_write_auth(w, out, (size_t)n)) < 0) {
		snprintf(why, sizeof(why), "link lost: %s", strerror(-r));
		tcp_lost(w, why);
		return -1;
	}
	/* Its key has done its work on this link. */
	auth_clear(&l->auth);
	l->auth.state = AUTH_DONE;
	pool_link_up(w);
	return l->fd < 0 ? -1 : 0;
}

/*
 * Reads and handles what the worker sent: 0, or -1 once the link is lost.
 * When draining (the process is gone) its end is no news.
 */
static int
tcp_read(struct worker *w, bool draining)
{
	struct link *l = &w->link;
	struct frame_hdr h;
	const uint8_t *p;
	char why[128];
	ssize_t n;
	int r;

	for (;;) {
		n = rbuf_read(&l->in, l->fd);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0 && draining)
			return -1;
		if (n <= 0) {
			snprintf(why, sizeof(why), "link lost: %s",
			    n == 0 ? "connection closed by the worker" :
			    strerror((int)-n));
			tcp_lost(w, why);
			return -1;
		}
		while ((r = rbuf_next(&l->in, &h, &p)) == 1) {
			if (l->auth.state != AUTH_DONE) {
				if (draining || tcp_auth(w, &h, p) < 0)
					return -1;
				continue;
			}
			if (h.type != MSG_ACK || (r = tcp_ack(w, &h, p)) ==
			    -EBADMSG) {
				snprintf(why, sizeof(why), "sent an unexpected "
				    "frame (type %u, %u byte%s)", h.type, h.len,
				    PLURAL(h.len));
				if (!draining)
					tcp_lost(w, why);
				return -1;
			}
			if (r < 0) {
				snprintf(why, sizeof(why), "acknowledged "
				    "message %llu, which it was not waiting "
				    "for", (unsigned long long)h.id);
				if (!draining)
					tcp_lost(w, why);
				return -1;
			}
		}
		if (r < 0) {
			snprintf(why, sizeof(why), "sent a bad frame: %s",
			    frame_strerror(r));
			if (!draining)
				tcp_lost(w, why);
			return -1;
		}
		/* A short read emptied the socket: another read would only
		 * say EAGAIN (half of all reads did).  Level-triggered epoll
		 * comes back for anything that arrives later. */
		if (l->in.drained && !draining)
			return 0;
	}
}

static void
tcp_event(struct worker *w, uint32_t revents)
{
	uint8_t hello[AUTH_FRAME_MAX];
	char why[160];
	size_t n;
	int fd = w->link.fd, r;

	if (!w->link.connected) {
		if ((r = sock_error(fd)) < 0) {
			snprintf(why, sizeof(why), "cannot connect to %s:%u: %s",
			    w->d->conf.listen_address, w->port, strerror(-r));
			tcp_lost(w, why);
			return;
		}
		w->link.connected = true;
		tcp_set_events(w);
		/* Up only once the worker answers this (tcp_auth). */
		auth_start(&w->link.auth, w->secret);
		n = auth_daemon_hello(&w->link.auth, hello);
		if ((r = tcp_write_auth(w, hello, n)) < 0) {
			snprintf(why, sizeof(why), "link lost: %s",
			    strerror(-r));
			tcp_lost(w, why);
		}
		return;
	}
	if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && tcp_read(w, false) < 0)
		return;
	if (revents & EPOLLOUT)
		w->link.ops->flush(w);
}

static int
tcp_connect(struct worker *w)
{
	struct link *l = &w->link;
	int fd, r;

	if ((r = links_open(w->d)) < 0)
		return r;
	if ((fd = tcp_connect_nb(w->d->conf.listen_address, w->port)) < 0)
		return fd;
	l->events = EPOLLOUT | EPOLLET;
	if ((r = links_ctl(w, EPOLL_CTL_ADD, fd, l->events)) < 0) {
		close(fd);
		return r;
	}
	l->fd = fd;
	l->connected = false;
	rbuf_init(&l->in, MSG_ACK_LEN + FANOUT_REASON_MAX);
	return 0;
}

/* The unsent messages of q, as few pieces as it takes: small frames are
 * copied side by side into stage.  Returns the number of pieces. */
static int
tcp_gather(const struct wqueue *q, struct iovec *iov, uint8_t *stage)
{
	size_t used = 0, len;
	uint32_t i;
	uint8_t *p;
	bool small;
	int cnt = 0;

	for (i = q->nsent; i < q->n && i - q->nsent < PEER_MSGS_MAX; i++) {
		struct msg *m = queue_at(q, i);

		p = m->frame;
		len = m->len;
		if (i == q->nsent) {
			p += q->woff;
			len -= q->woff;
		}
		small = len <= PEER_COPY_MAX && used + len <= PEER_STAGE_BYTES;
		/* Behind the previous copy: the same piece. */
		if (small && cnt > 0 && (uint8_t *)iov[cnt - 1].iov_base +
		    iov[cnt - 1].iov_len == stage + used) {
			memcpy(stage + used, p, len);
			iov[cnt - 1].iov_len += len;
			used += len;
			continue;
		}
		if (cnt == PEER_IOV_MAX)
			break;
		if (small) {
			memcpy(stage + used, p, len);
			p = stage + used;
			used += len;
		}
		iov[cnt].iov_base = p;
		iov[cnt].iov_len = len;
		cnt++;
	}
	return cnt;
}

static void
tcp_flush(struct worker *w)
{
	static uint8_t stage[PEER_STAGE_BYTES];
	struct wqueue *q = &w->q;
	struct iovec iov[PEER_IOV_MAX];
	char why[128];
	ssize_t n;
	int cnt;

	/* Draining for a restart: what was written is acked first. */
	if (w->link.fd < 0 || w->state != W_UP || w->draining)
		return;
	if (q->nsent == 0 && q->n > 0)
		w->progress_usec = loop_now(w->d);	/* the stall clock starts */
	while (q->nsent < q->n) {
		/* At least one: the loop runs while one is unsent. */
		cnt = tcp_gather(q, iov, stage);
		n = writev(w->link.fd, iov, cnt);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			snprintf(why, sizeof(why), "link lost: %s",
			    strerror(errno));
			tcp_lost(w, why);
			return;
		}
		while (n > 0) {
			size_t left = queue_at(q, q->nsent)->len - q->woff;

			if ((size_t)n < left) {
				q->woff += (size_t)n;
				break;
			}
			n -= (ssize_t)left;
			q->woff = 0;
			q->nsent++;
		}
	}
	tcp_set_events(w);
}

static void
tcp_close(struct worker *w, bool drain)
{
	struct link *l = &w->link;

	if (l->fd < 0)
		return;
	/* Acks the worker wrote before it died still count. */
	if (drain && l->connected)
		(void)tcp_read(w, true);
	(void)links_ctl(w, EPOLL_CTL_DEL, l->fd, 0);
	/* Nothing more of this link in the batch being handled. */
	for (int i = batch_i + 1; i < batch_n; i++)
		if (batch[i].data.ptr == w)
			batch[i].data.ptr = NULL;
	close(l->fd);
	l->fd = -1;
	control_fd_freed(w->d);
	l->connected = false;
	auth_clear(&l->auth);
	rbuf_free(&l->in);
	/* Whatever was written and not acked is lost with the connection. */
	queue_rewind(&w->q);
}

const struct link_ops tcp_link_ops = {
	.connect = tcp_connect,
	.flush = tcp_flush,
	.close = tcp_close,
};
