/*
 * xml_stream.h - incremental parser for one XMPP stream (libexpat).
 *
 * Feed it bytes as they arrive, in chunks of any size.  It reports the
 * stream header once, then each complete top-level element (a stanza) as
 * a tree plus the exact bytes it was received as.  DTDs, entity
 * declarations and processing instructions are refused (RFC 6120 §11.1),
 * and a stanza larger than max_stanza_bytes is refused before it is
 * buffered whole.
 */
#ifndef PUBSUBD_XML_STREAM_H
#define PUBSUBD_XML_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "xnode.h"

/* A complete stanza.  Everything is borrowed for the duration of the
 * callback: copy what must outlive it. */
struct stanza {
    struct xnode *el;   /* the top-level element; its parent is the stream */
    const char *raw;    /* the bytes it arrived as */
    size_t raw_len;
    bool has_comment;   /* raw holds an XML comment (the tree does not) */
};

enum xml_stream_status {
    XS_OK = 0,
    XS_ERR_XML = -1,       /* not well-formed */
    XS_ERR_TOO_BIG = -2,   /* stanza over the limit */
    XS_ERR_FORBIDDEN = -3, /* DTD, entity or processing instruction */
    XS_STOPPED = -4,       /* a callback asked to stop */
    XS_CLOSED = -5,        /* the peer closed the stream (</stream:stream>) */
};

/* Called when the stream header has been read; root carries its
 * attributes.  Return 0 to go on, non-zero to stop. */
typedef int (*xml_stream_header_cb)(void *arg, const struct xnode *root);
/* Called for each stanza.  Return 0 to go on, non-zero to stop. */
typedef int (*xml_stream_stanza_cb)(void *arg, struct stanza *st);

struct xml_stream;

struct xml_stream *xml_stream_new(size_t max_stanza_bytes,
                                  xml_stream_header_cb on_header,
                                  xml_stream_stanza_cb on_stanza, void *arg);
void xml_stream_free(struct xml_stream *xs);

/* Parses len bytes.  Returns XS_OK or one of the errors above; after an
 * error the stream is dead and must be freed. */
int xml_stream_feed(struct xml_stream *xs, const char *data, size_t len)
    MUSTCHECK;
/* A description of the last error ("not well-formed (line 1, column 5)"). */
const char *xml_stream_error(const struct xml_stream *xs);

/* Bytes of a sub-element's raw text inside st. */
const char *stanza_raw_of(const struct stanza *st, const struct xnode *n,
                          size_t *len);

#endif
