/*
 * node_config.h - the node configuration options of XEP-0060 §8.2 (the
 * pubsub#node_config form): one table with each field's column, type,
 * allowed values and default, used to build the form, validate what is
 * submitted (configuration, create-and-configure, publish-options) and
 * produce the JSON the SQL functions take.
 */
#ifndef PUBSUBD_NODE_CONFIG_H
#define PUBSUBD_NODE_CONFIG_H

#include <libpq-fe.h>

#include "buf.h"
#include "config.h"
#include "forms.h"

#define NS_NODE_CONFIG "http://jabber.org/protocol/pubsub#node_config"
#define NS_PUBLISH_OPTIONS "http://jabber.org/protocol/pubsub#publish-options"

enum node_config_status {
    NODE_CONFIG_OK = 0,
    NODE_CONFIG_INVALID = -1,     /* a value of the wrong type or out of range */
    NODE_CONFIG_UNSUPPORTED = -2, /* a valid value pubsubd does not implement */
    NODE_CONFIG_UNKNOWN = -3,     /* a field that is not a node option */
};

/*
 * Validates the submitted form f and appends to json an object with the
 * columns it sets (typed JSON values).  Returns NODE_CONFIG_OK or an error
 * with *bad_var set to the offending field (borrowed from f).
 */
int node_config_from_form(const struct config *cfg, const struct form *f, struct buf *json,
                          const char **bad_var) MUSTCHECK;
/* Appends the complete default configuration as a JSON object. */
void node_config_defaults_json(const struct config *cfg, struct buf *json);
/* Appends a pubsub#node_config form (type form) for row `row` of a result
 * holding node_config columns; res NULL: the defaults. */
void node_config_form(const struct config *cfg, const PGresult *res, int row, struct buf *out);

#endif
