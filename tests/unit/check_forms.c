/*
 * check_forms.c - XEP-0004 forms, the node configuration table and XEP-0059
 * result set requests: pure logic, no server.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "forms.h"
#include "node_config.h"
#include "rsm.h"
#include "xml_stream.h"
#include "unit.h"

/* Parses one stanza-like element with the stream parser (the real one) and
 * calls fn on its tree. */
struct parsed {
    void (*fn)(const struct xnode *el, void *arg);
    void *arg;
    int count;
};

static int on_stanza(void *arg, struct stanza *st)
{
    struct parsed *p = arg;
    p->fn(st->el, p->arg);
    p->count++;
    return 0;
}

static void with_element(const char *xml, void (*fn)(const struct xnode *, void *), void *arg)
{
    struct parsed p = {fn, arg, 0};
    struct xml_stream *xs = xml_stream_new(1 << 20, NULL, on_stanza, &p);
    const char *head = "<stream:stream xmlns='jabber:component:accept' "
                       "xmlns:stream='http://etherx.jabber.org/streams' id='t'>";
    ck_assert_int_eq(xml_stream_feed(xs, head, strlen(head)), XS_OK);
    ck_assert_int_eq(xml_stream_feed(xs, xml, strlen(xml)), XS_OK);
    ck_assert_int_eq(p.count, 1);
    xml_stream_free(xs);
}

static struct config test_config(void)
{
    struct config cfg;
    char *err = NULL;
    unsetenv("PUBSUBD_MAX_ITEMS_LIMIT");
    ck_assert_int_eq(config_load(&cfg, NULL, &err), 0);
    return cfg;
}

/* ---- forms ------------------------------------------------------------- */

static void check_submit(const struct xnode *el, void *arg)
{
    (void)arg;
    struct form f;
    ck_assert_int_eq(form_parse(xnode_child(el, "x", NS_DATA), &f), 0);
    ck_assert_str_eq(f.type, "submit");
    ck_assert_str_eq(f.form_type, NS_NODE_CONFIG);
    const struct form_field *t = form_field(&f, "pubsub#title");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->nvalues, 1);
    ck_assert_str_eq(t->values[0], "a & b");
    const struct form_field *m = form_field(&f, "multi");
    ck_assert_int_eq(m->nvalues, 2);
    ck_assert_str_eq(m->values[1], "two");
    ck_assert_ptr_null(form_field(&f, "absent"));
    form_free(&f);
}

START_TEST(test_form_parse)
{
    with_element("<message><x xmlns='jabber:x:data' type='submit'>"
                 "<field var='FORM_TYPE' type='hidden'><value>" NS_NODE_CONFIG "</value></field>"
                 "<field var='pubsub#title'><value>a &amp; b</value></field>"
                 "<field var='multi'><value>one</value><value>two</value></field>"
                 "</x></message>",
                 check_submit, NULL);
}
END_TEST

static void check_no_var(const struct xnode *el, void *arg)
{
    (void)arg;
    struct form f;
    ck_assert_int_eq(form_parse(xnode_child(el, "x", NULL), &f), -1);
    form_free(&f);
}

START_TEST(test_form_field_without_var)
{
    with_element("<message><x xmlns='jabber:x:data' type='submit'><field><value>1</value>"
                 "</field></x></message>",
                 check_no_var, NULL);
}
END_TEST

START_TEST(test_form_boolean)
{
    bool b;
    ck_assert_int_eq(form_parse_boolean("1", &b), 0);
    ck_assert(b);
    ck_assert_int_eq(form_parse_boolean("true", &b), 0);
    ck_assert(b);
    ck_assert_int_eq(form_parse_boolean("0", &b), 0);
    ck_assert(!b);
    ck_assert_int_eq(form_parse_boolean("false", &b), 0);
    ck_assert(!b);
    ck_assert_int_eq(form_parse_boolean("yes", &b), -1);
    ck_assert_int_eq(form_parse_boolean("", &b), -1);
    ck_assert_int_eq(form_parse_boolean("TRUE", &b), -1);
}
END_TEST

START_TEST(test_form_datetime)
{
    static const char *const good[] = {
        "2026-11-24T03:26:23Z", "2026-11-24T03:26:23.123Z", "2024-02-29T00:00:00Z",
        "2026-12-31T23:59:60+01:00", "1969-07-21T02:56:15-05:30", "2000-02-29T12:00:00.5Z",
    };
    static const char *const bad[] = {
        "", "yesterday", "now", "infinity", "2026-11-24", "2026-11-24T03:26:23",
        "2026-11-24 03:26:23Z", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-24T24:00:00Z",
        "2026-11-24T03:60:00Z", "2026-11-24T03:26:61Z", "2026-11-24T03:26:23.Z",
        "2026-11-24T03:26:23+1:00", "2026-11-24T03:26:23+01:60", "2026-11-24T03:26:23Zjunk",
        "+2026-11-24T03:26:23Z", "2026-1-24T03:26:23Z", "2026-11-00T03:26:23Z",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(form_is_datetime(good[i]), "%s refused", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!form_is_datetime(bad[i]), "%s accepted", bad[i]);
}
END_TEST

/* ---- node configuration -------------------------------------------------- */

struct conf_case {
    const char *fields;
    int want;
    const char *json;    /* expected JSON when want is NODE_CONFIG_OK */
    const char *bad_var; /* expected offending field otherwise */
};

static void check_conf(const struct xnode *el, void *arg)
{
    const struct conf_case *c = arg;
    struct config cfg = test_config();
    struct form f;
    ck_assert_int_eq(form_parse(xnode_child(el, "x", NS_DATA), &f), 0);
    struct buf json = BUF_INIT;
    const char *bad = NULL;
    int rc = node_config_from_form(&cfg, &f, &json, &bad);
    ck_assert_int_eq(rc, c->want);
    if (rc == NODE_CONFIG_OK)
        ck_assert_str_eq(json.data, c->json);
    else
        ck_assert_str_eq(bad, c->bad_var);
    buf_free(&json);
    form_free(&f);
    config_free(&cfg);
}

static void run_conf(const struct conf_case *c)
{
    char *xml = NULL;
    size_t n = strlen(c->fields) + 200;
    xml = malloc(n);
    snprintf(xml, n, "<message><x xmlns='jabber:x:data' type='submit'>%s</x></message>", c->fields);
    with_element(xml, check_conf, (void *)c);
    free(xml);
}

#define F(var, val) "<field var='" var "'><value>" val "</value></field>"

START_TEST(test_node_config_values)
{
    static const struct conf_case cases[] = {
        {F("pubsub#title", "T \"q\""), NODE_CONFIG_OK, "{\"title\":\"T \\\"q\\\"\"}", NULL},
        {F("pubsub#max_items", "10") F("pubsub#persist_items", "0"), NODE_CONFIG_OK,
         "{\"max_items\":10,\"persist_items\":false}", NULL},
        {F("pubsub#max_items", "max"), NODE_CONFIG_OK, "{\"max_items\":10000000}", NULL},
        {F("pubsub#item_expire", "max"), NODE_CONFIG_OK, "{\"item_expire\":0}", NULL},
        {F("pubsub#access_model", "whitelist"), NODE_CONFIG_OK, "{\"access_model\":\"whitelist\"}",
         NULL},
        {F("pubsub#notify_sub", "1"), NODE_CONFIG_OK, "{\"notify_sub\":true}", NULL},
        {F("pubsub#max_items", "-1"), NODE_CONFIG_INVALID, NULL, "pubsub#max_items"},
        {F("pubsub#max_items", "10000001"), NODE_CONFIG_INVALID, NULL, "pubsub#max_items"},
        {F("pubsub#max_payload_size", "0"), NODE_CONFIG_INVALID, NULL, "pubsub#max_payload_size"},
        {F("pubsub#deliver_payloads", "maybe"), NODE_CONFIG_INVALID, NULL,
         "pubsub#deliver_payloads"},
        {F("pubsub#access_model", "presence"), NODE_CONFIG_UNSUPPORTED, NULL,
         "pubsub#access_model"},
        {F("pubsub#access_model", "nonsense"), NODE_CONFIG_INVALID, NULL, "pubsub#access_model"},
        {F("pubsub#send_last_published_item", "on_sub_and_presence"), NODE_CONFIG_UNSUPPORTED,
         NULL, "pubsub#send_last_published_item"},
        {F("pubsub#colour", "red"), NODE_CONFIG_UNKNOWN, NULL, "pubsub#colour"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_conf(&cases[i]);
}
END_TEST

START_TEST(test_node_config_defaults)
{
    struct config cfg = test_config();
    struct buf json = BUF_INIT;
    node_config_defaults_json(&cfg, &json);
    ck_assert_ptr_nonnull(strstr(json.data, "\"max_items\":1000,"));
    ck_assert_ptr_nonnull(strstr(json.data, "\"access_model\":\"open\""));
    ck_assert_ptr_nonnull(strstr(json.data, "\"persist_items\":true"));
    ck_assert_ptr_nonnull(strstr(json.data, "\"node_type\":\"leaf\""));
    buf_reset(&json);
    node_config_form(&cfg, NULL, 0, &json);
    ck_assert_ptr_nonnull(strstr(json.data, "<value>" NS_NODE_CONFIG "</value>"));
    ck_assert_ptr_nonnull(strstr(json.data, "var='pubsub#max_items'"));
    buf_free(&json);
    config_free(&cfg);
}
END_TEST

/* ---- result set requests ------------------------------------------------- */

struct rsm_case {
    const char *set;
    int rc;
    long max;
    const char *after;
    bool has_before;
    const char *before;
};

static void check_rsm(const struct xnode *el, void *arg)
{
    const struct rsm_case *c = arg;
    struct rsm_request r;
    int rc = rsm_parse(el, &r);
    ck_assert_int_eq(rc, c->rc);
    if (rc == 0) {
        ck_assert_int_eq(r.max, c->max);
        if (c->after)
            ck_assert_str_eq(r.after, c->after);
        else
            ck_assert_ptr_null(r.after);
        ck_assert_int_eq(r.has_before, c->has_before);
        if (c->before)
            ck_assert_str_eq(r.before, c->before);
    }
    rsm_free(&r);
}

START_TEST(test_rsm_parse)
{
    static const struct rsm_case cases[] = {
        {"", 0, -1, NULL, false, NULL},
        {"<set xmlns='http://jabber.org/protocol/rsm'><max>10</max></set>", 0, 10, NULL, false,
         NULL},
        {"<set xmlns='http://jabber.org/protocol/rsm'><max>5</max><after>42</after></set>", 0, 5,
         "42", false, NULL},
        {"<set xmlns='http://jabber.org/protocol/rsm'><before/></set>", 0, -1, NULL, true, ""},
        {"<set xmlns='http://jabber.org/protocol/rsm'><before>7</before></set>", 0, -1, NULL, true,
         "7"},
        {"<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>", -1, 0, NULL, false, NULL},
        {"<set xmlns='http://jabber.org/protocol/rsm'><max>ten</max></set>", -1, 0, NULL, false,
         NULL},
        {"<set xmlns='http://jabber.org/protocol/rsm'><after></after></set>", -1, 0, NULL, false,
         NULL},
        {"<set xmlns='http://jabber.org/protocol/rsm'><after>1</after><before>2</before></set>", -1,
         0, NULL, false, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char xml[512];
        snprintf(xml, sizeof xml, "<iq>%s</iq>", cases[i].set);
        with_element(xml, check_rsm, (void *)&cases[i]);
    }
}
END_TEST

START_TEST(test_rsm_reply)
{
    struct buf b = BUF_INIT;
    rsm_reply(&b, "3", "9", 12, -1);
    ck_assert_str_eq(b.data, "<set xmlns='http://jabber.org/protocol/rsm'><first>3</first>"
                             "<last>9</last><count>12</count></set>");
    buf_reset(&b);
    /* XEP-0059 §2: the index of the first item in the full set. */
    rsm_reply(&b, "3", "9", 12, 4);
    ck_assert_str_eq(b.data, "<set xmlns='http://jabber.org/protocol/rsm'><first index='4'>3"
                             "</first><last>9</last><count>12</count></set>");
    buf_reset(&b);
    /* An empty page has no <first/>, hence no index. */
    rsm_reply(&b, NULL, NULL, 12, 12);
    ck_assert_str_eq(b.data, "<set xmlns='http://jabber.org/protocol/rsm'><count>12</count>"
                             "</set>");
    buf_reset(&b);
    rsm_reply(&b, NULL, NULL, -1, -1);
    ck_assert_str_eq(b.data, "<set xmlns='http://jabber.org/protocol/rsm'></set>");
    buf_reset(&b);
    rsm_reply(&b, "a<b", "c&d", 0, -1);
    ck_assert_ptr_nonnull(strstr(b.data, "<first>a&lt;b</first><last>c&amp;d</last>"));
    buf_free(&b);
}
END_TEST

int main(void)
{
    const struct unit_case cases[] = {
        {"form_parse", test_form_parse},
        {"form_field_without_var", test_form_field_without_var},
        {"form_boolean", test_form_boolean},
        {"form_datetime", test_form_datetime},
        {"node_config_values", test_node_config_values},
        {"node_config_defaults", test_node_config_defaults},
        {"rsm_parse", test_rsm_parse},
        {"rsm_reply", test_rsm_reply},
    };
    return UNIT_RUN("forms", cases);
}
