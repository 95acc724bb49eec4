/* SPDX-License-Identifier: MIT */
/*
 * The remote worker's sync thread (syncer.c): a burst of requests shares
 * one sync, stopping makes the owed sync without waiting out its delay,
 * the thread syncs on its own once the delay is over, and a failed sync is
 * reported to the next request and by the stop.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "syncer.h"

#define LONG_DELAY_MS	600000	/* never waited out: a stop cuts it short */
#define DEADLINE_S	10

static int
temp_file(void)
{
	char path[] = "/tmp/t_syncer.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	(void)unlink(path);
	assert_int_equal(write(fd, "x", 1), 1);
	return fd;
}

static void
test_idle(void **state)
{
	struct syncer *s;
	uint64_t syncs = 99;
	int fd = temp_file();

	(void)state;
	assert_int_equal(syncer_start(&s, fd, LONG_DELAY_MS), 0);
	assert_int_equal(syncer_stop(s, &syncs), 0);
	assert_int_equal(syncs, 0);
	assert_int_equal(syncer_stop(NULL, &syncs), 0);
	assert_int_equal(syncs, 0);
	close(fd);
}

static void
test_burst_shares_one_sync(void **state)
{
	struct syncer *s;
	uint64_t syncs = 0;
	int fd = temp_file(), i;

	(void)state;
	assert_int_equal(syncer_start(&s, fd, LONG_DELAY_MS), 0);
	for (i = 0; i < 1000; i++) {
		assert_int_equal(pwrite(fd, &i, sizeof(i), 0),
		    (ssize_t)sizeof(i));
		assert_int_equal(syncer_request(s), 0);
	}
	/* Ten minutes of delay left: the stop syncs now. */
	assert_int_equal(syncer_stop(s, &syncs), 0);
	assert_int_equal(syncs, 1);
	close(fd);
}

static void
test_error_reported(void **state)
{
	struct syncer *s;
	uint64_t syncs = 0;
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	/* fdatasync(2) of a pipe: EINVAL. */
	assert_int_equal(syncer_start(&s, p[1], LONG_DELAY_MS), 0);
	assert_int_equal(syncer_request(s), 0);
	assert_int_equal(syncer_stop(s, &syncs), -EINVAL);
	assert_int_equal(syncs, 1);
	close(p[0]);
	close(p[1]);
}

static void
test_delay_runs_out(void **state)
{
	struct syncer *s;
	uint64_t syncs = 0;
	time_t deadline = time(NULL) + DEADLINE_S;
	int p[2], r;

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(syncer_start(&s, p[1], 1), 0);
	/* The first sync's failure shows in a later request once the
	 * thread made it on its own, with no stop to hurry it. */
	while ((r = syncer_request(s)) == 0) {
		assert_true(time(NULL) < deadline);
		(void)nanosleep(&(struct timespec){ .tv_nsec = 1000000 },
		    NULL);
	}
	assert_int_equal(r, -EINVAL);
	assert_int_equal(syncer_stop(s, &syncs), -EINVAL);
	assert_true(syncs >= 1);
	close(p[0]);
	close(p[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_burst_shares_one_sync),
		cmocka_unit_test(test_error_reported),
		cmocka_unit_test(test_delay_runs_out),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
