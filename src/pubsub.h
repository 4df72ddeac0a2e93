/*
 * pubsub.h - XEP-0060 request handlers.
 *
 * Each handler validates the request, then makes one database call (one
 * round trip, one transaction) and replies from its callback, so a
 * result is only ever sent after the transaction committed.
 *   pubsub.c            routing, the database call wrapper, status mapping
 *   pubsub_node.c       create (§8.1), delete (§8.4), node disco (§5.3/5.4)
 *   pubsub_publish.c    publish (§7.1), retract (§7.2)
 *   pubsub_subscribe.c  subscribe (§6.1), unsubscribe (§6.2)
 *   pubsub_items.c      retrieve items (§6.5)
 *   pubsub_config.c     configuration (§8.2, §8.3), purge (§8.5), forms
 *   pubsub_affiliations.c  subscriptions and affiliations (§5.6, §5.7, §8.8, §8.9)
 */
#ifndef PUBSUBD_PUBSUB_H
#define PUBSUBD_PUBSUB_H

#include <libpq-fe.h>

#include "db.h"
#include "server.h"
#include "stanza.h"
#include "xml_stream.h"

/* Handles an IQ whose child is <pubsub/> (owner false) or
 * <pubsub xmlns='...#owner'/> (owner true).  Takes ownership of req. */
void pubsub_handle_iq(struct server *s, struct iq_request *req, const struct stanza *st,
                      const struct xnode *pubsub, bool owner);

/* ---- shared by the pubsub_*.c files ---- */

struct pubsub_call;
typedef void (*pubsub_done_cb)(struct pubsub_call *call, const PGresult *res);

/* One IQ waiting for its database call.  Owns every field. */
struct pubsub_call {
    struct server *s;
    struct iq_request *req;
    char *node;
    char *item_id;
    char *jid;
    void *extra;                    /* handler's own state, freed with: */
    void (*free_extra)(void *extra);
    pubsub_done_cb done;
    /* Optional: runs when the statement failed or its result did not
     * come (after the error reply). */
    void (*failed)(struct pubsub_call *call);
};

/* Takes ownership of req; node may be NULL. */
struct pubsub_call *pubsub_call_new(struct server *s, struct iq_request *req,
                                    const char *node, pubsub_done_cb done);
/* Submits the call's statement.  On any failure the IQ is answered with a
 * wait error and call freed; on success done runs later with the result
 * (only for a successful statement), then call is freed. */
void pubsub_call_submit(struct pubsub_call *call, enum db_stmt stmt, int nparams,
                        const char *const *params);
/* Answers with the XEP-0060 error that a status word from SQL names.
 * Returns false when status is "ok" (nothing sent). */
bool pubsub_reply_status(struct server *s, const struct iq_request *req, const char *status);
/* The request element's 'node' attribute, or NULL after answering
 * nodeid-required (missing) or item-not-found (not a valid NodeID); then
 * *reqp is freed and set to NULL.  Borrowed from el. */
const char *pubsub_require_node(struct server *s, struct iq_request **reqp, const struct xnode *el);
/* Answers and frees req. */
void pubsub_reply_error(struct server *s, struct iq_request *req, const struct xmpp_error *err,
                        const char *text);
struct rsm_request;
/* XEP-0059 §2.5: a page by index MAY be refused with 501, and is (pages
 * are named by stable ids).  When rsm asks for one: answers and frees req,
 * returns true (rsm stays the caller's). */
bool pubsub_refuse_rsm_index(struct server *s, struct iq_request *req,
                             const struct rsm_request *rsm);

/* Handlers (take ownership of req). */
void pubsub_create(struct server *s, struct iq_request *req, const struct xnode *create,
                   const struct xnode *pubsub);
void pubsub_delete(struct server *s, struct iq_request *req, const struct xnode *del);
void pubsub_publish(struct server *s, struct iq_request *req, const struct stanza *st,
                    const struct xnode *publish, const struct xnode *pubsub);
void pubsub_retract(struct server *s, struct iq_request *req, const struct xnode *retract);
void pubsub_subscribe(struct server *s, struct iq_request *req, const struct xnode *sub,
                      const struct xnode *pubsub);
void pubsub_unsubscribe(struct server *s, struct iq_request *req, const struct xnode *unsub);
void pubsub_items(struct server *s, struct iq_request *req, const struct xnode *items,
                  const struct xnode *pubsub);
/* Own subscriptions (§5.6) or affiliations (§5.7). */
void pubsub_own_list(struct server *s, struct iq_request *req, const struct xnode *el,
                     bool subscriptions);
/* Owner: a node's subscriptions (§8.8) or affiliations (§8.9), get or set. */
void pubsub_owner_list(struct server *s, struct iq_request *req, const struct xnode *el,
                       bool subscriptions);
/* The authorize access model (pubsub_authorize.c). */
void pubsub_send_approval_request(struct server *s, const char *owner, const char *node,
                                  const char *subscriber, const char *subid);
/* owners: newline-separated bare JIDs. */
void pubsub_send_approval_requests(struct server *s, const char *owners, const char *node,
                                   const char *subscriber, const char *subid);
/* Sends the §13.14 notification <subscription node jid subscription=state/>
 * to jid.  Borrows its arguments. */
void pubsub_send_subscription_state(struct server *s, const char *node, const char *jid,
                                    const char *state);
/* Sends the queued pubsub#notify_sub notifications (schema 024). */
void pubsub_owner_notices_take(struct server *s);
void pubsub_authorization_answer(struct server *s, const struct xnode *message,
                                 const struct xnode *x);
/* Default subscription options (§6.4). */
void pubsub_default_sub_options(struct server *s, struct iq_request *req);
/* Subscription options (§6.3), get or set. */
void pubsub_options(struct server *s, struct iq_request *req, const struct xnode *options);
void pubsub_configure(struct server *s, struct iq_request *req, const struct xnode *configure);
void pubsub_default_config(struct server *s, struct iq_request *req);
void pubsub_purge(struct server *s, struct iq_request *req, const struct xnode *purge);
/* Parses the data form child of parent (a configure or publish-options
 * element) as FORM_TYPE form_type into a JSON object of columns.  Returns
 * 1 (json filled), 0 (no form, or a cancel form) or -1 (answered with the
 * XEP's error; *reqp freed and set to NULL). */
int pubsub_parse_config_form(struct server *s, struct iq_request **reqp, const struct xnode *parent,
                             const char *form_type, struct buf *json) MUSTCHECK;
/* disco#info / disco#items with a node attribute. */
void pubsub_disco_node_info(struct server *s, struct iq_request *req, const char *node);

#endif
