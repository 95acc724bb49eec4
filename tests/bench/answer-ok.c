/* SPDX-License-Identifier: MIT */
/*
 * answer-ok: the cheapest pipe handler in lines framing, for the
 * benchmark: it reads its stdin in blocks and answers "ok" for every line,
 * all the answers to one read in one write.  What a handler that does no
 * work costs is then the pipe and the worker, nothing else.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

int
main(void)
{
	static char in[65536], out[3 * sizeof(in)];
	size_t nout, i, off;
	ssize_t n, w;

	for (;;) {
		n = read(0, in, sizeof(in));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? 0 : 1;
		for (nout = 0, i = 0; i < (size_t)n; i++)
			if (in[i] == '\n') {
				memcpy(out + nout, "ok\n", 3);
				nout += 3;
			}
		for (off = 0; off < nout; off += (size_t)w)
			if ((w = write(1, out + off, nout - off)) < 0 &&
			    errno != EINTR)
				return 1;
			else if (w < 0)
				w = 0;
	}
}
