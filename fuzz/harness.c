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
 * server, over an in-memory bridge) into fuzz/corpus/tls_{server,client}/.
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

/* FUZZ_RECORD: our client against our server through the bridge; the two
 * directions become seeds.  variant 1 adds a client certificate. */
static void record(void)
{
    int variant;
    for (variant = 0; variant < 2; variant++) {
        lua_State *S = new_state("tls_server");
        lua_State *C = new_state("tls_client");
        int i, d;
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
            static const unsigned char prefixes[] = {0x00, 0x05, 0x83};
            size_t k;
            for (k = 0; k < sizeof prefixes; k++) {
                char path[512];
                FILE *f;
                snprintf(path, sizeof path,
                         FUZZ_ROOT "/fuzz/corpus/%s/recorded_%s_%02x",
                         d == 0 ? "tls_server" : "tls_client",
                         variant ? "mtls" : "plain", prefixes[k]);
                f = fopen(path, "wb");
                if (f == NULL) {
                    perror(path);
                    exit(1);
                }
                fputc(prefixes[k], f);
                fwrite(bridge[d].p, 1, bridge[d].len, f);
                fclose(f);
                fprintf(stderr, "fuzz: wrote %s (%zu bytes)\n", path,
                        bridge[d].len + 1);
            }
        }
        lua_close(S);
        lua_close(C);
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
