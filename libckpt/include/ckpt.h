/*
 * ckpt.h - libckpt: fork-less checkpoints for in-memory databases.
 *
 * A libckpt heap is a shmem region (a memfd mapped MAP_SHARED at a fixed
 * address).  The application allocates its data from it (ckpt_alloc() ...),
 * and calls ckpt_begin() to take a checkpoint: from that instant the image
 * being written is the heap exactly as it was, while the application keeps
 * writing.  ckpt_restore() maps an image back at the same address, so
 * pointers inside the heap stay valid.
 *
 * Conventions (see docs/design.md):
 *  - Functions return 0 (or a documented non-negative value) on success and a
 *    negative errno-style code on failure: -ENOMEM, -EBUSY, ... or one of the
 *    library codes CKPT_E_* below.  ckpt_strerror() describes any of them.
 *  - Handles are opaque; destroy functions accept NULL.
 *  - The library never aborts, exits or prints; it reports through return
 *    codes and, if set, the log callback in struct ckpt_heap_opts.
 *  - Every file descriptor it creates is O_CLOEXEC.
 *  - Images are written and read through io_uring where it can be set up;
 *    where it cannot (a container's seccomp profile, sysctl
 *    kernel.io_uring_disabled) plain pwrite(2)/pread(2) are used instead,
 *    and the log callback says so once per heap (and once per restore).
 *    ckpt_kernel_probe() reports which (struct ckpt_kernel_info.io_uring).
 *  - The writer, fault-handler, compression and restore threads block every
 *    signal: application handlers never run on them.
 *  - Option structs start with their size so that fields can be added later:
 *    always initialise them with the matching *_init() function.
 *
 * CAVEATS
 *  - Threads: any number of threads may read and write the heap at any time,
 *    including while a checkpoint runs.  While ckpt_begin() runs, no thread
 *    may be in the middle of an update that must be atomic for the database
 *    (a database holds its own write lock around ckpt_begin()).  Allocator
 *    calls are safe at any time: ckpt_begin() takes every allocator lock
 *    (the per-CPU caches' and the global one).
 *  - Syscalls that write into the heap (read(2), recv(2), pread(2), ...):
 *    in CKPT_TRAP_THREAD mode they block until libckpt has saved the page and
 *    then succeed.  In CKPT_TRAP_SIGBUS mode the kernel does not deliver a
 *    signal for a kernel-mode write: the syscall fails with EFAULT.  Call
 *    ckpt_prepare_write() on the destination range (under the same lock that
 *    keeps ckpt_begin() out) before such a syscall.
 *  - Signals (CKPT_TRAP_SIGBUS): libckpt installs a SIGBUS handler
 *    (SA_SIGINFO | SA_NODEFER) when the first SIGBUS-mode heap is created.
 *    A SIGBUS that is not a write-protect fault in a libckpt heap is passed
 *    to the handler that was installed before (or the default action).  Do
 *    not block SIGBUS in threads that write the heap.  If the application
 *    installs its own SIGBUS handler later it must chain to libckpt's.
 *  - fork(2): the heap mapping is MADV_DONTFORK for the userfaultfd backends:
 *    a child process does not see the heap (a child's writes would bypass the
 *    write protection and corrupt a checkpoint).  exec'd children are
 *    unaffected.  The fork backend (CKPT_BACKEND_FORK) forks by itself.
 *  - mremap(2), munmap(2), madvise(MADV_DONTNEED / MADV_REMOVE) or
 *    fallocate(PUNCH_HOLE) on heap memory by the application are not
 *    supported: they change pages without a write fault.
 *  - The heap's address range is fixed: ckpt_restore() needs the same range
 *    free in the restoring process.
 *  - Only memory handed out by the allocator is checkpointed: the image
 *    covers the allocator's extent (ckpt_heap_used()); heap memory the
 *    application writes without allocating it is not saved.
 *  - The sink callbacks must not write into the heap (they run on the
 *    writer thread, which the fault path may be waiting for).
 *  - Writes that bypass the page tables are not seen by write-protection and
 *    can reach a checkpoint's image half-done or not at all: io_uring fixed
 *    (registered) buffers, RDMA memory regions, vmsplice(2)'d pages, and an
 *    O_DIRECT read (or any DMA) into the heap still in flight when
 *    ckpt_begin() runs.  Finish such I/O before ckpt_begin() and do not
 *    start it while a checkpoint runs; or keep those buffers outside the
 *    heap.
 *  - Lazy restore (CKPT_RESTORE_LAZY): until the heap is resident, the first
 *    touch of a page waits for its block to load (a kernel-mode access, e.g.
 *    read(2) into the heap, waits too).  A block found damaged then raises
 *    SIGBUS in any thread touching its pages (si_code BUS_MCEERR_AR with
 *    UFFDIO_POISON, else SI_TKILL), which libckpt's own SIGBUS handler
 *    passes on: do not catch it and carry on reading the heap.  The heap's
 *    first ckpt_prepare() / ckpt_begin() loads whatever is left before it
 *    pauses anything.
 */
#ifndef CKPT_H
#define CKPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(CKPT_STATIC_BUILD)
#define CKPT_API __attribute__((visibility("default")))
#else
#define CKPT_API
#endif

#define CKPT_VERSION_MAJOR 0
#define CKPT_VERSION_MINOR 1
#define CKPT_VERSION_PATCH 0
#define CKPT_VERSION_NUMBER \
	(CKPT_VERSION_MAJOR * 10000 + CKPT_VERSION_MINOR * 100 + CKPT_VERSION_PATCH)
#define CKPT_VERSION_STRING "0.1.0"

/*! ckpt_version() : @return the library's version number, in the form of
 *  CKPT_VERSION_NUMBER, and, if @str is not NULL, its string form in *str. */
CKPT_API int ckpt_version(const char **str);

/* ---------------------------------------------------------------- errors */

/* Library-specific error codes: a reserved negative range well away from
 * errno values.  Everything else a function returns is -errno. */
#define CKPT_E_FIRST (-4096)
enum ckpt_error {
	CKPT_E_KERNEL = -4096,   /* the running kernel lacks a behaviour libckpt needs */
	CKPT_E_NOTIMAGE = -4095, /* the file is not a libckpt image */
	CKPT_E_VERSION = -4094,  /* image format version not supported */
	CKPT_E_CORRUPT = -4093,  /* checksum or structure check failed */
	CKPT_E_TRUNCATED = -4092,/* image ends early */
	CKPT_E_PAGESIZE = -4091, /* image page size differs from this system's */
	CKPT_E_ADDRINUSE = -4090,/* heap base address range is not free */
	CKPT_E_PARENT = -4089,   /* incremental image's parent missing or mismatched */
	CKPT_E_CANCELED = -4088, /* checkpoint was cancelled */
	CKPT_E_FAILED = -4087,   /* heap is in a failed state after an unrecoverable error */
	CKPT_E_RANGE = -4086,    /* address range outside the user address space */
	CKPT_E_APPTAG = -4085,   /* image was made by another application build (ckpt_heap_opts.app_tag) */
	CKPT_E_LAST = -4085,
};

/*! ckpt_strerror() : @return a static, human-readable description of @err,
 *  a negative errno or CKPT_E_* code.  Thread-safe, async-signal-safe. */
CKPT_API const char *ckpt_strerror(int err);

/*! ckpt_err_name() : @return the symbolic name of @err ("ENOMEM",
 *  "CKPT_E_CORRUPT"), or "UNKNOWN". Thread-safe, async-signal-safe. */
CKPT_API const char *ckpt_err_name(int err);

/* ---------------------------------------------------------------- kernel */

/* What the running kernel offers, as found by ckpt_kernel_probe(). */
struct ckpt_kernel_info {
	char release[65];          /* uname -r */
	uint64_t uffd_features;    /* features offered by UFFDIO_API */
	unsigned open_syscall : 1; /* userfaultfd(2) works for us */
	unsigned open_dev : 1;     /* /dev/userfaultfd + USERFAULTFD_IOC_NEW works */
	unsigned user_mode_only : 1; /* UFFD_USER_MODE_ONLY accepted */
	unsigned wp_shmem : 1;     /* UFFD_FEATURE_WP_HUGETLBFS_SHMEM (required) */
	unsigned wp_unpopulated : 1; /* UFFD_FEATURE_WP_UNPOPULATED (6.4, optional) */
	unsigned wp_async : 1;     /* UFFD_FEATURE_WP_ASYNC (6.7, optional) */
	unsigned pagemap_scan : 1; /* PAGEMAP_SCAN ioctl (6.7, optional) */
	unsigned sigbus : 1;       /* UFFD_FEATURE_SIGBUS (needed by CKPT_TRAP_SIGBUS) */
	unsigned canary_ok : 1;    /* live canary: marker survives zap + mprotect round trip */
	unsigned swap_on : 1;      /* some swap is active */
	unsigned io_uring : 1;     /* io_uring can be set up (else images use pread/pwrite, slower) */
	uint64_t canary_ns;        /* how long the canary took */
	long hugetlb_free;         /* free 2 MiB hugetlb pages (-1 unknown) */
	int verdict;               /* 0: safe for libckpt, else the CKPT_E_KERNEL / -errno reason */
	char reason[160];          /* what failed, for humans; empty when verdict == 0 */
};

/*! ckpt_kernel_probe() : inspects the running kernel (about a millisecond).
 *  @info : out, filled even on failure.
 *  @return 0 when the kernel keeps every behaviour libckpt relies on,
 *          CKPT_E_KERNEL when a required behaviour is missing (info->reason
 *          says which), -EPERM when userfaultfd cannot be opened by this
 *          process.  Thread-safe. */
CKPT_API int ckpt_kernel_probe(struct ckpt_kernel_info *info);

/* ------------------------------------------------------------------ heap */

typedef struct ckpt_heap ckpt_heap;

/* How write faults reach libckpt during a checkpoint. */
enum ckpt_backend {
	CKPT_TRAP_THREAD = 0, /* a handler thread reads the userfaultfd (default) */
	CKPT_TRAP_SIGBUS = 1, /* the faulting thread handles it in a SIGBUS handler */
	CKPT_BACKEND_FORK = 2,/* fork(): the child writes its copy-on-write view */
};

/* Heap flags. */
#define CKPT_HEAP_HUGETLB (1u << 0)     /* back the heap with 2 MiB hugetlb pages */
#define CKPT_HEAP_INCREMENTAL (1u << 1) /* keep saved pages protected: enables incremental checkpoints */
#define CKPT_HEAP_BUSY_POLL (1u << 2)   /* CKPT_TRAP_THREAD: busy-poll the uffd while a checkpoint runs */
#define CKPT_HEAP_NO_PROBE (1u << 3)    /* skip the kernel probe (tests of the probe itself only) */

#define CKPT_LOG_ERROR 0
#define CKPT_LOG_WARN 1
#define CKPT_LOG_INFO 2
#define CKPT_LOG_DEBUG 3

struct ckpt_heap_opts {
	size_t struct_size;   /* sizeof(struct ckpt_heap_opts), set by ckpt_heap_opts_init() */
	size_t size;          /* bytes to reserve; rounded up to the page size (default 1 GiB) */
	void *base;           /* fixed address, or NULL for CKPT_DEFAULT_BASE */
	unsigned flags;       /* CKPT_HEAP_* */
	enum ckpt_backend backend;
	size_t pool_bytes;    /* cap on memory holding pages copied aside (default 64 MiB) */
	unsigned fault_around;/* pages saved per trap, power of two, 1 = off (default CKPT_DEFAULT_FAULT_AROUND;
			       * always 1 with CKPT_HEAP_HUGETLB) */
	unsigned full_every;  /* with CKPT_HEAP_INCREMENTAL: force a full image every N checkpoints (0 = never) */
	const char *name;     /* memfd name, for /proc/PID/maps (default "libckpt") */
	void (*log)(void *arg, int level, const char *msg); /* optional */
	void *log_arg;
	int writer_nice;      /* the writer thread runs this many nice steps below the thread that
			       * started it, 0..19 (default CKPT_DEFAULT_WRITER_NICE): its work is
			       * background work, the application's comes first */
	/* Application tag (optional, at most CKPT_APP_TAG_MAX - 1 bytes): a build
	 * id or schema version the application chooses.  Every image of the heap
	 * records it, and ckpt_restore() refuses an image whose tag differs from
	 * the one in its heap options (CKPT_E_APPTAG): pointers from the heap to
	 * code or static data (function pointers, vtables, strings in the binary,
	 * other libraries under ASLR) are only valid in the build that made them,
	 * and data layouts change with the schema.  NULL or "" means no tag; a
	 * tagged image then does not restore either. */
	const char *app_tag;
};
#define CKPT_APP_TAG_MAX 64

/* (overridable at build time only for sanitizer builds whose shadow layout
 * excludes this range: make tsan) */
#ifndef CKPT_DEFAULT_BASE
#define CKPT_DEFAULT_BASE ((void *)0x5a0000000000ull) /* high, rarely used range */
#endif
#define CKPT_DEFAULT_POOL_BYTES (64ull << 20)
#define CKPT_DEFAULT_FAULT_AROUND 16
#define CKPT_DEFAULT_WRITER_NICE 10

/*! ckpt_heap_opts_init() : fills @opts with defaults (1 GiB, default base,
 *  CKPT_TRAP_THREAD, 64 MiB pool). */
CKPT_API void ckpt_heap_opts_init(struct ckpt_heap_opts *opts);

/*! ckpt_heap_create() : creates a heap.
 *  @opts : in, may be NULL for defaults.
 *  @out  : out, the heap on success, NULL on failure.
 *  @return 0, or
 *    -EINVAL (bad option), -ENOMEM, -EEXIST / CKPT_E_ADDRINUSE (range taken),
 *    CKPT_E_KERNEL (kernel fails the probe; the log names what failed; use
 *    CKPT_BACKEND_FORK on such kernels), -EPERM (userfaultfd not allowed),
 *    -ENOSPC (hugetlb pages unavailable).
 *  Thread-safe. */
CKPT_API int ckpt_heap_create(const struct ckpt_heap_opts *opts, ckpt_heap **out);

/*! ckpt_heap_destroy() : cancels a running checkpoint, unmaps the heap and
 *  frees everything.  @heap may be NULL.  No other call on @heap may run
 *  concurrently or follow. */
CKPT_API void ckpt_heap_destroy(ckpt_heap *heap);

/*! ckpt_heap_base() / ckpt_heap_size() : the heap's address range. */
CKPT_API void *ckpt_heap_base(const ckpt_heap *heap);
CKPT_API size_t ckpt_heap_size(const ckpt_heap *heap);
/*! ckpt_heap_page_size() : the heap's page size (4 KiB, or 2 MiB with hugetlb). */
CKPT_API size_t ckpt_heap_page_size(const ckpt_heap *heap);
/*! ckpt_heap_used() : bytes of the heap the allocator has ever handed out
 *  (its high-water extent: what a full checkpoint covers). */
CKPT_API size_t ckpt_heap_used(const ckpt_heap *heap);

/* ------------------------------------------------------------- allocator */

/* All allocator metadata lives inside the heap, so a restored heap is usable
 * at once.  All functions are thread-safe, none async-signal-safe. */

/*! ckpt_alloc() : @return a 16-byte aligned block of at least @size bytes
 *  (@size 0 gives a 16-byte block), or NULL when the heap is full (nothing
 *  is damaged; errno = ENOMEM). */
CKPT_API void *ckpt_alloc(ckpt_heap *heap, size_t size);
/*! ckpt_calloc() : as ckpt_alloc() for @n * @size zeroed bytes; NULL with
 *  errno = ENOMEM also when the product overflows. */
CKPT_API void *ckpt_calloc(ckpt_heap *heap, size_t n, size_t size);
/*! ckpt_aligned_alloc() : a block of at least @size bytes whose address is a
 *  multiple of @alignment, a power of two (16 or less: as ckpt_alloc(); 32:
 *  from the small classes; 64 up to the page size and beyond: a whole run
 *  of 4 KiB granules, so small blocks with large alignments cost at least
 *  4 KiB each).  Free it with ckpt_free(); ckpt_realloc() keeps only 16-byte
 *  alignment.  @return the block, or NULL with errno = EINVAL (@alignment 0
 *  or not a power of two, @heap NULL) or ENOMEM (heap full, or @alignment
 *  or @size larger than the heap).  Thread-safe. */
CKPT_API void *ckpt_aligned_alloc(ckpt_heap *heap, size_t alignment, size_t size);
/*! ckpt_realloc() : like realloc(3): NULL @ptr allocates; @size 0 frees
 *  @ptr and returns NULL; on failure NULL is returned and @ptr is untouched
 *  (errno = ENOMEM, or EINVAL when @ptr is not a live block of @heap).
 *  Resizes in place when it can (large blocks grow into free neighbours).
 *  When it moves the block it copies without holding a lock; a checkpoint
 *  taken meanwhile restores with the old block only (the new one, which
 *  the caller has not seen, is freed when the image is opened). */
CKPT_API void *ckpt_realloc(ckpt_heap *heap, void *ptr, size_t size);
/*! ckpt_free() : @ptr may be NULL.  A pointer that is not a live block of
 *  @heap (foreign, interior, already freed) is ignored without damage; a
 *  block freed and handed out again cannot be told from a live one. */
CKPT_API void ckpt_free(ckpt_heap *heap, void *ptr);
/*! ckpt_usable_size() : @return the usable size of the block at @ptr, or 0
 *  when @ptr is not a live block of @heap. */
CKPT_API size_t ckpt_usable_size(ckpt_heap *heap, const void *ptr);
/*! ckpt_root_set() / ckpt_root_get() : the one pointer an application keeps
 *  in the heap to find its data again after restore.  @ptr must be NULL or
 *  point into the heap (-EINVAL otherwise). */
CKPT_API int ckpt_root_set(ckpt_heap *heap, void *ptr);
CKPT_API void *ckpt_root_get(ckpt_heap *heap);

/* What the allocator holds (ckpt_alloc_stats()). */
struct ckpt_alloc_stats {
	size_t struct_size;    /* sizeof(struct ckpt_alloc_stats), set by the caller */
	uint64_t live_bytes;   /* usable bytes of live blocks (what ckpt_usable_size()
				* of every live block adds up to) */
	uint64_t live_blocks;  /* blocks allocated and not freed */
	uint64_t extent_bytes; /* high-water mark, = ckpt_heap_used(): what a full
				* checkpoint covers */
	uint64_t heap_size;    /* bytes reserved, = ckpt_heap_size() */
};

/*! ckpt_alloc_stats() : the allocator's counters, exact at the instant of the
 *  call (a snapshot consistent with every allocator call before or after it).
 *  They live in the heap, so a restored heap reports the blocks that were
 *  live at its checkpoint.
 *  @st : out; set st->struct_size first (fields past it are not written;
 *        st->struct_size is set to the bytes written).
 *  @return 0, or -EINVAL (@heap or @st NULL, struct_size 0).
 *  Thread-safe; not async-signal-safe. */
CKPT_API int ckpt_alloc_stats(ckpt_heap *heap, struct ckpt_alloc_stats *st);

/* ----------------------------------------------------------- checkpoints */

/* What a sink is told when a checkpoint starts. */
struct ckpt_sink_info {
	uint64_t base;        /* heap base address */
	uint64_t heap_size;   /* bytes reserved */
	uint32_t page_size;
	uint32_t flags;       /* CKPT_SINK_INCREMENTAL */
	uint64_t npages;      /* pages in the checkpoint's extent; pages past it are zero */
	uint64_t pages_to_emit; /* pages the stream will carry (all of the extent, or the dirty set) */
	uint64_t generation;  /* 1 for the first checkpoint of a heap, +1 each time */
	uint8_t id[16];       /* this image's identity */
	uint8_t parent_id[16];/* with CKPT_SINK_INCREMENTAL: the image this one amends */
	uint64_t created_ns;  /* CLOCK_REALTIME at ckpt_begin() */
	uint64_t root;        /* heap root pointer at ckpt_begin() (informational) */
	char app_tag[CKPT_APP_TAG_MAX]; /* the heap's ckpt_heap_opts.app_tag, NUL-terminated ("" if none) */
};
#define CKPT_SINK_INCREMENTAL (1u << 0)

/* A consumer of a checkpoint's page stream.  The callbacks run on the
 * checkpoint's writer thread (or the fork backend's reader thread), one at a
 * time, never in a fault handler.  Pages arrive in any order, each exactly
 * once; a NULL @data means @npages zero pages.  Any negative return aborts
 * the checkpoint with that code; end() is then called with it. */
struct ckpt_sink {
	int (*begin)(void *arg, const struct ckpt_sink_info *info);
	int (*pages)(void *arg, uint64_t first_page, uint32_t npages, const void *data);
	/* status 0: the stream is complete, make it durable; else abort and
	 * discard.  The return value of end(arg, 0) is the checkpoint's result. */
	int (*end)(void *arg, int status);
	void *arg;
};

enum ckpt_dest_kind {
	CKPT_DEST_PATH = 1, /* an image file, published atomically (rename) */
	CKPT_DEST_FD = 2,   /* an fd (pipe, socket, file): a full image streamed as is */
	CKPT_DEST_SINK = 3, /* an application sink */
};

struct ckpt_dest {
	enum ckpt_dest_kind kind;
	const char *path;              /* CKPT_DEST_PATH */
	int fd;                        /* CKPT_DEST_FD; not closed by libckpt */
	const struct ckpt_sink *sink;  /* CKPT_DEST_SINK; must outlive the checkpoint */
};

/* ckpt_begin() flags */
#define CKPT_BEGIN_FULL (1u << 0)   /* a full image even when an incremental is possible */
/* CKPT_BEGIN_DIRECT: the image is written O_DIRECT where the filesystem
 * supports it.  No page-cache pages are allocated, filled and written
 * back for the image: for big heaps the steadier way to device speed
 * (bench/run.sh measures both against dd), and the database's own page
 * cache is not evicted.  The image is then not in the page cache
 * either: a restore soon after reads it from the device. */
#define CKPT_BEGIN_DIRECT (1u << 1)
#define CKPT_BEGIN_NO_FSYNC (1u << 2) /* skip fsync (tests, throwaway images) */

struct ckpt_begin_opts {
	size_t struct_size;  /* sizeof(struct ckpt_begin_opts) */
	unsigned flags;      /* CKPT_BEGIN_* */
	int zstd_level;      /* 0 = stored (default), 1..19 = zstd level */
	unsigned threads;    /* zstd: compression worker threads, 0 = one per core (at most 8);
			      * the image is the same whatever the number */
};

/*! ckpt_begin_opts_init() : defaults: stored pages, fsync on. */
CKPT_API void ckpt_begin_opts_init(struct ckpt_begin_opts *opts);

/*
 * Two ways to take a checkpoint:
 *
 *  - ckpt_prepare() + ckpt_cut(), for servers: ckpt_prepare() returns at
 *    once; a background thread opens the destination, warms the pool and
 *    write-protects the heap in passes while the application keeps writing
 *    (a page written after its pass is only re-opened, never copied: there
 *    is no checkpoint yet).  When few pages are left open the checkpoint is
 *    ready: ckpt_ready() returns 1 and ckpt_event_fd() becomes readable.
 *    The application then calls ckpt_cut() at a quiescent moment (an event
 *    loop between two commands, a database under its write lock): the cut
 *    protects the few pages left, and its duration is the only pause; it
 *    does not grow with the heap.
 *  - ckpt_begin(), the one call: it prepares without passes and cuts at
 *    once, protecting the whole heap in its pause (~10 ms per GiB).
 */

/*! ckpt_prepare() : starts preparing a checkpoint of @heap into @dest and
 *  returns at once.  @opts may be NULL.  @generation: out (may be NULL), the
 *  generation the checkpoint's image will have (for ckpt_wait_gen()).
 *  Until ckpt_cut(), nothing is copied and the heap's contents are not
 *  fixed; the checkpoint's instant is the cut.  A preparation that fails
 *  (e.g. the destination cannot be created) ends the checkpoint: ckpt_ready()
 *  then returns -ENOENT and ckpt_wait() the error.
 *  @return 0, or -EBUSY (a checkpoint is being prepared or runs), -EINVAL,
 *  -EBADF, -ENOMEM, CKPT_E_FAILED (the heap takes no more checkpoints), or
 *  the error of opening the destination.
 *  Thread-safe against allocator calls and heap writes. */
CKPT_API int ckpt_prepare(ckpt_heap *heap, const struct ckpt_dest *dest,
			  const struct ckpt_begin_opts *opts, uint64_t *generation);

/*! ckpt_ready() : @return 1 when the prepared checkpoint is ready to cut,
 *  0 while it is still being prepared, -ENOENT when there is nothing to cut
 *  (none prepared, already cut, or its preparation failed or was cancelled:
 *  ckpt_wait() gives its result).  Thread-safe. */
CKPT_API int ckpt_ready(ckpt_heap *heap);

/*! ckpt_event_fd() : @return an fd (eventfd, non-blocking, close-on-exec,
 *  owned by the heap: do not close it) that becomes readable when a
 *  prepared checkpoint is ready to cut and when a checkpoint ends (read 8
 *  bytes to clear it), for poll/epoll; then ask ckpt_ready() / ckpt_poll().
 *  Thread-safe. */
CKPT_API int ckpt_event_fd(ckpt_heap *heap);

/*! ckpt_cut() : the checkpoint's instant.  Protects the pages the
 *  preparation left open and returns; the image will hold the heap as it
 *  was at that moment.  The caller guarantees that no thread is in the
 *  middle of an update during the call (it is the pause).  Called before
 *  the checkpoint is ready, it waits for the destination to be set up and
 *  protects whatever is left (a longer pause).  Pages are then written in
 *  the background; see ckpt_poll(), ckpt_wait().
 *  @return 0, -ENOENT (nothing prepared, or its preparation failed:
 *  ckpt_wait() gives that error), or the error of a failed write-protect
 *  (the heap is then left unprotected and the checkpoint fails).
 *  Thread-safe; asynchronous signals are blocked on the calling thread for
 *  its duration. */
CKPT_API int ckpt_cut(ckpt_heap *heap);

/*! ckpt_begin() : takes a checkpoint of @heap into @dest in one call:
 *  prepares it (without protection passes: this thread waits for the
 *  destination to be set up) and cuts it.  The instant this returns 0 is
 *  the checkpoint.  The caller guarantees that no thread is in the middle
 *  of an update during the call.  @opts may be NULL.
 *  @return 0, or -EBUSY (a checkpoint is being prepared or runs), -EINVAL,
 *  -ENOMEM, CKPT_E_FAILED, the error of a failed write-protect (the heap is
 *  then left unprotected), or the error of opening the destination / the
 *  sink's begin().
 *  Thread-safe against allocator calls and heap writes. */
CKPT_API int ckpt_begin(ckpt_heap *heap, const struct ckpt_dest *dest,
			const struct ckpt_begin_opts *opts);

/*! ckpt_poll() : progress of the running (or last) checkpoint.
 *  @done, @total : out (may be NULL), bytes of pages emitted / to emit.
 *  @return 1 while running, 0 when finished (ckpt_wait() gives the result
 *  without blocking), -ENOENT when no checkpoint was started. Thread-safe. */
CKPT_API int ckpt_poll(ckpt_heap *heap, uint64_t *done, uint64_t *total);

/*! ckpt_wait() : waits for the latest checkpoint to finish.
 *  @return its result: 0 (image complete and durable), CKPT_E_CANCELED, or
 *  the first error (e.g. -ENOSPC, -EIO, CKPT_E_FAILED).  On error the heap
 *  is unprotected and fully usable, the previous image is intact, and the
 *  next checkpoint is full.  -ENOENT when no checkpoint was started;
 *  -EAGAIN when it is prepared and ready but not cut (it would wait for a
 *  ckpt_cut() forever).  Thread-safe. */
CKPT_API int ckpt_wait(ckpt_heap *heap);

/*! ckpt_wait_gen() : as ckpt_wait() for the checkpoint of @generation (from
 *  ckpt_prepare()), never another one's result.  @return its result,
 *  -EAGAIN as for ckpt_wait(), -ENOENT when no such generation was started,
 *  -ESTALE when it ended too long ago to be remembered (the last 8 are). */
CKPT_API int ckpt_wait_gen(ckpt_heap *heap, uint64_t generation);

/*! ckpt_cancel() : stops the running or prepared checkpoint (the heap is
 *  left unprotected); ckpt_wait() then returns CKPT_E_CANCELED.
 *  @return 0, or -ENOENT when none runs.  Thread-safe. */
CKPT_API int ckpt_cancel(ckpt_heap *heap);

/*! ckpt_prepare_write() : saves and unprotects the pages under
 *  [@ptr, @ptr + @len) so that a syscall may write there (needed in
 *  CKPT_TRAP_SIGBUS mode, harmless otherwise).  When it returns 0 every
 *  page of the range is writable, and it stays so until the next
 *  ckpt_cut() or ckpt_begin() (a preparation's passes leave it open).
 *  @return 0, -EINVAL (range outside the heap), or -ENOMEM (pool full and the
 *  writer failed).  Thread-safe; async-signal-safe. */
CKPT_API int ckpt_prepare_write(ckpt_heap *heap, void *ptr, size_t len);

#define CKPT_HIST_BUCKETS 32

struct ckpt_stats {
	size_t struct_size;        /* sizeof(struct ckpt_stats), set by the caller */
	int running;               /* 1 while the checkpoint runs */
	int result;                /* result once finished */
	int incremental;           /* 1 if this checkpoint was incremental */
	enum ckpt_backend backend;
	uint64_t generation;
	uint64_t pause_ns;         /* the cut's duration: ckpt_cut() / ckpt_begin()'s pause */
	uint64_t duration_ns;      /* ckpt_begin() to the end of the stream */
	uint64_t pages_total;      /* pages the checkpoint covers */
	uint64_t pages_emitted;    /* pages handed to the sink so far */
	uint64_t pages_zero;       /* of which all-zero */
	uint64_t traps;            /* write faults handled */
	uint64_t pages_saved_by_traps; /* pages copied aside by the fault path */
	uint64_t fault_around_pages;   /* of which neighbours saved by fault-around */
	uint64_t pool_peak_bytes;  /* peak memory holding copied-aside pages */
	uint64_t pool_waits;       /* traps that waited for a pool slot */
	uint64_t bytes_written;    /* bytes written to the destination */
	/* trap latency, handler side: bucket i counts traps taking [2^i, 2^(i+1)) ns */
	uint64_t trap_hist[CKPT_HIST_BUCKETS];
	/* preparation (ckpt_prepare); pause_ns above is the cut's */
	uint64_t prepare_ns;       /* ckpt_prepare() to ready to cut */
	uint64_t prep_passes;      /* protection passes before ready */
	uint64_t cut_pages;        /* pages the cut had to protect */
	uint64_t prep_traps;       /* write faults during preparation (re-opened, not copied) */
	uint64_t prep_trap_hist[CKPT_HIST_BUCKETS]; /* their latency, as trap_hist */
	uint64_t prep_trap_p50_ns; /* from prep_trap_hist: its bucket's upper bound */
	uint64_t prep_trap_p99_ns;
	int cut;                   /* 1 once the checkpoint was cut */
};

/*! ckpt_stats() : statistics of the running or last checkpoint.
 *  @st : out; set st->struct_size first.  @return 0, -EINVAL. Thread-safe. */
CKPT_API int ckpt_stats(ckpt_heap *heap, struct ckpt_stats *st);

/* ---------------------------------------------------------------- images */

struct ckpt_restore_opts {
	size_t struct_size;               /* sizeof(struct ckpt_restore_opts) */
	const struct ckpt_heap_opts *heap;/* trap mode, pool, flags of the new heap (NULL: defaults) */
	unsigned flags;                   /* CKPT_RESTORE_* */
	char *errbuf;                     /* optional: a sentence naming the problem */
	size_t errbuf_size;
};

/* Lazy restore: ckpt_restore() checks the image's header, footer, trailer,
 * block index, run records and chain (no page data), maps the heap with
 * nothing in it and returns; the first touch of a page loads and verifies
 * (XXH3) what holds it - the 64 KiB chunk of a stored block (image format
 * 4), else the whole block, decompressed - and background threads load the
 * rest (ckpt_restore_progress()) at SCHED_IDLE (nice 19 where refused); a
 * first touch never waits for them.  A block or chunk that fails its checks
 * once the heap is in use is never served: the failure goes to the log
 * callback (CKPT_LOG_ERROR), an access to any page of it raises
 * SIGBUS in the accessing thread (si_addr the page, on kernels with
 * UFFDIO_POISON, 6.6+; before, a SIGBUS sent to the thread) and syscalls
 * touching it fail with EFAULT; ckpt_restore_wait() and every ckpt_prepare()
 * / ckpt_begin() then return CKPT_E_CORRUPT (the heap can never checkpoint).  A damage
 * found while ckpt_restore() runs is its return value, as for an eager
 * restore.  The heap is usable with either trap mode; ckpt_begin() first
 * makes it fully resident.  Ignored (an eager restore) for hugetlb heaps,
 * the fork backend and ckpt_restore_fd(). */
#define CKPT_RESTORE_LAZY (1u << 0)
/* With CKPT_RESTORE_LAZY: first read and verify every byte of the image
 * and its chain, as an eager restore does, so that a damaged image is an
 * error from ckpt_restore() and not a SIGBUS later (the pages are still
 * loaded on demand, and checked again as they are). */
#define CKPT_RESTORE_VERIFY_FIRST (1u << 1)

/*! ckpt_restore_opts_init() */
CKPT_API void ckpt_restore_opts_init(struct ckpt_restore_opts *opts);

/*! ckpt_restore() : verifies the image at @path (and its chain of parents)
 *  completely, then maps it at its recorded base address.
 *  @out : out, a live heap (allocator and root pointer usable; it can
 *  checkpoint again).
 *  @return 0, or CKPT_E_NOTIMAGE, CKPT_E_VERSION, CKPT_E_CORRUPT,
 *  CKPT_E_TRUNCATED, CKPT_E_PAGESIZE, CKPT_E_ADDRINUSE, CKPT_E_RANGE,
 *  CKPT_E_PARENT, CKPT_E_APPTAG (the image's application tag differs from
 *  @opts->heap->app_tag), -ENOENT, -EIO, -ENOMEM, CKPT_E_KERNEL.  Nothing is
 *  mapped and nothing leaks on error.  The restored heap records the same
 *  tag in its later images.
 *  -EAGAIN: the chain changed under the reader (another process published
 *  a new image at @path and removed the old generations, or rewrote a file
 *  in place while it was read): call again, it reads the new image.  Each
 *  file is opened once and read through that descriptor, and parents are
 *  looked up in the directory of the file @path resolves to (a symlinked
 *  tip finds its parents next to its target).
 *  Only -ENOENT means "there is no image at @path" (a missing parent of an
 *  incremental image is CKPT_E_PARENT): it is the one result on which an
 *  application may start with an empty heap.  On any other error keep the
 *  file and stop: a new checkpoint to @path would replace a damaged image
 *  that an operator could still repair or merge. */
CKPT_API int ckpt_restore(const char *path, const struct ckpt_restore_opts *opts,
			  ckpt_heap **out);

/*! ckpt_restore_fd() : the same from a readable fd (a pipe is fine); a full
 *  image only (an incremental image read this way gives CKPT_E_PARENT). */
CKPT_API int ckpt_restore_fd(int fd, const struct ckpt_restore_opts *opts,
			     ckpt_heap **out);

/*! ckpt_restore_progress() : how far a lazy restore has filled the heap.
 *  @resident, @total : out (may be NULL): pages loaded so far and pages the
 *  image holds data for; equal once the heap is fully resident, and for a
 *  heap restored eagerly or created (both then the heap's page count).
 *  @return 0; CKPT_E_CORRUPT if a block failed its checks (see
 *  CKPT_RESTORE_LAZY); -EINVAL.  Thread-safe, lock-free. */
CKPT_API int ckpt_restore_progress(ckpt_heap *heap, uint64_t *resident, uint64_t *total);

/*! ckpt_restore_wait() : loads, on the calling thread too, whatever a lazy
 *  restore has not loaded yet, and returns once the heap is fully resident.
 *  @return 0 (also at once for any other heap), CKPT_E_CORRUPT (a block
 *  failed: the heap keeps serving its good pages), -EINVAL.  Thread-safe. */
CKPT_API int ckpt_restore_wait(ckpt_heap *heap);

struct ckpt_image_info {
	uint32_t version;
	uint32_t page_size;
	uint64_t base;
	uint64_t heap_size;
	uint64_t npages;          /* pages in the extent */
	uint64_t pages_stored;    /* pages with contents in this file */
	uint64_t pages_zero;      /* pages recorded as zero */
	uint64_t blocks;
	uint64_t generation;
	uint64_t created_ns;
	uint64_t file_size;
	uint32_t flags;           /* CKPT_SINK_INCREMENTAL, CKPT_IMAGE_ZSTD */
	int zstd_level;
	uint8_t id[16];
	uint8_t parent_id[16];
	char parent_name[256];    /* file name of the parent, relative to this file's directory */
	char app_tag[CKPT_APP_TAG_MAX]; /* the application tag it was made with ("" if none) */
};
#define CKPT_IMAGE_ZSTD (1u << 1)

/*! ckpt_image_info() : reads header and trailer of one image file (no chain,
 *  no block checksums).  @return 0 or an image error as for ckpt_restore(). */
CKPT_API int ckpt_image_info(const char *path, struct ckpt_image_info *info,
			     char *errbuf, size_t errbuf_size);

#define CKPT_VERIFY_CHAIN (1u << 0) /* also verify every parent */

/*! ckpt_image_verify() : checks everything in the image: header, every
 *  block's checksum and contents, trailer, whole-file checksum (and with
 *  CKPT_VERIFY_CHAIN the parents).  @return 0 or the first problem's code
 *  (-EAGAIN as for ckpt_restore(): retry); @errbuf gets a sentence naming
 *  it. */
CKPT_API int ckpt_image_verify(const char *path, unsigned flags, char *errbuf,
			       size_t errbuf_size);

/*! ckpt_image_merge() : folds the chain ending at @tip into one full image
 *  at @out, published atomically.  @return 0 or an image / I/O error. */
CKPT_API int ckpt_image_merge(const char *out, const char *tip, int zstd_level,
			      char *errbuf, size_t errbuf_size);

#ifdef __cplusplus
}
#endif

#endif /* CKPT_H */
