/* SPDX-License-Identifier: MIT */
/* The configuration file: libconfig in, a plain struct out. */
#ifndef FANOUT_CONF_H
#define FANOUT_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR	"/etc"
#endif
#ifndef RUNSTATEDIR
#define RUNSTATEDIR	"/run"
#endif
#ifndef PKGLIBEXECDIR
#define PKGLIBEXECDIR	"/usr/libexec/fanout"
#endif
#define FANOUT_CONF_DEFAULT	SYSCONFDIR "/fanout.conf"
#define FANOUT_SOCKET_DEFAULT	RUNSTATEDIR "/fanout/control.sock"
#define FANOUT_WORKER_DEFAULT	PKGLIBEXECDIR "/fanout-worker"
#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR	"/var"
#endif
#define FANOUT_SPOOL_DIR_DEFAULT	LOCALSTATEDIR "/lib/fanout"

/* What fanoutd does once no worker has been up for degraded_timeout_ms. */
enum degraded_action {
	DEGRADED_QUEUE = 0,	/* say so, keep serving and queueing */
	DEGRADED_EXIT,		/* exit 1, for systemd's Restart= */
};
#define DEGRADED_ACTION_NAMES	{ "queue", "exit", NULL }

/* How fanoutd starts the pool (proto.h, "Starting the pool"). */
enum worker_start {
	WORKER_START_FORK = 0,	/* worker_path once, --pool: it forks each */
	WORKER_START_EXEC,	/* worker_path once per worker, --index */
};
#define WORKER_START_NAMES	{ "fork", "exec", NULL }

/* How a worker runs its handler (fanout.conf(5)). */
enum handler_mode {
	HANDLER_EXEC = 0,	/* one process per message */
	HANDLER_PIPE,		/* one long-running process, fed on stdin */
};
#define HANDLER_MODE_NAMES	{ "exec", "pipe", NULL }

/* How messages and answers cross a pipe handler's stdin and stdout. */
enum handler_framing {
	FRAMING_LINES = 0,	/* a message per line */
	FRAMING_BINARY,		/* "ID LENGTH\n", then the bytes */
};
#define HANDLER_FRAMING_NAMES	{ "lines", "binary", NULL }

/* A handler that ran out of time: its process group gets SIGTERM, then
 * SIGKILL this much later. */
#define HANDLER_KILL_GRACE_MS	2000

/* The smallest control output budget: a CTL_STATS reply for the largest
 * pool (about 500 KiB for 1024 workers) must fit in it. */
#define CTL_OUTPUT_MIN		(1024 * 1024)

/* Bounds of the handler setting's argv. */
#define HANDLER_ARGS_MAX	64
#define HANDLER_ARG_LEN_MAX	4095

struct fanout_conf {
	uint32_t	 workers;
	uint32_t	 base_port;
	uint32_t	 ack_timeout_ms;
	uint32_t	 max_message_bytes;
	uint32_t	 start_timeout_ms;
	uint32_t	 auth_timeout_ms;
	uint32_t	 stop_timeout_ms;
	uint32_t	 restart_max_delay_ms;
	uint32_t	 restart_reset_ms;
	uint32_t	 stall_timeout_ms;
	uint32_t	 queue_max_messages;
	uint32_t	 queue_max_bytes;
	uint32_t	 degraded_timeout_ms;
	uint32_t	 degraded_action;	/* enum degraded_action */
	uint32_t	 worker_start;		/* enum worker_start */
	uint32_t	 handler_mode;		/* enum handler_mode */
	uint32_t	 handler_framing;	/* enum handler_framing */
	uint32_t	 handler_timeout_ms;
	uint32_t	 control_max_connections;
	uint32_t	 control_idle_timeout_ms;
	uint32_t	 control_frame_timeout_ms;
	uint32_t	 control_output_max_bytes;
	uint32_t	 control_buffer_max_bytes;
	bool		 spool;		/* keep queued messages on disk */
	uint64_t	 spool_max_bytes;
	char		**handler;	/* argv, NULL ended; NULL: none */
	char		*listen_address;
	char		*control_socket;
	char		*worker_path;
	char		*spool_dir;
	/* Remote workers (remote.c): empty strings and NULL lists when
	 * nats_servers is not set, and then nothing of it is used. */
	char		**nats_servers;		/* URLs, NULL ended */
	char		*nats_tls_ca;		/* "": none */
	char		*nats_tls_cert;
	char		*nats_tls_key;		/* a path or a credential */
	char		*nats_subject_prefix;
	char		*nats_stream;
	uint32_t	 nats_stream_replicas;	/* 0: as the stream is */
	char		**remote_workers;	/* names, NULL ended */
	uint32_t	 remote_ack_wait_ms;
};

/* Bounds of the remote settings, as fanout-remote-worker has them. */
#define CONF_NATS_SERVERS_MAX	16
#define CONF_NATS_URL_MAX	255
#define CONF_REMOTE_WORKERS_MAX	256	/* proto.h's FANOUT_REMOTE_MAX */

/* Loads path into conf, defaults first.  Each problem is written to errs as
 * "file:line: setting: problem".  Returns 0, or -1 with conf left empty. */
int	conf_load(const char *path, struct fanout_conf *, FILE *errs);
void	conf_free(struct fanout_conf *);
/* Every setting, defaults included, in the file's own syntax. */
void	conf_print(const struct fanout_conf *, FILE *);
/* Calls changed for each setting whose value differs, with both values as
 * conf_print would write them (cut at CONF_VALUE_MAX). */
#define CONF_VALUE_MAX	256
void	conf_diff(const struct fanout_conf *old, const struct fanout_conf *new,
	    void (*changed)(const char *name, const char *was, const char *is,
	    void *), void *arg);
/* The number of strings in a NULL-ended list. */
uint32_t conf_list_len(char *const *);

#endif /* FANOUT_CONF_H */
