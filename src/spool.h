/* SPDX-License-Identifier: MIT */
/*
 * The spool: messages queued for workers, kept on disk in LMDB so that
 * they survive a crash, a restart or an upgrade (issue 13).  No LMDB type
 * escapes spool.c.  Every function returning int returns 0 or more on
 * success and a negative errno on failure; spool_error() then says what
 * failed, naming the file.
 *
 * Group commit.  spool_put, spool_del, spool_reserve_ids and
 * spool_drop_worker stage their changes in one write transaction, opened by
 * the first of them; spool_commit makes everything staged durable at once
 * (LMDB writes the pages, fdatasyncs, then writes and syncs its meta page).
 * Call spool_commit once per event loop turn, and give a `queued' verdict
 * only after it returned 0.  Nothing staged survives a crash or a
 * spool_close without spool_commit.
 *
 * A batch fails as a whole.  spool_put's -ENOSPC, -EEXIST, -EINVAL and
 * -ENOMEM, and -EBUSY (staging from spool_load's callback) stage nothing
 * and leave the batch as it was.  After any other failure, the batch staged
 * since the last spool_commit is lost: every staging call returns the same
 * error until spool_commit reports it, and then a new batch starts.  Count
 * nothing of a failed batch as durable (some of it may still be on disk:
 * spool_drop_worker commits as it goes; that errs on the side of delivering
 * twice, never of losing).
 *
 * Layout (format 1).  Keys are big-endian, so that LMDB's byte order is id
 * order:
 *	meta	"format" -> u32 SPOOL_FORMAT
 *		"ids"    -> u64 the reserved id mark (below)
 *	msg	id (u64) -> u32 length, u32 zero, u64 accepted (CLOCK_REALTIME
 *		usec), payload: each message once, however many workers wait
 *	refs	id (u64) -> u32 how many queue entries name it.  Apart from the
 *		payload, because an ack changes it: in one record, every ack
 *		would copy the payload (LMDB copies on write).
 *	queue	worker (u32) id (u64) -> nothing: a worker's entries are
 *		adjacent, in id order, which is the order it must get them
 * spool_open checks all of it (every entry has its message, every count
 * matches, every length adds up) and refuses a spool that does not add up
 * instead of repairing it.  An administrator moves data.mdb aside.
 *
 * Message ids.  Ids must never repeat, across restarts too, although most
 * messages never touch the disk.  The spool keeps a reserved mark: no id at
 * or above it was ever handed out.  The daemon starts at spool_next_id(),
 * and before it hands out an id at or above spool_ids_reserved() it
 * reserves a block ahead (spool_reserve_ids(sp, id + SPOOL_ID_BLOCK)) and
 * commits.  Staged half a block early, the reservation rides along with an
 * ordinary group commit; only if the mark is reached before that commit
 * must the daemon commit at once.  A crash skips at most a block of ids.
 */
#ifndef FANOUT_SPOOL_H
#define FANOUT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPOOL_FORMAT		1
#define SPOOL_FILE		"data.mdb"
#define SPOOL_ID_BLOCK		65536
/*
 * What the bound counts besides payloads: LMDB's node headers, keys, values
 * and index slots of a message's two records (msg and refs), and of a queue
 * entry.  Many small messages fill a spool too.
 */
#define SPOOL_MSG_OVERHEAD	56
#define SPOOL_QUEUE_OVERHEAD	22

struct spool;

/* What is queued for one worker. */
struct spool_stat {
	uint32_t	 worker;
	uint64_t	 count;
	uint64_t	 bytes;		/* payload bytes of those messages */
	uint64_t	 oldest_usec;	/* accepted time of the first; 0: none */
};

/*
 * One message of the spool, with the workers it is queued for (ascending,
 * at least one).  payload is valid during the call only.  Return a negative
 * errno to stop the walk; spool_load returns it.
 */
typedef int spool_load_cb(uint64_t id, uint64_t accepted_usec,
	    const void *payload, size_t len, const uint32_t *workers,
	    size_t nworkers, void *arg);

/*
 * Opens the spool in the existing directory dir, creating dir/data.mdb if
 * there is none, and checks it whole.  max_bytes bounds spool_bytes().  The
 * directory is locked: a second process gets -EBUSY.  On failure err says
 * why, with the path.  A file that is not a valid spool is never written:
 * the error says to move it aside (-EUCLEAN: corrupt or not LMDB;
 * -EPROTONOSUPPORT: another format version).
 */
int	 spool_open(const char *dir, uint64_t max_bytes, struct spool **,
	    char *err, size_t errlen);
/* Drops what is staged (as a crash would) and closes.  NULL is fine. */
void	 spool_close(struct spool *);

/*
 * Stages the message id for worker.  The same id for several workers is
 * stored once; its payload and length must be the same each time (-EINVAL
 * otherwise).  -ENOSPC: it would take spool_bytes() past max_bytes; nothing
 * staged, nothing older dropped.  -EEXIST: already queued for that worker.
 */
int	 spool_put(struct spool *, uint32_t worker, uint64_t id,
	    uint64_t accepted_usec, const void *payload, size_t len);
/*
 * Stages the removal of id from worker's queue (an ack).  1: removed; 0: it
 * was not there, which is no error.  With nothing spooled for the worker it
 * returns 0 at once, without a transaction.
 */
int	 spool_del(struct spool *, uint32_t worker, uint64_t id);
/* Makes the staged batch durable.  0 with nothing staged. */
int	 spool_commit(struct spool *);
/* Something is staged: a spool_commit is due. */
bool	 spool_staged(const struct spool *);

/* Calls cb for every message in id order (see spool_load_cb), so each
 * worker's messages come in their original order. */
int	 spool_load(struct spool *, spool_load_cb *cb, void *arg);

/* The first id this run may use: above every id ever handed out. */
uint64_t spool_next_id(const struct spool *);
/* The durable mark: ids below it may be handed out. */
uint64_t spool_ids_reserved(const struct spool *);
/* Stages a reservation of every id below upto; lower marks are ignored. */
int	 spool_reserve_ids(struct spool *, uint64_t upto);

/* Bytes counted against max_bytes: payloads once each, plus overheads. */
uint64_t spool_bytes(const struct spool *);
uint64_t spool_max_bytes(const struct spool *);
/* Workers with messages queued, including indexes no longer configured;
 * spool_worker_at(sp, i, &st) for i below it, in index order. */
size_t	 spool_nworkers(const struct spool *);
int	 spool_worker_at(struct spool *, size_t i, struct spool_stat *);
/* What is queued for worker; count 0 when nothing is. */
int	 spool_worker_stats(struct spool *, uint32_t worker,
	    struct spool_stat *);
/* Stages the removal of worker's whole queue; *count: how many messages.
 * A long queue is removed in several commits. */
int	 spool_drop_worker(struct spool *, uint32_t worker, uint64_t *count);

/* dir/data.mdb, for messages. */
const char *spool_path(const struct spool *);
/* What the last failure was, with the path; "" if none. */
const char *spool_error(const struct spool *);

#endif /* FANOUT_SPOOL_H */
