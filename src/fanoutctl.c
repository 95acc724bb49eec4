/* SPDX-License-Identifier: MIT */
/*
 * fanoutctl: talks to fanoutd over its control socket.  One command table
 * drives dispatch, argument checks and usage.  Every wait has a deadline.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
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
#define EXIT_OUTPUT	4	/* standard output closed (EPIPE): send -
				 * stopped reading its input there */

#define TIMEOUT_DEFAULT_MS	10000
/* A reload waits for workers to drain, stop and start: longer. */
#define RELOAD_TIMEOUT_DEFAULT_MS	300000
#define REPLY_GRACE_MS		2000	/* beyond the ack timeout */
#define WINDOW_DEFAULT		32	/* send -: requests in flight */
#define WINDOW_MAX		1024
#define PROGRESS_AFTER_US	1000000	/* send -: a progress line on a tty
					 * once a stream lasts this long */
#define PROGRESS_EVERY_US	200000	/* and then at most this often */

#define LARGER(a, b)		((a) > (b) ? (a) : (b))
/* Longest reply frame: a worker record with the longest reason, an end
 * record, a daemon record with the longest version string, or a
 * histogram. */
#define REPLY_PAYLOAD_MAX	LARGER(LARGER(LARGER(CTL_WORKER_LEN + \
				    FANOUT_NAME_MAX + FANOUT_REASON_MAX, \
				    CTL_END_LEN), \
				    CTL_DAEMON_LEN + FANOUT_VERSION_MAX), \
				    CTL_HIST_LEN + CTL_HIST_TAIL_LEN)

struct ctl {
	const char	*path;
	uint32_t	 timeout_ms;
	bool		 timeout_set;	/* -t given */
	uint32_t	 send_flags;	/* CTL_SEND_WAIT, CTL_SEND_BRIEF */
	uint32_t	 window;	/* send -: requests in flight */
	bool		 stats;		/* send -: latency in the summary */
	bool		 quiet;		/* send -: print failures only */
	bool		 json;
	bool		 prometheus;	/* stats: the Prometheus text format */
	bool		 sending;	/* a send may be in the daemon's hands */
	struct check_limits check;
	int		 fd;
	struct rbuf	 in;
};

static int	cmd_send(struct ctl *, int, char **);
static int	cmd_status(struct ctl *, int, char **);
static int	cmd_stats(struct ctl *, int, char **);
static int	cmd_check(struct ctl *, int, char **);
static int	cmd_reload(struct ctl *, int, char **);
static int	cmd_queue(struct ctl *, int, char **);
struct cmd;
static void	send_option(struct ctl *, const struct cmd *, int);
static void	check_option(struct ctl *, const struct cmd *, int);
static void	stats_option(struct ctl *, const struct cmd *, int);

/* check fails as monitoring plugins do: "UNKNOWN: why" on standard
 * output, exit 3 (die()'s status anyway). */
static bool	die_unknown;
/* send -: a stream that die() ends, to print its summary after why. */
struct stream;
static struct stream *die_stream;
static void	progress_clear(struct stream *);
static void	stream_summary(struct stream *);

/* The options before the command. */
#define MAIN_OPTSTRING	"+s:t:jhV"
enum { OPT_LIST_COMMANDS = 256, OPT_LIST_OPTIONS };
static const struct option main_opts[] = {
	{ "socket",	required_argument,	NULL, 's' },
	{ "timeout",	required_argument,	NULL, 't' },
	{ "json",	no_argument,		NULL, 'j' },
	{ "help",	no_argument,		NULL, 'h' },
	{ "version",	no_argument,		NULL, 'V' },
	/* hidden, for shell completion: the command table's words */
	{ "list-commands", no_argument,		NULL, OPT_LIST_COMMANDS },
	{ "list-options", optional_argument,	NULL, OPT_LIST_OPTIONS },
	{ NULL,		0,			NULL, 0 }
};

/* send's own options, after the command name; "--" ends them. */
static const struct option send_opts[] = {
	{ "wait",	no_argument,		NULL, 'w' },
	{ "window",	required_argument,	NULL, 'W' },
	{ "stats",	no_argument,		NULL, 'S' },
	{ "quiet",	no_argument,		NULL, 'q' },
	{ NULL,		0,			NULL, 0 }
};

static const struct option stats_opts[] = {
	{ "prometheus",	no_argument,		NULL, 'P' },
	{ NULL,		0,			NULL, 0 }
};

enum { OPT_WARN_QUEUED = 256, OPT_CRIT_QUEUED };
static const struct option check_opts[] = {
	{ "warn-down",	required_argument,	NULL, 'w' },
	{ "crit-down",	required_argument,	NULL, 'c' },
	{ "warn-queued", required_argument,	NULL, OPT_WARN_QUEUED },
	{ "crit-queued", required_argument,	NULL, OPT_CRIT_QUEUED },
	{ NULL,		0,			NULL, 0 }
};

/*
 * A command may have several rows, one per argument shape; rows of one
 * name share its options, which cmd_options() parses before the
 * arguments are counted, handing each to the row's opt().  Shell
 * completion takes its words from here too (--list-commands,
 * --list-options=COMMAND).
 */
static const struct cmd {
	const char	*name;
	const char	*optstring;	/* getopt letters, or NULL: none */
	const struct option *longopts;
	int		 min_args, max_args;
	int		(*run)(struct ctl *, int, char **);
	const char	*args;
	const char	*help;
	/* one option: its getopt value, optarg set */
	void		(*opt)(struct ctl *, const struct cmd *, int);
} cmds[] = {
	{ "send", "+:wq", send_opts, 1, -1, cmd_send, "[-w] MESSAGE...",
	    "broadcast MESSAGE (arguments joined by spaces); report the acks",
	    send_option },
	{ "send", "+:wq", send_opts, 1, 1, cmd_send,
	    "[-qw] [--window N] [--stats] -",
	    "broadcast each line of standard input as a message",
	    send_option },
	{ "status", NULL, NULL, 0, 0, cmd_status, "",
	    "show fanoutd and each worker's state, queue and restarts",
	    NULL },
	{ "check", "+:w:c:", check_opts, 0, 0, cmd_check,
	    "[-w N] [-c N] [--warn-queued N] [--crit-queued N]",
	    "a monitoring plugin: one line, exit 0 OK to 3 UNKNOWN",
	    check_option },
	{ "stats", "+:", stats_opts, 0, 0, cmd_stats, "[--prometheus]",
	    "counters and ack round trips of each worker, also in the "
	    "Prometheus format", stats_option },
	{ "reload", NULL, NULL, 0, 0, cmd_reload, "",
	    "reread the configuration file, apply it, report each change",
	    NULL },
	{ "queue", NULL, NULL, 0, 0, cmd_queue, "",
	    "what is queued for each worker, in memory and in the spool",
	    NULL },
	{ "queue", NULL, NULL, 2, 2, cmd_queue, "drop WORKER",
	    "drop what is queued for WORKER and not yet written to it",
	    NULL },
	{ NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL }
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
	    "      --stats            send -: add latency p50/p99/max to "
	    "the summary\n"
	    "  -q, --quiet            send -: print only the messages not "
	    "acked by every\n"
	    "                         worker (the summary on stderr "
	    "stays)\n", WINDOW_DEFAULT);
	fprintf(f, "\ncheck options (N: a count; WARNING or CRITICAL from N "
	    "on):\n"
	    "  -w, --warn-down N      workers not up (default 1)\n"
	    "  -c, --crit-down N      workers not up (default: all of "
	    "them)\n"
	    "      --warn-queued N    messages queued, over all workers "
	    "(default: none)\n"
	    "      --crit-queued N    the same, CRITICAL (default: none)\n");
	fprintf(f, "\nexit status: 0 all workers acked, 1 some did not "
	    "(queued, full, shutdown)\n"
	    "or their handler failed, 2 usage error, 3 daemon unreachable "
	    "or refused,\n"
	    "4 standard output closed (send - stops early); check: 0 OK, "
	    "1 WARNING,\n2 CRITICAL, 3 UNKNOWN\n");
	exit(code);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	FILE *f = die_unknown ? stdout : stderr;
	struct stream *st = die_stream;
	va_list ap;

	die_stream = NULL;
	if (st != NULL)
		progress_clear(st);
	fputs(die_unknown ? "UNKNOWN: " : "fanoutctl: ", f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	if (st != NULL)
		stream_summary(st);
	exit(EXIT_FAILURE3);
}

/*
 * Standard output's reader may go away ("| head -1"): SIGPIPE is ignored,
 * so writes fail with EPIPE, and out_closed says so; send - then reads no
 * more input.  Any other write error is fatal.
 */
static bool	out_closed;
static bool	stdin_closed;	/* at start: /dev/null stands in for it */

/*
 * Descriptors 0, 1 and 2 open before anything else is: otherwise the
 * control socket could become standard output, and output meant for the
 * user would go to the daemon as requests.  A closed one gets /dev/null;
 * a closed standard output then counts as closed from the start (exit 4,
 * send - sends nothing), a closed standard input as unreadable.
 */
static void
std_fds(void)
{
	int closed = std_fds_open();

	if (closed == -1)
		_exit(EXIT_FAILURE3);	/* no stderr to say so */
	stdin_closed = (closed & 1 << STDIN_FILENO) != 0;
	out_closed = (closed & 1 << STDOUT_FILENO) != 0;
}

static void
out_flush(void)
{
	if (out_closed)
		return;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return;
	if (errno != EPIPE)
		die("writing output: %s", strerror(errno));
	out_closed = true;
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
		out_flush();
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
	while (rp->nchanges > 0)
		free(rp->changes[--rp->nchanges].text);
	rp->reasons_len = 0;
	rp->has_daemon = false;
	rp->version_len = 0;
	memset(&rp->end, 0, sizeof(rp->end));
	rp->done = false;
}

/* base, with room for element n (of size bytes) and the ones before it:
 * the arrays of a reply grow by doubling. */
static void *
reply_room(void *base, uint32_t n, uint32_t *cap, size_t size)
{
	if (n < *cap)
		return base;
	*cap = *cap ? *cap * 2 : 16;
	if ((base = reallocarray(base, *cap, size)) == NULL)
		die("out of memory");
	return base;
}

static void
reply_free(struct reply *rp)
{
	uint32_t i;

	for (i = 0; i < rp->nchanges; i++)
		free(rp->changes[i].text);
	free(rp->changes);
	free(rp->qstats);
	free(rp->rec);
	free(rp->reasons);
	free(rp->hist);
}

/* A CTL_HIST record: it belongs to the worker record just before it. */
static int
reply_hist(struct reply *rp, const struct frame_hdr *h, const uint8_t *p)
{
	struct hist_rec *hr;
	unsigned i;

	if (h->len != CTL_HIST_LEN + CTL_HIST_TAIL_LEN ||
	    rp->nhist + 1 != rp->nrec)
		return -1;
	rp->hist = reply_room(rp->hist, rp->nhist, &rp->caphist,
	    sizeof(*rp->hist));
	hr = &rp->hist[rp->nhist];
	if (ctl_hist_decode(p, h->len, &hr->h) < 0 ||
	    hr->h.index != rp->rec[rp->nrec - 1].w.index)
		return -1;
	for (i = 0; i < FANOUT_HIST_BUCKETS; i++)
		hr->bucket[i] = get_u64(p + CTL_HIST_LEN + 8 * i);
	rp->nhist++;
	return 0;
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

/* A CTL_CHANGE record and its text; a few dozen per reload at most. */
static int
reply_change(struct reply *rp, const struct frame_hdr *h, const uint8_t *p)
{
	struct change_rec *cr;
	size_t len;

	if (h->len < CTL_CHANGE_LEN ||
	    h->len - CTL_CHANGE_LEN > FANOUT_CHANGE_TEXT_MAX ||
	    rp->nchanges >= 4 * FANOUT_WORKERS_MAX)
		return -1;
	rp->changes = reply_room(rp->changes, rp->nchanges, &rp->capchanges,
	    sizeof(*rp->changes));
	cr = &rp->changes[rp->nchanges];
	if (ctl_change_decode(p, h->len, &cr->c) < 0)
		return -1;
	len = h->len - CTL_CHANGE_LEN;
	if ((cr->text = malloc(len + 1)) == NULL)
		die("out of memory");
	memcpy(cr->text, p + CTL_CHANGE_LEN, len);
	cr->text[len] = '\0';
	cr->len = len;
	rp->nchanges++;
	return 0;
}

/* Records one frame into its reply: 1 once CTL_END closes it. */
/* A CTL_WORKER record: the name of a remote worker (letters, digits, '-'
 * and '_' only: it goes on a terminal) and the reason.  0, or -1. */
static int
reply_worker(struct reply *rp, struct worker_rec *r, const struct frame_hdr *h,
    const uint8_t *p)
{
	size_t tail, i;

	if (ctl_worker_decode(p, h->len, &r->w) < 0)
		return -1;
	tail = h->len - CTL_WORKER_LEN;
	if (r->w.name_len > FANOUT_NAME_MAX || r->w.name_len > tail ||
	    tail - r->w.name_len > FANOUT_REASON_MAX)
		return -1;
	for (i = 0; i < r->w.name_len; i++) {
		uint8_t ch = p[CTL_WORKER_LEN + i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return -1;
		r->name[i] = (char)ch;
	}
	r->name[i] = '\0';
	reply_reason(rp, r, p + CTL_WORKER_LEN + r->w.name_len,
	    tail - r->w.name_len);
	return 0;
}

static int
reply_add(struct reply *rp, const struct frame_hdr *h, const uint8_t *p)
{
	switch (h->type) {
	case CTL_WORKER:
		/* One record per worker (remote ones, and unlisted names
		 * in the broker, too): more is a daemon gone wrong. */
		if (rp->nrec == FANOUT_WORKERS_MAX + 2 * FANOUT_REMOTE_MAX)
			break;
		rp->rec = reply_room(rp->rec, rp->nrec, &rp->caprec,
		    sizeof(*rp->rec));
		if (reply_worker(rp, &rp->rec[rp->nrec], h, p) < 0)
			break;
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
	case CTL_HIST:
		if (reply_hist(rp, h, p) < 0)
			break;
		return 0;
	case CTL_CHANGE:
		if (reply_change(rp, h, p) < 0)
			break;
		return 0;
	case CTL_QSTAT:
		if (rp->nqstats == FANOUT_WORKERS_MAX * 2)
			break;
		rp->qstats = reply_room(rp->qstats, rp->nqstats,
		    &rp->capqstats, sizeof(*rp->qstats));
		if (ctl_qstat_decode(p, h->len, &rp->qstats[rp->nqstats]) < 0)
			break;
		rp->nqstats++;
		return 0;
	case CTL_END:
		if (ctl_end_decode(p, h->len, &rp->end) < 0)
			break;
		rp->done = true;
		return 1;
	}
	die("malformed reply from fanoutd (frame type %u, %u byte%s)",
	    h->type, h->len, PLURAL(h->len));
}

/* A refused request: message and exit status 3. */
static void __attribute__((noreturn))
die_result(const struct reply *rp, size_t msglen)
{
	if (rp->end.result == CTL_RES_TOOBIG)
		die("message of %zu byte%s refused: larger than "
		    "max_message_bytes (%u)", msglen, PLURAL(msglen),
		    rp->end.limit);
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
	/* A send fanoutd may have accepted, queued and spooled: saying it
	 * failed would be as wrong as saying it went. */
	if (r == -ETIMEDOUT && ctl->sending)
		die("no reply from fanoutd within %u ms: outcome unknown (the "
		    "message may have been accepted; fanoutctl status and the "
		    "journal tell more)", ctl->timeout_ms + REPLY_GRACE_MS);
	if (r == -ETIMEDOUT)
		die("no reply from fanoutd within %u ms",
		    ctl->timeout_ms + REPLY_GRACE_MS);
	if (r == -ECONNRESET && ctl->sending)
		die("fanoutd closed the connection before answering: outcome "
		    "unknown (the message may have been accepted and queued; "
		    "was fanoutd stopped or did it crash?)");
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
	ctl->sending = true;
	ctl_request(ctl, &wb, &rp);
	ctl->sending = false;
	if (rp.end.result != CTL_RES_OK && rp.end.result != CTL_RES_PARTIAL)
		die_result(&rp, len);
	output_send(&rp, ctl->json);
	r = output_all_acked(&rp) ? EXIT_ACKED : EXIT_PARTIAL;
	reply_free(&rp);
	return r;
}

/* send -: requests pipelined over one connection, results in input order;
 * request id i lives in slot i % window, and is input line i. */
struct stream {
	struct ctl	*ctl;
	uint32_t	 window;
	struct reply	*slot;
	size_t		*lens;
	uint64_t	*sent_usec;
	uint64_t	 next_req;	/* next request id to send */
	uint64_t	 next_out;	/* next request id to print */
	uint64_t	 start_usec;
	uint64_t	 nall, npartial, nrefused;
	/* --stats */
	uint32_t	*lat_us;
	size_t		 nlat, caplat;
	/* the progress line, on a terminal */
	bool		 progress;	/* stderr is a terminal */
	bool		 out_tty;	/* so is stdout: clear before a result */
	int		 shown;		/* length of the line on screen, or 0 */
	uint64_t	 drawn_usec;	/* when it was drawn */
};

/* --stats: the round trip of request id, as its reply completes. */
static void
stream_latency(struct stream *st, uint64_t id)
{
	uint64_t us = now_usec() - st->sent_usec[id % st->window];

	if (st->nlat == st->caplat) {
		st->caplat = st->caplat ? st->caplat * 2 : 1024;
		st->lat_us = reallocarray(st->lat_us, st->caplat,
		    sizeof(*st->lat_us));
		if (st->lat_us == NULL)
			die("out of memory");
	}
	st->lat_us[st->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void
progress_clear(struct stream *st)
{
	if (st->shown > 0)
		fprintf(stderr, "\r%*s\r", st->shown, "");
	st->shown = 0;
}

/* On a terminal, once the stream has lasted a second: where it is, on one
 * line of stderr redrawn in place. */
static void
progress_draw(struct stream *st)
{
	uint64_t now, done;
	double secs;
	int n;

	if (!st->progress)
		return;
	now = now_usec();
	if (now - st->start_usec < PROGRESS_AFTER_US ||
	    now - st->drawn_usec < PROGRESS_EVERY_US)
		return;
	done = st->nall + st->npartial + st->nrefused;
	secs = (double)(now - st->start_usec) / 1e6;
	/* Short enough for 80 columns: a wrapped line is not redrawn. */
	n = fprintf(stderr, "\r%" PRIu64 " message%s (%" PRIu64 " partial, %"
	    PRIu64 " refused), %" PRIu64 " in flight, %.0f msg/s", done,
	    PLURAL(done), st->npartial, st->nrefused,
	    st->next_req - st->next_out, (double)done / secs) - 1;
	if (n < st->shown)	/* (the \r takes no room) */
		fprintf(stderr, "%*s", st->shown - n, "");
	else
		st->shown = n;
	st->drawn_usec = now;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The end of a stream, on stderr so that stdout stays results:
 * "fanoutctl: 10000 messages: 9998 to all workers, 2 partial, 0 refused
 * (51234 msg/s)"; --stats adds time, window and latency.
 */
static void
stream_summary(struct stream *st)
{
	double secs = (double)(now_usec() - st->start_usec) / 1e6;
	uint64_t n = st->nall + st->npartial + st->nrefused;
	size_t nl = st->nlat;

	progress_clear(st);
	fprintf(stderr, "fanoutctl: %" PRIu64 " message%s: %" PRIu64 " to all "
	    "workers, %" PRIu64 " partial, %" PRIu64 " refused (%.0f msg/s)",
	    n, PLURAL(n), st->nall, st->npartial, st->nrefused,
	    secs > 0 ? (double)n / secs : 0.0);
	if (st->ctl->stats) {
		fprintf(stderr, "; %.3f s, window %u", secs, st->window);
		qsort(st->lat_us, nl, sizeof(*st->lat_us), cmp_u32);
		if (nl > 0)
			fprintf(stderr, "; latency p50 %.3f ms, p99 %.3f ms, "
			    "max %.3f ms", st->lat_us[(nl - 1) / 2] / 1000.0,
			    st->lat_us[(nl - 1) * 99 / 100] / 1000.0,
			    st->lat_us[nl - 1] / 1000.0);
	}
	if (out_closed)
		fputs("; standard output closed: stopped reading input",
		    stderr);
	fputc('\n', stderr);
}

/* The next result in input order: counted, and printed unless -q and
 * every worker acked it.  A refusal ends the stream, as fanoutd closes
 * the connection after it (exit 3, the summary after the reason). */
static void
stream_result(struct stream *st, const struct reply *rp)
{
	size_t len = st->lens[rp->req_id % st->window];
	bool all;

	if (rp->end.result == CTL_RES_TOOBIG) {
		st->nrefused++;
		die("line %" PRIu64 ": message of %zu byte%s refused: larger "
		    "than max_message_bytes (%u)", rp->req_id, len,
		    PLURAL(len), rp->end.limit);
	}
	if (rp->end.result != CTL_RES_OK && rp->end.result != CTL_RES_PARTIAL)
		die("line %" PRIu64 ": fanoutd refused the request: %s",
		    rp->req_id, output_result(rp->end.result));
	if ((all = output_all_acked(rp)))
		st->nall++;
	else
		st->npartial++;
	if (out_closed || (all && st->ctl->quiet))
		return;
	if (st->out_tty)
		progress_clear(st);
	output_send_line(rp, st->ctl->json);
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
	if (reply_add(rp, h, p) == 1 && st->ctl->stats)
		stream_latency(st, h->id);
	while (st->next_out < st->next_req &&
	    (rp = &st->slot[st->next_out % st->window])->done) {
		stream_result(st, rp);
		st->next_out++;
	}
	/* Stop pumping as soon as a slot is free for the next line. */
	return st->next_req - st->next_out < st->window ? 1 : 0;
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
	/* Never more than the longest line fanoutd could take, and its
	 * newline: lines_next refuses a line before it needs more room. */
	if (in->len == in->cap) {
		size_t cap = in->cap ? in->cap * 2 : 64 * 1024;

		if (cap > (size_t)FANOUT_MESSAGE_MAX + 1)
			cap = (size_t)FANOUT_MESSAGE_MAX + 1;
		if (cap <= in->len || (nb = realloc(in->buf, cap)) == NULL)
			return -ENOMEM;
		in->buf = nb;
		in->cap = cap;
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
	    .window = ctl->window, .start_usec = now_usec(),
	    .progress = isatty(STDERR_FILENO) == 1,
	    .out_tty = isatty(STDOUT_FILENO) == 1 };
	struct lines in = { .fd = STDIN_FILENO };
	struct wbuf wb;
	size_t len;
	char *line;
	uint32_t i;
	int r, more = 0;

	/* A closed stdin reads as /dev/null (std_fds): an empty stream,
	 * which would be a success with nothing sent. */
	if (stdin_closed)
		die("reading standard input: it is closed");
	st.slot = calloc(st.window, sizeof(*st.slot));
	st.lens = calloc(st.window, sizeof(*st.lens));
	st.sent_usec = calloc(st.window, sizeof(*st.sent_usec));
	if (st.slot == NULL || st.lens == NULL || st.sent_usec == NULL)
		die("out of memory");
	/* One line or object per message names only the workers that did
	 * not ack: the others' records need not cross the socket. */
	ctl->send_flags |= CTL_SEND_BRIEF;
	ctl->sending = true;
	ctl_connect(ctl);
	wbuf_init(&wb);
	die_stream = &st;
	for (;;) {
		bool room, busy;

		/* Queue the complete lines while the window has room. */
		while (!out_closed && st.next_req - st.next_out < st.window &&
		    (more = lines_next(&in, st.next_req, &line, &len)) == 1) {
			reply_reset(&st.slot[st.next_req % st.window],
			    st.next_req);
			st.lens[st.next_req % st.window] = len;
			st.sent_usec[st.next_req % st.window] = now_usec();
			if (frame_send(&wb, st.next_req, ctl, line, len) < 0)
				die("out of memory");
			st.next_req++;
		}
		/* Nobody reads the results: send no more, but collect the
		 * replies owed, so that the summary is exact. */
		if (out_closed)
			more = -1;
		room = st.next_req - st.next_out < st.window;
		busy = st.next_out < st.next_req || wbuf_pending(&wb) > 0;
		if (more < 0 && !busy)
			break;
		if (!busy) {
			/* Nothing in flight: wait for input as long as it
			 * takes to come. */
			out_flush();
			if (!out_closed && (r = lines_fill(&in)) < 0)
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
		progress_draw(&st);
	}
	die_stream = NULL;
	stream_summary(&st);
	free(in.buf);
	wbuf_free(&wb);
	for (i = 0; i < st.window; i++)
		reply_free(&st.slot[i]);
	free(st.slot);
	free(st.lens);
	free(st.sent_usec);
	free(st.lat_us);
	if (out_closed)
		return EXIT_OUTPUT;
	return st.npartial > 0 ? EXIT_PARTIAL : EXIT_ACKED;
}

static int
cmd_send(struct ctl *ctl, int argc, char **argv)
{
	size_t len = 0, off = 0;
	char *msg;
	int i, r;

	if (argc == 1 && strcmp(argv[0], "-") == 0)
		return send_stream(ctl);
	if (ctl->stats || ctl->quiet || ctl->window != WINDOW_DEFAULT) {
		fprintf(stderr, "fanoutctl: send: --window, --stats and --quiet "
		    "go with send - (a stream of messages)\n");
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

/* A status (or stats) request and its reply. */
static void
status_fetch(struct ctl *ctl, struct reply *rp, uint8_t type)
{
	struct wbuf wb;

	wbuf_init(&wb);
	if (wbuf_frame(&wb, type, 1, NULL, 0) < 0)
		die("out of memory");
	ctl_request(ctl, &wb, rp);
	if (rp->end.result != CTL_RES_OK)
		die_result(rp, 0);
}

static int
cmd_status(struct ctl *ctl, int argc, char **argv)
{
	struct reply rp = { 0 };

	(void)argc;
	(void)argv;
	status_fetch(ctl, &rp, CTL_STATUS);
	output_status(&rp, ctl->json);
	reply_free(&rp);
	return EXIT_ACKED;
}

static int
cmd_stats(struct ctl *ctl, int argc, char **argv)
{
	struct reply rp = { 0 };

	(void)argc;
	(void)argv;
	status_fetch(ctl, &rp, CTL_STATS);
	output_stats(&rp, ctl->prometheus ? STATS_PROMETHEUS :
	    ctl->json ? STATS_JSON : STATS_TEXT);
	reply_free(&rp);
	return EXIT_ACKED;
}

/* Waits for the reload to be done: 0 applied, 1 applied but some worker
 * did not come up, 3 refused (an invalid file changes nothing). */
static int
cmd_reload(struct ctl *ctl, int argc, char **argv)
{
	struct reply rp = { 0 };
	struct wbuf wb;
	int r;

	(void)argc;
	(void)argv;
	if (!ctl->timeout_set)
		ctl->timeout_ms = RELOAD_TIMEOUT_DEFAULT_MS;
	wbuf_init(&wb);
	if (wbuf_frame(&wb, CTL_RELOAD, 1, NULL, 0) < 0)
		die("out of memory");
	ctl_request(ctl, &wb, &rp);
	output_reload(&rp, ctl->json);
	switch (rp.end.result) {
	case CTL_RES_OK:
		r = EXIT_ACKED;
		break;
	case CTL_RES_PARTIAL:
		r = EXIT_PARTIAL;
		break;
	default:
		r = EXIT_FAILURE3;
		break;
	}
	reply_free(&rp);
	return r;
}

/* queue: what waits for each worker; queue drop WORKER: 0 dropped (or
 * nothing to drop), 3 no such worker or refused. */
static int
cmd_queue(struct ctl *ctl, int argc, char **argv)
{
	struct ctl_queue q = { .op = CTL_QUEUE_LIST };
	uint8_t p[CTL_QUEUE_LEN];
	struct reply rp = { 0 };
	struct wbuf wb;
	uint64_t v;
	int r;

	if (argc == 2) {
		if (strcmp(argv[0], "drop") != 0) {
			fprintf(stderr, "fanoutctl: queue %s: unknown; "
			    "\"queue drop WORKER\" drops a queue\n", argv[0]);
			return EXIT_USAGE;
		}
		if (parse_uint(argv[1], 0, UINT32_MAX - 1, &v) < 0) {
			fprintf(stderr, "fanoutctl: queue drop: %s: not a "
			    "worker index\n", argv[1]);
			return EXIT_USAGE;
		}
		q.op = CTL_QUEUE_DROP;
		q.worker = (uint32_t)v;
	}
	ctl_queue_encode(p, &q);
	wbuf_init(&wb);
	if (wbuf_frame(&wb, CTL_QUEUE, 1, p, sizeof(p)) < 0)
		die("out of memory");
	ctl_request(ctl, &wb, &rp);
	if (rp.end.result != CTL_RES_OK)
		die("queue%s: %s", q.op == CTL_QUEUE_DROP ? " drop" : "",
		    output_result(rp.end.result));
	output_queue(&rp, q.op == CTL_QUEUE_DROP, ctl->json);
	r = EXIT_ACKED;
	reply_free(&rp);
	return r;
}

/* The status as a monitoring plugin reports it: exit 0 OK, 1 WARNING,
 * 2 CRITICAL; any failure to get it is UNKNOWN (3, through die()). */
static int
cmd_check(struct ctl *ctl, int argc, char **argv)
{
	struct reply rp = { 0 };
	int r;

	(void)argc;
	(void)argv;
	status_fetch(ctl, &rp, CTL_STATUS);
	r = output_check(&rp, &ctl->check);
	reply_free(&rp);
	return r;
}

/* A bad value for an option or argument of command c: exit 2, or for
 * check, UNKNOWN and 3, as monitoring plugins do. */
static void __attribute__((noreturn, format(printf, 2, 3)))
cmd_error(const struct cmd *c, const char *fmt, ...)
{
	FILE *f = die_unknown ? stdout : stderr;
	va_list ap;

	fprintf(f, "%s%s: ", die_unknown ? "UNKNOWN: " : "fanoutctl: ",
	    c->name);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	exit(die_unknown ? EXIT_FAILURE3 : EXIT_USAGE);
}

static void
send_option(struct ctl *ctl, const struct cmd *c, int ch)
{
	uint64_t v;

	switch (ch) {
	case 'w':
		ctl->send_flags |= CTL_SEND_WAIT;
		break;
	case 'W':
		if (parse_uint(optarg, 1, WINDOW_MAX, &v) < 0)
			cmd_error(c, "--window: must be between 1 and %d",
			    WINDOW_MAX);
		ctl->window = (uint32_t)v;
		break;
	case 'S':
		ctl->stats = true;
		break;
	case 'q':
		ctl->quiet = true;
		break;
	}
}

static void
stats_option(struct ctl *ctl, const struct cmd *c, int ch)
{
	(void)c;
	if (ch == 'P')
		ctl->prometheus = true;
}

static void
check_option(struct ctl *ctl, const struct cmd *c, int ch)
{
	struct check_limits *cl = &ctl->check;
	uint64_t v;

	if (ch == 'w' || ch == 'c') {
		if (parse_uint(optarg, 1, FANOUT_WORKERS_MAX, &v) < 0)
			cmd_error(c, "-%c: must be between 1 and %d", ch,
			    FANOUT_WORKERS_MAX);
		*(ch == 'w' ? &cl->warn_down : &cl->crit_down) = (uint32_t)v;
		return;
	}
	if (parse_uint(optarg, 1, UINT64_MAX, &v) < 0)
		cmd_error(c, "--%s-queued: must be a number from 1 on",
		    ch == OPT_WARN_QUEUED ? "warn" : "crit");
	*(ch == OPT_WARN_QUEUED ? &cl->warn_queued : &cl->crit_queued) = v;
}

/*
 * Parses the options of command c; argv[0] is its name.  Returns the index
 * of its first argument.
 */
static int
cmd_options(struct ctl *ctl, const struct cmd *c, int argc, char **argv)
{
	FILE *f;
	int ch;

	if (c->optstring == NULL)
		return 1;
	optind = 0;	/* glibc: start afresh with new option tables */
	opterr = 0;	/* our message names the command */
	while ((ch = getopt_long(argc, argv, c->optstring, c->longopts,
	    NULL)) != -1) {
		if (ch == ':')
			cmd_error(c, "%s needs a value", argv[optind - 1]);
		if (ch != '?' && c->opt != NULL) {
			c->opt(ctl, c, ch);
			continue;
		}
		f = die_unknown ? stdout : stderr;
		fprintf(f, "%s%s: unknown option ", die_unknown ? "UNKNOWN: " :
		    "fanoutctl: ", c->name);
		if (optopt != 0)
			fprintf(f, "-%c", optopt);
		else
			fputs(argv[optind - 1], f);
		fprintf(f, " (put -- before an argument that starts with "
		    "'-')\n");
		usage(stderr, die_unknown ? EXIT_FAILURE3 : EXIT_USAGE);
	}
	return optind;
}

/* An option table's words, one a line, "ARG" after those that take a
 * value: -s ARG, --socket ARG, --json... */
static void
list_options(const char *optstring, const struct option *lo)
{
	const char *p;

	for (p = optstring; *p != '\0'; p++)
		if (*p != '+' && *p != ':')
			printf("-%c%s\n", *p, p[1] == ':' ? " ARG" : "");
	for (; lo->name != NULL; lo++)
		if (strncmp(lo->name, "list-", 5) != 0)	/* hidden */
			printf("--%s%s\n", lo->name,
			    lo->has_arg == required_argument ? " ARG" : "");
}

/* --list-commands, --list-options[=COMMAND]: the words shell completion
 * offers, from the tables that drive parsing. */
static int
list_words(const char *cmd)
{
	const struct cmd *c;

	if (cmd == NULL) {
		/* Each name once: the rows of a name are adjacent. */
		for (c = cmds; c->name != NULL; c++)
			if (c == cmds || strcmp(c[-1].name, c->name) != 0)
				printf("%s\n", c->name);
		return 0;
	}
	if (cmd[0] == '\0') {
		list_options(MAIN_OPTSTRING, main_opts);
		return 0;
	}
	for (c = cmds; c->name != NULL; c++)
		if (strcmp(c->name, cmd) == 0) {
			if (c->optstring != NULL)
				list_options(c->optstring, c->longopts);
			return 0;
		}
	fprintf(stderr, "fanoutctl: %s: unknown command\n", cmd);
	return EXIT_USAGE;
}

int
main(int argc, char *argv[])
{
	struct ctl ctl = { .timeout_ms = TIMEOUT_DEFAULT_MS, .fd = -1,
	    .window = WINDOW_DEFAULT, .check = { .warn_down = 1 } };
	const struct cmd *c;
	const char *name;
	uint64_t v;
	int ch, first, nargs = 0, r;

	std_fds();
	/* getopt's own messages say "fanoutctl: ...", not the path. */
	argv[0] = (char *)"fanoutctl";
	ctl.path = getenv("FANOUT_SOCKET");
	if (ctl.path == NULL || ctl.path[0] == '\0')
		ctl.path = FANOUT_SOCKET_DEFAULT;
	/* '+': options end at the command, so messages may start with '-'. */
	while ((ch = getopt_long(argc, argv, MAIN_OPTSTRING, main_opts, NULL))
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
			ctl.timeout_set = true;
			break;
		case 'j':
			ctl.json = true;
			break;
		case 'h':
			usage(stdout, 0);
		case 'V':
			printf("fanoutctl %s\n", PACKAGE_VERSION);
			return 0;
		case OPT_LIST_COMMANDS:
			return list_words(NULL);
		case OPT_LIST_OPTIONS:
			return list_words(optarg != NULL ? optarg : "");
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
		die_unknown = c->run == cmd_check;
		first += cmd_options(&ctl, c, argc - first, argv + first);
		nargs = argc - first;
	}
	for (; c->name != NULL; c++)
		if (strcmp(c->name, name) == 0 && nargs >= c->min_args &&
		    (c->max_args < 0 || nargs <= c->max_args))
			break;
	if (c->name == NULL) {
		fprintf(die_unknown ? stdout : stderr, "%s%s: unknown command "
		    "or wrong number of arguments\n", die_unknown ?
		    "UNKNOWN: " : "fanoutctl: ", name);
		usage(stderr, die_unknown ? EXIT_FAILURE3 : EXIT_USAGE);
	}
	signal(SIGPIPE, SIG_IGN);
	r = c->run(&ctl, nargs, argv + first);
	rbuf_free(&ctl.in);
	if (ctl.fd >= 0)
		close(ctl.fd);
	/* A reader that left early: exit 4, without a word (send - has said
	 * so in its summary). */
	out_flush();
	return out_closed ? EXIT_OUTPUT : r;
}
