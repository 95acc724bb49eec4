/* SPDX-License-Identifier: MIT */
/*
 * fdatasync of one file on a thread of its own, so that a caller with
 * records to make durable does not wait for the disk.  A request that
 * finds the thread idle starts a delay; the requests made during it share
 * the sync that ends it.  So there is at most one sync per delay, however
 * many records: a burst or a steady stream costs the disk one flush a
 * delay, not one a record.
 */
#ifndef FANOUT_SYNCER_H
#define FANOUT_SYNCER_H

#include <stdint.h>

struct syncer;

/* Starts the thread for fd, each sync delay_ms after the first request
 * it serves: 0, or -errno. */
int	syncer_start(struct syncer **, int fd, unsigned delay_ms);
/* What was written to fd so far is to reach the disk soon.  Returns the
 * last finished sync's result: 0, or -errno (the thread does not log). */
int	syncer_request(struct syncer *);
/* Makes the sync owed, if any, without its delay, and ends the thread:
 * 0, or the last sync's -errno; *syncs, how many were made.  NULL is
 * nothing to stop. */
int	syncer_stop(struct syncer *, uint64_t *syncs);

#endif /* FANOUT_SYNCER_H */
