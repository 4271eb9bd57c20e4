/*
 * embed.c - the entry points of tlspeer.h, for libtlspeer.a (make static):
 * the Lua layer is compiled in (scripts/embed.lua writes it into the build
 * directory as tp_embedded_modules), and tlspeer_preload puts it and the C
 * core into package.preload.  Not part of the shared module.
 */
#include "aux.h"
#include "tlspeer.h"

typedef struct tp_embedded {
    const char *name;
    const unsigned char *data;
    size_t len;
} tp_embedded;

extern const tp_embedded tp_embedded_modules[];

/* The loader of one embedded module (upvalue: its tp_embedded).  Chunk
 * names start with '=': the Lua layer then knows it has no file of its own
 * (and looks for no CA bundle next to one). */
static int load_embedded(lua_State *L)
{
    const tp_embedded *m = lua_touserdata(L, lua_upvalueindex(1));
    lua_pushfstring(L, "=%s (embedded)", m->name);
    if (luaL_loadbuffer(L, (const char *)m->data, m->len,
                        lua_tostring(L, -1)) != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

TP_EXPORT void tlspeer_preload(lua_State *L)
{
    const tp_embedded *m;
    lua_getglobal(L, "package");
    if (!lua_istable(L, -1)) {
        luaL_error(L, "tlspeer_preload: open the package library first "
                   "(luaL_openlibs)");
        return;
    }
    lua_getfield(L, -1, "preload");
    if (!lua_istable(L, -1)) {
        luaL_error(L, "tlspeer_preload: package.preload is not a table");
        return;
    }
    lua_pushcfunction(L, luaopen_tlspeer_core);
    lua_setfield(L, -2, "tlspeer.core");
    for (m = tp_embedded_modules; m->name != NULL; m++) {
        lua_pushlightuserdata(L, (void *)m);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 2);
}

TP_EXPORT int luaopen_tlspeer(lua_State *L)
{
    tlspeer_preload(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tlspeer");
    lua_call(L, 1, 1);
    return 1;
}
