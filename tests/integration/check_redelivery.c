/*
 * check_redelivery.c - integration tests of redelivery of bounced
 * notifications and of dead letters (schema/009_redelivery.sql,
 * src/redelivery.c, src/commands.c).
 *
 * The test Prosody has no s2s: a notification to a JID at another domain
 * (UNREACHABLE, nobody@nowhere.invalid) comes back to the component as
 * <message type='error'> (not-allowed) carrying the notification id
 * ps-<node_id>-<seq>-<sub_id>.  pubsubd records the bounce in
 * pubsub.redelivery, retries that subscription alone after
 * BASE_MS * 2^(attempts-1), and after MAX_ATTEMPTS bounces keeps it as a
 * dead letter, which the node's owners list with the XEP-0050 command
 * dead-letters and re-drive with the command redrive.  A retry that is not
 * bounced within WINDOW_MS counts as delivered.
 *
 * What is proved: the other subscribers of the node get every notification
 * at once, in order, exactly once (test 1, test 5 with five unreachable
 * subscriptions); every bounced notification ends as exactly one dead
 * letter after exactly MAX_ATTEMPTS deliveries, listed by dead-letters with
 * its seq, JID, attempts, error and item (test 1); redrive puts them back
 * to be retried with a fresh count, and they end dead again (test 2); a
 * retry nobody bounces reaches the subscriber with the same id and content
 * and is forgotten after the window (test 3); the commands are listed by
 * disco#items, owners only, unknown nodes and commands are item-not-found,
 * cancel cancels (test 4).
 *
 * Each test starts its own pubsubd as c3.<domain> on a fresh database with
 * short redelivery timings (see EXTRA_ENV).  Tests run one at a time in
 * forked processes (CK_FORK).
 */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NS_COMMANDS "http://jabber.org/protocol/commands"
#define NS_DATA "jabber:x:data"
#define NS_ENTRY "urn:example:pubsubd:redelivery"

#define MAX_ATTEMPTS 3
#define BASE_MS 200
#define POLL_MS 200
#define WINDOW_MS 1500

#define TEST_TIMEOUT_S 90
#define COMPONENT_UP_MS 10000
#define IQ_TIMEOUT_MS 5000
#define PROMPT_MS 2000         /* test 1: all 20 notifications, from the first publish */
#define PROMPT_MANY_MS 5000    /* test 5: all 50 notifications, from the first publish */
#define DEAD_MS 15000          /* bound on every bounced notification ending dead */
#define RETRY_MS 5000          /* test 3: the inserted retry reaches alice */
#define SILENCE_MS 500

#define UNREACHABLE "nobody@nowhere.invalid"

static const char *const EXTRA_ENV[] = {
    "PUBSUBD_REDELIVERY_MAX_ATTEMPTS=3",
    "PUBSUBD_REDELIVERY_BASE_MS=200",
    "PUBSUBD_DISPATCH_POLL_MS=200",
    "PUBSUBD_REDELIVERY_WINDOW_MS=1500",
    NULL,
};

/* One test's pubsubd, database, clients and node. */
struct fixture {
    char *jid;  /* component JID */
    char *db;   /* conninfo of the fresh database */
    struct h_proc *proc;
    struct h_client *owner, *alice, *eve;
    char *node;
    long long node_id;
    long long alice_sub;
};

/* ---- small utilities ---------------------------------------------------- */

/* h_sql_int on the test's database, the statement built printf-style. */
static long long sql_int(struct fixture *f, const char *fmt, ...) H_PRINTF_LIKE(2, 3);
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

/* h_sql on the test's database, printf-style; caller PQclear()s. */
static PGresult *sql(struct fixture *f, const char *fmt, ...) H_PRINTF_LIKE(2, 3);
static PGresult *sql(struct fixture *f, const char *fmt, ...)
{
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    PGresult *r = h_sql(f->db, text);
    free(text);
    return r;
}

/* Item i's id and payload; caller frees. */
static char *item_id(int i)
{
    return h_strf("item-%02d", i);
}

static char *item_payload(int i)
{
    return h_strf("<entry xmlns='" NS_ENTRY "'>%d</entry>", i);
}

/* ---- the fixture -------------------------------------------------------- */

/* Sends a pubsub IQ of type type with child as the content of
 * <pubsub xmlns=ns>; returns the reply (caller releases). */
static xmpp_stanza_t *pubsub_iq(struct fixture *f, struct h_client *c, const char *type,
                                const char *ns, const char *child)
{
    char *id = h_uid("iq");
    char *xml = h_strf("<iq type='%s' to='%s' id='%s'><pubsub xmlns='%s'>%s</pubsub></iq>", type,
                       f->jid, id, ns, child);
    xmpp_stanza_t *reply = h_iq(c, xml, IQ_TIMEOUT_MS);
    free(xml);
    free(id);
    return reply;
}

/* Waits until the component answers disco#items with a result (link up,
 * database migrated). */
static void wait_ready(struct fixture *f)
{
    h_wait_service_ready(f->proc, f->owner, f->jid, COMPONENT_UP_MS);
}

/* Creates a node (owner: owner@) and returns its node_id; *name gets its
 * name (caller frees). */
static long long create_node(struct fixture *f, char **name)
{
    *name = h_uid("rd");
    char *child = h_strf("<create node='%s'/>", *name);
    xmpp_stanza_t *r = pubsub_iq(f, f->owner, "set", H_NS_PUBSUB, child);
    h_assert_result(f->proc, r, "create node");
    xmpp_stanza_release(r);
    free(child);
    return sql_int(f, "SELECT node_id FROM pubsub.node WHERE name = '%s' AND NOT deleted", *name);
}

/* alice subscribes her bare JID to f->node; returns the sub_id. */
static long long subscribe_alice(struct fixture *f)
{
    char *child = h_strf("<subscribe node='%s' jid='%s'/>", f->node, h_client_bare_jid(f->alice));
    xmpp_stanza_t *r = pubsub_iq(f, f->alice, "set", H_NS_PUBSUB, child);
    h_assert_result(f->proc, r, "subscribe alice");
    xmpp_stanza_release(r);
    free(child);
    return sql_int(f, "SELECT sub_id FROM pubsub.subscription WHERE node_id = %lld AND jid = '%s'",
                   f->node_id, h_client_bare_jid(f->alice));
}

/* The owner subscribes jid (XEP-0060 §8.8.2); returns the sub_id. */
static long long subscribe_other(struct fixture *f, const char *jid)
{
    char *child = h_strf("<subscriptions node='%s'><subscription jid='%s' "
                         "subscription='subscribed'/></subscriptions>", f->node, jid);
    xmpp_stanza_t *r = pubsub_iq(f, f->owner, "set", H_NS_PUBSUB_OWNER, child);
    h_assert_result(f->proc, r, "owner subscribes another JID");
    xmpp_stanza_release(r);
    free(child);
    return sql_int(f, "SELECT sub_id FROM pubsub.subscription WHERE node_id = %lld AND jid = '%s'"
                      " AND state = 'subscribed'", f->node_id, jid);
}

static void fixture_up(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    f->jid = h_strf("c3.%s", h_env("PST_DOMAIN"));
    f->db = h_db_create();
    f->proc = h_pubsubd_start(f->jid, f->db, EXTRA_ENV);
    f->owner = h_client_connect("owner");
    f->alice = h_client_connect("alice");
    f->eve = h_client_connect("eve");
    wait_ready(f);
    f->node_id = create_node(f, &f->node);
    f->alice_sub = subscribe_alice(f);
}

static void fixture_down(struct fixture *f)
{
    h_client_disconnect(f->owner);
    h_client_disconnect(f->alice);
    h_client_disconnect(f->eve);
    h_pubsubd_stop(f->proc);
    free(f->node);
    free(f->db);
    free(f->jid);
}

/* The owner publishes item i (item_id(i), item_payload(i)) to f->node and
 * asserts the result. */
static void publish(struct fixture *f, int i)
{
    char *id = item_id(i);
    char *payload = item_payload(i);
    char *child = h_strf("<publish node='%s'><item id='%s'>%s</item></publish>", f->node, id,
                         payload);
    xmpp_stanza_t *r = pubsub_iq(f, f->owner, "set", H_NS_PUBSUB, child);
    h_assert_result(f->proc, r, "publish");
    xmpp_stanza_release(r);
    free(child);
    free(payload);
    free(id);
}

/* The owner publishes items 1..n to f->node with all n IQs in flight (so
 * that the time to publish does not count against the notifications'
 * deadline) and asserts every result.  Requests about one node execute in
 * the order they arrived, so item i gets seq i. */
static void publish_pipelined(struct fixture *f, int n)
{
    char **ids = calloc((size_t)n, sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    for (int i = 1; i <= n; i++) {
        char *iid = item_id(i);
        char *payload = item_payload(i);
        ids[i - 1] = h_uid("pub");
        char *xml = h_strf("<iq type='set' to='%s' id='%s'><pubsub xmlns='" H_NS_PUBSUB "'>"
                           "<publish node='%s'><item id='%s'>%s</item></publish></pubsub></iq>",
                           f->jid, ids[i - 1], f->node, iid, payload);
        h_send(f->owner, xml);
        free(xml);
        free(payload);
        free(iid);
    }
    for (int i = 0; i < n; i++) {
        xmpp_stanza_t *r = h_wait_reply(f->owner, ids[i], IQ_TIMEOUT_MS);
        h_assert_result(f->proc, r, "publish");
        xmpp_stanza_release(r);
        free(ids[i]);
    }
    free(ids);
}

/* ---- notifications ------------------------------------------------------ */

/*
 * Waits until deadline_ms (h_now_ms() clock) for alice's next message and
 * asserts it is exactly the notification of item i published as seq: from
 * the component, to alice's bare JID, id ps-<node>-<seq>-<sub>, type
 * headline, <event><items node><item id>payload</item></items></event>.
 * Returns the message (caller releases).
 */
static xmpp_stanza_t *expect_notification(struct fixture *f, long long deadline_ms, long long seq,
                                          int i)
{
    long long left = deadline_ms - h_now_ms();
    xmpp_stanza_t *m = h_next_message(f->alice, left > 0 ? (int)left : 0);
    if (m == NULL) {
        h_fail_dump(f->proc);
        ck_abort_msg("alice: no notification of seq %lld by the deadline (%lld ms late); "
                     "a bounced subscription must not hold the node back", seq,
                     h_now_ms() - deadline_ms);
    }
    char *text = h_stanza_to_string(m);
    char *id = h_strf("ps-%lld-%lld-%lld", f->node_id, seq, f->alice_sub);
    ck_assert_msg(strcmp(xmpp_stanza_get_name(m), "message") == 0, "not a message: %s", text);
    ck_assert_msg(xmpp_stanza_get_id(m) != NULL && strcmp(xmpp_stanza_get_id(m), id) == 0,
                  "expected notification %s, got %s", id, text);
    ck_assert_pstr_eq(xmpp_stanza_get_from(m), f->jid);
    ck_assert_pstr_eq(xmpp_stanza_get_to(m), h_client_bare_jid(f->alice));
    ck_assert_pstr_eq(xmpp_stanza_get_type(m), "headline");
    ck_assert_msg(h_count_children(m, NULL, NULL) == 1, "expected only <event/>: %s", text);
    xmpp_stanza_t *event = h_child(m, "event", H_NS_PUBSUB_EVENT);
    ck_assert_msg(event != NULL, "no <event/>: %s", text);
    char *iid = item_id(i);
    char *payload = item_payload(i);
    char *want_xml = h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'><items node='%s'>"
                            "<item id='%s'>%s</item></items></event>", f->node, iid, payload);
    char *want = h_canon_xml(want_xml);
    char *got = h_canon(event, NULL);
    ck_assert_msg(strcmp(got, want) == 0, "notification of seq %lld:\n got %s\nwant %s\n(%s)", seq,
                  got, want, text);
    free(got);
    free(want);
    free(want_xml);
    free(payload);
    free(iid);
    free(id);
    free(text);
    return m;
}

/* Runs the XMPP loop for ms and asserts that alice received nothing. */
static void assert_alice_silent(struct fixture *f, int ms, const char *when)
{
    xmpp_stanza_t *m = h_next_message(f->alice, ms);
    if (m != NULL) {
        char *text = h_stanza_to_string(m);
        h_fail_dump(f->proc);
        ck_abort_msg("%s: alice received an unexpected message: %s", when, text);
    }
}

/* ---- pubsub.redelivery -------------------------------------------------- */

/* Polls until `SELECT count(*) FROM pubsub.redelivery WHERE <where>` is
 * want or timeout_ms passed; returns the milliseconds it took, or fails
 * the test naming the last count. */
static long long wait_count(struct fixture *f, const char *where, long long want, int timeout_ms)
{
    long long t0 = h_now_ms(), n = -1;
    for (;;) {
        n = sql_int(f, "SELECT count(*) FROM pubsub.redelivery WHERE %s", where);
        if (n == want)
            return h_now_ms() - t0;
        if (h_now_ms() - t0 > timeout_ms)
            break;
        h_pump(50);
    }
    PGresult *r = h_sql(f->db, "SELECT coalesce(string_agg(format('(sub %s seq %s %s attempts %s)',"
                               " sub_id, seq, state, attempts), ' ' ORDER BY sub_id, seq), 'none')"
                               " FROM pubsub.redelivery");
    char *rows = h_strf("%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    h_fail_dump(f->proc);
    ck_abort_msg("pubsub.redelivery WHERE %s: %lld rows after %d ms, expected %lld; rows: %s", where,
                 n, timeout_ms, want, rows);
    free(rows);
    return -1;
}

/*
 * Asserts that pubsub.redelivery holds exactly the dead letters of seqs
 * 1..n for each of the subscriptions subs[0..nsubs-1] (JID jids[k]), each
 * after exactly MAX_ATTEMPTS attempts, with the published item id, and a
 * last error naming the bounce's condition (Prosody: not-allowed), and
 * nothing else (in particular nothing for alice).
 */
static void assert_dead_letters_stored(struct fixture *f, const long long *subs,
                                       const char *const *jids, int nsubs, int n)
{
    ck_assert_int_eq(sql_int(f, "SELECT count(*) FROM pubsub.redelivery"), (long long)n * nsubs);
    for (int k = 0; k < nsubs; k++) {
        PGresult *r = sql(f, "SELECT seq, jid, state, attempts, item_id, last_error, node_id"
                             " FROM pubsub.redelivery WHERE sub_id = %lld ORDER BY seq", subs[k]);
        ck_assert_int_eq(PQntuples(r), n);
        for (int i = 0; i < n; i++) {
            char *iid = item_id(i + 1);
            ck_assert_int_eq(strtoll(PQgetvalue(r, i, 0), NULL, 10), i + 1);
            ck_assert_str_eq(PQgetvalue(r, i, 1), jids[k]);
            ck_assert_str_eq(PQgetvalue(r, i, 2), "dead");
            ck_assert_msg(strtoll(PQgetvalue(r, i, 3), NULL, 10) == MAX_ATTEMPTS,
                          "dead letter (sub %lld, seq %d): attempts %s, expected %d", subs[k],
                          i + 1, PQgetvalue(r, i, 3), MAX_ATTEMPTS);
            ck_assert_str_eq(PQgetvalue(r, i, 4), iid);
            ck_assert_msg(strstr(PQgetvalue(r, i, 5), "not-allowed") != NULL,
                          "dead letter (sub %lld, seq %d): last_error \"%s\" does not name the "
                          "bounce's condition not-allowed", subs[k], i + 1, PQgetvalue(r, i, 5));
            ck_assert_int_eq(strtoll(PQgetvalue(r, i, 6), NULL, 10), f->node_id);
            free(iid);
        }
        PQclear(r);
    }
}

/* ---- XEP-0050 commands ---------------------------------------------------- */

/* Sends <command node=cmd [action] [sessionid]>inner</command> as alice,
 * owner or eve (c); returns the reply (caller releases). */
static xmpp_stanza_t *command_iq(struct fixture *f, struct h_client *c, const char *cmd,
                                 const char *action, const char *sessionid, const char *inner)
{
    char *id = h_uid("cmd");
    char *a = action ? h_strf(" action='%s'", action) : h_strf("%s", "");
    char *s = sessionid ? h_strf(" sessionid='%s'", sessionid) : h_strf("%s", "");
    char *xml = h_strf("<iq type='set' to='%s' id='%s'><command xmlns='" NS_COMMANDS
                       "' node='%s'%s%s>%s</command></iq>", f->jid, id, cmd, a, s,
                       inner ? inner : "");
    xmpp_stanza_t *reply = h_iq(c, xml, IQ_TIMEOUT_MS);
    free(xml);
    free(s);
    free(a);
    free(id);
    return reply;
}

/* The <command/> of a result, asserting its node and status.  Borrowed. */
static xmpp_stanza_t *command_of(struct fixture *f, xmpp_stanza_t *r, const char *cmd,
                                 const char *status, const char *what)
{
    h_assert_result(f->proc, r, what);
    xmpp_stanza_t *command = h_child(r, "command", NS_COMMANDS);
    char *text = h_stanza_to_string(r);
    ck_assert_msg(command != NULL, "%s: no <command/> in %s", what, text);
    ck_assert_msg(xmpp_stanza_get_attribute(command, "node") != NULL &&
                      strcmp(xmpp_stanza_get_attribute(command, "node"), cmd) == 0,
                  "%s: wrong node in %s", what, text);
    ck_assert_msg(xmpp_stanza_get_attribute(command, "status") != NULL &&
                      strcmp(xmpp_stanza_get_attribute(command, "status"), status) == 0,
                  "%s: expected status %s in %s", what, status, text);
    free(text);
    return command;
}

/* The <field var=var/> child of parent (a form or a form item), or NULL. */
static xmpp_stanza_t *field_of(xmpp_stanza_t *parent, const char *var)
{
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(parent); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (!xmpp_stanza_is_tag(k) || strcmp(xmpp_stanza_get_name(k), "field") != 0)
            continue;
        const char *v = xmpp_stanza_get_attribute(k, "var");
        if (v != NULL && strcmp(v, var) == 0)
            return k;
    }
    return NULL;
}

/*
 * Executes cmd as c (first stage) and asserts the answer: status
 * executing, a non-empty sessionid, and a form (jabber:x:data type form)
 * asking for the field node.  Returns the sessionid (caller frees).
 */
static char *command_start(struct fixture *f, struct h_client *c, const char *cmd)
{
    xmpp_stanza_t *r = command_iq(f, c, cmd, "execute", NULL, NULL);
    xmpp_stanza_t *command = command_of(f, r, cmd, "executing", cmd);
    char *text = h_stanza_to_string(r);
    const char *sid = xmpp_stanza_get_attribute(command, "sessionid");
    ck_assert_msg(sid != NULL && sid[0] != '\0', "%s: no sessionid in %s", cmd, text);
    xmpp_stanza_t *x = h_child(command, "x", NS_DATA);
    ck_assert_msg(x != NULL, "%s: no form in %s", cmd, text);
    ck_assert_pstr_eq(xmpp_stanza_get_type(x), "form");
    ck_assert_msg(field_of(x, "node") != NULL, "%s: the form does not ask for node: %s", cmd,
                  text);
    char *out = h_strf("%s", sid);
    free(text);
    xmpp_stanza_release(r);
    return out;
}

/* Submits the form of cmd for node as c; returns the reply (caller
 * releases). */
static xmpp_stanza_t *command_submit(struct fixture *f, struct h_client *c, const char *cmd,
                                     const char *sid, const char *node)
{
    char *inner = h_strf("<x xmlns='" NS_DATA "' type='submit'><field var='node'><value>%s"
                         "</value></field></x>", node);
    xmpp_stanza_t *r = command_iq(f, c, cmd, NULL, sid, inner);
    free(inner);
    return r;
}

/* The text of the first <value/> of field var in parent; caller frees;
 * NULL when absent. */
static char *field_value(xmpp_stanza_t *parent, const char *var)
{
    xmpp_stanza_t *field = field_of(parent, var);
    return field != NULL ? h_child_text(field, "value", NULL) : NULL;
}

/*
 * Runs dead-letters for f->node as the owner and asserts the listing is
 * exactly seqs 1..n for each of jids[0..nsubs-1] (ordered by seq, then
 * JID), attempts MAX_ATTEMPTS, error naming not-allowed, item item_id(seq).
 */
static void assert_dead_letters_listed(struct fixture *f, const char *const *jids, int nsubs,
                                       int n)
{
    char *sid = command_start(f, f->owner, "dead-letters");
    xmpp_stanza_t *r = command_submit(f, f->owner, "dead-letters", sid, f->node);
    xmpp_stanza_t *command = command_of(f, r, "dead-letters", "completed", "dead-letters submit");
    char *text = h_stanza_to_string(r);
    xmpp_stanza_t *x = h_child(command, "x", NS_DATA);
    ck_assert_msg(x != NULL, "dead-letters: no form in %s", text);
    ck_assert_pstr_eq(xmpp_stanza_get_type(x), "result");
    xmpp_stanza_t *reported = h_child(x, "reported", NULL);
    ck_assert_msg(reported != NULL, "dead-letters: no <reported/> in %s", text);
    static const char *const vars[] = {"seq", "jid", "attempts", "error", "item"};
    ck_assert_int_eq(h_count_children(reported, "field", NULL), 5);
    for (size_t v = 0; v < sizeof vars / sizeof vars[0]; v++)
        ck_assert_msg(field_of(reported, vars[v]) != NULL, "dead-letters: no reported field %s: %s",
                      vars[v], text);
    ck_assert_msg(h_count_children(x, "item", NULL) == n * nsubs,
                  "dead-letters: %d items, expected %d: %s", h_count_children(x, "item", NULL),
                  n * nsubs, text);
    int k = 0;
    for (xmpp_stanza_t *it = xmpp_stanza_get_children(x); it != NULL; it = xmpp_stanza_get_next(it)) {
        if (!xmpp_stanza_is_tag(it) || strcmp(xmpp_stanza_get_name(it), "item") != 0)
            continue;
        int seq = k / nsubs + 1;
        const char *jid = jids[k % nsubs];
        char *want_seq = h_strf("%d", seq);
        char *want_attempts = h_strf("%d", MAX_ATTEMPTS);
        char *want_item = item_id(seq);
        char *got_seq = field_value(it, "seq");
        char *got_jid = field_value(it, "jid");
        char *got_attempts = field_value(it, "attempts");
        char *got_error = field_value(it, "error");
        char *got_item = field_value(it, "item");
        ck_assert_pstr_eq(got_seq, want_seq);
        ck_assert_pstr_eq(got_jid, jid);
        ck_assert_pstr_eq(got_attempts, want_attempts);
        ck_assert_msg(got_error != NULL && strstr(got_error, "not-allowed") != NULL,
                      "dead letter %d: error \"%s\" does not name not-allowed", k,
                      got_error ? got_error : "(none)");
        ck_assert_pstr_eq(got_item, want_item);
        free(got_item);
        free(got_error);
        free(got_attempts);
        free(got_jid);
        free(got_seq);
        free(want_item);
        free(want_attempts);
        free(want_seq);
        k++;
    }
    free(text);
    xmpp_stanza_release(r);
    free(sid);
}

/* Runs redrive for node as c; returns the reply (caller releases). */
static xmpp_stanza_t *redrive(struct fixture *f, struct h_client *c, const char *node)
{
    char *sid = command_start(f, c, "redrive");
    xmpp_stanza_t *r = command_submit(f, c, "redrive", sid, node);
    free(sid);
    return r;
}

/* ---- shared scenario ------------------------------------------------------ */

/*
 * Subscribes UNREACHABLE next to alice, publishes n items and asserts that
 * alice gets them all, in order, within PROMPT_MS of the first publish, and
 * that the unreachable subscription ends with n dead letters after exactly
 * MAX_ATTEMPTS attempts each.  Returns the unreachable sub_id.
 */
static long long publish_until_dead(struct fixture *f, int n, const char *label)
{
    long long unreachable = subscribe_other(f, UNREACHABLE);
    long long t0 = h_now_ms();
    publish_pipelined(f, n);
    long long t_published = h_now_ms();
    for (int i = 1; i <= n; i++)
        xmpp_stanza_release(expect_notification(f, t0 + PROMPT_MS, i, i));
    long long t_alice = h_now_ms();
    (void)wait_count(f, "state = 'dead'", n, DEAD_MS);
    long long t_dead = h_now_ms();
    fprintf(stderr, "check_redelivery %s: %d publishes acknowledged in %lld ms, alice had all %d "
                    "notifications %lld ms after the first publish, %d dead letters %lld ms after "
                    "the first publish\n", label, n, t_published - t0, n, t_alice - t0, n,
            t_dead - t0);
    const long long subs[] = {unreachable};
    const char *const jids[] = {UNREACHABLE};
    assert_dead_letters_stored(f, subs, jids, 1, n);
    /* The retries were for the unreachable subscription alone. */
    assert_alice_silent(f, 0, "after the dead letters settled");
    return unreachable;
}

/* ---- tests ---------------------------------------------------------------- */

/* 1. A bounced subscription is retried alone; it ends as dead letters that
 * dead-letters lists exactly; alice is never held back. */
START_TEST(test_dead_letters)
{
    struct fixture f;
    fixture_up(&f);
    (void)publish_until_dead(&f, 20, "dead_letters");
    const char *const jids[] = {UNREACHABLE};
    assert_dead_letters_listed(&f, jids, 1, 20);
    /* Dead letters stay dead: no more retries, no more changes. */
    h_pump(5 * POLL_MS);
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery WHERE state = 'dead'"
                                 " AND attempts = %d", MAX_ATTEMPTS), 20);
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery"), 20);
    assert_alice_silent(&f, 0, "while dead letters rest");
    fixture_down(&f);
}
END_TEST

/* 2. redrive puts the dead letters back to be retried with a fresh count;
 * still undeliverable, they end dead again. */
START_TEST(test_redrive)
{
    struct fixture f;
    fixture_up(&f);
    long long unreachable = publish_until_dead(&f, 20, "redrive");
    long long before = sql_int(&f, "SELECT count(*) FROM pubsub.redelivery");
    ck_assert_int_eq(before, 20);

    long long t0 = h_now_ms();
    xmpp_stanza_t *r = redrive(&f, f.owner, f.node);
    xmpp_stanza_t *command = command_of(&f, r, "redrive", "completed", "redrive submit");
    char *text = h_stanza_to_string(r);
    xmpp_stanza_t *note = h_child(command, "note", NULL);
    ck_assert_msg(note != NULL, "redrive: no <note/> in %s", text);
    ck_assert_pstr_eq(xmpp_stanza_get_type(note), "info");
    char *note_text = h_child_text(command, "note", NULL);
    ck_assert_pstr_eq(note_text, "20 dead letters re-driven");
    free(note_text);
    free(text);
    xmpp_stanza_release(r);

    /* Back to be retried: none is dead, at least BASE_MS + 2 * BASE_MS of
     * backoff separate the re-drive from the next death. */
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery WHERE state = 'dead'"), 0);
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery WHERE sub_id = %lld"
                                 " AND state IN ('waiting', 'sent') AND attempts < %d",
                             unreachable, MAX_ATTEMPTS), 20);
    /* Retried and bounced again: watch the rows until all are dead again;
     * on the way, retries must be seen in flight (state sent) or bounced
     * and waiting again with a grown count (attempts 1 .. MAX - 1). */
    long long grown_at = -1, t_dead = -1;
    while (t_dead < 0) {
        PGresult *q = sql(&f, "SELECT count(*) FILTER (WHERE state <> 'dead' AND attempts >= 1),"
                              " count(*) FILTER (WHERE state = 'dead') FROM pubsub.redelivery");
        long long grown = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
        long long dead = strtoll(PQgetvalue(q, 0, 1), NULL, 10);
        PQclear(q);
        if (grown > 0 && grown_at < 0)
            grown_at = h_now_ms() - t0;
        if (dead == 20)
            t_dead = h_now_ms() - t0;
        else if (h_now_ms() - t0 > DEAD_MS)
            (void)wait_count(&f, "state = 'dead'", 20, 0); /* fails, listing the rows */
        else
            h_pump(20);
    }
    fprintf(stderr, "check_redelivery redrive: first re-bounce seen %lld ms after the re-drive, "
                    "all 20 dead again %lld ms after it\n", grown_at, t_dead);
    ck_assert_msg(grown_at >= 0, "no retry after the re-drive was seen bouncing (attempts 1..%d "
                  "while not dead) before all were dead again", MAX_ATTEMPTS - 1);
    /* MAX_ATTEMPTS bounces after the reset: at least BASE_MS + 2 * BASE_MS
     * of backoff in between. */
    ck_assert_msg(t_dead >= 3 * BASE_MS, "dead again after %lld ms: faster than the backoff (%d ms)",
                  t_dead, 3 * BASE_MS);
    const long long subs[] = {unreachable};
    const char *const jids[] = {UNREACHABLE};
    assert_dead_letters_stored(&f, subs, jids, 1, 20);
    assert_dead_letters_listed(&f, jids, 1, 20);
    /* alice heard nothing of the re-drive. */
    assert_alice_silent(&f, SILENCE_MS, "after the re-drive");
    fixture_down(&f);
}
END_TEST

/* 3. A retry that is not bounced within the window counts as delivered:
 * alice gets it again (same id and content) and the row goes away. */
START_TEST(test_unbounced_retry_delivered)
{
    struct fixture f;
    fixture_up(&f);
    publish(&f, 1);
    xmpp_stanza_t *first = expect_notification(&f, h_now_ms() + PROMPT_MS, 1, 1);
    char *first_canon = h_canon(first, NULL);
    xmpp_stanza_release(first);
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery"), 0);

    PGresult *ins = sql(&f, "INSERT INTO pubsub.redelivery (sub_id, node_id, seq, jid, state,"
                            " attempts, next_at, last_error, kind, item_id, payload)"
                            " SELECT %lld, e.node_id, e.seq, '%s', 'waiting', 1, now(),"
                            " 'test', e.kind, e.item_id, e.payload FROM pubsub.event e"
                            " WHERE e.node_id = %lld AND e.seq = 1 RETURNING 1",
                        f.alice_sub, h_client_bare_jid(f.alice), f.node_id);
    ck_assert_msg(PQntuples(ins) == 1, "no outbox row of seq 1 to copy (pubsub.event)");
    PQclear(ins);

    long long t0 = h_now_ms();
    xmpp_stanza_t *again = expect_notification(&f, t0 + RETRY_MS, 1, 1);
    long long t_retry = h_now_ms();
    char *again_canon = h_canon(again, NULL);
    ck_assert_msg(strcmp(first_canon, again_canon) == 0,
                  "the retry differs from the first notification:\nfirst %s\nretry %s",
                  first_canon, again_canon);
    xmpp_stanza_release(again);
    /* Within the window the retry is not settled yet. */
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery WHERE sub_id = %lld"
                                 " AND seq = 1 AND state = 'sent' AND next_at > now()",
                             f.alice_sub), 1);
    long long gone_ms = wait_count(&f, "true", 0, WINDOW_MS + 5 * POLL_MS + 2000);
    long long settled = h_now_ms() - t_retry;
    fprintf(stderr, "check_redelivery unbounced_retry: retry received %lld ms after the insert, "
                    "row gone %lld ms after the retry arrived (window %d ms)\n", t_retry - t0,
            settled, WINDOW_MS);
    (void)gone_ms;
    ck_assert_msg(settled >= WINDOW_MS - 500,
                  "the retry was counted delivered %lld ms after it arrived, before the %d ms "
                  "bounce window", settled, WINDOW_MS);
    /* Delivered: sent once, not again. */
    assert_alice_silent(&f, 3 * POLL_MS, "after the retry settled");
    free(again_canon);
    free(first_canon);
    fixture_down(&f);
}
END_TEST

/* Asserts an IQ error reply with type and condition. */
static void expect_error(struct fixture *f, xmpp_stanza_t *r, const char *what, const char *type,
                         const char *condition)
{
    h_assert_error(f->proc, r, what, type, condition, NULL);
    xmpp_stanza_release(r);
}

/* 4. The commands: listed by disco#items; owners only; unknown node and
 * unknown command are item-not-found; cancel cancels; a submission without
 * a node is a bad request. */
START_TEST(test_command_protocol)
{
    struct fixture f;
    fixture_up(&f);

    /* disco#items of the commands node */
    char *id = h_uid("items");
    char *xml = h_strf("<iq type='get' to='%s' id='%s'><query xmlns='" H_NS_DISCO_ITEMS
                       "' node='" NS_COMMANDS "'/></iq>", f.jid, id);
    xmpp_stanza_t *r = h_iq(f.owner, xml, IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r, "disco#items of the commands node");
    char *text = h_stanza_to_string(r);
    xmpp_stanza_t *query = h_child(r, "query", H_NS_DISCO_ITEMS);
    ck_assert_msg(query != NULL, "no <query/>: %s", text);
    /* Other commands may be listed too; these two exactly once each. */
    int seen_list = 0, seen_redrive = 0;
    for (xmpp_stanza_t *it = xmpp_stanza_get_children(query); it; it = xmpp_stanza_get_next(it)) {
        if (!xmpp_stanza_is_tag(it))
            continue;
        ck_assert_msg(strcmp(xmpp_stanza_get_name(it), "item") == 0, "not an <item/>: %s", text);
        ck_assert_pstr_eq(xmpp_stanza_get_attribute(it, "jid"), f.jid);
        const char *node = xmpp_stanza_get_attribute(it, "node");
        ck_assert_msg(node != NULL, "a command without node: %s", text);
        ck_assert_msg(xmpp_stanza_get_attribute(it, "name") != NULL, "a command without name: %s",
                      text);
        seen_list += strcmp(node, "dead-letters") == 0;
        seen_redrive += strcmp(node, "redrive") == 0;
    }
    ck_assert_msg(seen_list == 1 && seen_redrive == 1,
                  "dead-letters and redrive not listed once each: %s", text);
    free(text);
    xmpp_stanza_release(r);
    free(xml);
    free(id);

    /* One dead letter to protect. */
    long long unreachable = subscribe_other(&f, UNREACHABLE);
    publish(&f, 1);
    xmpp_stanza_release(expect_notification(&f, h_now_ms() + PROMPT_MS, 1, 1));
    (void)wait_count(&f, "state = 'dead'", 1, DEAD_MS);
    (void)unreachable;

    /* Not an owner: forbidden, and nothing changes. */
    char *sid = command_start(&f, f.eve, "dead-letters");
    expect_error(&f, command_submit(&f, f.eve, "dead-letters", sid, f.node),
                 "dead-letters by a non-owner", "auth", "forbidden");
    free(sid);
    expect_error(&f, redrive(&f, f.eve, f.node), "redrive by a non-owner", "auth", "forbidden");
    expect_error(&f, redrive(&f, f.alice, f.node), "redrive by a subscriber", "auth",
                 "forbidden");
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery WHERE state = 'dead'"), 1);

    /* Unknown node */
    char *missing = h_uid("no-such-node");
    sid = command_start(&f, f.owner, "dead-letters");
    expect_error(&f, command_submit(&f, f.owner, "dead-letters", sid, missing),
                 "dead-letters of an unknown node", "cancel", "item-not-found");
    free(sid);
    expect_error(&f, redrive(&f, f.owner, missing), "redrive of an unknown node", "cancel",
                 "item-not-found");
    free(missing);

    /* Unknown command */
    expect_error(&f, command_iq(&f, f.owner, "no-such-command", "execute", NULL, NULL),
                 "an unknown command", "cancel", "item-not-found");

    /* A submission without the node */
    sid = command_start(&f, f.owner, "redrive");
    expect_error(&f, command_iq(&f, f.owner, "redrive", NULL, sid,
                                "<x xmlns='" NS_DATA "' type='submit'/>"),
                 "redrive without a node", "modify", "bad-request");
    free(sid);

    /* Cancel: status canceled, the session echoed, nothing re-driven. */
    static const char *const cmds[] = {"dead-letters", "redrive"};
    for (size_t i = 0; i < 2; i++) {
        sid = command_start(&f, f.owner, cmds[i]);
        r = command_iq(&f, f.owner, cmds[i], "cancel", sid, NULL);
        xmpp_stanza_t *command = command_of(&f, r, cmds[i], "canceled", "cancel");
        ck_assert_pstr_eq(xmpp_stanza_get_attribute(command, "sessionid"), sid);
        xmpp_stanza_release(r);
        free(sid);
    }
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery WHERE state = 'dead'"), 1);

    /* The owner still can. */
    r = redrive(&f, f.owner, f.node);
    xmpp_stanza_t *command = command_of(&f, r, "redrive", "completed", "redrive by the owner");
    char *note_text = h_child_text(command, "note", NULL);
    ck_assert_pstr_eq(note_text, "1 dead letters re-driven");
    free(note_text);
    xmpp_stanza_release(r);
    fixture_down(&f);
}
END_TEST

/* 5. Five unreachable subscriptions do not slow the node down for alice. */
START_TEST(test_unreachable_do_not_slow)
{
    enum { NUNREACH = 5, NITEMS = 50 };
    struct fixture f;
    fixture_up(&f);
    long long subs[NUNREACH];
    char *jids[NUNREACH];
    for (int k = 0; k < NUNREACH; k++) {
        jids[k] = h_strf("nobody%d@nowhere%d.invalid", k + 1, k + 1);
        subs[k] = subscribe_other(&f, jids[k]);
    }
    long long t0 = h_now_ms();
    publish_pipelined(&f, NITEMS);
    long long t_published = h_now_ms();
    for (int i = 1; i <= NITEMS; i++)
        xmpp_stanza_release(expect_notification(&f, t0 + PROMPT_MANY_MS, i, i));
    long long t_alice = h_now_ms();
    (void)wait_count(&f, "state = 'dead'", (long long)NUNREACH * NITEMS, DEAD_MS);
    fprintf(stderr, "check_redelivery unreachable_do_not_slow: %d publishes acknowledged in %lld ms,"
                    " alice had all %d notifications %lld ms after the first publish, %d dead "
                    "letters %lld ms after it\n", NITEMS, t_published - t0, NITEMS, t_alice - t0,
            NUNREACH * NITEMS, h_now_ms() - t0);
    assert_dead_letters_stored(&f, subs, (const char *const *)jids, NUNREACH, NITEMS);
    assert_alice_silent(&f, 0, "after the dead letters settled");
    for (int k = 0; k < NUNREACH; k++)
        free(jids[k]);
    fixture_down(&f);
}
END_TEST

/* 6. Re-drive delivers once the subscriber can be reached: a subscription
 * for an account that does not exist yet bounces (service-unavailable)
 * until dead; the account is then created, the owner re-drives, and the
 * new user finds every notification in offline storage (the node sends
 * type normal, which Prosody stores for offline users). */
START_TEST(test_redrive_delivers)
{
    struct fixture f;
    fixture_up(&f);
    char *user = h_strf("ghost%d", (int)getpid());
    char *ghost = h_strf("%s@%s", user, h_env("PST_DOMAIN"));
    PQclear(sql(&f, "UPDATE pubsub.node_config SET notification_type = 'normal'"
                    " WHERE node_id = %lld", f.node_id));
    long long sub = subscribe_other(&f, ghost);
    enum { N = 3 };
    for (int i = 1; i <= N; i++)
        publish(&f, i);
    for (int i = 1; i <= N; i++) { /* alice (type normal now) is not held back */
        xmpp_stanza_t *m = h_next_message(f.alice, PROMPT_MS);
        ck_assert_msg(m != NULL, "alice: notification %d of %d missing", i, N);
        xmpp_stanza_release(m);
    }
    (void)wait_count(&f, "state = 'dead'", N, DEAD_MS);
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery WHERE sub_id = %lld"
                                 " AND state = 'dead'", sub), N);

    char *cmd = h_strf("register %s", user);
    h_envctl(cmd);
    free(cmd);
    xmpp_stanza_t *r = redrive(&f, f.owner, f.node);
    (void)command_of(&f, r, "redrive", "completed", "redrive submit");
    xmpp_stanza_release(r);
    /* Now accepted (stored offline): no bounce, so after the window each
     * retry counts as delivered and its row goes. */
    (void)wait_count(&f, "true", 0, DEAD_MS);

    struct h_client *g = h_client_connect(user);
    int seen[N + 1] = {0};
    for (int k = 0; k < N; k++) {
        xmpp_stanza_t *m = h_next_message(g, 5000);
        ck_assert_msg(m != NULL, "%s: only %d of %d notifications in offline storage", ghost, k, N);
        long long node_id = 0, seq = 0, sub_id = 0;
        const char *id = xmpp_stanza_get_id(m);
        ck_assert_msg(id && sscanf(id, "ps-%lld-%lld-%lld", &node_id, &seq, &sub_id) == 3,
                      "unexpected message id %s", id ? id : "(none)");
        ck_assert_int_eq(node_id, f.node_id);
        ck_assert_int_eq(sub_id, sub);
        ck_assert_msg(seq >= 1 && seq <= N && !seen[seq], "seq %lld twice or out of range", seq);
        seen[seq] = 1;
        xmpp_stanza_release(m);
    }
    h_client_disconnect(g);
    free(ghost);
    free(user);
    fixture_down(&f);
}
END_TEST

/* 7. Forged bounces are not believed: a bounce must name a subscription of
 * the node it names and come from that subscriber.  alice cannot obtain
 * another node's items by "bouncing" them onto her own subscription, and
 * eve cannot make pubsubd retry alice's notifications. */
START_TEST(test_forged_bounce_ignored)
{
    struct fixture f;
    fixture_up(&f);
    char *victim;
    long long victim_id = create_node(&f, &victim);
    char *child = h_strf("<publish node='%s'><item id='secret'><s xmlns='" NS_ENTRY
                         "'>secret</s></item></publish>", victim);
    xmpp_stanza_t *r = pubsub_iq(&f, f.owner, "set", H_NS_PUBSUB, child);
    h_assert_result(f.proc, r, "publish to the victim node");
    xmpp_stanza_release(r);
    free(child);
    publish(&f, 1);
    xmpp_stanza_release(expect_notification(&f, h_now_ms() + PROMPT_MS, 1, 1));

    /* alice: victim's seq 1 "bounced" on her own subscription. */
    char *xml = h_strf("<message type='error' to='%s' id='ps-%lld-1-%lld'><error type='cancel'>"
                       "<service-unavailable xmlns='" H_NS_STANZAS "'/></error></message>",
                       f.jid, victim_id, f.alice_sub);
    h_send(f.alice, xml);
    free(xml);
    /* eve: alice's own notification "bounced". */
    xml = h_strf("<message type='error' to='%s' id='ps-%lld-1-%lld'><error type='cancel'>"
                 "<service-unavailable xmlns='" H_NS_STANZAS "'/></error></message>",
                 f.jid, f.node_id, f.alice_sub);
    h_send(f.eve, xml);
    free(xml);
    /* A ping through each sender makes sure pubsubd read both messages, then
     * a few janitor ticks pass. */
    xmpp_stanza_release(pubsub_iq(&f, f.alice, "get", H_NS_PUBSUB, "<subscriptions/>"));
    xmpp_stanza_release(pubsub_iq(&f, f.eve, "get", H_NS_PUBSUB, "<subscriptions/>"));
    h_pump(5 * POLL_MS);
    ck_assert_int_eq(sql_int(&f, "SELECT count(*) FROM pubsub.redelivery"), 0);
    assert_alice_silent(&f, SILENCE_MS, "after forged bounces");
    free(victim);
    fixture_down(&f);
}
END_TEST

static TCase *tcase(const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, TEST_TIMEOUT_S);
    tcase_add_test(tc, test);
    return tc;
}

static Suite *redelivery_suite(void)
{
    Suite *s = suite_create("redelivery");
    suite_add_tcase(s, tcase("dead_letters", test_dead_letters));
    suite_add_tcase(s, tcase("redrive", test_redrive));
    suite_add_tcase(s, tcase("unbounced_retry_delivered", test_unbounced_retry_delivered));
    suite_add_tcase(s, tcase("command_protocol", test_command_protocol));
    suite_add_tcase(s, tcase("unreachable_do_not_slow", test_unreachable_do_not_slow));
    suite_add_tcase(s, tcase("redrive_delivers", test_redrive_delivers));
    suite_add_tcase(s, tcase("forged_bounce_ignored", test_forged_bounce_ignored));
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(redelivery_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
