/* SPDX-License-Identifier: MIT */
/* fanoutctl's reply record, shared by the protocol side and output.c. */
#ifndef FANOUT_FANOUTCTL_H
#define FANOUT_FANOUTCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "payload.h"


/* check's thresholds, each reached at that value; 0: not set. */
struct check_limits {
	uint32_t	 warn_down, crit_down;	/* workers not up; crit 0: all */
	uint64_t	 warn_queued, crit_queued; /* summed over the workers */
};

/* A CTL_WORKER record, a remote worker's name (w.name_len > 0), and where
 * its reason (the rest of the tail) is kept. */
struct worker_rec {
	struct ctl_worker w;
	char		 name[FANOUT_NAME_MAX + 1];	/* NUL ended */
	uint32_t	 reason_off;	/* in reply.reasons */
	uint32_t	 reason_len;	/* 0..FANOUT_REASON_MAX; 0: none */
};

/* A CTL_HIST record (stats replies): a worker's counters and histogram. */
struct hist_rec {
	struct ctl_hist	 h;
	uint64_t	 bucket[FANOUT_HIST_BUCKETS];
};

/* A CTL_CHANGE record (reload replies) and its text. */
struct change_rec {
	struct ctl_change c;
	char		*text;		/* no NUL inside; NUL ended */
	size_t		 len;
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
	struct hist_rec	*hist;		/* stats replies: one per record */
	uint32_t	 nhist, caphist;
	char		*reasons;			/* no NULs */
	size_t		 reasons_len, reasons_cap;
	bool		 has_daemon;
	struct ctl_daemon daemon;
	char		 version[FANOUT_VERSION_MAX];	/* no NUL */
	size_t		 version_len;
	struct change_rec *changes;	/* reload replies */
	uint32_t	 nchanges, capchanges;
	struct ctl_qstat *qstats;	/* queue replies */
	uint32_t	 nqstats, capqstats;
	struct ctl_end	 end;
	bool		 done;
};

/* output.c: text for people, or one JSON object per reply */
#define OUTPUT_JSON_FORMAT	1	/* the "format" member of every object */
struct json_t;
/* Prints one object on a line and frees it; NULL: out of memory. */
void		 output_json(struct json_t *);
/* enum wire_state as the outputs show it */
const char	*output_state(unsigned state);
void		 output_send(const struct reply *, bool json);
void		 output_send_line(const struct reply *, bool json);
void		 output_status(const struct reply *, bool json);
void		 output_reload(const struct reply *, bool json);
/* drop: the reply to queue drop (one record: what was dropped) */
void		 output_queue(const struct reply *, bool drop, bool json);
/* The plugin line of check; returns its exit status, 0 OK to 2 CRITICAL. */
int		 output_check(const struct reply *, const struct check_limits *);
const char	*output_result(uint32_t result);
/* A send reply in which every worker acked and no handler failed. */
bool		 output_all_acked(const struct reply *);

/* stats.c: a stats reply as text, JSON or the Prometheus text format */
enum stats_format { STATS_TEXT, STATS_JSON, STATS_PROMETHEUS };
void		 output_stats(const struct reply *, enum stats_format);

#endif /* FANOUT_FANOUTCTL_H */
