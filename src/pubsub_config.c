/*
 * pubsub_config.c - node configuration (§8.2), default configuration
 * (§8.3) and purge (§8.5); the form parsing shared with
 * create-and-configure (§8.1.3) and publish-options (§7.1.5).
 */
#include <string.h>

#include "dispatcher.h"
#include "jid.h"
#include "log.h"
#include "node_config.h"
#include "pubsub.h"

static const struct xmpp_error ERR_PRECONDITION = {"cancel", "conflict", "precondition-not-met",
                                                   NULL};
static const struct xmpp_error ERR_NOT_ACCEPTABLE = {"modify", "not-acceptable", NULL, NULL};
static const struct xmpp_error ERR_UNSUPPORTED_ACCESS = {"modify", "not-acceptable",
                                                         "unsupported-access-model", NULL};
static const struct xmpp_error ERR_PURGE_NOT_PERSISTENT = {"cancel", "feature-not-implemented",
                                                           "unsupported", "persistent-items"};

int pubsub_parse_config_form(struct server *s, struct iq_request **reqp, const struct xnode *parent,
                             const char *form_type, struct buf *json)
{
    const struct xnode *x = xnode_child(parent, "x", NS_DATA);
    if (x == NULL)
        return 0;
    struct form f;
    const struct xmpp_error *err = NULL;
    const char *text = NULL;
    char *why = NULL; /* whole field name: a cut could split a UTF-8 character */
    if (form_parse(x, &f) != 0) {
        err = &ERR_BAD_REQUEST;
        text = "malformed data form";
    } else if (strcmp(f.type, "cancel") == 0) {
        form_free(&f);
        return 0;
    } else if (strcmp(f.type, "submit") != 0) {
        err = &ERR_BAD_REQUEST;
        text = "the data form must be of type submit";
    } else if (f.form_type && strcmp(f.form_type, form_type) != 0) {
        err = &ERR_BAD_REQUEST;
        text = "wrong FORM_TYPE";
    } else {
        const char *bad = NULL;
        int rc = node_config_from_form(s->cfg, &f, json, &bad);
        if (rc != NODE_CONFIG_OK) {
            why = xasprintf("%s field %s",
                     rc == NODE_CONFIG_UNSUPPORTED ? "unsupported value in"
                     : rc == NODE_CONFIG_UNKNOWN   ? "unknown"
                                                   : "invalid value in",
                     bad);
            text = why;
            if (rc == NODE_CONFIG_UNSUPPORTED && strcmp(form_type, NS_PUBLISH_OPTIONS) == 0)
                err = &ERR_PRECONDITION; /* §7.1.5: no node can have it */
            else
                err = (rc == NODE_CONFIG_UNSUPPORTED && strcmp(bad, "pubsub#access_model") == 0)
                          ? &ERR_UNSUPPORTED_ACCESS
                          : &ERR_NOT_ACCEPTABLE;
        }
    }
    if (err) {
        pubsub_reply_error(s, *reqp, err, text);
        *reqp = NULL;
        free(why);
        form_free(&f);
        return -1;
    }
    form_free(&f);
    return 1;
}

/* ---- get / submit configuration ------------------------------------------ */

static void pubsub_get_config_done(struct pubsub_call *call, const PGresult *res)
{
    if (PQntuples(res) == 0) {
        (void)stanza_reply_error(&call->s->link, call->req, &ERR_ITEM_NOT_FOUND, NULL);
        return;
    }
    if (strcmp(db_value(res, 0, 0), "owner") != 0) {
        (void)stanza_reply_error(&call->s->link, call->req, &ERR_FORBIDDEN, NULL);
        return;
    }
    struct buf b = BUF_INIT;
    buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB_OWNER "'><configure node='");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "'>");
    node_config_form(call->s->cfg, res, 0, &b);
    buf_puts(&b, "</configure></pubsub>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

static void pubsub_configure_done(struct pubsub_call *call, const PGresult *res)
{
    if (pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    log_info("node %s: configured by %s", call->node, call->req->from_bare);
    (void)stanza_reply_result(&call->s->link, call->req, NULL);
    dispatcher_wake(call->s->dispatcher, db_int(res, 0, 1));
}

void pubsub_configure(struct server *s, struct iq_request *req, const struct xnode *configure)
{
    const char *node = pubsub_require_node(s, &req, configure);
    if (node == NULL)
        return;
    if (!req->is_set) {
        struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_get_config_done);
        const char *params[] = {call->node, req->from_bare};
        pubsub_call_submit(call, DB_GET_CONFIG, 2, params);
        return;
    }
    struct buf json = BUF_INIT;
    int rc = pubsub_parse_config_form(s, &req, configure, NS_NODE_CONFIG, &json);
    if (rc < 0) {
        buf_free(&json);
        return;
    }
    if (rc == 0 && xnode_child(configure, "x", NS_DATA) == NULL) {
        buf_free(&json);
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "a configuration form is required");
        return;
    }
    if (rc == 0) { /* cancelled */
        buf_free(&json);
        (void)stanza_reply_result(&s->link, req, NULL);
        iq_request_free(req);
        return;
    }
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_configure_done);
    const char *params[] = {call->node, req->from_bare, json.data};
    pubsub_call_submit(call, DB_CONFIGURE_NODE, 3, params);
    buf_free(&json);
}

void pubsub_default_config(struct server *s, struct iq_request *req)
{
    if (req->is_set) {
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "default needs an IQ of type get");
        return;
    }
    struct buf b = BUF_INIT;
    buf_puts(&b, "<pubsub xmlns='" NS_PUBSUB_OWNER "'><default>");
    node_config_form(s->cfg, NULL, 0, &b);
    buf_puts(&b, "</default></pubsub>");
    (void)stanza_reply_result(&s->link, req, b.data);
    buf_free(&b);
    iq_request_free(req);
}

/* ---- purge ------------------------------------------------------------------ */

static void pubsub_purge_done(struct pubsub_call *call, const PGresult *res)
{
    const char *status = db_value(res, 0, 0);
    if (strcmp(status, "not-persistent") == 0) {
        (void)stanza_reply_error(&call->s->link, call->req, &ERR_PURGE_NOT_PERSISTENT, NULL);
        return;
    }
    if (pubsub_reply_status(call->s, call->req, status))
        return;
    log_info("node %s: purged by %s", call->node, call->req->from_bare);
    (void)stanza_reply_result(&call->s->link, call->req, NULL);
    dispatcher_wake(call->s->dispatcher, db_int(res, 0, 1));
}

void pubsub_purge(struct server *s, struct iq_request *req, const struct xnode *purge)
{
    const char *node = pubsub_require_node(s, &req, purge);
    if (node == NULL)
        return;
    if (!req->is_set) {
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "purge needs an IQ of type set");
        return;
    }
    struct pubsub_call *call = pubsub_call_new(s, req, node, pubsub_purge_done);
    const char *params[] = {call->node, req->from_bare};
    pubsub_call_submit(call, DB_PURGE_NODE, 2, params);
}
