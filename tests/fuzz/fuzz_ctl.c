/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes control requests as fanoutd takes them apart, and the replies as
 * fanoutctl and fanoutd's links take those apart: the frame reader bounded
 * as control.c bounds it, the request dispatch of control.c's ctl_process
 * (kept in step with it by hand: it is inline there), and every payload
 * decoder of payload.c.  Each decoded record must encode back to the bytes
 * it came from, and each verdict must be the one proto.h gives.
 *
 * Input: max_message_bytes (u16, 0 taken as 1), then the stream.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "payload.h"
#include "proto.h"
#include "fuzz.h"

/* What control.c answers a request with, or CTL_RES_OK for "handled". */
enum verdict { V_OK, V_TOOBIG, V_BADTYPE, V_BADFRAME };

static int rfd = -1, wfd = -1;

/* Decodes p with name's decoder, re-encodes it, and checks both ways. */
#define CODEC_CHECK(name, LEN, exact, p, len) do {			\
	struct name rec_;						\
	uint8_t back_[LEN];						\
	int ok_ = (len) >= (LEN) && (!(exact) || (len) == (LEN));	\
									\
	FUZZ_ASSERT((name##_decode((p), (len), &rec_) == 0) == ok_);	\
	if (ok_) {							\
		name##_encode(back_, &rec_);				\
		FUZZ_ASSERT(memcmp(back_, (p), (LEN)) == 0);		\
	}								\
} while (0)

/* A reply frame as its reader decodes it (fanoutctl, or peer.c for an
 * ack); the bound on a tail is the reader's, checked against the length
 * the decoder accepted. */
static void
check_reply(const struct frame_hdr *h, const uint8_t *p)
{
	switch (h->type) {
	case MSG_ACK:
		CODEC_CHECK(msg_ack, MSG_ACK_LEN, 0, p, h->len);
		break;
	case CTL_WORKER:
		CODEC_CHECK(ctl_worker, CTL_WORKER_LEN, 0, p, h->len);
		break;
	case CTL_DAEMON:
		CODEC_CHECK(ctl_daemon, CTL_DAEMON_LEN, 0, p, h->len);
		break;
	case CTL_END:
		CODEC_CHECK(ctl_end, CTL_END_LEN, 1, p, h->len);
		break;
	case CTL_HIST:
		CODEC_CHECK(ctl_hist, CTL_HIST_LEN, 0, p, h->len);
		break;
	case CTL_CHANGE:
		CODEC_CHECK(ctl_change, CTL_CHANGE_LEN, 0, p, h->len);
		break;
	case CTL_QSTAT:
		CODEC_CHECK(ctl_qstat, CTL_QSTAT_LEN, 1, p, h->len);
		break;
	case CTL_SEND:
		CODEC_CHECK(ctl_send, CTL_SEND_LEN, 0, p, h->len);
		break;
	case CTL_QUEUE:
		CODEC_CHECK(ctl_queue, CTL_QUEUE_LEN, 1, p, h->len);
		break;
	}
}

/* control.c's ctl_process and its handlers, less the side effects. */
static enum verdict
dispatch(const struct frame_hdr *h, const uint8_t *p, uint32_t max_message)
{
	struct ctl_send req;
	struct ctl_queue rq;
	uint32_t len;

	switch (h->type) {
	case CTL_SEND:
		if (ctl_send_decode(p, h->len, &req) < 0) {
			FUZZ_ASSERT(h->len < CTL_SEND_LEN);
			return V_BADFRAME;
		}
		FUZZ_ASSERT(h->len >= CTL_SEND_LEN);
		FUZZ_ASSERT(req.timeout_ms == get_u32(p) &&
		    req.flags == get_u32(p + 4));
		len = h->len - CTL_SEND_LEN;
		/* The reader's bound makes TOOBIG here unreachable: a
		 * message within it fits the queue's own check. */
		FUZZ_ASSERT(len <= max_message);
		return V_OK;
	case CTL_STATUS:
	case CTL_STATS:
	case CTL_RELOAD:
		return h->len == 0 ? V_OK : V_BADFRAME;
	case CTL_QUEUE:
		if (ctl_queue_decode(p, h->len, &rq) < 0) {
			FUZZ_ASSERT(h->len != CTL_QUEUE_LEN);
			return V_BADFRAME;
		}
		FUZZ_ASSERT(h->len == CTL_QUEUE_LEN);
		FUZZ_ASSERT(rq.op == get_u32(p) && rq.worker == get_u32(p + 4));
		return rq.op == CTL_QUEUE_LIST || rq.op == CTL_QUEUE_DROP ?
		    V_OK : V_BADFRAME;
	}
	return V_BADTYPE;
}

/* The CTL_END fanoutd would send for v, through its own codec. */
static void
check_end(uint64_t id, enum verdict v, uint32_t max_message)
{
	static const uint32_t res[] = { CTL_RES_OK, CTL_RES_TOOBIG,
	    CTL_RES_BADTYPE, CTL_RES_BADFRAME };
	struct ctl_end e = { .result = res[v],
	    .limit = v == V_TOOBIG ? max_message : 0 }, back;
	uint8_t buf[FANOUT_HDR_LEN + CTL_END_LEN];
	struct frame_hdr h;

	frame_hdr_encode(buf, CTL_END, CTL_END_LEN, id);
	ctl_end_encode(buf + FANOUT_HDR_LEN, &e);
	FUZZ_ASSERT(frame_hdr_decode(buf, CTL_END_LEN, &h) == 0);
	FUZZ_ASSERT(h.id == id && h.type == CTL_END && h.len == CTL_END_LEN);
	FUZZ_ASSERT(ctl_end_decode(buf + FANOUT_HDR_LEN, h.len, &back) == 0);
	FUZZ_ASSERT(memcmp(&back, &e, sizeof(e)) == 0);
}

/* Feeds s into a reader bounded at maxp, as a connection would: calls fn
 * for each frame, then returns the reader's last word (0 or an error). */
static int
read_frames(const uint8_t *s, size_t n, uint32_t maxp,
    int (*fn)(const struct frame_hdr *, const uint8_t *, void *), void *arg)
{
	struct rbuf rb;
	struct frame_hdr h;
	const uint8_t *p;
	size_t pos = 0;
	int k = 0, stop = 0;

	rbuf_init(&rb, maxp);
	while (!stop && fuzz_feed(wfd, rfd, &rb, s, n, &pos, SIZE_MAX) > 0) {
		while (!stop && (k = rbuf_next(&rb, &h, &p)) == 1) {
			FUZZ_ASSERT(h.len <= maxp);
			stop = fn(&h, p, arg);
		}
		if (k < 0) {
			FUZZ_ASSERT(k != -EMSGSIZE || h.len > maxp);
			break;
		}
	}
	rbuf_free(&rb);
	fuzz_drain(rfd);
	return k;
}

static int
on_request(const struct frame_hdr *h, const uint8_t *p, void *arg)
{
	uint32_t max_message = *(uint32_t *)arg;
	enum verdict v = dispatch(h, p, max_message);

	check_end(h->id, v, max_message);
	return v != V_OK;	/* a bad request closes the connection */
}

static int
on_reply(const struct frame_hdr *h, const uint8_t *p, void *arg)
{
	(void)arg;
	check_reply(h, p);
	return 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int p[2];

	(void)argc;
	(void)argv;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == -1)
		abort();
	rfd = p[0];
	wfd = p[1];
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t max_message;
	int k;

	if (size < 2)
		return 0;
	max_message = (uint32_t)data[0] << 8 | data[1];
	if (max_message == 0)
		max_message = 1;
	/* fanoutd's control reader: the largest CTL_SEND and no more. */
	k = read_frames(data + 2, size - 2, max_message + CTL_SEND_LEN,
	    on_request, &max_message);
	if (k < 0)
		check_end(0, k == -EMSGSIZE ? V_TOOBIG : k == -EBADMSG ?
		    V_BADTYPE : V_BADFRAME, max_message);
	/* The same bytes as replies, to a reader that takes any length. */
	read_frames(data + 2, size - 2, FANOUT_PAYLOAD_MAX, on_reply, NULL);
	return 0;
}
