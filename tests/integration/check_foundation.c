/*
 * check_foundation.c - integration tests of what every later test relies on:
 * the component answers service discovery, ping and version; unknown
 * requests get the RFC 6120 error and nothing loops; pubsubd survives a
 * Prosody restart and a PostgreSQL outage; it exits cleanly on SIGTERM and
 * refuses a bad configuration; two processes can start on one fresh
 * database at the same moment, and when one of two processes dies holding
 * a node with undelivered events, the other one takes the node over; a
 * backlog on more nodes than one process may hold is drained.
 *
 * Each test starts its own pubsubd on its own component JID (cN.<domain>)
 * with its own fresh database, and stops it at the end, asserting a clean
 * exit.  Tests run one at a time in forked processes (CK_FORK); the test
 * that stops PostgreSQL and the one that restarts Prosody have teardowns,
 * run by the Check parent process, that bring the server back even when the
 * test failed or was killed by its timeout.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TIMEOUT_S 60
#define COMPONENT_UP_MS 10000
#define IQ_TIMEOUT_MS 5000

/* One test's pubsubd, database and client. */
struct fixture {
    char *jid;            /* component JID */
    char *db;             /* conninfo of the fresh database */
    struct h_proc *proc;
    struct h_client *alice;
};

/* "c<n>.<domain>"; caller frees. */
static char *component_jid(int n)
{
    return h_strf("c%d.%s", n, h_env("PST_DOMAIN"));
}

/* Fails the test, with the daemon's log, unless jid answers disco#info. */
static void wait_up(struct h_proc *proc, struct h_client *c, const char *jid)
{
    if (!h_wait_component(c, jid, COMPONENT_UP_MS)) {
        h_fail_dump(proc);
        ck_abort_msg("%s did not answer disco#info within %d ms of start",
                     jid, COMPONENT_UP_MS);
    }
}

static void fixture_up(struct fixture *f, int n)
{
    f->jid = component_jid(n);
    f->db = h_db_create();
    f->proc = h_pubsubd_start(f->jid, f->db, NULL);
    f->alice = h_client_connect("alice");
    wait_up(f->proc, f->alice, f->jid);
}

static void fixture_down(struct fixture *f)
{
    h_client_disconnect(f->alice);
    h_pubsubd_stop(f->proc);
    free(f->db);
    free(f->jid);
}

/* Sends <iq type=type to=to><payload/></iq> with a fresh id and returns the
 * reply (caller releases) or NULL after timeout_ms. */
static xmpp_stanza_t *iq_to(struct h_client *c, const char *type,
                            const char *to, const char *payload,
                            int timeout_ms)
{
    char *id = h_uid("iq");
    char *xml = h_strf("<iq type='%s' to='%s' id='%s'>%s</iq>", type, to, id,
                       payload);
    xmpp_stanza_t *reply = h_iq(c, xml, timeout_ms);
    free(xml);
    free(id);
    return reply;
}

static xmpp_stanza_t *disco_info(struct h_client *c, const char *to,
                                 int timeout_ms)
{
    return iq_to(c, "get", to, "<query xmlns='" H_NS_DISCO_INFO "'/>",
                 timeout_ms);
}

static xmpp_stanza_t *disco_items(struct h_client *c, const char *to,
                                  int timeout_ms)
{
    return iq_to(c, "get", to, "<query xmlns='" H_NS_DISCO_ITEMS "'/>",
                 timeout_ms);
}

static xmpp_stanza_t *ping(struct h_client *c, const char *to, int timeout_ms)
{
    return iq_to(c, "get", to, "<ping xmlns='" H_NS_PING "'/>", timeout_ms);
}

/* Asserts that to answers a ping with an empty result. */
static void assert_ping(struct h_proc *proc, struct h_client *c,
                        const char *to)
{
    xmpp_stanza_t *r = ping(c, to, IQ_TIMEOUT_MS);
    h_assert_result(proc, r, "ping");
    ck_assert_int_eq(h_count_children(r, NULL, NULL), 0);
    xmpp_stanza_release(r);
}

/* Asserts a disco#items result with no <item/> from jid. */
static void assert_no_items(struct h_proc *proc, xmpp_stanza_t *r,
                            const char *jid)
{
    h_assert_result(proc, r, "disco#items");
    ck_assert_pstr_eq(xmpp_stanza_get_from(r), jid);
    xmpp_stanza_t *q = h_child(r, "query", H_NS_DISCO_ITEMS);
    char *text = h_stanza_to_string(r);
    ck_assert_msg(q != NULL, "disco#items result without <query/>: %s", text);
    ck_assert_msg(h_count_children(q, "item", NULL) == 0,
                  "fresh database, expected no items: %s", text);
    free(text);
}

/* ---- 1. disco#info ------------------------------------------------------ */

START_TEST(test_disco_info)
{
    static const char *const features[] = {
        H_NS_DISCO_INFO, H_NS_DISCO_ITEMS, H_NS_PING, H_NS_VERSION,
        H_NS_PUBSUB,
    };
    struct fixture f;
    fixture_up(&f, 1);

    xmpp_stanza_t *r = disco_info(f.alice, f.jid, IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r, "disco#info");
    char *text = h_stanza_to_string(r);
    ck_assert_pstr_eq(xmpp_stanza_get_from(r), f.jid);
    ck_assert_msg(h_child(r, "query", H_NS_DISCO_INFO) != NULL,
                  "no <query/> in %s", text);
    ck_assert_msg(h_disco_has_identity(r, "pubsub", "service"),
                  "no <identity category='pubsub' type='service'/> in %s",
                  text);
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        ck_assert_msg(h_disco_has_feature(r, features[i]),
                      "feature %s missing from %s", features[i], text);
    free(text);
    xmpp_stanza_release(r);

    fixture_down(&f);
}
END_TEST

/* ---- 2. disco#items on a fresh database --------------------------------- */

START_TEST(test_disco_items_empty)
{
    struct fixture f;
    fixture_up(&f, 2);

    xmpp_stanza_t *r = disco_items(f.alice, f.jid, IQ_TIMEOUT_MS);
    assert_no_items(f.proc, r, f.jid);
    xmpp_stanza_release(r);

    fixture_down(&f);
}
END_TEST

/* ---- 3. ping and version ------------------------------------------------ */

START_TEST(test_ping_and_version)
{
    struct fixture f;
    fixture_up(&f, 3);

    xmpp_stanza_t *r = ping(f.alice, f.jid, IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r, "ping");
    char *text = h_stanza_to_string(r);
    ck_assert_pstr_eq(xmpp_stanza_get_from(r), f.jid);
    ck_assert_msg(h_count_children(r, NULL, NULL) == 0,
                  "ping result must be empty: %s", text);
    free(text);
    xmpp_stanza_release(r);

    r = iq_to(f.alice, "get", f.jid, "<query xmlns='" H_NS_VERSION "'/>",
              IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r, "version");
    text = h_stanza_to_string(r);
    xmpp_stanza_t *q = h_child(r, "query", H_NS_VERSION);
    ck_assert_msg(q != NULL, "no <query xmlns='%s'/> in %s", H_NS_VERSION,
                  text);
    char *name = h_child_text(q, "name", NULL);
    char *version = h_child_text(q, "version", NULL);
    ck_assert_msg(name != NULL && strcmp(name, "pubsubd") == 0,
                  "expected <name>pubsubd</name> in %s", text);
    ck_assert_msg(version != NULL && *version != '\0',
                  "expected a non-empty <version/> in %s", text);
    free(name);
    free(version);
    free(text);
    xmpp_stanza_release(r);

    fixture_down(&f);
}
END_TEST

/* ---- 4. unknown requests, replies and messages -------------------------- */

START_TEST(test_unknown_stanzas)
{
    struct fixture f;
    fixture_up(&f, 4);

    /* RFC 6120 8.4: an IQ get or set with an unknown payload is answered
     * with service-unavailable, type cancel. */
    xmpp_stanza_t *r = iq_to(f.alice, "get", f.jid,
                             "<query xmlns='urn:example:nothing'/>",
                             IQ_TIMEOUT_MS);
    h_assert_error(f.proc, r, "unknown IQ get", "cancel", "service-unavailable",
                   NULL);
    ck_assert_pstr_eq(xmpp_stanza_get_from(r), f.jid);
    xmpp_stanza_release(r);
    r = iq_to(f.alice, "set", f.jid,
              "<frobnicate xmlns='urn:example:nothing'><x/></frobnicate>",
              IQ_TIMEOUT_MS);
    h_assert_error(f.proc, r, "unknown IQ set", "cancel", "service-unavailable",
                   NULL);
    xmpp_stanza_release(r);

    /* IQ result and error are never answered: a reply with their id would
     * show up here. */
    r = iq_to(f.alice, "result", f.jid, "", 500);
    if (r != NULL) {
        char *text = h_stanza_to_string(r);
        h_fail_dump(f.proc);
        ck_abort_msg("an IQ result to the component was answered: %s", text);
    }
    r = iq_to(f.alice, "error", f.jid,
              "<error type='cancel'><item-not-found xmlns='" H_NS_STANZAS
              "'/></error>",
              500);
    if (r != NULL) {
        char *text = h_stanza_to_string(r);
        h_fail_dump(f.proc);
        ck_abort_msg("an IQ error to the component was answered: %s", text);
    }

    /* Messages to the component: an error bounce and a plain message get
     * no message back (an error answered with an error would loop). */
    char *id1 = h_uid("msg");
    char *id2 = h_uid("msg");
    char *m1 = h_strf("<message type='error' to='%s' id='%s'><error "
                      "type='cancel'><service-unavailable xmlns='" H_NS_STANZAS
                      "'/></error></message>", f.jid, id1);
    char *m2 = h_strf("<message to='%s' id='%s'><body>hello</body></message>",
                      f.jid, id2);
    h_send(f.alice, m1);
    h_send(f.alice, m2);
    xmpp_stanza_t *m = h_next_message(f.alice, 500);
    if (m != NULL) {
        char *text = h_stanza_to_string(m);
        h_fail_dump(f.proc);
        ck_abort_msg("alice received a message after messaging the "
                     "component: %s", text);
    }
    free(m1);
    free(m2);
    free(id1);
    free(id2);

    /* And the daemon is still there. */
    assert_ping(f.proc, f.alice, f.jid);
    ck_assert_msg(h_proc_running(f.proc), "pubsubd exited");

    fixture_down(&f);
}
END_TEST

/* ---- 5. Prosody restart under a running pubsubd ------------------------- */

START_TEST(test_prosody_restart)
{
    struct fixture f;
    fixture_up(&f, 5);

    h_envctl("prosody-restart");
    long long t0 = h_now_ms();
    h_client_disconnect(f.alice);
    f.alice = NULL;
    while (f.alice == NULL && h_now_ms() - t0 < COMPONENT_UP_MS) {
        f.alice = h_client_try_connect("alice", NULL, 2000);
        if (f.alice == NULL)
            h_sleep_ms(200);
    }
    ck_assert_msg(f.alice != NULL,
                  "could not log in again within %d ms of the restart",
                  COMPONENT_UP_MS);
    long long left = COMPONENT_UP_MS - (h_now_ms() - t0);
    bool up = h_wait_component(f.alice, f.jid, left > 0 ? (int)left : 1);
    long long elapsed = h_now_ms() - t0;
    fprintf(stderr, "prosody restart: %s answered disco#info %lld ms after "
            "the restart\n", f.jid, elapsed);
    if (!up) {
        h_fail_dump(f.proc);
        ck_abort_msg("%s did not answer disco#info within %d ms of a Prosody "
                     "restart", f.jid, COMPONENT_UP_MS);
    }
    ck_assert_msg(h_proc_running(f.proc), "pubsubd exited");

    fixture_down(&f);
}
END_TEST

/* Check parent process: whatever happened in the test, Prosody runs. */
static void ensure_prosody_running(void)
{
    if (getenv("PST_ENV") == NULL)
        return; /* the tests failed already, naming it */
    if (!h_prosody_running() && h_envctl_try("prosody-start") != 0)
        fprintf(stderr, "teardown: could not start Prosody again\n");
}

/* ---- 6. PostgreSQL stopped ---------------------------------------------- */

START_TEST(test_postgres_down)
{
    struct fixture f;
    fixture_up(&f, 6);

    xmpp_stanza_t *r = disco_items(f.alice, f.jid, IQ_TIMEOUT_MS);
    assert_no_items(f.proc, r, f.jid);
    xmpp_stanza_release(r);

    h_envctl("pg-stop");
    long long t0 = h_now_ms();
    r = disco_items(f.alice, f.jid, 1000);
    long long elapsed = h_now_ms() - t0;
    fprintf(stderr, "postgres down: disco#items answered in %lld ms\n",
            elapsed);
    h_assert_error(f.proc, r, "disco#items with PostgreSQL stopped", "wait",
                   "resource-constraint", NULL);
    xmpp_stanza_release(r);
    ck_assert_msg(h_proc_running(f.proc), "pubsubd exited without its "
                  "database");
    assert_ping(f.proc, f.alice, f.jid);

    h_envctl("pg-start");
    t0 = h_now_ms();
    bool ok = false;
    while (!ok && h_now_ms() - t0 < 15000) {
        r = disco_items(f.alice, f.jid, 2000);
        const char *type = r != NULL ? xmpp_stanza_get_type(r) : NULL;
        ok = type != NULL && strcmp(type, "result") == 0;
        if (ok)
            assert_no_items(f.proc, r, f.jid);
        if (r != NULL)
            xmpp_stanza_release(r);
        if (!ok)
            h_pump(200);
    }
    fprintf(stderr, "postgres back: disco#items succeeded after %lld ms\n",
            h_now_ms() - t0);
    if (!ok) {
        h_fail_dump(f.proc);
        ck_abort_msg("disco#items did not succeed within 15 s of PostgreSQL "
                     "coming back");
    }

    fixture_down(&f);
}
END_TEST

/* Check parent process: whatever happened in the test, PostgreSQL runs. */
static void ensure_postgres_running(void)
{
    if (getenv("PST_ENV") == NULL)
        return; /* the tests failed already, naming it */
    if (!h_pg_running() && h_envctl_try("pg-start") != 0)
        fprintf(stderr, "teardown: could not start PostgreSQL again\n");
}

/* ---- 7. SIGTERM and a bad configuration --------------------------------- */

START_TEST(test_sigterm_exits_zero)
{
    struct fixture f;
    fixture_up(&f, 7);

    h_proc_signal(f.proc, SIGTERM);
    long long t0 = h_now_ms();
    int status = h_proc_wait_exit(f.proc, 5000);
    fprintf(stderr, "sigterm: exit status %d after %lld ms\n", status,
            h_now_ms() - t0);
    if (status != 0) {
        h_fail_dump(f.proc);
        ck_abort_msg("after SIGTERM: status %d (-1: still running after 5 s; "
                     ">= 256: killed by signal status - 256), expected 0",
                     status);
    }
    h_proc_free(f.proc);
    h_client_disconnect(f.alice);
    free(f.db);
    free(f.jid);
}
END_TEST

START_TEST(test_bad_config_exits)
{
    static const char *const bad[] = { "PUBSUBD_XMPP_PORT=notanumber", NULL };
    char *jid = component_jid(7);
    char *db = h_db_create();
    struct h_proc *p = h_pubsubd_start(jid, db, bad);
    int status = h_proc_wait_exit(p, 2000);
    if (status < 1 || status > 255) {
        h_fail_dump(p);
        ck_abort_msg("PUBSUBD_XMPP_PORT=notanumber: status %d (-1: still "
                     "running after 2 s; >= 256: killed by signal status - "
                     "256), expected an exit status from 1 to 255", status);
    }
    if (!h_proc_log_contains(p, "PUBSUBD_XMPP_PORT")) {
        h_fail_dump(p);
        ck_abort_msg("the log does not name PUBSUBD_XMPP_PORT");
    }
    h_proc_free(p);
    free(db);
    free(jid);
}
END_TEST

/* A database whose schema is newer than the binary: refuse to start. */
START_TEST(test_newer_schema_refused)
{
    char *jid = component_jid(6);
    char *db = h_db_create();
    struct h_client *alice = h_client_connect("alice");
    struct h_proc *p = h_pubsubd_start(jid, db, NULL);
    wait_up(p, alice, jid);
    h_pubsubd_stop(p);
    long long applied = h_sql_int(db, "SELECT max(version) FROM pubsub.schema_migrations");
    ck_assert_int_ge(applied, 1);
    PQclear(h_sql(db, "INSERT INTO pubsub.schema_migrations (version, name) "
                      "VALUES (999, '999_future.sql')"));
    p = h_pubsubd_start(jid, db, NULL);
    int status = h_proc_wait_exit(p, 5000);
    if (status != 1 || !h_proc_log_contains(p, "newer than this pubsubd knows")) {
        h_fail_dump(p);
        ck_abort_msg("schema version 999: status %d, expected 1 and a log line", status);
    }
    h_proc_free(p);
    /* Nothing was changed by the refused start. */
    ck_assert_int_eq(h_sql_int(db, "SELECT count(*) FROM pubsub.schema_migrations"), applied + 1);
    h_client_disconnect(alice);
    free(db);
    free(jid);
}
END_TEST

/* ---- 8. two processes start on one fresh database ----------------------- */

START_TEST(test_concurrent_start)
{
    char *jid7 = component_jid(7);
    char *jid8 = component_jid(8);
    char *db = h_db_create();
    struct h_proc *p7 = h_pubsubd_start(jid7, db, NULL);
    struct h_proc *p8 = h_pubsubd_start(jid8, db, NULL);
    struct h_client *alice = h_client_connect("alice");

    wait_up(p7, alice, jid7);
    wait_up(p8, alice, jid8);
    xmpp_stanza_t *r = disco_items(alice, jid7, IQ_TIMEOUT_MS);
    assert_no_items(p7, r, jid7);
    xmpp_stanza_release(r);
    r = disco_items(alice, jid8, IQ_TIMEOUT_MS);
    assert_no_items(p8, r, jid8);
    xmpp_stanza_release(r);

    h_client_disconnect(alice);
    h_pubsubd_stop(p7);
    h_pubsubd_stop(p8);
    free(db);
    free(jid8);
    free(jid7);
}
END_TEST

/* ---- 9. a node held by a process that dies goes to the other one ------- */

/* The node's advisory lock is held by some session (a dispatcher holds it). */
/* Creates node through component jid as c (p is the process, for its log
 * on failure). */
static void create_as(struct h_proc *p, struct h_client *c, const char *jid, const char *node)
{
    char *payload = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><create node='%s'/></pubsub>", node);
    xmpp_stanza_t *r = iq_to(c, "set", jid, payload, IQ_TIMEOUT_MS);
    h_assert_result(p, r, "create");
    xmpp_stanza_release(r);
    free(payload);
}

/* Subscribes c's own full JID to node through component jid. */
static void subscribe_self(struct h_proc *p, struct h_client *c, const char *jid,
                           const char *node)
{
    char *payload = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><subscribe node='%s' jid='%s'/>"
                           "</pubsub>", node, h_client_jid(c));
    xmpp_stanza_t *r = iq_to(c, "set", jid, payload, IQ_TIMEOUT_MS);
    h_assert_result(p, r, "subscribe");
    xmpp_stanza_release(r);
    free(payload);
}

static long long node_locked(const char *db, const char *node)
{
    char *sql = h_strf("SELECT count(*) FROM pg_locks l JOIN pubsub.node n"
                       " ON l.locktype = 'advisory' AND l.objsubid = 1"
                       " AND l.objid = n.node_id AND l.granted"
                       " WHERE n.name = '%s' AND NOT n.deleted", node);
    long long v = h_sql_int(db, sql);
    free(sql);
    return v;
}

static void publish_sql(const char *db, const char *node, const char *item)
{
    char *sql = h_strf("SELECT count(*) FROM pubsub.publish('%s', '%s',"
                       " '<x xmlns=''urn:test''/>', 'alice@%s') WHERE status = 'ok'",
                       node, item, h_env("PST_DOMAIN"));
    ck_assert_int_eq(h_sql_int(db, sql), 1);
    free(sql);
}

/*
 * Process 7 delivers a node's first event and still holds the node when it
 * is frozen (SIGSTOP).  An application publishes a second event: process 8
 * hears the NOTIFY but cannot take the node.  Then process 7 is killed: its
 * session ends and its locks go with it, but nobody is woken.  Process 8
 * must notice that a peer dispatcher left and claim the node (within a poll
 * or two, not at the slow unconditional scan a minute later).
 */
START_TEST(test_peer_death_takeover)
{
    char *jid7 = component_jid(7);
    char *jid8 = component_jid(8);
    char *db = h_db_create();
    char *node = h_uid("takeover");
    struct h_proc *p7 = h_pubsubd_start(jid7, db, NULL);
    struct h_client *alice = h_client_connect("alice");
    wait_up(p7, alice, jid7);

    create_as(p7, alice, jid7, node);
    subscribe_self(p7, alice, jid7, node);

    publish_sql(db, node, "i1");
    ck_assert_msg(h_wait_messages(alice, 1, 5000) >= 1, "no notification of i1");
    h_proc_signal(p7, SIGSTOP);
    ck_assert_msg(node_locked(db, node) == 1,
                  "process 7 released the node before it was frozen");

    struct h_proc *p8 = h_pubsubd_start(jid8, db, NULL);
    wait_up(p8, alice, jid8);
    publish_sql(db, node, "i2");
    ck_assert_int_eq(h_wait_messages(alice, 2, 1000), 1); /* held by the frozen one */

    h_proc_signal(p7, SIGKILL);
    ck_assert_int_eq(h_proc_wait_exit(p7, 5000), 256 + SIGKILL);
    long long t0 = h_now_ms();
    if (h_wait_messages(alice, 2, 15000) < 2) {
        h_fail_dump(p8);
        ck_abort_msg("i2 not delivered within 15 s of the holder's death");
    }
    fprintf(stderr, "peer_death_takeover: i2 delivered %lld ms after the kill\n",
            h_now_ms() - t0);

    h_client_disconnect(alice);
    h_pubsubd_stop(p8);
    h_proc_free(p7);
    free(node);
    free(db);
    free(jid8);
    free(jid7);
}
END_TEST

/* ---- 10. a backlog on more nodes than one process holds ----------------- */

/*
 * Six nodes get an event each while pubsubd is down; it restarts allowed
 * to hold two nodes at a time.  Its start-up scan claims two; the others
 * must follow as those are released (scan after scan), not only at the
 * unconditional scan every 10th poll.
 */
/* Six nodes, each subscribed by alice, get an event while pubsubd is down;
 * it restarts with env; every notification must arrive within 15 s. */
static void backlog_after_restart(const char *label, const char *const *env)
{
    enum { NODES = 6 };
    char *jid = component_jid(8);
    char *db = h_db_create();
    struct h_proc *p = h_pubsubd_start(jid, db, NULL);
    struct h_client *alice = h_client_connect("alice");
    wait_up(p, alice, jid);
    char *nodes[NODES];
    for (int i = 0; i < NODES; i++) {
        nodes[i] = h_uid("many");
        create_as(p, alice, jid, nodes[i]);
        subscribe_self(p, alice, jid, nodes[i]);
    }
    h_pubsubd_stop(p);
    for (int i = 0; i < NODES; i++)
        publish_sql(db, nodes[i], "b1");

    long long t0 = h_now_ms();
    p = h_pubsubd_start(jid, db, env);
    wait_up(p, alice, jid);
    int got = h_wait_messages(alice, NODES, 15000);
    if (got < NODES) {
        h_fail_dump(p);
        ck_abort_msg("%s: %d of %d notifications within 15 s of the restart", label, got, NODES);
    }
    fprintf(stderr, "%s: %d notifications %lld ms after the restart\n", label, NODES,
            h_now_ms() - t0);

    h_client_disconnect(alice);
    h_pubsubd_stop(p);
    for (int i = 0; i < NODES; i++)
        free(nodes[i]);
    free(db);
    free(jid);
}

START_TEST(test_backlog_over_max_nodes)
{
    static const char *const env[] = {"PUBSUBD_DISPATCH_MAX_NODES=2", NULL};
    backlog_after_restart("backlog_over_max_nodes", env);
}
END_TEST

/* The dispatcher's connection takes four queries at a time (the smallest
 * db_max_queued): claiming six nodes at once, some position reads are
 * refused (queue full); they must be tried again, not leave the nodes
 * held and stuck (4 of 6 delivered before). */
START_TEST(test_backlog_tiny_db_queue)
{
    static const char *const env[] = {"PUBSUBD_DB_MAX_QUEUED=4", "PUBSUBD_DISPATCH_POLL_MS=200",
                                      NULL};
    backlog_after_restart("backlog_tiny_db_queue", env);
}
END_TEST

/* ---- 11. a process whose stream is refused holds no node ---------------- */

/*
 * A second process started with the first one's component JID is refused
 * by the server ("component already connected") and keeps retrying.  Its
 * dispatcher hears the same wake-ups as the first one's; it must not claim
 * nodes it cannot deliver: before, it won some of the claims (2 of 10 in
 * one run) and those nodes' notifications waited for as long as it ran.
 */
START_TEST(test_refused_link_claims_nothing)
{
    enum { NODES = 20 };
    char *jid7 = component_jid(7);
    char *db = h_db_create();
    struct h_proc *p7 = h_pubsubd_start(jid7, db, NULL);
    struct h_client *alice = h_client_connect("alice");
    wait_up(p7, alice, jid7);
    char *nodes[NODES];
    for (int i = 0; i < NODES; i++) {
        nodes[i] = h_uid("refused");
        create_as(p7, alice, jid7, nodes[i]);
        subscribe_self(p7, alice, jid7, nodes[i]);
    }

    struct h_proc *p8 = h_pubsubd_start(jid7, db, NULL);
    long long t0 = h_now_ms();
    while (!h_proc_log_contains(p8, "stream error from server") && h_now_ms() - t0 < 10000)
        h_pump(100);
    if (!h_proc_log_contains(p8, "stream error from server")) {
        h_fail_dump(p8);
        ck_abort_msg("the second process with the same JID was not refused");
    }
    for (int i = 0; i < NODES; i++)
        publish_sql(db, nodes[i], "i1");
    if (h_wait_messages(alice, NODES, 10000) < NODES) {
        h_fail_dump(p8);
        ck_abort_msg("%d of %d notifications within 10 s: the refused process held nodes",
                     h_message_count(alice), NODES);
    }

    h_client_disconnect(alice);
    h_pubsubd_stop(p8);
    h_pubsubd_stop(p7);
    for (int i = 0; i < NODES; i++)
        free(nodes[i]);
    free(db);
    free(jid7);
}
END_TEST

/* ---- 12. seqs without outbox rows are no work ---------------------------- */

/*
 * A node with pubsub#deliver_notifications off takes a seq per publish but
 * writes no outbox row, so its position stays behind its last seq.  The
 * dispatcher must not take that for work: before, every scan (here every
 * 10th poll of 100 ms) claimed the node, read nothing and released it.
 */
START_TEST(test_silent_node_not_claimed)
{
    char *jid = component_jid(7);
    char *db = h_db_create();
    static const char *const env[] = {"PUBSUBD_LOG_LEVEL=debug", "PUBSUBD_DISPATCH_POLL_MS=100",
                                      NULL};
    struct h_proc *p = h_pubsubd_start(jid, db, env);
    struct h_client *alice = h_client_connect("alice");
    wait_up(p, alice, jid);
    char *node = h_uid("silent");
    create_as(p, alice, jid, node);
    char *sql = h_strf("UPDATE pubsub.node_config c SET deliver_notifications = false FROM "
                       "pubsub.node n WHERE n.node_id = c.node_id AND n.name = '%s' "
                       "RETURNING c.node_id", node);
    long long id = h_sql_int(db, sql);
    free(sql);
    /* A node of the usual kind next to it: its event is claimed (and so
     * logged), which shows the log would show the other's claims too. */
    char *loud = h_uid("loud");
    create_as(p, alice, jid, loud);
    sql = h_strf("SELECT node_id FROM pubsub.node WHERE name = '%s'", loud);
    long long loud_id = h_sql_int(db, sql);
    free(sql);
    publish_sql(db, loud, "l1");
    publish_sql(db, node, "s1");
    publish_sql(db, node, "s2");
    sql = h_strf("SELECT n.last_seq - d.delivered_seq FROM pubsub.node n JOIN pubsub.dispatch d "
                 "USING (node_id) WHERE n.node_id = %lld", id);
    ck_assert_int_eq(h_sql_int(db, sql), 2); /* behind by two seqs, no outbox row */
    free(sql);
    h_pump(2500); /* two full scans and more */
    char *claimed = h_strf("claimed node %lld\n", id);
    if (h_proc_log_contains(p, claimed)) {
        h_fail_dump(p);
        ck_abort_msg("the dispatcher claimed node %lld, which has nothing to deliver", id);
    }
    free(claimed);
    claimed = h_strf("claimed node %lld\n", loud_id);
    ck_assert_msg(h_proc_log_contains(p, claimed), "the node with an event was not claimed");
    free(claimed);
    free(loud);

    h_client_disconnect(alice);
    h_pubsubd_stop(p);
    free(node);
    free(db);
    free(jid);
}
END_TEST

static TCase *tcase(const char *name, const TTest *test)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, TEST_TIMEOUT_S);
    tcase_add_test(tc, test);
    return tc;
}

static Suite *foundation_suite(void)
{
    Suite *s = suite_create("foundation");
    suite_add_tcase(s, tcase("disco_info", test_disco_info));
    suite_add_tcase(s, tcase("disco_items_empty", test_disco_items_empty));
    suite_add_tcase(s, tcase("ping_and_version", test_ping_and_version));
    suite_add_tcase(s, tcase("unknown_stanzas", test_unknown_stanzas));

    TCase *tc = tcase("prosody_restart", test_prosody_restart);
    tcase_add_unchecked_fixture(tc, NULL, ensure_prosody_running);
    suite_add_tcase(s, tc);
    tc = tcase("postgres_down", test_postgres_down);
    tcase_add_unchecked_fixture(tc, NULL, ensure_postgres_running);
    suite_add_tcase(s, tc);

    suite_add_tcase(s, tcase("sigterm_exits_zero", test_sigterm_exits_zero));
    suite_add_tcase(s, tcase("bad_config_exits", test_bad_config_exits));
    suite_add_tcase(s, tcase("concurrent_start", test_concurrent_start));
    suite_add_tcase(s, tcase("peer_death_takeover", test_peer_death_takeover));
    suite_add_tcase(s, tcase("backlog_over_max_nodes", test_backlog_over_max_nodes));
    suite_add_tcase(s, tcase("backlog_tiny_db_queue", test_backlog_tiny_db_queue));
    suite_add_tcase(s, tcase("silent_node_not_claimed", test_silent_node_not_claimed));
    suite_add_tcase(s, tcase("refused_link_claims_nothing", test_refused_link_claims_nothing));
    suite_add_tcase(s, tcase("newer_schema_refused", test_newer_schema_refused));
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(foundation_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
