/*
 * allocbench.c - ckpt_alloc/ckpt_free against glibc malloc/free on a
 * small-object workload.
 *
 *   build/bench/allocbench [--quick] [--ops N] [--slots N] [--reps N]
 *                          [--threads 1|2] [--only ckpt|glibc]
 *
 * Each thread owns an array of slots.  One operation picks a random slot:
 * an empty slot gets a new block (16..512 bytes, skewed small: 16 +
 * 496 * u^3 for uniform u), a full one is freed.  The slot and size
 * sequences are generated before timing and are the same for both
 * allocators; every block gets one byte written, as a program would.  A
 * warm-up pass runs first so both allocators are measured in a steady
 * state.  Runs with 1 and 2 threads (all threads share one heap) and prints
 * ns per operation (wall time per thread / operations per thread) and the
 * same in thread CPU time (steadier on a machine shared with other work:
 * time spent descheduled does not count, lock spinning does), the best of
 * the reps, and the median over reps of the ratio of the two runs made back
 * to back (the steadier comparison on a loaded machine), with the load
 * average at the start.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt.h"

struct seq {
	uint32_t *slot;
	uint16_t *size;
};

struct worker {
	int use_ckpt;
	ckpt_heap *heap;
	const struct seq *seq;
	size_t ops, nslots;
	void **slots;
	pthread_barrier_t *bar;
	uint64_t sink;
	uint64_t cpu_ns; /* thread CPU time of the timed run */
	uint64_t t_start, t_end; /* CLOCK_MONOTONIC around the timed run */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int make_seq(struct seq *q, size_t ops, size_t nslots, uint64_t seed)
{
	q->slot = malloc(ops * sizeof(*q->slot));
	q->size = malloc(ops * sizeof(*q->size));
	if (!q->slot || !q->size)
		return -1;
	for (size_t i = 0; i < ops; i++) {
		q->slot[i] = (uint32_t)(rng_next(&seed) % nslots);
		double u = (double)(rng_next(&seed) >> 11) / 9007199254740992.0;
		q->size[i] = (uint16_t)(16 + (unsigned)(496.0 * u * u * u));
	}
	return 0;
}

/* The loop is written twice rather than through function pointers, so
 * neither allocator pays for an indirect call the other does not. */
static void run_ops(struct worker *w)
{
	const uint32_t *slot = w->seq->slot;
	const uint16_t *size = w->seq->size;
	void **s = w->slots;
	uint64_t sink = 0;
	if (w->use_ckpt) {
		for (size_t i = 0; i < w->ops; i++) {
			void **p = &s[slot[i]];
			if (*p) {
				ckpt_free(w->heap, *p);
				*p = NULL;
			} else {
				*p = ckpt_alloc(w->heap, size[i]);
				if (*p)
					*(volatile uint8_t *)*p = (uint8_t)i;
				else
					sink++;
			}
		}
	} else {
		for (size_t i = 0; i < w->ops; i++) {
			void **p = &s[slot[i]];
			if (*p) {
				free(*p);
				*p = NULL;
			} else {
				*p = malloc(size[i]);
				if (*p)
					*(volatile uint8_t *)*p = (uint8_t)i;
				else
					sink++;
			}
		}
	}
	w->sink += sink; /* allocation failures; reported */
}

static void *thread_main(void *arg)
{
	struct worker *w = arg;
	run_ops(w); /* warm-up: reach the steady state */
	pthread_barrier_wait(w->bar);
	w->t_start = now_ns();
	uint64_t c0 = thread_cpu_ns();
	run_ops(w);
	w->cpu_ns = thread_cpu_ns() - c0;
	w->t_end = now_ns();
	pthread_barrier_wait(w->bar);
	return NULL;
}

static void release_all(struct worker *w)
{
	for (size_t i = 0; i < w->nslots; i++) {
		if (!w->slots[i])
			continue;
		if (w->use_ckpt)
			ckpt_free(w->heap, w->slots[i]);
		else
			free(w->slots[i]);
		w->slots[i] = NULL;
	}
}

/* Runs the workload on nthreads threads; returns wall ns per operation
 * (x threads) and, in *cpu, CPU ns per operation. */
static double measure(int use_ckpt, ckpt_heap *heap, int nthreads, struct seq *seqs,
		      size_t ops, size_t nslots, uint64_t *failures, double *cpu)
{
	pthread_t tid[8];
	struct worker w[8];
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, (unsigned)nthreads + 1);
	for (int t = 0; t < nthreads; t++) {
		w[t] = (struct worker){.use_ckpt = use_ckpt, .heap = heap, .seq = &seqs[t],
				       .ops = ops, .nslots = nslots, .bar = &bar};
		w[t].slots = calloc(nslots, sizeof(void *));
		if (!w[t].slots || pthread_create(&tid[t], NULL, thread_main, &w[t]) != 0) {
			fprintf(stderr, "allocbench: cannot start thread %d\n", t);
			exit(1);
		}
	}
	pthread_barrier_wait(&bar); /* warm-ups done */
	pthread_barrier_wait(&bar); /* timed runs done */
	/* from the first thread's start to the last one's end, as the
	 * threads saw it (the main thread may be descheduled in between) */
	uint64_t t0 = UINT64_MAX, t1 = 0, cpu_ns = 0;
	for (int t = 0; t < nthreads; t++) {
		t0 = w[t].t_start < t0 ? w[t].t_start : t0;
		t1 = w[t].t_end > t1 ? w[t].t_end : t1;
	}
	for (int t = 0; t < nthreads; t++) {
		pthread_join(tid[t], NULL);
		*failures += w[t].sink;
		cpu_ns += w[t].cpu_ns;
		release_all(&w[t]);
		free(w[t].slots);
	}
	pthread_barrier_destroy(&bar);
	*cpu = (double)cpu_ns / ((double)ops * nthreads);
	return (double)(t1 - t0) * nthreads / ((double)ops * nthreads);
}

int main(int argc, char **argv)
{
	size_t ops = 4000000, nslots = 20000;
	int reps = 5, max_threads = 2;
	char only = 0; /* 'c' or 'g': run one allocator (for perf stat / record) */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			ops = 100000;
			nslots = 2000;
			reps = 1;
		} else if (!strcmp(argv[i], "--ops") && i + 1 < argc) {
			ops = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--slots") && i + 1 < argc) {
			nslots = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			only = argv[++i][0];
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			max_threads = atoi(argv[++i]);
		} else {
			fprintf(stderr,
				"usage: %s [--quick] [--ops N] [--slots N] [--reps N] [--threads 1|2]\n"
				"          [--only ckpt|glibc]\n", argv[0]);
			return 2;
		}
	}
	if (reps < 1 || ops == 0 || nslots == 0 || nslots > UINT32_MAX || max_threads < 1 ||
	    max_threads > 2 || (only && only != 'c' && only != 'g')) {
		fprintf(stderr, "allocbench: bad arguments\n");
		return 2;
	}

	struct ckpt_heap_opts o;
	ckpt_heap_opts_init(&o);
	o.size = 1ull << 30;
	o.name = "allocbench";
	ckpt_heap *heap;
	int rc = ckpt_heap_create(&o, &heap);
	if (rc) {
		fprintf(stderr, "allocbench: ckpt_heap_create: %s (%s)\n", ckpt_strerror(rc),
			ckpt_err_name(rc));
		return 1;
	}

	struct seq seqs[2];
	for (int t = 0; t < 2; t++)
		if (make_seq(&seqs[t], ops, nslots, 0x5eed0000ull + (uint64_t)t) != 0) {
			fprintf(stderr, "allocbench: out of memory\n");
			return 1;
		}

	double la[3] = {0};
	if (getloadavg(la, 3) < 0)
		la[0] = la[1] = la[2] = -1;
	printf("allocbench: %zu ops per thread (50%% alloc 16..512 B skewed small, 50%% free), "
	       "%zu slots per thread, %d reps; load average %.2f %.2f %.2f\n", ops, nslots, reps,
	       la[0], la[1], la[2]);
	printf("%-8s %12s %12s %12s %12s %12s %12s\n", "threads", "ckpt ns/op", "glibc ns/op",
	       "ratio", "ckpt cpu-ns", "glibc cpu-ns", "cpu ratio");
	uint64_t failures = 0;
	double wall_c[3] = {0}, wall_g[3] = {0}, cpus_c = 0, cpus_g = 0;
	double *rw = calloc((size_t)reps, sizeof(double)), *rc_ = calloc((size_t)reps, sizeof(double));
	double *uc = calloc((size_t)reps, sizeof(double)), *ug = calloc((size_t)reps, sizeof(double));
	if (!rw || !rc_ || !uc || !ug)
		return 1;
	for (int nthreads = 1; nthreads <= max_threads; nthreads++) {
		double best_c = 1e30, best_g = 1e30, best_cc = 1e30, best_gc = 1e30, cc = 0, gc = 0;
		/* alternate the two so that neither always runs on a warmer
		 * machine; each rep's two runs are back to back, so their ratio
		 * sees nearly the same load: the median of those ratios is the
		 * steadier comparison, the best times show the floor */
		for (int r = 0; r < reps; r++) {
			double c = only != 'g' ? measure(1, heap, nthreads, seqs, ops, nslots,
							 &failures, &cc) : 0;
			double g = only != 'c' ? measure(0, NULL, nthreads, seqs, ops, nslots,
							 &failures, &gc) : 0;
			rw[r] = g > 0 ? c / g : 0;
			rc_[r] = gc > 0 ? cc / gc : 0;
			/* CPUs the run's threads had on average: thread CPU
			 * time over wall time */
			uc[r] = c > 0 ? cc * nthreads / c : 0;
			ug[r] = g > 0 ? gc * nthreads / g : 0;
			best_c = c < best_c ? c : best_c;
			best_g = g < best_g ? g : best_g;
			best_cc = cc < best_cc ? cc : best_cc;
			best_gc = gc < best_gc ? gc : best_gc;
		}
		printf("%-8d %12.1f %12.1f %12.2f %12.1f %12.1f %12.2f   (best times; "
		       "median of paired ratios)\n",
		       nthreads, best_c, best_g, median(rw, reps), best_cc, best_gc,
		       median(rc_, reps));
		wall_c[nthreads] = best_c;
		wall_g[nthreads] = best_g;
		cpus_c = median(uc, reps);
		cpus_g = median(ug, reps);
	}
	free(rw);
	free(rc_);
	free(uc);
	free(ug);
	/* ns/op is wall time per operation of one thread: n threads that
	 * scale perfectly keep the 1-thread figure and do n times the work */
	if (max_threads == 2 && !only) {
		printf("throughput, 2 threads vs 1: ckpt %.2fx, glibc %.2fx "
		       "(ops/s: ckpt %.3g / %.3g, glibc %.3g / %.3g)\n",
		       2 * wall_c[1] / wall_c[2], 2 * wall_g[1] / wall_g[2], 1e9 / wall_c[1],
		       2e9 / wall_c[2], 1e9 / wall_g[1], 2e9 / wall_g[2]);
		/* the 2-vs-1 figure can reach 2x only if the two threads run
		 * at once; on a machine with other work they often do not, and
		 * then this, not the allocator, bounds it */
		printf("CPUs the 2 threads had (median over reps; 2.00 = both always running): "
		       "ckpt %.2f, glibc %.2f\n", cpus_c, cpus_g);
	}
	printf("heap extent after the runs: %zu KiB\n", ckpt_heap_used(heap) >> 10);
	if (failures) {
		fprintf(stderr, "allocbench: %llu allocations failed\n",
			(unsigned long long)failures);
		return 1;
	}
	ckpt_heap_destroy(heap);
	for (int t = 0; t < 2; t++) {
		free(seqs[t].slot);
		free(seqs[t].size);
	}
	return 0;
}
