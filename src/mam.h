/*
 * mam.h - XEP-0442 (XEP-0313 on pubsub nodes): querying a node's archive
 * by time and by id, paged, with stable ids (the items' seqs).
 */
#ifndef PUBSUBD_MAM_H
#define PUBSUBD_MAM_H

#include "server.h"
#include "stanza.h"

#define NS_MAM "urn:xmpp:mam:2"

/* <query xmlns='urn:xmpp:mam:2'/> (get: the form; set: a query).
 * Takes ownership of req. */
void mam_handle(struct server *s, struct iq_request *req, const struct xnode *query);

#endif
