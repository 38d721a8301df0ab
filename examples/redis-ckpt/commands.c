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

dent *lookup_key(const char *key, size_t klen)
{
	dent *e = dict_find(g_ks->db, key, klen);
	if (e && expired(e)) {
		if (repl_is_replica()) /* hidden from clients; the primary's DEL removes it */
			return repl_applying_primary() ? e : NULL;
		repl_propagate_expired(e->key, e->klen);
		delete_entry(e);
		g_srv.stat_expired++;
		return NULL;
	}
	return e;
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
				delete_entry(e);
				found++;
				g_srv.stat_expired++;
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

static void incr_generic(client *c, long long by)
{
	bool wrong;
	dent *e = lookup_typed(c, 1, T_STRING, &wrong);
	if (wrong)
		return;
	long long v = 0;
	if (e) {
		hstr *s = e->v.p;
		if (!parse_ll(s->buf, s->len, &v)) {
			add_reply_error(c, NOTINT);
			return;
		}
	}
	if ((by < 0 && v < 0 && by < LLONG_MIN - v) || (by > 0 && v > 0 && by > LLONG_MAX - v)) {
		add_reply_error(c, OVERFLOW);
		return;
	}
	v += by;
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

/* ------------------------------------------------------------- keys */

static void cmd_del(client *c)
{
	long long n = 0;
	for (int i = 1; i < c->argc; i++)
		if (delete_key(ARG(i), ALEN(i))) {
			n++;
			g_srv.dirty++;
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
	if (when <= g_now_ms) {
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

static void cmd_scan(client *c)
{
	unsigned long long cursor;
	char *end;
	errno = 0;
	cursor = strtoull(ARG(1), &end, 10);
	if (ALEN(1) == 0 || *end || errno || ARG(1)[0] == '-') {
		add_reply_error(c, "ERR invalid cursor");
		return;
	}
	long long count = 10;
	const char *pat = NULL, *type = NULL;
	size_t plen = 0;
	for (int i = 2; i < c->argc; i++) {
		bool next = i + 1 < c->argc;
		if (argis(c, i, "count") && next) {
			if (!get_ll(c, i + 1, &count, NULL))
				return;
			if (count < 1) {
				add_reply_error(c, SYNTAX);
				return;
			}
			i++;
		} else if (argis(c, i, "match") && next) {
			pat = ARG(i + 1);
			plen = ALEN(i + 1);
			if (plen == 1 && pat[0] == '*')
				pat = NULL;
			i++;
		} else if (argis(c, i, "type") && next) {
			type = ARG(i + 1);
			i++;
		} else {
			add_reply_error(c, SYNTAX);
			return;
		}
	}
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
			delete_entry(e);
			continue;
		}
		add_reply_bulk(c, e->key, e->klen);
		return;
	}
	add_reply_nil(c);
}

static void cmd_rename(client *c)
{
	dent *e = lookup_key(ARG(1), ALEN(1));
	if (!e) {
		add_reply_error(c, "ERR no such key");
		return;
	}
	if (ALEN(1) == ALEN(2) && memcmp(ARG(1), ARG(2), ALEN(1)) == 0) {
		add_reply_ok(c);
		return;
	}
	dent *d = lookup_key(ARG(2), ALEN(2)); /* (drops an expired one first) */
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
	add_reply_ok(c);
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
	if (f) {
		hstr *s = f->v.p;
		if (!parse_ll(s->buf, s->len, &v)) {
			add_reply_error(c, "ERR hash value is not an integer");
			return;
		}
	}
	if ((by < 0 && v < 0 && by < LLONG_MIN - v) || (by > 0 && v > 0 && by > LLONG_MAX - v)) {
		add_reply_error(c, OVERFLOW);
		return;
	}
	v += by;
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

/* ------------------------------------------------------------- zsets */

static void cmd_zadd(client *c)
{
	int nx = 0, xx = 0, gt = 0, lt = 0, ch = 0, incr = 0;
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

static void cmd_zrank(client *c)
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
	add_reply_int(c, (long long)zset_rank(e->v.p, m) - 1);
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

static void zrange_byscore(client *c, zset *z, struct zbound min, struct zbound max, bool rev,
			   long long offset, long long count, bool withscores)
{
	zsknode *x = z->header;
	/* forward: the last node below the range, then its successor; reverse:
	 * the last node within max */
	for (int i = z->level - 1; i >= 0; i--)
		while (x->level[i].forward &&
		       (rev ? below_max(x->level[i].forward->score, &max) : !above_min(x->level[i].forward->score, &min)))
			x = x->level[i].forward;
	if (!rev)
		x = x->level[0].forward;
	else if (x == z->header)
		x = NULL;
	while (x && offset-- > 0)
		x = rev ? x->backward : x->level[0].forward;
	size_t off = add_reply_deferred(c);
	long long n = 0;
	while (x && count != 0 && (rev ? above_min(x->score, &min) : below_max(x->score, &max))) {
		add_reply_bulk(c, x->ele->key, x->ele->klen);
		if (withscores)
			add_reply_double(c, x->score);
		n++;
		count--;
		x = rev ? x->backward : x->level[0].forward;
	}
	set_deferred_array(c, off, withscores ? n * 2 : n);
}

/* ZRANGE key start stop [BYSCORE] [REV] [LIMIT offset count] [WITHSCORES];
 * ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count] */
static void cmd_zrange(client *c)
{
	long long start, end, offset = 0, count = -1;
	bool withscores = false, rev = false, byscore = argis(c, 0, "zrangebyscore"), limit = false;
	for (int i = 4; i < c->argc; i++) {
		if (argis(c, i, "withscores")) {
			withscores = true;
		} else if (argis(c, i, "rev") && !argis(c, 0, "zrangebyscore")) {
			rev = true;
		} else if (argis(c, i, "byscore") && !argis(c, 0, "zrangebyscore")) {
			byscore = true;
		} else if (argis(c, i, "limit") && i + 2 < c->argc) {
			if (!get_ll(c, i + 1, &offset, NULL) || !get_ll(c, i + 2, &count, NULL))
				return;
			limit = true;
			i += 2;
		} else {
			/* BYLEX is not implemented */
			add_reply_error(c, SYNTAX);
			return;
		}
	}
	if (limit && !byscore) {
		add_reply_error(c, "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
		return;
	}
	struct zbound min, max;
	if (byscore) {
		/* with REV the first bound is the maximum */
		int imin = rev ? 3 : 2, imax = rev ? 2 : 3;
		if (!parse_zbound(ARG(imin), ALEN(imin), &min) || !parse_zbound(ARG(imax), ALEN(imax), &max)) {
			add_reply_error(c, "ERR min or max is not a float");
			return;
		}
	} else if (!get_ll(c, 2, &start, NULL) || !get_ll(c, 3, &end, NULL)) {
		return;
	}
	bool wrong;
	dent *e = lookup_typed(c, 1, T_ZSET, &wrong);
	if (wrong)
		return;
	zset *z = e ? e->v.p : NULL;
	if (byscore) {
		if (!z || offset < 0)
			add_reply_array(c, 0);
		else
			zrange_byscore(c, z, min, max, rev, offset, count, withscores);
		return;
	}
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
	for (long long i = 0; i < n; i++) {
		zsknode *x = z->header->level[0].forward;
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
	/* issue 5: SHUTDOWN saves unless NOSAVE, even without save points
	 * (Redis would skip the save when none are configured) */
	if (server_prepare_shutdown(save || !nosave, nosave) != 0) {
		add_reply_error(c, "ERR Errors trying to SHUTDOWN. Check logs.");
		return;
	}
	g_srv.shutdown_asap = true;
}

static void cmd_client(client *c)
{
	if (argis(c, 1, "setname") && c->argc == 3) {
		for (size_t i = 0; i < ALEN(2); i++)
			if (ARG(2)[i] < '!' || ARG(2)[i] > '~') {
				add_reply_error(c, "ERR Client names cannot contain spaces, newlines or special characters.");
				return;
			}
		free(c->name);
		c->name = ALEN(2) ? strdup(ARG(2)) : NULL;
		add_reply_ok(c);
	} else if (argis(c, 1, "getname") && c->argc == 2) {
		add_reply_bulk_cstr(c, c->name);
	} else if (argis(c, 1, "id") && c->argc == 2) {
		add_reply_int(c, (long long)c->id);
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

static void cmd_config(client *c)
{
	if (argis(c, 1, "get") && c->argc >= 3) {
		char save[256], port[16], maxc[16], maxmem[32];
		save_string(save, sizeof(save));
		snprintf(port, sizeof(port), "%d", g_srv.port);
		snprintf(maxc, sizeof(maxc), "%d", g_srv.maxclients);
		snprintf(maxmem, sizeof(maxmem), "%zu", g_srv.heap_size);
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
		if (argis(c, 2, "save")) {
			if (!parse_save_param(ARG(3))) {
				add_reply_errorf(c, "ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save parameters");
				return;
			}
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
	if (SEC("memory"))
		P("# Memory\r\nused_memory:%zu\r\nmaxmemory:%zu\r\nckpt_heap_size:%zu\r\n\r\n", ckpt_heap_used(g_heap),
		  ckpt_heap_size(g_heap), ckpt_heap_size(g_heap));
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
		  "ckpt_prep_traps:%llu\r\nckpt_prep_trap_p50_us:%.1f\r\nckpt_prep_trap_p99_us:%.1f\r\n\r\n",
		  g_srv.ckpt_preparing ? 1 : 0, (unsigned long long)(st.prepare_ns / 1000),
		  (unsigned long long)st.prep_passes, (unsigned long long)st.cut_pages,
		  (unsigned long long)st.prep_traps, st.prep_trap_p50_ns / 1e3, st.prep_trap_p99_ns / 1e3);
	}
	if (SEC("stats"))
		P("# Stats\r\ntotal_connections_received:%lld\r\ntotal_commands_processed:%lld\r\n"
		  "rejected_connections:%lld\r\nexpired_keys:%lld\r\nkeyspace_hits:%lld\r\nkeyspace_misses:%lld\r\n\r\n",
		  g_srv.stat_conns, g_srv.stat_commands, g_srv.stat_rejected, g_srv.stat_expired,
		  g_srv.stat_keyspace_hits, g_srv.stat_keyspace_misses);
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
	{ "del", cmd_del, -2, CMD_WRITE, 1, -1, 1 },
	{ "unlink", cmd_del, -2, CMD_WRITE | CMD_FAST, 1, -1, 1 },
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
	{ "dbsize", cmd_dbsize, 1, R | CMD_FAST, 0, 0, 0 },
	{ "flushall", cmd_flushall, -1, CMD_WRITE, 0, 0, 0 },
	{ "flushdb", cmd_flushall, -1, CMD_WRITE, 0, 0, 0 },
	{ "lpush", cmd_lpush, -3, W | CMD_FAST, 1, 1, 1 },
	{ "rpush", cmd_rpush, -3, W | CMD_FAST, 1, 1, 1 },
	{ "lpop", cmd_lpop, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "rpop", cmd_rpop, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "llen", cmd_llen, 2, R | CMD_FAST, 1, 1, 1 },
	{ "lrange", cmd_lrange, 4, R, 1, 1, 1 },
	{ "lindex", cmd_lindex, 3, R, 1, 1, 1 },
	{ "hset", cmd_hset, -4, W | CMD_FAST, 1, 1, 1 },
	{ "hmset", cmd_hset, -4, W | CMD_FAST, 1, 1, 1 },
	{ "hget", cmd_hget, 3, R | CMD_FAST, 1, 1, 1 },
	{ "hmget", cmd_hmget, -3, R | CMD_FAST, 1, 1, 1 },
	{ "hdel", cmd_hdel, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "hgetall", cmd_hgetall, 2, R, 1, 1, 1 },
	{ "hlen", cmd_hlen, 2, R | CMD_FAST, 1, 1, 1 },
	{ "hexists", cmd_hexists, 3, R | CMD_FAST, 1, 1, 1 },
	{ "hincrby", cmd_hincrby, 4, W | CMD_FAST, 1, 1, 1 },
	{ "sadd", cmd_sadd, -3, W | CMD_FAST, 1, 1, 1 },
	{ "srem", cmd_srem, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "smembers", cmd_smembers, 2, R, 1, 1, 1 },
	{ "sismember", cmd_sismember, 3, R | CMD_FAST, 1, 1, 1 },
	{ "scard", cmd_scard, 2, R | CMD_FAST, 1, 1, 1 },
	{ "spop", cmd_spop, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "zadd", cmd_zadd, -4, W | CMD_FAST, 1, 1, 1 },
	{ "zrem", cmd_zrem, -3, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "zscore", cmd_zscore, 3, R | CMD_FAST, 1, 1, 1 },
	{ "zrange", cmd_zrange, -4, R, 1, 1, 1 },
	{ "zrangebyscore", cmd_zrange, -4, R, 1, 1, 1 },
	{ "zcard", cmd_zcard, 2, R | CMD_FAST, 1, 1, 1 },
	{ "zpopmin", cmd_zpopmin, -2, CMD_WRITE | CMD_FAST, 1, 1, 1 },
	{ "zrank", cmd_zrank, 3, R | CMD_FAST, 1, 1, 1 },
	{ "ping", cmd_ping, -1, CMD_FAST, 0, 0, 0 },
	{ "echo", cmd_echo, 2, CMD_FAST, 0, 0, 0 },
	{ "select", cmd_select, 2, CMD_FAST, 0, 0, 0 },
	{ "info", cmd_info, -1, 0, 0, 0, 0 },
	{ "config", cmd_config, -2, CMD_ADMIN, 0, 0, 0 },
	{ "command", cmd_command, -1, 0, 0, 0, 0 },
	{ "save", cmd_save, 1, CMD_ADMIN, 0, 0, 0 },
	{ "bgsave", cmd_bgsave, -1, CMD_ADMIN, 0, 0, 0 },
	{ "lastsave", cmd_lastsave, 1, CMD_FAST, 0, 0, 0 },
	{ "shutdown", cmd_shutdown, -1, CMD_ADMIN | CMD_NOAUTH, 0, 0, 0 },
	{ "client", cmd_client, -2, 0, 0, 0, 0 },
	{ "time", cmd_time, 1, CMD_FAST, 0, 0, 0 },
	{ "auth", cmd_auth, -2, CMD_NOAUTH | CMD_FAST, 0, 0, 0 },
	{ "quit", cmd_quit, -1, CMD_NOAUTH | CMD_FAST, 0, 0, 0 },
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
