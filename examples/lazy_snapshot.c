// SPDX-License-Identifier: MIT
/*
 * lazy_snapshot.c - restore a checkpoint lazily: map fresh memory, register
 * it with a snapshot source and let pages arrive on first touch, the way a
 * VMM restores guest memory or a database maps a cold table. Only the pages
 * actually read are ever copied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ufault/ufault.h>

int main(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), len = 256 * page;
	struct ufault_source src;
	struct ufault_stats st = {.size = sizeof(st)};
	struct ufault_ctx *ctx;
	char *snapshot, *mem;
	int ret;

	/* The checkpoint: in real life read from disk or received over a socket. */
	snapshot = malloc(len);
	if (!snapshot)
		return 1;
	for (size_t i = 0; i < len; i++)
		snapshot[i] = (char)('a' + (i / page) % 26);
	ufault_source_init(&src, UFAULT_SOURCE_SNAPSHOT);
	src.snapshot.data = snapshot;
	src.snapshot.len = len;

	ret = ufault_ctx_create(&ctx, NULL);
	if (ret) {
		fprintf(stderr, "ufault_ctx_create: %s\n", ufault_strerror(ret));
		return 1;
	}
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	ret = ufault_region_register(ctx, mem, len, &src, 0, NULL);
	if (ret) {
		fprintf(stderr, "ufault_region_register: %s\n", ufault_strerror(ret));
		return 1;
	}

	/* Touch every 16th page: only those are filled. */
	for (size_t p = 0; p < 256; p += 16) {
		if (mem[p * page] != snapshot[p * page]) {
			fprintf(stderr, "page %zu: wrong byte\n", p);
			return 1;
		}
	}
	ufault_stats(ctx, &st);
	printf("faults %llu, pages installed %llu, p50 %.1f us\n", (unsigned long long)st.faults,
	       (unsigned long long)st.pages_installed, st.latency_p50_ns / 1000.0);
	ufault_ctx_destroy(ctx);
	munmap(mem, len);
	free(snapshot);
	return 0;
}
