/*
 * internal.h - what libckpt's source files share and nobody else sees.
 *
 * Names: ckpt__ for internal non-static functions, static for the rest.
 * One mechanism per file, in layers (docs/design.md, "Layers"; each file
 * calls only those below it, tests/sh/test_layers.sh checks it):
 *   restore.c     ckpt_restore*, image info/verify/merge
 *   lazyrestore.c ckpt_restore(CKPT_RESTORE_LAZY): pages served on first touch
 *   heap.c        the composition root: memfd, mappings, uffd registration,
 *                 create/destroy; wires allocator and engine together
 *   checkpoint.c  a checkpoint's life (prepare/cut/wait/stats) and its thread
 *   uffdbackend.c the userfaultfd backends' steps (passes, cut, stream)
 *   forkbackend.c the fork() backend
 *   trap.c        the fault path (handler thread / SIGBUS), ckpt_prepare_write
 *   protect.c     write-protection: passes, the cut's remainder, ckpt__wp_range
 *   pool.c        the bounded pool of pages copied aside, lock-free queues
 *   alloc.c       the in-heap allocator (all metadata inside the heap)
 *   filesink.c    the file/fd sink: io_uring + zstd, atomic publish, chains
 *   image.h/.c    the on-disk image format: encode, decode, validate
 *   probe.c       ckpt_kernel_probe()
 *   util.c        clocks, spin-wait, zero-page test, memfd and uffd opening
 *   error.c       ckpt_strerror(), ckpt_err_name(), ckpt_version(), logging
 *   faultinject.c the fault-injection hook for tests
 */
#ifndef CKPT_INTERNAL_H
#define CKPT_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/types.h>

#include "ckpt.h"
#include "uffd_compat.h"

#define CKPT__HIDDEN __attribute__((visibility("hidden")))

#define CKPT__LIKELY(x) __builtin_expect(!!(x), 1)
#define CKPT__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* A spin-wait hint, portable: PAUSE on x86, YIELD on arm64. */
static inline void ckpt__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* ------------------------------------------------------------- logging */
void ckpt__log(const ckpt_heap *h, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* -------------------------------------------------------------- threads */
/*! ckpt__thread_start() : pthread_create() of a library helper thread that
 *  is born with every signal blocked and named @name (15 characters at most,
 *  "ckpt-..."), so that top -H, gdb and perf tell the library's threads from
 *  the application's.  Both are inherited from the creating thread, which
 *  carries them only around the create: there is no window in which an
 *  application handler can run on the new thread, nor one in which it shows
 *  the application's name (naming it after the create left one, as long as
 *  the creator was preempted: seen under CI's load).
 *  @return 0 or -errno. */
static inline int ckpt__thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	char mine[16] = "";
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	bool named = prctl(PR_GET_NAME, mine) == 0 && prctl(PR_SET_NAME, name) == 0;
	int rc = pthread_create(t, NULL, fn, arg);
	if (named)
		prctl(PR_SET_NAME, mine);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0 && !named)
		pthread_setname_np(*t, name); /* best effort: a name is a hint */
	return -rc;
}

/* ------------------------------------------------------ util.c (bottom) */
uint64_t ckpt__now_ns(void);      /* CLOCK_MONOTONIC, async-signal-safe */
uint64_t ckpt__realtime_ns(void); /* CLOCK_REALTIME */
/* spin-wait for a short wait (a memcpy, a pool slot), sleeping after 64 spins */
void ckpt__pause(unsigned *spins);
bool ckpt__page_is_zero(const void *p, size_t len);
/* Sets @buf (may be NULL) printf-style and returns @code: the reason that
 * goes with an error (an image's damage, the allocator's deep check). */
int ckpt__errf(char *buf, size_t len, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* CKPT_E_RANGE unless [base, base+size) is page-aligned user address space */
int ckpt__check_range(uint64_t base, uint64_t size, uint64_t page_size);
int ckpt__memfd_create(const char *name, size_t size, bool hugetlb, int *fd_out);
/* one way of opening a userfaultfd each: the fd or -errno */
int ckpt__uffd_syscall(int flags);
int ckpt__uffd_dev(int flags);
/*! ckpt__uffd_open() : a userfaultfd (O_CLOEXEC | O_NONBLOCK, by the syscall or
 *  /dev/userfaultfd) with UFFDIO_API done for @features; @offered (may be
 *  NULL) gets every feature the kernel offers.  @return 0, -EPERM when no way
 *  of opening works, CKPT_E_KERNEL when a feature is missing. */
int ckpt__uffd_open(uint64_t features, uint64_t *offered, int *out);

/* ------------------------------------------------------------ allocator */

/*
 * The heap starts with the allocator's header page(s).  The allocator keeps
 * all of its state inside the heap (offsets from the heap base, never
 * process pointers into anything else), so that a restored heap is usable
 * without any rebuilding.  Its lock lives in struct ckpt_heap (process
 * memory): a lock word inside the heap could be captured "held" by a
 * checkpoint.
 *
 * The allocator owns the heap's extent: pages [0, extent) may have been
 * handed out and hold data; pages at or past the extent have never been
 * handed out and are zero.  The extent only grows.  It is read by the
 * checkpoint engine with alloc_lock held.
 */
int ckpt__alloc_format(ckpt_heap *h); /* fresh, all-zero heap */
/* restored heap: validate the header, free what an interrupted realloc had
 * allocated (the image was cut in the middle of it) */
int ckpt__alloc_open(ckpt_heap *h);
size_t ckpt__alloc_extent_pages(ckpt_heap *h); /* caller holds alloc_lock */
/* The checkpoint's cut: returns with every allocator update excluded (all
 * cache locks and alloc_lock held; the extent is stable).  Cost: NCACHE + 1
 * uncontended locks. */
void ckpt__alloc_quiesce(ckpt_heap *h);
void ckpt__alloc_resume(ckpt_heap *h);
/* After a checkpoint has finished (none active): gives back, through
 * the heap's discard hook, the freed runs it deferred.  Takes alloc_lock. */
void ckpt__alloc_release_deferred(ckpt_heap *h);
/* Walks all allocator state and checks every invariant (O(extent); tests,
 * offline checks).  0 or CKPT_E_CORRUPT with a reason in @why. */
int ckpt__alloc_check(ckpt_heap *h, char *why, size_t why_len);

/*
 * ckpt__heap_adopt() : builds a heap around a memfd that already holds a
 * heap's pages (restore): maps it at @base with MAP_FIXED_NOREPLACE, sets up
 * the backend, opens the allocator.  On success the heap owns @memfd; on
 * failure nothing is mapped and the caller still owns @memfd.
 */
int ckpt__heap_adopt(int memfd, uint64_t base, uint64_t size, uint32_t page_size,
		     const struct ckpt_heap_opts *opts, ckpt_heap **out);

/* Registers the heap's range with its uffd for write-protect faults. */
int ckpt__heap_register_wp(ckpt_heap *h);

/* ------------------------------------------------ lazy restore (lazyrestore.c) */
struct ckpt__lazy;
/*
 * What the heap and the engine may ask of a lazy restore still filling the
 * heap.  They call through this table, never lazyrestore.c's symbols: the
 * restore layer sits above the heap (docs/design.md, "Layers").
 */
struct ckpt__lazy_ops {
	int (*attach)(struct ckpt__lazy *lz, ckpt_heap *h); /* serve h's missing pages */
	void (*detach)(struct ckpt__lazy *lz);  /* stop serving; the owner frees it */
	void (*release)(struct ckpt__lazy *lz); /* detach and free (heap destroy) */
	/* Drives the heap to full residency and hands its range to the
	 * write-protect uffd; the engine calls it before a checkpoint (whose
	 * writer reads the memfd directly and would see holes).  0, or
	 * CKPT_E_CORRUPT if a block failed its checks. */
	int (*make_resident)(ckpt_heap *h);
};
/* ckpt_restore() with CKPT_RESTORE_LAZY of a shmem heap (restore.c decides
 * whether lazy restore applies and verifies first if asked): 0 or an error. */
int ckpt__lazy_restore(const char *path, const struct ckpt_restore_opts *o, ckpt_heap **out);
/* Like ckpt__heap_adopt() with the range served by @lazy's uffd (heap.c
 * calls @ops->attach once the range is mapped, instead of registering
 * write-protection). */
int ckpt__heap_adopt_lazy(int memfd, uint64_t base, uint64_t size, uint32_t page_size,
			  const struct ckpt_heap_opts *opts, struct ckpt__lazy *lazy,
			  const struct ckpt__lazy_ops *ops, ckpt_heap **out);

/* ------------------------------------------------ the engine (checkpoint.c) */
/* After a restore: the heap continues the lineage of the image it came
 * from (its next checkpoint gets generation + 1; it is a full image). */
void ckpt__heap_set_lineage(ckpt_heap *h, uint64_t generation, const uint8_t id[16]);

/* ---------------------------------------------------------- file sink */

/*
 * ckpt__file_sink_open() : a sink that writes an image to @dest (a path,
 * published atomically, or an fd) — filesink.c.  @last_id / @last_gen describe
 * the image the heap last wrote to the same path (for incrementals).
 * *bytes_written is updated as bytes reach the destination.  @log_heap
 * (may be NULL) hears, once, that io_uring is unavailable and plain writes
 * are used.  The sink's end() frees everything it allocated, whatever the
 * status.
 */
int ckpt__file_sink_open(const struct ckpt_dest *dest, const struct ckpt_begin_opts *opts,
			 _Atomic uint64_t *bytes_written, ckpt_heap *log_heap, struct ckpt_sink *out);

/* ckpt__file_sink_prepare() : runs the slow set-up of a sink opened by
 * ckpt__file_sink_open() (temp file, parent link, buffers, io_uring) before
 * the checkpoint's cut.  @info has base, heap_size, page_size, generation,
 * id, flags and parent_id; begin() later gets the rest.  0 or -errno. */
int ckpt__file_sink_prepare(const struct ckpt_sink *sink, const struct ckpt_sink_info *info);

/* --------------------------------------------------------------- heap */

struct ckpt__engine; /* checkpoint.c */

#define CKPT__ALLOC_NCACHE 16 /* power of two; part of the in-heap format */

struct ckpt_heap {
	/* immutable after create */
	uint8_t *base;
	size_t size;
	size_t page_size;
	unsigned page_shift;
	size_t npages;
	int memfd;
	uint8_t *alias;     /* second, never-registered mapping of the memfd: the
			     * writer reads pages here without trapping */
	int uffd;           /* -1 for the fork backend */
	enum ckpt_backend backend;
	unsigned flags;     /* CKPT_HEAP_* */
	struct ckpt_heap_opts opts;
	char name[64];
	char app_tag[CKPT_APP_TAG_MAX]; /* opts.app_tag points here */
	_Atomic bool plain_io_said; /* the io_uring fallback was logged (filesink.c) */

	/* allocator (alloc.c): its locks and flags live here, never in the
	 * heap, where a checkpoint could capture a lock word held */
	pthread_mutex_t alloc_lock; /* runs, tree, top, root, large blocks */
	struct {
		_Atomic uint32_t word; /* 0 free, 1 held (alloc.c: cache locks) */
		char pad[124];         /* no two words share a cache line */
	} alloc_cache[CKPT__ALLOC_NCACHE]; /* per-CPU small-object caches */
	bool alloc_deferred; /* freed runs the engine kept are recorded (under alloc_lock) */

	/* the checkpoint engine, trap.c + checkpoint.c */
	struct ckpt__engine *eng;

	/* lazy restore still filling the heap (NULL otherwise), lazyrestore.c */
	struct ckpt__lazy *lazy;
	const struct ckpt__lazy_ops *lazy_ops;

	/* the allocator offers freed page runs here (the engine decides; heap.c
	 * wires ckpt__track_discard for the userfaultfd backends): true when
	 * given back.  NULL (fork backend, bare test heaps): never given back */
	bool (*discard)(ckpt_heap *h, size_t first_page, size_t npages);
};

static inline size_t ckpt__page_of(const ckpt_heap *h, const void *p)
{
	return (size_t)((const uint8_t *)p - h->base) >> h->page_shift;
}

static inline bool ckpt__in_heap(const ckpt_heap *h, const void *p)
{
	return (const uint8_t *)p >= h->base && (const uint8_t *)p < h->base + h->size;
}

#endif /* CKPT_INTERNAL_H */
