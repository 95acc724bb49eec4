/* SPDX-License-Identifier: MIT */
/* The configuration loader: defaults, every setting, every error text. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "util.h"

static char dir[] = "/tmp/t_conf.XXXXXX";
static char path[64];

/* Loads text as a config file; returns conf_load's result, errors in err. */
static int
load(const char *text, struct fanout_conf *c, char *err, size_t errlen)
{
	FILE *f = fopen(path, "w"), *e;
	char *buf = NULL;
	size_t len = 0;
	int r;

	assert_non_null(f);
	fputs(text, f);
	/* The loader checks that worker_path is executable; the default is
	 * not installed where the tests run.  Last, so lines keep numbers. */
	if (strstr(text, "worker_path") == NULL)
		fputs("worker_path = \"/bin/true\";\n", f);
	fclose(f);
	e = open_memstream(&buf, &len);
	assert_non_null(e);
	r = conf_load(path, c, e);
	fclose(e);
	snprintf(err, errlen, "%s", buf);
	free(buf);
	return r;
}

/* The error text for one bad file, with the path replaced by "F". */
static const char *
error_of(const char *text)
{
	static char out[1024];
	char err[1024], *p;
	struct fanout_conf c;
	size_t pl = strlen(path), o = 0;

	assert_int_equal(load(text, &c, err, sizeof(err)), -1);
	for (p = err; *p != '\0' && o < sizeof(out) - 1;) {
		if (strncmp(p, path, pl) == 0) {
			out[o++] = 'F';
			p += pl;
		} else
			out[o++] = *p++;
	}
	out[o] = '\0';
	return out;
}

static void
test_defaults(void **state)
{
	struct fanout_conf c;
	char err[256];

	(void)state;
	assert_int_equal(load("# nothing set\n", &c, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(c.workers, 3);
	assert_int_equal(c.base_port, 8888);
	assert_string_equal(c.listen_address, "127.0.0.1");
	assert_string_equal(c.control_socket, FANOUT_SOCKET_DEFAULT);
	assert_int_equal(c.ack_timeout_ms, 5000);
	assert_int_equal(c.max_message_bytes, 65536);
	assert_int_equal(c.start_timeout_ms, 10000);
	assert_int_equal(c.auth_timeout_ms, 2000);
	assert_int_equal(c.stop_timeout_ms, 5000);
	assert_int_equal(c.restart_max_delay_ms, 30000);
	assert_int_equal(c.restart_reset_ms, 60000);
	assert_int_equal(c.stall_timeout_ms, 30000);
	assert_int_equal(c.queue_max_messages, 10000);
	assert_int_equal(c.queue_max_bytes, 64 * 1024 * 1024);
	assert_int_equal(c.degraded_timeout_ms, 60000);
	assert_int_equal(c.degraded_action, DEGRADED_QUEUE);
	conf_free(&c);
}

static void
test_supervision_settings(void **state)
{
	struct fanout_conf c;
	char err[256];

	(void)state;
	assert_int_equal(load(
	    "restart_max_delay_ms = 100;\n"
	    "restart_reset_ms = 86400000;\n"
	    "stall_timeout_ms = 3600000;\n"
	    "queue_max_messages = 1;\n"
	    "queue_max_bytes = 2147483647;\n"
	    "degraded_timeout_ms = 100;\n"
	    "degraded_action = \"exit\";\n", &c, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(c.restart_max_delay_ms, 100);
	assert_int_equal(c.restart_reset_ms, 86400000);
	assert_int_equal(c.stall_timeout_ms, 3600000);
	assert_int_equal(c.queue_max_messages, 1);
	assert_true(c.queue_max_bytes == 2147483647u);
	assert_int_equal(c.degraded_timeout_ms, 100);
	assert_int_equal(c.degraded_action, DEGRADED_EXIT);
	conf_free(&c);

	assert_string_equal(error_of("restart_max_delay_ms = 99;\n"),
	    "F:1: restart_max_delay_ms: must be between 100 and 3600000\n");
	assert_string_equal(error_of("queue_max_messages = 0;\n"),
	    "F:1: queue_max_messages: must be between 1 and 10000000\n");
	assert_string_equal(error_of("queue_max_bytes = 2147483648L;\n"),
	    "F:1: queue_max_bytes: must be between 1024 and 2147483647\n");
	assert_string_equal(error_of("degraded_action = \"restart\";\n"),
	    "F:1: degraded_action: \"restart\" is not one of \"queue\" or "
	    "\"exit\"\n");
	assert_string_equal(error_of("degraded_action = 1;\n"),
	    "F:1: degraded_action: must be a string\n");
	/* the largest message must fit a queue */
	assert_string_equal(error_of("max_message_bytes = 4096;\n"
	    "queue_max_bytes = 2048;\n"),
	    "F:2: queue_max_bytes: queue_max_bytes (2048) must be at least "
	    "max_message_bytes (4096), or the largest message never fits a "
	    "queue\n");
}

static void
test_all_set(void **state)
{
	struct fanout_conf c;
	char err[256];

	(void)state;
	assert_int_equal(load(
	    "workers = 1024;\n"
	    "base_port = 1000;\n"
	    "listen_address = \"::1\";\n"
	    "control_socket = \"/tmp/x.sock\";\n"
	    "ack_timeout_ms = 1;\n"
	    "max_message_bytes = 16777216;\n"
	    "worker_path = \"/bin/sh\";\n"
	    "start_timeout_ms = 100;\n"
	    "stop_timeout_ms = 600000;\n", &c, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(c.workers, 1024);
	assert_int_equal(c.base_port, 1000);
	assert_string_equal(c.listen_address, "::1");
	assert_string_equal(c.control_socket, "/tmp/x.sock");
	assert_int_equal(c.ack_timeout_ms, 1);
	assert_int_equal(c.max_message_bytes, 16777216);
	assert_string_equal(c.worker_path, "/bin/sh");
	assert_int_equal(c.start_timeout_ms, 100);
	assert_int_equal(c.stop_timeout_ms, 600000);
	conf_free(&c);
}

static void
test_range_errors(void **state)
{
	(void)state;
	assert_string_equal(error_of("\nworkers = 0;\n"),
	    "F:2: workers: must be between 1 and 1024\n");
	assert_string_equal(error_of("workers = 1025;\n"),
	    "F:1: workers: must be between 1 and 1024\n");
	assert_string_equal(error_of("base_port = 0;\n"),
	    "F:1: base_port: must be between 1 and 65535\n");
	assert_string_equal(error_of("base_port = 70000;\n"),
	    "F:1: base_port: must be between 1 and 65535\n");
	assert_string_equal(error_of("ack_timeout_ms = 0;\n"),
	    "F:1: ack_timeout_ms: must be between 1 and 3600000\n");
	assert_string_equal(error_of("max_message_bytes = 16777217;\n"),
	    "F:1: max_message_bytes: must be between 1 and 16777216\n");
	assert_string_equal(error_of("start_timeout_ms = 99;\n"),
	    "F:1: start_timeout_ms: must be between 100 and 600000\n");
	assert_string_equal(error_of("stop_timeout_ms = 600001;\n"),
	    "F:1: stop_timeout_ms: must be between 100 and 600000\n");
	/* a 64-bit value is range checked, not truncated into range */
	assert_string_equal(error_of("workers = 4294967299L;\n"),
	    "F:1: workers: must be between 1 and 1024\n");
	assert_string_equal(error_of("workers = -3;\n"),
	    "F:1: workers: must be between 1 and 1024\n");
}

static void
test_type_errors(void **state)
{
	(void)state;
	assert_string_equal(error_of("workers = \"3\";\n"),
	    "F:1: workers: must be an integer\n");
	assert_string_equal(error_of("workers = 3.5;\n"),
	    "F:1: workers: must be an integer\n");
	assert_string_equal(error_of("workers = [ 1 ];\n"),
	    "F:1: workers: must be an integer\n");
	assert_string_equal(error_of("listen_address = 127;\n"),
	    "F:1: listen_address: must be a string\n");
	assert_string_equal(error_of("listen_address = \"localhost\";\n"),
	    "F:1: listen_address: \"localhost\" is not a numeric IPv4 or "
	    "IPv6 address\n");
	assert_string_equal(error_of("control_socket = \"rel/ctl.sock\";\n"),
	    "F:1: control_socket: must be an absolute path of at most 107 "
	    "bytes\n");
	assert_string_equal(error_of("control_socket = \"/"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\";\n"),
	    "F:1: control_socket: must be an absolute path of at most 107 "
	    "bytes\n");
	assert_string_equal(error_of("worker_path = \"fanout-worker\";\n"),
	    "F:1: worker_path: must be an absolute path of at most 4095 "
	    "bytes\n");
	assert_string_equal(error_of("worker_path = { a = 1; };\n"),
	    "F:1: worker_path: must be a string\n");
}

/* worker_path is checked as startup would: the file that set it blamed,
 * or the default named as such. */
static void
test_worker_path_checked(void **state)
{
	char want[512];

	(void)state;
	assert_string_equal(error_of("workers = 2;\n"
	    "worker_path = \"/nonexistent/w\";\n"),
	    "F:2: worker_path: /nonexistent/w: No such file or directory\n");
	assert_string_equal(error_of("worker_path = \"/etc/passwd\";\n"),
	    "F:1: worker_path: /etc/passwd: is not executable (Permission "
	    "denied)\n");
	assert_string_equal(error_of("worker_path = \"/tmp\";\n"),
	    "F:1: worker_path: /tmp: not a regular file\n");
	if (access(FANOUT_WORKER_DEFAULT, X_OK) == 0)
		return;		/* installed here: nothing to report */
	snprintf(want, sizeof(want), "F: worker_path (default): %s: No such "
	    "file or directory\n", FANOUT_WORKER_DEFAULT);
	assert_string_equal(error_of("# worker_path not set\n"), want);
}

static void
test_unknown_and_several(void **state)
{
	(void)state;
	assert_string_equal(error_of("workers = 2;\nwokers = 3;\n"),
	    "F:2: wokers: unknown setting\n");
	/* every problem is reported, not just the first */
	assert_string_equal(error_of("workers = 0;\nfoo = 1;\nbase_port = 0;\n"),
	    "F:1: workers: must be between 1 and 1024\n"
	    "F:2: foo: unknown setting\n"
	    "F:3: base_port: must be between 1 and 65535\n");
	assert_string_equal(error_of("workers = 10;\nbase_port = 65530;\n"),
	    "F:2: base_port: ports 65530 to 65539 do not fit below 65536\n");
	assert_string_equal(error_of("base_port = 65000;\n\nworkers = 1000;\n"),
	    "F:1: base_port: ports 65000 to 65999 do not fit below 65536\n");
}

static void
test_syntax_and_missing(void **state)
{
	struct fanout_conf c;
	char err[256], want[256];
	FILE *e;

	(void)state;
	assert_string_equal(error_of("workers = 3;\nbase_port = ;\n"),
	    "F:2: syntax error\n");
	assert_string_equal(error_of("workers = \"3;\n"),
	    "F:2: syntax error\n");
	assert_string_equal(error_of("workers = 3;\nworkers = 4;\n"),
	    "F:2: duplicate setting name\n");
	unlink(path);
	memset(err, 0, sizeof(err));
	e = fmemopen(err, sizeof(err), "w");
	assert_int_equal(conf_load(path, &c, e), -1);
	fclose(e);
	snprintf(want, sizeof(want), "%s: cannot read %s: No such file or "
	    "directory\n", program_invocation_short_name, path);
	assert_memory_equal(err, want, strlen(want));
}

/* A file in the test's directory, for includes. */
static void
put(const char *name, const char *text)
{
	char p[128];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	assert_non_null(f = fopen(p, "w"));
	fputs(text, f);
	fclose(f);
}

static void
rm(const char *name)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	(void)unlink(p);
}

/* error_of, with the test directory also replaced, by "D". */
static const char *
error_in_dir(const char *text)
{
	static char out[1024];
	const char *e = error_of(text), *p;
	size_t dl = strlen(dir), o = 0;

	for (p = e; *p != '\0' && o < sizeof(out) - 1;) {
		if (strncmp(p, dir, dl) == 0) {
			out[o++] = 'D';
			p += dl;
		} else
			out[o++] = *p++;
	}
	out[o] = '\0';
	return out;
}

/* Relative includes, at any depth, resolve against the main file's
 * directory, wherever fanoutd was started from. */
static void
test_include_relative(void **state)
{
	struct fanout_conf c;
	char err[512], sub[128];

	(void)state;
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	put("sub/workers.conf", "workers = 7;\n@include \"port.conf\"\n");
	put("port.conf", "base_port = 9000;\n");
	assert_int_equal(chdir("/"), 0);
	assert_int_equal(load("@include \"sub/workers.conf\"\n", &c, err,
	    sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(c.workers, 7);
	assert_int_equal(c.base_port, 9000);
	conf_free(&c);
	/* An error in an include is named by its path. */
	put("port.conf", "base_port = 0;\n");
	assert_string_equal(error_in_dir("@include \"sub/workers.conf\"\n"),
	    "D/port.conf:1: base_port: must be between 1 and 65535\n");
	put("port.conf", "base_port = ;\n");
	assert_string_equal(error_in_dir("@include \"sub/workers.conf\"\n"),
	    "D/port.conf:1: syntax error\n");
	rm("port.conf");
	rm("sub/workers.conf");
	assert_int_equal(rmdir(sub), 0);
}

/* A missing include is named, with the line that asks for it. */
static void
test_include_missing(void **state)
{
	(void)state;
	assert_string_equal(error_in_dir("workers = 2;\n"
	    "@include \"nothere.conf\"\n"),
	    "F:2: @include \"nothere.conf\": No such file or directory\n");
	put("a.conf", "  @include  \"b.conf\"\n");
	assert_string_equal(error_in_dir("@include \"a.conf\"\n"),
	    "D/a.conf:1: @include \"b.conf\": No such file or directory\n");
	rm("a.conf");
}

/* Nothing outside the main file's directory: not by an absolute path, not
 * by "..", not through a symbolic link; and no include loops. */
static void
test_include_outside(void **state)
{
	char link[128];

	(void)state;
	assert_string_equal(error_in_dir("@include \"/etc/passwd\"\n"),
	    "F:1: @include \"/etc/passwd\": must be a path relative to the "
	    "directory of the configuration file\n");
	assert_string_equal(error_in_dir("@include \"../../etc/passwd\"\n"),
	    "F:1: @include \"../../etc/passwd\": outside the directory of "
	    "the configuration file\n");
	snprintf(link, sizeof(link), "%s/link.conf", dir);
	assert_int_equal(symlink("/etc/passwd", link), 0);
	assert_string_equal(error_in_dir("@include \"link.conf\"\n"),
	    "F:1: @include \"link.conf\": outside the directory of the "
	    "configuration file\n");
	rm("link.conf");
	/* A link that stays inside is fine. */
	put("real.conf", "workers = 2;\n");
	assert_int_equal(symlink("real.conf", link), 0);
	{
		struct fanout_conf c;
		char err[256];

		assert_int_equal(load("@include \"link.conf\"\n", &c, err,
		    sizeof(err)), 0);
		assert_int_equal(c.workers, 2);
		conf_free(&c);
	}
	rm("link.conf");
	rm("real.conf");
	/* A cycle is refused where it closes, once: four of them cost four
	 * lines, not 4^10 reads (found by fuzz_conf). */
	put("loop.conf", "@include \"loop.conf\"\n@include \"loop.conf\"\n"
	    "@include \"loop.conf\"\n@include \"loop.conf\"\n");
	assert_string_equal(error_in_dir("@include \"loop.conf\"\n"),
	    "D/loop.conf:1: @include \"loop.conf\": includes itself (through "
	    "the files that include it)\n"
	    "D/loop.conf:2: @include \"loop.conf\": includes itself (through "
	    "the files that include it)\n"
	    "D/loop.conf:3: @include \"loop.conf\": includes itself (through "
	    "the files that include it)\n"
	    "D/loop.conf:4: @include \"loop.conf\": includes itself (through "
	    "the files that include it)\n");
	rm("loop.conf");
	/* Without a cycle, a tree of includes is bounded in files. */
	put("d2.conf", "workers = 2;\n");
	put("d1.conf", "@include \"d2.conf\"\n@include \"d2.conf\"\n"
	    "@include \"d2.conf\"\n@include \"d2.conf\"\n");
	put("d0.conf", "@include \"d1.conf\"\n@include \"d1.conf\"\n"
	    "@include \"d1.conf\"\n@include \"d1.conf\"\n");
	assert_non_null(strstr(error_in_dir("@include \"d0.conf\"\n"
	    "@include \"d0.conf\"\n@include \"d0.conf\"\n@include \"d0.conf\"\n"
	    "@include \"d0.conf\"\n"),
	    ": more than 64 files included in all\n"));
	rm("d0.conf");
	rm("d1.conf");
	rm("d2.conf");
	/* Names libconfig would read differently are refused, not guessed. */
	assert_string_equal(error_in_dir("@include \"a\\x.conf\"\n"),
	    "F:1: @include: a name on one line, in quotes, with no escapes "
	    "but \\\\ and \\\"\n");
}

/* A FIFO or a directory, as the file or an include: an error at once, never
 * a wait for a writer (the alarm ends a test that would hang). */
static void
test_not_regular(void **state)
{
	struct fanout_conf c;
	char err[512], want[512], fifo[128], sub[128];
	FILE *e;

	(void)state;
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	alarm(10);
	assert_string_equal(error_in_dir("@include \"fifo\"\n"),
	    "F:1: @include \"fifo\": not a regular file\n");
	assert_string_equal(error_in_dir("@include \"sub\"\n"),
	    "F:1: @include \"sub\": not a regular file\n");
	assert_int_equal(rmdir(sub), 0);
	memset(err, 0, sizeof(err));
	assert_non_null(e = fmemopen(err, sizeof(err), "w"));
	assert_int_equal(conf_load(fifo, &c, e), -1);
	fclose(e);
	alarm(0);
	snprintf(want, sizeof(want), "%s: cannot read %s: not a regular "
	    "file\n", program_invocation_short_name, fifo);
	assert_string_equal(err, want);
	rm("fifo");
}

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/fanout.conf", dir);
	return 0;
}

/* nats_tls_key and its kin: a path, or a credential's name (systemd's
 * LoadCredential=) looked up in $CREDENTIALS_DIRECTORY. */
static void
test_credential_path(void **state)
{
	char *p;

	(void)state;
	assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
	p = credential_path("/etc/fanout/key.pem");
	assert_string_equal(p, "/etc/fanout/key.pem");
	free(p);
	assert_null(credential_path("tls.key"));
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", "relative", 1), 0);
	assert_null(credential_path("tls.key"));
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY",
	    "/run/credentials/fanoutd.service", 1), 0);
	p = credential_path("tls.key");
	assert_string_equal(p, "/run/credentials/fanoutd.service/tls.key");
	free(p);
	assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
}

/* The decimal writer behind Nats-Msg-Id, receipts and the state file. */
static void
test_put_decimal(void **state)
{
	static const struct {
		uint64_t	 v;
		const char	*text;
	} cases[] = {
		{ 0, "0" }, { 9, "9" }, { 10, "10" }, { 4096, "4096" },
		{ UINT64_MAX, "18446744073709551615" },
	};
	char buf[24];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		*put_decimal(buf, cases[i].v) = '\0';
		assert_string_equal(buf, cases[i].text);
	}
}

static int
teardown(void **state)
{
	(void)state;
	unlink(path);
	return rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_supervision_settings),
		cmocka_unit_test(test_all_set),
		cmocka_unit_test(test_range_errors),
		cmocka_unit_test(test_type_errors),
		cmocka_unit_test(test_worker_path_checked),
		cmocka_unit_test(test_unknown_and_several),
		cmocka_unit_test(test_syntax_and_missing),
		cmocka_unit_test(test_include_relative),
		cmocka_unit_test(test_include_missing),
		cmocka_unit_test(test_include_outside),
		cmocka_unit_test(test_not_regular),
		cmocka_unit_test(test_credential_path),
		cmocka_unit_test(test_put_decimal),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
