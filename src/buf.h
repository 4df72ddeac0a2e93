/*
 * buf.h - a growable byte buffer with XML escaping helpers.
 *
 * A struct buf owns its data; buf_free() releases it.  data is always
 * NUL-terminated after any append so it can be used as a C string.
 */
#ifndef PUBSUBD_BUF_H
#define PUBSUBD_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include "alloc.h"

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Appends s with the five XML special characters escaped (text and
 * attribute values alike). */
void buf_put_escaped(struct buf *b, const char *s);
void buf_put_escaped_n(struct buf *b, const char *s, size_t n);
/* Appends s with a backslash before each '"' and '\\' and, when
 * json_controls, the bytes below 0x20 as \u00XX: the inside of a JSON string
 * (json_controls) or of a quoted PostgreSQL array element.  Runs without
 * special characters are copied as one piece. */
void buf_put_backslashed(struct buf *b, const char *s, bool json_controls);
/* Appends s as a JSON string literal (quoted, escaped). */
void buf_put_json_string(struct buf *b, const char *s);
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Hands the data to the caller (free with free()) and resets b. */
char *buf_steal(struct buf *b);

#endif
