/*
 * check_mam.c - integration tests of archive queries on nodes: XEP-0442
 * (XEP-0313 Message Archive Management on a pubsub node), with XEP-0059
 * result set management.
 *
 * A node's archive is its persisted items; an item's archive id is its seq
 * (pubsub.item.seq).  What is proved, through real client connections:
 *
 *   - paging forward with RSM <max/> and <after/> returns every item
 *     exactly once, in publication order, each as one <message/> to the
 *     requester's full JID (<result queryid id><forwarded><delay/>
 *     <message xmlns='jabber:client'><event><items><item/>...), all of them
 *     before the IQ result with <fin complete><set><first/><last/><count/>;
 *   - the 'start' and 'end' filters (XEP-0082 DateTime) select by
 *     publication time, inclusive; an empty range is a successful query;
 *   - a consumer catches up with 'after-id' = the last id it saw;
 *   - <before/> gives the last page and <before>ID</before> the page just
 *     before ID, both in chronological order, down to the first page;
 *   - 'after-id' and 'before-id' are filters that define the result set
 *     (XEP-0313 §4.1.1.3 and §12: 'before-id' does not page backwards),
 *     so <count/> and the paging direction follow from them;
 *   - errors: unknown node and unknown or malformed ids (form and RSM)
 *     give cancel/item-not-found, a query without node
 *     cancel/feature-not-implemented, a malformed DateTime modify/bad-request,
 *     a field the service does not know cancel/feature-not-implemented
 *     (XEP-0313 §4.1.1.6), a non-member on a whitelist node auth/forbidden;
 *     no result message precedes an error;
 *   - the node's disco#info advertises urn:xmpp:mam:2 and #extended, and
 *     an IQ get returns the query form.
 *
 * Each test starts its own pubsubd as c7.<domain> on a fresh database; the
 * owner creates and publishes, alice (never subscribed, so she receives no
 * notifications) queries.  Tests run one at a time in forked processes
 * (CK_FORK).
 */
#include "harness.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TIMEOUT_S 90
#define COMPONENT_UP_MS 10000
#define IQ_TIMEOUT_MS 5000
#define SILENCE_MS 500 /* how long "nothing more arrives" is watched */

#define NS_MAM "urn:xmpp:mam:2"
#define NS_MAM_EXTENDED NS_MAM "#extended"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"
#define NS_CLIENT "jabber:client"
#define NS_DATA "jabber:x:data"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_NODE_CONFIG H_NS_PUBSUB "#node_config"
#define NS_TEST "urn:example:pubsubd:mam"

/* Data form pieces (XEP-0004), for literal forms. */
#define FIELD(var, value) "<field var='" var "'><value>" value "</value></field>"
#define FORM_TYPE(t) "<field var='FORM_TYPE' type='hidden'><value>" t "</value></field>"

#define MAX_PAGE 64 /* results one query in these tests may return */

/* One test's pubsubd, database and clients. */
struct fixture {
    char *jid; /* component JID */
    char *db;  /* conninfo of the fresh database */
    struct h_proc *proc;
    struct h_client *owner, *alice;
};

/* What one successful archive query brought: the results in the order they
 * arrived and the <fin/> of the IQ result.  Strings are owned. */
struct page {
    int n;
    char *archive_id[MAX_PAGE]; /* <result id/> */
    char *item_id[MAX_PAGE];    /* <item id/> */
    char *complete;             /* <fin complete/>, NULL when absent */
    char *first, *last, *count; /* RSM texts, NULL when absent */
    char *first_index;          /* <first index/>, NULL when absent */
    char *fin_text;             /* the IQ result, for messages */
};

static void page_free(struct page *pg)
{
    for (int i = 0; i < pg->n; i++) {
        free(pg->archive_id[i]);
        free(pg->item_id[i]);
    }
    free(pg->complete);
    free(pg->first);
    free(pg->first_index);
    free(pg->last);
    free(pg->count);
    free(pg->fin_text);
    memset(pg, 0, sizeof *pg);
}

/* ---- canonical XML ------------------------------------------------------ */

/* A growable string. */
struct sbuf {
    char *data;
    size_t len, cap;
};

static void sbuf_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = realloc(b->data, b->cap);
        ck_assert_ptr_nonnull(b->data);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sbuf_puts(struct sbuf *b, const char *s)
{
    sbuf_put(b, s, strlen(s));
}

/* ---- small utilities ---------------------------------------------------- */

static bool is_decimal(const char *s)
{
    return s != NULL && *s != '\0' && strspn(s, "0123456789") == strlen(s);
}

/* XEP-0082 DateTime: CCYY-MM-DDThh:mm:ss[.sss]TZD. */
static bool is_xep0082_datetime(const char *s)
{
    regex_t re;
    int rc = regcomp(&re,
                     "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                     "(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
                     REG_EXTENDED | REG_NOSUB);
    ck_assert_msg(rc == 0, "test bug: regcomp");
    bool ok = s != NULL && regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/* The payload published as item id. */
static char *item_payload(const char *id)
{
    return h_strf("<entry xmlns='" NS_TEST "'><n>%s</n></entry>", id);
}

/* ids[i] = "<prefix><from + i>" for i < n (owned by the caller, see
 * free_ids). */
static void make_ids(char **ids, const char *prefix, int from, int n)
{
    for (int i = 0; i < n; i++)
        ids[i] = h_strf("%s%d", prefix, from + i);
}

static void free_ids(char **ids, int n)
{
    for (int i = 0; i < n; i++)
        free(ids[i]);
}

/* Runs the XMPP loop for ms and asserts that c received nothing. */
static void assert_silence(struct fixture *f, struct h_client *c, int ms)
{
    xmpp_stanza_t *m = h_next_message(c, ms);
    if (m != NULL) {
        char *text = h_stanza_to_string(m);
        h_fail_dump(f->proc);
        ck_abort_msg("%s: expected no message, got %s", h_client_jid(c), text);
    }
}

/* ---- SQL ---------------------------------------------------------------- */

/* The seq (archive id) of item item_id of node, as a string; caller frees. */
static char *seq_of(struct fixture *f, const char *node, const char *item_id)
{
    char *sql = h_strf("SELECT i.seq FROM pubsub.item i JOIN pubsub.node n USING (node_id)"
                       " WHERE n.name = '%s' AND NOT n.deleted AND i.item_id = '%s'",
                       node, item_id);
    long long seq = h_sql_int(f->db, sql);
    free(sql);
    return h_strf("%lld", seq);
}

/* The database's clock now, UTC, as an XEP-0082 DateTime with
 * microseconds; caller frees. */
static char *db_now(struct fixture *f)
{
    PGresult *r = h_sql(f->db, "SELECT to_char(now() AT TIME ZONE 'UTC',"
                               " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    char *s = h_strf("%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return s;
}

/* ---- the fixture -------------------------------------------------------- */

/* Waits until the component answers disco#items with a result: the link
 * is up and so is its database. */
static void wait_ready(struct fixture *f)
{
    h_wait_service_ready(f->proc, f->owner, f->jid, COMPONENT_UP_MS);
}

static void fixture_up(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    f->jid = h_strf("c7.%s", h_env("PST_DOMAIN"));
    f->db = h_db_create();
    f->proc = h_pubsubd_start(f->jid, f->db, NULL);
    f->owner = h_client_connect("owner");
    f->alice = h_client_connect("alice");
    wait_ready(f);
}

static void fixture_down(struct fixture *f)
{
    h_client_disconnect(f->owner);
    h_client_disconnect(f->alice);
    h_pubsubd_stop(f->proc);
    free(f->db);
    free(f->jid);
}

/* ---- pubsub ------------------------------------------------------------- */

/* Sends <iq type='set'><pubsub xmlns=ns>inner</pubsub></iq> from c to the
 * component; returns the reply (caller releases). */
static xmpp_stanza_t *pubsub_set(struct fixture *f, struct h_client *c, const char *ns,
                                 const char *inner)
{
    char *id = h_uid("ps");
    char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='%s'>%s</pubsub></iq>",
                       f->jid, id, ns, inner);
    xmpp_stanza_t *r = h_iq(c, xml, IQ_TIMEOUT_MS);
    free(xml);
    free(id);
    return r;
}

/* The owner creates node with the default configuration. */
static void create_node(struct fixture *f, const char *node)
{
    char *inner = h_strf("<create node='%s'/>", node);
    xmpp_stanza_t *r = pubsub_set(f, f->owner, H_NS_PUBSUB, inner);
    h_assert_result(f->proc, r, "create");
    xmpp_stanza_release(r);
    free(inner);
}

/* The owner publishes item_payload(id) as item id; asserts the result. */
static void publish(struct fixture *f, const char *node, const char *id)
{
    char *payload = item_payload(id);
    char *inner = h_strf("<publish node='%s'><item id='%s'>%s</item></publish>", node, id,
                         payload);
    xmpp_stanza_t *r = pubsub_set(f, f->owner, H_NS_PUBSUB, inner);
    char *what = h_strf("publish %s to %s", id, node);
    h_assert_result(f->proc, r, what);
    free(what);
    xmpp_stanza_release(r);
    free(inner);
    free(payload);
}

static void publish_all(struct fixture *f, const char *node, char *const *ids, int n)
{
    for (int i = 0; i < n; i++)
        publish(f, node, ids[i]);
}

/* ---- archive queries ---------------------------------------------------- */

/* Sends an archive query from c: <query xmlns='urn:xmpp:mam:2'> with the
 * attributes node and queryid (NULL: absent), a submitted form with
 * FORM_TYPE and fields (NULL: no form), and <set xmlns=rsm>rsm</set> (NULL:
 * none).  Asserts that c had no message queued before; returns the reply
 * (caller releases). */
static xmpp_stanza_t *mam_iq(struct fixture *f, struct h_client *c, const char *node,
                             const char *queryid, const char *fields, const char *rsm)
{
    ck_assert_msg(h_message_count(c) == 0, "test bug: %s has %d messages queued before a query",
                  h_client_jid(c), h_message_count(c));
    char *id = h_uid("mam");
    char *node_attr = node ? h_strf(" node='%s'", node) : h_strf("%s", "");
    char *qid_attr = queryid ? h_strf(" queryid='%s'", queryid) : h_strf("%s", "");
    char *form = fields ? h_strf("<x xmlns='" NS_DATA "' type='submit'>" FORM_TYPE(NS_MAM)
                                 "%s</x>", fields)
                        : h_strf("%s", "");
    char *set = rsm ? h_strf("<set xmlns='" NS_RSM "'>%s</set>", rsm) : h_strf("%s", "");
    char *xml = h_strf("<iq type='set' to='%s' id='%s'><query xmlns='" NS_MAM "'%s%s>%s%s"
                       "</query></iq>", f->jid, id, node_attr, qid_attr, form, set);
    xmpp_stanza_t *r = h_iq(c, xml, IQ_TIMEOUT_MS);
    free(xml);
    free(set);
    free(form);
    free(qid_attr);
    free(node_attr);
    free(id);
    return r;
}

/*
 * Pops c's next queued message, which must be one archive result for the
 * query queryid on node, exactly:
 *   <message from=component to=c's full JID>
 *     <result xmlns='urn:xmpp:mam:2' [queryid] id=SEQ>
 *       <forwarded xmlns='urn:xmpp:forward:0'>
 *         <delay xmlns='urn:xmpp:delay' stamp=published_at/>
 *         <message xmlns='jabber:client'><event xmlns=pubsub#event>
 *           <items node><item id>payload</item></items></event></message>
 * where SEQ is the seq of that item in the database and the stamp its
 * publication time (checked in SQL).  Appends it to pg.
 */
static void take_result(struct fixture *f, struct h_client *c, const char *node,
                        const char *queryid, struct page *pg)
{
    xmpp_stanza_t *m = h_next_message(c, 0);
    ck_assert_msg(m != NULL, "test bug: no message queued");
    char *text = h_stanza_to_string(m);
    ck_assert_msg(pg->n < MAX_PAGE, "more than %d results: %s", MAX_PAGE, text);
    ck_assert_msg(strcmp(xmpp_stanza_get_name(m), "message") == 0, "not a message: %s", text);
    ck_assert_msg(xmpp_stanza_get_from(m) && strcmp(xmpp_stanza_get_from(m), f->jid) == 0,
                  "archive result not from %s: %s", f->jid, text);
    ck_assert_msg(xmpp_stanza_get_to(m) && strcmp(xmpp_stanza_get_to(m), h_client_jid(c)) == 0,
                  "archive result not to the requester's full JID %s: %s", h_client_jid(c),
                  text);
    ck_assert_msg(h_count_children(m, NULL, NULL) == 1, "expected only <result/>: %s", text);
    xmpp_stanza_t *result = h_child(m, "result", NS_MAM);
    ck_assert_msg(result != NULL, "no <result xmlns='" NS_MAM "'/>: %s", text);
    const char *got_qid = xmpp_stanza_get_attribute(result, "queryid");
    if (queryid == NULL)
        ck_assert_msg(got_qid == NULL, "queryid='%s' although the query had none: %s", got_qid,
                      text);
    else
        ck_assert_msg(got_qid != NULL && strcmp(got_qid, queryid) == 0,
                      "queryid is not '%s': %s", queryid, text);
    const char *aid = xmpp_stanza_get_attribute(result, "id");
    ck_assert_msg(is_decimal(aid), "archive id is not a seq: %s", text);
    xmpp_stanza_t *fwd = h_child(result, "forwarded", NS_FORWARD);
    xmpp_stanza_t *delay = h_child(fwd, "delay", NS_DELAY);
    const char *stamp = delay ? xmpp_stanza_get_attribute(delay, "stamp") : NULL;
    ck_assert_msg(is_xep0082_datetime(stamp), "no XEP-0082 delay stamp: %s", text);
    xmpp_stanza_t *items = h_child(h_child(h_child(fwd, "message", NULL), "event", NULL),
                                   "items", NULL);
    const char *item_id = h_child(items, "item", NULL)
                              ? xmpp_stanza_get_attribute(h_child(items, "item", NULL), "id")
                              : NULL;
    ck_assert_msg(item_id != NULL, "no <item id/>: %s", text);

    /* The whole <result/>, exactly. */
    char *payload = item_payload(item_id);
    char *qid = queryid ? h_strf(" queryid='%s'", queryid) : h_strf("%s", "");
    char *want_xml = h_strf("<result xmlns='" NS_MAM "'%s id='%s'><forwarded xmlns='" NS_FORWARD
                            "'><delay xmlns='" NS_DELAY "' stamp='%s'/><message xmlns='"
                            NS_CLIENT "'><event xmlns='" H_NS_PUBSUB_EVENT "'><items node='%s'>"
                            "<item id='%s'>%s</item></items></event></message></forwarded>"
                            "</result>", qid, aid, stamp, node, item_id, payload);
    char *want = h_canon_xml(want_xml);
    char *got = h_canon(result, NS_CLIENT);
    ck_assert_msg(strcmp(got, want) == 0, "archive result:\n got %s\nwant %s\n(%s)", got, want,
                  text);

    /* The archive id is that item's seq; the stamp is its publication. */
    char *sql = h_strf("SELECT i.item_id, (i.published_at = '%s'::timestamptz)::int"
                       " FROM pubsub.item i JOIN pubsub.node n USING (node_id)"
                       " WHERE n.name = '%s' AND NOT n.deleted AND i.seq = %s",
                       stamp, node, aid);
    PGresult *r = h_sql(f->db, sql);
    ck_assert_msg(PQntuples(r) == 1, "archive id %s is no item of %s: %s", aid, node, text);
    ck_assert_msg(strcmp(PQgetvalue(r, 0, 0), item_id) == 0,
                  "archive id %s is item %s, the result carries %s: %s", aid,
                  PQgetvalue(r, 0, 0), item_id, text);
    ck_assert_msg(strcmp(PQgetvalue(r, 0, 1), "1") == 0,
                  "delay stamp %s is not the publication time of %s: %s", stamp, item_id, text);
    PQclear(r);
    free(sql);

    pg->archive_id[pg->n] = h_strf("%s", aid);
    pg->item_id[pg->n] = h_strf("%s", item_id);
    pg->n++;
    free(got);
    free(want);
    free(want_xml);
    free(qid);
    free(payload);
    free(text);
    xmpp_stanza_release(m);
}

/*
 * Runs an archive query (see mam_iq) that must succeed and returns what it
 * brought in *pg (page_free() it).  Every result message must have arrived
 * before the IQ result (XEP-0313 §4.1: the IQ result signals the end), so
 * the results are exactly the messages queued when the reply is seen.
 */
static void query_ok(struct fixture *f, struct h_client *c, const char *node,
                     const char *queryid, const char *fields, const char *rsm, struct page *pg)
{
    memset(pg, 0, sizeof *pg);
    xmpp_stanza_t *r = mam_iq(f, c, node, queryid, fields, rsm);
    char *what = h_strf("archive query on %s (form: %s; rsm: %s)", node ? node : "(no node)",
                        fields ? fields : "none", rsm ? rsm : "none");
    h_assert_result(f->proc, r, what);
    pg->fin_text = h_stanza_to_string(r);
    xmpp_stanza_t *fin = h_child(r, "fin", NS_MAM);
    ck_assert_msg(fin != NULL, "%s: no <fin xmlns='" NS_MAM "'/>: %s", what, pg->fin_text);
    xmpp_stanza_t *set = h_child(fin, "set", NS_RSM);
    ck_assert_msg(set != NULL, "%s: no RSM <set/> in <fin/>: %s", what, pg->fin_text);
    const char *complete = xmpp_stanza_get_attribute(fin, "complete");
    pg->complete = complete ? h_strf("%s", complete) : NULL;
    pg->first = h_child_text(set, "first", NS_RSM);
    xmpp_stanza_t *first = h_child(set, "first", NS_RSM);
    const char *index = first ? xmpp_stanza_get_attribute(first, "index") : NULL;
    pg->first_index = index ? h_strf("%s", index) : NULL;
    pg->last = h_child_text(set, "last", NS_RSM);
    pg->count = h_child_text(set, "count", NS_RSM);
    int queued = h_message_count(c);
    for (int i = 0; i < queued; i++)
        take_result(f, c, node, queryid, pg);
    xmpp_stanza_release(r);
    free(what);
}

/*
 * Asserts that pg is exactly the items ids[0..n) in this order (item ids
 * and archive ids = their seqs), that <first/>/<last/> name the first and
 * last of them (both absent when n is 0), that complete is 'true' when
 * complete and otherwise absent or 'false' (XEP-0313 §4.3.2), and that
 * <count/> is count.
 */
#define assert_page(f, pg, node, ids, n, complete, index, count)             \
    assert_page_at(__LINE__, (f), (pg), (node), (ids), (n), (complete), (index), (count))
static void assert_page_at(int line, struct fixture *f, const struct page *pg, const char *node,
                           char *const *ids, int n, bool complete, long long index,
                           long long count)
{
    struct sbuf got = {NULL, 0, 0}, want = {NULL, 0, 0};
    sbuf_puts(&got, "");
    sbuf_puts(&want, "");
    for (int i = 0; i < pg->n; i++) {
        sbuf_puts(&got, " ");
        sbuf_puts(&got, pg->item_id[i]);
    }
    for (int i = 0; i < n; i++) {
        sbuf_puts(&want, " ");
        sbuf_puts(&want, ids[i]);
    }
    ck_assert_msg(strcmp(got.data, want.data) == 0,
                  "line %d: results (in arrival order):\n got%s\nwant%s\nfin: %s", line,
                  got.data, want.data, pg->fin_text);
    for (int i = 0; i < n; i++) {
        char *seq = seq_of(f, node, ids[i]);
        ck_assert_msg(strcmp(pg->archive_id[i], seq) == 0,
                      "line %d: result %d (%s) has archive id %s, its seq is %s", line, i,
                      ids[i], pg->archive_id[i], seq);
        free(seq);
    }
    if (n > 0) {
        ck_assert_msg(pg->first && strcmp(pg->first, pg->archive_id[0]) == 0,
                      "line %d: <first/> is not %s: %s", line, pg->archive_id[0], pg->fin_text);
        ck_assert_msg(pg->last && strcmp(pg->last, pg->archive_id[n - 1]) == 0,
                      "line %d: <last/> is not %s: %s", line, pg->archive_id[n - 1],
                      pg->fin_text);
        /* XEP-0059 §2: the number of results of the whole set before the
         * page's first. */
        char *ix = h_strf("%lld", index);
        ck_assert_msg(pg->first_index && strcmp(pg->first_index, ix) == 0,
                      "line %d: expected <first index='%s'>: %s", line, ix, pg->fin_text);
        free(ix);
    } else {
        ck_assert_msg(pg->first == NULL && pg->last == NULL,
                      "line %d: <first/>/<last/> in an empty page: %s", line, pg->fin_text);
    }
    if (complete)
        ck_assert_msg(pg->complete && strcmp(pg->complete, "true") == 0,
                      "line %d: expected complete='true' (last page): %s", line, pg->fin_text);
    else
        ck_assert_msg(pg->complete == NULL || strcmp(pg->complete, "false") == 0,
                      "line %d: expected complete absent or 'false' (more results): %s", line,
                      pg->fin_text);
    char *cnt = h_strf("%lld", count);
    ck_assert_msg(pg->count && strcmp(pg->count, cnt) == 0,
                  "line %d: expected <count>%s</count> (the full result set): %s", line, cnt,
                  pg->fin_text);
    free(cnt);
    free(got.data);
    free(want.data);
}

/* Asserts that an archive query fails with exactly this error and that no
 * result message came before the error. */
#define query_error(f, c, node, fields, rsm, type, cond)                     \
    query_error_at(__LINE__, (f), (c), (node), (fields), (rsm), (type), (cond))
static void query_error_at(int line, struct fixture *f, struct h_client *c, const char *node,
                           const char *fields, const char *rsm, const char *type,
                           const char *cond)
{
    xmpp_stanza_t *r = mam_iq(f, c, node, "qerr", fields, rsm);
    char *what = h_strf("line %d: archive query on %s (form: %s; rsm: %s)", line,
                        node ? node : "(no node)", fields ? fields : "none", rsm ? rsm : "none");
    h_assert_error(f->proc, r, what, type, cond, H_NO_APP_CONDITION);
    ck_assert_msg(h_message_count(c) == 0, "%s: %d result messages before the error", what,
                  h_message_count(c));
    xmpp_stanza_release(r);
    free(what);
}

/* ---- tests -------------------------------------------------------------- */

/* 30 items paged 10 at a time with RSM <after/>: every item exactly once,
 * in order; results precede the IQ result; a query without queryid gets
 * results without one. */
START_TEST(test_page_forward)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("mam");
    create_node(&f, node);
    char *ids[30];
    make_ids(ids, "i", 1, 30);
    publish_all(&f, node, ids, 30);

    struct page pg;
    query_ok(&f, f.alice, node, "Q1", NULL, "<max>10</max>", &pg);
    assert_page(&f, &pg, node, ids, 10, false, 0, 30);

    /* Continue after the last id until complete: i1..i30 once, in order. */
    char *seen[30];
    int nseen = 0, pages = 1;
    for (int i = 0; i < pg.n; i++)
        seen[nseen++] = h_strf("%s", pg.item_id[i]);
    while (pg.complete == NULL || strcmp(pg.complete, "true") != 0) {
        ck_assert_msg(pages < 4, "still not complete after %d pages of 10 (30 items): %s", pages,
                      pg.fin_text);
        ck_assert_msg(pg.last != NULL, "an incomplete page without <last/>: %s", pg.fin_text);
        char *rsm = h_strf("<max>10</max><after>%s</after>", pg.last);
        page_free(&pg);
        query_ok(&f, f.alice, node, "Q1", NULL, rsm, &pg);
        free(rsm);
        pages++;
        for (int i = 0; i < pg.n; i++) {
            ck_assert_msg(nseen < 30, "more than 30 results over %d pages", pages);
            seen[nseen++] = h_strf("%s", pg.item_id[i]);
        }
        int start = (pages - 1) * 10;
        assert_page(&f, &pg, node, ids + start, 10, pages == 3, start, 30);
    }
    ck_assert_int_eq(pages, 3);
    ck_assert_int_eq(nseen, 30);
    for (int i = 0; i < 30; i++)
        ck_assert_str_eq(seen[i], ids[i]);
    free_ids(seen, nseen);
    page_free(&pg);

    /* Without queryid, results carry none (take_result checks it). */
    query_ok(&f, f.alice, node, NULL, NULL, "<max>1</max>", &pg);
    assert_page(&f, &pg, node, ids, 1, false, 0, 30);
    page_free(&pg);

    /* Without RSM, the whole archive at once. */
    query_ok(&f, f.alice, node, "Q2", NULL, NULL, &pg);
    assert_page(&f, &pg, node, ids, 30, true, 0, 30);
    page_free(&pg);

    assert_silence(&f, f.alice, SILENCE_MS);
    free_ids(ids, 30);
    free(node);
    fixture_down(&f);
}
END_TEST

/* 'start' and 'end' select by publication time, inclusive bounds; a range
 * holding nothing is a successful, empty query. */
START_TEST(test_time_range)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("mam");
    create_node(&f, node);
    char *ids[10];
    make_ids(ids, "t", 1, 10);
    publish_all(&f, node, ids, 5);
    h_sleep_ms(1200);
    char *t = db_now(&f);
    h_sleep_ms(200);
    publish_all(&f, node, ids + 5, 5);

    struct page pg;
    char *fields = h_strf(FIELD("start", "%s"), t);
    query_ok(&f, f.alice, node, "Qs", fields, NULL, &pg);
    assert_page(&f, &pg, node, ids + 5, 5, true, 0, 5);
    page_free(&pg);
    free(fields);

    fields = h_strf(FIELD("end", "%s"), t);
    query_ok(&f, f.alice, node, "Qe", fields, NULL, &pg);
    assert_page(&f, &pg, node, ids, 5, true, 0, 5);
    page_free(&pg);
    free(fields);

    /* Both bounds at t: nothing was published then. */
    fields = h_strf(FIELD("start", "%s") FIELD("end", "%s"), t, t);
    query_ok(&f, f.alice, node, "Qse", fields, NULL, &pg);
    assert_page(&f, &pg, node, ids, 0, true, -1, 0);
    page_free(&pg);
    free(fields);

    /* start with paging: the time filter is the result set, RSM pages it. */
    fields = h_strf(FIELD("start", "%s"), t);
    query_ok(&f, f.alice, node, "Qsp", fields, "<max>3</max>", &pg);
    assert_page(&f, &pg, node, ids + 5, 3, false, 0, 5);
    char *rsm = h_strf("<max>3</max><after>%s</after>", pg.last);
    page_free(&pg);
    query_ok(&f, f.alice, node, "Qsp", fields, rsm, &pg);
    assert_page(&f, &pg, node, ids + 8, 2, true, 3, 5);
    page_free(&pg);
    free(rsm);
    free(fields);

    /* Inclusive bounds: start = end = the stamp of t3 gives t3. */
    query_ok(&f, f.alice, node, "Qall", NULL, NULL, &pg);
    ck_assert_int_eq(pg.n, 10);
    char *sql = h_strf("SELECT to_char(i.published_at AT TIME ZONE 'UTC',"
                       " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM pubsub.item i"
                       " JOIN pubsub.node n USING (node_id) WHERE n.name = '%s'"
                       " AND i.item_id = 't3'", node);
    PGresult *r = h_sql(f.db, sql);
    char *stamp3 = h_strf("%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    free(sql);
    page_free(&pg);
    fields = h_strf(FIELD("start", "%s") FIELD("end", "%s"), stamp3, stamp3);
    query_ok(&f, f.alice, node, "Qeq", fields, NULL, &pg);
    assert_page(&f, &pg, node, ids + 2, 1, true, 0, 1);
    page_free(&pg);
    free(fields);
    free(stamp3);

    assert_silence(&f, f.alice, SILENCE_MS);
    free(t);
    free_ids(ids, 10);
    free(node);
    fixture_down(&f);
}
END_TEST

/* A consumer remembers the last id it saw and catches up with after-id. */
START_TEST(test_catch_up_after_id)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("mam");
    create_node(&f, node);
    char *ids[25];
    make_ids(ids, "c", 1, 25);
    publish_all(&f, node, ids, 5);

    struct page pg;
    query_ok(&f, f.alice, node, "Qc1", NULL, NULL, &pg);
    assert_page(&f, &pg, node, ids, 5, true, 0, 5);
    char *remembered = h_strf("%s", pg.last);
    page_free(&pg);

    publish_all(&f, node, ids + 5, 20);
    char *fields = h_strf(FIELD("after-id", "%s"), remembered);
    query_ok(&f, f.alice, node, "Qc2", fields, NULL, &pg);
    ck_assert_msg(pg.complete && strcmp(pg.complete, "true") == 0,
                  "catch-up of 20 without <max/> is not complete: %s", pg.fin_text);
    ck_assert_int_eq(pg.n, 20);
    for (int i = 0; i < 20; i++) {
        ck_assert_str_eq(pg.item_id[i], ids[5 + i]);
        char *seq = seq_of(&f, node, ids[5 + i]);
        ck_assert_str_eq(pg.archive_id[i], seq);
        free(seq);
    }
    ck_assert_pstr_eq(pg.first, pg.archive_id[0]);
    ck_assert_pstr_eq(pg.last, pg.archive_id[19]);
    page_free(&pg);
    free(fields);

    /* Caught up: after the newest id there is nothing. */
    char *newest = seq_of(&f, node, ids[24]);
    fields = h_strf(FIELD("after-id", "%s"), newest);
    query_ok(&f, f.alice, node, "Qc3", fields, NULL, &pg);
    ck_assert_msg(pg.n == 0 && pg.complete && strcmp(pg.complete, "true") == 0 &&
                      pg.first == NULL && pg.last == NULL,
                  "after the newest id: %d results, %s", pg.n, pg.fin_text);
    page_free(&pg);
    free(fields);
    free(newest);

    assert_silence(&f, f.alice, SILENCE_MS);
    free(remembered);
    free_ids(ids, 25);
    free(node);
    fixture_down(&f);
}
END_TEST

/* <before/> gives the last page; <before>ID</before> the page just before
 * ID; pages stay in chronological order; paging back ends complete. */
START_TEST(test_page_backward)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("mam");
    create_node(&f, node);
    char *ids[10];
    make_ids(ids, "b", 1, 10);
    publish_all(&f, node, ids, 10);

    struct page pg;
    query_ok(&f, f.alice, node, "Qb", NULL, "<max>3</max><before/>", &pg);
    assert_page(&f, &pg, node, ids + 7, 3, false, 7, 10);

    /* The page before the first of those, and so on back to b1. */
    static const int starts[] = {4, 1, 0};
    static const int sizes[] = {3, 3, 1};
    for (int k = 0; k < 3; k++) {
        char *rsm = h_strf("<max>3</max><before>%s</before>", pg.first);
        page_free(&pg);
        query_ok(&f, f.alice, node, "Qb", NULL, rsm, &pg);
        assert_page(&f, &pg, node, ids + starts[k], sizes[k], k == 2, starts[k], 10);
        free(rsm);
    }
    page_free(&pg);

    /* <before/> without <max/>: everything, complete. */
    query_ok(&f, f.alice, node, "Qb2", NULL, "<before/>", &pg);
    assert_page(&f, &pg, node, ids, 10, true, 0, 10);
    page_free(&pg);

    assert_silence(&f, f.alice, SILENCE_MS);
    free_ids(ids, 10);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * 'after-id' and 'before-id' are filters (XEP-0313 §4.1.1.3): they define
 * the result set, which <count/> describes (XEP-0059 §2.6), and RSM pages
 * through it.  Unlike RSM <before/>, 'before-id' does not page backwards
 * (XEP-0313 §12, item 2): with <max>3</max> it gives the first 3 items of
 * the set, not the 3 just before the id.
 */
START_TEST(test_id_filters_define_result_set)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("mam");
    create_node(&f, node);
    char *ids[10];
    make_ids(ids, "d", 1, 10);
    publish_all(&f, node, ids, 10);
    char *seq3 = seq_of(&f, node, "d3");
    char *seq8 = seq_of(&f, node, "d8");
    struct page pg;

    /* after-id = d3: the set is d4..d10 (7 items). */
    char *fields = h_strf(FIELD("after-id", "%s"), seq3);
    query_ok(&f, f.alice, node, "Qa", fields, NULL, &pg);
    assert_page(&f, &pg, node, ids + 3, 7, true, 0, 7);
    page_free(&pg);
    query_ok(&f, f.alice, node, "Qa", fields, "<max>4</max>", &pg);
    assert_page(&f, &pg, node, ids + 3, 4, false, 0, 7);
    /* RSM pages on inside the set ... */
    char *rsm = h_strf("<max>4</max><after>%s</after>", pg.last);
    page_free(&pg);
    query_ok(&f, f.alice, node, "Qa", fields, rsm, &pg);
    assert_page(&f, &pg, node, ids + 7, 3, true, 4, 7);
    page_free(&pg);
    free(rsm);
    /* ... and never leaves it: RSM <after/> an id before the set's start
     * still gives only items of the set. */
    char *seq1 = seq_of(&f, node, "d1");
    rsm = h_strf("<max>2</max><after>%s</after>", seq1);
    query_ok(&f, f.alice, node, "Qa", fields, rsm, &pg);
    assert_page(&f, &pg, node, ids + 3, 2, false, 0, 7);
    page_free(&pg);
    free(rsm);
    free(seq1);
    free(fields);

    /* before-id = d8: the set is d1..d7 (7 items), paged forward. */
    fields = h_strf(FIELD("before-id", "%s"), seq8);
    query_ok(&f, f.alice, node, "Qbi", fields, NULL, &pg);
    assert_page(&f, &pg, node, ids, 7, true, 0, 7);
    page_free(&pg);
    query_ok(&f, f.alice, node, "Qbi", fields, "<max>3</max>", &pg);
    assert_page(&f, &pg, node, ids, 3, false, 0, 7);
    page_free(&pg);
    free(fields);

    /* Both: the set strictly between d3 and d8 (d4..d7). */
    fields = h_strf(FIELD("after-id", "%s") FIELD("before-id", "%s"), seq3, seq8);
    query_ok(&f, f.alice, node, "Qab", fields, NULL, &pg);
    assert_page(&f, &pg, node, ids + 3, 4, true, 0, 4);
    page_free(&pg);
    /* ... whose last page is d6, d7 (RSM <before/> pages backwards). */
    query_ok(&f, f.alice, node, "Qab", fields, "<max>2</max><before/>", &pg);
    assert_page(&f, &pg, node, ids + 5, 2, false, 2, 4);
    page_free(&pg);
    free(fields);

    assert_silence(&f, f.alice, SILENCE_MS);
    free(seq3);
    free(seq8);
    free_ids(ids, 10);
    free(node);
    fixture_down(&f);
}
END_TEST

/* The error conditions, exactly; no result precedes an error. */
START_TEST(test_errors)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("mam");
    create_node(&f, node);
    char *ids[3];
    make_ids(ids, "e", 1, 3);
    publish_all(&f, node, ids, 3);
    char *seq1 = seq_of(&f, node, "e1");
    ck_assert_msg(strcmp(seq1, "999999") != 0, "test bug: 999999 is an archive id");

    /* Unknown node; no node at all (the service itself has no archive). */
    char *missing = h_uid("missing");
    query_error(&f, f.alice, missing, NULL, NULL, "cancel", "item-not-found");
    free(missing);
    query_error(&f, f.alice, NULL, NULL, NULL, "cancel", "feature-not-implemented");

    /* Ids not in the archive, in the form (XEP-0313 §4.1.1.3) and in RSM
     * (§4.3.2); numeric and not. */
    query_error(&f, f.alice, node, FIELD("after-id", "999999"), NULL, "cancel",
                "item-not-found");
    query_error(&f, f.alice, node, FIELD("before-id", "999999"), NULL, "cancel",
                "item-not-found");
    query_error(&f, f.alice, node, NULL, "<after>999999</after>", "cancel", "item-not-found");
    query_error(&f, f.alice, node, NULL, "<before>999999</before>", "cancel", "item-not-found");
    query_error(&f, f.alice, node, FIELD("after-id", "e1"), NULL, "cancel", "item-not-found");
    query_error(&f, f.alice, node, FIELD("before-id", "x-1"), NULL, "cancel", "item-not-found");
    query_error(&f, f.alice, node, NULL, "<after>abc</after>", "cancel", "item-not-found");
    query_error(&f, f.alice, node, NULL, "<max>2</max><before>abc</before>", "cancel",
                "item-not-found");
    /* A known id and an unknown one together still fail. */
    char *fields = h_strf(FIELD("after-id", "%s") FIELD("before-id", "999999"), seq1);
    query_error(&f, f.alice, node, fields, NULL, "cancel", "item-not-found");
    free(fields);

    /* A malformed DateTime in a known field. */
    query_error(&f, f.alice, node, FIELD("start", "yesterday"), NULL, "modify", "bad-request");
    query_error(&f, f.alice, node, FIELD("end", "2024-13-01T00:00:00Z"), NULL, "modify",
                "bad-request");
    /* Well-formed but not a date: the service says so, not its database. */
    query_error(&f, f.alice, node, FIELD("start", "2025-02-29T00:00:00Z"), NULL, "modify",
                "bad-request");
    query_error(&f, f.alice, node, FIELD("end", "2024-04-31T12:00:00Z"), NULL, "modify",
                "bad-request");

    /* The same node still answers. */
    struct page pg;
    query_ok(&f, f.alice, node, "Qok", NULL, NULL, &pg);
    assert_page(&f, &pg, node, ids, 3, true, 0, 3);
    page_free(&pg);

    assert_silence(&f, f.alice, SILENCE_MS);
    free(seq1);
    free_ids(ids, 3);
    free(node);
    fixture_down(&f);
}
END_TEST

/* "If a client includes a form field that the server does not recognise,
 * the server MUST respond with a 'feature-not-implemented' error."
 * (XEP-0313 §4.1.1.6) */
START_TEST(test_unknown_field)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("mam");
    create_node(&f, node);
    publish(&f, node, "u1");
    query_error(&f, f.alice, node, FIELD("{urn:example:pubsubd}colour", "red"), NULL, "cancel",
                "feature-not-implemented");
    assert_silence(&f, f.alice, SILENCE_MS);
    free(node);
    fixture_down(&f);
}
END_TEST

/* A whitelist node's archive: members (the owner) read it, others get
 * auth/forbidden and no results. */
START_TEST(test_whitelist_forbidden)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("mam");
    create_node(&f, node);
    char *inner = h_strf("<configure node='%s'><x xmlns='" NS_DATA "' type='submit'>"
                         FORM_TYPE(NS_NODE_CONFIG) FIELD("pubsub#access_model", "whitelist")
                         "</x></configure>", node);
    xmpp_stanza_t *r = pubsub_set(&f, f.owner, H_NS_PUBSUB_OWNER, inner);
    h_assert_result(f.proc, r, "configure access_model=whitelist");
    xmpp_stanza_release(r);
    free(inner);
    char *ids[2];
    make_ids(ids, "w", 1, 2);
    publish_all(&f, node, ids, 2);

    query_error(&f, f.alice, node, NULL, NULL, "auth", "forbidden");
    query_error(&f, f.alice, node, NULL, "<max>1</max><before/>", "auth", "forbidden");

    struct page pg;
    query_ok(&f, f.owner, node, "Qo", NULL, NULL, &pg);
    assert_page(&f, &pg, node, ids, 2, true, 0, 2);
    page_free(&pg);

    assert_silence(&f, f.alice, SILENCE_MS);
    free_ids(ids, 2);
    free(node);
    fixture_down(&f);
}
END_TEST

/* The node advertises MAM; an IQ get returns the query form. */
START_TEST(test_discovery_and_form)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("mam");
    create_node(&f, node);

    char *id = h_uid("info");
    char *xml = h_strf("<iq type='get' to='%s' id='%s'><query xmlns='" H_NS_DISCO_INFO
                       "' node='%s'/></iq>", f.jid, id, node);
    xmpp_stanza_t *r = h_iq(f.alice, xml, IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r, "node disco#info");
    char *text = h_stanza_to_string(r);
    ck_assert_msg(h_disco_has_feature(r, NS_MAM), "no " NS_MAM ": %s", text);
    ck_assert_msg(h_disco_has_feature(r, NS_MAM_EXTENDED), "no " NS_MAM_EXTENDED ": %s", text);
    free(text);
    xmpp_stanza_release(r);
    free(xml);
    free(id);

    id = h_uid("form");
    xml = h_strf("<iq type='get' to='%s' id='%s'><query xmlns='" NS_MAM "' node='%s'/></iq>",
                 f.jid, id, node);
    r = h_iq(f.alice, xml, IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r, "archive form");
    text = h_stanza_to_string(r);
    xmpp_stanza_t *x = h_child(h_child(r, "query", NS_MAM), "x", NS_DATA);
    ck_assert_msg(x != NULL, "no <query xmlns='" NS_MAM "'><x xmlns='" NS_DATA "'/>: %s", text);
    ck_assert_pstr_eq(xmpp_stanza_get_type(x), "form");
    bool form_type = false;
    static const char *const wanted[] = {"start", "end", "after-id", "before-id"};
    bool seen[4] = {false, false, false, false};
    for (xmpp_stanza_t *fd = xmpp_stanza_get_children(x); fd; fd = xmpp_stanza_get_next(fd)) {
        if (!xmpp_stanza_is_tag(fd) || strcmp(xmpp_stanza_get_name(fd), "field") != 0)
            continue;
        const char *var = xmpp_stanza_get_attribute(fd, "var");
        ck_assert_msg(var != NULL, "a field without var: %s", text);
        /* XEP-0313 §4.1.1.6: no field is marked required. */
        ck_assert_msg(h_child(fd, "required", NULL) == NULL, "field %s is required: %s", var,
                      text);
        if (strcmp(var, "FORM_TYPE") == 0) {
            char *v = h_child_text(fd, "value", NULL);
            ck_assert_pstr_eq(xmpp_stanza_get_type(fd), "hidden");
            ck_assert_pstr_eq(v, NS_MAM);
            free(v);
            form_type = true;
        }
        for (int i = 0; i < 4; i++) {
            if (strcmp(var, wanted[i]) == 0) {
                ck_assert_msg(!seen[i], "field %s twice: %s", var, text);
                ck_assert_pstr_eq(xmpp_stanza_get_type(fd), "text-single");
                seen[i] = true;
            }
        }
    }
    ck_assert_msg(form_type, "no FORM_TYPE " NS_MAM ": %s", text);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(seen[i], "no field %s: %s", wanted[i], text);
    free(text);
    xmpp_stanza_release(r);
    free(xml);
    free(id);

    assert_silence(&f, f.alice, SILENCE_MS);
    free(node);
    fixture_down(&f);
}
END_TEST

static TCase *tcase(const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, TEST_TIMEOUT_S);
    tcase_add_test(tc, test);
    return tc;
}

static Suite *mam_suite(void)
{
    Suite *s = suite_create("mam");
    suite_add_tcase(s, tcase("page_forward", test_page_forward));
    suite_add_tcase(s, tcase("time_range", test_time_range));
    suite_add_tcase(s, tcase("catch_up_after_id", test_catch_up_after_id));
    suite_add_tcase(s, tcase("page_backward", test_page_backward));
    suite_add_tcase(s, tcase("id_filters_define_result_set", test_id_filters_define_result_set));
    suite_add_tcase(s, tcase("errors", test_errors));
    suite_add_tcase(s, tcase("unknown_field", test_unknown_field));
    suite_add_tcase(s, tcase("whitelist_forbidden", test_whitelist_forbidden));
    suite_add_tcase(s, tcase("discovery_and_form", test_discovery_and_form));
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mam_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
