/*
 * dispatcher.h - drains the outbox (pubsub.event) into notifications.
 *
 * One dispatcher per process, with its own database connection (which
 * holds the node locks and LISTENs for wake-ups).  For each node it holds
 * (a session advisory lock: one writer per node across processes), it
 * sends the events after the node's delivered position to the node's
 * subscriptions, then a ping to the server (the barrier); only when the
 * ping's answer arrives is the new position committed.  See
 * docs/architecture.md, "Delivery guarantee".
 */
#ifndef PUBSUBD_DISPATCHER_H
#define PUBSUBD_DISPATCHER_H

#include <stdbool.h>

struct server;
struct dispatcher;

struct dispatcher *dispatcher_new(struct server *s);
void dispatcher_free(struct dispatcher *d);
void dispatcher_start(struct dispatcher *d);
/* Stops taking new work; in-flight batches still complete. */
void dispatcher_stop(struct dispatcher *d);
/* True when no batch waits for its barrier or commit. */
bool dispatcher_idle(const struct dispatcher *d);

/* A publish (or other event) committed on node_id. */
void dispatcher_wake(struct dispatcher *d, long long node_id);
/* Something may have committed on an unknown node (a publish whose result
 * was lost): a scan of every node.  Rare: it costs a full scan. */
void dispatcher_wake_any(struct dispatcher *d);
/* A publish of this process committed as seq on node_id, with its item id
 * and payload (borrowed, copied when kept) and the audience its statement
 * returned (borrowed; NULL: none).  Wakes the dispatcher, which may fan it
 * out without reading the database (the local hand-off, dispatcher.c). */
void dispatcher_offer(struct dispatcher *d, long long node_id, long long seq, const char *item_id,
                      const char *payload, const char *audience);

/* Link events (from the server's link handlers). */
void dispatcher_link_ready(struct dispatcher *d);
void dispatcher_link_down(struct dispatcher *d);
void dispatcher_link_drain(struct dispatcher *d);

/* An <iq type='result'/'error'> arrived with this id. */
void dispatcher_on_iq_reply(struct dispatcher *d, const char *id, bool ok);

#endif
