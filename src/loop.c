/*
 * loop.c - epoll event loop with intrusive one-shot timers.
 *
 * Owns the epoll fd and the table of watched fds (indexed by fd).  Timers
 * live in an unsorted doubly linked list: the process has few timers
 * (links, database connections, dispatcher), so a scan per iteration is
 * cheaper than a heap.
 */
#include "loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct loop_fd {
    loop_fd_cb cb;
    void *arg;
    int events;
};

struct loop_hook {
    loop_hook_cb cb;
    void *arg;
};

struct loop {
    int epfd;
    struct loop_fd *fds;
    int nfds;
    struct loop_timer *timers;
    struct loop_hook hooks[8];
    int nhooks;
};

uint64_t loop_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct loop *loop_new(void)
{
    struct loop *loop = xcalloc(1, sizeof *loop);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    PS_ASSERT(loop->epfd >= 0);
    return loop;
}

void loop_free(struct loop *loop)
{
    if (loop == NULL)
        return;
    close(loop->epfd);
    free(loop->fds);
    free(loop);
}

static uint32_t epoll_mask(int events)
{
    uint32_t m = 0;
    if (events & LOOP_READ)
        m |= EPOLLIN | EPOLLRDHUP;
    if (events & LOOP_WRITE)
        m |= EPOLLOUT;
    return m;
}

int loop_fd_add(struct loop *loop, int fd, int events, loop_fd_cb cb,
                void *arg)
{
    PS_ASSERT(fd >= 0);
    if (fd >= loop->nfds) {
        int n = loop->nfds ? loop->nfds : 64;
        while (n <= fd)
            n *= 2;
        loop->fds = xrealloc(loop->fds, (size_t)n * sizeof *loop->fds);
        memset(loop->fds + loop->nfds, 0,
               (size_t)(n - loop->nfds) * sizeof *loop->fds);
        loop->nfds = n;
    }
    struct epoll_event ev = {.events = epoll_mask(events), .data.fd = fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return -1;
    loop->fds[fd] = (struct loop_fd){cb, arg, events};
    return 0;
}

int loop_fd_modify(struct loop *loop, int fd, int events)
{
    PS_ASSERT(fd >= 0 && fd < loop->nfds && loop->fds[fd].cb != NULL);
    if (loop->fds[fd].events == events)
        return 0;
    struct epoll_event ev = {.events = epoll_mask(events), .data.fd = fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
        return -1;
    loop->fds[fd].events = events;
    return 0;
}

void loop_fd_remove(struct loop *loop, int fd)
{
    if (fd < 0 || fd >= loop->nfds || loop->fds[fd].cb == NULL)
        return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    loop->fds[fd] = (struct loop_fd){NULL, NULL, 0};
}

void loop_timer_arm(struct loop *loop, struct loop_timer *t, uint64_t ms,
                    loop_timer_cb cb, void *arg)
{
    loop_timer_disarm(loop, t);
    t->due_ms = loop_now_ms() + ms;
    t->cb = cb;
    t->arg = arg;
    t->armed = true;
    t->prev = NULL;
    t->next = loop->timers;
    if (loop->timers)
        loop->timers->prev = t;
    loop->timers = t;
}

void loop_timer_disarm(struct loop *loop, struct loop_timer *t)
{
    if (!t->armed)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        loop->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->armed = false;
    t->prev = t->next = NULL;
}

void loop_add_before_sleep(struct loop *loop, loop_hook_cb cb, void *arg)
{
    PS_ASSERT(loop->nhooks < (int)ARRAY_LEN(loop->hooks));
    loop->hooks[loop->nhooks++] = (struct loop_hook){cb, arg};
}

static int loop_next_timeout(struct loop *loop, int max_wait_ms)
{
    if (loop->timers == NULL)
        return max_wait_ms;
    uint64_t now = loop_now_ms();
    uint64_t soonest = UINT64_MAX;
    for (struct loop_timer *t = loop->timers; t; t = t->next)
        if (t->due_ms < soonest)
            soonest = t->due_ms;
    int wait = soonest <= now ? 0 : (int)(soonest - now > 3600000 ? 3600000 : soonest - now);
    if (max_wait_ms >= 0 && wait > max_wait_ms)
        wait = max_wait_ms;
    return wait;
}

/* Fires due timers one at a time: a callback may arm or disarm others. */
static void loop_fire_timers(struct loop *loop)
{
    uint64_t now = loop_now_ms();
    for (;;) {
        struct loop_timer *due = NULL;
        for (struct loop_timer *t = loop->timers; t; t = t->next) {
            if (t->due_ms <= now) {
                due = t;
                break;
            }
        }
        if (due == NULL)
            return;
        loop_timer_disarm(loop, due);
        due->cb(loop, due->arg);
    }
}

int loop_run_once(struct loop *loop, int max_wait_ms)
{
    for (int i = 0; i < loop->nhooks; i++)
        loop->hooks[i].cb(loop, loop->hooks[i].arg);

    struct epoll_event evs[64];
    int n = epoll_wait(loop->epfd, evs, (int)ARRAY_LEN(evs),
                       loop_next_timeout(loop, max_wait_ms));
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        log_error("epoll_wait failed: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        if (fd >= loop->nfds || loop->fds[fd].cb == NULL)
            continue; /* removed by an earlier callback this round */
        int events = 0;
        if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            events |= LOOP_READ;
        if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            events |= LOOP_WRITE;
        loop->fds[fd].cb(loop, fd, events, loop->fds[fd].arg);
    }
    loop_fire_timers(loop);
    return 0;
}
