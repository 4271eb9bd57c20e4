/*
 * cabundle.c - the default CA bundle clients trust: the override file if one
 * is set; else SSL_CERT_FILE / SSL_CERT_DIR; else the operating system's
 * bundle; else the Mozilla bundle shipped with tlspeer.  Loaded once,
 * lazily, and kept in the registry.
 */
/* realpath() is XSI */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include "aux.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef TLSPEER_EMBED_CA_BUNDLE
extern const unsigned char tp_embedded_bundle[];
extern const size_t tp_embedded_bundle_len;
#endif

/* Registry: &bundle_key -> { override = path, override_pem = PEM,
 * cached = X509Certificate, source = where it came from,
 * shipped = { candidate paths }, system = { paths } (the specs' list),
 * loading = the X509Certificate the current load fills, gen = how many
 * times the overrides changed, jobs = the loads (a holder), fills =
 * { [load] = the X509Certificate it fills } while loads run } */
static const char bundle_key = 'b';

static const char *const system_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",        /* Debian, Ubuntu, Arch */
    "/etc/pki/tls/certs/ca-bundle.crt",          /* Fedora, RHEL */
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",                    /* openSUSE */
    "/etc/ssl/cert.pem",                         /* Alpine, macOS, OpenBSD */
    "/usr/local/share/certs/ca-root-nss.crt",    /* FreeBSD */
    "/usr/local/etc/ssl/cert.pem",
    "/etc/certs/ca-certificates.crt",
    NULL
};

static void push_state(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &bundle_key) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &bundle_key);
    }
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---------------------------------------------------------- the load */

/*
 * Parsing the bundle (150 certificates: 15-90 ms) runs on a worker when
 * there is one, so no call holds a frame for it.  What to read is gathered
 * on the Lua thread into a `load` (plain C strings); the worker parses into
 * the load's own chain.  A client's TLSOptions made meanwhile hold the
 * X509Certificate the load will fill; their handshakes wait (without
 * blocking) until it is done (tp_cabundle_settle), and the certificates
 * move into it on the Lua thread.
 */
typedef struct load {
    tp_job job;
    struct load *next;            /* in the running or the settled list */
    const mbedtls_x509_crt *target; /* the X509Certificate it fills */
    mbedtls_x509_crt crt;         /* the worker's result, moved out after */
    int gen;                      /* the overrides it was gathered under */
    int taken;                    /* crt moved into the X509Certificate */
    /* what to read, in order */
    char *pem;                    /* override_pem */
    size_t pem_len;
    char *override;               /* override path */
    char *env_file, *env_dir;     /* SSL_CERT_FILE, SSL_CERT_DIR */
    char **system, **shipped;     /* NULL-terminated: the first that loads */
    /* the outcome */
    char source[300];
    char error[300];
    const char *code;             /* NULL: loaded */
} load;

static void free_list(char **list)
{
    char **p;
    for (p = list; p != NULL && *p != NULL; p++)
        free(*p);
    free(list);
}

static void free_load(load *ld)
{
    if (!ld->taken)
        mbedtls_x509_crt_free(&ld->crt);
    free(ld->pem);
    free(ld->override);
    free(ld->env_file);
    free(ld->env_dir);
    free_list(ld->system);
    free_list(ld->shipped);
    free(ld);
}

/* Parses a file or folder into `crt`, keeping the certificates that parse
 * (a system bundle may hold some this mbedtls cannot read).  Returns how
 * many were loaded. */
static int load_lenient(mbedtls_x509_crt *crt, const char *path, int dir)
{
    int before = 0, after = 0;
    const mbedtls_x509_crt *c;
    for (c = crt; c != NULL && c->raw.p != NULL; c = c->next)
        before++;
    if (dir)
        (void)mbedtls_x509_crt_parse_path(crt, path);
    else
        (void)mbedtls_x509_crt_parse_file(crt, path);
    for (c = crt; c != NULL && c->raw.p != NULL; c = c->next)
        after++;
    return after - before;
}

static void set_source(load *ld, const char *text)
{
    snprintf(ld->source, sizeof ld->source, "%s", text);
}

/* Loads the first file of `list` that yields certificates. */
static int first_loadable(load *ld, char **list)
{
    char **p;
    for (p = list; p != NULL && *p != NULL; p++)
        if (is_file(*p) && load_lenient(&ld->crt, *p, 0) > 0) {
            set_source(ld, *p);
            return 1;
        }
    return 0;
}

/* The load itself, in the lookup order (on a worker, or inline). */
static void run_load(load *ld)
{
    if (ld->pem != NULL) {
        /* Lenient, as for files: the certificates that parse count. */
        (void)mbedtls_x509_crt_parse(&ld->crt, (const unsigned char *)ld->pem,
                                     ld->pem_len + 1);
        if (ld->crt.raw.p == NULL) {
            ld->code = "ERR_INVALID_DATA";
            snprintf(ld->error, sizeof ld->error, "the certificate bundle "
                     "override given as PEM holds no certificate that can "
                     "be read");
        } else
            set_source(ld, "override (PEM in memory)");
        return;
    }
    if (ld->override != NULL) {
        if (!is_file(ld->override) ||
            load_lenient(&ld->crt, ld->override, 0) == 0) {
            ld->code = "ERR_FILE_CANT_OPEN";
            snprintf(ld->error, sizeof ld->error, "the certificate bundle "
                     "override '%s' holds no certificate that can be read",
                     ld->override);
        } else
            snprintf(ld->source, sizeof ld->source, "override %s",
                     ld->override);
        return;
    }
    if (ld->env_file != NULL || ld->env_dir != NULL) {
        int n = 0;
        if (ld->env_file != NULL && is_file(ld->env_file))
            n += load_lenient(&ld->crt, ld->env_file, 0);
        if (ld->env_dir != NULL) {
            char *p, *save;
            for (p = strtok_r(ld->env_dir, ":", &save); p != NULL;
                 p = strtok_r(NULL, ":", &save))
                n += load_lenient(&ld->crt, p, 1);
        }
        if (n > 0) {
            set_source(ld, "SSL_CERT_FILE/SSL_CERT_DIR");
            return;
        }
    }
    if (first_loadable(ld, ld->system) || first_loadable(ld, ld->shipped))
        return;
#ifdef TLSPEER_EMBED_CA_BUNDLE
    /* Baked in by make static EMBED_CA_BUNDLE=1: the last resort. */
    (void)mbedtls_x509_crt_parse(&ld->crt, tp_embedded_bundle,
                                 tp_embedded_bundle_len + 1);
    if (ld->crt.raw.p != NULL) {
        set_source(ld, "the Mozilla bundle built into tlspeer");
        return;
    }
#endif
    ld->code = "ERR_FILE_NOT_FOUND";
    snprintf(ld->error, sizeof ld->error, "no CA bundle found: set "
             "SSL_CERT_FILE, install the ca-certificates package, or call "
             "tls.set_certificate_bundle_override(path)");
}

static void job_run(tp_job *job)
{
    run_load((load *)job);
}

static void job_free(tp_job *job)
{
    free_load((load *)job);
}

static char *dup_or_null(const char *s)
{
    char *d;
    if (s == NULL || *s == '\0')
        return NULL;
    if ((d = malloc(strlen(s) + 1)) != NULL)
        strcpy(d, s);
    return d;
}

/* A copy of the list of paths on top of the stack (popped); NULL for no
 * list.  *oom is set when memory ran out. */
static char **copy_list(lua_State *L, int *oom)
{
    char **list;
    size_t i, n;
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    n = lua_rawlen(L, -1);
    if ((list = calloc(n + 1, sizeof *list)) == NULL) {
        *oom = 1;
        lua_pop(L, 1);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (lua_rawgeti(L, -1, (lua_Integer)i + 1) == LUA_TSTRING &&
            (list[i] = dup_or_null(lua_tostring(L, -1))) == NULL)
            *oom = 1;
        lua_pop(L, 1);
        if (list[i] == NULL)
            break;
    }
    lua_pop(L, 1);
    return list;
}

/* Gathers what to read (state table at `state`; the override skipped when
 * `with_override` is 0).  Returns the load, or NULL and pushes a failure
 * (out of memory). */
static load *gather(lua_State *L, int state, int with_override)
{
    load *ld = calloc(1, sizeof *ld);
    int oom = 0, i;
    if (ld == NULL)
        return NULL;
    mbedtls_x509_crt_init(&ld->crt);
    lua_getfield(L, state, "gen");
    ld->gen = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (with_override) {
        lua_getfield(L, state, "override_pem");
        if (lua_isstring(L, -1)) {
            const char *pem = lua_tolstring(L, -1, &ld->pem_len);
            if ((ld->pem = malloc(ld->pem_len + 1)) == NULL)
                oom = 1;
            else
                memcpy(ld->pem, pem, ld->pem_len + 1);
        }
        lua_pop(L, 1);
        lua_getfield(L, state, "override");
        if (lua_isstring(L, -1) && (ld->override =
                                    dup_or_null(lua_tostring(L, -1))) == NULL)
            oom = 1;
        lua_pop(L, 1);
    }
    ld->env_file = dup_or_null(getenv("SSL_CERT_FILE"));
    ld->env_dir = dup_or_null(getenv("SSL_CERT_DIR"));
    /* The operating system's locations (the specs may replace the list). */
    if (lua_getfield(L, state, "system") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        for (i = 0; system_bundles[i] != NULL; i++) {
            lua_pushstring(L, system_bundles[i]);
            lua_rawseti(L, -2, i + 1);
        }
    }
    ld->system = copy_list(L, &oom);
    lua_getfield(L, state, "shipped");
    ld->shipped = copy_list(L, &oom);
    if (oom) {
        free_load(ld);
        return NULL;
    }
    return ld;
}

/* Whether the load can only fail: nothing it would read is there.  (So
 * that TLSOptions.client() says so at once, as without workers.) */
static int hopeless(const load *ld)
{
    char **p;
    if (ld->pem != NULL)              /* neither PEM nor DER (a SEQUENCE) */
        return strstr(ld->pem, "-----BEGIN CERTIFICATE-----") == NULL &&
               !(ld->pem_len > 0 && (unsigned char)ld->pem[0] == 0x30);
    if (ld->override != NULL)
        return !is_file(ld->override);
    if (ld->env_file != NULL || ld->env_dir != NULL)
        return 0;
#ifdef TLSPEER_EMBED_CA_BUNDLE
    return 0;
#endif
    for (p = ld->system; p != NULL && *p != NULL; p++)
        if (is_file(*p))
            return 0;
    for (p = ld->shipped; p != NULL && *p != NULL; p++)
        if (is_file(*p))
            return 0;
    return 1;
}

/* Pushes the failure of a finished load (nil, message, code): 3. */
static int push_failure(lua_State *L, const load *ld)
{
    return tp_fail(L, ld->code, "%s", ld->error);
}

/* Moves the chain of a finished load into the X509Certificate at `idx`
 * (its chain is empty) and records it as the bundle when the overrides
 * did not change meanwhile.  Returns 1, or pushes a failure: 3. */
static int finish(lua_State *L, int state, int idx, load *ld)
{
    mbedtls_x509_crt *crt = tp_checkcert(L, idx);
    if (ld->code != NULL)
        return push_failure(L, ld);
    mbedtls_x509_crt_free(crt);
    *crt = ld->crt;                   /* the list's head, by value */
    mbedtls_x509_crt_init(&ld->crt);
    ld->taken = 1;
    lua_getfield(L, state, "gen");
    if (lua_tointeger(L, -1) == ld->gen) {
        lua_pushvalue(L, idx);
        lua_setfield(L, state, "cached");
        lua_pushstring(L, ld->source);
        lua_setfield(L, state, "source");
    }
    lua_pop(L, 1);
    return 1;
}

/* The loads of the state: a userdata whose __gc frees them (a load still
 * on a worker is abandoned, and freed there).  Settled loads stay until
 * then: an event loop's watch may still look at their job. */
typedef struct loads {
    load *running;
    load *settled;
} loads;

static int loads_gc(lua_State *L)
{
    loads *h = lua_touserdata(L, 1);
    load *ld, *next;
    for (ld = h->running; ld != NULL; ld = next) {
        next = ld->next;
        tp_job_abandon(&ld->job);
    }
    for (ld = h->settled; ld != NULL; ld = next) {
        next = ld->next;
        free_load(ld);
    }
    h->running = h->settled = NULL;
    return 0;
}

static loads *get_loads(lua_State *L, int state)
{
    loads *h;
    if (lua_getfield(L, state, "jobs") == LUA_TUSERDATA) {
        h = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return h;
    }
    lua_pop(L, 1);
    h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    lua_newtable(L);
    lua_pushcfunction(L, loads_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, state, "jobs");
    lua_newtable(L);
    lua_setfield(L, state, "fills");
    return h;
}

static int ended(load *ld)
{
    int s = tp_job_state(&ld->job);
    return s != TP_JOB_QUEUED && s != TP_JOB_RUNNING;
}

/* Settles one ended load: its certificates move into the X509Certificate
 * it fills; a failure is kept in the state (error, error_code) for the
 * handshakes that waited. */
static void settle_one(lua_State *L, int state, load *ld)
{
    lua_getfield(L, state, "fills");
    lua_rawgetp(L, -1, ld);           /* the X509Certificate */
    lua_pushnil(L);
    lua_rawsetp(L, -3, ld);
    lua_getfield(L, state, "loading");
    if (lua_rawequal(L, -1, -2)) {
        lua_pushnil(L);
        lua_setfield(L, state, "loading");
    }
    lua_pop(L, 1);
    if (tp_job_state(&ld->job) == TP_JOB_LOST) {
        /* Forked while the parent's worker parsed: the chain may be half
         * built in this copy, so it is left alone; the next client loads
         * again here. */
        lua_pop(L, 2);
        return;
    }
    if (finish(L, state, lua_gettop(L), ld) != 1) {    /* nil, msg, code */
        lua_pop(L, 3);
        lua_pushstring(L, ld->error);
        lua_setfield(L, state, "error");
        lua_pushlightuserdata(L, (void *)ld->code);   /* a C literal */
        lua_setfield(L, state, "error_code");
    }
    lua_pop(L, 2);                    /* the X509Certificate, fills */
    ld->next = get_loads(L, state)->settled;
    get_loads(L, state)->settled = ld;
}

/* Settles every load that has ended, after waiting (until `deadline`,
 * tp_now(); 0: not at all; < 0: for ever) for the one that fills `crt`
 * (NULL: none).  Returns 0 while that one still runs, else 1. */
static int settle_loads(lua_State *L, int state, const mbedtls_x509_crt *crt,
                        double deadline)
{
    loads *h = get_loads(L, state);
    load **p = &h->running, *ld;
    int waiting = 0;
    if (crt != NULL && deadline != 0)
        for (ld = h->running; ld != NULL; ld = ld->next)
            if (ld->target == crt)
                tp_job_wait(&ld->job, deadline);
    while ((ld = *p) != NULL) {
        if (ended(ld)) {
            *p = ld->next;
            settle_one(L, state, ld);
        } else {
            if (ld->target == crt)
                waiting = 1;
            p = &ld->next;
        }
    }
    return !waiting;
}

/* Pushes the default bundle, or the X509Certificate a running load will
 * fill (*pending = 1), starting the load if needed; or pushes a failure
 * and returns 3. */
static int push_bundle(lua_State *L, int *pending)
{
    int state, r;
    tp_pool *pool;
    load *ld;
    *pending = 0;
    push_state(L);
    state = lua_gettop(L);
    (void)settle_loads(L, state, NULL, 0);
    if (lua_getfield(L, state, "cached") != LUA_TNIL) {
        lua_remove(L, state);
        return 1;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, state, "loading") != LUA_TNIL) {
        lua_remove(L, state);
        *pending = 1;
        return 1;
    }
    lua_pop(L, 1);
    if ((ld = gather(L, state, 1)) == NULL)
        return luaL_error(L, "out of memory");
    if (hopeless(ld)) {
        run_load(ld);                 /* only stat()s: says why at once */
        r = push_failure(L, ld);
        free_load(ld);
        return r;
    }
    ld->job.run = job_run;
    ld->job.free = job_free;
    pool = tp_pool_get(L, TP_POOL_CPU);
    ld->target = tp_newcert(L);       /* what the load fills */
    if (pool != NULL) {
        loads *h = get_loads(L, state);
        lua_getfield(L, state, "fills");
        lua_pushvalue(L, -2);
        lua_rawsetp(L, -2, ld);       /* anchored before it is queued */
        lua_pop(L, 1);
        if (tp_pool_submit(pool, &ld->job, 0) != 0) {
            lua_getfield(L, state, "fills");
            lua_pushnil(L);
            lua_rawsetp(L, -2, ld);
            lua_pop(L, 1);
            pool = NULL;
        } else {
            ld->next = h->running;
            h->running = ld;
        }
    }
    if (pool != NULL) {
        lua_pushvalue(L, -1);
        lua_setfield(L, state, "loading");
        lua_pushnil(L);
        lua_setfield(L, state, "error");
        lua_remove(L, state);
        *pending = 1;
        return 1;
    }
    run_load(ld);                     /* no workers: here and now */
    r = finish(L, state, lua_gettop(L), ld);
    free_load(ld);
    if (r != 1)
        return r;
    lua_remove(L, state);
    return 1;
}

int tp_cabundle_push(lua_State *L, int *pending)
{
    return push_bundle(L, pending);
}

int tp_cabundle_settle(lua_State *L, const mbedtls_x509_crt *crt,
                       double deadline)
{
    int state, r;
    push_state(L);
    state = lua_gettop(L);
    if (!settle_loads(L, state, crt, deadline))
        r = 0;
    else if (crt->raw.p != NULL)
        r = 1;
    else
        r = -1;                       /* failed (or lost in a fork) */
    lua_settop(L, state - 1);
    return r;
}

const char *tp_cabundle_error(lua_State *L, const char **code)
{
    const char *msg = "the CA bundle was not loaded (the process forked "
                      "while it loaded): try again";
    *code = "ERR_CANT_OPEN";
    push_state(L);
    if (lua_getfield(L, -1, "error") == LUA_TSTRING) {
        msg = lua_tostring(L, -1);    /* anchored in the state table */
        if (lua_getfield(L, -2, "error_code") == LUA_TLIGHTUSERDATA)
            *code = lua_touserdata(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return msg;
}

tp_job *tp_cabundle_job(lua_State *L, const mbedtls_x509_crt *crt)
{
    loads *h;
    load *ld;
    push_state(L);
    h = get_loads(L, lua_gettop(L));
    lua_pop(L, 1);
    for (ld = h->running; ld != NULL; ld = ld->next)
        if (ld->target == crt)
            return &ld->job;
    return NULL;
}

/* The overrides changed (state table on top): a load running now still
 * fills the options that wait for it, but is not the bundle any more. */
static void forget_load(lua_State *L)
{
    lua_getfield(L, -1, "gen");
    lua_pushinteger(L, lua_tointeger(L, -1) + 1);
    lua_setfield(L, -3, "gen");
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, -2, "loading");
}

/* Sets one override (`field`: override or override_pem) from argument 1,
 * unsetting the other: there is one override, as in Godot. */
static int set_either(lua_State *L, const char *field, const char *other)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checkstring(L, 1);
    push_state(L);
    lua_pushvalue(L, 1);
    if (lua_isstring(L, -1) && lua_rawlen(L, -1) == 0) {
        lua_pop(L, 1);
        lua_pushnil(L);              /* "" means unset, as in Godot */
    }
    lua_setfield(L, -2, field);
    lua_pushnil(L);
    lua_setfield(L, -2, other);
    lua_pushnil(L);
    lua_setfield(L, -2, "cached");   /* the next client loads anew */
    forget_load(L);
    return 0;
}

/* tls.set_certificate_bundle_override(path_or_nil) */
static int set_override(lua_State *L)
{
    return set_either(L, "override", "override_pem");
}

/* tls.set_certificate_bundle_override_pem(pem_or_nil): the same override
 * from PEM in memory (a bundle read from a game's archive). */
static int set_override_pem(lua_State *L)
{
    return set_either(L, "override_pem", "override");
}

static int get_override(lua_State *L)
{
    push_state(L);
    lua_getfield(L, -1, "override");
    return 1;
}

/* tls.get_system_ca_certificates() -> PEM of the bundle the system offers
 * (the lookup order without the override).  Blocking: it reads and
 * parses the files here. */
static int get_system_ca_certificates(lua_State *L)
{
    int state, r;
    load *ld;
    push_state(L);
    state = lua_gettop(L);
    if ((ld = gather(L, state, 0)) == NULL)
        return luaL_error(L, "out of memory");
    run_load(ld);
    if (ld->code != NULL) {
        r = push_failure(L, ld);
        free_load(ld);
        return r;
    }
    {
        mbedtls_x509_crt *crt = tp_newcert(L);
        *crt = ld->crt;
        mbedtls_x509_crt_init(&ld->crt);
        ld->taken = 1;
    }
    free_load(ld);
    lua_getfield(L, -1, "save_to_string");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    return 1;
}

/* The default bundle, waited for (blocking) if it is loading: 1, or a
 * failure pushed: 3. */
static int push_bundle_now(lua_State *L)
{
    int pending, r = tp_cabundle_push(L, &pending);
    if (r != 1 || !pending)
        return r;
    if (tp_cabundle_settle(L, tp_checkcert(L, -1), -1) < 0) {
        const char *code, *msg = tp_cabundle_error(L, &code);
        lua_pop(L, 1);
        return tp_fail(L, code, "%s", msg);
    }
    return 1;
}

/* tls.get_certificate_bundle_source() -> where the default bundle came
 * from (loads it if needed, blocking), or nil, message, code. */
static int get_source(lua_State *L)
{
    int r = push_bundle_now(L);
    if (r != 1)
        return r;
    push_state(L);
    lua_getfield(L, -1, "source");
    return 1;
}

/* tls.preload_certificate_bundle([wait]) -> true (loaded), false (loading
 * on a worker), or nil, message, code.  For a loading screen: the first
 * client that trusts the default bundle then finds it ready.  With `wait`
 * true it blocks until the bundle is loaded. */
static int preload(lua_State *L)
{
    int pending, r;
    if (lua_toboolean(L, 1)) {
        if ((r = push_bundle_now(L)) != 1)
            return r;
        lua_pushboolean(L, 1);
        return 1;
    }
    if ((r = tp_cabundle_push(L, &pending)) != 1)
        return r;
    lua_pushboolean(L, !pending);
    return 1;
}

/* core._set_shipped_bundles{paths}: where the Lua layer found the bundled
 * Mozilla file (next to the installed module, or certs/ in a checkout).
 * Trust never comes from a path relative to the current directory: each
 * path is made absolute now, when the module has just been loaded from
 * there (realpath), and one that does not exist now is dropped. */
static int set_shipped(lua_State *L)
{
    int i, n = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    push_state(L);
    lua_newtable(L);
    for (i = 1; lua_rawgeti(L, 1, i) != LUA_TNIL; i++) {
        char *abs;
        if (lua_type(L, -1) == LUA_TSTRING &&
            (abs = realpath(lua_tostring(L, -1), NULL)) != NULL) {
            lua_pushstring(L, abs);
            free(abs);
            lua_rawseti(L, -3, ++n);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_setfield(L, -2, "shipped");
    return 0;
}

/* core._set_system_bundles{paths} or nil: replaces the list of operating
 * system locations (for the specs of the lookup order). */
static int set_system(lua_State *L)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    push_state(L);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "system");
    lua_pushnil(L);
    lua_setfield(L, -2, "cached");
    forget_load(L);
    return 0;
}

void tp_open_cabundle(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"set_certificate_bundle_override", set_override},
        {"set_certificate_bundle_override_pem", set_override_pem},
        {"get_certificate_bundle_override", get_override},
        {"get_system_ca_certificates", get_system_ca_certificates},
        {"get_certificate_bundle_source", get_source},
        {"preload_certificate_bundle", preload},
        {"_set_shipped_bundles", set_shipped},
        {"_set_system_bundles", set_system},
        {NULL, NULL}
    };
    luaL_setfuncs(L, fns, 0);
}
