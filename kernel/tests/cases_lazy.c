/*
 * cases_lazy.c - cases n, o, q, r, s: what lazy restore
 * (libckpt/src/lazyrestore.c) relies on.  The heap's memfd starts empty
 * and its mapping is registered for MISSING faults with a uffd of the
 * loader's own; loaders pwrite() pages into the memfd; the fault thread
 * resolves holes with UFFDIO_ZEROPAGE; a block that fails its checks is
 * poisoned (or its faulting thread signalled); once resident, the range
 * moves to the heap's write-protect uffd.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kt.h"

/* Waits up to @ms for one page fault message on @uffd. */
static int next_fault(int uffd, int ms, struct uffd_msg *m)
{
	struct pollfd p = { uffd, POLLIN, 0 };
	uint64_t end = kt_now_ns() + (uint64_t)ms * 1000000ull;
	while (kt_now_ns() < end) {
		if (poll(&p, 1, 50) > 0 && read(uffd, m, sizeof(*m)) == (ssize_t)sizeof(*m) &&
		    m->event == UFFD_EVENT_PAGEFAULT)
			return 1;
	}
	return 0;
}

struct toucher {
	volatile uint8_t *p;
	int write;
	uint8_t val;
	_Atomic int done;
	pthread_t th;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;
	if (t->write)
		*t->p = t->val;
	else
		t->val = *t->p;
	atomic_store(&t->done, 1);
	return NULL;
}

static int touch_async(struct toucher *t, uint8_t *p, int write, uint8_t val)
{
	memset(t, 0, sizeof(*t));
	t->p = p;
	t->write = write;
	t->val = val;
	return pthread_create(&t->th, NULL, toucher_main, t);
}

static int wait_done(struct toucher *t, int ms)
{
	uint64_t end = kt_now_ns() + (uint64_t)ms * 1000000ull;
	while (!atomic_load(&t->done) && kt_now_ns() < end)
		usleep(1000);
	return atomic_load(&t->done);
}

/* ---------------------------------------------------------------- n */

/*
 * Pins: on a shmem mapping registered MISSING, a read and a write of a page
 * that is neither mapped nor in the memfd each raise a missing fault (flags
 * without WP, the faulting address); UFFDIO_COPY puts the page into the
 * memfd (the never-registered alias reads it) and wakes the thread;
 * UFFDIO_ZEROPAGE gives a zero page; a COPY or ZEROPAGE onto a page that
 * exists fails with EEXIST and leaves it alone - what lets lazy restore
 * resolve two faults on one zero page without undoing a write made between.
 */
int kt_case_n(const struct kt_env *env)
{
	struct kt_region r;
	int uffd, rc = kt_region_new(&r, 8, 0);
	KT_CHECK(rc == 0, "shmem region: %s", strerror(-rc));
	rc = kt_uffd_or_skip(0, &uffd);
	if (rc != KT_PASS)
		return rc;
	rc = kt_register(uffd, r.base, r.len, UFFDIO_REGISTER_MODE_MISSING);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(MISSING) on shmem: %s", strerror(-rc));
	uint8_t *src = aligned_alloc(kt_ps, kt_ps);
	KT_CHECK(src != NULL, "no memory");
	kt_fill_page(src, 0, 0x71);

	struct toucher t;
	struct uffd_msg m;
	KT_CHECK(touch_async(&t, r.base, 0, 0) == 0, "thread");
	KT_CHECK(next_fault(uffd, 2000, &m), "a read of an empty page raised no missing fault");
	KT_CHECK(m.arg.pagefault.address == (uintptr_t)r.base && !(m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP),
		 "fault at %#llx flags %#llx, want %p without WP", (unsigned long long)m.arg.pagefault.address,
		 (unsigned long long)m.arg.pagefault.flags, (void *)r.base);
	KT_CHECK(!wait_done(&t, 50), "the reader did not wait for the fault to be resolved");
	struct uffdio_copy cp = { .dst = (uintptr_t)r.base, .src = (uintptr_t)src, .len = kt_ps };
	KT_CHECK(ioctl(uffd, UFFDIO_COPY, &cp) == 0 && cp.copy == (int64_t)kt_ps, "UFFDIO_COPY: %s", strerror(errno));
	KT_CHECK(wait_done(&t, 2000), "UFFDIO_COPY did not wake the reader");
	pthread_join(t.th, NULL);
	KT_CHECK(kt_page_is(r.base, 0, 0x71) && kt_page_is(r.alias, 0, 0x71),
		 "the copied page is not in the mapping and the memfd");

	KT_CHECK(touch_async(&t, r.base + kt_ps, 1, 0x5a) == 0, "thread");
	KT_CHECK(next_fault(uffd, 2000, &m), "a write to an empty page raised no missing fault");
	KT_CHECK(m.arg.pagefault.address == (uintptr_t)(r.base + kt_ps) &&
			 (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE),
		 "write fault at %#llx flags %#llx", (unsigned long long)m.arg.pagefault.address,
		 (unsigned long long)m.arg.pagefault.flags);
	struct uffdio_zeropage zp = { .range = { (uintptr_t)(r.base + kt_ps), kt_ps } };
	KT_CHECK(ioctl(uffd, UFFDIO_ZEROPAGE, &zp) == 0 && zp.zeropage == (int64_t)kt_ps,
		 "UFFDIO_ZEROPAGE on shmem: %s", strerror(errno));
	KT_CHECK(wait_done(&t, 2000), "UFFDIO_ZEROPAGE did not wake the writer");
	pthread_join(t.th, NULL);
	KT_CHECK(r.base[kt_ps] == 0x5a && r.alias[kt_ps] == 0x5a && r.base[kt_ps + 1] == 0,
		 "after ZEROPAGE the write did not land on a zero page");

	/* onto existing pages: EEXIST, contents kept */
	zp = (struct uffdio_zeropage){ .range = { (uintptr_t)(r.base + kt_ps), kt_ps } };
	KT_CHECK(ioctl(uffd, UFFDIO_ZEROPAGE, &zp) < 0 && errno == EEXIST,
		 "ZEROPAGE over an existing page: %s, want EEXIST", strerror(errno));
	KT_CHECK(r.base[kt_ps] == 0x5a, "ZEROPAGE over an existing page changed it");
	cp = (struct uffdio_copy){ .dst = (uintptr_t)(r.base + kt_ps), .src = (uintptr_t)src, .len = kt_ps };
	KT_CHECK(ioctl(uffd, UFFDIO_COPY, &cp) < 0 && errno == EEXIST, "COPY over an existing page: %s, want EEXIST",
		 strerror(errno));
	KT_CHECK(r.base[kt_ps] == 0x5a, "COPY over an existing page changed it");
	/* a range running into an existing page: the part before it is done */
	zp = (struct uffdio_zeropage){ .range = { (uintptr_t)(r.base + 2 * kt_ps), 6 * kt_ps } };
	r.alias[4 * kt_ps] = 0x33; /* page 4 exists */
	rc = ioctl(uffd, UFFDIO_ZEROPAGE, &zp);
	KT_CHECK(zp.zeropage == (int64_t)(2 * kt_ps), "ZEROPAGE up to an existing page: %lld bytes (rc %d), want %zu",
		 (long long)zp.zeropage, rc, 2 * kt_ps);
	KT_CHECK(r.base[4 * kt_ps] == 0x33, "ZEROPAGE went over the existing page");
	free(src);
	(void)env;
	return KT_PASS;
}

/* ---------------------------------------------------------------- o */

/*
 * Pins: a page put into the memfd with pwrite(2) (through the file, not the
 * registered mapping) is mapped by the fault path of a MISSING-registered
 * range with no userfault: lazy restore's loaders install whole blocks with
 * one pwrite and no ioctl.  And why lazy restore does not use MINOR faults:
 * on a MINOR-registered range an access to a hole raises no fault (the
 * kernel allocates a zero page), so a page not loaded yet would read as
 * zero; only a page already in the memfd raises a minor fault.
 */
int kt_case_o(const struct kt_env *env)
{
	struct kt_region r;
	int uffd, rc = kt_region_new(&r, 4, 0);
	KT_CHECK(rc == 0, "shmem region: %s", strerror(-rc));
	rc = kt_uffd_or_skip(UFFD_FEATURE_MINOR_SHMEM, &uffd);
	if (rc != KT_PASS)
		return rc;
	rc = kt_register(uffd, r.base, 2 * kt_ps, UFFDIO_REGISTER_MODE_MISSING);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(MISSING): %s", strerror(-rc));
	uint8_t *src = aligned_alloc(kt_ps, kt_ps);
	KT_CHECK(src != NULL, "no memory");
	kt_fill_page(src, 0, 0x0a);
	KT_CHECK(pwrite(r.memfd, src, kt_ps, 0) == (ssize_t)kt_ps, "pwrite: %s", strerror(errno));
	struct toucher t;
	struct uffd_msg m;
	KT_CHECK(touch_async(&t, r.base + 7, 0, 0) == 0, "thread");
	KT_CHECK(!next_fault(uffd, 300, &m), "a page in the memfd raised a missing fault at %#llx",
		 (unsigned long long)m.arg.pagefault.address);
	KT_CHECK(wait_done(&t, 2000), "the read of a page in the memfd did not complete");
	pthread_join(t.th, NULL);
	KT_CHECK(kt_page_is(r.base, 0, 0x0a), "the mapping does not show the pwritten page");

	/* MINOR on the other two pages: page 2 a hole, page 3 in the memfd */
	rc = kt_register(uffd, r.base + 2 * kt_ps, 2 * kt_ps, UFFDIO_REGISTER_MODE_MINOR);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(MINOR) on shmem: %s", strerror(-rc));
	KT_CHECK(pwrite(r.memfd, src, kt_ps, (off_t)(3 * kt_ps)) == (ssize_t)kt_ps, "pwrite: %s", strerror(errno));
	KT_CHECK(touch_async(&t, r.base + 2 * kt_ps, 0, 0x77) == 0, "thread");
	int faulted = next_fault(uffd, 300, &m);
	if (faulted) {
		kt_unregister(uffd, r.base + 2 * kt_ps, 2 * kt_ps); /* let it go */
		return kt_fail("a hole in a MINOR range raised a fault (pinned: the kernel fills it with zeroes)");
	}
	KT_CHECK(wait_done(&t, 2000) && t.val == 0, "the hole in a MINOR range did not read as zero");
	pthread_join(t.th, NULL);
	KT_CHECK(touch_async(&t, r.base + 3 * kt_ps, 0, 0) == 0, "thread");
	KT_CHECK(next_fault(uffd, 2000, &m) && (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR),
		 "a page in the memfd under MINOR raised no minor fault");
	struct uffdio_continue c = { .range = { (uintptr_t)(r.base + 3 * kt_ps), kt_ps } };
	KT_CHECK(ioctl(uffd, UFFDIO_CONTINUE, &c) == 0, "UFFDIO_CONTINUE: %s", strerror(errno));
	KT_CHECK(wait_done(&t, 2000), "UFFDIO_CONTINUE did not wake the reader");
	pthread_join(t.th, NULL);
	KT_CHECK(kt_page_is(r.base + 3 * kt_ps, 0, 0x0a), "after CONTINUE the page is not the memfd's");
	free(src);
	(void)env;
	return KT_PASS;
}

/* ---------------------------------------------------------------- q */

/*
 * Pins: a range registered with one uffd cannot be registered with another
 * (EBUSY), while one uffd may register MISSING|WP on shmem; UFFDIO_UNREGISTER
 * wakes a thread parked in a missing fault (it retries unregistered and
 * gets the memfd's page); the second uffd can then register WP, and a
 * write after UFFDIO_WRITEPROTECT traps there with the loaded contents.
 * Lazy restore hands the heap from its MISSING uffd to the heap's WP uffd
 * this way once every page is loaded.
 */
int kt_case_q(const struct kt_env *env)
{
	struct kt_region r;
	int a, b, rc = kt_region_new(&r, 4, 0);
	KT_CHECK(rc == 0, "shmem region: %s", strerror(-rc));
	rc = kt_uffd_or_skip(0, &a);
	if (rc != KT_PASS)
		return rc;
	rc = kt_uffd_or_skip(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, &b);
	if (rc != KT_PASS)
		return rc;
	rc = kt_register(a, r.base, r.len, UFFDIO_REGISTER_MODE_MISSING);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(MISSING): %s", strerror(-rc));
	rc = kt_register(b, r.base, r.len, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == -EBUSY, "a second uffd registering the range: %s, want EBUSY", strerror(-rc));
	rc = kt_register(a, r.base, r.len, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == -EBUSY || rc == 0, "MISSING|WP on the same uffd: %s", strerror(-rc));
	if (rc == -EBUSY)
		return kt_fail("one uffd could not add WP to its MISSING range");

	struct toucher t;
	struct uffd_msg m;
	KT_CHECK(touch_async(&t, r.base + 5, 0, 0) == 0, "thread");
	KT_CHECK(next_fault(a, 2000, &m), "no missing fault");
	kt_fill_page(r.alias, 0, 0x42); /* loaded behind the fault's back */
	rc = kt_unregister(a, r.base, r.len);
	KT_CHECK(rc == 0, "UFFDIO_UNREGISTER: %s", strerror(-rc));
	KT_CHECK(wait_done(&t, 2000), "UFFDIO_UNREGISTER did not wake the parked reader");
	pthread_join(t.th, NULL);
	KT_CHECK(kt_page_is(r.base, 0, 0x42), "the woken reader does not see the memfd's page");

	rc = kt_register(b, r.base, r.len, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == 0, "WP registration after the other uffd let go: %s", strerror(-rc));
	rc = kt_wp(b, r.base, r.len, 1);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	KT_CHECK(touch_async(&t, r.base + 9, 1, 0x99) == 0, "thread");
	KT_CHECK(next_fault(b, 2000, &m) && (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP),
		 "a write to the protected, loaded page did not trap on the WP uffd");
	KT_CHECK(kt_page_is(r.alias, 0, 0x42), "the page changed before the trap was resolved");
	rc = kt_wp(b, r.base, kt_ps, 0);
	KT_CHECK(rc == 0, "unprotect: %s", strerror(-rc));
	KT_CHECK(wait_done(&t, 2000), "unprotect did not wake the writer");
	pthread_join(t.th, NULL);
	KT_CHECK(r.alias[9] == 0x99, "the write did not land");
	(void)env;
	return KT_PASS;
}

/* ---------------------------------------------------------------- r */

static sigjmp_buf r_jmp;
static volatile sig_atomic_t r_bus;

static void r_on_bus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	r_bus++;
	siglongjmp(r_jmp, 1);
}

struct r_thread {
	volatile uint8_t *p;
	_Atomic pid_t tid;
	_Atomic int outcome; /* 0 running, 1 SIGBUS, 2 read completed */
};

static void *r_main(void *arg)
{
	struct r_thread *t = arg;
	atomic_store(&t->tid, (pid_t)syscall(SYS_gettid));
	if (sigsetjmp(r_jmp, 1)) {
		atomic_store(&t->outcome, 1);
		return NULL;
	}
	(void)*t->p;
	atomic_store(&t->outcome, 2);
	return NULL;
}

/*
 * Pins: a SIGBUS sent with tgkill() to a thread parked in a missing fault
 * interrupts the fault: the thread's handler runs before the access is
 * retried, and the uffd message names that thread (UFFD_FEATURE_THREAD_ID).
 * Lazy restore fails an access to a damaged block this way on kernels
 * without UFFDIO_POISON (before 6.6).
 */
int kt_case_r(const struct kt_env *env)
{
	struct kt_region r;
	int uffd, rc = kt_region_new(&r, 1, 0);
	KT_CHECK(rc == 0, "shmem region: %s", strerror(-rc));
	rc = kt_uffd_or_skip(UFFD_FEATURE_THREAD_ID, &uffd);
	if (rc != KT_PASS)
		return rc;
	rc = kt_register(uffd, r.base, r.len, UFFDIO_REGISTER_MODE_MISSING);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(MISSING): %s", strerror(-rc));
	struct sigaction sa = { .sa_sigaction = r_on_bus, .sa_flags = SA_SIGINFO };
	sigaction(SIGBUS, &sa, NULL);
	struct r_thread t = { .p = r.base };
	pthread_t th;
	KT_CHECK(pthread_create(&th, NULL, r_main, &t) == 0, "thread");
	struct uffd_msg m;
	KT_CHECK(next_fault(uffd, 2000, &m), "no missing fault");
	KT_CHECK(m.arg.pagefault.feat.ptid == (uint32_t)atomic_load(&t.tid), "message names thread %u, faulting thread %d",
		 m.arg.pagefault.feat.ptid, (int)atomic_load(&t.tid));
	KT_CHECK(syscall(SYS_tgkill, getpid(), (pid_t)m.arg.pagefault.feat.ptid, SIGBUS) == 0, "tgkill: %s",
		 strerror(errno));
	uint64_t end = kt_now_ns() + 2000000000ull;
	while (!atomic_load(&t.outcome) && kt_now_ns() < end)
		usleep(1000);
	int out = atomic_load(&t.outcome);
	if (!out)
		kt_unregister(uffd, r.base, r.len);
	pthread_join(th, NULL);
	KT_CHECK(out == 1, "the parked thread %s", out == 2 ? "read the page instead of taking SIGBUS" : "stayed parked");
	(void)env;
	return KT_PASS;
}

/* ---------------------------------------------------------------- s */

static sigjmp_buf s_jmp;
static void *volatile s_addr;

static void s_on_bus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	s_addr = si->si_addr;
	siglongjmp(s_jmp, 1);
}

/*
 * Pins (6.6+, UFFD_FEATURE_POISON): UFFDIO_POISON on a missing page of a
 * MISSING-registered shmem range makes every later user access raise SIGBUS
 * at that address and a syscall writing there fail with EFAULT, without
 * another userfault and without putting anything into the memfd.  Lazy
 * restore poisons the pages of a block that failed its checks.
 */
int kt_case_s(const struct kt_env *env)
{
	struct kt_region r;
	int uffd, rc = kt_region_new(&r, 2, 0);
	KT_CHECK(rc == 0, "shmem region: %s", strerror(-rc));
	rc = kt_uffd_open(UFFD_FEATURE_POISON, &uffd);
	if (rc == -EINVAL)
		return kt_skip("UFFD_FEATURE_POISON not offered (6.6+); lazy restore signals the thread (case r)");
	if (rc != 0) {
		rc = kt_uffd_or_skip(UFFD_FEATURE_POISON, &uffd);
		if (rc != KT_PASS)
			return rc;
	}
	rc = kt_register(uffd, r.base, r.len, UFFDIO_REGISTER_MODE_MISSING);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(MISSING): %s", strerror(-rc));
	struct uffdio_poison p = { .range = { (uintptr_t)r.base, kt_ps } };
	KT_CHECK(ioctl(uffd, UFFDIO_POISON, &p) == 0, "UFFDIO_POISON on shmem: %s", strerror(errno));
	struct sigaction sa = { .sa_sigaction = s_on_bus, .sa_flags = SA_SIGINFO };
	sigaction(SIGBUS, &sa, NULL);
	for (int k = 0; k < 2; k++) {
		volatile uint8_t v = 0;
		if (!sigsetjmp(s_jmp, 1)) {
			v = r.base[100];
			return kt_fail("a poisoned page was read (%u)", v);
		}
		KT_CHECK(s_addr == r.base + 100 || s_addr == r.base, "SIGBUS at %p, the access was at %p", s_addr,
			 (void *)(r.base + 100));
	}
	int fds[2];
	KT_CHECK(pipe(fds) == 0, "pipe");
	KT_CHECK(write(fds[1], "x", 1) == 1, "pipe write");
	errno = 0;
	KT_CHECK(read(fds[0], r.base + 5, 1) < 0 && errno == EFAULT, "read(2) into a poisoned page: %s, want EFAULT",
		 strerror(errno));
	struct uffd_msg m;
	KT_CHECK(!next_fault(uffd, 100, &m), "the poisoned page raised a userfault");
	off_t d = lseek(r.memfd, 0, SEEK_DATA);
	KT_CHECK(d < 0 || d >= (off_t)kt_ps, "the poisoned page is in the memfd (SEEK_DATA %lld)", (long long)d);
	(void)env;
	return KT_PASS;
}
