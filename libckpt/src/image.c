/*
 * image.c - the on-disk image format: sealing and checking of its
 * structures (layout in image.h and docs/image-format.md).
 *
 * Every check here runs on bytes whose checksum has already matched or is
 * the checksum test itself: a value from an image is used only after it has
 * been both checksummed and range-checked.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "image.h"
#include "internal.h"

uint64_t ckpt__hash(const void *p, size_t n)
{
	return XXH3_64bits(p, n);
}

void ckpt__img_header_seal(struct ckpt__img_header *h)
{
	h->checksum = ckpt__hash(h, offsetof(struct ckpt__img_header, checksum));
}

void ckpt__blk_header_seal(struct ckpt__blk_header *b)
{
	b->checksum = ckpt__hash(b, offsetof(struct ckpt__blk_header, checksum));
}

void ckpt__trl_header_seal(struct ckpt__trl_header *t)
{
	t->checksum = ckpt__hash(t, offsetof(struct ckpt__trl_header, checksum));
}

/* The footer's checksum also covers its magic, which follows it. */
static uint64_t footer_hash(const struct ckpt__footer *f)
{
	XXH3_state_t st;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, f, offsetof(struct ckpt__footer, checksum));
	XXH3_64bits_update(&st, f->magic, sizeof(f->magic));
	return XXH3_64bits_digest(&st);
}

void ckpt__footer_seal(struct ckpt__footer *f)
{
	f->checksum = footer_hash(f);
}

bool ckpt__img_name_ok(const char *name, size_t max)
{
	size_t n = strnlen(name, max);
	if (n == 0 || n == max)
		return false;
	if (memchr(name, '/', n))
		return false;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	return true;
}

static bool pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

int ckpt__img_header_check(const void *p, size_t avail, char *err, size_t errsz)
{
	const struct ckpt__img_header *h = p;
	const char *m = CKPT__IMG_MAGIC;
	size_t mlen = sizeof(h->magic);

	/* A prefix of the magic is a truncated image; anything else is not
	 * ours.  An empty file is reported as truncated: that is what an
	 * interrupted non-atomic copy of an image leaves. */
	if (memcmp(p, m, avail < mlen ? avail : mlen) != 0)
		return ckpt__errf(err, errsz, CKPT_E_NOTIMAGE, "not a libckpt image (bad magic)");
	if (avail < mlen + sizeof(h->version))
		return ckpt__errf(err, errsz, CKPT_E_TRUNCATED,
				     "truncated: the file ends inside the header (%zu bytes)", avail);
	/* The version is judged before the checksum: a later version may
	 * lay out the rest of the header differently. */
	if (h->version < CKPT__IMG_VERSION_MIN || h->version > CKPT__IMG_VERSION)
		return ckpt__errf(err, errsz, CKPT_E_VERSION,
				     "image format version %u is not supported (this library reads %u to %u)",
				     h->version, CKPT__IMG_VERSION_MIN, CKPT__IMG_VERSION);
	if (avail < sizeof(*h))
		return ckpt__errf(err, errsz, CKPT_E_TRUNCATED,
				     "truncated: the file ends inside the header (%zu bytes)", avail);
	if (ckpt__hash(h, offsetof(struct ckpt__img_header, checksum)) != h->checksum)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: header checksum mismatch");

	/* From here on the header is what a writer wrote: a failing field is
	 * a writer bug or a forged file, reported as corrupt. */
	if (h->header_size != CKPT__IMG_HEADER_SIZE)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: header size %u", h->header_size);
	/* version 1 had zero here; versions 2 and 3 a NUL-terminated tag */
	if (h->version == 1 ? h->app_tag[0] != 0 : strnlen(h->app_tag, CKPT_APP_TAG_MAX) == CKPT_APP_TAG_MAX)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: application tag field");
	if (!pow2(h->page_size) || h->page_size < 4096 || h->page_size > CKPT__MAX_PAGE_SIZE)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: page size %u", h->page_size);
	if (h->version >= CKPT__IMG_VERSION_CHUNKS &&
	    (!pow2(h->chunk_size) || h->chunk_size < h->page_size || h->chunk_size > CKPT__MAX_BLOCK_RAW))
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: chunk size %u", h->chunk_size);
	if (h->flags & ~CKPT__IMG_KNOWN_FLAGS)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: unknown header flags %#x",
				     h->flags);
	if (h->zstd_level < 0 || h->zstd_level > 22)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: zstd level %d", h->zstd_level);
	/* Whether the range lies in this process's user space is the
	 * restorer's question (CKPT_E_RANGE); here only its shape. */
	if (h->heap_size == 0 || h->heap_size % h->page_size || h->base % h->page_size ||
	    h->heap_size > UINT64_MAX - h->base)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: heap range %#llx + %#llx is not page-aligned",
				     (unsigned long long)h->base, (unsigned long long)h->heap_size);
	if (h->npages > h->heap_size / h->page_size || h->pages_to_emit > h->npages)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: page counts (extent %llu, recorded %llu) exceed the heap",
				     (unsigned long long)h->npages, (unsigned long long)h->pages_to_emit);
	if (!(h->flags & CKPT__IMG_INCREMENTAL) && h->pages_to_emit != h->npages)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: a full image must record all %llu pages of its extent",
				     (unsigned long long)h->npages);
	if (h->flags & CKPT__IMG_INCREMENTAL) {
		if (h->parent_name_len == 0 || h->parent_name_len >= CKPT__PARENT_NAME_MAX ||
		    strnlen(h->parent_name, CKPT__PARENT_NAME_MAX) != h->parent_name_len ||
		    !ckpt__img_name_ok(h->parent_name, CKPT__PARENT_NAME_MAX))
			return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
					     "corrupt: incremental image with a bad parent name");
		if (h->generation == 0 || h->parent_generation >= h->generation)
			return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
					     "corrupt: parent generation %llu not before %llu",
					     (unsigned long long)h->parent_generation,
					     (unsigned long long)h->generation);
	} else if (h->parent_name_len != 0) {
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: full image names a parent");
	}
	return 0;
}

int ckpt__blk_header_check(const struct ckpt__blk_header *b, uint64_t seq, uint32_t page_size,
			   char *err, size_t errsz)
{
	unsigned long long s = (unsigned long long)seq;
	if (b->seq != seq)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: block %llu is numbered %llu", s,
				     (unsigned long long)b->seq);
	if (b->flags & ~CKPT__BLK_ZSTD)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: block %llu flags %#x", s,
				     b->flags);
	if (b->nruns == 0 || b->nruns > CKPT__MAX_BLOCK_RUNS)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: block %llu has %u runs", s,
				     b->nruns);
	uint64_t raw = (uint64_t)b->data_pages * page_size;
	if (raw > CKPT__MAX_BLOCK_RAW && b->data_pages > 1)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: block %llu holds %u pages (too many)", s, b->data_pages);
	if (!(b->flags & CKPT__BLK_ZSTD) && b->raw_hash != 0)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: stored block %llu carries a raw hash", s);
	if (!(b->flags & CKPT__BLK_ZSTD) && b->data_len != raw)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: block %llu stores %u bytes for %u pages", s, b->data_len,
				     b->data_pages);
	if ((b->flags & CKPT__BLK_ZSTD) && (b->data_pages == 0 || b->data_len == 0 ||
					    b->data_len > raw + (raw >> 7) + 4096))
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: block %llu compressed length %u", s, b->data_len);
	return 0;
}

int ckpt__runs_check(const struct ckpt__blk_header *b, const struct ckpt__run *runs,
		     uint64_t npages, char *err, size_t errsz)
{
	uint64_t data = 0, zero = 0;
	unsigned long long s = (unsigned long long)b->seq;
	for (uint32_t i = 0; i < b->nruns; i++) {
		const struct ckpt__run *r = &runs[i];
		if (r->npages == 0 || r->kind > CKPT__RUN_ZERO || r->first_page >= npages ||
		    r->npages > npages - r->first_page)
			return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
					     "corrupt: block %llu run %u (pages %llu+%u) outside the extent of %llu pages",
					     s, i, (unsigned long long)r->first_page, r->npages,
					     (unsigned long long)npages);
		if (r->kind == CKPT__RUN_DATA)
			data += r->npages;
		else
			zero += r->npages;
	}
	if (data != b->data_pages || zero != b->zero_pages)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: block %llu runs count %llu data / %llu zero pages, header says %u / %u",
				     s, (unsigned long long)data, (unsigned long long)zero, b->data_pages,
				     b->zero_pages);
	return 0;
}

int ckpt__trl_header_check(const struct ckpt__trl_header *t, char *err, size_t errsz)
{
	if (t->magic != CKPT__TRL_MAGIC ||
	    ckpt__hash(t, offsetof(struct ckpt__trl_header, checksum)) != t->checksum)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: trailer header checksum mismatch");
	return 0;
}

uint64_t ckpt__trl_size(uint32_t version, uint64_t nblocks, uint64_t nruns, uint64_t nchunks)
{
	/* bounds far above any real image (a block holds >= 1 page, a run
	 * or a chunk >= 1 page), so that nothing below can overflow */
	if (nblocks > (1ull << 40) || nruns > (1ull << 44) || nchunks > (1ull << 44))
		return 0;
	uint64_t n = sizeof(struct ckpt__trl_header) + nblocks * sizeof(struct ckpt__trl_entry) + 8;
	if (version >= CKPT__IMG_VERSION_TABLE)
		n += nblocks * sizeof(struct ckpt__blk_header) + nruns * sizeof(struct ckpt__run);
	if (version >= CKPT__IMG_VERSION_CHUNKS)
		n += nchunks * 8;
	else if (nchunks)
		return 0; /* the field was reserved (zero) before */
	return n;
}

void ckpt__chunk_hashes(const void *data, size_t len, uint32_t chunk, uint64_t *out)
{
	const uint8_t *p = data;
	for (size_t off = 0, k = 0; off < len; off += chunk, k++)
		out[k] = ckpt__hash(p + off, len - off < chunk ? len - off : chunk);
}

int ckpt__blk_indexed_check(const struct ckpt__blk_header *b, const struct ckpt__trl_entry *en,
			    uint64_t seq, uint64_t at, uint32_t page_size, char *err, size_t errsz)
{
	unsigned long long s = (unsigned long long)seq;
	if (b->magic != CKPT__BLK_MAGIC ||
	    ckpt__hash(b, offsetof(struct ckpt__blk_header, checksum)) != b->checksum)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: block %llu header checksum mismatch (offset %llu)", s,
				     (unsigned long long)at);
	int rc = ckpt__blk_header_check(b, seq, page_size, err, errsz);
	if (rc)
		return rc;
	uint64_t len = sizeof(*b) + (uint64_t)b->data_len + (uint64_t)b->nruns * sizeof(struct ckpt__run);
	if (en->offset != at || en->checksum != b->checksum || en->length != len ||
	    en->data_pages != b->data_pages || en->zero_pages != b->zero_pages || en->nruns != b->nruns)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT,
				     "corrupt: block %llu does not match its trailer entry", s);
	return 0;
}

int ckpt__footer_check(const struct ckpt__footer *f, char *err, size_t errsz)
{
	if (memcmp(f->magic, CKPT__IMG_FOOTER_MAGIC, sizeof(f->magic)) != 0 ||
	    footer_hash(f) != f->checksum)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: footer checksum mismatch");
	if (f->trailer_size < sizeof(struct ckpt__trl_header) + 8 ||
	    f->trailer_offset < CKPT__IMG_HEADER_SIZE ||
	    f->file_size != f->trailer_offset + f->trailer_size + sizeof(*f))
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: footer offsets inconsistent");
	return 0;
}

int ckpt__img_header_encode(struct ckpt__img_header *h, const struct ckpt_sink_info *info, int zstd_level)
{
	size_t taglen = strnlen(info->app_tag, sizeof(info->app_tag));
	if (taglen == sizeof(info->app_tag))
		return -EINVAL;
	memcpy(h->magic, CKPT__IMG_MAGIC, sizeof(h->magic));
	/* version 4 for every image: its trailer carries the block table
	 * with chunk hashes (a library that reads only versions 1-3 refuses
	 * it, CKPT_E_VERSION) */
	h->version = CKPT__IMG_VERSION;
	h->chunk_size = info->page_size > CKPT__CHUNK_SIZE ? info->page_size : CKPT__CHUNK_SIZE;
	memcpy(h->app_tag, info->app_tag, taglen);
	h->header_size = CKPT__IMG_HEADER_SIZE;
	h->page_size = info->page_size;
	h->flags = (info->flags & CKPT_SINK_INCREMENTAL) | (zstd_level > 0 ? CKPT__IMG_ZSTD : 0);
	h->zstd_level = zstd_level;
	h->base = info->base;
	h->heap_size = info->heap_size;
	h->npages = info->npages;
	h->pages_to_emit = info->pages_to_emit;
	h->generation = info->generation;
	h->created_ns = info->created_ns;
	h->root = info->root;
	memcpy(h->id, info->id, 16);
	if (info->flags & CKPT_SINK_INCREMENTAL)
		memcpy(h->parent_id, info->parent_id, 16);
	ckpt__img_header_seal(h);
	return 0;
}

void ckpt__img_header_to_sink_info(const struct ckpt__img_header *h, struct ckpt_sink_info *info)
{
	*info = (struct ckpt_sink_info){ .base = h->base, .heap_size = h->heap_size, .page_size = h->page_size,
					 .npages = h->npages, .pages_to_emit = h->npages,
					 .generation = h->generation, .created_ns = h->created_ns, .root = h->root };
	memcpy(info->id, h->id, 16);
	memcpy(info->app_tag, h->app_tag, sizeof(info->app_tag));
	info->app_tag[sizeof(info->app_tag) - 1] = 0;
}

void ckpt__img_header_to_info(const struct ckpt__img_header *h, struct ckpt_image_info *info)
{
	*info = (struct ckpt_image_info){ .version = h->version, .page_size = h->page_size, .base = h->base,
					  .heap_size = h->heap_size, .npages = h->npages,
					  .generation = h->generation, .created_ns = h->created_ns,
					  .flags = h->flags, .zstd_level = h->zstd_level };
	memcpy(info->id, h->id, 16);
	memcpy(info->parent_id, h->parent_id, 16);
	memcpy(info->parent_name, h->parent_name, sizeof(info->parent_name));
	info->parent_name[sizeof(info->parent_name) - 1] = 0;
	memcpy(info->app_tag, h->app_tag, sizeof(info->app_tag));
	info->app_tag[sizeof(info->app_tag) - 1] = 0;
}

uint64_t ckpt__img_digest(const void *img, size_t len)
{
	const uint8_t *p = img;
	XXH3_state_t st;
	XXH3_64bits_reset(&st);
	size_t off = CKPT__IMG_HEADER_SIZE;
	if (len < off)
		return XXH3_64bits_digest(&st);
	XXH3_64bits_update(&st, p, off);
	while (len - off >= sizeof(struct ckpt__blk_header)) {
		struct ckpt__blk_header b;
		memcpy(&b, p + off, sizeof(b));
		if (b.magic == CKPT__TRL_MAGIC) {
			/* the whole trailer: everything up to the footer */
			XXH3_64bits_update(&st, p + off, len - off);
			break;
		}
		XXH3_64bits_update(&st, &b, sizeof(b));
		uint64_t plen = (uint64_t)b.data_len + (uint64_t)b.nruns * sizeof(struct ckpt__run);
		if (b.magic != CKPT__BLK_MAGIC || plen > len - off - sizeof(b))
			break;
		off += sizeof(b) + (size_t)plen;
	}
	return XXH3_64bits_digest(&st);
}
