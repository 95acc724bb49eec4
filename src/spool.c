/* SPDX-License-Identifier: MIT */
/*
 * The spool (spool.h has the contract and the layout): LMDB, one write
 * transaction per batch, checked whole when opened.  No logging: every
 * failure returns a negative errno and leaves its words in sp->err.
 *
 * LMDB runs without its lock file (MDB_NOLOCK): one process, one thread,
 * never a read transaction beside the write one.  An flock on the
 * directory keeps a second process out, with an error that says so.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lmdb.h>

#include "spool.h"

#define MSG_HDR		16	/* u32 length, u32 zero, u64 accepted */
#define QKEY_LEN	12	/* u32 worker, u64 id */
/*
 * LMDB needs its map size up front, and a write past it fails the whole
 * transaction.  Records sit in pages that may be only a quarter full
 * before LMDB merges them, a payload that overflows its leaf takes whole
 * pages, and copy-on-write needs room for a batch's new pages beside the
 * old ones: four times the bound, plus slack for the trees and the free
 * list.  It costs address space, not disk.  When the file passes half the
 * map anyway, the map doubles between batches.
 */
#define MAP_FACTOR	4
#define MAP_SLACK	((uint64_t)32 << 20)
/* Queue entries spool_drop_worker removes per commit: bounds the dirty
 * pages of one transaction (LMDB allows 128k). */
#ifndef DROP_BATCH
#define DROP_BATCH	16384
#endif
#define MOVE_ASIDE	"; move it aside to start with an empty spool"

struct wstat {
	uint32_t	 worker;
	uint64_t	 count;
	uint64_t	 bytes;
};

/* Workers with entries, by index. */
struct wtab {
	struct wstat	*v;
	size_t		 n;
	size_t		 cap;
};

struct spool {
	MDB_env		*env;
	MDB_dbi		 meta, msg, refs, queue;
	MDB_txn		*txn;		/* the staged batch, or NULL */
	int		 failed;	/* the batch was lost: why */
	int		 broken;	/* the map is gone: nothing works */
	bool		 walking;	/* in a walk: staging would break it */
	int		 dirfd;		/* holds the flock */
	size_t		 psize;
	size_t		 mapsize;	/* as chosen for max_bytes */
	uint64_t	 max_bytes;
	uint64_t	 next_id;
	uint64_t	 top_id;	/* no message id above it is stored */
	/* Now, and as of the last commit (to undo a lost batch). */
	uint64_t	 bytes, bytes0;
	uint64_t	 reserved, reserved0;
	struct wtab	 w, w0;
	char		*path;
	char		 err[512];
};

static void
be32_put(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, sizeof(v));
}

static void
be64_put(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, sizeof(v));
}

/* LMDB aligns values to 2 bytes only: read through memcpy. */
static uint32_t
be32_get(const void *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

static uint64_t
be64_get(const void *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static void
qkey_make(uint8_t *k, uint32_t worker, uint64_t id)
{
	be32_put(k, worker);
	be64_put(k + 4, id);
}

/* LMDB's own codes, apart from errno values (positive in LMDB's results,
 * negative in ours). */
#define IS_MDB_CODE(rc)	((rc) >= MDB_KEYEXIST && (rc) <= MDB_LAST_ERRCODE)

/* LMDB's result, or a negative errno, as a negative errno. */
static int
mdb_errno(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_CURSOR_FULL:
	case MDB_PAGE_FULL:
		return -EFBIG;
	case MDB_INVALID:
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_VERSION_MISMATCH:
	case MDB_INCOMPATIBLE:
		return -EUCLEAN;
	default:
		if (rc > 0)
			return -rc;
		return IS_MDB_CODE(rc) ? -EIO : rc;
	}
}

/* The words for the same. */
static const char *
mdb_errtext(int rc)
{
	return rc < 0 && !IS_MDB_CODE(rc) ? strerror(-rc) : mdb_strerror(rc);
}

/* Says what failed, on the file; returns r. */
static int __attribute__((format(printf, 3, 4)))
spool_fail(struct spool *sp, int r, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(sp->err, sizeof(sp->err), "%s: ", sp->path);
	if (n < 0 || (size_t)n >= sizeof(sp->err))
		return r;
	va_start(ap, fmt);
	vsnprintf(sp->err + n, sizeof(sp->err) - n, fmt, ap);
	va_end(ap);
	return r;
}

/* The file is not a spool this code can use. */
#define spool_corrupt(sp, fmt, ...) \
	spool_fail(sp, -EUCLEAN, fmt MOVE_ASIDE, __VA_ARGS__)

static struct wstat *
wtab_find(const struct wtab *t, uint32_t worker, size_t *pos)
{
	size_t lo = 0, hi = t->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (t->v[mid].worker == worker) {
			*pos = mid;
			return &t->v[mid];
		}
		if (t->v[mid].worker < worker)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return NULL;
}

static int
wtab_reserve(struct wtab *t, size_t n)
{
	struct wstat *v;
	size_t cap;

	if (n <= t->cap)
		return 0;
	cap = t->cap ? t->cap * 2 : 8;
	if (cap < n)
		cap = n;
	if ((v = reallocarray(t->v, cap, sizeof(*v))) == NULL)
		return -ENOMEM;
	t->v = v;
	t->cap = cap;
	return 0;
}

/* The worker's slot, added empty if it has none. */
static struct wstat *
wtab_get(struct wtab *t, uint32_t worker)
{
	struct wstat *s;
	size_t pos;

	if ((s = wtab_find(t, worker, &pos)) != NULL)
		return s;
	if (wtab_reserve(t, t->n + 1) < 0)
		return NULL;
	memmove(&t->v[pos + 1], &t->v[pos], (t->n - pos) * sizeof(*t->v));
	t->n++;
	s = &t->v[pos];
	memset(s, 0, sizeof(*s));
	s->worker = worker;
	return s;
}

/* Workers without entries leave the table. */
static void
wtab_prune(struct wtab *t, struct wstat *s)
{
	size_t pos = s - t->v;

	if (s->count > 0)
		return;
	memmove(&t->v[pos], &t->v[pos + 1], (t->n - pos - 1) * sizeof(*t->v));
	t->n--;
}

static int
wtab_copy(struct wtab *dst, const struct wtab *src)
{
	if (wtab_reserve(dst, src->n) < 0)
		return -ENOMEM;
	if (src->n > 0)
		memcpy(dst->v, src->v, src->n * sizeof(*src->v));
	dst->n = src->n;
	return 0;
}

static int	map_fit(struct spool *, bool full);

/* Opens the batch if none is, remembering what to go back to. */
static int
batch_begin(struct spool *sp)
{
	int rc;

	if (sp->broken)
		return sp->broken;
	if (sp->failed)
		return sp->failed;
	if (sp->walking)
		return -EBUSY;
	if (sp->txn != NULL)
		return 0;
	if (wtab_copy(&sp->w0, &sp->w) < 0)
		return -ENOMEM;
	if ((rc = mdb_txn_begin(sp->env, NULL, 0, &sp->txn)) != 0) {
		sp->txn = NULL;
		return spool_fail(sp, mdb_errno(rc),
		    "cannot begin a transaction: %s", mdb_strerror(rc));
	}
	sp->bytes0 = sp->bytes;
	sp->reserved0 = sp->reserved;
	return 0;
}

/* Everything staged is gone: back to the last commit. */
static void
batch_undo(struct spool *sp)
{
	if (sp->txn != NULL) {
		mdb_txn_abort(sp->txn);
		sp->txn = NULL;
	}
	sp->bytes = sp->bytes0;
	sp->reserved = sp->reserved0;
	/* w never shrinks: it has room for w0, no allocation can fail */
	(void)wtab_copy(&sp->w, &sp->w0);
}

/* A staging call failed half way: the batch is lost, and says so until
 * spool_commit has reported it. */
static int
batch_lost(struct spool *sp, int rc, const char *what)
{
	int r = mdb_errno(rc);

	batch_undo(sp);
	sp->failed = spool_fail(sp, r, "%s: %s; the batch since the last "
	    "commit is lost", what, mdb_errtext(rc));
	/* so that the next batch has room */
	if (rc == MDB_MAP_FULL && map_fit(sp, true) < 0)
		return sp->broken;
	return r;
}

/*
 * A read transaction, or the batch if one is open: with MDB_NOLOCK, a read
 * transaction beside the write one could see its pages reused.
 */
static int
read_begin(struct spool *sp, MDB_txn **txn)
{
	int rc;

	if (sp->broken)
		return sp->broken;
	if (sp->txn != NULL) {
		*txn = sp->txn;
		return 0;
	}
	if ((rc = mdb_txn_begin(sp->env, NULL, MDB_RDONLY, txn)) != 0)
		return spool_fail(sp, mdb_errno(rc),
		    "cannot begin a read transaction: %s", mdb_strerror(rc));
	return 0;
}

static void
read_end(struct spool *sp, MDB_txn *txn)
{
	if (txn != sp->txn)
		mdb_txn_abort(txn);
}

/*
 * Between batches: doubles the map once the file passes half of it, or
 * when a batch found it full (at least back to the size spool_open chose).
 */
static int
map_fit(struct spool *sp, bool full)
{
	MDB_envinfo info;
	uint64_t used;
	size_t size;
	int rc;

	if ((rc = mdb_env_info(sp->env, &info)) != 0)
		return spool_fail(sp, mdb_errno(rc), "%s", mdb_strerror(rc));
	used = ((uint64_t)info.me_last_pgno + 1) * sp->psize;
	if ((!full && used <= info.me_mapsize / 2) ||
	    info.me_mapsize > SIZE_MAX / 2)
		return 0;	/* as big as it gets: MDB_MAP_FULL will say */
	size = info.me_mapsize * 2;
	if (size < sp->mapsize)
		size = sp->mapsize;
	if ((rc = mdb_env_set_mapsize(sp->env, size)) != 0) {
		/* LMDB unmapped the old map first: nothing works now */
		sp->broken = spool_fail(sp, mdb_errno(rc),
		    "cannot grow the map to %zu bytes: %s", size,
		    mdb_strerror(rc));
		return sp->broken;
	}
	return 0;
}

int
spool_commit(struct spool *sp)
{
	int r, rc;

	if (sp->broken)
		return sp->broken;
	if (sp->failed) {
		r = sp->failed;
		sp->failed = 0;
		return r;
	}
	if (sp->txn == NULL)
		return 0;
	rc = mdb_txn_commit(sp->txn);
	sp->txn = NULL;		/* freed, committed or not */
	if (rc != 0) {
		batch_undo(sp);
		return spool_fail(sp, mdb_errno(rc), "commit failed: %s",
		    mdb_strerror(rc));
	}
	return map_fit(sp, false);
}

bool
spool_staged(const struct spool *sp)
{
	return sp->txn != NULL || sp->failed != 0;
}

/*
 * Drops one queue entry's reference to message id; the last one takes the
 * message.  *len: its payload length, *freed: it went.
 */
static int
msg_unref(struct spool *sp, uint64_t id, size_t *len, bool *freed)
{
	uint8_t kb[8], vb[4];
	MDB_val k = { sizeof(kb), kb }, v, m;
	uint32_t n;
	int rc;

	be64_put(kb, id);
	if ((rc = mdb_get(sp->txn, sp->refs, &k, &v)) != 0)
		return rc == MDB_NOTFOUND ? -EUCLEAN : rc;
	if (v.mv_size != sizeof(vb) || (n = be32_get(v.mv_data)) == 0)
		return -EUCLEAN;
	if ((rc = mdb_get(sp->txn, sp->msg, &k, &m)) != 0)
		return rc == MDB_NOTFOUND ? -EUCLEAN : rc;
	if (m.mv_size < MSG_HDR)
		return -EUCLEAN;
	*len = m.mv_size - MSG_HDR;
	*freed = n == 1;
	if (n == 1) {
		if ((rc = mdb_del(sp->txn, sp->msg, &k, NULL)) != 0 ||
		    (rc = mdb_del(sp->txn, sp->refs, &k, NULL)) != 0)
			return rc;
		return 0;
	}
	be32_put(vb, n - 1);
	v.mv_size = sizeof(vb);
	v.mv_data = vb;
	return mdb_put(sp->txn, sp->refs, &k, &v, 0);
}

/* Removes the entry (worker, id) inside the open batch: 1, or 0 if there
 * was none.  Any failure loses the batch. */
static int
entry_del(struct spool *sp, uint32_t worker, uint64_t id)
{
	uint8_t kb[QKEY_LEN];
	MDB_val k = { sizeof(kb), kb };
	struct wstat *s;
	size_t len, pos;
	bool freed;
	int rc;

	qkey_make(kb, worker, id);
	rc = mdb_del(sp->txn, sp->queue, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return batch_lost(sp, rc, "cannot delete a queue entry");
	if ((rc = msg_unref(sp, id, &len, &freed)) != 0)
		return batch_lost(sp, rc, "cannot release a message");
	if ((s = wtab_find(&sp->w, worker, &pos)) == NULL || s->count == 0)
		return batch_lost(sp, -EUCLEAN, "queue counts disagree");
	s->count--;
	s->bytes -= len;
	wtab_prune(&sp->w, s);
	sp->bytes -= SPOOL_QUEUE_OVERHEAD;
	if (freed)
		sp->bytes -= len + SPOOL_MSG_OVERHEAD;
	return 1;
}

int
spool_put(struct spool *sp, uint32_t worker, uint64_t id,
    uint64_t accepted_usec, const void *payload, size_t len)
{
	uint8_t qb[QKEY_LEN], ib[8], rb[4];
	MDB_val qk = { sizeof(qb), qb }, ik = { sizeof(ib), ib }, v, old;
	struct wstat *s;
	uint64_t cost = SPOOL_QUEUE_OVERHEAD;
	uint32_t n = 0;
	int r, rc;

	if (len > UINT32_MAX - MSG_HDR || (payload == NULL && len > 0))
		return -EINVAL;
	if ((r = batch_begin(sp)) < 0)
		return r;
	qkey_make(qb, worker, id);
	be64_put(ib, id);
	if ((rc = mdb_get(sp->txn, sp->queue, &qk, &v)) == 0)
		return -EEXIST;
	if (rc != MDB_NOTFOUND)
		return batch_lost(sp, rc, "cannot look up a queue entry");
	if ((rc = mdb_get(sp->txn, sp->refs, &ik, &v)) == 0) {
		if (v.mv_size != sizeof(rb) || (n = be32_get(v.mv_data)) == 0)
			return batch_lost(sp, -EUCLEAN, "bad reference count");
		if ((rc = mdb_get(sp->txn, sp->msg, &ik, &old)) != 0)
			return batch_lost(sp, rc == MDB_NOTFOUND ? -EUCLEAN :
			    rc, "cannot look up a message");
		if (old.mv_size != MSG_HDR + len)
			return -EINVAL;
	} else if (rc != MDB_NOTFOUND)
		return batch_lost(sp, rc, "cannot look up a message");
	else
		cost += len + SPOOL_MSG_OVERHEAD;
	/* Refuse the new one: an older message is never dropped for it. */
	if (sp->bytes + cost > sp->max_bytes)
		return -ENOSPC;
	if ((s = wtab_get(&sp->w, worker)) == NULL)
		return -ENOMEM;
	if (n == 0) {
		/* Ids mostly grow: appending fills pages instead of
		 * splitting them in half. */
		unsigned flags = MDB_RESERVE | (id > sp->top_id ? MDB_APPEND :
		    MDB_NOOVERWRITE);

		v.mv_size = MSG_HDR + len;
		if ((rc = mdb_put(sp->txn, sp->msg, &ik, &v, flags)) != 0)
			return batch_lost(sp, rc, "cannot store a message");
		be32_put(v.mv_data, (uint32_t)len);
		be32_put((uint8_t *)v.mv_data + 4, 0);
		be64_put((uint8_t *)v.mv_data + 8, accepted_usec);
		if (len > 0)
			memcpy((uint8_t *)v.mv_data + MSG_HDR, payload, len);
		flags = id > sp->top_id ? MDB_APPEND : 0;
		be32_put(rb, 1);
		v.mv_size = sizeof(rb);
		v.mv_data = rb;
		if ((rc = mdb_put(sp->txn, sp->refs, &ik, &v, flags)) != 0)
			return batch_lost(sp, rc, "cannot store a message");
		if (id > sp->top_id)
			sp->top_id = id;
	} else {
		be32_put(rb, n + 1);
		v.mv_size = sizeof(rb);
		v.mv_data = rb;
		if ((rc = mdb_put(sp->txn, sp->refs, &ik, &v, 0)) != 0)
			return batch_lost(sp, rc, "cannot store a message");
	}
	v.mv_size = 0;
	v.mv_data = NULL;
	if ((rc = mdb_put(sp->txn, sp->queue, &qk, &v, 0)) != 0)
		return batch_lost(sp, rc, "cannot store a queue entry");
	s->count++;
	s->bytes += len;
	sp->bytes += cost;
	return 0;
}

int
spool_del(struct spool *sp, uint32_t worker, uint64_t id)
{
	size_t pos;
	int r;

	if (sp->broken)
		return sp->broken;
	if (sp->failed)
		return sp->failed;
	/* The common case: an ack for a worker with nothing spooled. */
	if (wtab_find(&sp->w, worker, &pos) == NULL)
		return 0;
	if ((r = batch_begin(sp)) < 0)
		return r;
	return entry_del(sp, worker, id);
}

int
spool_drop_worker(struct spool *sp, uint32_t worker, uint64_t *count)
{
	uint8_t kb[QKEY_LEN];
	MDB_val k, v;
	MDB_cursor *c;
	uint64_t id;
	size_t pos, n;
	int r, rc;

	*count = 0;
	for (;;) {
		if (sp->broken || sp->failed)
			return sp->broken ? sp->broken : sp->failed;
		if (wtab_find(&sp->w, worker, &pos) == NULL)
			return 0;
		if ((r = batch_begin(sp)) < 0)
			return r;
		if ((rc = mdb_cursor_open(sp->txn, sp->queue, &c)) != 0)
			return batch_lost(sp, rc, "cannot open a cursor");
		for (n = 0; n < DROP_BATCH; n++) {
			qkey_make(kb, worker, 0);
			k.mv_size = sizeof(kb);
			k.mv_data = kb;
			rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
			if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size !=
			    QKEY_LEN || be32_get(k.mv_data) != worker)))
				break;
			if (rc != 0) {
				mdb_cursor_close(c);
				return batch_lost(sp, rc,
				    "cannot read the queue");
			}
			id = be64_get((uint8_t *)k.mv_data + 4);
			if ((r = entry_del(sp, worker, id)) < 0)
				return r;	/* the batch, cursor and all */
			(*count)++;
		}
		mdb_cursor_close(c);
		if (n < DROP_BATCH)
			return 0;
		if ((r = spool_commit(sp)) < 0)
			return r;
	}
}

int
spool_reserve_ids(struct spool *sp, uint64_t upto)
{
	uint8_t vb[8];
	MDB_val k = { 3, "ids" }, v = { sizeof(vb), vb };
	int r, rc;

	if (upto <= sp->reserved)
		return 0;
	if ((r = batch_begin(sp)) < 0)
		return r;
	be64_put(vb, upto);
	if ((rc = mdb_put(sp->txn, sp->meta, &k, &v, 0)) != 0)
		return batch_lost(sp, rc, "cannot reserve message ids");
	sp->reserved = upto;
	return 0;
}

uint64_t
spool_next_id(const struct spool *sp)
{
	return sp->next_id;
}

uint64_t
spool_ids_reserved(const struct spool *sp)
{
	return sp->txn != NULL || sp->failed ? sp->reserved0 : sp->reserved;
}

uint64_t
spool_bytes(const struct spool *sp)
{
	return sp->bytes;
}

uint64_t
spool_max_bytes(const struct spool *sp)
{
	return sp->max_bytes;
}

size_t
spool_nworkers(const struct spool *sp)
{
	return sp->w.n;
}

/* The accepted time of worker's first message. */
static int
oldest_get(struct spool *sp, uint32_t worker, uint64_t *usec)
{
	uint8_t kb[QKEY_LEN];
	MDB_val k = { sizeof(kb), kb }, v;
	MDB_cursor *c;
	MDB_txn *txn;
	int r, rc;

	*usec = 0;
	if ((r = read_begin(sp, &txn)) < 0)
		return r;
	if ((rc = mdb_cursor_open(txn, sp->queue, &c)) != 0)
		goto out;
	qkey_make(kb, worker, 0);
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	mdb_cursor_close(c);
	if (rc == 0 && k.mv_size == QKEY_LEN &&
	    be32_get(k.mv_data) == worker) {
		k.mv_size = 8;
		k.mv_data = (uint8_t *)k.mv_data + 4;
		if ((rc = mdb_get(txn, sp->msg, &k, &v)) == 0 &&
		    v.mv_size >= MSG_HDR)
			*usec = be64_get((uint8_t *)v.mv_data + 8);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
out:
	read_end(sp, txn);
	return rc ? spool_fail(sp, mdb_errno(rc), "cannot read the queue: %s",
	    mdb_strerror(rc)) : 0;
}

int
spool_worker_at(struct spool *sp, size_t i, struct spool_stat *st)
{
	memset(st, 0, sizeof(*st));
	if (i >= sp->w.n)
		return -ENOENT;
	st->worker = sp->w.v[i].worker;
	st->count = sp->w.v[i].count;
	st->bytes = sp->w.v[i].bytes;
	return oldest_get(sp, st->worker, &st->oldest_usec);
}

int
spool_worker_stats(struct spool *sp, uint32_t worker, struct spool_stat *st)
{
	size_t pos;

	if (wtab_find(&sp->w, worker, &pos) == NULL) {
		memset(st, 0, sizeof(*st));
		st->worker = worker;
		return 0;
	}
	return spool_worker_at(sp, pos, st);
}

const char *
spool_path(const struct spool *sp)
{
	return sp->path;
}

const char *
spool_error(const struct spool *sp)
{
	return sp->err;
}

/*
 * The walk: every message in id order, with the workers whose queues name
 * it, found by merging one cursor per worker (a heap by id).  It checks
 * what it reads, so the same code vets a spool when it opens and hands it
 * out when it loads.
 */
struct whead {
	uint64_t	 id;
	uint32_t	 worker;
	MDB_cursor	*c;
};

struct walk {
	MDB_cursor	*msg, *refs;
	struct whead	*heap;
	size_t		 nheap;
	size_t		 nc;		/* cursors in heap[].c, to close */
	MDB_cursor	**cs;
	uint32_t	*ws;		/* one message's workers */
	bool		 touch;		/* read a byte of every page */
	struct wtab	 w;		/* counts found */
	uint64_t	 bytes;
	uint64_t	 top_id;
};

static bool
whead_less(const struct whead *a, const struct whead *b)
{
	return a->id < b->id || (a->id == b->id && a->worker < b->worker);
}

static void
heap_push(struct walk *wk, struct whead h)
{
	size_t i = wk->nheap++, p;

	while (i > 0 && whead_less(&h, &wk->heap[p = (i - 1) / 2])) {
		wk->heap[i] = wk->heap[p];
		i = p;
	}
	wk->heap[i] = h;
}

static struct whead
heap_pop(struct walk *wk)
{
	struct whead top = wk->heap[0], last = wk->heap[--wk->nheap];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < wk->nheap) {
		if (c + 1 < wk->nheap && whead_less(&wk->heap[c + 1],
		    &wk->heap[c]))
			c++;
		if (!whead_less(&wk->heap[c], &last))
			break;
		wk->heap[i] = wk->heap[c];
		i = c;
	}
	if (wk->nheap > 0)
		wk->heap[i] = last;
	return top;
}

static void
walk_free(struct walk *wk)
{
	size_t i;

	for (i = 0; i < wk->nc; i++)
		mdb_cursor_close(wk->cs[i]);
	if (wk->msg != NULL)
		mdb_cursor_close(wk->msg);
	if (wk->refs != NULL)
		mdb_cursor_close(wk->refs);
	free(wk->cs);
	free(wk->heap);
	free(wk->ws);
	free(wk->w.v);
	memset(wk, 0, sizeof(*wk));
}

/* Reads a byte of each page under p: a page past the end of a truncated
 * file raises SIGBUS here, where spool_open catches it. */
static void
touch(const void *p, size_t len)
{
	const volatile uint8_t *b = p;
	size_t i;

	for (i = 0; i < len; i += 4096)
		(void)b[i];
	if (len > 0)
		(void)b[len - 1];
}

/* Puts worker's cursor c (on a key just read) into the heap, or closes
 * its run if the key belongs to the next worker. */
static int
walk_queue_key(struct spool *sp, struct walk *wk, MDB_cursor *c,
    uint32_t worker, const MDB_val *k, const MDB_val *v)
{
	if (k->mv_size != QKEY_LEN || v->mv_size != 0)
		return spool_corrupt(sp, "queue entry of %zu+%zu bytes",
		    k->mv_size, v->mv_size);
	if (be32_get(k->mv_data) != worker)
		return 0;
	heap_push(wk, (struct whead){ be64_get((uint8_t *)k->mv_data + 4),
	    worker, c });
	return 0;
}

/* One cursor per worker found in the queue database, at its first entry. */
static int
walk_start(struct spool *sp, MDB_txn *txn, struct walk *wk)
{
	uint8_t kb[QKEY_LEN];
	MDB_val k, v;
	MDB_cursor *c, **cs;
	struct whead *h;
	uint32_t worker = 0;
	int r, rc;

	for (;;) {
		if (wk->nc % 16 == 0) {
			if ((cs = reallocarray(wk->cs, wk->nc + 16,
			    sizeof(*cs))) == NULL)
				return -ENOMEM;
			wk->cs = cs;
			if ((h = reallocarray(wk->heap, wk->nc + 16,
			    sizeof(*h))) == NULL)
				return -ENOMEM;
			wk->heap = h;
		}
		if ((rc = mdb_cursor_open(txn, sp->queue, &c)) != 0)
			return spool_fail(sp, mdb_errno(rc), "%s",
			    mdb_strerror(rc));
		qkey_make(kb, worker, 0);
		k.mv_size = sizeof(kb);
		k.mv_data = kb;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND) {
			mdb_cursor_close(c);
			break;
		}
		wk->cs[wk->nc++] = c;
		if (rc != 0)
			return spool_corrupt(sp, "cannot read the queue: %s",
			    mdb_strerror(rc));
		if (k.mv_size != QKEY_LEN)
			return spool_corrupt(sp, "queue key of %zu bytes",
			    k.mv_size);
		worker = be32_get(k.mv_data);
		if ((r = walk_queue_key(sp, wk, c, worker, &k, &v)) < 0)
			return r;
		if (worker == UINT32_MAX)
			break;
		worker++;
	}
	if ((wk->ws = calloc(wk->nc + 1, sizeof(*wk->ws))) == NULL)
		return -ENOMEM;
	return 0;
}

/* Takes every heap head naming message id into wk->ws; advances them. */
static int
walk_take(struct spool *sp, struct walk *wk, uint64_t id, size_t *nw)
{
	struct whead h;
	MDB_val k, v;
	int r, rc;

	*nw = 0;
	while (wk->nheap > 0 && wk->heap[0].id <= id) {
		h = heap_pop(wk);
		if (h.id < id)
			return spool_corrupt(sp, "worker %" PRIu32 "'s queue "
			    "names message %" PRIu64 ", which is not there",
			    h.worker, h.id);
		wk->ws[(*nw)++] = h.worker;
		rc = mdb_cursor_get(h.c, &k, &v, MDB_NEXT);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			return spool_corrupt(sp, "cannot read the queue: %s",
			    mdb_strerror(rc));
		if ((r = walk_queue_key(sp, wk, h.c, h.worker, &k, &v)) < 0)
			return r;
	}
	return 0;
}

/* Counts message id, of len bytes, for each of its workers. */
static int
walk_count(struct walk *wk, uint64_t id, size_t len, size_t nw)
{
	struct wstat *s;
	size_t i;

	for (i = 0; i < nw; i++) {
		if ((s = wtab_get(&wk->w, wk->ws[i])) == NULL)
			return -ENOMEM;
		s->count++;
		s->bytes += len;
	}
	wk->bytes += len + SPOOL_MSG_OVERHEAD + nw * SPOOL_QUEUE_OVERHEAD;
	wk->top_id = id;
	return 0;
}

/* The walk saw every record: none hides where keys of the right size
 * would not be. */
static int
walk_counts(struct spool *sp, MDB_txn *txn, struct walk *wk)
{
	MDB_stat ms;
	uint64_t n = 0;
	size_t i;
	int rc;

	for (i = 0; i < wk->w.n; i++)
		n += wk->w.v[i].count;
	if ((rc = mdb_stat(txn, sp->queue, &ms)) != 0)
		return spool_fail(sp, mdb_errno(rc), "%s", mdb_strerror(rc));
	if (ms.ms_entries != n)
		return spool_corrupt(sp, "the queue holds %zu entries, %" PRIu64
		    " of them well-formed", ms.ms_entries, n);
	return 0;
}

static int
walk_run(struct spool *sp, MDB_txn *txn, struct walk *wk, spool_load_cb *cb,
    void *arg)
{
	MDB_val mk, mv, rk, rv;
	uint64_t id;
	uint32_t refs, len;
	size_t nw;
	int r, rc, rrc;

	if ((rc = mdb_cursor_open(txn, sp->msg, &wk->msg)) != 0 ||
	    (rc = mdb_cursor_open(txn, sp->refs, &wk->refs)) != 0)
		return spool_fail(sp, mdb_errno(rc), "%s", mdb_strerror(rc));
	if ((r = walk_start(sp, txn, wk)) < 0)
		return r;
	rc = mdb_cursor_get(wk->msg, &mk, &mv, MDB_FIRST);
	rrc = mdb_cursor_get(wk->refs, &rk, &rv, MDB_FIRST);
	for (; rc == 0; rc = mdb_cursor_get(wk->msg, &mk, &mv, MDB_NEXT),
	    rrc = mdb_cursor_get(wk->refs, &rk, &rv, MDB_NEXT)) {
		if (mk.mv_size != 8)
			return spool_corrupt(sp, "message key of %zu bytes",
			    mk.mv_size);
		id = be64_get(mk.mv_data);
		if (mv.mv_size < MSG_HDR ||
		    (len = be32_get(mv.mv_data)) != mv.mv_size - MSG_HDR ||
		    be32_get((uint8_t *)mv.mv_data + 4) != 0)
			return spool_corrupt(sp, "message %" PRIu64 ": record "
			    "of %zu bytes does not match its length", id,
			    mv.mv_size);
		if (rrc == MDB_NOTFOUND || (rrc == 0 && (rk.mv_size != 8 ||
		    be64_get(rk.mv_data) != id)))
			return spool_corrupt(sp, "message %" PRIu64 " has no "
			    "reference count", id);
		if (rrc != 0)
			return spool_corrupt(sp, "cannot read the reference "
			    "counts: %s", mdb_strerror(rrc));
		if (rv.mv_size != 4 || (refs = be32_get(rv.mv_data)) == 0)
			return spool_corrupt(sp, "message %" PRIu64 ": bad "
			    "reference count", id);
		if ((r = walk_take(sp, wk, id, &nw)) < 0)
			return r;
		if (nw != refs)
			return spool_corrupt(sp, "message %" PRIu64 " counts %"
			    PRIu32 " queue entries, %zu name it", id, refs,
			    nw);
		if (wk->touch)
			touch(mv.mv_data, mv.mv_size);
		if ((r = walk_count(wk, id, len, nw)) < 0)
			return r;
		if (cb != NULL && (r = cb(id, be64_get((uint8_t *)mv.mv_data +
		    8), (uint8_t *)mv.mv_data + MSG_HDR, len, wk->ws, nw,
		    arg)) < 0)
			return r;
	}
	if (rc != MDB_NOTFOUND)
		return spool_corrupt(sp, "cannot read the messages: %s",
		    mdb_strerror(rc));
	if (rrc == 0)
		return spool_corrupt(sp, "reference count for message %" PRIu64
		    ", which is not there", rk.mv_size == 8 ?
		    be64_get(rk.mv_data) : 0);
	if (wk->nheap > 0)
		return spool_corrupt(sp, "worker %" PRIu32 "'s queue names "
		    "message %" PRIu64 ", which is not there",
		    wk->heap[0].worker, wk->heap[0].id);
	return walk_counts(sp, txn, wk);
}

int
spool_load(struct spool *sp, spool_load_cb *cb, void *arg)
{
	struct walk wk;
	MDB_txn *txn;
	int r;

	if (sp->walking)
		return -EBUSY;
	if ((r = read_begin(sp, &txn)) < 0)
		return r;
	memset(&wk, 0, sizeof(wk));
	sp->walking = true;
	r = walk_run(sp, txn, &wk, cb, arg);
	sp->walking = false;
	walk_free(&wk);
	read_end(sp, txn);
	return r;
}

/* Opening.  A page the file lacks (truncated) would be SIGBUS the first
 * time it is read: the check reads them all, catching it. */
static sigjmp_buf *bus_jmp;
static struct sigaction bus_old;

static void
bus_catch(int sig)
{
	(void)sig;
	siglongjmp(*bus_jmp, 1);
}

/* Reads every record of one of LMDB's own databases (free list, names). */
static int
touch_db(MDB_txn *txn, MDB_dbi dbi, struct walk *wk)
{
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &wk->msg)) != 0)
		return rc;
	while ((rc = mdb_cursor_get(wk->msg, &k, &v, MDB_NEXT)) == 0) {
		touch(k.mv_data, k.mv_size);
		touch(v.mv_data, v.mv_size);
	}
	mdb_cursor_close(wk->msg);
	wk->msg = NULL;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
dbi_open(struct spool *sp, MDB_txn *txn, const char *name, MDB_dbi *dbi)
{
	int rc = mdb_dbi_open(txn, name, 0, dbi);

	if (rc == MDB_NOTFOUND)
		return spool_corrupt(sp, "an LMDB file, but not a fanout "
		    "spool: it has no %s database", name);
	if (rc != 0)
		return spool_corrupt(sp, "%s database: %s", name,
		    mdb_strerror(rc));
	return 0;
}

/* The format, the databases, then every record. */
static int
check(struct spool *sp, MDB_txn *txn, struct walk *wk)
{
	MDB_val k = { 6, "format" }, v;
	uint32_t format;
	int r, rc;

	if ((r = dbi_open(sp, txn, "meta", &sp->meta)) < 0)
		return r;
	if ((rc = mdb_get(txn, sp->meta, &k, &v)) != 0 || v.mv_size != 4)
		return spool_corrupt(sp, "%s", "no format version");
	if ((format = be32_get(v.mv_data)) != SPOOL_FORMAT)
		return spool_fail(sp, -EPROTONOSUPPORT, "spool format %" PRIu32
		    ", but this fanoutd reads format %d: run the fanoutd "
		    "that wrote it" MOVE_ASIDE, format, SPOOL_FORMAT);
	k.mv_size = 3;
	k.mv_data = "ids";
	if ((rc = mdb_get(txn, sp->meta, &k, &v)) == 0 && v.mv_size == 8)
		sp->reserved = be64_get(v.mv_data);
	else if (rc != MDB_NOTFOUND)
		return spool_corrupt(sp, "%s", "bad id reservation");
	if ((r = dbi_open(sp, txn, "msg", &sp->msg)) < 0 ||
	    (r = dbi_open(sp, txn, "refs", &sp->refs)) < 0 ||
	    (r = dbi_open(sp, txn, "queue", &sp->queue)) < 0)
		return r;
	if ((rc = touch_db(txn, 0, wk)) != 0 ||		/* free pages */
	    (rc = touch_db(txn, 1, wk)) != 0)	/* database names */
		return spool_corrupt(sp, "%s", mdb_strerror(rc));
	wk->touch = true;
	return walk_run(sp, txn, wk, NULL, NULL);
}

static int
check_guarded(struct spool *sp, MDB_txn *txn, struct walk *wk)
{
	struct sigaction sa;
	sigjmp_buf jb;
	sigset_t bus, mask;
	int r;

	if (sigsetjmp(jb, 1) != 0) {
		sigaction(SIGBUS, &bus_old, NULL);
		bus_jmp = NULL;
		return spool_corrupt(sp, "%s", "truncated or damaged: it "
		    "lacks pages it refers to");
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = bus_catch;
	sigemptyset(&sa.sa_mask);
	bus_jmp = &jb;
	sigaction(SIGBUS, &sa, &bus_old);
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	sigprocmask(SIG_UNBLOCK, &bus, &mask);
	r = check(sp, txn, wk);
	sigprocmask(SIG_SETMASK, &mask, NULL);
	sigaction(SIGBUS, &bus_old, NULL);
	bus_jmp = NULL;
	return r;
}

static int
env_open(struct spool *sp, const char *path, size_t mapsize, MDB_env **envp)
{
	MDB_env *env;
	int r, rc;

	*envp = NULL;
	if ((rc = mdb_env_create(&env)) != 0)
		return spool_fail(sp, mdb_errno(rc), "%s", mdb_strerror(rc));
	if ((rc = mdb_env_set_maxdbs(env, 4)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, mapsize)) != 0 ||
	    (rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK,
	    0600)) != 0) {
		mdb_env_close(env);
		if ((r = mdb_errno(rc)) == -EUCLEAN)
			return spool_corrupt(sp, "%s", mdb_strerror(rc));
		return spool_fail(sp, r, "%s", mdb_strerror(rc));
	}
	*envp = env;
	return 0;
}

/*
 * A new spool is made whole under another name, then renamed: a crash
 * while making it leaves no half-made data.mdb, so that every data.mdb
 * that does not add up is damage, for an administrator to look at.
 */
static int
spool_create(struct spool *sp, size_t mapsize)
{
	static const char *const dbs[] = { "msg", "refs", "queue" };
	uint8_t fb[4];
	MDB_val k = { 6, "format" }, v = { sizeof(fb), fb };
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	char *tmp;
	size_t i;
	int r, rc;

	if (asprintf(&tmp, "%s.new", sp->path) < 0)
		return -ENOMEM;
	if (unlink(tmp) < 0 && errno != ENOENT) {
		r = spool_fail(sp, -errno, "cannot remove %s: %s", tmp,
		    strerror(errno));
		free(tmp);
		return r;
	}
	if ((r = env_open(sp, tmp, mapsize, &env)) < 0) {
		free(tmp);
		return r;
	}
	be32_put(fb, SPOOL_FORMAT);
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) == 0) {
		if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &dbi)) == 0)
			rc = mdb_put(txn, dbi, &k, &v, 0);
		for (i = 0; rc == 0 && i < sizeof(dbs) / sizeof(dbs[0]); i++)
			rc = mdb_dbi_open(txn, dbs[i], MDB_CREATE, &dbi);
		if (rc == 0)
			rc = mdb_txn_commit(txn);	/* syncs */
		else
			mdb_txn_abort(txn);
	}
	mdb_env_close(env);
	if (rc != 0)
		r = spool_fail(sp, mdb_errno(rc), "cannot create %s: %s", tmp,
		    mdb_strerror(rc));
	else if (rename(tmp, sp->path) < 0 || fsync(sp->dirfd) < 0)
		r = spool_fail(sp, -errno, "cannot create: %s",
		    strerror(errno));
	if (r < 0)
		(void)unlink(tmp);
	free(tmp);
	return r;
}

static int
spool_open1(struct spool *sp, const char *dir)
{
	struct stat st;
	MDB_stat ms;
	struct walk *wk;
	MDB_txn *txn;
	uint64_t mapsize;
	int fl, r, rc, fd;

	if (sp->max_bytes > (SIZE_MAX - MAP_SLACK) / MAP_FACTOR - (1 << 20))
		return spool_fail(sp, -EFBIG, "a bound of %" PRIu64 " bytes is "
		    "too large for this system's address space",
		    sp->max_bytes);
	mapsize = sp->max_bytes * MAP_FACTOR + MAP_SLACK;
	mapsize = (mapsize + (1 << 20) - 1) & ~(uint64_t)((1 << 20) - 1);
	sp->mapsize = mapsize;
	if ((sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return spool_fail(sp, -errno, "cannot open its directory: %s",
		    strerror(errno));
	if (flock(sp->dirfd, LOCK_EX | LOCK_NB) < 0)
		return spool_fail(sp, errno == EWOULDBLOCK ? -EBUSY : -errno,
		    "%s", errno == EWOULDBLOCK ? "in use by another process "
		    "(its directory is locked)" : strerror(errno));
	if (stat(sp->path, &st) < 0) {
		if (errno != ENOENT)
			return spool_fail(sp, -errno, "%s", strerror(errno));
		if ((r = spool_create(sp, mapsize)) < 0)
			return r;
	} else if (!S_ISREG(st.st_mode))
		return spool_corrupt(sp, "%s", "not a regular file");
	else if (st.st_size == 0)
		return spool_corrupt(sp, "%s", "an empty file, not a spool");
	if ((r = env_open(sp, sp->path, mapsize, &sp->env)) < 0)
		return r;
	/* LMDB leaves this one inheritable: workers must not get it. */
	if (mdb_env_get_fd(sp->env, &fd) == 0 &&
	    (fl = fcntl(fd, F_GETFD)) >= 0)
		(void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	if ((rc = mdb_env_stat(sp->env, &ms)) != 0)
		return spool_fail(sp, mdb_errno(rc), "%s", mdb_strerror(rc));
	sp->psize = ms.ms_psize;
	if ((rc = mdb_txn_begin(sp->env, NULL, MDB_RDONLY, &txn)) != 0)
		return spool_fail(sp, mdb_errno(rc), "%s", mdb_strerror(rc));
	/* On the heap: what the check leaves in it survives a SIGBUS. */
	if ((wk = calloc(1, sizeof(*wk))) == NULL) {
		mdb_txn_abort(txn);
		return -ENOMEM;
	}
	r = check_guarded(sp, txn, wk);
	if (r == 0) {
		sp->bytes = wk->bytes;
		sp->top_id = wk->top_id;
		sp->w = wk->w;
		memset(&wk->w, 0, sizeof(wk->w));
	}
	walk_free(wk);
	free(wk);
	/* A read transaction's commit keeps the database handles. */
	if (r < 0) {
		mdb_txn_abort(txn);
		return r;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return spool_fail(sp, mdb_errno(rc), "%s", mdb_strerror(rc));
	sp->next_id = sp->top_id < UINT64_MAX ? sp->top_id + 1 : sp->top_id;
	if (sp->next_id < sp->reserved)
		sp->next_id = sp->reserved;
	if (sp->next_id == 0)
		sp->next_id = 1;
	return map_fit(sp, false);
}

int
spool_open(const char *dir, uint64_t max_bytes, struct spool **spp,
    char *err, size_t errlen)
{
	struct spool *sp;
	int r;

	*spp = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if ((sp = calloc(1, sizeof(*sp))) == NULL ||
	    asprintf(&sp->path, "%s/%s", dir, SPOOL_FILE) < 0) {
		free(sp);
		if (errlen > 0)
			snprintf(err, errlen, "%s: %s", dir, strerror(ENOMEM));
		return -ENOMEM;
	}
	sp->dirfd = -1;
	sp->max_bytes = max_bytes;
	if ((r = spool_open1(sp, dir)) < 0) {
		if (errlen > 0) {
			if (sp->err[0] == '\0')
				spool_fail(sp, r, "%s", strerror(-r));
			snprintf(err, errlen, "%s", sp->err);
		}
		spool_close(sp);
		return r;
	}
	*spp = sp;
	return 0;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->txn != NULL)
		mdb_txn_abort(sp->txn);
	if (sp->env != NULL)
		mdb_env_close(sp->env);
	if (sp->dirfd >= 0)
		close(sp->dirfd);	/* and the lock with it */
	free(sp->w.v);
	free(sp->w0.v);
	free(sp->path);
	free(sp);
}
