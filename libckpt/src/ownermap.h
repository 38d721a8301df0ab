/*
 * ownermap.h - which block holds each page's newest contents, as sorted
 * intervals (a lazy restore's index: lazyrestore.c).
 *
 * Built per image from its run records and overlaid newest over oldest, so
 * its size follows the number of runs, not of pages: the up-front work of a
 * lazy restore stays flat as the heap grows.
 */
#ifndef CKPT_OWNERMAP_H
#define CKPT_OWNERMAP_H

#include <stddef.h>
#include <stdint.h>

#define CKPT__OWN_NONE UINT32_MAX  /* no image records the page: zero */
#define CKPT__OWN_ZERO 0x80000000u /* the owning block records the page as zero */

struct ckpt__seg {
	uint64_t first; /* page */
	uint32_t n;     /* pages (>= 1) */
	uint32_t own;   /* block index, | CKPT__OWN_ZERO for a zero run */
};

struct ckpt__ownermap {
	struct ckpt__seg *seg; /* sorted by first, disjoint */
	size_t n;
};

/* Sorts @s (@n intervals of one image) by page, unless they are in order
 * already (no allocation then); 0, or the index + 1 of the first interval
 * that overlaps the one before it. */
size_t ckpt__segs_sort(struct ckpt__seg *s, size_t n);

/* Lays the sorted, disjoint @s (@n intervals of a newer image, malloc'ed)
 * over @m: where both record a page, @s wins.  Takes @s: an empty @m
 * becomes @s itself (no copy), else @s is freed.  0 or -ENOMEM (@m
 * unchanged). */
int ckpt__ownermap_overlay(struct ckpt__ownermap *m, struct ckpt__seg *s, size_t n);

/* The index of the first interval of @m that ends after @page (m->n if
 * none). */
size_t ckpt__ownermap_find(const struct ckpt__ownermap *m, uint64_t page);

/* The owner of @page (CKPT__OWN_NONE if no interval holds it) and, in
 * *@run, how many pages from @page on have that same owner (up to @limit;
 * pages in no interval up to the next one count as one owner). */
uint32_t ckpt__ownermap_get(const struct ckpt__ownermap *m, uint64_t page, uint64_t limit,
			    uint64_t *run);

void ckpt__ownermap_free(struct ckpt__ownermap *m);

#endif /* CKPT_OWNERMAP_H */
