/*
 * ckpt.c - the `ckpt` command: inspect, verify, merge and compare libckpt
 * images (man ckpt(1)), and check the kernel (`ckpt kcheck`, kcheck.c).
 *
 * Exit status: 0 success; 1 the image has a problem (verify) or the images
 * differ (diff); 2 usage error or the operation failed.
 * Progress goes to stderr only when stderr is a terminal.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "image.h"
#include "tool.h"

static const char *prog = "ckpt";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s COMMAND [ARGS]\n"
		"  info FILE              header, counts and chain of an image\n"
		"  verify [-n] FILE       check everything (with -n: not the parents); exit 0 ok, 1 bad\n"
		"  merge [-l LEVEL] OUT FILE...\n"
		"                         fold the chain ending at FILE (or the chain FILE...,\n"
		"                         full image first) into one full image OUT\n"
		"  diff A B               list the pages that differ; exit 0 same, 1 different\n"
		"  kcheck                 is this kernel safe for libckpt?\n"
		"  --version, --help\n",
		prog);
}

/* ------------------------------------------------------------ progress */

struct progress {
	const char *what;
	bool on;
	bool shown;
};

static void progress_cb(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;
	if (!p->on || !total)
		return;
	fprintf(stderr, "\r%s: %3u%% (%" PRIu64 " of %" PRIu64 " MiB)", p->what,
		(unsigned)(done * 100 / total), done >> 20, total >> 20);
	p->shown = true;
}

static void progress_end(struct progress *p)
{
	if (p->shown)
		fprintf(stderr, "\r\033[K");
}

static void progress_init(struct progress *p, const char *what)
{
	p->what = what;
	p->on = isatty(STDERR_FILENO);
	p->shown = false;
}

/* ---------------------------------------------------------------- info */

static void hex16(char out[33], const uint8_t id[16])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static void when(char *buf, size_t n, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, n, "%" PRIu64 " ns", ns);
}

static char *sibling(const char *path, const char *name)
{
	const char *slash = strrchr(path, '/');
	size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
	char *p = malloc(dl + strlen(name) + 1);
	if (p) {
		memcpy(p, path, dl);
		strcpy(p + dl, name);
	}
	return p;
}

static int cmd_info(int argc, char **argv)
{
	if (argc != 2) {
		usage(stderr);
		return 2;
	}
	const char *path = argv[1];
	char err[300] = "";
	struct ckpt_image_info ii;
	int rc = ckpt_image_info(path, &ii, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "%s: %s: %s\n", path, ckpt_err_name(rc), err[0] ? err : ckpt_strerror(rc));
		return 2;
	}
	char id[33], pid[33], tbuf[64];
	hex16(id, ii.id);
	hex16(pid, ii.parent_id);
	when(tbuf, sizeof(tbuf), ii.created_ns);
	uint64_t psz = ii.page_size;
	printf("file:        %s\n", path);
	printf("format:      version %u\n", ii.version);
	printf("kind:        %s\n", ii.flags & CKPT_SINK_INCREMENTAL ? "incremental" : "full");
	printf("id:          %s\n", id);
	printf("generation:  %" PRIu64 "\n", ii.generation);
	printf("app tag:     %s\n", ii.app_tag[0] ? ii.app_tag : "(none)");
	printf("created:     %s\n", tbuf);
	printf("heap:        base %#" PRIx64 ", %" PRIu64 " MiB reserved, page size %" PRIu64 "\n",
	       ii.base, ii.heap_size >> 20, psz);
	printf("extent:      %" PRIu64 " pages (%" PRIu64 " MiB)\n", ii.npages, ii.npages * psz >> 20);
	printf("pages:       %" PRIu64 " stored, %" PRIu64 " zero (recorded, not stored)\n",
	       ii.pages_stored, ii.pages_zero);
	printf("blocks:      %" PRIu64 "\n", ii.blocks);
	printf("compression: %s", ii.flags & CKPT_IMAGE_ZSTD ? "zstd" : "none (stored)");
	if (ii.flags & CKPT_IMAGE_ZSTD)
		printf(" level %d", ii.zstd_level);
	printf("\n");
	printf("file size:   %" PRIu64 " bytes", ii.file_size);
	if (ii.pages_stored)
		printf(" (%.1f%% of the stored pages)",
		       100.0 * (double)ii.file_size / (double)(ii.pages_stored * psz));
	printf("\n");
	if (!(ii.flags & CKPT_SINK_INCREMENTAL))
		return 0;
	printf("parent:      %s (id %s)\n", ii.parent_name, pid);
	printf("chain:\n");
	char *cur = strdup(path);
	struct ckpt_image_info ci = ii;
	int depth = 0;
	for (;;) {
		char cid[33];
		hex16(cid, ci.id);
		printf("  %-40s gen %-6" PRIu64 " %-11s %" PRIu64 " pages, %" PRIu64 " bytes\n", cur,
		       ci.generation, ci.flags & CKPT_SINK_INCREMENTAL ? "incremental" : "full",
		       ci.pages_stored + ci.pages_zero, ci.file_size);
		if (!(ci.flags & CKPT_SINK_INCREMENTAL))
			break;
		uint8_t want[16];
		memcpy(want, ci.parent_id, 16);
		char *next = sibling(cur, ci.parent_name);
		free(cur);
		cur = next;
		rc = ckpt_image_info(cur, &ci, err, sizeof(err));
		if (rc) {
			printf("  %-40s %s: %s\n", cur, ckpt_err_name(rc), err);
			free(cur);
			return 1;
		}
		if (memcmp(ci.id, want, 16) != 0) {
			printf("  %-40s is not the parent named (id differs)\n", cur);
			free(cur);
			return 1;
		}
		if (++depth > CKPT__MAX_CHAIN)
			break;
	}
	free(cur);
	return 0;
}

/* -------------------------------------------------------------- verify */

static int cmd_verify(int argc, char **argv)
{
	bool chain = true;
	int c;
	optind = 1;
	while ((c = getopt(argc, argv, "n")) != -1) {
		if (c == 'n') {
			chain = false;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 1) {
		usage(stderr);
		return 2;
	}
	const char *path = argv[optind];
	char err[300] = "";
	struct progress p;
	progress_init(&p, "verifying");
	struct ckpt__load_opts lo = {
		.chain = chain,
		.verify_only = true,
		.progress = progress_cb,
		.progress_arg = &p,
	};
	int rc = ckpt__image_load_anon(path, &lo, NULL, NULL, err, sizeof(err));
	progress_end(&p);
	if (rc) {
		printf("%s: %s: %s\n", path, ckpt_err_name(rc), err[0] ? err : ckpt_strerror(rc));
		return 1;
	}
	printf("%s: ok\n", path);
	return 0;
}

/* --------------------------------------------------------------- merge */

static int cmd_merge(int argc, char **argv)
{
	int level = 0, c;
	optind = 1;
	while ((c = getopt(argc, argv, "l:")) != -1) {
		if (c == 'l') {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 0 || v > 22) {
				fprintf(stderr, "%s merge: bad level '%s' (0..22)\n", prog, optarg);
				return 2;
			}
			level = (int)v;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind < 2) {
		usage(stderr);
		return 2;
	}
	/* one FILE: the tip, which names its parents; several: the chain
	 * itself, full image first (files that were moved or renamed) */
	const char *out = argv[optind];
	int nfiles = argc - optind - 1;
	char err[300] = "";
	struct progress p;
	progress_init(&p, "merging");
	struct ckpt__load_opts lo = { .progress = progress_cb, .progress_arg = &p };
	int rc = nfiles == 1
			 ? ckpt__image_merge(out, argv[optind + 1], level, &lo, err, sizeof(err))
			 : ckpt__image_merge_list(out, (const char *const *)(argv + optind + 1),
						  (size_t)nfiles, level, &lo, err, sizeof(err));
	progress_end(&p);
	if (rc) {
		fprintf(stderr, "%s merge: %s: %s\n", prog, ckpt_err_name(rc), err[0] ? err : ckpt_strerror(rc));
		return 2;
	}
	return 0;
}

/* ---------------------------------------------------------------- diff */

static int cmd_diff(int argc, char **argv)
{
	if (argc != 3) {
		usage(stderr);
		return 2;
	}
	const char *pa = argv[1], *pb = argv[2];
	struct ckpt__img_header ha, hb;
	uint8_t *ma = NULL, *mb = NULL;
	char err[300] = "";
	struct progress p;
	progress_init(&p, "loading");
	struct ckpt__load_opts lo = { .chain = true, .progress = progress_cb, .progress_arg = &p };
	int rc = ckpt__image_load_anon(pa, &lo, &ha, &ma, err, sizeof(err));
	if (rc) {
		progress_end(&p);
		fprintf(stderr, "%s: %s: %s\n", pa, ckpt_err_name(rc), err);
		return 2;
	}
	rc = ckpt__image_load_anon(pb, &lo, &hb, &mb, err, sizeof(err));
	progress_end(&p);
	if (rc) {
		fprintf(stderr, "%s: %s: %s\n", pb, ckpt_err_name(rc), err);
		munmap(ma, ha.heap_size);
		return 2;
	}
	int status = 0;
	if (ha.page_size != hb.page_size || ha.base != hb.base || ha.heap_size != hb.heap_size) {
		printf("different heaps: base %#" PRIx64 "/%#" PRIx64 ", size %" PRIu64 "/%" PRIu64
		       ", page size %u/%u\n",
		       (uint64_t)ha.base, (uint64_t)hb.base, (uint64_t)ha.heap_size, (uint64_t)hb.heap_size,
		       ha.page_size, hb.page_size);
		status = 1;
	}
	if (ha.page_size == hb.page_size) {
		uint64_t psz = ha.page_size;
		uint64_t n = ha.npages > hb.npages ? ha.npages : hb.npages;
		uint64_t la = ha.heap_size / psz, lb = hb.heap_size / psz;
		uint64_t ndiff = 0, run_start = 0;
		bool in_run = false;
		for (uint64_t i = 0; i <= n; i++) {
			bool d = false;
			if (i < n) {
				/* a page past one heap's reservation differs unless zero */
				static const uint8_t zero[1] = { 0 };
				const uint8_t *a = i < la ? ma + i * psz : NULL, *b = i < lb ? mb + i * psz : NULL;
				if (a && b)
					d = memcmp(a, b, psz) != 0;
				else
					d = (a && (a[0] != zero[0] || memcmp(a, a + 1, psz - 1))) ||
					    (b && (b[0] != zero[0] || memcmp(b, b + 1, psz - 1)));
			}
			if (d) {
				ndiff++;
				if (!in_run) {
					in_run = true;
					run_start = i;
				}
			} else if (in_run) {
				in_run = false;
				if (i - run_start == 1)
					printf("page %" PRIu64 " (%#" PRIx64 ")\n", run_start,
					       (uint64_t)ha.base + run_start * psz);
				else
					printf("pages %" PRIu64 "-%" PRIu64 " (%#" PRIx64 "-%#" PRIx64 ")\n", run_start,
					       i - 1, (uint64_t)ha.base + run_start * psz,
					       (uint64_t)ha.base + i * psz - 1);
			}
		}
		printf("%" PRIu64 " of %" PRIu64 " pages differ\n", ndiff, n);
		if (ndiff)
			status = 1;
	}
	munmap(ma, ha.heap_size);
	munmap(mb, hb.heap_size);
	return status;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		const char *v;
		ckpt_version(&v);
		printf("ckpt (libckpt) %s\n", v);
		return 0;
	}
	if (!strcmp(cmd, "info"))
		return cmd_info(argc - 1, argv + 1);
	if (!strcmp(cmd, "verify"))
		return cmd_verify(argc - 1, argv + 1);
	if (!strcmp(cmd, "merge"))
		return cmd_merge(argc - 1, argv + 1);
	if (!strcmp(cmd, "diff"))
		return cmd_diff(argc - 1, argv + 1);
	if (!strcmp(cmd, "kcheck"))
		return ckpt_cmd_kcheck(argc - 1, argv + 1);
	fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
	usage(stderr);
	return 2;
}
