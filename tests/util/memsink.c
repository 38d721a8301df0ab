/*
 * memsink.c - see memsink.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/memsink.h"

static int ms_begin(void *arg, const struct ckpt_sink_info *info)
{
	struct memsink *m = arg;
	m->info = *info;
	m->began++;
	m->pages = 0;
	m->calls = 0;
	memset(m->seen, 0, (m->heap_size / m->page_size) * sizeof(*m->seen));
	/* A full image defines every page: past its extent they are zero. */
	if (!(info->flags & CKPT_SINK_INCREMENTAL))
		memset(m->image, 0, m->heap_size);
	return 0;
}

static int ms_pages(void *arg, uint64_t first, uint32_t n, const void *data)
{
	struct memsink *m = arg;
	if (m->fail_after > 0 && ++m->calls > m->fail_after)
		return m->fail_rc;
	if (m->delay_us)
		usleep(m->delay_us);
	if ((first + n) * m->page_size > m->heap_size) {
		m->out_of_range = 1;
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++)
		if (m->seen[first + i]++)
			m->dup = 1;
	if (data)
		memcpy(m->image + first * m->page_size, data, (size_t)n * m->page_size);
	else
		memset(m->image + first * m->page_size, 0, (size_t)n * m->page_size);
	m->pages += n;
	return 0;
}

static int ms_end(void *arg, int status)
{
	struct memsink *m = arg;
	m->ended++;
	m->end_status = status;
	return 0;
}

int memsink_init(struct memsink *m, size_t heap_size, size_t page_size)
{
	memset(m, 0, sizeof(*m));
	m->heap_size = heap_size;
	m->page_size = page_size;
	m->image = mmap(NULL, heap_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->image == MAP_FAILED)
		return -ENOMEM;
	m->seen = calloc(heap_size / page_size, sizeof(*m->seen));
	if (!m->seen)
		return -ENOMEM;
	m->sink.begin = ms_begin;
	m->sink.pages = ms_pages;
	m->sink.end = ms_end;
	m->sink.arg = m;
	return 0;
}

void memsink_fini(struct memsink *m)
{
	if (m->image && m->image != MAP_FAILED)
		munmap(m->image, m->heap_size);
	free(m->seen);
	m->image = NULL;
	m->seen = NULL;
}
