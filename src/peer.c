/* SPDX-License-Identifier: MIT */
/*
 * The daemon's TCP link to each worker: non-blocking connect, the worker's
 * output queue of shared messages written with writev, and the acks coming
 * back, in order.  Losing the link is reported to pool.c.
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

#define OUTQ_INIT	16
#define PEER_IOV_MAX	64	/* messages per writev */

static struct msg *
outq_at(const struct outq *q, uint32_t i)
{
	return q->ring[(q->head + i) & (q->cap - 1)];
}

static int
outq_push(struct outq *q, struct msg *m)
{
	if (q->n == PEER_QUEUE_MAX)
		return -ENOBUFS;
	if (q->n == q->cap) {
		uint32_t ncap = q->cap ? q->cap * 2 : OUTQ_INIT, i;
		struct msg **nr = malloc(ncap * sizeof(*nr));

		if (nr == NULL)
			return -ENOMEM;
		for (i = 0; i < q->n; i++)
			nr[i] = outq_at(q, i);
		free(q->ring);
		q->ring = nr;
		q->cap = ncap;
		q->head = 0;
	}
	q->ring[(q->head + q->n) & (q->cap - 1)] = m;
	q->n++;
	m->refs++;
	return 0;
}

static struct msg *
outq_pop(struct outq *q)
{
	struct msg *m = q->ring[q->head];

	q->head = (q->head + 1) & (q->cap - 1);
	q->n--;
	return m;
}

static void
peer_set_events(struct worker *w)
{
	uint32_t ev = EPOLLIN;

	/* Only a worker that is up is written to; a stopping one is read. */
	if (w->state == W_UP && w->q.nsent < w->q.n)
		ev |= EPOLLOUT;
	(void)sd_event_source_set_io_events(w->io_src, ev);
}

/* The worker acknowledged message id: it must be the oldest one sent. */
static int
peer_ack(struct worker *w, uint64_t id)
{
	struct msg *m;

	if (w->q.nsent == 0 || outq_at(&w->q, 0)->id != id)
		return -EBADMSG;
	m = outq_pop(&w->q);
	w->q.nsent--;
	w->acked++;
	if (m->b != NULL)
		bcast_settle(m->b, w->index, ACK_OK);
	msg_unref(m);
	return 0;
}

/*
 * Reads and handles what the worker sent: 0, or -1 once the link is lost.
 * A dead worker's link is only drained: its end is no news.
 */
static int
peer_read(struct worker *w, bool draining)
{
	struct frame_hdr h;
	const uint8_t *p;
	char why[128];
	ssize_t n;
	int r;

	for (;;) {
		n = rbuf_read(&w->in, w->fd);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0 && draining)
			return -1;
		if (n <= 0) {
			snprintf(why, sizeof(why), "link lost: %s",
			    n == 0 ? "connection closed by the worker" :
			    strerror((int)-n));
			worker_link_lost(w, why);
			return -1;
		}
		while ((r = rbuf_next(&w->in, &h, &p)) == 1) {
			if (h.type != MSG_ACK || h.len != MSG_ACK_LEN) {
				snprintf(why, sizeof(why), "sent an unexpected "
				    "frame (type %u, %u bytes)", h.type, h.len);
				worker_link_lost(w, why);
				return -1;
			}
			if (peer_ack(w, h.id) < 0) {
				snprintf(why, sizeof(why), "acknowledged "
				    "message %llu, which it was not waiting "
				    "for", (unsigned long long)h.id);
				worker_link_lost(w, why);
				return -1;
			}
		}
		if (r < 0) {
			snprintf(why, sizeof(why), "sent a bad frame: %s",
			    frame_strerror(r));
			worker_link_lost(w, why);
			return -1;
		}
	}
}

static int
on_peer_io(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct worker *w = arg;
	char why[160];
	int r;

	(void)s;
	if (w->state == W_READY) {
		if ((r = sock_error(fd)) < 0) {
			snprintf(why, sizeof(why), "cannot connect to %s:%u: %s",
			    w->d->conf.listen_address, w->port, strerror(-r));
			worker_link_lost(w, why);
			return 0;
		}
		peer_set_events(w);
		worker_link_up(w);
		return 0;
	}
	if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && peer_read(w, false) < 0)
		return 0;
	if (revents & EPOLLOUT)
		peer_flush(w);
	return 0;
}

int
peer_connect(struct worker *w)
{
	int fd, r;

	if ((fd = tcp_connect_nb(w->d->conf.listen_address, w->port)) < 0)
		return fd;
	r = sd_event_add_io(w->d->ev, &w->io_src, fd, EPOLLOUT, on_peer_io, w);
	if (r < 0) {
		close(fd);
		return r;
	}
	w->fd = fd;
	rbuf_init(&w->in, MSG_ACK_LEN);
	return 0;
}

int
peer_queue(struct worker *w, struct msg *m)
{
	struct fanoutd *d = w->d;
	int r;

	if ((r = outq_push(&w->q, m)) < 0)
		return r;
	/* Written once per loop turn, with everything else queued by then. */
	if (!w->dirty) {
		w->dirty = true;
		w->next_dirty = d->dirty_peers;
		d->dirty_peers = w;
		fanoutd_schedule_flush(d);
	}
	return 0;
}

void
peer_flush(struct worker *w)
{
	struct outq *q = &w->q;
	struct iovec iov[PEER_IOV_MAX];
	char why[128];
	ssize_t n;
	int cnt;

	while (w->fd >= 0 && w->state == W_UP && q->nsent < q->n) {
		for (cnt = 0; cnt < PEER_IOV_MAX &&
		    q->nsent + (uint32_t)cnt < q->n; cnt++) {
			struct msg *m = outq_at(q, q->nsent + (uint32_t)cnt);

			iov[cnt].iov_base = m->frame;
			iov[cnt].iov_len = m->len;
		}
		iov[0].iov_base = (uint8_t *)iov[0].iov_base + q->woff;
		iov[0].iov_len -= q->woff;
		n = writev(w->fd, iov, cnt);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			snprintf(why, sizeof(why), "link lost: %s",
			    strerror(errno));
			worker_link_lost(w, why);
			return;
		}
		while (n > 0) {
			size_t left = outq_at(q, q->nsent)->len - q->woff;

			if ((size_t)n < left) {
				q->woff += (size_t)n;
				break;
			}
			n -= (ssize_t)left;
			q->woff = 0;
			q->nsent++;
		}
	}
	if (w->fd >= 0)
		peer_set_events(w);
}

void
peer_drain(struct worker *w)
{
	if (w->fd >= 0 && w->state != W_READY)
		(void)peer_read(w, true);
}

void
peer_close(struct worker *w, uint8_t outcome)
{
	struct outq *q = &w->q;

	/* Whatever is still queued will never be acknowledged. */
	while (q->n > 0) {
		struct msg *m = outq_pop(q);

		if (m->b != NULL)
			bcast_settle(m->b, w->index, outcome);
		msg_unref(m);
	}
	free(q->ring);
	memset(q, 0, sizeof(*q));
	w->io_src = sd_event_source_disable_unref(w->io_src);
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	rbuf_free(&w->in);
}
