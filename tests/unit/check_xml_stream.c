/*
 * check_xml_stream.c - unit tests for src/xml_stream.c and the parts of
 * src/xnode.c stanzas are used through: the incremental XMPP stream
 * parser (header, stanzas as trees plus their exact received bytes, the
 * size limit, forbidden XML, errors, the closing tag) and namespace
 * resolution / standalone serialisation of payloads.
 *
 * The central property: however a stream is cut into feeds (whole, byte by
 * byte, random chunk sizes), the stanzas delivered are the same, and the
 * raw bytes of every stanza and sub-element are exactly the bytes of the
 * input.
 *
 * One suite, one test case per behaviour; Check's fork mode turns a crash
 * (an always-on assertion in src/) into a failed test.
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xml_stream.h"
#include "xnode.h"
#include "unit.h"

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_ACCEPT "jabber:component:accept"
#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_ATOM "http://www.w3.org/2005/Atom"

/* ---- the recorded stream ------------------------------------------------ */

/* What a server sends to a component (XEP-0114), as Prosody writes it. */
#define HEADER                                                                \
    "<?xml version='1.0'?>\n"                                                 \
    "<stream:stream xmlns:stream='" NS_STREAMS "' xmlns='" NS_ACCEPT "'"      \
    " from=\"pubsub.example.org\" id='3BF96D32-a1&amp;b'>"
#define HEADER_ID "3BF96D32-a1&b"

/* The publish payload: namespaced, entities, CDATA, both quote styles,
 * nesting, an empty element, multi-byte UTF-8. */
#define PAYLOAD                                                               \
    "<entry xmlns='" NS_ATOM "' xml:lang=\"en\">\n"                           \
    "        <title type='text'>Soliloquy &amp; more &lt;3 &gt; &#x263A;"    \
    "</title>\n"                                                              \
    "        <summary><![CDATA[To be, or not to be: <that> is & the "         \
    "question]]></summary>\n"                                                 \
    "        <link rel='alternate' type=\"text/html\""                        \
    " href='http://denmark.lit/atom03?a=1&amp;b=\"2\"'/>\n"                   \
    "        <x/>\n"                                                          \
    "        <content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>" \
    "<p>Gr\xc3\xbc\xc3\x9f" "e, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e, "       \
    "\xf0\x9f\x8e\x89 \xe2\x80\x94 \xe2\x80\x9cquoted\xe2\x80\x9d "           \
    "<b>bold</b> tail</p></div></content>\n"                                  \
    "        <id>tag:denmark.lit,2003:entry-32397</id>\n"                     \
    "      </entry>"

#define S_HANDSHAKE "<handshake/>"
#define S_DISCO                                                               \
    "<iq type='get' id='disco1' from='romeo@example.net/orchard'"             \
    " to='pubsub.example.org'>"                                               \
    "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
#define S_PUBLISH                                                             \
    "<iq type=\"set\" id='pub1' from='juliet@example.com/balcony'"            \
    " to='pubsub.example.org'>\n"                                             \
    "  <pubsub xmlns='" NS_PUBSUB "'>\n"                                      \
    "    <publish node='princely_musings'>\n"                                 \
    "      <item id=\"ae890ac52d0df67ed7cfdf51b644e901\">" PAYLOAD "</item>\n" \
    "    </publish>\n"                                                        \
    "  </pubsub>\n"                                                           \
    "</iq>"
#define S_RESULT                                                              \
    "<iq type='result' id='pb-1' from='example.org' to='pubsub.example.org'/>"
#define S_MESSAGE                                                             \
    "<message from='juliet@example.com/balcony' to='pubsub.example.org'"      \
    " type='chat' id=\"m1\"><body>hi &quot;there&quot; &apos;you&apos; "      \
    "\xc3\xb1</body><x xmlns='jabber:x:oob'><url>http://a/?x=1&amp;y=2"       \
    "</url></x></message>"
#define S_ERROR                                                               \
    "<iq type='error' id='sub1' from='example.org' to='pubsub.example.org'>"  \
    "<error type='cancel'><service-unavailable"                               \
    " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
#define TRAILER "</stream:stream>"

static const char *const stanzas[] = {
    S_HANDSHAKE, S_DISCO, S_PUBLISH, S_RESULT, S_MESSAGE, S_ERROR,
};
static const char *const stanza_names[] = {
    "handshake", "iq", "iq", "iq", "message", "iq",
};
/* Whitespace before each stanza and before the trailer. */
static const char *const gaps[] = {"", "\n", "\n\t  \r\n", " ", "", "\n\n", "\n"};
#define NSTANZAS (sizeof stanzas / sizeof stanzas[0])

/* The whole recorded stream (caller frees with buf_free). */
static struct buf recorded_stream(void)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, HEADER);
    for (size_t i = 0; i < NSTANZAS; i++) {
        buf_puts(&b, gaps[i]);
        buf_puts(&b, stanzas[i]);
    }
    buf_puts(&b, gaps[NSTANZAS]);
    buf_puts(&b, TRAILER);
    return b;
}

/* ---- what a parse delivered --------------------------------------------- */

#define MAX_STANZAS 256

struct record {
    int headers;
    char *header_id;
    int n;
    char *name[MAX_STANZAS];
    struct buf ser[MAX_STANZAS];   /* xnode_serialize of the tree */
    struct buf raw[MAX_STANZAS];   /* st->raw */
    struct buf elraw[MAX_STANZAS]; /* stanza_raw_of of every element */
    struct buf payload_raw;        /* raw of the first publish payload */
    bool payload_seen;
    int stop_at_stanza;            /* non-zero: stop after this many */
    bool stop_at_header;
};

static void record_free(struct record *r)
{
    free(r->header_id);
    for (int i = 0; i < r->n; i++) {
        free(r->name[i]);
        buf_free(&r->ser[i]);
        buf_free(&r->raw[i]);
        buf_free(&r->elraw[i]);
    }
    buf_free(&r->payload_raw);
    memset(r, 0, sizeof *r);
}

static int on_header(void *arg, const struct xnode *root)
{
    struct record *r = arg;
    r->headers++;
    ck_assert_str_eq(root->name, "stream:stream");
    const char *id = xnode_attr(root, "id");
    free(r->header_id);
    r->header_id = strdup(id ? id : "(none)");
    return r->stop_at_header ? 1 : 0;
}

/* Appends "len:bytes\n" for n and every element below it, in document
 * order, checking that each range looks like the element. */
static void dump_raw(const struct stanza *st, const struct xnode *n,
                     struct buf *out)
{
    size_t len;
    const char *raw = stanza_raw_of(st, n, &len);
    ck_assert_msg(raw >= st->raw && raw + len <= st->raw + st->raw_len,
                  "raw of <%s> outside its stanza", n->name);
    ck_assert_msg(len >= strlen(n->name) + 3 && raw[0] == '<' &&
                      strncmp(raw + 1, n->name, strlen(n->name)) == 0 &&
                      raw[len - 1] == '>',
                  "raw of <%s> is \"%.*s\"", n->name, (int)len, raw);
    if (n->first == NULL || raw[len - 2] == '/') {
        /* An empty element: "<x/>" or "<x></x>". */
    } else {
        char close[256];
        snprintf(close, sizeof close, "</%s>", n->name);
        size_t cl = strlen(close);
        ck_assert_msg(len > cl && memcmp(raw + len - cl, close, cl) == 0,
                      "raw of <%s> does not end with %s: \"%.*s\"", n->name,
                      close, (int)len, raw);
    }
    buf_printf(out, "%zu:", len);
    buf_append(out, raw, len);
    buf_puts(out, "\n");
    for (const struct xnode *c = n->first; c; c = c->next)
        if (c->name)
            dump_raw(st, c, out);
}

/* The payload of a publish stanza, or NULL. */
static const struct xnode *publish_payload(const struct xnode *iq)
{
    const struct xnode *ps = xnode_child(iq, "pubsub", NS_PUBSUB);
    const struct xnode *pub = ps ? xnode_child(ps, "publish", NS_PUBSUB) : NULL;
    const struct xnode *item = pub ? xnode_child(pub, "item", NS_PUBSUB) : NULL;
    return item ? xnode_child(item, NULL, NULL) : NULL;
}

static int on_stanza(void *arg, struct stanza *st)
{
    struct record *r = arg;
    ck_assert_msg(r->n < MAX_STANZAS, "too many stanzas");
    ck_assert_ptr_nonnull(st->el);
    ck_assert_ptr_nonnull(st->raw);
    int i = r->n++;
    r->name[i] = strdup(st->el->name);
    memset(&r->ser[i], 0, sizeof r->ser[i]);
    memset(&r->raw[i], 0, sizeof r->raw[i]);
    memset(&r->elraw[i], 0, sizeof r->elraw[i]);
    xnode_serialize(st->el, &r->ser[i]);
    buf_append(&r->raw[i], st->raw, st->raw_len);
    dump_raw(st, st->el, &r->elraw[i]);
    const struct xnode *payload = publish_payload(st->el);
    if (payload && !r->payload_seen) {
        size_t len;
        const char *raw = stanza_raw_of(st, payload, &len);
        buf_append(&r->payload_raw, raw, len);
        r->payload_seen = true;
    }
    return r->stop_at_stanza && r->n >= r->stop_at_stanza ? 1 : 0;
}

/* ---- feeding ------------------------------------------------------------- */

/* A small deterministic generator (xorshift32), so failures reproduce. */
static uint32_t rng_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/*
 * Feeds data in chunks whose sizes come from next_size (NULL: one feed).
 * Every feed but the one that ends the stream must return XS_OK; returns
 * the final status and stores in *consumed how many bytes had been fed
 * when it came.
 */
static int feed_all(struct xml_stream *xs, const char *data, size_t len,
                    size_t (*next_size)(void *), void *size_arg,
                    size_t *consumed)
{
    size_t off = 0;
    int rc = XS_OK;
    while (off < len) {
        size_t n = next_size ? next_size(size_arg) : len;
        if (n == 0)
            n = 1;
        if (n > len - off)
            n = len - off;
        rc = xml_stream_feed(xs, data + off, n);
        off += n;
        if (rc != XS_OK)
            break;
    }
    if (consumed)
        *consumed = off;
    return rc;
}

static size_t size_fixed(void *arg)
{
    return *(size_t *)arg;
}

static size_t size_random(void *arg)
{
    uint32_t r = rng_next(arg);
    switch (r % 8) {
    case 0:
        return 1 + (r >> 8) % 4;      /* tiny */
    case 1:
        return 1 + (r >> 8) % 2048;   /* large */
    default:
        return 1 + (r >> 8) % 97;     /* typical */
    }
}

/* Parses data with the given chunking into r; returns the final status. */
static int parse_into(struct record *r, size_t limit, const char *data,
                      size_t len, size_t (*next_size)(void *), void *size_arg)
{
    struct xml_stream *xs = xml_stream_new(limit, on_header, on_stanza, r);
    int rc = feed_all(xs, data, len, next_size, size_arg, NULL);
    xml_stream_free(xs);
    return rc;
}

/* Asserts r is what the recorded stream must give, and that it equals ref
 * (when ref is not NULL) tree for tree and byte for byte. */
static void check_recorded(const struct record *r, const struct record *ref,
                           const char *mode)
{
    ck_assert_msg(r->headers == 1, "%s: %d headers", mode, r->headers);
    ck_assert_msg(r->header_id && strcmp(r->header_id, HEADER_ID) == 0,
                  "%s: header id \"%s\"", mode, r->header_id);
    ck_assert_msg(r->n == (int)NSTANZAS, "%s: %d stanzas, expected %zu",
                  mode, r->n, NSTANZAS);
    for (size_t i = 0; i < NSTANZAS; i++) {
        ck_assert_msg(strcmp(r->name[i], stanza_names[i]) == 0,
                      "%s: stanza %zu is <%s>", mode, i, r->name[i]);
        ck_assert_msg(r->raw[i].len == strlen(stanzas[i]) &&
                          memcmp(r->raw[i].data, stanzas[i],
                                 r->raw[i].len) == 0,
                      "%s: raw of stanza %zu is\n\"%.*s\"\nexpected\n\"%s\"",
                      mode, i, (int)r->raw[i].len, r->raw[i].data,
                      stanzas[i]);
        if (ref) {
            ck_assert_msg(strcmp(r->ser[i].data, ref->ser[i].data) == 0,
                          "%s: stanza %zu serialises as\n%s\nexpected\n%s",
                          mode, i, r->ser[i].data, ref->ser[i].data);
            ck_assert_msg(strcmp(r->elraw[i].data, ref->elraw[i].data) == 0,
                          "%s: element ranges of stanza %zu differ:\n%s\n"
                          "expected\n%s",
                          mode, i, r->elraw[i].data, ref->elraw[i].data);
        }
    }
    ck_assert_msg(r->payload_seen, "%s: no publish payload", mode);
    ck_assert_msg(strcmp(r->payload_raw.data, PAYLOAD) == 0,
                  "%s: payload raw is\n\"%s\"\nexpected\n\"%s\"", mode,
                  r->payload_raw.data, PAYLOAD);
}

/* ---- the recorded stream, cut three ways -------------------------------- */

START_TEST(test_recorded_whole)
{
    struct buf in = recorded_stream();
    struct record r = {0};
    int rc = parse_into(&r, 1048576, in.data, in.len, NULL, NULL);
    ck_assert_int_eq(rc, XS_CLOSED);
    check_recorded(&r, NULL, "whole");
    /* Serialisation is canonical: single quotes, the five entities. */
    ck_assert_str_eq(r.ser[0].data, S_HANDSHAKE);
    ck_assert_str_eq(r.ser[1].data, S_DISCO);
    ck_assert_str_eq(r.ser[3].data, S_RESULT);
    ck_assert_msg(strstr(r.ser[4].data,
                         "<body>hi &quot;there&quot; &apos;you&apos; \xc3\xb1"
                         "</body>") != NULL,
                  "message serialises as %s", r.ser[4].data);
    static const char *const escaped[] = {
        "<title type='text'>Soliloquy &amp; more &lt;3 &gt; \xe2\x98\xba"
        "</title>",
        "<summary>To be, or not to be: &lt;that&gt; is &amp; the question"
        "</summary>",
        "<link rel='alternate' type='text/html'"
        " href='http://denmark.lit/atom03?a=1&amp;b=&quot;2&quot;'/>",
        "<x/>",
        "<entry xmlns='" NS_ATOM "' xml:lang='en'>",
    };
    for (size_t i = 0; i < sizeof escaped / sizeof escaped[0]; i++)
        ck_assert_msg(strstr(r.ser[2].data, escaped[i]) != NULL,
                      "publish serialises as\n%s\nwithout\n%s",
                      r.ser[2].data, escaped[i]);
    record_free(&r);
    buf_free(&in);
}
END_TEST

START_TEST(test_recorded_byte_by_byte)
{
    struct buf in = recorded_stream();
    struct record ref = {0}, r = {0};
    ck_assert_int_eq(parse_into(&ref, 1048576, in.data, in.len, NULL, NULL),
                     XS_CLOSED);
    struct xml_stream *xs = xml_stream_new(1048576, on_header, on_stanza, &r);
    for (size_t i = 0; i < in.len; i++) {
        int rc = xml_stream_feed(xs, in.data + i, 1);
        if (i + 1 < in.len)
            ck_assert_msg(rc == XS_OK, "byte %zu: status %d (%s)", i, rc,
                          xml_stream_error(xs));
        else
            ck_assert_msg(rc == XS_CLOSED, "last byte: status %d", rc);
    }
    xml_stream_free(xs);
    check_recorded(&r, &ref, "byte by byte");
    record_free(&r);
    record_free(&ref);
    buf_free(&in);
}
END_TEST

START_TEST(test_recorded_random_chunks)
{
    struct buf in = recorded_stream();
    struct record ref = {0};
    ck_assert_int_eq(parse_into(&ref, 1048576, in.data, in.len, NULL, NULL),
                     XS_CLOSED);
    for (uint32_t seed = 1; seed <= 400; seed++) {
        struct record r = {0};
        uint32_t state = seed * 2654435761u;
        int rc = parse_into(&r, 1048576, in.data, in.len, size_random, &state);
        char mode[64];
        snprintf(mode, sizeof mode, "random chunks, seed %u", seed);
        ck_assert_msg(rc == XS_CLOSED, "%s: status %d", mode, rc);
        check_recorded(&r, &ref, mode);
        record_free(&r);
    }
    /* Every fixed chunk size up to a few stanzas long. */
    for (size_t size = 2; size <= 700; size++) {
        struct record r = {0};
        int rc = parse_into(&r, 1048576, in.data, in.len, size_fixed, &size);
        char mode[64];
        snprintf(mode, sizeof mode, "chunks of %zu bytes", size);
        ck_assert_msg(rc == XS_CLOSED, "%s: status %d", mode, rc);
        check_recorded(&r, &ref, mode);
        record_free(&r);
    }
    record_free(&ref);
    buf_free(&in);
}
END_TEST

/* A feed much larger than any internal read size, with the stanzas at
 * every alignment. */
START_TEST(test_large_single_feed)
{
    const size_t copies = 40;
    const size_t stanza_len = strlen(S_PUBLISH);
    for (size_t shift = 0; shift < stanza_len + 1; shift += 7) {
        struct buf in = BUF_INIT;
        buf_puts(&in, HEADER);
        for (size_t k = 0; k < shift; k++)
            buf_puts(&in, " ");
        for (size_t i = 0; i < copies; i++) {
            buf_puts(&in, S_PUBLISH);
            buf_puts(&in, i % 3 ? "\n" : "");
        }
        struct record r = {0};
        struct xml_stream *xs = xml_stream_new(1048576, on_header, on_stanza,
                                               &r);
        int rc = xml_stream_feed(xs, in.data, in.len);
        ck_assert_msg(rc == XS_OK, "shift %zu: status %d (%s)", shift, rc,
                      xml_stream_error(xs));
        xml_stream_free(xs);
        ck_assert_msg(r.n == (int)copies, "shift %zu: %d stanzas", shift, r.n);
        for (size_t i = 0; i < copies; i++)
            ck_assert_msg(strcmp(r.raw[i].data, S_PUBLISH) == 0,
                          "shift %zu: stanza %zu raw differs", shift, i);
        ck_assert_str_eq(r.payload_raw.data, PAYLOAD);
        record_free(&r);
        buf_free(&in);
    }
}
END_TEST

/* ---- the trees ----------------------------------------------------------- */

static struct buf text_of(const struct xnode *n)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "");
    xnode_text(n, &b);
    return b;
}

static void assert_text(const struct xnode *n, const char *want)
{
    ck_assert_ptr_nonnull(n);
    struct buf t = text_of(n);
    ck_assert_msg(strcmp(t.data, want) == 0, "<%s> text is \"%s\", expected "
                  "\"%s\"", n->name, t.data, want);
    buf_free(&t);
}

static int check_publish_tree(void *arg, struct stanza *st)
{
    int *calls = arg;
    ++*calls;
    const struct xnode *iq = st->el;
    ck_assert_str_eq(iq->name, "iq");
    ck_assert_str_eq(xnode_attr(iq, "type"), "set");
    ck_assert_str_eq(xnode_attr(iq, "from"), "juliet@example.com/balcony");
    ck_assert_str_eq(xnode_ns(iq), NS_ACCEPT);
    ck_assert_ptr_nonnull(iq->parent);
    ck_assert_str_eq(iq->parent->name, "stream:stream");

    const struct xnode *entry = publish_payload(iq);
    ck_assert_ptr_nonnull(entry);
    ck_assert_str_eq(entry->name, "entry");
    ck_assert_str_eq(xnode_ns(entry), NS_ATOM);
    ck_assert_str_eq(xnode_attr(entry, "xml:lang"), "en");
    ck_assert(xnode_is_self_contained(entry));
    ck_assert_int_eq(xnode_count_elements(entry), 6);

    const struct xnode *title = xnode_child(entry, "title", NS_ATOM);
    assert_text(title, "Soliloquy & more <3 > \xe2\x98\xba");
    ck_assert_str_eq(xnode_attr(title, "type"), "text");
    assert_text(xnode_child(entry, "summary", NS_ATOM),
                "To be, or not to be: <that> is & the question");
    const struct xnode *link = xnode_child(entry, "link", NS_ATOM);
    ck_assert_ptr_nonnull(link);
    ck_assert_str_eq(xnode_attr(link, "type"), "text/html");
    ck_assert_str_eq(xnode_attr(link, "href"),
                     "http://denmark.lit/atom03?a=1&b=\"2\"");
    ck_assert_ptr_null(link->first);
    const struct xnode *x = xnode_child(entry, "x", NS_ATOM);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_null(x->first);
    size_t len;
    const char *raw = stanza_raw_of(st, x, &len);
    ck_assert_int_eq((int)len, 4);
    ck_assert(memcmp(raw, "<x/>", 4) == 0);

    const struct xnode *content = xnode_child(entry, "content", NS_ATOM);
    ck_assert_ptr_nonnull(content);
    const struct xnode *div =
        xnode_child(content, "div", "http://www.w3.org/1999/xhtml");
    ck_assert_ptr_nonnull(div);
    const struct xnode *p = xnode_child(div, "p", NULL);
    assert_text(p, "Gr\xc3\xbc\xc3\x9f" "e, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e, "
                   "\xf0\x9f\x8e\x89 \xe2\x80\x94 \xe2\x80\x9cquoted\xe2\x80\x9d "
                   " tail");
    assert_text(xnode_child(p, "b", NULL), "bold");
    ck_assert_str_eq(xnode_ns(p), "http://www.w3.org/1999/xhtml");
    assert_text(xnode_child(entry, "id", NULL),
                "tag:denmark.lit,2003:entry-32397");
    return 0;
}

START_TEST(test_tree_contents)
{
    int calls = 0;
    struct xml_stream *xs =
        xml_stream_new(1048576, NULL, check_publish_tree, &calls);
    static const char in[] = HEADER S_PUBLISH;
    ck_assert_int_eq(xml_stream_feed(xs, in, sizeof in - 1), XS_OK);
    ck_assert_int_eq(calls, 1);
    xml_stream_free(xs);
}
END_TEST

/* ---- headers, stream errors, closing ------------------------------------ */

START_TEST(test_header_once)
{
    struct record r = {0};
    struct xml_stream *xs = xml_stream_new(4096, on_header, on_stanza, &r);
    static const char in[] = HEADER;
    ck_assert_int_eq(xml_stream_feed(xs, in, sizeof in - 1), XS_OK);
    ck_assert_int_eq(r.headers, 1);
    ck_assert_str_eq(r.header_id, HEADER_ID);
    ck_assert_int_eq(r.n, 0);
    ck_assert_int_eq(xml_stream_feed(xs, S_HANDSHAKE, strlen(S_HANDSHAKE)),
                     XS_OK);
    ck_assert_int_eq(r.headers, 1);
    ck_assert_int_eq(r.n, 1);
    xml_stream_free(xs);
    record_free(&r);
}
END_TEST

static int check_stream_error(void *arg, struct stanza *st)
{
    int *calls = arg;
    ++*calls;
    ck_assert_str_eq(st->el->name, "stream:error");
    ck_assert_str_eq(xnode_local_name(st->el), "error");
    ck_assert_str_eq(xnode_ns(st->el), NS_STREAMS);
    const struct xnode *cond = xnode_child(
        st->el, "conflict", "urn:ietf:params:xml:ns:xmpp-streams");
    ck_assert_ptr_nonnull(cond);
    return 0;
}

START_TEST(test_stream_error_is_a_stanza)
{
    int calls = 0;
    struct xml_stream *xs =
        xml_stream_new(4096, NULL, check_stream_error, &calls);
    static const char in[] =
        HEADER "<stream:error><conflict "
        "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text "
        "xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced</text>"
        "</stream:error>";
    ck_assert_int_eq(xml_stream_feed(xs, in, sizeof in - 1), XS_OK);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(xml_stream_feed(xs, TRAILER, strlen(TRAILER)),
                     XS_CLOSED);
    xml_stream_free(xs);
}
END_TEST

START_TEST(test_close)
{
    struct record r = {0};
    struct xml_stream *xs = xml_stream_new(4096, on_header, on_stanza, &r);
    static const char in[] = HEADER S_HANDSHAKE "\n" TRAILER S_DISCO;
    ck_assert_int_eq(xml_stream_feed(xs, in, sizeof in - 1), XS_CLOSED);
    ck_assert_int_eq(r.n, 1); /* nothing after the closing tag */
    /* Further feeds keep saying so, and deliver nothing. */
    ck_assert_int_eq(xml_stream_feed(xs, S_DISCO, strlen(S_DISCO)), XS_CLOSED);
    ck_assert_int_eq(xml_stream_feed(xs, "x", 1), XS_CLOSED);
    ck_assert_int_eq(r.n, 1);
    xml_stream_free(xs);
    record_free(&r);

    /* Closing right after the header. */
    memset(&r, 0, sizeof r);
    xs = xml_stream_new(4096, on_header, on_stanza, &r);
    static const char in2[] = HEADER TRAILER;
    ck_assert_int_eq(xml_stream_feed(xs, in2, sizeof in2 - 1), XS_CLOSED);
    ck_assert_int_eq(r.headers, 1);
    ck_assert_int_eq(r.n, 0);
    xml_stream_free(xs);
    record_free(&r);
}
END_TEST

START_TEST(test_stop)
{
    struct record r = {0};
    r.stop_at_stanza = 1;
    struct xml_stream *xs = xml_stream_new(4096, on_header, on_stanza, &r);
    static const char in[] = HEADER S_HANDSHAKE S_DISCO S_RESULT;
    ck_assert_int_eq(xml_stream_feed(xs, in, sizeof in - 1), XS_STOPPED);
    ck_assert_int_eq(r.n, 1);
    ck_assert_int_eq(xml_stream_feed(xs, S_RESULT, strlen(S_RESULT)),
                     XS_STOPPED);
    ck_assert_int_eq(r.n, 1);
    xml_stream_free(xs);
    record_free(&r);

    memset(&r, 0, sizeof r);
    r.stop_at_header = true;
    xs = xml_stream_new(4096, on_header, on_stanza, &r);
    ck_assert_int_eq(xml_stream_feed(xs, in, sizeof in - 1), XS_STOPPED);
    ck_assert_int_eq(r.headers, 1);
    ck_assert_int_eq(r.n, 0);
    xml_stream_free(xs);
    record_free(&r);
}
END_TEST

/* ---- errors -------------------------------------------------------------- */

/*
 * Feeds `before` (which must be accepted) then `bad` (split in two
 * feeds at `split`, 0: one feed) and asserts status `want`; then checks
 * the stream stays dead with the same status and message.  Returns the
 * number of stanzas delivered.
 */
static int expect_error(const char *before, const char *bad, size_t bad_len,
                        size_t split, int want, const char *needle)
{
    struct record r = {0};
    struct xml_stream *xs = xml_stream_new(4096, on_header, on_stanza, &r);
    int rc = xml_stream_feed(xs, before, strlen(before));
    ck_assert_msg(rc == XS_OK, "prefix refused: %d (%s)", rc,
                  xml_stream_error(xs));
    if (split > 0 && split < bad_len) {
        rc = xml_stream_feed(xs, bad, split);
        if (rc == XS_OK)
            rc = xml_stream_feed(xs, bad + split, bad_len - split);
    } else {
        rc = xml_stream_feed(xs, bad, bad_len);
    }
    ck_assert_msg(rc == want, "\"%.*s\": status %d, expected %d (%s)",
                  (int)bad_len, bad, rc, want, xml_stream_error(xs));
    const char *msg = xml_stream_error(xs);
    ck_assert_msg(msg != NULL && *msg != '\0' && strcmp(msg, "no error") != 0,
                  "no error message");
    if (needle)
        ck_assert_msg(strstr(msg, needle) != NULL,
                      "error \"%s\" does not contain \"%s\"", msg, needle);
    char *saved = strdup(msg);
    int delivered = r.n;
    /* Dead: the same status again, nothing delivered, no crash. */
    static const char more[] = S_DISCO "<iq><a></b>" S_RESULT TRAILER;
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(xml_stream_feed(xs, more, sizeof more - 1), want);
        ck_assert_int_eq(xml_stream_feed(xs, "<", 1), want);
    }
    ck_assert_int_eq(r.n, delivered);
    ck_assert_str_eq(xml_stream_error(xs), saved);
    free(saved);
    xml_stream_free(xs);
    record_free(&r);
    return delivered;
}

#define BAD(s) (s), sizeof(s) - 1

START_TEST(test_malformed)
{
    static const struct {
        const char *xml;
        size_t len;
    } cases[] = {
        {BAD("<iq><a></b></iq>")},               /* mismatched tag */
        {BAD("<iq type='set' type='get'/>")},    /* duplicate attribute */
        {BAD("<iq type=set/>")},                 /* unquoted attribute */
        {BAD("<iq>&undefined;</iq>")},           /* unknown entity */
        {BAD("<iq>&#0;</iq>")},                  /* invalid character */
        {BAD("<iq>\xff\xfe</iq>")},              /* invalid UTF-8 */
        {BAD("<iq>\xc3</iq>")},                  /* truncated UTF-8 */
        {BAD("<iq>a\0b</iq>")},                  /* NUL byte */
        {BAD("<iq><</iq>")},
        {BAD("<1iq/>")},
        {BAD("</iq>")},                          /* closing what is not open */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_error(HEADER, cases[i].xml, cases[i].len, 0, XS_ERR_XML,
                     "not well-formed");
        expect_error(HEADER, cases[i].xml, cases[i].len, 3, XS_ERR_XML,
                     "not well-formed");
    }
    /* Stanzas before the error are delivered, the broken one is not. */
    int n = expect_error(HEADER, BAD(S_HANDSHAKE S_DISCO "<iq><a></b>"), 0,
                         XS_ERR_XML, "mismatched tag");
    ck_assert_int_eq(n, 2);
    /* A broken header. */
    expect_error("", BAD("<stream:stream xmlns='a' a=>"), 0, XS_ERR_XML,
                 "not well-formed");
    expect_error("", BAD("\xef\xbb\xbfgarbage<stream:stream>"), 0,
                 XS_ERR_XML, "not well-formed");
}
END_TEST

START_TEST(test_root_not_stream)
{
    struct record r = {0};
    struct xml_stream *xs = xml_stream_new(4096, on_header, on_stanza, &r);
    static const char in[] =
        "<?xml version='1.0'?><stream xmlns='" NS_ACCEPT "' id='x'>"
        S_HANDSHAKE;
    ck_assert_int_eq(xml_stream_feed(xs, in, sizeof in - 1), XS_ERR_XML);
    ck_assert_int_eq(r.headers, 0);
    ck_assert_int_eq(r.n, 0);
    ck_assert_int_eq(xml_stream_feed(xs, S_DISCO, strlen(S_DISCO)), XS_ERR_XML);
    ck_assert_int_eq(r.n, 0);
    xml_stream_free(xs);
    record_free(&r);

    expect_error("", BAD("<iq xmlns='" NS_ACCEPT "'/>"), 0, XS_ERR_XML, NULL);
    expect_error("", BAD("<stream:features xmlns:stream='" NS_STREAMS "'>"),
                 0, XS_ERR_XML, NULL);
}
END_TEST

START_TEST(test_forbidden)
{
    /* A DTD before the root, with or without entity declarations. */
    expect_error("", BAD("<?xml version='1.0'?><!DOCTYPE stream:stream>"
                         HEADER),
                 0, XS_ERR_FORBIDDEN, NULL);
    int n = expect_error(
        "",
        BAD("<!DOCTYPE lolz [<!ENTITY lol 'lol'>"
            "<!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]>"
            "<stream:stream xmlns:stream='" NS_STREAMS "'><iq>&lol2;</iq>"),
        10, XS_ERR_FORBIDDEN, NULL);
    ck_assert_int_eq(n, 0);
    /* Processing instructions: in the prolog, between stanzas, inside
     * one. */
    expect_error("", BAD("<?xml version='1.0'?><?xml-stylesheet href='a'?>"
                         "<stream:stream xmlns:stream='" NS_STREAMS "'>"),
                 0, XS_ERR_FORBIDDEN, "processing instruction");
    n = expect_error(HEADER, BAD(S_HANDSHAKE "\n<?pi data?>" S_DISCO), 0,
                     XS_ERR_FORBIDDEN, "processing instruction");
    ck_assert_int_eq(n, 1);
    n = expect_error(HEADER, BAD("<iq type='get'><?pi?><query/></iq>"), 5,
                     XS_ERR_FORBIDDEN, "processing instruction");
    ck_assert_int_eq(n, 0);
    /* Declarations inside the stream are refused one way or another. */
    static const char *const inside[] = {
        "<!DOCTYPE iq>", "<!ENTITY x 'y'>", "<iq><!ENTITY x 'y'></iq>",
        "<iq><!DOCTYPE iq></iq>",
    };
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++) {
        struct record r = {0};
        struct xml_stream *xs = xml_stream_new(4096, on_header, on_stanza, &r);
        ck_assert_int_eq(xml_stream_feed(xs, HEADER, strlen(HEADER)), XS_OK);
        int rc = xml_stream_feed(xs, inside[i], strlen(inside[i]));
        ck_assert_msg(rc == XS_ERR_FORBIDDEN || rc == XS_ERR_XML,
                      "\"%s\" inside the stream: status %d", inside[i], rc);
        ck_assert_int_eq(r.n, 0);
        xml_stream_free(xs);
        record_free(&r);
    }
    /* The XML declaration itself is not a processing instruction. */
    struct record r = {0};
    struct xml_stream *xs = xml_stream_new(4096, on_header, on_stanza, &r);
    static const char ok[] = HEADER S_HANDSHAKE;
    ck_assert_int_eq(xml_stream_feed(xs, ok, sizeof ok - 1), XS_OK);
    ck_assert_int_eq(r.n, 1);
    xml_stream_free(xs);
    record_free(&r);
}
END_TEST

/* ---- the size limit ------------------------------------------------------ */

#define LIMIT 4096

/* "<message to='a'><body>xxx...</body></message>" of exactly total bytes
 * (caller frees with buf_free). */
static struct buf big_message(size_t total)
{
    static const char head[] = "<message to='a'><body>";
    static const char tail[] = "</body></message>";
    size_t fixed = sizeof head - 1 + sizeof tail - 1;
    ck_assert(total > fixed);
    struct buf b = BUF_INIT;
    buf_puts(&b, head);
    for (size_t i = 0; i < total - fixed; i++)
        buf_append(&b, "x", 1);
    buf_puts(&b, tail);
    ck_assert_uint_eq(b.len, total);
    return b;
}

START_TEST(test_too_big_refused_early)
{
    struct buf msg = big_message(10240);
    struct record r = {0};
    struct xml_stream *xs = xml_stream_new(LIMIT, on_header, on_stanza, &r);
    ck_assert_int_eq(xml_stream_feed(xs, HEADER, strlen(HEADER)), XS_OK);
    size_t step = 64, fed = 0;
    int rc = feed_all(xs, msg.data, msg.len, size_fixed, &step, &fed);
    ck_assert_msg(rc == XS_ERR_TOO_BIG, "status %d (%s)", rc,
                  xml_stream_error(xs));
    ck_assert_msg(fed < msg.len, "refused only after the whole stanza");
    ck_assert_msg(fed <= LIMIT + step,
                  "refused after %zu bytes, limit %d", fed, LIMIT);
    ck_assert_int_eq(r.n, 0);
    ck_assert_int_eq(xml_stream_feed(xs, S_DISCO, strlen(S_DISCO)),
                     XS_ERR_TOO_BIG);
    ck_assert_int_eq(r.n, 0);
    xml_stream_free(xs);
    record_free(&r);
    buf_free(&msg);
}
END_TEST

/* A stanza whose start tag alone is over the limit must not be buffered
 * whole either. */
START_TEST(test_too_big_start_tag)
{
    struct buf msg = BUF_INIT;
    buf_puts(&msg, "<message to='");
    for (int i = 0; i < 10240; i++)
        buf_append(&msg, "a", 1);
    buf_puts(&msg, "'><body>hi</body></message>");
    struct record r = {0};
    struct xml_stream *xs = xml_stream_new(LIMIT, on_header, on_stanza, &r);
    ck_assert_int_eq(xml_stream_feed(xs, HEADER, strlen(HEADER)), XS_OK);
    size_t step = 64, fed = 0;
    int rc = feed_all(xs, msg.data, msg.len, size_fixed, &step, &fed);
    ck_assert_msg(rc == XS_ERR_TOO_BIG, "status %d (%s)", rc,
                  xml_stream_error(xs));
    ck_assert_msg(fed <= LIMIT + step,
                  "refused after %zu of %zu bytes, limit %d", fed, msg.len,
                  LIMIT);
    ck_assert_int_eq(r.n, 0);
    xml_stream_free(xs);
    record_free(&r);
    buf_free(&msg);
}
END_TEST

/*
 * The limit does not depend on how the bytes arrive: a stanza of LIMIT
 * bytes passes and one of LIMIT + 1 (or 6000) bytes is refused, whether it
 * comes in one feed or in pieces.  The start tag always arrives in the
 * header's feed, so only the limit is under test here.
 */
START_TEST(test_limit_independent_of_chunking)
{
    static const size_t steps[] = {0, 1, 7, 100, 1000};
    static const struct {
        size_t total;
        bool accepted;
    } sizes[] = {{LIMIT - 1, true}, {LIMIT, true}, {LIMIT + 1, false},
                 {6000, false}, {16000, false}};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
            struct buf msg = big_message(sizes[si].total);
            const size_t head = strlen("<message to='a'><body>");
            struct buf first = BUF_INIT;
            buf_puts(&first, HEADER);
            buf_append(&first, msg.data, head);
            struct record r = {0};
            struct xml_stream *xs =
                xml_stream_new(LIMIT, on_header, on_stanza, &r);
            ck_assert_int_eq(xml_stream_feed(xs, first.data, first.len),
                             XS_OK);
            size_t step = steps[k];
            int rc = feed_all(xs, msg.data + head, msg.len - head,
                              step ? size_fixed : NULL, &step, NULL);
            if (sizes[si].accepted) {
                ck_assert_msg(rc == XS_OK && r.n == 1,
                              "%zu-byte stanza, chunks of %zu: status %d, "
                              "%d stanzas (%s)",
                              sizes[si].total, step, rc, r.n,
                              xml_stream_error(xs));
                ck_assert_uint_eq(r.raw[0].len, sizes[si].total);
            } else {
                ck_assert_msg(rc == XS_ERR_TOO_BIG && r.n == 0,
                              "%zu-byte stanza over a %d-byte limit, "
                              "chunks of %zu: status %d, %d stanzas",
                              sizes[si].total, LIMIT, step, rc, r.n);
            }
            xml_stream_free(xs);
            record_free(&r);
            buf_free(&first);
            buf_free(&msg);
        }
    }
}
END_TEST

/* Whitespace between stanzas (keep-alives) is not a stanza. */
START_TEST(test_whitespace_not_counted)
{
    struct record r = {0};
    struct xml_stream *xs = xml_stream_new(LIMIT, on_header, on_stanza, &r);
    ck_assert_int_eq(xml_stream_feed(xs, HEADER, strlen(HEADER)), XS_OK);
    for (int i = 0; i < 3 * LIMIT; i++)
        ck_assert_int_eq(xml_stream_feed(xs, i % 2 ? " " : "\n", 1), XS_OK);
    struct buf ws = BUF_INIT;
    for (int i = 0; i < 3 * LIMIT; i++)
        buf_puts(&ws, " ");
    ck_assert_int_eq(xml_stream_feed(xs, ws.data, ws.len), XS_OK);
    ck_assert_int_eq(xml_stream_feed(xs, S_DISCO, strlen(S_DISCO)), XS_OK);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(r.raw[0].data, S_DISCO);
    xml_stream_free(xs);
    record_free(&r);
    buf_free(&ws);
}
END_TEST

/* ---- namespaces ---------------------------------------------------------- */

typedef void (*stanza_check)(struct stanza *st);

static int run_check(void *arg, struct stanza *st)
{
    stanza_check *check = arg;
    (*check)(st);
    return 0;
}

/* Parses HEADER + stanza and runs check on it (inside the callback, while
 * the tree is valid). */
static void with_stanza(const char *stanza, stanza_check check)
{
    struct xml_stream *xs = xml_stream_new(1048576, NULL, run_check, &check);
    ck_assert_int_eq(xml_stream_feed(xs, HEADER, strlen(HEADER)), XS_OK);
    int rc = xml_stream_feed(xs, stanza, strlen(stanza));
    ck_assert_msg(rc == XS_OK, "stanza refused: %d (%s)", rc,
                  xml_stream_error(xs));
    xml_stream_free(xs);
}

/* The original payload a reparse is compared with (set around one
 * xml_stream_feed() call, read by dig_payload_cb). */
static const struct xnode *reparse_orig;
static const char *reparse_what;
static int reparse_calls;

/* Asserts a and b have the same element structure, local names and
 * resolved namespaces. */
static void assert_same_ns_tree(const struct xnode *a, const struct xnode *b,
                                const char *what)
{
    ck_assert_msg(strcmp(xnode_local_name(a), xnode_local_name(b)) == 0,
                  "%s: <%s> became <%s>", what, a->name, b->name);
    ck_assert_msg(strcmp(xnode_ns(a), xnode_ns(b)) == 0,
                  "%s: <%s> is in \"%s\" but came back in \"%s\"", what,
                  a->name, xnode_ns(a), xnode_ns(b));
    const struct xnode *ca = xnode_child(a, NULL, NULL);
    const struct xnode *cb = xnode_child(b, NULL, NULL);
    while (ca && cb) {
        assert_same_ns_tree(ca, cb, what);
        ca = xnode_next(ca, NULL, NULL);
        cb = xnode_next(cb, NULL, NULL);
    }
    ck_assert_msg(ca == NULL && cb == NULL, "%s: children of <%s> differ",
                  what, a->name);
}

/* Finds the payload in the reparsed notification and compares it. */
static int dig_payload_cb(void *arg, struct stanza *st)
{
    (void)arg;
    reparse_calls++;
    const struct xnode *event = xnode_child(st->el, "event", NULL);
    ck_assert_ptr_nonnull(event);
    const struct xnode *items = xnode_child(event, "items", NULL);
    ck_assert_ptr_nonnull(items);
    const struct xnode *item = xnode_child(items, "item", NULL);
    ck_assert_ptr_nonnull(item);
    const struct xnode *payload = xnode_child(item, NULL, NULL);
    ck_assert_msg(payload != NULL, "%s: no payload after reparse",
                  reparse_what);
    ck_assert_msg(xnode_next(payload, NULL, NULL) == NULL,
                  "%s: more than one payload element", reparse_what);
    assert_same_ns_tree(reparse_orig, payload, reparse_what);
    return 0;
}

static void check_stands_alone(const struct xnode *orig, const char *text,
                               size_t len, const char *what)
{
    struct buf in = BUF_INIT;
    buf_puts(&in, "<stream:stream xmlns:stream='" NS_STREAMS
                  "' xmlns='jabber:client'><message><event "
                  "xmlns='http://jabber.org/protocol/pubsub#event'><items "
                  "node='n'><item id='i'>");
    buf_append(&in, text, len);
    buf_puts(&in, "</item></items></event></message>");
    reparse_orig = orig;
    reparse_what = what;
    reparse_calls = 0;
    struct xml_stream *xs = xml_stream_new(1048576, NULL, dig_payload_cb, NULL);
    int rc = xml_stream_feed(xs, in.data, in.len);
    ck_assert_msg(rc == XS_OK, "%s: \"%.*s\" does not parse: %s", what,
                  (int)len, text, xml_stream_error(xs));
    ck_assert_int_eq(reparse_calls, 1);
    xml_stream_free(xs);
    buf_free(&in);
}

/*
 * Checks what pubsub_publish.c relies on: the raw bytes when
 * xnode_is_self_contained() says they stand alone, otherwise
 * xnode_serialize_standalone(); either way the stored text must mean the
 * same elements in the same namespaces.
 */
static void check_payload_stands_alone(const struct xnode *payload,
                                       const struct stanza *st,
                                       const char *what)
{
    struct buf out = BUF_INIT;
    xnode_serialize_standalone(payload, &out);
    check_stands_alone(payload, out.data, out.len, what);
    if (xnode_is_self_contained(payload)) {
        size_t len;
        const char *raw = stanza_raw_of(st, payload, &len);
        check_stands_alone(payload, raw, len, what);
    }
    buf_free(&out);
}

static const struct xnode *payload_of(const struct stanza *st)
{
    const struct xnode *p = publish_payload(st->el);
    ck_assert_msg(p != NULL, "no publish payload");
    return p;
}

#define PUBLISH_WITH(decls, payload)                                          \
    "<iq type='set' id='p' from='a@b/c' to='pubsub.example.org'" decls ">"    \
    "<pubsub xmlns='" NS_PUBSUB "'><publish node='n'><item id='i'>"           \
    payload "</item></publish></pubsub></iq>"

static void ns_default_check(struct stanza *st)
{
    const struct xnode *iq = st->el;
    ck_assert_str_eq(xnode_ns(iq), NS_ACCEPT);
    const struct xnode *foo = xnode_child(iq, "foo", NULL);
    ck_assert_ptr_nonnull(foo);
    ck_assert_str_eq(xnode_ns(foo), NS_ACCEPT);
    ck_assert_ptr_eq(xnode_child(iq, "foo", NS_ACCEPT), foo);
    ck_assert_ptr_null(xnode_child(iq, "foo", "urn:other"));
    const struct xnode *baz = xnode_child(xnode_child(iq, "bar", NULL), "baz",
                                          NULL);
    ck_assert_ptr_nonnull(baz);
    ck_assert_str_eq(xnode_ns(baz), NS_ACCEPT);
    const struct xnode *q = xnode_child(iq, "query", NULL);
    ck_assert_str_eq(xnode_ns(q), "jabber:iq:version");
    ck_assert_str_eq(xnode_ns(xnode_child(q, "name", NULL)), "jabber:iq:version");
    const struct xnode *sf = xnode_child(iq, "features", NS_STREAMS);
    ck_assert_ptr_nonnull(sf);
    ck_assert_str_eq(sf->name, "stream:features");
    /* A prefix nobody declared resolves to no namespace. */
    ck_assert_str_eq(xnode_ns(xnode_child(iq, "thing", NULL)), "");
}

START_TEST(test_ns_stream_default)
{
    with_stanza("<iq type='get' id='v'><foo/><bar><baz/></bar>"
                "<query xmlns='jabber:iq:version'><name/></query>"
                "<stream:features/><undeclared:thing/></iq>",
                ns_default_check);
}
END_TEST

static void self_contained_check(struct stanza *st)
{
    const struct xnode *p = payload_of(st);
    ck_assert_str_eq(xnode_ns(p), "urn:a");
    ck_assert_str_eq(xnode_ns(xnode_child(p, "bar", NULL)), "urn:a");
    ck_assert(xnode_is_self_contained(p));
    size_t len;
    const char *raw = stanza_raw_of(st, p, &len);
    ck_assert_int_eq((int)len, (int)strlen("<foo xmlns='urn:a'><bar/></foo>"));
    ck_assert(memcmp(raw, "<foo xmlns='urn:a'><bar/></foo>", len) == 0);
    struct buf out = BUF_INIT;
    xnode_serialize_standalone(p, &out);
    ck_assert_str_eq(out.data, "<foo xmlns='urn:a'><bar/></foo>");
    buf_free(&out);
    check_payload_stands_alone(p, st, "<foo xmlns='urn:a'>");
}

START_TEST(test_ns_self_contained)
{
    with_stanza(PUBLISH_WITH("", "<foo xmlns='urn:a'><bar/></foo>"),
                self_contained_check);
}
END_TEST

static void inherits_default_check(struct stanza *st)
{
    const struct xnode *p = payload_of(st);
    ck_assert_str_eq(xnode_ns(p), NS_PUBSUB);
    ck_assert(!xnode_is_self_contained(p));
    struct buf out = BUF_INIT;
    xnode_serialize_standalone(p, &out);
    ck_assert_str_eq(out.data, "<foo xmlns='" NS_PUBSUB "'><bar/></foo>");
    buf_free(&out);
    check_payload_stands_alone(p, st, "<foo> in pubsub");
}

START_TEST(test_ns_inherited_default)
{
    with_stanza(PUBLISH_WITH("", "<foo><bar/></foo>"), inherits_default_check);
}
END_TEST

static void prefix_from_ancestor_check(struct stanza *st)
{
    const struct xnode *p = payload_of(st);
    ck_assert_str_eq(p->name, "geo:loc");
    ck_assert_str_eq(xnode_ns(p), "urn:geo");
    ck_assert(!xnode_is_self_contained(p));
    struct buf out = BUF_INIT;
    xnode_serialize_standalone(p, &out);
    ck_assert_msg(strstr(out.data, " xmlns:geo='urn:geo'") != NULL,
                  "standalone form lacks the declaration: %s", out.data);
    ck_assert_msg(strstr(out.data, "xmlns:unused") == NULL,
                  "standalone form declares an unused prefix: %s", out.data);
    ck_assert_str_eq(out.data, "<geo:loc xmlns:geo='urn:geo' geo:acc='5'>"
                               "<geo:lat>1.5</geo:lat></geo:loc>");
    buf_free(&out);
    check_payload_stands_alone(p, st, "<geo:loc> declared on <iq>");
}

START_TEST(test_ns_prefix_from_ancestor)
{
    with_stanza(PUBLISH_WITH(" xmlns:geo='urn:geo' xmlns:unused='urn:u'",
                             "<geo:loc geo:acc='5'><geo:lat>1.5</geo:lat>"
                             "</geo:loc>"),
                prefix_from_ancestor_check);
}
END_TEST

static void prefix_below_check(struct stanza *st)
{
    const struct xnode *p = payload_of(st);
    ck_assert_str_eq(xnode_ns(p), "urn:a");
    /* <p:bar> uses a prefix declared above the payload. */
    ck_assert(!xnode_is_self_contained(p));
    struct buf out = BUF_INIT;
    xnode_serialize_standalone(p, &out);
    ck_assert_msg(strstr(out.data, " xmlns:p='urn:p'") != NULL,
                  "standalone form lacks xmlns:p: %s", out.data);
    buf_free(&out);
    check_payload_stands_alone(p, st, "<p:bar> inside <foo xmlns='urn:a'>");
}

START_TEST(test_ns_prefix_used_below)
{
    with_stanza(PUBLISH_WITH(" xmlns:p='urn:p'",
                             "<foo xmlns='urn:a' xml:lang='en'><x><p:bar "
                             "p:attr='1'/></x></foo>"),
                prefix_below_check);
}
END_TEST

static void local_prefix_check(struct stanza *st)
{
    const struct xnode *p = payload_of(st);
    /* Everything it uses is declared inside it; xml: is predefined. */
    ck_assert(xnode_is_self_contained(p));
    check_payload_stands_alone(p, st, "<q:foo xmlns:q>");
}

START_TEST(test_ns_prefix_declared_inside)
{
    with_stanza(PUBLISH_WITH(" xmlns:q='urn:outer'",
                             "<q:foo xmlns:q='urn:q' xml:lang='en'>"
                             "<q:bar q:a='1'/><baz xmlns='urn:b'/></q:foo>"),
                local_prefix_check);
}
END_TEST

static void prefixed_root_default_child_check(struct stanza *st)
{
    const struct xnode *p = payload_of(st);
    const struct xnode *bar = xnode_child(p, "bar", NULL);
    ck_assert_ptr_nonnull(bar);
    /* <bar> has no prefix and no xmlns: it is in the pubsub namespace. */
    ck_assert_str_eq(xnode_ns(bar), NS_PUBSUB);
    ck_assert_msg(!xnode_is_self_contained(p),
                  "<p:foo><bar/></p:foo> relies on the inherited default "
                  "namespace for <bar/>, so its raw bytes do not stand alone");
    check_payload_stands_alone(p, st, "<p:foo><bar/></p:foo>");
}

/* A prefixed payload root with unprefixed children that inherit the
 * default namespace from outside the payload. */
START_TEST(test_ns_prefixed_root_default_child)
{
    with_stanza(PUBLISH_WITH("",
                             "<p:foo xmlns:p='urn:p'><bar/></p:foo>"),
                prefixed_root_default_child_check);
}
END_TEST

static void recorded_payload_check(struct stanza *st)
{
    const struct xnode *p = payload_of(st);
    check_payload_stands_alone(p, st, "recorded Atom entry");
}

START_TEST(test_ns_recorded_payload)
{
    with_stanza(S_PUBLISH, recorded_payload_check);
}
END_TEST

/* A stanza nested deeper than any real one is dropped whole, without
 * building its tree; the stream and the next stanza go on. */
static int count_cb(void *arg, struct stanza *st)
{
    int *n = arg;
    ck_assert_str_eq(st->el->name, "iq");
    (*n)++;
    return 0;
}

START_TEST(test_too_deep_dropped)
{
    int n = 0;
    struct xml_stream *xs = xml_stream_new(1 << 20, NULL, count_cb, &n);
    ck_assert_int_eq(xml_stream_feed(xs, HEADER, strlen(HEADER)), XS_OK);
    struct buf b = BUF_INIT;
    buf_puts(&b, "<message>");
    for (int i = 0; i < 5000; i++)
        buf_puts(&b, "<a>");
    buf_puts(&b, "text");
    for (int i = 0; i < 5000; i++)
        buf_puts(&b, "</a>");
    buf_puts(&b, "</message><iq type='get' id='after'/>");
    ck_assert_int_eq(xml_stream_feed(xs, b.data, b.len), XS_OK);
    ck_assert_int_eq(n, 1); /* only the iq */
    /* 200 levels is still a stanza. */
    buf_reset(&b);
    buf_puts(&b, "<iq type='get' id='deep'>");
    for (int i = 0; i < 200; i++)
        buf_puts(&b, "<a>");
    for (int i = 0; i < 200; i++)
        buf_puts(&b, "</a>");
    buf_puts(&b, "</iq>");
    ck_assert_int_eq(xml_stream_feed(xs, b.data, b.len), XS_OK);
    ck_assert_int_eq(n, 2);
    buf_free(&b);
    xml_stream_free(xs);
}
END_TEST

int main(void)
{
    const struct unit_case cases[] = {
        {"recorded_whole", test_recorded_whole},
        {"recorded_byte_by_byte", test_recorded_byte_by_byte},
        {"recorded_random_chunks", test_recorded_random_chunks},
        {"large_single_feed", test_large_single_feed},
        {"tree_contents", test_tree_contents},
        {"header_once", test_header_once},
        {"stream_error_is_a_stanza", test_stream_error_is_a_stanza},
        {"close", test_close},
        {"stop", test_stop},
        {"malformed", test_malformed},
        {"root_not_stream", test_root_not_stream},
        {"forbidden", test_forbidden},
        {"too_big_refused_early", test_too_big_refused_early},
        {"too_big_start_tag", test_too_big_start_tag},
        {"limit_independent_of_chunking", test_limit_independent_of_chunking},
        {"whitespace_not_counted", test_whitespace_not_counted},
        {"ns_stream_default", test_ns_stream_default},
        {"ns_self_contained", test_ns_self_contained},
        {"ns_inherited_default", test_ns_inherited_default},
        {"ns_prefix_from_ancestor", test_ns_prefix_from_ancestor},
        {"ns_prefix_used_below", test_ns_prefix_used_below},
        {"ns_prefix_declared_inside", test_ns_prefix_declared_inside},
        {"ns_prefixed_root_default_child", test_ns_prefixed_root_default_child},
        {"ns_recorded_payload", test_ns_recorded_payload},
        {"too_deep_dropped", test_too_deep_dropped},
    };
    return UNIT_RUN("xml_stream", cases);
}
