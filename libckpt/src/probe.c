/*
 * probe.c - ckpt_kernel_probe(): what the running kernel offers, and a live
 * canary proving that a write-protect mark on a shmem page survives the
 * things that break it on some kernels.
 *
 * Why a canary and not just feature bits: 5.19-6.1 kernels offer
 * UFFD_FEATURE_WP_HUGETLBFS_SHMEM, yet an mprotect(PROT_READ) /
 * mprotect(PROT_READ|PROT_WRITE) round trip rebuilds the pte from
 * vma->vm_page_prot, which for a shared writable shmem mapping includes the
 * write bit: the pte keeps its uffd-wp bit but becomes writable, and the
 * next write lands without a fault.  6.2 fixed it ("mm/userfaultfd: enable
 * writenotify while userfaultfd-wp is enabled for a VMA").  A checkpoint
 * taken on such a kernel would be silently inconsistent.
 *
 * The canary (one page, about a millisecond):
 *   populate -> UFFDIO_WRITEPROTECT -> MADV_DONTNEED (the pte becomes a PTE
 *   marker) -> read (the read fault rebuilds a present pte from the marker,
 *   which must carry the uffd-wp bit) -> mprotect(R) -> mprotect(RW) ->
 *   a write must hit the mark, and the page must still hold what it held;
 *   after unprotecting, the same write must land.
 * The write is a kernel-mode write refused with EFAULT on a SIGBUS-mode
 * userfaultfd (canary_kernel_write(), every kernel since 4.14), or else a
 * user-mode write from a helper thread that parks in the WP fault
 * (canary_thread_write()).
 * The read between the zap and the mprotect round trip matters: mprotect
 * leaves a non-present marker alone, so without the read the round trip
 * would never meet a present write-protected pte and the 6.1 bug would go
 * unseen.
 *
 * No process-global state is touched: no signal handler, no fork.  The
 * helper thread, when there is one, runs with every signal blocked so the
 * caller's handlers never run on it.
 *
 * Calls only util.c (kernel/tests links this file and util.c on their own).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <linux/io_uring.h>

#include "internal.h"

/* How long the canary waits for either the fault or the write: a kernel
 * that keeps the mark reports the fault in microseconds; this bound only
 * matters if something is badly wrong (a stuck helper thread). */
#define CANARY_TIMEOUT_MS 2000

/* Written to the canary page before protection; the helper thread's write
 * stores CANARY_NEW at CANARY_OFF. */
#define CANARY_SEED 0xc3u
#define CANARY_OFF 1234u
#define CANARY_NEW 0x5au

static uint64_t probe_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void set_reason(struct ckpt_kernel_info *info, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_reason(struct ckpt_kernel_info *info, const char *fmt, ...)
{
	va_list ap;

	/* keep the first failure: it is the cause, later ones are fallout */
	if (info->reason[0])
		return;
	va_start(ap, fmt);
	vsnprintf(info->reason, sizeof(info->reason), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ opening */

/* Opens a userfaultfd by whichever way works here, O_CLOEXEC|O_NONBLOCK.
 * Returns the fd or -errno of the first (preferred) way. */
static int uffd_open_any(const struct ckpt_kernel_info *info)
{
	int fl = O_CLOEXEC | O_NONBLOCK, fd = -ENOENT;

	if (info->open_syscall)
		fd = ckpt__uffd_syscall(fl);
	if (fd < 0 && info->open_dev)
		fd = ckpt__uffd_dev(fl);
	/* user-mode-only is enough for the canary: its write is a user write */
	if (fd < 0 && info->user_mode_only)
		fd = ckpt__uffd_syscall(fl | UFFD_USER_MODE_ONLY);
	return fd;
}

/* Tries each way of opening a userfaultfd; records which work; returns 0 if
 * any did, else -errno of the plain syscall (the most telling error). */
static int probe_open_ways(struct ckpt_kernel_info *info)
{
	int fl = O_CLOEXEC | O_NONBLOCK, fd, err_sys;

	fd = ckpt__uffd_syscall(fl);
	err_sys = fd < 0 ? -fd : 0;
	if (fd >= 0) {
		info->open_syscall = 1;
		close(fd);
	}
	fd = ckpt__uffd_dev(fl);
	if (fd >= 0) {
		info->open_dev = 1;
		close(fd);
	}
	fd = ckpt__uffd_syscall(fl | UFFD_USER_MODE_ONLY);
	if (fd >= 0) {
		info->user_mode_only = 1;
		close(fd);
	}
	if (info->open_syscall || info->open_dev || info->user_mode_only)
		return 0;
	return -err_sys;
}

/* UFFDIO_API with no feature requested reports every feature offered. */
static int probe_features(struct ckpt_kernel_info *info)
{
	struct uffdio_api api;
	int fd, rc = 0;

	fd = uffd_open_any(info);
	if (fd < 0)
		return fd;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		rc = -errno;
	else
		info->uffd_features = api.features;
	close(fd);
	return rc;
}

/* PAGEMAP_SCAN (6.7): kernels without it have no ioctl on pagemap at all
 * and answer ENOTTY; with it, an empty range is accepted or refused with
 * some other error. */
static void probe_pagemap_scan(struct ckpt_kernel_info *info)
{
	struct pm_scan_arg arg;
	int fd, rc;

	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	arg.start = 0; /* an empty range: the answer is all we want */
	arg.end = 0;
	arg.return_mask = PAGE_IS_WRITTEN;
	rc = ioctl(fd, PAGEMAP_SCAN, &arg);
	if (rc >= 0 || errno != ENOTTY)
		info->pagemap_scan = 1;
	close(fd);
}

/* ------------------------------------------------------ machine state */

static void probe_swap(struct ckpt_kernel_info *info)
{
	char line[256];
	int lines = 0;
	FILE *f = fopen("/proc/swaps", "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		lines++;
	fclose(f);
	/* the first line is the header */
	info->swap_on = lines > 1;
}

static void probe_hugetlb(struct ckpt_kernel_info *info)
{
	long n = -1;
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	info->hugetlb_free = n;
}

/* Seccomp profiles of container runtimes and kernel.io_uring_disabled
 * refuse io_uring_setup(2); the image writer and reader then fall back to
 * plain pwrite(2)/pread(2). */
static void probe_io_uring(struct ckpt_kernel_info *info)
{
	struct io_uring_params p;

	/* the raw syscall: the kernel suite builds this file without liburing */
	memset(&p, 0, sizeof(p));
	long fd = syscall(__NR_io_uring_setup, 2, &p);
	if (fd >= 0) {
		info->io_uring = 1;
		close((int)fd);
	}
}

/* ------------------------------------------------------------- canary */

struct canary {
	volatile uint8_t *page;
	int done_fd;            /* eventfd: the helper's write completed */
	_Atomic int written;
};

static void *canary_writer(void *arg)
{
	struct canary *c = arg;
	uint64_t one = 1;

	/* traps here if the kernel kept the mark; lands at once if not */
	c->page[CANARY_OFF] = CANARY_NEW;
	atomic_store(&c->written, 1);
	if (write(c->done_fd, &one, sizeof(one)) < 0) {
		/* the main thread also polls c->written: nothing else to do */
	}
	return NULL;
}

static int page_is_seed(const volatile uint8_t *p, size_t len, size_t skip)
{
	for (size_t i = 0; i < len; i++)
		if (i != skip && p[i] != (uint8_t)(CANARY_SEED ^ (i & 0xff)))
			return 0;
	return 1;
}

static int wp_range(int uffd, void *addr, size_t len, int protect)
{
	struct uffdio_writeprotect wp;

	memset(&wp, 0, sizeof(wp));
	wp.range.start = (uint64_t)(uintptr_t)addr;
	wp.range.len = len;
	wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
}

/*
 * The write, way 1 (used whenever UFFD_FEATURE_SIGBUS is offered, i.e. on
 * every kernel since 4.14): a kernel-mode write into the page, read(2) of
 * one byte from a pipe.  On a SIGBUS-mode (or user-mode-only) userfaultfd
 * the kernel cannot deliver a signal for its own write, so a write that
 * hits the mark fails with EFAULT and stores nothing; a write that lands
 * means the mark was lost.  It takes the same fault path as a user write
 * (do_wp_page -> handle_userfault), needs no thread, no signal handler and
 * no child, and cannot deadlock under tools that serialise threads
 * (valgrind would hang way 2: the parked writer holds its big lock).
 */
static int canary_kernel_write(struct ckpt_kernel_info *info, int uffd, volatile uint8_t *page,
			       size_t ps)
{
	int p[2], rc;
	uint8_t b = CANARY_NEW;
	ssize_t r;

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		int err = errno;
		set_reason(info, "canary: pipe: %s", strerror(err));
		return -err;
	}
	if (write(p[1], &b, 1) != 1) {
		rc = -errno;
		set_reason(info, "canary: pipe write: %s", strerror(errno));
		goto out;
	}
	r = read(p[0], (uint8_t *)(uintptr_t)page + CANARY_OFF, 1);
	if (r == 1) {
		rc = CKPT_E_KERNEL;
		set_reason(info, "write-protect lost: a write to a protected shmem page after "
				 "MADV_DONTNEED + mprotect round trip did not trap (needs 6.2+)");
		goto out;
	}
	if (r != -1 || errno != EFAULT) {
		rc = r < 0 ? -errno : -EIO;
		set_reason(info, "canary: write into the protected page: %s",
			   r < 0 ? strerror(errno) : "unexpected result");
		goto out;
	}
	if (!page_is_seed(page, ps, ps)) {
		rc = CKPT_E_KERNEL;
		set_reason(info, "canary: page content changed while write-protected");
		goto out;
	}
	/* the refusal came from the mark: without it the same write lands */
	rc = wp_range(uffd, (void *)(uintptr_t)page, ps, 0);
	if (rc < 0) {
		set_reason(info, "canary: UFFDIO_WRITEPROTECT (unprotect): %s", strerror(-rc));
		goto out;
	}
	if (read(p[0], (uint8_t *)(uintptr_t)page + CANARY_OFF, 1) != 1 ||
	    page[CANARY_OFF] != CANARY_NEW || !page_is_seed(page, ps, CANARY_OFF)) {
		rc = CKPT_E_KERNEL;
		set_reason(info, "canary: after unprotect the write did not land intact");
		goto out;
	}
	rc = 0;
out:
	close(p[0]);
	close(p[1]);
	return rc;
}

/* Waits until the helper's write either parks in a WP fault (@faulted,
 * the message in @msg) or lands (no fault: the mark was lost). */
static int wait_fault_or_write(struct ckpt_kernel_info *info, int uffd, struct canary *c,
			       struct uffd_msg *msg, int *faulted)
{
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = uffd, .events = POLLIN },
			{ .fd = c->done_fd, .events = POLLIN },
		};
		int n = poll(pfd, 2, CANARY_TIMEOUT_MS);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;
			set_reason(info, "canary: poll: %s", strerror(err));
			return -err;
		}
		if (n == 0) {
			set_reason(info, "canary: neither a fault nor the write within %d ms",
				   CANARY_TIMEOUT_MS);
			return CKPT_E_KERNEL;
		}
		if (pfd[0].revents & POLLIN) {
			ssize_t r = read(uffd, msg, sizeof(*msg));

			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r != (ssize_t)sizeof(*msg)) {
				set_reason(info, "canary: reading the userfaultfd failed");
				return r < 0 ? -errno : -EIO;
			}
			*faulted = 1;
			return 0;
		}
		if (atomic_load(&c->written))
			return 0;
	}
}

/*
 * The write, way 2 (kernels without UFFD_FEATURE_SIGBUS): a user-mode
 * write from a helper thread, which must park in a WP fault that this
 * thread reads from the userfaultfd, with the page unchanged meanwhile;
 * unprotecting releases it and the byte lands.
 */
static int canary_thread_write(struct ckpt_kernel_info *info, int uffd, volatile uint8_t *page,
			       size_t ps)
{
	struct canary c = { .page = page, .done_fd = -1 };
	int rc = 0, thread_up = 0, faulted = 0;
	pthread_t th;
	struct uffd_msg msg;

	c.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c.done_fd < 0) {
		rc = -errno;
		set_reason(info, "canary: eventfd: %s", strerror(errno));
		goto out;
	}
	rc = ckpt__thread_start(&th, "ckpt-probe", canary_writer, &c);
	if (rc < 0) {
		set_reason(info, "canary: pthread_create: %s", strerror(-rc));
		goto out;
	}
	thread_up = 1;

	rc = wait_fault_or_write(info, uffd, &c, &msg, &faulted);
	if (rc)
		goto out;
	if (!faulted) {
		rc = CKPT_E_KERNEL;
		set_reason(info, "write-protect lost: a write to a protected shmem page after "
				 "MADV_DONTNEED + mprotect round trip did not trap (needs 6.2+)");
		goto out;
	}
	if (msg.event != UFFD_EVENT_PAGEFAULT ||
	    !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) ||
	    (msg.arg.pagefault.address & ~(uint64_t)(ps - 1)) != (uint64_t)(uintptr_t)page) {
		rc = CKPT_E_KERNEL;
		set_reason(info, "canary: unexpected userfaultfd message (event %u, flags %#llx)",
			   msg.event, (unsigned long long)msg.arg.pagefault.flags);
		goto out;
	}
	/* the writer is parked in the fault: nothing may have landed yet */
	if (!page_is_seed(page, ps, ps)) {
		rc = CKPT_E_KERNEL;
		set_reason(info, "canary: page content changed while write-protected");
		goto out;
	}
	rc = wp_range(uffd, (void *)(uintptr_t)page, ps, 0); /* also wakes the writer */
	if (rc < 0) {
		set_reason(info, "canary: UFFDIO_WRITEPROTECT (unprotect): %s", strerror(-rc));
		goto out;
	}
	pthread_join(th, NULL);
	thread_up = 0;
	if (page[CANARY_OFF] != CANARY_NEW || !page_is_seed(page, ps, CANARY_OFF)) {
		rc = CKPT_E_KERNEL;
		set_reason(info, "canary: after unprotect the write did not land intact");
		goto out;
	}
	rc = 0;
out:
	if (thread_up) {
		/* Unblock a writer parked in the fault: unprotecting wakes it.
		 * (The caller closes the userfaultfd, which would too.) */
		wp_range(uffd, (void *)(uintptr_t)page, ps, 0);
		pthread_join(th, NULL);
	}
	if (c.done_fd >= 0)
		close(c.done_fd);
	return rc;
}

/* The canary's page: a one-page memfd mapped shared, filled with the seed,
 * registered for write-protection and protected.  @memfd and @map are the
 * caller's to release, whatever the result. */
static int canary_page(struct ckpt_kernel_info *info, int uffd, size_t ps, int *memfd, void **map)
{
	struct uffdio_register reg;
	volatile uint8_t *page;
	int rc;

	*memfd = (int)syscall(SYS_memfd_create, "ckpt-probe", MFD_CLOEXEC);
	if (*memfd < 0 || ftruncate(*memfd, (off_t)ps) < 0) {
		int err = errno;
		set_reason(info, "canary: memfd: %s", strerror(err));
		return -err;
	}
	*map = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
	if (*map == MAP_FAILED) {
		int err = errno;
		set_reason(info, "canary: mmap: %s", strerror(err));
		return -err;
	}
	page = *map;
	for (size_t i = 0; i < ps; i++)
		page[i] = (uint8_t)(CANARY_SEED ^ (i & 0xff));

	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uint64_t)(uintptr_t)*map;
	reg.range.len = ps;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		int err = errno;
		set_reason(info, "canary: UFFDIO_REGISTER (WP) on shmem refused: %s", strerror(err));
		return err == EINVAL ? CKPT_E_KERNEL : -err;
	}
	if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT))) {
		set_reason(info, "canary: UFFDIO_WRITEPROTECT not available on a shmem range");
		return CKPT_E_KERNEL;
	}
	rc = wp_range(uffd, *map, ps, 1);
	if (rc < 0)
		set_reason(info, "canary: UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	return rc;
}

/* The zap and the mprotect round trip that lost the mark on shmem before
 * 6.2: afterwards the mark lives only in what the kernel rebuilt. */
static int canary_zap(struct ckpt_kernel_info *info, volatile uint8_t *page, size_t ps)
{
	void *map = (void *)(uintptr_t)page;
	/* zap: the mark now lives only in a PTE marker */
	if (madvise(map, ps, MADV_DONTNEED) < 0) {
		int err = errno;
		set_reason(info, "canary: madvise(MADV_DONTNEED): %s", strerror(err));
		return -err;
	}
	/* read fault: rebuilds a present pte from the marker (see top) */
	if (!page_is_seed(page, ps, ps)) {
		set_reason(info, "canary: page content changed by MADV_DONTNEED on shmem");
		return CKPT_E_KERNEL;
	}
	if (mprotect(map, ps, PROT_READ) < 0 || mprotect(map, ps, PROT_READ | PROT_WRITE) < 0) {
		int err = errno;
		set_reason(info, "canary: mprotect: %s", strerror(err));
		return -err;
	}
	return 0;
}

/*
 * Runs the canary.  Returns 0 when it passed, CKPT_E_KERNEL when the kernel
 * let the write through or lost the content, -errno when the canary could
 * not be set up (reason says which step).
 */
static int run_canary(struct ckpt_kernel_info *info)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	int uffd = -1, memfd = -1, rc = 0;
	void *map = MAP_FAILED;
	volatile uint8_t *page;
	struct uffdio_api api;
	uint64_t features;

	uffd = uffd_open_any(info);
	if (uffd < 0) {
		set_reason(info, "canary: cannot open userfaultfd: %s", strerror(-uffd));
		return uffd;
	}
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	/* UFFDIO_API overwrites api.features with everything offered:
	 * keep what was asked for */
	features = info->uffd_features & (UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_SIGBUS);
	api.features = features;
	if (ioctl(uffd, UFFDIO_API, &api) < 0) {
		rc = -errno;
		set_reason(info, "canary: UFFDIO_API: %s", strerror(errno));
		goto out;
	}

	rc = canary_page(info, uffd, ps, &memfd, &map);
	if (rc)
		goto out;
	page = map;
	rc = canary_zap(info, page, ps);
	if (rc)
		goto out;
	if (features & UFFD_FEATURE_SIGBUS)
		rc = canary_kernel_write(info, uffd, page, ps);
	else
		rc = canary_thread_write(info, uffd, page, ps);
	if (rc == 0)
		info->canary_ok = 1;
out:
	if (map != MAP_FAILED)
		munmap(map, ps);
	if (memfd >= 0)
		close(memfd);
	if (uffd >= 0)
		close(uffd);
	return rc;
}

/* ------------------------------------------------------------- public */

CKPT_API int ckpt_kernel_probe(struct ckpt_kernel_info *info)
{
	struct utsname u;
	uint64_t t0;
	int rc;

	if (!info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	info->hugetlb_free = -1;
	if (uname(&u) == 0)
		snprintf(info->release, sizeof(info->release), "%s", u.release);
	probe_swap(info);
	probe_hugetlb(info);
	probe_pagemap_scan(info);
	probe_io_uring(info);

	rc = probe_open_ways(info);
	if (rc < 0) {
		if (rc == -ENOSYS) {
			rc = CKPT_E_KERNEL;
			set_reason(info, "kernel has no userfaultfd (CONFIG_USERFAULTFD off)");
		} else {
			set_reason(info, "userfaultfd cannot be opened (%s): needs root, "
					 "CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or access "
					 "to /dev/userfaultfd", strerror(-rc));
			rc = -EPERM;
		}
		goto done;
	}
	rc = probe_features(info);
	if (rc < 0) {
		set_reason(info, "UFFDIO_API failed: %s", strerror(-rc));
		rc = CKPT_E_KERNEL;
		goto done;
	}
	info->wp_shmem = !!(info->uffd_features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	info->wp_unpopulated = !!(info->uffd_features & UFFD_FEATURE_WP_UNPOPULATED);
	info->wp_async = !!(info->uffd_features & UFFD_FEATURE_WP_ASYNC);
	info->sigbus = !!(info->uffd_features & UFFD_FEATURE_SIGBUS);
	if (!info->wp_shmem) {
		rc = CKPT_E_KERNEL;
		set_reason(info, "userfaultfd write-protect on shmem not offered "
				 "(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, 5.19+)");
		goto done;
	}

	t0 = probe_now_ns();
	rc = run_canary(info);
	info->canary_ns = probe_now_ns() - t0;
	/* The canary may have run on a user-mode-only uffd: enough to judge
	 * the kernel, not enough for libckpt, whose handler must also see the
	 * kernel's own writes into the heap (read(2) into a protected page
	 * would fail with EFAULT instead of blocking until the page is saved). */
	if (rc == 0 && !info->open_syscall && !info->open_dev) {
		rc = -EPERM;
		set_reason(info, "only UFFD_USER_MODE_ONLY userfaultfds are allowed here; libckpt "
				 "needs root, CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or "
				 "access to /dev/userfaultfd");
	}
done:
	info->verdict = rc;
	if (rc == 0)
		info->reason[0] = '\0';
	return rc;
}
