/*
 * check_buf.c - unit tests for src/buf.c: the quoting helpers (XML text,
 * JSON strings, PostgreSQL array elements), including strings with no
 * special character, only special characters, and control bytes.
 *
 * One suite, one test case per behaviour; Check's fork mode turns a crash
 * into a failed test.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "unit.h"

/* What buf_put_backslashed appends to an empty buffer (caller frees). */
static char *backslashed(const char *s, bool json_controls)
{
    struct buf b = BUF_INIT;
    buf_put_backslashed(&b, s, json_controls);
    return b.data ? buf_steal(&b) : strdup("");
}

START_TEST(test_backslashed_array_element)
{
    static const struct { const char *in, *out; } cases[] = {
        {"", ""},
        {"plain text, no specials", "plain text, no specials"},
        {"a\"b", "a\\\"b"},
        {"a\\b", "a\\\\b"},
        {"\"\\\"", "\\\"\\\\\\\""},
        {"<x xmlns='urn:b'>line\nnext\ttab</x>", "<x xmlns='urn:b'>line\nnext\ttab</x>"},
        {"end\\", "end\\\\"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = backslashed(cases[i].in, false);
        ck_assert_msg(strcmp(got, cases[i].out) == 0, "case %zu: got [%s], want [%s]", i, got,
                      cases[i].out);
        free(got);
    }
}
END_TEST

START_TEST(test_backslashed_json)
{
    static const struct { const char *in, *out; } cases[] = {
        {"", ""},
        {"plain", "plain"},
        {"q\"b\\s", "q\\\"b\\\\s"},
        {"line\nnext\ttab\x01\x1f end", "line\\u000anext\\u0009tab\\u0001\\u001f end"},
        {"\x7f and utf-8 \xc3\xa9", "\x7f and utf-8 \xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = backslashed(cases[i].in, true);
        ck_assert_msg(strcmp(got, cases[i].out) == 0, "case %zu: got [%s], want [%s]", i, got,
                      cases[i].out);
        free(got);
    }
    struct buf b = BUF_INIT;
    buf_put_json_string(&b, "a\"\n");
    ck_assert_str_eq(b.data, "\"a\\\"\\u000a\"");
    buf_free(&b);
}
END_TEST

START_TEST(test_escaped_xml)
{
    struct buf b = BUF_INIT;
    buf_put_escaped(&b, "a<b>&'\"c");
    ck_assert_str_eq(b.data, "a&lt;b&gt;&amp;&apos;&quot;c");
    buf_reset(&b);
    buf_put_escaped_n(&b, "x&y<z", 3);
    ck_assert_str_eq(b.data, "x&amp;y");
    buf_free(&b);
}
END_TEST

/* A long string appended in pieces keeps every byte (growth of the buffer). */
START_TEST(test_backslashed_long)
{
    enum { N = 100000 };
    char *in = malloc(N + 1);
    ck_assert_ptr_nonnull(in);
    for (int i = 0; i < N; i++)
        in[i] = i % 97 == 0 ? '"' : (char)('a' + i % 26);
    in[N] = '\0';
    char *got = backslashed(in, false);
    size_t quotes = 0;
    for (int i = 0; i < N; i++)
        quotes += in[i] == '"';
    ck_assert_uint_eq(strlen(got), N + quotes);
    for (size_t i = 0, j = 0; i < N; i++, j++) {
        if (in[i] == '"')
            ck_assert_int_eq(got[j++], '\\');
        ck_assert_int_eq(got[j], in[i]);
    }
    free(got);
    free(in);
}
END_TEST

int main(void)
{
    const struct unit_case cases[] = {
        {"backslashed_array_element", test_backslashed_array_element},
        {"backslashed_json", test_backslashed_json},
        {"escaped_xml", test_escaped_xml},
        {"backslashed_long", test_backslashed_long},
    };
    return UNIT_RUN("buf", cases);
}
