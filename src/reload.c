/* SPDX-License-Identifier: MIT */
/*
 * Reload: read the configuration file again and move the running pool to
 * it without dropping a message.  The new file is checked completely before
 * anything changes.  Then settings that take effect at once do so; a larger
 * pool starts its new workers (broadcasts are for them once they are up);
 * a smaller one retires the surplus, which deliver what is queued for them
 * and stop; workers whose command line changed restart one at a time, each
 * once what was written to it is acked.  The reload is done when all of
 * that is, and only then is the client answered and systemd told READY=1.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanoutd.h"
#include "log.h"
#include "notify.h"
#include "util.h"

/* Settings that change a worker's command line: a restart applies them. */
static const char *const worker_settings[] = {
	"base_port", "listen_address", "worker_path", "max_message_bytes",
	"auth_timeout_ms",
	"handler", "handler_mode", "handler_framing", "handler_timeout_ms",
};
/* Settings fanoutd reads once, at start. */
static const char *const start_settings[] = {
	"control_socket", "spool", "spool_dir", "spool_max_bytes",
	"worker_start",
	/* remote.c reads them once, at start; remote_workers is said name
	 * by name (remote_reload) */
	"nats_servers", "nats_tls_ca", "nats_tls_cert", "nats_tls_key",
	"nats_subject_prefix", "nats_stream", "nats_stream_replicas",
	"remote_ack_wait_ms",
};

struct change {
	uint32_t	 kind;		/* enum reload_change */
	uint32_t	 worker;
	char		*text;
};

struct reload {
	struct fanoutd	*d;
	struct ctl_conn	*c;		/* who waits for the reply, if anyone */
	uint64_t	 req_id;
	uint32_t	 from, to;	/* pool sizes */
	bool		 descending;	/* restart order: base_port went up */
	bool		 failed;	/* some worker did not come up */
	struct worker	*current;	/* being replaced */
	sd_event_source	*step_src;
	sd_event_source	*remote_src;	/* looks again for added remote
					 * workers' consumers */
	uint64_t	 remote_deadline;
	struct change	*changes;
	size_t		 nchanges;
};

static const char *const change_names[] = RELOAD_CHANGE_NAMES;

static bool
listed(const char *const *list, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

/* Records a change for the reply and logs it as it happens. */
static void
note(struct reload *r, uint32_t kind, uint32_t worker, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void
note(struct reload *r, uint32_t kind, uint32_t worker, const char *fmt, ...)
{
	struct change *grown;
	char *text;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	logit(kind == RC_ERROR ? LOG_ERR : kind == RC_FAILED ||
	    kind == RC_KEPT ? LOG_WARNING : LOG_NOTICE, "reload: %s%s%s",
	    kind == RC_ERROR ? "" : change_names[kind],
	    kind == RC_ERROR ? "" : ": ", text);
	grown = reallocarray(r->changes, r->nchanges + 1, sizeof(*grown));
	if (grown == NULL) {
		free(text);
		return;
	}
	r->changes = grown;
	r->changes[r->nchanges++] = (struct change){ kind, worker, text };
}

static void
reload_free_one(struct reload *r)
{
	size_t i;

	for (i = 0; i < r->nchanges; i++)
		free(r->changes[i].text);
	free(r->changes);
	r->step_src = sd_event_source_disable_unref(r->step_src);
	r->remote_src = sd_event_source_disable_unref(r->remote_src);
	free(r);
}

/* Answers the client, if any, and forgets the reload. */
static void
reload_end(struct reload *r, uint32_t result)
{
	struct fanoutd *d = r->d;
	size_t i;

	if (r->c != NULL) {
		for (i = 0; i < r->nchanges; i++)
			control_reload_change(r->c, r->req_id,
			    r->changes[i].kind, r->changes[i].worker,
			    r->changes[i].text);
		control_reload_end(r->c, r->req_id, result);
	}
	if (d->reload == r)
		d->reload = NULL;
	reload_free_one(r);
}

int
reload_load_conf(const char *path, struct fanout_conf *conf, char **errors)
{
	size_t len = 0;
	FILE *errs;
	int r;

	*errors = NULL;
	if ((errs = open_memstream(errors, &len)) == NULL)
		return conf_load(path, conf, stderr);
	r = conf_load(path, conf, errs);
	if (fclose(errs) != 0) {
		free(*errors);
		*errors = NULL;
	}
	return r;
}

struct diff_ctx {
	struct reload	*r;
	bool		 workers_differ;
	bool		 remote_differ;
};

static void
on_setting_changed(const char *name, const char *was, const char *is,
    void *arg)
{
	struct diff_ctx *x = arg;

	if (strcmp(name, "workers") == 0)
		return;		/* said worker by worker */
	if (strcmp(name, "remote_workers") == 0 && x->r->d->remote != NULL) {
		x->remote_differ = true;
		return;		/* said name by name */
	}
	if (strcmp(name, "remote_workers") == 0) {
		note(x->r, RC_KEPT, CTL_CHANGE_NONE, "%s: %s needs a restart "
		    "of fanoutd (no broker: nats_servers was not set at "
		    "start)", name, is);
		return;
	}
	if (listed(start_settings, nitems(start_settings), name))
		note(x->r, RC_KEPT, CTL_CHANGE_NONE, "%s: %s needs a restart "
		    "of fanoutd; %s stays in effect until then", name, is,
		    was);
	else if (listed(worker_settings, nitems(worker_settings), name)) {
		note(x->r, RC_SET, CTL_CHANGE_NONE, "%s: %s -> %s (workers "
		    "restart one at a time)", name, was, is);
		x->workers_differ = true;
	} else
		note(x->r, RC_SET, CTL_CHANGE_NONE, "%s: %s -> %s", name, was,
		    is);
}

static void
retire(struct worker *w, uint64_t now)
{
	w->retiring = true;
	w->member = w->joining = w->replace = w->draining = false;
	w->retire_usec = now;
	/* What was queued for it goes out; a link held back goes too. */
	worker_kick(w);
}

/* The new pool: workers added, retired, or marked for a restart.  No
 * worker is retiring now: a reload is done only once they are gone. */
static void
rescale(struct reload *r, const struct fanout_conf *old)
{
	struct fanoutd *d = r->d;
	uint64_t now = now_usec();
	struct worker *w;
	uint32_t i;
	int e;

	for (i = 0; i < d->nworkers && i < r->to; i++)
		if (worker_settings_differ(old, &d->conf, i))
			d->workers[i]->replace = true;
	for (i = d->nworkers; i < r->to; i++) {
		if ((w = pool_add(d)) == NULL) {
			note(r, RC_FAILED, i, "worker %u: out of memory", i);
			r->failed = true;
			break;
		}
		w->joining = true;
		/* An index the pool had before fanoutd last stopped may
		 * have messages waiting in the spool. */
		(void)spooler_load(d, i);
		if ((e = worker_spawn(w)) < 0) {
			note(r, RC_FAILED, i, "worker %u: cannot start: %s", i,
			    strerror(-e));
			r->failed = true;
			w->joining = false;
		}
	}
	for (i = r->to; i < d->nworkers; i++)
		if (!d->workers[i]->retiring)
			retire(d->workers[i], now);
}

/* One worker replaced at a time, in an order that frees a port before
 * another worker wants it. */
static struct worker *
next_to_replace(struct reload *r)
{
	struct fanoutd *d = r->d;
	uint32_t i, k;

	for (k = 0; k < d->nworkers; k++) {
		i = r->descending ? d->nworkers - 1 - k : k;
		if (d->workers[i]->replace)
			return d->workers[i];
	}
	return NULL;
}

/* SIGTERM now, unless its next process is on the way anyway. */
static void
replace_now(struct reload *r, struct worker *w)
{
	if (w->pid <= 0 || w->state == W_STALLED || w->state == W_RESTARTING) {
		/* Its next process starts with the new settings anyway. */
		r->current = NULL;
		return;
	}
	w->replacing = true;
	worker_event(w, WE_REPLACE);
}

static void
replace_begin(struct reload *r, struct worker *w)
{
	r->current = w;
	w->replace = false;
	if (w->state == W_UP && w->q.nsent > 0)
		w->draining = true;	/* on_step goes on when they are acked */
	else
		replace_now(r, w);
}

static void
step_replacing(struct reload *r)
{
	struct worker *w = r->current;

	if (w->draining) {
		if (w->state == W_UP && w->q.nsent > 0)
			return;
		w->draining = false;
		worker_kick(w);
		replace_now(r, w);
		return;
	}
	if (w->state == W_UP) {
		note(r, RC_RESTARTED, w->index, "worker %u: pid %d, port %u",
		    w->index, (int)w->pid, w->port);
		w->replacing = false;
		r->current = NULL;
	} else if (w->state == W_BACKOFF || w->state == W_DEAD) {
		note(r, RC_FAILED, w->index, "worker %u: did not come up "
		    "after its restart%s%s; retrying", w->index,
		    w->why[0] ? ": " : "", w->why);
		r->failed = true;
		w->replacing = false;
		r->current = NULL;
	}
}

/* A retiring worker stops once its queue is empty, or once it has made no
 * progress for stall_timeout_ms: what it could not deliver is then said. */
static bool
step_retiring(struct reload *r, struct worker *w, uint64_t now)
{
	uint64_t since = w->progress_usec > w->retire_usec ?
	    w->progress_usec : w->retire_usec;

	if (w->state == W_DEAD)
		return true;
	if (w->state == W_STOPPING)
		return false;
	if (w->q.n == 0 ||
	    now - since >= r->d->conf.stall_timeout_ms * 1000ULL)
		worker_event(w, WE_STOP);
	return w->state == W_DEAD;
}

static void
remove_top(struct reload *r)
{
	struct fanoutd *d = r->d;
	struct worker *w = d->workers[d->nworkers - 1];

	if (w->q.n > 0) {
		note(r, RC_REMOVED, w->index, "worker %u: %u queued message%s "
		    "(ids %llu to %llu) not delivered", w->index, w->q.n,
		    PLURAL(w->q.n), (unsigned long long)queue_at(&w->q, 0)->id,
		    (unsigned long long)queue_at(&w->q, w->q.n - 1)->id);
		bcast_worker_removed(w);
	} else
		note(r, RC_REMOVED, w->index, "worker %u: port %u", w->index,
		    w->port);
	pool_remove_top(d);
}

static bool
step_joining(struct reload *r, struct worker *w)
{
	if (w->member) {
		note(r, RC_ADDED, w->index, "worker %u: pid %d, port %u",
		    w->index, (int)w->pid, w->port);
		w->joining = false;
	} else if (w->state == W_BACKOFF || w->state == W_DEAD) {
		note(r, RC_FAILED, w->index, "worker %u: did not come up%s%s; "
		    "retrying", w->index, w->why[0] ? ": " : "", w->why);
		r->failed = true;
		w->joining = false;
	}
	return !w->joining;
}

static void
reload_done(struct reload *r)
{
	struct fanoutd *d = r->d;
	char status[96];

	if (r->from != r->to)
		snprintf(status, sizeof(status), "reloaded: %u \u2192 %u "
		    "workers, %u/%u connected", r->from, r->to, d->nup,
		    d->nworkers);
	else
		snprintf(status, sizeof(status), "reloaded: %u/%u workers "
		    "connected", d->nup, d->nworkers);
	log_notice("%s", status);
	notify_ready(status);
	reload_end(r, r->failed ? CTL_RES_PARTIAL : CTL_RES_OK);
	if (d->reload_again) {
		d->reload_again = false;
		(void)reload_start(d, NULL, 0);
	}
}

static bool remote_step(struct reload *, uint64_t);

static int
on_step(sd_event_source *s, void *arg)
{
	struct reload *r = arg;
	struct fanoutd *d = r->d;
	uint64_t now = now_usec();
	bool busy = false;
	uint32_t i;

	(void)s;
	if (d->stopping)
		return 0;
	for (i = 0; i < d->nworkers; i++) {
		struct worker *w = d->workers[i];

		if (w->joining && !step_joining(r, w))
			busy = true;
		if (w->retiring && !step_retiring(r, w, now))
			busy = true;
	}
	while (d->nworkers > r->to && d->workers[d->nworkers - 1]->retiring &&
	    d->workers[d->nworkers - 1]->state == W_DEAD)
		remove_top(r);
	if (d->nworkers > r->to)
		busy = true;
	if (d->remote != NULL && remote_step(r, now))
		busy = true;
	for (;;) {
		if (r->current == NULL) {
			if ((r->current = next_to_replace(r)) == NULL)
				break;
			replace_begin(r, r->current);
			continue;
		}
		step_replacing(r);
		if (r->current != NULL) {
			busy = true;
			break;
		}
	}
	if (!busy)
		reload_done(r);
	return 0;
}

static void
on_remote_change(void *arg, enum remote_change what, const char *name,
    uint32_t count)
{
	struct reload *r = arg;

	switch (what) {
	case REMOTE_ADDED:
		note(r, RC_ADDED, CTL_CHANGE_NONE, "remote worker %s: its "
		    "consumer is in the broker", name);
		break;
	case REMOTE_ADDED_DOWN:
		note(r, RC_ADDED, CTL_CHANGE_NONE, "remote worker %s: its "
		    "consumer is not created yet; `down' until it is", name);
		break;
	case REMOTE_ADDED_UNREACHABLE:
		note(r, RC_ADDED, CTL_CHANGE_NONE, "remote worker %s: the "
		    "broker is not reachable; `down' until its consumer is "
		    "created there", name);
		break;
	case REMOTE_REMOVED:
		note(r, RC_REMOVED, CTL_CHANGE_NONE, "remote worker %s: %u "
		    "waiting broadcast%s answered `removed'; its consumer and "
		    "stored messages stay in the broker (unlisted)", name,
		    count, PLURAL(count));
		break;
	case REMOTE_NO_SLOT:
		note(r, RC_FAILED, CTL_CHANGE_NONE, "remote worker %s: more "
		    "than %u names since fanoutd started; needs a restart",
		    name, 2 * FANOUT_REMOTE_MAX);
		r->failed = true;
		break;
	}
}

static int
on_remote_timer(sd_event_source *s, uint64_t usec, void *arg)
{
	struct reload *r = arg;

	(void)s;
	(void)usec;
	reload_kick(r->d);
	return 0;
}

/* Added remote workers: their consumers are created by remote.c's admin
 * thread; the loop looks again every REMOTE_STEP_MS (no event crosses the
 * threads), until start_timeout_ms.  True: still waiting. */
#define REMOTE_STEP_MS	20
static bool
remote_step(struct reload *r, uint64_t now)
{
	struct fanoutd *d = r->d;

	if (!remote_reload_step(d->remote, now >= r->remote_deadline,
	    on_remote_change, r))
		return false;
	if (r->remote_src == NULL) {
		if (sd_event_add_time(d->ev, &r->remote_src, CLOCK_MONOTONIC,
		    0, 1000, on_remote_timer, r) < 0) {
			/* Said now, then: `down' until created. */
			(void)remote_reload_step(d->remote, true,
			    on_remote_change, r);
			return false;
		}
	}
	(void)sd_event_source_set_time(r->remote_src,
	    now + REMOTE_STEP_MS * 1000ULL);
	(void)sd_event_source_set_enabled(r->remote_src, SD_EVENT_ONESHOT);
	return true;
}

void
reload_kick(struct fanoutd *d)
{
	if (d->reload != NULL)
		(void)sd_event_source_set_enabled(d->reload->step_src,
		    SD_EVENT_ONESHOT);
}

/* Settings applied at once; the pool's changes follow from on_step. */
static void
apply(struct reload *r, struct fanout_conf *next)
{
	struct fanoutd *d = r->d;
	struct fanout_conf old = d->conf;
	struct diff_ctx x = { .r = r };
	char *keep;
	uint32_t i;

	conf_diff(&old, next, on_setting_changed, &x);
	/* Read once, at start: the old value stays. */
	keep = next->control_socket;
	next->control_socket = old.control_socket;
	old.control_socket = keep;
	keep = next->spool_dir;
	next->spool_dir = old.spool_dir;
	old.spool_dir = keep;
	next->spool = old.spool;
	next->spool_max_bytes = old.spool_max_bytes;
	next->worker_start = old.worker_start;
	if (d->remote == NULL) {
		/* No broker at start: remote workers need a restart. */
		char **names = next->remote_workers;

		next->remote_workers = old.remote_workers;
		old.remote_workers = names;
	}

	d->conf = *next;
	fanoutd_conf_changed(d);
	r->from = old.workers;
	r->to = next->workers;
	r->descending = next->base_port > old.base_port;
	for (i = 0; i < d->nworkers; i++) {
		d->workers[i]->q.max_n = d->conf.queue_max_messages;
		d->workers[i]->q.max_bytes = d->conf.queue_max_bytes;
	}
	rescale(r, &old);
	if (d->remote != NULL) {
		r->remote_deadline = now_usec() +
		    d->conf.start_timeout_ms * 1000ULL;
		remote_reload(d->remote, d->conf.remote_workers,
		    on_remote_change, r);
	}
	conf_free(&old);
	if (r->nchanges == 0 && r->from == r->to && !x.workers_differ &&
	    !x.remote_differ)
		note(r, RC_UNCHANGED, CTL_CHANGE_NONE, "%s: no change",
		    d->conf_path);
}

int
reload_start(struct fanoutd *d, struct ctl_conn *c, uint64_t req_id)
{
	struct fanout_conf next;
	struct reload *r;
	char *errors, *line, *save;

	/* One at a time, and not before the pool is first up. */
	if (d->reload != NULL || !d->ready) {
		if (c != NULL)
			return -EBUSY;
		log_notice("reload: %s; reloading once it is done",
		    d->ready ? "another one is under way" : "still starting");
		d->reload_again = true;
		return 0;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    sd_event_add_defer(d->ev, &r->step_src, on_step, r) < 0) {
		log_warnx("reload: out of memory");
		free(r);
		if (c != NULL)
			control_reload_end(c, req_id, CTL_RES_BUSY);
		return 0;
	}
	(void)sd_event_source_set_enabled(r->step_src, SD_EVENT_OFF);
	r->d = d;
	r->c = c;
	r->req_id = req_id;
	notify_reloading();
	log_notice("reloading %s", d->conf_path);
	if (reload_load_conf(d->conf_path, &next, &errors) < 0) {
		for (line = errors ? strtok_r(errors, "\n", &save) : NULL;
		    line != NULL; line = strtok_r(NULL, "\n", &save))
			note(r, RC_ERROR, CTL_CHANGE_NONE, "%s", line);
		if (errors == NULL)
			note(r, RC_ERROR, CTL_CHANGE_NONE, "%s: cannot be read",
			    d->conf_path);
		free(errors);
		log_errx("reload failed: the configuration is unchanged");
		notify_ready("reload failed: configuration unchanged");
		reload_end(r, CTL_RES_CONFIG);
		return 0;
	}
	if (errors != NULL && errors[0] != '\0')
		log_lines(LOG_WARNING, errors);
	free(errors);
	d->reload = r;
	apply(r, &next);
	reload_kick(d);
	return 0;
}

void
reload_detach_client(struct fanoutd *d, struct ctl_conn *c)
{
	if (d->reload != NULL && d->reload->c == c)
		d->reload->c = NULL;
}

void
reload_abort(struct fanoutd *d)
{
	if (d->reload != NULL)
		reload_end(d->reload, CTL_RES_SHUTDOWN);
	d->reload_again = false;
}

void
reload_free(struct fanoutd *d)
{
	if (d->reload != NULL)
		reload_free_one(d->reload);
	d->reload = NULL;
}
