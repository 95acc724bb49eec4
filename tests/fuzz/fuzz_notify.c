/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the sd_notify datagrams fanoutd hears from its workers (notify.c):
 * each input is sent as one datagram to a socket from notify_listen, read
 * back with notify_recv (credentials and all), and the result must be what
 * a plain reading of the lines says: READY=1 and STOPPING=1 exactly when a
 * line is just that, ERRNO= only in 1..4095, the last STATUS= cut to fit
 * and always terminated.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "notify.h"
#include "fuzz.h"

static int lfd = -1, sfd = -1;

/* Whether a line of s (n bytes) is exactly line. */
static bool
has_line(const uint8_t *s, size_t n, const char *line)
{
	size_t l = strlen(line), i = 0;

	while (i < n) {
		const uint8_t *nl = memchr(s + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - s) : n;

		if (e - i == l && memcmp(s + i, line, l) == 0)
			return true;
		i = e + 1;
	}
	return false;
}

/* The value of the last STATUS= line with a value, or NULL. */
static const uint8_t *
last_status(const uint8_t *s, size_t n, size_t *len)
{
	const uint8_t *v = NULL;
	size_t i = 0;

	while (i < n) {
		const uint8_t *nl = memchr(s + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - s) : n;

		if (e - i > 7 && memcmp(s + i, "STATUS=", 7) == 0) {
			v = s + i + 7;
			*len = e - i - 7;
		}
		i = e + 1;
	}
	return v;
}

static void
check(const uint8_t *s, size_t n, const struct notify_msg *m)
{
	const uint8_t *st;
	size_t sl = 0;

	FUZZ_ASSERT(m->ready == has_line(s, n, "READY=1"));
	FUZZ_ASSERT(m->stopping == has_line(s, n, "STOPPING=1"));
	FUZZ_ASSERT(m->errnum >= 0 && m->errnum <= 4095);
	FUZZ_ASSERT(memchr(m->status, '\0', sizeof(m->status)) != NULL);
	if ((st = last_status(s, n, &sl)) == NULL)
		FUZZ_ASSERT(m->status[0] == '\0');
	else {
		if (sl > sizeof(m->status) - 1)
			sl = sizeof(m->status) - 1;
		FUZZ_ASSERT(memcmp(m->status, st, sl) == 0);
		/* A NUL inside the value ends it early, never late. */
		FUZZ_ASSERT(strlen(m->status) <= sl);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char name[sizeof(sun.sun_path)];
	socklen_t len;
	int r;

	(void)argc;
	(void)argv;
	if ((r = notify_listen(name, sizeof(name))) < 0)
		abort();
	lfd = r;
	FUZZ_ASSERT(name[0] == '@' && strlen(name) > 1);
	/* The abstract name: a NUL where the '@' stands. */
	len = (socklen_t)strlen(name);
	memcpy(sun.sun_path + 1, name + 1, len - 1);
	len += offsetof(struct sockaddr_un, sun_path);
	if ((sfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(sfd, (struct sockaddr *)&sun, len) == -1)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct notify_msg m;
	size_t n;

	/* The parser alone, on the whole input. */
	memset(&m, 0, sizeof(m));
	notify_parse((const char *)data, size, &m);
	check(data, size, &m);

	/* Through the socket: longer datagrams are cut to the buffer. */
	if (send(sfd, data, size, 0) != (ssize_t)size)
		return 0;	/* above the socket's limit: not a datagram */
	FUZZ_ASSERT(notify_recv(lfd, &m) == 0);
	FUZZ_ASSERT(m.pid == getpid());
	n = size < NOTIFY_DGRAM_MAX - 1 ? size : NOTIFY_DGRAM_MAX - 1;
	check(data, n, &m);
	FUZZ_ASSERT(notify_recv(lfd, &m) == -EAGAIN);
	return 0;
}
