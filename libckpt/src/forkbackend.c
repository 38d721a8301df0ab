/*
 * forkbackend.c - the fork() backend: the snapshot is the copy-on-write
 * view of a forked child, as Redis's BGSAVE does it.
 *
 * It is the fallback for kernels that fail the probe and the baseline that
 * bench/ measures libckpt against.  The child streams the heap's pages
 * through a pipe to the parent's writer thread, which feeds the same sink
 * the userfaultfd backends use; so every destination works unchanged.
 * The child runs only async-signal-safe code (it is the fork of a possibly
 * multi-threaded process): loads, write(2), _exit(2).
 *
 * checkpoint.c reaches it through ckpt__backend_fork; calls only util.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"

#define FRAME_PAGES 64
#define FRAME_END 0xffffffffu

struct frame {
	uint64_t first;
	uint32_t npages; /* FRAME_END: end of stream */
	uint32_t zero;   /* 1: npages zero pages, no payload */
};

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static __attribute__((noreturn)) void child_main(ckpt_heap *h, size_t npages, int fd)
{
	size_t q = 0;
	while (q < npages) {
		bool z = ckpt__page_is_zero(h->base + (q << h->page_shift), h->page_size);
		size_t r = q + 1;
		while (r < npages && r - q < FRAME_PAGES &&
		       ckpt__page_is_zero(h->base + (r << h->page_shift), h->page_size) == z)
			r++;
		struct frame f = {q, (uint32_t)(r - q), z};
		if (write_all(fd, &f, sizeof(f)) ||
		    (!z && write_all(fd, h->base + (q << h->page_shift), (r - q) << h->page_shift)))
			_exit(1);
		q = r;
	}
	struct frame end = {0, FRAME_END, 0};
	_exit(write_all(fd, &end, sizeof(end)) ? 1 : 0);
}

/* The cut: the fork() is the instant; every page of the extent goes out. */
static int fork_cut(ckpt_heap *h, struct ckpt__engine *e, size_t ext)
{
	int p[2];

	e->to_emit = ext;
	e->info.pages_to_emit = ext;

	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	fcntl(p[1], F_SETPIPE_SZ, 1 << 20); /* fewer wake-ups; best effort */
	pid_t pid = fork();
	if (pid < 0) {
		int rc = -errno;
		close(p[0]);
		close(p[1]);
		return rc;
	}
	if (pid == 0) {
		close(p[0]);
		child_main(h, e->ck_npages, p[1]);
	}
	close(p[1]);
	e->child = pid;
	e->pipe_rd = p[0];
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE; /* the child died early */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fork_stream(ckpt_heap *h, struct ckpt__engine *e)
{
	struct frame f;
	int rc;

	for (;;) {
		if (atomic_load(&e->cancel))
			return CKPT_E_CANCELED;
		rc = read_all(e->pipe_rd, &f, sizeof(f));
		if (rc)
			return atomic_load(&e->cancel) ? CKPT_E_CANCELED : rc;
		if (f.npages == FRAME_END)
			break;
		if (f.npages == 0 || f.npages > FRAME_PAGES || f.first + f.npages > e->ck_npages)
			return -EIO;
		if (!f.zero) {
			rc = read_all(e->pipe_rd, e->wbuf, (size_t)f.npages << h->page_shift);
			if (rc)
				return atomic_load(&e->cancel) ? CKPT_E_CANCELED : rc;
		}
		rc = e->sink.pages(e->sink.arg, f.first, f.npages, f.zero ? NULL : e->wbuf);
		if (rc < 0)
			return rc;
		atomic_fetch_add(&e->st.emitted, f.npages);
		if (f.zero)
			atomic_fetch_add(&e->st.zero, f.npages);
	}
	return atomic_load(&e->st.emitted) == e->to_emit ? 0 : -EIO;
}

/* Reap the child (after a complete stream it has exited; after a failure
 * or cancel it is killed), and the checkpoint is over.
 *
 * ckpt_cancel() and ckpt_heap_destroy() kill e->child under e->lock, so
 * the reap and the clearing of e->child happen under it too: once
 * waitpid() has reaped the child its pid is free for reuse, and a kill
 * between the reap and "e->child = 0" could hit an unrelated process.
 * Holding the lock across waitpid() is short: the child has exited or has
 * just been sent SIGKILL. */
static void fork_settle(ckpt_heap *h, struct ckpt__engine *e, int rc)
{
	int status;

	pthread_mutex_lock(&e->lock);
	if (e->child > 0) {
		if (waitpid(e->child, &status, WNOHANG) == 0) {
			kill(e->child, SIGKILL);
			while (waitpid(e->child, &status, 0) < 0 && errno == EINTR)
				;
		}
		e->child = 0;
	}
	pthread_mutex_unlock(&e->lock);
	if (e->pipe_rd >= 0) {
		close(e->pipe_rd);
		e->pipe_rd = -1;
	}
	atomic_store(&e->phase, PH_IDLE);
	atomic_store(&e->active, 0);
}

/* Cancel and destroy stop a running child at once; the writer reaps it
 * (fork_settle).  Called with e->lock held. */
static void fork_interrupt(ckpt_heap *h)
{
	struct ckpt__engine *e = h->eng;
	if (e->child > 0)
		kill(e->child, SIGKILL);
}

const struct ckpt__backend ckpt__backend_fork = {
	.name = "fork",
	.tracks_pages = false,
	.cut = fork_cut,
	.stream = fork_stream,
	.settle = fork_settle,
	.interrupt = fork_interrupt,
};
