/* SPDX-License-Identifier: MIT */
/*
 * The payload codecs of payload.h: every one round-trips, writes exactly its
 * length in network byte order at the offsets proto.h's field order gives,
 * and its decoder refuses a payload of the wrong length.
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

#include "frame.h"
#include "payload.h"

/* Bytes past a payload that an encoder must leave alone. */
#define GUARD		8
#define GUARD_BYTE	0x5a

/*
 * A value for field k of a record, width bytes wide: byte j (from the most
 * significant one) is (k + 1) << 3 | j.  With at most 31 fields every byte
 * of every field differs from every other and none is zero, so a field cut
 * short, shifted or swapped shows.
 */
#define PATTERN_BYTE(k, j)	((uint8_t)(((k) + 1) << 3 | (j)))

static uint64_t
pattern(unsigned k, unsigned width)
{
	uint64_t v = 0;
	unsigned j;

	assert_true(k < 31);
	for (j = 0; j < width; j++)
		v = v << 8 | PATTERN_BYTE(k, j);
	return v;
}

#define FILL(t, n) \
	r.n = (PAYLOAD_CTYPE_##t)pattern(k, PROTO_LEN_##t); k++;
#define SAME(t, n) \
	assert_true(out.n == r.n); \
	assert_true(out.n == (PAYLOAD_CTYPE_##t)pattern(k, PROTO_LEN_##t)); \
	k++;
/* The field's bytes, big-endian, where the field list puts it. */
#define PLACED(t, n) \
	for (j = 0; j < PROTO_LEN_##t; j++) \
		assert_int_equal(buf[off + j], PATTERN_BYTE(k, j)); \
	off += PROTO_LEN_##t; k++;

/*
 * For one codec: fill every field, encode into a guarded buffer (exactly
 * LEN bytes written, each field where the list puts it), decode it back
 * (the same values), then try lengths around LEN.
 */
#define ROUND_TRIP(name, FIELDS, LEN, tail) do { \
	struct name r, out; \
	uint8_t buf[(LEN) + GUARD]; \
	unsigned k = 0, j, off = 0; \
	\
	memset(&r, 0, sizeof(r)); \
	FIELDS(FILL) \
	memset(buf, GUARD_BYTE, sizeof(buf)); \
	name##_encode(buf, &r); \
	for (j = (LEN); j < sizeof(buf); j++) \
		assert_int_equal(buf[j], GUARD_BYTE); \
	k = 0; \
	FIELDS(PLACED) \
	assert_int_equal(off, (LEN)); \
	memset(&out, 0, sizeof(out)); \
	assert_int_equal(name##_decode(buf, (LEN), &out), 0); \
	k = 0; \
	FIELDS(SAME) \
	assert_int_equal(name##_decode(buf, 0, &out), -EBADMSG); \
	assert_int_equal(name##_decode(buf, (LEN) - 1, &out), -EBADMSG); \
	memset(&out, 0, sizeof(out)); \
	assert_int_equal(name##_decode(buf, (LEN) + GUARD, &out), \
	    (tail) ? 0 : -EBADMSG); \
	assert_int_equal(name##_decode(buf, (LEN) + 1, &out), \
	    (tail) ? 0 : -EBADMSG); \
	if (tail) { \
		/* The tail is not the record's: the fields are the same. */ \
		k = 0; \
		FIELDS(SAME) \
	} \
} while (0)

/* Lengths, added up by hand from the field lists in proto.h. */
static void
test_lengths(void **state)
{
	(void)state;
	/* status u32 */
	assert_int_equal(MSG_ACK_LEN, 4);
	/* timeout_ms u32, flags u32 */
	assert_int_equal(CTL_SEND_LEN, 8);
	/* result, acked, workers, limit u32; msg_id u64; queued, failed u32 */
	assert_int_equal(CTL_END_LEN, 4 + 4 + 4 + 4 + 8 + 4 + 4);
	assert_int_equal(CTL_END_LEN, 32);
	/* uptime_ms u64, accepted u64, pid u32, degraded_ms u32,
	 * spool_bytes u64, spool_max_bytes u64 */
	assert_int_equal(CTL_DAEMON_LEN, 40);
	/* op u32, worker u32 */
	assert_int_equal(CTL_QUEUE_LEN, 8);
	/* worker u32, flags u16, state u16, messages, bytes, oldest_ms,
	 * spooled u64 */
	assert_int_equal(CTL_QSTAT_LEN, 40);
	/*
	 * index u32 (0), pid u32 (4), port u16 (8), state u8 (10),
	 * outcome u8 (11), rtt_us u32 (12), acked u64 (16), restarts u32 (24),
	 * state_ms u64 (28), queued u32 (36), queued_bytes u64 (40),
	 * last_rtt_us u32 (48), next_try_ms u32 (52), exit_kind u8 (56),
	 * exit_code u8 (57), name_len u16 (58), status u32 (60),
	 * failed u64 (64), oldest_ms u64 (72): 80 bytes.
	 */
	assert_int_equal(CTL_WORKER_LEN, 80);
	/* index u32, refused u64, rtt_count u64, rtt_sum_us u64 */
	assert_int_equal(CTL_HIST_LEN, 28);
	/* The largest frame is a CTL_SEND with the largest message. */
	assert_int_equal(FANOUT_PAYLOAD_MAX, 16 * 1024 * 1024 + 8);
}

static void
test_msg_ack(void **state)
{
	(void)state;
	ROUND_TRIP(msg_ack, MSG_ACK_FIELDS, MSG_ACK_LEN, 1);
}

static void
test_ctl_send(void **state)
{
	(void)state;
	ROUND_TRIP(ctl_send, CTL_SEND_FIELDS, CTL_SEND_LEN, 1);
}

static void
test_ctl_hist(void **state)
{
	(void)state;
	ROUND_TRIP(ctl_hist, CTL_HIST_FIELDS, CTL_HIST_LEN, 1);
}

static void
test_ctl_worker(void **state)
{
	(void)state;
	ROUND_TRIP(ctl_worker, CTL_WORKER_FIELDS, CTL_WORKER_LEN, 1);
}

static void
test_ctl_daemon(void **state)
{
	(void)state;
	ROUND_TRIP(ctl_daemon, CTL_DAEMON_FIELDS, CTL_DAEMON_LEN, 1);
}

static void
test_ctl_qstat(void **state)
{
	(void)state;
	ROUND_TRIP(ctl_qstat, CTL_QSTAT_FIELDS, CTL_QSTAT_LEN, 0);
	ROUND_TRIP(ctl_queue, CTL_QUEUE_FIELDS, CTL_QUEUE_LEN, 0);
}

static void
test_ctl_end(void **state)
{
	(void)state;
	ROUND_TRIP(ctl_end, CTL_END_FIELDS, CTL_END_LEN, 0);
}

/* CTL_END byte for byte, as a third-party reader of proto.h expects it. */
static void
test_ctl_end_bytes(void **state)
{
	static const uint8_t want[CTL_END_LEN] = {
		0x00, 0x00, 0x00, 0x01,				/* result */
		0x00, 0x00, 0x01, 0x02,				/* acked */
		0x00, 0x00, 0x04, 0x00,				/* workers */
		0xde, 0xad, 0xbe, 0xef,				/* limit */
		0xf1, 0xe2, 0xd3, 0xc4, 0xb5, 0xa6, 0x97, 0x88,	/* msg_id */
		0x80, 0x00, 0x00, 0x03,				/* queued */
	};
	struct ctl_end e = {
		.result = CTL_RES_PARTIAL,
		.acked = 0x102,
		.workers = 1024,
		.limit = 0xdeadbeef,
		.msg_id = 0xf1e2d3c4b5a69788ULL,
		.queued = 0x80000003,
	}, out;
	uint8_t buf[CTL_END_LEN];

	(void)state;
	ctl_end_encode(buf, &e);
	assert_memory_equal(buf, want, sizeof(want));
	/* The same bytes written by hand decode to the same record. */
	memset(&out, 0, sizeof(out));
	assert_int_equal(ctl_end_decode(want, sizeof(want), &out), 0);
	assert_int_equal(out.result, CTL_RES_PARTIAL);
	assert_int_equal(out.acked, 0x102);
	assert_int_equal(out.workers, 1024);
	assert_true(out.limit == 0xdeadbeef);
	assert_true(out.msg_id == 0xf1e2d3c4b5a69788ULL);
	assert_true(out.queued == 0x80000003);
	/* The u64 sits at offset 16, read as put_u64 writes it. */
	assert_true(get_u64(buf + 16) == e.msg_id);
	assert_true(get_u32(buf + 24) == e.queued);
}

/* A few CTL_WORKER fields at their offsets, narrow ones next to wide. */
static void
test_ctl_worker_bytes(void **state)
{
	struct ctl_worker w = {
		.index = 7,
		.pid = 0x00123456,
		.port = 0xabcd,
		.state = WS_STALLED,
		.outcome = ACK_QUEUED,
		.rtt_us = 0x01020304,
		.acked = 0x1122334455667788ULL,
		.restarts = 9,
		.state_ms = 0xffeeddccbbaa9988ULL,
		.queued = 0x10000,
		.queued_bytes = 0x8000000000000001ULL,
		.last_rtt_us = 0xcafe,
		.next_try_ms = 0x40000000,
		.exit_kind = WX_STALLED,
		.exit_code = 15,
		.name_len = 0xa55a,
	}, out;
	uint8_t buf[CTL_WORKER_LEN];
	static const uint8_t acked[8] = {
		0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
	};
	static const uint8_t state_ms[8] = {
		0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
	};

	(void)state;
	ctl_worker_encode(buf, &w);
	/* index 0..3, pid 4..7 */
	assert_int_equal(buf[0], 0);
	assert_int_equal(buf[3], 7);
	assert_int_equal(buf[4], 0x00);
	assert_int_equal(buf[5], 0x12);
	assert_int_equal(buf[7], 0x56);
	/* port 8..9, state 10, outcome 11 */
	assert_int_equal(buf[8], 0xab);
	assert_int_equal(buf[9], 0xcd);
	assert_int_equal(buf[10], WS_STALLED);
	assert_int_equal(buf[11], ACK_QUEUED);
	/* rtt_us 12..15 */
	assert_int_equal(buf[12], 0x01);
	assert_int_equal(buf[15], 0x04);
	/* acked 16..23, restarts 24..27, state_ms 28..35 */
	assert_memory_equal(buf + 16, acked, 8);
	assert_int_equal(get_u32(buf + 24), 9);
	assert_memory_equal(buf + 28, state_ms, 8);
	/* queued 36..39, queued_bytes 40..47 */
	assert_int_equal(buf[36], 0x00);
	assert_int_equal(buf[37], 0x01);
	assert_int_equal(buf[38], 0x00);
	assert_int_equal(buf[40], 0x80);
	assert_int_equal(buf[47], 0x01);
	/* last_rtt_us 48..51, next_try_ms 52..55 */
	assert_int_equal(get_u32(buf + 48), 0xcafe);
	assert_int_equal(buf[52], 0x40);
	assert_int_equal(buf[55], 0x00);
	/* exit_kind 56, exit_code 57, name_len 58..59: the last byte */
	assert_int_equal(buf[56], WX_STALLED);
	assert_int_equal(buf[57], 15);
	assert_int_equal(buf[58], 0xa5);
	assert_int_equal(buf[59], 0x5a);
	memset(&out, 0, sizeof(out));
	assert_int_equal(ctl_worker_decode(buf, sizeof(buf), &out), 0);
	assert_true(out.acked == w.acked);
	assert_true(out.state_ms == w.state_ms);
	assert_true(out.queued_bytes == w.queued_bytes);
	assert_int_equal(out.port, 0xabcd);
	assert_int_equal(out.name_len, 0xa55a);
}

/* The payloads with a tail: the record, then the bytes that follow it. */
static void
test_tails(void **state)
{
	struct ctl_send s = { .timeout_ms = 250, .flags = CTL_SEND_WAIT }, so;
	struct ctl_daemon dm = {
		.uptime_ms = 0x0000000100000002ULL,
		.accepted = 0xfedcba9876543210ULL,
		.pid = 4242,
		.degraded_ms = 60001,
	}, dmo;
	uint8_t buf[CTL_DAEMON_LEN + FANOUT_VERSION_MAX];

	(void)state;
	ctl_send_encode(buf, &s);
	memcpy(buf + CTL_SEND_LEN, "hello", 5);
	assert_int_equal(ctl_send_decode(buf, CTL_SEND_LEN + 5, &so), 0);
	assert_int_equal(so.timeout_ms, 250);
	assert_int_equal(so.flags, CTL_SEND_WAIT);
	/* An empty message is a CTL_SEND of exactly CTL_SEND_LEN. */
	assert_int_equal(ctl_send_decode(buf, CTL_SEND_LEN, &so), 0);
	assert_int_equal(ctl_send_decode(buf, CTL_SEND_LEN - 1, &so),
	    -EBADMSG);

	ctl_daemon_encode(buf, &dm);
	memset(buf + CTL_DAEMON_LEN, 'v', FANOUT_VERSION_MAX);
	assert_int_equal(ctl_daemon_decode(buf, sizeof(buf), &dmo), 0);
	assert_true(dmo.uptime_ms == dm.uptime_ms);
	assert_true(dmo.accepted == dm.accepted);
	assert_int_equal(dmo.pid, 4242);
	assert_int_equal(dmo.degraded_ms, 60001);
	/* accepted is at offset 8, pid at 16 */
	assert_int_equal(buf[8], 0xfe);
	assert_int_equal(buf[15], 0x10);
	assert_int_equal(get_u32(buf + 16), 4242);
	assert_int_equal(ctl_daemon_decode(buf, CTL_DAEMON_LEN - 1, &dmo),
	    -EBADMSG);
}

/* The exact ones refuse any other length, the tail ones only a shorter. */
static void
test_exact_lengths(void **state)
{
	uint8_t buf[256];
	struct msg_ack a;
	struct ctl_worker w;
	struct ctl_end e;
	size_t len;

	(void)state;
	memset(buf, 0, sizeof(buf));
	for (len = 0; len < sizeof(buf); len++) {
		assert_int_equal(msg_ack_decode(buf, len, &a),
		    len >= MSG_ACK_LEN ? 0 : -EBADMSG);
		assert_int_equal(ctl_worker_decode(buf, len, &w),
		    len >= CTL_WORKER_LEN ? 0 : -EBADMSG);
		assert_int_equal(ctl_end_decode(buf, len, &e),
		    len == CTL_END_LEN ? 0 : -EBADMSG);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_msg_ack),
		cmocka_unit_test(test_ctl_send),
		cmocka_unit_test(test_ctl_worker),
		cmocka_unit_test(test_ctl_hist),
		cmocka_unit_test(test_ctl_daemon),
		cmocka_unit_test(test_ctl_end),
		cmocka_unit_test(test_ctl_qstat),
		cmocka_unit_test(test_ctl_end_bytes),
		cmocka_unit_test(test_ctl_worker_bytes),
		cmocka_unit_test(test_tails),
		cmocka_unit_test(test_exact_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
