/*
 * zstream.c - streaming compression for the Lua layer, on zlib: HTTP's
 * gzip and deflate bodies (HTTPRequest, tls.request) and WebSocket's
 * permessage-deflate (RFC 7692: raw deflate, sync flushes, window bits
 * negotiated).  Not a public class: core._zstream(...).
 *
 *   core._zstream("inflate", format [, window_bits]) -> z
 *   core._zstream("deflate", format [, level [, window_bits [, mem_level]]]) -> z
 *       format: "gzip", "zlib", "raw" (no header: RFC 1951), or for inflate
 *       "auto" (gzip or zlib, told apart by the header)
 *   z:update(data [, flush [, max_out]]) -> out, state | nil, message, code
 *       flush: "none" (default), "sync" (Z_SYNC_FLUSH: all input out, byte
 *       aligned), "finish" (deflate: end the stream)
 *       max_out: at most this many bytes of output from this call (a
 *       decompression bomb stops here: the rest stays in the stream and
 *       comes with the next call, with "" as data)
 *       state: "end" (the stream ended; input after it is ignored, and its
 *       size is the third result), "more" (output was left for lack of
 *       room: call again), "ok" (all input taken)
 *   z:reset()        start a new stream with the same settings
 *   z:get_totals()   -> bytes in, bytes out
 *   z:close()        frees zlib's state (also __gc, __close)
 *
 * A bad stream is nil, message, "ERR_INVALID_DATA".  zlib keeps 7 KiB
 * (inflate) and up to 256 KiB (deflate, mem_level 8) per stream plus the
 * window; HTTP's inflate lives as long as its body, a WebSocket's streams
 * as long as its connection (context takeover), so mem_level and window
 * bits are the caller's.
 */
#include "aux.h"

#include <string.h>
#include <zlib.h>

#define TP_ZSTREAM "tlspeer.zstream"
#define CHUNK 16384

typedef struct zs {
    z_stream z;
    int deflate;                 /* else inflate */
    int ready;                   /* zlib's state is allocated */
    int ended;                   /* Z_STREAM_END seen (inflate) */
    size_t held_from;            /* input kept (user value 1) from here */
} zs;

static zs *checkzs(lua_State *L)
{
    zs *s = luaL_checkudata(L, 1, TP_ZSTREAM);
    if (!s->ready)
        luaL_error(L, "attempt to use a closed zstream");
    return s;
}

static int zs_close(lua_State *L)
{
    zs *s = luaL_checkudata(L, 1, TP_ZSTREAM);
    if (s->ready) {
        if (s->deflate)
            deflateEnd(&s->z);
        else
            inflateEnd(&s->z);
    }
    s->ready = 0;
    return 0;
}

static int window(lua_State *L, int arg, const char *format, int deflate)
{
    int bits = (int)tp_optrange(L, arg, 15, 8, 15);
    /* zlib's raw deflate cannot make an 8-bit window: 9 is what it uses
     * for 8 (RFC 7692's client_max_window_bits=8 then needs inflate at 9,
     * which reads what a 256-byte window makes). */
    if (bits == 8 && (deflate || strcmp(format, "raw") == 0))
        bits = 9;
    if (strcmp(format, "raw") == 0)
        return -bits;
    if (strcmp(format, "gzip") == 0)
        return bits + 16;
    if (strcmp(format, "auto") == 0) {
        if (deflate)
            luaL_argerror(L, 2, "\"auto\" is for inflate only");
        return bits + 32;
    }
    if (strcmp(format, "zlib") == 0)
        return bits;
    return luaL_argerror(L, 2, "format: \"gzip\", \"zlib\", \"raw\" or \"auto\"");
}

static int zs_new(lua_State *L)
{
    static const char *const modes[] = {"inflate", "deflate", NULL};
    int deflate = luaL_checkoption(L, 1, NULL, modes);
    const char *format = luaL_checkstring(L, 2);
    zs *s;
    int err, bits;
    if (deflate) {
        int level = (int)tp_optrange(L, 3, Z_DEFAULT_COMPRESSION, -1, 9);
        int mem = (int)tp_optrange(L, 5, 8, 1, 9);
        bits = window(L, 4, format, 1);
        s = lua_newuserdatauv(L, sizeof *s, 1);
        memset(s, 0, sizeof *s);
        luaL_setmetatable(L, TP_ZSTREAM);
        err = deflateInit2(&s->z, level, Z_DEFLATED, bits, mem,
                           Z_DEFAULT_STRATEGY);
    } else {
        bits = window(L, 3, format, 0);
        s = lua_newuserdatauv(L, sizeof *s, 1);
        memset(s, 0, sizeof *s);
        luaL_setmetatable(L, TP_ZSTREAM);
        err = inflateInit2(&s->z, bits);
    }
    if (err == Z_MEM_ERROR)
        return luaL_error(L, "out of memory");
    if (err != Z_OK)
        return luaL_error(L, "zlib: %s", s->z.msg ? s->z.msg : "cannot start");
    s->deflate = deflate;
    s->ready = 1;
    return 1;
}

static int zs_update(lua_State *L)
{
    static const char *const flushes[] = {"none", "sync", "finish", NULL};
    static const int zflush[] = {Z_NO_FLUSH, Z_SYNC_FLUSH, Z_FINISH};
    zs *s = checkzs(L);
    size_t len, max_out, produced = 0;
    const char *data = luaL_checklstring(L, 2, &len);
    int flush = zflush[luaL_checkoption(L, 3, "none", flushes)];
    lua_Integer m = luaL_optinteger(L, 4, -1);
    unsigned char out[CHUNK];
    luaL_Buffer b;
    int err = Z_OK, room_left = 1;
    max_out = m < 0 ? (size_t)-1 : (size_t)m;
    /* Input a call left for lack of room comes first. */
    lua_settop(L, 4);
    if (lua_getiuservalue(L, 1, 1) == LUA_TSTRING) {
        size_t hlen;
        const char *held = lua_tolstring(L, -1, &hlen);
        lua_pushlstring(L, held + s->held_from, hlen - s->held_from);
        lua_pushvalue(L, 2);
        lua_concat(L, 2);
        lua_replace(L, 2);
        data = lua_tolstring(L, 2, &len);
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    if (s->ended) {                   /* input after the end is ignored */
        lua_pushliteral(L, "");
        lua_pushliteral(L, "end");
        lua_pushinteger(L, (lua_Integer)len);
        return 3;
    }
    if (flush == Z_FINISH && !s->deflate)
        flush = Z_SYNC_FLUSH;
    s->z.next_in = (Bytef *)data;
    luaL_buffinit(L, &b);
    for (;;) {
        size_t want = max_out - produced < CHUNK ? max_out - produced : CHUNK;
        size_t got;
        uInt in_before;
        if (want == 0) {
            room_left = 0;
            break;
        }
        /* zlib's counters are uInt: feed very large strings in parts. */
        in_before = s->z.avail_in = (uInt)(len > 0x40000000u ? 0x40000000u : len);
        s->z.next_out = out;
        s->z.avail_out = (uInt)want;
        err = s->deflate ? deflate(&s->z, flush) : inflate(&s->z, flush);
        got = want - s->z.avail_out;
        len -= in_before - s->z.avail_in;
        produced += got;
        if (got > 0)
            luaL_addlstring(&b, (const char *)out, got);
        if (err == Z_STREAM_END) {
            s->ended = !s->deflate;
            break;
        }
        if (err == Z_BUF_ERROR) {     /* no progress possible: needs input */
            err = Z_OK;
            if (s->z.avail_out == 0)
                continue;
            break;
        }
        if (err != Z_OK)
            break;
        if (s->z.avail_out != 0 && len == 0)
            break;                    /* all in, and zlib had room: done */
    }
    if (err != Z_OK && err != Z_STREAM_END) {
        const char *why = s->z.msg ? s->z.msg : "a broken stream";
        if (err == Z_MEM_ERROR)
            return luaL_error(L, "out of memory");
        lua_pushnil(L);
        lua_pushfstring(L, "the compressed data is corrupt (zlib: %s)", why);
        lua_pushliteral(L, "ERR_INVALID_DATA");
        return 3;
    }
    if (len > 0 && err != Z_STREAM_END) {
        /* Stopped at max_out: the rest of the input waits here. */
        lua_pushvalue(L, 2);
        lua_setiuservalue(L, 1, 1);
        s->held_from = (size_t)((const char *)s->z.next_in - data);
    }
    luaL_pushresult(&b);
    if (err == Z_STREAM_END) {
        lua_pushliteral(L, "end");
        lua_pushinteger(L, (lua_Integer)len);
        return 3;
    }
    if (!room_left || s->z.avail_out == 0 || len > 0)
        lua_pushliteral(L, "more");
    else
        lua_pushliteral(L, "ok");
    return 2;
}

static int zs_reset(lua_State *L)
{
    zs *s = checkzs(L);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    if (s->deflate)
        deflateReset(&s->z);
    else
        inflateReset(&s->z);
    s->ended = 0;
    return 0;
}

static int zs_totals(lua_State *L)
{
    zs *s = checkzs(L);
    lua_pushinteger(L, (lua_Integer)s->z.total_in);
    lua_pushinteger(L, (lua_Integer)s->z.total_out);
    return 2;
}

static int zs_tostring(lua_State *L)
{
    zs *s = luaL_checkudata(L, 1, TP_ZSTREAM);
    if (!s->ready)
        lua_pushliteral(L, "zstream (closed)");
    else
        lua_pushfstring(L, "zstream (%s, %d bytes in, %d out)",
                        s->deflate ? "deflate" : "inflate",
                        (int)s->z.total_in, (int)s->z.total_out);
    return 1;
}

void tp_open_zstream(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"update", zs_update}, {"reset", zs_reset},
        {"get_totals", zs_totals}, {"close", zs_close}, {NULL, NULL}
    };
    if (luaL_newmetatable(L, TP_ZSTREAM)) {
        luaL_setfuncs(L, methods, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, zs_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, zs_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, zs_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, zs_new);
    lua_setfield(L, -2, "_zstream");
}
