/*
 * config.h - pubsubd's configuration: one declarative table of keys.
 *
 * Values come from, in increasing precedence: the built-in default, the
 * configuration file (key = value lines), and the environment variable
 * PUBSUBD_<KEY IN UPPER CASE>.  The full list of keys with their defaults
 * is docs/pubsubd.conf.example; a unit test keeps the two in step.
 */
#ifndef PUBSUBD_CONFIG_H
#define PUBSUBD_CONFIG_H

#include "alloc.h"

struct config {
    /* XMPP server link (XEP-0114) */
    char *xmpp_host;
    int xmpp_port;
    char *component_jid;
    char *component_secret;
    char *barrier_jid;
    int reconnect_min_ms;
    int reconnect_max_ms;
    int max_stanza_bytes;
    int output_buffer_max;
    int output_buffer_high;
    /* PostgreSQL */
    char *database;
    int db_pool_size;
    int db_max_pipeline;
    int db_group_max;
    int db_max_queued;
    int db_request_timeout_ms;
    int db_reconnect_min_ms;
    int db_reconnect_max_ms;
    /* publish-subscribe limits */
    int max_payload_bytes;
    int default_max_items;
    int max_items_limit;
    int max_node_id_bytes;
    int max_item_id_bytes;
    int max_items_per_request;
    int auto_create_nodes;
    int max_nodes_per_owner;
    int max_subscriptions_per_jid;
    int max_inflight_per_sender;
    /* dispatcher */
    int dispatch_batch;
    int dispatch_events;
    int dispatch_handoff_max;
    int dispatch_commit_interval_ms;
    int dispatch_max_nodes;
    int dispatch_poll_ms;
    /* redelivery and dead letters */
    int redelivery_max_attempts;
    int redelivery_base_ms;
    int redelivery_window_ms;
    int redelivery_batch;
    int event_retention_s;
    /* process */
    char *log_level;
    char *log_file;
    int shutdown_timeout_ms;
};

/*
 * Fills cfg from defaults, then the file at path (NULL: no file), then the
 * environment.  Returns 0, or -1 with *errmsg set to a message naming the
 * file, line and key (the caller frees it with free()).  On failure cfg is
 * still safe to pass to config_free().
 */
int config_load(struct config *cfg, const char *path, char **errmsg) MUSTCHECK;
void config_free(struct config *cfg);

/* The key table, for docs checks and --help. */
size_t config_key_count(void);
const char *config_key_name(size_t i);
const char *config_key_default(size_t i);

/* The domain the ping barrier is sent to: barrier_jid if set, else the
 * component JID without its first label ("pubsub.example.org" ->
 * "example.org").  Borrowed pointer into cfg or a static string. */
const char *config_barrier_jid(const struct config *cfg);

#endif
