/* SPDX-License-Identifier: MIT */
/*
 * A sync thread (syncer.h says what for).  Generations count requests:
 * the thread syncs whenever the requested one is ahead of the one done,
 * and a sync started after request N covers every write made before it.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "syncer.h"

struct syncer {
	pthread_t	 thread;
	pthread_mutex_t	 lock;
	pthread_cond_t	 wake;
	int		 fd;
	uint64_t	 wanted;	/* requests made */
	uint64_t	 done;		/* covered by a finished sync */
	uint64_t	 syncs;		/* finished */
	int		 error;		/* the last sync's errno */
	bool		 quit;
};

static void *
syncer_main(void *arg)
{
	struct syncer *s = arg;
	uint64_t gen;
	int e;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (s->done == s->wanted && !s->quit)
			pthread_cond_wait(&s->wake, &s->lock);
		if (s->done == s->wanted)
			break;		/* quit, nothing owed */
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
syncer_start(struct syncer **out, int fd)
{
	struct syncer *s;
	int e;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	s->fd = fd;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
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
