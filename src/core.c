/*
 * core.c - luaopen_tlspeer_core: the C half of the tlspeer module.
 * lua/tlspeer/init.lua wraps the table this returns.
 */
#include "aux.h"

#include <mbedtls/version.h>

#if defined(__GNUC__)
#define TP_EXPORT __attribute__((visibility("default")))
#else
#define TP_EXPORT
#endif

TP_EXPORT int luaopen_tlspeer_core(lua_State *L);

int luaopen_tlspeer_core(lua_State *L)
{
    char version[32];

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

    /* The methods tables, for the Lua layer's shared StreamPeer methods. */
    lua_newtable(L);
    {
        static const char *const classes[] = {TP_TCP, TP_TCPSERVER, TP_TLS,
                                              TP_OPTIONS, NULL};
        int i;
        for (i = 0; classes[i] != NULL; i++) {
            luaL_getmetatable(L, classes[i]);
            lua_getfield(L, -1, "__index");
            lua_setfield(L, -3, tp_classname(classes[i]));
            lua_pop(L, 1);
        }
    }
    lua_setfield(L, -2, "_methods");

    mbedtls_version_get_string(version);
    lua_pushstring(L, version);
    lua_setfield(L, -2, "mbedtls_version");
    return 1;
}
