/* SPDX-License-Identifier: MIT */
/*
 * The remote worker's configuration file.  Its own small table rather than
 * conf.c's: fanout.conf's settings describe a daemon and its local pool,
 * this file a single worker on another host; the handler settings have the
 * same names, types, ranges and defaults as in fanout.conf(5).  Unknown
 * settings are errors, as there.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "conf.h"
#include "proto.h"
#include "rconf.h"
#include "util.h"


static void
rerr(FILE *errs, const char *path, const config_setting_t *s,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
rerr(FILE *errs, const char *path, const config_setting_t *s,
    const char *fmt, ...)
{
	va_list ap;

	if (s != NULL)
		fprintf(errs, "%s:%u: %s: ", path,
		    config_setting_source_line(s), config_setting_name(s));
	else
		fprintf(errs, "%s: ", path);
	va_start(ap, fmt);
	vfprintf(errs, fmt, ap);
	va_end(ap);
	fputc('\n', errs);
}

int
rconf_check_name(const char *name, int dots, const char **why)
{
	size_t i, len = strlen(name);

	if (len == 0 || len > RCONF_TOKEN_MAX) {
		*why = "must be 1 to 64 bytes long";
		return -1;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (isascii(c) && (isalnum(c) || c == '-' || c == '_'))
			continue;
		if (dots && c == '.' && i > 0 && i + 1 < len &&
		    name[i + 1] != '.')
			continue;
		*why = dots ? "may hold only letters, digits, '-', '_' and "
		    "'.' between tokens" : "may hold only letters, digits, "
		    "'-' and '_' (no '.', '*', '>' or white space)";
		return -1;
	}
	return 0;
}

/* A list of strings (or one string): a NULL-ended copy, or NULL. */
static char **
rconf_list(config_setting_t *s, int max, size_t len_max, const char *path,
    FILE *errs)
{
	int type = config_setting_type(s), n, i;
	const char *str;
	char **v;

	n = type == CONFIG_TYPE_STRING ? 1 : (type == CONFIG_TYPE_LIST ||
	    type == CONFIG_TYPE_ARRAY) ? config_setting_length(s) : -1;
	if (n < 1 || n > max) {
		rerr(errs, path, s, "must be a string or a list of 1 to %d "
		    "strings", max);
		return NULL;
	}
	if ((v = calloc((size_t)n + 1, sizeof(*v))) == NULL) {
		rerr(errs, path, s, "out of memory");
		return NULL;
	}
	for (i = 0; i < n; i++) {
		str = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) :
		    config_setting_get_string_elem(s, (unsigned)i);
		if (str == NULL || strlen(str) > len_max ||
		    (v[i] = strdup(str)) == NULL) {
			rerr(errs, path, s, "element %d: must be a string of "
			    "at most %zu bytes", i + 1, len_max);
			strv_free(v);
			return NULL;
		}
	}
	return v;
}

static int
rconf_enum(config_setting_t *s, const char *const *names, uint32_t *out,
    const char *path, FILE *errs)
{
	const char *str = config_setting_get_string(s);
	int i;

	for (i = 0; str != NULL && names[i] != NULL; i++)
		if (strcmp(names[i], str) == 0) {
			*out = (uint32_t)i;
			return 0;
		}
	rerr(errs, path, s, "must be one of \"%s\" or \"%s\"", names[0],
	    names[1]);
	return -1;
}

static int
rconf_int(config_setting_t *s, long long min, long long max, uint32_t *out,
    const char *path, FILE *errs)
{
	long long v;

	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64) {
		rerr(errs, path, s, "must be an integer");
		return -1;
	}
	v = config_setting_get_int64(s);
	if (v < min || v > max) {
		rerr(errs, path, s, "must be between %lld and %lld", min, max);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

/* A string setting: absolute path (abs), or a name (dots: a prefix). */
static int
rconf_str(config_setting_t *s, int kind, char **out, const char *path,
    FILE *errs)
{
	const char *str = config_setting_get_string(s), *why;
	char *dup;

	if (str == NULL) {
		rerr(errs, path, s, "must be a string");
		return -1;
	}
	if (kind == 'p' && (str[0] != '/' || strlen(str) > 4095)) {
		rerr(errs, path, s, "must be an absolute path");
		return -1;
	}
	if (kind == 'k' && (strlen(str) == 0 || strlen(str) > 4095 ||
	    (str[0] != '/' && strchr(str, '/') != NULL))) {
		rerr(errs, path, s, "must be an absolute path or the name of "
		    "a credential (LoadCredential=)");
		return -1;
	}
	if ((kind == 'n' || kind == '.') &&
	    rconf_check_name(str, kind == '.', &why) < 0) {
		rerr(errs, path, s, "\"%s\" %s", str, why);
		return -1;
	}
	if ((dup = strdup(str)) == NULL) {
		rerr(errs, path, s, "out of memory");
		return -1;
	}
	free(*out);
	*out = dup;
	return 0;
}

static int
rconf_apply(struct rconf *rc, config_setting_t *s, const char *path,
    FILE *errs)
{
	static const char *const modes[] = HANDLER_MODE_NAMES;
	static const char *const framings[] = HANDLER_FRAMING_NAMES;
	const char *name = config_setting_name(s);
	size_t i;

	if (strcmp(name, "nats_servers") == 0) {
		strv_free(rc->servers);
		if ((rc->servers = rconf_list(s, RCONF_SERVERS_MAX,
		    RCONF_URL_MAX, path, errs)) == NULL)
			return -1;
		for (i = 0; rc->servers[i] != NULL; i++)
			if (strncmp(rc->servers[i], "nats://", 7) != 0 &&
			    strncmp(rc->servers[i], "tls://", 6) != 0) {
				rerr(errs, path, s, "\"%s\": must start with "
				    "nats:// or tls://", rc->servers[i]);
				return -1;
			}
		return 0;
	}
	if (strcmp(name, "handler") == 0) {
		strv_free(rc->handler);
		if ((rc->handler = rconf_list(s, HANDLER_ARGS_MAX,
		    HANDLER_ARG_LEN_MAX, path, errs)) == NULL)
			return -1;
		if (rc->handler[0][0] != '/') {
			rerr(errs, path, s, "\"%s\": the program must be an "
			    "absolute path", rc->handler[0]);
			return -1;
		}
		if (access(rc->handler[0], X_OK) == -1) {
			rerr(errs, path, s, "%s: is not executable",
			    rc->handler[0]);
			return -1;
		}
		return 0;
	}
	if (strcmp(name, "nats_tls_ca") == 0)
		return rconf_str(s, 'p', &rc->tls_ca, path, errs);
	if (strcmp(name, "nats_tls_cert") == 0)
		return rconf_str(s, 'p', &rc->tls_cert, path, errs);
	if (strcmp(name, "nats_tls_key") == 0)
		return rconf_str(s, 'k', &rc->tls_key, path, errs);
	if (strcmp(name, "nats_subject_prefix") == 0)
		return rconf_str(s, '.', &rc->prefix, path, errs);
	if (strcmp(name, "nats_stream") == 0)
		return rconf_str(s, 'n', &rc->stream, path, errs);
	if (strcmp(name, "handler_mode") == 0)
		return rconf_enum(s, modes, &rc->handler_mode, path, errs);
	if (strcmp(name, "handler_framing") == 0)
		return rconf_enum(s, framings, &rc->handler_framing, path,
		    errs);
	if (strcmp(name, "handler_timeout_ms") == 0)
		return rconf_int(s, 100, 3600000, &rc->handler_timeout_ms,
		    path, errs);
	if (strcmp(name, "max_message_bytes") == 0)
		return rconf_int(s, 1, FANOUT_MESSAGE_MAX,
		    &rc->max_message_bytes, path, errs);
	rerr(errs, path, s, "unknown setting");
	return -1;
}

int
rconf_load(const char *path, struct rconf *rc, FILE *errs)
{
	config_setting_t *root;
	config_t cf;
	int i, n, bad = 0;

	memset(rc, 0, sizeof(*rc));
	rc->handler_mode = HANDLER_EXEC;
	rc->handler_framing = FRAMING_LINES;
	rc->handler_timeout_ms = 10000;
	rc->max_message_bytes = 64 * 1024;
	if ((rc->prefix = strdup("fanout")) == NULL ||
	    (rc->stream = strdup("FANOUT")) == NULL) {
		rconf_free(rc);
		return -1;
	}
	config_init(&cf);
	if (config_read_file(&cf, path) != CONFIG_TRUE) {
		if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
			rerr(errs, path, NULL, "cannot read it");
		else
			fprintf(errs, "%s:%d: %s\n", path,
			    config_error_line(&cf), config_error_text(&cf));
		config_destroy(&cf);
		rconf_free(rc);
		return -1;
	}
	root = config_root_setting(&cf);
	n = config_setting_length(root);
	for (i = 0; i < n; i++)
		if (rconf_apply(rc, config_setting_get_elem(root,
		    (unsigned)i), path, errs) < 0)
			bad = 1;
	if (!bad && rc->servers == NULL) {
		rerr(errs, path, NULL, "nats_servers: required");
		bad = 1;
	}
	if (!bad && (rc->tls_cert == NULL) != (rc->tls_key == NULL)) {
		rerr(errs, path, NULL, "nats_tls_cert and nats_tls_key go "
		    "together");
		bad = 1;
	}
	config_destroy(&cf);
	if (bad) {
		rconf_free(rc);
		return -1;
	}
	return 0;
}

void
rconf_free(struct rconf *rc)
{
	strv_free(rc->servers);
	strv_free(rc->handler);
	free(rc->tls_ca);
	free(rc->tls_cert);
	free(rc->tls_key);
	free(rc->prefix);
	free(rc->stream);
	memset(rc, 0, sizeof(*rc));
}
