/*
 * server.h - the process: configuration, loop, component link, database
 * pool and dispatcher, and the life cycle (start, signals, shutdown).
 */
#ifndef PUBSUBD_SERVER_H
#define PUBSUBD_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "component.h"
#include "config.h"
#include "db_pool.h"
#include "loop.h"

struct dispatcher;

struct server {
    const struct config *cfg;
    struct loop *loop;
    struct link link;
    struct db_pool pool;
    struct dispatcher *dispatcher;
    int requests_in_flight; /* IQs waiting for the database */
    uint16_t inflight_by_sender[4096]; /* the same, per sender (by hash) */
    bool stopping;          /* SIGTERM/SIGINT: finishing in-flight work */
    bool done;
    bool link_started;      /* the link connects once storage is first ready */
    bool owner_notices_taking; /* a take of owner notifications is in flight */
    int exit_code;
    uint64_t stop_deadline_ms;
    struct loop_timer stop_timer;
};

/* Builds the process objects; nothing connects yet. */
void server_init(struct server *s, const struct config *cfg);
/* Connects and runs the loop until stopped.  Returns the exit code. */
int server_run(struct server *s) MUSTCHECK;
void server_free(struct server *s);

/* Signal flags (set by handlers, read by the loop). */
extern volatile sig_atomic_t server_signal_stop;
extern volatile sig_atomic_t server_signal_reopen;

#endif
