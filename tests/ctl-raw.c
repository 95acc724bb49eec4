/* SPDX-License-Identifier: MIT */
/*
 * ctl-raw: talk to fanoutd's control socket with hand-made frames, good or
 * bad, and print every reply frame; for the bad-input scenario tests.
 *
 *	ctl-raw [-t TIMEOUT_MS] [-n ENDS] [-c] [-H] [-F FLAGS] SOCKET CASE [ARG]
 *
 * Cases (request id 1 unless said otherwise):
 *	status			a well-formed CTL_STATUS
 *	pipeline N		N CTL_STATUS frames, ids 1..N, in one write
 *	send TEXT		a well-formed CTL_SEND (flags: -F, default 0)
 *	send-too-big N		a CTL_SEND carrying an N-byte message
 *	oversize		CTL_SEND frame header: FANOUT_PAYLOAD_MAX + 1
 *				bytes
 *	huge-length		CTL_SEND header announcing 0xffffffff bytes
 *	truncated		CTL_SEND header for 100 bytes, 10 sent, EOF
 *	truncated-header	7 bytes of a header, then EOF
 *	short-send		CTL_SEND payload shorter than CTL_SEND_LEN
 *	badversion		CTL_STATUS with protocol version
 *				FANOUT_PROTO_VERSION + 1
 *	badtype			frame type 99
 *	wrongtype		MSG_DATA (a worker frame) on this socket
 *	garbage			an HTTP request
 *	hex HEX			these bytes
 *
 * -n ENDS	CTL_END frames to wait for (default 1; "pipeline N": N)
 * -c		then also wait until the daemon closes the connection
 * -H		after sending, wait for EOF on stdin before reading replies
 * -t		deadline for the whole exchange (default 5000 ms)
 * -F		the flags field of the send cases' CTL_SEND (CTL_SEND_WAIT,
 *		or bits the daemon does not know), decimal or 0x hex
 *
 * Payloads are encoded and decoded with payload.h, the daemon's own codecs.
 * Prints "sent" once the request is written, one line per reply frame
 * ("worker id=N ...", "daemon id=N ...", "end id=N result=N ..."; a frame
 * of another type or a payload that does not decode: "frame type=N
 * len=N id=N"), then "closed" if the daemon closed the connection.
 * Exit 0 when the
 * expected frames (and with -c the close) came, or the daemon closed the
 * connection first; 1 on timeout or an unreadable reply; 2 usage error;
 * 3 cannot connect.
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "payload.h"
#include "util.h"

static const char *state_names[] = WIRE_STATE_NAMES;
static const char *outcome_names[] = ACK_OUTCOME_NAMES;
static const char *result_names[] = CTL_RESULT_NAMES;

#define NAME(tab, i) \
	((size_t)(i) < sizeof(tab) / sizeof(tab[0]) ? tab[i] : "?")

static void
usage(void)
{
	fprintf(stderr, "usage: ctl-raw [-t TIMEOUT_MS] [-n ENDS] [-c] [-H] "
	    "[-F FLAGS] SOCKET CASE [ARG]\n");
	exit(2);
}

static long
now_ms(void)
{
	return (long)(now_usec() / 1000);
}

static void
put_raw(struct wbuf *wb, const void *p, size_t len)
{
	if (wb->cap - wb->len < len) {
		size_t ncap = wb->len + len;

		if ((wb->buf = realloc(wb->buf, ncap)) == NULL) {
			perror("ctl-raw");
			exit(1);
		}
		wb->cap = ncap;
	}
	memcpy(wb->buf + wb->len, p, len);
	wb->len += len;
}

static void
put_hdr(struct wbuf *wb, uint8_t version, uint8_t type, uint32_t len,
    uint64_t id)
{
	uint8_t h[FANOUT_HDR_LEN];

	frame_hdr_encode(h, type, len, id);
	h[0] = version;
	put_raw(wb, h, sizeof(h));
}

static uint32_t	send_flags;	/* -F */

static void
put_send(struct wbuf *wb, const void *msg, size_t len)
{
	const struct ctl_send cs = { .timeout_ms = 0, .flags = send_flags };
	uint8_t t[CTL_SEND_LEN];

	put_hdr(wb, FANOUT_PROTO_VERSION, CTL_SEND,
	    (uint32_t)(CTL_SEND_LEN + len), 1);
	ctl_send_encode(t, &cs);
	put_raw(wb, t, sizeof(t));
	put_raw(wb, msg, len);
}

static long
number(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 0)
		usage();
	return v;
}

/* Build the request for CASE; returns how many CTL_END replies to expect
 * and sets *shut when the write side is to be closed after it. */
static int
build(struct wbuf *wb, const char *what, const char *arg, int *shut)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	uint8_t pad[100];
	long i, n;

	memset(pad, 'x', sizeof(pad));
	*shut = 0;
	if (strcmp(what, "status") == 0) {
		put_hdr(wb, FANOUT_PROTO_VERSION, CTL_STATUS, 0, 1);
	} else if (strcmp(what, "pipeline") == 0 && arg) {
		n = number(arg);
		for (i = 1; i <= n; i++)
			put_hdr(wb, FANOUT_PROTO_VERSION, CTL_STATUS, 0,
			    (uint64_t)i);
		return (int)n;
	} else if (strcmp(what, "send") == 0 && arg) {
		put_send(wb, arg, strlen(arg));
	} else if (strcmp(what, "send-too-big") == 0 && arg) {
		char *m;

		n = number(arg);
		if ((m = malloc((size_t)n + 1)) == NULL)
			exit(1);
		memset(m, 'x', (size_t)n);
		put_send(wb, m, (size_t)n);
		free(m);
	} else if (strcmp(what, "oversize") == 0) {
		put_hdr(wb, FANOUT_PROTO_VERSION, CTL_SEND,
		    FANOUT_PAYLOAD_MAX + 1, 1);
	} else if (strcmp(what, "huge-length") == 0) {
		put_hdr(wb, FANOUT_PROTO_VERSION, CTL_SEND, UINT32_MAX, 1);
	} else if (strcmp(what, "truncated") == 0) {
		put_hdr(wb, FANOUT_PROTO_VERSION, CTL_SEND, sizeof(pad), 1);
		put_raw(wb, pad, 10);
		*shut = 1;
	} else if (strcmp(what, "truncated-header") == 0) {
		uint8_t h[FANOUT_HDR_LEN];

		frame_hdr_encode(h, CTL_STATUS, 0, 1);
		put_raw(wb, h, 7);
		*shut = 1;
	} else if (strcmp(what, "short-send") == 0) {
		put_hdr(wb, FANOUT_PROTO_VERSION, CTL_SEND,
		    CTL_SEND_LEN - 2, 1);
		put_raw(wb, pad, CTL_SEND_LEN - 2);
	} else if (strcmp(what, "badversion") == 0) {
		put_hdr(wb, FANOUT_PROTO_VERSION + 1, CTL_STATUS, 0, 1);
	} else if (strcmp(what, "badtype") == 0) {
		put_hdr(wb, FANOUT_PROTO_VERSION, 99, 0, 1);
	} else if (strcmp(what, "wrongtype") == 0) {
		put_hdr(wb, FANOUT_PROTO_VERSION, MSG_DATA, 5, 1);
		put_raw(wb, "hello", 5);
	} else if (strcmp(what, "garbage") == 0) {
		put_raw(wb, http, sizeof(http) - 1);
	} else if (strcmp(what, "hex") == 0 && arg) {
		size_t len = strlen(arg);
		size_t k;

		if (len % 2)
			usage();
		for (k = 0; k < len; k += 2) {
			unsigned int b;
			uint8_t c;

			if (sscanf(arg + k, "%2x", &b) != 1)
				usage();
			c = (uint8_t)b;
			put_raw(wb, &c, 1);
		}
	} else
		usage();
	return 1;
}

/* Print one reply frame; returns 1 for a CTL_END. */
static int
show(const struct frame_hdr *h, const uint8_t *p)
{
	struct ctl_worker w;
	struct ctl_daemon d;
	struct ctl_end e;

	if (h->type == CTL_WORKER && ctl_worker_decode(p, h->len, &w) == 0) {
		printf("worker id=%llu index=%u pid=%u port=%u state=%s "
		    "outcome=%s rtt_us=%u acked=%llu restarts=%u queued=%u "
		    "queued_bytes=%llu\n", (unsigned long long)h->id,
		    w.index, w.pid, w.port, NAME(state_names, w.state),
		    NAME(outcome_names, w.outcome), w.rtt_us,
		    (unsigned long long)w.acked, w.restarts, w.queued,
		    (unsigned long long)w.queued_bytes);
		return 0;
	}
	if (h->type == CTL_DAEMON && ctl_daemon_decode(p, h->len, &d) == 0) {
		printf("daemon id=%llu pid=%u accepted=%llu version=%.*s\n",
		    (unsigned long long)h->id, d.pid,
		    (unsigned long long)d.accepted,
		    (int)(h->len - CTL_DAEMON_LEN), p + CTL_DAEMON_LEN);
		return 0;
	}
	if (h->type == CTL_END && ctl_end_decode(p, h->len, &e) == 0) {
		printf("end id=%llu result=%u (%s) acked=%u workers=%u "
		    "limit=%u msg_id=%llu queued=%u\n",
		    (unsigned long long)h->id, e.result,
		    NAME(result_names, e.result), e.acked, e.workers, e.limit,
		    (unsigned long long)e.msg_id, e.queued);
		return 1;
	}
	printf("frame type=%u len=%u id=%llu\n", h->type, h->len,
	    (unsigned long long)h->id);
	return 0;
}

/* File scope: still reachable at exit, so LeakSanitizer stays quiet. */
static struct rbuf	rb;
static struct wbuf	wb;

int
main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path, *what, *arg;
	long timeout = 5000, deadline;
	int ch, fd, shut, hold = 0, want_close = 0, ends_wanted = -1;
	int ends = 0, writing = 1;

	while ((ch = getopt(argc, argv, "t:n:cHF:h")) != -1) {
		switch (ch) {
		case 'F': {
			char *end;
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 0);
			if (*optarg == '\0' || *end != '\0' || errno != 0 ||
			    v > UINT32_MAX)
				usage();
			send_flags = (uint32_t)v;
			break;
		}
		case 't':
			timeout = number(optarg);
			break;
		case 'n':
			ends_wanted = (int)number(optarg);
			break;
		case 'c':
			want_close = 1;
			break;
		case 'H':
			hold = 1;
			break;
		default:
			usage();
		}
	}
	argv += optind;
	argc -= optind;
	if (argc < 2 || argc > 3)
		usage();
	path = argv[0];
	what = argv[1];
	arg = argc > 2 ? argv[2] : NULL;
	signal(SIGPIPE, SIG_IGN);

	wbuf_init(&wb);
	rbuf_init(&rb, 1 << 20);
	if (build(&wb, what, arg, &shut) > 1 && ends_wanted < 0)
		ends_wanted = (int)number(arg);
	if (ends_wanted < 0)
		ends_wanted = 1;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "ctl-raw: %s: path too long\n", path);
		return 3;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		fprintf(stderr, "ctl-raw: cannot connect to %s: %s\n", path,
		    strerror(errno));
		return 3;
	}

	deadline = now_ms() + timeout;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		struct frame_hdr h;
		const uint8_t *payload;
		long left = deadline - now_ms();
		ssize_t n;
		int r;

		if (writing) {
			r = wbuf_flush(&wb, fd);
			if (r < 0) {
				printf("write failed: %s\n", strerror(-r));
				writing = 0;
			} else if (r == 0) {
				writing = 0;
				printf("sent\n");
				fflush(stdout);
				if (shut)
					shutdown(fd, SHUT_WR);
				if (hold) {
					char b[256];

					while (read(0, b, sizeof(b)) > 0)
						;
					deadline = now_ms() + timeout;
					left = timeout;
				}
			} else
				pfd.events |= POLLOUT;
		}
		if (left <= 0) {
			printf("timeout: %d of %d end frames%s after %ld ms\n",
			    ends, ends_wanted,
			    ends >= ends_wanted ? ", connection still open" :
			    "", timeout);
			return 1;
		}
		r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno != EINTR) {
			perror("ctl-raw: poll");
			return 1;
		}
		if (r <= 0 || !(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = rbuf_read(&rb, fd);
		if (n == -EAGAIN || n == -EINTR)
			continue;
		while ((r = rbuf_next(&rb, &h, &payload)) == 1)
			ends += show(&h, payload);
		if (r < 0) {
			printf("bad reply frame: %s\n", frame_strerror(r));
			return 1;
		}
		if (n == 0 || n < 0) {
			if (rb.len - rb.off > 0)
				printf("partial reply frame: %zu bytes\n",
				    rb.len - rb.off);
			if (n == 0)
				printf("closed\n");
			else
				printf("closed (%s)\n", strerror((int)-n));
			return 0;
		}
		if (ends >= ends_wanted && !want_close)
			return 0;
	}
}
