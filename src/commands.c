/*
 * commands.c - XEP-0050 ad-hoc commands (single stage: the first execute
 * returns a form asking for the node, submitting it completes).  The
 * commands are stateless: the session id is only echoed.
 */
#include "commands.h"

#include <stdio.h>
#include <string.h>

#include "forms.h"
#include "ids.h"
#include "jid.h"
#include "pubsub.h"

#define NODE_GET_PENDING "http://jabber.org/protocol/pubsub#get-pending"
#define NS_SUBSCRIBE_AUTHORIZATION "http://jabber.org/protocol/pubsub#subscribe_authorization"

static const struct {
    const char *node;
    const char *name;
} commands[] = {
    {"dead-letters", "List a node's dead letters"},
    {"redrive", "Re-drive a node's dead letters"},
    {NODE_GET_PENDING, "Get pending subscription requests"},
};

static const struct xmpp_error ERR_MALFORMED = {"modify", "bad-request", NULL, NULL};

void commands_list(struct server *s, struct iq_request *req)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "<query xmlns='" NS_DISCO_ITEMS "' node='" NS_COMMANDS "'>");
    for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
        buf_puts(&b, "<item jid='");
        buf_put_escaped(&b, s->cfg->component_jid);
        buf_puts(&b, "' node='");
        buf_put_escaped(&b, commands[i].node);
        buf_puts(&b, "' name='");
        buf_put_escaped(&b, commands[i].name);
        buf_puts(&b, "'/>");
    }
    buf_puts(&b, "</query>");
    (void)stanza_reply_result(&s->link, req, b.data);
    buf_free(&b);
    iq_request_free(req);
}

/* <command node sessionid status> opening (the caller closes it). */
static void command_open(struct buf *b, const char *node, const char *sessionid, const char *status)
{
    buf_puts(b, "<command xmlns='" NS_COMMANDS "' node='");
    buf_put_escaped(b, node);
    buf_puts(b, "' sessionid='");
    buf_put_escaped(b, sessionid);
    buf_puts(b, "' status='");
    buf_puts(b, status);
    buf_puts(b, "'>");
}

static void dead_letters_done(struct pubsub_call *call, const PGresult *res)
{
    if (PQntuples(res) == 0 || pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    struct buf b = BUF_INIT;
    command_open(&b, "dead-letters", call->jid, "completed");
    buf_puts(&b, "<x xmlns='" NS_DATA "' type='result'><title>Dead letters of ");
    buf_put_escaped(&b, call->node);
    buf_puts(&b, "</title><reported><field var='seq'/><field var='jid'/><field var='attempts'/>"
                 "<field var='error'/><field var='item'/></reported>");
    static const char *const vars[] = {"seq", "jid", "attempts", "error", "item"};
    for (int i = 1; i < PQntuples(res); i++) {
        buf_puts(&b, "<item>");
        for (int col = 1; col <= 5; col++) {
            buf_printf(&b, "<field var='%s'><value>", vars[col - 1]);
            buf_put_escaped(&b, db_value(res, i, col));
            buf_puts(&b, "</value></field>");
        }
        buf_puts(&b, "</item>");
    }
    buf_puts(&b, "</x></command>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

static void redrive_done(struct pubsub_call *call, const PGresult *res)
{
    if (pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    struct buf b = BUF_INIT;
    command_open(&b, "redrive", call->jid, "completed");
    buf_printf(&b, "<note type='info'>%s dead letters re-driven</note></command>",
               db_value(res, 0, 1));
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

static void command_ask_node(struct server *s, struct iq_request *req, const char *node)
{
    char sid[17];
    if (ids_random_hex(sid, 8) != 0) {
        pubsub_reply_error(s, req, &ERR_INTERNAL, "no randomness");
        return;
    }
    struct buf b = BUF_INIT;
    command_open(&b, node, sid, "executing");
    buf_puts(&b, "<actions execute='complete'><complete/></actions>");
    form_open_titled(&b, "form", NULL, "Which node?", NULL);
    buf_puts(&b, "<field var='node' type='text-single' label='Node'><required/></field>");
    form_close(&b);
    buf_puts(&b, "</command>");
    (void)stanza_reply_result(&s->link, req, b.data);
    buf_free(&b);
    iq_request_free(req);
}

/* get-pending, step 1: the nodes with pending requests as a form. */
static void pending_nodes_done(struct pubsub_call *call, const PGresult *res)
{
    if (PQntuples(res) == 0 || pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    char sid[17];
    if (ids_random_hex(sid, 8) != 0)
        snprintf(sid, sizeof sid, "pending");
    struct buf b = BUF_INIT;
    command_open(&b, NODE_GET_PENDING, sid, "executing");
    buf_puts(&b, "<actions execute='complete'><complete/></actions>");
    form_open(&b, "form", NS_SUBSCRIBE_AUTHORIZATION);
    buf_puts(&b, "<field type='list-single' var='pubsub#node'>");
    for (int i = 1; i < PQntuples(res); i++) {
        buf_puts(&b, "<option><value>");
        buf_put_escaped(&b, db_value(res, i, 1));
        buf_puts(&b, "</value></option>");
    }
    buf_puts(&b, "</field>");
    form_close(&b);
    buf_puts(&b, "</command>");
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

/* get-pending, step 2: one approval form per pending request of the node,
 * sent to the requesting owner. */
static void pending_requests_done(struct pubsub_call *call, const PGresult *res)
{
    if (PQntuples(res) == 0 || pubsub_reply_status(call->s, call->req, db_value(res, 0, 0)))
        return;
    for (int i = 1; i < PQntuples(res); i++)
        pubsub_send_approval_request(call->s, call->req->from, call->node, db_value(res, i, 2),
                                     db_value(res, i, 3));
    struct buf b = BUF_INIT;
    command_open(&b, NODE_GET_PENDING, call->jid, "completed");
    buf_printf(&b, "<note type='info'>%d pending requests sent</note></command>",
               PQntuples(res) - 1);
    (void)stanza_reply_result(&call->s->link, call->req, b.data);
    buf_free(&b);
}

static void get_pending(struct server *s, struct iq_request *req, const struct xnode *command)
{
    const struct xnode *x = xnode_child(command, "x", NS_DATA);
    if (x == NULL) {
        struct pubsub_call *call = pubsub_call_new(s, req, NULL, pending_nodes_done);
        const char *params[] = {req->from_bare, NULL};
        pubsub_call_submit(call, DB_PENDING, 2, params);
        return;
    }
    struct form f;
    const struct form_field *field = NULL;
    if (form_parse(x, &f) == 0)
        field = form_field(&f, "pubsub#node");
    const char *node = field && field->nvalues == 1 ? field->values[0] : NULL;
    if (node == NULL || !node_id_is_valid(node, (size_t)s->cfg->max_node_id_bytes)) {
        form_free(&f);
        pubsub_reply_error(s, req, &ERR_MALFORMED, "a node is required");
        return;
    }
    const char *sessionid = xnode_attr(command, "sessionid");
    struct pubsub_call *call = pubsub_call_new(s, req, node, pending_requests_done);
    call->jid = xstrdup(sessionid ? sessionid : "");
    form_free(&f);
    const char *params[] = {call->req->from_bare, call->node};
    pubsub_call_submit(call, DB_PENDING, 2, params);
}

void commands_execute(struct server *s, struct iq_request *req, const struct xnode *command)
{
    const char *node = xnode_attr(command, "node");
    const char *action = xnode_attr(command, "action");
    const char *sessionid = xnode_attr(command, "sessionid");
    bool known = false;
    for (size_t i = 0; node && i < ARRAY_LEN(commands); i++)
        known = known || strcmp(commands[i].node, node) == 0;
    if (!req->is_set || !known) {
        pubsub_reply_error(s, req, known ? &ERR_BAD_REQUEST : &ERR_ITEM_NOT_FOUND, NULL);
        return;
    }
    if (action && strcmp(action, "cancel") == 0) {
        struct buf b = BUF_INIT;
        command_open(&b, node, sessionid ? sessionid : "", "canceled");
        buf_puts(&b, "</command>");
        (void)stanza_reply_result(&s->link, req, b.data);
        buf_free(&b);
        iq_request_free(req);
        return;
    }
    if (action && strcmp(action, "execute") != 0 && strcmp(action, "complete") != 0) {
        pubsub_reply_error(s, req, &ERR_MALFORMED, "unsupported action");
        return;
    }
    if (strcmp(node, NODE_GET_PENDING) == 0) {
        get_pending(s, req, command);
        return;
    }
    const struct xnode *x = xnode_child(command, "x", NS_DATA);
    if (x == NULL) {
        command_ask_node(s, req, node);
        return;
    }
    struct form f;
    const struct form_field *field = NULL;
    if (form_parse(x, &f) == 0)
        field = form_field(&f, "node");
    const char *target = field && field->nvalues == 1 ? field->values[0] : NULL;
    if (target == NULL || !node_id_is_valid(target, (size_t)s->cfg->max_node_id_bytes)) {
        form_free(&f);
        pubsub_reply_error(s, req, &ERR_MALFORMED, "a node is required");
        return;
    }
    bool list = strcmp(node, "dead-letters") == 0;
    struct pubsub_call *call = pubsub_call_new(s, req, target, list ? dead_letters_done : redrive_done);
    call->jid = xstrdup(sessionid ? sessionid : "");
    form_free(&f);
    char limit[24];
    snprintf(limit, sizeof limit, "%d", s->cfg->max_items_per_request);
    if (list) {
        const char *params[] = {call->node, call->req->from_bare, limit};
        pubsub_call_submit(call, DB_DEAD_LETTERS, 3, params);
    } else {
        const char *params[] = {call->node, call->req->from_bare};
        pubsub_call_submit(call, DB_REDRIVE, 2, params);
    }
}
