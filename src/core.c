/*
 * core.c - luaopen_tlspeer_core: the C half of the tlspeer module.
 * lua/tlspeer/init.lua wraps the table this returns.
 */
#include "aux.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

#include <mbedtls/version.h>

TP_EXPORT int luaopen_tlspeer_core(lua_State *L);

/*
 * core._wait(readers, writers, timeout): blocks with one poll(2) until a
 * socket of the objects in `readers` is readable, one in `writers` is
 * writable, an object has data buffered already, or `timeout` seconds pass.
 * The objects are TCPServers, StreamPeerTCPs and StreamPeerTLSs (over TCP);
 * others are ignored.  Returns the number of ready sockets.
 */
static int core_wait(lua_State *L)
{
    struct pollfd stack_fds[65], *fds = stack_fds;
    lua_Integer nr, nw, i;
    double timeout = luaL_optnumber(L, 3, -1);
    int n = 0, ready = 0, r, worker = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    nr = (lua_Integer)lua_rawlen(L, 1);
    nw = lua_istable(L, 2) ? (lua_Integer)lua_rawlen(L, 2) : 0;
    if (nr + nw > 64)
        fds = lua_newuserdatauv(L, sizeof *fds * (size_t)(nr + nw + 1), 0);
    for (i = 1; i <= nr + nw; i++) {
        int fd;
        lua_rawgeti(L, i <= nr ? 1 : 2, i <= nr ? i : i - nr);
        fd = tp_tcp_pollfd(L, -1, &ready);
        if (fd == -1)
            fd = tp_tls_pollfd(L, -1, &ready);
        lua_pop(L, 1);
        if (fd == TP_POLLFD_WORKER)
            worker = 1;
        if (fd < 0)
            continue;
        fds[n].fd = fd;
        fds[n].events = i <= nr ? POLLIN : POLLOUT;
        fds[n].revents = 0;
        n++;
    }
    if (worker)
        tp_pools_kick(L);
    if (worker && tp_wake_fd(L) >= 0) {
        /* A lookup or handshake step on a worker: its end wakes us. */
        fds[n].fd = tp_wake_fd(L);
        fds[n].events = POLLIN;
        fds[n].revents = 0;
        n++;
    }
    if (ready)
        timeout = 0;
    do
        r = poll(fds, (nfds_t)n, timeout < 0 ? -1
                 : (int)(timeout * 1000.0 + 0.5));
    while (r < 0 && errno == EINTR);
    if (worker)
        tp_wake_drain(L);
    lua_pushinteger(L, r < 0 ? 0 : r + ready);
    return 1;
}

/* core._check_host(name) -> true, or nil, message, "ERR_INVALID_PARAMETER":
 * the host-name rules of tp_check_hostname, for the Lua layer (HTTPClient,
 * tls.request, tls.connect) to apply where a host enters. */
static int core_check_host(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char why[120];
    if (tp_check_hostname(s, len, why, sizeof why) != 0) {
        tp_pushprintable(L, s, len, 80);
        return tp_fail(L, "ERR_INVALID_PARAMETER", "invalid host name '%s': "
                       "%s", lua_tostring(L, -1), why);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core._is_integer(v): whether v is a number with an integral value that
 * fits lua_Integer (math.type(v) == "integer" on 5.3+, for every runtime). */
static int core_is_integer(lua_State *L)
{
    lua_pushboolean(L, tp_isinteger(L, 1));
    return 1;
}

/* core._now(): a monotonic clock in seconds. */
static int core_now(lua_State *L)
{
    lua_pushnumber(L, tp_now());
    return 1;
}

/* core._join(list): the strings list[1..#list] as one string, made with
 * one allocation and one copy (lua_concat; table.concat grows a buffer by
 * doubling, and a body of 5 MB cost 3-5 ms: more than a frame's share).
 * Parts go in groups, so a list of any length fits the stack. */
static int core_join(lua_State *L)
{
    lua_Integer n, i = 1;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = (lua_Integer)lua_rawlen(L, 1);
    lua_settop(L, 1);
    lua_pushliteral(L, "");
    while (i <= n) {
        int k = 0;
        luaL_checkstack(L, 1024, "joining strings");
        while (i <= n && k < 1000) {
            if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
                return luaL_error(L, "bad item #%d to '_join' (string expected)", (int)i);
            i++;
            k++;
        }
        lua_concat(L, k + 1);
    }
    return 1;
}

/* core._sleep(seconds) */
static int core_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (s > 0) {
        struct timespec ts;
        ts.tv_sec = (time_t)s;
        ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return 0;
}

int luaopen_tlspeer_core(lua_State *L)
{
    char version[32];

    tp_keep_loaded();
    if (tp_mbedtls_global_init() != 0)
        return luaL_error(L, "tlspeer: cannot initialise mbedtls' crypto");
    if (tp_rng_open(L) != 0)
        return luaL_error(L, "tlspeer: %s", lua_tostring(L, -2));

    lua_newtable(L);
    tp_open_crypto(L);
    lua_setfield(L, -2, "Crypto");
    tp_open_key(L);
    lua_setfield(L, -2, "CryptoKey");
    tp_open_x509(L);
    lua_setfield(L, -2, "X509Certificate");
    tp_open_hashing(L);   /* pushes three classes */
    lua_setfield(L, -4, "AESContext");
    lua_setfield(L, -3, "HMACContext");
    lua_setfield(L, -2, "HashingContext");

    tp_open_tcp(L);       /* pushes two classes */
    lua_setfield(L, -3, "TCPServer");
    lua_setfield(L, -2, "StreamPeerTCP");

    tp_open_options(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "TLSOptions");
    tp_open_tls(L);       /* uses the TLSOptions class below it */
    lua_setfield(L, -3, "StreamPeerTLS");
    lua_pop(L, 1);
    tp_open_cabundle(L);  /* functions on the module table */
    tp_open_workers(L);
    tp_open_event(L);
    tp_open_zstream(L);
    tp_open_wsframe(L);   /* core._ws_*: WebSocket frames */

    /* The methods tables, for the Lua layer (the shared StreamPeer methods,
     * the class tables' introspection). */
    lua_newtable(L);
    {
        static const char *const classes[] = {
            TP_CRYPTO, TP_CRYPTOKEY, TP_X509, TP_HASHING, TP_HMAC, TP_AES,
            TP_TCP, TP_TCPSERVER, TP_TLS, TP_OPTIONS, NULL};
        int i;
        for (i = 0; classes[i] != NULL; i++) {
            luaL_getmetatable(L, classes[i]);
            lua_getfield(L, -1, "__index");
            lua_setfield(L, -3, tp_classname(classes[i]));
            lua_pop(L, 1);
        }
    }
    lua_setfield(L, -2, "_methods");

    lua_pushcfunction(L, core_wait);
    lua_setfield(L, -2, "_wait");
    lua_pushcfunction(L, core_is_integer);
    lua_setfield(L, -2, "_is_integer");
    lua_pushcfunction(L, core_check_host);
    lua_setfield(L, -2, "_check_host");
    lua_pushcfunction(L, core_now);
    lua_setfield(L, -2, "_now");
    lua_pushcfunction(L, core_sleep);
    lua_setfield(L, -2, "_sleep");
    lua_pushcfunction(L, core_join);
    lua_setfield(L, -2, "_join");

    mbedtls_version_get_string(version);
    lua_pushstring(L, version);
    lua_setfield(L, -2, "mbedtls_version");
    return 1;
}
