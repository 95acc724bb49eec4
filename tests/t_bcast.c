/* SPDX-License-Identifier: MIT */
/*
 * Broadcasts (bcast.c): a message queued on every worker in one pass, each
 * worker's verdict (acked, queued, full, shutdown), the deadline on a real
 * sd_event loop, and what stays on the queues once the client is answered.
 *
 * Workers are made by hand with their states set directly and a recording
 * link.  A broadcast in flight is inspected through d->bcasts; a finished
 * one through the reply control.c writes for it, read back from a stand-in
 * client connection.  fanoutd.c (not in libfanoutd.a) is stubbed by
 * recorders.
 */
#include "config.h"

#include <sys/socket.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fanoutd.h"
#include "util.h"

#define NW		3
#define WAIT_USEC	10000000

static struct {
	unsigned	 changed;
	unsigned	 stops;
	unsigned	 check_done;
	unsigned	 sched_flush;
	unsigned	 closes;
} rec;

void
fanoutd_workers_changed(struct fanoutd *d)
{
	(void)d;
	rec.changed++;
}

void
fanoutd_stop(struct fanoutd *d, int exit_code)
{
	(void)d;
	(void)exit_code;
	rec.stops++;
}

void
fanoutd_check_done(struct fanoutd *d)
{
	(void)d;
	rec.check_done++;
}

void
fanoutd_schedule_flush(struct fanoutd *d)
{
	(void)d;
	rec.sched_flush++;
}

/* A reload's new settings (the open file limit): nothing to do here. */
void
fanoutd_conf_changed(struct fanoutd *d)
{
	(void)d;
}

static int
t_connect(struct worker *w)
{
	(void)w;
	return 0;
}

static void
t_flush(struct worker *w)
{
	(void)w;
}

static void
t_close(struct worker *w, bool drain)
{
	(void)drain;
	rec.closes++;
	queue_rewind(&w->q);
}

static const struct link_ops test_link_ops = {
	.connect = t_connect,
	.flush = t_flush,
	.close = t_close,
};

struct fx {
	struct fanoutd	 d;
	struct worker	*w[NW];
	struct ctl_conn	 c;	/* a client, for the tests that want replies */
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	uint32_t i;

	assert_non_null(f);
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(sd_event_new(&f->d.ev), 0);
	f->d.conf.workers = NW;
	f->d.conf.ack_timeout_ms = 5000;
	f->d.conf.start_timeout_ms = 10000;
	f->d.conf.stop_timeout_ms = 5000;
	f->d.conf.restart_max_delay_ms = 400;
	f->d.conf.restart_reset_ms = 60000;
	f->d.conf.queue_max_messages = 100;
	f->d.conf.queue_max_bytes = 1 << 20;
	f->d.ctl_fd = -1;
	f->d.ready = true;
	f->d.workers = calloc(NW, sizeof(*f->d.workers));
	assert_non_null(f->d.workers);
	for (i = 0; i < NW; i++) {
		struct worker *w = calloc(1, sizeof(*w));

		assert_non_null(w);
		w->d = &f->d;
		w->index = i;
		w->port = (uint16_t)(40000 + i);
		/* No process is ever signalled here: pids are only copied. */
		w->pid = (pid_t)(1000 + i);
		w->state = W_UP;
		w->member = true;
		w->state_usec = now_usec();
		w->notify_fd = w->link.fd = -1;
		w->link.ops = &test_link_ops;
		queue_init(&w->q, f->d.conf.queue_max_messages,
		    f->d.conf.queue_max_bytes);
		f->d.workers[f->d.nworkers++] = f->w[i] = w;
	}
	f->d.nup = NW;
	f->c.d = &f->d;
	f->c.fd = -1;
	wbuf_init(&f->c.out);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	bcast_abort_all(&f->d);
	pool_free(&f->d);
	wbuf_free(&f->c.out);
	f->d.ev = sd_event_unref(f->d.ev);
	free(f);
	return 0;
}

static void
set_states(struct fx *f, enum worker_state s0, enum worker_state s1,
    enum worker_state s2)
{
	f->w[0]->state = s0;
	f->w[1]->state = s1;
	f->w[2]->state = s2;
	f->d.nup = (s0 == W_UP) + (s1 == W_UP) + (s2 == W_UP);
}

/* Starts a broadcast of text; returns it, or NULL if it finished at once. */
static struct bcast *
start(struct fx *f, struct ctl_conn *c, uint64_t req_id, const char *text,
    uint32_t timeout_ms, bool wait)
{
	struct bcast *tail = f->d.bcasts_tail;

	assert_int_equal(bcast_start(&f->d, c, req_id, (const uint8_t *)text,
	    strlen(text), timeout_ms, wait ? CTL_SEND_WAIT : 0), 0);
	return f->d.bcasts_tail != tail ? f->d.bcasts_tail : NULL;
}

/* The worker wrote its queue and acked the oldest message. */
static void
ack(struct worker *w)
{
	assert_true(w->q.n > 0);
	if (w->q.nsent == 0)
		w->q.nsent = w->q.n;	/* written, as peer.c counts */
	bcast_acked(w, HS_OK, NULL, 0);
}

static void
run_until_no_bcasts(struct fx *f)
{
	uint64_t end = now_usec() + WAIT_USEC;

	while (f->d.bcasts != NULL && now_usec() < end)
		assert_true(sd_event_run(f->d.ev, 100000) >= 0);
	assert_null(f->d.bcasts);
}

struct reply {
	uint64_t	 req_id;
	unsigned	 nrec;
	struct ctl_worker rec[NW];
	struct ctl_end	 end;
	unsigned	 nend;
};

/* Reads the reply control.c wrote to the client (one CTL_WORKER per
 * worker, then CTL_END) back through a socket, as fanoutctl would. */
static void
read_reply(struct fx *f, struct reply *r)
{
	struct frame_hdr h;
	const uint8_t *p;
	struct rbuf rb;
	int sv[2], n;

	memset(r, 0, sizeof(*r));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sv), 0);
	assert_int_equal(wbuf_flush(&f->c.out, sv[0]), 0);
	close(sv[0]);
	rbuf_init(&rb, CTL_WORKER_LEN);
	while (rbuf_read(&rb, sv[1]) > 0)
		;
	while ((n = rbuf_next(&rb, &h, &p)) == 1) {
		r->req_id = h.id;
		if (h.type == CTL_WORKER) {
			assert_int_equal(r->nend, 0);
			assert_true(r->nrec < NW);
			assert_int_equal(ctl_worker_decode(p, h.len,
			    &r->rec[r->nrec++]), 0);
		} else {
			assert_int_equal(h.type, CTL_END);
			assert_int_equal(ctl_end_decode(p, h.len, &r->end), 0);
			r->nend++;
		}
	}
	assert_int_equal(n, 0);
	assert_int_equal(r->nend, 1);
	assert_int_equal(r->nrec, NW);
	rbuf_free(&rb);
	close(sv[1]);
}

/* Nothing written to the client (yet). */
static void
assert_no_reply(struct fx *f)
{
	assert_int_equal(wbuf_pending(&f->c.out), 0);
}

/* A worker that is away gets "queued" at once; one that is up is waited
 * for.  The message is on every queue all the same. */
static void
test_away_queued_at_once(void **state)
{
	struct fx *f = *state;
	struct frame_hdr h;
	struct bcast *b;
	struct msg *m;
	uint32_t i;

	set_states(f, W_UP, W_BACKOFF, W_STARTING);
	b = start(f, NULL, 7, "hello", 1000, false);
	assert_non_null(b);
	assert_ptr_equal(f->d.bcasts, b);
	assert_int_equal(b->res[0].outcome, ACK_NONE);
	assert_int_equal(b->res[1].outcome, ACK_QUEUED);
	assert_int_equal(b->res[2].outcome, ACK_QUEUED);
	assert_int_equal(b->npending, 1);
	assert_int_equal(b->nqueued, 2);
	assert_int_equal(b->nacked, 0);
	assert_int_equal(b->nworkers, NW);
	assert_true(b->req_id == 7);
	assert_int_equal(b->timeout_ms, 1000);
	assert_false(b->wait);
	assert_non_null(b->timer);
	m = b->m;
	assert_ptr_equal(m->b, b);
	for (i = 0; i < NW; i++) {
		assert_int_equal(b->res[i].pid, 1000 + i);
		assert_int_equal(f->w[i]->q.n, 1);
		assert_ptr_equal(queue_at(&f->w[i]->q, 0), m);
		assert_true(f->w[i]->q.bytes == 5);
	}
	/* the broadcast's reference and one per queue */
	assert_int_equal(m->refs, 1 + NW);
	/* The MSG_DATA frame, encoded once. */
	assert_true(m->id == 1);
	assert_int_equal(m->len, FANOUT_HDR_LEN + 5);
	assert_int_equal(frame_hdr_decode(m->frame, 5, &h), 0);
	assert_int_equal(h.type, MSG_DATA);
	assert_int_equal(h.len, 5);
	assert_true(h.id == 1);
	assert_memory_equal(m->frame + FANOUT_HDR_LEN, "hello", 5);
	/* Only the worker that is up is written to. */
	assert_true(f->w[0]->dirty);
	assert_false(f->w[1]->dirty);
	assert_false(f->w[2]->dirty);
	assert_int_equal(rec.sched_flush, 1);
	assert_true(f->d.accepted == 1);

	ack(f->w[0]);
	assert_null(f->d.bcasts);
	assert_null(f->d.bcasts_tail);
	assert_int_equal(f->w[0]->q.n, 0);
	assert_int_equal(f->w[0]->q.nsent, 0);
	assert_true(f->w[0]->acked == 1);
	/* answered: the queues of the two away keep it */
	assert_int_equal(m->refs, 2);
	assert_null(m->b);
	assert_int_equal(f->w[1]->q.n, 1);
	assert_int_equal(f->w[2]->q.n, 1);
	assert_int_equal(rec.check_done, 0);
}

/* With CTL_SEND_WAIT, away workers are waited for too, up to the deadline. */
static void
test_wait_keeps_pending(void **state)
{
	struct fx *f = *state;
	struct reply r;
	struct bcast *b;
	uint64_t t0;

	set_states(f, W_UP, W_BACKOFF, W_STALLED);
	t0 = now_usec();
	b = start(f, &f->c, 42, "wait for me", 30, true);
	assert_non_null(b);
	assert_true(b->wait);
	assert_int_equal(b->npending, NW);
	assert_int_equal(b->nqueued, 0);
	assert_int_equal(f->c.ninflight, 1);
	/* going away again does not settle a waiting broadcast */
	bcast_worker_away(f->w[1]);
	assert_int_equal(b->res[1].outcome, ACK_NONE);
	assert_int_equal(b->npending, NW);
	usleep(2000);
	ack(f->w[0]);
	assert_int_equal(b->res[0].outcome, ACK_OK);
	assert_true(b->res[0].rtt_us >= 2000);
	assert_int_equal(b->npending, 2);
	assert_no_reply(f);

	run_until_no_bcasts(f);
	assert_true(now_usec() - t0 >= 30000);
	assert_int_equal(f->c.ninflight, 0);
	read_reply(f, &r);
	assert_true(r.req_id == 42);
	assert_int_equal(r.rec[0].outcome, ACK_OK);
	assert_true(r.rec[0].rtt_us >= 2000);
	assert_int_equal(r.rec[1].outcome, ACK_QUEUED);
	assert_int_equal(r.rec[2].outcome, ACK_QUEUED);
	assert_int_equal(r.rec[1].pid, 1001);
	assert_int_equal(r.rec[2].state, WS_STALLED);
	assert_int_equal(r.end.result, CTL_RES_PARTIAL);
	assert_int_equal(r.end.acked, 1);
	assert_int_equal(r.end.workers, NW);
	assert_int_equal(r.end.queued, 2);
	assert_int_equal(r.end.limit, 30);
	assert_true(r.end.msg_id == 1);
	/* still queued for the two away */
	assert_int_equal(f->w[1]->q.n, 1);
	assert_int_equal(f->w[2]->q.n, 1);
}

/* Every worker acks: CTL_RES_OK, each outcome "acked" with its rtt. */
static void
test_all_acked_ok(void **state)
{
	struct fx *f = *state;
	struct reply r;
	uint32_t i;

	assert_non_null(start(f, &f->c, 9, "x", 1000, false));
	usleep(1000);
	for (i = 0; i < NW; i++) {
		assert_no_reply(f);
		ack(f->w[i]);
		assert_true(f->w[i]->last_rtt_us >= 1000);
		assert_true(f->w[i]->progress_usec > 0);
	}
	assert_null(f->d.bcasts);
	read_reply(f, &r);
	assert_int_equal(r.end.result, CTL_RES_OK);
	assert_int_equal(r.end.acked, NW);
	assert_int_equal(r.end.queued, 0);
	for (i = 0; i < NW; i++) {
		assert_int_equal(r.rec[i].outcome, ACK_OK);
		assert_true(r.rec[i].rtt_us >= 1000);
		assert_int_equal(r.rec[i].index, i);
		assert_int_equal(f->w[i]->q.n, 0);
	}
}

/* A queue full by count or by bytes refuses the new message for that
 * worker only; what it holds stays. */
static void
test_full(void **state)
{
	struct fx *f = *state;
	struct bcast *b1, *b2;
	struct msg *m1;

	f->w[1]->q.max_n = 1;
	f->w[2]->q.max_bytes = 10;
	b1 = start(f, NULL, 1, "12345678", 1000, false);
	assert_non_null(b1);
	m1 = b1->m;
	assert_int_equal(b1->npending, NW);
	b2 = start(f, NULL, 2, "abcdefgh", 1000, false);
	assert_non_null(b2);
	assert_int_equal(b2->res[0].outcome, ACK_NONE);
	assert_int_equal(b2->res[1].outcome, ACK_FULL);
	assert_int_equal(b2->res[2].outcome, ACK_FULL);
	assert_int_equal(b2->npending, 1);
	assert_int_equal(b2->nqueued, 0);
	assert_int_equal(b2->m->refs, 2);	/* the broadcast, worker 0 */
	assert_int_equal(f->w[0]->q.n, 2);
	/* the older message is still there, alone */
	assert_int_equal(f->w[1]->q.n, 1);
	assert_ptr_equal(queue_at(&f->w[1]->q, 0), m1);
	assert_int_equal(f->w[2]->q.n, 1);
	assert_ptr_equal(queue_at(&f->w[2]->q, 0), m1);
	assert_true(f->w[2]->q.bytes == 8);
	assert_int_equal(m1->refs, 1 + NW);
	/* and the first broadcast is unaffected */
	assert_int_equal(b1->npending, NW);
	assert_int_equal(b1->res[1].outcome, ACK_NONE);
}

/* Full everywhere: the broadcast is answered at once, the message freed. */
static void
test_full_everywhere(void **state)
{
	struct fx *f = *state;
	struct reply r;
	uint32_t i;

	for (i = 0; i < NW; i++)
		f->w[i]->q.max_bytes = 2;
	assert_null(start(f, &f->c, 5, "too long", 1000, false));
	assert_null(f->d.bcasts);
	for (i = 0; i < NW; i++)
		assert_int_equal(f->w[i]->q.n, 0);
	read_reply(f, &r);
	for (i = 0; i < NW; i++)
		assert_int_equal(r.rec[i].outcome, ACK_FULL);
	assert_int_equal(r.end.result, CTL_RES_PARTIAL);
	assert_int_equal(r.end.acked, 0);
	assert_int_equal(r.end.queued, 0);
	assert_true(r.end.msg_id == 1);
	assert_int_equal(f->c.ninflight, 0);
}

/* An ack settles "acked" with the round trip and takes the message off. */
static void
test_acked_pops(void **state)
{
	struct fx *f = *state;
	struct bcast *a, *b;
	struct msg *ma, *mb;

	set_states(f, W_UP, W_UP, W_BACKOFF);
	a = start(f, NULL, 1, "first", 1000, false);
	b = start(f, NULL, 2, "second", 1000, false);
	ma = a->m;
	mb = b->m;
	assert_ptr_equal(f->d.bcasts, a);
	assert_ptr_equal(f->d.bcasts_tail, b);
	assert_ptr_equal(a->next, b);
	assert_ptr_equal(b->prev, a);
	usleep(2000);
	f->w[0]->q.nsent = 2;
	bcast_acked(f->w[0], HS_OK, NULL, 0);
	/* the oldest: a's */
	assert_int_equal(a->res[0].outcome, ACK_OK);
	assert_true(a->res[0].rtt_us >= 2000);
	assert_int_equal(a->nacked, 1);
	assert_int_equal(a->npending, 1);
	assert_int_equal(b->res[0].outcome, ACK_NONE);
	assert_int_equal(f->w[0]->q.n, 1);
	assert_int_equal(f->w[0]->q.nsent, 1);
	assert_ptr_equal(queue_at(&f->w[0]->q, 0), mb);
	assert_true(f->w[0]->q.bytes == 6);
	assert_int_equal(ma->refs, 1 + 2);	/* a, workers 1 and 2 */
	assert_true(f->w[0]->acked == 1);
	assert_true(f->w[0]->last_rtt_us >= 2000);

	bcast_acked(f->w[0], HS_OK, NULL, 0);
	assert_int_equal(b->res[0].outcome, ACK_OK);
	assert_int_equal(f->w[0]->q.n, 0);
	assert_true(f->w[0]->acked == 2);
	/* worker 1 answers both: both broadcasts are done, oldest first */
	ack(f->w[1]);
	assert_ptr_equal(f->d.bcasts, b);
	assert_null(b->prev);
	assert_int_equal(ma->refs, 1);		/* worker 2's queue */
	ack(f->w[1]);
	assert_null(f->d.bcasts);
	assert_null(f->d.bcasts_tail);
	assert_int_equal(f->w[2]->q.n, 2);
}

/* An ack for a message whose broadcast was already answered just pops it. */
static void
test_ack_after_answer(void **state)
{
	struct fx *f = *state;
	struct bcast *b;
	struct msg *m;

	b = start(f, NULL, 1, "late", 20, false);
	m = b->m;
	run_until_no_bcasts(f);
	assert_null(m->b);
	assert_int_equal(m->refs, NW);
	ack(f->w[0]);
	assert_int_equal(m->refs, NW - 1);
	assert_true(f->w[0]->acked == 1);
	ack(f->w[1]);
	ack(f->w[2]);		/* the last reference: freed */
	assert_int_equal(f->w[2]->q.n, 0);
}

/* A worker that leaves UP while a broadcast waits on it: "queued" then,
 * not at the deadline.  The message stays on its queue. */
static void
test_worker_away_settles_queued(void **state)
{
	struct fx *f = *state;
	struct reply r;
	struct bcast *b;

	b = start(f, &f->c, 3, "msg", 10000, false);
	assert_int_equal(b->npending, NW);
	f->w[1]->state = W_STALLED;
	f->d.nup--;
	bcast_worker_away(f->w[1]);
	assert_int_equal(b->res[1].outcome, ACK_QUEUED);
	assert_int_equal(b->nqueued, 1);
	assert_int_equal(b->npending, NW - 1);
	/* once settled, settled */
	bcast_worker_away(f->w[1]);
	bcast_settle(b, 1, ACK_OK);
	bcast_settle(b, NW, ACK_OK);	/* no such worker */
	assert_int_equal(b->res[1].outcome, ACK_QUEUED);
	assert_int_equal(b->nqueued, 1);
	assert_int_equal(b->nacked, 0);
	assert_int_equal(b->npending, NW - 1);

	/* The pool's way: the link drops, the slot leaves UP. */
	pool_link_lost(f->w[2], "link lost: test");
	assert_int_equal(f->w[2]->state, W_BACKOFF);
	assert_int_equal(rec.closes, 1);
	assert_int_equal(b->res[2].outcome, ACK_QUEUED);
	assert_int_equal(b->npending, 1);
	assert_int_equal(f->w[1]->q.n, 1);
	assert_int_equal(f->w[2]->q.n, 1);

	ack(f->w[0]);
	assert_null(f->d.bcasts);
	read_reply(f, &r);
	assert_int_equal(r.rec[0].outcome, ACK_OK);
	assert_int_equal(r.rec[1].outcome, ACK_QUEUED);
	assert_int_equal(r.rec[2].outcome, ACK_QUEUED);
	assert_int_equal(r.rec[2].state, WS_BACKOFF);
	assert_int_equal(r.end.result, CTL_RES_PARTIAL);
	assert_int_equal(r.end.acked, 1);
	assert_int_equal(r.end.queued, 2);
	assert_int_equal(rec.stops, 0);
}

/* While stopping, the queues go with the daemon: "shutdown", wait or not. */
static void
test_worker_away_stopping(void **state)
{
	struct fx *f = *state;
	struct reply r;
	struct bcast *b;

	b = start(f, &f->c, 4, "msg", 10000, true);
	f->d.stopping = true;
	bcast_worker_away(f->w[0]);
	assert_int_equal(b->res[0].outcome, ACK_SHUTDOWN);
	assert_int_equal(b->nqueued, 0);
	assert_int_equal(b->npending, NW - 1);
	assert_int_equal(rec.check_done, 0);
	bcast_worker_away(f->w[1]);
	bcast_worker_away(f->w[2]);
	assert_null(f->d.bcasts);
	/* the last answer lets the shutdown move on */
	assert_int_equal(rec.check_done, 1);
	read_reply(f, &r);
	assert_int_equal(r.rec[0].outcome, ACK_SHUTDOWN);
	assert_int_equal(r.rec[1].outcome, ACK_SHUTDOWN);
	assert_int_equal(r.rec[2].outcome, ACK_SHUTDOWN);
	assert_int_equal(r.end.result, CTL_RES_PARTIAL);
	assert_int_equal(r.end.queued, 0);
}

/* The deadline: whatever is pending then is "queued" (kept). */
static void
test_deadline_queued(void **state)
{
	struct fx *f = *state;
	struct reply r;
	struct bcast *b;
	uint64_t t0 = now_usec();
	uint32_t i;

	set_states(f, W_UP, W_UP, W_BACKOFF);
	b = start(f, &f->c, 11, "deadline", 20, false);
	assert_int_equal(b->npending, 2);
	/* one turn of the loop is not the deadline */
	assert_true(sd_event_run(f->d.ev, 0) >= 0);
	assert_ptr_equal(f->d.bcasts, b);
	assert_no_reply(f);
	run_until_no_bcasts(f);
	assert_true(now_usec() - t0 >= 20000);
	read_reply(f, &r);
	for (i = 0; i < NW; i++) {
		assert_int_equal(r.rec[i].outcome, ACK_QUEUED);
		assert_int_equal(r.rec[i].rtt_us, 0);
		/* still on every queue */
		assert_int_equal(f->w[i]->q.n, 1);
	}
	assert_int_equal(r.end.result, CTL_RES_PARTIAL);
	assert_int_equal(r.end.acked, 0);
	assert_int_equal(r.end.queued, NW);
	assert_int_equal(r.end.limit, 20);
	assert_int_equal(queue_at(&f->w[0]->q, 0)->refs, NW);
	assert_int_equal(rec.check_done, 0);
}

/* The deadline while stopping: "shutdown" for what is pending. */
static void
test_deadline_stopping(void **state)
{
	struct fx *f = *state;
	struct reply r;

	set_states(f, W_UP, W_UP, W_BACKOFF);
	assert_non_null(start(f, &f->c, 12, "deadline", 20, false));
	ack(f->w[1]);
	f->d.stopping = true;
	run_until_no_bcasts(f);
	read_reply(f, &r);
	assert_int_equal(r.rec[0].outcome, ACK_SHUTDOWN);
	assert_int_equal(r.rec[1].outcome, ACK_OK);
	/* settled before the stop, and kept */
	assert_int_equal(r.rec[2].outcome, ACK_QUEUED);
	assert_int_equal(r.end.acked, 1);
	assert_int_equal(r.end.queued, 1);
	assert_int_equal(rec.check_done, 1);
}

/* Ids grow in acceptance order; the list of broadcasts stays linked when
 * one in the middle finishes first. */
static void
test_ids_and_list(void **state)
{
	struct fx *f = *state;
	struct bcast *a, *b, *c, *d;
	uint64_t ida, idb, idc;

	set_states(f, W_UP, W_DEAD, W_DEAD);
	a = start(f, NULL, 1, "a", 10000, true);
	b = start(f, NULL, 2, "b", 20, true);
	c = start(f, NULL, 3, "c", 10000, true);
	ida = a->m->id;
	idb = b->m->id;
	idc = c->m->id;
	assert_true(ida == 1 && idb == 2 && idc == 3);
	assert_true(f->d.next_msg_id == 3);
	assert_true(f->d.accepted == 3);
	/* b reaches its deadline first */
	{
		uint64_t end = now_usec() + WAIT_USEC;

		while (a->next == b && now_usec() < end)
			assert_true(sd_event_run(f->d.ev, 100000) >= 0);
	}
	assert_ptr_equal(f->d.bcasts, a);
	assert_ptr_equal(a->next, c);
	assert_ptr_equal(c->prev, a);
	assert_ptr_equal(f->d.bcasts_tail, c);
	/* the worker's queue is in id order */
	assert_true(queue_at(&f->w[0]->q, 0)->id == ida);
	assert_true(queue_at(&f->w[0]->q, 1)->id == idb);
	assert_true(queue_at(&f->w[0]->q, 2)->id == idc);
	/* a new one gets the next id, whatever finished */
	d = start(f, NULL, 4, "d", 10000, false);
	assert_non_null(d);
	assert_true(d->m->id == 4);
	assert_true(f->d.accepted == 4);
	bcast_abort_all(&f->d);
	assert_null(f->d.bcasts);
	assert_null(f->d.bcasts_tail);
	assert_int_equal(f->w[0]->q.n, 4);
}

/* A client that went away gets no reply; the broadcast goes on. */
static void
test_detach_client(void **state)
{
	struct fx *f = *state;
	struct bcast *b;
	uint32_t i;

	b = start(f, &f->c, 1, "m", 10000, false);
	assert_int_equal(f->c.ninflight, 1);
	bcast_detach_client(&f->d, &f->c);
	assert_null(b->c);
	for (i = 0; i < NW; i++)
		ack(f->w[i]);
	assert_null(f->d.bcasts);
	assert_no_reply(f);
}

int
main(void)
{
#define T(name)	cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_away_queued_at_once),
		T(test_wait_keeps_pending),
		T(test_all_acked_ok),
		T(test_full),
		T(test_full_everywhere),
		T(test_acked_pops),
		T(test_ack_after_answer),
		T(test_worker_away_settles_queued),
		T(test_worker_away_stopping),
		T(test_deadline_queued),
		T(test_deadline_stopping),
		T(test_ids_and_list),
		T(test_detach_client),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
