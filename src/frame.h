/* SPDX-License-Identifier: MIT */
/* Frame encoding and buffered, non-blocking frame I/O (see proto.h). */
#ifndef FANOUT_FRAME_H
#define FANOUT_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

struct frame_hdr {
	uint8_t		 version;
	uint8_t		 type;
	uint16_t	 flags;
	uint32_t	 len;
	uint64_t	 id;
};

/* Input buffer: bytes read from a socket, handed out one frame at a time. */
struct rbuf {
	uint8_t		*buf;
	size_t		 off;		/* start of unparsed bytes */
	size_t		 len;		/* end of valid bytes */
	size_t		 cap;
	uint32_t	 max_payload;	/* frames above this are an error */
	int		 drained;	/* the last read got less than asked:
					 * the socket had nothing more then */
};

/* Output buffer: encoded frames waiting for a writable socket. */
struct wbuf {
	uint8_t		*buf;
	size_t		 off;		/* first byte not yet written */
	size_t		 len;
	size_t		 cap;
};

void		 put_u16(uint8_t *, uint16_t);
void		 put_u32(uint8_t *, uint32_t);
void		 put_u64(uint8_t *, uint64_t);
uint16_t	 get_u16(const uint8_t *);
uint32_t	 get_u32(const uint8_t *);
uint64_t	 get_u64(const uint8_t *);

void		 frame_hdr_encode(uint8_t *, uint8_t type, uint32_t len,
		    uint64_t id);
/* 0, or -EPROTO (version), -EBADMSG (unknown type), -EMSGSIZE (length) */
int		 frame_hdr_decode(const uint8_t *, uint32_t max_payload,
		    struct frame_hdr *);
const char	*frame_strerror(int);

void		 rbuf_init(struct rbuf *, uint32_t max_payload);
void		 rbuf_free(struct rbuf *);
/* bytes read (>0), 0 on EOF, -EAGAIN when drained, or -errno */
ssize_t		 rbuf_read(struct rbuf *, int fd);
/* 1 and a frame (payload valid until the next rbuf call), 0 if incomplete,
 * or a negative frame_hdr_decode error */
int		 rbuf_next(struct rbuf *, struct frame_hdr *,
		    const uint8_t **payload);

void		 wbuf_init(struct wbuf *);
void		 wbuf_free(struct wbuf *);
int		 wbuf_frame(struct wbuf *, uint8_t type, uint64_t id,
		    const void *payload, size_t len);
size_t		 wbuf_pending(const struct wbuf *);
/* 0 when empty, 1 if bytes remain (wait for POLLOUT), or -errno */
int		 wbuf_flush(struct wbuf *, int fd);

#endif /* FANOUT_FRAME_H */
