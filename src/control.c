/* SPDX-License-Identifier: MIT */
/*
 * The control socket: accept fanoutctl connections, read request frames,
 * dispatch them, and write replies that end with CTL_END.  Bad input gets an
 * error reply and that one connection closed; it never stops the daemon.
 *
 * Fairness (fanoutd(8), CONTROL SOCKET LIMITS): a uid other than root and
 * fanoutd's own holds at most half of control_max_connections, and all
 * such uids together all but CTL_CONNS_RESERVED of them; a connection with
 * no request outstanding that moves no byte for control_idle_timeout_ms
 * is closed, and so is one whose frame is not complete within
 * control_frame_timeout_ms of its first byte; requests are handled while
 * less than control_output_max_bytes of replies wait, and a client that
 * lets that much pile up unread is cut off; the buffers of
 * all clients together stay within control_buffer_max_bytes (input that
 * would pass it waits).  Out of descriptors, accepting pauses until
 * fanoutd closes one (control_fd_freed) or CTL_ACCEPT_RETRY_USEC pass.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fanoutd.h"
#include "log.h"
#include "sock.h"
#include "spool.h"
#include "util.h"

/* Buffer bytes every connection may hold without counting against the
 * total: its first read chunk.  Larger buffers are freed once empty. */
#define CTL_KEEP_BYTES		(64 * 1024)
/* Connections accepted per loop turn: the clients already in get their
 * turn between batches. */
#define CTL_ACCEPT_BATCH	64
/* The deadline sweep runs this often: a quarter of the shorter timeout. */
#define CTL_SWEEP_MIN_USEC	(10 * 1000)
#define CTL_SWEEP_MAX_USEC	(1000 * 1000)
/* How long the check at startup waits for an answer on a live socket. */
#define CTL_PROBE_MS		1000

/* Any client can cause these at will: rate-limited. */
static struct log_limit bad_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "bad control requests");
static struct log_limit refused_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "refused control connections");
static struct log_limit cut_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "control clients cut off");
static struct log_limit fd_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "pauses of the control socket for want of descriptors");

static void	ctl_close(struct ctl_conn *);

/* A request that breaks the protocol: logged, within the limit. */
static void
ctl_bad(const struct ctl_conn *c, const char *what)
{
	if (log_limit(&bad_ll))
		log_warnx("control client (pid %d, uid %u): %s; closing the "
		    "connection", (int)c->pid, (unsigned)c->uid, what);
}

/* Brings c's share of d->ctl_mem up to date with its buffers. */
static void
ctl_account(struct ctl_conn *c)
{
	size_t mem = c->in.cap + c->out.cap;

	c->d->ctl_mem = c->d->ctl_mem - c->mem + mem;
	c->mem = mem;
}

static void	ctl_set_events(struct ctl_conn *);

/* Memory was freed: clients waiting for it are read again. */
static void
ctl_mem_freed(struct fanoutd *d)
{
	struct ctl_conn *c;

	for (c = d->ctls; c != NULL; c = c->next)
		if (c->mem_wait) {
			c->mem_wait = false;
			ctl_set_events(c);
		}
}

/* Large buffers go back once empty: a client holds what it needs now. */
static void
ctl_shrink(struct ctl_conn *c)
{
	size_t before = c->mem;

	if (c->in.len == c->in.off && c->in.cap > CTL_KEEP_BYTES)
		rbuf_free(&c->in);
	if (wbuf_pending(&c->out) == 0 && c->out.cap > CTL_KEEP_BYTES)
		wbuf_free(&c->out);
	ctl_account(c);
	if (c->mem < before)
		ctl_mem_freed(c->d);
}

/* Whether reading from c may grow its input buffer: beyond the first
 * chunk, only within control_buffer_max_bytes for all clients. */
static bool
ctl_may_read(struct ctl_conn *c)
{
	struct fanoutd *d = c->d;
	size_t held = c->in.len - c->in.off, want = CTL_KEEP_BYTES;

	if (held >= FANOUT_HDR_LEN)
		want = FANOUT_HDR_LEN + (size_t)get_u32(c->in.buf + c->in.off +
		    4);
	if (want <= c->in.cap || want <= CTL_KEEP_BYTES)
		return true;
	/* rbuf doubles its buffer: count what it may take. */
	if (d->ctl_mem + 2 * want - c->in.cap <= d->conf.control_buffer_max_bytes)
		return true;
	if (!c->mem_wait)
		log_debug("control client (pid %d, uid %u): control buffers "
		    "full (%zu bytes); its frame of %zu bytes waits",
		    (int)c->pid, (unsigned)c->uid, d->ctl_mem, want);
	c->mem_wait = true;
	ctl_set_events(c);
	return false;
}

/* The client broke a limit: it is closed at once, its replies dropped. */
static void
ctl_cut(struct ctl_conn *c, const char *fmt, unsigned long long n)
{
	if (log_limit(&cut_ll)) {
		char what[160];

		snprintf(what, sizeof(what), fmt, n);
		log_warnx("control client (pid %d, uid %u): %s; closing the "
		    "connection", (int)c->pid, (unsigned)c->uid, what);
	}
	ctl_close(c);
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

/* A CTL_WORKER record, a remote worker's name (rec->name_len bytes of
 * name), and its reason, if any. */
static void
ctl_worker_frame(struct ctl_conn *c, uint64_t req_id,
    const struct ctl_worker *rec, const char *name, const char *reason,
    size_t reason_len)
{
	uint8_t p[CTL_WORKER_LEN + FANOUT_NAME_MAX + FANOUT_REASON_MAX];
	size_t nlen = rec->name_len;

	if (reason_len > FANOUT_REASON_MAX)
		reason_len = FANOUT_REASON_MAX;
	ctl_worker_encode(p, rec);
	if (nlen > 0)
		memcpy(p + CTL_WORKER_LEN, name, nlen);
	if (reason_len > 0)
		memcpy(p + CTL_WORKER_LEN + nlen, reason, reason_len);
	ctl_frame(c, CTL_WORKER, req_id, p, CTL_WORKER_LEN + nlen +
	    reason_len);
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
	const char *name = NULL, *reason;
	size_t reason_len;
	uint32_t i;

	for (i = 0; i < b->nslots; i++) {
		if (!b->res[i].member ||
		    (b->brief && b->res[i].outcome == ACK_OK))
			continue;
		if (i >= b->nlocal)
			remote_record(d->remote, i - b->nlocal, &rec, &name,
			    &reason, &reason_len);
		/* A reload may have removed the worker since. */
		else if (i < d->nworkers && d->workers[i]->serial ==
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
		ctl_worker_frame(c, b->req_id, &rec, name, b->res[i].reason,
		    b->res[i].reason_len);
	}
	ctl_end(c, b->req_id, &e);
	ctl_schedule_flush(c);
}

static void
ctl_set_events(struct ctl_conn *c)
{
	uint32_t ev = 0;

	if (!c->paused && !c->closing && !c->mem_wait)
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
	    wbuf_pending(&c->out) < c->d->conf.control_output_max_bytes) {
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
			    "bytes from pid %d, uid %u", len, (int)c->pid,
			    (unsigned)c->uid);
		ctl_result(c, h->id, CTL_RES_BUSY, 0);
		return;
	}
	/* Per message: -vv (log_trace), at debug priority. */
	log_trace("message %llu, %u bytes, from control client (pid %d, "
	    "uid %u)", (unsigned long long)d->next_msg_id, len, (int)c->pid,
	    (unsigned)c->uid);
}

/* Counters for CTL_STATS: the record and its buckets. */
static void
ctl_hist_put(struct ctl_conn *c, uint64_t req_id, const struct ctl_hist *hs,
    const uint64_t *buckets)
{
	uint8_t p[CTL_HIST_LEN + CTL_HIST_TAIL_LEN];
	unsigned i;

	ctl_hist_encode(p, hs);
	for (i = 0; i < FANOUT_HIST_BUCKETS; i++)
		put_u64(p + CTL_HIST_LEN + 8 * i, buckets[i]);
	ctl_frame(c, CTL_HIST, req_id, p, sizeof(p));
}

/* A worker's counters for CTL_STATS. */
static void
ctl_hist_frame(struct ctl_conn *c, uint64_t req_id, const struct worker *w)
{
	struct ctl_hist hs = {
		.index = w->index,
		.refused = w->refused,
		.rtt_count = w->acked,
		.rtt_sum_us = w->rtt_sum_us,
	};

	ctl_hist_put(c, req_id, &hs, w->rtt_hist);
}

/* The consumers in the broker that remote_workers does not name. */
static void
ctl_unlisted_frames(struct ctl_conn *c, uint64_t req_id)
{
	static struct ctl_worker recs[FANOUT_REMOTE_MAX];
	static char names[FANOUT_REMOTE_MAX][FANOUT_NAME_MAX + 1];
	uint32_t i, n;

	n = remote_unlisted(c->d->remote, recs, names, FANOUT_REMOTE_MAX);
	for (i = 0; i < n; i++)
		ctl_worker_frame(c, req_id, &recs[i], names[i], NULL, 0);
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
		.spool_bytes = d->spool ? spool_bytes(d->spool) : 0,
		.spool_max_bytes = d->spool ? spool_max_bytes(d->spool) : 0,
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
		ctl_worker_frame(c, h->id, &rec, NULL,
		    d->workers[i]->last_reason, d->workers[i]->last_reason_len);
		if (counters)
			ctl_hist_frame(c, h->id, d->workers[i]);
	}
	/* Remote workers, after the local ones, with their counters. */
	for (i = 0; i < d->nremote; i++) {
		uint64_t buckets[FANOUT_HIST_BUCKETS];
		const char *name, *reason;
		struct ctl_hist hs;
		size_t reason_len;

		if (!remote_listed(d->remote, i))
			continue;	/* removed: among the unlisted */
		remote_record(d->remote, i, &rec, &name, &reason, &reason_len);
		ctl_worker_frame(c, h->id, &rec, name, reason, reason_len);
		/* In the counts beside the local ones: pulling is up. */
		e.workers++;
		e.acked += rec.state == WS_PULLING;
		if (counters) {
			remote_hist(d->remote, i, &hs, buckets);
			ctl_hist_put(c, h->id, &hs, buckets);
		}
	}
	if (!counters && d->remote != NULL)
		ctl_unlisted_frames(c, h->id);
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
	log_info("reload requested by control client (pid %d, uid %u)",
	    (int)c->pid, (unsigned)c->uid);
	c->ninflight++;
	if (reload_start(d, c, h->id) == -EBUSY) {
		c->ninflight--;
		ctl_result(c, h->id, CTL_RES_RELOADING, 0);
	}
}

static void
ctl_qstat_frame(struct ctl_conn *c, uint64_t req_id, const struct ctl_qstat *q)
{
	uint8_t p[CTL_QSTAT_LEN];

	ctl_qstat_encode(p, q);
	ctl_frame(c, CTL_QSTAT, req_id, p, sizeof(p));
}

/* What is queued for a worker of the pool: its queue, with what of it
 * the spool holds. */
static void
ctl_qstat_worker(const struct worker *w, uint64_t now, struct ctl_qstat *q)
{
	struct fanoutd *d = w->d;
	struct spool_stat st = { 0 };

	q->worker = w->index;
	q->flags = CTL_QSTAT_CONFIGURED;
	q->state = (uint16_t)worker_wire_state(w);
	q->messages = w->q.n;
	q->bytes = w->q.bytes;
	q->oldest_ms = w->q.n > 0 && now > queue_at(&w->q, 0)->accepted_usec ?
	    (now - queue_at(&w->q, 0)->accepted_usec) / 1000 : 0;
	if (d->spool != NULL &&
	    spool_worker_stats(d->spool, w->index, &st) == 0)
		q->spooled = st.count;
}

/* A worker index the pool does not have: what the spool holds for it. */
static void
ctl_qstat_spooled(const struct spool_stat *st, struct ctl_qstat *q)
{
	struct timespec ts;
	uint64_t real;

	clock_gettime(CLOCK_REALTIME, &ts);
	real = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	memset(q, 0, sizeof(*q));
	q->worker = st->worker;
	q->messages = q->spooled = st->count;
	q->bytes = st->bytes;
	q->oldest_ms = st->count > 0 && real > st->oldest_usec ?
	    (real - st->oldest_usec) / 1000 : 0;
}

static void
ctl_queue_list(struct ctl_conn *c, uint64_t req_id)
{
	struct fanoutd *d = c->d;
	uint64_t now = loop_now(d);
	struct spool_stat st;
	struct ctl_qstat q;
	size_t i, n = d->spool ? spool_nworkers(d->spool) : 0;
	uint32_t w;

	/* In index order: the pool's, with the spool's beyond it. */
	for (w = 0; w < d->nworkers; w++) {
		ctl_qstat_worker(d->workers[w], now, &q);
		ctl_qstat_frame(c, req_id, &q);
	}
	for (i = 0; i < n; i++)
		if (spool_worker_at(d->spool, i, &st) == 0 &&
		    st.worker >= d->nworkers && st.count > 0) {
			ctl_qstat_spooled(&st, &q);
			ctl_qstat_frame(c, req_id, &q);
		}
}

/* The messages nobody will take, dropped on an administrator's word. */
static uint32_t
ctl_queue_drop(struct ctl_conn *c, uint64_t req_id, uint32_t index)
{
	struct fanoutd *d = c->d;
	struct spool_stat st = { 0 };
	struct ctl_qstat q = { .worker = index };
	uint64_t first, last, n;
	uint32_t count, spooled;

	if (index < d->nworkers) {
		struct worker *w = d->workers[index];

		q.flags = CTL_QSTAT_CONFIGURED;
		q.state = (uint16_t)worker_wire_state(w);
		q.bytes = w->q.bytes;
		bcast_drop_unsent(w, &count, &spooled, &first, &last);
		q.bytes -= w->q.bytes;
		q.messages = count;
		q.spooled = spooled;
		if (count > 0)
			log_notice("worker %u: %u queued message%s (ids %llu "
			    "to %llu, %llu byte%s) dropped by control client "
			    "(pid %d, uid %u)", index, count, PLURAL(count),
			    (unsigned long long)first,
			    (unsigned long long)last,
			    (unsigned long long)q.bytes, PLURAL(q.bytes),
			    (int)c->pid, (unsigned)c->uid);
		ctl_qstat_frame(c, req_id, &q);
		return CTL_RES_OK;
	}
	if (d->spool == NULL ||
	    spool_worker_stats(d->spool, index, &st) < 0 || st.count == 0)
		return CTL_RES_NOWORKER;
	if (spooler_drop(d, index, &n) < 0)
		return CTL_RES_SHUTDOWN;	/* the spool failed: stopping */
	q.messages = q.spooled = n;
	q.bytes = st.bytes;
	log_notice("worker %u (not configured): %llu spooled message%s "
	    "(%llu byte%s) dropped by control client (pid %d, uid %u)", index,
	    (unsigned long long)n, PLURAL(n), (unsigned long long)st.bytes,
	    PLURAL(st.bytes), (int)c->pid, (unsigned)c->uid);
	ctl_qstat_frame(c, req_id, &q);
	return CTL_RES_OK;
}

static void
ctl_queue(struct ctl_conn *c, const struct frame_hdr *h, const uint8_t *p)
{
	struct fanoutd *d = c->d;
	struct ctl_queue rq;
	struct ctl_end e = { .result = CTL_RES_OK };

	if (ctl_queue_decode(p, h->len, &rq) < 0 ||
	    (rq.op != CTL_QUEUE_LIST && rq.op != CTL_QUEUE_DROP)) {
		ctl_bad(c, "malformed queue request");
		ctl_result(c, h->id, CTL_RES_BADFRAME, 0);
		c->closing = true;
		return;
	}
	if (rq.op == CTL_QUEUE_LIST)
		ctl_queue_list(c, h->id);
	else if (d->stopping)
		e.result = CTL_RES_SHUTDOWN;
	else
		e.result = ctl_queue_drop(c, h->id, rq.worker);
	e.acked = d->nup;
	e.workers = d->nworkers;
	ctl_end(c, h->id, &e);
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
	{ CTL_QUEUE,	ctl_queue },
};

/* Handles the complete frames buffered, as far as backpressure allows. */
static void
ctl_process(struct ctl_conn *c)
{
	struct frame_hdr h;
	const uint8_t *p;
	bool took = false;
	size_t i;
	int r;

	while (!c->closing) {
		if (c->ninflight >= CTL_INFLIGHT_MAX ||
		    wbuf_pending(&c->out) >=
		    c->d->conf.control_output_max_bytes) {
			c->paused = true;
			break;
		}
		if ((r = rbuf_next(&c->in, &h, &p)) == 0)
			break;
		took = true;
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
	/* A partial frame's deadline runs from its first bytes; frames held
	 * back by the pause are not late. */
	if (c->in.len == c->in.off || c->paused || c->closing)
		c->frame_usec = 0;
	else if (took || c->frame_usec == 0)
		c->frame_usec = loop_now(c->d);
	ctl_shrink(c);
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
	if (!ctl_may_read(c)) {
		/* Gone while it waited: nothing more to wait for. */
		if (revents & (EPOLLHUP | EPOLLERR))
			ctl_close(c);
		return 0;
	}
	n = rbuf_read(&c->in, fd);
	if (n == -EAGAIN)
		return 0;
	if (n <= 0) {
		/* Gone: whatever it asked for is dropped, not answered. */
		ctl_close(c);
		return 0;
	}
	c->io_usec = loop_now(c->d);
	ctl_account(c);
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

/* Why a client of this uid may not have another connection, or NULL. */
static const char *
ctl_refusal(const struct fanoutd *d, uid_t uid, char *buf, size_t len)
{
	uint32_t max = d->conf.control_max_connections, n = 0;
	const struct ctl_conn *c;

	if (d->nctls >= max)
		return "too many connections";
	/* root and fanoutd's own uid may take the reserved slots, and any
	 * number of them: a locked-out admin could not even look. */
	if (uid == 0 || uid == geteuid())
		return NULL;
	if (d->nctls >= max - CTL_CONNS_RESERVED(max))
		return "too many connections (the rest are kept for root)";
	for (c = d->ctls; c != NULL; c = c->next)
		if (c->uid == uid)
			n++;
	if (n >= max / 2) {
		snprintf(buf, len, "uid %u holds %u connections, its most",
		    (unsigned)uid, n);
		return buf;
	}
	return NULL;
}

/* A connection refused: it learns why if it takes 40 bytes at once. */
static void
ctl_refuse(int fd, const struct ucred *cr, const char *why)
{
	struct ctl_end e = { .result = CTL_RES_BUSY };
	struct wbuf wb;

	if (log_limit(&refused_ll))
		log_warnx("refusing a control connection (pid %d, uid %u): %s",
		    (int)cr->pid, (unsigned)cr->uid, why);
	/* One try: a client that cannot take 40 bytes learns nothing, but
	 * it does not hold the daemon up. */
	wbuf_init(&wb);
	if (end_frame(&wb, 0, &e) == 0)
		(void)wbuf_flush(&wb, fd);
	wbuf_free(&wb);
	close(fd);
}

static void
ctl_accept_one(struct fanoutd *d, int fd)
{
	struct ucred cr = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
	socklen_t sl = sizeof(cr);
	struct ctl_conn *c;
	const char *why;
	char buf[64];

	/* Unknown credentials count as a stranger's: uid -1 is no one's. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &sl) == -1)
		cr.uid = (uid_t)-1;
	/* (No stopping case: the listener is closed when stopping begins.) */
	if ((why = ctl_refusal(d, cr.uid, buf, sizeof(buf))) != NULL) {
		ctl_refuse(fd, &cr, why);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		ctl_refuse(fd, &cr, "out of memory");
		return;
	}
	c->d = d;
	c->fd = fd;
	c->uid = cr.uid;
	c->pid = cr.pid;
	c->io_usec = loop_now(d);
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
	log_debug("control client (pid %d, uid %u) connected, %u connections",
	    (int)c->pid, (unsigned)c->uid, d->nctls);
	if (d->nctls == 1)
		(void)sd_event_source_set_enabled(d->ctl_sweep, SD_EVENT_ON);
}

/* Out of descriptors: accepting waits until one is closed (or a short
 * while, for descriptors closed elsewhere) instead of failing again and
 * again while the connection waits in the backlog. */
static void
ctl_accept_pause(struct fanoutd *d, int err)
{
	if (!d->accept_starved && log_limit(&fd_ll))
		log_warnx("cannot accept control connections: %s; waiting "
		    "for a descriptor to be closed", strerror(err));
	d->accept_starved = true;
	d->accept_paused = true;
	(void)sd_event_source_set_enabled(d->ctl_src, SD_EVENT_OFF);
	(void)sd_event_source_set_time_relative(d->accept_timer,
	    CTL_ACCEPT_RETRY_USEC);
	(void)sd_event_source_set_enabled(d->accept_timer, SD_EVENT_ONESHOT);
}

void
control_fd_freed(struct fanoutd *d)
{
	if (!d->accept_paused || d->ctl_src == NULL)
		return;
	d->accept_paused = false;
	(void)sd_event_source_set_enabled(d->accept_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(d->ctl_src, SD_EVENT_ON);
}

static int
on_accept_retry(sd_event_source *s, uint64_t usec, void *arg)
{
	(void)s;
	(void)usec;
	control_fd_freed(arg);
	return 0;
}

static int
on_accept(sd_event_source *s, int lfd, uint32_t revents, void *arg)
{
	struct fanoutd *d = arg;
	int fd = -1, n;

	(void)s;
	(void)revents;
	for (n = 0; n < CTL_ACCEPT_BATCH; n++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break;
		if (d->accept_starved) {
			d->accept_starved = false;
			log_notice("accepting control connections again");
		}
		ctl_accept_one(d, fd);
	}
	if (fd >= 0)
		return 0;	/* more wait: the next turn takes them */
	if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
	    errno == ENOMEM)
		ctl_accept_pause(d, errno);
	else if (errno != EAGAIN && errno != EINTR &&
	    errno != ECONNABORTED && log_limit(&refused_ll))
		log_warn("accepting a control connection");
	return 0;
}

static uint64_t
ctl_sweep_usec(const struct fanoutd *d)
{
	uint32_t ms = d->conf.control_idle_timeout_ms <
	    d->conf.control_frame_timeout_ms ? d->conf.control_idle_timeout_ms :
	    d->conf.control_frame_timeout_ms;
	uint64_t usec = (uint64_t)ms * 1000 / 4;

	if (usec < CTL_SWEEP_MIN_USEC)
		return CTL_SWEEP_MIN_USEC;
	return usec > CTL_SWEEP_MAX_USEC ? CTL_SWEEP_MAX_USEC : usec;
}

/* Idle clients and frames that do not come: closed at their deadlines.
 * Idle: nothing outstanding and no byte moved either way; a client that
 * waits for a reload or for acks is not idle. */
static int
on_ctl_sweep(sd_event_source *s, uint64_t usec, void *arg)
{
	struct fanoutd *d = arg;
	uint64_t now = now_usec();
	uint64_t idle = (uint64_t)d->conf.control_idle_timeout_ms * 1000;
	uint64_t frame = (uint64_t)d->conf.control_frame_timeout_ms * 1000;
	struct ctl_conn *c, *next;

	(void)usec;
	for (c = d->ctls; c != NULL; c = next) {
		next = c->next;
		if (c->frame_usec != 0 && now - c->frame_usec >= frame)
			ctl_cut(c, "frame not complete after %llu ms",
			    (unsigned long long)(now - c->frame_usec) / 1000);
		else if (c->ninflight == 0 && now - c->io_usec >= idle) {
			log_debug("control client (pid %d, uid %u): idle for "
			    "%llu ms; closing the connection", (int)c->pid,
			    (unsigned)c->uid,
			    (unsigned long long)(now - c->io_usec) / 1000);
			ctl_close(c);
		}
	}
	(void)sd_event_source_set_time_relative(s, ctl_sweep_usec(d));
	(void)sd_event_source_set_enabled(s, d->nctls > 0 ? SD_EVENT_ON :
	    SD_EVENT_OFF);
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
	d->ctl_mem -= c->mem;
	c->io_src = sd_event_source_disable_unref(c->io_src);
	c->resume_src = sd_event_source_disable_unref(c->resume_src);
	close(c->fd);
	rbuf_free(&c->in);
	wbuf_free(&c->out);
	free(c);
	if (d->stopping)
		fanoutd_check_done(d);
	control_fd_freed(d);
	ctl_mem_freed(d);
}

void
control_flush(struct ctl_conn *c)
{
	struct fanoutd *d = c->d;
	size_t before = wbuf_pending(&c->out), after;
	int r;

	c->dirty = false;
	r = wbuf_flush(&c->out, c->fd);
	c->out_blocked = r == 1;
	if (r < 0) {
		log_debug("control client: %s", strerror(-r));
		ctl_close(c);
		return;
	}
	if ((after = wbuf_pending(&c->out)) < before)
		c->io_usec = loop_now(d);
	ctl_account(c);
	/* Replies it does not read: a whole budget that the socket does
	 * not take, or any when all clients' buffers are full, and the
	 * client is cut off.  (Requests are handled up to the budget; the
	 * replies that fit in the socket do not count.) */
	if (r == 1 && after >= d->conf.control_output_max_bytes) {
		ctl_cut(c, "%llu bytes of replies unread, more than "
		    "control_output_max_bytes", (unsigned long long)after);
		return;
	}
	if (r == 1 && d->ctl_mem > d->conf.control_buffer_max_bytes) {
		ctl_cut(c, "%llu bytes of replies unread while control "
		    "buffers are full", (unsigned long long)after);
		return;
	}
	ctl_shrink(c);
	/* Requests taken before a bad frame still get their answers. */
	if (r == 0 && c->closing && c->ninflight == 0) {
		ctl_close(c);
		return;
	}
	ctl_set_events(c);
	ctl_resume(c);
}

/*
 * What listens on path, connected as fd: 1 if it answers a CTL_STATUS as a
 * fanoutd does (its reply begins with a frame header of our protocol), 0 if
 * it answers otherwise, closes, or says nothing within CTL_PROBE_MS.
 */
static int
ctl_probe(int fd)
{
	uint8_t req[FANOUT_HDR_LEN], rep[FANOUT_HDR_LEN];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct frame_hdr h;
	uint64_t end = now_usec() + (uint64_t)CTL_PROBE_MS * 1000;
	size_t got = 0;
	ssize_t n;
	int r;

	frame_hdr_encode(req, CTL_STATUS, 0, 1);
	if (write(fd, req, sizeof(req)) != (ssize_t)sizeof(req))
		return 0;
	while (got < sizeof(rep)) {
		uint64_t now = now_usec();

		if (now >= end)
			return 0;
		r = poll(&pfd, 1, (int)((end - now) / 1000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		if ((n = read(fd, rep + got, sizeof(rep) - got)) <= 0)
			return 0;
		got += (size_t)n;
	}
	return frame_hdr_decode(rep, FANOUT_PAYLOAD_MAX, &h) == 0 &&
	    (h.type == CTL_END || h.type == CTL_WORKER ||
	    h.type == CTL_DAEMON);
}

int
control_start(struct fanoutd *d)
{
	const char *path = d->conf.control_socket;
	struct stat st;
	int fd, r;

	/* Only a socket is ours to replace: never a file someone pointed
	 * control_socket at by mistake. */
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		log_errx("control socket %s: exists and is not a socket; "
		    "not removing it", path);
		return -EEXIST;
	}
	/* A daemon that answers owns the socket (one whose backlog stays
	 * full is there too: -EAGAIN); a dead one's file is only in the
	 * way. */
	if ((fd = unix_connect(path, 1000)) >= 0) {
		r = ctl_probe(fd);
		close(fd);
		if (r)
			log_errx("another fanoutd is already running on %s",
			    path);
		else
			log_errx("another program listens on %s (it does not "
			    "answer as fanoutd does); not starting", path);
		return -EADDRINUSE;
	}
	if (fd == -EAGAIN) {
		log_errx("a program listens on %s and does not accept "
		    "(another fanoutd?); not starting", path);
		return -EADDRINUSE;
	}
	if (fd == -ECONNREFUSED) {
		/* lstat again: what is unlinked is the socket seen. */
		if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
			log_errx("control socket %s: exists and is not a "
			    "socket; not removing it", path);
			return -EEXIST;
		}
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
	    d)) < 0 ||
	    (r = sd_event_add_time_relative(d->ev, &d->accept_timer,
	    CLOCK_MONOTONIC, CTL_ACCEPT_RETRY_USEC, 10 * 1000, on_accept_retry,
	    d)) < 0 ||
	    (r = sd_event_add_time_relative(d->ev, &d->ctl_sweep,
	    CLOCK_MONOTONIC, ctl_sweep_usec(d), ctl_sweep_usec(d) / 4,
	    on_ctl_sweep, d)) < 0) {
		log_errx("cannot watch control socket %s: %s", path,
		    strerror(-r));
		return r;
	}
	(void)sd_event_source_set_enabled(d->accept_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(d->ctl_sweep, SD_EVENT_OFF);
	return 0;
}

void
control_close_listener(struct fanoutd *d)
{
	if (d->ctl_fd < 0)
		return;
	d->ctl_src = sd_event_source_disable_unref(d->ctl_src);
	d->accept_timer = sd_event_source_disable_unref(d->accept_timer);
	d->accept_paused = false;
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
	if (now)
		d->ctl_sweep = sd_event_source_disable_unref(d->ctl_sweep);
}

bool
control_idle(const struct fanoutd *d)
{
	return d->ctls == NULL;
}
