/* SPDX-License-Identifier: MIT */
/*
 * fanoutd: options, configuration, signals, readiness, and the shutdown
 * sequence.  The work itself is in pool.c, peer.c, bcast.c and control.c.
 */
#include "config.h"

#include <sys/resource.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fanoutd.h"
#include "log.h"
#include "notify.h"
#include "util.h"

/* After SIGKILL, how long to wait for the last reaps and replies. */
#define FINAL_GRACE_USEC	(1000 * 1000)
/* The supervision tick: a quarter of the shortest timeout it watches,
 * within these bounds. */
#define TICK_MIN_USEC		(25 * 1000)
#define TICK_MAX_USEC		(1000 * 1000)

static uint64_t
tick_usec(const struct fanoutd *d)
{
	uint32_t ms = d->conf.stall_timeout_ms < d->conf.degraded_timeout_ms ?
	    d->conf.stall_timeout_ms : d->conf.degraded_timeout_ms;
	uint64_t usec = (uint64_t)ms * 1000 / 4;

	if (usec < TICK_MIN_USEC)
		return TICK_MIN_USEC;
	return usec > TICK_MAX_USEC ? TICK_MAX_USEC : usec;
}

static void __attribute__((noreturn))
usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: fanoutd [-t [-v]] [-v] [-c FILE]\n"
	    "Broadcast messages to a pool of workers and collect their "
	    "acknowledgements.\n\n"
	    "  -c, --config FILE  configuration file (default %s)\n"
	    "  -t, --test         check the configuration and exit; with -v, "
	    "print it,\n"
	    "                     defaults included\n"
	    "  -v, --verbose      log debug messages too; -vv: a line per "
	    "message\n"
	    "  -h, --help         show this help and exit\n"
	    "  -V, --version      show the version and exit\n",
	    FANOUT_CONF_DEFAULT);
	exit(code);
}

void
fanoutd_workers_changed(struct fanoutd *d)
{
	if (d->stopping)
		return;
	if (d->nup > 0)
		d->none_up_usec = 0;
	else if (d->none_up_usec == 0)
		d->none_up_usec = now_usec();
	if (!d->ready && d->nup == d->nworkers) {
		char status[64];

		snprintf(status, sizeof(status), "%u/%u workers connected",
		    d->nup, d->nworkers);
		d->ready = true;
		d->none_up_usec = 0;
		notify_ready(status);
		log_notice("ready: %s, control socket %s", status,
		    d->conf.control_socket);
		/* A SIGHUP that came while starting. */
		if (d->reload_again)
			(void)sd_event_source_set_enabled(d->reload_src,
			    SD_EVENT_ONESHOT);
	} else if (d->ready) {
		if (d->degraded && d->nup > 0) {
			d->degraded = false;
			log_notice("no longer degraded: %u/%u workers up",
			    d->nup, d->nworkers);
		}
		notify_status("%u/%u workers connected", d->nup, d->nworkers);
	}
}

/* No worker up for degraded_timeout_ms: say so, and exit if so asked. */
static void
check_degraded(struct fanoutd *d, uint64_t now)
{
	uint64_t away;

	if (!d->ready || d->stopping || d->degraded || d->none_up_usec == 0)
		return;
	away = (now - d->none_up_usec) / 1000;
	if (away < d->conf.degraded_timeout_ms)
		return;
	d->degraded = true;
	logit(d->conf.degraded_action == DEGRADED_EXIT ? LOG_ERR : LOG_WARNING,
	    "degraded: no worker has been up for %llu ms%s",
	    (unsigned long long)away,
	    d->conf.degraded_action == DEGRADED_EXIT ? "; exiting "
	    "(degraded_action \"exit\")" : "; messages are queued");
	notify_status("degraded: no worker up for %llu.%llu s",
	    (unsigned long long)(away / 1000),
	    (unsigned long long)(away % 1000 / 100));
	if (d->conf.degraded_action == DEGRADED_EXIT)
		fanoutd_stop(d, 1);
}

static int
on_tick(sd_event_source *s, uint64_t usec, void *arg)
{
	struct fanoutd *d = arg;
	uint64_t now = now_usec();

	(void)usec;
	if (!d->stopping)
		pool_tick(d, now);
	reload_kick(d);		/* a retiring worker's deadline */
	check_degraded(d, now);
	log_limit_flush(false);		/* what was suppressed, once it was */
	(void)sd_event_source_set_time_relative(s, tick_usec(d));
	(void)sd_event_source_set_enabled(s, SD_EVENT_ON);
	return 0;
}

static int
on_flush(sd_event_source *s, void *arg)
{
	struct fanoutd *d = arg;

	(void)s;
	/* Flushing a peer may answer a client; loop until both are clean.
	 * The spool's batch is committed before any reply is written: a
	 * `queued' in it must be on disk first. */
	do {
		while (d->dirty_workers != NULL) {
			struct worker *w = d->dirty_workers;

			d->dirty_workers = w->next_dirty;
			w->dirty = false;
			w->link.ops->flush(w);
		}
		spooler_commit(d);
		while (d->dirty_ctls != NULL) {
			struct ctl_conn *c = d->dirty_ctls;

			d->dirty_ctls = c->next_dirty;
			control_flush(c);
		}
	} while (d->dirty_workers != NULL || d->dirty_ctls != NULL);
	return 0;
}

void
fanoutd_schedule_flush(struct fanoutd *d)
{
	(void)sd_event_source_set_enabled(d->flush_src, SD_EVENT_ONESHOT);
}

static int
on_stop_deadline(sd_event_source *s, uint64_t usec, void *arg)
{
	struct fanoutd *d = arg;

	(void)s;
	(void)usec;
	log_warnx("shutdown did not complete in time; exiting anyway");
	(void)sd_event_exit(d->ev, d->exit_code);
	return 0;
}

/* An ack_timeout_ms of an hour must not hold a shutdown for an hour. */
static int
on_drain_deadline(sd_event_source *s, uint64_t usec, void *arg)
{
	struct fanoutd *d = arg;

	(void)s;
	(void)usec;
	if (d->bcasts != NULL) {
		log_warnx("broadcasts still waiting for acks after %u ms of "
		    "shutdown; answering them now", d->conf.stop_timeout_ms);
		bcast_abort_all(d);
	}
	return 0;
}

/*
 * Shutdown, in order: stop accepting; let the broadcasts in flight finish
 * or reach their deadlines (stop_timeout_ms at most) and answer them; then
 * stop the workers (each gets SIGTERM, SIGKILL after stop_timeout_ms);
 * once all are reaped, flush the last replies and exit.  A failed startup
 * skips the wait.
 */
void
fanoutd_stop(struct fanoutd *d, int exit_code)
{
	uint32_t i;

	if (d->stopping)
		return;
	d->stopping = true;
	d->exit_code = exit_code;
	if (exit_code == 0)
		log_notice("shutting down");
	else if (!d->ready)
		log_errx("startup failed; stopping the workers");
	else
		log_errx("stopping the workers; exiting with status %d",
		    exit_code);
	notify_stopping();
	reload_abort(d);
	control_close_listener(d);
	/* Workers that are away will not ack before the end. */
	for (i = 0; i < d->nworkers; i++)
		if (d->workers[i]->state != W_UP)
			bcast_worker_away(d->workers[i]);
	if (exit_code != 0)
		bcast_abort_all(d);
	else if (d->bcasts != NULL &&
	    sd_event_add_time_relative(d->ev, &d->drain_timer,
	    CLOCK_MONOTONIC, (uint64_t)d->conf.stop_timeout_ms * 1000, 1000,
	    on_drain_deadline, d) < 0)
		log_warnx("cannot arm the shutdown deadline");
	fanoutd_check_done(d);
}

static int
on_check_done(sd_event_source *s, void *arg)
{
	struct fanoutd *d = arg;
	int r;

	(void)s;
	if (!d->stopping)
		return 0;
	if (!d->workers_stopped && d->bcasts == NULL) {
		d->workers_stopped = true;
		pool_stop(d);
		r = sd_event_add_time_relative(d->ev, &d->stop_timer,
		    CLOCK_MONOTONIC, (uint64_t)d->conf.stop_timeout_ms * 1000 +
		    FINAL_GRACE_USEC, 1000, on_stop_deadline, d);
		if (r < 0)
			log_warnx("cannot arm the shutdown deadline: %s",
			    strerror(-r));
	}
	if (!d->workers_stopped || d->nalive > 0)
		return 0;
	if (!d->closing_ctls) {
		d->closing_ctls = true;
		bcast_abort_all(d);
		control_close_all(d, false);
	}
	if (control_idle(d))
		(void)sd_event_exit(d->ev, d->exit_code);
	return 0;
}

/* Shutdown moves on from the loop, never from inside the event that made
 * it possible: callers may be deep in a worker's or a broadcast's code. */
void
fanoutd_check_done(struct fanoutd *d)
{
	if (d->stopping)
		(void)sd_event_source_set_enabled(d->done_src,
		    SD_EVENT_ONESHOT);
}

static int
on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *arg)
{
	struct fanoutd *d = arg;

	(void)s;
	if (si->ssi_signo == SIGHUP) {
		if (!d->stopping) {
			log_info("SIGHUP: reloading the configuration");
			(void)reload_start(d, NULL, 0);
		}
		return 0;
	}
	log_info("received %s", strsignal((int)si->ssi_signo));
	fanoutd_stop(d, 0);
	return 0;
}

/* A signal with no meaning here (util.h, sig_stray): sent by mistake,
 * perhaps to the whole process group.  Said, and nothing else. */
static int
on_stray(sd_event_source *s, const struct signalfd_siginfo *si, void *arg)
{
	static struct log_limit ll = LOG_LIMIT_INIT(LOG_INFO,
	    "signals ignored");

	(void)s;
	(void)arg;
	if (log_limit(&ll))
		log_info("%s from pid %u: ignored",
		    strsignal((int)si->ssi_signo), si->ssi_pid);
	return 0;
}

/* Descriptors besides workers and clients: stdio, the event loop's epoll,
 * signalfd and timerfds, the listener, the notify socket, libraries. */
#define FDS_MARGIN	64

/* Per worker: its link, its notify socket, its pidfd and, while it is
 * spawned, both ends of its key's pipe. */
unsigned long
fanoutd_fds_needed(const struct fanout_conf *conf)
{
	return (unsigned long)conf->workers * 5 +
	    conf->control_max_connections + FDS_MARGIN;
}

/*
 * Raises the soft limit on open files to what the configuration needs.  A
 * hard limit below that is worth a warning, not a refusal: fanoutd runs,
 * and what does not fit fails one at a time (a worker that cannot start,
 * a control connection accepted later).  With test set, only says so.
 */
static void
fd_limit_check(const struct fanout_conf *conf, bool test)
{
	unsigned long need = fanoutd_fds_needed(conf);
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		log_warnx("the open file limit (%llu, hard) is below the %lu "
		    "descriptors this configuration needs (%u workers, %u "
		    "control connections); raise it (LimitNOFILE=, ulimit "
		    "-Hn)", (unsigned long long)rl.rlim_max, need,
		    conf->workers, conf->control_max_connections);
	if (test || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ?
	    rl.rlim_max : need;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_warn("cannot raise the open file limit to %llu",
		    (unsigned long long)rl.rlim_cur);
}

void
fanoutd_conf_changed(struct fanoutd *d)
{
	fd_limit_check(&d->conf, false);
}

static int
on_reload(sd_event_source *s, void *arg)
{
	struct fanoutd *d = arg;

	(void)s;
	if (!d->stopping && d->reload_again) {
		d->reload_again = false;
		(void)reload_start(d, NULL, 0);
	}
	return 0;
}

static int
fanoutd_run(struct fanoutd *d)
{
	int stray[SIG_STRAY_MAX];
	size_t nstray, i;
	int r;

	/* Blocked before anything can fork, so that no signal is lost;
	 * workers restore the mask before exec. */
	if ((r = sig_setup(NULL, stray)) < 0)
		fatalx("sigprocmask: %s", strerror(-r));
	nstray = (size_t)r;
	fd_limit_check(&d->conf, false);

	if ((r = sd_event_new(&d->ev)) < 0) {
		log_errx("cannot create the event loop: %s", strerror(-r));
		return 1;
	}
	if (sd_event_add_signal(d->ev, NULL, SIGTERM, on_signal, d) < 0 ||
	    sd_event_add_signal(d->ev, NULL, SIGINT, on_signal, d) < 0 ||
	    sd_event_add_signal(d->ev, NULL, SIGHUP, on_signal, d) < 0 ||
	    sd_event_add_defer(d->ev, &d->flush_src, on_flush, d) < 0 ||
	    sd_event_add_defer(d->ev, &d->done_src, on_check_done, d) < 0 ||
	    sd_event_add_defer(d->ev, &d->reload_src, on_reload, d) < 0 ||
	    sd_event_add_time_relative(d->ev, &d->tick_src, CLOCK_MONOTONIC,
	    tick_usec(d), tick_usec(d) / 2, on_tick, d) < 0) {
		log_errx("cannot set up the event loop");
		return 1;
	}
	for (i = 0; i < nstray; i++)
		if ((r = sd_event_add_signal(d->ev, NULL, stray[i], on_stray,
		    d)) < 0) {
			log_errx("cannot set up the event loop: signal %d: %s",
			    stray[i], strerror(-r));
			return 1;
		}
	(void)sd_event_source_set_enabled(d->flush_src, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(d->done_src, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(d->reload_src, SD_EVENT_OFF);
	/* Flushes run before the shutdown check in the same turn. */
	(void)sd_event_source_set_priority(d->done_src,
	    SD_EVENT_PRIORITY_IDLE);
	/* WATCHDOG=1 from the loop itself, when systemd asks for it. */
	if ((r = sd_event_set_watchdog(d->ev, true)) < 0)
		log_warnx("cannot enable the systemd watchdog: %s",
		    strerror(-r));
	/* The broker before the control socket: fanoutd takes messages only
	 * once it knows where remote ones go. */
	if (spooler_open(d) < 0 || remote_start(d) < 0 || control_start(d) < 0)
		return 1;
	notify_status("starting %u workers", d->conf.workers);
	if ((r = pool_start(d)) < 0)
		fanoutd_stop(d, 1);
	if ((r = sd_event_loop(d->ev)) < 0) {
		log_errx("event loop: %s", strerror(-r));
		return 1;
	}
	return r;
}

/* conf_load's errors through the log: under the journal they are errors,
 * not stray lines at the default priority. */
static int
load_conf(struct fanoutd *d)
{
	char *errors;
	int r;

	r = reload_load_conf(d->conf_path, &d->conf, &errors);
	if (errors != NULL && errors[0] != '\0')
		log_lines(r == -1 ? LOG_ERR : LOG_WARNING, errors);
	free(errors);
	return r;
}

static void
fanoutd_free(struct fanoutd *d)
{
	/* Reached early only when shutdown ran out of time: what is still
	 * unanswered or unsent is dropped. */
	control_close_listener(d);
	bcast_abort_all(d);
	spooler_commit(d);	/* answers the broadcasts held for it */
	d->closing_ctls = true;
	control_close_all(d, true);
	reload_free(d);
	pool_free(d);
	peer_free(d);
	remote_free(d);
	spooler_close(d);
	d->reload_src = sd_event_source_disable_unref(d->reload_src);
	d->stop_timer = sd_event_source_disable_unref(d->stop_timer);
	d->flush_src = sd_event_source_disable_unref(d->flush_src);
	d->done_src = sd_event_source_disable_unref(d->done_src);
	d->drain_timer = sd_event_source_disable_unref(d->drain_timer);
	d->tick_src = sd_event_source_disable_unref(d->tick_src);
	d->ev = sd_event_unref(d->ev);
	conf_free(&d->conf);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "config",	required_argument,	NULL, 'c' },
		{ "test",	no_argument,		NULL, 't' },
		{ "verbose",	no_argument,		NULL, 'v' },
		{ "help",	no_argument,		NULL, 'h' },
		{ "version",	no_argument,		NULL, 'V' },
		{ NULL,		0,			NULL, 0 }
	};
	struct fanoutd d;
	int ch, test = 0, verbose = 0, code;

	/* Before anything is opened: a control socket or worker link on a
	 * closed descriptor 1 or 2 would get the log lines. */
	if (std_fds_open() == -1)
		return 1;
	memset(&d, 0, sizeof(d));
	d.ctl_fd = -1;
	d.start_usec = now_usec();
	d.conf_path = FANOUT_CONF_DEFAULT;
	while ((ch = getopt_long(argc, argv, "c:tvhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			d.conf_path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout, 0);
		case 'V':
			printf("fanoutd %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr, 2);
		}
	}
	if (optind != argc) {
		fprintf(stderr, "fanoutd: unexpected argument: %s\n",
		    argv[optind]);
		usage(stderr, 2);
	}
	log_init("fanoutd", verbose);
	if (load_conf(&d) == -1)
		return 1;
	if (test) {
		fd_limit_check(&d.conf, true);
		if (remote_check(&d.conf, d.conf_path) < 0) {
			conf_free(&d.conf);
			return 1;
		}
		if (verbose > 0)
			conf_print(&d.conf, stdout);
		printf("configuration OK\n");
		conf_free(&d.conf);
		return 0;
	}
	code = fanoutd_run(&d);
	fanoutd_free(&d);
	log_limit_flush(true);
	if (code == 0)
		log_info("stopped");
	return code;
}
