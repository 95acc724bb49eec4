/* SPDX-License-Identifier: MIT */
/*
 * The spool (spool.c): what is committed comes back in order after a
 * reopen and what is not does not; payloads shared by several workers and
 * their counts; the bound; the id reservation; dropping a worker; a batch
 * that fails as a whole; damaged files refused with their path and left
 * byte for byte as they were; and a writer SIGKILLed at random points.
 * Each test gets its own directory.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* Small enough that a test drops a worker over several commits. */
#define DROP_BATCH	7
#include "../src/spool.c"

#define MB		((uint64_t)1 << 20)

/* ---- helpers ---- */

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
dir_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char *dir;

	if (asprintf(&dir, "%s/t_spool.XXXXXX", tmp ? tmp : "/tmp") < 0)
		return -1;
	if (mkdtemp(dir) == NULL) {
		free(dir);
		return -1;
	}
	*state = dir;
	return 0;
}

static int
dir_teardown(void **state)
{
	char *dir = *state;
	int r = nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);

	free(dir);
	return r;
}

static char *
file_in(const char *dir, const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

/* Message id's payload: bytes only it has. */
static void
fill(uint8_t *b, uint64_t id, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		b[i] = (uint8_t)(id * 31 + i * 7 + (i >> 8));
}

static bool
filled(const uint8_t *b, uint64_t id, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i] != (uint8_t)(id * 31 + i * 7 + (i >> 8)))
			return false;
	return true;
}

static struct spool *
open_ok(const char *dir, uint64_t max)
{
	struct spool *sp;
	char err[512];
	int r = spool_open(dir, max, &sp, err, sizeof(err));

	if (r < 0)
		fail_msg("spool_open %s: %d %s", dir, r, err);
	assert_non_null(sp);
	return sp;
}

static void
put_ok(struct spool *sp, uint32_t worker, uint64_t id, size_t len)
{
	uint8_t *b = malloc(len + 1);
	int r;

	assert_non_null(b);
	fill(b, id, len);
	r = spool_put(sp, worker, id, 1000000 + id, b, len);
	if (r != 0)
		fail_msg("put %u/%llu: %d %s", worker, (unsigned long long)id,
		    r, spool_error(sp));
	free(b);
}

static void
commit_ok(struct spool *sp)
{
	int r = spool_commit(sp);

	if (r != 0)
		fail_msg("commit: %d %s", r, spool_error(sp));
	assert_false(spool_staged(sp));
}

/* What a load handed out. */
struct got {
	uint64_t	 id;
	uint64_t	 accepted;
	size_t		 len;
	bool		 ok;		/* payload as fill() made it */
	uint32_t	 workers[8];
	size_t		 nworkers;
};

struct loaded {
	struct got	*v;
	size_t		 n;
};

static int
load_cb(uint64_t id, uint64_t accepted, const void *payload, size_t len,
    const uint32_t *workers, size_t nworkers, void *arg)
{
	struct loaded *l = arg;
	struct got *g;

	l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
	if (l->v == NULL)
		return -ENOMEM;
	g = &l->v[l->n++];
	g->id = id;
	g->accepted = accepted;
	g->len = len;
	g->ok = filled(payload, id, len);
	g->nworkers = nworkers < 8 ? nworkers : 8;
	memcpy(g->workers, workers, g->nworkers * sizeof(*workers));
	return 0;
}

static void
load_ok(struct spool *sp, struct loaded *l)
{
	int r;

	memset(l, 0, sizeof(*l));
	r = spool_load(sp, load_cb, l);
	if (r != 0)
		fail_msg("load: %d %s", r, spool_error(sp));
}

static uint64_t
file_sum(const char *path, off_t *size)
{
	uint64_t h = 14695981039346656037ULL;
	uint8_t buf[8192];
	ssize_t n, i;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	*size = 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (i = 0; i < n; i++)
			h = (h ^ buf[i]) * 1099511628211ULL;
		*size += n;
	}
	assert_true(n == 0);
	close(fd);
	return h;
}

/* spool_open fails with r, naming the file and saying want, and leaves
 * it exactly as it was; nothing else appears in the directory. */
static void
open_refused(const char *dir, int r_want, const char *want)
{
	char *path = file_in(dir, SPOOL_FILE), *tmp = file_in(dir,
	    SPOOL_FILE ".new"), err[512];
	uint64_t before, after;
	off_t size0, size1;
	struct spool *sp = (void *)1;
	struct stat st;
	int r;

	before = file_sum(path, &size0);
	r = spool_open(dir, MB, &sp, err, sizeof(err));
	assert_int_equal(r, r_want);
	assert_null(sp);
	if (strncmp(err, path, strlen(path)) != 0 || strstr(err, want) == NULL)
		fail_msg("error \"%s\": wanted %s and \"%s\"", err, path, want);
	after = file_sum(path, &size1);
	assert_true(before == after);
	assert_true(size0 == size1);
	assert_int_equal(stat(tmp, &st), -1);
	/* and again: refusing changed nothing that matters next time */
	assert_int_equal(spool_open(dir, MB, &sp, err, sizeof(err)), r_want);
	free(path);
	free(tmp);
}

/* ---- tests ---- */

/* Three workers, messages of every size class, some shared: all back in
 * id order after a reopen, with their workers, bytes and times. */
static void
test_reopen_in_order(void **state)
{
	static const size_t lens[] = { 0, 1, 64, 2000, 3000, 70000 };
	const char *dir = *state;
	uint64_t bytes = 0, wbytes[3] = { 0 }, wcount[3] = { 0 };
	struct spool_stat st;
	struct loaded l;
	struct spool *sp;
	uint64_t id;
	uint32_t w;
	size_t i, n;

	sp = open_ok(dir, 64 * MB);
	assert_true(spool_next_id(sp) == 1);
	assert_true(spool_bytes(sp) == 0);
	assert_int_equal(spool_nworkers(sp), 0);
	for (id = 1; id <= 60; id++) {
		size_t len = lens[id % 6];

		n = 0;
		/* worker w gets id unless (id + w) % 4 == 0 */
		for (w = 0; w < 3; w++) {
			if ((id + w) % 4 == 0)
				continue;
			put_ok(sp, w, id, len);
			wbytes[w] += len;
			wcount[w]++;
			n++;
		}
		bytes += len + SPOOL_MSG_OVERHEAD + n * SPOOL_QUEUE_OVERHEAD;
		/* a batch every 7 messages: several commits */
		if (id % 7 == 0)
			commit_ok(sp);
	}
	assert_true(spool_staged(sp));
	commit_ok(sp);
	assert_true(spool_bytes(sp) == bytes);
	spool_close(sp);

	sp = open_ok(dir, 64 * MB);
	assert_true(spool_bytes(sp) == bytes);
	assert_true(spool_next_id(sp) == 61);
	load_ok(sp, &l);
	assert_int_equal(l.n, 60);
	for (i = 0; i < l.n; i++) {
		id = i + 1;
		assert_true(l.v[i].id == id);
		assert_true(l.v[i].accepted == 1000000 + id);
		assert_int_equal(l.v[i].len, lens[id % 6]);
		assert_true(l.v[i].ok);
		n = 0;
		for (w = 0; w < 3; w++)
			if ((id + w) % 4 != 0)
				assert_int_equal(l.v[i].workers[n++], w);
		assert_int_equal(l.v[i].nworkers, n);
	}
	free(l.v);
	assert_int_equal(spool_nworkers(sp), 3);
	for (w = 0; w < 3; w++) {
		assert_int_equal(spool_worker_stats(sp, w, &st), 0);
		assert_int_equal(st.worker, w);
		assert_true(st.count == wcount[w]);
		assert_true(st.bytes == wbytes[w]);
		/* worker 0 misses id 4, 1 misses 3, 2 misses 2 */
		assert_true(st.oldest_usec == 1000000 + 1);
	}
	assert_int_equal(spool_worker_stats(sp, 9, &st), 0);
	assert_true(st.count == 0 && st.bytes == 0 && st.oldest_usec == 0);
	spool_close(sp);
}

/* One payload for three workers, gone with the last of them. */
static void
test_shared_refs(void **state)
{
	const char *dir = *state;
	struct spool_stat st;
	struct loaded l;
	struct spool *sp;

	sp = open_ok(dir, 64 * MB);
	put_ok(sp, 0, 7, 5000);
	put_ok(sp, 1, 7, 5000);
	put_ok(sp, 2, 7, 5000);
	assert_int_equal(spool_put(sp, 1, 7, 0, "x", 1), -EEXIST);
	{
		uint8_t b[10];

		fill(b, 7, sizeof(b));
		/* the same id must be the same message */
		assert_int_equal(spool_put(sp, 3, 7, 0, b, sizeof(b)),
		    -EINVAL);
	}
	commit_ok(sp);
	/* stored once */
	assert_true(spool_bytes(sp) == 5000 + SPOOL_MSG_OVERHEAD +
	    3 * SPOOL_QUEUE_OVERHEAD);
	assert_int_equal(spool_del(sp, 0, 7), 1);
	assert_int_equal(spool_del(sp, 0, 7), 0);	/* not there: fine */
	assert_int_equal(spool_del(sp, 1, 7), 1);
	assert_int_equal(spool_del(sp, 2, 8), 0);
	commit_ok(sp);
	spool_close(sp);

	sp = open_ok(dir, 64 * MB);
	assert_true(spool_bytes(sp) == 5000 + SPOOL_MSG_OVERHEAD +
	    SPOOL_QUEUE_OVERHEAD);
	load_ok(sp, &l);
	assert_int_equal(l.n, 1);
	assert_true(l.v[0].id == 7 && l.v[0].len == 5000 && l.v[0].ok);
	assert_int_equal(l.v[0].nworkers, 1);
	assert_int_equal(l.v[0].workers[0], 2);
	free(l.v);
	assert_int_equal(spool_nworkers(sp), 1);
	assert_int_equal(spool_worker_stats(sp, 0, &st), 0);
	assert_true(st.count == 0);
	/* an ack for a worker with nothing spooled opens no transaction */
	assert_int_equal(spool_del(sp, 0, 7), 0);
	assert_false(spool_staged(sp));
	assert_int_equal(spool_del(sp, 2, 7), 1);
	commit_ok(sp);
	assert_true(spool_bytes(sp) == 0);
	assert_int_equal(spool_nworkers(sp), 0);
	spool_close(sp);

	sp = open_ok(dir, 64 * MB);
	load_ok(sp, &l);
	assert_int_equal(l.n, 0);
	assert_true(spool_bytes(sp) == 0);
	/* ids still never repeat, though nothing is left */
	assert_true(spool_next_id(sp) == 1);
	spool_close(sp);
}

/* Staged and not committed: gone after a close, as after a crash. */
static void
test_uncommitted_lost(void **state)
{
	const char *dir = *state;
	struct loaded l;
	struct spool *sp;
	pid_t pid;
	int status;

	sp = open_ok(dir, 64 * MB);
	put_ok(sp, 0, 1, 100);
	commit_ok(sp);
	put_ok(sp, 0, 2, 100);
	put_ok(sp, 1, 1, 100);
	assert_int_equal(spool_del(sp, 0, 1), 1);
	spool_close(sp);

	/* and from a process that dies without a word */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct spool *csp;
		char err[256];

		if (spool_open(dir, 64 * MB, &csp, err, sizeof(err)) < 0 ||
		    spool_put(csp, 2, 3, 0, "abc", 3) < 0)
			_exit(2);
		kill(getpid(), SIGKILL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	sp = open_ok(dir, 64 * MB);
	load_ok(sp, &l);
	assert_int_equal(l.n, 1);
	assert_true(l.v[0].id == 1);
	assert_int_equal(l.v[0].nworkers, 1);
	assert_int_equal(l.v[0].workers[0], 0);
	free(l.v);
	assert_int_equal(spool_nworkers(sp), 1);
	spool_close(sp);
}

/* The bound refuses the new message, keeps the batch and every old one. */
static void
test_full(void **state)
{
	const char *dir = *state;
	const uint64_t max = 10000, one = 1000 + SPOOL_MSG_OVERHEAD +
	    SPOOL_QUEUE_OVERHEAD;
	struct loaded l;
	struct spool *sp;
	uint8_t b[1000];
	uint64_t id, n = max / one;

	sp = open_ok(dir, max);
	assert_true(spool_max_bytes(sp) == max);
	for (id = 1; id <= n; id++) {
		put_ok(sp, 0, id, 1000);
		if (id == 3)
			commit_ok(sp);
	}
	fill(b, id, sizeof(b));
	assert_int_equal(spool_put(sp, 0, id, 0, b, sizeof(b)), -ENOSPC);
	assert_true(spool_bytes(sp) == n * one);
	assert_true(spool_bytes(sp) + one > max);
	/* A message bigger than the bound never fits. */
	{
		uint8_t *big = calloc(1, max);

		assert_int_equal(spool_put(sp, 1, 99, 0, big, max), -ENOSPC);
		free(big);
	}
	/* A second worker for a stored message costs its entry only. */
	if (spool_bytes(sp) + SPOOL_QUEUE_OVERHEAD <= max)
		put_ok(sp, 1, 1, 1000);
	commit_ok(sp);	/* -ENOSPC lost nothing of the batch */
	spool_close(sp);

	sp = open_ok(dir, max);
	load_ok(sp, &l);
	assert_int_equal(l.n, n);
	for (id = 1; id <= n; id++)
		assert_true(l.v[id - 1].id == id && l.v[id - 1].ok);
	free(l.v);
	fill(b, n + 1, sizeof(b));
	assert_int_equal(spool_put(sp, 0, n + 1, 0, b, sizeof(b)), -ENOSPC);
	/* an ack makes room */
	assert_int_equal(spool_del(sp, 0, 2), 1);
	put_ok(sp, 0, n + 1, 1000);
	commit_ok(sp);
	spool_close(sp);

	/* A lower bound than what is stored: open, full, still drains. */
	sp = open_ok(dir, 2000);
	assert_true(spool_bytes(sp) > 2000);
	assert_int_equal(spool_put(sp, 0, n + 2, 0, "x", 1), -ENOSPC);
	assert_int_equal(spool_del(sp, 0, 1), 1);
	commit_ok(sp);
	spool_close(sp);
}

static void
test_ids(void **state)
{
	const char *dir = *state;
	struct spool *sp;

	sp = open_ok(dir, MB);
	assert_true(spool_next_id(sp) == 1);
	assert_true(spool_ids_reserved(sp) == 0);
	assert_int_equal(spool_reserve_ids(sp, 1 + SPOOL_ID_BLOCK), 0);
	/* durable only once committed */
	assert_true(spool_ids_reserved(sp) == 0);
	assert_true(spool_staged(sp));
	commit_ok(sp);
	assert_true(spool_ids_reserved(sp) == 1 + SPOOL_ID_BLOCK);
	/* a lower mark changes nothing, stages nothing */
	assert_int_equal(spool_reserve_ids(sp, 5), 0);
	assert_false(spool_staged(sp));
	spool_close(sp);

	sp = open_ok(dir, MB);
	assert_true(spool_next_id(sp) == 1 + SPOOL_ID_BLOCK);
	assert_true(spool_ids_reserved(sp) == 1 + SPOOL_ID_BLOCK);
	/* a reservation never committed is not there */
	assert_int_equal(spool_reserve_ids(sp, 1 + 2 * SPOOL_ID_BLOCK), 0);
	spool_close(sp);
	sp = open_ok(dir, MB);
	assert_true(spool_next_id(sp) == 1 + SPOOL_ID_BLOCK);
	/* an id stored above the mark still counts */
	put_ok(sp, 4, 3 * SPOOL_ID_BLOCK, 10);
	commit_ok(sp);
	assert_int_equal(spool_del(sp, 4, 3 * SPOOL_ID_BLOCK), 1);
	put_ok(sp, 4, 3 * SPOOL_ID_BLOCK - 1, 10);
	commit_ok(sp);
	spool_close(sp);
	sp = open_ok(dir, MB);
	/* 3 * BLOCK is gone from disk: the highest stored id sets it */
	assert_true(spool_next_id(sp) == 3 * SPOOL_ID_BLOCK);
	spool_close(sp);
}

static void
test_drop_worker(void **state)
{
	const char *dir = *state;
	struct spool_stat st;
	struct loaded l;
	struct spool *sp;
	uint64_t id, count, before;
	size_t i;

	sp = open_ok(dir, 64 * MB);
	for (id = 1; id <= 50; id++) {
		put_ok(sp, 0, id, 100);
		put_ok(sp, 1, id, 100);
	}
	/* a worker index the configuration no longer has */
	for (id = 51; id <= 60; id++)
		put_ok(sp, 1000, id, 200);
	commit_ok(sp);
	assert_int_equal(spool_nworkers(sp), 3);
	assert_int_equal(spool_worker_at(sp, 2, &st), 0);
	assert_int_equal(st.worker, 1000);
	assert_true(st.count == 10 && st.bytes == 2000);
	assert_true(st.oldest_usec == 1000000 + 51);
	assert_int_equal(spool_worker_at(sp, 3, &st), -ENOENT);

	before = spool_bytes(sp);
	assert_int_equal(spool_drop_worker(sp, 1000, &count), 0);
	assert_true(count == 10);
	assert_true(spool_bytes(sp) == before - 10 * (200 +
	    SPOOL_MSG_OVERHEAD + SPOOL_QUEUE_OVERHEAD));
	/* shared messages stay for the others; DROP_BATCH is 7, so this
	 * one took several commits */
	assert_int_equal(spool_drop_worker(sp, 0, &count), 0);
	assert_true(count == 50);
	assert_int_equal(spool_drop_worker(sp, 0, &count), 0);
	assert_true(count == 0);
	assert_int_equal(spool_nworkers(sp), 1);
	commit_ok(sp);
	spool_close(sp);

	sp = open_ok(dir, 64 * MB);
	load_ok(sp, &l);
	assert_int_equal(l.n, 50);
	for (i = 0; i < l.n; i++) {
		assert_true(l.v[i].id == i + 1 && l.v[i].ok);
		assert_int_equal(l.v[i].nworkers, 1);
		assert_int_equal(l.v[i].workers[0], 1);
	}
	free(l.v);
	assert_true(spool_bytes(sp) == 50 * (100 + SPOOL_MSG_OVERHEAD +
	    SPOOL_QUEUE_OVERHEAD));
	spool_close(sp);
}

static int
load_stage_cb(uint64_t id, uint64_t accepted, const void *payload,
    size_t len, const uint32_t *workers, size_t nworkers, void *arg)
{
	struct spool *sp = arg;

	(void)accepted;
	(void)payload;
	(void)len;
	(void)workers;
	(void)nworkers;
	/* the walk holds pointers into the map: no staging under it */
	assert_int_equal(spool_put(sp, 5, id + 100, 0, "x", 1), -EBUSY);
	return id == 2 ? -ECANCELED : 0;
}

/* A load sees the staged batch, stops when told, forbids staging. */
static void
test_load_staged(void **state)
{
	const char *dir = *state;
	struct loaded l;
	struct spool *sp;

	sp = open_ok(dir, MB);
	put_ok(sp, 0, 1, 10);
	put_ok(sp, 0, 2, 10);
	put_ok(sp, 0, 3, 10);
	load_ok(sp, &l);
	assert_int_equal(l.n, 3);
	free(l.v);
	assert_int_equal(spool_load(sp, load_stage_cb, sp), -ECANCELED);
	commit_ok(sp);
	spool_close(sp);
}

/*
 * A batch that fails half way (here the map is too small, as if LMDB ran
 * out of room) is lost whole: every call says so until spool_commit has
 * reported it, the counts are back at the last commit, and the next batch
 * works.
 */
static void
test_batch_lost(void **state)
{
	const char *dir = *state;
	struct spool_stat st;
	struct loaded l;
	struct spool *sp;
	uint64_t bytes;
	uint8_t *big = malloc(400000);
	int r;

	assert_non_null(big);
	sp = open_ok(dir, 64 * MB);
	put_ok(sp, 0, 1, 100);
	commit_ok(sp);
	bytes = spool_bytes(sp);
	/* a map with a few pages to spare: a small batch fits, a big one
	 * does not */
	{
		MDB_envinfo info;

		assert_int_equal(mdb_env_info(sp->env, &info), 0);
		assert_int_equal(mdb_env_set_mapsize(sp->env,
		    (info.me_last_pgno + 1 + 32) * 4096), 0);
	}
	put_ok(sp, 1, 1, 100);
	put_ok(sp, 0, 2, 100);
	fill(big, 3, 400000);
	r = spool_put(sp, 0, 3, 0, big, 400000);
	assert_int_equal(r, -EFBIG);
	assert_non_null(strstr(spool_error(sp), "lost"));
	assert_int_equal(spool_put(sp, 0, 4, 0, "x", 1), -EFBIG);
	assert_int_equal(spool_del(sp, 0, 1), -EFBIG);
	assert_int_equal(spool_reserve_ids(sp, 100), -EFBIG);
	assert_true(spool_staged(sp));
	assert_true(spool_bytes(sp) == bytes);
	assert_int_equal(spool_worker_stats(sp, 1, &st), 0);
	assert_true(st.count == 0);
	assert_int_equal(spool_nworkers(sp), 1);
	assert_int_equal(spool_commit(sp), -EFBIG);
	assert_false(spool_staged(sp));
	/* the map grew after the failure: the next batch fits */
	put_ok(sp, 0, 3, 400000);
	commit_ok(sp);
	spool_close(sp);

	sp = open_ok(dir, 64 * MB);
	load_ok(sp, &l);
	assert_int_equal(l.n, 2);
	assert_true(l.v[0].id == 1 && l.v[0].nworkers == 1);
	assert_true(l.v[1].id == 3 && l.v[1].len == 400000 && l.v[1].ok);
	free(l.v);
	spool_close(sp);
	free(big);
}

/* One process at a time; the data file is not inherited across exec. */
static void
test_locked_cloexec(void **state)
{
	const char *dir = *state;
	struct spool *sp, *sp2;
	char err[512], link[4096], *path = file_in(dir, SPOOL_FILE);
	struct dirent *de;
	DIR *d;
	int nfd = 0;

	sp = open_ok(dir, MB);
	assert_int_equal(spool_open(dir, MB, &sp2, err, sizeof(err)), -EBUSY);
	assert_null(sp2);
	assert_non_null(strstr(err, "in use"));
	assert_non_null(d = opendir("/proc/self/fd"));
	while ((de = readdir(d)) != NULL) {
		char *fdp;
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		assert_true(asprintf(&fdp, "/proc/self/fd/%s", de->d_name) > 0);
		n = readlink(fdp, link, sizeof(link) - 1);
		free(fdp);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, path) == 0 || strcmp(link, dir) == 0) {
			int fl = fcntl(atoi(de->d_name), F_GETFD);

			assert_true(fl >= 0 && (fl & FD_CLOEXEC));
			nfd++;
		}
	}
	closedir(d);
	assert_true(nfd >= 2);	/* the directory and the data file */
	spool_close(sp);
	sp = open_ok(dir, MB);	/* the lock went with the close */
	spool_close(sp);
	free(path);
}

static void
write_file(const char *path, const void *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_true(write(fd, b, len) == (ssize_t)len);
	close(fd);
}

static void
test_corrupt_garbage(void **state)
{
	const char *dir = *state;
	char *path = file_in(dir, SPOOL_FILE);
	uint8_t b[16384];
	size_t i;

	srandom(13);
	for (i = 0; i < sizeof(b); i++)
		b[i] = random();
	write_file(path, b, sizeof(b));
	open_refused(dir, -EUCLEAN, "MDB_INVALID");
	open_refused(dir, -EUCLEAN, "move it aside");
	/* an empty file is damage too, not a new spool */
	write_file(path, b, 0);
	open_refused(dir, -EUCLEAN, "empty");
	free(path);
}

/* Writes key=value into database name of the LMDB file at path. */
static void
lmdb_set(const char *path, const char *name, const void *key, size_t klen,
    const void *val, size_t vlen)
{
	MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
	assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK,
	    0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, name, MDB_CREATE, &dbi), 0);
	if (val != NULL)
		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	else
		assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void
test_corrupt_format(void **state)
{
	const char *dir = *state;
	char *path = file_in(dir, SPOOL_FILE);
	uint8_t two[4] = { 0, 0, 0, 2 }, one[4] = { 0, 0, 0, 1 };
	struct spool *sp;

	sp = open_ok(dir, MB);
	put_ok(sp, 0, 1, 10);
	commit_ok(sp);
	spool_close(sp);
	lmdb_set(path, "meta", "format", 6, two, 4);
	open_refused(dir, -EPROTONOSUPPORT, "spool format 2");
	lmdb_set(path, "meta", "format", 6, one, 4);
	sp = open_ok(dir, MB);
	spool_close(sp);
	/* an LMDB file of something else */
	unlink(path);
	lmdb_set(path, "other", "k", 1, "v", 1);
	open_refused(dir, -EUCLEAN, "not a fanout spool");
	free(path);
}

/* Records that do not add up are refused, never repaired. */
static void
test_corrupt_records(void **state)
{
	const char *dir = *state;
	char *path = file_in(dir, SPOOL_FILE);
	uint8_t k[12], three[4] = { 0, 0, 0, 3 }, bad[20] = { 0 };
	struct spool *sp;

	sp = open_ok(dir, MB);
	put_ok(sp, 0, 1, 10);
	put_ok(sp, 0, 2, 10);
	put_ok(sp, 1, 2, 10);
	commit_ok(sp);
	spool_close(sp);
	/* message 2 says three entries name it; two do */
	be64_put(k, 2);
	lmdb_set(path, "refs", k, 8, three, 4);
	open_refused(dir, -EUCLEAN, "message 2 counts 3 queue entries, 2");

	unlink(path);
	sp = open_ok(dir, MB);
	put_ok(sp, 0, 1, 10);
	put_ok(sp, 3, 2, 10);
	commit_ok(sp);
	spool_close(sp);
	/* an entry whose message is gone */
	be64_put(k, 2);
	lmdb_set(path, "msg", k, 8, NULL, 0);
	lmdb_set(path, "refs", k, 8, NULL, 0);
	open_refused(dir, -EUCLEAN, "worker 3's queue names message 2");

	unlink(path);
	sp = open_ok(dir, MB);
	put_ok(sp, 0, 1, 10);
	commit_ok(sp);
	spool_close(sp);
	/* a length that does not match the record */
	be64_put(k, 1);
	bad[3] = 99;
	lmdb_set(path, "msg", k, 8, bad, sizeof(bad));
	open_refused(dir, -EUCLEAN, "message 1: record of 20 bytes");

	unlink(path);
	sp = open_ok(dir, MB);
	commit_ok(sp);
	spool_close(sp);
	/* a queue entry of the wrong shape */
	lmdb_set(path, "queue", k, 5, "", 0);
	open_refused(dir, -EUCLEAN, "queue");
	free(path);
}

static void
test_corrupt_truncated(void **state)
{
	const char *dir = *state;
	char *path = file_in(dir, SPOOL_FILE);
	struct spool *sp;
	struct stat st;
	uint64_t id;

	sp = open_ok(dir, 64 * MB);
	for (id = 1; id <= 300; id++) {
		put_ok(sp, id % 3, id, 1000 + id * 10);
		if (id % 50 == 0)
			commit_ok(sp);
	}
	commit_ok(sp);
	spool_close(sp);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 100 * 4096);
	/* the meta pages are there, half of the rest is not */
	assert_int_equal(truncate(path, st.st_size / 2), 0);
	open_refused(dir, -EUCLEAN, "truncated");
	/* not even the meta pages */
	assert_int_equal(truncate(path, 100), 0);
	open_refused(dir, -EUCLEAN, "MDB_INVALID");
	free(path);
}

/*
 * The crash test.  A child commits batches in a loop and reports each
 * commit through a pipe; once it has reported a randomly chosen number, it
 * gets SIGKILL, somewhere in the batches after.  The spool must then open
 * cleanly and hold exactly what some commit at or after the last report
 * left: the last reported one, or the one after if it landed unreported.
 * The next child goes on from there.
 *
 * Batch k: message ids 4k-3..4k, each for workers 0-2 except where
 * (id + w) % 4 == 0, payloads of 0 to 5000 bytes; on even k, an ack of
 * the oldest message of worker k % 3; and an id reservation.
 */
#define CRASH_ROUNDS	24
#define CRASH_WORKERS	3

struct model {
	uint64_t	*q[CRASH_WORKERS];	/* ids, oldest first */
	size_t		 head[CRASH_WORKERS], n[CRASH_WORKERS];
	size_t		 cap;
	uint64_t	 k;			/* batches applied */
};

static size_t
crash_len(uint64_t id)
{
	return (id * 131) % 5001;
}

static uint64_t
crash_mark(uint64_t k)
{
	return (4 * k / 64 + 1) * 64 + 1;
}

static void
model_apply(struct model *m)
{
	uint64_t k = ++m->k, id;
	uint32_t w;

	if (m->n[0] + 4 > m->cap) {
		m->cap = m->cap ? m->cap * 2 : 256;
		for (w = 0; w < CRASH_WORKERS; w++)
			m->q[w] = realloc(m->q[w], m->cap * sizeof(uint64_t));
	}
	for (id = 4 * k - 3; id <= 4 * k; id++)
		for (w = 0; w < CRASH_WORKERS; w++)
			if ((id + w) % 4 != 0)
				m->q[w][m->n[w]++] = id;
	w = k % 3;
	if (k % 2 == 0 && m->head[w] < m->n[w])
		m->head[w]++;
}

static void
model_copy(struct model *dst, const struct model *src)
{
	uint32_t w;

	*dst = *src;
	for (w = 0; w < CRASH_WORKERS; w++) {
		dst->q[w] = malloc(src->cap * sizeof(uint64_t));
		memcpy(dst->q[w], src->q[w], src->n[w] * sizeof(uint64_t));
	}
}

static void
model_free(struct model *m)
{
	uint32_t w;

	for (w = 0; w < CRASH_WORKERS; w++)
		free(m->q[w]);
}

/* The child: batch after batch from m->k on, until killed. */
static void __attribute__((noreturn))
crash_child(const char *dir, struct model *m, int fd)
{
	struct spool *sp;
	char err[512];
	uint8_t *b = malloc(5001);
	uint64_t id;
	size_t before[CRASH_WORKERS];
	uint32_t w;

	if (b == NULL || spool_open(dir, 256 * MB, &sp, err,
	    sizeof(err)) < 0) {
		fprintf(stderr, "# child: %s\n", err);
		_exit(2);
	}
	for (;;) {
		memcpy(before, m->head, sizeof(before));
		model_apply(m);
		for (id = 4 * m->k - 3; id <= 4 * m->k; id++) {
			fill(b, id, crash_len(id));
			for (w = 0; w < CRASH_WORKERS; w++)
				if ((id + w) % 4 != 0 && spool_put(sp, w, id,
				    1000000 + id, b, crash_len(id)) < 0)
					_exit(3);
		}
		for (w = 0; w < CRASH_WORKERS; w++)
			if (m->head[w] != before[w] && spool_del(sp, w,
			    m->q[w][before[w]]) != 1)
				_exit(4);
		if (spool_reserve_ids(sp, crash_mark(m->k)) < 0 ||
		    spool_commit(sp) < 0) {
			fprintf(stderr, "# child: %s\n", spool_error(sp));
			_exit(5);
		}
		if (write(fd, &m->k, sizeof(m->k)) != sizeof(m->k))
			_exit(6);
	}
}

struct crash_check {
	const struct model *m;
	size_t		 pos[CRASH_WORKERS];
	char		 why[200];
};

/* Each loaded message must be the next one of each of its workers. */
static int
crash_cb(uint64_t id, uint64_t accepted, const void *payload, size_t len,
    const uint32_t *workers, size_t nworkers, void *arg)
{
	struct crash_check *cc = arg;
	const struct model *m = cc->m;
	size_t i = 0;
	uint32_t w;

	for (w = 0; w < CRASH_WORKERS; w++) {
		size_t p = m->head[w] + cc->pos[w];

		if (p < m->n[w] && m->q[w][p] == id) {
			if (i >= nworkers || workers[i] != w)
				goto bad;
			cc->pos[w]++;
			i++;
		}
	}
	if (i != nworkers || accepted != 1000000 + id ||
	    len != crash_len(id) || !filled(payload, id, len))
		goto bad;
	return 0;
bad:
	snprintf(cc->why, sizeof(cc->why), "message %llu (%zu workers) is "
	    "not what batch %llu left", (unsigned long long)id, nworkers,
	    (unsigned long long)m->k);
	return -EBADMSG;
}

/* The spool holds exactly what the model does. */
static bool
crash_matches(struct spool *sp, const struct model *m, char *why,
    size_t whylen)
{
	struct crash_check cc;
	uint32_t w;
	int r;

	memset(&cc, 0, sizeof(cc));
	cc.m = m;
	if ((r = spool_load(sp, crash_cb, &cc)) < 0) {
		snprintf(why, whylen, "%s", cc.why[0] ? cc.why :
		    spool_error(sp));
		return false;
	}
	for (w = 0; w < CRASH_WORKERS; w++)
		if (m->head[w] + cc.pos[w] != m->n[w]) {
			snprintf(why, whylen, "worker %u: %zu messages "
			    "missing after batch %llu", w, m->n[w] -
			    m->head[w] - cc.pos[w], (unsigned long long)m->k);
			return false;
		}
	if (spool_next_id(sp) != crash_mark(m->k)) {
		snprintf(why, whylen, "next id %llu after batch %llu",
		    (unsigned long long)spool_next_id(sp),
		    (unsigned long long)m->k);
		return false;
	}
	return true;
}

static void
test_crash(void **state)
{
	const char *dir = *state;
	const char *seed_env = getenv("SPOOL_TEST_SEED");
	unsigned seed = seed_env ? (unsigned)atoi(seed_env) :
	    (unsigned)time(NULL) ^ (unsigned)getpid();
	struct model m, next;
	struct spool *sp;
	char why[256], why2[256];
	unsigned round, landed = 0;
	uint64_t got, last;
	int fds[2], status;
	pid_t pid;

	printf("# crash test: SPOOL_TEST_SEED=%u\n", seed);
	srandom(seed);
	memset(&m, 0, sizeof(m));
	/* start from a spool that exists, as a restarted daemon does */
	sp = open_ok(dir, 256 * MB);
	spool_close(sp);
	for (round = 0; round < CRASH_ROUNDS; round++) {
		uint64_t target = m.k + 1 + random() % 40;

		assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
		fflush(stdout);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			crash_child(dir, &m, fds[1]);
		}
		close(fds[1]);
		last = m.k;
		while (last < target) {
			ssize_t n = read(fds[0], &got, sizeof(got));

			if (n != sizeof(got)) {
				waitpid(pid, &status, 0);
				fail_msg("round %u: child ended after batch "
				    "%llu, status %#x", round,
				    (unsigned long long)last, status);
			}
			last = got;
		}
		/* in half the rounds, somewhat later: inside a commit's
		 * syncs, or between a commit and its report */
		if (random() % 2) {
			struct timespec ts = { 0, random() % 3000 * 1000 };

			nanosleep(&ts, NULL);
		}
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status) &&
		    WTERMSIG(status) == SIGKILL);
		/* every report it made before it died */
		while (read(fds[0], &got, sizeof(got)) == sizeof(got))
			last = got;
		close(fds[0]);
		while (m.k < last)
			model_apply(&m);

		sp = open_ok(dir, 256 * MB);
		if (!crash_matches(sp, &m, why, sizeof(why))) {
			/* the batch after the last report may have landed */
			model_copy(&next, &m);
			model_apply(&next);
			if (!crash_matches(sp, &next, why2, sizeof(why2)))
				fail_msg("round %u (seed %u): %s; nor the "
				    "next: %s", round, seed, why, why2);
			model_free(&m);
			m = next;
			landed++;
		}
		spool_close(sp);
	}
	printf("# crash test: %u rounds, %llu batches, %u landed without "
	    "a report\n", CRASH_ROUNDS, (unsigned long long)m.k, landed);
	model_free(&m);
}

int
main(void)
{
#define T(f)	cmocka_unit_test_setup_teardown(f, dir_setup, dir_teardown)
	const struct CMUnitTest tests[] = {
		T(test_reopen_in_order),
		T(test_shared_refs),
		T(test_uncommitted_lost),
		T(test_full),
		T(test_ids),
		T(test_drop_worker),
		T(test_load_staged),
		T(test_batch_lost),
		T(test_locked_cloexec),
		T(test_corrupt_garbage),
		T(test_corrupt_format),
		T(test_corrupt_records),
		T(test_corrupt_truncated),
		T(test_crash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
