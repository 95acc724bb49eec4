/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr.  When stderr is the journal (JOURNAL_STREAM names it),
 * each line gets a "<N>" syslog priority prefix that journald turns into the
 * entry's priority; on a terminal or a file, lines read "name: message".
 * The priorities each kind of event gets are in log.h.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char *log_name = "fanout";
static int log_verbose;
static int log_journal;

static int
stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return st.st_dev == dev && st.st_ino == ino;
}

void
log_init(const char *name, int verbose)
{
	log_name = name;
	log_verbose = verbose;
	log_journal = stderr_is_journal();
}

void
log_setverbose(int v)
{
	log_verbose = v;
}

int
log_getverbose(void)
{
	return log_verbose;
}

static void
vlog(int pri, const char *fmt, va_list ap, const char *errstr)
{
	char msg[1024];
	int saved = errno;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One fprintf per line: lines from several processes sharing the
	 * stream must not interleave. */
	if (log_journal)
		fprintf(stderr, "<%d>%s%s%s\n", pri, msg,
		    errstr ? ": " : "", errstr ? errstr : "");
	else
		fprintf(stderr, "%s: %s%s%s\n", log_name, msg,
		    errstr ? ": " : "", errstr ? errstr : "");
	errno = saved;
}

void
logit(int pri, const char *fmt, ...)
{
	va_list ap;

	if (pri == LOG_DEBUG && log_verbose < LOG_V_EVENTS)
		return;
	va_start(ap, fmt);
	vlog(pri, fmt, ap, NULL);
	va_end(ap);
}

void
log_err(const char *fmt, ...)
{
	const char *e = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap, e);
	va_end(ap);
}

void
log_errx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap, NULL);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	const char *e = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_WARNING, fmt, ap, e);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_WARNING, fmt, ap, NULL);
	va_end(ap);
}

void
log_notice(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_NOTICE, fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (log_verbose < LOG_V_EVENTS)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap, NULL);
	va_end(ap);
}

void
log_trace(const char *fmt, ...)
{
	va_list ap;

	if (log_verbose < LOG_V_MESSAGES)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap, NULL);
	va_end(ap);
}

void
log_lines(int pri, const char *text)
{
	const char *nl;
	int len;

	if (pri == LOG_DEBUG && log_verbose < LOG_V_EVENTS)
		return;
	for (; *text != '\0'; text = *nl != '\0' ? nl + 1 : nl) {
		if ((nl = strchr(text, '\n')) == NULL)
			nl = text + strlen(text);
		len = (int)(nl - text);
		if (log_journal)
			fprintf(stderr, "<%d>%.*s\n", pri, len, text);
		else
			fprintf(stderr, "%.*s\n", len, text);
	}
}

void
fatal(const char *fmt, ...)
{
	const char *e = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap, e);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

/* ---- rate limiting ---- */

static struct log_limit *limits;	/* every limit used so far */
static unsigned limits_pending;		/* with a count to report */

static void
limit_report(struct log_limit *l)
{
	if (l->suppressed == 0)
		return;
	logit(l->pri, "%s: %u similar message%s suppressed", l->what,
	    l->suppressed, l->suppressed == 1 ? "" : "s");
	l->suppressed = 0;
	limits_pending--;
}

bool
log_limit(struct log_limit *l)
{
	uint64_t now = now_usec();

	if (!l->listed) {
		l->listed = true;
		l->next = limits;
		limits = l;
	}
	if (l->start_usec == 0 ||
	    now - l->start_usec >= LOG_LIMIT_WINDOW_MS * 1000ULL) {
		limit_report(l);
		l->start_usec = now;
		l->n = 0;
	}
	if (l->n < LOG_LIMIT_BURST) {
		l->n++;
		return true;
	}
	if (l->suppressed++ == 0)
		limits_pending++;
	return false;
}

void
log_limit_flush(bool all)
{
	struct log_limit *l;
	uint64_t now;

	if (limits_pending == 0)
		return;
	now = now_usec();
	for (l = limits; l != NULL; l = l->next)
		if (l->suppressed > 0 && (all ||
		    now - l->start_usec >= LOG_LIMIT_WINDOW_MS * 1000ULL)) {
			limit_report(l);
			/* The next message opens a window of its own. */
			l->start_usec = 0;
		}
}
