/* SPDX-License-Identifier: MIT */
/* The payload codecs, each generated from its field list in proto.h. */
#include "config.h"

#include <assert.h>
#include <errno.h>

#include "frame.h"
#include "payload.h"

static uint8_t *
pf_put_u8(uint8_t *p, uint8_t v)
{
	*p = v;
	return p + 1;
}

static uint8_t *
pf_put_u16(uint8_t *p, uint16_t v)
{
	put_u16(p, v);
	return p + 2;
}

static uint8_t *
pf_put_u32(uint8_t *p, uint32_t v)
{
	put_u32(p, v);
	return p + 4;
}

static uint8_t *
pf_put_u64(uint8_t *p, uint64_t v)
{
	put_u64(p, v);
	return p + 8;
}

static uint8_t
pf_get_u8(const uint8_t **p)
{
	return *(*p)++;
}

static uint16_t
pf_get_u16(const uint8_t **p)
{
	*p += 2;
	return get_u16(*p - 2);
}

static uint32_t
pf_get_u32(const uint8_t **p)
{
	*p += 4;
	return get_u32(*p - 4);
}

static uint64_t
pf_get_u64(const uint8_t **p)
{
	*p += 8;
	return get_u64(*p - 8);
}

#define PF_PUT(t, n)	p = pf_put_##t(p, r->n);
#define PF_GET(t, n)	r->n = pf_get_##t(&p);

/* exact: the payload is the record alone; otherwise a tail may follow. */
/* The encoder checks its own arithmetic: the fields end at LEN. */
#define PAYLOAD_CODEC(name, FIELDS, LEN, exact) \
void \
name##_encode(uint8_t *out, const struct name *r) \
{ \
	uint8_t *p = out; \
\
	FIELDS(PF_PUT) \
	assert(p == out + (LEN)); \
} \
\
int \
name##_decode(const uint8_t *p, size_t len, struct name *r) \
{ \
	if (len < (LEN) || ((exact) && len != (LEN))) \
		return -EBADMSG; \
	FIELDS(PF_GET) \
	return 0; \
}

PAYLOAD_CODEC(msg_ack, MSG_ACK_FIELDS, MSG_ACK_LEN, 0)
PAYLOAD_CODEC(ctl_send, CTL_SEND_FIELDS, CTL_SEND_LEN, 0)
PAYLOAD_CODEC(ctl_worker, CTL_WORKER_FIELDS, CTL_WORKER_LEN, 0)
PAYLOAD_CODEC(ctl_daemon, CTL_DAEMON_FIELDS, CTL_DAEMON_LEN, 0)
PAYLOAD_CODEC(ctl_end, CTL_END_FIELDS, CTL_END_LEN, 1)
PAYLOAD_CODEC(ctl_hist, CTL_HIST_FIELDS, CTL_HIST_LEN, 0)
PAYLOAD_CODEC(ctl_change, CTL_CHANGE_FIELDS, CTL_CHANGE_LEN, 0)
PAYLOAD_CODEC(ctl_queue, CTL_QUEUE_FIELDS, CTL_QUEUE_LEN, 1)
PAYLOAD_CODEC(ctl_qstat, CTL_QSTAT_FIELDS, CTL_QSTAT_LEN, 1)
