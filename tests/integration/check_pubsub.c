/*
 * check_pubsub.c - integration tests of the XEP-0060 operations pubsubd
 * implements, through real clients: create (named, instant), publish (with
 * and without an item id, overwrite), retrieve items (all, max_items, by
 * id), retract, delete, subscribe and unsubscribe, the notifications each
 * of them sends, and their error cases, each with its exact condition.
 *
 * Assertions are exact: replies and notifications are compared element by
 * element after canonicalisation (attributes sorted, adjacent text merged,
 * see xml_canon), notification ids are compared with the
 * ps-<node_id>-<seq>-<sub_id> built from the database, and every rejected
 * request is also checked to have stored nothing (pubsub.item, pubsub.event,
 * node positions, subscriptions) and to have notified no one.
 *
 * Each test starts its own pubsubd on its own component JID (cN.<domain>)
 * with a fresh database and stops it at the end, asserting a clean exit.
 */
#include "harness.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TIMEOUT_S 90
#define COMPONENT_UP_MS 10000
#define IQ_TIMEOUT_MS 5000
#define NOTIFY_TIMEOUT_MS 5000
#define QUIET_MS 700         /* how long "no further message" is watched */
#define MAX_PAYLOAD_BYTES 1024 /* PUBSUBD_MAX_PAYLOAD_BYTES of test 4 */
#define NODE_GONE_MS 5000

#define NS_TEST "urn:example:pubsubd:test"

/* One test's pubsubd and database; the owner's client waits for it. */
struct fixture {
    char *jid;   /* component JID */
    char *db;    /* conninfo of the fresh database */
    struct h_proc *proc;
    struct h_client *owner;
};

/*
 * Waits until jid answers disco#items with a result: the link is up (see
 * h_wait_component) and so is its database (requests that need the
 * database get a wait error while it is not connected).
 */
static void wait_ready(struct h_proc *proc, struct h_client *c,
                       const char *jid)
{
    h_wait_service_ready(proc, c, jid, COMPONENT_UP_MS);
}

/* Logs user in and drops the messages that come with the login: offline
 * messages left by earlier runs (this test has no node yet). */
static struct h_client *connect_user(const char *user)
{
    struct h_client *c = h_client_connect(user);
    int stale = 0;
    xmpp_stanza_t *m;
    while ((m = h_next_message(c, 100)) != NULL) {
        xmpp_stanza_release(m);
        stale++;
    }
    if (stale > 0)
        fprintf(stderr, "%s had %d messages from earlier runs\n", user, stale);
    return c;
}

static void fixture_up_env(struct fixture *f, int n,
                           const char *const *extra_env)
{
    f->jid = h_strf("c%d.%s", n, h_env("PST_DOMAIN"));
    f->db = h_db_create();
    f->proc = h_pubsubd_start(f->jid, f->db, extra_env);
    f->owner = connect_user("owner");
    wait_ready(f->proc, f->owner, f->jid);
}

static void fixture_up(struct fixture *f, int n)
{
    fixture_up_env(f, n, NULL);
}

static void fixture_down(struct fixture *f)
{
    h_client_disconnect(f->owner);
    h_pubsubd_stop(f->proc);
    free(f->db);
    free(f->jid);
}

/* The canonical text of element s (h_canon: effective namespaces,
 * attributes sorted, children in order; "(none)" for NULL); caller frees. */
static char *xml_canon(xmpp_stanza_t *s)
{
    return s != NULL ? h_canon(s, NULL) : strdup("(none)");
}

/* Fails (with the daemon's log) unless element got equals expected_xml. */
#define assert_xml_eq(f, got, expected_xml, what)                            \
    assert_xml_eq_at(__LINE__, (f), (got), (expected_xml), (what))
static void assert_xml_eq_at(int line, struct fixture *f, xmpp_stanza_t *got,
                             const char *expected_xml, const char *what)
{
    char *g = xml_canon(got);
    char *e = h_canon_xml(expected_xml);
    if (strcmp(g, e) != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("line %d: %s:\n  expected %s\n  got      %s", line, what,
                     e, g);
    }
    free(g);
    free(e);
}

/* ---- requests ------------------------------------------------------------ */

/* Sends <iq type=type to=component><pubsub xmlns=ns>inner</pubsub></iq> and
 * returns the reply (NULL after IQ_TIMEOUT_MS); caller releases. */
static xmpp_stanza_t *pubsub_iq(struct fixture *f, struct h_client *c,
                                const char *type, const char *ns,
                                const char *inner)
{
    char *id = h_uid("ps");
    char *xml = h_strf("<iq type='%s' to='%s' id='%s'><pubsub xmlns='%s'>%s"
                       "</pubsub></iq>", type, f->jid, id, ns, inner);
    xmpp_stanza_t *r = h_iq(c, xml, IQ_TIMEOUT_MS);
    if (r != NULL) {
        const char *from = xmpp_stanza_get_from(r);
        if (from == NULL || strcmp(from, f->jid) != 0) {
            char *text = h_stanza_to_string(r);
            ck_abort_msg("reply to %s not from %s: %s", xml, f->jid, text);
        }
    }
    free(xml);
    free(id);
    return r;
}

static xmpp_stanza_t *ps_set(struct fixture *f, struct h_client *c,
                             const char *inner)
{
    return pubsub_iq(f, c, "set", H_NS_PUBSUB, inner);
}

static xmpp_stanza_t *ps_get(struct fixture *f, struct h_client *c,
                             const char *inner)
{
    return pubsub_iq(f, c, "get", H_NS_PUBSUB, inner);
}

/* Asserts an empty IQ result. */
#define assert_empty_result(f, r, what)                                      \
    do {                                                                     \
        h_assert_result((f)->proc, (r), (what));                             \
        char *t_ = h_stanza_to_string(r);                                    \
        ck_assert_msg(h_count_children((r), NULL, NULL) == 0,                \
                      "%s: expected an empty result, got %s", (what), t_);  \
        free(t_);                                                            \
    } while (0)

/* Asserts the exact error and, for a XEP-0060 application condition, that
 * it is in the pubsub#errors namespace. */
#define assert_ps_error(f, r, what, type, cond, app)                         \
    do {                                                                     \
        h_assert_error((f)->proc, (r), (what), (type), (cond), (app));       \
        assert_app_ns_at(__LINE__, (f), (r), (what), (app));                 \
    } while (0)
static void assert_app_ns_at(int line, struct fixture *f, xmpp_stanza_t *r,
                             const char *what, const char *app)
{
    if (app == NULL || *app == '\0')
        return;
    xmpp_stanza_t *e = h_child(r, "error", NULL);
    if (h_child(e, app, H_NS_PUBSUB_ERRORS) == NULL) {
        h_fail_dump(f->proc);
        char *t = h_stanza_to_string(r);
        ck_abort_msg("line %d: %s: <%s/> is not in namespace %s: %s", line,
                     what, app, H_NS_PUBSUB_ERRORS, t);
    }
}

static void create_node(struct fixture *f, struct h_client *c,
                        const char *node)
{
    char *inner = h_strf("<create node='%s'/>", node);
    xmpp_stanza_t *r = ps_set(f, c, inner);
    assert_empty_result(f, r, "create");
    xmpp_stanza_release(r);
    free(inner);
}

/* The node's id in the database. */
static long long node_id_of(struct fixture *f, const char *node)
{
    char *sql = h_strf("SELECT node_id FROM pubsub.node WHERE name = '%s' "
                       "AND NOT deleted", node);
    long long id = h_sql_int(f->db, sql);
    free(sql);
    return id;
}

/* The sub_id of jid's subscription to node (as in notification ids). */
static long long sub_id_of(struct fixture *f, long long node_id,
                           const char *jid)
{
    char *sql = h_strf("SELECT sub_id FROM pubsub.subscription WHERE "
                       "node_id = %lld AND jid = '%s'", node_id, jid);
    long long id = h_sql_int(f->db, sql);
    free(sql);
    return id;
}

/* Subscribes c's bare JID to node; asserts the exact result and that the
 * subid is the stored one.  Returns the sub_id (notification ids). */
static long long subscribe(struct fixture *f, struct h_client *c,
                           const char *node)
{
    const char *jid = h_client_bare_jid(c);
    char *inner = h_strf("<subscribe node='%s' jid='%s'/>", node, jid);
    xmpp_stanza_t *r = ps_set(f, c, inner);
    h_assert_result(f->proc, r, "subscribe");
    long long node_id = node_id_of(f, node);
    char *sql = h_strf("SELECT count(*) FROM pubsub.subscription WHERE "
                       "node_id = %lld AND jid = '%s'", node_id, jid);
    ck_assert_int_eq(h_sql_int(f->db, sql), 1);
    free(sql);
    sql = h_strf("SELECT subid FROM pubsub.subscription WHERE node_id = %lld "
                 "AND jid = '%s'", node_id, jid);
    PGresult *res = h_sql(f->db, sql);
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><subscription "
                            "node='%s' jid='%s' subid='%s' "
                            "subscription='subscribed'/></pubsub>",
                            node, jid, PQgetvalue(res, 0, 0));
    PQclear(res);
    assert_xml_eq(f, h_child(r, NULL, NULL), expected, "subscribe result");
    ck_assert_int_eq(h_count_children(r, NULL, NULL), 1);
    free(expected);
    free(sql);
    free(inner);
    xmpp_stanza_release(r);
    return sub_id_of(f, node_id, jid);
}

/* Publishes payload as item_id (NULL: none) on node as c; asserts the
 * exact result and returns the item id (caller frees). */
static char *publish(struct fixture *f, struct h_client *c, const char *node,
                     const char *item_id, const char *payload)
{
    char *idattr = item_id != NULL ? h_strf(" id='%s'", item_id)
                                   : h_strf("%s", "");
    char *inner = h_strf("<publish node='%s'><item%s>%s</item></publish>",
                         node, idattr, payload);
    xmpp_stanza_t *r = ps_set(f, c, inner);
    h_assert_result(f->proc, r, "publish");
    xmpp_stanza_t *item =
        h_child(h_child(h_child(r, "pubsub", H_NS_PUBSUB), "publish", NULL),
                "item", NULL);
    const char *got = item != NULL ? xmpp_stanza_get_id(item) : NULL;
    char *text = h_stanza_to_string(r);
    ck_assert_msg(got != NULL, "publish result without <item id=.../>: %s",
                  text);
    char *id = h_strf("%s", got);
    if (item_id == NULL) {
        bool hex = strlen(id) == 32;
        for (const char *p = id; hex && *p != '\0'; p++)
            hex = isxdigit((unsigned char)*p) != 0;
        ck_assert_msg(hex, "generated item id is not 32 hex digits: %s",
                      text);
    } else {
        ck_assert_pstr_eq(id, item_id);
    }
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><publish "
                            "node='%s'><item id='%s'/></publish></pubsub>",
                            node, id);
    assert_xml_eq(f, h_child(r, NULL, NULL), expected, "publish result");
    ck_assert_int_eq(h_count_children(r, NULL, NULL), 1);
    free(expected);
    free(text);
    xmpp_stanza_release(r);
    free(inner);
    free(idattr);
    return id;
}

/* The <pubsub><items/></pubsub> of an items request by c (all, or with
 * extra attributes/children); asserts a result and that the whole reply
 * equals expected_items (the <items/> element, canonical). */
static void assert_items(struct fixture *f, struct h_client *c,
                         const char *node, const char *attrs,
                         const char *children, const char *expected_items)
{
    char *inner = h_strf("<items node='%s'%s>%s</items>", node,
                         attrs != NULL ? attrs : "",
                         children != NULL ? children : "");
    char *what = h_strf("items request %s", inner);
    xmpp_stanza_t *r = ps_get(f, c, inner);
    h_assert_result(f->proc, r, what);
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'>%s</pubsub>",
                            expected_items);
    assert_xml_eq(f, h_child(r, NULL, NULL), expected, what);
    ck_assert_int_eq(h_count_children(r, NULL, NULL), 1);
    free(expected);
    xmpp_stanza_release(r);
    free(what);
    free(inner);
}

/* The next message of c, or a failed test naming what was awaited. */
static xmpp_stanza_t *next_message(struct fixture *f, struct h_client *c,
                                   const char *what)
{
    xmpp_stanza_t *m = h_next_message(c, NOTIFY_TIMEOUT_MS);
    if (m == NULL) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s received no message within %d ms (expected %s)",
                     h_client_jid(c), NOTIFY_TIMEOUT_MS, what);
    }
    return m;
}

/* Asserts the next message of c is the notification whose <event/> is
 * event_xml, from the component, to c's bare JID, id
 * ps-<node_id>-<seq>-<sub_id>, type headline. */
static void expect_event(struct fixture *f, struct h_client *c,
                         long long node_id, long long seq, long long sub_id,
                         const char *event_xml)
{
    char *what = h_strf("notification %s", event_xml);
    xmpp_stanza_t *m = next_message(f, c, what);
    char *text = h_stanza_to_string(m);
    char *id = h_strf("ps-%lld-%lld-%lld", node_id, seq, sub_id);
    const char *type = xmpp_stanza_get_type(m);
    bool ok = strcmp(xmpp_stanza_get_name(m), "message") == 0 &&
              xmpp_stanza_get_from(m) != NULL &&
              strcmp(xmpp_stanza_get_from(m), f->jid) == 0 &&
              xmpp_stanza_get_to(m) != NULL &&
              strcmp(xmpp_stanza_get_to(m), h_client_bare_jid(c)) == 0 &&
              xmpp_stanza_get_id(m) != NULL &&
              strcmp(xmpp_stanza_get_id(m), id) == 0 && type != NULL &&
              strcmp(type, "headline") == 0 &&
              h_count_children(m, NULL, NULL) == 1;
    if (!ok) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: expected <message from='%s' to='%s' id='%s' "
                     "type='headline'> with one child, got %s",
                     h_client_jid(c), f->jid, h_client_bare_jid(c), id, text);
    }
    assert_xml_eq(f, h_child(m, NULL, NULL), event_xml, what);
    free(id);
    free(text);
    free(what);
    xmpp_stanza_release(m);
}

static char *event_item(const char *node, const char *item_id,
                        const char *payload)
{
    return h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'><items node='%s'>"
                  "<item id='%s'>%s</item></items></event>", node, item_id,
                  payload);
}

static void expect_item(struct fixture *f, struct h_client *c,
                        long long node_id, long long seq, long long sub_id,
                        const char *node, const char *item_id,
                        const char *payload)
{
    char *ev = event_item(node, item_id, payload);
    expect_event(f, c, node_id, seq, sub_id, ev);
    free(ev);
}

/* A payload with attributes, nesting and escaped text. */
static char *test_payload(const char *text)
{
    return h_strf("<entry xmlns='" NS_TEST "' lang='en'><title>%s</title>"
                  "<body n='1'>a &lt; b &amp;&amp; c &gt; d</body></entry>",
                  text);
}

static void assert_disco_items(struct fixture *f, struct h_client *c,
                               const char *expected_query)
{
    char *id = h_uid("di");
    char *xml = h_strf("<iq type='get' to='%s' id='%s'><query xmlns='"
                       H_NS_DISCO_ITEMS "'/></iq>", f->jid, id);
    xmpp_stanza_t *r = h_iq(c, xml, IQ_TIMEOUT_MS);
    h_assert_result(f->proc, r, "disco#items");
    assert_xml_eq(f, h_child(r, NULL, NULL), expected_query, "disco#items");
    xmpp_stanza_release(r);
    free(xml);
    free(id);
}

/* Everything a rejected request must leave unchanged. */
struct counts {
    long long nodes, items, events, seqs, subscriptions, affiliations;
};

static struct counts counts_now(struct fixture *f)
{
    struct counts c;
    c.nodes = h_sql_int(f->db, "SELECT count(*) FROM pubsub.node");
    c.items = h_sql_int(f->db, "SELECT count(*) FROM pubsub.item");
    c.events = h_sql_int(f->db, "SELECT count(*) FROM pubsub.event");
    c.seqs = h_sql_int(f->db, "SELECT coalesce(sum(last_seq), 0) FROM "
                              "pubsub.node");
    c.subscriptions = h_sql_int(f->db, "SELECT count(*) FROM "
                                       "pubsub.subscription");
    c.affiliations = h_sql_int(f->db, "SELECT count(*) FROM "
                                      "pubsub.affiliation");
    return c;
}

#define assert_counts_same(f, before, what)                                  \
    assert_counts_same_at(__LINE__, (f), (before), (what))
static void assert_counts_same_at(int line, struct fixture *f,
                                  const struct counts *b, const char *what)
{
    struct counts a = counts_now(f);
    if (a.nodes != b->nodes || a.items != b->items || a.events != b->events ||
        a.seqs != b->seqs || a.subscriptions != b->subscriptions ||
        a.affiliations != b->affiliations) {
        h_fail_dump(f->proc);
        ck_abort_msg("line %d: %s stored something: nodes %lld -> %lld, items "
                     "%lld -> %lld, events %lld -> %lld, sum(last_seq) %lld "
                     "-> %lld, subscriptions %lld -> %lld, affiliations %lld "
                     "-> %lld", line, what, b->nodes, a.nodes, b->items,
                     a.items, b->events, a.events, b->seqs, a.seqs,
                     b->subscriptions, a.subscriptions, b->affiliations,
                     a.affiliations);
    }
}

/* Waits until the dispatcher has caught up with every node (its position
 * is the node's last seq), so that the counts only change by request. */
static void wait_dispatched(struct fixture *f)
{
    static const char *const sql =
        "SELECT count(*) FROM pubsub.dispatch d JOIN pubsub.node n "
        "USING (node_id) WHERE d.delivered_seq < n.last_seq "
        "OR d.fanout_cursor <> 0";
    long long t0 = h_now_ms(), n;
    while ((n = h_sql_int(f->db, sql)) != 0 &&
           h_now_ms() - t0 < NOTIFY_TIMEOUT_MS)
        h_pump(50);
    if (n != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("%lld node(s) not dispatched up to their last seq %d ms "
                     "after the last notification", n, NOTIFY_TIMEOUT_MS);
    }
}

/* Sends a request (inner of <pubsub xmlns=ns/>, IQ set) as c and asserts
 * the error and that nothing changed. */
static void bad_request_ns(struct fixture *f, struct h_client *c,
                           const char *ns, const char *inner, const char *what,
                           const char *type, const char *cond,
                           const char *app)
{
    wait_dispatched(f);
    struct counts before = counts_now(f);
    xmpp_stanza_t *r = pubsub_iq(f, c, "set", ns, inner);
    assert_ps_error(f, r, what, type, cond, app);
    xmpp_stanza_release(r);
    assert_counts_same(f, &before, what);
}

static void bad_request(struct fixture *f, struct h_client *c,
                        const char *inner, const char *what, const char *type,
                        const char *cond, const char *app)
{
    bad_request_ns(f, c, H_NS_PUBSUB, inner, what, type, cond, app);
}

/* ---- 1. the round trip --------------------------------------------------- */

START_TEST(test_round_trip)
{
    struct fixture f;
    fixture_up(&f, 1);
    struct h_client *alice = connect_user("alice");
    struct h_client *bob = connect_user("bob");
    struct h_client *publisher = connect_user("publisher");
    char *node = h_uid("round");

    create_node(&f, f.owner, node);
    char *q = h_strf("<query xmlns='" H_NS_DISCO_ITEMS "'><item jid='%s' "
                     "node='%s'/></query>", f.jid, node);
    assert_disco_items(&f, alice, q);
    free(q);
    long long nid = node_id_of(&f, node);
    long long sa = subscribe(&f, alice, node);
    long long sb = subscribe(&f, bob, node);

    /* The owner publishes. */
    char *p1 = test_payload("first");
    char *id1 = publish(&f, f.owner, node, "i1", p1);
    expect_item(&f, alice, nid, 1, sa, node, "i1", p1);
    expect_item(&f, bob, nid, 1, sb, node, "i1", p1);

    /* "publisher" may not publish until it is affiliated as a publisher
     * (affiliations cannot be set over XMPP yet: SQL). */
    char *p2 = test_payload("second");
    char *inner = h_strf("<publish node='%s'><item id='i2'>%s</item>"
                         "</publish>", node, p2);
    bad_request(&f, publisher, inner, "publish by a user without "
                "affiliation", "auth", "forbidden", H_NO_APP_CONDITION);
    free(inner);
    xmpp_stanza_t *r;
    char *sql = h_strf("INSERT INTO pubsub.affiliation (node_id, jid, "
                       "affiliation) SELECT node_id, 'publisher@%s', "
                       "'publisher' FROM pubsub.node WHERE name = '%s'",
                       h_env("PST_DOMAIN"), node);
    PQclear(h_sql(f.db, sql));
    free(sql);
    char *id2 = publish(&f, publisher, node, "i2", p2);
    expect_item(&f, alice, nid, 2, sa, node, "i2", p2);
    expect_item(&f, bob, nid, 2, sb, node, "i2", p2);

    /* Retrieval: both, in publication order. */
    char *items = h_strf("<items node='%s'><item id='i1'>%s</item>"
                         "<item id='i2'>%s</item></items>", node, p1, p2);
    assert_items(&f, alice, node, NULL, NULL, items);
    free(items);

    /* Retract with notify. */
    inner = h_strf("<retract node='%s' notify='true'><item id='i1'/>"
                   "</retract>", node);
    r = ps_set(&f, f.owner, inner);
    assert_empty_result(&f, r, "retract");
    xmpp_stanza_release(r);
    free(inner);
    char *ev = h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'><items node='%s'>"
                      "<retract id='i1'/></items></event>", node);
    expect_event(&f, alice, nid, 3, sa, ev);
    expect_event(&f, bob, nid, 3, sb, ev);
    free(ev);
    items = h_strf("<items node='%s'><item id='i2'>%s</item></items>", node,
                   p2);
    assert_items(&f, bob, node, NULL, NULL, items);
    free(items);

    /* Delete. */
    inner = h_strf("<delete node='%s'/>", node);
    r = pubsub_iq(&f, f.owner, "set", H_NS_PUBSUB_OWNER, inner);
    assert_empty_result(&f, r, "delete");
    xmpp_stanza_release(r);
    free(inner);
    ev = h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'><delete node='%s'/>"
                "</event>", node);
    expect_event(&f, alice, nid, 4, sa, ev);
    expect_event(&f, bob, nid, 4, sb, ev);
    free(ev);
    assert_disco_items(&f, alice, "<query xmlns='" H_NS_DISCO_ITEMS "'/>");
    inner = h_strf("<items node='%s'/>", node);
    r = ps_get(&f, alice, inner);
    assert_ps_error(&f, r, "items of a deleted node", "cancel",
                    "item-not-found", H_NO_APP_CONDITION);
    xmpp_stanza_release(r);
    free(inner);

    /* Once the delete notification is dispatched, the tombstone goes. */
    sql = h_strf("SELECT count(*) FROM pubsub.node WHERE node_id = %lld",
                 nid);
    long long t0 = h_now_ms(), rows;
    while ((rows = h_sql_int(f.db, sql)) != 0 &&
           h_now_ms() - t0 < NODE_GONE_MS)
        h_pump(100);
    if (rows != 0) {
        h_fail_dump(f.proc);
        ck_abort_msg("node %lld still in pubsub.node %d ms after its delete "
                     "notification was received", nid, NODE_GONE_MS);
    }
    free(sql);
    /* ... and with it its outbox rows and items (a trigger since 035). */
    sql = h_strf("SELECT (SELECT count(*) FROM pubsub.event WHERE node_id = %lld)"
                 " + (SELECT count(*) FROM pubsub.item WHERE node_id = %lld)", nid, nid);
    ck_assert_int_eq(h_sql_int(f.db, sql), 0);
    free(sql);

    /* Nothing else was sent to anyone. */
    h_expect_no_message(f.proc, alice, QUIET_MS, "after the delete notification");
    h_expect_no_message(f.proc, bob, QUIET_MS, "after the delete notification");
    h_expect_no_message(f.proc, publisher, QUIET_MS, "(it never subscribed)");
    h_expect_no_message(f.proc, f.owner, QUIET_MS, "(it never subscribed)");

    free(id1);
    free(id2);
    free(p1);
    free(p2);
    free(node);
    h_client_disconnect(publisher);
    h_client_disconnect(bob);
    h_client_disconnect(alice);
    fixture_down(&f);
}
END_TEST

/* ---- 2. a subscription starts at the node's position --------------------- */

START_TEST(test_subscription_starts_now)
{
    struct fixture f;
    fixture_up(&f, 2);
    struct h_client *alice = connect_user("alice");
    struct h_client *bob = connect_user("bob");
    struct h_client *carol = connect_user("carol");
    char *node = h_uid("late");
    create_node(&f, f.owner, node);
    long long nid = node_id_of(&f, node);

    /* bob subscribes first; his notification of i1 proves i1 has been
     * dispatched before alice subscribes. */
    long long sb = subscribe(&f, bob, node);
    char *p1 = test_payload("one");
    free(publish(&f, f.owner, node, "i1", p1));
    expect_item(&f, bob, nid, 1, sb, node, "i1", p1);
    long long sa = subscribe(&f, alice, node);

    /* carol subscribes right after the publish result of i2, probably
     * before its dispatch: she must not get i2 either. */
    char *p2 = test_payload("two");
    free(publish(&f, f.owner, node, "i2", p2));
    long long sc = subscribe(&f, carol, node);
    expect_item(&f, bob, nid, 2, sb, node, "i2", p2);
    expect_item(&f, alice, nid, 2, sa, node, "i2", p2);

    char *p3 = test_payload("three");
    free(publish(&f, f.owner, node, "i3", p3));
    expect_item(&f, alice, nid, 3, sa, node, "i3", p3);
    expect_item(&f, bob, nid, 3, sb, node, "i3", p3);
    expect_item(&f, carol, nid, 3, sc, node, "i3", p3);
    h_expect_no_message(f.proc, alice, QUIET_MS, "after i3");
    h_expect_no_message(f.proc, bob, QUIET_MS, "after i3");
    h_expect_no_message(f.proc, carol, QUIET_MS, "after i3");

    free(p1);
    free(p2);
    free(p3);
    free(node);
    h_client_disconnect(carol);
    h_client_disconnect(bob);
    h_client_disconnect(alice);
    fixture_down(&f);
}
END_TEST

/* ---- 3. item ids, overwrite, instant and auto-created nodes, retrieval --- */

START_TEST(test_items_and_nodes)
{
    struct fixture f;
    fixture_up(&f, 3);
    struct h_client *alice = connect_user("alice");
    char *node = h_uid("items");
    create_node(&f, f.owner, node);
    long long nid = node_id_of(&f, node);
    long long sa = subscribe(&f, alice, node);

    /* Without an id: a generated one, notified and retrievable. */
    char *pg = test_payload("generated");
    char *gen = publish(&f, f.owner, node, NULL, pg);
    expect_item(&f, alice, nid, 1, sa, node, gen, pg);
    char *items = h_strf("<items node='%s'><item id='%s'>%s</item></items>",
                         node, gen, pg);
    assert_items(&f, alice, node, NULL, NULL, items);
    free(items);

    /* Two more without an id get distinct ids. */
    char *gen2 = publish(&f, f.owner, node, NULL, pg);
    ck_assert_msg(strcmp(gen, gen2) != 0, "two generated ids are equal: %s",
                  gen);
    expect_item(&f, alice, nid, 2, sa, node, gen2, pg);

    /* With ids a, b, c, d. */
    char *pa = test_payload("a"), *pb = test_payload("b");
    char *pc = test_payload("c"), *pd = test_payload("d");
    free(publish(&f, f.owner, node, "a", pa));
    free(publish(&f, f.owner, node, "b", pb));
    free(publish(&f, f.owner, node, "c", pc));
    free(publish(&f, f.owner, node, "d", pd));
    expect_item(&f, alice, nid, 3, sa, node, "a", pa);
    expect_item(&f, alice, nid, 4, sa, node, "b", pb);
    expect_item(&f, alice, nid, 5, sa, node, "c", pc);
    expect_item(&f, alice, nid, 6, sa, node, "d", pd);

    /* Overwrite a: one item a with the new payload, now the most recent. */
    char *pa2 = test_payload("a again");
    free(publish(&f, f.owner, node, "a", pa2));
    expect_item(&f, alice, nid, 7, sa, node, "a", pa2);
    items = h_strf("<items node='%s'><item id='%s'>%s</item><item id='%s'>"
                   "%s</item><item id='b'>%s</item><item id='c'>%s</item>"
                   "<item id='d'>%s</item><item id='a'>%s</item></items>",
                   node, gen, pg, gen2, pg, pb, pc, pd, pa2);
    assert_items(&f, alice, node, NULL, NULL, items);
    free(items);
    char *sql = h_strf("SELECT count(*) FROM pubsub.item WHERE node_id = %lld "
                       "AND item_id = 'a'", nid);
    ck_assert_int_eq(h_sql_int(f.db, sql), 1);
    free(sql);

    /* max_items: the most recent ones, in publication order. */
    items = h_strf("<items node='%s'><item id='d'>%s</item><item id='a'>%s"
                   "</item></items>", node, pd, pa2);
    assert_items(&f, alice, node, " max_items='2'", NULL, items);
    free(items);
    items = h_strf("<items node='%s'><item id='a'>%s</item></items>", node,
                   pa2);
    assert_items(&f, alice, node, " max_items='1'", NULL, items);
    free(items);

    /* By id: only those, in publication order; an unknown id is absent. */
    items = h_strf("<items node='%s'><item id='c'>%s</item><item id='a'>%s"
                   "</item></items>", node, pc, pa2);
    assert_items(&f, alice, node, NULL,
                 "<item id='a'/><item id='c'/><item id='nosuch'/>", items);
    free(items);
    items = h_strf("<items node='%s'><item id='b'>%s</item></items>", node,
                   pb);
    assert_items(&f, alice, node, NULL, "<item id='b'/>", items);
    free(items);

    /* Items of an unknown node. */
    char *unknown = h_uid("nosuch");
    char *inner = h_strf("<items node='%s'/>", unknown);
    xmpp_stanza_t *r = ps_get(&f, alice, inner);
    assert_ps_error(&f, r, "items of an unknown node", "cancel",
                    "item-not-found", H_NO_APP_CONDITION);
    xmpp_stanza_release(r);
    free(inner);

    /* Create conflict: an error, nothing stored. */
    long long nodes = h_sql_int(f.db, "SELECT count(*) FROM pubsub.node");
    inner = h_strf("<create node='%s'/>", node);
    r = ps_set(&f, alice, inner);
    assert_ps_error(&f, r, "create of an existing node", "cancel", "conflict",
                    H_NO_APP_CONDITION);
    xmpp_stanza_release(r);
    r = ps_set(&f, f.owner, inner);
    assert_ps_error(&f, r, "create of an existing node by its owner",
                    "cancel", "conflict", H_NO_APP_CONDITION);
    xmpp_stanza_release(r);
    free(inner);
    ck_assert_int_eq(h_sql_int(f.db, "SELECT count(*) FROM pubsub.node"),
                     nodes);
    sql = h_strf("SELECT count(*) FROM pubsub.affiliation WHERE node_id = "
                 "%lld", nid);
    ck_assert_int_eq(h_sql_int(f.db, sql), 1);
    free(sql);

    /* Instant node: the generated NodeID comes back; it is a real node
     * owned by its creator (alice can publish to it). */
    r = ps_set(&f, alice, "<create/>");
    h_assert_result(f.proc, r, "instant node");
    xmpp_stanza_t *create =
        h_child(h_child(r, "pubsub", H_NS_PUBSUB), "create", NULL);
    const char *inode_attr =
        create != NULL ? xmpp_stanza_get_attribute(create, "node") : NULL;
    char *text = h_stanza_to_string(r);
    ck_assert_msg(inode_attr != NULL && *inode_attr != '\0',
                  "instant node result without <create node=.../>: %s", text);
    free(text);
    char *inode = h_strf("%s", inode_attr);
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><create "
                            "node='%s'/></pubsub>", inode);
    assert_xml_eq(&f, h_child(r, NULL, NULL), expected, "instant node result");
    free(expected);
    xmpp_stanza_release(r);
    ck_assert_msg(strcmp(inode, node) != 0, "instant node got name %s", inode);
    sql = h_strf("SELECT count(*) FROM pubsub.affiliation a JOIN pubsub.node n "
                 "USING (node_id) WHERE n.name = '%s' AND a.jid = 'alice@%s' "
                 "AND a.affiliation = 'owner'", inode, h_env("PST_DOMAIN"));
    ck_assert_int_eq(h_sql_int(f.db, sql), 1);
    free(sql);
    char *pi = test_payload("instant");
    free(publish(&f, alice, inode, "x", pi));
    items = h_strf("<items node='%s'><item id='x'>%s</item></items>", inode,
                   pi);
    assert_items(&f, f.owner, inode, NULL, NULL, items);
    free(items);
    /* disco#items lists both, sorted by name. */
    bool node_first = strcmp(node, inode) < 0;
    char *q = h_strf("<query xmlns='" H_NS_DISCO_ITEMS "'><item jid='%s' "
                     "node='%s'/><item jid='%s' node='%s'/></query>", f.jid,
                     node_first ? node : inode, f.jid,
                     node_first ? inode : node);
    assert_disco_items(&f, alice, q);
    free(q);

    /* Publish to a missing node with the default configuration
     * (auto_create_nodes = 1): the node is created (§7.1.4), advertised
     * as #auto-create, owned by the publisher. */
    char *id = h_uid("info");
    char *xml = h_strf("<iq type='get' to='%s' id='%s'><query xmlns='"
                       H_NS_DISCO_INFO "'/></iq>", f.jid, id);
    r = h_iq(alice, xml, IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r, "disco#info");
    text = h_stanza_to_string(r);
    ck_assert_msg(h_disco_has_feature(r, H_NS_PUBSUB "#auto-create"),
                  "auto_create_nodes is on by default but disco#info does "
                  "not list #auto-create: %s", text);
    free(text);
    xmpp_stanza_release(r);
    free(xml);
    free(id);
    char *anode = h_uid("auto");
    free(publish(&f, alice, anode, "y", pi));
    items = h_strf("<items node='%s'><item id='y'>%s</item></items>", anode,
                   pi);
    assert_items(&f, f.owner, anode, NULL, NULL, items);
    free(items);
    sql = h_strf("SELECT count(*) FROM pubsub.affiliation a JOIN pubsub.node n "
                 "USING (node_id) WHERE n.name = '%s' AND a.jid = 'alice@%s' "
                 "AND a.affiliation = 'owner'", anode, h_env("PST_DOMAIN"));
    ck_assert_int_eq(h_sql_int(f.db, sql), 1);
    free(sql);
    free(anode);

    h_expect_no_message(f.proc, alice, QUIET_MS, "after the last expected notification");
    free(pi);
    free(inode);
    free(unknown);
    free(pa);
    free(pb);
    free(pc);
    free(pd);
    free(pa2);
    free(gen);
    free(gen2);
    free(pg);
    free(node);
    h_client_disconnect(alice);
    fixture_down(&f);
}
END_TEST

/* ---- 4. bad requests: exact errors, nothing stored ---------------------- */

/* A self-contained payload of exactly n bytes. */
static char *payload_of_size(size_t n)
{
    const char *head = "<p xmlns='" NS_TEST "'>", *tail = "</p>";
    size_t fixed = strlen(head) + strlen(tail);
    ck_assert_uint_ge(n, fixed);
    char *s = malloc(n + 1);
    strcpy(s, head);
    memset(s + strlen(head), 'x', n - fixed);
    strcpy(s + n - strlen(tail), tail);
    ck_assert_uint_eq(strlen(s), n);
    return s;
}

START_TEST(test_bad_requests)
{
    /* auto_create_nodes off: a publish to an unknown node is an error
     * (with it on, the default, the node is created: test 3). */
    static const char *const env[] = {
        "PUBSUBD_MAX_PAYLOAD_BYTES=1024", "PUBSUBD_AUTO_CREATE_NODES=0", NULL,
    };
    struct fixture f;
    fixture_up_env(&f, 4, env);
    struct h_client *alice = connect_user("alice");
    struct h_client *bob = connect_user("bob");
    char *node = h_uid("bad");
    create_node(&f, f.owner, node);
    long long nid = node_id_of(&f, node);
    long long sa = subscribe(&f, alice, node);
    const char *ok = "<ok xmlns='" NS_TEST "'/>";
    char *inner;

    bad_request(&f, f.owner, "<publish><item id='x'><ok xmlns='" NS_TEST
                "'/></item></publish>", "publish without node",
                "modify", "bad-request", "nodeid-required");
    bad_request(&f, f.owner, "<publish node=''><item id='x'><ok xmlns='"
                NS_TEST "'/></item></publish>", "publish with node=''",
                "modify", "bad-request", "nodeid-required");

    char *unknown = h_uid("nosuch");
    inner = h_strf("<publish node='%s'><item id='x'>%s</item></publish>",
                   unknown, ok);
    bad_request(&f, f.owner, inner, "publish to an unknown node", "cancel",
                "item-not-found", H_NO_APP_CONDITION);
    free(inner);

    inner = h_strf("<publish node='%s'/>", node);
    bad_request(&f, f.owner, inner, "publish without <item/>", "modify",
                "bad-request", "item-required");
    free(inner);

    inner = h_strf("<publish node='%s'><item id='x'/></publish>", node);
    bad_request(&f, f.owner, inner, "publish of an item without payload",
                "modify", "bad-request", "payload-required");
    free(inner);

    inner = h_strf("<publish node='%s'><item id='x'>%s%s</item></publish>",
                   node, ok, ok);
    bad_request(&f, f.owner, inner, "publish of an item with two payloads",
                "modify", "bad-request", "invalid-payload");
    free(inner);

    inner = h_strf("<publish node='%s'><item id='x'>%s</item><item id='y'>%s"
                   "</item></publish>", node, ok, ok);
    bad_request(&f, f.owner, inner, "publish of two items", "modify",
                "bad-request", "invalid-payload");
    free(inner);

    char *big = payload_of_size(MAX_PAYLOAD_BYTES + 1);
    inner = h_strf("<publish node='%s'><item id='x'>%s</item></publish>",
                   node, big);
    bad_request(&f, f.owner, inner, "publish of 1025 payload bytes (limit "
                "1024)", "modify", "not-acceptable", "payload-too-big");
    free(inner);
    free(big);
    big = payload_of_size(64 * 1024);
    inner = h_strf("<publish node='%s'><item id='x'>%s</item></publish>",
                   node, big);
    bad_request(&f, f.owner, inner, "publish of a 64 KiB payload (limit "
                "1024)", "modify", "not-acceptable", "payload-too-big");
    free(inner);
    free(big);

    inner = h_strf("<publish node='%s'><item id='x'>%s</item></publish>",
                   node, ok);
    bad_request(&f, bob, inner, "publish by a non-publisher (bob)", "auth",
                "forbidden", H_NO_APP_CONDITION);
    bad_request(&f, alice, inner, "publish by a subscriber (alice)", "auth",
                "forbidden", H_NO_APP_CONDITION);
    free(inner);

    /* Create with an over-long NodeID (1024 bytes, limit 1023). */
    char *longid = malloc(1025);
    memset(longid, 'n', 1024);
    longid[1024] = '\0';
    inner = h_strf("<create node='%s'/>", longid);
    bad_request(&f, f.owner, inner, "create with a 1024-byte NodeID",
                "modify", "not-acceptable", H_NO_APP_CONDITION);
    free(inner);
    free(longid);

    /* None of them notified anyone.  Then the limit itself is accepted
     * (1024 bytes): stored, notified as the node's first event. */
    h_expect_no_message(f.proc, alice, QUIET_MS, "after rejected publishes");
    struct counts before = counts_now(&f);
    ck_assert_int_eq(before.items, 0);
    ck_assert_int_eq(before.seqs, 0);
    char *exact = payload_of_size(MAX_PAYLOAD_BYTES);
    free(publish(&f, f.owner, node, "x", exact));
    expect_item(&f, alice, nid, 1, sa, node, "x", exact);
    ck_assert_int_eq(h_sql_int(f.db, "SELECT count(*) FROM pubsub.item"), 1);
    free(exact);

    /* Retract and delete: the same exactness. */
    inner = h_strf("<retract node='%s' notify='true'><item id='nosuch'/>"
                   "</retract>", node);
    bad_request(&f, f.owner, inner, "retract of an unknown item", "cancel",
                "item-not-found", H_NO_APP_CONDITION);
    free(inner);
    inner = h_strf("<retract node='%s' notify='true'><item id='x'/>"
                   "</retract>", unknown);
    bad_request(&f, f.owner, inner, "retract on an unknown node", "cancel",
                "item-not-found", H_NO_APP_CONDITION);
    free(inner);
    inner = h_strf("<retract node='%s' notify='true'><item id='x'/>"
                   "</retract>", node);
    bad_request(&f, bob, inner, "retract by a non-publisher (bob)", "auth",
                "forbidden", H_NO_APP_CONDITION);
    bad_request(&f, alice, inner, "retract by a subscriber (alice)", "auth",
                "forbidden", H_NO_APP_CONDITION);
    free(inner);
    inner = h_strf("<delete node='%s'/>", node);
    bad_request_ns(&f, bob, H_NS_PUBSUB_OWNER, inner, "delete by a non-owner "
                   "(bob)", "auth", "forbidden", H_NO_APP_CONDITION);
    bad_request_ns(&f, alice, H_NS_PUBSUB_OWNER, inner, "delete by a "
                   "subscriber (alice)", "auth", "forbidden",
                   H_NO_APP_CONDITION);
    free(inner);
    inner = h_strf("<delete node='%s'/>", unknown);
    bad_request_ns(&f, f.owner, H_NS_PUBSUB_OWNER, inner, "delete of an "
                   "unknown node", "cancel", "item-not-found",
                   H_NO_APP_CONDITION);
    free(inner);
    exact = payload_of_size(MAX_PAYLOAD_BYTES);
    char *items = h_strf("<items node='%s'><item id='x'>%s</item></items>",
                         node, exact);
    assert_items(&f, alice, node, NULL, NULL, items);
    free(items);
    free(exact);
    h_expect_no_message(f.proc, alice, QUIET_MS, "after the one good publish");

    free(unknown);
    free(node);
    h_client_disconnect(bob);
    h_client_disconnect(alice);
    fixture_down(&f);
}
END_TEST

/* ---- 5. subscribe and unsubscribe errors --------------------------------- */

START_TEST(test_subscription_errors)
{
    struct fixture f;
    fixture_up(&f, 5);
    struct h_client *alice = connect_user("alice");
    struct h_client *bob = connect_user("bob");
    const char *domain = h_env("PST_DOMAIN");
    char *node = h_uid("subs");
    char *unknown = h_uid("nosuch");
    create_node(&f, f.owner, node);
    long long nid = node_id_of(&f, node);
    char *inner;

    /* subscribe */
    inner = h_strf("<subscribe node='%s' jid='bob@%s'/>", node, domain);
    bad_request(&f, alice, inner, "alice subscribes bob", "modify",
                "bad-request", "invalid-jid");
    free(inner);
    inner = h_strf("<subscribe node='%s' jid='alice@%s'/>", unknown, domain);
    bad_request(&f, alice, inner, "subscribe to an unknown node", "cancel",
                "item-not-found", H_NO_APP_CONDITION);
    free(inner);
    inner = h_strf("<subscribe jid='alice@%s'/>", domain);
    bad_request(&f, alice, inner, "subscribe without node", "modify",
                "bad-request", "nodeid-required");
    free(inner);

    /* unsubscribe */
    inner = h_strf("<unsubscribe node='%s' jid='alice@%s'/>", node, domain);
    bad_request(&f, alice, inner, "unsubscribe while not subscribed",
                "cancel", "unexpected-request", "not-subscribed");
    free(inner);
    long long sa = subscribe(&f, alice, node);
    long long sb = subscribe(&f, bob, node);
    inner = h_strf("<unsubscribe node='%s' jid='alice@%s'/>", unknown, domain);
    bad_request(&f, alice, inner, "unsubscribe from an unknown node",
                "cancel", "item-not-found", H_NO_APP_CONDITION);
    free(inner);
    inner = h_strf("<unsubscribe node='%s' jid='bob@%s'/>", node, domain);
    bad_request(&f, alice, inner, "alice unsubscribes bob", "auth",
                "forbidden", H_NO_APP_CONDITION);
    free(inner);

    /* Both subscriptions still work. */
    char *p1 = test_payload("one");
    free(publish(&f, f.owner, node, "i1", p1));
    expect_item(&f, alice, nid, 1, sa, node, "i1", p1);
    expect_item(&f, bob, nid, 1, sb, node, "i1", p1);

    /* alice unsubscribes: she hears nothing more, bob does. */
    inner = h_strf("<unsubscribe node='%s' jid='alice@%s'/>", node, domain);
    xmpp_stanza_t *r = ps_set(&f, alice, inner);
    assert_empty_result(&f, r, "unsubscribe");
    xmpp_stanza_release(r);
    char *sql = h_strf("SELECT count(*) FROM pubsub.subscription WHERE "
                       "node_id = %lld", nid);
    ck_assert_int_eq(h_sql_int(f.db, sql), 1);
    free(sql);
    bad_request(&f, alice, inner, "unsubscribe twice", "cancel",
                "unexpected-request", "not-subscribed");
    free(inner);
    char *p2 = test_payload("two");
    free(publish(&f, f.owner, node, "i2", p2));
    expect_item(&f, bob, nid, 2, sb, node, "i2", p2);
    h_expect_no_message(f.proc, alice, QUIET_MS, "after unsubscribing");
    h_expect_no_message(f.proc, bob, QUIET_MS, "after i2");

    free(p1);
    free(p2);
    free(unknown);
    free(node);
    h_client_disconnect(bob);
    h_client_disconnect(alice);
    fixture_down(&f);
}
END_TEST

/* ---- 6. bursts: publishes to one node batched in one statement ----------- */

/* The single text value of sql (caller frees). */
static char *sql_text(struct fixture *f, const char *sql)
{
    PGresult *res = h_sql(f->db, sql);
    ck_assert_msg(PQntuples(res) == 1 && PQnfields(res) == 1, "%s: not one value", sql);
    char *v = h_strf("%s", PQgetisnull(res, 0, 0) ? "NULL" : PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

/* Asserts that the query (a format) returns one value, as text, equal to want. */
static void expect_sql_text(struct fixture *f, const char *want, const char *fmt, ...)
    H_PRINTF_LIKE(3, 4);
static void expect_sql_text(struct fixture *f, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    char *sql = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(sql);
    va_start(ap, fmt);
    vsnprintf(sql, (size_t)n + 1, fmt, ap);
    va_end(ap);
    char *got = sql_text(f, sql);
    ck_assert_msg(strcmp(got, want) == 0, "%s: got \"%s\", want \"%s\"", sql, got, want);
    free(got);
    free(sql);
}

/*
 * Publish IQs sent back to back arrive together, and db.c sends them as
 * one pubsub.publish_batch() call, whatever their nodes: every publish gets
 * its own result, each node's seqs follow the order of its requests, a
 * repeated item id in the burst overwrites (the function's one-by-one
 * path for that node), and each subscriber gets every notification once,
 * in order.  Then the function itself: the batch path, a refused publisher
 * in the middle of a batch (one by one for that node: each its own status,
 * while another node in the same call takes the batch path), trimming to
 * max_items across a batch larger than max_items.
 */
/* Publish options on a node's publish in a burst: that publish cannot ride
 * in a batch, so the node's later publishes must wait behind it. */
#define BURST_OPTIONS                                                          \
    "<publish-options><x xmlns='jabber:x:data' type='submit'>"                 \
    "<field var='FORM_TYPE' type='hidden'><value>" H_NS_PUBSUB                 \
    "#publish-options</value></field><field var='pubsub#access_model'>"        \
    "<value>open</value></field></x></publish-options>"

/*
 * A burst held back: lock_node() takes node nid's row lock on a connection
 * of its own, so that the first request of a burst to that node waits in
 * the database and the others queue behind it in pubsubd; release_node()
 * waits until that first request is waiting (pumping the clients, so the
 * burst leaves and arrives), lets the rest arrive, and commits.
 */
static PGconn *lock_node(struct fixture *f, long long nid)
{
    PGconn *blocker = PQconnectdb(f->db);
    ck_assert_int_eq(PQstatus(blocker), CONNECTION_OK);
    char *sql = h_strf("BEGIN; SELECT 1 FROM pubsub.node WHERE node_id = %lld FOR UPDATE", nid);
    PGresult *res = PQexec(blocker, sql);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    free(sql);
    return blocker;
}

static void wait_for_lock_waiter(struct fixture *f, const char *what)
{
    int waits = 0;
    for (int t = 0; t < 100 && waits == 0; t++) {
        h_pump(50);
        waits = h_sql_int(f->db, "SELECT count(*) FROM pg_locks WHERE NOT granted");
    }
    ck_assert_msg(waits > 0, "the first %s of the burst never waited for the node lock", what);
}

static void release_node(struct fixture *f, PGconn *blocker, const char *what)
{
    wait_for_lock_waiter(f, what);
    h_pump(300);
    PGresult *res = PQexec(blocker, "COMMIT");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(blocker);
}

/* A node's items as id:seq in seq order, then its item_count (node id twice). */
#define ITEMS_OF                                                               \
    "SELECT string_agg(item_id || ':' || seq, ',' ORDER BY seq) || ' ' || "    \
    "(SELECT item_count FROM pubsub.node WHERE node_id = %lld) "                \
    "FROM pubsub.item WHERE node_id = %lld"

START_TEST(test_publish_burst)
{
    enum { N = 20 };
    /* One database connection: both nodes' publishes queue on it. */
    static const char *const env[] = {"PUBSUBD_DB_POOL_SIZE=1", NULL};
    struct fixture f;
    fixture_up_env(&f, 1, env);
    struct h_client *alice = connect_user("alice");
    struct h_client *bob = connect_user("bob");
    char *node = h_uid("burst");
    char *node2 = h_uid("burst2");
    create_node(&f, f.owner, node);
    create_node(&f, f.owner, node2);
    long long nid = node_id_of(&f, node);
    long long nid2 = node_id_of(&f, node2);
    long long sa = subscribe(&f, alice, node);
    long long sa2 = subscribe(&f, bob, node2); /* one node per subscriber: an order to check */
    char *node3 = h_uid("burst3"); /* created by its publish in the burst */
    char *id3 = h_uid("burst3");

    /* The first publish of the burst waits for node's lock, so the others
     * queue behind it and go as one group. */
    PGconn *blocker = lock_node(&f, nid);

    char *ids[N], *ids2[N], *item_ids[N], *payloads[N];
    for (int i = 0; i < N; i++) {
        /* item 12 repeats item 5's id: an overwrite inside the burst */
        item_ids[i] = h_strf("b%d", i == 12 ? 5 : i);
        /* item 4: a backslash and double quotes, which the batch's array
         * literals must quote */
        payloads[i] = i == 4 ? h_strf("<entry xmlns='" NS_TEST "'><title>back\\slash "
                                      "\"q\" \\\"</title></entry>")
                             : test_payload(item_ids[i]);
        ids[i] = h_uid("burst");
        char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='" H_NS_PUBSUB
                           "'><publish node='%s'><item id='%s'>%s</item></publish></pubsub></iq>",
                           f.jid, ids[i], node, item_ids[i], payloads[i]);
        h_send(f.owner, xml);
        free(xml);
        /* and one to the other node between them */
        ids2[i] = h_uid("burst2");
        xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='" H_NS_PUBSUB
                     "'><publish node='%s'><item id='c%d'>%s</item></publish>%s</pubsub></iq>",
                     f.jid, ids2[i], node2, i, payloads[i], i == 7 ? BURST_OPTIONS : "");
        h_send(f.owner, xml);
        free(xml);
        if (i == 3) {
            /* and one that auto-creates a node, its item id with a double
             * quote and a backslash (quoted in the batch's array literal) */
            xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='" H_NS_PUBSUB
                         "'><publish node='%s'><item id='n&quot;1\\'>%s</item></publish>"
                         "</pubsub></iq>",
                         f.jid, id3, node3, payloads[i]);
            h_send(f.owner, xml);
            free(xml);
        }
    }
    release_node(&f, blocker, "publish");
    xmpp_stanza_t *r3 = h_wait_reply(f.owner, id3, IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r3, "publish that auto-creates a node in a burst");
    xmpp_stanza_release(r3);
    for (int i = 0; i < N; i++) {
        xmpp_stanza_t *r = h_wait_reply(f.owner, ids2[i], IQ_TIMEOUT_MS);
        h_assert_result(f.proc, r, "publish to the other node in a burst");
        xmpp_stanza_release(r);
    }
    for (int i = 0; i < N; i++) {
        xmpp_stanza_t *r = h_wait_reply(f.owner, ids[i], IQ_TIMEOUT_MS);
        h_assert_result(f.proc, r, "publish in a burst");
        char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><publish node='%s'><item "
                                "id='%s'/></publish></pubsub>", node, item_ids[i]);
        assert_xml_eq(&f, h_child(r, NULL, NULL), expected, "publish result in a burst");
        free(expected);
        xmpp_stanza_release(r);
    }
    for (int i = 0; i < N; i++) {
        expect_item(&f, alice, nid, i + 1, sa, node, item_ids[i], payloads[i]);
        char *cid = h_strf("c%d", i);
        expect_item(&f, bob, nid2, i + 1, sa2, node2, cid, payloads[i]);
        free(cid);
    }
    /* The waiting publishes went as one batch over several nodes, and it
     * did not fail (a failed group runs again one by one, which would
     * hide a malformed batch). */
    ck_assert_msg(h_proc_log_contains(f.proc, "publishes to 3 node(s)") ||
                      h_proc_log_contains(f.proc, "publishes to 2 node(s)"),
                  "no publish batch over several nodes in the log %s", h_proc_log_path(f.proc));
    ck_assert_msg(!h_proc_log_contains(f.proc, "retrying each alone"),
                  "a publish group failed: see %s", h_proc_log_path(f.proc));
    /* item 4's payload reached the database as sent (node2's c4 took the
     * batch path; the double quotes are &quot; in pubsubd's serialisation) */
    char *sql = h_strf("SELECT count(*) FROM pubsub.item WHERE node_id = %lld AND item_id = 'c4' "
                       "AND strpos(payload, 'back\\slash &quot;q&quot; \\&quot;') > 0", nid2);
    ck_assert_int_eq(h_sql_int(f.db, sql), 1);
    free(sql);
    sql = h_strf("SELECT count(*) FROM pubsub.item i JOIN pubsub.node n USING (node_id) "
                 "WHERE n.name = '%s' AND i.item_id = 'n\"1\\' AND i.seq = 1", node3);
    ck_assert_int_eq(h_sql_int(f.db, sql), 1);
    free(sql);
    sql = h_strf("SELECT count(*) FROM pubsub.event WHERE node_id = %lld", nid);
    ck_assert_int_eq(h_sql_int(f.db, sql), N);
    free(sql);
    /* node2's items: c0..c19 with seqs 1..20, in request order */
    sql = h_strf("SELECT count(*) FROM pubsub.item WHERE node_id = %lld AND seq = "
                 "substr(item_id, 2)::int + 1", nid2);
    ck_assert_int_eq(h_sql_int(f.db, sql), N);
    free(sql);
    sql = h_strf("SELECT last_seq * 1000 + item_count FROM pubsub.node WHERE node_id = %lld", nid2);
    ck_assert_int_eq(h_sql_int(f.db, sql), N * 1000 + N);
    free(sql);
    sql = h_strf("SELECT count(*) FROM pubsub.item WHERE node_id = %lld", nid);
    ck_assert_int_eq(h_sql_int(f.db, sql), N - 1);
    free(sql);
    sql = h_strf("SELECT seq FROM pubsub.item WHERE node_id = %lld AND item_id = 'b5'", nid);
    ck_assert_int_eq(h_sql_int(f.db, sql), 13);
    free(sql);

    /* The function: three by the owner in one batch. */
    const char *owner = h_client_bare_jid(f.owner);
    expect_sql_text(&f, "ok:21,ok:22,ok:23",
                    "SELECT string_agg(status || ':' || coalesce(seq::text, '-'), ',') FROM "
                    "pubsub.publish_batch('{%s,%s,%s}', '{x1,x2,x3}', '{<a/>,<b/>,<c/>}', "
                    "'{%s,%s,%s}', '{\"\",\"\",\"\"}', NULL)",
                    node, node, node, owner, owner, owner);
    /* alice has no publisher affiliation: refused, the others to that node
     * publish; node2's, interleaved, take the batch path. */
    char *want = h_strf("ok:24:%lld,ok:21:%lld,forbidden:-:%lld,ok:22:%lld,ok:25:%lld", nid,
                        nid2, nid, nid2, nid);
    expect_sql_text(&f, want,
                    "SELECT string_agg(status || ':' || coalesce(seq::text, '-') || ':' || "
                    "coalesce(node_id::text, '-'), ',') FROM "
                    "pubsub.publish_batch('{%s,%s,%s,%s,%s}', '{y1,d1,y2,d2,y3}', "
                    "'{<a/>,<b/>,<c/>,<d/>,<e/>}', '{%s,%s,%s,%s,%s}', "
                    "'{\"\",\"\",\"\",\"\",\"\"}', NULL)",
                    node, node2, node, node2, node, owner, owner, h_client_bare_jid(alice),
                    owner, owner);
    free(want);
    expect_sql_text(&f, "d1:21,d2:22",
                    "SELECT string_agg(item_id || ':' || seq, ',' ORDER BY seq) "
                    "FROM pubsub.event WHERE node_id = %lld AND seq > %d", nid2, N);
    /* A node that does not exist (no auto-create here) between two that
     * do: item-not-found for it alone. */
    expect_sql_text(&f, "ok,item-not-found,ok",
                    "SELECT string_agg(status, ',') FROM "
                    "pubsub.publish_batch('{%s,nosuchnode-%s,%s}', '{w1,w2,w3}', "
                    "'{<a/>,<b/>,<c/>}', '{%s,%s,%s}', '{\"\",\"\",\"\"}', NULL)",
                    node2, node, node, owner, owner, owner);
    /* Arrays of different lengths: refused, nothing published. */
    PGconn *conn = PQconnectdb(f.db);
    ck_assert_int_eq(PQstatus(conn), CONNECTION_OK);
    sql = h_strf("SELECT * FROM pubsub.publish_batch('{%s,%s}', '{m1}', '{<a/>}', '{%s}', "
                 "'{\"\"}', NULL)", node2, node2, owner);
    PGresult *bad = PQexec(conn, sql);
    ck_assert_int_eq(PQresultStatus(bad), PGRES_FATAL_ERROR);
    ck_assert_str_eq(PQresultErrorField(bad, PG_DIAG_SQLSTATE), "22023");
    PQclear(bad);
    PQfinish(conn);
    free(sql);
    expect_sql_text(&f, "0", "SELECT count(*) FROM pubsub.item WHERE node_id = %lld AND "
                             "item_id = 'm1'", nid2);
    /* max_items 3, a batch of 5: the 3 newest stay. */
    sql = h_strf("UPDATE pubsub.node_config SET max_items = 3 WHERE node_id = %lld", nid);
    PQclear(h_sql(f.db, sql));
    free(sql);
    sql = h_strf("SELECT count(*) FROM pubsub.publish_batch('{%s,%s,%s,%s,%s}', "
                 "'{z1,z2,z3,z4,z5}', '{<a/>,<b/>,<c/>,<d/>,<e/>}', '{%s,%s,%s,%s,%s}', "
                 "'{\"\",\"\",\"\",\"\",\"\"}', NULL) WHERE status = 'ok'",
                 node, node, node, node, node, owner, owner, owner, owner, owner);
    ck_assert_int_eq(h_sql_int(f.db, sql), 5);
    free(sql);
    expect_sql_text(&f, "z3:29,z4:30,z5:31 3", ITEMS_OF, nid, nid);

    /* Two nodes on the batch path in one call, each with its own count:
     * node2 (23 items) gets max_items 4.  First only overwrites there (no
     * trim, as publish_auto: the count stays above max_items) and a new
     * item on node (its oldest goes). */
    sql = h_strf("UPDATE pubsub.node_config SET max_items = 4 WHERE node_id = %lld", nid2);
    PQclear(h_sql(f.db, sql));
    free(sql);
    expect_sql_text(&f, "ok:24,ok:32,ok:25",
                    "SELECT string_agg(status || ':' || seq, ',') FROM "
                    "pubsub.publish_batch('{%s,%s,%s}', '{c0,v1,c1}', '{<a/>,<b/>,<c/>}', "
                    "'{%s,%s,%s}', '{\"\",\"\",\"\"}', NULL)",
                    node2, node, node2, owner, owner, owner);
    sql = h_strf("SELECT count(*) * 1000 + (SELECT item_count FROM pubsub.node WHERE node_id = "
                 "%lld) FROM pubsub.item WHERE node_id = %lld", nid2, nid2);
    ck_assert_int_eq(h_sql_int(f.db, sql), 23 * 1000 + 23);
    free(sql);
    expect_sql_text(&f, "z4:30,z5:31,v1:32 3", ITEMS_OF, nid, nid);
    /* Then new items on both: each node keeps its max_items newest. */
    sql = h_strf("SELECT count(*) FROM pubsub.publish_batch('{%s,%s,%s,%s}', '{v2,e1,v3,e2}', "
                 "'{<a/>,<b/>,<c/>,<d/>}', '{%s,%s,%s,%s}', '{\"\",\"\",\"\",\"\"}', NULL) "
                 "WHERE status = 'ok'", node, node2, node, node2, owner, owner, owner, owner);
    ck_assert_int_eq(h_sql_int(f.db, sql), 4);
    free(sql);
    expect_sql_text(&f, "v1:32,v2:33,v3:34 3", ITEMS_OF, nid, nid);
    expect_sql_text(&f, "c0:24,c1:25,e1:26,e2:27 4", ITEMS_OF, nid2, nid2);

    /* A node that keeps no items and one without notifications, in one
     * call with a node to auto-create (the configuration of node2). */
    char *quiet = h_uid("quiet");
    char *fresh = h_uid("fresh");
    create_node(&f, f.owner, quiet);
    long long nq = node_id_of(&f, quiet);
    sql = h_strf("UPDATE pubsub.node_config SET persist_items = false WHERE node_id = %lld; "
                 "UPDATE pubsub.node_config SET deliver_notifications = false "
                 "WHERE node_id = %lld", nid, nq);
    PQclear(h_sql(f.db, sql));
    free(sql);
    expect_sql_text(&f, "ok:35,ok:1,ok:36,ok:1,ok:2",
                    "SELECT string_agg(status || ':' || seq, ',') FROM "
                    "pubsub.publish_batch('{%s,%s,%s,%s,%s}', '{p1,q1,p2,f1,f2}', "
                    "'{<a/>,<b/>,<c/>,<d/>,<e/>}', '{%s,%s,%s,%s,%s}', "
                    "'{\"\",\"\",\"\",\"\",\"\"}', "
                    "(SELECT to_jsonb(c) - 'node_id' FROM pubsub.node_config c "
                    "WHERE c.node_id = %lld))",
                    node, quiet, node, fresh, fresh, owner, owner, owner, owner, owner, nid2);
    /* node: no new items (v1-v3 stay), outbox rows for p1 and p2;
     * quiet: the item, no outbox row; fresh: created, both items. */
    expect_sql_text(&f, "v1:32,v2:33,v3:34 3", ITEMS_OF, nid, nid);
    expect_sql_text(&f, "p1,p2",
                    "SELECT string_agg(item_id, ',' ORDER BY seq) FROM pubsub.event "
                    "WHERE node_id = %lld AND seq > 34", nid);
    sql = h_strf("SELECT (SELECT count(*) FROM pubsub.item WHERE node_id = %lld) * 10 + "
                 "(SELECT count(*) FROM pubsub.event WHERE node_id = %lld)", nq, nq);
    ck_assert_int_eq(h_sql_int(f.db, sql), 10);
    free(sql);
    expect_sql_text(&f, "f1:1,f2:2",
                    "SELECT string_agg(i.item_id || ':' || i.seq, ',' ORDER BY i.seq) FROM "
                    "pubsub.item i JOIN pubsub.node n USING (node_id) WHERE n.name = '%s'",
                    fresh);
    free(quiet);
    free(fresh);

    for (int i = 0; i < N; i++) {
        free(ids[i]);
        free(ids2[i]);
        free(item_ids[i]);
        free(payloads[i]);
    }
    free(node);
    free(node2);
    free(node3);
    free(id3);
    h_client_disconnect(bob);
    h_client_disconnect(alice);
    fixture_down(&f);
}
END_TEST

/*
 * Subscribes share the group commit like publishes: a burst of subscribe
 * requests to one node that queue behind a held node lock goes as one
 * transaction, and each still gets its own result and subscription.
 */
START_TEST(test_subscribe_burst)
{
    enum { N = 20 };
    struct fixture f;
    fixture_up(&f, 1);
    struct h_client *alice = connect_user("alice");
    char *node = h_uid("subburst");
    create_node(&f, f.owner, node);
    long long nid = node_id_of(&f, node);

    PGconn *blocker = lock_node(&f, nid);
    char *ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = h_uid("subburst");
        char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='" H_NS_PUBSUB
                           "'><subscribe node='%s' jid='%s/r%d'/></pubsub></iq>",
                           f.jid, ids[i], node, h_client_bare_jid(alice), i);
        h_send(alice, xml);
        free(xml);
    }
    release_node(&f, blocker, "subscribe");

    for (int i = 0; i < N; i++) {
        xmpp_stanza_t *r = h_wait_reply(alice, ids[i], IQ_TIMEOUT_MS);
        h_assert_result(f.proc, r, "subscribe in a burst");
        xmpp_stanza_t *sub = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "subscription", NULL);
        char *jid = h_strf("%s/r%d", h_client_bare_jid(alice), i);
        ck_assert_msg(sub != NULL && xmpp_stanza_get_attribute(sub, "subid") != NULL &&
                          strcmp(xmpp_stanza_get_attribute(sub, "jid"), jid) == 0,
                      "subscribe %d in a burst: no subscription of %s in the result", i, jid);
        free(jid);
        xmpp_stanza_release(r);
        free(ids[i]);
    }
    /* The first went alone (it waited for the lock), the others together. */
    char *line = h_strf("a group of %d statements in one transaction", N - 1);
    ck_assert_msg(h_proc_log_contains(f.proc, line), "no \"%s\" in %s", line,
                  h_proc_log_path(f.proc));
    free(line);
    expect_sql_text(&f, "20 20",
                    "SELECT count(DISTINCT jid) || ' ' || count(DISTINCT subid) "
                    "FROM pubsub.subscription WHERE node_id = %lld AND state = 'subscribed'", nid);

    free(node);
    h_client_disconnect(alice);
    fixture_down(&f);
}
END_TEST

/* ---- 7. two processes on one database ------------------------------------ */

/*
 * c7 and c8 share one database and publish to one node in turns (bursts
 * of 10 through one, then the other).  Whichever holds the node dispatches
 * the events of both: its own from memory (the local hand-off), the
 * other's read from the outbox after the NOTIFY, and its own again after
 * such a gap.  Alice gets every seq once, in order, with the right item.
 */
START_TEST(test_two_processes)
{
    enum { ROUNDS = 6, BURST = 10 };
    struct fixture f;
    fixture_up(&f, 7);
    char *jid8 = h_strf("c8.%s", h_env("PST_DOMAIN"));
    struct h_proc *p8 = h_pubsubd_start(jid8, f.db, NULL);
    wait_ready(p8, f.owner, jid8);
    struct h_client *alice = connect_user("alice");
    char *node = h_uid("two");
    create_node(&f, f.owner, node);
    long long nid = node_id_of(&f, node);
    long long sa = subscribe(&f, alice, node);

    for (int r = 0; r < ROUNDS; r++) {
        const char *to = r % 2 ? jid8 : f.jid;
        char *ids[BURST];
        for (int i = 0; i < BURST; i++) {
            ids[i] = h_uid("two");
            char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='" H_NS_PUBSUB
                               "'><publish node='%s'><item id='t%d'><n xmlns='" NS_TEST
                               "'>%d</n></item></publish></pubsub></iq>",
                               to, ids[i], node, r * BURST + i, r * BURST + i);
            h_send(f.owner, xml);
            free(xml);
        }
        for (int i = 0; i < BURST; i++) {
            xmpp_stanza_t *res = h_wait_reply(f.owner, ids[i], IQ_TIMEOUT_MS);
            h_assert_result(r % 2 ? p8 : f.proc, res, "publish through two processes");
            xmpp_stanza_release(res);
            free(ids[i]);
        }
    }
    for (int k = 0; k < ROUNDS * BURST; k++) {
        xmpp_stanza_t *m = next_message(&f, alice, "a notification of either process");
        char *text = h_stanza_to_string(m);
        char *id = h_strf("ps-%lld-%d-%lld", nid, k + 1, sa);
        char *item = h_strf("t%d", k);
        const char *from = xmpp_stanza_get_from(m);
        xmpp_stanza_t *it = h_child(h_child(h_child(m, "event", H_NS_PUBSUB_EVENT), "items", NULL),
                                    "item", NULL);
        bool ok = xmpp_stanza_get_id(m) != NULL && strcmp(xmpp_stanza_get_id(m), id) == 0 &&
                  from != NULL && (strcmp(from, f.jid) == 0 || strcmp(from, jid8) == 0) &&
                  it != NULL && xmpp_stanza_get_id(it) != NULL &&
                  strcmp(xmpp_stanza_get_id(it), item) == 0;
        if (!ok) {
            h_fail_dump(f.proc);
            h_fail_dump(p8);
        }
        ck_assert_msg(ok, "notification %d: expected id %s with item %s, got %s", k + 1, id, item,
                      text);
        free(item);
        free(id);
        free(text);
        xmpp_stanza_release(m);
    }
    h_expect_no_message(f.proc, alice, QUIET_MS, "after every seq arrived once");

    free(node);
    h_client_disconnect(alice);
    h_pubsubd_stop(p8);
    free(jid8);
    fixture_down(&f);
}
END_TEST

/*
 * The connection a node's requests went to before writes were routed by
 * load (db_pool.c): a hash of its name (FNV-1a) over the connections.
 * Names are picked with it so that the old routing fails the test below.
 */
static unsigned hashed_conn(const char *node, unsigned nconns)
{
    unsigned h = 2166136261u;
    for (const char *p = node; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % nconns;
}

/* A fresh node name whose hashed connection (of 2) is or is not conn's. */
static char *node_name_on(const char *prefix, unsigned conn, bool same)
{
    for (;;) {
        char *name = h_uid(prefix);
        if ((hashed_conn(name, 2) == conn) == same)
            return name;
        free(name);
    }
}

/* Sends a publish of item item_id to node as c without waiting; returns the
 * IQ id (caller frees). */
static char *send_publish(struct fixture *f, struct h_client *c, const char *node,
                          const char *item_id)
{
    char *id = h_uid("pub");
    char *payload = test_payload(item_id);
    char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='" H_NS_PUBSUB
                       "'><publish node='%s'><item id='%s'>%s</item></publish></pubsub></iq>",
                       f->jid, id, node, item_id, payload);
    h_send(c, xml);
    free(xml);
    free(payload);
    return id;
}

static void expect_result(struct fixture *f, struct h_client *c, char *id, const char *what)
{
    xmpp_stanza_t *r = h_wait_reply(c, id, IQ_TIMEOUT_MS);
    h_assert_result(f->proc, r, what);
    xmpp_stanza_release(r);
    free(id);
}

/*
 * Writes are routed by load over the 2 default connections (db_pool.c):
 * the waiting publishes of different nodes join one connection's group
 * (one transaction, one batch), a node with requests in flight keeps its
 * connection (its publishes stay in order), and once that connection's
 * next group is full (db_group_max 4 here) a node with nothing in flight
 * goes to the other connection instead of queueing behind it.
 */
START_TEST(test_write_routing)
{
    enum { N = 12 };
    static const char *const env[] = {"PUBSUBD_DB_GROUP_MAX=4", NULL};
    struct fixture f;
    fixture_up_env(&f, 1, env);
    char *a = h_uid("routea");
    unsigned a_conn = hashed_conn(a, 2);
    char *b = node_name_on("routeb", a_conn, false);
    char *c = node_name_on("routec", a_conn, false);
    char *d = node_name_on("routed", a_conn, true);
    create_node(&f, f.owner, a);
    create_node(&f, f.owner, b);
    create_node(&f, f.owner, c);
    create_node(&f, f.owner, d);
    long long aid = node_id_of(&f, a);

    /* 1. While a publish to a waits for a's lock, publishes to a, b and c
     * (which a hash of their names would have put on the other
     * connection) queue behind it and then go as one batch. */
    PGconn *blocker = lock_node(&f, aid);
    char *ids[N];
    ids[0] = send_publish(&f, f.owner, a, "x0");
    wait_for_lock_waiter(&f, "publish");
    ids[1] = send_publish(&f, f.owner, a, "x1");
    ids[2] = send_publish(&f, f.owner, b, "x0");
    ids[3] = send_publish(&f, f.owner, c, "x0");
    release_node(&f, blocker, "publish");
    for (int i = 0; i < 4; i++)
        expect_result(&f, f.owner, ids[i], "publish held behind a node lock");
    ck_assert_msg(h_proc_log_contains(f.proc, "publishes to 3 node(s)"),
                  "the publishes to 3 nodes did not go as one batch: see %s",
                  h_proc_log_path(f.proc));

    /* 2. N publishes to a wait behind its lock, more than a group; then
     * publishes to d (same hashed connection as a) do not wait for them. */
    blocker = lock_node(&f, aid);
    for (int i = 0; i < N; i++) {
        char *item = h_strf("a%d", i);
        ids[i] = send_publish(&f, f.owner, a, item);
        free(item);
    }
    char *d_ids[3];
    for (int i = 0; i < 3; i++) {
        char *item = h_strf("d%d", i);
        d_ids[i] = send_publish(&f, f.owner, d, item);
        free(item);
    }
    for (int i = 0; i < 3; i++)
        expect_result(&f, f.owner, d_ids[i], "publish to another node while a is locked");
    release_node(&f, blocker, "publish");
    for (int i = 0; i < N; i++)
        expect_result(&f, f.owner, ids[i], "publish behind a node lock");
    /* a's items in request order (its later publishes stayed on its
     * connection, behind the earlier ones) */
    char *sql = h_strf("SELECT count(*) FROM pubsub.item WHERE node_id = %lld AND item_id LIKE 'a%%'"
                       " AND seq = substr(item_id, 2)::int + 3", aid);
    ck_assert_int_eq(h_sql_int(f.db, sql), N);
    free(sql);
    ck_assert_msg(!h_proc_log_contains(f.proc, "retrying each alone"),
                  "a publish group failed: see %s", h_proc_log_path(f.proc));
    free(a);
    free(b);
    free(c);
    free(d);
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

static Suite *pubsub_suite(void)
{
    Suite *s = suite_create("pubsub");
    suite_add_tcase(s, tcase("round_trip", test_round_trip));
    suite_add_tcase(s, tcase("subscription_starts_now",
                             test_subscription_starts_now));
    suite_add_tcase(s, tcase("items_and_nodes", test_items_and_nodes));
    suite_add_tcase(s, tcase("bad_requests", test_bad_requests));
    suite_add_tcase(s, tcase("subscription_errors", test_subscription_errors));
    suite_add_tcase(s, tcase("publish_burst", test_publish_burst));
    suite_add_tcase(s, tcase("subscribe_burst", test_subscribe_burst));
    suite_add_tcase(s, tcase("write_routing", test_write_routing));
    suite_add_tcase(s, tcase("two_processes", test_two_processes));
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pubsub_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
