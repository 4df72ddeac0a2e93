/*
 * check_authorize.c - integration tests of the "authorize" access model
 * (XEP-0060 §4.5 access models, §4.2 subscription states, §6.1.4 approval
 * required, §6.5.9.3 entity not subscribed, §8.6 subscription requests and
 * the owners' answers, §8.7 the get-pending command, §13.14 notification of
 * subscription state changes).
 *
 * What is proved, with exact stanzas: a subscription request to an
 * authorize node is answered with subscription='pending' and every owner
 * receives one subscribe_authorization form naming the node, the subscriber
 * and the subid; while pending the entity gets no notification and cannot
 * retrieve items (not-authorized + not-subscribed); an owner's submitted
 * form with pubsub#allow true subscribes it (notification
 * subscription='subscribed', then notifications of publishes made after the
 * approval only, and item retrieval), false removes the request
 * (notification subscription='none'); an answer from a non-owner, a
 * cancelled form or an answer naming another subscription changes nothing;
 * owners, publishers and members subscribe without approval; get-pending
 * lists the requester's nodes with pending requests and re-sends their
 * forms, with the errors of §8.7.3, and is listed under the commands node
 * (XEP-0050); the service advertises the features.
 *
 * Messages get no replies, so "the daemon has handled this message" is
 * established by a ping from the same client afterwards (the server keeps
 * a session's stanzas in order on the component stream, and pubsubd
 * submits a node's database calls in arrival order on one connection).
 * "Nothing was notified" is proved by a witness subscriber receiving the
 * same publish, then a bounded wait.
 *
 * The TCase "xep_conformance" holds tests of XEP-0060 requirements the
 * daemon is known not to meet yet (each names its section and whether it
 * is a MUST or a SHOULD); they fail until it does and must not be weakened
 * to pass.
 *
 * Each test starts its own pubsubd as c8.<domain> on a fresh database and
 * stops it at the end, asserting a clean exit.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TIMEOUT_S 90
#define COMPONENT_UP_MS 10000
#define IQ_TIMEOUT_MS 5000
#define NOTIFY_TIMEOUT_MS 5000 /* a message the daemon must send arrives */
#define QUIET_MS 1000          /* how long "no message" is watched */

#define NS_DATA "jabber:x:data"
#define NS_COMMANDS "http://jabber.org/protocol/commands"
#define NS_NODE_CONFIG H_NS_PUBSUB "#node_config"
#define NS_SUBSCRIBE_AUTHORIZATION H_NS_PUBSUB "#subscribe_authorization"
#define NODE_GET_PENDING H_NS_PUBSUB "#get-pending"
#define NS_TEST "urn:example:pubsubd:authorize"

#define FORM_TYPE(t) "<field var='FORM_TYPE' type='hidden'><value>" t "</value></field>"

/* One test's pubsubd and database; the owner's client waits for it. */
struct fixture {
    char *jid; /* component JID */
    char *db;  /* conninfo of the fresh database */
    struct h_proc *proc;
    struct h_client *owner;
};

/* "user@<domain>"; caller frees. */
static char *bare(const char *user)
{
    return h_strf("%s@%s", user, h_env("PST_DOMAIN"));
}

/*
 * Waits until the component answers disco#items with a result: the link is
 * up and so is its database.
 */
static void wait_ready(struct h_proc *proc, struct h_client *c, const char *jid)
{
    h_wait_service_ready(proc, c, jid, COMPONENT_UP_MS);
}

static void fixture_up(struct fixture *f)
{
    f->jid = h_strf("c8.%s", h_env("PST_DOMAIN"));
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

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The canonical text of element s (h_canon: effective namespaces,
 * attributes sorted, children in order; "(none)" for NULL); caller frees. */
static char *xml_canon(xmpp_stanza_t *s)
{
    return s != NULL ? h_canon(s, NULL) : strdup("(none)");
}

/* Fails (with the daemon's log) unless element got equals expected_xml. */
#define assert_xml_eq(f, got, expected_xml, what)                                                  \
    assert_xml_eq_at(__LINE__, (f), (got), (expected_xml), (what))
static void assert_xml_eq_at(int line, struct fixture *f, xmpp_stanza_t *got,
                             const char *expected_xml, const char *what)
{
    char *g = xml_canon(got);
    char *e = h_canon_xml(expected_xml);
    if (strcmp(g, e) != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("line %d: %s:\n  expected %s\n  got      %s", line, what, e, g);
    }
    free(g);
    free(e);
}

/* The element children of parent (NULL: none), each canonicalised, sorted
 * when sorted, joined by newlines.  Caller frees. */
static char *children_canon(xmpp_stanza_t *parent, bool sorted)
{
    int n = 0;
    for (xmpp_stanza_t *k = parent ? xmpp_stanza_get_children(parent) : NULL; k != NULL;
         k = xmpp_stanza_get_next(k))
        if (xmpp_stanza_is_tag(k))
            n++;
    char **v = calloc((size_t)n + 1, sizeof *v);
    ck_assert_ptr_nonnull(v);
    int i = 0;
    for (xmpp_stanza_t *k = parent ? xmpp_stanza_get_children(parent) : NULL; k != NULL;
         k = xmpp_stanza_get_next(k))
        if (xmpp_stanza_is_tag(k))
            v[i++] = xml_canon(k);
    if (sorted)
        qsort(v, (size_t)n, sizeof *v, cmp_strp);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    for (i = 0; i < n; i++) {
        fprintf(out, "%s%s", i ? "\n" : "", v[i]);
        free(v[i]);
    }
    fclose(out);
    free(v);
    return buf;
}

/* Fails unless the element children of got are, in any order, those of the
 * element expected_xml. */
#define assert_children_eq(f, got, expected_xml, what)                                             \
    assert_children_eq_at(__LINE__, (f), (got), (expected_xml), (what))
static void assert_children_eq_at(int line, struct fixture *f, xmpp_stanza_t *got,
                                  const char *expected_xml, const char *what)
{
    xmpp_stanza_t *e = xmpp_stanza_new_from_string(h_xmpp_ctx(), expected_xml);
    ck_assert_msg(e != NULL, "test bug: not well-formed: %s", expected_xml);
    char *gs = children_canon(got, true);
    char *es = children_canon(e, true);
    xmpp_stanza_release(e);
    if (got == NULL || strcmp(gs, es) != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("line %d: %s (children, any order):\n  expected %s\n  got      %s", line,
                     what, es, got ? gs : "(no element)");
    }
    free(gs);
    free(es);
}

/* ---- requests ------------------------------------------------------------ */

/* Sends <iq type=type to=component>payload</iq> and returns the reply (NULL
 * after IQ_TIMEOUT_MS), asserted to come from the component; caller
 * releases. */
static xmpp_stanza_t *iq(struct fixture *f, struct h_client *c, const char *type,
                         const char *payload)
{
    char *id = h_uid("az");
    char *xml = h_strf("<iq type='%s' to='%s' id='%s'>%s</iq>", type, f->jid, id, payload);
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

static xmpp_stanza_t *pubsub_iq(struct fixture *f, struct h_client *c, const char *type,
                                const char *ns, const char *inner)
{
    char *payload = h_strf("<pubsub xmlns='%s'>%s</pubsub>", ns, inner);
    xmpp_stanza_t *r = iq(f, c, type, payload);
    free(payload);
    return r;
}

static xmpp_stanza_t *ps_set(struct fixture *f, struct h_client *c, const char *inner)
{
    return pubsub_iq(f, c, "set", H_NS_PUBSUB, inner);
}

static xmpp_stanza_t *ps_get(struct fixture *f, struct h_client *c, const char *inner)
{
    return pubsub_iq(f, c, "get", H_NS_PUBSUB, inner);
}

static xmpp_stanza_t *own_set(struct fixture *f, struct h_client *c, const char *inner)
{
    return pubsub_iq(f, c, "set", H_NS_PUBSUB_OWNER, inner);
}

static xmpp_stanza_t *own_get(struct fixture *f, struct h_client *c, const char *inner)
{
    return pubsub_iq(f, c, "get", H_NS_PUBSUB_OWNER, inner);
}

/* Asserts an empty IQ result and releases it. */
#define assert_empty_result(f, r, what)                                                            \
    do {                                                                                           \
        xmpp_stanza_t *r_ = (r);                                                                   \
        h_assert_result((f)->proc, r_, (what));                                                    \
        char *t_ = h_stanza_to_string(r_);                                                         \
        ck_assert_msg(h_count_children(r_, NULL, NULL) == 0,                                       \
                      "%s: expected an empty result, got %s", (what), t_);                         \
        free(t_);                                                                                  \
        xmpp_stanza_release(r_);                                                                   \
    } while (0)

/* Asserts the exact error, that a XEP-0060 application condition is in the
 * pubsub#errors namespace, and releases the reply. */
#define assert_ps_error(f, r, what, type, cond, app)                                               \
    assert_ps_error_at(__LINE__, (f), (r), (what), (type), (cond), (app))
static void assert_ps_error_at(int line, struct fixture *f, xmpp_stanza_t *r, const char *what,
                               const char *type, const char *cond, const char *app)
{
    char *w = h_strf("%s (line %d)", what, line);
    h_assert_error(f->proc, r, w, type, cond, app);
    if (app != NULL && *app != '\0') {
        xmpp_stanza_t *a = h_child(h_child(r, "error", NULL), app, H_NS_PUBSUB_ERRORS);
        char *text = h_stanza_to_string(r);
        ck_assert_msg(a != NULL, "%s: <%s/> not in namespace %s: %s", w, app,
                      H_NS_PUBSUB_ERRORS, text);
        free(text);
    }
    free(w);
    xmpp_stanza_release(r);
}

/* A ping from c to the component, answered: every stanza c sent before has
 * been read by pubsubd and its database call (if any) submitted. */
static void sync_with(struct fixture *f, struct h_client *c)
{
    xmpp_stanza_t *r = iq(f, c, "get", "<ping xmlns='" H_NS_PING "'/>");
    h_assert_result(f->proc, r, "ping (sync)");
    xmpp_stanza_release(r);
}

/* Creates node with pubsub#access_model=authorize (§8.1.3) as c and checks
 * the stored configuration. */
static void create_authorize_node_as(struct fixture *f, struct h_client *c, const char *node)
{
    char *inner = h_strf("<create node='%s'/><configure><x xmlns='" NS_DATA "' type='submit'>"
                         FORM_TYPE(NS_NODE_CONFIG)
                         "<field var='pubsub#access_model'><value>authorize</value></field>"
                         "</x></configure>", node);
    assert_empty_result(f, ps_set(f, c, inner), "create-and-configure authorize");
    free(inner);
    char *sql = h_strf("SELECT count(*) FROM pubsub.node n JOIN pubsub.node_config c USING"
                       " (node_id) WHERE n.name = '%s' AND NOT n.deleted"
                       " AND c.access_model = 'authorize'", node);
    ck_assert_int_eq(h_sql_int(f->db, sql), 1);
    free(sql);
}

static void create_authorize_node(struct fixture *f, const char *node)
{
    create_authorize_node_as(f, f->owner, node);
}

/* Sets user's affiliation with node as the owner (§8.9.2). */
static void affiliate(struct fixture *f, const char *node, const char *user,
                      const char *affiliation)
{
    char *jid = bare(user);
    char *inner = h_strf("<affiliations node='%s'><affiliation jid='%s' affiliation='%s'/>"
                         "</affiliations>", node, jid, affiliation);
    char *what = h_strf("set %s %s on %s", jid, affiliation, node);
    assert_empty_result(f, own_set(f, f->owner, inner), what);
    free(what);
    free(inner);
    free(jid);
}

/* The subscribe request (§6.1.1) of jid by c; returns the reply. */
static xmpp_stanza_t *subscribe_iq(struct fixture *f, struct h_client *c, const char *node,
                                   const char *jid)
{
    char *inner = h_strf("<subscribe node='%s' jid='%s'/>", node, jid);
    xmpp_stanza_t *r = ps_set(f, c, inner);
    free(inner);
    return r;
}

/*
 * Subscribes jid (c's full JID when full, else its bare JID) and asserts the
 * reply is exactly <pubsub><subscription node jid subid subscription=state/>
 * </pubsub> with a non-empty subid, which it returns (caller frees).
 */
#define subscribe(f, c, node, full, state) subscribe_at(__LINE__, (f), (c), (node), (full), (state))
static char *subscribe_at(int line, struct fixture *f, struct h_client *c, const char *node,
                          bool full, const char *state)
{
    const char *jid = full ? h_client_jid(c) : h_client_bare_jid(c);
    xmpp_stanza_t *r = subscribe_iq(f, c, node, jid);
    char *what = h_strf("subscribe %s to %s (line %d)", jid, node, line);
    h_assert_result(f->proc, r, what);
    xmpp_stanza_t *s = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "subscription", NULL);
    const char *subid = s ? xmpp_stanza_get_attribute(s, "subid") : NULL;
    char *text = h_stanza_to_string(r);
    ck_assert_msg(subid != NULL && *subid != '\0', "%s: no subid: %s", what, text);
    free(text);
    char *out = strdup(subid);
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><subscription node='%s' jid='%s'"
                            " subid='%s' subscription='%s'/></pubsub>", node, jid, out, state);
    assert_xml_eq_at(line, f, h_child(r, "pubsub", H_NS_PUBSUB), expected, what);
    free(expected);
    free(what);
    xmpp_stanza_release(r);
    return out;
}

/* The stored state of jid's subscription to node, or "none"; caller frees. */
static char *stored_state(struct fixture *f, const char *node, const char *jid)
{
    char *sql = h_strf("SELECT coalesce((SELECT s.state FROM pubsub.subscription s JOIN"
                       " pubsub.node n USING (node_id) WHERE n.name = '%s' AND NOT n.deleted"
                       " AND s.jid = '%s'), 'none')", node, jid);
    PGresult *res = h_sql(f->db, sql);
    char *v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    free(sql);
    return v;
}

#define assert_stored_state(f, node, jid, expected)                                                \
    do {                                                                                           \
        char *st_ = stored_state((f), (node), (jid));                                              \
        ck_assert_msg(strcmp(st_, (expected)) == 0,                                                \
                      "stored subscription of %s to %s: expected %s, got %s", (jid), (node),       \
                      (expected), st_);                                                            \
        free(st_);                                                                                 \
    } while (0)

/* Asserts that the owner's subscriptions list of node (§8.8.1) is exactly
 * <subscriptions node=node> with the children of `expected` (an element in
 * the owner namespace), in any order. */
#define assert_node_subscriptions(f, node, expected)                                               \
    assert_node_subscriptions_at(__LINE__, (f), (node), (expected))
static void assert_node_subscriptions_at(int line, struct fixture *f, const char *node,
                                         const char *expected)
{
    char *inner = h_strf("<subscriptions node='%s'/>", node);
    xmpp_stanza_t *r = own_get(f, f->owner, inner);
    char *what = h_strf("owner's subscriptions list of %s (line %d)", node, line);
    h_assert_result(f->proc, r, what);
    xmpp_stanza_t *subs = h_child(h_child(r, "pubsub", H_NS_PUBSUB_OWNER), "subscriptions", NULL);
    const char *nattr = subs ? xmpp_stanza_get_attribute(subs, "node") : NULL;
    char *text = h_stanza_to_string(r);
    ck_assert_msg(nattr != NULL && strcmp(nattr, node) == 0 &&
                      h_count_children(h_child(r, "pubsub", H_NS_PUBSUB_OWNER), NULL, NULL) == 1,
                  "%s: expected one <subscriptions node='%s'/>: %s", what, node, text);
    free(text);
    assert_children_eq_at(line, f, subs, expected, what);
    free(what);
    free(inner);
    xmpp_stanza_release(r);
}

/* Asserts that c's own subscriptions to node (§5.6) are exactly the
 * children of expected (an element in the pubsub namespace). */
static void assert_own_subscriptions(struct fixture *f, struct h_client *c, const char *node,
                                     const char *expected)
{
    char *inner = h_strf("<subscriptions node='%s'/>", node);
    xmpp_stanza_t *r = ps_get(f, c, inner);
    char *what = h_strf("own subscriptions of %s to %s", h_client_jid(c), node);
    h_assert_result(f->proc, r, what);
    assert_children_eq(f, h_child(h_child(r, "pubsub", H_NS_PUBSUB), "subscriptions", NULL),
                       expected, what);
    free(what);
    free(inner);
    xmpp_stanza_release(r);
}

static char *test_payload(const char *text)
{
    return h_strf("<entry xmlns='" NS_TEST "'>%s</entry>", text);
}

/* Publishes <item id=id>test_payload(id)</item> as c and asserts the
 * §7.1.2 result. */
static void publish(struct fixture *f, struct h_client *c, const char *node, const char *id)
{
    char *p = test_payload(id);
    char *inner = h_strf("<publish node='%s'><item id='%s'>%s</item></publish>", node, id, p);
    xmpp_stanza_t *r = ps_set(f, c, inner);
    char *what = h_strf("publish %s to %s", id, node);
    h_assert_result(f->proc, r, what);
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><publish node='%s'><item id='%s'/>"
                            "</publish></pubsub>", node, id);
    assert_xml_eq(f, h_child(r, "pubsub", H_NS_PUBSUB), expected, what);
    free(expected);
    free(what);
    xmpp_stanza_release(r);
    free(inner);
    free(p);
}

/* The ids of the items c retrieves from node (§6.5.2), comma-separated in
 * document order; asserts a result.  Caller frees. */
static char *items(struct fixture *f, struct h_client *c, const char *node)
{
    char *inner = h_strf("<items node='%s'/>", node);
    xmpp_stanza_t *r = ps_get(f, c, inner);
    char *what = h_strf("items of %s as %s", node, h_client_jid(c));
    h_assert_result(f->proc, r, what);
    xmpp_stanza_t *list = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "items", NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    bool first = true;
    for (xmpp_stanza_t *k = list ? xmpp_stanza_get_children(list) : NULL; k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k) || strcmp(xmpp_stanza_get_name(k), "item") != 0)
            continue;
        const char *id = xmpp_stanza_get_attribute(k, "id");
        fprintf(out, "%s%s", first ? "" : ",", id ? id : "(no id)");
        first = false;
    }
    fclose(out);
    free(what);
    free(inner);
    xmpp_stanza_release(r);
    return buf;
}

#define assert_items(f, c, node, expected)                                                         \
    do {                                                                                           \
        char *got_ = items((f), (c), (node));                                                      \
        if (strcmp(got_, (expected)) != 0) {                                                       \
            h_fail_dump((f)->proc);                                                                \
            ck_abort_msg("items of %s: expected [%s], got [%s]", (node), (expected), got_);       \
        }                                                                                          \
        free(got_);                                                                                \
    } while (0)

/* §6.5.9.3: retrieval by an entity that is not (or not yet) subscribed. */
#define assert_items_not_subscribed(f, c, node, what)                                              \
    do {                                                                                           \
        char *in_ = h_strf("<items node='%s'/>", (node));                                          \
        assert_ps_error((f), ps_get((f), (c), in_), (what), "auth", "not-authorized",             \
                        "not-subscribed");                                                         \
        free(in_);                                                                                 \
    } while (0)

/* ---- messages ------------------------------------------------------------ */

/* The next <message/> of c (waits up to NOTIFY_TIMEOUT_MS), asserted to come
 * from the component; caller releases. */
static xmpp_stanza_t *next_message(struct fixture *f, struct h_client *c, const char *what)
{
    xmpp_stanza_t *m = h_next_message(c, NOTIFY_TIMEOUT_MS);
    if (m == NULL) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: no message for %s within %d ms", what, h_client_jid(c),
                     NOTIFY_TIMEOUT_MS);
    }
    const char *from = xmpp_stanza_get_from(m);
    char *text = h_stanza_to_string(m);
    ck_assert_msg(from != NULL && strcmp(from, f->jid) == 0, "%s: message not from %s: %s", what,
                  f->jid, text);
    free(text);
    return m;
}

/* Asserts that c's next message carries exactly one
 * <event xmlns='...#event'>inner</event>. */
#define assert_next_event(f, c, inner, what)                                                       \
    assert_next_event_at(__LINE__, (f), (c), (inner), (what))
static void assert_next_event_at(int line, struct fixture *f, struct h_client *c,
                                 const char *inner, const char *what)
{
    xmpp_stanza_t *m = next_message(f, c, what);
    xmpp_stanza_t *ev = h_child(m, "event", H_NS_PUBSUB_EVENT);
    if (h_count_children(m, "event", NULL) != 1 || ev == NULL) {
        char *text = h_stanza_to_string(m);
        h_fail_dump(f->proc);
        ck_abort_msg("line %d: %s: expected one pubsub <event/>: %s", line, what, text);
    }
    char *expected = h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'>%s</event>", inner);
    assert_xml_eq_at(line, f, ev, expected, what);
    free(expected);
    xmpp_stanza_release(m);
}

/* The notification of a publish of test_payload(id) to node. */
#define assert_item_event(f, c, node, id)                                                          \
    do {                                                                                           \
        char *in_ = h_strf("<items node='%s'><item id='%s'><entry xmlns='" NS_TEST "'>%s"          \
                           "</entry></item></items>", (node), (id), (id));                         \
        char *w_ = h_strf("notification of item %s on %s", (id), (node));                          \
        assert_next_event((f), (c), in_, w_);                                                      \
        free(w_);                                                                                  \
        free(in_);                                                                                 \
    } while (0)

/* The §8.6 / §12.x subscription state notification. */
#define assert_subscription_event(f, c, node, jid, state)                                          \
    do {                                                                                           \
        char *in_ = h_strf("<subscription node='%s' jid='%s' subscription='%s'/>", (node), (jid), \
                           (state));                                                               \
        char *w_ = h_strf("subscription %s notification to %s", (state), (jid));                   \
        assert_next_event((f), (c), in_, w_);                                                      \
        free(w_);                                                                                  \
        free(in_);                                                                                 \
    } while (0)

/* ---- data forms ---------------------------------------------------------- */

static xmpp_stanza_t *form_field(xmpp_stanza_t *x, const char *var)
{
    for (xmpp_stanza_t *k = x ? xmpp_stanza_get_children(x) : NULL; k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k) || strcmp(xmpp_stanza_get_name(k), "field") != 0)
            continue;
        const char *v = xmpp_stanza_get_attribute(k, "var");
        if (v != NULL && strcmp(v, var) == 0)
            return k;
    }
    return NULL;
}

/* The option values of field var, sorted, joined with ','.  Caller frees. */
static char *field_options(xmpp_stanza_t *x, const char *var)
{
    xmpp_stanza_t *fl = form_field(x, var);
    char *v[64];
    int n = 0;
    for (xmpp_stanza_t *k = fl ? xmpp_stanza_get_children(fl) : NULL; k != NULL && n < 64;
         k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k) || strcmp(xmpp_stanza_get_name(k), "option") != 0)
            continue;
        char *t = h_child_text(k, "value", NULL);
        v[n++] = t ? t : strdup("");
    }
    qsort(v, (size_t)n, sizeof *v, cmp_strp);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    for (int i = 0; i < n; i++) {
        fprintf(out, "%s%s", i ? "," : "", v[i]);
        free(v[i]);
    }
    fclose(out);
    return buf;
}

/* The fields of a subscription approval form, as the service sends them
 * (§8.6, example "Service sends authorization request to node owner"). */
static char *approval_fields(const char *node, const char *subscriber, const char *subid)
{
    return h_strf("<x xmlns='" NS_DATA "'>" FORM_TYPE(NS_SUBSCRIBE_AUTHORIZATION)
                  "<field var='pubsub#subid' type='hidden'><value>%s</value></field>"
                  "<field var='pubsub#node' type='text-single' label='Node ID'>"
                  "<value>%s</value></field>"
                  "<field var='pubsub#subscriber_jid' type='jid-single'"
                  " label='Subscriber Address'><value>%s</value></field>"
                  "<field var='pubsub#allow' type='boolean'"
                  " label='Allow this JID to subscribe to this pubsub node?'>"
                  "<value>false</value></field></x>", subid, node, subscriber);
}

/*
 * Asserts that message m is the approval request of §8.6 for subscriber's
 * request subid to node: from the component, with an id, one
 * <x xmlns='jabber:x:data' type='form'/> whose first child is a non-empty
 * <title/>, then optionally a non-empty <instructions/>, then exactly the
 * fields of approval_fields() in that order.  Returns the message id
 * (caller frees).  Borrows m.
 */
static char *check_approval_form(struct fixture *f, xmpp_stanza_t *m, const char *node,
                                 const char *subscriber, const char *subid, const char *what)
{
    char *text = h_stanza_to_string(m);
    const char *from = xmpp_stanza_get_from(m);
    const char *id = xmpp_stanza_get_id(m);
    const char *mtype = xmpp_stanza_get_type(m);
    ck_assert_msg(from != NULL && strcmp(from, f->jid) == 0, "%s: not from %s: %s", what, f->jid,
                  text);
    ck_assert_msg(id != NULL && *id != '\0', "%s: message without id: %s", what, text);
    ck_assert_msg(mtype == NULL || strcmp(mtype, "normal") == 0,
                  "%s: expected a normal message: %s", what, text);
    ck_assert_msg(h_count_children(m, "x", NS_DATA) == 1, "%s: expected one data form: %s", what,
                  text);
    xmpp_stanza_t *x = h_child(m, "x", NS_DATA);
    const char *xtype = xmpp_stanza_get_type(x);
    ck_assert_msg(xtype != NULL && strcmp(xtype, "form") == 0, "%s: expected type='form': %s",
                  what, text);
    /* <title/> first, <instructions/> optional, then the fields. */
    xmpp_stanza_t *k = xmpp_stanza_get_children(x);
    while (k != NULL && !xmpp_stanza_is_tag(k))
        k = xmpp_stanza_get_next(k);
    ck_assert_msg(k != NULL && strcmp(xmpp_stanza_get_name(k), "title") == 0,
                  "%s: the form does not start with <title/>: %s", what, text);
    char *title = xmpp_stanza_get_text(k);
    ck_assert_msg(title != NULL && *title != '\0', "%s: empty <title/>: %s", what, text);
    xmpp_free(h_xmpp_ctx(), title);
    xmpp_stanza_t *fields = xmpp_stanza_new(h_xmpp_ctx());
    xmpp_stanza_set_name(fields, "x");
    for (k = xmpp_stanza_get_next(k); k != NULL; k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k))
            continue;
        if (strcmp(xmpp_stanza_get_name(k), "instructions") == 0) {
            char *ins = xmpp_stanza_get_text(k);
            ck_assert_msg(ins != NULL && *ins != '\0', "%s: empty <instructions/>: %s", what,
                          text);
            xmpp_free(h_xmpp_ctx(), ins);
            ck_assert_msg(xmpp_stanza_get_children(fields) == NULL,
                          "%s: <instructions/> after a field: %s", what, text);
            continue;
        }
        xmpp_stanza_t *copy = xmpp_stanza_copy(k);
        xmpp_stanza_add_child(fields, copy);
        xmpp_stanza_release(copy);
    }
    char *got = children_canon(fields, false);
    xmpp_stanza_release(fields);
    char *exp_xml = approval_fields(node, subscriber, subid);
    xmpp_stanza_t *e = xmpp_stanza_new_from_string(h_xmpp_ctx(), exp_xml);
    ck_assert_ptr_nonnull(e);
    char *expected = children_canon(e, false);
    xmpp_stanza_release(e);
    if (strcmp(got, expected) != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: fields, in order:\n  expected %s\n  got      %s\n  message  %s", what,
                     expected, got, text);
    }
    char *out = strdup(id);
    free(expected);
    free(exp_xml);
    free(got);
    free(text);
    return out;
}

/* Takes c's next message and asserts it is the approval request for
 * subscriber's request subid to node (check_approval_form).  Returns the
 * message id (caller frees). */
#define assert_approval_form(f, c, node, subscriber, subid)                                        \
    assert_approval_form_at(__LINE__, (f), (c), (node), (subscriber), (subid))
static char *assert_approval_form_at(int line, struct fixture *f, struct h_client *c,
                                     const char *node, const char *subscriber, const char *subid)
{
    char *what = h_strf("approval request to %s for %s on %s (line %d)", h_client_jid(c),
                        subscriber, node, line);
    xmpp_stanza_t *m = next_message(f, c, what);
    char *id = check_approval_form(f, m, node, subscriber, subid, what);
    xmpp_stanza_release(m);
    free(what);
    return id;
}

/* The pubsub#subscriber_jid value of the data form in message m, or NULL;
 * caller frees. */
static char *form_subscriber(xmpp_stanza_t *m)
{
    xmpp_stanza_t *fl = form_field(h_child(m, "x", NS_DATA), "pubsub#subscriber_jid");
    return fl ? h_child_text(fl, "value", NULL) : NULL;
}

/*
 * c answers an approval request (§8.6, examples "Owner approves/denies
 * subscription request"): a <message/> to the component reflecting id
 * (NULL: no id), with a submitted subscribe_authorization form; allow is the
 * pubsub#allow value as sent ("true", "1", "false", "0").
 */
static void send_answer(struct fixture *f, struct h_client *c, const char *id, const char *node,
                        const char *subid, const char *subscriber, const char *allow)
{
    char *idattr = id ? h_strf(" id='%s'", id) : strdup("");
    char *xml = h_strf("<message to='%s'%s><x xmlns='" NS_DATA "' type='submit'>"
                       FORM_TYPE(NS_SUBSCRIBE_AUTHORIZATION)
                       "<field var='pubsub#subid'><value>%s</value></field>"
                       "<field var='pubsub#node'><value>%s</value></field>"
                       "<field var='pubsub#subscriber_jid'><value>%s</value></field>"
                       "<field var='pubsub#allow'><value>%s</value></field>"
                       "</x></message>", f->jid, idattr, subid, node, subscriber, allow);
    h_send(c, xml);
    free(xml);
    free(idattr);
}

/* ---- get-pending (§8.7) --------------------------------------------------- */

/* Sends <command xmlns=commands ...>inner</command> in an IQ set as c;
 * attrs are the command's attributes.  Returns the reply. */
static xmpp_stanza_t *command_iq(struct fixture *f, struct h_client *c, const char *attrs,
                                 const char *inner)
{
    char *payload = h_strf("<command xmlns='" NS_COMMANDS "' %s>%s</command>", attrs, inner);
    xmpp_stanza_t *r = iq(f, c, "set", payload);
    free(payload);
    return r;
}

/* Executes get-pending (§8.7.1) as c.  Returns the reply. */
static xmpp_stanza_t *get_pending_execute(struct fixture *f, struct h_client *c)
{
    return command_iq(f, c, "node='" NODE_GET_PENDING "' action='execute'", "");
}

/*
 * Asserts the reply r of get_pending_execute() is the §8.7.2 form:
 * <command node=get-pending status='executing' sessionid=(non-empty)> with
 * one <x type='form'> whose FORM_TYPE is subscribe_authorization and whose
 * list-single field pubsub#node has exactly the options `options` (sorted,
 * comma-separated).  Returns the session id (caller frees); releases r.
 */
#define assert_pending_form(f, r, options) assert_pending_form_at(__LINE__, (f), (r), (options))
static char *assert_pending_form_at(int line, struct fixture *f, xmpp_stanza_t *r,
                                    const char *options)
{
    char *what = h_strf("get-pending form (line %d)", line);
    h_assert_result(f->proc, r, what);
    char *text = h_stanza_to_string(r);
    xmpp_stanza_t *cmd = h_child(r, "command", NS_COMMANDS);
    ck_assert_msg(cmd != NULL, "%s: no <command/>: %s", what, text);
    const char *node = xmpp_stanza_get_attribute(cmd, "node");
    const char *status = xmpp_stanza_get_attribute(cmd, "status");
    const char *sid = xmpp_stanza_get_attribute(cmd, "sessionid");
    ck_assert_msg(node != NULL && strcmp(node, NODE_GET_PENDING) == 0, "%s: command node: %s",
                  what, text);
    ck_assert_msg(status != NULL && strcmp(status, "executing") == 0,
                  "%s: expected status='executing': %s", what, text);
    ck_assert_msg(sid != NULL && *sid != '\0', "%s: no sessionid: %s", what, text);
    ck_assert_msg(h_count_children(cmd, "x", NS_DATA) == 1, "%s: expected one form: %s", what,
                  text);
    xmpp_stanza_t *x = h_child(cmd, "x", NS_DATA);
    const char *xtype = xmpp_stanza_get_type(x);
    ck_assert_msg(xtype != NULL && strcmp(xtype, "form") == 0, "%s: expected type='form': %s",
                  what, text);
    xmpp_stanza_t *ft = form_field(x, "FORM_TYPE");
    char *ftv = ft ? h_child_text(ft, "value", NULL) : NULL;
    ck_assert_msg(ftv != NULL && strcmp(ftv, NS_SUBSCRIBE_AUTHORIZATION) == 0,
                  "%s: FORM_TYPE: %s", what, text);
    free(ftv);
    xmpp_stanza_t *fl = form_field(x, "pubsub#node");
    const char *ftype = fl ? xmpp_stanza_get_attribute(fl, "type") : NULL;
    ck_assert_msg(ftype != NULL && strcmp(ftype, "list-single") == 0,
                  "%s: expected a list-single field pubsub#node: %s", what, text);
    char *opts = field_options(x, "pubsub#node");
    if (strcmp(opts, options) != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: options of pubsub#node: expected [%s], got [%s]: %s", what, options,
                     opts, text);
    }
    char *out = strdup(sid);
    free(opts);
    free(text);
    free(what);
    xmpp_stanza_release(r);
    return out;
}

/* Submits node to get-pending (§8.7.4) in session sid as c; returns the
 * reply. */
static xmpp_stanza_t *get_pending_submit(struct fixture *f, struct h_client *c, const char *sid,
                                         const char *node)
{
    char *attrs = h_strf("node='" NODE_GET_PENDING "' sessionid='%s' action='execute'", sid);
    char *inner = h_strf("<x xmlns='" NS_DATA "' type='submit'><field var='pubsub#node'>"
                         "<value>%s</value></field></x>", node);
    xmpp_stanza_t *r = command_iq(f, c, attrs, inner);
    free(inner);
    free(attrs);
    return r;
}

/* Asserts the §8.7.4 success: <command node=get-pending sessionid=sid
 * status='completed'> with a non-empty <note type='info'/>.  Releases r. */
static void assert_pending_completed(struct fixture *f, xmpp_stanza_t *r, const char *sid)
{
    const char *what = "get-pending submit";
    h_assert_result(f->proc, r, what);
    char *text = h_stanza_to_string(r);
    xmpp_stanza_t *cmd = h_child(r, "command", NS_COMMANDS);
    ck_assert_msg(cmd != NULL, "%s: no <command/>: %s", what, text);
    const char *node = xmpp_stanza_get_attribute(cmd, "node");
    const char *status = xmpp_stanza_get_attribute(cmd, "status");
    const char *rsid = xmpp_stanza_get_attribute(cmd, "sessionid");
    ck_assert_msg(node != NULL && strcmp(node, NODE_GET_PENDING) == 0, "%s: command node: %s",
                  what, text);
    ck_assert_msg(status != NULL && strcmp(status, "completed") == 0,
                  "%s: expected status='completed': %s", what, text);
    ck_assert_msg(rsid != NULL && strcmp(rsid, sid) == 0, "%s: expected sessionid='%s': %s", what,
                  sid, text);
    xmpp_stanza_t *note = h_child(cmd, "note", NULL);
    const char *ntype = note ? xmpp_stanza_get_attribute(note, "type") : NULL;
    char *ntext = note ? xmpp_stanza_get_text(note) : NULL;
    ck_assert_msg(ntype != NULL && strcmp(ntype, "info") == 0 && ntext != NULL && *ntext != '\0',
                  "%s: expected a <note type='info'/> with text: %s", what, text);
    xmpp_free(h_xmpp_ctx(), ntext);
    free(text);
    xmpp_stanza_release(r);
}

/* ---- tests: requests and answers (§6.1.4, §8.6) ---------------------------- */

/* The owner's list entry of a subscription; caller frees. */
static char *owner_entry(const char *jid, const char *state, const char *subid)
{
    return h_strf("<subscription jid='%s' subscription='%s' subid='%s'/>", jid, state, subid);
}

/*
 * A request to an authorize node: the pending reply (§6.1.4), one approval
 * form to each owner (§8.6), the pending state in the owner's list (§8.8.1),
 * the entity's own list (§5.6) and the database; no notification (§4.2) and
 * no item retrieval (§4.5, §6.5.9.3) while pending.
 */
START_TEST(test_pending_request)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("authz");
    create_authorize_node(&f, node);
    affiliate(&f, node, "eve", "owner");
    affiliate(&f, node, "dave", "member");
    struct h_client *eve = h_client_connect("eve");
    struct h_client *dave = h_client_connect("dave");
    struct h_client *bob = h_client_connect("bob");
    struct h_client *carol = h_client_connect("carol");
    const char *bob_jid = h_client_bare_jid(bob);
    char *sd = subscribe(&f, dave, node, false, "subscribed"); /* the witness */
    publish(&f, f.owner, node, "before");
    assert_item_event(&f, dave, node, "before");

    char *sb = subscribe(&f, bob, node, false, "pending");
    char *id1 = assert_approval_form(&f, f.owner, node, bob_jid, sb);
    char *id2 = assert_approval_form(&f, eve, node, bob_jid, sb);
    assert_stored_state(&f, node, bob_jid, "pending");

    char *e1 = owner_entry(h_client_bare_jid(dave), "subscribed", sd);
    char *e2 = owner_entry(bob_jid, "pending", sb);
    char *expected = h_strf("<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'>%s%s</subscriptions>",
                            e1, e2);
    assert_node_subscriptions(&f, node, expected);
    free(expected);
    expected = h_strf("<subscriptions xmlns='" H_NS_PUBSUB "'><subscription node='%s' jid='%s'"
                      " subid='%s' subscription='pending'/></subscriptions>", node, bob_jid, sb);
    assert_own_subscriptions(&f, bob, node, expected);
    free(expected);

    /* Pending: no items, no notifications (the witness gets this one). */
    assert_items_not_subscribed(&f, bob, node, "items of a pending subscriber");
    assert_items_not_subscribed(&f, carol, node, "items of a non-subscriber");
    publish(&f, f.owner, node, "during");
    assert_item_event(&f, dave, node, "during");
    h_expect_no_message(f.proc, bob, QUIET_MS, "publish while pending");
    assert_stored_state(&f, node, bob_jid, "pending");
    /* One request, one form per owner, nothing else. */
    h_expect_no_message(f.proc, f.owner, 0, "owner after one request");
    h_expect_no_message(f.proc, eve, 0, "second owner after one request");

    free(e1);
    free(e2);
    free(id1);
    free(id2);
    free(sb);
    free(sd);
    h_client_disconnect(carol);
    h_client_disconnect(bob);
    h_client_disconnect(dave);
    h_client_disconnect(eve);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * The owner approves (§8.6, pubsub#allow "true", reflecting the request's
 * id): the subscriber is notified (subscription='subscribed', §13.14),
 * keeps its subid, receives notifications of publishes made after the
 * approval only, and can retrieve all items.
 */
START_TEST(test_approve)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("authz");
    create_authorize_node(&f, node);
    affiliate(&f, node, "dave", "member");
    struct h_client *dave = h_client_connect("dave");
    struct h_client *bob = h_client_connect("bob");
    const char *bob_jid = h_client_bare_jid(bob);
    char *sd = subscribe(&f, dave, node, false, "subscribed");

    char *sb = subscribe(&f, bob, node, false, "pending");
    char *id = assert_approval_form(&f, f.owner, node, bob_jid, sb);
    publish(&f, f.owner, node, "p1"); /* while pending */
    assert_item_event(&f, dave, node, "p1");

    send_answer(&f, f.owner, id, node, sb, bob_jid, "true");
    assert_subscription_event(&f, bob, node, bob_jid, "subscribed");
    assert_stored_state(&f, node, bob_jid, "subscribed");
    char *e1 = owner_entry(h_client_bare_jid(dave), "subscribed", sd);
    char *e2 = owner_entry(bob_jid, "subscribed", sb);
    char *expected = h_strf("<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'>%s%s</subscriptions>",
                            e1, e2);
    assert_node_subscriptions(&f, node, expected);
    free(expected);
    expected = h_strf("<subscriptions xmlns='" H_NS_PUBSUB "'><subscription node='%s' jid='%s'"
                      " subid='%s' subscription='subscribed'/></subscriptions>", node, bob_jid,
                      sb);
    assert_own_subscriptions(&f, bob, node, expected);
    free(expected);

    /* Notifications of new publishes only: p2 is bob's next message (p1,
     * had it been sent, would come first: a node's notifications are sent
     * in seq order). */
    publish(&f, f.owner, node, "p2");
    assert_item_event(&f, bob, node, "p2");
    assert_item_event(&f, dave, node, "p2");
    assert_items(&f, bob, node, "p1,p2");
    h_expect_no_message(f.proc, bob, QUIET_MS, "after p2");
    h_expect_no_message(f.proc, f.owner, 0, "owner");

    free(e1);
    free(e2);
    free(id);
    free(sb);
    free(sd);
    h_client_disconnect(bob);
    h_client_disconnect(dave);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * The owner denies (§8.6, pubsub#allow "0") a request made with a full JID:
 * the entity is notified at that JID (subscription='none'), its request is
 * gone, it gets no notifications and cannot retrieve items; another pending
 * request is untouched; a new request is a new pending subscription with a
 * new subid and a new form.
 */
START_TEST(test_deny)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("authz");
    create_authorize_node(&f, node);
    affiliate(&f, node, "dave", "member");
    struct h_client *dave = h_client_connect("dave");
    struct h_client *carol = h_client_connect("carol");
    struct h_client *bob = h_client_connect("bob");
    char *sd = subscribe(&f, dave, node, false, "subscribed");
    const char *carol_jid = h_client_jid(carol); /* full JID */
    const char *bob_jid = h_client_bare_jid(bob);

    char *sc = subscribe(&f, carol, node, true, "pending");
    char *idc = assert_approval_form(&f, f.owner, node, carol_jid, sc);
    char *sb = subscribe(&f, bob, node, false, "pending");
    char *idb = assert_approval_form(&f, f.owner, node, bob_jid, sb);

    send_answer(&f, f.owner, idc, node, sc, carol_jid, "0");
    assert_subscription_event(&f, carol, node, carol_jid, "none");
    char *sql = h_strf("SELECT count(*) FROM pubsub.subscription s JOIN pubsub.node n USING"
                       " (node_id) WHERE n.name = '%s' AND split_part(s.jid, '/', 1) = '%s'",
                       node, h_client_bare_jid(carol));
    ck_assert_int_eq(h_sql_int(f.db, sql), 0);
    char *e1 = owner_entry(h_client_bare_jid(dave), "subscribed", sd);
    char *e2 = owner_entry(bob_jid, "pending", sb);
    char *expected = h_strf("<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'>%s%s</subscriptions>",
                            e1, e2);
    assert_node_subscriptions(&f, node, expected);
    free(expected);
    assert_own_subscriptions(&f, carol, node,
                             "<subscriptions xmlns='" H_NS_PUBSUB "'/>");

    publish(&f, f.owner, node, "p1");
    assert_item_event(&f, dave, node, "p1");
    h_expect_no_message(f.proc, carol, QUIET_MS, "publish after denial");
    assert_items_not_subscribed(&f, carol, node, "items after denial");

    /* A new request. */
    char *sc2 = subscribe(&f, carol, node, true, "pending");
    ck_assert_msg(strcmp(sc2, sc) != 0, "the new request reuses the denied subid %s", sc);
    free(assert_approval_form(&f, f.owner, node, carol_jid, sc2));
    assert_stored_state(&f, node, carol_jid, "pending");
    assert_stored_state(&f, node, bob_jid, "pending");
    h_expect_no_message(f.proc, bob, 0, "the other pending entity");
    h_expect_no_message(f.proc, f.owner, 0, "owner");

    free(sql);
    free(e1);
    free(e2);
    free(idb);
    free(idc);
    free(sb);
    free(sc);
    free(sc2);
    free(sd);
    h_client_disconnect(bob);
    h_client_disconnect(carol);
    h_client_disconnect(dave);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * Answers that must change nothing (§8.6): the approval form submitted by a
 * non-owner, a cancelled form ("the subscription request MUST remain in the
 * pending state"), and an owner's answer naming a subid that is not the
 * request's.  The same answer from the owner then approves, which shows the
 * earlier ones were well-formed.
 */
START_TEST(test_answers_ignored)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("authz");
    create_authorize_node(&f, node);
    struct h_client *alice = h_client_connect("alice");
    struct h_client *bob = h_client_connect("bob");
    const char *bob_jid = h_client_bare_jid(bob);
    char *sb = subscribe(&f, bob, node, false, "pending");
    char *id = assert_approval_form(&f, f.owner, node, bob_jid, sb);
    char *entry = owner_entry(bob_jid, "pending", sb);
    char *pending_list = h_strf("<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'>%s"
                                "</subscriptions>", entry);

    /* A non-owner approves. */
    send_answer(&f, alice, id, node, sb, bob_jid, "true");
    sync_with(&f, alice);
    assert_node_subscriptions(&f, node, pending_list);
    assert_stored_state(&f, node, bob_jid, "pending");

    /* The owner cancels the form. */
    char *cancel = h_strf("<message to='%s' id='%s'><x xmlns='" NS_DATA "' type='cancel'>"
                          FORM_TYPE(NS_SUBSCRIBE_AUTHORIZATION) "</x></message>", f.jid, id);
    h_send(f.owner, cancel);
    free(cancel);
    sync_with(&f, f.owner);
    assert_node_subscriptions(&f, node, pending_list);

    /* The owner answers with another subid. */
    send_answer(&f, f.owner, id, node, "0123456789abcdef0123456789abcdef", bob_jid, "true");
    sync_with(&f, f.owner);
    assert_node_subscriptions(&f, node, pending_list);
    assert_stored_state(&f, node, bob_jid, "pending");
    h_expect_no_message(f.proc, bob, QUIET_MS, "after answers that change nothing");
    h_expect_no_message(f.proc, alice, 0, "the non-owner (messages are never answered)");
    h_expect_no_message(f.proc, f.owner, 0, "the owner (messages are never answered)");

    /* The owner approves with "1". */
    send_answer(&f, f.owner, id, node, sb, bob_jid, "1");
    assert_subscription_event(&f, bob, node, bob_jid, "subscribed");
    assert_stored_state(&f, node, bob_jid, "subscribed");

    free(pending_list);
    free(entry);
    free(id);
    free(sb);
    h_client_disconnect(bob);
    h_client_disconnect(alice);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * Owners, publishers and members subscribe without approval (§6.1.4: "unless
 * service policy allows entities with affiliations other than none to
 * auto-subscribe"), no form is sent, and they receive notifications; an
 * entity without affiliation still needs approval.
 */
START_TEST(test_affiliated_subscribe)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("authz");
    create_authorize_node(&f, node);
    affiliate(&f, node, "publisher", "publisher");
    affiliate(&f, node, "dave", "member");
    struct h_client *publisher = h_client_connect("publisher");
    struct h_client *dave = h_client_connect("dave");
    struct h_client *alice = h_client_connect("alice");

    free(subscribe(&f, f.owner, node, false, "subscribed"));
    free(subscribe(&f, publisher, node, false, "subscribed"));
    free(subscribe(&f, dave, node, true, "subscribed"));
    assert_stored_state(&f, node, h_client_bare_jid(f.owner), "subscribed");
    assert_stored_state(&f, node, h_client_bare_jid(publisher), "subscribed");
    assert_stored_state(&f, node, h_client_jid(dave), "subscribed");
    h_expect_no_message(f.proc, f.owner, QUIET_MS, "owner after affiliated subscriptions");

    publish(&f, publisher, node, "p1");
    assert_item_event(&f, f.owner, node, "p1");
    assert_item_event(&f, publisher, node, "p1");
    assert_item_event(&f, dave, node, "p1");
    assert_items(&f, dave, node, "p1");
    assert_items(&f, publisher, node, "p1");

    /* The contrast: no affiliation. */
    char *sa = subscribe(&f, alice, node, false, "pending");
    free(assert_approval_form(&f, f.owner, node, h_client_bare_jid(alice), sa));
    h_expect_no_message(f.proc, publisher, 0, "a publisher gets no approval form");
    h_expect_no_message(f.proc, dave, 0, "a member gets no approval form");

    free(sa);
    h_client_disconnect(alice);
    h_client_disconnect(dave);
    h_client_disconnect(publisher);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ---- tests: get-pending (§8.7) -------------------------------------------- */

/* "a,b" with a and b in strcmp order; caller frees. */
static char *sorted_pair(const char *a, const char *b)
{
    return strcmp(a, b) < 0 ? h_strf("%s,%s", a, b) : h_strf("%s,%s", b, a);
}

/*
 * get-pending lists the nodes the requester owns that have pending requests
 * (not an owned node without any, not another owner's node); submitting one
 * completes in the same session and re-sends one approval form per pending
 * request of that node only; the re-sent forms work; a node without
 * requests completes with no form.
 */
START_TEST(test_get_pending)
{
    struct fixture f;
    fixture_up(&f);
    char *n1 = h_uid("pend1");
    char *n2 = h_uid("pend2");
    char *n3 = h_uid("quiet");
    char *n4 = h_uid("other");
    struct h_client *eve = h_client_connect("eve");
    struct h_client *bob = h_client_connect("bob");
    struct h_client *carol = h_client_connect("carol");
    struct h_client *frank = h_client_connect("frank");
    struct h_client *alice = h_client_connect("alice");
    create_authorize_node(&f, n1);
    create_authorize_node(&f, n2);
    create_authorize_node(&f, n3);
    create_authorize_node_as(&f, eve, n4);
    const char *bob_jid = h_client_bare_jid(bob);
    const char *carol_jid = h_client_jid(carol);
    const char *frank_jid = h_client_bare_jid(frank);

    char *sb = subscribe(&f, bob, n1, false, "pending");
    free(assert_approval_form(&f, f.owner, n1, bob_jid, sb));
    char *sc = subscribe(&f, carol, n1, true, "pending");
    free(assert_approval_form(&f, f.owner, n1, carol_jid, sc));
    char *sf = subscribe(&f, frank, n2, false, "pending");
    free(assert_approval_form(&f, f.owner, n2, frank_jid, sf));
    char *sa = subscribe(&f, alice, n4, false, "pending");
    free(assert_approval_form(&f, eve, n4, h_client_bare_jid(alice), sa));

    char *opts = sorted_pair(n1, n2);
    char *sid = assert_pending_form(&f, get_pending_execute(&f, f.owner), opts);
    assert_pending_completed(&f, get_pending_submit(&f, f.owner, sid, n1), sid);
    free(sid);

    /* One form per pending request of n1, in any order; none for n2. */
    xmpp_stanza_t *m[2];
    bool seen_bob = false, seen_carol = false;
    for (int i = 0; i < 2; i++) {
        m[i] = next_message(&f, f.owner, "re-sent approval request");
        char *who = form_subscriber(m[i]);
        char *text = h_stanza_to_string(m[i]);
        ck_assert_msg(who != NULL, "re-sent approval request without subscriber: %s", text);
        free(text);
        if (strcmp(who, bob_jid) == 0 && !seen_bob) {
            seen_bob = true;
            free(check_approval_form(&f, m[i], n1, bob_jid, sb, "re-sent request of bob"));
        } else if (strcmp(who, carol_jid) == 0 && !seen_carol) {
            seen_carol = true;
            char *id = check_approval_form(&f, m[i], n1, carol_jid, sc,
                                           "re-sent request of carol");
            /* The re-sent form works. */
            send_answer(&f, f.owner, id, n1, sc, carol_jid, "true");
            free(id);
        } else {
            char *t = h_stanza_to_string(m[i]);
            ck_abort_msg("unexpected or repeated re-sent request: %s", t);
        }
        free(who);
        xmpp_stanza_release(m[i]);
    }
    h_expect_no_message(f.proc, f.owner, QUIET_MS, "owner after the re-sent requests of n1");
    assert_subscription_event(&f, carol, n1, carol_jid, "subscribed");
    assert_stored_state(&f, n1, carol_jid, "subscribed");
    assert_stored_state(&f, n1, bob_jid, "pending");
    assert_stored_state(&f, n2, frank_jid, "pending");

    /* n1 still has bob's request. */
    sid = assert_pending_form(&f, get_pending_execute(&f, f.owner), opts);
    free(sid);
    /* An owned node without requests. */
    sid = assert_pending_form(&f, get_pending_execute(&f, f.owner), opts);
    assert_pending_completed(&f, get_pending_submit(&f, f.owner, sid, n3), sid);
    free(sid);
    h_expect_no_message(f.proc, f.owner, QUIET_MS, "owner after get-pending of a node without requests");
    h_expect_no_message(f.proc, eve, 0, "the other node's owner");

    free(opts);
    free(sa);
    free(sb);
    free(sc);
    free(sf);
    h_client_disconnect(alice);
    h_client_disconnect(frank);
    h_client_disconnect(carol);
    h_client_disconnect(bob);
    h_client_disconnect(eve);
    free(n1);
    free(n2);
    free(n3);
    free(n4);
    fixture_down(&f);
}
END_TEST

/*
 * The errors of §8.7.3: a non-owner submitting a node is forbidden (and
 * gets no form), an unknown node is item-not-found; a non-owner's first
 * step lists none of the owner's nodes.
 */
START_TEST(test_get_pending_errors)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("authz");
    char *unknown = h_uid("nosuch");
    create_authorize_node(&f, node);
    struct h_client *alice = h_client_connect("alice");
    struct h_client *bob = h_client_connect("bob");
    char *sb = subscribe(&f, bob, node, false, "pending");
    free(assert_approval_form(&f, f.owner, node, h_client_bare_jid(bob), sb));

    /* alice owns no node: an empty list, or forbidden (§8.7.3.3). */
    xmpp_stanza_t *r = get_pending_execute(&f, alice);
    const char *type = r ? xmpp_stanza_get_type(r) : NULL;
    if (type != NULL && strcmp(type, "error") == 0) {
        const char *cond = h_error_condition(r);
        char *text = h_stanza_to_string(r);
        ck_assert_msg(cond != NULL && strcmp(cond, "forbidden") == 0,
                      "get-pending by an entity that owns no node: %s", text);
        free(text);
        xmpp_stanza_release(r);
    } else {
        free(assert_pending_form(&f, r, ""));
    }

    char *sid = assert_pending_form(&f, get_pending_execute(&f, f.owner), node);
    assert_ps_error(&f, get_pending_submit(&f, alice, sid, node), "get-pending by a non-owner",
                    "auth", "forbidden", H_NO_APP_CONDITION);
    assert_ps_error(&f, get_pending_submit(&f, f.owner, sid, unknown),
                    "get-pending of an unknown node", "cancel", "item-not-found",
                    H_NO_APP_CONDITION);
    h_expect_no_message(f.proc, alice, QUIET_MS, "a non-owner gets no approval form");
    h_expect_no_message(f.proc, f.owner, 0, "owner after failed get-pending");
    assert_stored_state(&f, node, h_client_bare_jid(bob), "pending");

    free(sid);
    free(sb);
    h_client_disconnect(bob);
    h_client_disconnect(alice);
    free(unknown);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ---- tests: discovery ------------------------------------------------------ */

/* §4.5 / §8.7 / XEP-0050: the service advertises what it implements. */
START_TEST(test_service_features)
{
    static const char *const features[] = {
        H_NS_PUBSUB "#access-authorize",
        H_NS_PUBSUB "#get-pending",
        NS_COMMANDS,
    };
    struct fixture f;
    fixture_up(&f);
    xmpp_stanza_t *r = iq(&f, f.owner, "get", "<query xmlns='" H_NS_DISCO_INFO "'/>");
    h_assert_result(f.proc, r, "service disco#info");
    char *text = h_stanza_to_string(r);
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        ck_assert_msg(h_disco_has_feature(r, features[i]), "feature %s missing from %s",
                      features[i], text);
    free(text);
    xmpp_stanza_release(r);
    fixture_down(&f);
}
END_TEST

/* XEP-0050 §2.2: get-pending is listed, once, in the disco#items of the
 * commands node (as an item of the component with a name). */
START_TEST(test_commands_listed)
{
    struct fixture f;
    fixture_up(&f);
    xmpp_stanza_t *r = iq(&f, f.owner, "get",
                          "<query xmlns='" H_NS_DISCO_ITEMS "' node='" NS_COMMANDS "'/>");
    h_assert_result(f.proc, r, "disco#items of the commands node");
    xmpp_stanza_t *q = h_child(r, "query", H_NS_DISCO_ITEMS);
    int found = 0;
    for (xmpp_stanza_t *k = q ? xmpp_stanza_get_children(q) : NULL; k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k) || strcmp(xmpp_stanza_get_name(k), "item") != 0)
            continue;
        const char *kn = xmpp_stanza_get_attribute(k, "node");
        if (kn == NULL || strcmp(kn, NODE_GET_PENDING) != 0)
            continue;
        const char *kj = xmpp_stanza_get_attribute(k, "jid");
        const char *name = xmpp_stanza_get_attribute(k, "name");
        char *text = h_stanza_to_string(r);
        ck_assert_msg(kj != NULL && strcmp(kj, f.jid) == 0 && name != NULL && *name != '\0',
                      "get-pending item: expected jid='%s' and a name: %s", f.jid, text);
        free(text);
        found++;
    }
    char *text = h_stanza_to_string(r);
    ck_assert_msg(found == 1, "get-pending listed %d times under the commands node: %s", found,
                  text);
    free(text);
    xmpp_stanza_release(r);
    fixture_down(&f);
}
END_TEST

/* ---- tests: requirements not met yet ---------------------------------------- */

/*
 * §6.1.3.7 (MUST): "If the requesting entity has a pending subscription,
 * the service MUST return a <not-authorized/> error to the subscriber,
 * specifying a pubsub-specific error condition of <pending-subscription/>."
 * The request stays as it was and no second approval form is sent.
 */
START_TEST(test_resubscribe_while_pending)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("authz");
    create_authorize_node(&f, node);
    struct h_client *bob = h_client_connect("bob");
    const char *bob_jid = h_client_bare_jid(bob);
    char *sb = subscribe(&f, bob, node, false, "pending");
    free(assert_approval_form(&f, f.owner, node, bob_jid, sb));

    xmpp_stanza_t *r = subscribe_iq(&f, bob, node, bob_jid);
    /* Whatever the reply: one request, one form, same subid. */
    h_expect_no_message(f.proc, f.owner, QUIET_MS, "owner after a repeated request");
    char *entry = owner_entry(bob_jid, "pending", sb);
    char *list = h_strf("<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'>%s</subscriptions>", entry);
    assert_node_subscriptions(&f, node, list);
    assert_ps_error(&f, r, "subscribe while pending", "auth", "not-authorized",
                    "pending-subscription");

    free(list);
    free(entry);
    free(sb);
    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * §13.14 (MUST): "If a service or node supports this feature [notification
 * of subscription state changes], it MUST return a feature of
 * subscription-notifications in its response to service discovery
 * information requests."  pubsubd sends them on approval and denial
 * (test_approve, test_deny).
 */
START_TEST(test_subscription_notifications_feature)
{
    struct fixture f;
    fixture_up(&f);
    xmpp_stanza_t *r = iq(&f, f.owner, "get", "<query xmlns='" H_NS_DISCO_INFO "'/>");
    h_assert_result(f.proc, r, "service disco#info");
    char *text = h_stanza_to_string(r);
    ck_assert_msg(h_disco_has_feature(r, H_NS_PUBSUB "#subscription-notifications"),
                  "feature " H_NS_PUBSUB "#subscription-notifications missing from %s", text);
    free(text);
    xmpp_stanza_release(r);
    fixture_down(&f);
}
END_TEST

/*
 * §8.7.4 note (SHOULD): "if the affiliation of an entity with a pending
 * subscription is modified to owner or publisher, the service SHOULD
 * automatically approve the subscription request and remove the entity's
 * previous request from the pending list", and §13.14 (SHOULD) notify it.
 */
START_TEST(test_pending_then_publisher)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("authz");
    create_authorize_node(&f, node);
    struct h_client *bob = h_client_connect("bob");
    const char *bob_jid = h_client_bare_jid(bob);
    char *sb = subscribe(&f, bob, node, false, "pending");
    free(assert_approval_form(&f, f.owner, node, bob_jid, sb));

    affiliate(&f, node, "bob", "publisher");
    char *entry = owner_entry(bob_jid, "subscribed", sb);
    char *list = h_strf("<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'>%s</subscriptions>", entry);
    assert_node_subscriptions(&f, node, list);
    assert_subscription_event(&f, bob, node, bob_jid, "subscribed");

    free(list);
    free(entry);
    free(sb);
    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

/*
 * §8.7.4 note (SHOULD): "if the affiliation of an entity with a pending
 * subscription is modified to outcast, the service SHOULD automatically
 * reject the subscription request ... (If an entity's subscription request
 * is denied, the service SHOULD send a <message/> to the entity ...)".
 */
START_TEST(test_pending_then_outcast)
{
    struct fixture f;
    fixture_up(&f);
    char *node = h_uid("authz");
    create_authorize_node(&f, node);
    struct h_client *bob = h_client_connect("bob");
    const char *bob_jid = h_client_bare_jid(bob);
    char *sb = subscribe(&f, bob, node, false, "pending");
    free(assert_approval_form(&f, f.owner, node, bob_jid, sb));

    affiliate(&f, node, "bob", "outcast");
    assert_node_subscriptions(&f, node, "<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'/>");
    assert_subscription_event(&f, bob, node, bob_jid, "none");

    free(sb);
    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ---- suite --------------------------------------------------------------- */

static TCase *tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, TEST_TIMEOUT_S);
    return tc;
}

static Suite *authorize_suite(void)
{
    Suite *s = suite_create("authorize");
    TCase *tc = tcase("requests");
    tcase_add_test(tc, test_pending_request);
    tcase_add_test(tc, test_approve);
    tcase_add_test(tc, test_deny);
    tcase_add_test(tc, test_answers_ignored);
    tcase_add_test(tc, test_affiliated_subscribe);
    suite_add_tcase(s, tc);

    tc = tcase("get_pending");
    tcase_add_test(tc, test_get_pending);
    tcase_add_test(tc, test_get_pending_errors);
    suite_add_tcase(s, tc);

    tc = tcase("discovery");
    tcase_add_test(tc, test_service_features);
    tcase_add_test(tc, test_commands_listed);
    suite_add_tcase(s, tc);

    tc = tcase("xep_conformance");
    tcase_add_test(tc, test_resubscribe_while_pending);
    tcase_add_test(tc, test_subscription_notifications_feature);
    tcase_add_test(tc, test_pending_then_publisher);
    tcase_add_test(tc, test_pending_then_outcast);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(authorize_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
