/* SPDX-License-Identifier: MIT */
/*
 * The TCP link to a worker: non-blocking connect, the handshake that proves
 * it is our worker (auth.c), writing the worker's queue with writev, and
 * the acks coming back in order.  It reports what
 * happens through pool_link_up, pool_link_lost and bcast_acked; the queue
 * and the process are not its business.
 */
#include "config.h"

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

#define PEER_IOV_MAX	64	/* messages per writev */

static void
tcp_set_events(struct worker *w)
{
	uint32_t ev = EPOLLIN;

	if (w->state == W_UP && !w->draining && w->q.nsent < w->q.n)
		ev |= EPOLLOUT;
	(void)sd_event_source_set_io_events(w->link.io_src, ev);
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

static int
on_tcp_io(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct worker *w = arg;
	uint8_t hello[AUTH_FRAME_MAX];
	char why[160];
	size_t n;
	int r;

	(void)s;
	if (!w->link.connected) {
		if ((r = sock_error(fd)) < 0) {
			snprintf(why, sizeof(why), "cannot connect to %s:%u: %s",
			    w->d->conf.listen_address, w->port, strerror(-r));
			tcp_lost(w, why);
			return 0;
		}
		w->link.connected = true;
		(void)sd_event_source_set_io_events(w->link.io_src, EPOLLIN);
		/* Up only once the worker answers this (tcp_auth). */
		auth_start(&w->link.auth, w->secret);
		n = auth_daemon_hello(&w->link.auth, hello);
		if ((r = tcp_write_auth(w, hello, n)) < 0) {
			snprintf(why, sizeof(why), "link lost: %s",
			    strerror(-r));
			tcp_lost(w, why);
		}
		return 0;
	}
	if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && tcp_read(w, false) < 0)
		return 0;
	if (revents & EPOLLOUT)
		w->link.ops->flush(w);
	return 0;
}

static int
tcp_connect(struct worker *w)
{
	struct link *l = &w->link;
	int fd, r;

	if ((fd = tcp_connect_nb(w->d->conf.listen_address, w->port)) < 0)
		return fd;
	r = sd_event_add_io(w->d->ev, &l->io_src, fd, EPOLLOUT, on_tcp_io, w);
	if (r < 0) {
		close(fd);
		return r;
	}
	l->fd = fd;
	l->connected = false;
	rbuf_init(&l->in, MSG_ACK_LEN + FANOUT_REASON_MAX);
	return 0;
}

static void
tcp_flush(struct worker *w)
{
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
		cnt = 0;
		do {
			struct msg *m = queue_at(q, q->nsent + (uint32_t)cnt);

			iov[cnt].iov_base = m->frame;
			iov[cnt].iov_len = m->len;
		} while (++cnt < PEER_IOV_MAX &&
		    q->nsent + (uint32_t)cnt < q->n);
		iov[0].iov_base = (uint8_t *)iov[0].iov_base + q->woff;
		iov[0].iov_len -= q->woff;
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
	l->io_src = sd_event_source_disable_unref(l->io_src);
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
