/*
 * test_image_hugetlb.c - a hugetlb heap (2 MiB pages) round-trips through
 * an image: ckpt_begin with the 2 MiB page size recorded, verify, restore
 * onto 2 MiB pages at the same base; restoring it as a 4 KiB heap is
 * CKPT_E_PAGESIZE.
 *
 * Huge pages are reserved under the machine lock for the duration of the
 * test and vm.nr_hugepages is put back on every exit path: the checks run in
 * a child process, so even a crash of the checks cannot skip the restore.
 */
#include <sys/wait.h>

#include "image_util.h"

#define NR_PATH "/proc/sys/vm/nr_hugepages"

static long read_long(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static int write_long(const char *path, long v)
{
	FILE *f = fopen(path, "we");
	if (!f)
		return -errno;
	int rc = fprintf(f, "%ld\n", v) > 0 ? 0 : -EIO;
	if (fclose(f) != 0)
		rc = -errno;
	return rc;
}

static long free_huge(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "hugetlb child: " __VA_ARGS__);        \
			fprintf(stderr, "\n");                                 \
			_exit(1);                                              \
		}                                                              \
	} while (0)

static void child(const char *dir)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/huge.ckpt", dir);
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = 16u << 20;
	ho.flags = CKPT_HEAP_HUGETLB;
	ckpt_heap *h = NULL;
	int rc = ckpt_heap_create(&ho, &h);
	CHECK(rc == 0, "heap_create: %s", ckpt_strerror(rc));
	CHECK(ckpt_heap_page_size(h) == (2u << 20), "page size %zu", ckpt_heap_page_size(h));
	uint8_t *p = ckpt_alloc(h, 5u << 20);
	CHECK(p, "alloc");
	for (size_t i = 0; i < (5u << 20); i++)
		p[i] = (uint8_t)(i / 4096 + i % 7);
	memset(p + (1u << 20), 0, 2u << 20); /* some zero (huge) pages, maybe */
	ckpt_root_set(h, p);
	size_t used = ckpt_heap_used(h);
	uint8_t *snap = malloc(used);
	memcpy(snap, ckpt_heap_base(h), used);
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts o = iu_opts(1, CKPT_BEGIN_NO_FSYNC);
	rc = ckpt_begin(h, &d, &o);
	CHECK(rc == 0, "begin: %s", ckpt_strerror(rc));
	p[0] ^= 0xff; /* after the instant: not in the image */
	rc = ckpt_wait(h);
	CHECK(rc == 0, "wait: %s", ckpt_strerror(rc));
	struct ckpt_image_info ii;
	rc = ckpt_image_info(path, &ii, NULL, 0);
	CHECK(rc == 0 && ii.page_size == (2u << 20), "info: %s, page size %u", ckpt_strerror(rc),
	      ii.page_size);
	char err[256] = "";
	rc = ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, sizeof(err));
	CHECK(rc == 0, "verify: %s", err);
	void *base = ckpt_heap_base(h);
	ckpt_heap_destroy(h);

	/* a 4 KiB heap cannot take 2 MiB pages */
	struct ckpt_heap_opts small;
	ckpt_heap_opts_init(&small);
	struct ckpt_restore_opts ro;
	ckpt_restore_opts_init(&ro);
	ro.heap = &small;
	ckpt_heap *r = NULL;
	rc = ckpt_restore(path, &ro, &r);
	CHECK(rc == CKPT_E_PAGESIZE, "restore as 4 KiB: %s", ckpt_err_name(rc));

	ro.heap = NULL; /* the image's page size decides */
	ro.errbuf = err;
	ro.errbuf_size = sizeof(err);
	rc = ckpt_restore(path, &ro, &r);
	CHECK(rc == 0, "restore: %s (%s)", ckpt_err_name(rc), err);
	CHECK(ckpt_heap_base(r) == base, "base");
	CHECK(ckpt_heap_page_size(r) == (2u << 20), "restored page size %zu", ckpt_heap_page_size(r));
	CHECK(memcmp(ckpt_heap_base(r), snap, used) == 0, "restored contents differ");
	CHECK(ckpt_alloc(r, 100000) != NULL, "allocator");
	ckpt_heap_destroy(r);
	free(snap);
	_exit(0);
}

Test(image_hugetlb, hugetlb_heap_round_trips_with_2mib_pages)
{
	CKPT_TEST_NEED_ROOT("reserving hugetlb pages");
	int lock = ckpt_test_machine_lock();
	long old = read_long(NR_PATH);
	cr_assert(old >= 0, "cannot read " NR_PATH);
	/* 8 pages for the heap, 8 more for the restore running while the
	 * kernel frees the first, some slack */
	int rc = write_long(NR_PATH, old + 20);
	long avail = free_huge();
	if (rc != 0 || avail < 18) {
		write_long(NR_PATH, old);
		ckpt_test_machine_unlock(lock);
		CKPT_TEST_SKIP("cannot reserve 20 hugetlb pages (free %ld)", avail);
	}
	char *dir = iu_tmpdir("huge");
	pid_t pid = fork();
	if (pid == 0)
		child(dir);
	int status = 0;
	if (pid > 0)
		waitpid(pid, &status, 0);
	int wrc = write_long(NR_PATH, old);
	long now = read_long(NR_PATH);
	ckpt_test_machine_unlock(lock);
	iu_rmtree(dir);
	free(dir);
	cr_assert(pid > 0, "fork failed");
	cr_assert(wrc == 0 && now == old, "vm.nr_hugepages not restored: %ld, was %ld", now, old);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the hugetlb checks failed (status %#x; see stderr)", status);
}
