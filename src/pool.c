/* SPDX-License-Identifier: MIT */
/*
 * The worker process pool: spawning, readiness on each worker's own notify
 * socket, reaping, and an orderly stop.  Every change of a worker's state
 * goes through worker_event(); the TCP link itself lives in peer.c.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fanoutd.h"
#include "log.h"
#include "notify.h"

enum worker_ev {
	WE_SPAWNED,		/* fork succeeded */
	WE_NOTIFIED,		/* READY=1 from the worker's own pid */
	WE_CONNECTED,		/* TCP link established */
	WE_LINK_LOST,		/* connect failed, EOF, error or garbage */
	WE_EXITED,		/* process reaped */
	WE_TIMEOUT,		/* not up within start_timeout_ms */
	WE_STOP,		/* daemon shutting down */
};

static const char *const state_names[] = W_STATE_NAMES;

const char *
worker_state_name(enum worker_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ?
	    state_names[s] : "unknown";
}

static void
worker_signal(struct worker *w, int sig)
{
	if (w->child_src != NULL)
		(void)sd_event_source_send_child_signal(w->child_src, sig,
		    NULL, 0);
}

static void
worker_stop_notify(struct worker *w)
{
	w->notify_src = sd_event_source_disable_unref(w->notify_src);
	if (w->notify_fd >= 0)
		close(w->notify_fd);
	w->notify_fd = -1;
}

/*
 * The worker lifecycle.  Restarting a dead worker is not done yet: a worker
 * that is lost stays W_DEAD and is reported as down.
 *
 * state \ event  SPAWNED   NOTIFIED  CONNECTED  LINK_LOST  EXITED  TIMEOUT  STOP
 * W_DEAD         STARTING     -          -          -        -        -       -
 * W_STARTING        -       READY        -          -       DEAD   STOPPING STOPPING
 * W_READY           -         -         UP       STOPPING   DEAD   STOPPING STOPPING
 * W_UP              -         -          -       STOPPING   DEAD      -     STOPPING
 * W_STOPPING        -         -          -          -       DEAD      -       -
 *
 * Before the daemon is ready, any way out of the happy path fails startup.
 */
static void
worker_event(struct worker *w, enum worker_ev ev)
{
	struct fanoutd *d = w->d;
	enum worker_state old = w->state, new = old;

	switch (ev) {
	case WE_SPAWNED:
		new = W_STARTING;
		break;
	case WE_NOTIFIED:
		if (old == W_STARTING)
			new = W_READY;
		break;
	case WE_CONNECTED:
		if (old == W_READY)
			new = W_UP;
		break;
	case WE_LINK_LOST:
	case WE_TIMEOUT:
	case WE_STOP:
		if (old == W_STARTING || old == W_READY || old == W_UP) {
			worker_signal(w, SIGTERM);
			new = W_STOPPING;
		}
		break;
	case WE_EXITED:
		new = W_DEAD;
		break;
	}
	if (new == old)
		return;
	w->state = new;
	log_debug("worker %u (pid %d): %s -> %s", w->index, (int)w->pid,
	    worker_state_name(old), worker_state_name(new));
	if (old == W_UP)
		d->nup--;
	if (new == W_UP)
		d->nup++;
	if (new != W_STARTING && new != W_READY)
		w->timer_src = sd_event_source_disable_unref(w->timer_src);
	if (new != W_STARTING)
		worker_stop_notify(w);
	fanoutd_workers_changed(d);
	if (!d->ready && !d->stopping && (new == W_STOPPING || new == W_DEAD))
		fanoutd_stop(d, 1);
}

/* Reads queued notifications; true once READY=1 came from the worker. */
static bool
notify_drain(struct worker *w)
{
	struct notify_msg m;
	bool ready = false;
	int r;

	while (w->notify_fd >= 0 &&
	    (r = notify_recv(w->notify_fd, &m)) != -EAGAIN) {
		if (r < 0) {
			log_debug("worker %u: notify socket: %s", w->index,
			    strerror(-r));
			continue;
		}
		/* The abstract socket is reachable by anyone: only the
		 * worker's own word counts. */
		if (m.pid != w->pid) {
			log_warnx("worker %u: ignoring notification from pid "
			    "%d, not the worker's %d", w->index, (int)m.pid,
			    (int)w->pid);
			continue;
		}
		if (m.status[0] != '\0')
			snprintf(w->why, sizeof(w->why), "%s", m.status);
		if (m.errnum != 0 && m.status[0] == '\0')
			snprintf(w->why, sizeof(w->why), "%s",
			    strerror(m.errnum));
		ready = ready || m.ready;
	}
	return ready;
}

static int
on_notify(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct worker *w = arg;
	int r;

	(void)s;
	(void)fd;
	(void)revents;
	if (!notify_drain(w) || w->state != W_STARTING)
		return 0;
	log_debug("worker %u (pid %d) ready: %s", w->index, (int)w->pid,
	    w->why);
	w->why[0] = '\0';
	worker_event(w, WE_NOTIFIED);
	if ((r = peer_connect(w)) < 0) {
		char why[128];

		snprintf(why, sizeof(why), "cannot connect: %s", strerror(-r));
		worker_link_lost(w, why);
	}
	return 0;
}

static void
describe_exit(const siginfo_t *si, char *buf, size_t len)
{
	if (si->si_code == CLD_EXITED)
		snprintf(buf, len, "exited with status %d", si->si_status);
	else
		snprintf(buf, len, "killed by signal %d (%s)", si->si_status,
		    strsignal(si->si_status));
}

static int
on_child(sd_event_source *s, const siginfo_t *si, void *arg)
{
	struct worker *w = arg;
	struct fanoutd *d = w->d;
	char how[96];

	(void)s;
	(void)notify_drain(w);	/* a last STATUS= may explain the exit */
	describe_exit(si, how, sizeof(how));
	if (!d->ready && !d->stopping)
		log_warnx("worker %u (port %u) failed to start: %s%s%s",
		    w->index, w->port, w->why[0] ? w->why : how,
		    w->why[0] ? "; " : "", w->why[0] ? how : "");
	else if (w->state == W_STOPPING)
		log_info("worker %u (pid %d) %s", w->index, (int)w->pid, how);
	else
		log_warnx("worker %u (pid %d, port %u) %s", w->index,
		    (int)w->pid, w->port, how);
	/* Acks the worker wrote before it died still count. */
	peer_drain(w);
	peer_close(w, d->stopping ? ACK_SHUTDOWN : ACK_DOWN);
	w->child_src = sd_event_source_disable_unref(w->child_src);
	w->pid = 0;
	d->nalive--;
	worker_event(w, WE_EXITED);
	fanoutd_check_done(d);
	return 0;
}

static int
on_start_timeout(sd_event_source *s, uint64_t usec, void *arg)
{
	struct worker *w = arg;

	(void)s;
	(void)usec;
	log_warnx("worker %u (pid %d, port %u) not %s within %u ms",
	    w->index, (int)w->pid, w->port,
	    w->state == W_STARTING ? "ready" : "connected",
	    w->d->conf.start_timeout_ms);
	worker_event(w, WE_TIMEOUT);
	return 0;
}

/* In the child between fork and exec.  fanoutd is single-threaded, so
 * ordinary libc calls are safe here. */
static void __attribute__((noreturn))
worker_exec(struct worker *w, pid_t parent, const char *notify_name)
{
	struct fanoutd *d = w->d;
	char index[16], port[16];
	char *argv[10];
	int argc = 0;
	sigset_t all;

	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	signal(SIGPIPE, SIG_DFL);
	/* No orphans: the worker gets SIGTERM when fanoutd dies, however
	 * it dies.  Check the parent afterwards, in case that was already. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != parent)
		_exit(1);
	setenv("NOTIFY_SOCKET", notify_name, 1);
	snprintf(index, sizeof(index), "%u", w->index);
	snprintf(port, sizeof(port), "%u", w->port);
	argv[argc++] = (char *)"fanout-worker";
	argv[argc++] = (char *)"--index";
	argv[argc++] = index;
	argv[argc++] = (char *)"--port";
	argv[argc++] = port;
	argv[argc++] = (char *)"--address";
	argv[argc++] = d->conf.listen_address;
	if (log_getverbose() > 0)
		argv[argc++] = (char *)"-v";
	argv[argc] = NULL;
	execv(d->conf.worker_path, argv);
	notify_failure(errno, "cannot execute worker_path");
	_exit(127);
}

static int
worker_spawn(struct worker *w)
{
	struct fanoutd *d = w->d;
	char name[108];
	pid_t pid, parent = getpid();
	int r;

	w->why[0] = '\0';
	if ((w->notify_fd = notify_listen(name, sizeof(name))) < 0)
		return w->notify_fd;
	r = sd_event_add_io(d->ev, &w->notify_src, w->notify_fd, EPOLLIN,
	    on_notify, w);
	if (r < 0)
		return r;
	if ((pid = fork()) == -1)
		return -errno;
	if (pid == 0)
		worker_exec(w, parent, name);
	w->pid = pid;
	d->nalive++;
	/* pidfd based: no reaping loop, no pid reuse race. */
	r = sd_event_add_child(d->ev, &w->child_src, pid, WEXITED, on_child, w);
	if (r < 0) {
		kill(pid, SIGKILL);
		return r;
	}
	r = sd_event_add_time_relative(d->ev, &w->timer_src, CLOCK_MONOTONIC,
	    (uint64_t)d->conf.start_timeout_ms * 1000, 1000,
	    on_start_timeout, w);
	if (r < 0)
		return r;
	log_debug("worker %u spawned: pid %d, port %u", w->index, (int)pid,
	    w->port);
	worker_event(w, WE_SPAWNED);
	return 0;
}

int
pool_start(struct fanoutd *d)
{
	uint32_t i;
	int r;

	d->nworkers = d->conf.workers;
	d->workers = calloc(d->nworkers, sizeof(*d->workers));
	if (d->workers == NULL)
		return -ENOMEM;
	for (i = 0; i < d->nworkers; i++) {
		struct worker *w = &d->workers[i];

		w->d = d;
		w->index = i;
		w->port = (uint16_t)(d->conf.base_port + i);
		w->state = W_DEAD;
		w->notify_fd = w->fd = -1;
	}
	/* All at once: readiness and connects proceed in parallel. */
	for (i = 0; i < d->nworkers; i++) {
		if ((r = worker_spawn(&d->workers[i])) < 0) {
			log_warnx("cannot start worker %u: %s", i,
			    strerror(-r));
			return r;
		}
	}
	return 0;
}

void
worker_link_up(struct worker *w)
{
	log_debug("worker %u (pid %d) connected on port %u", w->index,
	    (int)w->pid, w->port);
	worker_event(w, WE_CONNECTED);
}

void
worker_link_lost(struct worker *w, const char *why)
{
	struct fanoutd *d = w->d;

	if (!d->stopping || w->state != W_STOPPING)
		log_warnx("worker %u (pid %d, port %u): %s%s", w->index,
		    (int)w->pid, w->port, why,
		    d->stopping ? "" : "; stopping it");
	peer_close(w, d->stopping ? ACK_SHUTDOWN : ACK_DOWN);
	worker_event(w, WE_LINK_LOST);
}

void
pool_stop(struct fanoutd *d)
{
	uint32_t i;

	for (i = 0; i < d->nworkers; i++)
		worker_event(&d->workers[i], WE_STOP);
}

void
pool_kill(struct fanoutd *d)
{
	uint32_t i;

	for (i = 0; i < d->nworkers; i++) {
		struct worker *w = &d->workers[i];

		if (w->pid > 0) {
			log_warnx("worker %u (pid %d) did not stop within "
			    "%u ms; killing it", w->index, (int)w->pid,
			    d->conf.stop_timeout_ms);
			worker_signal(w, SIGKILL);
		}
	}
}

void
pool_free(struct fanoutd *d)
{
	uint32_t i;

	for (i = 0; i < d->nworkers; i++) {
		struct worker *w = &d->workers[i];

		peer_close(w, ACK_SHUTDOWN);
		worker_stop_notify(w);
		w->timer_src = sd_event_source_disable_unref(w->timer_src);
		w->child_src = sd_event_source_disable_unref(w->child_src);
	}
	free(d->workers);
	d->workers = NULL;
	d->nworkers = 0;
}
