/*
 * db.h - redis-ckpt's keyspace: every structure here lives in the libckpt
 * heap (allocated with ckpt_alloc()), so that a checkpoint captures the
 * whole database and a restore maps it back at the same address, pointers
 * and all.  Nothing in this file may point outside the heap.
 */
#ifndef REDIS_CKPT_DB_H
#define REDIS_CKPT_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

extern ckpt_heap *g_heap;

/* Heap allocation.  NULL means the heap is full: callers leave every
 * structure consistent and the command gets Redis's OOM reply. */
static inline void *hmalloc(size_t n) { return ckpt_alloc(g_heap, n); }
static inline void *hcalloc(size_t n, size_t sz) { return ckpt_calloc(g_heap, n, sz); }
static inline void *hrealloc(void *p, size_t n) { return ckpt_realloc(g_heap, p, n); }
static inline void hfree(void *p) { ckpt_free(g_heap, p); }

/* A binary-safe string value.  buf is always NUL-terminated (INCR parses it). */
typedef struct hstr {
	uint32_t len;
	char buf[];
} hstr;

hstr *hstr_new(const char *p, size_t len);
/* Replaces *sp's contents with p/len, reusing the block when it fits.
 * Returns false (and leaves *sp untouched) when the heap is full. */
bool hstr_set(hstr **sp, const char *p, size_t len);

enum { T_STRING = 0, T_LIST = 1, T_HASH = 2, T_SET = 3, T_ZSET = 4 };

/* A dict entry; the key is stored inline.  expire/type are used by the main
 * keyspace only (expire -1: none). */
typedef struct dent {
	struct dent *next;
	union {
		void *p;
		double d;
	} v;
	int64_t expire;
	uint32_t type;
	uint32_t klen;
	char key[];
} dent;

/* Chained hash table with Redis-style incremental rehash (two tables). */
typedef struct dict {
	dent **table[2];
	uint64_t size[2]; /* 0 or a power of two */
	uint64_t used[2];
	int64_t rehashidx; /* -1: not rehashing */
} dict;

/* While a checkpoint runs, every page written for the first time costs a
 * trap (a copy of the page), so, like Redis while a fork child lives, tables
 * are not resized unless chains get long (load factor 5): a resize rewrites
 * the whole table.  Process state, not keyspace state. */
extern bool g_dict_resize_ok;
#define DICT_FORCE_RESIZE_RATIO 5

dict *dict_new(void);
void dict_free(dict *d, void (*free_val)(dent *e));
uint64_t dict_size(const dict *d);
dent *dict_find(dict *d, const char *key, size_t klen);
/* Adds a new key (caller checked it is absent).  v, expire, type zeroed /
 * -1.  NULL when the heap is full. */
dent *dict_add_raw(dict *d, const char *key, size_t klen);
/* Unlinks and returns the entry (caller frees value and entry), or NULL. */
dent *dict_unlink(dict *d, const char *key, size_t klen);
void dict_rehash_steps(dict *d, int n);
/* ms of incremental rehash, for the cron. */
void dict_rehash_ms(dict *d, int ms);
/* Shrinks the table when it is mostly empty. */
void dict_maybe_shrink(dict *d);
/* A random entry or NULL when empty. */
dent *dict_random(dict *d);
/* Redis's reverse-binary cursor scan: safe across rehash. */
uint64_t dict_scan(dict *d, uint64_t cursor, void (*fn)(void *arg, dent *e), void *arg);
/* Iterates every entry; fn must not modify the dict. */
void dict_foreach(dict *d, void (*fn)(void *arg, dent *e), void *arg);

/* ------------------------------------------------------------- lists */
typedef struct lnode {
	struct lnode *prev, *next;
	uint32_t len;
	char data[];
} lnode;

typedef struct hlist {
	lnode *head, *tail;
	uint64_t len;
} hlist;

hlist *list_new(void);
void list_free(hlist *l);
bool list_push(hlist *l, const char *p, size_t len, bool head);
lnode *list_index(hlist *l, int64_t idx);
/* Unlinks the head or tail node (caller frees it). */
lnode *list_pop(hlist *l, bool head);
/* A node not linked yet (NULL when the heap is full). */
lnode *lnode_new(const char *p, size_t len);
/* Links n after (or before) at; at NULL: at the tail (after) or head. */
void list_link(hlist *l, lnode *at, lnode *n, bool after);
/* Unlinks n (caller frees or relinks it). */
void list_unlink(hlist *l, lnode *n);

/* ------------------------------------------------------------ sorted sets */
#define ZSKIPLIST_MAXLEVEL 32

typedef struct zsknode {
	dent *ele; /* the member's entry in the zset's dict (holds the name) */
	double score;
	struct zsknode *backward;
	struct zsklevel {
		struct zsknode *forward;
		uint64_t span;
	} level[];
} zsknode;

typedef struct zset {
	dict *d; /* member -> score (v.d); entry also referenced by the skiplist */
	zsknode *header, *tail;
	uint64_t length;
	int level;
} zset;

zset *zset_new(void);
void zset_free(zset *z);
/* Inserts a member not present yet.  false when the heap is full. */
bool zset_insert(zset *z, const char *m, size_t mlen, double score);
/* Changes an existing member's score. */
bool zset_update(zset *z, dent *e, double newscore);
/* Removes an existing member. */
void zset_delete(zset *z, dent *e);
/* 1-based rank of the member, 0 if not found. */
uint64_t zset_rank(zset *z, dent *e);
/* Node at 1-based rank. */
zsknode *zset_by_rank(zset *z, uint64_t rank);

/* ------------------------------------------------------------ keyspace */
#define KS_MAGIC 0x52434b50544b5332ull /* "RCKPTKS2" */
/* The libckpt app tag of every image of this keyspace (the server's heap,
 * and the sync helper's restore of it: a mismatch is CKPT_E_APPTAG).  The
 * keyspace holds no pointers into the binary, so its layout version is the
 * tag: change it with KS_MAGIC. */
#define KS_APP_TAG "redis-ckpt/RCKPTKS2"

typedef struct keyspace {
	uint64_t magic;
	uint64_t seed; /* hash seed: part of the saved data, tables depend on it */
	dict *db;
	/* the names of the keys that have a TTL (the TTL itself is in the db
	 * entry): what the periodic expiry samples, as Redis's expires dict */
	dict *expires;
} keyspace;

extern keyspace *g_ks;

uint64_t hash_key(const char *p, size_t len);

/* Frees a main-keyspace entry's value. */
void free_value(uint32_t type, void *p);

#endif
