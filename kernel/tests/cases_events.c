/*
 * cases_events.c - cases h, i, j, k and p: what happens to the mark when
 * the address space changes (mremap, fork, hole punch), what a kernel-mode
 * write into a protected page does in each trap mode, and the library's
 * own probe.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "kt.h"

#define WP_FEATURES UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define PM_WP CKPT_PM_UFFD_WP
#define PM_PRESENT CKPT_PM_PRESENT

static int setup_protected(struct kt_region *r, size_t n, uint32_t seed, uint64_t features,
			   int *uffd)
{
	int rc = kt_region_new(r, n, 0);

	KT_CHECK(rc == 0, "shmem region of %zu pages: %s", n, strerror(-rc));
	rc = kt_uffd_or_skip(features, uffd);
	if (rc != KT_PASS)
		return rc;
	kt_fill(r, seed);
	rc = kt_register(*uffd, r->base, r->len, UFFDIO_REGISTER_MODE_WP);
	KT_CHECK(rc == 0, "UFFDIO_REGISTER(WP): %s", strerror(-rc));
	rc = kt_wp(*uffd, r->base, r->len, 1);
	KT_CHECK(rc == 0, "UFFDIO_WRITEPROTECT: %s", strerror(-rc));
	return KT_PASS;
}

/* ---------------------------------------------------------------- h */

static int mremap_variant(int with_event)
{
	enum { N = 16 };
	struct kt_region r;
	struct kt_handler h;
	uint8_t expect[N];
	uint8_t *dst, *old;
	int uffd, rc;
	size_t marked;
	const char *what = with_event ? "with EVENT_REMAP" : "without EVENT_REMAP";

	memset(expect, KT_EXPECT_PATTERN, sizeof(expect));
	rc = setup_protected(&r, N, 0x4 + (uint32_t)with_event,
			     WP_FEATURES | (with_event ? UFFD_FEATURE_EVENT_REMAP : 0), &uffd);
	if (rc != KT_PASS)
		return rc;
	dst = mmap(NULL, r.len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	KT_CHECK(dst != MAP_FAILED, "mmap: %s", strerror(errno));
	/* the handler must run already: with the event, mremap waits for it */
	rc = kt_handler_start(&h, uffd, &r, dst, 0x4 + (uint32_t)with_event, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	old = r.base;
	KT_CHECK(mremap(r.base, r.len, r.len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == dst,
		 "mremap %s: %s", what, strerror(errno));
	marked = kt_pagemap_count(dst, N, PM_WP, 0);
	if (with_event) {
		const struct uffd_msg *m = &h.events[0];

		KT_CHECK(kt_handler_wait_events(&h, 1, 1000), "no event after mremap with EVENT_REMAP");
		KT_CHECK(m->event == UFFD_EVENT_REMAP, "event %u after mremap, want UFFD_EVENT_REMAP",
			 m->event);
		KT_CHECK(m->arg.remap.from == (uintptr_t)old && m->arg.remap.to == (uintptr_t)dst &&
				 m->arg.remap.len == r.len,
			 "UFFD_EVENT_REMAP says %#llx -> %#llx len %llu, want %p -> %p len %zu",
			 (unsigned long long)m->arg.remap.from, (unsigned long long)m->arg.remap.to,
			 (unsigned long long)m->arg.remap.len, (void *)old, (void *)dst, r.len);
		KT_CHECK(marked == N, "pagemap: %zu of %d moved pages keep bit 57 with EVENT_REMAP",
			 marked, N);
		rc = kt_write_pages(&h, 0, N, 1, "write to the moved range, EVENT_REMAP");
	} else {
		usleep(20000);
		KT_CHECK(atomic_load(&h.nevents) == 0, "an event arrived without EVENT_REMAP");
		KT_CHECK(marked == 0, "pagemap: %zu of %d moved pages still carry bit 57 without "
				      "EVENT_REMAP (stale mark)", marked, N);
		rc = kt_write_pages(&h, 0, N, 0, "write to the moved range, no EVENT_REMAP");
	}
	kt_handler_stop(&h);
	return rc;
}

/*
 * h. mremap of a write-protected shmem range.  Without
 * UFFD_FEATURE_EVENT_REMAP the moved range is no longer registered and the
 * mark is gone: pagemap bit 57 clear at the new address, writes there do
 * not trap, contents moved intact (a checkpoint would silently miss those
 * writes).  With EVENT_REMAP, mremap waits until the handler has read a
 * UFFD_EVENT_REMAP carrying from/to/len, and the moved pages stay
 * protected: every write at the new address traps.  libckpt forbids
 * mremap of the heap; this pins what happens if it is done anyway.
 */
int kt_case_h(const struct kt_env *env)
{
	int rc;

	(void)env;
	rc = mremap_variant(0);
	if (rc != KT_PASS)
		return rc;
	return mremap_variant(1);
}

/* ---------------------------------------------------------------- i */

struct fork_report {
	int marked;   /* child's ptes with bit 57 */
	int present;  /* child's ptes present */
	int wrote;    /* the child's write landed (as seen by the child) */
};

/* In the forked child: only async-signal-safe calls. */
static void fork_child(const struct kt_region *r, int wfd)
{
	struct fork_report rep = { 0, 0, 0 };
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC); /* the child's own mm */

	for (size_t i = 0; i < r->npages && pm >= 0; i++) {
		uint64_t e = 0;

		if (pread(pm, &e, 8, (off_t)((uintptr_t)(r->base + i * kt_ps) / kt_ps * 8)) == 8) {
			rep.marked += !!(e & PM_WP);
			rep.present += !!(e & PM_PRESENT);
		}
	}
	/* page 0: traps to the parent's handler if the child kept the mark */
	((volatile uint8_t *)r->base)[kt_written_off(0)] = kt_written_byte(0);
	rep.wrote = r->base[kt_written_off(0)] == kt_written_byte(0);
	if (write(wfd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(2);
	_exit(0);
}

static int fork_variant(int with_event)
{
	enum { N = 8 };
	struct kt_region r;
	struct kt_handler h;
	struct fork_report rep;
	int uffd, rc, pfd[2], status;
	pid_t pid;
	struct pollfd p;
	const char *what = with_event ? "with EVENT_FORK" : "without EVENT_FORK";

	rc = setup_protected(&r, N, 0x6, WP_FEATURES | (with_event ? UFFD_FEATURE_EVENT_FORK : 0),
			     &uffd);
	if (rc != KT_PASS)
		return rc;
	/* with EVENT_FORK, fork() waits until this thread has read the event */
	rc = kt_handler_start(&h, uffd, &r, r.base, 0x6, NULL);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));
	KT_CHECK(pipe2(pfd, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
	pid = fork();
	KT_CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0)
		fork_child(&r, pfd[1]);
	close(pfd[1]);
	p.fd = pfd[0];
	p.events = POLLIN;
	rc = poll(&p, 1, 5000);
	if (rc <= 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return kt_fail("%s: the child did not report within 5 s (its write stayed blocked)",
			       what);
	}
	KT_CHECK(read(pfd[0], &rep, sizeof(rep)) == (ssize_t)sizeof(rep), "%s: no report from the child",
		 what);
	waitpid(pid, &status, 0);
	kt_note("%s: child saw %d/%d ptes marked, %d present; child faults on page 0: %u; "
		"parent faults: %u", what, rep.marked, N, rep.present,
		atomic_load(&h.child_faults[0]), atomic_load(&h.faults[0]));
	KT_CHECK(rep.wrote, "%s: the child's write did not land", what);
	KT_CHECK(r.alias[kt_written_off(0)] == kt_written_byte(0),
		 "%s: the child's write is not in the shared page", what);
	KT_CHECK(atomic_load(&h.faults[0]) == 0, "%s: the parent's uffd saw a fault for the child's "
						 "write", what);
	KT_CHECK(kt_pagemap_count(r.base, N, PM_WP, 0) == N,
		 "%s: the parent's ptes lost the mark across fork", what);
	if (with_event) {
		KT_CHECK(atomic_load(&h.nevents) >= 1 && h.events[0].event == UFFD_EVENT_FORK,
			 "no UFFD_EVENT_FORK read");
		KT_CHECK(rep.marked == N, "with EVENT_FORK the child has %d of %d ptes marked",
			 rep.marked, N);
		KT_CHECK(atomic_load(&h.child_faults[0]) == 1,
			 "with EVENT_FORK the child's write raised %u faults on the child's uffd, want 1",
			 atomic_load(&h.child_faults[0]));
	} else {
		KT_CHECK(atomic_load(&h.nevents) == 0, "an event arrived without EVENT_FORK");
		KT_CHECK(rep.marked == 0, "without EVENT_FORK the child has %d of %d ptes marked",
			 rep.marked, N);
	}
	kt_handler_stop(&h);
	if (atomic_load(&h.child_uffd) >= 0)
		close(atomic_load(&h.child_uffd));
	close(pfd[0]);
	return KT_PASS;
}

/*
 * i. fork of a process with write-protected shmem.  Without
 * UFFD_FEATURE_EVENT_FORK the child's ptes carry no mark (shmem ptes are
 * not even copied): the child's write lands in the shared page with no
 * fault anywhere, while the parent's pte still says "protected" - a
 * checkpoint would miss it; this is why libckpt maps the heap
 * MADV_DONTFORK.  With EVENT_FORK, fork() blocks until a reader takes the
 * UFFD_EVENT_FORK (so SIGBUS mode, which has no reader, must not use it);
 * the child's ptes keep the mark and its write traps on the new uffd the
 * event carries.
 */
int kt_case_i(const struct kt_env *env)
{
	int rc;

	(void)env;
	rc = fork_variant(0);
	if (rc != KT_PASS)
		return rc;
	return fork_variant(1);
}

/* ---------------------------------------------------------------- j */

/*
 * j. Punching a hole in write-protected shmem.  fallocate(PUNCH_HOLE) on
 * the memfd and MADV_REMOVE on the mapping free the pages.  Pinned on this
 * kernel (the kernel's documentation speaks of the mark being dropped):
 * the PTE markers stay (pagemap: not present, bit 57), the pages read as
 * zeros, and the next write to each page traps with the handler seeing
 * zeros.  With UFFD_FEATURE_EVENT_REMOVE, MADV_REMOVE waits until the
 * handler reads a UFFD_EVENT_REMOVE with the exact range; fallocate
 * delivers no event.  libckpt depends on neither without this case.
 */
int kt_case_j(const struct kt_env *env)
{
	enum { N = 16 };
	struct kt_region r;
	struct kt_handler h;
	uint8_t expect[N];
	int uffd, rc;
	size_t n;
	const struct uffd_msg *m;

	(void)env;
	memset(expect, KT_EXPECT_ZERO, sizeof(expect));
	rc = setup_protected(&r, N, 0x7, WP_FEATURES | UFFD_FEATURE_EVENT_REMOVE, &uffd);
	if (rc != KT_PASS)
		return rc;
	rc = kt_handler_start(&h, uffd, &r, r.base, 0x7, expect);
	KT_CHECK(rc == 0, "handler thread: %s", strerror(-rc));

	KT_CHECK(fallocate(r.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			   (off_t)(8 * kt_ps)) == 0,
		 "fallocate(PUNCH_HOLE): %s", strerror(errno));
	usleep(20000);
	KT_CHECK(atomic_load(&h.nevents) == 0, "fallocate(PUNCH_HOLE) delivered %u event(s)",
		 atomic_load(&h.nevents));
	KT_CHECK(madvise(r.base + 8 * kt_ps, 8 * kt_ps, MADV_REMOVE) == 0, "MADV_REMOVE: %s",
		 strerror(errno));
	KT_CHECK(kt_handler_wait_events(&h, 1, 1000), "MADV_REMOVE delivered no event");
	m = &h.events[0];
	KT_CHECK(m->event == UFFD_EVENT_REMOVE, "MADV_REMOVE delivered event %u, want REMOVE",
		 m->event);
	KT_CHECK(m->arg.remove.start == (uintptr_t)(r.base + 8 * kt_ps) &&
			 m->arg.remove.end == (uintptr_t)(r.base + 16 * kt_ps),
		 "UFFD_EVENT_REMOVE range %#llx-%#llx, want %p-%p",
		 (unsigned long long)m->arg.remove.start, (unsigned long long)m->arg.remove.end,
		 (void *)(r.base + 8 * kt_ps), (void *)(r.base + 16 * kt_ps));

	n = kt_pagemap_count(r.base, 8, PM_WP, PM_PRESENT);
	KT_CHECK(n == 8, "pagemap: after fallocate(PUNCH_HOLE) %zu/8 ptes keep the marker", n);
	n = kt_pagemap_count(r.base + 8 * kt_ps, 8, PM_WP, PM_PRESENT);
	KT_CHECK(n == 8, "pagemap: after MADV_REMOVE %zu/8 ptes keep the marker", n);
	for (size_t i = 0; i < N; i++)
		KT_CHECK(kt_page_is_zero(r.alias + i * kt_ps), "page %zu is not zero after the punch", i);
	rc = kt_write_pages(&h, 0, 8, 1, "write after fallocate(PUNCH_HOLE)");
	if (rc != KT_PASS)
		return rc;
	rc = kt_write_pages(&h, 8, 8, 1, "write after MADV_REMOVE");
	if (rc != KT_PASS)
		return rc;
	kt_handler_stop(&h);
	return KT_PASS;
}

/* ---------------------------------------------------------------- k */

struct pipe_reader {
	int fd;
	uint8_t *dst;
	ssize_t ret;
	int err;
	_Atomic int done;
};

static void *pipe_reader_main(void *arg)
{
	struct pipe_reader *pr = arg;

	pr->ret = read(pr->fd, pr->dst, kt_ps);
	pr->err = errno;
	atomic_store(&pr->done, 1);
	return NULL;
}

static int fill_pipe(int pfd[2], uint8_t v)
{
	uint8_t *buf = malloc(kt_ps);
	ssize_t w;

	if (!buf)
		return -ENOMEM;
	memset(buf, v, kt_ps);
	w = write(pfd[1], buf, kt_ps);
	free(buf);
	return w == (ssize_t)kt_ps ? 0 : -EIO;
}

static bool all_bytes(const uint8_t *p, uint8_t v)
{
	for (size_t i = 0; i < kt_ps; i++)
		if (p[i] != v)
			return false;
	return true;
}

static volatile sig_atomic_t sigbus_count;
static void *volatile sigbus_addr;
static sigjmp_buf sigbus_jmp;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	sigbus_count++;
	sigbus_addr = si->si_addr;
	siglongjmp(sigbus_jmp, 1);
}

static int kernel_write_thread_mode(void)
{
	struct kt_region r;
	struct pipe_reader pr;
	struct uffd_msg msg;
	struct pollfd p;
	pthread_t th;
	int uffd, rc, pfd[2];

	rc = setup_protected(&r, 1, 0x8, WP_FEATURES | KT_KERNEL_FAULTS, &uffd);
	if (rc != KT_PASS)
		return rc;
	KT_CHECK(pipe2(pfd, O_CLOEXEC) == 0 && fill_pipe(pfd, 0x77) == 0, "pipe: %s", strerror(errno));
	memset(&pr, 0, sizeof(pr));
	pr.fd = pfd[0];
	pr.dst = r.base;
	KT_CHECK(pthread_create(&th, NULL, pipe_reader_main, &pr) == 0, "pthread_create");
	p.fd = uffd;
	p.events = POLLIN;
	rc = poll(&p, 1, 2000);
	if (rc <= 0) {
		kt_wp(uffd, r.base, r.len, 0);
		pthread_join(th, NULL);
		return kt_fail("thread mode: read(2) into a protected page raised no fault "
			       "(read returned %zd)", pr.ret);
	}
	KT_CHECK(read(uffd, &msg, sizeof(msg)) == (ssize_t)sizeof(msg), "reading the uffd");
	KT_CHECK(msg.event == UFFD_EVENT_PAGEFAULT && (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) &&
			 (msg.arg.pagefault.address & ~(uint64_t)(kt_ps - 1)) == (uintptr_t)r.base,
		 "thread mode: unexpected message (event %u flags %#llx)", msg.event,
		 (unsigned long long)msg.arg.pagefault.flags);
	/* the syscall is parked in the fault, not failed */
	usleep(20000);
	KT_CHECK(!atomic_load(&pr.done), "thread mode: read(2) returned %zd while its fault was "
					 "unresolved", pr.ret);
	KT_CHECK(kt_page_is(r.alias, 0, 0x8), "thread mode: page changed before the fault was resolved");
	rc = kt_wp(uffd, r.base, r.len, 0);
	KT_CHECK(rc == 0, "unprotect: %s", strerror(-rc));
	pthread_join(th, NULL);
	KT_CHECK(pr.ret == (ssize_t)kt_ps, "thread mode: read(2) returned %zd (%s) after the fault "
					   "was resolved, want %zu", pr.ret, strerror(pr.err), kt_ps);
	KT_CHECK(all_bytes(r.alias, 0x77), "thread mode: the data read(2) copied is not in the page");
	kt_note("thread mode: read(2) blocked in the WP fault, then returned %zd", pr.ret);
	return KT_PASS;
}

static int kernel_write_sigbus_mode(void)
{
	struct kt_region r;
	struct sigaction sa, old;
	int uffd, rc, pfd[2];
	ssize_t ret;
	int err;
	volatile uint8_t *target;

	rc = setup_protected(&r, 1, 0x9, WP_FEATURES | UFFD_FEATURE_SIGBUS | KT_KERNEL_FAULTS, &uffd);
	if (rc != KT_PASS)
		return rc;
	KT_CHECK(pipe2(pfd, O_CLOEXEC) == 0 && fill_pipe(pfd, 0x66) == 0, "pipe: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGBUS, &sa, &old);

	sigbus_count = 0;
	ret = read(pfd[0], r.base, kt_ps);
	err = errno;
	KT_CHECK(ret == -1 && err == EFAULT, "SIGBUS mode: read(2) into a protected page returned %zd "
					     "(%s), want -1 EFAULT", ret, ret < 0 ? strerror(err) : "-");
	KT_CHECK(sigbus_count == 0, "SIGBUS mode: a kernel-mode write raised SIGBUS");
	KT_CHECK(kt_page_is(r.alias, 0, 0x9), "SIGBUS mode: the failed read(2) changed the page");

	/* a user-mode write, by contrast, raises SIGBUS at the address */
	target = r.base + 100;
	if (sigsetjmp(sigbus_jmp, 1) == 0)
		*target = 1;
	KT_CHECK(sigbus_count == 1 && sigbus_addr == (void *)target,
		 "SIGBUS mode: a user write raised %d SIGBUS (addr %p, want %p)", (int)sigbus_count,
		 sigbus_addr, (void *)target);
	KT_CHECK(kt_page_is(r.alias, 0, 0x9), "SIGBUS mode: the trapped user write changed the page");

	rc = kt_wp(uffd, r.base, r.len, 0);
	KT_CHECK(rc == 0, "unprotect: %s", strerror(-rc));
	ret = read(pfd[0], r.base, kt_ps);
	KT_CHECK(ret == (ssize_t)kt_ps && all_bytes(r.alias, 0x66),
		 "SIGBUS mode: read(2) after unprotect returned %zd", ret);
	sigaction(SIGBUS, &old, NULL);
	kt_note("SIGBUS mode: read(2) failed with EFAULT, no signal; a user write got SIGBUS");
	return KT_PASS;
}

/*
 * k. A kernel-mode write into a write-protected page (read(2) from a pipe
 * into it).  With a handler thread the syscall blocks in the WP fault until
 * the page is unprotected and then succeeds with the data in place.  With
 * UFFD_FEATURE_SIGBUS the kernel raises no signal for its own write: the
 * syscall fails with EFAULT and the page is unchanged (a user-mode write
 * in the same state gets SIGBUS).  This is why SIGBUS mode needs
 * ckpt_prepare_write() before syscalls that write into the heap.
 */
int kt_case_k(const struct kt_env *env)
{
	int rc;

	(void)env;
	rc = kernel_write_thread_mode();
	if (rc != KT_PASS)
		return rc;
	return kernel_write_sigbus_mode();
}

/* ---------------------------------------------------------------- p */

/*
 * p. libckpt's own probe, ckpt_kernel_probe(), finds the kernel safe: WP on
 * shmem offered and the live canary (a protected shmem page zapped, read
 * back, taken through an mprotect round trip) still traps with its
 * contents intact.  On a kernel failing case g this must fail too.
 */
int kt_case_probe(const struct kt_env *env)
{
	struct ckpt_kernel_info ki;
	int rc;

	(void)env;
	rc = ckpt_kernel_probe(&ki);
	kt_note("probe: features %#llx, wp_shmem %u, wp_unpopulated %u, wp_async %u, pagemap_scan %u, "
		"canary %s in %.3f ms", (unsigned long long)ki.uffd_features, ki.wp_shmem,
		ki.wp_unpopulated, ki.wp_async, ki.pagemap_scan, ki.canary_ok ? "ok" : "failed",
		(double)ki.canary_ns / 1e6);
	if (rc == -EPERM)
		return kt_skip("userfaultfd not permitted: %s", ki.reason);
	KT_CHECK(rc == 0, "ckpt_kernel_probe() = %d: %s", rc, ki.reason);
	KT_CHECK(ki.canary_ok && ki.wp_shmem, "probe returned 0 without canary_ok/wp_shmem");
	return KT_PASS;
}
