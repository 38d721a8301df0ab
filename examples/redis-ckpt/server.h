/*
 * server.h - redis-ckpt's process-side state: clients, replies, the command
 * table and persistence.  None of this lives in the libckpt heap (client
 * buffers and the event loop are per-process); the keyspace does (db.h).
 */
#ifndef REDIS_CKPT_SERVER_H
#define REDIS_CKPT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "db.h"

#define RC_VERSION "7.0.15-ckpt"
#define PROTO_MAX_BULK_LEN (512ll * 1024 * 1024)
#define PROTO_INLINE_MAX (64 * 1024)
#define PROTO_MBULK_BIG_ARG (32 * 1024)

#define CF_CLOSE_AFTER_REPLY (1u << 0)
#define CF_PENDING_WRITE (1u << 1)
#define CF_CLOSE_ASAP (1u << 2)
#define CF_AUTHED (1u << 3)
#define CF_EPOLLOUT (1u << 4)
#define CF_BLOCKED (1u << 5) /* BLPOP/BRPOP: no further command runs until client_unblock() */
#define CF_IN_EXEC (1u << 6) /* running EXEC's queue: commands must not block */
#define CF_MASTER (1u << 7)  /* our primary's link (replica.c): its commands get no reply */

typedef struct client {
	int fd;
	unsigned flags;
	uint64_t id;
	char addr[64];
	char *name;
	time_t ctime;

	/* input: [qpos, qlen) not parsed yet */
	char *qbuf;
	size_t qlen, qcap, qpos;
	size_t cmdstart;     /* start of the command being parsed */
	int reqtype;         /* 0 none, 1 multibulk, 2 inline */
	long multibulklen;   /* args still to read */
	long long bulklen;   /* -1: reading the $ line */
	int argc, argcap;
	size_t *argoff;      /* offsets into qbuf (the buffer may move) */
	size_t *arglen;
	char *inlinebuf;     /* inline args are unquoted into this */
	size_t inlinecap;
	char **argv;         /* built just before execution */
	size_t *argvlen;

	/* output: [opos, olen) still to send */
	char *obuf;
	size_t olen, ocap, opos;

	/* MULTI: queued commands, each argv copied (the query buffer moves) */
	bool in_multi;
	bool multi_failed; /* a command could not be queued: EXEC aborts */
	int nqueued, queuecap;
	struct queued_cmd {
		int argc;
		char **argv;
		size_t *argvlen;
	} *queue;

	struct replica *repl; /* REPLCONF/SYNC state (repl.c), NULL otherwise */
	long long repl_woff;  /* replication offset after its last write (WAIT) */

	/* WATCH (watch.c): names copied, flags per key */
	struct watched_key {
		char *key;
		size_t len;
		bool expired; /* already expired (not deleted) at WATCH time */
	} *watched;
	int nwatched, watchcap;
	bool dirty_cas; /* a watched key changed: EXEC aborts */

	/* BLPOP / BRPOP (blocking.c) */
	bool bpop, bhead, in_unblocked; /* bpop: in the list of blocked clients */
	long long bdeadline; /* ms, 0: none */
	int nbkeys;
	char **bkeys;
	size_t *bklens;
	struct client *bprev, *bnext, *next_unblocked;

	struct client *prev, *next;
	struct client *next_pending;
	struct client *next_close;
} client;

/* ------------------------------------------------------------- replies */
void add_reply(client *c, const char *p, size_t len);
void add_reply_str(client *c, const char *s); /* raw protocol text */
void add_reply_status(client *c, const char *s);
void add_reply_error(client *c, const char *s);  /* s without the leading '-' */
void add_reply_errorf(client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void add_reply_bulk(client *c, const char *p, size_t len);
void add_reply_bulk_cstr(client *c, const char *s);
void add_reply_int(client *c, long long v);
void add_reply_nil(client *c);
void add_reply_null_array(client *c);
void add_reply_array(client *c, long long n);
void add_reply_double(client *c, double d);
void add_reply_ok(client *c);
/* An array whose length is known only after its elements: remember the
 * offset, add the elements, then set the length. */
size_t add_reply_deferred(client *c);
void set_deferred_array(client *c, size_t off, long long n);
void add_reply_oom(client *c);

/* A client for a connected non-blocking socket (replica.c: the primary's
 * link); @addr names it in logs.  NULL when out of memory. */
client *client_new(int fd, const char *addr);
/* Replies to a blocked client were sent: run what it sent meanwhile. */
void client_unblock(client *c);

/* ------------------------------------------------------------- commands */
#define CMD_WRITE (1u << 0)
#define CMD_READONLY (1u << 1)
#define CMD_DENYOOM (1u << 2)
#define CMD_NOAUTH (1u << 3)  /* allowed before AUTH */
#define CMD_ADMIN (1u << 4)
#define CMD_FAST (1u << 5)
#define CMD_TOUCH_SELF (1u << 6) /* signals the keys it modifies itself (not by key spec) */

struct command {
	const char *name;
	void (*proc)(client *c);
	int arity; /* >0 exact, <0 at least -arity */
	unsigned flags;
	int firstkey, lastkey, step;
};

extern struct command g_commands[];
/* MULTI / EXEC / DISCARD live in server.c: they wrap command dispatch */
void cmd_multi(client *c);
void cmd_exec(client *c);
void cmd_discard(client *c);
void commands_init(void);
struct command *command_lookup(const char *name, size_t len);
void command_reply_info(client *c, struct command *cmd);
size_t command_count(void);

/* WATCH and modified keys, watch.c */
void cmd_watch(client *c);
void cmd_unwatch(client *c);
void unwatch_all(client *c);
bool watch_active(void);
bool watch_exec_aborts(client *c);
/* A key was written (or deleted): watchers' EXEC aborts, blocked pops wake. */
void signal_modified_key(const char *key, size_t len);
/* FLUSHALL, before the flush: every watched key that exists changes. */
void signal_all_keys_modified(void);
/* Runs cmd's proc, then signals the keys it wrote. */
void command_run(client *c, struct command *cmd);

/* Blocking list pops, blocking.c */
bool blocking_active(void);
/* Blocks c on argv[first..last].  0, or -1 when out of memory. */
int block_client(client *c, int first, int last, bool head, long long deadline_ms);
void unblock_client(client *c);
void blocking_forget(client *c);
void blocking_key_modified(const char *key, size_t len);
void blocking_serve_ready(void);
void blocking_cron(long long now_ms);
/* The event loop: served or timed-out clients go on (client_unblock()). */
void blocking_resume(void);
/* commands.c: pops one element of the list at key for blocked client b and
 * replies [key, element]; false when there is no non-empty list there. */
bool serve_blocked_pop(client *b, const char *key, size_t klen, bool head);
bool key_exists(const char *key, size_t klen);
bool key_is_expired(const char *key, size_t klen);

/* ------------------------------------------------------------- server */
struct saveparam {
	long seconds;
	long changes;
};

struct server {
	int port;
	char bind[64];
	char dir[1024];
	char dbfilename[256];
	char path[1400]; /* dir/dbfilename */
	struct saveparam save[16];
	int nsave;
	size_t heap_size;
	enum ckpt_backend mode;
	bool incremental;
	int maxclients;
	char logfile[1024];
	char requirepass[256];
	bool protected_mode;
	size_t repl_backlog_size; /* repl.c's backlog for partial resyncs */
	bool rdb_compression;     /* rdb.c: LZF for strings over 20 bytes */

	int lfd, epfd;
	client *clients;
	int nclients;
	uint64_t next_client_id;
	client *pending;
	client *to_close;
	time_t start_time;
	bool shutdown_asap;

	/* counters */
	long long dirty;
	long long stat_commands, stat_conns, stat_rejected, stat_expired;
	long long stat_keyspace_hits, stat_keyspace_misses;

	/* persistence */
	bool ckpt_running;
	bool ckpt_preparing;  /* BGSAVE: ckpt_prepare() done, the cut not yet */
	uint64_t ckpt_gen;    /* the running checkpoint's generation */
	bool ckpt_is_bg;
	long long dirty_at_begin;
	uint64_t keys_at_begin;
	time_t lastsave;
	time_t last_bgsave_try;
	int last_status; /* 0 ok */
	time_t ckpt_start;
	long long last_duration_sec;
	struct ckpt_stats last_stats;
	bool have_stats;
	uint64_t restore_ns;
	uint64_t restored_keys;
	bool restore_eager;      /* --restore eager: verify and load everything before serving */
	bool warm_done;          /* a lazy restore's heap is fully resident (or failed), logged */
	uint64_t restore_t0_ns;  /* when the restore began (warm-up time) */
	uint64_t main_ns, listen_ns, first_reply_ns; /* start-up timeline (CLOCK_MONOTONIC) */
	long long saves_done;
};

extern struct server g_srv;
extern long long g_now_ms; /* cached at each event loop iteration and command */

void log_msg(char level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
long long mstime(void);

/* Starts a checkpoint.  0, or a negative code (already logged). */
int persist_begin(bool background);
/* Waits for the running checkpoint and records its result.  0 or error. */
int persist_finish(void);

/* Keyspace helpers, commands.c */
dent *lookup_key(const char *key, size_t klen);
void delete_entry(dent *e);
bool delete_key(const char *key, size_t klen);
void active_expire_cycle(int budget_us);
void keyspace_init_fresh(void);

bool parse_ll(const char *p, size_t len, long long *out);
bool parse_save_param(const char *s);
int server_prepare_shutdown(bool save, bool nosave);

/* INFO, commands.c; writes the text into a malloc'd buffer */
char *info_text(const char *section);
/* The cron's sample of used_memory for used_memory_peak. */
void memory_cron(void);
#endif
