/* SPDX-License-Identifier: MIT */
/* fanoutctl's reply record, shared by the protocol side and output.c. */
#ifndef FANOUT_FANOUTCTL_H
#define FANOUT_FANOUTCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "payload.h"

/* A CTL_WORKER record and where its reason (the tail) is kept. */
struct worker_rec {
	struct ctl_worker w;
	uint32_t	 reason_off;	/* in reply.reasons */
	uint32_t	 reason_len;	/* 0..FANOUT_REASON_MAX; 0: none */
};

/*
 * One reply: the CTL_WORKER records, the CTL_DAEMON record of a status
 * reply, and the CTL_END that closed it, all as payload.h decoded them.
 * The records' reasons lie back to back in reasons, so that a record
 * without one costs nothing for it.
 */
struct reply {
	uint64_t	 req_id;
	struct worker_rec *rec;
	uint32_t	 nrec, caprec;
	char		*reasons;			/* no NULs */
	size_t		 reasons_len, reasons_cap;
	bool		 has_daemon;
	struct ctl_daemon daemon;
	char		 version[FANOUT_VERSION_MAX];	/* no NUL */
	size_t		 version_len;
	struct ctl_end	 end;
	bool		 done;
};

/* output.c: text for people, or one JSON object per reply */
void		 output_send(const struct reply *, bool json);
void		 output_send_line(const struct reply *, bool json);
void		 output_status(const struct reply *, bool json);
const char	*output_result(uint32_t result);
/* A send reply in which every worker acked and no handler failed. */
bool		 output_all_acked(const struct reply *);

#endif /* FANOUT_FANOUTCTL_H */
