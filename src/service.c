/*
 * service.c - stanza routing.
 *
 * IQ get/set go to their handler by payload namespace; IQ result/error are
 * answers to our own pings (the dispatcher's barrier); messages and
 * presence are never answered (no loops), bounced notifications are
 * reported to the dispatcher.
 */
#include "service.h"

#include <string.h>

#include "disco.h"
#include "jid.h"
#include "dispatcher.h"
#include "log.h"
#include "mam.h"
#include "commands.h"
#include "pubsub.h"
#include "redelivery.h"
#include "stanza.h"

static void service_handle_iq(struct server *s, struct stanza *st)
{
    const struct xnode *iq = st->el;
    const char *type = xnode_attr(iq, "type");
    const char *id = xnode_attr(iq, "id");
    if (type && (strcmp(type, "result") == 0 || strcmp(type, "error") == 0)) {
        /* Only the server's own answer is a barrier: a client could
         * otherwise confirm a batch the server never took. */
        const char *from = xnode_attr(iq, "from");
        char *bare = from ? jid_bare(from) : NULL;
        if (id && bare && strcmp(bare, config_barrier_jid(s->cfg)) == 0)
            dispatcher_on_iq_reply(s->dispatcher, id, strcmp(type, "result") == 0);
        free(bare);
        return;
    }
    if (type == NULL || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)) {
        log_info("iq %s from %s: invalid type, ignored", id ? id : "-",
                 xnode_attr(iq, "from") ? xnode_attr(iq, "from") : "-");
        return;
    }
    struct iq_request *req = iq_request_new(iq);
    if (req == NULL) {
        log_info("iq without id, from or to: ignored");
        return;
    }
    log_debug("iq %s from %s: %s", req->id, req->from, type);
    if (s->stopping) {
        pubsub_reply_error(s, req, &ERR_WAIT, "service shutting down");
        return;
    }
    const struct xnode *payload = xnode_child(iq, NULL, NULL);
    if (payload == NULL || xnode_next(payload, NULL, NULL) != NULL) {
        pubsub_reply_error(s, req, &ERR_BAD_REQUEST, "an IQ has exactly one payload");
        return;
    }
    const char *ns = xnode_ns(payload);
    const char *name = xnode_local_name(payload);
    if (strcmp(ns, NS_PUBSUB) == 0 && strcmp(name, "pubsub") == 0)
        pubsub_handle_iq(s, req, st, payload, false);
    else if (strcmp(ns, NS_PUBSUB_OWNER) == 0 && strcmp(name, "pubsub") == 0)
        pubsub_handle_iq(s, req, st, payload, true);
    else if (strcmp(ns, NS_DISCO_INFO) == 0 && strcmp(name, "query") == 0)
        disco_info(s, req, payload);
    else if (strcmp(ns, NS_DISCO_ITEMS) == 0 && strcmp(name, "query") == 0)
        disco_items(s, req, payload);
    else if (strcmp(ns, NS_PING) == 0 && strcmp(name, "ping") == 0 && !req->is_set)
        disco_ping(s, req);
    else if (strcmp(ns, NS_VERSION) == 0 && strcmp(name, "query") == 0 && !req->is_set)
        disco_version(s, req);
    else if (strcmp(ns, NS_MAM) == 0 && strcmp(name, "query") == 0)
        mam_handle(s, req, payload);
    else if (strcmp(ns, NS_COMMANDS) == 0 && strcmp(name, "command") == 0)
        commands_execute(s, req, payload);
    else
        pubsub_reply_error(s, req, &ERR_SERVICE_UNAVAILABLE, NULL);
}

void service_handle_stanza(struct server *s, struct stanza *st)
{
    const char *name = st->el->name;
    if (strcmp(name, "iq") == 0) {
        service_handle_iq(s, st);
        return;
    }
    if (strcmp(name, "message") == 0) {
        const char *type = xnode_attr(st->el, "type");
        const char *id = xnode_attr(st->el, "id");
        const struct xnode *x = xnode_child(st->el, "x", "jabber:x:data");
        if (x && (type == NULL || strcmp(type, "error") != 0) && !s->stopping) {
            pubsub_authorization_answer(s, st->el, x); /* an owner's answer (§8.6) */
            return;
        }
        if (type && strcmp(type, "error") == 0 && id) {
            const struct xnode *err = xnode_child(st->el, "error", NULL);
            const struct xnode *cond = err ? xnode_child(err, NULL, NS_STANZAS) : NULL;
            redelivery_on_bounce(s, id, xnode_attr(st->el, "from"),
                                 cond ? xnode_local_name(cond) : NULL);
        }
        return;
    }
    /* presence and anything else: never answered */
}
