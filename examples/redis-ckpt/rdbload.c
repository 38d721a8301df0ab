/*
 * rdbload.c - imports a Redis dump.rdb (RDB versions up to 10, as Redis 7.0
 * writes them) into redis-ckpt's keyspace: strings (raw, integer and LZF
 * encodings), lists (plain, ziplist, quicklist of ziplists or listpacks),
 * sets (plain, intset), hashes and zsets (plain, ziplist, listpack), TTLs,
 * aux fields, SELECT DB 0 and the CRC-64 trailer.
 *
 * The file is mapped read-only and every read is bounds-checked against it:
 * a truncated or damaged file is refused with the offset where parsing
 * stopped and why, never read past its end.  Lengths are checked against
 * the bytes left before anything is allocated for them.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "rdb.h"
#include "server.h"

struct rd {
	const unsigned char *p;
	size_t len, pos;
	char *err;
	size_t errlen;
	bool failed;
};

static int fail(struct rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct rd *r, const char *fmt, ...)
{
	if (!r->failed) {
		int n = snprintf(r->err, r->errlen, "offset %zu: ", r->pos);
		va_list ap;
		va_start(ap, fmt);
		if (n >= 0 && (size_t)n < r->errlen)
			vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
		va_end(ap);
		r->failed = true;
	}
	return -EINVAL;
}

static const unsigned char *take(struct rd *r, size_t n)
{
	if (r->failed)
		return NULL;
	if (n > r->len - r->pos) {
		fail(r, "truncated: %zu bytes needed, %zu left", n, r->len - r->pos);
		return NULL;
	}
	const unsigned char *q = r->p + r->pos;
	r->pos += n;
	return q;
}

static int get_byte(struct rd *r)
{
	const unsigned char *q = take(r, 1);
	return q ? *q : -1;
}

/* The length encoding; *enc is set (and the value is the encoding type)
 * for the special string encodings 0xC0-0xC3. */
static int get_len(struct rd *r, uint64_t *out, bool *enc)
{
	int b = get_byte(r);
	if (b < 0)
		return -EINVAL;
	if (enc)
		*enc = false;
	switch (b >> 6) {
	case 0: *out = (uint64_t)b & 0x3f; return 0;
	case 1: {
		int b2 = get_byte(r);
		if (b2 < 0)
			return -EINVAL;
		*out = (((uint64_t)b & 0x3f) << 8) | (uint64_t)b2;
		return 0;
	}
	case 2: {
		int n = b == 0x80 ? 4 : b == 0x81 ? 8 : 0;
		if (!n)
			return fail(r, "bad length prefix 0x%02x", b);
		const unsigned char *q = take(r, (size_t)n);
		if (!q)
			return -EINVAL;
		uint64_t v = 0;
		for (int i = 0; i < n; i++)
			v = v << 8 | q[i];
		*out = v;
		return 0;
	}
	default:
		if (!enc)
			return fail(r, "an encoded string where a length was expected");
		*enc = true;
		*out = (uint64_t)b & 0x3f;
		return 0;
	}
}

/* A string read from the file: points into the map, into ibuf (integer
 * encodings) or into owned (LZF). */
struct rstr {
	const char *p;
	size_t n;
	char *owned;
	char ibuf[24];
};

static void rstr_free(struct rstr *s)
{
	free(s->owned);
	s->owned = NULL;
}

static size_t lzf_decompress(const unsigned char *in, size_t inlen, unsigned char *out, size_t outlen)
{
	size_t ip = 0, op = 0;
	while (ip < inlen) {
		unsigned ctrl = in[ip++];
		if (ctrl < 32) { /* a literal run of ctrl + 1 bytes */
			size_t n = ctrl + 1;
			if (ip + n > inlen || op + n > outlen)
				return 0;
			memcpy(out + op, in + ip, n);
			ip += n;
			op += n;
			continue;
		}
		size_t n = ctrl >> 5; /* a back reference */
		if (n == 7) {
			if (ip >= inlen)
				return 0;
			n += in[ip++];
		}
		if (ip >= inlen)
			return 0;
		size_t back = ((ctrl & 0x1f) << 8) + in[ip++] + 1;
		n += 2;
		if (back > op || op + n > outlen)
			return 0;
		for (size_t i = 0; i < n; i++, op++) /* may overlap: byte by byte */
			out[op] = out[op - back];
	}
	return op;
}

static int get_str(struct rd *r, struct rstr *s)
{
	uint64_t n;
	bool enc;
	s->owned = NULL;
	if (get_len(r, &n, &enc))
		return -EINVAL;
	if (!enc) {
		s->p = (const char *)take(r, n);
		s->n = n;
		return s->p ? 0 : -EINVAL;
	}
	if (n <= 2) { /* int8, int16, int32, little-endian */
		int bytes = 1 << n;
		const unsigned char *q = take(r, (size_t)bytes);
		if (!q)
			return -EINVAL;
		uint32_t u = 0;
		for (int i = bytes - 1; i >= 0; i--)
			u = u << 8 | q[i];
		long long v = bytes == 1 ? (int8_t)u : bytes == 2 ? (int16_t)u : (int32_t)u;
		s->n = (size_t)snprintf(s->ibuf, sizeof(s->ibuf), "%lld", v);
		s->p = s->ibuf;
		return 0;
	}
	if (n != 3)
		return fail(r, "unknown string encoding %llu", (unsigned long long)n);
	uint64_t clen, ulen;
	if (get_len(r, &clen, NULL) || get_len(r, &ulen, NULL))
		return -EINVAL;
	size_t at = r->pos;
	const unsigned char *q = take(r, clen);
	if (!q)
		return -EINVAL;
	if (ulen > PROTO_MAX_BULK_LEN)
		return fail(r, "LZF string of %llu bytes is too long", (unsigned long long)ulen);
	s->owned = malloc(ulen ? ulen : 1);
	if (!s->owned)
		return fail(r, "out of memory for a %llu-byte string", (unsigned long long)ulen);
	if (lzf_decompress(q, clen, (unsigned char *)s->owned, ulen) != ulen) {
		rstr_free(s);
		r->pos = at;
		return fail(r, "LZF data does not decompress to %llu bytes", (unsigned long long)ulen);
	}
	s->p = s->owned;
	s->n = ulen;
	return 0;
}

/* ------------------------------------------------------------- elements */

/* The elements of one value, in file order: a pointer into the map or an
 * integer (compact encodings store small numbers as integers). */
struct el {
	const char *p;
	size_t n;
	long long v;
	bool isint;
	double d; /* plain zsets: the member's score (hasd) */
	bool hasd;
};

struct blob {
	struct blob *next;
	char data[];
};

struct elv {
	struct el *a;
	size_t n, cap;
	struct blob *blobs; /* LZF-decompressed strings the elements point into */
};

static void elv_free(struct elv *v)
{
	while (v->blobs) {
		struct blob *b = v->blobs;
		v->blobs = b->next;
		free(b);
	}
	free(v->a);
	memset(v, 0, sizeof(*v));
}

static int elv_push(struct rd *r, struct elv *v, const char *p, size_t n, bool isint, long long iv)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		struct el *a = realloc(v->a, cap * sizeof(*a));
		if (!a)
			return fail(r, "out of memory");
		v->a = a;
		v->cap = cap;
	}
	v->a[v->n++] = (struct el){ p, n, iv, isint, 0, false };
	return 0;
}

/* The element as bytes; integers are formatted into buf. */
static const char *el_bytes(const struct el *e, char buf[24], size_t *n)
{
	if (!e->isint) {
		*n = e->n;
		return e->p;
	}
	*n = (size_t)snprintf(buf, 24, "%lld", e->v);
	return buf;
}

static long long le_signed(const unsigned char *q, int bytes)
{
	uint64_t u = 0;
	for (int i = bytes - 1; i >= 0; i--)
		u = u << 8 | q[i];
	int shift = 64 - 8 * bytes;
	return (long long)(u << shift) >> shift;
}

static uint32_t le32(const unsigned char *q)
{
	return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
}

static int parse_intset(struct rd *r, const unsigned char *b, size_t n, struct elv *v)
{
	if (n < 8)
		return fail(r, "intset shorter than its header");
	uint32_t w = le32(b), cnt = le32(b + 4);
	if ((w != 2 && w != 4 && w != 8) || (uint64_t)cnt * w != n - 8)
		return fail(r, "intset header (width %u, %u entries) does not match its %zu bytes", w, cnt, n);
	for (uint32_t i = 0; i < cnt; i++)
		if (elv_push(r, v, NULL, 0, true, le_signed(b + 8 + (size_t)i * w, (int)w)))
			return -EINVAL;
	return 0;
}

static int parse_ziplist(struct rd *r, const unsigned char *b, size_t n, struct elv *v)
{
	if (n < 11 || le32(b) != n)
		return fail(r, "ziplist header does not match its %zu bytes", n);
	size_t i = 10;
	while (i < n && b[i] != 0xff) {
		i += b[i] < 254 ? 1 : 5; /* prevlen */
		if (i >= n)
			break;
		unsigned e = b[i];
		size_t hdr = 1, len = 0;
		bool isint = false;
		long long iv = 0;
		if (e >> 6 == 0) {
			len = e & 0x3f;
		} else if (e >> 6 == 1) {
			hdr = 2;
			len = i + 1 < n ? ((size_t)(e & 0x3f) << 8 | b[i + 1]) : SIZE_MAX / 2;
		} else if (e == 0x80) {
			hdr = 5;
			len = i + 4 < n ? ((size_t)b[i + 1] << 24 | (size_t)b[i + 2] << 16 | (size_t)b[i + 3] << 8 | b[i + 4])
					: SIZE_MAX / 2;
		} else {
			int bytes = e == 0xc0 ? 2 : e == 0xd0 ? 4 : e == 0xe0 ? 8 : e == 0xf0 ? 3 : e == 0xfe ? 1 : 0;
			isint = true;
			if (e >= 0xf1 && e <= 0xfd) {
				iv = (long long)(e & 0x0f) - 1;
			} else if (bytes) {
				if (i + 1 + (size_t)bytes > n)
					break;
				iv = le_signed(b + i + 1, bytes);
				hdr += (size_t)bytes;
			} else {
				return fail(r, "ziplist entry at +%zu has unknown encoding 0x%02x", i, e);
			}
		}
		if (len > n - i - hdr)
			break;
		if (elv_push(r, v, (const char *)b + i + hdr, len, isint, iv))
			return -EINVAL;
		i += hdr + len;
	}
	if (i != n - 1)
		return fail(r, "ziplist entries overrun its %zu bytes", n);
	return 0;
}

static int parse_listpack(struct rd *r, const unsigned char *b, size_t n, struct elv *v)
{
	if (n < 7 || le32(b) != n)
		return fail(r, "listpack header does not match its %zu bytes", n);
	size_t i = 6;
	while (i < n && b[i] != 0xff) {
		unsigned e = b[i];
		size_t hdr, len = 0;
		bool isint = true;
		long long iv = 0;
		size_t left = n - i;
		if (!(e & 0x80)) {
			hdr = 1, iv = e & 0x7f;
		} else if ((e & 0xc0) == 0x80) {
			hdr = 1, len = e & 0x3f, isint = false;
		} else if ((e & 0xe0) == 0xc0) {
			if (left < 2)
				break;
			hdr = 2, iv = ((long long)(e & 0x1f) << 8) | b[i + 1];
			if (iv >= 1 << 12)
				iv -= 1 << 13;
		} else if ((e & 0xf0) == 0xe0) {
			if (left < 2)
				break;
			hdr = 2, len = ((size_t)(e & 0x0f) << 8) | b[i + 1], isint = false;
		} else if (e == 0xf0) {
			if (left < 5)
				break;
			hdr = 5, len = le32(b + i + 1), isint = false;
		} else if (e >= 0xf1 && e <= 0xf4) {
			int bytes = e == 0xf1 ? 2 : e == 0xf2 ? 3 : e == 0xf3 ? 4 : 8;
			if (left < 1 + (size_t)bytes)
				break;
			hdr = 1 + (size_t)bytes, iv = le_signed(b + i + 1, bytes);
		} else {
			return fail(r, "listpack entry at +%zu has unknown encoding 0x%02x", i, e);
		}
		if (len > left - hdr)
			break;
		size_t l = hdr + len;
		size_t back = l <= 127 ? 1 : l < 16383 ? 2 : l < 2097151 ? 3 : l < 268435455 ? 4 : 5;
		if (l + back > left)
			break;
		if (elv_push(r, v, (const char *)b + i + hdr, len, isint, iv))
			return -EINVAL;
		i += l + back;
	}
	if (i != n - 1)
		return fail(r, "listpack entries overrun its %zu bytes", n);
	return 0;
}

/* Moves a decompressed string into the value's blobs so that elements
 * may point into it until the value is built. */
static int keep(struct rd *r, struct elv *v, struct rstr *s)
{
	if (!s->owned)
		return 0;
	struct blob *b = malloc(sizeof(*b) + s->n + 1);
	if (!b) {
		rstr_free(s);
		return fail(r, "out of memory");
	}
	memcpy(b->data, s->p, s->n);
	rstr_free(s);
	b->next = v->blobs;
	v->blobs = b;
	s->p = b->data;
	return 0;
}

/* A blob (ziplist, listpack, intset) given as an RDB string. */
static int get_blob(struct rd *r, struct elv *v, const unsigned char **b, size_t *n)
{
	struct rstr s;
	if (get_str(r, &s) || keep(r, v, &s))
		return -EINVAL;
	*b = (const unsigned char *)s.p;
	*n = s.n;
	return 0;
}

/* Plain encodings: n strings (pairs count twice). */
static int get_plain(struct rd *r, struct elv *v, uint64_t n)
{
	if (n > r->len - r->pos)
		return fail(r, "%llu elements cannot fit in the %zu bytes left", (unsigned long long)n,
			    r->len - r->pos);
	for (uint64_t i = 0; i < n; i++) {
		struct rstr s;
		if (get_str(r, &s))
			return -EINVAL;
		if (s.p == s.ibuf) {
			if (elv_push(r, v, NULL, 0, true, strtoll(s.ibuf, NULL, 10)))
				return -EINVAL;
			continue;
		}
		if (keep(r, v, &s) || elv_push(r, v, s.p, s.n, false, 0))
			return -EINVAL;
	}
	return 0;
}

/* RDB_TYPE_ZSET's scores: a length byte (253 nan, 254 +inf, 255 -inf)
 * then that many ASCII bytes; RDB_TYPE_ZSET_2's: a binary double. */
static int get_score(struct rd *r, bool binary, double *d)
{
	if (binary) {
		const unsigned char *q = take(r, 8);
		if (!q)
			return -EINVAL;
		uint64_t u = 0;
		for (int i = 7; i >= 0; i--)
			u = u << 8 | q[i];
		memcpy(d, &u, 8);
		return 0;
	}
	int n = get_byte(r);
	if (n < 0)
		return -EINVAL;
	if (n >= 253) {
		*d = n == 253 ? NAN : n == 254 ? INFINITY : -INFINITY;
		return 0;
	}
	const unsigned char *q = take(r, (size_t)n);
	if (!q)
		return -EINVAL;
	char buf[256];
	memcpy(buf, q, (size_t)n);
	buf[n] = 0;
	*d = strtod(buf, NULL);
	return 0;
}

static int el_double(struct rd *r, const struct el *e, double *d)
{
	if (e->isint) {
		*d = (double)e->v;
		return 0;
	}
	char buf[256], *end;
	if (e->n == 0 || e->n >= sizeof(buf))
		return fail(r, "zset score of %zu bytes", e->n);
	memcpy(buf, e->p, e->n);
	buf[e->n] = 0;
	*d = strtod(buf, &end);
	if (*end || isnan(*d))
		return fail(r, "zset score '%s' is not a number", buf);
	return 0;
}

/* Reads the elements of a value of RDB type @t into @v; *kind is the
 * keyspace type.  Pairs (hash field/value, zset member/score) come as two
 * elements each. */
static int get_elements(struct rd *r, int t, struct elv *v, uint32_t *kind)
{
	uint64_t n;
	const unsigned char *b;
	size_t bn;
	switch (t) {
	case RDB_TYPE_LIST:
	case RDB_TYPE_SET:
	case RDB_TYPE_HASH:
		*kind = t == RDB_TYPE_LIST ? T_LIST : t == RDB_TYPE_SET ? T_SET : T_HASH;
		if (get_len(r, &n, NULL))
			return -EINVAL;
		if (t == RDB_TYPE_HASH && n > UINT64_MAX / 2)
			return fail(r, "hash of %llu fields", (unsigned long long)n);
		return get_plain(r, v, t == RDB_TYPE_HASH ? 2 * n : n);
	case RDB_TYPE_ZSET:
	case RDB_TYPE_ZSET_2:
		*kind = T_ZSET;
		if (get_len(r, &n, NULL))
			return -EINVAL;
		if (n > r->len - r->pos)
			return fail(r, "%llu zset members cannot fit in the %zu bytes left",
				    (unsigned long long)n, r->len - r->pos);
		for (uint64_t i = 0; i < n; i++) {
			double d;
			if (get_plain(r, v, 1) || get_score(r, t == RDB_TYPE_ZSET_2, &d))
				return -EINVAL;
			v->a[v->n - 1].d = d;
			v->a[v->n - 1].hasd = true;
		}
		return 0;
	case RDB_TYPE_SET_INTSET:
		*kind = T_SET;
		return get_blob(r, v, &b, &bn) ? -EINVAL : parse_intset(r, b, bn, v);
	case RDB_TYPE_LIST_ZIPLIST:
	case RDB_TYPE_ZSET_ZIPLIST:
	case RDB_TYPE_HASH_ZIPLIST:
		*kind = t == RDB_TYPE_LIST_ZIPLIST ? T_LIST : t == RDB_TYPE_ZSET_ZIPLIST ? T_ZSET : T_HASH;
		return get_blob(r, v, &b, &bn) ? -EINVAL : parse_ziplist(r, b, bn, v);
	case RDB_TYPE_HASH_LISTPACK:
	case RDB_TYPE_ZSET_LISTPACK:
		*kind = t == RDB_TYPE_ZSET_LISTPACK ? T_ZSET : T_HASH;
		return get_blob(r, v, &b, &bn) ? -EINVAL : parse_listpack(r, b, bn, v);
	case RDB_TYPE_LIST_QUICKLIST:
	case RDB_TYPE_LIST_QUICKLIST_2:
		*kind = T_LIST;
		if (get_len(r, &n, NULL))
			return -EINVAL;
		if (n > r->len - r->pos)
			return fail(r, "%llu list nodes cannot fit in the %zu bytes left", (unsigned long long)n,
				    r->len - r->pos);
		for (uint64_t i = 0; i < n; i++) {
			uint64_t container = 2; /* quicklist 1: always ziplists */
			if (t == RDB_TYPE_LIST_QUICKLIST_2 && get_len(r, &container, NULL))
				return -EINVAL;
			if (container != 1 && container != 2)
				return fail(r, "unknown quicklist container %llu", (unsigned long long)container);
			if (container == 1) { /* PLAIN: one big element as is */
				if (get_plain(r, v, 1))
					return -EINVAL;
				continue;
			}
			if (get_blob(r, v, &b, &bn))
				return -EINVAL;
			int rc = t == RDB_TYPE_LIST_QUICKLIST ? parse_ziplist(r, b, bn, v) : parse_listpack(r, b, bn, v);
			if (rc)
				return rc;
		}
		return 0;
	case RDB_TYPE_HASH_ZIPMAP:
		return fail(r, "zipmap-encoded hash (written by Redis < 2.6) is not supported");
	case 6:
	case 7:
		return fail(r, "module value (type %d) is not supported", t);
	case RDB_TYPE_STREAM_LISTPACKS:
	case 19:
	case 21:
		return fail(r, "stream value (type %d) is not supported: redis-ckpt has no streams", t);
	}
	return fail(r, "unknown value type %d", t);
}

static int oom(struct rd *r)
{
	return fail(r, "the libckpt heap is full: start with a larger --heap-size");
}

/* Builds the keyspace value from its elements.  NULL (with the error set)
 * on a duplicate member or a full heap. */
static void *build_value(struct rd *r, uint32_t kind, const struct elv *v)
{
	char buf[24];
	size_t n;
	const char *p;
	if (kind == T_LIST) {
		hlist *l = list_new();
		for (size_t i = 0; l && i < v->n; i++) {
			p = el_bytes(&v->a[i], buf, &n);
			if (!list_push(l, p, n, false)) {
				list_free(l);
				l = NULL;
			}
		}
		if (!l)
			oom(r);
		return l;
	}
	bool plain_zset = kind == T_ZSET && (v->n == 0 || v->a[0].hasd);
	if ((kind == T_HASH || (kind == T_ZSET && !plain_zset)) && v->n % 2)
		return fail(r, "%s with an odd number of elements", kind == T_HASH ? "hash" : "zset"), NULL;
	if (kind == T_SET || kind == T_HASH) {
		dict *d = dict_new();
		if (!d)
			return oom(r), NULL;
		size_t step = kind == T_HASH ? 2 : 1;
		for (size_t i = 0; i + step - 1 < v->n; i += step) {
			p = el_bytes(&v->a[i], buf, &n);
			if (dict_find(d, p, n)) {
				fail(r, "duplicate %s '%.*s'", kind == T_SET ? "set member" : "hash field",
				     (int)(n < 64 ? n : 64), p);
				goto dfail;
			}
			dent *f = dict_add_raw(d, p, n);
			if (!f)
				goto doom;
			if (kind == T_HASH) {
				char vb[24];
				size_t vn;
				const char *vp = el_bytes(&v->a[i + 1], vb, &vn);
				if (!(f->v.p = hstr_new(vp, vn)))
					goto doom;
			}
		}
		return d;
	doom:
		oom(r);
	dfail:
		free_value(kind, d);
		return NULL;
	}
	/* zset: plain encodings carry the score in el.d, compact ones as the
	 * next element */
	zset *z = zset_new();
	if (!z)
		return oom(r), NULL;
	size_t step = plain_zset ? 1 : 2;
	for (size_t i = 0; i + step - 1 < v->n; i += step) {
		double d = v->a[i].d;
		if (!plain_zset && el_double(r, &v->a[i + 1], &d))
			goto zfail;
		p = el_bytes(&v->a[i], buf, &n);
		if (dict_find(z->d, p, n)) {
			fail(r, "duplicate zset member '%.*s'", (int)(n < 64 ? n : 64), p);
			goto zfail;
		}
		if (!zset_insert(z, p, n, d)) {
			oom(r);
			goto zfail;
		}
	}
	return z;
zfail:
	zset_free(z);
	return NULL;
}

/* A value of RDB type @t, built in the heap.  NULL with the error set. */
static void *read_value(struct rd *r, int t, uint32_t *kind)
{
	struct elv v;
	void *val = NULL;
	memset(&v, 0, sizeof(v));
	*kind = T_STRING;
	if (t == RDB_TYPE_STRING) {
		struct rstr s;
		if (get_str(r, &s))
			return NULL;
		val = hstr_new(s.p, s.n);
		rstr_free(&s);
		if (!val)
			oom(r);
	} else if (get_elements(r, t, &v, kind) == 0) {
		val = build_value(r, *kind, &v);
	}
	elv_free(&v);
	return val;
}

/* One key: its name, its value, then it joins the keyspace (unless its TTL
 * has passed already: Redis drops those on load too). */
static int load_key(struct rd *r, int t, long long expire, uint64_t *nkeys)
{
	struct rstr key;
	struct elv v;
	uint32_t kind = T_STRING;
	void *val = NULL;
	memset(&v, 0, sizeof(v));
	size_t at = r->pos;
	if (get_str(r, &key) || keep(r, &v, &key))
		goto out;
	val = read_value(r, t, &kind);
	if (!val)
		goto out;
	if (expire != -1 && expire <= mstime()) {
		free_value(kind, val);
		goto out;
	}
	if (dict_find(g_ks->db, key.p, key.n)) {
		free_value(kind, val);
		r->pos = at;
		fail(r, "duplicate key '%.*s'", (int)(key.n < 64 ? key.n : 64), key.p);
		goto out;
	}
	dent *e = dict_add_raw(g_ks->db, key.p, key.n);
	if (!e || (expire != -1 && !dict_add_raw(g_ks->expires, key.p, key.n))) {
		if (e)
			delete_entry(e);
		free_value(kind, val);
		oom(r);
		goto out;
	}
	e->type = kind;
	e->v.p = val;
	e->expire = expire;
	(*nkeys)++;
out:
	elv_free(&v);
	return r->failed ? -EINVAL : 0;
}

static int check_trailer(struct rd *r, int version)
{
	if (version < 5)
		return 0;
	size_t end = r->pos;
	const unsigned char *q = take(r, 8);
	if (!q)
		return -EINVAL;
	uint64_t want = 0;
	for (int i = 7; i >= 0; i--)
		want = want << 8 | q[i];
	/* 0: written with rdbchecksum no */
	if (want != 0 && want != rdb_crc64(0, r->p, end)) {
		r->pos = end;
		return fail(r, "checksum mismatch: the file is damaged");
	}
	return 0;
}

static int load_all(struct rd *r, uint64_t *nkeys)
{
	const unsigned char *q = take(r, 9);
	if (!q || memcmp(q, "REDIS", 5) != 0)
		return fail(r, "not an RDB file (no REDIS magic)");
	int version = 0;
	for (int i = 5; i < 9; i++) {
		if (q[i] < '0' || q[i] > '9')
			return fail(r, "bad RDB version field");
		version = version * 10 + (q[i] - '0');
	}
	if (version < 1 || version > RDB_VERSION)
		return fail(r, "RDB version %d is not supported (1 to %d)", version, RDB_VERSION);
	long long expire = -1;
	for (;;) {
		uint64_t a, b;
		struct rstr s1, s2;
		int t = get_byte(r);
		switch (t) {
		case -1:
			return -EINVAL;
		case RDB_OPCODE_EXPIRETIME_MS:
		case RDB_OPCODE_EXPIRETIME: {
			int bytes = t == RDB_OPCODE_EXPIRETIME_MS ? 8 : 4;
			if (!(q = take(r, (size_t)bytes)))
				return -EINVAL;
			expire = 0;
			for (int i = bytes - 1; i >= 0; i--)
				expire = expire << 8 | q[i];
			if (bytes == 4)
				expire *= 1000;
			continue;
		}
		case RDB_OPCODE_FREQ:
			if (!take(r, 1))
				return -EINVAL;
			continue;
		case RDB_OPCODE_IDLE:
			if (get_len(r, &a, NULL))
				return -EINVAL;
			continue;
		case RDB_OPCODE_AUX:
			if (get_str(r, &s1))
				return -EINVAL;
			rstr_free(&s1);
			if (get_str(r, &s2))
				return -EINVAL;
			rstr_free(&s2);
			continue;
		case RDB_OPCODE_RESIZEDB:
			if (get_len(r, &a, NULL) || get_len(r, &b, NULL))
				return -EINVAL;
			continue;
		case RDB_OPCODE_SELECTDB:
			if (get_len(r, &a, NULL))
				return -EINVAL;
			if (a != 0)
				return fail(r, "keys in database %llu: redis-ckpt has database 0 only",
					    (unsigned long long)a);
			continue;
		case RDB_OPCODE_MODULE_AUX:
			return fail(r, "module data is not supported");
		case RDB_OPCODE_FUNCTION2:
		case 246:
			return fail(r, "functions (FUNCTION LOAD libraries) are not supported");
		case RDB_OPCODE_EOF:
			return check_trailer(r, version);
		default:
			if (load_key(r, t, expire, nkeys))
				return -EINVAL;
			expire = -1;
		}
	}
}

bool rdb_file_is_rdb(const char *path)
{
	char magic[5];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool yes = read(fd, magic, 5) == 5 && memcmp(magic, "REDIS", 5) == 0;
	close(fd);
	return yes;
}

int rdb_load_file(const char *path, char *err, size_t errlen, uint64_t *nkeys)
{
	struct rd r = { .err = err, .errlen = errlen };
	*nkeys = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "can't open: %s", strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size == 0) {
		snprintf(err, errlen, "offset 0: empty file");
		close(fd);
		return -EINVAL;
	}
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		int e = errno;
		snprintf(err, errlen, "can't map: %s", strerror(e));
		return -e;
	}
	r.p = m;
	r.len = (size_t)st.st_size;
	int rc = load_all(&r, nkeys);
	munmap(m, r.len);
	return rc;
}

/* ------------------------------------------------------------- start-up */

static char g_import_path[1400];

bool rdb_startup_redirect(char *path, size_t cap)
{
	if (!rdb_file_is_rdb(path))
		return false;
	size_t n = strlen(path);
	if (n + 6 > cap) {
		log_msg('#', "The path '%s' is too long to name its image '%s.ckpt'", path, path);
		exit(1);
	}
	snprintf(g_import_path, sizeof(g_import_path), "%s", path);
	memcpy(path + n, ".ckpt", 6);
	struct stat st;
	if (stat(path, &st) == 0) {
		log_msg('*', "'%s' is an RDB file imported before: starting from its image '%s' "
			"(move the image away to import the RDB again)", g_import_path, path);
		return false;
	}
	log_msg('*', "'%s' is an RDB file: importing it; checkpoints go to '%s', the RDB is never written",
		g_import_path, path);
	return true;
}

void rdb_startup_import(void)
{
	char err[512] = "";
	uint64_t nkeys = 0;
	long long t0 = mstime();
	int rc = rdb_load_file(g_import_path, err, sizeof(err), &nkeys);
	if (rc < 0) {
		log_msg('#', "Can't import the RDB file '%s': %s. Refusing to start (nothing was written).",
			g_import_path, err);
		exit(1);
	}
	log_msg('*', "DB loaded from RDB %s: %llu keys in %.3f s", g_import_path, (unsigned long long)nkeys,
		(mstime() - t0) / 1e3);
	g_srv.restored_keys = nkeys;
}

/* ------------------------------------------------------------- RESTORE */

int rdb_restore_value(const char *p, size_t n, uint32_t *kind, void **val)
{
	char err[256] = "";
	if (n < 11)
		return -EBADMSG;
	const unsigned char *u = (const unsigned char *)p;
	unsigned ver = u[n - 10] | (unsigned)u[n - 9] << 8;
	uint64_t crc = 0;
	for (int i = 7; i >= 0; i--)
		crc = crc << 8 | u[n - 8 + i];
	if (ver > RDB_VERSION || crc != rdb_crc64(0, p, n - 8))
		return -EBADMSG;
	struct rd r = { .p = u, .len = n - 10, .err = err, .errlen = sizeof(err) };
	int t = get_byte(&r);
	*val = t < 0 || t >= RDB_OPCODE_FUNCTION2 ? NULL : read_value(&r, t, kind);
	if (*val && r.pos != r.len) { /* trailing bytes: not one value */
		free_value(*kind, *val);
		*val = NULL;
	}
	if (!*val)
		return strstr(err, "heap is full") && r.failed ? -ENOMEM : -EINVAL;
	return 0;
}
