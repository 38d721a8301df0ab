/*
 * db.c - the keyspace's data structures, all in the libckpt heap: strings,
 * the dict (incremental rehash as in Redis), lists and skiplist zsets.
 *
 * Every function that allocates either succeeds or leaves the structure as
 * it was: a full heap turns into an OOM reply, never into a damaged
 * keyspace that the next checkpoint would then preserve.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "db.h"

ckpt_heap *g_heap;
keyspace *g_ks;

/* ------------------------------------------------------------- strings */

hstr *hstr_new(const char *p, size_t len)
{
	hstr *s = hmalloc(sizeof(hstr) + len + 1);
	if (!s)
		return NULL;
	s->len = (uint32_t)len;
	if (len)
		memcpy(s->buf, p, len);
	s->buf[len] = 0;
	return s;
}

bool hstr_set(hstr **sp, const char *p, size_t len)
{
	hstr *s = *sp;
	/* Overwriting in place touches one block instead of two and keeps the
	 * allocator out of the hot SET path. */
	size_t need = sizeof(hstr) + len + 1, have = s ? ckpt_usable_size(g_heap, s) : 0;
	if (s && have >= need && have <= 2 * need + 64) { /* ...but do not pin a big block */
		s->len = (uint32_t)len;
		memmove(s->buf, p, len);
		s->buf[len] = 0;
		return true;
	}
	hstr *n = hstr_new(p, len);
	if (!n)
		return false;
	hfree(s);
	*sp = n;
	return true;
}

uint64_t hash_key(const char *p, size_t len)
{
	return XXH3_64bits_withSeed(p, len, g_ks->seed);
}

/* ---------------------------------------------------------------- dict */

dict *dict_new(void)
{
	dict *d = hcalloc(1, sizeof(*d));
	if (d)
		d->rehashidx = -1;
	return d;
}

uint64_t dict_size(const dict *d)
{
	return d->used[0] + d->used[1];
}

static bool dict_rehashing(const dict *d)
{
	return d->rehashidx != -1;
}

/* Moves up to n buckets from table 0 to table 1 (visiting at most 10n empty
 * buckets so that one call stays short). */
void dict_rehash_steps(dict *d, int n)
{
	int empty = n * 10;
	if (!dict_rehashing(d))
		return;
	while (n-- && d->used[0]) {
		while (d->table[0][d->rehashidx] == NULL) {
			d->rehashidx++;
			if (--empty == 0)
				return;
		}
		dent *e = d->table[0][d->rehashidx];
		while (e) {
			dent *next = e->next;
			uint64_t h = hash_key(e->key, e->klen) & (d->size[1] - 1);
			e->next = d->table[1][h];
			d->table[1][h] = e;
			d->used[0]--;
			d->used[1]++;
			e = next;
		}
		d->table[0][d->rehashidx] = NULL;
		d->rehashidx++;
	}
	if (d->used[0] == 0) {
		hfree(d->table[0]);
		d->table[0] = d->table[1];
		d->size[0] = d->size[1];
		d->used[0] = d->used[1];
		d->table[1] = NULL;
		d->size[1] = 0;
		d->used[1] = 0;
		d->rehashidx = -1;
	}
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void dict_rehash_ms(dict *d, int ms)
{
	uint64_t end = now_us() + (uint64_t)ms * 1000u;
	while (dict_rehashing(d)) {
		dict_rehash_steps(d, 100);
		if (now_us() >= end)
			break;
	}
}

/* Starts a rehash into a table of newsize buckets.  A failed allocation
 * just means we keep the current table (longer chains, still correct). */
static void dict_resize(dict *d, uint64_t newsize)
{
	uint64_t sz = 4;
	while (sz < newsize)
		sz <<= 1;
	if (dict_rehashing(d) || sz == d->size[0])
		return;
	dent **t = hcalloc(sz, sizeof(dent *));
	if (!t)
		return;
	if (d->table[0] == NULL) {
		d->table[0] = t;
		d->size[0] = sz;
		return;
	}
	d->table[1] = t;
	d->size[1] = sz;
	d->used[1] = 0;
	d->rehashidx = 0;
}

dent *dict_find(dict *d, const char *key, size_t klen)
{
	if (dict_size(d) == 0)
		return NULL;
	if (dict_rehashing(d))
		dict_rehash_steps(d, 1);
	uint64_t h = hash_key(key, klen);
	for (int t = 0; t <= 1; t++) {
		if (!d->table[t])
			break;
		for (dent *e = d->table[t][h & (d->size[t] - 1)]; e; e = e->next)
			if (e->klen == klen && memcmp(e->key, key, klen) == 0)
				return e;
		if (!dict_rehashing(d))
			break;
	}
	return NULL;
}

bool g_dict_resize_ok = true;

dent *dict_add_raw(dict *d, const char *key, size_t klen)
{
	if (dict_rehashing(d))
		dict_rehash_steps(d, 1);
	else if (d->used[0] >= d->size[0] &&
		 (g_dict_resize_ok || d->used[0] >= d->size[0] * DICT_FORCE_RESIZE_RATIO || !d->table[0]))
		dict_resize(d, d->used[0] * 2);
	if (!d->table[0])
		return NULL; /* could not even allocate the first table */
	dent *e = hmalloc(sizeof(dent) + klen + 1);
	if (!e)
		return NULL;
	memcpy(e->key, key, klen);
	e->key[klen] = 0;
	e->klen = (uint32_t)klen;
	e->v.p = NULL;
	e->expire = -1;
	e->type = 0;
	int t = dict_rehashing(d) ? 1 : 0;
	uint64_t h = hash_key(key, klen) & (d->size[t] - 1);
	e->next = d->table[t][h];
	d->table[t][h] = e;
	d->used[t]++;
	return e;
}

dent *dict_unlink(dict *d, const char *key, size_t klen)
{
	if (dict_size(d) == 0)
		return NULL;
	if (dict_rehashing(d))
		dict_rehash_steps(d, 1);
	uint64_t h = hash_key(key, klen);
	for (int t = 0; t <= 1; t++) {
		if (!d->table[t])
			break;
		dent **pp = &d->table[t][h & (d->size[t] - 1)];
		for (dent *e = *pp; e; pp = &e->next, e = e->next) {
			if (e->klen == klen && memcmp(e->key, key, klen) == 0) {
				*pp = e->next;
				d->used[t]--;
				return e;
			}
		}
		if (!dict_rehashing(d))
			break;
	}
	return NULL;
}

void dict_maybe_shrink(dict *d)
{
	uint64_t used = dict_size(d);
	if (g_dict_resize_ok && !dict_rehashing(d) && d->size[0] > 4 && used * 10 < d->size[0])
		dict_resize(d, used ? used : 4);
}

void dict_free(dict *d, void (*free_val)(dent *e))
{
	if (!d)
		return;
	for (int t = 0; t <= 1; t++) {
		for (uint64_t i = 0; d->table[t] && i < d->size[t]; i++) {
			dent *e = d->table[t][i];
			while (e) {
				dent *next = e->next;
				if (free_val)
					free_val(e);
				hfree(e);
				e = next;
			}
		}
		hfree(d->table[t]);
	}
	hfree(d);
}

dent *dict_random(dict *d)
{
	if (dict_size(d) == 0)
		return NULL;
	if (dict_rehashing(d))
		dict_rehash_steps(d, 1);
	dent *he;
	if (dict_rehashing(d)) {
		/* buckets below rehashidx in table 0 are empty */
		do {
			uint64_t r = (uint64_t)d->rehashidx +
				     (uint64_t)random() % (d->size[0] + d->size[1] - (uint64_t)d->rehashidx);
			he = r >= d->size[0] ? d->table[1][r - d->size[0]] : d->table[0][r];
		} while (!he);
	} else {
		do {
			he = d->table[0][(uint64_t)random() & (d->size[0] - 1)];
		} while (!he);
	}
	int len = 0;
	for (dent *e = he; e; e = e->next)
		len++;
	int k = (int)(random() % len);
	while (k--)
		he = he->next;
	return he;
}

static uint64_t revbits(uint64_t v)
{
	v = ((v >> 1) & 0x5555555555555555ull) | ((v & 0x5555555555555555ull) << 1);
	v = ((v >> 2) & 0x3333333333333333ull) | ((v & 0x3333333333333333ull) << 2);
	v = ((v >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((v & 0x0F0F0F0F0F0F0F0Full) << 4);
	return __builtin_bswap64(v);
}

static void scan_bucket(dent *e, void (*fn)(void *, dent *), void *arg)
{
	while (e) {
		dent *next = e->next; /* fn may delete e (expired keys) */
		fn(arg, e);
		e = next;
	}
}

uint64_t dict_scan(dict *d, uint64_t v, void (*fn)(void *arg, dent *e), void *arg)
{
	if (dict_size(d) == 0)
		return 0;
	if (!dict_rehashing(d)) {
		uint64_t m0 = d->size[0] - 1;
		scan_bucket(d->table[0][v & m0], fn, arg);
		v |= ~m0;
		v = revbits(v);
		v++;
		v = revbits(v);
		return v;
	}
	int small = d->size[0] <= d->size[1] ? 0 : 1, big = 1 - small;
	uint64_t m0 = d->size[small] - 1, m1 = d->size[big] - 1;
	scan_bucket(d->table[small][v & m0], fn, arg);
	/* then every bucket of the larger table that expands that bucket */
	do {
		scan_bucket(d->table[big][v & m1], fn, arg);
		v |= ~m1;
		v = revbits(v);
		v++;
		v = revbits(v);
	} while (v & (m0 ^ m1));
	return v;
}

void dict_foreach(dict *d, void (*fn)(void *arg, dent *e), void *arg)
{
	for (int t = 0; t <= 1; t++)
		for (uint64_t i = 0; d->table[t] && i < d->size[t]; i++)
			scan_bucket(d->table[t][i], fn, arg);
}

/* --------------------------------------------------------------- lists */

hlist *list_new(void)
{
	return hcalloc(1, sizeof(hlist));
}

void list_free(hlist *l)
{
	if (!l)
		return;
	lnode *n = l->head;
	while (n) {
		lnode *next = n->next;
		hfree(n);
		n = next;
	}
	hfree(l);
}

bool list_push(hlist *l, const char *p, size_t len, bool head)
{
	lnode *n = lnode_new(p, len);
	if (!n)
		return false;
	list_link(l, NULL, n, !head);
	return true;
}

lnode *list_index(hlist *l, int64_t idx)
{
	if (idx < 0)
		idx += (int64_t)l->len;
	if (idx < 0 || idx >= (int64_t)l->len)
		return NULL;
	lnode *n;
	if ((uint64_t)idx < l->len / 2) {
		n = l->head;
		while (idx--)
			n = n->next;
	} else {
		n = l->tail;
		for (int64_t i = (int64_t)l->len - 1; i > idx; i--)
			n = n->prev;
	}
	return n;
}

lnode *list_pop(hlist *l, bool head)
{
	lnode *n = head ? l->head : l->tail;
	if (n)
		list_unlink(l, n);
	return n;
}

lnode *lnode_new(const char *p, size_t len)
{
	lnode *n = hmalloc(sizeof(lnode) + len);
	if (n) {
		n->len = (uint32_t)len;
		memcpy(n->data, p, len);
	}
	return n;
}

void list_link(hlist *l, lnode *at, lnode *n, bool after)
{
	if (!at) { /* an end of the list: after == the tail */
		at = after ? l->tail : l->head;
		if (!at) {
			n->prev = n->next = NULL;
			l->head = l->tail = n;
			l->len++;
			return;
		}
	}
	if (after) {
		n->prev = at;
		n->next = at->next;
		if (at->next)
			at->next->prev = n;
		else
			l->tail = n;
		at->next = n;
	} else {
		n->next = at;
		n->prev = at->prev;
		if (at->prev)
			at->prev->next = n;
		else
			l->head = n;
		at->prev = n;
	}
	l->len++;
}

void list_unlink(hlist *l, lnode *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		l->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		l->tail = n->prev;
	l->len--;
}

/* ----------------------------------------------------------- skiplist */

static zsknode *zsl_node(int level, double score, dent *ele)
{
	zsknode *n = hcalloc(1, sizeof(zsknode) + (size_t)level * sizeof(struct zsklevel));
	if (n) {
		n->score = score;
		n->ele = ele;
	}
	return n;
}

zset *zset_new(void)
{
	zset *z = hcalloc(1, sizeof(zset));
	if (!z)
		return NULL;
	z->d = dict_new();
	z->header = zsl_node(ZSKIPLIST_MAXLEVEL, 0, NULL);
	if (!z->d || !z->header) {
		hfree(z->d);
		hfree(z->header);
		hfree(z);
		return NULL;
	}
	z->level = 1;
	return z;
}

void zset_free(zset *z)
{
	if (!z)
		return;
	zsknode *n = z->header->level[0].forward;
	while (n) {
		zsknode *next = n->level[0].forward;
		hfree(n);
		n = next;
	}
	hfree(z->header);
	dict_free(z->d, NULL);
	hfree(z);
}

static int zsl_random_level(void)
{
	int level = 1;
	while ((random() & 0xFFFF) < (int)(0.25 * 0xFFFF) && level < ZSKIPLIST_MAXLEVEL)
		level++;
	return level;
}

/* Member order for equal scores: binary comparison of the names. */
static int zcmp(const dent *a, const dent *b)
{
	size_t l = a->klen < b->klen ? a->klen : b->klen;
	int c = memcmp(a->key, b->key, l);
	if (c)
		return c;
	return a->klen < b->klen ? -1 : a->klen > b->klen;
}

static bool zless(const zsknode *n, double score, const dent *ele)
{
	return n->score < score || (n->score == score && zcmp(n->ele, ele) < 0);
}

static bool zsl_insert_node(zset *z, double score, dent *ele)
{
	zsknode *update[ZSKIPLIST_MAXLEVEL], *x = z->header;
	uint64_t rank[ZSKIPLIST_MAXLEVEL];
	for (int i = z->level - 1; i >= 0; i--) {
		rank[i] = i == z->level - 1 ? 0 : rank[i + 1];
		while (x->level[i].forward && zless(x->level[i].forward, score, ele)) {
			rank[i] += x->level[i].span;
			x = x->level[i].forward;
		}
		update[i] = x;
	}
	int level = zsl_random_level();
	zsknode *n = zsl_node(level, score, ele);
	if (!n)
		return false;
	if (level > z->level) {
		for (int i = z->level; i < level; i++) {
			rank[i] = 0;
			update[i] = z->header;
			update[i]->level[i].span = z->length;
		}
		z->level = level;
	}
	for (int i = 0; i < level; i++) {
		n->level[i].forward = update[i]->level[i].forward;
		update[i]->level[i].forward = n;
		n->level[i].span = update[i]->level[i].span - (rank[0] - rank[i]);
		update[i]->level[i].span = (rank[0] - rank[i]) + 1;
	}
	for (int i = level; i < z->level; i++)
		update[i]->level[i].span++;
	n->backward = update[0] == z->header ? NULL : update[0];
	if (n->level[0].forward)
		n->level[0].forward->backward = n;
	else
		z->tail = n;
	z->length++;
	return true;
}

/* Unlinks the node for (score, ele) and returns it. */
static zsknode *zsl_unlink(zset *z, double score, dent *ele)
{
	zsknode *update[ZSKIPLIST_MAXLEVEL], *x = z->header;
	for (int i = z->level - 1; i >= 0; i--) {
		while (x->level[i].forward && zless(x->level[i].forward, score, ele))
			x = x->level[i].forward;
		update[i] = x;
	}
	x = x->level[0].forward;
	if (!x || x->ele != ele)
		return NULL;
	for (int i = 0; i < z->level; i++) {
		if (update[i]->level[i].forward == x) {
			update[i]->level[i].span += x->level[i].span - 1;
			update[i]->level[i].forward = x->level[i].forward;
		} else {
			update[i]->level[i].span -= 1;
		}
	}
	if (x->level[0].forward)
		x->level[0].forward->backward = x->backward;
	else
		z->tail = x->backward;
	while (z->level > 1 && z->header->level[z->level - 1].forward == NULL)
		z->level--;
	z->length--;
	return x;
}

bool zset_insert(zset *z, const char *m, size_t mlen, double score)
{
	dent *e = dict_add_raw(z->d, m, mlen);
	if (!e)
		return false;
	e->v.d = score;
	if (!zsl_insert_node(z, score, e)) {
		hfree(dict_unlink(z->d, m, mlen));
		return false;
	}
	return true;
}

bool zset_update(zset *z, dent *e, double newscore)
{
	zsknode *x = zsl_unlink(z, e->v.d, e);
	/* Re-inserting reuses no memory, so free first: the allocation below
	 * then cannot fail for lack of the block we just gave back. */
	hfree(x);
	if (!zsl_insert_node(z, newscore, e)) {
		/* cannot happen in practice (we just freed a node at least as
		 * large as most); fall back to the old score */
		if (!zsl_insert_node(z, e->v.d, e)) {
			hfree(dict_unlink(z->d, e->key, e->klen));
		}
		return false;
	}
	e->v.d = newscore;
	return true;
}

void zset_delete(zset *z, dent *e)
{
	hfree(zsl_unlink(z, e->v.d, e));
	hfree(dict_unlink(z->d, e->key, e->klen));
}

uint64_t zset_rank(zset *z, dent *ele)
{
	zsknode *x = z->header;
	uint64_t rank = 0;
	for (int i = z->level - 1; i >= 0; i--) {
		while (x->level[i].forward &&
		       (zless(x->level[i].forward, ele->v.d, ele) || x->level[i].forward->ele == ele)) {
			rank += x->level[i].span;
			x = x->level[i].forward;
		}
		if (x->ele == ele)
			return rank;
	}
	return 0;
}

zsknode *zset_by_rank(zset *z, uint64_t rank)
{
	zsknode *x = z->header;
	uint64_t traversed = 0;
	for (int i = z->level - 1; i >= 0; i--) {
		while (x->level[i].forward && traversed + x->level[i].span <= rank) {
			traversed += x->level[i].span;
			x = x->level[i].forward;
		}
		if (traversed == rank)
			return x;
	}
	return NULL;
}

/* ------------------------------------------------------------ values */

static void free_hash_val(dent *e)
{
	hfree(e->v.p);
}

void free_value(uint32_t type, void *p)
{
	switch (type) {
	case T_STRING: hfree(p); break;
	case T_LIST: list_free(p); break;
	case T_HASH: dict_free(p, free_hash_val); break;
	case T_SET: dict_free(p, NULL); break;
	case T_ZSET: zset_free(p); break;
	}
}
