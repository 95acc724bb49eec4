/* SPDX-License-Identifier: MIT */
/*
 * The fanout wire protocol, version FANOUT_PROTO_VERSION: the only file a
 * third-party peer needs.  One framing for every fanout socket: the daemon's
 * TCP links to its workers and the control Unix socket that fanoutctl talks
 * to.
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

#define FANOUT_PROTO_VERSION	7	/* 7: oldest_ms in CTL_WORKER;
					 * 6: remote workers in CTL_WORKER;
					 * 5: spool, queue requests;
					 * 4: worker link handshake, reload;
					 * 3: handler results; 2: supervision */
#define FANOUT_HDR_LEN		16

/* Hard cap on max_message_bytes: bounds every buffer the daemon allocates. */
#define FANOUT_MESSAGE_MAX	(16 * 1024 * 1024)
/* Largest payload of any frame: a CTL_SEND carrying the largest message. */
#define FANOUT_PAYLOAD_MAX	(FANOUT_MESSAGE_MAX + CTL_SEND_LEN)
#define FANOUT_WORKERS_MAX	1024
/* Longest version string in a CTL_DAEMON record. */
#define FANOUT_VERSION_MAX	32
/* Longest reason a failed handler gives (the first line of its stderr, or
 * the text of a pipe handler's answer), in MSG_ACK and CTL_WORKER tails. */
#define FANOUT_REASON_MAX	200

enum msg_type {
	/* daemon <-> worker (TCP) */
	MSG_DATA = 1,		/* d->w  payload: the message bytes */
	MSG_ACK = 2,		/* w->d  payload: ack (below) */
	MSG_AUTH_HELLO = 3,	/* d->w  handshake: the daemon's nonce */
	MSG_AUTH_CHALLENGE = 4,	/* w->d  handshake: worker nonce and proof */
	MSG_AUTH_PROOF = 5,	/* d->w  handshake: the daemon's proof */

	/* fanoutctl <-> daemon (Unix stream socket) */
	CTL_SEND = 16,		/* c->d  payload: send request (below) */
	CTL_STATUS = 17,	/* c->d  payload: none */
	CTL_WORKER = 18,	/* d->c  payload: worker record (below) */
	CTL_END = 19,		/* d->c  last frame of a reply: end record */
	CTL_DAEMON = 20,	/* d->c  status replies: daemon record */
	CTL_STATS = 21,		/* c->d  payload: none; a status reply with
				 * a CTL_HIST after each CTL_WORKER */
	CTL_HIST = 22,		/* d->c  stats replies: counters (below) */
	CTL_RELOAD = 23,	/* c->d  payload: none; reload the
				 * configuration, reply once it is done */
	CTL_CHANGE = 24,	/* d->c  reload replies: one per change
				 * (below) */
	CTL_QUEUE = 25,		/* c->d  payload: queue request (below) */
	CTL_QSTAT = 26,		/* d->c  queue replies: one per worker
				 * (below) */
};

/*
 * The worker link handshake.  Every TCP connection to a worker starts with
 * it; nothing else may be sent on the connection before it is done.
 *
 * The secret.  For each worker process it spawns, fanoutd draws a fresh
 * AUTH_KEY_LEN-byte key K (getrandom) and hands it over through an
 * inherited pipe: the worker is started with --secret-fd N, reads exactly
 * AUTH_KEY_LEN bytes from descriptor N up to end of file, and closes N
 * before doing anything else (the handlers it runs never see it).  K is in
 * no argv and no environment, and never on the wire.  A worker restarted
 * gets a new K; a reconnect to the same process uses the same K.
 *
 * The exchange: three frames, each with the usual 16-byte header (version
 * FANOUT_PROTO_VERSION, flags 0, id 0) and a fixed-length payload.
 *
 *	fanoutd (connects)                              worker (listens)
 *	   | MSG_AUTH_HELLO      Nd                          |
 *	   |---------------------------------------------->  |
 *	   | MSG_AUTH_CHALLENGE  Nw, MACw                    |
 *	   |  <----------------------------------------------|
 *	   | MSG_AUTH_PROOF      MACd     (then MSG_DATA...) |
 *	   |---------------------------------------------->  |
 *
 * MSG_AUTH_HELLO, 48 bytes on the wire (with version 4):
 *  0       1       2               4                               8
 *  +-------+-------+---------------+-------------------------------+
 *  | 0x04  | 0x03  |    0x0000     |          0x00000020           |
 *  +-------+-------+---------------+-------------------------------+
 *  |                  0x0000000000000000 (id)                      |
 *  +---------------------------------------------------------------+
 *  |  Nd: 32 random bytes, the daemon's nonce          (16..47)    |
 *  +---------------------------------------------------------------+
 *
 * MSG_AUTH_CHALLENGE, 80 bytes:
 *  +-------+-------+---------------+-------------------------------+
 *  | 0x04  | 0x04  |    0x0000     |          0x00000040           |
 *  +-------+-------+---------------+-------------------------------+
 *  |                  0x0000000000000000 (id)                      |
 *  +---------------------------------------------------------------+
 *  |  Nw: 32 random bytes, the worker's nonce          (16..47)    |
 *  +---------------------------------------------------------------+
 *  |  MACw: 32 bytes                                   (48..79)    |
 *  +---------------------------------------------------------------+
 *
 * MSG_AUTH_PROOF, 48 bytes:
 *  +-------+-------+---------------+-------------------------------+
 *  | 0x04  | 0x05  |    0x0000     |          0x00000020           |
 *  +-------+-------+---------------+-------------------------------+
 *  |                  0x0000000000000000 (id)                      |
 *  +---------------------------------------------------------------+
 *  |  MACd: 32 bytes                                   (16..47)    |
 *  +---------------------------------------------------------------+
 *
 * The proofs are HMAC-SHA-512-256 (HMAC with SHA-512, the first 32 bytes
 * of its output: libsodium's crypto_auth) keyed with K over a 16-byte
 * ASCII label, which differs by direction, and both nonces:
 *	MACw = HMAC-SHA-512-256(K, "fanout-auth w->d" || Nd || Nw)
 *	MACd = HMAC-SHA-512-256(K, "fanout-auth d->w" || Nd || Nw)
 * The labels keep a proof from being reflected back in the other
 * direction; the fresh nonce of each side keeps an old exchange from being
 * replayed.  Proofs are compared in constant time.
 *
 * The rules.  A worker answers the one MSG_AUTH_HELLO with a fresh Nw, then
 * takes MSG_DATA only after a valid MSG_AUTH_PROOF.  Any other frame or
 * length, a wrong proof, or the deadline (AUTH_DEADLINE_MS) passing first
 * ends the connection.  fanoutd checks MACw before it sends MACd or any
 * message: a process that is not its worker (another program on the port)
 * learns nothing and gets nothing.  fanoutd may send MSG_DATA right behind its
 * proof.  A worker serves one authenticated link: a newer one replaces the
 * older, which it closes (fanoutd reconnecting after losing a link).
 */
#define AUTH_KEY_LEN		32	/* crypto_auth_KEYBYTES */
#define AUTH_NONCE_LEN		32
#define AUTH_MAC_LEN		32	/* crypto_auth_BYTES */
#define AUTH_LABEL_W2D		"fanout-auth w->d"
#define AUTH_LABEL_D2W		"fanout-auth d->w"
#define AUTH_LABEL_LEN		16
#define AUTH_HELLO_LEN		AUTH_NONCE_LEN
#define AUTH_CHALLENGE_LEN	(AUTH_NONCE_LEN + AUTH_MAC_LEN)
#define AUTH_PROOF_LEN		AUTH_MAC_LEN
/* The longest payload a connection may send before it is authenticated. */
#define AUTH_PAYLOAD_MAX	AUTH_CHALLENGE_LEN
/* A worker closes a connection not authenticated within this, by default;
 * fanoutd passes its auth_timeout_ms as --auth-timeout. */
#define AUTH_DEADLINE_MS	2000

/*
 * Starting the pool (worker_start = "fork").  Loading fanout-worker and its
 * libraries costs more than everything else a worker does before READY=1,
 * so at start fanoutd runs worker_path once, as
 *
 *	fanout-worker --pool 000...0004 [the options every worker gets]
 *
 * with descriptor 3 a pipe back to fanoutd and descriptor 4 a sealed memfd
 * holding one struct pool_record per worker, in order.  For each record the
 * pool process forks a worker with CLONE_PARENT (fanoutd's child, reaped
 * and watched there, as if fanoutd had started it) and writes to 3 one
 * int32_t: the worker's pid, or -errno.  It wipes each record from its
 * memory before the next fork, so a worker holds its own key and no other;
 * the worker closes 3 and 4 first thing.  At end of file the pool process
 * exits 0.  Restarts, and worker_start = "exec", run worker_path once per
 * worker with --index, --port and --secret-fd instead.
 */
#define POOL_RESULTS_FD		3
#define POOL_RECORDS_FD		4
/* FD is written with leading zeros to this width: each worker writes
 * "--index I --port P" over "--pool FD" in its command line, for ps. */
#define POOL_FD_WIDTH		25
#define POOL_NOTIFY_MAX		108	/* NOTIFY_NAME_MAX */
struct pool_record {
	uint32_t	index;
	uint16_t	port;
	uint16_t	pad;		/* 0 */
	uint8_t		key[AUTH_KEY_LEN];
	char		notify[POOL_NOTIFY_MAX];	/* NOTIFY_SOCKET, NUL ended */
};

/*
 * Payload layouts.  Each is a field list, F(type, name), in wire order;
 * payload.h turns every list into a struct, its length and one encoder and
 * one decoder, so a length is never written down twice.
 */

/*
 * MSG_DATA id: the message id.  Ids never repeat within one fanoutd
 * instance and grow in the order the messages were accepted; a resend
 * after a lost link carries the same id, so a worker that has handled an id
 * acks it again without handling it twice.
 *
 * MSG_ACK payload, then the reason (0..FANOUT_REASON_MAX bytes, no NUL,
 * only when status is not 0):
 *	status		the handler's result: enum handler_status below
 */
#define MSG_ACK_FIELDS(F) \
	F(u32, status)

/*
 * A handler's result, in ranges, as MSG_ACK and CTL_WORKER carry it:
 *	0		success (or no handler: the message was received)
 *	1..255		the handler exited with this status
 *	256 + N		the handler was killed by signal N (1..127)
 *	512..767	the worker gave up on the handler, see below
 */
enum handler_status {
	HS_OK = 0,
	HS_SIGNAL_BASE = 0x100,	/* + the signal number */
	HS_TIMEOUT = 0x200,	/* ran past handler_timeout_ms: killed */
	HS_NOSTART,		/* could not be started (exec failed) */
	HS_LOST,		/* pipe handler ended before answering it */
	HS_UNFRAMEABLE,		/* lines framing: the message has a newline */
	HS_BADANSWER,		/* pipe handler's answer was not ok/0..255 */
};
#define HS_IS_EXIT(s)		((s) >= 1 && (s) <= 255)
#define HS_IS_SIGNAL(s)		((s) > HS_SIGNAL_BASE && (s) < HS_SIGNAL_BASE + 128)
#define HS_NAMES_FROM_TIMEOUT \
	{ "timeout", "not-started", "handler-lost", "unframeable", \
	  "bad-answer" }

/*
 * CTL_SEND payload, then the message itself (0..max_message_bytes bytes):
 *	timeout_ms	0: the daemon's ack_timeout_ms; otherwise the smaller
 *			of the two
 *	flags		CTL_SEND_WAIT, CTL_SEND_BRIEF; unknown bits are
 *			ignored
 */
#define CTL_SEND_FIELDS(F) \
	F(u32, timeout_ms) \
	F(u32, flags)
/* Hold the reply until every worker acked, queued ones included, or the
 * timeout passed; without it a worker known to be away is "queued" at once. */
#define CTL_SEND_WAIT		0x1
/* CTL_WORKER records only for the workers that did not ack: a stream of
 * broadcasts that all succeed then costs one CTL_END each, not N+1 frames. */
#define CTL_SEND_BRIEF		0x2

/*
 * CTL_WORKER payload, one per worker in reply to CTL_SEND or CTL_STATUS:
 *	index		worker index, 0..workers-1
 *	pid		0 if no process
 *	port
 *	state		enum wire_state
 *	outcome		enum ack_outcome (CTL_SEND replies; 0 for CTL_STATUS)
 *	rtt_us		accepted to acked, microseconds (ACK_OK only):
 *			the wait in the queue included
 *	acked		messages this worker slot has acknowledged in all
 *	restarts	processes started after the first one
 *	state_ms	time in the current state, milliseconds
 *	queued		messages waiting for this worker's ack
 *	queued_bytes	their size
 *	last_rtt_us	accepted to acked of the last ack, microseconds;
 *			0: none yet
 *	next_try_ms	WS_BACKOFF: milliseconds until the next try
 *	exit_kind	enum worker_exit: why the last process or link ended
 *	exit_code	WX_EXITED: exit status; WX_KILLED, WX_STALLED: signal
 *	name_len	0: a local worker; 1..FANOUT_NAME_MAX: a remote worker
 *			(issue 11), whose name comes first in the tail
 *	status		ACK_FAILED: the handler's result (enum handler_status);
 *			CTL_STATUS: the last failure's, 0 if none
 *	failed		messages this worker slot's handler failed, of acked
 *	oldest_ms	how long the oldest message waiting for this worker's
 *			ack has waited, milliseconds, at least 1; 0: none
 *			waits, or (a remote worker) its age is not known
 *
 * then the name (name_len bytes, remote workers only), then the reason
 * (0..FANOUT_REASON_MAX bytes): the handler's for ACK_FAILED; in CTL_STATUS
 * replies, the last failure's.
 *
 * A remote worker's record (version 6): index is its place in
 * remote_workers, pid and port are 0, state is WS_PULLING, WS_MISSING or
 * WS_DOWN (fanoutd has no connection to the broker); queued is what its
 * consumer holds (pending and unacknowledged, as the broker last said, at
 * most REMOTE_POLL_MS ago); state_ms, restarts and queued_bytes are 0;
 * acked and failed count its receipts, last_rtt_us is the last one's.
 * Status replies end with a record per consumer in the stream that is not
 * in remote_workers: index CTL_WORKER_UNLISTED, state WS_UNLISTED, its
 * name, queued what its consumer holds (not in CTL_STATS replies).  In
 * CTL_STATS replies each remote record is followed by its CTL_HIST
 * (index: its place in remote_workers), as a local one is.
 * Outcomes for a remote worker: ACK_OK and ACK_FAILED from its receipt;
 * ACK_QUEUED, the broker stored it (a PubAck) and no receipt came in time;
 * ACK_FULL, the broker refused it for that worker's bound (JetStream error
 * 10077); ACK_DOWN, the broker did not confirm storing it in time, or
 * fanoutd is not connected to the broker.
 */
#define CTL_WORKER_UNLISTED	0xffffffffU
#define CTL_WORKER_FIELDS(F) \
	F(u32, index) \
	F(u32, pid) \
	F(u16, port) \
	F(u8, state) \
	F(u8, outcome) \
	F(u32, rtt_us) \
	F(u64, acked) \
	F(u32, restarts) \
	F(u64, state_ms) \
	F(u32, queued) \
	F(u64, queued_bytes) \
	F(u32, last_rtt_us) \
	F(u32, next_try_ms) \
	F(u8, exit_kind) \
	F(u8, exit_code) \
	F(u16, name_len) \
	F(u32, status) \
	F(u64, failed) \
	F(u64, oldest_ms)

/*
 * CTL_DAEMON payload, once per CTL_STATUS reply before CTL_END, then the
 * version string (at most FANOUT_VERSION_MAX bytes, no NUL):
 *	uptime_ms	since fanoutd started
 *	accepted	messages accepted for broadcast since it started
 *	pid		fanoutd's own
 *	degraded_ms	0, or how long no worker has been up (once that is
 *			longer than degraded_timeout_ms)
 *	spool_bytes	what the spool holds, as spool_max_bytes counts it
 *	spool_max_bytes	0: no spool (spool = false)
 */
#define CTL_DAEMON_FIELDS(F) \
	F(u64, uptime_ms) \
	F(u64, accepted) \
	F(u32, pid) \
	F(u32, degraded_ms) \
	F(u64, spool_bytes) \
	F(u64, spool_max_bytes)

/*
 * CTL_END payload, ends every reply:
 *	result		enum ctl_result
 *	acked		CTL_SEND: workers that acknowledged;
 *			CTL_STATUS, CTL_RELOAD: workers up (CTL_STATUS:
 *			remote workers pulling included)
 *	workers		CTL_SEND: workers the message was for;
 *			CTL_STATUS: the pool size (retiring workers and
 *			remote workers included); CTL_RELOAD: the new
 *			local pool size
 *	limit		CTL_RES_TOOBIG: max_message_bytes; CTL_SEND replies:
 *			the ack timeout applied, in ms; otherwise 0
 *	msg_id		the message id given to the broadcast (CTL_SEND), or 0
 *	queued		CTL_SEND: workers with outcome ACK_QUEUED
 *	failed		CTL_SEND: workers with outcome ACK_FAILED
 */
#define CTL_END_FIELDS(F) \
	F(u32, result) \
	F(u32, acked) \
	F(u32, workers) \
	F(u32, limit) \
	F(u64, msg_id) \
	F(u32, queued) \
	F(u32, failed)

/*
 * CTL_HIST payload, in reply to CTL_STATS, one per worker after its
 * CTL_WORKER:
 *	index		worker index
 *	refused		messages refused for this worker: its queue was full
 *	rtt_count	acks counted in the histogram (all acks)
 *	rtt_sum_us	their round trips added up, microseconds
 * then FANOUT_HIST_BUCKETS u64 counts: acks whose round trip (accepted to
 * acked, microseconds) was at most the bucket's bound and above the one
 * before; the last bucket has no bound.
 */
#define CTL_HIST_FIELDS(F) \
	F(u32, index) \
	F(u64, refused) \
	F(u64, rtt_count) \
	F(u64, rtt_sum_us)
#define FANOUT_HIST_BOUNDS_US { \
	50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, \
	250000, 500000, 1000000, 2500000, 5000000, 10000000 }
#define FANOUT_HIST_BUCKETS	18	/* the bounds, then one without */

/*
 * CTL_CHANGE payload, in reply to CTL_RELOAD, one per change or problem,
 * then its text (0..FANOUT_CHANGE_TEXT_MAX bytes, no NUL; for
 * RC_ERROR "file:line: setting: problem"):
 *	kind		enum reload_change
 *	worker		the worker index it is about, or CTL_CHANGE_NONE
 */
#define CTL_CHANGE_FIELDS(F) \
	F(u32, kind) \
	F(u32, worker)
#define CTL_CHANGE_NONE		0xffffffffU
#define FANOUT_CHANGE_TEXT_MAX	400

/*
 * CTL_QUEUE payload:
 *	op		CTL_QUEUE_LIST: a CTL_QSTAT per worker that is
 *			configured or has messages in the spool;
 *			CTL_QUEUE_DROP: drop what is queued for worker and
 *			not yet written to it; one CTL_QSTAT says what went
 *	worker		CTL_QUEUE_DROP: the worker index
 * The CTL_END: result CTL_RES_OK, or CTL_RES_NOWORKER (drop: the index is
 * not configured and has nothing in the spool); acked and workers as for
 * CTL_STATUS.
 */
#define CTL_QUEUE_FIELDS(F) \
	F(u32, op) \
	F(u32, worker)
#define CTL_QUEUE_LIST		0
#define CTL_QUEUE_DROP		1

/*
 * CTL_QSTAT payload:
 *	worker		the worker index
 *	flags		CTL_QSTAT_CONFIGURED: in the pool; without it, the
 *			messages are in the spool only
 *	state		enum wire_state (configured workers)
 *	messages	queued for it, not acknowledged (drop: dropped)
 *	bytes		their size
 *	oldest_ms	how long the oldest has waited; 0: none
 *	spooled		of messages, those on disk (drop: removed from it)
 */
#define CTL_QSTAT_FIELDS(F) \
	F(u32, worker) \
	F(u16, flags) \
	F(u16, state) \
	F(u64, messages) \
	F(u64, bytes) \
	F(u64, oldest_ms) \
	F(u64, spooled)
#define CTL_QSTAT_CONFIGURED	0x1

enum reload_change {
	RC_ERROR = 0,		/* the new file is invalid: nothing changed */
	RC_ADDED,		/* a worker added, and up */
	RC_REMOVED,		/* a worker drained, stopped and removed */
	RC_RESTARTED,		/* a worker restarted with new settings */
	RC_SET,			/* a setting changed, in effect now */
	RC_KEPT,		/* a setting changed that needs a restart of
				 * fanoutd: the old value stays */
	RC_FAILED,		/* an added or restarted worker did not come
				 * up; it is retried like any failed worker */
	RC_UNCHANGED,		/* the file is valid and changes nothing */
};
#define RELOAD_CHANGE_NAMES \
	{ "error", "added", "removed", "restarted", "set", "kept", \
	  "failed", "unchanged" }

/* Lengths, computed from the field lists. */
#define PROTO_LEN_u8		1
#define PROTO_LEN_u16		2
#define PROTO_LEN_u32		4
#define PROTO_LEN_u64		8
#define PROTO_FIELD_LEN(t, n)	+ PROTO_LEN_##t
#define MSG_ACK_LEN		(0 MSG_ACK_FIELDS(PROTO_FIELD_LEN))
#define CTL_SEND_LEN		(0 CTL_SEND_FIELDS(PROTO_FIELD_LEN))
#define CTL_WORKER_LEN		(0 CTL_WORKER_FIELDS(PROTO_FIELD_LEN))
#define CTL_DAEMON_LEN		(0 CTL_DAEMON_FIELDS(PROTO_FIELD_LEN))
#define CTL_END_LEN		(0 CTL_END_FIELDS(PROTO_FIELD_LEN))
#define CTL_HIST_LEN		(0 CTL_HIST_FIELDS(PROTO_FIELD_LEN))
#define CTL_HIST_TAIL_LEN	(FANOUT_HIST_BUCKETS * 8)
#define CTL_CHANGE_LEN		(0 CTL_CHANGE_FIELDS(PROTO_FIELD_LEN))
#define CTL_QUEUE_LEN		(0 CTL_QUEUE_FIELDS(PROTO_FIELD_LEN))
#define CTL_QSTAT_LEN		(0 CTL_QSTAT_FIELDS(PROTO_FIELD_LEN))

/* A worker's state as the wire shows it; fanoutd maps its own onto these,
 * so that a new internal state never changes the protocol by accident. */
enum wire_state {
	WS_DOWN = 0,		/* no process, none scheduled (shutdown) */
	WS_STARTING,		/* spawned or connecting, not yet up */
	WS_UP,			/* connected: takes messages */
	WS_BACKOFF,		/* failed; next try after next_try_ms */
	WS_STALLED,		/* stopped acking: being killed, restarts */
	WS_STOPPING,		/* SIGTERM sent, waiting for exit */
	WS_RETIRING,		/* removed by a reload: delivers what is
				 * queued for it, then stops */
	WS_RESTARTING,		/* restarting with new settings (reload) */
	/* remote workers (version 6) */
	WS_PULLING,		/* its consumer has a pull request waiting */
	WS_MISSING,		/* no pull request: the worker is not
				 * running, or has never connected */
	WS_UNLISTED,		/* a consumer in the stream whose name is not
				 * in remote_workers: shown, never deleted */
};
#define WIRE_STATE_NAMES \
	{ "down", "starting", "up", "backoff", "stalled", "stopping", \
	  "retiring", "restarting", "pulling", "missing", "unlisted" }

/* Why a worker's last process or link ended. */
enum worker_exit {
	WX_NONE = 0,		/* nothing has ended yet */
	WX_EXITED,		/* the process exited: exit_code is its status */
	WX_KILLED,		/* killed by signal exit_code */
	WX_STALLED,		/* stalled, then killed by signal exit_code */
	WX_LINK,		/* the link was lost; the process lived on */
	WX_STARTFAIL,		/* not ready or not connected in time */
};

enum ack_outcome {
	ACK_NONE = 0,		/* status reply: not a send */
	ACK_OK,			/* acknowledged */
	ACK_TIMEOUT,		/* protocol 1 only; not sent any more */
	ACK_DOWN,		/* remote workers only (protocol 1 had it for
				 * local ones): the broker did not store it */
	ACK_SHUTDOWN,		/* daemon stopping: the message is dropped */
	ACK_FULL,		/* worker's queue full: refused for it */
	ACK_QUEUED,		/* not acked yet, kept: will be delivered */
	ACK_FAILED,		/* delivered, its handler failed: not retried */
	ACK_REMOVED,		/* its worker was removed by a reload before
				 * it acked: dropped for that worker */
};
#define ACK_OUTCOME_NAMES \
	{ "none", "acked", "timeout", "down", "shutdown", "full", "queued", \
	  "failed", "removed" }

enum ctl_result {
	CTL_RES_OK = 0,		/* done; for CTL_SEND: every worker acked */
	CTL_RES_PARTIAL,	/* CTL_SEND delivered, some worker did not ack
				 * or its handler failed; CTL_RELOAD done,
				 * some worker did not come up (RC_FAILED) */
	CTL_RES_TOOBIG,		/* message larger than max_message_bytes */
	CTL_RES_BADFRAME,	/* malformed frame: connection closed */
	CTL_RES_BADTYPE,	/* unknown request type: connection closed */
	CTL_RES_SHUTDOWN,	/* daemon stopping: request refused */
	CTL_RES_BUSY,		/* too many control connections */
	CTL_RES_CONFIG,		/* CTL_RELOAD: the file is invalid (the
				 * RC_ERROR records say why); nothing
				 * changed */
	CTL_RES_RELOADING,	/* CTL_RELOAD: fanoutd is starting, or
				 * another reload is under way */
	CTL_RES_NOWORKER,	/* CTL_QUEUE_DROP: no such worker, and
				 * nothing queued for it */
};
#define CTL_RESULT_NAMES { \
	"ok", \
	"some workers did not acknowledge", \
	"message larger than max_message_bytes", \
	"malformed request", \
	"unknown request type", \
	"daemon is shutting down", \
	"too many control connections", \
	"configuration invalid; nothing changed", \
	"busy: fanoutd is starting or already reloading; try again", \
	"no such worker, and nothing queued for it", \
}

/*
 * Remote workers (issue 11): messages and receipts through a NATS JetStream
 * broker, not the TCP link above.  PREFIX is nats_subject_prefix (default
 * "fanout"), NAME a remote worker's name (letters, digits, '-', '_'; at
 * most 64 bytes).
 *
 *	PREFIX.w.NAME	a message for worker NAME, stored in the stream
 *			(default "FANOUT") and read by its durable pull
 *			consumer, also named NAME.  One header:
 *			  Nats-Msg-Id	for the broker's dedupe window:
 *					NAME-INSTANCE-ID, INSTANCE unique to
 *					one fanoutd run (ids restart without
 *					a spool), ID the fanout message id,
 *					decimal, after the last '-': the
 *					worker reads it there.  One header,
 *					not two, for the broker to store and
 *					the worker to parse.
 *			The data: the message, as a local handler gets it.
 *			fanoutd publishes it with a reply subject in its own
 *			inbox and reads the broker's PubAck there: stored,
 *			or refused (10077: NAME's queue is at its bound).
 *			fanoutd creates the stream (subjects PREFIX.w.*,
 *			WorkQueue retention, file storage, MaxMsgsPerSubject
 *			queue_max_messages with DiscardNewPerSubject) and
 *			each consumer (AckExplicit, MaxAckPending 1, AckWait
 *			remote_ack_wait_ms); the worker only binds to it.
 *	PREFIX.r.NAME.SEQ.STATUS.ID
 *			a receipt: worker NAME has handled one message (its
 *			handler finished, or the message was refused).
 *			Published (core NATS) before the message is acked;
 *			sent again if the message is redelivered after a
 *			crash, so at least once.  In the subject, decimal:
 *			  SEQ		the message's stream sequence: what the
 *					worker dedupes on
 *			  STATUS	the handler's result: enum
 *					handler_status (0: ok)
 *			  ID		the message's fanout id (0 if its
 *					Nats-Msg-Id had none)
 *			No headers: fanoutd reads a receipt without parsing
 *			any, and the broker's permissions on PREFIX.r.NAME.>
 *			say who may send it.  The data: the reason
 *			(0..FANOUT_REASON_MAX bytes, no NUL), the handler's
 *			own words for a failure.
 */
#define FANOUT_NAME_MAX		64	/* a remote worker's name */
#define FANOUT_REMOTE_MAX	256	/* remote workers, at most */
#define FANOUT_NATS_PREFIX	"fanout"
#define FANOUT_NATS_STREAM	"FANOUT"
#define FANOUT_HDR_MSGID	"Nats-Msg-Id"

#endif /* FANOUT_PROTO_H */
