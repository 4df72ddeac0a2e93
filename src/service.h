/*
 * service.h - routes each stanza from the component link to its handler.
 */
#ifndef PUBSUBD_SERVICE_H
#define PUBSUBD_SERVICE_H

#include "server.h"
#include "xml_stream.h"

void service_handle_stanza(struct server *s, struct stanza *st);

#endif
