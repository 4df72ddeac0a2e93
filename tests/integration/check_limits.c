/*
 * check_limits.c - the per-entity limits: nodes per owner (also through
 * auto-create), subscriptions per JID, requests in flight per sender.
 * Each answers with the XEP's error at the limit and lets through what is
 * under it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define COMPONENT "c1.localhost"
#define IQ_TIMEOUT_MS 10000

struct fixture {
    char *db;
    struct h_proc *proc;
    struct h_client *owner;
};

static void fixture_up(struct fixture *f)
{
    static const char *const env[] = {"PUBSUBD_MAX_NODES_PER_OWNER=2",
                                      "PUBSUBD_MAX_SUBSCRIPTIONS_PER_JID=2",
                                      "PUBSUBD_MAX_INFLIGHT_PER_SENDER=3", NULL};
    f->db = h_db_create();
    f->proc = h_pubsubd_start(COMPONENT, f->db, env);
    f->owner = h_client_connect("owner");
    if (!h_wait_component(f->owner, COMPONENT, 10000)) {
        h_fail_dump(f->proc);
        ck_abort_msg("pubsubd did not come up");
    }
    /* The component answers before its database is ready: wait for a
     * request that needs the database. */
    long long end = h_now_ms() + 15000;
    for (;;) {
        xmpp_stanza_t *r = h_iq(f->owner, "<iq type='get' to='" COMPONENT "' id='ready'><query "
                                          "xmlns='" H_NS_DISCO_ITEMS "'/></iq>", IQ_TIMEOUT_MS);
        bool ok = r && strcmp(xmpp_stanza_get_type(r), "result") == 0;
        if (r)
            xmpp_stanza_release(r);
        if (ok)
            break;
        if (h_now_ms() > end) {
            h_fail_dump(f->proc);
            ck_abort_msg("the database did not become ready");
        }
        h_pump(100);
    }
}

static void fixture_down(struct fixture *f)
{
    h_client_disconnect(f->owner);
    h_pubsubd_stop(f->proc);
    free(f->db);
}

static xmpp_stanza_t *create(struct fixture *f, const char *node)
{
    char *id = h_uid("c");
    char *xml = h_strf("<iq type='set' to='" COMPONENT "' id='%s'><pubsub xmlns='" H_NS_PUBSUB
                       "'><create node='%s'/></pubsub></iq>", id, node);
    xmpp_stanza_t *r = h_iq(f->owner, xml, IQ_TIMEOUT_MS);
    free(xml);
    free(id);
    return r;
}

START_TEST(nodes_per_owner)
{
    struct fixture f;
    fixture_up(&f);
    xmpp_stanza_t *r = create(&f, "n1");
    h_assert_result(f.proc, r, "first node");
    xmpp_stanza_release(r);
    r = create(&f, "n2");
    h_assert_result(f.proc, r, "second node");
    xmpp_stanza_release(r);
    r = create(&f, "n3");
    h_assert_error(f.proc, r, "third node", "cancel", "not-allowed", "max-nodes-exceeded");
    xmpp_stanza_release(r);
    /* Auto-create is held to the same limit, with the same error. */
    char *xml = h_strf("<iq type='set' to='" COMPONENT "' id='auto1'><pubsub xmlns='" H_NS_PUBSUB
                       "'><publish node='n4'><item><x xmlns='urn:t'/></item></publish>"
                       "</pubsub></iq>");
    r = h_iq(f.owner, xml, IQ_TIMEOUT_MS);
    free(xml);
    h_assert_error(f.proc, r, "auto-create over the limit", "cancel", "not-allowed",
                   "max-nodes-exceeded");
    xmpp_stanza_release(r);
    ck_assert_int_eq(h_sql_int(f.db, "SELECT count(*) FROM pubsub.node"), 2);
    ck_assert_int_eq(h_sql_int(f.db, "SELECT count(*) FROM pubsub.item"), 0);
    fixture_down(&f);
}
END_TEST

START_TEST(subscriptions_per_jid)
{
    struct fixture f;
    fixture_up(&f);
    for (int i = 1; i <= 2; i++) {
        char node[8];
        snprintf(node, sizeof node, "n%d", i);
        xmpp_stanza_t *r = create(&f, node);
        h_assert_result(f.proc, r, "create");
        xmpp_stanza_release(r);
    }
    struct h_client *bob = h_client_connect("bob");
    /* The owner makes a third node under its own limit?  No: the limit is
     * 2 nodes, so bob subscribes to both and then to one of them again,
     * which returns the existing subscription, not a new one. */
    for (int i = 1; i <= 2; i++) {
        char *xml = h_strf("<iq type='set' to='" COMPONENT "' id='s%d'><pubsub xmlns='" H_NS_PUBSUB
                           "'><subscribe node='n%d' jid='bob@localhost'/></pubsub></iq>", i, i);
        xmpp_stanza_t *r = h_iq(bob, xml, IQ_TIMEOUT_MS);
        free(xml);
        h_assert_result(f.proc, r, "subscribe under the limit");
        xmpp_stanza_release(r);
    }
    xmpp_stanza_t *r = h_iq(bob, "<iq type='set' to='" COMPONENT "' id='s3'><pubsub xmlns='"
                                 H_NS_PUBSUB "'><subscribe node='n1' jid='bob@localhost'/>"
                                 "</pubsub></iq>", IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r, "the same subscription again");
    xmpp_stanza_release(r);
    /* A third distinct subscription (a full JID counts for its bare JID). */
    r = h_iq(bob, "<iq type='set' to='" COMPONENT "' id='s4'><pubsub xmlns='" H_NS_PUBSUB
                  "'><subscribe node='n1' jid='bob@localhost/phone'/></pubsub></iq>",
             IQ_TIMEOUT_MS);
    h_assert_error(f.proc, r, "third subscription", "wait", "policy-violation",
                   "too-many-subscriptions");
    xmpp_stanza_release(r);
    ck_assert_int_eq(h_sql_int(f.db, "SELECT count(*) FROM pubsub.subscription"), 2);
    h_client_disconnect(bob);
    fixture_down(&f);
}
END_TEST

START_TEST(requests_in_flight_per_sender)
{
    struct fixture f;
    fixture_up(&f);
    xmpp_stanza_t *r = create(&f, "n1");
    h_assert_result(f.proc, r, "create");
    xmpp_stanza_release(r);
    enum { N = 60 };
    char *ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = h_uid("p");
        char *xml = h_strf("<iq type='set' to='" COMPONENT "' id='%s'><pubsub xmlns='" H_NS_PUBSUB
                           "'><publish node='n1'><item id='i%d'><x xmlns='urn:t'/></item>"
                           "</publish></pubsub></iq>", ids[i], i);
        h_send(f.owner, xml);
        free(xml);
    }
    int ok = 0, refused = 0;
    for (int i = 0; i < N; i++) {
        r = h_wait_reply(f.owner, ids[i], IQ_TIMEOUT_MS);
        ck_assert_msg(r != NULL, "no reply to publish %d", i);
        const char *type = xmpp_stanza_get_type(r);
        if (strcmp(type, "result") == 0) {
            ok++;
        } else {
            h_assert_error(f.proc, r, "over the limit", "wait", "resource-constraint",
                           H_NO_APP_CONDITION);
            refused++;
        }
        xmpp_stanza_release(r);
        free(ids[i]);
    }
    printf("in flight limit 3: %d accepted, %d refused\n", ok, refused);
    ck_assert_int_gt(refused, 0);
    ck_assert_int_ge(ok, 3);
    /* Exactly the accepted ones are stored. */
    ck_assert_int_eq(h_sql_int(f.db, "SELECT count(*) FROM pubsub.item"), ok);
    /* Under the limit again, requests go through. */
    r = h_iq(f.owner, "<iq type='set' to='" COMPONENT "' id='late'><pubsub xmlns='" H_NS_PUBSUB
                      "'><publish node='n1'><item id='late'><x xmlns='urn:t'/></item></publish>"
                      "</pubsub></iq>", IQ_TIMEOUT_MS);
    h_assert_result(f.proc, r, "after the burst");
    xmpp_stanza_release(r);
    fixture_down(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, nodes_per_owner);
    tcase_add_test(tc, subscriptions_per_jid);
    tcase_add_test(tc, requests_in_flight_per_sender);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
