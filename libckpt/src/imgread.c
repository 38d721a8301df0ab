/*
 * imgread.c - reading an image's structure from files: headers, the footer
 * and trailer read at random (version 3: the block table with them), and
 * the resolution of an incremental chain from its tip.  Shared by the
 * stream reader (restore.c) and the lazy one (lazyrestore.c), so that the
 * two read a chain and a trailer the same way.
 *
 * Calls image.c (checks) and libc only.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgread.h"
#include "internal.h"

int ckpt__pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t k = pread(fd, p, n, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return CKPT_E_TRUNCATED;
		p += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

/* Fresh memory costs a page fault per 4 KiB page on first touch, about
 * 7 us each on the VM the restart was measured on (bench/results/
 * 2026-11-30-vm-restart.md): 3.5 ms for the 2 MiB trailer of an 8 GiB
 * image read into malloc'ed memory.  MAP_POPULATE maps it in one call,
 * about a third of that. */
void *ckpt__buf_alloc(size_t n)
{
	void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void ckpt__buf_free(void *p, size_t n)
{
	if (p)
		munmap(p, n ? n : 1);
}

/* The footer of @fd (a file of @size bytes), checked against the file. */
static int read_footer(int fd, const struct ckpt__img_header *h, uint64_t size, struct ckpt__footer *f,
		       char *err, size_t errsz)
{
	if (size < CKPT__IMG_HEADER_SIZE + sizeof(struct ckpt__trl_header) + 8 + sizeof(*f) ||
	    ckpt__pread_all(fd, f, sizeof(*f), size - sizeof(*f)) != 0)
		return ckpt__errf(err, errsz, CKPT_E_TRUNCATED,
				     "truncated: no footer at the end of the file (an incomplete image)");
	if (memcmp(f->magic, CKPT__IMG_FOOTER_MAGIC, sizeof(f->magic)) != 0) {
		/* a footer whose checksum holds with the right magic was
		 * damaged there; anything else is not a footer at all */
		struct ckpt__footer g = *f;
		memcpy(g.magic, CKPT__IMG_FOOTER_MAGIC, sizeof(g.magic));
		if (ckpt__footer_check(&g, NULL, 0) == 0)
			return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: footer magic");
		return ckpt__errf(err, errsz, CKPT_E_TRUNCATED,
				     "truncated: no footer at the end of the file (an incomplete image)");
	}
	int rc = ckpt__footer_check(f, err, errsz);
	if (rc)
		return rc;
	if (f->file_size != size || memcmp(f->id, h->id, 16) != 0 ||
	    f->trailer_offset < CKPT__IMG_HEADER_SIZE || f->trailer_size < sizeof(struct ckpt__trl_header) + 8 ||
	    f->trailer_offset + f->trailer_size != size - sizeof(*f))
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: footer does not match the file");
	return 0;
}

/* Footer and whole trailer of @fd in one read each: *trl_out (malloc'ed,
 * f->trailer_size bytes) holds the trailer header, the block index and,
 * from version 3, the block table.  Its checksum and size are checked here;
 * its counts against the blocks in index_image(). */
int ckpt__img_read_trailer(int fd, const struct ckpt__img_header *h, struct ckpt__footer *f,
			uint8_t **trl_out, char *err, size_t errsz)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return ckpt__errf(err, errsz, -errno, "%s", strerror(errno));
	int rc = read_footer(fd, h, (uint64_t)st.st_size, f, err, errsz);
	if (rc)
		return rc;
	/* the footer's checksum held: its sizes were written by a writer, and
	 * the file is that long, so this allocation is the file's own size */
	uint8_t *e = ckpt__buf_alloc(f->trailer_size);
	if (!e)
		return -ENOMEM;
	struct ckpt__trl_header t;
	rc = ckpt__pread_all(fd, e, f->trailer_size, f->trailer_offset);
	if (rc == CKPT_E_TRUNCATED)
		rc = ckpt__errf(err, errsz, rc, "truncated: trailer");
	if (!rc) {
		memcpy(&t, e, sizeof(t));
		rc = ckpt__trl_header_check(&t, err, errsz);
	}
	if (!rc && (t.offset != f->trailer_offset || t.nblocks > (1ull << 31) ||
		    f->trailer_size != ckpt__trl_size(h->version, t.nblocks, t.nruns, t.nchunks)))
		rc = ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: trailer does not match the footer");
	uint64_t tsum;
	if (!rc) {
		memcpy(&tsum, e + f->trailer_size - 8, 8);
		if (ckpt__hash(e, f->trailer_size - 8) != tsum)
			rc = ckpt__errf(err, errsz, CKPT_E_CORRUPT,
					   "corrupt: trailer block index checksum mismatch");
	}
	if (rc) {
		ckpt__buf_free(e, f->trailer_size);
		return rc;
	}
	*trl_out = e;
	return 0;
}

void ckpt__chain_free(struct link *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].path);
		if (l[i].fd >= 0)
			close(l[i].fd);
	}
	free(l);
}

int ckpt__img_read_header_fd(int fd, const char *path, struct ckpt__img_header *h, char *err,
			  size_t errsz)
{
	ssize_t n;
	do
		n = pread(fd, h, sizeof(*h), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return ckpt__errf(err, errsz, -errno, "%s: %s", path, strerror(errno));
	return ckpt__img_header_check(h, (size_t)n, err, errsz);
}

/* Opens @path (relative to @dirfd, or AT_FDCWD) into @k and checks its
 * header. */
int ckpt__link_open(struct link *k, int dirfd, const char *name, const char *path, char *err,
		     size_t errsz)
{
	k->path = strdup(path);
	if (!k->path)
		return -ENOMEM;
	k->fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (k->fd < 0)
		return ckpt__errf(err, errsz, -errno, "%s: %s", path, strerror(errno));
	return ckpt__img_read_header_fd(k->fd, path, &k->h, err, errsz);
}

static int read_header_path(const char *path, struct ckpt__img_header *h, char *err, size_t errsz)
{
	struct link k = { .fd = -1 };
	int rc = ckpt__link_open(&k, AT_FDCWD, path, path, err, errsz);
	*h = k.h;
	free(k.path);
	if (k.fd >= 0)
		close(k.fd);
	return rc;
}

int ckpt__image_read_header(const char *path, struct ckpt__img_header *hdr, char *err, size_t errsz)
{
	return read_header_path(path, hdr, err, errsz);
}

/* The directory the file open at @fd really lives in (its symlinks
 * resolved), opened; its path in *dir_out (malloc'ed).  -1 on failure. */
static int real_dir_of(int fd, const char *path, char **dir_out)
{
	char link[64], buf[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, sizeof(buf) - 1);
	if (n > 0 && buf[0] == '/') {
		buf[n] = 0;
	} else if (!realpath(path, buf)) { /* no /proc: the path as it resolves now */
		return -1;
	}
	char *slash = strrchr(buf, '/');
	if (slash == buf)
		slash[1] = 0;
	else
		*slash = 0;
	*dir_out = strdup(buf);
	if (!*dir_out)
		return -1;
	int dfd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		free(*dir_out);
		*dir_out = NULL;
	}
	return dfd;
}

/* Is @path no longer the file open at @fd (a newer image was published)? */
static bool tip_replaced(const char *path, int fd)
{
	struct stat a, b;
	return fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

/* Opens parent number @n of the chain (l[n-1] names it) in @dirfd. */
static int open_parent(struct link *l, size_t n, int dirfd, const char *dir, const char *tip,
		       char *err, size_t errsz)
{
	const struct ckpt__img_header *c = &l[n - 1].h;
	struct link *k = &l[n];
	char path[PATH_MAX], msg[200];
	snprintf(path, sizeof(path), "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", c->parent_name);
	int rc = ckpt__link_open(k, dirfd, c->parent_name, path, msg, sizeof(msg));
	if (rc == -ENOMEM)
		return rc;
	if (rc == -ENOENT && tip_replaced(tip, l[0].fd))
		return ckpt__errf(err, errsz, -EAGAIN,
				     "%s was replaced while its chain was read and parent %s is gone "
				     "(generations cleaned up): retry", tip, path);
	if (rc == -ENOENT)
		return ckpt__errf(err, errsz, CKPT_E_PARENT, "parent image %s is missing", path);
	if (rc)
		return ckpt__errf(err, errsz, rc, "%s", msg);
	if (memcmp(k->h.id, c->parent_id, 16) != 0 || k->h.generation != c->parent_generation ||
	    k->h.base != c->base || k->h.heap_size != c->heap_size || k->h.page_size != c->page_size)
		return ckpt__errf(err, errsz, CKPT_E_PARENT,
				     "parent image %s is not the one %s was made from", path, l[n - 1].path);
	return 0;
}

/* Resolves the chain ending at @path: links[0] is the tip, links[n-1] the
 * full image, each open.  Headers are checked, and each link against the
 * one that names it. */
int ckpt__chain_resolve(const char *path, struct link **out, size_t *nout, char *err, size_t errsz)
{
	size_t cap = 8, n = 1;
	struct link *l = calloc(cap, sizeof(*l));
	int dirfd = -1;
	char *dir = NULL;
	if (!l)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		l[i].fd = -1;
	int rc = ckpt__link_open(&l[0], AT_FDCWD, path, path, err, errsz);
	while (!rc && (l[n - 1].h.flags & CKPT__IMG_INCREMENTAL)) {
		if (n >= CKPT__MAX_CHAIN) {
			rc = ckpt__errf(err, errsz, CKPT_E_PARENT, "chain longer than %d images",
					   CKPT__MAX_CHAIN);
			break;
		}
		if (dirfd < 0 && (dirfd = real_dir_of(l[0].fd, path, &dir)) < 0) {
			rc = ckpt__errf(err, errsz, -errno, "the directory of %s: %s", path, strerror(errno));
			break;
		}
		if (n == cap) {
			void *p = realloc(l, 2 * cap * sizeof(*l));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			l = p;
			for (size_t i = cap; i < 2 * cap; i++)
				l[i] = (struct link){ .fd = -1 };
			cap *= 2;
		}
		rc = open_parent(l, n, dirfd, dir, path, err, errsz);
		n++;
	}
	if (dirfd >= 0)
		close(dirfd);
	free(dir);
	if (rc) {
		ckpt__chain_free(l, cap);
		return rc;
	}
	*out = l;
	*nout = n;
	return 0;
}

