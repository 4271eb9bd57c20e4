/*
 * bench/benchclock.c: the clocks bench/frame.lua and bench/scale.lua read
 * around each call into tlspeer, beyond the wall clock: the calling
 * thread's CPU time and its involuntary context switches, so a call that
 * was slow because the thread was preempted (2 shared cores, tlspeer's own
 * worker threads) can be told from a call that did the work itself.
 *
 *   cc -O2 -g -shared -fPIC -I/usr/include/lua5.4 -o bench/out/benchclock.so bench/benchclock.c
 *
 * Lua: local bc = require "benchclock"
 *   bc.now()          CLOCK_MONOTONIC, seconds
 *   bc.thread_cpu()   CLOCK_THREAD_CPUTIME_ID, seconds
 *   bc.nivcsw()       involuntary context switches of the calling thread
 *   bc.repeat_call(fn, k)   calls fn() k times: bench/scale.lua runs it
 *                     under valgrind --tool=callgrind --toggle-collect=
 *                     bench_repeat_call, so only those k calls are counted
 */
#define _GNU_SOURCE
#include <lua.h>
#include <lauxlib.h>
#include <sys/resource.h>
#include <time.h>

static int now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

static int thread_cpu(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

static int nivcsw(lua_State *L)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    lua_pushinteger(L, (lua_Integer)ru.ru_nivcsw);
    return 1;
}

/* Not static, and not inlined: callgrind toggles on its name. */
int bench_repeat_call(lua_State *L, lua_Integer k);

__attribute__((noinline)) int bench_repeat_call(lua_State *L, lua_Integer k)
{
    lua_Integer i;
    for (i = 0; i < k; i++) {
        lua_pushvalue(L, 1);
        lua_call(L, 0, 0);
    }
    return 0;
}

static int repeat_call(lua_State *L)
{
    lua_Integer k = luaL_checkinteger(L, 2);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    return bench_repeat_call(L, k);
}

int luaopen_benchclock(lua_State *L);

int luaopen_benchclock(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"now", now}, {"thread_cpu", thread_cpu}, {"nivcsw", nivcsw},
        {"repeat_call", repeat_call}, {NULL, NULL}
    };
    luaL_newlib(L, fns);
    return 1;
}
