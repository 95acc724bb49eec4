/* SPDX-License-Identifier: MIT */
/*
 * One encoder and one decoder per payload of proto.h, generated from its
 * field list: fanoutd, fanoutctl, fanout-worker and the tests all use these,
 * so a layout lives in exactly one place.
 */
#ifndef FANOUT_PAYLOAD_H
#define FANOUT_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define PAYLOAD_CTYPE_u8	uint8_t
#define PAYLOAD_CTYPE_u16	uint16_t
#define PAYLOAD_CTYPE_u32	uint32_t
#define PAYLOAD_CTYPE_u64	uint64_t
#define PAYLOAD_MEMBER(t, n)	PAYLOAD_CTYPE_##t n;

struct msg_ack		{ MSG_ACK_FIELDS(PAYLOAD_MEMBER) };
struct ctl_send		{ CTL_SEND_FIELDS(PAYLOAD_MEMBER) };
struct ctl_worker	{ CTL_WORKER_FIELDS(PAYLOAD_MEMBER) };
struct ctl_daemon	{ CTL_DAEMON_FIELDS(PAYLOAD_MEMBER) };
struct ctl_end		{ CTL_END_FIELDS(PAYLOAD_MEMBER) };
struct ctl_hist		{ CTL_HIST_FIELDS(PAYLOAD_MEMBER) };
struct ctl_change	{ CTL_CHANGE_FIELDS(PAYLOAD_MEMBER) };
struct ctl_queue	{ CTL_QUEUE_FIELDS(PAYLOAD_MEMBER) };
struct ctl_qstat	{ CTL_QSTAT_FIELDS(PAYLOAD_MEMBER) };

/*
 * name_encode writes exactly NAME_LEN bytes.  name_decode reads a payload of
 * len bytes: 0, or -EBADMSG unless len is NAME_LEN (payloads with a tail,
 * MSG_ACK, CTL_SEND, CTL_WORKER, CTL_DAEMON, CTL_HIST and CTL_CHANGE: at least
 * NAME_LEN; the tail follows, and its bound is the caller's to check).
 */
#define PAYLOAD_PROTOS(name) \
	void	name##_encode(uint8_t *, const struct name *); \
	int	name##_decode(const uint8_t *, size_t len, struct name *);
PAYLOAD_PROTOS(msg_ack)
PAYLOAD_PROTOS(ctl_send)
PAYLOAD_PROTOS(ctl_worker)
PAYLOAD_PROTOS(ctl_daemon)
PAYLOAD_PROTOS(ctl_end)
PAYLOAD_PROTOS(ctl_hist)
PAYLOAD_PROTOS(ctl_change)
PAYLOAD_PROTOS(ctl_queue)
PAYLOAD_PROTOS(ctl_qstat)
#undef PAYLOAD_PROTOS

#endif /* FANOUT_PAYLOAD_H */
