/* SPDX-License-Identifier: MIT */
/*
 * The benchmark client as the reference programs (bench-ref,
 * bench-nats-ref) see it: one control connection at a time on their epoll
 * loop, its CTL_SEND frames numbered as broadcasts and handed to the
 * program, and one CTL_END per broadcast once the program has counted an
 * ack from every worker.  How a broadcast reaches the workers is the
 * program's.
 */
#ifndef FANOUT_REFCLIENT_H
#define FANOUT_REFCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct epoll_event;

#define REFCLIENT_SLOTS	4096	/* broadcasts in flight at most; a power of 2 */

struct refclient {
	int		 epfd;
	int		 lfd;		/* the control socket's listener */
	uint64_t	 ldata;		/* its epoll_event data */
	uint64_t	 data;		/* the client's */
	uint32_t	 workers;	/* acks each broadcast waits for */
	int		 fd;		/* -1: no client */
	struct rbuf	 in;
	struct wbuf	 out;
	bool		 pollout;	/* EPOLLOUT asked of epfd */
	uint64_t	 next_id;	/* the last broadcast's number */
	struct {
		uint64_t req_id;
		uint32_t pending;	/* acks still to come; 0: free */
	}		 slots[REFCLIENT_SLOTS];
};

/* A broadcast to send: its number, and the message (CTL_SEND's payload
 * past its fields). */
typedef void refclient_send_cb(uint64_t id, const uint8_t *msg, size_t len);

/* lfd is in epfd already, with ldata; data will be the client's. */
void	refclient_init(struct refclient *, int epfd, int lfd, uint64_t ldata,
	    uint64_t data, uint32_t workers);
/* An event on the loop: true if it was the listener's or the client's.
 * Each CTL_SEND read becomes one call of send. */
bool	refclient_event(struct refclient *, const struct epoll_event *,
	    refclient_send_cb *send);
/* An ack of broadcast id: -1 if none waits for one. */
int	refclient_ack(struct refclient *, uint64_t id);
/* The end of a loop turn: what the client has coming, in one write. */
void	refclient_flush(struct refclient *);

#endif
