/*
 * dispatcher.c - outbox to notifications, at least once, in order per node.
 *
 * Owns: its database connection, the table of claimed nodes (struct dnode)
 * and the FIFO of batches waiting for their barrier or commit.
 *
 * Positions are (seq, cursor): every event with seq <= seq delivered, and
 * for event seq + 1 every subscription with sub_id <= cursor (0: none).
 * Per node: committed <= sent.  `sent` advances when a batch is written to
 * the link; `committed` when the barrier ping that followed the batch was
 * answered and pubsub.dispatch_commit() returned.  Losing the link sends
 * `sent` back to `committed` (the batch goes out again: duplicates, never
 * loss).  Losing the database connection loses the node locks: every
 * dnode is dropped and the nodes are claimed again.
 *
 * A dnode is freed only when no query for it is in flight (pending == 0).
 *
 * Finding work: a committed change wakes its node (directly from this
 * process's handlers, by NOTIFY from the others), and the dispatcher claims
 * just the woken nodes.  Scanning every node for undelivered events costs
 * O(nodes), so it is done only when a wake-up may have been missed: when
 * the database connection or the link (re)starts, when a peer dispatcher's
 * session ended (its node locks were released without anyone being woken;
 * every dispatcher holds a shared presence lock, and the poll compares the
 * holders' backends with the last poll's), at the poll after a scan that
 * found nodes (a scan claims at most the room under dispatch_max_nodes),
 * and every FULL_SCAN_POLLS polls as the last safety net.
 */
#include "dispatcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "notify.h"
#include "pubsub.h"
#include "redelivery.h"
#include "server.h"
#include "stanza.h"

#define BARRIER_TIMEOUT_MS 30000
#define MAX_BATCHES_PER_NODE 8
/* After a failed or refused position commit, the next try waits this long. */
#define COMMIT_RETRY_MS 200
#define DISPATCH_BATCH_BYTES 1048576
#define FULL_SCAN_POLLS 10 /* the unconditional scan: every 20 s by default */

enum dnode_state {
    DN_LOADING,   /* position query in flight */
    DN_READY,     /* may fetch */
    DN_FETCHING,  /* events + subscribers queries in flight */
    DN_RELEASING, /* advisory unlock in flight */
};

struct devent {
    long long seq;
    long long gseq; /* the global order (collections) */
    char kind; /* 'p' publish, 'r' retract, 'd' delete, 'u' purge, 'c' config */
    char *item_id;
    char *payload;
};

/* One subscription that hears of a node's events: a row of the
 * subscription query (strings borrowed from its PGresult) or of the
 * audience a local publish returned (strings in dnode.audience_text). */
struct dsub {
    long long sub_id;
    const char *jid;
    long long start_seq;
    const char *subid;
    bool include_body;
    const char *via;       /* the collection it comes through; NULL: the node's own */
    long long start_gseq;
    /* A JID with several subscriptions: all of them (see
     * dispatcher_next_subid); NULL: just this one. */
    const char *subids;
};

struct dnode {
    struct dispatcher *d;
    long long id;
    char *name;
    bool deliver_payloads;
    bool headline;
    bool notify_delete;
    bool in_collection; /* has a parent: collection subscribers hear too */
    enum dnode_state state;
    long long committed_seq, committed_cursor;
    /* Confirmed by a barrier; committed at most every
     * dispatch_commit_interval_ms (dnode_commit). */
    long long confirmed_seq, confirmed_cursor;
    long long sent_seq, sent_cursor;
    long long committing_seq, committing_cursor; /* the commit in flight */
    bool commit_in_flight;
    uint64_t last_commit_ms;
    uint64_t commit_retry_ms; /* after a failed commit: not before then */
    long long fetch_seq, fetch_cursor; /* the position the fetch in flight started at */
    bool more;       /* there may be events after sent: fetch again */
    bool gone;       /* deleted for good by dispatch_commit */
    bool rewake;     /* woken while releasing: claim again afterwards */
    uint64_t idle_since_ms; /* 0: busy */
    int pending;     /* queries in flight that point at this dnode */
    int batches;     /* batches waiting for their barrier */
    struct devent *events;
    int nevents;
    bool events_failed;
    /* The local hand-off: events this process published (offers, in seq
     * order) and the audience the newest of them returned. */
    struct devent *offers;
    int noffers;
    size_t offer_bytes;
    char *audience_text;   /* owns the strings of audience */
    struct dsub *audience;
    int naudience;
    long long audience_seq; /* the seq it came with; 0: none */
    struct dnode *next;
};

struct batch {
    unsigned long long barrier;
    struct dnode *node;
    long long seq, cursor;
    uint64_t sent_ms;
    struct batch *next;
};

struct dispatcher {
    struct server *s;
    struct db_conn db;
    struct dnode *nodes;
    int nnodes;
    struct batch *batches, *batches_tail;
    unsigned long long open_barrier;     /* the ping new batches wait for */
    unsigned long long inflight_barrier; /* the ping sent and unanswered, 0: none */
    bool stopping;
    bool claim_in_flight;
    bool claim_in_flight_any; /* and it is a general one */
    bool expiring;           /* an expiry batch is in flight */
    bool claim_any;          /* a general claim (a scan of every node) is wanted */
    bool scan_again;         /* and one at the next poll (a peer left, the last one found nodes) */
    int polls_since_scan;
    bool peers_in_flight;
    char *peers;             /* the live dispatchers' backends at the last poll, NULL: unknown */
    long long *woken;        /* node ids to claim */
    int nwoken, cap_woken;
    struct loop_timer poll_timer;
    struct loop_timer kick_timer; /* end of this loop iteration: dispatcher_kick */
    struct loop_timer commit_timer; /* positions confirmed but not yet committed */
    uint64_t notifications_sent;
    uint64_t handed_off; /* events fanned out from a local publish, without a fetch */
};

static void dispatcher_fetch(struct dispatcher *d, struct dnode *n);
static void dispatcher_kick(struct dispatcher *d);
static void dispatcher_kick_fired(struct loop *loop, void *arg);
static void dispatcher_claim(struct dispatcher *d);
static void dispatcher_expire(struct dispatcher *d);

/* ---- dnode table ------------------------------------------------------- */

static struct dnode *dnode_find(struct dispatcher *d, long long id)
{
    for (struct dnode *n = d->nodes; n; n = n->next)
        if (n->id == id)
            return n;
    return NULL;
}

static void dnode_free_events(struct dnode *n)
{
    for (int i = 0; i < n->nevents; i++) {
        free(n->events[i].item_id);
        free(n->events[i].payload);
    }
    free(n->events);
    n->events = NULL;
    n->nevents = 0;
}

static void dnode_free_offers(struct dnode *n)
{
    for (int i = 0; i < n->noffers; i++) {
        free(n->offers[i].item_id);
        free(n->offers[i].payload);
    }
    free(n->offers);
    n->offers = NULL;
    n->noffers = 0;
    n->offer_bytes = 0;
}

static void dnode_free_audience(struct dnode *n)
{
    free(n->audience_text);
    free(n->audience);
    n->audience_text = NULL;
    n->audience = NULL;
    n->naudience = 0;
    n->audience_seq = 0;
}

static void dnode_unlink_free(struct dispatcher *d, struct dnode *n)
{
    PS_ASSERT(n->pending == 0);
    struct dnode **pp = &d->nodes;
    while (*pp != n)
        pp = &(*pp)->next;
    *pp = n->next;
    d->nnodes--;
    dnode_free_events(n);
    dnode_free_offers(n);
    dnode_free_audience(n);
    free(n->name);
    free(n);
}

/* ---- claiming ------------------------------------------------------------ */

static void dispatcher_add_woken(struct dispatcher *d, long long id)
{
    for (int i = 0; i < d->nwoken; i++)
        if (d->woken[i] == id)
            return;
    if (d->nwoken == d->cap_woken) {
        d->cap_woken = d->cap_woken ? d->cap_woken * 2 : 16;
        d->woken = xrealloc(d->woken, (size_t)d->cap_woken * sizeof *d->woken);
    }
    d->woken[d->nwoken++] = id;
}

static void dispatcher_position_cb(void *arg, const PGresult *res, const char *error);

/* Reads a claimed node's position; when the connection's queue is full,
 * the next poll tries again (the node stays DN_LOADING, its lock held). */
static void dnode_load_position(struct dispatcher *d, struct dnode *n)
{
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", n->id);
    const char *params[] = {ids};
    if (db_conn_submit(&d->db, DB_DISPATCH_POSITION, 1, params, dispatcher_position_cb, n) == PS_OK)
        n->pending++;
    else
        log_warn("dispatcher: node %lld: could not load its position (again at the next poll)",
                 n->id);
}

static void dispatcher_claim_cb(void *arg, const PGresult *res, const char *error)
{
    struct dispatcher *d = arg;
    d->claim_in_flight = false;
    bool any = d->claim_in_flight_any;
    d->claim_in_flight_any = false;
    if (res == NULL || !db_ok(res)) {
        if (res) {
            log_error("dispatcher: claim failed: %s", db_error(res));
        } else if (d->db.state == DB_READY) {
            /* Timed out: the statement may still take locks we would never
             * know about, keeping those nodes from every dispatcher.  A new
             * session drops them. */
            log_warn("dispatcher: claim failed (%s): resetting the connection", error);
            db_conn_reset(&d->db, "claim timed out");
        }
        /* The woken ids went with it: look at every node at the next poll. */
        d->scan_again = true;
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        long long id = db_int(res, i, 0);
        PS_ASSERT(dnode_find(d, id) == NULL);
        struct dnode *n = xcalloc(1, sizeof *n);
        n->d = d;
        n->id = id;
        n->state = DN_LOADING;
        n->next = d->nodes;
        d->nodes = n;
        d->nnodes++;
        dnode_load_position(d, n);
        log_debug("dispatcher: claimed node %lld", id);
    }
    /* A scan is limited to the room left under dispatch_max_nodes: while
     * it finds nodes, there may be more, so scan again at the next poll
     * (when idle nodes have been released), until one finds none. */
    if (any && PQntuples(res) > 0)
        d->scan_again = true;
    dispatcher_kick(d);
}

/* Claims the woken nodes (or any pending node) that no process holds. */
static void dispatcher_claim(struct dispatcher *d)
{
    /* Without a stream there is nothing to deliver on: a node claimed now
     * would wait here, while a peer with a working stream could take it
     * (a second process refused with "component already connected" took
     * nodes from the first).  dispatcher_link_ready claims again. */
    if (d->stopping || d->claim_in_flight || !db_conn_ready(&d->db) ||
        !link_is_ready(&d->s->link))
        return;
    if (d->nwoken == 0 && !d->claim_any)
        return;
    int room = d->s->cfg->dispatch_max_nodes - d->nnodes;
    if (room <= 0)
        return;
    struct buf held = BUF_INIT, wanted = BUF_INIT;
    buf_puts(&held, "{");
    for (struct dnode *n = d->nodes; n; n = n->next)
        buf_printf(&held, "%s%lld", held.len > 1 ? "," : "", n->id);
    buf_puts(&held, "}");
    if (!d->claim_any) {
        buf_puts(&wanted, "{");
        for (int i = 0; i < d->nwoken; i++)
            buf_printf(&wanted, "%s%lld", i ? "," : "", d->woken[i]);
        buf_puts(&wanted, "}");
    }
    char limit[24];
    snprintf(limit, sizeof limit, "%d", room);
    const char *params[] = {held.data, limit, wanted.data};
    bool any = d->claim_any;
    /* Refused (the queue is full): the woken ids stay for the next kick. */
    if (db_conn_submit(&d->db, any ? DB_DISPATCH_CLAIM_ANY : DB_DISPATCH_CLAIM, any ? 2 : 3,
                       params, dispatcher_claim_cb, d) == PS_OK) {
        d->claim_in_flight = true;
        d->claim_in_flight_any = any;
        d->nwoken = 0;
        d->claim_any = false;
        if (any)
            d->polls_since_scan = 0;
    }
    buf_free(&held);
    buf_free(&wanted);
}

/* Unlocks an idle node and forgets it. */
static void dispatcher_release(struct dispatcher *d, struct dnode *n);

/* ---- fetching and fan-out --------------------------------------------------- */

static bool dispatcher_may_fetch(struct dispatcher *d, struct dnode *n)
{
    return !d->stopping && n->state == DN_READY && n->name != NULL && n->more && !n->gone &&
           n->batches < MAX_BATCHES_PER_NODE && link_can_take_more(&d->s->link);
}

static void dispatcher_events_cb(void *arg, const PGresult *res, const char *error);
static void dispatcher_subscribers_cb(void *arg, const PGresult *res, const char *error);

static void dispatcher_fetch(struct dispatcher *d, struct dnode *n)
{
    if (!dispatcher_may_fetch(d, n))
        return;
    char id[24], seq[24], limit[24], bytes[24], cursor[24], sublimit[24];
    snprintf(id, sizeof id, "%lld", n->id);
    snprintf(seq, sizeof seq, "%lld", n->sent_seq);
    snprintf(limit, sizeof limit, "%d", n->sent_cursor ? 1 : d->s->cfg->dispatch_events);
    snprintf(bytes, sizeof bytes, "%d", DISPATCH_BATCH_BYTES);
    snprintf(cursor, sizeof cursor, "%lld", n->sent_cursor);
    snprintf(sublimit, sizeof sublimit, "%d", d->s->cfg->dispatch_batch + 1);
    const char *ev_params[] = {id, seq, limit, bytes};
    const char *sub_params[] = {id, cursor, sublimit};
    n->more = false;
    n->events_failed = false;
    n->fetch_seq = n->sent_seq;
    n->fetch_cursor = n->sent_cursor;
    /* Events first, subscribers second: the second statement's snapshot is
     * newer, so every subscription that precedes a fetched event (the
     * node lock orders them) is seen. */
    if (db_conn_submit(&d->db, DB_DISPATCH_EVENTS, 4, ev_params, dispatcher_events_cb, n) != PS_OK) {
        n->more = true;
        return;
    }
    n->pending++;
    if (db_conn_submit(&d->db, n->in_collection ? DB_DISPATCH_AUDIENCE : DB_DISPATCH_SUBSCRIBERS, 3,
                       sub_params, dispatcher_subscribers_cb, n) != PS_OK) {
        n->events_failed = true; /* events_cb will clean up */
        n->more = true;
        return;
    }
    n->pending++;
    n->state = DN_FETCHING;
}

static void dispatcher_events_cb(void *arg, const PGresult *res, const char *error)
{
    struct dnode *n = arg;
    n->pending--;
    dnode_free_events(n);
    if (res == NULL || !db_ok(res)) {
        if (res)
            log_error("dispatcher: node %lld: reading events failed: %s", n->id, db_error(res));
        else
            log_debug("dispatcher: node %lld: reading events failed: %s", n->id, error);
        n->events_failed = true;
        return;
    }
    int rows = PQntuples(res);
    n->events = xcalloc((size_t)(rows ? rows : 1), sizeof *n->events);
    n->nevents = rows;
    for (int i = 0; i < rows; i++) {
        struct devent *e = &n->events[i];
        e->seq = db_int(res, i, 0);
        e->kind = (char)notify_kind_parse(db_value(res, i, 1));
        e->item_id = db_is_null(res, i, 2) ? NULL : xstrdup(db_value(res, i, 2));
        e->payload = db_is_null(res, i, 4) ? NULL : xstrdup(db_value(res, i, 4));
        e->gseq = db_int(res, i, 5);
    }
}

/* Does a subscription that starts at node position start_seq (a leaf's
 * own) or at global position start_gseq (a collection's, via != NULL)
 * start before event e? */
static bool dispatcher_starts_before(const struct devent *e, bool via, long long start)
{
    if (!via)
        return start < e->seq;
    return e->kind != 'd' && e->kind != 'c' && start < e->gseq;
}

/*
 * A JID with several subscriptions comes as one row whose subids column
 * lists them, "L<start_seq>:<subid>" (the leaf's own) or
 * "G<start_gseq>:<subid>" (a collection's) separated by spaces; upper
 * case letters mark the SubIDs that go into SHIM headers (see
 * dispatch_audience in schema/025_multi_subscribe.sql).  Returns the next
 * entry at or after *p that started before e (and is upper case when
 * headers_only), its SubID in [*subid, *subid + *len), advancing *p;
 * false at the end.
 */
static bool dispatcher_next_subid(const struct devent *e, bool headers_only, const char **p,
                                  const char **subid, size_t *len)
{
    while (**p) {
        const char *entry = *p;
        const char *colon = strchr(entry, ':');
        if (colon == NULL)
            return false;
        const char *end = colon + strcspn(colon, " ");
        *p = *end ? end + 1 : end;
        bool via = entry[0] == 'G' || entry[0] == 'g';
        if (headers_only && entry[0] != 'L' && entry[0] != 'G')
            continue;
        if (dispatcher_starts_before(e, via, strtoll(entry + 1, NULL, 10))) {
            *subid = colon + 1;
            *len = (size_t)(end - colon - 1);
            return true;
        }
    }
    return false;
}

/* Does the JID of subscription sub hear of event e? */
static bool dispatcher_eligible(const struct devent *e, const struct dsub *sub)
{
    if (sub->subids != NULL) {
        const char *p = sub->subids, *subid;
        size_t len;
        return dispatcher_next_subid(e, false, &p, &subid, &len);
    }
    return dispatcher_starts_before(e, sub->via != NULL,
                                    sub->via != NULL ? sub->start_gseq : sub->start_seq);
}

/* Appends the SHIM headers of a notification: the collection it came
 * through (XEP-0248) and, for a JID with several subscriptions, the
 * SubIDs that produced it (XEP-0060 §7.1.2.2, §12.x "impl-shim"). */
static void dispatcher_headers(struct buf *msg, const struct devent *e, const struct dsub *sub)
{
    bool via = sub->via != NULL;
    const char *p = "", *subid;
    size_t len;
    if (sub->subids != NULL && (e->kind == 'p' || e->kind == 'r'))
        p = sub->subids;
    const char *probe = p;
    bool subids = dispatcher_next_subid(e, true, &probe, &subid, &len);
    if (!via && !subids)
        return;
    buf_puts(msg, "<headers xmlns='http://jabber.org/protocol/shim'>");
    if (via) {
        buf_puts(msg, "<header name='Collection'>");
        buf_put_escaped(msg, sub->via);
        buf_puts(msg, "</header>");
    }
    while (dispatcher_next_subid(e, true, &p, &subid, &len)) {
        buf_puts(msg, "<header name='SubID'>");
        buf_put_escaped_n(msg, subid, len);
        buf_puts(msg, "</header>");
    }
    buf_puts(msg, "</headers>");
}

/* The notify module's view of event e of node n. */
static struct notify_event dispatcher_notify_event(const struct dnode *n, const struct devent *e)
{
    struct notify_event ne = {n->name, n->id, e->seq, (enum notify_kind)e->kind, e->item_id,
                              e->payload, n->deliver_payloads};
    return ne;
}

/* Writes one notification.  Returns link_send's status. */
static int dispatcher_send_one(struct dispatcher *d, const struct dnode *n, const struct devent *e,
                               const struct dsub *sub, const struct buf *body, struct buf *msg)
{
    struct notify_event ne = dispatcher_notify_event(n, e);
    char sub_id[24];
    snprintf(sub_id, sizeof sub_id, "%lld", sub->sub_id);
    buf_reset(msg);
    notify_message_open(msg, d->s->cfg->component_jid, sub->jid, &ne, sub_id, n->headline);
    if (sub->include_body) /* pubsub#include_body */
        notify_body_text(msg, &ne);
    buf_append(msg, body->data, body->len);
    dispatcher_headers(msg, e, sub);
    buf_puts(msg, "</message>");
    return link_send(&d->s->link, msg->data, msg->len);
}

/* Sends the ping that closes the open barrier: the XMPP server answers
 * it after routing everything written before it.  Returns false when the
 * link took nothing (it is going down). */
static bool dispatcher_ping(struct dispatcher *d)
{
    struct buf b = BUF_INIT;
    buf_printf(&b, "<iq type='get' id='pb-%llu' from='", d->open_barrier);
    buf_put_escaped(&b, d->s->cfg->component_jid);
    buf_puts(&b, "' to='");
    buf_put_escaped(&b, config_barrier_jid(d->s->cfg));
    buf_puts(&b, "'><ping xmlns='" NS_PING "'/></iq>");
    int rc = link_send(&d->s->link, b.data, b.len);
    buf_free(&b);
    if (rc != PS_OK)
        return false;
    d->inflight_barrier = d->open_barrier++;
    return true;
}

/*
 * Records a batch written up to (seq, cursor) and puts it behind a
 * barrier.  At most one ping is unanswered at a time: batches written
 * meanwhile wait for the next one, sent when the answer comes.  One ping
 * per round trip, however many batches, so the server spends its time on
 * notifications, not on pings.
 */
static void dispatcher_send_barrier(struct dispatcher *d, struct dnode *n, long long seq,
                                    long long cursor)
{
    struct batch *b = xcalloc(1, sizeof *b);
    b->barrier = d->open_barrier;
    b->node = n;
    b->seq = seq;
    b->cursor = cursor;
    b->sent_ms = loop_now_ms();
    if (d->inflight_barrier == 0 && !dispatcher_ping(d)) {
        free(b);
        return; /* the link is down: the batch will be sent again */
    }
    if (d->batches_tail)
        d->batches_tail->next = b;
    else
        d->batches = b;
    d->batches_tail = b;
    n->batches++;
    n->sent_seq = seq;
    n->sent_cursor = cursor;
}

/*
 * Sends the fetched events to the fetched subscriptions, from n's sent
 * position, within the batch budget; then the barrier.  See the file
 * comment for positions.
 */
static void dispatcher_fan_out(struct dispatcher *d, struct dnode *n, const struct dsub *subs,
                               int nsubs)
{
    int budget = d->s->cfg->dispatch_batch;
    bool paged = n->sent_cursor != 0 || nsubs > budget;
    int usable = nsubs > budget ? budget : nsubs;
    long long seq = n->sent_seq, cursor = n->sent_cursor;
    int sent = 0;
    bool stopped = false, failed = false;
    struct buf body = BUF_INIT, msg = BUF_INIT;
    for (int i = 0; i < n->nevents && !stopped && !failed; i++) {
        const struct devent *e = &n->events[i];
        bool silent = e->kind == 'd' && !n->notify_delete;
        buf_reset(&body);
        struct notify_event ne = dispatcher_notify_event(n, e);
        notify_event_body(&body, &ne);
        for (int r = 0; r < usable; r++) {
            if (!silent && dispatcher_eligible(e, &subs[r])) {
                if (dispatcher_send_one(d, n, e, &subs[r], &body, &msg) != PS_OK) {
                    failed = true;
                    break;
                }
                sent++;
            }
            bool last_sub = r == usable - 1;
            if (!last_sub && (sent >= budget || !link_can_take_more(&d->s->link))) {
                seq = e->seq - 1;
                cursor = subs[r].sub_id;
                stopped = true;
                break;
            }
        }
        if (stopped || failed)
            break;
        if (paged && nsubs > budget) {
            /* More subscriptions than one batch: this event continues. */
            seq = e->seq - 1;
            cursor = subs[usable - 1].sub_id;
            stopped = true;
            break;
        }
        seq = e->seq;
        cursor = 0;
        if (paged || sent >= budget || !link_can_take_more(&d->s->link)) {
            stopped = i < n->nevents - 1 || paged;
            break;
        }
    }
    buf_free(&body);
    buf_free(&msg);
    d->notifications_sent += (uint64_t)sent;
    if (failed) {
        n->more = true; /* the link is gone: resend from committed later */
        return;
    }
    if (seq != n->sent_seq || cursor != n->sent_cursor)
        dispatcher_send_barrier(d, n, seq, cursor);
    if (stopped || n->nevents == d->s->cfg->dispatch_events)
        n->more = true;
}

static void dispatcher_subscribers_cb(void *arg, const PGresult *res, const char *error)
{
    struct dnode *n = arg;
    struct dispatcher *d = n->d;
    n->pending--;
    n->state = DN_READY;
    if (res == NULL || !db_ok(res) || n->events_failed) {
        if (res && !db_ok(res))
            log_error("dispatcher: node %lld: reading subscriptions failed: %s", n->id,
                      db_error(res));
        else if (res == NULL)
            log_debug("dispatcher: node %lld: reading subscriptions failed: %s", n->id, error);
        dnode_free_events(n);
        n->more = true;
        return;
    }
    /* The link went down and came back while this fetch was out: the sent
     * position went back to the confirmed one, and what was read from the
     * old position would skip events that only the dead link carried. */
    bool stale = n->fetch_seq != n->sent_seq || n->fetch_cursor != n->sent_cursor;
    if (link_is_ready(&d->s->link) && n->nevents > 0 && !stale) {
        int nsubs = PQntuples(res);
        struct dsub *subs = xcalloc((size_t)(nsubs ? nsubs : 1), sizeof *subs);
        for (int r = 0; r < nsubs; r++) {
            subs[r] = (struct dsub){db_int(res, r, 0), db_value(res, r, 1), db_int(res, r, 2),
                                    db_value(res, r, 3), db_value(res, r, 4)[0] == 't',
                                    db_is_null(res, r, 5) ? NULL : db_value(res, r, 5),
                                    db_int(res, r, 6),
                                    db_is_null(res, r, 7) ? NULL : db_value(res, r, 7)};
        }
        dispatcher_fan_out(d, n, subs, nsubs);
        free(subs);
    } else if (n->nevents > 0)
        n->more = true;
    dnode_free_events(n);
    dispatcher_kick(d);
}

/* ---- position, release, commit ------------------------------------------- */

static void dispatcher_position_cb(void *arg, const PGresult *res, const char *error)
{
    struct dnode *n = arg;
    struct dispatcher *d = n->d;
    n->pending--;
    if (res == NULL || !db_ok(res) || PQntuples(res) != 1) {
        if (res && !db_ok(res))
            log_error("dispatcher: node %lld: reading position failed: %s", n->id, db_error(res));
        else if (res == NULL)
            log_debug("dispatcher: node %lld: reading position failed: %s", n->id, error);
        /* Node vanished or query failed (a timeout included): let go of
         * it; never fan out without a position. */
        n->more = false;
        dispatcher_release(d, n);
        return;
    }
    n->committed_seq = n->confirmed_seq = n->sent_seq = db_int(res, 0, 0);
    n->committed_cursor = n->confirmed_cursor = n->sent_cursor = db_int(res, 0, 1);
    free(n->name);
    n->name = xstrdup(db_value(res, 0, 2));
    n->deliver_payloads = db_value(res, 0, 3)[0] == 't';
    n->headline = strcmp(db_value(res, 0, 4), "headline") == 0;
    n->notify_delete = db_value(res, 0, 5)[0] == 't';
    n->in_collection = db_value(res, 0, 6)[0] == 't';
    n->state = DN_READY;
    n->more = true;
    dispatcher_kick(d);
}

static void dispatcher_release_cb(void *arg, const PGresult *res, const char *error)
{
    struct dnode *n = arg;
    struct dispatcher *d = n->d;
    (void)res, (void)error;
    n->pending--;
    bool rewake = n->rewake;
    long long id = n->id;
    if (n->pending == 0)
        dnode_unlink_free(d, n);
    if (rewake) {
        dispatcher_add_woken(d, id);
        dispatcher_claim(d);
    }
}

static void dispatcher_release(struct dispatcher *d, struct dnode *n)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", n->id);
    const char *params[] = {id};
    int rc = db_conn_submit(&d->db, DB_DISPATCH_RELEASE, 1, params, dispatcher_release_cb, n);
    if (rc == PS_OK) {
        n->state = DN_RELEASING;
        n->pending++;
        log_debug("dispatcher: releasing node %lld", n->id);
        return;
    }
    if (rc == PS_AGAIN)
        return; /* the connection's queue is full: still held, released at a later poll */
    n->state = DN_RELEASING;
    /* Connection gone: the lock went with it. */
    if (n->pending == 0)
        dnode_unlink_free(d, n);
}

static void dispatcher_remove_batch(struct dispatcher *d, struct batch *b)
{
    struct batch **pp = &d->batches, *prev = NULL;
    while (*pp != b) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = b->next;
    if (d->batches_tail == b)
        d->batches_tail = prev;
    b->node->batches--;
    free(b);
}

/* Positions: (seq, cursor) pairs, compared in that order. */
static bool position_after(long long seq, long long cursor, long long seq2, long long cursor2)
{
    return seq > seq2 || (seq == seq2 && cursor > cursor2);
}

static bool dnode_uncommitted(const struct dnode *n)
{
    return position_after(n->confirmed_seq, n->confirmed_cursor, n->committed_seq,
                          n->committed_cursor);
}

static void dnode_commit(struct dispatcher *d, struct dnode *n);

static void dispatcher_commit_cb(void *arg, const PGresult *res, const char *error)
{
    struct dnode *n = arg;
    struct dispatcher *d = n->d;
    n->pending--;
    n->commit_in_flight = false;
    if (res && db_ok(res)) {
        /* The row moves only forward (dispatch_commit), and so does this. */
        if (position_after(n->committing_seq, n->committing_cursor, n->committed_seq,
                           n->committed_cursor)) {
            n->committed_seq = n->committing_seq;
            n->committed_cursor = n->committing_cursor;
        }
        if (db_value(res, 0, 0)[0] == 't') {
            log_info("dispatcher: node %lld (%s): delete delivered, node removed", n->id,
                     n->name ? n->name : "");
            n->gone = true;
        }
    } else {
        /* Committed again with the next one; until then the node is not
         * idle (a release would lose the position). */
        log_warn("dispatcher: node %lld: committing position failed: %s", n->id,
                 res ? db_error(res) : error);
        n->commit_retry_ms = loop_now_ms() + COMMIT_RETRY_MS;
    }
    dnode_commit(d, n);
    dispatcher_kick(d);
}

static void dispatcher_commit_fired(struct loop *loop, void *arg);

/* Comes back for n's commit at `at` (one timer for every node: it looks at
 * all of them). */
static void dispatcher_commit_later(struct dispatcher *d, uint64_t at)
{
    uint64_t now = loop_now_ms();
    if (!d->commit_timer.armed)
        loop_timer_arm(d->s->loop, &d->commit_timer, at > now ? at - now : 0,
                       dispatcher_commit_fired, d);
}

/*
 * Commits the position the barriers confirmed for n, at most one commit in
 * flight per node and at most one per dispatch_commit_interval_ms (a timer
 * comes back for the rest).  The position only bounds what a restart sends
 * again: confirmed notifications reached the server whatever happens to the
 * commit, so coalescing costs at most an interval of duplicates after a
 * crash, and saves PostgreSQL a transaction per batch (1 -> 1 through
 * ejabberd: about a fifth of its CPU).  While stopping, no waiting.
 */
static void dnode_commit(struct dispatcher *d, struct dnode *n)
{
    if (n->commit_in_flight || !dnode_uncommitted(n) || n->state == DN_RELEASING)
        return;
    uint64_t now = loop_now_ms();
    uint64_t interval = d->stopping ? 0 : (uint64_t)d->s->cfg->dispatch_commit_interval_ms;
    if (now < n->commit_retry_ms) {
        dispatcher_commit_later(d, n->commit_retry_ms);
        return;
    }
    if (n->last_commit_ms != 0 && now - n->last_commit_ms < interval) {
        dispatcher_commit_later(d, n->last_commit_ms + interval);
        return;
    }
    char node[24], seq[24], cursor[24];
    snprintf(node, sizeof node, "%lld", n->id);
    snprintf(seq, sizeof seq, "%lld", n->confirmed_seq);
    snprintf(cursor, sizeof cursor, "%lld", n->confirmed_cursor);
    const char *params[] = {node, seq, cursor};
    int rc = db_conn_submit(&d->db, DB_DISPATCH_COMMIT, 3, params, dispatcher_commit_cb, n);
    if (rc == PS_AGAIN) { /* the connection's queue is full: later */
        n->commit_retry_ms = now + COMMIT_RETRY_MS;
        dispatcher_commit_later(d, n->commit_retry_ms);
        return;
    }
    if (rc != PS_OK)
        return; /* database gone: the node goes with it, the batches repeat */
    n->pending++;
    n->commit_in_flight = true;
    n->committing_seq = n->confirmed_seq;
    n->committing_cursor = n->confirmed_cursor;
    n->last_commit_ms = now;
}

static void dispatcher_commit_fired(struct loop *loop, void *arg)
{
    (void)loop;
    struct dispatcher *d = arg;
    for (struct dnode *n = d->nodes; n; n = n->next)
        dnode_commit(d, n);
}

/* A batch its barrier confirmed: its position is the node's to commit. */
static void dispatcher_confirm_batch(struct dispatcher *d, struct batch *b)
{
    struct dnode *n = b->node;
    if (position_after(b->seq, b->cursor, n->confirmed_seq, n->confirmed_cursor)) {
        n->confirmed_seq = b->seq;
        n->confirmed_cursor = b->cursor;
    }
    dispatcher_remove_batch(d, b);
    dnode_commit(d, n);
}

void dispatcher_on_iq_reply(struct dispatcher *d, const char *id, bool ok)
{
    if (strncmp(id, "pb-", 3) != 0)
        return;
    unsigned long long barrier = strtoull(id + 3, NULL, 10);
    if (barrier == 0 || barrier != d->inflight_barrier)
        return; /* a ping of an earlier connection */
    if (!ok)
        log_debug("dispatcher: barrier %llu answered with an error (still a barrier)", barrier);
    d->inflight_barrier = 0;
    bool waiting = false;
    struct batch *b = d->batches;
    while (b) {
        struct batch *next = b->next;
        if (b->barrier == barrier)
            dispatcher_confirm_batch(d, b);
        else if (b->barrier == d->open_barrier)
            waiting = true;
        b = next;
    }
    /* Batches written while this ping was out: their own ping now. */
    if (waiting && !dispatcher_ping(d))
        log_debug("dispatcher: could not send the next barrier: link down");
}

/* ---- the local hand-off ------------------------------------------------------ */

/*
 * A publish of this process returns, with its result, the node's audience
 * (pubsub.publish_audience(): the subscription query's rows, read in the
 * publish's transaction under the node lock, so at least as new as the
 * event; NULL when the node is in a collection or has many subscribers).
 * When this dispatcher holds the node, is not fetching, has nothing else
 * to read (more is false) and the offered events follow its sent position
 * without a gap, it fans them out from memory: no outbox read, no
 * subscription read, one database round trip less between a publish's
 * commit and its notifications.  Everything else is as for fetched events:
 * the position moves only after the barrier, from what the database holds.
 * Any doubt (a gap, another kind of change, a fetch in flight, no
 * audience) drops the offers and fetches instead: they are in the outbox.
 */

/* Parses the audience text (lines of sub_id, JID, start_seq, subid, t|f
 * separated by tabs) into n's audience.  Returns false when malformed. */
static bool dnode_set_audience(struct dnode *n, const char *text, long long seq)
{
    dnode_free_audience(n);
    char *copy = xstrdup(text);
    int lines = *copy ? 1 : 0;
    for (const char *p = copy; *p; p++)
        lines += *p == '\n';
    struct dsub *a = xcalloc((size_t)(lines ? lines : 1), sizeof *a);
    char *line = copy;
    for (int i = 0; i < lines; i++) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        char *f[5];
        int nf = 0;
        for (char *p = line; nf < 5; nf++) {
            f[nf] = p;
            p = strchr(p, '\t');
            if (p == NULL) {
                nf++;
                break;
            }
            *p++ = '\0';
        }
        if (nf != 5) {
            free(a);
            free(copy);
            return false;
        }
        a[i] = (struct dsub){strtoll(f[0], NULL, 10), f[1], strtoll(f[2], NULL, 10), f[3],
                             f[4][0] == 't', NULL, 0, NULL};
        line = end ? end + 1 : line + strlen(line);
    }
    n->audience_text = copy;
    n->audience = a;
    n->naudience = lines;
    n->audience_seq = seq;
    return true;
}

void dispatcher_offer(struct dispatcher *d, long long node_id, long long seq, const char *item_id,
                      const char *payload, const char *audience)
{
    struct dnode *n = dnode_find(d, node_id);
    if (n == NULL || n->state != DN_READY || n->more || n->in_collection) {
        if (n)
            dnode_free_offers(n); /* a fetch will read them */
        dispatcher_wake(d, node_id);
        return;
    }
    long long expect = n->noffers ? n->offers[n->noffers - 1].seq + 1 : n->sent_seq + 1;
    size_t len = payload ? strlen(payload) : 0;
    if (seq != expect || n->noffers >= d->s->cfg->dispatch_events ||
        n->offer_bytes + len > DISPATCH_BATCH_BYTES) {
        dnode_free_offers(n);
        dispatcher_wake(d, node_id);
        return;
    }
    n->offers = xrealloc(n->offers, (size_t)(n->noffers + 1) * sizeof *n->offers);
    n->offers[n->noffers++] = (struct devent){seq, 0, (char)NOTIFY_PUBLISH,
                                              item_id ? xstrdup(item_id) : NULL,
                                              payload ? xstrdup(payload) : NULL};
    n->offer_bytes += len;
    if (audience && !dnode_set_audience(n, audience, seq))
        log_warn("dispatcher: node %lld: malformed audience, reading it instead", n->id);
    if (!d->kick_timer.armed)
        loop_timer_arm(d->s->loop, &d->kick_timer, 0, dispatcher_kick_fired, d);
}

/* Fans out n's offers from memory when it is safe (see above), else
 * drops them and fetches. */
static void dispatcher_hand_off(struct dispatcher *d, struct dnode *n)
{
    bool ok = !d->stopping && n->name != NULL && !n->gone && !n->in_collection &&
              n->sent_cursor == 0 && n->offers[0].seq == n->sent_seq + 1 &&
              n->audience_text != NULL && n->audience_seq >= n->offers[n->noffers - 1].seq &&
              n->naudience <= d->s->cfg->dispatch_batch && n->batches < MAX_BATCHES_PER_NODE &&
              link_is_ready(&d->s->link) && link_can_take_more(&d->s->link);
    if (!ok) {
        dnode_free_offers(n);
        n->more = true;
        dispatcher_fetch(d, n);
        return;
    }
    /* The publish results of these events were queued in this loop
     * iteration: let them leave first, in a write of their own.  Prosody
     * (server_epoll) routes all it read in one go before its sessions
     * write anything out, so results sharing a read with the notifications
     * reach the publisher only after every notification was routed (1 -> 1,
     * same sitting: ack p50 8.0-8.6 ms with this, 8.4-8.7 without). */
    link_flush(&d->s->link);
    if (!link_is_ready(&d->s->link)) { /* the write failed: the link is down */
        dnode_free_offers(n);
        n->more = true;
        return;
    }
    dnode_free_events(n);
    n->events = n->offers;
    n->nevents = n->noffers;
    n->offers = NULL;
    n->noffers = 0;
    n->offer_bytes = 0;
    d->handed_off += (uint64_t)n->nevents;
    dispatcher_fan_out(d, n, n->audience, n->naudience);
    dnode_free_events(n);
}

/* ---- scheduling ----------------------------------------------------------- */

static bool dnode_idle(const struct dnode *n)
{
    return n->state == DN_READY && !n->more && n->noffers == 0 && n->batches == 0 &&
           n->pending == 0 && !dnode_uncommitted(n);
}

/* Releases nodes with nothing to do: all of them when `all`, else those
 * idle since before `before_ms` (a node that just went idle stays held for
 * a while, so a steady trickle of publishes does not pay a lock round
 * trip per event). */
static void dispatcher_release_idle(struct dispatcher *d, bool all, uint64_t before_ms)
{
    struct dnode *n = d->nodes;
    while (n) {
        struct dnode *next = n->next;
        if (dnode_idle(n) && (all || n->gone || n->idle_since_ms <= before_ms))
            dispatcher_release(d, n);
        n = next;
    }
}

/* The stream is down (at a poll): lets go of every node that has nothing
 * in flight and its confirmed position committed, also those with events
 * still to send (more), so that a peer with a working stream takes them;
 * this process claims again when its stream is back. */
static void dispatcher_release_unlinked(struct dispatcher *d)
{
    struct dnode *n = d->nodes;
    while (n) {
        struct dnode *next = n->next;
        if (n->state == DN_READY && n->batches == 0 && n->pending == 0 && !dnode_uncommitted(n)) {
            dnode_free_offers(n);
            dispatcher_release(d, n);
        }
        n = next;
    }
}

/* Moves every node forward: fetch where allowed, release nodes that are
 * gone, claim woken nodes (making room by releasing idle ones). */
static void dispatcher_kick(struct dispatcher *d)
{
    uint64_t now = loop_now_ms();
    struct dnode *n = d->nodes;
    while (n) {
        struct dnode *next = n->next;
        if (n->state == DN_READY) {
            if (n->gone && n->batches == 0 && n->pending == 0) {
                dnode_free_offers(n);
                dispatcher_release(d, n);
            } else if (n->more) {
                dnode_free_offers(n); /* the fetch reads them */
                dispatcher_fetch(d, n);
            } else if (n->noffers > 0) {
                dispatcher_hand_off(d, n);
            }
            if (dnode_idle(n) && n->idle_since_ms == 0)
                n->idle_since_ms = now;
            else if (!dnode_idle(n))
                n->idle_since_ms = 0;
        }
        n = next;
    }
    if ((d->nwoken || d->claim_any) && d->nnodes >= d->s->cfg->dispatch_max_nodes)
        dispatcher_release_idle(d, true, 0);
    dispatcher_claim(d);
}

static void dispatcher_kick_fired(struct loop *loop, void *arg)
{
    (void)loop;
    dispatcher_kick(arg);
}

void dispatcher_wake_any(struct dispatcher *d)
{
    d->claim_any = true;
    for (struct dnode *n = d->nodes; n; n = n->next)
        if (n->state != DN_RELEASING)
            n->more = true;
    dispatcher_kick(d);
}

/* Wake-ups are acted on at the end of the loop iteration: the results of
 * a batch of publishes, all read in one go, then cause one fetch (which
 * sees them all) instead of one plus a second that finds nothing new. */
void dispatcher_wake(struct dispatcher *d, long long node_id)
{
    struct dnode *n = dnode_find(d, node_id);
    if (n) {
        if (n->state == DN_RELEASING)
            n->rewake = true;
        else
            n->more = true;
    } else {
        dispatcher_add_woken(d, node_id);
    }
    if (!d->kick_timer.armed)
        loop_timer_arm(d->s->loop, &d->kick_timer, 0, dispatcher_kick_fired, d);
}

/* A NOTIFY from a committed change: "node_id", "node_id:seq" or
 * "node_id:seq:instance" (the publishing process's tag; its own are skipped).  A node
 * this dispatcher has already read up to seq needs no wake-up (its own
 * process's publishes wake it directly, before the NOTIFY arrives). */
static void dispatcher_on_notify(void *arg, const char *channel, const char *payload)
{
    struct dispatcher *d = arg;
    (void)channel;
    if (payload && strcmp(payload, "notice") == 0) {
        pubsub_owner_notices_take(d->s); /* a subscription changed (notify_sub) */
        return;
    }
    char *end;
    long long id = strtoll(payload ? payload : "0", &end, 10);
    if (id <= 0)
        return;
    long long seq = *end == ':' ? strtoll(end + 1, &end, 10) : 0;
    /* "node:seq:instance": a publish of this process, which woke (or
     * offered to) the dispatcher directly when its result came. */
    if (seq > 0 && *end == ':' && strcmp(end + 1, db_instance_tag()) == 0)
        return;
    struct dnode *n = dnode_find(d, id);
    if (n && seq > 0 && seq <= n->sent_seq && n->state != DN_RELEASING)
        return;
    dispatcher_wake(d, id);
}

/* Drops every batch that has not been confirmed: the link that carried it
 * is gone, so it will be sent again from the committed position. */
void dispatcher_link_down(struct dispatcher *d)
{
    d->inflight_barrier = 0; /* its answer will never come */
    while (d->batches)
        dispatcher_remove_batch(d, d->batches);
    /* What a barrier confirmed reached the server; the rest goes again. */
    for (struct dnode *n = d->nodes; n; n = n->next) {
        n->sent_seq = n->confirmed_seq;
        n->sent_cursor = n->confirmed_cursor;
        if (n->state != DN_RELEASING)
            n->more = true;
    }
}

void dispatcher_link_ready(struct dispatcher *d)
{
    redelivery_link_ready(d->s);
    d->claim_any = true;
    dispatcher_kick(d);
}

void dispatcher_link_drain(struct dispatcher *d)
{
    dispatcher_kick(d);
}

#define EXPIRE_BATCH 1000

static void dispatcher_expire_cb(void *arg, const PGresult *res, const char *error)
{
    struct dispatcher *d = arg;
    d->expiring = false;
    if (res == NULL || !db_ok(res)) {
        log_warn("dispatcher: expiring items failed: %s", res ? db_error(res) : error);
        return;
    }
    long long n = db_int(res, 0, 0);
    if (n > 0)
        log_debug("dispatcher: %lld expired items removed", n);
    if (n == EXPIRE_BATCH)
        dispatcher_expire(d); /* more are due */
}

/* Removes items past pubsub#item_expire, a bounded batch at a time. */
static void dispatcher_expire(struct dispatcher *d)
{
    if (d->expiring || d->stopping)
        return;
    char limit[16];
    snprintf(limit, sizeof limit, "%d", EXPIRE_BATCH);
    const char *params[] = {limit};
    if (db_conn_submit(&d->db, DB_EXPIRE_ITEMS, 1, params, dispatcher_expire_cb, d) == PS_OK)
        d->expiring = true;
}

/* True when a backend listed in `before` is missing from `now` (both
 * sorted PostgreSQL int arrays as text, e.g. "{812,1024}"). */
static bool peers_lost(const char *before, const char *now)
{
    const char *p = before;
    while (*p) {
        if (*p < '0' || *p > '9') {
            p++;
            continue;
        }
        char *end;
        long pid = strtol(p, &end, 10);
        bool found = false;
        for (const char *q = now; *q && !found;) {
            if (*q < '0' || *q > '9') {
                q++;
                continue;
            }
            char *qend;
            found = strtol(q, &qend, 10) == pid;
            q = qend;
        }
        if (!found)
            return true;
        p = end;
    }
    return false;
}

static void dispatcher_peers_cb(void *arg, const PGresult *res, const char *error)
{
    struct dispatcher *d = arg;
    d->peers_in_flight = false;
    if (res == NULL || !db_ok(res)) {
        log_warn("dispatcher: listing the peer dispatchers failed: %s",
                 res ? db_error(res) : error);
        return;
    }
    const char *now = db_value(res, 0, 0);
    if (d->peers && peers_lost(d->peers, now)) {
        /* Its locks were released as one, but a scan that raced with the
         * release could still have found some taken: scan again later. */
        log_info("dispatcher: a peer dispatcher left (%s, now %s): claiming its nodes", d->peers,
                 now);
        d->claim_any = true;
        d->scan_again = true;
        dispatcher_kick(d);
    }
    free(d->peers);
    d->peers = xstrdup(now);
}

static void dispatcher_list_peers(struct dispatcher *d)
{
    if (!d->peers_in_flight && !d->stopping && db_conn_ready(&d->db) &&
        db_conn_submit(&d->db, DB_DISPATCH_PEERS, 0, NULL, dispatcher_peers_cb, d) == PS_OK)
        d->peers_in_flight = true;
}

/* The safety net: claims nodes left pending (another process died, a
 * wake-up was lost) and fails the link when a barrier is not answered.
 * Also the janitor's clock (item expiry). */
static void dispatcher_poll(struct loop *loop, void *arg)
{
    struct dispatcher *d = arg;
    dispatcher_expire(d);
    dispatcher_list_peers(d);
    redelivery_tick(d->s);
    pubsub_owner_notices_take(d->s); /* safety net for a lost NOTIFY */
    if (d->batches && loop_now_ms() - d->batches->sent_ms > BARRIER_TIMEOUT_MS) {
        log_error("dispatcher: barrier %llu unanswered for %d ms", d->batches->barrier,
                  BARRIER_TIMEOUT_MS);
        link_fail(&d->s->link, "barrier ping unanswered");
    }
    uint64_t now = loop_now_ms();
    dispatcher_release_idle(d, d->stopping, now - (uint64_t)d->s->cfg->dispatch_poll_ms);
    if (!link_is_ready(&d->s->link))
        dispatcher_release_unlinked(d);
    for (struct dnode *n = d->nodes; n; n = n->next)
        if (n->state == DN_LOADING && n->pending == 0)
            dnode_load_position(d, n);
    if (d->scan_again || ++d->polls_since_scan >= FULL_SCAN_POLLS) {
        d->scan_again = false;
        d->claim_any = true;
    }
    dispatcher_kick(d);
    loop_timer_arm(loop, &d->poll_timer, (uint64_t)d->s->cfg->dispatch_poll_ms, dispatcher_poll, d);
}

static void dispatcher_listen_cb(void *arg, const PGresult *res, const char *error)
{
    (void)arg;
    if (res == NULL || !db_ok(res))
        log_error("dispatcher: LISTEN failed: %s", res ? db_error(res) : error);
}

static void dispatcher_presence_cb(void *arg, const PGresult *res, const char *error)
{
    (void)arg;
    if (res == NULL || !db_ok(res))
        log_error("dispatcher: presence lock failed: %s", res ? db_error(res) : error);
}

static void dispatcher_db_ready(void *arg)
{
    struct dispatcher *d = arg;
    if (db_conn_submit(&d->db, DB_LISTEN, 0, NULL, dispatcher_listen_cb, d) != PS_OK)
        log_error("dispatcher: could not LISTEN");
    if (db_conn_submit(&d->db, DB_DISPATCH_PRESENCE, 0, NULL, dispatcher_presence_cb, d) != PS_OK)
        log_error("dispatcher: could not take the presence lock");
    /* The peers as they are before the scan below: one that dies after
     * this list was taken is missed neither by the scan nor by the next
     * poll's comparison. */
    dispatcher_list_peers(d);
    d->claim_any = true;
    dispatcher_kick(d);
}

/* The connection and its locks are gone: forget every node. */
static void dispatcher_db_down(void *arg)
{
    struct dispatcher *d = arg;
    d->claim_in_flight = false;
    d->claim_in_flight_any = false;
    d->expiring = false;
    d->peers_in_flight = false;
    free(d->peers); /* our own backend is gone from it */
    d->peers = NULL;
    while (d->batches)
        dispatcher_remove_batch(d, d->batches);
    while (d->nodes)
        dnode_unlink_free(d, d->nodes);
    log_warn("dispatcher: database connection lost, node locks released");
}

static void dispatcher_db_fatal(void *arg, const char *why)
{
    struct dispatcher *d = arg;
    log_error("dispatcher: %s", why);
    d->s->exit_code = 1;
    d->s->done = true;
}

struct dispatcher *dispatcher_new(struct server *s)
{
    struct dispatcher *d = xcalloc(1, sizeof *d);
    d->s = s;
    d->open_barrier = 1;
    struct db_handlers h = {dispatcher_db_ready, dispatcher_db_down, dispatcher_on_notify,
                            dispatcher_db_fatal, d};
    db_conn_init(&d->db, s->loop, s->cfg, "dispatch", &h);
    return d;
}

void dispatcher_start(struct dispatcher *d)
{
    db_conn_start(&d->db);
    loop_timer_arm(d->s->loop, &d->poll_timer, (uint64_t)d->s->cfg->dispatch_poll_ms,
                   dispatcher_poll, d);
}

void dispatcher_stop(struct dispatcher *d)
{
    d->stopping = true;
    loop_timer_disarm(d->s->loop, &d->poll_timer);
    loop_timer_disarm(d->s->loop, &d->kick_timer);
    loop_timer_disarm(d->s->loop, &d->commit_timer);
    dispatcher_commit_fired(d->s->loop, d); /* no interval while stopping */
}

bool dispatcher_idle(const struct dispatcher *d)
{
    if (d->batches != NULL)
        return false;
    for (const struct dnode *n = d->nodes; n; n = n->next)
        if (n->state == DN_FETCHING || n->commit_in_flight ||
            (dnode_uncommitted(n) && db_conn_ready(&d->db)))
            return false;
    return true;
}

void dispatcher_free(struct dispatcher *d)
{
    if (d == NULL)
        return;
    loop_timer_disarm(d->s->loop, &d->kick_timer);
    loop_timer_disarm(d->s->loop, &d->commit_timer);
    db_conn_free(&d->db); /* runs outstanding callbacks, then on_down */
    while (d->batches)
        dispatcher_remove_batch(d, d->batches);
    while (d->nodes)
        dnode_unlink_free(d, d->nodes);
    free(d->woken);
    free(d->peers);
    free(d);
}
