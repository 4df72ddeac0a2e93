/*
 * xml_stream.c - libexpat driven stream parser.
 *
 * Owns the expat parser, the stream root element (attributes only), the
 * stanza being built and `pending`, the received bytes from the start of
 * the current stanza.  Byte positions are expat's global byte indexes;
 * pending_base is the index of pending.data[0].
 *
 * Invariant between feeds: pending holds exactly the bytes from the start
 * of the open stanza (or nothing when no stanza is open).
 */
#include "xml_stream.h"

#include <expat.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* A stanza with elements nested deeper than this is dropped. */
#define XS_MAX_DEPTH 256

struct xml_stream {
    XML_Parser parser;
    size_t max_stanza;
    xml_stream_header_cb on_header;
    xml_stream_stanza_cb on_stanza;
    void *arg;

    int depth;
    struct xnode *root;    /* the stream element, attributes only */
    struct xnode *stanza;  /* stanza under construction */
    struct xnode *current; /* innermost open element */
    bool stanza_has_comment;
    int skipping;          /* open elements beyond XS_MAX_DEPTH */
    bool stanza_too_deep;  /* the open stanza had some: drop it */
    long long stanza_start;
    long long fed;         /* total bytes given to expat */
    struct buf pending;
    long long pending_base;

    int status;
    char error[256];
};

static void xs_fail(struct xml_stream *xs, int status, const char *msg)
{
    if (xs->status == XS_OK) {
        xs->status = status;
        snprintf(xs->error, sizeof xs->error, "%s", msg);
    }
    XML_StopParser(xs->parser, XML_FALSE);
}

/* expat has refused duplicate attributes already: append without a search
 * (a search per attribute would be quadratic in their number). */
static struct xnode *xs_make_element(const char *name, const char **attrs)
{
    struct xnode *n = xnode_new_element(name);
    int count = 0;
    while (attrs[2 * count])
        count++;
    if (count) {
        n->attrs = xcalloc((size_t)count, sizeof *n->attrs);
        for (int i = 0; i < count; i++) {
            n->attrs[i].name = xstrdup(attrs[2 * i]);
            n->attrs[i].value = xstrdup(attrs[2 * i + 1]);
        }
        n->nattrs = count;
    }
    return n;
}

static void XMLCALL xs_start(void *ud, const char *name, const char **attrs)
{
    struct xml_stream *xs = ud;
    if (xs->status != XS_OK)
        return;
    long long pos = XML_GetCurrentByteIndex(xs->parser);
    int count = XML_GetCurrentByteCount(xs->parser);
    if (xs->depth == 0) {
        xnode_free(xs->root);
        xs->root = xs_make_element(name, attrs);
        xs->depth = 1;
        if (strcmp(name, "stream:stream") != 0) {
            xs_fail(xs, XS_ERR_XML, "stream root is not <stream:stream>");
            return;
        }
        if (xs->on_header && xs->on_header(xs->arg, xs->root) != 0)
            xs_fail(xs, XS_STOPPED, "stopped after stream header");
        return;
    }
    if (xs->depth >= XS_MAX_DEPTH) {
        /* Deeper than any real stanza (the tree code recurses per level):
         * the elements are not built and the stanza is dropped at its end. */
        xs->skipping++;
        xs->depth++;
        return;
    }
    struct xnode *n = xs_make_element(name, attrs);
    if (xs->depth == 1) {
        xs->stanza_start = pos;
        xs->stanza_has_comment = false;
        n->parent = xs->root;
        xs->stanza = n;
    } else {
        xnode_append(xs->current, n);
    }
    /* Offsets relative to the stanza; raw_end is provisional (empty
     * elements end where their start tag ends). */
    n->raw_start = (size_t)(pos - xs->stanza_start);
    n->raw_end = n->raw_start + (size_t)count;
    xs->current = n;
    xs->depth++;
}

static void xs_deliver_stanza(struct xml_stream *xs)
{
    struct stanza st;
    st.el = xs->stanza;
    PS_ASSERT(xs->stanza_start >= xs->pending_base);
    st.raw = xs->pending.data + (xs->stanza_start - xs->pending_base);
    st.raw_len = xs->stanza->raw_end;
    st.has_comment = xs->stanza_has_comment;
    xs->stanza_has_comment = false;
    PS_ASSERT(xs->stanza_start + (long long)st.raw_len <=
              xs->pending_base + (long long)xs->pending.len);
    int stop = xs->on_stanza ? xs->on_stanza(xs->arg, &st) : 0;
    xnode_free(xs->stanza);
    xs->stanza = NULL;
    xs->current = NULL;
    if (stop)
        xs_fail(xs, XS_STOPPED, "stopped by stanza handler");
}

static void XMLCALL xs_end(void *ud, const char *name)
{
    struct xml_stream *xs = ud;
    (void)name;
    if (xs->status != XS_OK)
        return;
    xs->depth--;
    if (xs->skipping > 0) {
        xs->skipping--;
        xs->stanza_too_deep = true;
        return;
    }
    if (xs->depth == 0) {
        xs_fail(xs, XS_CLOSED, "stream closed by peer");
        return;
    }
    struct xnode *n = xs->current;
    long long pos = XML_GetCurrentByteIndex(xs->parser);
    int count = XML_GetCurrentByteCount(xs->parser);
    if (count > 0)
        n->raw_end = (size_t)(pos + count - xs->stanza_start);
    if (xs->depth == 1) {
        if (n->raw_end > xs->max_stanza) {
            char msg[64];
            snprintf(msg, sizeof msg, "stanza larger than %zu bytes",
                     xs->max_stanza);
            xs_fail(xs, XS_ERR_TOO_BIG, msg);
            return;
        }
        if (xs->stanza_too_deep) {
            log_warn("stanza nested deeper than %d elements: dropped", XS_MAX_DEPTH);
            xnode_free(xs->stanza);
            xs->stanza = NULL;
            xs->current = NULL;
            xs->stanza_too_deep = false;
            return;
        }
        xs_deliver_stanza(xs);
        return;
    }
    xs->current = n->parent;
}

static void XMLCALL xs_text(void *ud, const char *s, int len)
{
    struct xml_stream *xs = ud;
    if (xs->status != XS_OK || xs->depth < 2 || xs->skipping > 0)
        return; /* whitespace between stanzas */
    xnode_append_text(xs->current, s, (size_t)len);
}

/* Comments are dropped from the tree; the stanza's raw bytes keep them, so
 * they must not be forwarded as they are (servers refuse comments). */
static void XMLCALL xs_comment(void *ud, const char *data)
{
    struct xml_stream *xs = ud;
    (void)data;
    if (xs->depth >= 2)
        xs->stanza_has_comment = true;
}

static void XMLCALL xs_doctype(void *ud, const char *name, const char *sysid,
                               const char *pubid, int has_internal)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal;
    xs_fail(ud, XS_ERR_FORBIDDEN, "document type declaration not allowed");
}

static void XMLCALL xs_entity(void *ud, const char *name, int is_param,
                              const char *value, int value_len,
                              const char *base, const char *sysid,
                              const char *pubid, const char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base;
    (void)sysid, (void)pubid, (void)notation;
    xs_fail(ud, XS_ERR_FORBIDDEN, "entity declaration not allowed");
}

static void XMLCALL xs_pi(void *ud, const char *target, const char *data)
{
    (void)target, (void)data;
    xs_fail(ud, XS_ERR_FORBIDDEN, "processing instruction not allowed");
}

struct xml_stream *xml_stream_new(size_t max_stanza_bytes,
                                  xml_stream_header_cb on_header,
                                  xml_stream_stanza_cb on_stanza, void *arg)
{
    struct xml_stream *xs = xcalloc(1, sizeof *xs);
    xs->parser = XML_ParserCreate("UTF-8");
    PS_ASSERT(xs->parser != NULL);
    xs->max_stanza = max_stanza_bytes;
    xs->on_header = on_header;
    xs->on_stanza = on_stanza;
    xs->arg = arg;
    XML_SetUserData(xs->parser, xs);
    XML_SetElementHandler(xs->parser, xs_start, xs_end);
    XML_SetCharacterDataHandler(xs->parser, xs_text);
    XML_SetStartDoctypeDeclHandler(xs->parser, xs_doctype);
    XML_SetEntityDeclHandler(xs->parser, xs_entity);
    XML_SetProcessingInstructionHandler(xs->parser, xs_pi);
    XML_SetCommentHandler(xs->parser, xs_comment);
#if XML_MAJOR_VERSION > 2 || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 6)
    /* Each stanza must be reported as soon as its last byte is fed; expat
     * 2.6 may otherwise defer re-parsing a token split across feeds. */
    (void)XML_SetReparseDeferralEnabled(xs->parser, XML_FALSE);
#endif
    return xs;
}

void xml_stream_free(struct xml_stream *xs)
{
    if (xs == NULL)
        return;
    XML_ParserFree(xs->parser);
    xnode_free(xs->stanza);
    xnode_free(xs->root);
    buf_free(&xs->pending);
    free(xs);
}

/*
 * The index of the first byte pending must keep: the start of the open
 * stanza, or else the start of what expat has not parsed yet (a start
 * tag split across feeds, whose stanza_start will point back into it).
 * Outside a callback expat's current byte index is just past the last
 * parse event.
 */
static long long xs_keep_from(struct xml_stream *xs)
{
    if (xs->stanza)
        return xs->stanza_start;
    long long pos = XML_GetCurrentByteIndex(xs->parser);
    return pos < xs->pending_base ? xs->pending_base : pos;
}

/* Keeps only the bytes expat may still report in pending. */
static void xs_trim_pending(struct xml_stream *xs)
{
    long long keep = xs_keep_from(xs);
    long long drop = keep - xs->pending_base;
    if (drop > 0) {
        buf_consume(&xs->pending, (size_t)drop);
        xs->pending_base = keep;
    }
}

/* Feeds at most one chunk of this size at a time, so the size limit is
 * checked before a huge stanza is buffered whole. */
#define XS_CHUNK 16384

int xml_stream_feed(struct xml_stream *xs, const char *data, size_t len)
{
    if (xs->status != XS_OK)
        return xs->status;
    while (len > 0) {
        size_t n = len < XS_CHUNK ? len : XS_CHUNK;
        buf_append(&xs->pending, data, n);
        xs->fed += (long long)n;
        if (XML_Parse(xs->parser, data, (int)n, XML_FALSE) ==
                XML_STATUS_ERROR && xs->status == XS_OK) {
            char msg[200];
            snprintf(msg, sizeof msg, "%s (line %lu, column %lu)",
                     XML_ErrorString(XML_GetErrorCode(xs->parser)),
                     (unsigned long)XML_GetCurrentLineNumber(xs->parser),
                     (unsigned long)XML_GetCurrentColumnNumber(xs->parser));
            xs->status = XS_ERR_XML;
            snprintf(xs->error, sizeof xs->error, "not well-formed: %s", msg);
        }
        if (xs->status != XS_OK)
            return xs->status;
        xs_trim_pending(xs);
        if ((size_t)(xs->fed - xs_keep_from(xs)) > xs->max_stanza) {
            xs->status = XS_ERR_TOO_BIG;
            snprintf(xs->error, sizeof xs->error,
                     "stanza larger than %zu bytes", xs->max_stanza);
            return xs->status;
        }
        data += n;
        len -= n;
    }
    return XS_OK;
}

const char *xml_stream_error(const struct xml_stream *xs)
{
    return xs->error[0] ? xs->error : "no error";
}

const char *stanza_raw_of(const struct stanza *st, const struct xnode *n,
                          size_t *len)
{
    PS_ASSERT(n->raw_end <= st->raw_len && n->raw_start <= n->raw_end);
    *len = n->raw_end - n->raw_start;
    return st->raw + n->raw_start;
}
