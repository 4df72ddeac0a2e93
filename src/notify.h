/*
 * notify.h - the notification stanzas (XEP-0060 §7.1.2.1, §7.2.2.1,
 * §8.2.5.2, §8.4.3.1, §8.5.3.1), shared by the dispatcher and redelivery.
 *
 * The <event/> element is built once per event; only the <message/>
 * envelope (to, id) changes per subscription.
 */
#ifndef PUBSUBD_NOTIFY_H
#define PUBSUBD_NOTIFY_H

#include <stdbool.h>

#include "buf.h"

enum notify_kind {
    NOTIFY_PUBLISH = 'p',
    NOTIFY_RETRACT = 'r',
    NOTIFY_DELETE = 'd',
    NOTIFY_PURGE = 'u',
    NOTIFY_CONFIG = 'c',
};

struct notify_event {
    const char *node;       /* node name */
    long long node_id;
    long long seq;
    enum notify_kind kind;
    const char *item_id;    /* publish, retract */
    const char *payload;    /* publish; NULL: none */
    bool deliver_payloads;
};

/* The kind named by an outbox row's kind column. */
enum notify_kind notify_kind_parse(const char *kind);
/* Appends <event xmlns='...#event'>...</event>. */
void notify_event_body(struct buf *b, const struct notify_event *e);
/* Appends the envelope's start: <message from to id [type='headline']>.
 * The id ps-<node_id>-<seq>-<sub_id> is stable across redeliveries. */
void notify_message_open(struct buf *b, const char *from, const char *to,
                         const struct notify_event *e, const char *sub_id, bool headline);
/* Appends a human-readable <body/> (pubsub#include_body). */
void notify_body_text(struct buf *b, const struct notify_event *e);
/* Parses a notification id; returns 0 or -1 when id is not one of ours. */
int notify_parse_id(const char *id, long long *node_id, long long *seq, long long *sub_id);

#endif
