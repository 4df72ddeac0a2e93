/*
 * db_pool.c - the request connections and the routing of queries over
 * them (see db_pool.h for the rules).
 *
 * The pool owns its connections and a hash table of the shards that have
 * queries in flight: for each, the connection they are on and how many.
 * A shard's entry lives exactly as long as it has queries outstanding
 * (created by the first submit, freed when the last callback runs), so
 * the table holds at most one entry per outstanding query, bounded by
 * db_max_queued per connection.  Each query submitted through the pool
 * carries a small record (struct db_pool_query) that finds its shard
 * again when the query's callback runs.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "db_pool.h"
#include "log.h"

/* Buckets of the shard table: enough that chains stay short for a few
 * thousand nodes in flight at once (more only lengthens the chains). */
#define DB_POOL_BUCKETS 1024
/* The largest db_pool_size (config.c). */
#define DB_POOL_MAX 64

struct db_shard {
    struct db_shard *next; /* hash chain */
    unsigned hash;
    int conn;        /* index of the connection its queries are on */
    int outstanding; /* its queries submitted and not yet called back */
    char key[];
};

/* One query submitted through the pool; freed when its callback runs. */
struct db_pool_query {
    struct db_pool *pool;
    struct db_shard *shard; /* counts this query */
    db_cb cb;
    void *arg;
};

int db_route_pick(const struct db_route_load *load, int n, bool groups_writes, int group_max)
{
    if (groups_writes)
        for (int i = 0; i < n; i++)
            if (load[i].ready && load[i].waiting < group_max)
                return i;
    int best = -1;
    for (int k = 0; k < n; k++) {
        /* writes look from the first connection, the others from the last */
        int i = groups_writes ? k : n - 1 - k;
        if (load[i].ready && (best < 0 || load[i].outstanding < load[best].outstanding))
            best = i;
    }
    return best;
}

static unsigned db_pool_hash(const char *s)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

void db_pool_init(struct db_pool *p, struct loop *loop, const struct config *cfg,
                  const struct db_handlers *h)
{
    p->n = cfg->db_pool_size;
    p->cfg = cfg;
    p->conns = xcalloc((size_t)p->n, sizeof *p->conns);
    for (int i = 0; i < p->n; i++) {
        char label[32];
        snprintf(label, sizeof label, "request-%d", i);
        db_conn_init(&p->conns[i], loop, cfg, label, h);
    }
    p->nbuckets = DB_POOL_BUCKETS;
    p->shards = xcalloc(p->nbuckets, sizeof *p->shards);
    p->nshards = 0;
}

void db_pool_start(struct db_pool *p)
{
    for (int i = 0; i < p->n; i++)
        db_conn_start(&p->conns[i]);
}

bool db_pool_ready(const struct db_pool *p)
{
    for (int i = 0; i < p->n; i++)
        if (db_conn_ready(&p->conns[i]))
            return true;
    return false;
}

/* The shard entry of key, or NULL when it has nothing in flight.
 * Borrows key; the entry belongs to the pool. */
static struct db_shard *db_pool_shard_find(const struct db_pool *p, const char *key,
                                           unsigned hash)
{
    for (struct db_shard *sh = p->shards[hash & (p->nbuckets - 1)]; sh; sh = sh->next)
        if (sh->hash == hash && strcmp(sh->key, key) == 0)
            return sh;
    return NULL;
}

static struct db_shard *db_pool_shard_add(struct db_pool *p, const char *key, unsigned hash,
                                          int conn)
{
    size_t len = strlen(key);
    struct db_shard *sh = xmalloc(sizeof *sh + len + 1);
    memcpy(sh->key, key, len + 1);
    sh->hash = hash;
    sh->conn = conn;
    sh->outstanding = 0;
    struct db_shard **head = &p->shards[hash & (p->nbuckets - 1)];
    sh->next = *head;
    *head = sh;
    p->nshards++;
    return sh;
}

/* One query of sh is done; the entry goes with its last. */
static void db_pool_shard_release(struct db_pool *p, struct db_shard *sh)
{
    PS_ASSERT(sh->outstanding > 0);
    if (--sh->outstanding > 0)
        return;
    struct db_shard **pp = &p->shards[sh->hash & (p->nbuckets - 1)];
    while (*pp != sh)
        pp = &(*pp)->next;
    *pp = sh->next;
    p->nshards--;
    free(sh);
}

static void db_pool_query_done(void *arg, const PGresult *res, const char *error)
{
    struct db_pool_query *q = arg;
    db_cb cb = q->cb;
    void *cb_arg = q->arg;
    db_pool_shard_release(q->pool, q->shard);
    free(q);
    cb(cb_arg, res, error);
}

/* The connection for a query of a shard with nothing in flight. */
static int db_pool_route(const struct db_pool *p, enum db_stmt stmt)
{
    struct db_route_load load[DB_POOL_MAX];
    PS_ASSERT(p->n <= DB_POOL_MAX);
    for (int i = 0; i < p->n; i++) {
        const struct db_conn *c = &p->conns[i];
        load[i].ready = db_conn_ready(c);
        load[i].waiting = db_conn_waiting(c);
        load[i].outstanding = db_conn_outstanding(c);
    }
    return db_route_pick(load, p->n, db_stmt_groups_writes(stmt), p->cfg->db_group_max);
}

int db_pool_submit(struct db_pool *p, const char *shard_key, enum db_stmt stmt, int nparams,
                   const char *const *params, db_cb cb, void *arg)
{
    const char *key = shard_key ? shard_key : "";
    unsigned hash = db_pool_hash(key);
    struct db_shard *sh = db_pool_shard_find(p, key, hash);
    int conn = sh && db_conn_ready(&p->conns[sh->conn]) ? sh->conn : db_pool_route(p, stmt);
    if (conn < 0)
        return PS_ERROR;
    struct db_pool_query *q = xmalloc(sizeof *q);
    *q = (struct db_pool_query){.pool = p, .cb = cb, .arg = arg};
    int rc = db_conn_submit(&p->conns[conn], stmt, nparams, params, db_pool_query_done, q);
    if (rc != PS_OK) {
        free(q);
        return rc;
    }
    if (sh == NULL)
        sh = db_pool_shard_add(p, key, hash, conn);
    /* A shard whose connection went down while its queries were being
     * failed moves to the one that took this query. */
    sh->conn = conn;
    sh->outstanding++;
    q->shard = sh;
    return PS_OK;
}

int db_pool_outstanding(const struct db_pool *p)
{
    int n = 0;
    for (int i = 0; i < p->n; i++)
        n += db_conn_outstanding(&p->conns[i]);
    return n;
}

void db_pool_close(struct db_pool *p)
{
    for (int i = 0; i < p->n; i++)
        db_conn_close(&p->conns[i], "shutting down");
}

/* Freeing the connections runs their outstanding callbacks, which release
 * every shard entry; the table is empty when it is freed. */
void db_pool_free(struct db_pool *p)
{
    for (int i = 0; i < p->n; i++)
        db_conn_free(&p->conns[i]);
    free(p->conns);
    p->conns = NULL;
    PS_ASSERT(p->nshards == 0);
    free(p->shards);
    p->shards = NULL;
}
