/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the configuration loader (conf.c) with its include policy: the
 * input becomes a main file and three includes in a sandbox directory,
 * beside a file outside it that no include may reach (directly, by "..",
 * or through a symbolic link), a FIFO and a directory that must be refused
 * without a hang.  A file that loads must hold only values in range, and
 * must load again, to the same values, from what conf_print writes; one
 * that fails must leave the struct empty and say why.
 *
 * Input: the main file, then NUL-separated a.conf, b.conf and sub/c.conf.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "proto.h"
#include "fuzz.h"

/* What outside.conf sets: an include that reached it would show it. */
#define OUTSIDE_MARK	"/outside/mark"

static char top[PATH_MAX], box[PATH_MAX], main_conf[PATH_MAX],
    print_conf[PATH_MAX];
static const char *const parts[] = { "fanout.conf", "a.conf", "b.conf",
    "sub/c.conf" };

static void
put_file(const char *dir, const char *name, const void *buf, size_t len)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL ||
	    (len > 0 && fwrite(buf, 1, len, f) != len) || fclose(f) != 0)
		abort();
}

static void
cleanup(void)
{
	char cmd[PATH_MAX + 16];

	if (top[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", top);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	char path[PATH_MAX];

	(void)argc;
	(void)argv;
	/* Memory, not disk, where there is a choice: a few files are
	 * rewritten on every run, thousands of times a second. */
	if (tmp == NULL)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(top, sizeof(top), "%s/fanout-fuzz-conf.XXXXXX", tmp);
	if (mkdtemp(top) == NULL)
		abort();
	atexit(cleanup);
	snprintf(box, sizeof(box), "%s/box", top);
	snprintf(path, sizeof(path), "%s/sub", box);
	if (mkdir(box, 0700) == -1 || mkdir(path, 0700) == -1)
		abort();
	snprintf(path, sizeof(path), "%s/dir", box);
	if (mkdir(path, 0700) == -1)
		abort();
	snprintf(path, sizeof(path), "%s/fifo", box);
	if (mkfifo(path, 0600) == -1)
		abort();
	put_file(top, "outside.conf", "control_socket = \"" OUTSIDE_MARK
	    "\";\n", strlen("control_socket = \"" OUTSIDE_MARK "\";\n"));
	snprintf(path, sizeof(path), "%s/link.conf", box);
	if (symlink("../outside.conf", path) == -1)
		abort();
	snprintf(main_conf, sizeof(main_conf), "%s/fanout.conf", box);
	snprintf(print_conf, sizeof(print_conf), "%s/print.conf", box);
	return 0;
}

static void
check_loaded(const struct fanout_conf *c)
{
	size_t i;

	FUZZ_ASSERT(c->workers >= 1 && c->workers <= FANOUT_WORKERS_MAX);
	FUZZ_ASSERT(c->base_port >= 1 &&
	    c->base_port + c->workers - 1 <= 65535);
	FUZZ_ASSERT(c->max_message_bytes >= 1 &&
	    c->max_message_bytes <= FANOUT_MESSAGE_MAX);
	FUZZ_ASSERT(c->queue_max_bytes >= c->max_message_bytes);
	FUZZ_ASSERT((uint64_t)c->control_buffer_max_bytes >=
	    (uint64_t)c->control_output_max_bytes + c->max_message_bytes);
	FUZZ_ASSERT(c->control_output_max_bytes >= CTL_OUTPUT_MIN);
	FUZZ_ASSERT(c->ack_timeout_ms >= 1 && c->queue_max_messages >= 1);
	FUZZ_ASSERT(c->control_max_connections >= 4);
	FUZZ_ASSERT(c->degraded_action <= DEGRADED_EXIT);
	FUZZ_ASSERT(c->handler_mode <= HANDLER_PIPE);
	FUZZ_ASSERT(c->handler_framing <= FRAMING_BINARY);
	FUZZ_ASSERT(c->listen_address != NULL && c->control_socket != NULL &&
	    c->worker_path != NULL);
	FUZZ_ASSERT(c->control_socket[0] == '/' &&
	    strlen(c->control_socket) < 108);
	FUZZ_ASSERT(c->worker_path[0] == '/' &&
	    strlen(c->worker_path) <= 4095);
	FUZZ_ASSERT(c->spool_dir != NULL && c->spool_dir[0] == '/');
	FUZZ_ASSERT(c->spool_max_bytes >= 1024 * 1024 &&
	    c->spool_max_bytes <= 1ULL << 40);
	if (c->handler != NULL) {
		FUZZ_ASSERT(c->handler[0] != NULL && c->handler[0][0] == '/');
		FUZZ_ASSERT(c->handler_timeout_ms < c->stall_timeout_ms);
		for (i = 0; c->handler[i] != NULL; i++) {
			FUZZ_ASSERT(strlen(c->handler[i]) <=
			    HANDLER_ARG_LEN_MAX);
		}
		FUZZ_ASSERT(i <= HANDLER_ARGS_MAX);
	}
}

static void
on_changed(const char *name, const char *was, const char *is, void *arg)
{
	fprintf(stderr, "%s: \"%s\" printed, \"%s\" read back\n", name, was,
	    is);
	*(int *)arg = 1;
}

/* What conf_print wrote loads again to the same values. */
static void
check_print(const struct fanout_conf *c)
{
	struct fanout_conf again;
	char *buf = NULL;
	size_t len = 0;
	FILE *f, *errs;
	int diff = 0;

	if ((f = open_memstream(&buf, &len)) == NULL)
		abort();
	conf_print(c, f);
	fclose(f);
	put_file(box, "print.conf", buf, len);
	free(buf);
	buf = NULL;
	if ((errs = open_memstream(&buf, &len)) == NULL)
		abort();
	if (conf_load(print_conf, &again, errs) != 0) {
		fclose(errs);
		fprintf(stderr, "printed configuration refused: %s", buf);
		abort();
	}
	fclose(errs);
	free(buf);
	conf_diff(c, &again, on_changed, &diff);
	FUZZ_ASSERT(diff == 0);
	conf_free(&again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct fanout_conf zero;
	struct fanout_conf c;
	const uint8_t *p = data, *end = data + size, *nul;
	char *msg = NULL;
	size_t i, mlen = 0;
	FILE *errs;
	int r;

	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		nul = p < end ? memchr(p, '\0', (size_t)(end - p)) : NULL;
		put_file(box, parts[i], p, (size_t)((nul ? nul : end) - p));
		p = nul ? nul + 1 : end;
	}
	if ((errs = open_memstream(&msg, &mlen)) == NULL)
		abort();
	r = conf_load(main_conf, &c, errs);
	fclose(errs);
	FUZZ_ASSERT(r == 0 || r == -1);
	if (r == -1) {
		/* Nothing half-loaded, and a reason given. */
		FUZZ_ASSERT(memcmp(&c, &zero, sizeof(c)) == 0);
		FUZZ_ASSERT(mlen > 0 && msg[mlen - 1] == '\n');
	} else {
		FUZZ_ASSERT(mlen == 0);
		/* The file outside the sandbox was never read (unless the
		 * input itself spells the mark). */
		if (memmem(data, size, "mark", 4) == NULL &&
		    memchr(data, '\\', size) == NULL)
			FUZZ_ASSERT(strcmp(c.control_socket, OUTSIDE_MARK) !=
			    0);
		check_loaded(&c);
		check_print(&c);
		conf_free(&c);
	}
	free(msg);
	return 0;
}
