/* SPDX-License-Identifier: MIT */
/*
 * fanout-remote-worker: a worker on another host.  It reads the messages of
 * its own queue in a NATS JetStream stream (subject PREFIX.w.NAME, durable
 * pull consumer NAME, one message in flight), runs its handler on each,
 * exactly as a local fanout-worker does, publishes a receipt (proto.h) and
 * then acks.  Delivery is at least once: the last stream sequence handled
 * is kept on disk, so that a message redelivered after a crash between
 * handling and acking is acked (and its receipt sent again) without running
 * the handler twice.
 *
 * A separate program rather than a mode of fanout-worker: only it links
 * libnats and its threads, and it shares nothing with the TCP link but the
 * handler.  The broker connection is driven from sd-event (natsloop.c);
 * the one blocking step, checking the consumer, happens on a connection of
 * its own before the event loop starts.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>
#include <systemd/sd-event.h>

#include "conf.h"
#include "handler.h"
#include "log.h"
#include "natsloop.h"
#include "notify.h"
#include "proto.h"
#include "rconf.h"
#include "syncer.h"
#include "util.h"

#define STATE_FILE	"last-handled"
#define PULL_EXPIRES_MS	30000	/* a pull request's life on the server */
#define PULL_GRACE_MS	5000	/* then ask again if nothing came back */
#define RETRY_MIN_MS	250	/* before READY: broker, consumer */
#define RETRY_MAX_MS	5000
#define EXIT_FLUSH_MS	2000	/* for the last ack and receipt to leave */
/* A record reaches the disk at most this long, plus a sync, after it was
 * written, with every record written meanwhile: a sync per record cost a
 * disk flush per message.  Short beside the broker's own window (it syncs
 * every 2 minutes by default): a broker that lost an ack it had taken
 * redelivers, and the synced record keeps the handler from a rerun. */
#define STATE_SYNC_MS	100
#define SUBJECT_MAX	(RCONF_TOKEN_MAX * 2 + 64)

struct rw {
	sd_event	*ev;
	struct rconf	 rc;
	const char	*name;
	char		 wsubject[SUBJECT_MAX];	/* PREFIX.w.NAME */
	char		 rsubject[SUBJECT_MAX];	/* PREFIX.r.NAME, receipts' */
	char		 next[SUBJECT_MAX];	/* the pull API subject */
	char		 pull_req[64];		/* and what it is sent */
	char		 inbox_prefix[SUBJECT_MAX];
	char		 inbox[SUBJECT_MAX + 32];	/* prefix.nuid */
	char		*key_path;		/* resolved nats_tls_key */
	natsConnection	*nc;
	natsSubscription *sub;
	struct natsloop	*nl;
	struct handler	*h;
	sd_event_source	*pull_timer;
	int		 dirfd;			/* the state directory */
	int		 statefd;		/* its STATE_FILE */
	struct syncer	*syncer;		/* of statefd */
	int		 sync_error;		/* its last, logged */
	uint64_t	 gen;			/* of the record on disk */
	/* What is on disk: the last message handled, its result. */
	int64_t		 created;		/* the consumer's */
	uint64_t	 last_seq;
	uint32_t	 last_status;
	char		 last_reason[FANOUT_REASON_MAX];
	size_t		 last_reason_len;
	/* The message being handled. */
	bool		 busy;
	uint64_t	 cur_seq;
	char		*cur_reply;
	uint64_t	 cur_id;			/* its fanout id, or 0 */
	bool		 pulling;		/* a pull request out */
	bool		 ready;
	bool		 stopping;
	bool		 stop_before_ack;	/* --debug-stop-before-ack */
	uint64_t	 handled, skipped;
};

static void __attribute__((noreturn))
usage(FILE *f, int code)
{
	fprintf(f,
	    "usage: fanout-remote-worker --name NAME --config FILE "
	    "[--state-dir DIR] [-v]\n"
	    "Handle the messages fanoutd queues for remote worker NAME in a "
	    "NATS JetStream\nbroker, in order, and send a receipt for each.\n\n"
	    "  -n, --name NAME      this worker's name (its consumer and "
	    "subjects)\n"
	    "  -c, --config FILE    the worker's configuration file\n"
	    "  -s, --state-dir DIR  where the last message handled is kept\n"
	    "                       (default: $STATE_DIRECTORY)\n"
	    "  -v, --verbose        log debug messages too; -vv: a line per "
	    "message\n"
	    "  -h, --help           show this help and exit\n"
	    "  -V, --version        show the version and exit\n");
	exit(code);
}

/* --- the state directory ------------------------------------------------ */

/*
 * The file STATE_FILE has two slots of STATE_SLOT bytes, written in turn:
 * "v2 GEN CREATED SEQ STATUS REASON SUM\n" then NULs, REASON in hex or
 * "-", SUM the FNV-1a hash of what precedes it.  The slot with the
 * highest GEN whose SUM holds is the record: a crash in the middle of a
 * write leaves the other slot whole, and a message costs one pwrite and
 * a share of one fdatasync (the file's size never changes once made;
 * the syncer's, one per STATE_SYNC_MS), where a new file renamed
 * over the old cost two fsyncs and four more calls.  A file
 * of the first format ("v1 ...", one record) is read, and overwritten
 * slot by slot.
 */
#define STATE_SLOT	512

static uint64_t
fnv1a(const char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (len-- > 0)
		h = (h ^ (unsigned char)*p++) * 0x100000001b3ULL;
	return h;
}

/* The reason from hex, or "-": 0, or -EBADMSG. */
static int
state_reason(struct rw *rw, const char *hex)
{
	size_t i, n = strlen(hex);

	rw->last_reason_len = 0;
	if (strcmp(hex, "-") == 0)
		return 0;
	if (n % 2 != 0 || n / 2 > FANOUT_REASON_MAX)
		return -EBADMSG;
	for (i = 0; i < n / 2; i++) {
		unsigned b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -EBADMSG;
		rw->last_reason[i] = (char)b;
	}
	rw->last_reason_len = n / 2;
	return 0;
}

/* One slot: its generation, or 0 if it holds no record. */
static uint64_t
state_slot(struct rw *rw, const char *slot, bool apply)
{
	char line[STATE_SLOT + 1], hex[2 * FANOUT_REASON_MAX + 2];
	_Static_assert(sizeof(hex) == 402, "the sscanf width below");
	unsigned long long gen, seq, sum;
	long long created;
	unsigned status;
	size_t len;
	int end = 0;

	memcpy(line, slot, STATE_SLOT);
	line[STATE_SLOT] = '\0';
	if ((len = strcspn(line, "\n")) == STATE_SLOT)
		return 0;
	line[len] = '\0';
	if (sscanf(line, "v2 %llu %lld %llu %u %401s %llx%n", &gen, &created,
	    &seq, &status, hex, &sum, &end) != 6 || (size_t)end != len ||
	    gen == 0 || sum != fnv1a(line, strrchr(line, ' ') - line))
		return 0;
	if (apply) {
		if (state_reason(rw, hex) < 0)
			return 0;
		rw->gen = gen;
		rw->created = created;
		rw->last_seq = seq;
		rw->last_status = status;
	}
	return gen;
}

/* Opens (or makes) the state file and reads the record: 0, or -errno
 * (-EBADMSG: not a state file of this program). */
static int
state_load(struct rw *rw)
{
	char buf[2 * STATE_SLOT], hex[2 * FANOUT_REASON_MAX + 2];
	unsigned long long seq;
	uint64_t g0, g1;
	long long created;
	unsigned status;
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = openat(rw->dirfd, STATE_FILE, O_RDWR | O_CREAT | O_CLOEXEC,
	    0600)) == -1)
		return -errno;
	rw->statefd = fd;
	memset(buf, 0, sizeof(buf));
	if ((n = pread(fd, buf, sizeof(buf), 0)) < 0 || fstat(fd, &st) == -1)
		return -errno;
	g0 = state_slot(rw, buf, false);
	g1 = state_slot(rw, buf + STATE_SLOT, false);
	if (g0 > 0 || g1 > 0)
		(void)state_slot(rw, g0 > g1 ? buf : buf + STATE_SLOT, true);
	else if (strncmp(buf, "v1 ", 3) == 0) {
		buf[STATE_SLOT - 1] = '\0';
		if (sscanf(buf, "v1 %lld %llu %u %401s", &created, &seq,
		    &status, hex) != 4 || state_reason(rw, hex) < 0)
			return -EBADMSG;
		rw->created = created;
		rw->last_seq = seq;
		rw->last_status = status;
		/* The next save goes to slot 1: the v1 record stays whole
		 * in slot 0 until one is there. */
		rw->gen = 0;
	} else if (n > 0 && buf[0] != '\0')
		return -EBADMSG;
	/* Its size made once, with its name, so that fdatasync is enough
	 * from then on. */
	if (st.st_size != (off_t)sizeof(buf) &&
	    (ftruncate(fd, sizeof(buf)) == -1 || fsync(fd) == -1 ||
	    fsync(rw->dirfd) == -1))
		return -errno;
	return 0;
}

/* Hex text at p, as util.h's put_decimal: snprintf was 4% of a worker's
 * cpu. */
static char *
put_hexdigits(char *p, uint64_t v, int digits)
{
	static const char xd[] = "0123456789abcdef";

	while (digits-- > 0)
		*p++ = xd[(v >> (4 * digits)) & 0xf];
	return p;
}

/* "v2 GEN CREATED SEQ STATUS REASON SUM\n", at most 498 bytes. */
static int
state_save(struct rw *rw)
{
	char buf[STATE_SLOT], *p = buf;
	uint64_t gen = rw->gen + 1;
	size_t i;

	memset(buf, 0, sizeof(buf));
	memcpy(p, "v2 ", 3);
	p = put_decimal(p + 3, gen);
	*p++ = ' ';
	if (rw->created < 0)
		*p++ = '-';
	p = put_decimal(p, rw->created < 0 ? -(uint64_t)rw->created :
	    (uint64_t)rw->created);
	*p++ = ' ';
	p = put_decimal(p, rw->last_seq);
	*p++ = ' ';
	p = put_decimal(p, rw->last_status);
	*p++ = ' ';
	for (i = 0; i < rw->last_reason_len; i++)
		p = put_hexdigits(p, (unsigned char)rw->last_reason[i], 2);
	if (rw->last_reason_len == 0)
		*p++ = '-';
	*p++ = ' ';
	p = put_hexdigits(p, fnv1a(buf, (size_t)(p - buf - 1)), 16);
	*p = '\n';
	if (pwrite(rw->statefd, buf, sizeof(buf),
	    (off_t)(gen % 2) * STATE_SLOT) != (ssize_t)sizeof(buf))
		return errno ? -errno : -EIO;
	rw->gen = gen;
	return 0;
}

/* --- the broker --------------------------------------------------------- */

static natsStatus
make_options(struct rw *rw, natsOptions **out)
{
	char name[128];
	const struct natsloop_conf c = {
		.servers = rw->rc.servers, .name = name,
		.inbox_prefix = rw->inbox_prefix, .timeout_ms = 5000,
		.ca = rw->rc.tls_ca, .cert = rw->rc.tls_cert,
		.key = rw->key_path,
	};

	snprintf(name, sizeof(name), "fanout-remote-worker %s", rw->name);
	return natsloop_options_new(&c, out);
}

/*
 * Waits ms for SIGTERM or SIGINT (blocked, as everything is): true if one
 * came.  Before the event loop runs, this is how a retry sleeps.
 */
static bool
wait_signal(uint32_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	return sigtimedwait(&set, NULL, &ts) > 0;
}

/*
 * The consumer, checked before READY=1 on a connection of its own (the
 * calls block): it must exist, read this worker's subject, want explicit
 * acks and allow one message in flight.  Retries while the broker or the
 * consumer is missing.  0, 1 if asked to stop, or -1 (logged).
 */
static int
consumer_check(struct rw *rw)
{
	uint32_t delay = RETRY_MIN_MS;
	jsConsumerInfo *ci = NULL;
	natsConnection *nc = NULL;
	const char *text;
	natsOptions *o = NULL;
	jsErrCode jerr;
	jsCtx *js = NULL;
	natsStatus s;
	int r = -1;

	if ((s = make_options(rw, &o)) != NATS_OK) {
		log_errx("%s: broker settings: %s", rw->name,
		    natsStatus_GetText(s));
		return -1;
	}
	for (;;) {
		jerr = 0;
		s = NATS_OK;
		if (nc == NULL) {
			s = natsConnection_Connect(&nc, o);
			if (s == NATS_OK)
				s = natsConnection_JetStream(&js, nc, NULL);
		}
		if (s == NATS_OK)
			s = js_GetConsumerInfo(&ci, js, rw->rc.stream, rw->name,
			    NULL, &jerr);
		if (s == NATS_OK)
			break;
		if (s == NATS_NOT_PERMITTED || s == NATS_SSL_ERROR ||
		    s == NATS_CONNECTION_AUTH_FAILED) {
			log_errx("%s: broker: %s", rw->name,
			    nats_GetLastError(NULL));
			goto out;
		}
		/* A refused request is an asynchronous error, and the
		 * request itself only times out. */
		if (nc != NULL && natsConnection_GetLastError(nc, &text) ==
		    NATS_NOT_PERMITTED) {
			log_errx("%s: the broker refuses: %s", rw->name, text);
			goto out;
		}
		if (jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr)
			notify_status("waiting for consumer %s in stream %s",
			    rw->name, rw->rc.stream);
		else
			notify_status("waiting for the broker: %s",
			    natsStatus_GetText(s));
		log_debug("%s: consumer not ready: %s (%d); retry in %u ms",
		    rw->name, natsStatus_GetText(s), (int)jerr, delay);
		if (s != NATS_NOT_FOUND && jerr == 0 && nc != NULL) {
			jsCtx_Destroy(js);
			natsConnection_Destroy(nc);
			js = NULL;
			nc = NULL;
		}
		if (wait_signal(delay)) {
			r = 1;
			goto out;
		}
		delay = delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay * 2;
	}
	if (ci->Config == NULL || ci->Config->AckPolicy != js_AckExplicit ||
	    ci->Config->MaxAckPending != 1 || ci->Config->FilterSubject == NULL
	    || strcmp(ci->Config->FilterSubject, rw->wsubject) != 0) {
		log_errx("%s: consumer %s in stream %s must read only %s, with "
		    "explicit acks and MaxAckPending 1", rw->name, rw->name,
		    rw->rc.stream, rw->wsubject);
		goto out;
	}
	if (rw->last_seq != 0 && rw->created != ci->Created)
		log_notice("%s: consumer %s was created anew: forgetting that "
		    "stream sequence %" PRIu64 " was handled", rw->name,
		    rw->name, rw->last_seq);
	if (rw->created != ci->Created) {
		rw->created = ci->Created;
		rw->last_seq = 0;
	}
	log_debug("%s: consumer %s: ack wait %lld ms, %" PRIu64 " pending",
	    rw->name, rw->name, (long long)(ci->Config->AckWait / 1000000),
	    ci->NumPending);
	r = 0;
out:
	jsConsumerInfo_Destroy(ci);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	return r;
}

static void
pull(struct rw *rw)
{
	natsStatus s;

	if (rw->busy || rw->pulling || rw->stopping || rw->nc == NULL)
		return;
	if ((s = natsConnection_PublishRequestString(rw->nc, rw->next,
	    rw->inbox, rw->pull_req)) != NATS_OK) {
		log_debug("%s: pull request: %s", rw->name,
		    natsStatus_GetText(s));
		return;
	}
	rw->pulling = true;
	(void)sd_event_source_set_time_relative(rw->pull_timer,
	    (uint64_t)(PULL_EXPIRES_MS + PULL_GRACE_MS) * 1000);
	(void)sd_event_source_set_enabled(rw->pull_timer, SD_EVENT_ONESHOT);
}

static int
on_pull_timer(sd_event_source *s, uint64_t usec, void *arg)
{
	struct rw *rw = arg;

	(void)s;
	(void)usec;
	rw->pulling = false;
	pull(rw);
	return 0;
}

/*
 * The receipt, then the ack: fanoutd may count on a receipt for every
 * message acked.  For a message just handled (fresh), its record is in the
 * state file already (on_handler_done), so that no crash of this process
 * can run its handler again; the syncer puts it on the disk meanwhile,
 * and nothing waits for that.  After a crash of the whole host the
 * handler runs again only if the record had not reached the disk and the
 * ack had not reached the broker either: waiting for the disk before
 * acking would only widen that window, by the length of a sync.
 */
static void
finish(struct rw *rw, const char *reply, uint64_t seq, uint64_t id,
    uint32_t status, const char *reason, size_t reason_len, bool fresh)
{
	char subj[SUBJECT_MAX + 64], *p;
	natsStatus s;

	/* PREFIX.r.NAME.SEQ.STATUS.ID (proto.h): no headers to build. */
	p = stpcpy(subj, rw->rsubject);
	*p++ = '.';
	p = put_decimal(p, seq);
	*p++ = '.';
	p = put_decimal(p, status);
	*p++ = '.';
	*put_decimal(p, id) = '\0';
	if ((s = natsConnection_Publish(rw->nc, subj, reason,
	    (int)reason_len)) != NATS_OK)
		log_warnx("%s: receipt for sequence %" PRIu64 ": %s", rw->name,
		    seq, natsStatus_GetText(s));
	if (fresh && rw->stop_before_ack) {
		/* --debug-stop-before-ack: the crash window, held open,
		 * the receipt out. */
		(void)natsloop_flush(rw->nl, 1000);
		(void)raise(SIGSTOP);
	}
	/* Not acked, it comes back after the consumer's ack wait. */
	if ((s = natsConnection_PublishString(rw->nc, reply, "+ACK")) !=
	    NATS_OK)
		log_warnx("%s: ack for sequence %" PRIu64 ": %s", rw->name,
		    seq, natsStatus_GetText(s));
}

static void
on_handler_done(void *arg, uint64_t id, uint32_t status, const char *reason,
    size_t reason_len)
{
	struct rw *rw = arg;
	int r;

	(void)id;
	if (!rw->busy)
		return;
	rw->last_seq = rw->cur_seq;
	rw->last_status = status;
	if (reason_len > FANOUT_REASON_MAX)
		reason_len = FANOUT_REASON_MAX;
	if (reason_len > 0)	/* a success may come with reason NULL */
		memcpy(rw->last_reason, reason, reason_len);
	rw->last_reason_len = reason_len;
	if ((r = state_save(rw)) < 0)
		/* Handled, but a crash now would run it again: say so. */
		log_warnx("%s: cannot record sequence %" PRIu64 " as handled: "
		    "%s", rw->name, rw->cur_seq, strerror(-r));
	else {
		r = syncer_request(rw->syncer);
		/* Once a failure, not once a message: the disk is the same. */
		if (r < 0 && r != rw->sync_error)
			log_warnx("%s: cannot sync %s: %s", rw->name,
			    STATE_FILE, strerror(-r));
		rw->sync_error = r;
	}
	log_trace("%s: sequence %" PRIu64 " (id %" PRIu64 ") handled: "
	    "status %u", rw->name, rw->cur_seq, rw->cur_id, status);
	finish(rw, rw->cur_reply, rw->cur_seq, rw->cur_id, status, reason,
	    reason_len, true);
	rw->handled++;
	rw->busy = false;
	free(rw->cur_reply);
	rw->cur_reply = NULL;
	if (!rw->stopping)
		pull(rw);
}

/* The handler's answer, in a turn of its own: what finish and pull
 * published leaves now.  (take answers at once for a message without a
 * handler, inside the input's turn, which sends it.) */
static void
on_handler_result(void *arg, uint64_t id, uint32_t status, const char *reason,
    size_t reason_len)
{
	struct rw *rw = arg;

	on_handler_done(rw, id, status, reason, reason_len);
	natsloop_send(rw->nl);
}

/*
 * The stream sequence from a JetStream ack subject:
 * $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>,
 * or with <domain>.<account hash> after ACK (and a token more at the end).
 */
static int
ack_seq(const char *reply, uint64_t *seq)
{
	const char *tok[12];
	char buf[24];
	size_t n = 0, len;
	const char *p;

	if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0)
		return -1;
	for (p = reply + 8; n < nitems(tok); n++) {
		tok[n] = p;
		if ((p = strchr(p, '.')) == NULL) {
			n++;
			break;
		}
		p++;
	}
	if (n == 7)
		p = tok[3];
	else if (n == 9 || n == 10)
		p = tok[5];
	else
		return -1;
	len = strcspn(p, ".");
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, p, len);
	buf[len] = '\0';
	return parse_uint(buf, 1, UINT64_MAX, seq);
}

static void
take(struct rw *rw, natsMsg *m)
{
	const char *reply = natsMsg_GetReply(m), *ids;
	const uint8_t *data = (const uint8_t *)natsMsg_GetData(m);
	size_t len = (size_t)natsMsg_GetDataLength(m);
	uint64_t seq, id = 0;
	static const char toobig[] = "larger than max_message_bytes";
	int r;

	if (ack_seq(reply, &seq) < 0) {
		log_warnx("%s: a message without a JetStream ack subject (%s): "
		    "ignored", rw->name, reply ? reply : "none");
		return;
	}
	/* Only for the handler and the receipt: the decimal that ends
	 * Nats-Msg-Id (proto.h), 0 when there is none. */
	if (natsMsgHeader_Get(m, FANOUT_HDR_MSGID, &ids) != NATS_OK ||
	    (ids = strrchr(ids, '-')) == NULL ||
	    parse_uint(ids + 1, 0, UINT64_MAX, &id) < 0)
		id = 0;
	if (rw->stopping) {
		/* Came in after SIGTERM: back to the broker at once. */
		(void)natsConnection_PublishString(rw->nc, reply, "-NAK");
		return;
	}
	if (seq <= rw->last_seq) {
		/* Handled before a crash or a lost ack: not again. */
		log_debug("%s: sequence %" PRIu64 " was handled already: "
		    "acked again", rw->name, seq);
		rw->skipped++;
		if (seq == rw->last_seq)
			finish(rw, reply, seq, id, rw->last_status,
			    rw->last_reason, rw->last_reason_len, false);
		else
			(void)natsConnection_PublishString(rw->nc, reply,
			    "+ACK");
		pull(rw);
		return;
	}
	if (rw->busy) {
		char *dup;

		if (seq != rw->cur_seq) {
			log_warnx("%s: sequence %" PRIu64 " arrived while %"
			    PRIu64 " runs: MaxAckPending is not 1?", rw->name,
			    seq, rw->cur_seq);
			return;
		}
		/* Redelivered while its handler runs: the running one
		 * answers for it, acking the latest delivery.  No pull is
		 * out while a handler runs, so this takes a stray pull
		 * request. */
		log_debug("%s: sequence %" PRIu64 " redelivered while its "
		    "handler runs", rw->name, seq);
		if ((dup = strdup(reply)) != NULL) {
			free(rw->cur_reply);
			rw->cur_reply = dup;
		}
		return;
	}
	rw->busy = true;
	rw->cur_seq = seq;
	rw->cur_id = id;
	if ((rw->cur_reply = strdup(reply)) == NULL)
		fatalx("%s: out of memory", rw->name);
	if (len > rw->rc.max_message_bytes) {
		log_warnx("%s: sequence %" PRIu64 ": %zu bytes, %s", rw->name,
		    seq, len, toobig);
		on_handler_done(rw, id, HS_NOSTART, toobig,
		    sizeof(toobig) - 1);
		return;
	}
	if (rw->h == NULL) {
		on_handler_done(rw, id, HS_OK, "", 0);
		return;
	}
	if ((r = handler_submit(rw->h, id, data, len)) < 0)
		fatalx("%s: cannot take a message: %s", rw->name,
		    strerror(-r));
	handler_start(rw->h);
}

static void
drain_inbox(struct rw *rw)
{
	const char *st;
	natsMsg *m;

	while (rw->sub != NULL &&
	    natsloop_next(rw->sub, &m) == NATS_OK) {
		rw->pulling = false;
		if (natsMsg_GetDataLength(m) == 0 &&
		    natsMsgHeader_Get(m, "Status", &st) == NATS_OK) {
			/* 408: the request expired; 409: the server dropped
			 * it; 404: nothing; 503: no consumer (any more). */
			if (strcmp(st, "408") != 0 && strcmp(st, "404") != 0)
				log_debug("%s: pull request ended: status %s",
				    rw->name, st);
			if (strcmp(st, "503") == 0) {
				log_warnx("%s: no consumer %s in stream %s",
				    rw->name, rw->name, rw->rc.stream);
				rw->pulling = true;	/* the timer retries */
			}
		} else
			take(rw, m);
		natsloop_dispose(rw->nl, m);
	}
	pull(rw);
}

static void
on_idle(void *arg)
{
	struct rw *rw = arg;

	(void)sd_event_exit(rw->ev, 0);
}

static void
on_nats(void *arg, enum natsloop_event e, natsStatus st)
{
	struct rw *rw = arg;
	const char *text = NULL;

	switch (e) {
	case NL_INPUT:
		drain_inbox(rw);
		/* The receipt, the ack and the next pull: now, in one
		 * write, not one more turn of the loop later. */
		natsloop_send(rw->nl);
		break;
	case NL_CONNECTED:
		log_notice("%s: connected to the broker", rw->name);
		notify_status("connected; %" PRIu64 " handled", rw->handled);
		/* A pull request may have died with the old connection. */
		rw->pulling = false;
		pull(rw);
		break;
	case NL_DISCONNECTED:
		if (!rw->stopping) {
			log_warnx("%s: lost the broker; reconnecting",
			    rw->name);
			notify_status("reconnecting to the broker");
		}
		break;
	case NL_CLOSED:
		if (!rw->stopping)
			fatalx("%s: the broker connection closed", rw->name);
		break;
	case NL_ERROR:
		/* The connection's own record: nats_GetLastError is per
		 * thread, and the error came from another. */
		if (rw->nc == NULL ||
		    natsConnection_GetLastError(rw->nc, &text) == NATS_OK ||
		    text == NULL || text[0] == '\0')
			text = natsStatus_GetText(st);
		/* A permission violation: this identity may not read its
		 * queue or send its receipts.  Nothing gets better. */
		if (st == NATS_NOT_PERMITTED)
			fatalx("%s: the broker refuses: %s", rw->name, text);
		log_warnx("%s: broker: %s", rw->name, text);
		break;
	}
}

static int
on_term(sd_event_source *s, const struct signalfd_siginfo *si, void *arg)
{
	struct rw *rw = arg;

	(void)s;
	if (rw->stopping)
		return 0;
	log_info("%s: %s: stopping", rw->name, strsignal((int)si->ssi_signo));
	rw->stopping = true;
	notify_stopping();
	if (rw->h != NULL)
		handler_drain(rw->h, on_idle);
	else
		(void)sd_event_exit(rw->ev, 0);
	return 0;
}

static int
on_ignored(sd_event_source *s, const struct signalfd_siginfo *si, void *arg)
{
	struct rw *rw = arg;

	(void)s;
	log_debug("%s: %s from pid %u: ignored", rw->name,
	    strsignal((int)si->ssi_signo), si->ssi_pid);
	return 0;
}

/* The loop connection, its inbox, READY=1. */
static void
connect_loop(struct rw *rw)
{
	natsOptions *o;
	natsStatus s;
	char *nuid;

	if ((s = make_options(rw, &o)) != NATS_OK ||
	    (s = natsloop_options(rw->nl, o)) != NATS_OK ||
	    /* Each publish is written at once: no flusher thread delay. */
	    (s = natsOptions_SetSendAsap(o, true)) != NATS_OK)
		fatalx("%s: broker settings: %s", rw->name,
		    natsStatus_GetText(s));
	s = natsConnection_Connect(&rw->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
		fatalx("%s: cannot connect to the broker: %s", rw->name,
		    natsStatus_GetText(s));
	if ((s = natsInbox_Create(&nuid)) != NATS_OK)
		fatalx("%s: inbox: %s", rw->name, natsStatus_GetText(s));
	/* "_INBOX.<nuid>": the same nuid under this worker's prefix. */
	snprintf(rw->inbox, sizeof(rw->inbox), "%s.%s", rw->inbox_prefix,
	    strrchr(nuid, '.') + 1);
	natsInbox_Destroy(nuid);
	if ((s = natsConnection_SubscribeSync(&rw->sub, rw->nc, rw->inbox))
	    != NATS_OK)
		fatalx("%s: cannot subscribe to %s: %s", rw->name, rw->inbox,
		    natsStatus_GetText(s));
	pull(rw);
	notify_ready("connected; pulling");
	rw->ready = true;
	if (rw->last_seq > 0)
		log_info("%s: ready: pulling %s from stream %s; sequence %"
		    PRIu64 " was the last handled", rw->name, rw->wsubject,
		    rw->rc.stream, rw->last_seq);
	else
		log_info("%s: ready: pulling %s from stream %s", rw->name,
		    rw->wsubject, rw->rc.stream);
}

static int
open_state_dir(const char *opt)
{
	const char *sd = getenv("STATE_DIRECTORY");
	char dir[PATH_MAX];
	int fd;

	if (opt != NULL)
		snprintf(dir, sizeof(dir), "%s", opt);
	else if (sd != NULL && sd[0] == '/')
		snprintf(dir, sizeof(dir), "%.*s", (int)strcspn(sd, ":"), sd);
	else {
		fprintf(stderr, "fanout-remote-worker: no state directory: "
		    "give --state-dir or run under systemd with "
		    "StateDirectory=\n");
		exit(2);
	}
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		fprintf(stderr, "fanout-remote-worker: %s: %s\n", dir,
		    strerror(errno));
		exit(1);
	}
	return fd;
}

enum { OPT_STOP_BEFORE_ACK = 256 };

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "name",	required_argument,	NULL, 'n' },
		{ "config",	required_argument,	NULL, 'c' },
		{ "state-dir",	required_argument,	NULL, 's' },
		{ "verbose",	no_argument,		NULL, 'v' },
		{ "help",	no_argument,		NULL, 'h' },
		{ "version",	no_argument,		NULL, 'V' },
		{ "debug-stop-before-ack", no_argument,	NULL,
		    OPT_STOP_BEFORE_ACK },
		{ NULL,		0,			NULL, 0 }
	};
	struct rw rw = { .dirfd = -1, .statefd = -1 };
	const char *config = NULL, *state_dir = NULL, *why;
	struct handler_conf hc = { .restart_max_ms = 30000 };
	int stray[SIG_STRAY_MAX];
	size_t nstray, i;
	uint64_t syncs;
	int ch, verbose = 0, r, sr;

	while ((ch = getopt_long(argc, argv, "n:c:s:vhV", longopts, NULL))
	    != -1) {
		switch (ch) {
		case 'n':
			rw.name = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 's':
			state_dir = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case OPT_STOP_BEFORE_ACK:
			rw.stop_before_ack = true;
			break;
		case 'h':
			usage(stdout, 0);
		case 'V':
			printf("fanout-remote-worker %s (nats.c %s)\n",
			    PACKAGE_VERSION, nats_GetVersion());
			return 0;
		default:
			usage(stderr, 2);
		}
	}
	if (rw.name == NULL || config == NULL || optind < argc) {
		fprintf(stderr, "fanout-remote-worker: --name and --config "
		    "are required\n");
		usage(stderr, 2);
	}
	if (rconf_check_name(rw.name, 0, &why) < 0) {
		fprintf(stderr, "fanout-remote-worker: --name: \"%s\" %s\n",
		    rw.name, why);
		return 2;
	}
	if (rconf_load(config, &rw.rc, stderr) < 0)
		return 1;
	rw.dirfd = open_state_dir(state_dir);
	log_init("fanout-remote-worker", verbose);
	if ((r = state_load(&rw)) < 0)
		fatalx("%s: %s: %s", rw.name, STATE_FILE, r == -EBADMSG ?
		    "not a state file of this program" : strerror(-r));
	if (rw.rc.tls_key != NULL &&
	    (rw.key_path = credential_path(rw.rc.tls_key)) == NULL)
		fatalx("%s: nats_tls_key \"%s\": no $CREDENTIALS_DIRECTORY to "
		    "find it in", rw.name, rw.rc.tls_key);
	snprintf(rw.wsubject, sizeof(rw.wsubject), "%s.w.%s", rw.rc.prefix,
	    rw.name);
	snprintf(rw.rsubject, sizeof(rw.rsubject), "%s.r.%s", rw.rc.prefix,
	    rw.name);
	snprintf(rw.next, sizeof(rw.next), "$JS.API.CONSUMER.MSG.NEXT.%s.%s",
	    rw.rc.stream, rw.name);
	snprintf(rw.pull_req, sizeof(rw.pull_req),
	    "{\"batch\":1,\"expires\":%llu}",
	    (unsigned long long)PULL_EXPIRES_MS * 1000000);
	snprintf(rw.inbox_prefix, sizeof(rw.inbox_prefix), "_INBOX.%s",
	    rw.name);

	/* Before nats.c starts a thread: they all inherit the mask. */
	if ((r = sig_setup(NULL, stray)) < 0)
		fatalx("sigprocmask: %s", strerror(-r));
	nstray = (size_t)r;
	if (std_fds_open() == -1)
		return 1;
	if (nats_Open(-1) != NATS_OK)
		fatalx("%s: cannot initialise libnats", rw.name);

	if ((r = consumer_check(&rw)) != 0) {
		nats_CloseAndWait(2000);
		rconf_free(&rw.rc);
		return r > 0 ? 0 : 1;
	}
	if ((r = syncer_start(&rw.syncer, rw.statefd, STATE_SYNC_MS)) < 0)
		fatalx("%s: cannot start the sync thread: %s", rw.name,
		    strerror(-r));
	if ((r = sd_event_new(&rw.ev)) < 0 ||
	    (r = sd_event_add_signal(rw.ev, NULL, SIGTERM, on_term, &rw)) < 0 ||
	    (r = sd_event_add_signal(rw.ev, NULL, SIGINT, on_term, &rw)) < 0 ||
	    (r = sd_event_add_signal(rw.ev, NULL, SIGHUP, on_ignored, &rw)) < 0 ||
	    (r = sd_event_add_time_relative(rw.ev, &rw.pull_timer,
	    CLOCK_MONOTONIC, 1000000, 0, on_pull_timer, &rw)) < 0 ||
	    (r = sd_event_source_set_enabled(rw.pull_timer, SD_EVENT_OFF)) < 0 ||
	    (r = natsloop_new(rw.ev, on_nats, &rw, &rw.nl)) < 0)
		fatalx("%s: cannot set up the event loop: %s", rw.name,
		    strerror(-r));
	for (i = 0; i < nstray; i++)
		if ((r = sd_event_add_signal(rw.ev, NULL, stray[i], on_ignored,
		    &rw)) < 0)
			fatalx("%s: cannot set up the event loop: signal %d: "
			    "%s", rw.name, stray[i], strerror(-r));
	if (rw.rc.handler != NULL) {
		hc.argv = rw.rc.handler;
		hc.mode = rw.rc.handler_mode;
		hc.framing = rw.rc.handler_framing;
		hc.timeout_ms = rw.rc.handler_timeout_ms;
		if ((r = handler_new(rw.ev, &hc, on_handler_result, &rw,
		    &rw.h)) < 0)
			fatalx("%s: cannot set up the handler: %s", rw.name,
			    strerror(-r));
	}
	connect_loop(&rw);

	r = sd_event_loop(rw.ev);
	log_limit_flush(true);

	/* The last receipt and ack: written, or given up on. */
	if (natsloop_flush(rw.nl, EXIT_FLUSH_MS) < 0)
		log_warnx("%s: the last ack may not have reached the broker: "
		    "the message will come back, and be skipped", rw.name);
	natsloop_release(rw.nl);
	natsSubscription_Destroy(rw.sub);
	natsConnection_Close(rw.nc);
	natsConnection_Destroy(rw.nc);
	handler_free(rw.h);
	nats_CloseAndWait(2000);
	natsloop_free(rw.nl);
	rw.pull_timer = sd_event_source_disable_unref(rw.pull_timer);
	sd_event_unref(rw.ev);
	/* The last records, on the disk before exit 0. */
	if ((sr = syncer_stop(rw.syncer, &syncs)) < 0)
		log_warnx("%s: cannot sync %s: %s", rw.name, STATE_FILE,
		    strerror(-sr));
	log_info("%s: stopped: %" PRIu64 " handled, %" PRIu64 " redelivered "
	    "and skipped; records synced to the disk %" PRIu64 " time%s",
	    rw.name, rw.handled, rw.skipped, syncs, PLURAL(syncs));
	free(rw.cur_reply);
	free(rw.key_path);
	if (rw.statefd != -1)
		close(rw.statefd);
	close(rw.dirfd);
	rconf_free(&rw.rc);
	return r < 0 ? 1 : 0;
}
