/*
 * streampeer.c - Godot's typed StreamPeer methods, shared by StreamPeerTCP
 * and StreamPeerTLS: put_u8 ... put_double, get_u8 ... get_double, the
 * counted strings (a 32-bit length, then the bytes) and their UTF-8 forms.
 *
 * Each method is a closure over its class's own get_data and put_data (and
 * the class's metatable name), so it blocks and fails exactly as those do:
 * a value (true for a put) on success, nil, message, code on failure.
 * Little-endian unless the peer's set_big_endian(true).
 *
 * Integers: on 5.3 and 5.4 the 64-bit getters return integers (get_u64
 * reads values from 2^63 on as negative integers, two's complement); on
 * 5.1, LuaJIT and 5.2 they return numbers, exact up to 2^53, and get_u64
 * gives the unsigned value.
 */
#include "aux.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* get_string reads at most what one get_data may (IO_MAX of tcp.c/tls.c). */
#define COUNTED_MAX ((uint32_t)1 << 30)

enum { T_I8, T_U8, T_I16, T_U16, T_I32, T_U32, T_I64, T_U64, T_FLOAT,
       T_DOUBLE };

static const struct {
    const char *name;
    int size;
    double lo, hi;          /* for T_I8 .. T_U32 */
} types[] = {
    {"8",      1, -128.0, 127.0},
    {"u8",     1, 0.0, 255.0},
    {"16",     2, -32768.0, 32767.0},
    {"u16",    2, 0.0, 65535.0},
    {"32",     4, -2147483648.0, 2147483647.0},
    {"u32",    4, 0.0, 4294967295.0},
    {"64",     8, 0, 0},
    {"u64",    8, 0, 0},
    {"float",  4, 0, 0},
    {"double", 8, 0, 0},
};

/* Upvalues of every method: the class's get_data, put_data, and the name
 * of its metatable (the pointer: see TP_TCP in aux.h). */
#define UP_GET   lua_upvalueindex(1)
#define UP_PUT   lua_upvalueindex(2)
#define UP_TNAME lua_upvalueindex(3)

static int big_endian(lua_State *L)
{
    tp_obj *o = tp_checkobj(L, 1, (const char *)lua_touserdata(L, UP_TNAME));
    return o->big_endian;
}

/* Bytes of a value of `size` bytes, in the peer's byte order. */
static void encode(uint64_t v, int size, int be, unsigned char *out)
{
    int i;
    for (i = 0; i < size; i++)
        out[be ? size - 1 - i : i] = (unsigned char)(v >> (8 * i));
}

static uint64_t decode(const unsigned char *in, int size, int be)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < size; i++)
        v |= (uint64_t)in[be ? size - 1 - i : i] << (8 * i);
    return v;
}

/* Calls the class's put_data(self, bytes): its results stay on the stack. */
static int put_bytes(lua_State *L, const void *p, size_t len)
{
    int top = lua_gettop(L);
    lua_pushvalue(L, UP_PUT);
    lua_pushvalue(L, 1);
    lua_pushlstring(L, (const char *)p, len);
    lua_call(L, 2, LUA_MULTRET);
    return lua_gettop(L) - top;
}

/* Calls the class's get_data(self, n).  Returns the bytes (the string
 * stays pushed), or NULL with nil, message, code pushed. */
static const unsigned char *get_bytes(lua_State *L, size_t n)
{
    lua_pushvalue(L, UP_GET);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, (lua_Integer)n);
    lua_call(L, 2, 3);
    if (lua_isnil(L, -3))
        return NULL;
    lua_pop(L, 2);
    return (const unsigned char *)lua_tostring(L, -1);
}

static int argerror(lua_State *L, int kind, const char *prefix,
                    const char *what)
{
    return luaL_error(L, "bad argument #1 to '%s%s' (%s)", prefix,
                      types[kind].name, what);
}

/* put_<type>(v): the value checked against the type, then put_data. */
static int put_typed(lua_State *L)
{
    int kind = (int)lua_tointeger(L, lua_upvalueindex(4));
    int size = types[kind].size, be;
    unsigned char buf[8];
    uint64_t bits = 0;
    be = big_endian(L);
    if (kind == T_FLOAT || kind == T_DOUBLE) {
        double d;
        if (lua_type(L, 2) != LUA_TNUMBER)
            return argerror(L, kind, "put_", lua_pushfstring(L,
                            "number expected, got %s", luaL_typename(L, 2)));
        d = (double)lua_tonumber(L, 2);
        if (kind == T_FLOAT) {
            float f = (float)d;
            uint32_t u;
            memcpy(&u, &f, 4);
            bits = u;
        } else
            memcpy(&bits, &d, 8);
    } else {
        if (lua_type(L, 2) != LUA_TNUMBER || !tp_isinteger(L, 2))
            return argerror(L, kind, "put_", lua_pushfstring(L,
                            "integer expected, got %s",
                            lua_type(L, 2) == LUA_TNUMBER
                                ? "float" : luaL_typename(L, 2)));
        if (kind < T_I64) {
            lua_Integer v = lua_tointeger(L, 2);
            if ((double)v < types[kind].lo || (double)v > types[kind].hi) {
                char msg[64];
                snprintf(msg, sizeof msg, "value %lld out of range",
                         (long long)v);
                return argerror(L, kind, "put_", msg);
            }
            bits = (uint64_t)(int64_t)v;
        } else if (TP_INT64)
            bits = (uint64_t)(int64_t)lua_tointeger(L, 2);
        else {
            /* A number: -2^63 <= v < 2^63 (put_u64 also takes up to 2^64). */
            double d = (double)lua_tonumber(L, 2);
            if (d >= -9223372036854775808.0 && d < 9223372036854775808.0)
                bits = (uint64_t)(int64_t)d;
            else if (kind == T_U64 && d >= 0 && d < 18446744073709551616.0)
                bits = (uint64_t)d;
            else {
                char msg[64];
                snprintf(msg, sizeof msg, "value %.17g out of range", d);
                return argerror(L, kind, "put_", msg);
            }
        }
    }
    encode(bits, size, be, buf);
    return put_bytes(L, buf, (size_t)size);
}

/* get_<type>(): get_data of the type's size, decoded. */
static int get_typed(lua_State *L)
{
    int kind = (int)lua_tointeger(L, lua_upvalueindex(4));
    int size = types[kind].size, be = big_endian(L);
    const unsigned char *p = get_bytes(L, (size_t)size);
    uint64_t u;
    if (p == NULL)
        return 3;
    u = decode(p, size, be);
    switch (kind) {
    case T_I8:  lua_pushinteger(L, (int8_t)u); break;
    case T_U8:  lua_pushinteger(L, (lua_Integer)u); break;
    case T_I16: lua_pushinteger(L, (int16_t)u); break;
    case T_U16: lua_pushinteger(L, (lua_Integer)u); break;
    case T_I32: lua_pushinteger(L, (int32_t)u); break;
    case T_U32: lua_pushinteger(L, (lua_Integer)u); break;
    case T_I64:
        if (TP_INT64)
            lua_pushinteger(L, (lua_Integer)(int64_t)u);
        else
            lua_pushnumber(L, (lua_Number)(int64_t)u);
        break;
    case T_U64:
        if (TP_INT64)
            lua_pushinteger(L, (lua_Integer)(int64_t)u);  /* 2^63.. negative */
        else
            lua_pushnumber(L, (lua_Number)u);
        break;
    case T_FLOAT: {
        uint32_t w = (uint32_t)u;
        float f;
        memcpy(&f, &w, 4);
        lua_pushnumber(L, (lua_Number)f);
        break;
    }
    default: {
        double d;
        memcpy(&d, &u, 8);
        lua_pushnumber(L, (lua_Number)d);
        break;
    }
    }
    return 1;
}

/* --------------------------------------------------------------- UTF-8 */

/* Whether s is valid UTF-8: no overlong forms, no surrogates, nothing
 * above U+10FFFF (what Lua 5.4's utf8.len accepts). */
static int utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        uint32_t cp;
        size_t n, k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else
            return 0;
        if (len - i <= n)
            return 0;
        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return 0;
        i += n + 1;
    }
    return 1;
}

/* ------------------------------------------------------------- strings */

static int put_counted(lua_State *L, const char *fname, int utf8)
{
    size_t len;
    const char *s;
    unsigned char head[4];
    luaL_Buffer b;
    int top;
    (void)big_endian(L);
    if (lua_type(L, 2) != LUA_TSTRING)
        return luaL_error(L, "bad argument #1 to '%s' (string expected, got "
                          "%s)", fname, luaL_typename(L, 2));
    s = lua_tolstring(L, 2, &len);
    if ((uint64_t)len > 0xFFFFFFFFu)
        return luaL_error(L, "bad argument #1 to '%s' (string too long)",
                          fname);
    if (utf8 && !utf8_valid((const unsigned char *)s, len))
        return luaL_error(L, "bad argument #1 to '%s' (invalid UTF-8)",
                          fname);
    encode((uint64_t)len, 4, big_endian(L), head);
    top = lua_gettop(L);
    lua_pushvalue(L, UP_PUT);
    lua_pushvalue(L, 1);
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, (const char *)head, 4);
    luaL_addlstring(&b, s, len);
    luaL_pushresult(&b);
    lua_call(L, 2, LUA_MULTRET);
    return lua_gettop(L) - top;
}

static int get_counted(lua_State *L, const char *fname, int utf8)
{
    size_t n, got;
    const unsigned char *p;
    (void)big_endian(L);
    if (!lua_isnoneornil(L, 2) && !tp_isinteger(L, 2))
        return luaL_error(L, "bad argument #1 to '%s' (integer expected)",
                          fname);
    if (lua_isnoneornil(L, 2) || lua_tointeger(L, 2) < 0) {
        uint32_t announced;
        int top = lua_gettop(L);
        if ((p = get_bytes(L, 4)) == NULL)
            return 3;
        announced = (uint32_t)decode(p, 4, big_endian(L));
        lua_settop(L, top);
        /* The length comes from the peer: one get_data cannot take more,
         * and asking would raise an argument error the caller never made. */
        if (announced > COUNTED_MAX) {
            char msg[96];
            snprintf(msg, sizeof msg, "the peer announced a string of %lu "
                     "bytes (at most %lu can be read)",
                     (unsigned long)announced, (unsigned long)COUNTED_MAX);
            return tp_fail(L, "ERR_INVALID_DATA", "%s", msg);
        }
        n = announced;
    } else
        n = (size_t)lua_tointeger(L, 2);
    if ((p = get_bytes(L, n)) == NULL)
        return 3;
    lua_tolstring(L, -1, &got);
    if (utf8 && !utf8_valid(p, got))
        return tp_fail(L, "ERR_INVALID_DATA", "%s: the %d bytes received "
                       "are not valid UTF-8", fname, (int)got);
    return 1;
}

static int put_string(lua_State *L) { return put_counted(L, "put_string", 0); }
static int put_utf8_string(lua_State *L)
{
    return put_counted(L, "put_utf8_string", 1);
}
static int get_string(lua_State *L) { return get_counted(L, "get_string", 0); }
static int get_utf8_string(lua_State *L)
{
    return get_counted(L, "get_utf8_string", 1);
}

/* ------------------------------------------------------------- install */

/* Adds the typed methods to the methods table at `methods`, closing over
 * its get_data and put_data; `tname` is the class's metatable name. */
void tp_streampeer_install(lua_State *L, int methods, const char *tname)
{
    static const struct { const char *name; lua_CFunction fn; } strings[] = {
        {"put_string", put_string}, {"put_utf8_string", put_utf8_string},
        {"get_string", get_string}, {"get_utf8_string", get_utf8_string},
        {NULL, NULL}
    };
    int i;
    methods = lua_absindex(L, methods);
    for (i = 0; i < (int)(sizeof types / sizeof types[0]); i++) {
        int put;
        for (put = 0; put < 2; put++) {
            lua_getfield(L, methods, "get_data");
            lua_getfield(L, methods, "put_data");
            lua_pushlightuserdata(L, (void *)tname);
            lua_pushinteger(L, i);
            lua_pushcclosure(L, put ? put_typed : get_typed, 4);
            lua_pushfstring(L, "%s_%s", put ? "put" : "get", types[i].name);
            lua_insert(L, -2);
            lua_settable(L, methods);
        }
    }
    for (i = 0; strings[i].name != NULL; i++) {
        lua_getfield(L, methods, "get_data");
        lua_getfield(L, methods, "put_data");
        lua_pushlightuserdata(L, (void *)tname);
        lua_pushcclosure(L, strings[i].fn, 3);
        lua_setfield(L, methods, strings[i].name);
    }
}
