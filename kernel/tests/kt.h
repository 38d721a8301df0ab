/*
 * kt.h - libckpt's kernel conformance suite: shared declarations.
 *
 * The suite is one static binary (kernel/build/kt) so that it runs both on
 * this machine and in the qemu initramfs of `make -C kernel matrix`.  Each
 * case pins one kernel behaviour libckpt relies on (kernel/README.md) and
 * runs in a forked child process: a case that hangs, crashes or leaks
 * cannot disturb the next one.  The parent sets up machine state (zram
 * swap, sysfs knobs, memory cgroups) and restores it after the case; a
 * case changes machine state itself only where its setup has already
 * registered the undo with the parent (case g's memory blocks).
 *
 * A case function runs in that child and returns KT_PASS, or the value of
 * kt_fail() / kt_skip(), which record the reason.  kt_note() adds an
 * observation printed under the result line.
 */
#ifndef CKPT_KT_H
#define CKPT_KT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include "uffd_compat.h"

enum kt_result { KT_PASS = 0, KT_FAIL = 1, KT_SKIP = 2 };

/* What the parent prepared for a case (filled by the case's setup). */
struct kt_env {
	char swap_dev[64];   /* swap device in use ("" if none was needed) */
	char cgroup[256];    /* memory cgroup directory for case e */
	int cgroup_v2;       /* 1: cgroup v2 (memory.max), 0: v1 (memory.limit_in_bytes) */
	size_t cg_limit;     /* bytes */
};

struct kt_case {
	const char *name;    /* "a_wp_populated_write_traps" */
	int need_root;       /* needs root (machine state, PFNs in pagemap) */
	int machine;         /* changes machine state: hold the machine lock */
	/* parent side, before the child runs: returns KT_PASS or kt_fail/kt_skip */
	int (*setup)(struct kt_env *env);
	int (*run)(const struct kt_env *env); /* in the child */
	unsigned timeout_s;
};

/* ------------------------------------------------------------ reporting */
extern size_t kt_ps;        /* page size */
int kt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int kt_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kt_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *kt_reason(void);

#define KT_CHECK(cond, ...)                                                    \
	do {                                                                   \
		if (!(cond))                                                   \
			return kt_fail(__VA_ARGS__);                           \
	} while (0)

/* --------------------------------------------------- machine state (parent) */
/*
 * Every change to machine state is preceded by pushing the action that
 * undoes it; kt_restore_all() runs them in reverse order.  It is called
 * after each case, at exit, and from the handler of SIGINT/SIGTERM/SIGHUP/
 * SIGALRM, so it uses only async-signal-safe calls.
 */
void kt_restore_push_write(const char *path, const char *value);
void kt_restore_push_swapoff(const char *dev);
void kt_restore_push_rmdir(const char *path);
void kt_restore_all(void);
int kt_write_file(const char *path, const char *value); /* 0 or -errno */
int kt_read_file(const char *path, char *buf, size_t len); /* 0 or -errno, trimmed */

int kt_machine_lock(void);  /* flock /run/lock/libckpt-machine.lock; fd or -errno */
void kt_machine_unlock(int fd);

int kt_setup_swap(struct kt_env *env);        /* zram swap, remembered for restore */
int kt_setup_thp_advise(struct kt_env *env);  /* shmem_enabled = advise */
int kt_setup_memcg(struct kt_env *env);       /* zram swap + a memory cgroup */
int kt_setup_compaction(struct kt_env *env);  /* nothing to change; lock only */

/* ------------------------------------------------------ helpers (child) */
/* Not a kernel feature: asks kt_uffd_open() for a uffd that also sees
 * faults from kernel-mode accesses (no UFFD_USER_MODE_ONLY fallback). */
#define KT_KERNEL_FAULTS (1ull << 63)
int kt_uffd_open(uint64_t features, int *fd_out); /* O_CLOEXEC|O_NONBLOCK + UFFDIO_API */
/* As kt_uffd_open, returning KT_PASS, or kt_skip() when this process may
 * not use userfaultfd, or kt_fail(). */
int kt_uffd_or_skip(uint64_t features, int *fd_out);
int kt_register(int uffd, void *addr, size_t len, uint64_t mode); /* 0 or -errno */
int kt_unregister(int uffd, void *addr, size_t len);
int kt_wp(int uffd, void *addr, size_t len, int protect);         /* 0 or -errno */

/* A shmem region: a memfd mapped MAP_SHARED twice: base (registered with
 * the userfaultfd by the case) and alias (never registered: reading it
 * never disturbs base's ptes, writing it bypasses base's protection). */
struct kt_region {
	uint8_t *base;
	uint8_t *alias;
	size_t npages;
	size_t len;
	int memfd;
};
int kt_region_new(struct kt_region *r, size_t npages, size_t align);

/* Page contents: a pattern that differs per page and per seed. */
void kt_fill_page(uint8_t *p, size_t idx, uint32_t seed);
bool kt_page_is(const uint8_t *p, size_t idx, uint32_t seed);
bool kt_page_is_zero(const uint8_t *p);
void kt_fill(struct kt_region *r, uint32_t seed);

/* /proc/self/pagemap entry of the page at addr (0 with errno on error). */
uint64_t kt_pagemap(const void *addr);
/* Number of pages of [addr, addr + n pages) with all of @set bits and none of @clear. */
size_t kt_pagemap_count(const void *addr, size_t npages, uint64_t set, uint64_t clear);
/* Number of pages of [addr, addr + n pages) resident according to mincore. */
size_t kt_resident(const void *addr, size_t npages);

/* What a page is expected to hold when its write fault arrives. */
enum kt_expect { KT_EXPECT_ANY = 0, KT_EXPECT_PATTERN, KT_EXPECT_ZERO };

/*
 * A handler thread: reads the userfaultfd (and, after a fork event, the
 * child's), records per page how many WP faults arrived and whether the
 * page held what it should at fault time (read through the alias), then
 * unprotects that one page, which wakes the writer.
 */
#define KT_MAX_EVENTS 16
struct kt_handler {
	int uffd;
	const struct kt_region *r;
	uint8_t *fault_base;       /* address range the faults are counted for */
	uint32_t seed;
	const uint8_t *expect;     /* per page enum kt_expect, or NULL = ANY */
	_Atomic uint32_t *faults;  /* per page, faults on uffd */
	_Atomic uint32_t *child_faults; /* per page, faults on the forked child's uffd */
	_Atomic uint32_t bad_content;
	_Atomic uint32_t not_wp;   /* page faults without the WP flag */
	_Atomic uint32_t stray;    /* faults outside the range */
	_Atomic int child_uffd;    /* from a UFFD_EVENT_FORK, else -1 */
	_Atomic int stop;
	pthread_mutex_t ev_lock;
	struct uffd_msg events[KT_MAX_EVENTS]; /* non-pagefault events, in order */
	_Atomic unsigned nevents;
	pthread_t th;
	int running;
};
int kt_handler_start(struct kt_handler *h, int uffd, const struct kt_region *r,
		     uint8_t *fault_base, uint32_t seed, const uint8_t *expect);
void kt_handler_stop(struct kt_handler *h);
/* Waits up to ms for the handler to have seen n events. */
bool kt_handler_wait_events(struct kt_handler *h, unsigned n, int ms);

/*
 * Writes one byte into each page [first, first + n) of fault_base (at an
 * offset that differs per page), then checks that exactly @want_faults
 * faults were counted for the page and that the page holds its expected
 * content plus the byte.  Returns KT_PASS or kt_fail().
 */
int kt_write_pages(struct kt_handler *h, size_t first, size_t n, uint32_t want_faults,
		   const char *what);
uint8_t kt_written_byte(size_t idx);
size_t kt_written_off(size_t idx);

uint64_t kt_now_ns(void);
int kt_is_root(void);

/* -------------------------------------------------------------- cases */
int kt_case_a(const struct kt_env *env);
int kt_case_b(const struct kt_env *env);
int kt_case_c(const struct kt_env *env);
int kt_case_d(const struct kt_env *env);
int kt_case_e(const struct kt_env *env);
int kt_case_f(const struct kt_env *env);
int kt_case_g(const struct kt_env *env);
int kt_case_h(const struct kt_env *env);
int kt_case_i(const struct kt_env *env);
int kt_case_j(const struct kt_env *env);
int kt_case_k(const struct kt_env *env);
int kt_case_l(const struct kt_env *env);
int kt_case_m(const struct kt_env *env);
int kt_case_n(const struct kt_env *env);
int kt_case_o(const struct kt_env *env);
int kt_case_q(const struct kt_env *env);
int kt_case_r(const struct kt_env *env);
int kt_case_s(const struct kt_env *env);
int kt_case_probe(const struct kt_env *env);

#endif
