/*
 * check_conformance.c - the proofs docs/protocol.md names that no other
 * file gives: the exact feature list of the service's disco#info (every
 * feature it names is proved somewhere in this suite, and #auto-create is
 * there exactly when auto_create_nodes is on), the error cases of
 * XEP-0060 use cases the area files leave out (§7.2.3 retract without a
 * node or an item, §8.8.2 modifying the subscriptions of a missing node,
 * §6.5.9.11 no such items), the optional features multi-items and
 * config-node-max, the event types a node may have (§4.3: a transient
 * notification-only node is refused), and XEP-0059's <first index/> on
 * the disco#items of a node.
 *
 * Through the real parts: pubsubd, Prosody, PostgreSQL, client sessions.
 * Errors are asserted by type, condition and pubsub#errors child; stored
 * state through SQL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define COMPONENT "c2.localhost"
#define IQ_TIMEOUT_MS 10000
#define READY_TIMEOUT_MS 15000
#define NOTIFY_TIMEOUT_MS 10000

#define NS_DATA "jabber:x:data"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_NODE_CONFIG H_NS_PUBSUB "#node_config"
#define NS_TEST "urn:example:pubsubd:conformance"

/* A submitted node_config form with these <field/>s. */
#define CONFIG_FORM(fields)                                                    \
    "<x xmlns='" NS_DATA "' type='submit'><field var='FORM_TYPE' "             \
    "type='hidden'><value>" NS_NODE_CONFIG "</value></field>" fields "</x>"
#define FIELD(var, value) "<field var='" var "'><value>" value "</value></field>"

struct fixture {
    char *db;
    struct h_proc *proc;
    struct h_client *owner;
};

static void fixture_up_env(struct fixture *f, const char *const *env)
{
    f->db = h_db_create();
    f->proc = h_pubsubd_start(COMPONENT, f->db, env);
    f->owner = h_client_connect("owner");
    h_wait_service_ready(f->proc, f->owner, COMPONENT, READY_TIMEOUT_MS);
}

static void fixture_up(struct fixture *f)
{
    fixture_up_env(f, NULL);
}

static void fixture_down(struct fixture *f)
{
    h_client_disconnect(f->owner);
    h_pubsubd_stop(f->proc);
    h_db_drop(f->db);
    free(f->db);
}

/* <iq type=type to=COMPONENT>xml</iq>; caller releases the reply. */
static xmpp_stanza_t *raw_iq(struct h_client *c, const char *type, const char *xml)
{
    char *id = h_uid("k");
    char *s = h_strf("<iq type='%s' to='" COMPONENT "' id='%s'>%s</iq>", type, id, xml);
    xmpp_stanza_t *r = h_iq(c, s, IQ_TIMEOUT_MS);
    free(s);
    free(id);
    return r;
}

/* <iq type=type><pubsub xmlns=ns>body</pubsub></iq>; caller releases. */
static xmpp_stanza_t *ps_iq(struct h_client *c, const char *type, const char *ns,
                            const char *body)
{
    char *xml = h_strf("<pubsub xmlns='%s'>%s</pubsub>", ns, body);
    xmpp_stanza_t *r = raw_iq(c, type, xml);
    free(xml);
    return r;
}

static void ok(struct fixture *f, xmpp_stanza_t *r, const char *what)
{
    h_assert_result(f->proc, r, what);
    xmpp_stanza_release(r);
}

/* Asserts the error (type, condition, pubsub#errors child or none). */
#define err(f, r, what, type, cond, app) err_at(__LINE__, (f), (r), (what), (type), (cond), (app))
static void err_at(int line, struct fixture *f, xmpp_stanza_t *r, const char *what,
                   const char *type, const char *cond, const char *app)
{
    char *w = h_strf("%s (line %d)", what, line);
    h_assert_error(f->proc, r, w, type, cond, app ? app : H_NO_APP_CONDITION);
    if (app) {
        xmpp_stanza_t *a = h_child(h_child(r, "error", NULL), app, H_NS_PUBSUB_ERRORS);
        ck_assert_msg(a != NULL, "%s: <%s/> is not in %s", w, app, H_NS_PUBSUB_ERRORS);
    }
    free(w);
    xmpp_stanza_release(r);
}

static void create(struct fixture *f, const char *node)
{
    char *b = h_strf("<create node='%s'/>", node);
    ok(f, ps_iq(f->owner, "set", H_NS_PUBSUB, b), "create");
    free(b);
}

static xmpp_stanza_t *configure(struct fixture *f, const char *node, const char *fields)
{
    char *b = h_strf("<configure node='%s'>" CONFIG_FORM("%s") "</configure>", node, fields);
    xmpp_stanza_t *r = ps_iq(f->owner, "set", H_NS_PUBSUB_OWNER, b);
    free(b);
    return r;
}

static void publish(struct fixture *f, const char *node, const char *id)
{
    char *b = h_strf("<publish node='%s'><item id='%s'><e xmlns='" NS_TEST "'>%s</e></item>"
                     "</publish>", node, id, id);
    ok(f, ps_iq(f->owner, "set", H_NS_PUBSUB, b), "publish");
    free(b);
}

/* A one-integer SQL query about the node named node: fmt (a literal) has
 * one %s for the node's name. */
#define node_sql(f, fmt, node) sql_int_free((f), h_strf(fmt, (node)))
static long long sql_int_free(struct fixture *f, char *sql)
{
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

/* The ids of the <item/>s of an items result, "a,b,c"; caller frees. */
static char *item_ids(xmpp_stanza_t *r)
{
    xmpp_stanza_t *items = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "items", NULL);
    char *out = strdup("");
    for (xmpp_stanza_t *c = items ? xmpp_stanza_get_children(items) : NULL; c;
         c = xmpp_stanza_get_next(c)) {
        if (!xmpp_stanza_is_tag(c))
            continue;
        const char *id = xmpp_stanza_get_attribute(c, "id");
        char *n = h_strf("%s%s%s", out, *out ? "," : "", id ? id : "?");
        free(out);
        out = n;
    }
    return out;
}

/* The value of field var in the data form inside r, or NULL; caller
 * frees. */
static char *form_value(xmpp_stanza_t *r, const char *var)
{
    xmpp_stanza_t *ps = h_child(r, "pubsub", H_NS_PUBSUB_OWNER);
    xmpp_stanza_t *conf = ps ? h_child(ps, "configure", NULL) : NULL;
    xmpp_stanza_t *x = conf ? h_child(conf, "x", NS_DATA) : NULL;
    for (xmpp_stanza_t *c = x ? xmpp_stanza_get_children(x) : NULL; c;
         c = xmpp_stanza_get_next(c)) {
        const char *v = xmpp_stanza_get_attribute(c, "var");
        if (xmpp_stanza_is_tag(c) && v && strcmp(v, var) == 0)
            return h_child_text(c, "value", NULL);
    }
    return NULL;
}

/* ---- the service's features ---------------------------------------------- */

/*
 * Every feature the service advertises, and the test that proves it (the
 * same list as docs/protocol.md).  A feature added to src/disco.c without
 * its proof makes advertised_features fail.
 */
static const char *const advertised[] = {
    "http://jabber.org/protocol/commands", /* check_authorize get_pending, check_redelivery */
    H_NS_DISCO_INFO, /* check_foundation disco_info */
    H_NS_DISCO_ITEMS, /* check_foundation disco_items_empty, check_xep0060 disco_items_rsm */
    H_NS_PING, /* check_foundation ping_and_version */
    H_NS_VERSION, /* check_foundation ping_and_version */
    H_NS_PUBSUB, /* check_pubsub round_trip */
    NS_RSM, /* check_xep0060 rsm_items, check_paging */
    H_NS_PUBSUB "#rsm", /* the same */
    H_NS_PUBSUB "#collections", /* check_broker collection_* */
    H_NS_PUBSUB "#config-node", /* check_xep0060 node_config */
    H_NS_PUBSUB "#config-node-max", /* config_node_max below */
    H_NS_PUBSUB "#create-and-configure", /* check_xep0060 create_and_configure */
    H_NS_PUBSUB "#create-nodes", /* check_pubsub items_and_nodes */
    H_NS_PUBSUB "#instant-nodes", /* check_pubsub items_and_nodes */
    H_NS_PUBSUB "#delete-nodes", /* check_pubsub round_trip, bad_requests */
    H_NS_PUBSUB "#publish", /* check_pubsub round_trip, bad_requests */
    H_NS_PUBSUB "#publish-options", /* check_xep0060 publish_options */
    H_NS_PUBSUB "#purge-nodes", /* check_xep0060 purge */
    H_NS_PUBSUB "#item-ids", /* check_pubsub items_and_nodes */
    H_NS_PUBSUB "#multi-items", /* multi_items below */
    H_NS_PUBSUB "#persistent-items", /* check_pubsub items_and_nodes */
    H_NS_PUBSUB "#delete-items", /* check_pubsub round_trip, retract_errors below */
    H_NS_PUBSUB "#retract-items", /* the same */
    H_NS_PUBSUB "#meta-data", /* check_xep0060 node_metadata */
    H_NS_PUBSUB "#retrieve-default", /* check_xep0060 default_config */
    H_NS_PUBSUB "#retrieve-default-sub", /* check_subscriptions default_options */
    H_NS_PUBSUB "#leased-subscription", /* check_subscriptions leased_subscription */
    H_NS_PUBSUB "#retrieve-items", /* check_pubsub items_and_nodes */
    H_NS_PUBSUB "#subscribe", /* check_pubsub subscription_errors */
    H_NS_PUBSUB "#subscription-options", /* check_subscriptions options_get_set */
    H_NS_PUBSUB "#multi-subscribe", /* check_subscriptions multi_subscribe */
    H_NS_PUBSUB "#subscription-notifications", /* check_authorize, check_xep0060 notify_sub */
    H_NS_PUBSUB "#access-authorize", /* check_authorize */
    H_NS_PUBSUB "#access-open", /* check_pubsub */
    H_NS_PUBSUB "#get-pending", /* check_authorize get_pending */
    H_NS_PUBSUB "#access-whitelist", /* check_xep0060 whitelist */
    H_NS_PUBSUB "#manage-subscriptions", /* check_xep0060 owner_subscriptions */
    H_NS_PUBSUB "#modify-affiliations", /* check_xep0060 owner_affiliations */
    H_NS_PUBSUB "#member-affiliation", /* check_xep0060 whitelist */
    H_NS_PUBSUB "#outcast-affiliation", /* check_xep0060 outcast */
    H_NS_PUBSUB "#publisher-affiliation", /* check_xep0060 owner_affiliations */
    H_NS_PUBSUB "#publish-only-affiliation", /* check_xep0060 publish_only */
    H_NS_PUBSUB "#retrieve-affiliations", /* check_xep0060 own_affiliations */
    H_NS_PUBSUB "#retrieve-subscriptions", /* check_xep0060 own_subscriptions */
};

/* Asserts that the service's disco#info lists exactly the features of
 * `advertised` (plus #auto-create when auto_create), each once. */
static void assert_features(struct fixture *f, bool auto_create)
{
    xmpp_stanza_t *r = raw_iq(f->owner, "get", "<query xmlns='" H_NS_DISCO_INFO "'/>");
    h_assert_result(f->proc, r, "service disco#info");
    char *text = h_stanza_to_string(r);
    xmpp_stanza_t *q = h_child(r, "query", H_NS_DISCO_INFO);
    size_t n = sizeof advertised / sizeof advertised[0];
    int listed = 0;
    for (xmpp_stanza_t *c = q ? xmpp_stanza_get_children(q) : NULL; c;
         c = xmpp_stanza_get_next(c)) {
        if (!xmpp_stanza_is_tag(c) || strcmp(xmpp_stanza_get_name(c), "feature") != 0)
            continue;
        const char *var = xmpp_stanza_get_attribute(c, "var");
        ck_assert_msg(var != NULL, "a <feature/> without var: %s", text);
        bool known = auto_create && strcmp(var, H_NS_PUBSUB "#auto-create") == 0;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(var, advertised[i]) == 0;
        ck_assert_msg(known, "feature %s is advertised but no test proves it: %s", var, text);
        listed++;
    }
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(h_disco_has_feature(r, advertised[i]), "feature %s missing: %s",
                      advertised[i], text);
    ck_assert_msg(h_disco_has_feature(r, H_NS_PUBSUB "#auto-create") == auto_create,
                  "#auto-create %s although auto_create_nodes = %d: %s",
                  auto_create ? "missing" : "advertised", auto_create, text);
    ck_assert_msg(listed == (int)n + (auto_create ? 1 : 0), "%d features listed, %zu distinct "
                  "expected (a feature listed twice?): %s", listed, n + (auto_create ? 1 : 0),
                  text);
    free(text);
    xmpp_stanza_release(r);
}

/* §7.1.4: #auto-create is advertised exactly when a publish to a missing
 * node creates it (auto_create_nodes, default 1). */
START_TEST(advertised_features)
{
    struct fixture f;
    fixture_up(&f);
    assert_features(&f, true);
    char *node = h_uid("auto");
    publish(&f, node, "a1");
    char *q = h_strf("SELECT count(*) FROM pubsub.affiliation a JOIN pubsub.node n"
                     " USING (node_id) WHERE n.name = '%s' AND NOT n.deleted"
                     " AND a.jid = '%s' AND a.affiliation = 'owner'",
                     node, h_client_bare_jid(f.owner));
    ck_assert_int_eq(h_sql_int(f.db, q), 1);
    free(q);
    ck_assert_int_eq(node_sql(&f, "SELECT count(*) FROM pubsub.item i JOIN pubsub.node n"
                                  " USING (node_id) WHERE n.name = '%s' AND i.item_id = 'a1'",
                              node),
                     1);
    free(node);
    fixture_down(&f);

    static const char *const off[] = {"PUBSUBD_AUTO_CREATE_NODES=0", NULL};
    fixture_up_env(&f, off);
    assert_features(&f, false);
    node = h_uid("noauto");
    char *b = h_strf("<publish node='%s'><item id='a1'><e xmlns='" NS_TEST "'/></item></publish>",
                     node);
    err(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, b), "publish to a missing node, auto-create off",
        "cancel", "item-not-found", NULL);
    free(b);
    ck_assert_int_eq(h_sql_int(f.db, "SELECT count(*) FROM pubsub.node"), 0);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ---- §7.2.3 retract errors ---------------------------------------------- */

START_TEST(retract_errors)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("retract");
    create(&f, node);
    publish(&f, node, "x");
#define SEQ_SQL "SELECT last_seq FROM pubsub.node WHERE name = '%s' AND NOT deleted"
    long long seq = node_sql(&f, SEQ_SQL, node);

    /* §7.2.3.3 NodeID required. */
    err(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, "<retract><item id='x'/></retract>"),
        "retract without node", "modify", "bad-request", "nodeid-required");
    err(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, "<retract node=''><item id='x'/></retract>"),
        "retract with node=''", "modify", "bad-request", "nodeid-required");
    /* §7.2.3.4 Item or ItemID required. */
    char *b = h_strf("<retract node='%s'/>", node);
    err(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, b), "retract without an item", "modify",
        "bad-request", "item-required");
    free(b);
    b = h_strf("<retract node='%s'><item/></retract>", node);
    err(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, b), "retract of an item without id", "modify",
        "bad-request", "item-required");
    free(b);
    b = h_strf("<retract node='%s'><item id=''/></retract>", node);
    err(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, b), "retract of an item with id=''", "modify",
        "bad-request", "item-required");
    free(b);

    /* Nothing changed: the item is there, no event was queued. */
    ck_assert_int_eq(node_sql(&f, "SELECT count(*) FROM pubsub.item i JOIN pubsub.node n"
                                  " USING (node_id) WHERE n.name = '%s' AND i.item_id = 'x'",
                              node),
                     1);
    ck_assert_int_eq(node_sql(&f, SEQ_SQL, node), seq);

    /* And the well-formed request works (delete-items, §7.2.2). */
    b = h_strf("<retract node='%s'><item id='x'/></retract>", node);
    ok(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, b), "retract");
    free(b);
    ck_assert_int_eq(node_sql(&f, "SELECT count(*) FROM pubsub.item i JOIN pubsub.node n"
                                  " USING (node_id) WHERE n.name = '%s'", node),
                     0);
    ck_assert_int_eq(node_sql(&f, SEQ_SQL, node), seq + 1);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ---- owner errors that the area files leave out -------------------------- */

/* §8.8.2.3: modifying the subscriptions of a missing node is
 * item-not-found (the retrieval's errors are in check_xep0060). */
START_TEST(modify_subscriptions_missing_node)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("missing");
    char *b = h_strf("<subscriptions node='%s'><subscription jid='bob@localhost' "
                     "subscription='subscribed'/></subscriptions>", node);
    err(&f, ps_iq(f.owner, "set", H_NS_PUBSUB_OWNER, b), "modify subscriptions of a missing node",
        "cancel", "item-not-found", NULL);
    free(b);
    ck_assert_int_eq(h_sql_int(f.db, "SELECT count(*) FROM pubsub.subscription"), 0);
    free(node);
    fixture_down(&f);
}
END_TEST

/* §6.5.9.11: no items at the node, or none of the requested ones, is an
 * empty <items/>, not an error. */
START_TEST(no_such_items)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("empty");
    create(&f, node);
    char *b = h_strf("<items node='%s'/>", node);
    xmpp_stanza_t *r = ps_iq(f.owner, "get", H_NS_PUBSUB, b);
    h_assert_result(f.proc, r, "items of an empty node");
    char *got = h_canon(h_child(r, "pubsub", H_NS_PUBSUB), NULL);
    char *want_xml = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><items node='%s'/></pubsub>", node);
    char *want = h_canon_xml(want_xml);
    ck_assert_msg(strcmp(got, want) == 0, "items of an empty node:\n got %s\nwant %s", got, want);
    free(got);
    free(want);
    xmpp_stanza_release(r);
    free(b);
    publish(&f, node, "a");
    b = h_strf("<items node='%s'><item id='nosuch'/></items>", node);
    r = ps_iq(f.owner, "get", H_NS_PUBSUB, b);
    h_assert_result(f.proc, r, "a missing item by id");
    got = h_canon(h_child(r, "pubsub", H_NS_PUBSUB), NULL);
    want = h_canon_xml(want_xml);
    ck_assert_msg(strcmp(got, want) == 0, "a missing item by id:\n got %s\nwant %s", got, want);
    free(got);
    free(want);
    free(want_xml);
    xmpp_stanza_release(r);
    free(b);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ---- optional features --------------------------------------------------- */

/* multi-items: the node keeps several items, up to pubsub#max_items
 * (which an owner may set above one); at the limit the oldest goes. */
START_TEST(multi_items)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("multi");
    create(&f, node);
    ok(&f, configure(&f, node, FIELD("pubsub#max_items", "3")), "configure max_items 3");
    publish(&f, node, "a");
    publish(&f, node, "b");
    publish(&f, node, "c");
    char *b = h_strf("<items node='%s'/>", node);
    xmpp_stanza_t *r = ps_iq(f.owner, "get", H_NS_PUBSUB, b);
    h_assert_result(f.proc, r, "items");
    char *ids = item_ids(r);
    ck_assert_str_eq(ids, "a,b,c");
    free(ids);
    xmpp_stanza_release(r);
    publish(&f, node, "d");
    r = ps_iq(f.owner, "get", H_NS_PUBSUB, b);
    h_assert_result(f.proc, r, "items");
    ids = item_ids(r);
    ck_assert_str_eq(ids, "b,c,d");
    free(ids);
    xmpp_stanza_release(r);
    free(b);
    ck_assert_int_eq(node_sql(&f, "SELECT count(*) FROM pubsub.item i JOIN pubsub.node n"
                                  " USING (node_id) WHERE n.name = '%s'", node),
                     3);
    free(node);
    fixture_down(&f);
}
END_TEST

/* config-node-max: `max` for pubsub#max_items is the server's limit
 * (max_items_limit), for pubsub#item_expire "never" (0).  pubsubd has no
 * pubsub#children_max. */
START_TEST(config_node_max)
{
    static const char *const env[] = {"PUBSUBD_MAX_ITEMS_LIMIT=5000", NULL};
    struct fixture f;
    fixture_up_env(&f, env);
    char *node = h_uid("max");
    create(&f, node);
    ok(&f, configure(&f, node, FIELD("pubsub#max_items", "2") FIELD("pubsub#item_expire", "60")),
       "configure max_items 2, item_expire 60");
#define CFG_SQL(col)                                                           \
    "SELECT " col " FROM pubsub.node_config c JOIN pubsub.node n USING (node_id)"              \
    " WHERE n.name = '%s' AND NOT n.deleted"
    char *q_items = h_strf(CFG_SQL("c.max_items"), node);
    char *q_expire = h_strf(CFG_SQL("c.item_expire"), node);
    ck_assert_int_eq(h_sql_int(f.db, q_items), 2);
    ck_assert_int_eq(h_sql_int(f.db, q_expire), 60);
    ok(&f, configure(&f, node, FIELD("pubsub#max_items", "max") FIELD("pubsub#item_expire", "max")),
       "configure max_items max, item_expire max");
    ck_assert_int_eq(h_sql_int(f.db, q_items), 5000);
    ck_assert_int_eq(h_sql_int(f.db, q_expire), 0);
    /* The form shows the values in effect. */
    char *b = h_strf("<configure node='%s'/>", node);
    xmpp_stanza_t *r = ps_iq(f.owner, "get", H_NS_PUBSUB_OWNER, b);
    h_assert_result(f.proc, r, "configure get");
    char *v = form_value(r, "pubsub#max_items");
    ck_assert_pstr_eq(v, "5000");
    free(v);
    xmpp_stanza_release(r);
    free(b);
    /* Above the limit is still refused. */
    err(&f, configure(&f, node, FIELD("pubsub#max_items", "5001")), "max_items over the limit",
        "modify", "not-acceptable", NULL);
    ck_assert_int_eq(h_sql_int(f.db, q_items), 5000);
    free(q_items);
    free(q_expire);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ---- event types (§4.3) -------------------------------------------------- */

/*
 * A transient notification-only node (persist_items and deliver_payloads
 * both false) would need publishes without an item (§7.1.3.6: an item is
 * item-forbidden there), which pubsubd does not implement: every way to
 * configure one is refused with not-acceptable and changes nothing.  The
 * other three event types are accepted.
 */
START_TEST(event_types)
{
    struct fixture f;
    fixture_up(&f);
    const char *both_off = FIELD("pubsub#persist_items", "0") FIELD("pubsub#deliver_payloads", "0");

    /* Create-and-configure. */
    char *node = h_uid("tn");
    char *b = h_strf("<create node='%s'/><configure>" CONFIG_FORM("%s") "</configure>", node,
                     both_off);
    err(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, b), "create a transient notification node",
        "modify", "not-acceptable", NULL);
    free(b);
    ck_assert_int_eq(node_sql(&f, "SELECT count(*) FROM pubsub.node WHERE name = '%s'", node), 0);

    /* Configure: both at once, or one after the other. */
    create(&f, node);
    err(&f, configure(&f, node, both_off), "configure both off", "modify", "not-acceptable", NULL);
    ok(&f, configure(&f, node, FIELD("pubsub#deliver_payloads", "0")),
       "notification + persistent");
    err(&f, configure(&f, node, FIELD("pubsub#persist_items", "0")),
        "then persist_items off", "modify", "not-acceptable", NULL);
#define NODE_CFG(col) "SELECT " col "::int FROM pubsub.node_config JOIN pubsub.node n" \
    " USING (node_id) WHERE n.name = '%s' AND NOT n.deleted"
    ck_assert_int_eq(node_sql(&f, NODE_CFG("persist_items"), node), 1);
    ck_assert_int_eq(node_sql(&f, NODE_CFG("deliver_payloads"), node), 0);
    ok(&f, configure(&f, node, FIELD("pubsub#deliver_payloads", "1")
                                   FIELD("pubsub#persist_items", "0")),
       "payload + transient");
    ck_assert_int_eq(node_sql(&f, NODE_CFG("persist_items"), node), 0);
    ck_assert_int_eq(node_sql(&f, NODE_CFG("deliver_payloads"), node), 1);
    err(&f, configure(&f, node, FIELD("pubsub#deliver_payloads", "0")),
        "then deliver_payloads off", "modify", "not-acceptable", NULL);
    ck_assert_int_eq(node_sql(&f, NODE_CFG("deliver_payloads"), node), 1);

    /* Auto-create with those options as the new node's configuration. */
    char *anode = h_uid("tnauto");
    b = h_strf("<publish node='%s'><item id='a'><e xmlns='" NS_TEST "'/></item></publish>"
               "<publish-options><x xmlns='" NS_DATA "' type='submit'><field var='FORM_TYPE' "
               "type='hidden'><value>" H_NS_PUBSUB "#publish-options</value></field>%s</x>"
               "</publish-options>", anode, both_off);
    err(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, b), "auto-create a transient notification node",
        "modify", "not-acceptable", NULL);
    free(b);
    ck_assert_int_eq(node_sql(&f, "SELECT count(*) FROM pubsub.node WHERE name = '%s'", anode),
                     0);
    free(anode);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ---- the last published item (§6.1.6) ------------------------------------ */

/* Logs user in and drops what the login brought (offline messages of
 * earlier runs). */
static struct h_client *connect_user(const char *user)
{
    struct h_client *c = h_client_connect(user);
    xmpp_stanza_t *m;
    while ((m = h_next_message(c, 200)) != NULL)
        xmpp_stanza_release(m);
    return c;
}

/* One text value from SQL; caller frees. */
static char *sql_text(struct fixture *f, char *sql)
{
    PGresult *r = h_sql(f->db, sql);
    ck_assert_msg(PQntuples(r) == 1 && !PQgetisnull(r, 0, 0), "no value from %s", sql);
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    free(sql);
    return v;
}

/* Asserts that the next message of c is the notification of item id of
 * node, exactly: with the stable id ps-<node>-<seq>-<subscription>, the
 * payload, and (stamp non-NULL) <delay from=COMPONENT stamp=stamp/>. */
static void expect_item(struct fixture *f, struct h_client *c, const char *node,
                        const char *id, const char *stamp)
{
    xmpp_stanza_t *m = h_next_message(c, NOTIFY_TIMEOUT_MS);
    if (m == NULL) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: no notification of %s/%s", h_client_jid(c), node, id);
    }
    char *text = h_stanza_to_string(m);
    char *nid = h_strf("ps-%lld-%lld-%lld",
                       node_sql(f, "SELECT node_id FROM pubsub.node WHERE name = '%s'"
                                   " AND NOT deleted", node),
                       sql_int_free(f, h_strf("SELECT i.seq FROM pubsub.item i JOIN pubsub.node n"
                                              " USING (node_id) WHERE n.name = '%s'"
                                              " AND i.item_id = '%s'", node, id)),
                       sql_int_free(f, h_strf("SELECT s.sub_id FROM pubsub.subscription s JOIN"
                                              " pubsub.node n USING (node_id) WHERE n.name = '%s'"
                                              " AND s.jid = '%s'", node, h_client_bare_jid(c))));
    ck_assert_msg(xmpp_stanza_get_id(m) && strcmp(xmpp_stanza_get_id(m), nid) == 0,
                  "expected message id %s: %s", nid, text);
    free(nid);
    xmpp_stanza_t *ev = h_child(m, "event", H_NS_PUBSUB_EVENT);
    char *got = ev ? h_canon(ev, NULL) : strdup("(no event)");
    char *want_xml = h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'><items node='%s'><item "
                            "id='%s'><e xmlns='" NS_TEST "'>%s</e></item></items></event>",
                            node, id, id);
    char *want = h_canon_xml(want_xml);
    ck_assert_msg(strcmp(got, want) == 0, "notification of %s:\n got %s\nwant %s\nin %s", id,
                  got, want, text);
    xmpp_stanza_t *delay = h_child(m, "delay", "urn:xmpp:delay");
    if (stamp == NULL) {
        ck_assert_msg(delay == NULL, "a live notification with a <delay/>: %s", text);
    } else {
        const char *from = delay ? xmpp_stanza_get_attribute(delay, "from") : NULL;
        const char *st = delay ? xmpp_stanza_get_attribute(delay, "stamp") : NULL;
        ck_assert_msg(from && strcmp(from, COMPONENT) == 0 && st && strcmp(st, stamp) == 0,
                      "expected <delay from='" COMPONENT "' stamp='%s'/> (XEP-0203: stamp is "
                      "required): %s", stamp, text);
    }
    free(got);
    free(want);
    free(want_xml);
    free(text);
    xmpp_stanza_release(m);
}

static void subscribe(struct fixture *f, struct h_client *c, const char *node)
{
    char *b = h_strf("<subscribe node='%s' jid='%s'/>", node, h_client_bare_jid(c));
    ok(f, ps_iq(c, "set", H_NS_PUBSUB, b), "subscribe");
    free(b);
}

/*
 * send_last_published_item = on_sub: a new subscriber gets the node's
 * last item at once, with a delay stamped with its publication time, then
 * the live notifications.  With never (the default, which is why the
 * service does not advertise #last-published) and on an empty node the
 * first message a new subscriber gets is the next publish: nothing came
 * before it.
 */
START_TEST(last_published_on_sub)
{
    struct fixture f;
    fixture_up(&f);
    struct h_client *alice = connect_user("alice");
    char *node = h_uid("last");
    create(&f, node);
    ok(&f, configure(&f, node, FIELD("pubsub#send_last_published_item", "on_sub")),
       "configure on_sub");
    publish(&f, node, "a");
    publish(&f, node, "b");
    char *stamp = sql_text(&f, h_strf("SELECT to_char(i.published_at AT TIME ZONE 'UTC',"
                                      " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM pubsub.item i"
                                      " JOIN pubsub.node n USING (node_id) WHERE n.name = '%s'"
                                      " AND i.item_id = 'b'", node));
    subscribe(&f, alice, node);
    expect_item(&f, alice, node, "b", stamp);
    publish(&f, node, "c");
    expect_item(&f, alice, node, "c", NULL);
    free(stamp);

    char *never = h_uid("never");
    create(&f, never);
    publish(&f, never, "x");
    subscribe(&f, alice, never);
    publish(&f, never, "y");
    expect_item(&f, alice, never, "y", NULL);

    char *empty = h_uid("empty");
    create(&f, empty);
    ok(&f, configure(&f, empty, FIELD("pubsub#send_last_published_item", "on_sub")),
       "configure on_sub");
    subscribe(&f, alice, empty);
    publish(&f, empty, "z");
    expect_item(&f, alice, empty, "z", NULL);

    free(empty);
    free(never);
    free(node);
    h_client_disconnect(alice);
    fixture_down(&f);
}
END_TEST

/* ---- XEP-0059 index on the disco#items of a node ------------------------- */

/* Asserts a disco#items page of node: the item names, first/last (the
 * seqs of the first and last, NULL when empty), first's index, count. */
static void assert_disco_page(struct fixture *f, const char *node, const char *set,
                              const char *names, long long index, long long count)
{
    char *xml = h_strf("<query xmlns='" H_NS_DISCO_ITEMS "' node='%s'><set xmlns='" NS_RSM
                       "'>%s</set></query>", node, set);
    xmpp_stanza_t *r = raw_iq(f->owner, "get", xml);
    char *what = h_strf("disco#items page %s", set);
    h_assert_result(f->proc, r, what);
    char *text = h_stanza_to_string(r);
    xmpp_stanza_t *q = h_child(r, "query", H_NS_DISCO_ITEMS);
    char *got = strdup("");
    for (xmpp_stanza_t *c = q ? xmpp_stanza_get_children(q) : NULL; c;
         c = xmpp_stanza_get_next(c)) {
        if (!xmpp_stanza_is_tag(c) || strcmp(xmpp_stanza_get_name(c), "item") != 0)
            continue;
        const char *name = xmpp_stanza_get_attribute(c, "name");
        char *n = h_strf("%s%s%s", got, *got ? "," : "", name ? name : "?");
        free(got);
        got = n;
    }
    ck_assert_msg(strcmp(got, names) == 0, "%s: items [%s], want [%s]: %s", what, got, names,
                  text);
    xmpp_stanza_t *rs = q ? h_child(q, "set", NS_RSM) : NULL;
    ck_assert_msg(rs != NULL, "%s: no <set/>: %s", what, text);
    xmpp_stanza_t *first = h_child(rs, "first", NS_RSM);
    if (*names == '\0') {
        ck_assert_msg(first == NULL, "%s: <first/> in an empty page: %s", what, text);
    } else {
        const char *ix = first ? xmpp_stanza_get_attribute(first, "index") : NULL;
        char *want = h_strf("%lld", index);
        ck_assert_msg(ix && strcmp(ix, want) == 0, "%s: <first index='%s'/> expected: %s", what,
                      want, text);
        free(want);
    }
    char *cs = h_child_text(rs, "count", NS_RSM);
    char *wc = h_strf("%lld", count);
    ck_assert_msg(cs && strcmp(cs, wc) == 0, "%s: <count>%s</count> expected: %s", what, wc,
                  text);
    free(cs);
    free(wc);
    free(got);
    free(text);
    free(what);
    free(xml);
    xmpp_stanza_release(r);
}

START_TEST(disco_items_index)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("dindex");
    create(&f, node);
    const char *names[] = {"i1", "i2", "i3", "i4", "i5"};
    for (int i = 0; i < 5; i++)
        publish(&f, node, names[i]);
    char *seq_sql = h_strf("SELECT i.seq FROM pubsub.item i JOIN pubsub.node n USING (node_id)"
                           " WHERE n.name = '%s' AND i.item_id = 'i2'", node);
    long long seq2 = h_sql_int(f.db, seq_sql);
    free(seq_sql);

    assert_disco_page(&f, node, "<max>2</max>", "i1,i2", 0, 5);
    char *set = h_strf("<max>2</max><after>%lld</after>", seq2);
    assert_disco_page(&f, node, set, "i3,i4", 2, 5);
    free(set);
    /* The last page, asked for with an empty <before/>. */
    assert_disco_page(&f, node, "<max>2</max><before/>", "i4,i5", 3, 5);
    assert_disco_page(&f, node, "<max>10</max><before/>", "i1,i2,i3,i4,i5", 0, 5);
    /* Retract i1: the same page after i2 is now at index 1 of 4. */
    char *b = h_strf("<retract node='%s'><item id='i1'/></retract>", node);
    ok(&f, ps_iq(f.owner, "set", H_NS_PUBSUB, b), "retract i1");
    free(b);
    set = h_strf("<max>2</max><after>%lld</after>", seq2);
    assert_disco_page(&f, node, set, "i3,i4", 1, 4);
    free(set);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * XEP-0059 §2.5: a page requested by <index/> MAY be refused with
 * feature-not-implemented; pubsubd names pages by stable positions (seqs,
 * names, JIDs) and refuses it the same way on every result set, whatever
 * its <count/> suggests.
 */
START_TEST(index_requests_refused)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("ix");
    create(&f, node);
    publish(&f, node, "a");
    const char *set = "<set xmlns='" NS_RSM "'><max>1</max><index>0</index></set>";
    char *b = h_strf("<items node='%s'/>%s", node, set);
    err(&f, ps_iq(f.owner, "get", H_NS_PUBSUB, b), "items by index", "cancel",
        "feature-not-implemented", NULL);
    free(b);
    b = h_strf("<query xmlns='" H_NS_DISCO_ITEMS "' node='%s'>%s</query>", node, set);
    err(&f, raw_iq(f.owner, "get", b), "node disco#items by index", "cancel",
        "feature-not-implemented", NULL);
    free(b);
    b = h_strf("<query xmlns='" H_NS_DISCO_ITEMS "'>%s</query>", set);
    err(&f, raw_iq(f.owner, "get", b), "service disco#items by index", "cancel",
        "feature-not-implemented", NULL);
    free(b);
    b = h_strf("<subscriptions/>%s", set);
    err(&f, ps_iq(f.owner, "get", H_NS_PUBSUB, b), "own subscriptions by index", "cancel",
        "feature-not-implemented", NULL);
    free(b);
    b = h_strf("<affiliations node='%s'/>%s", node, set);
    err(&f, ps_iq(f.owner, "get", H_NS_PUBSUB_OWNER, b), "node affiliations by index", "cancel",
        "feature-not-implemented", NULL);
    free(b);
    b = h_strf("<query xmlns='urn:xmpp:mam:2' node='%s'>%s</query>", node, set);
    err(&f, raw_iq(f.owner, "set", b), "archive query by index", "cancel",
        "feature-not-implemented", NULL);
    free(b);
    ck_assert_int_eq(h_message_count(f.owner), 0);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ---- suite ---------------------------------------------------------------- */

int main(void)
{
    Suite *s = suite_create("conformance");
    TCase *tc = tcase_create("conformance");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, advertised_features);
    tcase_add_test(tc, retract_errors);
    tcase_add_test(tc, modify_subscriptions_missing_node);
    tcase_add_test(tc, no_such_items);
    tcase_add_test(tc, multi_items);
    tcase_add_test(tc, config_node_max);
    tcase_add_test(tc, event_types);
    tcase_add_test(tc, last_published_on_sub);
    tcase_add_test(tc, disco_items_index);
    tcase_add_test(tc, index_requests_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
