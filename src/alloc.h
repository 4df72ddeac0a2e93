/*
 * alloc.h - allocation wrappers and always-on assertions.
 *
 * Out-of-memory aborts inside these wrappers (PostgreSQL palloc style), so
 * call sites never test for NULL.  Every pointer they return is freed with
 * free().
 */
#ifndef PUBSUBD_ALLOC_H
#define PUBSUBD_ALLOC_H

#include <stddef.h>
#include <stdlib.h>

#define MUSTCHECK __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* Status codes shared by every fallible function (nginx style). */
enum {
    PS_OK = 0,
    PS_ERROR = -1,
    PS_AGAIN = -2,
};

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a string the caller frees with free(). */
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

void assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

/* Always on, never with side effects inside. */
#define PS_ASSERT(e) ((e) ? (void)0 : assert_fail(#e, __FILE__, __LINE__))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
