/*
 * fuzz_lazy.c - libFuzzer harness for the lazy reader (lazyrestore.c):
 * ckpt_restore() with CKPT_RESTORE_LAZY, which checks an image's structure
 * up front and its blocks only as they are loaded, against the eager
 * reader on the same files.
 *
 * Input: the same format as fuzz_image.c (its corpus seeds this one): a
 * mode byte (bit 0: re-seal checksums, bit 1: also the trailer/footer
 * structure, fixup.h) and up to four files f0 .. f3, each as
 * [u32 little-endian length][bytes]; f0 is restored, an incremental names
 * its parents by file name.
 *
 * Oracles, beyond "no crash, no sanitizer report":
 *  - the lazy restore, driven to full residency (ckpt_restore_wait()),
 *    succeeds exactly when the eager ckpt_restore() does, and then both
 *    heaps hold the same bytes: a damaged block is found by one reader iff
 *    by the other, however late;
 *  - no fd and no thread is left behind, and nothing stays mapped at the
 *    image's base, whatever the outcome.
 * The harness never touches heap memory of a lazy heap that failed: those
 * pages are poisoned by design (a SIGBUS there is the documented outcome).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt.h"
#include "image.h"
#include "internal.h"
#include "fixup.h"
#include "fuzzfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CMP_MAX (16u << 20)

static bool g_verbose;

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Threads of this process, io_uring's workers (iou-*) excepted: they
 * belong to the eager reader's ring and come and go on their own. */
static int count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char p[300], comm[32] = "";
		snprintf(p, sizeof(p), "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(p, "re");
		if (!f)
			continue; /* exiting as we look */
		bool named = fgets(comm, sizeof(comm), f) != NULL;
		fclose(f);
		if (named && strncmp(comm, "iou-", 4) != 0)
			n++;
	}
	closedir(d);
	return n;
}

static void setup(void)
{
	if (g_dir[0])
		return;
	g_verbose = getenv("CKPT_FUZZ_VERBOSE") != NULL;
	fuzzfs_setup("lazy");
}

static int split_files(const uint8_t *data, size_t size, unsigned mode, uint8_t **files, size_t *lens)
{
	int n = 0;
	for (int i = 0; i < NFILES; i++)
		unlink(g_path[i]);
	while (n < NFILES && size > 0) {
		size_t k = size;
		if (size >= 4) {
			uint32_t l;
			memcpy(&l, data, 4);
			data += 4;
			size -= 4;
			k = l < size ? l : size;
		}
		files[n] = malloc(k ? k : 1);
		if (!files[n])
			abort();
		memcpy(files[n], data, k);
		lens[n] = fz_fixup(files[n], k, mode & 3);
		write_file(g_path[n], files[n], lens[n]);
		data += k;
		size -= k;
		n++;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (size < 1)
		return 0;
	uint8_t *files[NFILES] = { 0 };
	size_t lens[NFILES] = { 0 };
	int nfiles = split_files(data + 1, size - 1, data[0], files, lens);
	if (nfiles == 0)
		return 0;
	int fds0 = count_dir("/proc/self/fd"), thr0 = count_threads();
	struct ckpt__img_header h0;
	bool have_h0 = lens[0] >= sizeof(h0);
	if (have_h0)
		memcpy(&h0, files[0], sizeof(h0));
	bool busy0 = have_h0 && mapped_at(h0.base);

	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.pool_bytes = 1u << 20;
	char err[256];
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.heap = &ho;
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);

	/* the eager reader's verdict and bytes (first 16 MiB) */
	ckpt_heap *e = NULL;
	int erc = ckpt_restore(g_path[0], &ro, &e);
	char eerr[256];
	snprintf(eerr, sizeof(eerr), "%s", erc ? err : "");
	err[0] = 0;
	uint8_t *copy = NULL;
	size_t clen = 0;
	if (erc == 0) {
		clen = ckpt_heap_size(e) < CMP_MAX ? ckpt_heap_size(e) : CMP_MAX;
		copy = malloc(clen);
		if (!copy)
			abort();
		memcpy(copy, ckpt_heap_base(e), clen);
		ckpt_heap_destroy(e);
	}

	ro.flags = CKPT_RESTORE_LAZY;
	ckpt_heap *h = NULL;
	int lrc = ckpt_restore(g_path[0], &ro, &h);
	int wrc = lrc;
	if (lrc == 0) {
		wrc = ckpt_restore_wait(h);
		if (wrc == 0 && copy && memcmp(ckpt_heap_base(h), copy, clen) != 0) {
			fprintf(stderr, "fuzz_lazy: the lazy and the eager heap differ\n");
			abort();
		}
		ckpt_heap_destroy(h);
	} else if (h) {
		abort(); /* *out must be NULL on failure */
	}
	if (g_verbose)
		fprintf(stderr, "  eager %s, lazy %s then %s\n", ckpt_err_name(erc), ckpt_err_name(lrc),
			ckpt_err_name(wrc));
	/* ENOMEM may hit one reader and not the other (different memory) */
	if ((erc == 0) != (wrc == 0) && erc != -ENOMEM && wrc != -ENOMEM) {
		fprintf(stderr, "fuzz_lazy: eager says %s (%s), lazy says %s (%s)\n", ckpt_err_name(erc), eerr,
			ckpt_err_name(wrc), err);
		abort();
	}
	if (have_h0 && !busy0 && mapped_at(h0.base)) {
		fprintf(stderr, "fuzz_lazy: something left mapped at %#llx\n", (unsigned long long)h0.base);
		abort();
	}
	int fds1 = count_dir("/proc/self/fd"), thr1 = count_threads();
	/* a thread just joined can still be listed while the kernel reaps it
	 * (tests/util/testutil.c saw the same): look again for up to 200 ms
	 * before calling it a leak */
	for (int i = 0; i < 200 && thr0 >= 0 && thr1 > thr0; i++) {
		usleep(1000);
		thr1 = count_threads();
	}
	if ((fds0 >= 0 && fds1 != fds0) || (thr0 >= 0 && thr1 != thr0)) {
		fprintf(stderr, "fuzz_lazy: fds %d -> %d, threads %d -> %d\n", fds0, fds1, thr0, thr1);
		abort();
	}
	free(copy);
	for (int i = 0; i < nfiles; i++)
		free(files[i]);
	return 0;
}
