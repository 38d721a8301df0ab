/*
 * kt_util.c - helpers the cases share: userfaultfd set-up, shmem regions,
 * page patterns, pagemap, and the handler thread that counts faults.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kt.h"

int kt_uffd_open(uint64_t features, int *fd_out)
{
	struct uffdio_api api;
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	/* without privilege (vm.unprivileged_userfaultfd=0) a uffd that sees
	 * only user-mode faults is still allowed; enough for every case whose
	 * writes are user-mode writes */
	if (fd < 0 && errno == EPERM && !(features & KT_KERNEL_FAULTS))
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	features &= ~(uint64_t)KT_KERNEL_FAULTS;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = features;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	*fd_out = fd;
	return 0;
}

int kt_register(int uffd, void *addr, size_t len, uint64_t mode)
{
	struct uffdio_register reg;

	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uint64_t)(uintptr_t)addr;
	reg.range.len = len;
	reg.mode = mode;
	return ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int kt_unregister(int uffd, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uint64_t)(uintptr_t)addr, .len = len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

int kt_wp(int uffd, void *addr, size_t len, int protect)
{
	struct uffdio_writeprotect wp;

	memset(&wp, 0, sizeof(wp));
	wp.range.start = (uint64_t)(uintptr_t)addr;
	wp.range.len = len;
	wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
}

/* Maps len bytes of fd at an address aligned to align (0: any). */
static void *map_aligned(int fd, size_t len, size_t align)
{
	uint8_t *res, *p;

	if (align <= kt_ps)
		return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	res = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		return MAP_FAILED;
	p = (uint8_t *)(((uintptr_t)res + align - 1) & ~(uintptr_t)(align - 1));
	if (p > res)
		munmap(res, (size_t)(p - res));
	munmap(p + len, (size_t)(res + len + align - (p + len)));
	return mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
}

int kt_region_new(struct kt_region *r, size_t npages, size_t align)
{
	memset(r, 0, sizeof(*r));
	r->npages = npages;
	r->len = npages * kt_ps;
	r->memfd = (int)syscall(SYS_memfd_create, "kt-region", MFD_CLOEXEC);
	if (r->memfd < 0)
		return -errno;
	if (ftruncate(r->memfd, (off_t)r->len) < 0)
		return -errno;
	r->base = map_aligned(r->memfd, r->len, align);
	if (r->base == MAP_FAILED)
		return -errno;
	r->alias = mmap(NULL, r->len, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	if (r->alias == MAP_FAILED)
		return -errno;
	return 0;
}

static uint64_t pattern_word(size_t idx, uint32_t seed, size_t w)
{
	uint64_t x = ((uint64_t)seed << 32) ^ ((uint64_t)idx * 0x9e3779b97f4a7c15ull) ^ (w * 0x100000001b3ull);

	x ^= x >> 29;
	return x | 1; /* never zero: a zero page never passes for a pattern page */
}

void kt_fill_page(uint8_t *p, size_t idx, uint32_t seed)
{
	for (size_t w = 0; w < kt_ps / 8; w++) {
		uint64_t v = pattern_word(idx, seed, w);

		memcpy(p + w * 8, &v, 8);
	}
}

bool kt_page_is(const uint8_t *p, size_t idx, uint32_t seed)
{
	for (size_t w = 0; w < kt_ps / 8; w++) {
		uint64_t v;

		memcpy(&v, p + w * 8, 8);
		if (v != pattern_word(idx, seed, w))
			return false;
	}
	return true;
}

bool kt_page_is_zero(const uint8_t *p)
{
	for (size_t i = 0; i < kt_ps; i++)
		if (p[i])
			return false;
	return true;
}

void kt_fill(struct kt_region *r, uint32_t seed)
{
	for (size_t i = 0; i < r->npages; i++)
		kt_fill_page(r->base + i * kt_ps, i, seed);
}

static int pagemap_fd = -1;

uint64_t kt_pagemap(const void *addr)
{
	uint64_t e = 0;

	if (pagemap_fd < 0)
		pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0)
		return 0;
	if (pread(pagemap_fd, &e, 8, (off_t)((uintptr_t)addr / kt_ps * 8)) != 8)
		return 0;
	return e;
}

size_t kt_pagemap_count(const void *addr, size_t npages, uint64_t set, uint64_t clear)
{
	size_t n = 0;

	for (size_t i = 0; i < npages; i++) {
		uint64_t e = kt_pagemap((const uint8_t *)addr + i * kt_ps);

		if ((e & set) == set && !(e & clear))
			n++;
	}
	return n;
}

size_t kt_resident(const void *addr, size_t npages)
{
	unsigned char *vec = calloc(npages, 1);
	size_t n = 0;

	if (!vec)
		return 0;
	if (mincore((void *)(uintptr_t)addr, npages * kt_ps, vec) == 0)
		for (size_t i = 0; i < npages; i++)
			n += vec[i] & 1;
	free(vec);
	return n;
}

/* ------------------------------------------------------------ handler */

static void handle_fault(struct kt_handler *h, int fd, const struct uffd_msg *m,
			 _Atomic uint32_t *counts)
{
	uint64_t addr = m->arg.pagefault.address & ~(uint64_t)(kt_ps - 1);
	uint64_t base = (uint64_t)(uintptr_t)h->fault_base;

	if (!(m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
		atomic_fetch_add(&h->not_wp, 1);
	if (addr >= base && addr < base + h->r->len) {
		size_t idx = (size_t)(addr - base) / kt_ps;
		const uint8_t *p = h->r->alias + idx * kt_ps;
		int exp = h->expect ? h->expect[idx] : KT_EXPECT_ANY;

		/* the writer is parked in the fault: nothing of it has landed */
		if ((exp == KT_EXPECT_PATTERN && !kt_page_is(p, idx, h->seed)) ||
		    (exp == KT_EXPECT_ZERO && !kt_page_is_zero(p)))
			atomic_fetch_add(&h->bad_content, 1);
		atomic_fetch_add(&counts[idx], 1);
	} else {
		atomic_fetch_add(&h->stray, 1);
	}
	/* unprotect just this page: wakes the writer */
	kt_wp(fd, (void *)(uintptr_t)addr, kt_ps, 0);
}

static void *handler_main(void *arg)
{
	struct kt_handler *h = arg;

	while (!atomic_load(&h->stop)) {
		struct pollfd p[2] = {
			{ .fd = h->uffd, .events = POLLIN },
			{ .fd = atomic_load(&h->child_uffd), .events = POLLIN },
		};
		int nfds = p[1].fd >= 0 ? 2 : 1;
		int n = poll(p, (nfds_t)nfds, 20);

		if (n <= 0)
			continue;
		for (int k = 0; k < nfds; k++) {
			struct uffd_msg m;
			ssize_t r;

			if (!(p[k].revents & POLLIN))
				continue;
			r = read(p[k].fd, &m, sizeof(m));
			if (r != (ssize_t)sizeof(m))
				continue;
			if (m.event == UFFD_EVENT_PAGEFAULT) {
				handle_fault(h, p[k].fd, &m, k == 0 ? h->faults : h->child_faults);
				continue;
			}
			if (m.event == UFFD_EVENT_FORK)
				atomic_store(&h->child_uffd, (int)m.arg.fork.ufd);
			pthread_mutex_lock(&h->ev_lock);
			if (h->nevents < KT_MAX_EVENTS)
				h->events[h->nevents] = m;
			atomic_fetch_add(&h->nevents, 1);
			pthread_mutex_unlock(&h->ev_lock);
		}
	}
	return NULL;
}

int kt_handler_start(struct kt_handler *h, int uffd, const struct kt_region *r,
		     uint8_t *fault_base, uint32_t seed, const uint8_t *expect)
{
	int rc;

	memset(h, 0, sizeof(*h));
	h->uffd = uffd;
	h->r = r;
	h->fault_base = fault_base;
	h->seed = seed;
	h->expect = expect;
	h->child_uffd = -1;
	h->faults = calloc(r->npages, sizeof(*h->faults));
	h->child_faults = calloc(r->npages, sizeof(*h->child_faults));
	if (!h->faults || !h->child_faults)
		return -ENOMEM;
	pthread_mutex_init(&h->ev_lock, NULL);
	rc = pthread_create(&h->th, NULL, handler_main, h);
	if (rc)
		return -rc;
	h->running = 1;
	return 0;
}

void kt_handler_stop(struct kt_handler *h)
{
	if (!h->running)
		return;
	atomic_store(&h->stop, 1);
	pthread_join(h->th, NULL);
	h->running = 0;
}

bool kt_handler_wait_events(struct kt_handler *h, unsigned n, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (atomic_load(&h->nevents) >= n)
			return true;
		usleep(1000);
	}
	return atomic_load(&h->nevents) >= n;
}

uint8_t kt_written_byte(size_t idx)
{
	return (uint8_t)(0xa5 ^ (idx * 7)) | 0x80; /* never zero */
}

size_t kt_written_off(size_t idx)
{
	return (idx * 136 + 8) % kt_ps;
}

int kt_write_pages(struct kt_handler *h, size_t first, size_t n, uint32_t want_faults,
		   const char *what)
{
	size_t bad_faults = 0, bad_data = 0, first_bad = (size_t)-1, first_bad_data = (size_t)-1;
	uint32_t seen = 0;

	for (size_t i = first; i < first + n; i++) {
		volatile uint8_t *p = h->fault_base + i * kt_ps;
		const uint8_t *a = h->r->alias + i * kt_ps;
		size_t off = kt_written_off(i);
		uint8_t b = kt_written_byte(i);
		int exp = h->expect ? h->expect[i] : KT_EXPECT_ANY;
		uint32_t f;
		bool ok = true;

		p[off] = b;
		/* the write returned, so its fault (if any) was handled */
		f = atomic_load(&h->faults[i]);
		if (f != want_faults) {
			bad_faults++;
			if (first_bad == (size_t)-1) {
				first_bad = i;
				seen = f;
			}
		}
		if (a[off] != b)
			ok = false;
		else if (exp != KT_EXPECT_ANY) {
			/* the rest of the page is what it was */
			uint8_t *ref = malloc(kt_ps);

			if (!ref)
				return kt_fail("out of memory");
			if (exp == KT_EXPECT_PATTERN)
				kt_fill_page(ref, i, h->seed);
			else
				memset(ref, 0, kt_ps);
			ref[off] = b;
			ok = memcmp(ref, a, kt_ps) == 0;
			free(ref);
		}
		if (!ok) {
			bad_data++;
			if (first_bad_data == (size_t)-1)
				first_bad_data = i;
		}
	}
	KT_CHECK(bad_faults == 0,
		 "%s: %zu of %zu pages did not see %u fault(s) on write (first: page %zu saw %u)",
		 what, bad_faults, n, want_faults, first_bad, seen);
	KT_CHECK(bad_data == 0, "%s: %zu of %zu pages hold wrong data after the write (first: page %zu)",
		 what, bad_data, n, first_bad_data);
	KT_CHECK(atomic_load(&h->bad_content) == 0,
		 "%s: %u pages held wrong data when their fault arrived", what,
		 atomic_load(&h->bad_content));
	KT_CHECK(atomic_load(&h->not_wp) == 0, "%s: %u faults came without UFFD_PAGEFAULT_FLAG_WP",
		 what, atomic_load(&h->not_wp));
	KT_CHECK(atomic_load(&h->stray) == 0, "%s: %u faults outside the range", what,
		 atomic_load(&h->stray));
	return KT_PASS;
}

int kt_uffd_or_skip(uint64_t features, int *fd_out)
{
	int rc = kt_uffd_open(features, fd_out);

	if (rc == -EPERM || rc == -EACCES)
		return kt_skip("needs root: userfaultfd %s refused (%s)",
			       (features & KT_KERNEL_FAULTS) ? "seeing kernel-mode faults" :
			       (features & UFFD_FEATURE_EVENT_FORK) ? "with EVENT_FORK" : "",
			       strerror(-rc));
	if (rc == -ENOSYS)
		return kt_fail("kernel without userfaultfd");
	if (rc < 0)
		return kt_fail("userfaultfd/UFFDIO_API (features %#llx): %s",
			       (unsigned long long)(features & ~(uint64_t)KT_KERNEL_FAULTS),
			       strerror(-rc));
	return KT_PASS;
}
