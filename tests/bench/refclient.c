/* SPDX-License-Identifier: MIT */
/*
 * The reference programs' control client (refclient.h): accepting it,
 * reading its CTL_SEND frames, keeping its broadcasts in flight and
 * answering each with a CTL_END.  Nothing about the workers.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <err.h>
#include <errno.h>
#include <unistd.h>

#include "payload.h"
#include "refclient.h"

void
refclient_init(struct refclient *c, int epfd, int lfd, uint64_t ldata,
    uint64_t data, uint32_t workers)
{
	c->epfd = epfd;
	c->lfd = lfd;
	c->ldata = ldata;
	c->data = data;
	c->workers = workers;
	c->fd = -1;
}

static void
refclient_close(struct refclient *c)
{
	(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	rbuf_free(&c->in);
	wbuf_free(&c->out);
	c->pollout = false;
}

/* One client at a time: the benchmark's. */
static void
refclient_accept(struct refclient *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = c->data };
	int fd;

	if ((fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) ==
	    -1)
		return;
	if (c->fd != -1 || epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		close(fd);
		return;
	}
	c->fd = fd;
	rbuf_init(&c->in, FANOUT_PAYLOAD_MAX);
	wbuf_init(&c->out);
}

static void
refclient_end(struct refclient *c, uint64_t req_id, uint32_t result,
    uint32_t acked, uint64_t msg_id)
{
	uint8_t p[CTL_END_LEN];
	struct ctl_end e = {
		.result = result,
		.acked = acked,
		.workers = c->workers,
		.msg_id = msg_id,
	};
	int r;

	ctl_end_encode(p, &e);
	if (c->fd != -1 &&
	    (r = wbuf_frame(&c->out, CTL_END, req_id, p, sizeof(p))) < 0) {
		errno = -r;
		err(1, "client buffer");
	}
}

/* Bad input gets its CTL_END and a close. */
static void
refclient_fail(struct refclient *c, uint64_t req_id, uint32_t result)
{
	refclient_end(c, req_id, result, 0, 0);
	(void)wbuf_flush(&c->out, c->fd);
	refclient_close(c);
}

static void
refclient_read(struct refclient *c, refclient_send_cb *send)
{
	struct frame_hdr h;
	const uint8_t *p;
	ssize_t n;
	size_t i;
	int r;

	n = rbuf_read(&c->in, c->fd);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		refclient_close(c);
		return;
	}
	while ((r = rbuf_next(&c->in, &h, &p)) == 1) {
		if (h.type != CTL_SEND || h.len < CTL_SEND_LEN ||
		    h.len - CTL_SEND_LEN > FANOUT_MESSAGE_MAX) {
			refclient_fail(c, h.id, CTL_RES_BADTYPE);
			return;
		}
		i = (c->next_id + 1) & (REFCLIENT_SLOTS - 1);
		if (c->slots[i].pending != 0) {
			refclient_end(c, h.id, CTL_RES_BUSY, 0, 0);
			continue;
		}
		c->next_id++;
		c->slots[i].req_id = h.id;
		c->slots[i].pending = c->workers;
		send(c->next_id, p + CTL_SEND_LEN, h.len - CTL_SEND_LEN);
	}
	if (r < 0)
		refclient_fail(c, h.id, CTL_RES_BADFRAME);
}

bool
refclient_event(struct refclient *c, const struct epoll_event *ev,
    refclient_send_cb *send)
{
	if (ev->data.u64 == c->ldata) {
		refclient_accept(c);
		return true;
	}
	if (ev->data.u64 != c->data)
		return false;
	if (c->fd != -1 && (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		refclient_read(c, send);
	return true;
}

int
refclient_ack(struct refclient *c, uint64_t id)
{
	size_t i = id & (REFCLIENT_SLOTS - 1);

	if (c->slots[i].pending == 0)
		return -1;
	if (--c->slots[i].pending == 0)
		refclient_end(c, c->slots[i].req_id, CTL_RES_OK, c->workers,
		    id);
	return 0;
}

void
refclient_flush(struct refclient *c)
{
	bool want;
	int r;

	if (c->fd == -1 || (wbuf_pending(&c->out) == 0 && !c->pollout))
		return;
	if ((r = wbuf_flush(&c->out, c->fd)) < 0) {
		refclient_close(c);
		return;
	}
	want = r == 1;
	if (want != c->pollout && epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd,
	    &(struct epoll_event){ .events = EPOLLIN | (want ? EPOLLOUT : 0),
	    .data.u64 = c->data }) == 0)
		c->pollout = want;
}
