/* SPDX-License-Identifier: MIT */
/*
 * bench-ref: the benchmark's reference fanout, "the limit".  It does
 * fanoutd's job with nothing else: one process, one plain epoll loop, N
 * forked (not exec'd) receivers, the same frames (proto.h) and the same
 * control socket shape.  No supervision, queues, timers, records or logs.
 *
 *	bench-ref -n N -s CONTROL_SOCKET [-p PORT | -x]
 *
 * Receivers connect over TCP to 127.0.0.1:PORT (fanoutd's transport), or
 * with -x each gets a socketpair.  READY=1 goes to NOTIFY_SOCKET once all
 * N are connected.  One control client at a time sends CTL_SEND frames;
 * each is written to every receiver as MSG_DATA, each receiver acks every
 * frame with MSG_ACK, and the client gets one CTL_END when all N acked.
 * Reads are handled a batch per loop turn and every socket is written
 * once per turn.  SIGTERM: the receivers see EOF and exit, then so does
 * bench-ref.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "notify.h"
#include "payload.h"
#include "refclient.h"
#include "sock.h"
#include "util.h"

#define EVENTS_MAX	256

enum { EV_CTL = 1, EV_CLIENT, EV_SIGNAL, EV_RCV };

struct rcv {
	int		 fd;
	struct rbuf	 in;
	struct wbuf	 out;
	bool		 pollout;
};

static struct rcv	*rcvs;
static pid_t		*pids;
static uint32_t		 nrcv;
static int		 epfd;
static struct refclient	 client;

static void __attribute__((noreturn))
die(const char *what)
{
	fprintf(stderr, "bench-ref: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: bench-ref -n N -s CONTROL_SOCKET "
	    "[-p PORT | -x]\n");
	exit(2);
}

/* A receiver: blocking I/O, one read and one write per batch of frames. */
static void __attribute__((noreturn))
receiver(int fd)
{
	uint8_t ackp[MSG_ACK_LEN];
	struct msg_ack ack = { .status = 0 };
	struct frame_hdr h;
	const uint8_t *p;
	struct rbuf in;
	struct wbuf out;
	ssize_t n;
	int r;

	msg_ack_encode(ackp, &ack);
	rbuf_init(&in, FANOUT_MESSAGE_MAX);
	wbuf_init(&out);
	for (;;) {
		if ((n = rbuf_read(&in, fd)) <= 0)
			_exit(n == 0 ? 0 : 1);
		while ((r = rbuf_next(&in, &h, &p)) == 1)
			if (h.type != MSG_DATA ||
			    wbuf_frame(&out, MSG_ACK, h.id, ackp,
			    sizeof(ackp)) < 0)
				_exit(1);
		if (r < 0 || wbuf_flush(&out, fd) != 0)
			_exit(1);
	}
}

static int
tcp_receiver(uint16_t port)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1 ||
	    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		_exit(1);
	return fd;
}

/* Forks the receivers and holds one connected socket to each. */
static void
start_receivers(uint16_t port, bool pairs)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int lfd = -1, sv[2], one = 1;
	uint32_t i;

	if (!pairs && ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0))
	    == -1 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, (int)nrcv) == -1))
		die("receiver listener");
	for (i = 0; i < nrcv; i++) {
		sv[0] = sv[1] = -1;
		if (pairs && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
		    sv) == -1)
			die("socketpair");
		if ((pids[i] = fork()) == -1)
			die("fork");
		if (pids[i] == 0) {
			/* Only its own socket: EOF must reach the others. */
			(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (pairs) {
				if (dup2(sv[1], 3) == -1)
					_exit(1);
				close_range(4, ~0U, 0);
				receiver(3);
			}
			close_range(3, ~0U, 0);
			receiver(tcp_receiver(port));
		}
		if (pairs) {
			close(sv[1]);
			rcvs[i].fd = sv[0];
		}
	}
	for (i = 0; i < nrcv; i++) {
		if (!pairs) {
			if ((rcvs[i].fd = accept4(lfd, NULL, NULL,
			    SOCK_CLOEXEC)) == -1)
				die("accept");
			if (setsockopt(rcvs[i].fd, IPPROTO_TCP, TCP_NODELAY,
			    &one, sizeof(one)) == -1)
				die("TCP_NODELAY");
		}
		rbuf_init(&rcvs[i].in, MSG_ACK_LEN);
		wbuf_init(&rcvs[i].out);
		if (fd_nonblock(rcvs[i].fd) < 0 ||
		    epoll_ctl(epfd, EPOLL_CTL_ADD, rcvs[i].fd,
		    &(struct epoll_event){ .events = EPOLLIN,
		    .data.u64 = ((uint64_t)i << 8) | EV_RCV }) == -1)
			die("receiver socket");
	}
	if (lfd != -1)
		close(lfd);
}

/* One fd per receiver, as fanoutd needs (it raises its limit too). */
static void
raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)nrcv + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		die("setrlimit");
}

static void
set_pollout(int fd, uint64_t data, bool *cur, bool want)
{
	struct epoll_event ev = {
		.events = EPOLLIN | (want ? EPOLLOUT : 0),
		.data.u64 = data,
	};

	if (*cur != want && epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
		*cur = want;
}

/* A broadcast: one MSG_DATA frame queued on each receiver. */
static void
send_all(uint64_t id, const uint8_t *msg, size_t len)
{
	uint32_t i;

	for (i = 0; i < nrcv; i++)
		if (wbuf_frame(&rcvs[i].out, MSG_DATA, id, msg, len) < 0)
			die("receiver buffer");
}

static void
rcv_read(uint32_t i)
{
	struct rcv *rc = &rcvs[i];
	struct frame_hdr h;
	const uint8_t *p;
	ssize_t n;
	int r;

	n = rbuf_read(&rc->in, rc->fd);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		fprintf(stderr, "bench-ref: receiver %u: %s\n", i,
		    n == 0 ? "gone" : strerror((int)-n));
		exit(1);
	}
	while ((r = rbuf_next(&rc->in, &h, &p)) == 1) {
		if (h.type != MSG_ACK || refclient_ack(&client, h.id) < 0) {
			fprintf(stderr, "bench-ref: receiver %u: bad ack\n", i);
			exit(1);
		}
	}
	if (r < 0) {
		fprintf(stderr, "bench-ref: receiver %u: bad frame\n", i);
		exit(1);
	}
}

/* The end of a loop turn: one write per socket with something to send. */
static void
flush_all(void)
{
	uint32_t i;
	int r;

	for (i = 0; i < nrcv; i++) {
		if (wbuf_pending(&rcvs[i].out) == 0 && !rcvs[i].pollout)
			continue;
		if ((r = wbuf_flush(&rcvs[i].out, rcvs[i].fd)) < 0) {
			errno = -r;
			die("receiver write");
		}
		set_pollout(rcvs[i].fd, ((uint64_t)i << 8) | EV_RCV,
		    &rcvs[i].pollout, r == 1);
	}
	refclient_flush(&client);
}

static void __attribute__((noreturn))
stop(void)
{
	uint32_t i;

	for (i = 0; i < nrcv; i++)
		close(rcvs[i].fd);
	for (i = 0; i < nrcv; i++)
		(void)waitpid(pids[i], NULL, 0);
	exit(0);
}

int
main(int argc, char *argv[])
{
	struct epoll_event evs[EVENTS_MAX];
	const char *path = NULL;
	uint64_t n = 0, port = 0;
	bool pairs = false;
	char status[64];
	sigset_t set;
	int ch, lfd, sfd, i, nev;

	while ((ch = getopt(argc, argv, "n:s:p:x")) != -1) {
		switch (ch) {
		case 'n':
			if (parse_uint(optarg, 1, FANOUT_WORKERS_MAX, &n) < 0)
				usage();
			break;
		case 's':
			path = optarg;
			break;
		case 'p':
			if (parse_uint(optarg, 1, 65535, &port) < 0)
				usage();
			break;
		case 'x':
			pairs = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || n == 0 || path == NULL || (port == 0) != pairs)
		usage();
	nrcv = (uint32_t)n;
	if ((rcvs = calloc(nrcv, sizeof(*rcvs))) == NULL ||
	    (pids = calloc(nrcv, sizeof(*pids))) == NULL)
		die("calloc");

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1 ||
	    (sfd = signalfd(-1, &set, SFD_CLOEXEC)) == -1)
		die("signalfd");
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	(void)unlink(path);
	if ((lfd = unix_listen(path, 0600)) < 0) {
		errno = -lfd;
		die(path);
	}
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &(struct epoll_event){
	    .events = EPOLLIN, .data.u64 = EV_CTL }) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &(struct epoll_event){
	    .events = EPOLLIN, .data.u64 = EV_SIGNAL }) == -1)
		die("epoll");
	refclient_init(&client, epfd, lfd, EV_CTL, EV_CLIENT, nrcv);
	start_receivers((uint16_t)port, pairs);
	snprintf(status, sizeof(status), "%u receivers connected", nrcv);
	notify_ready(status);

	for (;;) {
		if ((nev = epoll_wait(epfd, evs, EVENTS_MAX, -1)) == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < nev; i++) {
			uint64_t d = evs[i].data.u64;

			if (refclient_event(&client, &evs[i], send_all))
				continue;
			switch (d & 0xff) {
			case EV_SIGNAL:
				stop();
			case EV_RCV:
				if (evs[i].events & (EPOLLIN | EPOLLHUP |
				    EPOLLERR))
					rcv_read((uint32_t)(d >> 8));
				break;
			}
		}
		flush_all();
	}
}
