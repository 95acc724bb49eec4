/* SPDX-License-Identifier: MIT */
/*
 * A worker's queue: the messages it has not acknowledged, oldest first, in a
 * ring that grows by doubling.  It belongs to the worker slot, not to a
 * link or a process, so nothing is lost when either goes away.  No I/O.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fanoutd.h"

#ifndef QUEUE_INIT
#define QUEUE_INIT	16
#endif

void
msg_unref(struct msg *m)
{
	if (--m->refs == 0)
		free(m);
}

size_t
msg_payload_len(const struct msg *m)
{
	return m->len - FANOUT_HDR_LEN;
}

void
queue_init(struct wqueue *q, uint32_t max_n, uint64_t max_bytes)
{
	memset(q, 0, sizeof(*q));
	q->max_n = max_n;
	q->max_bytes = max_bytes;
}

struct msg *
queue_at(const struct wqueue *q, uint32_t i)
{
	return q->ring[(q->head + i) & (q->cap - 1)];
}

static int
queue_grow(struct wqueue *q)
{
	uint32_t ncap = q->cap ? q->cap * 2 : QUEUE_INIT, i;
	struct msg **nr;

	if (ncap == 0 || (nr = malloc(ncap * sizeof(*nr))) == NULL)
		return -ENOMEM;
	/* Unwrap: the oldest goes to slot 0. */
	for (i = 0; i < q->n; i++)
		nr[i] = queue_at(q, i);
	free(q->ring);
	q->ring = nr;
	q->cap = ncap;
	q->head = 0;
	return 0;
}

struct msg *
msg_new(uint64_t id, uint64_t accepted_usec, const void *data, size_t len)
{
	struct msg *m = malloc(sizeof(*m) + FANOUT_HDR_LEN + len);

	if (m == NULL)
		return NULL;
	m->refs = 1;
	m->id = id;
	m->accepted_usec = accepted_usec;
	m->b = NULL;
	m->len = FANOUT_HDR_LEN + len;
	frame_hdr_encode(m->frame, MSG_DATA, (uint32_t)len, id);
	if (len > 0)
		memcpy(m->frame + FANOUT_HDR_LEN, data, len);
	return m;
}

int
queue_push(struct wqueue *q, struct msg *m)
{
	/* Refuse the new one: an older message is never dropped for it. */
	if (q->n >= q->max_n || q->bytes + msg_payload_len(m) > q->max_bytes)
		return -ENOBUFS;
	return queue_push_any(q, m);
}

int
queue_push_any(struct wqueue *q, struct msg *m)
{
	size_t len = msg_payload_len(m);
	int r;

	if (q->n == q->cap && (r = queue_grow(q)) < 0)
		return r;
	q->ring[(q->head + q->n) & (q->cap - 1)] = m;
	q->n++;
	q->bytes += len;
	m->refs++;
	return 0;
}

struct msg *
queue_pop(struct wqueue *q)
{
	struct msg *m = q->ring[q->head];

	q->head = (q->head + 1) & (q->cap - 1);
	q->n--;
	if (q->nsent > 0)
		q->nsent--;
	q->bytes -= msg_payload_len(m);
	return m;
}

uint32_t
queue_first_unsent(const struct wqueue *q)
{
	/* One being written is on the wire in part: it must go whole. */
	return q->nsent + (q->woff > 0);
}

struct msg *
queue_remove_at(struct wqueue *q, uint32_t i)
{
	struct msg *m = queue_at(q, i);

	/* Those behind it move up one: done only when a spool is full or an
	 * administrator drops a queue, and mostly at the tail. */
	for (; i + 1 < q->n; i++)
		q->ring[(q->head + i) & (q->cap - 1)] = queue_at(q, i + 1);
	q->n--;
	q->bytes -= msg_payload_len(m);
	return m;
}

void
queue_rewind(struct wqueue *q)
{
	q->nsent = 0;
	q->woff = 0;
}

uint32_t
queue_clear(struct wqueue *q)
{
	uint32_t n = q->n;

	while (q->n > 0)
		msg_unref(queue_pop(q));
	free(q->ring);
	q->ring = NULL;
	q->cap = q->head = q->nsent = 0;
	q->woff = 0;
	return n;
}
