/*
 * check_link.c - the XEP-0114 link against a scripted fake XMPP server.
 *
 * The test process plays the server on a loopback port: it accepts
 * pubsubd's connection, checks the stream header and the SHA-1 handshake,
 * then misbehaves (malformed XML, an over-long stanza, a stream error, a
 * wrong secret).  pubsubd must close the stream with a clear log line and
 * reconnect, never crash.  A real PostgreSQL is used (pubsubd needs one).
 */
#include <errno.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define SECRET "fake-server-secret"
#define COMPONENT "c5.localhost"

struct fake_server {
    int listen_fd;
    int port;
    int conn;
    char buf[65536];
    size_t len;
};

static void fake_listen(struct fake_server *f)
{
    memset(f, 0, sizeof *f);
    f->conn = -1;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(f->listen_fd, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(f->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(f->listen_fd, 4), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(f->listen_fd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
}

/* Waits up to timeout_ms for pubsubd to connect. */
static bool fake_accept(struct fake_server *f, int timeout_ms)
{
    struct pollfd p = {f->listen_fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1)
        return false;
    if (f->conn >= 0)
        close(f->conn);
    f->conn = accept(f->listen_fd, NULL, NULL);
    f->len = 0;
    return f->conn >= 0;
}

/* Reads until needle appears in what pubsubd sent (or EOF/timeout). */
static bool fake_read_until(struct fake_server *f, const char *needle, int timeout_ms)
{
    long long end = h_now_ms() + timeout_ms;
    for (;;) {
        f->buf[f->len] = '\0';
        if (strstr(f->buf, needle))
            return true;
        long long left = end - h_now_ms();
        if (left <= 0 || f->len + 1 >= sizeof f->buf)
            return false;
        struct pollfd p = {f->conn, POLLIN, 0};
        if (poll(&p, 1, (int)left) != 1)
            return false;
        ssize_t n = read(f->conn, f->buf + f->len, sizeof f->buf - 1 - f->len);
        if (n <= 0)
            return false;
        f->len += (size_t)n;
    }
}

/* True when pubsubd closed the connection within timeout_ms. */
static bool fake_wait_closed(struct fake_server *f, int timeout_ms)
{
    long long end = h_now_ms() + timeout_ms;
    char tmp[4096];
    while (h_now_ms() < end) {
        struct pollfd p = {f->conn, POLLIN, 0};
        if (poll(&p, 1, (int)(end - h_now_ms())) != 1)
            return false;
        ssize_t n = read(f->conn, tmp, sizeof tmp);
        if (n == 0)
            return true;
        if (n < 0 && errno != EINTR)
            return true;
        if (n > 0 && f->len + (size_t)n < sizeof f->buf - 1) {
            memcpy(f->buf + f->len, tmp, (size_t)n);
            f->len += (size_t)n;
            f->buf[f->len] = '\0';
        }
    }
    return false;
}

static void fake_send(struct fake_server *f, const char *s)
{
    size_t n = strlen(s);
    ck_assert_int_eq(write(f->conn, s, n), (ssize_t)n);
}

/* Plays the server side of the XEP-0114 handshake; checks the digest. */
static void fake_handshake(struct fake_server *f, const char *secret_expected_ok)
{
    ck_assert_msg(fake_read_until(f, "jabber:component:accept", 5000),
                  "no stream header from pubsubd: %s", f->buf);
    ck_assert_msg(strstr(f->buf, "to='" COMPONENT "'") != NULL, "header: %s", f->buf);
    f->len = 0;
    fake_send(f, "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                 "xmlns:stream='http://etherx.jabber.org/streams' id='s3cr3tid' from='"
                 COMPONENT "'>");
    ck_assert_msg(fake_read_until(f, "</handshake>", 5000), "no handshake: %s", f->buf);
    unsigned char md[SHA_DIGEST_LENGTH];
    char input[128], hex[41];
    snprintf(input, sizeof input, "s3cr3tid%s", SECRET);
    SHA1((const unsigned char *)input, strlen(input), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    char expect[80];
    snprintf(expect, sizeof expect, "<handshake>%s</handshake>", hex);
    ck_assert_msg(strstr(f->buf, expect) != NULL, "handshake %s, expected %s", f->buf, expect);
    f->len = 0;
    if (secret_expected_ok)
        fake_send(f, "<handshake/>");
}

static struct h_proc *start_against(struct fake_server *f, const char *extra, const char *extra2)
{
    char *conninfo = h_db_create();
    char *port = h_strf("PUBSUBD_XMPP_PORT=%d", f->port);
    const char *env[] = {port, "PUBSUBD_XMPP_HOST=127.0.0.1",
                         "PUBSUBD_COMPONENT_SECRET=" SECRET, "PUBSUBD_RECONNECT_MIN_MS=100",
                         "PUBSUBD_RECONNECT_MAX_MS=400", extra, extra2, NULL};
    struct h_proc *p = h_pubsubd_start(COMPONENT, conninfo, env);
    free(port);
    free(conninfo);
    return p;
}

/* Connects, shakes hands, checks that a ping is answered on the raw
 * stream (pubsubd is really up), then sends `bad`; expects the stream to
 * close with `stream_error` (NULL: none expected), the log to contain
 * `log_needle`, and a reconnect. */
static void check_misbehaviour(const char *bad, const char *stream_error, const char *log_needle,
                               const char *extra_env, const char *extra_env2)
{
    struct fake_server f;
    fake_listen(&f);
    struct h_proc *p = start_against(&f, extra_env, extra_env2);
    ck_assert_msg(fake_accept(&f, 10000), "pubsubd did not connect");
    fake_handshake(&f, "ok");
    fake_send(&f, "<iq type='get' id='png1' from='alice@localhost/r' to='" COMPONENT
                  "'><ping xmlns='urn:xmpp:ping'/></iq>");
    if (!fake_read_until(&f, "id='png1'", 5000))
        h_fail_dump(p);
    ck_assert_msg(strstr(f.buf, "type='result'") != NULL, "ping answer: %s", f.buf);
    f.len = 0;
    fake_send(&f, bad);
    if (!fake_wait_closed(&f, 5000))
        h_fail_dump(p);
    ck_assert_msg(true, "closed");
    if (stream_error)
        ck_assert_msg(strstr(f.buf, stream_error) != NULL, "expected stream error %s, got: %s",
                      stream_error, f.buf);
    ck_assert_msg(h_proc_wait_log(p, log_needle, 3000), "log line \"%s\" missing", log_needle);
    ck_assert_msg(h_proc_running(p), "pubsubd died");
    /* It comes back. */
    ck_assert_msg(fake_accept(&f, 5000), "pubsubd did not reconnect");
    fake_handshake(&f, "ok");
    fake_send(&f, "<iq type='get' id='png2' from='alice@localhost/r' to='" COMPONENT
                  "'><ping xmlns='urn:xmpp:ping'/></iq>");
    ck_assert_msg(fake_read_until(&f, "id='png2'", 5000), "no answer after reconnect: %s", f.buf);
    close(f.conn);
    close(f.listen_fd);
    h_pubsubd_stop(p);
}

START_TEST(malformed_xml_closes_and_reconnects)
{
    check_misbehaviour("<iq type='get' id='x' from='a@localhost/r' to='" COMPONENT
                       "'><ping xmlns='urn:xmpp:ping'></iq>",
                       "not-well-formed", "not well-formed", NULL, NULL);
}
END_TEST

START_TEST(over_long_stanza_closes_and_reconnects)
{
    size_t n = 20000;
    char *big = malloc(n + 200);
    strcpy(big, "<message from='a@localhost/r' to='" COMPONENT "'><body>");
    size_t at = strlen(big);
    memset(big + at, 'x', n);
    strcpy(big + at + n, "</body></message>");
    check_misbehaviour(big, "policy-violation", "stanza larger than",
                       "PUBSUBD_MAX_STANZA_BYTES=8192", "PUBSUBD_MAX_PAYLOAD_BYTES=4096");
    free(big);
}
END_TEST

START_TEST(stream_error_from_server_reconnects)
{
    check_misbehaviour("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                       "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced</text>"
                       "</stream:error></stream:stream>",
                       NULL, "stream error from server: conflict: Replaced", NULL, NULL);
}
END_TEST

START_TEST(processing_instruction_is_refused)
{
    check_misbehaviour("<?evil data?>", "restricted-xml",
                       "processing instruction not allowed", NULL, NULL);
}
END_TEST

START_TEST(rejected_handshake_backs_off_and_retries)
{
    struct fake_server f;
    fake_listen(&f);
    struct h_proc *p = start_against(&f, NULL, NULL);
    ck_assert_msg(fake_accept(&f, 10000), "pubsubd did not connect");
    fake_handshake(&f, NULL);
    fake_send(&f, "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                  "</stream:error></stream:stream>");
    ck_assert_msg(fake_wait_closed(&f, 5000), "pubsubd kept the stream");
    ck_assert_msg(h_proc_wait_log(p, "not-authorized", 3000), "no log line for not-authorized");
    long long t0 = h_now_ms();
    ck_assert_msg(fake_accept(&f, 5000), "pubsubd did not retry");
    long long waited = h_now_ms() - t0;
    printf("reconnected after %lld ms\n", waited);
    ck_assert_msg(h_proc_running(p), "pubsubd died");
    close(f.conn);
    close(f.listen_fd);
    h_pubsubd_stop(p);
}
END_TEST

START_TEST(server_closing_the_socket_reconnects)
{
    struct fake_server f;
    fake_listen(&f);
    struct h_proc *p = start_against(&f, NULL, NULL);
    ck_assert_msg(fake_accept(&f, 10000), "pubsubd did not connect");
    fake_handshake(&f, "ok");
    close(f.conn);
    f.conn = -1;
    ck_assert_msg(fake_accept(&f, 5000), "pubsubd did not reconnect");
    ck_assert_msg(h_proc_log_contains(p, "server closed the connection"), "no log line");
    fake_handshake(&f, "ok");
    close(f.conn);
    close(f.listen_fd);
    h_pubsubd_stop(p);
}
END_TEST

static Suite *link_suite(void)
{
    Suite *s = suite_create("link");
    TCase *tc = tcase_create("fake server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, malformed_xml_closes_and_reconnects);
    tcase_add_test(tc, over_long_stanza_closes_and_reconnects);
    tcase_add_test(tc, stream_error_from_server_reconnects);
    tcase_add_test(tc, processing_instruction_is_refused);
    tcase_add_test(tc, rejected_handshake_backs_off_and_retries);
    tcase_add_test(tc, server_closing_the_socket_reconnects);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(link_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
