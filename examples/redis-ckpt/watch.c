/*
 * watch.c - what happens when a command has modified keys: WATCH's
 * optimistic locks (a later EXEC of a watching client aborts) and the
 * wake-up of clients blocked in BLPOP/BRPOP on those keys (blocking.c).
 *
 * Process state only: the watched names and flags are per client, never in
 * the heap (a checkpoint has nothing to do with a transaction in flight).
 * Each write costs one branch while nobody watches and nobody is blocked;
 * otherwise its keys are compared with every watching client's (a list of
 * watchers kept small in practice, as Redis's per-key dict would be).
 */
#include <stdlib.h>
#include <string.h>

#include "server.h"

static int g_watchers; /* clients with at least one watched key */

bool watch_active(void)
{
	return g_watchers > 0;
}

static bool same_key(const struct watched_key *w, const char *key, size_t len)
{
	return w->len == len && memcmp(w->key, key, len) == 0;
}

void unwatch_all(client *c)
{
	for (int i = 0; i < c->nwatched; i++)
		free(c->watched[i].key);
	free(c->watched);
	if (c->nwatched)
		g_watchers--;
	c->watched = NULL;
	c->nwatched = c->watchcap = 0;
	c->dirty_cas = false;
}

void cmd_watch(client *c)
{
	if (c->in_multi) {
		add_reply_error(c, "ERR WATCH inside MULTI is not allowed");
		return;
	}
	for (int i = 1; i < c->argc; i++) {
		bool dup = false;
		for (int j = 0; j < c->nwatched && !dup; j++)
			dup = same_key(&c->watched[j], c->argv[i], c->argvlen[i]);
		if (dup)
			continue;
		if (c->nwatched == c->watchcap) {
			int cap = c->watchcap ? c->watchcap * 2 : 4;
			struct watched_key *w = realloc(c->watched, (size_t)cap * sizeof(*w));
			if (!w) {
				add_reply_error(c, "ERR out of memory");
				return;
			}
			c->watched = w;
			c->watchcap = cap;
		}
		char *k = malloc(c->argvlen[i] + 1);
		if (!k) {
			add_reply_error(c, "ERR out of memory");
			return;
		}
		memcpy(k, c->argv[i], c->argvlen[i] + 1);
		/* a key already expired (not yet deleted) at WATCH time: its
		 * deletion later is no change, as in Redis */
		c->watched[c->nwatched++] = (struct watched_key){ k, c->argvlen[i], key_is_expired(k, c->argvlen[i]) };
		if (c->nwatched == 1)
			g_watchers++;
	}
	add_reply_ok(c);
}

void cmd_unwatch(client *c)
{
	unwatch_all(c);
	add_reply_ok(c);
}

/* EXEC's check: a watched key was modified, or has expired since WATCH. */
bool watch_exec_aborts(client *c)
{
	if (c->dirty_cas)
		return true;
	for (int i = 0; i < c->nwatched; i++)
		if (!c->watched[i].expired && key_is_expired(c->watched[i].key, c->watched[i].len))
			return true;
	return false;
}

void signal_modified_key(const char *key, size_t len)
{
	if (g_watchers) {
		for (client *o = g_srv.clients; o; o = o->next) {
			for (int i = 0; i < o->nwatched && !o->dirty_cas; i++) {
				struct watched_key *w = &o->watched[i];
				if (!same_key(w, key, len))
					continue;
				if (w->expired && !key_exists(key, len))
					w->expired = false; /* the expired key was deleted: no change */
				else
					o->dirty_cas = true;
			}
		}
	}
	blocking_key_modified(key, len);
}

void signal_all_keys_modified(void)
{
	for (client *o = g_srv.clients; g_watchers && o; o = o->next)
		for (int i = 0; i < o->nwatched && !o->dirty_cas; i++)
			if (key_exists(o->watched[i].key, o->watched[i].len))
				o->dirty_cas = true;
}

/* Runs a command and signals the keys it wrote (those its key spec names,
 * unless it signals them itself: CMD_TOUCH_SELF). */
void command_run(client *c, struct command *cmd)
{
	long long dirty = g_srv.dirty;
	cmd->proc(c);
	if (dirty == g_srv.dirty || !(cmd->flags & CMD_WRITE) || (cmd->flags & CMD_TOUCH_SELF) || cmd->firstkey <= 0)
		return;
	if (!g_watchers && !blocking_active())
		return;
	int last = cmd->lastkey < 0 ? c->argc + cmd->lastkey : cmd->lastkey;
	for (int i = cmd->firstkey; i <= last && i < c->argc; i += cmd->step)
		signal_modified_key(c->argv[i], c->argvlen[i]);
}
