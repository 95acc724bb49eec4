/* SPDX-License-Identifier: MIT */
/*
 * The fanout wire protocol, version 1: the only file a third-party peer
 * needs.  One framing for every fanout socket: the daemon's TCP links to its
 * workers and the control Unix socket that fanoutctl talks to.
 *
 * Every message is one frame: a 16-byte header in network byte order, then
 * `length` bytes of payload.
 *
 *  0       1       2               4                               8
 *  +-------+-------+---------------+-------------------------------+
 *  |version| type  |     flags     |            length             |
 *  +-------+-------+---------------+-------------------------------+
 *  |                          id (uint64)                          |
 *  +---------------------------------------------------------------+
 *  |  payload ...  (0 <= length <= the receiver's limit)
 *
 *  version  FANOUT_PROTO_VERSION.
 *  type     enum msg_type.
 *  flags    0; receivers ignore bits they do not know.
 *  length   payload bytes that follow the header.
 *  id       MSG_DATA/MSG_ACK: the message id the daemon gave the broadcast.
 *           Control frames: a request id chosen by the client and echoed in
 *           every reply frame, so that pipelined requests can be matched.
 *
 * A receiver drops the connection on an unknown version, an unknown type or
 * a length above its limit, before it reads any of the payload.
 *
 * Payload layouts below are given as sequences of fields in network byte
 * order with no padding; u8/u16/u32/u64 are unsigned integers of that width.
 */
#ifndef FANOUT_PROTO_H
#define FANOUT_PROTO_H

#include <stdint.h>

#define FANOUT_PROTO_VERSION	1
#define FANOUT_HDR_LEN		16

/* Hard cap on max_message_bytes: bounds every buffer the daemon allocates. */
#define FANOUT_MESSAGE_MAX	(16 * 1024 * 1024)
/* Largest payload of any frame: a CTL_SEND carrying the largest message. */
#define FANOUT_PAYLOAD_MAX	(FANOUT_MESSAGE_MAX + CTL_SEND_HDR_LEN)
#define FANOUT_WORKERS_MAX	1024

enum msg_type {
	/* daemon <-> worker (TCP) */
	MSG_DATA = 1,		/* d->w  payload: the message bytes */
	MSG_ACK = 2,		/* w->d  payload: ack (below) */

	/* fanoutctl <-> daemon (Unix stream socket) */
	CTL_SEND = 16,		/* c->d  payload: send request (below) */
	CTL_STATUS = 17,	/* c->d  payload: none */
	CTL_WORKER = 18,	/* d->c  payload: worker record (below) */
	CTL_END = 19,		/* d->c  last frame of a reply: end record */
};

/*
 * MSG_ACK payload:
 *	u32 status	0: handled.  Later: a handler's exit status.
 */
#define MSG_ACK_LEN		4

/*
 * CTL_SEND payload:
 *	u32 timeout_ms	0: the daemon's ack_timeout_ms; otherwise the smaller
 *			of the two
 *	... message	the rest of the payload, 0..max_message_bytes bytes
 */
#define CTL_SEND_HDR_LEN	4

/*
 * CTL_WORKER payload, one per worker in reply to CTL_SEND or CTL_STATUS:
 *	u32 index	worker index, 0..workers-1
 *	u32 pid		0 if no process
 *	u16 port
 *	u8  state	enum worker_state
 *	u8  outcome	enum ack_outcome (CTL_SEND replies; 0 for CTL_STATUS)
 *	u32 rtt_us	send to ack, microseconds (acked outcomes only)
 *	u64 acked	messages this worker has acknowledged since it started
 */
#define CTL_WORKER_LEN		24

/*
 * CTL_END payload, ends every reply:
 *	u32 result	enum ctl_result
 *	u32 acked	CTL_SEND: workers that acknowledged;
 *			CTL_STATUS: workers up
 *	u32 workers	CTL_SEND: workers the message was for;
 *			CTL_STATUS: the pool size
 *	u32 limit	CTL_RES_TOOBIG: max_message_bytes; CTL_SEND replies:
 *			the ack timeout applied, in ms; otherwise 0
 *	u64 msg_id	the message id given to the broadcast (CTL_SEND), or 0
 */
#define CTL_END_LEN		24

enum worker_state {
	W_DEAD = 0,		/* no process */
	W_STARTING,		/* spawned, waiting for READY=1 */
	W_READY,		/* READY=1 seen, TCP connect in progress */
	W_UP,			/* connected: takes messages */
	W_STOPPING,		/* SIGTERM sent, waiting for exit */
};
#define W_STATE_NAMES	{ "dead", "starting", "ready", "up", "stopping" }

enum ack_outcome {
	ACK_NONE = 0,		/* status reply: not a send */
	ACK_OK,			/* acknowledged */
	ACK_TIMEOUT,		/* no ack before the deadline */
	ACK_DOWN,		/* worker not connected, or the link was lost */
	ACK_SHUTDOWN,		/* daemon stopping, worker exited first */
	ACK_FULL,		/* worker's output queue full: not sent */
};
#define ACK_OUTCOME_NAMES \
	{ "none", "acked", "timeout", "down", "shutdown", "full" }

enum ctl_result {
	CTL_RES_OK = 0,		/* done; for CTL_SEND: every worker acked */
	CTL_RES_PARTIAL,	/* CTL_SEND delivered, some worker did not ack */
	CTL_RES_TOOBIG,		/* message larger than max_message_bytes */
	CTL_RES_BADFRAME,	/* malformed frame: connection closed */
	CTL_RES_BADTYPE,	/* unknown request type: connection closed */
	CTL_RES_SHUTDOWN,	/* daemon stopping: request refused */
	CTL_RES_BUSY,		/* too many control connections */
};
#define CTL_RESULT_NAMES { \
	"ok", \
	"some workers did not acknowledge", \
	"message larger than max_message_bytes", \
	"malformed request", \
	"unknown request type", \
	"daemon is shutting down", \
	"too many control connections", \
}

#endif /* FANOUT_PROTO_H */
