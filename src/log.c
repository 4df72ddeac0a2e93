/*
 * log.c - levelled logging.  Owns the log FILE (stderr or a file path).
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_current_level = LOG_LEVEL_INFO;

static FILE *log_file;
static char *log_path;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

int log_open(const char *path)
{
    free(log_path);
    log_path = (path && *path) ? xstrdup(path) : NULL;
    return log_reopen();
}

int log_reopen(void)
{
    if (log_path == NULL) {
        if (log_file && log_file != stderr)
            fclose(log_file);
        log_file = stderr;
        return 0;
    }
    FILE *f = fopen(log_path, "a");
    if (f == NULL)
        return -1;
    setvbuf(f, NULL, _IOLBF, 0);
    if (log_file && log_file != stderr)
        fclose(log_file);
    log_file = f;
    return 0;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    int saved_errno = errno;
    FILE *f = log_file ? log_file : stderr;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(f, "%s.%03dZ [%d] %s: %s\n", stamp, (int)(tv.tv_usec / 1000),
            (int)getpid(), level_names[level], line);
    fflush(f);
    errno = saved_errno;
}
