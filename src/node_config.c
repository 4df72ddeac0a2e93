/*
 * node_config.c - the pubsub#node_config option table.
 *
 * Adding an option: a column in schema/, a row here.  Values that are valid
 * XEP-0060 but not implemented (access models authorize, presence, roster;
 * send_last_published_item other than never) are refused as unsupported
 * rather than stored and ignored.
 */
#include "node_config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { OPT_TEXT, OPT_BOOL, OPT_UINT, OPT_LIST };

struct node_option {
    const char *var;
    const char *column;
    enum opt_type type;
    const char *label;
    const char *def;                 /* default; NULL: from the process config */
    const char *const *choices;      /* OPT_LIST: every XEP-0060 value */
    const char *const *implemented;  /* OPT_LIST: the ones that work (NULL: all) */
};

/* Booleans whose true value is not implemented (none at present). */
static const char *const only_false_columns[] = {NULL};

static const char *const access_models[] = {"authorize", "open", "presence", "roster",
                                            "whitelist", NULL};
static const char *const access_models_implemented[] = {"open", "whitelist", "authorize", NULL};
static const char *const publish_models[] = {"publishers", "subscribers", "open", NULL};
static const char *const notification_types[] = {"normal", "headline", NULL};
static const char *const node_types[] = {"leaf", "collection", NULL};
static const char *const send_last_choices[] = {"never", "on_sub", "on_sub_and_presence", NULL};
static const char *const send_last_implemented[] = {"never", "on_sub", NULL};

static const struct node_option node_options[] = {
    {"pubsub#title", "title", OPT_TEXT, "A friendly name for the node", "", NULL, NULL},
    /* The node graph (XEP-0248): stored on the node, not in node_config. */
    {"pubsub#node_type", "node_type", OPT_LIST, "Whether the node is a leaf or a collection",
     "leaf", node_types, NULL},
    {"pubsub#collection", "collection", OPT_TEXT, "The collection this node belongs to", "", NULL,
     NULL},
    {"pubsub#description", "description", OPT_TEXT, "A description of the node", "", NULL, NULL},
    {"pubsub#type", "payload_type", OPT_TEXT,
     "The namespace of the payloads (empty: any)", "", NULL, NULL},
    {"pubsub#deliver_notifications", "deliver_notifications", OPT_BOOL,
     "Whether to deliver event notifications", "true", NULL, NULL},
    {"pubsub#deliver_payloads", "deliver_payloads", OPT_BOOL,
     "Whether to deliver payloads with event notifications", "true", NULL, NULL},
    {"pubsub#notify_config", "notify_config", OPT_BOOL,
     "Notify subscribers when the node configuration changes", "false", NULL, NULL},
    {"pubsub#notify_delete", "notify_delete", OPT_BOOL,
     "Notify subscribers when the node is deleted", "true", NULL, NULL},
    {"pubsub#notify_retract", "notify_retract", OPT_BOOL,
     "Notify subscribers when items are removed from the node", "true", NULL, NULL},
    {"pubsub#notify_sub", "notify_sub", OPT_BOOL,
     "Notify owners about new subscribers and unsubscribes", "false", NULL, NULL},
    {"pubsub#persist_items", "persist_items", OPT_BOOL, "Persist items to storage", "true", NULL,
     NULL},
    {"pubsub#max_items", "max_items", OPT_UINT,
     "Max # of items to persist. `max` for the server's maximum", NULL, NULL, NULL},
    {"pubsub#item_expire", "item_expire", OPT_UINT,
     "Seconds after which items are removed (0 or `max`: never)", "0", NULL, NULL},
    {"pubsub#max_payload_size", "max_payload_size", OPT_UINT, "Max payload size in bytes", NULL,
     NULL, NULL},
    {"pubsub#access_model", "access_model", OPT_LIST, "Specify the subscriber model", "open",
     access_models, access_models_implemented},
    {"pubsub#publish_model", "publish_model", OPT_LIST, "Specify the publisher model",
     "publishers", publish_models, NULL},
    {"pubsub#notification_type", "notification_type", OPT_LIST,
     "Specify the delivery style for event notifications", "headline", notification_types, NULL},
    {"pubsub#send_last_published_item", "send_last_published_item", OPT_LIST,
     "When to send the last published item", "never", send_last_choices, send_last_implemented},
};

static bool in_list(const char *const *list, const char *v)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], v) == 0)
            return true;
    return false;
}

static const struct node_option *node_option_find(const char *var)
{
    for (size_t i = 0; i < ARRAY_LEN(node_options); i++)
        if (strcmp(node_options[i].var, var) == 0)
            return &node_options[i];
    return NULL;
}

/* Parses an unsigned option value; "max" maps to the server maximum. */
static int parse_uint(const struct config *cfg, const struct node_option *o, const char *v,
                      long long *out)
{
    long long limit = LLONG_MAX;
    if (strcmp(o->column, "max_items") == 0)
        limit = cfg->max_items_limit;
    else if (strcmp(o->column, "max_payload_size") == 0)
        limit = cfg->max_payload_bytes;
    if (strcmp(v, "max") == 0) {
        *out = strcmp(o->column, "item_expire") == 0 ? 0 : limit;
        return 0;
    }
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || *v == '\0' || *end != '\0' || n < 0 || n > limit)
        return -1;
    if (strcmp(o->column, "max_payload_size") == 0 && n == 0)
        return -1;
    *out = n;
    return 0;
}

static int node_option_to_json(const struct config *cfg, const struct node_option *o,
                               const struct form_field *f, struct buf *json)
{
    if (f->nvalues > 1)
        return NODE_CONFIG_INVALID;
    const char *v = f->nvalues ? f->values[0] : "";
    buf_put_json_string(json, o->column);
    buf_puts(json, ":");
    switch (o->type) {
    case OPT_TEXT:
        buf_put_json_string(json, v);
        return NODE_CONFIG_OK;
    case OPT_BOOL: {
        bool b;
        if (form_parse_boolean(v, &b) != 0)
            return NODE_CONFIG_INVALID;
        if (b && in_list(only_false_columns, o->column))
            return NODE_CONFIG_UNSUPPORTED;
        buf_puts(json, b ? "true" : "false");
        return NODE_CONFIG_OK;
    }
    case OPT_UINT: {
        long long n;
        if (parse_uint(cfg, o, v, &n) != 0)
            return NODE_CONFIG_INVALID;
        buf_printf(json, "%lld", n);
        return NODE_CONFIG_OK;
    }
    case OPT_LIST:
        if (!in_list(o->choices, v))
            return NODE_CONFIG_INVALID;
        if (o->implemented && !in_list(o->implemented, v))
            return NODE_CONFIG_UNSUPPORTED;
        buf_put_json_string(json, v);
        return NODE_CONFIG_OK;
    }
    return NODE_CONFIG_INVALID;
}

int node_config_from_form(const struct config *cfg, const struct form *f, struct buf *json,
                          const char **bad_var)
{
    buf_puts(json, "{");
    bool first = true;
    for (int i = 0; i < f->nfields; i++) {
        const struct form_field *field = &f->fields[i];
        if (strcmp(field->var, "FORM_TYPE") == 0)
            continue;
        const struct node_option *o = node_option_find(field->var);
        if (o == NULL) {
            *bad_var = field->var;
            return NODE_CONFIG_UNKNOWN;
        }
        if (!first)
            buf_puts(json, ",");
        first = false;
        int rc = node_option_to_json(cfg, o, field, json);
        if (rc != NODE_CONFIG_OK) {
            *bad_var = field->var;
            return rc;
        }
    }
    buf_puts(json, "}");
    return NODE_CONFIG_OK;
}

static const char *node_option_default(const struct config *cfg, const struct node_option *o,
                                       char *tmp, size_t tmplen)
{
    if (o->def)
        return o->def;
    int v = strcmp(o->column, "max_items") == 0 ? cfg->default_max_items : cfg->max_payload_bytes;
    snprintf(tmp, tmplen, "%d", v);
    return tmp;
}

void node_config_defaults_json(const struct config *cfg, struct buf *json)
{
    buf_puts(json, "{");
    for (size_t i = 0; i < ARRAY_LEN(node_options); i++) {
        const struct node_option *o = &node_options[i];
        char tmp[32];
        const char *v = node_option_default(cfg, o, tmp, sizeof tmp);
        if (i)
            buf_puts(json, ",");
        buf_put_json_string(json, o->column);
        buf_puts(json, ":");
        if (o->type == OPT_BOOL || o->type == OPT_UINT)
            buf_puts(json, v);
        else
            buf_put_json_string(json, v);
    }
    buf_puts(json, "}");
}

static const char *form_type_of(enum opt_type t)
{
    switch (t) {
    case OPT_BOOL:
        return "boolean";
    case OPT_LIST:
        return "list-single";
    default:
        return "text-single";
    }
}

void node_config_form(const struct config *cfg, const PGresult *res, int row, struct buf *out)
{
    form_open(out, "form", NS_NODE_CONFIG);
    for (size_t i = 0; i < ARRAY_LEN(node_options); i++) {
        const struct node_option *o = &node_options[i];
        char tmp[32];
        const char *v = NULL;
        if (res) {
            int col = PQfnumber(res, o->column);
            PS_ASSERT(col >= 0);
            v = PQgetvalue(res, row, col);
            if (o->type == OPT_BOOL)
                v = v[0] == 't' ? "true" : "false";
        } else {
            v = node_option_default(cfg, o, tmp, sizeof tmp);
        }
        if (o->type == OPT_LIST)
            form_add_list(out, o->var, o->label, v, o->implemented ? o->implemented : o->choices);
        else
            form_add_field(out, o->var, form_type_of(o->type), o->label, v);
    }
    form_close(out);
}
