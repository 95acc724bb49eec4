/* SPDX-License-Identifier: MIT */
/* Shared by the libFuzzer harnesses: an invariant that fails is a crash,
 * with the line that says which. */
#ifndef FANOUT_FUZZ_H
#define FANOUT_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "frame.h"

#define FUZZ_ASSERT(x) do {						\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: invariant broken: %s\n",	\
		    __FILE__, __LINE__, #x);				\
		abort();						\
	}								\
} while (0)

/*
 * One step of feeding s (n bytes) through a pipe (wfd to rfd) into rb, as
 * a connection would: writes up to piece more bytes (*pos: written so
 * far), then reads what arrived.  0 once all is written and read, else
 * what rbuf_read read (the write end stays open: never end of file).
 */
static inline ssize_t
fuzz_feed(int wfd, int rfd, struct rbuf *rb, const uint8_t *s, size_t n,
    size_t *pos, size_t piece)
{
	ssize_t r;

	for (;;) {
		if (*pos < n) {
			size_t w = n - *pos < piece ? n - *pos : piece;

			if ((r = write(wfd, s + *pos, w)) > 0)
				*pos += (size_t)r;
		}
		if ((r = rbuf_read(rb, rfd)) != -EAGAIN)
			break;
		if (*pos == n)
			return 0;
	}
	FUZZ_ASSERT(r > 0);
	return r;
}

/* Empties the pipe for the next input. */
static inline void
fuzz_drain(int rfd)
{
	uint8_t buf[4096];

	while (read(rfd, buf, sizeof(buf)) > 0)
		;
}

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#endif /* FANOUT_FUZZ_H */
