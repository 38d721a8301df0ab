/*
 * rdb.h - Redis's RDB file format (version 10, as Redis 7.0 writes it) for
 * redis-ckpt: serialising the keyspace (rdb.c: replication's full sync,
 * `redis-cli --rdb`) and importing a dump.rdb (rdbload.c).  The format was
 * learnt from Redis's documentation and rdb.h; no Redis code is used.
 */
#ifndef REDIS_CKPT_RDB_H
#define REDIS_CKPT_RDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RDB_VERSION 10

/* value types */
enum {
	RDB_TYPE_STRING = 0,
	RDB_TYPE_LIST = 1,
	RDB_TYPE_SET = 2,
	RDB_TYPE_ZSET = 3,
	RDB_TYPE_HASH = 4,
	RDB_TYPE_ZSET_2 = 5,
	RDB_TYPE_HASH_ZIPMAP = 9,
	RDB_TYPE_LIST_ZIPLIST = 10,
	RDB_TYPE_SET_INTSET = 11,
	RDB_TYPE_ZSET_ZIPLIST = 12,
	RDB_TYPE_HASH_ZIPLIST = 13,
	RDB_TYPE_LIST_QUICKLIST = 14,
	RDB_TYPE_STREAM_LISTPACKS = 15,
	RDB_TYPE_HASH_LISTPACK = 16,
	RDB_TYPE_ZSET_LISTPACK = 17,
	RDB_TYPE_LIST_QUICKLIST_2 = 18,
};

/* opcodes */
enum {
	RDB_OPCODE_FUNCTION2 = 245,
	RDB_OPCODE_MODULE_AUX = 247,
	RDB_OPCODE_IDLE = 248,
	RDB_OPCODE_FREQ = 249,
	RDB_OPCODE_AUX = 250,
	RDB_OPCODE_RESIZEDB = 251,
	RDB_OPCODE_EXPIRETIME_MS = 252,
	RDB_OPCODE_EXPIRETIME = 253,
	RDB_OPCODE_SELECTDB = 254,
	RDB_OPCODE_EOF = 255,
};

/* Redis's CRC-64 (Jones polynomial, reflected, no final xor): the RDB
 * trailer and DUMP payloads carry it little-endian. */
uint64_t rdb_crc64(uint64_t crc, const void *p, size_t len);

/* What the writer puts in the header's aux fields besides the constant ones. */
struct rdb_aux {
	const char *replid; /* 40 hex chars, or NULL */
	long long repl_offset;
};

/* Serialises the keyspace g_ks (strings, lists, hashes, sets, zsets, TTLs)
 * as a complete RDB to @fd (a file, pipe or socket; a non-blocking fd is
 * waited for with poll()).  The caller keeps the keyspace still.  @return
 * 0, or a negative errno of the failed write. */
int rdb_write_keyspace(int fd, const struct rdb_aux *aux);

/* Writes all of @p to @fd, waiting with poll() when a non-blocking fd is
 * full.  @return 0 or a negative errno. */
int rdb_write_all(int fd, const void *p, size_t n);

/* DUMP's payload for one value: its RDB type and encoding, the RDB version
 * (2 bytes) and a CRC-64 (8 bytes).  @out is malloc'd.  0 or -ENOMEM. */
int rdb_dump_value(uint32_t type, void *val, char **out, size_t *outlen);

/* RESTORE's side: checks the footer (version <= ours, CRC-64) and builds
 * the value in the heap.  @return 0, -EBADMSG (version or checksum wrong)
 * or -EINVAL (bad data format; -ENOMEM: heap full). */
int rdb_restore_value(const char *p, size_t n, uint32_t *kind, void **val);

/* true if the file at @path starts with the RDB magic "REDIS". */
bool rdb_file_is_rdb(const char *path);

/* Loads the RDB at @path into the (empty) keyspace g_ks.  On failure
 * returns a negative code and @err holds "offset N: reason"; the keyspace
 * may then hold part of the file, and the caller discards it.  Keys in
 * other databases than 0 are refused (redis-ckpt has one database). */
int rdb_load_file(const char *path, char *err, size_t errlen, uint64_t *nkeys);

/* Start-up (server.c): if the file at @path (capacity @cap) is an RDB,
 * @path becomes "PATH.ckpt", the image every checkpoint writes, so the RDB
 * is never overwritten.  @return true when the RDB must be imported (no
 * image yet); then rdb_startup_import() loads it into the fresh keyspace,
 * or logs the offset and reason and exits(1). */
bool rdb_startup_redirect(char *path, size_t cap);
void rdb_startup_import(void);

#endif
