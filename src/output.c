/* SPDX-License-Identifier: MIT */
/*
 * fanoutctl's output: the text lines the man page documents, or one JSON
 * object per reply for scripts (format 1, built with jansson).  Nothing
 * here talks to the daemon.
 *
 * Every value of a status line is one token without whitespace, so that
 * scripts can find a value by the word before it or, in the table of
 * workers, by its column's name.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fanoutctl.h"
#include "util.h"

/* The "format" member: raised when a member changes meaning or goes. */
static const char *const outcome_names[] = ACK_OUTCOME_NAMES;
static const char *const state_names[] = WIRE_STATE_NAMES;
static const char *const result_names[] = CTL_RESULT_NAMES;
static const char *const hs_names[] = HS_NAMES_FROM_TIMEOUT;
_Static_assert(nitems(hs_names) == HS_BADANSWER - HS_TIMEOUT + 1,
    "one name per enum handler_status from HS_TIMEOUT");
/* enum worker_exit, as JSON shows it */
static const char *const exit_names[] = {
	"none", "exited", "killed", "stalled", "link", "start-timeout"
};
_Static_assert(nitems(exit_names) == WX_STARTFAIL + 1,
    "one name per enum worker_exit");

/* Room for any token below: a duration, a status, an rtt. */
#define TOKEN_LEN	48
/* Room for a string from the daemon once escaped: \xNN per byte. */
#define ESCAPED_LEN(n)	(4 * (n) + 1)
_Static_assert(FANOUT_VERSION_MAX <= FANOUT_REASON_MAX,
    "a reason's buffer holds a version too");

static const char *
name_of(const char *const *names, size_t n, unsigned v)
{
	return v < n ? names[v] : "unknown";
}
#define NAME(tab, v)	name_of(tab, nitems(tab), v)

const char *
output_state(unsigned state)
{
	return NAME(state_names, state);
}

const char *
output_result(uint32_t result)
{
	return NAME(result_names, result);
}

bool
output_all_acked(const struct reply *rp)
{
	uint32_t i;

	if (rp->end.result != CTL_RES_OK || rp->end.failed > 0)
		return false;
	for (i = 0; i < rp->nrec; i++)
		if (rp->rec[i].w.outcome != ACK_OK)
			return false;
	return true;
}

/*
 * A string from the daemon (a version, a handler's reason), which is not
 * ours to trust, as printable ASCII: other bytes and the backslash become
 * \xNN, and so does a space if it must be one token.  out has room for
 * ESCAPED_LEN(len).
 */
static const char *
escape(char *out, const char *s, size_t len, bool token)
{
	static const char hex[] = "0123456789abcdef";
	char *o = out;
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= (token ? 0x21 : 0x20) && c <= 0x7e && c != '\\') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '\\';
		*o++ = 'x';
		*o++ = hex[c >> 4];
		*o++ = hex[c & 0xf];
	}
	*o = '\0';
	return out;
}

/* 850ms, 12.3s, 5m02s, 3h04m, 2d03h: two units at most, truncated. */
static const char *
fmt_dur(char *buf, size_t len, uint64_t ms)
{
	uint64_t s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, len, "%" PRIu64 "ms", ms);
	else if (s < 60)
		snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "s", s,
		    ms % 1000 / 100);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60,
		    s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600,
		    s % 3600 / 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400,
		    s % 86400 / 3600);
	return buf;
}

static const char *
fmt_rtt(char *buf, size_t len, uint32_t us)
{
	if (us == 0)
		return "-";
	snprintf(buf, len, "%.3fms", us / 1000.0);
	return buf;
}

/* KILL, or the number of a signal without a name. */
static const char *
sig_name(char buf[4], uint8_t sig)
{
	const char *s = sigabbrev_np(sig);

	if (s != NULL)
		return s;
	snprintf(buf, 4, "%u", sig);
	return buf;
}

/*
 * A handler's result (enum handler_status) as text and JSON show it:
 * "exit 3", "signal KILL", "timeout", "not-started", "handler-lost",
 * "unframeable", "bad-answer"; "status N" for one this fanoutctl does not
 * know.
 */
static const char *
fmt_status(char *buf, size_t len, uint32_t status)
{
	char sig[4];

	if (HS_IS_EXIT(status))
		snprintf(buf, len, "exit %" PRIu32, status);
	else if (HS_IS_SIGNAL(status))
		snprintf(buf, len, "signal %s",
		    sig_name(sig, (uint8_t)(status - HS_SIGNAL_BASE)));
	else if (status >= HS_TIMEOUT && status <= HS_BADANSWER)
		snprintf(buf, len, "%s", hs_names[status - HS_TIMEOUT]);
	else
		snprintf(buf, len, "status %" PRIu32, status);
	return buf;
}

/* The same as one token: "exit=3", "signal=KILL", "timeout". */
static const char *
fmt_status_token(char *buf, size_t len, uint32_t status)
{
	char *sp;

	fmt_status(buf, len, status);
	while ((sp = strchr(buf, ' ')) != NULL)
		*sp = '=';
	return buf;
}

/* Why the worker's last process or link ended, as one token. */
static const char *
fmt_exit(char *buf, size_t len, const struct ctl_worker *w)
{
	char sig[4];

	switch (w->exit_kind) {
	case WX_NONE:
		return "-";
	case WX_EXITED:
		snprintf(buf, len, "exit=%u", w->exit_code);
		break;
	case WX_KILLED:
		snprintf(buf, len, "signal=%s",
		    sig_name(sig, w->exit_code));
		break;
	case WX_STALLED:
		snprintf(buf, len, "stalled,signal=%s",
		    sig_name(sig, w->exit_code));
		break;
	case WX_LINK:
		return "link-lost";
	case WX_STARTFAIL:
		return "start-timeout";
	default:
		snprintf(buf, len, "unknown=%u", w->exit_kind);
	}
	return buf;
}

/* ---- JSON ------------------------------------------------------------ */

/* Exit status 3, as for any other failure of fanoutctl itself. */
static void __attribute__((noreturn))
json_oom(void)
{
	fputs("fanoutctl: out of memory\n", stderr);
	exit(3);
}

/* A number for json_pack's "o": unlike its varargs "I", the prototype
 * converts any of our unsigned fields to json_int_t. */
static json_t *
j_int(json_int_t v)
{
	return json_integer(v);
}

/* v, or null when has is false. */
static json_t *
j_int_or_null(bool has, json_int_t v)
{
	return has ? json_integer(v) : json_null();
}

/* Milliseconds from microseconds, or null for 0 (none). */
static json_t *
j_ms_or_null(bool has, uint32_t us)
{
	return has ? json_real(us / 1000.0) : json_null();
}

/* A string from the daemon, escaped; null when it is empty. */
static json_t *
j_untrusted(const char *s, size_t len)
{
	char buf[ESCAPED_LEN(FANOUT_REASON_MAX)];

	if (len == 0)
		return json_null();
	return json_string(escape(buf, s, len, false));
}

static json_t *
j_reason(const struct reply *rp, const struct worker_rec *r)
{
	if (r->reason_len == 0)
		return json_null();	/* and rp->reasons may be NULL */
	return j_untrusted(rp->reasons + r->reason_off, r->reason_len);
}

static json_t *
j_status_text(uint32_t status)
{
	char buf[TOKEN_LEN];

	return json_string(fmt_status(buf, sizeof(buf), status));
}

/* One object, one line; the object is freed. */
void
output_json(json_t *o)
{
	if (o == NULL)
		json_oom();
	/* 15 significant digits: a time in microseconds shown in ms keeps
	 * its exact decimal form (0.123, not 0.12300000000000001).  A
	 * reader gone (EPIPE) is fanoutctl.c's to notice and report. */
	if (json_dumpf(o, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15)) < 0 &&
	    errno != EPIPE) {
		fprintf(stderr, "fanoutctl: writing output: %s\n",
		    strerror(errno));
		exit(3);
	}
	putchar('\n');
	json_decref(o);
}

/* A remote worker's record has its name too. */
static json_t *
j_named(const struct worker_rec *r, json_t *o)
{
	if (o == NULL)
		json_oom();
	if (json_object_set_new(o, "name", r->w.name_len > 0 ?
	    json_string(r->name) : json_null()) < 0)
		json_oom();
	return o;
}

static json_t *
send_worker_json(const struct reply *rp, const struct worker_rec *r)
{
	const struct ctl_worker *w = &r->w;
	bool failed = w->outcome == ACK_FAILED, local = w->name_len == 0;

	return j_named(r, json_pack("{s:o, s:o, s:o, s:s, s:s, s:o, s:o, s:o, "
	    "s:o}",
	    "index", j_int_or_null(local, w->index),
	    "pid", j_int_or_null(w->pid != 0, w->pid),
	    "port", j_int_or_null(local, w->port),
	    "state", NAME(state_names, w->state),
	    "outcome", NAME(outcome_names, w->outcome),
	    "rtt_ms", j_ms_or_null(w->outcome == ACK_OK, w->rtt_us),
	    "status", j_int_or_null(failed, w->status),
	    "status_text", failed ? j_status_text(w->status) : json_null(),
	    "reason", j_reason(rp, r)));
}

static void
send_json(const struct reply *rp)
{
	const struct ctl_end *e = &rp->end;
	json_t *workers, *o;
	uint32_t i;

	if ((workers = json_array()) == NULL)
		json_oom();
	for (i = 0; i < rp->nrec; i++)
		if (json_array_append_new(workers,
		    send_worker_json(rp, &rp->rec[i])) < 0)
			json_oom();
	o = json_pack("{s:i, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o}",
	    "format", OUTPUT_JSON_FORMAT,
	    "request", j_int((json_int_t)rp->req_id),
	    "message_id", j_int((json_int_t)e->msg_id),
	    "result", output_all_acked(rp) ? "ok" : "partial",
	    "timeout_ms", j_int(e->limit),
	    "workers_total", j_int(e->workers),
	    "workers_acked", j_int(e->acked),
	    "workers_queued", j_int(e->queued),
	    "workers_failed", j_int(e->failed),
	    "workers", workers);
	output_json(o);
}

static json_t *
last_exit_json(const struct ctl_worker *w)
{
	bool has_code = w->exit_kind == WX_EXITED ||
	    w->exit_kind == WX_KILLED || w->exit_kind == WX_STALLED;

	if (w->exit_kind == WX_NONE)
		return json_null();
	return json_pack("{s:s, s:o}",
	    "kind", NAME(exit_names, w->exit_kind),
	    "code", j_int_or_null(has_code, w->exit_code));
}

static json_t *
last_failure_json(const struct reply *rp, const struct worker_rec *r)
{
	if (r->w.status == HS_OK)
		return json_null();
	return json_pack("{s:o, s:o, s:o}",
	    "status", j_int(r->w.status),
	    "status_text", j_status_text(r->w.status),
	    "reason", j_reason(rp, r));
}

static json_t *
status_worker_json(const struct reply *rp, const struct worker_rec *r)
{
	const struct ctl_worker *w = &r->w;
	bool local = w->name_len == 0;

	/* What a remote worker does not have (a process, a port, a state
	 * with a start, the size of what its broker holds) is null. */
	return j_named(r, json_pack("{s:o, s:o, s:o, s:s, s:o, s:o, s:o, s:o, "
	    "s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
	    "index", j_int_or_null(local, w->index),
	    "pid", j_int_or_null(w->pid != 0, w->pid),
	    "port", j_int_or_null(local, w->port),
	    "state", NAME(state_names, w->state),
	    "state_ms", j_int_or_null(local, (json_int_t)w->state_ms),
	    "acked_count", j_int((json_int_t)w->acked),
	    "failed_count", j_int((json_int_t)w->failed),
	    "queued_count", j_int(w->queued),
	    "queued_bytes", j_int_or_null(local,
		(json_int_t)w->queued_bytes),
	    "oldest_ms", j_int_or_null(w->oldest_ms != 0,
		(json_int_t)w->oldest_ms),
	    "restarts", j_int_or_null(local, w->restarts),
	    "last_rtt_ms", j_ms_or_null(w->last_rtt_us != 0, w->last_rtt_us),
	    "next_try_ms", j_int_or_null(w->state == WS_BACKOFF,
		w->next_try_ms),
	    "last_exit", last_exit_json(w),
	    "last_failure", last_failure_json(rp, r)));
}

static void
status_json(const struct reply *rp)
{
	const struct ctl_daemon *d = &rp->daemon;
	json_t *daemon, *workers, *o;
	uint32_t i;

	if (rp->has_daemon)
		daemon = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
		    "version", j_untrusted(rp->version, rp->version_len),
		    "pid", j_int(d->pid),
		    "uptime_ms", j_int((json_int_t)d->uptime_ms),
		    "messages_accepted", j_int((json_int_t)d->accepted),
		    "degraded_ms", j_int_or_null(d->degraded_ms != 0,
			d->degraded_ms),
		    "spool_bytes", j_int_or_null(d->spool_max_bytes != 0,
			(json_int_t)d->spool_bytes),
		    "spool_max_bytes", j_int_or_null(d->spool_max_bytes != 0,
			(json_int_t)d->spool_max_bytes));
	else
		daemon = json_null();
	if (daemon == NULL || (workers = json_array()) == NULL)
		json_oom();
	for (i = 0; i < rp->nrec; i++)
		if (json_array_append_new(workers,
		    status_worker_json(rp, &rp->rec[i])) < 0)
			json_oom();
	o = json_pack("{s:i, s:o, s:o, s:o, s:o}",
	    "format", OUTPUT_JSON_FORMAT,
	    "daemon", daemon,
	    "workers_total", j_int(rp->end.workers),
	    "workers_up", j_int(rp->end.acked),
	    "workers", workers);
	output_json(o);
}

/* ---- text ------------------------------------------------------------ */

/* ": reason", escaped, if the record has one. */
static void
print_reason(const struct reply *rp, const struct worker_rec *r)
{
	char buf[ESCAPED_LEN(FANOUT_REASON_MAX)];

	if (r->reason_len > 0)
		printf(": %s", escape(buf, rp->reasons + r->reason_off,
		    r->reason_len, false));
}

void
output_send(const struct reply *rp, bool json)
{
	const struct ctl_end *e = &rp->end;
	char t[TOKEN_LEN];
	uint32_t i;

	if (json) {
		send_json(rp);
		return;
	}
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i].w;
		bool remote = w->name_len > 0;

		if (remote)
			printf("worker %s  remote  %-8s ", rp->rec[i].name,
			    NAME(outcome_names, w->outcome));
		else
			printf("worker %u  pid %u  port %u  %-8s ", w->index,
			    w->pid, w->port, NAME(outcome_names, w->outcome));
		switch (w->outcome) {
		case ACK_OK:
			printf("%.3f ms\n", w->rtt_us / 1000.0);
			break;
		case ACK_FAILED:
			fputs(fmt_status(t, sizeof(t), w->status), stdout);
			print_reason(rp, &rp->rec[i]);
			putchar('\n');
			break;
		case ACK_QUEUED:
			printf(remote ? "(worker %s; stored by the broker)\n" :
			    "(worker %s; kept for delivery)\n",
			    NAME(state_names, w->state));
			break;
		case ACK_FULL:
			printf("(queue full, refused)\n");
			break;
		case ACK_SHUTDOWN:
			printf("(fanoutd stopped before it acked)\n");
			break;
		case ACK_TIMEOUT:
			printf("(no ack within %u ms)\n", e->limit);
			break;
		case ACK_DOWN:
			printf(remote ? "(not stored by the broker)\n" :
			    "(not connected)\n");
			break;
		default:
			printf("\n");
		}
	}
	printf("delivered to %u/%u workers", e->acked, e->workers);
	if (e->queued > 0)
		printf(", %u queued", e->queued);
	if (e->failed > 0)
		printf(", %u failed", e->failed);
	printf(" (message %" PRIu64 ")\n", e->msg_id);
}

void
output_send_line(const struct reply *rp, bool json)
{
	char t[TOKEN_LEN];
	uint32_t i;
	bool first = true;

	if (json) {
		send_json(rp);
		return;
	}
	printf("message %" PRIu64 ": delivered to %u/%u workers",
	    rp->end.msg_id, rp->end.acked, rp->end.workers);
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i].w;

		if (w->outcome == ACK_OK)
			continue;
		if (w->name_len > 0)
			printf("%s%s (%s", first ? "; not acked: " : ", ",
			    rp->rec[i].name, NAME(outcome_names, w->outcome));
		else
			printf("%s%u (%s", first ? "; not acked: " : ", ",
			    w->index, NAME(outcome_names, w->outcome));
		if (w->outcome == ACK_FAILED)
			printf(": %s", fmt_status(t, sizeof(t), w->status));
		putchar(')');
		first = false;
	}
	printf("\n");
}

/*
 * status: the daemon's line, then a table with a header row, one row per
 * worker, each column as wide as its widest cell and numbers aligned
 * right; every cell is one word, "-" for none, so that a script can find
 * a column by its name in the header.  Then "N/M workers up, Q queued".
 */
enum status_col {
	SC_WORKER, SC_PID, SC_PORT, SC_STATE, SC_FOR, SC_NEXT, SC_ACKED,
	SC_FAILED, SC_QUEUED, SC_BYTES, SC_OLDEST, SC_RTT, SC_RESTARTS, SC_LAST,
	SC_LASTFAIL, SC_NCOLS
};

static const struct {
	const char	*name;
	bool		 right;		/* a number: aligned right */
} status_cols[SC_NCOLS] = {
	[SC_WORKER] =	{ "WORKER", true },
	[SC_PID] =	{ "PID", true },
	[SC_PORT] =	{ "PORT", true },
	[SC_STATE] =	{ "STATE", false },
	[SC_FOR] =	{ "FOR", false },
	[SC_NEXT] =	{ "NEXT", false },
	[SC_ACKED] =	{ "ACKED", true },
	[SC_FAILED] =	{ "FAILED", true },
	[SC_QUEUED] =	{ "QUEUED", true },
	[SC_BYTES] =	{ "BYTES", true },
	[SC_OLDEST] =	{ "OLDEST", false },
	[SC_RTT] =	{ "RTT", false },
	[SC_RESTARTS] =	{ "RESTARTS", true },
	[SC_LAST] =	{ "LAST", false },
	[SC_LASTFAIL] =	{ "LASTFAIL", false },
};

/* A cell of worker w's row, in buf or a constant. */
static const char *
status_cell(char *buf, size_t len, const struct worker_rec *r,
    enum status_col col)
{
	const struct ctl_worker *w = &r->w;

	switch (col) {
	case SC_WORKER:
		if (w->name_len > 0)
			return r->name;
		snprintf(buf, len, "%" PRIu32, w->index);
		break;
	case SC_PID:
		if (w->pid == 0)
			return "-";
		snprintf(buf, len, "%" PRIu32, w->pid);
		break;
	case SC_PORT:
		if (w->name_len > 0)
			return "-";
		snprintf(buf, len, "%u", w->port);
		break;
	case SC_STATE:
		return NAME(state_names, w->state);
	case SC_FOR:
		if (w->name_len > 0)
			return "-";
		return fmt_dur(buf, len, w->state_ms);
	case SC_NEXT:
		if (w->state != WS_BACKOFF)
			return "-";
		return fmt_dur(buf, len, w->next_try_ms);
	case SC_ACKED:
		snprintf(buf, len, "%" PRIu64, w->acked);
		break;
	case SC_FAILED:
		snprintf(buf, len, "%" PRIu64, w->failed);
		break;
	case SC_QUEUED:
		snprintf(buf, len, "%" PRIu32, w->queued);
		break;
	case SC_BYTES:
		snprintf(buf, len, "%" PRIu64, w->queued_bytes);
		break;
	case SC_OLDEST:
		if (w->oldest_ms == 0)
			return "-";
		return fmt_dur(buf, len, w->oldest_ms);
	case SC_RTT:
		return fmt_rtt(buf, len, w->last_rtt_us);
	case SC_RESTARTS:
		snprintf(buf, len, "%" PRIu32, w->restarts);
		break;
	case SC_LAST:
		return fmt_exit(buf, len, w);
	case SC_LASTFAIL:
		if (w->status == HS_OK)
			return "-";
		return fmt_status_token(buf, len, w->status);
	default:
		return "?";
	}
	return buf;
}

/* One row: the header's if w is NULL.  The last column has no padding. */
static void
status_row(const struct worker_rec *w, const int *width)
{
	char buf[TOKEN_LEN];
	const char *s;
	int c;

	for (c = 0; c < SC_NCOLS; c++) {
		s = w == NULL ? status_cols[c].name :
		    status_cell(buf, sizeof(buf), w, (enum status_col)c);
		if (c == SC_NCOLS - 1)
			printf("%s\n", s);
		else if (status_cols[c].right)
			printf("%*s  ", width[c], s);
		else
			printf("%-*s  ", width[c], s);
	}
}

static void
status_table(const struct reply *rp)
{
	char buf[TOKEN_LEN];
	int width[SC_NCOLS], c, n;
	uint64_t queued = 0;
	uint32_t i;

	for (c = 0; c < SC_NCOLS; c++)
		width[c] = (int)strlen(status_cols[c].name);
	for (i = 0; i < rp->nrec; i++) {
		for (c = 0; c < SC_NCOLS; c++) {
			n = (int)strlen(status_cell(buf, sizeof(buf),
			    &rp->rec[i], (enum status_col)c));
			if (n > width[c])
				width[c] = n;
		}
		queued += rp->rec[i].w.queued;
	}
	status_row(NULL, width);
	for (i = 0; i < rp->nrec; i++)
		status_row(&rp->rec[i], width);
	printf("%" PRIu32 "/%" PRIu32 " workers up, %" PRIu64 " queued\n",
	    rp->end.acked, rp->end.workers, queued);
}

void
output_status(const struct reply *rp, bool json)
{
	const struct ctl_daemon *d = &rp->daemon;
	char t1[TOKEN_LEN];
	char v[ESCAPED_LEN(FANOUT_VERSION_MAX)];

	if (json) {
		status_json(rp);
		return;
	}
	if (rp->has_daemon) {
		printf("fanoutd %s  pid %u  up %u/%u  uptime %s  accepted %"
		    PRIu64, rp->version_len == 0 ? "-" :
		    escape(v, rp->version, rp->version_len, true), d->pid,
		    rp->end.acked, rp->end.workers,
		    fmt_dur(t1, sizeof(t1), d->uptime_ms), d->accepted);
		if (d->degraded_ms > 0)
			printf("  degraded %s",
			    fmt_dur(t1, sizeof(t1), d->degraded_ms));
		if (d->spool_max_bytes > 0)
			printf("  spool %" PRIu64 "/%" PRIu64, d->spool_bytes,
			    d->spool_max_bytes);
		putchar('\n');
	}
	status_table(rp);
}

/* ---- reload --------------------------------------------------------- */

static const char *const change_names[] = RELOAD_CHANGE_NAMES;

static void
reload_json(const struct reply *rp)
{
	char buf[ESCAPED_LEN(FANOUT_CHANGE_TEXT_MAX)];
	json_t *changes, *o;
	uint32_t i;

	if ((changes = json_array()) == NULL)
		json_oom();
	for (i = 0; i < rp->nchanges; i++) {
		const struct change_rec *cr = &rp->changes[i];

		o = json_pack("{s:s, s:o, s:s}",
		    "kind", NAME(change_names, cr->c.kind),
		    "worker", j_int_or_null(cr->c.worker != CTL_CHANGE_NONE,
			cr->c.worker),
		    "text", escape(buf, cr->text, cr->len, false));
		if (o == NULL || json_array_append_new(changes, o) < 0)
			json_oom();
	}
	o = json_pack("{s:i, s:s, s:o, s:o, s:o}",
	    "format", OUTPUT_JSON_FORMAT,
	    "result", rp->end.result == CTL_RES_OK ? "ok" :
		rp->end.result == CTL_RES_PARTIAL ? "partial" : "refused",
	    "workers_total", j_int(rp->end.workers),
	    "workers_up", j_int(rp->end.acked),
	    "changes", changes);
	output_json(o);
}

/*
 * One line per change on standard output; for an invalid file, its
 * problems ("file:line: setting: problem") on standard error, since
 * nothing changed.
 */
void
output_reload(const struct reply *rp, bool json)
{
	char buf[ESCAPED_LEN(FANOUT_CHANGE_TEXT_MAX)];
	uint32_t i;

	if (json) {
		reload_json(rp);
		return;
	}
	for (i = 0; i < rp->nchanges; i++) {
		const struct change_rec *cr = &rp->changes[i];

		escape(buf, cr->text, cr->len, false);
		if (cr->c.kind == RC_ERROR)
			fprintf(stderr, "fanoutctl: %s\n", buf);
		else
			printf("%-10s %s\n", NAME(change_names, cr->c.kind),
			    buf);
	}
	switch (rp->end.result) {
	case CTL_RES_OK:
	case CTL_RES_PARTIAL:
		printf("reloaded: %" PRIu32 " worker%s, %" PRIu32 " up\n",
		    rp->end.workers, PLURAL(rp->end.workers), rp->end.acked);
		break;
	default:
		fprintf(stderr, "fanoutctl: reload refused: %s\n",
		    output_result(rp->end.result));
		break;
	}
}

/* ---- check ----------------------------------------------------------- */

/* Workers not up named in check's line, at most. */
#define CHECK_NAMED	5

/*
 * One line, as monitoring plugins print it (Nagios, Icinga): the verdict,
 * the figures it rests on, then performance data after "|" in their
 * range syntax ("3:": alert below 3; "99": alert above 99):
 *   WARNING: 2/3 workers up, 4 queued; not up: 1 backoff | up=2;3:;1:;0;3
 *   queued=4;;;0 accepted=1234c
 */
int
output_check(const struct reply *rp, const struct check_limits *cl)
{
	static const char *const verdict[] = { "OK", "WARNING", "CRITICAL" };
	uint32_t total = rp->end.workers, up = rp->end.acked, down, crit_down;
	uint32_t i, n = 0;
	uint64_t queued = 0;
	char t[TOKEN_LEN];
	int r = 0;

	/* Workers a reload removed are on their way out, not down. */
	if (rp->nrec > 0) {
		total = up = 0;
		for (i = 0; i < rp->nrec; i++) {
			unsigned st = rp->rec[i].w.state;

			/* Remote workers count too: pulling is up. */
			if (st == WS_RETIRING || st == WS_UNLISTED)
				continue;
			total++;
			up += st == WS_UP || st == WS_PULLING;
		}
	}
	down = total > up ? total - up : 0;
	crit_down = cl->crit_down != 0 ? cl->crit_down : total;
	for (i = 0; i < rp->nrec; i++)
		if (rp->rec[i].w.state != WS_UNLISTED)
			queued += rp->rec[i].w.queued;
	if (total == 0 || down >= crit_down ||
	    (cl->crit_queued != 0 && queued >= cl->crit_queued))
		r = 2;
	else if (down >= cl->warn_down ||
	    (cl->warn_queued != 0 && queued >= cl->warn_queued))
		r = 1;
	printf("%s: %" PRIu32 "/%" PRIu32 " workers up, %" PRIu64 " queued",
	    verdict[r], up, total, queued);
	if (cl->crit_queued != 0 && queued >= cl->crit_queued)
		printf(" (critical from %" PRIu64 ")", cl->crit_queued);
	else if (cl->warn_queued != 0 && queued >= cl->warn_queued)
		printf(" (warning from %" PRIu64 ")", cl->warn_queued);
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i].w;

		if (w->state == WS_UP || w->state == WS_RETIRING ||
		    w->state == WS_PULLING || w->state == WS_UNLISTED)
			continue;
		if (n++ >= CHECK_NAMED)
			continue;
		if (w->name_len > 0)
			printf("%s%s %s", n == 1 ? "; not up: " : ", ",
			    rp->rec[i].name, NAME(state_names, w->state));
		else
			printf("%s%" PRIu32 " %s", n == 1 ? "; not up: " : ", ",
			    w->index, NAME(state_names, w->state));
	}
	if (n > CHECK_NAMED)
		printf(", %" PRIu32 " more", n - CHECK_NAMED);
	if (rp->has_daemon && rp->daemon.degraded_ms > 0)
		printf("; degraded for %s",
		    fmt_dur(t, sizeof(t), rp->daemon.degraded_ms));
	printf(" | up=%" PRIu32 ";", up);
	if (cl->warn_down <= total)
		printf("%" PRIu32 ":", total - cl->warn_down + 1);
	putchar(';');
	if (crit_down <= total)
		printf("%" PRIu32 ":", total - crit_down + 1);
	printf(";0;%" PRIu32 " queued=%" PRIu64 ";", total, queued);
	if (cl->warn_queued != 0)
		printf("%" PRIu64, cl->warn_queued - 1);
	putchar(';');
	if (cl->crit_queued != 0)
		printf("%" PRIu64, cl->crit_queued - 1);
	printf(";0");
	if (rp->has_daemon)
		printf(" accepted=%" PRIu64 "c", rp->daemon.accepted);
	putchar('\n');
	return r;
}

/* ---- queue ---------------------------------------------------------- */

static json_t *
qstat_json(const struct ctl_qstat *q)
{
	bool conf = (q->flags & CTL_QSTAT_CONFIGURED) != 0;
	json_t *o;

	o = json_pack("{s:o, s:b, s:o, s:o, s:o, s:o, s:o}",
	    "worker", j_int(q->worker),
	    "configured", conf,
	    "state", conf ? json_string(NAME(state_names, q->state)) :
		json_null(),
	    "messages", j_int((json_int_t)q->messages),
	    "bytes", j_int((json_int_t)q->bytes),
	    "oldest_ms", j_int_or_null(q->messages > 0,
		(json_int_t)q->oldest_ms),
	    "spooled", j_int((json_int_t)q->spooled));
	if (o == NULL)
		json_oom();
	return o;
}

static void
queue_json(const struct reply *rp, bool drop)
{
	json_t *a, *o;
	uint32_t i;

	if (drop) {
		o = json_pack("{s:i, s:o}", "format", OUTPUT_JSON_FORMAT,
		    "dropped", rp->nqstats > 0 ? qstat_json(&rp->qstats[0]) :
		    json_null());
		output_json(o);
		return;
	}
	if ((a = json_array()) == NULL)
		json_oom();
	for (i = 0; i < rp->nqstats; i++)
		if (json_array_append_new(a, qstat_json(&rp->qstats[i])) < 0)
			json_oom();
	o = json_pack("{s:i, s:o, s:o, s:o}", "format", OUTPUT_JSON_FORMAT,
	    "workers_total", j_int(rp->end.workers),
	    "workers_up", j_int(rp->end.acked),
	    "workers", a);
	output_json(o);
}

void
output_queue(const struct reply *rp, bool drop, bool json)
{
	uint64_t messages = 0, spooled = 0;
	char t[TOKEN_LEN];
	uint32_t i;

	if (json) {
		queue_json(rp, drop);
		return;
	}
	if (drop) {
		const struct ctl_qstat *q = &rp->qstats[0];

		if (rp->nqstats == 0)
			return;
		if (q->messages == 0)
			printf("worker %u: nothing to drop\n", q->worker);
		else
			printf("worker %u: %" PRIu64 " message%s (%" PRIu64
			    " byte%s) dropped\n", q->worker, q->messages,
			    PLURAL(q->messages), q->bytes, PLURAL(q->bytes));
		return;
	}
	printf("%6s  %-10s  %8s  %10s  %8s  %8s\n", "WORKER", "STATE",
	    "QUEUED", "BYTES", "OLDEST", "SPOOLED");
	for (i = 0; i < rp->nqstats; i++) {
		const struct ctl_qstat *q = &rp->qstats[i];
		bool conf = (q->flags & CTL_QSTAT_CONFIGURED) != 0;

		printf("%6u  %-10s  %8" PRIu64 "  %10" PRIu64 "  %8s  %8"
		    PRIu64 "%s\n", q->worker, conf ?
		    NAME(state_names, q->state) : "-", q->messages, q->bytes,
		    q->messages > 0 ? fmt_dur(t, sizeof(t), q->oldest_ms) :
		    "-", q->spooled, conf ? "" : "  (not configured)");
		messages += q->messages;
		spooled += q->spooled;
	}
	printf("%" PRIu64 " message%s queued, %" PRIu64 " of them in the "
	    "spool\n", messages, PLURAL(messages), spooled);
}
