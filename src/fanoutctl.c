/* SPDX-License-Identifier: MIT */
/*
 * fanoutctl: talks to fanoutd over its control socket.  One command table
 * drives dispatch, argument checks and usage.  Every wait has a deadline.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "fanoutctl.h"
#include "frame.h"
#include "payload.h"
#include "sock.h"
#include "util.h"

#define EXIT_ACKED	0	/* every worker acknowledged */
#define EXIT_PARTIAL	1	/* delivered, some worker did not ack or
				 * its handler failed */
#define EXIT_USAGE	2
#define EXIT_FAILURE3	3	/* daemon unreachable or refused */

#define TIMEOUT_DEFAULT_MS	10000
#define REPLY_GRACE_MS		2000	/* beyond the ack timeout */
#define WINDOW_DEFAULT		32	/* send -: requests in flight */
#define WINDOW_MAX		1024

#define LARGER(a, b)		((a) > (b) ? (a) : (b))
/* Longest reply frame: a worker record with the longest reason, an end
 * record, or a daemon record with the longest version string. */
#define REPLY_PAYLOAD_MAX	LARGER(LARGER(CTL_WORKER_LEN + \
				    FANOUT_REASON_MAX, CTL_END_LEN), \
				    CTL_DAEMON_LEN + FANOUT_VERSION_MAX)

struct ctl {
	const char	*path;
	uint32_t	 timeout_ms;
	uint32_t	 send_flags;	/* CTL_SEND_WAIT, CTL_SEND_BRIEF */
	uint32_t	 window;	/* send -: requests in flight */
	bool		 stats;		/* send -: a summary on stderr */
	bool		 json;
	int		 fd;
	struct rbuf	 in;
};

static int	cmd_send(struct ctl *, int, char **);
static int	cmd_status(struct ctl *, int, char **);

/* send's own options, after the command name; "--" ends them. */
static const struct option send_opts[] = {
	{ "wait",	no_argument,		NULL, 'w' },
	{ "window",	required_argument,	NULL, 'W' },
	{ "stats",	no_argument,		NULL, 'S' },
	{ NULL,		0,			NULL, 0 }
};

/*
 * A command may have several rows, one per argument shape; rows of one
 * name share its options, which cmd_options() parses before the
 * arguments are counted.
 */
static const struct cmd {
	const char	*name;
	const char	*optstring;	/* getopt letters, or NULL: none */
	const struct option *longopts;
	int		 min_args, max_args;
	int		(*run)(struct ctl *, int, char **);
	const char	*args;
	const char	*help;
} cmds[] = {
	{ "send", "+w", send_opts, 1, -1, cmd_send, "[-w] MESSAGE...",
	    "broadcast MESSAGE (arguments joined by spaces); report the acks" },
	{ "send", "+w", send_opts, 1, 1, cmd_send,
	    "[-w] [--window N] [--stats] -",
	    "broadcast each line of standard input as a message" },
	{ "status", NULL, NULL, 0, 0, cmd_status, "",
	    "show fanoutd and each worker's state, queue and restarts" },
	{ NULL, NULL, NULL, 0, 0, NULL, NULL, NULL }
};

/* "send [-w] -": a row of the table as usage shows it. */
static const char *
cmd_synopsis(const struct cmd *c)
{
	static char buf[80];

	snprintf(buf, sizeof(buf), "%s%s%s", c->name, c->args[0] ? " " : "",
	    c->args);
	return buf;
}

static void __attribute__((noreturn))
usage(FILE *f, int code)
{
	const struct cmd *c;

	fprintf(f,
	    "usage: fanoutctl [-j] [-s SOCKET] [-t TIMEOUT_MS] COMMAND [ARG...]\n"
	    "Broadcast messages through fanoutd and report the workers' "
	    "acknowledgements.\n\n"
	    "  -s, --socket SOCKET    control socket (default $FANOUT_SOCKET, "
	    "else %s)\n"
	    "  -t, --timeout MS       wait at most MS for acks (default %d)\n"
	    "  -j, --json             print one JSON object per reply\n"
	    "  -h, --help             show this help and exit\n"
	    "  -V, --version          show the version and exit\n\n"
	    "commands:\n", FANOUT_SOCKET_DEFAULT, TIMEOUT_DEFAULT_MS);
	for (c = cmds; c->name != NULL; c++)
		if (strlen(cmd_synopsis(c)) > 22)
			fprintf(f, "  %s\n%25s%s\n", cmd_synopsis(c), "",
			    c->help);
		else
			fprintf(f, "  %-22s %s\n", cmd_synopsis(c), c->help);
	fprintf(f, "\nsend options (-- ends them, for a message that starts "
	    "with '-'):\n"
	    "  -w, --wait             wait for every worker's ack until the "
	    "timeout,\n"
	    "                         also of workers that are away\n"
	    "      --window N         send -: messages in flight at once "
	    "(default %d;\n"
	    "                         1 is a closed loop)\n"
	    "      --stats            send -: count, rate and latency "
	    "p50/p99/max on stderr\n", WINDOW_DEFAULT);
	fprintf(f, "\nexit status: 0 all workers acked, 1 some did not "
	    "(queued, full, shutdown)\n"
	    "or their handler failed, 2 usage error, 3 daemon unreachable "
	    "or refused\n");
	exit(code);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fputs("fanoutctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_FAILURE3);
}

static void
ctl_connect(struct ctl *ctl)
{
	unsigned int wait_ms = ctl->timeout_ms + REPLY_GRACE_MS;
	int fd = unix_connect(ctl->path, wait_ms);

	if (fd == -EACCES || fd == -EPERM)
		die("cannot connect to %s: %s (are you in the _fanout group?)",
		    ctl->path, strerror(-fd));
	if (fd == -EAGAIN)
		die("cannot connect to %s: no room after %u ms (fanoutd is "
		    "not accepting connections)", ctl->path, wait_ms);
	if (fd < 0)
		die("cannot connect to %s: %s (is fanoutd running?)",
		    ctl->path, strerror(-fd));
	if (fd_nonblock(fd) < 0)
		die("cannot set up the connection: %s", strerror(errno));
	ctl->fd = fd;
	rbuf_init(&ctl->in, REPLY_PAYLOAD_MAX);
}

static uint64_t
deadline_in(uint32_t ms)
{
	return now_usec() + (uint64_t)ms * 1000;
}

static int
ms_left(uint64_t deadline)
{
	uint64_t now = now_usec();

	return now >= deadline ? 0 : (int)((deadline - now + 999) / 1000);
}

/* Writes wb out, reading replies meanwhile so that neither side blocks;
 * handle() gets each reply frame.  0, 1 as soon as in_fd (if not -1) is
 * readable, or -errno. */
static int
ctl_pump(struct ctl *ctl, struct wbuf *wb, uint64_t deadline, bool want_read,
    int (*handle)(const struct frame_hdr *, const uint8_t *, void *),
    void *arg, int in_fd)
{
	struct frame_hdr h;
	const uint8_t *p;
	struct pollfd pfd[2] = { { .fd = ctl->fd }, { .fd = in_fd } };
	int r, w = 1;
	ssize_t n;

	for (;;) {
		/* Frames already buffered first: they need no poll. */
		while ((r = rbuf_next(&ctl->in, &h, &p)) == 1) {
			if ((r = handle(&h, p, arg)) != 0)
				return r > 0 ? 0 : r;
		}
		if (r < 0)
			return r;	/* a frame error: die_io() tells which */
		if (wb != NULL && (w = wbuf_flush(wb, ctl->fd)) < 0) {
			/* The daemon may have answered before it closed. */
			if (w != -EPIPE && w != -ECONNRESET)
				return w;
			wb = NULL;
		}
		if (!want_read && (wb == NULL || w == 0))
			return 0;
		/* Results seen so far go out before any wait: a stream's
		 * reader sees each one when it is known, not at exit. */
		(void)fflush(stdout);
		pfd[0].events = POLLIN | (wb != NULL && w == 1 ? POLLOUT : 0);
		pfd[1].events = POLLIN;
		if ((r = poll(pfd, in_fd >= 0 ? 2 : 1, ms_left(deadline))) ==
		    -1 && errno != EINTR)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		if (r > 0 && in_fd >= 0 &&
		    (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
			return 1;
		if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = rbuf_read(&ctl->in, ctl->fd);
		if (n == -EAGAIN)
			continue;
		if (n <= 0)
			return n == 0 ? -ECONNRESET : (int)n;
	}
}

static void
reply_reset(struct reply *rp, uint64_t req_id)
{
	rp->req_id = req_id;
	rp->nrec = 0;
	rp->reasons_len = 0;
	rp->has_daemon = false;
	rp->version_len = 0;
	memset(&rp->end, 0, sizeof(rp->end));
	rp->done = false;
}

static void
reply_free(struct reply *rp)
{
	free(rp->rec);
	free(rp->reasons);
}

/* Keeps a worker record's reason, the bytes after the record. */
static void
reply_reason(struct reply *rp, struct worker_rec *r, const uint8_t *p,
    size_t len)
{
	char *nb;

	r->reason_off = (uint32_t)rp->reasons_len;
	r->reason_len = (uint32_t)len;
	if (len == 0)
		return;
	if (rp->reasons_len + len > rp->reasons_cap) {
		rp->reasons_cap = LARGER(rp->reasons_cap * 2,
		    rp->reasons_len + len);
		if ((nb = realloc(rp->reasons, rp->reasons_cap)) == NULL)
			die("out of memory");
		rp->reasons = nb;
	}
	memcpy(rp->reasons + rp->reasons_len, p, len);
	rp->reasons_len += len;
}

/* Records one frame into its reply: 1 once CTL_END closes it. */
static int
reply_add(struct reply *rp, const struct frame_hdr *h, const uint8_t *p)
{
	switch (h->type) {
	case CTL_WORKER:
		/* One record per worker: more is a daemon gone wrong. */
		if (rp->nrec == FANOUT_WORKERS_MAX)
			break;
		if (rp->nrec == rp->caprec) {
			rp->caprec = rp->caprec ? rp->caprec * 2 : 16;
			rp->rec = reallocarray(rp->rec, rp->caprec,
			    sizeof(*rp->rec));
			if (rp->rec == NULL)
				die("out of memory");
		}
		if (ctl_worker_decode(p, h->len, &rp->rec[rp->nrec].w) < 0 ||
		    h->len - CTL_WORKER_LEN > FANOUT_REASON_MAX)
			break;
		reply_reason(rp, &rp->rec[rp->nrec], p + CTL_WORKER_LEN,
		    h->len - CTL_WORKER_LEN);
		rp->nrec++;
		return 0;
	case CTL_DAEMON:
		if (ctl_daemon_decode(p, h->len, &rp->daemon) < 0 ||
		    h->len - CTL_DAEMON_LEN > FANOUT_VERSION_MAX)
			break;
		rp->version_len = h->len - CTL_DAEMON_LEN;
		memcpy(rp->version, p + CTL_DAEMON_LEN, rp->version_len);
		rp->has_daemon = true;
		return 0;
	case CTL_END:
		if (ctl_end_decode(p, h->len, &rp->end) < 0)
			break;
		rp->done = true;
		return 1;
	}
	die("malformed reply from fanoutd (frame type %u, %u bytes)",
	    h->type, h->len);
}

/* A refused request: message and exit status 3. */
static void __attribute__((noreturn))
die_result(const struct reply *rp, size_t msglen)
{
	if (rp->end.result == CTL_RES_TOOBIG)
		die("message of %zu bytes refused: larger than "
		    "max_message_bytes (%u)", msglen, rp->end.limit);
	die("fanoutd refused the request: %s",
	    output_result(rp->end.result));
}

static int
frame_send(struct wbuf *wb, uint64_t req_id, const struct ctl *ctl,
    const char *msg, size_t len)
{
	const struct ctl_send cs = {
		.timeout_ms = ctl->timeout_ms,
		.flags = ctl->send_flags,
	};
	uint8_t *p = malloc(CTL_SEND_LEN + len);
	int r;

	if (p == NULL)
		return -ENOMEM;
	ctl_send_encode(p, &cs);
	memcpy(p + CTL_SEND_LEN, msg, len);
	r = wbuf_frame(wb, CTL_SEND, req_id, p, CTL_SEND_LEN + len);
	free(p);
	return r;
}

static void
die_io(const struct ctl *ctl, int r)
{
	if (r == -ETIMEDOUT)
		die("no reply from fanoutd within %u ms",
		    ctl->timeout_ms + REPLY_GRACE_MS);
	if (r == -ECONNRESET)
		die("fanoutd closed the connection without answering");
	if (r == -EPROTO)
		die("fanoutd speaks another protocol version than fanoutctl "
		    "(%d); was only one of them upgraded?",
		    FANOUT_PROTO_VERSION);
	if (r == -EBADMSG || r == -EMSGSIZE)
		die("malformed reply from fanoutd: %s", frame_strerror(r));
	die("talking to fanoutd: %s", strerror(-r));
}

static int
handle_one(const struct frame_hdr *h, const uint8_t *p, void *arg)
{
	return reply_add(arg, h, p);
}

/* Sends the one request in wb and collects its reply into rp. */
static void
ctl_request(struct ctl *ctl, struct wbuf *wb, struct reply *rp)
{
	int r;

	ctl_connect(ctl);
	reply_reset(rp, 1);
	r = ctl_pump(ctl, wb, deadline_in(ctl->timeout_ms + REPLY_GRACE_MS),
	    true, handle_one, rp, -1);
	wbuf_free(wb);
	if (r < 0 && !rp->done)
		die_io(ctl, r);
}

static int
send_one(struct ctl *ctl, const char *msg, size_t len)
{
	struct reply rp = { 0 };
	struct wbuf wb;
	int r;

	if (len > FANOUT_MESSAGE_MAX)
		die("message of %zu bytes refused: larger than %d bytes, "
		    "the most fanoutd ever takes", len, FANOUT_MESSAGE_MAX);
	wbuf_init(&wb);
	if (frame_send(&wb, 1, ctl, msg, len) < 0)
		die("out of memory");
	ctl_request(ctl, &wb, &rp);
	if (rp.end.result != CTL_RES_OK && rp.end.result != CTL_RES_PARTIAL)
		die_result(&rp, len);
	output_send(&rp, ctl->json);
	r = output_all_acked(&rp) ? EXIT_ACKED : EXIT_PARTIAL;
	reply_free(&rp);
	return r;
}

/* send -: requests pipelined over one connection, results in input order;
 * request id i lives in slot i % window. */
struct stream {
	struct ctl	*ctl;
	uint32_t	 window;
	struct reply	*slot;
	size_t		*lens;
	uint64_t	*sent_usec;
	uint64_t	 next_req;	/* next request id to send */
	uint64_t	 next_out;	/* next request id to print */
	int		 status;
	/* --stats */
	uint32_t	*lat_us;
	size_t		 nlat, caplat;
	uint64_t	 nall, npartial;
};

static void
stream_record(struct stream *st, const struct reply *rp, uint64_t id)
{
	uint64_t us = now_usec() - st->sent_usec[id % st->window];

	if (output_all_acked(rp))
		st->nall++;
	else
		st->npartial++;
	if (!st->ctl->stats)
		return;
	if (st->nlat == st->caplat) {
		st->caplat = st->caplat ? st->caplat * 2 : 1024;
		st->lat_us = reallocarray(st->lat_us, st->caplat,
		    sizeof(*st->lat_us));
		if (st->lat_us == NULL)
			die("out of memory");
	}
	st->lat_us[st->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int
handle_stream(const struct frame_hdr *h, const uint8_t *p, void *arg)
{
	struct stream *st = arg;
	struct reply *rp;

	if (h->id < st->next_out || h->id >= st->next_req)
		die("reply for request %llu, which is not in flight",
		    (unsigned long long)h->id);
	rp = &st->slot[h->id % st->window];
	if (reply_add(rp, h, p) == 1)
		stream_record(st, rp, h->id);
	while (st->next_out < st->next_req &&
	    (rp = &st->slot[st->next_out % st->window])->done) {
		if (rp->end.result != CTL_RES_OK &&
		    rp->end.result != CTL_RES_PARTIAL)
			die_result(rp, st->lens[st->next_out % st->window]);
		output_send_line(rp, st->ctl->json);
		if (!output_all_acked(rp))
			st->status = EXIT_PARTIAL;
		st->next_out++;
	}
	/* Stop pumping as soon as a slot is free for the next line. */
	return st->next_req - st->next_out < st->window ? 1 : 0;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* --stats: what a stream did, on stderr, so that stdout stays results. */
static void
stream_stats(struct stream *st, uint64_t start_usec)
{
	double secs = (double)(now_usec() - start_usec) / 1e6;
	size_t n = st->nlat;

	qsort(st->lat_us, n, sizeof(*st->lat_us), cmp_u32);
	fprintf(stderr, "fanoutctl: %zu messages in %.3f s (%.0f/s), window "
	    "%u: %llu to all workers, %llu partial", n, secs,
	    secs > 0 ? n / secs : 0.0, st->window,
	    (unsigned long long)st->nall, (unsigned long long)st->npartial);
	if (n > 0)
		fprintf(stderr, "; latency p50 %.3f ms, p99 %.3f ms, max "
		    "%.3f ms", st->lat_us[(n - 1) / 2] / 1000.0,
		    st->lat_us[(n - 1) * 99 / 100] / 1000.0,
		    st->lat_us[n - 1] / 1000.0);
	fputc('\n', stderr);
}

/*
 * Standard input as lines, read with read(2) so that poll(2) can tell when
 * more has come: a line is sent as soon as it is complete, whatever the
 * replies are doing (stdio's buffer would hide what it holds).
 */
struct lines {
	int		 fd;
	char		*buf;
	size_t		 off, len, cap;
	bool		 eof;
};

/* One read(2), which blocks only if nothing is there: 0 or -errno. */
static int
lines_fill(struct lines *in)
{
	ssize_t n;
	char *nb;

	if (in->off > 0) {
		memmove(in->buf, in->buf + in->off, in->len - in->off);
		in->len -= in->off;
		in->off = 0;
	}
	if (in->len == in->cap) {
		in->cap = in->cap ? in->cap * 2 : 64 * 1024;
		if ((nb = realloc(in->buf, in->cap)) == NULL)
			return -ENOMEM;
		in->buf = nb;
	}
	while ((n = read(in->fd, in->buf + in->len, in->cap - in->len)) == -1)
		if (errno != EINTR)
			return -errno;
	if (n == 0)
		in->eof = true;
	in->len += (size_t)n;
	return 0;
}

/* 1 and the next line (its newline dropped; the last one may have none),
 * 0 if more input is needed, -1 at the end of input. */
static int
lines_next(struct lines *in, uint64_t lineno, char **line, size_t *len)
{
	size_t avail = in->len - in->off;
	char *s, *nl;

	if (avail == 0)
		return in->eof ? -1 : 0;
	s = in->buf + in->off;
	if ((nl = memchr(s, '\n', avail)) != NULL) {
		*line = s;
		*len = (size_t)(nl - s);
		in->off += *len + 1;
		return 1;
	}
	if (avail > FANOUT_MESSAGE_MAX)
		die("line %llu: message of more than %d bytes refused: larger "
		    "than fanoutd ever takes", (unsigned long long)lineno,
		    FANOUT_MESSAGE_MAX);
	if (!in->eof)
		return 0;
	*line = s;
	*len = avail;
	in->off = in->len;
	return 1;
}

static int
send_stream(struct ctl *ctl)
{
	struct stream st = { .ctl = ctl, .next_req = 1, .next_out = 1,
	    .window = ctl->window };
	struct lines in = { .fd = STDIN_FILENO };
	uint64_t start = now_usec();
	struct wbuf wb;
	size_t len;
	char *line;
	uint32_t i;
	int r, more = 0;

	st.slot = calloc(st.window, sizeof(*st.slot));
	st.lens = calloc(st.window, sizeof(*st.lens));
	st.sent_usec = calloc(st.window, sizeof(*st.sent_usec));
	if (st.slot == NULL || st.lens == NULL || st.sent_usec == NULL)
		die("out of memory");
	/* One line or object per message names only the workers that did
	 * not ack: the others' records need not cross the socket. */
	ctl->send_flags |= CTL_SEND_BRIEF;
	ctl_connect(ctl);
	wbuf_init(&wb);
	for (;;) {
		bool room, busy;

		/* Queue the complete lines while the window has room. */
		while (st.next_req - st.next_out < st.window &&
		    (more = lines_next(&in, st.next_req, &line, &len)) == 1) {
			reply_reset(&st.slot[st.next_req % st.window],
			    st.next_req);
			st.lens[st.next_req % st.window] = len;
			st.sent_usec[st.next_req % st.window] = now_usec();
			if (frame_send(&wb, st.next_req, ctl, line, len) < 0)
				die("out of memory");
			st.next_req++;
		}
		room = st.next_req - st.next_out < st.window;
		busy = st.next_out < st.next_req || wbuf_pending(&wb) > 0;
		if (more < 0 && !busy)
			break;
		if (!busy) {
			/* Nothing in flight: wait for input as long as it
			 * takes to come. */
			(void)fflush(stdout);
			if ((r = lines_fill(&in)) < 0)
				die("reading standard input: %s", strerror(-r));
			continue;
		}
		r = ctl_pump(ctl, &wb, deadline_in(ctl->timeout_ms +
		    REPLY_GRACE_MS), st.next_out < st.next_req, handle_stream,
		    &st, room && more == 0 ? in.fd : -1);
		if (r < 0)
			die_io(ctl, r);
		if (r == 1 && (r = lines_fill(&in)) < 0)
			die("reading standard input: %s", strerror(-r));
	}
	if (ctl->stats)
		stream_stats(&st, start);
	free(in.buf);
	wbuf_free(&wb);
	for (i = 0; i < st.window; i++)
		reply_free(&st.slot[i]);
	free(st.slot);
	free(st.lens);
	free(st.sent_usec);
	free(st.lat_us);
	return st.status;
}

static int
cmd_send(struct ctl *ctl, int argc, char **argv)
{
	size_t len = 0, off = 0;
	char *msg;
	int i, r;

	if (argc == 1 && strcmp(argv[0], "-") == 0)
		return send_stream(ctl);
	if (ctl->stats || ctl->window != WINDOW_DEFAULT) {
		fprintf(stderr, "fanoutctl: send: --window and --stats go with "
		    "send - (a stream of messages)\n");
		usage(stderr, EXIT_USAGE);
	}
	for (i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	if ((msg = malloc(len)) == NULL)
		die("out of memory");
	for (i = 0; i < argc; i++) {
		size_t l = strlen(argv[i]);

		memcpy(msg + off, argv[i], l);
		off += l;
		msg[off++] = ' ';
	}
	r = send_one(ctl, msg, off - 1);
	free(msg);
	return r;
}

static int
cmd_status(struct ctl *ctl, int argc, char **argv)
{
	struct reply rp = { 0 };
	struct wbuf wb;

	(void)argc;
	(void)argv;
	wbuf_init(&wb);
	if (wbuf_frame(&wb, CTL_STATUS, 1, NULL, 0) < 0)
		die("out of memory");
	ctl_request(ctl, &wb, &rp);
	if (rp.end.result != CTL_RES_OK)
		die_result(&rp, 0);
	output_status(&rp, ctl->json);
	reply_free(&rp);
	return EXIT_ACKED;
}

/*
 * Parses the options of command c; argv[0] is its name.  Returns the index
 * of its first argument.
 */
static int
cmd_options(struct ctl *ctl, const struct cmd *c, int argc, char **argv)
{
	uint64_t v;
	int ch;

	if (c->optstring == NULL)
		return 1;
	optind = 0;	/* glibc: start afresh with new option tables */
	opterr = 0;	/* our message names the command */
	while ((ch = getopt_long(argc, argv, c->optstring, c->longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'w':
			ctl->send_flags |= CTL_SEND_WAIT;
			break;
		case 'W':
			if (parse_uint(optarg, 1, WINDOW_MAX, &v) < 0) {
				fprintf(stderr, "fanoutctl: send: --window: "
				    "must be between 1 and %d\n", WINDOW_MAX);
				exit(EXIT_USAGE);
			}
			ctl->window = (uint32_t)v;
			break;
		case 'S':
			ctl->stats = true;
			break;
		default:
			if (optopt != 0)
				fprintf(stderr, "fanoutctl: %s: unknown option "
				    "-%c", c->name, optopt);
			else
				fprintf(stderr, "fanoutctl: %s: unknown option "
				    "%s", c->name, argv[optind - 1]);
			fprintf(stderr, " (put -- before an argument that "
			    "starts with '-')\n");
			usage(stderr, EXIT_USAGE);
		}
	}
	return optind;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "socket",	required_argument,	NULL, 's' },
		{ "timeout",	required_argument,	NULL, 't' },
		{ "json",	no_argument,		NULL, 'j' },
		{ "help",	no_argument,		NULL, 'h' },
		{ "version",	no_argument,		NULL, 'V' },
		{ NULL,		0,			NULL, 0 }
	};
	struct ctl ctl = { .timeout_ms = TIMEOUT_DEFAULT_MS, .fd = -1,
	    .window = WINDOW_DEFAULT };
	const struct cmd *c;
	const char *name;
	uint64_t v;
	int ch, first, nargs = 0, r;

	ctl.path = getenv("FANOUT_SOCKET");
	if (ctl.path == NULL || ctl.path[0] == '\0')
		ctl.path = FANOUT_SOCKET_DEFAULT;
	/* '+': options end at the command, so messages may start with '-'. */
	while ((ch = getopt_long(argc, argv, "+s:t:jhV", longopts, NULL))
	    != -1) {
		switch (ch) {
		case 's':
			ctl.path = optarg;
			break;
		case 't':
			if (parse_uint(optarg, 1, 3600000, &v) < 0) {
				fprintf(stderr, "fanoutctl: -t: timeout must be "
				    "between 1 and 3600000 ms\n");
				return EXIT_USAGE;
			}
			ctl.timeout_ms = (uint32_t)v;
			break;
		case 'j':
			ctl.json = true;
			break;
		case 'h':
			usage(stdout, 0);
		case 'V':
			printf("fanoutctl %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr, EXIT_USAGE);
		}
	}
	if (optind == argc) {
		fprintf(stderr, "fanoutctl: missing command\n");
		usage(stderr, EXIT_USAGE);
	}
	/* cmd_options() reuses getopt: optind is its own from here on. */
	first = optind;
	name = argv[first];
	for (c = cmds; c->name != NULL; c++)
		if (strcmp(c->name, name) == 0)
			break;
	if (c->name != NULL) {
		first += cmd_options(&ctl, c, argc - first, argv + first);
		nargs = argc - first;
	}
	for (; c->name != NULL; c++)
		if (strcmp(c->name, name) == 0 && nargs >= c->min_args &&
		    (c->max_args < 0 || nargs <= c->max_args))
			break;
	if (c->name == NULL) {
		fprintf(stderr, "fanoutctl: %s: unknown command or wrong "
		    "number of arguments\n", name);
		usage(stderr, EXIT_USAGE);
	}
	signal(SIGPIPE, SIG_IGN);
	r = c->run(&ctl, nargs, argv + first);
	rbuf_free(&ctl.in);
	if (ctl.fd >= 0)
		close(ctl.fd);
	if (fflush(stdout) == EOF)
		die("writing output: %s", strerror(errno));
	return r;
}
