/*
 * replay_main.c - runs a fuzz harness over files without libFuzzer.
 *
 *   replay_X FILE|DIR ...
 *
 * Every regular file named (directories: every regular file in them, not
 * recursive) is fed once to LLVMFuzzerTestOneInput().  This is how
 * `make test` replays the committed corpus and every regression input
 * through the same harness code the fuzzer runs (tests/sh/test_fuzz_replay.sh).
 * A harness detects a failure by crashing (abort, sanitizer report); the
 * program prints the file it is on first, so the log names the culprit.
 * Exit 0 when every input ran, 2 on a usage or I/O problem.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static long g_runs;

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rbe");
	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 4096, n = 0;
	uint8_t *buf = malloc(cap);
	for (;;) {
		if (!buf)
			break;
		if (n == cap) {
			uint8_t *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t k = fread(buf + n, 1, cap - n, f);
		if (k == 0)
			break;
		n += k;
	}
	fclose(f);
	if (!buf) {
		fprintf(stderr, "replay: %s: out of memory\n", path);
		return -1;
	}
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
	/* libFuzzer hands the harness a buffer of exactly the input's size */
	uint8_t *exact = malloc(n ? n : 1);
	memcpy(exact, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	g_runs++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	int bad = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			bad = 1;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			bad |= run_file(argv[i]) != 0;
			continue;
		}
		DIR *d = opendir(argv[i]);
		if (!d) {
			bad = 1;
			continue;
		}
		char **names = NULL;
		size_t nn = 0;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char **nv = realloc(names, (nn + 1) * sizeof(*names));
			if (!nv)
				break;
			names = nv;
			if (asprintf(&names[nn], "%s/%s", argv[i], de->d_name) < 0)
				break;
			nn++;
		}
		closedir(d);
		qsort(names, nn, sizeof(*names), cmp_str);
		for (size_t k = 0; k < nn; k++) {
			if (stat(names[k], &st) == 0 && S_ISREG(st.st_mode))
				bad |= run_file(names[k]) != 0;
			free(names[k]);
		}
		free(names);
	}
	printf("replay: %ld inputs ran\n", g_runs);
	return bad ? 2 : 0;
}
