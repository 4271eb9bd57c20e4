/*
 * fuzz/harness.c - the libFuzzer driver shared by every tlspeer fuzz target.
 *
 * Built once per target with -DFUZZ_TARGET='"name"' (see `make fuzz`); it
 * embeds a Lua 5.4 state with tlspeer.core linked in, loads the Lua layer
 * from lua/ and runs fuzz/targets/<name>.lua, which returns a table with
 * init() (once) and run(data) (per input).  Any Lua error that escapes
 * run() is a bug (tlspeer must turn bad input into nil, message, code) and
 * aborts, so libFuzzer records the input as a crash.  So does going over
 * FUZZ_LUA_MEM_MB of Lua memory (unbounded growth).
 *
 * For the TLS targets the harness makes the run reproducible: it replaces
 * mbedtls_ctr_drbg_random with a counter stream per DRBG context (reset
 * before every input) and time() with a fixed instant, so a recorded
 * handshake transcript replays past the ServerHello.  `FUZZ_RECORD=1
 * ./fuzz/build/tls_server` records such transcripts (our client against our
 * server, over an in-memory bridge; and each of ours against the raw peer
 * below, which renegotiates) into fuzz/corpus/tls_{server,client}/.
 *
 * Two more globals for the targets: fuzz_fail(msg) aborts at once (an
 * oracle that fails inside a transport must not be caught by tlspeer's
 * lua_pcall, which would make it a transport error), and
 * fuzz_raw_peer(server, pki) makes a plain mbedtls peer with
 * renegotiation enabled, which tlspeer never offers: the only way a test
 * makes mbedtls 2.28 flush a pending write record while it reads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET='\"name\"'"
#endif
#ifndef FUZZ_ROOT
#error "build with -DFUZZ_ROOT='\"/path/to/tlspeer\"'"
#endif

int luaopen_tlspeer_core(lua_State *L);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------------ deterministic world */

#define FUZZ_NOW ((time_t)1795000000)          /* 2026-11-18 */

time_t time(time_t *t)
{
    if (t != NULL)
        *t = FUZZ_NOW;
    return FUZZ_NOW;
}

#define NSTREAMS 16
static struct {
    const void *ctx;
    uint64_t n;
} streams[NSTREAMS];

static void rng_reset(void)
{
    int i;
    for (i = 0; i < NSTREAMS; i++)
        streams[i].n = 0;
}

/* fuzz_rng_reset(): for the recorder, which replays inputs in-process. */
static int l_rng_reset(lua_State *L)
{
    (void)L;
    rng_reset();
    return 0;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int mbedtls_ctr_drbg_random(void *p_rng, unsigned char *output,
                            size_t output_len)
{
    int i, slot = 0;
    size_t k;
    for (i = 0; i < NSTREAMS; i++) {
        if (streams[i].ctx == p_rng || streams[i].ctx == NULL) {
            streams[i].ctx = p_rng;
            slot = i;
            break;
        }
    }
    for (k = 0; k < output_len; k++) {
        if (k % 8 == 0) {
            uint64_t v = splitmix64(&streams[slot].n);
            size_t j;
            for (j = 0; j < 8 && k + j < output_len; j++)
                output[k + j] = (unsigned char)(v >> (8 * j));
        }
    }
    return 0;
}

/* ------------------------------------------------------- Lua memory */

static size_t lua_mem, lua_mem_limit;

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    size_t old = ptr ? osize : 0;
    void *p;
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        lua_mem -= old;
        return NULL;
    }
    if (nsize > old && lua_mem - old + nsize > lua_mem_limit)
        return NULL;
    p = realloc(ptr, nsize);
    if (p != NULL)
        lua_mem = lua_mem - old + nsize;
    return p;
}

/* --------------------------------------------- the record bridge */

static struct {
    unsigned char *p;
    size_t len, cap, rd;
} bridge[2];                                   /* 0 client->server */

static int bridge_put(lua_State *L)
{
    int dir = (int)luaL_checkinteger(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    luaL_argcheck(L, dir == 0 || dir == 1, 1, "0 or 1");
    if (bridge[dir].len + n > bridge[dir].cap) {
        size_t cap = (bridge[dir].len + n) * 2;
        unsigned char *p = realloc(bridge[dir].p, cap);
        if (p == NULL)
            return luaL_error(L, "out of memory");
        bridge[dir].p = p;
        bridge[dir].cap = cap;
    }
    memcpy(bridge[dir].p + bridge[dir].len, s, n);
    bridge[dir].len += n;
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int bridge_get(lua_State *L)
{
    int dir = (int)luaL_checkinteger(L, 1);
    size_t n = (size_t)luaL_checkinteger(L, 2), avail;
    luaL_argcheck(L, dir == 0 || dir == 1, 1, "0 or 1");
    avail = bridge[dir].len - bridge[dir].rd;
    if (n > avail)
        n = avail;
    if (n == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    lua_pushlstring(L, (const char *)bridge[dir].p + bridge[dir].rd, n);
    bridge[dir].rd += n;
    return 1;
}

/* ------------------------------------------------------- fuzz_fail */

/* fuzz_fail(message): an oracle failed.  Aborts with a traceback, from
 * wherever it is called (a transport's method runs under tlspeer's
 * lua_pcall, which would turn an error() into a transport failure). */
static int fuzz_fail(lua_State *L)
{
    const char *msg = luaL_optstring(L, 1, "(no message)");
    luaL_traceback(L, L, msg, 1);
    fprintf(stderr, "\n== tlspeer fuzz (%s): oracle failed: %s\n", FUZZ_TARGET,
            lua_tostring(L, -1));
    abort();
    return 0;
}

/* -------------------------------------------------------- raw peer */

/* A plain mbedtls 2.28 TLS 1.2 peer, client or server, with renegotiation
 * enabled (tlspeer disables it): fuzz_raw_peer(server, pki) where pki has
 * the PEM strings ca, cert, key (and mtls = true to send / ask for a
 * client certificate).  Its I/O is two byte buffers: peer:feed(s) gives it
 * what the other side sent, peer:take() returns what it wrote.  Methods:
 * handshake() -> true (done) | false (wants more) | nil, msg;
 * write(s) -> n (0: not now) | nil, msg; read(n) -> s ("": nothing) | nil,
 * msg (close_notify: nil, "closed"); renegotiate() (a HelloRequest from a
 * server, a ClientHello from a client) -> true | false | nil, msg;
 * close_notify(); status() -> "handshaking" | "connected" | "error".
 * Its randomness is the harness's counter stream of its own (keyed by the
 * address of raw_rng below), so it never disturbs tlspeer's. */
#define RAW_PEER "tlspeer.fuzz.raw_peer"

typedef struct rawbuf {
    unsigned char *p;
    size_t len, rd;
} rawbuf;

typedef struct raw_peer {
    int ready, server, done, failed;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
    rawbuf in, out;
} raw_peer;

static char raw_rng;                           /* its DRBG "context" */

static int rawbuf_add(rawbuf *b, const unsigned char *s, size_t n)
{
    unsigned char *p;
    if (n == 0)
        return 0;
    p = realloc(b->p, b->len + n);
    if (p == NULL)
        return -1;
    memcpy(p + b->len, s, n);
    b->p = p;
    b->len += n;
    return 0;
}

static int raw_send(void *ctx, const unsigned char *buf, size_t len)
{
    raw_peer *r = ctx;
    if (rawbuf_add(&r->out, buf, len) != 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    return (int)len;
}

static int raw_recv(void *ctx, unsigned char *buf, size_t len)
{
    raw_peer *r = ctx;
    size_t avail = r->in.len - r->in.rd;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > avail)
        len = avail;
    memcpy(buf, r->in.p + r->in.rd, len);
    r->in.rd += len;
    if (r->in.rd == r->in.len)
        r->in.rd = r->in.len = 0;
    return (int)len;
}

static raw_peer *raw_check(lua_State *L)
{
    raw_peer *r = luaL_checkudata(L, 1, RAW_PEER);
    if (!r->ready)
        luaL_error(L, "raw peer freed");
    return r;
}

static int raw_gc(lua_State *L)
{
    raw_peer *r = luaL_checkudata(L, 1, RAW_PEER);
    if (r->ready) {
        mbedtls_ssl_free(&r->ssl);
        mbedtls_ssl_config_free(&r->conf);
        mbedtls_x509_crt_free(&r->ca);
        mbedtls_x509_crt_free(&r->cert);
        mbedtls_pk_free(&r->key);
        free(r->in.p);
        free(r->out.p);
        r->ready = 0;
    }
    return 0;
}

/* nil, message for an mbedtls error; marks the peer failed unless it is
 * only "not now". */
static int raw_error(lua_State *L, raw_peer *r, int ret)
{
    char text[160];
    mbedtls_strerror(ret, text, sizeof text);
    if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    r->failed = 1;
    lua_pushnil(L);
    lua_pushfstring(L, "raw peer: %s (-0x%04x)", text, -ret);
    return 2;
}

static int raw_want(int ret)
{
    return ret == MBEDTLS_ERR_SSL_WANT_READ ||
           ret == MBEDTLS_ERR_SSL_WANT_WRITE ||
           ret == MBEDTLS_ERR_SSL_WAITING_SERVER_HELLO_RENEGO;
}

static int raw_feed(lua_State *L)
{
    raw_peer *r = raw_check(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    if (rawbuf_add(&r->in, (const unsigned char *)s, n) != 0)
        return luaL_error(L, "out of memory");
    return 0;
}

static int raw_take(lua_State *L)
{
    raw_peer *r = raw_check(L);
    lua_pushlstring(L, r->out.len ? (const char *)r->out.p : "", r->out.len);
    r->out.len = 0;
    return 1;
}

static int raw_handshake(lua_State *L)
{
    raw_peer *r = raw_check(L);
    int ret;
    if (r->done) {
        lua_pushboolean(L, 1);
        return 1;
    }
    ret = mbedtls_ssl_handshake(&r->ssl);
    if (ret == 0)
        r->done = 1;
    else if (!raw_want(ret))
        return raw_error(L, r, ret);
    lua_pushboolean(L, r->done);
    return 1;
}

static int raw_write(lua_State *L)
{
    raw_peer *r = raw_check(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    int ret;
    if (!r->done || n == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    ret = mbedtls_ssl_write(&r->ssl, (const unsigned char *)s, n);
    if (ret < 0 && !raw_want(ret))
        return raw_error(L, r, ret);
    lua_pushinteger(L, ret < 0 ? 0 : ret);
    return 1;
}

static int raw_read(lua_State *L)
{
    raw_peer *r = raw_check(L);
    lua_Integer want = luaL_checkinteger(L, 2);
    luaL_Buffer b;
    unsigned char *p;
    int ret, tries = 0;
    if (want < 1 || want > 65536)
        return luaL_argerror(L, 2, "1..65536");
    if (!r->done) {
        lua_pushliteral(L, "");
        return 1;
    }
    p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)want);
    /* A record without data (an alert it ignores, a handshake message)
     * says "want read" though more may wait: read on while input does. */
    do
        ret = mbedtls_ssl_read(&r->ssl, p, (size_t)want);
    while (raw_want(ret) && r->in.len > r->in.rd && ++tries < 256);
    if (ret < 0 && !raw_want(ret))
        return raw_error(L, r, ret);
    luaL_pushresultsize(&b, ret < 0 ? 0 : (size_t)ret);
    return 1;
}

static int raw_renegotiate(lua_State *L)
{
    raw_peer *r = raw_check(L);
    int ret;
    if (!r->done) {
        lua_pushboolean(L, 0);
        return 1;
    }
    ret = mbedtls_ssl_renegotiate(&r->ssl);
    if (ret == MBEDTLS_ERR_SSL_BAD_INPUT_DATA) {   /* one is under way */
        lua_pushboolean(L, 0);
        return 1;
    }
    if (ret != 0 && !raw_want(ret))
        return raw_error(L, r, ret);
    lua_pushboolean(L, 1);
    return 1;
}

static int raw_close_notify(lua_State *L)
{
    raw_peer *r = raw_check(L);
    if (r->done)
        (void)mbedtls_ssl_close_notify(&r->ssl);
    return 0;
}

static int raw_status(lua_State *L)
{
    raw_peer *r = raw_check(L);
    lua_pushstring(L, r->failed ? "error" : r->done ? "connected"
                                                    : "handshaking");
    return 1;
}

static int raw_verified(lua_State *L)
{
    raw_peer *r = raw_check(L);
    lua_pushboolean(L, r->done && mbedtls_ssl_get_peer_cert(&r->ssl) != NULL &&
                           mbedtls_ssl_get_verify_result(&r->ssl) == 0);
    return 1;
}

static const char *raw_pem(lua_State *L, const char *field, size_t *len)
{
    const char *s;
    lua_getfield(L, 2, field);
    s = luaL_checklstring(L, -1, len);
    lua_pop(L, 1);                       /* the pki table keeps it */
    return s;
}

/* luaL_error with the text of an mbedtls error. */
static int raw_setup_error(lua_State *L, const char *what, int ret)
{
    char text[160];
    mbedtls_strerror(ret, text, sizeof text);
    return luaL_error(L, "fuzz_raw_peer: %s: %s", what, text);
}

static int raw_new(lua_State *L)
{
    int server = lua_toboolean(L, 1), mtls, ret;
    size_t len;
    const char *pem;
    raw_peer *r;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "mtls");
    mtls = lua_toboolean(L, -1);
    lua_pop(L, 1);
    r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    luaL_setmetatable(L, RAW_PEER);
    mbedtls_ssl_init(&r->ssl);
    mbedtls_ssl_config_init(&r->conf);
    mbedtls_x509_crt_init(&r->ca);
    mbedtls_x509_crt_init(&r->cert);
    mbedtls_pk_init(&r->key);
    r->ready = 1;
    r->server = server;

    /* PEM parsers want the terminating NUL counted. */
    pem = raw_pem(L, "ca", &len);
    if ((ret = mbedtls_x509_crt_parse(&r->ca, (const unsigned char *)pem,
                                      len + 1)) != 0)
        return raw_setup_error(L, "ca", ret);
    if (server || mtls) {
        pem = raw_pem(L, "cert", &len);
        if ((ret = mbedtls_x509_crt_parse(&r->cert, (const unsigned char *)pem,
                                          len + 1)) != 0)
            return raw_setup_error(L, "cert", ret);
        pem = raw_pem(L, "key", &len);
#if MBEDTLS_VERSION_MAJOR >= 3
        ret = mbedtls_pk_parse_key(&r->key, (const unsigned char *)pem, len + 1,
                                   NULL, 0, mbedtls_ctr_drbg_random, &raw_rng);
#else
        ret = mbedtls_pk_parse_key(&r->key, (const unsigned char *)pem, len + 1,
                                   NULL, 0);
#endif
        if (ret != 0)
            return raw_setup_error(L, "key", ret);
    }
    if ((ret = mbedtls_ssl_config_defaults(&r->conf, server
                                           ? MBEDTLS_SSL_IS_SERVER
                                           : MBEDTLS_SSL_IS_CLIENT,
                                           MBEDTLS_SSL_TRANSPORT_STREAM,
                                           MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
        return raw_setup_error(L, "config", ret);
    mbedtls_ssl_conf_rng(&r->conf, mbedtls_ctr_drbg_random, &raw_rng);
#if MBEDTLS_VERSION_MAJOR < 3
    mbedtls_ssl_conf_max_version(&r->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_min_version(&r->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
#endif
    mbedtls_ssl_conf_renegotiation(&r->conf, MBEDTLS_SSL_RENEGOTIATION_ENABLED);
    mbedtls_ssl_conf_renegotiation_enforced(&r->conf, -1);
    mbedtls_ssl_conf_ca_chain(&r->conf, &r->ca, NULL);
    mbedtls_ssl_conf_authmode(&r->conf, server && mtls
                                            ? MBEDTLS_SSL_VERIFY_REQUIRED
                                            : server ? MBEDTLS_SSL_VERIFY_NONE
                                                     : MBEDTLS_SSL_VERIFY_REQUIRED);
    if (server || mtls)
        if ((ret = mbedtls_ssl_conf_own_cert(&r->conf, &r->cert, &r->key)) != 0)
            return raw_setup_error(L, "own cert", ret);
    if ((ret = mbedtls_ssl_setup(&r->ssl, &r->conf)) != 0)
        return raw_setup_error(L, "setup", ret);
    if (!server && (ret = mbedtls_ssl_set_hostname(&r->ssl, "localhost")) != 0)
        return raw_setup_error(L, "hostname", ret);
    mbedtls_ssl_set_bio(&r->ssl, r, raw_send, raw_recv, NULL);
    return 1;
}

static void raw_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"feed", raw_feed}, {"take", raw_take}, {"handshake", raw_handshake},
        {"write", raw_write}, {"read", raw_read},
        {"renegotiate", raw_renegotiate}, {"close_notify", raw_close_notify},
        {"status", raw_status}, {"is_peer_verified", raw_verified},
        {NULL, NULL}
    };
    luaL_newmetatable(L, RAW_PEER);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, raw_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, raw_new);
    lua_setglobal(L, "fuzz_raw_peer");
}

/* --------------------------------------------------- Lua coverage */

/* Debian's liblua5.4 is not instrumented, so libFuzzer cannot see which
 * lines of the Lua layer (http.lua above all) an input reached.  A
 * line hook feeds it (previous line, line) pairs of those files as extra
 * counters. */
#define LUA_COUNTERS 65536
__attribute__((section("__libfuzzer_extra_counters")))
static unsigned char lua_counters[LUA_COUNTERS];
static const char *last_source;
static int last_source_ours;
static uintptr_t prev_loc;

static void line_hook(lua_State *L, lua_Debug *ar)
{
    uintptr_t loc;
    if (!lua_getinfo(L, "S", ar))
        return;
    if (ar->source != last_source) {
        last_source = ar->source;
        last_source_ours = strstr(ar->source, "/lua/tlspeer/") != NULL;
    }
    if (!last_source_ours)
        return;
    loc = ((uintptr_t)ar->source >> 4) * 31 + (uintptr_t)ar->currentline;
    loc = (loc * 0x9E3779B1u) & (LUA_COUNTERS - 1);
    lua_counters[(loc ^ (prev_loc >> 1)) & (LUA_COUNTERS - 1)]++;
    prev_loc = loc;
}

/* ----------------------------------------------------------- states */

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

/* Calls T[fname](args on the stack) under pcall; aborts on an error. */
static void call(lua_State *L, const char *fname, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs, r;
    lua_pushcfunction(L, traceback);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &lua_mem);
    lua_getfield(L, -1, fname);
    lua_remove(L, -2);
    lua_rotate(L, base + 1, 2);               /* handler, f, args... */
    r = lua_pcall(L, nargs, nres, base + 1);
    if (r != LUA_OK) {
        fprintf(stderr, "\n== tlspeer fuzz (%s): %s escaped from %s():\n%s\n",
                FUZZ_TARGET, r == LUA_ERRMEM ? "Lua memory limit hit (" 
                "unbounded growth?), error" : "a Lua error",
                fname, r == LUA_ERRMEM ? "not enough memory"
                                       : lua_tostring(L, -1));
        abort();
    }
    lua_remove(L, base + 1);                   /* the handler */
}

static lua_State *new_state(const char *target)
{
    lua_State *L = lua_newstate(l_alloc, NULL);
    if (L == NULL)
        abort();
    luaL_openlibs(L);
    luaL_requiref(L, "tlspeer.core", luaopen_tlspeer_core, 0);
    lua_pop(L, 1);
    lua_pushcfunction(L, bridge_put);
    lua_setglobal(L, "fuzz_bridge_put");
    lua_pushcfunction(L, bridge_get);
    lua_setglobal(L, "fuzz_bridge_get");
    lua_pushcfunction(L, fuzz_fail);
    lua_setglobal(L, "fuzz_fail");
    lua_pushcfunction(L, l_rng_reset);
    lua_setglobal(L, "fuzz_rng_reset");
    raw_open(L);
    lua_pushliteral(L, FUZZ_ROOT);
    lua_setglobal(L, "FUZZ_ROOT");
    if (luaL_dostring(L,
            "package.path = FUZZ_ROOT .. '/lua/?.lua;' .. FUZZ_ROOT .. "
            "'/lua/?/init.lua;' .. FUZZ_ROOT .. '/fuzz/targets/?.lua;' .. "
            "package.path") != LUA_OK ||
        luaL_loadfile(L, FUZZ_ROOT "/fuzz/targets/common.lua") != LUA_OK ||
        lua_pcall(L, 0, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pushfstring(L, FUZZ_ROOT "/fuzz/targets/%s.lua", target);
    if (luaL_loadfile(L, lua_tostring(L, -1)) != LUA_OK ||
        lua_pcall(L, 0, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
        fprintf(stderr, "fuzz: cannot load target %s: %s\n", target,
                lua_tostring(L, -1));
        abort();
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &lua_mem);
    lua_pop(L, 1);
    rng_reset();
    call(L, "init", 0, 0);
    if (getenv("FUZZ_NO_LUA_COVERAGE") == NULL)
        lua_sethook(L, line_hook, LUA_MASKLINE, 0);
    return L;
}

/* Writes the seeds a recorder returned: a list of {name, bytes} on top of
 * the stack, names relative to fuzz/corpus/ (popped). */
static void write_seeds(lua_State *L)
{
    lua_Integer i, n = (lua_Integer)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
        char path[512];
        const char *name, *bytes;
        size_t len;
        FILE *f;
        lua_rawgeti(L, -1, i);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        name = lua_tostring(L, -2);
        bytes = lua_tolstring(L, -1, &len);
        if (name == NULL || bytes == NULL) {
            fprintf(stderr, "fuzz: bad seed entry %d\n", (int)i);
            exit(1);
        }
        snprintf(path, sizeof path, FUZZ_ROOT "/fuzz/corpus/%s", name);
        f = fopen(path, "wb");
        if (f == NULL || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
            perror(path);
            exit(1);
        }
        fprintf(stderr, "fuzz: wrote %s (%zu bytes)\n", path, len);
        lua_pop(L, 3);
    }
    lua_pop(L, 1);
}

/* FUZZ_RECORD: our client against our server through the bridge, each in
 * a Lua state of its own (so each draws from its DRBG exactly as it does
 * when fuzzed alone); the two directions become seeds, the target's
 * seeds() adding the schedule headers.  variant 1 adds a client
 * certificate.  Then each TLS target's record_reneg(): ours against the
 * raw peer, which renegotiates (one state: the raw peer has a DRBG stream
 * of its own). */
static void record(void)
{
    static const char *const targets[] = {"tls_server", "tls_client"};
    int variant, d;
    for (variant = 0; variant < 2; variant++) {
        lua_State *S = new_state("tls_server");
        lua_State *C = new_state("tls_client");
        int i;
        for (d = 0; d < 2; d++)
            bridge[d].len = bridge[d].rd = 0;
        rng_reset();
        lua_pushinteger(S, variant);
        call(S, "record_start", 1, 0);
        lua_pushinteger(C, variant);
        call(C, "record_start", 1, 0);
        for (i = 0; i < 200; i++) {
            int sdone, cdone;
            call(S, "record_step", 0, 1);
            sdone = lua_toboolean(S, -1);
            lua_pop(S, 1);
            call(C, "record_step", 0, 1);
            cdone = lua_toboolean(C, -1);
            lua_pop(C, 1);
            if (sdone && cdone)
                break;
        }
        for (d = 0; d < 2; d++) {
            lua_State *L = d == 0 ? S : C;     /* 0: client -> server */
            lua_pushlstring(L, (const char *)bridge[d].p, bridge[d].len);
            lua_pushstring(L, variant ? "mtls" : "plain");
            lua_pushinteger(L, variant);
            call(L, "seeds", 3, 1);
            write_seeds(L);
        }
        lua_close(S);
        lua_close(C);
    }
    for (d = 0; d < 2; d++) {
        lua_State *L = new_state(targets[d]);
        rng_reset();
        call(L, "record_reneg", 0, 1);
        write_seeds(L);
        lua_close(L);
    }
}

/* ---------------------------------------------------------- libFuzzer */

static lua_State *state;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *mb = getenv("FUZZ_LUA_MEM_MB");
    (void)argc;
    (void)argv;
    lua_mem_limit = (size_t)(mb ? atoi(mb) : 512) << 20;
    if (getenv("FUZZ_RECORD") != NULL) {
        record();
        exit(0);
    }
    state = new_state(FUZZ_TARGET);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rng_reset();
    prev_loc = 0;
    lua_pushlstring(state, (const char *)data, size);
    call(state, "run", 1, 0);
    lua_gc(state, LUA_GCCOLLECT);
    return 0;
}
