/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the worker link handshake of auth.c from every side an outsider
 * has: bytes a stranger sends to a worker's port, bytes a stranger answers
 * fanoutd with, a real exchange tampered with on the way, and the secret
 * pipe.  The key is drawn at random and never in the input, so reaching
 * AUTH_DONE without it is the bug this looks for.
 *
 * Input: a mode byte (its value modulo 4), then the mode's bytes.
 */
#include "config.h"

#include <sys/random.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "frame.h"
#include "proto.h"
#include "fuzz.h"

/* fanoutd's link reader before and after the handshake (peer.c). */
#define DAEMON_IN_MAX	(MSG_ACK_LEN + FANOUT_REASON_MAX)

static uint8_t key[AUTH_KEY_LEN];
static int rfd = -1, wfd = -1;

/* An answer frame: a whole header of the type expected, its length. */
static void
check_answer(const uint8_t *out, ssize_t n, uint8_t type, uint32_t len)
{
	struct frame_hdr h;

	FUZZ_ASSERT(n == FANOUT_HDR_LEN + (ssize_t)len && n <= AUTH_FRAME_MAX);
	FUZZ_ASSERT(frame_hdr_decode(out, AUTH_PAYLOAD_MAX, &h) == 0);
	FUZZ_ASSERT(h.type == type && h.len == len && h.id == 0 &&
	    h.flags == 0);
}

/* A stranger's stream, read as fanoutd (daemon) or a worker reads one. */
static void
stranger(const uint8_t *s, size_t n, int daemon)
{
	uint8_t out[AUTH_FRAME_MAX];
	struct auth a;
	struct rbuf rb;
	struct frame_hdr h;
	const uint8_t *p;
	size_t pos = 0;
	ssize_t r;
	int k, answers = 0, failed = 0;

	auth_start(&a, key);
	if (daemon)
		check_answer(out, (ssize_t)auth_daemon_hello(&a, out),
		    MSG_AUTH_HELLO, AUTH_HELLO_LEN);
	rbuf_init(&rb, daemon ? DAEMON_IN_MAX : AUTH_PAYLOAD_MAX);
	while (!failed && fuzz_feed(wfd, rfd, &rb, s, n, &pos, SIZE_MAX) > 0) {
		while ((k = rbuf_next(&rb, &h, &p)) == 1) {
			r = daemon ? auth_daemon_recv(&a, &h, p, out) :
			    auth_worker_recv(&a, &h, p, out);
			FUZZ_ASSERT(a.state != AUTH_DONE);
			if (r < 0) {
				FUZZ_ASSERT(a.state == AUTH_FAILED);
				FUZZ_ASSERT(r == -EBADMSG || r == -EACCES);
				failed = 1;
				break;
			}
			/* fanoutd sends nothing to an unproven peer; a
			 * worker sends one challenge, to the one hello. */
			FUZZ_ASSERT(!daemon || r == 0);
			if (r > 0) {
				FUZZ_ASSERT(++answers == 1);
				check_answer(out, r, MSG_AUTH_CHALLENGE,
				    AUTH_CHALLENGE_LEN);
			}
		}
		if (k < 0)
			break;
	}
	auth_clear(&a);
	rbuf_free(&rb);
	fuzz_drain(rfd);
}

/* Applies mask (mlen bytes, zero beyond) at offset off of frame f: 2 if
 * a header byte that matters changed (not flags, not id), 1 if only the
 * payload did, 0 if nothing that matters. */
static int
tamper(uint8_t *f, size_t flen, const uint8_t *mask, size_t mlen, size_t off)
{
	int changed = 0;
	size_t i;

	for (i = 0; i < flen && off + i < mlen; i++) {
		f[i] ^= mask[off + i];
		if (mask[off + i] == 0 || i == 2 || i == 3 ||
		    (i >= 8 && i < FANOUT_HDR_LEN))
			continue;
		if (i < FANOUT_HDR_LEN)
			changed = 2;
		else if (changed == 0)
			changed = 1;
	}
	return changed;
}

/* A real exchange, each frame XORed with the input on the way. */
static void
tampered(const uint8_t *mask, size_t mlen)
{
	uint8_t f1[AUTH_FRAME_MAX], f2[AUTH_FRAME_MAX], f3[AUTH_FRAME_MAX];
	struct auth d, w;
	struct frame_hdr h;
	ssize_t n;
	size_t l1;
	int bad1, bad2 = 0, bad3 = 0;

	auth_start(&d, key);
	auth_start(&w, key);
	l1 = auth_daemon_hello(&d, f1);
	bad1 = tamper(f1, l1, mask, mlen, 0);
	n = -1;
	if (frame_hdr_decode(f1, AUTH_PAYLOAD_MAX, &h) == 0 &&
	    FANOUT_HDR_LEN + (size_t)h.len <= l1)
		n = auth_worker_recv(&w, &h, f1 + FANOUT_HDR_LEN, f2);
	/* A worker cannot tell a changed nonce: it answers any hello. */
	FUZZ_ASSERT((n > 0) == (bad1 != 2));
	if (n <= 0)
		goto out;
	bad2 = tamper(f2, (size_t)n, mask, mlen, l1);
	if (frame_hdr_decode(f2, DAEMON_IN_MAX, &h) == 0 &&
	    FANOUT_HDR_LEN + (size_t)h.len <= (size_t)n)
		n = auth_daemon_recv(&d, &h, f2 + FANOUT_HDR_LEN, f3);
	else
		n = -1;
	/* fanoutd proves itself only to the worker that saw its nonce. */
	FUZZ_ASSERT((n > 0) == (!bad1 && !bad2));
	FUZZ_ASSERT((d.state == AUTH_DONE) == (!bad1 && !bad2));
	if (n <= 0)
		goto out;
	bad3 = tamper(f3, (size_t)n, mask, mlen,
	    l1 + FANOUT_HDR_LEN + AUTH_CHALLENGE_LEN);
	if (frame_hdr_decode(f3, AUTH_PAYLOAD_MAX, &h) == 0 &&
	    FANOUT_HDR_LEN + (size_t)h.len <= (size_t)n)
		(void)auth_worker_recv(&w, &h, f3 + FANOUT_HDR_LEN, f1);
out:
	/* The worker takes messages exactly when nothing that matters was
	 * changed on the way. */
	FUZZ_ASSERT((w.state == AUTH_DONE) == (!bad1 && !bad2 && !bad3));
	auth_clear(&d);
	auth_clear(&w);
}

/* The secret's pipe holding the input: a key exactly when it is one. */
static void
secret(const uint8_t *s, size_t n)
{
	uint8_t got[AUTH_KEY_LEN];
	int p[2], r;
	ssize_t w = 0;

	if (pipe2(p, O_CLOEXEC) == -1)
		abort();
	/* Far below the pipe's capacity with -max_len as make fuzz sets it. */
	if (n > 0 && (w = write(p[1], s, n > 60000 ? 60000 : n)) < 0)
		abort();
	close(p[1]);
	r = auth_key_read(p[0], got);
	FUZZ_ASSERT((r == 0) == (w == AUTH_KEY_LEN));
	FUZZ_ASSERT(r == 0 || r == -EMSGSIZE);
	if (r == 0)
		FUZZ_ASSERT(memcmp(got, s, AUTH_KEY_LEN) == 0);
	/* auth_key_read closed it: the number is free again. */
	FUZZ_ASSERT(fcntl(p[0], F_GETFD) == -1 && errno == EBADF);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int p[2];

	(void)argc;
	(void)argv;
	if (auth_init() < 0 || auth_key_new(key) < 0 ||
	    pipe2(p, O_NONBLOCK | O_CLOEXEC) == -1)
		abort();
	rfd = p[0];
	wfd = p[1];
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
		stranger(data + 1, size - 1, 0);
		break;
	case 1:
		stranger(data + 1, size - 1, 1);
		break;
	case 2:
		tampered(data + 1, size - 1);
		break;
	case 3:
		secret(data + 1, size - 1);
		break;
	}
	return 0;
}
