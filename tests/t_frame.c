/* SPDX-License-Identifier: MIT */
/* Frame codec: header checks, partial and batched reads, write buffering. */
#include "config.h"

#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"

static size_t
encode(uint8_t *out, uint8_t type, uint64_t id, const char *payload)
{
	size_t len = strlen(payload);

	frame_hdr_encode(out, type, (uint32_t)len, id);
	memcpy(out + FANOUT_HDR_LEN, payload, len);
	return FANOUT_HDR_LEN + len;
}

static void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sv), 0);
}

static void
test_integers(void **state)
{
	uint8_t b[8];

	(void)state;
	put_u16(b, 0xa1b2);
	assert_int_equal(b[0], 0xa1);
	assert_int_equal(get_u16(b), 0xa1b2);
	put_u32(b, 0xdeadbeef);
	assert_int_equal(b[0], 0xde);
	assert_int_equal(b[3], 0xef);
	assert_int_equal(get_u32(b), 0xdeadbeef);
	put_u64(b, 0x0102030405060708ULL);
	assert_int_equal(b[0], 1);
	assert_int_equal(b[7], 8);
	assert_true(get_u64(b) == 0x0102030405060708ULL);
}

static void
test_header_checks(void **state)
{
	struct frame_hdr h;
	uint8_t b[FANOUT_HDR_LEN];

	(void)state;
	frame_hdr_encode(b, MSG_DATA, 100, 42);
	assert_int_equal(frame_hdr_decode(b, 100, &h), 0);
	assert_int_equal(h.type, MSG_DATA);
	assert_int_equal(h.len, 100);
	assert_true(h.id == 42);
	/* max and one over max */
	assert_int_equal(frame_hdr_decode(b, 99, &h), -EMSGSIZE);
	b[0] = FANOUT_PROTO_VERSION + 1;
	assert_int_equal(frame_hdr_decode(b, 100, &h), -EPROTO);
	b[0] = FANOUT_PROTO_VERSION;
	b[1] = 99;
	assert_int_equal(frame_hdr_decode(b, 100, &h), -EBADMSG);
	b[1] = 0;
	assert_int_equal(frame_hdr_decode(b, 100, &h), -EBADMSG);
	/* a length field with the top bit set is no wrap-around */
	frame_hdr_encode(b, CTL_SEND, 0xffffffffu, 1);
	assert_int_equal(frame_hdr_decode(b, FANOUT_PAYLOAD_MAX, &h),
	    -EMSGSIZE);
}

/* Fed one byte at a time, frames still come out whole and in order. */
static void
test_byte_at_a_time(void **state)
{
	uint8_t wire[256];
	size_t len = 0, i;
	struct rbuf rb;
	struct frame_hdr h;
	const uint8_t *p;
	int sv[2], got = 0;

	(void)state;
	len += encode(wire + len, MSG_DATA, 1, "hello");
	len += encode(wire + len, MSG_DATA, 2, "");
	len += encode(wire + len, MSG_DATA, 3, "world!");
	pair(sv);
	rbuf_init(&rb, 64);
	for (i = 0; i < len; i++) {
		assert_int_equal(write(sv[0], wire + i, 1), 1);
		assert_int_equal(rbuf_read(&rb, sv[1]), 1);
		while (rbuf_next(&rb, &h, &p) == 1) {
			got++;
			assert_true(h.id == (uint64_t)got);
			if (got == 1)
				assert_memory_equal(p, "hello", 5);
			if (got == 2)
				assert_int_equal(h.len, 0);
			if (got == 3)
				assert_memory_equal(p, "world!", 6);
		}
	}
	assert_int_equal(got, 3);
	assert_int_equal(rbuf_read(&rb, sv[1]), -EAGAIN);
	close(sv[0]);
	assert_int_equal(rbuf_read(&rb, sv[1]), 0);
	rbuf_free(&rb);
	close(sv[1]);
}

/* Many frames arriving in one read are all handed out. */
static void
test_many_in_one_read(void **state)
{
	struct rbuf rb;
	struct frame_hdr h;
	const uint8_t *p;
	struct wbuf wb;
	int sv[2], i;

	(void)state;
	pair(sv);
	wbuf_init(&wb);
	for (i = 1; i <= 500; i++)
		assert_int_equal(wbuf_frame(&wb, MSG_ACK, (uint64_t)i,
		    "\0\0\0\0", 4), 0);
	assert_int_equal(wbuf_pending(&wb), 500 * 20);
	assert_int_equal(wbuf_flush(&wb, sv[0]), 0);
	assert_int_equal(wbuf_pending(&wb), 0);
	rbuf_init(&rb, MSG_ACK_LEN);
	assert_true(rbuf_read(&rb, sv[1]) == 500 * 20);
	for (i = 1; i <= 500; i++) {
		assert_int_equal(rbuf_next(&rb, &h, &p), 1);
		assert_true(h.id == (uint64_t)i);
		assert_int_equal(h.type, MSG_ACK);
	}
	assert_int_equal(rbuf_next(&rb, &h, &p), 0);
	rbuf_free(&rb);
	wbuf_free(&wb);
	close(sv[0]);
	close(sv[1]);
}

/* The largest allowed frame is read whole; one byte more is refused from
 * the header alone, before its payload has arrived. */
static void
test_max_and_over_max(void **state)
{
	uint32_t max = 200000;
	struct rbuf rb;
	struct frame_hdr h;
	const uint8_t *p;
	struct wbuf wb;
	uint8_t *big = calloc(1, max + 1);
	int sv[2], r;

	(void)state;
	assert_non_null(big);
	big[max - 1] = 'z';
	pair(sv);
	wbuf_init(&wb);
	assert_int_equal(wbuf_frame(&wb, CTL_SEND, 7, big, max), 0);
	rbuf_init(&rb, max);
	/* write and read in turns: the socket buffer is smaller */
	do {
		r = wbuf_flush(&wb, sv[0]);
		assert_true(r >= 0);
		(void)rbuf_read(&rb, sv[1]);
	} while (r == 1);
	while ((r = rbuf_next(&rb, &h, &p)) == 0)
		assert_true(rbuf_read(&rb, sv[1]) > 0);
	assert_int_equal(r, 1);
	assert_int_equal(h.len, max);
	assert_int_equal(p[max - 1], 'z');

	frame_hdr_encode(big, CTL_SEND, max + 1, 8);
	assert_int_equal(write(sv[0], big, FANOUT_HDR_LEN), FANOUT_HDR_LEN);
	assert_true(rbuf_read(&rb, sv[1]) > 0);
	assert_int_equal(rbuf_next(&rb, &h, &p), -EMSGSIZE);
	assert_true(h.id == 8);
	rbuf_free(&rb);
	wbuf_free(&wb);
	free(big);
	close(sv[0]);
	close(sv[1]);
}

static void
test_bad_version_and_type_in_stream(void **state)
{
	uint8_t wire[64];
	struct rbuf rb;
	struct frame_hdr h;
	const uint8_t *p;
	int sv[2];
	size_t len;

	(void)state;
	pair(sv);
	rbuf_init(&rb, 64);
	len = encode(wire, CTL_STATUS, 1, "");
	len += encode(wire + len, CTL_STATUS, 2, "");
	wire[len - FANOUT_HDR_LEN] = 9;		/* second frame's version */
	assert_int_equal(write(sv[0], wire, len), (ssize_t)len);
	assert_true(rbuf_read(&rb, sv[1]) > 0);
	assert_int_equal(rbuf_next(&rb, &h, &p), 1);
	assert_int_equal(rbuf_next(&rb, &h, &p), -EPROTO);
	rbuf_free(&rb);

	rbuf_init(&rb, 64);
	len = encode(wire, 200, 1, "x");
	assert_int_equal(write(sv[0], wire, len), (ssize_t)len);
	assert_true(rbuf_read(&rb, sv[1]) > 0);
	assert_int_equal(rbuf_next(&rb, &h, &p), -EBADMSG);
	assert_string_equal(frame_strerror(-EBADMSG), "unknown frame type");
	rbuf_free(&rb);
	close(sv[0]);
	close(sv[1]);
}

/* A full socket leaves the rest queued, in order, for the next flush. */
static void
test_partial_write(void **state)
{
	struct wbuf wb;
	struct rbuf rb;
	struct frame_hdr h;
	const uint8_t *p;
	char payload[1000];
	int sv[2], i, r, seen = 0;
	int sz = 4096;

	(void)state;
	pair(sv);
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	memset(payload, 'a', sizeof(payload));
	wbuf_init(&wb);
	rbuf_init(&rb, sizeof(payload));
	for (i = 1; i <= 300; i++)
		assert_int_equal(wbuf_frame(&wb, MSG_DATA, (uint64_t)i,
		    payload, sizeof(payload)), 0);
	assert_int_equal(wbuf_flush(&wb, sv[0]), 1);
	assert_true(wbuf_pending(&wb) > 0);
	do {
		r = wbuf_flush(&wb, sv[0]);
		while (rbuf_read(&rb, sv[1]) > 0)
			while (rbuf_next(&rb, &h, &p) == 1)
				assert_true(h.id == (uint64_t)++seen);
	} while (r == 1);
	while (rbuf_read(&rb, sv[1]) > 0)
		while (rbuf_next(&rb, &h, &p) == 1)
			assert_true(h.id == (uint64_t)++seen);
	assert_int_equal(seen, 300);
	wbuf_free(&wb);
	rbuf_free(&rb);
	close(sv[0]);
	close(sv[1]);
}

/* Whatever the peer sends, the unparsed bytes held never pass one frame of
 * the largest size allowed (here above the 64 KiB read chunk): a frame
 * announced, then more behind it, in a 1 MiB pipe read in turn. */
static void
test_holds_one_frame_at_most(void **state)
{
	enum { MAXP = 100 * 1024, MORE = 300 * 1024 };
	static uint8_t buf[FANOUT_HDR_LEN + MAXP + MORE];
	struct frame_hdr h;
	const uint8_t *p;
	struct rbuf rb;
	size_t off = 0;
	int fds[2], frames = 0;
	ssize_t n;

	(void)state;
	assert_int_equal(pipe2(fds, O_NONBLOCK), 0);
	if (fcntl(fds[1], F_SETPIPE_SZ, (int)sizeof(buf)) < (int)sizeof(buf))
		skip();
	frame_hdr_encode(buf, MSG_DATA, MAXP, 1);
	memset(buf + FANOUT_HDR_LEN, 'x', MAXP);
	/* the rest: empty frames */
	for (off = FANOUT_HDR_LEN + MAXP; off + FANOUT_HDR_LEN <= sizeof(buf);
	    off += FANOUT_HDR_LEN)
		frame_hdr_encode(buf + off, MSG_DATA, 0, 2);
	assert_int_equal(write(fds[1], buf, off), (ssize_t)off);
	close(fds[1]);
	rbuf_init(&rb, MAXP);
	while ((n = rbuf_read(&rb, fds[0])) > 0) {
		assert_true(rb.len - rb.off <= FANOUT_HDR_LEN + MAXP);
		while (rbuf_next(&rb, &h, &p) == 1)
			frames++;
	}
	assert_int_equal(n, 0);
	assert_int_equal(frames, 1 + (off - FANOUT_HDR_LEN - MAXP) /
	    FANOUT_HDR_LEN);
	rbuf_free(&rb);
	close(fds[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_header_checks),
		cmocka_unit_test(test_byte_at_a_time),
		cmocka_unit_test(test_many_in_one_read),
		cmocka_unit_test(test_max_and_over_max),
		cmocka_unit_test(test_bad_version_and_type_in_stream),
		cmocka_unit_test(test_partial_write),
		cmocka_unit_test(test_holds_one_frame_at_most),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
