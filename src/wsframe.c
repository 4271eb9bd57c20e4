/*
 * wsframe.c - the hot parts of WebSocketPeer (lua/tlspeer/websocket.lua):
 * RFC 6455 frame headers, masking, UTF-8 validation and the handshake's
 * key and accept values.  The protocol itself is Lua; these are private
 * functions on the core table:
 *
 *   core._ws_parse(buf [, pos]) -> fin, rsv, opcode, masked, len, hlen, key
 *       the frame header at pos (default 1) of buf: fin (boolean), rsv
 *       (0..7: RSV1 is 4), opcode (0..15), masked (boolean), the payload
 *       length, the header's length and the 4-byte masking key (nil when
 *       unmasked).  Nothing when the header is not all there yet; nil,
 *       message when it can never be valid (a 64-bit length with its top
 *       bit set, or one no Lua number holds exactly).
 *   core._ws_frame(b0, payload, mask) -> frame
 *       a whole frame: the first byte b0 (FIN, RSV, opcode), the length,
 *       and when mask is true a masking key from the state's DRBG, with
 *       the payload masked by it.
 *   core._ws_mask(data, key [, offset]) -> data xor key, the key's bytes
 *       taken from offset (the payload position of data's first byte).
 *   core._ws_utf8(data [, state]) -> state | nil
 *       UTF-8 validation that goes on across pieces: state 0 is "between
 *       characters"; anything else is in the middle of one; nil: invalid.
 *   core._ws_key() -> a fresh Sec-WebSocket-Key (16 random bytes, base64)
 *   core._ws_accept(key) -> Sec-WebSocket-Accept for key, and whether key
 *       is a valid Sec-WebSocket-Key (base64 of 16 bytes).
 */
#include "aux.h"

#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/md.h>

/* Past this, a payload length is not exactly a Lua number everywhere. */
#define TP_WS_MAX_LEN 9007199254740992.0      /* 2^53 */

static int ws_parse(lua_State *L)
{
    size_t len, pos, avail, hlen = 2;
    const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1,
                                                                     &len);
    lua_Integer from = luaL_optinteger(L, 2, 1);
    unsigned b0, b1, small;
    double plen = 0;
    if (from < 1)
        return luaL_argerror(L, 2, "position out of range");
    pos = (size_t)(from - 1);
    if (pos >= len)
        return 0;
    avail = len - pos;
    p += pos;
    if (avail < 2)
        return 0;
    b0 = p[0];
    b1 = p[1];
    small = b1 & 0x7f;
    if (small == 126) {
        hlen += 2;
        if (avail < hlen)
            return 0;
        plen = (double)((p[2] << 8) | p[3]);
    } else if (small == 127) {
        int i;
        hlen += 8;
        if (avail < hlen)
            return 0;
        if (p[2] & 0x80) {
            lua_pushnil(L);
            lua_pushliteral(L, "a frame length with its most significant bit set");
            return 2;
        }
        for (i = 2; i < 10; i++)
            plen = plen * 256.0 + (double)p[i];
        if (plen >= TP_WS_MAX_LEN) {
            lua_pushnil(L);
            lua_pushliteral(L, "a frame length past 2^53 bytes");
            return 2;
        }
    } else {
        plen = (double)small;
    }
    if (b1 & 0x80) {
        hlen += 4;
        if (avail < hlen)
            return 0;
    }
    lua_pushboolean(L, (b0 & 0x80) != 0);
    lua_pushinteger(L, (lua_Integer)((b0 >> 4) & 7));
    lua_pushinteger(L, (lua_Integer)(b0 & 0x0f));
    lua_pushboolean(L, (b1 & 0x80) != 0);
    lua_pushinteger(L, (lua_Integer)plen);
    lua_pushinteger(L, (lua_Integer)hlen);
    if (b1 & 0x80)
        lua_pushlstring(L, (const char *)p + hlen - 4, 4);
    else
        lua_pushnil(L);
    return 7;
}

/* out[i] = in[i] ^ key[(i + off) % 4], a word at a time where it can. */
static void xor_mask(unsigned char *out, const unsigned char *in, size_t n,
                     const unsigned char key[4], size_t off)
{
    unsigned char k[8];
    size_t i = 0;
    int j;
    for (j = 0; j < 8; j++)
        k[j] = key[(off + (size_t)j) & 3];
    if (n >= 16) {
        uint64_t kw, w;
        memcpy(&kw, k, 8);
        for (; i + 8 <= n; i += 8) {
            memcpy(&w, in + i, 8);
            w ^= kw;
            memcpy(out + i, &w, 8);
        }
    }
    for (; i < n; i++)
        out[i] = in[i] ^ k[i & 7];
}

static int ws_frame(lua_State *L)
{
    lua_Integer b0 = tp_checkrange(L, 1, 0, 255);
    size_t len, hlen = 2;
    const unsigned char *payload =
        (const unsigned char *)luaL_checklstring(L, 2, &len);
    int mask = lua_toboolean(L, 3);
    unsigned char *out;
    if (len > (size_t)-1 - 14)
        return luaL_error(L, "frame too large");
    hlen += len < 126 ? 0 : len < 65536 ? 2 : 8;
    if (mask)
        hlen += 4;
    out = tp_scratch(L, hlen + len);
    out[0] = (unsigned char)b0;
    if (len < 126) {
        out[1] = (unsigned char)len;
    } else if (len < 65536) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
    } else {
        uint64_t v = (uint64_t)len;
        int i;
        out[1] = 127;
        for (i = 9; i >= 2; i--) {
            out[i] = (unsigned char)(v & 0xff);
            v >>= 8;
        }
    }
    if (mask) {
        unsigned char *key = out + hlen - 4;
        out[1] |= 0x80;
        if (tp_rng_random(tp_rng(L), key, 4) != 0)
            return luaL_error(L, "tlspeer: the random generator failed");
        xor_mask(out + hlen, payload, len, key, 0);
    } else if (len > 0) {
        memcpy(out + hlen, payload, len);
    }
    lua_pushlstring(L, (const char *)out, hlen + len);
    return 1;
}

static int ws_mask(lua_State *L)
{
    size_t len, klen;
    const unsigned char *in =
        (const unsigned char *)luaL_checklstring(L, 1, &len);
    const unsigned char *key =
        (const unsigned char *)luaL_checklstring(L, 2, &klen);
    lua_Integer off = luaL_optinteger(L, 3, 0);
    unsigned char *out;
    if (klen != 4)
        return luaL_argerror(L, 2, "4-byte masking key expected");
    if (off < 0)
        return luaL_argerror(L, 3, "offset out of range");
    if (len == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    out = tp_scratch(L, len);
    xor_mask(out, in, len, key, (size_t)(off & 3));
    lua_pushlstring(L, (const char *)out, len);
    return 1;
}

/*
 * UTF-8 (RFC 3629: no surrogates, nothing past U+10FFFF, shortest forms
 * only).  The state between pieces: 0 between characters, else
 * need + 4 * kind, `need` continuation bytes still to come, `kind` the
 * range the next one must be in (only a character's first continuation
 * byte has a narrower range than 80..BF).
 */
enum { K_ANY = 0, K_A0_BF, K_80_9F, K_90_BF, K_80_8F };
static const unsigned char lo_of[] = {0x80, 0xA0, 0x80, 0x90, 0x80};
static const unsigned char hi_of[] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

static int ws_utf8(lua_State *L)
{
    size_t len, i = 0;
    const unsigned char *s =
        (const unsigned char *)luaL_checklstring(L, 1, &len);
    lua_Integer st = luaL_optinteger(L, 2, 0);
    unsigned need, kind;
    if (st < 0 || st > 3 + 4 * K_80_8F)
        return luaL_argerror(L, 2, "not a UTF-8 state");
    need = (unsigned)(st & 3);
    kind = (unsigned)(st >> 2);
    while (i < len) {
        unsigned c = s[i];
        if (need == 0) {
            /* ASCII runs, eight bytes at a time. */
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            if (i >= len)
                break;
            c = s[i++];
            if (c < 0x80)
                continue;
            if (c < 0xC2 || c > 0xF4)
                return 0;
            if (c < 0xE0) {
                need = 1;
                kind = K_ANY;
            } else if (c < 0xF0) {
                need = 2;
                kind = c == 0xE0 ? K_A0_BF : c == 0xED ? K_80_9F : K_ANY;
            } else {
                need = 3;
                kind = c == 0xF0 ? K_90_BF : c == 0xF4 ? K_80_8F : K_ANY;
            }
            continue;
        }
        if (c < lo_of[kind] || c > hi_of[kind])
            return 0;
        i++;
        need--;
        kind = K_ANY;
    }
    lua_pushinteger(L, (lua_Integer)(need == 0 ? 0 : need + 4 * kind));
    return 1;
}

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int ws_key(lua_State *L)
{
    unsigned char raw[16], b64[32];
    size_t olen = 0;
    if (tp_rng_random(tp_rng(L), raw, sizeof raw) != 0)
        return luaL_error(L, "tlspeer: the random generator failed");
    if (mbedtls_base64_encode(b64, sizeof b64, &olen, raw, sizeof raw) != 0)
        return luaL_error(L, "tlspeer: base64 failed");
    lua_pushlstring(L, (const char *)b64, olen);
    return 1;
}

static int ws_accept(lua_State *L)
{
    size_t len, olen = 0, dlen = 0;
    const char *key = luaL_checklstring(L, 1, &len);
    unsigned char digest[20], b64[40], raw[64];
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA1);
    mbedtls_md_context_t ctx;
    int err, valid;
    if (md == NULL)
        return luaL_error(L, "tlspeer: this mbedtls has no SHA-1");
    mbedtls_md_init(&ctx);
    err = mbedtls_md_setup(&ctx, md, 0);
    if (err == 0)
        err = mbedtls_md_starts(&ctx);
    if (err == 0)
        err = mbedtls_md_update(&ctx, (const unsigned char *)key, len);
    if (err == 0)
        err = mbedtls_md_update(&ctx, (const unsigned char *)ws_guid,
                                sizeof ws_guid - 1);
    if (err == 0)
        err = mbedtls_md_finish(&ctx, digest);
    mbedtls_md_free(&ctx);
    if (err != 0)
        return luaL_error(L, "tlspeer: SHA-1 failed");
    if (mbedtls_base64_encode(b64, sizeof b64, &olen, digest, sizeof digest) != 0)
        return luaL_error(L, "tlspeer: base64 failed");
    lua_pushlstring(L, (const char *)b64, olen);
    valid = len == 24 &&
            mbedtls_base64_decode(raw, sizeof raw, &dlen,
                                  (const unsigned char *)key, len) == 0 &&
            dlen == 16;
    lua_pushboolean(L, valid);
    return 2;
}

void tp_open_wsframe(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"_ws_parse", ws_parse}, {"_ws_frame", ws_frame},
        {"_ws_mask", ws_mask}, {"_ws_utf8", ws_utf8},
        {"_ws_key", ws_key}, {"_ws_accept", ws_accept}, {NULL, NULL}
    };
    luaL_setfuncs(L, fns, 0);
}
