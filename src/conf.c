/* SPDX-License-Identifier: MIT */
/*
 * The configuration file.  One table names every setting with its type,
 * range and default; anything else in the file is an error, since libconfig
 * would otherwise ignore a misspelt name without a word.  No libconfig type
 * escapes this file.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libconfig.h>

#include "conf.h"
#include "proto.h"
#include "rconf.h"
#include "sock.h"
#include "util.h"

/* CT_INT and CT_ENUM fill a uint32_t, CT_BOOL a bool, CT_SIZE a uint64_t,
 * CT_ADDR and CT_PATH a string, CT_ARGV a NULL-ended array of them.  The
 * remote workers' settings: CT_URLS and CT_NAMES are lists (nats_servers,
 * remote_workers), CT_FILE a path or "" for none, CT_KEY the same or a
 * credential's name, CT_TOKEN a name in the broker (min 1: may hold dots
 * between tokens, as a subject prefix does). */
enum conf_type { CT_INT, CT_ADDR, CT_PATH, CT_ENUM, CT_ARGV, CT_BOOL, CT_SIZE,
	CT_URLS, CT_NAMES, CT_FILE, CT_KEY, CT_TOKEN };
#define CT_IS_LIST(t)	((t) == CT_ARGV || (t) == CT_URLS || (t) == CT_NAMES)

static const char *const degraded_actions[] = DEGRADED_ACTION_NAMES;
static const char *const handler_modes[] = HANDLER_MODE_NAMES;
static const char *const handler_framings[] = HANDLER_FRAMING_NAMES;
static const char *const worker_starts[] = WORKER_START_NAMES;

static const struct conf_setting {
	const char	*name;
	enum conf_type	 type;
	size_t		 off;		/* into struct fanout_conf */
	long long	 min, max;	/* CT_INT; CT_PATH: max length */
	long long	 defint;
	const char	*defstr;
	const char *const *names;	/* CT_ENUM: the values, NULL ended */
} settings[] = {
	{ "workers", CT_INT, offsetof(struct fanout_conf, workers),
	    1, FANOUT_WORKERS_MAX, 3, NULL, NULL },
	{ "base_port", CT_INT, offsetof(struct fanout_conf, base_port),
	    1, 65535, 8888, NULL, NULL },
	{ "listen_address", CT_ADDR, offsetof(struct fanout_conf, listen_address),
	    0, 0, 0, "127.0.0.1", NULL },
	{ "control_socket", CT_PATH, offsetof(struct fanout_conf, control_socket),
	    0, sizeof(((struct sockaddr_un *)0)->sun_path) - 1, 0,
	    FANOUT_SOCKET_DEFAULT, NULL },
	{ "control_max_connections", CT_INT,
	    offsetof(struct fanout_conf, control_max_connections),
	    4, 4096, 128, NULL, NULL },
	{ "control_idle_timeout_ms", CT_INT,
	    offsetof(struct fanout_conf, control_idle_timeout_ms),
	    100, 3600000, 10000, NULL, NULL },
	{ "control_frame_timeout_ms", CT_INT,
	    offsetof(struct fanout_conf, control_frame_timeout_ms),
	    100, 3600000, 5000, NULL, NULL },
	{ "control_output_max_bytes", CT_INT,
	    offsetof(struct fanout_conf, control_output_max_bytes),
	    CTL_OUTPUT_MIN, INT32_MAX, 4 * 1024 * 1024, NULL, NULL },
	{ "control_buffer_max_bytes", CT_INT,
	    offsetof(struct fanout_conf, control_buffer_max_bytes),
	    CTL_OUTPUT_MIN, INT32_MAX, 64 * 1024 * 1024, NULL, NULL },
	{ "ack_timeout_ms", CT_INT, offsetof(struct fanout_conf, ack_timeout_ms),
	    1, 3600000, 5000, NULL, NULL },
	{ "max_message_bytes", CT_INT,
	    offsetof(struct fanout_conf, max_message_bytes),
	    1, FANOUT_MESSAGE_MAX, 64 * 1024, NULL, NULL },
	{ "worker_path", CT_PATH, offsetof(struct fanout_conf, worker_path),
	    0, 4095, 0, FANOUT_WORKER_DEFAULT, NULL },
	{ "worker_start", CT_ENUM, offsetof(struct fanout_conf, worker_start),
	    0, 0, WORKER_START_FORK, NULL, worker_starts },
	{ "start_timeout_ms", CT_INT,
	    offsetof(struct fanout_conf, start_timeout_ms),
	    100, 600000, 10000, NULL, NULL },
	{ "auth_timeout_ms", CT_INT,
	    offsetof(struct fanout_conf, auth_timeout_ms),
	    100, 600000, AUTH_DEADLINE_MS, NULL, NULL },
	{ "stop_timeout_ms", CT_INT,
	    offsetof(struct fanout_conf, stop_timeout_ms),
	    100, 600000, 5000, NULL, NULL },
	{ "restart_max_delay_ms", CT_INT,
	    offsetof(struct fanout_conf, restart_max_delay_ms),
	    100, 3600000, 30000, NULL, NULL },
	{ "restart_reset_ms", CT_INT,
	    offsetof(struct fanout_conf, restart_reset_ms),
	    100, 86400000, 60000, NULL, NULL },
	{ "stall_timeout_ms", CT_INT,
	    offsetof(struct fanout_conf, stall_timeout_ms),
	    100, 3600000, 30000, NULL, NULL },
	{ "queue_max_messages", CT_INT,
	    offsetof(struct fanout_conf, queue_max_messages),
	    1, 10000000, 10000, NULL, NULL },
	{ "queue_max_bytes", CT_INT,
	    offsetof(struct fanout_conf, queue_max_bytes),
	    1024, INT32_MAX, 64 * 1024 * 1024, NULL, NULL },
	{ "degraded_timeout_ms", CT_INT,
	    offsetof(struct fanout_conf, degraded_timeout_ms),
	    100, 86400000, 60000, NULL, NULL },
	{ "degraded_action", CT_ENUM,
	    offsetof(struct fanout_conf, degraded_action),
	    0, 0, DEGRADED_QUEUE, NULL, degraded_actions },
	{ "handler", CT_ARGV, offsetof(struct fanout_conf, handler),
	    1, HANDLER_ARGS_MAX, 0, NULL, NULL },
	{ "handler_mode", CT_ENUM, offsetof(struct fanout_conf, handler_mode),
	    0, 0, HANDLER_EXEC, NULL, handler_modes },
	{ "handler_framing", CT_ENUM,
	    offsetof(struct fanout_conf, handler_framing),
	    0, 0, FRAMING_LINES, NULL, handler_framings },
	{ "handler_timeout_ms", CT_INT,
	    offsetof(struct fanout_conf, handler_timeout_ms),
	    100, 3600000, 10000, NULL, NULL },
	{ "spool", CT_BOOL, offsetof(struct fanout_conf, spool),
	    0, 0, 0, NULL, NULL },
	/* The default is the unit's StateDirectory= (conf_spool_dir). */
	{ "spool_dir", CT_PATH, offsetof(struct fanout_conf, spool_dir),
	    0, 4000, 0, "", NULL },
	{ "spool_max_bytes", CT_SIZE,
	    offsetof(struct fanout_conf, spool_max_bytes),
	    1024 * 1024, 1LL << 40, 1LL << 30, NULL, NULL },
	{ "nats_servers", CT_URLS, offsetof(struct fanout_conf, nats_servers),
	    1, CONF_NATS_SERVERS_MAX, 0, NULL, NULL },
	{ "nats_tls_ca", CT_FILE, offsetof(struct fanout_conf, nats_tls_ca),
	    0, 4095, 0, "", NULL },
	{ "nats_tls_cert", CT_FILE, offsetof(struct fanout_conf, nats_tls_cert),
	    0, 4095, 0, "", NULL },
	{ "nats_tls_key", CT_KEY, offsetof(struct fanout_conf, nats_tls_key),
	    0, 4095, 0, "", NULL },
	{ "nats_subject_prefix", CT_TOKEN,
	    offsetof(struct fanout_conf, nats_subject_prefix),
	    1, 0, 0, FANOUT_NATS_PREFIX, NULL },
	{ "nats_stream", CT_TOKEN, offsetof(struct fanout_conf, nats_stream),
	    0, 0, 0, FANOUT_NATS_STREAM, NULL },
	{ "remote_workers", CT_NAMES,
	    offsetof(struct fanout_conf, remote_workers),
	    1, CONF_REMOTE_WORKERS_MAX, 0, NULL, NULL },
	/* 0: a new stream gets one, an existing one keeps its own. */
	{ "nats_stream_replicas", CT_INT,
	    offsetof(struct fanout_conf, nats_stream_replicas),
	    0, 5, 0, NULL, NULL },
	{ "remote_ack_wait_ms", CT_INT,
	    offsetof(struct fanout_conf, remote_ack_wait_ms),
	    100, 3600000, 30000, NULL, NULL },
};

static void
conf_error(FILE *errs, const char *path, const config_setting_t *s,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static const char *
conf_shown(const char *file, const char *path, char *buf, size_t len);
static int
conf_check(const struct fanout_conf *, config_setting_t *const found[],
    config_t *, const char *path, FILE *errs);

static void
conf_error(FILE *errs, const char *path, const config_setting_t *s,
    const char *fmt, ...)
{
	const char *file = s ? config_setting_source_file(s) : NULL;
	char shown[PATH_MAX];
	va_list ap;

	if (s != NULL)
		fprintf(errs, "%s:%u: %s: ",
		    conf_shown(file, path, shown, sizeof(shown)),
		    config_setting_source_line(s), config_setting_name(s));
	else
		fprintf(errs, "%s: ", path);
	va_start(ap, fmt);
	vfprintf(errs, fmt, ap);
	va_end(ap);
	fputc('\n', errs);
}

static const struct conf_setting *
conf_lookup(const char *name)
{
	size_t i;

	for (i = 0; i < nitems(settings); i++)
		if (strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

/*
 * Where the spool lives unless spool_dir says: the state directory systemd
 * made for the unit (StateDirectory=; the first, if it lists several),
 * else the package's.
 */
static char *
conf_spool_dir(void)
{
	const char *sd = getenv("STATE_DIRECTORY");

	if (sd != NULL && sd[0] == '/')
		return strndup(sd, strcspn(sd, ":"));
	return strdup(FANOUT_SPOOL_DIR_DEFAULT);
}

static int
conf_set_defaults(struct fanout_conf *conf)
{
	size_t i;

	memset(conf, 0, sizeof(*conf));
	for (i = 0; i < nitems(settings); i++) {
		const struct conf_setting *cs = &settings[i];
		void *field = (char *)conf + cs->off;

		if (cs->type == CT_INT || cs->type == CT_ENUM)
			*(uint32_t *)field = (uint32_t)cs->defint;
		else if (cs->type == CT_BOOL)
			*(bool *)field = cs->defint != 0;
		else if (cs->type == CT_SIZE)
			*(uint64_t *)field = (uint64_t)cs->defint;
		else if (CT_IS_LIST(cs->type))
			*(char ***)field = NULL;
		else if ((*(char **)field = strdup(cs->defstr)) == NULL)
			return -1;
	}
	free(conf->spool_dir);
	if ((conf->spool_dir = conf_spool_dir()) == NULL)
		return -1;
	return 0;
}

static int
conf_apply_enum(const struct conf_setting *cs, config_setting_t *s,
    const char *str, void *field, const char *path, FILE *errs)
{
	char list[128] = "";
	size_t i;

	for (i = 0; cs->names[i] != NULL; i++) {
		if (strcmp(cs->names[i], str) == 0) {
			*(uint32_t *)field = (uint32_t)i;
			return 0;
		}
		snprintf(list + strlen(list), sizeof(list) - strlen(list),
		    "%s\"%s\"", i == 0 ? "" : cs->names[i + 1] ? ", " : " or ",
		    cs->names[i]);
	}
	conf_error(errs, path, s, "\"%s\" is not one of %s", str, list);
	return -1;
}

/* A program and its arguments: one string (the path alone, never split on
 * spaces: no shell is involved) or a list of strings. */
static int
conf_apply_argv(const struct conf_setting *cs, config_setting_t *s,
    void *field, const char *path, FILE *errs)
{
	int type = config_setting_type(s), n, i;
	const char *str;
	char **argv;

	if (type == CONFIG_TYPE_STRING)
		n = 1;
	else if (type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY)
		n = config_setting_length(s);
	else {
		conf_error(errs, path, s, "must be a string or a list of "
		    "strings");
		return -1;
	}
	if (n < cs->min || n > cs->max) {
		conf_error(errs, path, s, "must have between %lld and %lld "
		    "elements", cs->min, cs->max);
		return -1;
	}
	if ((argv = calloc((size_t)n + 1, sizeof(*argv))) == NULL) {
		conf_error(errs, path, s, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		str = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) :
		    config_setting_get_string_elem(s, (unsigned)i);
		if (str == NULL || strlen(str) > HANDLER_ARG_LEN_MAX) {
			conf_error(errs, path, s, "element %d: must be a "
			    "string of at most %d bytes", i + 1,
			    HANDLER_ARG_LEN_MAX);
			break;
		}
		if (i == 0 && str[0] != '/') {
			conf_error(errs, path, s, "\"%s\": the program must "
			    "be an absolute path", str);
			break;
		}
		if ((argv[i] = strdup(str)) == NULL) {
			conf_error(errs, path, s, "out of memory");
			break;
		}
	}
	if (i < n) {
		strv_free(argv);
		return -1;
	}
	strv_free(*(char ***)field);
	*(char ***)field = argv;
	return 0;
}

/* A list of broker URLs or of remote worker names: one string or a list,
 * each element checked. */
static int
conf_apply_list(const struct conf_setting *cs, config_setting_t *s,
    void *field, const char *path, FILE *errs)
{
	int type = config_setting_type(s), n, i, j;
	const char *str, *why;
	char **v;

	n = type == CONFIG_TYPE_STRING ? 1 : (type == CONFIG_TYPE_LIST ||
	    type == CONFIG_TYPE_ARRAY) ? config_setting_length(s) : -1;
	if (n < cs->min || n > cs->max) {
		conf_error(errs, path, s, "must be a string or a list of "
		    "%lld to %lld strings", cs->min, cs->max);
		return -1;
	}
	if ((v = calloc((size_t)n + 1, sizeof(*v))) == NULL) {
		conf_error(errs, path, s, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		str = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) :
		    config_setting_get_string_elem(s, (unsigned)i);
		if (str == NULL || strlen(str) > CONF_NATS_URL_MAX) {
			conf_error(errs, path, s, "element %d: must be a "
			    "string of at most %d bytes", i + 1,
			    CONF_NATS_URL_MAX);
			break;
		}
		if (cs->type == CT_URLS && strncmp(str, "nats://", 7) != 0 &&
		    strncmp(str, "tls://", 6) != 0) {
			conf_error(errs, path, s, "\"%s\": must start with "
			    "nats:// or tls://", str);
			break;
		}
		if (cs->type == CT_NAMES && rconf_check_name(str, 0, &why) < 0) {
			conf_error(errs, path, s, "\"%s\" %s", str, why);
			break;
		}
		for (j = 0; cs->type == CT_NAMES && j < i; j++)
			if (strcmp(v[j], str) == 0)
				break;
		if (cs->type == CT_NAMES && j < i) {
			conf_error(errs, path, s, "\"%s\" is listed twice",
			    str);
			break;
		}
		if ((v[i] = strdup(str)) == NULL) {
			conf_error(errs, path, s, "out of memory");
			break;
		}
	}
	if (i < n) {
		strv_free(v);
		return -1;
	}
	strv_free(*(char ***)field);
	*(char ***)field = v;
	return 0;
}

uint32_t
conf_list_len(char *const *v)
{
	uint32_t n = 0;

	while (v != NULL && v[n] != NULL)
		n++;
	return n;
}

/* A file fanoutd must read (a TLS file): caught here rather than as a
 * broker connection that fails. */
static int
conf_check_readable(const char *file, const config_setting_t *s,
    const char *path, FILE *errs)
{
	char *p = credential_path(file);
	int fd;

	if (p == NULL) {
		conf_error(errs, path, s, "\"%s\": a credential's name, but "
		    "there is no $CREDENTIALS_DIRECTORY (LoadCredential=)",
		    file);
		return -1;
	}
	if ((fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) ==
	    -1) {
		conf_error(errs, path, s, "%s: %s", p, strerror(errno));
		free(p);
		return -1;
	}
	close(fd);
	free(p);
	return 0;
}

/* A program fanoutd or a worker will execute: caught here, with its path,
 * rather than as a worker that fails to start. */
static int
conf_check_program(const char *prog, const config_setting_t *s,
    const char *name, const char *path, FILE *errs)
{
	/* Not in the file: the default is to blame, and said to be. */
	const char *dflt = s == NULL ? name : "";
	const char *sep = s == NULL ? " (default): " : "";
	struct stat st;

	if (stat(prog, &st) == -1) {
		conf_error(errs, path, s, "%s%s%s: %s", dflt, sep, prog,
		    strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		conf_error(errs, path, s, "%s%s%s: not a regular file", dflt,
		    sep, prog);
		return -1;
	}
	if (access(prog, X_OK) == -1) {
		conf_error(errs, path, s, "%s%s%s: is not executable (%s)",
		    dflt, sep, prog, strerror(errno));
		return -1;
	}
	return 0;
}

/* One setting from the file into conf: 0, or -1 after reporting why. */
static int
conf_apply(const struct conf_setting *cs, config_setting_t *s,
    struct fanout_conf *conf, const char *path, FILE *errs)
{
	void *field = (char *)conf + cs->off;
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *str, *why;
	long long v;
	char *dup;

	if (cs->type == CT_BOOL) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
			conf_error(errs, path, s, "must be true or false");
			return -1;
		}
		*(bool *)field = config_setting_get_bool(s) != 0;
		return 0;
	}
	if (cs->type == CT_INT || cs->type == CT_SIZE) {
		int t = config_setting_type(s);

		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
			conf_error(errs, path, s, "must be an integer");
			return -1;
		}
		v = config_setting_get_int64(s);
		if (v < cs->min || v > cs->max) {
			conf_error(errs, path, s,
			    "must be between %lld and %lld", cs->min, cs->max);
			return -1;
		}
		if (cs->type == CT_SIZE)
			*(uint64_t *)field = (uint64_t)v;
		else
			*(uint32_t *)field = (uint32_t)v;
		return 0;
	}
	if (cs->type == CT_ARGV)
		return conf_apply_argv(cs, s, field, path, errs);
	if (cs->type == CT_URLS || cs->type == CT_NAMES)
		return conf_apply_list(cs, s, field, path, errs);
	if ((str = config_setting_get_string(s)) == NULL) {
		conf_error(errs, path, s, "must be a string");
		return -1;
	}
	if (cs->type == CT_ENUM)
		return conf_apply_enum(cs, s, str, field, path, errs);
	if (cs->type == CT_ADDR && sock_addr(str, 0, &ss, &sl) < 0) {
		conf_error(errs, path, s,
		    "\"%s\" is not a numeric IPv4 or IPv6 address", str);
		return -1;
	}
	if (cs->type == CT_PATH && (str[0] != '/' ||
	    strlen(str) > (size_t)cs->max)) {
		conf_error(errs, path, s,
		    "must be an absolute path of at most %lld bytes", cs->max);
		return -1;
	}
	if (cs->type == CT_FILE && str[0] != '\0' && (str[0] != '/' ||
	    strlen(str) > (size_t)cs->max)) {
		conf_error(errs, path, s, "must be an absolute path of at most "
		    "%lld bytes, or \"\" for none", cs->max);
		return -1;
	}
	if (cs->type == CT_KEY && (strlen(str) > (size_t)cs->max ||
	    (str[0] != '/' && (strchr(str, '/') != NULL ||
	    strcmp(str, ".") == 0 || strcmp(str, "..") == 0)))) {
		conf_error(errs, path, s, "must be an absolute path, the name "
		    "of a credential (LoadCredential=), or \"\" for none");
		return -1;
	}
	if (cs->type == CT_TOKEN && rconf_check_name(str, (int)cs->min,
	    &why) < 0) {
		conf_error(errs, path, s, "\"%s\" %s", str, why);
		return -1;
	}
	if ((dup = strdup(str)) == NULL) {
		conf_error(errs, path, s, "out of memory");
		return -1;
	}
	free(*(char **)field);
	*(char **)field = dup;
	return 0;
}

/*
 * Includes.  libconfig 1.5 has no hook for @include: it fopen()s the name
 * itself, relative to the include directory, at any depth.  So the file is
 * scanned for @include lines first (the directive is line-oriented: libconfig
 * knows it only at the start of a line, after blanks) and each one is checked
 * before libconfig reads anything.  The policy (fanout.conf(5), INCLUDES):
 * an include names a regular file by a path relative to the directory of the
 * main file, which it may not leave, not even through a symbolic link.
 * fanoutd may run as root; without this, "@include" reads whatever root can.
 */
#define INCLUDE_DEPTH_MAX	10	/* libconfig's own limit */
/* Files one configuration may consist of: a file included twice counts
 * twice, so that k includes on each of 10 levels cannot mean k^10 reads. */
#define INCLUDE_FILES_MAX	64
#define CONF_STR_(x)		#x
#define CONF_STR(x)		CONF_STR_(x)

struct conf_scan {
	char		 dir[PATH_MAX];	/* its directory, as given */
	char		 real[PATH_MAX]; /* and resolved */
	FILE		*errs;
	unsigned	 nfiles;	/* scanned so far */
	struct {
		dev_t	 dev;
		ino_t	 ino;
	}		 reading[INCLUDE_DEPTH_MAX + 1];	/* by depth */
};

/* How a file is named in a message: includes by their path. */
static const char *
conf_shown(const char *file, const char *path, char *buf, size_t len)
{
	const char *slash;

	if (file == NULL || strcmp(file, path) == 0 || file[0] == '/' ||
	    (slash = strrchr(path, '/')) == NULL)
		return file ? file : path;
	snprintf(buf, len, "%.*s/%s", (int)(slash - path), path, file);
	return buf;
}

/* Opens a regular file without blocking on a FIFO or waking a device: its
 * fd, or -1 with why set (an errno string or "not a regular file"). */
static int
conf_open(const char *file, const char **why)
{
	struct stat st, fst;
	int fd, flags;

	if (stat(file, &st) == -1) {
		*why = strerror(errno);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		return -1;
	}
	fd = open(file, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd == -1) {
		*why = strerror(errno);
		return -1;
	}
	/* Whatever was there when it was stat()ed, this is what was opened. */
	if (fstat(fd, &fst) == -1 || !S_ISREG(fst.st_mode)) {
		close(fd);
		*why = "not a regular file";
		return -1;
	}
	if ((flags = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	return fd;
}

/* The name of an "@include" line, unescaped as libconfig does, in name:
 * 1, 0 if the line is no include, -1 if libconfig would read it in a way
 * this scan does not follow (refused: checking one name and opening another
 * would defeat the check). */
static int
conf_include_name(const char *line, size_t len, char *name, size_t namelen)
{
	const char *p = line, *end = line + len;
	size_t o = 0;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if ((size_t)(end - p) < 8 || memcmp(p, "@include", 8) != 0)
		return 0;
	p += 8;
	if (p == end || (*p != ' ' && *p != '\t'))
		return 0;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p == end || *p++ != '"')
		return 0;
	for (; p < end && *p != '"'; p++) {
		if (*p == '\\' && p + 1 < end && (p[1] == '\\' || p[1] == '"'))
			p++;
		else if (*p == '\\' || *p == '\0' || *p == '\n')
			return -1;
		if (o + 1 >= namelen)
			return -1;
		name[o++] = *p;
	}
	if (p == end)
		return -1;	/* unterminated on this line */
	name[o] = '\0';
	return 1;
}

static int	conf_scan_file(struct conf_scan *, FILE *, const char *shown,
		    int depth);

/* Why the open file fd may not be included at depth + 1: it is one of the
 * files that include it, or one file too many; NULL if it may. */
static const char *
conf_include_cycle(const struct conf_scan *sc, int fd, int depth)
{
	struct stat st;
	int i;

	if (sc->nfiles >= INCLUDE_FILES_MAX)
		return "more than " CONF_STR(INCLUDE_FILES_MAX) " files "
		    "included in all";
	if (fstat(fd, &st) == -1)
		return strerror(errno);
	for (i = 0; i <= depth; i++)
		if (sc->reading[i].dev == st.st_dev &&
		    sc->reading[i].ino == st.st_ino)
			return "includes itself (through the files that "
			    "include it)";
	return NULL;
}

/* One include, named on line of shown: checked, then scanned in turn.
 * 0, or -1 after saying why. */
static int
conf_scan_include(struct conf_scan *sc, const char *shown, unsigned line,
    const char *name, int depth)
{
	char full[PATH_MAX], real[PATH_MAX];
	const char *why = NULL;
	size_t rl = strlen(sc->real);
	FILE *fp;
	int fd, r;

	if (name[0] == '/')
		why = "must be a path relative to the directory of the "
		    "configuration file";
	else if (depth >= INCLUDE_DEPTH_MAX)
		why = "includes nested too deep";
	else if ((size_t)snprintf(full, sizeof(full), "%s/%s", sc->dir,
	    name) >= sizeof(full))
		why = strerror(ENAMETOOLONG);
	else if (realpath(full, real) == NULL)
		why = strerror(errno);
	else if (strncmp(real, sc->real, rl) != 0 ||
	    (real[rl] != '/' && !(rl == 1 && sc->real[0] == '/')))
		why = "outside the directory of the configuration file";
	if (why != NULL) {
		fprintf(sc->errs, "%s:%u: @include \"%s\": %s\n", shown, line,
		    name, why);
		return -1;
	}
	if ((fd = conf_open(full, &why)) != -1 &&
	    (why = conf_include_cycle(sc, fd, depth)) != NULL) {
		close(fd);
		fd = -1;
	}
	if (fd == -1 || (fp = fdopen(fd, "r")) == NULL) {
		if (fd != -1) {
			why = strerror(errno);
			close(fd);
		}
		fprintf(sc->errs, "%s:%u: @include \"%s\": %s\n", shown, line,
		    name, why);
		return -1;
	}
	r = conf_scan_file(sc, fp, full, depth + 1);
	fclose(fp);
	return r;
}

/* Every include of an open file: 0, or -1 if any is refused. */
static int
conf_scan_file(struct conf_scan *sc, FILE *fp, const char *shown, int depth)
{
	char *line = NULL, name[PATH_MAX];
	size_t cap = 0;
	unsigned lineno = 0;
	struct stat st;
	ssize_t len;
	int r, bad = 0;

	sc->nfiles++;
	if (fstat(fileno(fp), &st) == 0) {
		sc->reading[depth].dev = st.st_dev;
		sc->reading[depth].ino = st.st_ino;
	}
	while ((len = getline(&line, &cap, fp)) != -1) {
		lineno++;
		r = conf_include_name(line, (size_t)len, name, sizeof(name));
		if (r < 0) {
			fprintf(sc->errs, "%s:%u: @include: a name on one "
			    "line, in quotes, with no escapes but \\\\ and "
			    "\\\"\n", shown, lineno);
			bad = -1;
		} else if (r > 0 && conf_scan_include(sc, shown, lineno, name,
		    depth) < 0)
			bad = -1;
	}
	if (ferror(fp)) {
		fprintf(sc->errs, "%s: %s\n", shown, strerror(errno));
		bad = -1;
	}
	free(line);
	return bad;
}

/* The main file, opened and its includes checked: a stream at its start, or
 * NULL after saying why. */
static FILE *
conf_open_checked(const char *path, FILE *errs)
{
	struct conf_scan sc = { .errs = errs };
	const char *why, *slash = strrchr(path, '/');
	FILE *fp;
	int fd;

	if ((fd = conf_open(path, &why)) == -1) {
		fprintf(errs, "%s: cannot read %s: %s\n",
		    program_invocation_short_name, path, why);
		return NULL;
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		fprintf(errs, "%s: cannot read %s: %s\n",
		    program_invocation_short_name, path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (slash == NULL)
		snprintf(sc.dir, sizeof(sc.dir), ".");
	else if (slash == path)
		snprintf(sc.dir, sizeof(sc.dir), "/");
	else
		snprintf(sc.dir, sizeof(sc.dir), "%.*s", (int)(slash - path),
		    path);
	if (realpath(sc.dir, sc.real) == NULL) {
		fprintf(errs, "%s: cannot resolve %s: %s\n",
		    program_invocation_short_name, sc.dir, strerror(errno));
		fclose(fp);
		return NULL;
	}
	if (conf_scan_file(&sc, fp, path, 0) < 0) {
		fclose(fp);
		return NULL;
	}
	rewind(fp);
	return fp;
}

/* The directory includes resolve against: the main file's. */
static void
conf_include_dir(config_t *cf, const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];

	if (slash == NULL)
		return;		/* the current directory: libconfig's own */
	snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 :
	    (int)(slash - path), path);
	config_set_include_dir(cf, dir);	/* copied */
}

int
conf_load(const char *path, struct fanout_conf *conf, FILE *errs)
{
	config_setting_t *root, *s, *found[nitems(settings)] = { NULL };
	char shown[PATH_MAX];
	config_t cf;
	FILE *fp;
	int i, n, bad = 0;

	if (conf_set_defaults(conf) == -1) {
		fprintf(errs, "%s: out of memory\n", path);
		conf_free(conf);
		return -1;
	}
	/* libconfig reports a missing file as "file I/O error", and would
	 * block on a FIFO: say why, and read only what was checked. */
	if ((fp = conf_open_checked(path, errs)) == NULL) {
		conf_free(conf);
		return -1;
	}
	config_init(&cf);
	conf_include_dir(&cf, path);
	if (config_read(&cf, fp) != CONFIG_TRUE) {
		fprintf(errs, "%s:%d: %s\n",
		    conf_shown(config_error_file(&cf), path, shown,
		    sizeof(shown)), config_error_line(&cf),
		    config_error_text(&cf));
		fclose(fp);
		config_destroy(&cf);
		conf_free(conf);
		return -1;
	}
	fclose(fp);
	root = config_root_setting(&cf);
	n = config_setting_length(root);
	for (i = 0; i < n; i++) {
		const struct conf_setting *cs;

		s = config_setting_get_elem(root, (unsigned)i);
		if ((cs = conf_lookup(config_setting_name(s))) == NULL) {
			conf_error(errs, path, s, "unknown setting");
			bad = 1;
			continue;
		}
		if (conf_apply(cs, s, conf, path, errs) == -1)
			bad = 1;
		found[cs - settings] = s;
	}
	if (!bad)
		bad = conf_check(conf, found, &cf, path, errs);
	config_destroy(&cf);
	if (bad) {
		conf_free(conf);
		return -1;
	}
	return 0;
}

/* The setting to blame for a problem between two: the one the file set. */
static const config_setting_t *
conf_blame(config_setting_t *const found[], const char *first,
    const char *second, config_t *cf)
{
	const struct conf_setting *cs = conf_lookup(first);

	if (found[cs - settings] != NULL)
		return found[cs - settings];
	return config_lookup(cf, second);
}

#define FOUND(name)	found[conf_lookup(name) - settings]

/* The broker's settings: remote workers need a broker, a certificate its
 * key, and fanoutd must be able to read the TLS files.  0, or 1 if bad. */
static int
conf_check_remote(const struct fanout_conf *conf,
    config_setting_t *const found[], config_t *cf, const char *path,
    FILE *errs)
{
	static const char *const files[] = { "nats_tls_ca", "nats_tls_cert",
	    "nats_tls_key" };
	const char *file;
	size_t i;
	int bad = 0;

	(void)cf;
	if (conf->remote_workers != NULL && conf->nats_servers == NULL) {
		conf_error(errs, path, FOUND("remote_workers"), "needs "
		    "nats_servers: the broker the remote workers read from");
		bad = 1;
	}
	if ((conf->nats_tls_cert[0] == '\0') !=
	    (conf->nats_tls_key[0] == '\0')) {
		conf_error(errs, path, FOUND(conf->nats_tls_cert[0] == '\0' ?
		    "nats_tls_key" : "nats_tls_cert"), "nats_tls_cert and "
		    "nats_tls_key go together");
		bad = 1;
	}
	for (i = 0; i < nitems(files); i++) {
		const struct conf_setting *cs = conf_lookup(files[i]);

		if (cs == NULL)
			continue;
		file = *(char *const *)((const char *)conf + cs->off);
		if (file[0] != '\0' && conf_check_readable(file,
		    FOUND(files[i]), path, errs) < 0)
			bad = 1;
	}
	return bad;
}

/* Settings that are each valid but not together: 0, or 1 if bad. */
static int
conf_check(const struct fanout_conf *conf, config_setting_t *const found[],
    config_t *cf, const char *path, FILE *errs)
{
	const config_setting_t *s;
	int bad = 0;

	if (conf->queue_max_bytes < conf->max_message_bytes) {
		s = conf_blame(found, "queue_max_bytes", "max_message_bytes",
		    cf);
		conf_error(errs, path, s, "queue_max_bytes (%u) must be at "
		    "least max_message_bytes (%u), or the largest message "
		    "never fits a queue", conf->queue_max_bytes,
		    conf->max_message_bytes);
		bad = 1;
	}
	if ((uint64_t)conf->control_buffer_max_bytes <
	    (uint64_t)conf->control_output_max_bytes + conf->max_message_bytes) {
		s = conf_blame(found, "control_buffer_max_bytes",
		    "control_output_max_bytes", cf);
		conf_error(errs, path, s, "control_buffer_max_bytes (%u) must "
		    "be at least control_output_max_bytes (%u) plus "
		    "max_message_bytes (%u), or one client cannot be served",
		    conf->control_buffer_max_bytes,
		    conf->control_output_max_bytes, conf->max_message_bytes);
		bad = 1;
	}
	if (conf->base_port + conf->workers - 1 > 65535) {
		s = conf_blame(found, "base_port", "workers", cf);
		conf_error(errs, path, s,
		    "ports %u to %u do not fit below 65536",
		    conf->base_port, conf->base_port + conf->workers - 1);
		bad = 1;
	}
	if (conf->handler != NULL &&
	    conf->handler_timeout_ms >= conf->stall_timeout_ms) {
		s = conf_blame(found, "handler_timeout_ms", "stall_timeout_ms",
		    cf);
		conf_error(errs, path, s, "handler_timeout_ms (%u) must be "
		    "below stall_timeout_ms (%u), or a slow handler is taken "
		    "for a stalled worker", conf->handler_timeout_ms,
		    conf->stall_timeout_ms);
		bad = 1;
	}
	if (conf->handler != NULL && conf_check_program(conf->handler[0],
	    conf_blame(found, "handler", "handler", cf), "handler", path,
	    errs) < 0)
		bad = 1;
	if (conf_check_program(conf->worker_path, found[conf_lookup(
	    "worker_path") - settings], "worker_path", path, errs) < 0)
		bad = 1;
	bad |= conf_check_remote(conf, found, cf, path, errs);
	return bad;
}

void
conf_free(struct fanout_conf *conf)
{
	free(conf->listen_address);
	free(conf->control_socket);
	free(conf->worker_path);
	free(conf->spool_dir);
	strv_free(conf->handler);
	strv_free(conf->nats_servers);
	free(conf->nats_tls_ca);
	free(conf->nats_tls_cert);
	free(conf->nats_tls_key);
	free(conf->nats_subject_prefix);
	free(conf->nats_stream);
	strv_free(conf->remote_workers);
	memset(conf, 0, sizeof(*conf));
}

/* A string as libconfig reads it back: quotes and backslashes escaped,
 * control characters as \xNN. */
static void
conf_put_string(FILE *f, const char *str)
{
	const unsigned char *p;

	fputc('"', f);
	for (p = (const unsigned char *)str; *p != '\0'; p++)
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	fputc('"', f);
}

/* A setting's value in libconfig syntax, as the file would say it. */
static void
conf_put_value(const struct conf_setting *cs, const struct fanout_conf *conf,
    FILE *f)
{
	const void *field = (const char *)conf + cs->off;
	char *const *argv;

	switch (cs->type) {
	case CT_INT:
		fprintf(f, "%u", *(const uint32_t *)field);
		break;
	case CT_BOOL:
		fputs(*(const bool *)field ? "true" : "false", f);
		break;
	case CT_SIZE:
		/* libconfig reads a 64-bit integer only with its suffix. */
		fprintf(f, "%llu%s", (unsigned long long)*(const uint64_t *)field,
		    *(const uint64_t *)field > INT32_MAX ? "L" : "");
		break;
	case CT_ENUM:
		conf_put_string(f, cs->names[*(const uint32_t *)field]);
		break;
	case CT_ARGV:
	case CT_URLS:
	case CT_NAMES:
		if ((argv = *(char **const *)field) == NULL) {
			fputs("none", f);
			break;
		}
		fputs("[ ", f);
		for (; *argv != NULL; argv++) {
			conf_put_string(f, *argv);
			if (argv[1] != NULL)
				fputs(", ", f);
		}
		fputs(" ]", f);
		break;
	default:
		conf_put_string(f, *(char *const *)field);
		break;
	}
}

/* The same into buf, cut at len - 1 bytes: for messages. */
static void
conf_format(const struct conf_setting *cs, const struct fanout_conf *conf,
    char *buf, size_t len)
{
	FILE *f;

	memset(buf, 0, len);
	if (len < 2 || (f = fmemopen(buf, len - 1, "w")) == NULL)
		return;
	conf_put_value(cs, conf, f);
	fclose(f);
	buf[len - 1] = '\0';
}

void
conf_print(const struct fanout_conf *conf, FILE *f)
{
	size_t i;

	for (i = 0; i < nitems(settings); i++) {
		if (CT_IS_LIST(settings[i].type) &&
		    *(char **const *)((const char *)conf + settings[i].off) ==
		    NULL) {
			fprintf(f, "# %s: none\n", settings[i].name);
			continue;
		}
		fprintf(f, "%s = ", settings[i].name);
		conf_put_value(&settings[i], conf, f);
		fputs(";\n", f);
	}
}

void
conf_diff(const struct fanout_conf *old, const struct fanout_conf *new,
    void (*changed)(const char *name, const char *was, const char *is,
    void *), void *arg)
{
	char was[CONF_VALUE_MAX], is[CONF_VALUE_MAX];
	size_t i;

	for (i = 0; i < nitems(settings); i++) {
		conf_format(&settings[i], old, was, sizeof(was));
		conf_format(&settings[i], new, is, sizeof(is));
		if (strcmp(was, is) != 0)
			changed(settings[i].name, was, is, arg);
	}
}
