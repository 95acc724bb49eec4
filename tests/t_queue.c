/* SPDX-License-Identifier: MIT */
/*
 * A worker's queue (queue.c): order through growth and wrap-around, the
 * bounds refusing the new message and never an older one, byte accounting,
 * the rewind after a lost link and the references it holds.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fanoutd.h"

/*
 * msg_unref is bcast.c's, and bcast.o brings the rest of the daemon core
 * along, which calls up into fanoutd.c (not in libfanoutd.a).  Nothing here
 * reaches those: the stubs only satisfy the linker, and fail if called.
 */
void
fanoutd_workers_changed(struct fanoutd *d)
{
	(void)d;
	fail();
}

void
fanoutd_stop(struct fanoutd *d, int exit_code)
{
	(void)d;
	(void)exit_code;
	fail();
}

void
fanoutd_check_done(struct fanoutd *d)
{
	(void)d;
	fail();
}

void
fanoutd_schedule_flush(struct fanoutd *d)
{
	(void)d;
	fail();
}

/* A reload's new settings (the open file limit): nothing to do here. */
void
fanoutd_conf_changed(struct fanoutd *d)
{
	(void)d;
}

/* A message as bcast.c makes one, holding one reference: the test's. */
static struct msg *
mkmsg(uint64_t id, size_t len)
{
	struct msg *m = malloc(sizeof(*m) + FANOUT_HDR_LEN + len);

	assert_non_null(m);
	m->refs = 1;
	m->id = id;
	m->accepted_usec = 0;
	m->b = NULL;
	m->len = FANOUT_HDR_LEN + len;
	frame_hdr_encode(m->frame, MSG_DATA, (uint32_t)len, id);
	memset(m->frame + FANOUT_HDR_LEN, (int)(id & 0xff), len);
	return m;
}

/* Ids of what the queue holds, oldest first, are first..first+n-1. */
static void
assert_ids(const struct wqueue *q, uint64_t first, uint32_t n)
{
	uint32_t i;

	assert_int_equal(q->n, n);
	for (i = 0; i < n; i++)
		assert_true(queue_at(q, i)->id == first + i);
}

/* Pops the oldest, which must be id; drops the reference it hands over. */
static void
pop_expect(struct wqueue *q, uint64_t id)
{
	struct msg *m = queue_pop(q);

	assert_non_null(m);
	assert_true(m->id == id);
	msg_unref(m);
}

static void
test_init(void **state)
{
	struct wqueue q;

	(void)state;
	memset(&q, 0xa5, sizeof(q));
	queue_init(&q, 5, 1000);
	assert_int_equal(q.n, 0);
	assert_int_equal(q.nsent, 0);
	assert_int_equal(q.woff, 0);
	assert_true(q.bytes == 0);
	assert_int_equal(q.max_n, 5);
	assert_true(q.max_bytes == 1000);
	assert_null(q.ring);
	assert_int_equal(queue_clear(&q), 0);
}

/* Move the head, wrap, then grow: the unwrapped ring keeps the order. */
static void
test_grow_with_head_moved(void **state)
{
	struct msg *m[64];
	struct wqueue q;
	uint32_t cap, i;

	(void)state;
	for (i = 0; i < 64; i++)
		m[i] = mkmsg(i + 1, 10);
	queue_init(&q, 1000, 1 << 20);
	for (i = 0; i < 10; i++)
		assert_int_equal(queue_push(&q, m[i]), 0);
	cap = q.cap;
	assert_true(cap >= 10);
	for (i = 0; i < 10; i++)
		pop_expect(&q, i + 1);
	assert_int_equal(q.n, 0);
	assert_int_equal(q.head, 10);
	/* Fill to capacity: the ring wraps past its end. */
	for (i = 10; i < 10 + cap; i++)
		assert_int_equal(queue_push(&q, m[i]), 0);
	assert_int_equal(q.cap, cap);
	assert_int_equal(q.head, 10);
	assert_ids(&q, 11, cap);
	/* One past capacity, then as many again. */
	for (i = 10 + cap; i < 64; i++)
		assert_int_equal(queue_push(&q, m[i]), 0);
	assert_true(q.cap > cap);
	assert_true(q.cap >= 54);
	assert_int_equal(q.cap & (q.cap - 1), 0);
	assert_ids(&q, 11, 54);
	assert_true(q.bytes == 54 * 10);
	/* Pop half, push again to wrap the bigger ring, check the order. */
	for (i = 0; i < 30; i++)
		pop_expect(&q, 11 + i);
	assert_ids(&q, 41, 24);
	for (i = 0; i < 10; i++) {
		assert_int_equal(queue_push(&q, m[i]), 0);
	}
	assert_int_equal(q.n, 34);
	for (i = 0; i < 24; i++)
		pop_expect(&q, 41 + i);
	for (i = 0; i < 10; i++)
		pop_expect(&q, i + 1);
	assert_int_equal(q.n, 0);
	assert_true(q.bytes == 0);
	for (i = 0; i < 64; i++) {
		assert_int_equal(m[i]->refs, 1);
		msg_unref(m[i]);
	}
	assert_int_equal(queue_clear(&q), 0);
}

/* Full by count: the new one is refused, the old ones stay, in order. */
static void
test_bound_count(void **state)
{
	struct msg *m[5];
	struct wqueue q;
	uint32_t i;

	(void)state;
	for (i = 0; i < 5; i++)
		m[i] = mkmsg(i + 1, 1);
	queue_init(&q, 3, 1 << 20);
	for (i = 0; i < 3; i++)
		assert_int_equal(queue_push(&q, m[i]), 0);
	assert_int_equal(queue_push(&q, m[3]), -ENOBUFS);
	assert_int_equal(m[3]->refs, 1);	/* not taken */
	assert_ids(&q, 1, 3);
	assert_true(q.bytes == 3);
	for (i = 0; i < 3; i++)
		assert_int_equal(m[i]->refs, 2);
	/* An ack makes room for exactly one. */
	pop_expect(&q, 1);
	assert_int_equal(queue_push(&q, m[3]), 0);
	assert_int_equal(queue_push(&q, m[4]), -ENOBUFS);
	assert_ids(&q, 2, 3);
	assert_int_equal(m[3]->refs, 2);
	assert_int_equal(m[4]->refs, 1);
	assert_int_equal(queue_clear(&q), 3);
	for (i = 0; i < 5; i++) {
		assert_int_equal(m[i]->refs, 1);
		msg_unref(m[i]);
	}
}

/* Full by bytes (payload bytes, headers not counted): the same. */
static void
test_bound_bytes(void **state)
{
	struct msg *a = mkmsg(1, 40), *b = mkmsg(2, 40), *c = mkmsg(3, 21),
	    *d = mkmsg(4, 20), *e = mkmsg(5, 0), *f = mkmsg(6, 1);
	struct wqueue q;

	(void)state;
	queue_init(&q, 100, 100);
	assert_int_equal(queue_push(&q, a), 0);
	assert_int_equal(queue_push(&q, b), 0);
	assert_true(q.bytes == 80);
	/* 80 + 21 > 100: refused, nothing older dropped */
	assert_int_equal(queue_push(&q, c), -ENOBUFS);
	assert_int_equal(c->refs, 1);
	assert_ids(&q, 1, 2);
	assert_true(q.bytes == 80);
	/* 80 + 20 == 100: fits exactly */
	assert_int_equal(queue_push(&q, d), 0);
	assert_true(q.bytes == 100);
	/* an empty message takes no bytes: it still fits */
	assert_int_equal(queue_push(&q, e), 0);
	assert_true(q.bytes == 100);
	assert_int_equal(queue_push(&q, f), -ENOBUFS);
	assert_int_equal(q.n, 4);
	assert_true(queue_at(&q, 2) == d);
	assert_true(queue_at(&q, 3) == e);
	/* popping gives the bytes back */
	pop_expect(&q, 1);
	assert_true(q.bytes == 60);
	assert_int_equal(queue_push(&q, c), 0);
	assert_true(q.bytes == 81);
	assert_true(queue_at(&q, 3) == c);
	/* a message bigger than the whole bound never fits */
	queue_clear(&q);
	assert_true(q.bytes == 0);
	{
		struct msg *big = mkmsg(7, 101);

		assert_int_equal(queue_push(&q, big), -ENOBUFS);
		assert_int_equal(q.n, 0);
		msg_unref(big);
	}
	msg_unref(a);
	msg_unref(b);
	msg_unref(c);
	msg_unref(d);
	msg_unref(e);
	msg_unref(f);
}

/* Lost link after a partial write: everything unacked is unsent again. */
static void
test_rewind(void **state)
{
	struct msg *m[5];
	struct wqueue q;
	uint32_t i;

	(void)state;
	queue_init(&q, 100, 1 << 20);
	for (i = 0; i < 5; i++) {
		m[i] = mkmsg(i + 1, 30);
		assert_int_equal(queue_push(&q, m[i]), 0);
		msg_unref(m[i]);		/* the queue's alone now */
	}
	/* Two written whole, the third written in part, as peer.c counts. */
	q.nsent = 2;
	q.woff = 7;
	queue_rewind(&q);
	assert_int_equal(q.nsent, 0);
	assert_int_equal(q.woff, 0);
	/* The same five, same order, from the first unsent one. */
	assert_ids(&q, 1, 5);
	assert_true(queue_at(&q, q.nsent)->id == 1);
	assert_true(q.bytes == 150);
	/* Rewound again after the first resend was acked. */
	q.nsent = 3;
	pop_expect(&q, 1);
	assert_int_equal(q.nsent, 2);
	q.woff = 12;
	queue_rewind(&q);
	assert_int_equal(q.nsent, 0);
	assert_int_equal(q.woff, 0);
	assert_ids(&q, 2, 4);
	assert_int_equal(queue_clear(&q), 4);
}

/* An ack takes the oldest sent one: nsent goes down with it, never below 0. */
static void
test_pop_nsent(void **state)
{
	struct msg *m[4];
	struct wqueue q;
	uint32_t i;

	(void)state;
	queue_init(&q, 100, 1 << 20);
	for (i = 0; i < 4; i++)
		assert_int_equal(queue_push(&q, m[i] = mkmsg(i + 1, 5)), 0);
	q.nsent = 2;
	pop_expect(&q, 1);
	assert_int_equal(q.nsent, 1);
	assert_int_equal(q.n, 3);
	pop_expect(&q, 2);
	assert_int_equal(q.nsent, 0);
	/* nothing sent: a pop does not wrap nsent */
	pop_expect(&q, 3);
	assert_int_equal(q.nsent, 0);
	assert_int_equal(q.n, 1);
	assert_true(q.bytes == 5);
	assert_int_equal(queue_clear(&q), 1);
	for (i = 0; i < 4; i++) {
		assert_int_equal(m[i]->refs, 1);
		msg_unref(m[i]);
	}
}

/* Clearing drops the queue's reference on each, and frees the last ones. */
static void
test_clear_unrefs(void **state)
{
	struct msg *kept[3], *given;
	struct wqueue q, q2;
	uint32_t i;

	(void)state;
	queue_init(&q, 100, 1 << 20);
	queue_init(&q2, 100, 1 << 20);
	for (i = 0; i < 3; i++) {
		kept[i] = mkmsg(i + 1, 8);
		assert_int_equal(queue_push(&q, kept[i]), 0);
		/* shared by a second worker's queue, as a broadcast is */
		assert_int_equal(queue_push(&q2, kept[i]), 0);
		assert_int_equal(kept[i]->refs, 3);
	}
	/* Only the queue holds this one: clearing frees it (ASan/valgrind
	 * tell if it does not, or frees it twice). */
	given = mkmsg(4, 8);
	assert_int_equal(queue_push(&q, given), 0);
	msg_unref(given);
	q.nsent = 2;
	q.woff = 3;
	assert_int_equal(queue_clear(&q), 4);
	assert_int_equal(q.n, 0);
	assert_int_equal(q.nsent, 0);
	assert_int_equal(q.woff, 0);
	assert_true(q.bytes == 0);
	assert_null(q.ring);
	for (i = 0; i < 3; i++)
		assert_int_equal(kept[i]->refs, 2);
	/* the other queue is untouched */
	assert_ids(&q2, 1, 3);
	/* A cleared queue is as good as new: bounds kept, pushes work. */
	assert_int_equal(q.max_n, 100);
	assert_int_equal(queue_push(&q, kept[0]), 0);
	assert_int_equal(kept[0]->refs, 3);
	assert_int_equal(queue_clear(&q), 1);
	assert_int_equal(queue_clear(&q2), 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(kept[i]->refs, 1);
		msg_unref(kept[i]);
	}
	/* clearing an empty queue twice is harmless */
	assert_int_equal(queue_clear(&q), 0);
}

static void
test_payload_len(void **state)
{
	struct msg *m = mkmsg(9, 33), *z = mkmsg(10, 0);

	(void)state;
	assert_int_equal(msg_payload_len(m), 33);
	assert_int_equal(msg_payload_len(z), 0);
	msg_unref(m);
	msg_unref(z);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_grow_with_head_moved),
		cmocka_unit_test(test_bound_count),
		cmocka_unit_test(test_bound_bytes),
		cmocka_unit_test(test_rewind),
		cmocka_unit_test(test_pop_nsent),
		cmocka_unit_test(test_clear_unrefs),
		cmocka_unit_test(test_payload_len),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
