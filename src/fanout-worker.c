/* SPDX-License-Identifier: MIT */
/*
 * fanout-worker: listens on its port, tells its supervisor it is ready once
 * it listens, gives every message fanoutd sends it to its handler (if it has
 * one) and acknowledges it, in order, with the handler's result.  A message
 * it has already handled (a resend after a lost link) is acked without
 * being handled again.  On SIGTERM it lets the running handler finish, acks
 * what its handler took, then exits; SIGHUP and SIGINT, which reach it with
 * fanoutd's process group, it ignores.
 *
 * Only fanoutd gets in: a connection must prove it knows the key fanoutd
 * gave this process (the handshake of proto.h) within --auth-timeout,
 * sending nothing but the handshake before; one authenticated link is
 * served at a time, and a newer one replaces it.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "auth.h"
#include "conf.h"
#include "frame.h"
#include "handler.h"
#include "log.h"
#include "notify.h"
#include "payload.h"
#include "sock.h"
#include "util.h"

/* Connections at once: fanoutd's, and strangers still in the handshake.  At
 * the cap a new connection takes the place of the oldest unauthenticated
 * one, so that strangers cannot keep fanoutd from reconnecting. */
#define CONNS_MAX	8
#define LOG_PREVIEW	32	/* message bytes shown in the log */
#define EXIT_FLUSH_MS	2000	/* how long acks may take to leave at exit */
/* With a handler: messages read and not yet acked, per connection, and
 * bytes waiting for the handler; past either the worker stops reading and
 * TCP pushes back on fanoutd, which queues. */
#define AHEAD_MAX	64
#define AHEAD_BYTES_MAX	(1024 * 1024)
/* Failures remembered to answer a resend with the same result. */
#define FAILS_KEPT	256

struct conn {
	struct wk	*wk;
	int		 fd;
	sd_event_source	*src;
	sd_event_source	*deadline_src;	/* until authenticated */
	struct auth	 auth;
	struct rbuf	 in;
	struct wbuf	 out;
	/* ids read on this connection and not yet acked, oldest first: acks
	 * leave in this order, once the handler has answered each */
	uint64_t	 ahead[AHEAD_MAX];
	unsigned	 ahead_head, ahead_n;
	bool		 paused;	/* not reading: too much ahead */
	struct conn	*next;
};

struct fail {
	uint64_t	 id;
	uint32_t	 status;
	uint8_t		 len;
	char		 reason[FANOUT_REASON_MAX];
};

struct wk {
	sd_event	*ev;
	uint32_t	 index;
	int		 lfd;
	sd_event_source	*lsrc;
	struct conn	*conns;		/* newest first */
	unsigned	 nconns;
	struct conn	*link;		/* the authenticated one, or NULL */
	uint8_t		 key[AUTH_KEY_LEN];
	uint32_t	 max_message;	/* max_message_bytes */
	uint32_t	 auth_timeout_ms;
	/* Ids grow in the order fanoutd accepted the messages and each
	 * worker gets them in that order: two numbers tell what the handler
	 * took and what it has answered. */
	uint64_t	 last_taken;
	uint64_t	 last_done;
	pid_t		 pid;
	struct handler	*h;		/* NULL: no handler, ack on receipt */
	struct fail	*fails;		/* ring of FAILS_KEPT */
	unsigned	 nfails;
	sd_event_source	*post_src;	/* acks and resumes after answers */
	sd_event_source	*ignsrc;	/* the signals it ignores (on_ignored) */
	bool		 stopping;
};

static void __attribute__((noreturn))
usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: fanout-worker --index N --port PORT --secret-fd FD\n"
	    "       fanout-worker --pool FD\n"
	    "           [--address ADDR] [--max-message-bytes N] "
	    "[--auth-timeout MS] [-v]\n"
	    "           [--handler-mode exec|pipe] [--handler-framing lines|binary]"
	    "\n"
	    "           [--handler-timeout MS] [--handler-restart-max MS]\n"
	    "           [-- PROGRAM [ARG...]]\n"
	    "Handle and acknowledge the messages fanoutd broadcasts; started by "
	    "fanoutd.\n\n"
	    "  -i, --index N        this worker's index in the pool\n"
	    "  -p, --port PORT      TCP port to listen on\n"
	    "  -a, --address ADDR   address to listen on (default 127.0.0.1)\n"
	    "  --secret-fd FD       read the link key from FD (fanoutd passes "
	    "it)\n"
	    "  --pool FD            fork one worker per record on FD, each "
	    "with its own\n"
	    "                       index, port and key (fanoutd, at start)\n"
	    "  --max-message-bytes N\n"
	    "                       longest message taken (default 16 MiB)\n"
	    "  --auth-timeout MS    a connection must prove itself within this "
	    "(default 2000)\n"
	    "  --handler-mode M     exec (a process per message, default) or "
	    "pipe\n"
	    "  --handler-framing F  pipe mode: lines (default) or binary\n"
	    "  --handler-timeout MS per message (default 10000)\n"
	    "  --handler-restart-max MS\n"
	    "                       pipe mode: longest restart delay "
	    "(default 30000)\n"
	    "  PROGRAM [ARG...]     the handler; without it, messages are only "
	    "acked\n"
	    "  -v, --verbose        log debug messages too; -vv: a line per "
	    "message\n"
	    "  -h, --help           show this help and exit\n"
	    "  -V, --version        show the version and exit\n");
	exit(code);
}

static void
conn_close(struct conn *c)
{
	struct conn **pp;

	for (pp = &c->wk->conns; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
	c->wk->nconns--;
	if (c->wk->link == c)
		c->wk->link = NULL;
	c->src = sd_event_source_disable_unref(c->src);
	c->deadline_src = sd_event_source_disable_unref(c->deadline_src);
	auth_clear(&c->auth);
	close(c->fd);
	rbuf_free(&c->in);
	wbuf_free(&c->out);
	free(c);
}

/* Whoever reaches the port can send these: rate-limited. */
static struct log_limit frames_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "bad frames and connections");
/* A handler can fail for every message. */
static struct log_limit handler_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "handler failures");

/* Without a handler, receiving is handling: a debug line at -vv. */
static void
log_message(struct wk *wk, const struct frame_hdr *h, const uint8_t *p)
{
	char preview[LOG_PREVIEW * 4 + 1];

	if (log_getverbose() < LOG_V_MESSAGES)
		return;
	str_escape(preview, sizeof(preview), p,
	    h->len < LOG_PREVIEW ? h->len : LOG_PREVIEW);
	log_trace("worker %u (pid %d): message %llu, %u byte%s: \"%s\"%s",
	    wk->index, (int)wk->pid, (unsigned long long)h->id, h->len,
	    PLURAL(h->len), preview, h->len > LOG_PREVIEW ? "..." : "");
}

static int
conn_ack(struct conn *c, uint64_t id, uint32_t status, const char *reason,
    size_t reason_len)
{
	uint8_t buf[MSG_ACK_LEN + FANOUT_REASON_MAX];
	struct msg_ack ack = { .status = status };

	msg_ack_encode(buf, &ack);
	if (reason_len > 0)
		memcpy(buf + MSG_ACK_LEN, reason, reason_len);
	if (wbuf_frame(&c->out, MSG_ACK, id, buf, MSG_ACK_LEN + reason_len)
	    < 0) {
		log_warnx("worker %u: out of memory", c->wk->index);
		return -1;
	}
	return 0;
}

/* The result of a message the handler has answered: a failure if it is
 * still remembered, otherwise success. */
static const struct fail *
fail_lookup(const struct wk *wk, uint64_t id)
{
	unsigned i;

	for (i = 0; i < wk->nfails && i < FAILS_KEPT; i++) {
		const struct fail *f = &wk->fails[(wk->nfails - 1 - i) %
		    FAILS_KEPT];

		if (f->id == id)
			return f;
		if (f->id < id)
			break;
	}
	return NULL;
}

/* Acks, in order, the messages read on c that the handler has answered. */
static int
conn_emit(struct conn *c)
{
	struct wk *wk = c->wk;

	while (c->ahead_n > 0 && c->ahead[c->ahead_head] <= wk->last_done) {
		uint64_t id = c->ahead[c->ahead_head];
		const struct fail *f = fail_lookup(wk, id);

		if (conn_ack(c, id, f ? f->status : 0, f ? f->reason : NULL,
		    f ? f->len : 0) < 0)
			return -1;
		c->ahead_head = (c->ahead_head + 1) % AHEAD_MAX;
		c->ahead_n--;
	}
	return 0;
}

/* One message for the handler: 0, or -1 to drop the connection. */
static int
conn_take(struct conn *c, const struct frame_hdr *h, const uint8_t *p)
{
	struct wk *wk = c->wk;
	int r;

	if (h->id > wk->last_taken) {
		if ((r = handler_submit(wk->h, h->id, p, h->len)) < 0) {
			log_warnx("worker %u: cannot take message %llu: %s",
			    wk->index, (unsigned long long)h->id,
			    strerror(-r));
			return -1;
		}
		wk->last_taken = h->id;
	} else
		log_trace("worker %u (pid %d): message %llu again: acked "
		    "without handling it", wk->index, (int)wk->pid,
		    (unsigned long long)h->id);
	c->ahead[(c->ahead_head + c->ahead_n) % AHEAD_MAX] = h->id;
	c->ahead_n++;
	return 0;
}

/* The connection proved it is fanoutd's: it becomes the link, and takes
 * messages up to max_message_bytes from now on. */
static void
conn_promote(struct conn *c)
{
	struct wk *wk = c->wk;

	c->deadline_src = sd_event_source_disable_unref(c->deadline_src);
	auth_clear(&c->auth);
	c->auth.state = AUTH_DONE;
	c->in.max_payload = wk->max_message;
	/* Only from on_conn_io for c, never while on_post walks the list:
	 * closing another connection here is safe.  What the old link read
	 * and did not ack, fanoutd sends again on this one. */
	if (wk->link != NULL) {
		log_info("worker %u: fanoutd connected again; closing its "
		    "previous link", wk->index);
		conn_close(wk->link);
	}
	wk->link = c;
	log_debug("worker %u: fanoutd authenticated", wk->index);
}

/* Handshake frames, the only ones a connection may send first: 0 (done
 * or incomplete), or -1 to close it. */
static int
conn_auth(struct conn *c)
{
	struct wk *wk = c->wk;
	uint8_t out[AUTH_FRAME_MAX];
	struct frame_hdr h;
	const uint8_t *p;
	ssize_t n;
	int r;

	while (c->auth.state != AUTH_DONE) {
		if ((r = rbuf_next(&c->in, &h, &p)) == 0)
			return 0;
		if (r < 0) {
			if (log_limit(&frames_ll))
				log_warnx("worker %u: bad frame: %s; closing "
				    "the connection", wk->index,
				    frame_strerror(r));
			return -1;
		}
		if ((n = auth_worker_recv(&c->auth, &h, p, out)) < 0) {
			if (log_limit(&frames_ll))
				log_warnx("worker %u: connection failed the "
				    "handshake: %s (type %u, %u byte%s); "
				    "closing it", wk->index,
				    auth_strerror((int)n), h.type, h.len,
				    PLURAL(h.len));
			return -1;
		}
		/* The one answer, the connection's first write: the send
		 * buffer is empty, a short write means a broken one. */
		if (n > 0 && write(c->fd, out, (size_t)n) != n)
			return -1;
	}
	conn_promote(c);
	return 0;
}

/* Handles the complete frames read so far, as far as the bounds allow:
 * 0, or -1 on a protocol error. */
static int
conn_process(struct conn *c)
{
	struct wk *wk = c->wk;
	struct frame_hdr h;
	const uint8_t *p;
	int r = 0;

	if (c->auth.state != AUTH_DONE) {
		if (conn_auth(c) < 0)
			return -1;
		if (c->auth.state != AUTH_DONE)
			return 0;
	}
	/* Answered slots first: they are room to read more. */
	if (conn_emit(c) < 0)
		return -1;
	for (;;) {
		if (wk->h != NULL && (wk->stopping || c->ahead_n == AHEAD_MAX ||
		    handler_pending_bytes(wk->h) >= AHEAD_BYTES_MAX)) {
			c->paused = true;
			break;
		}
		c->paused = false;
		if ((r = rbuf_next(&c->in, &h, &p)) != 1)
			break;
		if (h.type != MSG_DATA) {
			if (log_limit(&frames_ll))
				log_warnx("worker %u: unexpected frame type "
				    "%u; closing the connection", wk->index,
				    h.type);
			return -1;
		}
		if (wk->h != NULL) {
			if (conn_take(c, &h, p) < 0)
				return -1;
			continue;
		}
		if (h.id > wk->last_done) {
			log_message(wk, &h, p);
			wk->last_done = h.id;
		} else
			log_trace("worker %u (pid %d): message %llu again: "
			    "acked without handling it", wk->index,
			    (int)wk->pid, (unsigned long long)h.id);
		if (conn_ack(c, h.id, 0, NULL, 0) < 0)
			return -1;
	}
	if (wk->h != NULL)
		handler_start(wk->h);	/* the batch read, in one write */
	if (r < 0) {
		if (log_limit(&frames_ll))
			log_warnx("worker %u: bad frame: %s; closing the "
			    "connection", wk->index, frame_strerror(r));
		return -1;
	}
	return conn_emit(c);
}

/* One write per batch of frames read; reading only when not paused. */
static void
conn_update(struct conn *c)
{
	int r;

	if ((r = wbuf_flush(&c->out, c->fd)) < 0) {
		conn_close(c);
		return;
	}
	(void)sd_event_source_set_io_events(c->src,
	    (c->paused || c->wk->stopping ? 0 : EPOLLIN) |
	    (r == 1 ? EPOLLOUT : 0));
}

static int
on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	(void)s;
	if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->paused &&
	    !c->wk->stopping) {
		n = rbuf_read(&c->in, fd);
		if (n == 0 || (n < 0 && n != -EAGAIN)) {
			log_debug("worker %u: connection closed",
			    c->wk->index);
			conn_close(c);
			return 0;
		}
		if (conn_process(c) < 0) {
			(void)wbuf_flush(&c->out, fd);
			conn_close(c);
			return 0;
		}
	}
	conn_update(c);
	return 0;
}

/* Before each wait of the loop: the counts the rate limits held back, once
 * their window is over.  A prepare callback, not a post source: a post
 * source costs an extra turn of the loop, an epoll_wait, per message. */
static int
on_log_flush(sd_event_source *s, void *arg)
{
	(void)s;
	(void)arg;
	log_limit_flush(false);
	return 0;
}

/* After the handler answered: ack, and read again where paused. */
static int
on_post(sd_event_source *s, void *arg)
{
	struct wk *wk = arg;
	struct conn *c, *next;

	(void)s;
	for (c = wk->conns; c != NULL; c = next) {
		next = c->next;
		if ((c->paused ? conn_process(c) : conn_emit(c)) < 0) {
			conn_close(c);
			continue;
		}
		conn_update(c);
	}
	return 0;
}

/* "message 12: handler failed: exit status 3: the reason it gave". */
static void
log_failure(const struct wk *wk, uint64_t id, uint32_t status,
    const char *reason, size_t reason_len)
{
	static const char *const names[] = HS_NAMES_FROM_TIMEOUT;
	char st[32], why[FANOUT_REASON_MAX * 4 + 1];

	if (HS_IS_EXIT(status))
		snprintf(st, sizeof(st), "exit status %u", status);
	else if (HS_IS_SIGNAL(status))
		snprintf(st, sizeof(st), "signal %u", status - HS_SIGNAL_BASE);
	else if (status >= HS_TIMEOUT && status <= HS_BADANSWER)
		snprintf(st, sizeof(st), "%s", names[status - HS_TIMEOUT]);
	else
		snprintf(st, sizeof(st), "status %u", status);
	str_escape(why, sizeof(why), reason, reason_len);
	log_warnx("worker %u: message %llu: handler failed: %s%s%s",
	    wk->index, (unsigned long long)id, st, reason_len > 0 ? ": " : "",
	    why);
}

static void
on_handler_done(void *arg, uint64_t id, uint32_t status, const char *reason,
    size_t reason_len)
{
	struct wk *wk = arg;

	wk->last_done = id;
	if (status != HS_OK) {
		struct fail *f = &wk->fails[wk->nfails++ % FAILS_KEPT];

		f->id = id;
		f->status = status;
		f->len = (uint8_t)reason_len;
		if (reason_len > 0)
			memcpy(f->reason, reason, reason_len);
		if (log_limit(&handler_ll))
			log_failure(wk, id, status, reason, reason_len);
	}
	(void)sd_event_source_set_enabled(wk->post_src, SD_EVENT_ONESHOT);
}

static int
on_auth_deadline(sd_event_source *s, uint64_t usec, void *arg)
{
	struct conn *c = arg;

	(void)s;
	(void)usec;
	if (log_limit(&frames_ll))
		log_warnx("worker %u: connection not authenticated within "
		    "%u ms; closing it", c->wk->index,
		    c->wk->auth_timeout_ms);
	conn_close(c);
	return 0;
}

/* At the cap: the oldest connection that has not even said hello makes
 * room, else the oldest still in the handshake.  fanoutd says hello as
 * soon as it connects, so strangers that connect and wait cannot push a
 * slow handshake of fanoutd's out (as under valgrind). */
static bool
conn_evict(struct wk *wk)
{
	struct conn *c, *oldest = NULL, *silent = NULL;

	for (c = wk->conns; c != NULL; c = c->next) {
		if (c->auth.state == AUTH_START)
			silent = c;
		if (c->auth.state != AUTH_DONE)
			oldest = c;
	}
	if (silent != NULL)
		oldest = silent;
	if (oldest == NULL)
		return false;
	if (log_limit(&frames_ll))
		log_warnx("worker %u: %u connections; closing the oldest "
		    "unauthenticated one", wk->index, wk->nconns);
	conn_close(oldest);
	return true;
}

static int
on_accept(sd_event_source *s, int lfd, uint32_t revents, void *arg)
{
	struct wk *wk = arg;
	struct conn *c;
	int fd;

	(void)s;
	(void)revents;
	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC))
	    >= 0) {
		if ((wk->nconns >= CONNS_MAX && !conn_evict(wk)) ||
		    (c = calloc(1, sizeof(*c))) == NULL) {
			if (log_limit(&frames_ll))
				log_warnx("worker %u: refusing a connection: "
				    "too many", wk->index);
			close(fd);
			continue;
		}
		c->wk = wk;
		c->fd = fd;
		/* Until it is authenticated, nothing longer than a
		 * handshake frame: a stranger holds no memory. */
		rbuf_init(&c->in, AUTH_PAYLOAD_MAX);
		wbuf_init(&c->out);
		auth_start(&c->auth, wk->key);
		if (sd_event_add_io(wk->ev, &c->src, fd, EPOLLIN, on_conn_io,
		    c) < 0 ||
		    sd_event_add_time_relative(wk->ev, &c->deadline_src,
		    CLOCK_MONOTONIC, wk->auth_timeout_ms * 1000ULL, 0,
		    on_auth_deadline, c) < 0 ||
		    /* A proof that came in time is read before the deadline
		     * is heard, however late this process gets the CPU:
		     * fanoutd took the link as up when it sent it. */
		    sd_event_source_set_priority(c->deadline_src,
		    SD_EVENT_PRIORITY_IDLE) < 0) {
			c->deadline_src =
			    sd_event_source_disable_unref(c->deadline_src);
			c->src = sd_event_source_disable_unref(c->src);
			auth_clear(&c->auth);
			close(fd);
			free(c);
			continue;
		}
		c->next = wk->conns;
		wk->conns = c;
		wk->nconns++;
		log_debug("worker %u: connection accepted", wk->index);
	}
	return 0;
}

/* At exit the acks already produced still go out, within a deadline. */
static void
flush_all(struct wk *wk)
{
	uint64_t deadline = now_usec() + EXIT_FLUSH_MS * 1000;
	struct conn *c;

	for (c = wk->conns; c != NULL; c = c->next) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
		uint64_t now;

		while (wbuf_flush(&c->out, c->fd) == 1 &&
		    (now = now_usec()) < deadline)
			(void)poll(&pfd, 1, (int)((deadline - now) / 1000) + 1);
	}
}

/* The handler has finished what it took: ack it all and go. */
static void
on_handler_idle(void *arg)
{
	struct wk *wk = arg;
	struct conn *c;

	for (c = wk->conns; c != NULL; c = c->next)
		(void)conn_emit(c);
	(void)sd_event_exit(wk->ev, 0);
}

/* SIGHUP and SIGINT: meant for fanoutd (a terminal hangup, a ^C, systemctl
 * kill), which tells its workers with SIGTERM what it wants of them; and
 * the signals with no meaning (util.h, sig_stray).  All on one signalfd:
 * an sd-event source for each of forty signals costs every worker three
 * system calls per signal at start. */
static int
on_ignored(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct wk *wk = arg;
	struct signalfd_siginfo si;

	(void)s;
	(void)revents;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		log_debug("worker %u: %s from pid %u: ignored", wk->index,
		    strsignal((int)si.ssi_signo), si.ssi_pid);
	return 0;
}

static int
on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *arg)
{
	struct wk *wk = arg;
	struct conn *c;

	(void)s;
	if (wk->stopping)
		return 0;
	log_debug("worker %u: %s: exiting", wk->index,
	    strsignal((int)si->ssi_signo));
	wk->stopping = true;
	if (wk->h == NULL) {
		(void)sd_event_exit(wk->ev, 0);
		return 0;
	}
	/* Read no more; what the handler took is finished and acked. */
	wk->lsrc = sd_event_source_disable_unref(wk->lsrc);
	for (c = wk->conns; c != NULL; c = c->next)
		(void)sd_event_source_set_io_events(c->src, 0);
	handler_drain(wk->h, on_handler_idle);
	return 0;
}

/* Handler options, long only. */
enum {
	OPT_MODE = 256,
	OPT_FRAMING,
	OPT_TIMEOUT,
	OPT_RESTART_MAX,
	OPT_SECRET_FD,
	OPT_MAX_MESSAGE,
	OPT_AUTH_TIMEOUT,
	OPT_POOL,
};

/* A value out of names (NULL ended): its index, or exit 2. */
static int
parse_name(const char *opt, const char *arg, const char *const *names)
{
	int i;

	for (i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], arg) == 0)
			return i;
	fprintf(stderr, "fanout-worker: --%s: \"%s\" is not one of", opt,
	    arg);
	for (i = 0; names[i] != NULL; i++)
		fprintf(stderr, " %s", names[i]);
	fputc('\n', stderr);
	exit(2);
}

static uint32_t
parse_ms(const char *opt, const char *arg)
{
	uint64_t v;

	if (parse_uint(arg, 1, 3600000, &v) < 0) {
		fprintf(stderr, "fanout-worker: --%s: must be between 1 and "
		    "3600000 ms\n", opt);
		exit(2);
	}
	return (uint32_t)v;
}

/*
 * The pool process (--pool FD, proto.h): one worker forked per record, as
 * fanoutd's child.  Returns in each worker with its record in rec; the pool
 * process itself exits here.  Forked before anything is set up (no event
 * loop, no libsodium, no log), so each worker starts as from exec.  A raw
 * clone() leaves glibc's idea of the thread id stale in the child; nothing
 * here uses it (no threads, no raise()): at worst an abort() would end the
 * worker with SIGSEGV rather than SIGABRT.
 */
static void
pool_fork(int fd, struct pool_record *rec)
{
	pid_t parent = getppid(), pid;
	int32_t res;
	off_t off;
	ssize_t n;

	for (off = 0;; off += (off_t)sizeof(*rec)) {
		n = pread(fd, rec, sizeof(*rec), off);
		if (n == 0)
			break;
		if (n != (ssize_t)sizeof(*rec) || rec->port == 0 ||
		    rec->index >= FANOUT_WORKERS_MAX ||
		    memchr(rec->notify, '\0', sizeof(rec->notify)) == NULL) {
			fprintf(stderr, "fanout-worker: --pool: record %lld: "
			    "%s\n", (long long)(off / (off_t)sizeof(*rec)),
			    n == -1 ? strerror(errno) : "malformed");
			_exit(1);
		}
		pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL,
		    NULL, NULL, NULL);
		if (pid == 0) {
			close(fd);
			close(POOL_RESULTS_FD);
			/* As fanoutd's own children: SIGTERM when it dies. */
			if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 ||
			    getppid() != parent)
				_exit(1);
			return;
		}
		res = pid == -1 ? -errno : pid;
		explicit_bzero(rec, sizeof(*rec));
		if (write_all(POOL_RESULTS_FD, &res, sizeof(res)) == -1)
			_exit(1);
	}
	_exit(0);
}

/* A worker forked by the pool shows in ps as if fanoutd had run it: its
 * "--index I --port P" written over "--pool 000...4" (proto.h), which the
 * zeros leave room for; the rest becomes empty arguments. */
static void
pool_retitle(char **argv, uint32_t index, uint16_t port)
{
	char title[64], *start = argv[1];
	size_t room;
	int n;

	if (strcmp(argv[1], "--pool") != 0 ||
	    argv[2] != start + strlen(start) + 1)
		return;
	room = (size_t)(argv[2] + strlen(argv[2]) - start);
	n = snprintf(title, sizeof(title), "--index%c%u%c--port%c%u", '\0',
	    index, '\0', '\0', (unsigned)port);
	if (n < 0 || (size_t)n > room)
		return;
	memcpy(start, title, (size_t)n);
	memset(start + n, '\0', room - (size_t)n);
}

/* The handler's stdin and stderr are dup2'ed onto 0 and 2: those must
 * not be free for a pipe to land on. */
static void
ensure_std_fds(void)
{
	if (std_fds_open() == -1)
		_exit(1);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "index",	required_argument,	NULL, 'i' },
		{ "port",	required_argument,	NULL, 'p' },
		{ "address",	required_argument,	NULL, 'a' },
		{ "verbose",	no_argument,		NULL, 'v' },
		{ "handler-mode", required_argument,	NULL, OPT_MODE },
		{ "handler-framing", required_argument,	NULL, OPT_FRAMING },
		{ "handler-timeout", required_argument,	NULL, OPT_TIMEOUT },
		{ "handler-restart-max", required_argument, NULL,
		    OPT_RESTART_MAX },
		{ "secret-fd",	required_argument,	NULL, OPT_SECRET_FD },
		{ "max-message-bytes", required_argument, NULL,
		    OPT_MAX_MESSAGE },
		{ "auth-timeout", required_argument,	NULL, OPT_AUTH_TIMEOUT },
		{ "pool",	required_argument,	NULL, OPT_POOL },
		{ "help",	no_argument,		NULL, 'h' },
		{ "version",	no_argument,		NULL, 'V' },
		{ NULL,		0,			NULL, 0 }
	};
	static const char *const modes[] = HANDLER_MODE_NAMES;
	static const char *const framings[] = HANDLER_FRAMING_NAMES;
	struct handler_conf hc = {
		.mode = HANDLER_EXEC,
		.framing = FRAMING_LINES,
		.timeout_ms = 10000,
		.restart_max_ms = 30000,
	};
	const char *addr = "127.0.0.1";
	uint64_t index = UINT64_MAX, port = 0, secret_fd = UINT64_MAX;
	uint64_t pool_fd = UINT64_MAX;
	uint64_t max_message = FANOUT_MESSAGE_MAX;
	struct wk wk = { .lfd = -1, .auth_timeout_ms = AUTH_DEADLINE_MS };
	struct pool_record rec;
	char why[160];
	int stray[SIG_STRAY_MAX], ignfd;
	sigset_t ignored;
	int ch, verbose = 0, r;
	bool key_in = false;	/* wk.key holds the link key */

	/* Before the key is in memory: a process of the same uid (a handler
	 * gone bad, anything of _fanout's) must not read it through
	 * /proc/PID/mem or ptrace.  Not dumpable also means no core file
	 * holding it.  Handlers get the flag back: execve resets it. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1) {
		fprintf(stderr, "fanout-worker: cannot make the process "
		    "undumpable: %s\n", strerror(errno));
		return 1;
	}
	while ((ch = getopt_long(argc, argv, "i:p:a:vhV", longopts, NULL))
	    != -1) {
		switch (ch) {
		case 'i':
			if (parse_uint(optarg, 0, FANOUT_WORKERS_MAX - 1,
			    &index) < 0) {
				fprintf(stderr, "fanout-worker: --index: "
				    "must be between 0 and %d\n",
				    FANOUT_WORKERS_MAX - 1);
				return 2;
			}
			break;
		case 'p':
			if (parse_uint(optarg, 1, 65535, &port) < 0) {
				fprintf(stderr, "fanout-worker: --port: "
				    "must be between 1 and 65535\n");
				return 2;
			}
			break;
		case 'a':
			addr = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case OPT_MODE:
			hc.mode = parse_name("handler-mode", optarg, modes);
			break;
		case OPT_FRAMING:
			hc.framing = parse_name("handler-framing", optarg,
			    framings);
			break;
		case OPT_TIMEOUT:
			hc.timeout_ms = parse_ms("handler-timeout", optarg);
			break;
		case OPT_RESTART_MAX:
			hc.restart_max_ms = parse_ms("handler-restart-max",
			    optarg);
			break;
		case OPT_SECRET_FD:
			if (parse_uint(optarg, 3, INT_MAX, &secret_fd) < 0) {
				fprintf(stderr, "fanout-worker: --secret-fd: "
				    "must be a descriptor above 2\n");
				return 2;
			}
			break;
		case OPT_MAX_MESSAGE:
			if (parse_uint(optarg, 1, FANOUT_MESSAGE_MAX,
			    &max_message) < 0) {
				fprintf(stderr, "fanout-worker: "
				    "--max-message-bytes: must be between 1 "
				    "and %d\n", FANOUT_MESSAGE_MAX);
				return 2;
			}
			break;
		case OPT_AUTH_TIMEOUT:
			wk.auth_timeout_ms = parse_ms("auth-timeout", optarg);
			break;
		case OPT_POOL:
			if (parse_uint(optarg, 3, INT_MAX, &pool_fd) < 0) {
				fprintf(stderr, "fanout-worker: --pool: "
				    "must be a descriptor above 2\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout, 0);
		case 'V':
			printf("fanout-worker %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr, 2);
		}
	}
	if (pool_fd != UINT64_MAX) {
		if (index != UINT64_MAX || port != 0 ||
		    secret_fd != UINT64_MAX) {
			fprintf(stderr, "fanout-worker: --pool takes no "
			    "--index, --port or --secret-fd\n");
			usage(stderr, 2);
		}
		/* Returns in each worker, with its own record. */
		pool_fork((int)pool_fd, &rec);
		index = rec.index;
		port = rec.port;
		memcpy(wk.key, rec.key, sizeof(wk.key));
		if (setenv("NOTIFY_SOCKET", rec.notify, 1) == -1)
			_exit(1);
		explicit_bzero(&rec, sizeof(rec));
		key_in = true;
		pool_retitle(argv, (uint32_t)index, (uint16_t)port);
	}
	/* The key first: closed before anything else happens, so that no
	 * handler ever inherits it, whatever comes next. */
	if (!key_in && secret_fd != UINT64_MAX) {
		if ((r = auth_key_read((int)secret_fd, wk.key)) < 0) {
			snprintf(why, sizeof(why), "cannot read the link key "
			    "from descriptor %d: %s", (int)secret_fd,
			    auth_strerror(r));
			fprintf(stderr, "fanout-worker: %s\n", why);
			notify_failure(-r, why);
			return 1;
		}
		key_in = true;
	}
	if (index == UINT64_MAX || port == 0 || !key_in) {
		fprintf(stderr, "fanout-worker: --index, --port and "
		    "--secret-fd are required\n");
		usage(stderr, 2);
	}
	if (optind < argc) {
		/* No PATH search: the program fanout.conf names, exactly. */
		if (argv[optind][0] != '/') {
			fprintf(stderr, "fanout-worker: %s: the handler must "
			    "be an absolute path\n", argv[optind]);
			return 2;
		}
		hc.argv = &argv[optind];
		hc.index = (uint32_t)index;
		hc.port = (uint16_t)port;
	}
	log_init("fanout-worker", verbose);
	wk.index = (uint32_t)index;
	wk.pid = getpid();
	wk.max_message = (uint32_t)max_message;
	if (auth_init() < 0)
		fatalx("worker %u: cannot initialise libsodium", wk.index);

	/* SIGTERM and SIGCHLD (handlers are reaped by sd-event) get a
	 * source each; the rest of what is blocked is read and ignored on
	 * one signalfd (on_ignored). */
	if ((r = sig_setup(&ignored, stray)) < 0)
		fatalx("sigprocmask: %s", strerror(-r));
	sigdelset(&ignored, SIGTERM);
	sigdelset(&ignored, SIGCHLD);
	ensure_std_fds();

	if ((wk.lfd = tcp_listen(addr, (uint16_t)port)) < 0) {
		snprintf(why, sizeof(why), "cannot listen on %s:%u: %s", addr,
		    (unsigned)port, strerror(-wk.lfd));
		log_errx("worker %u: %s", wk.index, why);
		notify_failure(-wk.lfd, why);
		return 1;
	}
	if ((ignfd = signalfd(-1, &ignored, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("worker %u: signalfd", wk.index);
	if ((r = sd_event_new(&wk.ev)) < 0 ||
	    (r = sd_event_add_signal(wk.ev, NULL, SIGTERM, on_signal, &wk)) < 0 ||
	    (r = sd_event_add_io(wk.ev, &wk.ignsrc, ignfd, EPOLLIN, on_ignored,
	    &wk)) < 0 ||
	    (r = sd_event_source_set_io_fd_own(wk.ignsrc, true)) < 0 ||
	    (r = sd_event_add_io(wk.ev, &wk.lsrc, wk.lfd, EPOLLIN, on_accept,
	    &wk)) < 0 ||
	    (r = sd_event_add_defer(wk.ev, &wk.post_src, on_post, &wk)) < 0 ||
	    (r = sd_event_source_set_prepare(wk.lsrc, on_log_flush)) < 0 ||
	    (r = sd_event_source_set_enabled(wk.post_src, SD_EVENT_OFF)) < 0)
		fatalx("worker %u: cannot set up the event loop: %s", wk.index,
		    strerror(-r));
	if (hc.argv != NULL) {
		if ((wk.fails = calloc(FAILS_KEPT, sizeof(*wk.fails))) == NULL)
			fatalx("worker %u: out of memory", wk.index);
		if ((r = handler_new(wk.ev, &hc, on_handler_done, &wk,
		    &wk.h)) < 0)
			fatalx("worker %u: cannot set up the handler: %s",
			    wk.index, strerror(-r));
	}
	/* Only now can fanoutd connect: listen() has succeeded. */
	snprintf(why, sizeof(why), "listening on %s:%u", addr, (unsigned)port);
	notify_ready(why);
	log_debug("worker %u: %s", wk.index, why);

	r = sd_event_loop(wk.ev);
	log_limit_flush(true);

	wk.lsrc = sd_event_source_disable_unref(wk.lsrc);
	close(wk.lfd);
	flush_all(&wk);
	while (wk.conns != NULL)
		conn_close(wk.conns);
	handler_free(wk.h);
	explicit_bzero(wk.key, sizeof(wk.key));
	free(wk.fails);
	wk.post_src = sd_event_source_disable_unref(wk.post_src);
	wk.ignsrc = sd_event_source_disable_unref(wk.ignsrc);
	sd_event_unref(wk.ev);
	return r < 0 ? 1 : 0;
}
