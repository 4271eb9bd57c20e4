/*
 * compat.h - every difference between the Lua and mbedtls versions tlspeer
 * builds against, in one place.  Source files include this instead of
 * testing version macros themselves.
 *
 * mbedtls: 2.28 LTS (Debian bookworm) and 3.6 LTS.
 * Lua:     5.1, LuaJIT 2.1, 5.2, 5.3 and 5.4.
 */
#ifndef TLSPEER_COMPAT_H
#define TLSPEER_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <string.h>

#include <mbedtls/version.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#include <mbedtls/build_info.h>
#else
#include <mbedtls/config.h>
#endif

#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>
#include <mbedtls/ctr_drbg.h>

/* ---------------------------------------------------------------- Lua */

/*
 * tlspeer is written against Lua 5.4's API; for 5.1, LuaJIT 2.1, 5.2 and
 * 5.3 the functions it uses are provided here (static inline, so each file
 * that needs one gets its own copy and nothing is exported).  LuaJIT has a
 * few of 5.2's functions itself (luaL_setfuncs, luaL_testudata,
 * luaL_setmetatable, lua_tointegerx); the macros below replace them with
 * these copies, so 5.1 and LuaJIT need no telling apart.
 */

#ifndef LUA_OK
#define LUA_OK 0
#endif

/* Integers: 5.1 and 5.2 convert any number with luaL_checkinteger
 * (truncating 1.5 to 1); tlspeer wants an integral value, as 5.3 does. */
#if LUA_VERSION_NUM >= 503
#define tp_checkinteger(L, arg) luaL_checkinteger((L), (arg))
#define tp_isinteger(L, idx)    lua_isinteger((L), (idx))
#else
static inline int tp_integral(lua_Number n)
{
    return n >= -9223372036854775808.0 && n < 9223372036854775808.0 &&
           (lua_Number)(lua_Integer)n == n;
}
/* A number (not a string) with an integral value: lua_isinteger's test. */
static inline int tp_isinteger(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TNUMBER && tp_integral(lua_tonumber(L, idx));
}
/* As 5.3's luaL_checkinteger: a number or numeric string, integral. */
static inline lua_Integer tp_checkinteger(lua_State *L, int arg)
{
    lua_Number n = luaL_checknumber(L, arg);
    if (!tp_integral(n))
        luaL_argerror(L, arg, "number has no integer representation");
    return (lua_Integer)n;
}
#endif

/* Whether lua_Integer holds every 64-bit value (5.3, 5.4); elsewhere
 * 64-bit values travel as numbers, exact up to 2^53. */
#define TP_INT64 (LUA_VERSION_NUM >= 503)

#if LUA_VERSION_NUM < 502                           /* 5.1, LuaJIT */

#define lua_rawlen(L, i)     lua_objlen((L), (i))
#define lua_absindex(L, i) \
    ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)

static inline void tp_compat_rawgetp(lua_State *L, int idx, const void *p)
{
    idx = lua_absindex(L, idx);
    lua_pushlightuserdata(L, (void *)p);
    lua_rawget(L, idx);
}
static inline void tp_compat_rawsetp(lua_State *L, int idx, const void *p)
{
    idx = lua_absindex(L, idx);
    lua_pushlightuserdata(L, (void *)p);
    lua_insert(L, -2);
    lua_rawset(L, idx);
}
#define lua_rawgetp(L, i, p) (tp_compat_rawgetp((L), (i), (p)), lua_type((L), -1))
#define lua_rawsetp(L, i, p) tp_compat_rawsetp((L), (i), (p))

static inline void tp_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    luaL_checkstack(L, nup, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#define luaL_setfuncs(L, l, n) tp_compat_setfuncs((L), (l), (n))

static inline void *tp_compat_testudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    if (p == NULL || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2))
        p = NULL;
    lua_pop(L, 2);
    return p;
}
#define luaL_testudata(L, i, t) tp_compat_testudata((L), (i), (t))

#define luaL_setmetatable(L, t) \
    (luaL_getmetatable((L), (t)), lua_setmetatable((L), -2))

static inline lua_Integer tp_compat_tointegerx(lua_State *L, int idx, int *isnum)
{
    int ok = tp_isinteger(L, idx);
    if (isnum != NULL)
        *isnum = ok;
    return ok ? (lua_Integer)lua_tonumber(L, idx) : 0;
}
#define lua_tointegerx(L, i, n) tp_compat_tointegerx((L), (i), (n))

/* luaL_Buffer: 5.1 prepares LUAL_BUFFERSIZE bytes at a time. */
#define TP_BUFFER_CHUNK LUAL_BUFFERSIZE
#define luaL_prepbuffsize(B, n) luaL_prepbuffer(B)

/* The user values of a userdata live in a table, its environment. */
#define tp_compat_getuvtable(L, i) lua_getfenv((L), (i))
#define tp_compat_setuvtable(L, i) lua_setfenv((L), (i))

#else                                               /* 5.2 - 5.4 */

#define TP_BUFFER_CHUNK (64 * 1024)
#define tp_compat_getuvtable(L, i) lua_getuservalue((L), (i))
#define tp_compat_setuvtable(L, i) lua_setuservalue((L), (i))

#endif

/* lua_getfield and friends return the value's type from 5.3 on. */
#if LUA_VERSION_NUM < 503
static inline int tp_compat_getfield(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    return lua_type(L, -1);
}
static inline int tp_compat_rawgeti(lua_State *L, int idx, lua_Integer n)
{
    lua_rawgeti(L, idx, (int)n);
    return lua_type(L, -1);
}
#define lua_getfield(L, i, k) tp_compat_getfield((L), (i), (k))
#define lua_rawgeti(L, i, n)  tp_compat_rawgeti((L), (i), (n))
#endif
#if LUA_VERSION_NUM == 502
static inline int tp_compat_rawgetp52(lua_State *L, int idx, const void *p)
{
    lua_rawgetp(L, idx, p);
    return lua_type(L, -1);
}
#define lua_rawgetp(L, i, p) tp_compat_rawgetp52((L), (i), (p))
#endif

/* luaL_checkoption, refusing a non-string everywhere: LuaJIT's takes any
 * value that is not a string for the default. */
static inline int tp_checkoption(lua_State *L, int arg, const char *def,
                                 const char *const list[])
{
    int t = lua_type(L, arg);
    if (t != LUA_TNONE && t != LUA_TNIL && t != LUA_TSTRING &&
        t != LUA_TNUMBER)
        luaL_argerror(L, arg, lua_pushfstring(L, "string expected, got %s",
                                              luaL_typename(L, arg)));
    {
        const char *name = def ? luaL_optstring(L, arg, def)
                               : luaL_checkstring(L, arg);
        luaL_Buffer b;
        int i;
        for (i = 0; list[i] != NULL; i++)
            if (strcmp(list[i], name) == 0)
                return i;
        /* The message names every choice: "invalid option 'P-384'
         * (expected "secp256r1", "secp384r1" or "secp521r1")". */
        luaL_buffinit(L, &b);
        lua_pushfstring(L, "invalid option '%s' (expected ", name);
        luaL_addvalue(&b);
        for (i = 0; list[i] != NULL; i++) {
            if (i > 0)
                luaL_addstring(&b, list[i + 1] != NULL ? ", " : " or ");
            luaL_addchar(&b, '"');
            luaL_addstring(&b, list[i]);
            luaL_addchar(&b, '"');
        }
        luaL_addchar(&b, ')');
        luaL_pushresult(&b);
        return luaL_argerror(L, arg, lua_tostring(L, -1));
    }
}

/* Several user values per userdata is 5.4's; before, the one user value
 * (5.2, 5.3) or the environment (5.1) holds a table of them. */
#if LUA_VERSION_NUM < 504
static inline void *tp_compat_newuserdatauv(lua_State *L, size_t size, int nuv)
{
    void *p = lua_newuserdata(L, size);
    if (nuv > 0) {
        lua_createtable(L, nuv, 0);
        tp_compat_setuvtable(L, -2);
    }
    return p;
}
static inline int tp_compat_getiuservalue(lua_State *L, int idx, int n)
{
    idx = lua_absindex(L, idx);
    tp_compat_getuvtable(L, idx);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return LUA_TNONE;
    }
    lua_rawgeti(L, -1, n);
    lua_remove(L, -2);
    return lua_type(L, -1);
}
static inline int tp_compat_setiuservalue(lua_State *L, int idx, int n)
{
    idx = lua_absindex(L, idx);
    tp_compat_getuvtable(L, idx);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 2);
        return 0;
    }
    lua_insert(L, -2);
    lua_rawseti(L, -2, n);
    lua_pop(L, 1);
    return 1;
}
#define lua_newuserdatauv(L, s, n)  tp_compat_newuserdatauv((L), (s), (n))
#define lua_getiuservalue(L, i, n)  tp_compat_getiuservalue((L), (i), (n))
#define lua_setiuservalue(L, i, n)  tp_compat_setiuservalue((L), (i), (n))

#define luaL_typeerror(L, arg, tname) \
    luaL_argerror((L), (arg), lua_pushfstring((L), "%s expected, got %s", \
                  (tname), luaL_typename((L), (arg))))
#endif

/* ------------------------------------------------------------ mbedtls */

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define TP_MBEDTLS3 1
#else
#define TP_MBEDTLS3 0
#endif

/* Struct members that 3.x made private are reached through this macro;
 * 2.28 has them public under the same names. */
#ifndef MBEDTLS_PRIVATE
#define MBEDTLS_PRIVATE(member) member
#endif

#if TP_MBEDTLS3

#define tp_pk_parse_key(pk, key, len, pw, pwlen, rng) \
    mbedtls_pk_parse_key((pk), (key), (len), (pw), (pwlen), \
                         tp_rng_random, (rng))
#define tp_pk_check_pair(pub, prv, rng) \
    mbedtls_pk_check_pair((pub), (prv), tp_rng_random, (rng))
#define tp_pk_sign(pk, md, hash, hlen, sig, sigsize, siglen, rng) \
    mbedtls_pk_sign((pk), (md), (hash), (hlen), (sig), (sigsize), (siglen), \
                    tp_rng_random, (rng))
#define tp_x509write_crt_set_serial_raw(crt, buf, len) \
    mbedtls_x509write_crt_set_serial_raw((crt), (buf), (len))

#else /* 2.28 */

#define tp_pk_parse_key(pk, key, len, pw, pwlen, rng) \
    ((void)(rng), mbedtls_pk_parse_key((pk), (key), (len), (pw), (pwlen)))
#define tp_pk_check_pair(pub, prv, rng) \
    ((void)(rng), mbedtls_pk_check_pair((pub), (prv)))
#define tp_pk_sign(pk, md, hash, hlen, sig, sigsize, siglen, rng) \
    ((void)(sigsize), mbedtls_pk_sign((pk), (md), (hash), (hlen), (sig), \
                                      (siglen), tp_rng_random, (rng)))
int tp_x509write_crt_set_serial_raw(mbedtls_x509write_cert *crt,
                                    unsigned char *buf, size_t len);

#endif

/* Curve of an EC key (3.6 hides the group behind an accessor). */
#if MBEDTLS_VERSION_NUMBER >= 0x03060000
#define tp_pk_ec_group_id(pk) \
    mbedtls_ecp_keypair_get_group_id(mbedtls_pk_ec(*(pk)))
#else
#define tp_pk_ec_group_id(pk) (mbedtls_pk_ec(*(pk))->MBEDTLS_PRIVATE(grp).id)
#endif

/* The digest a started mbedtls_md_context_t was set up with. */
#define tp_md_info_from_ctx(ctx) ((ctx)->MBEDTLS_PRIVATE(md_info))

/* The DER a PEM context decoded. */
#define tp_pem_buf(ctx)    ((ctx)->MBEDTLS_PRIVATE(buf))
#define tp_pem_buflen(ctx) ((ctx)->MBEDTLS_PRIVATE(buflen))

/* Whether a parsed certificate has basicConstraints CA:TRUE. */
#define tp_crt_is_ca(crt) ((crt)->MBEDTLS_PRIVATE(ca_istrue) != 0)

/* 2.28 cannot decrypt PKCS#8 keys encrypted with PBES2 + AES-CBC, which is
 * what OpenSSL 3 writes for `-aes256`; key.c carries a decoder for it. */
#if !TP_MBEDTLS3
#define TP_NEED_PBES2_AES 1
#else
#define TP_NEED_PBES2_AES 0
#endif

/* PBKDF2 with an HMAC of `md` (2.28 takes a context, 3.x a digest type). */
int tp_pkcs5_pbkdf2_sha(mbedtls_md_type_t md, const unsigned char *pw,
                        size_t pwlen, const unsigned char *salt,
                        size_t saltlen, unsigned int iterations,
                        unsigned char *out, size_t outlen);

/* ---------------------------------------------------------------- TLS */

#include <stdint.h>
#include <mbedtls/ssl.h>

/* Protocol versions: 2.28 speaks TLS 1.2 at most; 3.6 adds TLS 1.3. */
#if TP_MBEDTLS3 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
#define TP_HAVE_TLS13 1
#else
#define TP_HAVE_TLS13 0
#endif

#if TP_MBEDTLS3
#define tp_ssl_conf_min_tls12(conf) \
    mbedtls_ssl_conf_min_tls_version((conf), MBEDTLS_SSL_VERSION_TLS1_2)
#define tp_ssl_conf_min_tls13(conf) \
    mbedtls_ssl_conf_min_tls_version((conf), MBEDTLS_SSL_VERSION_TLS1_3)
#define tp_ssl_conf_max_tls12(conf) \
    mbedtls_ssl_conf_max_tls_version((conf), MBEDTLS_SSL_VERSION_TLS1_2)
#else
#define tp_ssl_conf_min_tls12(conf) \
    mbedtls_ssl_conf_min_version((conf), MBEDTLS_SSL_MAJOR_VERSION_3, \
                                 MBEDTLS_SSL_MINOR_VERSION_3)
#define tp_ssl_conf_min_tls13(conf) ((void)(conf))
#define tp_ssl_conf_max_tls12(conf) \
    mbedtls_ssl_conf_max_version((conf), MBEDTLS_SSL_MAJOR_VERSION_3, \
                                 MBEDTLS_SSL_MINOR_VERSION_3)
#endif

/* Bytes of an encrypted record mbedtls_ssl_write committed but could not
 * flush yet (the next write call flushes them and reports them written). */
#define tp_ssl_out_left(ssl) ((ssl)->MBEDTLS_PRIVATE(out_left))

/* Bytes of an incoming record read so far, while the rest is awaited (a
 * stream transport: 0 between records). */
#define tp_ssl_in_left(ssl) ((ssl)->MBEDTLS_PRIVATE(in_left))

/* The record buffers mbedtls allocates whole for each context (read only
 * to give an idle connection's pages back), and the lengths they have at
 * least.  With MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH they are reallocated to
 * other lengths: then they are left alone. */
#define tp_ssl_in_buf(ssl)  ((ssl)->MBEDTLS_PRIVATE(in_buf))
#define tp_ssl_out_buf(ssl) ((ssl)->MBEDTLS_PRIVATE(out_buf))
#if defined(MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH)
#define TP_TRIM_BUFFERS 0
#else
#define TP_TRIM_BUFFERS 1
#endif

/* Key exchange groups, in order of preference: X25519 and P-256 first (fast
 * and widely supported), then P-384 and P-521.  mbedtls' own default puts
 * P-521 first, the slowest of all.  X25519 leads on 2.28 and on a 3.x with
 * Everest's X25519 (tlspeer's own build, scripts/mbedtls-tlspeer.cfg); 3.x's
 * own X25519 is slower than its P-256 (fixed-base tables), so on a 3.x
 * without Everest (Debian's 3.6) P-256 leads: a TLS 1.3 ECDSA server
 * handshake then costs 20 % fewer instructions (bench/NOTES.md). */
#if TP_MBEDTLS3 && defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED) && \
    !defined(MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED)
#define TP_X25519_AFTER_P256 1
#else
#define TP_X25519_AFTER_P256 0
#endif
#if TP_MBEDTLS3
static inline void tp_ssl_conf_default_groups(mbedtls_ssl_config *conf)
{
    static const uint16_t groups[] = {
#if defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED) && !TP_X25519_AFTER_P256
        MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
#endif
        MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
#if TP_X25519_AFTER_P256
        MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
#endif
        MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1,
        MBEDTLS_SSL_IANA_TLS_GROUP_SECP521R1,
        MBEDTLS_SSL_IANA_TLS_GROUP_NONE
    };
    mbedtls_ssl_conf_groups(conf, groups);
}
#else
static inline void tp_ssl_conf_default_groups(mbedtls_ssl_config *conf)
{
    static const mbedtls_ecp_group_id groups[] = {
#if defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED)
        MBEDTLS_ECP_DP_CURVE25519,
#endif
        MBEDTLS_ECP_DP_SECP256R1,
        MBEDTLS_ECP_DP_SECP384R1,
        MBEDTLS_ECP_DP_SECP521R1,
        MBEDTLS_ECP_DP_NONE
    };
    mbedtls_ssl_conf_curves(conf, groups);
}
#endif

/* The content type of the last record mbedtls wrote (an alert?). */
#define tp_ssl_last_out_type(ssl) ((ssl)->MBEDTLS_PRIVATE(out_msgtype))

/* The description byte of the last alert record received. */
#define tp_ssl_alert_received(ssl) \
    ((ssl)->MBEDTLS_PRIVATE(in_msg) != NULL ? \
     (ssl)->MBEDTLS_PRIVATE(in_msg)[1] : 0)

/* 3.6.1+ drops TLS 1.3 session tickets unless asked to pass them on. */
#ifdef MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED
#define tp_ssl_conf_signal_tickets(conf) \
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets( \
        (conf), MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED)
#else
#define tp_ssl_conf_signal_tickets(conf) ((void)(conf))
#endif

/* 3.6 reports a TLS 1.3 NewSessionTicket from mbedtls_ssl_read. */
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
#define TP_ERR_NEW_SESSION_TICKET MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
#else
#define TP_ERR_NEW_SESSION_TICKET (-0x7FFF0000)   /* never returned */
#endif

/* Library-wide initialisation that some versions need (PSA in 3.x). */
int tp_mbedtls_global_init(void);

#endif
