/*
 * fuzz_resp.c - libFuzzer harness for redis-ckpt's RESP parser (and the
 * commands it dispatches to).
 *
 * The parser is static inside examples/redis-ckpt/server.c, so this file
 * compiles server.c into itself (main renamed) instead of changing it:
 * the code fuzzed is exactly the server's, byte for byte.  commands.c and
 * db.c are linked as they are; the keyspace lives in a real libckpt heap.
 *
 * One input is one client connection: byte 0 chooses how the stream is cut
 * into reads (1 byte at a time up to all at once: the parser must give the
 * same answers whatever the segmentation) and whether the server requires
 * a password; the rest is what the client sends.  The bytes go through a
 * socketpair and the server's own client_read(), so the query-buffer
 * growth and big-argument paths run too; replies are drained through its
 * client_write().  Admin commands that touch files or the process
 * (SAVE, BGSAVE, SHUTDOWN, CONFIG) are replaced by a stub; after each input
 * the keyspace is flushed and the client freed, so inputs do not interact.
 */
#define main redis_ckpt_main
int redis_ckpt_main(int argc, char **argv);
#include "../examples/redis-ckpt/server.c"
#undef main

#include <sys/ioctl.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static void cmd_stub(client *c)
{
	add_reply_ok(c);
}

static bool g_ready;
static bool g_verbose; /* CKPT_FUZZ_VERBOSE=1: copy the replies to stderr (replay) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	g_srv.port = 6379;
	snprintf(g_srv.bind, sizeof(g_srv.bind), "127.0.0.1");
	snprintf(g_srv.dir, sizeof(g_srv.dir), "/nonexistent-fuzz");
	snprintf(g_srv.dbfilename, sizeof(g_srv.dbfilename), "dump.ckpt");
	snprintf(g_srv.path, sizeof(g_srv.path), "/nonexistent-fuzz/dump.ckpt");
	g_srv.heap_size = 64u << 20;
	g_srv.mode = CKPT_TRAP_THREAD;
	g_srv.maxclients = 100;
	g_srv.protected_mode = true;
	g_srv.epfd = -1;
	g_srv.lfd = -1;
	g_verbose = getenv("CKPT_FUZZ_VERBOSE") != NULL;
	g_log = fopen("/dev/null", "we");
	srandom(1);
	signal(SIGPIPE, SIG_IGN);
	commands_init();
	for (size_t i = 0; i < command_count(); i++)
		if (g_commands[i].flags & CMD_ADMIN)
			g_commands[i].proc = cmd_stub;

	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = g_srv.heap_size;
	ho.base = (void *)0x5c0000000000ull; /* away from the image harness's heaps */
	ho.name = "fuzz-resp";
	int rc = ckpt_heap_create(&ho, &g_heap);
	if (rc) {
		fprintf(stderr, "fuzz_resp: cannot create the libckpt heap: %s\n", ckpt_strerror(rc));
		return 0;
	}
	keyspace_init_fresh();
	g_ready = g_ks != NULL;
	return 0;
}

static void drain(int fd)
{
	char buf[65536];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		if (g_verbose)
			fwrite(buf, 1, (size_t)(n > 2000 ? 2000 : n), stderr);
}

static size_t pending_bytes(int fd)
{
	int n = 0;
	if (ioctl(fd, FIONREAD, &n) != 0)
		return 0;
	return n > 0 ? (size_t)n : 0;
}

static const size_t cuts[8] = { 1, 2, 3, 7, 16, 100, 4096, (size_t)-1 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!g_ready)
		abort(); /* no heap, no server: say so rather than pass vacuously */
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	data++;
	size--;
	size_t cut = cuts[mode & 7];
	/* at most ~256 reads per input: byte-at-a-time over a 40 KB argument
	 * would spend the fuzzer's time in syscalls */
	if (cut < size / 256)
		cut = size / 256;
	if (mode & 8)
		snprintf(g_srv.requirepass, sizeof(g_srv.requirepass), "fuzzpass");
	else
		g_srv.requirepass[0] = 0;

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return 0;
	client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	c->fd = sv[0];
	c->id = ++g_srv.next_client_id;
	c->bulklen = -1;
	c->ctime = time(NULL);
	snprintf(c->addr, sizeof(c->addr), "127.0.0.1:1");
	if (!g_srv.requirepass[0])
		c->flags |= CF_AUTHED;
	c->next = g_srv.clients;
	if (g_srv.clients)
		g_srv.clients->prev = c;
	g_srv.clients = c;
	g_srv.nclients++;

	size_t off = 0;
	while (off < size && !(c->flags & (CF_CLOSE_ASAP | CF_CLOSE_AFTER_REPLY))) {
		size_t n = size - off < cut ? size - off : cut;
		ssize_t w = send(sv[1], data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w <= 0) {
			/* the socket is full: let the server read some */
			w = 0;
		}
		off += (size_t)w;
		/* the server reads until the socket is empty, as epoll would
		 * make it do */
		while (pending_bytes(sv[0]) > 0 && !(c->flags & CF_CLOSE_ASAP))
			client_read(c);
		flush_pending();
		drain(sv[1]);
	}
	flush_pending();
	drain(sv[1]);

	/* tear down: the client, then the keyspace */
	g_srv.pending = NULL;
	if (c->flags & CF_CLOSE_ASAP) {
		free_closed_clients(); /* frees c (and closes sv[0]) */
	} else {
		client_free_now(c);
	}
	close(sv[1]);
	g_srv.to_close = NULL;
	g_srv.shutdown_asap = false;

	client flusher;
	memset(&flusher, 0, sizeof(flusher));
	flusher.fd = -1;
	flusher.argc = 1;
	struct command *fl = command_lookup("flushall", 8);
	if (fl)
		fl->proc(&flusher);
	free(flusher.obuf);
	g_srv.pending = NULL; /* the flusher queued itself for writing */
	return 0;
}
