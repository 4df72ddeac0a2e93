/*
 * stanza.h - IQ requests and their replies.
 *
 * An iq_request is the part of an incoming IQ that outlives the parse
 * (ids and addresses, copied).  Replies are built here with the exact
 * error shapes of RFC 6120 §8.3 and XEP-0060 (condition plus the
 * http://jabber.org/protocol/pubsub#errors child).
 */
#ifndef PUBSUBD_STANZA_H
#define PUBSUBD_STANZA_H

#include <stdbool.h>

#include "buf.h"
#include "component.h"
#include "xnode.h"

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_OWNER "http://jabber.org/protocol/pubsub#owner"
#define NS_PUBSUB_EVENT "http://jabber.org/protocol/pubsub#event"
#define NS_PUBSUB_ERRORS "http://jabber.org/protocol/pubsub#errors"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_PING "urn:xmpp:ping"
#define NS_VERSION "jabber:iq:version"

struct iq_request {
    char *id;
    char *from;      /* as stamped by the server */
    char *from_bare; /* normalised bare JID of the sender */
    char *to;
    bool is_set;
    bool no_reply;   /* not an IQ (a message carrying a form): never answered */
    uint64_t received_ms;
};

/* An XMPP error: type, RFC 6120 condition, optional XEP-0060 condition
 * and, for <unsupported/>, its feature. */
struct xmpp_error {
    const char *type;
    const char *condition;
    const char *pubsub_condition;
    const char *feature;
};

/* Copies what the reply needs.  Returns NULL when 'from' or 'id' is
 * missing or invalid (such an IQ cannot be answered).  Free with
 * iq_request_free(). */
struct iq_request *iq_request_new(const struct xnode *iq);
void iq_request_free(struct iq_request *req);

/* Sends <iq type='result'> with payload (may be NULL).  Returns the
 * link_send status. */
int stanza_reply_result(struct link *l, const struct iq_request *req,
                        const char *payload);
/* Sends an <iq type='error'>, logging it with the request's context. */
int stanza_reply_error(struct link *l, const struct iq_request *req,
                       const struct xmpp_error *err, const char *text);
/* The same with payload (the request's child, echoed as XEP-0060 §8.9.2.4
 * requires) before <error/>.  Borrows payload. */
int stanza_reply_error_payload(struct link *l, const struct iq_request *req,
                               const struct xmpp_error *err, const char *text,
                               const char *payload);

/* Common errors. */
extern const struct xmpp_error ERR_BAD_REQUEST;
extern const struct xmpp_error ERR_SERVICE_UNAVAILABLE;
extern const struct xmpp_error ERR_FEATURE_NOT_IMPLEMENTED;
extern const struct xmpp_error ERR_ITEM_NOT_FOUND;
extern const struct xmpp_error ERR_FORBIDDEN;
extern const struct xmpp_error ERR_INTERNAL;
extern const struct xmpp_error ERR_WAIT; /* storage unavailable */
extern const struct xmpp_error ERR_NODEID_REQUIRED;

#endif
