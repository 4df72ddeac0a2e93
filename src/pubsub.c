/*
 * pubsub.c - routing of <pubsub/> requests, the database call wrapper and
 * the map from SQL status words to XEP-0060 errors.
 */
#include "pubsub.h"

#include <string.h>

#include "jid.h"
#include "log.h"
#include "rsm.h"

struct status_error {
    const char *status;
    struct xmpp_error err;
};

/* Every status word the SQL functions return, and its XEP-0060 error. */
static const struct status_error status_errors[] = {
    {"item-not-found", {"cancel", "item-not-found", NULL, NULL}},
    {"no-item", {"cancel", "item-not-found", NULL, NULL}},
    {"forbidden", {"auth", "forbidden", NULL, NULL}},
    {"conflict", {"cancel", "conflict", NULL, NULL}},
    {"payload-too-big", {"modify", "not-acceptable", "payload-too-big", NULL}},
    {"invalid-payload", {"modify", "bad-request", "invalid-payload", NULL}},
    {"closed-node", {"cancel", "not-allowed", "closed-node", NULL}},
    {"reader-not-subscribed", {"auth", "not-authorized", "not-subscribed", NULL}},
    {"not-pending", {"cancel", "item-not-found", NULL, NULL}},
    {"pending-subscription", {"auth", "not-authorized", "pending-subscription", NULL}},
    {"not-subscribed", {"cancel", "unexpected-request", "not-subscribed", NULL}},
    {"precondition-not-met", {"cancel", "conflict", "precondition-not-met", NULL}},
    {"collection", {"cancel", "feature-not-implemented", "unsupported", "publish"}},
    {"max-nodes-exceeded", {"cancel", "not-allowed", "max-nodes-exceeded", NULL}},
    {"too-many-subscriptions", {"wait", "policy-violation", "too-many-subscriptions", NULL}},
    {"parent-not-found", {"cancel", "item-not-found", NULL, NULL}},
    {"parent-not-collection", {"cancel", "not-allowed", "invalid-options", NULL}},
    {"cycle", {"cancel", "not-allowed", "invalid-options", NULL}},
    {"kind-change", {"modify", "not-acceptable", NULL, NULL}},
    {"invalid-subid", {"modify", "not-acceptable", "invalid-subid", NULL}},
    {"subid-required", {"modify", "bad-request", "subid-required", NULL}},
    {"not-persistent", {"cancel", "feature-not-implemented", "unsupported", "persistent-items"}},
    /* persist_items and deliver_payloads both false: an event type pubsubd
     * does not offer (schema/029, docs/protocol.md). */
    {"transient-notification", {"modify", "not-acceptable", NULL, NULL}},
};

bool pubsub_reply_status(struct server *s, const struct iq_request *req, const char *status)
{
    if (strcmp(status, "ok") == 0)
        return false;
    for (size_t i = 0; i < ARRAY_LEN(status_errors); i++) {
        if (strcmp(status_errors[i].status, status) == 0) {
            (void)stanza_reply_error(&s->link, req, &status_errors[i].err, NULL);
            return true;
        }
    }
    log_error("iq %s: unknown status \"%s\" from the database", req->id, status);
    (void)stanza_reply_error(&s->link, req, &ERR_INTERNAL, NULL);
    return true;
}

const char *pubsub_require_node(struct server *s, struct iq_request **reqp, const struct xnode *el)
{
    const char *node = xnode_attr(el, "node");
    if (node == NULL || *node == '\0') {
        pubsub_reply_error(s, *reqp, &ERR_NODEID_REQUIRED, NULL);
        *reqp = NULL;
        return NULL;
    }
    if (!node_id_is_valid(node, (size_t)s->cfg->max_node_id_bytes)) {
        /* No such node can exist. */
        pubsub_reply_error(s, *reqp, &ERR_ITEM_NOT_FOUND, NULL);
        *reqp = NULL;
        return NULL;
    }
    return node;
}

void pubsub_reply_error(struct server *s, struct iq_request *req, const struct xmpp_error *err,
                        const char *text)
{
    (void)stanza_reply_error(&s->link, req, err, text);
    iq_request_free(req);
}

struct pubsub_call *pubsub_call_new(struct server *s, struct iq_request *req,
                                    const char *node, pubsub_done_cb done)
{
    struct pubsub_call *call = xcalloc(1, sizeof *call);
    call->s = s;
    call->req = req;
    call->node = node ? xstrdup(node) : NULL;
    call->done = done;
    return call;
}

static void pubsub_call_free(struct pubsub_call *call)
{
    iq_request_free(call->req);
    free(call->node);
    free(call->item_id);
    free(call->jid);
    if (call->free_extra)
        call->free_extra(call->extra);
    free(call);
}

/* The in-flight counter of a sender (senders share a bucket by hash: a
 * collision only makes the limit stricter). */
static uint16_t *pubsub_sender_slot(struct server *s, const char *sender)
{
    unsigned h = 5381;
    for (const char *p = sender; *p; p++)
        h = h * 33 + (unsigned char)*p;
    return &s->inflight_by_sender[h % ARRAY_LEN(s->inflight_by_sender)];
}

static void pubsub_call_result(void *arg, const PGresult *res, const char *error)
{
    struct pubsub_call *call = arg;
    struct server *s = call->s;
    s->requests_in_flight--;
    uint16_t *slot = pubsub_sender_slot(s, call->req->from_bare);
    if (*slot > 0)
        (*slot)--;
    if (res == NULL) {
        (void)stanza_reply_error(&s->link, call->req, &ERR_WAIT, "storage unavailable, retry later");
        if (call->failed)
            call->failed(call);
    } else if (!db_ok(res)) {
        log_error("iq %s from %s node %s: database error %s", call->req->id, call->req->from,
                  call->node ? call->node : "-", db_error(res));
        (void)stanza_reply_error(&s->link, call->req, &ERR_INTERNAL, NULL);
        if (call->failed)
            call->failed(call);
    } else {
        call->done(call, res);
    }
    (void)error;
    pubsub_call_free(call);
}

void pubsub_call_submit(struct pubsub_call *call, enum db_stmt stmt, int nparams,
                        const char *const *params)
{
    struct server *s = call->s;
    uint16_t *slot = pubsub_sender_slot(s, call->req->from_bare);
    if (*slot >= s->cfg->max_inflight_per_sender) {
        log_info("iq %s from %s: over max_inflight_per_sender (%d)", call->req->id,
                 call->req->from, s->cfg->max_inflight_per_sender);
        (void)stanza_reply_error(&s->link, call->req, &ERR_WAIT, "too many requests in flight");
        pubsub_call_free(call);
        return;
    }
    int rc = s->stopping ? PS_ERROR
                         : db_pool_submit(&s->pool, call->node ? call->node : call->req->from_bare,
                                          stmt, nparams, params, pubsub_call_result, call);
    if (rc != PS_OK) {
        (void)stanza_reply_error(&s->link, call->req, &ERR_WAIT,
                                 s->stopping ? "service shutting down"
                                 : rc == PS_AGAIN ? "too many requests in flight"
                                                  : "storage unavailable, retry later");
        pubsub_call_free(call);
        return;
    }
    s->requests_in_flight++;
    (*slot)++;
}

bool pubsub_refuse_rsm_index(struct server *s, struct iq_request *req,
                             const struct rsm_request *rsm)
{
    if (!rsm->has_index)
        return false;
    pubsub_reply_error(s, req, &ERR_FEATURE_NOT_IMPLEMENTED, "result set index");
    return true;
}

/* A child of <pubsub/> that is not an XEP-0060 request pubsubd knows. */
static void pubsub_reply_unsupported(struct server *s, struct iq_request *req, bool owner,
                                     const char *verb)
{
    log_info("iq %s from %s: unknown %s request <%s/>", req->id, req->from,
             owner ? "pubsub#owner" : "pubsub", verb);
    pubsub_reply_error(s, req, &ERR_FEATURE_NOT_IMPLEMENTED, NULL);
}

void pubsub_handle_iq(struct server *s, struct iq_request *req, const struct stanza *st,
                      const struct xnode *pubsub, bool owner)
{
    const struct xnode *verb = xnode_child(pubsub, NULL, NULL);
    if (verb == NULL) {
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "empty pubsub request");
        return;
    }
    const char *name = xnode_local_name(verb);
    bool set = req->is_set;
    if (owner && strcmp(name, "delete") == 0) {
        if (set)
            pubsub_delete(s, req, verb);
        else
            pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "delete needs an IQ of type set");
        return;
    }
    if (owner && strcmp(name, "configure") == 0) {
        pubsub_configure(s, req, verb);
        return;
    }
    if (owner && strcmp(name, "default") == 0) {
        pubsub_default_config(s, req);
        return;
    }
    if (owner && (strcmp(name, "subscriptions") == 0 || strcmp(name, "affiliations") == 0)) {
        pubsub_owner_list(s, req, verb, strcmp(name, "subscriptions") == 0);
        return;
    }
    if (owner && strcmp(name, "purge") == 0) {
        pubsub_purge(s, req, verb);
        return;
    }
    if (owner) {
        pubsub_reply_unsupported(s, req, owner, name);
        return;
    }
    static const struct {
        const char *verb;
        bool set;
    } verbs[] = {{"create", true}, {"publish", true}, {"retract", true},
                 {"subscribe", true}, {"unsubscribe", true}, {"items", false},
                 {"subscriptions", false}, {"affiliations", false}};
    for (size_t i = 0; i < ARRAY_LEN(verbs); i++) {
        if (strcmp(verbs[i].verb, name) == 0 && verbs[i].set != set) {
            pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "wrong IQ type for this request");
            return;
        }
    }
    if (strcmp(name, "create") == 0)
        pubsub_create(s, req, verb, pubsub);
    else if (strcmp(name, "publish") == 0)
        pubsub_publish(s, req, st, verb, pubsub);
    else if (strcmp(name, "retract") == 0)
        pubsub_retract(s, req, verb);
    else if (strcmp(name, "subscribe") == 0)
        pubsub_subscribe(s, req, verb, pubsub);
    else if (strcmp(name, "unsubscribe") == 0)
        pubsub_unsubscribe(s, req, verb);
    else if (strcmp(name, "items") == 0)
        pubsub_items(s, req, verb, pubsub);
    else if (strcmp(name, "default") == 0 && !set)
        pubsub_default_sub_options(s, req);
    else if (strcmp(name, "options") == 0)
        pubsub_options(s, req, verb);
    else if (strcmp(name, "subscriptions") == 0 || strcmp(name, "affiliations") == 0)
        pubsub_own_list(s, req, verb, strcmp(name, "subscriptions") == 0);

    else
        pubsub_reply_unsupported(s, req, owner, name);
}
