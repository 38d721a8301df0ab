/*
 * image_util.h - helpers for the image tests (tests/test_image*.c,
 * tests/fi_test_image*.c): synthetic heaps, driving the file sink
 * directly, comparing contents.  Header-only (static inline) so that it
 * stays out of every other test binary.
 */
#ifndef CKPT_IMAGE_UTIL_H
#define CKPT_IMAGE_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "image.h"
#include "internal.h"
#include "util/testutil.h"

static inline uint64_t iu_rand(uint64_t *s)
{
	return ckpt_test_rand(s);
}

/* Fills @npages pages with a mix the writer must handle: incompressible
 * random pages, compressible text-like pages and all-zero pages.  Returns
 * the count of all-zero pages. */
static inline uint64_t iu_fill(uint8_t *mem, uint64_t npages, size_t psz, uint64_t seed)
{
	uint64_t st = seed, zeros = 0;
	static const char words[] = "checkpoint heap page writer restore image block ";
	for (uint64_t p = 0; p < npages; p++) {
		uint8_t *pg = mem + p * psz;
		switch (iu_rand(&st) % 4) {
		case 0:
			memset(pg, 0, psz);
			zeros++;
			break;
		case 1:
			for (size_t i = 0; i < psz; i += 8) {
				uint64_t v = iu_rand(&st);
				memcpy(pg + i, &v, 8);
			}
			break;
		default:
			for (size_t i = 0; i < psz; i++)
				pg[i] = (uint8_t)words[(i + p) % (sizeof(words) - 1)];
			memcpy(pg, &p, sizeof(p)); /* no two pages alike */
			break;
		}
	}
	return zeros;
}

static inline struct ckpt_sink_info iu_info(uint64_t base, uint64_t heap_size, uint32_t psz,
					    uint64_t npages, uint64_t seed)
{
	struct ckpt_sink_info in;
	memset(&in, 0, sizeof(in));
	in.base = base;
	in.heap_size = heap_size;
	in.page_size = psz;
	in.npages = npages;
	in.pages_to_emit = npages;
	in.generation = 1;
	in.created_ns = 1700000000000000000ull;
	uint64_t s = seed;
	for (int i = 0; i < 16; i += 8) {
		uint64_t v = iu_rand(&s);
		memcpy(in.id + i, &v, 8);
	}
	return in;
}

/* Emits @list (page numbers) through @sink in runs of consecutive entries,
 * each run as one pages() call; runs of all-zero pages sometimes as
 * data == NULL. */
static inline int iu_emit(const struct ckpt_sink *s, const uint8_t *mem, size_t psz,
			  const uint64_t *list, uint64_t n, uint64_t *st)
{
	uint64_t i = 0;
	while (i < n) {
		uint64_t j = i + 1;
		uint64_t lim = 1 + iu_rand(st) % 64;
		while (j < n && j - i < lim && list[j] == list[j - 1] + 1)
			j++;
		const uint8_t *d = mem + list[i] * psz;
		bool allzero = true;
		for (uint64_t k = i; k < j && allzero; k++)
			for (size_t b = 0; b < psz; b++)
				if (mem[list[k] * psz + b]) {
					allzero = false;
					break;
				}
		if (allzero && iu_rand(st) % 2)
			d = NULL;
		int rc = s->pages(s->arg, list[i], (uint32_t)(j - i), d);
		if (rc)
			return rc;
		i = j;
	}
	return 0;
}

/* Writes an image of @mem through the library's file sink.  With @pages
 * NULL: every page of the extent, in a shuffled order of runs (blocks out
 * of order, as when trapped pages go first); else only the listed pages. */
static inline int iu_write(const struct ckpt_dest *dest, const struct ckpt_begin_opts *opts,
			   const struct ckpt_sink_info *info, const uint8_t *mem,
			   const uint64_t *pages, uint64_t npages_listed, uint64_t seed)
{
	struct ckpt_sink s;
	int rc = ckpt__file_sink_open(dest, opts, NULL, NULL, &s);
	if (rc)
		return rc;
	uint64_t st = seed ^ 0x5eed;
	uint64_t n = pages ? npages_listed : info->npages;
	uint64_t *list = malloc((n ? n : 1) * sizeof(*list));
	if (!list)
		return s.end(s.arg, -ENOMEM);
	if (pages) {
		memcpy(list, pages, n * sizeof(*list));
	} else {
		/* chunks of 32 pages in random order, pages inside in order */
		uint64_t nch = (n + 31) / 32, *ord = malloc((nch ? nch : 1) * sizeof(*ord)), k = 0;
		for (uint64_t c = 0; c < nch; c++)
			ord[c] = c;
		for (uint64_t c = nch; c > 1; c--) {
			uint64_t r = iu_rand(&st) % c, t = ord[c - 1];
			ord[c - 1] = ord[r];
			ord[r] = t;
		}
		for (uint64_t c = 0; c < nch; c++)
			for (uint64_t p = ord[c] * 32; p < n && p < ord[c] * 32 + 32; p++)
				list[k++] = p;
		free(ord);
	}
	rc = s.begin(s.arg, info);
	if (!rc)
		rc = iu_emit(&s, mem, info->page_size, list, n, &st);
	free(list);
	return s.end(s.arg, rc);
}

static inline int iu_load(const char *path, uint8_t **mem_out, size_t *size_out, char *err,
			  size_t errsz)
{
	struct ckpt__load_opts lo = { .chain = true };
	struct ckpt__img_header h;
	int rc = ckpt__image_load_anon(path, &lo, &h, mem_out, err, errsz);
	if (!rc)
		*size_out = h.heap_size;
	return rc;
}

static inline char *iu_tmpdir(const char *tag)
{
	char *d = malloc(256);
	snprintf(d, 256, "/tmp/ckpt-img-%s.XXXXXX", tag);
	cr_assert(mkdtemp(d), "mkdtemp: %s", strerror(errno));
	return d;
}

static inline void iu_rmtree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	char p[512];
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static inline int iu_count_names(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	int n = 0;
	if (!d)
		return -1;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strstr(de->d_name, needle))
			n++;
	closedir(d);
	return n;
}

/* Is any page of [addr, addr+len) mapped?  (msync fails with ENOMEM on
 * unmapped pages; probe page by page over a short range, by the first and
 * last page otherwise.) */
static inline bool iu_range_mapped(uint64_t addr, uint64_t len)
{
	void *p = mmap((void *)(uintptr_t)addr, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return errno == EEXIST;
	munmap(p, len);
	return p != (void *)(uintptr_t)addr;
}

static inline uint8_t *iu_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	fstat(fd, &st);
	uint8_t *b = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t k = read(fd, b + got, (size_t)st.st_size - got);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(fd);
	*len = got;
	return b;
}

static inline int iu_write_file(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	const uint8_t *b = p;
	size_t done = 0;
	while (done < len) {
		ssize_t k = write(fd, b + done, len - done);
		if (k <= 0) {
			close(fd);
			return -EIO;
		}
		done += (size_t)k;
	}
	close(fd);
	return 0;
}

/* Rewrites the version-3 or 4 image in @img (@len bytes) in place as a
 * version @v (1 to 3, below its own) image, as an older writer made it:
 * the trailer's block table loses its chunk hashes (3) or goes (1-2), and
 * every checksum that covers a changed byte is recomputed.  Returns the new
 * length (shorter), or 0 if @img is not a sound version 3-4 image. */
static inline size_t iu_downgrade(uint8_t *img, size_t len, uint32_t v)
{
	struct ckpt__img_header h;
	struct ckpt__footer f;
	struct ckpt__trl_header t;
	if (len < sizeof(h) + sizeof(f))
		return 0;
	memcpy(&h, img, sizeof(h));
	memcpy(&f, img + len - sizeof(f), sizeof(f));
	if (h.version < 3 || v >= h.version || v < 1 || f.trailer_offset + f.trailer_size + sizeof(f) != len ||
	    (v == 1 && h.app_tag[0]))
		return 0;
	memcpy(&t, img + f.trailer_offset, sizeof(t));
	uint32_t chunk = ckpt__img_chunk_size(&h);
	h.version = v;
	h.chunk_size = 0; /* reserved (zero) before version 4 */
	ckpt__img_header_seal(&h);
	memcpy(img, &h, sizeof(h));
	size_t elen = (size_t)t.nblocks * sizeof(struct ckpt__trl_entry);
	uint8_t *e = img + f.trailer_offset;
	size_t tlen = 0; /* the block table, rewritten in place (it only shrinks) */
	if (v == 3) {
		uint8_t *tb = e + sizeof(t) + elen;
		size_t in = 0;
		for (uint64_t k = 0; k < t.nblocks; k++) {
			struct ckpt__blk_header b;
			memcpy(&b, tb + in, sizeof(b));
			size_t keep = sizeof(b) + (size_t)b.nruns * sizeof(struct ckpt__run);
			memmove(tb + tlen, tb + in, keep);
			tlen += keep;
			in += ckpt__trl_table_bytes(&b, chunk);
		}
	}
	t.nchunks = 0;
	ckpt__trl_header_seal(&t);
	memcpy(e, &t, sizeof(t));
	uint64_t tsum = ckpt__hash(e, sizeof(t) + elen + tlen);
	memcpy(e + sizeof(t) + elen + tlen, &tsum, 8);
	f.trailer_size = sizeof(t) + elen + tlen + 8;
	size_t foff = f.trailer_offset + f.trailer_size;
	f.file_size = foff + sizeof(f);
	f.file_hash = ckpt__img_digest(img, foff);
	ckpt__footer_seal(&f);
	memcpy(img + foff, &f, sizeof(f));
	return foff + sizeof(f);
}

static inline struct ckpt_begin_opts iu_opts(int level, unsigned flags)
{
	struct ckpt_begin_opts o;
	ckpt_begin_opts_init(&o);
	o.zstd_level = level;
	o.flags = flags;
	return o;
}

#endif
