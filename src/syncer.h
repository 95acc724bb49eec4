/* SPDX-License-Identifier: MIT */
/*
 * fdatasync of one file on a thread of its own, so that a caller with
 * records to make durable does not wait for the disk.  A request finds the
 * thread idle and is synced at once, or is served with the others made
 * since by the next sync, which begins an interval after the last began:
 * at most one sync runs, and one more is owed.
 */
#ifndef FANOUT_SYNCER_H
#define FANOUT_SYNCER_H

#include <stdint.h>

struct syncer;

/* Starts the thread for fd, syncs at least interval_ms apart: 0, or
 * -errno. */
int	syncer_start(struct syncer **, int fd, unsigned interval_ms);
/* What was written to fd so far is to reach the disk soon.  Returns the
 * last finished sync's result: 0, or -errno (the thread does not log). */
int	syncer_request(struct syncer *);
/* Waits for the sync owed, if any, and ends the thread: 0, or the last
 * sync's -errno; *syncs, how many were made.  NULL is nothing to stop. */
int	syncer_stop(struct syncer *, uint64_t *syncs);

#endif /* FANOUT_SYNCER_H */
