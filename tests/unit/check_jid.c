/*
 * check_jid.c - unit tests for src/jid.c: JID shape and length checks,
 * bare JIDs and normalisation (ASCII lower case of local part and domain,
 * resource untouched), and the node id / item id rules.
 *
 * One suite, one test case per behaviour; Check's fork mode turns a crash
 * into a failed test.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jid.h"
#include "unit.h"

#define JID_PART_MAX 1023

/* Returns a string of n copies of c (caller frees). */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Returns a JID assembled from its parts; local and resource may be NULL
 * (caller frees). */
static char *make_jid(const char *local, const char *domain,
                      const char *resource)
{
    size_t n = (local ? strlen(local) + 1 : 0) + strlen(domain) +
               (resource ? strlen(resource) + 1 : 0) + 1;
    char *s = malloc(n);
    ck_assert_ptr_nonnull(s);
    s[0] = '\0';
    if (local) {
        strcat(s, local);
        strcat(s, "@");
    }
    strcat(s, domain);
    if (resource) {
        strcat(s, "/");
        strcat(s, resource);
    }
    return s;
}

/* ---- validity ---------------------------------------------------------- */

START_TEST(test_valid_jids)
{
    static const char *const valid[] = {
        "example.org",
        "localhost",
        "juliet@example.com",
        "juliet@example.com/balcony",
        "example.com/resource",
        "pubsub.example.org",
        "a@b",
        "192.0.2.1",
        "[2001:db8::1]",
        "juliet@example.com/res with spaces",
        "juliet@example.com/res/with/slashes@and@ats",
        "juliet@example.com/Ünïcödé ☃",
        "Jüliet.Çapulet@例え.テスト/ресурс",
        "user+tag_x-y.z@example.com",
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        ck_assert_msg(jid_is_valid(valid[i]), "\"%s\" should be valid",
                      valid[i]);
}
END_TEST

START_TEST(test_invalid_shape)
{
    static const char *const invalid[] = {
        "",          /* empty */
        "@example.org",  /* empty local part */
        "@",
        "a@",        /* empty domain */
        "a@/r",      /* empty domain with a resource */
        "/r",        /* empty domain, only a resource */
        "example.org/", /* empty resource */
        "a@example.org/", /* empty resource */
        "a@b@example.org", /* second @ ends up in the domain */
        "a@exa mple.org",  /* space in the domain */
        "a@exa<mple.org",
        "a@example.org\t",
    };
    ck_assert(!jid_is_valid(NULL));
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        ck_assert_msg(!jid_is_valid(invalid[i]), "\"%s\" should be invalid",
                      invalid[i]);
}
END_TEST

START_TEST(test_invalid_local_chars)
{
    /* RFC 7622 §3.3.1: these may not appear in a local part.  ('/' and
     * '@' cannot be tested here: they end the local part.) */
    static const char forbidden[] = "\"&':<> \t\r\n";
    for (const char *c = forbidden; *c; c++) {
        char jid[32];
        snprintf(jid, sizeof jid, "ju%cliet@example.com", *c);
        ck_assert_msg(!jid_is_valid(jid),
                      "local part with byte 0x%02x should be invalid",
                      (unsigned char)*c);
        snprintf(jid, sizeof jid, "%cjuliet@example.com/r", *c);
        ck_assert_msg(!jid_is_valid(jid),
                      "local part starting with byte 0x%02x should be invalid",
                      (unsigned char)*c);
    }
}
END_TEST

START_TEST(test_invalid_domain_dots)
{
    static const char *const invalid[] = {
        ".example.org", "example.org.", "a@.example.org",
        "a@example.org.", "a@example.org./r", ".", "a@.",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        ck_assert_msg(!jid_is_valid(invalid[i]), "\"%s\" should be invalid",
                      invalid[i]);
    ck_assert(jid_is_valid("a@ex.ample.org"));
}
END_TEST

START_TEST(test_invalid_resource_controls)
{
    ck_assert(!jid_is_valid("a@example.org/r\x01"));
    ck_assert(!jid_is_valid("a@example.org/r\nx"));
    ck_assert(!jid_is_valid("a@example.org/\x1f"));
    ck_assert(jid_is_valid("a@example.org/r x"));
}
END_TEST

START_TEST(test_part_lengths)
{
    char *max = repeat('a', JID_PART_MAX);
    char *over = repeat('a', JID_PART_MAX + 1);
    char *jid;

    jid = make_jid(max, "example.org", max);
    ck_assert_msg(jid_is_valid(jid), "1023-byte local part and resource are valid");
    free(jid);

    jid = make_jid(NULL, max, NULL);
    ck_assert_msg(jid_is_valid(jid), "1023-byte domain is valid");
    free(jid);

    jid = make_jid(over, "example.org", NULL);
    ck_assert_msg(!jid_is_valid(jid), "1024-byte local part is invalid");
    free(jid);

    jid = make_jid(NULL, over, NULL);
    ck_assert_msg(!jid_is_valid(jid), "1024-byte domain is invalid");
    free(jid);

    jid = make_jid("a", over, "r");
    ck_assert_msg(!jid_is_valid(jid), "1024-byte domain with local part is invalid");
    free(jid);

    jid = make_jid("a", "example.org", over);
    ck_assert_msg(!jid_is_valid(jid), "1024-byte resource is invalid");
    free(jid);

    /* The limit is in bytes, not characters: 512 two-byte characters. */
    char utf8[2 * 512 + 1];
    for (int i = 0; i < 512; i++)
        memcpy(utf8 + 2 * i, "\xc3\xa9", 2); /* é */
    utf8[sizeof utf8 - 1] = '\0';
    jid = make_jid(utf8, "example.org", NULL);
    ck_assert_msg(!jid_is_valid(jid), "1024-byte UTF-8 local part is invalid");
    free(jid);

    free(max);
    free(over);
}
END_TEST

/* ---- bare and normalised forms ----------------------------------------- */

START_TEST(test_bare)
{
    static const struct {
        const char *in, *bare;
    } cases[] = {
        {"Juliet@Example.COM/Balcony", "juliet@example.com"},
        {"juliet@example.com", "juliet@example.com"},
        {"EXAMPLE.org/Res", "example.org"},
        {"Example.ORG", "example.org"},
        {"ROMEO@example.net/A/B@C", "romeo@example.net"},
        /* Only ASCII letters are folded: no full stringprep. */
        {"\xc3\x89lodie@Example.org/x", "\xc3\x89lodie@example.org"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *b = jid_bare(cases[i].in);
        ck_assert_msg(b != NULL, "jid_bare(\"%s\") returned NULL", cases[i].in);
        ck_assert_str_eq(b, cases[i].bare);
        free(b);
    }
    static const char *const invalid[] = {"", "@d", "a@", "a@d/", "a@.d"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        char *b = jid_bare(invalid[i]);
        ck_assert_msg(b == NULL, "jid_bare(\"%s\") should be NULL",
                      invalid[i]);
    }
    char *b = jid_bare(NULL);
    ck_assert_ptr_null(b);
}
END_TEST

START_TEST(test_normalize)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"Juliet@Example.COM/Balcony", "juliet@example.com/Balcony"},
        {"JULIET@EXAMPLE.COM", "juliet@example.com"},
        {"Example.ORG/MiXeD Case/Res", "example.org/MiXeD Case/Res"},
        {"a@b/R", "a@b/R"},
        {"romeo@example.net/ORCHARD", "romeo@example.net/ORCHARD"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *n = jid_normalize(cases[i].in);
        ck_assert_msg(n != NULL, "jid_normalize(\"%s\") returned NULL",
                      cases[i].in);
        ck_assert_str_eq(n, cases[i].out);
        free(n);
    }
    char *n = jid_normalize("a@d/");
    ck_assert_ptr_null(n);
    n = jid_normalize("");
    ck_assert_ptr_null(n);
}
END_TEST

START_TEST(test_is_domain)
{
    ck_assert(jid_is_domain("example.org"));
    ck_assert(jid_is_domain("pubsub.example.org"));
    ck_assert(!jid_is_domain("a@example.org"));
    ck_assert(!jid_is_domain("example.org/r"));
    ck_assert(!jid_is_domain("a@example.org/r"));
    ck_assert(!jid_is_domain(""));
    ck_assert(!jid_is_domain(".example.org"));
}
END_TEST

/* ---- node and item ids ------------------------------------------------- */

typedef bool (*id_check)(const char *, size_t);

static void check_id_rules(id_check valid, const char *what)
{
    ck_assert_msg(!valid(NULL, 100), "%s: NULL is invalid", what);
    ck_assert_msg(!valid("", 100), "%s: empty is invalid", what);
    ck_assert_msg(valid("a", 1), "%s: one byte at limit 1 is valid", what);
    ck_assert_msg(valid("princely_musings", 100), "%s: plain id", what);
    ck_assert_msg(valid("a/b/c", 100), "%s: '/' is allowed", what);
    ck_assert_msg(valid("with space", 100), "%s: space is allowed", what);
    ck_assert_msg(valid("<&'\">", 100), "%s: XML specials are allowed", what);
    ck_assert_msg(valid("caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x8e\x89", 100),
                  "%s: UTF-8 is allowed", what);

    char *max = repeat('n', 1023);
    ck_assert_msg(valid(max, 1023), "%s: exactly max_bytes is valid", what);
    ck_assert_msg(!valid(max, 1022), "%s: max_bytes + 1 is invalid", what);
    free(max);
    /* Bytes, not characters: "é" is two bytes. */
    ck_assert_msg(!valid("\xc3\xa9", 1), "%s: limit counts bytes", what);
    ck_assert_msg(valid("\xc3\xa9", 2), "%s: limit counts bytes", what);

    for (int c = 1; c < 0x20; c++) {
        char id[8];
        snprintf(id, sizeof id, "a%cb", c);
        ck_assert_msg(!valid(id, 100), "%s: control 0x%02x is invalid", what,
                      c);
    }
    ck_assert_msg(!valid("a\x7f" "b", 100), "%s: DEL is invalid", what);
}

START_TEST(test_node_id)
{
    check_id_rules(node_id_is_valid, "node id");
}
END_TEST

START_TEST(test_item_id)
{
    check_id_rules(item_id_is_valid, "item id");
}
END_TEST

int main(void)
{
    const struct unit_case cases[] = {
        {"valid", test_valid_jids},
        {"invalid_shape", test_invalid_shape},
        {"invalid_local_chars", test_invalid_local_chars},
        {"invalid_domain_dots", test_invalid_domain_dots},
        {"invalid_resource_controls", test_invalid_resource_controls},
        {"part_lengths", test_part_lengths},
        {"bare", test_bare},
        {"normalize", test_normalize},
        {"is_domain", test_is_domain},
        {"node_id", test_node_id},
        {"item_id", test_item_id},
    };
    return UNIT_RUN("jid", cases);
}
