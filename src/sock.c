/* SPDX-License-Identifier: MIT */
/* Socket setup.  Every fd is close-on-exec; errors are negative errno. */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "sock.h"

int
sock_addr(const char *addr, uint16_t port, struct sockaddr_storage *ss,
    socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

static int
unix_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
}

int
unix_listen(const char *path, mode_t mode)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd, r;

	if ((r = unix_addr(path, &sun)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	/* The umask closes the window in which the socket would be open to
	 * everyone before the chmod. */
	old = umask(0777 & ~mode);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	/* A full backlog makes clients' connects fail or wait: take the
	 * kernel's maximum, the daemon accepts as fast as it can. */
	if (r == -1 || chmod(path, mode) == -1 ||
	    listen(fd, SOMAXCONN) == -1) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int
unix_connect(const char *path, unsigned int timeout_ms)
{
	struct sockaddr_un sun;
	struct timeval tv = {
		.tv_sec = timeout_ms / 1000,
		.tv_usec = (timeout_ms % 1000) * 1000,
	};
	int fd, r;

	if ((r = unix_addr(path, &sun)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	/* connect() waits while the listener's backlog is full (a stopped or
	 * swamped daemon); the send timeout bounds that wait. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* A non-blocking TCP socket for addr, its address in ss. */
static int
tcp_socket(const char *addr, uint16_t port, struct sockaddr_storage *ss,
    socklen_t *len)
{
	int fd, r;

	if ((r = sock_addr(addr, port, ss, len)) < 0)
		return r;
	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	return fd == -1 ? -errno : fd;
}

int
tcp_listen(const char *addr, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, r, one = 1;

	if ((fd = tcp_socket(addr, port, &ss, &len)) < 0)
		return fd;
	/* A restarted worker must be able to rebind while old links linger
	 * in TIME_WAIT. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&ss, len) == -1 ||
	    listen(fd, 16) == -1) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int
tcp_connect_nb(const char *addr, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, r, one = 1;

	if ((fd = tcp_socket(addr, port, &ss, &len)) < 0)
		return fd;
	/* Messages are small and latency is what fanoutctl reports. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1 ||
	    (connect(fd, (struct sockaddr *)&ss, len) == -1 &&
	    errno != EINPROGRESS)) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int
sock_error(int fd)
{
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return -errno;
	return -err;
}

int
fd_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -errno;
	return 0;
}
