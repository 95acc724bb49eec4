/* SPDX-License-Identifier: MIT */
/*
 * The worker link handshake (proto.h).  HMAC-SHA-512-256 and the nonces
 * come from libsodium: crypto_auth, crypto_auth_verify (constant time),
 * randombytes_buf.  The key comes from getrandom(2) in fanoutd and
 * reaches the worker through a pipe.
 */
#include "config.h"

#include <sys/random.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "auth.h"

_Static_assert(AUTH_KEY_LEN == crypto_auth_KEYBYTES, "key length");
_Static_assert(AUTH_MAC_LEN == crypto_auth_BYTES, "proof length");
_Static_assert(sizeof(AUTH_LABEL_W2D) - 1 == AUTH_LABEL_LEN, "label");
_Static_assert(sizeof(AUTH_LABEL_D2W) - 1 == AUTH_LABEL_LEN, "label");

int
auth_init(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

int
auth_key_new(uint8_t key[AUTH_KEY_LEN])
{
	size_t got = 0;
	ssize_t n;

	while (got < AUTH_KEY_LEN) {
		n = getrandom(key + got, AUTH_KEY_LEN - got, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		got += (size_t)n;
	}
	return 0;
}

int
auth_key_pipe(const uint8_t key[AUTH_KEY_LEN])
{
	int p[2], r = 0;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) == -1)
		return -errno;
	/* Far below the pipe's capacity: one write, which cannot block. */
	do
		n = write(p[1], key, AUTH_KEY_LEN);
	while (n == -1 && errno == EINTR);
	if (n != AUTH_KEY_LEN)
		r = n == -1 ? -errno : -EIO;
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return r;
	}
	return p[0];
}

int
auth_key_read(int fd, uint8_t key[AUTH_KEY_LEN])
{
	uint8_t buf[AUTH_KEY_LEN + 1];
	size_t got = 0;
	ssize_t n;
	int r = 0;

	/* Up to end of file: one byte more than a key is an error. */
	while (got < sizeof(buf)) {
		n = read(fd, buf + got, sizeof(buf) - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (fd >= 0)
		close(fd);
	if (r == 0 && got != AUTH_KEY_LEN)
		r = -EMSGSIZE;
	if (r == 0)
		memcpy(key, buf, AUTH_KEY_LEN);
	sodium_memzero(buf, sizeof(buf));
	return r;
}

void
auth_start(struct auth *a, const uint8_t key[AUTH_KEY_LEN])
{
	memset(a, 0, sizeof(*a));
	memcpy(a->key, key, AUTH_KEY_LEN);
	a->state = AUTH_START;
}

/* HMAC-SHA-512-256(K, label || Nd || Nw) */
static void
auth_mac(const struct auth *a, const char *label, uint8_t mac[AUTH_MAC_LEN])
{
	uint8_t in[AUTH_LABEL_LEN + 2 * AUTH_NONCE_LEN];

	memcpy(in, label, AUTH_LABEL_LEN);
	memcpy(in + AUTH_LABEL_LEN, a->nd, AUTH_NONCE_LEN);
	memcpy(in + AUTH_LABEL_LEN + AUTH_NONCE_LEN, a->nw, AUTH_NONCE_LEN);
	crypto_auth(mac, in, sizeof(in), a->key);
}

static int
auth_check(const struct auth *a, const char *label,
    const uint8_t mac[AUTH_MAC_LEN])
{
	uint8_t in[AUTH_LABEL_LEN + 2 * AUTH_NONCE_LEN];

	memcpy(in, label, AUTH_LABEL_LEN);
	memcpy(in + AUTH_LABEL_LEN, a->nd, AUTH_NONCE_LEN);
	memcpy(in + AUTH_LABEL_LEN + AUTH_NONCE_LEN, a->nw, AUTH_NONCE_LEN);
	return crypto_auth_verify(mac, in, sizeof(in), a->key) == 0 ? 0 :
	    -EACCES;
}

/* The frame expected: type and exact length. */
static int
auth_expect(const struct frame_hdr *h, uint8_t type, uint32_t len)
{
	return h->type == type && h->len == len ? 0 : -EBADMSG;
}

static ssize_t
auth_fail(struct auth *a, int r)
{
	a->state = AUTH_FAILED;
	return r;
}

size_t
auth_daemon_hello(struct auth *a, uint8_t out[AUTH_FRAME_MAX])
{
	randombytes_buf(a->nd, AUTH_NONCE_LEN);
	frame_hdr_encode(out, MSG_AUTH_HELLO, AUTH_HELLO_LEN, 0);
	memcpy(out + FANOUT_HDR_LEN, a->nd, AUTH_NONCE_LEN);
	a->state = AUTH_WAIT;
	return FANOUT_HDR_LEN + AUTH_HELLO_LEN;
}

ssize_t
auth_daemon_recv(struct auth *a, const struct frame_hdr *h,
    const uint8_t *p, uint8_t out[AUTH_FRAME_MAX])
{
	int r;

	if (a->state != AUTH_WAIT)
		return auth_fail(a, -EBADMSG);
	if ((r = auth_expect(h, MSG_AUTH_CHALLENGE, AUTH_CHALLENGE_LEN)) < 0)
		return auth_fail(a, r);
	memcpy(a->nw, p, AUTH_NONCE_LEN);
	/* The worker first: nothing goes to a peer that has not proved
	 * itself, not even our own proof. */
	if ((r = auth_check(a, AUTH_LABEL_W2D, p + AUTH_NONCE_LEN)) < 0)
		return auth_fail(a, r);
	frame_hdr_encode(out, MSG_AUTH_PROOF, AUTH_PROOF_LEN, 0);
	auth_mac(a, AUTH_LABEL_D2W, out + FANOUT_HDR_LEN);
	a->state = AUTH_DONE;
	return FANOUT_HDR_LEN + AUTH_PROOF_LEN;
}

ssize_t
auth_worker_recv(struct auth *a, const struct frame_hdr *h,
    const uint8_t *p, uint8_t out[AUTH_FRAME_MAX])
{
	int r;

	switch (a->state) {
	case AUTH_START:
		if ((r = auth_expect(h, MSG_AUTH_HELLO, AUTH_HELLO_LEN)) < 0)
			return auth_fail(a, r);
		memcpy(a->nd, p, AUTH_NONCE_LEN);
		randombytes_buf(a->nw, AUTH_NONCE_LEN);
		frame_hdr_encode(out, MSG_AUTH_CHALLENGE, AUTH_CHALLENGE_LEN,
		    0);
		memcpy(out + FANOUT_HDR_LEN, a->nw, AUTH_NONCE_LEN);
		auth_mac(a, AUTH_LABEL_W2D,
		    out + FANOUT_HDR_LEN + AUTH_NONCE_LEN);
		a->state = AUTH_WAIT;
		return FANOUT_HDR_LEN + AUTH_CHALLENGE_LEN;
	case AUTH_WAIT:
		if ((r = auth_expect(h, MSG_AUTH_PROOF, AUTH_PROOF_LEN)) < 0 ||
		    (r = auth_check(a, AUTH_LABEL_D2W, p)) < 0)
			return auth_fail(a, r);
		a->state = AUTH_DONE;
		return 0;
	default:
		return auth_fail(a, -EBADMSG);
	}
}

void
auth_clear(struct auth *a)
{
	sodium_memzero(a, sizeof(*a));
}

const char *
auth_strerror(int r)
{
	switch (r) {
	case -EBADMSG:
		return "not a handshake frame";
	case -EACCES:
		return "wrong proof";
	case -EMSGSIZE:
		return "not a key";
	}
	return strerror(-r);
}
