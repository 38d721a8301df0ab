/*
 * kcheck.c - `ckpt kcheck`: the kernel probe, for humans.
 *
 * Prints what ckpt_kernel_probe() found and a verdict.  Exit status 0 when
 * the running kernel keeps every behaviour libckpt relies on, 1 when it
 * does not (or userfaultfd cannot be used by this process), 2 on a usage
 * error.  The full conformance suite lives in kernel/ (`make -C kernel
 * check`); this is the fast check a program runs at heap creation.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ckpt.h"
#include "uffd_compat.h"
#include "tool.h"

static const struct {
	unsigned long long bit;
	const char *name;
	const char *why;
} features[] = {
	{ UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_HUGETLBFS_SHMEM", "required: write-protect on shmem (5.19)" },
	{ UFFD_FEATURE_SIGBUS, "SIGBUS", "optional: CKPT_TRAP_SIGBUS (4.14)" },
	{ UFFD_FEATURE_WP_UNPOPULATED, "WP_UNPOPULATED", "optional: protect empty ptes without populating (6.4)" },
	{ UFFD_FEATURE_WP_ASYNC, "WP_ASYNC", "optional: faults resolved by the kernel, with PAGEMAP_SCAN (6.7)" },
	{ UFFD_FEATURE_EVENT_FORK, "EVENT_FORK", "informational" },
	{ UFFD_FEATURE_EVENT_REMAP, "EVENT_REMAP", "informational" },
	{ UFFD_FEATURE_EVENT_REMOVE, "EVENT_REMOVE", "informational" },
	{ UFFD_FEATURE_EVENT_UNMAP, "EVENT_UNMAP", "informational" },
	{ UFFD_FEATURE_THREAD_ID, "THREAD_ID", "informational" },
	{ UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM", "informational" },
	{ UFFD_FEATURE_EXACT_ADDRESS, "EXACT_ADDRESS", "informational" },
	{ UFFD_FEATURE_POISON, "POISON", "informational" },
	{ UFFD_FEATURE_MOVE, "MOVE", "informational" },
};

static const char *yes(unsigned v)
{
	return v ? "yes" : "no";
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ckpt kcheck [-q]\n"
		   "  Probes the running kernel for what libckpt needs and prints a verdict.\n"
		   "  -q  print only the verdict line\n"
		   "  Exit status: 0 safe, 1 unsafe, 2 usage error.\n");
}

int ckpt_cmd_kcheck(int argc, char **argv)
{
	struct ckpt_kernel_info ki;
	int quiet = 0, rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
			quiet = 1;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "ckpt kcheck: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}

	rc = ckpt_kernel_probe(&ki);
	if (!quiet) {
		printf("kernel release        %s\n", ki.release);
		printf("userfaultfd(2)        %s\n", yes(ki.open_syscall));
		printf("/dev/userfaultfd      %s\n", yes(ki.open_dev));
		printf("UFFD_USER_MODE_ONLY   %s\n", yes(ki.user_mode_only));
		printf("UFFDIO_API features   %#llx\n", (unsigned long long)ki.uffd_features);
		for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++)
			printf("  %-20s %-3s  %s\n", features[i].name,
			       yes(!!(ki.uffd_features & features[i].bit)), features[i].why);
		printf("PAGEMAP_SCAN          %-3s  optional (6.7)\n", yes(ki.pagemap_scan));
		printf("swap active           %s\n", yes(ki.swap_on));
		printf("io_uring              %-3s  %s\n", yes(ki.io_uring),
		       ki.io_uring ? "image I/O through io_uring"
				   : "blocked (seccomp or kernel.io_uring_disabled): images use pread/pwrite");
		if (ki.hugetlb_free >= 0)
			printf("hugetlb 2 MiB free    %ld\n", ki.hugetlb_free);
		else
			printf("hugetlb 2 MiB free    unknown\n");
		if (ki.canary_ns)
			printf("live canary           %s (%.3f ms): WP shmem page, MADV_DONTNEED, "
			       "read, mprotect round trip, write %s\n",
			       ki.canary_ok ? "pass" : "FAIL", (double)ki.canary_ns / 1e6,
			       ki.canary_ok ? "hit the mark, content intact" : "not caught");
		else
			printf("live canary           not run\n");
	}
	if (rc == 0) {
		printf("verdict: SAFE - this kernel keeps libckpt's write-protect contract "
		       "(CKPT_TRAP_THREAD%s)\n", ki.sigbus ? ", CKPT_TRAP_SIGBUS" : "");
		return 0;
	}
	if (rc == -EPERM) {
		/* the kernel may be fine: this process just may not use it */
		printf("verdict: NOT USABLE BY THIS PROCESS (%s): %s\n", ckpt_err_name(rc),
		       ki.reason[0] ? ki.reason : ckpt_strerror(rc));
		printf("  kernel canary: %s; use CKPT_BACKEND_FORK, or run with the access above\n",
		       ki.canary_ok ? "passed (on a user-mode-only userfaultfd)" : "not passed");
		return 1;
	}
	printf("verdict: UNSAFE (%s): %s\n", ckpt_err_name(rc), ki.reason[0] ? ki.reason : ckpt_strerror(rc));
	printf("  use CKPT_BACKEND_FORK on this kernel, or run on Linux 6.2 or later "
	       "(see kernel/README.md)\n");
	return 1;
}
