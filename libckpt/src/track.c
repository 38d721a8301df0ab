/*
 * track.c - the fault path: what happens when the application writes a
 * write-protected heap page, delivered either to a handler thread that reads
 * the userfaultfd (CKPT_TRAP_THREAD) or as SIGBUS to the faulting thread
 * (CKPT_TRAP_SIGBUS).
 *
 * Everything reachable from ckpt__trap() is async-signal-safe: atomics,
 * memcpy, ioctl, nanosleep, clock_gettime.  No locks, no allocation.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "fault.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static void pause_briefly(unsigned *spins)
{
	/* Spin a little, then sleep: waits here are for a memcpy of the
	 * writer's batch or for a pool slot, normally microseconds. */
	if (++*spins < 64) {
		__builtin_ia32_pause();
		return;
	}
	struct timespec ts = {0, 20000};
	nanosleep(&ts, NULL);
}

void ckpt__hist_add(struct ckpt__stats *st, uint64_t ns)
{
	unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
	if (b >= CKPT_HIST_BUCKETS)
		b = CKPT_HIST_BUCKETS - 1;
	atomic_fetch_add_explicit(&st->hist[b], 1, memory_order_relaxed);
}

/*
 * Write-protect or unprotect heap pages [first, first + n).  Unprotecting
 * also wakes threads blocked on a fault in the range (handler-thread mode).
 */
int ckpt__wp_range(ckpt_heap *h, size_t first, size_t n, bool protect)
{
	struct uffdio_writeprotect wp;

	if (n == 0)
		return 0;
	wp.range.start = (uint64_t)(uintptr_t)(h->base + (first << h->page_shift));
	wp.range.len = (uint64_t)n << h->page_shift;
	wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
	if (protect) {
		int frc = ckpt__fault_hit(CKPT_FAULT_UFFD_WP);
		if (frc)
			return frc;
	}
	for (;;) {
		if (ioctl(h->uffd, UFFDIO_WRITEPROTECT, &wp) == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
}

void ckpt__gate_close(struct ckpt__engine *e)
{
	unsigned spins = 0;
	atomic_store(&e->gate_closed, 1);
	while (atomic_load(&e->inflight) != 0)
		pause_briefly(&spins);
}

void ckpt__gate_open(struct ckpt__engine *e)
{
	atomic_store(&e->gate_closed, 0);
}

static void gate_enter(struct ckpt__engine *e)
{
	unsigned spins = 0;
	for (;;) {
		atomic_fetch_add(&e->inflight, 1);
		if (!atomic_load(&e->gate_closed))
			return;
		atomic_fetch_sub(&e->inflight, 1);
		while (atomic_load(&e->gate_closed))
			pause_briefly(&spins);
	}
}

static void gate_leave(struct ckpt__engine *e)
{
	atomic_fetch_sub(&e->inflight, 1);
}

/*
 * Save the pre-image of page q into a pool slot if it is still PENDING.
 * The caller holds slot.  Returns true if the slot was used.
 * Ordering (I2): copy, queue, then store IDLE with release, so whoever sees
 * IDLE and unprotects does so after the pre-image is safe.
 */
static bool save_to_slot(ckpt_heap *h, struct ckpt__engine *e, size_t q, uint32_t slot)
{
	uint8_t expect = PG_PENDING;
	if (!atomic_compare_exchange_strong(&e->pg[q], &expect, PG_CLAIMED))
		return false;
	/* Read the pre-image through the heap mapping itself: a write-protected
	 * pte is readable, and the faulting page is mapped there already,
	 * whereas its alias pte is often not (a minor fault per trap). */
	memcpy(ckpt__pool_slot(&e->pool, slot), h->base + (q << h->page_shift), h->page_size);
	e->pool.slot_page[slot] = q;
	ckpt__queue_push(&e->pool.ready_q, slot);
	atomic_store_explicit(&e->pg[q], PG_IDLE, memory_order_release);
	return true;
}

/* Fault-around on neighbour q: save its pre-image if it is still PENDING
 * and a slot is free (never waiting: neighbours are a bonus).  Returns true
 * if q is now IDLE, i.e. safe to unprotect (I2). */
static bool neighbour_safe(ckpt_heap *h, struct ckpt__engine *e, size_t q)
{
	uint32_t slot;
	uint8_t s = atomic_load_explicit(&e->pg[q], memory_order_acquire);

	if ((s & PG_STATE) == PG_PENDING) {
		/* Neighbours are speculative: once the pool is half full, keep
		 * its slots for pages that are actually being written (a trap
		 * that finds the pool empty stalls its thread). */
		if (atomic_load_explicit(&e->pool.in_use, memory_order_relaxed) >= e->pool.nslots / 2 ||
		    !ckpt__pool_get(&e->pool, &slot))
			return false;
		if (save_to_slot(h, e, q, slot)) {
			atomic_fetch_add_explicit(&e->st.saved_by_traps, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&e->st.fault_around, 1, memory_order_relaxed);
		} else {
			ckpt__pool_put(&e->pool, slot);
		}
		s = atomic_load_explicit(&e->pg[q], memory_order_acquire);
	}
	return (s & PG_STATE) == PG_IDLE;
}

/*
 * ckpt__trap() : a write hit protected page @page.  Make sure the pre-image
 * of every page we unprotect is safe, then unprotect.  With fault-around,
 * the aligned window of fault_around pages around @page is saved and
 * unprotected at once when slots are free.
 * @wait_allowed: false only for best-effort callers; the page's own save
 * always waits for a slot (the pool is drained by the writer).
 * Returns 0 or the error of the unprotect ioctl.
 */
int ckpt__trap(ckpt_heap *h, size_t page, bool wait_allowed)
{
	struct ckpt__engine *e = h->eng;
	size_t fa = e->fault_around;
	size_t lo = page & ~(fa - 1), hi = lo + fa;
	unsigned spins = 0;
	uint32_t slot;
	int rc;

	if (hi > h->npages)
		hi = h->npages;

	(void)wait_allowed;
	for (;;) {
		gate_enter(e);
		uint8_t s = atomic_load_explicit(&e->pg[page], memory_order_acquire);
		if ((s & PG_STATE) == PG_PENDING) {
			if (!ckpt__pool_get(&e->pool, &slot)) {
				/* Pool full: wait for the writer to drain it
				 * (outside the gate, so an abort can proceed). */
				gate_leave(e);
				if (spins == 0)
					atomic_fetch_add(&e->st.pool_waits, 1);
				pause_briefly(&spins);
				continue;
			}
			if (save_to_slot(h, e, page, slot))
				atomic_fetch_add_explicit(&e->st.saved_by_traps, 1,
							  memory_order_relaxed);
			else
				ckpt__pool_put(&e->pool, slot);
			gate_leave(e);
			continue; /* re-read: now IDLE (or claimed by the writer) */
		}
		if ((s & PG_STATE) == PG_CLAIMED) {
			/* The writer (or another trap) is copying it: I2 says
			 * wait until it is IDLE. */
			gate_leave(e);
			pause_briefly(&spins);
			continue;
		}
		break; /* IDLE: the pre-image is safe */
	}

	/* Fault-around: save PENDING neighbours while slots are free; the
	 * window is unprotected as the longest run of safe pages around page. */
	size_t run_lo = page, run_hi = page + 1;
	if (fa > 1) {
		while (run_hi < hi && neighbour_safe(h, e, run_hi))
			run_hi++;
		while (run_lo > lo && neighbour_safe(h, e, run_lo - 1))
			run_lo--;
		/* Past prot_limit nothing is protected: no need to widen. */
		size_t lim = atomic_load(&e->prot_limit);
		if (run_hi > lim && lim > page)
			run_hi = lim;
	}

	/* I3: mark before unprotecting, so an incremental checkpoint that
	 * starts after this (the gate orders us before it) includes them. */
	for (size_t q = run_lo; q < run_hi; q++)
		atomic_fetch_or_explicit(&e->pg[q], PG_UNPROT, memory_order_relaxed);
	rc = ckpt__wp_range(h, run_lo, run_hi - run_lo, false);
	if (rc == 0 && run_hi - run_lo > 1) {
		/* An unprotected pte still lacks its write bit: the next write
		 * to each neighbour would take a minor fault (~1 us).  Set them
		 * now, in one call (measured: a sequential writer's next writes
		 * go from 0.9 us to 0.15 us p50).  The pages exist already
		 * (they were just read to be saved, or inside the extent). */
		madvise(h->base + (run_lo << h->page_shift), (run_hi - run_lo) << h->page_shift,
			MADV_POPULATE_WRITE);
	}
	gate_leave(e);
	return rc;
}

/* ------------------------------------------------------------ SIGBUS mode */

/*
 * The SIGBUS handler must find the heap from the faulting address alone; a
 * signal handler has no context argument, so this registry is the one piece
 * of process-global state libckpt keeps.  A fixed array of atomic pointers:
 * lookups are lock-free and async-signal-safe.
 */
#define MAX_SIGBUS_HEAPS 64
static _Atomic(ckpt_heap *) sigbus_heaps[MAX_SIGBUS_HEAPS];
static struct sigaction old_sigbus;
static pthread_mutex_t sigbus_install_lock = PTHREAD_MUTEX_INITIALIZER;
static bool sigbus_installed;

/* Consecutive faults at one address by one thread: a SIGBUS that unprotect
 * does not cure (e.g. a truncated memfd) must go to the old handler instead
 * of looping forever. */
static __thread __attribute__((tls_model("initial-exec"))) uintptr_t last_fault_addr;
static __thread __attribute__((tls_model("initial-exec"))) unsigned last_fault_count;

static void chain_sigbus(int sig, siginfo_t *si, void *uctx)
{
	if (old_sigbus.sa_flags & SA_SIGINFO) {
		if (old_sigbus.sa_sigaction) {
			old_sigbus.sa_sigaction(sig, si, uctx);
			return;
		}
	} else if (old_sigbus.sa_handler != SIG_DFL && old_sigbus.sa_handler != SIG_IGN) {
		old_sigbus.sa_handler(sig);
		return;
	}
	/* Default action: restore it; returning re-executes the faulting
	 * instruction, which faults again and terminates the process with
	 * SIGBUS as it would have without libckpt. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGBUS, &dfl, NULL);
}

static void sigbus_handler(int sig, siginfo_t *si, void *uctx)
{
	int saved_errno = errno;
	uintptr_t addr = (uintptr_t)si->si_addr;

	if (si->si_code == BUS_ADRERR) {
		for (int i = 0; i < MAX_SIGBUS_HEAPS; i++) {
			ckpt_heap *h = atomic_load_explicit(&sigbus_heaps[i], memory_order_acquire);
			if (!h || !ckpt__in_heap(h, (void *)addr))
				continue;
			if (addr == last_fault_addr && ++last_fault_count > 1000)
				break; /* not ours to cure */
			if (addr != last_fault_addr) {
				last_fault_addr = addr;
				last_fault_count = 0;
			}
			uint64_t t0 = ckpt__now_ns();
			atomic_fetch_add_explicit(&h->eng->st.traps, 1, memory_order_relaxed);
			int rc = ckpt__trap(h, ckpt__page_of(h, (void *)addr), true);
			ckpt__hist_add(&h->eng->st, ckpt__now_ns() - t0);
			if (rc == 0) {
				errno = saved_errno;
				return;
			}
			break;
		}
	}
	last_fault_addr = 0;
	chain_sigbus(sig, si, uctx);
	errno = saved_errno;
}

int ckpt__sigbus_register(ckpt_heap *h)
{
	int rc = 0;

	pthread_mutex_lock(&sigbus_install_lock);
	if (!sigbus_installed) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = sigbus_handler;
		/* SA_NODEFER: a heap write from another signal handler that
		 * interrupts ours must fault into us again, not into a blocked
		 * synchronous SIGBUS (which the kernel turns into a kill). */
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, &old_sigbus) != 0) {
			rc = -errno;
			goto out;
		}
		sigbus_installed = true;
	}
	rc = -ENOSPC;
	for (int i = 0; i < MAX_SIGBUS_HEAPS; i++) {
		ckpt_heap *expect = NULL;
		if (atomic_compare_exchange_strong(&sigbus_heaps[i], &expect, h)) {
			rc = 0;
			break;
		}
	}
out:
	pthread_mutex_unlock(&sigbus_install_lock);
	return rc;
}

void ckpt__sigbus_unregister(ckpt_heap *h)
{
	pthread_mutex_lock(&sigbus_install_lock);
	for (int i = 0; i < MAX_SIGBUS_HEAPS; i++) {
		ckpt_heap *expect = h;
		atomic_compare_exchange_strong(&sigbus_heaps[i], &expect, NULL);
	}
	/* The handler stays installed: another library may have chained to it
	 * since, and it passes foreign faults on anyway. */
	pthread_mutex_unlock(&sigbus_install_lock);
}

/* --------------------------------------------------------- handler thread */

static void handle_msgs(ckpt_heap *h, struct uffd_msg *msgs, ssize_t n)
{
	for (ssize_t i = 0; i < n; i++) {
		struct uffd_msg *m = &msgs[i];
		if (m->event != UFFD_EVENT_PAGEFAULT)
			continue;
		void *addr = (void *)(uintptr_t)m->arg.pagefault.address;
		if (!ckpt__in_heap(h, addr))
			continue;
		uint64_t t0 = ckpt__now_ns();
		atomic_fetch_add_explicit(&h->eng->st.traps, 1, memory_order_relaxed);
		int rc = ckpt__trap(h, ckpt__page_of(h, addr), true);
		ckpt__hist_add(&h->eng->st, ckpt__now_ns() - t0);
		if (rc != 0) {
			/* Nothing sensible is left but to let the writer
			 * proceed: wake the thread; it faults again and we
			 * retry. */
			struct uffdio_range r = {
				.start = (uint64_t)(uintptr_t)addr & ~((uint64_t)h->page_size - 1),
				.len = h->page_size};
			ioctl(h->uffd, UFFDIO_WAKE, &r);
			ckpt__log(h, CKPT_LOG_ERROR, "unprotect failed: %s", ckpt_strerror(rc));
		}
	}
}

#define HANDLER_SPIN_NS 100000u /* spin this long after a fault before blocking */

static void *handler_main(void *arg)
{
	ckpt_heap *h = arg;
	struct ckpt__engine *e = h->eng;
	struct uffd_msg msgs[32];
	sigset_t all;

	/* Signals go to the application's threads, not to ours. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	uint64_t last_fault = 0;
	while (!atomic_load(&e->handler_stop)) {
		ssize_t n = read(h->uffd, msgs, sizeof(msgs));
		if (n > 0) {
			handle_msgs(h, msgs, n / (ssize_t)sizeof(msgs[0]));
			last_fault = ckpt__now_ns();
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			break;
		/* Busy-poll while a checkpoint runs, if asked: a blocked
		 * reader costs a wake-up (~40 us on an idle VM) per fault.
		 * Without the flag, still spin briefly after a fault: faults
		 * come in bursts (a thread writing one page after another),
		 * and the next one usually arrives within tens of us. */
		if (atomic_load(&e->active) &&
		    ((h->flags & CKPT_HEAP_BUSY_POLL) || ckpt__now_ns() - last_fault < HANDLER_SPIN_NS)) {
			__builtin_ia32_pause();
			continue;
		}
		struct pollfd pfd[2] = {{h->uffd, POLLIN, 0}, {e->wake_fd, POLLIN, 0}};
		int timeout = (h->flags & CKPT_HEAP_BUSY_POLL) ? 1 : -1;
		poll(pfd, 2, timeout);
	}
	return NULL;
}

int ckpt__handler_start(ckpt_heap *h)
{
	struct ckpt__engine *e = h->eng;
	int rc;

	e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->wake_fd < 0)
		return -errno;
	atomic_store(&e->handler_stop, 0);
	rc = pthread_create(&e->handler, NULL, handler_main, h);
	if (rc) {
		close(e->wake_fd);
		e->wake_fd = -1;
		return -rc;
	}
	e->handler_up = true;
	return 0;
}

void ckpt__handler_stop(ckpt_heap *h)
{
	struct ckpt__engine *e = h->eng;
	uint64_t one = 1;

	if (!e->handler_up)
		return;
	atomic_store(&e->handler_stop, 1);
	if (write(e->wake_fd, &one, sizeof(one)) < 0) {
		/* eventfd write cannot fail short of overflow; poll times
		 * out in busy-poll mode anyway */
	}
	pthread_join(e->handler, NULL);
	close(e->wake_fd);
	e->wake_fd = -1;
	e->handler_up = false;
}

/* ---------------------------------------------------------- discard, API */

void ckpt__track_discard(ckpt_heap *h, size_t first_page, size_t npages)
{
	struct ckpt__engine *e = h->eng;

	/*
	 * Punching a hole changes a page to zeroes without a write fault, so
	 * its pre-image would be lost: never while a checkpoint runs (the
	 * memory is then simply kept).  Otherwise, the pages are marked
	 * unprotected-and-changed so that an incremental checkpoint carries
	 * their new (zero) contents.
	 */
	if (!e || atomic_load(&e->active) || h->backend == CKPT_BACKEND_FORK)
		return;
	for (size_t q = first_page; q < first_page + npages && q < h->npages; q++)
		atomic_fetch_or(&e->pg[q], PG_UNPROT);
	madvise(h->base + (first_page << h->page_shift), npages << h->page_shift, MADV_REMOVE);
}

CKPT_API int ckpt_prepare_write(ckpt_heap *h, void *ptr, size_t len)
{
	struct ckpt__engine *e;
	size_t first, last;

	if (!h || !ptr)
		return -EINVAL;
	if (len == 0)
		return 0;
	if (!ckpt__in_heap(h, ptr) || len > (size_t)(h->base + h->size - (uint8_t *)ptr))
		return -EINVAL;
	if (h->backend == CKPT_BACKEND_FORK)
		return 0;
	e = h->eng;
	first = ckpt__page_of(h, ptr);
	last = ckpt__page_of(h, (uint8_t *)ptr + len - 1);
	for (size_t q = first; q <= last; q++) {
		if (q >= atomic_load(&e->prot_limit))
			break; /* I3: never protected */
		uint8_t s = atomic_load_explicit(&e->pg[q], memory_order_acquire);
		if (s == (PG_IDLE | PG_UNPROT))
			continue;
		int rc = ckpt__trap(h, q, true);
		if (rc)
			return rc;
	}
	return 0;
}
