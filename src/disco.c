/*
 * disco.c - what the service says about itself.
 *
 * The feature list is exactly what the test suite proves; nothing is
 * advertised ahead of its implementation.
 */
#include "disco.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "commands.h"
#include "jid.h"
#include "pubsub.h"
#include "rsm.h"

static const char *const service_features[] = {
    NS_COMMANDS,
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_PING,
    NS_VERSION,
    NS_PUBSUB,
    NS_RSM,
    NS_PUBSUB "#rsm",
    NS_PUBSUB "#collections",
    NS_PUBSUB "#config-node",
    NS_PUBSUB "#config-node-max",
    NS_PUBSUB "#create-and-configure",
    NS_PUBSUB "#create-nodes",
    NS_PUBSUB "#instant-nodes",
    NS_PUBSUB "#delete-nodes",
    NS_PUBSUB "#publish",
    NS_PUBSUB "#publish-options",
    NS_PUBSUB "#purge-nodes",
    NS_PUBSUB "#item-ids",
    NS_PUBSUB "#multi-items",
    NS_PUBSUB "#persistent-items",
    NS_PUBSUB "#delete-items",
    NS_PUBSUB "#retract-items",
    NS_PUBSUB "#meta-data",
    NS_PUBSUB "#retrieve-default",
    NS_PUBSUB "#retrieve-default-sub",
    NS_PUBSUB "#leased-subscription",
    NS_PUBSUB "#retrieve-items",
    NS_PUBSUB "#subscribe",
    NS_PUBSUB "#subscription-options",
    NS_PUBSUB "#multi-subscribe",
    NS_PUBSUB "#subscription-notifications",
    NS_PUBSUB "#access-authorize",
    NS_PUBSUB "#access-open",
    NS_PUBSUB "#get-pending",
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
    if (s->cfg->auto_create_nodes)
        buf_puts(&b, "<feature var='" NS_PUBSUB "#auto-create'/>");
    buf_puts(&b, "</query>");
    (void)stanza_reply_result(&s->link, req, b.data);
    buf_free(&b);
    iq_request_free(req);
}

static void disco_items_done(struct pubsub_call *call, const PGresult *res)
{
    int rows = PQntuples(res);
    struct buf b = BUF_INIT;
    buf_puts(&b, "<query xmlns='" NS_DISCO_ITEMS "'>");
    for (int i = 0; i < rows; i++) {
        buf_puts(&b, "<item jid='");
        buf_put_escaped(&b, call->s->cfg->component_jid);
        buf_puts(&b, "' node='");
        buf_put_escaped(&b, db_value(res, i, 0));
        buf_puts(&b, "'/>");
    }
    if (call->item_id) /* a result set was asked for */
        rsm_reply(&b, rows ? db_value(res, 0, 0) : NULL, rows ? db_value(res, rows - 1, 0) : NULL,
                  -1, -1);
    buf_puts(&b, "</query>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

/* The items of a node (§5.5): one <item/> per item, named by its id. */
static void disco_node_items_done(struct pubsub_call *call, const PGresult *res)
{
    int rows = PQntuples(res);
    if (rows == 0 || pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    struct buf b = BUF_INIT;
    buf_puts(&b, "<query xmlns='" NS_DISCO_ITEMS "' node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "'>");
    for (int i = 1; i < rows; i++) {
        buf_puts(&b, "<item jid='");
        buf_put_escaped(&b, call->s->cfg->component_jid);
        buf_puts(&b, "' name='");
        buf_put_escaped(&b, db_value(res, i, 1));
        buf_puts(&b, "'/>");
    }
    if (call->item_id)
        rsm_reply(&b, rows > 1 ? db_value(res, 1, 4) : NULL,
                  rows > 1 ? db_value(res, rows - 1, 4) : NULL, db_int(res, 0, 5),
                  db_int(res, 0, 6));
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
    struct rsm_request rsm;
    int rc = rsm_parse(query, &rsm);
    if (rc == 0 && pubsub_refuse_rsm_index(s, req, &rsm)) {
        rsm_free(&rsm);
        return;
    }
    if (rc != 0 || (rsm.has_before && rsm.before[0])) {
        rsm_free(&rsm);
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "unsupported result set request");
        return;
    }
    long max = s->cfg->max_items_per_request;
    if (rsm.max >= 0 && rsm.max < max)
        max = rsm.max;
    char maxs[24];
    snprintf(maxs, sizeof maxs, "%ld", max);
    const char *node = xnode_attr(query, "node");
    if (node && strcmp(node, NS_COMMANDS) == 0) {
        rsm_free(&rsm);
        commands_list(s, req);
        return;
    }
    struct pubsub_call *call;
    if (node) {
        if (!node_id_is_valid(node, (size_t)s->cfg->max_node_id_bytes)) {
            rsm_free(&rsm);
            pubsub_reply_error(s, req, &ERR_ITEM_NOT_FOUND, NULL);
            return;
        }
        char *end = NULL;
        long long after = rsm.after ? strtoll(rsm.after, &end, 10) : 0;
        if (rsm.after && (*end != '\0' || after < 0)) {
            rsm_free(&rsm);
            pubsub_reply_error(s, req, &ERR_ITEM_NOT_FOUND, "unknown result set position");
            return;
        }
        char afters[24];
        snprintf(afters, sizeof afters, "%lld", after);
        call = pubsub_call_new(s, req, node, disco_node_items_done);
        const char *params[] = {call->node, req->from_bare, maxs, rsm.after ? afters : NULL,
                                NULL, rsm.has_before ? "t" : "f"};
        call->item_id = rsm.present ? xstrdup("rsm") : NULL;
        pubsub_call_submit(call, DB_GET_ITEMS_PAGE, 6, params);
    } else {
        call = pubsub_call_new(s, req, NULL, disco_items_done);
        call->item_id = rsm.present ? xstrdup("rsm") : NULL;
        const char *params[] = {maxs, rsm.after};
        pubsub_call_submit(call, DB_LIST_NODES, 2, params);
    }
    rsm_free(&rsm);
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
