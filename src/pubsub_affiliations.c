/*
 * pubsub_affiliations.c - who is subscribed and affiliated: the entity's
 * own subscriptions (§5.6) and affiliations (§5.7), and the owner's
 * management of a node's subscriptions (§8.8) and affiliations (§8.9).
 */
#include <stdio.h>
#include <string.h>

#include "jid.h"
#include "log.h"
#include "pubsub.h"
#include "rsm.h"

static const struct xmpp_error ERR_NOT_ACCEPTABLE = {"modify", "not-acceptable", NULL, NULL};

static const char *const affiliations[] = {"owner", "publisher", "publish-only", "member",
                                           "outcast", "none", NULL};

static bool in_list(const char *const *list, const char *v)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], v) == 0)
            return true;
    return false;
}

/* Marks a call whose request asked for a result set (call->extra). */
static int rsm_asked;

/*
 * The page a list request asks for (XEP-0059 <set/> in the <pubsub/>
 * element around el): the limit and the key to continue after (a sub_id
 * when numeric, else a JID or node name).  Returns 0, or -1 after
 * answering (*reqp freed).
 */
static int list_page(struct server *s, struct iq_request **reqp, const struct xnode *el,
                     bool numeric, char *limit, size_t limit_len, char **after, bool *asked)
{
    struct rsm_request rsm;
    const char *why = NULL;
    int rc = rsm_parse(el->parent, &rsm);
    if (rc == 0 && pubsub_refuse_rsm_index(s, *reqp, &rsm)) {
        rsm_free(&rsm);
        *reqp = NULL;
        return -1;
    }
    if (rc != 0 || rsm.has_before)
        why = "unsupported result set request";
    else if (rsm.after && numeric && strspn(rsm.after, "0123456789") != strlen(rsm.after))
        why = "unknown result set position";
    if (why) {
        rsm_free(&rsm);
        pubsub_reply_error(s, *reqp, strcmp(why, "unknown result set position") == 0
                                         ? &ERR_ITEM_NOT_FOUND : &ERR_BAD_REQUEST, why);
        *reqp = NULL;
        return -1;
    }
    long max = s->cfg->max_items_per_request;
    if (rsm.max >= 0 && rsm.max < max)
        max = rsm.max;
    snprintf(limit, limit_len, "%ld", max);
    *after = rsm.after;
    rsm.after = NULL;
    *asked = rsm.present;
    rsm_free(&rsm);
    return 0;
}

/* Appends the reply's <set/> when one was asked for: first and last are
 * column `key` of rows [from, rows); total and index (the entries before
 * the page) come from row 0. */
static void list_set(struct pubsub_call *call, struct buf *b, const PGresult *res, int from,
                     int key, int total_col)
{
    if (call->extra != &rsm_asked)
        return;
    int rows = PQntuples(res);
    rsm_reply(b, rows > from ? db_value(res, from, key) : NULL,
              rows > from ? db_value(res, rows - 1, key) : NULL, db_int(res, 0, total_col),
              db_int(res, 0, total_col + 1));
}

/* ---- the entity's own ------------------------------------------------- */

/* <pubsub><LIST [node='N']> of an entity's own list. */
static void own_list_open(struct buf *b, const char *list, const char *node)
{
    buf_puts(b, "<pubsub xmlns='" NS_PUBSUB "'><");
    buf_puts(b, list);
    if (node) {
        buf_puts(b, " node='");
        buf_put_escaped(b, node);
        buf_puts(b, "'");
    }
    buf_puts(b, ">");
}

static void own_subscriptions_done(struct pubsub_call *call, const PGresult *res)
{
    struct buf b = BUF_INIT;
    own_list_open(&b, "subscriptions", call->node);
    for (int i = 1; i < PQntuples(res); i++) { /* row 0: the list's size */
        buf_puts(&b, "<subscription node='");
        buf_put_escaped(&b, db_value(res, i, 0));
        buf_puts(&b, "' jid='");
        buf_put_escaped(&b, db_value(res, i, 1));
        buf_puts(&b, "' subid='");
        buf_put_escaped(&b, db_value(res, i, 2));
        buf_puts(&b, "' subscription='");
        buf_put_escaped(&b, db_value(res, i, 3));
        buf_puts(&b, "'/>");
    }
    buf_puts(&b, "</subscriptions>");
    list_set(call, &b, res, 1, 4, 5);
    buf_puts(&b, "</pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

static void own_affiliations_done(struct pubsub_call *call, const PGresult *res)
{
    struct buf b = BUF_INIT;
    own_list_open(&b, "affiliations", call->node);
    for (int i = 1; i < PQntuples(res); i++) { /* row 0: the list's size */
        buf_puts(&b, "<affiliation node='");
        buf_put_escaped(&b, db_value(res, i, 0));
        buf_puts(&b, "' affiliation='");
        buf_put_escaped(&b, db_value(res, i, 1));
        buf_puts(&b, "'/>");
    }
    buf_puts(&b, "</affiliations>");
    list_set(call, &b, res, 1, 0, 2);
    buf_puts(&b, "</pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

void pubsub_own_list(struct server *s, struct iq_request *req, const struct xnode *el,
                     bool subscriptions)
{
    const char *node = xnode_attr(el, "node");
    if (node && !node_id_is_valid(node, (size_t)s->cfg->max_node_id_bytes)) {
        pubsub_reply_error(s, req, &ERR_ITEM_NOT_FOUND, NULL);
        return;
    }
    char limit[24];
    char *after = NULL;
    bool asked = false;
    if (list_page(s, &req, el, subscriptions, limit, sizeof limit, &after, &asked) != 0)
        return;
    struct pubsub_call *call = pubsub_call_new(
        s, req, node, subscriptions ? own_subscriptions_done : own_affiliations_done);
    call->extra = asked ? &rsm_asked : NULL;
    const char *params[] = {req->from_bare, call->node, limit, after};
    pubsub_call_submit(call, subscriptions ? DB_OWN_SUBSCRIPTIONS : DB_OWN_AFFILIATIONS, 4, params);
    free(after);
}

/* ---- the owner's management ----------------------------------------------- */

static void node_list_done(struct pubsub_call *call, const PGresult *res, bool subscriptions)
{
    if (PQntuples(res) == 0 || pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    struct buf b = BUF_INIT;
    buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB_OWNER "'>");
    buf_puts(&b, subscriptions ? "<subscriptions node='" : "<affiliations node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "'>");
    for (int i = 1; i < PQntuples(res); i++) {
        buf_puts(&b, subscriptions ? "<subscription jid='" : "<affiliation jid='");
        buf_put_escaped(&b, db_value(res, i, 1));
        if (subscriptions) {
            buf_puts(&b, "' subscription='");
            buf_put_escaped(&b, db_value(res, i, 3));
            buf_puts(&b, "' subid='");
            buf_put_escaped(&b, db_value(res, i, 2));
        } else {
            buf_puts(&b, "' affiliation='");
            buf_put_escaped(&b, db_value(res, i, 2));
        }
        buf_puts(&b, "'/>");
    }
    buf_puts(&b, subscriptions ? "</subscriptions>" : "</affiliations>");
    list_set(call, &b, res, 1, subscriptions ? 4 : 1, subscriptions ? 5 : 3);
    buf_puts(&b, "</pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

static void node_subscriptions_done(struct pubsub_call *call, const PGresult *res)
{
    node_list_done(call, res, true);
}

static void node_affiliations_done(struct pubsub_call *call, const PGresult *res)
{
    node_list_done(call, res, false);
}

/* Tells jid of its new affiliation with node (XEP-0060 §8.9.4, the form
 * of its example).  A headline: for the entity's online sessions, not
 * stored offline (RFC 6121 §8.5.2.1.1).  Best effort, after the change
 * committed: a notice lost with the link is not sent again (the
 * affiliation itself is stored and can be retrieved, §5.7). */
static void send_affiliation_notice(struct server *s, const char *node, const char *jid,
                                    const char *affiliation)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "<message from='");
    buf_put_escaped(&b, s->cfg->component_jid);
    buf_puts(&b, "' to='");
    buf_put_escaped(&b, jid);
    buf_puts(&b, "' type='headline'><pubsub xmlns='" NS_PUBSUB "'><affiliations node='");
    buf_put_escaped(&b, node);
    buf_puts(&b, "'><affiliation jid='");
    buf_put_escaped(&b, jid);
    buf_puts(&b, "' affiliation='");
    buf_put_escaped(&b, affiliation);
    buf_puts(&b, "'/></affiliations></pubsub></message>");
    if (link_send(&s->link, b.data, b.len) != PS_OK)
        log_info("node %s: affiliation notice to %s not sent: link down or full", node, jid);
    buf_free(&b);
}

static void modify_done(struct pubsub_call *call, const PGresult *res)
{
    const char *status = db_value(res, 0, 0);
    if (strcmp(status, "last-owner") == 0) {
        /* §8.9.2.4: the failed entries with their existing affiliation. */
        struct buf b = BUF_INIT;
        buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB_OWNER "'><affiliations node='");
        buf_put_escaped(&b, call->node);
        buf_puts(&b, "'>");
        for (int i = 1; i < PQntuples(res); i++) {
            buf_puts(&b, "<affiliation jid='");
            buf_put_escaped(&b, db_value(res, i, 1));
            buf_puts(&b, "' affiliation='");
            buf_put_escaped(&b, db_value(res, i, 2));
            buf_puts(&b, "'/>");
        }
        buf_puts(&b, "</affiliations></pubsub>");
        (void)stanza_reply_error_payload(&call->s->link, call->req, &ERR_NOT_ACCEPTABLE,
                                         "the node must keep an owner", b.data);
        buf_free(&b);
        return;
    }
    if (strcmp(status, "bad-state") == 0) {
        (void)stanza_reply_error(&call->s->link, call->req, &ERR_NOT_ACCEPTABLE,
                                 "invalid subscription state");
        return;
    }
    if (pubsub_reply_status(call->s, call->req, status))
        return;
    log_info("node %s: %s changed by %s", call->node, call->jid, call->req->from_bare);
    (void)stanza_reply_result(&call->s->link, call->req, NULL);
    for (int i = 1; i < PQntuples(res); i++) {
        if (db_is_null(res, i, 0)) /* a subscription state changed */
            pubsub_send_subscription_state(call->s, call->node, db_value(res, i, 1),
                                           db_value(res, i, 2));
        else if (strcmp(db_value(res, i, 0), "affiliation") == 0)
            send_affiliation_notice(call->s, call->node, db_value(res, i, 1),
                                    db_value(res, i, 2));
    }
}

/* Whether jid is one of the newline-separated JIDs collected so far. */
static bool jid_listed(const struct buf *jids, const char *jid)
{
    size_t n = strlen(jid);
    for (const char *p = jids->data; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len == n && memcmp(p, jid, n) == 0)
            return true;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return false;
}

/*
 * Collects the (jid, value) pairs of the <subscription/> or
 * <affiliation/> children into two newline-separated lists, and for
 * subscriptions their SubIDs into a third (empty lines where absent).
 * Returns 0 or -1 after answering.
 */
static int collect_entries(struct server *s, struct iq_request **reqp, const struct xnode *el,
                           bool subscriptions, struct buf *jids, struct buf *values,
                           struct buf *subids)
{
    const char *child = subscriptions ? "subscription" : "affiliation";
    int count = 0;
    for (const struct xnode *c = xnode_child(el, child, NS_PUBSUB_OWNER); c;
         c = xnode_next(c, child, NS_PUBSUB_OWNER)) {
        const char *jid = xnode_attr(c, "jid");
        const char *value = xnode_attr(c, subscriptions ? "subscription" : "affiliation");
        const char *subid = subscriptions ? xnode_attr(c, "subid") : NULL;
        char *norm = jid ? (subscriptions ? jid_normalize(jid) : jid_bare(jid)) : NULL;
        const char *why = NULL;
        if (norm == NULL)
            why = "missing or invalid jid";
        else if (value == NULL)
            why = "missing value";
        else if (subscriptions ? strcmp(value, "subscribed") != 0 && strcmp(value, "none") != 0
                               : !in_list(affiliations, value))
            why = "unsupported value";
        else if (subid && strchr(subid, '\n'))
            why = "invalid subid";
        else if (!subscriptions && jid_listed(jids, norm))
            why = "several entries for one JID"; /* §8.9.2.4 */
        else if (++count > s->cfg->max_items_per_request)
            why = "too many entries";
        if (why) {
            free(norm);
            pubsub_reply_error(s, *reqp, &ERR_BAD_REQUEST, why);
            *reqp = NULL;
            return -1;
        }
        if (count > 1) {
            buf_puts(jids, "\n");
            buf_puts(values, "\n");
            if (subscriptions)
                buf_puts(subids, "\n");
        }
        buf_puts(jids, norm);
        buf_puts(values, value);
        if (subid)
            buf_puts(subids, subid);
        free(norm);
    }
    if (count == 0) {
        pubsub_reply_error(s, *reqp, &ERR_BAD_REQUEST, "no entries");
        *reqp = NULL;
        return -1;
    }
    return 0;
}

void pubsub_owner_list(struct server *s, struct iq_request *req, const struct xnode *el,
                       bool subscriptions)
{
    const char *node = pubsub_require_node(s, &req, el);
    if (node == NULL)
        return;
    if (!req->is_set) {
        char limit[24];
        char *after = NULL;
        bool asked = false;
        if (list_page(s, &req, el, subscriptions, limit, sizeof limit, &after, &asked) != 0)
            return;
        struct pubsub_call *call = pubsub_call_new(
            s, req, node, subscriptions ? node_subscriptions_done : node_affiliations_done);
        call->extra = asked ? &rsm_asked : NULL;
        const char *params[] = {call->node, req->from_bare, limit, after};
        pubsub_call_submit(call, subscriptions ? DB_NODE_SUBSCRIPTIONS : DB_NODE_AFFILIATIONS, 4,
                           params);
        free(after);
        return;
    }
    struct buf jids = BUF_INIT, values = BUF_INIT, subids = BUF_INIT;
    if (collect_entries(s, &req, el, subscriptions, &jids, &values, &subids) != 0) {
        buf_free(&jids);
        buf_free(&values);
        buf_free(&subids);
        return;
    }
    struct pubsub_call *call = pubsub_call_new(s, req, node, modify_done);
    call->jid = xstrdup(subscriptions ? "subscriptions" : "affiliations");
    const char *params[] = {call->node, req->from_bare, jids.data, values.data,
                            subids.data ? subids.data : ""};
    pubsub_call_submit(call, subscriptions ? DB_MODIFY_SUBSCRIPTIONS : DB_MODIFY_AFFILIATIONS,
                       subscriptions ? 5 : 4, params);
    buf_free(&jids);
    buf_free(&values);
    buf_free(&subids);
}
