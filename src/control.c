/* SPDX-License-Identifier: MIT */
/*
 * The control socket: accept fanoutctl connections, read request frames,
 * dispatch them, and write replies that end with CTL_END.  Bad input gets an
 * error reply and that one connection closed; it never stops the daemon.
 */
#include "config.h"

#include <sys/socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fanoutd.h"
#include "log.h"
#include "sock.h"
#include "util.h"

/* Unsent reply bytes past which a client is not read until it catches up. */
#define CTL_OUT_HIGH	(1024 * 1024)

/* Any client can cause these at will: rate-limited. */
static struct log_limit bad_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "bad control requests");
static struct log_limit refused_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "refused control connections");

static void	ctl_close(struct ctl_conn *);

/* "pid P, uid U" of the client on fd, for the lines about it. */
static const char *
ctl_who(int fd, char *buf, size_t len)
{
	struct ucred cr;
	socklen_t sl = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &sl) == -1)
		snprintf(buf, len, "unknown");
	else
		snprintf(buf, len, "pid %d, uid %u", (int)cr.pid,
		    (unsigned)cr.uid);
	return buf;
}

/* A request that breaks the protocol: logged, within the limit. */
static void
ctl_bad(const struct ctl_conn *c, const char *what)
{
	char who[48];

	if (log_limit(&bad_ll))
		log_warnx("control client (%s): %s; closing the connection",
		    ctl_who(c->fd, who, sizeof(who)), what);
}

static int
end_frame(struct wbuf *wb, uint64_t req_id, const struct ctl_end *e)
{
	uint8_t p[CTL_END_LEN];

	ctl_end_encode(p, e);
	return wbuf_frame(wb, CTL_END, req_id, p, sizeof(p));
}

static void
ctl_frame(struct ctl_conn *c, uint8_t type, uint64_t req_id,
    const uint8_t *p, size_t len)
{
	if (wbuf_frame(&c->out, type, req_id, p, len) < 0)
		c->closing = true;
}

/* A CTL_WORKER record and its reason, if any. */
static void
ctl_worker_frame(struct ctl_conn *c, uint64_t req_id,
    const struct ctl_worker *rec, const char *reason, size_t reason_len)
{
	uint8_t p[CTL_WORKER_LEN + FANOUT_REASON_MAX];

	if (reason_len > FANOUT_REASON_MAX)
		reason_len = FANOUT_REASON_MAX;
	ctl_worker_encode(p, rec);
	if (reason_len > 0)
		memcpy(p + CTL_WORKER_LEN, reason, reason_len);
	ctl_frame(c, CTL_WORKER, req_id, p, CTL_WORKER_LEN + reason_len);
}

static void
ctl_end(struct ctl_conn *c, uint64_t req_id, const struct ctl_end *e)
{
	if (end_frame(&c->out, req_id, e) < 0)
		c->closing = true;
}

/* A reply that is only a result (and, for CTL_RES_TOOBIG, the limit). */
static void
ctl_result(struct ctl_conn *c, uint64_t req_id, uint32_t result,
    uint32_t limit)
{
	struct ctl_end e = { .result = result, .limit = limit };

	ctl_end(c, req_id, &e);
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
	struct fanoutd *d = c->d;
	uint64_t now = loop_now(d);
	struct ctl_worker rec;
	struct ctl_end e = {
		.result = b->nacked == b->nworkers ? CTL_RES_OK :
		    CTL_RES_PARTIAL,
		.acked = b->nacked,
		.workers = b->nworkers,
		.limit = b->timeout_ms,
		.msg_id = b->m->id,
		.queued = b->nqueued,
		.failed = b->nfailed,
	};
	uint32_t i;

	for (i = 0; i < b->nslots; i++) {
		if (!b->res[i].member ||
		    (b->brief && b->res[i].outcome == ACK_OK))
			continue;
		/* A reload may have removed the worker since. */
		if (i < d->nworkers && d->workers[i]->serial ==
		    b->res[i].serial)
			worker_record(d->workers[i], now, &rec);
		else {
			memset(&rec, 0, sizeof(rec));
			rec.index = i;
			rec.port = b->res[i].port;
			rec.state = WS_DOWN;
		}
		rec.pid = (uint32_t)b->res[i].pid;
		rec.outcome = b->res[i].outcome;
		rec.rtt_us = b->res[i].rtt_us;
		rec.status = b->res[i].status;
		ctl_worker_frame(c, b->req_id, &rec, b->res[i].reason,
		    b->res[i].reason_len);
	}
	ctl_end(c, b->req_id, &e);
	ctl_schedule_flush(c);
}

static void
ctl_set_events(struct ctl_conn *c)
{
	uint32_t ev = 0;

	if (!c->paused && !c->closing)
		ev |= EPOLLIN;
	/* Replies go out from the flush at the end of the loop turn; only
	 * a client that did not take them all needs EPOLLOUT. */
	if (c->out_blocked)
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
	struct ctl_send req;
	uint32_t timeout, len;

	if (ctl_send_decode(p, h->len, &req) < 0) {
		ctl_bad(c, "malformed send request");
		ctl_result(c, h->id, CTL_RES_BADFRAME, 0);
		c->closing = true;
		return;
	}
	len = h->len - CTL_SEND_LEN;
	if (len > d->conf.max_message_bytes) {
		ctl_result(c, h->id, CTL_RES_TOOBIG, d->conf.max_message_bytes);
		return;
	}
	if (d->stopping) {
		ctl_result(c, h->id, CTL_RES_SHUTDOWN, 0);
		return;
	}
	timeout = req.timeout_ms;
	if (timeout == 0 || timeout > d->conf.ack_timeout_ms)
		timeout = d->conf.ack_timeout_ms;
	if (bcast_start(d, c, h->id, p + CTL_SEND_LEN, len, timeout,
	    req.flags) < 0) {
		if (log_limit(&refused_ll))
			log_warnx("out of memory: refusing a message of %u "
			    "bytes", len);
		ctl_result(c, h->id, CTL_RES_BUSY, 0);
	}
}

/* A worker's counters for CTL_STATS. */
static void
ctl_hist_frame(struct ctl_conn *c, uint64_t req_id, const struct worker *w)
{
	uint8_t p[CTL_HIST_LEN + CTL_HIST_TAIL_LEN];
	struct ctl_hist hs = {
		.index = w->index,
		.refused = w->refused,
		.rtt_count = w->acked,
		.rtt_sum_us = w->rtt_sum_us,
	};
	unsigned i;

	ctl_hist_encode(p, &hs);
	for (i = 0; i < FANOUT_HIST_BUCKETS; i++)
		put_u64(p + CTL_HIST_LEN + 8 * i, w->rtt_hist[i]);
	ctl_frame(c, CTL_HIST, req_id, p, sizeof(p));
}

/* CTL_STATUS, and CTL_STATS: the same with every worker's counters. */
static void
ctl_status_reply(struct ctl_conn *c, const struct frame_hdr *h,
    bool counters)
{
	struct fanoutd *d = c->d;
	uint8_t buf[CTL_DAEMON_LEN + FANOUT_VERSION_MAX];
	uint64_t now = now_usec();
	struct ctl_worker rec;
	struct ctl_daemon dm = {
		.uptime_ms = (now - d->start_usec) / 1000,
		.accepted = d->accepted,
		.pid = (uint32_t)getpid(),
		.degraded_ms = d->degraded ?
		    (uint32_t)((now - d->none_up_usec) / 1000) : 0,
	};
	struct ctl_end e = {
		.result = CTL_RES_OK,
		.acked = d->nup,
		.workers = d->nworkers,
	};
	size_t vlen = strlen(PACKAGE_VERSION);
	uint32_t i;

	if (h->len != 0) {
		ctl_bad(c, "malformed status request");
		ctl_result(c, h->id, CTL_RES_BADFRAME, 0);
		c->closing = true;
		return;
	}
	for (i = 0; i < d->nworkers; i++) {
		worker_record(d->workers[i], now, &rec);
		ctl_worker_frame(c, h->id, &rec, d->workers[i]->last_reason,
		    d->workers[i]->last_reason_len);
		if (counters)
			ctl_hist_frame(c, h->id, d->workers[i]);
	}
	if (vlen > FANOUT_VERSION_MAX)
		vlen = FANOUT_VERSION_MAX;
	ctl_daemon_encode(buf, &dm);
	memcpy(buf + CTL_DAEMON_LEN, PACKAGE_VERSION, vlen);
	ctl_frame(c, CTL_DAEMON, h->id, buf, CTL_DAEMON_LEN + vlen);
	ctl_end(c, h->id, &e);
}

static void
ctl_status(struct ctl_conn *c, const struct frame_hdr *h, const uint8_t *p)
{
	(void)p;
	ctl_status_reply(c, h, false);
}

static void
ctl_stats(struct ctl_conn *c, const struct frame_hdr *h, const uint8_t *p)
{
	(void)p;
	ctl_status_reply(c, h, true);
}

void
control_reload_change(struct ctl_conn *c, uint64_t req_id, uint32_t kind,
    uint32_t worker, const char *text)
{
	uint8_t p[CTL_CHANGE_LEN + FANOUT_CHANGE_TEXT_MAX];
	struct ctl_change ch = { .kind = kind, .worker = worker };
	size_t len = strlen(text);

	if (len > FANOUT_CHANGE_TEXT_MAX)
		len = FANOUT_CHANGE_TEXT_MAX;
	ctl_change_encode(p, &ch);
	memcpy(p + CTL_CHANGE_LEN, text, len);
	ctl_frame(c, CTL_CHANGE, req_id, p, CTL_CHANGE_LEN + len);
}

void
control_reload_end(struct ctl_conn *c, uint64_t req_id, uint32_t result)
{
	struct fanoutd *d = c->d;
	struct ctl_end e = {
		.result = result,
		.acked = d->nup,
		.workers = d->conf.workers,
	};

	ctl_end(c, req_id, &e);
	ctl_schedule_flush(c);
	control_bcast_done(c);
}

/* Answered when the reload is done, which may take a while: it counts as
 * a request in flight. */
static void
ctl_reload(struct ctl_conn *c, const struct frame_hdr *h, const uint8_t *p)
{
	struct fanoutd *d = c->d;
	char who[48];

	(void)p;
	if (h->len != 0) {
		ctl_bad(c, "malformed reload request");
		ctl_result(c, h->id, CTL_RES_BADFRAME, 0);
		c->closing = true;
		return;
	}
	if (d->stopping) {
		ctl_result(c, h->id, CTL_RES_SHUTDOWN, 0);
		return;
	}
	log_info("reload requested by control client (%s)",
	    ctl_who(c->fd, who, sizeof(who)));
	c->ninflight++;
	if (reload_start(d, c, h->id) == -EBUSY) {
		c->ninflight--;
		ctl_result(c, h->id, CTL_RES_RELOADING, 0);
	}
}

static const struct ctl_handler {
	uint8_t	 type;
	void	(*run)(struct ctl_conn *, const struct frame_hdr *,
		    const uint8_t *);
} handlers[] = {
	{ CTL_SEND,	ctl_send },
	{ CTL_STATUS,	ctl_status },
	{ CTL_STATS,	ctl_stats },
	{ CTL_RELOAD,	ctl_reload },
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
			/* The header was decoded: its id is worth echoing.
			 * Too big is a mistake, not an attack. */
			if (r == -EMSGSIZE)
				log_debug("control client: %s",
				    frame_strerror(r));
			else
				ctl_bad(c, frame_strerror(r));
			ctl_result(c, h.id, r == -EMSGSIZE ? CTL_RES_TOOBIG :
			    r == -EBADMSG ? CTL_RES_BADTYPE : CTL_RES_BADFRAME,
			    r == -EMSGSIZE ? c->d->conf.max_message_bytes : 0);
			c->closing = true;
			break;
		}
		for (i = 0; i < nitems(handlers); i++)
			if (handlers[i].type == h.type)
				break;
		if (i == nitems(handlers)) {
			ctl_bad(c, "unknown request type");
			ctl_result(c, h.id, CTL_RES_BADTYPE, 0);
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
		struct ctl_end e = { .result = CTL_RES_BUSY };
		struct wbuf wb;
		char who[48];

		if (log_limit(&refused_ll))
			log_warnx("refusing a control connection (%s): too "
			    "many connections", ctl_who(fd, who, sizeof(who)));
		/* One try: a client that cannot take 40 bytes learns
		 * nothing, but it does not hold the daemon up. */
		wbuf_init(&wb);
		if (end_frame(&wb, 0, &e) == 0)
			(void)wbuf_flush(&wb, fd);
		wbuf_free(&wb);
		close(fd);
		return;
	}
	c->d = d;
	c->fd = fd;
	rbuf_init(&c->in, d->conf.max_message_bytes + CTL_SEND_LEN);
	wbuf_init(&c->out);
	if (sd_event_add_io(d->ev, &c->io_src, fd, EPOLLIN, on_ctl_io, c) < 0 ||
	    sd_event_add_defer(d->ev, &c->resume_src, on_ctl_resume, c) < 0) {
		if (log_limit(&refused_ll))
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
	if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED &&
	    log_limit(&refused_ll))
		log_warn("accepting a control connection");
	return 0;
}

static void
ctl_close(struct ctl_conn *c)
{
	struct fanoutd *d = c->d;
	struct ctl_conn **pp;

	bcast_detach_client(d, c);
	reload_detach_client(d, c);
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
	r = wbuf_flush(&c->out, c->fd);
	c->out_blocked = r == 1;
	if (r < 0) {
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
		log_errx("another fanoutd is already running on %s", path);
		return -EADDRINUSE;
	}
	if (fd == -ECONNREFUSED) {
		if (unlink(path) == -1 && errno != ENOENT) {
			log_err("cannot remove stale control socket %s", path);
			return -errno;
		}
		log_info("removed stale control socket %s", path);
	} else if (fd != -ENOENT) {
		log_errx("cannot check control socket %s: %s", path,
		    strerror(-fd));
		return fd;
	}
	if ((fd = unix_listen(path, 0660)) < 0) {
		log_errx("cannot listen on control socket %s: %s", path,
		    strerror(-fd));
		return fd;
	}
	d->ctl_fd = fd;
	if ((r = sd_event_add_io(d->ev, &d->ctl_src, fd, EPOLLIN, on_accept,
	    d)) < 0) {
		log_errx("cannot watch control socket %s: %s", path,
		    strerror(-r));
		return r;
	}
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
