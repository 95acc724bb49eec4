/* SPDX-License-Identifier: MIT */
/* fanoutctl's reply record, shared by the protocol side and output.c. */
#ifndef FANOUT_FANOUTCTL_H
#define FANOUT_FANOUTCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "payload.h"

/*
 * One reply: the CTL_WORKER records, the CTL_DAEMON record of a status
 * reply, and the CTL_END that closed it, all as payload.h decoded them.
 */
struct reply {
	uint64_t	 req_id;
	struct ctl_worker *rec;
	uint32_t	 nrec, caprec;
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

#endif /* FANOUT_FANOUTCTL_H */
