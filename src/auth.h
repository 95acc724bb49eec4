/* SPDX-License-Identifier: MIT */
/*
 * The worker link handshake of proto.h, written once for fanoutd,
 * fanout-worker and the test workers: the secret's handover, the three
 * frames, the proofs.  No I/O on sockets and no logging here; each caller
 * writes the frames it is given and reads frames with its own rbuf.
 */
#ifndef FANOUT_AUTH_H
#define FANOUT_AUTH_H

#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "proto.h"

/* The longest handshake frame, header included: a buffer for any. */
#define AUTH_FRAME_MAX	(FANOUT_HDR_LEN + AUTH_PAYLOAD_MAX)

enum auth_state {
	AUTH_START = 0,		/* daemon: HELLO to send; worker: awaits it */
	AUTH_WAIT,		/* daemon: awaits CHALLENGE; worker: PROOF */
	AUTH_DONE,		/* both sides proved they know the key */
	AUTH_FAILED,		/* a wrong frame or proof: close the link */
};

struct auth {
	enum auth_state	 state;
	uint8_t		 key[AUTH_KEY_LEN];
	uint8_t		 nd[AUTH_NONCE_LEN];	/* the daemon's nonce */
	uint8_t		 nw[AUTH_NONCE_LEN];	/* the worker's nonce */
};

/* libsodium's own setup, once per process before anything below: 0, or
 * -EIO if it cannot be initialised. */
int	auth_init(void);
/* A fresh random key: 0, or -errno. */
int	auth_key_new(uint8_t key[AUTH_KEY_LEN]);
/* A pipe already holding key: its read end (close-on-exec, the caller
 * clears that in the child that should inherit it), or -errno. */
int	auth_key_pipe(const uint8_t key[AUTH_KEY_LEN]);
/* Reads exactly AUTH_KEY_LEN bytes and then end of file from fd, and
 * closes fd whatever happens: 0, -EBADF and the like, or -EMSGSIZE when
 * fd held less or more than a key. */
int	auth_key_read(int fd, uint8_t key[AUTH_KEY_LEN]);

/* A new handshake with key, in AUTH_START. */
void	auth_start(struct auth *, const uint8_t key[AUTH_KEY_LEN]);
/* Daemon: the MSG_AUTH_HELLO frame to send first; its length. */
size_t	auth_daemon_hello(struct auth *, uint8_t out[AUTH_FRAME_MAX]);
/*
 * A frame received while the handshake is not done, on either side: the
 * frame to send in answer into out and its length (0: none), the state
 * moving on (AUTH_DONE once the peer proved itself), or, with the state
 * AUTH_FAILED, -EBADMSG (not the frame expected, or not its length) or
 * -EACCES (a wrong proof).
 */
ssize_t	auth_daemon_recv(struct auth *, const struct frame_hdr *,
	    const uint8_t *payload, uint8_t out[AUTH_FRAME_MAX]);
ssize_t	auth_worker_recv(struct auth *, const struct frame_hdr *,
	    const uint8_t *payload, uint8_t out[AUTH_FRAME_MAX]);
/* Wipes the key and the nonces. */
void	auth_clear(struct auth *);
const char *auth_strerror(int);

#endif /* FANOUT_AUTH_H */
