/* SPDX-License-Identifier: MIT */
/*
 * A sync thread (syncer.h says what for).  Generations count requests:
 * the thread syncs whenever the requested one is ahead of the one done,
 * and a sync started after request N covers every write made before it.
 * Only an idle thread is signalled: while it waits out a delay or syncs,
 * a request costs a lock and a counter.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "syncer.h"

struct syncer {
	pthread_t	 thread;
	pthread_mutex_t	 lock;
	pthread_cond_t	 wake;		/* CLOCK_MONOTONIC */
	int		 fd;
	long		 delay_ns;
	uint64_t	 wanted;	/* requests made */
	uint64_t	 done;		/* covered by a finished sync */
	uint64_t	 syncs;		/* finished */
	int		 error;		/* the last sync's errno */
	bool		 idle;		/* waiting for a request */
	bool		 quit;
};

static void
add_ns(struct timespec *t, long ns)
{
	t->tv_nsec += ns;
	while (t->tv_nsec >= 1000000000) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000;
	}
}

static void *
syncer_main(void *arg)
{
	struct syncer *s = arg;
	struct timespec due;
	uint64_t gen;
	int e;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		s->idle = true;
		while (s->done == s->wanted && !s->quit)
			pthread_cond_wait(&s->wake, &s->lock);
		s->idle = false;
		if (s->done == s->wanted)
			break;		/* quit, nothing owed */
		/* The requests until then share this sync; quitting cuts
		 * the delay short. */
		clock_gettime(CLOCK_MONOTONIC, &due);
		add_ns(&due, s->delay_ns);
		while (!s->quit && pthread_cond_timedwait(&s->wake, &s->lock,
		    &due) != ETIMEDOUT)
			;
		gen = s->wanted;
		pthread_mutex_unlock(&s->lock);
		e = fdatasync(s->fd) == -1 ? errno : 0;
		pthread_mutex_lock(&s->lock);
		s->error = e;
		s->done = gen;
		s->syncs++;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int
syncer_start(struct syncer **out, int fd, unsigned delay_ms)
{
	pthread_condattr_t ca;
	struct syncer *s;
	int e;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	s->fd = fd;
	s->delay_ns = (long)delay_ms * 1000000;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &ca);
	pthread_condattr_destroy(&ca);
	if ((e = pthread_create(&s->thread, NULL, syncer_main, s)) != 0) {
		pthread_cond_destroy(&s->wake);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return -e;
	}
	*out = s;
	return 0;
}

int
syncer_request(struct syncer *s)
{
	int e;

	pthread_mutex_lock(&s->lock);
	s->wanted++;
	e = s->error;
	if (s->idle)
		pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	return -e;
}

int
syncer_stop(struct syncer *s, uint64_t *syncs)
{
	int e;

	*syncs = 0;
	if (s == NULL)
		return 0;
	pthread_mutex_lock(&s->lock);
	s->quit = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	e = s->error;
	*syncs = s->syncs;
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return -e;
}
