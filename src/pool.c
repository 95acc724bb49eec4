/* SPDX-License-Identifier: MIT */
/*
 * The worker pool: one slot per worker, each with its process (spawned here,
 * ready on a notify socket of its own, reaped through a pidfd), its link and
 * its queue.  Every change of a slot's state goes through worker_event();
 * this file decides when a process is started, stopped or restarted.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fanoutd.h"
#include "log.h"
#include "notify.h"
#include "util.h"

static const char *const state_names[] = {
	"dead", "starting", "connecting", "up", "backoff", "stalled",
	"restarting", "stopping", "replacing",
};

const char *
worker_state_name(enum worker_state s)
{
	return (unsigned)s < nitems(state_names) ? state_names[s] : "unknown";
}

enum wire_state
worker_wire_state(const struct worker *w)
{
	if (w->retiring)
		return WS_RETIRING;
	switch (w->state) {
	case W_DEAD:
		return WS_DOWN;
	case W_STARTING:
	case W_CONNECTING:
		return WS_STARTING;
	case W_UP:
		return WS_UP;
	case W_BACKOFF:
	case W_RESTARTING:
		return WS_BACKOFF;
	case W_STALLED:
		return WS_STALLED;
	case W_STOPPING:
		return WS_STOPPING;
	case W_REPLACING:
		return WS_RESTARTING;
	}
	return WS_DOWN;
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
	if (w->notify_fd >= 0) {
		close(w->notify_fd);
		control_fd_freed(w->d);
	}
	w->notify_fd = -1;
}

static int	on_timer(sd_event_source *, uint64_t, void *);

static void
worker_arm(struct worker *w, uint64_t usec)
{
	int r;

	w->timer_src = sd_event_source_disable_unref(w->timer_src);
	r = sd_event_add_time_relative(w->d->ev, &w->timer_src,
	    CLOCK_MONOTONIC, usec, 1000, on_timer, w);
	if (r < 0)
		log_warnx("worker %u: cannot arm a timer: %s", w->index,
		    strerror(-r));
}

/* Backoff: 100 ms, doubling with each failure in a row, up to the cap; a
 * worker that stayed up for restart_reset_ms starts again from 100 ms. */
static uint64_t
worker_backoff_usec(struct worker *w, uint64_t now)
{
	const struct fanout_conf *cf = &w->d->conf;
	uint64_t ms = RESTART_DELAY_MIN_MS;
	uint32_t i;

	if (w->up_usec != 0 && now - w->up_usec >= cf->restart_reset_ms * 1000ULL)
		w->failures = 0;
	w->up_usec = 0;
	for (i = 0; i < w->failures && ms < cf->restart_max_delay_ms; i++)
		ms *= 2;
	if (ms > cf->restart_max_delay_ms)
		ms = cf->restart_max_delay_ms;
	w->failures++;
	return ms * 1000;
}

static void	worker_set_state(struct worker *, enum worker_state);
static void	worker_respawn(struct worker *);

/* Starts the link; a connect that fails at once is a lost link. */
static void
worker_connect(struct worker *w)
{
	char why[128];
	int r;

	if ((r = w->link.ops->connect(w)) < 0) {
		snprintf(why, sizeof(why), "cannot connect: %s", strerror(-r));
		pool_link_lost(w, why);
	}
}

/* Another link to a process that said READY=1, within its start timeout
 * (whose timer runs on): a lost handshake is tried again at once, without
 * a restart and without failing the start-up; connect() itself counts. */
static bool
pool_link_retry(const struct worker *w)
{
	return w->state == W_CONNECTING && !w->d->stopping &&
	    w->link_tries + 1 < LINK_TRIES_MAX;
}

/* W_BACKOFF is over: respawn, or reconnect to a process that lives on. */
static void
worker_retry(struct worker *w)
{
	int r;

	if (w->pid > 0) {
		worker_set_state(w, W_CONNECTING);
		worker_connect(w);
		return;
	}
	if ((r = worker_spawn(w)) < 0) {
		log_warnx("worker %u: cannot restart: %s", w->index,
		    strerror(-r));
		w->exit_kind = WX_STARTFAIL;
		w->exit_code = 0;
		worker_set_state(w, W_BACKOFF);	/* the next, longer wait */
	}
}

/* Entry actions of a state. */
static void
worker_enter(struct worker *w, enum worker_state old)
{
	struct fanoutd *d = w->d;
	uint64_t now = w->state_usec, delay;

	switch (w->state) {
	case W_STARTING:
	case W_CONNECTING:
		w->link_tries = 0;
		if (old != W_STARTING)
			worker_arm(w, d->conf.start_timeout_ms * 1000ULL);
		break;
	case W_UP:
		w->timer_src = sd_event_source_disable_unref(w->timer_src);
		w->up_usec = now;
		w->progress_usec = now;
		/* Added by a reload: broadcasts are for it from now on. */
		if (!w->member && !w->retiring)
			w->member = true;
		/* At startup, "ready" says it for all of them. */
		if (d->ready)
			log_notice("worker %u (pid %d, port %u) up", w->index,
			    (int)w->pid, w->port);
		worker_kick(w);
		break;
	case W_BACKOFF:
		delay = worker_backoff_usec(w, now);
		w->retry_usec = now + delay;
		worker_arm(w, delay);
		log_notice("worker %u (port %u): %s again in %llu ms",
		    w->index, w->port, w->pid > 0 ? "reconnecting" :
		    "restarting", (unsigned long long)(delay / 1000));
		break;
	case W_STALLED:
	case W_RESTARTING:
	case W_STOPPING:
	case W_REPLACING:
		/* CONT, so that a stopped process gets the TERM; CONT
		 * first, because a CONT that comes later cancels any stop
		 * pending then (a ptrace attach at exit, say, which then
		 * waits forever).  KILL when the timer fires. */
		worker_signal(w, SIGCONT);
		worker_signal(w, SIGTERM);
		worker_arm(w, pool_stop_usec(d));
		break;
	case W_DEAD:
		w->timer_src = sd_event_source_disable_unref(w->timer_src);
		/* Only now, with the last acks read, is the loss known. */
		if (d->stopping && w->q.n > 0 && spooler_count(d, w->index) ==
		    w->q.n)
			log_info("worker %u: %u queued message%s (%llu "
			    "byte%s) kept in the spool", w->index, w->q.n,
			    PLURAL(w->q.n), (unsigned long long)w->q.bytes,
			    PLURAL(w->q.bytes));
		else if (d->stopping && w->q.n > 0 && d->spool != NULL)
			log_warnx("worker %u: %u queued message%s: %llu kept "
			    "in the spool, the others dropped at shutdown",
			    w->index, w->q.n, PLURAL(w->q.n),
			    (unsigned long long)spooler_count(d, w->index));
		else if (d->stopping && w->q.n > 0)
			log_warnx("worker %u: %u queued message%s (%llu "
			    "byte%s) dropped at shutdown", w->index, w->q.n,
			    PLURAL(w->q.n), (unsigned long long)w->q.bytes,
			    PLURAL(w->q.bytes));
		break;
	}
}

/*
 * The worker lifecycle.  After the daemon is ready a failure leads to
 * W_BACKOFF and a retry; before it, any failure fails the startup.
 *
 * state \ event SPAWNED  NOTIFIED   CONNECTED LINK_LOST  EXITED  TIMEOUT     STALL   STOP
 * DEAD          STARTING    -          -         -         -        -          -       -
 * STARTING         -    CONNECTING     -         -      BACKOFF RESTARTING     -    STOPPING
 * CONNECTING       -        -          UP    RESTARTING BACKOFF RESTARTING     -    STOPPING
 * UP               -        -          -      BACKOFF   BACKOFF     -       STALLED STOPPING
 * BACKOFF      STARTING     -          -         -      BACKOFF  (retry)       -    STOPPING/DEAD
 * STALLED          -        -          -         -      BACKOFF  (SIGKILL)     -    STOPPING
 * RESTARTING       -        -          -         -      BACKOFF  (SIGKILL)     -    STOPPING
 * STOPPING         -        -          -         -       DEAD    (SIGKILL)     -       -
 * REPLACING        -        -          -         -     (spawn)   (SIGKILL)     -    STOPPING
 *
 * A link lost in CONNECTING is tried again at once, LINK_TRIES_MAX links in
 * all, before the RESTARTING of the table.
 * BACKOFF's retry reconnects (-> CONNECTING) while the process lives, and
 * spawns (-> STARTING) once it is gone.  REPLACE (a reload changed the
 * worker's settings) takes STARTING, CONNECTING, UP and a BACKOFF with a
 * live process to REPLACING; its exit spawns the new process at once.
 */
void
worker_event(struct worker *w, enum worker_ev ev)
{
	struct fanoutd *d = w->d;
	enum worker_state old = w->state, new = old;

	switch (ev) {
	case WE_SPAWNED:
		if (old == W_DEAD || old == W_BACKOFF)
			new = W_STARTING;
		break;
	case WE_NOTIFIED:
		if (old == W_STARTING)
			new = W_CONNECTING;
		break;
	case WE_CONNECTED:
		if (old == W_CONNECTING)
			new = W_UP;
		break;
	case WE_LINK_LOST:
		if (old == W_UP)
			new = W_BACKOFF;
		else if (old == W_CONNECTING && pool_link_retry(w)) {
			w->link_tries++;
			worker_connect(w);
			return;
		} else if (old == W_CONNECTING)
			new = W_RESTARTING;
		break;
	case WE_EXITED:
		/* In W_BACKOFF already (its link went first): the retry
		 * that is due respawns instead of reconnecting. */
		if (old == W_BACKOFF && !d->stopping)
			return;
		if (old == W_REPLACING && !d->stopping) {
			worker_respawn(w);
			return;
		}
		new = old == W_STOPPING || d->stopping ? W_DEAD : W_BACKOFF;
		break;
	case WE_TIMEOUT:
		switch (old) {
		case W_STARTING:
		case W_CONNECTING:
			new = W_RESTARTING;
			w->exit_kind = WX_STARTFAIL;
			break;
		case W_BACKOFF:
			if (!d->stopping)
				worker_retry(w);
			return;
		case W_STALLED:
		case W_RESTARTING:
		case W_STOPPING:
		case W_REPLACING:
			log_warnx("worker %u (pid %d) did not stop within "
			    "%llu ms; killing it", w->index, (int)w->pid,
			    (unsigned long long)(pool_stop_usec(d) / 1000));
			worker_signal(w, SIGKILL);
			return;
		default:
			return;
		}
		break;
	case WE_STALL:
		if (old == W_UP)
			new = W_STALLED;
		break;
	case WE_STOP:
		if (w->pid <= 0)
			new = W_DEAD;
		else if (old != W_STOPPING)
			new = W_STOPPING;
		break;
	case WE_REPLACE:
		if (w->pid > 0 && (old == W_STARTING || old == W_CONNECTING ||
		    old == W_UP || old == W_BACKOFF))
			new = W_REPLACING;
		break;
	}
	if (new == old)
		return;
	if (!d->ready && !d->stopping &&
	    (new == W_BACKOFF || new == W_RESTARTING || new == W_STALLED)) {
		/* Not ready yet: a worker that fails fails the startup, and
		 * stopping the pool takes this one along. */
		fanoutd_stop(d, 1);
		return;
	}
	worker_set_state(w, new);
}

/* The bookkeeping of every transition, then the new state's entry. */
static void
worker_set_state(struct worker *w, enum worker_state new)
{
	struct fanoutd *d = w->d;
	enum worker_state old = w->state;

	w->state = new;
	w->state_usec = now_usec();
	log_debug("worker %u (pid %d): %s -> %s", w->index, (int)w->pid,
	    worker_state_name(old), worker_state_name(new));
	if (old == W_UP)
		d->nup--;
	if (new == W_UP)
		d->nup++;
	if (new != W_STARTING)
		worker_stop_notify(w);
	/* A worker stopped while up still acks what its handler took: its
	 * link stays open for reading until it exits. */
	if (new != W_UP && new != W_CONNECTING &&
	    !((new == W_STOPPING || new == W_REPLACING) && old == W_UP))
		w->link.ops->close(w, false);
	if (old == W_UP)
		bcast_worker_away(w);
	worker_enter(w, old);
	fanoutd_workers_changed(d);
	if (d->reload != NULL)
		reload_kick(d);
}

/* Its replacement's turn: the old process is gone, the new one starts at
 * once, with the settings of now. */
static void
worker_respawn(struct worker *w)
{
	int r;

	worker_set_state(w, W_DEAD);
	w->failures = 0;
	w->exit_kind = WX_NONE;
	if ((r = worker_spawn(w)) < 0) {
		log_warnx("worker %u: cannot restart: %s", w->index,
		    strerror(-r));
		w->exit_kind = WX_STARTFAIL;
		worker_set_state(w, W_BACKOFF);
	}
}

/* Anyone may write to a worker's notify socket. */
static struct log_limit notify_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "notify sockets");

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
			if (log_limit(&notify_ll))
				log_warnx("worker %u: notify socket: %s",
				    w->index, strerror(-r));
			continue;
		}
		/* The abstract socket is reachable by anyone: only the
		 * worker's own word counts. */
		if (m.pid != w->pid) {
			if (log_limit(&notify_ll))
				log_warnx("worker %u: ignoring notification "
				    "from pid %d, not the worker's %d",
				    w->index, (int)m.pid, (int)w->pid);
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

	(void)s;
	(void)fd;
	(void)revents;
	if (!notify_drain(w) || w->state != W_STARTING)
		return 0;
	log_debug("worker %u (pid %d) ready: %s", w->index, (int)w->pid,
	    w->why);
	w->why[0] = '\0';
	worker_event(w, WE_NOTIFIED);
	worker_connect(w);
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
	/* A failure that ends the startup is the daemon's error; an exit
	 * fanoutd asked for is news only when it was not a clean one. */
	if (!d->ready && !d->stopping)
		log_errx("worker %u (port %u) failed to start: %s%s%s",
		    w->index, w->port, w->why[0] ? w->why : how,
		    w->why[0] ? "; " : "", w->why[0] ? how : "");
	else if (w->state == W_STOPPING || w->state == W_REPLACING ||
	    d->stopping)
		logit(si->si_code == CLD_EXITED && si->si_status == 0 ?
		    LOG_DEBUG : LOG_INFO, "worker %u (pid %d) %s", w->index,
		    (int)w->pid, how);
	else if (w->state == W_STALLED || w->state == W_RESTARTING)
		log_info("worker %u (pid %d, port %u) %s", w->index,
		    (int)w->pid, w->port, how);
	else
		log_warnx("worker %u (pid %d, port %u) %s", w->index,
		    (int)w->pid, w->port, how);
	/* Why it was being restarted says more than how it ended. */
	if (w->state == W_STALLED)
		w->exit_kind = WX_STALLED;
	else if (w->state != W_RESTARTING)
		w->exit_kind = si->si_code == CLD_EXITED ? WX_EXITED :
		    WX_KILLED;
	w->exit_code = (uint8_t)si->si_status;
	/* A stalled worker that obeyed the SIGTERM was still ended by it. */
	if (w->exit_kind == WX_STALLED && si->si_code == CLD_EXITED)
		w->exit_code = SIGTERM;
	w->link.ops->close(w, true);
	w->child_src = sd_event_source_disable_unref(w->child_src);
	w->pid = 0;
	d->nalive--;
	worker_event(w, WE_EXITED);
	fanoutd_check_done(d);
	return 0;
}

static int
on_timer(sd_event_source *s, uint64_t usec, void *arg)
{
	struct worker *w = arg;

	(void)s;
	(void)usec;
	if (w->state == W_STARTING || w->state == W_CONNECTING)
		logit(w->d->ready ? LOG_WARNING : LOG_ERR,
		    "worker %u (pid %d, port %u) not %s within %u ms",
		    w->index, (int)w->pid, w->port,
		    w->state == W_STARTING ? "ready" : "connected",
		    w->d->conf.start_timeout_ms);
	worker_event(w, WE_TIMEOUT);
	return 0;
}

/* A worker's command line under a configuration. */
struct worker_args {
	char	 index[16], port[16], timeout[16], restart[16], sfd[32];
	char	 maxb[16], auth[16];
	char	*argv[24 + HANDLER_ARGS_MAX];
};

/* worker_args' index for the pool process (proto.h): every worker's
 * options, and --pool instead of one worker's index, port and key. */
#define WORKER_ARGS_POOL	UINT32_MAX

static void
worker_args(const struct fanout_conf *cf, uint32_t index, int secret_fd,
    struct worker_args *a)
{
	static char *modes[] = HANDLER_MODE_NAMES;
	static char *framings[] = HANDLER_FRAMING_NAMES;
	uint32_t restart_ms;
	int argc = 0;

	a->argv[argc++] = (char *)"fanout-worker";
	if (index == WORKER_ARGS_POOL) {
		/* Zeros: room for each worker to write its --index and
		 * --port over "--pool FD", for ps (fanout-worker.c). */
		snprintf(a->sfd, sizeof(a->sfd), "%0*d", POOL_FD_WIDTH,
		    POOL_RECORDS_FD);
		a->argv[argc++] = (char *)"--pool";
		a->argv[argc++] = a->sfd;
	} else {
		snprintf(a->index, sizeof(a->index), "%u", index);
		snprintf(a->port, sizeof(a->port), "%u",
		    cf->base_port + index);
		snprintf(a->sfd, sizeof(a->sfd), "%d", secret_fd);
		a->argv[argc++] = (char *)"--index";
		a->argv[argc++] = a->index;
		a->argv[argc++] = (char *)"--port";
		a->argv[argc++] = a->port;
	}
	a->argv[argc++] = (char *)"--address";
	a->argv[argc++] = cf->listen_address;
	snprintf(a->maxb, sizeof(a->maxb), "%u", cf->max_message_bytes);
	if (index != WORKER_ARGS_POOL) {
		a->argv[argc++] = (char *)"--secret-fd";
		a->argv[argc++] = a->sfd;
	}
	a->argv[argc++] = (char *)"--max-message-bytes";
	a->argv[argc++] = a->maxb;
	snprintf(a->auth, sizeof(a->auth), "%u", cf->auth_timeout_ms);
	a->argv[argc++] = (char *)"--auth-timeout";
	a->argv[argc++] = a->auth;
	/* The same verbosity: -vv has the workers log every message. */
	if (log_getverbose() > 0)
		a->argv[argc++] = (char *)(log_getverbose() > 1 ? "-vv" : "-v");
	if (cf->handler != NULL) {
		/* Its restarts must stay well inside the stall timeout. */
		restart_ms = cf->restart_max_delay_ms;
		if (restart_ms > cf->stall_timeout_ms / 2)
			restart_ms = cf->stall_timeout_ms / 2;
		snprintf(a->timeout, sizeof(a->timeout), "%u",
		    cf->handler_timeout_ms);
		snprintf(a->restart, sizeof(a->restart), "%u", restart_ms);
		a->argv[argc++] = (char *)"--handler-mode";
		a->argv[argc++] = modes[cf->handler_mode];
		a->argv[argc++] = (char *)"--handler-framing";
		a->argv[argc++] = framings[cf->handler_framing];
		a->argv[argc++] = (char *)"--handler-timeout";
		a->argv[argc++] = a->timeout;
		a->argv[argc++] = (char *)"--handler-restart-max";
		a->argv[argc++] = a->restart;
		a->argv[argc++] = (char *)"--";
		for (char **h = cf->handler; *h != NULL; h++)
			a->argv[argc++] = *h;
	}
	a->argv[argc] = NULL;
}

bool
worker_settings_differ(const struct fanout_conf *a,
    const struct fanout_conf *b, uint32_t index)
{
	struct worker_args wa = { 0 }, wb = { 0 };
	int i;

	if (strcmp(a->worker_path, b->worker_path) != 0)
		return true;
	/* Each process gets a key of its own: not a setting. */
	worker_args(a, index, 3, &wa);
	worker_args(b, index, 3, &wb);
	for (i = 0; wa.argv[i] != NULL && wb.argv[i] != NULL; i++)
		if (strcmp(wa.argv[i], wb.argv[i]) != 0)
			return true;
	return wa.argv[i] != wb.argv[i];
}

/* In a child of fanoutd's before it runs worker_path.  fanoutd's own code
 * is single-threaded; with remote workers nats.c's threads run beside it,
 * but glibc keeps malloc usable after fork and nothing here takes a lock of
 * theirs, so ordinary libc calls are still safe here. */
static void
worker_exec_prepare(pid_t parent)
{
	sigset_t all;

	/* Every action back to its default, not only SIGPIPE's: a signal
	 * ignored by whoever started fanoutd would stay ignored in the
	 * worker (it sets the ones it handles itself, but not the rest). */
	sigfillset(&all);
	sig_default(&all);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	/* No orphans: the worker gets SIGTERM when fanoutd dies, however
	 * it dies.  Check the parent afterwards, in case that was already. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != parent)
		_exit(1);
}

static void __attribute__((noreturn))
worker_exec(struct worker *w, pid_t parent, const char *notify_name,
    int secret_fd)
{
	struct fanoutd *d = w->d;
	struct worker_args a;

	worker_exec_prepare(parent);
	setenv("NOTIFY_SOCKET", notify_name, 1);
	/* The one descriptor the worker inherits: its key, which it reads
	 * and closes first thing (proto.h). */
	if (fcntl(secret_fd, F_SETFD, 0) == -1)
		_exit(1);
	worker_args(&d->conf, w->index, secret_fd, &a);
	execv(d->conf.worker_path, a.argv);
	notify_failure(errno, "cannot execute worker_path");
	_exit(127);
}

/* What a spawn needs before the fork: a fresh key, and the notify socket
 * the new process is to say READY=1 on, whose name goes to name. */
static int
worker_prepare(struct worker *w, char *name, size_t namelen)
{
	struct fanoutd *d = w->d;
	int r;

	w->why[0] = '\0';
	/* A reload may have moved it. */
	w->port = (uint16_t)(d->conf.base_port + w->index);
	/* A new process, a new key: one a former process (or anyone who
	 * watched it) knew is worth nothing now. */
	if ((r = auth_key_new(w->secret)) < 0)
		return r;
	if ((w->notify_fd = notify_listen(name, namelen)) < 0)
		return w->notify_fd;
	r = sd_event_add_io(d->ev, &w->notify_src, w->notify_fd, EPOLLIN,
	    on_notify, w);
	if (r < 0) {
		worker_stop_notify(w);
		return r;
	}
	return 0;
}

/* And after it: pid is fanoutd's child, running the worker. */
static int
worker_started(struct worker *w, pid_t pid)
{
	struct fanoutd *d = w->d;
	int r;

	w->pid = pid;
	d->nalive++;
	/* pidfd based: no reaping loop, no pid reuse race. */
	r = sd_event_add_child(d->ev, &w->child_src, pid, WEXITED, on_child, w);
	if (r < 0) {
		/* Without a watch it cannot be reaped here: wait for it. */
		kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		w->pid = 0;
		d->nalive--;
		worker_stop_notify(w);
		return r;
	}
	if (w->spawns++ > 0)
		log_notice("worker %u restarted: pid %d", w->index, (int)pid);
	else
		log_debug("worker %u spawned: pid %d, port %u", w->index,
		    (int)pid, w->port);
	worker_event(w, WE_SPAWNED);
	return 0;
}

int
worker_spawn(struct worker *w)
{
	char name[NOTIFY_NAME_MAX];
	pid_t pid, parent = getpid();
	int r, secret_fd;

	if ((r = worker_prepare(w, name, sizeof(name))) < 0)
		return r;
	if ((secret_fd = auth_key_pipe(w->secret)) < 0) {
		worker_stop_notify(w);
		return secret_fd;
	}
	if ((pid = fork()) == -1) {
		r = -errno;
		close(secret_fd);
		worker_stop_notify(w);
		return r;
	}
	if (pid == 0)
		worker_exec(w, parent, name, secret_fd);
	close(secret_fd);
	return worker_started(w, pid);
}

/*
 * The helper that starts the whole pool.  It holds nothing of fanoutd's
 * but the pipe its results go to (one int32 per worker: a pid, or
 * -errno), so that each clone copies five descriptors, not a socket and
 * a pidfd for every worker before it.  CLONE_PARENT makes each worker
 * fanoutd's child, reaped and watched there.
 */
static void __attribute__((noreturn))
pool_spawn_helper(struct fanoutd *d, char (*names)[NOTIFY_NAME_MAX],
    int out, pid_t parent)
{
	struct worker *w;
	int32_t res;
	pid_t pid;
	uint32_t i;
	int secret_fd;

	if (out != 3 && dup3(out, 3, O_CLOEXEC) == -1)
		_exit(1);
	if (close_range(4, ~0U, 0) == -1)
		_exit(1);
	for (i = 0; i < d->nworkers; i++) {
		w = d->workers[i];
		if ((res = secret_fd = auth_key_pipe(w->secret)) >= 0) {
			pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD,
			    NULL, NULL, NULL, NULL);
			if (pid == 0)
				worker_exec(w, parent, names[i], secret_fd);
			res = pid == -1 ? -errno : pid;
			close(secret_fd);
		}
		if (write(3, &res, sizeof(res)) != sizeof(res))
			_exit(1);
	}
	free(names);	/* for valgrind, which checks this process too */
	_exit(0);
}

/* The pool's records (proto.h) in a sealed memfd: its descriptor, or
 * -errno.  The keys are wiped from fanoutd's copy on the way. */
static int
pool_records(struct fanoutd *d, char (*names)[NOTIFY_NAME_MAX])
{
	struct pool_record *rec;
	size_t len = d->nworkers * sizeof(*rec);
	uint32_t i;
	int fd, r = 0;

	if ((rec = calloc(d->nworkers, sizeof(*rec))) == NULL)
		return -ENOMEM;
	for (i = 0; i < d->nworkers; i++) {
		rec[i].index = d->workers[i]->index;
		rec[i].port = d->workers[i]->port;
		memcpy(rec[i].key, d->workers[i]->secret, sizeof(rec[i].key));
		memcpy(rec[i].notify, names[i], sizeof(rec[i].notify));
	}
	if ((fd = memfd_create("fanout-pool", MFD_CLOEXEC |
	    MFD_ALLOW_SEALING)) == -1)
		r = -errno;
	else if (write_all(fd, rec, len) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK |
	    F_SEAL_GROW | F_SEAL_WRITE) == -1) {
		r = -errno;
		close(fd);
	}
	explicit_bzero(rec, len);
	free(rec);
	return r < 0 ? r : fd;
}

/* What the pool helper writes when worker_path could not be run: this,
 * then -errno. */
#define POOL_EXEC_FAILED	INT32_MIN

/*
 * The helper that becomes the pool process (worker_start = "fork"): the
 * results pipe on 3, the records on 4 and nothing else of fanoutd's, then
 * worker_path --pool.  Its workers are fanoutd's children (CLONE_PARENT).
 */
static void __attribute__((noreturn))
pool_exec_helper(struct fanoutd *d, int out, int records, pid_t parent)
{
	struct worker_args a;
	int32_t res[2];
	int o, r;

	/* Out of the way first: either may be on 3 or 4 already. */
	if ((o = fcntl(out, F_DUPFD, 5)) == -1 ||
	    (r = fcntl(records, F_DUPFD, 5)) == -1 ||
	    dup2(o, POOL_RESULTS_FD) == -1 || dup2(r, POOL_RECORDS_FD) == -1 ||
	    close_range(5, ~0U, 0) == -1)
		_exit(1);
	worker_exec_prepare(parent);
	/* fanoutd's own, from systemd: each worker gets its own instead. */
	unsetenv("NOTIFY_SOCKET");
	worker_args(&d->conf, WORKER_ARGS_POOL, -1, &a);
	execv(d->conf.worker_path, a.argv);
	res[0] = POOL_EXEC_FAILED;
	res[1] = -errno;
	(void)write_all(POOL_RESULTS_FD, res, sizeof(res));
	_exit(127);
}

/* A result from the helper: a pid, or -errno; -EIO if it died. */
static int32_t
pool_result(int fd, bool *exec_failed)
{
	int32_t res;

	if (read_all(fd, &res, sizeof(res)) != sizeof(res))
		return -EIO;
	if (res == POOL_EXEC_FAILED) {
		*exec_failed = true;
		if (read_all(fd, &res, sizeof(res)) != sizeof(res) || res >= 0)
			res = -EIO;
	}
	return res;
}

/*
 * Every worker at once, at start.  fork() copies fanoutd's descriptor
 * table and exec closes it again: from here, starting N workers one by
 * one would be O(N^2), seconds at 1,000 workers.  The helper is forked
 * once, after every notify socket is in place.  With worker_start =
 * "fork" it runs worker_path once and that forks each worker, loaded
 * already; with "exec" it runs worker_path for each.  Returns 0 or
 * -errno, having said which worker failed.
 */
static int
pool_spawn_all(struct fanoutd *d)
{
	char (*names)[NOTIFY_NAME_MAX];
	pid_t helper, parent = getpid();
	bool fork_mode = d->conf.worker_start == WORKER_START_FORK;
	bool exec_failed = false;
	int32_t res;
	uint32_t i, n = d->nworkers;
	int pipefd[2], records = -1, r = 0;

	if ((names = calloc(n, sizeof(*names))) == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if ((r = worker_prepare(d->workers[i], names[i],
		    sizeof(names[i]))) < 0) {
			log_errx("cannot start worker %u: %s", i,
			    strerror(-r));
			goto fail;
		}
	}
	if (fork_mode && (r = records = pool_records(d, names)) < 0)
		goto fail_all;
	if (pipe2(pipefd, O_CLOEXEC) == -1) {
		r = -errno;
		goto fail_all;
	}
	if ((helper = fork()) == -1) {
		r = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		goto fail_all;
	}
	if (helper == 0) {
		if (fork_mode) {
			free(names);
			pool_exec_helper(d, pipefd[1], records, parent);
		}
		pool_spawn_helper(d, names, pipefd[1], parent);
	}
	close(pipefd[1]);
	if (records >= 0)
		close(records);
	free(names);
	/* Every result, the failures' too: whatever was started must be
	 * watched, to be stopped. */
	for (i = 0; i < n; i++) {
		res = exec_failed ? -EIO : pool_result(pipefd[0], &exec_failed);
		if (res > 0)
			res = worker_started(d->workers[i], res);
		if (res >= 0)
			continue;
		worker_stop_notify(d->workers[i]);
		if (r < 0)
			continue;	/* the first failure is the one to tell */
		if (exec_failed)
			log_errx("cannot execute %s: %s", d->conf.worker_path,
			    strerror(-res));
		else if (res == -EIO)
			log_errx("the process starting the workers died at "
			    "worker %u", i);
		else
			log_errx("cannot start worker %u: %s", i,
			    strerror(-res));
		r = res;
	}
	close(pipefd[0]);
	while (waitpid(helper, NULL, 0) == -1 && errno == EINTR)
		;
	return r;
fail_all:
	log_errx("cannot start the workers: %s", strerror(-r));
	if (records >= 0)
		close(records);
fail:
	for (i = 0; i < n; i++)
		worker_stop_notify(d->workers[i]);
	free(names);
	return r;
}

struct worker *
pool_add(struct fanoutd *d)
{
	struct worker *w, **grown;
	uint32_t cap;

	if (d->nworkers == d->workers_cap) {
		cap = d->workers_cap < 8 ? 8 : d->workers_cap * 2;
		if ((grown = reallocarray(d->workers, cap,
		    sizeof(*grown))) == NULL)
			return NULL;
		d->workers = grown;
		d->workers_cap = cap;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->d = d;
	w->index = d->nworkers;
	w->serial = ++d->next_serial;
	w->port = (uint16_t)(d->conf.base_port + w->index);
	w->state = W_DEAD;
	w->state_usec = now_usec();
	w->notify_fd = w->link.fd = -1;
	w->link.ops = &tcp_link_ops;
	queue_init(&w->q, d->conf.queue_max_messages, d->conf.queue_max_bytes);
	d->workers[d->nworkers++] = w;
	return w;
}

static void
worker_free(struct worker *w)
{
	w->link.ops->close(w, false);
	queue_clear(&w->q);
	explicit_bzero(w->secret, sizeof(w->secret));
	worker_stop_notify(w);
	w->timer_src = sd_event_source_disable_unref(w->timer_src);
	w->child_src = sd_event_source_disable_unref(w->child_src);
	free(w);
}

void
pool_remove_top(struct fanoutd *d)
{
	struct worker *w = d->workers[--d->nworkers];

	worker_free(w);
}

int
pool_start(struct fanoutd *d)
{
	struct worker *w;
	uint32_t i;
	int r;

	if ((r = auth_init()) < 0) {
		log_errx("cannot initialise libsodium");
		return r;
	}
	for (i = 0; i < d->conf.workers; i++) {
		if ((w = pool_add(d)) == NULL)
			return -ENOMEM;
		w->member = true;
	}
	/* What waited in the spool goes first. */
	if (spooler_load(d, UINT32_MAX) < 0)
		return -EIO;
	/* All at once: readiness and connects proceed in parallel. */
	return pool_spawn_all(d);
}

void
worker_kick(struct worker *w)
{
	struct fanoutd *d = w->d;

	/* Written once per loop turn, with everything else queued by then. */
	if (!w->dirty) {
		w->dirty = true;
		w->next_dirty = d->dirty_workers;
		d->dirty_workers = w;
		fanoutd_schedule_flush(d);
	}
}

void
pool_link_up(struct worker *w)
{
	log_debug("worker %u (pid %d) connected on port %u", w->index,
	    (int)w->pid, w->port);
	worker_event(w, WE_CONNECTED);
}

void
pool_link_lost(struct worker *w, const char *why)
{
	struct fanoutd *d = w->d;

	/* A worker told to stop closes its end: no news. */
	if (d->stopping || w->state == W_STOPPING || w->state == W_REPLACING)
		log_debug("worker %u (pid %d, port %u): %s", w->index,
		    (int)w->pid, w->port, why);
	else if (pool_link_retry(w))
		log_warnx("worker %u (pid %d, port %u): %s; connecting again "
		    "(try %u of %u)", w->index, (int)w->pid, w->port, why,
		    w->link_tries + 2, LINK_TRIES_MAX);
	else
		logit(d->ready ? LOG_WARNING : LOG_ERR,
		    "worker %u (pid %d, port %u): %s", w->index, (int)w->pid,
		    w->port, why);
	if (w->state == W_UP || w->state == W_CONNECTING) {
		w->exit_kind = WX_LINK;
		w->exit_code = 0;
	}
	worker_event(w, WE_LINK_LOST);
}

/* Stalls are found by looking, not by a timer per message: one pass over
 * the pool per tick costs less than re-arming on every ack. */
void
pool_tick(struct fanoutd *d, uint64_t now)
{
	uint64_t limit = d->conf.stall_timeout_ms * 1000ULL;
	uint32_t i;

	for (i = 0; i < d->nworkers; i++) {
		struct worker *w = d->workers[i];

		if (w->state != W_UP || w->q.nsent == 0 ||
		    now - w->progress_usec < limit)
			continue;
		log_warnx("worker %u (pid %d, port %u) stalled: no ack for "
		    "%llu ms with %u messages outstanding; restarting it",
		    w->index, (int)w->pid, w->port,
		    (unsigned long long)((now - w->progress_usec) / 1000),
		    w->q.nsent);
		worker_event(w, WE_STALL);
	}
}

void
worker_record(const struct worker *w, uint64_t now, struct ctl_worker *r)
{
	memset(r, 0, sizeof(*r));
	r->index = w->index;
	r->pid = (uint32_t)(w->pid > 0 ? w->pid : 0);
	r->port = w->port;
	r->state = (uint8_t)worker_wire_state(w);
	r->acked = w->acked;
	r->restarts = w->spawns > 0 ? w->spawns - 1 : 0;
	r->state_ms = (now - w->state_usec) / 1000;
	r->queued = w->q.n;
	r->queued_bytes = w->q.bytes;
	if (w->q.n > 0)
		r->oldest_ms = age_ms(now, queue_at(&w->q, 0)->accepted_usec);
	r->last_rtt_us = w->last_rtt_us;
	if (w->state == W_BACKOFF && w->retry_usec > now)
		r->next_try_ms = (uint32_t)((w->retry_usec - now) / 1000);
	r->exit_kind = w->exit_kind;
	r->exit_code = w->exit_code;
	r->status = w->last_status;
	r->failed = w->failed;
}

/* A worker lets its running handler finish before it exits: give it that
 * long, and its own kill grace, on top of stop_timeout_ms. */
uint64_t
pool_stop_usec(const struct fanoutd *d)
{
	uint64_t ms = d->conf.stop_timeout_ms;

	if (d->conf.handler != NULL)
		ms += d->conf.handler_timeout_ms + HANDLER_KILL_GRACE_MS;
	return ms * 1000;
}

void
pool_stop(struct fanoutd *d)
{
	uint32_t i;

	for (i = 0; i < d->nworkers; i++)
		worker_event(d->workers[i], WE_STOP);
}

void
pool_free(struct fanoutd *d)
{
	uint32_t i;

	for (i = 0; i < d->nworkers; i++)
		worker_free(d->workers[i]);
	free(d->workers);
	d->workers = NULL;
	d->nworkers = d->workers_cap = 0;
}
