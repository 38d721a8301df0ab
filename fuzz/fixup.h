/*
 * fixup.h - re-seals the checksums of a (possibly mutated) libckpt image so
 * that a fuzzer gets past them.
 *
 * Every structure of an image is covered by an XXH3 checksum that the
 * reader checks before it uses a single value (image.h).  A mutation
 * fuzzer almost never produces a matching 64-bit hash by chance, so
 * without help it would only ever exercise the first checksum test.  The
 * image harness therefore fuzzes two populations: inputs taken as they are
 * (the checksum tests themselves, the truncation paths), and inputs
 * re-sealed here (everything behind the checksums: counts, run records,
 * decompression, chain links, the page coverage check).
 *
 * fz_fixup() walks the file as a writer lays it out (header, blocks,
 * trailer, footer), recomputes each checksum over the bytes that are there,
 * and with FZ_FIX_STRUCTURE also rewrites the trailer's counts, index and
 * (version 3) block table and the footer's offsets to agree with the blocks
 * it walked, so that the
 * reader's cross-checks pass too and the fuzzer reaches the apply stage.
 * It never reads past @len and tolerates any garbage.
 *
 * Header-only: used by fuzz_image.c and mkseeds.c.
 */
#ifndef CKPT_FUZZ_FIXUP_H
#define CKPT_FUZZ_FIXUP_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "image.h"

#define FZ_FIX_CHECKSUMS (1u << 0)
#define FZ_FIX_STRUCTURE (1u << 1)

static inline void fz_seal_header(uint8_t *img, size_t len)
{
	if (len < sizeof(struct ckpt__img_header))
		return;
	struct ckpt__img_header h;
	memcpy(&h, img, sizeof(h));
	ckpt__img_header_seal(&h);
	memcpy(img, &h, sizeof(h));
}

/* Raw (decompressed) hash of a block's data, or keeps @old when the data
 * does not decompress to the size the header claims. */
static inline uint64_t fz_raw_hash(const struct ckpt__blk_header *b, const uint8_t *data,
				   uint32_t page_size, uint64_t old)
{
	uint64_t raw_len = (uint64_t)b->data_pages * page_size;
	if (!(b->flags & CKPT__BLK_ZSTD))
		return 0; /* stored blocks carry no raw hash (image.h) */
	if (raw_len == 0 || raw_len > (4u << 20)) /* keep the harness fast */
		return old;
	void *buf = malloc(raw_len);
	if (!buf)
		return old;
	size_t z = ZSTD_decompress(buf, raw_len, data, b->data_len);
	uint64_t h = (!ZSTD_isError(z) && z == raw_len) ? ckpt__hash(buf, raw_len) : old;
	free(buf);
	return h;
}

/* Re-seals @img in place; @how is FZ_FIX_*.  Returns the file length to
 * use (the same as @len: nothing is added or removed). */
static inline size_t fz_fixup(uint8_t *img, size_t len, unsigned how)
{
	if (!(how & FZ_FIX_CHECKSUMS) || len < sizeof(struct ckpt__img_header))
		return len;
	struct ckpt__img_header h;
	memcpy(&h, img, sizeof(h));
	uint32_t psz = h.page_size;
	if (psz < 4096 || psz > CKPT__MAX_PAGE_SIZE || (psz & (psz - 1)))
		psz = 4096;
	fz_seal_header(img, len);

	size_t off = sizeof(h);
	uint64_t seq = 0, stored = 0, zero = 0, nruns = 0, nchunks = 0;
	/* version 4: stored blocks' chunk hashes in the table (a sane chunk
	 * size only: else the reader stops at the header) */
	uint32_t chunk = ckpt__img_chunk_size(&h);
	if (chunk < psz || chunk > CKPT__MAX_BLOCK_RAW || (chunk & (chunk - 1)))
		chunk = 0;
	/* index entries as the reader will rebuild them */
	struct ckpt__trl_entry idx[256];
	size_t nidx = 0;
	/* version 3's block table as the reader will rebuild it: each block's
	 * header and runs, which are in the file, and (version 4) 8 bytes per
	 * chunk of its stored data (never longer than the file) */
	uint8_t *table = malloc(len);
	size_t tlen = 0;
	if (!table)
		return len;
	for (;;) {
		if (len - off < sizeof(struct ckpt__blk_header))
			goto out;
		uint32_t magic;
		memcpy(&magic, img + off, 4);
		if (magic == CKPT__TRL_MAGIC)
			break;
		if (magic != CKPT__BLK_MAGIC)
			goto out;
		struct ckpt__blk_header b;
		memcpy(&b, img + off, sizeof(b));
		uint64_t plen = (uint64_t)b.data_len + (uint64_t)b.nruns * sizeof(struct ckpt__run);
		if (how & FZ_FIX_STRUCTURE)
			b.seq = seq;
		if (plen <= len - off - sizeof(b)) {
			const uint8_t *payload = img + off + sizeof(b);
			b.payload_hash = ckpt__hash(payload, (size_t)plen);
			b.raw_hash = fz_raw_hash(&b, payload, psz, b.raw_hash);
		}
		ckpt__blk_header_seal(&b);
		memcpy(img + off, &b, sizeof(b));
		if (plen > len - off - sizeof(b))
			goto out;
		if (tlen + sizeof(b) + (size_t)b.nruns * sizeof(struct ckpt__run) <= len) {
			memcpy(table + tlen, &b, sizeof(b));
			memcpy(table + tlen + sizeof(b), img + off + sizeof(b) + b.data_len,
			       (size_t)b.nruns * sizeof(struct ckpt__run));
			tlen += sizeof(b) + (size_t)b.nruns * sizeof(struct ckpt__run);
			uint64_t nc = ckpt__blk_nchunks(&b, chunk);
			if (nc && tlen + nc * 8 <= len) {
				ckpt__chunk_hashes(img + off + sizeof(b), b.data_len, chunk, (uint64_t *)(void *)(table + tlen));
				tlen += (size_t)nc * 8;
				nchunks += nc;
			}
		}
		if (nidx < sizeof(idx) / sizeof(idx[0]))
			idx[nidx] = (struct ckpt__trl_entry){
				.offset = off,
				.checksum = b.checksum,
				.length = (uint32_t)(sizeof(b) + plen),
				.data_pages = b.data_pages,
				.zero_pages = b.zero_pages,
				.nruns = b.nruns,
			};
		nidx++;
		stored += b.data_pages;
		zero += b.zero_pages;
		nruns += b.nruns;
		seq++;
		off += sizeof(b) + (size_t)plen;
	}

	/* trailer at @off */
	size_t toff = off;
	struct ckpt__trl_header t;
	memcpy(&t, img + toff, sizeof(t));
	if (how & FZ_FIX_STRUCTURE) {
		t.nblocks = seq;
		t.offset = toff;
		t.pages_stored = stored;
		t.pages_zero = zero;
		t.nruns = nruns;
		t.nchunks = nchunks;
	}
	ckpt__trl_header_seal(&t);
	memcpy(img + toff, &t, sizeof(t));
	uint64_t tsize64 = ckpt__trl_size(h.version, t.nblocks, t.nruns, t.nchunks);
	if (tsize64 == 0 || tsize64 > len - toff)
		goto out;
	size_t tsize = (size_t)tsize64;
	size_t elen = (size_t)t.nblocks * sizeof(struct ckpt__trl_entry);
	if ((how & FZ_FIX_STRUCTURE) && t.nblocks == nidx && nidx <= sizeof(idx) / sizeof(idx[0]))
		memcpy(img + toff + sizeof(t), idx, elen);
	if ((how & FZ_FIX_STRUCTURE) && h.version >= CKPT__IMG_VERSION_TABLE && t.nblocks == seq &&
	    tlen == tsize - sizeof(t) - elen - 8)
		memcpy(img + toff + sizeof(t) + elen, table, tlen);
	uint64_t tsum = ckpt__hash(img + toff, tsize - 8);
	memcpy(img + toff + tsize - 8, &tsum, 8);

	/* footer right after the trailer */
	size_t foff = toff + tsize;
	if (len - foff < sizeof(struct ckpt__footer))
		goto out;
	struct ckpt__footer f;
	memcpy(&f, img + foff, sizeof(f));
	if (how & FZ_FIX_STRUCTURE) {
		f.trailer_offset = toff;
		f.trailer_size = tsize;
		f.file_size = foff + sizeof(f);
		memcpy(f.id, h.id, sizeof(f.id));
		memcpy(f.magic, CKPT__IMG_FOOTER_MAGIC, sizeof(f.magic));
	}
	f.file_hash = ckpt__img_digest(img, foff); /* header + block headers + trailer (image.h) */
	ckpt__footer_seal(&f);
	memcpy(img + foff, &f, sizeof(f));
out:
	free(table);
	return len;
}

#endif
