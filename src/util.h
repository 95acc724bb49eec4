/* SPDX-License-Identifier: MIT */
/* Small helpers with no better home: bounded number parsing, clocks. */
#ifndef FANOUT_UTIL_H
#define FANOUT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define nitems(a)	(sizeof(a) / sizeof((a)[0]))
/* "1 byte", "2 bytes": printf("%u byte%s", n, PLURAL(n)) */
#define PLURAL(n)	((n) == 1 ? "" : "s")

/* Parses a whole decimal string into [min, max]: 0, or -EINVAL/-ERANGE. */
int		 parse_uint(const char *, uint64_t min, uint64_t max,
		    uint64_t *);
/* CLOCK_MONOTONIC in microseconds. */
uint64_t	 now_usec(void);
/* Escapes bytes for a log line: printable ASCII kept, the rest as \xNN. */
void		 str_escape(char *out, size_t outlen, const void *in,
		    size_t inlen);

#endif /* FANOUT_UTIL_H */
