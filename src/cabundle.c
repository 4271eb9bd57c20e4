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
 * shipped = { candidate paths } } */
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

/* Loads into `crt` the first file of the Lua list on top of the stack that
 * yields certificates; replaces the list by that path and returns 1, or
 * pops the list and returns 0. */
static int first_loadable(lua_State *L, mbedtls_x509_crt *crt)
{
    int i;
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    for (i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
        const char *path = lua_tostring(L, -1);
        if (is_file(path) && load_lenient(crt, path, 0) > 0) {
            lua_remove(L, -2);
            return 1;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);                    /* what ended the list, the list */
    return 0;
}

/* Loads the bundle, skipping the override when `with_override` is 0.
 * Pushes an X509Certificate and the name of its source, or a failure. */
static int load_bundle(lua_State *L, int state, int with_override)
{
    mbedtls_x509_crt *crt;
    const char *file = getenv("SSL_CERT_FILE");
    const char *dir = getenv("SSL_CERT_DIR");
    int i, n;

    if (with_override) {
        lua_getfield(L, state, "override_pem");
        if (!lua_isnil(L, -1)) {
            size_t len;
            const char *pem = lua_tolstring(L, -1, &len);
            crt = tp_newcert(L);
            /* Lenient, as for files: the certificates that parse count. */
            (void)mbedtls_x509_crt_parse(crt, (const unsigned char *)pem,
                                         len + 1);
            if (crt->raw.p == NULL)
                return tp_fail(L, "ERR_INVALID_DATA", "the certificate "
                               "bundle override given as PEM holds no "
                               "certificate that can be read");
            lua_pushliteral(L, "override (PEM in memory)");
            return 2;
        }
        lua_pop(L, 1);
        lua_getfield(L, state, "override");
        if (!lua_isnil(L, -1)) {
            const char *path = lua_tostring(L, -1);
            crt = tp_newcert(L);
            if (!is_file(path) || load_lenient(crt, path, 0) == 0)
                return tp_fail(L, "ERR_FILE_CANT_OPEN", "the certificate "
                               "bundle override '%s' holds no certificate "
                               "that can be read", path);
            lua_pushfstring(L, "override %s", path);
            return 2;
        }
        lua_pop(L, 1);
    }
    crt = tp_newcert(L);
    if ((file && *file) || (dir && *dir)) {
        n = 0;
        if (file && *file && is_file(file))
            n += load_lenient(crt, file, 0);
        if (dir && *dir) {
            char *copy = (char *)tp_scratch(L, strlen(dir) + 1), *p, *save;
            strcpy(copy, dir);
            for (p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save))
                n += load_lenient(crt, p, 1);
            lua_pop(L, 1);
        }
        if (n > 0) {
            lua_pushliteral(L, "SSL_CERT_FILE/SSL_CERT_DIR");
            return 2;
        }
    }
    /* The operating system's locations (the specs may replace the list). */
    if (lua_getfield(L, state, "system") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        for (i = 0; system_bundles[i] != NULL; i++) {
            lua_pushstring(L, system_bundles[i]);
            lua_rawseti(L, -2, i + 1);
        }
    }
    if (first_loadable(L, crt))
        return 2;
    lua_getfield(L, state, "shipped");
    if (first_loadable(L, crt))
        return 2;
#ifdef TLSPEER_EMBED_CA_BUNDLE
    /* Baked in by make static EMBED_CA_BUNDLE=1: the last resort. */
    (void)mbedtls_x509_crt_parse(crt, tp_embedded_bundle,
                                 tp_embedded_bundle_len + 1);
    if (crt->raw.p != NULL) {
        lua_pushliteral(L, "the Mozilla bundle built into tlspeer");
        return 2;
    }
#endif
    return tp_fail(L, "ERR_FILE_NOT_FOUND", "no CA bundle found: set "
                   "SSL_CERT_FILE, install the ca-certificates package, or "
                   "call tls.set_certificate_bundle_override(path)");
}

int tp_cabundle_push(lua_State *L)
{
    int state, r;
    push_state(L);
    state = lua_gettop(L);
    if (lua_getfield(L, state, "cached") != LUA_TNIL) {
        lua_remove(L, state);
        return 1;
    }
    lua_pop(L, 1);
    r = load_bundle(L, state, 1);
    if (r != 2) {
        lua_remove(L, state);
        return r;
    }
    lua_setfield(L, state, "source");
    lua_pushvalue(L, -1);
    lua_setfield(L, state, "cached");
    lua_remove(L, state);
    return 1;
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
 * (the lookup order without the override). */
static int get_system_ca_certificates(lua_State *L)
{
    int state, r;
    push_state(L);
    state = lua_gettop(L);
    r = load_bundle(L, state, 0);
    if (r != 2)
        return r;
    lua_pop(L, 1);
    lua_getfield(L, -1, "save_to_string");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    return 1;
}

/* tls.get_certificate_bundle_source() -> where the default bundle came
 * from (loads it if needed), or nil, message, code. */
static int get_source(lua_State *L)
{
    int r = tp_cabundle_push(L);
    if (r != 1)
        return r;
    push_state(L);
    lua_getfield(L, -1, "source");
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
        {"_set_shipped_bundles", set_shipped},
        {"_set_system_bundles", set_system},
        {NULL, NULL}
    };
    luaL_setfuncs(L, fns, 0);
}
