/*
 * pubsub_items.c - retrieve items (§6.5): all, max_items, or by id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jid.h"
#include "pubsub.h"
#include "rsm.h"


/* Appends the <item/> of row i (columns item_id 1, payload 3). */
static void pubsub_item_xml(struct buf *b, const PGresult *res, int i)
{
    buf_puts(b, "<item id='");
    buf_put_escaped(b, db_value(res, i, 1));
    buf_puts(b, "'");
    if (db_is_null(res, i, 3)) {
        buf_puts(b, "/>");
        return;
    }
    buf_puts(b, ">");
    buf_puts(b, db_value(res, i, 3));
    buf_puts(b, "</item>");
}

/* The items of a retrieval; with `paged`, the result set follows (first
 * and last are seqs: stable positions a consumer can resume after). */
static void pubsub_items_reply(struct pubsub_call *call, const PGresult *res, bool paged)
{
    int rows = PQntuples(res);
    if (rows == 0) {
        (void)stanza_reply_error(&call->s->link, call->req, &ERR_INTERNAL, NULL);
        return;
    }
    if (pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    struct buf b = BUF_INIT;
    buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB "'><items node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "'>");
    for (int i = 1; i < rows; i++)
        pubsub_item_xml(&b, res, i);
    buf_puts(&b, "</items>");
    if (paged)
        rsm_reply(&b, rows > 1 ? db_value(res, 1, 4) : NULL,
                  rows > 1 ? db_value(res, rows - 1, 4) : NULL, db_int(res, 0, 5),
                  db_int(res, 0, 6));
    buf_puts(&b, "</pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

static void pubsub_items_page_done(struct pubsub_call *call, const PGresult *res)
{
    pubsub_items_reply(call, res, true);
}

/* A position from a result set request: a seq we issued. */
static bool parse_seq(const char *s, char *out, size_t n)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0)
        return false;
    snprintf(out, n, "%lld", v);
    return true;
}

/* Items retrieval with XEP-0059 paging.  Takes ownership of req. */
static void pubsub_items_paged(struct server *s, struct iq_request *req, const char *node,
                               const struct rsm_request *rsm)
{
    if (pubsub_refuse_rsm_index(s, req, rsm))
        return;
    long max = s->cfg->max_items_per_request;
    if (rsm->max >= 0 && rsm->max < max)
        max = rsm->max;
    char maxs[24], after[24], before[24];
    snprintf(maxs, sizeof maxs, "%ld", max);
    if ((rsm->after && !parse_seq(rsm->after, after, sizeof after)) ||
        (rsm->before && rsm->before[0] && !parse_seq(rsm->before, before, sizeof before))) {
        pubsub_reply_error(s, req, &ERR_ITEM_NOT_FOUND, "unknown result set position");
        return;
    }
    bool last = rsm->has_before && rsm->before[0] == '\0';
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_items_page_done);
    const char *params[] = {call->node, req->from_bare, maxs, rsm->after ? after : NULL,
                            rsm->before && rsm->before[0] ? before : NULL, last ? "t" : "f"};
    pubsub_call_submit(call, DB_GET_ITEMS_PAGE, 6, params);
}

static void pubsub_items_done(struct pubsub_call *call, const PGresult *res)
{
    pubsub_items_reply(call, res, false);
}

void pubsub_items(struct server *s, struct iq_request *req, const struct xnode *items,
                  const struct xnode *pubsub)
{
    const char *node = pubsub_require_node(s, &req, items);
    if (node == NULL)
        return;
    struct rsm_request rsm;
    if (rsm_parse(pubsub, &rsm) != 0) {
        rsm_free(&rsm);
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "malformed result set request");
        return;
    }
    if (rsm.present && xnode_child(items, "item", NS_PUBSUB) == NULL) {
        pubsub_items_paged(s, req, node, &rsm);
        rsm_free(&rsm);
        return;
    }
    rsm_free(&rsm);
    long max = s->cfg->max_items_per_request;
    const char *max_attr = xnode_attr(items, "max_items");
    if (max_attr) {
        char *end;
        long v = strtol(max_attr, &end, 10);
        if (*max_attr == '\0' || *end != '\0' || v < 1) {
            pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "invalid max_items");
            return;
        }
        if (v < max)
            max = v;
    }
    /* Requested ids, newline separated (ids cannot hold control chars). */
    struct buf ids = BUF_INIT;
    int nids = 0;
    for (const struct xnode *it = xnode_child(items, "item", NS_PUBSUB); it;
         it = xnode_next(it, "item", NS_PUBSUB)) {
        const char *id = xnode_attr(it, "id");
        if (id == NULL || !item_id_is_valid(id, (size_t)s->cfg->max_item_id_bytes)) {
            buf_free(&ids);
            pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "item without a valid id");
            return;
        }
        if (nids++ > 0)
            buf_puts(&ids, "\n");
        buf_puts(&ids, id);
        if (nids > s->cfg->max_items_per_request) {
            buf_free(&ids);
            pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "too many item ids");
            return;
        }
    }
    char maxs[24];
    snprintf(maxs, sizeof maxs, "%ld", max);
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_items_done);
    const char *params[] = {call->node, req->from_bare, maxs, nids ? ids.data : NULL};
    pubsub_call_submit(call, DB_GET_ITEMS, 4, params);
    buf_free(&ids);
}
