/*
 * check_xep0060.c - integration tests of the XEP-0060 owner and entity use
 * cases beyond the basic publish/subscribe round trip (check_pubsub.c):
 * node configuration (§8.2) with its notifications and side effects, the
 * default configuration (§8.3), create-and-configure (§8.1.3),
 * publish-options (§7.1.5), pubsub#type, purge (§8.5), item expiry, the
 * notification switches (deliver_payloads, deliver_notifications,
 * notify_retract, notify_delete), the entity's own subscriptions and
 * affiliations (§5.6, §5.7), the owner's management of subscriptions and
 * affiliations (§8.8, §8.9) with the access rights each affiliation gives
 * (§4.1, whitelist), XEP-0059 result set management on items and
 * disco#items, node meta-data (§5.4), the service's features, and the
 * errors for requests that are not implemented.
 *
 * Assertions are exact: errors by type, defined condition and application
 * condition (and its namespace and feature), notifications element by
 * element after canonicalisation, stored state through SQL.  "Nothing was
 * notified" is proved by a later notification on the same node arriving
 * first (a node's notifications arrive in seq order) where that is
 * possible, and otherwise by a bounded wait.
 *
 * The TCase "xep_conformance" holds the tests of requirements the daemon is
 * known not to meet yet (each names its XEP section); they fail until it
 * does and must not be weakened to pass.
 *
 * Each test starts its own pubsubd on a component JID cN.<domain> with a
 * fresh database and stops it at the end, asserting a clean exit.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TIMEOUT_S 60
#define COMPONENT_UP_MS 10000
#define IQ_TIMEOUT_MS 5000
#define NOTIFY_TIMEOUT_MS 5000
#define QUIET_MS 1000       /* how long "no notification" is watched */
#define EXPIRE_WAIT_MS 5000 /* item_expire=1 must act within this */

#define NS_DATA "jabber:x:data"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_NODE_CONFIG H_NS_PUBSUB "#node_config"
#define NS_PUBLISH_OPTIONS H_NS_PUBSUB "#publish-options"
#define NS_META_DATA H_NS_PUBSUB "#meta-data"
#define NS_TEST "urn:example:pubsubd:xep0060"

/* Data form pieces (XEP-0004), for literal forms. */
#define FIELD(var, value) "<field var='" var "'><value>" value "</value></field>"
#define FORM_TYPE(t) "<field var='FORM_TYPE' type='hidden'><value>" t "</value></field>"
#define CONFIG_FORM(fields)                                                   \
    "<x xmlns='" NS_DATA "' type='submit'>" FORM_TYPE(NS_NODE_CONFIG) fields \
    "</x>"
#define OPTIONS_FORM(fields)                                                  \
    "<publish-options><x xmlns='" NS_DATA "' type='submit'>"                  \
    FORM_TYPE(NS_PUBLISH_OPTIONS) fields "</x></publish-options>"

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

static void fixture_up_env(struct fixture *f, int n,
                           const char *const *extra_env)
{
    f->jid = h_strf("c%d.%s", n, h_env("PST_DOMAIN"));
    f->db = h_db_create();
    f->proc = h_pubsubd_start(f->jid, f->db, extra_env);
    f->owner = h_client_connect("owner");
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

/* "user@<domain>"; caller frees. */
static char *bare(const char *user)
{
    return h_strf("%s@%s", user, h_env("PST_DOMAIN"));
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

/* The element children of parent, each canonicalised, sorted, joined by
 * newlines: for comparing lists whose order the XEP leaves open.  Caller
 * frees. */
static char *children_canon_sorted(xmpp_stanza_t *parent)
{
    int n = 0;
    for (xmpp_stanza_t *k = parent ? xmpp_stanza_get_children(parent) : NULL;
         k != NULL; k = xmpp_stanza_get_next(k))
        if (xmpp_stanza_is_tag(k))
            n++;
    char **v = calloc((size_t)n + 1, sizeof *v);
    int i = 0;
    for (xmpp_stanza_t *k = parent ? xmpp_stanza_get_children(parent) : NULL;
         k != NULL; k = xmpp_stanza_get_next(k))
        if (xmpp_stanza_is_tag(k))
            v[i++] = xml_canon(k);
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

/* Fails unless the element children of got are, in any order, those of
 * the element expected_xml. */
#define assert_children_eq(f, got, expected_xml, what)                       \
    assert_children_eq_at(__LINE__, (f), (got), (expected_xml), (what))
static void assert_children_eq_at(int line, struct fixture *f,
                                  xmpp_stanza_t *got, const char *expected_xml,
                                  const char *what)
{
    xmpp_stanza_t *e = xmpp_stanza_new_from_string(h_xmpp_ctx(), expected_xml);
    ck_assert_msg(e != NULL, "test bug: not well-formed: %s", expected_xml);
    char *gs = children_canon_sorted(got);
    char *es = children_canon_sorted(e);
    xmpp_stanza_release(e);
    if (got == NULL || strcmp(gs, es) != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("line %d: %s (children, any order):\n  expected %s\n"
                     "  got      %s", line, what, es,
                     got ? gs : "(no element)");
    }
    free(gs);
    free(es);
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

static xmpp_stanza_t *own_set(struct fixture *f, struct h_client *c,
                              const char *inner)
{
    return pubsub_iq(f, c, "set", H_NS_PUBSUB_OWNER, inner);
}

static xmpp_stanza_t *own_get(struct fixture *f, struct h_client *c,
                              const char *inner)
{
    return pubsub_iq(f, c, "get", H_NS_PUBSUB_OWNER, inner);
}

/* Sends a <query xmlns=ns [node=node]>inner</query> get; caller releases. */
static xmpp_stanza_t *disco_iq(struct fixture *f, struct h_client *c,
                               const char *ns, const char *node,
                               const char *inner)
{
    char *id = h_uid("disco");
    char *nattr = node ? h_strf(" node='%s'", node) : h_strf("%s", "");
    char *xml = h_strf("<iq type='get' to='%s' id='%s'><query xmlns='%s'%s>"
                       "%s</query></iq>", f->jid, id, ns, nattr, inner);
    xmpp_stanza_t *r = h_iq(c, xml, IQ_TIMEOUT_MS);
    free(xml);
    free(nattr);
    free(id);
    return r;
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

/* Asserts the exact error, that a XEP-0060 application condition is in the
 * pubsub#errors namespace, and releases the reply. */
#define assert_ps_error(f, r, what, type, cond, app)                         \
    assert_ps_error_at(__LINE__, (f), (r), (what), (type), (cond), (app),    \
                       NULL)
/* The same for <unsupported feature='feature'/> (feature-not-implemented). */
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
        ck_assert_msg(a != NULL, "%s: <%s/> not in namespace %s: %s", w, app,
                      H_NS_PUBSUB_ERRORS, text);
        if (feature != NULL) {
            const char *got = xmpp_stanza_get_attribute(a, "feature");
            ck_assert_msg(got != NULL && strcmp(got, feature) == 0,
                          "%s: expected feature='%s': %s", w, feature, text);
        }
        free(text);
    }
    free(w);
    xmpp_stanza_release(r);
}

static char *test_payload(const char *text)
{
    return h_strf("<entry xmlns='" NS_TEST "'>%s</entry>", text);
}

/* Publishes <item id=id>payload</item> (id NULL: none) to node, with extra
 * after the <publish/> element (publish-options); returns the reply. */
static xmpp_stanza_t *publish_iq(struct fixture *f, struct h_client *c,
                                 const char *node, const char *id,
                                 const char *payload, const char *extra)
{
    char *idattr = id ? h_strf(" id='%s'", id) : h_strf("%s", "");
    char *inner = h_strf("<publish node='%s'><item%s>%s</item></publish>%s",
                         node, idattr, payload, extra ? extra : "");
    xmpp_stanza_t *r = ps_set(f, c, inner);
    free(inner);
    free(idattr);
    return r;
}

/* Asserts that the publish reply r (released here) is the §7.1.2 result
 * for node and item id. */
#define assert_published(f, r, node, id)                                     \
    assert_published_at(__LINE__, (f), (r), (node), (id))
static void assert_published_at(int line, struct fixture *f, xmpp_stanza_t *r,
                                const char *node, const char *id)
{
    char *what = h_strf("publish %s to %s (line %d)", id, node, line);
    h_assert_result(f->proc, r, what);
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><publish "
                            "node='%s'><item id='%s'/></publish></pubsub>",
                            node, id);
    assert_xml_eq(f, h_child(r, "pubsub", H_NS_PUBSUB), expected, what);
    free(expected);
    free(what);
    xmpp_stanza_release(r);
}

static void publish_ok(struct fixture *f, struct h_client *c, const char *node,
                       const char *id, const char *payload)
{
    assert_published(f, publish_iq(f, c, node, id, payload, NULL), node, id);
}

/* Publishes test_payload(id) as item id. */
static void publish_simple(struct fixture *f, struct h_client *c,
                           const char *node, const char *id)
{
    char *p = test_payload(id);
    publish_ok(f, c, node, id, p);
    free(p);
}

/* Creates node with the default configuration (owner). */
static void create_node(struct fixture *f, const char *node)
{
    char *inner = h_strf("<create node='%s'/>", node);
    assert_empty_result(f, ps_set(f, f->owner, inner), "create");
    free(inner);
}

/* Create-and-configure request with the node_config fields; returns the
 * reply. */
static xmpp_stanza_t *create_configured_iq(struct fixture *f,
                                           const char *node,
                                           const char *fields)
{
    char *inner = h_strf("<create node='%s'/><configure>" CONFIG_FORM("%s")
                         "</configure>", node, fields);
    xmpp_stanza_t *r = ps_set(f, f->owner, inner);
    free(inner);
    return r;
}

static void create_configured(struct fixture *f, const char *node,
                              const char *fields)
{
    assert_empty_result(f, create_configured_iq(f, node, fields),
                        "create-and-configure");
}

/* Submits the node_config fields for node as c; returns the reply. */
static xmpp_stanza_t *configure_iq(struct fixture *f, struct h_client *c,
                                   const char *node, const char *fields)
{
    char *inner = h_strf("<configure node='%s'>" CONFIG_FORM("%s")
                         "</configure>", node, fields);
    xmpp_stanza_t *r = own_set(f, c, inner);
    free(inner);
    return r;
}

static void configure_ok(struct fixture *f, const char *node,
                         const char *fields)
{
    assert_empty_result(f, configure_iq(f, f->owner, node, fields),
                        "configure submit");
}

/* Subscribes jid (c's full JID when full, else its bare JID) and returns the
 * subid; asserts the §6.1.2 result. */
static char *subscribe(struct fixture *f, struct h_client *c,
                       const char *node, bool full)
{
    const char *jid = full ? h_client_jid(c) : h_client_bare_jid(c);
    char *inner = h_strf("<subscribe node='%s' jid='%s'/>", node, jid);
    xmpp_stanza_t *r = ps_set(f, c, inner);
    h_assert_result(f->proc, r, "subscribe");
    xmpp_stanza_t *s = h_child(h_child(r, "pubsub", H_NS_PUBSUB),
                               "subscription", NULL);
    char *text = h_stanza_to_string(r);
    const char *subid = s ? xmpp_stanza_get_attribute(s, "subid") : NULL;
    const char *state = s ? xmpp_stanza_get_attribute(s, "subscription") : NULL;
    ck_assert_msg(subid != NULL && *subid != '\0' && state != NULL &&
                      strcmp(state, "subscribed") == 0,
                  "subscribe: expected a subscribed <subscription/> with a "
                  "subid: %s", text);
    char *out = strdup(subid);
    free(text);
    free(inner);
    xmpp_stanza_release(r);
    return out;
}

/* The ids of the <item/> children of pubsub/items in r, comma-separated
 * in document order; caller frees. */
static char *item_ids_of(xmpp_stanza_t *r)
{
    xmpp_stanza_t *items = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "items",
                                   NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    bool first = true;
    for (xmpp_stanza_t *k = items ? xmpp_stanza_get_children(items) : NULL;
         k != NULL; k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k) || strcmp(xmpp_stanza_get_name(k), "item"))
            continue;
        const char *id = xmpp_stanza_get_attribute(k, "id");
        fprintf(out, "%s%s", first ? "" : ",", id ? id : "(no id)");
        first = false;
    }
    fclose(out);
    return buf;
}

/* Retrieves all items of node as c (§6.5.2); asserts a result and returns
 * their ids as item_ids_of().  Caller frees. */
static char *items(struct fixture *f, struct h_client *c, const char *node)
{
    char *inner = h_strf("<items node='%s'/>", node);
    xmpp_stanza_t *r = ps_get(f, c, inner);
    char *what = h_strf("items of %s", node);
    h_assert_result(f->proc, r, what);
    char *ids = item_ids_of(r);
    free(what);
    free(inner);
    xmpp_stanza_release(r);
    return ids;
}

#define assert_items(f, c, node, expected)                                   \
    do {                                                                     \
        char *got_ = items((f), (c), (node));                                \
        if (strcmp(got_, (expected)) != 0) {                                 \
            h_fail_dump((f)->proc);                                          \
            ck_abort_msg("items of %s: expected [%s], got [%s]", (node),     \
                         (expected), got_);                                  \
        }                                                                    \
        free(got_);                                                          \
    } while (0)

/* Sets one affiliation as the owner; returns the reply. */
static xmpp_stanza_t *affiliation_iq(struct fixture *f, struct h_client *c,
                                     const char *node, const char *jid,
                                     const char *affiliation)
{
    char *inner = h_strf("<affiliations node='%s'><affiliation jid='%s' "
                         "affiliation='%s'/></affiliations>", node, jid,
                         affiliation);
    xmpp_stanza_t *r = own_set(f, c, inner);
    free(inner);
    return r;
}

static void affiliate(struct fixture *f, const char *node, const char *user,
                      const char *affiliation)
{
    char *jid = bare(user);
    char *what = h_strf("set %s %s on %s", jid, affiliation, node);
    assert_empty_result(f, affiliation_iq(f, f->owner, node, jid, affiliation),
                        what);
    free(what);
    free(jid);
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

static long long stored_items(struct fixture *f, const char *node)
{
    char *sql = h_strf("SELECT count(*) FROM pubsub.item i JOIN pubsub.node n"
                       " USING (node_id) WHERE n.name = '%s' AND NOT n.deleted",
                       node);
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

static long long item_seq(struct fixture *f, const char *node,
                          const char *item)
{
    char *sql = h_strf("SELECT i.seq FROM pubsub.item i JOIN pubsub.node n"
                       " USING (node_id) WHERE n.name = '%s' AND NOT n.deleted"
                       " AND i.item_id = '%s'", node, item);
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

/* Subscriptions of node whose JID's bare part is jid. */
static long long subscriptions_of(struct fixture *f, const char *node,
                                  const char *jid)
{
    char *sql = h_strf("SELECT count(*) FROM pubsub.subscription s JOIN "
                       "pubsub.node n USING (node_id) WHERE n.name = '%s' AND "
                       "split_part(s.jid, '/', 1) = '%s'", node, jid);
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

static char *affiliation_in_db(struct fixture *f, const char *node,
                               const char *jid)
{
    char *sql = h_strf("SELECT coalesce((SELECT a.affiliation FROM "
                       "pubsub.affiliation a JOIN pubsub.node n USING "
                       "(node_id) WHERE n.name = '%s' AND NOT n.deleted AND "
                       "a.jid = '%s'), 'none')", node, jid);
    PGresult *res = h_sql(f->db, sql);
    char *v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    free(sql);
    return v;
}

/* ---- notifications ------------------------------------------------------- */

/* The next <message/> of c (waits up to NOTIFY_TIMEOUT_MS), asserted to
 * come from the component; caller releases. */
static xmpp_stanza_t *next_message(struct fixture *f, struct h_client *c,
                                   const char *what)
{
    xmpp_stanza_t *m = h_next_message(c, NOTIFY_TIMEOUT_MS);
    if (m == NULL) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: no notification for %s within %d ms", what,
                     h_client_jid(c), NOTIFY_TIMEOUT_MS);
    }
    const char *from = xmpp_stanza_get_from(m);
    char *text = h_stanza_to_string(m);
    ck_assert_msg(from != NULL && strcmp(from, f->jid) == 0,
                  "%s: notification not from %s: %s", what, f->jid, text);
    free(text);
    return m;
}

/* Asserts that c's next message carries exactly
 * <event xmlns='...#event'>inner</event>. */
#define assert_next_event(f, c, inner, what)                                 \
    assert_next_event_at(__LINE__, (f), (c), (inner), (what))
static void assert_next_event_at(int line, struct fixture *f,
                                 struct h_client *c, const char *inner,
                                 const char *what)
{
    xmpp_stanza_t *m = next_message(f, c, what);
    char *expected = h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'>%s</event>",
                            inner);
    xmpp_stanza_t *ev = h_child(m, "event", H_NS_PUBSUB_EVENT);
    if (h_count_children(m, "event", NULL) != 1 || ev == NULL) {
        char *text = h_stanza_to_string(m);
        h_fail_dump(f->proc);
        ck_abort_msg("line %d: %s: expected one pubsub <event/>: %s", line,
                     what, text);
    }
    assert_xml_eq_at(line, f, ev, expected, what);
    free(expected);
    xmpp_stanza_release(m);
}

/* The event of a publish of test_payload(id) to node; caller frees. */
static char *item_event(const char *node, const char *id)
{
    return h_strf("<items node='%s'><item id='%s'><entry xmlns='" NS_TEST
                  "'>%s</entry></item></items>", node, id, id);
}

static void assert_item_event(struct fixture *f, struct h_client *c,
                              const char *node, const char *id)
{
    char *inner = item_event(node, id);
    char *what = h_strf("notification of item %s on %s", id, node);
    assert_next_event(f, c, inner, what);
    free(what);
    free(inner);
}

/* Asserts that c receives no message within ms. */
static void assert_quiet(struct fixture *f, struct h_client *c, int ms,
                         const char *what)
{
    xmpp_stanza_t *m = h_next_message(c, ms);
    if (m != NULL) {
        char *text = h_stanza_to_string(m);
        h_fail_dump(f->proc);
        ck_abort_msg("%s: expected no notification for %s, got %s", what,
                     h_client_jid(c), text);
    }
}

/* ---- data forms ---------------------------------------------------------- */

static xmpp_stanza_t *form_field(xmpp_stanza_t *x, const char *var)
{
    for (xmpp_stanza_t *k = x ? xmpp_stanza_get_children(x) : NULL; k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k) || strcmp(xmpp_stanza_get_name(k), "field"))
            continue;
        const char *v = xmpp_stanza_get_attribute(k, "var");
        if (v != NULL && strcmp(v, var) == 0)
            return k;
    }
    return NULL;
}

/* The <value/> children of field var joined with ',' ("" when the field has
 * no value), or NULL when there is no such field.  Caller frees. */
static char *field_value(xmpp_stanza_t *x, const char *var)
{
    xmpp_stanza_t *fl = form_field(x, var);
    if (fl == NULL)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    bool first = true;
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(fl); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k) || strcmp(xmpp_stanza_get_name(k), "value"))
            continue;
        char *t = xmpp_stanza_get_text(k);
        fprintf(out, "%s%s", first ? "" : ",", t ? t : "");
        xmpp_free(h_xmpp_ctx(), t);
        first = false;
    }
    fclose(out);
    return buf;
}

/* The option values of field var, sorted, joined with ','.  Caller frees. */
static char *field_options(xmpp_stanza_t *x, const char *var)
{
    xmpp_stanza_t *fl = form_field(x, var);
    char *v[64];
    int n = 0;
    for (xmpp_stanza_t *k = fl ? xmpp_stanza_get_children(fl) : NULL;
         k != NULL && n < 64; k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k) || strcmp(xmpp_stanza_get_name(k), "option"))
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

/* XEP-0004 boolean: "1"/"true" -> "1", "0"/"false" -> "0", else as is. */
static const char *norm_bool(const char *v)
{
    if (v == NULL)
        return "(no field)";
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
        return "1";
    if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
        return "0";
    return v;
}

/* Asserts field var of form x has exactly the value(s) expected. */
#define assert_field(f, x, var, expected)                                    \
    assert_field_at(__LINE__, (f), (x), (var), (expected), false)
/* The same for a boolean field; expected is "1" or "0". */
#define assert_bool_field(f, x, var, expected)                               \
    assert_field_at(__LINE__, (f), (x), (var), (expected), true)
static void assert_field_at(int line, struct fixture *f, xmpp_stanza_t *x,
                            const char *var, const char *expected, bool boolean)
{
    char *v = field_value(x, var);
    const char *got = boolean ? norm_bool(v) : v;
    if (got == NULL || strcmp(got, expected) != 0) {
        char *text = xml_canon(x);
        h_fail_dump(f->proc);
        ck_abort_msg("line %d: field %s: expected '%s', got '%s' in %s", line,
                     var, expected, got ? got : "(no field)", text);
    }
    free(v);
}

/* Asserts that x is a data form of type type with the hidden FORM_TYPE
 * form_type. */
static void assert_form(struct fixture *f, xmpp_stanza_t *x, const char *type,
                        const char *form_type, const char *what)
{
    char *text = xml_canon(x);
    if (x == NULL || strcmp(xmpp_stanza_get_ns(x), NS_DATA) != 0) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: no data form: %s", what, text);
    }
    const char *t = xmpp_stanza_get_type(x);
    ck_assert_msg(t != NULL && strcmp(t, type) == 0,
                  "%s: expected a form of type '%s': %s", what, type, text);
    xmpp_stanza_t *ft = form_field(x, "FORM_TYPE");
    const char *fttype = ft ? xmpp_stanza_get_type(ft) : NULL;
    ck_assert_msg(fttype != NULL && strcmp(fttype, "hidden") == 0,
                  "%s: FORM_TYPE must be a hidden field: %s", what, text);
    free(text);
    assert_field(f, x, "FORM_TYPE", form_type);
}

/* Gets node's configuration form as the owner (§8.2.1); *x points into the
 * returned reply, which the caller releases. */
static xmpp_stanza_t *config_get(struct fixture *f, const char *node,
                                 xmpp_stanza_t **x)
{
    char *inner = h_strf("<configure node='%s'/>", node);
    xmpp_stanza_t *r = own_get(f, f->owner, inner);
    h_assert_result(f->proc, r, "configure get");
    xmpp_stanza_t *cfg = h_child(h_child(r, "pubsub", H_NS_PUBSUB_OWNER),
                                 "configure", NULL);
    char *text = h_stanza_to_string(r);
    const char *n = cfg ? xmpp_stanza_get_attribute(cfg, "node") : NULL;
    ck_assert_msg(n != NULL && strcmp(n, node) == 0,
                  "configure get: expected <pubsub xmlns='%s'><configure "
                  "node='%s'>: %s", H_NS_PUBSUB_OWNER, node, text);
    free(text);
    *x = h_child(cfg, "x", NS_DATA);
    assert_form(f, *x, "form", NS_NODE_CONFIG, "configure get");
    free(inner);
    return r;
}

/* Asserts one value of node's configuration (booleans normalised). */
static void assert_config(struct fixture *f, const char *node, const char *var,
                          const char *expected, bool boolean)
{
    xmpp_stanza_t *x;
    xmpp_stanza_t *r = config_get(f, node, &x);
    assert_field_at(__LINE__, f, x, var, expected, boolean);
    xmpp_stanza_release(r);
}

/* Every pubsub#node_config field the brief says the daemon implements. */
static const char *const config_fields[] = {
    "pubsub#title", "pubsub#description", "pubsub#type",
    "pubsub#deliver_notifications", "pubsub#deliver_payloads",
    "pubsub#notify_config", "pubsub#notify_delete", "pubsub#notify_retract",
    "pubsub#notify_sub", "pubsub#persist_items", "pubsub#max_items",
    "pubsub#item_expire", "pubsub#max_payload_size", "pubsub#access_model",
    "pubsub#publish_model", "pubsub#notification_type",
    "pubsub#send_last_published_item",
};
#define N_CONFIG_FIELDS (sizeof config_fields / sizeof config_fields[0])

/* XEP-0060 values of two list-single options (§16.4.3). */
static const char *const access_models[] = {"authorize", "open", "presence",
                                            "roster", "whitelist", NULL};
static const char *const send_last_values[] = {"never", "on_sub",
                                               "on_sub_and_presence", NULL};

/* Asserts that the options of list field var in the configuration form x
 * of node are values from xep_values, include every value of must (comma-
 * separated), and are exactly those a submission accepts: each offered
 * value is stored, each other XEP value is refused with modify
 * not-acceptable and app_condition.  Restores the option's value. */
static void assert_list_options(struct fixture *f, const char *node,
                                xmpp_stanza_t *x, const char *var,
                                const char *const *xep_values,
                                const char *must, const char *app_condition)
{
    char *opts = field_options(x, var);
    char *current = field_value(x, var);
    char *list = h_strf(",%s,", opts);
    char *m = strdup(must);
    for (char *save = NULL, *t = strtok_r(m, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        char *needle = h_strf(",%s,", t);
        ck_assert_msg(strstr(list, needle) != NULL,
                      "%s: option %s not offered (options: %s)", var, t, opts);
        free(needle);
    }
    free(m);
    int offered = 0;
    for (int i = 0; xep_values[i] != NULL; i++) {
        char *needle = h_strf(",%s,", xep_values[i]);
        bool is_offered = strstr(list, needle) != NULL;
        offered += is_offered;
        free(needle);
        char *fields = h_strf("<field var='%s'><value>%s</value></field>", var,
                              xep_values[i]);
        char *what = h_strf("configure %s = %s (%s)", var, xep_values[i],
                            is_offered ? "offered" : "not offered");
        xmpp_stanza_t *r = configure_iq(f, f->owner, node, fields);
        if (is_offered) {
            assert_empty_result(f, r, what);
            assert_config(f, node, var, xep_values[i], false);
        } else {
            assert_ps_error(f, r, what, "modify", "not-acceptable",
                            app_condition);
        }
        free(what);
        free(fields);
    }
    /* Something is offered, and nothing beyond the XEP's values. */
    ck_assert_msg(offered > 0, "%s: no XEP-0060 value offered", var);
    int commas = 0;
    for (const char *c = opts; *c; c++)
        commas += *c == ',';
    ck_assert_msg(offered == (*opts ? commas + 1 : 0),
                  "%s: options %s include values that are not XEP-0060's",
                  var, opts);
    char *restore = h_strf("<field var='%s'><value>%s</value></field>", var,
                           current);
    assert_empty_result(f, configure_iq(f, f->owner, node, restore),
                        "restore option");
    free(restore);
    free(list);
    free(current);
    free(opts);
}

/* ======================================================================== */
/* 1. Node configuration (§8.2)                                              */
/* ======================================================================== */

START_TEST(test_config_form)
{
    struct fixture f;
    fixture_up(&f, 1);
    char *node = h_uid("cfg");
    create_node(&f, node);

    xmpp_stanza_t *x;
    xmpp_stanza_t *r = config_get(&f, node, &x);
    for (size_t i = 0; i < N_CONFIG_FIELDS; i++) {
        xmpp_stanza_t *fl = form_field(x, config_fields[i]);
        char *text = xml_canon(x);
        ck_assert_msg(fl != NULL, "field %s missing from %s", config_fields[i],
                      text);
        free(text);
    }
    /* The list options offered are XEP-0060 values, always include the
     * ones the brief names, and are exactly the ones that work: every
     * offered value is accepted, every other XEP value refused as
     * unsupported. */
    assert_list_options(&f, node, x, "pubsub#access_model", access_models,
                        "open,whitelist", "unsupported-access-model");
    assert_list_options(&f, node, x, "pubsub#send_last_published_item",
                        send_last_values, "never", H_NO_APP_CONDITION);
    char *opts;
    opts = field_options(x, "pubsub#publish_model");
    ck_assert_str_eq(opts, "open,publishers,subscribers");
    free(opts);
    opts = field_options(x, "pubsub#notification_type");
    ck_assert_str_eq(opts, "headline,normal");
    free(opts);
    /* The values of a node created with the default configuration. */
    assert_field(&f, x, "pubsub#title", "");
    assert_field(&f, x, "pubsub#description", "");
    assert_field(&f, x, "pubsub#type", "");
    assert_field(&f, x, "pubsub#max_items", "1000");
    assert_field(&f, x, "pubsub#item_expire", "0");
    assert_field(&f, x, "pubsub#access_model", "open");
    assert_field(&f, x, "pubsub#publish_model", "publishers");
    assert_field(&f, x, "pubsub#notification_type", "headline");
    assert_field(&f, x, "pubsub#send_last_published_item", "never");
    assert_bool_field(&f, x, "pubsub#deliver_notifications", "1");
    assert_bool_field(&f, x, "pubsub#deliver_payloads", "1");
    assert_bool_field(&f, x, "pubsub#persist_items", "1");
    assert_bool_field(&f, x, "pubsub#notify_retract", "1");
    assert_bool_field(&f, x, "pubsub#notify_delete", "1");
    assert_bool_field(&f, x, "pubsub#notify_config", "0");
    xmpp_stanza_release(r);

    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_config_submit)
{
    struct fixture f;
    fixture_up(&f, 2);
    char *node = h_uid("cfg");
    create_node(&f, node);

    configure_ok(&f, node,
                 FIELD("pubsub#title", "Tom &amp; Jerry &lt;3")
                 FIELD("pubsub#description", "a description")
                 FIELD("pubsub#type", "urn:example:t")
                 FIELD("pubsub#deliver_notifications", "1")
                 FIELD("pubsub#deliver_payloads", "0")
                 FIELD("pubsub#notify_config", "1")
                 FIELD("pubsub#notify_delete", "false")
                 FIELD("pubsub#notify_retract", "0")
                 FIELD("pubsub#persist_items", "true")
                 FIELD("pubsub#max_items", "5")
                 FIELD("pubsub#item_expire", "3600")
                 FIELD("pubsub#max_payload_size", "2048")
                 FIELD("pubsub#access_model", "whitelist")
                 FIELD("pubsub#publish_model", "open")
                 FIELD("pubsub#notification_type", "normal")
                 FIELD("pubsub#send_last_published_item", "never"));

    xmpp_stanza_t *x;
    xmpp_stanza_t *r = config_get(&f, node, &x);
    assert_field(&f, x, "pubsub#title", "Tom & Jerry <3");
    assert_field(&f, x, "pubsub#description", "a description");
    assert_field(&f, x, "pubsub#type", "urn:example:t");
    assert_bool_field(&f, x, "pubsub#deliver_notifications", "1");
    assert_bool_field(&f, x, "pubsub#deliver_payloads", "0");
    assert_bool_field(&f, x, "pubsub#notify_config", "1");
    assert_bool_field(&f, x, "pubsub#notify_delete", "0");
    assert_bool_field(&f, x, "pubsub#notify_retract", "0");
    assert_bool_field(&f, x, "pubsub#persist_items", "1");
    assert_field(&f, x, "pubsub#max_items", "5");
    assert_field(&f, x, "pubsub#item_expire", "3600");
    assert_field(&f, x, "pubsub#max_payload_size", "2048");
    assert_field(&f, x, "pubsub#access_model", "whitelist");
    assert_field(&f, x, "pubsub#publish_model", "open");
    assert_field(&f, x, "pubsub#notification_type", "normal");
    xmpp_stanza_release(r);
    ck_assert_int_eq(node_sql(&f, node, "c.max_items"), 5);
    ck_assert_int_eq(node_sql(&f, node, "(c.access_model = 'whitelist')::int"),
                     1);

    /* XEP-0004 incomplete submission: fields not submitted keep their
     * values. */
    configure_ok(&f, node, FIELD("pubsub#title", "second"));
    r = config_get(&f, node, &x);
    assert_field(&f, x, "pubsub#title", "second");
    assert_field(&f, x, "pubsub#max_items", "5");
    assert_field(&f, x, "pubsub#access_model", "whitelist");
    xmpp_stanza_release(r);

    /* A cancelled form (§8.2.4, XEP-0004 type='cancel'): result, no
     * change. */
    char *inner = h_strf("<configure node='%s'><x xmlns='" NS_DATA
                         "' type='cancel'/></configure>", node);
    assert_empty_result(&f, own_set(&f, f.owner, inner), "configure cancel");
    free(inner);
    inner = h_strf("<configure node='%s'><x xmlns='" NS_DATA "' type='cancel'>"
                   FORM_TYPE(NS_NODE_CONFIG) FIELD("pubsub#title", "cancelled")
                   "</x></configure>", node);
    assert_empty_result(&f, own_set(&f, f.owner, inner),
                        "configure cancel with fields");
    free(inner);
    assert_config(&f, node, "pubsub#title", "second", false);
    assert_config(&f, node, "pubsub#max_items", "5", false);

    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_config_errors)
{
    struct fixture f;
    fixture_up(&f, 3);
    char *node = h_uid("cfg");
    char *unknown = h_uid("nosuch");
    create_node(&f, node);
    configure_ok(&f, node, FIELD("pubsub#title", "original"));
    struct h_client *bob = h_client_connect("bob");

    /* §8.2.3.2: not an owner. */
    char *inner = h_strf("<configure node='%s'/>", node);
    assert_ps_error(&f, own_get(&f, bob, inner), "configure get by non-owner",
                    "auth", "forbidden", H_NO_APP_CONDITION);
    free(inner);
    assert_ps_error(&f, configure_iq(&f, bob, node,
                                     FIELD("pubsub#title", "hacked")),
                    "configure submit by non-owner", "auth", "forbidden",
                    H_NO_APP_CONDITION);

    /* §8.2.3.5: no such node. */
    inner = h_strf("<configure node='%s'/>", unknown);
    assert_ps_error(&f, own_get(&f, f.owner, inner), "configure get unknown",
                    "cancel", "item-not-found", H_NO_APP_CONDITION);
    free(inner);
    assert_ps_error(&f, configure_iq(&f, f.owner, unknown,
                                     FIELD("pubsub#title", "x")),
                    "configure submit unknown", "cancel", "item-not-found",
                    H_NO_APP_CONDITION);
    ck_assert_int_eq(count_nodes(&f, unknown), 0);

    /* §8.2.3.3: no NodeID. */
    assert_ps_error(&f, own_get(&f, f.owner, "<configure/>"),
                    "configure get without node", "modify", "bad-request",
                    "nodeid-required");
    assert_ps_error(&f, own_set(&f, f.owner,
                                "<configure>" CONFIG_FORM(
                                    FIELD("pubsub#title", "x")) "</configure>"),
                    "configure submit without node", "modify", "bad-request",
                    "nodeid-required");

    /* §8.2.5.2: values that cannot be processed; the valid title submitted
     * along is not applied either. */
    static const char *const invalid[] = {
        FIELD("pubsub#max_items", "-3"),
        FIELD("pubsub#max_items", "ten"),
        FIELD("pubsub#notify_config", "maybe"),
        FIELD("pubsub#nonsense", "1"),
        FIELD("pubsub#access_model", "bogus"),
        FIELD("pubsub#publish_model", "everyone"),
        FIELD("pubsub#max_payload_size", "0"),
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        char *fields = h_strf(FIELD("pubsub#title", "changed") "%s",
                              invalid[i]);
        char *what = h_strf("configure with %s", invalid[i]);
        assert_ps_error(&f, configure_iq(&f, f.owner, node, fields), what,
                        "modify", "not-acceptable", H_NO_APP_CONDITION);
        free(what);
        free(fields);
    }
    /* A valid but unsupported access model (XEP-0060 §4.5: presence and
     * roster need the owner's roster, which a component cannot see). */
    assert_ps_error(&f, configure_iq(&f, f.owner, node,
                                     FIELD("pubsub#title", "changed")
                                     FIELD("pubsub#access_model",
                                           "presence")),
                    "configure access_model presence", "modify",
                    "not-acceptable", "unsupported-access-model");

    xmpp_stanza_t *x;
    xmpp_stanza_t *r = config_get(&f, node, &x);
    assert_field(&f, x, "pubsub#title", "original");
    assert_field(&f, x, "pubsub#max_items", "1000");
    assert_field(&f, x, "pubsub#access_model", "open");
    assert_field(&f, x, "pubsub#publish_model", "publishers");
    assert_bool_field(&f, x, "pubsub#notify_config", "0");
    xmpp_stanza_release(r);

    h_client_disconnect(bob);
    free(unknown);
    free(node);
    fixture_down(&f);
}
END_TEST

/* notify_config=1 with deliver_payloads=0: an empty <configuration/>
 * (§8.2.5.3); a cancelled form notifies no one; notify_config=0 (the
 * default) notifies no one. */
START_TEST(test_notify_config)
{
    struct fixture f;
    fixture_up(&f, 4);
    char *node = h_uid("ncfg");
    char *quiet = h_uid("quiet");
    create_node(&f, node);
    create_node(&f, quiet);
    configure_ok(&f, node, FIELD("pubsub#notify_config", "1")
                           FIELD("pubsub#deliver_payloads", "0"));
    struct h_client *bob = h_client_connect("bob");
    free(subscribe(&f, bob, node, true));
    free(subscribe(&f, bob, quiet, true));

    configure_ok(&f, node, FIELD("pubsub#title", "new title"));
    char *ev = h_strf("<configuration node='%s'/>", node);
    assert_next_event(&f, bob, ev, "configuration notification");
    free(ev);

    /* A cancelled form changes nothing and notifies no one: the next
     * notification is the sentinel's. */
    char *inner = h_strf("<configure node='%s'><x xmlns='" NS_DATA
                         "' type='cancel'/></configure>", node);
    assert_empty_result(&f, own_set(&f, f.owner, inner), "configure cancel");
    free(inner);
    publish_simple(&f, f.owner, node, "s1");
    ev = h_strf("<items node='%s'><item id='s1'/></items>", node);
    assert_next_event(&f, bob, ev, "sentinel after cancel");
    free(ev);

    /* notify_config off (default) on the other node. */
    configure_ok(&f, quiet, FIELD("pubsub#title", "changed silently"));
    publish_simple(&f, f.owner, quiet, "s2");
    assert_item_event(&f, bob, quiet, "s2");
    assert_quiet(&f, bob, 300, "after the sentinels");

    h_client_disconnect(bob);
    free(quiet);
    free(node);
    fixture_down(&f);
}
END_TEST

/* pubsub#notify_sub (§8.2.1, §8.8.4): the owner hears of every change of a
 * subscription's state; without it, nothing. */
START_TEST(test_notify_sub)
{
    struct fixture f;
    fixture_up(&f, 4);
    char *node = h_uid("nsub");
    create_node(&f, node);
    configure_ok(&f, node, FIELD("pubsub#notify_sub", "1"));
    struct h_client *bob = h_client_connect("bob");
    char *subid = subscribe(&f, bob, node, false);
    char *ev = h_strf("<subscription node='%s' jid='bob@localhost' subscription='subscribed'"
                      " subid='%s'/>", node, subid);
    assert_next_event(&f, f.owner, ev, "notify_sub: subscribed");
    free(ev);
    char *inner = h_strf("<unsubscribe node='%s' jid='bob@localhost'/>", node);
    assert_empty_result(&f, ps_set(&f, bob, inner), "unsubscribe");
    free(inner);
    ev = h_strf("<subscription node='%s' jid='bob@localhost' subscription='none'"
                " subid='%s'/>", node, subid);
    assert_next_event(&f, f.owner, ev, "notify_sub: none");
    free(ev);
    free(subid);
    /* Off again: subscribing is not reported. */
    configure_ok(&f, node, FIELD("pubsub#notify_sub", "0"));
    free(subscribe(&f, bob, node, false));
    assert_quiet(&f, f.owner, 2500, "notify_sub off");
    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

/* max_items lowered: the oldest surplus items go at once. */
START_TEST(test_max_items_lowered)
{
    struct fixture f;
    fixture_up(&f, 5);
    char *node = h_uid("max");
    create_node(&f, node);
    static const char *const ids[] = {"i1", "i2", "i3", "i4", "i5"};
    for (int i = 0; i < 5; i++)
        publish_simple(&f, f.owner, node, ids[i]);
    assert_items(&f, f.owner, node, "i1,i2,i3,i4,i5");

    configure_ok(&f, node, FIELD("pubsub#max_items", "2"));
    assert_items(&f, f.owner, node, "i4,i5");
    ck_assert_int_eq(node_sql(&f, node, "n.item_count"), 2);
    ck_assert_int_eq(stored_items(&f, node), 2);

    publish_simple(&f, f.owner, node, "i6");
    assert_items(&f, f.owner, node, "i5,i6");
    ck_assert_int_eq(node_sql(&f, node, "n.item_count"), 2);

    /* Raising it keeps what is there. */
    configure_ok(&f, node, FIELD("pubsub#max_items", "10"));
    assert_items(&f, f.owner, node, "i5,i6");

    free(node);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 2. Default configuration (§8.3) and create-and-configure (§8.1.3)        */
/* ======================================================================== */

START_TEST(test_default_config)
{
    struct fixture f;
    fixture_up(&f, 6);

    xmpp_stanza_t *r = own_get(&f, f.owner, "<default/>");
    h_assert_result(f.proc, r, "default");
    xmpp_stanza_t *def = h_child(h_child(r, "pubsub", H_NS_PUBSUB_OWNER),
                                 "default", NULL);
    char *text = h_stanza_to_string(r);
    ck_assert_msg(def != NULL, "expected <pubsub xmlns='%s'><default>: %s",
                  H_NS_PUBSUB_OWNER, text);
    free(text);
    xmpp_stanza_t *x = h_child(def, "x", NS_DATA);
    assert_form(&f, x, "form", NS_NODE_CONFIG, "default");
    assert_field(&f, x, "pubsub#max_items", "1000");
    assert_field(&f, x, "pubsub#access_model", "open");
    assert_field(&f, x, "pubsub#publish_model", "publishers");
    assert_field(&f, x, "pubsub#item_expire", "0");
    assert_field(&f, x, "pubsub#send_last_published_item", "never");
    assert_field(&f, x, "pubsub#notification_type", "headline");
    assert_bool_field(&f, x, "pubsub#persist_items", "1");
    assert_bool_field(&f, x, "pubsub#deliver_notifications", "1");
    assert_bool_field(&f, x, "pubsub#deliver_payloads", "1");
    assert_bool_field(&f, x, "pubsub#notify_retract", "1");
    assert_bool_field(&f, x, "pubsub#notify_delete", "1");
    assert_bool_field(&f, x, "pubsub#notify_config", "0");

    /* A node created without a form has exactly the default values. */
    char *node = h_uid("def");
    create_node(&f, node);
    xmpp_stanza_t *nx;
    xmpp_stanza_t *nr = config_get(&f, node, &nx);
    for (size_t i = 0; i < N_CONFIG_FIELDS; i++) {
        char *dv = field_value(x, config_fields[i]);
        char *nv = field_value(nx, config_fields[i]);
        ck_assert_msg(dv != NULL, "default lacks %s", config_fields[i]);
        ck_assert_msg(nv != NULL && strcmp(dv, nv) == 0,
                      "%s: default '%s', new node '%s'", config_fields[i], dv,
                      nv ? nv : "(no field)");
        free(dv);
        free(nv);
    }
    xmpp_stanza_release(nr);
    xmpp_stanza_release(r);

    /* Any entity may ask. */
    struct h_client *bob = h_client_connect("bob");
    r = own_get(&f, bob, "<default/>");
    h_assert_result(f.proc, r, "default by bob");
    xmpp_stanza_release(r);

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_create_and_configure)
{
    struct fixture f;
    fixture_up(&f, 7);
    char *node = h_uid("cc");
    create_configured(&f, node,
                      FIELD("pubsub#title", "Configured at birth")
                      FIELD("pubsub#max_items", "7")
                      FIELD("pubsub#access_model", "whitelist")
                      FIELD("pubsub#notify_retract", "0")
                      FIELD("pubsub#deliver_payloads", "0")
                      FIELD("pubsub#type", "urn:example:t"));
    xmpp_stanza_t *x;
    xmpp_stanza_t *r = config_get(&f, node, &x);
    assert_field(&f, x, "pubsub#title", "Configured at birth");
    assert_field(&f, x, "pubsub#max_items", "7");
    assert_field(&f, x, "pubsub#access_model", "whitelist");
    assert_field(&f, x, "pubsub#type", "urn:example:t");
    assert_bool_field(&f, x, "pubsub#notify_retract", "0");
    assert_bool_field(&f, x, "pubsub#deliver_payloads", "0");
    /* Not submitted: defaults. */
    assert_field(&f, x, "pubsub#publish_model", "publishers");
    assert_bool_field(&f, x, "pubsub#persist_items", "1");
    assert_bool_field(&f, x, "pubsub#notify_delete", "1");
    xmpp_stanza_release(r);
    ck_assert_int_eq(node_sql(&f, node, "c.max_items"), 7);
    char *owner = bare("owner");
    char *aff = affiliation_in_db(&f, node, owner);
    ck_assert_str_eq(aff, "owner");
    free(aff);

    /* Invalid or unsupported values: an error, and no node. */
    static const struct {
        const char *fields, *app;
    } bad[] = {
        {FIELD("pubsub#max_items", "x"), H_NO_APP_CONDITION},
        {FIELD("pubsub#notify_retract", "perhaps"), H_NO_APP_CONDITION},
        {FIELD("pubsub#nonsense", "1"), H_NO_APP_CONDITION},
        {FIELD("pubsub#access_model", "roster"), "unsupported-access-model"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *n2 = h_uid("ccbad");
        char *fields = h_strf(FIELD("pubsub#title", "t") "%s", bad[i].fields);
        char *what = h_strf("create-and-configure with %s", bad[i].fields);
        assert_ps_error(&f, create_configured_iq(&f, n2, fields), what,
                        "modify", "not-acceptable", bad[i].app);
        ck_assert_msg(count_nodes(&f, n2) == 0, "%s: node was created", what);
        char *inner = h_strf("<configure node='%s'/>", n2);
        assert_ps_error(&f, own_get(&f, f.owner, inner), what, "cancel",
                        "item-not-found", H_NO_APP_CONDITION);
        free(inner);
        free(what);
        free(fields);
        free(n2);
    }

    free(owner);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 3. Publish-options (§7.1.5) and pubsub#type                              */
/* ======================================================================== */

START_TEST(test_publish_options)
{
    struct fixture f;
    fixture_up(&f, 8);
    char *node = h_uid("po");
    create_node(&f, node);
    struct h_client *bob = h_client_connect("bob");
    free(subscribe(&f, bob, node, true));

    char *p = test_payload("a");
    assert_published(&f, publish_iq(&f, f.owner, node, "a", p,
                                    OPTIONS_FORM(FIELD("pubsub#access_model",
                                                       "open"))),
                     node, "a");
    free(p);
    assert_item_event(&f, bob, node, "a");
    long long seq = node_sql(&f, node, "n.last_seq");

    /* Preconditions not met: conflict + precondition-not-met, nothing
     * stored, no one notified. */
    static const char *const unmet[] = {
        FIELD("pubsub#max_items", "5"),
        FIELD("pubsub#access_model", "whitelist"),
        FIELD("pubsub#persist_items", "0"),
        FIELD("pubsub#access_model", "open") FIELD("pubsub#title", "other"),
    };
    for (size_t i = 0; i < sizeof unmet / sizeof unmet[0]; i++) {
        char *opts = h_strf(OPTIONS_FORM("%s"), unmet[i]);
        char *what = h_strf("publish with unmet %s", unmet[i]);
        p = test_payload("b");
        assert_ps_error(&f, publish_iq(&f, f.owner, node, "b", p, opts), what,
                        "cancel", "conflict", "precondition-not-met");
        free(p);
        free(what);
        free(opts);
    }
    /* Unknown fields are refused (§7.1.5: MUST reject), and so is a form
     * of another FORM_TYPE. */
    p = test_payload("b");
    assert_ps_error(&f, publish_iq(&f, f.owner, node, "b", p,
                                   OPTIONS_FORM(FIELD("pubsub#nonsense", "1"))),
                    "publish-options with an unknown field", "modify",
                    "not-acceptable", H_NO_APP_CONDITION);
    assert_ps_error(&f, publish_iq(&f, f.owner, node, "b", p,
                                   "<publish-options><x xmlns='" NS_DATA
                                   "' type='submit'>" FORM_TYPE(NS_NODE_CONFIG)
                                   FIELD("pubsub#access_model", "open")
                                   "</x></publish-options>"),
                    "publish-options with FORM_TYPE node_config", "modify",
                    "bad-request", H_NO_APP_CONDITION);
    free(p);
    ck_assert_int_eq(stored_items(&f, node), 1);
    ck_assert_int_eq(node_sql(&f, node, "n.last_seq"), seq);

    /* Several preconditions that all hold, typed values compared by value
     * (boolean "1", number "1000"). */
    p = test_payload("c");
    assert_published(&f, publish_iq(&f, f.owner, node, "c", p,
                                    OPTIONS_FORM(
                                        FIELD("pubsub#persist_items", "1")
                                        FIELD("pubsub#max_items", "1000")
                                        FIELD("pubsub#publish_model",
                                              "publishers"))),
                     node, "c");
    free(p);
    assert_items(&f, f.owner, node, "a,c");
    assert_item_event(&f, bob, node, "c");

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_payload_type)
{
    struct fixture f;
    fixture_up(&f, 1);
    char *node = h_uid("typed");
    create_configured(&f, node, FIELD("pubsub#type", "urn:example:t"));
    struct h_client *bob = h_client_connect("bob");
    free(subscribe(&f, bob, node, true));

    static const char *const wrong[] = {
        "<entry xmlns='urn:example:other'/>",
        "<t:entry xmlns:t='urn:example:other'/>",
        "<entry xmlns='urn:example:t:sub'>x</entry>",
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        char *what = h_strf("publish %s to a urn:example:t node", wrong[i]);
        assert_ps_error(&f, publish_iq(&f, f.owner, node, "bad", wrong[i],
                                       NULL),
                        what, "modify", "bad-request", "invalid-payload");
        free(what);
    }
    ck_assert_int_eq(stored_items(&f, node), 0);
    ck_assert_int_eq(node_sql(&f, node, "n.last_seq"), 0);

    publish_ok(&f, f.owner, node, "good",
               "<entry xmlns='urn:example:t'>ok</entry>");
    publish_ok(&f, f.owner, node, "prefixed",
               "<t:entry xmlns:t='urn:example:t'>ok</t:entry>");
    assert_items(&f, f.owner, node, "good,prefixed");
    /* The first notification is the first valid item's. */
    char *ev = h_strf("<items node='%s'><item id='good'><entry "
                      "xmlns='urn:example:t'>ok</entry></item></items>", node);
    assert_next_event(&f, bob, ev, "first valid publish");
    free(ev);

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 4. Purge (§8.5) and item expiry                                          */
/* ======================================================================== */

START_TEST(test_purge)
{
    struct fixture f;
    fixture_up(&f, 2);
    char *node = h_uid("purge");
    char *unknown = h_uid("nosuch");
    create_node(&f, node);
    struct h_client *bob = h_client_connect("bob");
    free(subscribe(&f, bob, node, true));
    publish_simple(&f, f.owner, node, "a");
    publish_simple(&f, f.owner, node, "b");
    publish_simple(&f, f.owner, node, "c");

    /* §8.5.3.2: not an owner; nothing is removed. */
    char *inner = h_strf("<purge node='%s'/>", node);
    assert_ps_error(&f, own_set(&f, bob, inner), "purge by non-owner", "auth",
                    "forbidden", H_NO_APP_CONDITION);
    assert_items(&f, f.owner, node, "a,b,c");
    char *uinner = h_strf("<purge node='%s'/>", unknown);
    assert_ps_error(&f, own_set(&f, f.owner, uinner), "purge unknown node",
                    "cancel", "item-not-found", H_NO_APP_CONDITION);
    free(uinner);
    assert_ps_error(&f, own_set(&f, f.owner, "<purge/>"), "purge without node",
                    "modify", "bad-request", "nodeid-required");

    assert_empty_result(&f, own_set(&f, f.owner, inner), "purge");
    free(inner);
    assert_item_event(&f, bob, node, "a");
    assert_item_event(&f, bob, node, "b");
    assert_item_event(&f, bob, node, "c");
    char *ev = h_strf("<purge node='%s'/>", node);
    assert_next_event(&f, bob, ev, "purge notification");
    free(ev);
    assert_items(&f, f.owner, node, "");
    ck_assert_int_eq(stored_items(&f, node), 0);
    ck_assert_int_eq(node_sql(&f, node, "n.item_count"), 0);

    /* The node lives on. */
    publish_simple(&f, f.owner, node, "d");
    assert_items(&f, f.owner, node, "d");
    assert_item_event(&f, bob, node, "d");

    /* §8.5.3.3: a node that does not persist items. */
    char *transient = h_uid("transient");
    create_configured(&f, transient, FIELD("pubsub#persist_items", "0"));
    inner = h_strf("<purge node='%s'/>", transient);
    assert_unsupported(&f, own_set(&f, f.owner, inner),
                       "purge of a transient node", "persistent-items");
    free(inner);

    h_client_disconnect(bob);
    free(transient);
    free(unknown);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_item_expire)
{
    static const char *const env[] = {"PUBSUBD_DISPATCH_POLL_MS=200", NULL};
    struct fixture f;
    fixture_up_env(&f, 3, env);
    char *node = h_uid("exp");
    char *keep = h_uid("keep");
    create_node(&f, node);
    create_node(&f, keep);
    configure_ok(&f, node, FIELD("pubsub#item_expire", "1"));
    assert_config(&f, node, "pubsub#item_expire", "1", false);

    publish_simple(&f, f.owner, node, "e1");
    long long published = h_now_ms();
    publish_simple(&f, f.owner, keep, "k1");
    assert_items(&f, f.owner, node, "e1");

    long long gone_after = -1;
    while (h_now_ms() - published < EXPIRE_WAIT_MS) {
        char *ids = items(&f, f.owner, node);
        bool empty = *ids == '\0';
        free(ids);
        if (empty) {
            gone_after = h_now_ms() - published;
            break;
        }
        h_pump(100);
    }
    if (gone_after < 0) {
        h_fail_dump(f.proc);
        ck_abort_msg("item with item_expire=1 still retrievable %d ms after "
                     "publishing", EXPIRE_WAIT_MS);
    }
    ck_assert_msg(gone_after >= 900, "item expired after %lld ms, before its "
                  "1 s", gone_after);
    ck_assert_int_eq(stored_items(&f, node), 0);
    ck_assert_int_eq(node_sql(&f, node, "n.item_count"), 0);
    /* The node without expiry keeps its item. */
    assert_items(&f, f.owner, keep, "k1");
    ck_assert_int_eq(node_sql(&f, keep, "n.item_count"), 1);

    free(keep);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 5. Notification switches                                                 */
/* ======================================================================== */

START_TEST(test_deliver_payloads_false)
{
    struct fixture f;
    fixture_up(&f, 4);
    char *node = h_uid("nopay");
    create_node(&f, node);
    configure_ok(&f, node, FIELD("pubsub#deliver_payloads", "0"));
    struct h_client *bob = h_client_connect("bob");
    free(subscribe(&f, bob, node, true));

    publish_simple(&f, f.owner, node, "x");
    char *ev = h_strf("<items node='%s'><item id='x'/></items>", node);
    assert_next_event(&f, bob, ev, "notification without payload");
    free(ev);
    /* The item keeps its payload. */
    char *inner = h_strf("<items node='%s'/>", node);
    xmpp_stanza_t *r = ps_get(&f, bob, inner);
    h_assert_result(f.proc, r, "items");
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><items node='%s'>"
                            "<item id='x'><entry xmlns='" NS_TEST "'>x</entry>"
                            "</item></items></pubsub>", node);
    assert_xml_eq(&f, h_child(r, "pubsub", H_NS_PUBSUB), expected,
                  "items of a deliver_payloads=0 node");
    free(expected);
    xmpp_stanza_release(r);
    free(inner);

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_deliver_notifications_false)
{
    struct fixture f;
    fixture_up(&f, 5);
    char *node = h_uid("nonote");
    create_node(&f, node);
    configure_ok(&f, node, FIELD("pubsub#deliver_notifications", "0"));
    struct h_client *bob = h_client_connect("bob");
    free(subscribe(&f, bob, node, true));

    publish_simple(&f, f.owner, node, "x");
    assert_quiet(&f, bob, QUIET_MS, "deliver_notifications=0");
    assert_items(&f, f.owner, node, "x");

    /* Switched back on: the next notification is the new item's, never
     * x's. */
    configure_ok(&f, node, FIELD("pubsub#deliver_notifications", "1"));
    publish_simple(&f, f.owner, node, "y");
    assert_item_event(&f, bob, node, "y");
    assert_items(&f, f.owner, node, "x,y");

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_notify_retract_false)
{
    struct fixture f;
    fixture_up(&f, 6);
    char *node = h_uid("noretract");
    create_node(&f, node);
    configure_ok(&f, node, FIELD("pubsub#notify_retract", "0"));
    struct h_client *bob = h_client_connect("bob");
    free(subscribe(&f, bob, node, true));
    publish_simple(&f, f.owner, node, "x");
    publish_simple(&f, f.owner, node, "y");
    assert_item_event(&f, bob, node, "x");
    assert_item_event(&f, bob, node, "y");

    char *inner = h_strf("<retract node='%s'><item id='x'/></retract>", node);
    assert_empty_result(&f, ps_set(&f, f.owner, inner), "retract x");
    free(inner);
    /* §7.2.2.1: notify='true' asks for the notification anyway.  It is the
     * next one bob gets: x's retraction was not notified. */
    inner = h_strf("<retract node='%s' notify='true'><item id='y'/></retract>",
                   node);
    assert_empty_result(&f, ps_set(&f, f.owner, inner), "retract y notify");
    free(inner);
    char *ev = h_strf("<items node='%s'><retract id='y'/></items>", node);
    assert_next_event(&f, bob, ev, "retract with notify='true'");
    free(ev);
    assert_items(&f, f.owner, node, "");
    ck_assert_int_eq(node_sql(&f, node, "n.item_count"), 0);

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_notify_delete_false)
{
    struct fixture f;
    fixture_up(&f, 7);
    char *loud = h_uid("loud");
    char *silent = h_uid("silent");
    create_node(&f, loud);
    create_node(&f, silent);
    configure_ok(&f, silent, FIELD("pubsub#notify_delete", "0"));
    struct h_client *bob = h_client_connect("bob");
    free(subscribe(&f, bob, loud, true));
    free(subscribe(&f, bob, silent, true));

    char *inner = h_strf("<delete node='%s'/>", loud);
    assert_empty_result(&f, own_set(&f, f.owner, inner), "delete loud");
    free(inner);
    char *ev = h_strf("<delete node='%s'/>", loud);
    assert_next_event(&f, bob, ev, "delete notification");
    free(ev);

    inner = h_strf("<delete node='%s'/>", silent);
    assert_empty_result(&f, own_set(&f, f.owner, inner), "delete silent");
    free(inner);
    /* The tombstone goes once the dispatcher has handled the delete event
     * (after the barrier); then nothing may arrive. */
    long long t0 = h_now_ms();
    while (count_nodes(&f, silent) != 0) {
        if (h_now_ms() - t0 > NOTIFY_TIMEOUT_MS) {
            h_fail_dump(f.proc);
            ck_abort_msg("deleted node %s still in pubsub.node after %d ms",
                         silent, NOTIFY_TIMEOUT_MS);
        }
        h_pump(50);
    }
    assert_quiet(&f, bob, QUIET_MS, "notify_delete=0");

    h_client_disconnect(bob);
    free(silent);
    free(loud);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 6. The entity's own subscriptions (§5.6) and affiliations (§5.7)         */
/* ======================================================================== */

START_TEST(test_own_subscriptions)
{
    struct fixture f;
    fixture_up(&f, 8);
    char *n1 = h_uid("own1");
    char *n2 = h_uid("own2");
    char *n3 = h_uid("own3");
    create_node(&f, n1);
    create_node(&f, n2);
    create_node(&f, n3);
    struct h_client *bob = h_client_connect("bob");
    struct h_client *carol = h_client_connect("carol");
    char *s1 = subscribe(&f, bob, n1, false);
    char *s2 = subscribe(&f, bob, n2, true);

    xmpp_stanza_t *r = ps_get(&f, bob, "<subscriptions/>");
    h_assert_result(f.proc, r, "own subscriptions");
    xmpp_stanza_t *subs = h_child(h_child(r, "pubsub", H_NS_PUBSUB),
                                  "subscriptions", NULL);
    char *expected = h_strf(
        "<subscriptions xmlns='" H_NS_PUBSUB "'>"
        "<subscription node='%s' jid='%s' subid='%s' subscription='subscribed'/>"
        "<subscription node='%s' jid='%s' subid='%s' subscription='subscribed'/>"
        "</subscriptions>",
        n1, h_client_bare_jid(bob), s1, n2, h_client_jid(bob), s2);
    assert_children_eq(&f, subs, expected, "own subscriptions");
    free(expected);
    xmpp_stanza_release(r);

    /* Filtered by node. */
    char *inner = h_strf("<subscriptions node='%s'/>", n2);
    r = ps_get(&f, bob, inner);
    h_assert_result(f.proc, r, "own subscriptions on n2");
    subs = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "subscriptions", NULL);
    expected = h_strf("<subscriptions xmlns='" H_NS_PUBSUB "'><subscription "
                      "node='%s' jid='%s' "
                      "subid='%s' subscription='subscribed'/></subscriptions>",
                      n2, h_client_jid(bob), s2);
    assert_children_eq(&f, subs, expected, "own subscriptions on n2");
    free(expected);
    xmpp_stanza_release(r);
    free(inner);
    inner = h_strf("<subscriptions node='%s'/>", n3);
    r = ps_get(&f, bob, inner);
    h_assert_result(f.proc, r, "own subscriptions on n3");
    subs = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "subscriptions", NULL);
    assert_children_eq(&f, subs, "<subscriptions xmlns='" H_NS_PUBSUB "'/>",
                       "own subscriptions on n3");
    xmpp_stanza_release(r);
    free(inner);

    /* No subscriptions: an empty <subscriptions/>. */
    r = ps_get(&f, carol, "<subscriptions/>");
    h_assert_result(f.proc, r, "carol's subscriptions");
    assert_xml_eq(&f, h_child(r, "pubsub", H_NS_PUBSUB),
                  "<pubsub xmlns='" H_NS_PUBSUB "'><subscriptions/></pubsub>",
                  "no subscriptions");
    xmpp_stanza_release(r);

    h_client_disconnect(carol);
    h_client_disconnect(bob);
    free(s1);
    free(s2);
    free(n1);
    free(n2);
    free(n3);
    fixture_down(&f);
}
END_TEST

START_TEST(test_own_affiliations)
{
    struct fixture f;
    fixture_up(&f, 1);
    char *n1 = h_uid("aff1");
    char *n2 = h_uid("aff2");
    create_node(&f, n1);
    create_node(&f, n2);
    affiliate(&f, n2, "bob", "publisher");
    affiliate(&f, n1, "eve", "outcast");
    struct h_client *bob = h_client_connect("bob");
    struct h_client *carol = h_client_connect("carol");
    struct h_client *eve = h_client_connect("eve");

    xmpp_stanza_t *r = ps_get(&f, f.owner, "<affiliations/>");
    h_assert_result(f.proc, r, "owner's affiliations");
    char *expected = h_strf("<affiliations xmlns='" H_NS_PUBSUB "'>"
                      "<affiliation node='%s' "
                            "affiliation='owner'/><affiliation node='%s' "
                            "affiliation='owner'/></affiliations>", n1, n2);
    assert_children_eq(&f, h_child(h_child(r, "pubsub", H_NS_PUBSUB),
                                   "affiliations", NULL),
                       expected, "owner's affiliations");
    free(expected);
    xmpp_stanza_release(r);

    char *inner = h_strf("<affiliations node='%s'/>", n1);
    r = ps_get(&f, f.owner, inner);
    h_assert_result(f.proc, r, "owner's affiliations on n1");
    expected = h_strf("<affiliations xmlns='" H_NS_PUBSUB "'>"
                      "<affiliation node='%s' "
                      "affiliation='owner'/></affiliations>", n1);
    assert_children_eq(&f, h_child(h_child(r, "pubsub", H_NS_PUBSUB),
                                   "affiliations", NULL),
                       expected, "owner's affiliations on n1");
    free(expected);
    xmpp_stanza_release(r);
    free(inner);

    r = ps_get(&f, bob, "<affiliations/>");
    h_assert_result(f.proc, r, "bob's affiliations");
    expected = h_strf("<affiliations xmlns='" H_NS_PUBSUB "'>"
                      "<affiliation node='%s' "
                      "affiliation='publisher'/></affiliations>", n2);
    assert_children_eq(&f, h_child(h_child(r, "pubsub", H_NS_PUBSUB),
                                   "affiliations", NULL),
                       expected, "bob's affiliations");
    free(expected);
    xmpp_stanza_release(r);

    r = ps_get(&f, eve, "<affiliations/>");
    h_assert_result(f.proc, r, "eve's affiliations");
    expected = h_strf("<affiliations xmlns='" H_NS_PUBSUB "'>"
                      "<affiliation node='%s' "
                      "affiliation='outcast'/></affiliations>", n1);
    assert_children_eq(&f, h_child(h_child(r, "pubsub", H_NS_PUBSUB),
                                   "affiliations", NULL),
                       expected, "eve's affiliations");
    free(expected);
    xmpp_stanza_release(r);

    r = ps_get(&f, carol, "<affiliations/>");
    h_assert_result(f.proc, r, "carol's affiliations");
    assert_xml_eq(&f, h_child(r, "pubsub", H_NS_PUBSUB),
                  "<pubsub xmlns='" H_NS_PUBSUB "'><affiliations/></pubsub>",
                  "no affiliations");
    xmpp_stanza_release(r);

    h_client_disconnect(eve);
    h_client_disconnect(carol);
    h_client_disconnect(bob);
    free(n1);
    free(n2);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 7. The owner's management of subscriptions (§8.8) and affiliations (§8.9) */
/* ======================================================================== */

START_TEST(test_owner_subscriptions)
{
    struct fixture f;
    fixture_up(&f, 2);
    char *node = h_uid("osub");
    char *unknown = h_uid("nosuch");
    create_node(&f, node);
    struct h_client *bob = h_client_connect("bob");
    struct h_client *carol = h_client_connect("carol");
    struct h_client *dave = h_client_connect("dave");
    char *sb = subscribe(&f, bob, node, false);
    char *sc = subscribe(&f, carol, node, true);

    char *get = h_strf("<subscriptions node='%s'/>", node);
    xmpp_stanza_t *r = own_get(&f, f.owner, get);
    h_assert_result(f.proc, r, "owner subscriptions get");
    xmpp_stanza_t *subs = h_child(h_child(r, "pubsub", H_NS_PUBSUB_OWNER),
                                  "subscriptions", NULL);
    const char *nattr = subs ? xmpp_stanza_get_attribute(subs, "node") : NULL;
    ck_assert_msg(nattr != NULL && strcmp(nattr, node) == 0,
                  "expected <subscriptions node='%s'>", node);
    char *expected = h_strf(
        "<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'>"
        "<subscription jid='%s' subscription='subscribed' "
        "subid='%s'/><subscription jid='%s' subscription='subscribed' "
        "subid='%s'/></subscriptions>",
        h_client_bare_jid(bob), sb, h_client_jid(carol), sc);
    assert_children_eq(&f, subs, expected, "owner subscriptions list");
    free(expected);
    xmpp_stanza_release(r);

    /* Errors: non-owner, unknown node, no node, invalid state. */
    char *dave_jid = bare("dave");
    char *set_dave = h_strf("<subscriptions node='%s'><subscription jid='%s' "
                            "subscription='subscribed'/></subscriptions>",
                            node, dave_jid);
    assert_ps_error(&f, own_get(&f, bob, get), "subscriptions get by non-owner",
                    "auth", "forbidden", H_NO_APP_CONDITION);
    assert_ps_error(&f, own_set(&f, bob, set_dave),
                    "subscriptions set by non-owner", "auth", "forbidden",
                    H_NO_APP_CONDITION);
    char *uget = h_strf("<subscriptions node='%s'/>", unknown);
    assert_ps_error(&f, own_get(&f, f.owner, uget), "subscriptions of unknown",
                    "cancel", "item-not-found", H_NO_APP_CONDITION);
    free(uget);
    assert_ps_error(&f, own_get(&f, f.owner, "<subscriptions/>"),
                    "owner subscriptions without node", "modify",
                    "bad-request", "nodeid-required");
    static const char *const states[] = {"bogus", "Subscribed"};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        char *inner = h_strf("<subscriptions node='%s'><subscription jid='%s' "
                             "subscription='%s'/></subscriptions>", node,
                             dave_jid, states[i]);
        char *what = h_strf("subscription state '%s'", states[i]);
        assert_ps_error(&f, own_set(&f, f.owner, inner), what, "modify",
                        "bad-request", H_NO_APP_CONDITION);
        free(what);
        free(inner);
    }
    ck_assert_int_eq(subscriptions_of(&f, node, dave_jid), 0);

    /* The owner subscribes dave and removes bob. */
    assert_empty_result(&f, own_set(&f, f.owner, set_dave),
                        "subscribe dave by the owner");
    ck_assert_int_eq(subscriptions_of(&f, node, dave_jid), 1);
    char *inner = h_strf("<subscriptions node='%s'><subscription jid='%s' "
                         "subscription='none'/></subscriptions>", node,
                         h_client_bare_jid(bob));
    assert_empty_result(&f, own_set(&f, f.owner, inner), "remove bob");
    free(inner);
    ck_assert_int_eq(subscriptions_of(&f, node, h_client_bare_jid(bob)), 0);

    r = own_get(&f, f.owner, get);
    h_assert_result(f.proc, r, "owner subscriptions get after changes");
    char *sql = h_strf("SELECT s.subid FROM pubsub.subscription s JOIN "
                       "pubsub.node n USING (node_id) WHERE n.name = '%s' AND "
                       "s.jid = '%s'", node, dave_jid);
    PGresult *res = h_sql(f.db, sql);
    ck_assert_int_eq(PQntuples(res), 1);
    expected = h_strf(
        "<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'>"
        "<subscription jid='%s' subscription='subscribed' "
        "subid='%s'/><subscription jid='%s' subscription='subscribed' "
        "subid='%s'/></subscriptions>",
        h_client_jid(carol), sc, dave_jid, PQgetvalue(res, 0, 0));
    PQclear(res);
    free(sql);
    assert_children_eq(&f, h_child(h_child(r, "pubsub", H_NS_PUBSUB_OWNER),
                                   "subscriptions", NULL),
                       expected, "owner subscriptions list after changes");
    free(expected);
    xmpp_stanza_release(r);

    /* dave hears the next item; bob no longer does. */
    publish_simple(&f, f.owner, node, "after");
    assert_item_event(&f, dave, node, "after");
    assert_item_event(&f, carol, node, "after");
    assert_quiet(&f, bob, 500, "bob after removal by the owner");

    free(set_dave);
    free(dave_jid);
    free(get);
    free(sb);
    free(sc);
    h_client_disconnect(dave);
    h_client_disconnect(carol);
    h_client_disconnect(bob);
    free(unknown);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_owner_affiliations)
{
    struct fixture f;
    fixture_up(&f, 3);
    char *node = h_uid("oaff");
    char *unknown = h_uid("nosuch");
    create_node(&f, node);
    struct h_client *bob = h_client_connect("bob");
    char *owner = bare("owner");
    char *bob_jid = bare("bob");
    char *carol_jid = bare("carol");

    char *get = h_strf("<affiliations node='%s'/>", node);
    xmpp_stanza_t *r = own_get(&f, f.owner, get);
    h_assert_result(f.proc, r, "affiliations get");
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB_OWNER "'>"
                            "<affiliations node='%s'><affiliation jid='%s' "
                            "affiliation='owner'/></affiliations></pubsub>",
                            node, owner);
    assert_xml_eq(&f, h_child(r, "pubsub", H_NS_PUBSUB_OWNER), expected,
                  "affiliations of a new node");
    free(expected);
    xmpp_stanza_release(r);

    char *p = test_payload("b1");
    assert_ps_error(&f, publish_iq(&f, bob, node, "b1", p, NULL),
                    "publish by bob before", "auth", "forbidden",
                    H_NO_APP_CONDITION);
    affiliate(&f, node, "bob", "publisher");
    publish_ok(&f, bob, node, "b1", p);
    r = own_get(&f, f.owner, get);
    h_assert_result(f.proc, r, "affiliations get with bob");
    expected = h_strf("<affiliations xmlns='" H_NS_PUBSUB_OWNER "'>"
                      "<affiliation jid='%s' "
                      "affiliation='owner'/><affiliation jid='%s' "
                      "affiliation='publisher'/></affiliations>", owner,
                      bob_jid);
    assert_children_eq(&f, h_child(h_child(r, "pubsub", H_NS_PUBSUB_OWNER),
                                   "affiliations", NULL),
                       expected, "affiliations with bob");
    free(expected);
    xmpp_stanza_release(r);

    /* Affiliations are bare JIDs (§4.1): a full JID names its bare JID. */
    char *bob_full = h_strf("%s/somewhere", bob_jid);
    assert_empty_result(&f, affiliation_iq(&f, f.owner, node, bob_full,
                                           "member"),
                        "affiliation for a full JID");
    free(bob_full);
    char *aff = affiliation_in_db(&f, node, bob_jid);
    ck_assert_str_eq(aff, "member");
    free(aff);
    affiliate(&f, node, "bob", "publisher");

    /* 'none' removes the affiliation. */
    affiliate(&f, node, "bob", "none");
    assert_ps_error(&f, publish_iq(&f, bob, node, "b2", p, NULL),
                    "publish by bob after removal", "auth", "forbidden",
                    H_NO_APP_CONDITION);
    r = own_get(&f, f.owner, get);
    h_assert_result(f.proc, r, "affiliations get after removal");
    expected = h_strf("<affiliations xmlns='" H_NS_PUBSUB_OWNER "'>"
                      "<affiliation jid='%s' "
                      "affiliation='owner'/></affiliations>", owner);
    assert_children_eq(&f, h_child(h_child(r, "pubsub", H_NS_PUBSUB_OWNER),
                                   "affiliations", NULL),
                       expected, "affiliations after removal");
    free(expected);
    xmpp_stanza_release(r);
    free(p);

    /* Errors. */
    assert_ps_error(&f, own_get(&f, bob, get), "affiliations get by non-owner",
                    "auth", "forbidden", H_NO_APP_CONDITION);
    assert_ps_error(&f, affiliation_iq(&f, bob, node, bob_jid, "owner"),
                    "bob makes himself owner", "auth", "forbidden",
                    H_NO_APP_CONDITION);
    aff = affiliation_in_db(&f, node, bob_jid);
    ck_assert_str_eq(aff, "none");
    free(aff);
    char *uget = h_strf("<affiliations node='%s'/>", unknown);
    assert_ps_error(&f, own_get(&f, f.owner, uget), "affiliations of unknown",
                    "cancel", "item-not-found", H_NO_APP_CONDITION);
    free(uget);
    assert_ps_error(&f, affiliation_iq(&f, f.owner, unknown, bob_jid,
                                       "publisher"),
                    "set affiliation on unknown node", "cancel",
                    "item-not-found", H_NO_APP_CONDITION);
    assert_ps_error(&f, own_get(&f, f.owner, "<affiliations/>"),
                    "owner affiliations without node", "modify", "bad-request",
                    "nodeid-required");
    assert_ps_error(&f, affiliation_iq(&f, f.owner, node, bob_jid, "king"),
                    "affiliation 'king'", "modify", "bad-request",
                    H_NO_APP_CONDITION);

    /* §8.9.2.4: the only owner cannot resign or demote itself. */
    static const char *const demotions[] = {"none", "publisher", "member",
                                            "outcast"};
    for (size_t i = 0; i < sizeof demotions / sizeof demotions[0]; i++) {
        char *what = h_strf("last owner sets itself %s", demotions[i]);
        r = affiliation_iq(&f, f.owner, node, owner, demotions[i]);
        h_assert_error(f.proc, r, what, "modify", "not-acceptable", NULL);
        xmpp_stanza_release(r);
        free(what);
        aff = affiliation_in_db(&f, node, owner);
        ck_assert_str_eq(aff, "owner");
        free(aff);
    }
    assert_config(&f, node, "pubsub#title", "", false);

    /* With a second owner, the first may leave. */
    affiliate(&f, node, "carol", "owner");
    assert_empty_result(&f, affiliation_iq(&f, f.owner, node, owner, "none"),
                        "owner resigns");
    aff = affiliation_in_db(&f, node, owner);
    ck_assert_str_eq(aff, "none");
    free(aff);
    aff = affiliation_in_db(&f, node, carol_jid);
    ck_assert_str_eq(aff, "owner");
    free(aff);
    char *inner = h_strf("<configure node='%s'/>", node);
    assert_ps_error(&f, own_get(&f, f.owner, inner),
                    "configure after resigning", "auth", "forbidden",
                    H_NO_APP_CONDITION);
    free(inner);

    free(carol_jid);
    free(bob_jid);
    free(owner);
    free(get);
    h_client_disconnect(bob);
    free(unknown);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_outcast)
{
    struct fixture f;
    fixture_up(&f, 4);
    char *node = h_uid("outcast");
    create_node(&f, node);
    publish_simple(&f, f.owner, node, "before");
    struct h_client *eve = h_client_connect("eve");
    free(subscribe(&f, eve, node, false));
    char *eve_jid = bare("eve");
    ck_assert_int_eq(subscriptions_of(&f, node, eve_jid), 1);

    affiliate(&f, node, "eve", "outcast");
    h_assert_affiliation_notice(f.proc, eve, f.jid, node, "outcast"); /* §8.9.4 */
    ck_assert_int_eq(subscriptions_of(&f, node, eve_jid), 0);
    char *inner = h_strf("<subscriptions node='%s'/>", node);
    xmpp_stanza_t *r = own_get(&f, f.owner, inner);
    h_assert_result(f.proc, r, "subscriptions after ban");
    assert_children_eq(&f, h_child(h_child(r, "pubsub", H_NS_PUBSUB_OWNER),
                                   "subscriptions", NULL),
                       "<subscriptions xmlns='" H_NS_PUBSUB_OWNER "'/>",
                       "subscriptions after ban");
    xmpp_stanza_release(r);
    free(inner);

    inner = h_strf("<subscribe node='%s' jid='%s'/>", node, eve_jid);
    assert_ps_error(&f, ps_set(&f, eve, inner), "outcast subscribes", "auth",
                    "forbidden", H_NO_APP_CONDITION);
    ck_assert_int_eq(subscriptions_of(&f, node, eve_jid), 0);
    char *items_inner = h_strf("<items node='%s'/>", node);
    assert_ps_error(&f, ps_get(&f, eve, items_inner), "outcast retrieves",
                    "auth", "forbidden", H_NO_APP_CONDITION);
    char *p = test_payload("e");
    assert_ps_error(&f, publish_iq(&f, eve, node, "e", p, NULL),
                    "outcast publishes", "auth", "forbidden",
                    H_NO_APP_CONDITION);
    free(p);
    publish_simple(&f, f.owner, node, "after");
    assert_quiet(&f, eve, 500, "outcast after a publish");

    /* Lifting the ban. */
    affiliate(&f, node, "eve", "none");
    h_assert_affiliation_notice(f.proc, eve, f.jid, node, "none");
    free(subscribe(&f, eve, node, false));
    assert_items(&f, eve, node, "before,after");

    free(items_inner);
    free(inner);
    free(eve_jid);
    h_client_disconnect(eve);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_publish_only)
{
    struct fixture f;
    fixture_up(&f, 5);
    char *node = h_uid("ponly");
    create_node(&f, node);
    affiliate(&f, node, "bob", "publish-only");
    affiliate(&f, node, "carol", "publisher");
    struct h_client *bob = h_client_connect("bob");
    struct h_client *carol = h_client_connect("carol");

    publish_simple(&f, bob, node, "b1");
    publish_simple(&f, bob, node, "b2");
    publish_simple(&f, carol, node, "c1");
    assert_items(&f, f.owner, node, "b1,b2,c1");

    char *inner = h_strf("<retract node='%s'><item id='c1'/></retract>", node);
    assert_ps_error(&f, ps_set(&f, bob, inner),
                    "publish-only retracts another's item", "auth", "forbidden",
                    H_NO_APP_CONDITION);
    free(inner);
    assert_items(&f, f.owner, node, "b1,b2,c1");
    inner = h_strf("<retract node='%s'><item id='b1'/></retract>", node);
    assert_empty_result(&f, ps_set(&f, bob, inner),
                        "publish-only retracts its own item");
    free(inner);
    assert_items(&f, f.owner, node, "b2,c1");
    /* A publisher may retract any item (§4.1 note: MAY). */
    inner = h_strf("<retract node='%s'><item id='b2'/></retract>", node);
    assert_empty_result(&f, ps_set(&f, carol, inner),
                        "publisher retracts another's item");
    free(inner);
    assert_items(&f, f.owner, node, "c1");
    ck_assert_int_eq(node_sql(&f, node, "n.item_count"), 1);

    h_client_disconnect(carol);
    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_whitelist)
{
    struct fixture f;
    fixture_up(&f, 6);
    char *node = h_uid("white");
    create_configured(&f, node, FIELD("pubsub#access_model", "whitelist"));
    publish_simple(&f, f.owner, node, "w1");
    struct h_client *carol = h_client_connect("carol");
    struct h_client *dave = h_client_connect("dave");

    char *sub_carol = h_strf("<subscribe node='%s' jid='%s'/>", node,
                             h_client_bare_jid(carol));
    char *items_inner = h_strf("<items node='%s'/>", node);
    assert_ps_error(&f, ps_set(&f, carol, sub_carol),
                    "subscribe to a whitelist node", "cancel", "not-allowed",
                    "closed-node");
    assert_ps_error(&f, ps_get(&f, carol, items_inner),
                    "items of a whitelist node", "cancel", "not-allowed",
                    "closed-node");
    ck_assert_int_eq(subscriptions_of(&f, node, h_client_bare_jid(carol)), 0);

    affiliate(&f, node, "carol", "member");
    h_assert_affiliation_notice(f.proc, carol, f.jid, node, "member"); /* §8.9.4 */
    free(subscribe(&f, carol, node, true));
    assert_items(&f, carol, node, "w1");
    publish_simple(&f, f.owner, node, "w2");
    assert_item_event(&f, carol, node, "w2");

    /* dave is still not on the list. */
    char *sub_dave = h_strf("<subscribe node='%s' jid='%s'/>", node,
                            h_client_bare_jid(dave));
    assert_ps_error(&f, ps_set(&f, dave, sub_dave),
                    "dave subscribes to a whitelist node", "cancel",
                    "not-allowed", "closed-node");
    assert_ps_error(&f, ps_get(&f, dave, items_inner),
                    "dave retrieves from a whitelist node", "cancel",
                    "not-allowed", "closed-node");
    free(sub_dave);

    free(items_inner);
    free(sub_carol);
    h_client_disconnect(dave);
    h_client_disconnect(carol);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 8. XEP-0059 result set management                                        */
/* ======================================================================== */

/* A paged items request; caller releases. */
static xmpp_stanza_t *items_page(struct fixture *f, struct h_client *c,
                                 const char *node, const char *set_inner)
{
    char *inner = h_strf("<items node='%s'/><set xmlns='" NS_RSM "'>%s</set>",
                         node, set_inner);
    xmpp_stanza_t *r = ps_get(f, c, inner);
    free(inner);
    return r;
}

/* Asserts a page of items: ids (comma-separated, "" for none), first and
 * last (< 0: must be absent), first's index attribute (XEP-0059 §2: the
 * number of items of the full set before the page's first item), count.
 * Releases r. */
#define assert_page(f, r, ids, first, index, last, count)                    \
    assert_page_at(__LINE__, (f), (r), (ids), (first), (index), (last),       \
                   (count))
static void assert_page_at(int line, struct fixture *f, xmpp_stanza_t *r,
                           const char *ids, long long first, long long index,
                           long long last, long long count)
{
    char *what = h_strf("items page (line %d)", line);
    h_assert_result(f->proc, r, what);
    char *text = h_stanza_to_string(r);
    char *got = item_ids_of(r);
    ck_assert_msg(strcmp(got, ids) == 0, "%s: expected [%s], got [%s]: %s",
                  what, ids, got, text);
    xmpp_stanza_t *set = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "set",
                                 NS_RSM);
    ck_assert_msg(set != NULL, "%s: no <set xmlns='%s'/> in <pubsub/>: %s",
                  what, NS_RSM, text);
    char *fs = h_child_text(set, "first", NS_RSM);
    char *ls = h_child_text(set, "last", NS_RSM);
    char *cs = h_child_text(set, "count", NS_RSM);
    if (first < 0) {
        ck_assert_msg(fs == NULL && ls == NULL,
                      "%s: an empty page must not have <first/>, <last/>: %s",
                      what, text);
    } else {
        char *ef = h_strf("%lld", first), *el = h_strf("%lld", last);
        ck_assert_msg(fs != NULL && strcmp(fs, ef) == 0 && ls != NULL &&
                          strcmp(ls, el) == 0,
                      "%s: expected first %s, last %s: %s", what, ef, el,
                      text);
        const char *ix = xmpp_stanza_get_attribute(
            h_child(set, "first", NS_RSM), "index");
        char *ei = h_strf("%lld", index);
        ck_assert_msg(ix != NULL && strcmp(ix, ei) == 0,
                      "%s: expected <first index='%s'>: %s", what, ei, text);
        free(ei);
        free(ef);
        free(el);
    }
    char *ec = h_strf("%lld", count);
    ck_assert_msg(cs != NULL && strcmp(cs, ec) == 0,
                  "%s: expected <count>%s</count>: %s", what, ec, text);
    free(ec);
    free(fs);
    free(ls);
    free(cs);
    free(got);
    free(text);
    free(what);
    xmpp_stanza_release(r);
}

/* "p05,p06,..." for items p<from> .. p<to-1>; caller frees. */
static char *range_ids(int from, int to)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    for (int i = from; i < to; i++)
        fprintf(out, "%sp%02d", i > from ? "," : "", i);
    fclose(out);
    return buf;
}

START_TEST(test_rsm_items)
{
    struct fixture f;
    fixture_up(&f, 7);
    char *node = h_uid("rsm");
    create_node(&f, node);
    enum { N = 25 };
    long long seq[N];
    /* Pipelined: one node's requests run in arrival order. */
    char *ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = h_uid("pub");
        char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='"
                           H_NS_PUBSUB "'><publish node='%s'><item id='p%02d'>"
                           "<entry xmlns='" NS_TEST "'/></item></publish>"
                           "</pubsub></iq>", f.jid, ids[i], node, i);
        h_send(f.owner, xml);
        free(xml);
    }
    for (int i = 0; i < N; i++) {
        xmpp_stanza_t *r = h_wait_reply(f.owner, ids[i], IQ_TIMEOUT_MS);
        h_assert_result(f.proc, r, "pipelined publish");
        xmpp_stanza_release(r);
        free(ids[i]);
        char id[8];
        snprintf(id, sizeof id, "p%02d", i);
        seq[i] = item_seq(&f, node, id);
        if (i > 0)
            ck_assert_msg(seq[i] > seq[i - 1], "seqs not increasing");
    }
    struct h_client *alice = h_client_connect("alice");
    char *want, *after;

    /* Forwards, oldest first. */
    want = range_ids(0, 10);
    assert_page(&f, items_page(&f, alice, node, "<max>10</max>"), want, seq[0],
                0, seq[9], N);
    free(want);
    after = h_strf("<max>10</max><after>%lld</after>", seq[9]);
    want = range_ids(10, 20);
    assert_page(&f, items_page(&f, alice, node, after), want, seq[10], 10,
                seq[19], N);
    free(want);
    free(after);
    after = h_strf("<max>10</max><after>%lld</after>", seq[19]);
    want = range_ids(20, 25);
    assert_page(&f, items_page(&f, alice, node, after), want, seq[20], 20,
                seq[24], N);
    free(want);
    free(after);
    after = h_strf("<max>10</max><after>%lld</after>", seq[24]);
    assert_page(&f, items_page(&f, alice, node, after), "", -1, -1, -1, N);
    free(after);

    /* Backwards: the last page, then the one before it. */
    want = range_ids(15, 25);
    assert_page(&f, items_page(&f, alice, node, "<max>10</max><before/>"),
                want, seq[15], 15, seq[24], N);
    free(want);
    after = h_strf("<max>10</max><before>%lld</before>", seq[15]);
    want = range_ids(5, 15);
    assert_page(&f, items_page(&f, alice, node, after), want, seq[5], 5,
                seq[14], N);
    free(want);
    free(after);
    after = h_strf("<max>10</max><before>%lld</before>", seq[5]);
    want = range_ids(0, 5);
    assert_page(&f, items_page(&f, alice, node, after), want, seq[0], 0,
                seq[4], N);
    free(want);
    free(after);

    /* XEP-0059 §2.5: max 0 gives the count only. */
    assert_page(&f, items_page(&f, alice, node, "<max>0</max>"), "", -1, -1,
                -1, N);

    /* The index counts the items of the set as it is now: retract p03
     * and p07, and the page after p09 starts at index 8 of 23; the page
     * of 10 before p15 is p04..p14 without p07, at index 3. */
    for (int i = 3; i <= 7; i += 4) {
        char *inner = h_strf("<retract node='%s'><item id='p%02d'/></retract>",
                             node, i);
        xmpp_stanza_t *r = ps_set(&f, f.owner, inner);
        h_assert_result(f.proc, r, "retract");
        xmpp_stanza_release(r);
        free(inner);
    }
    after = h_strf("<max>3</max><after>%lld</after>", seq[9]);
    assert_page(&f, items_page(&f, alice, node, after), "p10,p11,p12", seq[10],
                8, seq[12], N - 2);
    free(after);
    after = h_strf("<max>10</max><before>%lld</before>", seq[15]);
    assert_page(&f, items_page(&f, alice, node, after),
                "p04,p05,p06,p08,p09,p10,p11,p12,p13,p14", seq[4], 3, seq[14],
                N - 2);
    free(after);
    assert_page(&f, items_page(&f, alice, node, "<max>4</max><before/>"),
                "p21,p22,p23,p24", seq[21], 19, seq[24], N - 2);

    /* Positions that were never issued. */
    assert_ps_error(&f, items_page(&f, alice, node,
                                   "<max>10</max><after>notanumber</after>"),
                    "after notanumber", "cancel", "item-not-found",
                    H_NO_APP_CONDITION);
    assert_ps_error(&f, items_page(&f, alice, node,
                                   "<max>10</max><before>x1</before>"),
                    "before x1", "cancel", "item-not-found",
                    H_NO_APP_CONDITION);

    h_client_disconnect(alice);
    free(node);
    fixture_down(&f);
}
END_TEST

/* Paging through 200 items, 17 at a time, while 100 more are published:
 * every item exactly once, in publication order. */
START_TEST(test_rsm_concurrent)
{
    struct fixture f;
    fixture_up(&f, 8);
    char *node = h_uid("rsmc");
    create_node(&f, node);
    enum { FIRST = 200, MORE = 100, TOTAL = FIRST + MORE, PAGE = 17 };
    char *iq_ids[TOTAL];
    for (int i = 0; i < FIRST; i++) {
        iq_ids[i] = h_uid("pub");
        char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='"
                           H_NS_PUBSUB "'><publish node='%s'><item id='a%03d'>"
                           "<entry xmlns='" NS_TEST "'/></item></publish>"
                           "</pubsub></iq>", f.jid, iq_ids[i], node, i);
        h_send(f.owner, xml);
        free(xml);
    }
    for (int i = 0; i < FIRST; i++) {
        xmpp_stanza_t *r = h_wait_reply(f.owner, iq_ids[i], IQ_TIMEOUT_MS);
        h_assert_result(f.proc, r, "publish of the first 200");
        xmpp_stanza_release(r);
        free(iq_ids[i]);
    }

    struct h_client *alice = h_client_connect("alice");
    char *seen[TOTAL + 1];
    int nseen = 0, sent = FIRST;
    bool acked = false;
    long long last = -1;
    for (int round = 0; round < 200; round++) {
        /* The other client publishes 10 more before each page, without
         * waiting for the results. */
        for (int k = 0; k < 10 && sent < TOTAL; k++, sent++) {
            iq_ids[sent] = h_uid("pub");
            char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='"
                               H_NS_PUBSUB "'><publish node='%s'><item "
                               "id='b%03d'><entry xmlns='" NS_TEST "'/></item>"
                               "</publish></pubsub></iq>",
                               f.jid, iq_ids[sent], node, sent - FIRST);
            h_send(f.owner, xml);
            free(xml);
        }
        char *set = last < 0 ? h_strf("<max>%d</max>", PAGE)
                             : h_strf("<max>%d</max><after>%lld</after>", PAGE,
                                      last);
        xmpp_stanza_t *r = items_page(&f, alice, node, set);
        free(set);
        h_assert_result(f.proc, r, "page");
        xmpp_stanza_t *ps = h_child(r, "pubsub", H_NS_PUBSUB);
        xmpp_stanza_t *items = h_child(ps, "items", NULL);
        xmpp_stanza_t *rs = h_child(ps, "set", NS_RSM);
        char *text = h_stanza_to_string(r);
        int n = 0;
        for (xmpp_stanza_t *k = items ? xmpp_stanza_get_children(items) : NULL;
             k != NULL; k = xmpp_stanza_get_next(k)) {
            if (!xmpp_stanza_is_tag(k))
                continue;
            ck_assert_msg(nseen < TOTAL, "more than %d items: %s", TOTAL,
                          text);
            seen[nseen++] = strdup(xmpp_stanza_get_attribute(k, "id"));
            n++;
        }
        ck_assert_msg(n <= PAGE, "page larger than max: %s", text);
        if (n > 0) {
            char *fs = h_child_text(rs, "first", NS_RSM);
            char *ls = h_child_text(rs, "last", NS_RSM);
            ck_assert_msg(fs != NULL && ls != NULL, "no first/last: %s", text);
            long long fv = atoll(fs), lv = atoll(ls);
            ck_assert_msg(fv > last && lv >= fv,
                          "first %lld / last %lld after %lld: %s", fv, lv,
                          last, text);
            last = lv;
            free(fs);
            free(ls);
        }
        free(text);
        xmpp_stanza_release(r);
        if (n == 0 && sent == TOTAL) {
            if (acked)
                break; /* empty page after every publish was confirmed */
            for (int i = FIRST; i < TOTAL; i++) {
                xmpp_stanza_t *pr = h_wait_reply(f.owner, iq_ids[i],
                                                 IQ_TIMEOUT_MS);
                h_assert_result(f.proc, pr, "concurrent publish");
                xmpp_stanza_release(pr);
                free(iq_ids[i]);
            }
            acked = true;
        }
    }
    ck_assert_msg(acked, "paging did not finish");
    ck_assert_int_eq(nseen, TOTAL);
    for (int i = 0; i < TOTAL; i++) {
        char want[8];
        snprintf(want, sizeof want, i < FIRST ? "a%03d" : "b%03d",
                 i < FIRST ? i : i - FIRST);
        ck_assert_msg(strcmp(seen[i], want) == 0,
                      "position %d: expected %s, got %s", i, want, seen[i]);
    }
    for (int i = 0; i < nseen; i++)
        free(seen[i]);
    assert_page(&f, items_page(&f, alice, node, "<max>0</max>"), "", -1, -1,
                -1, TOTAL);

    h_client_disconnect(alice);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_disco_items_rsm)
{
    struct fixture f;
    fixture_up(&f, 1);
    char *prefix = h_uid("dn");
    char *names[3];
    for (int i = 0; i < 3; i++) {
        names[i] = h_strf("%s-%c", prefix, 'a' + i);
        create_node(&f, names[i]);
    }
    struct h_client *alice = h_client_connect("alice");

    /* Without a result set: all nodes, no <set/>. */
    xmpp_stanza_t *r = disco_iq(&f, alice, H_NS_DISCO_ITEMS, NULL, "");
    h_assert_result(f.proc, r, "disco#items");
    char *expected = h_strf("<query xmlns='" H_NS_DISCO_ITEMS "'>"
                            "<item jid='%s' node='%s'/><item jid='%s' "
                            "node='%s'/><item jid='%s' node='%s'/></query>",
                            f.jid, names[0], f.jid, names[1], f.jid, names[2]);
    assert_children_eq(&f, h_child(r, "query", H_NS_DISCO_ITEMS), expected,
                       "disco#items of the service");
    free(expected);
    xmpp_stanza_release(r);

    /* One node per page, by name; first and last are node names. */
    const char *after = NULL;
    for (int i = 0; i <= 3; i++) {
        char *set = after ? h_strf("<set xmlns='" NS_RSM "'><max>1</max>"
                                   "<after>%s</after></set>", after)
                          : h_strf("<set xmlns='" NS_RSM "'><max>1</max>"
                                   "</set>");
        r = disco_iq(&f, alice, H_NS_DISCO_ITEMS, NULL, set);
        free(set);
        char *what = h_strf("disco#items page %d", i);
        h_assert_result(f.proc, r, what);
        xmpp_stanza_t *q = h_child(r, "query", H_NS_DISCO_ITEMS);
        char *text = h_stanza_to_string(r);
        ck_assert_msg(h_count_children(q, "item", NULL) == (i < 3 ? 1 : 0),
                      "%s: expected %d item(s): %s", what, i < 3 ? 1 : 0,
                      text);
        xmpp_stanza_t *it = h_child(q, "item", NULL);
        if (i < 3) {
            expected = h_strf("<item xmlns='" H_NS_DISCO_ITEMS "' jid='%s' "
                              "node='%s'/>", f.jid, names[i]);
            char *g = xml_canon(it);
            /* the item inherits the namespace: compare without xmlns */
            ck_assert_msg(strcmp(xmpp_stanza_get_attribute(it, "node"),
                                 names[i]) == 0 &&
                              strcmp(xmpp_stanza_get_attribute(it, "jid"),
                                     f.jid) == 0 &&
                              xmpp_stanza_get_attribute(it, "name") == NULL,
                          "%s: expected %s, got %s", what, expected, g);
            free(g);
            free(expected);
        }
        xmpp_stanza_t *rs = h_child(q, "set", NS_RSM);
        ck_assert_msg(rs != NULL, "%s: no <set xmlns='%s'/>: %s", what, NS_RSM,
                      text);
        char *fs = h_child_text(rs, "first", NS_RSM);
        char *ls = h_child_text(rs, "last", NS_RSM);
        char *cs = h_child_text(rs, "count", NS_RSM);
        if (i < 3)
            ck_assert_msg(fs != NULL && strcmp(fs, names[i]) == 0 &&
                              ls != NULL && strcmp(ls, names[i]) == 0,
                          "%s: expected first = last = %s: %s", what,
                          names[i], text);
        else
            ck_assert_msg(fs == NULL && ls == NULL,
                          "%s: an empty page must not have <first/>, "
                          "<last/>: %s", what, text);
        /* <count/> is optional (XEP-0059 SHOULD); when given it is exact. */
        ck_assert_msg(cs == NULL || strcmp(cs, "3") == 0,
                      "%s: wrong <count/>: %s", what, text);
        free(fs);
        free(ls);
        free(cs);
        free(text);
        free(what);
        xmpp_stanza_release(r);
        if (i < 3)
            after = names[i];
    }

    /* The items of a node (§5.5): name = ItemID, no node attribute. */
    publish_simple(&f, f.owner, names[1], "i1");
    publish_simple(&f, f.owner, names[1], "i2");
    r = disco_iq(&f, alice, H_NS_DISCO_ITEMS, names[1], "");
    h_assert_result(f.proc, r, "disco#items of a node");
    expected = h_strf("<query xmlns='" H_NS_DISCO_ITEMS "' node='%s'><item "
                      "jid='%s' name='i1'/><item jid='%s' name='i2'/></query>",
                      names[1], f.jid, f.jid);
    assert_xml_eq(&f, h_child(r, "query", H_NS_DISCO_ITEMS), expected,
                  "disco#items of a node");
    free(expected);
    xmpp_stanza_release(r);
    char *unknown = h_uid("nosuch");
    r = disco_iq(&f, alice, H_NS_DISCO_ITEMS, unknown, "");
    assert_ps_error(&f, r, "disco#items of an unknown node", "cancel",
                    "item-not-found", H_NO_APP_CONDITION);
    free(unknown);

    h_client_disconnect(alice);
    for (int i = 0; i < 3; i++)
        free(names[i]);
    free(prefix);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 9. Discovery: node meta-data (§5.4) and service features                 */
/* ======================================================================== */

START_TEST(test_node_metadata)
{
    struct fixture f;
    fixture_up(&f, 2);
    char *node = h_uid("meta");
    create_configured(&f, node,
                      FIELD("pubsub#title", "Meta title")
                      FIELD("pubsub#description", "Meta description")
                      FIELD("pubsub#max_items", "42"));
    struct h_client *bob = h_client_connect("bob");
    struct h_client *carol = h_client_connect("carol");
    struct h_client *dave = h_client_connect("dave");
    free(subscribe(&f, bob, node, false));
    free(subscribe(&f, carol, node, true));
    free(subscribe(&f, dave, node, false));
    char *inner = h_strf("<unsubscribe node='%s' jid='%s'/>", node,
                         h_client_bare_jid(dave));
    assert_empty_result(&f, ps_set(&f, dave, inner), "dave unsubscribes");
    free(inner);

    xmpp_stanza_t *r = disco_iq(&f, dave, H_NS_DISCO_INFO, node, "");
    h_assert_result(f.proc, r, "disco#info of a node");
    char *text = h_stanza_to_string(r);
    xmpp_stanza_t *q = h_child(r, "query", H_NS_DISCO_INFO);
    const char *qn = q ? xmpp_stanza_get_attribute(q, "node") : NULL;
    ck_assert_msg(qn != NULL && strcmp(qn, node) == 0,
                  "expected <query node='%s'>: %s", node, text);
    ck_assert_msg(h_disco_has_identity(r, "pubsub", "leaf"),
                  "no pubsub/leaf identity: %s", text);
    ck_assert_int_eq(h_count_children(q, "identity", NULL), 1);
    free(text);
    xmpp_stanza_t *x = h_child(q, "x", NS_DATA);
    assert_form(&f, x, "result", NS_META_DATA, "node meta-data");
    char *owner = bare("owner");
    assert_field(&f, x, "pubsub#creator", owner);
    assert_field(&f, x, "pubsub#owner", owner);
    assert_field(&f, x, "pubsub#num_subscribers", "2");
    assert_field(&f, x, "pubsub#title", "Meta title");
    assert_field(&f, x, "pubsub#description", "Meta description");
    assert_field(&f, x, "pubsub#access_model", "open");
    assert_field(&f, x, "pubsub#publish_model", "publishers");
    assert_field(&f, x, "pubsub#max_items", "42");
    char *date = field_value(x, "pubsub#creation_date");
    ck_assert_msg(date != NULL && strlen(date) == 20 && date[4] == '-' &&
                      date[10] == 'T' && date[19] == 'Z',
                  "pubsub#creation_date not an XEP-0082 DateTime: %s",
                  date ? date : "(no field)");
    free(date);
    xmpp_stanza_release(r);

    /* A second owner shows in pubsub#owner. */
    affiliate(&f, node, "carol", "owner");
    r = disco_iq(&f, dave, H_NS_DISCO_INFO, node, "");
    h_assert_result(f.proc, r, "disco#info with two owners");
    char *carol_jid = bare("carol");
    char *owners = field_value(h_child(h_child(r, "query", H_NS_DISCO_INFO),
                                       "x", NS_DATA), "pubsub#owner");
    char *want1 = h_strf("%s,%s", carol_jid, owner);
    char *want2 = h_strf("%s,%s", owner, carol_jid);
    ck_assert_msg(owners != NULL && (strcmp(owners, want1) == 0 ||
                                     strcmp(owners, want2) == 0),
                  "pubsub#owner: expected %s, got %s", want1,
                  owners ? owners : "(no field)");
    free(want1);
    free(want2);
    free(owners);
    free(carol_jid);
    xmpp_stanza_release(r);

    char *unknown = h_uid("nosuch");
    assert_ps_error(&f, disco_iq(&f, dave, H_NS_DISCO_INFO, unknown, ""),
                    "disco#info of an unknown node", "cancel",
                    "item-not-found", H_NO_APP_CONDITION);
    free(unknown);

    free(owner);
    h_client_disconnect(dave);
    h_client_disconnect(carol);
    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

START_TEST(test_service_features)
{
    static const char *const features[] = {
        H_NS_PUBSUB "#config-node",
        H_NS_PUBSUB "#create-and-configure",
        H_NS_PUBSUB "#publish-options",
        H_NS_PUBSUB "#purge-nodes",
        H_NS_PUBSUB "#retrieve-default",
        H_NS_PUBSUB "#retrieve-subscriptions",
        H_NS_PUBSUB "#retrieve-affiliations",
        H_NS_PUBSUB "#manage-subscriptions",
        H_NS_PUBSUB "#modify-affiliations",
        H_NS_PUBSUB "#access-whitelist",
        H_NS_PUBSUB "#meta-data",
        H_NS_PUBSUB "#outcast-affiliation",
        H_NS_PUBSUB "#member-affiliation",
        H_NS_PUBSUB "#publisher-affiliation",
        H_NS_PUBSUB "#publish-only-affiliation",
        NS_RSM,
    };
    /* Not implemented: must not be advertised. */
    static const char *const absent[] = {
        H_NS_PUBSUB "#access-presence",
        H_NS_PUBSUB "#access-roster",
    };
    struct fixture f;
    fixture_up(&f, 3);
    xmpp_stanza_t *r = disco_iq(&f, f.owner, H_NS_DISCO_INFO, NULL, "");
    h_assert_result(f.proc, r, "service disco#info");
    char *text = h_stanza_to_string(r);
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        ck_assert_msg(h_disco_has_feature(r, features[i]),
                      "feature %s missing from %s", features[i], text);
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        ck_assert_msg(!h_disco_has_feature(r, absent[i]),
                      "feature %s advertised but not implemented: %s",
                      absent[i], text);
    free(text);
    xmpp_stanza_release(r);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 10. Unsupported requests                                                 */
/* ======================================================================== */

START_TEST(test_unsupported)
{
    struct fixture f;
    fixture_up(&f, 4);
    char *node = h_uid("unsup");
    create_node(&f, node);
    publish_simple(&f, f.owner, node, "i1");
    struct h_client *bob = h_client_connect("bob");

    /* A request that is not XEP-0060's, in either namespace. */
    assert_ps_error(&f, ps_get(&f, bob, "<frobnicate/>"),
                    "unknown pubsub request", "cancel",
                    "feature-not-implemented", NULL);
    assert_ps_error(&f, own_set(&f, f.owner, "<frobnicate/>"),
                    "unknown pubsub#owner request", "cancel",
                    "feature-not-implemented", NULL);
    /* XEP-0059 §2.6: a page by index MAY be refused with
     * feature-not-implemented (positions are seqs, not indexes). */
    assert_ps_error(&f, items_page(&f, bob, node,
                                   "<max>1</max><index>0</index>"),
                    "items page by index", "cancel", "feature-not-implemented",
                    NULL);

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

/* ======================================================================== */
/* 11. Requirements the daemon does not meet yet (see the file comment)     */
/* ======================================================================== */

/* §8.2.5.3: "if the node configuration is set to full payloads, the
 * <configuration/> element MUST in addition contain the node configuration
 * as represented via the Data Forms protocol". */
START_TEST(test_notify_config_full_payload)
{
    struct fixture f;
    fixture_up(&f, 5);
    char *node = h_uid("ncfgfull");
    create_configured(&f, node, FIELD("pubsub#notify_config", "1")
                                FIELD("pubsub#deliver_payloads", "1"));
    struct h_client *bob = h_client_connect("bob");
    free(subscribe(&f, bob, node, true));

    configure_ok(&f, node, FIELD("pubsub#title", "Full payload title"));
    xmpp_stanza_t *m = next_message(&f, bob, "configuration notification");
    xmpp_stanza_t *c = h_child(h_child(m, "event", H_NS_PUBSUB_EVENT),
                               "configuration", NULL);
    char *text = h_stanza_to_string(m);
    const char *n = c ? xmpp_stanza_get_attribute(c, "node") : NULL;
    ck_assert_msg(n != NULL && strcmp(n, node) == 0,
                  "expected <configuration node='%s'>: %s", node, text);
    xmpp_stanza_t *x = h_child(c, "x", NS_DATA);
    if (x == NULL) {
        h_fail_dump(f.proc);
        ck_abort_msg("XEP-0060 §8.2.5.3: deliver_payloads=1, the "
                     "<configuration/> notification MUST contain the "
                     "configuration form; got %s", text);
    }
    assert_form(&f, x, "result", NS_NODE_CONFIG, "configuration notification");
    assert_field(&f, x, "pubsub#title", "Full payload title");
    free(text);
    xmpp_stanza_release(m);

    h_client_disconnect(bob);
    free(node);
    fixture_down(&f);
}
END_TEST

/* §8.1.3: "The <configure/> element ... MUST NOT possess a 'node'
 * attribute ...; if any of these rules are violated, the service MUST
 * return a <bad-request/> error." */
START_TEST(test_create_configure_with_node_attr)
{
    struct fixture f;
    fixture_up(&f, 6);
    char *node = h_uid("ccnode");
    char *inner = h_strf("<create node='%s'/><configure node='%s'>"
                         CONFIG_FORM(FIELD("pubsub#title", "t"))
                         "</configure>", node, node);
    assert_ps_error(&f, ps_set(&f, f.owner, inner),
                    "create with <configure node=.../>", "modify",
                    "bad-request", NULL);
    ck_assert_msg(count_nodes(&f, node) == 0,
                  "the node was created by a request that must fail");
    free(inner);
    free(node);
    fixture_down(&f);
}
END_TEST

/* §7.1.5: "If the node exists and the precondition is not met, then the
 * publish MUST fail with a <conflict/> error condition and a
 * pubsub-specific condition of <precondition-not-met/>" - also for a value
 * (the XEP's own example, access_model 'presence') that the service does
 * not implement. */
START_TEST(test_publish_options_unsupported_value)
{
    struct fixture f;
    fixture_up(&f, 7);
    char *node = h_uid("pounsup");
    create_node(&f, node);
    static const char *const unmet[] = {
        FIELD("pubsub#access_model", "presence"),
        FIELD("pubsub#access_model", "roster"),
        FIELD("pubsub#send_last_published_item", "on_sub_and_presence"),
    };
    for (size_t i = 0; i < sizeof unmet / sizeof unmet[0]; i++) {
        char *opts = h_strf(OPTIONS_FORM("%s"), unmet[i]);
        char *what = h_strf("publish-options %s on an open node", unmet[i]);
        char *p = test_payload("x");
        assert_ps_error(&f, publish_iq(&f, f.owner, node, "x", p, opts), what,
                        "cancel", "conflict", "precondition-not-met");
        free(p);
        free(what);
        free(opts);
    }
    ck_assert_int_eq(stored_items(&f, node), 0);
    free(node);
    fixture_down(&f);
}
END_TEST

/* §8.9.2.4: "If errors occur during a modification request for multiple
 * entities, the pubsub service MUST return any <affiliation/> element(s)
 * which caused the error. ... Any ... elements which are not returned in
 * an IQ error case MUST be treated as successful modifications." */
START_TEST(test_last_owner_error_entries)
{
    struct fixture f;
    fixture_up(&f, 8);
    char *node = h_uid("lastowner");
    create_node(&f, node);
    char *owner = bare("owner");
    char *bob_jid = bare("bob");
    char *inner = h_strf("<affiliations node='%s'><affiliation jid='%s' "
                         "affiliation='none'/><affiliation jid='%s' "
                         "affiliation='publisher'/></affiliations>", node,
                         owner, bob_jid);
    xmpp_stanza_t *r = own_set(&f, f.owner, inner);
    h_assert_error(f.proc, r, "last owner resigns with another change",
                   "modify", "not-acceptable", NULL);
    char *expected = h_strf("<pubsub xmlns='" H_NS_PUBSUB_OWNER "'>"
                            "<affiliations node='%s'><affiliation jid='%s' "
                            "affiliation='owner'/></affiliations></pubsub>",
                            node, owner);
    assert_xml_eq(&f, h_child(r, "pubsub", H_NS_PUBSUB_OWNER), expected,
                  "§8.9.2.4 error must return the failed entry with its "
                  "existing affiliation");
    free(expected);
    xmpp_stanza_release(r);
    char *aff = affiliation_in_db(&f, node, owner);
    ck_assert_str_eq(aff, "owner");
    free(aff);
    aff = affiliation_in_db(&f, node, bob_jid);
    ck_assert_msg(strcmp(aff, "publisher") == 0,
                  "§8.9.2.4: the entry not returned in the error (bob "
                  "publisher) MUST be treated as successful; bob is '%s'",
                  aff);
    free(aff);
    free(inner);
    free(bob_jid);
    free(owner);
    free(node);
    fixture_down(&f);
}
END_TEST

/* §4.1, "Affiliations and their Privileges": publish-only may neither
 * subscribe nor retrieve items (also on a whitelist node, where the daemon
 * lets it). */
START_TEST(test_publish_only_no_subscribe_retrieve)
{
    struct fixture f;
    fixture_up(&f, 1);
    char *open = h_uid("ponlyo");
    char *white = h_uid("ponlyw");
    create_node(&f, open);
    create_configured(&f, white, FIELD("pubsub#access_model", "whitelist"));
    affiliate(&f, open, "bob", "publish-only");
    affiliate(&f, white, "bob", "publish-only");
    struct h_client *bob = h_client_connect("bob");
    publish_simple(&f, bob, open, "o1");
    publish_simple(&f, bob, white, "w1");
    const char *const nodes[] = {open, white};
    for (int i = 0; i < 2; i++) {
        char *inner = h_strf("<subscribe node='%s' jid='%s'/>", nodes[i],
                             h_client_bare_jid(bob));
        char *what = h_strf("publish-only subscribes to %s", nodes[i]);
        assert_ps_error(&f, ps_set(&f, bob, inner), what, "auth", "forbidden",
                        NULL);
        free(what);
        free(inner);
        inner = h_strf("<items node='%s'/>", nodes[i]);
        what = h_strf("publish-only retrieves items of %s", nodes[i]);
        assert_ps_error(&f, ps_get(&f, bob, inner), what, "auth", "forbidden",
                        NULL);
        free(what);
        free(inner);
    }
    h_client_disconnect(bob);
    free(white);
    free(open);
    fixture_down(&f);
}
END_TEST

/* §8.9.2.4: "The owner MUST NOT specify multiple <affiliation/> elements
 * for the same entity; otherwise the service MUST return a <bad-request/>
 * error." */
START_TEST(test_duplicate_affiliation_entries)
{
    struct fixture f;
    fixture_up(&f, 2);
    char *node = h_uid("dupaff");
    create_node(&f, node);
    char *bob_jid = bare("bob");
    char *inner = h_strf("<affiliations node='%s'><affiliation jid='%s' "
                         "affiliation='publisher'/><affiliation jid='%s' "
                         "affiliation='member'/></affiliations>", node,
                         bob_jid, bob_jid);
    assert_ps_error(&f, own_set(&f, f.owner, inner),
                    "two affiliations for one entity", "modify",
                    "bad-request", NULL);
    char *aff = affiliation_in_db(&f, node, bob_jid);
    ck_assert_msg(strcmp(aff, "none") == 0,
                  "a rejected request changed bob's affiliation to '%s'", aff);
    free(aff);
    free(inner);
    free(bob_jid);
    free(node);
    fixture_down(&f);
}
END_TEST

/* A node that does not persist items: retrieval (§6.5.9.5) and retraction
 * (§7.2.3.5) "MUST return a <feature-not-implemented/> error, specifying a
 * pubsub-specific error condition of <unsupported/> and a feature of
 * 'persistent-items'" (the node does not send the last published item). */
START_TEST(test_transient_node_items)
{
    struct fixture f;
    fixture_up(&f, 3);
    char *node = h_uid("transient");
    create_configured(&f, node, FIELD("pubsub#persist_items", "0"));
    publish_simple(&f, f.owner, node, "t1");
    ck_assert_int_eq(stored_items(&f, node), 0);
    char *inner = h_strf("<items node='%s'/>", node);
    assert_unsupported(&f, ps_get(&f, f.owner, inner),
                       "items of a transient node", "persistent-items");
    free(inner);
    inner = h_strf("<retract node='%s'><item id='t1'/></retract>", node);
    assert_unsupported(&f, ps_set(&f, f.owner, inner),
                       "retract on a transient node", "persistent-items");
    free(inner);
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

static Suite *xep0060_suite(void)
{
    Suite *s = suite_create("xep0060");
    TCase *tc = tcase("node_config");
    tcase_add_test(tc, test_config_form);
    tcase_add_test(tc, test_config_submit);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_notify_config);
    tcase_add_test(tc, test_notify_sub);
    tcase_add_test(tc, test_max_items_lowered);
    suite_add_tcase(s, tc);

    tc = tcase("default_and_create");
    tcase_add_test(tc, test_default_config);
    tcase_add_test(tc, test_create_and_configure);
    suite_add_tcase(s, tc);

    tc = tcase("publish_constraints");
    tcase_add_test(tc, test_publish_options);
    tcase_add_test(tc, test_payload_type);
    suite_add_tcase(s, tc);

    tc = tcase("purge_and_expiry");
    tcase_add_test(tc, test_purge);
    tcase_add_test(tc, test_item_expire);
    suite_add_tcase(s, tc);

    tc = tcase("notification_switches");
    tcase_add_test(tc, test_deliver_payloads_false);
    tcase_add_test(tc, test_deliver_notifications_false);
    tcase_add_test(tc, test_notify_retract_false);
    tcase_add_test(tc, test_notify_delete_false);
    suite_add_tcase(s, tc);

    tc = tcase("own_lists");
    tcase_add_test(tc, test_own_subscriptions);
    tcase_add_test(tc, test_own_affiliations);
    suite_add_tcase(s, tc);

    tc = tcase("owner_management");
    tcase_add_test(tc, test_owner_subscriptions);
    tcase_add_test(tc, test_owner_affiliations);
    tcase_add_test(tc, test_outcast);
    tcase_add_test(tc, test_publish_only);
    tcase_add_test(tc, test_whitelist);
    suite_add_tcase(s, tc);

    tc = tcase("rsm");
    tcase_add_test(tc, test_rsm_items);
    tcase_add_test(tc, test_rsm_concurrent);
    tcase_add_test(tc, test_disco_items_rsm);
    suite_add_tcase(s, tc);

    tc = tcase("discovery");
    tcase_add_test(tc, test_node_metadata);
    tcase_add_test(tc, test_service_features);
    suite_add_tcase(s, tc);

    tc = tcase("unsupported");
    tcase_add_test(tc, test_unsupported);
    suite_add_tcase(s, tc);

    tc = tcase("xep_conformance");
    tcase_add_test(tc, test_notify_config_full_payload);
    tcase_add_test(tc, test_create_configure_with_node_attr);
    tcase_add_test(tc, test_publish_options_unsupported_value);
    tcase_add_test(tc, test_last_owner_error_entries);
    tcase_add_test(tc, test_publish_only_no_subscribe_retrieve);
    tcase_add_test(tc, test_duplicate_affiliation_entries);
    tcase_add_test(tc, test_transient_node_items);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(xep0060_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
