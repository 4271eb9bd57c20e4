/*
 * tlspeer.h - tlspeer in one binary (make static: libtlspeer.a, with the
 * Lua layer and mbedtls compiled in).  For C and C++ hosts that link Lua
 * themselves:
 *
 *     luaL_openlibs(L);
 *     tlspeer_preload(L);            // then: require "tlspeer" in scripts
 *     // or: luaopen_tlspeer(L), which pushes the module table
 *
 * No file of the Lua layer needs to exist on disk.
 */
#ifndef TLSPEER_H
#define TLSPEER_H

#ifdef __cplusplus
extern "C" {
#endif

#include <lua.h>

/* Pushes the same table as require "tlspeer" (preloading it first). */
int luaopen_tlspeer(lua_State *L);

/* The C core alone (what require "tlspeer.core" returns). */
int luaopen_tlspeer_core(lua_State *L);

/* Puts "tlspeer", "tlspeer.core" and the other modules of tlspeer in
 * package.preload, so that require finds them without any file. */
void tlspeer_preload(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
