/* SPDX-License-Identifier: MIT */
/*
 * log.h - one place where ufault reports what went wrong and why. A context
 * logs through its config's callback; code without a context (the kernel
 * probe) logs to the process default (stderr, level from $UFAULT_LOG).
 */
#ifndef UFAULT_LIB_LOG_H
#define UFAULT_LIB_LOG_H

#include <ufault/ufault.h>

struct ufault__log {
	ufault_log_fn fn;
	void *arg;
	enum ufault_log_level level;
};

/* Defaults: stderr, UFAULT_LOG_WARN, overridden by $UFAULT_LOG. */
void ufault__log_init(struct ufault__log *log, const struct ufault_config *cfg);

__attribute__((format(printf, 3, 4))) void
ufault__logf(const struct ufault__log *log, enum ufault_log_level level, const char *fmt, ...);

#define ufault__err(log, ...) ufault__logf((log), UFAULT_LOG_ERROR, __VA_ARGS__)
#define ufault__warn(log, ...) ufault__logf((log), UFAULT_LOG_WARN, __VA_ARGS__)
#define ufault__info(log, ...) ufault__logf((log), UFAULT_LOG_INFO, __VA_ARGS__)
#define ufault__debug(log, ...) ufault__logf((log), UFAULT_LOG_DEBUG, __VA_ARGS__)

#endif
