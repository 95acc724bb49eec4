/* SPDX-License-Identifier: MIT */
/*
 * fanout-bench: how close fanoutd comes to the limit.  For each pool size
 * it starts fanoutd (from the build tree, with a config file it writes) and
 * bench-ref, the minimal epoll fanout of reference.c, one after the other,
 * drives both through their control socket with the same client code, and
 * prints each figure for both with the ratio fanout/limit, so that noise
 * common to the run cancels out.  Every figure is the median of --runs
 * runs; the runs are interleaved (run 1 of every size and target, then run
 * 2...), so a slow moment hurts both sides.
 *
 *	fanout-bench [--json FILE] [--workers 3,16,64,256] [--runs 3]
 *	    [--startup 1000] [--duration MS] [--window 64] [--size 64]
 *	    [--socketpair] [--no-netns] [--keep] [--label TEXT]
 *	    [--attach CMD] [--fanoutd PATH] [--worker PATH] [--ref PATH]
 *	    [--remote 3,16] [--remote-duration MS] [--remote-state-dir DIR]
 *	    [--nats-ref-pubacks] [--nats-server PATH] [--remote-worker PATH]
 *	    [--nats-ref PATH]
 *
 * Per target, run and pool size N:
 *	ready		fork of the daemon to its READY=1 on our NOTIFY_SOCKET
 *	rss idle	daemon's Rss (smaps_rollup) right after READY=1
 *	closed loop	one 64-byte broadcast at a time: latency mean, p50,
 *			p99 as the client sees it (request written to
 *			CTL_END read); at least --duration ms and 200
 *			broadcasts, at most 3 x --duration
 *	pipelined	--window broadcasts in flight for --duration ms:
 *			broadcasts/s and deliveries/s (acks per second)
 *	cpu/bcast	daemon utime+stime (/proc/PID/stat) over a phase,
 *			divided by the broadcasts; workers: the sum over
 *			the daemon's children
 *	calls/bcast	read and write system calls (/proc/PID/io syscr +
 *			syscw) in the pipelined phase per broadcast, by the
 *			daemon and by all its children
 *	rss loaded	daemon's Rss after the traffic
 *	worker pss	mean Pss of the daemon's children after the traffic
 * Then the start-up alone at --startup workers (0: skip): ready time, rss
 * and worker pss.  Remote workers (issue 11), with nats-server installed:
 * fanoutd with 1 local and R remote workers (fanout-remote-worker, no
 * handler) against bench-nats-ref, the broker used directly (nats-ref.c),
 * each run with a nats-server of its own; the same figures, plus the
 * broker's cpu per broadcast.
 *
 * Workers listen on base_port + i, so everything runs in a network
 * namespace of our own (a user namespace too when not root) with only
 * loopback up: no port of the host is used and no traffic leaves it.
 * The benchmark asserts nothing; it prints.  --attach runs CMD (through
 * sh, %p: the target's pid, %w: its first worker's, %t: fanout or limit,
 * %W: every worker's, comma-separated, %n: N, %r: run) during
 * each pipelined phase and interrupts it after, e.g.
 *	--attach 'strace -c -f -p %p -o /tmp/%t-%n.strace'
 */
#include "config.h"

#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "notify.h"
#include "payload.h"
#include "sock.h"
#include "util.h"

#ifndef BENCH_TOP_BUILDDIR
#define BENCH_TOP_BUILDDIR	"."
#endif

#define SIZES_MAX	16
#define RUNS_MAX	15
#define CLOSED_MIN	200	/* closed-loop broadcasts per run, at least */
#define WARMUP_MAX	200	/* broadcasts before measuring, at most... */
#define WARMUP_MS	200	/* ...or for this long */
#define READY_TIMEOUT_MS 120000
#define REPLY_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS	20000
#define REMOTE_ACK_TIMEOUT_MS 5000	/* fanoutd's, with remote workers */

enum { T_FANOUT, T_LIMIT, T_COUNT };
static const char *const tnames[T_COUNT] = { "fanout", "limit" };

/* One run of one target at one size.  NAN: not measured. */
struct sample {
	double	ready_ms;
	double	cl_mean, cl_p50, cl_p99;	/* microseconds */
	double	cl_n;
	double	pl_rate, pl_deliv;		/* per second */
	double	pl_n;
	double	cpu_cl, cpu_pl, wcpu_pl;	/* microseconds per broadcast */
	double	rw_pl, wrw_pl;			/* read/write calls per bcast */
	double	bcpu_pl;			/* nats-server, us per bcast */
	double	rss_idle, rss_load, wpss;	/* KiB */
};

enum better { B_NONE, B_LOWER, B_HIGHER };

static const struct metric {
	const char	*key;		/* JSON */
	const char	*label;		/* table */
	size_t		 off;
	enum better	 better;
	bool		 startup;	/* also in the start-up table */
} metrics[] = {
	{ "ready_ms", "ready (spawn to READY=1) ms",
	    offsetof(struct sample, ready_ms), B_LOWER, true },
	{ "closed_mean_us", "closed loop mean us",
	    offsetof(struct sample, cl_mean), B_LOWER, false },
	{ "closed_p50_us", "closed loop p50 us",
	    offsetof(struct sample, cl_p50), B_LOWER, false },
	{ "closed_p99_us", "closed loop p99 us",
	    offsetof(struct sample, cl_p99), B_LOWER, false },
	{ "closed_samples", "closed loop broadcasts",
	    offsetof(struct sample, cl_n), B_NONE, false },
	{ "pipelined_bcast_per_s", "pipelined broadcasts/s",
	    offsetof(struct sample, pl_rate), B_HIGHER, false },
	{ "pipelined_deliveries_per_s", "pipelined deliveries/s",
	    offsetof(struct sample, pl_deliv), B_HIGHER, false },
	{ "pipelined_samples", "pipelined broadcasts",
	    offsetof(struct sample, pl_n), B_NONE, false },
	{ "daemon_cpu_us_closed", "daemon cpu us/bcast, closed",
	    offsetof(struct sample, cpu_cl), B_LOWER, false },
	{ "daemon_cpu_us_pipelined", "daemon cpu us/bcast, pipelined",
	    offsetof(struct sample, cpu_pl), B_LOWER, false },
	{ "workers_cpu_us_pipelined", "workers cpu us/bcast, pipelined",
	    offsetof(struct sample, wcpu_pl), B_LOWER, false },
	{ "broker_cpu_us_pipelined", "broker cpu us/bcast, pipelined",
	    offsetof(struct sample, bcpu_pl), B_LOWER, false },
	{ "daemon_rw_calls_pipelined", "daemon read+write calls/bcast",
	    offsetof(struct sample, rw_pl), B_LOWER, false },
	{ "workers_rw_calls_pipelined", "workers read+write calls/bcast",
	    offsetof(struct sample, wrw_pl), B_LOWER, false },
	{ "daemon_rss_idle_kib", "daemon rss KiB, idle",
	    offsetof(struct sample, rss_idle), B_LOWER, true },
	{ "daemon_rss_loaded_kib", "daemon rss KiB, after load",
	    offsetof(struct sample, rss_load), B_LOWER, false },
	{ "worker_pss_kib", "worker pss KiB (mean)",
	    offsetof(struct sample, wpss), B_LOWER, true },
};

struct bench {
	/* options */
	uint32_t	 sizes[SIZES_MAX];
	unsigned	 nsizes;
	unsigned	 runs;
	uint32_t	 startup;
	unsigned	 duration_ms;
	unsigned	 window;
	unsigned	 msgsize;
	bool		 pairs;
	bool		 netns;
	bool		 keep;
	const char	*json;
	const char	*label;
	const char	*attach;
	const char	*handler;	/* fanout's workers run it, pipe mode */
	const char	*handler_mode;
	bool		 spool;		/* fanout keeps queued messages on disk */
	char		*fanoutd, *worker, *ref;
	/* remote workers: R each, fanout's through nats-server */
	uint32_t	 rsizes[SIZES_MAX];
	unsigned	 nrsizes;
	unsigned	 rduration_ms;
	bool		 nats_refpubacks;
	char		*nats_server, *rworker, *nref;
	const char	*remote_state;	/* the remote workers' state dirs */
	pid_t		 broker;	/* the nats-server running, or 0 */

	char		 dir[128];	/* socket paths must stay short */
	int		 nfd;		/* our NOTIFY_SOCKET */
	uint16_t	 port;		/* next free base port */
	bool		 failed;	/* keep dir for the logs */
	/* [size][target][run], the start-up ones at index nsizes */
	struct sample	 s[SIZES_MAX + 1][T_COUNT][RUNS_MAX];
	struct sample	 rs[SIZES_MAX][T_COUNT][RUNS_MAX];
};

/* A control connection and the one request frame it sends over and over. */
struct client {
	int		 fd;
	struct rbuf	 in;
	uint8_t		*req;		/* window copies of the frame */
	size_t		 reqlen;
	uint64_t	 next_id;
	uint32_t	 workers;
	uint64_t	 acked;		/* sum of CTL_END acked */
	uint64_t	 bad;		/* replies other than all acked */
};

/* A running target. */
struct proc {
	pid_t		 pid;
	int		 pidfd;
	pid_t		*kids;
	size_t		 nkids;
};

static void __attribute__((format(printf, 1, 2)))
warnx_(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("fanout-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("fanout-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* The whole file, or as much as fits: /proc gives a page per read. */
static ssize_t
read_text(const char *path, char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	while (off < len - 1 && (n = read(fd, buf + off, len - 1 - off)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	return (ssize_t)off;
}

static int
write_text(const char *path, const char *text)
{
	size_t len = strlen(text);
	int fd, r = 0;

	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return -1;
	if (write(fd, text, len) != (ssize_t)len)
		r = -1;
	close(fd);
	return r;
}

/* --- /proc ------------------------------------------------------------- */

static long	clk_tck;

/* utime + stime in seconds. */
static double
proc_cpu(pid_t pid)
{
	unsigned long long ut, st;
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	/* The command name may hold anything: fields count from its ')'. */
	if (read_text(path, buf, sizeof(buf)) <= 0 ||
	    (p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
	    "%llu %llu", &ut, &st) != 2)
		return NAN;
	return (double)(ut + st) / (double)clk_tck;
}

/* Read and write system calls (readv, writev... included) made so far. */
static double
proc_rw(pid_t pid)
{
	unsigned long long r, w;
	char path[64], buf[1024], *p, *q;

	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	if (read_text(path, buf, sizeof(buf)) <= 0 ||
	    (p = strstr(buf, "syscr: ")) == NULL ||
	    (q = strstr(buf, "syscw: ")) == NULL ||
	    sscanf(p + 7, "%llu", &r) != 1 || sscanf(q + 7, "%llu", &w) != 1)
		return NAN;
	return (double)(r + w);
}

/* A field of /proc/PID/smaps_rollup ("Rss", "Pss") in KiB. */
static double
proc_mem(pid_t pid, const char *field)
{
	char path[64], buf[4096], *p;
	size_t flen = strlen(field);

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	if (read_text(path, buf, sizeof(buf)) <= 0)
		return NAN;
	for (p = buf; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, field, flen) == 0 && p[flen] == ':')
			return strtod(p + flen + 1, NULL);
	}
	return NAN;
}

/* The target's children: its workers or receivers. */
static void
proc_kids(struct proc *pr)
{
	char path[64], buf[65536], *p, *end;
	size_t cap = 0;
	long v;

	free(pr->kids);
	pr->kids = NULL;
	pr->nkids = 0;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children",
	    (int)pr->pid, (int)pr->pid);
	if (read_text(path, buf, sizeof(buf)) <= 0)
		return;
	for (p = buf; (v = strtol(p, &end, 10)) > 0; p = end) {
		if (pr->nkids == cap) {
			cap = cap ? cap * 2 : 64;
			if ((pr->kids = reallocarray(pr->kids, cap,
			    sizeof(pid_t))) == NULL)
				die("out of memory");
		}
		pr->kids[pr->nkids++] = (pid_t)v;
	}
}

static double
proc_pss(pid_t pid)
{
	return proc_mem(pid, "Pss");
}

/* A figure summed over the daemon's children (NAN without any). */
static double
kids_sum(const struct proc *pr, double (*figure)(pid_t))
{
	double sum = 0;
	size_t i;

	if (pr->nkids == 0)
		return NAN;
	for (i = 0; i < pr->nkids; i++)
		sum += figure(pr->kids[i]);
	return sum;
}

/* --- the network namespace --------------------------------------------- */

static void
netns_enter(void)
{
	struct ifreq ifr;
	char map[64];
	uid_t uid = geteuid();
	gid_t gid = getegid();
	int fd;

	if (uid == 0) {
		if (unshare(CLONE_NEWNET) == -1)
			die("cannot create a network namespace: %s (use "
			    "--no-netns to run in this one)", strerror(errno));
	} else {
		/* Unprivileged: the network namespace needs a user one. */
		if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == -1)
			die("cannot create a user and network namespace: %s "
			    "(use --no-netns to run in this one)",
			    strerror(errno));
		(void)write_text("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid,
		    (unsigned)uid);
		if (write_text("/proc/self/uid_map", map) == -1)
			die("uid_map: %s", strerror(errno));
		snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid,
		    (unsigned)gid);
		if (write_text("/proc/self/gid_map", map) == -1)
			die("gid_map: %s", strerror(errno));
	}
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    ioctl(fd, SIOCGIFFLAGS, &ifr) == -1)
		die("loopback: %s", strerror(errno));
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) == -1)
		die("cannot bring loopback up: %s", strerror(errno));
	close(fd);
}

/* --- targets ----------------------------------------------------------- */

/* n + 1 consecutive ports never handed out before in this namespace, so
 * that nothing lingering from an earlier run is in the way. */
static uint16_t
port_take(struct bench *bn, uint32_t n)
{
	uint16_t p;

	if ((uint32_t)bn->port + n + 1 > 65000)
		bn->port = 10000;
	p = bn->port;
	bn->port = (uint16_t)(bn->port + n + 1);
	return p;
}

static void
log_tail(const char *path)
{
	char buf[2048];
	ssize_t n;
	off_t end;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return;
	end = lseek(fd, 0, SEEK_END);
	(void)lseek(fd, end > (off_t)sizeof(buf) - 1 ?
	    end - (off_t)sizeof(buf) + 1 : 0, SEEK_SET);
	if ((n = read(fd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = '\0';
		fprintf(stderr, "--- end of %s ---\n%s---\n", path, buf);
	}
	close(fd);
}

/*
 * Forks and execs argv, its output appended to logpath, with our
 * NOTIFY_SOCKET if notify; the time of the fork goes to *t0 if not NULL.
 */
static pid_t
start_prog(char *const argv[], const char *logpath, bool notify,
    uint64_t *t0)
{
	int logfd;
	pid_t pid;

	logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd == -1)
		die("%s: %s", logpath, strerror(errno));
	if (t0 != NULL)
		*t0 = now_ns();
	if ((pid = fork()) == -1)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		sigset_t none;
		int null = open("/dev/null", O_RDONLY);

		/* Gone with us if we are killed. */
		(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (!notify)
			unsetenv("NOTIFY_SOCKET");
		if (null == -1 || dup2(null, 0) == -1 ||
		    dup2(logfd, 1) == -1 || dup2(logfd, 2) == -1)
			_exit(127);
		execv(argv[0], argv);
		fprintf(stderr, "fanout-bench: %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	close(logfd);
	return pid;
}

/*
 * Starts argv with our NOTIFY_SOCKET and waits for its READY=1; the time
 * from fork to READY=1 goes to *ready_ms.
 */
static int
spawn(struct bench *bn, char *const argv[], const char *logpath,
    struct proc *pr, double *ready_ms)
{
	struct notify_msg m;
	uint64_t t0, deadline;
	int r;

	/* Stale news from a target gone. */
	while ((r = notify_recv(bn->nfd, &m)) == 0 || r == -EBADMSG)
		;
	memset(pr, 0, sizeof(*pr));
	pr->pid = start_prog(argv, logpath, true, &t0);
	if ((pr->pidfd = (int)syscall(SYS_pidfd_open, pr->pid, 0)) == -1)
		die("pidfd_open: %s", strerror(errno));

	deadline = t0 + (uint64_t)READY_TIMEOUT_MS * 1000000;
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = bn->nfd, .events = POLLIN },
			{ .fd = pr->pidfd, .events = POLLIN },
		};
		uint64_t now = now_ns();

		if (now >= deadline) {
			warnx_("%s: no READY=1 within %d ms", argv[0],
			    READY_TIMEOUT_MS);
			break;
		}
		if (poll(pfd, 2, (int)((deadline - now) / 1000000) + 1) == -1 &&
		    errno != EINTR)
			die("poll: %s", strerror(errno));
		while ((r = notify_recv(bn->nfd, &m)) == 0 || r == -EBADMSG)
			if (r == 0 && m.pid == pr->pid && m.ready) {
				*ready_ms = (double)(now_ns() - t0) / 1e6;
				return 0;
			}
		if (pfd[1].revents) {
			warnx_("%s exited before READY=1", argv[0]);
			break;
		}
	}
	log_tail(logpath);
	bn->failed = true;
	kill(pr->pid, SIGKILL);
	(void)waitpid(pr->pid, NULL, 0);
	close(pr->pidfd);
	return -1;
}

/* True when our one child left is the broker, which outlives a target. */
static bool
only_broker_left(const struct bench *bn)
{
	char path[64], buf[4096], *end;

	if (bn->broker == 0)
		return false;
	snprintf(path, sizeof(path), "/proc/self/task/%d/children",
	    (int)getpid());
	if (read_text(path, buf, sizeof(buf)) <= 0)
		return false;
	return strtol(buf, &end, 10) == bn->broker &&
	    strtol(end, NULL, 10) == 0;
}

/* Reaps what is left: we are the subreaper of the target's children. */
static void
reap_orphans(const struct bench *bn, const struct proc *pr)
{
	uint64_t deadline = now_ns() + 5000000000ULL;
	bool killed = false;
	size_t i;

	for (;;) {
		pid_t r = waitpid(-1, NULL, WNOHANG);

		if (r > 0)
			continue;
		if ((r == -1 && errno == ECHILD) || only_broker_left(bn))
			return;
		if (now_ns() > deadline) {
			if (killed)
				break;
			for (i = 0; i < pr->nkids; i++)
				kill(pr->kids[i], SIGKILL);
			killed = true;
			deadline = now_ns() + 5000000000ULL;
		}
		sleep_ms(10);
	}
	warnx_("children left behind: %s", bn->broker ? "not waited for" :
	    "waiting");
	while (bn->broker == 0 && waitpid(-1, NULL, 0) > 0)
		;
}

/*
 * Reads what the targets said on NOTIFY_SOCKET since.  Its queue is short
 * (net.unix.max_dgram_qlen, 10 by default) and sd_notify() blocks on a
 * full one: R remote workers saying STOPPING=1 at once would hang.
 */
static void
notify_drain(struct bench *bn)
{
	struct notify_msg m;
	int r;

	while ((r = notify_recv(bn->nfd, &m)) == 0 || r == -EBADMSG)
		;
}

static void
stop(struct bench *bn, struct proc *pr, const char *name)
{
	uint64_t deadline = now_ns() + (uint64_t)STOP_TIMEOUT_MS * 1000000;
	struct pollfd pfd[2] = {
		{ .fd = pr->pidfd, .events = POLLIN },
		{ .fd = bn->nfd, .events = POLLIN },
	};
	int st = 0;

	kill(pr->pid, SIGTERM);
	for (;;) {
		uint64_t now = now_ns();

		notify_drain(bn);
		if (now >= deadline || poll(pfd, 2, (int)((deadline - now) /
		    1000000) + 1) == -1 || pfd[0].revents != 0)
			break;
	}
	if (pfd[0].revents == 0) {
		warnx_("%s (pid %d) did not stop within %d ms: killed", name,
		    (int)pr->pid, STOP_TIMEOUT_MS);
		kill(pr->pid, SIGKILL);
		bn->failed = true;
	}
	(void)waitpid(pr->pid, &st, 0);
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
	    !(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM)) {
		warnx_("%s (pid %d) ended with status 0x%x", name,
		    (int)pr->pid, st);
		bn->failed = true;
	}
	close(pr->pidfd);
	reap_orphans(bn, pr);
	free(pr->kids);
	pr->kids = NULL;
	pr->nkids = 0;
}

static void
write_conf(struct bench *bn, const char *path, uint32_t n, uint16_t port,
    const char *sock, unsigned ack_ms)
{
	FILE *f;

	if ((f = fopen(path, "we")) == NULL)
		die("%s: %s", path, strerror(errno));
	/* Generous timeouts: a loaded machine must not turn into a
	 * supervision event in the middle of a measurement. */
	fprintf(f,
	    "workers = %u;\n"
	    "base_port = %u;\n"
	    "listen_address = \"127.0.0.1\";\n"
	    "control_socket = \"%s\";\n"
	    "worker_path = \"%s\";\n"
	    "max_message_bytes = %u;\n"
	    "ack_timeout_ms = %u;\n"
	    "start_timeout_ms = 120000;\n"
	    "stall_timeout_ms = 120000;\n",
	    n, (unsigned)port, sock, bn->worker,
	    bn->msgsize > 1024 ? bn->msgsize : 1024, ack_ms);
	if (bn->handler != NULL)
		fprintf(f, "handler = \"%s\";\nhandler_mode = \"%s\";\n"
		    "handler_timeout_ms = 60000;\n", bn->handler,
		    bn->handler_mode);
	/* With every worker healthy nothing should reach the disk: the
	 * spool's cost is its bookkeeping on the fast path. */
	if (bn->spool)
		fprintf(f, "spool = true;\nspool_dir = \"%s\";\n", bn->dir);
	if (fclose(f) == EOF)
		die("%s: %s", path, strerror(errno));
}

/* --- the control client ------------------------------------------------ */

static void
client_open(struct bench *bn, struct client *cl, const char *sock,
    uint32_t workers)
{
	/* BRIEF: like fanoutctl send -, which prints only failures. */
	struct ctl_send req = { .timeout_ms = 0,
	    .flags = CTL_SEND_WAIT | CTL_SEND_BRIEF };
	size_t plen = CTL_SEND_LEN + bn->msgsize;
	unsigned i;
	uint8_t *p;

	memset(cl, 0, sizeof(*cl));
	if ((cl->fd = unix_connect(sock, 10000)) < 0)
		die("%s: %s", sock, strerror(-cl->fd));
	rbuf_init(&cl->in, 4096);
	cl->workers = workers;
	cl->reqlen = FANOUT_HDR_LEN + plen;
	if ((cl->req = malloc(cl->reqlen * bn->window)) == NULL)
		die("out of memory");
	for (i = 0; i < bn->window; i++) {
		p = cl->req + i * cl->reqlen;
		frame_hdr_encode(p, CTL_SEND, (uint32_t)plen, 0);
		ctl_send_encode(p + FANOUT_HDR_LEN, &req);
		memset(p + FANOUT_HDR_LEN + CTL_SEND_LEN, 'm', bn->msgsize);
	}
}

static void
client_close(struct client *cl)
{
	close(cl->fd);
	rbuf_free(&cl->in);
	free(cl->req);
}

/* Writes k requests in one write. */
static void
client_send(struct client *cl, unsigned k)
{
	size_t len = cl->reqlen * k, off = 0;
	unsigned i;
	ssize_t n;

	for (i = 0; i < k; i++)
		put_u64(cl->req + i * cl->reqlen + 8, ++cl->next_id);
	while (off < len) {
		if ((n = write(cl->fd, cl->req + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			die("control socket: %s", strerror(errno));
		}
		off += (size_t)n;
	}
}

/* Reads what is there (waiting for something): the CTL_END frames read. */
static unsigned
client_recv(struct client *cl)
{
	struct pollfd pfd = { .fd = cl->fd, .events = POLLIN };
	struct frame_hdr h;
	struct ctl_end e;
	const uint8_t *p;
	unsigned ends = 0;
	ssize_t n;
	int r;

	if (poll(&pfd, 1, REPLY_TIMEOUT_MS) == 0)
		die("no reply within %d ms", REPLY_TIMEOUT_MS);
	if ((n = rbuf_read(&cl->in, cl->fd)) <= 0)
		die("control socket: %s", n == 0 ? "closed by the daemon" :
		    strerror((int)-n));
	while ((r = rbuf_next(&cl->in, &h, &p)) == 1) {
		if (h.type != CTL_END)
			continue;	/* fanoutd's per-worker records */
		if (ctl_end_decode(p, h.len, &e) < 0)
			die("a CTL_END that does not decode");
		if (e.result != CTL_RES_OK || e.acked != cl->workers)
			cl->bad++;
		cl->acked += e.acked;
		ends++;
	}
	if (r < 0)
		die("bad reply frame: %s", frame_strerror(r));
	return ends;
}

/* One broadcast, waiting for its reply: the latency in nanoseconds. */
static uint64_t
client_one(struct client *cl)
{
	uint64_t t0 = now_ns();

	client_send(cl, 1);
	while (client_recv(cl) == 0)
		;
	return now_ns() - t0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
phase_closed(struct bench *bn, struct client *cl, struct sample *s)
{
	uint64_t dur = (uint64_t)bn->duration_ms * 1000000;
	uint64_t t0 = now_ns(), sum = 0, *lat = NULL;
	size_t n = 0, cap = 0;

	for (;;) {
		uint64_t el = now_ns() - t0;

		if ((el >= dur && n >= CLOSED_MIN) || el >= 3 * dur)
			break;
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			if ((lat = reallocarray(lat, cap, sizeof(*lat))) ==
			    NULL)
				die("out of memory");
		}
		lat[n] = client_one(cl);
		sum += lat[n++];
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	s->cl_n = (double)n;
	s->cl_mean = (double)sum / (double)n / 1e3;
	s->cl_p50 = (double)lat[(n - 1) / 2] / 1e3;
	s->cl_p99 = (double)lat[(size_t)ceil(0.99 * (double)n) - 1] / 1e3;
	free(lat);
}

/* Runs --attach for this phase: the tool's pid, or -1. */
static pid_t
attach_start(struct bench *bn, const struct proc *pr, int t, uint32_t n,
    unsigned run)
{
	char cmd[4096];
	size_t o = 0;
	const char *a;
	pid_t tool;

	o = (size_t)snprintf(cmd, sizeof(cmd), "exec ");
	for (a = bn->attach; *a != '\0' && o < sizeof(cmd) - 16; a++) {
		if (a[0] == '%' && a[1] != '\0') {
			a++;
			if (*a == 'p')
				o += (size_t)snprintf(cmd + o, 16, "%d",
				    (int)pr->pid);
			else if (*a == 'w')
				o += (size_t)snprintf(cmd + o, 16, "%d",
				    pr->nkids ? (int)pr->kids[0] : 0);
			else if (*a == 'W') {
				size_t k;

				/* every worker: perf record -p takes a list */
				for (k = 0; k < pr->nkids &&
				    o < sizeof(cmd) - 32; k++)
					o += (size_t)snprintf(cmd + o, 16,
					    "%s%d", k ? "," : "",
					    (int)pr->kids[k]);
			} else if (*a == 't')
				o += (size_t)snprintf(cmd + o, 16, "%s",
				    tnames[t]);
			else if (*a == 'n')
				o += (size_t)snprintf(cmd + o, 16, "%u", n);
			else if (*a == 'r')
				o += (size_t)snprintf(cmd + o, 16, "%u",
				    run + 1);
			else
				cmd[o++] = *a;
		} else
			cmd[o++] = *a;
	}
	cmd[o] = '\0';
	if ((tool = fork()) == -1)
		die("fork: %s", strerror(errno));
	if (tool == 0) {
		unsetenv("NOTIFY_SOCKET");
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	/* Time for strace or perf to attach. */
	sleep_ms(500);
	return tool;
}

static void
attach_stop(pid_t tool)
{
	int i;

	kill(tool, SIGINT);
	for (i = 0; i < 1000; i++) {
		if (waitpid(tool, NULL, WNOHANG) == tool)
			return;
		sleep_ms(10);
	}
	kill(tool, SIGKILL);
	(void)waitpid(tool, NULL, 0);
}

static void
phase_pipelined(struct bench *bn, struct client *cl, struct sample *s)
{
	uint64_t dur = (uint64_t)bn->duration_ms * 1000000;
	uint64_t t0 = now_ns(), tlast = t0, acked0 = cl->acked;
	unsigned inflight = 0, k;
	uint64_t done = 0;

	for (;;) {
		if (now_ns() - t0 < dur && (k = bn->window - inflight) > 0) {
			client_send(cl, k);
			inflight += k;
		}
		if (inflight == 0)
			break;
		k = client_recv(cl);
		inflight -= k;
		done += k;
		tlast = now_ns();
	}
	s->pl_n = (double)done;
	s->pl_rate = (double)done / ((double)(tlast - t0) / 1e9);
	s->pl_deliv = (double)(cl->acked - acked0) /
	    ((double)(tlast - t0) / 1e9);
}

static void
sample_clear(struct sample *s)
{
	double *v = (double *)s;
	size_t i;

	for (i = 0; i < sizeof(*s) / sizeof(double); i++)
		v[i] = NAN;
}

/*
 * The traffic phases against a target that is READY: warm-up, closed
 * loop, pipelined, with the /proc figures; every reply must say that
 * expect workers acked.  n and run only label --attach and warnings.
 */
static void
measure(struct bench *bn, int t, struct proc *pr, const char *sock,
    uint32_t expect, uint32_t n, unsigned run, struct sample *s)
{
	struct client cl;
	double c0, c1, w0, w1, b0 = NAN, rw0, wrw0;
	uint64_t before;
	pid_t tool = -1;

	client_open(bn, &cl, sock, expect);
	before = now_ns();
	while (cl.next_id < WARMUP_MAX &&
	    now_ns() - before < (uint64_t)WARMUP_MS * 1000000)
		(void)client_one(&cl);

	before = cl.next_id;
	c0 = proc_cpu(pr->pid);
	phase_closed(bn, &cl, s);
	c1 = proc_cpu(pr->pid);
	s->cpu_cl = (c1 - c0) * 1e6 / (double)(cl.next_id - before);

	if (bn->attach != NULL)
		tool = attach_start(bn, pr, t, n, run);
	c0 = proc_cpu(pr->pid);
	w0 = kids_sum(pr, proc_cpu);
	rw0 = proc_rw(pr->pid);
	wrw0 = kids_sum(pr, proc_rw);
	if (bn->broker != 0)
		b0 = proc_cpu(bn->broker);
	phase_pipelined(bn, &cl, s);
	c1 = proc_cpu(pr->pid);
	w1 = kids_sum(pr, proc_cpu);
	if (bn->broker != 0)
		s->bcpu_pl = (proc_cpu(bn->broker) - b0) * 1e6 / s->pl_n;
	s->rw_pl = (proc_rw(pr->pid) - rw0) / s->pl_n;
	s->wrw_pl = (kids_sum(pr, proc_rw) - wrw0) / s->pl_n;
	if (tool != -1) {
		attach_stop(tool);
		printf("  (attached during %s N=%u run %u: %.0f broadcasts, "
		    "%.0f deliveries)\n", tnames[t], n, run + 1, s->pl_n,
		    s->pl_n * expect);
		fflush(stdout);
	}
	s->cpu_pl = (c1 - c0) * 1e6 / s->pl_n;
	s->wcpu_pl = (w1 - w0) * 1e6 / s->pl_n;

	s->rss_load = proc_mem(pr->pid, "Rss");
	s->wpss = kids_sum(pr, proc_pss) / (double)pr->nkids;
	if (cl.bad > 0) {
		warnx_("%s N=%u: %llu replies were not \"every worker "
		    "acked\"", tnames[t], n, (unsigned long long)cl.bad);
		bn->failed = true;
	}
	client_close(&cl);
}

/*
 * Starts target t as spawn does, then takes its idle RSS and its children:
 * fanoutd with the configuration conf, or the reference ref with N, the
 * control socket sock and its own options ropt (NULL-ended, 4 at most).
 */
static int
target_start(struct bench *bn, int t, char *conf, char *ref,
    char *const ropt[], uint32_t n, char *sock, const char *logp,
    struct proc *pr, struct sample *s)
{
	char nbuf[16];
	char *argv[10];
	size_t argc = 0;

	if (t == T_FANOUT) {
		argv[argc++] = bn->fanoutd;
		argv[argc++] = (char *)"-c";
		argv[argc++] = conf;
	} else {
		snprintf(nbuf, sizeof(nbuf), "%u", n);
		argv[argc++] = ref;
		argv[argc++] = (char *)"-n";
		argv[argc++] = nbuf;
		argv[argc++] = (char *)"-s";
		argv[argc++] = sock;
		while (*ropt != NULL && argc < nitems(argv) - 1)
			argv[argc++] = *ropt++;
	}
	argv[argc] = NULL;
	if (spawn(bn, argv, logp, pr, &s->ready_ms) < 0)
		return -1;
	s->rss_idle = proc_mem(pr->pid, "Rss");
	proc_kids(pr);
	return 0;
}

/* One target at one size: start it, measure, stop it. */
static int
run_one(struct bench *bn, int t, uint32_t n, unsigned run, bool traffic,
    struct sample *s)
{
	char conf[PATH_MAX], sock[PATH_MAX], logp[PATH_MAX];
	char pbuf[16];
	char *xopt[] = { (char *)"-x", NULL };
	char *popt[] = { (char *)"-p", pbuf, NULL };
	struct proc pr;
	uint16_t port = port_take(bn, n);

	sample_clear(s);
	snprintf(sock, sizeof(sock), "%s/%s-%u.sock", bn->dir, tnames[t], n);
	snprintf(logp, sizeof(logp), "%s/%s.log", bn->dir, tnames[t]);
	snprintf(pbuf, sizeof(pbuf), "%u", (unsigned)port);
	if (t == T_FANOUT) {
		snprintf(conf, sizeof(conf), "%s/fanout.conf", bn->dir);
		write_conf(bn, conf, n, port, sock, 120000);
	}
	if (target_start(bn, t, conf, bn->ref, bn->pairs ? xopt : popt, n,
	    sock, logp, &pr, s) < 0)
		return -1;
	if (pr.nkids != n)
		warnx_("%s N=%u: %zu children, not %u: worker figures are "
		    "off", tnames[t], n, pr.nkids, n);
	if (traffic)
		measure(bn, t, &pr, sock, n, n, run, s);
	else
		s->wpss = kids_sum(&pr, proc_pss) / (double)pr.nkids;
	stop(bn, &pr, tnames[t]);
	return 0;
}

/* --- remote workers ---------------------------------------------------- */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)f;
	if (flag == FTW_DP)
		(void)rmdir(path);
	else
		(void)unlink(path);
	return 0;
}

static void
rm_tree(const char *path)
{
	(void)nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A port of 127.0.0.1 nobody listens on (the kernel's pick). */
static uint16_t
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		die("a free port: %s", strerror(errno));
	close(fd);
	return ntohs(sin.sin_port);
}

/* Waits for pid to end, at most ms, then kills it: its wait status. */
static int
end_prog(pid_t pid, int sig, unsigned ms, const char *name,
    struct bench *bn)
{
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000;
	int st = 0;

	kill(pid, sig);
	while (waitpid(pid, &st, WNOHANG) == 0) {
		notify_drain(bn);
		if (now_ns() > deadline) {
			warnx_("%s (pid %d) did not stop within %u ms: killed",
			    name, (int)pid, ms);
			kill(pid, SIGKILL);
			(void)waitpid(pid, &st, 0);
			bn->failed = true;
			break;
		}
		sleep_ms(5);
	}
	return st;
}

/* nats-server with JetStream, a store of its own, on a free port; back
 * when it takes connections (it has no readiness notification, and its
 * clients retry anyway). */
static int
broker_start(struct bench *bn, char *url, size_t urllen)
{
	char store[PATH_MAX], logp[PATH_MAX], pbuf[16];
	char *argv[] = { bn->nats_server, (char *)"-a", (char *)"127.0.0.1",
	    (char *)"-p", pbuf, (char *)"-js", (char *)"-sd", store, NULL };
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	uint64_t deadline = now_ns() + (uint64_t)READY_TIMEOUT_MS * 1000000;
	uint16_t port = free_port();
	int fd, st;

	snprintf(store, sizeof(store), "%s/js", bn->dir);
	snprintf(logp, sizeof(logp), "%s/nats-server.log", bn->dir);
	snprintf(pbuf, sizeof(pbuf), "%u", (unsigned)port);
	snprintf(url, urllen, "nats://127.0.0.1:%u", (unsigned)port);
	rm_tree(store);
	bn->broker = start_prog(argv, logp, false, NULL);
	sin.sin_port = htons(port);
	for (;;) {
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) ==
		    -1)
			die("socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
			close(fd);
			return 0;
		}
		close(fd);
		if (waitpid(bn->broker, &st, WNOHANG) == bn->broker) {
			warnx_("nats-server exited (status 0x%x)", st);
			break;
		}
		if (now_ns() > deadline) {
			warnx_("nats-server: no listener within %d ms",
			    READY_TIMEOUT_MS);
			kill(bn->broker, SIGKILL);
			(void)waitpid(bn->broker, NULL, 0);
			break;
		}
		sleep_ms(10);
	}
	log_tail(logp);
	bn->broker = 0;
	bn->failed = true;
	return -1;
}

static void
broker_stop(struct bench *bn)
{
	char store[PATH_MAX];

	if (bn->broker == 0)
		return;
	(void)end_prog(bn->broker, SIGTERM, STOP_TIMEOUT_MS, "nats-server",
	    bn);
	bn->broker = 0;
	snprintf(store, sizeof(store), "%s/js", bn->dir);
	rm_tree(store);
}

/* fanout-remote-worker r0..rR-1, no handler: back when all are READY=1
 * (their consumers exist and they pull), their pids in pids. */
static int
rworkers_start(struct bench *bn, const char *url, uint32_t n, pid_t *pids)
{
	char conf[PATH_MAX], logp[PATH_MAX], state[PATH_MAX], name[16];
	char *argv[] = { bn->rworker, (char *)"-n", name, (char *)"-c", conf,
	    (char *)"-s", state, NULL };
	uint64_t deadline = now_ns() + (uint64_t)READY_TIMEOUT_MS * 1000000;
	struct notify_msg m;
	uint32_t j, ready = 0;
	bool *up;
	FILE *f;
	int r;

	snprintf(conf, sizeof(conf), "%s/remote-worker.conf", bn->dir);
	snprintf(logp, sizeof(logp), "%s/remote-worker.log", bn->dir);
	if ((f = fopen(conf, "we")) == NULL)
		die("%s: %s", conf, strerror(errno));
	fprintf(f, "nats_servers = [ \"%s\" ];\nmax_message_bytes = %u;\n",
	    url, bn->msgsize > 1024 ? bn->msgsize : 1024);
	if (fclose(f) == EOF)
		die("%s: %s", conf, strerror(errno));
	if ((up = calloc(n, sizeof(*up))) == NULL)
		die("out of memory");
	while ((r = notify_recv(bn->nfd, &m)) == 0 || r == -EBADMSG)
		;
	for (j = 0; j < n; j++) {
		snprintf(name, sizeof(name), "r%u", j);
		snprintf(state, sizeof(state), "%s/state.r%u", bn->remote_state,
		    j);
		rm_tree(state);
		if (mkdir(state, 0700) == -1)
			die("%s: %s", state, strerror(errno));
		pids[j] = start_prog(argv, logp, true, NULL);
	}
	while (ready < n) {
		struct pollfd pfd = { .fd = bn->nfd, .events = POLLIN };

		if (now_ns() > deadline) {
			warnx_("remote workers: %u of %u READY=1 within %d ms",
			    ready, n, READY_TIMEOUT_MS);
			goto fail;
		}
		(void)poll(&pfd, 1, 100);
		while ((r = notify_recv(bn->nfd, &m)) == 0 || r == -EBADMSG)
			for (j = 0; r == 0 && m.ready && j < n; j++)
				if (pids[j] == m.pid && !up[j]) {
					up[j] = true;
					ready++;
				}
		for (j = 0; j < n; j++)
			if (!up[j] && waitpid(pids[j], NULL, WNOHANG) ==
			    pids[j]) {
				warnx_("remote worker r%u exited before "
				    "READY=1", j);
				pids[j] = 0;
				goto fail;
			}
	}
	free(up);
	return 0;
fail:
	log_tail(logp);
	for (j = 0; j < n; j++)
		if (pids[j] != 0)
			(void)end_prog(pids[j], SIGKILL, STOP_TIMEOUT_MS,
			    "remote worker", bn);
	free(up);
	bn->failed = true;
	return -1;
}

static void
rworkers_stop(struct bench *bn, uint32_t n, pid_t *pids)
{
	uint32_t j;
	int st;

	for (j = 0; j < n; j++)
		kill(pids[j], SIGTERM);
	for (j = 0; j < n; j++) {
		st = end_prog(pids[j], SIGTERM, STOP_TIMEOUT_MS,
		    "remote worker", bn);
		if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
		    !(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM)) {
			warnx_("remote worker r%u ended with status 0x%x", j,
			    st);
			bn->failed = true;
		}
	}
}

/*
 * R remote workers, one run: a broker of its own, then fanoutd (1 local
 * worker, remote_workers r0..) and R fanout-remote-worker processes, or
 * bench-nats-ref with R consumers; measured as run_one does, each reply
 * counting 1 + R acks (fanout) or R (limit).
 */
static int
run_remote(struct bench *bn, int t, uint32_t n, unsigned run,
    struct sample *s)
{
	char conf[PATH_MAX], sock[PATH_MAX], logp[PATH_MAX], url[64];
	char *ropt[] = { (char *)"-u", url,
	    bn->nats_refpubacks ? (char *)"-a" : NULL, NULL };
	struct proc pr;
	unsigned duration = bn->duration_ms;
	uint64_t t0;
	pid_t *rpids = NULL;
	size_t nlocal;
	uint32_t j;
	int r = -1;
	FILE *f;

	sample_clear(s);
	if (broker_start(bn, url, sizeof(url)) < 0)
		return -1;
	snprintf(sock, sizeof(sock), "%s/%s-r%u.sock", bn->dir, tnames[t], n);
	snprintf(logp, sizeof(logp), "%s/%s-remote.log", bn->dir, tnames[t]);
	if (t == T_FANOUT) {
		snprintf(conf, sizeof(conf), "%s/fanout-remote.conf", bn->dir);
		/* Below REPLY_TIMEOUT_MS: a receipt fanoutd missed costs a
		 * reply that says so, not the whole benchmark. */
		write_conf(bn, conf, 1, port_take(bn, 1), sock,
		    REMOTE_ACK_TIMEOUT_MS);
		if ((f = fopen(conf, "ae")) == NULL)
			die("%s: %s", conf, strerror(errno));
		fprintf(f, "nats_servers = [ \"%s\" ];\nremote_workers = [ ",
		    url);
		for (j = 0; j < n; j++)
			fprintf(f, "%s\"r%u\"", j ? ", " : "", j);
		fprintf(f, " ];\n");
		if (fclose(f) == EOF)
			die("%s: %s", conf, strerror(errno));
	}
	t0 = now_ns();
	if (target_start(bn, t, conf, bn->nref, ropt, n, sock, logp, &pr,
	    s) < 0)
		goto out;
	nlocal = pr.nkids;
	if (t == T_FANOUT) {
		/* Its workers: the local one and the remote ones. */
		if ((rpids = calloc(n, sizeof(*rpids))) == NULL ||
		    (pr.kids = reallocarray(pr.kids, nlocal + n,
		    sizeof(pid_t))) == NULL)
			die("out of memory");
		if (rworkers_start(bn, url, n, rpids) < 0) {
			stop(bn, &pr, tnames[t]);
			goto out;
		}
		memcpy(pr.kids + nlocal, rpids, n * sizeof(pid_t));
		pr.nkids = nlocal + n;
		s->ready_ms = (double)(now_ns() - t0) / 1e6;
	} else if (pr.nkids != n)
		warnx_("%s R=%u: %zu children, not %u: worker figures are "
		    "off", tnames[t], n, pr.nkids, n);
	bn->duration_ms = bn->rduration_ms;
	measure(bn, t, &pr, sock, t == T_FANOUT ? n + 1 : n, n, run, s);
	bn->duration_ms = duration;
	/* /proc/PID/io counts read(2) and write(2), not the send(2) and
	 * recv(2) nats.c uses: the figures would mislead. */
	s->rw_pl = s->wrw_pl = NAN;
	if (t == T_FANOUT) {
		rworkers_stop(bn, n, rpids);
		pr.nkids = nlocal;
	}
	stop(bn, &pr, tnames[t]);
	r = 0;
out:
	free(rpids);
	broker_stop(bn);
	return r;
}

/* --- results ----------------------------------------------------------- */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(struct sample *runs, unsigned nruns, size_t off)
{
	double v[RUNS_MAX];
	unsigned i, n = 0;

	for (i = 0; i < nruns; i++) {
		double x = *(double *)((char *)&runs[i] + off);

		if (!isnan(x))
			v[n++] = x;
	}
	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(v[0]), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void
fmt_value(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else if (v >= 100)
		snprintf(buf, len, "%.0f", v);
	else if (v >= 10)
		snprintf(buf, len, "%.1f", v);
	else
		snprintf(buf, len, "%.2f", v);
}

/* Lower is better: "2.05x"; higher is better: the share, "11%". */
static void
fmt_ratio(char *buf, size_t len, double f, double l, enum better b)
{
	if (b == B_NONE || isnan(f) || isnan(l) || l == 0)
		snprintf(buf, len, "%s", b == B_NONE ? "" : "-");
	else if (b == B_LOWER)
		snprintf(buf, len, "%.2fx", f / l);
	else
		snprintf(buf, len, "%.0f%%", 100 * f / l);
}

/* A figure neither side has (the broker's, without one) is left out. */
static void
print_block(struct bench *bn, struct sample set[T_COUNT][RUNS_MAX],
    uint32_t n, bool startup)
{
	char fv[32], lv[32], rv[32];
	size_t i;
	double f, l;

	for (i = 0; i < nitems(metrics); i++) {
		if (startup && !metrics[i].startup)
			continue;
		f = median(set[T_FANOUT], bn->runs, metrics[i].off);
		l = median(set[T_LIMIT], bn->runs, metrics[i].off);
		if (isnan(f) && isnan(l))
			continue;
		fmt_value(fv, sizeof(fv), f);
		fmt_value(lv, sizeof(lv), l);
		fmt_ratio(rv, sizeof(rv), f, l, metrics[i].better);
		printf("%5u  %-32s %11s %11s %8s\n", n, metrics[i].label, fv,
		    lv, rv);
	}
}

static void
json_num(FILE *f, double v)
{
	if (isnan(v) || isinf(v))
		fputs("null", f);
	else
		fprintf(f, "%.6g", v);
}

static void
json_sample(FILE *f, const struct sample *s, bool startup)
{
	const char *sep = "";
	size_t i;

	fputc('{', f);
	for (i = 0; i < nitems(metrics); i++) {
		if (startup && !metrics[i].startup)
			continue;
		fprintf(f, "%s\"%s\": ", sep, metrics[i].key);
		json_num(f, *(const double *)((const char *)s + metrics[i].off));
		sep = ", ";
	}
	fputc('}', f);
}

static void
json_entry(FILE *f, struct bench *bn, struct sample set[T_COUNT][RUNS_MAX],
    const char *key, uint32_t n, bool startup)
{
	struct sample med[T_COUNT];
	const char *sep = "";
	unsigned r;
	size_t i;
	int t;

	fprintf(f, "    {\"%s\": %u", key, n);
	for (t = 0; t < T_COUNT; t++) {
		sample_clear(&med[t]);
		for (i = 0; i < nitems(metrics); i++)
			*(double *)((char *)&med[t] + metrics[i].off) =
			    median(set[t], bn->runs, metrics[i].off);
		fprintf(f, ",\n      \"%s\": {\"median\": ", tnames[t]);
		json_sample(f, &med[t], startup);
		fputs(", \"runs\": [", f);
		for (r = 0; r < bn->runs; r++) {
			fputs(r ? ", " : "", f);
			json_sample(f, &set[t][r], startup);
		}
		fputs("]}", f);
	}
	fputs(",\n      \"ratio\": {", f);
	for (i = 0; i < nitems(metrics); i++) {
		double fv, lv;

		if (metrics[i].better == B_NONE ||
		    (startup && !metrics[i].startup))
			continue;
		fv = *(double *)((char *)&med[T_FANOUT] + metrics[i].off);
		lv = *(double *)((char *)&med[T_LIMIT] + metrics[i].off);
		fprintf(f, "%s\"%s\": ", sep, metrics[i].key);
		json_num(f, lv == 0 ? NAN : fv / lv);
		sep = ", ";
	}
	fputs("}}", f);
}

static void
json_write(struct bench *bn, const char *load0, const char *load1)
{
	const char *p;
	unsigned i;
	FILE *f;

	if ((f = fopen(bn->json, "we")) == NULL)
		die("%s: %s", bn->json, strerror(errno));
	fprintf(f, "{\n  \"benchmark\": \"fanout\",\n"
	    "  \"version\": \"%s\",\n", PACKAGE_VERSION);
	if (bn->label != NULL) {
		fputs("  \"label\": \"", f);
		for (p = bn->label; *p != '\0'; p++)
			if (*p == '"' || *p == '\\')
				fprintf(f, "\\%c", *p);
			else if ((unsigned char)*p >= 0x20)
				fputc(*p, f);
		fputs("\",\n", f);
	}
	fprintf(f, "  \"message_bytes\": %u,\n  \"window\": %u,\n"
	    "  \"runs\": %u,\n  \"duration_ms\": %u,\n"
	    "  \"limit_transport\": \"%s\",\n  \"cpus\": %ld,\n"
	    "  \"loadavg_start\": \"%s\",\n  \"loadavg_end\": \"%s\",\n"
	    "  \"results\": [\n", bn->msgsize, bn->window, bn->runs,
	    bn->duration_ms, bn->pairs ? "socketpair" : "tcp",
	    sysconf(_SC_NPROCESSORS_ONLN), load0, load1);
	for (i = 0; i < bn->nsizes; i++) {
		json_entry(f, bn, bn->s[i], "workers", bn->sizes[i], false);
		fputs(i + 1 < bn->nsizes ? ",\n" : "\n", f);
	}
	fputs("  ],\n  \"startup\": [\n", f);
	if (bn->startup > 0) {
		json_entry(f, bn, bn->s[bn->nsizes], "workers", bn->startup,
		    true);
		fputc('\n', f);
	}
	/* fanout: 1 local worker and R remote ones; limit: R consumers. */
	fprintf(f, "  ],\n  \"remote_duration_ms\": %u,\n"
	    "  \"remote\": [\n", bn->rduration_ms);
	for (i = 0; i < bn->nrsizes; i++) {
		json_entry(f, bn, bn->rs[i], "remote_workers", bn->rsizes[i],
		    false);
		fputs(i + 1 < bn->nrsizes ? ",\n" : "\n", f);
	}
	fputs("  ]\n}\n", f);
	if (fclose(f) == EOF)
		die("%s: %s", bn->json, strerror(errno));
}

/* --- main -------------------------------------------------------------- */

static void
loadavg(char *buf, size_t len)
{
	char *p;

	if (read_text("/proc/loadavg", buf, len) <= 0)
		snprintf(buf, len, "?");
	/* The three averages only. */
	if ((p = strchr(buf, ' ')) && (p = strchr(p + 1, ' ')) &&
	    (p = strchr(p + 1, ' ')))
		*p = '\0';
}

static char *
path_or(const char *opt, const char *env, const char *rel)
{
	char *p;
	const char *top = getenv("FANOUT_BUILDDIR");

	if (opt != NULL)
		p = strdup(opt);
	else if (env != NULL && asprintf(&p, "%s/%s", env, rel) == -1)
		p = NULL;
	else if (env == NULL && asprintf(&p, "%s/%s", top ? top :
	    BENCH_TOP_BUILDDIR, rel) == -1)
		p = NULL;
	if (p == NULL)
		die("out of memory");
	if (access(p, X_OK) == -1)
		die("%s: %s", p, strerror(errno));
	return p;
}

/* A number from min to max; unit follows the range in the complaint. */
static uint64_t
parse_num(const char *opt, const char *arg, uint64_t min, uint64_t max,
    const char *unit)
{
	uint64_t v;

	if (parse_uint(arg, min, max, &v) < 0)
		die("%s: %llu to %llu%s", opt, (unsigned long long)min,
		    (unsigned long long)max, unit);
	return v;
}

/* A list of sizes from 1 to max, or "0": none. */
static void
parse_sizes(const char *opt, const char *arg, uint32_t max, uint32_t *sizes,
    unsigned *n)
{
	char *copy, *tok, *save;
	uint64_t v;

	*n = 0;
	if (strcmp(arg, "0") == 0)
		return;
	if ((copy = strdup(arg)) == NULL)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if (*n == SIZES_MAX || parse_uint(tok, 1, max, &v) < 0)
			die("%s: 0, or a list of at most %d sizes from 1 to "
			    "%u", opt, SIZES_MAX, max);
		sizes[(*n)++] = (uint32_t)v;
	}
	free(copy);
}

/* prog in PATH, then in /usr/sbin (not in a user's PATH on Debian). */
static char *
find_prog(const char *prog)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save, *p = NULL;

	if ((copy = strdup(path != NULL ? path : "/usr/bin:/bin")) == NULL)
		die("out of memory");
	for (dir = strtok_r(copy, ":", &save); dir != NULL;
	    dir = strtok_r(NULL, ":", &save)) {
		if (asprintf(&p, "%s/%s", dir, prog) == -1)
			die("out of memory");
		if (access(p, X_OK) == 0)
			break;
		free(p);
		p = NULL;
	}
	free(copy);
	if (p == NULL && asprintf(&p, "/usr/sbin/%s", prog) != -1 &&
	    access(p, X_OK) == -1) {
		free(p);
		p = NULL;
	}
	return p;
}

static void __attribute__((noreturn))
usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: fanout-bench [options]\n"
	    "Measure fanoutd against a minimal epoll fanout; print medians "
	    "and ratios.\n\n"
	    "  --json FILE      also write the results as JSON\n"
	    "  --label TEXT     a label stored in the JSON (e.g. a commit)\n"
	    "  --workers LIST   pool sizes (default 3,16,64,256; 0: none)\n"
	    "  --remote LIST    remote workers: fanoutd with 1 local and R "
	    "remote workers\n"
	    "                   against bench-nats-ref (default 3,16 when "
	    "nats-server is\n"
	    "                   installed; 0: none)\n"
	    "  --remote-duration MS\n"
	    "                   length of each remote phase (default 1000)\n"
	    "  --remote-state-dir DIR\n"
	    "                   the remote workers' state directories "
	    "(default: the work\n"
	    "                   directory, TMPDIR); they fsync every "
	    "message\n"
	    "  --nats-ref-pubacks\n"
	    "                   the limit asks for PubAcks too, as fanoutd "
	    "does\n"
	    "  --runs R         runs per figure, median printed (default 3)\n"
	    "  --startup N      start-up alone with N workers; 0: skip "
	    "(default 1000)\n"
	    "  --duration MS    length of each measured phase (default 2000)\n"
	    "  --window W       pipelined broadcasts in flight (default 64)\n"
	    "  --size BYTES     message size (default 64)\n"
	    "  --socketpair     limit's receivers on socketpairs, not TCP\n"
	    "  --no-netns       run in this network namespace (ports "
	    "10000-65000)\n"
	    "  --keep           keep the work directory (configs, logs)\n"
	    "  --handler PATH   fanout's workers run this handler (the limit "
	    "has none)\n"
	    "  --handler-mode M exec or pipe (default pipe)\n"
	    "  --spool          fanoutd runs with spool = true (in the work "
	    "directory)\n"
	    "  --attach CMD     run CMD during each pipelined phase (%%p pid, "
	    "%%w a worker's,\n"
	    "                   %%W all workers' pids, comma-separated,\n"
	    "                   %%t target, %%n workers, %%r run), SIGINT "
	    "after\n"
	    "  --fanoutd PATH, --worker PATH, --ref PATH, --remote-worker "
	    "PATH,\n"
	    "  --nats-ref PATH, --nats-server PATH\n"
	    "                   programs (default: the build tree, or "
	    "$FANOUT_BUILDDIR)\n");
	exit(code);
}

int
main(int argc, char *argv[])
{
	enum { O_JSON = 256, O_LABEL, O_WORKERS, O_RUNS, O_STARTUP,
	    O_DURATION, O_WINDOW, O_SIZE, O_PAIRS, O_NONETNS, O_KEEP,
	    O_HANDLER, O_HANDLER_MODE, O_SPOOL,
	    O_ATTACH, O_FANOUTD, O_WORKER, O_REF, O_REMOTE, O_RDURATION,
	    O_RSTATE, O_PUBACKS, O_RWORKER, O_NREF, O_NATS };
	static const struct option longopts[] = {
		{ "json",	required_argument,	NULL, O_JSON },
		{ "label",	required_argument,	NULL, O_LABEL },
		{ "workers",	required_argument,	NULL, O_WORKERS },
		{ "runs",	required_argument,	NULL, O_RUNS },
		{ "startup",	required_argument,	NULL, O_STARTUP },
		{ "duration",	required_argument,	NULL, O_DURATION },
		{ "window",	required_argument,	NULL, O_WINDOW },
		{ "size",	required_argument,	NULL, O_SIZE },
		{ "socketpair",	no_argument,		NULL, O_PAIRS },
		{ "no-netns",	no_argument,		NULL, O_NONETNS },
		{ "keep",	no_argument,		NULL, O_KEEP },
		{ "handler",	required_argument,	NULL, O_HANDLER },
		{ "handler-mode", required_argument,	NULL, O_HANDLER_MODE },
		{ "spool",	no_argument,		NULL, O_SPOOL },
		{ "attach",	required_argument,	NULL, O_ATTACH },
		{ "fanoutd",	required_argument,	NULL, O_FANOUTD },
		{ "worker",	required_argument,	NULL, O_WORKER },
		{ "ref",	required_argument,	NULL, O_REF },
		{ "remote",	required_argument,	NULL, O_REMOTE },
		{ "remote-duration", required_argument,	NULL, O_RDURATION },
		{ "remote-state-dir", required_argument, NULL, O_RSTATE },
		{ "nats-ref-pubacks", no_argument,	NULL, O_PUBACKS },
		{ "remote-worker", required_argument,	NULL, O_RWORKER },
		{ "nats-ref",	required_argument,	NULL, O_NREF },
		{ "nats-server", required_argument,	NULL, O_NATS },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL,		0,			NULL, 0 }
	};
	static struct bench b;
	struct bench *bn = &b;
	const char *opt_fanoutd = NULL, *opt_worker = NULL, *opt_ref = NULL;
	const char *opt_rworker = NULL, *opt_nref = NULL, *opt_nats = NULL;
	const char *skip_why = NULL;
	bool remote_asked = false;
	char name[108], self[PATH_MAX], load0[64], load1[64], *slash;
	const char *tmp;
	uint64_t t0;
	unsigned run, i;
	ssize_t len;
	int ch, t;

	bn->runs = 3;
	bn->startup = 1000;
	bn->duration_ms = 2000;
	bn->window = 64;
	bn->msgsize = 64;
	bn->handler_mode = "pipe";
	bn->netns = true;
	bn->rduration_ms = 1000;
	parse_sizes("--workers", "3,16,64,256", FANOUT_WORKERS_MAX, bn->sizes,
	    &bn->nsizes);
	parse_sizes("--remote", "3,16", FANOUT_REMOTE_MAX, bn->rsizes,
	    &bn->nrsizes);
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case O_JSON:
			bn->json = optarg;
			break;
		case O_LABEL:
			bn->label = optarg;
			break;
		case O_WORKERS:
			parse_sizes("--workers", optarg, FANOUT_WORKERS_MAX,
			    bn->sizes, &bn->nsizes);
			break;
		case O_REMOTE:
			parse_sizes("--remote", optarg, FANOUT_REMOTE_MAX,
			    bn->rsizes, &bn->nrsizes);
			remote_asked = bn->nrsizes > 0;
			break;
		case O_RDURATION:
			bn->rduration_ms = (unsigned)parse_num(
			    "--remote-duration", optarg, 10, 600000, " ms");
			break;
		case O_RSTATE:
			bn->remote_state = optarg;
			break;
		case O_PUBACKS:
			bn->nats_refpubacks = true;
			break;
		case O_RWORKER:
			opt_rworker = optarg;
			break;
		case O_NREF:
			opt_nref = optarg;
			break;
		case O_NATS:
			opt_nats = optarg;
			break;
		case O_RUNS:
			bn->runs = (unsigned)parse_num("--runs", optarg,
			    1, RUNS_MAX, "");
			break;
		case O_STARTUP:
			bn->startup = (uint32_t)parse_num("--startup", optarg,
			    0, FANOUT_WORKERS_MAX, "");
			break;
		case O_DURATION:
			bn->duration_ms = (unsigned)parse_num("--duration",
			    optarg, 10, 600000, " ms");
			break;
		case O_WINDOW:
			bn->window = (unsigned)parse_num("--window", optarg,
			    1, 4096, "");
			break;
		case O_SIZE:
			bn->msgsize = (unsigned)parse_num("--size", optarg,
			    0, 65536, "");
			break;
		case O_PAIRS:
			bn->pairs = true;
			break;
		case O_NONETNS:
			bn->netns = false;
			break;
		case O_HANDLER:
			bn->handler = optarg;
			break;
		case O_HANDLER_MODE:
			if (strcmp(optarg, "exec") != 0 &&
			    strcmp(optarg, "pipe") != 0)
				die("--handler-mode: exec or pipe");
			bn->handler_mode = optarg;
			break;
		case O_KEEP:
			bn->keep = true;
			break;
		case O_SPOOL:
			bn->spool = true;
			break;
		case O_ATTACH:
			bn->attach = optarg;
			break;
		case O_FANOUTD:
			opt_fanoutd = optarg;
			break;
		case O_WORKER:
			opt_worker = optarg;
			break;
		case O_REF:
			opt_ref = optarg;
			break;
		case 'h':
			usage(stdout, 0);
		default:
			usage(stderr, 2);
		}
	}
	if (optind != argc)
		usage(stderr, 2);

	bn->fanoutd = path_or(opt_fanoutd, NULL, "src/fanoutd");
	bn->worker = path_or(opt_worker, NULL, "src/fanout-worker");
	/* bench-ref sits next to us. */
	if ((len = readlink("/proc/self/exe", self, sizeof(self) - 1)) == -1)
		die("/proc/self/exe: %s", strerror(errno));
	self[len] = '\0';
	if ((slash = strrchr(self, '/')) != NULL)
		*slash = '\0';
	bn->ref = path_or(opt_ref, self, "bench-ref");
	/* The remote part wants nats-server; without it, skipped, unless
	 * --remote asked for it. */
	if (bn->nrsizes > 0) {
		if (opt_nats != NULL)
			bn->nats_server = path_or(opt_nats, NULL, "");
		else if ((bn->nats_server = find_prog("nats-server")) == NULL)
			skip_why = "no nats-server in PATH or /usr/sbin";
		if (skip_why != NULL && remote_asked)
			die("--remote: %s", skip_why);
		if (skip_why != NULL)
			bn->nrsizes = 0;
	}
	if (bn->nrsizes > 0) {
		bn->rworker = path_or(opt_rworker, NULL,
		    "src/fanout-remote-worker");
		bn->nref = path_or(opt_nref, self, "bench-nats-ref");
	}
	if (bn->remote_state == NULL)
		bn->remote_state = bn->dir;
	clk_tck = sysconf(_SC_CLK_TCK);
	bn->port = 10000;

	signal(SIGPIPE, SIG_IGN);
	/* The targets' orphans come to us, to be reaped between runs. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		die("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	if (bn->netns)
		netns_enter();
	if ((bn->nfd = notify_listen(name, sizeof(name))) < 0)
		die("notify socket: %s", strerror(-bn->nfd));
	if (setenv("NOTIFY_SOCKET", name, 1) == -1)
		die("setenv: %s", strerror(errno));
	if ((tmp = getenv("TMPDIR")) == NULL || *tmp == '\0')
		tmp = "/tmp";
	if (strlen(tmp) > 64)
		tmp = "/tmp";	/* room for the control sockets' names */
	snprintf(bn->dir, sizeof(bn->dir), "%s/fanout-bench.XXXXXX", tmp);
	if (mkdtemp(bn->dir) == NULL)
		die("mkdtemp %s: %s", bn->dir, strerror(errno));

	loadavg(load0, sizeof(load0));
	printf("fanout benchmark %s: %u-byte messages, %u runs per figure "
	    "(medians), %ld CPUs, load %s\n", PACKAGE_VERSION, bn->msgsize,
	    bn->runs, sysconf(_SC_NPROCESSORS_ONLN), load0);
	printf("fanout: %s (worker %s)\n", bn->fanoutd, bn->worker);
	printf("limit:  %s: one epoll process, N forked receivers on %s\n",
	    bn->ref, bn->pairs ? "socketpairs" : "TCP loopback");
	printf("network: %s\n", bn->netns ? "a namespace of our own, "
	    "loopback only" : "this namespace (--no-netns)");
	printf("phases: closed loop %u ms (at least %d broadcasts, at most "
	    "%u ms), pipelined %u in flight for %u ms;\n"
	    "        both time-bounded, so larger N means fewer broadcasts "
	    "(see the broadcasts rows)\n", bn->duration_ms, CLOSED_MIN,
	    3 * bn->duration_ms, bn->window, bn->duration_ms);
	if (bn->nrsizes > 0)
		printf("remote: %s, a broker of its own per run (JetStream, "
		    "store in %s);\n"
		    "        fanout: fanoutd, 1 local worker + R %s (no "
		    "handler, state in %s);\n"
		    "        limit:  %s: the broker used directly, R "
		    "consumers%s;\n"
		    "        phases of %u ms\n", bn->nats_server, bn->dir,
		    bn->rworker, bn->remote_state, bn->nref,
		    bn->nats_refpubacks ? ", PubAcks" : "", bn->rduration_ms);
	else
		printf("remote: skipped (%s)\n", skip_why != NULL ? skip_why :
		    "--remote 0");
	putchar('\n');
	fflush(stdout);

	t0 = now_ns();
	for (run = 0; run < bn->runs; run++) {
		for (i = 0; i < bn->nsizes; i++)
			for (t = 0; t < T_COUNT; t++)
				if (run_one(bn, t, bn->sizes[i], run, true,
				    &bn->s[i][t][run]) < 0)
					warnx_("%s N=%u run %u failed",
					    tnames[t], bn->sizes[i], run + 1);
		for (i = 0; i < bn->nrsizes; i++)
			for (t = 0; t < T_COUNT; t++)
				if (run_remote(bn, t, bn->rsizes[i], run,
				    &bn->rs[i][t][run]) < 0)
					warnx_("%s R=%u run %u failed",
					    tnames[t], bn->rsizes[i], run + 1);
		for (t = 0; bn->startup > 0 && t < T_COUNT; t++)
			if (run_one(bn, t, bn->startup, run, false,
			    &bn->s[bn->nsizes][t][run]) < 0)
				warnx_("%s start-up at N=%u run %u failed",
				    tnames[t], bn->startup, run + 1);
		fprintf(stderr, "fanout-bench: run %u of %u done (%.0f s)\n",
		    run + 1, bn->runs, (double)(now_ns() - t0) / 1e9);
	}
	loadavg(load1, sizeof(load1));

	printf("%5s  %-32s %11s %11s %8s\n", "N", "figure", "fanout",
	    "limit", "f/limit");
	for (i = 0; i < bn->nsizes; i++) {
		print_block(bn, bn->s[i], bn->sizes[i], false);
		putchar('\n');
	}
	if (bn->nrsizes > 0)
		printf("remote workers (R; fanout: fanoutd, 1 local + R remote "
		    "workers; limit: the broker\nused directly, R consumers; "
		    "workers: all of them; broker: nats-server):\n");
	for (i = 0; i < bn->nrsizes; i++) {
		print_block(bn, bn->rs[i], bn->rsizes[i], false);
		putchar('\n');
	}
	if (bn->startup > 0) {
		printf("start-up only:\n");
		print_block(bn, bn->s[bn->nsizes], bn->startup, true);
		putchar('\n');
	}
	printf("f/limit: fanout / limit (x: lower is better; %%: share of "
	    "the limit's rate).\ntotal %.0f s, load %s at the end\n",
	    (double)(now_ns() - t0) / 1e9, load1);
	if (bn->json != NULL)
		json_write(bn, load0, load1);
	if (bn->keep || bn->failed)
		fprintf(stderr, "fanout-bench: configs and logs kept in %s\n",
		    bn->dir);
	else
		rm_tree(bn->dir);
	return bn->failed ? 1 : 0;
}
