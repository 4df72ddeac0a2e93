/*
 * log.h - levelled logging to stderr (or a file, reopened on SIGHUP).
 *
 * The macros test the level before formatting anything.  Message style:
 * lower case, no final period, context first ("node %s: ...").  Never pass
 * secrets (component secret, database password) to these functions.
 */
#ifndef PUBSUBD_LOG_H
#define PUBSUBD_LOG_H

#include "alloc.h"

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

extern enum log_level log_current_level;

/* Returns 0 and sets *out, or -1 when name is not a level name. */
int log_level_parse(const char *name, enum log_level *out) MUSTCHECK;
/* path NULL or "" means stderr.  Returns 0 or -1 (errno set). */
int log_open(const char *path) MUSTCHECK;
/* Reopens the log file (SIGHUP, after rotation).  Returns 0 or -1. */
int log_reopen(void) MUSTCHECK;
void log_write(enum log_level level, const char *fmt, ...) PRINTF_LIKE(2, 3);

#define LOG_AT(lvl, ...)                                                      \
    do {                                                                      \
        if ((lvl) <= log_current_level)                                       \
            log_write((lvl), __VA_ARGS__);                                    \
    } while (0)
#define log_error(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
