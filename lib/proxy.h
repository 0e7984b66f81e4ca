/* SPDX-License-Identifier: MIT */
/*
 * proxy.h - what the proxies (proxy.c) offer inside ufault besides the
 * public calls: a question the preload shim asks before it lets a call
 * through to the kernel.
 */
#ifndef UFAULT_LIB_PROXY_H
#define UFAULT_LIB_PROXY_H

#include <stdbool.h>
#include <stdint.h>

struct ufault_ctx;

/* Does a region of @ctx overlap [@start, @end)? Under the mm lock, read,
 * over the range: true or false as of one moment. */
bool ufault__ctx_has_region(struct ufault_ctx *ctx, uint64_t start, uint64_t end);

#endif
