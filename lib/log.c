// SPDX-License-Identifier: MIT
/*
 * log.c - formatting and routing of log lines, and ufault_strerror().
 * Formats into a stack buffer: no allocation, usable on the fault path.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* $UFAULT_LOG: 0 and *out set, 1 if unset or empty, -1 if invalid. */
static int level_from_env(enum ufault_log_level *out)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	const char *s = getenv("UFAULT_LOG");

	if (!s || !*s)
		return 1;
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum ufault_log_level)i;
			return 0;
		}
	}
	return -1;
}

void ufault__log_init(struct ufault__log *log, const struct ufault_config *cfg)
{
	log->fn = cfg ? cfg->log_fn : NULL;
	log->arg = cfg ? cfg->log_arg : NULL;
	log->level = cfg ? cfg->log_level : UFAULT_LOG_WARN;
	if (level_from_env(&log->level) < 0)
		ufault__logf(log, UFAULT_LOG_WARN,
			     "UFAULT_LOG=%s: expected error, warn, info or debug; ignored",
			     getenv("UFAULT_LOG"));
}

void ufault__logf(const struct ufault__log *log, enum ufault_log_level level, const char *fmt, ...)
{
	static const char *const tags[] = {"error", "warning", "info", "debug"};
	enum ufault_log_level max = UFAULT_LOG_WARN;
	char buf[512];
	va_list ap;

	if (log)
		max = log->level;
	else
		level_from_env(&max);
	if (level > max)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (log && log->fn)
		log->fn(log->arg, level, buf);
	else
		fprintf(stderr, "ufault: %s: %s\n", tags[level], buf);
}

const char *ufault_strerror(int err)
{
	const char *s;

	if (err == 0)
		return "Success";
	if (err == INT_MIN) /* -INT_MIN overflows */
		return "Unknown error";
	s = strerrordesc_np(err < 0 ? -err : err); /* thread-safe, unlike strerror */
	return s ? s : "Unknown error";
}
