/* SPDX-License-Identifier: MIT */
/* Shared by the libFuzzer harnesses: an invariant that fails is a crash,
 * with the line that says which. */
#ifndef FANOUT_FUZZ_H
#define FANOUT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(x) do {						\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: invariant broken: %s\n",	\
		    __FILE__, __LINE__, #x);				\
		abort();						\
	}								\
} while (0)

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#endif /* FANOUT_FUZZ_H */
