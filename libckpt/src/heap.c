/*
 * heap.c - the heap's memory: a memfd mapped MAP_SHARED at a fixed address,
 * a read-only alias mapping of the same memfd for the writer, and the
 * userfaultfd that write-protects the main mapping.
 *
 * Why shmem: an incremental checkpoint keeps clean pages write-protected
 * between checkpoints, and the kernel keeps a shmem page's write-protect
 * mark across zap, swap-out and migration with PTE markers (kernel/README.md).
 * Why an alias: the writer must read pages without tripping over the
 * protection it is about to lift, and a second mapping that is never
 * registered with userfaultfd is the cheapest way.
 *
 * The composition root: builds the memory, then the engine (checkpoint.c),
 * then the allocator (alloc.c), and wires them (h->discard).  Calls those,
 * trap.c (the discard hook), probe.c and util.c; a lazy restore only through
 * the ckpt__lazy_ops it was given.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/memfd.h>

#include "engine.h"
#include "faultinject.h"

#define HUGE_PAGE_SIZE (2u << 20)
#define DEFAULT_SIZE (1ull << 30)

/* The kernel probe runs once per process: the answer cannot change while
 * the process lives, and the canary costs a millisecond. */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static struct ckpt_kernel_info probe_info;
static int probe_rc;

static void run_probe(void)
{
	probe_rc = ckpt_kernel_probe(&probe_info);
}

CKPT_API void ckpt_heap_opts_init(struct ckpt_heap_opts *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->struct_size = sizeof(*o);
	o->size = DEFAULT_SIZE;
	o->backend = CKPT_TRAP_THREAD;
	o->pool_bytes = CKPT_DEFAULT_POOL_BYTES;
	o->fault_around = CKPT_DEFAULT_FAULT_AROUND;
	o->writer_nice = CKPT_DEFAULT_WRITER_NICE;
}

/* The heap's userfaultfd: write-protect on shmem (5.19+), SIGBUS delivery in
 * that mode. */
static int open_uffd(bool sigbus_mode, int *out)
{
	uint64_t offered = 0;
	int rc = ckpt__uffd_open(sigbus_mode ? UFFD_FEATURE_SIGBUS : 0, &offered, out);

	if (rc == 0 && !(offered & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
		close(*out);
		*out = -1;
		rc = CKPT_E_KERNEL;
	}
	return rc;
}

static int map_fixed(void *base, size_t size, int prot, int flags, int fd)
{
	int frc = ckpt__fault_hit(CKPT_FAULT_MMAP);
	if (frc)
		return frc;
	void *p = mmap(base, size, prot, flags | MAP_FIXED_NOREPLACE, fd, 0);

	if (p == MAP_FAILED)
		return errno == EEXIST ? CKPT_E_ADDRINUSE
		       : errno == ENOMEM && (flags & MAP_SHARED) ? -ENOSPC
								: -errno;
	if (p != base) {
		/* a kernel that ignores MAP_FIXED_NOREPLACE placed it elsewhere */
		munmap(p, size);
		return CKPT_E_ADDRINUSE;
	}
	return 0;
}

static void heap_teardown(ckpt_heap *h)
{
	/* first: the lazy loader's threads write into the memfd and serve
	 * faults on the mapping */
	if (h->lazy)
		h->lazy_ops->release(h->lazy);
	if (h->eng)
		ckpt__engine_fini(h);
	if (h->uffd >= 0)
		close(h->uffd);
	if (h->alias)
		munmap(h->alias, h->size);
	if (h->base)
		munmap(h->base, h->size);
	if (h->memfd >= 0)
		close(h->memfd);
	pthread_mutex_destroy(&h->alloc_lock);
	free(h);
}

/* The caller's options, completed with defaults and checked. */
static int opts_complete(const struct ckpt_heap_opts *in, struct ckpt_heap_opts *o)
{
	ckpt_heap_opts_init(o);
	if (in) {
		if (in->struct_size == 0 || in->struct_size > sizeof(*o))
			return -EINVAL;
		memcpy(o, in, in->struct_size);
		o->struct_size = sizeof(*o);
	}
	if (o->backend != CKPT_TRAP_THREAD && o->backend != CKPT_TRAP_SIGBUS &&
	    o->backend != CKPT_BACKEND_FORK)
		return -EINVAL;
	if (o->fault_around == 0)
		o->fault_around = CKPT_DEFAULT_FAULT_AROUND;
	if (o->fault_around & (o->fault_around - 1) || o->fault_around > 1024)
		return -EINVAL;
	if (o->pool_bytes == 0)
		o->pool_bytes = CKPT_DEFAULT_POOL_BYTES;
	if (o->writer_nice < 0 || o->writer_nice > 19)
		return -EINVAL;
	if (o->flags & ~(CKPT_HEAP_HUGETLB | CKPT_HEAP_INCREMENTAL | CKPT_HEAP_BUSY_POLL |
			 CKPT_HEAP_NO_PROBE))
		return -EINVAL;
	if (o->app_tag && strnlen(o->app_tag, CKPT_APP_TAG_MAX) == CKPT_APP_TAG_MAX)
		return -EINVAL;
	/* A trap on a 2 MiB page already copies 2 MiB: saving neighbours too
	 * would multiply the fault's latency for no gain in trap count. */
	if (o->flags & CKPT_HEAP_HUGETLB)
		o->fault_around = 1;
	return 0;
}

/* Where the heap goes: the options' base and size for a new heap, the
 * image's for an adopted memfd (whose page size must be ours). */
static int heap_geometry(const struct ckpt_heap_opts *o, int memfd, uint64_t base_in,
			 uint64_t size_in, uint32_t page_size_in, uint64_t *base, uint64_t *size,
			 size_t *psz)
{
	bool huge = (o->flags & CKPT_HEAP_HUGETLB) != 0;
	*psz = huge ? HUGE_PAGE_SIZE : (size_t)sysconf(_SC_PAGESIZE);
	*base = memfd >= 0 ? base_in : (uint64_t)(uintptr_t)(o->base ? o->base : CKPT_DEFAULT_BASE);
	*size = memfd >= 0 ? size_in : (o->size ? o->size : DEFAULT_SIZE);

	if (memfd >= 0 && page_size_in != *psz)
		return CKPT_E_PAGESIZE;
	*size = (*size + *psz - 1) & ~((uint64_t)*psz - 1);
	if (*size < 16 * (uint64_t)*psz && !huge)
		return -EINVAL; /* the allocator needs room for its header */
	if (*base % *psz)
		return -EINVAL;
	return ckpt__check_range(*base, *size, *psz);
}

/* The userfaultfd backends refuse a kernel that fails the probe (once per
 * process), saying why through the caller's log callback. */
static int kernel_check(const struct ckpt_heap_opts *o)
{
	if (o->backend == CKPT_BACKEND_FORK || (o->flags & CKPT_HEAP_NO_PROBE))
		return 0;
	pthread_once(&probe_once, run_probe);
	if (probe_rc == 0)
		return 0;
	if (o->log) {
		char msg[320];
		snprintf(msg, sizeof(msg), "kernel %s is not safe for libckpt: %s; use CKPT_BACKEND_FORK",
			 probe_info.release, probe_info.reason);
		o->log(o->log_arg, CKPT_LOG_ERROR, msg);
	}
	return probe_rc == -EPERM ? -EPERM : CKPT_E_KERNEL;
}

static ckpt_heap *heap_new(const struct ckpt_heap_opts *in, uint64_t size, size_t psz)
{
	ckpt_heap *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	struct ckpt_heap_opts o = *in;
	h->memfd = -1;
	h->uffd = -1;
	h->size = size;
	h->page_size = psz;
	h->page_shift = (unsigned)__builtin_ctzll(psz);
	h->npages = size / psz;
	h->backend = o.backend;
	h->flags = o.flags;
	snprintf(h->name, sizeof(h->name), "%s", o.name ? o.name : "libckpt");
	o.name = h->name;
	snprintf(h->app_tag, sizeof(h->app_tag), "%s", o.app_tag ? o.app_tag : "");
	o.app_tag = h->app_tag; /* the caller's string need not outlive the call */
	h->opts = o;
	pthread_mutex_init(&h->alloc_lock, NULL);
	return h;
}

/* Copies the data regions of @memfd into the private mapping.  Only those:
 * the holes are the untouched rest of the reservation, and reading them
 * would populate the whole heap with zero pages. */
static int copy_data_regions(ckpt_heap *h, int memfd)
{
	off_t off = 0;
	while ((uint64_t)off < h->size) {
		off_t d = lseek(memfd, off, SEEK_DATA);
		if (d < 0)
			return errno == ENXIO ? 0 : -errno; /* ENXIO: only holes are left */
		off_t e = lseek(memfd, d, SEEK_HOLE);
		if (e < 0 || (uint64_t)e > h->size)
			e = (off_t)h->size;
		while (d < e) {
			ssize_t n = pread(memfd, h->base + d, (size_t)(e - d), d);
			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			d += n;
		}
		off = e;
	}
	return 0;
}

/* The fork backend's memory: private anonymous, so that fork() gives the
 * child a copy-on-write view (a shared mapping would not).  A restore
 * copies the pages in; the memfd stays the caller's. */
static int map_private(ckpt_heap *h, uint64_t base, int memfd)
{
	int mflags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	if (h->flags & CKPT_HEAP_HUGETLB)
		mflags |= MAP_HUGETLB | (21 << MAP_HUGE_SHIFT);
	int rc = map_fixed((void *)(uintptr_t)base, h->size, PROT_READ | PROT_WRITE, mflags, -1);
	if (rc)
		return rc;
	h->base = (uint8_t *)(uintptr_t)base;
	return memfd >= 0 ? copy_data_regions(h, memfd) : 0;
}

/* The userfaultfd backends' memory: the memfd (a new one, or the adopted
 * @memfd) shared at @base, its read-only alias for the writer, and the uffd
 * registered for write-protection, or handed to a lazy restore first. */
static int map_shared(ckpt_heap *h, uint64_t base, int memfd, struct ckpt__lazy *lazy,
		      const struct ckpt__lazy_ops *lazy_ops)
{
	int rc, fd = memfd;
	if (fd < 0) {
		rc = ckpt__memfd_create(h->name, h->size, (h->flags & CKPT_HEAP_HUGETLB) != 0, &fd);
		if (rc)
			return rc;
	}
	h->memfd = fd;
	rc = map_fixed((void *)(uintptr_t)base, h->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	if (rc)
		return rc;
	h->base = (uint8_t *)(uintptr_t)base;
	/* A fork child's writes would reach the shared pages without a
	 * write-protect fault (its ptes carry no marks): keep the heap out of
	 * children altogether. */
	madvise(h->base, h->size, MADV_DONTFORK);
	h->alias = mmap(NULL, h->size, PROT_READ, MAP_SHARED, fd, 0);
	if (h->alias == MAP_FAILED) {
		h->alias = NULL;
		return -errno;
	}
	madvise(h->alias, h->size, MADV_DONTFORK);
	rc = open_uffd(h->backend == CKPT_TRAP_SIGBUS, &h->uffd);
	if (rc)
		return rc;
	/* A lazy restore serves missing pages from its own uffd until the
	 * heap is resident, and only then registers ours (one uffd per range:
	 * kernel/tests lazy_second_uffd_ebusy). */
	if (!lazy)
		return ckpt__heap_register_wp(h);
	rc = lazy_ops->attach(lazy, h);
	if (!rc) {
		h->lazy = lazy;
		h->lazy_ops = lazy_ops;
	}
	return rc;
}

/*
 * Common construction, the composition root: memory, then the engine, then
 * the allocator, wired together (the allocator offers freed runs to the
 * engine through h->discard).  @memfd < 0: a new heap; else adopt a filled
 * memfd (restore).  On failure nothing stays mapped and an adopted memfd is
 * left open for the caller.
 */
static int heap_build(const struct ckpt_heap_opts *in, int memfd, uint64_t base_in,
		      uint64_t size_in, uint32_t page_size_in, struct ckpt__lazy *lazy,
		      const struct ckpt__lazy_ops *lazy_ops, ckpt_heap **out)
{
	struct ckpt_heap_opts o;
	uint64_t base, size;
	size_t psz;
	ckpt_heap *h;

	*out = NULL;
	int rc = opts_complete(in, &o);
	if (!rc)
		rc = heap_geometry(&o, memfd, base_in, size_in, page_size_in, &base, &size, &psz);
	if (!rc)
		rc = kernel_check(&o);
	if (rc)
		return rc;
	h = heap_new(&o, size, psz);
	if (!h)
		return -ENOMEM;
	rc = o.backend == CKPT_BACKEND_FORK ? map_private(h, base, memfd)
					    : map_shared(h, base, memfd, lazy, lazy_ops);
	if (!rc)
		rc = ckpt__engine_init(h);
	if (!rc) {
		/* the fork backend's private memory is never given back (a
		 * hole punch needs shared memory): no hook */
		if (h->backend != CKPT_BACKEND_FORK)
			h->discard = ckpt__track_discard;
		rc = memfd >= 0 ? ckpt__alloc_open(h) : ckpt__alloc_format(h);
	}
	if (!rc) {
		if (memfd >= 0 && h->backend == CKPT_BACKEND_FORK)
			close(memfd); /* copied; the heap owns nothing of it */
		*out = h;
		return 0;
	}
	if (h->lazy) {
		h->lazy_ops->detach(h->lazy); /* the caller keeps its lazy loader */
		h->lazy = NULL;
	}
	if (memfd >= 0 && h->memfd == memfd)
		h->memfd = -1; /* the caller keeps an adopted memfd on failure */
	heap_teardown(h);
	return rc;
}

CKPT_API int ckpt_heap_create(const struct ckpt_heap_opts *opts, ckpt_heap **out)
{
	if (!out)
		return -EINVAL;
	return heap_build(opts, -1, 0, 0, 0, NULL, NULL, out);
}

int ckpt__heap_adopt(int memfd, uint64_t base, uint64_t size, uint32_t page_size,
		     const struct ckpt_heap_opts *opts, ckpt_heap **out)
{
	if (memfd < 0 || !out)
		return -EINVAL;
	return heap_build(opts, memfd, base, size, page_size, NULL, NULL, out);
}

int ckpt__heap_adopt_lazy(int memfd, uint64_t base, uint64_t size, uint32_t page_size,
			  const struct ckpt_heap_opts *opts, struct ckpt__lazy *lazy,
			  const struct ckpt__lazy_ops *ops, ckpt_heap **out)
{
	if (memfd < 0 || !lazy || !ops || !out)
		return -EINVAL;
	return heap_build(opts, memfd, base, size, page_size, lazy, ops, out);
}

int ckpt__heap_register_wp(ckpt_heap *h)
{
	struct uffdio_register reg = {
		.range = {.start = (uint64_t)(uintptr_t)h->base, .len = h->size},
		.mode = UFFDIO_REGISTER_MODE_WP};
	if (ioctl(h->uffd, UFFDIO_REGISTER, &reg) != 0)
		return errno == EINVAL ? CKPT_E_KERNEL : -errno;
	return 0;
}

CKPT_API void ckpt_heap_destroy(ckpt_heap *h)
{
	if (!h)
		return;
	heap_teardown(h);
}

CKPT_API void *ckpt_heap_base(const ckpt_heap *h)
{
	return h ? h->base : NULL;
}

CKPT_API size_t ckpt_heap_size(const ckpt_heap *h)
{
	return h ? h->size : 0;
}

CKPT_API size_t ckpt_heap_page_size(const ckpt_heap *h)
{
	return h ? h->page_size : 0;
}
