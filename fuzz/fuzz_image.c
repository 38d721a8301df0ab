/*
 * fuzz_image.c - libFuzzer harness for the image reader (restore.c,
 * image.c): header, blocks, trailer, footer and incremental chains.
 *
 * An input is a mode byte and up to four files:
 *
 *   byte 0    bit 0: re-seal checksums (fixup.h), bit 1: also re-seal the
 *             trailer/footer structure, bit 2: ckpt_restore() at the image's
 *             base, bit 3: ckpt_restore_fd() from a pipe
 *   then      [u32 little-endian length][bytes] per file, f0 .. f3; a
 *             length past the end takes what is left
 *
 * f0 is the image read; an incremental f0 names its parent by file name, so
 * a chain is f0 -> f1 -> ... when the names say so (the seeds do), and any
 * other name is simply missing.  Each file is re-sealed on its own.
 *
 * Oracles, beyond "no crash, no sanitizer report":
 *  - no fd is left open by any call, whatever it returned;
 *  - after a failed ckpt_restore*(), nothing is mapped at the image's base;
 *  - when the chain loads into anonymous memory (the verifier's own
 *    apply path) and ckpt_restore() also succeeds, the restored heap holds
 *    the same bytes: two readers of one image never disagree.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "image.h"
#include "internal.h"
#include "fixup.h"
#include "fuzzfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CMP_MAX (16u << 20)

static bool g_verbose; /* CKPT_FUZZ_VERBOSE=1: print each call's result (replay) */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void setup(void)
{
	if (g_dir[0])
		return;
	g_verbose = getenv("CKPT_FUZZ_VERBOSE") != NULL;
	fuzzfs_setup("image");
}

static void check_restored(ckpt_heap *h, const uint8_t *mem, const struct ckpt__img_header *hdr)
{
	uint64_t n = hdr->npages * (uint64_t)hdr->page_size;
	if (n > CMP_MAX)
		n = CMP_MAX;
	if (ckpt_heap_size(h) != hdr->heap_size ||
	    (uint64_t)(uintptr_t)ckpt_heap_base(h) != hdr->base ||
	    memcmp(ckpt_heap_base(h), mem, n) != 0) {
		fprintf(stderr, "fuzz_image: restore and the verifier's loader disagree\n");
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	data++;
	size--;

	uint8_t *files[NFILES] = { 0 };
	size_t lens[NFILES] = { 0 };
	int nfiles = 0;
	for (int i = 0; i < NFILES; i++)
		unlink(g_path[i]);
	while (nfiles < NFILES && size > 0) {
		size_t n = size;
		if (size >= 4) {
			uint32_t l;
			memcpy(&l, data, 4);
			data += 4;
			size -= 4;
			n = l < size ? l : size;
		}
		files[nfiles] = malloc(n ? n : 1);
		if (!files[nfiles])
			abort();
		memcpy(files[nfiles], data, n);
		lens[nfiles] = fz_fixup(files[nfiles], n, mode & 3);
		write_file(g_path[nfiles], files[nfiles], lens[nfiles]);
		data += n;
		size -= n;
		nfiles++;
	}
	if (nfiles == 0)
		return 0;

	int fds0 = count_fds();
	char err[256];

	struct ckpt_image_info info;
	ckpt_image_info(g_path[0], &info, err, sizeof(err));
	ckpt_image_verify(g_path[0], 0, err, sizeof(err));
	int vrc = ckpt_image_verify(g_path[0], CKPT_VERIFY_CHAIN, err, sizeof(err));

	struct ckpt__load_opts lo = { .chain = true };
	struct ckpt__img_header hdr;
	uint8_t *mem = NULL;
	int lrc = ckpt__image_load_anon(g_path[0], &lo, &hdr, &mem, err, sizeof(err));
	if (g_verbose)
		fprintf(stderr, "  mode %#x, %d files: verify %s, load %s (%s)\n", mode, nfiles,
			ckpt_err_name(vrc), ckpt_err_name(lrc), lrc ? err : "");
	/* the two walk the same checks; only the loader maps heap_size bytes
	 * of anonymous memory, which a huge (valid) heap_size can fail */
	if ((lrc == 0) != (vrc == 0) && lrc != -ENOMEM) {
		fprintf(stderr, "fuzz_image: verify says %s, load says %s\n", ckpt_err_name(vrc),
			ckpt_err_name(lrc));
		abort();
	}

	struct ckpt__img_header h0;
	bool have_h0 = lens[0] >= sizeof(h0);
	if (have_h0)
		memcpy(&h0, files[0], sizeof(h0));

	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.pool_bytes = 1u << 20;
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.heap = &ho;
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);

	/* whatever is mapped at the image's base before (ASan's shadow, the
	 * harness's own memory) is not the restore's doing */
	bool busy0 = have_h0 && mapped_at(h0.base);
	if (mode & 4) {
		ckpt_heap *h = NULL;
		int rc = ckpt_restore(g_path[0], &ro, &h);
		if (g_verbose)
			fprintf(stderr, "  restore %s %s\n", ckpt_err_name(rc), rc ? err : "");
		if (rc == 0) {
			if (lrc == 0)
				check_restored(h, mem, &hdr);
			ckpt_heap_destroy(h);
		} else if (h != NULL) {
			abort(); /* *out must be NULL on failure */
		}
		if (have_h0 && !busy0 && mapped_at(h0.base)) {
			fprintf(stderr, "fuzz_image: something left mapped at %#llx (rc %s)\n",
				(unsigned long long)h0.base, ckpt_err_name(rc));
			abort();
		}
	}
	if ((mode & 8) && lens[0] <= (1u << 20)) {
		int p[2];
		if (pipe2(p, O_CLOEXEC) == 0) {
			fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
			ssize_t w = write(p[1], files[0], lens[0]);
			close(p[1]);
			if (w == (ssize_t)lens[0]) {
				ckpt_heap *h = NULL;
				int rc = ckpt_restore_fd(p[0], &ro, &h);
				if (g_verbose)
					fprintf(stderr, "  restore_fd %s %s\n", ckpt_err_name(rc), rc ? err : "");
				if (rc == 0) {
					if (lrc == 0)
						check_restored(h, mem, &hdr);
					ckpt_heap_destroy(h);
				}
				if (rc != 0 && have_h0 && !busy0 && mapped_at(h0.base))
					abort();
			}
			close(p[0]);
		}
	}

	if (mem)
		munmap(mem, hdr.heap_size);
	int fds1 = count_fds();
	if (fds0 >= 0 && fds1 != fds0) {
		fprintf(stderr, "fuzz_image: %d fds before, %d after\n", fds0, fds1);
		abort();
	}
	for (int i = 0; i < nfiles; i++)
		free(files[i]);
	return 0;
}
