/*
 * util.c - the bottom layer: clocks, the spin-then-sleep wait, the zero-page
 * test, the heap range check, and opening memfds and userfaultfds.
 *
 * Owns no state.  Calls nothing in libckpt but the fault-injection hook, so
 * that every other file may call it (docs/design.md, "Layers").
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/memfd.h>

#include "internal.h"
#include "faultinject.h"

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21u << 26)
#endif

uint64_t ckpt__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t ckpt__realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void ckpt__pause(unsigned *spins)
{
	/* Spin a little, then sleep: waits here are for a memcpy of the
	 * writer's batch, for a pool slot or for one protection chunk,
	 * normally microseconds. */
	if (++*spins < 64) {
		ckpt__cpu_relax();
		return;
	}
	struct timespec ts = {0, 20000};
	nanosleep(&ts, NULL);
}

bool ckpt__page_is_zero(const void *p, size_t len)
{
	/* eight words at a time: the compiler vectorises the OR, and a data
	 * page usually fails in the first 64 bytes */
	const uint64_t *w = p;
	for (size_t i = 0; i < len / 8; i += 8) {
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	}
	return true;
}

int ckpt__check_range(uint64_t base, uint64_t size, uint64_t page_size)
{
	/* x86-64 with 4-level page tables: user space ends at 2^47 - 4096;
	 * libckpt never places heaps above that even with 5-level tables. */
	const uint64_t user_top = (1ull << 47) - 4096;

	if (page_size == 0 || (base % page_size) || (size % page_size) || size == 0)
		return CKPT_E_RANGE;
	if (base < (1ull << 20) || base >= user_top || size > user_top - base)
		return CKPT_E_RANGE;
	return 0;
}

int ckpt__memfd_create(const char *name, size_t size, bool hugetlb, int *fd_out)
{
	unsigned flags = MFD_CLOEXEC | (hugetlb ? (MFD_HUGETLB | MFD_HUGE_2MB) : 0);
	int frc = ckpt__fault_hit(CKPT_FAULT_MEMFD);
	if (frc)
		return frc;
	int fd = (int)syscall(SYS_memfd_create, name ? name : "libckpt", flags);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

int ckpt__uffd_syscall(int flags)
{
#ifdef SYS_userfaultfd
	int fd = (int)syscall(SYS_userfaultfd, flags);
	return fd < 0 ? -errno : fd;
#else
	(void)flags;
	return -ENOSYS;
#endif
}

int ckpt__uffd_dev(int flags)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -errno;
	int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	int rc = fd < 0 ? -errno : fd;
	close(dev);
	return rc;
}

/* A new userfaultfd, O_CLOEXEC | O_NONBLOCK, the API not yet set. */
static int uffd_new(void)
{
	int fd = ckpt__uffd_syscall(O_CLOEXEC | O_NONBLOCK);
	int err = fd;

	/* vm.unprivileged_userfaultfd=0 refuses the syscall without
	 * CAP_SYS_PTRACE; /dev/userfaultfd is the way granted by file
	 * permissions instead. */
	if (fd < 0)
		fd = ckpt__uffd_dev(O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return err == -ENOSYS ? CKPT_E_KERNEL : -EPERM;
	return fd;
}

int ckpt__uffd_open(uint64_t features, uint64_t *offered, int *out)
{
	struct uffdio_api api = {.api = UFFD_API};
	int fd = uffd_new();

	if (fd < 0)
		return fd;
	/* UFFDIO_API with nothing requested reports what is offered; it may be
	 * called once per fd, so the features go to a second fd */
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		close(fd);
		return CKPT_E_KERNEL;
	}
	close(fd);
	if (offered)
		*offered = api.features;
	if ((api.features & features) != features)
		return CKPT_E_KERNEL;
	fd = uffd_new();
	if (fd < 0)
		return fd;
	api = (struct uffdio_api){.api = UFFD_API, .features = features};
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		close(fd);
		return CKPT_E_KERNEL;
	}
	*out = fd;
	return 0;
}

int ckpt__errf(char *buf, size_t len, int code, const char *fmt, ...)
{
	if (buf && len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(buf, len, fmt, ap);
		va_end(ap);
	}
	return code;
}
