/*
 * benchutil.h - small helpers shared by the benchmark programs in bench/.
 *
 * Header-only (static functions) because the Makefile builds each bench .c file
 * into its own program.  Times are taken with the TSC (constant and
 * non-stop on every x86 machine we run on), calibrated against
 * CLOCK_MONOTONIC, because clock_gettime() around a 30 ns write would be
 * most of the measurement.
 */
#ifndef CKPT_BENCHUTIL_H
#define CKPT_BENCHUTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
/* lfence on both sides: the timed store cannot be reordered around the reads
 * of the counter, and earlier work has retired before the first read. */
static inline uint64_t bench_tsc(void)
{
	_mm_lfence();
	uint64_t t = __rdtsc();
	_mm_lfence();
	return t;
}
static inline void bench_cpu_relax(void) { _mm_pause(); }
#else
static inline uint64_t bench_tsc(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline void bench_cpu_relax(void) {}
#endif

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Nanoseconds per TSC tick, measured over ~50 ms (median of 3). */
static inline double bench_tsc_ns_per_tick(void)
{
#if defined(__x86_64__) || defined(__i386__)
	double r[3];
	for (int k = 0; k < 3; k++) {
		uint64_t n0 = bench_now_ns(), t0 = bench_tsc();
		uint64_t n1;
		do
			n1 = bench_now_ns();
		while (n1 - n0 < 50000000ull / 3);
		uint64_t t1 = bench_tsc();
		r[k] = (double)(n1 - n0) / (double)(t1 - t0);
	}
	/* median of three */
	if (r[0] > r[1]) { double x = r[0]; r[0] = r[1]; r[1] = x; }
	if (r[1] > r[2]) { double x = r[1]; r[1] = r[2]; r[2] = x; }
	if (r[0] > r[1]) { double x = r[0]; r[0] = r[1]; r[1] = x; }
	return r[1];
#else
	return 1.0;
#endif
}

/* splitmix64: reproducible from the printed seed */
static inline uint64_t bench_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* q-quantile (nearest rank) of a sorted array */
static inline uint64_t bench_quantile_u64(const uint64_t *sorted, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(q * (double)n + 0.999999);
	if (i > 0)
		i--;
	if (i >= n)
		i = n - 1;
	return sorted[i];
}

static inline double bench_median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Parses "4k", "256m", "1g" or a plain number of bytes. */
static inline size_t bench_parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	switch (*end) {
	case 'k': case 'K': v *= 1024; break;
	case 'm': case 'M': v *= 1024 * 1024; break;
	case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
	default: break;
	}
	return (size_t)v;
}

/* Sum of the "Rss"-like field @key (in kB) of a /proc smaps_rollup-style
 * file; -1 on error. */
static inline long bench_proc_kb(const char *path, const char *key)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	char line[256];
	long v = -1;
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

#endif
