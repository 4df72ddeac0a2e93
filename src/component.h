/*
 * component.h - the XEP-0114 link to the XMPP server.
 *
 * pubsubd's own stream layer: a non-blocking TCP socket, the libexpat
 * stream parser, the SHA-1 handshake and a bounded output buffer.  The
 * link reconnects by itself with capped exponential backoff and jitter.
 * Writes are coalesced: link_send() appends, the loop's before_sleep hook
 * writes everything in as few syscalls as possible.
 */
#ifndef PUBSUBD_COMPONENT_H
#define PUBSUBD_COMPONENT_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "loop.h"
#include "xml_stream.h"

enum link_state {
    LINK_IDLE,        /* not started or stopped */
    LINK_BACKOFF,     /* waiting to reconnect */
    LINK_CONNECTING,  /* TCP connect in progress */
    LINK_HANDSHAKING, /* stream header sent, waiting for <handshake/> */
    LINK_READY,       /* authenticated: stanzas flow */
    LINK_CLOSING,     /* </stream:stream> sent, flushing (shutdown) */
};

struct link_handlers {
    void (*on_ready)(void *arg);
    /* The link went down; everything sent and not confirmed is lost. */
    void (*on_down)(void *arg);
    /* A stanza arrived (borrowed for the call). */
    void (*on_stanza)(void *arg, struct stanza *st);
    /* The output buffer fell below the low watermark. */
    void (*on_drain)(void *arg);
    void *arg;
};

struct link {
    struct loop *loop;
    const struct config *cfg;
    struct link_handlers h;
    enum link_state state;
    int fd;
    struct xml_stream *xs;
    struct buf out;
    size_t out_off;        /* bytes of out already written */
    bool want_drain;       /* on_drain owed when below low watermark */
    bool in_feed;          /* inside xml_stream_feed() */
    const char *failure;   /* set while parsing: close after the feed */
    struct loop_timer timer;
    int backoff_ms;
    uint64_t generation;   /* incremented on every new connection */
    uint64_t bytes_in, bytes_out, stanzas_in;
};

void link_init(struct link *l, struct loop *loop, const struct config *cfg,
               const struct link_handlers *h);
/* Starts connecting (or schedules it). */
void link_start(struct link *l);
/* Queues data.  Returns PS_OK, or PS_ERROR when the link is not ready or
 * the output buffer would exceed output_buffer_max (nothing queued). */
int link_send(struct link *l, const char *data, size_t len) MUSTCHECK;
static inline bool link_is_ready(const struct link *l)
{
    return l->state == LINK_READY;
}
/* Bytes queued and not yet written. */
static inline size_t link_pending(const struct link *l)
{
    return l->out.len - l->out_off;
}
/* Writes what is queued now (as much as the socket takes) instead of
 * just before the loop sleeps. */
void link_flush(struct link *l);
/* True when the dispatcher may queue more (below output_buffer_high). */
bool link_can_take_more(struct link *l);
/* Drops the connection (logging why) and schedules a reconnect. */
void link_fail(struct link *l, const char *why);
/* Sends </stream:stream> after what is queued; the link then closes. */
void link_shutdown(struct link *l);
/* True when nothing is left to write (used to finish a shutdown). */
bool link_flushed(const struct link *l);
void link_free(struct link *l);

#endif
