/* SPDX-License-Identifier: MIT */
/*
 * Frame encoding and buffered frame I/O for non-blocking sockets: partial
 * reads and writes, several frames per read.  The header is validated before
 * any payload byte is looked at.  No policy and no logging here.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"

/* Read granularity: large enough for a burst of small frames per syscall. */
#ifndef FRAME_READ_CHUNK
#define FRAME_READ_CHUNK	(64 * 1024)
#endif

void
put_u16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

void
put_u32(uint8_t *p, uint32_t v)
{
	put_u16(p, v >> 16);
	put_u16(p + 2, v);
}

void
put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, v >> 32);
	put_u32(p + 4, v);
}

uint16_t
get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)get_u16(p) << 16 | get_u16(p + 2);
}

uint64_t
get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

void
frame_hdr_encode(uint8_t *p, uint8_t type, uint32_t len, uint64_t id)
{
	p[0] = FANOUT_PROTO_VERSION;
	p[1] = type;
	put_u16(p + 2, 0);
	put_u32(p + 4, len);
	put_u64(p + 8, id);
}

static int
type_known(uint8_t t)
{
	switch (t) {
	case MSG_DATA:
	case MSG_ACK:
	case MSG_AUTH_HELLO:
	case MSG_AUTH_CHALLENGE:
	case MSG_AUTH_PROOF:
	case CTL_SEND:
	case CTL_STATUS:
	case CTL_WORKER:
	case CTL_END:
	case CTL_DAEMON:
	case CTL_STATS:
	case CTL_HIST:
	case CTL_RELOAD:
	case CTL_CHANGE:
	case CTL_QUEUE:
	case CTL_QSTAT:
		return 1;
	}
	return 0;
}

int
frame_hdr_decode(const uint8_t *p, uint32_t max_payload, struct frame_hdr *h)
{
	h->version = p[0];
	h->type = p[1];
	h->flags = get_u16(p + 2);
	h->len = get_u32(p + 4);
	h->id = get_u64(p + 8);
	if (h->version != FANOUT_PROTO_VERSION)
		return -EPROTO;
	if (!type_known(h->type))
		return -EBADMSG;
	if (h->len > max_payload)
		return -EMSGSIZE;
	return 0;
}

const char *
frame_strerror(int e)
{
	switch (e) {
	case -EPROTO:
		return "unsupported protocol version";
	case -EBADMSG:
		return "unknown frame type";
	case -EMSGSIZE:
		return "frame longer than allowed";
	}
	return strerror(-e);
}

void
rbuf_init(struct rbuf *rb, uint32_t max_payload)
{
	memset(rb, 0, sizeof(*rb));
	rb->max_payload = max_payload;
}

void
rbuf_free(struct rbuf *rb)
{
	free(rb->buf);
	rb->buf = NULL;
	rb->off = rb->len = rb->cap = 0;
}

/* Room for `want` more bytes after len, moving unparsed bytes to the front
 * first so that a long-lived connection never grows past one frame. */
static int
rbuf_reserve(struct rbuf *rb, size_t want)
{
	uint8_t *nb;
	size_t ncap;

	if (rb->off > 0) {
		memmove(rb->buf, rb->buf + rb->off, rb->len - rb->off);
		rb->len -= rb->off;
		rb->off = 0;
	}
	if (rb->cap - rb->len >= want)
		return 0;
	ncap = rb->cap ? rb->cap : FRAME_READ_CHUNK;
	while (ncap - rb->len < want)
		ncap *= 2;
	if ((nb = realloc(rb->buf, ncap)) == NULL)
		return -ENOMEM;
	rb->buf = nb;
	rb->cap = ncap;
	return 0;
}

ssize_t
rbuf_read(struct rbuf *rb, int fd)
{
	size_t want = FRAME_READ_CHUNK, room, held, limit;
	ssize_t n;
	int r;

	/* Read a whole pending frame at once when its header is in. */
	if (rb->len - rb->off >= FANOUT_HDR_LEN) {
		size_t flen = FANOUT_HDR_LEN + (size_t)get_u32(rb->buf +
		    rb->off + 4);

		if (flen <= FANOUT_HDR_LEN + (size_t)rb->max_payload &&
		    flen > rb->len - rb->off + want)
			want = flen - (rb->len - rb->off);
	}
	if ((r = rbuf_reserve(rb, want)) < 0)
		return r;
	/* Never more unparsed bytes than one frame of the largest size
	 * allowed (or one chunk): what a peer makes us hold is bounded by
	 * max_payload, not by what it sends.  rbuf_next is called until it
	 * says incomplete before the next read, so this is always > 0. */
	held = rb->len - rb->off;
	limit = FANOUT_HDR_LEN + (size_t)rb->max_payload;
	if (limit < FRAME_READ_CHUNK)
		limit = FRAME_READ_CHUNK;
	room = rb->cap - rb->len;
	if (held < limit && room > limit - held)
		room = limit - held;
	n = read(fd, rb->buf + rb->len, room);
	if (n == -1)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	rb->drained = (size_t)n < room;
	rb->len += (size_t)n;
	return n;
}

int
rbuf_next(struct rbuf *rb, struct frame_hdr *h, const uint8_t **payload)
{
	size_t avail = rb->len - rb->off;
	int r;

	if (avail < FANOUT_HDR_LEN)
		return 0;
	if ((r = frame_hdr_decode(rb->buf + rb->off, rb->max_payload, h)) < 0)
		return r;
	if (avail < FANOUT_HDR_LEN + (size_t)h->len)
		return 0;
	*payload = rb->buf + rb->off + FANOUT_HDR_LEN;
	rb->off += FANOUT_HDR_LEN + (size_t)h->len;
	if (rb->off == rb->len)
		rb->off = rb->len = 0;
	return 1;
}

void
wbuf_init(struct wbuf *wb)
{
	memset(wb, 0, sizeof(*wb));
}

void
wbuf_free(struct wbuf *wb)
{
	free(wb->buf);
	memset(wb, 0, sizeof(*wb));
}

size_t
wbuf_pending(const struct wbuf *wb)
{
	return wb->len - wb->off;
}

int
wbuf_frame(struct wbuf *wb, uint8_t type, uint64_t id, const void *payload,
    size_t len)
{
	size_t need = FANOUT_HDR_LEN + len;

	if (len > UINT32_MAX)
		return -EMSGSIZE;
	if (wb->off > 0 && wb->off == wb->len)
		wb->off = wb->len = 0;
	if (wb->cap - wb->len < need) {
		size_t ncap = wb->cap ? wb->cap : 4096;
		uint8_t *nb;

		if (wb->off > 0) {
			memmove(wb->buf, wb->buf + wb->off, wb->len - wb->off);
			wb->len -= wb->off;
			wb->off = 0;
		}
		while (ncap - wb->len < need)
			ncap *= 2;
		if (ncap != wb->cap) {
			if ((nb = realloc(wb->buf, ncap)) == NULL)
				return -ENOMEM;
			wb->buf = nb;
			wb->cap = ncap;
		}
	}
	frame_hdr_encode(wb->buf + wb->len, type, (uint32_t)len, id);
	if (len > 0)
		memcpy(wb->buf + wb->len + FANOUT_HDR_LEN, payload, len);
	wb->len += need;
	return 0;
}

int
wbuf_flush(struct wbuf *wb, int fd)
{
	while (wb->off < wb->len) {
		ssize_t n = write(fd, wb->buf + wb->off, wb->len - wb->off);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return errno == EWOULDBLOCK ? 1 : -errno;
		}
		wb->off += (size_t)n;
	}
	wb->off = wb->len = 0;
	return 0;
}
