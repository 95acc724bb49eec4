/* SPDX-License-Identifier: MIT */
/*
 * bench-nats-ref: the benchmark's limit for remote workers, the broker used
 * directly.  It takes the benchmark's CTL_SEND frames on a control socket,
 * as bench-ref does, publishes each message to R per-worker subjects of a
 * JetStream stream laid out as fanoutd's (proto.h: PREFIX.w.NAME, WorkQueue
 * retention, file storage, a durable pull consumer per worker with explicit
 * acks and MaxAckPending 1), and answers CTL_END once all R receipts came.
 * R forked consumers pull one message at a time, publish a receipt on
 * PREFIX.r.NAME and ack, as fanout-remote-worker does, without its handler,
 * state file or records.
 *
 *	bench-nats-ref -n R -s CONTROL_SOCKET -u NATS_URL [-a]
 *
 * The message carries the broadcast's number in its first 8 bytes (fanoutd
 * puts it in a header); a receipt's data is those 8 bytes.  No headers, no
 * Nats-Msg-Id, no PubAcks unless -a asks for them (read and dropped).  Every
 * nats.c connection is driven from a plain epoll loop through nats.c's
 * event-loop hooks and written once per loop turn, so no library thread
 * stands between a socket and the code.  The stream and the consumers are
 * created by a child with a threaded connection before anything else
 * starts; READY=1 goes to NOTIFY_SOCKET once the R consumers are
 * connected.  SIGTERM: the consumers are killed, then bench-nats-ref exits.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "frame.h"
#include "notify.h"
#include "payload.h"
#include "refclient.h"
#include "sock.h"
#include "util.h"

#define EVENTS_MAX	64
#define SETUP_MS	20000	/* for the broker to take the stream */
#define READY_MS	30000	/* for the consumers to connect */
#define PULL_REQ	"{\"batch\":1,\"expires\":30000000000}"
#define PREFIX		FANOUT_NATS_PREFIX
#define STREAM		FANOUT_NATS_STREAM
#define SUBJECT_MAX	128

enum { EV_CTL = 1, EV_CLIENT, EV_SIGNAL, EV_NATS, EV_WAKE };

/*
 * One nats.c connection on the epoll loop.  The hooks may run on a nats.c
 * thread (its ping timer): they record, under mu, and wake the loop.
 * Input is read when the socket is readable; output is written at the end
 * of the loop turn that produced it, and EPOLLOUT is asked for only when
 * the socket would not take it all.
 */
struct conn {
	int		 epfd;
	int		 efd;
	pthread_t	 loop;
	natsConnection	*nc;
	pthread_mutex_t	 mu;
	int		 fd;		/* -1: detached */
	int		 watched;	/* the fd in epfd, or -1 */
	bool		 pollout;	/* EPOLLOUT asked of epfd */
	bool		 write;		/* nats.c has output buffered */
	bool		 changed;
};

static struct conn	 conn;
static uint32_t		 nw;
static pid_t		*pids;
static char		(*subjects)[SUBJECT_MAX];
static struct refclient	 client;
static natsSubscription	*receipts, *pubacks;
static char		 ackinbox[SUBJECT_MAX];

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench-nats-ref: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: bench-nats-ref -n R -s CONTROL_SOCKET "
	    "-u NATS_URL [-a]\n");
	exit(2);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- nats.c on the epoll loop ------------------------------------------- */

static void
conn_wake(struct conn *c)
{
	uint64_t one = 1;

	if (!pthread_equal(pthread_self(), c->loop))
		(void)write(c->efd, &one, sizeof(one));
}

static natsStatus
hook_attach(void **userData, void *loop, natsConnection *nc, natsSock fd)
{
	struct conn *c = loop;

	*userData = c;
	pthread_mutex_lock(&c->mu);
	c->nc = nc;
	c->fd = fd;
	c->changed = true;
	pthread_mutex_unlock(&c->mu);
	conn_wake(c);
	return NATS_OK;
}

static natsStatus
hook_read(void *userData, bool add)
{
	/* The socket is always watched for input while attached. */
	(void)userData;
	(void)add;
	return NATS_OK;
}

static natsStatus
hook_write(void *userData, bool add)
{
	struct conn *c = userData;

	pthread_mutex_lock(&c->mu);
	c->write = add;
	pthread_mutex_unlock(&c->mu);
	if (add)
		conn_wake(c);
	return NATS_OK;
}

static natsStatus
hook_detach(void *userData)
{
	struct conn *c = userData;

	pthread_mutex_lock(&c->mu);
	c->fd = -1;
	c->changed = true;
	pthread_mutex_unlock(&c->mu);
	conn_wake(c);
	return NATS_OK;
}

/* Loop thread: the watched fd as the hooks left it. */
static void
conn_apply(struct conn *c)
{
	int fd;

	pthread_mutex_lock(&c->mu);
	fd = c->fd;
	c->changed = false;
	pthread_mutex_unlock(&c->mu);
	if (fd == c->watched)
		return;
	if (c->watched >= 0)
		(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->watched, NULL);
	c->watched = -1;
	c->pollout = false;
	if (fd >= 0 && epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd,
	    &(struct epoll_event){ .events = EPOLLIN,
	    .data.u64 = EV_NATS }) == 0)
		c->watched = fd;
}

/* The end of a loop turn: what nats.c buffered goes out in one write. */
static void
conn_flush(struct conn *c)
{
	bool want;

	if (c->changed)
		conn_apply(c);
	pthread_mutex_lock(&c->mu);
	want = c->write;
	pthread_mutex_unlock(&c->mu);
	if (want && c->nc != NULL)
		natsConnection_ProcessWriteEvent(c->nc);
	pthread_mutex_lock(&c->mu);
	want = c->write;
	pthread_mutex_unlock(&c->mu);
	if (c->watched >= 0 && want != c->pollout &&
	    epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->watched,
	    &(struct epoll_event){ .events = EPOLLIN | (want ? EPOLLOUT : 0),
	    .data.u64 = EV_NATS }) == 0)
		c->pollout = want;
}

static void
conn_init(struct conn *c, int epfd)
{
	memset(c, 0, sizeof(*c));
	c->epfd = epfd;
	c->fd = c->watched = -1;
	c->loop = pthread_self();
	pthread_mutex_init(&c->mu, NULL);
	if ((c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, c->efd, &(struct epoll_event){
	    .events = EPOLLIN, .data.u64 = EV_WAKE }) == -1)
		die("eventfd: %s", strerror(errno));
}

static void
conn_connect(struct conn *c, const char *url, const char *name)
{
	natsOptions *o;
	natsStatus s;

	if ((s = natsOptions_Create(&o)) != NATS_OK ||
	    (s = natsOptions_SetURL(o, url)) != NATS_OK ||
	    (s = natsOptions_SetName(o, name)) != NATS_OK ||
	    (s = natsOptions_SetEventLoop(o, c, hook_attach, hook_read,
	    hook_write, hook_detach)) != NATS_OK ||
	    /* In event-loop mode: no flusher thread, the write hook. */
	    (s = natsOptions_SetSendAsap(o, true)) != NATS_OK ||
	    (s = natsOptions_SetMaxReconnect(o, 0)) != NATS_OK ||
	    (s = natsConnection_Connect(&c->nc, o)) != NATS_OK)
		die("%s: cannot connect to %s: %s", name, url,
		    natsStatus_GetText(s));
	natsOptions_Destroy(o);
	conn_apply(c);
}

/* An event on the loop: true if it was the connection's. */
static bool
conn_event(struct conn *c, const struct epoll_event *ev)
{
	uint64_t n;

	switch (ev->data.u64) {
	case EV_WAKE:
		(void)read(c->efd, &n, sizeof(n));
		conn_apply(c);
		return true;
	case EV_NATS:
		if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			natsConnection_ProcessReadEvent(c->nc);
		if (ev->events & EPOLLOUT)
			natsConnection_ProcessWriteEvent(c->nc);
		if (natsConnection_Status(c->nc) == NATS_CONN_STATUS_CLOSED ||
		    natsConnection_Status(c->nc) ==
		    NATS_CONN_STATUS_DISCONNECTED)
			die("lost the broker");
		return true;
	}
	return false;
}

/* --- the stream and consumers -------------------------------------------- */

/* In a child of its own, so that nats.c's threads never meet a fork. */
static void
setup(const char *url)
{
	uint64_t deadline = now_ms() + SETUP_MS;
	char subject[SUBJECT_MAX], name[32];
	const char *subj[] = { subject };
	natsConnection *nc = NULL;
	jsStreamConfig sc;
	jsConsumerConfig cc;
	jsErrCode jerr;
	jsCtx *js = NULL;
	natsStatus s;
	int st = 0;
	pid_t pid;
	uint32_t j;

	if ((pid = fork()) == -1)
		die("fork: %s", strerror(errno));
	if (pid > 0) {
		if (waitpid(pid, &st, 0) == -1 || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			die("the stream and consumers were not set up");
		return;
	}
	if (nats_Open(-1) != NATS_OK)
		_exit(1);
	snprintf(subject, sizeof(subject), "%s.w.*", PREFIX);
	jsStreamConfig_Init(&sc);
	sc.Name = STREAM;
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Retention = js_WorkQueuePolicy;
	sc.Storage = js_FileStorage;
	sc.Discard = js_DiscardNew;
	sc.DiscardNewPerSubject = true;
	sc.MaxMsgsPerSubject = 10000;
	/* JetStream may not take requests at once after the server
	 * listens: retried until the deadline. */
	for (;;) {
		jerr = 0;
		s = natsConnection_ConnectTo(&nc, url);
		if (s == NATS_OK)
			s = natsConnection_JetStream(&js, nc, NULL);
		if (s == NATS_OK)
			s = js_AddStream(NULL, js, &sc, NULL, &jerr);
		if (s == NATS_OK)
			break;
		jsCtx_Destroy(js);
		natsConnection_Destroy(nc);
		js = NULL;
		nc = NULL;
		if (now_ms() > deadline) {
			fprintf(stderr, "bench-nats-ref: stream: %s (%d)\n",
			    natsStatus_GetText(s), (int)jerr);
			_exit(1);
		}
		(void)poll(NULL, 0, 50);
	}
	for (j = 0; j < nw; j++) {
		snprintf(name, sizeof(name), "r%u", j);
		jsConsumerConfig_Init(&cc);
		cc.Durable = name;
		cc.FilterSubject = subjects[j];
		cc.AckPolicy = js_AckExplicit;
		cc.MaxAckPending = 1;
		cc.AckWait = (int64_t)30000 * 1000000;
		cc.DeliverPolicy = js_DeliverAll;
		if ((s = js_AddConsumer(NULL, js, STREAM, &cc, NULL, &jerr)) !=
		    NATS_OK) {
			fprintf(stderr, "bench-nats-ref: consumer %s: %s "
			    "(%d)\n", name, natsStatus_GetText(s), (int)jerr);
			_exit(1);
		}
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	nats_CloseAndWait(2000);
	_exit(0);
}

/* --- a consumer ------------------------------------------------------------ */

/* Pulls one message at a time: receipt, ack, next pull, all in one write. */
static void __attribute__((noreturn))
consumer(uint32_t j, int readyfd, const char *url)
{
	struct epoll_event evs[EVENTS_MAX];
	char name[32], next[SUBJECT_MAX], rsubject[SUBJECT_MAX];
	char inbox[SUBJECT_MAX];
	natsSubscription *sub;
	const char *st;
	natsStatus s;
	natsMsg *m;
	int epfd, i, nev;

	snprintf(name, sizeof(name), "r%u", j);
	snprintf(next, sizeof(next), "$JS.API.CONSUMER.MSG.NEXT.%s.%s",
	    STREAM, name);
	snprintf(rsubject, sizeof(rsubject), "%s.r.%s", PREFIX, name);
	snprintf(inbox, sizeof(inbox), "_INBOX.ref.%s", name);
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll: %s", strerror(errno));
	if (nats_Open(-1) != NATS_OK)
		die("%s: cannot initialise libnats", name);
	conn_init(&conn, epfd);
	conn_connect(&conn, url, name);
	if ((s = natsConnection_SubscribeSync(&sub, conn.nc, inbox)) !=
	    NATS_OK ||
	    (s = natsSubscription_SetPendingLimits(sub, -1, -1)) != NATS_OK ||
	    (s = natsConnection_PublishRequestString(conn.nc, next, inbox,
	    PULL_REQ)) != NATS_OK)
		die("%s: %s", name, natsStatus_GetText(s));
	conn_flush(&conn);
	if (write(readyfd, "", 1) != 1)
		die("%s: ready pipe: %s", name, strerror(errno));
	close(readyfd);
	for (;;) {
		if ((nev = epoll_wait(epfd, evs, EVENTS_MAX, -1)) == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (i = 0; i < nev; i++)
			(void)conn_event(&conn, &evs[i]);
		while (natsSubscription_NextMsg(&m, sub, 0) == NATS_OK) {
			if (natsMsg_GetDataLength(m) == 0 &&
			    natsMsgHeader_Get(m, "Status", &st) == NATS_OK) {
				/* 408: the pull request expired. */
				s = natsConnection_PublishRequestString(conn.nc,
				    next, inbox, PULL_REQ);
			} else if ((s = natsConnection_Publish(conn.nc,
			    rsubject, natsMsg_GetData(m),
			    natsMsg_GetDataLength(m) < 8 ? 0 : 8)) == NATS_OK &&
			    (s = natsConnection_PublishString(conn.nc,
			    natsMsg_GetReply(m), "+ACK")) == NATS_OK)
				s = natsConnection_PublishRequestString(conn.nc,
				    next, inbox, PULL_REQ);
			natsMsg_Destroy(m);
			if (s != NATS_OK)
				die("%s: %s", name, natsStatus_GetText(s));
		}
		conn_flush(&conn);
	}
}

static void
start_consumers(const char *url)
{
	uint64_t deadline;
	int pfd[2], n = 0;
	uint32_t j;
	char c;

	if (pipe2(pfd, O_CLOEXEC) == -1)
		die("pipe: %s", strerror(errno));
	for (j = 0; j < nw; j++) {
		if ((pids[j] = fork()) == -1)
			die("fork: %s", strerror(errno));
		if (pids[j] == 0) {
			(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(pfd[0]);
			consumer(j, pfd[1], url);
		}
	}
	close(pfd[1]);
	deadline = now_ms() + READY_MS;
	while ((uint32_t)n < nw) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		uint64_t now = now_ms();

		if (now >= deadline ||
		    poll(&p, 1, (int)(deadline - now)) == 0)
			die("the consumers did not connect within %d ms",
			    READY_MS);
		if (read(pfd[0], &c, 1) != 1)
			die("a consumer exited before it connected");
		n++;
	}
	close(pfd[0]);
}

/* --- the broadcasts ---------------------------------------------------- */

/* A broadcast: published to the R subjects, its number in front. */
static void
publish_all(uint64_t id, const uint8_t *msg, size_t len)
{
	static uint8_t buf[8 + FANOUT_MESSAGE_MAX];
	natsStatus st;
	uint32_t j;

	put_u64(buf, id);
	memcpy(buf + 8, msg, len);
	for (j = 0; j < nw; j++) {
		if (pubacks != NULL)
			st = natsConnection_PublishRequest(conn.nc,
			    subjects[j], ackinbox, buf, (int)len + 8);
		else
			st = natsConnection_Publish(conn.nc,
			    subjects[j], buf, (int)len + 8);
		if (st != NATS_OK)
			die("publish: %s", natsStatus_GetText(st));
	}
}

static void
drain(void)
{
	natsMsg *m;
	uint64_t id;

	while (pubacks != NULL &&
	    natsSubscription_NextMsg(&m, pubacks, 0) == NATS_OK)
		natsMsg_Destroy(m);
	while (natsSubscription_NextMsg(&m, receipts, 0) == NATS_OK) {
		if (natsMsg_GetDataLength(m) != 8)
			die("a receipt of %d bytes", natsMsg_GetDataLength(m));
		id = get_u64((const uint8_t *)natsMsg_GetData(m));
		natsMsg_Destroy(m);
		if (refclient_ack(&client, id) < 0)
			die("a receipt for no broadcast (%llu)",
			    (unsigned long long)id);
	}
}

static void __attribute__((noreturn))
stop(void)
{
	uint32_t j;

	for (j = 0; j < nw; j++)
		kill(pids[j], SIGKILL);
	for (j = 0; j < nw; j++)
		(void)waitpid(pids[j], NULL, 0);
	exit(0);
}

int
main(int argc, char *argv[])
{
	struct epoll_event evs[EVENTS_MAX];
	const char *path = NULL, *url = NULL;
	bool want_pubacks = false;
	char status[64];
	natsStatus s;
	uint64_t n = 0;
	sigset_t set;
	int ch, lfd, sfd, epfd, i, nev;
	uint32_t j;

	while ((ch = getopt(argc, argv, "n:s:u:a")) != -1) {
		switch (ch) {
		case 'n':
			if (parse_uint(optarg, 1, FANOUT_REMOTE_MAX, &n) < 0)
				usage();
			break;
		case 's':
			path = optarg;
			break;
		case 'u':
			url = optarg;
			break;
		case 'a':
			want_pubacks = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || n == 0 || path == NULL || url == NULL)
		usage();
	nw = (uint32_t)n;
	if ((pids = calloc(nw, sizeof(*pids))) == NULL ||
	    (subjects = calloc(nw, sizeof(*subjects))) == NULL)
		die("out of memory");
	for (j = 0; j < nw; j++)
		snprintf(subjects[j], sizeof(subjects[j]), "%s.w.r%u", PREFIX,
		    j);

	/* Before any nats.c thread: they inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1 ||
	    (sfd = signalfd(-1, &set, SFD_CLOEXEC)) == -1)
		die("signalfd: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);

	setup(url);
	start_consumers(url);

	(void)unlink(path);
	if ((lfd = unix_listen(path, 0600)) < 0)
		die("%s: %s", path, strerror(-lfd));
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &(struct epoll_event){
	    .events = EPOLLIN, .data.u64 = EV_CTL }) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &(struct epoll_event){
	    .events = EPOLLIN, .data.u64 = EV_SIGNAL }) == -1)
		die("epoll: %s", strerror(errno));
	if (nats_Open(-1) != NATS_OK)
		die("cannot initialise libnats");
	conn_init(&conn, epfd);
	conn_connect(&conn, url, "bench-nats-ref");
	refclient_init(&client, epfd, lfd, EV_CTL, EV_CLIENT, nw);
	/* Subscribed before the first publish on the same connection: the
	 * broker has the interest before any receipt can come. */
	snprintf(status, sizeof(status), "%s.r.*", PREFIX);
	if ((s = natsConnection_SubscribeSync(&receipts, conn.nc, status)) !=
	    NATS_OK ||
	    (s = natsSubscription_SetPendingLimits(receipts, -1, -1)) !=
	    NATS_OK)
		die("subscribe: %s", natsStatus_GetText(s));
	if (want_pubacks) {
		snprintf(ackinbox, sizeof(ackinbox), "_INBOX.ref.acks");
		if ((s = natsConnection_SubscribeSync(&pubacks, conn.nc,
		    ackinbox)) != NATS_OK ||
		    (s = natsSubscription_SetPendingLimits(pubacks, -1, -1)) !=
		    NATS_OK)
			die("subscribe: %s", natsStatus_GetText(s));
	}
	conn_flush(&conn);
	snprintf(status, sizeof(status), "%u consumers connected", nw);
	notify_ready(status);

	for (;;) {
		if ((nev = epoll_wait(epfd, evs, EVENTS_MAX, -1)) == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (i = 0; i < nev; i++) {
			if (conn_event(&conn, &evs[i]) ||
			    refclient_event(&client, &evs[i], publish_all))
				continue;
			if (evs[i].data.u64 == EV_SIGNAL)
				stop();
		}
		drain();
		conn_flush(&conn);
		refclient_flush(&client);
	}
}
