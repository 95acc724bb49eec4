/* SPDX-License-Identifier: MIT */
/*
 * notify-wait: start a command under a test NOTIFY_SOCKET and return as soon
 * as it sent READY=1, the way systemd starts a Type=notify service.  A
 * background supervisor stays the command's parent: it logs every
 * notification and, at the end, the command's exit status.
 *
 *	notify-wait [-t TIMEOUT_MS] [-o LOGFILE] [-e OUTFILE] -- CMD [ARG...]
 *
 * On READY=1 from the command's pid: prints that pid on stdout, exits 0.
 * If the command exits first, or the deadline passes (the command is then
 * killed), says so on stderr and exits 1.  Usage errors exit 2.
 *
 * LOGFILE gets one line per notification line received, in arrival order:
 *	MS PID TEXT		e.g. "12.345 4121 READY=1"
 * where MS is milliseconds since notify-wait started (CLOCK_MONOTONIC), plus
 *	MS - supervisor=PID command=PID		first line
 *	MS - exited status=N | MS - killed signal=N	last line
 * OUTFILE receives the command's stdout and stderr (default /dev/null:
 * neither the command nor the supervisor may hold the caller's stdout or
 * stderr, or a shell's $(notify-wait ...) would not return at READY=1).
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct timespec	 t0;
static FILE		*logfp;

static void
usage(void)
{
	fprintf(stderr, "usage: notify-wait [-t TIMEOUT_MS] [-o LOGFILE] "
	    "[-e OUTFILE] -- COMMAND [ARG...]\n");
	exit(2);
}

static double
elapsed_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6;
}

static void
logline(const char *who, const char *fmt, ...)
{
	va_list ap;

	if (logfp == NULL)
		return;
	fprintf(logfp, "%.3f %s ", elapsed_ms(), who);
	va_start(ap, fmt);
	vfprintf(logfp, fmt, ap);
	va_end(ap);
	fputc('\n', logfp);
	fflush(logfp);
}

/* Report to the waiting parent: one line, then the pipe is closed. */
static void
report(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && write(fd, buf, (size_t)n) < 0)
		_exit(1);
	close(fd);
}

static void
describe_status(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exited status=%d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed signal=%d", WTERMSIG(st));
	else
		snprintf(buf, len, "status=0x%x", st);
}

/*
 * Read every queued datagram; log each line.  Returns 1 if one of them,
 * from `pid`, held READY=1.
 */
static int
drain(int sfd, pid_t pid)
{
	char buf[4096 + 1], cbuf[CMSG_SPACE(sizeof(struct ucred))];
	int ready = 0;

	for (;;) {
		struct iovec iov = { buf, sizeof(buf) - 1 };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
		};
		struct cmsghdr *c;
		char who[32] = "?";
		pid_t from = 0;
		char *line, *save;
		ssize_t n;

		n = recvmsg(sfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ready;
		}
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == SOL_SOCKET &&
			    c->cmsg_type == SCM_CREDENTIALS) {
				struct ucred uc;

				memcpy(&uc, CMSG_DATA(c), sizeof(uc));
				from = uc.pid;
				snprintf(who, sizeof(who), "%ld", (long)from);
			} else if (c->cmsg_level == SOL_SOCKET &&
			    c->cmsg_type == SCM_RIGHTS) {
				int *fds = (int *)CMSG_DATA(c);
				size_t i, nfd = (c->cmsg_len - CMSG_LEN(0)) /
				    sizeof(int);

				for (i = 0; i < nfd; i++)
					close(fds[i]);
			}
		}
		buf[n] = '\0';
		for (line = strtok_r(buf, "\n", &save); line;
		    line = strtok_r(NULL, "\n", &save)) {
			logline(who, "%s", line);
			if (from == pid && strcmp(line, "READY=1") == 0)
				ready = 1;
		}
	}
}

static int
pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/*
 * The supervisor: parent of the command for its whole life.  Tells the
 * original process (through rfd) when READY=1 came, or why it never will.
 */
static void
supervise(int sfd, int rfd, int timeout_ms, char **argv)
{
	char desc[64];
	sigset_t none;
	pid_t pid;
	int pfd, st, ready = 0;
	double deadline = elapsed_ms() + timeout_ms;

	if ((pid = fork()) == -1) {
		report(rfd, "fork: %s\n", strerror(errno));
		_exit(1);
	}
	if (pid == 0) {
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		close(rfd);
		close(sfd);
		execvp(argv[0], argv);
		fprintf(stderr, "notify-wait: cannot execute %s: %s\n",
		    argv[0], strerror(errno));
		_exit(127);
	}
	logline("-", "supervisor=%ld command=%ld", (long)getpid(), (long)pid);
	if ((pfd = pidfd_open_(pid)) == -1) {
		report(rfd, "pidfd_open: %s\n", strerror(errno));
		kill(pid, SIGKILL);
		_exit(1);
	}

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = pfd, .events = POLLIN },
		};
		int wait_ms = -1, r;

		if (!ready) {
			double left = deadline - elapsed_ms();

			if (left <= 0) {
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				drain(sfd, pid);
				logline("-", "timeout: killed");
				report(rfd, "no READY=1 from %s (pid %ld) "
				    "within %d ms; killed it\n", argv[0],
				    (long)pid, timeout_ms);
				_exit(1);
			}
			wait_ms = (int)left + 1;
		}
		r = poll(p, 2, wait_ms);
		if (r < 0 && errno != EINTR) {
			if (!ready)
				report(rfd, "poll: %s\n", strerror(errno));
			kill(pid, SIGKILL);
			_exit(1);
		}
		if (r > 0 && (p[0].revents & POLLIN) && drain(sfd, pid) &&
		    !ready) {
			ready = 1;
			report(rfd, "READY %ld\n", (long)pid);
		}
		if (r > 0 && p[1].revents) {
			/* Exited: collect what it sent on the way out. */
			if (waitpid(pid, &st, 0) == -1)
				st = 0;
			if (drain(sfd, pid) && !ready) {
				ready = 1;
				report(rfd, "READY %ld\n", (long)pid);
			}
			describe_status(st, desc, sizeof(desc));
			logline("-", "%s", desc);
			if (!ready)
				report(rfd, "%s (pid %ld) %s before READY=1\n",
				    argv[0], (long)pid, desc);
			_exit(0);
		}
	}
}

int
main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t salen = sizeof(sa_family_t);
	const char *logpath = NULL, *outpath = NULL;
	char name[sizeof(sa.sun_path) + 1], buf[512];
	int timeout_ms = 10000, sfd, one = 1, p[2], ch, outfd, devnull;
	size_t off = 0;
	ssize_t n;
	pid_t sup;
	char *end;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((ch = getopt(argc, argv, "+t:o:e:h")) != -1) {
		switch (ch) {
		case 't':
			timeout_ms = (int)strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || timeout_ms <= 0)
				usage();
			break;
		case 'o':
			logpath = optarg;
			break;
		case 'e':
			outpath = optarg;
			break;
		default:
			usage();
		}
	}
	argv += optind;
	argc -= optind;
	if (argc < 1)
		usage();

	/* Nothing the caller holds open (bats' fd 3) may outlive the call. */
	closefrom(3);
	signal(SIGPIPE, SIG_IGN);

	if (logpath && (logfp = fopen(logpath, "ae")) == NULL) {
		fprintf(stderr, "notify-wait: %s: %s\n", logpath,
		    strerror(errno));
		return 1;
	}
	if (outpath) {
		outfd = open(outpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		    0644);
		if (outfd == -1) {
			fprintf(stderr, "notify-wait: %s: %s\n", outpath,
			    strerror(errno));
			return 1;
		}
	} else if ((outfd = open("/dev/null", O_WRONLY | O_CLOEXEC)) == -1)
		return 1;

	/* Autobind an abstract address, as systemd does with its own. */
	sfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sfd == -1 ||
	    setsockopt(sfd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == -1 ||
	    bind(sfd, (struct sockaddr *)&sa, salen) == -1) {
		fprintf(stderr, "notify-wait: notify socket: %s\n",
		    strerror(errno));
		return 1;
	}
	salen = sizeof(sa);
	if (getsockname(sfd, (struct sockaddr *)&sa, &salen) == -1 ||
	    salen <= sizeof(sa_family_t) + 1) {
		fprintf(stderr, "notify-wait: getsockname: %s\n",
		    strerror(errno));
		return 1;
	}
	name[0] = '@';
	memcpy(name + 1, sa.sun_path + 1, salen - sizeof(sa_family_t) - 1);
	name[salen - sizeof(sa_family_t)] = '\0';
	if (setenv("NOTIFY_SOCKET", name, 1) == -1)
		return 1;

	if (pipe2(p, O_CLOEXEC) == -1 || (sup = fork()) == -1) {
		fprintf(stderr, "notify-wait: %s\n", strerror(errno));
		return 1;
	}
	if (sup == 0) {
		/* Hold neither the caller's stdout nor its stderr. */
		close(p[0]);
		setsid();
		devnull = open("/dev/null", O_RDWR);
		if (devnull == -1 || dup2(devnull, 0) == -1 ||
		    dup2(outfd, 1) == -1 || dup2(outfd, 2) == -1)
			_exit(1);
		close(devnull);
		close(outfd);
		supervise(sfd, p[1], timeout_ms, argv);
	}
	close(p[1]);
	close(sfd);

	while (off < sizeof(buf) - 1 &&
	    (n = read(p[0], buf + off, sizeof(buf) - 1 - off)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)n;
	}
	buf[off] = '\0';
	if (strncmp(buf, "READY ", 6) == 0) {
		printf("%s", buf + 6);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	fprintf(stderr, "notify-wait: %s", off ? buf : "supervisor died\n");
	return 1;
}
