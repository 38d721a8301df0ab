/*
 * pagecost.c - what it costs this machine to make heap memory resident,
 * below libckpt: the floor under a lazy restore's residency rate.
 *
 *   build/bench/pagecost [--size 1g] [--reps 3]
 *
 * Per rep, on a fresh memfd of --size bytes (one CPU, nothing else):
 *   fresh   fallocate, then the first write to every page (MAP_POPULATE
 *           with write access: the kernel clears each new page) - the cost
 *           of memory nobody touched since it was freed;
 *   again   memset of the same, now resident, pages - plain memory speed;
 *   copy    a second fresh memfd registered with userfaultfd (MISSING), filled
 *           1 MiB at a time with UFFDIO_COPY from one reused buffer: what a
 *           lazy restore's loader does per block, without the read and hash;
 *   cont    a third, registered MISSING|MINOR: each 1 MiB is written through
 *           a second, unregistered mapping of the memfd, then mapped with
 *           UFFDIO_CONTINUE - the alternative design (fill, then map).
 * Output per rep: "pagecost rep=K bytes=B fresh_gbs=X again_gbs=X copy_gbs=X
 * cont_gbs=X".  On a VM whose balloon reports free pages to the host, "fresh"
 * includes the host faulting the page in again; compare it with "again".
 */
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "benchutil.h"

#define STEP (1u << 20)

static double gbs(size_t bytes, uint64_t ns)
{
	return ns ? (double)bytes / (double)ns : 0;
}

/* A memfd of @size mapped shared; *@fd gets it.  NULL on failure. */
static uint8_t *map_memfd(size_t size, int *fd)
{
	*fd = memfd_create("pagecost", MFD_CLOEXEC);
	if (*fd < 0 || ftruncate(*fd, (off_t)size) < 0)
		return NULL;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

static int uffd_for(uint8_t *p, size_t size, bool minor)
{
	int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API, .features = minor ? UFFD_FEATURE_MINOR_SHMEM : 0 };
	struct uffdio_register reg = {
		.range = { (uint64_t)(uintptr_t)p, size },
		.mode = UFFDIO_REGISTER_MODE_MISSING | (minor ? UFFDIO_REGISTER_MODE_MINOR : 0),
	};
	if (u < 0 || ioctl(u, UFFDIO_API, &api) < 0 || ioctl(u, UFFDIO_REGISTER, &reg) < 0) {
		if (u >= 0)
			close(u);
		return -1;
	}
	return u;
}

/* fresh and again: ns of each into @t[0], @t[1]. */
static int time_fresh(size_t size, uint64_t t[2])
{
	int fd;
	uint8_t *p = map_memfd(size, &fd);
	if (!p || fallocate(fd, 0, 0, (off_t)size) < 0)
		return -1;
	munmap(p, size);
	uint64_t t0 = bench_now_ns();
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	uint64_t t1 = bench_now_ns();
	if (p == MAP_FAILED)
		return -1;
	memset(p, 0x5a, size);
	uint64_t t2 = bench_now_ns();
	t[0] = t1 - t0;
	t[1] = t2 - t1;
	munmap(p, size);
	close(fd);
	return 0;
}

/* copy (@minor false) or cont (@minor true): ns, or 0 on failure. */
static uint64_t time_install(size_t size, const uint8_t *src, bool minor)
{
	int fd;
	uint8_t *p = map_memfd(size, &fd);
	int u = p ? uffd_for(p, size, minor) : -1;
	uint8_t *alias = NULL;
	if (u >= 0 && minor) {
		alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (alias == MAP_FAILED)
			alias = NULL;
	}
	uint64_t ns = 0;
	if (u >= 0 && (!minor || alias)) {
		uint64_t t0 = bench_now_ns();
		size_t off = 0;
		for (; off < size; off += STEP) {
			int rc;
			if (minor) {
				memcpy(alias + off, src, STEP);
				struct uffdio_continue c = { .range = { (uint64_t)(uintptr_t)(p + off), STEP },
							     .mode = UFFDIO_CONTINUE_MODE_DONTWAKE };
				rc = ioctl(u, UFFDIO_CONTINUE, &c);
			} else {
				struct uffdio_copy c = { .dst = (uint64_t)(uintptr_t)(p + off),
							 .src = (uint64_t)(uintptr_t)src, .len = STEP,
							 .mode = UFFDIO_COPY_MODE_DONTWAKE };
				rc = ioctl(u, UFFDIO_COPY, &c);
			}
			if (rc < 0)
				break;
		}
		if (off >= size)
			ns = bench_now_ns() - t0;
	}
	if (alias)
		munmap(alias, size);
	if (u >= 0)
		close(u);
	if (p)
		munmap(p, size);
	if (fd >= 0)
		close(fd);
	return ns;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "size", required_argument, 0, 'z' }, { "reps", required_argument, 0, 'r' }, { 0, 0, 0, 0 },
	};
	size_t size = 1ul << 30;
	int reps = 3, c;
	while ((c = getopt_long(argc, argv, "z:r:", lo, NULL)) != -1) {
		switch (c) {
		case 'z': size = bench_parse_size(optarg); break;
		case 'r': reps = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: pagecost [--size 1g] [--reps 3]\n");
			return 2;
		}
	}
	size = (size + STEP - 1) / STEP * STEP;
	uint8_t *src = aligned_alloc(4096, STEP);
	if (!src || !size)
		return 1;
	for (size_t i = 0; i < STEP; i++)
		src[i] = (uint8_t)(i * 131 + 7);
	for (int k = 0; k < reps; k++) {
		uint64_t t[2];
		if (time_fresh(size, t) < 0) {
			printf("pagecost unavailable: memfd: %s\n", strerror(errno));
			return 1;
		}
		uint64_t cp = time_install(size, src, false), ct = time_install(size, src, true);
		printf("pagecost rep=%d bytes=%zu fresh_gbs=%.2f again_gbs=%.2f copy_gbs=%.2f cont_gbs=%.2f\n", k, size,
		       gbs(size, t[0]), gbs(size, t[1]), gbs(size, cp), gbs(size, ct));
		fflush(stdout);
	}
	free(src);
	return 0;
}
