/*
 * loop.h - the event loop: file events (epoll), timers, before_sleep hooks.
 *
 * One loop per process (Redis ae style).  Timers are intrusive: the owner
 * embeds a struct loop_timer and arms/disarms it, so no handle can dangle.
 * Callbacks run on the loop's stack; nothing here blocks except epoll_wait.
 */
#ifndef PUBSUBD_LOOP_H
#define PUBSUBD_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "alloc.h"

enum {
    LOOP_READ = 1,
    LOOP_WRITE = 2,
};

struct loop;
typedef void (*loop_fd_cb)(struct loop *loop, int fd, int events, void *arg);
typedef void (*loop_timer_cb)(struct loop *loop, void *arg);
typedef void (*loop_hook_cb)(struct loop *loop, void *arg);

struct loop_timer {
    uint64_t due_ms;
    loop_timer_cb cb;
    void *arg;
    bool armed;
    struct loop_timer *prev, *next;
};

struct loop *loop_new(void);
void loop_free(struct loop *loop);

/* Watches fd for events (LOOP_READ|LOOP_WRITE).  Returns 0 or -1. */
int loop_fd_add(struct loop *loop, int fd, int events, loop_fd_cb cb,
                void *arg) MUSTCHECK;
int loop_fd_modify(struct loop *loop, int fd, int events) MUSTCHECK;
void loop_fd_remove(struct loop *loop, int fd);

/* (Re)arms t to fire once after ms milliseconds. */
void loop_timer_arm(struct loop *loop, struct loop_timer *t, uint64_t ms,
                    loop_timer_cb cb, void *arg);
void loop_timer_disarm(struct loop *loop, struct loop_timer *t);

/* Adds a hook called before every sleep (at most 8). */
void loop_add_before_sleep(struct loop *loop, loop_hook_cb cb, void *arg);

/* Runs one iteration: waits at most max_wait_ms (-1: until an event or
 * timer).  Returns 0 or -1 on an epoll error. */
int loop_run_once(struct loop *loop, int max_wait_ms) MUSTCHECK;

/* Monotonic milliseconds. */
uint64_t loop_now_ms(void);

#endif
