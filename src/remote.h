/* SPDX-License-Identifier: MIT */
/*
 * Remote workers (issue 11): fanoutd's side of the broker.  A NATS
 * JetStream stream holds a queue per remote worker (proto.h, at the end);
 * fanoutd publishes each broadcast to every one, learns from the PubAck
 * whether the broker stored it, and from the worker's receipt whether its
 * handler ran.  Only with nats_servers set: without it nothing here runs
 * and libnats is never initialised.
 *
 * Two connections.  The admin connection is nats.c's own, threaded: a
 * thread of this module creates and reconciles the stream and the
 * consumers (blocking JetStream API calls) before READY=1, then polls the
 * consumers for status.  The loop connection is driven from sd-event
 * (natsloop.c) and never blocks: publishes carry a reply subject under
 * fanoutd's own inbox, and PubAcks and receipts are drained from
 * synchronous subscriptions on the loop thread.
 */
#ifndef FANOUT_REMOTE_H
#define FANOUT_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct fanoutd;
struct msg;
struct ctl_worker;
struct remote;

/* How long a publish waits for its PubAck before it counts as `down',
 * unless the broadcast's own deadline comes first. */
#define REMOTE_PUBACK_MS	5000
/* What a message to a remote worker carries besides its body (headers,
 * subject): the broker's max_payload must leave room for it. */
#define REMOTE_HEADERS_MAX	1024
/* How often the admin thread asks the broker about the consumers. */
#define REMOTE_POLL_MS		1000

/* With nats_servers set: libnats, the stream and consumers (waiting at
 * most start_timeout_ms for them), the loop connection.  0, or -1 after
 * logging why. */
int	remote_start(struct fanoutd *);
struct fanout_conf;
/* fanoutd -t, with nats_servers set: connects to the broker (2 s at most
 * per server) and checks that it takes messages of max_message_bytes and
 * has JetStream.  0, or -1; what it found is said on stderr, a broker
 * that does not answer included (0: the configuration may be right). */
int	remote_check(const struct fanout_conf *, const char *path);
/* Writes what is buffered, closes both connections, joins the thread. */
void	remote_free(struct fanoutd *);
/* Publishes m to remote worker j.  ACK_NONE: published, the verdict
 * follows (bcast_remote_*); otherwise the verdict, at once. */
uint8_t	remote_publish(struct remote *, uint32_t j, struct msg *m);
/* Remote worker j's record for fanoutctl, with its name and its last
 * failure's reason. */
void	remote_record(struct remote *, uint32_t j, struct ctl_worker *,
	    const char **name, const char **reason, size_t *reason_len);

struct ctl_hist;
/* Remote worker j's counters for CTL_STATS: the record, and the
 * histogram's buckets (FANOUT_HIST_BUCKETS). */
void	remote_hist(struct remote *, uint32_t j, struct ctl_hist *,
	    uint64_t *buckets);
/* The consumers in the stream whose names are not in remote_workers, as
 * the admin thread last saw them: at most max records, their names in
 * names.  Returns how many. */
uint32_t remote_unlisted(struct remote *, struct ctl_worker *recs,
	    char (*names)[FANOUT_NAME_MAX + 1], uint32_t max);

/* Reload: what happened to a remote worker, for the reload's report. */
enum remote_change {
	REMOTE_ADDED,		/* its consumer is there */
	REMOTE_ADDED_DOWN,	/* the broker did not create it in time */
	REMOTE_ADDED_UNREACHABLE, /* no broker: `down' until there is */
	REMOTE_REMOVED,		/* count: broadcasts answered `removed' */
	REMOTE_NO_SLOT,		/* too many names since fanoutd started */
};
typedef void remote_change_cb(void *arg, enum remote_change,
	    const char *name, uint32_t count);
/* Moves the remote workers to names: a name no longer there is removed at
 * once (what waits on it is answered `removed'; its consumer and messages
 * stay in the broker, unlisted); a new one is added, its consumer created
 * by the admin thread, and its verdicts are `down' until it is.  Indices
 * never move: a removed worker keeps its slot, and gets it back if a later
 * reload lists it again. */
void	remote_reload(struct remote *, char *const *names,
	    remote_change_cb *, void *);
/* Reports the workers remote_reload added whose consumers are now there
 * (or all of them, with give_up).  True: some are still awaited. */
bool	remote_reload_step(struct remote *, bool give_up,
	    remote_change_cb *, void *);
/* Whether slot j is a remote worker listed in remote_workers. */
bool	remote_listed(const struct remote *, uint32_t j);

#endif /* FANOUT_REMOTE_H */
