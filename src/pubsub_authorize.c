/*
 * pubsub_authorize.c - the authorize access model: subscription requests
 * sent to the owners as data forms (§8.6.1), the owners' answers
 * (§8.6.2), the subscriber's notification (§8.6.3) and the get-pending
 * command (§8.7, in commands.c).
 *
 * Approval forms and approval notifications are sent directly, not
 * through the outbox: a lost request can be asked again with get-pending,
 * and the subscriber can see its state with a subscriptions request.
 */
#include <stdio.h>
#include <string.h>

#include "forms.h"
#include "ids.h"
#include "jid.h"
#include "log.h"
#include "pubsub.h"

#define NS_SUBSCRIBE_AUTHORIZATION "http://jabber.org/protocol/pubsub#subscribe_authorization"

void pubsub_send_approval_request(struct server *s, const char *owner, const char *node,
                                  const char *subscriber, const char *subid)
{
    char id[17];
    if (ids_random_hex(id, 8) != 0)
        snprintf(id, sizeof id, "approve");
    struct buf b = BUF_INIT;
    buf_puts(&b, "<message from='");
    buf_put_escaped(&b, s->cfg->component_jid);
    buf_puts(&b, "' to='");
    buf_put_escaped(&b, owner);
    buf_printf(&b, "' id='pa-%s'>", id);
    form_open_titled(&b, "form", NS_SUBSCRIBE_AUTHORIZATION, "PubSub subscriber request",
                     "To approve this entity's subscription request, submit the form with "
                     "pubsub#allow true; to deny it, false.");
    form_add_field(&b, "pubsub#subid", "hidden", NULL, subid);
    form_add_field(&b, "pubsub#node", "text-single", "Node ID", node);
    form_add_field(&b, "pubsub#subscriber_jid", "jid-single", "Subscriber Address", subscriber);
    form_add_field(&b, "pubsub#allow", "boolean",
                   "Allow this JID to subscribe to this pubsub node?", "false");
    form_close(&b);
    buf_puts(&b, "</message>");
    if (link_send(&s->link, b.data, b.len) != PS_OK)
        log_warn("node %s: approval request for %s to %s not sent: link down or full", node,
                 subscriber, owner);
    buf_free(&b);
}

void pubsub_send_approval_requests(struct server *s, const char *owners, const char *node,
                                   const char *subscriber, const char *subid)
{
    while (owners && *owners) {
        const char *nl = strchr(owners, '\n');
        size_t len = nl ? (size_t)(nl - owners) : strlen(owners);
        char *owner = xstrndup(owners, len);
        pubsub_send_approval_request(s, owner, node, subscriber, subid);
        free(owner);
        owners += len + (nl ? 1 : 0);
    }
}

/* <message to><event><subscription node jid subscription [subid]/></event>:
 * a subscription's state, for its subscriber (§8.6.3) or the node's
 * owners (pubsub#notify_sub, §8.8.4).  Borrows everything. */
static void send_subscription_notice(struct server *s, const char *to, const char *node,
                                     const char *jid, const char *state, const char *subid)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "<message from='");
    buf_put_escaped(&b, s->cfg->component_jid);
    buf_puts(&b, "' to='");
    buf_put_escaped(&b, to);
    buf_puts(&b, "'><event xmlns='" NS_PUBSUB_EVENT "'><subscription node='");
    buf_put_escaped(&b, node);
    buf_puts(&b, "' jid='");
    buf_put_escaped(&b, jid);
    buf_puts(&b, "' subscription='");
    buf_put_escaped(&b, state);
    if (subid && *subid) {
        buf_puts(&b, "' subid='");
        buf_put_escaped(&b, subid);
    }
    buf_puts(&b, "'/></event></message>");
    if (link_send(&s->link, b.data, b.len) != PS_OK)
        log_warn("node %s: subscription notification to %s not sent", node, to);
    buf_free(&b);
}

void pubsub_send_subscription_state(struct server *s, const char *node, const char *jid,
                                    const char *state)
{
    send_subscription_notice(s, jid, node, jid, state, NULL);
}

#define OWNER_NOTICES_BATCH 100

static void owner_notices_cb(void *arg, const PGresult *res, const char *error)
{
    struct server *s = arg;
    s->owner_notices_taking = false;
    if (res == NULL || !db_ok(res)) {
        log_warn("owner notifications: could not take them: %s", res ? db_error(res) : error);
        return;
    }
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++)
        send_subscription_notice(s, db_value(res, i, 0), db_value(res, i, 1), db_value(res, i, 2),
                                 db_value(res, i, 4), db_value(res, i, 3));
    if (rows >= OWNER_NOTICES_BATCH)
        pubsub_owner_notices_take(s); /* more may wait */
}

void pubsub_owner_notices_take(struct server *s)
{
    if (s->owner_notices_taking || s->stopping || !link_is_ready(&s->link))
        return;
    char limit[16];
    snprintf(limit, sizeof limit, "%d", OWNER_NOTICES_BATCH);
    const char *params[] = {limit};
    if (db_pool_submit(&s->pool, "notices", DB_TAKE_OWNER_NOTICES, 1, params, owner_notices_cb, s) ==
        PS_OK)
        s->owner_notices_taking = true;
}

static void pubsub_authorize_done(struct pubsub_call *call, const PGresult *res)
{
    const char *status = db_value(res, 0, 0);
    if (strcmp(status, "ok") != 0) {
        log_info("node %s: subscription answer from %s refused: %s", call->node,
                 call->req->from_bare, status);
        return;
    }
    const char *jid = db_value(res, 0, 1);
    const char *state = db_value(res, 0, 2);
    log_info("node %s: %s's subscription %s by %s", call->node, jid,
             strcmp(state, "subscribed") == 0 ? "approved" : "denied", call->req->from_bare);
    send_subscription_notice(call->s, jid, call->node, jid, state, NULL);
}

/* An owner's <message> with a submitted subscribe_authorization form.
 * Messages are never answered with errors (no loops): problems are
 * logged. */
void pubsub_authorization_answer(struct server *s, const struct xnode *message,
                                 const struct xnode *x)
{
    const char *from = xnode_attr(message, "from");
    char *bare = from ? jid_bare(from) : NULL;
    struct form f = {0};
    if (bare == NULL || form_parse(x, &f) != 0 || strcmp(f.type, "submit") != 0 ||
        f.form_type == NULL || strcmp(f.form_type, NS_SUBSCRIBE_AUTHORIZATION) != 0) {
        free(bare);
        form_free(&f);
        log_info("message with a data form that is not a subscription answer: ignored");
        return;
    }
    const struct form_field *node = form_field(&f, "pubsub#node");
    const struct form_field *allow = form_field(&f, "pubsub#allow");
    const struct form_field *subid = form_field(&f, "pubsub#subid");
    const struct form_field *jid = form_field(&f, "pubsub#subscriber_jid");
    bool yes = false;
    if (node == NULL || node->nvalues != 1 || allow == NULL || allow->nvalues != 1 ||
        form_parse_boolean(allow->values[0], &yes) != 0 ||
        !node_id_is_valid(node->values[0], (size_t)s->cfg->max_node_id_bytes) ||
        (subid == NULL && jid == NULL)) {
        log_info("subscription answer from %s: incomplete form ignored", bare);
        free(bare);
        form_free(&f);
        return;
    }
    char *norm = jid && jid->nvalues == 1 ? jid_normalize(jid->values[0]) : NULL;
    /* A fake request so the call machinery can carry the answer. */
    struct iq_request *req = xcalloc(1, sizeof *req);
    req->id = xstrdup("authorization");
    req->from = xstrdup(from);
    req->from_bare = bare;
    req->to = xstrdup(s->cfg->component_jid);
    req->no_reply = true;
    struct pubsub_call *call = pubsub_call_new(s, req, node->values[0], pubsub_authorize_done);
    const char *params[] = {call->node, bare, subid && subid->nvalues == 1 ? subid->values[0] : NULL,
                            norm, yes ? "t" : "f"};
    pubsub_call_submit(call, DB_AUTHORIZE, 5, params);
    free(norm);
    form_free(&f);
}
