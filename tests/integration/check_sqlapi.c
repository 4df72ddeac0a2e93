/*
 * check_sqlapi.c - integration tests of the SQL API for applications:
 * pubsub.publish() called inside the application's own transaction
 * (docs/examples/README.md), through the example program
 * docs/examples/txn_publish, which `make check` builds.
 *
 * What is proved: a committed publish reaches every subscriber with the
 * exact payload and the next seq, and the business row committed with it;
 * a rolled-back one leaves no order, no item, no outbox row, no seq and no
 * notification; a malformed payload, a publisher without rights and an
 * unknown node are refused by the function (status word, exit status 3 of
 * the example), with nothing stored or sent; well-formed XML that an XMPP
 * stream cannot carry (comments, processing instructions, DTDs, control
 * characters) is refused too, so it can never block the dispatcher;
 * granting the publisher affiliation, over XMPP or in SQL, lets an
 * application JID publish; XMPP item retrieval returns what was committed.
 *
 * Each test starts its own pubsubd as c6.<domain> on a fresh database,
 * creates a node as owner@<domain> over XMPP, subscribes alice and bob
 * (bare JIDs) over XMPP, then runs the example and watches the clients.
 * Tests run one at a time in forked processes (CK_FORK).
 */
#include "harness.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_TIMEOUT_S 60
#define COMPONENT_UP_MS 10000
#define IQ_TIMEOUT_MS 5000
#define EXAMPLE_TIMEOUT_MS 15000
#define NOTIFY_TIMEOUT_MS 5000 /* a committed publish reaches subscribers */
#define SILENCE_MS 2000        /* how long "nothing arrives" is watched */

#define NS_SHOP "urn:example:shop"

/* One test's pubsubd, database, clients and node. */
struct fixture {
    char *jid;            /* component JID */
    char *db;             /* conninfo of the fresh database */
    struct h_proc *proc;
    struct h_client *owner, *alice, *bob;
    char *owner_jid, *eve_jid, *publisher_jid; /* bare JIDs */
    char *node;
    long long node_id;
    long long alice_sub, bob_sub; /* subscription.sub_id, in message ids */
};

/* ---- small utilities ---------------------------------------------------- */

/* The whole file at path; the caller frees it.  Fails the test when it
 * cannot be read. */
static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", path);
    size_t cap = 4096, len = 0;
    char *data = malloc(cap);
    ck_assert_ptr_nonnull(data);
    size_t n;
    while ((n = fread(data + len, 1, cap - len - 1, fp)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            data = realloc(data, cap);
            ck_assert_ptr_nonnull(data);
        }
    }
    ck_assert_msg(!ferror(fp), "cannot read %s", path);
    fclose(fp);
    data[len] = '\0';
    return data;
}

/* The payload the example publishes for order id (no escaping needed for
 * the ids used here); caller frees. */
static char *order_payload(const char *order_id)
{
    return h_strf("<order xmlns='" NS_SHOP "' id='%s'><amount>42</amount></order>", order_id);
}

/* ---- SQL assertions ----------------------------------------------------- */

/* s as an SQL string literal ('...' with quotes doubled); caller frees. */
static char *sql_literal(const char *s)
{
    char *out = malloc(2 * strlen(s) + 3);
    ck_assert_ptr_nonnull(out);
    char *p = out;
    *p++ = '\'';
    for (; *s; s++) {
        if (*s == '\'')
            *p++ = '\'';
        *p++ = *s;
    }
    *p++ = '\'';
    *p = '\0';
    return out;
}

static long long node_last_seq(const struct fixture *f)
{
    char *sql = h_strf("SELECT last_seq FROM pubsub.node WHERE node_id = %lld", f->node_id);
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

/* count(*) of `from_where`, e.g. "pubsub.item WHERE item_id = 'o1'". */
static long long count_rows(const struct fixture *f, const char *from_where)
{
    char *sql = h_strf("SELECT count(*) FROM %s", from_where);
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

/* Asserts that order id left no trace: no business row (the table may not
 * exist yet), no item and no outbox row. */
static void assert_no_trace(const struct fixture *f, const char *id)
{
    char *w = h_strf("pubsub.item WHERE node_id = %lld AND item_id = '%s'", f->node_id, id);
    ck_assert_msg(count_rows(f, w) == 0, "item %s exists", id);
    free(w);
    w = h_strf("pubsub.event WHERE node_id = %lld AND item_id = '%s'", f->node_id, id);
    ck_assert_msg(count_rows(f, w) == 0, "an outbox row for %s exists", id);
    free(w);
    if (h_sql_int(f->db, "SELECT count(*) FROM pg_tables"
                         " WHERE schemaname = 'public' AND tablename = 'shop_order'") == 1) {
        w = h_strf("public.shop_order WHERE id = '%s'", id);
        ck_assert_msg(count_rows(f, w) == 0, "order row %s exists", id);
        free(w);
    }
}

/* Asserts that order id is committed: the order row (amount 42) and the
 * item with exactly the example's payload, seq and publisher. */
static void assert_committed(const struct fixture *f, const char *id, long long seq,
                             const char *publisher)
{
    char *sql = h_strf("SELECT amount FROM public.shop_order WHERE id = '%s'", id);
    ck_assert_int_eq(h_sql_int(f->db, sql), 42);
    free(sql);
    sql = h_strf("SELECT payload, seq, publisher FROM pubsub.item"
                 " WHERE node_id = %lld AND item_id = '%s'", f->node_id, id);
    PGresult *r = h_sql(f->db, sql);
    ck_assert_msg(PQntuples(r) == 1, "item %s: %d rows", id, PQntuples(r));
    char *payload = order_payload(id);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), payload); /* byte for byte */
    ck_assert_int_eq(strtoll(PQgetvalue(r, 0, 1), NULL, 10), seq);
    ck_assert_str_eq(PQgetvalue(r, 0, 2), publisher);
    free(payload);
    PQclear(r);
    free(sql);
}

/* ---- the fixture -------------------------------------------------------- */

/* Sends a pubsub IQ of type type to the component with child as the
 * content of <pubsub xmlns=ns>; returns the reply (caller releases). */
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

static void subscribe(struct fixture *f, struct h_client *c)
{
    char *child = h_strf("<subscribe node='%s' jid='%s'/>", f->node, h_client_bare_jid(c));
    xmpp_stanza_t *r = pubsub_iq(f, c, "set", H_NS_PUBSUB, child);
    h_assert_result(f->proc, r, "subscribe");
    xmpp_stanza_t *sub = h_child(h_child(r, "pubsub", H_NS_PUBSUB), "subscription", NULL);
    char *text = h_stanza_to_string(r);
    ck_assert_msg(sub != NULL, "no <subscription/> in %s", text);
    ck_assert_pstr_eq(xmpp_stanza_get_attribute(sub, "subscription"), "subscribed");
    free(text);
    xmpp_stanza_release(r);
    free(child);
}

static long long sub_id_of(struct fixture *f, struct h_client *c)
{
    char *sql = h_strf("SELECT sub_id FROM pubsub.subscription WHERE node_id = %lld AND jid = '%s'",
                       f->node_id, h_client_bare_jid(c));
    long long v = h_sql_int(f->db, sql);
    free(sql);
    return v;
}

/* Waits until the component answers disco#items with a result: the link
 * is up (disco#info would prove only that) and the database is migrated
 * (until then requests get a wait error). */
static void wait_ready(struct fixture *f)
{
    h_wait_service_ready(f->proc, f->owner, f->jid, COMPONENT_UP_MS);
}

static void fixture_up(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    f->jid = h_strf("c6.%s", h_env("PST_DOMAIN"));
    f->db = h_db_create();
    f->owner_jid = h_strf("owner@%s", h_env("PST_DOMAIN"));
    f->eve_jid = h_strf("eve@%s", h_env("PST_DOMAIN"));
    f->publisher_jid = h_strf("publisher@%s", h_env("PST_DOMAIN"));
    f->proc = h_pubsubd_start(f->jid, f->db, NULL);
    f->owner = h_client_connect("owner");
    f->alice = h_client_connect("alice");
    f->bob = h_client_connect("bob");
    wait_ready(f);
    f->node = h_uid("orders");
    char *child = h_strf("<create node='%s'/>", f->node);
    xmpp_stanza_t *r = pubsub_iq(f, f->owner, "set", H_NS_PUBSUB, child);
    h_assert_result(f->proc, r, "create node");
    xmpp_stanza_release(r);
    free(child);
    char *sql = h_strf("SELECT node_id FROM pubsub.node WHERE name = '%s' AND NOT deleted",
                       f->node);
    f->node_id = h_sql_int(f->db, sql);
    free(sql);
    subscribe(f, f->alice);
    subscribe(f, f->bob);
    f->alice_sub = sub_id_of(f, f->alice);
    f->bob_sub = sub_id_of(f, f->bob);
    ck_assert_int_eq(node_last_seq(f), 0);
}

static void fixture_down(struct fixture *f)
{
    h_client_disconnect(f->owner);
    h_client_disconnect(f->alice);
    h_client_disconnect(f->bob);
    h_pubsubd_stop(f->proc);
    free(f->node);
    free(f->owner_jid);
    free(f->eve_jid);
    free(f->publisher_jid);
    free(f->db);
    free(f->jid);
}

/* ---- the example program ------------------------------------------------ */

/* dirname($PUBSUBD_BIN)/docs/examples/txn_publish: the build tree's top
 * holds the daemon.  Caller frees. */
static char *example_path(void)
{
    char *bin = h_strf("%s", h_env("PUBSUBD_BIN"));
    char *path = h_strf("%s/docs/examples/txn_publish", dirname(bin));
    free(bin);
    ck_assert_msg(access(path, X_OK) == 0,
                  "%s is missing or not executable (make check builds it)", path);
    return path;
}

/*
 * Runs the example with these arguments and the fixture's database, waits
 * for it and returns its exit status; *output gets everything it printed
 * (stdout and stderr; the caller frees it).
 */
static int run_example(struct fixture *f, const char *publisher, const char *mode,
                       const char *order_id, char **output)
{
    char *path = example_path();
    const char *argv[] = {path, f->db, f->node, publisher, mode, order_id, NULL};
    struct h_proc *p = h_proc_spawn("txn_publish", argv, NULL);
    int status = h_proc_wait_exit(p, EXAMPLE_TIMEOUT_MS);
    *output = read_file(h_proc_log_path(p));
    h_proc_free(p);
    free(path);
    return status;
}

/* Runs the example in mode commit or rollback and asserts it published
 * order_id as seq and then did what it was asked. */
static void example_ok(struct fixture *f, const char *publisher, const char *mode,
                       const char *order_id, long long seq)
{
    char *out = NULL;
    int status = run_example(f, publisher, mode, order_id, &out);
    char *expected =
        strcmp(mode, "commit") == 0
            ? h_strf("published: status=ok seq=%lld item_id=%s\n"
                     "committed: order %s and its notification\n", seq, order_id, order_id)
            : h_strf("published: status=ok seq=%lld item_id=%s\n"
                     "rolled back: order %s (no notification)\n", seq, order_id, order_id);
    ck_assert_msg(status == 0, "txn_publish %s %s: exit status %d, output:\n%s", mode, order_id,
                  status, out);
    ck_assert_str_eq(out, expected);
    free(expected);
    free(out);
}

/* Runs the example and asserts that pubsub.publish refused with status
 * (exit 3) and that it rolled the order back. */
static void example_refused(struct fixture *f, const char *publisher, const char *mode,
                            const char *order_id, const char *status_word)
{
    char *out = NULL;
    int status = run_example(f, publisher, mode, order_id, &out);
    char *expected = h_strf("refused: status=%s\nrolled back: order %s (no notification)\n",
                            status_word, order_id);
    ck_assert_msg(status == 3, "txn_publish %s %s as %s: exit status %d (expected 3), output:\n%s",
                  mode, order_id, publisher, status, out);
    ck_assert_str_eq(out, expected);
    free(expected);
    free(out);
}

/* ---- notifications ------------------------------------------------------ */

/*
 * Waits for c's next message and asserts it is exactly the notification of
 * item item_id with payload (XML text) published as seq: from the
 * component, to c's bare JID, id ps-<node>-<seq>-<sub_id>, type headline,
 * and <event><items node><item id>payload</item></items></event>.
 */
static void assert_notification(struct fixture *f, struct h_client *c, long long sub_id,
                                long long seq, const char *item_id, const char *payload)
{
    xmpp_stanza_t *m = h_next_message(c, NOTIFY_TIMEOUT_MS);
    if (m == NULL) {
        h_fail_dump(f->proc);
        ck_abort_msg("%s: no notification of seq %lld within %d ms", h_client_bare_jid(c), seq,
                     NOTIFY_TIMEOUT_MS);
    }
    char *text = h_stanza_to_string(m);
    char *id = h_strf("ps-%lld-%lld-%lld", f->node_id, seq, sub_id);
    ck_assert_msg(strcmp(xmpp_stanza_get_name(m), "message") == 0, "not a message: %s", text);
    ck_assert_pstr_eq(xmpp_stanza_get_from(m), f->jid);
    ck_assert_pstr_eq(xmpp_stanza_get_to(m), h_client_bare_jid(c));
    ck_assert_pstr_eq(xmpp_stanza_get_id(m), id);
    ck_assert_pstr_eq(xmpp_stanza_get_type(m), "headline");
    ck_assert_msg(h_count_children(m, NULL, NULL) == 1, "expected only <event/>: %s", text);
    xmpp_stanza_t *event = h_child(m, "event", H_NS_PUBSUB_EVENT);
    ck_assert_msg(event != NULL, "no <event/>: %s", text);
    char *got = h_canon(event, NULL);
    char *want_xml = h_strf("<event xmlns='" H_NS_PUBSUB_EVENT "'><items node='%s'>"
                            "<item id='%s'>%s</item></items></event>",
                            f->node, item_id, payload);
    char *want = h_canon_xml(want_xml);
    ck_assert_msg(strcmp(got, want) == 0, "notification of seq %lld to %s:\n got %s\nwant %s\n(%s)",
                  seq, h_client_bare_jid(c), got, want, text);
    free(want);
    free(want_xml);
    free(got);
    free(id);
    free(text);
    xmpp_stanza_release(m);
}

/* Both subscribers receive the notification of order_id as seq. */
static void assert_order_delivered(struct fixture *f, const char *order_id, long long seq)
{
    char *payload = order_payload(order_id);
    assert_notification(f, f->alice, f->alice_sub, seq, order_id, payload);
    assert_notification(f, f->bob, f->bob_sub, seq, order_id, payload);
    free(payload);
}

/* Runs the XMPP loop for ms and asserts that no client received anything. */
static void assert_silence(struct fixture *f, int ms)
{
    xmpp_stanza_t *m = h_next_message(f->alice, ms);
    if (m == NULL)
        m = h_next_message(f->bob, 0);
    if (m == NULL)
        m = h_next_message(f->owner, 0);
    if (m != NULL) {
        char *text = h_stanza_to_string(m);
        h_fail_dump(f->proc);
        ck_abort_msg("expected no message, got %s", text);
    }
}

/* Asserts that alice's XMPP item retrieval returns exactly these items
 * (ids, in publication order, each with payload_of(id)). */
static void assert_items(struct fixture *f, const char *const *ids, int n)
{
    char *child = h_strf("<items node='%s'/>", f->node);
    xmpp_stanza_t *r = pubsub_iq(f, f->alice, "get", H_NS_PUBSUB, child);
    h_assert_result(f->proc, r, "items");
    xmpp_stanza_t *pubsub = h_child(r, "pubsub", H_NS_PUBSUB);
    ck_assert_msg(pubsub != NULL, "no <pubsub/> in the items result");
    char *got = h_canon(pubsub, NULL);
    char *want_xml = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><items node='%s'>", f->node);
    for (int i = 0; i < n; i++) {
        char *payload = order_payload(ids[i]);
        char *next = h_strf("%s<item id='%s'>%s</item>", want_xml, ids[i], payload);
        free(payload);
        free(want_xml);
        want_xml = next;
    }
    char *next = h_strf("%s</items></pubsub>", want_xml);
    free(want_xml);
    want_xml = next;
    char *want = h_canon_xml(want_xml);
    ck_assert_msg(strcmp(got, want) == 0, "items:\n got %s\nwant %s", got, want);
    free(want);
    free(want_xml);
    free(got);
    xmpp_stanza_release(r);
    free(child);
}

/* ---- 1. commit: the order and its notification -------------------------- */

START_TEST(test_commit_delivers)
{
    struct fixture f;
    fixture_up(&f);

    example_ok(&f, f.owner_jid, "commit", "o1", 1);
    assert_order_delivered(&f, "o1", 1);
    assert_committed(&f, "o1", 1, f.owner_jid);
    ck_assert_int_eq(node_last_seq(&f), 1);

    /* Exactly one notification each. */
    assert_silence(&f, 500);
    static const char *const ids[] = {"o1"};
    assert_items(&f, ids, 1);

    fixture_down(&f);
}
END_TEST

/* ---- 2. rollback: nothing was ever visible or sent ---------------------- */

START_TEST(test_rollback_leaves_nothing)
{
    struct fixture f;
    fixture_up(&f);

    example_ok(&f, f.owner_jid, "commit", "o1", 1);
    assert_order_delivered(&f, "o1", 1);
    long long seq_before = node_last_seq(&f);
    ck_assert_int_eq(seq_before, 1);

    /* Inside its transaction the rolled-back publish took seq 2... */
    example_ok(&f, f.owner_jid, "rollback", "o2", 2);
    assert_no_trace(&f, "o2");
    ck_assert_int_eq(node_last_seq(&f), seq_before);
    char *w = h_strf("pubsub.node WHERE node_id = %lld AND item_count = 1", f.node_id);
    ck_assert_int_eq(count_rows(&f, w), 1);
    free(w);
    assert_silence(&f, SILENCE_MS);

    /* ...which it did not consume: the next commit is seq 2, and it is the
     * next (and only) thing the subscribers receive. */
    example_ok(&f, f.owner_jid, "commit", "o3", seq_before + 1);
    assert_order_delivered(&f, "o3", seq_before + 1);
    assert_committed(&f, "o3", seq_before + 1, f.owner_jid);
    assert_no_trace(&f, "o2");
    ck_assert_int_eq(node_last_seq(&f), seq_before + 1);
    assert_silence(&f, 500);

    static const char *const ids[] = {"o1", "o3"};
    assert_items(&f, ids, 2);

    fixture_down(&f);
}
END_TEST

/* ---- 3. malformed XML: refused by the function -------------------------- */

START_TEST(test_malformed_refused)
{
    struct fixture f;
    fixture_up(&f);

    example_refused(&f, f.owner_jid, "malformed", "o4", "invalid-payload");
    assert_no_trace(&f, "o4");
    ck_assert_int_eq(node_last_seq(&f), 0);
    ck_assert_int_eq(count_rows(&f, "pubsub.item"), 0);
    ck_assert_int_eq(count_rows(&f, "pubsub.event"), 0);
    assert_silence(&f, SILENCE_MS);

    /* The node works as before, and seq 1 is still free. */
    example_ok(&f, f.owner_jid, "commit", "o5", 1);
    assert_order_delivered(&f, "o5", 1);
    static const char *const ids[] = {"o5"};
    assert_items(&f, ids, 1);

    fixture_down(&f);
}
END_TEST

/* ---- 4. rights: affiliation publisher or better ------------------------- */

START_TEST(test_rights)
{
    struct fixture f;
    fixture_up(&f);

    /* No affiliation, then member: not enough to publish. */
    example_refused(&f, f.eve_jid, "commit", "o6", "forbidden");
    assert_no_trace(&f, "o6");
    char *sql = h_strf("INSERT INTO pubsub.affiliation (node_id, jid, affiliation)"
                       " VALUES (%lld, '%s', 'member')", f.node_id, f.eve_jid);
    PQclear(h_sql(f.db, sql));
    free(sql);
    example_refused(&f, f.eve_jid, "commit", "o6", "forbidden");
    assert_no_trace(&f, "o6");
    ck_assert_int_eq(node_last_seq(&f), 0);
    assert_silence(&f, SILENCE_MS);

    /* The two grants docs/examples/README.md describes: by the owner over
     * XMPP (XEP-0060 8.9.2), and in SQL for a JID without an account. */
    char *child = h_strf("<affiliations node='%s'><affiliation jid='%s' "
                         "affiliation='publisher'/></affiliations>", f.node, f.publisher_jid);
    xmpp_stanza_t *r = pubsub_iq(&f, f.owner, "set", H_NS_PUBSUB_OWNER, child);
    h_assert_result(f.proc, r, "modify affiliations");
    xmpp_stanza_release(r);
    free(child);
    example_ok(&f, f.publisher_jid, "commit", "o7", 1);
    assert_order_delivered(&f, "o7", 1);
    assert_committed(&f, "o7", 1, f.publisher_jid);

    char *shop_jid = h_strf("shop@%s", h_env("PST_DOMAIN"));
    sql = h_strf("INSERT INTO pubsub.affiliation (node_id, jid, affiliation)"
                 " SELECT node_id, '%s', 'publisher' FROM pubsub.node"
                 " WHERE name = '%s' AND NOT deleted"
                 " ON CONFLICT (node_id, jid) DO UPDATE SET affiliation = excluded.affiliation",
                 shop_jid, f.node);
    PQclear(h_sql(f.db, sql));
    free(sql);
    example_ok(&f, shop_jid, "commit", "o9", 2);
    assert_order_delivered(&f, "o9", 2);
    assert_committed(&f, "o9", 2, shop_jid);
    free(shop_jid);
    assert_silence(&f, 500);

    fixture_down(&f);
}
END_TEST

/* ---- 5. direct SQL: unknown node, size limit, generated item id --------- */

START_TEST(test_direct_sql)
{
    struct fixture f;
    fixture_up(&f);

    /* A node that does not exist. */
    char *sql = h_strf("SELECT status, seq, item_id FROM pubsub.publish('no-such-node', 'x1',"
                       " '<x xmlns=''urn:example''/>', '%s')", f.owner_jid);
    PGresult *r = h_sql(f.db, sql);
    free(sql);
    ck_assert_int_eq(PQntuples(r), 1);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "item-not-found");
    ck_assert_msg(PQgetisnull(r, 0, 1), "seq for an unknown node: %s", PQgetvalue(r, 0, 1));
    ck_assert_str_eq(PQgetvalue(r, 0, 2), "x1");
    PQclear(r);
    ck_assert_int_eq(count_rows(&f, "pubsub.item"), 0);
    ck_assert_int_eq(count_rows(&f, "pubsub.event"), 0);
    /* The same through the example: the order is rolled back. */
    char *out = NULL;
    char *path = example_path();
    const char *argv[] = {path, f.db, "no-such-node", f.owner_jid, "commit", "x2", NULL};
    struct h_proc *p = h_proc_spawn("txn_publish", argv, NULL);
    ck_assert_int_eq(h_proc_wait_exit(p, EXAMPLE_TIMEOUT_MS), 3);
    out = read_file(h_proc_log_path(p));
    ck_assert_str_eq(out, "refused: status=item-not-found\n"
                          "rolled back: order x2 (no notification)\n");
    free(out);
    h_proc_free(p);
    free(path);
    assert_no_trace(&f, "x2");

    /* Over the node's max_payload_size (pubsubd's max_payload_bytes at
     * creation, 262144 by default). */
    sql = h_strf("SELECT status FROM pubsub.publish('%s', 'big',"
                 " '<big xmlns=''urn:example''>' || repeat('x', 262144) || '</big>', '%s')",
                 f.node, f.owner_jid);
    r = h_sql(f.db, sql);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "payload-too-big");
    PQclear(r);
    free(sql);
    ck_assert_int_eq(node_last_seq(&f), 0);

    /* No payload, or not exactly one element. */
    static const char *const bad[] = {"NULL", "''", "'text'", "'<a/><b/>'",
                                      "'<order xmlns=''urn:example:shop''><unclosed></order>'"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sql = h_strf("SELECT status FROM pubsub.publish('%s', 'bad', %s, '%s')", f.node,
                     bad[i], f.owner_jid);
        r = h_sql(f.db, sql);
        ck_assert_msg(strcmp(PQgetvalue(r, 0, 0), "invalid-payload") == 0,
                      "payload %s: status %s", bad[i], PQgetvalue(r, 0, 0));
        PQclear(r);
        free(sql);
    }
    ck_assert_int_eq(node_last_seq(&f), 0);
    ck_assert_int_eq(count_rows(&f, "pubsub.item"), 0);
    assert_silence(&f, SILENCE_MS);

    /* Item id NULL: the function generates one, committed and delivered
     * like any other. */
    sql = h_strf("SELECT status, seq, item_id FROM pubsub.publish('%s', NULL,"
                 " '<order xmlns=''" NS_SHOP "'' id=''gen''><amount>42</amount></order>', '%s')",
                 f.node, f.owner_jid);
    r = h_sql(f.db, sql);
    free(sql);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "ok");
    ck_assert_str_eq(PQgetvalue(r, 0, 1), "1");
    char *item_id = h_strf("%s", PQgetvalue(r, 0, 2));
    PQclear(r);
    ck_assert_msg(strlen(item_id) == 32 && strspn(item_id, "0123456789abcdef") == 32,
                  "generated item id %s: expected 32 hex digits", item_id);
    char *payload = order_payload("gen");
    assert_notification(&f, f.alice, f.alice_sub, 1, item_id, payload);
    assert_notification(&f, f.bob, f.bob_sub, 1, item_id, payload);
    free(payload);
    free(item_id);
    assert_silence(&f, 500);

    fixture_down(&f);
}
END_TEST

/* ---- 6. what the component stream cannot carry is refused -------------- */

/*
 * The dispatcher copies payloads and item ids into the component stream as
 * they are.  Anything there that XMPP forbids (RFC 6120 11.1: comments,
 * processing instructions, XML declarations, DTDs; control characters)
 * makes the XMPP server close the stream, and the dispatcher resends the
 * same batch after every reconnect: the whole component would stop.  So
 * pubsub.publish() must refuse such input itself, even when it is
 * well-formed XML, and it must answer with a status, never raise (which
 * would abort the application's transaction).
 */
START_TEST(test_restricted_xml_refused)
{
    static const struct {
        const char *item_id; /* SQL expression */
        const char *payload; /* SQL expression */
        const char *status;
    } cases[] = {
        {"'r1'", "'<?xml version=''1.0''?><order xmlns=''" NS_SHOP "''/>'", "invalid-payload"},
        {"'r2'", "'<order xmlns=''" NS_SHOP "''><!-- note --></order>'", "invalid-payload"},
        {"'r3'", "'<!-- note --><order xmlns=''" NS_SHOP "''/>'", "invalid-payload"},
        {"'r4'", "'<order xmlns=''" NS_SHOP "''><?pi data?></order>'", "invalid-payload"},
        {"'r5'", "'<!DOCTYPE order [<!ENTITY a ''x''>]><order xmlns=''" NS_SHOP "''>&a;</order>'",
         "invalid-payload"},
        {"'r6'", "'<order xmlns=''" NS_SHOP "''>&a;</order>'", "invalid-payload"},
        {"'r7'", "'<order xmlns=''" NS_SHOP "''>' || chr(1) || '</order>'", "invalid-payload"},
        {"'r8'", "'<p:order/>'", "invalid-payload"}, /* undeclared prefix */
        {"''", "'<order xmlns=''" NS_SHOP "''/>'", "invalid-item-id"},
        {"'r' || chr(1)", "'<order xmlns=''" NS_SHOP "''/>'", "invalid-item-id"},
        {"'r' || chr(65534)", "'<order xmlns=''" NS_SHOP "''/>'", "invalid-item-id"},
        {"'r' || chr(65535)", "'<order xmlns=''" NS_SHOP "''/>'", "invalid-item-id"},
        {"'r' || chr(127)", "'<order xmlns=''" NS_SHOP "''/>'", "invalid-item-id"},
    };
    /* Publishers that are not bare JIDs an XML stream can carry. */
    static const char *const bad_publishers[] = {
        "NULL", "''", "'owner@localhost/res'", "'a@b@c'", "'owner' || chr(1) || '@localhost'",
        "'owner@local' || chr(65535)", "'own er@localhost'", "repeat('a', 3072)",
    };
    struct fixture f;
    fixture_up(&f);

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* In a transaction that goes on afterwards: a refusal is a status,
         * and the transaction is still usable. */
        char *sql = h_strf("BEGIN; CREATE TEMP TABLE t (status text); "
                           "INSERT INTO t SELECT status FROM pubsub.publish('%s', %s, %s, '%s'); "
                           "COMMIT; SELECT status FROM t",
                           f.node, cases[i].item_id, cases[i].payload, f.owner_jid);
        PGresult *r = h_sql(f.db, sql);
        ck_assert_msg(strcmp(PQgetvalue(r, 0, 0), cases[i].status) == 0,
                      "pubsub.publish(item %s, payload %s): status %s, expected %s (the "
                      "dispatcher would copy it into the component stream, which the XMPP "
                      "server closes)", cases[i].item_id, cases[i].payload, PQgetvalue(r, 0, 0),
                      cases[i].status);
        PQclear(r);
        free(sql);
    }
    for (size_t i = 0; i < sizeof bad_publishers / sizeof bad_publishers[0]; i++) {
        char *sql = h_strf("SELECT status FROM pubsub.publish('%s', 'p%zu', '<order xmlns=''"
                           NS_SHOP "''/>', %s)", f.node, i, bad_publishers[i]);
        PGresult *r = h_sql(f.db, sql);
        ck_assert_msg(strcmp(PQgetvalue(r, 0, 0), "invalid-publisher") == 0,
                      "pubsub.publish(publisher %s): status %s, expected invalid-publisher",
                      bad_publishers[i], PQgetvalue(r, 0, 0));
        PQclear(r);
        free(sql);
    }
    ck_assert_int_eq(node_last_seq(&f), 0);
    ck_assert_int_eq(count_rows(&f, "pubsub.item"), 0);
    ck_assert_int_eq(count_rows(&f, "pubsub.event"), 0);

    /* Accepted markup: CDATA, character and predefined entity references,
     * a prefixed root; delivered, and the stream stays up. */
    static const char payload[] =
        "<s:order xmlns:s='" NS_SHOP "' note='&apos;&lt;'>&amp;&#233;<![CDATA[a < b]]></s:order>";
    char *lit = sql_literal(payload);
    char *sql = h_strf("SELECT status FROM pubsub.publish('%s', 'ok1', %s, '%s')", f.node, lit,
                       f.owner_jid);
    PGresult *r = h_sql(f.db, sql);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "ok");
    PQclear(r);
    free(sql);
    free(lit);
    assert_notification(&f, f.alice, f.alice_sub, 1, "ok1", payload);
    assert_notification(&f, f.bob, f.bob_sub, 1, "ok1", payload);
    example_ok(&f, f.owner_jid, "commit", "o8", 2);
    assert_order_delivered(&f, "o8", 2);
    assert_silence(&f, 500);

    fixture_down(&f);
}
END_TEST

/* ---- 7. least privilege: EXECUTE on pubsub.publish and nothing else ----- */

/* Runs sql as role on f's database; returns the SQLSTATE of its error, or
 * "" when it succeeded (caller frees). */
static char *sql_as(const struct fixture *f, const char *role, const char *sql)
{
    char *conninfo = h_strf("%s user=%s", f->db, role);
    PGconn *c = PQconnectdb(conninfo);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect as %s: %s", role, PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    char *out = strdup(PQresultStatus(r) == PGRES_TUPLES_OK ||
                               PQresultStatus(r) == PGRES_COMMAND_OK
                           ? ""
                           : state ? state : "?");
    PQclear(r);
    PQfinish(c);
    free(conninfo);
    return out;
}

START_TEST(test_least_privilege)
{
    struct fixture f;
    fixture_up(&f);
    /* Roles are cluster-wide: unique names, dropped at the end. */
    char *app = h_strf("app_%d_%lld", (int)getpid(), h_now_ms() % 1000000);
    char *other = h_strf("other_%d_%lld", (int)getpid(), h_now_ms() % 1000000);
    char *sql = h_strf("CREATE ROLE %s LOGIN; CREATE ROLE %s LOGIN;"
                       " GRANT USAGE ON SCHEMA pubsub TO %s, %s;"
                       " GRANT EXECUTE ON FUNCTION pubsub.publish(text, text, text, text) TO %s",
                       app, other, app, other, app);
    PQclear(h_sql(f.db, sql));
    free(sql);

    /* The granted role publishes in its own transaction, and it is
     * delivered. */
    static const char payload[] = "<order xmlns='" NS_SHOP "' n='lp1'/>";
    char *lit = sql_literal(payload);
    sql = h_strf("BEGIN; SELECT pubsub.publish('%s', 'lp1', %s, '%s'); COMMIT", f.node, lit,
                 f.owner_jid);
    char *state = sql_as(&f, app, sql);
    ck_assert_msg(strcmp(state, "") == 0, "publish as %s failed with SQLSTATE %s", app, state);
    free(state);
    free(sql);
    assert_notification(&f, f.alice, f.alice_sub, 1, "lp1", payload);
    /* ...but it cannot write the outbox, the items or the nodes itself. */
    static const char *const direct[] = {
        "INSERT INTO pubsub.event (node_id, seq, kind) VALUES (1, 99, 'p')",
        "UPDATE pubsub.node SET last_seq = last_seq + 1",
        "DELETE FROM pubsub.item",
        "SELECT count(*) FROM pubsub.subscription",
    };
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++) {
        state = sql_as(&f, app, direct[i]);
        ck_assert_msg(strcmp(state, "42501") == 0, "%s as %s: SQLSTATE '%s', expected 42501",
                      direct[i], app, state);
        free(state);
    }
    /* A role without the grant cannot publish at all. */
    sql = h_strf("SELECT pubsub.publish('%s', 'lp2', %s, '%s')", f.node, lit, f.owner_jid);
    state = sql_as(&f, other, sql);
    ck_assert_msg(strcmp(state, "42501") == 0, "publish without EXECUTE: SQLSTATE '%s'", state);
    free(state);
    free(sql);
    ck_assert_int_eq(node_last_seq(&f), 1);
    free(lit);

    sql = h_strf("DROP OWNED BY %s, %s; DROP ROLE %s, %s", app, other, app, other);
    PQclear(h_sql(f.db, sql));
    free(sql);
    free(app);
    free(other);
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

static Suite *sqlapi_suite(void)
{
    Suite *s = suite_create("sqlapi");
    suite_add_tcase(s, tcase("commit_delivers", test_commit_delivers));
    suite_add_tcase(s, tcase("rollback_leaves_nothing", test_rollback_leaves_nothing));
    suite_add_tcase(s, tcase("malformed_refused", test_malformed_refused));
    suite_add_tcase(s, tcase("rights", test_rights));
    suite_add_tcase(s, tcase("direct_sql", test_direct_sql));
    suite_add_tcase(s, tcase("restricted_xml_refused", test_restricted_xml_refused));
    suite_add_tcase(s, tcase("least_privilege", test_least_privilege));
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sqlapi_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
