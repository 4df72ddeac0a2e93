/*
 * pubsub_subscribe.c - subscribe (§6.1) and unsubscribe (§6.2).
 *
 * A subscription is a Binding that starts at the node's current position:
 * the subscriber hears of items published after it, never before.
 */
#include <string.h>

#include "jid.h"
#include "log.h"
#include "pubsub.h"

static const struct xmpp_error ERR_NODEID_REQUIRED = {"modify", "bad-request", "nodeid-required",
                                                      NULL};
static const struct xmpp_error ERR_INVALID_JID = {"modify", "bad-request", "invalid-jid", NULL};
static const struct xmpp_error ERR_JID_REQUIRED = {"modify", "bad-request", "jid-required", NULL};
static const struct xmpp_error ERR_SUBSCRIBE_OPTIONS = {"cancel", "feature-not-implemented",
                                                        "unsupported", "subscription-options"};

/* Common checks: node present and valid, jid present and the sender's own
 * (bare JIDs equal).  Returns the normalised jid (caller frees) or NULL
 * after answering (req freed). */
static char *subscription_target(struct server *s, struct iq_request **reqp,
                                 const struct xnode *el, const char **node,
                                 const struct xmpp_error *jid_mismatch)
{
    struct iq_request *req = *reqp;
    *node = xnode_attr(el, "node");
    if (*node == NULL || **node == '\0') {
        pubsub_reply_error(s, req, &ERR_NODEID_REQUIRED, NULL);
        *reqp = NULL;
        return NULL;
    }
    if (!node_id_is_valid(*node, (size_t)s->cfg->max_node_id_bytes)) {
        pubsub_reply_error(s, req, &ERR_ITEM_NOT_FOUND, NULL);
        *reqp = NULL;
        return NULL;
    }
    const char *jid = xnode_attr(el, "jid");
    if (jid == NULL || *jid == '\0') {
        pubsub_reply_error(s, req, &ERR_JID_REQUIRED, NULL);
        *reqp = NULL;
        return NULL;
    }
    char *norm = jid_normalize(jid);
    char *bare = norm ? jid_bare(norm) : NULL;
    bool mine = bare && strcmp(bare, req->from_bare) == 0;
    free(bare);
    if (!mine) {
        const struct xmpp_error *err = norm ? jid_mismatch : &ERR_INVALID_JID;
        free(norm);
        pubsub_reply_error(s, req, err, "the JID is not the sender's");
        *reqp = NULL;
        return NULL;
    }
    return norm;
}

static void pubsub_subscribe_done(struct pubsub_call *call, const PGresult *res)
{
    if (pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    log_info("node %s: %s subscribed", call->node, call->jid);
    struct buf b = BUF_INIT;
    buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB "'><subscription node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "' jid='");
    buf_put_escaped(&b, call->jid);
    buf_puts(&b, "' subid='");
    buf_put_escaped(&b, db_value(res, 0, 1));
    buf_puts(&b, "' subscription='");
    buf_put_escaped(&b, db_value(res, 0, 2));
    buf_puts(&b, "'/></pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

void pubsub_subscribe(struct server *s, struct iq_request *req, const struct xnode *sub,
                      const struct xnode *pubsub)
{
    const char *node;
    char *jid = subscription_target(s, &req, sub, &node, &ERR_INVALID_JID);
    if (jid == NULL)
        return;
    const struct xnode *options = xnode_child(pubsub, "options", NS_PUBSUB);
    if (options && xnode_child(options, NULL, NULL)) {
        free(jid);
        pubsub_reply_error(s, req, &ERR_SUBSCRIBE_OPTIONS, NULL);
        return;
    }
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_subscribe_done);
    call->jid = jid;
    const char *params[] = {call->node, call->jid, req->from_bare};
    pubsub_call_submit(call, DB_SUBSCRIBE, 3, params);
}

static void pubsub_unsubscribe_done(struct pubsub_call *call, const PGresult *res)
{
    if (pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    log_info("node %s: %s unsubscribed", call->node, call->jid);
    (void)stanza_reply_result(&call->s->link, call->req, NULL);
}

void pubsub_unsubscribe(struct server *s, struct iq_request *req, const struct xnode *unsub)
{
    const char *node;
    char *jid = subscription_target(s, &req, unsub, &node, &ERR_FORBIDDEN);
    if (jid == NULL)
        return;
    const char *subid = xnode_attr(unsub, "subid");
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_unsubscribe_done);
    call->jid = jid;
    const char *params[] = {call->node, call->jid, subid && *subid ? subid : NULL};
    pubsub_call_submit(call, DB_UNSUBSCRIBE, 3, params);
}
