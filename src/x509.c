/*
 * x509.c - X509Certificate: a certificate or a chain, loaded from PEM or
 * DER, saved as PEM, with read-only inspection of the first certificate.
 */
#include "aux.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include <mbedtls/asn1.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>

#define CERT_FILE_MAX  (64u << 20)    /* room for any CA bundle */

typedef struct tp_cert {
    tp_obj hdr;
    mbedtls_x509_crt crt;             /* raw.p == NULL while empty */
} tp_cert;

static int cert_empty(const tp_cert *c)
{
    return c->crt.raw.p == NULL;
}

mbedtls_x509_crt *tp_newcert(lua_State *L)
{
    tp_cert *c = tp_newobj(L, sizeof *c, 0, TP_X509);
    mbedtls_x509_crt_init(&c->crt);
    return &c->crt;
}

mbedtls_x509_crt *tp_checkcert(lua_State *L, int idx)
{
    tp_cert *c = tp_checkobj(L, idx, TP_X509);
    return &c->crt;
}

static int cert_new(lua_State *L)
{
    tp_newcert(L);
    return 1;
}

/* mbedtls_x509_crt_free is idempotent: it zeroes what it frees. */
static int cert_gc(lua_State *L)
{
    tp_cert *c = tp_toobj(L, 1, TP_X509);
    mbedtls_x509_crt_free(&c->crt);
    c->hdr.closed = 1;
    return 0;
}

static int cert_close(lua_State *L)
{
    tp_cert *c = tp_toobj(L, 1, TP_X509);
    c->hdr.closed = 1;
    if (!c->hdr.pinned)               /* a TLSOptions may still use it */
        mbedtls_x509_crt_free(&c->crt);
    return 0;
}

/* ------------------------------------------------------------- names */

/*
 * Pushes a distinguished name as an RFC 4514-style string, in certificate
 * order (the order it was written in, so "CN=a,O=b,C=IT" given to
 * generate_self_signed_certificate reads back the same).  Values are
 * escaped as RFC 4514 says; multi-valued RDNs are joined with '+'.
 */
static void push_dn(lua_State *L, const mbedtls_x509_name *dn)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (; dn != NULL; dn = dn->next) {
        const char *sn = NULL;
        size_t i;
        if (dn->oid.p == NULL)
            continue;
        if (mbedtls_oid_get_attr_short_name(&dn->oid, &sn) == 0)
            luaL_addstring(&b, sn);
        else {
            char num[64];
            int n = mbedtls_oid_get_numeric_string(num, sizeof num, &dn->oid);
            luaL_addstring(&b, n > 0 ? num : "?");
        }
        luaL_addchar(&b, '=');
        for (i = 0; i < dn->val.len; i++) {
            unsigned char ch = dn->val.p[i];
            int special = strchr(",+\"\\<>;=", ch) != NULL && ch != 0;
            if ((i == 0 && (ch == ' ' || ch == '#')) ||
                (i == dn->val.len - 1 && ch == ' ') || special) {
                luaL_addchar(&b, '\\');
                luaL_addchar(&b, (char)ch);
            } else if (ch < 0x20 || ch == 0x7f) {
                char hex[4];
                snprintf(hex, sizeof hex, "\\%02x", ch);
                luaL_addstring(&b, hex);
            } else
                luaL_addchar(&b, (char)ch);
        }
        if (dn->next != NULL)
            luaL_addchar(&b, dn->MBEDTLS_PRIVATE(next_merged) ? '+' : ',');
    }
    luaL_pushresult(&b);
}

/* ------------------------------------------------------------ loading */

/* How many PEM certificate blocks the text holds. */
static int count_pem_blocks(const unsigned char *data, size_t len)
{
    static const char tag[] = "-----BEGIN ";
    static const char what[] = "CERTIFICATE-----";
    int count = 0;
    size_t i;
    for (i = 0; i + sizeof tag - 1 <= len; i++) {
        if (memcmp(data + i, tag, sizeof tag - 1) != 0)
            continue;
        {
            const unsigned char *eol = memchr(data + i, '\n', len - i);
            size_t linelen = eol ? (size_t)(eol - (data + i)) : len - i;
            size_t j;
            for (j = 0; j + sizeof what - 1 <= linelen; j++)
                if (memcmp(data + i + j, what, sizeof what - 1) == 0) {
                    count++;
                    break;
                }
        }
    }
    return count;
}

static int chain_length(const mbedtls_x509_crt *crt)
{
    int n = 0;
    for (; crt != NULL && crt->raw.p != NULL; crt = crt->next)
        n++;
    return n;
}

/* Parses `data` into a fresh chain and swaps it into the certificate at
 * index 1. */
static int load_into(lua_State *L, const unsigned char *data, size_t len,
                     const char *what, int isfile)
{
    tp_cert *c = tp_checkobj(L, 1, TP_X509);
    mbedtls_x509_crt *tmp = tp_newcert(L);
    const char *bad = isfile ? "ERR_FILE_CORRUPT" : "ERR_INVALID_DATA";
    int blocks = count_pem_blocks(data, len);
    int err, got;

    if (len == 0)
        return tp_fail(L, bad, "%s is empty", what);
    if (blocks > 0)
        err = mbedtls_x509_crt_parse(tmp, data, len + 1);
    else
        err = mbedtls_x509_crt_parse_der(tmp, data, len);
    got = chain_length(tmp);
    if (err < 0 && got == 0)
        return tp_fail_mbedtls(L, err, bad, "cannot load a certificate from "
                               "%s", what);
    if (err > 0 || (blocks > 0 && got != blocks))
        return tp_fail(L, bad, "%s holds %d certificates but only %d could "
                       "be read: the others are truncated or corrupt", what,
                       blocks > got ? blocks : got + err, got);
    if (got == 0)
        return tp_fail(L, bad, "%s holds no certificate", what);
    {
        mbedtls_x509_crt old = c->crt;
        c->crt = *tmp;
        *tmp = old;                   /* the temporary frees the old chain */
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int cert_load(lua_State *L)
{
    const char *path;
    unsigned char *data;
    size_t len;
    lua_settop(L, 2);
    tp_checkobj(L, 1, TP_X509);
    path = luaL_checkstring(L, 2);
    if (tp_readfile(L, path, CERT_FILE_MAX, &data, &len) != 0)
        return 3;
    lua_pushfstring(L, "'%s'", path);
    return load_into(L, data, len, lua_tostring(L, -1), 1);
}

static int cert_load_from_string(lua_State *L)
{
    size_t len;
    const char *s;
    lua_settop(L, 2);
    tp_checkobj(L, 1, TP_X509);
    s = luaL_checklstring(L, 2, &len);
    return load_into(L, (const unsigned char *)s, len, "the string", 0);
}

/* ------------------------------------------------------------- saving */

/* Room for the PEM of `der` bytes: base64, a line break per 64
 * characters, the header and footer lines, the NUL. */
#define PEM_SIZE(der) ((der) * 4 / 3 + (der) / 32 + 128)

/* Pushes the PEM of every certificate of the chain at index 1. */
static int push_pem(lua_State *L)
{
    tp_cert *c = tp_checkobj(L, 1, TP_X509);
    const mbedtls_x509_crt *crt;
    unsigned char *out;
    size_t total = 0, used = 0;
    if (cert_empty(c))
        return tp_fail(L, "ERR_UNCONFIGURED", "the X509Certificate is empty: "
                       "load or generate a certificate first");
    for (crt = &c->crt; crt != NULL && crt->raw.p != NULL; crt = crt->next)
        total += PEM_SIZE(crt->raw.len);
    out = tp_scratch(L, total);
    for (crt = &c->crt; crt != NULL && crt->raw.p != NULL; crt = crt->next) {
        size_t olen;
        int err = mbedtls_pem_write_buffer("-----BEGIN CERTIFICATE-----\n",
                                           "-----END CERTIFICATE-----\n",
                                           crt->raw.p, crt->raw.len,
                                           out + used,
                                           PEM_SIZE(crt->raw.len), &olen);
        if (err != 0)
            return luaL_error(L, "tlspeer: PEM encoding failed (%d)", err);
        used += olen - 1;             /* olen counts the NUL */
    }
    lua_pushlstring(L, (const char *)out, used);
    return 1;
}

static int cert_save(lua_State *L)
{
    const char *path;
    size_t len;
    const char *pem;
    lua_settop(L, 2);
    path = luaL_checkstring(L, 2);
    if (push_pem(L) != 1)
        return 3;
    pem = lua_tolstring(L, -1, &len);
    if (tp_writefile(L, path, pem, len, 0644) != 0)
        return 3;
    lua_pushboolean(L, 1);
    return 1;
}

static int cert_save_to_string(lua_State *L)
{
    return push_pem(L);
}

/* ------------------------------------------------------------ getters */

/* The first certificate of a non-empty chain, or a failure pushed. */
static const mbedtls_x509_crt *first(lua_State *L, int *nret)
{
    tp_cert *c = tp_checkobj(L, 1, TP_X509);
    if (cert_empty(c)) {
        *nret = tp_fail(L, "ERR_UNCONFIGURED", "the X509Certificate is empty");
        return NULL;
    }
    return &c->crt;
}

#define FIRST(crt) int nret_; const mbedtls_x509_crt *crt = first(L, &nret_); \
    if (crt == NULL) return nret_

static int cert_get_subject(lua_State *L)
{
    FIRST(crt);
    push_dn(L, &crt->subject);
    return 1;
}

static int cert_get_issuer(lua_State *L)
{
    FIRST(crt);
    push_dn(L, &crt->issuer);
    return 1;
}

static int cert_get_serial(lua_State *L)
{
    const unsigned char *p;
    size_t n;
    FIRST(crt);
    p = crt->serial.p;
    n = crt->serial.len;
    while (n > 1 && *p == 0) {        /* DER's sign byte is not the value */
        p++;
        n--;
    }
    tp_pushhex(L, p, n);
    return 1;
}

static void push_time(lua_State *L, const mbedtls_x509_time *t)
{
    char s[32];
    snprintf(s, sizeof s, "%04d%02d%02d%02d%02d%02d", t->year, t->mon,
             t->day, t->hour, t->min, t->sec);
    lua_pushstring(L, s);
}

static int cert_get_not_before(lua_State *L)
{
    FIRST(crt);
    push_time(L, &crt->valid_from);
    return 1;
}

static int cert_get_not_after(lua_State *L)
{
    FIRST(crt);
    push_time(L, &crt->valid_to);
    return 1;
}

/* Pushes one subjectAltName entry as a string (DNS names and URIs as they
 * are, IP addresses in text form, e-mail addresses as they are). */
static int push_san(lua_State *L, const mbedtls_x509_buf *buf)
{
    int tag = buf->tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
    char ip[INET6_ADDRSTRLEN];
    switch (tag) {
    case 1:     /* rfc822Name */
    case 2:     /* dNSName */
    case 6:     /* uniformResourceIdentifier */
        lua_pushlstring(L, (const char *)buf->p, buf->len);
        return 1;
    case 7:     /* iPAddress */
        if (buf->len == 4 && inet_ntop(AF_INET, buf->p, ip, sizeof ip))
            return lua_pushstring(L, ip), 1;
        if (buf->len == 16 && inet_ntop(AF_INET6, buf->p, ip, sizeof ip))
            return lua_pushstring(L, ip), 1;
        return 0;
    default:
        return 0;
    }
}

static int cert_get_san(lua_State *L)
{
    const mbedtls_x509_sequence *s;
    lua_Integer i = 0;
    FIRST(crt);
    lua_newtable(L);
    for (s = &crt->subject_alt_names; s != NULL; s = s->next) {
        if (s->buf.p == NULL)
            continue;
        if (push_san(L, &s->buf))
            lua_rawseti(L, -2, ++i);
    }
    return 1;
}

static int cert_is_ca(lua_State *L)
{
    FIRST(crt);
    lua_pushboolean(L, tp_crt_is_ca(crt));
    return 1;
}

static int cert_get_fingerprint(lua_State *L)
{
    static const char *const names[] = {"md5", "sha1", "sha256", "sha512",
                                        NULL};
    static const mbedtls_md_type_t types[] = {MBEDTLS_MD_MD5, MBEDTLS_MD_SHA1,
                                              MBEDTLS_MD_SHA256,
                                              MBEDTLS_MD_SHA512};
    int which;
    lua_settop(L, 2);
    which = tp_checkoption(L, 2, "sha256", names);
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(types[which]);
    unsigned char out[MBEDTLS_MD_MAX_SIZE];
    FIRST(crt);
    if (mbedtls_md(md, crt->raw.p, crt->raw.len, out) != 0)
        return tp_fail(L, "FAILED", "cannot hash the certificate");
    tp_pushhex(L, out, mbedtls_md_get_size(md));
    return 1;
}

static int cert_get_public_key(lua_State *L)
{
    unsigned char *der;
    mbedtls_pk_context *pk;
    int n, err;
    size_t cap = 16384;
    FIRST(crt);
    pk = tp_newkey(L);
    der = tp_scratch(L, cap);
    n = mbedtls_pk_write_pubkey_der((mbedtls_pk_context *)&crt->pk, der, cap);
    err = n < 0 ? n
        : mbedtls_pk_parse_public_key(pk, der + cap - n, (size_t)n);
    lua_pop(L, 1);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot copy the "
                               "certificate's public key");
    tp_key_mark_public(L, -1);
    return 1;
}

static int cert_get_chain_length(lua_State *L)
{
    tp_cert *c = tp_checkobj(L, 1, TP_X509);
    lua_pushinteger(L, chain_length(&c->crt));
    return 1;
}

static int cert_tostring(lua_State *L)
{
    tp_cert *c = tp_toobj(L, 1, TP_X509);
    const mbedtls_x509_time *t;
    int n;
    if (c->hdr.closed) {
        lua_pushliteral(L, "X509Certificate (closed)");
        return 1;
    }
    if (cert_empty(c)) {
        lua_pushliteral(L, "X509Certificate (empty)");
        return 1;
    }
    t = &c->crt.valid_to;
    n = chain_length(&c->crt);
    lua_pushliteral(L, "X509Certificate (");
    push_dn(L, &c->crt.subject);
    {
        char when[64];
        snprintf(when, sizeof when, ", expires %04d-%02d-%02d %02d:%02d:%02d "
                 "UTC", t->year, t->mon, t->day, t->hour, t->min, t->sec);
        lua_pushstring(L, when);
    }
    if (n > 1)
        lua_pushfstring(L, ", chain of %d)", n);
    else
        lua_pushliteral(L, ")");
    lua_concat(L, 4);
    return 1;
}

/* ------------------------------------------------------------- opener */

static const luaL_Reg cert_methods[] = {
    {"load", cert_load},
    {"load_from_string", cert_load_from_string},
    {"save", cert_save},
    {"save_to_string", cert_save_to_string},
    {"get_subject", cert_get_subject},
    {"get_issuer", cert_get_issuer},
    {"get_serial", cert_get_serial},
    {"get_not_before", cert_get_not_before},
    {"get_not_after", cert_get_not_after},
    {"get_san", cert_get_san},
    {"is_ca", cert_is_ca},
    {"get_fingerprint", cert_get_fingerprint},
    {"get_public_key", cert_get_public_key},
    {"get_chain_length", cert_get_chain_length},
    {NULL, NULL}
};

static const luaL_Reg cert_meta[] = {
    {"__gc", cert_gc},
    {"__close", cert_close},
    {"__tostring", cert_tostring},
    {NULL, NULL}
};

void tp_open_x509(lua_State *L)
{
    tp_newclass(L, TP_X509, cert_methods, cert_meta, cert_new, NULL);
}
