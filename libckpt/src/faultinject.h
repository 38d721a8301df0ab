/*
 * faultinject.h - fault injection for tests.
 *
 * A call site asks ckpt__fault_hit(SITE) just before the operation it guards
 * and, if the result is negative, behaves as if the operation had failed
 * with that errno.  The hook exists only in builds made with
 * -DCKPT_FAULT_INJECTION (build/libckpt-fi.a, linked by tests/fi_test_*.c):
 * in the release library ckpt__fault_hit() is an inline 0 and the compiler
 * removes the branch, so there is no cost and no way to trigger it.
 */
#ifndef CKPT_FAULT_H
#define CKPT_FAULT_H

enum ckpt__fault_site {
	CKPT_FAULT_WRITE = 0,    /* a write of image bytes (filesink.c) */
	CKPT_FAULT_FSYNC,        /* fsync of the image or its directory */
	CKPT_FAULT_RENAME,       /* rename/link of the image (publish) */
	CKPT_FAULT_URING_SUBMIT, /* io_uring set-up or submission */
	CKPT_FAULT_MEMFD,        /* memfd_create / ftruncate */
	CKPT_FAULT_MMAP,         /* mmap of heap memory */
	CKPT_FAULT_UFFD_WP,      /* UFFDIO_WRITEPROTECT */
	CKPT_FAULT_UFFD_READ,    /* the handler thread's read of the userfaultfd */
	CKPT_FAULT_URING_SETUP,  /* io_uring_queue_init (the sink and reader fall back to plain I/O) */
	CKPT_FAULT_LAZY_LOADER,  /* a lazy restore's loader, holding a block, stalls (the errno is unused) */
	CKPT_FAULT__COUNT
};

#ifdef CKPT_FAULT_INJECTION
/*! ckpt__fault_hit() : @return 0, or the armed negative errno when @site is
 *  armed and its skip count has run out.  Thread-safe, async-signal-safe
 *  (atomics only). */
int ckpt__fault_hit(enum ckpt__fault_site site);

/*! ckpt__fault_arm() : makes @site fail with @err (a negative errno) after
 *  @skip successful passes, @count times (0 = every time from then on). */
void ckpt__fault_arm(enum ckpt__fault_site site, int err, unsigned skip, unsigned count);

/*! ckpt__fault_reset() : disarms every site and clears the hit counters. */
void ckpt__fault_reset(void);

/*! ckpt__fault_hits() : @return how many times @site was asked (armed or not). */
unsigned long ckpt__fault_hits(enum ckpt__fault_site site);
#else
static inline int ckpt__fault_hit(enum ckpt__fault_site site)
{
	(void)site;
	return 0;
}
#endif

#endif /* CKPT_FAULT_H */
