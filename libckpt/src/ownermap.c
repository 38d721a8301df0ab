/*
 * ownermap.c - page -> owning block, as sorted intervals (ownermap.h).
 *
 * Owns nothing but its arrays; calls only libc.  Used by lazyrestore.c.
 */
#include <errno.h>
#include <stdlib.h>

#include "ownermap.h"

static int cmp_seg(const void *x, const void *y)
{
	const struct ckpt__seg *a = x, *b = y;
	return a->first < b->first ? -1 : a->first > b->first;
}

static uint64_t seg_end(const struct ckpt__seg *s)
{
	return s->first + s->n;
}

/* The index + 1 of the first of @s[from..n) that overlaps the one before
 * it, or 0; @s sorted. */
static size_t first_overlap(const struct ckpt__seg *s, size_t from, size_t n)
{
	for (size_t i = from; i < n; i++)
		if (seg_end(&s[i - 1]) > s[i].first)
			return i + 1;
	return 0;
}

size_t ckpt__segs_sort(struct ckpt__seg *s, size_t n)
{
	/* A writer lays an image's pages out in page order, but for those the
	 * application wrote during the checkpoint (trapped: emitted first):
	 * usually nothing to sort (glibc's qsort() allocates), and then one
	 * pass checks the order and the overlaps together - an overlap inside
	 * a sorted prefix is one in the sorted whole too. */
	for (size_t i = 1; i < n; i++) {
		if (s[i - 1].first > s[i].first) {
			qsort(s, n, sizeof(*s), cmp_seg);
			return first_overlap(s, 1, n);
		}
		if (seg_end(&s[i - 1]) > s[i].first)
			return i + 1;
	}
	return 0;
}

/* @old minus what @nw covers, into @out (room for nold + nnew pieces: each
 * interval of @nw splits at most one piece of @old in two). */
static size_t subtract(const struct ckpt__seg *old, size_t nold, const struct ckpt__seg *nw, size_t nn,
		       struct ckpt__seg *out)
{
	size_t k = 0, o = 0;
	for (size_t i = 0; i < nold; i++) {
		uint64_t cur = old[i].first, end = seg_end(&old[i]);
		while (k < nn && seg_end(&nw[k]) <= cur)
			k++;
		for (size_t m = k; cur < end;) {
			if (m < nn && nw[m].first < end) {
				if (nw[m].first > cur)
					out[o++] = (struct ckpt__seg){ cur, (uint32_t)(nw[m].first - cur), old[i].own };
				if (seg_end(&nw[m]) > cur)
					cur = seg_end(&nw[m]);
				m++;
			} else {
				out[o++] = (struct ckpt__seg){ cur, (uint32_t)(end - cur), old[i].own };
				cur = end;
			}
		}
	}
	return o;
}

int ckpt__ownermap_overlay(struct ckpt__ownermap *m, struct ckpt__seg *s, size_t n)
{
	if (!m->seg) {
		/* the first image (the chain's oldest, or a full image alone):
		 * it is the map as it stands */
		m->seg = s;
		m->n = n;
		return 0;
	}
	struct ckpt__seg *rest = malloc((m->n + n + 1) * sizeof(*rest));
	struct ckpt__seg *out = malloc((2 * m->n + 2 * n + 1) * sizeof(*out));
	if (!rest || !out) {
		free(rest);
		free(out);
		free(s);
		return -ENOMEM;
	}
	size_t nr = subtract(m->seg, m->n, s, n, rest), i = 0, j = 0, o = 0;
	/* both sorted and disjoint from each other: a merge */
	while (i < nr || j < n)
		out[o++] = j == n || (i < nr && rest[i].first < s[j].first) ? rest[i++] : s[j++];
	free(rest);
	free(s);
	free(m->seg);
	m->seg = out;
	m->n = o;
	return 0;
}

size_t ckpt__ownermap_find(const struct ckpt__ownermap *m, uint64_t page)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (seg_end(&m->seg[mid]) <= page)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint32_t ckpt__ownermap_get(const struct ckpt__ownermap *m, uint64_t page, uint64_t limit, uint64_t *run)
{
	size_t i = ckpt__ownermap_find(m, page);
	uint64_t end = limit;
	uint32_t own = CKPT__OWN_NONE;
	if (i < m->n && m->seg[i].first <= page) {
		own = m->seg[i].own;
		end = seg_end(&m->seg[i]);
	} else if (i < m->n) {
		end = m->seg[i].first; /* a gap up to the next interval */
	}
	if (end > limit)
		end = limit;
	*run = end > page ? end - page : 1;
	return own;
}

void ckpt__ownermap_free(struct ckpt__ownermap *m)
{
	free(m->seg);
	m->seg = NULL;
	m->n = 0;
}
