/* SPDX-License-Identifier: MIT */
/*
 * fanoutctl's output: the text lines the man page documents, or one JSON
 * object per reply for scripts.  Nothing here talks to the daemon.
 *
 * Every text value is one token without whitespace, so that scripts can
 * find a value by the word before it.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fanoutctl.h"
#include "util.h"

static const char *const outcome_names[] = ACK_OUTCOME_NAMES;
static const char *const state_names[] = WIRE_STATE_NAMES;
static const char *const result_names[] = CTL_RESULT_NAMES;
/* enum worker_exit, as JSON shows it */
static const char *const exit_names[] = {
	"none", "exited", "killed", "stalled", "link", "start-timeout"
};
_Static_assert(nitems(exit_names) == WX_STARTFAIL + 1,
    "one name per enum worker_exit");

/* Room for any token below: a duration, a reason, an rtt. */
#define TOKEN_LEN	48

static const char *
name_of(const char *const *names, size_t n, unsigned v)
{
	return v < n ? names[v] : "unknown";
}
#define NAME(tab, v)	name_of(tab, nitems(tab), v)

const char *
output_result(uint32_t result)
{
	return NAME(result_names, result);
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

/* The daemon's version string, which is not ours to trust: one token. */
static void
print_token(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		fputs("-", stdout);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c > 0x20 && c < 0x7f && c != '\\')
			putchar(c);
		else
			printf("\\x%02x", c);
	}
}

/* A JSON string; bytes outside printable ASCII become \u00XX, so the
 * output stays valid whatever the daemon sent. */
static void
print_json_str(const char *s, size_t len)
{
	size_t i;

	putchar('"');
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			putchar(c);
		else
			printf("\\u%04x", c);
	}
	putchar('"');
}

static void
send_json(const struct reply *rp)
{
	const struct ctl_end *e = &rp->end;
	uint32_t i;

	printf("{\"request\":%" PRIu64 ",\"message_id\":%" PRIu64 ","
	    "\"result\":\"%s\",\"acked\":%u,\"workers\":%u,\"queued\":%u,"
	    "\"timeout_ms\":%u,\"outcomes\":[", rp->req_id, e->msg_id,
	    e->result == CTL_RES_OK ? "ok" : "partial", e->acked,
	    e->workers, e->queued, e->limit);
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i];

		printf("%s{\"index\":%u,\"pid\":%u,\"port\":%u,"
		    "\"state\":\"%s\",\"outcome\":\"%s\"", i ? "," : "",
		    w->index, w->pid, w->port, NAME(state_names, w->state),
		    NAME(outcome_names, w->outcome));
		if (w->outcome == ACK_OK)
			printf(",\"rtt_ms\":%.3f", w->rtt_us / 1000.0);
		putchar('}');
	}
	printf("]}\n");
}

void
output_send(const struct reply *rp, bool json)
{
	const struct ctl_end *e = &rp->end;
	uint32_t i;

	if (json) {
		send_json(rp);
		return;
	}
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i];

		printf("worker %u  pid %u  port %u  %-8s ", w->index,
		    w->pid, w->port, NAME(outcome_names, w->outcome));
		switch (w->outcome) {
		case ACK_OK:
			printf("%.3f ms\n", w->rtt_us / 1000.0);
			break;
		case ACK_QUEUED:
			printf("(worker %s; kept for delivery)\n",
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
			printf("(not connected)\n");
			break;
		default:
			printf("\n");
		}
	}
	printf("delivered to %u/%u workers", e->acked, e->workers);
	if (e->queued > 0)
		printf(", %u queued", e->queued);
	printf(" (message %" PRIu64 ")\n", e->msg_id);
}

void
output_send_line(const struct reply *rp, bool json)
{
	uint32_t i;
	bool first = true;

	if (json) {
		send_json(rp);
		return;
	}
	printf("message %" PRIu64 ": delivered to %u/%u workers",
	    rp->end.msg_id, rp->end.acked, rp->end.workers);
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i];

		if (w->outcome == ACK_OK)
			continue;
		printf("%s%u (%s)", first ? "; not acked: " : ", ",
		    w->index, NAME(outcome_names, w->outcome));
		first = false;
	}
	printf("\n");
}

static void
status_json(const struct reply *rp)
{
	const struct ctl_daemon *d = &rp->daemon;
	char rtt[TOKEN_LEN];
	uint32_t i;

	printf("{\"daemon\":");
	if (rp->has_daemon) {
		printf("{\"version\":");
		print_json_str(rp->version, rp->version_len);
		printf(",\"pid\":%u,\"uptime_ms\":%" PRIu64 ",\"accepted\":%"
		    PRIu64 ",\"degraded_ms\":%u}", d->pid, d->uptime_ms,
		    d->accepted, d->degraded_ms);
	} else
		printf("null");
	printf(",\"workers\":[");
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i];

		if (w->last_rtt_us == 0)
			snprintf(rtt, sizeof(rtt), "null");
		else
			snprintf(rtt, sizeof(rtt), "%.3f",
			    w->last_rtt_us / 1000.0);
		printf("%s{\"index\":%u,\"pid\":%u,\"port\":%u,"
		    "\"state\":\"%s\",\"state_ms\":%" PRIu64 ","
		    "\"acked\":%" PRIu64 ",\"queued\":%u,"
		    "\"queued_bytes\":%" PRIu64 ",\"restarts\":%u,"
		    "\"last_rtt_ms\":%s,\"next_try_ms\":%u,"
		    "\"last_exit\":{\"kind\":\"%s\",\"code\":%u}}",
		    i ? "," : "", w->index, w->pid, w->port,
		    NAME(state_names, w->state), w->state_ms, w->acked,
		    w->queued, w->queued_bytes, w->restarts, rtt,
		    w->next_try_ms, NAME(exit_names, w->exit_kind),
		    w->exit_code);
	}
	printf("],\"up\":%u,\"total\":%u}\n", rp->end.acked,
	    rp->end.workers);
}

void
output_status(const struct reply *rp, bool json)
{
	const struct ctl_daemon *d = &rp->daemon;
	char t1[TOKEN_LEN], t2[TOKEN_LEN], t3[TOKEN_LEN];
	uint32_t i;

	if (json) {
		status_json(rp);
		return;
	}
	if (rp->has_daemon) {
		fputs("fanoutd ", stdout);
		print_token(rp->version, rp->version_len);
		printf("  pid %u  up %u/%u  uptime %s  accepted %" PRIu64,
		    d->pid, rp->end.acked, rp->end.workers,
		    fmt_dur(t1, sizeof(t1), d->uptime_ms), d->accepted);
		if (d->degraded_ms > 0)
			printf("  degraded %s",
			    fmt_dur(t1, sizeof(t1), d->degraded_ms));
		putchar('\n');
	}
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i];

		printf("worker %u  pid %u  port %u  %-8s acked %" PRIu64
		    "  queued %u  bytes %" PRIu64 "  restarts %u  for %s"
		    "  rtt %s  last %s", w->index, w->pid, w->port,
		    NAME(state_names, w->state), w->acked, w->queued,
		    w->queued_bytes, w->restarts,
		    fmt_dur(t1, sizeof(t1), w->state_ms),
		    fmt_rtt(t2, sizeof(t2), w->last_rtt_us),
		    fmt_exit(t3, sizeof(t3), w));
		if (w->state == WS_BACKOFF)
			printf("  next %s",
			    fmt_dur(t1, sizeof(t1), w->next_try_ms));
		putchar('\n');
	}
}
