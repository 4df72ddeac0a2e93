/*
 * check_paging.c - XEP-0059 pages over the subscription and affiliation
 * lists (XEP-0060 §5.6, §5.7, §8.8.1, §8.9.1): every entry exactly once,
 * in a stable order, with first/last/count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define COMPONENT "c5.localhost"
#define IQ_TIMEOUT_MS 10000
#define NS_RSM "http://jabber.org/protocol/rsm"

static const char *const users[] = {"alice", "bob", "carol", "dave", "eve"};

struct fixture {
    char *db;
    struct h_proc *proc;
    struct h_client *owner;
};

static xmpp_stanza_t *iq(struct h_client *c, const char *type, const char *ns, const char *body)
{
    char *id = h_uid("q");
    char *xml = h_strf("<iq type='%s' to='" COMPONENT "' id='%s'><pubsub xmlns='%s'>%s</pubsub>"
                       "</iq>", type, id, ns, body);
    xmpp_stanza_t *r = h_iq(c, xml, IQ_TIMEOUT_MS);
    free(xml);
    free(id);
    return r;
}

static void fixture_up(struct fixture *f)
{
    f->db = h_db_create();
    f->proc = h_pubsubd_start(COMPONENT, f->db, NULL);
    f->owner = h_client_connect("owner");
    ck_assert_msg(h_wait_component(f->owner, COMPONENT, 10000), "pubsubd did not come up");
    long long end = h_now_ms() + 15000;
    for (;;) { /* the database is ready when disco#items answers */
        xmpp_stanza_t *r = h_iq(f->owner, "<iq type='get' to='" COMPONENT "' id='ready'><query "
                                          "xmlns='" H_NS_DISCO_ITEMS "'/></iq>", IQ_TIMEOUT_MS);
        bool ok = r && strcmp(xmpp_stanza_get_type(r), "result") == 0;
        if (r)
            xmpp_stanza_release(r);
        if (ok)
            break;
        ck_assert_msg(h_now_ms() < end, "the database did not become ready");
        h_pump(100);
    }
}

static void fixture_down(struct fixture *f)
{
    h_client_disconnect(f->owner);
    h_pubsubd_stop(f->proc);
    free(f->db);
}

/*
 * Pages through the list element `list` (subscriptions or affiliations)
 * of `ns` with `attrs` on it, `max` per page, collecting the value of
 * attribute `key` of every entry into seen (newline-joined).  Asserts that
 * count stays `want`, that each non-empty page's <first index/> is the
 * number of entries on the pages before it (XEP-0059 §2), and that the
 * pages end; then that a page after the last entry is empty and still
 * carries the count.  Returns the number of pages.
 */
static int page_through(struct fixture *f, struct h_client *c, const char *ns, const char *list,
                        const char *attrs, const char *key, int max, int want, char *seen,
                        size_t seen_len)
{
    char *after = NULL;
    int pages = 0, total = 0;
    seen[0] = '\0';
    for (;;) {
        char *set = after ? h_strf("<set xmlns='" NS_RSM "'><max>%d</max><after>%s</after></set>",
                                   max, after)
                          : h_strf("<set xmlns='" NS_RSM "'><max>%d</max></set>", max);
        char *body = h_strf("<%s%s/>%s", list, attrs, set);
        xmpp_stanza_t *r = iq(c, "get", ns, body);
        free(body);
        free(set);
        h_assert_result(f->proc, r, "list page");
        xmpp_stanza_t *ps = h_child(r, "pubsub", ns);
        xmpp_stanza_t *l = ps ? h_child(ps, list, ns) : NULL;
        xmpp_stanza_t *rs = ps ? h_child(ps, "set", NS_RSM) : NULL;
        ck_assert_msg(l && rs, "page without the list or the <set/>");
        char *count = h_child_text(rs, "count", NS_RSM);
        ck_assert_msg(count && atoi(count) == want, "count %s, want %d", count ? count : "-", want);
        free(count);
        int n = 0;
        for (xmpp_stanza_t *e = xmpp_stanza_get_children(l); e; e = xmpp_stanza_get_next(e)) {
            if (!xmpp_stanza_is_tag(e))
                continue;
            const char *v = xmpp_stanza_get_attribute(e, key);
            ck_assert_msg(v != NULL, "entry without %s", key);
            strncat(seen, v, seen_len - strlen(seen) - 2);
            strcat(seen, "\n");
            n++;
        }
        ck_assert_int_le(n, max);
        xmpp_stanza_t *first = h_child(rs, "first", NS_RSM);
        ck_assert_msg((first != NULL) == (n > 0), "<first/> exactly when the page is not empty");
        if (first) {
            const char *index = xmpp_stanza_get_attribute(first, "index");
            ck_assert_msg(index && atoi(index) == total, "<first index='%s'/>, want %d",
                          index ? index : "-", total);
        }
        pages++;
        total += n;
        char *last = n ? h_child_text(rs, "last", NS_RSM) : NULL;
        xmpp_stanza_release(r);
        if (n < max) {
            if (last) { /* keep the last entry's key */
                free(after);
                after = last;
            }
            break;
        }
        free(after);
        after = last;
        ck_assert_msg(pages <= want + 1, "the pages do not end");
    }
    if (after) {
        /* Past the end: no entries, no <first/>, the list's size. */
        char *body = h_strf("<%s%s/><set xmlns='" NS_RSM "'><max>%d</max><after>%s</after></set>",
                            list, attrs, max, after);
        xmpp_stanza_t *r = iq(c, "get", ns, body);
        free(body);
        h_assert_result(f->proc, r, "list page past the end");
        xmpp_stanza_t *ps = h_child(r, "pubsub", ns);
        xmpp_stanza_t *l = ps ? h_child(ps, list, ns) : NULL;
        xmpp_stanza_t *rs = ps ? h_child(ps, "set", NS_RSM) : NULL;
        char *text = h_stanza_to_string(r);
        ck_assert_msg(l && rs && h_count_children(l, NULL, NULL) == 0 &&
                          h_child(rs, "first", NS_RSM) == NULL,
                      "page past the end is not empty: %s", text);
        char *count = h_child_text(rs, "count", NS_RSM);
        ck_assert_msg(count && atoi(count) == want, "page past the end: count %s, want %d: %s",
                      count ? count : "-", want, text);
        free(count);
        free(text);
        xmpp_stanza_release(r);
    }
    free(after);
    ck_assert_int_eq(total, want);
    return pages;
}

static bool listed_once(const char *seen, const char *v)
{
    char *needle = h_strf("%s\n", v);
    const char *p = strstr(seen, needle);
    bool once = p && (p == seen || p[-1] == '\n') && strstr(p + 1, needle) == NULL;
    free(needle);
    return once;
}

START_TEST(owner_lists_paged)
{
    struct fixture f;
    fixture_up(&f);
    xmpp_stanza_t *r = iq(f.owner, "set", H_NS_PUBSUB, "<create node='pg'/>");
    h_assert_result(f.proc, r, "create");
    xmpp_stanza_release(r);
    char body[2048] = "<subscriptions node='pg'>";
    char affs[2048] = "<affiliations node='pg'>";
    for (size_t i = 0; i < (sizeof users / sizeof users[0]); i++) {
        char e[160];
        snprintf(e, sizeof e, "<subscription jid='%s@localhost' subscription='subscribed'/>",
                 users[i]);
        strcat(body, e);
        snprintf(e, sizeof e, "<affiliation jid='%s@localhost' affiliation='member'/>", users[i]);
        strcat(affs, e);
    }
    strcat(body, "</subscriptions>");
    strcat(affs, "</affiliations>");
    r = iq(f.owner, "set", H_NS_PUBSUB_OWNER, body);
    h_assert_result(f.proc, r, "subscribe five");
    xmpp_stanza_release(r);
    r = iq(f.owner, "set", H_NS_PUBSUB_OWNER, affs);
    h_assert_result(f.proc, r, "five members");
    xmpp_stanza_release(r);

    char seen[4096];
    int pages = page_through(&f, f.owner, H_NS_PUBSUB_OWNER, "subscriptions", " node='pg'", "jid",
                             2, 5, seen, sizeof seen);
    ck_assert_int_eq(pages, 3);
    for (size_t i = 0; i < (sizeof users / sizeof users[0]); i++) {
        char *jid = h_strf("%s@localhost", users[i]);
        ck_assert_msg(listed_once(seen, jid), "%s not listed exactly once in %s", jid, seen);
        free(jid);
    }
    /* Affiliations: five members and the owner, by JID. */
    pages = page_through(&f, f.owner, H_NS_PUBSUB_OWNER, "affiliations", " node='pg'", "jid", 4, 6,
                         seen, sizeof seen);
    ck_assert_int_eq(pages, 2);
    ck_assert_msg(listed_once(seen, "owner@localhost"), "owner not listed once: %s", seen);
    /* A position that is not a subscription id. */
    r = iq(f.owner, "get", H_NS_PUBSUB_OWNER,
           "<subscriptions node='pg'/><set xmlns='" NS_RSM "'><after>bob</after></set>");
    h_assert_error(f.proc, r, "bad position", "cancel", "item-not-found", H_NO_APP_CONDITION);
    xmpp_stanza_release(r);
    fixture_down(&f);
}
END_TEST

START_TEST(own_lists_paged)
{
    struct fixture f;
    fixture_up(&f);
    struct h_client *bob = h_client_connect("bob");
    for (int i = 0; i < 5; i++) {
        char *body = h_strf("<create node='own%d'/>", i);
        xmpp_stanza_t *r = iq(f.owner, "set", H_NS_PUBSUB, body);
        free(body);
        h_assert_result(f.proc, r, "create");
        xmpp_stanza_release(r);
        body = h_strf("<subscribe node='own%d' jid='bob@localhost'/>", i);
        r = iq(bob, "set", H_NS_PUBSUB, body);
        free(body);
        h_assert_result(f.proc, r, "subscribe");
        xmpp_stanza_release(r);
    }
    char seen[4096];
    int pages = page_through(&f, bob, H_NS_PUBSUB, "subscriptions", "", "node", 2, 5, seen,
                             sizeof seen);
    ck_assert_int_eq(pages, 3);
    for (int i = 0; i < 5; i++) {
        char node[8];
        snprintf(node, sizeof node, "own%d", i);
        ck_assert_msg(listed_once(seen, node), "%s not listed exactly once: %s", node, seen);
    }
    pages = page_through(&f, f.owner, H_NS_PUBSUB, "affiliations", "", "node", 3, 5, seen,
                         sizeof seen);
    ck_assert_int_eq(pages, 2);
    h_client_disconnect(bob);
    fixture_down(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("paging");
    TCase *tc = tcase_create("lists");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, owner_lists_paged);
    tcase_add_test(tc, own_lists_paged);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
