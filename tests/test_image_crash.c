/*
 * test_image_crash.c - crash safety of the atomic publish: a child that
 * restores the image at a path, changes the heap and takes a full and then
 * an incremental checkpoint to the same path is killed with SIGKILL at a
 * random instant, again and again (>= 20 kills).  After every kill the
 * path holds a complete image (chain) that verifies and holds exactly the
 * heap of one of the checkpoints that were started, and the next child's
 * checkpoint removes the dead child's temp file.
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "image_util.h"

#define HEAP (32u << 20)
#define NBLK 64

struct tab {
	uint8_t *blk[NBLK];
	uint32_t len[NBLK];
};

/* Saves the heap bytes the checkpoint of generation @gen will hold. */
static void save_snapshot(const char *dir, ckpt_heap *h, uint64_t gen)
{
	char p[300], t[300];
	snprintf(p, sizeof(p), "%s/snap.%llu", dir, (unsigned long long)gen);
	snprintf(t, sizeof(t), "%s/snap.%llu.part", dir, (unsigned long long)gen);
	if (iu_write_file(t, ckpt_heap_base(h), ckpt_heap_used(h)) != 0 || rename(t, p) != 0)
		_exit(3);
}

static void mutate(ckpt_heap *h, struct tab *t, uint64_t *st)
{
	for (int w = 0; w < 40; w++) {
		int i = (int)(iu_rand(st) % NBLK);
		if (iu_rand(st) % 4 == 0) {
			ckpt_free(h, t->blk[i]);
			t->len[i] = 512 + (uint32_t)(iu_rand(st) % 60000);
			t->blk[i] = ckpt_alloc(h, t->len[i]);
			if (!t->blk[i])
				_exit(4);
		}
		for (uint32_t k = 0; k < t->len[i]; k += 64)
			t->blk[i][k] = (uint8_t)iu_rand(st);
	}
}

/* The child: never returns. */
static void child(const char *dir, const char *path, uint64_t seed)
{
	uint64_t st = seed;
	ckpt_heap *h = NULL;
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = HEAP;
	ho.flags = CKPT_HEAP_INCREMENTAL;
	struct tab *t;
	uint64_t gen = 0;
	if (access(path, F_OK) == 0) {
		struct ckpt_restore_opts ro;
		ckpt_restore_opts_init(&ro);
		ro.heap = &ho;
		if (ckpt_restore(path, &ro, &h) != 0)
			_exit(5);
		struct ckpt_image_info ii;
		if (ckpt_image_info(path, &ii, NULL, 0) != 0)
			_exit(6);
		gen = ii.generation;
		t = ckpt_root_get(h);
	} else {
		if (ckpt_heap_create(&ho, &h) != 0)
			_exit(7);
		t = ckpt_calloc(h, 1, sizeof(*t));
		for (int i = 0; i < NBLK; i++) {
			t->len[i] = 512 + (uint32_t)(iu_rand(&st) % 60000);
			t->blk[i] = ckpt_alloc(h, t->len[i]);
			memset(t->blk[i], i, t->len[i]);
		}
		ckpt_root_set(h, t);
	}
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	for (int k = 1; k <= 2; k++) { /* a full image, then an incremental */
		mutate(h, t, &st);
		save_snapshot(dir, h, gen + (uint64_t)k);
		struct ckpt_begin_opts o = iu_opts((int)(iu_rand(&st) % 3), 0);
		if (ckpt_begin(h, &d, &o) != 0 || ckpt_wait(h) != 0)
			_exit(8);
	}
	_exit(0);
}

Test(image_crash, sigkill_at_random_points_leaves_a_complete_image, .timeout = 280)
{
	char *dir = iu_tmpdir("crash");
	char path[300];
	snprintf(path, sizeof(path), "%s/heap.ckpt", dir);
	uint64_t st = ckpt_test_seed("crash");
	int kills = 0, runs = 0, finished = 0, advanced = 0;
	uint64_t last_gen = 0;
	/* two undisturbed runs: the first image, and how long a run from a
	 * restore takes (the slowest of them) */
	uint64_t run_us = 0;
	for (int u = 0; u < 2; u++) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		/* no criterion call in a child: its reporting socket does not
		 * survive fork() (an assert there, even a passing one, can hang) */
		pid_t first = fork();
		if (first == 0)
			child(dir, path, iu_rand(&st));
		cr_assert(first > 0, "fork: %s", strerror(errno));
		int fst;
		cr_assert(waitpid(first, &fst, 0) == first && WIFEXITED(fst) && WEXITSTATUS(fst) == 0,
			  "undisturbed child failed (status %#x)", fst);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		int64_t ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
		run_us = (uint64_t)(ns / 1000);
	}
	last_gen = 4;
	/* kill anywhere in the run, past its end now and then */
	uint64_t window_us = run_us + run_us / 4 + 1;
	cr_log_info("crash: an undisturbed run takes %llu us", (unsigned long long)run_us);
	while (kills < 24 && runs < 200) {
		runs++;
		uint64_t cseed = iu_rand(&st);
		pid_t pid = fork();
		if (pid == 0)
			child(dir, path, cseed);
		cr_assert(pid > 0, "fork: %s", strerror(errno));
		uint64_t delay = iu_rand(&st) % window_us;
		struct timespec ts = { (time_t)(delay / 1000000), (long)(delay % 1000000) * 1000 };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		cr_assert(waitpid(pid, &status, 0) == pid);
		bool killed = WIFSIGNALED(status);
		if (killed) {
			kills++;
		} else {
			cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
				  "run %d: child failed on its own (status %#x)", runs, status);
			finished++;
			window_us -= window_us / 10; /* the load eased: aim earlier */
		}
		if (access(path, F_OK) != 0) {
			cr_assert_eq(iu_count_names(dir, "heap.ckpt.g"), 0);
			continue; /* killed before the very first image was published */
		}
		char err[256] = "";
		int rc = ckpt_image_verify(path, CKPT_VERIFY_CHAIN, err, sizeof(err));
		cr_assert(rc == 0, "run %d: the image at the path does not verify: %s (%s)", runs,
			  ckpt_err_name(rc), err);
		struct ckpt_image_info ii;
		CKPT_ASSERT_OK(ckpt_image_info(path, &ii, NULL, 0));
		if (ii.generation != last_gen)
			advanced++;
		else if (killed)
			window_us += window_us / 10; /* the load grew: aim later */
		last_gen = ii.generation;
		char snap[300];
		snprintf(snap, sizeof(snap), "%s/snap.%llu", dir, (unsigned long long)ii.generation);
		size_t sn = 0;
		uint8_t *want = iu_read_file(snap, &sn);
		cr_assert(want, "run %d: no snapshot for generation %llu", runs,
			  (unsigned long long)ii.generation);
		uint8_t *m;
		size_t sz = 0;
		CKPT_ASSERT_OK(iu_load(path, &m, &sz, err, sizeof(err)));
		cr_assert(memcmp(m, want, sn) == 0, "run %d: image of generation %llu is not that heap", runs,
			  (unsigned long long)ii.generation);
		munmap(m, sz);
		if (runs % 8 == 4) {
			/* the lazy reader serves that heap too */
			struct ckpt_restore_opts lro;
			ckpt_restore_opts_init(&lro);
			lro.flags = CKPT_RESTORE_LAZY;
			ckpt_heap *lr = NULL;
			rc = ckpt_restore(path, &lro, &lr);
			cr_assert(rc == 0, "run %d: lazy restore: %s", runs, ckpt_err_name(rc));
			cr_assert(memcmp(ckpt_heap_base(lr), want, sn) == 0,
				  "run %d: lazily restored generation %llu is not that heap", runs,
				  (unsigned long long)ii.generation);
			ckpt_heap_destroy(lr);
		}
		free(want);
		/* one dead child's temp file at most: the next checkpoint removes it */
		cr_assert(iu_count_names(dir, ".heap.ckpt.tmp.") <= 1, "run %d: stale temp files pile up", runs);
		if (runs % 8 == 0) {
			ckpt_heap *r = NULL;
			rc = ckpt_restore(path, NULL, &r);
			cr_assert(rc == 0, "run %d: restore: %s", runs, ckpt_err_name(rc));
			ckpt_heap_destroy(r);
		}
	}
	cr_log_info("crash: %d runs, %d killed, %d finished, the image changed %d times", runs, kills,
		    finished, advanced);
	cr_assert(kills >= 20, "only %d kills in %d runs", kills, runs);
	/* kills landed both before and after publishes */
	cr_assert(advanced >= 3 && advanced < runs, "the image changed %d times in %d runs", advanced, runs);
	iu_rmtree(dir);
	free(dir);
}
