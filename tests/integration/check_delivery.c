/*
 * check_delivery.c - integration tests of the delivery guarantee
 * (docs/architecture.md, "Delivery guarantee"): every committed event
 * reaches every subscription whose start precedes it, at least once, and in
 * seq order after dropping duplicates by message id; across a kill -9 of
 * pubsubd and a restart of the XMPP server.
 *
 * Shape of every test: one node, three subscribers (alice, bob, carol, each
 * subscribed with its bare JID before the first publish), and the node's
 * owner publishing thousands of items with IQ_WINDOW publish IQs in flight.
 * Item i has the id "it-<i>" and the payload <n xmlns=NS_DELIVERY>i</n>.
 *
 * What is recorded: for the publisher, which publishes were acknowledged
 * (an IQ result received); for each subscriber, every notification in
 * arrival order.  Every notification is checked on arrival (sender,
 * addressee, type, id ps-<node_id>-<seq>-<sub_id> with this test's node and
 * this subscriber's sub_id, one <item/> whose payload names its own index),
 * then as a stream: after dropping duplicates (by message id; the node and
 * sub_id being fixed, that is by seq) the seqs strictly increase, a seq
 * always carries the same item for every subscriber and for every
 * redelivery, and in the end every seq from 1 to the node's last_seq has
 * arrived (every committed publish, acknowledged or not) and so has every
 * acknowledged item.
 *
 * Faults: test 7 kills pubsubd with SIGKILL twice while it works; test 8
 * restarts Prosody once (the node's notification_type is 'normal' so that
 * Prosody stores notifications for the subscribers while they are offline;
 * see the test for why they are offline at the moment of the restart).
 * The publisher never retries: what was not acknowledged is simply not
 * required (but every committed seq still is).
 */
#include "harness.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_DELIVERY "urn:example:pubsubd:delivery"

#define COMPONENT_UP_MS 10000
#define IQ_TIMEOUT_MS 5000
#define REPLY_STALL_MS 15000   /* an IQ to a live component unanswered */
#define IQ_WINDOW 64           /* publish IQs in flight */
#define NSUBS 3
#define COMPLETE_MS 60000      /* bound on waiting for the notifications */
#define QUIET_MS 1000          /* silence that ends the wait for stragglers */
#define DRAINED_MS 10000       /* bound on the position reaching the end */

#define N_ORDER 5000
#define N_CRASH 4000
#define N_RESTART 3000
#define N_WHILE_DOWN 16        /* publishes sent while pubsubd is dead */

static const char *const sub_users[NSUBS] = { "alice", "bob", "carol" };

/* ---- fixture ---------------------------------------------------------- */

#define MAX_PROCS 4

struct fixture {
    char *jid;                    /* component JID */
    char *db;                     /* conninfo of the fresh database */
    struct h_proc *procs[MAX_PROCS]; /* every pubsubd started, last = live */
    int nprocs;
};

static struct h_proc *live_proc(struct fixture *f)
{
    return f->procs[f->nprocs - 1];
}

/* Prints the tail of the live daemon's log and names the older ones. */
static void dump(struct fixture *f)
{
    for (int i = 0; i < f->nprocs - 1; i++)
        fprintf(stderr, "earlier pubsubd log: %s\n",
                h_proc_log_path(f->procs[i]));
    h_fail_dump(live_proc(f));
}

static void start_proc(struct fixture *f)
{
    ck_assert_int_lt(f->nprocs, MAX_PROCS);
    f->procs[f->nprocs++] = h_pubsubd_start(f->jid, f->db, NULL);
}

/* As in check_pubsub.c: waits for the link (disco#info) and then for the
 * database (disco#items answered with a result). */
static void wait_ready(struct fixture *f, struct h_client *c, int timeout_ms)
{
    long long t0 = h_now_ms();
    if (!h_wait_component(c, f->jid, timeout_ms)) {
        dump(f);
        ck_abort_msg("%s did not answer disco#info within %d ms", f->jid,
                     timeout_ms);
    }
    for (;;) {
        char *id = h_uid("ready");
        char *xml = h_strf("<iq type='get' to='%s' id='%s'><query xmlns='"
                           H_NS_DISCO_ITEMS "'/></iq>", f->jid, id);
        xmpp_stanza_t *r = h_iq(c, xml, IQ_TIMEOUT_MS);
        const char *type = r != NULL ? xmpp_stanza_get_type(r) : NULL;
        bool ok = type != NULL && strcmp(type, "result") == 0;
        if (r != NULL)
            xmpp_stanza_release(r);
        free(xml);
        free(id);
        if (ok)
            return;
        if (h_now_ms() - t0 > timeout_ms) {
            dump(f);
            ck_abort_msg("%s did not answer disco#items with a result within "
                         "%d ms", f->jid, timeout_ms);
        }
        h_pump(50);
    }
}

static void fixture_up(struct fixture *f, int n)
{
    memset(f, 0, sizeof *f);
    f->jid = h_strf("c%d.%s", n, h_env("PST_DOMAIN"));
    f->db = h_db_create();
    start_proc(f);
}

static void fixture_down(struct fixture *f)
{
    h_pubsubd_stop(live_proc(f));
    for (int i = 0; i < f->nprocs - 1; i++)
        h_proc_free(f->procs[i]);
    free(f->db);
    free(f->jid);
}

/* h_sql_int on the test's database, the statement built printf-style. */
static long long sql_int(struct fixture *f, const char *fmt, ...)
    H_PRINTF_LIKE(2, 3);
static long long sql_int(struct fixture *f, const char *fmt, ...)
{
    char *sql = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&sql, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

/* Sends an IQ set with <pubsub xmlns=ns>inner</pubsub> and asserts a
 * result; returns it (caller releases). */
static xmpp_stanza_t *pubsub_set_ok(struct fixture *f, struct h_client *c,
                                    const char *inner, const char *what)
{
    char *id = h_uid("set");
    char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='"
                       H_NS_PUBSUB "'>%s</pubsub></iq>", f->jid, id, inner);
    xmpp_stanza_t *r = h_iq(c, xml, IQ_TIMEOUT_MS);
    h_assert_result(live_proc(f), r, what);
    free(xml);
    free(id);
    return r;
}

/* ---- subscribers ------------------------------------------------------- */

struct subscriber {
    const char *user;
    struct h_client *c;
    long long sub_id;
    /* the stream as received, after dropping duplicates: */
    unsigned char *seen;    /* by seq, 1..max_seq */
    long long distinct;
    long long last_seq;     /* the last distinct seq received */
    long long dups;
    long long received;     /* every notification, duplicates included */
    long long offline;      /* of which came from offline storage (delay) */
    long long last_arrival_ms;
};

/* What every subscriber must agree on. */
struct node_state {
    const char *node;
    long long node_id;
    bool headline;          /* notification_type of the node */
    long long max_seq;      /* seqs above this cannot exist (sized arrays) */
    int *index_of_seq;      /* item index each seq carried, -1: unknown */
    long long *seq_of_index;/* seq that carried each item index, 0: none */
    int nindex;
};

/* Logs user in, retrying for up to timeout_ms (the server may be
 * restarting). */
static struct h_client *connect_retry(struct fixture *f, const char *user,
                                      int timeout_ms)
{
    long long t0 = h_now_ms();
    struct h_client *c = NULL;
    while (c == NULL && h_now_ms() - t0 < timeout_ms) {
        c = h_client_try_connect(user, NULL, 5000);
        if (c == NULL)
            h_sleep_ms(200);
    }
    if (c == NULL) {
        dump(f);
        ck_abort_msg("%s could not log in within %d ms", user, timeout_ms);
    }
    return c;
}

/* Fails the test for message m of s, printing it. */
#define bad_message(f, s, m, ...)                                            \
    do {                                                                     \
        char *t_ = h_stanza_to_string(m);                                    \
        dump(f);                                                             \
        fprintf(stderr, "offending message to %s: %s\n", (s)->user, t_);     \
        ck_abort_msg(__VA_ARGS__);                                           \
    } while (0)

/* Checks one notification and adds it to s's stream. */
static void subscriber_take(struct fixture *f, struct node_state *ns,
                            struct subscriber *s, xmpp_stanza_t *m)
{
    s->received++;
    s->last_arrival_ms = h_now_ms();
    const char *from = xmpp_stanza_get_from(m);
    const char *to = xmpp_stanza_get_to(m);
    const char *type = xmpp_stanza_get_type(m);
    const char *id = xmpp_stanza_get_id(m);
    if (from == NULL || strcmp(from, f->jid) != 0 || to == NULL ||
        strcmp(to, h_client_bare_jid(s->c)) != 0)
        bad_message(f, s, m, "%s: notification not from %s to %s", s->user,
                    f->jid, h_client_bare_jid(s->c));
    if (ns->headline ? type == NULL || strcmp(type, "headline") != 0
                     : type != NULL && strcmp(type, "normal") != 0)
        bad_message(f, s, m, "%s: notification type '%s', expected %s",
                    s->user, type != NULL ? type : "(none)",
                    ns->headline ? "headline" : "none or normal");
    long long node_id = 0, seq = 0, sub_id = 0;
    int used = 0;
    if (id == NULL ||
        sscanf(id, "ps-%lld-%lld-%lld%n", &node_id, &seq, &sub_id, &used) !=
            3 ||
        id[used] != '\0' || node_id != ns->node_id || sub_id != s->sub_id)
        bad_message(f, s, m, "%s: notification id '%s' is not ps-%lld-<seq>-"
                    "%lld", s->user, id != NULL ? id : "(none)", ns->node_id,
                    s->sub_id);
    /* One <event/>; Prosody adds <delay/> to messages it stored offline. */
    int others = 0;
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(m); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        const char *kns = xmpp_stanza_is_tag(k) ? xmpp_stanza_get_ns(k) : NULL;
        if (xmpp_stanza_is_tag(k) &&
            (kns == NULL || (strcmp(kns, H_NS_PUBSUB_EVENT) != 0 &&
                             strcmp(kns, "urn:xmpp:delay") != 0)))
            others++;
    }
    if (h_child(m, "delay", "urn:xmpp:delay") != NULL)
        s->offline++;
    xmpp_stanza_t *ev = h_child(m, "event", H_NS_PUBSUB_EVENT);
    xmpp_stanza_t *items = h_child(ev, "items", H_NS_PUBSUB_EVENT);
    xmpp_stanza_t *item = h_child(items, "item", H_NS_PUBSUB_EVENT);
    xmpp_stanza_t *payload = h_child(item, "n", NS_DELIVERY);
    const char *node = items != NULL ? xmpp_stanza_get_attribute(items, "node")
                                     : NULL;
    const char *item_id = item != NULL ? xmpp_stanza_get_id(item) : NULL;
    int index = -1;
    used = 0;
    if (others != 0 || h_count_children(m, "event", H_NS_PUBSUB_EVENT) != 1 ||
        h_count_children(ev, NULL, NULL) != 1 ||
        h_count_children(items, NULL, NULL) != 1 ||
        h_count_children(item, NULL, NULL) != 1 || payload == NULL ||
        node == NULL || strcmp(node, ns->node) != 0 || item_id == NULL ||
        sscanf(item_id, "it-%d%n", &index, &used) != 1 ||
        item_id[used] != '\0' || index < 0 || index >= ns->nindex)
        bad_message(f, s, m, "%s: not a notification of one item it-<index> "
                    "of node %s with one <n xmlns='%s'/>", s->user, ns->node,
                    NS_DELIVERY);
    char *text = xmpp_stanza_get_text(payload);
    char *want = h_strf("%d", index);
    bool payload_ok = text != NULL && strcmp(text, want) == 0;
    if (text != NULL)
        xmpp_free(h_xmpp_ctx(), text);
    free(want);
    if (!payload_ok)
        bad_message(f, s, m, "%s: payload of item it-%d is not %d", s->user,
                    index, index);
    if (seq < 1 || seq > ns->max_seq)
        bad_message(f, s, m, "%s: seq %lld out of range 1..%lld (more events "
                    "than publishes sent)", s->user, seq, ns->max_seq);

    /* The same seq always carries the same item (across subscribers and
     * redeliveries), and an item has one seq (it was published once). */
    if (ns->index_of_seq[seq] == -1) {
        if (ns->seq_of_index[index] != 0)
            bad_message(f, s, m, "%s: item it-%d came with seq %lld, and with "
                        "seq %lld before (it was published once)", s->user,
                        index, seq, ns->seq_of_index[index]);
        ns->index_of_seq[seq] = index;
        ns->seq_of_index[index] = seq;
    } else if (ns->index_of_seq[seq] != index) {
        bad_message(f, s, m, "%s: seq %lld carries it-%d, but it-%d before",
                    s->user, seq, index, ns->index_of_seq[seq]);
    }

    if (s->seen[seq]) {
        s->dups++;
        return;
    }
    if (seq <= s->last_seq)
        bad_message(f, s, m, "%s: out of order: seq %lld (it-%d) arrived for "
                    "the first time after seq %lld (notification %lld of the "
                    "stream)", s->user, seq, index, s->last_seq, s->received);
    s->seen[seq] = 1;
    s->distinct++;
    s->last_seq = seq;
}

/* Takes every message queued for s (runs the loop once if none); nothing
 * while s is logged out. */
static void subscriber_drain(struct fixture *f, struct node_state *ns,
                             struct subscriber *s)
{
    xmpp_stanza_t *m;
    if (s->c == NULL)
        return;
    while ((m = h_next_message(s->c, 0)) != NULL) {
        subscriber_take(f, ns, s, m);
        xmpp_stanza_release(m);
    }
}

static void drain_all(struct fixture *f, struct node_state *ns,
                      struct subscriber *subs)
{
    for (int i = 0; i < NSUBS; i++)
        subscriber_drain(f, ns, &subs[i]);
}

/* ---- the publisher ------------------------------------------------------ */

enum pub_state { P_UNSENT, P_IN_FLIGHT, P_ACKED, P_ERROR, P_UNKNOWN };

struct publisher {
    struct h_client *c;
    char *prefix;               /* IQ id prefix */
    int total;                  /* item indexes 0..total-1 */
    int next;                   /* next index to send */
    unsigned char *state;       /* enum pub_state by index */
    int inflight[IQ_WINDOW];
    int ninflight;
    int acked, errors, unknown;
    char last_error[200];       /* the last error condition seen */
};

static char *pub_iq_id(struct publisher *p, int i)
{
    return h_strf("%s-%d", p->prefix, i);
}

static void pub_send(struct fixture *f, struct node_state *ns,
                     struct publisher *p, int i)
{
    char *id = pub_iq_id(p, i);
    char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='"
                       H_NS_PUBSUB "'><publish node='%s'><item id='it-%d'>"
                       "<n xmlns='" NS_DELIVERY "'>%d</n></item></publish>"
                       "</pubsub></iq>", f->jid, id, ns->node, i, i);
    h_send(p->c, xml);
    free(xml);
    free(id);
    p->state[i] = P_IN_FLIGHT;
    p->inflight[p->ninflight++] = i;
}

/* Records the reply r to publish i (an ack must name item it-i). */
static void pub_take(struct fixture *f, struct publisher *p, int i,
                     xmpp_stanza_t *r)
{
    const char *type = xmpp_stanza_get_type(r);
    if (type != NULL && strcmp(type, "result") == 0) {
        xmpp_stanza_t *item = h_child(
            h_child(h_child(r, "pubsub", H_NS_PUBSUB), "publish", NULL),
            "item", NULL);
        const char *got = item != NULL ? xmpp_stanza_get_id(item) : NULL;
        char *want = h_strf("it-%d", i);
        if (got == NULL || strcmp(got, want) != 0) {
            char *t = h_stanza_to_string(r);
            dump(f);
            ck_abort_msg("publish of %s acknowledged with %s", want, t);
        }
        free(want);
        p->state[i] = P_ACKED;
        p->acked++;
    } else {
        p->state[i] = P_ERROR;
        p->errors++;
        snprintf(p->last_error, sizeof p->last_error, "%s/%s from %s",
                 h_error_type(r) != NULL ? h_error_type(r) : "?",
                 h_error_condition(r) != NULL ? h_error_condition(r) : "?",
                 xmpp_stanza_get_from(r) != NULL ? xmpp_stanza_get_from(r)
                                                 : "?");
    }
}

/* Collects the replies already received (does not run the loop). */
static void pub_collect(struct fixture *f, struct publisher *p)
{
    int kept = 0;
    for (int k = 0; k < p->ninflight; k++) {
        int i = p->inflight[k];
        char *id = pub_iq_id(p, i);
        xmpp_stanza_t *r = h_wait_reply(p->c, id, 0);
        free(id);
        if (r != NULL) {
            pub_take(f, p, i, r);
            xmpp_stanza_release(r);
        } else {
            p->inflight[kept++] = i;
        }
    }
    p->ninflight = kept;
}

/*
 * Keeps IQ_WINDOW publishes in flight while the next index is below limit,
 * and waits up to wait_ms for the oldest reply.  Returns false when that
 * reply did not come in time (the caller decides whether that is a
 * failure).
 */
static bool pub_step(struct fixture *f, struct node_state *ns,
                     struct publisher *p, int limit, int wait_ms)
{
    while (p->ninflight < IQ_WINDOW && p->next < limit)
        pub_send(f, ns, p, p->next++);
    if (p->ninflight == 0)
        return true;
    char *id = pub_iq_id(p, p->inflight[0]);
    xmpp_stanza_t *r = h_wait_reply(p->c, id, wait_ms);
    free(id);
    if (r == NULL)
        return false;
    int i = p->inflight[0];
    memmove(p->inflight, p->inflight + 1,
            (size_t)(p->ninflight - 1) * sizeof p->inflight[0]);
    p->ninflight--;
    pub_take(f, p, i, r);
    xmpp_stanza_release(r);
    pub_collect(f, p);
    return true;
}

/* Publishes up to limit (exclusive), draining the subscribers as it goes;
 * an IQ to a running component unanswered for REPLY_STALL_MS fails. */
static void pub_run(struct fixture *f, struct node_state *ns,
                    struct publisher *p, struct subscriber *subs, int limit)
{
    while (p->next < limit || p->ninflight > 0) {
        if (!pub_step(f, ns, p, limit, REPLY_STALL_MS)) {
            dump(f);
            ck_abort_msg("publish it-%d: no reply within %d ms (%d in "
                         "flight)", p->inflight[0], REPLY_STALL_MS,
                         p->ninflight);
        }
        drain_all(f, ns, subs);
    }
}

/* Gives up on the publishes in flight (their replies are lost with the
 * process or stream that carried them): unknown, unless a reply arrives. */
static void pub_forget_inflight(struct publisher *p)
{
    for (int k = 0; k < p->ninflight; k++) {
        p->state[p->inflight[k]] = P_UNKNOWN;
        p->unknown++;
    }
    p->ninflight = 0;
}

/* A reply that arrived late for a publish given up on still counts. */
static void pub_late_replies(struct fixture *f, struct publisher *p)
{
    for (int i = 0; i < p->next; i++) {
        if (p->state[i] != P_UNKNOWN)
            continue;
        char *id = pub_iq_id(p, i);
        xmpp_stanza_t *r = h_wait_reply(p->c, id, 0);
        free(id);
        if (r != NULL) {
            p->unknown--;
            pub_take(f, p, i, r);
            xmpp_stanza_release(r);
        }
    }
}

/* ---- the run ------------------------------------------------------------ */

struct run {
    struct fixture f;
    struct node_state ns;
    struct subscriber subs[NSUBS];
    struct publisher pub;
    char *node;
};

/* Starts the component, connects everyone, creates the node (optionally
 * with notification_type 'normal') and subscribes the three. */
static void run_setup(struct run *r, int component, int total, bool normal)
{
    memset(r, 0, sizeof *r);
    fixture_up(&r->f, component);
    struct fixture *f = &r->f;
    r->pub.c = h_client_connect("owner");
    wait_ready(f, r->pub.c, COMPONENT_UP_MS);
    r->node = h_uid("delivery");
    r->pub.prefix = h_uid("pub");
    r->pub.total = total;
    r->pub.state = calloc((size_t)total, 1);

    char *inner = h_strf("<create node='%s'/>", r->node);
    xmpp_stanza_release(pubsub_set_ok(f, r->pub.c, inner, "create"));
    free(inner);
    r->ns.node = r->node;
    char *sql = h_strf("SELECT node_id FROM pubsub.node WHERE name = '%s'",
                       r->node);
    r->ns.node_id = h_sql_int(f->db, sql);
    free(sql);
    if (normal) {
        sql = h_strf("UPDATE pubsub.node_config SET notification_type = "
                     "'normal' WHERE node_id = %lld", r->ns.node_id);
        PQclear(h_sql(f->db, sql));
        free(sql);
    }
    r->ns.headline = !normal;
    r->ns.max_seq = total + 10 * N_WHILE_DOWN;
    r->ns.index_of_seq = malloc((size_t)(r->ns.max_seq + 1) * sizeof(int));
    for (long long s = 0; s <= r->ns.max_seq; s++)
        r->ns.index_of_seq[s] = -1;
    r->ns.seq_of_index = calloc((size_t)total, sizeof(long long));
    r->ns.nindex = total;

    for (int i = 0; i < NSUBS; i++) {
        struct subscriber *s = &r->subs[i];
        s->user = sub_users[i];
        s->c = h_client_connect(s->user);
        /* Offline messages of earlier runs come with the login: not this
         * node's (it has no subscriber yet). */
        int stale = 0;
        xmpp_stanza_t *m;
        while ((m = h_next_message(s->c, 100)) != NULL) {
            xmpp_stanza_release(m);
            stale++;
        }
        if (stale > 0)
            fprintf(stderr, "setup: %s had %d messages from earlier runs\n",
                    s->user, stale);
        s->seen = calloc((size_t)r->ns.max_seq + 1, 1);
        inner = h_strf("<subscribe node='%s' jid='%s'/>", r->node,
                       h_client_bare_jid(s->c));
        xmpp_stanza_release(pubsub_set_ok(f, s->c, inner, "subscribe"));
        free(inner);
        sql = h_strf("SELECT sub_id FROM pubsub.subscription WHERE node_id = "
                     "%lld AND jid = '%s'", r->ns.node_id,
                     h_client_bare_jid(s->c));
        s->sub_id = h_sql_int(f->db, sql);
        free(sql);
    }
}

static void run_teardown(struct run *r)
{
    for (int i = 0; i < NSUBS; i++) {
        h_client_disconnect(r->subs[i].c);
        free(r->subs[i].seen);
    }
    h_client_disconnect(r->pub.c);
    fixture_down(&r->f);
    free(r->pub.state);
    free(r->pub.prefix);
    free(r->ns.index_of_seq);
    free(r->ns.seq_of_index);
    free(r->node);
}

/*
 * The end of a run: waits (at most COMPLETE_MS) until every subscriber has
 * every seq up to the node's last_seq, then until the streams have been
 * quiet for QUIET_MS, and asserts completeness; then that the dispatch
 * position reaches the node's last seq.  Prints the counts.  Returns the
 * node's last_seq and, in *complete_ms_out (may be NULL), the time from t0
 * until every subscriber was complete.
 */
static long long run_finish(struct run *r, const char *label, long long t0,
                            long long *complete_ms_out)
{
    struct fixture *f = &r->f;
    long long last_seq = sql_int(f, "SELECT last_seq FROM pubsub.node WHERE "
                                    "node_id = %lld", r->ns.node_id);
    ck_assert_int_le(last_seq, r->ns.max_seq);
    long long deadline = h_now_ms() + COMPLETE_MS;
    for (;;) {
        drain_all(f, &r->ns, r->subs);
        bool complete = true;
        for (int i = 0; i < NSUBS; i++)
            complete = complete && r->subs[i].distinct == last_seq;
        if (complete || h_now_ms() >= deadline)
            break;
        h_pump(20);
    }
    long long complete_ms = h_now_ms() - t0;
    if (complete_ms_out != NULL)
        *complete_ms_out = complete_ms;
    /* Stragglers (duplicates): until QUIET_MS of silence. */
    long long quiet_deadline = h_now_ms() + COMPLETE_MS;
    for (;;) {
        h_pump(50);
        drain_all(f, &r->ns, r->subs);
        long long latest = 0;
        for (int i = 0; i < NSUBS; i++)
            if (r->subs[i].last_arrival_ms > latest)
                latest = r->subs[i].last_arrival_ms;
        if (h_now_ms() - latest >= QUIET_MS || h_now_ms() >= quiet_deadline)
            break;
    }
    pub_late_replies(f, &r->pub);

    fprintf(stderr, "%s: %d publishes sent, %d acknowledged, %d errors%s%s%s, "
            "%d unknown (reply lost); node last_seq %lld; all notifications "
            "in %lld ms\n", label, r->pub.next, r->pub.acked, r->pub.errors,
            r->pub.errors ? " (last: " : "", r->pub.last_error,
            r->pub.errors ? ")" : "", r->pub.unknown, last_seq, complete_ms);
    for (int i = 0; i < NSUBS; i++) {
        struct subscriber *s = &r->subs[i];
        fprintf(stderr, "%s:   %s: %lld notifications, %lld distinct, %lld "
                "duplicates, %lld from offline storage\n", label, s->user,
                s->received, s->distinct, s->dups, s->offline);
    }

    for (int i = 0; i < NSUBS; i++) {
        struct subscriber *s = &r->subs[i];
        if (s->distinct != last_seq) {
            long long missing = 0, first = 0;
            for (long long q = 1; q <= last_seq; q++) {
                if (!s->seen[q]) {
                    missing++;
                    if (first == 0)
                        first = q;
                }
            }
            dump(f);
            ck_abort_msg("%s: %s received %lld of the node's %lld events "
                         "within %d ms (%lld missing, the first is seq %lld: "
                         "message id ps-%lld-%lld-%lld, item it-%d; %lld "
                         "notifications in all)", label, s->user,
                         s->distinct, last_seq, COMPLETE_MS, missing, first,
                         r->ns.node_id, first, s->sub_id,
                         r->ns.index_of_seq[first], s->received);
        }
    }
    /* Every acknowledged item came with a seq of 1..last_seq, which every
     * subscriber has (above), each seq with the same item everywhere. */
    for (int i = 0; i < r->pub.next; i++) {
        long long q = r->ns.seq_of_index[i];
        if (r->pub.state[i] == P_ACKED && (q < 1 || q > last_seq)) {
            dump(f);
            ck_abort_msg("%s: acknowledged item it-%d %s", label, i,
                         q == 0 ? "reached no subscriber"
                                : "came with a seq beyond last_seq");
        }
    }

    /* The items still stored agree with what was notified. */
    char *sql = h_strf("SELECT seq, item_id FROM pubsub.item WHERE node_id = "
                       "%lld", r->ns.node_id);
    PGresult *res = h_sql(f->db, sql);
    free(sql);
    for (int row = 0; row < PQntuples(res); row++) {
        long long q = strtoll(PQgetvalue(res, row, 0), NULL, 10);
        char *want = h_strf("it-%d", q >= 1 && q <= last_seq
                                         ? r->ns.index_of_seq[q] : -1);
        bool same = strcmp(PQgetvalue(res, row, 1), want) == 0;
        char *got = h_strf("%s", PQgetvalue(res, row, 1));
        free(want);
        if (!same) {
            PQclear(res);
            dump(f);
            ck_abort_msg("%s: pubsub.item has %s at seq %lld, subscribers "
                         "got it-%d", label, got, q, r->ns.index_of_seq[q]);
        }
        free(got);
    }
    PQclear(res);

    /* And the dispatcher's committed position reaches the end: every
     * event recorded as handed to the server for every subscription. */
    long long t = h_now_ms(), delivered = -1, cursor = -1;
    while (h_now_ms() - t < DRAINED_MS) {
        delivered = sql_int(f, "SELECT delivered_seq FROM pubsub.dispatch "
                               "WHERE node_id = %lld", r->ns.node_id);
        cursor = sql_int(f, "SELECT fanout_cursor FROM pubsub.dispatch "
                            "WHERE node_id = %lld", r->ns.node_id);
        if (delivered == last_seq && cursor == 0)
            break;
        h_pump(100);
    }
    if (delivered != last_seq || cursor != 0) {
        dump(f);
        ck_abort_msg("%s: %d ms after delivery, the dispatch position is "
                     "(%lld, %lld), expected (%lld, 0)", label, DRAINED_MS,
                     delivered, cursor, last_seq);
    }
    return last_seq;
}

/* ---- 6. order and completeness ------------------------------------------ */

START_TEST(test_order_and_completeness)
{
    struct run r;
    run_setup(&r, 6, N_ORDER, false);
    struct fixture *f = &r.f;

    long long t0 = h_now_ms();
    pub_run(f, &r.ns, &r.pub, r.subs, N_ORDER);
    long long pub_ms = h_now_ms() - t0;
    fprintf(stderr, "order: %d publishes acknowledged in %lld ms (%.0f/s, %d "
            "in flight)\n", r.pub.acked, pub_ms,
            r.pub.acked * 1000.0 / (double)(pub_ms > 0 ? pub_ms : 1),
            IQ_WINDOW);
    if (r.pub.acked != N_ORDER) {
        dump(f);
        ck_abort_msg("order: %d of %d publishes acknowledged, %d errors "
                     "(last: %s)", r.pub.acked, N_ORDER, r.pub.errors,
                     r.pub.last_error);
    }
    long long all_ms = 0;
    long long last_seq = run_finish(&r, "order", t0, &all_ms);
    fprintf(stderr, "order: %d notifications to %d subscribers received "
            "%lld ms after the first publish (%.0f/s)\n", N_ORDER * NSUBS,
            NSUBS, all_ms,
            N_ORDER * NSUBS * 1000.0 / (double)(all_ms > 0 ? all_ms : 1));

    /* No fault: exactly once, and seq order is publish order (one
     * publisher, one node: its requests run in arrival order). */
    ck_assert_int_eq(last_seq, N_ORDER);
    for (int i = 0; i < NSUBS; i++) {
        ck_assert_msg(r.subs[i].dups == 0, "order: %s got %lld duplicates "
                      "without any fault", r.subs[i].user, r.subs[i].dups);
        ck_assert_int_eq(r.subs[i].received, N_ORDER);
    }
    for (long long q = 1; q <= last_seq; q++) {
        if (r.ns.index_of_seq[q] != q - 1) {
            dump(f);
            ck_abort_msg("order: seq %lld carries it-%d, expected it-%lld "
                         "(publish order)", q, r.ns.index_of_seq[q], q - 1);
        }
    }
    run_teardown(&r);
}
END_TEST

/* ---- 7. kill -9 of pubsubd, twice --------------------------------------- */

START_TEST(test_crash)
{
    struct run r;
    run_setup(&r, 7, N_CRASH, false);
    struct fixture *f = &r.f;
    struct publisher *p = &r.pub;

    long long t0 = h_now_ms();
    for (int k = 1; k <= 2; k++) {
        while (p->next < N_CRASH * k / 3) {
            if (!pub_step(f, &r.ns, p, N_CRASH * k / 3, REPLY_STALL_MS)) {
                dump(f);
                ck_abort_msg("crash: publish it-%d: no reply within %d ms",
                             p->inflight[0], REPLY_STALL_MS);
            }
            drain_all(f, &r.ns, r.subs);
        }
        /* Kill in the middle of the work: publishes in flight, and
         * notifications on their way. */
        struct h_proc *victim = live_proc(f);
        h_proc_signal(victim, SIGKILL);
        int st = h_proc_wait_exit(victim, 5000);
        ck_assert_msg(st == 256 + SIGKILL, "crash: pubsubd exit status %d "
                      "after SIGKILL", st);
        fprintf(stderr, "crash: kill %d after %d publishes sent, %d "
                "acknowledged, %d in flight; the subscribers had %lld, %lld, "
                "%lld distinct notifications\n", k, p->next, p->acked,
                p->ninflight, r.subs[0].distinct, r.subs[1].distinct,
                r.subs[2].distinct);
        /* Replies already on their way still count; the rest are lost. */
        h_pump(300);
        pub_collect(f, p);
        pub_forget_inflight(p);
        drain_all(f, &r.ns, r.subs);

        /* A few publishes while the component is down: Prosody answers
         * them with errors; not acknowledged. */
        int errors = p->errors;
        int stop = p->next + N_WHILE_DOWN;
        while (p->next < stop || p->ninflight > 0) {
            if (!pub_step(f, &r.ns, p, stop, IQ_TIMEOUT_MS)) {
                pub_forget_inflight(p);
                break;
            }
        }
        fprintf(stderr, "crash: %d of %d publishes sent while pubsubd was "
                "down got an error (%s)\n", p->errors - errors, N_WHILE_DOWN,
                p->last_error);

        start_proc(f);
        long long up0 = h_now_ms();
        wait_ready(f, p->c, COMPONENT_UP_MS);
        fprintf(stderr, "crash: new pubsubd ready in %lld ms\n",
                h_now_ms() - up0);
    }
    pub_run(f, &r.ns, p, r.subs, N_CRASH);
    long long pub_ms = h_now_ms() - t0;
    fprintf(stderr, "crash: publishing took %lld ms\n", pub_ms);
    ck_assert_msg(p->acked > N_CRASH / 2, "crash: only %d of %d publishes "
                  "acknowledged", p->acked, N_CRASH);
    run_finish(&r, "crash", t0, NULL);
    run_teardown(&r);
}
END_TEST

/* ---- 8. Prosody restart -------------------------------------------------- */

/* Waits (at most COMPLETE_MS) until every subscriber has every event the
 * node has now, so that nothing is on its way to them. */
static void wait_caught_up(struct run *r, const char *label)
{
    struct fixture *f = &r->f;
    long long last_seq = sql_int(f, "SELECT last_seq FROM pubsub.node WHERE "
                                    "node_id = %lld", r->ns.node_id);
    long long deadline = h_now_ms() + COMPLETE_MS;
    for (;;) {
        drain_all(f, &r->ns, r->subs);
        int behind = -1;
        for (int i = 0; i < NSUBS && behind < 0; i++)
            if (r->subs[i].distinct != last_seq)
                behind = i;
        if (behind < 0)
            return;
        if (h_now_ms() >= deadline) {
            dump(f);
            ck_abort_msg("%s: %s has %lld of %lld events after %d ms", label,
                         r->subs[behind].user, r->subs[behind].distinct,
                         last_seq, COMPLETE_MS);
        }
        h_pump(20);
    }
}

/*
 * The subscribers are online for the first third, offline from then until
 * after the restart (Prosody stores their notifications), and online
 * again for the rest.  Prosody restarts while notifications and publishes
 * are in flight, so pubsubd loses its link with batches whose barrier was
 * not answered and publishes whose result never left.
 *
 * Why not online at the moment of the restart: Prosody 0.12.3, on
 * SIGTERM, can write a <message/> it routed to a c2s session just before
 * the signal after that session's </stream:stream> (seen on the wire:
 * "...</stream:error></stream:stream><message ... id='ps-1-1468-2'"); the
 * client discards it, yet Prosody had accepted it (it answered pubsubd's
 * barrier ping that followed).  That loses notifications, or breaks their
 * order when later ones were stored offline, inside Prosody: outside what
 * pubsubd promises ("what the XMPP server does next is its business").
 * Logged-out subscribers go through offline storage, which Prosody keeps
 * in order across its restart.  They log out only once caught up: a
 * client that closes its stream drops what was still on its way to it.
 */
START_TEST(test_prosody_restart)
{
    struct run r;
    run_setup(&r, 8, N_RESTART, true);
    struct fixture *f = &r.f;
    struct publisher *p = &r.pub;
    int online = N_RESTART / 3, restart_at = N_RESTART / 2;
    int while_offline = N_RESTART / 10;

    long long t0 = h_now_ms();
    pub_run(f, &r.ns, p, r.subs, online);
    wait_caught_up(&r, "restart");
    for (int i = 0; i < NSUBS; i++) {
        h_client_disconnect(r.subs[i].c);
        r.subs[i].c = NULL;
    }
    pub_run(f, &r.ns, p, r.subs, restart_at - IQ_WINDOW);
    /* Restart with publishes in flight (on the wire, not just queued in
     * the client) and notifications on their way. */
    while (p->ninflight < IQ_WINDOW && p->next < restart_at)
        pub_send(f, &r.ns, p, p->next++);
    h_pump(30);
    pub_collect(f, p);
    long long seq_before = sql_int(f, "SELECT last_seq FROM pubsub.node "
                                      "WHERE node_id = %lld", r.ns.node_id);
    long long delivered = sql_int(f, "SELECT delivered_seq FROM "
                                     "pubsub.dispatch WHERE node_id = %lld",
                                  r.ns.node_id);
    fprintf(stderr, "restart: Prosody restart after %d publishes sent, %d "
            "acknowledged, %d in flight; last_seq %lld, delivered_seq %lld; "
            "the subscribers logged out after %d\n", p->next, p->acked,
            p->ninflight, seq_before, delivered, online);
    long long r0 = h_now_ms();
    h_envctl("prosody-restart");
    fprintf(stderr, "restart: prosody-restart took %lld ms\n",
            h_now_ms() - r0);

    /* The publishes in flight are lost unless their result came. */
    h_pump(200);
    pub_collect(f, p);
    pub_forget_inflight(p);
    h_client_disconnect(p->c);

    /* The publisher comes back first and publishes while the subscribers
     * are still offline. */
    long long c0 = h_now_ms();
    p->c = connect_retry(f, "owner", 20000);
    wait_ready(f, p->c, 30000);
    fprintf(stderr, "restart: %s ready %lld ms after the restart\n", f->jid,
            h_now_ms() - c0);
    int before_offline = p->acked;
    int stop = p->next + while_offline;
    while (p->next < stop || p->ninflight > 0) {
        if (!pub_step(f, &r.ns, p, stop, REPLY_STALL_MS)) {
            dump(f);
            ck_abort_msg("restart: publish it-%d: no reply within %d ms",
                         p->inflight[0], REPLY_STALL_MS);
        }
    }
    fprintf(stderr, "restart: %d publishes acknowledged after the restart, "
            "before the subscribers came back\n", p->acked - before_offline);

    for (int i = 0; i < NSUBS; i++) {
        r.subs[i].c = connect_retry(f, r.subs[i].user, 20000);
        subscriber_drain(f, &r.ns, &r.subs[i]);
        fprintf(stderr, "restart:   %s logged in again: %lld distinct "
                "notifications, %lld from offline storage\n", r.subs[i].user,
                r.subs[i].distinct, r.subs[i].offline);
    }

    pub_run(f, &r.ns, p, r.subs, N_RESTART);
    ck_assert_msg(p->acked > N_RESTART / 2, "restart: only %d of %d "
                  "publishes acknowledged", p->acked, N_RESTART);
    ck_assert_msg(h_proc_running(live_proc(f)), "pubsubd exited");
    run_finish(&r, "restart", t0, NULL);
    for (int i = 0; i < NSUBS; i++)
        ck_assert_msg(r.subs[i].offline > 0, "restart: %s received nothing "
                      "from offline storage: the test did not test it",
                      r.subs[i].user);
    run_teardown(&r);
}
END_TEST

/* Check parent process: whatever happened in the test, Prosody runs. */
static void ensure_prosody_running(void)
{
    if (getenv("PST_ENV") == NULL)
        return;
    if (!h_prosody_running() && h_envctl_try("prosody-start") != 0)
        fprintf(stderr, "teardown: could not start Prosody again\n");
}

static TCase *tcase(const char *name, const TTest *test, int timeout_s)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout_s);
    tcase_add_test(tc, test);
    return tc;
}

static Suite *delivery_suite(void)
{
    Suite *s = suite_create("delivery");
    suite_add_tcase(s, tcase("order_and_completeness",
                             test_order_and_completeness, 300));
    suite_add_tcase(s, tcase("crash", test_crash, 300));
    TCase *tc = tcase("prosody_restart", test_prosody_restart, 300);
    tcase_add_unchecked_fixture(tc, NULL, ensure_prosody_running);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(delivery_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
