/* SPDX-License-Identifier: MIT */
/*
 * The broadcast lifecycle: give a message its id, queue it on every
 * connected worker in one pass, record each worker's outcome, and answer the
 * control client once every worker has acked or the deadline has passed.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fanoutd.h"
#include "log.h"
#include "util.h"

void
msg_unref(struct msg *m)
{
	if (--m->refs == 0)
		free(m);
}

static void
bcast_finish(struct bcast *b)
{
	struct fanoutd *d = b->d;

	if (b->c != NULL) {
		control_reply_bcast(b->c, b);
		control_bcast_done(b->c);
	}
	log_debug("message %llu: %u/%u acked",
	    (unsigned long long)b->m->id, b->nacked, b->nworkers);
	b->m->b = NULL;
	msg_unref(b->m);
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
}

void
bcast_settle(struct bcast *b, uint32_t index, uint8_t outcome)
{
	struct bcast_res *res;

	if (index >= b->nworkers || b->res[index].outcome != ACK_NONE)
		return;
	res = &b->res[index];
	res->outcome = outcome;
	if (outcome == ACK_OK) {
		res->rtt_us = (uint32_t)(now_usec() - b->start_usec);
		b->nacked++;
	}
	if (--b->npending == 0)
		bcast_finish(b);
}

static int
on_deadline(sd_event_source *s, uint64_t usec, void *arg)
{
	struct bcast *b = arg;
	uint32_t i;

	(void)s;
	(void)usec;
	for (i = 0; i < b->nworkers; i++)
		if (b->res[i].outcome == ACK_NONE)
			b->res[i].outcome = ACK_TIMEOUT;
	bcast_finish(b);
	return 0;
}

int
bcast_start(struct fanoutd *d, struct ctl_conn *c, uint64_t req_id,
    const uint8_t *data, size_t len, uint32_t timeout_ms)
{
	struct bcast *b;
	struct msg *m;
	uint32_t i;
	int r;

	b = calloc(1, sizeof(*b) + d->nworkers * sizeof(b->res[0]));
	m = malloc(sizeof(*m) + FANOUT_HDR_LEN + len);
	if (b == NULL || m == NULL) {
		free(b);
		free(m);
		return -ENOMEM;
	}
	m->refs = 1;		/* the broadcast's own */
	m->id = ++d->next_msg_id;
	m->b = b;
	m->len = FANOUT_HDR_LEN + len;
	frame_hdr_encode(m->frame, MSG_DATA, (uint32_t)len, m->id);
	memcpy(m->frame + FANOUT_HDR_LEN, data, len);

	b->d = d;
	b->m = m;
	b->c = c;
	b->req_id = req_id;
	b->start_usec = now_usec();
	b->timeout_ms = timeout_ms;
	b->nworkers = d->nworkers;
	b->prev = d->bcasts_tail;
	if (d->bcasts_tail != NULL)
		d->bcasts_tail->next = b;
	else
		d->bcasts = b;
	d->bcasts_tail = b;
	if (c != NULL)
		c->ninflight++;

	/* Queue on every worker first; npending covers them all before any
	 * outcome is recorded, so the broadcast cannot finish half built. */
	b->npending = b->nworkers + 1;
	for (i = 0; i < b->nworkers; i++) {
		struct worker *w = &d->workers[i];

		b->res[i].pid = w->pid;
		if (w->state != W_UP)
			bcast_settle(b, i, ACK_DOWN);
		else if (peer_queue(w, m) < 0)
			bcast_settle(b, i, ACK_FULL);
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
bcast_detach_client(struct fanoutd *d, struct ctl_conn *c)
{
	struct bcast *b;

	for (b = d->bcasts; b != NULL; b = b->next)
		if (b->c == c)
			b->c = NULL;
}

/* Answers every broadcast still open; what has not come never will. */
void
bcast_abort_all(struct fanoutd *d)
{
	while (d->bcasts != NULL) {
		struct bcast *b = d->bcasts;
		uint32_t i;

		for (i = 0; i < b->nworkers; i++)
			if (b->res[i].outcome == ACK_NONE)
				b->res[i].outcome = ACK_SHUTDOWN;
		bcast_finish(b);
	}
}
