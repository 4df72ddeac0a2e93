/*
 * pubsub_publish.c - publish (§7.1) and retract (§7.2).
 *
 * The payload travels as the exact bytes it arrived in when it stands
 * alone (declares its namespace), otherwise re-serialised with the
 * namespace declarations it inherited.
 */
#include <stdio.h>
#include <string.h>

#include "dispatcher.h"
#include "ids.h"
#include "jid.h"
#include "log.h"
#include "node_config.h"
#include "pubsub.h"

static const struct xmpp_error ERR_ITEM_REQUIRED = {"modify", "bad-request", "item-required", NULL};
static const struct xmpp_error ERR_PAYLOAD_REQUIRED = {"modify", "bad-request", "payload-required",
                                                       NULL};
static const struct xmpp_error ERR_INVALID_PAYLOAD = {"modify", "bad-request", "invalid-payload",
                                                      NULL};
static const struct xmpp_error ERR_PAYLOAD_TOO_BIG = {"modify", "not-acceptable", "payload-too-big",
                                                      NULL};

/* The one payload element of item, or NULL with *err set. */
static const struct xnode *publish_payload(const struct xnode *item, const struct xmpp_error **err)
{
    int count = xnode_count_elements(item);
    if (count == 0) {
        *err = &ERR_PAYLOAD_REQUIRED;
        return NULL;
    }
    if (count > 1 || xnode_has_text(item)) {
        *err = &ERR_INVALID_PAYLOAD;
        return NULL;
    }
    return xnode_child(item, NULL, NULL);
}

static void pubsub_publish_done(struct pubsub_call *call, const PGresult *res)
{
    if (pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    long long seq = db_int(res, 0, 1);
    long long node_id = db_int(res, 0, 2);
    log_debug("node %s: item %s published by %s as seq %lld", call->node, call->item_id,
              call->req->from_bare, seq);
    struct buf b = BUF_INIT;
    buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB "'><publish node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "'><item id='");
    buf_put_escaped(&b, call->item_id);
    buf_puts(&b, "'/></publish></pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
    dispatcher_offer(call->s->dispatcher, node_id, seq, call->item_id, call->extra,
                     db_is_null(res, 0, 3) ? NULL : db_value(res, 0, 3));
}

/* A publish whose result did not come (timeout, lost connection) may still
 * have committed; its NOTIFY is one this process ignores (its own), so
 * the dispatcher looks at every node it holds. */
static void pubsub_publish_failed(struct pubsub_call *call)
{
    dispatcher_wake_any(call->s->dispatcher);
}

void pubsub_publish(struct server *s, struct iq_request *req, const struct stanza *st,
                    const struct xnode *publish, const struct xnode *pubsub)
{
    const char *node = pubsub_require_node(s, &req, publish);
    if (node == NULL)
        return;
    const struct xnode *item = xnode_child(publish, "item", NS_PUBSUB);
    if (item == NULL) {
        pubsub_reply_error(s, req, &ERR_ITEM_REQUIRED, NULL);
        return;
    }
    if (xnode_next(item, NULL, NULL) != NULL ||
        xnode_count_elements(publish) != 1) {
        pubsub_reply_error(s, req, &ERR_INVALID_PAYLOAD, "one item per publish");
        return;
    }
    const struct xmpp_error *err = NULL;
    const struct xnode *payload = publish_payload(item, &err);
    if (payload == NULL) {
        pubsub_reply_error(s, req, err, NULL);
        return;
    }
    if (!xnode_prefixes_bound(payload)) {
        pubsub_reply_error(s, req, &ERR_INVALID_PAYLOAD, "undeclared namespace prefix");
        return;
    }
    const char *item_id = xnode_attr(item, "id");
    if (item_id && !item_id_is_valid(item_id, (size_t)s->cfg->max_item_id_bytes)) {
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "invalid ItemID");
        return;
    }
    struct buf text = BUF_INIT;
    if (!st->has_comment && xnode_is_self_contained(payload)) {
        size_t len;
        const char *raw = stanza_raw_of(st, payload, &len);
        buf_append(&text, raw, len);
    } else {
        xnode_serialize_standalone(payload, &text);
    }
    if (text.len > (size_t)s->cfg->max_payload_bytes) {
        log_info("iq %s from %s node %s: payload of %zu bytes over max_payload_bytes %d",
                 req->id, req->from, node, text.len, s->cfg->max_payload_bytes);
        buf_free(&text);
        pubsub_reply_error(s, req, &ERR_PAYLOAD_TOO_BIG, NULL);
        return;
    }
    /* Publish-options (§7.1.5): preconditions on the node configuration. */
    struct buf pre = BUF_INIT;
    const struct xnode *options = xnode_child(pubsub, "publish-options", NS_PUBSUB);
    if (options && pubsub_parse_config_form(s, &req, options, NS_PUBLISH_OPTIONS, &pre) < 0) {
        buf_free(&pre);
        buf_free(&text);
        return;
    }
    char *generated = item_id ? NULL : ids_new_item_id();
    if (item_id == NULL && generated == NULL) {
        buf_free(&pre);
        buf_free(&text);
        pubsub_reply_error(s, req, &ERR_INTERNAL, "no randomness");
        return;
    }
    /* Auto-create (§7.1.4): a missing node is created with the defaults
     * and the preconditions as its configuration. */
    struct buf create = BUF_INIT;
    if (s->cfg->auto_create_nodes)
        node_config_defaults_json(s->cfg, &create);
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_publish_done);
    call->failed = pubsub_publish_failed;
    call->item_id = generated ? generated : xstrdup(item_id);
    const char *params[] = {call->node, call->item_id, text.data, req->from_bare,
                            xnode_ns(payload), pre.len ? pre.data : NULL,
                            create.len ? create.data : NULL};
    /* The payload as stored, for the dispatcher's hand-off. */
    call->extra = text.data ? buf_steal(&text) : NULL;
    call->free_extra = free;
    pubsub_call_submit(call, DB_PUBLISH, 7, params);
    buf_free(&create);
    buf_free(&pre);
}

static void pubsub_retract_done(struct pubsub_call *call, const PGresult *res)
{
    if (pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    log_debug("node %s: item %s retracted by %s", call->node, call->item_id, call->req->from_bare);
    /* pubsub.retract's NOTIFY wakes the node's dispatcher (a general wake-up
     * here would scan every node). */
    (void)stanza_reply_result(&call->s->link, call->req, NULL);
}

void pubsub_retract(struct server *s, struct iq_request *req, const struct xnode *retract)
{
    const char *node = pubsub_require_node(s, &req, retract);
    if (node == NULL)
        return;
    const struct xnode *item = xnode_child(retract, "item", NS_PUBSUB);
    const char *item_id = item ? xnode_attr(item, "id") : NULL;
    if (item_id == NULL || *item_id == '\0') {
        pubsub_reply_error(s, req, &ERR_ITEM_REQUIRED, NULL);
        return;
    }
    if (xnode_next(item, "item", NS_PUBSUB) != NULL) {
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "one item per retract");
        return;
    }
    if (!item_id_is_valid(item_id, (size_t)s->cfg->max_item_id_bytes)) {
        pubsub_reply_error(s, req, &ERR_ITEM_NOT_FOUND, NULL);
        return;
    }
    const char *notify = xnode_attr(retract, "notify");
    bool do_notify = notify && (strcmp(notify, "true") == 0 || strcmp(notify, "1") == 0);
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_retract_done);
    call->item_id = xstrdup(item_id);
    const char *params[] = {call->node, call->item_id, req->from_bare, do_notify ? "t" : "f"};
    pubsub_call_submit(call, DB_RETRACT, 4, params);
}
