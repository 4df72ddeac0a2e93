/*
 * stanza.c - IQ request copies and reply builders.
 */
#include "stanza.h"

#include <string.h>

#include "jid.h"
#include "log.h"

const struct xmpp_error ERR_BAD_REQUEST = {"modify", "bad-request", NULL, NULL};
const struct xmpp_error ERR_SERVICE_UNAVAILABLE = {"cancel", "service-unavailable", NULL, NULL};
const struct xmpp_error ERR_FEATURE_NOT_IMPLEMENTED = {"cancel", "feature-not-implemented",
                                                       NULL, NULL};
const struct xmpp_error ERR_ITEM_NOT_FOUND = {"cancel", "item-not-found", NULL, NULL};
const struct xmpp_error ERR_FORBIDDEN = {"auth", "forbidden", NULL, NULL};
const struct xmpp_error ERR_INTERNAL = {"wait", "internal-server-error", NULL, NULL};
const struct xmpp_error ERR_WAIT = {"wait", "resource-constraint", NULL, NULL};
const struct xmpp_error ERR_NODEID_REQUIRED = {"modify", "bad-request", "nodeid-required", NULL};

struct iq_request *iq_request_new(const struct xnode *iq)
{
    const char *id = xnode_attr(iq, "id");
    const char *from = xnode_attr(iq, "from");
    const char *to = xnode_attr(iq, "to");
    const char *type = xnode_attr(iq, "type");
    if (id == NULL || from == NULL || to == NULL || type == NULL)
        return NULL;
    char *bare = jid_bare(from);
    if (bare == NULL)
        return NULL;
    struct iq_request *req = xcalloc(1, sizeof *req);
    req->id = xstrdup(id);
    req->from = xstrdup(from);
    req->from_bare = bare;
    req->to = xstrdup(to);
    req->is_set = strcmp(type, "set") == 0;
    req->received_ms = loop_now_ms();
    return req;
}

void iq_request_free(struct iq_request *req)
{
    if (req == NULL)
        return;
    free(req->id);
    free(req->from);
    free(req->from_bare);
    free(req->to);
    free(req);
}

static void stanza_open_iq(struct buf *b, const struct iq_request *req, const char *type)
{
    buf_puts(b, "<iq type='");
    buf_puts(b, type);
    buf_puts(b, "' id='");
    buf_put_escaped(b, req->id);
    buf_puts(b, "' to='");
    buf_put_escaped(b, req->from);
    buf_puts(b, "' from='");
    buf_put_escaped(b, req->to);
    buf_puts(b, "'");
}

int stanza_reply_result(struct link *l, const struct iq_request *req, const char *payload)
{
    if (req->no_reply)
        return PS_OK;
    struct buf b = BUF_INIT;
    stanza_open_iq(&b, req, "result");
    if (payload && *payload) {
        buf_puts(&b, ">");
        buf_puts(&b, payload);
        buf_puts(&b, "</iq>");
    } else {
        buf_puts(&b, "/>");
    }
    int rc = link_send(l, b.data, b.len);
    buf_free(&b);
    return rc;
}

int stanza_reply_error(struct link *l, const struct iq_request *req,
                       const struct xmpp_error *err, const char *text)
{
    return stanza_reply_error_payload(l, req, err, text, NULL);
}

int stanza_reply_error_payload(struct link *l, const struct iq_request *req,
                               const struct xmpp_error *err, const char *text,
                               const char *payload)
{
    log_info("iq %s from %s: error %s%s%s%s%s", req->id, req->from, err->condition,
             err->pubsub_condition ? "/" : "",
             err->pubsub_condition ? err->pubsub_condition : "", text ? ": " : "",
             text ? text : "");
    if (req->no_reply)
        return PS_OK;
    struct buf b = BUF_INIT;
    stanza_open_iq(&b, req, "error");
    buf_puts(&b, ">");
    if (payload)
        buf_puts(&b, payload);
    buf_puts(&b, "<error type='");
    buf_puts(&b, err->type);
    buf_puts(&b, "'><");
    buf_puts(&b, err->condition);
    buf_puts(&b, " xmlns='" NS_STANZAS "'/>");
    if (text) {
        buf_puts(&b, "<text xmlns='" NS_STANZAS "'>");
        buf_put_escaped(&b, text);
        buf_puts(&b, "</text>");
    }
    if (err->pubsub_condition) {
        buf_puts(&b, "<");
        buf_puts(&b, err->pubsub_condition);
        buf_puts(&b, " xmlns='" NS_PUBSUB_ERRORS "'");
        if (err->feature) {
            buf_puts(&b, " feature='");
            buf_put_escaped(&b, err->feature);
            buf_puts(&b, "'");
        }
        buf_puts(&b, "/>");
    }
    buf_puts(&b, "</error></iq>");
    int rc = link_send(l, b.data, b.len);
    buf_free(&b);
    return rc;
}
