/*
 * db_pool.h - the connections that serve IQ requests, and which of them
 * each query goes to.
 *
 * Routing keeps two promises and makes one choice:
 *   - the queries of one shard (a node, or a requester's JID for requests
 *     without a node) that are in flight at the same time are on one
 *     connection, so they execute in submission order (per-node order of
 *     publishes, a subscribe before the publish that follows it);
 *   - a query never waits for a connection that is down while another is
 *     ready;
 *   - a shard with nothing in flight picks freely: writes that share a
 *     group commit (db_stmt_groups_writes) join the first connection whose
 *     next group is not yet full (db_group_max), so the waiting publishes
 *     of all nodes become one transaction and one batch; the others go to
 *     the least busy connection, from the last one down, out of the way of
 *     the writes.  More connections add parallelism only when one
 *     connection's next group is full.
 */
#ifndef PUBSUBD_DB_POOL_H
#define PUBSUBD_DB_POOL_H

#include <stdbool.h>

#include "config.h"
#include "db.h"
#include "loop.h"

/* One connection's load, as routing sees it. */
struct db_route_load {
    bool ready;
    int waiting;     /* submitted, not yet sent */
    int outstanding; /* waiting + sent */
};

/*
 * The connection (index into load[0..n-1]) for a query whose shard has
 * nothing in flight: for a grouped write (groups_writes), the first ready
 * one with fewer than group_max waiting, else the ready one with the
 * fewest outstanding (the last of equals for other queries, the first for
 * writes).  -1 when none is ready.  Pure: borrows load.
 */
int db_route_pick(const struct db_route_load *load, int n, bool groups_writes, int group_max);

struct db_shard;

struct db_pool {
    struct db_conn *conns;
    int n;
    const struct config *cfg;
    struct db_shard **shards; /* hash table: shards with queries in flight */
    unsigned nbuckets;        /* a power of two */
    int nshards;
};

void db_pool_init(struct db_pool *p, struct loop *loop, const struct config *cfg,
                  const struct db_handlers *h);
void db_pool_start(struct db_pool *p);
bool db_pool_ready(const struct db_pool *p);
/*
 * Queues stmt on the connection that routing picks for shard_key
 * (borrowed; copied when kept).  Same contract as db_conn_submit(): PS_OK
 * and cb runs exactly once later, or PS_AGAIN (that connection's queue is
 * full) / PS_ERROR (no connection ready) and cb never runs.
 */
int db_pool_submit(struct db_pool *p, const char *shard_key, enum db_stmt stmt, int nparams,
                   const char *const *params, db_cb cb, void *arg) MUSTCHECK;
int db_pool_outstanding(const struct db_pool *p);
void db_pool_close(struct db_pool *p);
void db_pool_free(struct db_pool *p);

#endif
