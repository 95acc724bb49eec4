/* SPDX-License-Identifier: MIT */
/*
 * The sd_notify readiness protocol in both directions.  Sending goes through
 * libsystemd; receiving is ours, since fanoutd plays the service manager for
 * its workers.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "notify.h"
#include "util.h"

void
notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void
notify_status(const char *fmt, ...)
{
	char buf[NOTIFY_STATUS_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sd_notifyf(0, "STATUS=%s", buf);
}

/* systemd (250 and later) waits for READY=1 again after RELOADING=1; the
 * timestamp ties the two to this reload. */
void
notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000);
}

void
notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void
notify_failure(int errnum, const char *status)
{
	sd_notifyf(0, "STATUS=%s\nERRNO=%d", status, errnum);
}

int
notify_listen(char *name, size_t namelen)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sa_family_t);
	int fd, one = 1, r;

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	/* Binding just the family autobinds a unique abstract name: no file
	 * to clean up, no name to invent. */
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&sun, len) == -1)
		goto fail;
	len = sizeof(sun);
	if (getsockname(fd, (struct sockaddr *)&sun, &len) == -1)
		goto fail;
	len -= offsetof(struct sockaddr_un, sun_path);
	if (len < 2 || len >= namelen) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	name[0] = '@';
	memcpy(name + 1, sun.sun_path + 1, len - 1);
	name[len] = '\0';
	return fd;
fail:
	r = -errno;
	close(fd);
	return r;
}

int
notify_recv(int fd, struct notify_msg *m)
{
	char buf[NOTIFY_DGRAM_MAX];
	union {
		struct cmsghdr	cm;
		char		b[CMSG_SPACE(sizeof(struct ucred))];
	} ctl;
	struct iovec iov = { buf, sizeof(buf) - 1 };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = &ctl, .msg_controllen = sizeof(ctl),
	};
	struct cmsghdr *cm;
	ssize_t n;

	n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n == -1)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	memset(m, 0, sizeof(*m));
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET &&
		    cm->cmsg_type == SCM_CREDENTIALS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
			struct ucred uc;

			memcpy(&uc, CMSG_DATA(cm), sizeof(uc));
			m->pid = uc.pid;
		}
	}
	if (m->pid <= 0)
		return -EBADMSG;
	notify_parse(buf, (size_t)n, m);
	return 0;
}

void
notify_parse(const char *buf, size_t len, struct notify_msg *m)
{
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = (nl ? nl : end) - p;
		uint64_t v;

		if (l == 7 && memcmp(p, "READY=1", 7) == 0)
			m->ready = true;
		else if (l == 10 && memcmp(p, "STOPPING=1", 10) == 0)
			m->stopping = true;
		else if (l > 7 && memcmp(p, "STATUS=", 7) == 0) {
			size_t sl = l - 7;

			if (sl >= sizeof(m->status))
				sl = sizeof(m->status) - 1;
			memcpy(m->status, p + 7, sl);
			m->status[sl] = '\0';
		} else if (l > 6 && l < 16 && memcmp(p, "ERRNO=", 6) == 0) {
			char num[16];

			memcpy(num, p + 6, l - 6);
			num[l - 6] = '\0';
			if (parse_uint(num, 1, 4095, &v) == 0)
				m->errnum = (int)v;
		}
		p += l + 1;
	}
}
