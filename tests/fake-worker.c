/* SPDX-License-Identifier: MIT */
/*
 * fake-worker: a stand-in for fanout-worker that misbehaves on purpose, for
 * the scenario tests.  It takes fanout-worker's arguments, so a config's
 * worker_path (or a wrapper script) can point at it.
 *
 *	fake-worker --index N --port PORT [--secret-fd FD] [--address ADDR]
 *	    [-v] [--max-message-bytes N] [--mode MODE] [--ready-after FIFO]
 *	    [--ready-from-child] [--ignore-term] [--touch DIR]
 *	    [--close-first K]
 *
 * Like the real worker it listens, sends READY=1 to $NOTIFY_SOCKET (when
 * set), accepts the daemon's connection, answers its handshake with the
 * key read from --secret-fd (without one it answers nothing: a program on
 * the port that is not fanoutd's worker) and reads frames.  MODE says what it
 * does with each MSG_DATA:
 *	ack		acknowledge it (default): a well-behaved worker
 *	noack		never acknowledge
 *	garbage		answer with bytes that are not a frame
 *	hugeframe	answer with a header announcing 2 GiB
 *	badack		acknowledge a message id that was never sent
 *	close		close the connection without acknowledging
 *	fail		do not listen: send STATUS= and ERRNO=98, exit 1
 *	dropafter:N	a link that breaks while the process lives on: on its
 *			first connection it handles and acks N messages,
 *			handles one more without acking it and closes the
 *			connection; it goes on listening, and on every later
 *			connection acks each message, handling only ids above
 *			the highest it handled (a resend is acked without
 *			being handled again, like fanout-worker)
 *	crashloop	needs --touch DIR: the first start creates
 *			DIR/worker-N.started and behaves as ack; every later
 *			start, finding that file, exits 1 before READY=1
 * --ready-after FIFO	create FIFO.waiting, then block opening FIFO for
 *			reading before READY=1 (a test releases it)
 * --ready-from-child	READY=1 comes from a forked child, never from the
 *			worker's own pid (which the daemon must not accept)
 * --ignore-term	ignore SIGTERM (only SIGKILL stops it)
 * --close-first K	close the first K connections as soon as they are
 *			accepted, as a worker does with a handshake that
 *			missed its deadline
 * --touch DIR		create DIR/worker-N.msg-ID for each message; in
 *			dropafter mode DIR/worker-N.msg-ID for each message
 *			handled, DIR/worker-N.dup-ID for each one acked
 *			without handling it, and DIR/worker-N.twice-ID should
 *			an id ever be handled a second time
 *
 * After its connection is gone it stays until SIGTERM, so the daemon sees
 * the link fail, not the process exit; except in mode ack, which exits 0
 * when fanoutd closes the link, as a worker stopped at shutdown would.
 * It dies with its parent.
 */
#define _GNU_SOURCE
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "frame.h"

static int	 idx = -1;
static int	 have_key;
static uint8_t	 key[AUTH_KEY_LEN];

/* dropafter mode: what this process has done so far. */
static unsigned		 conns;		/* connections served */
static unsigned long long highest;	/* highest id handled */

static void
usage(int st)
{
	fprintf(st ? stderr : stdout, "usage: fake-worker --index N "
	    "--port PORT [--secret-fd FD] [--address ADDR] [--mode MODE]\n"
	    "\t[--ready-after FIFO] [--ready-from-child] [--ignore-term] "
	    "[--touch DIR] [--close-first K]\n");
	exit(st);
}

static void
die(const char *what)
{
	fprintf(stderr, "fake-worker %d: %s: %s\n", idx, what,
	    strerror(errno));
	exit(1);
}

static void
on_term(int sig)
{
	(void)sig;
	_exit(0);
}

/* sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void
notify(const char *text)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *e = getenv("NOTIFY_SOCKET");
	socklen_t len;
	int fd;

	if (e == NULL || *e == '\0' || strlen(e) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, e);
	if (e[0] == '@')
		sa.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(e));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		die("notify socket");
	if (sendto(fd, text, strlen(text), 0, (struct sockaddr *)&sa, len) < 0)
		die("notify");
	close(fd);
}

static int
read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return;		/* the daemon dropped us: fine */
		p += n;
		len -= (size_t)n;
	}
}

static void
ack(int fd, uint64_t id)
{
	uint8_t f[FANOUT_HDR_LEN + MSG_ACK_LEN];

	frame_hdr_encode(f, MSG_ACK, MSG_ACK_LEN, id);
	put_u32(f + FANOUT_HDR_LEN, 0);
	write_full(fd, f, sizeof(f));
}

/* With --touch DIR: create DIR/worker-N.WHAT-ID.  Exclusive: -1 if it
 * existed already. */
static int
record(const char *touch, const char *what, unsigned long long id, int excl)
{
	char path[4096];
	int fd;

	if (touch == NULL)
		return 0;
	snprintf(path, sizeof(path), "%s/worker-%d.%s-%llu", touch, idx, what,
	    id);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC | (excl ? O_EXCL : 0),
	    0644);
	if (fd == -1)
		return errno == EEXIST ? -1 : 0;
	close(fd);
	return 0;
}

/* The worker's side of the handshake, blocking: 0 once the daemon has
 * proved itself, -1 if the connection is to be dropped. */
static int
handshake(int c)
{
	uint8_t in[AUTH_FRAME_MAX], out[AUTH_FRAME_MAX];
	struct frame_hdr h;
	struct auth a;
	ssize_t n;

	if (!have_key)
		return -1;
	auth_start(&a, key);
	while (a.state != AUTH_DONE) {
		if (read_full(c, in, FANOUT_HDR_LEN) == -1 ||
		    frame_hdr_decode(in, AUTH_PAYLOAD_MAX, &h) < 0 ||
		    read_full(c, in + FANOUT_HDR_LEN, h.len) == -1 ||
		    (n = auth_worker_recv(&a, &h, in + FANOUT_HDR_LEN,
		    out)) < 0) {
			fprintf(stderr, "fake-worker %d: handshake failed\n",
			    idx);
			return -1;
		}
		write_full(c, out, (size_t)n);
	}
	return 0;
}

/* Serve one daemon connection until it ends; returns when it does: 1, or
 * 0 if it was not fanoutd's.  dropafter: -1, or N of dropafter:N. */
static int
serve(int c, const char *mode, const char *touch, int dropafter,
    uint32_t max_message)
{
	uint8_t hdr[FANOUT_HDR_LEN], *payload;
	struct frame_hdr h;
	unsigned nread = 0;

	if (handshake(c) < 0) {
		close(c);
		return 0;
	}
	if ((payload = malloc(max_message)) == NULL)
		die("malloc");
	conns++;
	for (;;) {
		if (read_full(c, hdr, sizeof(hdr)) == -1)
			break;
		if (frame_hdr_decode(hdr, max_message, &h) < 0 ||
		    read_full(c, payload, h.len) == -1)
			break;
		if (h.type != MSG_DATA)
			continue;
		if (dropafter >= 0) {
			/* Handled, unless a resend of what was handled. */
			if (h.id > highest) {
				fprintf(stderr, "fake-worker %d: message %llu, "
				    "%u bytes\n", idx,
				    (unsigned long long)h.id, h.len);
				highest = h.id;
				if (record(touch, "msg", h.id, 1) == -1)
					(void)record(touch, "twice", h.id, 0);
			} else {
				fprintf(stderr, "fake-worker %d: message %llu "
				    "again: acked without handling it\n", idx,
				    (unsigned long long)h.id);
				(void)record(touch, "dup", h.id, 0);
			}
			if (conns == 1 && nread++ == (unsigned)dropafter) {
				fprintf(stderr, "fake-worker %d: dropping the "
				    "connection without acking %llu\n", idx,
				    (unsigned long long)h.id);
				break;
			}
			ack(c, h.id);
			continue;
		}
		fprintf(stderr, "fake-worker %d: message %llu, %u bytes\n",
		    idx, (unsigned long long)h.id, h.len);
		(void)record(touch, "msg", h.id, 0);
		if (strcmp(mode, "ack") == 0) {
			ack(c, h.id);
		} else if (strcmp(mode, "badack") == 0) {
			ack(c, h.id + 1000);
		} else if (strcmp(mode, "garbage") == 0) {
			static const char g[] = "this is not a fanout frame!\n";

			write_full(c, g, sizeof(g) - 1);
		} else if (strcmp(mode, "hugeframe") == 0) {
			frame_hdr_encode(hdr, MSG_ACK, 0x80000000u, h.id);
			write_full(c, hdr, sizeof(hdr));
		} else if (strcmp(mode, "close") == 0) {
			break;
		}
		/* noack: nothing */
	}
	free(payload);
	close(c);
	return 1;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "index", required_argument, NULL, 'i' },
		{ "port", required_argument, NULL, 'p' },
		{ "address", required_argument, NULL, 'a' },
		{ "mode", required_argument, NULL, 'm' },
		{ "ready-after", required_argument, NULL, 'r' },
		{ "ready-from-child", no_argument, NULL, 'C' },
		{ "ignore-term", no_argument, NULL, 'I' },
		{ "touch", required_argument, NULL, 'T' },
		{ "secret-fd", required_argument, NULL, 'S' },
		{ "max-message-bytes", required_argument, NULL, 'M' },
		{ "close-first", required_argument, NULL, 'K' },
		{ "auth-timeout", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *addr = "127.0.0.1", *mode = "ack", *fifo = NULL;
	const char *touch = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen;
	pid_t ppid = getppid();
	int ch, port = -1, from_child = 0, ignore_term = 0, one = 1, fd, c;
	int dropafter = -1, secret_fd = -1, close_first = 0;
	uint32_t max_message = FANOUT_MESSAGE_MAX;
	char buf[128];

	while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'i':
			idx = atoi(optarg);
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'a':
			addr = optarg;
			break;
		case 'm':
			mode = optarg;
			break;
		case 'r':
			fifo = optarg;
			break;
		case 'C':
			from_child = 1;
			break;
		case 'I':
			ignore_term = 1;
			break;
		case 'T':
			touch = optarg;
			break;
		case 'S':
			secret_fd = atoi(optarg);
			break;
		case 'M':
			max_message = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'K':
			close_first = atoi(optarg);
			break;
		case 'A':	/* it waits for the handshake as long as needed */
			break;
		case 'v':
			break;
		case 'h':
			usage(0);
			break;
		default:
			usage(2);
		}
	}
	/* Like the real worker: the key before anything else. */
	if (secret_fd >= 0) {
		if (auth_init() < 0 || auth_key_read(secret_fd, key) < 0)
			die("--secret-fd");
		have_key = 1;
	}
	if (optind != argc || idx < 0 || port <= 0 || port > 65535 ||
	    max_message == 0 || max_message > FANOUT_MESSAGE_MAX)
		usage(2);
	if (strncmp(mode, "dropafter:", 10) == 0) {
		char *end;
		long n = strtol(mode + 10, &end, 10);

		if (end == mode + 10 || *end != '\0' || n < 0 || n > 1000000)
			usage(2);
		dropafter = (int)n;
	}
	if (strcmp(mode, "crashloop") == 0 && touch == NULL)
		usage(2);

	/* No orphans, like the real worker. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != ppid)
		exit(1);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, ignore_term ? SIG_IGN : on_term);
	signal(SIGINT, on_term);

	if (strcmp(mode, "crashloop") == 0) {
		char path[4096];
		int m;

		snprintf(path, sizeof(path), "%s/worker-%d.started", touch,
		    idx);
		if (access(path, F_OK) == 0) {
			fprintf(stderr, "fake-worker %d: crashing at start "
			    "(%s exists)\n", idx, path);
			exit(1);
		}
		if ((m = open(path, O_CREAT | O_WRONLY | O_CLOEXEC,
		    0644)) == -1)
			die(path);
		close(m);
		mode = "ack";
	}

	if (strcmp(mode, "fail") == 0) {
		snprintf(buf, sizeof(buf), "STATUS=fake worker %d: simulated "
		    "failure\nERRNO=98", idx);
		notify(buf);
		fprintf(stderr, "fake-worker %d: simulated failure\n", idx);
		exit(1);
	}

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, addr,
	    &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		sslen = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, addr,
	    &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		sslen = sizeof(struct sockaddr_in6);
	} else {
		fprintf(stderr, "fake-worker %d: bad address %s\n", idx, addr);
		exit(2);
	}

	if (fifo) {
		char marker[4096];
		int m, f;

		snprintf(marker, sizeof(marker), "%s.waiting", fifo);
		if ((m = open(marker, O_CREAT | O_WRONLY | O_CLOEXEC,
		    0644)) == -1)
			die(marker);
		close(m);
		if ((f = open(fifo, O_RDONLY | O_CLOEXEC)) == -1)
			die(fifo);
		close(f);
	}

	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sslen) == -1 ||
	    listen(fd, 8) == -1) {
		int e = errno;

		snprintf(buf, sizeof(buf), "STATUS=cannot listen on %s port "
		    "%d: %s\nERRNO=%d", addr, port, strerror(e), e);
		notify(buf);
		errno = e;
		die("listen");
	}

	if (from_child) {
		pid_t pid = fork();

		if (pid == -1)
			die("fork");
		if (pid == 0) {
			notify("READY=1");
			_exit(0);
		}
		waitpid(pid, NULL, 0);
	} else
		notify("READY=1");

	for (;;) {
		if ((c = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) == -1) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		if (close_first > 0) {
			close_first--;
			close(c);
			continue;
		}
		setsockopt(c, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one,
		    sizeof(one));
		if (serve(c, mode, touch, dropafter, max_message) &&
		    strcmp(mode, "ack") == 0 && !from_child)
			exit(0);
	}
}
