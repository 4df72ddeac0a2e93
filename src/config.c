/*
 * config.c - the key table, the file parser and the environment override.
 *
 * Invariant: after config_load() every string field is non-NULL and every
 * integer is within its declared bounds.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jid.h"
#include "log.h"

enum config_type { CF_STRING, CF_INT };

struct config_key {
    const char *name;
    enum config_type type;
    size_t offset;
    const char *def;
    long min;
    long max;
};

#define KEY_STR(n, d) {#n, CF_STRING, offsetof(struct config, n), d, 0, 0}
#define KEY_INT(n, d, lo, hi) {#n, CF_INT, offsetof(struct config, n), #d, lo, hi}

static const struct config_key config_keys[] = {
    KEY_STR(xmpp_host, "127.0.0.1"),
    KEY_INT(xmpp_port, 5347, 1, 65535),
    KEY_STR(component_jid, "pubsub.localhost"),
    KEY_STR(component_secret, ""),
    KEY_STR(barrier_jid, ""),
    KEY_INT(reconnect_min_ms, 250, 10, 600000),
    KEY_INT(reconnect_max_ms, 30000, 10, 3600000),
    KEY_INT(max_stanza_bytes, 1048576, 4096, 67108864),
    KEY_INT(output_buffer_max, 33554432, 65536, 1073741824),
    KEY_INT(output_buffer_high, 1048576, 4096, 1073741824),
    KEY_STR(database, "dbname=pubsubd"),
    KEY_INT(db_pool_size, 2, 1, 64),
    KEY_INT(db_max_pipeline, 64, 1, 10000),
    KEY_INT(db_group_max, 64, 1, 10000),
    KEY_INT(db_max_queued, 10000, 4, 10000000),
    KEY_INT(db_request_timeout_ms, 5000, 100, 600000),
    KEY_INT(db_reconnect_min_ms, 100, 10, 600000),
    KEY_INT(db_reconnect_max_ms, 10000, 10, 3600000),
    KEY_INT(max_payload_bytes, 262144, 16, 67108864),
    KEY_INT(default_max_items, 1000, 1, 1000000000),
    KEY_INT(max_items_limit, 10000000, 1, 2000000000),
    KEY_INT(max_node_id_bytes, 1023, 1, 65535),
    KEY_INT(max_item_id_bytes, 1023, 1, 65535),
    KEY_INT(max_items_per_request, 1000, 1, 1000000),
    KEY_INT(auto_create_nodes, 1, 0, 1),
    KEY_INT(max_nodes_per_owner, 10000, 1, 2000000000),
    KEY_INT(max_subscriptions_per_jid, 10000, 1, 2000000000),
    KEY_INT(max_inflight_per_sender, 2048, 1, 65535),
    KEY_INT(dispatch_batch, 512, 1, 1000000),
    KEY_INT(dispatch_events, 128, 1, 100000),
    KEY_INT(dispatch_handoff_max, 128, 0, 1000000),
    KEY_INT(dispatch_commit_interval_ms, 20, 0, 60000),
    KEY_INT(dispatch_max_nodes, 256, 1, 1000000),
    KEY_INT(dispatch_poll_ms, 2000, 10, 3600000),
    KEY_INT(redelivery_max_attempts, 5, 1, 1000),
    KEY_INT(redelivery_base_ms, 1000, 10, 86400000),
    KEY_INT(redelivery_window_ms, 300000, 100, 86400000),
    KEY_INT(redelivery_batch, 100, 1, 100000),
    KEY_INT(event_retention_s, 600, 1, 31536000),
    KEY_STR(log_level, "info"),
    KEY_STR(log_file, ""),
    KEY_INT(shutdown_timeout_ms, 10000, 0, 3600000),
};

size_t config_key_count(void)
{
    return ARRAY_LEN(config_keys);
}

const char *config_key_name(size_t i)
{
    return i < ARRAY_LEN(config_keys) ? config_keys[i].name : NULL;
}

const char *config_key_default(size_t i)
{
    return i < ARRAY_LEN(config_keys) ? config_keys[i].def : NULL;
}

static const struct config_key *config_find_key(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(config_keys); i++)
        if (strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

/*
 * Stores value into the field of key.  Returns 0, or -1 with *why set to a
 * static explanation.
 */
static int config_set(struct config *cfg, const struct config_key *key,
                      const char *value, const char **why)
{
    char *field = (char *)cfg + key->offset;
    if (key->type == CF_STRING) {
        char **s = (char **)(void *)field;
        if (strcmp(key->name, "log_level") == 0) {
            enum log_level lvl;
            if (log_level_parse(value, &lvl) != 0) {
                *why = "must be one of error, warn, info, debug";
                return -1;
            }
        }
        free(*s);
        *s = xstrdup(value);
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0') {
        *why = "is not an integer";
        return -1;
    }
    if (v < key->min || v > key->max) {
        *why = "is out of range";
        return -1;
    }
    *(int *)(void *)field = (int)v;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/*
 * Parses one "key = value" line.  Returns 0 or -1 with *errmsg set.
 */
static int config_parse_line(struct config *cfg, const char *path, int lineno,
                             char *line, char **errmsg)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';')
        return 0;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        *errmsg = xasprintf("%s:%d: expected \"key = value\"", path, lineno);
        return -1;
    }
    *eq = '\0';
    char *name = trim(s);
    char *value = trim(eq + 1);
    size_t vlen = strlen(value);
    if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
        value[vlen - 1] = '\0';
        value++;
    } else if (value[0] == '"') {
        *errmsg = xasprintf("%s:%d: unterminated quoted value for \"%s\"",
                            path, lineno, name);
        return -1;
    }
    const struct config_key *key = config_find_key(name);
    if (key == NULL) {
        *errmsg = xasprintf("%s:%d: unknown key \"%s\"", path, lineno, name);
        return -1;
    }
    const char *why;
    if (config_set(cfg, key, value, &why) != 0) {
        *errmsg = xasprintf("%s:%d: value of \"%s\" %s", path, lineno, name,
                            why);
        return -1;
    }
    return 0;
}

static int config_load_file(struct config *cfg, const char *path,
                            char **errmsg)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        *errmsg = xasprintf("%s: could not open: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    int rc = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (config_parse_line(cfg, path, lineno, line, errmsg) != 0) {
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

static int config_load_env(struct config *cfg, char **errmsg)
{
    for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
        char var[128];
        int n = snprintf(var, sizeof var, "PUBSUBD_%s", config_keys[i].name);
        PS_ASSERT(n > 0 && (size_t)n < sizeof var);
        for (char *p = var; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        const char *v = getenv(var);
        if (v == NULL)
            continue;
        const char *why;
        if (config_set(cfg, &config_keys[i], v, &why) != 0) {
            *errmsg = xasprintf("environment variable %s: value %s", var, why);
            return -1;
        }
    }
    return 0;
}

static int config_check(struct config *cfg, char **errmsg)
{
    if (cfg->reconnect_min_ms > cfg->reconnect_max_ms) {
        *errmsg = xasprintf("reconnect_min_ms is greater than reconnect_max_ms");
        return -1;
    }
    if (cfg->db_reconnect_min_ms > cfg->db_reconnect_max_ms) {
        *errmsg = xasprintf("db_reconnect_min_ms is greater than db_reconnect_max_ms");
        return -1;
    }
    /* A batch stops once the buffer passes output_buffer_high, after at
     * most one more stanza: the hard limit must leave room for it. */
    if ((long)cfg->output_buffer_high + 2L * cfg->max_stanza_bytes > cfg->output_buffer_max) {
        *errmsg = xasprintf("output_buffer_max must be at least output_buffer_high + "
                            "2 x max_stanza_bytes");
        return -1;
    }
    if (cfg->max_payload_bytes > cfg->max_stanza_bytes) {
        *errmsg = xasprintf("max_payload_bytes is greater than max_stanza_bytes");
        return -1;
    }
    if (cfg->default_max_items > cfg->max_items_limit) {
        *errmsg = xasprintf("default_max_items is greater than max_items_limit");
        return -1;
    }
    if (!jid_is_domain(cfg->component_jid)) {
        *errmsg = xasprintf("component_jid must be a domain JID");
        return -1;
    }
    if (cfg->barrier_jid[0] && !jid_is_domain(cfg->barrier_jid)) {
        *errmsg = xasprintf("barrier_jid must be a domain JID");
        return -1;
    }
    return 0;
}

int config_load(struct config *cfg, const char *path, char **errmsg)
{
    memset(cfg, 0, sizeof *cfg);
    *errmsg = NULL;
    for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
        const char *why;
        int rc = config_set(cfg, &config_keys[i], config_keys[i].def, &why);
        PS_ASSERT(rc == 0);
    }
    if (path != NULL && config_load_file(cfg, path, errmsg) != 0)
        return -1;
    if (config_load_env(cfg, errmsg) != 0)
        return -1;
    return config_check(cfg, errmsg);
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < ARRAY_LEN(config_keys); i++) {
        if (config_keys[i].type == CF_STRING) {
            char **s = (char **)(void *)((char *)cfg + config_keys[i].offset);
            free(*s);
            *s = NULL;
        }
    }
}

const char *config_barrier_jid(const struct config *cfg)
{
    if (cfg->barrier_jid && cfg->barrier_jid[0])
        return cfg->barrier_jid;
    const char *dot = strchr(cfg->component_jid, '.');
    return dot && dot[1] ? dot + 1 : cfg->component_jid;
}
