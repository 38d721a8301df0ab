/*
 * imgread.h - reading an image's structure from files (imgread.c): shared
 * by restore.c (the stream reader) and lazyrestore.c (the lazy one).
 */
#ifndef CKPT_IMGREAD_H
#define CKPT_IMGREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

/* pread(2) of exactly @n bytes at @off: 0, CKPT_E_TRUNCATED at the end of
 * the file, or -errno. */
int ckpt__pread_all(int fd, void *buf, size_t n, uint64_t off);

/* The header at offset 0 of @fd, checked (ckpt__img_header_check()). */
int ckpt__img_read_header_fd(int fd, const char *path, struct ckpt__img_header *h, char *err,
			     size_t errsz);

/* Memory for an image's structure, mapped before it is returned (one
 * call instead of a page fault per page); NULL if none.  Freed with
 * ckpt__buf_free() and the same @n. */
void *ckpt__buf_alloc(size_t n);
void ckpt__buf_free(void *p, size_t n);

/* Footer and whole trailer of @fd (header @h checked), one read each:
 * *@trl_out (ckpt__buf_alloc(), f->trailer_size bytes) holds the trailer header,
 * the block index and, from version 3, the block table.  The footer is
 * checked against the file, the trailer's checksum and size against the
 * footer; its counts are the caller's to check against the blocks. */
int ckpt__img_read_trailer(int fd, const struct ckpt__img_header *h, struct ckpt__footer *f,
			   uint8_t **trl_out, char *err, size_t errsz);

/*
 * A chain is read through the fds its resolution opened: each file is
 * opened exactly once, so a concurrent publish (a rename over the tip) or
 * clean-up of old generations cannot swap a file between the header check
 * and the read.  Parents are opened with openat() on the directory the tip
 * really lives in (a symlinked tip names parents next to its target).
 */
struct link {
	char *path; /* for messages */
	int fd;
	struct ckpt__img_header h;
};

/* Opens @name (relative to @dirfd, or AT_FDCWD) into @k, named @path in
 * messages, and checks its header. */
int ckpt__link_open(struct link *k, int dirfd, const char *name, const char *path, char *err,
		    size_t errsz);

/* Resolves the chain ending at @path: (*out)[0] is the tip, (*out)[n-1]
 * the full image, each open with its header checked, and each link against
 * the one that names it (id, generation, geometry): CKPT_E_PARENT, or
 * -EAGAIN when the tip was replaced meanwhile and a parent is gone. */
int ckpt__chain_resolve(const char *path, struct link **out, size_t *nout, char *err, size_t errsz);

/* Closes and frees @n links (fds < 0 are skipped). */
void ckpt__chain_free(struct link *l, size_t n);

#endif /* CKPT_IMGREAD_H */
