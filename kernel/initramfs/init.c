/*
 * init.c - the whole userspace of the qemu guest used by `make -C kernel
 * matrix`: PID 1 in an initramfs that holds only this program, the static
 * suite (/kt) and the kernel modules it needs.
 *
 * It mounts what the suite reads (proc, sysfs, devtmpfs, a v1 memory
 * cgroup like the host's), loads the modules named in /modules.load in
 * order with finit_module (zram is a module in Debian's kernels, and zram
 * needs zsmalloc and its default compressor), runs /kt, prints its exit
 * status and powers the machine off.  No shell, no modprobe.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void try_mount(const char *src, const char *dst, const char *type, const char *opts)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, 0, opts) < 0)
		printf("init: mount %s on %s: %s\n", type, dst, strerror(errno));
}

static void load_modules(void)
{
	char line[512];
	FILE *f = fopen("/modules.load", "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		int fd;

		line[strcspn(line, "\n")] = '\0';
		if (!line[0])
			continue;
		fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			printf("init: %s: %s\n", line, strerror(errno));
			continue;
		}
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			printf("init: finit_module %s: %s\n", line, strerror(errno));
		else
			printf("init: loaded %s\n", strrchr(line, '/') ? strrchr(line, '/') + 1 : line);
		close(fd);
	}
	fclose(f);
}

int main(void)
{
	int status = 0, con;
	pid_t pid;

	try_mount("devtmpfs", "/dev", "devtmpfs", NULL);
	con = open("/dev/console", O_RDWR);
	if (con >= 0) {
		dup2(con, 0);
		dup2(con, 1);
		dup2(con, 2);
		if (con > 2)
			close(con);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	try_mount("proc", "/proc", "proc", NULL);
	try_mount("sysfs", "/sys", "sysfs", NULL);
	try_mount("tmpfs", "/run", "tmpfs", "mode=0755");
	try_mount("tmpfs", "/tmp", "tmpfs", NULL);
	/* the host has cgroup v1 memory at /sys/fs/cgroup/memory: do the same */
	try_mount("tmpfs", "/sys/fs/cgroup", "tmpfs", "mode=0755");
	try_mount("cgroup", "/sys/fs/cgroup/memory", "cgroup", "memory");
	load_modules();

	printf("init: running the suite\n");
	pid = fork();
	if (pid == 0) {
		/* KT_CASES=a,b on the kernel command line selects cases */
		char *argv[32] = { "/kt" };
		char *envp[] = { "PATH=/", "KT_TIMEOUT_SCALE=5", NULL }; /* TCG is slow */
		char *sel = getenv("KT_CASES");
		int n = 1;

		for (char *tok = sel ? strtok(sel, ",") : NULL; tok && n < 31; tok = strtok(NULL, ","))
			argv[n++] = tok;
		argv[n] = NULL;
		execve("/kt", argv, envp);
		printf("init: exec /kt: %s\n", strerror(errno));
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	printf("KT-EXIT %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
