/* SPDX-License-Identifier: MIT */
/*
 * The worker state machine (pool.c) through worker_event() and the pool's
 * entry points, on a real sd_event loop with real child processes: each
 * transition of the table, the entry actions (link closed, signals sent,
 * timers armed), the backoff delays, and the startup rule (before READY=1 a
 * failure stops the daemon).
 *
 * The link is a recording stand-in (the TCP one is peer.c's business), and
 * fanoutd.c, the pool's upper neighbour and not in libfanoutd.a, is stubbed
 * by recorders.  Child processes are this program run again as
 * "fanout-worker": see fake_worker().
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fanoutd.h"
#include "notify.h"
#include "util.h"

#define NW		2	/* workers of the hand-made pool */
#define SLACK_USEC	200000	/* timer deadlines: late by at most this */
#define WAIT_USEC	10000000	/* for anything the loop brings */

static char self[PATH_MAX];

/* What the stubs and the test link saw. */
static struct {
	unsigned	 changed;
	enum worker_state states[64];	/* worker 0's, at each change */
	unsigned	 nstates;
	unsigned	 stops;
	int		 stop_code;
	unsigned	 check_done;
	unsigned	 sched_flush;
	unsigned	 connects;
	int		 connect_ret;
	unsigned	 flushes;
	unsigned	 closes;		/* calls */
	bool		 open[NW];	/* a link connecting or connected */
	unsigned	 closed;		/* open links closed */
	unsigned	 closed_drain;	/* of which drained first */
} rec;

/* fanoutd.c, recorded */
void
fanoutd_workers_changed(struct fanoutd *d)
{
	rec.changed++;
	if (d->nworkers > 0 && rec.nstates < nitems(rec.states))
		rec.states[rec.nstates++] = d->workers[0]->state;
}

void
fanoutd_stop(struct fanoutd *d, int exit_code)
{
	(void)d;
	rec.stops++;
	rec.stop_code = exit_code;
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

/*
 * The link, recorded.  Like the TCP link, closing one that is not open does
 * nothing, and closing one that is makes what was sent unsent again.
 */
static int
t_connect(struct worker *w)
{
	rec.connects++;
	if (rec.connect_ret == 0)
		rec.open[w->index] = true;
	return rec.connect_ret;
}

static void
t_flush(struct worker *w)
{
	(void)w;
	rec.flushes++;
}

static void
t_close(struct worker *w, bool drain)
{
	rec.closes++;
	if (!rec.open[w->index])
		return;
	rec.open[w->index] = false;
	rec.closed++;
	if (drain)
		rec.closed_drain++;
	w->link.connected = false;
	queue_rewind(&w->q);
}

static const struct link_ops test_link_ops = {
	.connect = t_connect,
	.flush = t_flush,
	.close = t_close,
};

/*
 * This program as a worker, chosen by T_POOL_WORKER: "ready" says READY=1
 * (from its own pid, as fanout-worker does) and waits; "status" says only
 * STATUS=not ready yet and waits; "silent" just waits; "exit:N" exits with
 * status N.
 */
static int
fake_worker(void)
{
	const char *mode = getenv("T_POOL_WORKER");

	if (mode == NULL)
		mode = "silent";
	if (strncmp(mode, "exit:", 5) == 0)
		return atoi(mode + 5);
	if (strcmp(mode, "ready") == 0)
		notify_ready("fake worker ready");
	if (strcmp(mode, "status") == 0)
		notify_status("not ready yet");
	for (;;)
		pause();
}

struct fx {
	struct fanoutd	 d;
	pid_t		 child[NW];	/* forked by the test, not by pool.c */
};

static void
conf_defaults(struct fanout_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->workers = NW;
	c->base_port = 40000;
	c->ack_timeout_ms = 5000;
	c->max_message_bytes = 65536;
	c->start_timeout_ms = 10000;
	c->stop_timeout_ms = 5000;
	c->restart_max_delay_ms = 400;
	c->restart_reset_ms = 60000;
	c->stall_timeout_ms = 30000;
	c->queue_max_messages = 100;
	c->queue_max_bytes = 1 << 20;
	c->degraded_timeout_ms = 60000;
	c->listen_address = (char *)"127.0.0.1";
	c->control_socket = (char *)"/nonexistent/control.sock";
	c->worker_path = self;
	/* This program plays the worker, one exec each: no --pool. */
	c->worker_start = WORKER_START_EXEC;
}

/* A pool with no workers yet: pool_start's tests make them. */
static int
setup_empty(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(sd_event_new(&f->d.ev), 0);
	conf_defaults(&f->d.conf);
	f->d.ctl_fd = -1;
	f->d.ready = true;
	*state = f;
	return 0;
}

/* NW dead workers made by hand, as pool_start makes them, on the test link. */
static int
setup(void **state)
{
	struct fx *f;
	uint32_t i;

	setup_empty(state);
	f = *state;
	f->d.workers = calloc(NW, sizeof(*f->d.workers));
	assert_non_null(f->d.workers);
	for (i = 0; i < NW; i++) {
		struct worker *w = calloc(1, sizeof(*w));

		assert_non_null(w);
		w->d = &f->d;
		w->index = i;
		w->port = (uint16_t)(f->d.conf.base_port + i);
		w->state = W_DEAD;
		w->state_usec = now_usec();
		w->notify_fd = w->link.fd = -1;
		w->link.ops = &test_link_ops;
		queue_init(&w->q, f->d.conf.queue_max_messages,
		    f->d.conf.queue_max_bytes);
		f->d.workers[f->d.nworkers++] = w;
	}
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	pid_t spawned[NW] = { 0 };
	uint32_t i;

	/* pool.c's own children, left alive by a test that failed */
	for (i = 0; i < f->d.nworkers && i < NW; i++)
		if (f->d.workers[i]->spawns > 0 && f->d.workers[i]->pid > 0)
			spawned[i] = f->d.workers[i]->pid;
	pool_free(&f->d);
	for (i = 0; i < NW; i++) {
		if (spawned[i] > 0) {
			(void)kill(spawned[i], SIGKILL);
			(void)waitpid(spawned[i], NULL, 0);
		}
		if (f->child[i] > 0) {
			(void)kill(f->child[i], SIGKILL);
			(void)waitpid(f->child[i], NULL, 0);
		}
	}
	f->d.ev = sd_event_unref(f->d.ev);
	free(f);
	unsetenv("T_POOL_WORKER");
	return 0;
}

/*
 * A child of the test, this program in "silent" mode; ignore_term: it
 * ignores SIGTERM.  Returns once it runs the new program.
 */
static pid_t
fork_child(bool ignore_term)
{
	int p[2];
	pid_t pid;
	char c;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (ignore_term)
			signal(SIGTERM, SIG_IGN);	/* kept across exec */
		setenv("T_POOL_WORKER", "silent", 1);
		execl(self, "fanout-worker", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	/* EOF once exec closed the write end. */
	assert_int_equal(read(p[0], &c, 1), 0);
	close(p[0]);
	return pid;
}

static int
on_test_child(sd_event_source *s, const siginfo_t *si, void *arg)
{
	(void)s;
	(void)si;
	(void)arg;
	return 0;
}

/* Gives worker i a process of the test's, watched as pool.c watches its
 * own, so that the pool can signal it. */
static struct worker *
with_child(struct fx *f, uint32_t i, bool ignore_term)
{
	struct worker *w = f->d.workers[i];

	f->child[i] = fork_child(ignore_term);
	w->pid = f->child[i];
	assert_int_equal(sd_event_add_child(f->d.ev, &w->child_src, w->pid,
	    WEXITED, on_test_child, w), 0);
	f->d.nalive++;
	return w;
}

/* How the child ended, without reaping it: the signal that killed it, -1
 * if it exited, 0 if still alive after timeout_usec. */
static int
child_signal(pid_t pid, uint64_t timeout_usec)
{
	uint64_t end = now_usec() + timeout_usec;
	siginfo_t si;

	for (;;) {
		memset(&si, 0, sizeof(si));
		assert_int_equal(waitid(P_PID, (id_t)pid, &si,
		    WEXITED | WNOHANG | WNOWAIT), 0);
		if (si.si_pid == pid)
			return si.si_code == CLD_EXITED ? -1 : si.si_status;
		if (now_usec() >= end)
			return 0;
		usleep(2000);
	}
}

/* Runs the loop until worker 0 is in state s (or the time is up). */
static void
run_until_state(struct fx *f, enum worker_state s)
{
	uint64_t end = now_usec() + WAIT_USEC;

	while (f->d.workers[0]->state != s && now_usec() < end)
		assert_true(sd_event_run(f->d.ev, 100000) >= 0);
	assert_string_equal(worker_state_name(f->d.workers[0]->state),
	    worker_state_name(s));
}

/* Runs the loop until worker 0 said something (STATUS=): its process
 * runs the new program, signals reach the program and not the fork. */
static void
run_until_why(struct fx *f)
{
	uint64_t end = now_usec() + WAIT_USEC;

	while (f->d.workers[0]->why[0] == '\0' && now_usec() < end)
		assert_true(sd_event_run(f->d.ev, 100000) >= 0);
	assert_string_equal(f->d.workers[0]->why, "not ready yet");
}

/* The timer armed for the current state fires delay_usec after entering
 * it (give or take the loop's accuracy). */
static void
assert_timer(const struct worker *w, uint64_t delay_usec)
{
	uint64_t t;

	assert_non_null(w->timer_src);
	assert_int_equal(sd_event_source_get_time(w->timer_src, &t), 0);
	assert_true(t >= w->state_usec + delay_usec);
	assert_true(t <= w->state_usec + delay_usec + SLACK_USEC);
}

/* Puts worker w in W_CONNECTING with its link being set up. */
static void
connecting(struct worker *w)
{
	w->state = W_CONNECTING;
	rec.open[w->index] = true;
}

/* Drives worker w from where it is (CONNECTING) to UP. */
static void
bring_up(struct worker *w)
{
	assert_int_equal(w->state, W_CONNECTING);
	pool_link_up(w);
	assert_int_equal(w->state, W_UP);
}

static void
test_spawned_notified_connecting(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);
	uint64_t before = now_usec(), deadline, t;

	worker_event(w, WE_SPAWNED);
	assert_int_equal(w->state, W_STARTING);
	assert_true(w->state_usec >= before);
	assert_int_equal(rec.changed, 1);
	assert_timer(w, f->d.conf.start_timeout_ms * 1000ULL);
	assert_int_equal(sd_event_source_get_time(w->timer_src, &deadline), 0);
	usleep(2000);
	/* Not for this state: nothing happens. */
	worker_event(w, WE_CONNECTED);
	worker_event(w, WE_SPAWNED);
	worker_event(w, WE_STALL);
	assert_int_equal(w->state, W_STARTING);
	assert_int_equal(rec.changed, 1);

	worker_event(w, WE_NOTIFIED);
	assert_int_equal(w->state, W_CONNECTING);
	assert_int_equal(rec.changed, 2);
	assert_int_equal(worker_wire_state(w), WS_STARTING);
	/* One start_timeout_ms covers ready and connected together: the
	 * deadline does not move. */
	assert_non_null(w->timer_src);
	assert_int_equal(sd_event_source_get_time(w->timer_src, &t), 0);
	assert_true(t == deadline);
	/* Connecting is the caller's move (on_notify), not the table's. */
	assert_int_equal(rec.connects, 0);
	assert_int_equal(rec.closed, 0);
	assert_int_equal(rec.stops, 0);
	assert_int_equal(f->d.nup, 0);
}

static void
test_connected_up(void **state)
{
	struct fx *f = *state;
	struct worker *w0 = with_child(f, 0, false);
	struct worker *w1 = with_child(f, 1, false);

	connecting(w0);
	connecting(w1);
	worker_event(w0, WE_CONNECTED);
	assert_int_equal(w0->state, W_UP);
	assert_int_equal(f->d.nup, 1);
	assert_null(w0->timer_src);
	assert_true(w0->up_usec == w0->state_usec);
	assert_true(w0->progress_usec == w0->state_usec);
	/* Queued messages go out at the end of this loop turn. */
	assert_true(w0->dirty);
	assert_ptr_equal(f->d.dirty_workers, w0);
	assert_int_equal(rec.sched_flush, 1);
	assert_int_equal(worker_wire_state(w0), WS_UP);
	/* Again: no second transition, no double count. */
	worker_event(w0, WE_CONNECTED);
	assert_int_equal(f->d.nup, 1);
	assert_int_equal(rec.changed, 1);

	pool_link_up(w1);
	assert_int_equal(w1->state, W_UP);
	assert_int_equal(f->d.nup, 2);
	assert_ptr_equal(f->d.dirty_workers, w1);
	assert_ptr_equal(w1->next_dirty, w0);
	assert_int_equal(rec.changed, 2);
	assert_int_equal(rec.stops, 0);
}

static void
test_up_link_lost_backoff(void **state)
{
	struct fx *f = *state;
	struct worker *w0 = with_child(f, 0, false);
	struct worker *w1 = with_child(f, 1, false);

	connecting(w0);
	connecting(w1);
	bring_up(w0);
	bring_up(w1);
	assert_int_equal(f->d.nup, 2);
	pool_link_lost(w0, "link lost: test");
	assert_int_equal(w0->state, W_BACKOFF);
	assert_int_equal(f->d.nup, 1);
	/* the link is dropped, the process left alone */
	assert_false(rec.open[0]);
	assert_true(rec.open[1]);
	assert_int_equal(rec.closed, 1);
	assert_int_equal(rec.closed_drain, 0);
	assert_int_equal(child_signal(w0->pid, 50000), 0);
	assert_int_equal(w0->exit_kind, WX_LINK);
	assert_int_equal(w0->failures, 1);
	assert_true(w0->retry_usec - w0->state_usec == 100000);
	assert_timer(w0, 100000);
	assert_int_equal(worker_wire_state(w0), WS_BACKOFF);
	assert_int_equal(rec.stops, 0);

	/* The retry reconnects to the live process: no restart. */
	worker_event(w0, WE_TIMEOUT);
	assert_int_equal(w0->state, W_CONNECTING);
	assert_int_equal(rec.connects, 1);
	assert_int_equal(w0->spawns, 0);
	assert_timer(w0, f->d.conf.start_timeout_ms * 1000ULL);
	bring_up(w0);
	assert_int_equal(f->d.nup, 2);
}

/* A reconnect that fails stops the process, to be respawned. */
static void
test_reconnect_fails_restarting(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);

	connecting(w);
	bring_up(w);
	pool_link_lost(w, "link lost: test");
	assert_int_equal(w->state, W_BACKOFF);
	rec.connect_ret = -ECONNREFUSED;
	worker_event(w, WE_TIMEOUT);
	/* each try refused at once: all of them, then the restart */
	assert_int_equal(rec.connects, LINK_TRIES_MAX);
	assert_int_equal(w->state, W_RESTARTING);
	assert_int_equal(w->exit_kind, WX_LINK);
	assert_int_equal(worker_wire_state(w), WS_BACKOFF);
	assert_int_equal(child_signal(w->pid, WAIT_USEC), SIGTERM);
	assert_timer(w, f->d.conf.stop_timeout_ms * 1000ULL);
	/* Reaped (as on_child does it): back off, then spawn. */
	w->pid = 0;
	worker_event(w, WE_EXITED);
	assert_int_equal(w->state, W_BACKOFF);
	assert_int_equal(w->failures, 2);
	assert_true(w->retry_usec - w->state_usec == 200000);
	assert_int_equal(rec.stops, 0);
}

/* A handshake lost while connecting (the worker's deadline passed first)
 * is tried again at once, within the same start timeout; only the last
 * try's loss restarts the process. */
static void
test_connecting_link_lost_tried_again(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);
	uint64_t deadline, t;
	int i;

	worker_event(w, WE_SPAWNED);
	worker_event(w, WE_NOTIFIED);
	assert_int_equal(w->state, W_CONNECTING);
	rec.open[0] = true;
	assert_int_equal(sd_event_source_get_time(w->timer_src, &deadline), 0);
	for (i = 1; i < LINK_TRIES_MAX; i++) {
		pool_link_lost(w, "link lost: test");
		assert_int_equal(w->state, W_CONNECTING);
		assert_int_equal(rec.connects, i);
		/* the start timeout runs on */
		assert_int_equal(sd_event_source_get_time(w->timer_src, &t),
		    0);
		assert_true(t == deadline);
	}
	bring_up(w);
	assert_int_equal(w->spawns, 0);
	assert_int_equal(rec.stops, 0);

	/* A new episode counts from zero: all tries lost, then a restart. */
	pool_link_lost(w, "link lost: test");
	assert_int_equal(w->state, W_BACKOFF);
	worker_event(w, WE_TIMEOUT);
	assert_int_equal(w->state, W_CONNECTING);
	for (i = 0; i < LINK_TRIES_MAX; i++)
		pool_link_lost(w, "link lost: test");
	assert_int_equal(w->state, W_RESTARTING);
	assert_int_equal(w->exit_kind, WX_LINK);
}

/* Not connected in time: the link being set up is dropped, the process
 * stopped. */
static void
test_connecting_timeout_restarting(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);

	connecting(w);
	worker_event(w, WE_TIMEOUT);
	assert_int_equal(w->state, W_RESTARTING);
	assert_int_equal(w->exit_kind, WX_STARTFAIL);
	assert_false(rec.open[0]);
	assert_int_equal(rec.closed, 1);
	assert_int_equal(child_signal(w->pid, WAIT_USEC), SIGTERM);
	assert_timer(w, f->d.conf.stop_timeout_ms * 1000ULL);
	/* a connect that completes now is too late */
	pool_link_up(w);
	assert_int_equal(w->state, W_RESTARTING);
	assert_int_equal(f->d.nup, 0);
}

/* Once the daemon is stopping, a backoff that ends retries nothing. */
static void
test_backoff_over_while_stopping(void **state)
{
	struct fx *f = *state;
	struct worker *w0 = with_child(f, 0, false);
	struct worker *w1 = f->d.workers[1];

	connecting(w0);
	bring_up(w0);
	pool_link_lost(w0, "link lost: test");
	assert_int_equal(w0->state, W_BACKOFF);
	w1->state = W_BACKOFF;		/* no process: would respawn */
	f->d.stopping = true;
	worker_event(w0, WE_TIMEOUT);
	worker_event(w1, WE_TIMEOUT);
	assert_int_equal(w0->state, W_BACKOFF);
	assert_int_equal(w1->state, W_BACKOFF);
	assert_int_equal(rec.connects, 0);
	assert_int_equal(w1->spawns, 0);
	assert_int_equal(w1->pid, 0);
	/* and the stop takes them: the live one is signalled */
	worker_event(w0, WE_STOP);
	worker_event(w1, WE_STOP);
	assert_int_equal(w0->state, W_STOPPING);
	assert_int_equal(w1->state, W_DEAD);
	assert_int_equal(child_signal(w0->pid, WAIT_USEC), SIGTERM);
}

static void
test_up_stall_stalled(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);

	connecting(w);
	bring_up(w);
	worker_event(w, WE_STALL);
	assert_int_equal(w->state, W_STALLED);
	assert_int_equal(f->d.nup, 0);
	assert_false(rec.open[0]);
	assert_int_equal(rec.closed, 1);
	assert_int_equal(worker_wire_state(w), WS_STALLED);
	/* SIGTERM, and SIGKILL when stop_timeout_ms is over */
	assert_int_equal(child_signal(w->pid, WAIT_USEC), SIGTERM);
	assert_timer(w, f->d.conf.stop_timeout_ms * 1000ULL);
	/* STALL means nothing outside UP */
	worker_event(w, WE_STALL);
	assert_int_equal(rec.changed, 2);
	/* reaped: backoff, then a restart */
	w->pid = 0;
	worker_event(w, WE_EXITED);
	assert_int_equal(w->state, W_BACKOFF);
	assert_true(w->retry_usec - w->state_usec == 100000);
}

/* A process that ignores SIGTERM gets SIGKILL when the state's timer fires. */
static void
test_stalled_timeout_kills(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, true);

	connecting(w);
	bring_up(w);
	worker_event(w, WE_STALL);
	assert_int_equal(w->state, W_STALLED);
	assert_int_equal(child_signal(w->pid, 100000), 0);
	worker_event(w, WE_TIMEOUT);
	assert_int_equal(w->state, W_STALLED);
	assert_int_equal(child_signal(w->pid, WAIT_USEC), SIGKILL);
}

static void
test_stop_backoff_without_process(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);

	connecting(w);
	bring_up(w);
	/* The process died while up: reaped, backoff armed. */
	(void)kill(w->pid, SIGKILL);
	w->pid = 0;
	worker_event(w, WE_EXITED);
	assert_int_equal(w->state, W_BACKOFF);
	assert_non_null(w->timer_src);
	/* A late exit report in BACKOFF changes nothing. */
	worker_event(w, WE_EXITED);
	assert_int_equal(w->state, W_BACKOFF);
	assert_int_equal(w->failures, 1);

	worker_event(w, WE_STOP);
	assert_int_equal(w->state, W_DEAD);
	assert_null(w->timer_src);
	assert_int_equal(worker_wire_state(w), WS_DOWN);
	/* and it stays dead */
	worker_event(w, WE_STOP);
	worker_event(w, WE_TIMEOUT);
	worker_event(w, WE_NOTIFIED);
	assert_int_equal(w->state, W_DEAD);
	assert_int_equal(rec.changed, 3);
}

static void
test_stop_up_stopping_exited_dead(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);

	connecting(w);
	bring_up(w);
	f->d.stopping = true;
	worker_event(w, WE_STOP);
	assert_int_equal(w->state, W_STOPPING);
	assert_int_equal(f->d.nup, 0);
	/* open until it exits: the acks of what its handler finishes */
	assert_true(rec.open[0]);
	assert_int_equal(rec.closed, 0);
	assert_int_equal(worker_wire_state(w), WS_STOPPING);
	assert_int_equal(child_signal(w->pid, WAIT_USEC), SIGTERM);
	assert_timer(w, f->d.conf.stop_timeout_ms * 1000ULL);
	/* STOP again: already stopping */
	worker_event(w, WE_STOP);
	assert_int_equal(rec.changed, 2);
	/* a link event while stopping changes nothing */
	worker_event(w, WE_LINK_LOST);
	assert_int_equal(w->state, W_STOPPING);

	w->pid = 0;
	worker_event(w, WE_EXITED);
	assert_int_equal(w->state, W_DEAD);
	assert_false(rec.open[0]);
	assert_int_equal(rec.closed, 1);
	assert_null(w->timer_src);
	assert_int_equal(rec.stops, 0);
}

/* Once the daemon is stopping, an exit is the end, whatever the state. */
static void
test_exited_while_daemon_stopping(void **state)
{
	struct fx *f = *state;
	struct worker *w0 = with_child(f, 0, false);
	struct worker *w1 = with_child(f, 1, false);

	connecting(w0);
	connecting(w1);
	bring_up(w0);
	bring_up(w1);
	pool_link_lost(w1, "link lost: test");
	assert_int_equal(w1->state, W_BACKOFF);
	f->d.stopping = true;
	w0->pid = 0;
	worker_event(w0, WE_EXITED);
	assert_int_equal(w0->state, W_DEAD);
	assert_null(w0->timer_src);
	w1->pid = 0;
	worker_event(w1, WE_EXITED);
	assert_int_equal(w1->state, W_DEAD);
	assert_null(w1->timer_src);
	assert_int_equal(f->d.nup, 0);
}

/* The backoff doubles from 100 ms to the cap and stays there. */
static void
test_backoff_delays(void **state)
{
	static const uint64_t want_ms[] = { 100, 200, 400, 400, 400 };
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);
	unsigned i;

	connecting(w);
	for (i = 0; i < nitems(want_ms); i++) {
		bring_up(w);
		pool_link_lost(w, "link lost: test");
		assert_int_equal(w->state, W_BACKOFF);
		assert_int_equal(w->failures, i + 1);
		assert_true(w->retry_usec - w->state_usec == want_ms[i] * 1000);
		assert_timer(w, want_ms[i] * 1000);
		worker_event(w, WE_TIMEOUT);	/* reconnect */
		assert_int_equal(w->state, W_CONNECTING);
	}
	assert_int_equal(rec.connects, nitems(want_ms));
	assert_int_equal(rec.stops, 0);
}

/* A cap that is no power-of-two multiple of 100 ms is still the cap. */
static void
test_backoff_odd_cap(void **state)
{
	static const uint64_t want_ms[] = { 100, 200, 300, 300 };
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);
	unsigned i;

	f->d.conf.restart_max_delay_ms = 300;
	connecting(w);
	for (i = 0; i < nitems(want_ms); i++) {
		bring_up(w);
		pool_link_lost(w, "link lost: test");
		assert_true(w->retry_usec - w->state_usec == want_ms[i] * 1000);
		worker_event(w, WE_TIMEOUT);
	}
}

/* Up for restart_reset_ms before failing: the backoff starts over. */
static void
test_backoff_reset(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);
	uint64_t reset;

	/* Short, so that the backdating below fits in the monotonic clock
	 * even of a machine booted moments ago. */
	f->d.conf.restart_reset_ms = 5000;
	reset = f->d.conf.restart_reset_ms * 1000ULL;
	if (now_usec() < 2 * reset)
		skip();
	connecting(w);
	bring_up(w);
	pool_link_lost(w, "lost");
	worker_event(w, WE_TIMEOUT);
	bring_up(w);
	pool_link_lost(w, "lost");
	assert_true(w->retry_usec - w->state_usec == 200000);
	worker_event(w, WE_TIMEOUT);

	/* Up for a little less than restart_reset_ms: no reset. */
	bring_up(w);
	w->up_usec -= reset - 1000000;
	pool_link_lost(w, "lost");
	assert_true(w->retry_usec - w->state_usec == 400000);
	assert_int_equal(w->failures, 3);
	worker_event(w, WE_TIMEOUT);

	/* Up for restart_reset_ms: 100 ms again, then doubling again. */
	bring_up(w);
	w->up_usec -= reset;
	pool_link_lost(w, "lost");
	assert_true(w->retry_usec - w->state_usec == 100000);
	assert_int_equal(w->failures, 1);
	worker_event(w, WE_TIMEOUT);
	bring_up(w);
	pool_link_lost(w, "lost");
	assert_true(w->retry_usec - w->state_usec == 200000);
}

/* Before READY=1 every failure fails the startup; success still moves on. */
static void
test_not_ready_failure_stops(void **state)
{
	struct fx *f = *state;
	struct worker *w0 = with_child(f, 0, false);
	struct worker *w1 = with_child(f, 1, false);
	unsigned changed;

	f->d.ready = false;
	w0->state = W_STARTING;
	worker_event(w0, WE_NOTIFIED);
	assert_int_equal(w0->state, W_CONNECTING);
	rec.open[0] = true;		/* on_notify's connect */
	worker_event(w0, WE_CONNECTED);
	assert_int_equal(w0->state, W_UP);
	assert_int_equal(rec.stops, 0);
	changed = rec.changed;

	/* link lost while up */
	pool_link_lost(w0, "link lost: test");
	assert_int_equal(rec.stops, 1);
	assert_int_equal(rec.stop_code, 1);
	/* left for the shutdown to take along: no transition here */
	assert_int_equal(w0->state, W_UP);
	assert_int_equal(rec.changed, changed);
	assert_true(rec.open[0]);
	assert_int_equal(rec.closed, 0);
	assert_int_equal(w0->failures, 0);

	/* stalled while up */
	worker_event(w0, WE_STALL);
	assert_int_equal(rec.stops, 2);
	assert_int_equal(w0->state, W_UP);
	assert_int_equal(child_signal(w0->pid, 50000), 0);

	/* not ready in time */
	w1->state = W_STARTING;
	worker_event(w1, WE_TIMEOUT);
	assert_int_equal(rec.stops, 3);
	assert_int_equal(w1->state, W_STARTING);
	/* connect refused, and refused again at each try */
	connecting(w1);
	rec.connect_ret = -ECONNREFUSED;
	pool_link_lost(w1, "cannot connect: test");
	assert_int_equal(rec.connects, LINK_TRIES_MAX - 1);
	assert_int_equal(rec.stops, 4);
	rec.connect_ret = 0;
	/* exited while starting */
	w1->state = W_STARTING;
	w1->pid = 0;
	worker_event(w1, WE_EXITED);
	assert_int_equal(rec.stops, 5);
	assert_int_equal(rec.stop_code, 1);
	assert_int_equal(w1->state, W_STARTING);
	assert_int_equal(rec.changed, changed);

	/* Once stopping, the stop takes its course without a second call. */
	f->d.stopping = true;
	worker_event(w1, WE_STOP);
	assert_int_equal(w1->state, W_DEAD);
	worker_event(w0, WE_STOP);
	assert_int_equal(w0->state, W_STOPPING);
	assert_int_equal(rec.stops, 5);
}

static void
test_names_and_record(void **state)
{
	struct fx *f = *state;
	struct worker *w = with_child(f, 0, false);
	struct ctl_worker r;

	assert_string_equal(worker_state_name(W_DEAD), "dead");
	assert_string_equal(worker_state_name(W_STOPPING), "stopping");
	assert_string_equal(worker_state_name((enum worker_state)99),
	    "unknown");
	connecting(w);
	w->spawns = 3;
	bring_up(w);
	pool_link_lost(w, "link lost: test");
	worker_record(w, w->state_usec + 30000, &r);
	assert_int_equal(r.index, 0);
	assert_int_equal(r.pid, (uint32_t)w->pid);
	assert_int_equal(r.port, 40000);
	assert_int_equal(r.state, WS_BACKOFF);
	assert_int_equal(r.restarts, 2);
	assert_int_equal(r.state_ms, 30);
	assert_int_equal(r.next_try_ms, 70);
	assert_int_equal(r.exit_kind, WX_LINK);
	assert_int_equal(r.outcome, ACK_NONE);
}

/* Compares worker 0's states at each change with want. */
static void
assert_states(const enum worker_state *want, unsigned n)
{
	unsigned i;

	for (i = 0; i < n && i < rec.nstates; i++)
		assert_string_equal(worker_state_name(rec.states[i]),
		    worker_state_name(want[i]));
	assert_int_equal(rec.nstates, n);
}

/*
 * The whole way with real worker processes: spawned, READY=1 on its notify
 * socket, connected, up; killed while up (the loop reaps it, the link is
 * drained), backed off, respawned; then stopped and reaped.
 */
static void
test_spawn_ready_up_die_stop(void **state)
{
	static const enum worker_state want[] = {
		W_STARTING, W_CONNECTING, W_UP, W_BACKOFF, W_STARTING,
		W_CONNECTING, W_STOPPING, W_DEAD,
	};
	struct fx *f = *state;
	struct worker *w;
	pid_t first;

	f->d.conf.workers = 1;
	f->d.ready = false;
	setenv("T_POOL_WORKER", "ready", 1);
	assert_int_equal(pool_start(&f->d), 0);
	assert_int_equal(f->d.nworkers, 1);
	w = f->d.workers[0];
	assert_int_equal(w->state, W_STARTING);
	assert_true(w->pid > 0);
	first = w->pid;
	assert_int_equal(f->d.nalive, 1);
	assert_int_equal(w->spawns, 1);
	assert_true(w->notify_fd >= 0);
	assert_non_null(w->child_src);
	assert_timer(w, f->d.conf.start_timeout_ms * 1000ULL);
	assert_ptr_equal(w->link.ops, &tcp_link_ops);
	w->link.ops = &test_link_ops;

	run_until_state(f, W_CONNECTING);
	assert_int_equal(rec.connects, 1);
	assert_true(rec.open[0]);
	assert_int_equal(w->notify_fd, -1);
	assert_null(w->notify_src);
	pool_link_up(w);
	assert_int_equal(w->state, W_UP);
	assert_int_equal(f->d.nup, 1);
	assert_int_equal(rec.stops, 0);
	f->d.ready = true;	/* as fanoutd_workers_changed does */

	assert_int_equal(kill(first, SIGKILL), 0);
	run_until_state(f, W_BACKOFF);
	assert_int_equal(w->pid, 0);
	assert_int_equal(f->d.nalive, 0);
	assert_int_equal(f->d.nup, 0);
	assert_null(w->child_src);
	assert_int_equal(w->exit_kind, WX_KILLED);
	assert_int_equal(w->exit_code, SIGKILL);
	/* acks the worker wrote before it died still count */
	assert_false(rec.open[0]);
	assert_int_equal(rec.closed_drain, 1);
	assert_true(w->retry_usec - w->state_usec == 100000);
	assert_true(rec.check_done >= 1);

	run_until_state(f, W_STARTING);
	assert_int_equal(w->spawns, 2);
	assert_true(w->pid > 0 && w->pid != first);
	assert_int_equal(f->d.nalive, 1);
	/* ready again: a new connect, under the respawn's start timer */
	run_until_state(f, W_CONNECTING);
	assert_int_equal(rec.connects, 2);
	assert_non_null(w->timer_src);

	f->d.stopping = true;
	pool_stop(&f->d);
	assert_int_equal(w->state, W_STOPPING);
	assert_false(rec.open[0]);
	run_until_state(f, W_DEAD);
	assert_int_equal(w->pid, 0);
	assert_int_equal(f->d.nalive, 0);
	assert_null(w->child_src);
	assert_null(w->timer_src);
	assert_int_equal(w->notify_fd, -1);
	assert_int_equal(w->exit_kind, WX_KILLED);
	assert_int_equal(w->exit_code, SIGTERM);
	assert_int_equal(rec.stops, 0);
	assert_states(want, nitems(want));
}

/* Not ready in time (after startup): stopped, backed off, respawned. */
static void
test_start_timeout_respawn(void **state)
{
	static const enum worker_state want[] = {
		W_STARTING, W_RESTARTING, W_BACKOFF, W_STARTING, W_STOPPING,
		W_DEAD,
	};
	struct fx *f = *state;
	struct worker *w;
	pid_t first;

	f->d.conf.workers = 1;
	f->d.conf.start_timeout_ms = 300;
	setenv("T_POOL_WORKER", "status", 1);
	assert_int_equal(pool_start(&f->d), 0);
	w = f->d.workers[0];
	w->link.ops = &test_link_ops;
	first = w->pid;
	run_until_state(f, W_RESTARTING);
	assert_int_equal(w->exit_kind, WX_STARTFAIL);
	/* what it said is kept, to explain the failure */
	assert_string_equal(w->why, "not ready yet");
	run_until_state(f, W_BACKOFF);
	assert_int_equal(w->pid, 0);
	assert_int_equal(f->d.nalive, 0);
	/* why it was restarted says more than the signal that ended it */
	assert_int_equal(w->exit_kind, WX_STARTFAIL);
	assert_int_equal(w->exit_code, SIGTERM);
	assert_true(w->retry_usec - w->state_usec == 100000);
	run_until_state(f, W_STARTING);
	assert_int_equal(w->spawns, 2);
	assert_true(w->pid > 0 && w->pid != first);
	assert_int_equal(f->d.nalive, 1);
	assert_int_equal(rec.stops, 0);
	/* a new process, a new start: nothing said yet */
	run_until_why(f);

	f->d.stopping = true;
	pool_stop(&f->d);
	run_until_state(f, W_DEAD);
	assert_int_equal(f->d.nalive, 0);
	assert_int_equal(w->exit_code, SIGTERM);
	assert_states(want, nitems(want));
}

/* A worker that exits during startup fails it: fanoutd_stop(d, 1). */
static void
test_exit_before_ready(void **state)
{
	struct fx *f = *state;
	struct worker *w;

	f->d.conf.workers = 1;
	f->d.ready = false;
	setenv("T_POOL_WORKER", "exit:3", 1);
	assert_int_equal(pool_start(&f->d), 0);
	w = f->d.workers[0];
	w->link.ops = &test_link_ops;
	{
		uint64_t end = now_usec() + WAIT_USEC;

		while (rec.stops == 0 && now_usec() < end)
			assert_true(sd_event_run(f->d.ev, 100000) >= 0);
	}
	assert_int_equal(rec.stops, 1);
	assert_int_equal(rec.stop_code, 1);
	assert_int_equal(w->pid, 0);
	assert_int_equal(f->d.nalive, 0);
	assert_int_equal(w->exit_kind, WX_EXITED);
	assert_int_equal(w->exit_code, 3);
	assert_int_equal(w->state, W_STARTING);
	/* the shutdown then takes it along */
	f->d.stopping = true;
	pool_stop(&f->d);
	assert_int_equal(w->state, W_DEAD);
	assert_int_equal(w->notify_fd, -1);
	assert_null(w->timer_src);
}

int
main(int argc, char *argv[])
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_spawned_notified_connecting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connected_up, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_connecting_link_lost_tried_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_up_link_lost_backoff,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_reconnect_fails_restarting, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_connecting_timeout_restarting, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_backoff_over_while_stopping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_up_stall_stalled, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_stalled_timeout_kills,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_stop_backoff_without_process, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_stop_up_stopping_exited_dead, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_exited_while_daemon_stopping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backoff_delays, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_backoff_odd_cap, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_backoff_reset, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_not_ready_failure_stops,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_names_and_record, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_spawn_ready_up_die_stop,
		    setup_empty, teardown),
		cmocka_unit_test_setup_teardown(test_start_timeout_respawn,
		    setup_empty, teardown),
		cmocka_unit_test_setup_teardown(test_exit_before_ready,
		    setup_empty, teardown),
	};
	const char *base = strrchr(argv[0], '/');
	sigset_t chld;
	ssize_t n;

	(void)argc;
	if (strcmp(base != NULL ? base + 1 : argv[0], "fanout-worker") == 0)
		return fake_worker();
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0)
		return 99;
	self[n] = '\0';
	/* As fanoutd: SIGCHLD blocked, for sd_event's child sources. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
