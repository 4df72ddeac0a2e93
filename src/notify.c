/*
 * notify.c - notification stanzas.
 */
#include "notify.h"

#include <stdio.h>
#include <string.h>

#include "stanza.h"

enum notify_kind notify_kind_parse(const char *kind)
{
    if (strcmp(kind, "publish") == 0)
        return NOTIFY_PUBLISH;
    if (strcmp(kind, "retract") == 0)
        return NOTIFY_RETRACT;
    if (strcmp(kind, "purge") == 0)
        return NOTIFY_PURGE;
    if (strcmp(kind, "config") == 0)
        return NOTIFY_CONFIG;
    return NOTIFY_DELETE;
}

void notify_event_body(struct buf *b, const struct notify_event *e)
{
    buf_puts(b, "<event xmlns='" NS_PUBSUB_EVENT "'>");
    if (e->kind == NOTIFY_DELETE || e->kind == NOTIFY_PURGE || e->kind == NOTIFY_CONFIG) {
        buf_puts(b, e->kind == NOTIFY_DELETE  ? "<delete node='"
                    : e->kind == NOTIFY_PURGE ? "<purge node='"
                                              : "<configuration node='");
        buf_put_escaped(b, e->node);
        if (e->kind == NOTIFY_CONFIG && e->deliver_payloads && e->payload) {
            /* §8.2.5.3: full payloads carry the configuration form. */
            buf_puts(b, "'>");
            buf_puts(b, e->payload);
            buf_puts(b, "</configuration></event>");
            return;
        }
        buf_puts(b, "'/></event>");
        return;
    }
    buf_puts(b, "<items node='");
    buf_put_escaped(b, e->node);
    buf_puts(b, "'>");
    if (e->kind == NOTIFY_RETRACT) {
        buf_puts(b, "<retract id='");
        buf_put_escaped(b, e->item_id ? e->item_id : "");
        buf_puts(b, "'/>");
    } else {
        buf_puts(b, "<item id='");
        buf_put_escaped(b, e->item_id ? e->item_id : "");
        if (e->deliver_payloads && e->payload) {
            buf_puts(b, "'>");
            buf_puts(b, e->payload);
            buf_puts(b, "</item>");
        } else {
            buf_puts(b, "'/>");
        }
    }
    buf_puts(b, "</items></event>");
}

void notify_message_open(struct buf *b, const char *from, const char *to,
                         const struct notify_event *e, const char *sub_id, bool headline)
{
    buf_puts(b, "<message from='");
    buf_put_escaped(b, from);
    buf_puts(b, "' to='");
    buf_put_escaped(b, to);
    buf_printf(b, "' id='ps-%lld-%lld-%s'%s>", e->node_id, e->seq, sub_id,
               headline ? " type='headline'" : "");
}

void notify_body_text(struct buf *b, const struct notify_event *e)
{
    buf_puts(b, "<body>");
    buf_put_escaped(b, e->node);
    switch (e->kind) {
    case NOTIFY_PUBLISH:
        buf_puts(b, ": new item ");
        buf_put_escaped(b, e->item_id ? e->item_id : "");
        break;
    case NOTIFY_RETRACT:
        buf_puts(b, ": item ");
        buf_put_escaped(b, e->item_id ? e->item_id : "");
        buf_puts(b, " retracted");
        break;
    case NOTIFY_PURGE:
        buf_puts(b, ": all items purged");
        break;
    case NOTIFY_CONFIG:
        buf_puts(b, ": configuration changed");
        break;
    case NOTIFY_DELETE:
        buf_puts(b, ": node deleted");
        break;
    }
    buf_puts(b, "</body>");
}

int notify_parse_id(const char *id, long long *node_id, long long *seq, long long *sub_id)
{
    int used = 0;
    if (sscanf(id, "ps-%lld-%lld-%lld%n", node_id, seq, sub_id, &used) != 3 || id[used] != '\0')
        return -1;
    return *node_id > 0 && *seq > 0 && *sub_id > 0 ? 0 : -1;
}
