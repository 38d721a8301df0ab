/*
 * lazyrestore.c - ckpt_restore() with CKPT_RESTORE_LAZY: the heap is usable
 * before its pages are, and a page is loaded when first touched.
 *
 * Up front, only the image's structure is read and checked: header, footer,
 * trailer, every block header (against its trailer entry), every block's run
 * records, the whole-file digest (it covers exactly those), page coverage,
 * and the chain's links.  That gives an owner map: for every page the block
 * that holds its newest contents (a chain's newest image wins), or that it
 * is zero.  The heap's memfd starts empty and is mapped at the base; the
 * range is registered with a userfaultfd of our own for MISSING faults.
 *
 * The up-front work is linear in the number of blocks (8,853 for an 8 GiB
 * heap) and is kept to a few passes over memory mapped in one call: the
 * trailer is read with one pread(2) into ckpt__buf_alloc() memory (fresh
 * memory faulted in page by page cost more than the rest of the index),
 * the blocks' headers, runs and chunk hashes are used where they lie in it
 * (version 3 on; before, one array per image), the block array is one
 * allocation, the runs are sorted only when they are out of page order,
 * and the first image's intervals become the owner map as they are.
 *
 * Installing a block: read it whole, check its payload hash (data and run
 * records), its runs against the index, decompress, check the raw hash,
 * then install the pages it owns with UFFDIO_COPY, one ioctl per range:
 * it allocates, fills and maps each page, and fails with EEXIST instead of
 * overwriting a page that is there (a fault's chunk, or a thread that
 * installed the block too), so an application write is never undone.
 * pwrite(2) into the memfd is only the fallback where UFFDIO_COPY is
 * refused; it overwrites, so from then on only a block's holder installs
 * it, whole (install_pages()).  Each block is settled once (its state goes
 * IDLE -> LOADING -> DONE or BAD under lz->mu).  Pages without data (zero
 * runs, past the extent, or punched by the allocator after installing)
 * are resolved by the fault thread with UFFDIO_ZEROPAGE, which also fails
 * with EEXIST rather than overwrite: that is what keeps two faults on one
 * zero page from clobbering a write made in between.
 *
 * A fault on a stored block of a version-4 image does not install the
 * block: it reads the one 64 KiB chunk holding its page, checks the chunk
 * hash the trailer gave, and installs that chunk's pages (load_chunk()),
 * leaving the block to the loaders.  Reading and hashing a whole 1 MiB
 * block per fault was most of ckpt_restore()'s time in redis-ckpt (the
 * allocator's ~10 faults while the heap is opened: 0.3-0.5 ms each).
 *
 * Why MISSING + UFFDIO_COPY and not MINOR + UFFDIO_CONTINUE: a minor fault
 * is raised only for a page already in the page cache; a page not loaded
 * yet is a hole, and the kernel would fill it with zeroes without asking.
 * Minor faults suit a memfd filled in advance, which is the eager restore.
 *
 * A block whose checks fail while the heap is in use is never served: its
 * pages are poisoned (UFFDIO_POISON, or SIGBUS sent to the faulting thread
 * on kernels without it), the log callback hears of it, and the heap can no
 * longer checkpoint (lazy_make_resident() returns CKPT_E_CORRUPT).
 * While ckpt_restore() itself runs (the allocator reads its header) a bad
 * block is filled with zeroes for that thread only, and the restore fails.
 *
 * When every block is installed the heap becomes an ordinary one: our uffd
 * is unregistered and the heap's own uffd registered for write-protection
 * (one uffd per range: see kernel/tests cases_lazy.c).
 *
 * Calls: image.h checks, imgread.c (trailer, chain), ownermap.c, heap.c
 * (ckpt__heap_adopt_lazy, ckpt__heap_register_wp), ckpt__log.  Called by
 * restore.c, heap.c and checkpoint.c through internal.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <zstd.h>

#include "faultinject.h"
#include "image.h"
#include "imgread.h"
#include "internal.h"
#include "ownermap.h"

#define OWN_NONE CKPT__OWN_NONE
#define OWN_ZERO CKPT__OWN_ZERO
#define MAX_BLOCKS (OWN_ZERO - 1)
#define MAX_LOADERS 8
#define ZERO_BATCH 64        /* pages one zero fault fills ahead */
#define FIRST_PAGES 16       /* pages around a fault installed before the rest of its block */
#define NO_HINT UINT64_MAX

/* B_WINDOWED: verified, and the pages around a fault installed; the rest
 * is left to a loader (lz->redo), which loads it again like an idle one. */
enum { B_IDLE, B_LOADING, B_WINDOWED, B_DONE, B_BAD };

/* bh, runs and chunk point into lz->img[img]: its trailer as read (version
 * 3 on), or one array per image (versions 1-2); no allocation per block
 * (ckpt_restore() indexes 8,853 blocks for an 8 GiB heap). */
struct lz_block {
	uint64_t off;                      /* file offset of the block header */
	const struct ckpt__blk_header *bh; /* as checked up front */
	const struct ckpt__run *runs;      /* as checked up front */
	const uint64_t *chunk;             /* version 4, stored: a hash per csize bytes of data (else NULL) */
	uint32_t csize;
	uint32_t img;                /* index into lz->fd */
	uint32_t owned;              /* data pages it installs */
	_Atomic int state;           /* B_*, changed under lz->mu; the fault thread reads it without */
};

struct lz_image {
	uint8_t *trl;              /* its trailer (ckpt__buf_alloc()), f.trailer_size bytes */
	struct ckpt__footer f;
	void *arr;                 /* versions 1-2: block headers and runs (malloc'ed) */
};

struct ckpt__lazy {
	ckpt_heap *h;
	uint32_t page_size;
	uint64_t npages;           /* the tip's extent: pages past it are zero */
	struct ckpt__ownermap map; /* page -> block index | OWN_ZERO; OWN_NONE outside */
	struct lz_block *blk;      /* ckpt__buf_alloc(), for nblk_cap */
	uint32_t nblk, nblk_cap;
	int *fd;                   /* image files, oldest first */
	struct lz_image *img;      /* per image: what its blocks point into */
	uint32_t nimg;
	uint64_t total;            /* data pages to install */
	_Atomic uint64_t resident; /* data pages installed */
	_Atomic uint32_t next;     /* next block a loader looks at */
	_Atomic int failed;        /* CKPT_E_CORRUPT or -errno once a block failed */
	_Atomic bool serving;      /* ckpt_restore() returned: bad blocks poison */
	_Atomic bool swapped;      /* resident, our uffd gone, the heap's registered */
	_Atomic bool stop;
	_Atomic bool pwritten;     /* UFFDIO_COPY failed once: pwrite(2) since */
	bool poison;               /* UFFDIO_POISON works */
	/* what the faults cost (CKPT_LOG_DEBUG at the end of ckpt_restore()
	 * and when resident): the time to a first reply is mostly theirs */
	_Atomic uint64_t st_faults, st_fault_ns, st_fault_read;
	uint64_t st_trl_ns, st_blocks_ns, st_map_ns; /* the index's phases, all images */
	uint64_t t_attach;         /* when heap.c handed us the mapped range */
	int uffd, stop_fd;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint32_t nsettled;         /* blocks DONE or BAD, under mu */
	uint32_t *redo;            /* B_WINDOWED blocks for the loaders, under mu */
	uint32_t nredo;
	int loaders_live;          /* loaders that will still look at redo, under mu */
	pthread_t fault_th, loader[MAX_LOADERS];
	bool fault_up;
	int nloaders;
	char errmsg[200];
};

/* ------------------------------------------------------------ index */

/* Block @seq at @at from a block table at *@tp: its header and runs,
 * checked against index entry @en, and (version 4) its chunk hashes; *@tp
 * advances past it. */
static int table_block(const struct ckpt__img_header *h, const uint8_t **tp, const uint8_t *tend,
		       const struct ckpt__trl_entry *en, uint64_t seq, uint64_t at, struct lz_block *b,
		       char *err, size_t errsz)
{
	if ((size_t)(tend - *tp) < sizeof(*b->bh))
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: block table ends before block %llu",
				     (unsigned long long)seq);
	/* in place: the trailer starts on a page (ckpt__buf_alloc()) and
	 * every record in it is a multiple of 8 bytes long (image.h), so
	 * each is aligned */
	b->bh = (const void *)*tp;
	int rc = ckpt__blk_indexed_check(b->bh, en, seq, at, h->page_size, err, errsz);
	if (rc)
		return rc;
	size_t rb = (size_t)b->bh->nruns * sizeof(*b->runs);
	if ((size_t)(tend - *tp) - sizeof(*b->bh) < rb)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: block table ends inside block %llu",
				     (unsigned long long)seq);
	b->runs = (const void *)(*tp + sizeof(*b->bh));
	*tp += sizeof(*b->bh) + rb;
	size_t cb = (size_t)ckpt__blk_nchunks(b->bh, ckpt__img_chunk_size(h)) * 8;
	if (cb) {
		if ((size_t)(tend - *tp) < cb)
			return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: block table ends inside block %llu",
					  (unsigned long long)seq);
		b->chunk = (const void *)*tp;
		b->csize = h->chunk_size;
		*tp += cb;
	}
	return ckpt__runs_check(b->bh, b->runs, h->npages, err, errsz);
}

/* Versions 1-2 (no block table): block @seq's header and runs read from
 * the file at @at into @bh and *@runs (room for @left more run records;
 * *@runs and *@left advance), checked against index entry @en. */
static int file_block(int fd, const struct ckpt__img_header *h, const struct ckpt__trl_entry *en,
		      uint64_t seq, uint64_t at, struct lz_block *b, struct ckpt__blk_header *bh,
		      struct ckpt__run **runs, uint64_t *left, char *err, size_t errsz)
{
	int rc = ckpt__pread_all(fd, bh, sizeof(*bh), at);
	if (rc)
		return ckpt__errf(err, errsz, rc, "reading block %llu: %s", (unsigned long long)seq,
				     ckpt_strerror(rc));
	b->bh = bh;
	rc = ckpt__blk_indexed_check(bh, en, seq, at, h->page_size, err, errsz);
	if (rc)
		return rc;
	if (bh->nruns > *left)
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: the trailer's counts do not match the blocks read");
	rc = ckpt__pread_all(fd, *runs, (size_t)bh->nruns * sizeof(**runs), at + sizeof(*bh) + bh->data_len);
	if (rc)
		return ckpt__errf(err, errsz, rc, "reading block %llu: %s", (unsigned long long)seq,
				     ckpt_strerror(rc));
	b->runs = *runs;
	*runs += bh->nruns;
	*left -= bh->nruns;
	return ckpt__runs_check(bh, b->runs, h->npages, err, errsz);
}

/* The runs of blocks @first.. of one image as owner intervals, every page
 * recorded exactly once and pages_to_emit in all; *@out is malloc'ed. */
static int image_segs(const struct lz_block *blk, uint32_t first, uint32_t n, const struct ckpt__img_header *h,
		      struct ckpt__seg **out, size_t *nout, char *err, size_t errsz)
{
	size_t nall = 0;
	for (uint32_t i = first; i < first + n; i++)
		nall += blk[i].bh->nruns;
	struct ckpt__seg *all = malloc((nall ? nall : 1) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	size_t k = 0;
	uint64_t total = 0;
	for (uint32_t i = first; i < first + n; i++)
		for (uint32_t r = 0; r < blk[i].bh->nruns; r++) {
			const struct ckpt__run *run = &blk[i].runs[r];
			all[k++] = (struct ckpt__seg){ run->first_page, run->npages,
						       i | (run->kind == CKPT__RUN_ZERO ? OWN_ZERO : 0) };
			total += run->npages;
		}
	int rc = 0;
	size_t bad = ckpt__segs_sort(all, nall);
	if (bad)
		rc = ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: page %llu is recorded twice",
				   (unsigned long long)all[bad - 1].first);
	else if (total != h->pages_to_emit)
		rc = ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: %llu pages recorded, the header promises %llu",
				   (unsigned long long)total, (unsigned long long)h->pages_to_emit);
	if (rc) {
		free(all);
		return rc;
	}
	*out = all;
	*nout = nall;
	return 0;
}

/* Versions 1-2: one array for the image's block headers and run records
 * (*@mem, which the blocks point into), its size bounded by the file's:
 * each record is in the file before the trailer. */
static int file_arrays(const struct ckpt__trl_header *t, const struct ckpt__footer *f, void **mem,
		       struct ckpt__blk_header **bhs, struct ckpt__run **runs, char *err, size_t errsz)
{
	if (t->nblocks > f->trailer_offset / sizeof(**bhs) || t->nruns > f->trailer_offset / sizeof(**runs))
		return ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: the trailer's counts do not match the file");
	size_t hb = (size_t)t->nblocks * sizeof(**bhs);
	*mem = malloc(hb + (size_t)t->nruns * sizeof(**runs) + 1);
	if (!*mem)
		return -ENOMEM;
	*bhs = *mem;
	*runs = (void *)((uint8_t *)*mem + hb); /* 64-byte headers first: aligned */
	return 0;
}

/* The image's blocks from its trailer @trl (version 3: its block table,
 * pointed into; before: two reads per block, into *@mem), checked against
 * the trailer's counts and, with the header, against the footer's
 * whole-file digest. */
static int index_blocks(struct ckpt__lazy *lz, uint32_t img, int fd, const struct ckpt__img_header *h,
			const struct ckpt__footer *f, const uint8_t *trl, void **mem, char *err, size_t errsz)
{
	struct ckpt__trl_header t;
	memcpy(&t, trl, sizeof(t));
	const struct ckpt__trl_entry *ent = (const void *)(trl + sizeof(t));
	const uint8_t *tp = trl + sizeof(t) + t.nblocks * sizeof(*ent), *tend = trl + f->trailer_size - 8;
	bool table = h->version >= CKPT__IMG_VERSION_TABLE;
	struct ckpt__blk_header *bhs = NULL;
	struct ckpt__run *runs = NULL;
	uint64_t left = t.nruns;
	XXH3_state_t *dg = XXH3_createState();
	int rc = !dg ? -ENOMEM : t.nblocks > lz->nblk_cap - lz->nblk ? CKPT_E_CORRUPT : 0;
	if (!rc && !table)
		rc = file_arrays(&t, f, mem, &bhs, &runs, err, errsz);
	if (dg) {
		XXH3_64bits_reset(dg);
		XXH3_64bits_update(dg, h, sizeof(*h));
	}
	uint64_t at = CKPT__IMG_HEADER_SIZE, stored = 0, zero = 0, nruns = 0, nchunks = 0;
	for (uint64_t i = 0; !rc && i < t.nblocks; i++) {
		struct lz_block *b = &lz->blk[lz->nblk++];
		b->img = img;
		b->off = at;
		rc = table ? table_block(h, &tp, tend, &ent[i], i, at, b, err, errsz)
			   : file_block(fd, h, &ent[i], i, at, b, &bhs[i], &runs, &left, err, errsz);
		if (rc)
			break;
		XXH3_64bits_update(dg, b->bh, sizeof(*b->bh));
		at += ent[i].length;
		stored += b->bh->data_pages;
		zero += b->bh->zero_pages;
		nruns += b->bh->nruns;
		nchunks += ckpt__blk_nchunks(b->bh, b->csize);
	}
	if (!rc && (at != t.offset || t.pages_stored != stored || t.pages_zero != zero ||
		    t.nruns != nruns || t.nchunks != nchunks || (table && tp != tend)))
		rc = ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: the trailer's counts do not match the blocks read");
	if (!rc) {
		/* the digest ends with the whole trailer */
		XXH3_64bits_update(dg, trl, f->trailer_size);
		if (f->file_hash != XXH3_64bits_digest(dg))
			rc = ckpt__errf(err, errsz, CKPT_E_CORRUPT, "corrupt: whole-file checksum mismatch");
	}
	if (dg)
		XXH3_freeState(dg);
	return rc;
}

/* Indexes image @img (open as @fd, header @h already checked, trailer
 * read) and lays its runs over the owner map: images come oldest first,
 * so the newest wins.  Its trailer (and arrays) stay in lz->img[img] for
 * as long as the blocks point into them. */
static int index_image(struct ckpt__lazy *lz, uint32_t img, int fd, const struct ckpt__img_header *h,
		       char *err, size_t errsz)
{
	struct lz_image *im = &lz->img[img];
	uint32_t first = lz->nblk;
	uint64_t t1 = ckpt__now_ns();
	int rc = index_blocks(lz, img, fd, h, &im->f, im->trl, &im->arr, err, errsz);
	uint64_t t2 = ckpt__now_ns();
	struct ckpt__seg *segs = NULL;
	size_t nsegs = 0;
	if (!rc)
		rc = image_segs(lz->blk, first, lz->nblk - first, h, &segs, &nsegs, err, errsz);
	if (!rc)
		rc = ckpt__ownermap_overlay(&lz->map, segs, nsegs); /* takes segs */
	lz->st_blocks_ns += t2 - t1;
	lz->st_map_ns += ckpt__now_ns() - t2;
	return rc;
}

/* ------------------------------------------------------------ installing */

/* pwrite(2) of @len bytes at heap offset @off: where UFFDIO_COPY cannot be
 * used (it fails only on kernels or mappings we do not expect). */
static int install_pwrite(struct ckpt__lazy *lz, uint64_t off, const uint8_t *src, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(lz->h->memfd, src + done, len - done, (off_t)(off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(lz->errmsg, sizeof(lz->errmsg), "filling the heap's memory: %s",
				 strerror(w < 0 ? errno : EIO));
			return w < 0 ? -errno : -EIO;
		}
		done += (size_t)w;
	}
	return 0;
}

/* Installs @n pages from @src at heap page @page.  UFFDIO_COPY, one ioctl
 * for the range: it allocates and fills each page and maps it, without the
 * memfd's inode lock that serialised the loaders' pwrite(2)s, and it never
 * overwrites a page that exists (EEXIST: skipped).  @wake wakes threads
 * waiting on these pages.  @owner: the block the caller holds (B_LOADING
 * is its own), else NULL; only a holder may fall back to pwrite(2), which
 * overwrites (pages someone else installs may have been written by the
 * application already): without it the fallback is -EOPNOTSUPP. */
static int install_pages(struct ckpt__lazy *lz, uint64_t page, uint64_t n, const uint8_t *src, bool wake,
			 const struct lz_block *owner)
{
	uint64_t ps = lz->page_size, len = n * ps, done = 0;
	uint64_t dst = (uint64_t)(uintptr_t)lz->h->base + page * ps;
	while (done < len) {
		struct uffdio_copy c = { .dst = dst + done, .src = (uint64_t)(uintptr_t)(src + done),
					 .len = len - done, .mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE };
		if (ioctl(lz->uffd, UFFDIO_COPY, &c) == 0)
			return 0;
		int e = errno;
		if (c.copy > 0)
			done += (uint64_t)c.copy; /* partial: go on from where it stopped */
		else if (e == EEXIST)
			done += ps;
		else if (e != EAGAIN && e != EINTR)
		{
			/* pwrite(2) overwrites: from now on every block is
			 * installed whole by its holder, never around a fault
			 * first, and faults wait for the holder */
			if (owner && (atomic_load(&lz->swapped) || atomic_load(&owner->state) != B_LOADING))
				/* a thread that would have waited for us
				 * installed and settled the block (and our
				 * uffd may be gone since): nothing is left */
				return 0;
			atomic_store(&lz->pwritten, true);
			if (!owner)
				return -EOPNOTSUPP;
			return install_pwrite(lz, page * ps + done, src + done, (size_t)(len - done));
		}
	}
	return 0;
}

/* Installs the pages block @i owns (a newer image may hold the others)
 * from its decompressed data @raw: with @inside only those in pages
 * [lo, hi), else only those outside it. */
static int install_owned(struct ckpt__lazy *lz, uint32_t i, const uint8_t *raw, uint64_t lo, uint64_t hi,
			 bool inside, const struct lz_block *owner)
{
	const struct lz_block *b = &lz->blk[i];
	size_t k = 0;
	for (uint32_t r = 0; r < b->bh->nruns; r++) {
		const struct ckpt__run *run = &b->runs[r];
		if (run->kind != CKPT__RUN_DATA)
			continue;
		uint64_t rend = run->first_page + run->npages;
		for (uint64_t q = run->first_page, e; q < rend; q += e) {
			if (ckpt__ownermap_get(&lz->map, q, rend, &e) != i)
				continue;
			/* [q, q + e) is ours: the parts asked for */
			uint64_t part[2][2] = { { q, q + e }, { q + e, q + e } };
			if (inside) {
				part[0][0] = q > lo ? q : lo;
				part[0][1] = q + e < hi ? q + e : hi;
			} else {
				part[0][1] = q + e < lo ? q + e : lo;
				part[1][0] = q > hi ? q : hi;
			}
			for (int j = 0; j < 2; j++) {
				if (part[j][0] >= part[j][1])
					continue;
				const uint8_t *src = raw + k + (size_t)(part[j][0] - run->first_page) * lz->page_size;
				int rc = install_pages(lz, part[j][0], part[j][1] - part[j][0], src, inside, owner);
				if (rc)
					return rc;
			}
		}
		k += (size_t)run->npages * lz->page_size;
	}
	return 0;
}

/* Reads, checks and installs block @i, the pages around page @hint first
 * (NO_HINT: none); with *@window only those, if it can (*@window stays
 * true: the block is verified, the rest is not installed).  @holder: the
 * caller holds the block (see install_pages()).  @buf/@cap and @dctx are the caller's scratch.  0 or
 * CKPT_E_CORRUPT / -errno with lz->errmsg set. */
static int load_block(struct ckpt__lazy *lz, uint32_t i, uint64_t hint, bool *window, bool holder, uint8_t **buf,
		      size_t *cap, ZSTD_DCtx *dctx)
{
	struct lz_block *b = &lz->blk[i];
	const struct ckpt__blk_header *bh = b->bh;
	size_t plen = (size_t)bh->data_len + (size_t)bh->nruns * sizeof(struct ckpt__run);
	size_t raw_len = (size_t)bh->data_pages * lz->page_size;
	bool z = (bh->flags & CKPT__BLK_ZSTD) != 0;
	const struct lz_block *owner = holder ? b : NULL;
	size_t need = sizeof(*bh) + plen + (z ? raw_len : 0);
	char *msg = lz->errmsg;
	unsigned long long seq = (unsigned long long)bh->seq;
	if (*cap < need) {
		free(*buf);
		*cap = 0;
		if (!(*buf = malloc(need)))
			return -ENOMEM;
		*cap = need;
	}
	uint8_t *p = *buf;
	int rc = ckpt__pread_all(lz->fd[b->img], p, sizeof(*bh) + plen, b->off);
	if (rc)
		return rc;
	if (hint != NO_HINT)
		atomic_fetch_add(&lz->st_fault_read, sizeof(*bh) + plen);
	/* the file is read again: it must still be the file indexed */
	if (memcmp(p, bh, sizeof(*bh)) != 0 || ckpt__hash(p + sizeof(*bh), plen) != bh->payload_hash ||
	    memcmp(p + sizeof(*bh) + bh->data_len, b->runs, (size_t)bh->nruns * sizeof(struct ckpt__run)) != 0) {
		snprintf(msg, sizeof(lz->errmsg), "corrupt: block %llu of image %u payload checksum mismatch", seq,
			 b->img);
		return CKPT_E_CORRUPT;
	}
	const uint8_t *raw = p + sizeof(*bh);
	if (z) {
		uint8_t *out = p + sizeof(*bh) + plen;
		size_t got = ZSTD_decompressDCtx(dctx, out, raw_len, raw, bh->data_len);
		if (ZSTD_isError(got) || got != raw_len || ckpt__hash(out, raw_len) != bh->raw_hash) {
			snprintf(msg, sizeof(lz->errmsg), "corrupt: block %llu of image %u page contents checksum mismatch",
				 seq, b->img);
			return CKPT_E_CORRUPT;
		}
		raw = out;
	}
	/* the faulting page's neighbourhood first: its thread resumes while
	 * the rest of the block is installed */
	if (hint != NO_HINT) {
		uint64_t lo = hint & ~(uint64_t)(FIRST_PAGES - 1);
		rc = install_owned(lz, i, raw, lo, lo + FIRST_PAGES, true, owner);
		if (!rc && *window && !atomic_load(&lz->pwritten))
			return 0; /* the rest: a loader's (B_WINDOWED) */
		*window = false;
		if (!rc)
			rc = install_owned(lz, i, raw, lo, lo + FIRST_PAGES, false, owner);
		return rc;
	}
	*window = false;
	return install_owned(lz, i, raw, 0, 0, false, owner);
}

static void try_swap(struct ckpt__lazy *lz);

/* Marks block @i DONE (@rc 0) or BAD; called with lz->mu held, returns
 * without it. */
static int settle_block(struct ckpt__lazy *lz, uint32_t i, int rc)
{
	struct lz_block *b = &lz->blk[i];
	/* counted before anyone can see it DONE: a waiter that sees every
	 * block settled must see the pages counted too */
	if (!rc)
		atomic_fetch_add(&lz->resident, b->owned);
	if (rc) {
		/* failed before BAD is visible: whoever sees every block
		 * settled must not take the heap as resident */
		int expect = 0;
		atomic_compare_exchange_strong(&lz->failed, &expect, rc == -ENOMEM ? -ENOMEM : CKPT_E_CORRUPT);
	}
	b->state = rc ? B_BAD : B_DONE;
	lz->nsettled++;
	bool last = lz->nsettled == lz->nblk;
	pthread_cond_broadcast(&lz->cv);
	pthread_mutex_unlock(&lz->mu);
	if (rc) {
		/* loudly: the application will see SIGBUS on these pages */
		ckpt__log(lz->h, CKPT_LOG_ERROR,
			  "lazy restore: %s; its pages will not be served (SIGBUS on access) and the heap "
			  "cannot checkpoint",
			  lz->errmsg[0] ? lz->errmsg : ckpt_strerror(rc));
	}
	if (last)
		try_swap(lz);
	return rc ? B_BAD : B_DONE;
}

/* A fault's chunk of block @i failed (@rc): the block is settled BAD
 * unless someone holds it, and the failure is recorded either way (the
 * heap can no longer checkpoint); the faulting access is failed by the
 * caller.  Returns B_BAD. */
static int fault_failed(struct ckpt__lazy *lz, uint32_t i, int rc)
{
	struct lz_block *b = &lz->blk[i];
	pthread_mutex_lock(&lz->mu);
	if (b->state == B_IDLE || b->state == B_WINDOWED) {
		b->state = B_LOADING;
		settle_block(lz, i, rc); /* unlocks, logs */
		return B_BAD;
	}
	int expect = 0;
	atomic_compare_exchange_strong(&lz->failed, &expect, rc == -ENOMEM ? -ENOMEM : CKPT_E_CORRUPT);
	pthread_mutex_unlock(&lz->mu);
	ckpt__log(lz->h, CKPT_LOG_ERROR, "lazy restore: %s; the access is failed (SIGBUS) and the heap "
		  "cannot checkpoint", lz->errmsg[0] ? lz->errmsg : ckpt_strerror(rc));
	return B_BAD;
}

/* Test builds only: a loader that has taken a block stalls where
 * CKPT_FAULT_LAZY_LOADER is armed, until the test resets the sites
 * (ckpt__fault_reset() clears the hit count), the heap goes away or 10 s
 * pass, so that a test can see whether anyone waits for it, and what it
 * does when it resumes late. */
static void loader_test_stall(struct ckpt__lazy *lz)
{
	if (ckpt__fault_hit(CKPT_FAULT_LAZY_LOADER) >= 0)
		return;
#ifdef CKPT_FAULT_INJECTION
	struct pollfd pfd = { lz->stop_fd, POLLIN, 0 };
	for (uint64_t end = ckpt__now_ns() + 10000000000ull; !atomic_load(&lz->stop) && ckpt__now_ns() < end &&
							      ckpt__fault_hits(CKPT_FAULT_LAZY_LOADER) != 0;)
		poll(&pfd, 1, 20);
#endif
}

/* With lz->mu held, after loading block @i (@rc): settles it, or, if a
 * thread that would have waited for us loaded and settled it meanwhile,
 * only records a failure of ours (the heap can no longer checkpoint).
 * Returns without the lock: the block's state, B_BAD if @rc failed. */
static int settle_or_late(struct ckpt__lazy *lz, uint32_t i, int rc)
{
	struct lz_block *b = &lz->blk[i];
	if (b->state == B_LOADING)
		return settle_block(lz, i, rc); /* unlocks, logs */
	int st = b->state;
	if (rc) {
		int expect = 0;
		atomic_compare_exchange_strong(&lz->failed, &expect, rc == -ENOMEM ? -ENOMEM : CKPT_E_CORRUPT);
	}
	pthread_mutex_unlock(&lz->mu);
	if (!rc)
		return st;
	ckpt__log(lz->h, CKPT_LOG_ERROR, "lazy restore: %s; the access is failed (SIGBUS) and the heap "
		  "cannot checkpoint", lz->errmsg[0] ? lz->errmsg : ckpt_strerror(rc));
	return B_BAD;
}

/* Makes block @i DONE or BAD, loading it here unless another thread is;
 * with @wait false a block being loaded is left alone.  A fault (@hint:
 * its page) while loaders run may leave the block B_WINDOWED instead: the
 * pages around @hint are in, the loaders finish it.  Returns the block's
 * state.
 *
 * Nobody waits for the thread holding a block (a loader, or another
 * waiter): the loaders run SCHED_IDLE and an unprivileged process cannot
 * lend them its priority, so the holder may not get a CPU for a long
 * time.  A fault, ckpt_restore_wait() or a checkpoint reads, checks and
 * installs the block itself (a fault's page's neighbourhood first) and
 * settles it; the holder, when it is done, finds it settled and only adds
 * a failure of its own (settle_or_late()).  Both install only checked
 * bytes and UFFDIO_COPY skips what the other put in.  Only after a
 * pwrite(2) fallback (UFFDIO_COPY refused) does a thread wait: pwrite
 * would overwrite what the application wrote to pages the holder put in. */
static int ensure_block(struct ckpt__lazy *lz, uint32_t i, bool wait, uint64_t hint, uint8_t **buf,
			size_t *cap, ZSTD_DCtx *dctx)
{
	struct lz_block *b = &lz->blk[i];
	pthread_mutex_lock(&lz->mu);
	if (wait && b->state == B_LOADING && !atomic_load(&lz->pwritten)) {
		pthread_mutex_unlock(&lz->mu);
		bool window = false;
		int rc = dctx ? load_block(lz, i, hint, &window, false, buf, cap, dctx) : -ENOMEM;
		pthread_mutex_lock(&lz->mu);
		if (rc != -EOPNOTSUPP)
			return settle_or_late(lz, i, rc);
		/* UFFDIO_COPY refused: wait after all */
	}
	while (wait && b->state == B_LOADING)
		pthread_cond_wait(&lz->cv, &lz->mu);
	int st = b->state;
	if (st != B_IDLE && st != B_WINDOWED) {
		pthread_mutex_unlock(&lz->mu);
		return st;
	}
	/* A fault on a windowed block reads and verifies it again and installs
	 * the window around its own page (which pages are in is not recorded;
	 * UFFDIO_COPY skips those): the block is on redo already. */
	bool window = hint != NO_HINT && lz->loaders_live > 0;
	b->state = B_LOADING;
	pthread_mutex_unlock(&lz->mu);
	if (!wait)
		loader_test_stall(lz);
	int rc = dctx ? load_block(lz, i, hint, &window, true, buf, cap, dctx) : -ENOMEM;
	pthread_mutex_lock(&lz->mu);
	if (!rc && window && b->state == B_LOADING && lz->loaders_live > 0) {
		b->state = B_WINDOWED;
		if (st == B_IDLE)
			lz->redo[lz->nredo++] = i;
		pthread_cond_broadcast(&lz->cv);
		pthread_mutex_unlock(&lz->mu);
		return B_WINDOWED;
	}
	if (!rc && window && b->state == B_LOADING) {
		/* the loaders are gone: the rest is ours (installed again:
		 * UFFDIO_COPY skips the pages that are in) */
		pthread_mutex_unlock(&lz->mu);
		window = false;
		rc = load_block(lz, i, NO_HINT, &window, true, buf, cap, dctx);
		pthread_mutex_lock(&lz->mu);
	}
	return settle_or_late(lz, i, rc);
}

/* ------------------------------------------------------------ chunks */

/* Installs the pages block @i owns whose contents lie at [lo, hi) of its
 * page data (page-aligned), from @src (the data at @lo), waking their
 * waiters. */
static int install_data_range(struct ckpt__lazy *lz, uint32_t i, const uint8_t *src, uint64_t lo, uint64_t hi)
{
	const struct lz_block *b = &lz->blk[i];
	uint64_t k = 0, ps = lz->page_size;
	for (uint32_t r = 0; r < b->bh->nruns && k < hi; r++) {
		const struct ckpt__run *run = &b->runs[r];
		if (run->kind != CKPT__RUN_DATA)
			continue;
		uint64_t rlo = k, rhi = k + run->npages * ps;
		k = rhi;
		uint64_t a = rlo > lo ? rlo : lo, e = rhi < hi ? rhi : hi;
		if (a >= e)
			continue;
		uint64_t pe = run->first_page + (e - rlo) / ps;
		for (uint64_t q = run->first_page + (a - rlo) / ps, n; q < pe; q += n) {
			if (ckpt__ownermap_get(&lz->map, q, pe, &n) != i)
				continue; /* a newer image holds these */
			int rc = install_pages(lz, q, n, src + (rlo + (q - run->first_page) * ps - lo), true, NULL);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* Where page @p's contents start in block @b's page data; UINT64_MAX if no
 * data run of the block holds it. */
static uint64_t data_offset(const struct ckpt__lazy *lz, const struct lz_block *b, uint64_t p)
{
	uint64_t k = 0;
	for (uint32_t r = 0; r < b->bh->nruns; r++) {
		const struct ckpt__run *run = &b->runs[r];
		if (run->kind != CKPT__RUN_DATA)
			continue;
		if (p >= run->first_page && p - run->first_page < run->npages)
			return (k + (p - run->first_page)) * lz->page_size;
		k += run->npages;
	}
	return UINT64_MAX;
}

/* A fault on page @p of stored block @i (version 4): reads the one chunk
 * that holds its contents, checks it against the chunk hash the trailer
 * gave (the block table is covered by the trailer checksum and the
 * whole-file digest), and installs the pages of that chunk the block owns.
 * The block's state is left alone: a loader still installs the whole
 * block (UFFDIO_COPY skips the pages that are in).  0, or CKPT_E_CORRUPT /
 * -errno with lz->errmsg set. */
static int load_chunk(struct ckpt__lazy *lz, uint32_t i, uint64_t p, uint8_t **buf, size_t *cap)
{
	const struct lz_block *b = &lz->blk[i];
	uint64_t at = data_offset(lz, b, p);
	unsigned long long seq = (unsigned long long)b->bh->seq;
	if (at == UINT64_MAX) {
		/* the owner map and the runs were built from the same table */
		snprintf(lz->errmsg, sizeof(lz->errmsg), "block %llu of image %u does not hold page %llu", seq,
			 b->img, (unsigned long long)p);
		return CKPT_E_FAILED;
	}
	uint64_t c = at / b->csize, lo = c * b->csize;
	size_t len = b->bh->data_len - lo < b->csize ? (size_t)(b->bh->data_len - lo) : b->csize;
	if (*cap < len) {
		free(*buf);
		*cap = 0;
		if (!(*buf = malloc(len)))
			return -ENOMEM;
		*cap = len;
	}
	int rc = ckpt__pread_all(lz->fd[b->img], *buf, len, b->off + sizeof(*b->bh) + lo);
	if (rc) {
		snprintf(lz->errmsg, sizeof(lz->errmsg), "reading block %llu of image %u: %s", seq, b->img,
			 ckpt_strerror(rc));
		return rc;
	}
	atomic_fetch_add(&lz->st_fault_read, len);
	if (ckpt__hash(*buf, len) != b->chunk[c]) {
		snprintf(lz->errmsg, sizeof(lz->errmsg), "corrupt: block %llu of image %u chunk %llu checksum mismatch",
			 seq, b->img, (unsigned long long)c);
		return CKPT_E_CORRUPT;
	}
	return install_data_range(lz, i, *buf, lo, lo + len);
}

/* Makes the page @p, owned by @o (a block index, | OWN_ZERO for a zero
 * run), ready for a fault: a block with chunk hashes gives just the chunk
 * (or nothing, for a zero run: the table, checked up front, says so);
 * others go through ensure_block().  B_BAD when the page must not be
 * served. */
static int fault_block(struct ckpt__lazy *lz, uint32_t o, uint64_t p, uint8_t **buf, size_t *cap,
		       ZSTD_DCtx *dctx)
{
	uint32_t i = o & ~OWN_ZERO;
	struct lz_block *b = &lz->blk[i];
	/* after a pwrite(2) fallback pages are installed whole blocks at a
	 * time (pwrite overwrites): no chunks */
	if (!b->chunk || atomic_load(&lz->pwritten))
		return ensure_block(lz, i, true, p, buf, cap, dctx);
	/* without lz->mu, which a SCHED_IDLE loader might hold while it is
	 * off the CPU; DONE and BAD are final, and a block going DONE under
	 * us only makes the chunk's pages EEXIST */
	int st = atomic_load(&b->state);
	/* DONE: the page was installed; a hole now is the application's (a
	 * discard): zero, never the image's contents again */
	if (st == B_DONE || st == B_BAD || (o & OWN_ZERO))
		return st;
	int rc = load_chunk(lz, i, p, buf, cap);
	if (rc == -EOPNOTSUPP) /* UFFDIO_COPY refused: whole blocks from now on */
		return ensure_block(lz, i, true, p, buf, cap, dctx);
	return rc ? fault_failed(lz, i, rc) : B_DONE;
}

/* Fully resident and no block failed: the heap's own uffd takes the range. */
static void try_swap(struct ckpt__lazy *lz)
{
	if (!atomic_load(&lz->serving) || atomic_load(&lz->failed) || atomic_load(&lz->swapped))
		return;
	pthread_mutex_lock(&lz->mu);
	bool go = lz->nsettled == lz->nblk && !atomic_load(&lz->swapped) && !atomic_load(&lz->failed);
	if (go) {
		struct uffdio_range r = { (uint64_t)(uintptr_t)lz->h->base, lz->h->size };
		/* every page with data is in the memfd: a hole is now truly a
		 * zero page, which the kernel fills by itself */
		ioctl(lz->uffd, UFFDIO_UNREGISTER, &r);
		int rc = ckpt__heap_register_wp(lz->h);
		if (rc) {
			atomic_store(&lz->failed, rc);
			ckpt__log(lz->h, CKPT_LOG_ERROR, "lazy restore: write-protect registration failed: %s",
				  ckpt_strerror(rc));
		} else {
			atomic_store(&lz->swapped, true);
		}
	}
	pthread_mutex_unlock(&lz->mu);
}

/* ------------------------------------------------------------ threads */

static void fail_access(struct ckpt__lazy *lz, uint64_t addr, uint32_t tid)
{
	uint64_t pa = addr & ~((uint64_t)lz->page_size - 1);
	if (lz->poison) {
		struct uffdio_poison up = { .range = { pa, lz->page_size }, .mode = 0 };
		if (ioctl(lz->uffd, UFFDIO_POISON, &up) == 0)
			return;
		if (errno == EEXIST) {
			/* a checked page went in meanwhile (installed with
			 * DONTWAKE by a loader): the thread must be woken */
			struct uffdio_range w = { pa, lz->page_size };
			ioctl(lz->uffd, UFFDIO_WAKE, &w);
			return;
		}
	}
	/* no poison markers: the thread gets its SIGBUS before the access
	 * is retried (the signal interrupts the fault) */
	if (tid)
		syscall(SYS_tgkill, getpid(), (pid_t)tid, SIGBUS);
	struct uffdio_range w = { pa, lz->page_size };
	ioctl(lz->uffd, UFFDIO_WAKE, &w);
}

/* Resolves a missing fault at @addr. */
static void handle_fault(struct ckpt__lazy *lz, uint64_t addr, uint32_t tid, uint8_t **buf, size_t *cap,
			 ZSTD_DCtx *dctx)
{
	uint64_t base = (uint64_t)(uintptr_t)lz->h->base, t0 = ckpt__now_ns();
	uint64_t p = (addr - base) / lz->page_size;
	uint64_t hp = lz->h->size / lz->page_size, same;
	uint32_t o = ckpt__ownermap_get(&lz->map, p, hp, &same);
	if (o != OWN_NONE && fault_block(lz, o, p, buf, cap, dctx) == B_BAD) {
		if (atomic_load(&lz->serving)) {
			fail_access(lz, addr, tid);
			return;
		}
		/* ckpt_restore() is still running and will fail: zeroes for
		 * its own thread, never seen by the application */
	}
	/* A data page is there now (EEXIST); a zero page is filled here,
	 * and pages after it that are zero for the same reason with it. */
	uint64_t n = 1;
	if (o == OWN_NONE || (o & OWN_ZERO))
		n = same < ZERO_BATCH ? same : ZERO_BATCH;
	struct uffdio_zeropage zp = { .range = { base + p * lz->page_size, n * lz->page_size },
				      .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE };
	ioctl(lz->uffd, UFFDIO_ZEROPAGE, &zp);
	struct uffdio_range w = { base + p * lz->page_size, lz->page_size };
	ioctl(lz->uffd, UFFDIO_WAKE, &w);
	uint64_t t1 = ckpt__now_ns();
	atomic_fetch_add(&lz->st_faults, 1);
	atomic_fetch_add(&lz->st_fault_ns, t1 - t0);
}

static void *fault_main(void *arg)
{
	struct ckpt__lazy *lz = arg;
	uint8_t *buf = NULL;
	size_t cap = 0;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	struct uffd_msg msgs[16];
	while (!atomic_load(&lz->stop)) {
		struct pollfd pfd[2] = { { lz->uffd, POLLIN, 0 }, { lz->stop_fd, POLLIN, 0 } };
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		ssize_t n = read(lz->uffd, msgs, sizeof(msgs));
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				handle_fault(lz, msgs[i].arg.pagefault.address, msgs[i].arg.pagefault.feat.ptid,
					     &buf, &cap, dctx);
	}
	free(buf);
	ZSTD_freeDCtx(dctx);
	return NULL;
}

/* A block a fault left windowed, for a loader that has done its sweep:
 * false when there is none, and then this loader is done (decided under
 * the lock a fault takes to window a block, so none is left behind). */
static bool next_redo(struct ckpt__lazy *lz, uint32_t *i)
{
	pthread_mutex_lock(&lz->mu);
	bool got = lz->nredo > 0;
	if (got)
		*i = lz->redo[--lz->nredo];
	else
		lz->loaders_live--;
	pthread_mutex_unlock(&lz->mu);
	return got;
}

/* A background loader: blocks in file order, skipping those a fault took,
 * then those a fault left windowed. */
static void *loader_main(void *arg)
{
	struct ckpt__lazy *lz = arg;
	/* Background work: the fault thread and the application come first
	 * (a fault stalls a request; a loader only shortens the warm-up).
	 * SCHED_IDLE: only CPU time nobody else wants (by weight a nice-19
	 * thread still gets 1.4% of a CPU against each nice-0 one; nice-10
	 * loaders cost the first reply 3-8 ms in bench/results/
	 * 2026-11-30-vm-restart.md).  Safe because nobody waits for a
	 * loader (ensure_block()).  Lowering one's own policy needs no
	 * privilege; nice 19 where it is refused. */
	struct sched_param sp = { .sched_priority = 0 };
	if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
		setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
	uint8_t *buf = NULL;
	size_t cap = 0;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	while (!atomic_load(&lz->stop)) {
		uint32_t i = atomic_fetch_add(&lz->next, 1);
		if (i >= lz->nblk && !next_redo(lz, &i))
			break;
		ensure_block(lz, i, false, NO_HINT, &buf, &cap, dctx);
	}
	free(buf);
	ZSTD_freeDCtx(dctx);
	return NULL;
}

/* THREAD_ID names the thread to signal where poison markers are missing;
 * ask for POISON (6.6+) and fall back if the kernel refuses. */
static int open_lazy_uffd(bool *poison)
{
	int fd = -1;
	int rc = ckpt__uffd_open(UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_POISON, NULL, &fd);

	*poison = rc == 0;
	if (rc == CKPT_E_KERNEL)
		rc = ckpt__uffd_open(UFFD_FEATURE_THREAD_ID, NULL, &fd);
	return rc < 0 ? rc : fd;
}

static int lazy_attach(struct ckpt__lazy *lz, ckpt_heap *h)
{
	struct uffdio_register reg = { .range = { (uint64_t)(uintptr_t)h->base, h->size },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(lz->uffd, UFFDIO_REGISTER, &reg) != 0)
		return errno == EINVAL ? CKPT_E_KERNEL : -errno;
	lz->h = h;
	lz->t_attach = ckpt__now_ns();
	if (ckpt__thread_start(&lz->fault_th, "ckpt-lazyfault", fault_main, lz) != 0) {
		struct uffdio_range r = reg.range;
		ioctl(lz->uffd, UFFDIO_UNREGISTER, &r);
		lz->h = NULL;
		return -EAGAIN;
	}
	lz->fault_up = true;
	return 0;
}

static void lazy_detach(struct ckpt__lazy *lz)
{
	if (!lz)
		return;
	atomic_store(&lz->stop, true);
	uint64_t one = 1;
	if (write(lz->stop_fd, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only on overflow: it is set already */
	}
	for (int i = 0; i < lz->nloaders; i++)
		pthread_join(lz->loader[i], NULL);
	lz->nloaders = 0;
	if (lz->fault_up)
		pthread_join(lz->fault_th, NULL);
	lz->fault_up = false;
	if (lz->h && !atomic_load(&lz->swapped)) {
		/* wakes any thread still waiting on a fault */
		struct uffdio_range r = { (uint64_t)(uintptr_t)lz->h->base, lz->h->size };
		ioctl(lz->uffd, UFFDIO_UNREGISTER, &r);
	}
	lz->h = NULL; /* detached: the heap may go away before we are freed */
}

static void lazy_free(struct ckpt__lazy *lz)
{
	if (!lz)
		return;
	lazy_detach(lz);
	if (lz->uffd >= 0)
		close(lz->uffd);
	if (lz->stop_fd >= 0)
		close(lz->stop_fd);
	for (uint32_t i = 0; i < lz->nimg; i++)
		if (lz->fd[i] >= 0)
			close(lz->fd[i]);
	for (uint32_t i = 0; lz->img && i < lz->nimg; i++) {
		ckpt__buf_free(lz->img[i].trl, lz->img[i].f.trailer_size);
		free(lz->img[i].arr);
	}
	free(lz->img);
	ckpt__buf_free(lz->blk, (size_t)lz->nblk_cap * sizeof(*lz->blk));
	free(lz->redo);
	free(lz->fd);
	ckpt__ownermap_free(&lz->map);
	pthread_mutex_destroy(&lz->mu);
	pthread_cond_destroy(&lz->cv);
	free(lz);
}

static int lazy_make_resident(ckpt_heap *h)
{
	struct ckpt__lazy *lz = h ? h->lazy : NULL;
	if (!lz || atomic_load(&lz->swapped))
		return 0;
	uint8_t *buf = NULL;
	size_t cap = 0;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	/* this thread loads too: a checkpoint asked for now is done sooner */
	for (uint32_t i = 0; i < lz->nblk; i++)
		ensure_block(lz, i, true, NO_HINT, &buf, &cap, dctx);
	free(buf);
	ZSTD_freeDCtx(dctx);
	try_swap(lz);
	int f = atomic_load(&lz->failed);
	return f ? f : atomic_load(&lz->swapped) ? 0 : CKPT_E_FAILED;
}

/* how heap.c and the engine reach this file (internal.h) */
static const struct ckpt__lazy_ops lazy_ops = {
	.attach = lazy_attach,
	.detach = lazy_detach,
	.release = lazy_free,
	.make_resident = lazy_make_resident,
};

CKPT_API int ckpt_restore_wait(ckpt_heap *h)
{
	if (!h)
		return -EINVAL;
	return lazy_make_resident(h);
}

CKPT_API int ckpt_restore_progress(ckpt_heap *h, uint64_t *resident, uint64_t *total)
{
	if (!h)
		return -EINVAL;
	struct ckpt__lazy *lz = h->lazy;
	uint64_t r = lz ? atomic_load(&lz->resident) : h->npages;
	uint64_t t = lz ? lz->total : h->npages;
	if (resident)
		*resident = r;
	if (total)
		*total = t;
	return lz ? atomic_load(&lz->failed) : 0;
}

/* ------------------------------------------------------------ restore */

static int open_chain(struct ckpt__lazy *lz, const char *path, struct ckpt__img_header **hdrs,
		      char *err, size_t errsz);

static void count_owned(struct ckpt__lazy *lz)
{
	for (size_t k = 0; k < lz->map.n; k++) {
		uint32_t o = lz->map.seg[k].own;
		if (!(o & OWN_ZERO))
			lz->blk[o].owned += lz->map.seg[k].n;
	}
	for (uint32_t i = 0; i < lz->nblk; i++)
		lz->total += lz->blk[i].owned;
}

static int lazy_new(struct ckpt__lazy **out)
{
	struct ckpt__lazy *lz = calloc(1, sizeof(*lz));
	if (!lz)
		return -ENOMEM;
	lz->uffd = lz->stop_fd = -1;
	pthread_mutex_init(&lz->mu, NULL);
	pthread_cond_init(&lz->cv, NULL);
	*out = lz;
	lz->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (lz->stop_fd < 0)
		return -errno;
	bool poison = false;
	int fd = open_lazy_uffd(&poison);
	if (fd < 0)
		return fd;
	lz->uffd = fd;
	lz->poison = poison;
	return 0;
}

/* Reads and checks image @img's footer and trailer into lz->img[img]. */
static int read_trailer(struct ckpt__lazy *lz, uint32_t img, const struct ckpt__img_header *h, char *err,
			size_t errsz)
{
	struct lz_image *im = &lz->img[img];
	int rc = ckpt__img_read_trailer(lz->fd[img], h, &im->f, &im->trl, err, errsz);
	if (rc)
		im->f.trailer_size = 0; /* nothing to free */
	return rc;
}

/* The block array for every image's trailer count (each at most 2^31,
 * ckpt__img_read_trailer()), in one piece. */
static int alloc_blocks(struct ckpt__lazy *lz)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < lz->nimg; i++) {
		struct ckpt__trl_header t;
		memcpy(&t, lz->img[i].trl, sizeof(t));
		n += t.nblocks;
	}
	if (n > MAX_BLOCKS)
		return CKPT_E_CORRUPT;
	lz->blk = ckpt__buf_alloc((size_t)n * sizeof(*lz->blk)); /* zeroed */
	if (!lz->blk)
		return -ENOMEM;
	lz->nblk_cap = (uint32_t)n;
	return 0;
}

/* Index of the whole chain; lz->fd and the owner map are filled. */
static int lazy_index(struct ckpt__lazy *lz, const char *path, struct ckpt__img_header *tip, char *err,
		      size_t errsz)
{
	struct ckpt__img_header *hd = NULL;
	int rc = open_chain(lz, path, &hd, err, errsz);
	if (rc) {
		free(hd);
		return rc;
	}
	*tip = hd[lz->nimg - 1];
	lz->page_size = tip->page_size;
	lz->npages = tip->npages;
	uint64_t t0 = ckpt__now_ns();
	char msg[200] = "";
	uint32_t i = 0;
	/* every trailer first: the block array is allocated once */
	for (; i < lz->nimg && !rc; i++)
		rc = read_trailer(lz, i, &hd[i], msg, sizeof(msg));
	lz->st_trl_ns = ckpt__now_ns() - t0;
	if (!rc && (rc = alloc_blocks(lz)) == 0)
		for (i = 0; i < lz->nimg && !rc; i++)
			rc = index_image(lz, i, lz->fd[i], &hd[i], msg, sizeof(msg));
	if (rc) /* i: the failing image, counted from 1 */
		ckpt__errf(err, errsz, rc, "image %u of %u in the chain: %s", i, lz->nimg,
			   msg[0] ? msg : ckpt_strerror(rc));
	free(hd);
	if (!rc)
		count_owned(lz);
	/* each block enters redo at most once: when it is first windowed */
	if (!rc && !(lz->redo = malloc(((size_t)lz->nblk + 1) * sizeof(*lz->redo))))
		rc = -ENOMEM;
	return rc;
}

static int loaders_wanted(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > MAX_LOADERS ? MAX_LOADERS : (int)n;
}

/* Promises loaders before the heap is opened: the blocks the allocator
 * reads while ckpt_restore() runs are then windowed too (the pages it reads
 * go in, the rest of each block waits for a loader), which keeps them off
 * the time to the first reply.  start_loaders() keeps the promise. */
static void promise_loaders(struct ckpt__lazy *lz)
{
	pthread_mutex_lock(&lz->mu);
	lz->loaders_live = loaders_wanted(); /* before any can leave */
	pthread_mutex_unlock(&lz->mu);
}

static void start_loaders(struct ckpt__lazy *lz)
{
	int want = loaders_wanted();
	for (int i = 0; i < want; i++)
		if (ckpt__thread_start(&lz->loader[lz->nloaders], "ckpt-load", loader_main, lz) == 0)
			lz->nloaders++;
	pthread_mutex_lock(&lz->mu);
	lz->loaders_live -= want - lz->nloaders;
	pthread_mutex_unlock(&lz->mu);
	if (lz->nloaders)
		return;
	/* no thread to be had: the windowed blocks are finished here */
	uint32_t i;
	uint8_t *buf = NULL;
	size_t cap = 0;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	pthread_mutex_lock(&lz->mu);
	lz->loaders_live = 0;
	while (lz->nredo) {
		i = lz->redo[--lz->nredo];
		pthread_mutex_unlock(&lz->mu);
		ensure_block(lz, i, true, NO_HINT, &buf, &cap, dctx);
		pthread_mutex_lock(&lz->mu);
	}
	pthread_mutex_unlock(&lz->mu);
	free(buf);
	ZSTD_freeDCtx(dctx);
}

/* CPU time of the calling thread (user + system), ns. */
static uint64_t thread_cpu_ns(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		return 0;
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

/* Where ckpt_restore() spent its time (@t: start, indexed, memfd made,
 * heap opened; @cpu: this thread's CPU time over all of it), for whoever
 * chases the time to a first reply: wall time beyond the CPU time of this
 * thread and of the fault handler was spent waiting (for a CPU, mostly). */
static void log_setup(struct ckpt__lazy *lz, const uint64_t *t, uint64_t cpu)
{
	ckpt__log(lz->h, CKPT_LOG_DEBUG, "lazy restore: %.3f ms, of which this thread ran %.3f ms", (t[3] - t[0]) / 1e6,
		  cpu / 1e6);
	ckpt__log(lz->h, CKPT_LOG_DEBUG,
		  "lazy restore: index %.3f ms (%u images, %u blocks: trailer read %.3f, blocks checked %.3f, "
		  "owner map %.3f ms), memfd %.3f ms, heap set-up %.3f ms "
		  "(to the mapped range %.3f ms; then engine and allocator, %llu faults: %.3f ms in the handler, "
		  "%llu KiB read)",
		  (t[1] - t[0]) / 1e6, lz->nimg, lz->nblk, lz->st_trl_ns / 1e6, lz->st_blocks_ns / 1e6,
		  lz->st_map_ns / 1e6, (t[2] - t[1]) / 1e6, (t[3] - t[2]) / 1e6,
		  (lz->t_attach - t[2]) / 1e6,
		  (unsigned long long)atomic_load(&lz->st_faults), atomic_load(&lz->st_fault_ns) / 1e6,
		  (unsigned long long)atomic_load(&lz->st_fault_read) >> 10);
}

int ckpt__lazy_restore(const char *path, const struct ckpt_restore_opts *o, ckpt_heap **out)
{
	char *err = o->errbuf;
	size_t errsz = o->errbuf_size;
	const struct ckpt_heap_opts *ho = o->heap;
	struct ckpt__lazy *lz = NULL;
	struct ckpt__img_header h;
	uint64_t t[4] = { ckpt__now_ns() }, cpu0 = thread_cpu_ns();
	int rc = lazy_new(&lz);
	if (rc)
		ckpt__errf(err, errsz, rc, "userfaultfd: %s", ckpt_strerror(rc));
	else
		rc = lazy_index(lz, path, &h, err, errsz);
	if (!rc && h.page_size != (uint32_t)sysconf(_SC_PAGESIZE)) {
		lazy_free(lz);
		return 1; /* a hugetlb image: the eager path */
	}
	if (!rc && ckpt__check_range(h.base, h.heap_size, h.page_size) != 0)
		rc = ckpt__errf(err, errsz, CKPT_E_RANGE,
				   "the heap range %#llx + %#llx is outside this process's address space",
				   (unsigned long long)h.base, (unsigned long long)h.heap_size);
	int memfd = -1;
	t[1] = ckpt__now_ns();
	const char *name = ho && ho->name ? ho->name : "libckpt";
	if (!rc && (rc = ckpt__memfd_create(name, h.heap_size, false, &memfd)) != 0)
		ckpt__errf(err, errsz, rc, "memfd: %s", ckpt_strerror(rc));
	ckpt_heap *heap = NULL;
	t[2] = ckpt__now_ns();
	if (!rc) {
		promise_loaders(lz);
		rc = ckpt__heap_adopt_lazy(memfd, h.base, h.heap_size, h.page_size, ho, lz, &lazy_ops, &heap);
		if (rc == -EEXIST)
			rc = CKPT_E_ADDRINUSE;
		if (rc) {
			close(memfd);
			ckpt__errf(err, errsz, rc, "cannot set up the restored heap: %s", ckpt_strerror(rc));
		}
	}
	if (!rc && atomic_load(&lz->failed)) {
		/* a block the allocator read while opening the heap was bad */
		rc = atomic_load(&lz->failed);
		ckpt__errf(err, errsz, rc, "%s", lz->errmsg[0] ? lz->errmsg : ckpt_strerror(rc));
		ckpt_heap_destroy(heap); /* frees lz */
		return rc;
	}
	if (rc) {
		lazy_free(lz);
		return rc;
	}
	ckpt__heap_set_lineage(heap, h.generation, h.id);
	t[3] = ckpt__now_ns();
	log_setup(lz, t, thread_cpu_ns() - cpu0);
	atomic_store(&lz->serving, true);
	start_loaders(lz);
	try_swap(lz); /* an image whose blocks the restore itself loaded */
	*out = heap;
	return 0;
}

/* ------------------------------------------------------------ chain */

/* Opens the chain ending at @path (imgread.c: the same resolution as the
 * eager restore) and keeps its fds in lz->fd and its headers in *@hdrs
 * (malloc'ed), oldest first, as they are laid over each other. */
static int open_chain(struct ckpt__lazy *lz, const char *path, struct ckpt__img_header **hdrs,
		      char *err, size_t errsz)
{
	struct link *l;
	size_t n;
	*hdrs = NULL;
	int rc = ckpt__chain_resolve(path, &l, &n, err, errsz);
	if (rc)
		return rc;
	lz->fd = malloc(n * sizeof(*lz->fd));
	lz->img = calloc(n, sizeof(*lz->img));
	*hdrs = malloc(n * sizeof(**hdrs));
	if (!lz->fd || !lz->img || !*hdrs) {
		ckpt__chain_free(l, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		lz->fd[i] = l[n - 1 - i].fd; /* the fds change hands */
		l[n - 1 - i].fd = -1;
		(*hdrs)[i] = l[n - 1 - i].h;
	}
	lz->nimg = (uint32_t)n;
	/* an image's runs lie inside its own extent; the tip's must hold them all */
	for (size_t i = 1; i < n && !rc; i++)
		if ((*hdrs)[i - 1].npages > (*hdrs)[i].npages)
			rc = ckpt__errf(err, errsz, CKPT_E_PARENT,
					   "parent image %s is not the one its child was made from", l[n - i].path);
	ckpt__chain_free(l, n);
	return rc;
}
