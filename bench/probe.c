/*
 * probe.c - request latency of one client, and pubsubd's start-up time.
 *
 * One c2s session (libstrophe, plaintext SASL, TCP_NODELAY) that sends one
 * request at a time and times each answer, so every sample is one round
 * trip through the XMPP server and pubsubd (and, for a publish, one durable
 * commit):
 *
 *   --start-cmd CMD   after logging in, run CMD with /bin/sh (it should exec
 *                     pubsubd; its pid goes to --pid-file) and send a
 *                     disco#items (RSM max 1) to the service every 5 ms until one is
 *                     answered with a result: that time is the start-up time
 *                     (process start to serving requests).
 *   then --count rounds, after --warmup unmeasured ones, each round one
 *   publish to --pub-node (a fresh item id, a payload of --payload bytes)
 *   and one retrieval of every item of --items-node (<items/>, no max).
 *
 * --setup N: instead of measuring, create both nodes (owned by this JID;
 * one that exists already is fine) and publish items item-1..item-N to the
 * items node.
 *
 * Prints one line:
 *   PROBE startup_ms= pub_n= pub_p50_ms= pub_p90_ms= pub_p99_ms= pub_mean_ms=
 *         items_n= items_p50_ms= ... items_count=(items in the last answer)
 * Exit status 0, or 1 on any error answer or timeout.
 *
 * Process-lifetime state only; nothing is freed before exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

static struct {
    const char *host, *jid, *password, *service, *pub_node, *items_node, *start_cmd, *pid_file;
    int port, count, warmup, payload, setup_items;
    bool setup;
    double timeout;
} opt = {
    .host = "127.0.0.1",
    .port = 5222,
    .jid = "publisher@localhost/probe",
    .service = "pubsub.localhost",
    .count = 500,
    .warmup = 50,
    .payload = 100,
    .timeout = 30,
};

enum probe_phase { PH_LOGIN, PH_STARTUP, PH_SETUP, PH_ROUNDS, PH_DONE, PH_FAILED };

static struct {
    xmpp_ctx_t *ctx;
    xmpp_conn_t *conn;
    enum probe_phase phase;
    bool waiting;       /* a request is out */
    long long sent_ns;  /* when it left */
    long long next_ns;  /* startup: when to ask again */
    long long t_spawn, startup_ns;
    int round;          /* 0 .. warmup + count */
    bool in_items;      /* this round's publish is done, items next */
    double *pub_ms, *items_ms;
    int n_pub, n_items, items_count;
    int setup_step;     /* 0, 1: create the nodes; 2..: fill the items node */
    unsigned long seq;
    char err[512];
} pr;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (pr.phase == PH_FAILED)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pr.err, sizeof pr.err, fmt, ap);
    va_end(ap);
    pr.phase = PH_FAILED;
}

static int sockopt_nodelay(xmpp_conn_t *conn, void *sockp)
{
    (void)conn;
    int one = 1;
    return setsockopt(*(int *)sockp, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 ? 0 : -1;
}

static void send_text(const char *s)
{
    xmpp_send_raw(pr.conn, s, strlen(s));
    pr.sent_ns = now_ns();
    pr.waiting = true;
}

static void send_disco(void)
{
    char iq[512];
    /* One node at most (XEP-0059): still a database query, but an answer
     * of the same size with 2 nodes or 10^5. */
    snprintf(iq, sizeof iq, "<iq type='get' to='%s' id='d%lu'><query xmlns='" NS_DISCO_ITEMS
             "'><set xmlns='http://jabber.org/protocol/rsm'><max>1</max></set></query></iq>",
             opt.service, ++pr.seq);
    send_text(iq);
}

static void send_publish(void)
{
    static char *iq;
    static size_t cap;
    size_t need = (size_t)opt.payload + 1024;
    if (cap < need) {
        iq = realloc(iq, need);
        if (iq == NULL)
            abort();
        cap = need;
    }
    int n = snprintf(iq, cap,
                     "<iq type='set' to='%s' id='p%lu'><pubsub xmlns='" NS_PUBSUB "'>"
                     "<publish node='%s'><item id='probe-%d-%lu'><x xmlns='urn:pubsubd:bench'>",
                     opt.service, pr.seq + 1, opt.pub_node, (int)getpid(), pr.seq + 1);
    pr.seq++;
    int fill = opt.payload - 40;
    for (int i = 0; i < fill && (size_t)n + 64 < cap; i++)
        iq[n++] = 'a';
    snprintf(iq + n, cap - (size_t)n, "</x></item></publish></pubsub></iq>");
    send_text(iq);
}

/* --setup: create both nodes (a conflict is fine), then publish
 * --setup-items items (ids item-1..) to the items node. */
static void send_setup(void)
{
    char iq[1024];
    int k = pr.setup_step;
    if (k < 2) {
        snprintf(iq, sizeof iq, "<iq type='set' to='%s' id='c%lu'><pubsub xmlns='" NS_PUBSUB "'>"
                 "<create node='%s'/></pubsub></iq>", opt.service, ++pr.seq,
                 k == 0 ? opt.pub_node : opt.items_node);
    } else {
        snprintf(iq, sizeof iq, "<iq type='set' to='%s' id='f%lu'><pubsub xmlns='" NS_PUBSUB "'>"
                 "<publish node='%s'><item id='item-%d'><x xmlns='urn:pubsubd:bench' i='%d'>"
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                 "</x></item></publish></pubsub></iq>", opt.service, ++pr.seq, opt.items_node,
                 k - 1, k - 1);
    }
    send_text(iq);
}

static void send_items(void)
{
    char iq[1024];
    snprintf(iq, sizeof iq, "<iq type='get' to='%s' id='i%lu'><pubsub xmlns='" NS_PUBSUB "'>"
             "<items node='%s'/></pubsub></iq>", opt.service, ++pr.seq, opt.items_node);
    send_text(iq);
}

static void spawn_start_cmd(void)
{
    fflush(NULL);
    pr.t_spawn = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        fail("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", opt.start_cmd, (char *)NULL);
        _exit(127);
    }
    if (opt.pid_file) {
        FILE *f = fopen(opt.pid_file, "w");
        if (f == NULL || fprintf(f, "%d\n", (int)pid) < 0 || fclose(f) != 0)
            fail("cannot write the pid file %s", opt.pid_file);
    }
}

/* Starts the next request of the current phase. */
static void next_request(void)
{
    if (pr.phase == PH_STARTUP) {
        send_disco();
        return;
    }
    if (pr.phase == PH_SETUP) {
        if (pr.setup_step < 2 + opt.setup_items) {
            send_setup();
            return;
        }
        pr.phase = PH_DONE;
        return;
    }
    if (pr.phase != PH_ROUNDS)
        return;
    if (pr.round >= opt.warmup + opt.count) {
        pr.phase = PH_DONE;
        return;
    }
    if (pr.in_items)
        send_items();
    else
        send_publish();
}

static int count_items(xmpp_stanza_t *st)
{
    xmpp_stanza_t *ps = xmpp_stanza_get_child_by_name_and_ns(st, "pubsub", NS_PUBSUB);
    xmpp_stanza_t *items = ps ? xmpp_stanza_get_child_by_name(ps, "items") : NULL;
    int n = 0;
    for (xmpp_stanza_t *c = items ? xmpp_stanza_get_children(items) : NULL; c;
         c = xmpp_stanza_get_next(c))
        n += xmpp_stanza_is_tag(c) && strcmp(xmpp_stanza_get_name(c), "item") == 0;
    return n;
}

static int on_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    (void)ud;
    const char *id = xmpp_stanza_get_id(st), *type = xmpp_stanza_get_type(st);
    if (id == NULL || type == NULL || !pr.waiting || strtoul(id + 1, NULL, 10) != pr.seq)
        return 1;
    long long now = now_ns();
    double ms = (double)(now - pr.sent_ns) / 1e6;
    bool ok = strcmp(type, "result") == 0;
    pr.waiting = false;
    if (pr.phase == PH_STARTUP) {
        if (ok) {
            pr.startup_ns = now - pr.t_spawn;
            pr.phase = opt.setup ? PH_SETUP : PH_ROUNDS;
            next_request();
        } else {
            pr.next_ns = now + 5000000LL; /* not there yet: ask again in 5 ms */
        }
        return 1;
    }
    if (pr.phase == PH_SETUP) {
        /* a node that exists already is fine */
        xmpp_stanza_t *err = ok ? NULL : xmpp_stanza_get_child_by_name(st, "error");
        bool exists = id[0] == 'c' && err && xmpp_stanza_get_child_by_name(err, "conflict");
        if (!ok && !exists) {
            char *text = NULL;
            size_t len;
            xmpp_stanza_to_text(st, &text, &len);
            fail("setup refused: %.400s", text ? text : "?");
            return 1;
        }
        pr.setup_step++;
        next_request();
        return 1;
    }
    if (!ok) {
        char *text = NULL;
        size_t len;
        xmpp_stanza_to_text(st, &text, &len);
        fail("error answer: %.400s", text ? text : "?");
        return 1;
    }
    bool measured = pr.round >= opt.warmup;
    if (id[0] == 'p') {
        if (measured)
            pr.pub_ms[pr.n_pub++] = ms;
        pr.in_items = true;
    } else {
        if (measured)
            pr.items_ms[pr.n_items++] = ms;
        pr.items_count = count_items(st);
        pr.in_items = false;
        pr.round++;
    }
    next_request();
    return 1;
}

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error, xmpp_stream_error_t *serr,
                    void *ud)
{
    (void)ud;
    (void)serr;
    if (ev == XMPP_CONN_CONNECT) {
        xmpp_send_raw_string(conn, "<presence/>");
        if (opt.start_cmd) {
            pr.phase = PH_STARTUP;
            spawn_start_cmd();
        } else {
            pr.phase = opt.setup ? PH_SETUP : PH_ROUNDS;
        }
        next_request();
        return;
    }
    if (pr.phase != PH_DONE)
        fail("lost the connection (error %d)", error);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Prints " NAME_n= NAME_p50_ms= NAME_p90_ms= NAME_p99_ms= NAME_mean_ms=" for v[0..n). */
static void print_stats(const char *name, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    double q[3] = {0.5, 0.9, 0.99};
    printf(" %s_n=%d", name, n);
    for (int k = 0; k < 3; k++) {
        int r = (int)(q[k] * n + 0.999999);
        if (r < 1)
            r = 1;
        printf(" %s_p%d_ms=%.3f", name, (int)(q[k] * 100 + 0.5), n ? v[r - 1] : -1.0);
    }
    printf(" %s_mean_ms=%.3f", name, n ? sum / n : -1.0);
}

static void usage(void)
{
    fputs("usage: probe --port N --password PW --pub-node NODE --items-node NODE\n"
          "             [--host A] [--jid JID] [--service JID] [--count N] [--warmup N]\n"
          "             [--payload BYTES] [--timeout S] [--start-cmd CMD [--pid-file F]]\n"
          "             [--setup N]  (create both nodes, put N items into the items node, exit)\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            usage();
        i++;
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--jid")) opt.jid = v;
        else if (!strcmp(a, "--password")) opt.password = v;
        else if (!strcmp(a, "--service")) opt.service = v;
        else if (!strcmp(a, "--pub-node")) opt.pub_node = v;
        else if (!strcmp(a, "--items-node")) opt.items_node = v;
        else if (!strcmp(a, "--count")) opt.count = atoi(v);
        else if (!strcmp(a, "--warmup")) opt.warmup = atoi(v);
        else if (!strcmp(a, "--payload")) opt.payload = atoi(v);
        else if (!strcmp(a, "--timeout")) opt.timeout = atof(v);
        else if (!strcmp(a, "--start-cmd")) opt.start_cmd = v;
        else if (!strcmp(a, "--pid-file")) opt.pid_file = v;
        else if (!strcmp(a, "--setup")) { opt.setup = true; opt.setup_items = atoi(v); }
        else usage();
    }
    if (opt.password == NULL || opt.pub_node == NULL || opt.items_node == NULL || opt.count < 1 ||
        opt.warmup < 0 || opt.payload < 40)
        usage();
    pr.pub_ms = calloc((size_t)opt.count, sizeof *pr.pub_ms);
    pr.items_ms = calloc((size_t)opt.count, sizeof *pr.items_ms);
    if (pr.pub_ms == NULL || pr.items_ms == NULL)
        abort();

    xmpp_initialize();
    pr.ctx = xmpp_ctx_new(NULL, NULL);
    pr.conn = xmpp_conn_new(pr.ctx);
    xmpp_conn_set_flags(pr.conn, XMPP_CONN_FLAG_DISABLE_TLS | XMPP_CONN_FLAG_DISABLE_SM);
    xmpp_conn_set_sockopt_callback(pr.conn, sockopt_nodelay);
    xmpp_conn_set_jid(pr.conn, opt.jid);
    xmpp_conn_set_pass(pr.conn, opt.password);
    xmpp_handler_add(pr.conn, on_iq, NULL, "iq", NULL, NULL);
    if (xmpp_connect_client(pr.conn, opt.host, (unsigned short)opt.port, on_conn, NULL) != XMPP_EOK) {
        fprintf(stderr, "probe: cannot connect\n");
        return 1;
    }
    long long last_progress = now_ns();
    int last_round = -1;
    while (pr.phase != PH_DONE && pr.phase != PH_FAILED) {
        xmpp_run_once(pr.ctx, 1);
        long long now = now_ns();
        if (pr.phase == PH_STARTUP && !pr.waiting && now >= pr.next_ns)
            send_disco();
        if (pr.round != last_round || pr.phase == PH_STARTUP || pr.phase == PH_SETUP) {
            last_round = pr.round;
            last_progress = now;
        }
        if ((double)(now - last_progress) / 1e9 > opt.timeout ||
            (pr.phase == PH_STARTUP && (double)(now - pr.t_spawn) / 1e9 > opt.timeout))
            fail("timed out%s", pr.phase == PH_STARTUP ? " waiting for the service" : "");
    }
    if (pr.phase == PH_FAILED) {
        fprintf(stderr, "probe: %s\n", pr.err);
        printf("PROBE status=error\n");
        return 1;
    }
    if (opt.setup) {
        printf("PROBE status=ok setup=%d\n", pr.setup_step);
        return 0;
    }
    printf("PROBE status=ok startup_ms=%.1f", opt.start_cmd ? (double)pr.startup_ns / 1e6 : -1.0);
    print_stats("pub", pr.pub_ms, pr.n_pub);
    print_stats("items", pr.items_ms, pr.n_items);
    printf(" items_count=%d\n", pr.items_count);
    fflush(stdout);
    xmpp_disconnect(pr.conn);
    for (int i = 0; i < 50; i++)
        xmpp_run_once(pr.ctx, 2);
    return 0;
}
