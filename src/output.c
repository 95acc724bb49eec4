/* SPDX-License-Identifier: MIT */
/*
 * fanoutctl's output: the text lines the man page documents, or one JSON
 * object per reply for scripts.  Nothing here talks to the daemon.
 */
#include "config.h"

#include <stdio.h>

#include "fanoutctl.h"
#include "util.h"

static const char *const outcome_names[] = ACK_OUTCOME_NAMES;
static const char *const state_names[] = W_STATE_NAMES;
static const char *const result_names[] = CTL_RESULT_NAMES;

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

void
output_send(const struct reply *rp, bool json)
{
	uint32_t i;

	if (json) {
		printf("{\"request\":%llu,\"message_id\":%llu,\"result\":\"%s\","
		    "\"acked\":%u,\"workers\":%u,\"timeout_ms\":%u,\"outcomes\":[",
		    (unsigned long long)rp->req_id,
		    (unsigned long long)rp->msg_id,
		    rp->result == CTL_RES_OK ? "ok" : "partial",
		    rp->acked, rp->workers, rp->limit);
		for (i = 0; i < rp->nrec; i++) {
			const struct worker_rec *r = &rp->rec[i];

			printf("%s{\"index\":%u,\"pid\":%u,\"port\":%u,"
			    "\"outcome\":\"%s\"", i ? "," : "", r->index,
			    r->pid, r->port,
			    NAME(outcome_names, r->outcome));
			if (r->outcome == ACK_OK)
				printf(",\"rtt_ms\":%.3f",
				    r->rtt_us / 1000.0);
			printf("}");
		}
		printf("]}\n");
		return;
	}
	for (i = 0; i < rp->nrec; i++) {
		const struct worker_rec *r = &rp->rec[i];

		printf("worker %u  pid %u  port %u  %-8s ", r->index,
		    r->pid, r->port, NAME(outcome_names, r->outcome));
		switch (r->outcome) {
		case ACK_OK:
			printf("%.3f ms\n", r->rtt_us / 1000.0);
			break;
		case ACK_TIMEOUT:
			printf("(no ack within %u ms)\n", rp->limit);
			break;
		case ACK_DOWN:
			printf("(not connected)\n");
			break;
		case ACK_SHUTDOWN:
			printf("(fanoutd stopped before it acked)\n");
			break;
		case ACK_FULL:
			printf("(queue full, not sent)\n");
			break;
		default:
			printf("\n");
		}
	}
	printf("delivered to %u/%u workers (message %llu)\n", rp->acked,
	    rp->workers, (unsigned long long)rp->msg_id);
}

void
output_send_line(const struct reply *rp, bool json)
{
	uint32_t i;
	bool first = true;

	if (json) {
		output_send(rp, true);
		return;
	}
	printf("message %llu: delivered to %u/%u workers",
	    (unsigned long long)rp->msg_id, rp->acked, rp->workers);
	for (i = 0; i < rp->nrec; i++) {
		const struct worker_rec *r = &rp->rec[i];

		if (r->outcome == ACK_OK)
			continue;
		printf("%s%u (%s)", first ? "; not acked: " : ", ",
		    r->index, NAME(outcome_names, r->outcome));
		first = false;
	}
	printf("\n");
}

void
output_status(const struct reply *rp, bool json)
{
	uint32_t i;

	if (json)
		printf("{\"workers\":[");
	for (i = 0; i < rp->nrec; i++) {
		const struct worker_rec *rec = &rp->rec[i];

		if (json)
			printf("%s{\"index\":%u,\"pid\":%u,\"port\":%u,"
			    "\"state\":\"%s\",\"acked\":%llu}", i ? "," : "",
			    rec->index, rec->pid, rec->port,
			    NAME(state_names, rec->state),
			    (unsigned long long)rec->acked);
		else
			printf("worker %u  pid %u  port %u  %-8s acked %llu\n",
			    rec->index, rec->pid, rec->port,
			    NAME(state_names, rec->state),
			    (unsigned long long)rec->acked);
	}
	if (json)
		printf("],\"up\":%u,\"total\":%u}\n", rp->acked, rp->workers);
}
