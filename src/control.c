/* SPDX-License-Identifier: MIT */
/*
 * The control socket: accept fanoutctl connections, read request frames,
 * dispatch them, and write replies that end with CTL_END.  Bad input gets an
 * error reply and that one connection closed; it never stops the daemon.
 */
#include "config.h"

#include <sys/socket.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fanoutd.h"
#include "log.h"
#include "sock.h"
#include "util.h"

/* Unsent reply bytes past which a client is not read until it catches up. */
#define CTL_OUT_HIGH	(1024 * 1024)

static void	ctl_close(struct ctl_conn *);

static int
end_frame(struct wbuf *wb, uint64_t req_id, uint32_t result, uint32_t acked,
    uint32_t workers, uint32_t limit, uint64_t msg_id)
{
	uint8_t p[CTL_END_LEN];

	put_u32(p, result);
	put_u32(p + 4, acked);
	put_u32(p + 8, workers);
	put_u32(p + 12, limit);
	put_u64(p + 16, msg_id);
	return wbuf_frame(wb, CTL_END, req_id, p, sizeof(p));
}

static void
ctl_end(struct ctl_conn *c, uint64_t req_id, uint32_t result, uint32_t acked,
    uint32_t workers, uint32_t limit, uint64_t msg_id)
{
	if (end_frame(&c->out, req_id, result, acked, workers, limit,
	    msg_id) < 0)
		c->closing = true;
}

static void
ctl_worker(struct ctl_conn *c, uint64_t req_id, const struct worker *w,
    pid_t pid, uint8_t outcome, uint32_t rtt_us)
{
	uint8_t p[CTL_WORKER_LEN];

	put_u32(p, w->index);
	put_u32(p + 4, (uint32_t)pid);
	put_u16(p + 8, w->port);
	p[10] = (uint8_t)w->state;
	p[11] = outcome;
	put_u32(p + 12, rtt_us);
	put_u64(p + 16, w->acked);
	if (wbuf_frame(&c->out, CTL_WORKER, req_id, p, sizeof(p)) < 0)
		c->closing = true;
}

static void
ctl_schedule_flush(struct ctl_conn *c)
{
	if (!c->dirty) {
		c->dirty = true;
		c->next_dirty = c->d->dirty_ctls;
		c->d->dirty_ctls = c;
		fanoutd_schedule_flush(c->d);
	}
}

void
control_reply_bcast(struct ctl_conn *c, const struct bcast *b)
{
	uint32_t i;

	for (i = 0; i < b->nworkers; i++)
		ctl_worker(c, b->req_id, &c->d->workers[i], b->res[i].pid,
		    b->res[i].outcome, b->res[i].rtt_us);
	ctl_end(c, b->req_id, b->nacked == b->nworkers ? CTL_RES_OK :
	    CTL_RES_PARTIAL, b->nacked, b->nworkers, b->timeout_ms, b->m->id);
	ctl_schedule_flush(c);
}

static void
ctl_set_events(struct ctl_conn *c)
{
	uint32_t ev = 0;

	if (!c->paused && !c->closing)
		ev |= EPOLLIN;
	if (wbuf_pending(&c->out) > 0)
		ev |= EPOLLOUT;
	(void)sd_event_source_set_io_events(c->io_src, ev);
}

static void
ctl_resume(struct ctl_conn *c)
{
	if (c->paused && c->ninflight < CTL_INFLIGHT_MAX &&
	    wbuf_pending(&c->out) < CTL_OUT_HIGH) {
		c->paused = false;
		ctl_set_events(c);
		/* Frames may already sit in the buffer: no EPOLLIN for them. */
		(void)sd_event_source_set_enabled(c->resume_src,
		    SD_EVENT_ONESHOT);
	}
}

void
control_bcast_done(struct ctl_conn *c)
{
	c->ninflight--;
	/* The reply is queued: control_flush closes a closing client. */
	ctl_resume(c);
}

static void
ctl_send(struct ctl_conn *c, const struct frame_hdr *h, const uint8_t *p)
{
	struct fanoutd *d = c->d;
	uint32_t timeout, len;

	if (h->len < CTL_SEND_HDR_LEN) {
		ctl_end(c, h->id, CTL_RES_BADFRAME, 0, 0, 0, 0);
		c->closing = true;
		return;
	}
	len = h->len - CTL_SEND_HDR_LEN;
	if (len > d->conf.max_message_bytes) {
		ctl_end(c, h->id, CTL_RES_TOOBIG, 0, 0,
		    d->conf.max_message_bytes, 0);
		return;
	}
	if (d->stopping) {
		ctl_end(c, h->id, CTL_RES_SHUTDOWN, 0, 0, 0, 0);
		return;
	}
	timeout = get_u32(p);
	if (timeout == 0 || timeout > d->conf.ack_timeout_ms)
		timeout = d->conf.ack_timeout_ms;
	if (bcast_start(d, c, h->id, p + CTL_SEND_HDR_LEN, len, timeout) < 0) {
		log_warnx("out of memory: refusing a message of %u bytes", len);
		ctl_end(c, h->id, CTL_RES_BUSY, 0, 0, 0, 0);
	}
}

static void
ctl_status(struct ctl_conn *c, const struct frame_hdr *h, const uint8_t *p)
{
	struct fanoutd *d = c->d;
	uint32_t i;

	(void)p;
	if (h->len != 0) {
		ctl_end(c, h->id, CTL_RES_BADFRAME, 0, 0, 0, 0);
		c->closing = true;
		return;
	}
	for (i = 0; i < d->nworkers; i++)
		ctl_worker(c, h->id, &d->workers[i], d->workers[i].pid,
		    ACK_NONE, 0);
	ctl_end(c, h->id, CTL_RES_OK, d->nup, d->nworkers, 0, 0);
}

static const struct ctl_handler {
	uint8_t	 type;
	void	(*run)(struct ctl_conn *, const struct frame_hdr *,
		    const uint8_t *);
} handlers[] = {
	{ CTL_SEND,	ctl_send },
	{ CTL_STATUS,	ctl_status },
};

/* Handles the complete frames buffered, as far as backpressure allows. */
static void
ctl_process(struct ctl_conn *c)
{
	struct frame_hdr h;
	const uint8_t *p;
	size_t i;
	int r;

	while (!c->closing) {
		if (c->ninflight >= CTL_INFLIGHT_MAX ||
		    wbuf_pending(&c->out) >= CTL_OUT_HIGH) {
			c->paused = true;
			break;
		}
		if ((r = rbuf_next(&c->in, &h, &p)) == 0)
			break;
		if (r < 0) {
			/* The header was decoded: its id is worth echoing. */
			log_debug("control client: %s", frame_strerror(r));
			ctl_end(c, h.id, r == -EMSGSIZE ? CTL_RES_TOOBIG :
			    r == -EBADMSG ? CTL_RES_BADTYPE : CTL_RES_BADFRAME,
			    0, 0, r == -EMSGSIZE ?
			    c->d->conf.max_message_bytes : 0, 0);
			c->closing = true;
			break;
		}
		for (i = 0; i < nitems(handlers); i++)
			if (handlers[i].type == h.type)
				break;
		if (i == nitems(handlers)) {
			ctl_end(c, h.id, CTL_RES_BADTYPE, 0, 0, 0, 0);
			c->closing = true;
			break;
		}
		handlers[i].run(c, &h, p);
	}
	ctl_set_events(c);
	if (wbuf_pending(&c->out) > 0)
		ctl_schedule_flush(c);
	else if (c->closing && c->ninflight == 0)
		ctl_close(c);
}

static int
on_ctl_io(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct ctl_conn *c = arg;
	ssize_t n;

	(void)s;
	if (revents & EPOLLOUT) {
		control_flush(c);
		return 0;	/* c may be gone; EPOLLIN comes round again */
	}
	if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return 0;
	n = rbuf_read(&c->in, fd);
	if (n == -EAGAIN)
		return 0;
	if (n <= 0) {
		/* Gone: whatever it asked for is dropped, not answered. */
		ctl_close(c);
		return 0;
	}
	ctl_process(c);
	return 0;
}

static int
on_ctl_resume(sd_event_source *s, void *arg)
{
	(void)s;
	ctl_process(arg);
	return 0;
}

static void
ctl_accept_one(struct fanoutd *d, int fd)
{
	struct ctl_conn *c;

	/* (No stopping case: the listener is closed when stopping begins.) */
	if (d->nctls >= CTL_CONNS_MAX || (c = calloc(1, sizeof(*c))) == NULL) {
		struct wbuf wb;

		log_warnx("refusing a control connection: too many "
		    "connections");
		/* One try: a client that cannot take 40 bytes learns
		 * nothing, but it does not hold the daemon up. */
		wbuf_init(&wb);
		if (end_frame(&wb, 0, CTL_RES_BUSY, 0, 0, 0, 0) == 0)
			(void)wbuf_flush(&wb, fd);
		wbuf_free(&wb);
		close(fd);
		return;
	}
	c->d = d;
	c->fd = fd;
	rbuf_init(&c->in, d->conf.max_message_bytes + CTL_SEND_HDR_LEN);
	wbuf_init(&c->out);
	if (sd_event_add_io(d->ev, &c->io_src, fd, EPOLLIN, on_ctl_io, c) < 0 ||
	    sd_event_add_defer(d->ev, &c->resume_src, on_ctl_resume, c) < 0) {
		log_warnx("cannot watch a control connection");
		c->io_src = sd_event_source_disable_unref(c->io_src);
		free(c);
		close(fd);
		return;
	}
	(void)sd_event_source_set_enabled(c->resume_src, SD_EVENT_OFF);
	c->next = d->ctls;
	if (d->ctls != NULL)
		d->ctls->prev = c;
	d->ctls = c;
	d->nctls++;
}

static int
on_accept(sd_event_source *s, int lfd, uint32_t revents, void *arg)
{
	struct fanoutd *d = arg;
	int fd;

	(void)s;
	(void)revents;
	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC))
	    >= 0)
		ctl_accept_one(d, fd);
	if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
		log_warn("accepting a control connection");
	return 0;
}

static void
ctl_close(struct ctl_conn *c)
{
	struct fanoutd *d = c->d;
	struct ctl_conn **pp;

	bcast_detach_client(d, c);
	for (pp = &d->dirty_ctls; *pp != NULL; pp = &(*pp)->next_dirty)
		if (*pp == c) {
			*pp = c->next_dirty;
			break;
		}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		d->ctls = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	d->nctls--;
	c->io_src = sd_event_source_disable_unref(c->io_src);
	c->resume_src = sd_event_source_disable_unref(c->resume_src);
	close(c->fd);
	rbuf_free(&c->in);
	wbuf_free(&c->out);
	free(c);
	if (d->stopping)
		fanoutd_check_done(d);
}

void
control_flush(struct ctl_conn *c)
{
	int r;

	c->dirty = false;
	if ((r = wbuf_flush(&c->out, c->fd)) < 0) {
		log_debug("control client: %s", strerror(-r));
		ctl_close(c);
		return;
	}
	/* Requests taken before a bad frame still get their answers. */
	if (r == 0 && c->closing && c->ninflight == 0) {
		ctl_close(c);
		return;
	}
	ctl_set_events(c);
	ctl_resume(c);
}

int
control_start(struct fanoutd *d)
{
	const char *path = d->conf.control_socket;
	int fd, r;

	/* Another daemon that answers owns the socket (one whose backlog
	 * stays full is there too: -EAGAIN); a dead one's file is only in
	 * the way. */
	if ((fd = unix_connect(path, 1000)) >= 0 || fd == -EAGAIN) {
		if (fd >= 0)
			close(fd);
		log_warnx("another fanoutd is already running on %s", path);
		return -EADDRINUSE;
	}
	if (fd == -ECONNREFUSED) {
		if (unlink(path) == -1 && errno != ENOENT) {
			log_warn("cannot remove stale control socket %s", path);
			return -errno;
		}
		log_info("removed stale control socket %s", path);
	} else if (fd != -ENOENT) {
		log_warnx("cannot check control socket %s: %s", path,
		    strerror(-fd));
		return fd;
	}
	if ((fd = unix_listen(path, 0660)) < 0) {
		log_warnx("cannot listen on control socket %s: %s", path,
		    strerror(-fd));
		return fd;
	}
	d->ctl_fd = fd;
	if ((r = sd_event_add_io(d->ev, &d->ctl_src, fd, EPOLLIN, on_accept,
	    d)) < 0)
		return r;
	return 0;
}

void
control_close_listener(struct fanoutd *d)
{
	if (d->ctl_fd < 0)
		return;
	d->ctl_src = sd_event_source_disable_unref(d->ctl_src);
	close(d->ctl_fd);
	d->ctl_fd = -1;
	if (unlink(d->conf.control_socket) == -1 && errno != ENOENT)
		log_warn("cannot remove control socket %s",
		    d->conf.control_socket);
}

void
control_close_all(struct fanoutd *d, bool now)
{
	struct ctl_conn *c, *next;

	for (c = d->ctls; c != NULL; c = next) {
		next = c->next;
		c->closing = true;
		if (now || (wbuf_pending(&c->out) == 0 && c->ninflight == 0))
			ctl_close(c);
		else
			ctl_set_events(c);
	}
}

bool
control_idle(const struct fanoutd *d)
{
	return d->ctls == NULL;
}
