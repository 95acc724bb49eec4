/* SPDX-License-Identifier: MIT */
/*
 * The worker link handshake: a full exchange, and each way a stranger
 * might try to get through it (wrong key, reflection, replay, frames out
 * of order or of the wrong length); the proofs against values computed
 * independently (Python's hmac, hashlib.sha512, cut to 32 bytes), so that
 * proto.h's description is the code's; the key's handover through a pipe.
 */
#include "config.h"

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

#include "auth.h"

static const uint8_t key_a[AUTH_KEY_LEN] = { 1, 2, 3, 4, 5 };
static const uint8_t key_b[AUTH_KEY_LEN] = { 9, 8, 7, 6, 5 };

/* The header of a frame in buf, decoded as a receiver would. */
static struct frame_hdr
hdr_of(const uint8_t *buf)
{
	struct frame_hdr h;

	assert_int_equal(frame_hdr_decode(buf, AUTH_PAYLOAD_MAX, &h), 0);
	return h;
}

/* A frame fed to the worker side: what auth_worker_recv returned. */
static ssize_t
to_worker(struct auth *w, const uint8_t *frame, uint8_t *out)
{
	struct frame_hdr h = hdr_of(frame);

	return auth_worker_recv(w, &h, frame + FANOUT_HDR_LEN, out);
}

static ssize_t
to_daemon(struct auth *d, const uint8_t *frame, uint8_t *out)
{
	struct frame_hdr h = hdr_of(frame);

	return auth_daemon_recv(d, &h, frame + FANOUT_HDR_LEN, out);
}

static void
setup_once(void)
{
	assert_int_equal(auth_init(), 0);
}

static void
test_exchange(void **state)
{
	uint8_t hello[AUTH_FRAME_MAX], chal[AUTH_FRAME_MAX];
	uint8_t proof[AUTH_FRAME_MAX], none[AUTH_FRAME_MAX];
	struct auth d, w;
	struct frame_hdr h;

	(void)state;
	setup_once();
	auth_start(&d, key_a);
	auth_start(&w, key_a);
	assert_int_equal(auth_daemon_hello(&d, hello),
	    FANOUT_HDR_LEN + AUTH_HELLO_LEN);
	h = hdr_of(hello);
	assert_int_equal(h.type, MSG_AUTH_HELLO);
	assert_int_equal(h.len, AUTH_HELLO_LEN);
	assert_true(h.id == 0 && h.flags == 0);
	assert_int_equal(to_worker(&w, hello, chal),
	    FANOUT_HDR_LEN + AUTH_CHALLENGE_LEN);
	assert_int_equal(hdr_of(chal).type, MSG_AUTH_CHALLENGE);
	assert_int_equal(w.state, AUTH_WAIT);
	assert_int_equal(to_daemon(&d, chal, proof),
	    FANOUT_HDR_LEN + AUTH_PROOF_LEN);
	assert_int_equal(hdr_of(proof).type, MSG_AUTH_PROOF);
	assert_int_equal(d.state, AUTH_DONE);
	assert_int_equal(to_worker(&w, proof, none), 0);
	assert_int_equal(w.state, AUTH_DONE);
	/* Once done, the handshake takes no more frames. */
	assert_int_equal(to_worker(&w, proof, none), -EBADMSG);
	/* The secret is on no frame. */
	assert_null(memmem(hello, sizeof(hello), key_a, 5));
	assert_null(memmem(chal, sizeof(chal), key_a, 5));
	assert_null(memmem(proof, sizeof(proof), key_a, 5));
}

/* Nonces are fresh: two hellos differ, two challenges differ. */
static void
test_fresh_nonces(void **state)
{
	uint8_t h1[AUTH_FRAME_MAX], h2[AUTH_FRAME_MAX];
	uint8_t c1[AUTH_FRAME_MAX], c2[AUTH_FRAME_MAX];
	struct auth d, w;

	(void)state;
	auth_start(&d, key_a);
	auth_daemon_hello(&d, h1);
	auth_start(&d, key_a);
	auth_daemon_hello(&d, h2);
	assert_memory_not_equal(h1 + FANOUT_HDR_LEN, h2 + FANOUT_HDR_LEN,
	    AUTH_NONCE_LEN);
	auth_start(&w, key_a);
	assert_true(to_worker(&w, h1, c1) > 0);
	auth_start(&w, key_a);
	assert_true(to_worker(&w, h1, c2) > 0);
	assert_memory_not_equal(c1 + FANOUT_HDR_LEN, c2 + FANOUT_HDR_LEN,
	    AUTH_CHALLENGE_LEN);
}

/* A worker with another key (another program on the port, another
 * fanoutd's worker): the daemon refuses it before sending its proof. */
static void
test_wrong_key_worker(void **state)
{
	uint8_t hello[AUTH_FRAME_MAX], chal[AUTH_FRAME_MAX];
	uint8_t proof[AUTH_FRAME_MAX];
	struct auth d, w;

	(void)state;
	auth_start(&d, key_a);
	auth_start(&w, key_b);
	auth_daemon_hello(&d, hello);
	assert_true(to_worker(&w, hello, chal) > 0);
	assert_int_equal(to_daemon(&d, chal, proof), -EACCES);
	assert_int_equal(d.state, AUTH_FAILED);
}

/* A stranger without the key: whatever 32 bytes it offers as a proof. */
static void
test_wrong_key_daemon(void **state)
{
	uint8_t hello[AUTH_FRAME_MAX], chal[AUTH_FRAME_MAX];
	uint8_t proof[AUTH_FRAME_MAX], none[AUTH_FRAME_MAX];
	struct auth d, w, stranger;

	(void)state;
	auth_start(&d, key_b);
	auth_start(&w, key_a);
	auth_daemon_hello(&d, hello);
	assert_true(to_worker(&w, hello, chal) > 0);
	/* The daemon with the wrong key does not even get to a proof; make
	 * one as a stranger would, with its own key. */
	auth_start(&stranger, key_b);
	stranger.state = AUTH_WAIT;
	memcpy(stranger.nd, hello + FANOUT_HDR_LEN, AUTH_NONCE_LEN);
	assert_int_equal(to_daemon(&stranger, chal, proof), -EACCES);
	frame_hdr_encode(proof, MSG_AUTH_PROOF, AUTH_PROOF_LEN, 0);
	memset(proof + FANOUT_HDR_LEN, 0xa5, AUTH_PROOF_LEN);
	assert_int_equal(to_worker(&w, proof, none), -EACCES);
	assert_int_equal(w.state, AUTH_FAILED);
}

/* The worker's own proof sent back to it as the daemon's. */
static void
test_reflection(void **state)
{
	uint8_t hello[AUTH_FRAME_MAX], chal[AUTH_FRAME_MAX];
	uint8_t proof[AUTH_FRAME_MAX], none[AUTH_FRAME_MAX];
	struct auth w;

	(void)state;
	auth_start(&w, key_a);
	frame_hdr_encode(hello, MSG_AUTH_HELLO, AUTH_HELLO_LEN, 0);
	memset(hello + FANOUT_HDR_LEN, 0x42, AUTH_NONCE_LEN);
	assert_true(to_worker(&w, hello, chal) > 0);
	frame_hdr_encode(proof, MSG_AUTH_PROOF, AUTH_PROOF_LEN, 0);
	memcpy(proof + FANOUT_HDR_LEN,
	    chal + FANOUT_HDR_LEN + AUTH_NONCE_LEN, AUTH_MAC_LEN);
	assert_int_equal(to_worker(&w, proof, none), -EACCES);
}

/* A whole exchange recorded and played again to the same worker key. */
static void
test_replay(void **state)
{
	uint8_t hello[AUTH_FRAME_MAX], chal[AUTH_FRAME_MAX];
	uint8_t proof[AUTH_FRAME_MAX], none[AUTH_FRAME_MAX];
	uint8_t chal2[AUTH_FRAME_MAX];
	struct auth d, w;

	(void)state;
	auth_start(&d, key_a);
	auth_start(&w, key_a);
	auth_daemon_hello(&d, hello);
	assert_true(to_worker(&w, hello, chal) > 0);
	assert_true(to_daemon(&d, chal, proof) > 0);
	assert_int_equal(to_worker(&w, proof, none), 0);
	/* The replay: same hello, same proof, a new connection. */
	auth_start(&w, key_a);
	assert_true(to_worker(&w, hello, chal2) > 0);
	assert_int_equal(to_worker(&w, proof, none), -EACCES);
	/* And the recorded challenge replayed to a daemon: its nonce is
	 * new, so the old proof is worthless there too. */
	auth_start(&d, key_a);
	auth_daemon_hello(&d, hello);
	assert_int_equal(to_daemon(&d, chal, proof), -EACCES);
}

/* Anything but the expected frame, with its exact length, ends it. */
static void
test_order_and_lengths(void **state)
{
	uint8_t f[AUTH_FRAME_MAX], out[AUTH_FRAME_MAX];
	struct frame_hdr h;
	struct auth w, d;

	(void)state;
	memset(f, 0, sizeof(f));
	/* a proof first */
	auth_start(&w, key_a);
	frame_hdr_encode(f, MSG_AUTH_PROOF, AUTH_PROOF_LEN, 0);
	assert_int_equal(to_worker(&w, f, out), -EBADMSG);
	assert_int_equal(w.state, AUTH_FAILED);
	/* and nothing after a failure */
	frame_hdr_encode(f, MSG_AUTH_HELLO, AUTH_HELLO_LEN, 0);
	assert_int_equal(to_worker(&w, f, out), -EBADMSG);
	/* a message first */
	auth_start(&w, key_a);
	h = (struct frame_hdr){ FANOUT_PROTO_VERSION, MSG_DATA, 0, 5, 1 };
	assert_int_equal(auth_worker_recv(&w, &h, f, out), -EBADMSG);
	/* a hello one byte short, one byte long */
	auth_start(&w, key_a);
	h = (struct frame_hdr){ FANOUT_PROTO_VERSION, MSG_AUTH_HELLO, 0,
	    AUTH_HELLO_LEN - 1, 0 };
	assert_int_equal(auth_worker_recv(&w, &h, f, out), -EBADMSG);
	auth_start(&w, key_a);
	h.len = AUTH_HELLO_LEN + 1;
	assert_int_equal(auth_worker_recv(&w, &h, f, out), -EBADMSG);
	/* two hellos */
	auth_start(&w, key_a);
	frame_hdr_encode(f, MSG_AUTH_HELLO, AUTH_HELLO_LEN, 0);
	assert_true(to_worker(&w, f, out) > 0);
	assert_int_equal(to_worker(&w, f, out), -EBADMSG);
	/* the daemon: an ack, or a challenge before its hello */
	auth_start(&d, key_a);
	frame_hdr_encode(f, MSG_AUTH_CHALLENGE, AUTH_CHALLENGE_LEN, 0);
	assert_int_equal(to_daemon(&d, f, out), -EBADMSG);
	auth_start(&d, key_a);
	auth_daemon_hello(&d, out);
	h = (struct frame_hdr){ FANOUT_PROTO_VERSION, MSG_ACK, 0, 4, 1 };
	assert_int_equal(auth_daemon_recv(&d, &h, f, out), -EBADMSG);
	/* a frame longer than any handshake frame never gets this far */
	frame_hdr_encode(f, MSG_DATA, AUTH_PAYLOAD_MAX + 1, 1);
	assert_int_equal(frame_hdr_decode(f, AUTH_PAYLOAD_MAX, &h),
	    -EMSGSIZE);
}

/* The proofs are what proto.h says: fixed key and nonces, the MACs from
 * Python's hmac.new(K, label + Nd + Nw, hashlib.sha512).digest()[:32]. */
static void
test_known_answer(void **state)
{
	static const uint8_t macw[AUTH_MAC_LEN] = {
		0xf1, 0x36, 0x56, 0x19, 0x72, 0x61, 0x40, 0x9b, 0x5e, 0x36,
		0x40, 0x1a, 0x90, 0x0c, 0x48, 0x6a, 0xc6, 0x25, 0xf3, 0x83,
		0xac, 0x30, 0x55, 0xed, 0xde, 0x78, 0xfa, 0xa0, 0x90, 0x5f,
		0xd2, 0xfa,
	};
	static const uint8_t macd[AUTH_MAC_LEN] = {
		0x20, 0xc1, 0x02, 0x4f, 0xc3, 0x4c, 0xd0, 0x56, 0xb8, 0x1d,
		0xa0, 0x8b, 0xdb, 0xe4, 0xa6, 0xce, 0x98, 0x0e, 0xfb, 0x34,
		0xad, 0x34, 0x88, 0x10, 0x10, 0xb3, 0xa4, 0xa9, 0x15, 0x58,
		0xb8, 0x05,
	};
	uint8_t key[AUTH_KEY_LEN], chal[AUTH_FRAME_MAX], out[AUTH_FRAME_MAX];
	uint8_t expect[FANOUT_HDR_LEN + AUTH_PROOF_LEN];
	struct auth d;
	unsigned i;

	(void)state;
	for (i = 0; i < AUTH_KEY_LEN; i++)
		key[i] = (uint8_t)i;
	auth_start(&d, key);
	d.state = AUTH_WAIT;
	for (i = 0; i < AUTH_NONCE_LEN; i++)
		d.nd[i] = (uint8_t)(0xa0 + i % 16);
	frame_hdr_encode(chal, MSG_AUTH_CHALLENGE, AUTH_CHALLENGE_LEN, 0);
	for (i = 0; i < AUTH_NONCE_LEN; i++)
		chal[FANOUT_HDR_LEN + i] = (uint8_t)(0x50 + i);
	memcpy(chal + FANOUT_HDR_LEN + AUTH_NONCE_LEN, macw, AUTH_MAC_LEN);
	assert_int_equal(to_daemon(&d, chal, out),
	    FANOUT_HDR_LEN + AUTH_PROOF_LEN);
	/* byte by byte, header included (proto.h's MSG_AUTH_PROOF) */
	memset(expect, 0, sizeof(expect));
	expect[0] = FANOUT_PROTO_VERSION;
	expect[1] = MSG_AUTH_PROOF;
	expect[7] = AUTH_PROOF_LEN;
	memcpy(expect + FANOUT_HDR_LEN, macd, AUTH_MAC_LEN);
	assert_memory_equal(out, expect, sizeof(expect));
}

static void
write_pipe(int p[2], const void *buf, size_t len)
{
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(write(p[1], buf, len), (ssize_t)len);
	close(p[1]);
}

static void
test_key_handover(void **state)
{
	uint8_t k1[AUTH_KEY_LEN], k2[AUTH_KEY_LEN], got[AUTH_KEY_LEN + 8];
	static const uint8_t zero[AUTH_KEY_LEN];
	int fd, p[2];

	(void)state;
	assert_int_equal(auth_key_new(k1), 0);
	assert_int_equal(auth_key_new(k2), 0);
	assert_memory_not_equal(k1, k2, AUTH_KEY_LEN);
	assert_memory_not_equal(k1, zero, AUTH_KEY_LEN);
	fd = auth_key_pipe(k1);
	assert_true(fd > 2);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(auth_key_read(fd, got), 0);
	assert_memory_equal(got, k1, AUTH_KEY_LEN);
	/* closed by auth_key_read */
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	/* one byte short, one byte over: not a key */
	write_pipe(p, k1, AUTH_KEY_LEN - 1);
	assert_int_equal(auth_key_read(p[0], got), -EMSGSIZE);
	assert_int_equal(fcntl(p[0], F_GETFD), -1);
	write_pipe(p, got, AUTH_KEY_LEN + 1);
	assert_int_equal(auth_key_read(p[0], got), -EMSGSIZE);
	/* not a descriptor */
	assert_int_equal(auth_key_read(1000, got), -EBADF);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange),
		cmocka_unit_test(test_fresh_nonces),
		cmocka_unit_test(test_wrong_key_worker),
		cmocka_unit_test(test_wrong_key_daemon),
		cmocka_unit_test(test_reflection),
		cmocka_unit_test(test_replay),
		cmocka_unit_test(test_order_and_lengths),
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_key_handover),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
