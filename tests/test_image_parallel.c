/*
 * test_image_parallel.c - zstd images compressed by N worker threads
 * (ckpt_begin_opts.threads): the file is byte-for-byte the same whatever N
 * and whichever worker finishes first, it restores exactly, and a damaged
 * block is still caught.
 */
#include <sys/stat.h>

#include "image_util.h"

#define BASE 0x5c0000000000ull
#define PSZ 4096u
#define NPAGES 6000u /* ~23 MiB: two dozen 1 MiB blocks, more than any ring holds */

static uint8_t *mem;
static char *dir;

static void setup(void)
{
	mem = malloc((size_t)NPAGES * PSZ);
	cr_assert(mem);
	iu_fill(mem, NPAGES, PSZ, 77);
	dir = iu_tmpdir("par");
}

static void teardown(void)
{
	free(mem);
	iu_rmtree(dir);
	free(dir);
}

/* Writes mem with @level and @threads workers to dir/NAME. */
static void write_with(const char *name, int level, unsigned threads, char *path, size_t pathsz)
{
	snprintf(path, pathsz, "%s/%s", dir, name);
	struct ckpt_begin_opts o = iu_opts(level, CKPT_BEGIN_NO_FSYNC);
	o.threads = threads;
	struct ckpt_sink_info in = iu_info(BASE, 64ull << 20, PSZ, NPAGES, 5);
	struct ckpt_dest d = {.kind = CKPT_DEST_PATH, .path = path};
	CKPT_ASSERT_OK(iu_write(&d, &o, &in, mem, NULL, 0, 11));
}

static void assert_restores_exactly(const char *path)
{
	uint8_t *got = NULL;
	size_t size = 0;
	char err[256] = "";
	int rc = iu_load(path, &got, &size, err, sizeof(err));
	cr_assert(rc == 0, "%s: %s", path, err);
	cr_assert(memcmp(got, mem, (size_t)NPAGES * PSZ) == 0, "%s: restored pages differ", path);
	for (size_t i = (size_t)NPAGES * PSZ; i < size; i += PSZ)
		cr_assert(got[i] == 0, "%s: page past the extent not zero", path);
	munmap(got, size);
}

Test(image_parallel, any_number_of_workers_writes_the_same_bytes_and_restores_exactly, .init = setup,
     .fini = teardown, .timeout = 240)
{
	char ref[300], path[300];
	static const unsigned counts[] = {2, 3, 8, 0};
	for (int level = 1; level <= 3; level += 2) {
		char name[32];
		snprintf(name, sizeof(name), "z%d-t1", level);
		write_with(name, level, 1, ref, sizeof(ref));
		assert_restores_exactly(ref);
		size_t rlen = 0;
		uint8_t *rb = iu_read_file(ref, &rlen);
		cr_assert(rb);
		for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
			/* a few rounds each: completion order differs run to run */
			for (int round = 0; round < 3; round++) {
				snprintf(name, sizeof(name), "z%d-t%u-%d", level, counts[i], round);
				write_with(name, level, counts[i], path, sizeof(path));
				size_t len = 0;
				uint8_t *b = iu_read_file(path, &len);
				cr_assert(b);
				cr_assert(len == rlen && memcmp(b, rb, len) == 0,
					  "zstd-%d with %u workers: image differs from 1 worker's (%zu vs %zu bytes)",
					  level, counts[i], len, rlen);
				free(b);
				unlink(path);
			}
		}
		write_with("last", level, 8, path, sizeof(path));
		assert_restores_exactly(path);
		free(rb);
	}
}

/* Every block of a many-worker image is checked: a byte flipped inside any
 * block's compressed data is CKPT_E_CORRUPT, never silently applied. */
Test(image_parallel, a_damaged_block_of_a_parallel_image_is_detected, .init = setup,
     .fini = teardown, .timeout = 240)
{
	char path[300], bad[300];
	write_with("good", 1, 8, path, sizeof(path));
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	size_t len = 0;
	uint8_t *b = iu_read_file(path, &len);
	cr_assert(b);
	/* the footer locates the trailer, whose index locates each block */
	struct ckpt__footer f;
	memcpy(&f, b + len - sizeof(f), sizeof(f));
	struct ckpt__trl_header th;
	memcpy(&th, b + f.trailer_offset, sizeof(th));
	cr_assert(th.nblocks >= 16, "only %llu blocks", (unsigned long long)th.nblocks);
	const struct ckpt__trl_entry *ix = (const void *)(b + f.trailer_offset + sizeof(th));
	uint64_t step = th.nblocks / 8;
	for (uint64_t k = 0; k < th.nblocks; k += step) {
		struct ckpt__trl_entry e;
		memcpy(&e, &ix[k], sizeof(e));
		size_t at = (size_t)e.offset + sizeof(struct ckpt__blk_header) + 100;
		b[at] ^= 0x40;
		cr_assert_eq(iu_write_file(bad, b, len), 0);
		b[at] ^= 0x40;
		char err[256] = "";
		int rc = ckpt_image_verify(bad, 0, err, sizeof(err));
		cr_assert(rc == CKPT_E_CORRUPT, "block %llu damaged: %s (%s)", (unsigned long long)k,
			  ckpt_err_name(rc), err);
	}
	free(b);
	char err[256] = "";
	CKPT_ASSERT_OK(ckpt_image_verify(path, 0, err, sizeof(err)));
}
