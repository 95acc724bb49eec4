/* SPDX-License-Identifier: MIT */
/*
 * pid-wait: wait until every given process is gone, without polling.
 *
 *	pid-wait -t TIMEOUT_MS PID...
 *
 * Each pid is watched through a pidfd (pidfd_open + poll), which becomes
 * readable when the process exits; for a child of someone else that means
 * when it became a zombie.  Exit 0 when all are gone, 1 on timeout (listing
 * the survivors on stderr), 2 on a usage error.
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void
usage(void)
{
	fprintf(stderr, "usage: pid-wait -t TIMEOUT_MS PID...\n");
	exit(2);
}

static long
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void
comm_of(pid_t pid, char *buf, size_t len)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
	buf[0] = '\0';
	if ((f = fopen(path, "re")) == NULL)
		return;
	if (fgets(buf, (int)len, f) != NULL)
		buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

/* File scope: still reachable at exit, so LeakSanitizer stays quiet. */
static struct pollfd	*pfd;
static pid_t		*pids;

int
main(int argc, char **argv)
{
	long timeout = -1, deadline;
	int ch, i, n, alive = 0;
	char *end;

	while ((ch = getopt(argc, argv, "t:h")) != -1) {
		switch (ch) {
		case 't':
			timeout = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || timeout < 0)
				usage();
			break;
		default:
			usage();
		}
	}
	argv += optind;
	argc -= optind;
	if (timeout < 0 || argc < 1)
		usage();

	n = argc;
	if ((pfd = calloc((size_t)n, sizeof(*pfd))) == NULL ||
	    (pids = calloc((size_t)n, sizeof(*pids))) == NULL)
		return 1;
	for (i = 0; i < n; i++) {
		long v = strtol(argv[i], &end, 10);

		if (*argv[i] == '\0' || *end != '\0' || v <= 0)
			usage();
		pids[i] = (pid_t)v;
		pfd[i].events = POLLIN;
		pfd[i].fd = (int)syscall(SYS_pidfd_open, pids[i], 0);
		if (pfd[i].fd == -1) {
			if (errno != ESRCH) {
				fprintf(stderr, "pid-wait: pidfd_open %ld: "
				    "%s\n", (long)pids[i], strerror(errno));
				return 1;
			}
			/* already gone; poll() ignores negative fds */
		} else
			alive++;
	}

	deadline = now_ms() + timeout;
	while (alive > 0) {
		long left = deadline - now_ms();
		int r;

		if (left < 0)
			left = 0;
		r = poll(pfd, (nfds_t)n, (int)left);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("pid-wait: poll");
			return 1;
		}
		if (r == 0)
			break;
		for (i = 0; i < n; i++) {
			if (pfd[i].fd >= 0 && pfd[i].revents) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				alive--;
			}
		}
	}
	if (alive == 0)
		return 0;
	fprintf(stderr, "pid-wait: still alive after %ld ms:", timeout);
	for (i = 0; i < n; i++) {
		char comm[32];

		if (pfd[i].fd < 0)
			continue;
		comm_of(pids[i], comm, sizeof(comm));
		fprintf(stderr, " %ld (%s)", (long)pids[i], comm);
	}
	fputc('\n', stderr);
	return 1;
}
