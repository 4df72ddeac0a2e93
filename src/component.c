/*
 * component.c - XEP-0114 component link.
 *
 * Owns the socket, the parser and the output buffer.  State moves only
 * through link_set_state().  The parser is never freed from inside its own
 * callbacks: a failure seen while parsing is recorded in l->failure and
 * acted on when xml_stream_feed() has returned.
 */
#include "component.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ids.h"
#include "log.h"

#define LINK_HANDSHAKE_TIMEOUT_MS 10000
#define LINK_READ_CHUNK 65536

static const char *const link_state_names[] = {
    "idle", "backoff", "connecting", "handshaking", "ready", "closing",
};

static void link_on_io(struct loop *loop, int fd, int events, void *arg);
static void link_timer_fired(struct loop *loop, void *arg);
static void link_flush_hook(struct loop *loop, void *arg);

static void link_set_state(struct link *l, enum link_state s)
{
    if (l->state != s)
        log_debug("component link: %s -> %s", link_state_names[l->state],
                  link_state_names[s]);
    l->state = s;
}

void link_init(struct link *l, struct loop *loop, const struct config *cfg,
               const struct link_handlers *h)
{
    memset(l, 0, sizeof *l);
    l->loop = loop;
    l->cfg = cfg;
    l->h = *h;
    l->fd = -1;
    l->backoff_ms = cfg->reconnect_min_ms;
    loop_add_before_sleep(loop, link_flush_hook, l);
}

/* Closes the socket and parser; no callbacks. */
static void link_teardown(struct link *l)
{
    if (l->fd >= 0) {
        loop_fd_remove(l->loop, l->fd);
        close(l->fd);
        l->fd = -1;
    }
    xml_stream_free(l->xs);
    l->xs = NULL;
    buf_reset(&l->out);
    l->out_off = 0;
    l->failure = NULL;
    loop_timer_disarm(l->loop, &l->timer);
}

static void link_schedule_reconnect(struct link *l)
{
    unsigned char r = 0;
    char hex[3];
    if (ids_random_hex(hex, 1) == 0)
        r = (unsigned char)strtol(hex, NULL, 16);
    /* Full delay between 50% and 100% of the backoff (jitter). */
    int delay = l->backoff_ms / 2 + (int)((long)l->backoff_ms * r / 512);
    if (delay < 1)
        delay = 1;
    link_set_state(l, LINK_BACKOFF);
    log_info("component link: reconnecting to %s:%d in %d ms",
             l->cfg->xmpp_host, l->cfg->xmpp_port, delay);
    loop_timer_arm(l->loop, &l->timer, (uint64_t)delay, link_timer_fired, l);
    l->backoff_ms *= 2;
    if (l->backoff_ms > l->cfg->reconnect_max_ms)
        l->backoff_ms = l->cfg->reconnect_max_ms;
}

void link_fail(struct link *l, const char *why)
{
    if (l->state == LINK_IDLE || l->state == LINK_BACKOFF)
        return;
    if (l->in_feed) {
        if (l->failure == NULL)
            l->failure = why;
        return;
    }
    bool was_ready = l->state == LINK_READY || l->state == LINK_CLOSING;
    bool closing = l->state == LINK_CLOSING;
    log_warn("component link to %s:%d closed: %s", l->cfg->xmpp_host,
             l->cfg->xmpp_port, why);
    link_teardown(l);
    if (closing) {
        link_set_state(l, LINK_IDLE);
    } else {
        link_schedule_reconnect(l);
    }
    if (was_ready && l->h.on_down)
        l->h.on_down(l->h.arg);
}

/* Best-effort stream error before closing (malformed input, limits). */
static void link_send_stream_error(struct link *l, const char *condition)
{
    if (l->fd < 0 || l->state < LINK_HANDSHAKING)
        return;
    char msg[256];
    int n = snprintf(msg, sizeof msg,
                     "<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                     "</stream:error></stream:stream>", condition);
    if (n > 0 && write(l->fd, msg, (size_t)n) < 0)
        log_debug("component link: could not send stream error: %s", strerror(errno));
}

static int link_open_socket(struct link *l)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof port, "%d", l->cfg->xmpp_port);
    /* Blocking resolution: the server is normally an address or localhost. */
    int rc = getaddrinfo(l->cfg->xmpp_host, port, &hints, &res);
    if (rc != 0) {
        log_error("could not resolve \"%s\": %s", l->cfg->xmpp_host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int link_header_cb(void *arg, const struct xnode *root);
static int link_stanza_cb(void *arg, struct stanza *st);

static void link_connect(struct link *l)
{
    l->fd = link_open_socket(l);
    if (l->fd < 0) {
        log_warn("component link: could not connect to %s:%d: %s", l->cfg->xmpp_host,
                 l->cfg->xmpp_port, strerror(errno));
        link_schedule_reconnect(l);
        return;
    }
    if (loop_fd_add(l->loop, l->fd, LOOP_READ | LOOP_WRITE, link_on_io, l) != 0) {
        log_error("component link: could not watch socket: %s", strerror(errno));
        close(l->fd);
        l->fd = -1;
        link_schedule_reconnect(l);
        return;
    }
    l->generation++;
    l->xs = xml_stream_new((size_t)l->cfg->max_stanza_bytes, link_header_cb,
                           link_stanza_cb, l);
    link_set_state(l, LINK_CONNECTING);
    loop_timer_arm(l->loop, &l->timer, LINK_HANDSHAKE_TIMEOUT_MS, link_timer_fired, l);
}

void link_start(struct link *l)
{
    if (l->state == LINK_IDLE)
        link_connect(l);
}

static void link_timer_fired(struct loop *loop, void *arg)
{
    struct link *l = arg;
    (void)loop;
    if (l->state == LINK_BACKOFF)
        link_connect(l);
    else if (l->state == LINK_CONNECTING || l->state == LINK_HANDSHAKING)
        link_fail(l, "timed out waiting for the handshake");
    else if (l->state == LINK_CLOSING)
        link_fail(l, "shutdown");
}

/* Queues bytes without the readiness check (stream header, handshake). */
static void link_queue(struct link *l, const char *data, size_t len)
{
    if (l->out_off > 0 && l->out_off >= l->out.len / 2) {
        buf_consume(&l->out, l->out_off);
        l->out_off = 0;
    }
    buf_append(&l->out, data, len);
}

int link_send(struct link *l, const char *data, size_t len)
{
    if (l->state != LINK_READY)
        return PS_ERROR;
    if (link_pending(l) + len > (size_t)l->cfg->output_buffer_max) {
        log_warn("component link: output buffer full (%zu bytes), dropping %zu bytes",
                 link_pending(l), len);
        return PS_ERROR;
    }
    link_queue(l, data, len);
    l->want_drain = l->want_drain || link_pending(l) >= (size_t)l->cfg->output_buffer_high;
    return PS_OK;
}

bool link_can_take_more(struct link *l)
{
    if (l->state != LINK_READY)
        return false;
    if (link_pending(l) < (size_t)l->cfg->output_buffer_high)
        return true;
    l->want_drain = true;
    return false;
}

bool link_flushed(const struct link *l)
{
    return l->fd < 0 || link_pending(l) == 0;
}

/* Writes as much as the socket takes.  Returns 0 or -1 (link failed). */
static int link_write_some(struct link *l)
{
    while (link_pending(l) > 0) {
        ssize_t n = write(l->fd, l->out.data + l->out_off, link_pending(l));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            link_fail(l, strerror(errno));
            return -1;
        }
        l->out_off += (size_t)n;
        l->bytes_out += (uint64_t)n;
    }
    if (link_pending(l) == 0) {
        buf_reset(&l->out);
        l->out_off = 0;
    }
    int events = LOOP_READ | (link_pending(l) ? LOOP_WRITE : 0);
    if (loop_fd_modify(l->loop, l->fd, events) != 0) {
        link_fail(l, "could not update socket watch");
        return -1;
    }
    if (l->want_drain && link_pending(l) < (size_t)l->cfg->output_buffer_high / 2) {
        l->want_drain = false;
        if (l->state == LINK_READY && l->h.on_drain)
            l->h.on_drain(l->h.arg);
    }
    return 0;
}

static void link_flush_hook(struct loop *loop, void *arg)
{
    struct link *l = arg;
    (void)loop;
    if (l->fd >= 0 && l->state >= LINK_HANDSHAKING && link_pending(l) > 0)
        (void)link_write_some(l);
}

void link_flush(struct link *l)
{
    link_flush_hook(l->loop, l);
}

static void link_send_header(struct link *l)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                 "xmlns:stream='http://etherx.jabber.org/streams' to='");
    buf_put_escaped(&b, l->cfg->component_jid);
    buf_puts(&b, "'>");
    link_queue(l, b.data, b.len);
    buf_free(&b);
}

static void link_connected(struct link *l)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        link_fail(l, strerror(err ? err : errno));
        return;
    }
    log_info("component link: connected to %s:%d as %s", l->cfg->xmpp_host,
             l->cfg->xmpp_port, l->cfg->component_jid);
    link_set_state(l, LINK_HANDSHAKING);
    link_send_header(l);
    (void)link_write_some(l);
}

static int link_header_cb(void *arg, const struct xnode *root)
{
    struct link *l = arg;
    const char *id = xnode_attr(root, "id");
    if (id == NULL || *id == '\0') {
        link_fail(l, "stream header without id");
        return 1;
    }
    struct buf b = BUF_INIT;
    buf_puts(&b, id);
    buf_puts(&b, l->cfg->component_secret);
    char hex[41];
    int rc = ids_sha1_hex(b.data, b.len, hex);
    buf_free(&b);
    if (rc != 0) {
        link_fail(l, "SHA-1 failed");
        return 1;
    }
    char msg[80];
    int n = snprintf(msg, sizeof msg, "<handshake>%s</handshake>", hex);
    link_queue(l, msg, (size_t)n);
    return 0;
}

static void link_log_stream_error(struct link *l, const struct xnode *err)
{
    const char *condition = "unknown";
    struct buf text = BUF_INIT;
    for (struct xnode *c = err->first; c; c = c->next) {
        if (c->name == NULL)
            continue;
        if (strcmp(xnode_local_name(c), "text") == 0)
            xnode_text(c, &text);
        else
            condition = xnode_local_name(c);
    }
    log_error("component link: stream error from server: %s%s%s", condition,
              text.len ? ": " : "", text.len ? text.data : "");
    buf_free(&text);
    (void)l;
}

static int link_stanza_cb(void *arg, struct stanza *st)
{
    struct link *l = arg;
    l->stanzas_in++;
    const char *name = st->el->name;
    if (strcmp(name, "stream:error") == 0) {
        link_log_stream_error(l, st->el);
        link_fail(l, "stream error");
        return 1;
    }
    if (l->state == LINK_HANDSHAKING) {
        if (strcmp(name, "handshake") != 0) {
            link_fail(l, "unexpected stanza before handshake");
            return 1;
        }
        loop_timer_disarm(l->loop, &l->timer);
        link_set_state(l, LINK_READY);
        l->backoff_ms = l->cfg->reconnect_min_ms;
        log_info("component link: authenticated as %s", l->cfg->component_jid);
        if (l->h.on_ready)
            l->h.on_ready(l->h.arg);
        return 0;
    }
    if (l->state == LINK_READY || l->state == LINK_CLOSING)
        l->h.on_stanza(l->h.arg, st);
    return l->failure != NULL;
}

static void link_read(struct link *l)
{
    char chunk[LINK_READ_CHUNK];
    for (int round = 0; round < 8 && l->fd >= 0; round++) {
        ssize_t n = read(l->fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                link_fail(l, strerror(errno));
            return;
        }
        if (n == 0) {
            link_fail(l, "server closed the connection");
            return;
        }
        l->bytes_in += (uint64_t)n;
        l->in_feed = true;
        int rc = xml_stream_feed(l->xs, chunk, (size_t)n);
        l->in_feed = false;
        if (l->failure) {
            link_fail(l, l->failure);
            return;
        }
        if (rc == XS_CLOSED) {
            link_fail(l, "server closed the stream");
            return;
        }
        if (rc != XS_OK) {
            log_error("component link: %s", xml_stream_error(l->xs));
            link_send_stream_error(l, rc == XS_ERR_TOO_BIG ? "policy-violation"
                                      : rc == XS_ERR_FORBIDDEN ? "restricted-xml"
                                                               : "not-well-formed");
            link_fail(l, xml_stream_error(l->xs));
            return;
        }
        if ((size_t)n < sizeof chunk)
            return;
    }
}

static void link_on_io(struct loop *loop, int fd, int events, void *arg)
{
    struct link *l = arg;
    (void)loop, (void)fd;
    if (l->state == LINK_CONNECTING) {
        if (events & (LOOP_WRITE | LOOP_READ))
            link_connected(l);
        return;
    }
    if ((events & LOOP_WRITE) && l->fd >= 0 && link_write_some(l) != 0)
        return;
    if ((events & LOOP_READ) && l->fd >= 0)
        link_read(l);
}

void link_shutdown(struct link *l)
{
    if (l->state == LINK_READY) {
        link_queue(l, "</stream:stream>", 16);
        link_set_state(l, LINK_CLOSING);
        loop_timer_arm(l->loop, &l->timer, 2000, link_timer_fired, l);
        return;
    }
    link_teardown(l);
    link_set_state(l, LINK_IDLE);
}

void link_free(struct link *l)
{
    link_teardown(l);
    buf_free(&l->out);
}
