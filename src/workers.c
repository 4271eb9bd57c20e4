/*
 * workers.c - small thread pools for the work that must not hold a frame:
 * name resolution (a pool of its own, so a stalled DNS server never delays
 * a handshake) and the public-key steps of handshakes.
 *
 * A job owns what it works on from submission until it is done; a worker
 * never touches the Lua state.  The owner learns of the end by looking at
 * the job (tp_job_state) on its next poll; the worker also writes the Lua
 * state's wake-up descriptor (event.c), so a loop asleep in epoll/poll
 * wakes at once.  An owner that goes away abandons its job: the worker
 * then frees it when it is done with it.  (libuv's threadpool is the
 * model: a work queue, a done flag, a wake-up.)
 *
 * Pools belong to a Lua state (the registry holds them).  Lookups and the
 * CA bundle's load start the threads when they are queued.  A handshake
 * step is queued lazily: the threads start the first time it is waited for
 * or looked at (a poll, a blocking wait, a loop going to sleep), because a
 * blocking call takes back the step it has just queued and runs it itself,
 * so a program that only ever blocks never starts a thread, and keeps the
 * allocator's and the scheduler's single-thread fast paths.  Once started,
 * threads are woken as jobs are queued.  __gc of the state stops them,
 * after the jobs already queued.  In a forked child the threads are gone
 * and a mutex may have been held by one of them: the child gets fresh
 * pools, and jobs of the parent's pools read as failed.
 */
#define _GNU_SOURCE 1                 /* dladdr() */
#include "aux.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tp_pool {
    pthread_mutex_t mu;
    pthread_cond_t work;          /* a job was queued, or stop */
    pthread_cond_t done;          /* a job ended */
    tp_job *head, *tail;
    pthread_t *threads;
    int nthreads, max, stop;
    int live;                     /* atomic: the threads have been started */
    int detached;                 /* threads end on their own (DNS) */
    int refs;                     /* detached: the owner + live threads */
    int wake_fd;                  /* written after each job (or -1) */
    pid_t pid;
    const char *name;
};

static void free_pool(tp_pool *p)
{
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p);
}

/* ------------------------------------------------------------- jobs */

#define LOAD(p)        __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v)    __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define CAS(p, e, v)   __atomic_compare_exchange_n((p), (e), (v), 0, \
                           __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#define XCHG(p, v)     __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)

/* While a job is queued or running its pool is alive (a pool ends only
 * once its queue is empty), so job->pool may be read then, and only then,
 * and only in the process that queued it (a forked child frees the
 * parent's pools, whose threads it does not have). */
static int pending(int s)
{
    return s == TP_JOB_QUEUED || s == TP_JOB_RUNNING;
}

static void kick(tp_pool *p);

/* Takes a queued job out of the queue of a pool whose threads have not
 * started (no thread can have it): 1, or 0 when they have. */
static int unqueue(tp_job *job)
{
    tp_pool *p = job->pool;
    tp_job **q;
    int out = 0;
    if (LOAD(&p->live))
        return 0;
    pthread_mutex_lock(&p->mu);
    if (!LOAD(&p->live)) {
        tp_job *prev = NULL;
        for (q = &p->head; *q != NULL; prev = *q, q = &(*q)->next)
            if (*q == job) {
                *q = job->next;
                if (p->tail == job)
                    p->tail = prev;
                out = 1;
                break;
            }
    }
    pthread_mutex_unlock(&p->mu);
    return out;
}

int tp_job_state(tp_job *job)
{
    int s = LOAD(&job->state);
    if (pending(s) && job->pid != tp_pid())
        return TP_JOB_LOST;           /* queued before fork, in the parent */
    if (s == TP_JOB_QUEUED) {
        kick(job->pool);              /* looked at: it is wanted now */
        s = LOAD(&job->state);
    }
    return s;
}

void tp_job_abandon(tp_job *job)
{
    int s = LOAD(&job->state);
    if (!pending(s) || job->pid != tp_pid()) {
        job->free(job);               /* done, or no thread of ours has it */
        return;
    }
    if (s == TP_JOB_QUEUED && unqueue(job)) {
        job->free(job);               /* no thread was ever started for it */
        return;
    }
    if (XCHG(&job->state, TP_JOB_ABANDONED) == TP_JOB_DONE)
        job->free(job);
    /* queued or running: the worker frees it */
}

int tp_job_reclaim(tp_job *job)
{
    /* Before the threads start, the job leaves the queue.  After, no lock:
     * a job still queued is marked abandoned, so the worker that pops it
     * frees it without running it (as for any abandoned job). */
    int expect = TP_JOB_QUEUED;
    if (job->pid != tp_pid() || LOAD(&job->state) != TP_JOB_QUEUED)
        return 0;
    if (unqueue(job)) {
        job->free(job);               /* its pool has no threads yet */
        return 1;
    }
    return CAS(&job->state, &expect, TP_JOB_ABANDONED);
}

int tp_job_wait(tp_job *job, double deadline)
{
    tp_pool *p;
    if (!pending(LOAD(&job->state)) || job->pid != tp_pid())
        return 1;
    p = job->pool;
    kick(p);
    pthread_mutex_lock(&p->mu);
    while (pending(LOAD(&job->state))) {
        if (deadline < 0)
            pthread_cond_wait(&p->done, &p->mu);
        else {
            /* The condition's clock is CLOCK_REALTIME: wait in short steps
             * against the monotonic deadline. */
            struct timespec ts;
            double left = deadline - tp_now();
            if (left <= 0)
                break;
            if (left > 0.05)
                left = 0.05;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)(left * 1e9);
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&p->done, &p->mu, &ts);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return !pending(LOAD(&job->state));
}

/* ----------------------------------------------------------- workers */

/* Called with p->mu held: the descriptor goes away with the pool's
 * owner, under the same lock. */
static void wake(tp_pool *p)
{
    if (p->wake_fd >= 0) {
        ssize_t n;
        do
            n = write(p->wake_fd, "", 1);    /* a full pipe is awake already */
        while (n < 0 && errno == EINTR);
    }
}

/* Workers are batch threads where the system has them (Linux): the same
 * share of the processors as any thread, but waking one never preempts a
 * running thread.  The thread that queued a step (a game's frame) keeps its
 * processor until it blocks or its time slice ends, instead of being
 * switched out in the middle of a call by the worker it just woke.  They
 * are born so (a new thread that ran first would preempt its creator);
 * where the attribute is refused, the creator switches them after. */
static int batch_attr(pthread_attr_t *a)
{
#ifdef SCHED_BATCH
    struct sched_param sp;
    memset(&sp, 0, sizeof sp);
    if (pthread_attr_init(a) != 0)
        return 0;
    if (pthread_attr_setinheritsched(a, PTHREAD_EXPLICIT_SCHED) == 0 &&
        pthread_attr_setschedpolicy(a, SCHED_BATCH) == 0 &&
        pthread_attr_setschedparam(a, &sp) == 0)
        return 1;
    pthread_attr_destroy(a);
#else
    (void)a;
#endif
    return 0;
}

static void make_batch(pthread_t th)
{
#ifdef SCHED_BATCH
    struct sched_param sp;
    memset(&sp, 0, sizeof sp);
    (void)pthread_setschedparam(th, SCHED_BATCH, &sp);
#else
    (void)th;
#endif
}

/* Takes the first queued job (p->mu held), or NULL. */
static tp_job *pop(tp_pool *p)
{
    tp_job *job = p->head;
    if (job != NULL) {
        p->head = job->next;
        if (p->head == NULL)
            p->tail = NULL;
    }
    return job;
}

/* Runs a job taken from the queue (p->mu not held): 1 when it is done
 * and its owner is to be told, 0 when its owner had abandoned it (it is
 * freed here). */
static int run_job(tp_job *job)
{
    int expect = TP_JOB_QUEUED;
    if (!CAS(&job->state, &expect, TP_JOB_RUNNING)) {
        job->free(job);               /* abandoned before it ran */
        return 0;
    }
    job->run(job);
    expect = TP_JOB_RUNNING;
    if (CAS(&job->state, &expect, TP_JOB_DONE))
        return 1;
    job->free(job);                   /* abandoned while it ran */
    return 0;
}

static void *worker(void *arg)
{
    tp_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        tp_job *job;
        int done;
        while (p->head == NULL && !p->stop)
            pthread_cond_wait(&p->work, &p->mu);
        if ((job = pop(p)) == NULL)
            break;                    /* stopped, and nothing left */
        pthread_mutex_unlock(&p->mu);
        done = run_job(job);
        pthread_mutex_lock(&p->mu);
        if (done)
            wake(p);
        pthread_cond_broadcast(&p->done);
    }
    if (p->detached && --p->refs == 0) {
        pthread_mutex_unlock(&p->mu);
        free_pool(p);                 /* the owner has gone: the last one out */
        return NULL;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Starts the threads (the first time a job comes).  0 or -1. */
static int start(tp_pool *p)
{
    pthread_attr_t attr;
    int i, batch;
    if (p->nthreads > 0)
        return 0;
    p->threads = calloc((size_t)p->max, sizeof *p->threads);
    if (p->threads == NULL)
        return -1;
    batch = batch_attr(&attr);
    for (i = 0; i < p->max; i++) {
        if (!batch || pthread_create(&p->threads[i], &attr, worker, p) != 0) {
            if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
                break;
            make_batch(p->threads[i]);
        }
        if (p->detached) {
            pthread_detach(p->threads[i]);
            p->refs++;
        }
        p->nthreads++;
    }
    if (batch)
        pthread_attr_destroy(&attr);
    if (p->nthreads == 0) {
        free(p->threads);
        p->threads = NULL;
        return -1;
    }
    STORE(&p->live, 1);
    return 0;
}

/* Runs the queued jobs on the calling thread (called with p->mu held, no
 * thread started, none startable): what a pool without threads does. */
static void run_here(tp_pool *p)
{
    tp_job *job;
    while ((job = pop(p)) != NULL) {
        pthread_mutex_unlock(&p->mu);
        (void)run_job(job);
        pthread_mutex_lock(&p->mu);
    }
    pthread_cond_broadcast(&p->done);
}

/* Jobs are queued and wanted (p->mu held): the threads start, if they
 * have not; if none can, the queue runs here. */
static void start_for_queue(tp_pool *p)
{
    if (!LOAD(&p->live) && p->head != NULL && start(p) != 0)
        run_here(p);
}

/* A queued job is wanted. */
static void kick(tp_pool *p)
{
    if (LOAD(&p->live))
        return;
    pthread_mutex_lock(&p->mu);
    start_for_queue(p);
    pthread_mutex_unlock(&p->mu);
}

int tp_pool_submit(tp_pool *p, tp_job *job, int lazy)
{
    job->pool = p;
    job->pid = tp_pid();
    job->next = NULL;
    STORE(&job->state, TP_JOB_QUEUED);
    pthread_mutex_lock(&p->mu);
    if (p->stop || (!lazy && !LOAD(&p->live) && start(p) != 0)) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    if (p->tail != NULL)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    if (LOAD(&p->live))
        pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* In a forked child: the parent's pool has no threads here, and its
 * mutex may have been held at the fork, so it is never locked; its memory
 * is freed.  The jobs' owners see TP_JOB_LOST and free their own (a job
 * already abandoned by its owner when the parent forked stays with the
 * parent). */
static void forget(tp_pool *p)
{
    free(p->threads);
    free(p);
}

/* Stops the threads once the queue is empty, and frees the pool.  A
 * lookup pool is not waited for: a thread stuck in a stalled lookup ends
 * when it ends, and the last one out frees the pool. */
static void destroy(tp_pool *p)
{
    int i;
    if (p->pid != (pid_t)tp_pid()) {
        forget(p);
        return;
    }
    pthread_mutex_lock(&p->mu);
    start_for_queue(p);               /* the queued jobs end first */
    p->stop = 1;
    p->wake_fd = -1;                  /* its owner closes it next */
    pthread_cond_broadcast(&p->work);
    if (p->detached) {
        int last = --p->refs == 0;
        pthread_mutex_unlock(&p->mu);
        if (last)
            free_pool(p);
        return;
    }
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free_pool(p);
}

/* Once per process: the module stays loaded for the life of the process,
 * though lua_close() unloads the C libraries it loaded.  A lookup thread
 * may outlive its Lua state, and mbedtls keeps process-wide state (PSA's
 * key slots, its random generator) that must not vanish with the code.
 * (A module linked into the host is never unloaded: the call is harmless.) */
void tp_keep_loaded(void)
{
    static int kept;
    Dl_info info;
    if (__atomic_exchange_n(&kept, 1, __ATOMIC_ACQ_REL))
        return;
    if (dladdr((void *)tp_keep_loaded, &info) && info.dli_fname != NULL)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

static tp_pool *create(int max, int wake_fd, const char *name, int detached)
{
    tp_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->max = max;
    p->detached = detached;
    p->refs = 1;                      /* the owner */
    p->wake_fd = wake_fd;
    p->pid = (pid_t)tp_pid();
    p->name = name;
    return p;
}

/* -------------------------------------------------------------- Lua */

/* Registry: &pools_key -> the state's pools and the wake-up pipe, which
 * outlives them (workers write to it until they are joined). */
static const char pools_key = 'w';

typedef struct tp_pools {
    tp_pool *pool[2];             /* TP_POOL_CPU, TP_POOL_DNS */
    int cpu_max;                  /* threads for handshakes; 0: none */
    int wake[2];                  /* pipe: read end for the loop */
    pid_t pid;
} tp_pools;

static int pools_gc(lua_State *L)
{
    tp_pools *b = lua_touserdata(L, 1);
    int i;
    for (i = 0; i < 2; i++) {
        if (b->pool[i] != NULL)
            destroy(b->pool[i]);
        b->pool[i] = NULL;
    }
    for (i = 0; i < 2; i++) {
        if (b->wake[i] >= 0)
            close(b->wake[i]);
        b->wake[i] = -1;
    }
    return 0;
}

static void set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

static tp_pools *pools(lua_State *L)
{
    tp_pools *b;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &pools_key) != LUA_TNIL) {
        b = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return b;
    }
    lua_pop(L, 1);
    b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    b->wake[0] = b->wake[1] = -1;
    {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        b->cpu_max = n < 1 ? 1 : n > 16 ? 16 : (int)n;
    }
    if (pipe(b->wake) == 0) {
        set_nonblock_cloexec(b->wake[0]);
        set_nonblock_cloexec(b->wake[1]);
    } else
        b->wake[0] = b->wake[1] = -1;
    b->pid = (pid_t)tp_pid();
    lua_newtable(L);
    lua_pushcfunction(L, pools_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &pools_key);
    return b;
}

tp_pool *tp_pool_get(lua_State *L, int kind)
{
    tp_pools *b = pools(L);
    tp_pool *p = b->pool[kind];
    if (b->cpu_max == 0)
        return NULL;                  /* tls.set_worker_threads(0) */
    if (p != NULL && p->pid != (pid_t)tp_pid()) {
        forget(p);                    /* forked: the parent's threads are gone */
        p = b->pool[kind] = NULL;
    }
    if (p == NULL) {
        p = create(kind == TP_POOL_DNS ? TP_DNS_THREADS : b->cpu_max,
                   b->wake[1], kind == TP_POOL_DNS ? "dns" : "cpu",
                   kind == TP_POOL_DNS);
        if (p == NULL)
            return NULL;
        b->pool[kind] = p;
    }
    return p;
}

void tp_pools_kick(lua_State *L)
{
    tp_pools *b = pools(L);
    int i;
    for (i = 0; i < 2; i++)
        if (b->pool[i] != NULL && b->pool[i]->pid == (pid_t)tp_pid())
            kick(b->pool[i]);
}

int tp_wake_fd(lua_State *L)
{
    return pools(L)->wake[0];
}

void tp_wake_drain(lua_State *L)
{
    char buf[64];
    int fd = pools(L)->wake[0];
    if (fd >= 0)
        while (read(fd, buf, sizeof buf) > 0)
            ;
}

/* tls.set_worker_threads(n): threads for handshake work (0: none, every
 * step runs in the calling thread, and names resolve there too).  Takes
 * effect for jobs submitted afterwards. */
static int set_worker_threads(lua_State *L)
{
    tp_pools *b = pools(L);
    int n = (int)tp_checkrange(L, 1, 0, 64);
    int i;
    if (n == b->cpu_max)
        return 0;
    /* The running pools finish what they have; new jobs go to new ones. */
    for (i = 0; i < 2; i++) {
        if (b->pool[i] != NULL)
            destroy(b->pool[i]);
        b->pool[i] = NULL;
    }
    b->cpu_max = n;
    return 0;
}

/* tls.get_worker_threads() */
static int get_worker_threads(lua_State *L)
{
    lua_pushinteger(L, pools(L)->cpu_max);
    return 1;
}

void tp_open_workers(lua_State *L)
{
    (void)pools(L);                   /* the wake-up pipe, from the start */
    static const luaL_Reg fns[] = {
        {"set_worker_threads", set_worker_threads},
        {"get_worker_threads", get_worker_threads},
        {NULL, NULL}
    };
    luaL_setfuncs(L, fns, 0);
}
