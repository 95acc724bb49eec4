/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the frame reader of frame.c as every fanout socket uses it: a byte
 * stream arrives through a non-blocking pipe in pieces the input chooses,
 * rbuf_read and rbuf_next take it apart, and each frame or error must be
 * what a plain reading of the same bytes says.  frame.c is included with a
 * tiny read chunk so that buffer growth, the move to the front and split
 * headers happen within a few bytes.
 *
 * Input: max_payload (u16), the piece size - 1 (u8), then the stream.
 */
#define FRAME_READ_CHUNK	32
#include "../../src/frame.c"

#include <fcntl.h>

#include "fuzz.h"

static int rfd = -1, wfd = -1, nullfd = -1;

/* The types proto.h defines, written down apart from frame.c's switch:
 * a new type in enum msg_type goes here too. */
static int
ref_type_known(uint8_t t)
{
	return (t >= MSG_DATA && t <= MSG_AUTH_PROOF) ||
	    (t >= CTL_SEND && t <= CTL_QSTAT);
}

/* What a frame starting at s (avail bytes) must decode to: 1 complete,
 * 0 incomplete, or the error. */
static int
ref_decode(const uint8_t *s, size_t avail, uint32_t maxp)
{
	uint32_t len;

	if (avail < FANOUT_HDR_LEN)
		return 0;
	len = (uint32_t)s[4] << 24 | (uint32_t)s[5] << 16 |
	    (uint32_t)s[6] << 8 | s[7];
	if (s[0] != FANOUT_PROTO_VERSION)
		return -EPROTO;
	if (!ref_type_known(s[1]))
		return -EBADMSG;
	if (len > maxp)
		return -EMSGSIZE;
	return avail >= FANOUT_HDR_LEN + (size_t)len;
}

static void
check_frame(const struct rbuf *rb, struct wbuf *wb, const struct frame_hdr *h,
    const uint8_t *p, const uint8_t *s, uint32_t maxp)
{
	uint64_t id = 0;
	size_t i;

	FUZZ_ASSERT(h->version == s[0] && h->type == s[1]);
	FUZZ_ASSERT(h->flags == (uint16_t)(s[2] << 8 | s[3]));
	for (i = 0; i < 8; i++)
		id = id << 8 | s[8 + i];
	FUZZ_ASSERT(h->id == id);
	FUZZ_ASSERT(h->len <= maxp);
	/* The payload lies in the buffer and is the stream's bytes. */
	FUZZ_ASSERT(p >= rb->buf + FANOUT_HDR_LEN &&
	    p + h->len <= rb->buf + rb->cap);
	FUZZ_ASSERT(memcmp(p, s + FANOUT_HDR_LEN, h->len) == 0);
	/* Encoding it again gives the same bytes, less the flags, which a
	 * sender always leaves 0. */
	FUZZ_ASSERT(wbuf_frame(wb, h->type, h->id, p, h->len) == 0);
	FUZZ_ASSERT(wbuf_pending(wb) >= FANOUT_HDR_LEN + h->len);
	{
		const uint8_t *e = wb->buf + wb->len - FANOUT_HDR_LEN - h->len;

		FUZZ_ASSERT(e[2] == 0 && e[3] == 0);
		FUZZ_ASSERT(memcmp(e, s, 2) == 0);
		FUZZ_ASSERT(memcmp(e + 4, s + 4, FANOUT_HDR_LEN - 4 +
		    h->len) == 0);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int p[2];

	(void)argc;
	(void)argv;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == -1 ||
	    (nullfd = open("/dev/null", O_WRONLY | O_CLOEXEC)) == -1)
		abort();
	rfd = p[0];
	wfd = p[1];
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rbuf rb;
	struct wbuf wb;
	struct frame_hdr h;
	const uint8_t *s, *pl;
	size_t n, piece, pos = 0, rd = 0, cons = 0;
	uint32_t maxp;
	ssize_t r;
	int k = 0;

	if (size < 3)
		return 0;
	maxp = (uint32_t)data[0] << 8 | data[1];
	piece = (size_t)data[2] + 1;
	s = data + 3;
	n = size - 3;
	rbuf_init(&rb, maxp);
	wbuf_init(&wb);
	while ((r = fuzz_feed(wfd, rfd, &rb, s, n, &pos, piece)) > 0) {
		rd += (size_t)r;
		FUZZ_ASSERT(rd <= pos);
		FUZZ_ASSERT(rb.len - rb.off == rd - cons);
		/* Held bytes never exceed one largest frame (or a chunk). */
		FUZZ_ASSERT(rb.len - rb.off <= FRAME_READ_CHUNK ||
		    rb.len - rb.off <= FANOUT_HDR_LEN + (size_t)maxp);
		while ((k = rbuf_next(&rb, &h, &pl)) == 1) {
			FUZZ_ASSERT(ref_decode(s + cons, rd - cons, maxp) == 1);
			check_frame(&rb, &wb, &h, pl, s + cons, maxp);
			cons += FANOUT_HDR_LEN + h.len;
		}
		FUZZ_ASSERT(k == ref_decode(s + cons, rd - cons, maxp));
		FUZZ_ASSERT(rb.len - rb.off == rd - cons);
		if (k < 0)
			break;	/* a receiver drops the connection here */
	}
	FUZZ_ASSERT(wbuf_flush(&wb, nullfd) == 0 && wbuf_pending(&wb) == 0);
	wbuf_free(&wb);
	rbuf_free(&rb);
	fuzz_drain(rfd);
	return 0;
}
