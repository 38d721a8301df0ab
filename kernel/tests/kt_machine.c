/*
 * kt_machine.c - machine state the suite changes, and how it is put back.
 *
 * Rule: before changing anything, push the action that undoes it.  The
 * actions are plain data run with raw syscalls only, so kt_restore_all() is
 * safe to call from a signal handler.  The undo list lives in the parent:
 * nothing here runs in a case's child.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <time.h>
#include <unistd.h>

#include "kt.h"

#define LOCK_PATH "/run/lock/libckpt-machine.lock"

enum { R_WRITE, R_SWAPOFF, R_RMDIR, R_ONLINE_MEMORY };

struct restore {
	int kind;
	char path[300];
	char value[64];
};

static struct restore stack[16];
static volatile int depth;

/* snprintf("%s") without -Wformat-truncation's complaint: truncation is fine */
static void copy_str(char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);

	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void push(int kind, const char *path, const char *value)
{
	struct restore *r;

	if (depth >= (int)(sizeof(stack) / sizeof(stack[0])))
		return; /* cannot happen with the suite's few changes */
	r = &stack[depth];
	r->kind = kind;
	copy_str(r->path, sizeof(r->path), path);
	copy_str(r->value, sizeof(r->value), value ? value : "");
	depth++;
}

void kt_restore_push_write(const char *path, const char *value)
{
	push(R_WRITE, path, value);
}

void kt_restore_push_swapoff(const char *dev)
{
	push(R_SWAPOFF, dev, NULL);
}

void kt_restore_push_rmdir(const char *path)
{
	push(R_RMDIR, path, NULL);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Memory blocks (/sys/devices/system/memory/memoryN) that were offline
 * before the suite touched anything: left alone by the restore. */
#define MAX_MEM_BLOCKS 4096
static unsigned char mem_offline_before[MAX_MEM_BLOCKS];
static int mem_blocks;

static size_t fmt_uint(char *out, unsigned v)
{
	char tmp[16];
	size_t n = 0, k = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		out[k++] = tmp[--n];
	out[k] = '\0';
	return k;
}

static void block_state_path(char *out, int i)
{
	static const char a[] = "/sys/devices/system/memory/memory", b[] = "/state";
	size_t n = sizeof(a) - 1;

	memcpy(out, a, n);
	n += fmt_uint(out + n, (unsigned)i);
	memcpy(out + n, b, sizeof(b));
}

static int block_is_offline(int i)
{
	char path[96], st[16] = "";
	int fd;

	block_state_path(path, i);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (read(fd, st, sizeof(st) - 1) < 0)
		st[0] = '\0';
	close(fd);
	return !strncmp(st, "offline", 7);
}

/* Puts back online every memory block that was online at set-up. */
static void online_memory(void)
{
	for (int i = 0; i < mem_blocks; i++) {
		char path[96];
		int fd;

		if (mem_offline_before[i] || block_is_offline(i) != 1)
			continue;
		block_state_path(path, i);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (write(fd, "online", 6) < 0) {
				/* best effort */
			}
			close(fd);
		}
	}
}

/* Async-signal-safe: open/read/write/close/swapoff/rmdir/nanosleep only. */
void kt_restore_all(void)
{
	while (depth > 0) {
		struct restore *r = &stack[depth - 1];
		int fd;

		switch (r->kind) {
		case R_WRITE:
			fd = open(r->path, O_WRONLY | O_CLOEXEC);
			if (fd >= 0) {
				if (write(fd, r->value, strlen(r->value)) < 0) {
					/* best effort: nothing more we can do */
				}
				close(fd);
			}
			break;
		case R_SWAPOFF:
			swapoff(r->path);
			break;
		case R_ONLINE_MEMORY:
			online_memory();
			break;
		case R_RMDIR:
			/* a just-killed member may take a moment to leave */
			for (int i = 0; i < 100 && rmdir(r->path) < 0 && errno == EBUSY; i++)
				sleep_ms(20);
			break;
		}
		depth--;
	}
}

int kt_write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int kt_read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return 0;
}

int kt_machine_lock(void)
{
	int fd = open(LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0666);

	if (fd < 0 && errno == ENOENT) {
		/* a minimal system (the qemu initramfs) has no /run/lock yet */
		mkdir("/run", 0755);
		mkdir("/run/lock", 01777);
		fd = open(LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	}
	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int e = errno;

			close(fd);
			return -e;
		}
	}
	return fd;
}

void kt_machine_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* ------------------------------------------------------------- swap */

static int swap_active(char *first_dev, size_t len)
{
	char line[256];
	int n = 0;
	FILE *f = fopen("/proc/swaps", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (n++ == 1 && first_dev) {
			char *sp = strpbrk(line, " \t");

			if (sp)
				*sp = '\0';
			copy_str(first_dev, len, line);
		}
	}
	fclose(f);
	return n > 1;
}

/* A swap signature (what mkswap writes): version 1, every page usable. */
static int write_swap_header(const char *dev, uint64_t bytes)
{
	uint8_t *page = calloc(1, kt_ps);
	uint32_t *info;
	int fd, rc = 0;

	if (!page)
		return -ENOMEM;
	info = (uint32_t *)(void *)(page + 1024); /* after the boot block */
	info[0] = 1;                                  /* version */
	info[1] = (uint32_t)(bytes / kt_ps - 1);      /* last_page */
	info[2] = 0;                                  /* nr_badpages */
	memcpy(page + kt_ps - 10, "SWAPSPACE2", 10);
	fd = open(dev, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
	} else {
		if (pwrite(fd, page, kt_ps, 0) != (ssize_t)kt_ps || fsync(fd) < 0)
			rc = -errno;
		close(fd);
	}
	free(page);
	return rc;
}

#define ZRAM_BYTES (512ull << 20)

int kt_setup_swap(struct kt_env *env)
{
	char path[128], val[64], dev[64];
	int id = 0, rc;

	if (swap_active(env->swap_dev, sizeof(env->swap_dev))) {
		kt_note("swap already active (%s): used as is, left alone", env->swap_dev);
		return KT_PASS;
	}
	if (access("/sys/block/zram0", F_OK) != 0)
		return kt_skip("no swap and no zram device (zram module not loaded)");
	if (kt_read_file("/sys/block/zram0/disksize", val, sizeof(val)) < 0)
		return kt_fail("cannot read /sys/block/zram0/disksize");
	if (strcmp(val, "0") != 0) {
		/* zram0 belongs to someone else: take a device of our own */
		rc = kt_read_file("/sys/class/zram-control/hot_add", val, sizeof(val));
		if (rc < 0)
			return kt_fail("zram0 is in use and hot_add failed: %s", strerror(-rc));
		id = atoi(val);
		kt_restore_push_write("/sys/class/zram-control/hot_remove", val);
	}
	snprintf(path, sizeof(path), "/sys/block/zram%d/reset", id);
	kt_restore_push_write(path, "1");
	snprintf(path, sizeof(path), "/sys/block/zram%d/disksize", id);
	snprintf(val, sizeof(val), "%llu", (unsigned long long)ZRAM_BYTES);
	rc = kt_write_file(path, val);
	if (rc < 0)
		return kt_fail("writing %s: %s", path, strerror(-rc));
	snprintf(dev, sizeof(dev), "/dev/zram%d", id);
	for (int i = 0; i < 50 && access(dev, F_OK) != 0; i++)
		sleep_ms(10); /* a hot-added node may appear a little later */
	rc = write_swap_header(dev, ZRAM_BYTES);
	if (rc < 0)
		return kt_fail("writing a swap header to %s: %s", dev, strerror(-rc));
	if (swapon(dev, 0) < 0)
		return kt_fail("swapon %s: %s", dev, strerror(errno));
	kt_restore_push_swapoff(dev);
	snprintf(env->swap_dev, sizeof(env->swap_dev), "%s", dev);
	kt_note("set up %s (%llu MiB) as swap for this case; removed after it", dev,
		(unsigned long long)(ZRAM_BYTES >> 20));
	return KT_PASS;
}

/* --------------------------------------------------------------- THP */

/* The selected word of a sysfs choice file: "always [advise] never" -> advise */
static int sysfs_choice(const char *path, char *out, size_t len)
{
	char buf[256], *a, *b;
	int rc = kt_read_file(path, buf, sizeof(buf));

	if (rc < 0)
		return rc;
	a = strchr(buf, '[');
	b = a ? strchr(a, ']') : NULL;
	if (!a || !b)
		return -EINVAL;
	*b = '\0';
	snprintf(out, len, "%s", a + 1);
	return 0;
}

int kt_setup_thp_advise(struct kt_env *env)
{
	static const char top[] = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
	static const char pmd[] = "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/shmem_enabled";
	char old[32];
	int rc;

	(void)env;
	if (sysfs_choice(top, old, sizeof(old)) < 0)
		return kt_skip("kernel without shmem THP (%s missing)", top);
	kt_restore_push_write(top, old);
	rc = kt_write_file(top, "advise");
	if (rc < 0)
		return kt_fail("writing advise to %s: %s", top, strerror(-rc));
	kt_note("shmem_enabled %s -> advise (restored after)", old);
	/* 6.11+ has per-size knobs: the PMD size must follow the top knob */
	if (sysfs_choice(pmd, old, sizeof(old)) == 0 && strcmp(old, "inherit") != 0) {
		kt_restore_push_write(pmd, old);
		rc = kt_write_file(pmd, "inherit");
		if (rc < 0)
			return kt_fail("writing inherit to %s: %s", pmd, strerror(-rc));
		kt_note("hugepages-2048kB/shmem_enabled %s -> inherit (restored after)", old);
	}
	return KT_PASS;
}

/* ------------------------------------------------------------ memcg */

#define CG_LIMIT (24ull << 20)

int kt_setup_memcg(struct kt_env *env)
{
	char path[300], val[64];
	int rc;

	rc = kt_setup_swap(env);
	if (rc != KT_PASS)
		return rc;
	if (access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) == 0) {
		env->cgroup_v2 = 0;
		snprintf(env->cgroup, sizeof(env->cgroup), "/sys/fs/cgroup/memory/libckpt-kt-%d",
			 (int)getpid());
	} else if (kt_read_file("/sys/fs/cgroup/cgroup.controllers", val, sizeof(val)) == 0 &&
		   strstr(val, "memory")) {
		char sub[256];

		env->cgroup_v2 = 1;
		if (kt_read_file("/sys/fs/cgroup/cgroup.subtree_control", sub, sizeof(sub)) < 0)
			return kt_fail("cannot read cgroup.subtree_control");
		if (!strstr(sub, "memory")) {
			kt_restore_push_write("/sys/fs/cgroup/cgroup.subtree_control", "-memory");
			rc = kt_write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
			if (rc < 0)
				return kt_fail("enabling the memory controller: %s", strerror(-rc));
		}
		snprintf(env->cgroup, sizeof(env->cgroup), "/sys/fs/cgroup/libckpt-kt-%d",
			 (int)getpid());
	} else {
		return kt_skip("no memory cgroup (v1 at /sys/fs/cgroup/memory or v2 at /sys/fs/cgroup)");
	}
	if (mkdir(env->cgroup, 0755) < 0 && errno != EEXIST)
		return kt_fail("mkdir %s: %s", env->cgroup, strerror(errno));
	kt_restore_push_rmdir(env->cgroup);
	env->cg_limit = CG_LIMIT;
	snprintf(val, sizeof(val), "%llu", (unsigned long long)CG_LIMIT);
	snprintf(path, sizeof(path), "%s/%s", env->cgroup,
		 env->cgroup_v2 ? "memory.max" : "memory.limit_in_bytes");
	rc = kt_write_file(path, val);
	if (rc < 0)
		return kt_fail("writing %s: %s", path, strerror(-rc));
	kt_note("memory cgroup %s (%s), limit %llu MiB", env->cgroup, env->cgroup_v2 ? "v2" : "v1",
		(unsigned long long)(CG_LIMIT >> 20));
	return KT_PASS;
}

int kt_setup_compaction(struct kt_env *env)
{
	/* /proc/sys/vm/compact_memory is a trigger, not a setting: nothing to
	 * restore; the machine lock keeps it away from other tests that
	 * measure memory layout.  Case g may also offline and re-online memory
	 * blocks (its second way to migrate pages): remember which blocks were
	 * offline already, and put every other one back online afterwards. */
	(void)env;
	if (access("/proc/sys/vm/compact_memory", W_OK) != 0)
		return kt_skip("kernel without compaction (/proc/sys/vm/compact_memory)");
	mem_blocks = 0;
	for (int i = 0; i < MAX_MEM_BLOCKS; i++) {
		int off = block_is_offline(i);

		if (off < 0)
			continue; /* holes in the numbering are normal */
		mem_offline_before[i] = (unsigned char)off;
		mem_blocks = i + 1;
	}
	if (mem_blocks)
		push(R_ONLINE_MEMORY, "", NULL);
	/* Clean page cache (a CI run leaves gigabytes of it: build trees,
	 * images) fills the free pages compaction needs as targets, and it
	 * then moved almost none of the case's pages (reproduced with 7 GB
	 * cached: 0-191 of 4096 moved).  Dropping it loses nothing and is a
	 * trigger too: nothing to restore. */
	sync();
	if (kt_write_file("/proc/sys/vm/drop_caches", "1") == 0)
		kt_note("dropped the clean page cache so that compaction has free pages to move into");
	return KT_PASS;
}
