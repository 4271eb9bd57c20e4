/*
 * hashing.c - HashingContext, HMACContext and AESContext (Godot semantics):
 * start / update / finish, with the state held in the userdata.
 */
#include "aux.h"

#include <string.h>

#include <mbedtls/aes.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

/* ---------------------------------------------- HashingContext / HMAC */

typedef struct tp_md {
    tp_obj hdr;
    unsigned char started;
    unsigned char ready;     /* mbedtls_md_init done */
    mbedtls_md_context_t md;
} tp_md;

static void md_reset(tp_md *h)
{
    if (h->ready)
        mbedtls_md_free(&h->md);   /* wipes the HMAC key pads too */
    mbedtls_md_init(&h->md);
    h->ready = 1;
    h->started = 0;
}

static int md_new(lua_State *L, const char *tname)
{
    tp_md *h = tp_newobj(L, sizeof *h, 0, tname);
    md_reset(h);
    return 1;
}

static int md_gc_generic(lua_State *L, const char *tname)
{
    tp_md *h = tp_toobj(L, 1, tname);
    if (!h->hdr.closed) {
        if (h->ready)
            mbedtls_md_free(&h->md);
        h->ready = 0;
        h->started = 0;
        h->hdr.closed = 1;
    }
    return 0;
}

static int md_tostring_generic(lua_State *L, const char *tname)
{
    tp_md *h = tp_toobj(L, 1, tname);
    const char *state = h->hdr.closed ? "closed"
                      : h->started ? mbedtls_md_get_name(tp_md_info_from_ctx(&h->md))
                      : "idle";
    lua_pushfstring(L, "%s (%s)", tp_classname(tname), state);
    return 1;
}

/* start: 2 = HMAC (key at arg 3). */
static int md_start(lua_State *L, const char *tname, int hmac)
{
    tp_md *h = tp_checkobj(L, 1, tname);
    mbedtls_md_type_t type = tp_checkhash(L, 2);
    size_t keylen = 0;
    const char *key = hmac ? luaL_checklstring(L, 3, &keylen) : NULL;
    int err;

    if (h->started)
        return tp_fail(L, "ERR_ALREADY_IN_USE", "%s already started: call "
                       "finish() first", tp_classname(tname));
    md_reset(h);
    err = mbedtls_md_setup(&h->md, mbedtls_md_info_from_type(type), hmac);
    if (err == 0)
        err = hmac ? mbedtls_md_hmac_starts(&h->md,
                                            (const unsigned char *)key, keylen)
                   : mbedtls_md_starts(&h->md);
    if (err != 0) {
        md_reset(h);
        return tp_fail_mbedtls(L, err, "FAILED", "cannot start %s",
                               tp_classname(tname));
    }
    h->started = 1;
    lua_pushboolean(L, 1);
    return 1;
}

static int md_update(lua_State *L, const char *tname, int hmac)
{
    tp_md *h = tp_checkobj(L, 1, tname);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int err;
    if (!h->started)
        return tp_fail(L, "ERR_UNCONFIGURED", "%s not started: call start() "
                       "first", tp_classname(tname));
    err = hmac ? mbedtls_md_hmac_update(&h->md, (const unsigned char *)data, len)
               : mbedtls_md_update(&h->md, (const unsigned char *)data, len);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot update %s",
                               tp_classname(tname));
    lua_pushboolean(L, 1);
    return 1;
}

static int md_finish(lua_State *L, const char *tname, int hmac)
{
    tp_md *h = tp_checkobj(L, 1, tname);
    unsigned char out[MBEDTLS_MD_MAX_SIZE];
    size_t len;
    int err;
    if (!h->started)
        return tp_fail(L, "ERR_UNCONFIGURED", "%s not started: call start() "
                       "first", tp_classname(tname));
    len = mbedtls_md_get_size(tp_md_info_from_ctx(&h->md));
    err = hmac ? mbedtls_md_hmac_finish(&h->md, out)
               : mbedtls_md_finish(&h->md, out);
    md_reset(h);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot finish %s",
                               tp_classname(tname));
    lua_pushlstring(L, (const char *)out, len);
    mbedtls_platform_zeroize(out, sizeof out);
    return 1;
}

#define MD_CLASS(prefix, TNAME, HMAC)                                        \
    static int prefix##_new(lua_State *L) { return md_new(L, TNAME); }      \
    static int prefix##_gc(lua_State *L) { return md_gc_generic(L, TNAME); } \
    static int prefix##_tostring(lua_State *L)                              \
        { return md_tostring_generic(L, TNAME); }                           \
    static int prefix##_start(lua_State *L) { return md_start(L, TNAME, HMAC); } \
    static int prefix##_update(lua_State *L) { return md_update(L, TNAME, HMAC); } \
    static int prefix##_finish(lua_State *L) { return md_finish(L, TNAME, HMAC); } \
    static const luaL_Reg prefix##_methods[] = {                            \
        {"start", prefix##_start}, {"update", prefix##_update},             \
        {"finish", prefix##_finish}, {NULL, NULL}};                         \
    static const luaL_Reg prefix##_meta[] = {                               \
        {"__gc", prefix##_gc}, {"__close", prefix##_gc},                    \
        {"__tostring", prefix##_tostring}, {NULL, NULL}};

MD_CLASS(hashing, TP_HASHING, 0)
MD_CLASS(hmac, TP_HMAC, 1)

/* --------------------------------------------------------- AESContext */

enum { AES_ECB_ENCRYPT = 0, AES_ECB_DECRYPT = 1, AES_CBC_ENCRYPT = 2,
       AES_CBC_DECRYPT = 3, AES_NONE = -1 };

typedef struct tp_aes {
    tp_obj hdr;
    int mode;                 /* AES_NONE when not started */
    unsigned char iv[16];
    mbedtls_aes_context aes;
} tp_aes;

static void aes_reset(tp_aes *a)
{
    mbedtls_aes_free(&a->aes);        /* zeroes the key schedule */
    mbedtls_platform_zeroize(a->iv, sizeof a->iv);
    mbedtls_aes_init(&a->aes);
    a->mode = AES_NONE;
}

static int aes_new(lua_State *L)
{
    tp_aes *a = tp_newobj(L, sizeof *a, 0, TP_AES);
    mbedtls_aes_init(&a->aes);
    a->mode = AES_NONE;
    return 1;
}

static int aes_gc(lua_State *L)
{
    tp_aes *a = tp_toobj(L, 1, TP_AES);
    if (!a->hdr.closed) {
        aes_reset(a);
        mbedtls_aes_free(&a->aes);
        a->hdr.closed = 1;
    }
    return 0;
}

static int aes_tostring(lua_State *L)
{
    static const char *const names[] = {"ECB encrypt", "ECB decrypt",
                                        "CBC encrypt", "CBC decrypt"};
    tp_aes *a = tp_toobj(L, 1, TP_AES);
    lua_pushfstring(L, "AESContext (%s)", a->hdr.closed ? "closed"
                    : a->mode == AES_NONE ? "idle" : names[a->mode]);
    return 1;
}

static int aes_start(lua_State *L)
{
    tp_aes *a = tp_checkobj(L, 1, TP_AES);
    int mode = (int)tp_checkrange(L, 2, AES_ECB_ENCRYPT, AES_CBC_DECRYPT);
    size_t keylen, ivlen = 0;
    const char *key = luaL_checklstring(L, 3, &keylen);
    const char *iv = luaL_optlstring(L, 4, "", &ivlen);
    int cbc = mode == AES_CBC_ENCRYPT || mode == AES_CBC_DECRYPT;
    int enc = mode == AES_ECB_ENCRYPT || mode == AES_CBC_ENCRYPT;
    int err;

    if (keylen != 16 && keylen != 32)
        return luaL_argerror(L, 3, "key must be 16 or 32 bytes");
    if (cbc && ivlen != 16)
        return luaL_argerror(L, 4, "CBC needs a 16-byte IV");
    if (a->mode != AES_NONE)
        return tp_fail(L, "ERR_ALREADY_IN_USE", "AESContext already started: "
                       "call finish() first");
    err = enc ? mbedtls_aes_setkey_enc(&a->aes, (const unsigned char *)key,
                                       (unsigned)keylen * 8)
              : mbedtls_aes_setkey_dec(&a->aes, (const unsigned char *)key,
                                       (unsigned)keylen * 8);
    if (err != 0) {
        aes_reset(a);
        return tp_fail_mbedtls(L, err, "FAILED", "cannot set the AES key");
    }
    if (cbc)
        memcpy(a->iv, iv, 16);
    a->mode = mode;
    lua_pushboolean(L, 1);
    return 1;
}

static int aes_update(lua_State *L)
{
    tp_aes *a = tp_checkobj(L, 1, TP_AES);
    size_t len, i;
    const unsigned char *src =
        (const unsigned char *)luaL_checklstring(L, 2, &len);
    unsigned char *out;
    int err = 0;

    if (a->mode == AES_NONE)
        return tp_fail(L, "ERR_UNCONFIGURED", "AESContext not started: call "
                       "start() first");
    if (len % 16 != 0)
        return luaL_argerror(L, 2, "data size must be a multiple of 16 "
                             "bytes (AESContext does no padding)");
    out = tp_scratch(L, len);
    switch (a->mode) {
    case AES_ECB_ENCRYPT:
    case AES_ECB_DECRYPT:
        for (i = 0; i < len && err == 0; i += 16)
            err = mbedtls_aes_crypt_ecb(&a->aes, a->mode == AES_ECB_ENCRYPT
                                        ? MBEDTLS_AES_ENCRYPT
                                        : MBEDTLS_AES_DECRYPT,
                                        src + i, out + i);
        break;
    default:
        if (len > 0)
            err = mbedtls_aes_crypt_cbc(&a->aes, a->mode == AES_CBC_ENCRYPT
                                        ? MBEDTLS_AES_ENCRYPT
                                        : MBEDTLS_AES_DECRYPT,
                                        len, a->iv, src, out);
        break;
    }
    if (err != 0) {
        mbedtls_platform_zeroize(out, len);
        return tp_fail_mbedtls(L, err, "FAILED", "AES update failed");
    }
    lua_pushlstring(L, (const char *)out, len);
    mbedtls_platform_zeroize(out, len);    /* plaintext, one way or the other */
    return 1;
}

static int aes_get_iv_state(lua_State *L)
{
    tp_aes *a = tp_checkobj(L, 1, TP_AES);
    if (a->mode != AES_CBC_ENCRYPT && a->mode != AES_CBC_DECRYPT)
        return tp_fail(L, "ERR_UNCONFIGURED", "AESContext has an IV state "
                       "only in a CBC mode after start()");
    lua_pushlstring(L, (const char *)a->iv, sizeof a->iv);
    return 1;
}

static int aes_finish(lua_State *L)
{
    tp_aes *a = tp_checkobj(L, 1, TP_AES);
    aes_reset(a);
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg aes_methods[] = {
    {"start", aes_start},
    {"update", aes_update},
    {"get_iv_state", aes_get_iv_state},
    {"finish", aes_finish},
    {NULL, NULL}
};

static const luaL_Reg aes_meta[] = {
    {"__gc", aes_gc},
    {"__close", aes_gc},
    {"__tostring", aes_tostring},
    {NULL, NULL}
};

/* ------------------------------------------------------------- opener */

static const tp_const hash_consts[] = {
    {"HASH_MD5", TP_HASH_MD5}, {"HASH_SHA1", TP_HASH_SHA1},
    {"HASH_SHA256", TP_HASH_SHA256}, {"HASH_SHA512", TP_HASH_SHA512},
    {NULL, 0}
};

static const tp_const aes_consts[] = {
    {"MODE_ECB_ENCRYPT", AES_ECB_ENCRYPT}, {"MODE_ECB_DECRYPT", AES_ECB_DECRYPT},
    {"MODE_CBC_ENCRYPT", AES_CBC_ENCRYPT}, {"MODE_CBC_DECRYPT", AES_CBC_DECRYPT},
    {NULL, 0}
};

void tp_open_hashing(lua_State *L)
{
    tp_newclass(L, TP_HASHING, hashing_methods, hashing_meta, hashing_new,
                hash_consts);
    tp_newclass(L, TP_HMAC, hmac_methods, hmac_meta, hmac_new, hash_consts);
    tp_newclass(L, TP_AES, aes_methods, aes_meta, aes_new, aes_consts);
}
