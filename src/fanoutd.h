/* SPDX-License-Identifier: MIT */
/*
 * fanoutd's private structures and the prototypes of its modules, grouped by
 * the file that defines them.  The modules are tightly coupled; one header
 * keeps that coupling in view.
 *
 * Ownership: a worker slot (struct worker, pool.c) owns its process, its
 * link (struct link, reached through link_ops; peer.c is the TCP one) and
 * its queue (struct wqueue, queue.c).  The queue outlives links and
 * processes: only an ack takes a message off it.  Lower modules report
 * events up through the pool_link_* and bcast_* functions; fanoutd.c wires
 * them together.
 */
#ifndef FANOUT_FANOUTD_H
#define FANOUT_FANOUTD_H

#include <sys/types.h>
#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "auth.h"
#include "conf.h"
#include "frame.h"
#include "notify.h"
#include "payload.h"
#include "proto.h"
#include "remote.h"

/* Of control_max_connections, the slots only root and fanoutd's own uid
 * may take: any other uid holds at most half of the slots, and all of them
 * together all but these. */
#define CTL_CONNS_RESERVED(max)	((max) / 8 < 2 ? 2 : (max) / 8)
/* With no descriptor to accept into (EMFILE, ENFILE), accepting pauses
 * until a descriptor is closed, or at most this long. */
#define CTL_ACCEPT_RETRY_USEC	(250 * 1000)
/* Broadcasts one control client may have unanswered; past this the daemon
 * stops reading from it (backpressure, not an error). */
#define CTL_INFLIGHT_MAX	64
/* The first restart or reconnect delay; it doubles up to
 * restart_max_delay_ms with each failure in a row. */
#define RESTART_DELAY_MIN_MS	100

/*
 * One broadcast message, encoded once as a MSG_DATA frame and shared by the
 * queue of every worker it goes to.
 */
struct msg {
	unsigned	 refs;
	uint64_t	 id;
	uint64_t	 accepted_usec;
	struct bcast	*b;		/* NULL once the broadcast is answered */
	size_t		 len;		/* of frame */
	uint8_t		 frame[];
};

/*
 * A worker's queue: a ring of the messages it has not acked, oldest first.
 * The first nsent were written on the current link and wait for their ack,
 * in order; the rest wait to be written.  Bounded by count and bytes.
 */
struct wqueue {
	struct msg	**ring;
	uint32_t	 cap;		/* a power of two */
	uint32_t	 head;
	uint32_t	 n;
	uint32_t	 nsent;
	size_t		 woff;		/* bytes of the first unsent one written */
	uint64_t	 bytes;		/* message bytes of all n */
	uint32_t	 max_n;
	uint64_t	 max_bytes;
};

struct worker;

/* A worker's link: how queued messages reach it and acks come back.  The
 * TCP link is peer.c's; a link reports pool_link_up, pool_link_lost and
 * bcast_acked, and never touches the process. */
struct link_ops {
	/* start connecting; the outcome is reported later */
	int	(*connect)(struct worker *);
	/* write what is queued and unsent, as far as the link takes it */
	void	(*flush)(struct worker *);
	/* drop the link; drain: handle acks already received first.  What
	 * was sent and not acked becomes unsent again. */
	void	(*close)(struct worker *, bool drain);
};

struct link {
	const struct link_ops *ops;
	int		 fd;
	uint32_t	 events;	/* in the links' epoll set (peer.c) */
	struct rbuf	 in;
	struct auth	 auth;		/* the handshake, first on every link */
	bool		 connected;	/* TCP is; up once auth is AUTH_DONE */
};

enum worker_state {
	W_DEAD = 0,		/* no process, none scheduled */
	W_STARTING,		/* spawned, waiting for READY=1 */
	W_CONNECTING,		/* process ready, link being set up */
	W_UP,			/* link up: takes messages */
	W_BACKOFF,		/* failed; retry when the timer fires */
	W_STALLED,		/* stopped acking: SIGTERM sent, will restart */
	W_RESTARTING,		/* could not be brought up: being stopped */
	W_STOPPING,		/* shutdown or removal: SIGTERM sent */
	W_REPLACING,		/* reload changed its settings: SIGTERM sent,
				 * respawned as soon as it exits */
};

/* Links tried to a process that said READY=1 before it counts as failed:
 * a worker closes a link whose handshake misses its deadline, and a slow
 * start (hundreds of workers, or valgrind) can make fanoutd miss it once. */
#define LINK_TRIES_MAX	3

enum worker_ev {
	WE_SPAWNED,		/* fork succeeded */
	WE_NOTIFIED,		/* READY=1 from the worker's own pid */
	WE_CONNECTED,		/* link established */
	WE_LINK_LOST,		/* connect failed, EOF, error or garbage */
	WE_EXITED,		/* process reaped */
	WE_TIMEOUT,		/* the state's timer fired */
	WE_STALL,		/* acks stopped with messages outstanding */
	WE_STOP,		/* daemon shutting down, or worker removed */
	WE_REPLACE,		/* restart with the current settings */
};

struct worker {
	struct fanoutd	*d;
	uint32_t	 index;
	uint16_t	 port;
	uint64_t	 serial;	/* never reused: tells apart the workers
					 * one index had over reloads */
	enum worker_state state;
	/* its place in the pool, which reloads change (reload.c) */
	bool		 member;	/* new broadcasts are for it */
	bool		 joining;	/* added by a reload, not up yet */
	bool		 retiring;	/* removed by a reload: drains, stops */
	bool		 replace;	/* restart due: its settings changed */
	bool		 draining;	/* replace is next: write nothing more */
	bool		 replacing;	/* replaced, not up again yet */
	uint64_t	 retire_usec;	/* when it was removed */
	uint64_t	 state_usec;	/* when it entered state */
	/* the process (pool.c) */
	pid_t		 pid;
	sd_event_source	*child_src;
	sd_event_source	*notify_src;
	sd_event_source	*timer_src;	/* the current state's deadline */
	int		 notify_fd;
	/* this process's key for the link handshake, fresh at each spawn */
	uint8_t		 secret[AUTH_KEY_LEN];
	uint32_t	 spawns;
	uint32_t	 failures;	/* in a row: sets the backoff */
	uint32_t	 link_tries;	/* W_CONNECTING: links tried so far */
	uint64_t	 up_usec;	/* when it last came up */
	uint64_t	 retry_usec;	/* W_BACKOFF: when it is tried again */
	uint8_t		 exit_kind;	/* enum worker_exit */
	uint8_t		 exit_code;
	char		 why[NOTIFY_STATUS_MAX];	/* its own words on a failure */
	/* the link and the queue */
	struct link	 link;
	struct wqueue	 q;
	uint64_t	 acked;
	uint64_t	 progress_usec;	/* last ack, or first send after idle */
	uint32_t	 last_rtt_us;
	uint64_t	 failed;	/* acks whose handler failed */
	uint64_t	 refused;	/* messages refused: queue full */
	uint64_t	 rtt_sum_us;	/* of every ack */
	uint64_t	 rtt_hist[FANOUT_HIST_BUCKETS];	/* proto.h's bounds */
	uint32_t	 last_status;	/* the last failure's handler status */
	uint8_t		 last_reason_len;
	char		 last_reason[FANOUT_REASON_MAX];
	bool		 dirty;		/* on d->dirty_workers */
	struct worker	*next_dirty;
};

struct bcast_res {
	uint8_t		 outcome;	/* enum ack_outcome; ACK_NONE: pending */
	bool		 member;	/* the broadcast is for this worker */
	uint8_t		 reason_len;
	uint16_t	 port;
	uint64_t	 serial;	/* the worker's, to know it is the same */
	uint32_t	 rtt_us;
	uint32_t	 status;	/* ACK_FAILED: the handler's result */
	bool		 stored;	/* remote: the broker has it */
	pid_t		 pid;
	char		*reason;	/* ACK_FAILED: the handler's words */
};

struct bcast {
	struct fanoutd	*d;
	struct msg	*m;
	struct ctl_conn	*c;		/* NULL if the client went away */
	uint64_t	 req_id;
	uint32_t	 timeout_ms;
	bool		 wait;		/* CTL_SEND_WAIT: wait for queued too */
	bool		 brief;		/* CTL_SEND_BRIEF: no records of acks */
	bool		 held;		/* answered, but a `queued' verdict is
					 * not on disk yet: waits for the
					 * commit (spooler.c) */
	uint64_t	 spool_batch;	/* the batch its last verdict was
					 * staged in; 0: none */
	sd_event_source	*timer;
	uint32_t	 nslots;	/* of res: the pool's slots then, and
					 * the remote workers after them */
	uint32_t	 nlocal;	/* the pool's slots, of nslots */
	uint32_t	 nworkers;	/* the members among them */
	uint32_t	 npending;
	uint32_t	 nacked;
	uint32_t	 nqueued;
	uint32_t	 nfailed;
	struct bcast	*prev, *next;	/* d->bcasts */
	struct bcast_res res[];
};

struct ctl_conn {
	struct fanoutd	*d;
	int		 fd;
	uid_t		 uid;		/* SO_PEERCRED, at accept */
	pid_t		 pid;
	uint64_t	 io_usec;	/* bytes last moved, either way */
	uint64_t	 frame_usec;	/* a partial frame's first bytes; 0: none */
	size_t		 mem;		/* buffers held, in d->ctl_mem */
	bool		 mem_wait;	/* not read: control buffers are full */
	sd_event_source	*io_src;
	sd_event_source	*resume_src;	/* reads buffered frames after a pause */
	struct rbuf	 in;
	struct wbuf	 out;
	uint32_t	 ninflight;
	bool		 paused;	/* not reading: too much in flight */
	bool		 out_blocked;	/* replies wait for EPOLLOUT */
	bool		 closing;	/* read no more; close once every
					 * request is answered and flushed */
	bool		 dirty;		/* on d->dirty_ctls */
	struct ctl_conn	*next_dirty;
	struct ctl_conn	*prev, *next;	/* d->ctls */
};

struct fanoutd {
	sd_event	*ev;
	struct fanout_conf conf;
	const char	*conf_path;
	uint64_t	 start_usec;
	/* Pointers, so that a worker's address never moves.  Index i holds
	 * worker i; retiring workers stay until those above them are gone. */
	struct worker	**workers;
	uint32_t	 nworkers;
	struct remote	*remote;	/* NULL: no nats_servers */
	uint32_t	 nremote;	/* remote workers, remote.c's */
	uint32_t	 workers_cap;
	uint64_t	 next_serial;
	struct reload	*reload;	/* under way, or NULL */
	bool		 reload_again;	/* SIGHUP during a reload */
	sd_event_source	*reload_src;	/* runs a reload from the loop */
	uint32_t	 nup;		/* workers in W_UP */
	uint32_t	 nalive;	/* workers with a process */
	uint64_t	 next_msg_id;
	uint64_t	 accepted;
	struct spool	*spool;		/* NULL: spool = false */
	uint64_t	 spool_batch;	/* the batch being staged, from 1 */
	uint32_t	 nheld;		/* broadcasts waiting for a commit */
	bool		 spool_failed;	/* a batch was lost: stopping */
	uint64_t	 spool_lost_batch;	/* which */
	struct bcast	*bcasts;	/* in flight, oldest first */
	struct bcast	*bcasts_tail;
	int		 ctl_fd;
	sd_event_source	*ctl_src;
	struct ctl_conn	*ctls;
	uint32_t	 nctls;
	size_t		 ctl_mem;	/* buffers of every control client */
	bool		 accept_paused;	/* out of descriptors: listener off */
	bool		 accept_starved;	/* and not one accepted since */
	sd_event_source	*accept_timer;	/* retries a paused accept */
	sd_event_source	*ctl_sweep;	/* idle and partial-frame deadlines */
	sd_event_source	*flush_src;	/* one write pass per loop turn */
	/* every worker link, in an epoll set of their own (peer.c) */
	sd_event_source	*links_src;
	sd_event_source	*tick_src;	/* stall and degraded checks */
	sd_event_source	*done_src;	/* moves shutdown on, from the loop */
	struct worker	*dirty_workers;
	struct ctl_conn	*dirty_ctls;
	sd_event_source	*drain_timer;	/* shutdown: in-flight broadcasts */
	sd_event_source	*stop_timer;
	uint64_t	 none_up_usec;	/* since when no worker is up; 0: some */
	bool		 degraded;
	bool		 ready;		/* READY=1 sent */
	bool		 stopping;
	bool		 workers_stopped;	/* pool_stop done */
	bool		 closing_ctls;	/* workers gone: closing clients */
	int		 exit_code;
};

/* The start of this loop iteration: per-message timestamps need no clock
 * call of their own (one per ack was 9% of the daemon's CPU). */
static inline uint64_t
loop_now(struct fanoutd *d)
{
	uint64_t usec = 0;

	(void)sd_event_now(d->ev, CLOCK_MONOTONIC, &usec);
	return usec;
}

/* fanoutd.c */
void	fanoutd_workers_changed(struct fanoutd *);
void	fanoutd_stop(struct fanoutd *, int exit_code);
void	fanoutd_check_done(struct fanoutd *);
void	fanoutd_schedule_flush(struct fanoutd *);

/* pool.c */
int	pool_start(struct fanoutd *);
/* A new slot at index d->nworkers, not started; NULL: out of memory. */
struct worker *pool_add(struct fanoutd *);
/* Frees the top slot (retired, dead and empty). */
void	pool_remove_top(struct fanoutd *);
int	worker_spawn(struct worker *);
/* Whether worker index would run differently under conf b than under a. */
bool	worker_settings_differ(const struct fanout_conf *a,
	    const struct fanout_conf *b, uint32_t index);
void	pool_stop(struct fanoutd *);
void	pool_tick(struct fanoutd *, uint64_t now);
void	pool_free(struct fanoutd *);
void	pool_link_up(struct worker *);
void	pool_link_lost(struct worker *, const char *why);
/* How long a stopping worker gets before SIGKILL, in microseconds. */
uint64_t pool_stop_usec(const struct fanoutd *);
void	worker_event(struct worker *, enum worker_ev);
/* Queue the worker's link for a write pass at the end of this loop turn. */
void	worker_kick(struct worker *);
void	worker_record(const struct worker *, uint64_t now,
	    struct ctl_worker *);
enum wire_state	worker_wire_state(const struct worker *);
const char *worker_state_name(enum worker_state);

/* peer.c: the TCP link */
extern const struct link_ops tcp_link_ops;
/* Closes the links' epoll set, once every link is closed. */
void	peer_free(struct fanoutd *);

/* queue.c */
void	queue_init(struct wqueue *, uint32_t max_n, uint64_t max_bytes);
/* A message with one reference, the caller's; NULL: out of memory. */
struct msg *msg_new(uint64_t id, uint64_t accepted_usec, const void *data,
	    size_t len);
/* -ENOBUFS when m does not fit the bounds, -ENOMEM */
int	queue_push(struct wqueue *, struct msg *);
/* Past the bounds too: for what the spool already holds.  -ENOMEM */
int	queue_push_any(struct wqueue *, struct msg *);
/* The index of the first message no byte of which is written yet. */
uint32_t queue_first_unsent(const struct wqueue *);
/* Takes message i (at or after queue_first_unsent) out; the caller owns
 * its ref. */
struct msg *queue_remove_at(struct wqueue *, uint32_t i);
struct msg *queue_at(const struct wqueue *, uint32_t i);
/* Takes the oldest message off (it was acked); the caller owns its ref. */
struct msg *queue_pop(struct wqueue *);
/* The link was lost: everything unacked is unsent again. */
void	queue_rewind(struct wqueue *);
/* Drops every message; returns how many there were. */
uint32_t queue_clear(struct wqueue *);
size_t	msg_payload_len(const struct msg *);
void	msg_unref(struct msg *);

/* bcast.c */
int	bcast_start(struct fanoutd *, struct ctl_conn *, uint64_t req_id,
	    const uint8_t *msg, size_t len, uint32_t timeout_ms,
	    uint32_t flags);
void	bcast_settle(struct bcast *, uint32_t index, uint8_t outcome);
/* A worker acked the oldest message of its queue with a handler status
 * (0: handled) and, for a failure, the handler's reason. */
void	bcast_acked(struct worker *, uint32_t status, const uint8_t *reason,
	    size_t reason_len);
/* A worker left W_UP: what waits on it needs no waiting. */
void	bcast_worker_away(struct worker *);
/* A worker is removed with messages still queued: they are lost for it. */
void	bcast_worker_removed(struct worker *);
void	bcast_detach_client(struct fanoutd *, struct ctl_conn *);
/* The batch held broadcasts waited for was committed, or lost: answer
 * them. */
void	bcast_release_held(struct fanoutd *);
/* Drops worker w's messages not yet written to it (fanoutctl queue
 * drop); *count, *first, *last: how many, which ids; *spooled: how many
 * of them left the spool. */
void	bcast_drop_unsent(struct worker *, uint32_t *count, uint32_t *spooled,
	    uint64_t *first, uint64_t *last);
void	bcast_abort_all(struct fanoutd *);
/* The bucket of proto.h's histogram a round trip falls in. */
unsigned hist_bucket(uint32_t rtt_us);
/* Remote worker j's verdict on m (remote.c), if m's broadcast is still
 * open and has none for it yet. */
void	bcast_remote_result(struct msg *m, uint32_t j, uint8_t outcome,
	    uint32_t status, const uint8_t *reason, size_t reason_len);
/* The broker stored m for remote worker j; missing: the worker is not
 * pulling, so the receipt will not come soon. */
void	bcast_remote_stored(struct msg *m, uint32_t j, bool missing);

/* spooler.c: what goes into the spool, and when */
/* Opens the spool if the configuration asks for it; the next message id
 * follows the spool's.  0, or -1 after logging why. */
int	spooler_open(struct fanoutd *);
/* Puts what the spool holds for worker index (UINT32_MAX: for every
 * configured worker) on its queue, in order, before anything new. */
int	spooler_load(struct fanoutd *, uint32_t index);
/* Stages m for w, for a `queued' verdict that is only true once
 * committed.  0 (also with no spool); -ENOSPC: the spool is full; any
 * other error: the spool failed and fanoutd is stopping. */
int	spooler_keep(struct worker *, struct msg *);
/* w acked m: off the disk too, if it is there (true: it was). */
bool	spooler_acked(struct worker *, const struct msg *);
/* How many messages the spool holds for worker index. */
uint64_t spooler_count(struct fanoutd *, uint32_t index);
/* Message id is about to be used: make sure it is reserved on disk. */
void	spooler_use_id(struct fanoutd *, uint64_t id);
/* Makes the staged batch durable, then answers the broadcasts held for
 * it; run at the end of every loop turn, before replies are written. */
void	spooler_commit(struct fanoutd *);
/* What is on disk for worker index: dropped (*count: how many). */
int	spooler_drop(struct fanoutd *, uint32_t index, uint64_t *count);
/* Commits what is staged and closes. */
void	spooler_close(struct fanoutd *);

/* reload.c */
/* Reads the configuration file again and applies it; c, if not NULL, gets
 * the reply once it is done.  0, or -EBUSY while another one is under way. */
int	reload_start(struct fanoutd *, struct ctl_conn *, uint64_t req_id);
/* Something a reload waits for may have happened: look, from the loop. */
void	reload_kick(struct fanoutd *);
void	reload_detach_client(struct fanoutd *, struct ctl_conn *);
/* Shutdown: answer the client with what was done so far. */
void	reload_abort(struct fanoutd *);
void	reload_free(struct fanoutd *);
/* Loads path into conf; the errors, one per line, into *errors (to free). */
int	reload_load_conf(const char *path, struct fanout_conf *, char **errors);

/* control.c */
int	control_start(struct fanoutd *);
void	control_close_listener(struct fanoutd *);
/* now: drop unsent replies instead of flushing them first */
void	control_close_all(struct fanoutd *, bool now);
void	control_reply_bcast(struct ctl_conn *, const struct bcast *);
/* One CTL_CHANGE record of a reload reply, and its end. */
void	control_reload_change(struct ctl_conn *, uint64_t req_id,
	    uint32_t kind, uint32_t worker, const char *text);
void	control_reload_end(struct ctl_conn *, uint64_t req_id,
	    uint32_t result);
void	control_bcast_done(struct ctl_conn *);
void	control_flush(struct ctl_conn *);
bool	control_idle(const struct fanoutd *);
/* A descriptor was closed: a paused accept may go on. */
void	control_fd_freed(struct fanoutd *);

/* fanoutd.c */
/* Descriptors the configuration needs at most. */
unsigned long fanoutd_fds_needed(const struct fanout_conf *);
/* A reload applied d->conf: raise the open file limit if need be. */
void	fanoutd_conf_changed(struct fanoutd *);

#endif /* FANOUT_FANOUTD_H */
