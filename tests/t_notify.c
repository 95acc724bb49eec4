/* SPDX-License-Identifier: MIT */
/* Notify parsing, and receiving over a real socket with credentials. */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "notify.h"

static void
parse(const char *s, struct notify_msg *m)
{
	memset(m, 0, sizeof(*m));
	notify_parse(s, strlen(s), m);
}

static void
test_parse(void **state)
{
	struct notify_msg m;
	char longstatus[600];

	(void)state;
	parse("READY=1", &m);
	assert_true(m.ready);
	assert_false(m.stopping);
	parse("STATUS=listening on 127.0.0.1:8888\nREADY=1\n", &m);
	assert_true(m.ready);
	assert_string_equal(m.status, "listening on 127.0.0.1:8888");
	parse("STOPPING=1", &m);
	assert_true(m.stopping);
	assert_false(m.ready);
	parse("STATUS=cannot listen\nERRNO=98", &m);
	assert_int_equal(m.errnum, 98);
	assert_false(m.ready);
	/* near misses are not readiness */
	parse("READY=0\nREADY=11\nready=1\nREADY=1x", &m);
	assert_false(m.ready);
	parse("ERRNO=-1\nERRNO=abc\nERRNO=99999999999", &m);
	assert_int_equal(m.errnum, 0);
	/* garbage and unknown keys are ignored */
	parse("\n\n\x01\x02garbage\nWATCHDOG=1\nMAINPID=1", &m);
	assert_false(m.ready);
	assert_string_equal(m.status, "");
	/* an over-long status is cut, not overflowed */
	memset(longstatus, 'x', sizeof(longstatus));
	memcpy(longstatus, "STATUS=", 7);
	memset(&m, 0, sizeof(m));
	notify_parse(longstatus, sizeof(longstatus), &m);
	assert_int_equal(strlen(m.status), NOTIFY_STATUS_MAX - 1);
	/* without a terminating NUL or newline */
	memset(&m, 0, sizeof(m));
	notify_parse("READY=1garbage", 7, &m);
	assert_true(m.ready);
}

/* notify_listen gives an abstract address that sd_notify-style senders
 * reach; notify_recv reports the sender's pid from its credentials. */
static void
test_listen_recv(void **state)
{
	char name[108];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct notify_msg m;
	size_t nl;
	int fd, s;

	(void)state;
	fd = notify_listen(name, sizeof(name));
	assert_true(fd >= 0);
	assert_int_equal(name[0], '@');
	assert_int_equal(notify_recv(fd, &m), -EAGAIN);

	nl = strlen(name);
	memcpy(sun.sun_path, name, nl);
	sun.sun_path[0] = '\0';
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(s >= 0);
	assert_true(sendto(s, "READY=1\nSTATUS=up", 17, 0,
	    (struct sockaddr *)&sun, offsetof(struct sockaddr_un, sun_path) +
	    nl) == 17);
	assert_int_equal(notify_recv(fd, &m), 0);
	assert_int_equal(m.pid, getpid());
	assert_true(m.ready);
	assert_string_equal(m.status, "up");
	assert_int_equal(notify_recv(fd, &m), -EAGAIN);

	/* the libsystemd sender, as workers use it */
	assert_int_equal(setenv("NOTIFY_SOCKET", name, 1), 0);
	notify_failure(98, "cannot listen on 127.0.0.1:1: Address in use");
	assert_int_equal(notify_recv(fd, &m), 0);
	assert_false(m.ready);
	assert_int_equal(m.errnum, 98);
	assert_string_equal(m.status,
	    "cannot listen on 127.0.0.1:1: Address in use");
	close(s);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_listen_recv),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
