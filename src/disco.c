/*
 * disco.c - what the service says about itself.
 *
 * The feature list is exactly what the test suite proves; nothing is
 * advertised ahead of its implementation.
 */
#include "disco.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "pubsub.h"

static const char *const service_features[] = {
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_PING,
    NS_VERSION,
    NS_PUBSUB,
    NS_PUBSUB "#config-node",
    NS_PUBSUB "#create-and-configure",
    NS_PUBSUB "#create-nodes",
    NS_PUBSUB "#instant-nodes",
    NS_PUBSUB "#delete-nodes",
    NS_PUBSUB "#publish",
    NS_PUBSUB "#publish-options",
    NS_PUBSUB "#purge-nodes",
    NS_PUBSUB "#item-ids",
    NS_PUBSUB "#persistent-items",
    NS_PUBSUB "#retract-items",
    NS_PUBSUB "#retrieve-default",
    NS_PUBSUB "#retrieve-items",
    NS_PUBSUB "#subscribe",
    NS_PUBSUB "#access-open",
    NS_PUBSUB "#access-whitelist",
    NS_PUBSUB "#manage-subscriptions",
    NS_PUBSUB "#modify-affiliations",
    NS_PUBSUB "#member-affiliation",
    NS_PUBSUB "#outcast-affiliation",
    NS_PUBSUB "#publisher-affiliation",
    NS_PUBSUB "#publish-only-affiliation",
    NS_PUBSUB "#retrieve-affiliations",
    NS_PUBSUB "#retrieve-subscriptions",
};

void disco_info(struct server *s, struct iq_request *req, const struct xnode *query)
{
    if (req->is_set) {
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, NULL);
        return;
    }
    const char *node = xnode_attr(query, "node");
    if (node) {
        pubsub_disco_node_info(s, req, node);
        return;
    }
    struct buf b = BUF_INIT;
    buf_puts(&b, "<query xmlns='" NS_DISCO_INFO "'>"
                 "<identity category='pubsub' type='service' name='pubsubd'/>");
    for (size_t i = 0; i < ARRAY_LEN(service_features); i++) {
        buf_puts(&b, "<feature var='");
        buf_puts(&b, service_features[i]);
        buf_puts(&b, "'/>");
    }
    buf_puts(&b, "</query>");
    (void)stanza_reply_result(&s->link, req, b.data);
    buf_free(&b);
    iq_request_free(req);
}

static void disco_items_done(struct pubsub_call *call, const PGresult *res)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "<query xmlns='" NS_DISCO_ITEMS "'>");
    for (int i = 0; i < PQntuples(res); i++) {
        buf_puts(&b, "<item jid='");
        buf_put_escaped(&b, call->s->cfg->component_jid);
        buf_puts(&b, "' node='");
        buf_put_escaped(&b, db_value(res, i, 0));
        buf_puts(&b, "'/>");
    }
    buf_puts(&b, "</query>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

void disco_items(struct server *s, struct iq_request *req, const struct xnode *query)
{
    if (req->is_set) {
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, NULL);
        return;
    }
    if (xnode_attr(query, "node")) {
        /* Items of a node (§5.5) come with result set management. */
        struct xmpp_error err = {"cancel", "feature-not-implemented", NULL, NULL};
        pubsub_reply_error(s, req, &err, "listing a node's items is not supported yet");
        return;
    }
    struct pubsub_call *call = pubsub_call_new(s, req, NULL, disco_items_done);
    char max[24];
    snprintf(max, sizeof max, "%d", s->cfg->max_items_per_request);
    const char *params[] = {max};
    pubsub_call_submit(call, DB_LIST_NODES, 1, params);
}

void disco_ping(struct server *s, struct iq_request *req)
{
    (void)stanza_reply_result(&s->link, req, NULL);
    iq_request_free(req);
}

void disco_version(struct server *s, struct iq_request *req)
{
    (void)stanza_reply_result(&s->link, req,
                              "<query xmlns='" NS_VERSION "'><name>pubsubd</name><version>"
                              PACKAGE_VERSION "</version></query>");
    iq_request_free(req);
}
