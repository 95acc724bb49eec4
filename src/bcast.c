/* SPDX-License-Identifier: MIT */
/*
 * The broadcast lifecycle: give a message its id, put it on every worker's
 * queue in one pass, record each worker's verdict, and answer the control
 * client once every worker has one or the deadline has passed.  Answering
 * does not take the message off any queue: only an ack does.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fanoutd.h"
#include "log.h"
#include "util.h"

static void
bcast_free_reasons(struct bcast *b)
{
	uint32_t i;

	for (i = 0; b->nfailed > 0 && i < b->nslots; i++)
		free(b->res[i].reason);
}

/* A batch with its `queued' verdicts was lost (spooler.c): they were
 * never on disk, and fanoutd is stopping. */
static void
bcast_unspool(struct bcast *b)
{
	uint32_t i;

	for (i = 0; i < b->nslots; i++)
		if (b->res[i].member && b->res[i].outcome == ACK_QUEUED) {
			b->res[i].outcome = ACK_SHUTDOWN;
			b->nqueued--;
		}
}

static void
bcast_answer(struct bcast *b)
{
	struct fanoutd *d = b->d;

	if (d->spool_failed && b->spool_batch >= d->spool_lost_batch)
		bcast_unspool(b);
	log_trace("message %llu, %zu byte%s, %u workers: %u acked, %u failed, "
	    "%u queued", (unsigned long long)b->m->id,
	    msg_payload_len(b->m), PLURAL(msg_payload_len(b->m)),
	    b->nworkers, b->nacked, b->nfailed, b->nqueued);
	if (b->c != NULL) {
		control_reply_bcast(b->c, b);
		control_bcast_done(b->c);
	}
	b->m->b = NULL;
	msg_unref(b->m);
	bcast_free_reasons(b);
	b->timer = sd_event_source_disable_unref(b->timer);
	if (b->prev != NULL)
		b->prev->next = b->next;
	else
		d->bcasts = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	else
		d->bcasts_tail = b->prev;
	free(b);
	if (d->stopping)
		fanoutd_check_done(d);
}

/* Every worker has its verdict.  A `queued' one staged in the spool's
 * current batch is true only once that is committed: until then the
 * broadcast is held, and spooler_commit answers it. */
static void
bcast_finish(struct bcast *b)
{
	struct fanoutd *d = b->d;

	if (b->spool_batch != 0 && b->spool_batch == d->spool_batch &&
	    !d->spool_failed) {
		b->held = true;
		b->timer = sd_event_source_disable_unref(b->timer);
		d->nheld++;
		fanoutd_schedule_flush(d);
		return;
	}
	bcast_answer(b);
}

void
bcast_release_held(struct fanoutd *d)
{
	struct bcast *b, *next;

	for (b = d->bcasts; b != NULL && d->nheld > 0; b = next) {
		next = b->next;
		if (!b->held)
			continue;
		b->held = false;
		d->nheld--;
		bcast_answer(b);
	}
}

void
bcast_settle(struct bcast *b, uint32_t index, uint8_t outcome)
{
	struct bcast_res *res;

	if (index >= b->nslots || !b->res[index].member ||
	    b->res[index].outcome != ACK_NONE)
		return;
	res = &b->res[index];
	res->outcome = outcome;
	if (outcome == ACK_OK || outcome == ACK_FAILED) {
		/* 0 means "none": an ack in the same loop turn is 1 us. */
		res->rtt_us = (uint32_t)(loop_now(b->d) - b->m->accepted_usec);
		if (res->rtt_us == 0)
			res->rtt_us = 1;
		if (outcome == ACK_OK)
			b->nacked++;
		else
			b->nfailed++;
	} else if (outcome == ACK_QUEUED)
		b->nqueued++;

	if (--b->npending == 0)
		bcast_finish(b);
}

/* m leaves w's queue, unless some of it is written already: a message
 * the spool could not take is refused, not kept in memory only. */
static void
unqueue(struct worker *w, struct msg *m)
{
	uint32_t i;

	for (i = w->q.n; i-- > queue_first_unsent(&w->q); )
		if (queue_at(&w->q, i) == m) {
			msg_unref(queue_remove_at(&w->q, i));
			return;
		}
}

/*
 * The verdict for m on worker w, which did not ack it in time or is
 * away: kept (on disk, with a spool), unless the spool is full, or the
 * daemon is going away with no spool to keep it in.
 */
static uint8_t
unacked_outcome(struct worker *w, struct msg *m)
{
	struct fanoutd *d = w->d;

	if (d->spool == NULL)
		return d->stopping ? ACK_SHUTDOWN : ACK_QUEUED;
	switch (spooler_keep(w, m)) {
	case 0:
		return ACK_QUEUED;
	case -ENOSPC:
		w->refused++;
		unqueue(w, m);
		return ACK_FULL;
	default:
		return ACK_SHUTDOWN;
	}
}

/* The worker slot i of broadcast b stands for, if it still does. */
static struct worker *
bcast_worker(const struct bcast *b, uint32_t i)
{
	struct fanoutd *d = b->d;

	if (i >= b->nlocal || i >= d->nworkers ||
	    d->workers[i]->serial != b->res[i].serial)
		return NULL;
	return d->workers[i];
}

/* Slot i's wait is over without an ack: its verdict, counted.  gone: the
 * verdict when the slot's worker is no longer there. */
static uint8_t
bcast_unacked_slot(struct bcast *b, uint32_t i, uint8_t gone)
{
	struct worker *w = bcast_worker(b, i);
	struct bcast_res *res = &b->res[i];

	if (i >= b->nlocal)	/* remote: the broker has it, or not */
		res->outcome = res->stored ? ACK_QUEUED : b->d->stopping ?
		    ACK_SHUTDOWN : ACK_DOWN;
	else
		res->outcome = w == NULL ? gone : unacked_outcome(w, b->m);
	if (res->outcome == ACK_QUEUED)
		b->nqueued++;
	return res->outcome;
}

/* A failed handler: the worker remembers it for status, the broadcast
 * for its reply.  Without memory the reply still has the status. */
static void
bcast_failed(struct worker *w, struct msg *m, uint32_t status,
    const uint8_t *reason, size_t reason_len)
{
	struct bcast_res *res;

	w->failed++;
	w->last_status = status;
	w->last_reason_len = (uint8_t)reason_len;
	if (reason_len > 0)
		memcpy(w->last_reason, reason, reason_len);
	if (m->b == NULL || w->index >= m->b->nlocal)
		return;
	res = &m->b->res[w->index];
	if (!res->member || res->outcome != ACK_NONE)
		return;
	res->status = status;
	if (reason_len > 0 && (res->reason = malloc(reason_len)) != NULL) {
		memcpy(res->reason, reason, reason_len);
		res->reason_len = (uint8_t)reason_len;
	}
	bcast_settle(m->b, w->index, ACK_FAILED);
}

/* Which histogram bucket a round trip falls in: a few compares. */
unsigned
hist_bucket(uint32_t rtt_us)
{
	static const uint32_t bounds[] = FANOUT_HIST_BOUNDS_US;
	unsigned i;

	_Static_assert(nitems(bounds) + 1 == FANOUT_HIST_BUCKETS,
	    "one bucket per bound, and one above them");
	for (i = 0; i < nitems(bounds) && rtt_us > bounds[i]; i++)
		;
	return i;
}

void
bcast_acked(struct worker *w, uint32_t status, const uint8_t *reason,
    size_t reason_len)
{
	struct msg *m = queue_pop(&w->q);
	uint64_t now = loop_now(w->d);

	w->acked++;
	w->progress_usec = now;
	w->last_rtt_us = (uint32_t)(now - m->accepted_usec);
	if (w->last_rtt_us == 0)
		w->last_rtt_us = 1;
	w->rtt_sum_us += w->last_rtt_us;
	w->rtt_hist[hist_bucket(w->last_rtt_us)]++;
	spooler_acked(w, m);
	if (status != HS_OK)
		bcast_failed(w, m, status, reason, reason_len);
	else if (m->b != NULL)
		bcast_settle(m->b, w->index, ACK_OK);
	msg_unref(m);
	/* A reload waits for this one's queue to empty, or its in-flight
	 * messages to be acked. */
	if ((w->retiring && w->q.n == 0) || (w->draining && w->q.nsent == 0))
		reload_kick(w->d);
}

void
bcast_worker_removed(struct worker *w)
{
	uint64_t n;
	uint32_t i;

	for (i = 0; i < w->q.n; i++) {
		struct msg *m = queue_at(&w->q, i);

		if (m->b != NULL)
			bcast_settle(m->b, w->index, ACK_REMOVED);
	}
	(void)spooler_drop(w->d, w->index, &n);
}

void
bcast_drop_unsent(struct worker *w, uint32_t *count, uint32_t *spooled,
    uint64_t *first, uint64_t *last)
{
	uint32_t keep = queue_first_unsent(&w->q);

	*count = *spooled = 0;
	*first = *last = 0;
	/* From the tail: nothing behind has to move. */
	while (w->q.n > keep) {
		struct msg *m = queue_remove_at(&w->q, w->q.n - 1);

		if (*count == 0)
			*last = m->id;
		*first = m->id;
		(*count)++;
		if (m->b != NULL)
			bcast_settle(m->b, w->index, ACK_REMOVED);
		if (spooler_acked(w, m))	/* as good as acked: gone */
			(*spooled)++;
		msg_unref(m);
	}
	fanoutd_schedule_flush(w->d);
}

void
bcast_worker_away(struct worker *w)
{
	struct fanoutd *d = w->d;
	uint32_t i;

	/* Settling may finish a broadcast, which never touches queues;
	 * a message the spool refuses leaves the queue (unacked_outcome). */
	for (i = 0; i < w->q.n; ) {
		struct msg *m = queue_at(&w->q, i);

		if (m->b != NULL && (!m->b->wait || d->stopping) &&
		    m->b->res[w->index].outcome == ACK_NONE &&
		    m->b->res[w->index].member) {
			struct bcast *b = m->b;
			uint32_t n = w->q.n;

			bcast_settle(b, w->index, unacked_outcome(w, m));
			if (w->q.n < n)
				continue;
		}
		i++;
	}
}

/* Broadcasts answered with workers that did not ack in time: one line per
 * broadcast, the first few workers named, and no more than the limit
 * allows. */
static struct log_limit late_ll = LOG_LIMIT_INIT(LOG_NOTICE,
    "acknowledgement timeouts");

#define LATE_NAMED	4

static void
log_late(const struct bcast *b, const uint32_t *late, uint32_t nlate)
{
	char list[LATE_NAMED * 12 + 8];
	size_t off = 0;
	uint32_t i;

	list[0] = '\0';
	for (i = 0; i < nlate && i < LATE_NAMED; i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%u",
		    i > 0 ? ", " : "", late[i]);
	if (nlate > LATE_NAMED)
		snprintf(list + off, sizeof(list) - off, ", ...");
	log_notice("message %llu: not acknowledged within %u ms by %u of %u "
	    "workers (%s %s); kept queued", (unsigned long long)b->m->id,
	    b->timeout_ms, nlate, b->nworkers, nlate == 1 ? "worker" :
	    "workers", list);
}

static int
on_deadline(sd_event_source *s, uint64_t usec, void *arg)
{
	struct bcast *b = arg;
	uint32_t i, nlate = 0, late[LATE_NAMED];

	(void)s;
	(void)usec;
	for (i = 0; i < b->nslots; i++)
		if (b->res[i].member && b->res[i].outcome == ACK_NONE &&
		    bcast_unacked_slot(b, i, ACK_REMOVED) == ACK_QUEUED) {
			if (nlate < LATE_NAMED)
				late[nlate] = i;
			nlate++;
		}
	if (nlate > 0 && log_limit(&late_ll))
		log_late(b, late, nlate);
	bcast_finish(b);
	return 0;
}

int
bcast_start(struct fanoutd *d, struct ctl_conn *c, uint64_t req_id,
    const uint8_t *data, size_t len, uint32_t timeout_ms, uint32_t flags)
{
	bool wait = (flags & CTL_SEND_WAIT) != 0;
	struct bcast *b;
	struct msg *m;
	uint32_t i;
	int r;

	b = calloc(1, sizeof(*b) + (d->nworkers + d->nremote) *
	    sizeof(b->res[0]));
	/* Its one reference is the broadcast's own. */
	m = msg_new(d->next_msg_id + 1, loop_now(d), data, len);
	if (b == NULL || m == NULL) {
		free(b);
		free(m);
		return -ENOMEM;
	}
	/* Before the broadcast is in the list: this may commit, and a
	 * commit answers broadcasts. */
	spooler_use_id(d, ++d->next_msg_id);
	m->b = b;
	d->accepted++;

	b->d = d;
	b->m = m;
	b->c = c;
	b->req_id = req_id;
	b->timeout_ms = timeout_ms;
	b->wait = wait;
	b->brief = (flags & CTL_SEND_BRIEF) != 0;
	b->nlocal = d->nworkers;
	b->nslots = d->nworkers + d->nremote;
	b->prev = d->bcasts_tail;
	if (d->bcasts_tail != NULL)
		d->bcasts_tail->next = b;
	else
		d->bcasts = b;
	d->bcasts_tail = b;
	if (c != NULL)
		c->ninflight++;

	/* Queue on every worker first; npending covers every slot before
	 * any verdict is recorded, so the broadcast cannot finish half
	 * built, and drops the slots it is not for as it goes. */
	b->npending = b->nslots + 1;
	for (i = 0; i < b->nlocal; i++) {
		struct worker *w = d->workers[i];

		b->res[i].port = w->port;
		b->res[i].serial = w->serial;
		if (!w->member) {
			b->npending--;	/* added and not up yet, or retiring */
			continue;
		}
		b->res[i].member = true;
		b->nworkers++;
		b->res[i].pid = w->pid;
		if (queue_push(&w->q, m) < 0) {
			w->refused++;
			bcast_settle(b, i, ACK_FULL);
		}
		else if (w->state == W_UP)
			worker_kick(w);
		else if (!wait)
			bcast_settle(b, i, unacked_outcome(w, m));
	}
	for (; i < b->nslots; i++) {
		uint8_t outcome;

		if (!remote_listed(d->remote, i - b->nlocal)) {
			b->npending--;	/* removed by a reload */
			continue;
		}
		b->res[i].member = true;
		b->nworkers++;
		if ((outcome = remote_publish(d->remote, i - b->nlocal, m)) !=
		    ACK_NONE)
			bcast_settle(b, i, outcome);
	}
	r = sd_event_add_time_relative(d->ev, &b->timer, CLOCK_MONOTONIC,
	    (uint64_t)timeout_ms * 1000, 1000, on_deadline, b);
	if (r < 0)
		log_warnx("message %llu: cannot arm its deadline: %s",
		    (unsigned long long)m->id, strerror(-r));
	if (--b->npending == 0)
		bcast_finish(b);
	return 0;
}

void
bcast_remote_result(struct msg *m, uint32_t j, uint8_t outcome,
    uint32_t status, const uint8_t *reason, size_t reason_len)
{
	struct bcast *b = m->b;
	struct bcast_res *res;

	if (b == NULL || b->nlocal + j >= b->nslots)
		return;
	res = &b->res[b->nlocal + j];
	if (!res->member || res->outcome != ACK_NONE)
		return;
	if (outcome == ACK_FAILED) {
		res->status = status;
		if (reason_len > 0 &&
		    (res->reason = malloc(reason_len)) != NULL) {
			memcpy(res->reason, reason, reason_len);
			res->reason_len = (uint8_t)reason_len;
		}
	}
	bcast_settle(b, b->nlocal + j, outcome);
}

void
bcast_remote_stored(struct msg *m, uint32_t j, bool missing)
{
	struct bcast *b = m->b;

	if (b == NULL || b->nlocal + j >= b->nslots)
		return;
	b->res[b->nlocal + j].stored = true;
	/* As for a local worker that is away: kept, said at once. */
	if (missing && !b->wait)
		bcast_settle(b, b->nlocal + j, ACK_QUEUED);
}

void
bcast_detach_client(struct fanoutd *d, struct ctl_conn *c)
{
	struct bcast *b;

	for (b = d->bcasts; b != NULL; b = b->next)
		if (b->c == c)
			b->c = NULL;
}

/* Answers every broadcast still open; what has not come never will, and
 * is kept in the spool if there is one. */
void
bcast_abort_all(struct fanoutd *d)
{
	struct bcast *b, *next;

	for (b = d->bcasts; b != NULL; b = next) {
		uint32_t i;

		next = b->next;
		if (b->held)
			continue;
		/* fanoutd is stopping: without a spool, unacked is
		 * shutdown. */
		for (i = 0; i < b->nslots; i++)
			if (b->res[i].member && b->res[i].outcome == ACK_NONE)
				(void)bcast_unacked_slot(b, i, ACK_SHUTDOWN);
		bcast_finish(b);
	}
	/* Held for a commit: only fanoutd_free comes back here, and it
	 * commits and drops the replies itself. */
}
