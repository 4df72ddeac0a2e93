/*
 * harness.c - environment, databases, child processes and XMPP clients for
 * the integration tests (see harness.h for the interface and ownership).
 *
 * Process model: every test of a Check suite runs in its own forked process
 * (CK_FORK).  Everything here is per process: the libstrophe context is made
 * lazily by the process that first needs it, and the list of live children
 * only holds children of the current process (owner pid), so a fork never
 * kills or reaps its parent's daemons.
 *
 * A child is killed when the test process ends: by the kernel when the test
 * process dies (PR_SET_PDEATHSIG, set between fork and exec), and by an
 * atexit hook when it exits normally, which is also how Check ends a failed
 * test in fork mode.  So a failed test never leaves a daemon holding its
 * component JID.
 *
 * XMPP: all clients share one xmpp_ctx_t; libstrophe only runs inside
 * h_pump(), h_wait_reply(), h_next_message() and the other waiting calls.
 * Its handlers copy what the tests need into per-client FIFO lists:
 * <message/> stanzas, and IQ replies (result/error) until asked for by id.
 * IQ requests (get/set) that reach a test client are answered with
 * service-unavailable.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H_LOG_TAIL_LINES 60
#define H_LOG_TAIL_BYTES (256 * 1024)
#define H_CONNECT_TIMEOUT_MS 10000
#define H_STOP_TIMEOUT_MS 10000
#define H_LOOP_SLICE_MS 20

/* ---- small utilities ---------------------------------------------------- */

static void *h_xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        fputs("harness: out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *h_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(h_xmalloc(n), s, n);
}

char *h_strf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fputs("harness: out of memory\n", stderr);
        abort();
    }
    return s;
}

const char *h_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        ck_abort_msg("environment variable %s is not set: run the integration "
                     "tests through scripts/test (which starts PostgreSQL and "
                     "Prosody and exports PST_*), and through `make check` "
                     "(which exports PUBSUBD_BIN and TOP_SRCDIR)", name);
    return v;
}

static uint32_t h_random32(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint32_t)getpid() * 2654435761u ^ (uint32_t)h_now_ms();
    return r;
}

char *h_uid(const char *prefix)
{
    static unsigned counter;
    return h_strf("%s-%ld-%u-%08x", prefix != NULL ? prefix : "id",
                  (long)getpid(), ++counter, (unsigned)h_random32());
}

long long h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * Reads the whole file at path into a NUL-terminated buffer the caller
 * frees, or, when tail_max > 0, only its last tail_max bytes.  Returns NULL
 * when the file cannot be read (errno set).
 */
static char *h_read_file(const char *path, size_t tail_max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    off_t off = 0;
    if (tail_max > 0 && size > tail_max) {
        off = (off_t)(size - tail_max);
        size = tail_max;
    }
    char *buf = h_xmalloc(size + 1);
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, buf + got, size - got, off + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return buf;
}

/* ---- PostgreSQL --------------------------------------------------------- */

/* Appends keyword='value' to f, quoting as libpq's conninfo syntax wants. */
static void h_conninfo_append(FILE *f, const char *keyword, const char *value)
{
    fprintf(f, "%s='", keyword);
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\'' || *p == '\\')
            fputc('\\', f);
        fputc(*p, f);
    }
    fputs("' ", f);
}

/* The conninfo base with its dbname replaced by dbname.  Caller frees. */
static char *h_conninfo_with_db(const char *base, const char *dbname)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &err);
    if (opts == NULL) {
        char *msg = h_strf("%s", err != NULL ? err : "out of memory");
        PQfreemem(err);
        ck_abort_msg("could not parse conninfo \"%s\": %s", base, msg);
    }
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f == NULL)
        abort();
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val != NULL && strcmp(o->keyword, "dbname") != 0)
            h_conninfo_append(f, o->keyword, o->val);
    }
    h_conninfo_append(f, "dbname", dbname);
    fclose(f);
    PQconninfoFree(opts);
    out[len > 0 ? len - 1 : 0] = '\0'; /* drop the trailing space */
    return out;
}

/* A connection to conninfo, or a failed test.  Caller PQfinish()es it. */
static PGconn *h_pg_connect(const char *conninfo)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        char *msg = h_strf("%s", PQerrorMessage(pg));
        PQfinish(pg);
        ck_abort_msg("could not connect to PostgreSQL \"%s\": %s", conninfo,
                     msg);
    }
    return pg;
}

/* Runs sql on pg; returns the result or fails the test (finishing pg). */
static PGresult *h_pg_exec(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        char *msg = h_strf("%s (SQLSTATE %s)",
                           res != NULL ? PQresultErrorMessage(res)
                                       : PQerrorMessage(pg),
                           state != NULL ? state : "none");
        PQclear(res);
        PQfinish(pg);
        ck_abort_msg("SQL failed: %s\n  %s", sql, msg);
    }
    return res;
}

char *h_db_create(void)
{
    static unsigned counter;
    const char *base = h_env("PST_PG_CONNINFO");
    char *name = h_strf("t_%ld_%u_%08x", (long)getpid(), ++counter,
                        (unsigned)h_random32());
    char *sql = h_strf("CREATE DATABASE %s", name);

    PGconn *pg = h_pg_connect(base);
    PQclear(h_pg_exec(pg, sql));
    PQfinish(pg);
    char *conninfo = h_conninfo_with_db(base, name);
    free(sql);
    free(name);
    return conninfo;
}

void h_db_drop(const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (opts == NULL) {
        PQfreemem(err);
        ck_abort_msg("could not parse conninfo \"%s\"", conninfo);
    }
    char *dbname = NULL;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "dbname") == 0 && o->val != NULL)
            dbname = h_xstrdup(o->val);
    }
    PQconninfoFree(opts);
    if (dbname == NULL)
        ck_abort_msg("conninfo \"%s\" names no database", conninfo);

    PGconn *pg = h_pg_connect(h_env("PST_PG_CONNINFO"));
    char *ident = PQescapeIdentifier(pg, dbname, strlen(dbname));
    char *sql = h_strf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
    PQfreemem(ident);
    PQclear(h_pg_exec(pg, sql));
    PQfinish(pg);
    free(sql);
    free(dbname);
}

PGresult *h_sql(const char *conninfo, const char *sql)
{
    PGconn *pg = h_pg_connect(conninfo);
    PGresult *res = h_pg_exec(pg, sql);
    PQfinish(pg);
    return res;
}

long long h_sql_int(const char *conninfo, const char *sql)
{
    PGresult *res = h_sql(conninfo, sql);
    if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0)) {
        int rows = PQntuples(res), cols = PQnfields(res);
        bool null = rows == 1 && cols == 1;
        PQclear(res);
        ck_abort_msg("SQL %s: expected one non-NULL value, got %d row(s) of "
                     "%d column(s)%s", sql, rows, cols, null ? " (NULL)" : "");
    }
    const char *text = PQgetvalue(res, 0, 0);
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    bool ok = errno == 0 && end != text && *end == '\0';
    char *copy = h_xstrdup(text);
    PQclear(res);
    if (!ok)
        ck_abort_msg("SQL %s: value \"%s\" is not an integer", sql, copy);
    free(copy);
    return v;
}

bool h_pg_running(void)
{
    const char *conninfo = getenv("PST_PG_CONNINFO");
    return conninfo != NULL && PQping(conninfo) == PQPING_OK;
}

/* ---- child processes ---------------------------------------------------- */

struct h_proc {
    pid_t pid;
    pid_t owner;     /* the process that forked it: only it may reap */
    char *label;     /* "pubsubd-c1.localhost": for messages */
    char *log_path;
    bool exited;
    int status;      /* when exited: 0..255 exit code, 256 + signal */
    struct h_proc *next; /* h_live_procs */
};

/* Children not yet freed, of this process or (after fork) of an ancestor. */
static struct h_proc *h_live_procs;
static bool h_atexit_registered;

static void h_live_remove(struct h_proc *p)
{
    for (struct h_proc **pp = &h_live_procs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            return;
        }
    }
}

/* Non-blocking (or blocking) waitpid; true once p has exited. */
static bool h_proc_reap(struct h_proc *p, bool block)
{
    if (p->exited)
        return true;
    if (p->owner != getpid())
        return false;
    int st = 0;
    pid_t r;
    do {
        r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    p->exited = true;
    if (r < 0)
        p->status = 256 + SIGKILL; /* not our child any more: gone */
    else if (WIFEXITED(st))
        p->status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        p->status = 256 + WTERMSIG(st);
    else
        p->status = 255;
    return true;
}

/* atexit: the test is ending, by success or failure; its children go too. */
static void h_kill_live_procs(void)
{
    for (struct h_proc *p = h_live_procs; p != NULL; p = p->next) {
        if (p->owner == getpid() && !p->exited) {
            kill(p->pid, SIGKILL);
            h_proc_reap(p, true);
        }
    }
}

static bool h_env_key_eq(const char *entry, const char *key, size_t keylen)
{
    return strncmp(entry, key, keylen) == 0 &&
           (entry[keylen] == '=' || entry[keylen] == '\0');
}

/*
 * Builds a NULL-terminated environment: environ without the entries whose
 * name starts with drop_prefix (NULL: none), then each of the NULL-terminated
 * lists sets[] in order, later "KEY=VAL" replacing earlier KEY, "KEY" alone
 * removing it.  The array is freed with free(); its strings are borrowed.
 */
static char **h_env_build(const char *drop_prefix,
                          const char *const *const *sets, size_t nsets)
{
    size_t cap = 1;
    for (char **e = environ; *e != NULL; e++)
        cap++;
    for (size_t i = 0; i < nsets; i++)
        for (const char *const *s = sets[i]; s != NULL && *s != NULL; s++)
            cap++;
    char **env = h_xmalloc(cap * sizeof *env);
    size_t n = 0;
    for (char **e = environ; *e != NULL; e++) {
        if (drop_prefix == NULL ||
            strncmp(*e, drop_prefix, strlen(drop_prefix)) != 0)
            env[n++] = *e;
    }
    for (size_t i = 0; i < nsets; i++) {
        for (const char *const *s = sets[i]; s != NULL && *s != NULL; s++) {
            const char *eq = strchr(*s, '=');
            size_t keylen = eq != NULL ? (size_t)(eq - *s) : strlen(*s);
            size_t j = 0;
            for (size_t k = 0; k < n; k++) {
                if (!h_env_key_eq(env[k], *s, keylen))
                    env[j++] = env[k];
            }
            n = j;
            if (eq != NULL)
                env[n++] = (char *)*s;
        }
    }
    env[n] = NULL;
    return env;
}

/*
 * Forks and execs argv[0] with env, output appended to
 * $PST_DIR/<label>-<pid>.log.  Borrows everything; returns a new h_proc.
 */
static struct h_proc *h_spawn(const char *label, const char *const *argv,
                              char **env)
{
    const char *dir = h_env("PST_DIR");
    char *prefix = h_strf("%s/%s-", dir, label);
    /* The child builds its log path with its own pid; room for it here,
     * since nothing is allocated between fork and exec. */
    size_t pathcap = strlen(prefix) + 32;
    char *childpath = h_xmalloc(pathcap);
    pid_t parent = getpid();

    if (!h_atexit_registered) {
        atexit(h_kill_live_procs);
        h_atexit_registered = true;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        ck_abort_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Die with the test process; close the race with its death. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        snprintf(childpath, pathcap, "%s%ld.log", prefix, (long)getpid());
        int fd = open(childpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int nullfd = open("/dev/null", O_RDONLY);
        if (fd < 0 || nullfd < 0)
            _exit(127);
        dup2(nullfd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
        if (nullfd > STDERR_FILENO)
            close(nullfd);
        /* Nothing else of the test's (client sockets above all: the server
         * must see them close when the test closes them). */
        if (close_range(STDERR_FILENO + 1, ~0U, 0) != 0) {
            for (long fdn = sysconf(_SC_OPEN_MAX) - 1; fdn > STDERR_FILENO;
                 fdn--)
                close((int)fdn);
        }
        /* Ignored signals and the mask survive exec: start clean. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        execve(argv[0], (char *const *)argv, env);
        dprintf(STDERR_FILENO, "harness: could not execute %s: %s\n", argv[0],
                strerror(errno));
        _exit(127);
    }

    struct h_proc *p = h_xmalloc(sizeof *p);
    p->pid = pid;
    p->owner = parent;
    p->label = h_xstrdup(label);
    p->log_path = h_strf("%s%ld.log", prefix, (long)pid);
    p->exited = false;
    p->status = 0;
    p->next = h_live_procs;
    h_live_procs = p;
    free(childpath);
    free(prefix);
    return p;
}

struct h_proc *h_proc_spawn(const char *label, const char *const *argv,
                            const char *const *extra_env)
{
    const char *const *sets[] = { extra_env };
    char **env = h_env_build(NULL, sets, 1);
    struct h_proc *p = h_spawn(label, argv, env);
    free(env);
    return p;
}

struct h_proc *h_pubsubd_start(const char *component_jid, const char *conninfo,
                               const char *const *extra_env)
{
    const char *bin = h_env("PUBSUBD_BIN");
    char *vars[] = {
        h_strf("PUBSUBD_XMPP_HOST=%s", h_env("PST_XMPP_HOST")),
        h_strf("PUBSUBD_XMPP_PORT=%s", h_env("PST_COMPONENT_PORT")),
        h_strf("PUBSUBD_COMPONENT_JID=%s", component_jid),
        h_strf("PUBSUBD_COMPONENT_SECRET=%s", h_env("PST_COMPONENT_SECRET")),
        h_strf("PUBSUBD_DATABASE=%s", conninfo),
        h_strf("PUBSUBD_LOG_LEVEL=debug"),
        NULL,
    };
    if (access(bin, X_OK) != 0)
        ck_abort_msg("PUBSUBD_BIN=%s is not executable: %s", bin,
                     strerror(errno));
    const char *const *sets[] = { (const char *const *)vars, extra_env };
    char **env = h_env_build("PUBSUBD_", sets, 2);
    const char *argv[] = { bin, NULL };
    char *label = h_strf("pubsubd-%s", component_jid);
    struct h_proc *p = h_spawn(label, argv, env);
    free(label);
    free(env);
    for (char **v = vars; *v != NULL; v++)
        free(*v);
    return p;
}

pid_t h_proc_pid(const struct h_proc *p)
{
    return p->pid;
}

const char *h_proc_log_path(const struct h_proc *p)
{
    return p->log_path;
}

void h_proc_signal(struct h_proc *p, int sig)
{
    if (!h_proc_reap(p, false))
        kill(p->pid, sig);
}

bool h_proc_running(struct h_proc *p)
{
    return !h_proc_reap(p, false);
}

int h_proc_wait_exit(struct h_proc *p, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    for (;;) {
        if (h_proc_reap(p, false))
            return p->status;
        if (h_now_ms() >= deadline)
            break;
        h_sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    h_proc_reap(p, true);
    return -1;
}

void h_proc_free(struct h_proc *p)
{
    if (p == NULL)
        return;
    if (p->owner == getpid() && !h_proc_reap(p, false)) {
        kill(p->pid, SIGKILL);
        h_proc_reap(p, true);
    }
    h_live_remove(p);
    free(p->label);
    free(p->log_path);
    free(p);
}

/* "exit status 3", "killed by signal 9 (Killed)", "timed out". */
static char *h_status_text(int status)
{
    if (status < 0)
        return h_strf("no exit within the time limit (killed)");
    if (status >= 256)
        return h_strf("killed by signal %d (%s)", status - 256,
                      strsignal(status - 256));
    return h_strf("exit status %d", status);
}

void h_pubsubd_stop(struct h_proc *p)
{
    h_proc_signal(p, SIGTERM);
    int status = h_proc_wait_exit(p, H_STOP_TIMEOUT_MS);
    if (status != 0) {
        h_fail_dump(p);
        char *what = h_status_text(status);
        char *label = h_xstrdup(p->label);
        h_proc_free(p);
        ck_abort_msg("%s after SIGTERM: %s, expected exit status 0 within "
                     "%d ms", label, what, H_STOP_TIMEOUT_MS);
    }
    h_proc_free(p);
}

void h_fail_dump(struct h_proc *p)
{
    if (p == NULL)
        return;
    bool running = h_proc_running(p);
    char *state = running ? h_strf("running") : h_status_text(p->status);
    char *text = h_read_file(p->log_path, H_LOG_TAIL_BYTES);
    fprintf(stderr, "---- %s (pid %ld, %s): last %d lines of %s ----\n",
            p->label, (long)p->pid, state, H_LOG_TAIL_LINES, p->log_path);
    if (text == NULL) {
        fprintf(stderr, "(could not read it: %s)\n", strerror(errno));
    } else {
        size_t len = strlen(text);
        size_t start = len;
        int lines = 0;
        if (start > 0 && text[start - 1] == '\n')
            start--;
        while (start > 0) {
            if (text[start - 1] == '\n' && ++lines == H_LOG_TAIL_LINES)
                break;
            start--;
        }
        fputs(text + start, stderr);
        if (len > 0 && text[len - 1] != '\n')
            fputc('\n', stderr);
    }
    fprintf(stderr, "---- end of %s ----\n", p->log_path);
    fflush(stderr);
    free(text);
    free(state);
}

bool h_proc_log_contains(struct h_proc *p, const char *needle)
{
    char *text = h_read_file(p->log_path, 0);
    bool found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

bool h_proc_wait_log(struct h_proc *p, const char *needle, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    for (;;) {
        bool exited = !h_proc_running(p);
        if (h_proc_log_contains(p, needle))
            return true;
        if (exited || h_now_ms() >= deadline)
            return false;
        h_sleep_ms(50);
    }
}

/* ---- the servers -------------------------------------------------------- */

int h_envctl_try(const char *cmd)
{
    const char *envsh = getenv("PST_ENV");
    if (envsh == NULL || *envsh == '\0') {
        fprintf(stderr, "harness: PST_ENV is not set, cannot run %s\n", cmd);
        return -1;
    }
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f == NULL)
        abort();
    fputc('\'', f);
    for (const char *s = envsh; *s != '\0'; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fprintf(f, "' %s", cmd);
    fclose(f);
    fflush(stdout);
    fflush(stderr);
    int st = system(out);
    free(out);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

void h_envctl(const char *cmd)
{
    h_env("PST_ENV");
    h_env("PST_DIR");
    int status = h_envctl_try(cmd);
    if (status != 0)
        ck_abort_msg("\"$PST_ENV %s\" failed (status %d)", cmd, status);
}

bool h_prosody_running(void)
{
    const char *host = getenv("PST_XMPP_HOST");
    const char *port = getenv("PST_C2S_PORT");
    if (host == NULL || port == NULL)
        return false;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return false;
    bool up = false;
    for (struct addrinfo *ai = res; ai != NULL && !up; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0)
            continue;
        up = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        close(fd);
    }
    freeaddrinfo(res);
    return up;
}

/* ---- XMPP clients ------------------------------------------------------- */

/* A FIFO of stanza references. */
struct h_stanza_node {
    xmpp_stanza_t *stanza;
    struct h_stanza_node *next;
};

struct h_stanza_fifo {
    struct h_stanza_node *head, *tail;
    int count;
};

enum h_client_state {
    H_CLIENT_CONNECTING,
    H_CLIENT_CONNECTED,
    H_CLIENT_DISCONNECTED,
};

struct h_client {
    xmpp_conn_t *conn;
    enum h_client_state state;
    char *jid;            /* bound full JID (asked-for one until bound) */
    char *bare_jid;
    int conn_error;       /* errno-style code of the end of the stream */
    char *stream_error;   /* the <stream:error/> that ended it, or NULL */
    struct h_stanza_fifo messages;
    struct h_stanza_fifo replies; /* IQ result/error not yet asked for */
};

static xmpp_ctx_t *h_ctx;
static pid_t h_ctx_pid;

/* Takes ownership of the stanza reference s. */
static void h_fifo_push(struct h_stanza_fifo *q, xmpp_stanza_t *s)
{
    struct h_stanza_node *n = h_xmalloc(sizeof *n);
    n->stanza = s;
    n->next = NULL;
    if (q->tail != NULL)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->count++;
}

/* The oldest stanza (ownership to the caller), or NULL. */
static xmpp_stanza_t *h_fifo_pop(struct h_stanza_fifo *q)
{
    struct h_stanza_node *n = q->head;
    if (n == NULL)
        return NULL;
    q->head = n->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->count--;
    xmpp_stanza_t *s = n->stanza;
    free(n);
    return s;
}

/* Removes and returns the oldest stanza whose id is id, or NULL. */
static xmpp_stanza_t *h_fifo_take_id(struct h_stanza_fifo *q, const char *id)
{
    struct h_stanza_node *prev = NULL;
    for (struct h_stanza_node *n = q->head; n != NULL;
         prev = n, n = n->next) {
        const char *sid = xmpp_stanza_get_id(n->stanza);
        if (sid == NULL || strcmp(sid, id) != 0)
            continue;
        if (prev != NULL)
            prev->next = n->next;
        else
            q->head = n->next;
        if (q->tail == n)
            q->tail = prev;
        q->count--;
        xmpp_stanza_t *s = n->stanza;
        free(n);
        return s;
    }
    return NULL;
}

static void h_fifo_clear(struct h_stanza_fifo *q)
{
    xmpp_stanza_t *s;
    while ((s = h_fifo_pop(q)) != NULL)
        xmpp_stanza_release(s);
}

static xmpp_log_level_t h_strophe_level = XMPP_LEVEL_ERROR;

static void h_strophe_log(void *userdata, xmpp_log_level_t level,
                          const char *area, const char *msg)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    (void)userdata;
    if (level < h_strophe_level)
        return;
    fprintf(stderr, "strophe %s %s: %s\n",
            (unsigned)level < 4 ? names[level] : "?", area, msg);
}

static const xmpp_log_t h_strophe_logger = { h_strophe_log, NULL };

xmpp_ctx_t *h_xmpp_ctx(void)
{
    if (h_ctx == NULL || h_ctx_pid != getpid()) {
        /* A context inherited through fork shares its parent's sockets:
         * leave it alone and make our own. */
        const char *dbg = getenv("H_XMPP_DEBUG");
        if (dbg != NULL && *dbg != '\0' && strcmp(dbg, "0") != 0)
            h_strophe_level = XMPP_LEVEL_DEBUG;
        /* A write to a stream the server closed must not kill the test. */
        signal(SIGPIPE, SIG_IGN);
        xmpp_initialize();
        h_ctx = xmpp_ctx_new(NULL, &h_strophe_logger);
        if (h_ctx == NULL)
            ck_abort_msg("xmpp_ctx_new failed");
        h_ctx_pid = getpid();
    }
    return h_ctx;
}

static void h_client_on_conn(xmpp_conn_t *conn, xmpp_conn_event_t event,
                             int error, xmpp_stream_error_t *stream_error,
                             void *userdata)
{
    struct h_client *c = userdata;
    (void)conn;
    if (event == XMPP_CONN_CONNECT) {
        c->state = H_CLIENT_CONNECTED;
        const char *bound = xmpp_conn_get_bound_jid(c->conn);
        if (bound != NULL) {
            free(c->jid);
            c->jid = h_xstrdup(bound);
        }
    } else if (event == XMPP_CONN_DISCONNECT || event == XMPP_CONN_FAIL) {
        c->state = H_CLIENT_DISCONNECTED;
        c->conn_error = error;
        if (stream_error != NULL && c->stream_error == NULL) {
            c->stream_error = stream_error->stanza != NULL
                                  ? h_stanza_to_string(stream_error->stanza)
                                  : h_strf("%s", stream_error->text != NULL
                                                     ? stream_error->text
                                                     : "stream error");
        }
    }
}

static int h_client_on_message(xmpp_conn_t *conn, xmpp_stanza_t *stanza,
                               void *userdata)
{
    struct h_client *c = userdata;
    (void)conn;
    h_fifo_push(&c->messages, xmpp_stanza_clone(stanza));
    return 1;
}

static int h_client_on_iq(xmpp_conn_t *conn, xmpp_stanza_t *stanza,
                          void *userdata)
{
    struct h_client *c = userdata;
    const char *type = xmpp_stanza_get_type(stanza);
    if (type != NULL &&
        (strcmp(type, "result") == 0 || strcmp(type, "error") == 0)) {
        if (xmpp_stanza_get_id(stanza) != NULL)
            h_fifo_push(&c->replies, xmpp_stanza_clone(stanza));
    } else if (type != NULL &&
               (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)) {
        xmpp_stanza_t *reply = xmpp_stanza_reply_error(
            stanza, "cancel", "service-unavailable", NULL);
        if (reply != NULL) {
            xmpp_send(conn, reply);
            xmpp_stanza_release(reply);
        }
    }
    return 1;
}

/* Runs the loop once for at most ms (>= 0) milliseconds. */
static void h_run_once(int ms)
{
    xmpp_run_once(h_xmpp_ctx(), (unsigned long)(ms < 0 ? 0 : ms));
}

void h_pump(int ms)
{
    long long deadline = h_now_ms() + ms;
    for (;;) {
        long long left = deadline - h_now_ms();
        if (left <= 0)
            break;
        h_run_once(left < H_LOOP_SLICE_MS ? (int)left : H_LOOP_SLICE_MS);
    }
}

static void h_client_free(struct h_client *c)
{
    if (c->conn != NULL)
        xmpp_conn_release(c->conn);
    h_fifo_clear(&c->messages);
    h_fifo_clear(&c->replies);
    free(c->jid);
    free(c->bare_jid);
    free(c->stream_error);
    free(c);
}

struct h_client *h_client_try_connect(const char *user, const char *resource,
                                      int timeout_ms)
{
    const char *domain = h_env("PST_DOMAIN");
    const char *host = h_env("PST_XMPP_HOST");
    const char *port_s = h_env("PST_C2S_PORT");
    const char *password = h_env("PST_PASSWORD");
    long port = strtol(port_s, NULL, 10);
    if (port <= 0 || port > 65535)
        ck_abort_msg("PST_C2S_PORT=%s is not a port number", port_s);
    xmpp_ctx_t *ctx = h_xmpp_ctx();
    long long deadline = h_now_ms() + timeout_ms;

    struct h_client *c = h_xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    c->state = H_CLIENT_CONNECTING;
    char *res = resource != NULL ? h_xstrdup(resource) : h_uid("h");
    c->bare_jid = h_strf("%s@%s", user, domain);
    c->jid = h_strf("%s/%s", c->bare_jid, res);
    free(res);

    c->conn = xmpp_conn_new(ctx);
    if (c->conn == NULL)
        ck_abort_msg("xmpp_conn_new failed");
    xmpp_conn_set_flags(c->conn,
                        XMPP_CONN_FLAG_DISABLE_TLS | XMPP_CONN_FLAG_DISABLE_SM);
    xmpp_conn_set_jid(c->conn, c->jid);
    xmpp_conn_set_pass(c->conn, password);
    xmpp_handler_add(c->conn, h_client_on_message, NULL, "message", NULL, c);
    xmpp_handler_add(c->conn, h_client_on_iq, NULL, "iq", NULL, c);
    if (xmpp_connect_client(c->conn, host, (unsigned short)port,
                            h_client_on_conn, c) != XMPP_EOK) {
        h_client_free(c);
        return NULL;
    }
    while (c->state == H_CLIENT_CONNECTING && h_now_ms() < deadline)
        h_run_once(H_LOOP_SLICE_MS);
    if (c->state != H_CLIENT_CONNECTED) {
        if (c->stream_error != NULL)
            fprintf(stderr, "harness: %s could not log in: %s\n", c->jid,
                    c->stream_error);
        h_client_free(c);
        return NULL;
    }

    /* Initial presence, then a round trip: the server handles a stream's
     * stanzas in order, so once the ping is answered the presence is in
     * effect (messages to the bare JID reach this resource). */
    h_send(c, "<presence/>");
    char *id = h_uid("login");
    char *ping = h_strf("<iq type='get' to='%s' id='%s'>"
                        "<ping xmlns='" H_NS_PING "'/></iq>", domain, id);
    long long left = deadline - h_now_ms();
    xmpp_stanza_t *reply = h_iq(c, ping, left > 1000 ? (int)left : 1000);
    free(ping);
    free(id);
    if (reply == NULL) {
        h_client_free(c);
        return NULL;
    }
    xmpp_stanza_release(reply);
    return c;
}

struct h_client *h_client_connect(const char *user)
{
    struct h_client *c = h_client_try_connect(user, NULL, H_CONNECT_TIMEOUT_MS);
    if (c == NULL) {
        /* Name the likely cause: an account env.sh did not create. */
        const char *users = h_env("PST_USERS");
        size_t n = strlen(user);
        bool known = false;
        for (const char *u = users; !known && (u = strstr(u, user)) != NULL;
             u += n) {
            known = (u == users || u[-1] == ' ') &&
                    (u[n] == ' ' || u[n] == '\0');
        }
        ck_abort_msg("could not log in %s@%s at %s:%s within %d ms%s (see "
                     "stderr; H_XMPP_DEBUG=1 shows the traffic)", user,
                     h_env("PST_DOMAIN"), h_env("PST_XMPP_HOST"),
                     h_env("PST_C2S_PORT"), H_CONNECT_TIMEOUT_MS,
                     known ? "" : ": the user is not in PST_USERS");
    }
    return c;
}

void h_client_disconnect(struct h_client *c)
{
    if (c == NULL)
        return;
    if (c->state != H_CLIENT_DISCONNECTED) {
        xmpp_disconnect(c->conn);
        long long deadline = h_now_ms() + 2000;
        while (c->state != H_CLIENT_DISCONNECTED && h_now_ms() < deadline)
            h_run_once(H_LOOP_SLICE_MS);
    }
    h_client_free(c);
}

const char *h_client_jid(const struct h_client *c)
{
    return c->jid;
}

const char *h_client_bare_jid(const struct h_client *c)
{
    return c->bare_jid;
}

bool h_client_connected(const struct h_client *c)
{
    return c->state == H_CLIENT_CONNECTED;
}

void h_send(struct h_client *c, const char *xml)
{
    xmpp_stanza_t *parsed = xmpp_stanza_new_from_string(h_xmpp_ctx(), xml);
    if (parsed == NULL)
        ck_abort_msg("h_send: not one well-formed XML element: %s", xml);
    xmpp_stanza_release(parsed);
    if (c->state != H_CLIENT_CONNECTED)
        ck_abort_msg("h_send: %s is not connected%s%s (sending %s)", c->jid,
                     c->stream_error != NULL ? ": " : "",
                     c->stream_error != NULL ? c->stream_error : "", xml);
    xmpp_send_raw(c->conn, xml, strlen(xml));
}

xmpp_stanza_t *h_wait_reply(struct h_client *c, const char *id,
                            int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    for (;;) {
        xmpp_stanza_t *s = h_fifo_take_id(&c->replies, id);
        if (s != NULL)
            return s;
        long long left = deadline - h_now_ms();
        if (left <= 0 || c->state != H_CLIENT_CONNECTED)
            return NULL;
        h_run_once(left < H_LOOP_SLICE_MS ? (int)left : H_LOOP_SLICE_MS);
    }
}

xmpp_stanza_t *h_iq(struct h_client *c, const char *xml, int timeout_ms)
{
    xmpp_stanza_t *parsed = xmpp_stanza_new_from_string(h_xmpp_ctx(), xml);
    if (parsed == NULL)
        ck_abort_msg("h_iq: not one well-formed XML element: %s", xml);
    const char *name = xmpp_stanza_get_name(parsed);
    const char *pid = xmpp_stanza_get_id(parsed);
    if (name == NULL || strcmp(name, "iq") != 0 || pid == NULL || *pid == '\0') {
        xmpp_stanza_release(parsed);
        ck_abort_msg("h_iq: not an <iq/> with an id: %s", xml);
    }
    char *id = h_xstrdup(pid);
    xmpp_stanza_release(parsed);
    h_send(c, xml);
    xmpp_stanza_t *reply = h_wait_reply(c, id, timeout_ms);
    free(id);
    return reply;
}

xmpp_stanza_t *h_next_message(struct h_client *c, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    if (c->messages.head == NULL)
        h_run_once(0);
    for (;;) {
        xmpp_stanza_t *s = h_fifo_pop(&c->messages);
        if (s != NULL)
            return s;
        long long left = deadline - h_now_ms();
        if (left <= 0 || c->state != H_CLIENT_CONNECTED)
            return NULL;
        h_run_once(left < H_LOOP_SLICE_MS ? (int)left : H_LOOP_SLICE_MS);
    }
}

void h_expect_no_message(struct h_proc *p, struct h_client *c, int quiet_ms, const char *why)
{
    xmpp_stanza_t *m = h_next_message(c, quiet_ms);
    if (m == NULL)
        return;
    char *text = h_stanza_to_string(m);
    if (p != NULL)
        h_fail_dump(p);
    ck_abort_msg("%s received a message %s: %s", h_client_jid(c), why, text);
}

int h_message_count(const struct h_client *c)
{
    return c->messages.count;
}

int h_wait_messages(struct h_client *c, int count, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    for (;;) {
        if (c->messages.count >= count)
            return c->messages.count;
        long long left = deadline - h_now_ms();
        if (left <= 0 || c->state != H_CLIENT_CONNECTED)
            return c->messages.count;
        h_run_once(left < H_LOOP_SLICE_MS ? (int)left : H_LOOP_SLICE_MS);
    }
}

bool h_wait_component(struct h_client *c, const char *component_jid,
                      int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    for (;;) {
        if (c->state != H_CLIENT_CONNECTED)
            return false;
        char *id = h_uid("wait");
        char *xml = h_strf("<iq type='get' to='%s' id='%s'>"
                           "<query xmlns='" H_NS_DISCO_INFO "'/></iq>",
                           component_jid, id);
        h_send(c, xml);
        long long left = deadline - h_now_ms();
        xmpp_stanza_t *reply =
            h_wait_reply(c, id, left < 100 ? 100 : left > 2000 ? 2000 : (int)left);
        bool ok = reply != NULL && xmpp_stanza_get_type(reply) != NULL &&
                  strcmp(xmpp_stanza_get_type(reply), "result") == 0;
        if (reply != NULL)
            xmpp_stanza_release(reply);
        free(xml);
        free(id);
        if (ok)
            return true;
        if (h_now_ms() >= deadline)
            return false;
        h_pump(100);
    }
}

void h_wait_service_ready(struct h_proc *p, struct h_client *c,
                          const char *component_jid, int timeout_ms)
{
    long long deadline = h_now_ms() + timeout_ms;
    if (!h_wait_component(c, component_jid, timeout_ms)) {
        h_fail_dump(p);
        ck_abort_msg("%s did not answer disco#info within %d ms", component_jid,
                     timeout_ms);
    }
    for (;;) {
        char *id = h_uid("ready");
        char *xml = h_strf("<iq type='get' to='%s' id='%s'><query xmlns='"
                           H_NS_DISCO_ITEMS "'/></iq>", component_jid, id);
        xmpp_stanza_t *r = h_iq(c, xml, 2000);
        const char *type = r != NULL ? xmpp_stanza_get_type(r) : NULL;
        bool ok = type != NULL && strcmp(type, "result") == 0;
        if (r != NULL)
            xmpp_stanza_release(r);
        free(xml);
        free(id);
        if (ok)
            return;
        if (h_now_ms() >= deadline) {
            h_fail_dump(p);
            ck_abort_msg("%s did not answer disco#items with a result within "
                         "%d ms", component_jid, timeout_ms);
        }
        h_pump(50);
    }
}

/* ---- stanzas ------------------------------------------------------------ */

char *h_stanza_to_string(xmpp_stanza_t *s)
{
    if (s == NULL)
        return h_xstrdup("(no stanza)");
    char *buf = NULL;
    size_t len = 0;
    if (xmpp_stanza_to_text(s, &buf, &len) != XMPP_EOK || buf == NULL)
        return h_xstrdup("(unprintable stanza)");
    char *out = h_xmalloc(len + 1);
    memcpy(out, buf, len);
    out[len] = '\0';
    xmpp_free(xmpp_stanza_get_context(s), buf);
    return out;
}

static bool h_matches(xmpp_stanza_t *s, const char *name, const char *ns)
{
    if (!xmpp_stanza_is_tag(s))
        return false;
    const char *sname = xmpp_stanza_get_name(s);
    const char *sns = xmpp_stanza_get_ns(s);
    if (name != NULL && (sname == NULL || strcmp(sname, name) != 0))
        return false;
    if (ns != NULL && (sns == NULL || strcmp(sns, ns) != 0))
        return false;
    return true;
}

xmpp_stanza_t *h_child(xmpp_stanza_t *s, const char *name, const char *ns)
{
    if (s == NULL)
        return NULL;
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(s); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (h_matches(k, name, ns))
            return k;
    }
    return NULL;
}

int h_count_children(xmpp_stanza_t *s, const char *name, const char *ns)
{
    int n = 0;
    if (s == NULL)
        return 0;
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(s); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (h_matches(k, name, ns))
            n++;
    }
    return n;
}

char *h_child_text(xmpp_stanza_t *s, const char *name, const char *ns)
{
    xmpp_stanza_t *k = h_child(s, name, ns);
    if (k == NULL)
        return NULL;
    char *t = xmpp_stanza_get_text(k);
    char *out = h_xstrdup(t != NULL ? t : "");
    if (t != NULL)
        xmpp_free(xmpp_stanza_get_context(k), t);
    return out;
}

const char *h_error_type(xmpp_stanza_t *s)
{
    xmpp_stanza_t *e = h_child(s, "error", NULL);
    return e != NULL ? xmpp_stanza_get_type(e) : NULL;
}

const char *h_error_condition(xmpp_stanza_t *s)
{
    xmpp_stanza_t *e = h_child(s, "error", NULL);
    if (e == NULL)
        return NULL;
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(e); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (h_matches(k, NULL, H_NS_STANZAS) &&
            strcmp(xmpp_stanza_get_name(k), "text") != 0)
            return xmpp_stanza_get_name(k);
    }
    return NULL;
}

const char *h_error_app_condition(xmpp_stanza_t *s)
{
    xmpp_stanza_t *e = h_child(s, "error", NULL);
    if (e == NULL)
        return NULL;
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(e); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        const char *ns = xmpp_stanza_is_tag(k) ? xmpp_stanza_get_ns(k) : NULL;
        if (ns != NULL && strcmp(ns, H_NS_STANZAS) != 0)
            return xmpp_stanza_get_name(k);
    }
    return NULL;
}

bool h_disco_has_feature(xmpp_stanza_t *iq, const char *var)
{
    xmpp_stanza_t *q = h_child(iq, "query", H_NS_DISCO_INFO);
    if (q == NULL)
        return false;
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(q); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        const char *v = h_matches(k, "feature", NULL)
                            ? xmpp_stanza_get_attribute(k, "var")
                            : NULL;
        if (v != NULL && strcmp(v, var) == 0)
            return true;
    }
    return false;
}

bool h_disco_has_identity(xmpp_stanza_t *iq, const char *category,
                          const char *type)
{
    xmpp_stanza_t *q = h_child(iq, "query", H_NS_DISCO_INFO);
    if (q == NULL)
        return false;
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(q); k != NULL;
         k = xmpp_stanza_get_next(k)) {
        if (!h_matches(k, "identity", NULL))
            continue;
        const char *cat = xmpp_stanza_get_attribute(k, "category");
        const char *typ = xmpp_stanza_get_attribute(k, "type");
        if (cat != NULL && typ != NULL && strcmp(cat, category) == 0 &&
            strcmp(typ, type) == 0)
            return true;
    }
    return false;
}

static bool h_str_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

void h_assert_result_at(const char *file, int line, struct h_proc *p,
                        xmpp_stanza_t *iq, const char *what)
{
    if (iq != NULL && h_str_eq(xmpp_stanza_get_type(iq), "result"))
        return;
    h_fail_dump(p);
    char *text = h_stanza_to_string(iq);
    ck_abort_msg("%s:%d: %s: expected an IQ result, got %s", file, line, what,
                 iq != NULL ? text : "no reply within the time limit");
}

void h_assert_error_at(const char *file, int line, struct h_proc *p,
                       xmpp_stanza_t *iq, const char *what, const char *type,
                       const char *condition, const char *app_condition)
{
    const char *app = h_error_app_condition(iq);
    bool ok = iq != NULL && h_str_eq(xmpp_stanza_get_type(iq), "error") &&
              h_str_eq(h_error_type(iq), type) &&
              h_str_eq(h_error_condition(iq), condition);
    if (ok && app_condition != NULL)
        ok = *app_condition == '\0' ? app == NULL : h_str_eq(app, app_condition);
    if (ok)
        return;
    h_fail_dump(p);
    char *text = h_stanza_to_string(iq);
    ck_abort_msg("%s:%d: %s: expected an IQ error type='%s' <%s/>%s%s%s, "
                 "got %s", file, line, what, type, condition,
                 app_condition == NULL ? ""
                 : *app_condition == '\0' ? " and no application condition"
                                          : " with <",
                 app_condition != NULL && *app_condition != '\0' ? app_condition
                                                                 : "",
                 app_condition != NULL && *app_condition != '\0' ? "/>" : "",
                 iq != NULL ? text : "no reply within the time limit");
}

/* ---- canonical XML, to compare stanzas exactly ------------------------ */

/* A growable string for the canonical form below. */
struct h_sbuf {
    char *data;
    size_t len, cap;
};

static void h_sbuf_put(struct h_sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = realloc(b->data, b->cap);
        ck_assert_ptr_nonnull(b->data);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void h_sbuf_puts(struct h_sbuf *b, const char *s)
{
    h_sbuf_put(b, s, strlen(s));
}

static void h_sbuf_put_escaped(struct h_sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': h_sbuf_puts(b, "&amp;"); break;
        case '<': h_sbuf_puts(b, "&lt;"); break;
        case '>': h_sbuf_puts(b, "&gt;"); break;
        case '\'': h_sbuf_puts(b, "&apos;"); break;
        default: h_sbuf_put(b, s, 1); break;
        }
    }
}

static int h_cmp_attr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Appends a canonical form of s: every element with its effective namespace
 * (declared or inherited from parent_ns), its other attributes sorted by
 * name, its children in order; text escaped.  Two elements are the same
 * XML (names, namespaces, attributes, text, order) exactly when their
 * canonical forms are equal, whatever the quoting, attribute order or
 * namespace declarations of the bytes they were parsed from.
 */
static void h_canon_into(xmpp_stanza_t *s, const char *parent_ns, struct h_sbuf *b)
{
    if (xmpp_stanza_is_text(s)) {
        const char *t = xmpp_stanza_get_text_ptr(s);
        h_sbuf_put_escaped(b, t != NULL ? t : "");
        return;
    }
    const char *ns = xmpp_stanza_get_ns(s);
    if (ns == NULL)
        ns = parent_ns;
    h_sbuf_puts(b, "<");
    h_sbuf_puts(b, xmpp_stanza_get_name(s));
    h_sbuf_puts(b, " {ns}='");
    h_sbuf_put_escaped(b, ns != NULL ? ns : "");
    h_sbuf_puts(b, "'");
    int count = xmpp_stanza_get_attribute_count(s);
    const char **attrs = calloc((size_t)count * 2 + 2, sizeof *attrs);
    ck_assert_ptr_nonnull(attrs);
    int filled = xmpp_stanza_get_attributes(s, attrs, count * 2);
    qsort(attrs, (size_t)filled / 2, 2 * sizeof *attrs, h_cmp_attr);
    for (int i = 0; i + 1 < filled; i += 2) {
        if (strcmp(attrs[i], "xmlns") == 0)
            continue;
        h_sbuf_puts(b, " ");
        h_sbuf_puts(b, attrs[i]);
        h_sbuf_puts(b, "='");
        h_sbuf_put_escaped(b, attrs[i + 1]);
        h_sbuf_puts(b, "'");
    }
    free(attrs);
    h_sbuf_puts(b, ">");
    for (xmpp_stanza_t *k = xmpp_stanza_get_children(s); k != NULL; k = xmpp_stanza_get_next(k))
        h_canon_into(k, ns, b);
    h_sbuf_puts(b, "</");
    h_sbuf_puts(b, xmpp_stanza_get_name(s));
    h_sbuf_puts(b, ">");
}

char *h_canon(xmpp_stanza_t *s, const char *parent_ns)
{
    struct h_sbuf b = {NULL, 0, 0};
    h_sbuf_puts(&b, "");
    h_canon_into(s, parent_ns, &b);
    return b.data;
}

char *h_canon_xml(const char *xml)
{
    xmpp_stanza_t *s = xmpp_stanza_new_from_string(h_xmpp_ctx(), xml);
    ck_assert_msg(s != NULL, "test bug: not one XML element: %s", xml);
    char *c = h_canon(s, NULL);
    xmpp_stanza_release(s);
    return c;
}

void h_assert_affiliation_notice(struct h_proc *p, struct h_client *c, const char *component,
                                 const char *node, const char *aff)
{
    xmpp_stanza_t *m = h_next_message(c, 10000);
    if (m == NULL) {
        h_fail_dump(p);
        ck_abort_msg("%s: no affiliation notice (%s on %s) within 10 s", h_client_jid(c), aff,
                     node);
    }
    char *want = h_strf("<pubsub xmlns='" H_NS_PUBSUB "'><affiliations node='%s'>"
                        "<affiliation jid='%s' affiliation='%s'/></affiliations></pubsub>",
                        node, h_client_bare_jid(c), aff);
    char *exp = h_canon_xml(want);
    xmpp_stanza_t *ps = h_child(m, "pubsub", H_NS_PUBSUB);
    char *got = ps != NULL ? h_canon(ps, NULL) : strdup("(none)");
    /* The server may add a <delay/> (offline storage); nothing else. */
    int others = h_count_children(m, NULL, NULL) - 1 - h_count_children(m, "delay", NULL);
    const char *from = xmpp_stanza_get_from(m);
    char *text = h_stanza_to_string(m);
    if (strcmp(got, exp) != 0 || others != 0 || from == NULL || strcmp(from, component) != 0) {
        h_fail_dump(p);
        ck_abort_msg("%s: expected the notice of affiliation %s on %s from %s, got %s",
                     h_client_jid(c), aff, node, component, text);
    }
    free(text);
    free(got);
    free(exp);
    free(want);
    xmpp_stanza_release(m);
}
