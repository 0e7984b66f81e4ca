/* SPDX-License-Identifier: MIT */
/*
 * proxy.h - what the proxies (proxy.c) offer inside ufault besides the
 * public calls: the questions the preload shim asks about the regions
 * (before it lets a call through to the kernel, before a fork).
 */
#ifndef UFAULT_LIB_PROXY_H
#define UFAULT_LIB_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ufault/ufault.h>

struct ufault_ctx;

/* Does a region of @ctx overlap [@start, @end)? Under the mm lock, read,
 * over the range: true or false as of one moment. */
bool ufault__ctx_has_region(struct ufault_ctx *ctx, uint64_t start, uint64_t end);

/* Do regions of @ctx cover every byte of [@start, @end)? As above. */
bool ufault__ctx_covered(struct ufault_ctx *ctx, uint64_t start, uint64_t end);

/* A region whose source is a callback: its range, the callback's
 * argument and the source offset of its first byte. */
struct ufault__piece {
	uint64_t start, end, offset;
	void *arg;
};

/* @fn(@arg, piece) for each region of @ctx whose callback source fills
 * with @fill, in address order, under the mm lock, read, over the whole
 * address space: no proxy changes a region meanwhile (a fill may run;
 * @fn must not call ufault, nor fault on a region). */
void ufault__ctx_each_callback_region(struct ufault_ctx *ctx, ufault_fill_fn fill,
				      void (*fn)(void *arg, const struct ufault__piece *p),
				      void *arg);

#endif
