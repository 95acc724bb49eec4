/* SPDX-License-Identifier: MIT */
/*
 * Remote workers through a NATS JetStream broker (remote.h says the shape).
 *
 * A message for remote worker NAME is published to PREFIX.w.NAME with a
 * reply subject INBOX.TOKEN: the broker answers there with a PubAck once it
 * has stored it (JSON: {"stream":..,"seq":N}), or with an error (err_code
 * 10077: NAME's queue is at its bound).  A stored message waits, in stream
 * order, for NAME's receipt on PREFIX.r.NAME.SEQ.STATUS.ID.  The
 * verdicts: stored and receipted, `acked' or `failed'; stored and not
 * receipted by the broadcast's deadline, `queued'; refused for the bound,
 * `full'; not stored in time, or no connection to the broker, `down'.
 * nats.c reconnects on its own (with a delay between tries); while it is
 * not connected nothing is published and remote verdicts are `down' at
 * once: fanoutd keeps no queue of its own for the broker.
 *
 * Everything from the broker is bounded and checked before use; what does
 * not parse is logged (rate-limited) and dropped.
 */
#include "config.h"

#include <sys/queue.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fanoutd.h"
#include "log.h"
#include "natsloop.h"
#include "rconf.h"
#include "remote.h"
#include "util.h"

#define SUBJECT_MAX	(FANOUT_NAME_MAX * 2 + 64)
#define PUBACK_MAX	1024	/* longer answers are not PubAcks */
#define DEDUPE_WINDOW_NS ((int64_t)120 * 1000000000)
/* Names fanoutd has had since it started, removed ones included: allocated
 * once, so the admin thread never sees the array move. */
#define REMOTE_SLOTS	(2 * FANOUT_REMOTE_MAX)

/* A message published to one remote worker: first waiting for its PubAck
 * (on r->pubs), then, stored, for its receipt (on its worker's stored).
 * The message itself is held only while its broadcast waits for a verdict:
 * a worker that is away may have queue_max_messages stored. */
struct rpend {
	TAILQ_ENTRY(rpend) entry;
	struct msg	*m;		/* a reference of ours, or NULL */
	uint64_t	 accepted_usec;	/* m's */
	uint64_t	 token;		/* of the PubAck's reply subject */
	uint64_t	 seq;		/* stream sequence, once stored */
	uint64_t	 usec;		/* published */
	uint32_t	 j;
};
TAILQ_HEAD(rpend_list, rpend);

/* A receipt that came before its message's PubAck: in a cluster the
 * PubAck waits for a quorum of nodes, while the worker may already have
 * the message, and the receipt takes another way. */
struct early {
	uint64_t	 seq;
	uint32_t	 status;
	uint8_t		 reason_len;
	char		 reason[FANOUT_REASON_MAX];
};
#define EARLY_MAX	4	/* per worker; more would be `queued' */

struct rworker {
	char		 name[FANOUT_NAME_MAX + 1];
	char		 subject[SUBJECT_MAX];	/* PREFIX.w.NAME */
	struct rpend_list stored;	/* by sequence */
	uint32_t	 nstored;
	struct rpend	*held;		/* of stored, the first that may hold
					 * its message; NULL: none does */
	uint64_t	 acked;
	uint64_t	 failed;
	uint64_t	 refused;
	uint64_t	 rtt_sum_us;
	uint64_t	 rtt_hist[FANOUT_HIST_BUCKETS];
	uint32_t	 last_rtt_us;
	uint32_t	 last_status;
	uint8_t		 last_reason_len;
	char		 last_reason[FANOUT_REASON_MAX];
	/* under r->mu */
	bool		 listed;	/* in remote_workers: a reload that
					 * removes it leaves its slot, so
					 * indices never move */
	bool		 awaited;	/* added by a reload, its consumer not
					 * created yet: `down' until it is */
	bool		 just_added;	/* loop thread: the reload that added
					 * it has not said how it went */
	/* the admin thread's last look at its consumer, under r->mu */
	bool		 known;		/* looked at, successfully */
	bool		 pulling;	/* NumWaiting > 0 */
	uint64_t	 pending;	/* NumPending + NumAckPending */
	uint64_t	 ack_floor;	/* stream sequence: all before, acked */
	uint64_t	 oldest_seq;	/* its first waiting message, as the */
	int64_t		 oldest_ns;	/* broker said (time stored); 0: none */
	uint8_t		 missed;	/* listings in a row without it */
	/* loop thread */
	struct early	*early;		/* EARLY_MAX, from the first one */
	uint8_t		 nearly;
};

struct remote {
	struct fanoutd	*d;
	uint32_t	 n;		/* slots in use, under r->mu; a slot's
					 * name never changes once it is */
	struct rworker	*w;		/* REMOTE_SLOTS of them */
	/* settings, copied: a reload frees the conf's strings */
	char		**servers;
	char		*ca, *cert, *key_path;
	char		 prefix[FANOUT_NAME_MAX + 1];
	char		 stream[FANOUT_NAME_MAX + 1];
	uint32_t	 queue_max;
	uint32_t	 ack_wait_ms;
	uint32_t	 replicas;	/* 0: as the stream has it */
	uint32_t	 max_message_bytes;
	char		 nonce[40];	/* this instance's, for Nats-Msg-Id */
	/* the loop connection: loop thread only */
	struct natsloop	*nl;
	natsConnection	*nc;
	natsSubscription *acks;
	natsSubscription *receipts;
	char		 inbox[SUBJECT_MAX];
	char		 rsubjects[SUBJECT_MAX];	/* PREFIX.r.> */
	size_t		 rprefix_len;			/* of "PREFIX.r." */
	uint64_t	 next_token;
	struct rpend_list pubs;		/* by token */
	sd_event_source	*puback_timer;
	/* the admin thread */
	pthread_t	 thread;
	bool		 thread_started;
	pthread_mutex_t	 mu;		/* guards what follows, and the
					 * workers' known, pulling, pending */
	pthread_cond_t	 cv;
	bool		 stop;
	bool		 set_up;	/* stream and consumers are there */
	struct {
		char	 name[FANOUT_NAME_MAX + 1];
		bool	 pulling;
		uint64_t pending;
	}		 unlisted[FANOUT_REMOTE_MAX];	/* in the stream, not
						 * in remote_workers */
	uint32_t	 nunlisted;
	bool		 reachable;	/* the admin connection's last try */
	uint32_t	 oldest_pause;	/* admin thread: polls to skip */
};

static struct log_limit bad_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "malformed messages from the broker");
static struct log_limit down_ll = LOG_LIMIT_INIT(LOG_WARNING,
    "messages the broker did not store");

static natsStatus
remote_options(struct remote *r, natsOptions **out)
{
	const struct natsloop_conf c = {
		.servers = r->servers, .name = "fanoutd", .timeout_ms = 2000,
		.ca = r->ca, .cert = r->cert, .key = r->key_path,
	};

	return natsloop_options_new(&c, out);
}

/* The admin thread's part. */

/* The stream, as issue 11 has it: created, or brought to these settings.
 * Its replicas are nats_stream_replicas; unset, a new stream has one and
 * an existing one keeps what it has: an administrator who scaled it must
 * not see fanoutd undo that at its next start, or in a failover. */
static natsStatus
setup_stream(struct remote *r, jsCtx *js)
{
	char subject[SUBJECT_MAX];
	const char *subjects[] = { subject };
	jsStreamInfo *si = NULL;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;

	snprintf(subject, sizeof(subject), "%s.w.*", r->prefix);
	jsStreamConfig_Init(&sc);
	sc.Name = r->stream;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Retention = js_WorkQueuePolicy;
	sc.Storage = js_FileStorage;
	sc.Discard = js_DiscardNew;
	sc.DiscardNewPerSubject = true;
	sc.MaxMsgsPerSubject = r->queue_max;
	sc.Duplicates = DEDUPE_WINDOW_NS;
	sc.Replicas = r->replicas > 0 ? r->replicas : 1;
	s = js_AddStream(&si, js, &sc, NULL, &jerr);
	if (s != NATS_OK && jerr == JSStreamNameExistErr) {
		jerr = 0;
		if (r->replicas == 0) {
			s = js_GetStreamInfo(&si, js, r->stream, NULL, &jerr);
			if (s == NATS_OK && si->Config != NULL &&
			    si->Config->Replicas > 0)
				sc.Replicas = si->Config->Replicas;
			jsStreamInfo_Destroy(si);
			si = NULL;
		}
		if (s == NATS_OK)
			s = js_UpdateStream(&si, js, &sc, NULL, &jerr);
	}
	if (s != NATS_OK)
		log_warnx("remote: stream %s: %s (error %d): %s", r->stream,
		    natsStatus_GetText(s), (int)jerr,
		    nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
	jsStreamInfo_Destroy(si);
	return s;
}

/* Worker j's durable pull consumer: explicit acks, one in flight. */
static natsStatus
setup_consumer(struct remote *r, jsCtx *js, uint32_t j)
{
	struct rworker *w = &r->w[j];
	jsConsumerInfo *ci = NULL;
	jsConsumerConfig cc;
	jsErrCode jerr = 0;
	natsStatus s;

	jsConsumerConfig_Init(&cc);
	cc.Durable = w->name;
	cc.FilterSubject = w->subject;
	cc.AckPolicy = js_AckExplicit;
	cc.MaxAckPending = 1;
	cc.AckWait = (int64_t)r->ack_wait_ms * 1000000;
	cc.DeliverPolicy = js_DeliverAll;
	s = js_AddConsumer(&ci, js, r->stream, &cc, NULL, &jerr);
	if (s != NATS_OK && jerr != 0) {
		jerr = 0;
		s = js_UpdateConsumer(&ci, js, r->stream, &cc, NULL, &jerr);
	}
	if (s != NATS_OK)
		log_warnx("remote: consumer %s in stream %s: %s (error %d)",
		    w->name, r->stream, natsStatus_GetText(s), (int)jerr);
	jsConsumerInfo_Destroy(ci);
	return s;
}

/* Every consumer's state, in one listing: the listed workers' for status
 * (one missing twice in a row means set up again), and the names in the
 * stream that are not in remote_workers, shown as unlisted and never
 * deleted. */
static natsStatus
poll_consumers(struct remote *r, jsCtx *js)
{
	jsConsumerInfoList *cl = NULL;
	jsConsumerInfo *ci;
	const char *why;
	jsErrCode jerr = 0;
	natsStatus s;
	bool *seen;
	uint32_t j;
	int i;

	s = js_Consumers(&cl, js, r->stream, NULL, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
		pthread_mutex_lock(&r->mu);
		r->set_up = false;
		pthread_mutex_unlock(&r->mu);
		return NATS_OK;
	}
	if (s != NATS_OK)
		return s;
	/* Every slot: a reload may add one before the lock is taken. */
	if ((seen = calloc(REMOTE_SLOTS, sizeof(*seen))) == NULL) {
		jsConsumerInfoList_Destroy(cl);
		return NATS_NO_MEMORY;
	}
	pthread_mutex_lock(&r->mu);
	r->nunlisted = 0;
	for (i = 0; i < cl->Count; i++) {
		ci = cl->List[i];
		if (ci == NULL || ci->Name == NULL)
			continue;
		for (j = 0; j < r->n; j++)
			if (r->w[j].listed &&
			    strcmp(r->w[j].name, ci->Name) == 0)
				break;
		if (j == r->n) {
			/* Only a name fanoutctl can show as it is. */
			if (r->nunlisted < nitems(r->unlisted) &&
			    rconf_check_name(ci->Name, 0, &why) == 0) {
				snprintf(r->unlisted[r->nunlisted].name,
				    sizeof(r->unlisted[0].name), "%s",
				    ci->Name);
				r->unlisted[r->nunlisted].pulling =
				    ci->NumWaiting > 0 || ci->NumAckPending > 0;
				r->unlisted[r->nunlisted].pending =
				    ci->NumPending + (uint64_t)(ci->NumAckPending
				    > 0 ? ci->NumAckPending : 0);
				r->nunlisted++;
			}
			continue;
		}
		seen[j] = true;
		/* A message in hand: busy with it, not away (or crashed,
		 * until AckWait gives it back). */
		r->w[j].pulling = ci->NumWaiting > 0 || ci->NumAckPending > 0;
		r->w[j].pending = ci->NumPending + (uint64_t)(ci->NumAckPending >
		    0 ? ci->NumAckPending : 0);
		r->w[j].ack_floor = ci->AckFloor.Stream;
	}
	/* A consumer missing from one listing may be moving to another node
	 * (a failover): only the second listing in a row without it says it
	 * is gone and is to be created again. */
	for (j = 0; j < r->n; j++) {
		if (seen[j])
			r->w[j].missed = 0;
		else if (r->w[j].missed < UINT8_MAX)
			r->w[j].missed++;
		if (seen[j] || r->w[j].missed >= 2)
			r->w[j].known = seen[j];
		if (r->w[j].missed >= 2 && r->w[j].listed)
			r->set_up = false;
	}
	pthread_mutex_unlock(&r->mu);
	free(seen);
	jsConsumerInfoList_Destroy(cl);
	return NATS_OK;
}

static int	json_u64(const char *, const char *, uint64_t *);

/* The time the broker stored stream message seq, from a STREAM.MSG.GET
 * answer ("time":"2026-12-01T11:01:32.691287365Z"): 0, or -1. */
static int
msg_time(const char *json, uint64_t *seq, int64_t *ns)
{
	const char *t = strstr(json, "\"time\":\"");
	struct tm tm = { 0 };
	const char *p;
	int64_t frac = 0, scale = 1000000000;
	time_t secs;

	if (t == NULL || strstr(json, "\"error\"") != NULL ||
	    json_u64(json, "\"seq\"", seq) < 0)
		return -1;
	if ((p = strptime(t + 8, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return -1;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
	if (*p != 'Z' || (secs = timegm(&tm)) == (time_t)-1)
		return -1;
	*ns = (int64_t)secs * 1000000000 + frac;
	return 0;
}

/* For status, the age of each worker's oldest waiting message, which the
 * broker alone knows of what was published before this fanoutd started:
 * asked again only when that message has been acked, so at most once a
 * poll for a worker working through a backlog. */
static void
poll_oldest(struct remote *r, natsConnection *nc)
{
	char subject[SUBJECT_MAX + 32], req[SUBJECT_MAX + 64];
	uint64_t floor, seq;
	natsMsg *m;
	int64_t ns;
	uint32_t j, n;
	bool ask;

	/* A user not allowed STREAM.MSG.GET (an older example config) gets
	 * no answer, only the timeout: ask again a minute later. */
	if (r->oldest_pause > 0) {
		r->oldest_pause--;
		return;
	}
	snprintf(subject, sizeof(subject), "$JS.API.STREAM.MSG.GET.%s",
	    r->stream);
	pthread_mutex_lock(&r->mu);
	n = r->n;
	pthread_mutex_unlock(&r->mu);
	for (j = 0; j < n; j++) {
		pthread_mutex_lock(&r->mu);
		if (!r->w[j].listed || !r->w[j].known ||
		    r->w[j].pending == 0) {
			r->w[j].oldest_seq = 0;
			r->w[j].oldest_ns = 0;
		}
		floor = r->w[j].ack_floor;
		ask = r->w[j].listed && r->w[j].known &&
		    r->w[j].pending > 0 && r->w[j].oldest_seq <= floor;
		pthread_mutex_unlock(&r->mu);
		if (!ask)
			continue;
		snprintf(req, sizeof(req), "{\"seq\":%" PRIu64 ",\"next_by_subj\""
		    ":\"%s\"}", floor + 1, r->w[j].subject);
		if (natsConnection_RequestString(&m, nc, subject, req,
		    REMOTE_POLL_MS) != NATS_OK) {
			r->oldest_pause = 60000 / REMOTE_POLL_MS;
			return;
		}
		if (natsMsg_GetDataLength(m) > 0 &&
		    msg_time(natsMsg_GetData(m), &seq, &ns) == 0) {
			pthread_mutex_lock(&r->mu);
			r->w[j].oldest_seq = seq;
			r->w[j].oldest_ns = ns;
			pthread_mutex_unlock(&r->mu);
		}
		natsMsg_Destroy(m);
	}
}

static void *
admin_thread(void *arg)
{
	struct remote *r = arg;
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	struct timespec ts;
	jsCtx *js = NULL;
	natsStatus s;
	bool set_up, warned = false;
	uint32_t j, n;

	if ((s = remote_options(r, &o)) != NATS_OK) {
		log_warnx("remote: broker settings: %s", natsStatus_GetText(s));
		return NULL;
	}
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		set_up = r->set_up;
		n = r->n;
		pthread_mutex_unlock(&r->mu);
		s = NATS_OK;
		if (nc == NULL && (s = natsConnection_Connect(&nc, o)) ==
		    NATS_OK)
			s = natsConnection_JetStream(&js, nc, NULL);
		if (s == NATS_OK && !set_up) {
			int64_t mp = natsConnection_GetMaxPayload(nc);

			/* A larger message would be refused: down. */
			if (mp > 0 && mp < (int64_t)r->max_message_bytes +
			    REMOTE_HEADERS_MAX)
				log_warnx("remote: the broker takes messages of "
				    "at most %lld bytes (max_payload), less "
				    "than max_message_bytes (%u) and headers",
				    (long long)mp, r->max_message_bytes);
			s = setup_stream(r, js);
			for (j = 0; s == NATS_OK && j < n; j++) {
				pthread_mutex_lock(&r->mu);
				set_up = r->w[j].listed;
				pthread_mutex_unlock(&r->mu);
				/* A removed one's consumer stays as it is. */
				if (!set_up)
					continue;
				if ((s = setup_consumer(r, js, j)) != NATS_OK)
					break;
				pthread_mutex_lock(&r->mu);
				if (r->w[j].awaited)
					log_notice("remote: %s: consumer "
					    "created; its verdicts are no "
					    "longer `down'", r->w[j].name);
				r->w[j].awaited = false;
				pthread_mutex_unlock(&r->mu);
			}
			if (s == NATS_OK) {
				log_info("remote: stream %s and its consumers "
				    "ready", r->stream);
				pthread_mutex_lock(&r->mu);
				/* Unless a reload added one meanwhile. */
				r->set_up = true;
				for (j = 0; j < r->n; j++)
					if (r->w[j].listed && r->w[j].awaited)
						r->set_up = false;
				pthread_mutex_unlock(&r->mu);
			}
		}
		/* Finds a consumer deleted since, for the next turn. */
		if (s == NATS_OK)
			s = poll_consumers(r, js);
		if (s == NATS_OK)
			poll_oldest(r, nc);
		if (s != NATS_OK && !warned)
			log_warnx("remote: the broker: %s",
			    natsStatus_GetText(s));
		warned = s != NATS_OK;
		if (s != NATS_OK && (nc == NULL || natsConnection_Status(nc)
		    != NATS_CONN_STATUS_CONNECTED)) {
			jsCtx_Destroy(js);
			natsConnection_Destroy(nc);
			js = NULL;
			nc = NULL;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(REMOTE_POLL_MS % 1000) * 1000000;
		ts.tv_sec += REMOTE_POLL_MS / 1000 + ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_mutex_lock(&r->mu);
		r->reachable = s == NATS_OK;
		pthread_cond_broadcast(&r->cv);
		if (!r->stop)
			(void)pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	return NULL;
}

/* The loop thread's part. */

static void
rpend_free(struct rpend *p)
{
	if (p->m != NULL)
		msg_unref(p->m);
	free(p);
}

/* Lets go of the messages whose broadcasts are answered, from the oldest
 * on: they answer in about the order they started, so the cursor only
 * moves forward. */
static void
stored_release(struct rworker *w)
{
	struct rpend *p;

	while ((p = w->held) != NULL &&
	    (p->m == NULL || p->m->b == NULL)) {
		if (p->m != NULL) {
			msg_unref(p->m);
			p->m = NULL;
		}
		w->held = TAILQ_NEXT(p, entry);
	}
}

static void
stored_remove(struct rworker *w, struct rpend *p)
{
	if (w->held == p)
		w->held = TAILQ_NEXT(p, entry);
	TAILQ_REMOVE(&w->stored, p, entry);
	w->nstored--;
}

/* A message for worker j has its verdict, or its receipt came after. */
static void
remote_result(struct remote *r, struct rpend *p, uint32_t status,
    const char *reason, size_t reason_len)
{
	struct rworker *w = &r->w[p->j];
	uint64_t now = loop_now(r->d);

	w->acked++;
	w->last_rtt_us = now > p->accepted_usec ?
	    (uint32_t)(now - p->accepted_usec) : 1;
	w->rtt_sum_us += w->last_rtt_us;
	w->rtt_hist[hist_bucket(w->last_rtt_us)]++;
	if (status != HS_OK) {
		w->failed++;
		w->last_status = status;
		w->last_reason_len = (uint8_t)reason_len;
		memcpy(w->last_reason, reason, reason_len);
	}
	if (p->m != NULL)
		bcast_remote_result(p->m, p->j, status == HS_OK ? ACK_OK :
		    ACK_FAILED, status, (const uint8_t *)reason, reason_len);
}

/* A decimal number of at most 20 digits, nothing else: 0, or -1. */
static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 20)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' ||
		    v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* The number after "key": in a PubAck's JSON (flat enough for this; a
 * string value equal to the key is skipped, having no ':' after it). */
static int
json_u64(const char *json, const char *key, uint64_t *out)
{
	const char *p = json;

	while ((p = strstr(p, key)) != NULL) {
		p += strlen(key);
		while (*p == ' ')
			p++;
		if (*p != ':')
			continue;
		p++;
		while (*p == ' ')
			p++;
		return parse_u64(p, strspn(p, "0123456789"), out);
	}
	return -1;
}

static void
bad_input(const char *fmt, const char *what)
{
	if (log_limit(&bad_ll))
		log_warnx(fmt, what);
}

/* Whether a message for worker j waits for its PubAck. */
static bool
publishing(const struct remote *r, uint32_t j)
{
	const struct rpend *p;

	TAILQ_FOREACH(p, &r->pubs, entry)
		if (p->j == j)
			return true;
	return false;
}

static void
early_keep(struct rworker *w, uint64_t seq, uint32_t status,
    const char *reason, size_t len)
{
	struct early *e;

	if (w->early == NULL &&
	    (w->early = calloc(EARLY_MAX, sizeof(*w->early))) == NULL)
		return;		/* its verdict will be `queued' */
	if (w->nearly == EARLY_MAX) {
		memmove(w->early, w->early + 1,
		    (EARLY_MAX - 1) * sizeof(*w->early));
		w->nearly--;
	}
	e = &w->early[w->nearly++];
	e->seq = seq;
	e->status = status;
	e->reason_len = (uint8_t)len;
	if (len > 0)
		memcpy(e->reason, reason, len);
}

/* The early receipt for seq, if one came; those before it are for
 * messages the broker has since confirmed or never will. */
static bool
early_take(struct rworker *w, uint64_t seq, struct early *out)
{
	bool found = false;
	uint8_t i = 0;

	while (i < w->nearly && w->early[i].seq < seq)
		i++;
	if (i < w->nearly && w->early[i].seq == seq) {
		*out = w->early[i++];
		found = true;
	}
	if (i > 0) {
		memmove(w->early, w->early + i,
		    (size_t)(w->nearly - i) * sizeof(*w->early));
		w->nearly = (uint8_t)(w->nearly - i);
	}
	return found;
}

static void
on_puback(struct remote *r, natsMsg *msg)
{
	const char *subj = natsMsg_GetSubject(msg), *st;
	size_t ilen = strlen(r->inbox);
	char json[PUBACK_MAX + 1];
	uint64_t token, seq, code = 0;
	struct early e;
	struct rpend *p;
	bool away;
	int len = natsMsg_GetDataLength(msg);

	if (strncmp(subj, r->inbox, ilen) != 0 || subj[ilen] != '.' ||
	    parse_u64(subj + ilen + 1, strlen(subj + ilen + 1), &token) < 0) {
		bad_input("remote: a reply on %.80s: not ours", subj);
		return;
	}
	/* cppcheck takes the loop's p->token for a use of p before the NULL
	 * check below; the loop stops at NULL before that. */
	TAILQ_FOREACH(p, &r->pubs, entry)
		// cppcheck-suppress nullPointerRedundantCheck
		if (p->token == token)
			break;
	if (p == NULL)
		return;		/* too late: already `down' */
	TAILQ_REMOVE(&r->pubs, p, entry);
	if (len <= 0 && natsMsgHeader_Get(msg, "Status", &st) == NATS_OK) {
		/* 503: no responders, the stream is missing. */
		if (log_limit(&down_ll))
			log_warnx("remote: %s: not stored: status %s (no "
			    "stream %s?)", r->w[p->j].name, st, r->stream);
		bcast_remote_result(p->m, p->j, ACK_DOWN, 0, NULL, 0);
		rpend_free(p);
		return;
	}
	if (len <= 0 || len > PUBACK_MAX) {
		bad_input("remote: a PubAck for %s: no JSON", r->w[p->j].name);
		bcast_remote_result(p->m, p->j, ACK_DOWN, 0, NULL, 0);
		rpend_free(p);
		return;
	}
	memcpy(json, natsMsg_GetData(msg), (size_t)len);
	json[len] = '\0';
	if (strstr(json, "\"error\"") != NULL) {
		(void)json_u64(json, "\"err_code\"", &code);
		if (code == JSStreamStoreFailedErr) {
			r->w[p->j].refused++;
			bcast_remote_result(p->m, p->j, ACK_FULL, 0, NULL, 0);
		} else {
			if (log_limit(&down_ll))
				log_warnx("remote: %s: not stored: %s",
				    r->w[p->j].name, json);
			bcast_remote_result(p->m, p->j, ACK_DOWN, 0, NULL, 0);
		}
		rpend_free(p);
		return;
	}
	if (json_u64(json, "\"seq\"", &seq) < 0) {
		bad_input("remote: a PubAck for %s without a sequence",
		    r->w[p->j].name);
		bcast_remote_result(p->m, p->j, ACK_DOWN, 0, NULL, 0);
		rpend_free(p);
		return;
	}
	/* Stored: waits for the receipt, in stream order.  A worker never
	 * has more than its bound stored; past twice that, the oldest are
	 * receipts that were lost (fanoutd was away): forgotten. */
	p->seq = seq;
	{
		struct rworker *w = &r->w[p->j];
		struct rpend *last = TAILQ_LAST(&w->stored, rpend_list);

		if (last != NULL && last->seq >= seq) {
			/* A duplicate (the dedupe window), or out of order:
			 * it is handled once, with its first sequence. */
			rpend_free(p);
			return;
		}
		if (early_take(w, seq, &e)) {
			remote_result(r, p, e.status, e.reason, e.reason_len);
			rpend_free(p);
			return;
		}
		TAILQ_INSERT_TAIL(&w->stored, p, entry);
		w->nstored++;
		if (w->held == NULL)
			w->held = p;
		while (w->nstored > 2 * r->queue_max + 16) {
			struct rpend *old = TAILQ_FIRST(&w->stored);

			stored_remove(w, old);
			rpend_free(old);
		}
		pthread_mutex_lock(&r->mu);
		away = !w->known || !w->pulling;
		pthread_mutex_unlock(&r->mu);
		bcast_remote_stored(p->m, p->j, away);
		stored_release(w);
	}
}

/* The decimal token at *p, up to the next '.' or the end; *p moves past
 * its dot.  The last one must end the subject. */
static int
receipt_field(const char **p, bool last, uint64_t *out)
{
	size_t len = strcspn(*p, ".");

	if ((*p)[len] != (last ? '\0' : '.') || parse_u64(*p, len, out) < 0)
		return -1;
	*p += last ? len : len + 1;
	return 0;
}

/* A receipt, PREFIX.r.NAME.SEQ.STATUS.ID (proto.h): everything is in its
 * subject, so no headers are parsed. */
static void
on_receipt(struct remote *r, natsMsg *msg)
{
	const char *subj = natsMsg_GetSubject(msg), *name, *tok;
	int len = natsMsg_GetDataLength(msg);
	uint64_t seq, status, id;
	struct rworker *w;
	struct rpend *p;
	size_t nlen;
	uint32_t j;

	if (strncmp(subj, r->rsubjects, r->rprefix_len) != 0)
		return;
	name = subj + r->rprefix_len;
	nlen = strcspn(name, ".");
	for (j = 0; j < r->n; j++)
		if (r->w[j].listed && strncmp(r->w[j].name, name, nlen) == 0 &&
		    r->w[j].name[nlen] == '\0')
			break;
	if (j == r->n)
		return;		/* not one of ours (unlisted) */
	w = &r->w[j];
	tok = name + nlen;
	if (*tok == '\0') {
		bad_input("remote: a receipt from %s without its sequence and "
		    "status (a fanout-remote-worker older than fanoutd?): "
		    "ignored", w->name);
		return;
	}
	tok++;
	if (receipt_field(&tok, false, &seq) < 0 ||
	    receipt_field(&tok, false, &status) < 0 ||
	    receipt_field(&tok, true, &id) < 0 ||
	    status > UINT32_MAX || len < 0 || len > FANOUT_REASON_MAX) {
		bad_input("remote: a malformed receipt from %s: ignored",
		    w->name);
		return;
	}
	/* One message in flight per worker, in stream order: a receipt for
	 * seq means every one before it was handled too (their receipts
	 * were lost while fanoutd was away from the broker). */
	while ((p = TAILQ_FIRST(&w->stored)) != NULL && p->seq < seq) {
		stored_remove(w, p);
		rpend_free(p);
	}
	if (p == NULL && publishing(r, j)) {
		/* Before its PubAck, which is on its way. */
		early_keep(w, seq, (uint32_t)status, natsMsg_GetData(msg),
		    (size_t)len);
		return;
	}
	if (p == NULL || p->seq != seq)
		return;		/* a receipt sent again, or from before */
	stored_remove(w, p);
	remote_result(r, p, (uint32_t)status, natsMsg_GetData(msg),
	    (size_t)len);
	rpend_free(p);
	stored_release(w);
}

/* Each message destroyed in a batch (natsloop_dispose): two threads
 * fought over nats.c's collector for every PubAck and receipt. */
static void
remote_drain(struct remote *r)
{
	natsMsg *m;

	while (r->acks != NULL &&
	    natsloop_next(r->acks, &m) == NATS_OK) {
		on_puback(r, m);
		natsloop_dispose(r->nl, m);
	}
	while (r->receipts != NULL &&
	    natsloop_next(r->receipts, &m) == NATS_OK) {
		on_receipt(r, m);
		natsloop_dispose(r->nl, m);
	}
}

/* Publishes that had no PubAck in time, or lost their connection. */
static void
remote_expire(struct remote *r, uint64_t before)
{
	struct rpend *p;

	while ((p = TAILQ_FIRST(&r->pubs)) != NULL && p->usec <= before) {
		TAILQ_REMOVE(&r->pubs, p, entry);
		bcast_remote_result(p->m, p->j, ACK_DOWN, 0, NULL, 0);
		rpend_free(p);
	}
	if ((p = TAILQ_FIRST(&r->pubs)) != NULL)
		(void)sd_event_source_set_time(r->puback_timer,
		    p->usec + (uint64_t)REMOTE_PUBACK_MS * 1000);
	(void)sd_event_source_set_enabled(r->puback_timer,
	    p != NULL ? SD_EVENT_ONESHOT : SD_EVENT_OFF);
}

static int
on_puback_timer(sd_event_source *s, uint64_t usec, void *arg)
{
	struct remote *r = arg;

	(void)s;
	remote_drain(r);
	if (usec >= (uint64_t)REMOTE_PUBACK_MS * 1000)
		remote_expire(r, usec - (uint64_t)REMOTE_PUBACK_MS * 1000);
	return 0;
}

static void
on_nats(void *arg, enum natsloop_event e, natsStatus st)
{
	struct remote *r = arg;

	switch (e) {
	case NL_INPUT:
		remote_drain(r);
		break;
	case NL_CONNECTED:
		log_notice("remote: connected to the broker");
		break;
	case NL_DISCONNECTED:
		log_warnx("remote: lost the broker; remote workers are `down' "
		    "until it is back");
		remote_drain(r);
		remote_expire(r, UINT64_MAX);
		break;
	case NL_CLOSED:
		remote_expire(r, UINT64_MAX);
		break;
	case NL_ERROR:
		log_warnx("remote: the broker: %s", natsStatus_GetText(st));
		break;
	}
}

uint8_t
remote_publish(struct remote *r, uint32_t j, struct msg *m)
{
	struct rworker *w = &r->w[j];
	char reply[SUBJECT_MAX + 24], msgid[FANOUT_NAME_MAX + 96], *t;
	natsMsg *nm = NULL;
	struct rpend *p;
	natsStatus s;
	bool awaited;

	if (r->nc == NULL ||
	    natsConnection_Status(r->nc) != NATS_CONN_STATUS_CONNECTED)
		return ACK_DOWN;
	pthread_mutex_lock(&r->mu);
	awaited = w->awaited;
	pthread_mutex_unlock(&r->mu);
	if (awaited)
		return ACK_DOWN;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return ACK_DOWN;
	p->token = ++r->next_token;
	p->j = j;
	p->usec = loop_now(r->d);
	/* Not snprintf: three a publish, R publishes a broadcast. */
	t = stpcpy(reply, r->inbox);
	*t++ = '.';
	*put_decimal(t, p->token) = '\0';
	/* NAME-INSTANCE-ID, unique to this fanoutd instance: ids start
	 * again without a spool, and the dedupe window would take a new
	 * message for an old one.  The worker reads ID there. */
	t = stpcpy(msgid, w->name);
	*t++ = '-';
	t = stpcpy(t, r->nonce);
	*t++ = '-';
	*put_decimal(t, m->id) = '\0';
	if ((s = natsMsg_Create(&nm, w->subject, reply,
	    (const char *)m->frame + FANOUT_HDR_LEN, (int)msg_payload_len(m))) !=
	    NATS_OK ||
	    (s = natsMsgHeader_Set(nm, FANOUT_HDR_MSGID, msgid)) != NATS_OK ||
	    (s = natsConnection_PublishMsg(r->nc, nm)) != NATS_OK) {
		if (log_limit(&down_ll))
			log_warnx("remote: %s: cannot publish: %s", w->name,
			    natsStatus_GetText(s));
		natsMsg_Destroy(nm);
		free(p);
		return ACK_DOWN;
	}
	natsloop_dispose(r->nl, nm);
	m->refs++;
	p->m = m;
	p->accepted_usec = m->accepted_usec;
	TAILQ_INSERT_TAIL(&r->pubs, p, entry);
	if (p == TAILQ_FIRST(&r->pubs))
		remote_expire(r, 0);	/* arms the timer */
	return ACK_NONE;
}

void
remote_record(struct remote *r, uint32_t j, struct ctl_worker *rec,
    const char **name, const char **reason, size_t *reason_len)
{
	struct rworker *w = &r->w[j];
	bool connected = r->nc != NULL &&
	    natsConnection_Status(r->nc) == NATS_CONN_STATUS_CONNECTED;

	memset(rec, 0, sizeof(*rec));
	rec->index = j;
	rec->acked = w->acked;
	rec->failed = w->failed;
	rec->last_rtt_us = w->last_rtt_us;
	rec->status = w->last_status;
	/* The oldest this fanoutd published with no receipt yet, unless the
	 * broker said of an older one (published before it started). */
	if (!TAILQ_EMPTY(&w->stored))
		rec->oldest_ms = age_ms(loop_now(r->d),
		    TAILQ_FIRST(&w->stored)->accepted_usec);
	pthread_mutex_lock(&r->mu);
	if (w->oldest_ns > 0 && w->pending > 0) {
		uint64_t now = 0, ms;

		/* The broker's time is the wall clock, as the spool's. */
		(void)sd_event_now(r->d->ev, CLOCK_REALTIME, &now);
		ms = age_ms(now, (uint64_t)w->oldest_ns / 1000);
		if (ms > rec->oldest_ms)
			rec->oldest_ms = ms;
	}
	rec->state = !connected || !r->reachable || !w->known ? WS_DOWN :
	    w->pulling ? WS_PULLING : WS_MISSING;
	rec->queued = w->pending > UINT32_MAX ? UINT32_MAX :
	    (uint32_t)w->pending;
	pthread_mutex_unlock(&r->mu);
	rec->name_len = (uint16_t)strlen(w->name);
	*name = w->name;
	*reason = w->last_reason;
	*reason_len = w->last_reason_len;
}

void
remote_hist(struct remote *r, uint32_t j, struct ctl_hist *h,
    uint64_t *buckets)
{
	const struct rworker *w = &r->w[j];

	h->index = j;
	h->refused = w->refused;
	h->rtt_count = w->acked;
	h->rtt_sum_us = w->rtt_sum_us;
	memcpy(buckets, w->rtt_hist, sizeof(w->rtt_hist));
}

uint32_t
remote_unlisted(struct remote *r, struct ctl_worker *recs,
    char (*names)[FANOUT_NAME_MAX + 1], uint32_t max)
{
	uint32_t i, n;

	pthread_mutex_lock(&r->mu);
	n = r->nunlisted < max ? r->nunlisted : max;
	for (i = 0; i < n; i++) {
		memset(&recs[i], 0, sizeof(recs[i]));
		recs[i].index = CTL_WORKER_UNLISTED;
		recs[i].state = WS_UNLISTED;
		recs[i].queued = r->unlisted[i].pending > UINT32_MAX ?
		    UINT32_MAX : (uint32_t)r->unlisted[i].pending;
		memcpy(names[i], r->unlisted[i].name, sizeof(names[i]));
		recs[i].name_len = (uint16_t)strlen(names[i]);
	}
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* Reload. */

static struct rworker *remote_slot(struct remote *, const char *);

bool
remote_listed(const struct remote *r, uint32_t j)
{
	/* Written by the loop thread only: no lock to read it here. */
	return j < r->n && r->w[j].listed;
}

/* Remote worker j is removed: what waits on it is answered `removed' now,
 * its receipts are no longer read.  The broker keeps its consumer and what
 * is stored for it (fanoutd never deletes): unlisted from now on. */
static uint32_t
remote_remove(struct remote *r, uint32_t j)
{
	struct rworker *w = &r->w[j];
	struct rpend *p, *next;
	uint32_t n = 0;

	pthread_mutex_lock(&r->mu);
	w->listed = false;
	w->awaited = false;
	pthread_mutex_unlock(&r->mu);
	w->just_added = false;
	for (p = TAILQ_FIRST(&r->pubs); p != NULL; p = next) {
		next = TAILQ_NEXT(p, entry);
		if (p->j != j)
			continue;
		TAILQ_REMOVE(&r->pubs, p, entry);
		if (p->m != NULL && p->m->b != NULL)
			n++;
		bcast_remote_result(p->m, j, ACK_REMOVED, 0, NULL, 0);
		rpend_free(p);
	}
	remote_expire(r, 0);	/* the timer, for what is left */
	while ((p = TAILQ_FIRST(&w->stored)) != NULL) {
		stored_remove(w, p);
		if (p->m != NULL && p->m->b != NULL) {
			n++;
			bcast_remote_result(p->m, j, ACK_REMOVED, 0, NULL, 0);
		}
		rpend_free(p);
	}
	w->held = NULL;
	return n;
}

static bool
name_in(char *const *names, const char *name)
{
	for (; names != NULL && *names != NULL; names++)
		if (strcmp(*names, name) == 0)
			return true;
	return false;
}

void
remote_reload(struct remote *r, char *const *names, remote_change_cb *cb,
    void *arg)
{
	struct rworker *w;
	uint32_t j, n;

	for (j = 0; j < r->n; j++)
		if (r->w[j].listed && !name_in(names, r->w[j].name)) {
			n = remote_remove(r, j);
			cb(arg, REMOTE_REMOVED, r->w[j].name, n);
		}
	for (; names != NULL && *names != NULL; names++) {
		for (j = 0; j < r->n; j++)
			if (r->w[j].listed && strcmp(r->w[j].name, *names) == 0)
				break;
		if (j < r->n)
			continue;
		if ((w = remote_slot(r, *names)) == NULL) {
			cb(arg, REMOTE_NO_SLOT, *names, 0);
			continue;
		}
		w->just_added = true;
		pthread_mutex_lock(&r->mu);
		w->awaited = true;
		r->set_up = false;	/* the admin thread creates it */
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
	}
	r->d->nremote = r->n;
}

bool
remote_reload_step(struct remote *r, bool give_up, remote_change_cb *cb,
    void *arg)
{
	bool awaited, reachable, waiting = false;
	uint32_t j;

	/* The loop connection's word: the admin thread may be waiting on a
	 * connection that went away. */
	reachable = r->nc != NULL &&
	    natsConnection_Status(r->nc) == NATS_CONN_STATUS_CONNECTED;

	for (j = 0; j < r->n; j++) {
		struct rworker *w = &r->w[j];

		if (!w->just_added)
			continue;
		pthread_mutex_lock(&r->mu);
		awaited = w->awaited;
		pthread_mutex_unlock(&r->mu);
		if (!awaited)
			cb(arg, REMOTE_ADDED, w->name, 0);
		else if (give_up)
			cb(arg, reachable ? REMOTE_ADDED_DOWN :
			    REMOTE_ADDED_UNREACHABLE, w->name, 0);
		else {
			waiting = true;
			continue;
		}
		w->just_added = false;
	}
	return waiting;
}

/* Start and end. */

/* The slot of remote worker name: the one it had, or a new one.  Listed,
 * under r->mu.  NULL: no slot left. */
static struct rworker *
remote_slot(struct remote *r, const char *name)
{
	struct rworker *w;
	uint32_t j;

	for (j = 0; j < r->n; j++)
		if (strcmp(r->w[j].name, name) == 0)
			break;
	if (j == r->n && r->n == REMOTE_SLOTS)
		return NULL;
	w = &r->w[j];
	pthread_mutex_lock(&r->mu);
	if (j == r->n) {
		snprintf(w->name, sizeof(w->name), "%s", name);
		snprintf(w->subject, sizeof(w->subject), "%s.w.%s", r->prefix,
		    w->name);
		TAILQ_INIT(&w->stored);
		r->n++;
	}
	w->listed = true;
	pthread_mutex_unlock(&r->mu);
	return w;
}

static int
remote_copy_conf(struct remote *r, const struct fanout_conf *conf)
{
	uint32_t j, n = conf_list_len(conf->nats_servers);

	if ((r->servers = calloc((size_t)n + 1, sizeof(char *))) == NULL)
		return -1;
	for (j = 0; j < n; j++)
		if ((r->servers[j] = strdup(conf->nats_servers[j])) == NULL)
			return -1;
	if ((conf->nats_tls_ca[0] != '\0' &&
	    (r->ca = strdup(conf->nats_tls_ca)) == NULL) ||
	    (conf->nats_tls_cert[0] != '\0' &&
	    ((r->cert = strdup(conf->nats_tls_cert)) == NULL ||
	    (r->key_path = credential_path(conf->nats_tls_key)) == NULL)))
		return -1;
	snprintf(r->prefix, sizeof(r->prefix), "%s",
	    conf->nats_subject_prefix);
	snprintf(r->stream, sizeof(r->stream), "%s", conf->nats_stream);
	r->queue_max = conf->queue_max_messages;
	r->ack_wait_ms = conf->remote_ack_wait_ms;
	r->replicas = conf->nats_stream_replicas;
	r->max_message_bytes = conf->max_message_bytes;
	n = conf_list_len(conf->remote_workers);
	if ((r->w = calloc(REMOTE_SLOTS, sizeof(*r->w))) == NULL)
		return -1;
	for (j = 0; j < n; j++)
		(void)remote_slot(r, conf->remote_workers[j]);
	return 0;
}

/* Waits for the admin thread's first success, at most ms. */
static bool
remote_wait_set_up(struct remote *r, uint32_t ms)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	ts.tv_sec += ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_mutex_lock(&r->mu);
	while (!r->set_up)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0)
			break;
	ok = r->set_up;
	pthread_mutex_unlock(&r->mu);
	return ok;
}

static int
remote_connect(struct remote *r)
{
	natsOptions *o = NULL;
	natsStatus s;
	char *nuid;

	if ((s = remote_options(r, &o)) != NATS_OK ||
	    (s = natsloop_options(r->nl, o)) != NATS_OK ||
	    /* Each publish is written at once: no flusher thread delay. */
	    (s = natsOptions_SetSendAsap(o, true)) != NATS_OK) {
		log_errx("remote: broker settings: %s", natsStatus_GetText(s));
		natsOptions_Destroy(o);
		return -1;
	}
	s = natsConnection_Connect(&r->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
		log_errx("remote: cannot connect to the broker: %s",
		    natsStatus_GetText(s));
		return -1;
	}
	if ((s = natsInbox_Create(&nuid)) != NATS_OK) {
		log_errx("remote: inbox: %s", natsStatus_GetText(s));
		return -1;
	}
	snprintf(r->inbox, sizeof(r->inbox), "%s", nuid);
	natsInbox_Destroy(nuid);
	snprintf(r->rsubjects, sizeof(r->rsubjects), "%s.r.>", r->prefix);
	r->rprefix_len = strlen(r->rsubjects) - 1;
	{
		char acks[SUBJECT_MAX + 2];

		snprintf(acks, sizeof(acks), "%s.*", r->inbox);
		if ((s = natsConnection_SubscribeSync(&r->acks, r->nc, acks)) !=
		    NATS_OK || (s = natsConnection_SubscribeSync(&r->receipts,
		    r->nc, r->rsubjects)) != NATS_OK) {
			log_errx("remote: cannot subscribe: %s",
			    natsStatus_GetText(s));
			return -1;
		}
	}
	/* Receipts and PubAcks may come in bursts: no limit but memory
	 * (each is bounded when it is read). */
	(void)natsSubscription_SetPendingLimits(r->acks, -1, -1);
	(void)natsSubscription_SetPendingLimits(r->receipts, -1, -1);
	return 0;
}

int
remote_start(struct fanoutd *d)
{
	struct remote *r;
	struct timespec ts;
	int e;

	if (d->conf.nats_servers == NULL)
		return 0;
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		log_errx("remote: out of memory");
		return -1;
	}
	d->remote = r;
	r->d = d;
	TAILQ_INIT(&r->pubs);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if (remote_copy_conf(r, &d->conf) < 0) {
		log_errx("remote: out of memory, or no credential for "
		    "nats_tls_key");
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(r->nonce, sizeof(r->nonce), "%llx%lx%x",
	    (unsigned long long)ts.tv_sec, ts.tv_nsec, (unsigned)getpid());
	if (nats_Open(-1) != NATS_OK) {
		log_errx("remote: cannot initialise libnats");
		return -1;
	}
	if ((e = pthread_create(&r->thread, NULL, admin_thread, r)) != 0) {
		log_errx("remote: cannot start a thread: %s", strerror(e));
		return -1;
	}
	r->thread_started = true;
	notify_status("setting up stream %s and %u remote worker%s",
	    r->stream, r->n, PLURAL(r->n));
	if (!remote_wait_set_up(r, d->conf.start_timeout_ms))
		log_warnx("remote: stream %s not set up within %u ms; "
		    "remote workers are `down' until it is", r->stream,
		    d->conf.start_timeout_ms);
	if ((e = natsloop_new(d->ev, on_nats, r, &r->nl)) < 0 ||
	    (e = sd_event_add_time(d->ev, &r->puback_timer, CLOCK_MONOTONIC,
	    0, 1000, on_puback_timer, r)) < 0) {
		log_errx("remote: cannot set up the event loop: %s",
		    strerror(-e));
		return -1;
	}
	(void)sd_event_source_set_enabled(r->puback_timer, SD_EVENT_OFF);
	if (remote_connect(r) < 0)
		return -1;
	d->nremote = r->n;
	log_info("remote: %u remote worker%s through stream %s", r->n,
	    PLURAL(r->n), r->stream);
	return 0;
}

void
remote_free(struct fanoutd *d)
{
	struct remote *r = d->remote;
	struct rpend *p;
	uint32_t j;

	if (r == NULL)
		return;
	if (r->nl != NULL && r->nc != NULL && natsloop_flush(r->nl, 1000) < 0)
		log_debug("remote: the last publishes may not have left");
	if (r->nl != NULL)
		natsloop_release(r->nl);
	natsSubscription_Destroy(r->acks);
	natsSubscription_Destroy(r->receipts);
	if (r->nc != NULL) {
		natsConnection_Close(r->nc);
		natsConnection_Destroy(r->nc);
	}
	if (r->thread_started) {
		pthread_mutex_lock(&r->mu);
		r->stop = true;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->thread, NULL);
	}
	nats_CloseAndWait(2000);
	natsloop_free(r->nl);
	r->puback_timer = sd_event_source_disable_unref(r->puback_timer);
	while ((p = TAILQ_FIRST(&r->pubs)) != NULL) {
		TAILQ_REMOVE(&r->pubs, p, entry);
		rpend_free(p);
	}
	for (j = 0; j < r->n; j++) {
		while ((p = TAILQ_FIRST(&r->w[j].stored)) != NULL) {
			stored_remove(&r->w[j], p);
			rpend_free(p);
		}
		free(r->w[j].early);
	}
	strv_free(r->servers);
	free(r->ca);
	free(r->cert);
	free(r->key_path);
	free(r->w);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
	d->remote = NULL;
	d->nremote = 0;
}

/* fanoutd -t: the broker, if it answers. */
int
remote_check(const struct fanout_conf *conf, const char *path)
{
	struct natsloop_conf c = {
		.servers = conf->nats_servers, .name = "fanoutd -t",
		.timeout_ms = 2000,
	};
	jsAccountInfo *ai = NULL;
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	jsCtx *js = NULL;
	jsErrCode jerr = 0;
	char *key = NULL;
	natsStatus s;
	int64_t mp;
	int rc = 0;

	if (conf->nats_servers == NULL)
		return 0;
	if (conf->nats_tls_ca[0] != '\0')
		c.ca = conf->nats_tls_ca;
	if (conf->nats_tls_cert[0] != '\0') {
		c.cert = conf->nats_tls_cert;
		/* A credential outside the unit: conf_load said so. */
		if ((c.key = key = credential_path(conf->nats_tls_key)) == NULL)
			return 0;
	}
	if (nats_Open(-1) != NATS_OK) {
		free(key);
		return 0;
	}
	if ((s = natsloop_options_new(&c, &o)) == NATS_OK)
		s = natsConnection_Connect(&nc, o);
	if (s != NATS_OK) {
		fprintf(stderr, "fanoutd: the broker (%s%s) is not reachable: "
		    "%s; max_payload and JetStream not checked\n",
		    conf->nats_servers[0], conf->nats_servers[1] ? ", ..." : "",
		    natsStatus_GetText(s));
		goto out;
	}
	mp = natsConnection_GetMaxPayload(nc);
	if (mp > 0 && mp < (int64_t)conf->max_message_bytes +
	    REMOTE_HEADERS_MAX) {
		fprintf(stderr, "fanoutd: %s: max_message_bytes is %u, but the "
		    "broker takes messages of at most %lld bytes, %d of them "
		    "for headers (max_payload): lower max_message_bytes to "
		    "%lld, or raise max_payload in nats-server.conf\n", path,
		    conf->max_message_bytes, (long long)mp, REMOTE_HEADERS_MAX,
		    (long long)mp - REMOTE_HEADERS_MAX);
		rc = -1;
	}
	if ((s = natsConnection_JetStream(&js, nc, NULL)) == NATS_OK)
		s = js_GetAccountInfo(&ai, js, NULL, &jerr);
	if (s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr ||
	    jerr == JSNotEnabledForAccountErr) {
		fprintf(stderr, "fanoutd: the broker has no JetStream for "
		    "fanoutd's user: enable it in nats-server.conf (jetstream "
		    "{ store_dir: ... })\n");
		rc = -1;
	} else if (s != NATS_OK)
		fprintf(stderr, "fanoutd: the broker: JetStream not checked: "
		    "%s\n", natsStatus_GetText(s));
out:
	jsAccountInfo_Destroy(ai);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	nats_CloseAndWait(1000);
	free(key);
	return rc;
}
