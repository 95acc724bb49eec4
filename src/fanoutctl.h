/* SPDX-License-Identifier: MIT */
/* fanoutctl's reply record, shared by the protocol side and output.c. */
#ifndef FANOUT_FANOUTCTL_H
#define FANOUT_FANOUTCTL_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

/* A CTL_WORKER record, decoded. */
struct worker_rec {
	uint32_t	 index;
	uint32_t	 pid;
	uint16_t	 port;
	uint8_t		 state;		/* enum worker_state */
	uint8_t		 outcome;	/* enum ack_outcome */
	uint32_t	 rtt_us;
	uint64_t	 acked;
};

/* One reply: the CTL_WORKER records and the CTL_END that closed it. */
struct reply {
	uint64_t	 req_id;
	uint32_t	 result, acked, workers, limit;
	uint64_t	 msg_id;
	uint32_t	 nrec, caprec;
	struct worker_rec *rec;
	bool		 done;
};

/* output.c: text for people, or one JSON object per reply */
void		 output_send(const struct reply *, bool json);
void		 output_send_line(const struct reply *, bool json);
void		 output_status(const struct reply *, bool json);
const char	*output_result(uint32_t result);

#endif /* FANOUT_FANOUTCTL_H */
