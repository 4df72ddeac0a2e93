/*
 * db.h - PostgreSQL connections on the event loop (libpq, non-blocking,
 * pipeline mode), the prepared statements, and schema migrations.
 *
 * db.c is the only file that holds SQL text.  Each query is one prepared
 * statement in its own implicit transaction (one pipeline sync each), so
 * an error in one never affects the next.  Results arrive in submission
 * order on a connection; a callback always runs exactly once per
 * successfully submitted query: with the result, or with res == NULL and
 * an error text (connection lost, timeout).
 */
#ifndef PUBSUBD_DB_H
#define PUBSUBD_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"

enum db_stmt {
    DB_LIST_NODES,
    DB_NODE_INFO,
    DB_CREATE_NODE,
    DB_GET_CONFIG,
    DB_CONFIGURE_NODE,
    DB_PURGE_NODE,
    DB_EXPIRE_ITEMS,
    DB_OWN_SUBSCRIPTIONS,
    DB_OWN_AFFILIATIONS,
    DB_NODE_SUBSCRIPTIONS,
    DB_MODIFY_SUBSCRIPTIONS,
    DB_NODE_AFFILIATIONS,
    DB_MODIFY_AFFILIATIONS,
    DB_DELETE_NODE,
    DB_PUBLISH,
    DB_RETRACT,
    DB_SUBSCRIBE,
    DB_UNSUBSCRIBE,
    DB_AUTHORIZE,
    DB_PENDING,
    DB_GET_SUB_OPTIONS,
    DB_SET_SUB_OPTIONS,
    DB_GET_ITEMS,
    DB_GET_ITEMS_PAGE,
    DB_MAM_QUERY,
    DB_LISTEN,
    DB_DISPATCH_CLAIM,
    DB_DISPATCH_CLAIM_ANY,
    DB_DISPATCH_PRESENCE,
    DB_DISPATCH_PEERS,
    DB_DISPATCH_POSITION,
    DB_DISPATCH_EVENTS,
    DB_DISPATCH_SUBSCRIBERS,
    DB_DISPATCH_AUDIENCE,
    DB_DISPATCH_COMMIT,
    DB_DISPATCH_RELEASE,
    DB_RECORD_BOUNCE,
    DB_REDELIVERY_TAKE,
    DB_REDELIVERY_RESET,
    DB_EXPIRE_EVENTS,
    DB_DEAD_LETTERS,
    DB_REDRIVE,
    DB_TAKE_OWNER_NOTICES,
    DB_PUBLISH_BATCH, /* internal: consecutive DB_PUBLISHes to one node (db.c) */
    DB_STMT_COUNT
};

/* res is borrowed (cleared after the call).  res == NULL: error says why. */
typedef void (*db_cb)(void *arg, const PGresult *res, const char *error);

enum db_state {
    DB_IDLE,
    DB_BACKOFF,
    DB_CONNECTING,
    DB_MIGRATING,
    DB_PREPARING,
    DB_READY,
};

struct db_handlers {
    void (*on_ready)(void *arg);
    void (*on_down)(void *arg);
    void (*on_notify)(void *arg, const char *channel, const char *payload);
    /* Unrecoverable (schema newer than this binary, failed migration). */
    void (*on_fatal)(void *arg, const char *why);
    void *arg;
};

struct db_query;

struct db_queue {
    struct db_query *head, *tail;
    int count;
};

struct db_conn {
    struct loop *loop;
    const struct config *cfg;
    char *label;
    struct db_handlers h;
    enum db_state state;
    PGconn *pg;
    int fd;
    int watched_events;
    struct db_queue waiting; /* submitted, not yet sent */
    struct db_queue sent;    /* in the pipeline, results pending */
    struct loop_timer timer; /* reconnect backoff, or the timeout tick */
    struct loop_timer pump_timer; /* end of this loop iteration: send what was submitted */
    int backoff_ms;
    int migrate_step;
    int schema_version;
    bool pipeline;
    int commit_groups; /* groups of groupable statements in the pipeline */
    const char *deferred_failure; /* failure seen inside db_conn_submit */
};

void db_conn_init(struct db_conn *c, struct loop *loop, const struct config *cfg,
                  const char *label, const struct db_handlers *h);
void db_conn_start(struct db_conn *c);
static inline bool db_conn_ready(const struct db_conn *c)
{
    return c->state == DB_READY;
}
/*
 * Queues a prepared statement.  params are copied (NULL entries are SQL
 * NULL).  Returns PS_OK (cb will run exactly once), PS_ERROR when the
 * connection is not ready, PS_AGAIN when the queue is full (cb not run).
 */
int db_conn_submit(struct db_conn *c, enum db_stmt stmt, int nparams,
                   const char *const *params, db_cb cb, void *arg) MUSTCHECK;
/* Queries submitted and not yet sent. */
static inline int db_conn_waiting(const struct db_conn *c)
{
    return c->waiting.count;
}
/* Queries submitted and not completed. */
static inline int db_conn_outstanding(const struct db_conn *c)
{
    return c->waiting.count + c->sent.count;
}
/* Drops the connection and reconnects (from the timer, never inside the
 * caller's call): outstanding callbacks run with an error, session state
 * (advisory locks, LISTEN) is gone. */
void db_conn_reset(struct db_conn *c, const char *why);
/* Closes the connection: outstanding callbacks run with an error. */
void db_conn_close(struct db_conn *c, const char *why);
void db_conn_free(struct db_conn *c);

/* Is stmt a write that shares a group commit with the others of its kind
 * (publish, retract, subscribe, unsubscribe)? */
bool db_stmt_groups_writes(enum db_stmt stmt);

/* This process's tag (hex), set on each of its database sessions as
 * pubsub.instance: the NOTIFY of its own publishes end with it. */
const char *db_instance_tag(void);

/* Helpers for reading results. */
const char *db_value(const PGresult *res, int row, int col);
bool db_is_null(const PGresult *res, int row, int col);
long long db_int(const PGresult *res, int row, int col);
bool db_ok(const PGresult *res); /* TUPLES_OK or COMMAND_OK */
/* "SQLSTATE: message" of a failed result (static buffer). */
const char *db_error(const PGresult *res);

#endif
