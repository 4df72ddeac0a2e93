/*
 * commands.h - XEP-0050 ad-hoc commands for node owners: "dead-letters"
 * lists a node's dead letters, "redrive" retries them.
 */
#ifndef PUBSUBD_COMMANDS_H
#define PUBSUBD_COMMANDS_H

#include "server.h"
#include "stanza.h"

#define NS_COMMANDS "http://jabber.org/protocol/commands"

/* disco#items on node NS_COMMANDS: the command list.  Takes req. */
void commands_list(struct server *s, struct iq_request *req);
/* An IQ set with <command/>.  Takes req. */
void commands_execute(struct server *s, struct iq_request *req, const struct xnode *command);

#endif
