/*
 * pubsub_node.c - node creation (§8.1.1 named, §8.1.2 instant), deletion
 * (§8.4) and node discovery (§5.4).
 */
#include <stdio.h>
#include <string.h>

#include "ids.h"
#include "jid.h"
#include "log.h"
#include "forms.h"
#include "node_config.h"
#include "pubsub.h"

static const struct xmpp_error ERR_NODEID_INVALID = {"modify", "not-acceptable", NULL, NULL};

static void pubsub_create_done(struct pubsub_call *call, const PGresult *res)
{
    const char *status = db_value(res, 0, 0);
    if (pubsub_reply_status(call->s, call->req, status))
        return;
    log_info("node %s: created by %s", call->node, call->req->from_bare);
    if (call->item_id == NULL) {
        /* Named node: an empty result (§8.1.1). */
        (void)stanza_reply_result(&call->s->link, call->req, NULL);
        return;
    }
    /* Instant node: tell the creator the NodeID (§8.1.2). */
    struct buf b = BUF_INIT;
    buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB "'><create node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "'/></pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

void pubsub_create(struct server *s, struct iq_request *req, const struct xnode *create,
                   const struct xnode *pubsub)
{
    const char *node = xnode_attr(create, "node");
    char *generated = NULL;
    if (node == NULL) {
        generated = ids_new_item_id();
        if (generated == NULL) {
            pubsub_reply_error(s, req, &ERR_INTERNAL, "no randomness");
            return;
        }
        node = generated;
    } else if (!node_id_is_valid(node, (size_t)s->cfg->max_node_id_bytes)) {
        pubsub_reply_error(s, req, &ERR_NODEID_INVALID,
                           "invalid NodeID");
        return;
    }
    /* Create-and-configure (§8.1.3): the submitted form changes the
     * defaults. */
    struct buf changes = BUF_INIT;
    const struct xnode *configure = xnode_child(pubsub, "configure", NS_PUBSUB);
    if (configure && xnode_attr(configure, "node") != NULL) {
        /* §8.1.3: the NodeID is the <create/> element's. */
        free(generated);
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "<configure/> must not have a node attribute");
        return;
    }
    if (configure &&
        pubsub_parse_config_form(s, &req, configure, NS_NODE_CONFIG, &changes) < 0) {
        buf_free(&changes);
        free(generated);
        return;
    }
    struct buf defaults = BUF_INIT;
    node_config_defaults_json(s->cfg, &defaults);
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_create_done);
    call->item_id = generated; /* marks an instant node */
    const char *params[] = {call->node, req->from_bare, defaults.data,
                            changes.len ? changes.data : NULL};
    pubsub_call_submit(call, DB_CREATE_NODE, 4, params);
    buf_free(&defaults);
    buf_free(&changes);
}

static void pubsub_delete_done(struct pubsub_call *call, const PGresult *res)
{
    if (pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    log_info("node %s: deleted by %s", call->node, call->req->from_bare);
    (void)stanza_reply_result(&call->s->link, call->req, NULL);
}

void pubsub_delete(struct server *s, struct iq_request *req, const struct xnode *del)
{
    const char *node = pubsub_require_node(s, &req, del);
    if (node == NULL)
        return;
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_delete_done);
    const char *params[] = {call->node, req->from_bare};
    pubsub_call_submit(call, DB_DELETE_NODE, 2, params);
}

static void meta_field(struct buf *b, const char *var, const char *value)
{
    form_add_field(b, var, NULL, NULL, value);
}

/* disco#info of a node with its meta-data form (§5.4). */
static void pubsub_node_info_done(struct pubsub_call *call, const PGresult *res)
{
    if (PQntuples(res) == 0) {
        (void)stanza_reply_error(&call->s->link, call->req, &ERR_ITEM_NOT_FOUND, NULL);
        return;
    }
    struct buf b = BUF_INIT;
    buf_puts(&b, "<query xmlns='" NS_DISCO_INFO "' node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "'><identity category='pubsub' type='");
    buf_puts(&b, strcmp(db_value(res, 0, 0), "collection") == 0 ? "collection" : "leaf");
    buf_puts(&b, "'/><feature var='" NS_PUBSUB "'/><feature var='" NS_DISCO_INFO
                 "'/><feature var='" NS_DISCO_ITEMS "'/><feature var='urn:xmpp:mam:2'/>"
                 "<feature var='urn:xmpp:mam:2#extended'/>");
    form_open(&b, "result", NS_PUBSUB "#meta-data");
    meta_field(&b, "pubsub#title", db_value(res, 0, 1));
    meta_field(&b, "pubsub#description", db_value(res, 0, 2));
    meta_field(&b, "pubsub#type", db_value(res, 0, 3));
    meta_field(&b, "pubsub#creator", db_value(res, 0, 4));
    meta_field(&b, "pubsub#creation_date", db_value(res, 0, 5));
    meta_field(&b, "pubsub#access_model", db_value(res, 0, 6));
    meta_field(&b, "pubsub#publish_model", db_value(res, 0, 7));
    meta_field(&b, "pubsub#max_items", db_value(res, 0, 9));
    meta_field(&b, "pubsub#num_subscribers", db_value(res, 0, 11));
    /* pubsub#owner is jid-multi: one value per owner. */
    buf_puts(&b, "<field var='pubsub#owner'>");
    const char *owners = db_value(res, 0, 12);
    while (*owners) {
        const char *nl = strchr(owners, '\n');
        size_t len = nl ? (size_t)(nl - owners) : strlen(owners);
        buf_puts(&b, "<value>");
        buf_put_escaped_n(&b, owners, len);
        buf_puts(&b, "</value>");
        owners += len + (nl ? 1 : 0);
    }
    buf_puts(&b, "</field>");
    form_close(&b);
    buf_puts(&b, "</query>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

void pubsub_disco_node_info(struct server *s, struct iq_request *req, const char *node)
{
    if (!node_id_is_valid(node, (size_t)s->cfg->max_node_id_bytes)) {
        pubsub_reply_error(s, req, &ERR_ITEM_NOT_FOUND, NULL);
        return;
    }
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_node_info_done);
    const char *params[] = {call->node};
    pubsub_call_submit(call, DB_NODE_INFO, 1, params);
}
