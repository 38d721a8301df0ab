/*
 * restore.c - reading images: ckpt_restore(), ckpt_restore_fd(),
 * ckpt_image_info(), ckpt_image_verify(), ckpt_image_merge().
 *
 * One reader serves them all: it walks an image front to back as a stream
 * (a file through io_uring with several 1 MiB reads in flight, a pipe
 * through read(2)), checks every structure's checksum before using any
 * value in it, and hands each verified block to worker threads that
 * decompress it and copy its pages into the target memory.  The target is
 * never visible to the application before the whole image (and chain) has
 * passed: ckpt_restore() fills a memfd with pwrite(2) (hugetlbfs: through a
 * private mapping) and only maps it at the heap's base once everything
 * checked out.
 *
 * An incremental chain is resolved from the tip (headers only, each link's
 * id and geometry checked) and then applied oldest first; blocks within one
 * image touch disjoint pages, so they are applied in parallel, and the
 * workers are drained between images.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <zstd.h>

#include "faultinject.h"
#include "image.h"
#include "imgread.h"
#include "internal.h"

#define RD_CHUNK (1u << 20)
#define RD_QD 4
#define JOBS_MAX 8
#define RD_THREADS 16 /* decompression workers at most (one per core) */
#define HUGE_2M (2u << 20)

/* ------------------------------------------------------------ reader */

struct rd_chunk {
	uint8_t *mem;
	uint64_t off;  /* file offset of mem[0] */
	size_t want;   /* bytes asked for (0: past the end of the file) */
	size_t have;   /* bytes read so far */
	size_t pos;    /* bytes consumed */
	bool inflight;
};

struct rd {
	int fd;
	bool uring;        /* a regular file read at explicit offsets, RD_QD chunks ahead */
	bool ring_ok;      /* false in offset mode: io_uring is unavailable, pread(2) instead */
	int ring_err;      /* why io_uring could not be set up */
	struct io_uring ring;
	uint64_t size;     /* file size (uring mode) */
	uint64_t next_off; /* next file offset to ask for */
	struct rd_chunk ch[RD_QD];
	unsigned head;
	uint64_t consumed;
	uint64_t start_off;
	XXH3_state_t *fh; /* whole-file digest (image.h): the caller feeds it the structures */
	int err;
	/* progress */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
	uint64_t progress_base, progress_total, progress_last;
};

/* Without io_uring: reads the rest of @c now (a short read is the end of a
 * file that shrank, as for a completion). */
static int rd_pread(struct rd *r, struct rd_chunk *c)
{
	while (c->have < c->want) {
		ssize_t k = pread(r->fd, c->mem + c->have, c->want - c->have, (off_t)(c->off + c->have));
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0) {
			c->want = c->have;
			break;
		}
		c->have += (size_t)k;
	}
	return 0;
}

static int rd_submit(struct rd *r, struct rd_chunk *c)
{
	if (!r->ring_ok)
		return rd_pread(r, c);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, r->fd, c->mem + c->have, (unsigned)(c->want - c->have),
			   c->off + c->have);
	io_uring_sqe_set_data(sqe, c);
	int rc = ckpt__fault_hit(CKPT_FAULT_URING_SUBMIT);
	if (!rc)
		rc = io_uring_submit(&r->ring);
	if (rc < 0)
		return rc;
	c->inflight = true;
	return 0;
}

/* Asks for the next stretch of the file into @c. */
static int rd_refill(struct rd *r, struct rd_chunk *c)
{
	c->off = r->next_off;
	c->have = c->pos = 0;
	c->want = r->next_off < r->size ? (size_t)(r->size - r->next_off < RD_CHUNK ? r->size - r->next_off : RD_CHUNK) : 0;
	r->next_off += c->want;
	if (!c->want)
		return 0;
	return rd_submit(r, c);
}

static int rd_wait(struct rd *r, struct rd_chunk *c)
{
	while (c->inflight) {
		struct io_uring_cqe *cqe;
		int rc = io_uring_wait_cqe(&r->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			return rc;
		struct rd_chunk *d = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
		d->inflight = false;
		if (res == -EINTR || res == -EAGAIN)
			res = 0;
		else if (res == 0)
			d->want = d->have; /* the file shrank: it ends here */
		if (res < 0)
			return res;
		d->have += (size_t)res;
		if (d->have < d->want) {
			rc = rd_submit(r, d);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static void rd_close(struct rd *r)
{
	if (r->ring_ok) {
		for (int i = 0; i < RD_QD; i++)
			rd_wait(r, &r->ch[i]);
		io_uring_queue_exit(&r->ring);
	}
	for (int i = 0; i < RD_QD; i++)
		free(r->ch[i].mem);
	if (r->fh)
		XXH3_freeState(r->fh);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

static int rd_open(struct rd *r, int fd)
{
	struct stat st;
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	if (fstat(fd, &st) != 0)
		return -errno;
	r->fh = XXH3_createState();
	if (!r->fh)
		return -ENOMEM;
	XXH3_64bits_reset(r->fh);
	int nch = S_ISREG(st.st_mode) ? RD_QD : 1;
	/* + a header's worth: ckpt_restore_fd() pushes the header back */
	for (int i = 0; i < nch; i++)
		if (!(r->ch[i].mem = malloc(RD_CHUNK + CKPT__IMG_HEADER_SIZE)))
			return -ENOMEM;
	if (!S_ISREG(st.st_mode))
		return 0;
	r->uring = true;
	r->size = (uint64_t)st.st_size;
	/* one pass front to back: a larger kernel readahead window */
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	off_t pos = lseek(fd, 0, SEEK_CUR); /* an fd is read from where it stands */
	r->next_off = pos > 0 ? (uint64_t)pos : 0;
	r->start_off = r->next_off;
	int rc = ckpt__fault_hit(CKPT_FAULT_URING_SETUP);
	if (!rc)
		rc = io_uring_queue_init(RD_QD * 2, &r->ring, 0);
	if (rc < 0)
		r->ring_err = rc; /* plain pread(2): the caller says so once */
	else
		r->ring_ok = true;
	for (int i = 0; i < RD_QD; i++) {
		rc = rd_refill(r, &r->ch[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* Copies up to @n next bytes of the stream to @dst; *got < n only at the
 * end of the stream.  @return 0 or -errno. */
static int rd_get(struct rd *r, void *dst, size_t n, size_t *got)
{
	uint8_t *out = dst;
	*got = 0;
	if (r->err)
		return r->err;
	while (n) {
		struct rd_chunk *c = &r->ch[r->head];
		if (r->uring) {
			int rc = rd_wait(r, c);
			if (rc)
				return r->err = rc;
			if (c->pos == c->have) {
				if (c->have < c->want || !c->want)
					break; /* end of file */
				rc = rd_refill(r, c);
				if (rc)
					return r->err = rc;
				r->head = (r->head + 1) % RD_QD;
				continue;
			}
		} else if (c->pos == c->have) {
			ssize_t k = read(r->fd, c->mem, RD_CHUNK);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return r->err = -errno;
			if (k == 0)
				break;
			c->have = (size_t)k;
			c->pos = 0;
		}
		size_t k = c->have - c->pos < n ? c->have - c->pos : n;
		memcpy(out, c->mem + c->pos, k);
		c->pos += k;
		out += k;
		n -= k;
		*got += k;
		r->consumed += k;
	}
	if (r->progress && r->consumed - r->progress_last >= (8u << 20)) {
		r->progress_last = r->consumed;
		r->progress(r->progress_arg, r->progress_base + r->consumed, r->progress_total);
	}
	return 0;
}

/* ------------------------------------------------------------ workers */

struct job {
	struct job *next;
	struct ckpt__blk_header bh;
	uint8_t *buf; /* data then runs */
	size_t cap;
};

struct apply {
	/* target */
	uint8_t *mem;       /* NULL (and !pwrite): verify only */
	int memfd;          /* >= 0: zero runs punch holes in it; else MADV_DONTNEED on mem */
	bool pwrite;        /* pages go to memfd with pwrite(2), not through mem */
	uint32_t page_size;
	bool zero_runs;     /* an incremental: zero runs must clear pages */

	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_idle;
	struct job *head, *tail, *free;
	unsigned queued, busy, njobs;
	bool stop;
	int err;
	char errmsg[200];
	int plain_io_err;   /* a file was read without io_uring, for this reason */
	pthread_t th[RD_THREADS];
	int nth;
	bool started;      /* mutex and condvars initialised */
	/* The first blocks are applied on the reader's thread: a small image
	 * is done before threads would have started. */
	unsigned inline_left;
	ZSTD_DCtx *dctx;
	uint8_t *scratch;
	size_t scap;
};

static int apply_block(struct apply *a, struct job *j, uint8_t **scratch, size_t *scap,
		       ZSTD_DCtx *dctx, char *msg, size_t msz)
{
	const struct ckpt__blk_header *b = &j->bh;
	size_t raw_len = (size_t)b->data_pages * a->page_size;
	const uint8_t *raw = j->buf;
	const uint8_t *runs = j->buf + b->data_len; /* may be unaligned */
	unsigned long long seq = (unsigned long long)b->seq;

	if (b->flags & CKPT__BLK_ZSTD) {
		if (*scap < raw_len) {
			free(*scratch);
			*scratch = malloc(raw_len);
			*scap = *scratch ? raw_len : 0;
			if (!*scratch)
				return -ENOMEM;
		}
		size_t z = ZSTD_decompressDCtx(dctx, *scratch, raw_len, j->buf, b->data_len);
		if (ZSTD_isError(z) || z != raw_len)
			return ckpt__errf(msg, msz, CKPT_E_CORRUPT,
					     "corrupt: block %llu does not decompress to %u pages", seq,
					     b->data_pages);
		raw = *scratch;
	}
	/* stored pages were covered by the payload hash on the reader thread */
	if ((b->flags & CKPT__BLK_ZSTD) && ckpt__hash(raw, raw_len) != b->raw_hash)
		return ckpt__errf(msg, msz, CKPT_E_CORRUPT,
				     "corrupt: block %llu page contents checksum mismatch", seq);
	if (!a->mem && !a->pwrite)
		return 0;
	/* The run records were checked on the reader thread (inside the
	 * extent, counts matching); runs from one image never overlap. */
	size_t k = 0;
	for (uint32_t i = 0; i < b->nruns; i++) {
		struct ckpt__run run, *r = &run;
		memcpy(&run, runs + i * sizeof(run), sizeof(run));
		size_t off = (size_t)r->first_page * a->page_size;
		size_t len = (size_t)r->npages * a->page_size;
		if (r->kind == CKPT__RUN_DATA && a->pwrite) {
			/* shmem allocates the pages as it copies, without
			 * clearing them first and without a fault per page */
			size_t done = 0;
			while (done < len) {
				ssize_t w = pwrite(a->memfd, raw + k + done, len - done, (off_t)(off + done));
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					return ckpt__errf(msg, msz, w < 0 ? -errno : -EIO,
							     "filling the heap's memory: %s",
							     strerror(w < 0 ? errno : EIO));
				done += (size_t)w;
			}
			k += len;
		} else if (r->kind == CKPT__RUN_DATA) {
			/* one call instead of a page fault per page of a
			 * fresh memfd (best effort: memcpy faults otherwise) */
			if (len >= (64u << 10))
				madvise(a->mem + off, len, MADV_POPULATE_WRITE);
			memcpy(a->mem + off, raw + k, len);
			k += len;
		} else if (a->zero_runs) {
			/* the page was zeroed since the parent: drop it */
			int rc = a->memfd >= 0 ? fallocate(a->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
							   (off_t)off, (off_t)len)
					       : madvise(a->mem + off, len, MADV_DONTNEED);
			if (rc != 0 && !a->mem)
				return ckpt__errf(msg, msz, -errno, "clearing zeroed pages: %s",
						     strerror(errno));
			if (rc != 0)
				memset(a->mem + off, 0, len);
		}
	}
	return 0;
}

/* A job is finished: the first error is the restore's (with its reason);
 * the job goes back to the free list.  a->mu held. */
static void job_done_locked(struct apply *a, struct job *j, int rc, const char *msg)
{
	if (rc && !a->err) {
		a->err = rc;
		snprintf(a->errmsg, sizeof(a->errmsg), "%s", msg[0] ? msg : ckpt_strerror(rc));
	}
	j->next = a->free;
	a->free = j;
}

static void *worker_main(void *arg)
{
	struct apply *a = arg;
	uint8_t *scratch = NULL;
	size_t scap = 0;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (!a->head && !a->stop)
			pthread_cond_wait(&a->cv_work, &a->mu);
		if (!a->head)
			break;
		struct job *j = a->head;
		a->head = j->next;
		if (!a->head)
			a->tail = NULL;
		a->queued--;
		a->busy++;
		bool skip = a->err != 0;
		pthread_mutex_unlock(&a->mu);
		char msg[200] = "";
		int rc = 0;
		if (!skip)
			rc = dctx ? apply_block(a, j, &scratch, &scap, dctx, msg, sizeof(msg)) : -ENOMEM;
		pthread_mutex_lock(&a->mu);
		job_done_locked(a, j, rc, msg);
		a->busy--;
		pthread_cond_broadcast(&a->cv_idle);
	}
	pthread_mutex_unlock(&a->mu);
	free(scratch);
	ZSTD_freeDCtx(dctx);
	return NULL;
}

static int apply_start(struct apply *a)
{
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv_work, NULL);
	pthread_cond_init(&a->cv_idle, NULL);
	a->started = true;
	a->inline_left = 4;
	return 0;
}

/* Starts the decompression workers, one per core (at least 2). */
static void apply_spawn(struct apply *a)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	int want = n < 2 ? 2 : n > RD_THREADS ? RD_THREADS : (int)n;
	for (int i = 0; i < want; i++) {
		/* signals blocked: an application handler must not run on a
		 * library thread (it may touch state the thread holds) */
		if (ckpt__thread_start(&a->th[i], "ckpt-restore", worker_main, a) != 0)
			break;
		a->nth++;
	}
}

/* Waits until every queued block has been applied. */
static int apply_drain(struct apply *a)
{
	pthread_mutex_lock(&a->mu);
	while (a->queued || a->busy)
		pthread_cond_wait(&a->cv_idle, &a->mu);
	int err = a->err;
	pthread_mutex_unlock(&a->mu);
	return err;
}

static void apply_stop(struct apply *a)
{
	if (!a->started)
		return;
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_broadcast(&a->cv_work);
	pthread_mutex_unlock(&a->mu);
	for (int i = 0; i < a->nth; i++)
		pthread_join(a->th[i], NULL);
	a->nth = 0;
	a->started = false;
	ZSTD_freeDCtx(a->dctx);
	free(a->scratch);
	a->dctx = NULL;
	a->scratch = NULL;
	struct job *lists[2] = { a->head, a->free };
	for (int l = 0; l < 2; l++)
		for (struct job *j = lists[l], *n; j; j = n) {
			n = j->next;
			free(j->buf);
			free(j);
		}
	a->head = a->tail = a->free = NULL;
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv_work);
	pthread_cond_destroy(&a->cv_idle);
}

/* A job buffer of at least @need bytes, waiting while JOBS_MAX (or two per
 * worker, if more) are out. */
static struct job *job_get(struct apply *a, size_t need)
{
	unsigned max = a->nth * 2 > JOBS_MAX ? (unsigned)a->nth * 2 : JOBS_MAX;
	pthread_mutex_lock(&a->mu);
	while (!a->free && a->njobs >= max)
		pthread_cond_wait(&a->cv_idle, &a->mu);
	struct job *j = a->free;
	if (j)
		a->free = j->next;
	else
		a->njobs++;
	pthread_mutex_unlock(&a->mu);
	if (!j && !(j = calloc(1, sizeof(*j))))
		goto nomem;
	if (j->cap < need) {
		free(j->buf);
		j->buf = malloc(need ? need : 1);
		j->cap = j->buf ? need : 0;
		if (!j->buf)
			goto nomem;
	}
	return j;
nomem:
	if (j) {
		free(j->buf);
		free(j);
	}
	pthread_mutex_lock(&a->mu);
	a->njobs--;
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

static void job_put_back(struct apply *a, struct job *j)
{
	pthread_mutex_lock(&a->mu);
	j->next = a->free;
	a->free = j;
	pthread_cond_broadcast(&a->cv_idle);
	pthread_mutex_unlock(&a->mu);
}

static void job_queue(struct apply *a, struct job *j)
{
	if (!a->nth && a->inline_left) {
		a->inline_left--;
		char msg[200] = "";
		int rc = a->err;
		if (!rc && !a->dctx && !(a->dctx = ZSTD_createDCtx()))
			rc = -ENOMEM;
		if (!rc)
			rc = apply_block(a, j, &a->scratch, &a->scap, a->dctx, msg, sizeof(msg));
		pthread_mutex_lock(&a->mu);
		job_done_locked(a, j, rc, msg);
		pthread_mutex_unlock(&a->mu);
		return;
	}
	if (!a->nth)
		apply_spawn(a);
	if (!a->nth) {
		a->inline_left = 1; /* no threads to be had: keep going inline */
		job_queue(a, j);
		return;
	}
	pthread_mutex_lock(&a->mu);
	j->next = NULL;
	if (a->tail)
		a->tail->next = j;
	else
		a->head = j;
	a->tail = j;
	a->queued++;
	pthread_cond_signal(&a->cv_work);
	pthread_mutex_unlock(&a->mu);
}

/* ------------------------------------------------------------ parsing */

static int cmp_run(const void *x, const void *y)
{
	const struct ckpt__run *a = x, *b = y;
	return a->first_page < b->first_page ? -1 : a->first_page > b->first_page;
}

/* One image being read from a stream: what its trailer must repeat. */
struct parse {
	struct rd *r;
	struct apply *a;
	struct ckpt__img_header h;
	struct ckpt__trl_entry *idx; /* the index the trailer must hold */
	size_t nidx, idx_cap;
	struct ckpt__run *allruns;   /* every run, for the coverage check */
	size_t nall, all_cap;
	uint8_t *table;              /* version 3: the block table the trailer must repeat */
	size_t table_len, table_cap;
	uint64_t nchunks;            /* version 4: chunk hashes in the table */
	char *err;
	size_t errsz;
};

/* @p (*@cap elements of @size) grown to hold @need, or NULL (then @p is
 * still valid and *@cap unchanged). */
static void *grow(void *p, size_t *cap, size_t need, size_t size, size_t first)
{
	if (need <= *cap)
		return p;
	size_t c = *cap ? *cap * 2 : first;
	while (c < need)
		c *= 2;
	void *q = realloc(p, c * size);
	if (q)
		*cap = c;
	return q;
}

/* A read error (-errno) or a format error as the message says. */
static int parse_rd_err(struct parse *P, int rc)
{
	return ckpt__errf(P->err, P->errsz, rc, "read error: %s", strerror(-rc));
}

/* The header: checked, and identical to @expect (if given). */
static int parse_header(struct parse *P, const struct ckpt__img_header *expect)
{
	size_t got;
	int rc = rd_get(P->r, &P->h, sizeof(P->h), &got);
	if (rc)
		return parse_rd_err(P, rc);
	rc = ckpt__img_header_check(&P->h, got, P->err, P->errsz);
	if (rc)
		return rc;
	/* The same fd as the header check: the file was rewritten in place
	 * meanwhile (image files are replaced by rename, never rewritten, so
	 * this is someone else's writer); reading again may succeed. */
	if (expect && memcmp(expect, &P->h, sizeof(P->h)) != 0)
		return ckpt__errf(P->err, P->errsz, -EAGAIN, "the header changed while reading: retry");
	P->a->page_size = P->h.page_size;
	XXH3_64bits_update(P->r->fh, &P->h, sizeof(P->h));
	return 0;
}

/* Records block @b (its runs at @runs, its payload @data, @plen bytes, at
 * offset @at) for the trailer checks: index entry, runs, the block table
 * (version 3) with the stored data's chunk hashes (version 4: computed
 * here, so a table whose hashes do not match the data is refused by this
 * reader too, as by the lazy one when a fault reads the chunk). */
static int parse_note_block(struct parse *P, const struct ckpt__blk_header *b, const struct ckpt__run *runs,
			    const uint8_t *data, uint64_t at, size_t plen)
{
	uint32_t chunk = ckpt__img_chunk_size(&P->h);
	size_t tb = ckpt__trl_table_bytes(b, chunk);
	bool table = P->h.version >= CKPT__IMG_VERSION_TABLE;
	void *q = grow(P->allruns, &P->all_cap, P->nall + b->nruns, sizeof(*P->allruns), 1024);
	if (!q)
		return -ENOMEM;
	P->allruns = q;
	if (!(q = grow(P->idx, &P->idx_cap, P->nidx + 1, sizeof(*P->idx), 256)))
		return -ENOMEM;
	P->idx = q;
	if (table && !(q = grow(P->table, &P->table_cap, P->table_len + tb, 1, 64u << 10)))
		return -ENOMEM;
	if (table)
		P->table = q;
	memcpy(P->allruns + P->nall, runs, b->nruns * sizeof(*runs));
	P->nall += b->nruns;
	if (table) {
		memcpy(P->table + P->table_len, b, sizeof(*b));
		memcpy(P->table + P->table_len + sizeof(*b), runs, b->nruns * sizeof(*runs));
		uint64_t nc = ckpt__blk_nchunks(b, chunk);
		if (nc) /* table is malloc'ed and tb a multiple of 8: aligned */
			ckpt__chunk_hashes(data, b->data_len, chunk,
					   (uint64_t *)(void *)(P->table + P->table_len + tb - nc * 8));
		P->nchunks += nc;
		P->table_len += tb;
	}
	P->idx[P->nidx++] = (struct ckpt__trl_entry){
		.offset = at,
		.checksum = b->checksum,
		.length = (uint32_t)(sizeof(*b) + plen),
		.data_pages = b->data_pages,
		.zero_pages = b->zero_pages,
		.nruns = b->nruns,
	};
	return 0;
}

/* Block @seq, whose header @b (at @at) was read: checks it, reads and
 * checks its payload and runs, records it and queues it to the workers. */
static int parse_block(struct parse *P, const struct ckpt__blk_header *b, uint64_t seq, uint64_t at)
{
	unsigned long long s = (unsigned long long)seq, o = (unsigned long long)at;
	if (ckpt__hash(b, offsetof(struct ckpt__blk_header, checksum)) != b->checksum)
		return ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT,
				     "corrupt: block %llu header checksum mismatch (offset %llu)", s, o);
	int rc = ckpt__blk_header_check(b, seq, P->h.page_size, P->err, P->errsz);
	if (rc)
		return rc;
	size_t plen = (size_t)b->data_len + (size_t)b->nruns * sizeof(struct ckpt__run), got;
	struct job *j = job_get(P->a, plen);
	if (!j)
		return ckpt__errf(P->err, P->errsz, -ENOMEM, "out of memory");
	j->bh = *b;
	rc = rd_get(P->r, j->buf, plen, &got);
	if (rc)
		rc = parse_rd_err(P, rc);
	else if (got < plen)
		rc = ckpt__errf(P->err, P->errsz, CKPT_E_TRUNCATED, "truncated: the image ends inside block %llu", s);
	else if (ckpt__hash(j->buf, plen) != b->payload_hash)
		rc = ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT,
				   "corrupt: block %llu payload checksum mismatch (offset %llu)", s, o);
	/* run records may sit unaligned after compressed data */
	struct ckpt__run *runs = NULL;
	if (!rc && !(runs = malloc(b->nruns * sizeof(*runs))))
		rc = ckpt__errf(P->err, P->errsz, -ENOMEM, "out of memory");
	if (!rc) {
		memcpy(runs, j->buf + b->data_len, b->nruns * sizeof(*runs));
		rc = ckpt__runs_check(b, runs, P->h.npages, P->err, P->errsz);
	}
	if (!rc && parse_note_block(P, b, runs, j->buf, at, plen))
		rc = ckpt__errf(P->err, P->errsz, -ENOMEM, "out of memory");
	free(runs);
	if (rc) {
		job_put_back(P->a, j);
		return rc;
	}
	job_queue(P->a, j);
	return 0;
}

/* Every block up to the trailer, whose header lands in @th. */
static int parse_blocks(struct parse *P, struct ckpt__trl_header *th)
{
	for (uint64_t seq = 0;; seq++) {
		uint64_t at = P->r->consumed;
		union {
			struct ckpt__blk_header b;
			struct ckpt__trl_header t;
		} u;
		size_t got;
		int rc = rd_get(P->r, &u, sizeof(u), &got);
		if (rc)
			return parse_rd_err(P, rc);
		if (got < sizeof(u))
			return ckpt__errf(P->err, P->errsz, CKPT_E_TRUNCATED,
					     "truncated: the image ends after %llu blocks, before its trailer",
					     (unsigned long long)seq);
		XXH3_64bits_update(P->r->fh, &u, sizeof(u));
		if (u.b.magic == CKPT__TRL_MAGIC) {
			*th = u.t;
			return 0;
		}
		if (u.b.magic != CKPT__BLK_MAGIC)
			return ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT,
					     "corrupt: neither block %llu nor the trailer at offset %llu",
					     (unsigned long long)seq, (unsigned long long)at);
		rc = parse_block(P, &u.b, seq, at);
		if (rc)
			return rc;
	}
}

/* The trailer (its header @th read, at @toff): counts, index and block
 * table against the blocks read, and its checksum. */
static int parse_trailer(struct parse *P, const struct ckpt__trl_header *th, uint64_t toff)
{
	int rc = ckpt__trl_header_check(th, P->err, P->errsz);
	if (rc)
		return rc;
	uint64_t stored = 0, zero = 0;
	for (size_t i = 0; i < P->nidx; i++) {
		stored += P->idx[i].data_pages;
		zero += P->idx[i].zero_pages;
	}
	if (th->nblocks != P->nidx || th->offset != toff || th->pages_stored != stored ||
	    th->pages_zero != zero || th->nruns != P->nall || th->nchunks != P->nchunks)
		return ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT,
				     "corrupt: the trailer's counts do not match the blocks read");
	size_t ilen = P->nidx * sizeof(struct ckpt__trl_entry), elen = ilen + P->table_len + 8, got;
	uint8_t *e = malloc(elen);
	if (!e)
		return ckpt__errf(P->err, P->errsz, -ENOMEM, "out of memory");
	rc = rd_get(P->r, e, elen, &got);
	if (rc)
		rc = parse_rd_err(P, rc);
	else if (got < elen)
		rc = ckpt__errf(P->err, P->errsz, CKPT_E_TRUNCATED, "truncated: the image ends inside its trailer");
	if (!rc) {
		XXH3_64bits_update(P->r->fh, e, elen);
		XXH3_state_t st;
		XXH3_64bits_reset(&st);
		XXH3_64bits_update(&st, th, sizeof(*th));
		XXH3_64bits_update(&st, e, elen - 8);
		uint64_t tsum;
		memcpy(&tsum, e + elen - 8, 8);
		if (XXH3_64bits_digest(&st) != tsum || memcmp(e, P->idx, ilen) != 0 ||
		    (P->table_len && memcmp(e + ilen, P->table, P->table_len) != 0))
			rc = ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT,
					   "corrupt: trailer block index checksum mismatch");
	}
	free(e);
	return rc;
}

/* The footer (the trailer was at @toff), the whole-file digest, and the
 * end of the stream right after it. */
static int parse_footer(struct parse *P, uint64_t toff)
{
	uint64_t fhash = XXH3_64bits_digest(P->r->fh);
	uint64_t foff = P->r->consumed;
	struct ckpt__footer f;
	size_t got;
	int rc = rd_get(P->r, &f, sizeof(f), &got);
	if (rc)
		return parse_rd_err(P, rc);
	if (got < sizeof(f))
		return ckpt__errf(P->err, P->errsz, CKPT_E_TRUNCATED, "truncated: the image ends inside its footer");
	rc = ckpt__footer_check(&f, P->err, P->errsz);
	if (rc)
		return rc;
	if (f.trailer_offset != toff || f.file_size != foff + sizeof(f) || memcmp(f.id, P->h.id, 16) != 0)
		return ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT, "corrupt: footer does not match the image");
	if (f.file_hash != fhash)
		return ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT, "corrupt: whole-file checksum mismatch");
	uint8_t extra;
	rc = rd_get(P->r, &extra, 1, &got);
	if (rc)
		return parse_rd_err(P, rc);
	if (got)
		return ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT, "corrupt: bytes after the footer");
	return 0;
}

/* Every recorded page exactly once, pages_to_emit in all. */
static int parse_coverage(struct parse *P)
{
	qsort(P->allruns, P->nall, sizeof(*P->allruns), cmp_run);
	uint64_t total = 0;
	for (size_t i = 0; i < P->nall; i++) {
		const struct ckpt__run *x = &P->allruns[i];
		if (i && x[-1].first_page + x[-1].npages > x->first_page)
			return ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT, "corrupt: page %llu is recorded twice",
					     (unsigned long long)x->first_page);
		total += x->npages;
	}
	if (total != P->h.pages_to_emit)
		return ckpt__errf(P->err, P->errsz, CKPT_E_CORRUPT,
				     "corrupt: %llu pages recorded, the header promises %llu",
				     (unsigned long long)total, (unsigned long long)P->h.pages_to_emit);
	return 0;
}

/*
 * Reads one whole image from @r, checking everything, and queues its
 * blocks to @a.  @expect (may be NULL) is the header the caller already
 * read and trusts for this file: the stream's header must be identical.
 * On return the workers may still be applying; the caller drains them.
 */
static int parse_image(struct rd *r, struct apply *a, const struct ckpt__img_header *expect,
		       struct ckpt__img_header *hdr_out, struct ckpt__trl_header *trl_out, char *err,
		       size_t errsz)
{
	struct parse P = { .r = r, .a = a, .err = err, .errsz = errsz };
	struct ckpt__trl_header th;
	int rc = parse_header(&P, expect);
	if (rc)
		return rc;
	if (hdr_out)
		*hdr_out = P.h;
	rc = parse_blocks(&P, &th);
	uint64_t toff = r->consumed - sizeof(th);
	if (!rc)
		rc = parse_trailer(&P, &th, toff);
	if (!rc)
		rc = parse_footer(&P, toff);
	if (!rc)
		rc = parse_coverage(&P);
	if (!rc && trl_out)
		*trl_out = th;
	free(P.idx);
	free(P.allruns);
	free(P.table);
	return rc;
}

/* ------------------------------------------------------------ chains */

/* Reads one file of a chain into @a, then waits for the workers. */
static int apply_file(const struct link *k, struct apply *a, struct ckpt__trl_header *trl,
		      const struct ckpt__load_opts *lo, uint64_t *done, uint64_t total, char *err,
		      size_t errsz)
{
	const char *path = k->path;
	const struct ckpt__img_header *expect = &k->h;
	int fd = k->fd;
	if (lseek(fd, 0, SEEK_SET) < 0) /* the reader starts where the fd stands */
		return ckpt__errf(err, errsz, -errno, "%s: %s", path, strerror(errno));
	struct rd r;
	char msg[220] = "";
	int rc = rd_open(&r, fd);
	if (r.ring_err)
		a->plain_io_err = r.ring_err;
	if (!rc) {
		if (lo) {
			r.progress = lo->progress;
			r.progress_arg = lo->progress_arg;
		}
		r.progress_base = *done;
		r.progress_total = total;
		rc = parse_image(&r, a, expect, NULL, trl, msg, sizeof(msg));
		*done += r.consumed;
	} else {
		snprintf(msg, sizeof(msg), "%s", strerror(-rc));
	}
	int arc = apply_drain(a);
	if (!rc && arc) {
		rc = arc;
		snprintf(msg, sizeof(msg), "%s", a->errmsg);
	}
	rd_close(&r);
	if (rc)
		ckpt__errf(err, errsz, rc, "%s: %s", path, msg);
	return rc;
}

static uint64_t file_size_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/*
 * Verifies and applies the chain ending at @path (or only @path when
 * !lo->chain) to a->mem.  @tip_out gets the tip's header.
 */
static int load_chain(const char *path, const struct ckpt__load_opts *lo, struct apply *a,
		      struct link **chain_out, size_t *n_out, char *err, size_t errsz)
{
	struct link *l;
	size_t n;
	int rc;
	if (lo && !lo->chain) {
		l = calloc(1, sizeof(*l));
		if (!l)
			return -ENOMEM;
		l->fd = -1;
		n = 1;
		rc = ckpt__link_open(l, AT_FDCWD, path, path, err, errsz);
		if (rc) {
			ckpt__chain_free(l, n);
			return rc;
		}
	} else {
		rc = ckpt__chain_resolve(path, &l, &n, err, errsz);
		if (rc)
			return rc;
	}
	*chain_out = l;
	*n_out = n;
	return 0;
}

static int apply_chain(struct link *l, size_t n, const struct ckpt__load_opts *lo, struct apply *a,
		       char *err, size_t errsz)
{
	uint64_t total = 0, done = 0;
	for (size_t i = 0; i < n; i++)
		total += file_size_of(l[i].fd);
	/* oldest first: the full image, then each incremental over it */
	for (size_t i = n; i-- > 0;) {
		a->zero_runs = (l[i].h.flags & CKPT__IMG_INCREMENTAL) != 0;
		int rc = apply_file(&l[i], a, NULL, lo, &done, total, err, errsz);
		if (rc)
			return rc;
	}
	if (lo && lo->progress)
		lo->progress(lo->progress_arg, done, total);
	return 0;
}

/* Applies the resolved chain @l (tip first) to fresh anonymous memory;
 * frees @l. */
static int load_links(struct link *l, size_t n, const struct ckpt__load_opts *lo,
		      struct ckpt__img_header *hdr_out, uint8_t **mem_out, char *err, size_t errsz)
{
	struct apply a = { .memfd = -1 };
	int rc;
	if (!lo || !lo->verify_only) {
		void *m = mmap(NULL, l[0].h.heap_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED) {
			rc = ckpt__errf(err, errsz, -errno, "cannot map %llu bytes: %s",
					   (unsigned long long)l[0].h.heap_size, strerror(errno));
			ckpt__chain_free(l, n);
			return rc;
		}
		a.mem = m;
	}
	rc = apply_start(&a);
	if (!rc)
		rc = apply_chain(l, n, lo, &a, err, errsz);
	apply_stop(&a);
	if (rc) {
		if (a.mem)
			munmap(a.mem, l[0].h.heap_size);
	} else {
		if (hdr_out)
			*hdr_out = l[0].h;
		if (mem_out)
			*mem_out = a.mem;
		else if (a.mem)
			munmap(a.mem, l[0].h.heap_size);
	}
	ckpt__chain_free(l, n);
	return rc;
}

int ckpt__image_load_anon(const char *path, const struct ckpt__load_opts *lo,
			  struct ckpt__img_header *hdr_out, uint8_t **mem_out, char *err, size_t errsz)
{
	struct link *l;
	size_t n;
	int rc = load_chain(path, lo, NULL, &l, &n, err, errsz);
	if (rc)
		return rc;
	return load_links(l, n, lo, hdr_out, mem_out, err, errsz);
}

int ckpt__image_load_list(const char *const *paths, size_t n, const struct ckpt__load_opts *lo,
			  struct ckpt__img_header *hdr_out, uint8_t **mem_out, char *err, size_t errsz)
{
	if (!paths || n == 0 || n > CKPT__MAX_CHAIN)
		return -EINVAL;
	struct link *l = calloc(n, sizeof(*l));
	if (!l)
		return -ENOMEM;
	int rc = 0;
	/* l[0] is the tip: the last path */
	for (size_t i = 0; i < n; i++)
		l[i].fd = -1;
	for (size_t i = 0; i < n && !rc; i++) {
		struct link *k = &l[n - 1 - i];
		char msg[200];
		rc = ckpt__link_open(k, AT_FDCWD, paths[i], paths[i], msg, sizeof(msg));
		if (rc) {
			ckpt__errf(err, errsz, rc, "%s", msg);
			break;
		}
		bool inc = (k->h.flags & CKPT__IMG_INCREMENTAL) != 0;
		if (i == 0 && inc) {
			rc = ckpt__errf(err, errsz, CKPT_E_PARENT,
					   "%s is incremental: the first file must be a full image", paths[i]);
		} else if (i > 0 && !inc) {
			rc = ckpt__errf(err, errsz, CKPT_E_PARENT,
					   "%s is a full image: only the first file may be", paths[i]);
		} else if (i > 0) {
			const struct ckpt__img_header *p = &l[n - i].h; /* the previous path */
			if (memcmp(k->h.parent_id, p->id, 16) != 0 ||
			    k->h.parent_generation != p->generation || k->h.base != p->base ||
			    k->h.heap_size != p->heap_size || k->h.page_size != p->page_size)
				rc = ckpt__errf(err, errsz, CKPT_E_PARENT,
						   "%s was not made from %s", paths[i], paths[i - 1]);
		}
	}
	if (rc) {
		ckpt__chain_free(l, n);
		return rc;
	}
	return load_links(l, n, lo, hdr_out, mem_out, err, errsz);
}

/* ------------------------------------------------------------ public */

CKPT_API void ckpt_restore_opts_init(struct ckpt_restore_opts *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->struct_size = sizeof(*opts);
}

static int copy_opts(const struct ckpt_restore_opts *in, struct ckpt_restore_opts *o)
{
	ckpt_restore_opts_init(o);
	if (!in)
		return 0;
	if (in->struct_size == 0 || in->struct_size > sizeof(*o))
		return -EINVAL;
	memcpy(o, in, in->struct_size);
	if (o->flags & ~(CKPT_RESTORE_LAZY | CKPT_RESTORE_VERIFY_FIRST))
		return -EINVAL;
	return 0;
}

/* Was the image made by the build the caller says it is?  Pointers from
 * the heap into code or static data are only valid there (ckpt.h). */
static int check_app_tag(const struct ckpt__img_header *h, const struct ckpt_restore_opts *o,
			 char *err, size_t errsz)
{
	/* an application built against an older ckpt.h has no app_tag field */
	bool has = o->heap && o->heap->struct_size >= offsetof(struct ckpt_heap_opts, app_tag) +
							 sizeof(o->heap->app_tag);
	const char *want = has && o->heap->app_tag ? o->heap->app_tag : "";
	if (strncmp(h->app_tag, want, sizeof(h->app_tag)) == 0)
		return 0;
	return ckpt__errf(err, errsz, CKPT_E_APPTAG,
			     "the image was made with application tag \"%.63s\", this program has \"%.63s\"",
			     h->app_tag, want);
}

/* Is the image's page size this process's page size for the heap we are
 * asked to build? */
static int check_page_size(const struct ckpt__img_header *h, const struct ckpt_restore_opts *o,
			   bool *huge, char *err, size_t errsz)
{
	size_t sys = (size_t)sysconf(_SC_PAGESIZE);
	bool want_huge;
	if (o->heap)
		want_huge = (o->heap->flags & CKPT_HEAP_HUGETLB) != 0;
	else
		want_huge = h->page_size == HUGE_2M && h->page_size != sys;
	size_t want = want_huge ? HUGE_2M : sys;
	if (h->page_size != want)
		return ckpt__errf(err, errsz, CKPT_E_PAGESIZE,
				     "image page size %u, this heap would use %zu", h->page_size, want);
	*huge = want_huge;
	return 0;
}

/* Fails with CKPT_E_ADDRINUSE unless [base, base+size) is free now. */
static int check_free(uint64_t base, uint64_t size, char *err, size_t errsz)
{
	void *p = mmap((void *)(uintptr_t)base, size, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED || p != (void *)(uintptr_t)base) {
		int e = errno;
		if (p != MAP_FAILED)
			munmap(p, size); /* old kernel ignoring NOREPLACE: treat as taken */
		if (p != MAP_FAILED || e == EEXIST)
			return ckpt__errf(err, errsz, CKPT_E_ADDRINUSE,
					     "the heap range %#llx + %#llx is already mapped in this process",
					     (unsigned long long)base, (unsigned long long)size);
		return ckpt__errf(err, errsz, -e, "cannot reserve the heap range: %s", strerror(e));
	}
	munmap(p, size);
	return 0;
}

/* Common part of ckpt_restore*(): memfd, fill through @fill, adopt. */
static int restore_common(const struct ckpt__img_header *h, const struct ckpt_restore_opts *o,
			  int (*fill)(void *arg, struct apply *a), void *fill_arg, ckpt_heap **out,
			  char *err, size_t errsz)
{
	bool huge = false;
	int rc = check_app_tag(h, o, err, errsz);
	if (rc)
		return rc;
	rc = check_page_size(h, o, &huge, err, errsz);
	if (rc)
		return rc;
	if (ckpt__check_range(h->base, h->heap_size, h->page_size) != 0)
		return ckpt__errf(err, errsz, CKPT_E_RANGE,
				     "the heap range %#llx + %#llx is outside this process's address space",
				     (unsigned long long)h->base, (unsigned long long)h->heap_size);
	rc = check_free(h->base, h->heap_size, err, errsz);
	if (rc)
		return rc;
	const char *name = o->heap && o->heap->name ? o->heap->name : "libckpt";
	int memfd = -1;
	rc = ckpt__memfd_create(name, h->heap_size, huge, &memfd);
	if (rc)
		return ckpt__errf(err, errsz, rc, "memfd: %s", ckpt_strerror(rc));
	/* The memfd is filled before it is mapped anywhere the application
	 * could see: with pwrite(2), or through a private window for hugetlbfs
	 * (which has no write(2)). */
	struct apply a = { .memfd = memfd, .page_size = h->page_size, .pwrite = !huge };
	void *m = MAP_FAILED;
	if (huge) {
		rc = ckpt__fault_hit(CKPT_FAULT_MMAP);
		m = rc ? MAP_FAILED
		       : mmap(NULL, h->heap_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
		if (m == MAP_FAILED) {
			rc = rc ? rc : -errno;
			close(memfd);
			return ckpt__errf(err, errsz, rc, "cannot map the new heap's memory: %s",
					     strerror(-rc));
		}
		a.mem = m;
	}
	rc = apply_start(&a);
	if (!rc)
		rc = fill(fill_arg, &a);
	apply_stop(&a);
	if (a.plain_io_err && o->heap && o->heap->log) {
		char msg[160];
		snprintf(msg, sizeof(msg), "io_uring unavailable (%s): the image was read with plain pread(2)",
			 strerror(-a.plain_io_err));
		o->heap->log(o->heap->log_arg, CKPT_LOG_WARN, msg);
	}
	if (m != MAP_FAILED)
		munmap(m, h->heap_size);
	if (rc) {
		close(memfd);
		return rc;
	}
	ckpt_heap *heap = NULL;
	const struct ckpt_heap_opts *hopts = o->heap;
	struct ckpt_heap_opts auto_opts;
	if (!hopts && huge) {
		/* no options given: the image's page size decides */
		ckpt_heap_opts_init(&auto_opts);
		auto_opts.flags |= CKPT_HEAP_HUGETLB;
		hopts = &auto_opts;
	}
	rc = ckpt__heap_adopt(memfd, h->base, h->heap_size, h->page_size, hopts, &heap);
	if (rc) {
		close(memfd);
		if (rc == -EEXIST)
			rc = CKPT_E_ADDRINUSE;
		return ckpt__errf(err, errsz, rc, "cannot set up the restored heap: %s", ckpt_strerror(rc));
	}
	ckpt__heap_set_lineage(heap, h->generation, h->id);
	*out = heap;
	return 0;
}

struct path_fill {
	struct link *l;
	size_t n;
	char *err;
	size_t errsz;
};

static int fill_from_chain(void *arg, struct apply *a)
{
	struct path_fill *pf = arg;
	return apply_chain(pf->l, pf->n, NULL, a, pf->err, pf->errsz);
}

/* ckpt_restore() and ckpt_restore_fd(): *out cleared, the options copied
 * and the error buffer emptied; -EINVAL unless @source_ok and @out. */
static int restore_prologue(bool source_ok, const struct ckpt_restore_opts *opts,
			    struct ckpt_restore_opts *o, ckpt_heap **out)
{
	if (out)
		*out = NULL;
	if (!source_ok || !out)
		return -EINVAL;
	int rc = copy_opts(opts, o);
	if (rc)
		return rc;
	if (o->errbuf && o->errbuf_size)
		o->errbuf[0] = 0;
	return 0;
}

CKPT_API int ckpt_restore(const char *path, const struct ckpt_restore_opts *opts, ckpt_heap **out)
{
	struct ckpt_restore_opts o;
	int rc = restore_prologue(path != NULL, opts, &o, out);
	if (rc)
		return rc;
	char *err = o.errbuf;
	size_t errsz = o.errbuf_size;
	/* lazy restore serves shmem pages through userfaultfd; private (fork
	 * backend) or hugetlb memory is restored eagerly */
	const struct ckpt_heap_opts *ho = o.heap;
	if ((o.flags & CKPT_RESTORE_LAZY) &&
	    !(ho && ((ho->flags & CKPT_HEAP_HUGETLB) || ho->backend == CKPT_BACKEND_FORK))) {
		if (o.flags & CKPT_RESTORE_VERIFY_FIRST) {
			rc = ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, errsz);
			if (rc)
				return rc;
		}
		return ckpt__lazy_restore(path, &o, out); /* lazyrestore.c */
	}
	struct link *l;
	size_t n;
	rc = ckpt__chain_resolve(path, &l, &n, err, errsz);
	if (rc)
		return rc;
	struct path_fill pf = { l, n, err, errsz };
	rc = restore_common(&l[0].h, &o, fill_from_chain, &pf, out, err, errsz);
	ckpt__chain_free(l, n);
	return rc;
}

struct fd_fill {
	struct rd *r;
	const struct ckpt__img_header *h;
	char *err;
	size_t errsz;
};

static int fill_from_fd(void *arg, struct apply *a)
{
	struct fd_fill *ff = arg;
	char msg[220] = "";
	a->zero_runs = false;
	a->plain_io_err = ff->r->ring_err;
	int rc = parse_image(ff->r, a, NULL, NULL, NULL, msg, sizeof(msg));
	int arc = apply_drain(a);
	if (!rc && arc) {
		rc = arc;
		snprintf(msg, sizeof(msg), "%s", a->errmsg);
	}
	if (rc)
		ckpt__errf(ff->err, ff->errsz, rc, "%s", msg);
	return rc;
}

CKPT_API int ckpt_restore_fd(int fd, const struct ckpt_restore_opts *opts, ckpt_heap **out)
{
	struct ckpt_restore_opts o;
	int rc = restore_prologue(fd >= 0, opts, &o, out);
	if (rc)
		return rc;
	char *err = o.errbuf;
	size_t errsz = o.errbuf_size;

	/* The header is read here (it decides the memfd's size); the stream
	 * parser then re-reads it from a small replay buffer: a pipe cannot
	 * be rewound. */
	struct rd r;
	rc = rd_open(&r, fd);
	if (rc) {
		rd_close(&r);
		return ckpt__errf(err, errsz, rc, "%s", strerror(-rc));
	}
	struct ckpt__img_header h;
	size_t got;
	rc = rd_get(&r, &h, sizeof(h), &got);
	if (rc) {
		rd_close(&r);
		return ckpt__errf(err, errsz, rc, "read error: %s", strerror(-rc));
	}
	rc = ckpt__img_header_check(&h, got, err, errsz);
	if (!rc && (h.flags & CKPT__IMG_INCREMENTAL))
		rc = ckpt__errf(err, errsz, CKPT_E_PARENT,
				   "an incremental image cannot be restored from a stream (its parent is a file)");
	if (rc) {
		rd_close(&r);
		return rc;
	}
	/* put the header back in front of the stream */
	struct rd_chunk *c = &r.ch[r.head];
	if (c->pos >= sizeof(h)) {
		c->pos -= sizeof(h);
	} else {
		/* the header straddled reads (pipe): rebuild the chunk with it */
		size_t rest = c->have - c->pos;
		memmove(c->mem + sizeof(h), c->mem + c->pos, rest);
		memcpy(c->mem, &h, sizeof(h));
		c->pos = 0;
		c->have = sizeof(h) + rest;
	}
	r.consumed -= sizeof(h);
	XXH3_64bits_reset(r.fh);
	struct fd_fill ff = { &r, &h, err, errsz };
	rc = restore_common(&h, &o, fill_from_fd, &ff, out, err, errsz);
	if (r.uring)
		lseek(fd, (off_t)(r.start_off + r.consumed), SEEK_SET); /* as read(2) would leave it */
	rd_close(&r);
	return rc;
}

CKPT_API int ckpt_image_info(const char *path, struct ckpt_image_info *info, char *err, size_t errsz)
{
	if (!path || !info)
		return -EINVAL;
	if (err && errsz)
		err[0] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ckpt__errf(err, errsz, -errno, "%s: %s", path, strerror(errno));
	struct ckpt__img_header h;
	struct ckpt__footer f;
	struct ckpt__trl_header t;
	uint8_t *trl = NULL;
	int rc = ckpt__img_read_header_fd(fd, path, &h, err, errsz);
	if (!rc)
		rc = ckpt__img_read_trailer(fd, &h, &f, &trl, err, errsz);
	if (rc)
		goto out;
	memcpy(&t, trl, sizeof(t));
	ckpt__buf_free(trl, f.trailer_size);
	ckpt__img_header_to_info(&h, info);
	info->pages_stored = t.pages_stored;
	info->pages_zero = t.pages_zero;
	info->blocks = t.nblocks;
	info->file_size = f.file_size;
out:
	close(fd);
	return rc;
}

CKPT_API int ckpt_image_verify(const char *path, unsigned flags, char *err, size_t errsz)
{
	if (!path || (flags & ~CKPT_VERIFY_CHAIN))
		return -EINVAL;
	if (err && errsz)
		err[0] = 0;
	struct ckpt__load_opts lo = { .chain = (flags & CKPT_VERIFY_CHAIN) != 0, .verify_only = true };
	return ckpt__image_load_anon(path, &lo, NULL, NULL, err, errsz);
}

/* Feeds a loaded heap image to a file sink as one full image. */
static int write_full(const char *out, const struct ckpt__img_header *h, const uint8_t *mem,
		      int zstd_level, char *err, size_t errsz)
{
	struct ckpt_dest dest = { .kind = CKPT_DEST_PATH, .path = out };
	struct ckpt_begin_opts bo;
	ckpt_begin_opts_init(&bo);
	bo.zstd_level = zstd_level;
	struct ckpt_sink s;
	int rc = ckpt__file_sink_open(&dest, &bo, NULL, NULL, &s);
	if (rc)
		return ckpt__errf(err, errsz, rc, "%s: %s", out, ckpt_strerror(rc));
	/* The merged image carries the tip's identity: it holds exactly the
	 * tip's heap, so a heap restored from the tip may chain onto it. */
	struct ckpt_sink_info info;
	ckpt__img_header_to_sink_info(h, &info);
	rc = s.begin(s.arg, &info);
	const uint32_t step = 256;
	for (uint64_t p = 0; !rc && p < h->npages; p += step) {
		uint32_t k = (uint32_t)(h->npages - p < step ? h->npages - p : step);
		rc = s.pages(s.arg, p, k, mem + p * h->page_size);
	}
	rc = s.end(s.arg, rc);
	if (rc)
		ckpt__errf(err, errsz, rc, "writing %s: %s", out, ckpt_strerror(rc));
	return rc;
}

/* What a merge reads: a tip and its chain, or a list of files. */
struct merge_src {
	const char *tip;
	const char *const *paths;
	size_t n;
};

/* Loads @src (verifying all of it) and writes it to @out as one full image. */
static int merge_from(const char *out, const struct merge_src *src, int zstd_level,
		      const struct ckpt__load_opts *lo_in, char *err, size_t errsz)
{
	if (!out || zstd_level < 0 || zstd_level > ZSTD_maxCLevel())
		return -EINVAL;
	if (err && errsz)
		err[0] = 0;
	struct ckpt__load_opts lo = { .chain = true };
	if (lo_in) {
		lo.progress = lo_in->progress;
		lo.progress_arg = lo_in->progress_arg;
	}
	struct ckpt__img_header h;
	uint8_t *mem = NULL;
	int rc = src->tip ? ckpt__image_load_anon(src->tip, &lo, &h, &mem, err, errsz)
			  : ckpt__image_load_list(src->paths, src->n, &lo, &h, &mem, err, errsz);
	if (rc)
		return rc;
	rc = write_full(out, &h, mem, zstd_level, err, errsz);
	munmap(mem, h.heap_size);
	return rc;
}

int ckpt__image_merge(const char *out, const char *tip, int zstd_level,
		      const struct ckpt__load_opts *lo_in, char *err, size_t errsz)
{
	if (!tip)
		return -EINVAL;
	struct merge_src src = { .tip = tip };
	return merge_from(out, &src, zstd_level, lo_in, err, errsz);
}

int ckpt__image_merge_list(const char *out, const char *const *paths, size_t n, int zstd_level,
			   const struct ckpt__load_opts *lo_in, char *err, size_t errsz)
{
	struct merge_src src = { .paths = paths, .n = n };
	return merge_from(out, &src, zstd_level, lo_in, err, errsz);
}

CKPT_API int ckpt_image_merge(const char *out, const char *tip, int zstd_level, char *err,
			      size_t errsz)
{
	return ckpt__image_merge(out, tip, zstd_level, NULL, err, errsz);
}
