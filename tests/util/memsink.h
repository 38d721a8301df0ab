/*
 * memsink.h - an in-memory checkpoint sink for tests: it applies the page
 * stream to a private copy of the heap and counts how often each page came,
 * so a test can compare the image with its own reference byte for byte and
 * check that every page came exactly once.  Successive (incremental)
 * checkpoints into the same memsink apply on top of each other.
 */
#ifndef CKPT_MEMSINK_H
#define CKPT_MEMSINK_H

#include <stdint.h>
#include <stddef.h>

#include "ckpt.h"

struct memsink {
	struct ckpt_sink sink;
	uint8_t *image;        /* heap_size bytes */
	uint32_t *seen;        /* per page, emissions in the current checkpoint */
	size_t heap_size;
	size_t page_size;
	struct ckpt_sink_info info;
	int began, ended, end_status;
	int fail_after;        /* > 0: pages() fails with fail_rc after this many calls */
	int fail_rc;
	int calls;
	unsigned delay_us;     /* per pages() call, to stretch a checkpoint */
	uint64_t pages;        /* pages received in the current checkpoint */
	int dup;               /* a page came twice */
	int out_of_range;
};

int memsink_init(struct memsink *m, size_t heap_size, size_t page_size);
void memsink_fini(struct memsink *m);

#endif
