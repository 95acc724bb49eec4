/* SPDX-License-Identifier: MIT */
/*
 * The handler program of a worker (fanout.conf(5), "Handlers").
 *
 * exec mode: one process per message, one at a time; the message is its
 * stdin, the first line of its stderr its reason, its exit its result.
 * pipe mode: one process for all messages, fed through its stdin (up to
 * HANDLER_PIPE_WINDOW ahead), answering one line per message on stdout.
 *
 * Either way the handler runs in a process group of its own, so that a
 * timeout ends everything it started; no shell is involved.  Messages wait
 * in `queue` until started, then in `flight` until answered: results leave
 * from the head of `flight` only, which keeps them in order.
 */
#include "config.h"

#include <sys/uio.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handler.h"
#include "log.h"
#include "proto.h"
#include "util.h"

#define RESTART_MIN_MS	100	/* pipe: first restart delay, doubling */
#define PIPE_IOV_MAX	48	/* iovecs per writev: 16 messages */

/* A handler that fails on every message must not flood the log. */
static struct log_limit handler_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "handler process failures");
static struct log_limit restart_ll = LOG_LIMIT_INIT(LOG_NOTICE,
    "handler restarts");

extern char **environ;

struct hmsg {
	struct hmsg	*next;
	uint64_t	 id;
	size_t		 len;
	size_t		 off;		/* pipe: framed bytes written */
	bool		 unframeable;	/* lines framing, has a newline */
	uint8_t		 hdr_len;	/* pipe: framing before the bytes */
	char		 hdr[48];
	uint8_t		 data[];
};

struct hlist {
	struct hmsg	*head;
	struct hmsg	**tail;
	unsigned	 n;
};

enum proc_state {
	P_DOWN = 0,		/* no process */
	P_RUNNING,
	P_KILLING,		/* SIGTERM sent to the group; SIGKILL next */
};

struct handler {
	sd_event	*ev;
	struct handler_conf conf;
	handler_done_fn	 done;
	handler_idle_fn	 idle;
	void		*arg;
	char		**envp;
	char		*id_env;	/* exec: FANOUT_MESSAGE_ID's slot */
	struct hlist	 queue;		/* not started */
	struct hlist	 flight;	/* started, not answered */
	struct hmsg	*wr;		/* pipe: first not fully written */
	size_t		 bytes;		/* of queue and flight */
	bool		 draining;
	/* the process */
	enum proc_state	 pstate;
	pid_t		 pid;
	int		 in_fd;		/* its stdin */
	int		 out_fd;	/* pipe: its stdout, the answers */
	int		 err_fd;	/* exec: its stderr */
	sd_event_source	*child_src;
	sd_event_source	*in_src;
	sd_event_source	*out_src;
	sd_event_source	*err_src;
	sd_event_source	*deadline_src;	/* the oldest message's timeout */
	uint64_t	 head_usec;	/* pipe: when the oldest became so */
	sd_event_source	*kill_src;	/* SIGKILL after SIGTERM */
	sd_event_source	*restart_src;	/* pipe: backoff */
	bool		 timed_out;	/* exec: the running one */
	unsigned	 failures;	/* pipe: exits in a row, no answer */
	/* exec: the first line of stderr */
	char		 reason[FANOUT_REASON_MAX];
	size_t		 reason_len;
	bool		 reason_done;
	/* pipe: an answer line being read */
	char		 answer[HANDLER_ANSWER_MAX + 1];
	size_t		 answer_len;
};

static void	pump(struct handler *);
static void	pipe_start(struct handler *);

static void
list_init(struct hlist *l)
{
	l->head = NULL;
	l->tail = &l->head;
	l->n = 0;
}

static void
list_push(struct hlist *l, struct hmsg *m)
{
	m->next = NULL;
	*l->tail = m;
	l->tail = &m->next;
	l->n++;
}

static struct hmsg *
list_pop(struct hlist *l)
{
	struct hmsg *m = l->head;

	if (m == NULL)
		return NULL;
	if ((l->head = m->next) == NULL)
		l->tail = &l->head;
	l->n--;
	return m;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The oldest message is answered: its result leaves, in order. */
static void
finish_head(struct handler *h, uint32_t status, const char *reason,
    size_t reason_len)
{
	struct hmsg *m = list_pop(&h->flight);

	if (m == NULL)
		return;
	if (h->wr == m)
		h->wr = m->next;
	h->bytes -= m->len;
	if (reason_len > FANOUT_REASON_MAX)
		reason_len = FANOUT_REASON_MAX;
	h->done(h->arg, m->id, status, reason, reason_len);
	free(m);
}

static void
finish_head_str(struct handler *h, uint32_t status, const char *reason)
{
	finish_head(h, status, reason, reason != NULL ? strlen(reason) : 0);
}

static int
arm(struct handler *h, sd_event_source **src, uint64_t ms,
    sd_event_time_handler_t cb)
{
	*src = sd_event_source_disable_unref(*src);
	return sd_event_add_time_relative(h->ev, src, CLOCK_MONOTONIC,
	    ms * 1000, 1000, cb, h);
}

/* SIGTERM to the group now, SIGKILL after the grace period. */
static int
on_kill(sd_event_source *s, uint64_t usec, void *arg)
{
	struct handler *h = arg;

	(void)s;
	(void)usec;
	if (h->pid > 0)
		(void)kill(-h->pid, SIGKILL);
	return 0;
}

static void
kill_group(struct handler *h)
{
	if (h->pid <= 0 || h->pstate == P_KILLING)
		return;
	h->pstate = P_KILLING;
	(void)kill(-h->pid, SIGCONT);	/* first: see pool.c */
	(void)kill(-h->pid, SIGTERM);
	if (arm(h, &h->kill_src, HANDLER_KILL_GRACE_MS, on_kill) < 0)
		(void)kill(-h->pid, SIGKILL);
}

/* "exit 3", "signal KILL": how a process ended, for a reason. */
static void
describe_exit(char *buf, size_t len, const siginfo_t *si)
{
	if (si->si_code == CLD_EXITED)
		snprintf(buf, len, "handler exited with status %d",
		    si->si_status);
	else
		snprintf(buf, len, "handler killed by signal %s",
		    sigabbrev_np(si->si_status) ? sigabbrev_np(si->si_status) :
		    "?");
}

/*
 * Spawning.  posix_spawn: no shell, a process group of its own, an empty
 * signal mask and every signal's action back to its default (the worker
 * blocks most and ignores SIGPIPE; whoever started fanoutd may have ignored
 * others, and an ignored signal stays ignored across exec), working
 * directory /.
 */
static int
spawn(struct handler *h, int in_fd, int out_fd, int err_fd, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	int r;

	*pid = -1;	/* set by posix_spawn only when it succeeds */
	sigemptyset(&none);
	sigfillset(&dfl);
	sigdelset(&dfl, SIGKILL);
	sigdelset(&dfl, SIGSTOP);
	if ((r = posix_spawn_file_actions_init(&fa)) != 0)
		return -r;
	if ((r = posix_spawnattr_init(&at)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return -r;
	}
	if ((r = posix_spawn_file_actions_adddup2(&fa, in_fd, 0)) == 0 &&
	    (out_fd < 0 ||
	    (r = posix_spawn_file_actions_adddup2(&fa, out_fd, 1)) == 0) &&
	    (err_fd < 0 ||
	    (r = posix_spawn_file_actions_adddup2(&fa, err_fd, 2)) == 0) &&
	    (r = posix_spawn_file_actions_addchdir_np(&fa, "/")) == 0 &&
	    (r = posix_spawnattr_setpgroup(&at, 0)) == 0 &&
	    (r = posix_spawnattr_setsigmask(&at, &none)) == 0 &&
	    (r = posix_spawnattr_setsigdefault(&at, &dfl)) == 0 &&
	    (r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) == 0)
		r = posix_spawn(pid, h->conf.argv[0], &fa, &at,
		    h->conf.argv, h->envp);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return -r;
}

/* The process is gone: its sources and pipes go too (either mode's;
 * those the mode does not use are unset already). */
static void
proc_cleanup(struct handler *h)
{
	h->child_src = sd_event_source_disable_unref(h->child_src);
	h->in_src = sd_event_source_disable_unref(h->in_src);
	h->out_src = sd_event_source_disable_unref(h->out_src);
	h->err_src = sd_event_source_disable_unref(h->err_src);
	h->deadline_src = sd_event_source_disable_unref(h->deadline_src);
	h->kill_src = sd_event_source_disable_unref(h->kill_src);
	close_fd(&h->in_fd);
	close_fd(&h->out_fd);
	close_fd(&h->err_fd);
	h->pid = 0;
	h->pstate = P_DOWN;
	h->answer_len = 0;
}

/* Ends the process now and reaps it here, its watch dropped first. */
static void
proc_abort(struct handler *h)
{
	pid_t pid = h->pid;

	proc_cleanup(h);
	if (pid > 0) {
		(void)kill(-pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
	}
}

/* A process is up: watch its exit (pidfd based, no pid reuse race). */
static int
watch_child(struct handler *h, pid_t pid, sd_event_child_handler_t cb)
{
	int r;

	h->pid = pid;
	h->pstate = P_RUNNING;
	r = sd_event_add_child(h->ev, &h->child_src, pid, WEXITED, cb, h);
	if (r < 0)
		proc_abort(h);	/* unwatched, it could never be reaped */
	return r;
}

static void
check_idle(struct handler *h)
{
	if (!h->draining || h->flight.n > 0)
		return;
	if (h->pid > 0) {
		/* A pipe handler: EOF on stdin says "exit"; the group is
		 * killed if it takes longer than the grace period. */
		h->in_src = sd_event_source_disable_unref(h->in_src);
		close_fd(&h->in_fd);
		if (h->kill_src == NULL &&
		    arm(h, &h->kill_src, HANDLER_KILL_GRACE_MS, on_kill) < 0)
			(void)kill(-h->pid, SIGKILL);
		return;
	}
	if (h->idle != NULL) {
		handler_idle_fn idle = h->idle;

		h->idle = NULL;
		idle(h->arg);
	}
}

/* ---- exec mode ---- */

static int
exec_on_in(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct handler *h = arg;
	struct hmsg *m = h->flight.head;
	ssize_t n;

	(void)s;
	(void)revents;
	while (m != NULL && m->off < m->len) {
		n = write(fd, m->data + m->off, m->len - m->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			break;		/* EPIPE: it does not read stdin */
		m->off += (size_t)n;
	}
	/* All written, or it will not read more: EOF. */
	h->in_src = sd_event_source_disable_unref(h->in_src);
	close_fd(&h->in_fd);
	return 0;
}

/* Reads stderr as it comes: keeps the first line, discards the rest. */
static int
exec_read_err(struct handler *h)
{
	char buf[4096];
	ssize_t n;

	for (;;) {
		n = read(h->err_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		for (ssize_t i = 0; i < n && !h->reason_done; i++) {
			if (buf[i] == '\n' ||
			    h->reason_len == sizeof(h->reason))
				h->reason_done = true;
			else
				h->reason[h->reason_len++] = buf[i];
		}
	}
}

static int
exec_on_err(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct handler *h = arg;

	(void)s;
	(void)fd;
	(void)revents;
	if (exec_read_err(h) < 0) {
		h->err_src = sd_event_source_disable_unref(h->err_src);
		close_fd(&h->err_fd);
	}
	return 0;
}

static int
exec_on_deadline(sd_event_source *s, uint64_t usec, void *arg)
{
	struct handler *h = arg;

	(void)s;
	(void)usec;
	h->timed_out = true;
	kill_group(h);
	return 0;
}

static int
exec_on_exit(sd_event_source *s, const siginfo_t *si, void *arg)
{
	struct handler *h = arg;
	uint32_t status;
	size_t len;

	(void)s;
	if (h->err_fd >= 0)
		(void)exec_read_err(h);
	if (h->timed_out)
		status = HS_TIMEOUT;
	else if (si->si_code == CLD_EXITED)
		status = (uint32_t)si->si_status & 0xff;
	else
		status = HS_SIGNAL_BASE + ((uint32_t)si->si_status & 0x7f);
	/* What it left behind in its group goes with it after a timeout. */
	if (h->timed_out)
		(void)kill(-h->pid, SIGKILL);
	len = h->reason_len;
	if (len > 0 && h->reason[len - 1] == '\r')
		len--;
	if (h->timed_out)
		len = (size_t)snprintf(h->reason, sizeof(h->reason),
		    "no result within %u ms", h->conf.timeout_ms);
	proc_cleanup(h);
	finish_head(h, status, status == HS_OK ? NULL : h->reason,
	    status == HS_OK ? 0 : len);
	pump(h);
	check_idle(h);
	return 0;
}

/* Runs the oldest queued message: 0, or -1 when it could not start (it
 * has its result then). */
static int
exec_start(struct handler *h)
{
	struct hmsg *m = list_pop(&h->queue);
	int in[2] = { -1, -1 }, err[2] = { -1, -1 }, r;
	pid_t pid;

	list_push(&h->flight, m);
	h->timed_out = false;
	h->reason_len = 0;
	h->reason_done = false;
	snprintf(h->id_env, 32, "%" PRIu64, m->id);
	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1) {
		r = -errno;
		goto fail;
	}
	if ((r = spawn(h, in[0], -1, err[1], &pid)) < 0)
		goto fail;
	close(in[0]);
	close(err[1]);
	h->in_fd = in[1];
	h->err_fd = err[0];
	(void)fcntl(h->in_fd, F_SETFL, O_NONBLOCK);
	(void)fcntl(h->err_fd, F_SETFL, O_NONBLOCK);
	if ((r = watch_child(h, pid, exec_on_exit)) < 0)
		goto fail_started;
	if ((r = sd_event_add_io(h->ev, &h->err_src, h->err_fd, EPOLLIN,
	    exec_on_err, h)) < 0 ||
	    (r = arm(h, &h->deadline_src, h->conf.timeout_ms,
	    exec_on_deadline)) < 0)
		goto fail_started;
	if (m->len == 0)
		close_fd(&h->in_fd);
	else if ((r = sd_event_add_io(h->ev, &h->in_src, h->in_fd, EPOLLOUT,
	    exec_on_in, h)) < 0)
		goto fail_started;
	return 0;

fail_started:
	/* Cannot be watched through: end it, and report why. */
	proc_abort(h);
	finish_head_str(h, HS_NOSTART, strerror(-r));
	return -1;
fail:
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&err[0]);
	close_fd(&err[1]);
	finish_head_str(h, HS_NOSTART, strerror(-r));
	return -1;
}

/* ---- pipe mode ---- */

static int
pipe_on_deadline(sd_event_source *s, uint64_t usec, void *arg)
{
	struct handler *h = arg;
	uint64_t due = h->head_usec + h->conf.timeout_ms * 1000ULL;
	char why[64];

	(void)s;
	if (h->flight.n == 0 || h->pstate != P_RUNNING)
		return 0;
	if (usec < due) {
		/* The head changed since: its own time is not up yet. */
		(void)sd_event_source_set_time(s, due);
		(void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
		return 0;
	}
	snprintf(why, sizeof(why), "no result within %u ms",
	    h->conf.timeout_ms);
	finish_head_str(h, HS_TIMEOUT, why);
	kill_group(h);
	check_idle(h);
	return 0;
}

/*
 * The oldest message in flight has timeout_ms from when it became the
 * oldest.  A new head only notes the time: the timer, armed for an older
 * head, finds out when it fires and moves itself on (a timer re-armed per
 * answer cost more than the answer).
 */
static void
pipe_arm_deadline(struct handler *h, bool head_changed)
{
	uint64_t now = 0;

	if (h->flight.n == 0 || h->pstate != P_RUNNING)
		return;
	(void)sd_event_now(h->ev, CLOCK_MONOTONIC, &now);
	if (head_changed)
		h->head_usec = now;
	if (sd_event_source_get_enabled(h->deadline_src, NULL) > 0)
		return;
	if (h->deadline_src == NULL)
		if (sd_event_add_time(h->ev, &h->deadline_src,
		    CLOCK_MONOTONIC, 0, 1000, pipe_on_deadline, h) < 0) {
			log_warnx("worker %u: cannot arm the handler timeout",
			    h->conf.index);
			return;
		}
	(void)sd_event_source_set_time(h->deadline_src,
	    h->head_usec + h->conf.timeout_ms * 1000ULL);
	(void)sd_event_source_set_enabled(h->deadline_src, SD_EVENT_ONESHOT);
}

/* Messages that cannot be framed are answered without the handler, when
 * their turn comes. */
static void
pipe_settle_unframeable(struct handler *h)
{
	while (h->flight.head != NULL && h->flight.head->unframeable)
		finish_head_str(h, HS_UNFRAMEABLE, "the message has a newline "
		    "and handler_framing is \"lines\"");
}

/* Starts the queued messages, as far as the window allows. */
static void
pipe_fill(struct handler *h)
{
	struct hmsg *m;

	while (h->flight.n < HANDLER_PIPE_WINDOW &&
	    (m = list_pop(&h->queue)) != NULL) {
		if (h->conf.framing == FRAMING_LINES) {
			m->hdr_len = 0;
			m->unframeable = memchr(m->data, '\n', m->len) != NULL;
		} else
			m->hdr_len = (uint8_t)snprintf(m->hdr, sizeof(m->hdr),
			    "%" PRIu64 " %zu\n", m->id, m->len);
		list_push(&h->flight, m);
		if (h->wr == NULL && !m->unframeable)
			h->wr = m;
	}
	pipe_settle_unframeable(h);
}

static size_t
framed_len(const struct handler *h, const struct hmsg *m)
{
	return m->hdr_len + m->len + (h->conf.framing == FRAMING_LINES);
}

/* Writes what is started and unwritten, many messages per writev. */
static void
pipe_write(struct handler *h)
{
	char nl = '\n';
	struct iovec iov[PIPE_IOV_MAX];
	struct hmsg *m;
	ssize_t n;
	int cnt;

	while (h->wr != NULL && h->in_fd >= 0) {
		cnt = 0;
		for (m = h->wr; m != NULL && cnt + 3 <= PIPE_IOV_MAX;
		    m = m->next) {
			size_t skip = m == h->wr ? m->off : 0;
			struct { char *p; size_t len; } seg[3] = {
				{ m->hdr, m->hdr_len },
				{ (char *)m->data, m->len },
				{ &nl, h->conf.framing == FRAMING_LINES },
			};

			if (m->unframeable)
				continue;
			for (int i = 0; i < 3; i++) {
				if (skip >= seg[i].len) {
					skip -= seg[i].len;
					continue;
				}
				iov[cnt].iov_base = seg[i].p + skip;
				iov[cnt++].iov_len = seg[i].len - skip;
				skip = 0;
			}
		}
		n = writev(h->in_fd, iov, cnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			(void)sd_event_source_set_enabled(h->in_src, SD_EVENT_ON);
			return;
		}
		if (n < 0) {
			/* It closed its stdin: it is going; its exit says
			 * what became of the messages in flight. */
			h->in_src = sd_event_source_disable_unref(h->in_src);
			close_fd(&h->in_fd);
			return;
		}
		while (h->wr != NULL && n > 0) {
			size_t left = framed_len(h, h->wr) - h->wr->off;

			if (h->wr->unframeable) {
				h->wr = h->wr->next;
				continue;
			}
			if ((size_t)n < left) {
				h->wr->off += (size_t)n;
				n = 0;
			} else {
				h->wr->off += left;
				n -= (ssize_t)left;
				h->wr = h->wr->next;
			}
		}
		while (h->wr != NULL && h->wr->unframeable)
			h->wr = h->wr->next;
	}
	(void)sd_event_source_set_enabled(h->in_src, SD_EVENT_OFF);
}

static int
pipe_on_in(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct handler *h = arg;

	(void)s;
	(void)fd;
	(void)revents;
	pipe_write(h);
	return 0;
}

/* One answer line: "ok" or 0..255, then optionally a space and words. */
static void
pipe_answer(struct handler *h, char *line, size_t len)
{
	struct hmsg *m = h->flight.head;
	char *sp, *end;
	unsigned long v;
	size_t wlen;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	if (m == NULL || m->off < framed_len(h, m)) {
		if (log_limit(&handler_ll)) {
			char text[40 * 4 + 1];

			str_escape(text, sizeof(text), line,
			    len < 40 ? len : 40);
			log_warnx("worker %u: the handler answered \"%s\" "
			    "before it had a whole message; restarting it",
			    h->conf.index, text);
		}
		kill_group(h);
		return;
	}
	sp = strchr(line, ' ');
	wlen = sp != NULL ? (size_t)(sp - line) : len;
	if (wlen == 2 && strncmp(line, "ok", 2) == 0)
		v = 0;
	else {
		errno = 0;
		v = strtoul(line, &end, 10);
		if (wlen == 0 || end != line + wlen || errno != 0 || v > 255 ||
		    line[0] == '+' || line[0] == '-') {
			finish_head(h, HS_BADANSWER, line, len);
			kill_group(h);
			return;
		}
	}
	h->failures = 0;
	if (v == 0)
		finish_head(h, HS_OK, NULL, 0);
	else if (sp != NULL)
		finish_head(h, (uint32_t)v, sp + 1, len - wlen - 1);
	else
		finish_head(h, (uint32_t)v, NULL, 0);
	pipe_settle_unframeable(h);
	pipe_arm_deadline(h, true);
}

/* Reads answers: 0, or -1 on EOF or an error. */
static int
pipe_read(struct handler *h)
{
	char *nl, *line, *end;
	size_t want;
	ssize_t n;

	for (;;) {
		want = HANDLER_ANSWER_MAX - h->answer_len;
		n = read(h->out_fd, h->answer + h->answer_len, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		h->answer_len += (size_t)n;
		line = h->answer;
		end = h->answer + h->answer_len;
		while (h->pstate == P_RUNNING && (nl = memchr(line, '\n',
		    (size_t)(end - line))) != NULL) {
			pipe_answer(h, line, (size_t)(nl - line));
			line = nl + 1;
		}
		h->answer_len = (size_t)(end - line);
		memmove(h->answer, line, h->answer_len);
		if (h->pstate != P_RUNNING) {
			/* Being ended: later answers are not believed. */
			h->answer_len = 0;
			continue;
		}
		if (h->answer_len == HANDLER_ANSWER_MAX) {
			finish_head(h, HS_BADANSWER, "answer line too long",
			    20);
			h->answer_len = 0;
			kill_group(h);
		}
		/* A short read emptied the pipe: no need to ask again. */
		if ((size_t)n < want)
			return 0;
	}
}

static int
pipe_on_out(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct handler *h = arg;

	(void)s;
	(void)fd;
	(void)revents;
	if (pipe_read(h) < 0) {
		/* It closed its stdout: it cannot answer any more. */
		h->out_src = sd_event_source_disable_unref(h->out_src);
		close_fd(&h->out_fd);
		kill_group(h);
	}
	pump(h);
	check_idle(h);
	return 0;
}

static int
pipe_on_restart(sd_event_source *s, uint64_t usec, void *arg)
{
	struct handler *h = arg;

	(void)s;
	(void)usec;
	h->restart_src = sd_event_source_disable_unref(h->restart_src);
	pipe_start(h);
	pump(h);
	return 0;
}

/* After a failure: again in 100 ms, doubling while it keeps failing. */
static void
pipe_schedule_restart(struct handler *h)
{
	uint64_t ms = RESTART_MIN_MS;
	unsigned i;

	for (i = 1; i < h->failures && ms < h->conf.restart_max_ms; i++)
		ms *= 2;
	if (ms > h->conf.restart_max_ms)
		ms = h->conf.restart_max_ms;
	if (log_limit(&restart_ll))
		log_notice("worker %u: handler restarting in %" PRIu64 " ms",
		    h->conf.index, ms);
	if (arm(h, &h->restart_src, ms, pipe_on_restart) < 0)
		log_warnx("worker %u: cannot schedule the handler's restart",
		    h->conf.index);
}

/* The handler is gone: what it was given, even in part, and did not
 * answer is failed; what it was never given goes to the next process. */
static void
pipe_lost(struct handler *h, const char *why)
{
	struct hmsg *m;

	while ((m = h->flight.head) != NULL && (m->off > 0 || m->unframeable)) {
		if (m->unframeable)
			pipe_settle_unframeable(h);
		else
			finish_head_str(h, HS_LOST, why);
	}
	h->wr = NULL;
	if (h->flight.head == NULL)
		return;
	for (m = h->flight.head; m != NULL; m = m->next)
		m->unframeable = false;		/* judged again */
	*h->flight.tail = h->queue.head;
	if (h->queue.head == NULL)
		h->queue.tail = h->flight.tail;
	h->queue.head = h->flight.head;
	h->queue.n += h->flight.n;
	list_init(&h->flight);
}

static int
pipe_on_exit(sd_event_source *s, const siginfo_t *si, void *arg)
{
	struct handler *h = arg;
	bool clean = si->si_code == CLD_EXITED && si->si_status == 0;
	char why[64];

	(void)s;
	/* Answers it wrote before it went still count. */
	if (h->out_fd >= 0 && h->pstate == P_RUNNING)
		(void)pipe_read(h);
	(void)kill(-h->pid, SIGKILL);	/* what it left in its group */
	describe_exit(why, sizeof(why), si);
	if ((!h->draining || h->flight.n > 0 || !clean) &&
	    log_limit(&handler_ll))
		log_warnx("worker %u: %s", h->conf.index, why);
	if (!(h->draining && clean && h->flight.n == 0))
		h->failures++;
	proc_cleanup(h);
	pipe_lost(h, why);
	if (!h->draining)
		pipe_schedule_restart(h);
	check_idle(h);
	return 0;
}

static void
pipe_start(struct handler *h)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, r;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1) {
		r = -errno;
		goto fail;
	}
	if ((r = spawn(h, in[0], out[1], -1, &pid)) < 0)
		goto fail;
	close_fd(&in[0]);
	close_fd(&out[1]);
	h->in_fd = in[1];
	h->out_fd = out[0];
	(void)fcntl(h->in_fd, F_SETFL, O_NONBLOCK);
	(void)fcntl(h->out_fd, F_SETFL, O_NONBLOCK);
	if ((r = watch_child(h, pid, pipe_on_exit)) < 0 ||
	    (r = sd_event_add_io(h->ev, &h->in_src, h->in_fd, EPOLLOUT,
	    pipe_on_in, h)) < 0 ||
	    (r = sd_event_add_io(h->ev, &h->out_src, h->out_fd, EPOLLIN,
	    pipe_on_out, h)) < 0) {
		proc_abort(h);
		goto fail_logged;
	}
	(void)sd_event_source_set_enabled(h->in_src, SD_EVENT_OFF);
	log_debug("worker %u: handler started: pid %d", h->conf.index,
	    (int)pid);
	return;

fail:
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&out[0]);
	close_fd(&out[1]);
fail_logged:
	if (log_limit(&handler_ll))
		log_warnx("worker %u: cannot start the handler %s: %s",
		    h->conf.index, h->conf.argv[0], strerror(-r));
	h->failures++;
	pipe_schedule_restart(h);
}

/* ---- both ---- */

/* Moves work along: starts what can start. */
static void
pump(struct handler *h)
{
	bool was_empty;

	if (h->conf.mode == HANDLER_EXEC) {
		/* A message that cannot start has its result at once:
		 * on to the next. */
		while (h->pstate == P_DOWN && h->flight.n == 0 &&
		    h->queue.head != NULL && exec_start(h) < 0)
			;
		return;
	}
	if (h->pstate != P_RUNNING)
		return;
	was_empty = h->flight.n == 0;
	pipe_fill(h);
	pipe_write(h);
	pipe_arm_deadline(h, was_empty && h->flight.n > 0);
}

/* The handler's environment: the worker's own, without what was meant
 * for the worker (NOTIFY_SOCKET) or would be ambiguous (FANOUT_*). */
static int
build_env(struct handler *h)
{
	size_t n = 0, i = 0;
	char **e, *s;

	for (e = environ; *e != NULL; e++)
		n++;
	if ((h->envp = calloc(n + 4, sizeof(*h->envp))) == NULL)
		return -ENOMEM;
	for (e = environ; *e != NULL; e++)
		if (strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 &&
		    strncmp(*e, "FANOUT_", 7) != 0)
			h->envp[i++] = *e;
	/* Each into envp only once it exists: asprintf leaves its pointer
	 * undefined on failure, and handler_free frees what envp holds. */
	if (asprintf(&s, "FANOUT_WORKER_INDEX=%u", h->conf.index) == -1)
		return -ENOMEM;
	h->envp[i++] = s;
	if (asprintf(&s, "FANOUT_WORKER_PORT=%u", h->conf.port) == -1)
		return -ENOMEM;
	h->envp[i++] = s;
	if (h->conf.mode == HANDLER_EXEC) {
		/* Rewritten before each spawn; room for any uint64. */
		if ((s = calloc(1, 18 + 32)) == NULL)
			return -ENOMEM;
		memcpy(s, "FANOUT_MESSAGE_ID=", 18);
		h->id_env = s + 18;
		h->envp[i] = s;
	}
	return 0;
}

int
handler_new(sd_event *ev, const struct handler_conf *conf,
    handler_done_fn done, void *arg, struct handler **out)
{
	struct handler *h;
	int r;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return -ENOMEM;
	h->ev = ev;
	h->conf = *conf;
	h->done = done;
	h->arg = arg;
	h->in_fd = h->out_fd = h->err_fd = -1;
	list_init(&h->queue);
	list_init(&h->flight);
	if ((r = build_env(h)) < 0) {
		handler_free(h);
		return r;
	}
	if (conf->mode == HANDLER_PIPE)
		pipe_start(h);
	*out = h;
	return 0;
}

int
handler_submit(struct handler *h, uint64_t id, const uint8_t *data,
    size_t len)
{
	struct hmsg *m;

	if (h->draining)
		return -ESHUTDOWN;
	if ((m = malloc(sizeof(*m) + len)) == NULL)
		return -ENOMEM;
	memset(m, 0, sizeof(*m));
	m->id = id;
	m->len = len;
	memcpy(m->data, data, len);
	list_push(&h->queue, m);
	h->bytes += len;
	return 0;
}

void
handler_start(struct handler *h)
{
	pump(h);
}

size_t
handler_pending_bytes(const struct handler *h)
{
	return h->bytes;
}

void
handler_drain(struct handler *h, handler_idle_fn idle)
{
	struct hmsg *m;

	h->draining = true;
	h->idle = idle;
	/* Not started: not answered either, so fanoutd keeps them. */
	while ((m = list_pop(&h->queue)) != NULL) {
		h->bytes -= m->len;
		free(m);
	}
	h->restart_src = sd_event_source_disable_unref(h->restart_src);
	check_idle(h);
}

void
handler_free(struct handler *h)
{
	struct hmsg *m;
	size_t i;

	if (h == NULL)
		return;
	proc_abort(h);
	h->restart_src = sd_event_source_disable_unref(h->restart_src);
	while ((m = list_pop(&h->queue)) != NULL)
		free(m);
	while ((m = list_pop(&h->flight)) != NULL)
		free(m);
	if (h->envp != NULL) {
		/* Only the FANOUT_ entries at the end are ours. */
		for (i = 0; h->envp[i] != NULL; i++)
			if (strncmp(h->envp[i], "FANOUT_", 7) == 0)
				free(h->envp[i]);
		free(h->envp);
	}
	free(h);
}
