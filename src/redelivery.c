/*
 * redelivery.c - retries of bounced notifications and the outbox janitor.
 *
 * Owns no memory across calls: the state lives in pubsub.redelivery.  The
 * queries go through the request pool (shard key "redelivery": those in
 * flight together run in order on one connection).
 */
#include "redelivery.h"

#include <stdio.h>
#include <string.h>

#include "db.h"
#include "jid.h"
#include "log.h"
#include "notify.h"
#include "server.h"

/* Small batches, repeated while full: the janitor shares a connection with
 * publishes, which wait behind whatever runs before them. */
#define EVENTS_EXPIRE_BATCH 500

static void redelivery_bounce_cb(void *arg, const PGresult *res, const char *error)
{
    char *id = arg;
    if (res && db_ok(res))
        log_info("notification %s bounced: %s", id, db_value(res, 0, 0));
    else
        log_warn("notification %s bounced but could not be recorded: %s", id,
                 res ? db_error(res) : error);
    free(id);
}

void redelivery_on_bounce(struct server *s, const char *id, const char *from,
                          const char *condition)
{
    long long node_id, seq, sub_id;
    if (notify_parse_id(id, &node_id, &seq, &sub_id) != 0)
        return; /* not a notification of ours */
    char n[24], q[24], u[24], max[16], base[16];
    snprintf(n, sizeof n, "%lld", node_id);
    snprintf(q, sizeof q, "%lld", seq);
    snprintf(u, sizeof u, "%lld", sub_id);
    snprintf(max, sizeof max, "%d", s->cfg->redelivery_max_attempts);
    snprintf(base, sizeof base, "%d", s->cfg->redelivery_base_ms);
    char *origin = from ? jid_bare(from) : NULL;
    if (origin == NULL) {
        log_info("notification %s bounced without a valid sender: ignored", id);
        return;
    }
    char *why = xasprintf("%s from %s", condition ? condition : "error", from);
    const char *params[] = {n, q, u, why, max, base, origin};
    char *copy = xstrdup(id);
    if (db_pool_submit(&s->pool, "redelivery", DB_RECORD_BOUNCE, 7, params, redelivery_bounce_cb,
                       copy) != PS_OK) {
        log_warn("notification %s bounced (%s) while the database is unavailable", id, why);
        free(copy);
    }
    free(why);
    free(origin);
}

/* Sends the retries the database handed out. */
static void redelivery_take_cb(void *arg, const PGresult *res, const char *error)
{
    struct server *s = arg;
    if (res == NULL || !db_ok(res)) {
        log_warn("redelivery: could not read due retries: %s", res ? db_error(res) : error);
        return;
    }
    struct buf msg = BUF_INIT;
    bool unsent = false;
    for (int i = 0; i < PQntuples(res); i++) {
        struct notify_event e = {db_value(res, i, 7), db_int(res, i, 0), db_int(res, i, 1),
                                 notify_kind_parse(db_value(res, i, 4)),
                                 db_is_null(res, i, 5) ? NULL : db_value(res, i, 5),
                                 db_is_null(res, i, 6) ? NULL : db_value(res, i, 6),
                                 db_value(res, i, 9)[0] == 't'};
        buf_reset(&msg);
        notify_message_open(&msg, s->cfg->component_jid, db_value(res, i, 3), &e,
                            db_value(res, i, 2), db_value(res, i, 8)[0] == 't');
        notify_event_body(&msg, &e);
        buf_puts(&msg, "</message>");
        if (link_send(&s->link, msg.data, msg.len) != PS_OK) {
            log_warn("redelivery: retry of ps-%lld-%lld-%s not written: link down or full", e.node_id,
                     e.seq, db_value(res, i, 2));
            unsent = true;
        } else
            log_info("redelivery: retried ps-%lld-%lld-%s to %s", e.node_id, e.seq,
                     db_value(res, i, 2), db_value(res, i, 3));
    }
    buf_free(&msg);
    if (unsent) /* not written: due again, rather than counted as delivered */
        redelivery_link_ready(s);
}

static void redelivery_quiet_cb(void *arg, const PGresult *res, const char *error)
{
    const char *what = arg;
    if (res == NULL || !db_ok(res))
        log_warn("%s failed: %s", what, res ? db_error(res) : error);
}

static void redelivery_expire_events(struct server *s);

static void redelivery_expired_cb(void *arg, const PGresult *res, const char *error)
{
    struct server *s = arg;
    if (res == NULL || !db_ok(res)) {
        log_warn("expiring outbox rows failed: %s", res ? db_error(res) : error);
        return;
    }
    if (db_int(res, 0, 0) == EVENTS_EXPIRE_BATCH)
        redelivery_expire_events(s); /* more are due */
}

/* Removes dispatched outbox rows older than event_retention_s. */
static void redelivery_expire_events(struct server *s)
{
    if (s->stopping)
        return;
    char retention[16], batch[16];
    snprintf(retention, sizeof retention, "%d", s->cfg->event_retention_s);
    snprintf(batch, sizeof batch, "%d", EVENTS_EXPIRE_BATCH);
    const char *params[] = {retention, batch};
    if (db_pool_submit(&s->pool, "redelivery", DB_EXPIRE_EVENTS, 2, params, redelivery_expired_cb,
                       s) != PS_OK)
        log_debug("expiring outbox rows: database not ready");
}

void redelivery_tick(struct server *s)
{
    if (s->stopping)
        return;
    redelivery_expire_events(s);
    if (!link_is_ready(&s->link))
        return;
    char limit[16], window[16];
    snprintf(limit, sizeof limit, "%d", s->cfg->redelivery_batch);
    snprintf(window, sizeof window, "%d", s->cfg->redelivery_window_ms);
    const char *take[] = {limit, window};
    if (db_pool_submit(&s->pool, "redelivery", DB_REDELIVERY_TAKE, 2, take, redelivery_take_cb, s) !=
        PS_OK)
        log_debug("redelivery: database not ready");
}

void redelivery_link_ready(struct server *s)
{
    if (db_pool_submit(&s->pool, "redelivery", DB_REDELIVERY_RESET, 0, NULL, redelivery_quiet_cb,
                       (void *)"resetting retries") != PS_OK)
        log_debug("redelivery: database not ready, retries reset later");
}
