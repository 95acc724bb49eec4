/* SPDX-License-Identifier: MIT */
/*
 * What fanoutd keeps in its spool (spool.c), and when.  A message goes to
 * disk for a worker only when it must be answered `queued' for it: the
 * worker was away, or did not ack before the deadline, or fanoutd is
 * stopping.  Messages that every worker acks in time never touch the disk.
 *
 * Everything staged in one loop turn is committed at its end (group
 * commit, in on_flush), and a broadcast with a `queued' verdict staged in
 * the batch is answered only after that commit: `queued' means fsynced.
 * A failed commit stops fanoutd (exit 1, so that systemd restarts it): the
 * `queued' verdicts of the lost batch are answered `shutdown' instead,
 * which is what becomes of messages kept in memory only.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fanoutd.h"
#include "log.h"
#include "spool.h"
#include "util.h"

/* The realtime clock, which the spool keeps (it outlives a boot), from the
 * monotonic one the daemon counts in. */
static uint64_t
to_realtime(struct fanoutd *d, uint64_t mono)
{
	uint64_t now = loop_now(d), real = 0;

	(void)sd_event_now(d->ev, CLOCK_REALTIME, &real);
	return real - (now > mono ? now - mono : 0);
}

static uint64_t
to_monotonic(struct fanoutd *d, uint64_t real)
{
	uint64_t now = loop_now(d), rnow = 0, age;

	(void)sd_event_now(d->ev, CLOCK_REALTIME, &rnow);
	age = rnow > real ? rnow - real : 0;
	return now > age ? now - age : 0;
}

/* The batch being staged is lost.  fanoutd stops from on_flush, never
 * from here: callers are deep inside a broadcast's code. */
static void
spooler_failed(struct fanoutd *d, const char *what)
{
	if (d->spool_failed)
		return;
	d->spool_failed = true;
	d->spool_lost_batch = d->spool_batch;
	log_errx("spool: %s: %s; stopping, so that no sender is told "
	    "\"queued\" for a message that is not on disk", what,
	    spool_error(d->spool));
	fanoutd_schedule_flush(d);
}

int
spooler_open(struct fanoutd *d)
{
	char err[512];
	int r;

	if (!d->conf.spool)
		return 0;
	if ((r = spool_open(d->conf.spool_dir, d->conf.spool_max_bytes,
	    &d->spool, err, sizeof(err))) < 0) {
		log_errx("%s", err);
		if (r == -ENOENT)
			log_errx("create %s (the unit's StateDirectory= does), "
			    "or set spool_dir or spool = false in %s",
			    d->conf.spool_dir, d->conf_path);
		return -1;
	}
	d->spool_batch = 1;
	d->next_msg_id = spool_next_id(d->spool) - 1;
	/* Reserve the first block now, so that the first broadcasts need
	 * no commit of their own. */
	if (spool_reserve_ids(d->spool, d->next_msg_id + 1 +
	    SPOOL_ID_BLOCK) < 0 || spool_commit(d->spool) < 0) {
		log_errx("spool: cannot reserve message ids: %s",
		    spool_error(d->spool));
		spool_close(d->spool);
		d->spool = NULL;
		return -1;
	}
	log_info("spool %s: %llu bytes of %llu used; message ids continue "
	    "from %llu", spool_path(d->spool),
	    (unsigned long long)spool_bytes(d->spool),
	    (unsigned long long)spool_max_bytes(d->spool),
	    (unsigned long long)d->next_msg_id + 1);
	return 0;
}

struct load {
	struct fanoutd	*d;
	uint32_t	 index;		/* UINT32_MAX: every configured one */
	uint64_t	 loaded;
};

static int
load_one(uint64_t id, uint64_t accepted_usec, const void *payload,
    size_t len, const uint32_t *workers, size_t nworkers, void *arg)
{
	struct load *l = arg;
	struct fanoutd *d = l->d;
	struct msg *m = NULL;
	size_t i;
	int r = 0;

	for (i = 0; i < nworkers && r == 0; i++) {
		uint32_t wi = workers[i];

		if (wi >= d->nworkers ||
		    (l->index != UINT32_MAX && wi != l->index))
			continue;
		if (m == NULL && (m = msg_new(id, to_monotonic(d,
		    accepted_usec), payload, len)) == NULL)
			return -ENOMEM;
		/* The spool bounds these, not the queue: the queue is
		 * over its bound until they are delivered. */
		if ((r = queue_push_any(&d->workers[wi]->q, m)) == 0)
			l->loaded++;
	}
	if (m != NULL)
		msg_unref(m);
	return r;
}

int
spooler_load(struct fanoutd *d, uint32_t index)
{
	struct load l = { .d = d, .index = index };
	struct spool_stat st;
	size_t i;
	int r;

	if (d->spool == NULL)
		return 0;
	if ((r = spool_load(d->spool, load_one, &l)) < 0) {
		log_errx("spool: cannot load the queued messages: %s",
		    r == -ENOMEM ? "out of memory" : spool_error(d->spool));
		return -1;
	}
	for (i = 0; i < spool_nworkers(d->spool); i++) {
		if (spool_worker_at(d->spool, i, &st) < 0 || st.count == 0)
			continue;
		if (index != UINT32_MAX && st.worker != index)
			continue;
		if (st.worker < d->nworkers)
			log_notice("spool: %llu message%s (%llu byte%s) "
			    "queued for worker %u, delivered first",
			    (unsigned long long)st.count, PLURAL(st.count),
			    (unsigned long long)st.bytes, PLURAL(st.bytes),
			    st.worker);
		else
			log_warnx("spool: %llu message%s (%llu byte%s) "
			    "queued for worker %u, which is not configured "
			    "(workers = %u); kept: \"fanoutctl queue drop "
			    "%u\" removes them", (unsigned long long)st.count,
			    PLURAL(st.count), (unsigned long long)st.bytes,
			    PLURAL(st.bytes), st.worker, d->conf.workers,
			    st.worker);
	}
	return 0;
}

int
spooler_keep(struct worker *w, struct msg *m)
{
	struct fanoutd *d = w->d;
	int r;

	if (d->spool == NULL)
		return 0;
	if (d->spool_failed)
		return -EIO;
	r = spool_put(d->spool, w->index, m->id, to_realtime(d,
	    m->accepted_usec), m->frame + FANOUT_HDR_LEN, msg_payload_len(m));
	if (r == -EEXIST)
		r = 0;		/* loaded from the spool, or kept before */
	if (r == 0) {
		if (m->b != NULL)
			m->b->spool_batch = d->spool_batch;
		fanoutd_schedule_flush(d);
	} else if (r != -ENOSPC)
		spooler_failed(d, "cannot store a message");
	return r;
}

bool
spooler_acked(struct worker *w, const struct msg *m)
{
	struct fanoutd *d = w->d;
	int r;

	if (d->spool == NULL || d->spool_failed)
		return false;
	if ((r = spool_del(d->spool, w->index, m->id)) > 0)
		fanoutd_schedule_flush(d);
	else if (r < 0)
		spooler_failed(d, "cannot remove an acknowledged message");
	return r > 0;
}

uint64_t
spooler_count(struct fanoutd *d, uint32_t index)
{
	struct spool_stat st = { 0 };

	if (d->spool == NULL || d->spool_failed ||
	    spool_worker_stats(d->spool, index, &st) < 0)
		return 0;
	return st.count;
}

void
spooler_use_id(struct fanoutd *d, uint64_t id)
{
	uint64_t mark;

	if (d->spool == NULL || d->spool_failed)
		return;
	mark = spool_ids_reserved(d->spool);
	if (id + SPOOL_ID_BLOCK / 2 < mark)
		return;
	/* Half a block early, so that it rides along with a commit due
	 * anyway; only past the mark must it be committed at once. */
	if (spool_reserve_ids(d->spool, id + SPOOL_ID_BLOCK) < 0)
		spooler_failed(d, "cannot reserve message ids");
	else if (id >= mark)
		spooler_commit(d);
	else
		fanoutd_schedule_flush(d);
}

void
spooler_commit(struct fanoutd *d)
{
	if (d->spool == NULL)
		return;
	if (!d->spool_failed && spool_staged(d->spool)) {
		if (spool_commit(d->spool) < 0)
			spooler_failed(d, "cannot commit");
		else
			d->spool_batch++;
	}
	if (d->nheld > 0)
		bcast_release_held(d);
	if (d->spool_failed && !d->stopping)
		fanoutd_stop(d, 1);
}

int
spooler_drop(struct fanoutd *d, uint32_t index, uint64_t *count)
{
	int r;

	*count = 0;
	if (d->spool == NULL)
		return 0;
	if ((r = spool_drop_worker(d->spool, index, count)) < 0) {
		spooler_failed(d, "cannot drop a queue");
		return r;
	}
	fanoutd_schedule_flush(d);
	return 0;
}

void
spooler_close(struct fanoutd *d)
{
	if (d->spool == NULL)
		return;
	/* What was staged last: acks, and messages kept at shutdown. */
	if (!d->spool_failed && spool_staged(d->spool) &&
	    spool_commit(d->spool) < 0)
		log_errx("spool: cannot commit: %s", spool_error(d->spool));
	spool_close(d->spool);
	d->spool = NULL;
}
