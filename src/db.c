/*
 * db.c - libpq on the event loop: connect, migrate, prepare, pipeline.
 *
 * Owns each connection's PGconn, its queues of queries and their copied
 * parameters.  Life of a connection (db_set_state):
 *   IDLE/BACKOFF -> CONNECTING (PQconnectPoll) -> MIGRATING (simple query
 *   protocol, advisory-locked transaction) -> PREPARING (pipeline: one
 *   Parse per statement) -> READY.  Any failure: callbacks of outstanding
 *   queries run with an error, then BACKOFF with capped exponential delay.
 *
 * Invariant: in the pipeline every query is followed by its own sync, so
 * the results read back are, per query: result(s), NULL, PIPELINE_SYNC.
 */
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "ids.h"
#include "log.h"
#include "schema.h"

/* Key of the advisory lock that serialises migrations (two-int form, a
 * key space separate from the bigint node locks of the dispatcher). */
#define DB_MIGRATION_LOCK "pg_advisory_xact_lock(7474, 1)"
#define DB_TICK_MS 100

struct db_statement {
    const char *name;
    int nparams;
    const char *sql;
};

/* Statements that may share one transaction with their neighbours in the
 * pipeline (group commit): they report failures as status words, so a
 * group rarely aborts, and when it does its members are retried alone.
 * Only statements of one class share a transaction: a dispatch commit
 * turns synchronous_commit off for its transaction (schema 031), which a
 * publish, acknowledged as durable, must never share.  The dispatcher's
 * reads (class 3) share one too: a fetch's events and subscriptions cost
 * one sync instead of two; each statement still takes its own snapshot
 * (read committed), the subscriptions' newer than the events'.
 * 0: not groupable. */
static int db_group_class(enum db_stmt stmt)
{
    switch (stmt) {
    case DB_PUBLISH:
    case DB_RETRACT:
    case DB_SUBSCRIBE:
    case DB_UNSUBSCRIBE:
        return 1;
    case DB_DISPATCH_COMMIT:
        return 2;
    case DB_DISPATCH_EVENTS:
    case DB_DISPATCH_SUBSCRIBERS:
    case DB_DISPATCH_AUDIENCE:
        return 3;
    default:
        return 0;
    }
}

bool db_stmt_groups_writes(enum db_stmt stmt)
{
    return db_group_class(stmt) == 1;
}

static const struct db_statement db_statements[DB_STMT_COUNT] = {
    [DB_LIST_NODES] = {"list_nodes", 2,
        "SELECT name FROM pubsub.node WHERE NOT deleted AND ($2::text IS NULL OR name > $2)"
        " ORDER BY name LIMIT $1"},
    [DB_NODE_INFO] = {"node_info", 1,
        "SELECT kind, title, description, payload_type, creator, created_at, access_model,"
        " publish_model, notification_type, max_items, item_count, num_subscribers, owners"
        " FROM pubsub.node_meta($1)"},
    /* $3 the defaults, $4 the submitted changes (or NULL). */
    [DB_CREATE_NODE] = {"create_node", 4,
        "SELECT pubsub.create_node($1, $2, $3::jsonb || coalesce($4::jsonb, '{}'))"},
    [DB_GET_CONFIG] = {"get_config", 2,
        "SELECT pubsub.affiliation_of(n.node_id, $2) AS affiliation, c.*,"
        " n.kind AS node_type, coalesce(p.name, '') AS collection"
        " FROM pubsub.node n JOIN pubsub.node_config c ON c.node_id = n.node_id"
        " LEFT JOIN pubsub.node p ON p.node_id = n.parent_id"
        " WHERE n.name = $1 AND NOT n.deleted"},
    [DB_CONFIGURE_NODE] = {"configure_node", 3,
        "SELECT status, node_id FROM pubsub.configure_node($1, $2, $3::jsonb)"},
    [DB_PURGE_NODE] = {"purge_node", 2,
        "SELECT status, node_id FROM pubsub.purge_node($1, $2)"},
    [DB_EXPIRE_ITEMS] = {"expire_items", 1,
        "SELECT pubsub.expire_items($1) + pubsub.expire_subscriptions($1)"},
    [DB_OWN_SUBSCRIPTIONS] = {"own_subscriptions", 4,
        "SELECT node, jid, subid, state, sub_id, total, idx"
        " FROM pubsub.own_subscriptions($1, $2, $3, $4)"},
    [DB_OWN_AFFILIATIONS] = {"own_affiliations", 4,
        "SELECT node, affiliation, total, idx FROM pubsub.own_affiliations($1, $2, $3, $4)"},
    [DB_NODE_SUBSCRIPTIONS] = {"node_subscriptions", 4,
        "SELECT status, jid, subid, state, sub_id, total, idx"
        " FROM pubsub.node_subscriptions($1, $2, $3, $4)"},
    [DB_MODIFY_SUBSCRIPTIONS] = {"modify_subscriptions", 5,
        "SELECT pubsub.modify_subscriptions($1, $2, $3, $4, $5)"},
    [DB_NODE_AFFILIATIONS] = {"node_affiliations", 4,
        "SELECT status, jid, affiliation, total, idx"
        " FROM pubsub.node_affiliations($1, $2, $3, $4)"},
    [DB_MODIFY_AFFILIATIONS] = {"modify_affiliations", 4,
        "SELECT status, jid, affiliation FROM pubsub.modify_affiliations($1, $2, $3, $4)"},
    [DB_DELETE_NODE] = {"delete_node", 2,
        "SELECT pubsub.delete_node($1, $2)"},
    [DB_PUBLISH] = {"publish", 7,
        "SELECT status, seq, node_id, audience"
        " FROM pubsub.publish_auto($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)"},
    [DB_RETRACT] = {"retract", 4,
        "SELECT pubsub.retract($1, $2, $3, $4)"},
    [DB_SUBSCRIBE] = {"subscribe", 4,
        /* last_stamp: when the last item (sent on subscription) was
         * published, for its XEP-0203 delay; the item can be newer than
         * this statement's snapshot (published while subscribe() waited
         * for the node lock): then the time now, a few ms later. */
        "SELECT s.status, s.subid, s.state, s.node_id, s.sub_id, s.last_seq, s.last_item_id,"
        " s.last_payload, s.owners,"
        " to_char(coalesce(i.published_at, clock_timestamp()) AT TIME ZONE 'UTC',"
        "         'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS last_stamp"
        " FROM pubsub.subscribe($1, $2, $3, $4::jsonb) s"
        " LEFT JOIN pubsub.item i ON i.node_id = s.node_id AND i.seq = s.last_seq"},
    [DB_AUTHORIZE] = {"authorize", 5,
        "SELECT status, jid, state FROM pubsub.authorize($1, $2, $3, $4, $5)"},
    [DB_PENDING] = {"pending", 2, "SELECT status, node, jid, subid FROM pubsub.pending($1, $2)"},
    [DB_GET_SUB_OPTIONS] = {"get_sub_options", 4,
        "SELECT status, deliver, include_body, expire, depth, subid"
        " FROM pubsub.get_sub_options($1, $2, $3, $4)"},
    [DB_SET_SUB_OPTIONS] = {"set_sub_options", 5,
        "SELECT pubsub.set_sub_options($1, $2, $3, $4, $5::jsonb)"},
    [DB_UNSUBSCRIBE] = {"unsubscribe", 3,
        "SELECT pubsub.unsubscribe($1, $2, $3)"},
    [DB_GET_ITEMS] = {"get_items", 4,
        "SELECT status, item_id, publisher, payload, seq "
        "FROM pubsub.get_items($1, $2, $3, string_to_array($4, E'\\n'))"},
    [DB_GET_ITEMS_PAGE] = {"get_items_page", 6,
        "SELECT status, item_id, publisher, payload, seq, total, idx"
        " FROM pubsub.get_items_page($1, $2, $3, $4, $5, $6)"},
    [DB_MAM_QUERY] = {"mam_query", 10,
        "SELECT status, item_id, payload, seq, stamp, total, idx"
        " FROM pubsub.mam_query($1, $2, $3::timestamptz, $4::timestamptz, $5, $6, $7, $8, $9,"
        " $10)"},
    [DB_LISTEN] = {"listen", 0, "LISTEN pubsub_wakeup"},
    /* Woken nodes ($3) with undelivered events whose lock we could take: a
     * few primary-key probes.  The lock is taken only on the materialised
     * candidates, never on a row a later filter would drop (a lock taken
     * and forgotten would leak). */
    [DB_DISPATCH_CLAIM] = {"dispatch_claim", 3,
        "WITH cand AS MATERIALIZED ("
        " SELECT d.node_id FROM pubsub.dispatch d JOIN pubsub.node n ON n.node_id = d.node_id"
        " WHERE d.node_id = ANY ($3::bigint[]) AND n.last_seq > d.delivered_seq"
        "   AND NOT (d.node_id = ANY ($1::bigint[]))"
        "   AND EXISTS (SELECT 1 FROM pubsub.event e"
        "               WHERE e.node_id = d.node_id AND e.seq > d.delivered_seq)"
        " ORDER BY d.updated_at LIMIT $2)"
        " SELECT node_id FROM cand WHERE pg_try_advisory_lock(node_id)"},
    /* Both claims want an outbox row after the position, not only a seq:
     * a node with pubsub#deliver_notifications off takes seqs without
     * outbox rows, and was claimed, read empty and released at every scan.
     * The row is probed per pending node (seq > position, the primary key).
     *
     * Any node with undelivered events, oldest position first: one pass
     * over node and dispatch (O(nodes), so the dispatcher runs it only
     * when something may have been missed).  The first CTE is a fence: with
     * the LIMIT in the same query level the planner walks dispatch in
     * updated_at order probing node once per row, four times the cost of
     * the hash join it makes of the fenced join (10^5 nodes, busy 2-core
     * machine: 216 ms against 90 ms). */
    [DB_DISPATCH_CLAIM_ANY] = {"dispatch_claim_any", 2,
        "WITH pending AS MATERIALIZED ("
        " SELECT d.node_id, d.updated_at, d.delivered_seq"
        " FROM pubsub.dispatch d JOIN pubsub.node n ON n.node_id = d.node_id"
        " WHERE n.last_seq > d.delivered_seq AND NOT (d.node_id = ANY ($1::bigint[]))),"
        " cand AS MATERIALIZED (SELECT p.node_id FROM pending p"
        "  WHERE EXISTS (SELECT 1 FROM pubsub.event e"
        "                WHERE e.node_id = p.node_id AND e.seq > p.delivered_seq)"
        "  ORDER BY p.updated_at LIMIT $2)"
        " SELECT node_id FROM cand WHERE pg_try_advisory_lock(node_id)"},
    /* Every dispatcher holds this shared lock for its session, so that the
     * others see it die: a session's locks, this one and its node locks,
     * are released together.  (7474, 1) is the migration lock; node locks
     * use the one-bigint key space, apart from the two-int4 one. */
    [DB_DISPATCH_PRESENCE] = {"dispatch_presence", 0,
        "SELECT pg_advisory_lock_shared(7474, 2)"},
    /* The backends of the live dispatchers, e.g. {812,1024}. */
    [DB_DISPATCH_PEERS] = {"dispatch_peers", 0,
        "SELECT coalesce(array_agg(pid ORDER BY pid), '{}')::text FROM pg_locks"
        " WHERE locktype = 'advisory' AND classid = 7474 AND objid = 2 AND objsubid = 2"
        "   AND granted"},
    [DB_DISPATCH_POSITION] = {"dispatch_position", 1,
        "SELECT d.delivered_seq, d.fanout_cursor, n.name, c.deliver_payloads,"
        " c.notification_type, c.notify_delete, n.parent_id IS NOT NULL"
        " FROM pubsub.dispatch d JOIN pubsub.node n ON n.node_id = d.node_id"
        " JOIN pubsub.node_config c ON c.node_id = d.node_id WHERE d.node_id = $1"},
    [DB_DISPATCH_EVENTS] = {"dispatch_events", 4,
        "SELECT seq, kind, item_id, publisher, payload, gseq FROM ("
        " SELECT seq, kind, item_id, publisher, payload, gseq,"
        "  sum(coalesce(octet_length(payload), 0)) OVER (ORDER BY seq) AS cum"
        " FROM pubsub.event WHERE node_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) e"
        " WHERE cum - coalesce(octet_length(payload), 0) < $4 ORDER BY seq"},
    /* One row per JID (its first subscription, whatever the state, so
     * that the row and the cursor stay put while its other subscriptions
     * come and go); with several eligible subscriptions, subids lists
     * them as "L<start_seq>:<subid> ..." (see dispatch_audience).  JIDs
     * with one subscription (nearly all) come straight from the
     * (node_id, sub_id) index; only those listed in pubsub.multi_sub go
     * through the aggregate (schema/033_multi_sub.sql: per-row probes
     * made a page cost O(rows x subscriptions of the node)). */
    [DB_DISPATCH_SUBSCRIBERS] = {"dispatch_subscribers", 3,
        "SELECT u.sub_id, u.jid, u.start_seq, u.subid, u.include_body, NULL::text AS via,"
        " u.start_gseq, u.subids FROM ("
        " (SELECT s.sub_id, s.jid, s.start_seq, s.subid, s.include_body, s.start_gseq,"
        "   NULL::text AS subids"
        "  FROM pubsub.subscription s"
        "  WHERE s.node_id = $1 AND s.sub_id > $2 AND s.state = 'subscribed' AND s.deliver"
        "   AND (s.expires_at IS NULL OR s.expires_at > now())"
        "   AND NOT EXISTS (SELECT 1 FROM pubsub.multi_sub ms"
        "                   WHERE ms.node_id = s.node_id AND ms.jid = s.jid)"
        "  ORDER BY s.sub_id LIMIT $3)"
        " UNION ALL"
        " (SELECT f.sub_id, f.jid, m.start_seq, f.subid, m.include_body, f.start_gseq, m.subids"
        "  FROM pubsub.multi_sub ms"
        "  CROSS JOIN LATERAL (SELECT p.sub_id, p.jid, p.subid, p.start_gseq"
        "   FROM pubsub.subscription p WHERE p.node_id = ms.node_id AND p.jid = ms.jid"
        "   ORDER BY p.sub_id LIMIT 1) f"
        "  CROSS JOIN LATERAL ("
        "   SELECT min(x.start_seq) AS start_seq, bool_or(x.include_body) AS include_body,"
        "    CASE WHEN count(*) > 1"
        "     THEN string_agg('L' || x.start_seq || ':' || x.subid, ' ') END AS subids"
        "   FROM pubsub.subscription x"
        "   WHERE x.node_id = ms.node_id AND x.jid = ms.jid AND x.state = 'subscribed'"
        "    AND x.deliver AND (x.expires_at IS NULL OR x.expires_at > now())"
        "   HAVING count(*) > 0) m"
        "  WHERE ms.node_id = $1 AND f.sub_id > $2"
        "  ORDER BY f.sub_id LIMIT $3)) u"
        " ORDER BY u.sub_id LIMIT $3"},
    /* The same for a leaf inside collections (XEP-0248). */
    [DB_DISPATCH_AUDIENCE] = {"dispatch_audience", 3,
        "SELECT sub_id, jid, start_seq, subid, include_body, via, start_gseq, subids"
        " FROM pubsub.dispatch_audience($1, $2, $3)"},
    [DB_DISPATCH_COMMIT] = {"dispatch_commit", 3,
        "SELECT pubsub.dispatch_commit($1, $2, $3)"},
    [DB_DISPATCH_RELEASE] = {"dispatch_release", 1,
        "SELECT pg_advisory_unlock($1::bigint)"},
    [DB_RECORD_BOUNCE] = {"record_bounce", 7,
        "SELECT pubsub.record_bounce($1, $2, $3, $4, $5, $6, $7)"},
    [DB_REDELIVERY_TAKE] = {"redelivery_take", 2,
        "SELECT node_id, seq, sub_id, jid, kind, item_id, payload, node, headline,"
        " deliver_payloads FROM pubsub.redelivery_take($1, $2)"},
    /* After a reconnect: retries sent on a lost stream go out again. */
    [DB_REDELIVERY_RESET] = {"redelivery_reset", 0,
        "UPDATE pubsub.redelivery SET state = 'waiting', next_at = now() WHERE state = 'sent'"},
    [DB_EXPIRE_EVENTS] = {"expire_events", 2, "SELECT pubsub.expire_events($1, $2)"},
    [DB_DEAD_LETTERS] = {"dead_letters", 3,
        "SELECT status, seq, jid, attempts, last_error, item_id"
        " FROM pubsub.dead_letters($1, $2, $3)"},
    [DB_REDRIVE] = {"redrive", 2, "SELECT status, count FROM pubsub.redrive($1, $2)"},
    [DB_TAKE_OWNER_NOTICES] = {"take_owner_notices", 1,
        "SELECT owner, node, jid, subid, state FROM pubsub.take_owner_notices($1)"},
    /* Never submitted: db_pump sends waiting DB_PUBLISHes as one of these
     * (nodes, item ids, payloads, publishers, payload namespaces, one
     * element per publish; the auto-create configuration); one row per
     * publish, in order, with DB_PUBLISH's columns. */
    [DB_PUBLISH_BATCH] = {"publish_batch", 6,
        "SELECT status, seq, node_id, audience"
        " FROM pubsub.publish_batch($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::jsonb)"},
};

/* DB_PUBLISH parameters (see pubsub_publish.c). */
enum { PUB_NODE, PUB_ITEM_ID, PUB_PAYLOAD, PUB_PUBLISHER, PUB_PAYLOAD_NS, PUB_PRECONDITIONS,
       PUB_CREATE };
/* A batch stops growing at this many bytes of payload. */
#define DB_BATCH_BYTES 1048576
/* Groups ending in a commit that may be in the pipeline at once (2 was
 * measured: no better at 1 -> 1, the groups only get smaller). */
#define DB_COMMIT_GROUPS 1

enum db_query_kind { DBQ_STATEMENT, DBQ_PREPARE };

struct db_query {
    enum db_query_kind kind;
    enum db_stmt stmt;
    int nparams;
    char **params;
    db_cb cb;
    void *arg;
    uint64_t deadline;
    bool done;      /* callback already ran (timeout, or delivered) */
    bool solo;      /* must run in its own transaction (a group failed) */
    bool ended;     /* its results are complete (the NULL result came) */
    bool group_end; /* a sync follows it: its group commits there */
    int batch;      /* > 1: sent as DB_PUBLISH_BATCH for itself and the next batch - 1 */
    bool batched;   /* carried by an earlier query's batch: no results of its own */
    PGresult *res;  /* its result, held until the group's sync */
    struct db_query *next;
};

static const char *const db_state_names[] = {
    "idle", "backoff", "connecting", "migrating", "preparing", "ready",
};

static void db_on_io(struct loop *loop, int fd, int events, void *arg);
static void db_timer_fired(struct loop *loop, void *arg);
static void db_fail_later(struct db_conn *c, const char *why);
static void db_fail(struct db_conn *c, const char *why);

/* ---- small helpers ------------------------------------------------------ */

const char *db_instance_tag(void)
{
    static char tag[17];
    if (tag[0] == '\0' && ids_random_hex(tag, 8) != 0)
        snprintf(tag, sizeof tag, "p%lld", (long long)getpid());
    return tag;
}

const char *db_value(const PGresult *res, int row, int col)
{
    return PQgetvalue(res, row, col);
}

bool db_is_null(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) != 0;
}

long long db_int(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

bool db_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

const char *db_error(const PGresult *res)
{
    static char msg[512];
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *text = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(msg, sizeof msg, "%s: %s", state ? state : "?????",
             text ? text : PQresultErrorMessage(res));
    return msg;
}

static void db_queue_push(struct db_queue *q, struct db_query *x)
{
    x->next = NULL;
    if (q->tail)
        q->tail->next = x;
    else
        q->head = x;
    q->tail = x;
    q->count++;
}

static struct db_query *db_queue_pop(struct db_queue *q)
{
    struct db_query *x = q->head;
    if (x == NULL)
        return NULL;
    q->head = x->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->count--;
    x->next = NULL;
    return x;
}

static void db_query_free(struct db_query *x)
{
    PQclear(x->res);
    for (int i = 0; i < x->nparams; i++)
        free(x->params[i]);
    free(x->params);
    free(x);
}

/* Runs the callback once (with an error) and frees the query. */
static void db_query_abort(struct db_query *x, const char *why)
{
    if (!x->done && x->cb) {
        x->done = true;
        x->cb(x->arg, NULL, why);
    }
    db_query_free(x);
}

static void db_set_state(struct db_conn *c, enum db_state s)
{
    if (c->state != s)
        log_debug("database %s: %s -> %s", c->label, db_state_names[c->state],
                  db_state_names[s]);
    c->state = s;
}

/* ---- connection life ---------------------------------------------------- */

void db_conn_init(struct db_conn *c, struct loop *loop, const struct config *cfg,
                  const char *label, const struct db_handlers *h)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->cfg = cfg;
    c->label = xstrdup(label);
    c->h = *h;
    c->fd = -1;
    c->backoff_ms = cfg->db_reconnect_min_ms;
}

static void db_watch(struct db_conn *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd != c->fd) {
        if (c->fd >= 0)
            loop_fd_remove(c->loop, c->fd);
        c->fd = -1;
        if (fd < 0)
            return;
        if (loop_fd_add(c->loop, fd, events, db_on_io, c) != 0) {
            db_fail(c, "could not watch the database socket");
            return;
        }
        c->fd = fd;
        c->watched_events = events;
        return;
    }
    if (c->fd >= 0 && c->watched_events != events) {
        if (loop_fd_modify(c->loop, c->fd, events) != 0) {
            db_fail(c, "could not update the database socket watch");
            return;
        }
        c->watched_events = events;
    }
}

static void db_schedule_reconnect(struct db_conn *c)
{
    char hex[3];
    long r = 128;
    if (ids_random_hex(hex, 1) == 0)
        r = strtol(hex, NULL, 16);
    int delay = c->backoff_ms / 2 + (int)((long)c->backoff_ms * r / 512);
    if (delay < 1)
        delay = 1;
    db_set_state(c, DB_BACKOFF);
    loop_timer_arm(c->loop, &c->timer, (uint64_t)delay, db_timer_fired, c);
    c->backoff_ms *= 2;
    if (c->backoff_ms > c->cfg->db_reconnect_max_ms)
        c->backoff_ms = c->cfg->db_reconnect_max_ms;
}

/* Drops the connection; outstanding queries fail; reconnect if asked. */
static void db_drop(struct db_conn *c, const char *why, bool reconnect)
{
    bool was_ready = c->state == DB_READY;
    if (c->fd >= 0) {
        loop_fd_remove(c->loop, c->fd);
        c->fd = -1;
    }
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->pipeline = false;
    c->commit_groups = 0;
    c->deferred_failure = NULL;
    loop_timer_disarm(c->loop, &c->timer);
    loop_timer_disarm(c->loop, &c->pump_timer);
    if (reconnect)
        db_schedule_reconnect(c);
    else
        db_set_state(c, DB_IDLE);
    struct db_query *x;
    while ((x = db_queue_pop(&c->sent)))
        db_query_abort(x, why);
    while ((x = db_queue_pop(&c->waiting)))
        db_query_abort(x, why);
    if (was_ready && c->h.on_down)
        c->h.on_down(c->h.arg);
}

static void db_fail(struct db_conn *c, const char *why)
{
    if (c->state == DB_IDLE || c->state == DB_BACKOFF)
        return;
    log_warn("database %s: connection lost: %s", c->label, why);
    db_drop(c, "database unavailable", true);
}

void db_conn_reset(struct db_conn *c, const char *why)
{
    db_fail_later(c, why);
}

void db_conn_close(struct db_conn *c, const char *why)
{
    if (c->state != DB_IDLE)
        log_info("database %s: closing: %s", c->label, why);
    db_drop(c, why, false);
}

static void db_notice(void *arg, const char *message)
{
    struct db_conn *c = arg;
    size_t n = strlen(message);
    log_debug("database %s: %.*s", c->label, (int)(n && message[n - 1] == '\n' ? n - 1 : n),
              message);
}

static void db_connect(struct db_conn *c)
{
    c->pg = PQconnectStart(c->cfg->database);
    if (c->pg == NULL) {
        log_error("database %s: could not allocate a connection", c->label);
        db_schedule_reconnect(c);
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        /* Never log the conninfo itself: it may hold a password. */
        log_warn("database %s: could not connect: %s", c->label, PQerrorMessage(c->pg));
        PQfinish(c->pg);
        c->pg = NULL;
        db_schedule_reconnect(c);
        return;
    }
    PQsetNoticeProcessor(c->pg, db_notice, c);
    db_set_state(c, DB_CONNECTING);
    db_watch(c, LOOP_WRITE);
}

void db_conn_start(struct db_conn *c)
{
    if (c->state == DB_IDLE)
        db_connect(c);
}

static void db_timer_fired(struct loop *loop, void *arg);

/* ---- migrations (simple query protocol, before pipeline mode) ---------- */

static void db_send_simple(struct db_conn *c, const char *sql)
{
    if (!PQsendQuery(c->pg, sql)) {
        db_fail(c, PQerrorMessage(c->pg));
        return;
    }
    db_watch(c, LOOP_READ | (PQflush(c->pg) == 1 ? LOOP_WRITE : 0));
}

static void db_start_migration(struct db_conn *c)
{
    db_set_state(c, DB_MIGRATING);
    c->migrate_step = 1;
    c->schema_version = -1;
    db_send_simple(c,
        "BEGIN;"
        "SELECT " DB_MIGRATION_LOCK ";"
        "CREATE SCHEMA IF NOT EXISTS pubsub;"
        "CREATE TABLE IF NOT EXISTS pubsub.schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now());"
        "SELECT coalesce(max(version), 0) FROM pubsub.schema_migrations;");
}

static int db_latest_known_version(void)
{
    return schema_migration_count ? schema_migrations[schema_migration_count - 1].version : 0;
}

/* Step 2: apply what is missing and commit, in the same transaction. */
static void db_migrate_apply(struct db_conn *c)
{
    int known = db_latest_known_version();
    if (c->schema_version > known) {
        char why[160];
        snprintf(why, sizeof why,
                 "database schema version %d is newer than this pubsubd knows (%d)",
                 c->schema_version, known);
        log_error("database %s: %s", c->label, why);
        db_drop(c, why, false);
        if (c->h.on_fatal)
            c->h.on_fatal(c->h.arg, why);
        return;
    }
    struct buf sql = BUF_INIT;
    for (int i = 0; i < schema_migration_count; i++) {
        const struct schema_migration *m = &schema_migrations[i];
        if (m->version <= c->schema_version)
            continue;
        log_info("database %s: applying migration %s", c->label, m->name);
        buf_puts(&sql, m->sql);
        buf_printf(&sql, ";\nINSERT INTO pubsub.schema_migrations (version, name) "
                         "VALUES (%d, '%s');\n", m->version, m->name);
    }
    /* Per-entity limits the SQL functions read (schema/012_limits.sql). */
    buf_printf(&sql, "SET pubsub.max_nodes_per_owner = %d;", c->cfg->max_nodes_per_owner);
    buf_printf(&sql, "SET pubsub.max_subscriptions_per_jid = %d;",
               c->cfg->max_subscriptions_per_jid);
    /* Publishes return the audience (up to audience_max subscriptions) and
     * tag their NOTIFY (schemas 030, 033). */
    buf_printf(&sql, "SET pubsub.audience = on; SET pubsub.instance = '%s';", db_instance_tag());
    buf_printf(&sql, "SET pubsub.audience_max = %d;", c->cfg->dispatch_handoff_max);
    buf_puts(&sql, "COMMIT;");
    c->migrate_step = 2;
    db_send_simple(c, sql.data);
    buf_free(&sql);
}

static void db_enter_pipeline(struct db_conn *c);

/* Reads the results of a migration step.  Returns when input is exhausted. */
static void db_read_migration(struct db_conn *c)
{
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) {
            /* The step's results are complete. */
            if (c->migrate_step == 1) {
                if (c->schema_version < 0) {
                    db_fail(c, "could not read the schema version");
                    return;
                }
                db_migrate_apply(c);
            } else {
                log_debug("database %s: schema at version %d", c->label,
                          db_latest_known_version());
                db_enter_pipeline(c);
            }
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_FATAL_ERROR) {
            char why[600];
            snprintf(why, sizeof why, "migration failed: %s", db_error(r));
            PQclear(r);
            log_error("database %s: %s", c->label, why);
            db_drop(c, why, false);
            if (c->h.on_fatal)
                c->h.on_fatal(c->h.arg, why);
            return;
        }
        if (c->migrate_step == 1 && st == PGRES_TUPLES_OK && PQnfields(r) == 1 &&
            PQntuples(r) == 1 && strcmp(PQfname(r, 0), "coalesce") == 0)
            c->schema_version = (int)db_int(r, 0, 0);
        PQclear(r);
    }
}

/* ---- pipeline ----------------------------------------------------------- */

static void db_flush(struct db_conn *c)
{
    int rc = PQflush(c->pg);
    if (rc < 0) {
        db_fail(c, PQerrorMessage(c->pg));
        return;
    }
    db_watch(c, LOOP_READ | (rc == 1 ? LOOP_WRITE : 0));
}

static bool db_send_query(struct db_conn *c, struct db_query *x)
{
    int ok;
    if (x->kind == DBQ_PREPARE) {
        const struct db_statement *s = &db_statements[x->stmt];
        ok = PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL);
    } else {
        ok = PQsendQueryPrepared(c->pg, db_statements[x->stmt].name, x->nparams,
                                 (const char *const *)x->params, NULL, NULL, 0);
    }
    return ok;
}

/* Appends x to the pipeline; a sync (commit point) follows it unless it
 * joins a group with the next waiting query. */
static bool db_send_pipelined(struct db_conn *c, struct db_query *x, bool sync)
{
    bool ok = db_send_query(c, x);
    x->group_end = sync;
    db_queue_push(&c->sent, x); /* on failure, the connection's failure aborts it */
    return ok && (!sync || PQpipelineSync(c->pg));
}

static bool db_str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* May `next` ride in the DB_PUBLISH_BATCH that `first` leads?  Plain
 * publishes (no publish-options) with the same auto-create configuration. */
static bool db_may_batch(const struct db_query *first, const struct db_query *next)
{
    return next->kind == DBQ_STATEMENT && next->stmt == DB_PUBLISH && !next->solo &&
           next->params[PUB_PRECONDITIONS] == NULL &&
           db_str_eq(first->params[PUB_CREATE], next->params[PUB_CREATE]);
}

/* The nodes whose next waiting publish could not ride in a batch: their
 * later publishes wait behind it.  Past DB_BATCH_HELD_MAX such nodes the
 * batch stops growing. */
#define DB_BATCH_HELD_MAX 8

static bool db_node_held(const char *const *held, int nheld, const char *node)
{
    for (int i = 0; i < nheld; i++)
        if (db_str_eq(held[i], node))
            return true;
    return false;
}

/*
 * Takes off `waiting` the publishes that can ride in x's batch: the run of
 * publishes that follows x (up to the first other statement), in order,
 * to any node.  A publish that cannot ride (publish-options, another
 * auto-create configuration) stays where it is, and so do the later
 * publishes to its node: each node's requests keep their order, while
 * requests to different nodes are independent (and share the transaction).
 */
static void db_take_batch(struct db_conn *c, const struct db_query *x, int group,
                          struct db_queue *rest)
{
    size_t bytes = x->params[PUB_PAYLOAD] ? strlen(x->params[PUB_PAYLOAD]) : 0;
    const char *held[DB_BATCH_HELD_MAX];
    int nheld = 0;
    struct db_query *prev = NULL, *m = c->waiting.head;
    while (m && m->kind == DBQ_STATEMENT && m->stmt == DB_PUBLISH &&
           group + rest->count < c->cfg->db_group_max &&
           c->sent.count + rest->count + 2 < c->cfg->db_max_pipeline && bytes < DB_BATCH_BYTES) {
        struct db_query *next = m->next;
        bool is_held = db_node_held(held, nheld, m->params[PUB_NODE]);
        if (!is_held && db_may_batch(x, m)) {
            if (prev)
                prev->next = next;
            else
                c->waiting.head = next;
            if (c->waiting.tail == m)
                c->waiting.tail = prev;
            c->waiting.count--;
            bytes += m->params[PUB_PAYLOAD] ? strlen(m->params[PUB_PAYLOAD]) : 0;
            db_queue_push(rest, m);
        } else {
            if (!is_held) {
                if (nheld == DB_BATCH_HELD_MAX)
                    break;
                held[nheld++] = m->params[PUB_NODE];
            }
            prev = m; /* stays where it is */
        }
        m = next;
    }
}

/* Appends s to a PostgreSQL array literal being built in b. */
static void db_array_add(struct buf *b, const char *s)
{
    buf_puts(b, b->len > 1 ? "," : "");
    if (s == NULL) {
        buf_puts(b, "NULL");
        return;
    }
    buf_puts(b, "\"");
    buf_put_backslashed(b, s, false);
    buf_puts(b, "\"");
}

/* How many distinct nodes x and `rest` publish to (for the debug log). */
static int db_batch_nodes(const struct db_query *x, const struct db_queue *rest)
{
    int n = 1;
    for (const struct db_query *m = rest->head; m; m = m->next) {
        bool seen = db_str_eq(x->params[PUB_NODE], m->params[PUB_NODE]);
        for (const struct db_query *p = rest->head; p != m && !seen; p = p->next)
            seen = db_str_eq(p->params[PUB_NODE], m->params[PUB_NODE]);
        n += seen ? 0 : 1;
    }
    return n;
}

/*
 * Sends x and the n - 1 queries in `rest` (already taken off `waiting`) as
 * one DB_PUBLISH_BATCH, then pushes them all on `sent`: x receives the
 * batch's result, the others are marked as carried (db_group_done gives
 * each its row).  A sync follows the last when `sync`.
 */
static bool db_send_batch(struct db_conn *c, struct db_query *x, struct db_queue *rest, bool sync)
{
    struct buf arr[5] = {BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT};
    static const int cols[5] = {PUB_NODE, PUB_ITEM_ID, PUB_PAYLOAD, PUB_PUBLISHER, PUB_PAYLOAD_NS};
    for (int k = 0; k < 5; k++) {
        buf_puts(&arr[k], "{");
        db_array_add(&arr[k], x->params[cols[k]]);
        for (struct db_query *m = rest->head; m; m = m->next)
            db_array_add(&arr[k], m->params[cols[k]]);
        buf_puts(&arr[k], "}");
    }
    const char *params[6] = {arr[0].data, arr[1].data, arr[2].data, arr[3].data, arr[4].data,
                             x->params[PUB_CREATE]};
    int ok = PQsendQueryPrepared(c->pg, db_statements[DB_PUBLISH_BATCH].name, 6, params, NULL,
                                 NULL, 0);
    for (int k = 0; k < 5; k++)
        buf_free(&arr[k]);
    if (LOG_LEVEL_DEBUG <= log_current_level)
        log_debug("database %s: a batch of %d publishes to %d node(s)", c->label,
                  rest->count + 1, db_batch_nodes(x, rest));
    x->batch = rest->count + 1;
    x->group_end = false;
    db_queue_push(&c->sent, x);
    struct db_query *m;
    while ((m = db_queue_pop(rest))) {
        m->batched = true;
        m->ended = true; /* the results all go to x */
        m->group_end = false;
        db_queue_push(&c->sent, m);
    }
    c->sent.tail->group_end = sync;
    return ok && (!sync || PQpipelineSync(c->pg)); /* on failure, as db_send_pipelined */
}

/* Is x worth waiting for a group in flight: does its group end in a
 * commit that later statements could share (publishes, positions)? */
static bool db_query_commits(const struct db_query *x)
{
    return x->kind == DBQ_STATEMENT && db_group_class(x->stmt) != 0 &&
           db_group_class(x->stmt) != 3;
}

static bool db_may_join(const struct db_conn *c, const struct db_query *x,
                        const struct db_query *next, int group_size)
{
    return next && x->kind == DBQ_STATEMENT && next->kind == DBQ_STATEMENT && !x->solo &&
           !next->solo && db_group_class(x->stmt) != 0 &&
           db_group_class(x->stmt) == db_group_class(next->stmt) &&
           group_size < c->cfg->db_group_max && c->sent.count + 1 < c->cfg->db_max_pipeline;
}

/* A failure found while a caller is inside db_conn_submit() is acted on
 * from the timer, so that no callback runs inside the caller's call. */
static void db_fail_later(struct db_conn *c, const char *why)
{
    if (c->deferred_failure == NULL)
        c->deferred_failure = why;
    loop_timer_arm(c->loop, &c->timer, 0, db_timer_fired, c);
}

/*
 * Moves waiting queries into the pipeline, up to db_max_pipeline.
 *
 * Group commit: while a group of groupable statements (publishes,
 * dispatch commits) is in the pipeline, the next groupable statement and
 * everything behind it wait for that group's sync instead of being sent
 * with a commit of its own.  Then all that waited go as one group (up to
 * db_group_max): one transaction, one WAL flush.  A lone statement on an
 * idle connection goes at once, so this adds no latency when there is
 * nothing to share a commit with; under load the group grows with the
 * load.  Before this, every publish paid its own flush (the pipeline was
 * never full enough to form a group).
 */
static void db_pump(struct db_conn *c)
{
    if (c->pg == NULL || !c->pipeline || c->deferred_failure)
        return;
    bool any = false;
    int group = 1;
    while (c->waiting.head && c->sent.count < c->cfg->db_max_pipeline) {
        if (group == 1 && c->commit_groups >= DB_COMMIT_GROUPS && db_query_commits(c->waiting.head) &&
            !c->waiting.head->solo)
            break; /* joins the group that will follow the one in flight */
        struct db_query *x = db_queue_pop(&c->waiting);
        struct db_queue rest = {0};
        if (x->kind == DBQ_STATEMENT && x->stmt == DB_PUBLISH && !x->solo &&
            x->params[PUB_PRECONDITIONS] == NULL)
            db_take_batch(c, x, group, &rest);
        struct db_query *last = rest.tail ? rest.tail : x;
        int size = rest.count + 1;
        bool join = db_may_join(c, last, c->waiting.head, group + size - 1);
        bool ok = rest.count ? db_send_batch(c, x, &rest, !join) : db_send_pipelined(c, x, !join);
        if (!ok) {
            db_fail_later(c, "could not send a query");
            return;
        }
        if (!join && db_query_commits(x))
            c->commit_groups++;
        if (!join && group + size - 1 > 1)
            log_debug("database %s: a group of %d statements in one transaction", c->label,
                      group + size - 1);
        group = join ? group + size : 1;
        any = true;
    }
    if (any) {
        int rc = PQflush(c->pg);
        if (rc < 0) {
            db_fail_later(c, "could not send to the database");
            return;
        }
        int events = LOOP_READ | (rc == 1 ? LOOP_WRITE : 0);
        if (c->watched_events != events && loop_fd_modify(c->loop, c->fd, events) == 0)
            c->watched_events = events;
    }
}

static void db_pump_fired(struct loop *loop, void *arg)
{
    (void)loop;
    db_pump(arg);
}

static void db_enter_pipeline(struct db_conn *c)
{
    if (!PQenterPipelineMode(c->pg)) {
        db_fail(c, "could not enter pipeline mode");
        return;
    }
    c->pipeline = true;
    db_set_state(c, DB_PREPARING);
    /* Prepares go first, ahead of anything queued. */
    struct db_queue pending = c->waiting;
    memset(&c->waiting, 0, sizeof c->waiting);
    for (int i = 0; i < DB_STMT_COUNT; i++) {
        struct db_query *x = xcalloc(1, sizeof *x);
        x->kind = DBQ_PREPARE;
        x->stmt = (enum db_stmt)i;
        db_queue_push(&c->waiting, x);
    }
    struct db_query *x;
    while ((x = db_queue_pop(&pending)))
        db_queue_push(&c->waiting, x);
    c->sent.count += 0;
    /* Prepares are internal: send them regardless of the pipeline limit. */
    while (c->waiting.head && c->waiting.head->kind == DBQ_PREPARE) {
        x = db_queue_pop(&c->waiting);
        if (!db_send_pipelined(c, x, true)) {
            db_fail(c, PQerrorMessage(c->pg));
            return;
        }
    }
    db_flush(c);
}

static void db_became_ready(struct db_conn *c)
{
    db_set_state(c, DB_READY);
    c->backoff_ms = c->cfg->db_reconnect_min_ms;
    log_info("database %s: ready", c->label);
    if (c->h.on_ready)
        c->h.on_ready(c->h.arg);
    db_pump(c);
}

/* A prepare's result: a failure is fatal (a bug or a schema mismatch). */
static void db_check_prepare(struct db_conn *c, struct db_query *x)
{
    if (x->res && PQresultStatus(x->res) == PGRES_COMMAND_OK)
        return;
    char why[600];
    snprintf(why, sizeof why, "could not prepare %s: %s", db_statements[x->stmt].name,
             x->res ? db_error(x->res) : "no result");
    log_error("database %s: %s", c->label, why);
    if (c->h.on_fatal)
        c->h.on_fatal(c->h.arg, why);
}

/*
 * Gives each query carried by batch leader x its own one-row result, row k
 * of the batch's (x keeps row 0).  A failed batch leaves them without: the
 * group then counts as failed and each publish runs again alone.
 */
static void db_batch_split(struct db_query *x)
{
    PGresult *all = x->res;
    if (all == NULL || !db_ok(all))
        return;
    /* The function returns one row per publish, in order. */
    PS_ASSERT(PQntuples(all) == x->batch && PQnfields(all) == 4);
    struct db_query *m = x;
    for (int k = 0; k < x->batch && m; k++, m = m->next) {
        PGresult *r = PQcopyResult(all, PG_COPYRES_ATTRS);
        if (r == NULL)
            abort(); /* out of memory: as xmalloc would */
        for (int col = 0; col < 4; col++) {
            bool null = PQgetisnull(all, k, col) != 0;
            if (!PQsetvalue(r, 0, col, null ? NULL : PQgetvalue(all, k, col),
                            null ? -1 : PQgetlength(all, k, col)))
                abort();
        }
        if (m != x)
            PQclear(m->res);
        m->res = r;
    }
    PQclear(all);
}

static bool db_query_failed(const struct db_query *x)
{
    return x->res == NULL || !db_ok(x->res);
}

/*
 * The sync after a group arrived: the group's transaction is over.  Only
 * now do callbacks run, so a caller never acts (say, acknowledges a
 * publish) on a result whose transaction might not have committed.  A
 * group with a failure was rolled back as a whole: its members go back to
 * the front of the queue to run alone.
 */
static void db_group_done(struct db_conn *c)
{
    struct db_queue group = {0};
    struct db_query *x;
    do {
        x = db_queue_pop(&c->sent);
        PS_ASSERT(x != NULL);
        db_queue_push(&group, x);
    } while (!x->group_end);
    if (db_query_commits(x)) {
        PS_ASSERT(c->commit_groups > 0);
        c->commit_groups--;
    }
    for (x = group.head; x; x = x->next)
        if (x->batch > 1)
            db_batch_split(x);
    bool failed = false;
    for (x = group.head; x; x = x->next)
        failed = failed || db_query_failed(x);
    if (failed && group.count > 1) {
        log_debug("database %s: a group of %d failed, retrying each alone", c->label, group.count);
        struct db_queue front = {0};
        while ((x = db_queue_pop(&group))) {
            PQclear(x->res);
            x->res = NULL;
            x->ended = x->group_end = false;
            x->solo = true;
            x->batch = 0;
            x->batched = false;
            db_queue_push(&front, x);
        }
        while ((x = db_queue_pop(&c->waiting)))
            db_queue_push(&front, x);
        c->waiting = front;
        return;
    }
    bool prepares = false;
    while ((x = db_queue_pop(&group))) {
        if (x->kind == DBQ_PREPARE) {
            prepares = true;
            db_check_prepare(c, x);
        } else if (!x->done && x->cb) {
            x->done = true;
            if (x->res)
                x->cb(x->arg, x->res, NULL);
            else
                x->cb(x->arg, NULL, "no result");
        }
        db_query_free(x);
        if (c->pg == NULL)
            break; /* a callback closed the connection */
    }
    while ((x = db_queue_pop(&group)))
        db_query_abort(x, "database unavailable");
    if (prepares && c->state == DB_PREPARING &&
        (c->sent.head == NULL || c->sent.head->kind != DBQ_PREPARE))
        db_became_ready(c);
}

/* The first query in the pipeline whose results are still coming. */
static struct db_query *db_reading(struct db_conn *c)
{
    struct db_query *x = c->sent.head;
    while (x && x->ended)
        x = x->next;
    return x;
}

static void db_read_pipeline(struct db_conn *c)
{
    while (c->pg && c->sent.head && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        struct db_query *x = db_reading(c);
        if (r == NULL) {
            if (x)
                x->ended = true; /* its results are complete; maybe a sync follows */
            continue;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            db_group_done(c);
            continue;
        }
        if (x && x->res == NULL)
            x->res = r; /* kept until the group's sync */
        else
            PQclear(r);
    }
}

static void db_read_notifies(struct db_conn *c)
{
    PGnotify *n;
    while (c->pg && (n = PQnotifies(c->pg)) != NULL) {
        if (c->h.on_notify)
            c->h.on_notify(c->h.arg, n->relname, n->extra);
        PQfreemem(n);
    }
}

static void db_connect_poll(struct db_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        db_watch(c, LOOP_READ);
        return;
    case PGRES_POLLING_WRITING:
        db_watch(c, LOOP_WRITE);
        return;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(c->pg, 1) != 0) {
            db_fail(c, "could not set non-blocking mode");
            return;
        }
        db_watch(c, LOOP_READ);
        log_debug("database %s: connected", c->label);
        db_start_migration(c);
        return;
    default:
        log_warn("database %s: could not connect: %s", c->label, PQerrorMessage(c->pg));
        db_fail(c, "connect failed");
        return;
    }
}

static void db_on_io(struct loop *loop, int fd, int events, void *arg)
{
    struct db_conn *c = arg;
    (void)loop, (void)fd;
    if (c->state == DB_CONNECTING) {
        db_connect_poll(c);
        return;
    }
    if (events & LOOP_WRITE) {
        db_flush(c);
        if (c->pg == NULL)
            return;
    }
    if (!(events & LOOP_READ))
        return;
    if (!PQconsumeInput(c->pg)) {
        db_fail(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->state == DB_MIGRATING)
        db_read_migration(c);
    else
        db_read_pipeline(c);
    if (c->pg == NULL)
        return;
    db_read_notifies(c);
    if (c->pg && PQstatus(c->pg) == CONNECTION_BAD)
        db_fail(c, "connection closed");
    else
        db_pump(c);
}

/* Timeouts: a query past its deadline gets its callback with an error at
 * once; if it was sent, its result is discarded when it arrives. */
static void db_check_timeouts(struct db_conn *c)
{
    uint64_t now = loop_now_ms();
    for (struct db_query *x = c->sent.head; x; x = x->next) {
        if (!x->done && x->kind == DBQ_STATEMENT && x->deadline <= now) {
            x->done = true;
            log_warn("database %s: query %s timed out", c->label,
                     db_statements[x->stmt].name);
            if (x->cb)
                x->cb(x->arg, NULL, "database timeout");
        }
    }
    while (c->waiting.head && c->waiting.head->deadline <= now) {
        struct db_query *x = db_queue_pop(&c->waiting);
        db_query_abort(x, "database timeout");
    }
}

static void db_timer_fired(struct loop *loop, void *arg)
{
    struct db_conn *c = arg;
    (void)loop;
    if (c->deferred_failure) {
        const char *why = c->deferred_failure;
        c->deferred_failure = NULL;
        db_fail(c, why);
        return;
    }
    if (c->state == DB_BACKOFF) {
        db_connect(c);
        return;
    }
    if (c->state == DB_READY) {
        db_check_timeouts(c);
        if (db_conn_outstanding(c) > 0)
            loop_timer_arm(c->loop, &c->timer, DB_TICK_MS, db_timer_fired, c);
    }
}

int db_conn_submit(struct db_conn *c, enum db_stmt stmt, int nparams,
                   const char *const *params, db_cb cb, void *arg)
{
    PS_ASSERT(stmt >= 0 && stmt < DB_STMT_COUNT);
    PS_ASSERT(nparams == db_statements[stmt].nparams);
    if (c->state != DB_READY)
        return PS_ERROR;
    if (db_conn_outstanding(c) >= c->cfg->db_max_queued)
        return PS_AGAIN;
    struct db_query *x = xcalloc(1, sizeof *x);
    x->kind = DBQ_STATEMENT;
    x->stmt = stmt;
    x->nparams = nparams;
    x->params = xcalloc((size_t)(nparams ? nparams : 1), sizeof *x->params);
    for (int i = 0; i < nparams; i++)
        x->params[i] = params[i] ? xstrdup(params[i]) : NULL;
    x->cb = cb;
    x->arg = arg;
    x->deadline = loop_now_ms() + (uint64_t)c->cfg->db_request_timeout_ms;
    db_queue_push(&c->waiting, x);
    if (!c->timer.armed && c->deferred_failure == NULL)
        loop_timer_arm(c->loop, &c->timer, DB_TICK_MS, db_timer_fired, c);
    /* Sent at the end of this loop iteration, not now: every publish of a
     * burst read from the component in one go then joins one group. */
    if (!c->pump_timer.armed)
        loop_timer_arm(c->loop, &c->pump_timer, 0, db_pump_fired, c);
    return PS_OK;
}

void db_conn_free(struct db_conn *c)
{
    db_drop(c, "shutting down", false);
    free(c->label);
    c->label = NULL;
}

