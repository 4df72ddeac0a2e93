/*
 * pubsub_subscribe.c - subscribe (§6.1) and unsubscribe (§6.2).
 *
 * A subscription is a Binding that starts at the node's current position:
 * the subscriber hears of items published after it, never before.
 */
#include <stdio.h>
#include <string.h>

#include "forms.h"
#include "jid.h"
#include "log.h"
#include "pubsub.h"

#define NS_SUBSCRIBE_OPTIONS "http://jabber.org/protocol/pubsub#subscribe_options"

static const struct xmpp_error ERR_INVALID_JID = {"modify", "bad-request", "invalid-jid", NULL};
static const struct xmpp_error ERR_JID_REQUIRED = {"modify", "bad-request", "jid-required", NULL};
static const struct xmpp_error ERR_INVALID_OPTIONS = {"modify", "bad-request", "invalid-options",
                                                      NULL};

/* The options a subscribe-and-configure request leaves the subscription
 * with (the defaults, then the submitted fields): echoed in the result
 * (§6.3.7). */
struct sub_opts {
    bool deliver, include_body;
    char *expire, *depth;
};

static void sub_opts_free(void *p)
{
    struct sub_opts *o = p;
    free(o->expire);
    free(o->depth);
    free(o);
}

/*
 * Parses the subscription options form in `options` (§6.3) into a JSON
 * object {deliver, include_body, expire}, and into *out unless out is NULL
 * (set when 1 is returned; free with sub_opts_free).  Returns 1 (json
 * filled), 0 (no form) or -1 (answered with bad-request/invalid-options,
 * *reqp freed).
 */
static int sub_options_parse(struct server *s, struct iq_request **reqp,
                             const struct xnode *options, struct buf *json,
                             struct sub_opts **out)
{
    const struct xnode *x = options ? xnode_child(options, "x", NS_DATA) : NULL;
    if (x == NULL)
        return 0;
    struct form f;
    const char *bad = NULL;
    if (form_parse(x, &f) != 0 || strcmp(f.type, "submit") != 0 ||
        (f.form_type && strcmp(f.form_type, NS_SUBSCRIBE_OPTIONS) != 0))
        bad = "the options must be a submitted pubsub#subscribe_options form";
    struct sub_opts o = {true, false, NULL, NULL};
    buf_puts(json, "{");
    for (int i = 0; bad == NULL && i < f.nfields; i++) {
        const struct form_field *fd = &f.fields[i];
        const char *v = fd->nvalues == 1 ? fd->values[0] : NULL;
        bool b;
        if (strcmp(fd->var, "FORM_TYPE") == 0)
            continue;
        if (json->len > 1)
            buf_puts(json, ",");
        if ((strcmp(fd->var, "pubsub#deliver") == 0 ||
             strcmp(fd->var, "pubsub#include_body") == 0) &&
            v && form_parse_boolean(v, &b) == 0) {
            buf_put_json_string(json, fd->var + 7);
            buf_puts(json, b ? ":true" : ":false");
            *(strcmp(fd->var, "pubsub#deliver") == 0 ? &o.deliver : &o.include_body) = b;
        } else if (strcmp(fd->var, "pubsub#expire") == 0 && fd->nvalues <= 1 &&
                   (v == NULL || *v == '\0' || form_is_datetime(v))) {
            /* An XEP-0082 DateTime, or empty: never ("presence" is not
             * possible: pubsubd does not see presence). */
            buf_puts(json, "\"expire\":");
            buf_put_json_string(json, v ? v : "");
            free(o.expire);
            o.expire = xstrdup(v ? v : "");
        } else if (strcmp(fd->var, "pubsub#subscription_type") == 0 && v &&
                   strcmp(v, "items") == 0) {
            /* XEP-0248: only item notifications are implemented. */
            buf_puts(json, "\"subscription_type\":\"items\"");
        } else if (strcmp(fd->var, "pubsub#subscription_depth") == 0 && v &&
                   (strcmp(v, "all") == 0 || (strspn(v, "0123456789") == strlen(v) && *v &&
                                              strlen(v) < 7))) {
            buf_printf(json, "\"subscription_depth\":%s", strcmp(v, "all") == 0 ? "1000" : v);
            free(o.depth);
            o.depth = xstrdup(v);
        } else if (strcmp(fd->var, "pubsub#digest") == 0 && v &&
                   form_parse_boolean(v, &b) == 0 && !b) {
            buf_puts(json, "\"digest\":false");
        } else {
            bad = fd->var;
        }
    }
    buf_puts(json, "}");
    if (bad) {
        /* bad may point into f: answer before freeing it. */
        pubsub_reply_error(s, *reqp, &ERR_INVALID_OPTIONS, bad);
        *reqp = NULL;
        form_free(&f);
        free(o.expire);
        free(o.depth);
        return -1;
    }
    form_free(&f);
    if (out) {
        if (o.expire == NULL)
            o.expire = xstrdup("");
        if (o.depth == NULL)
            o.depth = xstrdup("1");
        *out = xmalloc(sizeof **out);
        **out = o;
    } else {
        free(o.expire);
        free(o.depth);
    }
    return 1;
}

/* Sends the node's last item to a new subscriber (send_last_published_item
 * on_sub), with an XEP-0203 delay stamped with its publication time
 * (§6.1.6).  Best effort: it is the current state, not an event; the
 * stable id matches the one the dispatcher would use. */
static void send_last_item(struct pubsub_call *call, const PGresult *res)
{
    if (db_is_null(res, 0, 6))
        return;
    struct buf b = BUF_INIT;
    buf_puts(&b, "<message from='");
    buf_put_escaped(&b, call->s->cfg->component_jid);
    buf_puts(&b, "' to='");
    buf_put_escaped(&b, call->jid);
    buf_printf(&b, "' id='ps-%s-%s-%s' type='headline'><event xmlns='" NS_PUBSUB_EVENT
                   "'><items node='", db_value(res, 0, 3), db_value(res, 0, 5),
               db_value(res, 0, 4));
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "'><item id='");
    buf_put_escaped(&b, db_value(res, 0, 6));
    buf_puts(&b, "'>");
    buf_puts(&b, db_value(res, 0, 7));
    buf_puts(&b, "</item></items></event><delay xmlns='urn:xmpp:delay' from='");
    buf_put_escaped(&b, call->s->cfg->component_jid);
    buf_puts(&b, "' stamp='");
    buf_put_escaped(&b, db_value(res, 0, 9));
    buf_puts(&b, "'/></message>");
    if (link_send(&call->s->link, b.data, b.len) != PS_OK)
        log_info("node %s: last item to %s not sent: link down or full", call->node, call->jid);
    buf_free(&b);
}

/* Common checks: node present and valid, jid present and the sender's own
 * (bare JIDs equal).  Returns the normalised jid (caller frees) or NULL
 * after answering (req freed). */
static char *subscription_target(struct server *s, struct iq_request **reqp,
                                 const struct xnode *el, const char **node,
                                 const struct xmpp_error *jid_mismatch)
{
    *node = pubsub_require_node(s, reqp, el);
    if (*node == NULL)
        return NULL;
    struct iq_request *req = *reqp;
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

static void sub_options_form(struct buf *b, const char *type, bool deliver, bool include_body,
                             const char *expire, const char *depth);

static void pubsub_subscribe_done(struct pubsub_call *call, const PGresult *res)
{
    if (strcmp(db_value(res, 0, 0), "invalid-options") == 0) {
        (void)stanza_reply_error(&call->s->link, call->req, &ERR_INVALID_OPTIONS, NULL);
        return;
    }
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
    buf_puts(&b, "'/>");
    const struct sub_opts *o = call->extra;
    if (o) { /* subscribe-and-configure: the resulting options (§6.3.7) */
        buf_puts(&b, "<options>");
        sub_options_form(&b, "result", o->deliver, o->include_body, o->expire, o->depth);
        buf_puts(&b, "</options>");
    }
    buf_puts(&b, "</pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
    if (!db_is_null(res, 0, 8)) /* a new request on an authorize node */
        pubsub_send_approval_requests(call->s, db_value(res, 0, 8), call->node, call->jid,
                                      db_value(res, 0, 1));
    send_last_item(call, res);
}

void pubsub_subscribe(struct server *s, struct iq_request *req, const struct xnode *sub,
                      const struct xnode *pubsub)
{
    const char *node;
    char *jid = subscription_target(s, &req, sub, &node, &ERR_INVALID_JID);
    if (jid == NULL)
        return;
    /* Subscribe-and-configure (§6.3.7). */
    struct buf opts = BUF_INIT;
    struct sub_opts *o = NULL;
    if (sub_options_parse(s, &req, xnode_child(pubsub, "options", NS_PUBSUB), &opts, &o) < 0) {
        free(jid);
        buf_free(&opts);
        return;
    }
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_subscribe_done);
    call->jid = jid;
    if (o) {
        call->extra = o;
        call->free_extra = sub_opts_free;
    }
    const char *params[] = {call->node, call->jid, req->from_bare, opts.len ? opts.data : NULL};
    pubsub_call_submit(call, DB_SUBSCRIBE, 4, params);
    buf_free(&opts);
}

/* ---- subscription options (§6.3) ------------------------------------------- */

/* The pubsub#subscribe_options form (type "form" or "result") with these
 * values. */
static void sub_options_form(struct buf *b, const char *type, bool deliver, bool include_body,
                             const char *expire, const char *depth)
{
    form_open(b, type, NS_SUBSCRIBE_OPTIONS);
    form_add_field(b, "pubsub#deliver", "boolean", "Enable delivery?", deliver ? "true" : "false");
    form_add_field(b, "pubsub#digest", "boolean", "Receive digest notifications?", "false");
    form_add_field(b, "pubsub#include_body", "boolean",
                   "Receive message body in addition to payload?",
                   include_body ? "true" : "false");
    form_add_field(b, "pubsub#expire", "text-single",
                   "Subscription expiry (XEP-0082 DateTime, empty: never)", expire);
    static const char *const types[] = {"items", NULL};
    form_add_list(b, "pubsub#subscription_type", "Collections: notifications about", "items",
                  types);
    form_add_field(b, "pubsub#subscription_depth", "text-single",
                   "Collections: how many levels down (or all)", depth);
    form_close(b);
}

/* Default subscription options (§6.4). */
void pubsub_default_sub_options(struct server *s, struct iq_request *req)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB "'><default>");
    sub_options_form(&b, "form", true, false, "", "1");
    buf_puts(&b, "</default></pubsub>");
    (void)stanza_reply_result(&s->link, req, b.data);
    buf_free(&b);
    iq_request_free(req);
}

static void options_get_done(struct pubsub_call *call, const PGresult *res)
{
    if (pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    struct buf b = BUF_INIT;
    buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB "'><options node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "' jid='");
    buf_put_escaped(&b, call->jid);
    buf_puts(&b, "' subid='");
    buf_put_escaped(&b, db_value(res, 0, 5));
    buf_puts(&b, "'>");
    sub_options_form(&b, "form", db_value(res, 0, 1)[0] == 't', db_value(res, 0, 2)[0] == 't',
                     db_value(res, 0, 3), db_value(res, 0, 4));
    buf_puts(&b, "</options></pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

static void options_set_done(struct pubsub_call *call, const PGresult *res)
{
    const char *status = db_value(res, 0, 0);
    if (strcmp(status, "invalid-options") == 0) {
        (void)stanza_reply_error(&call->s->link, call->req, &ERR_INVALID_OPTIONS, NULL);
        return;
    }
    if (pubsub_reply_status(call->s, call->req, status))
        return;
    (void)stanza_reply_result(&call->s->link, call->req, NULL);
}

void pubsub_options(struct server *s, struct iq_request *req, const struct xnode *options)
{
    const char *node = pubsub_require_node(s, &req, options);
    if (node == NULL)
        return;
    const char *jid = xnode_attr(options, "jid");
    char *norm = jid ? jid_normalize(jid) : NULL;
    if (norm == NULL) {
        pubsub_reply_error(s, req, jid ? &ERR_INVALID_JID : &ERR_JID_REQUIRED, NULL);
        return;
    }
    const char *subid = xnode_attr(options, "subid");
    if (subid && *subid == '\0')
        subid = NULL;
    if (!req->is_set) {
        struct pubsub_call *call = pubsub_call_new(s, req, node, options_get_done);
        call->jid = norm;
        const char *params[] = {call->node, call->jid, req->from_bare, subid};
        pubsub_call_submit(call, DB_GET_SUB_OPTIONS, 4, params);
        return;
    }
    struct buf opts = BUF_INIT;
    int rc = sub_options_parse(s, &req, options, &opts, NULL);
    if (rc <= 0) {
        if (rc == 0)
            pubsub_reply_error(s, req, &ERR_INVALID_OPTIONS, "an options form is required");
        free(norm);
        buf_free(&opts);
        return;
    }
    struct pubsub_call *call = pubsub_call_new(s, req, node, options_set_done);
    call->jid = norm;
    const char *params[] = {call->node, call->jid, req->from_bare, subid, opts.data};
    pubsub_call_submit(call, DB_SET_SUB_OPTIONS, 5, params);
    buf_free(&opts);
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
