/* SPDX-License-Identifier: MIT */
/*
 * fanout-worker: listens on its port, tells its supervisor it is ready once
 * it listens, and acknowledges every message fanoutd sends it, in order.
 * A message it has already handled (a resend after a lost link) is acked
 * without being handled again.  On SIGTERM it acks what it has read, then
 * exits.
 */
#include "config.h"

#include <sys/socket.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "frame.h"
#include "log.h"
#include "notify.h"
#include "payload.h"
#include "sock.h"
#include "util.h"

#define CONNS_MAX	8	/* fanoutd uses one; a few spare for reconnects */
#define LOG_PREVIEW	32	/* message bytes shown in the log */
#define EXIT_FLUSH_MS	2000	/* how long acks may take to leave at exit */

struct conn {
	struct wk	*wk;
	int		 fd;
	sd_event_source	*src;
	struct rbuf	 in;
	struct wbuf	 out;
	struct conn	*next;
};

struct wk {
	sd_event	*ev;
	uint32_t	 index;
	int		 lfd;
	sd_event_source	*lsrc;
	struct conn	*conns;
	unsigned	 nconns;
	/* Ids grow in the order fanoutd accepted the messages and each
	 * worker gets them in that order: one number tells what is done. */
	uint64_t	 last_id;
	pid_t		 pid;
};

static void __attribute__((noreturn))
usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: fanout-worker --index N --port PORT [--address ADDR] [-v]\n"
	    "Acknowledge the messages fanoutd broadcasts; started by fanoutd."
	    "\n\n"
	    "  -i, --index N        this worker's index in the pool\n"
	    "  -p, --port PORT      TCP port to listen on\n"
	    "  -a, --address ADDR   address to listen on (default 127.0.0.1)\n"
	    "  -v, --verbose        log debug messages too\n"
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
	c->src = sd_event_source_disable_unref(c->src);
	close(c->fd);
	rbuf_free(&c->in);
	wbuf_free(&c->out);
	free(c);
}

/* What handling a message means until handlers exist: a debug line. */
static void
handle_message(struct wk *wk, const struct frame_hdr *h, const uint8_t *p)
{
	char preview[LOG_PREVIEW * 4 + 1];

	if (log_getverbose() == 0)
		return;
	str_escape(preview, sizeof(preview), p,
	    h->len < LOG_PREVIEW ? h->len : LOG_PREVIEW);
	log_debug("worker %u (pid %d): message %llu, %u bytes: \"%s\"%s",
	    wk->index, (int)wk->pid, (unsigned long long)h->id, h->len,
	    preview, h->len > LOG_PREVIEW ? "..." : "");
}

/* Handles every complete frame read so far: 0, or -1 on a protocol error. */
static int
conn_process(struct conn *c)
{
	struct wk *wk = c->wk;
	struct msg_ack ack = { .status = 0 };
	uint8_t buf[MSG_ACK_LEN];
	struct frame_hdr h;
	const uint8_t *p;
	int r;

	msg_ack_encode(buf, &ack);
	while ((r = rbuf_next(&c->in, &h, &p)) == 1) {
		if (h.type != MSG_DATA) {
			log_warnx("worker %u: unexpected frame type %u; "
			    "closing the connection", wk->index, h.type);
			return -1;
		}
		if (h.id > wk->last_id) {
			handle_message(wk, &h, p);
			wk->last_id = h.id;
		} else
			log_debug("worker %u (pid %d): message %llu again: "
			    "acked without handling it", wk->index,
			    (int)wk->pid, (unsigned long long)h.id);
		if (wbuf_frame(&c->out, MSG_ACK, h.id, buf, sizeof(buf)) < 0) {
			log_warnx("worker %u: out of memory", wk->index);
			return -1;
		}
	}
	if (r < 0) {
		log_warnx("worker %u: bad frame: %s; closing the connection",
		    wk->index, frame_strerror(r));
		return -1;
	}
	return 0;
}

static int
on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *arg)
{
	struct conn *c = arg;
	ssize_t n;
	int r;

	(void)s;
	if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
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
	/* One write per batch of frames read. */
	if ((r = wbuf_flush(&c->out, fd)) < 0) {
		conn_close(c);
		return 0;
	}
	(void)sd_event_source_set_io_events(c->src,
	    EPOLLIN | (r == 1 ? EPOLLOUT : 0));
	return 0;
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
		if (wk->nconns >= CONNS_MAX ||
		    (c = calloc(1, sizeof(*c))) == NULL) {
			log_warnx("worker %u: refusing a connection",
			    wk->index);
			close(fd);
			continue;
		}
		c->wk = wk;
		c->fd = fd;
		rbuf_init(&c->in, FANOUT_MESSAGE_MAX);
		wbuf_init(&c->out);
		if (sd_event_add_io(wk->ev, &c->src, fd, EPOLLIN, on_conn_io,
		    c) < 0) {
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

static int
on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *arg)
{
	struct wk *wk = arg;

	(void)s;
	log_debug("worker %u: %s: exiting", wk->index,
	    strsignal((int)si->ssi_signo));
	(void)sd_event_exit(wk->ev, 0);
	return 0;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "index",	required_argument,	NULL, 'i' },
		{ "port",	required_argument,	NULL, 'p' },
		{ "address",	required_argument,	NULL, 'a' },
		{ "verbose",	no_argument,		NULL, 'v' },
		{ "help",	no_argument,		NULL, 'h' },
		{ "version",	no_argument,		NULL, 'V' },
		{ NULL,		0,			NULL, 0 }
	};
	const char *addr = "127.0.0.1";
	uint64_t index = UINT64_MAX, port = 0;
	struct wk wk;
	char why[160];
	sigset_t set;
	int ch, verbose = 0, r;

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
		case 'h':
			usage(stdout, 0);
		case 'V':
			printf("fanout-worker %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr, 2);
		}
	}
	if (optind != argc || index == UINT64_MAX || port == 0) {
		fprintf(stderr, "fanout-worker: --index and --port are "
		    "required\n");
		usage(stderr, 2);
	}
	log_init("fanout-worker", verbose);
	memset(&wk, 0, sizeof(wk));
	wk.index = (uint32_t)index;
	wk.pid = getpid();

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
	signal(SIGPIPE, SIG_IGN);

	if ((wk.lfd = tcp_listen(addr, (uint16_t)port)) < 0) {
		snprintf(why, sizeof(why), "cannot listen on %s:%u: %s", addr,
		    (unsigned)port, strerror(-wk.lfd));
		log_warnx("worker %u: %s", wk.index, why);
		notify_failure(-wk.lfd, why);
		return 1;
	}
	if ((r = sd_event_new(&wk.ev)) < 0 ||
	    (r = sd_event_add_signal(wk.ev, NULL, SIGTERM, on_signal, &wk)) < 0 ||
	    (r = sd_event_add_signal(wk.ev, NULL, SIGINT, on_signal, &wk)) < 0 ||
	    (r = sd_event_add_io(wk.ev, &wk.lsrc, wk.lfd, EPOLLIN, on_accept,
	    &wk)) < 0)
		fatalx("worker %u: cannot set up the event loop: %s", wk.index,
		    strerror(-r));
	/* Only now can fanoutd connect: listen() has succeeded. */
	snprintf(why, sizeof(why), "listening on %s:%u", addr, (unsigned)port);
	notify_ready(why);
	log_debug("worker %u: %s", wk.index, why);

	r = sd_event_loop(wk.ev);

	wk.lsrc = sd_event_source_disable_unref(wk.lsrc);
	close(wk.lfd);
	flush_all(&wk);
	while (wk.conns != NULL)
		conn_close(wk.conns);
	sd_event_unref(wk.ev);
	return r < 0 ? 1 : 0;
}
