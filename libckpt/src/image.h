/*
 * image.h - the on-disk image format (docs/image-format.md, ckpt-image(5)).
 *
 * An image is, in file order:
 *
 *   header   512 bytes, struct ckpt__img_header
 *   block*   each: struct ckpt__blk_header (64 bytes), then data_len bytes of
 *            page contents (zstd frame or stored), then nruns run records
 *            (struct ckpt__run, 16 bytes each)
 *   trailer  struct ckpt__trl_header (64 bytes), nblocks index entries
 *            (struct ckpt__trl_entry, 32 bytes each), from version 3 the
 *            block table (each block's header and run records again, in
 *            file order; from version 4 each stored block's chunk hashes
 *            after its runs), an 8-byte XXH3 of all of the trailer before it
 *   footer   struct ckpt__footer (64 bytes): locates the trailer and holds
 *            the whole-file checksum
 *
 * Everything is little-endian.  Every byte of the file is covered by a
 * checksum that is checked before any value it covers is used, so a reader
 * tells a truncated file (it runs out of bytes) from a corrupt one (a
 * checksum or structural check fails on bytes that are all present).
 *
 * Checksums are XXH3-64 (seed 0).  The footer's whole-file digest is the
 * XXH3-64 of the header, every block header and the whole trailer, in file
 * order: each block header carries the hash of its payload, so the digest
 * covers every byte before the footer without hashing the pages twice.
 * The writer never seeks: the trailer is
 * written after the last block and the footer last, so a pipe receives the
 * same bytes as a file.
 */
#ifndef CKPT_IMAGE_H
#define CKPT_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libckpt's image code assumes a little-endian host (the format is little-endian)"
#endif

#define CKPT__IMG_MAGIC "LIBCKPT\x01"     /* 8 bytes */
#define CKPT__IMG_FOOTER_MAGIC "CKPTEND\x01"
#define CKPT__IMG_VERSION 4u     /* what this library writes */
#define CKPT__IMG_VERSION_MIN 1u /* the oldest it reads: 1 has no app tag, 2 has one */
/* The first version whose trailer carries the block table: a reader that
 * maps an image lazily learns every block's header and runs from one read
 * of the trailer instead of two reads per block. */
#define CKPT__IMG_VERSION_TABLE 3u
/* The first version whose block table carries, for each stored block, an
 * XXH3-64 of every chunk_size bytes of its data (the header's chunk_size):
 * a fault reads and checks 64 KiB, not the whole block.  zstd blocks have
 * none: a frame is decompressed whole (docs/image-format.md). */
#define CKPT__IMG_VERSION_CHUNKS 4u
#define CKPT__CHUNK_SIZE (64u << 10) /* what this library writes (at least one page) */
#define CKPT__IMG_HEADER_SIZE 512u
#define CKPT__BLK_MAGIC 0x4b424b43u /* "CKBK" */
#define CKPT__TRL_MAGIC 0x52544b43u /* "CKTR" */

/* header flags (the low bits match struct ckpt_image_info.flags) */
#define CKPT__IMG_INCREMENTAL CKPT_SINK_INCREMENTAL /* 1: amends a parent image */
#define CKPT__IMG_ZSTD CKPT_IMAGE_ZSTD              /* 2: blocks may be zstd frames */
#define CKPT__IMG_KNOWN_FLAGS (CKPT__IMG_INCREMENTAL | CKPT__IMG_ZSTD)

/* block flags */
#define CKPT__BLK_ZSTD 1u /* the data is one zstd frame */

/* run kinds */
#define CKPT__RUN_DATA 0u /* npages pages, contents in the block's data, in run order */
#define CKPT__RUN_ZERO 1u /* npages all-zero pages, nothing stored */

/* limits a reader enforces before trusting a value */
#define CKPT__MAX_PAGE_SIZE (2u << 20) /* heaps use 4 KiB or 2 MiB pages; larger would let a forged
					    * one-page block demand that much memory */
#define CKPT__MAX_BLOCK_RAW (64u << 20)   /* page bytes in one block */
#define CKPT__MAX_BLOCK_RUNS (1u << 16)
#define CKPT__MAX_CHAIN 4096              /* images in an incremental chain */
#define CKPT__USER_TOP (1ull << 47)       /* x86-64 4-level user address space */
#define CKPT__PARENT_NAME_MAX 256

struct ckpt__img_header {
	char magic[8];            /* CKPT__IMG_MAGIC */
	uint32_t version;         /* 1 (no tag), 2 (tag), 3 (tag, block table), 4 (chunk hashes) */
	uint32_t header_size;     /* 512 */
	uint32_t page_size;
	uint32_t flags;           /* CKPT__IMG_* */
	int32_t zstd_level;       /* level requested (0 = stored) */
	uint32_t parent_name_len; /* bytes of parent_name used, 0 for a full image */
	uint64_t base;            /* heap base address */
	uint64_t heap_size;       /* bytes reserved */
	uint64_t npages;          /* pages in the extent; pages past it are zero */
	uint64_t pages_to_emit;   /* pages this image records (data or zero) */
	uint64_t generation;
	uint64_t created_ns;      /* CLOCK_REALTIME */
	uint64_t root;            /* heap root pointer (informational) */
	uint8_t id[16];
	uint8_t parent_id[16];
	uint64_t parent_generation;
	char parent_name[CKPT__PARENT_NAME_MAX]; /* NUL-padded, relative to this file's directory */
	char app_tag[CKPT_APP_TAG_MAX]; /* version 2: NUL-terminated, NUL-padded; version 1: zero */
	uint32_t chunk_size;      /* version 4: bytes per chunk hash (a power of two >= page_size); before: 0 */
	uint8_t reserved[52];     /* zero */
	uint64_t checksum;        /* XXH3-64 of the 504 bytes before it */
};

struct ckpt__blk_header {
	uint32_t magic;      /* CKPT__BLK_MAGIC */
	uint32_t flags;      /* CKPT__BLK_* */
	uint32_t nruns;
	uint32_t data_pages; /* pages whose contents are in the data */
	uint32_t zero_pages; /* pages recorded as zero */
	uint32_t data_len;   /* bytes of data on disk */
	uint64_t seq;        /* 0, 1, 2 ... in file order */
	uint64_t first_page; /* lowest page index of the block's runs (informational) */
	uint64_t payload_hash; /* XXH3-64 of data followed by the run records */
	uint64_t raw_hash;   /* zstd: XXH3-64 of the decompressed page data; stored: 0 */
	uint64_t checksum;   /* XXH3-64 of the 56 bytes before it */
};

struct ckpt__run {
	uint64_t first_page;
	uint32_t npages;
	uint32_t kind; /* CKPT__RUN_* */
};

struct ckpt__trl_header {
	uint32_t magic;       /* CKPT__TRL_MAGIC */
	uint32_t reserved0;
	uint64_t nblocks;
	uint64_t pages_stored;
	uint64_t pages_zero;
	uint64_t nruns;
	uint64_t offset;      /* this trailer's file offset (= end of the last block) */
	uint64_t nchunks;     /* version 4: chunk hashes in the block table; before: 0 */
	uint64_t checksum;    /* XXH3-64 of the 56 bytes before it */
};

struct ckpt__trl_entry {
	uint64_t offset;      /* block header's file offset */
	uint64_t checksum;    /* the block header's checksum field */
	uint32_t length;      /* header + data + runs */
	uint32_t data_pages;
	uint32_t zero_pages;
	uint32_t nruns;
};

struct ckpt__footer {
	uint64_t trailer_offset;
	uint64_t trailer_size;  /* header + entries + 8-byte checksum */
	uint64_t file_size;     /* including this footer */
	uint64_t file_hash;     /* XXH3-64 of header + block headers + trailer (see above) */
	uint8_t id[16];         /* the header's image id, again */
	uint64_t checksum;      /* XXH3-64 of the 48 bytes before it and the magic */
	char magic[8];          /* CKPT__IMG_FOOTER_MAGIC */
};

_Static_assert(sizeof(struct ckpt__img_header) == CKPT__IMG_HEADER_SIZE, "header size");
_Static_assert(sizeof(struct ckpt__blk_header) == 64, "block header size");
_Static_assert(sizeof(struct ckpt__run) == 16, "run size");
_Static_assert(sizeof(struct ckpt__trl_header) == 64, "trailer header size");
_Static_assert(sizeof(struct ckpt__trl_entry) == 32, "trailer entry size");
_Static_assert(sizeof(struct ckpt__footer) == 64, "footer size");

uint64_t ckpt__hash(const void *p, size_t n);

/* The whole-file digest (footer.file_hash) of the @len bytes before the
 * footer of a well-formed image: header, block headers, trailer.  For tools
 * that re-seal edited images (fuzz/fixup.h); stops at the first malformed
 * block. */
uint64_t ckpt__img_digest(const void *img, size_t len);

/* Sealing: fills the checksum field of a structure about to be written. */
void ckpt__img_header_seal(struct ckpt__img_header *h);
void ckpt__blk_header_seal(struct ckpt__blk_header *b);
void ckpt__trl_header_seal(struct ckpt__trl_header *t);
void ckpt__footer_seal(struct ckpt__footer *f);

/*
 * Checks.  Each returns 0 or a CKPT_E_* code and writes a sentence to @err.
 *
 * ckpt__img_header_check() : @h holds the first @avail bytes of a file
 * (avail may be < 512: the prefix is then judged as far as it goes).
 * Order: magic (CKPT_E_NOTIMAGE), version (CKPT_E_VERSION), length
 * (CKPT_E_TRUNCATED), checksum and every field (CKPT_E_CORRUPT).
 */
int ckpt__img_header_check(const void *h, size_t avail, char *err, size_t errsz);

/* A block header whose checksum matched: are its counts sane for an image
 * of @page_size?  0 or CKPT_E_CORRUPT. */
int ckpt__blk_header_check(const struct ckpt__blk_header *b, uint64_t seq, uint32_t page_size,
			   char *err, size_t errsz);

/* A block's run records, after its payload hash matched: every run inside
 * [0, npages), counts matching the header.  0 or CKPT_E_CORRUPT. */
int ckpt__runs_check(const struct ckpt__blk_header *b, const struct ckpt__run *runs,
		     uint64_t npages, char *err, size_t errsz);

/* Trailer header (checksum and counts against what the reader saw). */
int ckpt__trl_header_check(const struct ckpt__trl_header *t, char *err, size_t errsz);

/* Bytes of the trailer of a @version image whose (checked) trailer header
 * counts @nblocks blocks, @nruns runs and @nchunks chunk hashes: header,
 * entries, the block table (version >= CKPT__IMG_VERSION_TABLE; its chunk
 * hashes from CKPT__IMG_VERSION_CHUNKS), checksum.  0 when the counts
 * cannot belong to any image (they would overflow). */
uint64_t ckpt__trl_size(uint32_t version, uint64_t nblocks, uint64_t nruns, uint64_t nchunks);

/* The chunk size of an image with header @h: 0 before version 4 (no chunk
 * hashes). */
static inline uint32_t ckpt__img_chunk_size(const struct ckpt__img_header *h)
{
	return h->version >= CKPT__IMG_VERSION_CHUNKS ? h->chunk_size : 0;
}

/* Chunk hashes block @b has in the block table of an image whose chunk
 * size is @chunk (0: none): one per @chunk bytes of a stored block's data,
 * none for a zstd block. */
static inline uint64_t ckpt__blk_nchunks(const struct ckpt__blk_header *b, uint32_t chunk)
{
	if (!chunk || (b->flags & CKPT__BLK_ZSTD))
		return 0;
	return ((uint64_t)b->data_len + chunk - 1) / chunk;
}

/* Bytes block @b takes in a block table (chunk size @chunk): its header,
 * runs and chunk hashes. */
static inline size_t ckpt__trl_table_bytes(const struct ckpt__blk_header *b, uint32_t chunk)
{
	return sizeof(*b) + (size_t)b->nruns * 16u + (size_t)ckpt__blk_nchunks(b, chunk) * 8u;
}

/* XXH3-64 of each @chunk bytes of @data (@len bytes; the last chunk may be
 * short) into @out (ceil(len / chunk) entries). */
void ckpt__chunk_hashes(const void *data, size_t len, uint32_t chunk, uint64_t *out);

/* A block header from a trailer's block table (or read from the file)
 * that must be block @seq at @at and match index entry @en: its checksum,
 * its counts (ckpt__blk_header_check()), and the entry.  0 or
 * CKPT_E_CORRUPT. */
int ckpt__blk_indexed_check(const struct ckpt__blk_header *b, const struct ckpt__trl_entry *en,
			    uint64_t seq, uint64_t at, uint32_t page_size, char *err, size_t errsz);
int ckpt__footer_check(const struct ckpt__footer *f, char *err, size_t errsz);

/* The one place a header is made from a sink's description (filesink.c):
 * every field but the parent's name (the sink's link_parent() sets it,
 * before), the version this library writes, sealed.  0, or -EINVAL for an
 * app tag without its NUL. */
int ckpt__img_header_encode(struct ckpt__img_header *h, const struct ckpt_sink_info *info, int zstd_level);

/* The reverse, for rewriting a loaded heap as one full image (merge): the
 * sink description that makes the same header, all pages emitted. */
void ckpt__img_header_to_sink_info(const struct ckpt__img_header *h, struct ckpt_sink_info *info);

/* Copies the header into the public info struct. */
void ckpt__img_header_to_info(const struct ckpt__img_header *h, struct ckpt_image_info *info);

/* Is @name a plain file name (no '/', not "." or "..", NUL-terminated
 * within @max bytes, not empty)? */
bool ckpt__img_name_ok(const char *name, size_t max);


/* ------------------------------------------------------ reading (restore.c) */

/*
 * ckpt__image_load() : verifies the image at @path (and, with @chain, the
 * chain of parents it names) and applies its pages, oldest image first, to
 * @mem (heap_size bytes, zero on entry; NULL to verify only).
 * @hdr_out (may be NULL) receives the tip's header.
 * @progress (may be NULL) is called from the calling thread with bytes read
 * so far and the total.
 * @return 0 or the first problem (CKPT_E_*, -errno); @err names it.
 */
struct ckpt__load_opts {
	bool chain;                 /* follow parents (else an incremental gives CKPT_E_PARENT when applying) */
	bool verify_only;           /* no memory: check everything, apply nothing */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
};

/* Reads the header of @path (the first image of a chain) without loading. */
int ckpt__image_read_header(const char *path, struct ckpt__img_header *hdr, char *err,
			    size_t errsz);

/* Loads into an anonymous MAP_PRIVATE|MAP_NORESERVE mapping of heap_size
 * bytes (not at the image's base).  On success *mem_out must be munmap'ed
 * with hdr_out->heap_size. */
int ckpt__image_load_anon(const char *path, const struct ckpt__load_opts *lo,
			  struct ckpt__img_header *hdr_out, uint8_t **mem_out, char *err,
			  size_t errsz);

/* Like ckpt__image_load_anon() for a chain given as files, oldest (the full
 * image) first: each must amend the one before it (id, generation,
 * geometry), whatever its recorded parent name; CKPT_E_PARENT otherwise. */
int ckpt__image_load_list(const char *const *paths, size_t n, const struct ckpt__load_opts *lo,
			  struct ckpt__img_header *hdr_out, uint8_t **mem_out, char *err,
			  size_t errsz);
int ckpt__image_merge_list(const char *out, const char *const *paths, size_t n, int zstd_level,
			   const struct ckpt__load_opts *lo, char *err, size_t errsz);

/* ckpt_image_merge() with progress reports (the ckpt tool). */
int ckpt__image_merge(const char *out, const char *tip, int zstd_level,
		      const struct ckpt__load_opts *lo, char *err, size_t errsz);

#endif /* CKPT_IMAGE_H */
