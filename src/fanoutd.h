/* SPDX-License-Identifier: MIT */
/*
 * fanoutd's private structures and the prototypes of its modules, grouped by
 * the file that defines them.  The modules are tightly coupled; one header
 * keeps that coupling in view.
 */
#ifndef FANOUT_FANOUTD_H
#define FANOUT_FANOUTD_H

#include <sys/types.h>
#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "conf.h"
#include "frame.h"
#include "notify.h"
#include "proto.h"

/* Control connections served at once; more are refused with CTL_RES_BUSY. */
#define CTL_CONNS_MAX		128
/* Broadcasts one control client may have unanswered; past this the daemon
 * stops reading from it (backpressure, not an error). */
#define CTL_INFLIGHT_MAX	64
/* Messages queued to one worker, unsent or unacknowledged.  A broadcast
 * that finds the queue full reports ACK_FULL for that worker. */
#define PEER_QUEUE_MAX		4096

/*
 * One broadcast message, encoded once as a MSG_DATA frame and shared by the
 * queue of every worker it goes to.
 */
struct msg {
	unsigned	 refs;
	uint64_t	 id;
	struct bcast	*b;		/* NULL once the broadcast is answered */
	size_t		 len;		/* of frame */
	uint8_t		 frame[];
};

/* A worker's output queue: a ring of messages, oldest first.  The first
 * nsent are written and wait for their ack, in order; the rest are unsent. */
struct outq {
	struct msg	**ring;
	uint32_t	 cap;		/* a power of two */
	uint32_t	 head;
	uint32_t	 n;
	uint32_t	 nsent;
	size_t		 woff;		/* bytes of the first unsent one written */
};

struct worker {
	struct fanoutd	*d;
	uint32_t	 index;
	uint16_t	 port;
	enum worker_state state;
	pid_t		 pid;
	uint64_t	 acked;
	sd_event_source	*child_src;
	sd_event_source	*notify_src;
	sd_event_source	*timer_src;	/* start deadline */
	int		 notify_fd;
	/* the TCP link (peer.c) */
	int		 fd;
	sd_event_source	*io_src;
	struct rbuf	 in;
	struct outq	 q;
	bool		 dirty;		/* on d->dirty_peers */
	struct worker	*next_dirty;
	char		 why[NOTIFY_STATUS_MAX];	/* what the worker said of a failure */
};

struct bcast_res {
	uint8_t		 outcome;	/* enum ack_outcome; ACK_NONE: pending */
	uint32_t	 rtt_us;
	pid_t		 pid;
};

struct bcast {
	struct fanoutd	*d;
	struct msg	*m;
	struct ctl_conn	*c;		/* NULL if the client went away */
	uint64_t	 req_id;
	uint64_t	 start_usec;
	uint32_t	 timeout_ms;
	sd_event_source	*timer;
	uint32_t	 nworkers;
	uint32_t	 npending;
	uint32_t	 nacked;
	struct bcast	*prev, *next;	/* d->bcasts */
	struct bcast_res res[];
};

struct ctl_conn {
	struct fanoutd	*d;
	int		 fd;
	sd_event_source	*io_src;
	sd_event_source	*resume_src;	/* reads buffered frames after a pause */
	struct rbuf	 in;
	struct wbuf	 out;
	uint32_t	 ninflight;
	bool		 paused;	/* not reading: too much in flight */
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
	struct worker	*workers;
	uint32_t	 nworkers;
	uint32_t	 nup;		/* workers in W_UP */
	uint32_t	 nalive;	/* workers with a process */
	uint64_t	 next_msg_id;
	struct bcast	*bcasts;	/* in flight, oldest first */
	struct bcast	*bcasts_tail;
	int		 ctl_fd;
	sd_event_source	*ctl_src;
	struct ctl_conn	*ctls;
	uint32_t	 nctls;
	sd_event_source	*flush_src;	/* one write pass per loop turn */
	struct worker	*dirty_peers;
	struct ctl_conn	*dirty_ctls;
	sd_event_source	*stop_timer;
	bool		 ready;		/* READY=1 sent */
	bool		 stopping;
	bool		 killed;	/* SIGKILL sent to stragglers */
	bool		 closing_ctls;	/* workers gone: closing clients */
	int		 exit_code;
};

/* fanoutd.c */
void	fanoutd_workers_changed(struct fanoutd *);
void	fanoutd_stop(struct fanoutd *, int exit_code);
void	fanoutd_check_done(struct fanoutd *);
void	fanoutd_schedule_flush(struct fanoutd *);

/* pool.c */
int	pool_start(struct fanoutd *);
void	pool_stop(struct fanoutd *);
void	pool_kill(struct fanoutd *);
void	pool_free(struct fanoutd *);
void	worker_link_up(struct worker *);
void	worker_link_lost(struct worker *, const char *why);
const char *worker_state_name(enum worker_state);

/* peer.c */
int	peer_connect(struct worker *);
int	peer_queue(struct worker *, struct msg *);
void	peer_flush(struct worker *);
void	peer_drain(struct worker *);
void	peer_close(struct worker *, uint8_t outcome);

/* bcast.c */
int	bcast_start(struct fanoutd *, struct ctl_conn *, uint64_t req_id,
	    const uint8_t *msg, size_t len, uint32_t timeout_ms);
void	bcast_settle(struct bcast *, uint32_t index, uint8_t outcome);
void	bcast_detach_client(struct fanoutd *, struct ctl_conn *);
void	bcast_abort_all(struct fanoutd *);
void	msg_unref(struct msg *);

/* control.c */
int	control_start(struct fanoutd *);
void	control_close_listener(struct fanoutd *);
/* now: drop unsent replies instead of flushing them first */
void	control_close_all(struct fanoutd *, bool now);
void	control_reply_bcast(struct ctl_conn *, const struct bcast *);
void	control_bcast_done(struct ctl_conn *);
void	control_flush(struct ctl_conn *);
bool	control_idle(const struct fanoutd *);

#endif /* FANOUT_FANOUTD_H */
