/* SPDX-License-Identifier: MIT */
/* Small helpers with no better home: bounded number parsing, clocks. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int
parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	/* strtoull accepts leading blanks and a minus sign: refuse both. */
	if (s == NULL || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

char *
put_decimal(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

uint64_t
now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
age_ms(uint64_t now, uint64_t since)
{
	return now > since + 1000 ? (now - since) / 1000 : 1;
}

void
str_escape(char *out, size_t outlen, const void *in, size_t inlen)
{
	const unsigned char *p = in;
	size_t o = 0, i;

	if (outlen == 0)
		return;
	for (i = 0; i < inlen; i++) {
		char tmp[5];
		size_t n;

		if (p[i] == '"' || p[i] == '\\')
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\%c", p[i]);
		else if (p[i] >= 0x20 && p[i] < 0x7f)
			n = (size_t)snprintf(tmp, sizeof(tmp), "%c", p[i]);
		else
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", p[i]);
		if (o + n >= outlen)
			break;
		memcpy(out + o, tmp, n);
		o += n;
	}
	out[o] = '\0';
}

void
strv_free(char **v)
{
	char **a;

	if (v == NULL)
		return;
	for (a = v; *a != NULL; a++)
		free(*a);
	free(v);
}

size_t
sig_stray(sigset_t *set, int sigs[SIG_STRAY_MAX])
{
	static const int fixed[] = {
		SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR,
		SIGSTKFLT, SIGTSTP, SIGTTIN, SIGTTOU, SIGXCPU, SIGXFSZ,
	};
	size_t n = 0, i;
	int sig;

	for (i = 0; i < nitems(fixed); i++)
		sigs[n++] = fixed[i];
	for (sig = SIGRTMIN; sig <= SIGRTMAX && n < SIG_STRAY_MAX; sig++)
		sigs[n++] = sig;
	for (i = 0; i < n; i++)
		sigaddset(set, sigs[i]);
	return n;
}

void
sig_default(const sigset_t *set)
{
	int sig;

	for (sig = 1; sig < NSIG; sig++)
		if (sigismember(set, sig) == 1)
			(void)signal(sig, SIG_DFL);
}

int
sig_setup(sigset_t *set, int stray[SIG_STRAY_MAX])
{
	sigset_t blocked;
	size_t n;

	sigemptyset(&blocked);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGHUP);
	sigaddset(&blocked, SIGCHLD);
	n = sig_stray(&blocked, stray);
	sig_default(&blocked);
	if (sigprocmask(SIG_BLOCK, &blocked, NULL) == -1)
		return -errno;
	(void)signal(SIGPIPE, SIG_IGN);
	if (set != NULL)
		*set = blocked;
	return (int)n;
}

int
std_fds_open(void)
{
	int fd, closed = 0;

	for (fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		/* The lowest free descriptor: this one. */
		if (open("/dev/null", O_RDWR) != fd)
			return -1;
		closed |= 1 << fd;
	}
	return closed;
}

ssize_t
read_all(int fd, void *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, (char *)buf + got, len - got);
		if (n == 0)
			break;
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int
write_all(int fd, const void *buf, size_t len)
{
	size_t put = 0;
	ssize_t n;

	while (put < len) {
		n = write(fd, (const char *)buf + put, len - put);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		put += (size_t)n;
	}
	return 0;
}

char *
credential_path(const char *name)
{
	const char *dir;
	char *p;

	if (name[0] == '/')
		return strdup(name);
	if ((dir = getenv("CREDENTIALS_DIRECTORY")) == NULL || dir[0] != '/')
		return NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}
