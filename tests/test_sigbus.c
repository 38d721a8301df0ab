/*
 * test_sigbus.c - CKPT_TRAP_SIGBUS mode at its documented edges: syscalls
 * that write into the heap, and SIGBUS that is not ours.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd_compat.h"
#include "util/memsink.h"
#include "util/testutil.h"

#define HEAP_SIZE (32u << 20)

/* An incremental heap after a full checkpoint: clean pages stay
 * write-protected, so the next write to them must go through libckpt. */
static ckpt_heap *protected_heap(enum ckpt_backend be, uint8_t **data, struct memsink *ms)
{
	struct ckpt_heap_opts o;
	ckpt_heap *h = NULL;
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms->sink};

	ckpt_heap_opts_init(&o);
	o.size = HEAP_SIZE;
	o.backend = be;
	o.fault_around = 1;
	o.flags = CKPT_HEAP_INCREMENTAL;
	CKPT_ASSERT_OK(ckpt_heap_create(&o, &h));
	*data = ckpt_alloc(h, 64 * 4096);
	cr_assert_not_null(*data);
	memset(*data, 0x11, 64 * 4096);
	cr_assert(memsink_init(ms, HEAP_SIZE, 4096) == 0);
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	CKPT_ASSERT_OK(ckpt_wait(h));
	cr_assert(ckpt_test_pagemap(*data + 8 * 4096) & CKPT_PM_UFFD_WP, "page not protected after the checkpoint");
	return h;
}

static ssize_t read_from_pipe_into(void *dst, size_t len)
{
	int p[2];
	char buf[256];
	memset(buf, 'x', sizeof(buf));
	cr_assert(pipe2(p, O_CLOEXEC) == 0);
	cr_assert(write(p[1], buf, len) == (ssize_t)len);
	ssize_t n = read(p[0], dst, len);
	int e = errno;
	close(p[0]);
	close(p[1]);
	errno = e;
	return n;
}

/* The kernel does not signal a kernel-mode write in SIGBUS mode: read(2)
 * into a protected page fails with EFAULT (documented in ckpt.h).  After
 * ckpt_prepare_write() on the range it succeeds. */
Test(sigbus, read_into_heap_needs_prepare_write, .timeout = 30)
{
	struct memsink ms;
	uint8_t *d;
	ckpt_heap *h = protected_heap(CKPT_TRAP_SIGBUS, &d, &ms);

	errno = 0;
	ssize_t n = read_from_pipe_into(d + 8 * 4096 + 100, 200);
	cr_assert(n == -1 && errno == EFAULT, "read into a protected page: %zd (%s), want EFAULT", n,
		  strerror(errno));
	CKPT_ASSERT_OK(ckpt_prepare_write(h, d + 8 * 4096 + 100, 200));
	n = read_from_pipe_into(d + 8 * 4096 + 100, 200);
	cr_assert(n == 200, "read after ckpt_prepare_write: %zd (%s)", n, strerror(errno));
	cr_assert(d[8 * 4096 + 100] == 'x' && d[8 * 4096 + 299] == 'x' && d[8 * 4096 + 300] == 0x11);
	CKPT_ASSERT_ERR(ckpt_prepare_write(h, (void *)0x1000, 10), -EINVAL);
	/* the page that read(2) wrote is in the next incremental */
	struct ckpt_dest dest = {.kind = CKPT_DEST_SINK, .sink = &ms.sink};
	CKPT_ASSERT_OK(ckpt_begin(h, &dest, NULL));
	CKPT_ASSERT_OK(ckpt_wait(h));
	cr_assert(ms.info.flags & CKPT_SINK_INCREMENTAL);
	cr_assert(ms.image[(size_t)(d - (uint8_t *)ckpt_heap_base(h)) + 8 * 4096 + 100] == 'x',
		  "the syscall's write is missing from the incremental image");
	memsink_fini(&ms);
	ckpt_heap_destroy(h);
}

/* In handler-thread mode the same read(2) blocks until libckpt has saved
 * and unprotected the page, then succeeds. */
Test(sigbus, thread_mode_read_into_heap_just_works, .timeout = 30)
{
	struct memsink ms;
	uint8_t *d;
	ckpt_heap *h = protected_heap(CKPT_TRAP_THREAD, &d, &ms);
	ssize_t n = read_from_pipe_into(d + 9 * 4096, 256);
	cr_assert(n == 256, "read into a protected page in thread mode: %zd (%s)", n, strerror(errno));
	cr_assert(d[9 * 4096] == 'x');
	memsink_fini(&ms);
	ckpt_heap_destroy(h);
}

static sigjmp_buf jb;
static volatile sig_atomic_t old_handler_ran;
static void *old_handler_addr;

static void old_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	old_handler_ran = sig;
	old_handler_addr = si->si_addr;
	siglongjmp(jb, 1);
}

/* A SIGBUS that is not a write-protect fault in a libckpt heap (here: past
 * the end of a mapped file) reaches the handler installed before libckpt's,
 * with its siginfo intact. */
Test(sigbus, foreign_sigbus_reaches_previous_handler, .timeout = 30)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = old_handler;
	sa.sa_flags = SA_SIGINFO;
	cr_assert(sigaction(SIGBUS, &sa, NULL) == 0);

	struct memsink ms;
	uint8_t *d;
	ckpt_heap *h = protected_heap(CKPT_TRAP_SIGBUS, &d, &ms);

	int fd = (int)syscall(SYS_memfd_create, "short", MFD_CLOEXEC);
	cr_assert(fd >= 0 && ftruncate(fd, 4096) == 0);
	volatile uint8_t *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert(m != MAP_FAILED);
	if (sigsetjmp(jb, 1) == 0) {
		m[4096] = 1; /* past EOF: SIGBUS */
		cr_assert_fail("no SIGBUS past the end of the file");
	}
	cr_assert(old_handler_ran == SIGBUS, "the previous SIGBUS handler did not run");
	cr_assert(old_handler_addr == (void *)(m + 4096), "si_addr %p, want %p", old_handler_addr,
		  (void *)(m + 4096));
	/* and libckpt's own faults still work */
	d[10 * 4096] = 5;
	cr_assert(d[10 * 4096] == 5);
	munmap((void *)m, 8192);
	close(fd);
	memsink_fini(&ms);
	ckpt_heap_destroy(h);
}
