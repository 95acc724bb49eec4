/* SPDX-License-Identifier: MIT */
/* Socket setup.  Every fd is close-on-exec; errors are negative errno. */
#ifndef FANOUT_SOCK_H
#define FANOUT_SOCK_H

#include <sys/socket.h>
#include <sys/types.h>
#include <stdint.h>

/* Fills a sockaddr for a numeric IPv4 or IPv6 address: 0 or -EINVAL. */
int	sock_addr(const char *addr, uint16_t port, struct sockaddr_storage *,
	    socklen_t *);
/* Non-blocking listening sockets. */
int	unix_listen(const char *path, mode_t mode);
int	tcp_listen(const char *addr, uint16_t port);
/* Blocking connect to a Unix stream socket that waits at most timeout_ms
 * for room in a full backlog (then -EAGAIN). */
int	unix_connect(const char *path, unsigned int timeout_ms);
/* Starts a non-blocking TCP connect (TCP_NODELAY set); completes on POLLOUT. */
int	tcp_connect_nb(const char *addr, uint16_t port);
/* The pending error of a non-blocking connect: 0 or -errno. */
int	sock_error(int fd);
int	fd_nonblock(int fd);

#endif /* FANOUT_SOCK_H */
