/*
 * repl.h - redis-ckpt as a replication primary (repl.c): SYNC/PSYNC answered
 * with a full resync whose RDB a helper process serialises from a libckpt
 * checkpoint, then the stream of write commands, as Redis does.
 */
#ifndef REDIS_CKPT_REPL_H
#define REDIS_CKPT_REPL_H

#include <stddef.h>

#include "server.h"

/* Runs @cmd for @c and, if it changed the dataset and replicas are
 * attached, propagates it (server.c calls this instead of cmd->proc). */
void repl_call(client *c, struct command *cmd);
/* A key removed by expiry: replicas get a DEL (they never expire keys
 * themselves). */
void repl_propagate_expired(const char *key, size_t klen);
/* 10 ms tick: checkpoint and helper progress, starting waiting syncs,
 * pings to replicas. */
void repl_cron(void);
/* The client is being freed: forget it as a replica. */
void repl_client_freed(client *c);
/* true while a sync's checkpoint runs (BGSAVE must wait: one checkpoint
 * at a time per heap). */
bool repl_ckpt_busy(void);
/* Shutdown: stops a running sync (helper killed, checkpoint cancelled). */
void repl_stop_sync(void);
/* Our dataset was replaced (a full sync from our own primary): our
 * replicas must sync again. */
void repl_drop_replicas(const char *why);
/* INFO stats: full syncs, partial resyncs accepted and refused. */
void repl_sync_stats(long long *full, long long *partial_ok, long long *partial_err);
/* CLIENT KILL TYPE replica */
bool repl_client_is_replica(const client *c);
/* CONFIG SET repl-backlog-size: a new, empty backlog of the new size. */
void repl_backlog_resize(void);
/* INFO replication's text into @b (capacity @cap); returns its length. */
size_t repl_info(char *b, size_t cap);

void cmd_sync(client *c);
void cmd_replconf(client *c);
void cmd_wait(client *c);

/* replica.c: REPLICAOF, redis-ckpt as a replica of a Redis primary */
bool repl_is_replica(void);
/* true while a command of the primary's stream runs: keys past their TTL
 * still exist for it (the primary decides when they expire) */
bool repl_applying_primary(void);
void replica_cron(void);
/* Shutdown: a sync from our primary in progress is dropped (its file too). */
void replica_stop_sync(void);
void replica_link_freed(client *c);
/* the primary's client is about to run its parsed command: offset */
void replica_count(client *c);
void replica_getack(void);
size_t replica_info(char *b, size_t cap);
void cmd_replicaof(client *c);
/* rdbcmd.c */
void cmd_dump(client *c);
void cmd_restore(client *c);

#endif
