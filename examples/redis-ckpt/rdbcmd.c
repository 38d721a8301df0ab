/*
 * rdbcmd.c - DUMP and RESTORE: one value in RDB encoding (rdb.c writes it,
 * rdbload.c reads it, including Redis's compact encodings), so values move
 * between redis-ckpt and redis-server in both directions.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rdb.h"
#include "repl.h"
#include "server.h"

void cmd_dump(client *c)
{
	dent *e = lookup_key(c->argv[1], c->argvlen[1]);
	if (!e) {
		add_reply_nil(c);
		return;
	}
	char *p;
	size_t n;
	if (rdb_dump_value(e->type, e->v.p, &p, &n) != 0) {
		add_reply_error(c, "ERR out of memory");
		return;
	}
	add_reply_bulk(c, p, n);
	free(p);
}

struct restore_opts {
	bool replace, absttl;
	long long ttl;
};

static bool restore_parse(client *c, struct restore_opts *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 4; i < c->argc; i++) {
		long long v;
		const char *a = c->argv[i];
		bool more = i + 1 < c->argc;
		if (!strcasecmp(a, "replace")) {
			o->replace = true;
		} else if (!strcasecmp(a, "absttl")) {
			o->absttl = true;
		} else if (!strcasecmp(a, "idletime") && more) {
			if (!parse_ll(c->argv[i + 1], c->argvlen[i + 1], &v) || v < 0) {
				add_reply_error(c, "ERR Invalid IDLETIME value, must be >= 0");
				return false;
			}
			i++; /* no LRU clock here: accepted and ignored */
		} else if (!strcasecmp(a, "freq") && more) {
			if (!parse_ll(c->argv[i + 1], c->argvlen[i + 1], &v) || v < 0 || v > 255) {
				add_reply_error(c, "ERR Invalid FREQ value, must be >= 0 and <= 255");
				return false;
			}
			i++;
		} else {
			add_reply_error(c, "ERR syntax error");
			return false;
		}
	}
	if (!parse_ll(c->argv[2], c->argvlen[2], &o->ttl)) {
		add_reply_error(c, "ERR value is not an integer or out of range");
		return false;
	}
	if (o->ttl < 0) {
		add_reply_error(c, "ERR Invalid TTL value, must be >= 0");
		return false;
	}
	return true;
}

/* RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f] */
void cmd_restore(client *c)
{
	struct restore_opts o;
	if (!restore_parse(c, &o))
		return;
	const char *key = c->argv[1];
	size_t klen = c->argvlen[1];
	dent *old = lookup_key(key, klen);
	if (old && !o.replace) {
		add_reply_error(c, "BUSYKEY Target key name already exists.");
		return;
	}
	uint32_t kind;
	void *val;
	int rc = rdb_restore_value(c->argv[3], c->argvlen[3], &kind, &val);
	if (rc == -EBADMSG) {
		add_reply_error(c, "ERR DUMP payload version or checksum are wrong");
		return;
	}
	if (rc == -ENOMEM) {
		add_reply_oom(c);
		return;
	}
	if (rc) {
		add_reply_error(c, "ERR Bad data format");
		return;
	}
	long long when = o.ttl == 0 ? -1 : o.absttl ? o.ttl : g_now_ms + o.ttl;
	if (old) {
		delete_entry(old);
		g_srv.dirty++;
	}
	if (when != -1 && when <= g_now_ms) { /* already expired: nothing to add */
		free_value(kind, val);
		add_reply_ok(c);
		return;
	}
	dent *e = dict_add_raw(g_ks->db, key, klen);
	if (!e || (when != -1 && !dict_find(g_ks->expires, key, klen) && !dict_add_raw(g_ks->expires, key, klen))) {
		if (e)
			delete_entry(e); /* type 0, NULL value: frees nothing else */
		free_value(kind, val);
		add_reply_oom(c);
		return;
	}
	e->type = kind;
	e->v.p = val;
	e->expire = when;
	g_srv.dirty++;
	add_reply_ok(c);
}
