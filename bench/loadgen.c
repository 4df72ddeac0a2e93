/*
 * loadgen.c - load generator and echo component for pubsubd's benchmarks.
 *
 * Two modes in one binary:
 *
 * Load mode (default): P publisher sessions and S subscriber sessions on
 * the XMPP server's c2s port.  Publisher 0 creates M fresh nodes on the
 * pubsub service under test, every subscriber session subscribes its own
 * full JID to every node, then the publishers publish N items in total
 * (item i goes to node i mod M), keeping at most W publish IQs in flight
 * per publisher, optionally at a fixed total rate.  Each payload carries
 * the item index and the CLOCK_MONOTONIC time at which it was sent, so a
 * subscriber computes the publish->notification latency and detects
 * missing and duplicate notifications.  The run ends when every expected
 * notification arrived, or when nothing arrived for --drain-timeout
 * seconds; it prints one machine-readable "RESULT ..." line on stdout.
 *
 * Echo mode (--echo): an XEP-0114 component that answers create,
 * subscribe, publish and delete with results, keeps subscriptions in
 * memory only, and sends one notification per subscription for each
 * publish.  It stores nothing: what it reaches is the XMPP server's ceiling
 * for any pubsub component.
 *
 * Process layout (load mode): libstrophe's event loop uses select(), so a
 * process cannot hold sockets numbered 1024 or more.  The subscribers are
 * spread over forked worker processes (at most --per-worker sessions each,
 * each with its own xmpp_ctx_t); the parent runs the publishers and the
 * coordination.  Parent and workers share one anonymous MAP_SHARED region
 * (struct shared) with atomic counters and the latency samples; nothing
 * else crosses processes.
 *
 * CPU is measured from /proc/<pid>/stat (utime + stime) over the
 * measurement window (first publish sent -> last notification or drain
 * timeout): the loadgen's own processes, and every --watch NAME=PID
 * (that process and all its descendants, e.g. a postmaster and its
 * backends).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <expat.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>

#include <strophe.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_OWNER "http://jabber.org/protocol/pubsub#owner"
#define NS_PUBSUB_EVENT "http://jabber.org/protocol/pubsub#event"
#define NS_BENCH "urn:pubsubd:bench"

#define MAX_WORKERS 64
#define MAX_WATCH 8
#define MAX_SAMPLES (32LL * 1024 * 1024)

/* ------------------------------------------------------------ utilities */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen[%d]: error: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool quiet;
static void note(const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen[%d]: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        die("out of memory (%zu bytes)", n);
    return p;
}

static void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        die("out of memory");
    return p;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A growable byte buffer (the echo component's output, stanza text). */
struct buf {
    char *data;
    size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        die("out of memory");
    b->data = p;
    b->cap = cap;
}

static void buf_add(struct buf *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("vsnprintf failed");
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Appends s with the five XML special characters escaped. */
static void buf_put_escaped(struct buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '&': buf_puts(b, "&amp;"); break;
        case '\'': buf_puts(b, "&apos;"); break;
        case '"': buf_puts(b, "&quot;"); break;
        default: buf_add(b, s, 1);
        }
    }
}

/* ------------------------------------------------------------ /proc CPU */

/* One snapshot of every process: pid, parent, utime+stime in ticks. */
struct proc_entry {
    int pid, ppid;
    unsigned long long ticks;
};

struct proc_snapshot {
    struct proc_entry *e;
    size_t n;
};

/* Reads /proc/<pid>/stat; returns 0 and fills *out, or -1 (process gone). */
static int proc_read_stat(int pid, struct proc_entry *out)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* comm may contain spaces and parentheses: fields start after the last ')' */
    char *p = strrchr(line, ')');
    if (p == NULL)
        return -1;
    char state;
    int ppid;
    unsigned long long utime, stime;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &state, &ppid, &utime,
               &stime) != 4)
        return -1;
    out->pid = pid;
    out->ppid = ppid;
    out->ticks = utime + stime;
    return 0;
}

static void proc_snapshot_take(struct proc_snapshot *s)
{
    s->n = 0;
    size_t cap = 256;
    s->e = xmalloc(cap * sizeof *s->e);
    DIR *d = opendir("/proc");
    if (d == NULL)
        die("cannot open /proc: %s", strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        struct proc_entry pe;
        if (proc_read_stat(atoi(de->d_name), &pe) != 0)
            continue;
        if (s->n == cap) {
            cap *= 2;
            s->e = realloc(s->e, cap * sizeof *s->e);
            if (s->e == NULL)
                die("out of memory");
        }
        s->e[s->n++] = pe;
    }
    closedir(d);
}

static void proc_snapshot_free(struct proc_snapshot *s)
{
    free(s->e);
    s->e = NULL;
    s->n = 0;
}

/* Is pid root or a descendant of root in s? */
static bool proc_in_tree(const struct proc_snapshot *s, int pid, int root)
{
    for (int depth = 0; depth < 64 && pid > 1; depth++) {
        if (pid == root)
            return true;
        int parent = -1;
        for (size_t i = 0; i < s->n; i++)
            if (s->e[i].pid == pid) {
                parent = s->e[i].ppid;
                break;
            }
        if (parent < 0)
            return false;
        pid = parent;
    }
    return pid == root;
}

/* CPU ticks of root and all its descendants in s. */
static unsigned long long proc_tree_ticks(const struct proc_snapshot *s, int root)
{
    unsigned long long t = 0;
    for (size_t i = 0; i < s->n; i++)
        if (proc_in_tree(s, s->e[i].pid, root))
            t += s->e[i].ticks;
    return t;
}

/* Busy and total jiffies of the whole machine (all CPUs) from /proc/stat. */
static void proc_machine_ticks(unsigned long long *busy, unsigned long long *total)
{
    unsigned long long v[10] = {0};
    *busy = *total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8)
        return;
    /* user nice system idle iowait irq softirq steal (guest is inside user) */
    for (int i = 0; i < 8; i++)
        *total += v[i];
    *busy = *total - v[3] - v[4];
}

/* Resident set size of pid in KiB, or -1. */
static long proc_rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

/* ------------------------------------------------------------ options */

struct options {
    const char *host;
    int port;
    const char *domain;
    const char *service;
    const char *password;
    const char *pub_user;
    char **sub_users;
    int n_sub_users;
    int publishers, subscribers, nodes;
    long long items;
    int payload;
    int window;
    double rate;
    double drain_timeout;
    double max_time;
    double connect_timeout;
    int per_worker;
    bool no_delete;
    const char *external; /* items come from elsewhere: ready file, start on SIGUSR1 */
    const char *tag;
    const char *node_prefix;
    struct {
        char name[32];
        int pid;
    } watch[MAX_WATCH];
    int n_watch;
    /* echo mode */
    bool echo;
    const char *component_jid;
    const char *secret;
};

static struct options opt = {
    .host = "127.0.0.1",
    .port = 5222,
    .domain = "localhost",
    .service = "pubsub.localhost",
    .password = "",
    .pub_user = "publisher",
    .publishers = 1,
    .subscribers = 1,
    .nodes = 1,
    .items = 1000,
    .payload = 100,
    .window = 16,
    .rate = 0,
    .drain_timeout = 10,
    .max_time = 300,
    .connect_timeout = 60,
    .per_worker = 250,
    .tag = "",
};

static void usage(void)
{
    fputs("usage: loadgen [options]            load mode (c2s clients)\n"
          "       loadgen --echo [options]     XEP-0114 echo component\n"
          "\n"
          "common:\n"
          "  --host ADDR            server address (127.0.0.1)\n"
          "  --port N               c2s port, or the component port with --echo (5222)\n"
          "  -q, --quiet            no progress messages on stderr\n"
          "load mode:\n"
          "  --domain D             the users' domain (localhost)\n"
          "  --service JID          the pubsub service (pubsub.localhost)\n"
          "  --password PW          password of every account\n"
          "  --pub-user U           the publishers' account; resources p0..p(P-1) (publisher)\n"
          "  --sub-users LIST       subscriber accounts, comma-separated, or FMT:COUNT with one %d\n"
          "                         (bench%d:100 = bench0..bench99); subscriber j is\n"
          "                         LIST[j mod len]/s<j>\n"
          "  -P, --publishers N     publisher sessions (1)\n"
          "  -S, --subscribers N    subscriber sessions, each subscribed to every node (1)\n"
          "  -M, --nodes N          nodes; item i goes to node i mod M (1)\n"
          "  -N, --items N          items published in total (1000)\n"
          "  -B, --payload BYTES    size of the payload element (100)\n"
          "  -W, --window N         publish IQs in flight per publisher (16)\n"
          "  -R, --rate R           total items per second (0 = as fast as acks allow)\n"
          "  --drain-timeout S      give up after S s without a notification (10)\n"
          "  --max-time S           hard limit for the measured phase (300)\n"
          "  --connect-timeout S    limit for connecting and subscribing (60)\n"
          "  --per-worker N         subscriber sessions per worker process (250)\n"
          "  --node-prefix P        node names P0..P(M-1) (default: bench-<pid>-<time>-)\n"
          "  --no-delete            keep the nodes at the end\n"
          "  --external FILE        publish nothing: after setup write the node prefix to FILE,\n"
          "                         wait for SIGUSR1, then count the N items (i = 0..N-1, item\n"
          "                         i on node i mod M) that someone else publishes (a backlog)\n"
          "  --watch NAME=PID       report CPU and peak RSS of PID and its descendants\n"
          "                         (repeatable, at most 8)\n"
          "  --tag 'K=V ...'        copied into the RESULT line\n"
          "echo mode:\n"
          "  --component-jid JID    the component's domain\n"
          "  --secret S             the component secret\n",
          stderr);
    exit(2);
}

static void options_parse_sub_users(const char *arg)
{
    const char *colon = strrchr(arg, ':');
    if (strstr(arg, "%d") && colon) {
        int count = atoi(colon + 1);
        if (count < 1)
            die("--sub-users %s: bad count", arg);
        char fmt[128];
        size_t flen = (size_t)(colon - arg);
        if (flen >= sizeof fmt)
            die("--sub-users: format too long");
        memcpy(fmt, arg, flen);
        fmt[flen] = '\0';
        opt.sub_users = xcalloc((size_t)count, sizeof *opt.sub_users);
        for (int i = 0; i < count; i++) {
            char name[160];
            const char *pct = strstr(fmt, "%d");
            snprintf(name, sizeof name, "%.*s%d%s", (int)(pct - fmt), fmt, i, pct + 2);
            opt.sub_users[i] = xstrdup(name);
        }
        opt.n_sub_users = count;
        return;
    }
    char *copy = xstrdup(arg), *save = NULL;
    int cap = 8;
    opt.sub_users = xcalloc((size_t)cap, sizeof *opt.sub_users);
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (opt.n_sub_users == cap) {
            cap *= 2;
            opt.sub_users = realloc(opt.sub_users, (size_t)cap * sizeof *opt.sub_users);
            if (opt.sub_users == NULL)
                die("out of memory");
        }
        opt.sub_users[opt.n_sub_users++] = xstrdup(t);
    }
    free(copy);
}

static void options_parse(int argc, char **argv)
{
    enum {
        O_HOST = 256, O_PORT, O_DOMAIN, O_SERVICE, O_PASSWORD, O_PUB_USER, O_SUB_USERS, O_DRAIN,
        O_MAXTIME, O_CONNTIME, O_PER_WORKER, O_NO_DELETE, O_WATCH, O_TAG, O_ECHO, O_COMPONENT,
        O_SECRET, O_PREFIX, O_EXTERNAL,
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"domain", required_argument, NULL, O_DOMAIN},
        {"service", required_argument, NULL, O_SERVICE},
        {"password", required_argument, NULL, O_PASSWORD},
        {"pub-user", required_argument, NULL, O_PUB_USER},
        {"sub-users", required_argument, NULL, O_SUB_USERS},
        {"publishers", required_argument, NULL, 'P'},
        {"subscribers", required_argument, NULL, 'S'},
        {"nodes", required_argument, NULL, 'M'},
        {"items", required_argument, NULL, 'N'},
        {"payload", required_argument, NULL, 'B'},
        {"window", required_argument, NULL, 'W'},
        {"rate", required_argument, NULL, 'R'},
        {"drain-timeout", required_argument, NULL, O_DRAIN},
        {"max-time", required_argument, NULL, O_MAXTIME},
        {"connect-timeout", required_argument, NULL, O_CONNTIME},
        {"per-worker", required_argument, NULL, O_PER_WORKER},
        {"node-prefix", required_argument, NULL, O_PREFIX},
        {"no-delete", no_argument, NULL, O_NO_DELETE},
        {"external", required_argument, NULL, O_EXTERNAL},
        {"watch", required_argument, NULL, O_WATCH},
        {"tag", required_argument, NULL, O_TAG},
        {"echo", no_argument, NULL, O_ECHO},
        {"component-jid", required_argument, NULL, O_COMPONENT},
        {"secret", required_argument, NULL, O_SECRET},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "P:S:M:N:B:W:R:qh", longopts, NULL)) != -1) {
        switch (c) {
        case O_HOST: opt.host = optarg; break;
        case O_PORT: opt.port = atoi(optarg); break;
        case O_DOMAIN: opt.domain = optarg; break;
        case O_SERVICE: opt.service = optarg; break;
        case O_PASSWORD: opt.password = optarg; break;
        case O_PUB_USER: opt.pub_user = optarg; break;
        case O_SUB_USERS: options_parse_sub_users(optarg); break;
        case 'P': opt.publishers = atoi(optarg); break;
        case 'S': opt.subscribers = atoi(optarg); break;
        case 'M': opt.nodes = atoi(optarg); break;
        case 'N': opt.items = atoll(optarg); break;
        case 'B': opt.payload = atoi(optarg); break;
        case 'W': opt.window = atoi(optarg); break;
        case 'R': opt.rate = atof(optarg); break;
        case O_DRAIN: opt.drain_timeout = atof(optarg); break;
        case O_MAXTIME: opt.max_time = atof(optarg); break;
        case O_CONNTIME: opt.connect_timeout = atof(optarg); break;
        case O_PER_WORKER: opt.per_worker = atoi(optarg); break;
        case O_PREFIX: opt.node_prefix = optarg; break;
        case O_NO_DELETE: opt.no_delete = true; break;
        case O_EXTERNAL: opt.external = optarg; break;
        case O_WATCH: {
            const char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg || (size_t)(eq - optarg) >= sizeof opt.watch[0].name ||
                opt.n_watch == MAX_WATCH || atoi(eq + 1) <= 0)
                die("bad --watch %s (NAME=PID, at most %d)", optarg, MAX_WATCH);
            memcpy(opt.watch[opt.n_watch].name, optarg, (size_t)(eq - optarg));
            opt.watch[opt.n_watch].name[eq - optarg] = '\0';
            opt.watch[opt.n_watch].pid = atoi(eq + 1);
            opt.n_watch++;
            break;
        }
        case O_TAG: opt.tag = optarg; break;
        case O_ECHO: opt.echo = true; break;
        case O_COMPONENT: opt.component_jid = optarg; break;
        case O_SECRET: opt.secret = optarg; break;
        case 'q': quiet = true; break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();
    if (opt.port < 1 || opt.port > 65535)
        die("bad --port");
    if (opt.echo) {
        if (opt.component_jid == NULL || opt.secret == NULL)
            die("--echo needs --component-jid and --secret");
        return;
    }
    if (opt.publishers < 1 || opt.publishers > 64 || opt.subscribers < 0 || opt.nodes < 1 ||
        opt.items < 1 || opt.window < 1 || opt.payload < 0 || opt.rate < 0 || opt.per_worker < 1 ||
        opt.per_worker > 800)
        die("option out of range (see --help)");
    if ((opt.subscribers + opt.per_worker - 1) / opt.per_worker > MAX_WORKERS)
        die("too many subscribers for --per-worker %d (at most %d workers)", opt.per_worker,
            MAX_WORKERS);
    if (opt.n_sub_users == 0)
        options_parse_sub_users("alice,bob,carol,dave,eve,frank");
}

/* ------------------------------------------------------------ shared state */

enum phase {
    PHASE_SETUP,         /* connecting */
    PHASE_NODES_CREATED, /* workers may subscribe */
    PHASE_PUBLISHING,    /* measurement window open */
    PHASE_STOP,          /* workers report and leave */
};

struct worker_stat {
    atomic_int ready;  /* all its sessions subscribed */
    atomic_int failed; /* set with err */
    atomic_int done;   /* samples written, about to exit */
    atomic_llong received;     /* unique notifications */
    atomic_llong dups;
    atomic_llong foreign;      /* messages that were not our notifications */
    atomic_llong last_recv_ns;
    long long nsamples;
    long long sample_off;      /* first slot in shared samples */
    long long sample_cap;
    int pid;
    char err[256];
};

struct shared {
    atomic_int phase;
    atomic_llong acked; /* published items acknowledged (workers read it) */
    long long t0_ns;    /* first publish */
    int nworkers;
    struct worker_stat w[MAX_WORKERS];
};

static struct shared *sh;
static uint32_t *samples; /* latency in microseconds, MAP_SHARED */
static int sample_stride = 1;
static char node_prefix[96];

static void *shared_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap %zu bytes: %s", bytes, strerror(errno));
    return p;
}

/* The payload element for item idx sent at t: exactly opt.payload bytes
 * when that is larger than the fixed part.  Written into b (reset). */
static void payload_build(struct buf *b, long long idx, long long t)
{
    b->len = 0;
    buf_printf(b, "<x xmlns='" NS_BENCH "' i='%lld' t='%lld'>", idx, t);
    size_t fixed = b->len + 4; /* </x> */
    size_t fill = (size_t)opt.payload > fixed ? (size_t)opt.payload - fixed : 0;
    buf_reserve(b, fill + 4);
    memset(b->data + b->len, 'a', fill);
    b->len += fill;
    buf_add(b, "</x>", 4);
}

/* ------------------------------------------------------------ subscribers (worker) */

enum sub_state { SUB_IDLE, SUB_CONNECTING, SUB_ONLINE, SUB_SUBSCRIBING, SUB_READY, SUB_DEAD };

struct sub {
    xmpp_conn_t *conn;
    int index; /* global subscriber index */
    enum sub_state state;
    char jid[256];
    int next_node;   /* next node to subscribe to */
    int subscribed;  /* subscribe results received */
    uint8_t *seen;   /* bitmap of item indexes */
    bool sampled;
};

struct worker {
    int id;
    xmpp_ctx_t *ctx;
    struct sub *subs;
    int nsubs;
    int connecting, online, ready, outstanding_subscribes;
    struct worker_stat *st;
};

static void worker_fail(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void worker_fail(struct worker *w, const char *fmt, ...)
{
    if (atomic_load(&w->st->failed))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->st->err, sizeof w->st->err, fmt, ap);
    va_end(ap);
    atomic_store(&w->st->failed, 1);
}

static struct worker *the_worker;

/* Sets TCP_NODELAY on a client socket: the load generator must not add
 * Nagle delays of its own to what it measures. */
static int client_sockopt(xmpp_conn_t *conn, void *sockp)
{
    (void)conn;
    int fd = *(int *)sockp, one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 ? 0 : -1;
}

/* A notification: <message><event><items><item><x i t/></item></items></event></message>. */
static int sub_on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    struct sub *s = ud;
    struct worker *w = the_worker;
    long long now = now_ns();
    xmpp_stanza_t *ev = xmpp_stanza_get_child_by_name_and_ns(st, "event", NS_PUBSUB_EVENT);
    xmpp_stanza_t *items = ev ? xmpp_stanza_get_child_by_name(ev, "items") : NULL;
    if (items == NULL) {
        atomic_fetch_add(&w->st->foreign, 1);
        return 1;
    }
    for (xmpp_stanza_t *it = xmpp_stanza_get_children(items); it; it = xmpp_stanza_get_next(it)) {
        if (!xmpp_stanza_is_tag(it) || strcmp(xmpp_stanza_get_name(it), "item") != 0)
            continue;
        xmpp_stanza_t *x = xmpp_stanza_get_child_by_name_and_ns(it, "x", NS_BENCH);
        const char *si = x ? xmpp_stanza_get_attribute(x, "i") : NULL;
        const char *stt = x ? xmpp_stanza_get_attribute(x, "t") : NULL;
        if (si == NULL || stt == NULL) {
            atomic_fetch_add(&w->st->foreign, 1);
            continue;
        }
        long long idx = atoll(si), t = atoll(stt);
        if (opt.external) /* a backlog: latency = time since the drain began */
            t = sh->t0_ns ? sh->t0_ns : now;
        if (idx < 0 || idx >= opt.items) {
            atomic_fetch_add(&w->st->foreign, 1);
            continue;
        }
        uint8_t bit = (uint8_t)(1u << (idx & 7));
        if (s->seen[idx >> 3] & bit) {
            atomic_fetch_add(&w->st->dups, 1);
            continue;
        }
        s->seen[idx >> 3] |= bit;
        if (s->sampled && w->st->nsamples < w->st->sample_cap) {
            long long us = (now - t) / 1000;
            if (us < 0)
                us = 0;
            if (us > UINT32_MAX)
                us = UINT32_MAX;
            samples[w->st->sample_off + w->st->nsamples++] = (uint32_t)us;
        }
        atomic_fetch_add(&w->st->received, 1);
        atomic_store(&w->st->last_recv_ns, now);
    }
    return 1;
}

static void sub_send_subscribe(struct worker *w, struct sub *s)
{
    char iq[768];
    int n = snprintf(iq, sizeof iq,
                     "<iq type='set' to='%s' id='s%d'><pubsub xmlns='" NS_PUBSUB "'>"
                     "<subscribe node='%s%d' jid='%s'/></pubsub></iq>",
                     opt.service, s->next_node, node_prefix, s->next_node, s->jid);
    xmpp_send_raw(s->conn, iq, (size_t)n);
    s->next_node++;
    w->outstanding_subscribes++;
}

static int sub_on_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    struct sub *s = ud;
    struct worker *w = the_worker;
    const char *id = xmpp_stanza_get_id(st);
    const char *type = xmpp_stanza_get_type(st);
    if (id == NULL || id[0] != 's' || type == NULL)
        return 1;
    w->outstanding_subscribes--;
    if (strcmp(type, "result") != 0) {
        char *text = NULL;
        size_t len;
        if (xmpp_stanza_to_text(st, &text, &len) == 0) {
            worker_fail(w, "subscribe of %s to node %s refused: %.180s", s->jid, id + 1, text);
            xmpp_free(w->ctx, text);
        } else {
            worker_fail(w, "subscribe of %s refused", s->jid);
        }
        return 1;
    }
    s->subscribed++;
    if (s->subscribed == opt.nodes) {
        s->state = SUB_READY;
        w->ready++;
    }
    return 1;
}

static void sub_on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
                        xmpp_stream_error_t *serr, void *ud)
{
    struct sub *s = ud;
    struct worker *w = the_worker;
    if (ev == XMPP_CONN_CONNECT) {
        w->connecting--;
        w->online++;
        s->state = SUB_ONLINE;
        xmpp_send_raw_string(conn, "<presence/>");
        return;
    }
    if (s->state == SUB_CONNECTING)
        w->connecting--;
    if (s->state != SUB_DEAD && atomic_load(&sh->phase) != PHASE_STOP)
        worker_fail(w, "subscriber %s lost its connection (event %d, error %d%s%s)", s->jid,
                    (int)ev, error, serr && serr->text ? ": " : "",
                    serr && serr->text ? serr->text : "");
    s->state = SUB_DEAD;
}

static void sub_connect(struct worker *w, struct sub *s)
{
    s->conn = xmpp_conn_new(w->ctx);
    xmpp_conn_set_flags(s->conn, XMPP_CONN_FLAG_DISABLE_TLS | XMPP_CONN_FLAG_DISABLE_SM);
    xmpp_conn_set_sockopt_callback(s->conn, client_sockopt);
    xmpp_conn_set_jid(s->conn, s->jid);
    xmpp_conn_set_pass(s->conn, opt.password);
    /* Handlers are added before connecting: adding one from inside the
     * connection callback corrupts libstrophe 0.12's handler list. */
    xmpp_handler_add(s->conn, sub_on_message, NULL, "message", NULL, s);
    xmpp_handler_add(s->conn, sub_on_iq, NULL, "iq", NULL, s);
    s->state = SUB_CONNECTING;
    w->connecting++;
    if (xmpp_connect_client(s->conn, opt.host, (unsigned short)opt.port, sub_on_conn, s) !=
        XMPP_EOK) {
        w->connecting--;
        s->state = SUB_DEAD;
        worker_fail(w, "cannot start connecting %s", s->jid);
    }
}

/* The body of a worker process: subscribers [first, first + n).  Never returns. */
static void worker_main(int id, int first, int n)
{
    struct worker w = {.id = id, .nsubs = n, .st = &sh->w[id]};
    the_worker = &w;
    xmpp_initialize();
    w.ctx = xmpp_ctx_new(NULL, NULL);
    w.subs = xcalloc((size_t)n, sizeof *w.subs);
    size_t bitmap = (size_t)(opt.items + 7) / 8;
    for (int i = 0; i < n; i++) {
        struct sub *s = &w.subs[i];
        s->index = first + i;
        snprintf(s->jid, sizeof s->jid, "%s@%s/s%d", opt.sub_users[s->index % opt.n_sub_users],
                 opt.domain, s->index);
        s->seen = xcalloc(bitmap, 1);
        s->sampled = s->index % sample_stride == 0;
    }
    int next_connect = 0, next_subscribe = 0;
    bool reported_ready = false;
    for (;;) {
        int phase = atomic_load(&sh->phase);
        if (phase == PHASE_STOP || atomic_load(&w.st->failed))
            break;
        /* at most 32 logins at a time: the server's listen backlog is finite */
        while (next_connect < n && w.connecting < 32)
            sub_connect(&w, &w.subs[next_connect++]);
        if (phase >= PHASE_NODES_CREATED && w.online == n) {
            while (next_subscribe < n && w.outstanding_subscribes < 64) {
                struct sub *s = &w.subs[next_subscribe];
                sub_send_subscribe(&w, s);
                if (s->next_node == opt.nodes)
                    next_subscribe++;
            }
        }
        if (!reported_ready && w.ready == n) {
            atomic_store(&w.st->ready, 1);
            reported_ready = true;
        }
        xmpp_run_once(w.ctx, 5);
    }
    /* Report, then leave without waiting for the server. */
    atomic_store(&w.st->done, 1);
    for (int i = 0; i < n; i++)
        if (w.subs[i].conn) {
            if (w.subs[i].state != SUB_DEAD && w.subs[i].state != SUB_IDLE)
                w.subs[i].state = SUB_DEAD, xmpp_disconnect(w.subs[i].conn);
        }
    for (int i = 0; i < 50; i++)
        xmpp_run_once(w.ctx, 2);
    _exit(0);
}

/* ------------------------------------------------------------ publishers (parent) */

struct pub {
    xmpp_conn_t *conn;
    int index;
    bool online;
    long long next_k;  /* next local item number: global index index + k * P */
    long long count;   /* items this publisher publishes */
    int inflight;
    char jid[256];
};

struct parent {
    xmpp_ctx_t *ctx;
    struct pub *pubs;
    int online;
    int creates_pending, creates_failed;
    int deletes_pending;
    long long acked, errors, sent;
    long long t_last_ack;
    long long *send_ns; /* per item, for the publish->ack latency */
    uint32_t *ack_us;
    long long n_ack_us;
    char first_error[512];
    struct buf payload, iq;
    bool failed;
    char err[512];
};

static struct parent par;

static void pub_send_item(struct pub *p, long long idx)
{
    long long t = now_ns();
    payload_build(&par.payload, idx, t);
    par.iq.len = 0;
    buf_printf(&par.iq,
               "<iq type='set' to='%s' id='p%lld'><pubsub xmlns='" NS_PUBSUB "'>"
               "<publish node='%s%lld'><item id='i%lld'>",
               opt.service, idx, node_prefix, idx % opt.nodes, idx);
    buf_add(&par.iq, par.payload.data, par.payload.len);
    buf_puts(&par.iq, "</item></publish></pubsub></iq>");
    par.send_ns[idx] = t;
    if (sh->t0_ns == 0)
        sh->t0_ns = t;
    xmpp_send_raw(p->conn, par.iq.data, par.iq.len);
    p->inflight++;
    p->next_k++;
    par.sent++;
}

/* Sends what the window and the rate allow for p. */
static void pub_fill(struct pub *p)
{
    if (atomic_load(&sh->phase) != PHASE_PUBLISHING)
        return;
    long long now = 0;
    while (p->next_k < p->count && p->inflight < opt.window) {
        long long idx = p->index + p->next_k * opt.publishers;
        if (opt.rate > 0) {
            if (now == 0)
                now = now_ns();
            long long due = sh->t0_ns + (long long)((double)idx * 1e9 / opt.rate);
            if (sh->t0_ns != 0 && due > now)
                break;
        }
        pub_send_item(p, idx);
    }
}

static void stanza_text_into(xmpp_stanza_t *st, char *out, size_t outlen)
{
    char *text = NULL;
    size_t len;
    if (xmpp_stanza_to_text(st, &text, &len) == 0) {
        snprintf(out, outlen, "%s", text);
        xmpp_free(par.ctx, text);
    } else {
        snprintf(out, outlen, "(unprintable stanza)");
    }
}

static int pub_on_iq(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn;
    struct pub *p = ud;
    const char *id = xmpp_stanza_get_id(st);
    const char *type = xmpp_stanza_get_type(st);
    if (id == NULL || type == NULL)
        return 1;
    bool ok = strcmp(type, "result") == 0;
    if (id[0] == 'p') {
        long long idx = atoll(id + 1);
        p->inflight--;
        if (ok) {
            long long now = now_ns();
            par.acked++;
            atomic_store(&sh->acked, par.acked);
            par.t_last_ack = now;
            if (idx >= 0 && idx < opt.items)
                par.ack_us[par.n_ack_us++] = (uint32_t)((now - par.send_ns[idx]) / 1000);
        } else {
            par.errors++;
            if (par.first_error[0] == '\0')
                stanza_text_into(st, par.first_error, sizeof par.first_error);
        }
        pub_fill(p);
    } else if (id[0] == 'c') {
        par.creates_pending--;
        if (!ok) {
            par.creates_failed++;
            char text[400];
            stanza_text_into(st, text, sizeof text);
            snprintf(par.err, sizeof par.err, "node creation refused: %s", text);
        }
    } else if (id[0] == 'd') {
        par.deletes_pending--;
    }
    return 1;
}

static void pub_on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
                        xmpp_stream_error_t *serr, void *ud)
{
    struct pub *p = ud;
    if (ev == XMPP_CONN_CONNECT) {
        p->online = true;
        par.online++;
        xmpp_send_raw_string(conn, "<presence/>");
        return;
    }
    if (p->online)
        par.online--;
    if (!par.failed && atomic_load(&sh->phase) != PHASE_STOP) {
        par.failed = true;
        snprintf(par.err, sizeof par.err, "publisher %s lost its connection (event %d, error %d%s%s)",
                 p->jid, (int)ev, error, serr && serr->text ? ": " : "",
                 serr && serr->text ? serr->text : "");
    }
    p->online = false;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of sorted v[0..n) in milliseconds (nearest rank). */
static double quantile_ms(const uint32_t *v, long long n, double q)
{
    if (n == 0)
        return -1;
    long long r = (long long)(q * (double)n + 0.999999999);
    if (r < 1)
        r = 1;
    if (r > n)
        r = n;
    return v[r - 1] / 1000.0;
}

struct cpu_mark {
    long long t_ns;
    unsigned long long self_ticks;
    unsigned long long worker_ticks;
    unsigned long long watch_ticks[MAX_WATCH];
    unsigned long long machine_busy, machine_total;
};

static int worker_pids[MAX_WORKERS];

static void cpu_mark_take(struct cpu_mark *m)
{
    struct proc_snapshot s;
    proc_snapshot_take(&s);
    m->t_ns = now_ns();
    proc_machine_ticks(&m->machine_busy, &m->machine_total);
    struct proc_entry pe;
    m->self_ticks = proc_read_stat(getpid(), &pe) == 0 ? pe.ticks : 0;
    m->worker_ticks = 0;
    for (int i = 0; i < sh->nworkers; i++)
        if (proc_read_stat(worker_pids[i], &pe) == 0)
            m->worker_ticks += pe.ticks;
    for (int i = 0; i < opt.n_watch; i++)
        m->watch_ticks[i] = proc_tree_ticks(&s, opt.watch[i].pid);
    proc_snapshot_free(&s);
}

static volatile sig_atomic_t interrupted, go;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void on_go(int sig)
{
    (void)sig;
    go = 1;
}

static void parent_abort(const char *why)
{
    atomic_store(&sh->phase, PHASE_STOP);
    for (int i = 0; i < sh->nworkers; i++)
        waitpid(worker_pids[i], NULL, 0);
    printf("RESULT %s%sstatus=error reason=\"%s\"\n", opt.tag, *opt.tag ? " " : "", why);
    fflush(stdout);
    die("%s", why);
}

/* Runs the parent's loop until done() or the deadline; checks workers. */
static void parent_run_until(bool (*done)(void), double seconds, const char *what)
{
    long long deadline = now_ns() + (long long)(seconds * 1e9);
    while (!done()) {
        if (interrupted)
            parent_abort("interrupted");
        if (par.failed)
            parent_abort(par.err);
        for (int i = 0; i < sh->nworkers; i++)
            if (atomic_load(&sh->w[i].failed)) {
                char why[400];
                snprintf(why, sizeof why, "worker %d: %s", i, sh->w[i].err);
                parent_abort(why);
            }
        if (now_ns() > deadline) {
            char why[200];
            snprintf(why, sizeof why, "timed out after %.0f s while %s", seconds, what);
            parent_abort(why);
        }
        xmpp_run_once(par.ctx, 5);
    }
}

/* --external: tell the driver that the subscribers are in place (the node
 * prefix, written to a temporary file and renamed, so the driver never
 * reads half a line), then keep the sessions alive until SIGUSR1. */
static void external_wait(void)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", opt.external);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%s\n", node_prefix) < 0 || fclose(f) != 0 ||
        rename(tmp, opt.external) != 0)
        die("cannot write %s: %s", opt.external, strerror(errno));
    note("ready (%s), waiting for SIGUSR1", opt.external);
    while (!go) {
        if (interrupted)
            parent_abort("interrupted");
        if (par.failed)
            parent_abort(par.err);
        for (int i = 0; i < sh->nworkers; i++)
            if (atomic_load(&sh->w[i].failed)) {
                char why[400];
                snprintf(why, sizeof why, "worker %d: %s", i, sh->w[i].err);
                parent_abort(why);
            }
        xmpp_run_once(par.ctx, 50);
    }
}

static bool all_pubs_online(void) { return par.online == opt.publishers; }
static bool creates_done(void) { return par.creates_pending == 0; }
static bool workers_ready(void)
{
    for (int i = 0; i < sh->nworkers; i++)
        if (!atomic_load(&sh->w[i].ready))
            return false;
    return true;
}

static long long total_received(void)
{
    long long r = 0;
    for (int i = 0; i < sh->nworkers; i++)
        r += atomic_load(&sh->w[i].received);
    return r;
}

static int load_main(void)
{
    if (opt.node_prefix)
        snprintf(node_prefix, sizeof node_prefix, "%s", opt.node_prefix);
    else
        snprintf(node_prefix, sizeof node_prefix, "bench-%d-%lld-", (int)getpid(),
                 (long long)time(NULL));
    sh = shared_alloc(sizeof *sh);
    long long want = (long long)opt.subscribers * opt.items;
    while (want / sample_stride > MAX_SAMPLES)
        sample_stride++;
    long long nsamples_total = want / sample_stride + opt.subscribers + 1;
    samples = shared_alloc((size_t)nsamples_total * sizeof *samples);
    sh->nworkers = (opt.subscribers + opt.per_worker - 1) / opt.per_worker;

    /* Fork the subscriber workers before anything else holds sockets. */
    long long off = 0;
    for (int i = 0; i < sh->nworkers; i++) {
        int first = i * opt.per_worker;
        int n = opt.subscribers - first < opt.per_worker ? opt.subscribers - first : opt.per_worker;
        int nsampled = 0;
        for (int j = first; j < first + n; j++)
            nsampled += j % sample_stride == 0;
        sh->w[i].sample_off = off;
        sh->w[i].sample_cap = (long long)nsampled * opt.items;
        if (off + sh->w[i].sample_cap > nsamples_total)
            sh->w[i].sample_cap = nsamples_total - off;
        off += sh->w[i].sample_cap;
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0)
            worker_main(i, first, n);
        worker_pids[i] = pid;
        sh->w[i].pid = pid;
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGUSR1, on_go);
    signal(SIGPIPE, SIG_IGN);
    xmpp_initialize();
    par.ctx = xmpp_ctx_new(NULL, NULL);
    par.send_ns = xcalloc((size_t)opt.items, sizeof *par.send_ns);
    par.ack_us = xcalloc((size_t)opt.items, sizeof *par.ack_us);
    par.pubs = xcalloc((size_t)opt.publishers, sizeof *par.pubs);
    long long t_setup = now_ns();
    for (int i = 0; i < opt.publishers; i++) {
        struct pub *p = &par.pubs[i];
        p->index = i;
        p->count = opt.items > i ? (opt.items - i + opt.publishers - 1) / opt.publishers : 0;
        snprintf(p->jid, sizeof p->jid, "%s@%s/p%d", opt.pub_user, opt.domain, i);
        p->conn = xmpp_conn_new(par.ctx);
        xmpp_conn_set_flags(p->conn, XMPP_CONN_FLAG_DISABLE_TLS | XMPP_CONN_FLAG_DISABLE_SM);
        xmpp_conn_set_sockopt_callback(p->conn, client_sockopt);
        xmpp_conn_set_jid(p->conn, p->jid);
        xmpp_conn_set_pass(p->conn, opt.password);
        xmpp_handler_add(p->conn, pub_on_iq, NULL, "iq", NULL, p);
        if (xmpp_connect_client(p->conn, opt.host, (unsigned short)opt.port, pub_on_conn, p) !=
            XMPP_EOK)
            die("cannot start connecting %s", p->jid);
    }
    parent_run_until(all_pubs_online, opt.connect_timeout, "connecting the publishers");

    /* Fresh nodes, created by publisher 0 (its account owns them). */
    for (int m = 0; m < opt.nodes; m++) {
        char iq[512];
        int n = snprintf(iq, sizeof iq,
                         "<iq type='set' to='%s' id='c%d'><pubsub xmlns='" NS_PUBSUB "'>"
                         "<create node='%s%d'/></pubsub></iq>",
                         opt.service, m, node_prefix, m);
        xmpp_send_raw(par.pubs[0].conn, iq, (size_t)n);
        par.creates_pending++;
    }
    parent_run_until(creates_done, opt.connect_timeout, "creating the nodes");
    if (par.creates_failed)
        parent_abort(par.err);
    atomic_store(&sh->phase, PHASE_NODES_CREATED);
    parent_run_until(workers_ready, opt.connect_timeout, "connecting and subscribing");
    note("%d publishers and %d subscribers on %d nodes ready in %.1f s", opt.publishers,
         opt.subscribers, opt.nodes, (double)(now_ns() - t_setup) / 1e9);
    /* let the login and subscribe traffic settle before measuring */
    long long settle = now_ns() + 300000000LL;
    while (now_ns() < settle)
        xmpp_run_once(par.ctx, 10);
    if (opt.external)
        external_wait();

    /* The measurement window. */
    long long expected_per_item = opt.subscribers;
    struct cpu_mark m0, m1;
    long rss_max[MAX_WATCH] = {0};
    cpu_mark_take(&m0);
    atomic_store(&sh->phase, PHASE_PUBLISHING);
    sh->t0_ns = 0;
    if (opt.external) {
        par.acked = opt.items; /* published (and committed) by someone else */
        sh->t0_ns = now_ns();
    } else
        for (int i = 0; i < opt.publishers; i++)
            pub_fill(&par.pubs[i]);
    long long start = sh->t0_ns ? sh->t0_ns : now_ns();
    long long last_progress = now_ns(), last_seen = -1, next_sample = 0;
    const char *end_reason = "complete";
    for (;;) {
        if (interrupted)
            parent_abort("interrupted");
        if (par.failed)
            parent_abort(par.err);
        for (int i = 0; i < sh->nworkers; i++)
            if (atomic_load(&sh->w[i].failed)) {
                char why[400];
                snprintf(why, sizeof why, "worker %d: %s", i, sh->w[i].err);
                parent_abort(why);
            }
        xmpp_run_once(par.ctx, opt.rate > 0 ? 1 : 5);
        if (opt.rate > 0 && !opt.external)
            for (int i = 0; i < opt.publishers; i++)
                pub_fill(&par.pubs[i]);
        long long now = now_ns();
        if (now >= next_sample) {
            for (int i = 0; i < opt.n_watch; i++) {
                long kib = proc_rss_kib(opt.watch[i].pid);
                if (kib > rss_max[i])
                    rss_max[i] = kib;
            }
            next_sample = now + 100000000LL;
        }
        long long got = total_received();
        bool all_answered = par.acked + par.errors == opt.items;
        if (all_answered && got >= par.acked * expected_per_item)
            break;
        if (got != last_seen || par.acked + par.errors != 0) {
            if (got != last_seen) {
                last_seen = got;
                last_progress = now;
            }
        }
        if (all_answered && (double)(now - last_progress) / 1e9 > opt.drain_timeout) {
            end_reason = "drain-timeout";
            break;
        }
        if (!all_answered && par.t_last_ack && (double)(now - par.t_last_ack) / 1e9 > 30 &&
            (double)(now - last_progress) / 1e9 > 30) {
            end_reason = "ack-timeout";
            break;
        }
        if ((double)(now - start) / 1e9 > opt.max_time) {
            end_reason = "max-time";
            break;
        }
    }
    cpu_mark_take(&m1);
    atomic_store(&sh->phase, PHASE_STOP);
    for (int i = 0; i < sh->nworkers; i++)
        waitpid(worker_pids[i], NULL, 0);

    /* Gather. */
    long long received = 0, dups = 0, foreign = 0, last_recv = 0, nlat = 0;
    for (int i = 0; i < sh->nworkers; i++) {
        received += atomic_load(&sh->w[i].received);
        dups += atomic_load(&sh->w[i].dups);
        foreign += atomic_load(&sh->w[i].foreign);
        long long lr = atomic_load(&sh->w[i].last_recv_ns);
        if (lr > last_recv)
            last_recv = lr;
    }
    /* compact the samples */
    for (int i = 0; i < sh->nworkers; i++) {
        memmove(samples + nlat, samples + sh->w[i].sample_off,
                (size_t)sh->w[i].nsamples * sizeof *samples);
        nlat += sh->w[i].nsamples;
    }
    qsort(samples, (size_t)nlat, sizeof *samples, cmp_u32);
    qsort(par.ack_us, (size_t)par.n_ack_us, sizeof *par.ack_us, cmp_u32);
    long long expected = par.acked * expected_per_item;
    long long missing = expected > received ? expected - received : 0;
    double ack_window = par.t_last_ack > start ? (double)(par.t_last_ack - start) / 1e9 : 0;
    double notif_window = last_recv > start ? (double)(last_recv - start) / 1e9 : 0;
    double window = (double)(m1.t_ns - m0.t_ns) / 1e9;
    long hz = sysconf(_SC_CLK_TCK);
    double lg_cpu = (double)(m1.self_ticks - m0.self_ticks + m1.worker_ticks - m0.worker_ticks) /
                    (double)hz;

    struct buf out = {0};
    buf_printf(&out, "RESULT %s%s", opt.tag, *opt.tag ? " " : "");
    buf_printf(&out,
               "status=%s publishers=%d subscribers=%d nodes=%d items=%lld payload=%d window=%d "
               "rate=%g acked=%lld errors=%lld acks_per_s=%.1f notif_expected=%lld "
               "notif_received=%lld notif_per_s=%.1f missing=%lld dup=%lld foreign=%lld "
               "p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f max_ms=%.3f ack_p50_ms=%.3f ack_p99_ms=%.3f "
               "duration_s=%.3f loadgen_cpu_pct=%.1f loadgen_us_per_notif=%.2f "
               "machine_busy_pct=%.1f ncpu=%ld",
               end_reason, opt.publishers, opt.subscribers, opt.nodes, opt.items, opt.payload,
               opt.window, opt.rate, par.acked, par.errors,
               ack_window > 0 ? (double)par.acked / ack_window : 0, expected, received,
               notif_window > 0 ? (double)received / notif_window : 0, missing, dups, foreign,
               quantile_ms(samples, nlat, 0.50), quantile_ms(samples, nlat, 0.95),
               quantile_ms(samples, nlat, 0.99), nlat ? samples[nlat - 1] / 1000.0 : -1,
               quantile_ms(par.ack_us, par.n_ack_us, 0.50),
               quantile_ms(par.ack_us, par.n_ack_us, 0.99), window,
               window > 0 ? 100.0 * lg_cpu / window : 0,
               received ? lg_cpu * 1e6 / (double)received : 0,
               m1.machine_total > m0.machine_total
                   ? 100.0 * (double)(m1.machine_busy - m0.machine_busy) /
                         (double)(m1.machine_total - m0.machine_total)
                   : 0,
               sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 0; i < opt.n_watch; i++) {
        double cpu = (double)(m1.watch_ticks[i] - m0.watch_ticks[i]) / (double)hz;
        buf_printf(&out, " cpu_%s_pct=%.1f cpu_%s_us_per_notif=%.2f rss_max_%s_kib=%ld",
                   opt.watch[i].name, window > 0 ? 100.0 * cpu / window : 0, opt.watch[i].name,
                   received ? cpu * 1e6 / (double)received : 0, opt.watch[i].name, rss_max[i]);
    }
    if (par.first_error[0]) {
        for (char *c = par.first_error; *c; c++)
            if (*c == '"' || *c == '\n')
                *c = '\'';
        buf_printf(&out, " first_error=\"%.300s\"", par.first_error);
    }
    printf("%s\n", out.data);
    fflush(stdout);
    free(out.data);

    /* Clean up the nodes (bounded; not measured). */
    if (!opt.no_delete && par.pubs[0].online) {
        for (int m = 0; m < opt.nodes; m++) {
            char iq[512];
            int n = snprintf(iq, sizeof iq,
                             "<iq type='set' to='%s' id='d%d'><pubsub xmlns='" NS_PUBSUB_OWNER
                             "'><delete node='%s%d'/></pubsub></iq>",
                             opt.service, m, node_prefix, m);
            xmpp_send_raw(par.pubs[0].conn, iq, (size_t)n);
            par.deletes_pending++;
        }
        long long deadline = now_ns() + 10000000000LL;
        while (par.deletes_pending > 0 && now_ns() < deadline && !par.failed)
            xmpp_run_once(par.ctx, 5);
    }
    for (int i = 0; i < opt.publishers; i++)
        if (par.pubs[i].online)
            xmpp_disconnect(par.pubs[i].conn);
    for (int i = 0; i < 50 && par.online > 0; i++)
        xmpp_run_once(par.ctx, 5);
    return 0;
}

/* ------------------------------------------------------------ echo component */

/*
 * The echo component speaks XEP-0114 on a plain blocking socket with its
 * own expat parser rather than through libstrophe: libstrophe 0.12.2
 * crashes right after a component handshake (a NULL stream-management
 * state is dereferenced when the first stanza arrives), and a parser that
 * only looks at the few elements it needs, plus one write() per batch of
 * input, keeps the echo far from being the bottleneck.
 *
 * State: the nodes and their subscriber JIDs (process lifetime), the
 * stanza being parsed (reset at each top-level element), and the output
 * buffer (flushed after each read).
 */

struct echo_node {
    char *name;
    char **jids;
    int njids, cap;
};

enum echo_action { EA_NONE, EA_PUBLISH, EA_CREATE, EA_SUBSCRIBE, EA_DELETE, EA_OTHER };

static struct {
    int fd;
    XML_Parser parser;
    int depth;
    bool connected, failed;
    struct echo_node *nodes;
    int nnodes, cap;
    struct buf out;
    /* the stanza being parsed */
    bool is_iq;
    char type[16], id[256], from[512];
    enum echo_action action;
    bool owner_ns, pubsub_ns;
    char node[1024], jid[512], item_id[256];
    bool in_item;
    int payload_depth; /* depth of the payload element, 0 = none yet */
    struct buf payload;
    bool payload_open_tag; /* last thing written was an unclosed start tag */
    long long publishes, notifications;
} echo;

static struct echo_node *echo_node_find(const char *name, bool create)
{
    for (int i = 0; i < echo.nnodes; i++)
        if (strcmp(echo.nodes[i].name, name) == 0)
            return &echo.nodes[i];
    if (!create)
        return NULL;
    if (echo.nnodes == echo.cap) {
        echo.cap = echo.cap ? echo.cap * 2 : 16;
        echo.nodes = realloc(echo.nodes, (size_t)echo.cap * sizeof *echo.nodes);
        if (echo.nodes == NULL)
            die("out of memory");
    }
    struct echo_node *n = &echo.nodes[echo.nnodes++];
    memset(n, 0, sizeof *n);
    n->name = xstrdup(name);
    return n;
}

static void echo_node_delete(struct echo_node *n)
{
    free(n->name);
    for (int i = 0; i < n->njids; i++)
        free(n->jids[i]);
    free(n->jids);
    *n = echo.nodes[--echo.nnodes];
}

static const char *attr_of(const XML_Char **atts, const char *name)
{
    for (int i = 0; atts[i]; i += 2)
        if (strcmp(atts[i], name) == 0)
            return atts[i + 1];
    return NULL;
}

static void copy_attr(char *dst, size_t len, const XML_Char **atts, const char *name)
{
    const char *v = attr_of(atts, name);
    snprintf(dst, len, "%s", v ? v : "");
}

/* Appends an IQ of type to the current stanza's sender, with optional child XML. */
static void echo_reply(const char *type, const char *inner)
{
    if (echo.from[0] == '\0' || echo.id[0] == '\0')
        return;
    buf_puts(&echo.out, "<iq type='");
    buf_puts(&echo.out, type);
    buf_puts(&echo.out, "' from='");
    buf_put_escaped(&echo.out, opt.component_jid);
    buf_puts(&echo.out, "' to='");
    buf_put_escaped(&echo.out, echo.from);
    buf_puts(&echo.out, "' id='");
    buf_put_escaped(&echo.out, echo.id);
    if (inner == NULL) {
        buf_puts(&echo.out, "'/>");
        return;
    }
    buf_puts(&echo.out, "'>");
    buf_puts(&echo.out, inner);
    buf_puts(&echo.out, "</iq>");
}

static void echo_error(const char *type, const char *cond)
{
    char inner[256];
    snprintf(inner, sizeof inner,
             "<error type='%s'><%s xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>", type,
             cond);
    echo_reply("error", inner);
}

/* Answers the publish, then writes one notification per subscription. */
static void echo_do_publish(void)
{
    struct echo_node *n = echo_node_find(echo.node, false);
    if (n == NULL) {
        echo_error("cancel", "item-not-found");
        return;
    }
    if (echo.item_id[0] == '\0')
        snprintf(echo.item_id, sizeof echo.item_id, "e%lld", echo.publishes);
    struct buf inner = {0};
    buf_puts(&inner, "<pubsub xmlns='" NS_PUBSUB "'><publish node='");
    buf_put_escaped(&inner, echo.node);
    buf_puts(&inner, "'><item id='");
    buf_put_escaped(&inner, echo.item_id);
    buf_puts(&inner, "'/></publish></pubsub>");
    echo_reply("result", inner.data);
    inner.len = 0;
    echo.publishes++;
    /* The event body once, then one <message/> per subscription. */
    buf_puts(&inner, "<event xmlns='" NS_PUBSUB_EVENT "'><items node='");
    buf_put_escaped(&inner, echo.node);
    buf_puts(&inner, "'><item id='");
    buf_put_escaped(&inner, echo.item_id);
    buf_puts(&inner, "'>");
    if (echo.payload.len)
        buf_add(&inner, echo.payload.data, echo.payload.len);
    buf_puts(&inner, "</item></items></event></message>");
    for (int i = 0; i < n->njids; i++) {
        buf_puts(&echo.out, "<message type='headline' from='");
        buf_put_escaped(&echo.out, opt.component_jid);
        buf_puts(&echo.out, "' to='");
        buf_put_escaped(&echo.out, n->jids[i]);
        buf_printf(&echo.out, "' id='e%lld-%d'>", echo.publishes, i);
        buf_add(&echo.out, inner.data, inner.len);
        echo.notifications++;
    }
    free(inner.data);
}

static void echo_do_stanza(void)
{
    if (!echo.is_iq || (strcmp(echo.type, "set") != 0 && strcmp(echo.type, "get") != 0))
        return;
    switch (echo.action) {
    case EA_PUBLISH:
        echo_do_publish();
        break;
    case EA_CREATE:
        if (echo.node[0] == '\0' || echo_node_find(echo.node, false)) {
            echo_error("cancel", "conflict");
            break;
        }
        echo_node_find(echo.node, true);
        echo_reply("result", NULL);
        break;
    case EA_SUBSCRIBE: {
        struct echo_node *n = echo_node_find(echo.node, false);
        if (n == NULL || echo.jid[0] == '\0') {
            echo_error("cancel", "item-not-found");
            break;
        }
        if (n->njids == n->cap) {
            n->cap = n->cap ? n->cap * 2 : 8;
            n->jids = realloc(n->jids, (size_t)n->cap * sizeof *n->jids);
            if (n->jids == NULL)
                die("out of memory");
        }
        n->jids[n->njids++] = xstrdup(echo.jid);
        struct buf inner = {0};
        buf_puts(&inner, "<pubsub xmlns='" NS_PUBSUB "'><subscription node='");
        buf_put_escaped(&inner, echo.node);
        buf_puts(&inner, "' jid='");
        buf_put_escaped(&inner, echo.jid);
        buf_printf(&inner, "' subid='%d' subscription='subscribed'/></pubsub>", n->njids);
        echo_reply("result", inner.data);
        free(inner.data);
        break;
    }
    case EA_DELETE: {
        struct echo_node *n = echo_node_find(echo.node, false);
        if (n == NULL) {
            echo_error("cancel", "item-not-found");
            break;
        }
        echo_node_delete(n);
        echo_reply("result", NULL);
        break;
    }
    default:
        echo_error("cancel", "service-unavailable");
    }
}

static void echo_payload_close_tag(void)
{
    if (echo.payload_open_tag) {
        buf_add(&echo.payload, ">", 1);
        echo.payload_open_tag = false;
    }
}

static void XMLCALL echo_on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    (void)ud;
    int d = ++echo.depth;
    if (d == 1) {
        /* <stream:stream id='...'>: answer with the handshake */
        const char *sid = attr_of(atts, "id");
        if (sid == NULL)
            die("component stream header without id");
        char *concat = xmalloc(strlen(sid) + strlen(opt.secret) + 1);
        strcpy(concat, sid);
        strcat(concat, opt.secret);
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)concat, strlen(concat), md);
        free(concat);
        buf_puts(&echo.out, "<handshake>");
        for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
            buf_printf(&echo.out, "%02x", md[i]);
        buf_puts(&echo.out, "</handshake>");
        return;
    }
    if (d == 2) {
        echo.is_iq = strcmp(name, "iq") == 0;
        copy_attr(echo.type, sizeof echo.type, atts, "type");
        copy_attr(echo.id, sizeof echo.id, atts, "id");
        copy_attr(echo.from, sizeof echo.from, atts, "from");
        echo.action = EA_NONE;
        echo.pubsub_ns = echo.owner_ns = echo.in_item = false;
        echo.node[0] = echo.jid[0] = echo.item_id[0] = '\0';
        echo.payload_depth = 0;
        echo.payload.len = 0;
        if (strcmp(name, "handshake") == 0) {
            echo.connected = true;
            note("echo component %s connected", opt.component_jid);
        }
        if (strcmp(name, "stream:error") == 0)
            die("stream error from the server");
        return;
    }
    if (!echo.is_iq)
        return;
    if (d == 3) {
        const char *ns = attr_of(atts, "xmlns");
        if (strcmp(name, "pubsub") == 0 && ns) {
            echo.pubsub_ns = strcmp(ns, NS_PUBSUB) == 0;
            echo.owner_ns = strcmp(ns, NS_PUBSUB_OWNER) == 0;
        }
        if (!echo.pubsub_ns && !echo.owner_ns)
            echo.action = EA_OTHER;
        return;
    }
    if (d == 4 && echo.action == EA_NONE) {
        if (echo.pubsub_ns && strcmp(name, "publish") == 0)
            echo.action = EA_PUBLISH;
        else if (echo.pubsub_ns && strcmp(name, "create") == 0)
            echo.action = EA_CREATE;
        else if (echo.pubsub_ns && strcmp(name, "subscribe") == 0)
            echo.action = EA_SUBSCRIBE;
        else if (echo.owner_ns && strcmp(name, "delete") == 0)
            echo.action = EA_DELETE;
        else if (!(echo.pubsub_ns && strcmp(name, "configure") == 0))
            echo.action = EA_OTHER;
        copy_attr(echo.node, sizeof echo.node, atts, "node");
        copy_attr(echo.jid, sizeof echo.jid, atts, "jid");
        return;
    }
    if (d == 5 && echo.action == EA_PUBLISH && strcmp(name, "item") == 0) {
        echo.in_item = true;
        copy_attr(echo.item_id, sizeof echo.item_id, atts, "id");
        return;
    }
    if (d >= 6 && echo.in_item) {
        if (echo.payload_depth == 0) {
            if (echo.payload.len)
                return; /* only the first payload element */
            echo.payload_depth = d;
        }
        echo_payload_close_tag();
        buf_puts(&echo.payload, "<");
        buf_puts(&echo.payload, name);
        for (int i = 0; atts[i]; i += 2) {
            buf_printf(&echo.payload, " %s='", atts[i]);
            buf_put_escaped(&echo.payload, atts[i + 1]);
            buf_puts(&echo.payload, "'");
        }
        echo.payload_open_tag = true;
    }
}

static void XMLCALL echo_on_end(void *ud, const XML_Char *name)
{
    (void)ud;
    int d = echo.depth--;
    if (d == 1) {
        echo.failed = true; /* </stream:stream> */
        return;
    }
    if (d == 2) {
        echo_do_stanza();
        return;
    }
    if (echo.payload_depth && d >= echo.payload_depth) {
        if (echo.payload_open_tag) {
            buf_puts(&echo.payload, "/>");
            echo.payload_open_tag = false;
        } else {
            buf_printf(&echo.payload, "</%s>", name);
        }
        if (d == echo.payload_depth)
            echo.payload_depth = 0;
    }
    if (d == 5)
        echo.in_item = false;
}

static void XMLCALL echo_on_text(void *ud, const XML_Char *s, int len)
{
    (void)ud;
    if (!echo.payload_depth || echo.depth < echo.payload_depth)
        return;
    echo_payload_close_tag();
    for (int i = 0; i < len; i++) {
        switch (s[i]) {
        case '<': buf_puts(&echo.payload, "&lt;"); break;
        case '>': buf_puts(&echo.payload, "&gt;"); break;
        case '&': buf_puts(&echo.payload, "&amp;"); break;
        default: buf_add(&echo.payload, &s[i], 1);
        }
    }
}

/* Writes all of echo.out (blocking). */
static void echo_flush(void)
{
    size_t off = 0;
    while (off < echo.out.len) {
        ssize_t n = write(echo.fd, echo.out.data + off, echo.out.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write to the server: %s", strerror(errno));
        off += (size_t)n;
    }
    echo.out.len = 0;
}

static int echo_main(void)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", opt.port);
    int rc = getaddrinfo(opt.host, port, &hints, &ai);
    if (rc != 0)
        die("%s: %s", opt.host, gai_strerror(rc));
    echo.fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (echo.fd < 0 || connect(echo.fd, ai->ai_addr, ai->ai_addrlen) != 0)
        die("could not connect to %s:%d: %s", opt.host, opt.port, strerror(errno));
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(echo.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    echo.parser = XML_ParserCreate(NULL);
    XML_SetElementHandler(echo.parser, echo_on_start, echo_on_end);
    XML_SetCharacterDataHandler(echo.parser, echo_on_text);
    buf_puts(&echo.out, "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                        "xmlns:stream='http://etherx.jabber.org/streams' to='");
    buf_put_escaped(&echo.out, opt.component_jid);
    buf_puts(&echo.out, "'>");
    echo_flush();
    static char in[65536];
    while (!interrupted && !echo.failed) {
        struct pollfd pfd = {.fd = echo.fd, .events = POLLIN};
        int pr = poll(&pfd, 1, 200);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t n = read(echo.fd, in, sizeof in);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            note("echo: the server closed the stream");
            echo.failed = true;
            break;
        }
        if (XML_Parse(echo.parser, in, (int)n, 0) == XML_STATUS_ERROR)
            die("echo: XML error from the server: %s",
                XML_ErrorString(XML_GetErrorCode(echo.parser)));
        /* One write per read: the replies and notifications coalesce. */
        echo_flush();
    }
    note("echo: %lld publishes, %lld notifications", echo.publishes, echo.notifications);
    if (!echo.failed) {
        buf_puts(&echo.out, "</stream:stream>");
        echo_flush();
    }
    close(echo.fd);
    XML_ParserFree(echo.parser);
    return echo.failed && !interrupted ? 1 : 0;
}

int main(int argc, char **argv)
{
    options_parse(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    return opt.echo ? echo_main() : load_main();
}
