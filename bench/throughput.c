/*
 * throughput.c - checkpoint and restore rate.
 *
 *   build/bench/throughput [--size 256m] [--dir DIR] [--reps R] [--seed S]
 *                          [--codec stored|zstd-1|zstd-3] [--data compressible|incompressible]
 *                          [--threads N]
 *
 * A heap of --size bytes is filled with compressible data (text-like: words
 * from a small vocabulary, about 4:1 for zstd) or incompressible data
 * (random), then checkpointed into DIR (default $TMPDIR) stored, zstd-1 and
 * zstd-3, with fsync (the image is durable when ckpt_wait() returns, as
 * dd conv=fsync's data is).  Then the image is restored with ckpt_restore()
 * (the original heap destroyed first: the image maps back at its address).
 * Output, medians of R: "throughput data=D codec=C bytes=B ckpt_ns=N
 * ckpt_mibs=X image_bytes=B restore_ns=N restore_mibs=X reps=R".
 * run.sh compares ckpt_mibs with dd writing the same bytes to DIR.
 * --codec / --data run one configuration only; --threads sets
 * ckpt_begin_opts.threads (zstd compression workers, 0 = one per core).
 * --emit-data FILE writes the heap's bytes (as --data and --seed make them)
 * to FILE and exits: run.sh times zstd's own multi-threaded CLI on them, the
 * compression ceiling of this machine beside the zstd-1 checkpoint.
 */
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "benchutil.h"

static size_t g_size = 256ul << 20;
static const char *g_dir;
static int g_reps = 3;
static uint64_t g_seed = 1;
static const char *g_codec, *g_data;
static unsigned g_threads;
static bool g_direct;

static void fill(uint8_t *p, size_t len, bool compressible, uint64_t seed)
{
	static const char *words[] = { "user:", "session", "42", "value", "alpha", "beta",
				       "key", "timestamp", "1700000000", "{\"id\":", "null",
				       "true", "redis", "ckpt", "page", "0x5a00" };
	uint64_t rs = seed;
	if (!compressible) {
		for (size_t i = 0; i + 8 <= len; i += 8) {
			uint64_t v = bench_rand(&rs);
			memcpy(p + i, &v, 8);
		}
		return;
	}
	size_t i = 0;
	while (i < len) {
		uint64_t r = bench_rand(&rs);
		const char *w = words[r & 15];
		size_t n = strlen(w);
		if (i + n + 1 > len)
			break;
		memcpy(p + i, w, n);
		i += n;
		p[i++] = (r >> 8) & 1 ? ' ' : '\n';
		/* some numbers so it is not 100:1 */
		if ((r >> 9 & 7) == 0 && i + 6 < len) {
			for (int k = 0; k < 5; k++)
				p[i++] = (uint8_t)('0' + ((r >> (12 + 4 * k)) % 10));
			p[i++] = ' ';
		}
	}
}

static void run(bool compressible, int level)
{
	const char *data = compressible ? "compressible" : "incompressible";
	char codec[16];
	if (level)
		snprintf(codec, sizeof(codec), "zstd-%d", level);
	else
		snprintf(codec, sizeof(codec), "stored");
	char path[512];
	if ((g_codec && strcmp(g_codec, codec) != 0) || (g_data && strcmp(g_data, data) != 0))
		return;
	snprintf(path, sizeof(path), "%s/throughput.%d.ckpt", g_dir, (int)getpid());
	double cns[16], rns[16], isz[16];
	int n = 0;
	for (int k = 0; k < g_reps; k++) {
		struct ckpt_heap_opts ho;
		ckpt_heap_opts_init(&ho);
		ho.size = g_size + (64ul << 20);
		ho.name = "throughput";
		ckpt_heap *h = NULL;
		uint8_t *p = NULL;
		int rc = ckpt_heap_create(&ho, &h);
		if (rc == 0 && !(p = ckpt_alloc(h, g_size)))
			rc = -ENOMEM;
		if (rc == 0) {
			fill(p, g_size, compressible, g_seed);
			ckpt_root_set(h, p);
		}
		struct ckpt_begin_opts bo;
		ckpt_begin_opts_init(&bo);
		bo.zstd_level = level;
		bo.threads = g_threads;
		if (g_direct)
			bo.flags |= CKPT_BEGIN_DIRECT;
		struct ckpt_dest dest = { .kind = CKPT_DEST_PATH, .path = path };
		uint64_t t0 = bench_now_ns();
		if (rc == 0)
			rc = ckpt_begin(h, &dest, &bo);
		if (rc == 0)
			rc = ckpt_wait(h);
		uint64_t t1 = bench_now_ns();
		ckpt_heap_destroy(h);
		if (rc != 0) {
			printf("throughput data=%s codec=%s unavailable: checkpoint: %s\n", data, codec,
			       ckpt_strerror(rc));
			unlink(path);
			return;
		}
		struct stat sb;
		isz[n] = stat(path, &sb) == 0 ? (double)sb.st_size : -1;
		/* restore from a cold-ish page cache is not what we measure:
		 * the image was just written, as after a restart on the same
		 * machine */
		ckpt_heap *r = NULL;
		uint64_t t2 = bench_now_ns();
		rc = ckpt_restore(path, NULL, &r);
		uint64_t t3 = bench_now_ns();
		if (rc == 0 && ckpt_root_get(r) != p)
			rc = -EINVAL;
		ckpt_heap_destroy(r);
		unlink(path);
		if (rc != 0) {
			printf("throughput data=%s codec=%s unavailable: restore: %s\n", data, codec,
			       ckpt_strerror(rc));
			return;
		}
		cns[n] = (double)(t1 - t0);
		rns[n] = (double)(t3 - t2);
		n++;
	}
	double c = bench_median(cns, (size_t)n), r = bench_median(rns, (size_t)n);
	double mib = (double)g_size / (1024.0 * 1024.0);
	printf("throughput data=%s codec=%s bytes=%zu ckpt_ns=%.0f ckpt_mibs=%.1f image_bytes=%.0f "
	       "restore_ns=%.0f restore_mibs=%.1f reps=%d\n",
	       data, codec, g_size, c, mib / (c / 1e9), bench_median(isz, (size_t)n), r,
	       mib / (r / 1e9), n);
	fflush(stdout);
}

/* The bytes a run would checkpoint, to a file. */
static int emit_data(const char *path)
{
	uint8_t *p = calloc(1, g_size); /* a heap starts zero */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!p || fd < 0) {
		perror(path);
		return 1;
	}
	fill(p, g_size, !g_data || strcmp(g_data, "incompressible") != 0, g_seed);
	for (size_t off = 0; off < g_size;) {
		ssize_t w = write(fd, p + off, g_size - off);
		if (w <= 0) {
			perror(path);
			return 1;
		}
		off += (size_t)w;
	}
	free(p);
	return close(fd) ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "size", required_argument, 0, 'z' }, { "dir", required_argument, 0, 'd' },
		{ "reps", required_argument, 0, 'r' }, { "seed", required_argument, 0, 's' },
		{ "codec", required_argument, 0, 'c' }, { "data", required_argument, 0, 'D' },
		{ "threads", required_argument, 0, 't' }, { "emit-data", required_argument, 0, 'E' },
		{ "direct", no_argument, 0, 'O' },
		{ 0, 0, 0, 0 },
	};
	int c;
	const char *emit = NULL;
	while ((c = getopt_long(argc, argv, "z:d:r:s:c:D:t:E:O", lo, NULL)) != -1) {
		switch (c) {
		case 'z': g_size = bench_parse_size(optarg); break;
		case 'd': g_dir = optarg; break;
		case 'r': g_reps = atoi(optarg); break;
		case 's': g_seed = strtoull(optarg, NULL, 0); break;
		case 'c': g_codec = optarg; break;
		case 'D': g_data = optarg; break;
		case 't': g_threads = (unsigned)atoi(optarg); break;
		case 'E': emit = optarg; break;
		case 'O': g_direct = true; break;
		default:
			fprintf(stderr, "usage: throughput [--size 256m] [--dir DIR] [--reps R] [--seed S] "
					"[--codec C] [--data D] [--threads N] [--direct] [--emit-data FILE]\n");
			return 2;
		}
	}
	if (!g_dir)
		g_dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	if (g_reps < 1 || g_reps > 16)
		g_reps = 3;
	g_size &= ~4095ul;
	if (emit)
		return emit_data(emit);
	printf("throughput size=%zu dir=%s reps=%d seed=%llu\n", g_size, g_dir, g_reps,
	       (unsigned long long)g_seed);
	static const int levels[] = { 0, 1, 3 };
	for (int comp = 1; comp >= 0; comp--)
		for (int l = 0; l < 3; l++)
			run(comp, levels[l]);
	return 0;
}
