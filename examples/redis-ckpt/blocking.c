/*
 * blocking.c - clients blocked in BLPOP / BRPOP: who waits on which keys,
 * in arrival order; serving them when a key they wait on gets elements;
 * timeouts; and giving a served client's pipelined input back to the
 * parser.
 *
 * As in Redis, a write only marks its keys ready; the waiting clients are
 * served after the whole command (a whole EXEC) has run, so a transaction
 * that pushes and pops sees its own elements.  A blocked client's later
 * commands wait in its query buffer until it is served or times out.
 * Everything here is process memory: a checkpoint neither sees nor
 * disturbs a blocked client, and a disconnect just forgets it.
 */
#include <stdlib.h>
#include <string.h>

#include "server.h"

static client *g_bhead, *g_btail;  /* blocked clients, oldest first */
static client *g_unblocked;         /* served or timed out: input to resume */
static struct ready_key {
	char *key;
	size_t len;
} *g_ready;
static int g_nready, g_readycap;

bool blocking_active(void)
{
	return g_bhead != NULL;
}

static bool waits_on(const client *c, const char *key, size_t len)
{
	for (int i = 0; i < c->nbkeys; i++)
		if (c->bklens[i] == len && memcmp(c->bkeys[i], key, len) == 0)
			return true;
	return false;
}

int block_client(client *c, int first, int last, bool head, long long deadline)
{
	int n = last - first + 1;
	c->bkeys = calloc((size_t)n, sizeof(char *));
	c->bklens = calloc((size_t)n, sizeof(size_t));
	if (!c->bkeys || !c->bklens) {
		unblock_client(c);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		c->bkeys[i] = malloc(c->argvlen[first + i] + 1);
		if (!c->bkeys[i]) {
			unblock_client(c);
			return -1;
		}
		memcpy(c->bkeys[i], c->argv[first + i], c->argvlen[first + i] + 1);
		c->bklens[i] = c->argvlen[first + i];
		c->nbkeys++;
	}
	c->bpop = true;
	c->flags |= CF_BLOCKED;
	c->bhead = head;
	c->bdeadline = deadline;
	c->bprev = g_btail;
	c->bnext = NULL;
	if (g_btail)
		g_btail->bnext = c;
	else
		g_bhead = c;
	g_btail = c;
	return 0;
}

/* Forgets c's wait (served, timed out or disconnected).  CF_BLOCKED stays
 * until blocking_resume() runs what the client sent meanwhile. */
void unblock_client(client *c)
{
	if (c->bpop) {
		if (c->bprev)
			c->bprev->bnext = c->bnext;
		else
			g_bhead = c->bnext;
		if (c->bnext)
			c->bnext->bprev = c->bprev;
		else
			g_btail = c->bprev;
	}
	for (int i = 0; i < c->nbkeys; i++)
		free(c->bkeys[i]);
	free(c->bkeys);
	free(c->bklens);
	c->bkeys = NULL;
	c->bklens = NULL;
	c->nbkeys = 0;
	c->bpop = false;
	c->bprev = c->bnext = NULL;
}

/* A disconnecting client: not blocked, not waiting to resume. */
void blocking_forget(client *c)
{
	unblock_client(c);
	for (client **p = &g_unblocked; *p; p = &(*p)->next_unblocked)
		if (*p == c) {
			*p = c->next_unblocked;
			break;
		}
	c->in_unblocked = false;
}

static void resume_later(client *c)
{
	unblock_client(c);
	if (!c->in_unblocked) {
		c->in_unblocked = true;
		c->next_unblocked = g_unblocked;
		g_unblocked = c;
	}
}

void blocking_key_modified(const char *key, size_t len)
{
	bool waited = false;
	for (client *b = g_bhead; b && !waited; b = b->bnext)
		waited = waits_on(b, key, len);
	if (!waited)
		return;
	for (int i = 0; i < g_nready; i++)
		if (g_ready[i].len == len && memcmp(g_ready[i].key, key, len) == 0)
			return;
	if (g_nready == g_readycap) {
		int cap = g_readycap ? g_readycap * 2 : 8;
		struct ready_key *r = realloc(g_ready, (size_t)cap * sizeof(*r));
		if (!r)
			return; /* the client then waits for its timeout or the next push */
		g_ready = r;
		g_readycap = cap;
	}
	char *k = malloc(len + 1);
	if (!k)
		return;
	memcpy(k, key, len);
	k[len] = 0;
	g_ready[g_nready++] = (struct ready_key){ k, len };
}

/* After each command: the clients waiting on keys that got elements, oldest
 * first, each take one element while there are some. */
void blocking_serve_ready(void)
{
	while (g_nready) {
		struct ready_key r = g_ready[--g_nready];
		client *b = g_bhead;
		while (b) {
			client *next = b->bnext;
			/* a client closing (EOF seen this loop) takes nothing */
			if (!(b->flags & CF_CLOSE_ASAP) && waits_on(b, r.key, r.len)) {
				if (!serve_blocked_pop(b, r.key, r.len, b->bhead))
					break; /* the list is empty (or gone) */
				resume_later(b);
			}
			b = next;
		}
		free(r.key);
	}
}

/* The cron: blocked clients whose timeout passed get a null array. */
void blocking_cron(long long now_ms)
{
	client *b = g_bhead;
	while (b) {
		client *next = b->bnext;
		if (b->bdeadline && b->bdeadline <= now_ms) {
			add_reply_null_array(b);
			resume_later(b);
		}
		b = next;
	}
}

/* Clients served or timed out: their pipelined commands run now, from the
 * event loop (never from inside another client's command). */
void blocking_resume(void)
{
	while (g_unblocked) {
		client *c = g_unblocked;
		g_unblocked = c->next_unblocked;
		c->in_unblocked = false;
		client_unblock(c);
	}
}
