/*
 * check_config.c - unit tests for src/config.c: defaults, the "key = value"
 * file, the PUBSUBD_<KEY> environment override, bounds, error messages
 * (file and line, or the variable name), the cross-key checks,
 * config_barrier_jid(), and that docs/pubsubd.conf.example lists every key
 * with its default.
 *
 * Every test runs in its own process (Check's fork mode), so setenv() and
 * unsetenv() do not leak between tests; each test starts by clearing every
 * PUBSUBD_<KEY> variable the developer's shell might have set.
 */
#include <check.h>
#include <stdbool.h>
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

/* ---- helpers ----------------------------------------------------------- */

/* Where each key lands in struct config, so defaults and overrides can be
 * checked field by field.  test_field_table fails when a key is added to
 * src/config.c without being added here. */
enum field_type { F_STR, F_INT };
static const struct {
    const char *name;
    enum field_type type;
    size_t offset;
} fields[] = {
#define FS(n) {#n, F_STR, offsetof(struct config, n)}
#define FI(n) {#n, F_INT, offsetof(struct config, n)}
    FS(xmpp_host), FI(xmpp_port), FS(component_jid), FS(component_secret),
    FS(barrier_jid), FI(reconnect_min_ms), FI(reconnect_max_ms),
    FI(max_stanza_bytes), FI(output_buffer_max), FI(output_buffer_high),
    FS(database), FI(db_pool_size), FI(db_max_pipeline), FI(db_group_max), FI(db_max_queued),
    FI(db_request_timeout_ms), FI(db_reconnect_min_ms),
    FI(db_reconnect_max_ms), FI(max_payload_bytes), FI(default_max_items),
    FI(max_items_limit), FI(max_node_id_bytes), FI(max_item_id_bytes),
    FI(max_items_per_request), FI(auto_create_nodes), FI(max_nodes_per_owner),
    FI(max_subscriptions_per_jid), FI(max_inflight_per_sender), FI(dispatch_batch), FI(dispatch_events),
    FI(dispatch_handoff_max), FI(dispatch_commit_interval_ms),
    FI(dispatch_max_nodes), FI(dispatch_poll_ms), FI(redelivery_max_attempts), FI(redelivery_base_ms),
    FI(redelivery_window_ms), FI(redelivery_batch), FI(event_retention_s), FS(log_level),
    FS(log_file), FI(shutdown_timeout_ms),
#undef FS
#undef FI
};

static int field_index(const char *name)
{
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strcmp(fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The value of field `name` in cfg as a string (caller frees). */
static char *field_value(const struct config *cfg, const char *name)
{
    int i = field_index(name);
    ck_assert_msg(i >= 0, "key \"%s\" is not in check_config's field table",
                  name);
    const char *p = (const char *)cfg + fields[i].offset;
    if (fields[i].type == F_STR) {
        const char *s = *(char *const *)(const void *)p;
        ck_assert_msg(s != NULL, "string field %s is NULL", name);
        return strdup(s);
    }
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%d", *(const int *)(const void *)p);
    return strdup(tmp);
}

/* "PUBSUBD_" + upper-case key, in a static buffer. */
static const char *env_name(const char *key)
{
    static char var[128];
    snprintf(var, sizeof var, "PUBSUBD_%s", key);
    for (char *p = var; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return var;
}

static void clear_env(void)
{
    for (size_t i = 0; i < config_key_count(); i++)
        unsetenv(env_name(config_key_name(i)));
}

static const char *tmp_dir(void)
{
    const char *d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}

/* Writes content to a new temporary file; returns its path (caller
 * unlinks and frees). */
static char *write_tmp(const char *content)
{
    size_t n = strlen(tmp_dir()) + 64;
    char *path = malloc(n);
    ck_assert_ptr_nonnull(path);
    snprintf(path, n, "%s/check_config_XXXXXX", tmp_dir());
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp(%s) failed", path);
    size_t len = strlen(content);
    ck_assert_msg(write(fd, content, len) == (ssize_t)len, "short write");
    ck_assert_int_eq(close(fd), 0);
    return path;
}

static void remove_tmp(char *path)
{
    unlink(path);
    free(path);
}

/* Loads content from a temporary file and asserts success. */
static void load_ok(struct config *cfg, const char *content)
{
    char *path = write_tmp(content);
    char *err = NULL;
    int rc = config_load(cfg, path, &err);
    ck_assert_msg(rc == 0, "config_load failed on:\n%s\nerror: %s", content,
                  err ? err : "(none)");
    ck_assert_msg(err == NULL, "errmsg set on success: %s", err);
    remove_tmp(path);
}

/*
 * Loads content and asserts it fails with a message that starts with
 * "PATH:LINE: " and contains `needle`.
 */
static void load_fails_at(const char *content, int line, const char *needle)
{
    char *path = write_tmp(content);
    struct config cfg;
    char *err = NULL;
    int rc = config_load(&cfg, path, &err);
    ck_assert_msg(rc == -1, "config_load accepted:\n%s", content);
    ck_assert_msg(err != NULL, "no error message for:\n%s", content);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
                  "error \"%s\" does not start with \"%s\"", err, prefix);
    ck_assert_msg(strstr(err, needle) != NULL,
                  "error \"%s\" does not contain \"%s\"", err, needle);
    free(err);
    config_free(&cfg); /* must be safe after a failure */
    remove_tmp(path);
}

/* Loads with no file and asserts failure with both needles in the
 * message. */
static void load_env_fails(const char *needle1, const char *needle2)
{
    struct config cfg;
    char *err = NULL;
    int rc = config_load(&cfg, NULL, &err);
    ck_assert_msg(rc == -1, "config_load accepted the environment");
    ck_assert_msg(err != NULL, "no error message");
    ck_assert_msg(strstr(err, needle1) != NULL,
                  "error \"%s\" does not contain \"%s\"", err, needle1);
    ck_assert_msg(needle2 == NULL || strstr(err, needle2) != NULL,
                  "error \"%s\" does not contain \"%s\"", err, needle2);
    free(err);
    config_free(&cfg);
}

static void assert_field(const struct config *cfg, const char *name,
                         const char *want)
{
    char *got = field_value(cfg, name);
    ck_assert_msg(strcmp(got, want) == 0, "%s is \"%s\", expected \"%s\"",
                  name, got, want);
    free(got);
}

/* Asserts every field of cfg holds its built-in default. */
static void assert_all_defaults(const struct config *cfg)
{
    for (size_t i = 0; i < config_key_count(); i++)
        assert_field(cfg, config_key_name(i), config_key_default(i));
}

/* ---- key table and defaults -------------------------------------------- */

START_TEST(test_field_table)
{
    ck_assert_uint_eq(config_key_count(), sizeof fields / sizeof fields[0]);
    for (size_t i = 0; i < config_key_count(); i++) {
        const char *name = config_key_name(i);
        ck_assert_ptr_nonnull(name);
        ck_assert_ptr_nonnull(config_key_default(i));
        ck_assert_msg(field_index(name) >= 0,
                      "key \"%s\" is missing from check_config's field table",
                      name);
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(name, config_key_name(j)) != 0,
                          "key \"%s\" is declared twice", name);
    }
    ck_assert_ptr_null(config_key_name(config_key_count()));
    ck_assert_ptr_null(config_key_default(config_key_count()));
}
END_TEST

START_TEST(test_defaults)
{
    clear_env();
    struct config cfg;
    char *err = (char *)"sentinel";
    int rc = config_load(&cfg, NULL, &err);
    ck_assert_msg(rc == 0, "config_load(NULL) failed: %s", err);
    ck_assert_ptr_null(err);
    assert_all_defaults(&cfg);
    /* A few spelled out, so the table itself is checked too. */
    ck_assert_str_eq(cfg.xmpp_host, "127.0.0.1");
    ck_assert_int_eq(cfg.xmpp_port, 5347);
    ck_assert_str_eq(cfg.component_jid, "pubsub.localhost");
    ck_assert_str_eq(cfg.component_secret, "");
    ck_assert_str_eq(cfg.barrier_jid, "");
    ck_assert_str_eq(cfg.database, "dbname=pubsubd");
    ck_assert_int_eq(cfg.max_stanza_bytes, 1048576);
    ck_assert_int_eq(cfg.db_pool_size, 2);
    ck_assert_str_eq(cfg.log_level, "info");
    ck_assert_str_eq(cfg.log_file, "");
    ck_assert_int_eq(cfg.shutdown_timeout_ms, 10000);
    config_free(&cfg);
    ck_assert_ptr_null(cfg.xmpp_host);
}
END_TEST

/* ---- the file ---------------------------------------------------------- */

START_TEST(test_good_file)
{
    clear_env();
    struct config cfg;
    load_ok(&cfg,
            "# pubsubd test configuration\n"
            "\n"
            "xmpp_host = xmpp.example.org\n"
            "   xmpp_port=5348   \n"
            "\t# indented comment = with an equals sign\n"
            "; semicolon comment\n"
            "component_jid = pubsub.example.org\r\n"
            "component_secret = s3cr3t\n"
            "database = host=/tmp dbname=ps user=ps\n"
            "db_pool_size = 8\n"
            "max_items_limit = 2000000000\n"
            "shutdown_timeout_ms = 0\n"
            "log_level = debug\n"
            "xmpp_port = 5349\n" /* a later line wins */
            "dispatch_poll_ms = 250"); /* no final newline */
    ck_assert_str_eq(cfg.xmpp_host, "xmpp.example.org");
    ck_assert_int_eq(cfg.xmpp_port, 5349);
    ck_assert_str_eq(cfg.component_jid, "pubsub.example.org");
    ck_assert_str_eq(cfg.component_secret, "s3cr3t");
    ck_assert_str_eq(cfg.database, "host=/tmp dbname=ps user=ps");
    ck_assert_int_eq(cfg.db_pool_size, 8);
    ck_assert_int_eq(cfg.max_items_limit, 2000000000);
    ck_assert_int_eq(cfg.shutdown_timeout_ms, 0);
    ck_assert_str_eq(cfg.log_level, "debug");
    ck_assert_int_eq(cfg.dispatch_poll_ms, 250);
    /* Untouched keys keep their defaults. */
    ck_assert_int_eq(cfg.db_max_pipeline, 64);
    ck_assert_str_eq(cfg.log_file, "");
    config_free(&cfg);
}
END_TEST

START_TEST(test_comments_and_blank_lines)
{
    clear_env();
    struct config cfg;
    load_ok(&cfg, "");
    assert_all_defaults(&cfg);
    config_free(&cfg);

    load_ok(&cfg, "\n\n   \n\t\n# xmpp_port = 1\n;xmpp_port = 2\n"
                  "  #xmpp_port=3\n# unknown_key = 4\n#\n");
    assert_all_defaults(&cfg);
    config_free(&cfg);

    /* Line numbers count comment and blank lines. */
    load_fails_at("# one\n\n; three\n   \nnope = 1\n", 5, "unknown key \"nope\"");
}
END_TEST

START_TEST(test_quoted_values)
{
    clear_env();
    struct config cfg;
    load_ok(&cfg,
            "database = \"host=/tmp dbname=ps\"\n"
            "component_secret = \"\"\n"
            "xmpp_host = \"  padded  \"\n"
            "log_file = \"/var/log/pubsubd # not a comment.log\"\n"
            "xmpp_port = \"5350\"\n"
            "barrier_jid = \"example.org\"\n");
    ck_assert_str_eq(cfg.database, "host=/tmp dbname=ps");
    ck_assert_str_eq(cfg.component_secret, "");
    ck_assert_str_eq(cfg.xmpp_host, "  padded  ");
    ck_assert_str_eq(cfg.log_file, "/var/log/pubsubd # not a comment.log");
    ck_assert_int_eq(cfg.xmpp_port, 5350);
    ck_assert_str_eq(cfg.barrier_jid, "example.org");
    config_free(&cfg);
}
END_TEST

/* ---- the environment --------------------------------------------------- */

START_TEST(test_env_wins)
{
    clear_env();
    ck_assert_int_eq(setenv("PUBSUBD_XMPP_PORT", "6000", 1), 0);
    ck_assert_int_eq(setenv("PUBSUBD_COMPONENT_SECRET", "from-env", 1), 0);
    ck_assert_int_eq(setenv("PUBSUBD_DATABASE", "dbname=envdb", 1), 0);
    struct config cfg;
    load_ok(&cfg, "xmpp_port = 5999\n"
                  "component_secret = from-file\n"
                  "xmpp_host = file.example.org\n");
    ck_assert_int_eq(cfg.xmpp_port, 6000);
    ck_assert_str_eq(cfg.component_secret, "from-env");
    ck_assert_str_eq(cfg.database, "dbname=envdb");
    ck_assert_str_eq(cfg.xmpp_host, "file.example.org");
    config_free(&cfg);

    /* Without a file, the environment applies over the defaults. */
    char *err = NULL;
    ck_assert_int_eq(config_load(&cfg, NULL, &err), 0);
    ck_assert_int_eq(cfg.xmpp_port, 6000);
    ck_assert_str_eq(cfg.xmpp_host, "127.0.0.1");
    config_free(&cfg);

    /* Every key has its variable. */
    clear_env();
    ck_assert_int_eq(setenv("PUBSUBD_SHUTDOWN_TIMEOUT_MS", "1", 1), 0);
    ck_assert_int_eq(setenv("PUBSUBD_LOG_FILE", "/tmp/x.log", 1), 0);
    ck_assert_int_eq(setenv("PUBSUBD_DISPATCH_EVENTS", "7", 1), 0);
    ck_assert_int_eq(config_load(&cfg, NULL, &err), 0);
    ck_assert_int_eq(cfg.shutdown_timeout_ms, 1);
    ck_assert_str_eq(cfg.log_file, "/tmp/x.log");
    ck_assert_int_eq(cfg.dispatch_events, 7);
    config_free(&cfg);

    /* Only exact upper-case names count. */
    clear_env();
    ck_assert_int_eq(setenv("pubsubd_xmpp_port", "7000", 1), 0);
    ck_assert_int_eq(setenv("PUBSUBD_XMPP_PORTX", "7001", 1), 0);
    ck_assert_int_eq(config_load(&cfg, NULL, &err), 0);
    ck_assert_int_eq(cfg.xmpp_port, 5347);
    config_free(&cfg);
}
END_TEST

START_TEST(test_env_errors)
{
    clear_env();
    ck_assert_int_eq(setenv("PUBSUBD_XMPP_PORT", "http", 1), 0);
    load_env_fails("PUBSUBD_XMPP_PORT", "is not an integer");

    clear_env();
    ck_assert_int_eq(setenv("PUBSUBD_DB_POOL_SIZE", "0", 1), 0);
    load_env_fails("PUBSUBD_DB_POOL_SIZE", "is out of range");

    clear_env();
    ck_assert_int_eq(setenv("PUBSUBD_MAX_STANZA_BYTES", "", 1), 0);
    load_env_fails("PUBSUBD_MAX_STANZA_BYTES", "is not an integer");

    clear_env();
    ck_assert_int_eq(setenv("PUBSUBD_LOG_LEVEL", "loud", 1), 0);
    load_env_fails("PUBSUBD_LOG_LEVEL", NULL);

    /* A bad variable fails even when the file is fine, and names the
     * variable rather than the file. */
    clear_env();
    ck_assert_int_eq(setenv("PUBSUBD_DISPATCH_POLL_MS", "5 ", 1), 0);
    char *path = write_tmp("dispatch_poll_ms = 100\n");
    struct config cfg;
    char *err = NULL;
    ck_assert_int_eq(config_load(&cfg, path, &err), -1);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, "PUBSUBD_DISPATCH_POLL_MS") != NULL,
                  "error \"%s\" does not name the variable", err);
    free(err);
    config_free(&cfg);
    remove_tmp(path);
}
END_TEST

/* ---- file errors ------------------------------------------------------- */

START_TEST(test_unknown_key)
{
    clear_env();
    load_fails_at("xmpp_port = 5347\nxmpp_prot = 5347\n", 2,
                  "unknown key \"xmpp_prot\"");
    /* Keys are case-sensitive. */
    load_fails_at("XMPP_PORT = 5347\n", 1, "unknown key \"XMPP_PORT\"");
    load_fails_at("\n = 5347\n", 2, "unknown key");
}
END_TEST

START_TEST(test_not_an_integer)
{
    clear_env();
    static const char *const bad[] = {"abc", "12abc", "1.5", "0x10", "",
                                      "5 6", "\"\"", "--1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char content[128];
        snprintf(content, sizeof content, "# c\nxmpp_port = %s\n", bad[i]);
        load_fails_at(content, 2, "value of \"xmpp_port\" is not an integer");
    }
}
END_TEST

START_TEST(test_out_of_range)
{
    clear_env();
    static const char *const bad[] = {"0", "-1", "65536", "99999999999",
                                      "-99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char content[128];
        snprintf(content, sizeof content, "\n\nxmpp_port = %s\n", bad[i]);
        load_fails_at(content, 3, "value of \"xmpp_port\" is out of range");
    }
    load_fails_at("max_stanza_bytes = 4095\n", 1,
                  "value of \"max_stanza_bytes\" is out of range");
    load_fails_at("db_pool_size = 65\n", 1,
                  "value of \"db_pool_size\" is out of range");
    load_fails_at("shutdown_timeout_ms = -1\n", 1,
                  "value of \"shutdown_timeout_ms\" is out of range");
    /* Below 4 the dispatcher's periodic queries would starve its claims. */
    load_fails_at("db_max_queued = 3\n", 1, "value of \"db_max_queued\" is out of range");
    load_fails_at("dispatch_handoff_max = -1\n", 1,
                  "value of \"dispatch_handoff_max\" is out of range");
    load_fails_at("dispatch_commit_interval_ms = 60001\n", 1,
                  "value of \"dispatch_commit_interval_ms\" is out of range");

    /* The bounds themselves are accepted. */
    struct config cfg;
    load_ok(&cfg, "xmpp_port = 1\ndb_pool_size = 64\n");
    ck_assert_int_eq(cfg.xmpp_port, 1);
    ck_assert_int_eq(cfg.db_pool_size, 64);
    config_free(&cfg);
    load_ok(&cfg, "xmpp_port = 65535\nmax_stanza_bytes = 4096\n"
                  "max_payload_bytes = 4096\n");
    ck_assert_int_eq(cfg.xmpp_port, 65535);
    ck_assert_int_eq(cfg.max_stanza_bytes, 4096);
    config_free(&cfg);
    load_ok(&cfg, "db_max_queued = 4\ndispatch_handoff_max = 0\n"
                  "dispatch_commit_interval_ms = 0\n");
    ck_assert_int_eq(cfg.db_max_queued, 4);
    ck_assert_int_eq(cfg.dispatch_handoff_max, 0);
    ck_assert_int_eq(cfg.dispatch_commit_interval_ms, 0);
    config_free(&cfg);
}
END_TEST

START_TEST(test_unterminated_quote)
{
    clear_env();
    load_fails_at("component_jid = \"pubsub.example.org\n", 1,
                  "unterminated quoted value for \"component_jid\"");
    load_fails_at("\n\ndatabase = \"\n", 3, "unterminated");
}
END_TEST

START_TEST(test_missing_equals)
{
    clear_env();
    load_fails_at("xmpp_host = a\nxmpp_port 5347\n", 2,
                  "expected \"key = value\"");
    load_fails_at("just_a_word\n", 1, "expected");
}
END_TEST

START_TEST(test_bad_log_level)
{
    clear_env();
    load_fails_at("log_level = verbose\n", 1, "value of \"log_level\"");
    struct config cfg;
    static const char *const good[] = {"error", "warn", "info", "debug"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char content[64];
        snprintf(content, sizeof content, "log_level = %s\n", good[i]);
        load_ok(&cfg, content);
        ck_assert_str_eq(cfg.log_level, good[i]);
        config_free(&cfg);
    }
}
END_TEST

START_TEST(test_missing_file)
{
    clear_env();
    char path[512];
    snprintf(path, sizeof path, "%s/check_config_does_not_exist_%ld.conf",
             tmp_dir(), (long)getpid());
    struct config cfg;
    char *err = NULL;
    ck_assert_int_eq(config_load(&cfg, path, &err), -1);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, path) != NULL, "error \"%s\" does not name %s",
                  err, path);
    free(err);
    config_free(&cfg);
}
END_TEST

/* ---- cross-key checks -------------------------------------------------- */

static void cross_check_fails(const char *content, const char *key1,
                              const char *key2)
{
    char *path = write_tmp(content);
    struct config cfg;
    char *err = NULL;
    int rc = config_load(&cfg, path, &err);
    ck_assert_msg(rc == -1, "config_load accepted:\n%s", content);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, key1) != NULL, "error \"%s\" lacks %s", err,
                  key1);
    ck_assert_msg(key2 == NULL || strstr(err, key2) != NULL,
                  "error \"%s\" lacks %s", err, key2);
    free(err);
    config_free(&cfg);
    remove_tmp(path);
}

START_TEST(test_cross_key_checks)
{
    clear_env();
    cross_check_fails("reconnect_min_ms = 5000\nreconnect_max_ms = 4000\n",
                      "reconnect_min_ms", "reconnect_max_ms");
    cross_check_fails("db_reconnect_min_ms = 500\ndb_reconnect_max_ms = 400\n",
                      "db_reconnect_min_ms", "db_reconnect_max_ms");
    cross_check_fails("output_buffer_high = 70000\noutput_buffer_max = 65536\n",
                      "output_buffer_high", "output_buffer_max");
    /* The hard limit leaves room for two stanzas above the threshold. */
    cross_check_fails("output_buffer_high = 1048576\n"
                      "output_buffer_max = 3145727\n",
                      "output_buffer_max", "max_stanza_bytes");
    cross_check_fails("max_stanza_bytes = 16777216\n", "output_buffer_max",
                      "max_stanza_bytes");
    cross_check_fails("max_stanza_bytes = 4096\n", "max_payload_bytes",
                      "max_stanza_bytes");
    cross_check_fails("default_max_items = 11\nmax_items_limit = 10\n",
                      "default_max_items", "max_items_limit");
    cross_check_fails("component_jid = \"\"\n", "component_jid", NULL);
    cross_check_fails("component_jid = user@example.org\n", "component_jid",
                      NULL);
    cross_check_fails("component_jid = example.org/res\n", "component_jid",
                      NULL);

    /* Equal values are fine. */
    struct config cfg;
    load_ok(&cfg, "reconnect_min_ms = 4000\nreconnect_max_ms = 4000\n"
                  "default_max_items = 10\nmax_items_limit = 10\n"
                  "output_buffer_high = 1048576\n"
                  "output_buffer_max = 3145728\n");
    config_free(&cfg);

    /* The environment is checked too. */
    ck_assert_int_eq(setenv("PUBSUBD_RECONNECT_MIN_MS", "600000", 1), 0);
    load_env_fails("reconnect_min_ms", "reconnect_max_ms");
}
END_TEST

/* ---- barrier JID ------------------------------------------------------- */

START_TEST(test_barrier_jid)
{
    clear_env();
    struct config cfg;
    load_ok(&cfg, "component_jid = pubsub.example.org\n");
    ck_assert_str_eq(config_barrier_jid(&cfg), "example.org");
    config_free(&cfg);

    load_ok(&cfg, "");
    ck_assert_str_eq(config_barrier_jid(&cfg), "localhost");
    config_free(&cfg);

    load_ok(&cfg, "component_jid = a.b.c.example\n");
    ck_assert_str_eq(config_barrier_jid(&cfg), "b.c.example");
    config_free(&cfg);

    load_ok(&cfg, "component_jid = localhost\n");
    ck_assert_str_eq(config_barrier_jid(&cfg), "localhost");
    config_free(&cfg);

    load_ok(&cfg, "component_jid = pubsub.example.org\n"
                  "barrier_jid = xmpp.example.net\n");
    ck_assert_str_eq(config_barrier_jid(&cfg), "xmpp.example.net");
    config_free(&cfg);

    ck_assert_int_eq(setenv("PUBSUBD_BARRIER_JID", "env.example", 1), 0);
    load_ok(&cfg, "component_jid = pubsub.example.org\n");
    ck_assert_str_eq(config_barrier_jid(&cfg), "env.example");
    config_free(&cfg);
}
END_TEST

/* ---- docs/pubsubd.conf.example ----------------------------------------- */

/* Reads a whole file; NULL when it cannot be opened (caller frees). */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *data = malloc(cap);
    ck_assert_ptr_nonnull(data);
    size_t n;
    while ((n = fread(data + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            data = realloc(data, cap);
            ck_assert_ptr_nonnull(data);
        }
    }
    data[len] = '\0';
    fclose(f);
    return data;
}

static char *example_path(void)
{
    const char *top = getenv("TOP_SRCDIR");
    ck_assert_msg(top != NULL && *top != '\0',
                  "TOP_SRCDIR is not set: run this test through \"make check\" "
                  "or export TOP_SRCDIR=<source tree>");
    size_t n = strlen(top) + 64;
    char *path = malloc(n);
    ck_assert_ptr_nonnull(path);
    snprintf(path, n, "%s/docs/pubsubd.conf.example", top);
    return path;
}

/*
 * If line (without its newline) is a setting, commented out or not,
 * stores the key and the value (quotes removed) and returns true.  A
 * setting is "[#] key = value" where key is [a-z0-9_]+.
 */
static bool parse_setting(const char *line, char *key, size_t keycap,
                          char *value, size_t valcap, bool *commented)
{
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    *commented = false;
    if (*p == '#') {
        *commented = true;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
    }
    const char *k = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')
        p++;
    size_t klen = (size_t)(p - k);
    while (*p == ' ' || *p == '\t')
        p++;
    if (klen == 0 || *p != '=' || klen >= keycap)
        return false;
    memcpy(key, k, klen);
    key[klen] = '\0';
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t vlen = strlen(p);
    while (vlen > 0 && (p[vlen - 1] == ' ' || p[vlen - 1] == '\t' ||
                        p[vlen - 1] == '\r'))
        vlen--;
    if (vlen >= 2 && p[0] == '"' && p[vlen - 1] == '"') {
        p++;
        vlen -= 2;
    }
    ck_assert_msg(vlen < valcap, "value too long in \"%s\"", line);
    memcpy(value, p, vlen);
    value[vlen] = '\0';
    return true;
}

START_TEST(test_example_lists_every_key)
{
    clear_env();
    char *path = example_path();
    char *text = read_file(path);
    ck_assert_msg(text != NULL, "could not read %s", path);

    size_t nkeys = config_key_count();
    int *seen = calloc(nkeys, sizeof *seen);
    ck_assert_ptr_nonnull(seen);
    int lineno = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char key[128], value[1024];
        bool commented;
        if (parse_setting(line, key, sizeof key, value, sizeof value,
                          &commented)) {
            size_t i;
            for (i = 0; i < nkeys; i++)
                if (strcmp(key, config_key_name(i)) == 0)
                    break;
            ck_assert_msg(i < nkeys, "%s:%d: \"%s\" is not a configuration key",
                          path, lineno, key);
            ck_assert_msg(strcmp(value, config_key_default(i)) == 0,
                          "%s:%d: %s is shown as \"%s\", its default is \"%s\"",
                          path, lineno, key, value, config_key_default(i));
            seen[i]++;
        }
        line = nl ? nl + 1 : NULL;
    }
    for (size_t i = 0; i < nkeys; i++) {
        ck_assert_msg(seen[i] > 0, "%s lacks a \"# %s = %s\" line", path,
                      config_key_name(i), config_key_default(i));
        ck_assert_msg(seen[i] == 1, "%s lists %s %d times", path,
                      config_key_name(i), seen[i]);
    }
    free(seen);
    free(text);
    free(path);
}
END_TEST

START_TEST(test_example_loads)
{
    clear_env();
    char *path = example_path();
    char *text = read_file(path);
    ck_assert_msg(text != NULL, "could not read %s", path);

    /* As shipped (everything commented out). */
    struct config cfg;
    char *err = NULL;
    ck_assert_msg(config_load(&cfg, path, &err) == 0, "%s", err);
    assert_all_defaults(&cfg);
    config_free(&cfg);

    /* With every setting uncommented: the same defaults. */
    size_t cap = strlen(text) + 1;
    char *uncommented = malloc(cap);
    ck_assert_ptr_nonnull(uncommented);
    uncommented[0] = '\0';
    int settings = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char key[128], value[1024];
        bool commented;
        const char *out = line;
        if (parse_setting(line, key, sizeof key, value, sizeof value,
                          &commented)) {
            settings++;
            if (commented)
                out = strchr(line, '#') + 1;
        }
        strcat(uncommented, out);
        strcat(uncommented, "\n");
        line = nl ? nl + 1 : NULL;
    }
    ck_assert_int_eq(settings, (int)config_key_count());
    char *tmp = write_tmp(uncommented);
    err = NULL;
    ck_assert_msg(config_load(&cfg, tmp, &err) == 0,
                  "uncommented example does not load: %s", err);
    assert_all_defaults(&cfg);
    config_free(&cfg);
    remove_tmp(tmp);
    free(uncommented);
    free(text);
    free(path);
}
END_TEST

int main(void)
{
    const struct unit_case cases[] = {
        {"field_table", test_field_table},
        {"defaults", test_defaults},
        {"good_file", test_good_file},
        {"comments_and_blank_lines", test_comments_and_blank_lines},
        {"quoted_values", test_quoted_values},
        {"env_wins", test_env_wins},
        {"env_errors", test_env_errors},
        {"unknown_key", test_unknown_key},
        {"not_an_integer", test_not_an_integer},
        {"out_of_range", test_out_of_range},
        {"unterminated_quote", test_unterminated_quote},
        {"missing_equals", test_missing_equals},
        {"bad_log_level", test_bad_log_level},
        {"missing_file", test_missing_file},
        {"cross_key_checks", test_cross_key_checks},
        {"barrier_jid", test_barrier_jid},
        {"example_lists_every_key", test_example_lists_every_key},
        {"example_loads", test_example_loads},
    };
    return UNIT_RUN("config", cases);
}
