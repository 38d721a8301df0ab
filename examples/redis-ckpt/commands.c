/*
 * commands.c - the Redis commands redis-ckpt supports, over the in-heap
 * keyspace of db.c.  Replies are byte-compatible with Redis 7.0 (the tests
 * compare them with a real redis-server).
 *
 * Rule for every write: allocate first, then link.  When the libckpt heap is
 * full an allocation returns NULL; the command then replies Redis's OOM
 * error and leaves the keyspace consistent (a checkpoint may be taken at
 * any moment between two commands).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "repl.h"
#include "server.h"

#define ARG(i) (c->argv[i])
#define ALEN(i) (c->argvlen[i])

static const char *const WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value";
static const char *const NOTINT = "ERR value is not an integer or out of range";
static const char *const NOTFLOAT = "ERR value is not a valid float";
static const char *const SYNTAX = "ERR syntax error";
static const char *const OVERFLOW = "ERR increment or decrement would overflow";
static const char *const OUTOFRANGE = "ERR value is out of range, must be positive";

static bool argis(client *c, int i, const char *s)
{
	return strcasecmp(ARG(i), s) == 0 && strlen(s) == ALEN(i);
}

static bool get_ll(client *c, int i, long long *v, const char *err)
{
	if (!parse_ll(ARG(i), ALEN(i), v)) {
		add_reply_error(c, err ? err : NOTINT);
		return false;
	}
	return true;
}

static bool parse_double(const char *s, size_t len, double *out)
{
	if (len == 0 || len > 5000 || isspace((unsigned char)s[0]))
		return false;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if ((size_t)(end - s) != len || isnan(v) || (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL || v == 0)))
		return false;
	*out = v;
	return true;
}

static bool get_double(client *c, int i, double *v)
{
	if (!parse_double(ARG(i), ALEN(i), v)) {
		add_reply_error(c, NOTFLOAT);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------- glob */

static bool glob_match(const char *p, size_t plen, const char *s, size_t slen, bool nocase)
{
	while (plen && slen) {
		switch (p[0]) {
		case '*':
			while (plen > 1 && p[1] == '*') {
				p++;
				plen--;
			}
			if (plen == 1)
				return true;
			while (slen) {
				if (glob_match(p + 1, plen - 1, s, slen, nocase))
					return true;
				s++;
				slen--;
			}
			return glob_match(p + 1, plen - 1, s, 0, nocase);
		case '?':
			s++;
			slen--;
			break;
		case '[': {
			p++;
			plen--;
			bool neg = plen && p[0] == '^';
			if (neg) {
				p++;
				plen--;
			}
			bool match = false;
			while (plen && p[0] != ']') {
				if (p[0] == '\\' && plen >= 2) {
					p++;
					plen--;
					if (p[0] == s[0])
						match = true;
				} else if (plen >= 3 && p[1] == '-') {
					int a = (unsigned char)p[0], b = (unsigned char)p[2], ch = (unsigned char)s[0];
					if (a > b) {
						int t = a;
						a = b;
						b = t;
					}
					if (nocase) {
						a = tolower(a);
						b = tolower(b);
						ch = tolower(ch);
					}
					if (ch >= a && ch <= b)
						match = true;
					p += 2;
					plen -= 2;
				} else if (nocase ? tolower((unsigned char)p[0]) == tolower((unsigned char)s[0])
						  : p[0] == s[0]) {
					match = true;
				}
				p++;
				plen--;
			}
			if (neg)
				match = !match;
			if (!match)
				return false;
			s++;
			slen--;
			if (plen == 0)
				return slen == 0; /* unterminated class ends the pattern */
			break;
		}
		case '\\':
			if (plen >= 2) {
				p++;
				plen--;
			}
			/* fall through */
		default:
			if (nocase ? tolower((unsigned char)p[0]) != tolower((unsigned char)s[0]) : p[0] != s[0])
				return false;
			s++;
			slen--;
			break;
		}
		p++;
		plen--;
		if (slen == 0) {
			while (plen && p[0] == '*') {
				p++;
				plen--;
			}
			break;
		}
	}
	return plen == 0 && slen == 0;
}

/* ------------------------------------------------------------- keyspace */

void keyspace_init_fresh(void)
{
	keyspace *ks = hcalloc(1, sizeof(*ks));
	if (!ks)
		return;
	ks->magic = KS_MAGIC;
	ks->seed = ((uint64_t)random() << 32) ^ (uint64_t)random() ^ (uint64_t)mstime();
	g_ks = ks; /* hash_key() reads the seed */
	ks->db = dict_new();
	ks->expires = dict_new();
	if (!ks->db || !ks->expires) {
		hfree(ks->db);
		hfree(ks->expires);
		hfree(ks);
		g_ks = NULL;
		return;
	}
	ckpt_root_set(g_heap, ks);
}

/* The expires set: idempotent add (false only when the heap is full) and
 * remove. */
static bool expires_add(const char *key, size_t klen)
{
	return dict_find(g_ks->expires, key, klen) || dict_add_raw(g_ks->expires, key, klen);
}

static void expires_del(const char *key, size_t klen)
{
	hfree(dict_unlink(g_ks->expires, key, klen));
}

void delete_entry(dent *e)
{
	dent *u = dict_unlink(g_ks->db, e->key, e->klen);
	if (!u)
		return;
	if (u->expire != -1)
		expires_del(u->key, u->klen);
	free_value(u->type, u->v.p);
	hfree(u);
}

static bool expired(const dent *e)
{
	return e->expire != -1 && e->expire <= g_now_ms;
}

/* Deletes an expired entry.  As in Redis, that is a change for WATCH
 * (the name is copied first: the entry holding it is freed). */
static void delete_expired(dent *e)
{
	size_t len = e->klen;
	char *copy = watch_active() ? malloc(len + 1) : NULL;
	if (copy)
		memcpy(copy, e->key, len);
	delete_entry(e);
	g_srv.stat_expired++;
	if (copy) {
		signal_modified_key(copy, len);
		free(copy);
	}
}

dent *lookup_key(const char *key, size_t klen)
{
	dent *e = dict_find(g_ks->db, key, klen);
	if (e && expired(e)) {
		if (repl_is_replica()) /* hidden from clients; the primary's DEL removes it */
			return repl_applying_primary() ? e : NULL;
		repl_propagate_expired(e->key, e->klen);
		delete_expired(e);
		return NULL;
	}
	return e;
}

bool key_exists(const char *key, size_t klen)
{
	return dict_find(g_ks->db, key, klen) != NULL;
}

bool key_is_expired(const char *key, size_t klen)
{
	dent *e = dict_find(g_ks->db, key, klen);
	return e && expired(e);
}

bool delete_key(const char *key, size_t klen)
{
	dent *e = lookup_key(key, klen);
	if (!e)
		return false;
	delete_entry(e);
	return true;
}

/* Looks up a key that must hold @type; on a type mismatch replies
 * WRONGTYPE and sets *wrong. */
static dent *lookup_typed(client *c, int i, uint32_t type, bool *wrong)
{
	*wrong = false;
	dent *e = lookup_key(ARG(i), ALEN(i));
	if (e && e->type != type) {
		add_reply_error(c, WRONGTYPE);
		*wrong = true;
		return NULL;
	}
	return e;
}

static dent *db_add(const char *key, size_t klen, uint32_t type, void *val)
{
	dent *e = dict_add_raw(g_ks->db, key, klen);
	if (!e)
		return NULL;
	e->type = type;
	e->v.p = val;
	return e;
}

/* Sets or clears (-1) a key's TTL.  false when the heap is full (nothing
 * changed); clearing never fails. */
static bool set_expire(dent *e, long long when)
{
	if (e->expire == -1 && when != -1) {
		if (!expires_add(e->key, e->klen))
			return false;
	} else if (e->expire != -1 && when == -1) {
		expires_del(e->key, e->klen);
	}
	e->expire = when;
	return true;
}

static void *new_container(uint32_t type)
{
	switch (type) {
	case T_LIST: return list_new();
	case T_HASH:
	case T_SET: return dict_new();
	case T_ZSET: return zset_new();
	}
	return NULL;
}

/* Finds or creates a container key.  NULL with a reply sent on error. */
static dent *lookup_or_create(client *c, int i, uint32_t type)
{
	bool wrong;
	dent *e = lookup_typed(c, i, type, &wrong);
	if (wrong)
		return NULL;
	if (e)
		return e;
	void *v = new_container(type);
	if (v)
		e = db_add(ARG(i), ALEN(i), type, v);
	if (!e) {
		if (v)
			free_value(type, v);
		add_reply_oom(c);
	}
	return e;
}

static bool container_empty(dent *e)
{
	switch (e->type) {
	case T_LIST: return ((hlist *)e->v.p)->len == 0;
	case T_HASH:
	case T_SET: return dict_size(e->v.p) == 0;
	case T_ZSET: return ((zset *)e->v.p)->length == 0;
	}
	return false;
}

static void delete_if_empty(dent *e)
{
	if (container_empty(e))
		delete_entry(e);
}

/* Periodic expiry, as Redis's active expire cycle: sample 20 keys of the
 * expires set, delete the expired ones, and go on while more than a quarter
 * of a sample had expired and the time budget lasts.  Lazy expiry in
 * lookup_key() catches the rest. */
void active_expire_cycle(int budget_us)
{
	if (dict_size(g_ks->expires) == 0)
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	long long deadline = (long long)tv.tv_sec * 1000000 + tv.tv_usec + budget_us;
	int sampled, found;
	do {
		sampled = found = 0;
		for (int i = 0; i < 20 && dict_size(g_ks->expires); i++) {
			dent *x = dict_random(g_ks->expires);
			dent *e = dict_find(g_ks->db, x->key, x->klen);
			if (!e || e->expire == -1) {
				expires_del(x->key, x->klen); /* cannot happen: keep the set exact */
				continue;
			}
			sampled++;
			if (expired(e)) {
				repl_propagate_expired(e->key, e->klen);
				delete_expired(e);
				found++;
				g_srv.dirty++;
			}
		}
		gettimeofday(&tv, NULL);
	} while (found > sampled / 4 && sampled && (long long)tv.tv_sec * 1000000 + tv.tv_usec < deadline);
	dict_maybe_shrink(g_ks->expires);
}

static void free_main_val(dent *e)
{
	free_value(e->type, e->v.p);
}

/* ------------------------------------------------------------- strings */

static void cmd_get(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	if (!e) {
		g_srv.stat_keyspace_misses++;
		add_reply_nil(c);
		return;
	}
	g_srv.stat_keyspace_hits++;
	hstr *s = e->v.p;
	add_reply_bulk(c, s->buf, s->len);
}

/* Stores a string under key (replacing any value; TTL dropped unless
 * keepttl).  false when the heap is full (nothing changed). */
static bool set_string(const char *key, size_t klen, const char *val, size_t vlen, bool keepttl, dent **out)
{
	dent *e = lookup_key(key, klen);
	if (e && e->type == T_STRING) {
		hstr *s = e->v.p;
		if (!hstr_set(&s, val, vlen))
			return false;
		e->v.p = s;
	} else if (e) {
		hstr *s = hstr_new(val, vlen);
		if (!s)
			return false;
		free_value(e->type, e->v.p);
		e->type = T_STRING;
		e->v.p = s;
	} else {
		hstr *s = hstr_new(val, vlen);
		if (!s)
			return false;
		e = db_add(key, klen, T_STRING, s);
		if (!e) {
			hfree(s);
			return false;
		}
	}
	if (!keepttl)
		set_expire(e, -1);
	if (out)
		*out = e;
	return true;
}

#define SET_NX 1
#define SET_XX 2
#define SET_GET 4
#define SET_KEEPTTL 8

static void set_generic(client *c, int flags, long long when, int keyi, int vali)
{
	dent *e = lookup_key(ARG(keyi), ALEN(keyi));
	if ((flags & SET_GET) && e && e->type != T_STRING) {
		add_reply_error(c, WRONGTYPE);
		return;
	}
	/* GET: the old value goes out only if the command succeeds, and the
	 * value block may be reused by the write: copy it first */
	char *old = NULL;
	size_t oldlen = 0;
	if ((flags & SET_GET) && e) {
		hstr *s = e->v.p;
		oldlen = s->len;
		old = malloc(oldlen + 1);
		if (!old) {
			add_reply_error(c, "ERR out of memory");
			return;
		}
		memcpy(old, s->buf, oldlen);
	}
	if (((flags & SET_NX) && e) || ((flags & SET_XX) && !e)) {
		if (old)
			add_reply_bulk(c, old, oldlen);
		else
			add_reply_nil(c);
		free(old);
		return;
	}
	/* with a TTL, the expires set gets the name first: past this point
	 * nothing can fail halfway (the value set, its TTL not) */
	bool added = false;
	if (when != -1) {
		added = !dict_find(g_ks->expires, ARG(keyi), ALEN(keyi));
		if (added && !expires_add(ARG(keyi), ALEN(keyi))) {
			free(old);
			add_reply_oom(c);
			return;
		}
	}
	dent *ne;
	if (!set_string(ARG(keyi), ALEN(keyi), ARG(vali), ALEN(vali), (flags & SET_KEEPTTL) || when != -1, &ne)) {
		if (added)
			expires_del(ARG(keyi), ALEN(keyi));
		free(old);
		add_reply_oom(c);
		return;
	}
	if (when != -1)
		set_expire(ne, when); /* the name is in the set: cannot fail */
	g_srv.dirty++;
	if (!(flags & SET_GET))
		add_reply_ok(c);
	else if (old)
		add_reply_bulk(c, old, oldlen);
	else
		add_reply_nil(c);
	free(old);
}

static void cmd_set(client *c)
{
	int flags = 0;
	long long when = -1;
	bool have_exp = false;
	for (int i = 3; i < c->argc; i++) {
		bool next = i + 1 < c->argc;
		if (argis(c, i, "nx") && !(flags & SET_XX)) {
			flags |= SET_NX;
		} else if (argis(c, i, "xx") && !(flags & SET_NX)) {
			flags |= SET_XX;
		} else if (argis(c, i, "get")) {
			flags |= SET_GET;
		} else if (argis(c, i, "keepttl") && !have_exp) {
			flags |= SET_KEEPTTL;
		} else if ((argis(c, i, "ex") || argis(c, i, "px") || argis(c, i, "exat") || argis(c, i, "pxat")) &&
			   next && !have_exp && !(flags & SET_KEEPTTL)) {
			long long v;
			if (!get_ll(c, i + 1, &v, NULL))
				return;
			bool sec = argis(c, i, "ex") || argis(c, i, "exat");
			bool abs = argis(c, i, "exat") || argis(c, i, "pxat");
			if (v <= 0 || (sec && v > LLONG_MAX / 1000)) {
				add_reply_error(c, "ERR invalid expire time in 'set' command");
				return;
			}
			if (sec)
				v *= 1000;
			if (!abs) {
				if (v > LLONG_MAX - g_now_ms) {
					add_reply_error(c, "ERR invalid expire time in 'set' command");
					return;
				}
				v += g_now_ms;
			}
			when = v;
			have_exp = true;
			i++;
		} else {
			add_reply_error(c, SYNTAX);
			return;
		}
	}
	set_generic(c, flags, when, 1, 2);
}

static void cmd_setnx(client *c)
{
	if (lookup_key(ARG(1), ALEN(1))) {
		add_reply_int(c, 0);
		return;
	}
	if (!set_string(ARG(1), ALEN(1), ARG(2), ALEN(2), false, NULL)) {
		add_reply_oom(c);
		return;
	}
	g_srv.dirty++;
	add_reply_int(c, 1);
}

static void cmd_getset(client *c)
{
	set_generic(c, SET_GET, -1, 1, 2);
}

static void cmd_mget(client *c)
{
	add_reply_array(c, c->argc - 1);
	for (int i = 1; i < c->argc; i++) {
		dent *e = lookup_key(ARG(i), ALEN(i));
		if (!e || e->type != T_STRING) {
			add_reply_nil(c);
		} else {
			hstr *s = e->v.p;
			add_reply_bulk(c, s->buf, s->len);
		}
	}
}

static void cmd_mset(client *c)
{
	if (c->argc % 2 == 0) {
		add_reply_error(c, "ERR wrong number of arguments for 'mset' command");
		return;
	}
	for (int i = 1; i < c->argc; i += 2) {
		if (!set_string(ARG(i), ALEN(i), ARG(i + 1), ALEN(i + 1), false, NULL)) {
			add_reply_oom(c);
			return;
		}
		g_srv.dirty++;
	}
	add_reply_ok(c);
}

/* INCRBY / HINCRBY: the stored integer (0 when @s is NULL) plus @by, or
 * the error reply Redis gives (not an integer, overflow). */
static bool incr_checked(client *c, const hstr *s, long long by, const char *notint, long long *out)
{
	long long v = 0;
	if (s && !parse_ll(s->buf, s->len, &v)) {
		add_reply_error(c, notint);
		return false;
	}
	if ((by < 0 && v < 0 && by < LLONG_MIN - v) || (by > 0 && v > 0 && by > LLONG_MAX - v)) {
		add_reply_error(c, OVERFLOW);
		return false;
	}
	*out = v + by;
	return true;
}

static void incr_generic(client *c, long long by)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	long long v;
	if (!incr_checked(c, e ? e->v.p : NULL, by, NOTINT, &v))
		return;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%lld", v);
	if (e) {
		hstr *s = e->v.p;
		if (!hstr_set(&s, buf, (size_t)n)) {
			add_reply_oom(c);
			return;
		}
		e->v.p = s;
	} else if (!set_string(ARG(1), ALEN(1), buf, (size_t)n, false, NULL)) {
		add_reply_oom(c);
		return;
	}
	g_srv.dirty++;
	add_reply_int(c, v);
}

static void cmd_incr(client *c) { incr_generic(c, 1); }
static void cmd_decr(client *c) { incr_generic(c, -1); }

static void cmd_incrby(client *c)
{
	long long by;
	if (get_ll(c, 2, &by, NULL))
		incr_generic(c, by);
}

static void cmd_decrby(client *c)
{
	long long by;
	if (!get_ll(c, 2, &by, NULL))
		return;
	if (by == LLONG_MIN) {
		add_reply_error(c, "ERR decrement would overflow");
		return;
	}
	incr_generic(c, -by);
}

static void cmd_append(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	if (!e) {
		if (!set_string(ARG(1), ALEN(1), ARG(2), ALEN(2), false, NULL)) {
			add_reply_oom(c);
			return;
		}
		g_srv.dirty++;
		add_reply_int(c, (long long)ALEN(2));
		return;
	}
	hstr *s = e->v.p;
	size_t nl = s->len + ALEN(2);
	if (nl > (size_t)PROTO_MAX_BULK_LEN) {
		add_reply_error(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
		return;
	}
	hstr *n = hrealloc(s, sizeof(hstr) + nl + 1);
	if (!n) {
		add_reply_oom(c);
		return;
	}
	memcpy(n->buf + n->len, ARG(2), ALEN(2));
	n->len = (uint32_t)nl;
	n->buf[nl] = 0;
	e->v.p = n;
	g_srv.dirty++;
	add_reply_int(c, (long long)nl);
}

static void cmd_strlen(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	add_reply_int(c, e ? ((hstr *)e->v.p)->len : 0);
}

/* SETEX key seconds value, PSETEX key milliseconds value */
static void setex_generic(client *c, bool seconds)
{
	long long v;
	if (!get_ll(c, 2, &v, NULL))
		return;
	if (v <= 0 || (seconds && v > LLONG_MAX / 1000) || (seconds ? v * 1000 : v) > LLONG_MAX - g_now_ms) {
		add_reply_errorf(c, "ERR invalid expire time in '%s' command", seconds ? "setex" : "psetex");
		return;
	}
	set_generic(c, 0, (seconds ? v * 1000 : v) + g_now_ms, 1, 3);
}

static void cmd_setex(client *c) { setex_generic(c, true); }
static void cmd_psetex(client *c) { setex_generic(c, false); }

static void cmd_getdel(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	if (!e) {
		add_reply_nil(c);
		return;
	}
	hstr *s = e->v.p;
	add_reply_bulk(c, s->buf, s->len);
	delete_entry(e);
	g_srv.dirty++;
}

/* An expiry option of GETEX (EX PX EXAT PXAT PERSIST) parsed from argv[i..]:
 * *when is the absolute ms time, -1 for PERSIST, -2 for none.  Like Redis,
 * every option is checked for syntax before any value is. */
static bool parse_getex_opts(client *c, long long *when)
{
	int vi = 0;
	bool persist = false, abs = false, sec = false;
	for (int i = 2; i < c->argc; i++) {
		bool next = i + 1 < c->argc;
		if (argis(c, i, "persist") && !vi && !persist) {
			persist = true;
		} else if ((argis(c, i, "ex") || argis(c, i, "px") || argis(c, i, "exat") || argis(c, i, "pxat")) && next &&
			   !vi && !persist) {
			sec = argis(c, i, "ex") || argis(c, i, "exat");
			abs = argis(c, i, "exat") || argis(c, i, "pxat");
			vi = ++i;
		} else {
			add_reply_error(c, SYNTAX);
			return false;
		}
	}
	*when = persist ? -1 : -2;
	if (!vi)
		return true;
	long long v;
	if (!get_ll(c, vi, &v, NULL))
		return false;
	if (v <= 0 || (sec && v > LLONG_MAX / 1000) || (!abs && (sec ? v * 1000 : v) > LLONG_MAX - g_now_ms)) {
		add_reply_error(c, "ERR invalid expire time in 'getex' command");
		return false;
	}
	*when = (sec ? v * 1000 : v) + (abs ? 0 : g_now_ms);
	return true;
}

static void cmd_getex(client *c)
{
	long long when;
	if (!parse_getex_opts(c, &when))
		return;
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	if (!e) {
		add_reply_nil(c);
		return;
	}
	/* EXAT/PXAT in the past deletes, as in Redis; a replica applying its
	 * primary's stream keeps the key until the primary's DEL */
	bool gone = when >= 0 && when <= g_now_ms && !repl_applying_primary();
	if (when >= 0 && !gone && !set_expire(e, when)) {
		add_reply_oom(c);
		return;
	}
	hstr *s = e->v.p;
	add_reply_bulk(c, s->buf, s->len);
	if (gone)
		delete_entry(e);
	else if (when == -1 && e->expire != -1)
		set_expire(e, -1);
	else if (when < 0)
		return;
	g_srv.dirty++;
}

static bool check_string_length(client *c, long long offset, size_t add)
{
	if (offset + (long long)add > PROTO_MAX_BULK_LEN) {
		add_reply_error(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
		return false;
	}
	return true;
}

static void cmd_setrange(client *c)
{
	long long off;
	if (!get_ll(c, 2, &off, NULL))
		return;
	if (off < 0) {
		add_reply_error(c, "ERR offset is out of range");
		return;
	}
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	size_t olen = e ? ((hstr *)e->v.p)->len : 0;
	if (ALEN(3) == 0) {
		add_reply_int(c, (long long)olen);
		return;
	}
	if (!check_string_length(c, off, ALEN(3)))
		return;
	size_t nl = (size_t)off + ALEN(3) > olen ? (size_t)off + ALEN(3) : olen;
	hstr *n = e ? hrealloc(e->v.p, sizeof(hstr) + nl + 1) : hcalloc(1, sizeof(hstr) + nl + 1);
	if (!n) {
		add_reply_oom(c);
		return;
	}
	if (nl > olen)
		memset(n->buf + olen, 0, nl - olen + 1);
	memcpy(n->buf + off, ARG(3), ALEN(3));
	n->len = (uint32_t)nl;
	if (!e && !db_add(ARG(1), ALEN(1), T_STRING, n)) {
		hfree(n);
		add_reply_oom(c);
		return;
	}
	if (e)
		e->v.p = n;
	g_srv.dirty++;
	add_reply_int(c, (long long)nl);
}

/* GETRANGE and SUBSTR: Redis's index rules, which differ from LRANGE's
 * (two negative indexes with start > end give an empty string). */
static void cmd_getrange(client *c)
{
	long long start, end;
	if (!get_ll(c, 2, &start, NULL) || !get_ll(c, 3, &end, NULL))
		return;
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	long long len = e ? ((hstr *)e->v.p)->len : 0;
	if (!e || (start < 0 && end < 0 && start > end)) {
		add_reply_bulk(c, "", 0);
		return;
	}
	if (start < 0)
		start += len;
	if (end < 0)
		end += len;
	if (start < 0)
		start = 0;
	if (end < 0)
		end = 0;
	if (end >= len)
		end = len - 1;
	if (start > end || len == 0)
		add_reply_bulk(c, "", 0);
	else
		add_reply_bulk(c, ((hstr *)e->v.p)->buf + start, (size_t)(end - start + 1));
}

/* Redis keeps floats as long doubles printed with 17 decimals, trailing
 * zeros cut: the same arithmetic gives the same digits. */
static bool parse_ldouble(const char *s, size_t len, long double *out)
{
	if (len == 0 || len > 5 * 1024 || isspace((unsigned char)s[0]))
		return false;
	char buf[5 * 1024 + 1], *end;
	memcpy(buf, s, len);
	buf[len] = 0;
	errno = 0;
	long double v = strtold(buf, &end);
	if (*end || isnan(v) || (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || v == 0)))
		return false;
	*out = v;
	return true;
}

static int format_ldouble(char *buf, size_t n, long double v)
{
	int len = snprintf(buf, n, "%.17Lf", v);
	if (strchr(buf, '.')) {
		while (len > 0 && buf[len - 1] == '0')
			len--;
		if (buf[len - 1] == '.')
			len--;
	}
	if (len == 2 && buf[0] == '-' && buf[1] == '0') {
		buf[0] = '0';
		len = 1;
	}
	buf[len] = 0;
	return len;
}

static void cmd_incrbyfloat(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	long double v = 0, by;
	if ((e && !parse_ldouble(((hstr *)e->v.p)->buf, ((hstr *)e->v.p)->len, &v)) ||
	    !parse_ldouble(ARG(2), ALEN(2), &by)) {
		add_reply_error(c, NOTFLOAT);
		return;
	}
	v += by;
	if (isnan(v) || isinf(v)) {
		add_reply_error(c, "ERR increment would produce NaN or Infinity");
		return;
	}
	char buf[5200];
	int n = format_ldouble(buf, sizeof(buf), v);
	if (!set_string(ARG(1), ALEN(1), buf, (size_t)n, true, NULL)) {
		add_reply_oom(c);
		return;
	}
	g_srv.dirty++;
	add_reply_bulk(c, buf, (size_t)n);
}

static void cmd_msetnx(client *c)
{
	if (c->argc % 2 == 0) {
		add_reply_error(c, "ERR wrong number of arguments for 'msetnx' command");
		return;
	}
	for (int i = 1; i < c->argc; i += 2)
		if (lookup_key(ARG(i), ALEN(i))) {
			add_reply_int(c, 0);
			return;
		}
	for (int i = 1; i < c->argc; i += 2) {
		/* a key named twice: the last value wins, as in Redis */
		if (!set_string(ARG(i), ALEN(i), ARG(i + 1), ALEN(i + 1), false, NULL)) {
			add_reply_oom(c);
			return;
		}
		g_srv.dirty++;
	}
	add_reply_int(c, 1);
}

/* ------------------------------------------------------------- keys */

static void cmd_del(client *c)
{
	long long n = 0;
	for (int i = 1; i < c->argc; i++)
		if (delete_key(ARG(i), ALEN(i))) {
			n++;
			g_srv.dirty++;
			signal_modified_key(ARG(i), ALEN(i));
		}
	add_reply_int(c, n);
}

static void cmd_exists(client *c)
{
	long long n = 0;
	for (int i = 1; i < c->argc; i++)
		if (lookup_key(ARG(i), ALEN(i)))
			n++;
	add_reply_int(c, n);
}

static void expire_generic(client *c, long long base, bool seconds, const char *name)
{
	long long v;
	if (!get_ll(c, 2, &v, NULL))
		return;
	int nx = 0, xx = 0, gt = 0, lt = 0;
	for (int i = 3; i < c->argc; i++) {
		if (argis(c, i, "nx"))
			nx = 1;
		else if (argis(c, i, "xx"))
			xx = 1;
		else if (argis(c, i, "gt"))
			gt = 1;
		else if (argis(c, i, "lt"))
			lt = 1;
		else {
			add_reply_errorf(c, "ERR Unsupported option %s", ARG(i));
			return;
		}
	}
	if (nx && (xx || gt || lt)) {
		add_reply_error(c, "ERR NX and XX, GT or LT options at the same time are not compatible");
		return;
	}
	if (gt && lt) {
		add_reply_error(c, "ERR GT and LT options at the same time are not compatible");
		return;
	}
	if (seconds) {
		if (v > LLONG_MAX / 1000 || v < LLONG_MIN / 1000) {
			add_reply_errorf(c, "ERR invalid expire time in '%s' command", name);
			return;
		}
		v *= 1000;
	}
	if ((v > 0 && base > LLONG_MAX - v)) {
		add_reply_errorf(c, "ERR invalid expire time in '%s' command", name);
		return;
	}
	long long when = v + base;
	dent *e = lookup_key(ARG(1), ALEN(1));
	if (!e) {
		add_reply_int(c, 0);
		return;
	}
	long long cur = e->expire;
	if ((nx && cur != -1) || (xx && cur == -1) || (gt && (cur == -1 || when <= cur)) ||
	    (lt && cur != -1 && when >= cur)) {
		add_reply_int(c, 0);
		return;
	}
	if (when <= g_now_ms && !repl_applying_primary()) { /* a replica waits for the DEL */
		delete_entry(e);
	} else if (!set_expire(e, when)) {
		add_reply_oom(c);
		return;
	}
	g_srv.dirty++;
	add_reply_int(c, 1);
}

static void cmd_expire(client *c) { expire_generic(c, g_now_ms, true, "expire"); }
static void cmd_pexpire(client *c) { expire_generic(c, g_now_ms, false, "pexpire"); }
static void cmd_expireat(client *c) { expire_generic(c, 0, true, "expireat"); }
static void cmd_pexpireat(client *c) { expire_generic(c, 0, false, "pexpireat"); }

static void ttl_generic(client *c, bool ms)
{
	dent *e = lookup_key(ARG(1), ALEN(1));
	if (!e) {
		add_reply_int(c, -2);
		return;
	}
	if (e->expire == -1) {
		add_reply_int(c, -1);
		return;
	}
	long long ttl = e->expire - g_now_ms;
	if (ttl < 0)
		ttl = 0;
	add_reply_int(c, ms ? ttl : (ttl + 500) / 1000);
}

static void cmd_ttl(client *c) { ttl_generic(c, false); }
static void cmd_pttl(client *c) { ttl_generic(c, true); }

static void cmd_persist(client *c)
{
	dent *e = lookup_key(ARG(1), ALEN(1));
	if (!e || e->expire == -1) {
		add_reply_int(c, 0);
		return;
	}
	set_expire(e, -1);
	g_srv.dirty++;
	add_reply_int(c, 1);
}

static const char *type_name(uint32_t t)
{
	static const char *const names[] = { "string", "list", "hash", "set", "zset" };
	return t < 5 ? names[t] : "none";
}

static void cmd_type(client *c)
{
	dent *e = lookup_key(ARG(1), ALEN(1));
	add_reply_status(c, e ? type_name(e->type) : "none");
}

struct keylist {
	char **k;
	size_t *l;
	size_t n, cap;
	bool failed;
};

static void keylist_add(struct keylist *kl, const char *k, size_t len)
{
	if (kl->n == kl->cap) {
		size_t cap = kl->cap ? kl->cap * 2 : 64;
		char **nk = realloc(kl->k, cap * sizeof(char *));
		size_t *nl = nk ? realloc(kl->l, cap * sizeof(size_t)) : NULL;
		if (nk)
			kl->k = nk;
		if (!nl) {
			kl->failed = true;
			return;
		}
		kl->l = nl;
		kl->cap = cap;
	}
	char *copy = malloc(len + 1);
	if (!copy) {
		kl->failed = true;
		return;
	}
	memcpy(copy, k, len);
	copy[len] = 0;
	kl->k[kl->n] = copy;
	kl->l[kl->n] = len;
	kl->n++;
}

static void keylist_free(struct keylist *kl)
{
	for (size_t i = 0; i < kl->n; i++)
		free(kl->k[i]);
	free(kl->k);
	free(kl->l);
}

struct keys_ctx {
	client *c;
	const char *pat;
	size_t plen;
	bool all;
	long long n;
};

static void keys_cb(void *arg, dent *e)
{
	struct keys_ctx *k = arg;
	if (expired(e))
		return;
	if (k->all || glob_match(k->pat, k->plen, e->key, e->klen, false)) {
		add_reply_bulk(k->c, e->key, e->klen);
		k->n++;
	}
}

static void cmd_keys(client *c)
{
	size_t off = add_reply_deferred(c);
	struct keys_ctx k = { c, ARG(1), ALEN(1), ALEN(1) == 1 && ARG(1)[0] == '*', 0 };
	dict_foreach(g_ks->db, keys_cb, &k);
	set_deferred_array(c, off, k.n);
}

static void scan_cb(void *arg, dent *e)
{
	keylist_add(arg, e->key, e->klen);
}

struct scan_opts {
	unsigned long long cursor;
	long long count;
	const char *pat, *type;
	size_t plen;
};

static bool parse_scan_cursor(client *c, int i, unsigned long long *cursor)
{
	char *end;
	errno = 0;
	*cursor = strtoull(ARG(i), &end, 10);
	if (ALEN(i) == 0 || *end || errno || ARG(i)[0] == '-') {
		add_reply_error(c, "ERR invalid cursor");
		return false;
	}
	return true;
}

/* [MATCH pattern] [COUNT n] and, for SCAN only, [TYPE t] from argv[first..] */
static bool parse_scan_opts(client *c, int first, bool allow_type, struct scan_opts *o)
{
	o->count = 10;
	o->pat = o->type = NULL;
	o->plen = 0;
	for (int i = first; i < c->argc; i++) {
		bool next = i + 1 < c->argc;
		if (argis(c, i, "count") && next) {
			if (!get_ll(c, i + 1, &o->count, NULL))
				return false;
			if (o->count < 1) {
				add_reply_error(c, SYNTAX);
				return false;
			}
			i++;
		} else if (argis(c, i, "match") && next) {
			o->pat = ARG(i + 1);
			o->plen = ALEN(i + 1);
			if (o->plen == 1 && o->pat[0] == '*')
				o->pat = NULL;
			i++;
		} else if (argis(c, i, "type") && next && allow_type) {
			o->type = ARG(i + 1);
			i++;
		} else {
			add_reply_error(c, SYNTAX);
			return false;
		}
	}
	return true;
}

static void cmd_scan(client *c)
{
	struct scan_opts o;
	if (!parse_scan_cursor(c, 1, &o.cursor) || !parse_scan_opts(c, 2, true, &o))
		return;
	unsigned long long cursor = o.cursor;
	long long count = o.count;
	const char *pat = o.pat, *type = o.type;
	size_t plen = o.plen;
	struct keylist kl = { 0 };
	long long maxiter = count * 10;
	do {
		cursor = dict_scan(g_ks->db, cursor, scan_cb, &kl);
	} while (cursor && maxiter-- && (long long)kl.n < count);
	add_reply_array(c, 2);
	char cb[32];
	snprintf(cb, sizeof(cb), "%llu", cursor);
	add_reply_bulk_cstr(c, cb);
	size_t off = add_reply_deferred(c);
	long long n = 0;
	for (size_t i = 0; i < kl.n; i++) {
		if (pat && !glob_match(pat, plen, kl.k[i], kl.l[i], false))
			continue;
		dent *e = lookup_key(kl.k[i], kl.l[i]); /* drops expired keys */
		if (!e)
			continue;
		if (type && strcasecmp(type, type_name(e->type)) != 0)
			continue;
		add_reply_bulk(c, kl.k[i], kl.l[i]);
		n++;
	}
	keylist_free(&kl);
	set_deferred_array(c, off, n);
}

static void cmd_randomkey(client *c)
{
	for (int tries = 0; tries < 100; tries++) {
		dent *e = dict_random(g_ks->db);
		if (!e)
			break;
		if (expired(e)) {
			delete_expired(e);
			continue;
		}
		add_reply_bulk(c, e->key, e->klen);
		return;
	}
	add_reply_nil(c);
}

static void rename_generic(client *c, bool nx)
{
	dent *e = lookup_key(ARG(1), ALEN(1));
	if (!e) {
		add_reply_error(c, "ERR no such key");
		return;
	}
	if (ALEN(1) == ALEN(2) && memcmp(ARG(1), ARG(2), ALEN(1)) == 0) {
		if (nx)
			add_reply_int(c, 0);
		else
			add_reply_ok(c);
		return;
	}
	dent *d = lookup_key(ARG(2), ALEN(2)); /* (drops an expired one first) */
	if (d && nx) {
		add_reply_int(c, 0);
		return;
	}
	bool ttl = e->expire != -1;
	bool added = false;
	if (ttl) {
		added = !dict_find(g_ks->expires, ARG(2), ALEN(2));
		if (added && !expires_add(ARG(2), ALEN(2))) {
			add_reply_oom(c);
			return;
		}
	}
	if (d) {
		free_value(d->type, d->v.p);
		if (d->expire != -1 && !ttl)
			expires_del(ARG(2), ALEN(2));
	} else {
		d = dict_add_raw(g_ks->db, ARG(2), ALEN(2));
		if (!d) {
			if (added)
				expires_del(ARG(2), ALEN(2));
			add_reply_oom(c);
			return;
		}
	}
	/* the new name's expires record is right now; drop the old name's */
	d->type = e->type;
	d->v = e->v;
	d->expire = e->expire;
	dent *u = dict_unlink(g_ks->db, ARG(1), ALEN(1));
	if (ttl)
		expires_del(ARG(1), ALEN(1));
	hfree(u);
	g_srv.dirty++;
	if (nx)
		add_reply_int(c, 1);
	else
		add_reply_ok(c);
}

static void cmd_rename(client *c)
{
	rename_generic(c, false);
}

static void cmd_renamenx(client *c)
{
	rename_generic(c, true);
}

/* A deep copy of a value (COPY).  NULL when the heap is full (nothing is
 * left allocated). */
static void *copy_value(uint32_t type, void *v);

struct copy_ctx {
	void *dst;
	uint32_t type;
	bool failed;
};

static void copy_member_cb(void *arg, dent *m)
{
	struct copy_ctx *k = arg;
	if (k->failed)
		return;
	if (k->type == T_ZSET) {
		k->failed = !zset_insert(k->dst, m->key, m->klen, m->v.d);
		return;
	}
	hstr *s = NULL;
	if (k->type == T_HASH && !(s = hstr_new(((hstr *)m->v.p)->buf, ((hstr *)m->v.p)->len))) {
		k->failed = true;
		return;
	}
	dent *n = dict_add_raw(k->dst, m->key, m->klen);
	if (!n) {
		hfree(s);
		k->failed = true;
		return;
	}
	n->v.p = s;
}

static void *copy_value(uint32_t type, void *v)
{
	if (type == T_STRING)
		return hstr_new(((hstr *)v)->buf, ((hstr *)v)->len);
	struct copy_ctx k = { new_container(type), type, false };
	if (!k.dst)
		return NULL;
	if (type == T_LIST) {
		for (lnode *n = ((hlist *)v)->head; n && !k.failed; n = n->next)
			k.failed = !list_push(k.dst, n->data, n->len, false);
	} else {
		dict_foreach(type == T_ZSET ? ((zset *)v)->d : v, copy_member_cb, &k);
	}
	if (k.failed) {
		free_value(type, k.dst);
		return NULL;
	}
	return k.dst;
}

/* COPY source destination [DB 0] [REPLACE] */
static void cmd_copy(client *c)
{
	bool replace = false;
	for (int i = 3; i < c->argc; i++) {
		if (argis(c, i, "replace")) {
			replace = true;
		} else if (argis(c, i, "db") && i + 1 < c->argc) {
			long long db;
			if (!get_ll(c, ++i, &db, NULL))
				return;
			if (db != 0) {
				add_reply_error(c, "ERR DB index is out of range");
				return;
			}
		} else {
			add_reply_error(c, SYNTAX);
			return;
		}
	}
	if (ALEN(1) == ALEN(2) && memcmp(ARG(1), ARG(2), ALEN(1)) == 0) {
		add_reply_error(c, "ERR source and destination objects are the same");
		return;
	}
	dent *e = lookup_key(ARG(1), ALEN(1));
	dent *d = lookup_key(ARG(2), ALEN(2));
	if (!e || (d && !replace)) {
		add_reply_int(c, 0);
		return;
	}
	void *v = copy_value(e->type, e->v.p);
	bool added = e->expire != -1 && !dict_find(g_ks->expires, ARG(2), ALEN(2));
	if (!v || (added && !expires_add(ARG(2), ALEN(2)))) {
		if (v)
			free_value(e->type, v);
		add_reply_oom(c);
		return;
	}
	if (!d && !(d = db_add(ARG(2), ALEN(2), e->type, v))) {
		free_value(e->type, v);
		if (added)
			expires_del(ARG(2), ALEN(2));
		add_reply_oom(c);
		return;
	}
	if (d->v.p != v) {
		free_value(d->type, d->v.p);
		d->type = e->type;
		d->v.p = v;
	}
	set_expire(d, e->expire); /* the name is in the set when needed: cannot fail */
	g_srv.dirty++;
	signal_modified_key(ARG(2), ALEN(2));
	add_reply_int(c, 1);
}

/* EXPIRETIME, PEXPIRETIME: the absolute time (TTL's rounding for seconds). */
static void expiretime_generic(client *c, bool ms)
{
	dent *e = lookup_key(ARG(1), ALEN(1));
	if (!e)
		add_reply_int(c, -2);
	else if (e->expire == -1)
		add_reply_int(c, -1);
	else
		add_reply_int(c, ms ? e->expire : (e->expire + 500) / 1000);
}

static void cmd_expiretime(client *c) { expiretime_generic(c, false); }
static void cmd_pexpiretime(client *c) { expiretime_generic(c, true); }

static void cmd_touch(client *c)
{
	cmd_exists(c);
}

static void cmd_dbsize(client *c)
{
	add_reply_int(c, (long long)dict_size(g_ks->db));
}

static void cmd_flushall(client *c)
{
	if (c->argc > 2 || (c->argc == 2 && !argis(c, 1, "async") && !argis(c, 1, "sync"))) {
		add_reply_error(c, SYNTAX);
		return;
	}
	signal_all_keys_modified();
	uint64_t n = dict_size(g_ks->db);
	dict_free(g_ks->db, free_main_val);
	dict_free(g_ks->expires, NULL);
	g_ks->db = dict_new(); /* cannot fail: we just freed everything */
	g_ks->expires = dict_new();
	g_srv.dirty += (long long)n + 1;
	add_reply_ok(c);
}

/* ------------------------------------------------------------- lists */

static void push_generic(client *c, bool head)
{
	dent *e = lookup_or_create(c, 1, T_LIST);
	if (!e)
		return;
	hlist *l = e->v.p;
	for (int i = 2; i < c->argc; i++) {
		if (!list_push(l, ARG(i), ALEN(i), head)) {
			delete_if_empty(e);
			add_reply_oom(c);
			return;
		}
		g_srv.dirty++;
	}
	add_reply_int(c, (long long)l->len);
}

static void cmd_lpush(client *c) { push_generic(c, true); }
static void cmd_rpush(client *c) { push_generic(c, false); }

static void pop_generic(client *c, bool head)
{
	long long count = -1;
	if (c->argc > 3) {
		add_reply_errorf(c, "ERR wrong number of arguments for '%s' command", head ? "lpop" : "rpop");
		return;
	}
	if (c->argc == 3) {
		if (!get_ll(c, 2, &count, OUTOFRANGE))
			return;
		if (count < 0) {
			add_reply_error(c, OUTOFRANGE);
			return;
		}
	}
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	if (!e) {
		if (count == -1)
			add_reply_nil(c);
		else
			add_reply_null_array(c);
		return;
	}
	hlist *l = e->v.p;
	if (count == -1) {
		lnode *n = list_pop(l, head);
		add_reply_bulk(c, n->data, n->len);
		hfree(n);
	} else {
		long long n = count < (long long)l->len ? count : (long long)l->len;
		add_reply_array(c, n);
		for (long long i = 0; i < n; i++) {
			lnode *nd = list_pop(l, head);
			add_reply_bulk(c, nd->data, nd->len);
			hfree(nd);
		}
	}
	g_srv.dirty++;
	delete_if_empty(e);
}

static void cmd_lpop(client *c) { pop_generic(c, true); }
static void cmd_rpop(client *c) { pop_generic(c, false); }

static void cmd_llen(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (!wrong)
		add_reply_int(c, e ? (long long)((hlist *)e->v.p)->len : 0);
}

static void cmd_lindex(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	long long idx;
	if (!get_ll(c, 2, &idx, NULL))
		return;
	lnode *n = e ? list_index(e->v.p, idx) : NULL;
	if (n)
		add_reply_bulk(c, n->data, n->len);
	else
		add_reply_nil(c);
}

/* Normalises a Redis [start, stop] range over len items; false if empty. */
static bool range_norm(long long *start, long long *end, long long len)
{
	if (*start < 0)
		*start += len;
	if (*end < 0)
		*end += len;
	if (*start < 0)
		*start = 0;
	if (*start > *end || *start >= len)
		return false;
	if (*end >= len)
		*end = len - 1;
	return true;
}

static void cmd_lrange(client *c)
{
	long long start, end;
	if (!get_ll(c, 2, &start, NULL) || !get_ll(c, 3, &end, NULL))
		return;
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	if (!e || !range_norm(&start, &end, (long long)((hlist *)e->v.p)->len)) {
		add_reply_array(c, 0);
		return;
	}
	add_reply_array(c, end - start + 1);
	lnode *n = list_index(e->v.p, start);
	for (long long i = start; i <= end && n; i++, n = n->next)
		add_reply_bulk(c, n->data, n->len);
}

static void pushx_generic(client *c, bool head)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	if (!e) {
		add_reply_int(c, 0);
		return;
	}
	push_generic(c, head);
}

static void cmd_lpushx(client *c) { pushx_generic(c, true); }
static void cmd_rpushx(client *c) { pushx_generic(c, false); }

static void cmd_ltrim(client *c)
{
	long long start, end;
	if (!get_ll(c, 2, &start, NULL) || !get_ll(c, 3, &end, NULL))
		return;
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	if (e) {
		hlist *l = e->v.p;
		long long len = (long long)l->len, left = len, right = 0;
		if (range_norm(&start, &end, len)) {
			left = start;
			right = len - end - 1;
		}
		for (long long i = 0; i < left; i++)
			hfree(list_pop(l, true));
		for (long long i = 0; i < right; i++)
			hfree(list_pop(l, false));
		if (left || right)
			g_srv.dirty++;
		else /* Redis signals even a trim that removes nothing */
			signal_modified_key(ARG(1), ALEN(1));
		delete_if_empty(e);
	}
	add_reply_ok(c);
}

static bool node_is(const lnode *n, const char *p, size_t len)
{
	return n->len == len && memcmp(n->data, p, len) == 0;
}

/* LREM key count element: count > 0 from the head, < 0 from the tail, 0 all */
static void cmd_lrem(client *c)
{
	long long count;
	if (!get_ll(c, 2, &count, NULL))
		return;
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	long long removed = 0;
	if (e) {
		hlist *l = e->v.p;
		bool fromtail = count < 0;
		lnode *n = fromtail ? l->tail : l->head;
		while (n && (count == 0 || removed < (fromtail ? -count : count))) {
			lnode *next = fromtail ? n->prev : n->next;
			if (node_is(n, ARG(3), ALEN(3))) {
				list_unlink(l, n);
				hfree(n);
				removed++;
			}
			n = next;
		}
		if (removed)
			g_srv.dirty++;
		delete_if_empty(e);
	}
	add_reply_int(c, removed);
}

static void cmd_lset(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	if (!e) {
		add_reply_error(c, "ERR no such key");
		return;
	}
	long long idx;
	if (!get_ll(c, 2, &idx, NULL))
		return;
	hlist *l = e->v.p;
	lnode *at = list_index(l, idx);
	if (!at) {
		add_reply_error(c, "ERR index out of range");
		return;
	}
	lnode *n = lnode_new(ARG(3), ALEN(3));
	if (!n) {
		add_reply_oom(c);
		return;
	}
	list_link(l, at, n, true);
	list_unlink(l, at);
	hfree(at);
	g_srv.dirty++;
	add_reply_ok(c);
}

static void cmd_linsert(client *c)
{
	bool after = argis(c, 2, "after");
	if (!after && !argis(c, 2, "before")) {
		add_reply_error(c, SYNTAX);
		return;
	}
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	if (!e) {
		add_reply_int(c, 0);
		return;
	}
	hlist *l = e->v.p;
	lnode *at = l->head;
	while (at && !node_is(at, ARG(3), ALEN(3)))
		at = at->next;
	if (!at) {
		add_reply_int(c, -1);
		return;
	}
	lnode *n = lnode_new(ARG(4), ALEN(4));
	if (!n) {
		add_reply_oom(c);
		return;
	}
	list_link(l, at, n, after);
	g_srv.dirty++;
	add_reply_int(c, (long long)l->len);
}

/* LMOVE / RPOPLPUSH: the node itself moves, so nothing is allocated but a
 * new destination list, and that before anything is unlinked. */
static void move_generic(client *c, bool src_head, bool dst_head)
{
	bool wrong;
	dent *s = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	if (!s) {
		add_reply_nil(c);
		return;
	}
	dent *d = lookup_typed(c, 2, T_LIST, &wrong);
	if (wrong)
		return;
	if (!d && !(d = lookup_or_create(c, 2, T_LIST)))
		return;
	lnode *n = list_pop(s->v.p, src_head);
	list_link(d->v.p, NULL, n, !dst_head);
	add_reply_bulk(c, n->data, n->len);
	g_srv.dirty++;
	delete_if_empty(s);
}

static bool parse_where(client *c, int i, bool *head)
{
	*head = argis(c, i, "left");
	if (*head || argis(c, i, "right"))
		return true;
	add_reply_error(c, SYNTAX);
	return false;
}

static void cmd_lmove(client *c)
{
	bool from, to;
	if (parse_where(c, 3, &from) && parse_where(c, 4, &to))
		move_generic(c, from, to);
}

static void cmd_rpoplpush(client *c)
{
	move_generic(c, false, true);
}

static bool get_nonneg(client *c, int i, long long *v, const char *err)
{
	if (!parse_ll(ARG(i), ALEN(i), v) || *v < 0) {
		add_reply_error(c, err);
		return false;
	}
	return true;
}

/* LPOS key element [RANK rank] [COUNT num] [MAXLEN len] */
static void cmd_lpos(client *c)
{
	long long rank = 1, count = -1, maxlen = 0;
	for (int i = 3; i < c->argc; i++) {
		bool next = i + 1 < c->argc;
		if (argis(c, i, "rank") && next) {
			if (!get_ll(c, ++i, &rank, NULL))
				return;
			if (rank == 0) {
				add_reply_error(c, "ERR RANK can't be zero: use 1 to start from the first match, 2 from the "
						   "second ... or use negative to start from the end of the list");
				return;
			}
		} else if (argis(c, i, "count") && next) {
			if (!get_nonneg(c, ++i, &count, "ERR COUNT can't be negative"))
				return;
		} else if (argis(c, i, "maxlen") && next) {
			if (!get_nonneg(c, ++i, &maxlen, "ERR MAXLEN can't be negative"))
				return;
		} else {
			add_reply_error(c, SYNTAX);
			return;
		}
	}
	bool wrong;
	dent *e = lookup_typed(c, 1, T_LIST, &wrong);
	if (wrong)
		return;
	if (!e) {
		if (count != -1)
			add_reply_array(c, 0);
		else
			add_reply_nil(c);
		return;
	}
	hlist *l = e->v.p;
	bool fromtail = rank < 0;
	unsigned long long want = fromtail ? 0ull - (unsigned long long)rank : (unsigned long long)rank;
	size_t off = count != -1 ? add_reply_deferred(c) : 0;
	long long found = 0, idx = 0, hits = 0;
	for (lnode *n = fromtail ? l->tail : l->head; n && (maxlen == 0 || idx < maxlen);
	     n = fromtail ? n->prev : n->next, idx++) {
		if (!node_is(n, ARG(2), ALEN(2)) || (unsigned long long)++hits < want)
			continue;
		long long pos = fromtail ? (long long)l->len - idx - 1 : idx;
		if (count == -1) {
			add_reply_int(c, pos);
			return;
		}
		add_reply_int(c, pos);
		if (++found == count && count != 0)
			break;
	}
	if (count != -1)
		set_deferred_array(c, off, found);
	else
		add_reply_nil(c);
}

/* Pops one element of the list e (named key) and replies [key, element]. */
static void pop_with_key(client *c, dent *e, const char *key, size_t klen, bool head)
{
	lnode *n = list_pop(e->v.p, head);
	add_reply_array(c, 2);
	add_reply_bulk(c, key, klen);
	add_reply_bulk(c, n->data, n->len);
	hfree(n);
	g_srv.dirty++;
	delete_if_empty(e);
}

bool serve_blocked_pop(client *b, const char *key, size_t klen, bool head)
{
	g_now_ms = mstime();
	dent *e = lookup_key(key, klen);
	if (!e || e->type != T_LIST)
		return false;
	char *name = malloc(klen + 1); /* the entry (and its name) may go with the last element */
	if (!name)
		return false;
	memcpy(name, key, klen);
	pop_with_key(b, e, name, klen, head);
	signal_modified_key(name, klen);
	free(name);
	return true;
}

/* BLPOP/BRPOP's timeout: seconds as a float, 0 for none; Redis's errors. */
static bool get_timeout(client *c, int i, long long *deadline)
{
	long double t;
	if (!parse_ldouble(ARG(i), ALEN(i), &t)) {
		add_reply_error(c, "ERR timeout is not a float or out of range");
		return false;
	}
	/* Redis 7.0 converts to long long without a range check: on x86 a
	 * value beyond it (inf included) becomes negative, and one that
	 * overflows only when added to the clock waits for ever.  Same here,
	 * without the undefined conversion. */
	t = ceill(t * 1000.0L);
	if (t < 0 || !(t < 9223372036854775808.0L)) {
		add_reply_error(c, "ERR timeout is negative");
		return false;
	}
	long long ms = (long long)t;
	*deadline = ms && ms <= LLONG_MAX - g_now_ms ? ms + g_now_ms : 0;
	return true;
}

/* BLPOP / BRPOP key [key ...] timeout: the first non-empty list, or wait
 * (blocking.c) until a push or the timeout.  Inside EXEC it cannot wait:
 * a null array, as Redis. */
static void bpop_generic(client *c, bool head)
{
	long long deadline;
	if (!get_timeout(c, c->argc - 1, &deadline))
		return;
	for (int i = 1; i < c->argc - 1; i++) {
		bool wrong;
		dent *e = lookup_typed(c, i, T_LIST, &wrong);
		if (wrong)
			return;
		if (e) {
			pop_with_key(c, e, ARG(i), ALEN(i), head);
			signal_modified_key(ARG(i), ALEN(i)); /* that key only, not all named */
			return;
		}
	}
	if (c->flags & CF_IN_EXEC)
		add_reply_null_array(c);
	else if (block_client(c, 1, c->argc - 2, head, deadline) != 0)
		add_reply_error(c, "ERR out of memory");
}

static void cmd_blpop(client *c) { bpop_generic(c, true); }
static void cmd_brpop(client *c) { bpop_generic(c, false); }

/* ------------------------------------------------------------- hashes */

static void free_hval(dent *e)
{
	hfree(e->v.p);
}

static void cmd_hset(client *c)
{
	if (c->argc % 2 == 1) {
		char name[16];
		snprintf(name, sizeof(name), "%s", argis(c, 0, "hmset") ? "hmset" : "hset");
		add_reply_errorf(c, "ERR wrong number of arguments for '%s' command", name);
		return;
	}
	dent *e = lookup_or_create(c, 1, T_HASH);
	if (!e)
		return;
	dict *h = e->v.p;
	long long added = 0;
	for (int i = 2; i < c->argc; i += 2) {
		dent *f = dict_find(h, ARG(i), ALEN(i));
		if (f) {
			hstr *s = f->v.p;
			if (!hstr_set(&s, ARG(i + 1), ALEN(i + 1)))
				goto oom;
			f->v.p = s;
		} else {
			hstr *s = hstr_new(ARG(i + 1), ALEN(i + 1));
			if (!s)
				goto oom;
			f = dict_add_raw(h, ARG(i), ALEN(i));
			if (!f) {
				hfree(s);
				goto oom;
			}
			f->v.p = s;
			added++;
		}
		g_srv.dirty++;
	}
	if (argis(c, 0, "hmset"))
		add_reply_ok(c);
	else
		add_reply_int(c, added);
	return;
oom:
	delete_if_empty(e);
	add_reply_oom(c);
}

static void cmd_hget(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_HASH, &wrong);
	if (wrong)
		return;
	dent *f = e ? dict_find(e->v.p, ARG(2), ALEN(2)) : NULL;
	if (!f) {
		add_reply_nil(c);
		return;
	}
	hstr *s = f->v.p;
	add_reply_bulk(c, s->buf, s->len);
}

static void cmd_hmget(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_HASH, &wrong);
	if (wrong)
		return;
	add_reply_array(c, c->argc - 2);
	for (int i = 2; i < c->argc; i++) {
		dent *f = e ? dict_find(e->v.p, ARG(i), ALEN(i)) : NULL;
		if (!f) {
			add_reply_nil(c);
		} else {
			hstr *s = f->v.p;
			add_reply_bulk(c, s->buf, s->len);
		}
	}
}

/* HDEL and SREM: unlink the named members of the hash or set at argv[1]
 * (a hash member also owns a value), drop the key when it empties. */
static void remove_members(client *c, uint32_t type, bool has_values)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, type, &wrong);
	if (wrong)
		return;
	long long n = 0;
	for (int i = 2; e && i < c->argc; i++) {
		dent *m = dict_unlink(e->v.p, ARG(i), ALEN(i));
		if (m) {
			if (has_values)
				free_hval(m);
			hfree(m);
			n++;
			g_srv.dirty++;
		}
	}
	if (e) {
		dict_maybe_shrink(e->v.p);
		delete_if_empty(e);
	}
	add_reply_int(c, n);
}

static void cmd_hdel(client *c)
{
	remove_members(c, T_HASH, true);
}

struct hgetall_ctx {
	client *c;
	bool vals;
};

static void hgetall_cb(void *arg, dent *f)
{
	struct hgetall_ctx *h = arg;
	add_reply_bulk(h->c, f->key, f->klen);
	if (h->vals) {
		hstr *s = f->v.p;
		add_reply_bulk(h->c, s->buf, s->len);
	}
}

static void cmd_hgetall(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_HASH, &wrong);
	if (wrong)
		return;
	if (!e) {
		add_reply_array(c, 0);
		return;
	}
	add_reply_array(c, (long long)dict_size(e->v.p) * 2);
	struct hgetall_ctx h = { c, true };
	dict_foreach(e->v.p, hgetall_cb, &h);
}

static void cmd_hlen(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_HASH, &wrong);
	if (!wrong)
		add_reply_int(c, e ? (long long)dict_size(e->v.p) : 0);
}

static void cmd_hexists(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_HASH, &wrong);
	if (!wrong)
		add_reply_int(c, e && dict_find(e->v.p, ARG(2), ALEN(2)) ? 1 : 0);
}

static void cmd_hincrby(client *c)
{
	long long by, v = 0;
	if (!get_ll(c, 3, &by, NULL))
		return;
	bool wrong;
	dent *e = lookup_typed(c, 1, T_HASH, &wrong);
	if (wrong)
		return;
	dent *f = e ? dict_find(e->v.p, ARG(2), ALEN(2)) : NULL;
	if (!incr_checked(c, f ? f->v.p : NULL, by, "ERR hash value is not an integer", &v))
		return;
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%lld", v);
	if (f) {
		hstr *s = f->v.p;
		if (!hstr_set(&s, buf, (size_t)n)) {
			add_reply_oom(c);
			return;
		}
		f->v.p = s;
	} else {
		e = lookup_or_create(c, 1, T_HASH);
		if (!e)
			return;
		hstr *s = hstr_new(buf, (size_t)n);
		f = s ? dict_add_raw(e->v.p, ARG(2), ALEN(2)) : NULL;
		if (!f) {
			hfree(s);
			delete_if_empty(e);
			add_reply_oom(c);
			return;
		}
		f->v.p = s;
	}
	g_srv.dirty++;
	add_reply_int(c, v);
}

static void cmd_hkeys(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_HASH, &wrong);
	if (wrong)
		return;
	add_reply_array(c, e ? (long long)dict_size(e->v.p) : 0);
	struct hgetall_ctx h = { c, false };
	if (e)
		dict_foreach(e->v.p, hgetall_cb, &h);
}

static void hvals_cb(void *arg, dent *f)
{
	hstr *s = f->v.p;
	add_reply_bulk(arg, s->buf, s->len);
}

static void cmd_hvals(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_HASH, &wrong);
	if (wrong)
		return;
	add_reply_array(c, e ? (long long)dict_size(e->v.p) : 0);
	if (e)
		dict_foreach(e->v.p, hvals_cb, c);
}

static void cmd_hstrlen(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_HASH, &wrong);
	if (wrong)
		return;
	dent *f = e ? dict_find(e->v.p, ARG(2), ALEN(2)) : NULL;
	add_reply_int(c, f ? ((hstr *)f->v.p)->len : 0);
}

/* Adds a field that is known to be absent.  false when the heap is full. */
static bool hash_add(dict *h, const char *f, size_t flen, const char *v, size_t vlen)
{
	hstr *s = hstr_new(v, vlen);
	dent *m = s ? dict_add_raw(h, f, flen) : NULL;
	if (!m) {
		hfree(s);
		return false;
	}
	m->v.p = s;
	return true;
}

static void cmd_hsetnx(client *c)
{
	dent *e = lookup_or_create(c, 1, T_HASH);
	if (!e)
		return;
	if (dict_find(e->v.p, ARG(2), ALEN(2))) {
		add_reply_int(c, 0);
		return;
	}
	if (!hash_add(e->v.p, ARG(2), ALEN(2), ARG(3), ALEN(3))) {
		delete_if_empty(e);
		add_reply_oom(c);
		return;
	}
	g_srv.dirty++;
	add_reply_int(c, 1);
}

static void cmd_hincrbyfloat(client *c)
{
	long double v = 0, by;
	if (!parse_ldouble(ARG(3), ALEN(3), &by)) {
		add_reply_error(c, NOTFLOAT);
		return;
	}
	if (isnan(by) || isinf(by)) {
		add_reply_error(c, "ERR value is NaN or Infinity");
		return;
	}
	dent *e = lookup_or_create(c, 1, T_HASH);
	if (!e)
		return;
	dent *f = dict_find(e->v.p, ARG(2), ALEN(2));
	if (f && !parse_ldouble(((hstr *)f->v.p)->buf, ((hstr *)f->v.p)->len, &v)) {
		add_reply_error(c, "ERR hash value is not a float");
		return;
	}
	v += by;
	if (isnan(v) || isinf(v)) {
		delete_if_empty(e);
		add_reply_error(c, "ERR increment would produce NaN or Infinity");
		return;
	}
	char buf[5200];
	int n = format_ldouble(buf, sizeof(buf), v);
	hstr *s = f ? f->v.p : NULL;
	if (f ? !hstr_set(&s, buf, (size_t)n) : !hash_add(e->v.p, ARG(2), ALEN(2), buf, (size_t)n)) {
		delete_if_empty(e);
		add_reply_oom(c);
		return;
	}
	if (f)
		f->v.p = s;
	g_srv.dirty++;
	add_reply_bulk(c, buf, (size_t)n);
}

/* ------------------------------------------------- random members, scans */

struct entries {
	dent **v;
	size_t n;
};

static void entries_cb(void *arg, dent *e)
{
	struct entries *x = arg;
	x->v[x->n++] = e;
}

enum { RM_KEY, RM_HASHVAL, RM_SCORE };

static void reply_member(client *c, dent *m, int mode)
{
	add_reply_bulk(c, m->key, m->klen);
	if (mode == RM_HASHVAL)
		add_reply_bulk(c, ((hstr *)m->v.p)->buf, ((hstr *)m->v.p)->len);
	else if (mode == RM_SCORE)
		add_reply_double(c, m->v.d);
}

/* HRANDFIELD / SRANDMEMBER / ZRANDMEMBER with a count: negative allows
 * repeats, positive gives distinct members (a partial shuffle of all of
 * them, in process memory).  Which members come out is random, as in
 * Redis; only the shape and membership of the reply are specified. */
static void random_members(client *c, dict *d, long long count, int mode, bool with)
{
	uint64_t size = dict_size(d);
	bool repeat = count < 0;
	unsigned long long n = repeat ? 0ull - (unsigned long long)count : (unsigned long long)count;
	if (!repeat && n > size)
		n = size;
	add_reply_array(c, (long long)n * (with ? 2 : 1));
	if (repeat) {
		for (unsigned long long i = 0; i < n; i++)
			reply_member(c, dict_random(d), with ? mode : RM_KEY);
		return;
	}
	struct entries x = { malloc(size * sizeof(dent *) + 1), 0 };
	if (!x.v) {
		for (unsigned long long i = 0; i < n; i++)
			add_reply_nil(c);
		return;
	}
	dict_foreach(d, entries_cb, &x);
	for (size_t i = 0; i < n; i++) {
		size_t j = i + (size_t)random() % (size - i);
		dent *t = x.v[i];
		x.v[i] = x.v[j];
		x.v[j] = t;
		reply_member(c, x.v[i], with ? mode : RM_KEY);
	}
	free(x.v);
}

static void randmember_generic(client *c, uint32_t type, const char *withopt)
{
	long long count = 0;
	if (c->argc >= 3) {
		if (!parse_ll(ARG(2), ALEN(2), &count) || count == LLONG_MIN) {
			add_reply_error(c, parse_ll(ARG(2), ALEN(2), &count)
						   ? "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
						   : NOTINT);
			return;
		}
		if (c->argc > 4 || (c->argc == 4 && (!withopt || !argis(c, 3, withopt)))) {
			add_reply_error(c, SYNTAX);
			return;
		}
	}
	bool wrong;
	dent *e = lookup_typed(c, 1, type, &wrong);
	if (wrong)
		return;
	dict *d = !e ? NULL : type == T_ZSET ? ((zset *)e->v.p)->d : e->v.p;
	int mode = type == T_HASH ? RM_HASHVAL : type == T_ZSET ? RM_SCORE : RM_KEY;
	if (c->argc >= 3) {
		if (d)
			random_members(c, d, count, mode, c->argc == 4);
		else
			add_reply_array(c, 0);
	} else if (d) {
		dent *m = dict_random(d);
		add_reply_bulk(c, m->key, m->klen);
	} else {
		add_reply_nil(c);
	}
}

static void cmd_hrandfield(client *c) { randmember_generic(c, T_HASH, "withvalues"); }
static void cmd_srandmember(client *c) { randmember_generic(c, T_SET, NULL); }
static void cmd_zrandmember(client *c) { randmember_generic(c, T_ZSET, "withscores"); }

struct mscan_ctx {
	const char *pat;
	size_t plen;
	struct entries x;
	size_t cap;
	bool failed;
};

static void mscan_cb(void *arg, dent *m)
{
	struct mscan_ctx *k = arg;
	if (k->failed || (k->pat && !glob_match(k->pat, k->plen, m->key, m->klen, false)))
		return;
	if (k->x.n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 16;
		dent **v = realloc(k->x.v, cap * sizeof(dent *));
		if (!v) {
			k->failed = true;
			return;
		}
		k->x.v = v;
		k->cap = cap;
	}
	k->x.v[k->x.n++] = m;
}

/* HSCAN / SSCAN / ZSCAN key cursor [MATCH pattern] [COUNT n]: the same
 * reverse-binary cursor as SCAN over the member table; a collection
 * smaller than COUNT comes back whole with cursor 0, as Redis does for its
 * small encodings.  Nothing changes the collection during the walk, so
 * the entries collected stay valid until the reply. */
static void member_scan(client *c, uint32_t type)
{
	struct scan_opts o;
	if (!parse_scan_cursor(c, 2, &o.cursor))
		return;
	/* as in Redis: the key is looked up before the options are parsed */
	bool wrong;
	dent *e = lookup_typed(c, 1, type, &wrong);
	if (wrong)
		return;
	if (!e) {
		add_reply_str(c, "*2\r\n$1\r\n0\r\n*0\r\n");
		return;
	}
	if (!parse_scan_opts(c, 3, false, &o))
		return;
	dict *d = !e ? NULL : type == T_ZSET ? ((zset *)e->v.p)->d : e->v.p;
	int mode = type == T_HASH ? RM_HASHVAL : type == T_ZSET ? RM_SCORE : RM_KEY;
	struct mscan_ctx k = { o.pat, o.plen, { NULL, 0 }, 0, false };
	unsigned long long cursor = 0;
	long long maxiter = o.count * 10;
	if (d) {
		cursor = o.cursor;
		do {
			cursor = dict_scan(d, cursor, mscan_cb, &k);
		} while (cursor && maxiter-- && (long long)k.x.n < o.count);
	}
	if (k.failed) {
		free(k.x.v);
		add_reply_error(c, "ERR out of memory");
		return;
	}
	char cb[32];
	snprintf(cb, sizeof(cb), "%llu", cursor);
	add_reply_array(c, 2);
	add_reply_bulk_cstr(c, cb);
	add_reply_array(c, (long long)k.x.n * (mode == RM_KEY ? 1 : 2));
	for (size_t i = 0; i < k.x.n; i++)
		reply_member(c, k.x.v[i], mode);
	free(k.x.v);
}

static void cmd_hscan(client *c) { member_scan(c, T_HASH); }
static void cmd_sscan(client *c) { member_scan(c, T_SET); }
static void cmd_zscan(client *c) { member_scan(c, T_ZSET); }

/* ------------------------------------------------------------- sets */

static void cmd_sadd(client *c)
{
	dent *e = lookup_or_create(c, 1, T_SET);
	if (!e)
		return;
	long long added = 0;
	for (int i = 2; i < c->argc; i++) {
		if (dict_find(e->v.p, ARG(i), ALEN(i)))
			continue;
		if (!dict_add_raw(e->v.p, ARG(i), ALEN(i))) {
			delete_if_empty(e);
			add_reply_oom(c);
			return;
		}
		added++;
		g_srv.dirty++;
	}
	add_reply_int(c, added);
}

static void cmd_srem(client *c)
{
	remove_members(c, T_SET, false);
}

static void cmd_smembers(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_SET, &wrong);
	if (wrong)
		return;
	if (!e) {
		add_reply_array(c, 0);
		return;
	}
	add_reply_array(c, (long long)dict_size(e->v.p));
	struct hgetall_ctx h = { c, false };
	dict_foreach(e->v.p, hgetall_cb, &h);
}

static void cmd_sismember(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_SET, &wrong);
	if (!wrong)
		add_reply_int(c, e && dict_find(e->v.p, ARG(2), ALEN(2)) ? 1 : 0);
}

static void cmd_scard(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_SET, &wrong);
	if (!wrong)
		add_reply_int(c, e ? (long long)dict_size(e->v.p) : 0);
}

static void cmd_spop(client *c)
{
	long long count = -1;
	if (c->argc > 3) {
		add_reply_error(c, SYNTAX);
		return;
	}
	if (c->argc == 3) {
		if (!get_ll(c, 2, &count, OUTOFRANGE))
			return;
		if (count < 0) {
			add_reply_error(c, OUTOFRANGE);
			return;
		}
	}
	bool wrong;
	dent *e = lookup_typed(c, 1, T_SET, &wrong);
	if (wrong)
		return;
	if (!e) {
		if (count == -1)
			add_reply_nil(c);
		else
			add_reply_array(c, 0);
		return;
	}
	dict *s = e->v.p;
	long long n = count == -1 ? 1 : (count < (long long)dict_size(s) ? count : (long long)dict_size(s));
	if (count != -1)
		add_reply_array(c, n);
	for (long long i = 0; i < n; i++) {
		dent *m = dict_random(s);
		add_reply_bulk(c, m->key, m->klen);
		hfree(dict_unlink(s, m->key, m->klen));
		g_srv.dirty++;
	}
	dict_maybe_shrink(s);
	delete_if_empty(e);
}

static void cmd_smismember(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_SET, &wrong);
	if (wrong)
		return;
	add_reply_array(c, c->argc - 2);
	for (int i = 2; i < c->argc; i++)
		add_reply_int(c, e && dict_find(e->v.p, ARG(i), ALEN(i)) ? 1 : 0);
}

static void cmd_smove(client *c)
{
	dent *s = lookup_key(ARG(1), ALEN(1)), *d = lookup_key(ARG(2), ALEN(2));
	if (!s) {
		add_reply_int(c, 0);
		return;
	}
	if (s->type != T_SET || (d && d->type != T_SET)) {
		add_reply_error(c, WRONGTYPE);
		return;
	}
	if (!dict_find(s->v.p, ARG(3), ALEN(3)) || s == d) {
		add_reply_int(c, s == d && dict_find(s->v.p, ARG(3), ALEN(3)) ? 1 : 0);
		return;
	}
	/* the destination gets the member first: a full heap changes nothing */
	bool created = !d;
	if (!d && !(d = lookup_or_create(c, 2, T_SET)))
		return;
	if (!dict_find(d->v.p, ARG(3), ALEN(3)) && !dict_add_raw(d->v.p, ARG(3), ALEN(3))) {
		if (created)
			delete_entry(d);
		add_reply_oom(c);
		return;
	}
	hfree(dict_unlink(s->v.p, ARG(3), ALEN(3)));
	delete_if_empty(s);
	g_srv.dirty++;
	add_reply_int(c, 1);
}

enum { SOP_INTER, SOP_UNION, SOP_DIFF };

struct setop_ctx {
	dict **sets;
	int nsets, op;
	dict *out;
	bool failed;
};

/* Is m in the result?  inter: in every other set; diff: in none of them */
static void setop_cb(void *arg, dent *m)
{
	struct setop_ctx *k = arg;
	if (k->failed || dict_find(k->out, m->key, m->klen))
		return;
	for (int i = 1; i < k->nsets && k->op != SOP_UNION; i++) {
		bool in = k->sets[i] && dict_find(k->sets[i], m->key, m->klen);
		if (in != (k->op == SOP_INTER))
			return;
	}
	if (!dict_add_raw(k->out, m->key, m->klen))
		k->failed = true;
}

/* SINTER / SUNION / SDIFF [STORE]: the result is built as a new set in the
 * heap (what STORE links in; freed after a plain reply). */
static dict *setop_generic(client *c, int op, int first)
{
	int n = c->argc - first;
	dict **sets = calloc((size_t)n, sizeof(dict *));
	if (!sets) {
		add_reply_error(c, "ERR out of memory");
		return NULL;
	}
	bool empty = false;
	for (int i = 0; i < n; i++) {
		bool wrong;
		dent *e = lookup_typed(c, first + i, T_SET, &wrong);
		if (wrong) {
			free(sets);
			return NULL;
		}
		sets[i] = e ? e->v.p : NULL;
		empty |= !e;
	}
	struct setop_ctx k = { sets, n, op, dict_new(), false };
	k.failed = !k.out;
	if (k.out && !(op == SOP_INTER && empty))
		for (int i = 0; i < (op == SOP_UNION ? n : 1) && !k.failed; i++)
			if (sets[i]) {
				struct setop_ctx one = k;
				if (op == SOP_UNION)
					one.nsets = 1;
				dict_foreach(sets[i], setop_cb, &one);
				k.failed = one.failed;
			}
	free(sets);
	if (k.failed) {
		if (k.out)
			dict_free(k.out, NULL);
		add_reply_oom(c);
		return NULL;
	}
	return k.out;
}

static void setop_reply(client *c, int op)
{
	dict *out = setop_generic(c, op, 1);
	if (!out)
		return;
	add_reply_array(c, (long long)dict_size(out));
	struct hgetall_ctx h = { c, false };
	dict_foreach(out, hgetall_cb, &h);
	dict_free(out, NULL);
}

/* A *STORE command's result (a new container of n members, or empty) goes
 * to argv[1], replacing whatever was there, TTL included; empty deletes. */
static void store_value(client *c, uint32_t type, void *v, uint64_t n)
{
	dent *d = lookup_key(ARG(1), ALEN(1));
	if (n == 0) {
		free_value(type, v);
		if (d) {
			delete_entry(d);
			g_srv.dirty++;
			signal_modified_key(ARG(1), ALEN(1));
		}
		add_reply_int(c, 0);
		return;
	}
	if (!d && !(d = db_add(ARG(1), ALEN(1), type, v))) {
		free_value(type, v);
		add_reply_oom(c);
		return;
	}
	if (d->v.p != v) {
		free_value(d->type, d->v.p);
		d->type = type;
		d->v.p = v;
		set_expire(d, -1);
	}
	g_srv.dirty++;
	signal_modified_key(ARG(1), ALEN(1));
	add_reply_int(c, (long long)n);
}

static void setop_store(client *c, int op)
{
	dict *out = setop_generic(c, op, 2);
	if (out)
		store_value(c, T_SET, out, dict_size(out));
}

static void cmd_sinter(client *c) { setop_reply(c, SOP_INTER); }
static void cmd_sunion(client *c) { setop_reply(c, SOP_UNION); }
static void cmd_sdiff(client *c) { setop_reply(c, SOP_DIFF); }
static void cmd_sinterstore(client *c) { setop_store(c, SOP_INTER); }
static void cmd_sunionstore(client *c) { setop_store(c, SOP_UNION); }
static void cmd_sdiffstore(client *c) { setop_store(c, SOP_DIFF); }

/* ------------------------------------------------------------- zsets */

static void cmd_zadd(client *c)
{
	int nx = 0, xx = 0, gt = 0, lt = 0, ch = 0, incr = argis(c, 0, "zincrby");
	int i = 2;
	for (; i < c->argc; i++) {
		if (argis(c, i, "nx"))
			nx = 1;
		else if (argis(c, i, "xx"))
			xx = 1;
		else if (argis(c, i, "gt"))
			gt = 1;
		else if (argis(c, i, "lt"))
			lt = 1;
		else if (argis(c, i, "ch"))
			ch = 1;
		else if (argis(c, i, "incr"))
			incr = 1;
		else
			break;
	}
	int nel = c->argc - i;
	if (nel % 2 || nel == 0) {
		add_reply_error(c, SYNTAX);
		return;
	}
	if (nx && xx) {
		add_reply_error(c, "ERR XX and NX options at the same time are not compatible");
		return;
	}
	if ((gt && nx) || (lt && nx) || (gt && lt)) {
		add_reply_error(c, "ERR GT, LT, and/or NX options at the same time are not compatible");
		return;
	}
	if (incr && nel > 2) {
		add_reply_error(c, "ERR INCR option supports a single increment-element pair");
		return;
	}
	for (int j = i; j < c->argc; j += 2) {
		double d;
		if (!get_double(c, j, &d))
			return;
	}
	dent *e;
	bool wrong;
	e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	if (!e) {
		if (xx) {
			if (incr)
				add_reply_nil(c);
			else
				add_reply_int(c, 0);
			return;
		}
		e = lookup_or_create(c, 1, T_ZSET);
		if (!e)
			return;
	}
	zset *z = e->v.p;
	long long added = 0, updated = 0;
	double score = 0;
	bool skipped = false;
	for (int j = i; j < c->argc; j += 2) {
		parse_double(ARG(j), ALEN(j), &score);
		dent *m = dict_find(z->d, ARG(j + 1), ALEN(j + 1));
		if (m) {
			if (nx) {
				skipped = true;
				continue;
			}
			double ns = incr ? m->v.d + score : score;
			if (isnan(ns)) {
				add_reply_error(c, "ERR resulting score is not a number (NaN)");
				return;
			}
			if ((gt && ns <= m->v.d) || (lt && ns >= m->v.d)) {
				skipped = true;
				continue;
			}
			score = ns;
			if (ns != m->v.d) {
				if (!zset_update(z, m, ns)) {
					delete_if_empty(e);
					add_reply_oom(c);
					return;
				}
				updated++;
				g_srv.dirty++;
			}
		} else {
			if (xx) {
				skipped = true;
				continue;
			}
			if (!zset_insert(z, ARG(j + 1), ALEN(j + 1), score)) {
				delete_if_empty(e);
				add_reply_oom(c);
				return;
			}
			added++;
			g_srv.dirty++;
		}
	}
	if (incr) {
		if (skipped)
			add_reply_nil(c);
		else
			add_reply_double(c, score);
	} else {
		add_reply_int(c, ch ? added + updated : added);
	}
	delete_if_empty(e);
}

static void cmd_zrem(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	long long n = 0;
	for (int i = 2; e && i < c->argc; i++) {
		dent *m = dict_find(((zset *)e->v.p)->d, ARG(i), ALEN(i));
		if (m) {
			zset_delete(e->v.p, m);
			n++;
			g_srv.dirty++;
		}
	}
	if (e)
		delete_if_empty(e);
	add_reply_int(c, n);
}

static void cmd_zscore(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	dent *m = e ? dict_find(((zset *)e->v.p)->d, ARG(2), ALEN(2)) : NULL;
	if (m)
		add_reply_double(c, m->v.d);
	else
		add_reply_nil(c);
}

static void cmd_zcard(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (!wrong)
		add_reply_int(c, e ? (long long)((zset *)e->v.p)->length : 0);
}

/* A score bound of ZRANGE BYSCORE: "1.5", "(1.5" (exclusive), "-inf", "+inf". */
struct zbound {
	double v;
	bool excl;
};

static bool parse_zbound(const char *p, size_t len, struct zbound *b)
{
	b->excl = len && p[0] == '(';
	if (b->excl) {
		p++;
		len--;
	}
	return parse_double(p, len, &b->v);
}

static bool above_min(double s, const struct zbound *min)
{
	return min->excl ? s > min->v : s >= min->v;
}

static bool below_max(double s, const struct zbound *max)
{
	return max->excl ? s < max->v : s <= max->v;
}

/* A lex bound of BYLEX: "-", "+", "[name" (inclusive), "(name". */
struct zlex {
	const char *p;
	size_t len;
	bool excl;
	int inf; /* -1: "-", 1: "+", 0: a name */
};

static bool parse_zlex(const char *p, size_t len, struct zlex *b)
{
	memset(b, 0, sizeof(*b));
	if (len == 1 && (p[0] == '-' || p[0] == '+')) {
		b->inf = p[0] == '-' ? -1 : 1;
		return true;
	}
	if (len == 0 || (p[0] != '(' && p[0] != '['))
		return false;
	b->excl = p[0] == '(';
	b->p = p + 1;
	b->len = len - 1;
	return true;
}

static int lexcmp(const dent *m, const struct zlex *b)
{
	size_t l = m->klen < b->len ? m->klen : b->len;
	int r = memcmp(m->key, b->p, l);
	if (r)
		return r;
	return m->klen < b->len ? -1 : m->klen > b->len;
}

enum { ZR_RANK, ZR_SCORE, ZR_LEX };

/* A BYSCORE or BYLEX range: is a node above the minimum, below the maximum? */
struct zspec {
	int kind;
	struct zbound smin, smax;
	struct zlex lmin, lmax;
};

static bool spec_above_min(const struct zspec *s, const zsknode *x)
{
	if (s->kind == ZR_SCORE)
		return above_min(x->score, &s->smin);
	if (s->lmin.inf)
		return s->lmin.inf < 0;
	int r = lexcmp(x->ele, &s->lmin);
	return s->lmin.excl ? r > 0 : r >= 0;
}

static bool spec_below_max(const struct zspec *s, const zsknode *x)
{
	if (s->kind == ZR_SCORE)
		return below_max(x->score, &s->smax);
	if (s->lmax.inf)
		return s->lmax.inf > 0;
	int r = lexcmp(x->ele, &s->lmax);
	return s->lmax.excl ? r < 0 : r <= 0;
}

/* Parses the range at argv[imin], argv[imax]; replies the error if bad. */
static bool parse_zspec(client *c, int kind, int imin, int imax, struct zspec *s)
{
	s->kind = kind;
	if (kind == ZR_SCORE) {
		if (parse_zbound(ARG(imin), ALEN(imin), &s->smin) && parse_zbound(ARG(imax), ALEN(imax), &s->smax))
			return true;
		add_reply_error(c, "ERR min or max is not a float");
	} else {
		if (parse_zlex(ARG(imin), ALEN(imin), &s->lmin) && parse_zlex(ARG(imax), ALEN(imax), &s->lmax))
			return true;
		add_reply_error(c, "ERR min or max not valid string range item");
	}
	return false;
}

/* The first node in the range (forward), or the last one (rev); NULL if none. */
static zsknode *zspec_first(zset *z, const struct zspec *s, bool rev)
{
	zsknode *x = z->header;
	for (int i = z->level - 1; i >= 0; i--)
		while (x->level[i].forward &&
		       (rev ? spec_below_max(s, x->level[i].forward) : !spec_above_min(s, x->level[i].forward)))
			x = x->level[i].forward;
	if (!rev)
		x = x->level[0].forward;
	else if (x == z->header)
		x = NULL;
	if (x && !(rev ? spec_above_min(s, x) : spec_below_max(s, x)))
		return NULL;
	return x;
}

static void zrange_spec(client *c, zset *z, const struct zspec *s, bool rev, long long offset, long long count,
			bool withscores)
{
	zsknode *x = zspec_first(z, s, rev);
	while (x && offset-- > 0)
		x = rev ? x->backward : x->level[0].forward;
	size_t off = add_reply_deferred(c);
	long long n = 0;
	while (x && count != 0 && (rev ? spec_above_min(s, x) : spec_below_max(s, x))) {
		add_reply_bulk(c, x->ele->key, x->ele->klen);
		if (withscores)
			add_reply_double(c, x->score);
		n++;
		count--;
		x = rev ? x->backward : x->level[0].forward;
	}
	set_deferred_array(c, off, withscores ? n * 2 : n);
}

static void zrange_rank(client *c, zset *z, long long start, long long end, bool rev, bool withscores)
{
	if (!z || !range_norm(&start, &end, (long long)z->length)) {
		add_reply_array(c, 0);
		return;
	}
	long long n = end - start + 1;
	add_reply_array(c, withscores ? n * 2 : n);
	zsknode *x = rev ? zset_by_rank(z, z->length - (uint64_t)start) : zset_by_rank(z, (uint64_t)start + 1);
	for (long long i = 0; i < n && x; i++) {
		add_reply_bulk(c, x->ele->key, x->ele->klen);
		if (withscores)
			add_reply_double(c, x->score);
		x = rev ? x->backward : x->level[0].forward;
	}
}

/* What a ZRANGE-family command fixes by its name: the range kind (-1: from
 * BYSCORE/BYLEX) and the direction (-1: from REV). */
static void zrange_kind(client *c, int *kind, int *rev)
{
	static const struct {
		const char *name;
		int kind, rev;
	} t[] = {
		{ "zrange", -1, -1 },	       { "zrevrange", ZR_RANK, 1 },	 { "zrangebyscore", ZR_SCORE, 0 },
		{ "zrevrangebyscore", ZR_SCORE, 1 }, { "zrangebylex", ZR_LEX, 0 }, { "zrevrangebylex", ZR_LEX, 1 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (argis(c, 0, t[i].name)) {
			*kind = t[i].kind;
			*rev = t[i].rev;
			return;
		}
}

/* ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
 * and ZREVRANGE, Z[REV]RANGEBYSCORE, Z[REV]RANGEBYLEX, with Redis's checks
 * in Redis's order (options, conflicts, then the range, then the key). */
static void cmd_zrange(client *c)
{
	long long offset = 0, count = -1, start = 0, end = 0;
	bool withscores = false, limit = false;
	int kind = -1, rev = -1;
	zrange_kind(c, &kind, &rev);
	for (int i = 4; i < c->argc; i++) {
		if (argis(c, i, "withscores")) {
			withscores = true;
		} else if (argis(c, i, "limit") && i + 2 < c->argc) {
			if (!get_ll(c, i + 1, &offset, NULL) || !get_ll(c, i + 2, &count, NULL))
				return;
			limit = true;
			i += 2;
		} else if (rev == -1 && argis(c, i, "rev")) {
			rev = 1;
		} else if (kind == -1 && argis(c, i, "bylex")) {
			kind = ZR_LEX;
		} else if (kind == -1 && argis(c, i, "byscore")) {
			kind = ZR_SCORE;
		} else {
			add_reply_error(c, SYNTAX);
			return;
		}
	}
	rev = rev == 1;
	kind = kind == -1 ? ZR_RANK : kind;
	if (limit && kind == ZR_RANK) {
		add_reply_error(c, "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
		return;
	}
	if (withscores && kind == ZR_LEX) {
		add_reply_error(c, "ERR syntax error, WITHSCORES not supported in combination with BYLEX");
		return;
	}
	struct zspec spec;
	if (kind == ZR_RANK ? !get_ll(c, 2, &start, NULL) || !get_ll(c, 3, &end, NULL)
			    : !parse_zspec(c, kind, rev ? 3 : 2, rev ? 2 : 3, &spec)) /* REV: max first */
		return;
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	zset *z = e ? e->v.p : NULL;
	if (kind == ZR_RANK)
		zrange_rank(c, z, start, end, rev, withscores);
	else if (!z || offset < 0)
		add_reply_array(c, 0);
	else
		zrange_spec(c, z, &spec, rev, offset, count, withscores);
}

static void zrank_generic(client *c, bool rev)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	dent *m = e ? dict_find(((zset *)e->v.p)->d, ARG(2), ALEN(2)) : NULL;
	if (!m) {
		add_reply_nil(c);
		return;
	}
	uint64_t r = zset_rank(e->v.p, m);
	add_reply_int(c, rev ? (long long)(((zset *)e->v.p)->length - r) : (long long)r - 1);
}

static void cmd_zrank(client *c) { zrank_generic(c, false); }
static void cmd_zrevrank(client *c) { zrank_generic(c, true); }

/* ZCOUNT and ZLEXCOUNT */
static void cmd_zcount(client *c)
{
	struct zspec spec;
	if (!parse_zspec(c, argis(c, 0, "zlexcount") ? ZR_LEX : ZR_SCORE, 2, 3, &spec))
		return;
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	long long n = 0;
	zsknode *x = e ? zspec_first(e->v.p, &spec, false) : NULL;
	zsknode *last = e ? zspec_first(e->v.p, &spec, true) : NULL;
	if (x && last) /* ranks: no walk over the range */
		n = (long long)zset_rank(e->v.p, last->ele) - (long long)zset_rank(e->v.p, x->ele) + 1;
	add_reply_int(c, n > 0 ? n : 0);
}

/* ZREMRANGEBYRANK / ZREMRANGEBYSCORE / ZREMRANGEBYLEX */
static void cmd_zremrange(client *c)
{
	int kind = argis(c, 0, "zremrangebyrank") ? ZR_RANK : argis(c, 0, "zremrangebyscore") ? ZR_SCORE : ZR_LEX;
	long long start = 0, end = 0;
	struct zspec spec;
	if (kind == ZR_RANK ? !get_ll(c, 2, &start, NULL) || !get_ll(c, 3, &end, NULL)
			    : !parse_zspec(c, kind, 2, 3, &spec))
		return;
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	zset *z = e ? e->v.p : NULL;
	zsknode *x = NULL;
	long long n = -1; /* -1: up to the end of the spec's range */
	if (z && kind == ZR_RANK && range_norm(&start, &end, (long long)z->length)) {
		x = zset_by_rank(z, (uint64_t)start + 1);
		n = end - start + 1;
	} else if (z && kind != ZR_RANK) {
		x = zspec_first(z, &spec, false);
	}
	long long removed = 0;
	while (x && (kind == ZR_RANK ? removed < n : spec_below_max(&spec, x))) {
		zsknode *next = x->level[0].forward;
		zset_delete(z, x->ele);
		removed++;
		x = next;
	}
	if (removed) {
		g_srv.dirty += removed;
		delete_if_empty(e);
	}
	add_reply_int(c, removed);
}

static void cmd_zmscore(client *c)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	add_reply_array(c, c->argc - 2);
	for (int i = 2; i < c->argc; i++) {
		dent *m = e ? dict_find(((zset *)e->v.p)->d, ARG(i), ALEN(i)) : NULL;
		if (m)
			add_reply_double(c, m->v.d);
		else
			add_reply_nil(c);
	}
}

/* ------------------------------------------- ZUNION / ZINTER / ZDIFF [STORE] */

struct zsrc {
	dict *d;
	bool is_set; /* a plain set: every member scores 1 */
	double weight;
};

enum { AGG_SUM, AGG_MIN, AGG_MAX };

static void zaggregate(double *target, double v, int agg)
{
	if (agg == AGG_SUM) {
		*target += v;
		if (isnan(*target)) /* inf + -inf */
			*target = 0;
	} else if (agg == AGG_MIN) {
		*target = v < *target ? v : *target;
	} else {
		*target = v > *target ? v : *target;
	}
}

static uint64_t zsrc_card(const struct zsrc *s)
{
	return s->d ? dict_size(s->d) : 0;
}

/* Sources smallest first, as Redis orders them (the order in which scores
 * are added decides the last bits of a sum); a stable insertion sort. */
static void zsrc_sort(struct zsrc *src, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && zsrc_card(&src[j - 1]) > zsrc_card(&src[j]); j--) {
			struct zsrc t = src[j];
			src[j] = src[j - 1];
			src[j - 1] = t;
		}
}

struct zop_ctx {
	struct zsrc *src;
	int n, op, agg, cur;
	zset *out;
	bool failed;
};

static void zop_cb(void *arg, dent *m)
{
	struct zop_ctx *k = arg;
	struct zsrc *s = &k->src[k->cur];
	if (k->failed)
		return;
	double score = (s->is_set ? 1.0 : m->v.d) * s->weight;
	if (isnan(score))
		score = 0;
	if (k->op == SOP_UNION) {
		dent *r = dict_find(k->out->d, m->key, m->klen);
		if (r) {
			double v = r->v.d;
			zaggregate(&v, score, k->agg);
			k->failed = v != r->v.d && !zset_update(k->out, r, v);
			return;
		}
	} else {
		for (int j = 1; j < k->n; j++) {
			dent *o = k->src[j].d ? dict_find(k->src[j].d, m->key, m->klen) : NULL; /* NULL: no such key */
			if (k->op == SOP_DIFF ? o != NULL : o == NULL)
				return;
			if (k->op == SOP_INTER)
				zaggregate(&score, (k->src[j].is_set ? 1.0 : o->v.d) * k->src[j].weight, k->agg);
		}
	}
	k->failed = !zset_insert(k->out, m->key, m->klen, score);
}

/* numkeys key... [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]: looks
 * up the sources (sets count as zsets of score 1), then the options, in
 * Redis's order.  Returns the number of sources, 0 with a reply sent. */
static int zop_parse(client *c, int nki, int op, bool store, struct zsrc **srcp, int *agg, bool *withscores)
{
	long long n;
	if (!get_ll(c, nki, &n, NULL))
		return 0;
	if (n < 1) {
		char name[32];
		snprintf(name, sizeof(name), "%s", ARG(0));
		for (char *p = name; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		add_reply_errorf(c, "ERR at least 1 input key is needed for '%s' command", name);
		return 0;
	}
	if (n > c->argc - nki - 1) {
		add_reply_error(c, SYNTAX);
		return 0;
	}
	struct zsrc *src = calloc((size_t)n, sizeof(*src));
	if (!src) {
		add_reply_error(c, "ERR out of memory");
		return 0;
	}
	int j = nki + 1;
	for (int i = 0; i < n; i++, j++) {
		dent *e = lookup_key(ARG(j), ALEN(j));
		if (e && e->type != T_ZSET && e->type != T_SET) {
			free(src);
			add_reply_error(c, WRONGTYPE);
			return 0;
		}
		src[i].d = !e ? NULL : e->type == T_ZSET ? ((zset *)e->v.p)->d : e->v.p;
		src[i].is_set = e && e->type == T_SET;
		src[i].weight = 1.0;
	}
	*agg = AGG_SUM;
	*withscores = false;
	while (j < c->argc) {
		int left = c->argc - j;
		if (op != SOP_DIFF && left > n && argis(c, j, "weights")) {
			for (int i = 0; i < n; i++)
				if (!parse_double(ARG(j + 1 + i), ALEN(j + 1 + i), &src[i].weight)) {
					free(src);
					add_reply_error(c, "ERR weight value is not a float");
					return 0;
				}
			j += (int)n + 1;
		} else if (op != SOP_DIFF && left >= 2 && argis(c, j, "aggregate") &&
			   (argis(c, j + 1, "sum") || argis(c, j + 1, "min") || argis(c, j + 1, "max"))) {
			*agg = argis(c, j + 1, "sum") ? AGG_SUM : argis(c, j + 1, "min") ? AGG_MIN : AGG_MAX;
			j += 2;
		} else if (!store && argis(c, j, "withscores")) {
			*withscores = true;
			j++;
		} else {
			free(src);
			add_reply_error(c, SYNTAX);
			return 0;
		}
	}
	*srcp = src;
	return (int)n;
}

/* ZUNION/ZINTER/ZDIFF numkeys ... and their STORE forms (destination first). */
static void zsetop_generic(client *c, int op, bool store)
{
	struct zsrc *src;
	int agg;
	bool withscores;
	int n = zop_parse(c, store ? 2 : 1, op, store, &src, &agg, &withscores);
	if (!n)
		return;
	if (op != SOP_DIFF)
		zsrc_sort(src, n);
	struct zop_ctx k = { src, n, op, agg, 0, zset_new(), false };
	k.failed = !k.out;
	for (int i = 0; i < (op == SOP_UNION ? n : 1) && !k.failed; i++) {
		k.cur = i;
		if (src[i].d && (op != SOP_INTER || zsrc_card(&src[0]) > 0))
			dict_foreach(src[i].d, zop_cb, &k);
	}
	free(src);
	if (k.failed) {
		zset_free(k.out);
		add_reply_oom(c);
		return;
	}
	if (!store) {
		long long len = (long long)k.out->length;
		add_reply_array(c, withscores ? len * 2 : len);
		for (zsknode *x = k.out->header->level[0].forward; x; x = x->level[0].forward) {
			add_reply_bulk(c, x->ele->key, x->ele->klen);
			if (withscores)
				add_reply_double(c, x->score);
		}
		zset_free(k.out);
		return;
	}
	store_value(c, T_ZSET, k.out, k.out->length);
}

static void cmd_zunion(client *c) { zsetop_generic(c, SOP_UNION, false); }
static void cmd_zinter(client *c) { zsetop_generic(c, SOP_INTER, false); }
static void cmd_zdiff(client *c) { zsetop_generic(c, SOP_DIFF, false); }
static void cmd_zunionstore(client *c) { zsetop_generic(c, SOP_UNION, true); }
static void cmd_zinterstore(client *c) { zsetop_generic(c, SOP_INTER, true); }
static void cmd_zdiffstore(client *c) { zsetop_generic(c, SOP_DIFF, true); }

/* ZPOPMIN and ZPOPMAX */
static void cmd_zpopmin(client *c)
{
	long long count = 1;
	if (c->argc > 3) {
		add_reply_error(c, SYNTAX);
		return;
	}
	if (c->argc == 3) {
		if (!get_ll(c, 2, &count, OUTOFRANGE))
			return;
		if (count < 0) {
			add_reply_error(c, OUTOFRANGE);
			return;
		}
	}
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	if (!e) {
		add_reply_array(c, 0);
		return;
	}
	zset *z = e->v.p;
	long long n = count < (long long)z->length ? count : (long long)z->length;
	add_reply_array(c, n * 2);
	bool max = argis(c, 0, "zpopmax");
	for (long long i = 0; i < n; i++) {
		zsknode *x = max ? z->tail : z->header->level[0].forward;
		add_reply_bulk(c, x->ele->key, x->ele->klen);
		add_reply_double(c, x->score);
		zset_delete(z, x->ele);
		g_srv.dirty++;
	}
	delete_if_empty(e);
}

/* ------------------------------------------------------------- server */

static void cmd_ping(client *c)
{
	if (c->argc > 2) {
		add_reply_error(c, "ERR wrong number of arguments for 'ping' command");
		return;
	}
	if (c->argc == 2)
		add_reply_bulk(c, ARG(1), ALEN(1));
	else
		add_reply(c, "+PONG\r\n", 7);
}

static void cmd_echo(client *c)
{
	add_reply_bulk(c, ARG(1), ALEN(1));
}

static void cmd_select(client *c)
{
	long long db;
	if (!get_ll(c, 1, &db, NULL))
		return;
	if (db != 0)
		add_reply_error(c, "ERR DB index is out of range");
	else
		add_reply_ok(c);
}

static void cmd_quit(client *c)
{
	add_reply_ok(c);
	c->flags |= CF_CLOSE_AFTER_REPLY;
}

/* Password check whose time does not depend on where the first differing
 * byte is (nor, beyond the length, on the contents). */
static bool secret_equal(const char *given, size_t glen, const char *secret)
{
	size_t slen = strlen(secret);
	unsigned char diff = (unsigned char)(glen != slen);
	for (size_t i = 0; i < glen; i++)
		diff |= (unsigned char)(given[i] ^ secret[i % (slen ? slen : 1)]);
	return diff == 0;
}

static void cmd_auth(client *c)
{
	if (c->argc > 3) {
		add_reply_error(c, SYNTAX);
		return;
	}
	if (!g_srv.requirepass[0]) {
		add_reply_error(c, "ERR AUTH <password> called without any password configured for the "
				   "default user. Are you sure your configuration is correct?");
		return;
	}
	const char *pass = ARG(c->argc - 1);
	bool user_ok = c->argc == 2 || argis(c, 1, "default");
	if (user_ok && secret_equal(pass, ALEN(c->argc - 1), g_srv.requirepass)) {
		c->flags |= CF_AUTHED;
		add_reply_ok(c);
	} else {
		add_reply_error(c, "WRONGPASS invalid username-password pair or user is disabled.");
	}
}

static void cmd_time(client *c)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	char a[32], b[32];
	snprintf(a, sizeof(a), "%ld", (long)tv.tv_sec);
	snprintf(b, sizeof(b), "%ld", (long)tv.tv_usec);
	add_reply_array(c, 2);
	add_reply_bulk_cstr(c, a);
	add_reply_bulk_cstr(c, b);
}

static void cmd_lastsave(client *c)
{
	add_reply_int(c, (long long)g_srv.lastsave);
}

static void cmd_bgsave(client *c)
{
	if (c->argc > 2 || (c->argc == 2 && !argis(c, 1, "schedule"))) {
		add_reply_error(c, SYNTAX);
		return;
	}
	if (g_srv.ckpt_running) {
		add_reply_error(c, "ERR Background save already in progress");
		return;
	}
	int rc = persist_begin(true);
	if (rc < 0)
		add_reply_errorf(c, "ERR Background save failed to start: %s", ckpt_strerror(rc));
	else
		add_reply_status(c, "Background saving started");
}

static void cmd_save(client *c)
{
	if (g_srv.ckpt_running) {
		add_reply_error(c, "ERR Background save already in progress");
		return;
	}
	int rc = persist_begin(false);
	if (rc == 0)
		rc = persist_finish();
	if (rc < 0)
		add_reply_error(c, "ERR");
	else
		add_reply_ok(c);
}

static void cmd_shutdown(client *c)
{
	bool save = false, nosave = false;
	for (int i = 1; i < c->argc; i++) {
		if (argis(c, i, "save"))
			save = true;
		else if (argis(c, i, "nosave"))
			nosave = true;
		else if (argis(c, i, "now") || argis(c, i, "force"))
			;
		else {
			add_reply_error(c, SYNTAX);
			return;
		}
	}
	if (save && nosave) {
		add_reply_error(c, SYNTAX);
		return;
	}
	log_msg('#', "User requested shutdown...");
	/* as Redis: without an argument, save only when save points are
	 * configured (--save "" means the data need not outlive the process) */
	if (server_prepare_shutdown(save, nosave) != 0) {
		add_reply_error(c, "ERR Errors trying to SHUTDOWN. Check logs.");
		return;
	}
	g_srv.shutdown_asap = true;
}

static bool valid_client_name(client *c, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] < '!' || p[i] > '~') {
			add_reply_error(c, "ERR Client names cannot contain spaces, newlines or special characters.");
			return false;
		}
	return true;
}

/* CLIENT KILL: the victim's socket is shut down and the event loop frees
 * it on the hang-up, as for any peer that went away; the caller itself is
 * closed after its reply. */
static void kill_client(client *c, client *o)
{
	if (o == c)
		c->flags |= CF_CLOSE_AFTER_REPLY;
	else
		shutdown(o->fd, SHUT_RDWR);
}

static bool client_kill_match(client *o, long long id, const char *type, const char *addr)
{
	if (id >= 0 && (long long)o->id != id)
		return false;
	if (addr && strcmp(o->addr, addr) != 0)
		return false;
	if (!type)
		return true;
	const char *t = (o->flags & CF_MASTER) ? "master" : repl_client_is_replica(o) ? "replica" : "normal";
	return !strcasecmp(type, t) || (!strcasecmp(type, "slave") && !strcmp(t, "replica"));
}

static void cmd_client_kill(client *c)
{
	if (c->argc == 3) { /* the old form: CLIENT KILL addr:port */
		for (client *o = g_srv.clients; o; o = o->next)
			if (!(o->flags & CF_CLOSE_ASAP) && !strcmp(o->addr, ARG(2))) {
				add_reply_ok(c);
				kill_client(c, o);
				return;
			}
		add_reply_error(c, "ERR No such client");
		return;
	}
	long long id = -1;
	const char *type = NULL, *addr = NULL;
	bool skipme = true;
	for (int i = 2; i < c->argc; i += 2) {
		if (i + 1 >= c->argc) {
			add_reply_error(c, SYNTAX);
			return;
		}
		if (argis(c, i, "id")) {
			if (!parse_ll(ARG(i + 1), ALEN(i + 1), &id) || id <= 0) {
				add_reply_error(c, "ERR client-id should be greater than 0");
				return;
			}
		} else if (argis(c, i, "type")) {
			type = ARG(i + 1);
			if (strcasecmp(type, "normal") && strcasecmp(type, "master") && strcasecmp(type, "replica") &&
			    strcasecmp(type, "slave") && strcasecmp(type, "pubsub")) {
				add_reply_errorf(c, "ERR Unknown client type '%.64s'", type);
				return;
			}
		} else if (argis(c, i, "addr")) {
			addr = ARG(i + 1);
		} else if (argis(c, i, "skipme") && (argis(c, i + 1, "yes") || argis(c, i + 1, "no"))) {
			skipme = argis(c, i + 1, "yes");
		} else {
			add_reply_error(c, SYNTAX);
			return;
		}
	}
	long long n = 0;
	for (client *o = g_srv.clients; o; o = o->next)
		if (!(o->flags & CF_CLOSE_ASAP) && !(skipme && o == c) && client_kill_match(o, id, type, addr)) {
			kill_client(c, o);
			n++;
		}
	add_reply_int(c, n);
}

static void cmd_client(client *c)
{
	if (argis(c, 1, "setname") && c->argc == 3) {
		if (!valid_client_name(c, ARG(2), ALEN(2)))
			return;
		free(c->name);
		c->name = ALEN(2) ? strdup(ARG(2)) : NULL;
		add_reply_ok(c);
	} else if (argis(c, 1, "getname") && c->argc == 2) {
		add_reply_bulk_cstr(c, c->name);
	} else if (argis(c, 1, "id") && c->argc == 2) {
		add_reply_int(c, (long long)c->id);
	} else if (argis(c, 1, "kill") && c->argc >= 3) {
		cmd_client_kill(c);
	} else if (argis(c, 1, "list") && c->argc == 2) {
		size_t cap = 256 * (size_t)(g_srv.nclients + 1), off = 0;
		char *buf = malloc(cap);
		if (!buf) {
			add_reply_error(c, "ERR out of memory");
			return;
		}
		time_t now = time(NULL);
		for (client *o = g_srv.clients; o && off + 256 < cap; o = o->next)
			off += (size_t)snprintf(buf + off, cap - off, "id=%llu addr=%s fd=%d name=%s age=%ld qbuf=%zu obl=%zu\n",
						(unsigned long long)o->id, o->addr, o->fd, o->name ? o->name : "",
						(long)(now - o->ctime), o->qlen, o->olen);
		add_reply_bulk(c, buf, off);
		free(buf);
	} else {
		add_reply_errorf(c, "ERR unknown subcommand or wrong number of arguments for '%.128s'. Try CLIENT HELP.",
				 ARG(1));
	}
}

static const char *mode_name(void)
{
	return g_srv.mode == CKPT_TRAP_THREAD ? "thread" : g_srv.mode == CKPT_TRAP_SIGBUS ? "sigbus" : "fork";
}

static void save_string(char *buf, size_t n)
{
	size_t off = 0;
	buf[0] = 0;
	for (int i = 0; i < g_srv.nsave; i++)
		off += (size_t)snprintf(buf + off, n - off, "%s%ld %ld", i ? " " : "", g_srv.save[i].seconds,
					g_srv.save[i].changes);
}

/* CONFIG SET: the parameters redis-ckpt can change at run time. */
static void config_set(client *c)
{
	if (argis(c, 2, "save")) {
		if (!parse_save_param(ARG(3))) {
			add_reply_errorf(c, "ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save parameters");
			return;
		}
		add_reply_ok(c);
	} else if (argis(c, 2, "rdbcompression")) {
		if (!argis(c, 3, "yes") && !argis(c, 3, "no")) {
			add_reply_error(c, "ERR CONFIG SET failed (possibly related to argument 'rdbcompression') - "
					   "argument must be 'yes' or 'no'");
			return;
		}
		g_srv.rdb_compression = argis(c, 3, "yes");
		add_reply_ok(c);
	} else if (argis(c, 2, "repl-backlog-size")) {
		long long v;
		if (!parse_ll(ARG(3), ALEN(3), &v) || v < 1) {
			add_reply_error(c, "ERR CONFIG SET failed (possibly related to argument 'repl-backlog-size') - "
					   "argument must be a memory value");
			return;
		}
		g_srv.repl_backlog_size = v < 16384 ? 16384 : (size_t)v; /* Redis's minimum */
		repl_backlog_resize();
		add_reply_ok(c);
	} else if (argis(c, 2, "appendonly")) {
		if (argis(c, 3, "no"))
			add_reply_ok(c);
		else
			add_reply_error(c, "ERR CONFIG SET failed (possibly related to argument 'appendonly') - "
					   "redis-ckpt persists by checkpoints only");
	} else {
		add_reply_errorf(c, "ERR Unknown option or number of arguments for CONFIG SET - '%.128s'", ARG(2));
	}
}

static void cmd_config(client *c)
{
	if (argis(c, 1, "get") && c->argc >= 3) {
		char save[256], port[16], maxc[16], maxmem[32], backlog[32];
		save_string(save, sizeof(save));
		snprintf(port, sizeof(port), "%d", g_srv.port);
		snprintf(maxc, sizeof(maxc), "%d", g_srv.maxclients);
		snprintf(maxmem, sizeof(maxmem), "%zu", g_srv.heap_size);
		snprintf(backlog, sizeof(backlog), "%zu", g_srv.repl_backlog_size);
		const char *params[][2] = {
			{ "save", save },
			{ "appendonly", "no" },
			{ "port", port },
			{ "bind", g_srv.bind },
			{ "dir", g_srv.dir },
			{ "dbfilename", g_srv.dbfilename },
			{ "maxclients", maxc },
			{ "maxmemory", maxmem },
			{ "databases", "1" },
			{ "snapshot-mode", mode_name() },
			{ "incremental", g_srv.incremental ? "yes" : "no" },
			{ "protected-mode", g_srv.protected_mode ? "yes" : "no" },
			{ "proto-max-bulk-len", "536870912" },
			{ "repl-backlog-size", backlog },
			{ "rdbcompression", g_srv.rdb_compression ? "yes" : "no" },
		};
		size_t np = sizeof(params) / sizeof(params[0]);
		bool hit[sizeof(params) / sizeof(params[0])] = { 0 };
		long long n = 0;
		for (int a = 2; a < c->argc; a++)
			for (size_t p = 0; p < np; p++)
				if (!hit[p] && glob_match(ARG(a), ALEN(a), params[p][0], strlen(params[p][0]), true)) {
					hit[p] = true;
					n++;
				}
		add_reply_array(c, n * 2);
		for (size_t p = 0; p < np; p++)
			if (hit[p]) {
				add_reply_bulk_cstr(c, params[p][0]);
				add_reply_bulk_cstr(c, params[p][1]);
			}
	} else if (argis(c, 1, "set") && c->argc == 4) {
		config_set(c);
	} else if (argis(c, 1, "resetstat") && c->argc == 2) {
		g_srv.stat_commands = g_srv.stat_conns = g_srv.stat_rejected = g_srv.stat_expired = 0;
		g_srv.stat_keyspace_hits = g_srv.stat_keyspace_misses = 0;
		add_reply_ok(c);
	} else {
		add_reply_errorf(c, "ERR unknown subcommand or wrong number of arguments for '%.128s'. Try CONFIG HELP.",
				 ARG(1));
	}
}

static void cmd_command(client *c)
{
	if (c->argc == 1) {
		add_reply_array(c, (long long)command_count());
		for (size_t i = 0; i < command_count(); i++)
			command_reply_info(c, &g_commands[i]);
	} else if (argis(c, 1, "count") && c->argc == 2) {
		add_reply_int(c, (long long)command_count());
	} else if (argis(c, 1, "docs")) {
		/* no docs: redis-cli falls back to its built-in help */
		add_reply_array(c, 0);
	} else if (argis(c, 1, "info")) {
		add_reply_array(c, c->argc - 2);
		for (int i = 2; i < c->argc; i++) {
			struct command *cmd = command_lookup(ARG(i), ALEN(i));
			if (cmd)
				command_reply_info(c, cmd);
			else
				add_reply_nil(c);
		}
	} else if (argis(c, 1, "list") && c->argc == 2) {
		add_reply_array(c, (long long)command_count());
		for (size_t i = 0; i < command_count(); i++) {
			char name[64];
			size_t l = strlen(g_commands[i].name);
			for (size_t j = 0; j <= l; j++)
				name[j] = (char)tolower((unsigned char)g_commands[i].name[j]);
			add_reply_bulk(c, name, l);
		}
	} else {
		add_reply_errorf(c, "ERR unknown subcommand or wrong number of arguments for '%.128s'. Try COMMAND HELP.",
				 ARG(1));
	}
}

/* used_memory is what the allocator holds live (blocks allocated and not
 * freed: it drops after DEL and FLUSHALL), as Redis's is what its allocator
 * holds.  used_memory_peak keeps Redis's meaning, the highest used_memory
 * seen since start (sampled by the cron and by INFO).  The allocator's own
 * high-water mark, what a full checkpoint covers and never shrinks, is
 * not a Redis notion: it is ckpt_heap_extent. */
static uint64_t g_used_peak;

static struct ckpt_alloc_stats memory_sample(void)
{
	struct ckpt_alloc_stats st;
	memset(&st, 0, sizeof(st));
	st.struct_size = sizeof(st);
	if (ckpt_alloc_stats(g_heap, &st) == 0 && st.live_bytes > g_used_peak)
		g_used_peak = st.live_bytes;
	return st;
}

void memory_cron(void)
{
	memory_sample();
}

/* Redis's bytesToHuman(): 1.50K, 12.00M ... */
static void bytes_human(char *buf, size_t n, uint64_t b)
{
	static const char units[] = "BKMGTP";
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, n, "%lluB", (unsigned long long)b);
	else
		snprintf(buf, n, "%.2f%c", v, units[u]);
}

char *info_text(const char *section)
{
	size_t cap = 8192, off = 0;
	char *b = malloc(cap);
	if (!b)
		return NULL;
	bool all = !section || !strcasecmp(section, "all") || !strcasecmp(section, "default") ||
		   !strcasecmp(section, "everything");
#define SEC(name) (all || !strcasecmp(section, name))
#define P(...) (off += (size_t)snprintf(b + off, cap - off, __VA_ARGS__))
	time_t now = time(NULL);
	if (SEC("server")) {
		const char *lv;
		ckpt_version(&lv);
		P("# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\nlibckpt_version:%s\r\n"
		  "process_id:%d\r\ntcp_port:%d\r\nuptime_in_seconds:%ld\r\nexecutable:redis-ckpt\r\n\r\n",
		  RC_VERSION, lv, (int)getpid(), g_srv.port, (long)(now - g_srv.start_time));
	}
	if (SEC("clients"))
		P("# Clients\r\nconnected_clients:%d\r\nmaxclients:%d\r\n\r\n", g_srv.nclients, g_srv.maxclients);
	if (SEC("memory")) {
		struct ckpt_alloc_stats st = memory_sample();
		char h[32], hp[32];
		bytes_human(h, sizeof(h), st.live_bytes);
		bytes_human(hp, sizeof(hp), g_used_peak);
		P("# Memory\r\nused_memory:%llu\r\nused_memory_human:%s\r\nused_memory_peak:%llu\r\n"
		  "used_memory_peak_human:%s\r\nmaxmemory:%zu\r\nckpt_live_blocks:%llu\r\nckpt_heap_extent:%llu\r\n"
		  "ckpt_heap_size:%zu\r\n\r\n",
		  (unsigned long long)st.live_bytes, h, (unsigned long long)g_used_peak, hp, ckpt_heap_size(g_heap),
		  (unsigned long long)st.live_blocks, (unsigned long long)st.extent_bytes, ckpt_heap_size(g_heap));
	}
	if (SEC("persistence")) {
		struct ckpt_stats st;
		memset(&st, 0, sizeof(st));
		st.struct_size = sizeof(st);
		bool have = ckpt_stats(g_heap, &st) == 0 && (g_srv.ckpt_running || g_srv.have_stats);
		if (!have)
			memset(&st, 0, sizeof(st));
		uint64_t done = 0, total = 0;
		if (g_srv.ckpt_running || g_srv.have_stats)
			ckpt_poll(g_heap, &done, &total); /* after the end: the last one's */
		P("# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:%lld\r\n"
		  "rdb_bgsave_in_progress:%d\r\nrdb_last_save_time:%ld\r\nrdb_last_bgsave_status:%s\r\n"
		  "rdb_last_bgsave_time_sec:%lld\r\nrdb_current_bgsave_time_sec:%lld\r\n"
		  "rdb_saves:%lld\r\naof_enabled:0\r\nlatest_fork_usec:%llu\r\n",
		  g_srv.dirty, g_srv.ckpt_running ? 1 : 0, (long)g_srv.lastsave, g_srv.last_status == 0 ? "ok" : "err",
		  g_srv.have_stats ? g_srv.last_duration_sec : -1LL,
		  g_srv.ckpt_running ? (long long)(now - g_srv.ckpt_start) : -1LL, g_srv.saves_done,
		  (unsigned long long)(st.pause_ns / 1000));
		P("ckpt_mode:%s\r\nckpt_incremental_enabled:%d\r\nckpt_pause_us:%llu\r\nckpt_traps:%llu\r\n"
		  "ckpt_pages_saved_by_traps:%llu\r\nckpt_pool_peak_bytes:%llu\r\nckpt_pool_waits:%llu\r\n"
		  "ckpt_bytes_written:%llu\r\nckpt_incremental:%d\r\nckpt_generation:%llu\r\n"
		  "ckpt_duration_us:%llu\r\nckpt_pages_total:%llu\r\nckpt_pages_emitted:%llu\r\n"
		  "ckpt_progress_done_bytes:%llu\r\nckpt_progress_total_bytes:%llu\r\nckpt_keys_at_begin:%llu\r\n"
		  "ckpt_last_error:%s\r\nckpt_restore_us:%llu\r\nckpt_restored_keys:%llu\r\nckpt_image:%s\r\n",
		  mode_name(), g_srv.incremental ? 1 : 0, (unsigned long long)(st.pause_ns / 1000),
		  (unsigned long long)st.traps, (unsigned long long)st.pages_saved_by_traps,
		  (unsigned long long)st.pool_peak_bytes, (unsigned long long)st.pool_waits,
		  (unsigned long long)st.bytes_written, st.incremental, (unsigned long long)st.generation,
		  (unsigned long long)(st.duration_ns / 1000), (unsigned long long)st.pages_total,
		  (unsigned long long)st.pages_emitted, (unsigned long long)done, (unsigned long long)total,
		  (unsigned long long)g_srv.keys_at_begin,
		  g_srv.last_status ? ckpt_err_name(g_srv.last_status) : "none",
		  (unsigned long long)(g_srv.restore_ns / 1000), (unsigned long long)g_srv.restored_keys, g_srv.path);
		P("ckpt_preparing:%d\r\nckpt_prepare_us:%llu\r\nckpt_prep_passes:%llu\r\nckpt_cut_pages:%llu\r\n"
		  "ckpt_prep_traps:%llu\r\nckpt_prep_trap_p50_us:%.1f\r\nckpt_prep_trap_p99_us:%.1f\r\n",
		  g_srv.ckpt_preparing ? 1 : 0, (unsigned long long)(st.prepare_ns / 1000),
		  (unsigned long long)st.prep_passes, (unsigned long long)st.cut_pages,
		  (unsigned long long)st.prep_traps, st.prep_trap_p50_ns / 1e3, st.prep_trap_p99_ns / 1e3);
		uint64_t wres = 0, wtot = 0;
		int wrc = ckpt_restore_progress(g_heap, &wres, &wtot);
		P("ckpt_restore_mode:%s\r\nckpt_restore_resident_pages:%llu\r\nckpt_restore_total_pages:%llu\r\n"
		  "ckpt_restore_status:%s\r\n\r\n",
		  g_srv.restore_eager ? "eager" : "lazy", (unsigned long long)wres, (unsigned long long)wtot,
		  wrc < 0 ? ckpt_err_name(wrc) : wres < wtot ? "warming" : "resident");
	}
	if (SEC("stats")) {
		long long full, pok, perr;
		repl_sync_stats(&full, &pok, &perr);
		P("# Stats\r\ntotal_connections_received:%lld\r\ntotal_commands_processed:%lld\r\n"
		  "rejected_connections:%lld\r\nsync_full:%lld\r\nsync_partial_ok:%lld\r\nsync_partial_err:%lld\r\n"
		  "expired_keys:%lld\r\nkeyspace_hits:%lld\r\nkeyspace_misses:%lld\r\n\r\n",
		  g_srv.stat_conns, g_srv.stat_commands, g_srv.stat_rejected, full, pok, perr, g_srv.stat_expired,
		  g_srv.stat_keyspace_hits, g_srv.stat_keyspace_misses);
	}
	if (SEC("replication"))
		off += repl_info(b + off, cap - off);
	if (SEC("keyspace")) {
		P("# Keyspace\r\n");
		if (dict_size(g_ks->db))
			P("db0:keys=%llu,expires=%llu,avg_ttl=0\r\n", (unsigned long long)dict_size(g_ks->db),
			  (unsigned long long)dict_size(g_ks->expires));
	}
#undef P
#undef SEC
	/* drop the last blank line, as Redis does */
	while (off >= 2 && b[off - 1] == '\n' && b[off - 2] == '\r' && off >= 4 && b[off - 3] == '\n')
		off -= 2;
	b[off] = 0;
	return b;
}

static void cmd_info(client *c)
{
	char *t = info_text(c->argc >= 2 ? ARG(1) : NULL);
	if (!t) {
		add_reply_error(c, "ERR out of memory");
		return;
	}
	add_reply_bulk(c, t, strlen(t));
	free(t);
}

/* ------------------------------------------------------------- introspection */

/* OBJECT ENCODING names what holds the value here, not what Redis would
 * pick: strings follow Redis's rule (int / embstr up to 44 bytes / raw), so
 * clients that branch on it see the same; a list is a doubly linked list of
 * nodes ("linkedlist"), hashes and sets are hash tables ("hashtable") and a
 * zset is a dict plus a skiplist ("skiplist") at every size. */
static const char *encoding_name(const dent *e)
{
	switch (e->type) {
	case T_STRING: {
		const hstr *s = e->v.p;
		long long v;
		if (s->len <= 20 && parse_ll(s->buf, s->len, &v))
			return "int";
		return s->len <= 44 ? "embstr" : "raw";
	}
	case T_LIST: return "linkedlist";
	case T_ZSET: return "skiplist";
	default: return "hashtable";
	}
}

static void cmd_object(client *c)
{
	if (argis(c, 1, "help") && c->argc == 2) {
		static const char *const help[] = {
			"OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
			"ENCODING <key>",
			"    Return the kind of internal representation used in order to store the value",
			"    associated with a <key>.",
			"REFCOUNT <key>",
			"    Return the number of references of the value associated with the specified",
			"    <key> (always 1: values are never shared here).",
		};
		add_reply_array(c, 7);
		for (int i = 0; i < 7; i++)
			add_reply_status(c, help[i]);
		return;
	}
	bool enc = argis(c, 1, "encoding"), ref = argis(c, 1, "refcount");
	if (!enc && !ref) {
		add_reply_errorf(c, "ERR unknown subcommand '%.128s'. Try OBJECT HELP.", ARG(1));
		return;
	}
	if (c->argc != 3) {
		add_reply_errorf(c, "ERR wrong number of arguments for 'object|%s' command", enc ? "encoding" : "refcount");
		return;
	}
	dent *e = lookup_key(ARG(2), ALEN(2));
	if (!e)
		add_reply_nil(c);
	else if (enc)
		add_reply_bulk_cstr(c, encoding_name(e));
	else
		add_reply_int(c, 1);
}

static size_t usable(const void *p)
{
	return p ? ckpt_usable_size(g_heap, p) : 0;
}

/* Bytes of a dict: its tables, plus its entries estimated from up to
 * @samples of them (0: all), as MEMORY USAGE does in Redis. */
static size_t dict_bytes(dict *d, bool hash_values, long long samples)
{
	size_t bytes = usable(d) + usable(d->table[0]) + usable(d->table[1]), seen = 0, sum = 0;
	for (int t = 0; t < 2; t++)
		for (uint64_t i = 0; i < d->size[t] && (samples == 0 || (long long)seen < samples); i++)
			for (dent *m = d->table[t][i]; m && (samples == 0 || (long long)seen < samples); m = m->next) {
				sum += usable(m) + (hash_values ? usable(m->v.p) : 0);
				seen++;
			}
	return bytes + (seen ? (size_t)((double)sum / (double)seen * (double)dict_size(d)) : 0);
}

static size_t value_bytes(const dent *e, long long samples)
{
	switch (e->type) {
	case T_STRING: return usable(e->v.p);
	case T_LIST: {
		hlist *l = e->v.p;
		size_t seen = 0, sum = 0;
		for (lnode *n = l->head; n && (samples == 0 || (long long)seen < samples); n = n->next, seen++)
			sum += usable(n);
		return usable(l) + (seen ? (size_t)((double)sum / (double)seen * (double)l->len) : 0);
	}
	case T_HASH:
	case T_SET: return dict_bytes(e->v.p, e->type == T_HASH, samples);
	case T_ZSET: {
		zset *z = e->v.p;
		/* a skiplist node averages 1.33 levels: count the header and
		 * a node per member of the average size */
		size_t node = sizeof(zsknode) + sizeof(struct zsklevel) * 4 / 3;
		return usable(z) + usable(z->header) + dict_bytes(z->d, false, samples) + node * z->length;
	}
	}
	return 0;
}

/* MEMORY USAGE key [SAMPLES n]: heap bytes of the key's entry and value
 * (allocator block sizes; containers estimated from n sampled elements,
 * default 5, 0 for all). */
static void cmd_memory(client *c)
{
	if (!argis(c, 1, "usage") || c->argc < 3) {
		if (argis(c, 1, "usage"))
			add_reply_error(c, "ERR wrong number of arguments for 'memory|usage' command");
		else
			add_reply_errorf(c, "ERR unknown subcommand '%.128s'. Try MEMORY HELP.", ARG(1));
		return;
	}
	long long samples = 5;
	for (int i = 3; i < c->argc; i++) {
		if (argis(c, i, "samples") && i + 1 < c->argc) {
			if (!get_ll(c, ++i, &samples, NULL))
				return;
			if (samples < 0) {
				add_reply_error(c, SYNTAX);
				return;
			}
		} else {
			add_reply_error(c, SYNTAX);
			return;
		}
	}
	dent *e = lookup_key(ARG(2), ALEN(2));
	if (!e)
		add_reply_nil(c);
	else
		add_reply_int(c, (long long)(usable(e) + value_bytes(e, samples)));
}

/* HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only. */
static void cmd_hello(client *c)
{
	long long ver = 2;
	if (c->argc >= 2) {
		if (!parse_ll(ARG(1), ALEN(1), &ver)) {
			add_reply_error(c, "ERR Protocol version is not an integer or out of range");
			return;
		}
		if (ver != 2) {
			add_reply_error(c, "NOPROTO sorry, this protocol version is not supported.");
			return;
		}
	}
	const char *name = NULL;
	int authi = 0;
	for (int i = 2; i < c->argc; i++) {
		if (argis(c, i, "auth") && i + 2 < c->argc) {
			authi = i;
			i += 2;
		} else if (argis(c, i, "setname") && i + 1 < c->argc) {
			name = ARG(++i);
		} else {
			add_reply_errorf(c, "ERR Syntax error in HELLO option '%.128s'", ARG(i));
			return;
		}
	}
	if (authi) {
		/* without --requirepass the default user takes any password, as in Redis */
		if (!argis(c, authi + 1, "default") ||
		    (g_srv.requirepass[0] && !secret_equal(ARG(authi + 2), ALEN(authi + 2), g_srv.requirepass))) {
			add_reply_error(c, "WRONGPASS invalid username-password pair or user is disabled.");
			return;
		}
		c->flags |= CF_AUTHED;
	}
	if (!(c->flags & CF_AUTHED)) {
		add_reply_error(c, "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
				   "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
				   "select the RESP protocol version at the same time");
		return;
	}
	if (name && !valid_client_name(c, name, strlen(name))) /* after AUTH, as Redis */
		return;
	if (name) {
		free(c->name);
		c->name = name[0] ? strdup(name) : NULL;
	}
	add_reply_array(c, 14);
	add_reply_bulk_cstr(c, "server");
	add_reply_bulk_cstr(c, "redis");
	add_reply_bulk_cstr(c, "version");
	add_reply_bulk_cstr(c, RC_VERSION);
	add_reply_bulk_cstr(c, "proto");
	add_reply_int(c, 2);
	add_reply_bulk_cstr(c, "id");
	add_reply_int(c, (long long)c->id);
	add_reply_bulk_cstr(c, "mode");
	add_reply_bulk_cstr(c, "standalone");
	add_reply_bulk_cstr(c, "role");
	add_reply_bulk_cstr(c, "master");
	add_reply_bulk_cstr(c, "modules");
	add_reply_array(c, 0);
}

/* ------------------------------------------------------------- table */

#define W (CMD_WRITE | CMD_DENYOOM)
#define R CMD_READONLY
struct command g_commands[] = {
	{ "get", cmd_get, 2, R | CMD_FAST, 1, 1, 1 },
	{ "set", cmd_set, -3, W, 1, 1, 1 },
	{ "setnx", cmd_setnx, 3, W | CMD_FAST, 1, 1, 1 },
	{ "getset", cmd_getset, 3, W | CMD_FAST, 1, 1, 1 },
	{ "mget", cmd_mget, -2, R | CMD_FAST, 1, -1, 1 },
	{ "mset", cmd_mset, -3, W, 1, -1, 2 },
	{ "incr", cmd_incr, 2, W | CMD_FAST, 1, 1, 1 },
	{ "decr", cmd_decr, 2, W | CMD_FAST, 1, 1, 1 },
	{ "incrby", cmd_incrby, 3, W | CMD_FAST, 1, 1, 1 },
	{ "decrby", cmd_decrby, 3, W | CMD_FAST, 1, 1, 1 },
	{ "append", cmd_append, 3, W, 1, 1, 1 },
	{ "strlen", cmd_strlen, 2, R | CMD_FAST, 1, 1, 1 },
	{ "setex", cmd_setex, 4, W, 1, 1, 1 },
	{ "psetex", cmd_psetex, 4, W, 1, 1, 1 },
	{ "getdel", cmd_getdel, 2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "getex", cmd_getex, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "setrange", cmd_setrange, 4, W, 1, 1, 1 },
	{ "getrange", cmd_getrange, 4, R, 1, 1, 1 },
	{ "substr", cmd_getrange, 4, R, 1, 1, 1 },
	{ "incrbyfloat", cmd_incrbyfloat, 3, W | CMD_FAST, 1, 1, 1 },
	{ "msetnx", cmd_msetnx, -3, W, 1, -1, 2 },
	{ "del", cmd_del, -2, CMD_WRITE | CMD_TOUCH_SELF, 1, -1, 1 },
	{ "unlink", cmd_del, -2, CMD_WRITE | CMD_FAST | CMD_TOUCH_SELF, 1, -1, 1 },
	{ "exists", cmd_exists, -2, R | CMD_FAST, 1, -1, 1 },
	{ "expire", cmd_expire, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "pexpire", cmd_pexpire, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "expireat", cmd_expireat, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "pexpireat", cmd_pexpireat, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "ttl", cmd_ttl, 2, R | CMD_FAST, 1, 1, 1 },
	{ "pttl", cmd_pttl, 2, R | CMD_FAST, 1, 1, 1 },
	{ "persist", cmd_persist, 2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "type", cmd_type, 2, R | CMD_FAST, 1, 1, 1 },
	{ "keys", cmd_keys, 2, R, 0, 0, 0 },
	{ "scan", cmd_scan, -2, R, 0, 0, 0 },
	{ "randomkey", cmd_randomkey, 1, R, 0, 0, 0 },
	{ "rename", cmd_rename, 3, CMD_WRITE, 1, 2, 1 },
	{ "renamenx", cmd_renamenx, 3, CMD_WRITE | CMD_FAST, 1, 2, 1 },
	{ "copy", cmd_copy, -3, W | CMD_TOUCH_SELF, 1, 2, 1 },
	{ "expiretime", cmd_expiretime, 2, R | CMD_FAST, 1, 1, 1 },
	{ "pexpiretime", cmd_pexpiretime, 2, R | CMD_FAST, 1, 1, 1 },
	{ "touch", cmd_touch, -2, R | CMD_FAST, 1, -1, 1 },
	{ "object", cmd_object, -2, R, 2, 2, 1 },
	{ "memory", cmd_memory, -2, R, 0, 0, 0 },
	{ "dbsize", cmd_dbsize, 1, R | CMD_FAST, 0, 0, 0 },
	{ "flushall", cmd_flushall, -1, CMD_WRITE | CMD_TOUCH_SELF, 0, 0, 0 },
	{ "flushdb", cmd_flushall, -1, CMD_WRITE | CMD_TOUCH_SELF, 0, 0, 0 },
	{ "lpush", cmd_lpush, -3, W | CMD_FAST, 1, 1, 1 },
	{ "rpush", cmd_rpush, -3, W | CMD_FAST, 1, 1, 1 },
	{ "lpop", cmd_lpop, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "rpop", cmd_rpop, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "llen", cmd_llen, 2, R | CMD_FAST, 1, 1, 1 },
	{ "lrange", cmd_lrange, 4, R, 1, 1, 1 },
	{ "lindex", cmd_lindex, 3, R, 1, 1, 1 },
	{ "lpushx", cmd_lpushx, -3, W | CMD_FAST, 1, 1, 1 },
	{ "rpushx", cmd_rpushx, -3, W | CMD_FAST, 1, 1, 1 },
	{ "ltrim", cmd_ltrim, 4, CMD_WRITE, 1, 1, 1 },
	{ "lrem", cmd_lrem, 4, CMD_WRITE, 1, 1, 1 },
	{ "lset", cmd_lset, 4, W, 1, 1, 1 },
	{ "linsert", cmd_linsert, 5, W, 1, 1, 1 },
	{ "lmove", cmd_lmove, 5, W, 1, 2, 1 },
	{ "rpoplpush", cmd_rpoplpush, 3, W, 1, 2, 1 },
	{ "lpos", cmd_lpos, -3, R, 1, 1, 1 },
	{ "blpop", cmd_blpop, -3, CMD_WRITE | CMD_TOUCH_SELF, 1, -2, 1 },
	{ "brpop", cmd_brpop, -3, CMD_WRITE | CMD_TOUCH_SELF, 1, -2, 1 },
	{ "hset", cmd_hset, -4, W | CMD_FAST, 1, 1, 1 },
	{ "hmset", cmd_hset, -4, W | CMD_FAST, 1, 1, 1 },
	{ "hget", cmd_hget, 3, R | CMD_FAST, 1, 1, 1 },
	{ "hmget", cmd_hmget, -3, R | CMD_FAST, 1, 1, 1 },
	{ "hdel", cmd_hdel, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "hgetall", cmd_hgetall, 2, R, 1, 1, 1 },
	{ "hlen", cmd_hlen, 2, R | CMD_FAST, 1, 1, 1 },
	{ "hexists", cmd_hexists, 3, R | CMD_FAST, 1, 1, 1 },
	{ "hincrby", cmd_hincrby, 4, W | CMD_FAST, 1, 1, 1 },
	{ "hincrbyfloat", cmd_hincrbyfloat, 4, W | CMD_FAST, 1, 1, 1 },
	{ "hkeys", cmd_hkeys, 2, R, 1, 1, 1 },
	{ "hvals", cmd_hvals, 2, R, 1, 1, 1 },
	{ "hstrlen", cmd_hstrlen, 3, R | CMD_FAST, 1, 1, 1 },
	{ "hsetnx", cmd_hsetnx, 4, W | CMD_FAST, 1, 1, 1 },
	{ "hrandfield", cmd_hrandfield, -2, R, 1, 1, 1 },
	{ "hscan", cmd_hscan, -3, R, 1, 1, 1 },
	{ "sadd", cmd_sadd, -3, W | CMD_FAST, 1, 1, 1 },
	{ "srem", cmd_srem, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "smembers", cmd_smembers, 2, R, 1, 1, 1 },
	{ "sismember", cmd_sismember, 3, R | CMD_FAST, 1, 1, 1 },
	{ "scard", cmd_scard, 2, R | CMD_FAST, 1, 1, 1 },
	{ "spop", cmd_spop, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "smismember", cmd_smismember, -3, R | CMD_FAST, 1, 1, 1 },
	{ "srandmember", cmd_srandmember, -2, R, 1, 1, 1 },
	{ "smove", cmd_smove, 4, CMD_WRITE | CMD_FAST, 1, 2, 1 },
	{ "sinter", cmd_sinter, -2, R, 1, -1, 1 },
	{ "sunion", cmd_sunion, -2, R, 1, -1, 1 },
	{ "sdiff", cmd_sdiff, -2, R, 1, -1, 1 },
	{ "sinterstore", cmd_sinterstore, -3, W | CMD_TOUCH_SELF, 1, -1, 1 },
	{ "sunionstore", cmd_sunionstore, -3, W | CMD_TOUCH_SELF, 1, -1, 1 },
	{ "sdiffstore", cmd_sdiffstore, -3, W | CMD_TOUCH_SELF, 1, -1, 1 },
	{ "sscan", cmd_sscan, -3, R, 1, 1, 1 },
	{ "zadd", cmd_zadd, -4, W | CMD_FAST, 1, 1, 1 },
	{ "zrem", cmd_zrem, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "zscore", cmd_zscore, 3, R | CMD_FAST, 1, 1, 1 },
	{ "zrange", cmd_zrange, -4, R, 1, 1, 1 },
	{ "zrangebyscore", cmd_zrange, -4, R, 1, 1, 1 },
	{ "zcard", cmd_zcard, 2, R | CMD_FAST, 1, 1, 1 },
	{ "zpopmin", cmd_zpopmin, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "zrank", cmd_zrank, 3, R | CMD_FAST, 1, 1, 1 },
	{ "zincrby", cmd_zadd, 4, W | CMD_FAST, 1, 1, 1 },
	{ "zrevrange", cmd_zrange, -4, R, 1, 1, 1 },
	{ "zrevrangebyscore", cmd_zrange, -4, R, 1, 1, 1 },
	{ "zrangebylex", cmd_zrange, -4, R, 1, 1, 1 },
	{ "zrevrangebylex", cmd_zrange, -4, R, 1, 1, 1 },
	{ "zrevrank", cmd_zrevrank, 3, R | CMD_FAST, 1, 1, 1 },
	{ "zcount", cmd_zcount, 4, R | CMD_FAST, 1, 1, 1 },
	{ "zlexcount", cmd_zcount, 4, R | CMD_FAST, 1, 1, 1 },
	{ "zremrangebyscore", cmd_zremrange, 4, CMD_WRITE, 1, 1, 1 },
	{ "zremrangebyrank", cmd_zremrange, 4, CMD_WRITE, 1, 1, 1 },
	{ "zremrangebylex", cmd_zremrange, 4, CMD_WRITE, 1, 1, 1 },
	{ "zmscore", cmd_zmscore, -3, R | CMD_FAST, 1, 1, 1 },
	{ "zpopmax", cmd_zpopmin, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "zrandmember", cmd_zrandmember, -2, R, 1, 1, 1 },
	{ "zscan", cmd_zscan, -3, R, 1, 1, 1 },
	{ "zunion", cmd_zunion, -3, R, 0, 0, 0 },
	{ "zinter", cmd_zinter, -3, R, 0, 0, 0 },
	{ "zdiff", cmd_zdiff, -3, R, 0, 0, 0 },
	{ "zunionstore", cmd_zunionstore, -4, W | CMD_TOUCH_SELF, 1, 1, 1 },
	{ "zinterstore", cmd_zinterstore, -4, W | CMD_TOUCH_SELF, 1, 1, 1 },
	{ "zdiffstore", cmd_zdiffstore, -4, W | CMD_TOUCH_SELF, 1, 1, 1 },
	{ "ping", cmd_ping, -1, CMD_FAST, 0, 0, 0 },
	{ "echo", cmd_echo, 2, CMD_FAST, 0, 0, 0 },
	{ "select", cmd_select, 2, CMD_FAST, 0, 0, 0 },
	{ "info", cmd_info, -1, 0, 0, 0, 0 },
	{ "config", cmd_config, -2, CMD_ADMIN, 0, 0, 0 },
	{ "command", cmd_command, -1, 0, 0, 0, 0 },
	{ "save", cmd_save, 1, CMD_ADMIN, 0, 0, 0 },
	{ "bgsave", cmd_bgsave, -1, CMD_ADMIN, 0, 0, 0 },
	{ "lastsave", cmd_lastsave, 1, CMD_FAST, 0, 0, 0 },
	{ "shutdown", cmd_shutdown, -1, CMD_ADMIN, 0, 0, 0 },
	{ "client", cmd_client, -2, 0, 0, 0, 0 },
	{ "time", cmd_time, 1, CMD_FAST, 0, 0, 0 },
	{ "auth", cmd_auth, -2, CMD_NOAUTH | CMD_FAST, 0, 0, 0 },
	{ "hello", cmd_hello, -1, CMD_NOAUTH | CMD_FAST, 0, 0, 0 },
	{ "quit", cmd_quit, -1, CMD_NOAUTH | CMD_FAST, 0, 0, 0 },
	{ "watch", cmd_watch, -2, CMD_FAST, 1, -1, 1 },
	{ "unwatch", cmd_unwatch, 1, CMD_FAST, 0, 0, 0 },
	{ "multi", cmd_multi, 1, CMD_FAST, 0, 0, 0 },
	{ "exec", cmd_exec, 1, 0, 0, 0, 0 },
	{ "discard", cmd_discard, 1, CMD_FAST, 0, 0, 0 },
	{ "sync", cmd_sync, 1, CMD_ADMIN, 0, 0, 0 },
	{ "psync", cmd_sync, -3, CMD_ADMIN, 0, 0, 0 },
	{ "replconf", cmd_replconf, -1, CMD_ADMIN, 0, 0, 0 },
	{ "wait", cmd_wait, 3, 0, 0, 0, 0 },
	{ "dump", cmd_dump, 2, R, 1, 1, 1 },
	{ "replicaof", cmd_replicaof, 3, CMD_ADMIN, 0, 0, 0 },
	{ "slaveof", cmd_replicaof, 3, CMD_ADMIN, 0, 0, 0 },
	{ "restore", cmd_restore, -4, W, 1, 1, 1 },
};
#undef W
#undef R

#define NCMDS (sizeof(g_commands) / sizeof(g_commands[0]))
#define CMD_SLOTS 256
static struct command *g_cmd_slots[CMD_SLOTS];

size_t command_count(void)
{
	return NCMDS;
}

static unsigned cmd_hash(const char *s, size_t n)
{
	unsigned h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)tolower((unsigned char)s[i])) * 16777619u;
	return h;
}

void commands_init(void)
{
	for (size_t i = 0; i < NCMDS; i++) {
		unsigned h = cmd_hash(g_commands[i].name, strlen(g_commands[i].name)) & (CMD_SLOTS - 1);
		while (g_cmd_slots[h])
			h = (h + 1) & (CMD_SLOTS - 1);
		g_cmd_slots[h] = &g_commands[i];
	}
}

struct command *command_lookup(const char *name, size_t len)
{
	if (len > 32)
		return NULL;
	unsigned h = cmd_hash(name, len) & (CMD_SLOTS - 1);
	while (g_cmd_slots[h]) {
		struct command *cmd = g_cmd_slots[h];
		if (strlen(cmd->name) == len && strncasecmp(cmd->name, name, len) == 0)
			return cmd;
		h = (h + 1) & (CMD_SLOTS - 1);
	}
	return NULL;
}

void command_reply_info(client *c, struct command *cmd)
{
	long long nflags = 0;
	const char *flags[6];
	if (cmd->flags & CMD_WRITE)
		flags[nflags++] = "write";
	if (cmd->flags & CMD_READONLY)
		flags[nflags++] = "readonly";
	if (cmd->flags & CMD_DENYOOM)
		flags[nflags++] = "denyoom";
	if (cmd->flags & CMD_ADMIN)
		flags[nflags++] = "admin";
	if (cmd->flags & CMD_NOAUTH)
		flags[nflags++] = "no_auth";
	if (cmd->flags & CMD_FAST)
		flags[nflags++] = "fast";
	add_reply_array(c, 10);
	add_reply_bulk_cstr(c, cmd->name);
	add_reply_int(c, cmd->arity);
	add_reply_array(c, nflags);
	for (long long i = 0; i < nflags; i++)
		add_reply_status(c, flags[i]);
	add_reply_int(c, cmd->firstkey);
	add_reply_int(c, cmd->lastkey);
	add_reply_int(c, cmd->step);
	add_reply_array(c, 0); /* ACL categories */
	add_reply_array(c, 0); /* tips */
	add_reply_array(c, 0); /* key specs */
	add_reply_array(c, 0); /* subcommands */
}
