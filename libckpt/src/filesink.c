/*
 * filesink.c - the file/fd sink: turns the engine's page stream into an image
 * (format in image.h) and makes it durable.
 *
 * Threads: every callback runs on the checkpoint's writer thread, one at a
 * time, so the sink needs no locks.  Compression happens here, never on the
 * trap path.
 *
 * Output: bytes go out through io_uring with up to WR_BUFS buffers in
 * flight, each at an explicit file offset (the stream never seeks back, so
 * the same bytes can go to a pipe, where one write is in flight at a time to
 * keep their order).  Where io_uring cannot be set up (seccomp profiles of
 * container runtimes, kernel.io_uring_disabled) each buffer is written with
 * plain pwrite(2)/write(2) instead, synchronously; the heap's log callback
 * hears of it once.  With CKPT_BEGIN_DIRECT the temp file is opened
 * O_DIRECT where the filesystem allows it and bytes are staged into aligned
 * 1 MiB chunks; the last, partial chunk is written after clearing O_DIRECT.
 *
 * Publish (CKPT_DEST_PATH): the image is written to a temp file
 * ".NAME.tmp.PID.RANDOM" (0600, O_CLOEXEC) in the destination's directory,
 * fsync'ed, renamed over NAME, and the directory fsync'ed.  A crash at any
 * point leaves NAME as it was (old image) or the complete new one.  The
 * writer holds an flock on its temp file; temp files nobody holds (their
 * writer died) are removed by the next checkpoint to NAME.
 *
 * Incremental chains: the image currently at NAME (checked to carry the id
 * the engine names as parent) is hard-linked to "NAME.gGGGGGG" (its
 * generation) and the directory fsync'ed before the new tip is published;
 * the new tip's header names that file.  After a full image is published,
 * NAME.g* files (no longer referenced) are removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "faultinject.h"
#include "image.h"
#include "internal.h"

#define WR_BUFS 6                 /* buffers in flight (and being filled) */
#define WR_BLOCK_DATA (1u << 20)  /* page bytes per block (at least one page) */
#define WR_BLOCK_RUNS 1024u       /* run records per block */
#define WR_CHUNK (1u << 20)       /* O_DIRECT staging chunk */
#define WR_ALIGN 4096u
#define WR_QD 16
#define WR_ZTHREADS 8             /* compression workers at most (one per core) */

struct wbuf {
	uint8_t *mem;
	size_t cap;
	size_t len;  /* bytes to write */
	size_t done; /* bytes written */
	uint64_t off;/* stream offset of mem[0] */
	bool busy;   /* in flight */
};

struct zjob;

struct zpool {
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	struct zjob *head, *tail; /* queued for the workers */
	bool inited, stop;
	int nthreads;
	pthread_t th[WR_ZTHREADS];
	struct zjob *jobs;        /* a ring of njobs */
	unsigned njobs;
	unsigned fill;            /* the job being filled */
	unsigned emit;            /* the oldest job not yet written */
	uint64_t next_seq;
	/* the nice value of the thread that streams (set in begin(), after the
	 * engine lowered it): the workers take it before their next job, so
	 * compression yields to the application as the writer does */
	_Atomic int nice;
};

struct fsink {
	/* destination */
	enum ckpt_dest_kind kind;
	int fd;
	bool seekable;
	bool regular;
	bool direct;
	bool no_fsync;
	uint64_t start_off;  /* CKPT_DEST_FD: the fd's offset at begin */
	int dirfd;
	char *dir;           /* CKPT_DEST_PATH: directory and file name */
	char *name;
	char tmpname[NAME_MAX + 1];
	bool tmp_created;
	_Atomic uint64_t *bytes_written;
	ckpt_heap *log_heap; /* NULL: nobody to tell about the io_uring fallback */
	int zstd_level;
	unsigned zthreads;   /* compression workers asked for (0: one per core) */

	/* io_uring */
	struct io_uring ring;
	bool ring_ok;        /* false: plain synchronous writes (plain_write()) */
	unsigned inflight;
	struct wbuf bufs[WR_BUFS];
	struct wbuf *stage;  /* bytes being gathered for one write (header, trailer, O_DIRECT chunks) */
	uint64_t off;        /* stream bytes handed to the output so far */
	XXH3_state_t *fh;    /* whole-file digest: header, block headers, trailer (image.h) */

	/* block assembly */
	struct ckpt__img_header hdr;
	uint32_t page_size;
	uint32_t block_cap_pages;
	size_t buf_size;
	struct zpool zp;     /* zstd: the compression workers */
	uint8_t *raw;        /* zstd: page contents gathered before compression (a zjob's) */
	uint8_t *asmbuf;     /* O_DIRECT: the block being assembled */
	struct wbuf *blk;    /* otherwise: the wbuf the block is assembled in */
	struct ckpt__run runs[WR_BLOCK_RUNS];
	uint32_t nruns;
	uint32_t data_pages;
	uint32_t zero_pages;

	/* trailer */
	struct ckpt__trl_entry *index;
	size_t nindex, index_cap;
	uint8_t *table;      /* the block table: each block's header, runs, chunk hashes */
	size_t table_len, table_cap;
	uint64_t pages_stored, pages_zero, total_runs, pages_seen, total_chunks;

	bool began;
	bool prepared;       /* sink_setup() ran (before the cut) */
	uint32_t prep_page_size, prep_flags;
	int err; /* first error; sticky */
};

static int set_err(struct fsink *s, int err)
{
	if (!s->err)
		s->err = err;
	return s->err;
}

/* ------------------------------------------------------------- output */

static struct wbuf *wbuf_for(struct fsink *s, struct io_uring_cqe *cqe)
{
	return (struct wbuf *)io_uring_cqe_get_data(cqe);
}

/* Without io_uring: writes the rest of @b now.  Like a completion, an
 * EINTR/EAGAIN retries and a write that makes no progress is -EIO. */
static int plain_write(struct fsink *s, struct wbuf *b)
{
	while (b->done < b->len) {
		const uint8_t *p = b->mem + b->done;
		size_t n = b->len - b->done;
		ssize_t k = s->seekable ? pwrite(s->fd, p, n, (off_t)(s->start_off + b->off + b->done))
					: write(s->fd, p, n);
		if (k < 0 && errno == EAGAIN) {
			/* a non-blocking pipe or socket: wait until it drains */
			struct pollfd pfd = { .fd = s->fd, .events = POLLOUT };
			(void)poll(&pfd, 1, 1000);
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO;
		b->done += (size_t)k;
		if (s->bytes_written)
			atomic_fetch_add(s->bytes_written, (uint64_t)k);
	}
	return 0;
}

static int submit_write(struct fsink *s, struct wbuf *b)
{
	if (!s->ring_ok)
		return plain_write(s, b);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	if (!sqe)
		return -EBUSY; /* cannot happen: WR_QD > WR_BUFS */
	/* -1: the file position, for fds that cannot seek (pipes, sockets) */
	uint64_t off = s->seekable ? s->start_off + b->off + b->done : (uint64_t)-1;
	io_uring_prep_write(sqe, s->fd, b->mem + b->done, (unsigned)(b->len - b->done), off);
	io_uring_sqe_set_data(sqe, b);
	int rc = ckpt__fault_hit(CKPT_FAULT_URING_SUBMIT);
	if (!rc)
		rc = io_uring_submit(&s->ring);
	if (rc < 0)
		return rc;
	b->busy = true;
	s->inflight++;
	return 0;
}

/* Accounts one completion.  A short write is resubmitted for the rest; an
 * error becomes the sink's error. */
static void handle_cqe(struct fsink *s, struct io_uring_cqe *cqe)
{
	struct wbuf *b = wbuf_for(s, cqe);
	int res = cqe->res;
	io_uring_cqe_seen(&s->ring, cqe);
	s->inflight--;
	b->busy = false;
	if (res == -EINTR || res == -EAGAIN)
		res = 0; /* nothing written: submit the same range again */
	else if (res == 0)
		res = -EIO; /* a write that makes no progress */
	if (res < 0) {
		set_err(s, res);
		return;
	}
	b->done += (size_t)res;
	if (s->bytes_written)
		atomic_fetch_add(s->bytes_written, (uint64_t)res);
	if (b->done < b->len && !s->err) {
		int rc = submit_write(s, b);
		if (rc < 0)
			set_err(s, rc);
	}
}

/* Waits for one completion.  If the ring itself fails, nothing more can be
 * known about the writes in flight: they are abandoned (the file is
 * discarded anyway since the sink has failed). */
static int wait_one(struct fsink *s)
{
	struct io_uring_cqe *cqe;
	int rc;
	do
		rc = io_uring_wait_cqe(&s->ring, &cqe);
	while (rc == -EINTR);
	if (rc < 0) {
		set_err(s, rc);
		s->inflight = 0;
		for (int i = 0; i < WR_BUFS; i++)
			s->bufs[i].busy = false;
		return rc;
	}
	handle_cqe(s, cqe);
	return 0;
}

static void reap_ready(struct fsink *s)
{
	struct io_uring_cqe *cqe;
	while (s->inflight && io_uring_peek_cqe(&s->ring, &cqe) == 0 && cqe)
		handle_cqe(s, cqe);
}

static int drain(struct fsink *s)
{
	while (s->inflight)
		wait_one(s);
	return s->err;
}

/* Hands @b (b->len bytes) to the output at the next stream offset. */
static int out_submit(struct fsink *s, struct wbuf *b)
{
	if (s->err)
		return s->err;
	b->off = s->off;
	b->done = 0;
	s->off += b->len;
	int rc = ckpt__fault_hit(CKPT_FAULT_WRITE);
	if (rc < 0)
		return set_err(s, rc);
	/* A stream keeps its order only with one write in flight. */
	if (!s->seekable && drain(s))
		return s->err;
	rc = submit_write(s, b);
	if (rc < 0)
		return set_err(s, rc);
	reap_ready(s);
	return s->err;
}

static struct wbuf *get_free(struct fsink *s)
{
	for (;;) {
		for (int i = 0; i < WR_BUFS; i++) {
			struct wbuf *b = &s->bufs[i];
			if (!b->busy && b != s->stage && b != s->blk) {
				b->len = b->done = 0;
				return b;
			}
		}
		if (!s->inflight) {
			set_err(s, -EIO); /* cannot happen: only stage and blk are held */
			return NULL;
		}
		wait_one(s);
		if (s->err)
			return NULL;
	}
}

static size_t stage_limit(const struct fsink *s)
{
	return s->direct ? WR_CHUNK : s->buf_size;
}

/* Copies bytes into the staging buffer (hashing them unless @nohash),
 * submitting it whenever it fills. */
static int out_put(struct fsink *s, const void *p, size_t n, bool nohash)
{
	const uint8_t *src = p;
	if (s->err)
		return s->err;
	if (!nohash)
		XXH3_64bits_update(s->fh, p, n);
	while (n) {
		if (!s->stage && !(s->stage = get_free(s)))
			return s->err;
		size_t room = stage_limit(s) - s->stage->len;
		size_t k = n < room ? n : room;
		memcpy(s->stage->mem + s->stage->len, src, k);
		s->stage->len += k;
		src += k;
		n -= k;
		if (s->stage->len == stage_limit(s)) {
			struct wbuf *b = s->stage;
			s->stage = NULL;
			if (out_submit(s, b))
				return s->err;
		}
	}
	return 0;
}

/* Submits a partly filled staging buffer (not in O_DIRECT mode, where only
 * whole chunks go out until the end). */
static int out_flush(struct fsink *s)
{
	if (s->err || !s->stage || !s->stage->len)
		return s->err;
	struct wbuf *b = s->stage;
	s->stage = NULL;
	return out_submit(s, b);
}

/* ------------------------------------------------------------- blocks */

/* Where the next data page of the block goes. */
static uint8_t *data_area(struct fsink *s)
{
	if (s->zstd_level > 0)
		return s->raw;
	if (s->direct)
		return s->asmbuf + sizeof(struct ckpt__blk_header);
	if (!s->blk && !(s->blk = get_free(s)))
		return NULL;
	return s->blk->mem + sizeof(struct ckpt__blk_header);
}

/* Completes @bh (its nruns/data_pages/zero_pages/seq/flags/raw_hash set)
 * for a block whose data_len bytes of data are at out + sizeof(*bh) and
 * whose runs are @runs: appends the runs, hashes, seals, and puts the
 * header at @out.  @return the block's size in the file. */
static size_t block_seal(struct ckpt__blk_header *bh, uint8_t *out, size_t data_len,
			 const struct ckpt__run *runs)
{
	uint8_t *data = out + sizeof(*bh);
	size_t rbytes = bh->nruns * sizeof(struct ckpt__run);
	bh->magic = CKPT__BLK_MAGIC;
	bh->data_len = (uint32_t)data_len;
	bh->first_page = UINT64_MAX;
	for (uint32_t i = 0; i < bh->nruns; i++)
		if (runs[i].first_page < bh->first_page)
			bh->first_page = runs[i].first_page;
	memcpy(data + data_len, runs, rbytes);
	/* A stored block's pages are covered by the payload hash; raw_hash
	 * (0 for stored blocks) checks what a zstd frame decompresses to. */
	bh->payload_hash = ckpt__hash(data, data_len + rbytes);
	ckpt__blk_header_seal(bh);
	memcpy(out, bh, sizeof(*bh));
	return sizeof(*bh) + data_len + rbytes;
}

/* Appends @n bytes to the trailer's block table. */
static int table_put(struct fsink *s, const void *p, size_t n)
{
	if (s->table_len + n > s->table_cap) {
		size_t cap = s->table_cap ? s->table_cap * 2 : 64u << 10;
		while (cap < s->table_len + n)
			cap *= 2;
		void *q = realloc(s->table, cap);
		if (!q)
			return set_err(s, -ENOMEM);
		s->table = q;
		s->table_cap = cap;
	}
	memcpy(s->table + s->table_len, p, n);
	s->table_len += n;
	return 0;
}

/* Appends the chunk hashes of stored block @bh, whose data is at @data,
 * to the block table: a lazy reader's fault reads and checks one chunk. */
static int table_put_chunks(struct fsink *s, const struct ckpt__blk_header *bh, const uint8_t *data)
{
	uint64_t n = ckpt__blk_nchunks(bh, s->hdr.chunk_size);
	uint64_t sums[CKPT__MAX_BLOCK_RAW / CKPT__CHUNK_SIZE];
	if (!n)
		return 0;
	if (n > sizeof(sums) / sizeof(sums[0]))
		return set_err(s, -EINVAL); /* a block holds at most CKPT__MAX_BLOCK_RAW */
	ckpt__chunk_hashes(data, bh->data_len, s->hdr.chunk_size, sums);
	s->total_chunks += n;
	return table_put(s, sums, (size_t)n * sizeof(sums[0]));
}

/* Enters a sealed block at stream offset @off in the trailer's index and
 * block table (its header, @runs and, stored, its chunk hashes (@blk: the
 * block's bytes): a lazy reader learns every block's pages from one read
 * of the trailer), and in the whole-file digest (which takes the block
 * header only: it carries the payload's hash).  Blocks are entered in file
 * order. */
static int index_add(struct fsink *s, const struct ckpt__blk_header *bh, const struct ckpt__run *runs,
		     const uint8_t *blk, size_t total, uint64_t off)
{
	if (s->nindex == s->index_cap) {
		size_t cap = s->index_cap ? s->index_cap * 2 : 256;
		void *p = realloc(s->index, cap * sizeof(*s->index));
		if (!p)
			return set_err(s, -ENOMEM);
		s->index = p;
		s->index_cap = cap;
	}
	if (table_put(s, bh, sizeof(*bh)) || table_put(s, runs, bh->nruns * sizeof(*runs)) ||
	    table_put_chunks(s, bh, blk + sizeof(*bh)))
		return s->err;
	s->index[s->nindex++] = (struct ckpt__trl_entry){
		.offset = off,
		.checksum = bh->checksum,
		.length = (uint32_t)total,
		.data_pages = bh->data_pages,
		.zero_pages = bh->zero_pages,
		.nruns = bh->nruns,
	};
	s->pages_stored += bh->data_pages;
	s->pages_zero += bh->zero_pages;
	s->total_runs += bh->nruns;
	XXH3_64bits_update(s->fh, bh, sizeof(*bh));
	return 0;
}

/* -------------------------------------------------- compression workers */

/*
 * zstd blocks are compressed by a pool of worker threads, so that a
 * compressed checkpoint keeps up with the device: the writer thread only
 * gathers pages (the same memcpy as for a stored block) and writes finished
 * blocks.  A job goes FILLING (writer) -> QUEUED (a worker compresses it)
 * -> DONE -> written and FREE (writer).  Jobs form a ring and are written in
 * the order they were filled, whichever worker finishes first: file
 * offsets, block seq numbers and the whole-file digest follow that order.
 * When the ring is full the writer waits for the oldest job; the
 * application never does (it waits only on the engine's page copies).
 */
enum { ZJ_FREE, ZJ_FILLING, ZJ_QUEUED, ZJ_DONE };

struct zjob {
	uint8_t *raw;    /* pages gathered by the writer */
	uint8_t *out;    /* block header, data, runs: what goes to the file */
	struct ckpt__run runs[WR_BLOCK_RUNS];
	struct ckpt__blk_header bh;
	size_t total;
	int err;
	_Atomic int state; /* ZJ_*: QUEUED -> DONE by a worker under zpool.mu, the rest by the writer */
	struct zjob *next;
};

static void zjob_compress(struct zjob *j, ZSTD_CCtx *cctx, int level, size_t page_size)
{
	size_t raw_len = (size_t)j->bh.data_pages * page_size;
	uint8_t *data = j->out + sizeof(j->bh);
	size_t data_len = raw_len;
	if (!cctx) {
		j->err = -ENOMEM;
		return;
	}
	if (raw_len) {
		/* Only keep the frame if it is smaller than the pages. */
		size_t z = ZSTD_compressCCtx(cctx, data, raw_len - 1, j->raw, raw_len, level);
		if (!ZSTD_isError(z)) {
			j->bh.flags = CKPT__BLK_ZSTD;
			j->bh.raw_hash = ckpt__hash(j->raw, raw_len);
			data_len = z;
		} else if (ZSTD_getErrorCode(z) == ZSTD_error_dstSize_tooSmall) {
			memcpy(data, j->raw, raw_len);
		} else {
			j->err = -ENOMEM;
			return;
		}
	}
	j->total = block_seal(&j->bh, j->out, data_len, j->runs);
}

static void *zworker_main(void *arg)
{
	struct fsink *s = arg;
	struct zpool *z = &s->zp;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	id_t self = (id_t)syscall(SYS_gettid);
	errno = 0;
	int mine = getpriority(PRIO_PROCESS, self);
	if (errno)
		mine = INT_MIN; /* unknown: adopt the streaming thread's */
	pthread_mutex_lock(&z->mu);
	for (;;) {
		while (!z->head && !z->stop)
			pthread_cond_wait(&z->cv_work, &z->mu);
		if (z->stop)
			break;
		struct zjob *j = z->head;
		z->head = j->next;
		if (!z->head)
			z->tail = NULL;
		pthread_mutex_unlock(&z->mu);
		/* raising one's own nice value needs no privilege; lowering it
		 * back (a later checkpoint) may be refused: best effort */
		int want = atomic_load_explicit(&z->nice, memory_order_relaxed);
		if (want != mine && setpriority(PRIO_PROCESS, self, want) == 0)
			mine = want;
		zjob_compress(j, cctx, s->zstd_level, s->page_size);
		pthread_mutex_lock(&z->mu);
		j->state = ZJ_DONE;
		pthread_cond_broadcast(&z->cv_done);
	}
	pthread_mutex_unlock(&z->mu);
	ZSTD_freeCCtx(cctx);
	return NULL;
}

/* Starts one worker per core (at most WR_ZTHREADS) and their job ring. */
static int zpool_start(struct fsink *s, size_t data_cap)
{
	struct zpool *z = &s->zp;
	long ncpu = s->zthreads ? (long)s->zthreads : sysconf(_SC_NPROCESSORS_ONLN);
	int want = ncpu < 1 ? 1 : ncpu > WR_ZTHREADS ? WR_ZTHREADS : (int)ncpu;
	/* one per worker, one being filled, one being written: more only
	 * costs memory (each job is two 1 MiB buffers) */
	z->njobs = (unsigned)want + 2;
	z->jobs = calloc(z->njobs, sizeof(*z->jobs));
	if (!z->jobs)
		return -ENOMEM;
	for (unsigned i = 0; i < z->njobs; i++) {
		if (!(z->jobs[i].raw = malloc(data_cap)) ||
		    posix_memalign((void **)&z->jobs[i].out, WR_ALIGN, s->buf_size))
			return -ENOMEM;
	}
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	atomic_store(&z->nice, errno ? 0 : nice); /* the workers' own, until begin() */
	pthread_mutex_init(&z->mu, NULL);
	pthread_cond_init(&z->cv_work, NULL);
	pthread_cond_init(&z->cv_done, NULL);
	z->inited = true;
	for (int i = 0; i < want; i++) {
		/* signals blocked: application handlers never run on them */
		int rc = ckpt__thread_start(&z->th[i], "ckpt-zstd", zworker_main, s);
		if (rc)
			return z->nthreads ? 0 : rc;
		z->nthreads++;
	}
	z->jobs[0].state = ZJ_FILLING;
	s->raw = z->jobs[0].raw;
	return 0;
}

static void zpool_stop(struct fsink *s)
{
	struct zpool *z = &s->zp;
	if (z->inited) {
		pthread_mutex_lock(&z->mu);
		z->stop = true;
		pthread_cond_broadcast(&z->cv_work);
		pthread_mutex_unlock(&z->mu);
		for (int i = 0; i < z->nthreads; i++)
			pthread_join(z->th[i], NULL);
		pthread_mutex_destroy(&z->mu);
		pthread_cond_destroy(&z->cv_work);
		pthread_cond_destroy(&z->cv_done);
	}
	for (unsigned i = 0; z->jobs && i < z->njobs; i++) {
		free(z->jobs[i].raw);
		free(z->jobs[i].out);
	}
	free(z->jobs);
	s->raw = NULL;
}

/* Writes the oldest job if it is done (or, with @wait, once it is).
 * @return 1 if a job was written, 0 if none was ready, or an error. */
static int zpool_retire(struct fsink *s, bool wait)
{
	struct zpool *z = &s->zp;
	struct zjob *j = &z->jobs[z->emit];
	pthread_mutex_lock(&z->mu);
	while (wait && j->state == ZJ_QUEUED)
		pthread_cond_wait(&z->cv_done, &z->mu);
	bool done = j->state == ZJ_DONE;
	pthread_mutex_unlock(&z->mu);
	if (!done)
		return 0;
	int rc = j->err ? set_err(s, j->err) : 0;
	if (!rc)
		rc = index_add(s, &j->bh, j->runs, j->out, j->total, s->off + (s->stage ? s->stage->len : 0));
	if (!rc)
		rc = out_put(s, j->out, j->total, true);
	j->state = ZJ_FREE; /* the workers never touch a DONE job again */
	z->emit = (z->emit + 1) % z->njobs;
	return rc ? rc : 1;
}

/* Hands the block being gathered to the workers and starts the next. */
static int zblock_dispatch(struct fsink *s)
{
	struct zpool *z = &s->zp;
	struct zjob *j = &z->jobs[z->fill];
	memcpy(j->runs, s->runs, s->nruns * sizeof(struct ckpt__run));
	j->bh = (struct ckpt__blk_header){
		.nruns = s->nruns,
		.data_pages = s->data_pages,
		.zero_pages = s->zero_pages,
		.seq = z->next_seq++,
	};
	j->err = 0;
	j->next = NULL;
	s->nruns = s->data_pages = s->zero_pages = 0;
	pthread_mutex_lock(&z->mu);
	j->state = ZJ_QUEUED;
	if (z->tail)
		z->tail->next = j;
	else
		z->head = j;
	z->tail = j;
	pthread_cond_signal(&z->cv_work);
	pthread_mutex_unlock(&z->mu);

	z->fill = (z->fill + 1) % z->njobs;
	int rc;
	while ((rc = zpool_retire(s, false)) == 1)
		;
	/* the ring is full when the next slot is the oldest unwritten job */
	while (rc >= 0 && z->jobs[z->fill].state != ZJ_FREE)
		rc = zpool_retire(s, true);
	if (rc < 0)
		return rc;
	z->jobs[z->fill].state = ZJ_FILLING;
	s->raw = z->jobs[z->fill].raw;
	return 0;
}

/* Waits for and writes every dispatched block. */
static int zpool_drain(struct fsink *s)
{
	struct zpool *z = &s->zp;
	while (z->emit != z->fill) {
		int rc = zpool_retire(s, true);
		if (rc < 0)
			return rc;
	}
	return s->err;
}

static int close_block(struct fsink *s)
{
	if (s->err)
		return s->err;
	if (s->nruns == 0)
		return 0;
	if (s->zstd_level > 0)
		return zblock_dispatch(s);
	uint8_t *out;
	if (s->direct) {
		out = s->asmbuf;
	} else {
		if (!s->blk && !(s->blk = get_free(s)))
			return s->err;
		out = s->blk->mem;
	}
	struct ckpt__blk_header bh = {
		.nruns = s->nruns,
		.data_pages = s->data_pages,
		.zero_pages = s->zero_pages,
		.seq = s->nindex,
	};
	size_t total = block_seal(&bh, out, (size_t)s->data_pages * s->page_size, s->runs);
	s->nruns = s->data_pages = s->zero_pages = 0; /* s->runs stays valid for index_add() */
	/* header, trailer and footer never share a staging buffer with a
	 * block outside O_DIRECT mode, so s->off is this block's offset once
	 * the stage is flushed. */
	if (!s->direct && out_flush(s))
		return s->err;
	if (index_add(s, &bh, s->runs, out, total, s->off + (s->stage ? s->stage->len : 0)))
		return s->err;
	if (s->direct)
		return out_put(s, out, total, true);
	struct wbuf *b = s->blk;
	s->blk = NULL;
	b->len = total;
	return out_submit(s, b);
}

static int add_run(struct fsink *s, uint64_t page, uint32_t kind)
{
	if (s->nruns) {
		struct ckpt__run *r = &s->runs[s->nruns - 1];
		if (r->kind == kind && r->first_page + r->npages == page && r->npages < UINT32_MAX) {
			r->npages++;
			return 0;
		}
	}
	if (s->nruns == WR_BLOCK_RUNS && close_block(s))
		return s->err;
	s->runs[s->nruns++] = (struct ckpt__run){ .first_page = page, .npages = 1, .kind = kind };
	return 0;
}

/* ------------------------------------------------------ path handling */

/* A fresh scan of the destination directory (closedir() when done). */
static DIR *scan_dir(struct fsink *s)
{
	int dfd = fcntl(s->dirfd, F_DUPFD_CLOEXEC, 0); /* CLOEXEC: another thread may fork+exec meanwhile */
	if (dfd < 0)
		return NULL;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return NULL;
	}
	rewinddir(d); /* the dup shares its offset with dirfd's earlier scans */
	return d;
}

/* Calls @fn for every entry of the destination directory whose name starts
 * with @prefix (the suffix after it as @rest). */
static void for_each_named(struct fsink *s, const char *prefix,
			   void (*fn)(struct fsink *s, const char *name, const char *rest))
{
	size_t plen = strlen(prefix);
	DIR *d = scan_dir(s);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, prefix, plen) == 0)
			fn(s, de->d_name, de->d_name + plen);
	closedir(d);
}

/* A temp file's writer holds an flock on it for as long as it lives
 * (released by the kernel when the process dies, however it dies): a temp
 * file nobody holds is a crash's leftover.  A pid test would be fooled by
 * pid reuse (a restarted container's database is pid 1 again). */
static void remove_if_unheld(struct fsink *s, const char *name, const char *rest)
{
	(void)rest;
	int fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		unlinkat(s->dirfd, name, 0);
	close(fd);
}

static void remove_stale_temps(struct fsink *s)
{
	char prefix[NAME_MAX + 8];
	snprintf(prefix, sizeof(prefix), ".%s.tmp.", s->name);
	for_each_named(s, prefix, remove_if_unheld);
}

static void remove_if_generation(struct fsink *s, const char *name, const char *rest)
{
	if (*rest && strspn(rest, "0123456789") == strlen(rest))
		unlinkat(s->dirfd, name, 0);
}

/* After a full image is published nothing refers to NAME.gNNNNNN any more. */
static void remove_generations(struct fsink *s)
{
	char prefix[NAME_MAX + 8];
	snprintf(prefix, sizeof(prefix), "%s.g", s->name);
	for_each_named(s, prefix, remove_if_generation);
}

static int fsync_dir(struct fsink *s)
{
	if (s->no_fsync)
		return 0;
	int rc = ckpt__fault_hit(CKPT_FAULT_FSYNC);
	if (rc)
		return rc;
	return fsync(s->dirfd) ? -errno : 0;
}

static int read_header_at(int dirfd, const char *name, struct ckpt__img_header *h)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = pread(fd, h, sizeof(*h), 0);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	return ckpt__img_header_check(h, (size_t)n, NULL, 0);
}

/* Makes NAME.gGEN a name of the image at NAME (which must be the parent)
 * and records it in the new header. */
static int link_parent(struct fsink *s, const struct ckpt_sink_info *info)
{
	struct ckpt__img_header ph;
	int rc = read_header_at(s->dirfd, s->name, &ph);
	if (rc < 0)
		return CKPT_E_PARENT;
	if (memcmp(ph.id, info->parent_id, 16) != 0 || ph.base != info->base ||
	    ph.heap_size != info->heap_size || ph.page_size != info->page_size ||
	    ph.generation >= info->generation)
		return CKPT_E_PARENT;
	char gname[NAME_MAX + 1];
	if ((size_t)snprintf(gname, sizeof(gname), "%s.g%06llu", s->name,
			     (unsigned long long)ph.generation) >= sizeof(gname) ||
	    strlen(gname) >= CKPT__PARENT_NAME_MAX)
		return -ENAMETOOLONG;
	rc = ckpt__fault_hit(CKPT_FAULT_RENAME);
	if (rc)
		return rc;
	if (linkat(s->dirfd, s->name, s->dirfd, gname, 0) != 0) {
		if (errno != EEXIST)
			return -errno;
		struct ckpt__img_header gh;
		if (read_header_at(s->dirfd, gname, &gh) != 0 || memcmp(gh.id, ph.id, 16) != 0) {
			/* a leftover of another lineage: replace it atomically */
			char tmp[NAME_MAX + 1];
			unsigned r = 0;
			(void)!getrandom(&r, sizeof(r), 0);
			snprintf(tmp, sizeof(tmp), ".%s.tmp.%d.%08x", s->name, (int)getpid(), r);
			if (linkat(s->dirfd, s->name, s->dirfd, tmp, 0) != 0)
				return -errno;
			if (renameat(s->dirfd, tmp, s->dirfd, gname) != 0) {
				rc = -errno;
				unlinkat(s->dirfd, tmp, 0);
				return rc;
			}
		}
	}
	rc = fsync_dir(s);
	if (rc)
		return rc;
	memcpy(s->hdr.parent_name, gname, strlen(gname) + 1);
	s->hdr.parent_name_len = (uint32_t)strlen(gname);
	s->hdr.parent_generation = ph.generation;
	return 0;
}

static int open_temp(struct fsink *s, bool want_direct)
{
	for (int tries = 0; tries < 16; tries++) {
		unsigned r = 0;
		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = (unsigned)ckpt__now_ns();
		snprintf(s->tmpname, sizeof(s->tmpname), ".%s.tmp.%d.%08x", s->name, (int)getpid(), r);
		int fl = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
		int fd = openat(s->dirfd, s->tmpname, fl | (want_direct ? O_DIRECT : 0), 0600);
		if (fd < 0 && want_direct && errno == EINVAL) {
			/* the filesystem has no O_DIRECT: buffered it is */
			want_direct = false;
			fd = openat(s->dirfd, s->tmpname, fl, 0600);
		}
		if (fd < 0) {
			if (errno == EEXIST)
				continue;
			return -errno;
		}
		/* held until the fd is closed: "being written" (remove_stale_temps) */
		if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
			int e = errno;
			close(fd);
			unlinkat(s->dirfd, s->tmpname, 0);
			return -e;
		}
		s->fd = fd;
		s->direct = want_direct;
		s->tmp_created = true;
		s->seekable = s->regular = true;
		return 0;
	}
	return -EEXIST;
}

static int publish(struct fsink *s)
{
	int rc;
	if (!s->no_fsync) {
		rc = ckpt__fault_hit(CKPT_FAULT_FSYNC);
		if (rc || fsync(s->fd) != 0)
			return rc ? rc : -errno;
	}
	rc = ckpt__fault_hit(CKPT_FAULT_RENAME);
	if (rc)
		return rc;
	if (renameat(s->dirfd, s->tmpname, s->dirfd, s->name) != 0)
		return -errno;
	s->tmp_created = false;
	rc = fsync_dir(s);
	if (rc)
		return rc;
	if (!(s->hdr.flags & CKPT__IMG_INCREMENTAL))
		remove_generations(s);
	return 0;
}

/* ------------------------------------------------------------ callbacks */

/* io_uring set-up failed with @why: the image is written with plain
 * syscalls.  Said once per heap: a database checkpointing every minute in a
 * container that blocks io_uring would otherwise log it every minute. */
static void say_plain_io(struct fsink *s, int why)
{
	if (s->log_heap && !atomic_exchange(&s->log_heap->plain_io_said, true))
		ckpt__log(s->log_heap, CKPT_LOG_WARN,
			  "io_uring unavailable (%s): images are written with plain pwrite(2)",
			  strerror(-why));
}

/* Everything slow and fallible a checkpoint needs before its first page:
 * stale temp files, the parent's generation link, the temp file, buffers,
 * the zstd context and the io_uring.  Run by ckpt__file_sink_prepare()
 * before the checkpoint's cut (nothing drains the pool meanwhile), or by
 * begin() for a sink that was not prepared. */
static int sink_setup(struct fsink *s, const struct ckpt_sink_info *info)
{
	int rc;

	s->prepared = true;
	memset(&s->hdr, 0, sizeof(s->hdr));
	if (s->kind == CKPT_DEST_PATH) {
		remove_stale_temps(s);
		if (info->flags & CKPT_SINK_INCREMENTAL) {
			rc = link_parent(s, info);
			if (rc)
				return set_err(s, rc);
		}
		rc = open_temp(s, s->direct);
		if (rc)
			return set_err(s, rc);
	}
	size_t data_cap = WR_BLOCK_DATA > info->page_size ? WR_BLOCK_DATA : info->page_size;
	s->block_cap_pages = (uint32_t)(data_cap / info->page_size);
	s->buf_size = sizeof(struct ckpt__blk_header) + data_cap +
		      WR_BLOCK_RUNS * sizeof(struct ckpt__run);
	s->buf_size = (s->buf_size + WR_ALIGN - 1) & ~(size_t)(WR_ALIGN - 1);
	for (int i = 0; i < WR_BUFS; i++) {
		if (posix_memalign((void **)&s->bufs[i].mem, WR_ALIGN, s->buf_size))
			return set_err(s, -ENOMEM);
		s->bufs[i].cap = s->buf_size;
	}
	if (s->direct && posix_memalign((void **)&s->asmbuf, WR_ALIGN, s->buf_size))
		return set_err(s, -ENOMEM);
	if (s->zstd_level > 0) {
		rc = zpool_start(s, data_cap);
		if (rc)
			return set_err(s, rc);
	}
	s->fh = XXH3_createState();
	if (!s->fh)
		return set_err(s, -ENOMEM);
	XXH3_64bits_reset(s->fh);
	rc = ckpt__fault_hit(CKPT_FAULT_URING_SETUP);
	if (!rc)
		rc = io_uring_queue_init(WR_QD, &s->ring, 0);
	if (rc < 0)
		say_plain_io(s, rc);
	else
		s->ring_ok = true;
	return 0;
}

static int sink_begin(void *arg, const struct ckpt_sink_info *info)
{
	struct fsink *s = arg;
	int rc;
	if (s->began)
		return set_err(s, -EINVAL);
	s->began = true;
	if (!info || info->page_size < 4096 || (info->page_size & (info->page_size - 1)) ||
	    info->page_size > CKPT__MAX_PAGE_SIZE || info->heap_size % info->page_size ||
	    info->npages > info->heap_size / info->page_size ||
	    info->pages_to_emit > info->npages ||
	    (!(info->flags & CKPT_SINK_INCREMENTAL) && info->pages_to_emit != info->npages) ||
	    ckpt__check_range(info->base, info->heap_size, info->page_size) != 0)
		return set_err(s, -EINVAL);
	if ((info->flags & CKPT_SINK_INCREMENTAL) && s->kind != CKPT_DEST_PATH)
		return set_err(s, -EINVAL); /* a chain needs files that name each other */
	if (s->prepared && (info->page_size != s->prep_page_size ||
			    (info->flags & CKPT_SINK_INCREMENTAL) != s->prep_flags))
		return set_err(s, -EINVAL);
	if (!s->prepared) {
		rc = sink_setup(s, info);
		if (rc)
			return rc;
	}
	/* the workers were started while the checkpoint was prepared, at the
	 * application's priority; they compress at the streaming thread's */
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	if (errno == 0)
		atomic_store(&s->zp.nice, nice);

	/* link_parent() filled the parent's fields of the header */
	struct ckpt__img_header *h = &s->hdr;
	if (ckpt__img_header_encode(h, info, s->zstd_level) != 0)
		return set_err(s, -EINVAL);
	s->page_size = info->page_size;

	if (out_put(s, h, sizeof(*h), false))
		return s->err;
	if (!s->direct)
		out_flush(s);
	return s->err;
}

int ckpt__file_sink_prepare(const struct ckpt_sink *sink, const struct ckpt_sink_info *info)
{
	struct fsink *s = sink->arg;
	if (s->began || s->prepared)
		return -EINVAL;
	s->prep_page_size = info->page_size;
	s->prep_flags = info->flags & CKPT_SINK_INCREMENTAL;
	return sink_setup(s, info);
}

static int sink_pages(void *arg, uint64_t first, uint32_t n, const void *data)
{
	struct fsink *s = arg;
	if (s->err)
		return s->err;
	if (!s->began || first > s->hdr.npages || n > s->hdr.npages - first ||
	    n > s->hdr.pages_to_emit - s->pages_seen)
		return set_err(s, -EINVAL);
	s->pages_seen += n;
	const uint8_t *src = data;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t page = first + i;
		if (!src) {
			/* a zero range: one run, however long */
			uint32_t k = n - i;
			if (s->nruns) {
				struct ckpt__run *r = &s->runs[s->nruns - 1];
				if (r->kind == CKPT__RUN_ZERO && r->first_page + r->npages == page &&
				    r->npages <= UINT32_MAX - k) {
					r->npages += k;
					s->zero_pages += k;
					return 0;
				}
			}
			if (s->nruns == WR_BLOCK_RUNS && close_block(s))
				return s->err;
			s->runs[s->nruns++] =
				(struct ckpt__run){ .first_page = page, .npages = k, .kind = CKPT__RUN_ZERO };
			s->zero_pages += k;
			return 0;
		}
		const uint8_t *p = src + (size_t)i * s->page_size;
		if (ckpt__page_is_zero(p, s->page_size)) {
			if (add_run(s, page, CKPT__RUN_ZERO))
				return s->err;
			s->zero_pages++;
			continue;
		}
		if (s->data_pages == s->block_cap_pages && close_block(s))
			return s->err;
		if (add_run(s, page, CKPT__RUN_DATA))
			return s->err;
		uint8_t *dst = data_area(s);
		if (!dst)
			return s->err;
		memcpy(dst + (size_t)s->data_pages * s->page_size, p, s->page_size);
		s->data_pages++;
	}
	return 0;
}

static int finish(struct fsink *s)
{
	if (close_block(s))
		return s->err;
	if (s->zstd_level > 0 && zpool_drain(s))
		return s->err;
	if (s->pages_seen != s->hdr.pages_to_emit)
		return set_err(s, -EINVAL); /* the engine owes us pages */
	if (!s->direct && out_flush(s))
		return s->err;
	uint64_t toff = s->off + (s->stage ? s->stage->len : 0);
	struct ckpt__trl_header th = {
		.magic = CKPT__TRL_MAGIC,
		.nblocks = s->nindex,
		.pages_stored = s->pages_stored,
		.pages_zero = s->pages_zero,
		.nruns = s->total_runs,
		.offset = toff,
		.nchunks = s->total_chunks,
	};
	ckpt__trl_header_seal(&th);
	XXH3_state_t *ts = XXH3_createState();
	if (!ts)
		return set_err(s, -ENOMEM);
	XXH3_64bits_reset(ts);
	XXH3_64bits_update(ts, &th, sizeof(th));
	XXH3_64bits_update(ts, s->index, s->nindex * sizeof(*s->index));
	XXH3_64bits_update(ts, s->table, s->table_len);
	uint64_t tsum = XXH3_64bits_digest(ts);
	XXH3_freeState(ts);
	out_put(s, &th, sizeof(th), false);
	out_put(s, s->index, s->nindex * sizeof(*s->index), false);
	out_put(s, s->table, s->table_len, false);
	out_put(s, &tsum, sizeof(tsum), false);
	if (s->err)
		return s->err;
	struct ckpt__footer f = {
		.trailer_offset = toff,
		.trailer_size = sizeof(th) + s->nindex * sizeof(*s->index) + s->table_len + sizeof(tsum),
	};
	f.file_size = f.trailer_offset + f.trailer_size + sizeof(f);
	f.file_hash = XXH3_64bits_digest(s->fh);
	memcpy(f.id, s->hdr.id, 16);
	memcpy(f.magic, CKPT__IMG_FOOTER_MAGIC, sizeof(f.magic));
	ckpt__footer_seal(&f);
	if (out_put(s, &f, sizeof(f), true))
		return s->err;
	if (s->direct) {
		/* whole chunks went out O_DIRECT; the tail is not a multiple
		 * of the block size, so it goes through the page cache */
		if (drain(s))
			return s->err;
		int fl = fcntl(s->fd, F_GETFL);
		if (fl < 0 || fcntl(s->fd, F_SETFL, fl & ~O_DIRECT) < 0)
			return set_err(s, -errno);
	}
	if (out_flush(s) || drain(s))
		return s->err;

	if (s->kind == CKPT_DEST_PATH) {
		int rc = publish(s);
		if (rc)
			return set_err(s, rc);
	} else if (s->seekable) {
		/* leave the fd positioned after the image, as write(2) would */
		if (lseek(s->fd, (off_t)(s->start_off + s->off), SEEK_SET) < 0)
			return set_err(s, -errno);
		if (s->regular && !s->no_fsync) {
			int rc = ckpt__fault_hit(CKPT_FAULT_FSYNC);
			if (rc || fsync(s->fd) != 0)
				return set_err(s, rc ? rc : -errno);
		}
	}
	return 0;
}

static void sink_free(struct fsink *s)
{
	if (s->ring_ok) {
		drain(s);
		io_uring_queue_exit(&s->ring);
	}
	if (s->kind == CKPT_DEST_PATH && s->fd >= 0)
		close(s->fd);
	if (s->tmp_created)
		unlinkat(s->dirfd, s->tmpname, 0);
	if (s->dirfd >= 0)
		close(s->dirfd);
	for (int i = 0; i < WR_BUFS; i++)
		free(s->bufs[i].mem);
	free(s->asmbuf);
	zpool_stop(s);
	if (s->fh)
		XXH3_freeState(s->fh);
	free(s->index);
	free(s->table);
	free(s->dir);
	free(s->name);
	free(s);
}

static int sink_end(void *arg, int status)
{
	struct fsink *s = arg;
	int rc = status;
	if (rc == 0)
		rc = s->began ? finish(s) : -EINVAL;
	if (rc == 0 && s->err)
		rc = s->err;
	/* on failure the temp file goes (sink_free); the old image is untouched */
	sink_free(s);
	return rc;
}

int ckpt__file_sink_open(const struct ckpt_dest *dest, const struct ckpt_begin_opts *opts,
			 _Atomic uint64_t *bytes_written, ckpt_heap *log_heap, struct ckpt_sink *out)
{
	if (!dest || !out)
		return -EINVAL;
	int level = opts ? opts->zstd_level : 0;
	unsigned flags = opts ? opts->flags : 0;
	if (level < 0 || level > ZSTD_maxCLevel())
		return -EINVAL;
	struct fsink *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fd = -1;
	s->dirfd = -1;
	s->kind = dest->kind;
	s->zstd_level = level;
	if (opts && opts->struct_size >= offsetof(struct ckpt_begin_opts, threads) + sizeof(opts->threads))
		s->zthreads = opts->threads;
	s->no_fsync = flags & CKPT_BEGIN_NO_FSYNC;
	s->bytes_written = bytes_written;
	s->log_heap = log_heap;
	int rc = 0;
	if (dest->kind == CKPT_DEST_PATH) {
		if (!dest->path || !*dest->path) {
			rc = -EINVAL;
			goto fail;
		}
		const char *slash = strrchr(dest->path, '/');
		s->name = strdup(slash ? slash + 1 : dest->path);
		s->dir = slash ? strndup(dest->path, (size_t)(slash - dest->path) + (slash == dest->path))
			       : strdup(".");
		if (!s->name || !s->dir) {
			rc = -ENOMEM;
			goto fail;
		}
		/* room for ".NAME.tmp.PID.RANDOM" and "NAME.gGGGGGG" */
		if (!ckpt__img_name_ok(s->name, NAME_MAX - 32)) {
			rc = -EINVAL;
			goto fail;
		}
		s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (s->dirfd < 0) {
			rc = -errno;
			goto fail;
		}
		s->direct = flags & CKPT_BEGIN_DIRECT;
	} else if (dest->kind == CKPT_DEST_FD) {
		struct stat st;
		if (dest->fd < 0 || fstat(dest->fd, &st) != 0) {
			rc = -EBADF;
			goto fail;
		}
		s->fd = dest->fd;
		off_t pos = lseek(dest->fd, 0, SEEK_CUR);
		int fl = fcntl(dest->fd, F_GETFL);
		/* O_APPEND ignores write offsets: several writes in flight
		 * could land out of order, so it is written like a pipe */
		s->seekable = pos >= 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) &&
			      fl >= 0 && !(fl & O_APPEND);
		s->regular = S_ISREG(st.st_mode);
		s->start_off = s->seekable ? (uint64_t)pos : 0;
	} else {
		rc = -EINVAL;
		goto fail;
	}
	*out = (struct ckpt_sink){
		.begin = sink_begin,
		.pages = sink_pages,
		.end = sink_end,
		.arg = s,
	};
	return 0;
fail:
	sink_free(s);
	return rc;
}
