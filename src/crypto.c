/*
 * crypto.c - Crypto: random bytes, RSA and EC key generation, self-signed
 * and CA-issued certificates, sign/verify, RSA encrypt/decrypt, HMAC and a
 * constant-time comparison.
 */
#include "aux.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>
#include <mbedtls/x509_crt.h>

#define RANDOM_MAX     ((lua_Integer)1 << 30)
#define CERT_DER_MAX   ((size_t)4 << 20)

typedef struct tp_crypto {
    tp_obj hdr;
} tp_crypto;

static int crypto_new(lua_State *L)
{
    tp_newobj(L, sizeof(tp_crypto), 0, TP_CRYPTO);
    return 1;
}

static int crypto_gc(lua_State *L)
{
    tp_crypto *c = tp_toobj(L, 1, TP_CRYPTO);
    c->hdr.closed = 1;
    return 0;
}

static int crypto_tostring(lua_State *L)
{
    tp_crypto *c = tp_toobj(L, 1, TP_CRYPTO);
    lua_pushfstring(L, "Crypto (%s)", c->hdr.closed ? "closed" : "mbedtls");
    return 1;
}

#define CHECK_CRYPTO(L) ((void)tp_checkobj((L), 1, TP_CRYPTO))

/* ------------------------------------------------------------- random */

static int crypto_generate_random_bytes(lua_State *L)
{
    lua_Integer size;
    void *rng;
    luaL_Buffer b;
    size_t done = 0;
    CHECK_CRYPTO(L);
    size = tp_checkrange(L, 2, 0, RANDOM_MAX);
    rng = tp_rng(L);
    luaL_buffinit(L, &b);
    while (done < (size_t)size) {
        size_t n = (size_t)size - done;
        unsigned char *out;
        int err;
        if (n > MBEDTLS_CTR_DRBG_MAX_REQUEST)
            n = MBEDTLS_CTR_DRBG_MAX_REQUEST;
        if (n > TP_BUFFER_CHUNK)
            n = TP_BUFFER_CHUNK;
        out = (unsigned char *)luaL_prepbuffsize(&b, n);
        err = tp_rng_random(rng, out, n);
        if (err != 0)
            return tp_fail_mbedtls(L, err, "FAILED", "random generation "
                                   "failed");
        luaL_addsize(&b, n);
        done += n;
    }
    luaL_pushresult(&b);
    return 1;
}

/* --------------------------------------------------------------- keys */

static int crypto_generate_rsa(lua_State *L)
{
    lua_Integer bits;
    mbedtls_pk_context *pk;
    int err;
    CHECK_CRYPTO(L);
    bits = tp_checkrange(L, 2, 1024, MBEDTLS_MPI_MAX_BITS);
    if (bits % 2 != 0)
        return luaL_argerror(L, 2, "RSA key size must be even");
    pk = tp_newkey(L);
    err = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA));
    if (err == 0)
        err = mbedtls_rsa_gen_key(mbedtls_pk_rsa(*pk), tp_rng_random,
                                  tp_rng(L), (unsigned int)bits, 65537);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot generate a %d-bit "
                               "RSA key", (int)bits);
    return 1;
}

static const char *const curve_names[] = {"secp256r1", "secp384r1",
                                          "secp521r1", NULL};
static const mbedtls_ecp_group_id curve_ids[] = {MBEDTLS_ECP_DP_SECP256R1,
                                                 MBEDTLS_ECP_DP_SECP384R1,
                                                 MBEDTLS_ECP_DP_SECP521R1};

static int crypto_generate_ec(lua_State *L)
{
    int which;
    mbedtls_pk_context *pk;
    int err;
    CHECK_CRYPTO(L);
    /* The curves' other common names: NIST's and OpenSSL's. */
    if (lua_type(L, 2) == LUA_TSTRING) {
        static const char *const aliases[][2] = {
            {"P-256", "secp256r1"}, {"prime256v1", "secp256r1"},
            {"P-384", "secp384r1"}, {"P-521", "secp521r1"},
        };
        const char *given = lua_tostring(L, 2);
        size_t i;
        for (i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
            if (strcasecmp(given, aliases[i][0]) == 0) {
                lua_pushstring(L, aliases[i][1]);
                lua_replace(L, 2);
                break;
            }
    }
    which = tp_checkoption(L, 2, "secp256r1", curve_names);
    pk = tp_newkey(L);
    err = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (err == 0)
        err = mbedtls_ecp_gen_key(curve_ids[which], mbedtls_pk_ec(*pk),
                                  tp_rng_random, tp_rng(L));
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot generate an EC key "
                               "on %s", curve_names[which]);
    return 1;
}

/* ------------------------------------------------------- certificates */

/* The writer lives in a userdata so that a raised error cannot leak it. */
#define TP_CERTWRITER "tlspeer.certwriter"

typedef struct tp_writer {
    int ready;
    mbedtls_x509write_cert crt;
} tp_writer;

static int writer_gc(lua_State *L)
{
    tp_writer *w = luaL_checkudata(L, 1, TP_CERTWRITER);
    if (w->ready)
        mbedtls_x509write_crt_free(&w->crt);
    w->ready = 0;
    return 0;
}

static mbedtls_x509write_cert *new_writer(lua_State *L)
{
    tp_writer *w = lua_newuserdatauv(L, sizeof *w, 0);
    memset(w, 0, sizeof *w);
    if (luaL_newmetatable(L, TP_CERTWRITER)) {
        lua_pushcfunction(L, writer_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    mbedtls_x509write_crt_init(&w->crt);
    w->ready = 1;
    return &w->crt;
}

/* "YYYYMMDDhhmmss" with every field in range. */
static int valid_time(const char *s)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int v[6], i, year;
    if (strlen(s) != 14)
        return 0;
    for (i = 0; i < 14; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
           (s[3] - '0');
    for (i = 0; i < 5; i++)
        v[i] = (s[4 + 2 * i] - '0') * 10 + (s[5 + 2 * i] - '0');
    if (year < 1950 || v[0] < 1 || v[0] > 12 || v[1] < 1 ||
        v[1] > mdays[v[0] - 1] || v[2] > 23 || v[3] > 59 || v[4] > 59)
        return 0;
    if (v[0] == 2 && v[1] == 29 &&
        !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
        return 0;
    return 1;
}

/* A host name that may stand in a dNSName ("*." allowed in front). */
static int valid_dns(const char *s, size_t len)
{
    size_t i;
    if (len == 0 || len > 253 || s[0] == '.' || s[len - 1] == '.')
        return 0;
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
              (c == '*' && i == 0 && len > 2 && s[1] == '.')))
            return 0;
    }
    return 1;
}

/* Options of generate_self_signed_certificate / issue_certificate. */
typedef struct cert_opts {
    int ca, client, nsan;
} cert_opts;

static void check_opts(lua_State *L, int idx, cert_opts *o)
{
    memset(o, 0, sizeof *o);
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "ca");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        luaL_error(L, "bad option 'ca' (boolean expected, got %s)",
                   luaL_typename(L, -1));
    o->ca = lua_toboolean(L, -1);
    lua_getfield(L, idx, "client");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        luaL_error(L, "bad option 'client' (boolean expected, got %s)",
                   luaL_typename(L, -1));
    o->client = lua_toboolean(L, -1);
    lua_getfield(L, idx, "san");
    if (!lua_isnil(L, -1)) {
        lua_Integer i, n;
        if (!lua_istable(L, -1))
            luaL_error(L, "bad option 'san' (list of strings expected, got "
                       "%s)", luaL_typename(L, -1));
        n = (lua_Integer)lua_rawlen(L, -1);
        if (n > 10000)
            luaL_error(L, "bad option 'san' (at most 10000 names)");
        for (i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
                luaL_error(L, "bad option 'san' (entry %d is a %s, not a "
                           "string)", (int)i, luaL_typename(L, -1));
            lua_pop(L, 1);
        }
        o->nsan = (int)n;
    }
    lua_pop(L, 3);
}

/* Encodes one GeneralName (iPAddress or dNSName) backwards at *p. */
static int write_general_name(unsigned char **p, unsigned char *start,
                              const char *name, size_t len)
{
    unsigned char ip[16];
    int n, total = 0, tag;
    const unsigned char *raw = (const unsigned char *)name;
    size_t rawlen = len;
    if (inet_pton(AF_INET, name, ip) == 1) {
        raw = ip;
        rawlen = 4;
        tag = 7;
    } else if (inet_pton(AF_INET6, name, ip) == 1) {
        raw = ip;
        rawlen = 16;
        tag = 7;
    } else
        tag = 2;
    if ((n = mbedtls_asn1_write_raw_buffer(p, start, raw, rawlen)) < 0)
        return n;
    total += n;
    if ((n = mbedtls_asn1_write_len(p, start, (size_t)total)) < 0)
        return n;
    total += n;
    if ((n = mbedtls_asn1_write_tag(p, start,
                                    MBEDTLS_ASN1_CONTEXT_SPECIFIC | tag)) < 0)
        return n;
    return total + n;
}

static int is_ip(const char *s)
{
    unsigned char ip[16];
    return inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1;
}

/*
 * Collects the subjectAltName entries on a Lua table (index returned): the
 * CN first (when it is a host name or an IP literal), then opts.san, without
 * duplicates.  Pushes a failure and returns 0 on an invalid entry.
 */
static int collect_san(lua_State *L, int optsidx, const cert_opts *o,
                       const mbedtls_asn1_named_data *subject, int *nret)
{
    int list, n = 0, i, j;
    lua_newtable(L);
    list = lua_gettop(L);
    for (; subject != NULL; subject = subject->next)
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &subject->oid) == 0) {
            lua_pushlstring(L, (const char *)subject->val.p, subject->val.len);
            if (is_ip(lua_tostring(L, -1)) ||
                valid_dns((const char *)subject->val.p, subject->val.len))
                lua_rawseti(L, list, ++n);
            else
                lua_pop(L, 1);
            break;
        }
    if (o->nsan > 0)
        lua_getfield(L, optsidx, "san");
    for (i = 1; i <= o->nsan; i++) {
        size_t len;
        const char *name;
        int dup = 0;
        lua_rawgeti(L, -1, i);
        name = lua_tolstring(L, -1, &len);
        if (strlen(name) != len || (!is_ip(name) && !valid_dns(name, len))) {
            *nret = tp_fail(L, "ERR_INVALID_PARAMETER", "opts.san entry %d "
                            "('%s') is neither a host name nor an IP address",
                            i, name);
            return 0;
        }
        for (j = 1; j <= n && !dup; j++) {
            lua_rawgeti(L, list, j);
            dup = lua_rawequal(L, -1, -2);
            lua_pop(L, 1);
        }
        if (dup)
            lua_pop(L, 1);
        else
            lua_rawseti(L, list, ++n);
    }
    if (o->nsan > 0)
        lua_pop(L, 1);
    return list;
}

/* Sets the subjectAltName extension from the list at `list`. */
static int set_san(lua_State *L, mbedtls_x509write_cert *crt, int list,
                   int critical)
{
    lua_Integer i, n = (lua_Integer)lua_rawlen(L, list);
    size_t size = 16;
    unsigned char *buf, *p;
    int total = 0, w, err;
    if (n == 0)
        return 0;
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        size += lua_rawlen(L, -1) + 8;
        lua_pop(L, 1);
    }
    buf = tp_scratch(L, size);
    p = buf + size;
    for (i = n; i >= 1; i--) {
        size_t len;
        const char *name;
        lua_rawgeti(L, list, i);
        name = lua_tolstring(L, -1, &len);
        w = write_general_name(&p, buf, name, len);
        lua_pop(L, 1);
        if (w < 0)
            goto out;
        total += w;
    }
    if ((w = mbedtls_asn1_write_len(&p, buf, (size_t)total)) < 0)
        goto out;
    total += w;
    if ((w = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED |
                                    MBEDTLS_ASN1_SEQUENCE)) < 0)
        goto out;
    total += w;
    err = mbedtls_x509write_crt_set_extension(
        crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
        MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), critical, p,
        (size_t)total);
    lua_pop(L, 1);
    return err;
out:
    lua_pop(L, 1);
    return w;
}

/* extKeyUsage: serverAuth and/or clientAuth. */
static int set_eku(mbedtls_x509write_cert *crt, int server, int client)
{
    unsigned char buf[32], *p = buf + sizeof buf;
    int total = 0, w;
    if (client) {
        if ((w = mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_CLIENT_AUTH,
                    MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH))) < 0)
            return w;
        total += w;
    }
    if (server) {
        if ((w = mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_SERVER_AUTH,
                    MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH))) < 0)
            return w;
        total += w;
    }
    if ((w = mbedtls_asn1_write_len(&p, buf, (size_t)total)) < 0)
        return w;
    total += w;
    if ((w = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED |
                                    MBEDTLS_ASN1_SEQUENCE)) < 0)
        return w;
    total += w;
    return mbedtls_x509write_crt_set_extension(
        crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
        MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0, p, (size_t)total);
}

/*
 * Pushes the issuer certificate's subject in the form mbedtls' name parser
 * reads back into the same RDN sequence (certificate order, ',' escaped).
 */
static void push_issuer_name(lua_State *L, const mbedtls_x509_name *dn)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (; dn != NULL; dn = dn->next) {
        const char *sn = NULL;
        size_t i;
        if (dn->oid.p == NULL)
            continue;
        if (mbedtls_oid_get_attr_short_name(&dn->oid, &sn) != 0)
            sn = "?";                 /* rejected by the parser below */
        luaL_addstring(&b, sn);
        luaL_addchar(&b, '=');
        for (i = 0; i < dn->val.len; i++) {
            unsigned char ch = dn->val.p[i];
            /* 2.28's parser knows only "\,"; 3.x reads a bare '\' as an
             * escape and a leading '#' as hex-encoded DER, so both need
             * escaping there ("CN=#1 Root CA"). */
            if (ch == ',' ||
                (TP_MBEDTLS3 && (ch == '\\' || (i == 0 && ch == '#'))))
                luaL_addchar(&b, '\\');
            luaL_addchar(&b, (char)dn->val.p[i]);
        }
        if (dn->next != NULL)
            luaL_addchar(&b, ',');
    }
    luaL_pushresult(&b);
}

static mbedtls_md_type_t sig_md_for(mbedtls_pk_context *key)
{
    if (mbedtls_pk_get_type(key) == MBEDTLS_PK_ECKEY) {
        size_t bits = mbedtls_pk_get_bitlen(key);
        if (bits > 384)
            return MBEDTLS_MD_SHA512;
        if (bits > 256)
            return MBEDTLS_MD_SHA384;
    }
    return MBEDTLS_MD_SHA256;
}

/*
 * The work of both certificate makers.  Arguments at: subject key `sk`,
 * subject name `sn`, issuer key `ik`, issuer certificate `ic` (0 for a
 * self-signed one), validity `nb`/`na`, options `op`; `defaults` supply the
 * Godot defaults of the self-signed form.
 */
static int make_certificate(lua_State *L, int sk, int sn, int ik, int ic,
                            int nb, int na, int op, int self_signed)
{
    mbedtls_pk_context *subject_key = tp_checkkey(L, sk);
    mbedtls_pk_context *issuer_key = tp_checkkey(L, ik);
    mbedtls_x509_crt *issuer_cert = ic ? tp_checkcert(L, ic) : NULL;
    const char *subject_name = self_signed
        ? luaL_optstring(L, sn, "CN=myserver,O=myorganisation,C=IT")
        : luaL_checkstring(L, sn);
    const char *not_before = self_signed
        ? luaL_optstring(L, nb, "20140101000000") : luaL_checkstring(L, nb);
    const char *not_after = self_signed
        ? luaL_optstring(L, na, "20340101000000") : luaL_checkstring(L, na);
    const char *issuer_name;
    cert_opts o;
    mbedtls_x509write_cert *crt;
    void *rng = tp_rng(L);
    unsigned char serial[16], *der = NULL;
    size_t cap;
    int err, san, len = 0, is_rsa, nret = 0;

    {
        static const char *const names[] = {"ca", "client", "san", NULL};
        tp_checkoptnames(L, op, names, self_signed
                         ? "generate_self_signed_certificate"
                         : "issue_certificate");
    }
    check_opts(L, op, &o);

    /* Runtime checks, each with what to do about it. */
    if (mbedtls_pk_get_type(subject_key) == MBEDTLS_PK_NONE)
        return tp_fail(L, "ERR_INVALID_PARAMETER", "the key is empty: "
                       "generate or load one first");
    if (mbedtls_pk_get_type(issuer_key) == MBEDTLS_PK_NONE ||
        tp_key_is_public_only(L, ik))
        return tp_fail(L, "ERR_INVALID_PARAMETER", "signing a certificate "
                       "needs a private key, and the %s key is %s",
                       self_signed ? "given" : "issuer's",
                       mbedtls_pk_get_type(issuer_key) == MBEDTLS_PK_NONE
                           ? "empty" : "public only");
    if (issuer_cert != NULL) {
        if (issuer_cert->raw.p == NULL)
            return tp_fail(L, "ERR_INVALID_PARAMETER", "the issuer "
                           "certificate is empty");
        if (!tp_crt_is_ca(issuer_cert))
            return tp_fail(L, "ERR_INVALID_PARAMETER", "the issuer "
                           "certificate is not a CA: make it with opts.ca = "
                           "true");
        if (tp_pk_check_pair(&issuer_cert->pk, issuer_key, rng) != 0)
            return tp_fail(L, "ERR_INVALID_PARAMETER", "the issuer key does "
                           "not match the issuer certificate");
    }
    if (!valid_time(not_before))
        return tp_fail(L, "ERR_INVALID_PARAMETER", "not_before '%s' is not a "
                       "valid \"YYYYMMDDhhmmss\" UTC time", not_before);
    if (!valid_time(not_after))
        return tp_fail(L, "ERR_INVALID_PARAMETER", "not_after '%s' is not a "
                       "valid \"YYYYMMDDhhmmss\" UTC time", not_after);
    if (strcmp(not_before, not_after) >= 0)
        return tp_fail(L, "ERR_INVALID_PARAMETER", "not_after (%s) must come "
                       "after not_before (%s)", not_after, not_before);

    if (issuer_cert != NULL) {
        push_issuer_name(L, &issuer_cert->subject);
        issuer_name = lua_tostring(L, -1);
    } else
        issuer_name = subject_name;

    crt = new_writer(L);
    mbedtls_x509write_crt_set_version(crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(crt, sig_md_for(issuer_key));
    mbedtls_x509write_crt_set_subject_key(crt, subject_key);
    mbedtls_x509write_crt_set_issuer_key(crt, issuer_key);
    if ((err = mbedtls_x509write_crt_set_subject_name(crt, subject_name)) != 0)
        return tp_fail_mbedtls(L, err, "ERR_INVALID_PARAMETER", "invalid "
                               "subject name '%s'", subject_name);
    /* mbedtls 2.28 takes a name without any "attr=value" ("", "myserver")
     * as an empty name instead of rejecting it, as 3.x does. */
    if (crt->MBEDTLS_PRIVATE(subject) == NULL)
        return tp_fail(L, "ERR_INVALID_PARAMETER", "invalid subject name "
                       "'%s': no attribute=value pair such as \"CN=name\"",
                       subject_name);
    if ((err = mbedtls_x509write_crt_set_issuer_name(crt, issuer_name)) != 0)
        return tp_fail_mbedtls(L, err, "ERR_INVALID_PARAMETER", "invalid "
                               "issuer name '%s'", issuer_name);
    if ((err = tp_rng_random(rng, serial, sizeof serial)) != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "random generation failed");
    serial[0] = (unsigned char)((serial[0] & 0x3f) | 0x40);  /* positive */
    err = tp_x509write_crt_set_serial_raw(crt, serial, sizeof serial);
    if (err == 0)
        err = mbedtls_x509write_crt_set_validity(crt, not_before, not_after);
    if (err == 0)
        err = mbedtls_x509write_crt_set_basic_constraints(crt, o.ca, -1);
    if (err == 0)
        err = mbedtls_x509write_crt_set_subject_key_identifier(crt);
    if (err == 0)
        err = mbedtls_x509write_crt_set_authority_key_identifier(crt);
    is_rsa = mbedtls_pk_get_type(subject_key) == MBEDTLS_PK_RSA;
    if (err == 0 && o.ca)
        err = mbedtls_x509write_crt_set_key_usage(crt,
                MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN |
                MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    else if (err == 0 && !self_signed)
        /* A self-signed leaf carries no keyUsage: OpenSSL only treats a
         * certificate as self-signed (a trust anchor of its own) when any
         * keyUsage it has includes keyCertSign, which a leaf must not. */
        err = mbedtls_x509write_crt_set_key_usage(crt,
                MBEDTLS_X509_KU_DIGITAL_SIGNATURE |
                (is_rsa ? MBEDTLS_X509_KU_KEY_ENCIPHERMENT : 0));
    if (err == 0 && !o.ca)
        err = set_eku(crt, self_signed || !o.client, self_signed || o.client);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot build the "
                               "certificate");

    san = collect_san(L, op, &o, crt->MBEDTLS_PRIVATE(subject), &nret);
    if (san == 0)
        return nret;
    if ((err = set_san(L, crt, san, crt->MBEDTLS_PRIVATE(subject) == NULL)) != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot encode the "
                               "subjectAltName");

    for (cap = 8192 + 2 * lua_rawlen(L, san) * 64; cap <= CERT_DER_MAX;
         cap *= 2) {
        der = tp_scratch(L, cap);
        len = mbedtls_x509write_crt_der(crt, der, cap, tp_rng_random,
                                        rng);
        if (len != MBEDTLS_ERR_ASN1_BUF_TOO_SMALL &&
            len != MBEDTLS_ERR_X509_BUFFER_TOO_SMALL)
            break;
        lua_pop(L, 1);
    }
    if (len < 0)
        return tp_fail_mbedtls(L, len, "FAILED", "cannot sign the "
                               "certificate");
    {
        mbedtls_x509_crt *out = tp_newcert(L);
        err = mbedtls_x509_crt_parse_der(out, der + cap - len, (size_t)len);
        if (err != 0)
            return tp_fail_mbedtls(L, err, "FAILED", "the new certificate "
                                   "does not parse");
    }
    return 1;
}

/* crypto:generate_self_signed_certificate(key, issuer_name, not_before,
 *                                         not_after, opts) */
static int crypto_generate_self_signed_certificate(lua_State *L)
{
    lua_settop(L, 6);
    CHECK_CRYPTO(L);
    return make_certificate(L, 2, 3, 2, 0, 4, 5, 6, 1);
}

/* crypto:issue_certificate(subject_key, subject_name, issuer_key,
 *                          issuer_cert, not_before, not_after, opts) */
static int crypto_issue_certificate(lua_State *L)
{
    lua_settop(L, 8);
    CHECK_CRYPTO(L);
    tp_checkcert(L, 5);
    return make_certificate(L, 2, 3, 4, 5, 6, 7, 8, 0);
}

/* ------------------------------------------------ signatures and RSA */

static const mbedtls_md_info_t *check_digest(lua_State *L, int typearg,
                                             int hasharg, const char **hash,
                                             size_t *len)
{
    mbedtls_md_type_t type = tp_checkhash(L, typearg);
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(type);
    *hash = luaL_checklstring(L, hasharg, len);
    if (*len != mbedtls_md_get_size(md))
        luaL_argerror(L, hasharg, lua_pushfstring(L, "a %s digest is %d "
                      "bytes, got %d (pass the hash, not the message)",
                      mbedtls_md_get_name(md), (int)mbedtls_md_get_size(md),
                      (int)*len));
    return md;
}

/* A usable key at `idx`, or a failure pushed (returns NULL). */
static mbedtls_pk_context *usable_key(lua_State *L, int idx, int need_private,
                                      const char *what, int *nret)
{
    mbedtls_pk_context *pk = tp_checkkey(L, idx);
    if (mbedtls_pk_get_type(pk) == MBEDTLS_PK_NONE) {
        *nret = tp_fail(L, "ERR_INVALID_PARAMETER", "%s: the key is empty",
                        what);
        return NULL;
    }
    if (need_private && tp_key_is_public_only(L, idx)) {
        *nret = tp_fail(L, "ERR_INVALID_PARAMETER", "%s needs a private key, "
                        "and this key is public only", what);
        return NULL;
    }
    return pk;
}

static int crypto_sign(lua_State *L)
{
    const char *hash;
    size_t hlen, slen = 0;
    const mbedtls_md_info_t *md;
    mbedtls_pk_context *pk;
    unsigned char sig[MBEDTLS_MPI_MAX_SIZE + 16];
    int err, nret = 0;
    CHECK_CRYPTO(L);
    md = check_digest(L, 2, 3, &hash, &hlen);
    if ((pk = usable_key(L, 4, 1, "sign", &nret)) == NULL)
        return nret;
    err = tp_pk_sign(pk, mbedtls_md_get_type(md), (const unsigned char *)hash,
                     hlen, sig, sizeof sig, &slen, tp_rng(L));
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot sign");
    lua_pushlstring(L, (const char *)sig, slen);
    return 1;
}

static int crypto_verify(lua_State *L)
{
    const char *hash, *sig;
    size_t hlen, slen;
    const mbedtls_md_info_t *md;
    mbedtls_pk_context *pk;
    int nret = 0;
    CHECK_CRYPTO(L);
    md = check_digest(L, 2, 3, &hash, &hlen);
    sig = luaL_checklstring(L, 4, &slen);
    if ((pk = usable_key(L, 5, 0, "verify", &nret)) == NULL)
        return nret;
    lua_pushboolean(L, mbedtls_pk_verify(pk, mbedtls_md_get_type(md),
                                         (const unsigned char *)hash, hlen,
                                         (const unsigned char *)sig,
                                         slen) == 0);
    return 1;
}

/* RSA PKCS#1 v1.5, as Godot. */
static int rsa_crypt(lua_State *L, int encrypt)
{
    const char *what = encrypt ? "encrypt" : "decrypt";
    mbedtls_pk_context *pk;
    size_t ilen, olen = 0, cap;
    const char *in;
    unsigned char *out;
    int err, nret = 0;
    CHECK_CRYPTO(L);
    if ((pk = usable_key(L, 2, !encrypt, what, &nret)) == NULL)
        return nret;
    in = luaL_checklstring(L, 3, &ilen);
    if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_RSA)
        return tp_fail(L, "ERR_INVALID_PARAMETER", "%s needs an RSA key, "
                       "not an EC key", what);
    cap = (mbedtls_pk_get_bitlen(pk) + 7) / 8;
    out = tp_scratch(L, cap);
    err = encrypt
        ? mbedtls_pk_encrypt(pk, (const unsigned char *)in, ilen, out, &olen,
                             cap, tp_rng_random, tp_rng(L))
        : mbedtls_pk_decrypt(pk, (const unsigned char *)in, ilen, out, &olen,
                             cap, tp_rng_random, tp_rng(L));
    if (err != 0) {
        mbedtls_platform_zeroize(out, cap);
        if (encrypt && ilen + 11 > cap)
            return tp_fail(L, "ERR_INVALID_PARAMETER", "plaintext of %d "
                           "bytes is too long for a %d-bit RSA key (at most "
                           "%d)", (int)ilen, (int)cap * 8, (int)cap - 11);
        return tp_fail_mbedtls(L, err, encrypt ? "FAILED" : "ERR_INVALID_DATA",
                               "cannot %s", what);
    }
    lua_pushlstring(L, (const char *)out, olen);
    mbedtls_platform_zeroize(out, cap);
    return 1;
}

static int crypto_encrypt(lua_State *L)
{
    return rsa_crypt(L, 1);
}

static int crypto_decrypt(lua_State *L)
{
    return rsa_crypt(L, 0);
}

static int crypto_hmac_digest(lua_State *L)
{
    mbedtls_md_type_t type;
    const mbedtls_md_info_t *md;
    size_t klen, mlen;
    const char *key, *msg;
    unsigned char out[MBEDTLS_MD_MAX_SIZE];
    int err;
    CHECK_CRYPTO(L);
    type = tp_checkhash(L, 2);
    key = luaL_checklstring(L, 3, &klen);
    msg = luaL_checklstring(L, 4, &mlen);
    md = mbedtls_md_info_from_type(type);
    err = mbedtls_md_hmac(md, (const unsigned char *)key, klen,
                          (const unsigned char *)msg, mlen, out);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "HMAC failed");
    lua_pushlstring(L, (const char *)out, mbedtls_md_get_size(md));
    mbedtls_platform_zeroize(out, sizeof out);
    return 1;
}

static int crypto_constant_time_compare(lua_State *L)
{
    size_t alen, blen, i;
    const unsigned char *a, *b;
    unsigned char diff = 0;
    CHECK_CRYPTO(L);
    a = (const unsigned char *)luaL_checklstring(L, 2, &alen);
    b = (const unsigned char *)luaL_checklstring(L, 3, &blen);
    if (alen != blen) {
        lua_pushboolean(L, 0);
        return 1;
    }
    for (i = 0; i < alen; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    lua_pushboolean(L, diff == 0);
    return 1;
}

/* ------------------------------------------------------------- opener */

static const luaL_Reg crypto_methods[] = {
    {"generate_random_bytes", crypto_generate_random_bytes},
    {"generate_rsa", crypto_generate_rsa},
    {"generate_ec", crypto_generate_ec},
    {"generate_self_signed_certificate", crypto_generate_self_signed_certificate},
    {"issue_certificate", crypto_issue_certificate},
    {"sign", crypto_sign},
    {"verify", crypto_verify},
    {"encrypt", crypto_encrypt},
    {"decrypt", crypto_decrypt},
    {"hmac_digest", crypto_hmac_digest},
    {"constant_time_compare", crypto_constant_time_compare},
    {NULL, NULL}
};

static const luaL_Reg crypto_meta[] = {
    {"__gc", crypto_gc},
    {"__close", crypto_gc},
    {"__tostring", crypto_tostring},
    {NULL, NULL}
};

void tp_open_crypto(lua_State *L)
{
    tp_newclass(L, TP_CRYPTO, crypto_methods, crypto_meta, crypto_new, NULL);
}
