/*
 * mam.c - archive queries on nodes (XEP-0442).
 *
 * Each result is a <message> to the requester carrying the item as the
 * notification it was (XEP-0297 forwarded, XEP-0203 delay); the IQ result
 * follows with <fin/> and the result set.  Results go out in order on the
 * one component stream, before the IQ result.
 */
#include "mam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forms.h"
#include "jid.h"
#include "log.h"
#include "pubsub.h"
#include "rsm.h"

struct mam_query {
    char *queryid;
    bool reverse; /* rows came newest first (last page / before) */
    long max;
};

static void mam_query_free(void *p)
{
    struct mam_query *q = p;
    free(q->queryid);
    free(q);
}

static const struct xmpp_error ERR_MAM_BAD = {"modify", "bad-request", NULL, NULL};

/* An archive id (after-id, before-id, an RSM after/before): the decimal seq of the item. */
static bool mam_is_seq(const char *s)
{
    return *s && strlen(s) < 19 && strspn(s, "0123456789") == strlen(s);
}

static void mam_send_result(struct pubsub_call *call, const struct mam_query *q, const PGresult *res,
                            int row)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "<message from='");
    buf_put_escaped(&b, call->s->cfg->component_jid);
    buf_puts(&b, "' to='");
    buf_put_escaped(&b, call->req->from);
    buf_puts(&b, "'><result xmlns='" NS_MAM "'");
    if (q->queryid) {
        buf_puts(&b, " queryid='");
        buf_put_escaped(&b, q->queryid);
        buf_puts(&b, "'");
    }
    buf_puts(&b, " id='");
    buf_puts(&b, db_value(res, row, 3));
    buf_puts(&b, "'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='");
    buf_puts(&b, db_value(res, row, 4));
    buf_puts(&b, "'/><message xmlns='jabber:client'><event xmlns='" NS_PUBSUB_EVENT "'><items node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "'><item id='");
    buf_put_escaped(&b, db_value(res, row, 1));
    if (db_is_null(res, row, 2)) {
        buf_puts(&b, "'/>");
    } else {
        buf_puts(&b, "'>");
        buf_puts(&b, db_value(res, row, 2));
        buf_puts(&b, "</item>");
    }
    buf_puts(&b, "</items></event></message></forwarded></result></message>");
    if (link_send(&call->s->link, b.data, b.len) != PS_OK)
        log_info("iq %s: archive result not written: link down or full", call->req->id);
    buf_free(&b);
}

static void mam_done(struct pubsub_call *call, const PGresult *res)
{
    struct mam_query *q = call->extra;
    int rows = PQntuples(res);
    const char *status = rows ? db_value(res, 0, 0) : "error";
    /* XEP-0313 §13.1: an archive the requester may not read is forbidden,
     * whatever the access model (XEP-0060's closed-node etc. are for item
     * retrieval). */
    if (strcmp(status, "closed-node") == 0 || strcmp(status, "reader-not-subscribed") == 0)
        status = "forbidden";
    if (strcmp(status, "no-such-id") == 0) {
        (void)stanza_reply_error(&call->s->link, call->req, &ERR_ITEM_NOT_FOUND,
                                 "no such archive id");
        return;
    }
    if (rows == 0 || pubsub_reply_status(call->s, call->req, status))
        return;
    int found = rows - 1;
    bool complete = found <= q->max;
    int n = complete ? found : (int)q->max;
    /* Rows 1..n hold the page; newest first when reverse. */
    int first = q->reverse ? n : 1, last = q->reverse ? 1 : n, step = q->reverse ? -1 : 1;
    for (int i = first; n > 0; i += step) {
        mam_send_result(call, q, res, i);
        if (i == last)
            break;
    }
    struct buf b = BUF_INIT;
    buf_printf(&b, "<fin xmlns='" NS_MAM "' complete='%s'>", complete ? "true" : "false");
    rsm_reply(&b, n ? db_value(res, first, 3) : NULL, n ? db_value(res, last, 3) : NULL,
              db_int(res, 0, 5), db_int(res, 0, 6));
    buf_puts(&b, "</fin>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

static void mam_form(struct server *s, struct iq_request *req)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "<query xmlns='" NS_MAM "'>");
    form_open(&b, "form", NS_MAM);
    form_add_field(&b, "start", "text-single", NULL, NULL);
    form_add_field(&b, "end", "text-single", NULL, NULL);
    form_add_field(&b, "after-id", "text-single", NULL, NULL);
    form_add_field(&b, "before-id", "text-single", NULL, NULL);
    form_close(&b);
    buf_puts(&b, "</query>");
    (void)stanza_reply_result(&s->link, req, b.data);
    buf_free(&b);
    iq_request_free(req);
}

void mam_handle(struct server *s, struct iq_request *req, const struct xnode *query)
{
    const char *node = xnode_attr(query, "node");
    if (!req->is_set) {
        mam_form(s, req);
        return;
    }
    if (node == NULL) {
        /* Only node archives live here (XEP-0442), not a user archive. */
        pubsub_reply_error(s, req, &ERR_FEATURE_NOT_IMPLEMENTED, "query a node's archive");
        return;
    }
    if (!node_id_is_valid(node, (size_t)s->cfg->max_node_id_bytes)) {
        pubsub_reply_error(s, req, &ERR_ITEM_NOT_FOUND, NULL);
        return;
    }
    const char *start = NULL, *end = NULL, *after = NULL, *before = NULL;
    const char *bad = NULL, *unknown = NULL;
    struct form f = {0};
    const struct xnode *x = xnode_child(query, "x", NS_DATA);
    if (x && form_parse(x, &f) != 0)
        bad = "malformed data form";
    for (int i = 0; bad == NULL && unknown == NULL && i < f.nfields; i++) {
        const struct form_field *fd = &f.fields[i];
        const char *v = fd->nvalues == 1 ? fd->values[0] : NULL;
        if (strcmp(fd->var, "FORM_TYPE") == 0)
            continue;
        if (strcmp(fd->var, "start") != 0 && strcmp(fd->var, "end") != 0 &&
            strcmp(fd->var, "after-id") != 0 && strcmp(fd->var, "before-id") != 0)
            unknown = fd->var; /* XEP-0313 §4.1.1.6: feature-not-implemented */
        else if (v == NULL)
            bad = fd->var;
        else if (strcmp(fd->var, "start") == 0 && form_is_datetime(v))
            start = v;
        else if (strcmp(fd->var, "end") == 0 && form_is_datetime(v))
            end = v;
        else if (strcmp(fd->var, "after-id") == 0 && mam_is_seq(v))
            after = v;
        else if (strcmp(fd->var, "before-id") == 0 && mam_is_seq(v))
            before = v;
        else if (strcmp(fd->var, "after-id") == 0 || strcmp(fd->var, "before-id") == 0)
            bad = "unknown archive id";
        else
            bad = fd->var;
    }
    if (unknown) {
        /* unknown points into f: answer before freeing it. */
        pubsub_reply_error(s, req, &ERR_FEATURE_NOT_IMPLEMENTED, unknown);
        form_free(&f);
        return;
    }
    struct rsm_request rsm;
    if (bad == NULL && rsm_parse(query, &rsm) != 0)
        bad = "malformed result set request";
    else if (bad)
        memset(&rsm, 0, sizeof rsm);
    if (bad == NULL && pubsub_refuse_rsm_index(s, req, &rsm)) {
        rsm_free(&rsm);
        form_free(&f);
        return;
    }
    if (bad == NULL && ((rsm.after && !mam_is_seq(rsm.after)) ||
                        (rsm.before && rsm.before[0] && !mam_is_seq(rsm.before))))
        bad = "unknown archive id";
    if (bad) {
        /* bad may point into f: answer before freeing it. */
        bool unknown_id = strcmp(bad, "unknown archive id") == 0;
        pubsub_reply_error(s, req, unknown_id ? &ERR_ITEM_NOT_FOUND : &ERR_MAM_BAD, bad);
        form_free(&f);
        rsm_free(&rsm);
        return;
    }
    /* after-id/before-id filter the result set; RSM <after/>/<before/>
     * page through it, and only RSM <before/> pages backwards (XEP-0313
     * §12). */
    const char *rsm_after = rsm.after;
    const char *rsm_before = rsm.before && rsm.before[0] ? rsm.before : NULL;
    bool last = rsm.has_before && rsm.before[0] == '\0';
    struct mam_query *q = xcalloc(1, sizeof *q);
    q->max = s->cfg->max_items_per_request;
    if (rsm.max >= 0 && rsm.max < q->max)
        q->max = rsm.max;
    q->reverse = last || rsm_before != NULL;
    const char *queryid = xnode_attr(query, "queryid");
    q->queryid = queryid ? xstrdup(queryid) : NULL;
    char maxs[24];
    snprintf(maxs, sizeof maxs, "%ld", q->max);
    struct pubsub_call *call = pubsub_call_new(s, req, node, mam_done);
    call->extra = q;
    call->free_extra = mam_query_free;
    const char *params[] = {call->node, req->from_bare, start, end, after, before,
                            rsm_after, rsm_before, last ? "t" : "f", maxs};
    pubsub_call_submit(call, DB_MAM_QUERY, 10, params);
    form_free(&f);
    rsm_free(&rsm);
}
