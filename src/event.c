/*
 * event.c - the event core, one per Lua state: a set of sockets registered
 * once and kept across polls (epoll on Linux, poll(2) elsewhere), which
 * reports the ones that are ready, so a loop steps only those.  The
 * worker pools' wake-up pipe is in the set: a job that ends wakes a loop
 * asleep in it, and the object whose job it was is reported ready.
 *
 * Objects (TCPServer, StreamPeerTCP, StreamPeerTLS over TCP) carry a
 * tp_watch; the Lua layer registers them with a token of its own (a
 * connection object) and gets tokens back from wait().  Readiness is
 * level-triggered: what a step leaves unread is reported again, and data
 * buffered past the socket (inside TLS) is reported with wake().  Timers
 * are the Lua layer's (lua/tlspeer/loop.lua): wait() takes its timeout.
 *
 * Lua: core._loop() -> the state's loop, with watch(obj, token),
 * unwatch(obj), want_write(obj, bool), wake(obj), wait(timeout) -> list, n.
 */
#include "aux.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/epoll.h>
#define TP_EPOLL 1
#else
#define TP_EPOLL 0
#endif

#define TP_LOOP "tlspeer.loop"

typedef struct slot {
    tp_watch *w;                  /* NULL: free */
    int fd;                       /* registered fd, or -1 */
    unsigned char want_write;
    unsigned char queued;         /* in the ready list already */
} slot;

struct tp_loop {
    int epfd;                     /* -1: poll(2) */
    int wake_fd;
    slot *slots;
    int nslots, cap, free_head;   /* free slots chain through fd */
    int *ready;                   /* slots to report */
    int nready, cap_ready;
    tp_watch *jobs;               /* watches with a job running */
    struct pollfd *pfds;          /* poll(2): scratch */
    int cap_pfds;
};

/* ------------------------------------------------------------ helpers */

static unsigned events_of(const slot *s)
{
#if TP_EPOLL
    return EPOLLIN | EPOLLRDHUP | (s->want_write ? EPOLLOUT : 0);
#else
    return POLLIN | (s->want_write ? POLLOUT : 0);
#endif
}

/* Adds, changes or removes the epoll registration of slot i. */
static void sync_fd(tp_loop *lp, int i, int fd)
{
#if TP_EPOLL
    slot *s = &lp->slots[i];
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events_of(s);
    ev.data.u32 = (uint32_t)i;
    if (s->fd >= 0 && s->fd != fd)
        (void)epoll_ctl(lp->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    if (fd >= 0)
        if (epoll_ctl(lp->epfd, s->fd == fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
                      fd, &ev) != 0 && errno == EEXIST)
            (void)epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fd, &ev);
#endif
    lp->slots[i].fd = fd;
}

static void queue_ready(tp_loop *lp, int i)
{
    if (lp->slots[i].queued || lp->slots[i].w == NULL)
        return;
    if (lp->nready == lp->cap_ready) {
        int cap = lp->cap_ready ? lp->cap_ready * 2 : 64;
        int *r = realloc(lp->ready, sizeof *r * (size_t)cap);
        if (r == NULL)
            return;                   /* reported on a later wait */
        lp->ready = r;
        lp->cap_ready = cap;
    }
    lp->ready[lp->nready++] = i;
    lp->slots[i].queued = 1;
}

static void unlink_job(tp_watch *w)
{
    tp_loop *lp = w->loop;
    tp_watch **p;
    if (lp == NULL || !w->job_linked)
        return;
    for (p = &lp->jobs; *p != NULL; p = &(*p)->next_job)
        if (*p == w) {
            *p = w->next_job;
            break;
        }
    w->job_linked = 0;
    w->next_job = NULL;
}

/* ------------------------------------------------ for tcp.c and tls.c */

void tp_watch_fd(tp_watch *w, int fd)
{
    if (w->loop != NULL && w->slot >= 0)
        sync_fd(w->loop, w->slot, fd);
}

void tp_watch_job(tp_watch *w, tp_job *job)
{
    tp_loop *lp = w->loop;
    w->job = job;
    if (lp == NULL || w->slot < 0)
        return;
    if (job != NULL && !w->job_linked) {
        w->next_job = lp->jobs;
        lp->jobs = w;
        w->job_linked = 1;
    } else if (job == NULL)
        unlink_job(w);
}

void tp_watch_wake(tp_watch *w)
{
    if (w->loop != NULL && w->slot >= 0)
        queue_ready(w->loop, w->slot);
}

/* Forgets the watch: its object is going away (or unwatched).  The token
 * in the loop's table is cleared by the caller that has the loop. */
void tp_watch_release(tp_watch *w)
{
    tp_loop *lp = w->loop;
    int i = w->slot;
    if (lp == NULL || i < 0)
        return;
    unlink_job(w);
    sync_fd(lp, i, -1);
    lp->slots[i].w = NULL;
    lp->slots[i].want_write = 0;
    lp->slots[i].queued = 0;
    lp->slots[i].fd = lp->free_head;  /* the free chain */
    lp->free_head = i;
    w->loop = NULL;
    w->slot = -1;
}

/* ---------------------------------------------------------- the loop */

static tp_loop *checkloop(lua_State *L)
{
    return luaL_checkudata(L, 1, TP_LOOP);
}

static int loop_gc(lua_State *L)
{
    tp_loop *lp = luaL_checkudata(L, 1, TP_LOOP);
    int i;
    for (i = 0; i < lp->nslots; i++)
        if (lp->slots[i].w != NULL) {
            lp->slots[i].w->loop = NULL;
            lp->slots[i].w->slot = -1;
            lp->slots[i].w->job_linked = 0;
            lp->slots[i].w = NULL;
        }
    if (lp->epfd >= 0)
        close(lp->epfd);
    lp->epfd = -1;
    free(lp->slots);
    free(lp->ready);
    free(lp->pfds);
    lp->slots = NULL;
    lp->ready = NULL;
    lp->pfds = NULL;
    lp->nslots = lp->cap = lp->nready = lp->cap_ready = lp->cap_pfds = 0;
    return 0;
}

/* The watch of a TCPServer, StreamPeerTCP or StreamPeerTLS (over TCP) at
 * idx, or NULL. */
static tp_watch *watch_of(lua_State *L, int idx)
{
    tp_watch *w = tp_tcp_watch(L, idx);
    if (w == NULL)
        w = tp_tls_watch(L, idx);
    return w;
}

/* loop:watch(obj, token): reports obj's readiness as token from now on. */
static int loop_watch(lua_State *L)
{
    tp_loop *lp = checkloop(L);
    tp_watch *w = watch_of(L, 2);
    int i;
    luaL_argcheck(L, w != NULL, 2, "TCPServer, StreamPeerTCP or "
                  "StreamPeerTLS over a StreamPeerTCP expected");
    luaL_checkany(L, 3);
    if (w->loop == lp && w->slot >= 0)
        i = w->slot;                  /* watched already: new token */
    else {
        if (w->loop != NULL)
            return luaL_argerror(L, 2, "watched by another loop");
        if (lp->free_head >= 0) {
            i = lp->free_head;
            lp->free_head = lp->slots[i].fd;
        } else {
            if (lp->nslots == lp->cap) {
                int cap = lp->cap ? lp->cap * 2 : 64;
                slot *s = realloc(lp->slots, sizeof *s * (size_t)cap);
                if (s == NULL)
                    return luaL_error(L, "out of memory");
                lp->slots = s;
                lp->cap = cap;
            }
            i = lp->nslots++;
        }
        memset(&lp->slots[i], 0, sizeof lp->slots[i]);
        lp->slots[i].fd = -1;
        lp->slots[i].w = w;
        w->loop = lp;
        w->slot = i;
        sync_fd(lp, i, w->fd);
        if (w->job != NULL)
            tp_watch_job(w, w->job);
    }
    lua_getiuservalue(L, 1, 1);       /* tokens */
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, i + 1);
    queue_ready(lp, i);               /* one first look */
    return 0;
}

static int loop_unwatch(lua_State *L)
{
    tp_loop *lp = checkloop(L);
    tp_watch *w = watch_of(L, 2);
    int i;
    if (w == NULL || w->loop != lp || w->slot < 0)
        return 0;
    i = w->slot;
    tp_watch_release(w);
    lua_getiuservalue(L, 1, 1);
    lua_pushnil(L);
    lua_rawseti(L, -2, i + 1);
    return 0;
}

/* loop:want_write(obj, bool): whether writability is reported too (while
 * connecting, or while output waits). */
static int loop_want_write(lua_State *L)
{
    tp_loop *lp = checkloop(L);
    tp_watch *w = watch_of(L, 2);
    int on = lua_toboolean(L, 3);
    if (w == NULL || w->loop != lp || w->slot < 0)
        return 0;
    if (lp->slots[w->slot].want_write != on) {
        lp->slots[w->slot].want_write = (unsigned char)on;
        sync_fd(lp, w->slot, lp->slots[w->slot].fd);
    }
    return 0;
}

/* loop:wake(obj): obj is reported by the next wait (data waits inside it,
 * or a step stopped at its budget). */
static int loop_wake(lua_State *L)
{
    tp_loop *lp = checkloop(L);
    tp_watch *w = watch_of(L, 2);
    if (w != NULL && w->loop == lp && w->slot >= 0)
        queue_ready(lp, w->slot);
    return 0;
}

/* Collects what the kernel says is ready within `ms` (-1: forever). */
static void poll_fds(lua_State *L, tp_loop *lp, int ms)
{
    int i, n;
#if TP_EPOLL
    struct epoll_event evs[256];
    do
        n = epoll_wait(lp->epfd, evs, 256, ms);
    while (n < 0 && errno == EINTR);
    for (i = 0; i < n; i++) {
        uint32_t k = evs[i].data.u32;
        if (k == UINT32_MAX)
            tp_wake_drain(L);
        else if ((int)k < lp->nslots)
            queue_ready(lp, (int)k);
    }
#else
    int np = 0;
    if (lp->cap_pfds < lp->nslots + 1) {
        struct pollfd *p = realloc(lp->pfds, sizeof *p * (size_t)(lp->nslots + 1));
        if (p == NULL)
            return;
        lp->pfds = p;
        lp->cap_pfds = lp->nslots + 1;
    }
    for (i = 0; i < lp->nslots; i++)
        if (lp->slots[i].w != NULL && lp->slots[i].fd >= 0) {
            lp->pfds[np].fd = lp->slots[i].fd;
            lp->pfds[np].events = (short)events_of(&lp->slots[i]);
            lp->pfds[np].revents = 0;
            np++;
        }
    lp->pfds[np].fd = lp->wake_fd;
    lp->pfds[np].events = POLLIN;
    lp->pfds[np].revents = 0;
    do
        n = poll(lp->pfds, (nfds_t)(np + 1), ms);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        int j = 0;
        for (i = 0; i < lp->nslots; i++)
            if (lp->slots[i].w != NULL && lp->slots[i].fd >= 0) {
                if (lp->pfds[j].revents != 0)
                    queue_ready(lp, i);
                j++;
            }
        if (lp->pfds[np].revents != 0)
            tp_wake_drain(L);
    }
#endif
    (void)L;
}

/* Jobs that ended since the last look make their objects ready. */
static void reap_jobs(tp_loop *lp)
{
    tp_watch **p = &lp->jobs;
    while (*p != NULL) {
        tp_watch *w = *p;
        int s = w->job != NULL ? tp_job_state(w->job) : TP_JOB_DONE;
        if (s != TP_JOB_QUEUED && s != TP_JOB_RUNNING) {
            *p = w->next_job;
            w->job_linked = 0;
            w->next_job = NULL;
            queue_ready(lp, w->slot);
        } else
            p = &w->next_job;
    }
}

/* loop:wait(timeout) -> list, n: the tokens of the objects ready now, or
 * once something is (timeout seconds at most; 0: only look; nil: no
 * limit).  The list is reused from one call to the next. */
static int loop_wait(lua_State *L)
{
    tp_loop *lp = checkloop(L);
    double timeout = luaL_optnumber(L, 2, -1);
    double sweep = tp_tls_sweep(L);
    int ms, i, n;
    if (lp->jobs != NULL)
        reap_jobs(lp);
    if (sweep >= 0) {                 /* wake up for the next sweep */
        double until = sweep - tp_now();
        if (until < 0)
            until = 0;
        if (timeout < 0 || until < timeout)
            timeout = until + 0.001;
    }
    if (lp->nready > 0 || timeout == 0)
        ms = 0;
    else if (timeout < 0)
        ms = -1;
    else {
        ms = (int)(timeout * 1000.0 + 0.999);
    }
    if (ms != 0)
        tp_pools_kick(L);             /* a queued job ends while we sleep */
    poll_fds(L, lp, ms);
    if (lp->jobs != NULL)
        reap_jobs(lp);
    lua_getiuservalue(L, 1, 1);               /* tokens */
    lua_getiuservalue(L, 1, 2);               /* the list handed out */
    n = 0;
    for (i = 0; i < lp->nready; i++) {
        int k = lp->ready[i];
        lp->slots[k].queued = 0;
        if (lp->slots[k].w == NULL)
            continue;
        lua_rawgeti(L, -2, k + 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        lua_rawseti(L, -2, ++n);
    }
    lp->nready = 0;
    /* Clear what the last, longer list left behind. */
    for (i = n + 1; ; i++) {
        if (lua_rawgeti(L, -1, i) == LUA_TNIL) {
            lua_pop(L, 1);
            break;
        }
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, n);
    return 2;
}

static int loop_tostring(lua_State *L)
{
    tp_loop *lp = checkloop(L);
    int i, n = 0;
    for (i = 0; i < lp->nslots; i++)
        n += lp->slots[i].w != NULL;
    lua_pushfstring(L, "tlspeer event loop (%s, %d watched)",
                    lp->epfd >= 0 ? "epoll" : "poll", n);
    return 1;
}

static const char loop_key = 'l';

/* core._loop(): the state's event loop (made on first use). */
static int core_loop(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"watch", loop_watch}, {"unwatch", loop_unwatch},
        {"want_write", loop_want_write}, {"wake", loop_wake},
        {"wait", loop_wait}, {NULL, NULL}
    };
    tp_loop *lp;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &loop_key) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    lp = lua_newuserdatauv(L, sizeof *lp, 2);
    memset(lp, 0, sizeof *lp);
    lp->epfd = -1;
    lp->free_head = -1;
    lp->wake_fd = tp_wake_fd(L);
    if (luaL_newmetatable(L, TP_LOOP)) {
        lua_pushcfunction(L, loop_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, loop_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_setmetatable(L, -2);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 2);
#if TP_EPOLL
    lp->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (lp->epfd < 0)
        return luaL_error(L, "tlspeer: cannot make an event loop: %s",
                          strerror(errno));
    if (lp->wake_fd >= 0) {
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.u32 = UINT32_MAX;
        (void)epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->wake_fd, &ev);
    }
#endif
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &loop_key);
    return 1;
}

void tp_open_event(lua_State *L)
{
    lua_pushcfunction(L, core_loop);
    lua_setfield(L, -2, "_loop");
}
