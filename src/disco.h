/*
 * disco.h - XEP-0030 service discovery, XEP-0199 ping, XEP-0092 version.
 */
#ifndef PUBSUBD_DISCO_H
#define PUBSUBD_DISCO_H

#include "server.h"
#include "stanza.h"

/* Each takes ownership of req. */
void disco_info(struct server *s, struct iq_request *req, const struct xnode *query);
void disco_items(struct server *s, struct iq_request *req, const struct xnode *query);
void disco_ping(struct server *s, struct iq_request *req);
void disco_version(struct server *s, struct iq_request *req);

#endif
