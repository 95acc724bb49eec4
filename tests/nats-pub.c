/* SPDX-License-Identifier: MIT */
/*
 * Test helper, standing in for fanoutd's side of remote workers until it
 * exists: sets up the stream and the workers' consumers the way issue 11
 * says, publishes messages as fanoutd will (proto.h), collects receipts
 * and shows a consumer's state.  Uses nats.c's blocking API: a test tool.
 *
 *	nats-pub [-s URL] [-t MS] setup [-a ACK_WAIT_MS] [-m MAX] NAME...
 *		waits up to MS for the broker (it has no readiness signal),
 *		then creates stream FANOUT (idempotent) and a consumer per NAME
 *	nats-pub [-s URL] send NAME ID MESSAGE	prints "seq N" or "duplicate"
 *	nats-pub [-s URL] sendn NAME COUNT	COUNT messages "m1".., ids 1..
 *	nats-pub [-s URL] receipts NAME FILE	appends a line per receipt
 *		to FILE until killed; prints "ready" once subscribed
 *	nats-pub [-s URL] info NAME	"pending N ack_pending N waiting N"
 *	nats-pub [-s URL] receipt NAME FIELDS REASON	a receipt as
 *		NAME would send it, on PREFIX.r.NAME.FIELDS (SEQ.STATUS.ID),
 *		or PREFIX.r.NAME if FIELDS is "": the fields as given,
 *		malformed ones too (a test of what fanoutd does with them)
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "proto.h"

static const char *url = "nats://127.0.0.1:4222";
static int timeout_ms = 10000;

static void __attribute__((noreturn))
die(const char *what, natsStatus s)
{
	const char *last = nats_GetLastError(NULL);

	fprintf(stderr, "nats-pub: %s: %s%s%s\n", what, natsStatus_GetText(s),
	    last ? ": " : "", last ? last : "");
	exit(1);
}

static natsConnection *
connect_wait(int ms)
{
	natsConnection *nc = NULL;
	natsOptions *o;
	natsStatus s;
	int64_t end = nats_Now() + ms;

	if ((s = natsOptions_Create(&o)) != NATS_OK ||
	    (s = natsOptions_SetURL(o, url)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(o, 2000)) != NATS_OK)
		die("options", s);
	while ((s = natsConnection_Connect(&nc, o)) != NATS_OK) {
		if (nats_Now() >= end)
			die(url, s);
		usleep(50000);	/* a retry interval, not a synchronisation */
	}
	natsOptions_Destroy(o);
	return nc;
}

static int
setup(jsCtx *js, int argc, char **argv)
{
	jsStreamConfig sc;
	jsConsumerConfig cc;
	jsStreamInfo *si = NULL;
	jsConsumerInfo *ci = NULL;
	const char *subjects[] = { FANOUT_NATS_PREFIX ".w.>" };
	char filter[256];
	jsErrCode jerr = 0;
	int64_t ack_wait = 30000, max = 1000;
	natsStatus s;
	int ch, i;

	while ((ch = getopt(argc, argv, "a:m:")) != -1) {
		if (ch == 'a')
			ack_wait = atoll(optarg);
		else if (ch == 'm')
			max = atoll(optarg);
		else
			return 2;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = FANOUT_NATS_STREAM;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Retention = js_WorkQueuePolicy;
	sc.Storage = js_FileStorage;
	sc.Discard = js_DiscardNew;
	sc.DiscardNewPerSubject = true;
	sc.MaxMsgsPerSubject = max;
	sc.Duplicates = (int64_t)120 * 1000000000;
	if ((s = js_AddStream(&si, js, &sc, NULL, &jerr)) != NATS_OK)
		die("add stream", s);
	jsStreamInfo_Destroy(si);
	for (i = optind; i < argc; i++) {
		snprintf(filter, sizeof(filter), "%s.w.%s", FANOUT_NATS_PREFIX,
		    argv[i]);
		jsConsumerConfig_Init(&cc);
		cc.Durable = argv[i];
		cc.FilterSubject = filter;
		cc.AckPolicy = js_AckExplicit;
		cc.MaxAckPending = 1;
		cc.AckWait = ack_wait * 1000000;
		cc.DeliverPolicy = js_DeliverAll;
		if ((s = js_AddConsumer(&ci, js, FANOUT_NATS_STREAM, &cc, NULL,
		    &jerr)) != NATS_OK)
			die("add consumer", s);
		jsConsumerInfo_Destroy(ci);
	}
	return 0;
}

static void
send_one(jsCtx *js, const char *name, const char *id, const char *data,
    int quiet)
{
	char subj[256], msgid[64];
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	natsMsg *m;
	natsStatus s;

	snprintf(subj, sizeof(subj), "%s.w.%s", FANOUT_NATS_PREFIX, name);
	snprintf(msgid, sizeof(msgid), "%s-%s", name, id);
	if ((s = natsMsg_Create(&m, subj, NULL, data, (int)strlen(data))) !=
	    NATS_OK ||
	    (s = natsMsgHeader_Set(m, FANOUT_HDR_MSGID, msgid)) != NATS_OK)
		die("message", s);
	if ((s = js_PublishMsg(&pa, js, m, NULL, &jerr)) != NATS_OK) {
		fprintf(stderr, "nats-pub: publish: %s (error code %d)\n",
		    natsStatus_GetText(s), (int)jerr);
		exit(jerr == 10077 ? 3 : 1);
	}
	if (!quiet) {
		if (pa->Duplicate)
			printf("duplicate\n");
		else
			printf("seq %" PRIu64 "\n", pa->Sequence);
	}
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
}

static volatile sig_atomic_t stop;

static void
on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int
receipts(natsConnection *nc, const char *name, const char *file)
{
	char subj[256], seq[32], st[32], id[32];
	natsSubscription *sub;
	size_t plen;
	natsMsg *m;
	natsStatus s;
	FILE *f;

	if ((f = fopen(file, "a")) == NULL) {
		perror(file);
		return 1;
	}
	snprintf(subj, sizeof(subj), "%s.r.%s.>", FANOUT_NATS_PREFIX, name);
	plen = strlen(subj) - 1;
	if ((s = natsConnection_SubscribeSync(&sub, nc, subj)) != NATS_OK ||
	    (s = natsConnection_Flush(nc)) != NATS_OK)
		die("subscribe", s);
	signal(SIGTERM, on_term);
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		s = natsSubscription_NextMsg(&m, sub, 200);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK)
			die("receive", s);
		/* SEQ.STATUS.ID (proto.h), written as it came. */
		if (sscanf(natsMsg_GetSubject(m) + plen,
		    "%31[^.].%31[^.].%31[^.]", seq, st, id) != 3) {
			snprintf(seq, sizeof(seq), "?");
			snprintf(st, sizeof(st), "?");
			snprintf(id, sizeof(id), "?");
		}
		fprintf(f, "worker=%s seq=%s id=%s status=%s reason=%.*s\n",
		    name, seq, id, st, natsMsg_GetDataLength(m),
		    natsMsg_GetData(m));
		fflush(f);
		natsMsg_Destroy(m);
	}
	natsSubscription_Destroy(sub);
	fclose(f);
	return 0;
}

static void
receipt(natsConnection *nc, const char *name, const char *fields,
    const char *reason)
{
	char subj[512];
	natsStatus s;

	snprintf(subj, sizeof(subj), "%s.r.%s%s%s", FANOUT_NATS_PREFIX, name,
	    fields[0] != '\0' ? "." : "", fields);
	if ((s = natsConnection_PublishString(nc, subj, reason)) != NATS_OK ||
	    (s = natsConnection_Flush(nc)) != NATS_OK)
		die("receipt", s);
}

int
main(int argc, char *argv[])
{
	natsConnection *nc;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	jsCtx *js;
	natsStatus s;
	char buf[32], data[64];
	int ch, i, n, r = 0;

	while ((ch = getopt(argc, argv, "+s:t:")) != -1) {
		if (ch == 's')
			url = optarg;
		else if (ch == 't')
			timeout_ms = atoi(optarg);
		else
			return 2;
	}
	if (optind >= argc)
		return 2;
	nc = connect_wait(timeout_ms);
	if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK)
		die("jetstream", s);
	argc -= optind;
	argv += optind;
	optind = 1;
	if (strcmp(argv[0], "setup") == 0)
		r = setup(js, argc, argv);
	else if (strcmp(argv[0], "send") == 0 && argc == 4)
		send_one(js, argv[1], argv[2], argv[3], 0);
	else if (strcmp(argv[0], "sendn") == 0 && argc == 3) {
		n = atoi(argv[2]);
		for (i = 1; i <= n; i++) {
			snprintf(buf, sizeof(buf), "%d", i);
			snprintf(data, sizeof(data), "m%d", i);
			send_one(js, argv[1], buf, data, 1);
		}
	} else if (strcmp(argv[0], "receipts") == 0 && argc == 3)
		r = receipts(nc, argv[1], argv[2]);
	else if (strcmp(argv[0], "receipt") == 0 && argc == 4)
		receipt(nc, argv[1], argv[2], argv[3]);
	else if (strcmp(argv[0], "info") == 0 && argc == 2) {
		if ((s = js_GetConsumerInfo(&ci, js, FANOUT_NATS_STREAM,
		    argv[1], NULL, &jerr)) != NATS_OK)
			die("consumer info", s);
		printf("pending %" PRIu64 " ack_pending %" PRId64
		    " waiting %" PRId64 " redelivered %" PRId64 "\n",
		    ci->NumPending, ci->NumAckPending, ci->NumWaiting,
		    ci->NumRedelivered);
		jsConsumerInfo_Destroy(ci);
	} else {
		fprintf(stderr, "nats-pub: bad command\n");
		r = 2;
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	nats_CloseAndWait(2000);
	return r;
}
