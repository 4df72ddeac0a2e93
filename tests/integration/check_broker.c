/*
 * check_broker.c - integration tests of pubsubd as a message broker:
 *
 *   1. message types as XEP-0248 collections: a collection per TOPIC, a
 *      leaf per EVENTCODE below it.  A subscription to the collection
 *      (subscription_type items) hears of the items of every leaf below it
 *      within its subscription_depth, leaves created after it subscribed
 *      included; each such notification names the leaf in <items node=/>
 *      and the collection in a SHIM header (XEP-0248 §9, XEP-0131).  A JID
 *      subscribed to both the collection and the leaf gets each item once,
 *      the direct one.  A subscription does not hear of items published
 *      before it.  The errors: publishing to a collection, a parent that is
 *      a leaf or missing, subscription_type nodes;
 *   2. message-type validation: pubsub#type refuses payloads of another
 *      namespace, pubsub#max_payload_size refuses bigger payloads, and a
 *      refused publish stores and notifies nothing;
 *   3. pull mode with offsets (XEP-0059 over the node's seqs): one client
 *      publishes 10,000 items, 64 publishes in flight, while another reads
 *      them from offset 0 in pages of 100 and must end with every item
 *      exactly once, in publish order; the edges of paging (after the
 *      end, the last page with <before/>, <count/>); raising an existing
 *      node's pubsub#max_items for such consumers (§8.2.4).
 *
 * Assertions are exact: errors by type, defined condition, application
 * condition and its namespace; notifications element by element after
 * canonicalisation (and no other child); stored state through SQL.  Within
 * one node, notifications arrive in seq order, so "an earlier item was not
 * delivered" is proved by the later one arriving first; across nodes the
 * order is open, so "nothing more" is a bounded wait (QUIET_MS).
 *
 * Each test starts its own pubsubd as c4.<domain> on a fresh database
 * (h_db_create), uses node names from h_uid() and stops the daemon at the
 * end, asserting a clean exit.  Tests run one at a time in forked
 * processes (CK_FORK).
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TIMEOUT_S 60
#define PULL_TEST_TIMEOUT_S 300
#define COMPONENT_UP_MS 10000
#define IQ_TIMEOUT_MS 5000
#define NOTIFY_TIMEOUT_MS 5000
#define QUIET_MS 1000 /* how long "no further notification" is watched */

#define NS_DATA "jabber:x:data"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_SHIM "http://jabber.org/protocol/shim"
#define NS_NODE_CONFIG H_NS_PUBSUB "#node_config"
#define NS_SUBSCRIBE_OPTIONS H_NS_PUBSUB "#subscribe_options"
#define NS_ORDER "urn:example:order"
#define NS_PULL "urn:example:pubsubd:pull"

/* Data form pieces (XEP-0004), for literal forms. */
#define FIELD(var, value) "<field var='" var "'><value>" value "</value></field>"
#define FORM_TYPE(t) "<field var='FORM_TYPE' type='hidden'><value>" t "</value></field>"
#define CONFIG_FORM(fields)                                                   \
    "<x xmlns='" NS_DATA "' type='submit'>" FORM_TYPE(NS_NODE_CONFIG) fields \
    "</x>"
#define SUB_OPTIONS_FORM(fields)                                              \
    "<x xmlns='" NS_DATA "' type='submit'>" FORM_TYPE(NS_SUBSCRIBE_OPTIONS)  \
    fields "</x>"
#define ITEMS_OPTIONS(depth)                                                  \
    FIELD("pubsub#subscription_type", "items")                               \
    FIELD("pubsub#subscription_depth", depth)

/* One test's pubsubd and database; the owner's client waits for it. */
struct fixture {
    char *jid; /* component JID */
    char *db;  /* conninfo of the fresh database */
    struct h_proc *proc;
    struct h_client *owner;
};

/*
 * Waits until jid answers disco#items with a result: the link is up and so
 * is its database (requests that need the database get a wait error until
 * the pool is connected).
 */
static void wait_ready(struct h_proc *proc, struct h_client *c,
                       const char *jid)
{
    h_wait_service_ready(proc, c, jid, COMPONENT_UP_MS);
}

static void fixture_up(struct fixture *f)
{
    f->jid = h_strf("c4.%s", h_env("PST_DOMAIN"));
    f->db = h_db_create();
    f->proc = h_pubsubd_start(f->jid, f->db, NULL);
    f->owner = h_client_connect("owner");
    wait_ready(f->proc, f->owner, f->jid);
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

static xmpp_stanza_t *own_set(struct fixture *f, struct h_client *c,
                              const char *inner)
{
    return pubsub_iq(f, c, "set", H_NS_PUBSUB_OWNER, inner);
}

/* Asserts an empty IQ result and releases it. */
#define assert_empty_result(f, r, what)                                      \
    do {                                                                     \
        xmpp_stanza_t *r_ = (r);                                             \
        h_assert_result((f)->proc, r_, (what));                              \
        char *t_ = h_stanza_to_string(r_);                                   \
        ck_assert_msg(h_count_children(r_, NULL, NULL) == 0,                 \
                      "%s: expected an empty result, got %s", (what), t_);  \
        free(t_);                                                            \
        xmpp_stanza_release(r_);                                             \
    } while (0)

/* Asserts the exact error and, for an application condition, that it is
 * in the pubsub#errors namespace (with feature='feature' when feature is
 * not NULL); releases the reply. */
#define assert_ps_error(f, r, what, type, cond, app)                         \
    assert_ps_error_at(__LINE__, (f), (r), (what), (type), (cond), (app),    \
                       NULL)
#define assert_unsupported(f, r, what, feature)                              \
    assert_ps_error_at(__LINE__, (f), (r), (what), "cancel",                 \
                       "feature-not-implemented", "unsupported", (feature))
static void assert_ps_error_at(int line, struct fixture *f, xmpp_stanza_t *r,
                               const char *what, const char *type,
                               const char *cond, const char *app,
                               const char *feature)
{
    char *w = h_strf("%s (line %d)", what, line);
    h_assert_error(f->proc, r, w, type, cond, app);
    if (app != NULL && *app != '\0') {
        xmpp_stanza_t *e = h_child(r, "error", NULL);
        xmpp_stanza_t *a = h_child(e, app, H_NS_PUBSUB_ERRORS);
        char *text = h_stanza_to_string(r);
        if (a == NULL) {
            h_fail_dump(f->proc);
            ck_abort_msg("%s: <%s/> not in namespace %s: %s", w, app,
                         H_NS_PUBSUB_ERRORS, text);
        }
        if (feature != NULL) {
            const char *got = xmpp_stanza_get_attribute(a, "feature");
            if (got == NULL || strcmp(got, feature) != 0) {
                h_fail_dump(f->proc);
                ck_abort_msg("%s: expected feature='%s': %s", w, feature,
                             text);
            }
        }
        free(text);
    }
    free(w);
    xmpp_stanza_release(r);
}

/* Creates node with the node_config fields (create-and-configure, §8.1.3;
 * fields "" for a plain <create/>) as the owner; returns the reply. */
static xmpp_stanza_t *create_iq(struct fixture *f, const char *node,
                                const char *fields)
{
    char *inner = *fields != '\0'
                      ? h_strf("<create node='%s'/><configure>" CONFIG_FORM(
                                   "%s") "</configure>", node, fields)
                      : h_strf("<create node='%s'/>", node);
    xmpp_stanza_t *r = ps_set(f, f->owner, inner);
    free(inner);
    return r;
}

static void create_ok(struct fixture *f, const char *node, const char *fields)
{
    char *what = h_strf("create %s with [%s]", node, fields);
    assert_empty_result(f, create_iq(f, node, fields), what);
    free(what);
}

/* A collection node (XEP-0248 §6.1), below parent unless it is NULL. */
static void create_collection(struct fixture *f, const char *node,
                              const char *parent)
{
    char *fields = parent == NULL
                       ? h_strf("%s", FIELD("pubsub#node_type", "collection"))
                       : h_strf(FIELD("pubsub#node_type", "collection")
                                "<field var='pubsub#collection'><value>%s"
                                "</value></field>", parent);
    create_ok(f, node, fields);
    free(fields);
}

/* A leaf node whose pubsub#collection is parent (XEP-0248 §6.2). */
static void create_leaf(struct fixture *f, const char *node,
                        const char *parent)
{
    char *fields = h_strf("<field var='pubsub#collection'><value>%s</value>"
                          "</field>", parent);
    create_ok(f, node, fields);
    free(fields);
}

static void configure_ok(struct fixture *f, const char *node,
                         const char *fields)
{
    char *inner = h_strf("<configure node='%s'>" CONFIG_FORM("%s")
                         "</configure>", node, fields);
    char *what = h_strf("configure %s with [%s]", node, fields);
    assert_empty_result(f, own_set(f, f->owner, inner), what);
    free(what);
    free(inner);
}

/* Subscribes c's bare JID to node, with the subscribe_options fields
 * (subscribe-and-configure, §6.3.7) unless option_fields is NULL; returns
 * the reply. */
static xmpp_stanza_t *subscribe_iq(struct fixture *f, struct h_client *c,
                                   const char *node, const char *option_fields)
{
    char *options = option_fields == NULL
                        ? h_strf("%s", "")
                        : h_strf("<options>" SUB_OPTIONS_FORM("%s")
                                 "</options>", option_fields);
    char *inner = h_strf("<subscribe node='%s' jid='%s'/>%s", node,
                         h_client_bare_jid(c), options);
    xmpp_stanza_t *r = ps_set(f, c, inner);
    free(inner);
    free(options);
    return r;
}

/* Subscribes as subscribe_iq() and asserts the §6.1.2 result: a
 * subscribed <subscription/> for this node and JID with a subid. */
static void subscribe_ok(struct fixture *f, struct h_client *c,
                         const char *node, const char *option_fields)
{
    xmpp_stanza_t *r = subscribe_iq(f, c, node, option_fields);
    char *what = h_strf("subscribe %s to %s with [%s]", h_client_bare_jid(c),
                        node, option_fields ? option_fields : "no options");
    h_assert_result(f->proc, r, what);
    xmpp_stanza_t *s = h_child(h_child(r, "pubsub", H_NS_PUBSUB),
                               "subscription", NULL);
    char *text = h_stanza_to_string(r);
    const char *sn = s ? xmpp_stanza_get_attribute(s, "node") : NULL;
    const char *sj = s ? xmpp_stanza_get_attribute(s, "jid") : NULL;
    const char *subid = s ? xmpp_stanza_get_attribute(s, "subid") : NULL;
    const char *state = s ? xmpp_stanza_get_attribute(s, "subscription") : NULL;
    if (sn == NULL || strcmp(sn, node) != 0 || sj == NULL ||
        strcmp(sj, h_client_bare_jid(c)) != 0 || subid == NULL ||
        *subid == '\0' || state == NULL || strcmp(state, "subscribed") != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: expected <subscription node='%s' jid='%s' "
                     "subid='...' subscription='subscribed'/>: %s", what, node,
                     h_client_bare_jid(c), text);
    }
    free(text);
    free(what);
    xmpp_stanza_release(r);
}

/* Sets user's affiliation with node, as the owner (§8.9.2). */
static void affiliate(struct fixture *f, const char *node, const char *user,
                      const char *affiliation)
{
    char *inner = h_strf("<affiliations node='%s'><affiliation jid='%s@%s' "
                         "affiliation='%s'/></affiliations>", node, user,
                         h_env("PST_DOMAIN"), affiliation);
    assert_empty_result(f, own_set(f, f->owner, inner), "set affiliation");
    free(inner);
}

/* The payload of the message-type tests for item id; caller frees. */
static char *order_payload(const char *id)
{
    return h_strf("<order xmlns='" NS_ORDER "' n='%s'/>", id);
}

/* Publishes <item id=id>payload</item> to node as c; returns the reply. */
static xmpp_stanza_t *publish_iq(struct fixture *f, struct h_client *c,
                                 const char *node, const char *id,
                                 const char *payload)
{
    char *inner = h_strf("<publish node='%s'><item id='%s'>%s</item>"
                         "</publish>", node, id, payload);
    xmpp_stanza_t *r = ps_set(f, c, inner);
    free(inner);
    return r;
}

/* Publishes payload as item id and asserts the §7.1.2 result. */
static void publish_ok(struct fixture *f, struct h_client *c,
                       const char *node, const char *id, const char *payload)
{
    xmpp_stanza_t *r = publish_iq(f, c, node, id, payload);
    char *what = h_strf("publish %s to %s", id, node);
    h_assert_result(f->proc, r, what);
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><publish "
                            "node='%s'><item id='%s'/></publish></pubsub>",
                            node, id);
    assert_xml_eq(f, h_child(r, "pubsub", H_NS_PUBSUB), expected, what);
    free(expected);
    free(what);
    xmpp_stanza_release(r);
}

/* Publishes order_payload(id) as item id as the owner. */
static void publish_order(struct fixture *f, const char *node, const char *id)
{
    char *p = order_payload(id);
    publish_ok(f, f->owner, node, id, p);
    free(p);
}

/* ---- SQL ----------------------------------------------------------------- */

/* SELECT expr over the live node named node joined with its config. */
static long long node_sql(struct fixture *f, const char *node,
                          const char *expr)
{
    char *sql = h_strf("SELECT %s FROM pubsub.node n JOIN pubsub.node_config c"
                       " USING (node_id) WHERE n.name = '%s' AND NOT n.deleted",
                       expr, node);
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

static long long count_nodes(struct fixture *f, const char *node)
{
    char *sql = h_strf("SELECT count(*) FROM pubsub.node WHERE name = '%s'",
                       node);
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

static long long count_all_items(struct fixture *f)
{
    return h_sql_int(f->db, "SELECT count(*) FROM pubsub.item");
}

/* Subscriptions to node whose JID's bare part is that of c. */
static long long subscriptions_of(struct fixture *f, const char *node,
                                  struct h_client *c)
{
    char *sql = h_strf("SELECT count(*) FROM pubsub.subscription s JOIN "
                       "pubsub.node n USING (node_id) WHERE n.name = '%s' AND "
                       "split_part(s.jid, '/', 1) = '%s'", node,
                       h_client_bare_jid(c));
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

/* Asserts node's kind and the name of its parent ("" for none). */
static void assert_graph(struct fixture *f, const char *node,
                         const char *kind, const char *parent)
{
    char *sql = h_strf("SELECT n.kind || '|' || coalesce(p.name, '') FROM "
                       "pubsub.node n LEFT JOIN pubsub.node p ON p.node_id = "
                       "n.parent_id WHERE n.name = '%s' AND NOT n.deleted",
                       node);
    PGresult *res = h_sql(f->db, sql);
    char *want = h_strf("%s|%s", kind, parent);
    ck_assert_msg(PQntuples(res) == 1 &&
                      strcmp(PQgetvalue(res, 0, 0), want) == 0,
                  "node %s: expected kind|parent %s, got %s", node, want,
                  PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "(no row)");
    free(want);
    PQclear(res);
    free(sql);
}

/* ---- notifications ------------------------------------------------------- */

/* One notification a client expects: item `item` of leaf `node`, with the
 * SHIM Collection header `via` (NULL: a direct subscription, no header). */
struct expect {
    const char *node;
    const char *item;
    const char *via;
    bool seen;
};

/* Asserts that message m is exactly the notification e for c:
 * from the component, to c's bare JID, and no children but
 *   <event xmlns='...#event'><items node=leaf><item id=..>payload</item>
 *   </items></event>
 * and, through a collection,
 *   <headers xmlns='...shim'><header name='Collection'>via</header></headers>.
 */
static void assert_notification(struct fixture *f, struct h_client *c,
                                xmpp_stanza_t *m, const struct expect *e,
                                const char *who)
{
    char *text = h_stanza_to_string(m);
    const char *from = xmpp_stanza_get_from(m);
    const char *to = xmpp_stanza_get_to(m);
    if (from == NULL || strcmp(from, f->jid) != 0 || to == NULL ||
        strcmp(to, h_client_bare_jid(c)) != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: notification of %s/%s not from %s to %s: %s", who,
                     e->node, e->item, f->jid, h_client_bare_jid(c), text);
    }
    int want_children = e->via != NULL ? 2 : 1;
    if (h_count_children(m, NULL, NULL) != want_children ||
        h_count_children(m, "event", H_NS_PUBSUB_EVENT) != 1 ||
        h_count_children(m, "headers", NS_SHIM) != want_children - 1) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: notification of %s/%s must have exactly one "
                     "<event/>%s and nothing else: %s", who, e->node, e->item,
                     e->via != NULL ? " and one SHIM <headers/>"
                                    : " (no SHIM <headers/>: direct "
                                      "subscription)", text);
    }
    char *payload = order_payload(e->item);
    char *event = h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'><items "
                         "node='%s'><item id='%s'>%s</item></items></event>",
                         e->node, e->item, payload);
    char *what = h_strf("%s: event of %s/%s in %s", who, e->node, e->item,
                        text);
    assert_xml_eq(f, h_child(m, "event", H_NS_PUBSUB_EVENT), event, what);
    if (e->via != NULL) {
        char *headers = h_strf("<headers xmlns='" NS_SHIM "'><header "
                               "name='Collection'>%s</header></headers>",
                               e->via);
        assert_xml_eq(f, h_child(m, "headers", NS_SHIM), headers, what);
        free(headers);
    }
    free(what);
    free(event);
    free(payload);
    free(text);
}

/*
 * Takes the next n messages of c (each within NOTIFY_TIMEOUT_MS) and
 * matches each, by item id, to one of the n expected notifications: each
 * exactly once, of its exact shape, and in the order of `expected` among
 * those of the same leaf (seq order).  The order between leaves is open.
 * Then asserts that nothing more arrives within QUIET_MS.
 */
static void assert_notifications(struct fixture *f, struct h_client *c,
                                 struct expect *expected, int n,
                                 const char *who)
{
    for (int i = 0; i < n; i++)
        expected[i].seen = false;
    for (int got = 0; got < n; got++) {
        xmpp_stanza_t *m = h_next_message(c, NOTIFY_TIMEOUT_MS);
        if (m == NULL) {
            char *missing = NULL;
            size_t len = 0;
            FILE *out = open_memstream(&missing, &len);
            for (int i = 0; i < n; i++)
                if (!expected[i].seen)
                    fprintf(out, " %s/%s", expected[i].node,
                            expected[i].item);
            fclose(out);
            h_fail_dump(f->proc);
            ck_abort_msg("%s: %d of %d notifications arrived within %d ms; "
                         "missing:%s", who, got, n, NOTIFY_TIMEOUT_MS,
                         missing);
        }
        char *text = h_stanza_to_string(m);
        xmpp_stanza_t *item =
            h_child(h_child(h_child(m, "event", H_NS_PUBSUB_EVENT), "items",
                            NULL), "item", NULL);
        const char *id = item != NULL ? xmpp_stanza_get_attribute(item, "id")
                                      : NULL;
        int k = -1;
        for (int i = 0; id != NULL && i < n; i++)
            if (strcmp(expected[i].item, id) == 0)
                k = i;
        if (k < 0) {
            h_fail_dump(f->proc);
            ck_abort_msg("%s: unexpected message (not one of the %d expected "
                         "item notifications): %s", who, n, text);
        }
        if (expected[k].seen) {
            h_fail_dump(f->proc);
            ck_abort_msg("%s: item %s/%s notified twice; the second: %s", who,
                         expected[k].node, id, text);
        }
        for (int j = 0; j < k; j++) {
            if (!expected[j].seen &&
                strcmp(expected[j].node, expected[k].node) == 0) {
                h_fail_dump(f->proc);
                ck_abort_msg("%s: item %s/%s notified before the earlier "
                             "item %s of the same node: %s", who,
                             expected[k].node, id, expected[j].item, text);
            }
        }
        assert_notification(f, c, m, &expected[k], who);
        expected[k].seen = true;
        free(text);
        xmpp_stanza_release(m);
    }
    char *why = h_strf("(%s) after the %d expected notifications", who, n);
    h_expect_no_message(f->proc, c, QUIET_MS, why);
    free(why);
}

/* ======================================================================== */
/* 1. Message types as XEP-0248 collections                                 */
/* ======================================================================== */

/*
 * TOPIC collection T; alice subscribes to T (items, depth 1) before its
 * leaves T/A and T/B exist; bob subscribes to T/A only; carol to both T and
 * T/A.  Items of both leaves reach alice through T (with the Collection
 * header), bob only those of T/A (direct, no header), carol each item once:
 * those of T/A directly, those of T/B through T.
 */
START_TEST(test_collection_fanout)
{
    struct fixture f;
    fixture_up(&f);
    char *t = h_uid("topic");
    char *ta = h_strf("%s/A", t);
    char *tb = h_strf("%s/B", t);
    struct h_client *alice = h_client_connect("alice");
    struct h_client *bob = h_client_connect("bob");
    struct h_client *carol = h_client_connect("carol");

    create_collection(&f, t, NULL);
    assert_graph(&f, t, "collection", "");
    subscribe_ok(&f, alice, t, ITEMS_OPTIONS("1"));

    /* The leaves come after alice's subscription. */
    create_leaf(&f, ta, t);
    create_leaf(&f, tb, t);
    assert_graph(&f, ta, "leaf", t);
    assert_graph(&f, tb, "leaf", t);
    subscribe_ok(&f, bob, ta, NULL);
    subscribe_ok(&f, carol, t, ITEMS_OPTIONS("1"));
    subscribe_ok(&f, carol, ta, NULL);

    publish_order(&f, ta, "a1");
    publish_order(&f, tb, "b1");
    publish_order(&f, ta, "a2");
    publish_order(&f, tb, "b2");

    struct expect for_alice[] = {
        {ta, "a1", t, false}, {ta, "a2", t, false},
        {tb, "b1", t, false}, {tb, "b2", t, false},
    };
    assert_notifications(&f, alice, for_alice, 4, "alice (T, depth 1)");
    struct expect for_bob[] = {
        {ta, "a1", NULL, false}, {ta, "a2", NULL, false},
    };
    assert_notifications(&f, bob, for_bob, 2, "bob (T/A)");
    struct expect for_carol[] = {
        {ta, "a1", NULL, false}, {ta, "a2", NULL, false},
        {tb, "b1", t, false}, {tb, "b2", t, false},
    };
    assert_notifications(&f, carol, for_carol, 4, "carol (T and T/A)");

    h_client_disconnect(carol);
    h_client_disconnect(bob);
    h_client_disconnect(alice);
    free(tb);
    free(ta);
    free(t);
    fixture_down(&f);
}
END_TEST

/*
 * T (collection) > T/sub (collection) > T/sub/leaf, and T/direct (leaf).
 * dave subscribes to T with depth 1, frank with depth 2, eve with depth
 * all.  An item of T/sub/leaf (two levels below T) reaches frank and eve,
 * not dave; an item of T/direct reaches all three.  The header names the
 * subscribed collection T.
 */
START_TEST(test_collection_depth)
{
    struct fixture f;
    fixture_up(&f);
    char *t = h_uid("topic");
    char *sub = h_strf("%s/sub", t);
    char *leaf = h_strf("%s/sub/leaf", t);
    char *direct = h_strf("%s/direct", t);
    struct h_client *dave = h_client_connect("dave");
    struct h_client *eve = h_client_connect("eve");
    struct h_client *frank = h_client_connect("frank");

    create_collection(&f, t, NULL);
    create_collection(&f, sub, t);
    create_leaf(&f, leaf, sub);
    create_leaf(&f, direct, t);
    assert_graph(&f, sub, "collection", t);
    assert_graph(&f, leaf, "leaf", sub);
    subscribe_ok(&f, dave, t, ITEMS_OPTIONS("1"));
    subscribe_ok(&f, frank, t, ITEMS_OPTIONS("2"));
    subscribe_ok(&f, eve, t, ITEMS_OPTIONS("all"));

    publish_order(&f, leaf, "deep1");
    publish_order(&f, direct, "near1");

    struct expect for_dave[] = {{direct, "near1", t, false}};
    assert_notifications(&f, dave, for_dave, 1, "dave (T, depth 1)");
    struct expect for_frank[] = {
        {leaf, "deep1", t, false}, {direct, "near1", t, false},
    };
    assert_notifications(&f, frank, for_frank, 2, "frank (T, depth 2)");
    struct expect for_eve[] = {
        {leaf, "deep1", t, false}, {direct, "near1", t, false},
    };
    assert_notifications(&f, eve, for_eve, 2, "eve (T, depth all)");

    h_client_disconnect(frank);
    h_client_disconnect(eve);
    h_client_disconnect(dave);
    free(direct);
    free(leaf);
    free(sub);
    free(t);
    fixture_down(&f);
}
END_TEST

/*
 * A subscription to T made after an item was published to T/A does not
 * receive that item: its first notification is the next item of T/A
 * (a node's notifications arrive in seq order, so the earlier one would
 * have come first).
 */
START_TEST(test_collection_late_subscription)
{
    struct fixture f;
    fixture_up(&f);
    char *t = h_uid("topic");
    char *ta = h_strf("%s/A", t);
    struct h_client *frank = h_client_connect("frank");

    create_collection(&f, t, NULL);
    create_leaf(&f, ta, t);
    publish_order(&f, ta, "before");
    subscribe_ok(&f, frank, t, ITEMS_OPTIONS("1"));
    publish_order(&f, ta, "after");

    struct expect for_frank[] = {{ta, "after", t, false}};
    assert_notifications(&f, frank, for_frank, 1,
                         "frank (T, subscribed after the first item)");

    h_client_disconnect(frank);
    free(ta);
    free(t);
    fixture_down(&f);
}
END_TEST

/*
 * The errors: publishing to a collection (XEP-0248 §7.1: items live in
 * leaves) is feature-not-implemented + <unsupported feature='publish'/>;
 * a pubsub#collection that is a leaf is not-allowed + invalid-options, one
 * that does not exist item-not-found, and neither creates the node;
 * subscription_type 'nodes' is bad-request + invalid-options and creates
 * no subscription.
 */
START_TEST(test_collection_errors)
{
    struct fixture f;
    fixture_up(&f);
    char *t = h_uid("topic");
    char *ta = h_strf("%s/A", t);
    char *under_leaf = h_strf("%s/A/x", t);
    char *orphan = h_uid("orphan");
    char *missing = h_uid("missing");
    struct h_client *alice = h_client_connect("alice");

    create_collection(&f, t, NULL);
    create_leaf(&f, ta, t);

    char *payload = order_payload("c1");
    assert_unsupported(&f, publish_iq(&f, f.owner, t, "c1", payload),
                       "publish to a collection", "publish");
    free(payload);
    ck_assert_int_eq(count_all_items(&f), 0);
    ck_assert_int_eq(node_sql(&f, t, "n.last_seq"), 0);

    char *fields = h_strf("<field var='pubsub#collection'><value>%s</value>"
                          "</field>", ta);
    assert_ps_error(&f, create_iq(&f, under_leaf, fields),
                    "create with pubsub#collection = a leaf", "cancel",
                    "not-allowed", "invalid-options");
    free(fields);
    ck_assert_int_eq(count_nodes(&f, under_leaf), 0);

    fields = h_strf("<field var='pubsub#collection'><value>%s</value>"
                    "</field>", missing);
    assert_ps_error(&f, create_iq(&f, orphan, fields),
                    "create with pubsub#collection = a missing node", "cancel",
                    "item-not-found", H_NO_APP_CONDITION);
    free(fields);
    ck_assert_int_eq(count_nodes(&f, orphan), 0);
    ck_assert_int_eq(count_nodes(&f, missing), 0);

    assert_ps_error(&f,
                    subscribe_iq(&f, alice, t,
                                 FIELD("pubsub#subscription_type", "nodes")
                                 FIELD("pubsub#subscription_depth", "1")),
                    "subscribe with subscription_type nodes", "modify",
                    "bad-request", "invalid-options");
    ck_assert_int_eq(subscriptions_of(&f, t, alice), 0);

    h_client_disconnect(alice);
    free(missing);
    free(orphan);
    free(under_leaf);
    free(ta);
    free(t);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 2. Message-type validation                                               */
/* ======================================================================== */

/*
 * A node whose pubsub#type is urn:example:order refuses a payload in any
 * other namespace with modify/bad-request + invalid-payload: nothing is
 * stored (no item, the node's seq unchanged) and nothing is notified
 * (bob's first notification is the first valid item).
 */
START_TEST(test_payload_type_refused)
{
    static const char *const wrong[] = {
        "<invoice xmlns='urn:example:invoice'/>",
        "<order xmlns='urn:example:orders'/>",
        "<o:order xmlns:o='urn:example:other'/>",
        "<order/>",
    };
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("orders");
    struct h_client *bob = h_client_connect("bob");
    create_ok(&f, node, FIELD("pubsub#type", NS_ORDER));
    subscribe_ok(&f, bob, node, NULL);

    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        char *what = h_strf("publish %s to a node of type " NS_ORDER,
                            wrong[i]);
        assert_ps_error(&f, publish_iq(&f, f.owner, node, "bad", wrong[i]),
                        what, "modify", "bad-request", "invalid-payload");
        free(what);
        ck_assert_int_eq(count_all_items(&f), 0);
        ck_assert_int_eq(node_sql(&f, node, "n.last_seq"), 0);
    }

    publish_order(&f, node, "o1");
    ck_assert_int_eq(count_all_items(&f), 1);
    assert_ps_error(&f, publish_iq(&f, f.owner, node, "bad2", wrong[0]),
                    "publish of another type after a valid one", "modify",
                    "bad-request", "invalid-payload");
    ck_assert_int_eq(count_all_items(&f), 1);
    publish_order(&f, node, "o2");
    ck_assert_int_eq(count_all_items(&f), 2);

    struct expect for_bob[] = {
        {node, "o1", NULL, false}, {node, "o2", NULL, false},
    };
    assert_notifications(&f, bob, for_bob, 2, "bob (typed node)");

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

/* The payload <order xmlns='urn:example:order' n='id'>xxx</order> padded to
 * exactly size bytes; caller frees. */
static char *order_of_size(const char *id, size_t size)
{
    char *head = h_strf("<order xmlns='" NS_ORDER "' n='%s'>", id);
    const char *tail = "</order>";
    size_t fixed = strlen(head) + strlen(tail);
    ck_assert_msg(size >= fixed, "test bug: %zu bytes is too small", size);
    char *pad = malloc(size - fixed + 1);
    ck_assert_ptr_nonnull(pad);
    memset(pad, 'x', size - fixed);
    pad[size - fixed] = '\0';
    char *p = h_strf("%s%s%s", head, pad, tail);
    ck_assert_uint_eq(strlen(p), size);
    free(pad);
    free(head);
    return p;
}

/*
 * pubsub#max_payload_size = 100: a payload of 100 bytes is accepted, one of
 * 101 or 1000 bytes is refused with modify/not-acceptable +
 * payload-too-big, stored nowhere and notified to nobody.
 */
START_TEST(test_max_payload_size)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("small");
    struct h_client *bob = h_client_connect("bob");
    create_ok(&f, node, FIELD("pubsub#max_payload_size", "100"));
    ck_assert_int_eq(node_sql(&f, node, "c.max_payload_size"), 100);
    subscribe_ok(&f, bob, node, NULL);

    char *p = order_of_size("big", 101);
    assert_ps_error(&f, publish_iq(&f, f.owner, node, "big", p),
                    "publish of 101 bytes, max_payload_size 100", "modify",
                    "not-acceptable", "payload-too-big");
    free(p);
    p = order_of_size("big", 1000);
    assert_ps_error(&f, publish_iq(&f, f.owner, node, "big", p),
                    "publish of 1000 bytes, max_payload_size 100", "modify",
                    "not-acceptable", "payload-too-big");
    free(p);
    ck_assert_int_eq(count_all_items(&f), 0);
    ck_assert_int_eq(node_sql(&f, node, "n.last_seq"), 0);

    p = order_of_size("fits", 100);
    char *ev = h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'><items node='%s'>"
                      "<item id='fits'>%s</item></items></event>", node, p);
    publish_ok(&f, f.owner, node, "fits", p);
    ck_assert_int_eq(count_all_items(&f), 1);
    xmpp_stanza_t *m = h_next_message(bob, NOTIFY_TIMEOUT_MS);
    if (m == NULL) {
        h_fail_dump(f.proc);
        ck_abort_msg("bob: no notification of item fits within %d ms",
                     NOTIFY_TIMEOUT_MS);
    }
    char *text = h_stanza_to_string(m);
    ck_assert_msg(h_count_children(m, NULL, NULL) == 1,
                  "bob: expected only an <event/>: %s", text);
    assert_xml_eq(&f, h_child(m, "event", H_NS_PUBSUB_EVENT), ev,
                  "bob's first notification (the 100-byte item)");
    free(text);
    xmpp_stanza_release(m);
    free(ev);
    free(p);

    p = order_of_size("big", 101);
    assert_ps_error(&f, publish_iq(&f, f.owner, node, "big", p),
                    "publish of 101 bytes after a valid one", "modify",
                    "not-acceptable", "payload-too-big");
    free(p);
    ck_assert_int_eq(count_all_items(&f), 1);
    publish_order(&f, node, "s2");
    struct expect for_bob[] = {{node, "s2", NULL, false}};
    assert_notifications(&f, bob, for_bob, 1, "bob (after the refused one)");

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 3. Pull mode with offsets (XEP-0059 over seqs)                           */
/* ======================================================================== */

enum { PULL_TOTAL = 10000, PULL_WINDOW = 64, PULL_PAGE = 100 };

/* The publishing client of the pull test: item i (id "%05d") is published
 * in order, at most PULL_WINDOW requests without a reply. */
struct publisher {
    struct fixture *f;
    struct h_client *c;
    const char *node;
    int sent, acked;                   /* items sent, replies checked */
    char *ids[PULL_WINDOW];            /* IQ ids in flight, by item % W */
    long long sent_ms[PULL_WINDOW];
    long long done_ms;                 /* when the last reply came, or 0 */
};

static void publisher_send(struct publisher *p)
{
    int slot = p->sent % PULL_WINDOW;
    p->ids[slot] = h_uid("pub");
    p->sent_ms[slot] = h_now_ms();
    char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='"
                       H_NS_PUBSUB "'><publish node='%s'><item id='%05d'>"
                       "<e xmlns='" NS_PULL "'/></item></publish></pubsub>"
                       "</iq>", p->f->jid, p->ids[slot], p->node, p->sent);
    h_send(p->c, xml);
    free(xml);
    p->sent++;
}

/*
 * Without running the loop: checks the replies that have arrived, in
 * order (each must be the §7.1.2 result for its item), then tops the
 * window up.  Fails when the oldest request has waited IQ_TIMEOUT_MS.
 */
static void publisher_step(struct publisher *p)
{
    while (p->acked < p->sent) {
        int slot = p->acked % PULL_WINDOW;
        xmpp_stanza_t *r = h_wait_reply(p->c, p->ids[slot], 0);
        if (r == NULL) {
            if (h_now_ms() - p->sent_ms[slot] > IQ_TIMEOUT_MS) {
                h_fail_dump(p->f->proc);
                ck_abort_msg("publish of item %05d: no reply within %d ms "
                             "(%d sent, %d confirmed)%s", p->acked,
                             IQ_TIMEOUT_MS, p->sent, p->acked,
                             h_client_connected(p->c) ? ""
                                                      : "; stream closed");
            }
            break;
        }
        char *what = h_strf("publish of item %05d", p->acked);
        h_assert_result(p->f->proc, r, what);
        xmpp_stanza_t *item = h_child(h_child(h_child(r, "pubsub",
                                                      H_NS_PUBSUB),
                                              "publish", NULL), "item", NULL);
        const char *id = item ? xmpp_stanza_get_attribute(item, "id") : NULL;
        char want[16];
        snprintf(want, sizeof want, "%05d", p->acked);
        if (id == NULL || strcmp(id, want) != 0) {
            char *text = h_stanza_to_string(r);
            h_fail_dump(p->f->proc);
            ck_abort_msg("%s: result does not name item %s: %s", what, want,
                         text);
        }
        free(what);
        xmpp_stanza_release(r);
        free(p->ids[slot]);
        p->ids[slot] = NULL;
        p->acked++;
        if (p->acked == PULL_TOTAL)
            p->done_ms = h_now_ms();
    }
    while (p->sent < PULL_TOTAL && p->sent - p->acked < PULL_WINDOW)
        publisher_send(p);
}

/* One page as the reader saw it. */
struct page {
    int n;                   /* items on the page */
    long long first, last;   /* <first/> and <last/>, -1 when absent */
    long long count;         /* <count/>, -1 when absent */
};

/*
 * Sends an items request for node with the result set elements rsm, as c,
 * and waits up to IQ_TIMEOUT_MS for the reply while stepping p (NULL: no
 * publisher).  Asserts a result whose <items node=/> holds only <item/>s
 * and whose <set/> has <first/> and <last/> exactly when the page is not
 * empty.  Fills *pg.  Caller releases the reply.
 */
static xmpp_stanza_t *read_page(struct fixture *f, struct h_client *c,
                                struct publisher *p, const char *node,
                                const char *rsm, struct page *pg)
{
    char *id = h_uid("page");
    char *xml = h_strf("<iq type='get' to='%s' id='%s'><pubsub xmlns='"
                       H_NS_PUBSUB "'><items node='%s'/><set xmlns='" NS_RSM
                       "'>%s</set></pubsub></iq>", f->jid, id, node, rsm);
    h_send(c, xml);
    long long t0 = h_now_ms();
    xmpp_stanza_t *r = NULL;
    while (r == NULL) {
        if (p != NULL)
            publisher_step(p);
        r = h_wait_reply(c, id, 5);
        if (r == NULL && (h_now_ms() - t0 > IQ_TIMEOUT_MS ||
                          !h_client_connected(c))) {
            h_fail_dump(f->proc);
            ck_abort_msg("no reply to %s within %d ms", xml, IQ_TIMEOUT_MS);
        }
    }
    char *what = h_strf("page request %s", xml);
    h_assert_result(f->proc, r, what);
    char *text = h_stanza_to_string(r);
    xmpp_stanza_t *ps = h_child(r, "pubsub", H_NS_PUBSUB);
    xmpp_stanza_t *items = h_child(ps, "items", NULL);
    xmpp_stanza_t *set = h_child(ps, "set", NS_RSM);
    const char *inode = items ? xmpp_stanza_get_attribute(items, "node") : NULL;
    ck_assert_msg(inode != NULL && strcmp(inode, node) == 0 && set != NULL,
                  "%s: expected <items node='%s'/> and a <set/>: %s", what,
                  node, text);
    pg->n = h_count_children(items, NULL, NULL);
    ck_assert_msg(pg->n == h_count_children(items, "item", NULL),
                  "%s: only <item/> children expected: %s", what, text);
    char *fs = h_child_text(set, "first", NS_RSM);
    char *ls = h_child_text(set, "last", NS_RSM);
    char *cs = h_child_text(set, "count", NS_RSM);
    pg->first = fs ? strtoll(fs, NULL, 10) : -1;
    pg->last = ls ? strtoll(ls, NULL, 10) : -1;
    pg->count = cs ? strtoll(cs, NULL, 10) : -1;
    ck_assert_msg((pg->n > 0) == (fs != NULL) && (pg->n > 0) == (ls != NULL),
                  "%s: <first/> and <last/> exactly when the page has items "
                  "(XEP-0059 §2.6): %s", what, text);
    ck_assert_msg(pg->n == 0 || (pg->first >= 0 && pg->last >= pg->first),
                  "%s: bad first/last: %s", what, text);
    free(fs);
    free(ls);
    free(cs);
    free(text);
    free(what);
    free(xml);
    free(id);
    return r;
}

/* The item ids of items page r; ids[i] borrowed from r. */
static int page_ids(xmpp_stanza_t *r, const char **ids, int max)
{
    xmpp_stanza_t *items = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "items",
                                   NULL);
    int n = 0;
    for (xmpp_stanza_t *k = items ? xmpp_stanza_get_children(items) : NULL;
         k != NULL && n < max; k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k))
            continue;
        ids[n++] = xmpp_stanza_get_attribute(k, "id");
    }
    return n;
}

/*
 * publisher@ publishes 10,000 items (ids 00000..09999), keeping 64
 * publishes in flight, while alice reads the node from offset 0 in pages
 * of 100, each continuing after the previous page's <last/>, polling on
 * empty pages until a page requested after the last publish was confirmed
 * comes back empty.  She must have read every item exactly once, in
 * publish order.
 */
START_TEST(test_pull_offsets)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("pull");
    /* Retention above the volume, so offset 0 stays readable (the owner
     * configure request of §8.2 is test_pull_max_items_reconfigured's). */
    create_ok(&f, node, FIELD("pubsub#max_items", "20000"));
    ck_assert_int_eq(node_sql(&f, node, "c.max_items"), 20000);
    affiliate(&f, node, "publisher", "publisher");
    struct h_client *pubc = h_client_connect("publisher");
    struct h_client *alice = h_client_connect("alice");

    struct publisher p;
    memset(&p, 0, sizeof p);
    p.f = &f;
    p.c = pubc;
    p.node = node;

    int nread = 0, pages = 0, empty_pages = 0, read_while_publishing = 0;
    long long last = -1;
    long long t0 = h_now_ms();
    bool caught_up = false;
    publisher_step(&p);
    while (!caught_up) {
        if (h_now_ms() - t0 > (PULL_TEST_TIMEOUT_S - 60) * 1000LL) {
            h_fail_dump(f.proc);
            ck_abort_msg("pull: not caught up after %d s: %d published, %d "
                         "confirmed, %d read", PULL_TEST_TIMEOUT_S - 60,
                         p.sent, p.acked, nread);
        }
        bool publisher_done = p.acked == PULL_TOTAL;
        char *rsm = last < 0 ? h_strf("<max>%d</max>", PULL_PAGE)
                             : h_strf("<max>%d</max><after>%lld</after>",
                                      PULL_PAGE, last);
        struct page pg;
        xmpp_stanza_t *r = read_page(&f, alice, &p, node, rsm, &pg);
        char *text = h_stanza_to_string(r);
        pages++;
        ck_assert_msg(pg.n <= PULL_PAGE, "pull: page after %lld larger than "
                      "max %d: %s", last, PULL_PAGE, text);
        const char *ids[PULL_PAGE];
        int n = page_ids(r, ids, PULL_PAGE);
        for (int i = 0; i < n; i++) {
            char want[16];
            snprintf(want, sizeof want, "%05d", nread);
            if (ids[i] == NULL || strcmp(ids[i], want) != 0) {
                h_fail_dump(f.proc);
                ck_abort_msg("pull: after %d items read in order, the next "
                             "is %s, expected %s (page after %lld): %s", nread,
                             ids[i] ? ids[i] : "(no id)", want, last, text);
            }
            nread++;
        }
        if (n > 0) {
            ck_assert_msg(pg.first > last, "pull: page after %lld starts at "
                          "%lld: %s", last, pg.first, text);
            last = pg.last;
            if (!publisher_done)
                read_while_publishing += n;
        } else {
            empty_pages++;
            caught_up = publisher_done;
        }
        ck_assert_msg(pg.count >= nread && pg.count <= PULL_TOTAL,
                      "pull: <count/> %lld with %d items read: %s", pg.count,
                      nread, text);
        if (caught_up)
            ck_assert_msg(pg.count == PULL_TOTAL, "pull: final <count/> "
                          "%lld, expected %d: %s", pg.count, PULL_TOTAL, text);
        free(text);
        free(rsm);
        xmpp_stanza_release(r);
    }
    long long t_end = h_now_ms();
    ck_assert_int_eq(nread, PULL_TOTAL);
    ck_assert_int_eq(p.sent, PULL_TOTAL);
    ck_assert_int_eq(count_all_items(&f), PULL_TOTAL);
    fprintf(stderr, "pull: %d items published (%d in flight) in %lld ms "
            "(%.0f/s); reader caught up after %lld ms: %d pages of up to %d "
            "(%d empty), %d items read while the publisher was running\n",
            PULL_TOTAL, PULL_WINDOW, p.done_ms - t0,
            PULL_TOTAL * 1000.0 / (double)(p.done_ms - t0 > 0 ? p.done_ms - t0
                                                              : 1),
            t_end - t0, pages, PULL_PAGE, empty_pages, read_while_publishing);

    h_client_disconnect(alice);
    h_client_disconnect(pubc);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * Raising the retention of an existing node for pull consumers: the owner
 * submits pubsub#max_items = 20000 (§8.2.4) to a node created with the
 * default (1000); then 1001 items are all kept and the first page from
 * offset 0 starts with the first one.
 */
START_TEST(test_pull_max_items_reconfigured)
{
    enum { N = 1001 };
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("retain");
    create_ok(&f, node, "");
    ck_assert_int_eq(node_sql(&f, node, "c.max_items"), 1000);
    configure_ok(&f, node, FIELD("pubsub#max_items", "20000"));
    ck_assert_int_eq(node_sql(&f, node, "c.max_items"), 20000);
    char *iq_ids[N];
    for (int i = 0; i < N; i++) {
        iq_ids[i] = h_uid("pub");
        char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='"
                           H_NS_PUBSUB "'><publish node='%s'><item id='%05d'>"
                           "<e xmlns='" NS_PULL "'/></item></publish>"
                           "</pubsub></iq>", f.jid, iq_ids[i], node, i);
        h_send(f.owner, xml);
        free(xml);
    }
    for (int i = 0; i < N; i++) {
        xmpp_stanza_t *r = h_wait_reply(f.owner, iq_ids[i], IQ_TIMEOUT_MS);
        h_assert_result(f.proc, r, "pipelined publish");
        xmpp_stanza_release(r);
        free(iq_ids[i]);
    }
    ck_assert_int_eq(count_all_items(&f), N);
    struct h_client *alice = h_client_connect("alice");
    struct page pg;
    xmpp_stanza_t *r = read_page(&f, alice, NULL, node, "<max>1</max>", &pg);
    const char *ids[1];
    char *text = h_stanza_to_string(r);
    ck_assert_msg(page_ids(r, ids, 1) == 1 && ids[0] != NULL &&
                      strcmp(ids[0], "00000") == 0 && pg.count == N,
                  "first page from offset 0: expected item 00000 and count "
                  "%d: %s", N, text);
    free(text);
    xmpp_stanza_release(r);

    h_client_disconnect(alice);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * The edges of paging by offset, on 250 items: <after/> the last seq or
 * far beyond it gives an empty page (no <first/>/<last/>) with the count;
 * <before/> (empty) gives the last page; <count/> is the number of items.
 */
START_TEST(test_pull_edges)
{
    enum { N = 250, PAGE = 100 };
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("edges");
    create_ok(&f, node, "");
    struct h_client *alice = h_client_connect("alice");
    char *iq_ids[N];
    for (int i = 0; i < N; i++) {
        iq_ids[i] = h_uid("pub");
        char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='"
                           H_NS_PUBSUB "'><publish node='%s'><item id='%05d'>"
                           "<e xmlns='" NS_PULL "'/></item></publish>"
                           "</pubsub></iq>", f.jid, iq_ids[i], node, i);
        h_send(f.owner, xml);
        free(xml);
    }
    for (int i = 0; i < N; i++) {
        xmpp_stanza_t *r = h_wait_reply(f.owner, iq_ids[i], IQ_TIMEOUT_MS);
        h_assert_result(f.proc, r, "pipelined publish");
        xmpp_stanza_release(r);
        free(iq_ids[i]);
    }
    ck_assert_int_eq(count_all_items(&f), N);
    char *sql = h_strf("SELECT max(i.seq) FROM pubsub.item i JOIN pubsub.node "
                       "n USING (node_id) WHERE n.name = '%s'", node);
    long long max_seq = h_sql_int(f.db, sql);
    free(sql);
    sql = h_strf("SELECT i.seq FROM pubsub.item i JOIN pubsub.node n USING "
                 "(node_id) WHERE n.name = '%s' AND i.item_id = '%05d'", node,
                 N - PAGE);
    long long last_page_first = h_sql_int(f.db, sql);
    free(sql);

    /* <before/>: the last page, oldest first. */
    struct page pg;
    xmpp_stanza_t *r = read_page(&f, alice, NULL, node,
                                 "<max>100</max><before/>", &pg);
    char *text = h_stanza_to_string(r);
    const char *ids[PAGE];
    int n = page_ids(r, ids, PAGE);
    ck_assert_msg(n == PAGE && pg.n == PAGE, "before/: %d items: %s", n, text);
    for (int i = 0; i < n; i++) {
        char want[16];
        snprintf(want, sizeof want, "%05d", N - PAGE + i);
        ck_assert_msg(ids[i] != NULL && strcmp(ids[i], want) == 0,
                      "before/: position %d: expected %s: %s", i, want, text);
    }
    ck_assert_msg(pg.first == last_page_first && pg.last == max_seq &&
                      pg.count == N,
                  "before/: expected first %lld last %lld count %d: %s",
                  last_page_first, max_seq, N, text);
    free(text);
    xmpp_stanza_release(r);

    /* <after/> the last seq, and far beyond it: empty, with the count. */
    long long afters[] = {max_seq, max_seq + 1, max_seq + 1000000};
    for (size_t i = 0; i < sizeof afters / sizeof afters[0]; i++) {
        char *rsm = h_strf("<max>100</max><after>%lld</after>", afters[i]);
        r = read_page(&f, alice, NULL, node, rsm, &pg);
        text = h_stanza_to_string(r);
        ck_assert_msg(pg.n == 0 && pg.first == -1 && pg.last == -1 &&
                          pg.count == N,
                      "after %lld (last seq %lld): expected an empty page with "
                      "count %d: %s", afters[i], max_seq, N, text);
        free(text);
        xmpp_stanza_release(r);
        free(rsm);
    }

    /* The first page from offset 0 and <count/>. */
    r = read_page(&f, alice, NULL, node, "<max>100</max>", &pg);
    text = h_stanza_to_string(r);
    n = page_ids(r, ids, PAGE);
    ck_assert_msg(n == PAGE && pg.count == N && ids[0] != NULL &&
                      strcmp(ids[0], "00000") == 0 && ids[PAGE - 1] != NULL &&
                      strcmp(ids[PAGE - 1], "00099") == 0,
                  "first page: expected 00000..00099 and count %d: %s", N,
                  text);
    free(text);
    xmpp_stanza_release(r);

    h_client_disconnect(alice);
    free(node);
    fixture_down(&f);
}
END_TEST

static TCase *tcase(const char *name, int timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout_s);
    return tc;
}

static Suite *broker_suite(void)
{
    Suite *s = suite_create("broker");
    TCase *tc = tcase("collections", TEST_TIMEOUT_S);
    tcase_add_test(tc, test_collection_fanout);
    tcase_add_test(tc, test_collection_depth);
    tcase_add_test(tc, test_collection_late_subscription);
    tcase_add_test(tc, test_collection_errors);
    suite_add_tcase(s, tc);

    tc = tcase("message_type_validation", TEST_TIMEOUT_S);
    tcase_add_test(tc, test_payload_type_refused);
    tcase_add_test(tc, test_max_payload_size);
    suite_add_tcase(s, tc);

    tc = tcase("pull", PULL_TEST_TIMEOUT_S);
    tcase_add_test(tc, test_pull_offsets);
    tcase_add_test(tc, test_pull_edges);
    tcase_add_test(tc, test_pull_max_items_reconfigured);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(broker_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
