/* SPDX-License-Identifier: MIT */
/*
 * fanoutctl stats: the daemon's counters and each worker's ack round-trip
 * histogram, for people (a table), for scripts (JSON, format 1) and for
 * Prometheus (its text exposition format, for node_exporter's textfile
 * collector).  The daemon only counts; every figure is derived here.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fanoutctl.h"
#include "util.h"

static const uint32_t bounds_us[] = FANOUT_HIST_BOUNDS_US;

_Static_assert(nitems(bounds_us) + 1 == FANOUT_HIST_BUCKETS,
    "one bucket per bound, and one above them");

/* The histogram of the record at index i, or NULL (an older daemon). */
static const struct hist_rec *
hist_of(const struct reply *rp, uint32_t i)
{
	return i < rp->nhist ? &rp->hist[i] : NULL;
}

/* Worker i's label: its index, or a remote worker's name. */
static const char *
label_of(const struct reply *rp, uint32_t i, char *buf, size_t len)
{
	if (rp->rec[i].w.name_len > 0)
		return rp->rec[i].name;
	snprintf(buf, len, "%u", rp->rec[i].w.index);
	return buf;
}

/* The bound of the bucket holding quantile q: an upper estimate, in us;
 * 0 when nothing was counted, UINT32_MAX above the last bound. */
static uint32_t
quantile_us(const struct hist_rec *hr, double q)
{
	uint64_t seen = 0, want;
	unsigned i;

	if (hr == NULL || hr->h.rtt_count == 0)
		return 0;
	want = (uint64_t)(q * (double)hr->h.rtt_count + 0.999999);
	for (i = 0; i < FANOUT_HIST_BUCKETS; i++) {
		seen += hr->bucket[i];
		if (seen >= want)
			return i < nitems(bounds_us) ? bounds_us[i] : UINT32_MAX;
	}
	return UINT32_MAX;
}

static const char *
fmt_bound(char *buf, size_t len, uint32_t us)
{
	if (us == 0)
		return "-";
	if (us == UINT32_MAX)
		return ">10s";
	if (us < 1000)
		snprintf(buf, len, "<=%uus", us);
	else if (us < 1000000)
		snprintf(buf, len, "<=%gms", us / 1000.0);
	else
		snprintf(buf, len, "<=%gs", us / 1e6);
	return buf;
}

static void
stats_text(const struct reply *rp)
{
	char mean[32], p50[32], p99[32], label[16];
	uint32_t i;

	if (rp->has_daemon)
		printf("fanoutd pid %u  uptime %" PRIu64 "s  accepted %" PRIu64
		    "  up %u/%u\n", rp->daemon.pid,
		    rp->daemon.uptime_ms / 1000, rp->daemon.accepted,
		    rp->end.acked, rp->end.workers);
	printf("%-6s %-8s %10s %8s %8s %8s %8s %10s %10s %10s\n", "WORKER",
	    "STATE", "ACKED", "FAILED", "REFUSED", "QUEUED", "RESTARTS",
	    "RTT-MEAN", "RTT-P50", "RTT-P99");
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i].w;
		const struct hist_rec *hr = hist_of(rp, i);

		if (hr != NULL && hr->h.rtt_count > 0)
			snprintf(mean, sizeof(mean), "%.3fms",
			    (double)hr->h.rtt_sum_us / (double)hr->h.rtt_count /
			    1000.0);
		else
			snprintf(mean, sizeof(mean), "-");
		printf("%-6s %-8s %10" PRIu64 " %8" PRIu64 " %8" PRIu64
		    " %8u %8u %10s %10s %10s\n",
		    label_of(rp, i, label, sizeof(label)),
		    output_state(w->state), w->acked, w->failed,
		    hr ? hr->h.refused : 0, w->queued, w->restarts, mean,
		    fmt_bound(p50, sizeof(p50), quantile_us(hr, 0.5)),
		    fmt_bound(p99, sizeof(p99), quantile_us(hr, 0.99)));
	}
}

static json_t *
must(json_t *j)
{
	if (j == NULL) {
		fputs("fanoutctl: out of memory\n", stderr);
		exit(3);
	}
	return j;
}

static json_t *
j_rtt(const struct hist_rec *hr)
{
	json_t *buckets, *o;
	unsigned i;

	if (hr == NULL)
		return json_null();
	buckets = must(json_array());
	for (i = 0; i < FANOUT_HIST_BUCKETS; i++) {
		o = must(json_pack("{s:o,s:I}", "le_ms",
		    i < nitems(bounds_us) ? json_real(bounds_us[i] / 1000.0) :
		    json_null(), "count", (json_int_t)hr->bucket[i]));
		json_array_append_new(buckets, o);
	}
	return must(json_pack("{s:I,s:f,s:o}", "count",
	    (json_int_t)hr->h.rtt_count, "sum_ms", hr->h.rtt_sum_us / 1000.0,
	    "buckets", buckets));
}

static void
stats_json(const struct reply *rp)
{
	json_t *workers = must(json_array()), *daemon = json_null();
	uint32_t i;

	if (rp->has_daemon)
		daemon = must(json_pack("{s:I,s:I,s:I}", "pid",
		    (json_int_t)rp->daemon.pid, "uptime_ms",
		    (json_int_t)rp->daemon.uptime_ms, "messages_accepted",
		    (json_int_t)rp->daemon.accepted));
	for (i = 0; i < rp->nrec; i++) {
		const struct ctl_worker *w = &rp->rec[i].w;
		const struct hist_rec *hr = hist_of(rp, i);
		bool local = w->name_len == 0;

		/* As in status: what a remote worker has not is null. */
		json_array_append_new(workers, must(json_pack(
		    "{s:o,s:o,s:s,s:I,s:I,s:o,s:I,s:o,s:o,s:o}",
		    "index", local ? json_integer((json_int_t)w->index) :
		    json_null(),
		    "name", local ? json_null() :
		    must(json_string(rp->rec[i].name)),
		    "state", output_state(w->state),
		    "acked_count", (json_int_t)w->acked,
		    "failed_count", (json_int_t)w->failed,
		    "refused_count", hr ? json_integer((json_int_t)
		    hr->h.refused) : json_null(),
		    "queued_count", (json_int_t)w->queued,
		    "queued_bytes", local ? json_integer((json_int_t)
		    w->queued_bytes) : json_null(),
		    "restarts", local ? json_integer((json_int_t)
		    w->restarts) : json_null(),
		    "rtt", j_rtt(hr))));
	}
	output_json(json_pack("{s:i,s:o,s:I,s:I,s:o}", "format",
	    OUTPUT_JSON_FORMAT, "daemon", daemon, "workers_total",
	    (json_int_t)rp->end.workers, "workers_up",
	    (json_int_t)rp->end.acked, "workers", workers));
}

/* One metric family: HELP and TYPE, then one sample per worker. */
static void
prom_family(const struct reply *rp, const char *name, const char *type,
    const char *help, uint64_t (*value)(const struct reply *, uint32_t))
{
	char label[16];
	uint32_t i;

	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (i = 0; i < rp->nrec; i++)
		printf("%s{worker=\"%s\"} %" PRIu64 "\n", name,
		    label_of(rp, i, label, sizeof(label)), value(rp, i));
}

static uint64_t
v_up(const struct reply *rp, uint32_t i)
{
	return rp->rec[i].w.state == WS_UP ||
	    rp->rec[i].w.state == WS_PULLING;
}

static uint64_t
v_acked(const struct reply *rp, uint32_t i)
{
	return rp->rec[i].w.acked;
}

static uint64_t
v_failed(const struct reply *rp, uint32_t i)
{
	return rp->rec[i].w.failed;
}

static uint64_t
v_refused(const struct reply *rp, uint32_t i)
{
	return hist_of(rp, i) ? hist_of(rp, i)->h.refused : 0;
}

static uint64_t
v_restarts(const struct reply *rp, uint32_t i)
{
	return rp->rec[i].w.restarts;
}

static uint64_t
v_queued(const struct reply *rp, uint32_t i)
{
	return rp->rec[i].w.queued;
}

static uint64_t
v_queued_bytes(const struct reply *rp, uint32_t i)
{
	return rp->rec[i].w.queued_bytes;
}

static void
stats_prometheus(const struct reply *rp)
{
	const char *h = "fanout_worker_ack_rtt_seconds";
	uint32_t i;
	unsigned b;

	printf("# HELP fanout_up 1: fanoutd answered.\n"
	    "# TYPE fanout_up gauge\nfanout_up 1\n");
	if (rp->has_daemon)
		printf("# HELP fanout_uptime_seconds Since fanoutd started.\n"
		    "# TYPE fanout_uptime_seconds gauge\n"
		    "fanout_uptime_seconds %.3f\n"
		    "# HELP fanout_messages_accepted_total Messages accepted "
		    "for broadcast since fanoutd started.\n"
		    "# TYPE fanout_messages_accepted_total counter\n"
		    "fanout_messages_accepted_total %" PRIu64 "\n",
		    rp->daemon.uptime_ms / 1000.0, rp->daemon.accepted);
	printf("# HELP fanout_workers Workers in the pool.\n"
	    "# TYPE fanout_workers gauge\nfanout_workers %u\n"
	    "# HELP fanout_workers_up Workers up: connected, taking messages."
	    "\n# TYPE fanout_workers_up gauge\nfanout_workers_up %u\n",
	    rp->end.workers, rp->end.acked);
	prom_family(rp, "fanout_worker_up", "gauge",
	    "1: the worker is up.", v_up);
	prom_family(rp, "fanout_worker_acked_total", "counter",
	    "Messages the worker acknowledged, failed ones included.",
	    v_acked);
	prom_family(rp, "fanout_worker_failed_total", "counter",
	    "Messages whose handler failed.", v_failed);
	prom_family(rp, "fanout_worker_refused_total", "counter",
	    "Messages refused for the worker: its queue was full.",
	    v_refused);
	prom_family(rp, "fanout_worker_restarts_total", "counter",
	    "Worker processes started after the first.", v_restarts);
	prom_family(rp, "fanout_worker_queued_messages", "gauge",
	    "Messages waiting for the worker's ack.", v_queued);
	prom_family(rp, "fanout_worker_queued_bytes", "gauge",
	    "Bytes of the messages waiting for the worker's ack.",
	    v_queued_bytes);
	printf("# HELP %s Acceptance to ack, per message.\n"
	    "# TYPE %s histogram\n", h, h);
	for (i = 0; i < rp->nrec; i++) {
		const struct hist_rec *hr = hist_of(rp, i);
		uint64_t cum = 0;
		char label[16];
		const char *idx = label_of(rp, i, label, sizeof(label));

		if (hr == NULL)
			continue;
		for (b = 0; b < FANOUT_HIST_BUCKETS; b++) {
			cum += hr->bucket[b];
			if (b < nitems(bounds_us))
				printf("%s_bucket{worker=\"%s\",le=\"%g\"} %"
				    PRIu64 "\n", h, idx, bounds_us[b] / 1e6,
				    cum);
			else
				printf("%s_bucket{worker=\"%s\",le=\"+Inf\"} %"
				    PRIu64 "\n", h, idx, cum);
		}
		printf("%s_sum{worker=\"%s\"} %.6f\n%s_count{worker=\"%s\"} %"
		    PRIu64 "\n", h, idx, hr->h.rtt_sum_us / 1e6, h, idx,
		    hr->h.rtt_count);
	}
}

void
output_stats(const struct reply *rp, enum stats_format fmt)
{
	switch (fmt) {
	case STATS_TEXT:
		stats_text(rp);
		break;
	case STATS_JSON:
		stats_json(rp);
		break;
	case STATS_PROMETHEUS:
		stats_prometheus(rp);
		break;
	}
}
