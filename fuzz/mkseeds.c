/*
 * mkseeds.c - writes the image harness's seed corpus (fuzz/corpus/image):
 * real images made by the engine (ckpt_begin to a path), as the fuzzer's
 * starting points.
 *
 *   build/fuzz/mkseeds DIR
 *
 * Seeds: full images stored and zstd-compressed, an empty-ish heap, and
 * incremental chains of two and three images.  Chain files are renamed to
 * the harness's names (f0 tip, f1 its parent, ...) by rewriting the
 * parent_name fields and re-sealing (fixup.h).  Each image is packed in the
 * harness's container ([mode][u32 len][bytes]...) under several mode
 * bytes, so the fuzzer starts from raw, re-sealed and restore paths alike.
 * Run by `make fuzz-seeds`; the output is committed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "image.h"
#include "fixup.h"

#define BASE ((void *)0x5b0000000000ull)

static const char *g_out;
static char g_tmp[64];

static void die(const char *what, int rc)
{
	fprintf(stderr, "mkseeds: %s: %s (%s)\n", what, ckpt_strerror(rc), ckpt_err_name(rc));
	exit(1);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rbe");
	if (!f)
		die(path, -errno);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc((size_t)n);
	if (!b || fread(b, 1, (size_t)n, f) != (size_t)n)
		die(path, -EIO);
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* Points the header's parent at @name ("" for none) and re-seals. */
static void rename_parent(uint8_t *img, size_t len, const char *name)
{
	struct ckpt__img_header h;
	memcpy(&h, img, sizeof(h));
	if (h.flags & CKPT__IMG_INCREMENTAL) {
		memset(h.parent_name, 0, sizeof(h.parent_name));
		snprintf(h.parent_name, sizeof(h.parent_name), "%s", name);
		h.parent_name_len = (uint32_t)strlen(name);
	}
	memcpy(img, &h, sizeof(h));
	fz_fixup(img, len, FZ_FIX_CHECKSUMS | FZ_FIX_STRUCTURE);
}

static void emit(const char *name, unsigned mode, uint8_t **files, size_t *lens, int n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s-m%02x", g_out, name, mode);
	FILE *f = fopen(path, "wbe");
	if (!f)
		die(path, -errno);
	uint8_t m = (uint8_t)mode;
	fwrite(&m, 1, 1, f);
	for (int i = 0; i < n; i++) {
		uint32_t l = (uint32_t)lens[i];
		fwrite(&l, 4, 1, f);
		fwrite(files[i], 1, lens[i], f);
	}
	fclose(f);
}

static void emit_modes(const char *name, uint8_t **files, size_t *lens, int n)
{
	static const unsigned modes[] = { 0x00, 0x03, 0x07, 0x0f };
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		emit(name, modes[i], files, lens, n);
}

static ckpt_heap *make_heap(unsigned flags)
{
	struct ckpt_heap_opts ho;
	ckpt_heap_opts_init(&ho);
	ho.size = 1u << 20;
	ho.base = BASE;
	ho.flags = flags;
	ckpt_heap *h;
	int rc = ckpt_heap_create(&ho, &h);
	if (rc)
		die("ckpt_heap_create", rc);
	return h;
}

static void checkpoint(ckpt_heap *h, const char *path, int level)
{
	struct ckpt_dest d = { .kind = CKPT_DEST_PATH, .path = path };
	struct ckpt_begin_opts o;
	ckpt_begin_opts_init(&o);
	o.flags = CKPT_BEGIN_NO_FSYNC;
	o.zstd_level = level;
	int rc = ckpt_begin(h, &d, &o);
	if (rc)
		die("ckpt_begin", rc);
	rc = ckpt_wait(h);
	if (rc)
		die("ckpt_wait", rc);
}

/* a few kinds of page: text, counters, zero */
static void scribble(ckpt_heap *h, unsigned salt)
{
	uint8_t *a = ckpt_alloc(h, 3 * 4096 + 100);
	uint8_t *b = ckpt_alloc(h, 40);
	if (!a || !b)
		die("ckpt_alloc", -ENOMEM);
	for (size_t i = 0; i < 4096; i++)
		a[i] = (uint8_t)"libckpt seed page "[(i + salt) % 18];
	for (size_t i = 4096; i < 2 * 4096; i += 8)
		memcpy(a + i, &(uint64_t){ i * 2654435761u + salt }, 8);
	/* third page stays zero */
	memset(a + 3 * 4096, (int)salt, 100);
	snprintf((char *)b, 40, "root %u", salt);
	ckpt_root_set(h, b);
}

static void full_image(const char *name, int level, bool empty)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/img", g_tmp);
	ckpt_heap *h = make_heap(0);
	if (!empty)
		scribble(h, 7);
	checkpoint(h, path, level);
	ckpt_heap_destroy(h);
	size_t len;
	uint8_t *img = slurp(path, &len);
	uint8_t *files[1] = { img };
	emit_modes(name, files, &len, 1);
	free(img);
	unlink(path);
}

static void chain(const char *name, int links, int level)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/c", g_tmp);
	ckpt_heap *h = make_heap(CKPT_HEAP_INCREMENTAL);
	for (int k = 0; k < links; k++) {
		scribble(h, 11 + (unsigned)k);
		checkpoint(h, path, level);
	}
	ckpt_heap_destroy(h);
	/* the tip is at path; its parents are path.gNNNNNN, newest first */
	uint8_t *files[4];
	size_t lens[4];
	files[0] = slurp(path, &lens[0]);
	for (int k = 1; k < links; k++) {
		char gp[160];
		snprintf(gp, sizeof(gp), "%s.g%06d", path, links - k);
		files[k] = slurp(gp, &lens[k]);
		unlink(gp);
	}
	for (int k = 0; k < links; k++) {
		char pn[8];
		snprintf(pn, sizeof(pn), "f%d", k + 1);
		rename_parent(files[k], lens[k], pn);
	}
	emit_modes(name, files, lens, links);
	for (int k = 0; k < links; k++)
		free(files[k]);
	unlink(path);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds DIR\n");
		return 2;
	}
	g_out = argv[1];
	mkdir(g_out, 0755);
	snprintf(g_tmp, sizeof(g_tmp), "/tmp/ckpt-mkseeds.XXXXXX");
	if (!mkdtemp(g_tmp))
		die("mkdtemp", -errno);
	full_image("full-stored", 0, false);
	full_image("full-zstd1", 1, false);
	full_image("full-zstd19", 19, false);
	full_image("empty", 0, true);
	chain("chain2-stored", 2, 0);
	chain("chain3-zstd", 3, 3);
	rmdir(g_tmp);
	return 0;
}
