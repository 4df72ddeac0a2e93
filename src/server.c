/*
 * server.c - process life cycle: wiring, signals, the main loop, shutdown.
 *
 * Signals are read from a signalfd on the loop, so handlers never run
 * asynchronously.  SIGTERM/SIGINT: stop taking new work (new IQs get a
 * wait error), let in-flight requests and dispatch batches finish (at most
 * shutdown_timeout_ms), close the stream, exit 0.  SIGHUP reopens the log.
 */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "dispatcher.h"
#include "log.h"
#include "service.h"

#define SERVER_STOP_TICK_MS 20

volatile sig_atomic_t server_signal_stop;
volatile sig_atomic_t server_signal_reopen;

static void server_link_ready(void *arg)
{
    struct server *s = arg;
    dispatcher_link_ready(s->dispatcher);
}

static void server_link_down(void *arg)
{
    struct server *s = arg;
    dispatcher_link_down(s->dispatcher);
}

static void server_link_stanza(void *arg, struct stanza *st)
{
    service_handle_stanza(arg, st);
}

static void server_link_drain(void *arg)
{
    struct server *s = arg;
    dispatcher_link_drain(s->dispatcher);
}

/* The first time storage is ready, the service goes on line: until then
 * the XMPP server answers for it (service unavailable) instead of pubsubd
 * answering every request with a wait error.  Later outages keep the
 * link: requests then get wait errors at once. */
static void server_db_ready(void *arg)
{
    struct server *s = arg;
    if (!s->link_started && !s->stopping) {
        s->link_started = true;
        link_start(&s->link);
    }
}

static void server_db_fatal(void *arg, const char *why)
{
    struct server *s = arg;
    log_error("cannot go on: %s", why);
    s->exit_code = 1;
    s->done = true;
}

void server_init(struct server *s, const struct config *cfg)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->loop = loop_new();
    struct link_handlers lh = {server_link_ready, server_link_down, server_link_stanza,
                               server_link_drain, s};
    link_init(&s->link, s->loop, cfg, &lh);
    struct db_handlers dh = {server_db_ready, NULL, NULL, server_db_fatal, s};
    db_pool_init(&s->pool, s->loop, cfg, &dh);
    s->dispatcher = dispatcher_new(s);
}

/* Called every tick while stopping: closes the stream once nothing is in
 * flight, and ends the loop once the stream is closed or time is up. */
static void server_stop_tick(struct loop *loop, void *arg)
{
    struct server *s = arg;
    bool timed_out = loop_now_ms() >= s->stop_deadline_ms;
    if (s->link.state == LINK_READY &&
        ((s->requests_in_flight == 0 && dispatcher_idle(s->dispatcher)) || timed_out)) {
        if (timed_out)
            log_warn("shutdown: timed out with %d requests in flight", s->requests_in_flight);
        link_shutdown(&s->link);
    }
    if (s->link.state != LINK_READY && s->link.state != LINK_CLOSING) {
        link_shutdown(&s->link); /* not connected: nothing to flush */
        s->done = true;
        return;
    }
    if (timed_out && loop_now_ms() >= s->stop_deadline_ms + 2000) {
        s->done = true;
        return;
    }
    loop_timer_arm(loop, &s->stop_timer, SERVER_STOP_TICK_MS, server_stop_tick, s);
}

static void server_begin_stop(struct server *s)
{
    if (s->stopping)
        return;
    log_info("shutting down: finishing %d requests in flight", s->requests_in_flight);
    s->stopping = true;
    s->stop_deadline_ms = loop_now_ms() + (uint64_t)s->cfg->shutdown_timeout_ms;
    dispatcher_stop(s->dispatcher);
    server_stop_tick(s->loop, s);
}

static void server_on_signal(struct loop *loop, int fd, int events, void *arg)
{
    struct server *s = arg;
    (void)loop, (void)events;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            if (log_reopen() != 0)
                log_error("could not reopen the log file: %s", strerror(errno));
            else
                log_info("log reopened");
        } else {
            log_info("received signal %u", si.ssi_signo);
            server_begin_stop(s);
        }
    }
}

int server_run(struct server *s)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
        log_error("could not block signals: %s", strerror(errno));
        return 1;
    }
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0 || loop_fd_add(s->loop, sfd, LOOP_READ, server_on_signal, s) != 0) {
        log_error("could not watch signals: %s", strerror(errno));
        return 1;
    }
    log_info("pubsubd %s starting as %s, XMPP server %s:%d", PACKAGE_VERSION,
             s->cfg->component_jid, s->cfg->xmpp_host, s->cfg->xmpp_port);
    db_pool_start(&s->pool);
    dispatcher_start(s->dispatcher);
    /* The link starts when the database is first ready (server_db_ready). */
    while (!s->done) {
        if (loop_run_once(s->loop, -1) != 0) {
            s->exit_code = 1;
            break;
        }
    }
    loop_fd_remove(s->loop, sfd);
    close(sfd);
    log_info("pubsubd stopped (exit %d)", s->exit_code);
    return s->exit_code;
}

void server_free(struct server *s)
{
    dispatcher_free(s->dispatcher);
    s->dispatcher = NULL;
    db_pool_free(&s->pool);
    link_free(&s->link);
    loop_timer_disarm(s->loop, &s->stop_timer);
    loop_free(s->loop);
    s->loop = NULL;
}
