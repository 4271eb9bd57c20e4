/*
 * key.c - CryptoKey: RSA and EC keys, loaded from PEM or DER (PKCS#1, SEC1,
 * PKCS#8, encrypted PKCS#8 and legacy encrypted PEM, SubjectPublicKeyInfo),
 * saved as PEM (private keys with mode 0600).
 */
#include "aux.h"

#include <limits.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/oid.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pem.h>
#include <mbedtls/pkcs12.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>
#include <mbedtls/aes.h>

#define KEY_FILE_MAX   (1u << 20)     /* no key file is larger than 1 MiB */
#define KEY_PEM_MAX    (16u << 10)    /* PEM of an 8192-bit RSA private key */

/* Password-based key derivation: the iteration count comes from the key
 * file, so a hostile file could ask for billions (minutes of CPU per
 * load).  Loads refuse more than KEY_MAX_ITERATIONS (about 2 s here);
 * saves use KEY_SAVE_ITERATIONS of PBKDF2-HMAC-SHA256. */
#define KEY_MAX_ITERATIONS   1000000
#define KEY_SAVE_ITERATIONS  600000

typedef struct tp_key {
    tp_obj hdr;
    unsigned char public_only;
    mbedtls_pk_context pk;            /* type NONE while empty */
} tp_key;

static int key_empty(const tp_key *k)
{
    return mbedtls_pk_get_type(&k->pk) == MBEDTLS_PK_NONE;
}

mbedtls_pk_context *tp_newkey(lua_State *L)
{
    tp_key *k = tp_newobj(L, sizeof *k, 0, TP_CRYPTOKEY);
    mbedtls_pk_init(&k->pk);
    return &k->pk;
}

mbedtls_pk_context *tp_checkkey(lua_State *L, int idx)
{
    tp_key *k = tp_checkobj(L, idx, TP_CRYPTOKEY);
    return &k->pk;
}

int tp_key_is_public_only(lua_State *L, int idx)
{
    tp_key *k = tp_checkobj(L, idx, TP_CRYPTOKEY);
    return k->public_only;
}

/* Whether two keys have the same public part: their public keys written
 * as DER, compared.  For a certificate and the private key meant to go
 * with it, this catches the usual mistake (the wrong pair) in a few
 * microseconds, where mbedtls_pk_check_pair also recomputes the public
 * point of an EC key (a millisecond on P-384: too long for a frame). */
int tp_pk_same_public(mbedtls_pk_context *a, mbedtls_pk_context *b)
{
    unsigned char da[2600], db[2600];
    int na = mbedtls_pk_write_pubkey_der(a, da, sizeof da);
    int nb = mbedtls_pk_write_pubkey_der(b, db, sizeof db);
    int same = na > 0 && na == nb &&
               memcmp(da + sizeof da - na, db + sizeof db - nb, (size_t)na) == 0;
    return same;
}

void tp_key_mark_public(lua_State *L, int idx)
{
    tp_key *k = tp_checkobj(L, idx, TP_CRYPTOKEY);
    k->public_only = 1;
}

static int key_new(lua_State *L)
{
    tp_newkey(L);
    return 1;
}

/* mbedtls_pk_free is idempotent: it zeroes the context it frees. */
static int key_gc(lua_State *L)
{
    tp_key *k = tp_toobj(L, 1, TP_CRYPTOKEY);
    mbedtls_pk_free(&k->pk);          /* zeroes the key material */
    k->hdr.closed = 1;
    return 0;
}

static int key_close(lua_State *L)
{
    tp_key *k = tp_toobj(L, 1, TP_CRYPTOKEY);
    k->hdr.closed = 1;
    if (!k->hdr.pinned)               /* a TLSOptions may still sign with it */
        mbedtls_pk_free(&k->pk);
    return 0;
}

static int key_tostring(lua_State *L)
{
    tp_key *k = tp_toobj(L, 1, TP_CRYPTOKEY);
    if (k->hdr.closed)
        lua_pushliteral(L, "CryptoKey (closed)");
    else if (key_empty(k))
        lua_pushliteral(L, "CryptoKey (empty)");
    else if (mbedtls_pk_get_type(&k->pk) == MBEDTLS_PK_RSA)
        lua_pushfstring(L, "CryptoKey (RSA %d-bit, %s)",
                        (int)mbedtls_pk_get_bitlen(&k->pk),
                        k->public_only ? "public" : "private");
    else {
        const mbedtls_ecp_curve_info *ci =
            mbedtls_ecp_curve_info_from_grp_id(tp_pk_ec_group_id(&k->pk));
        lua_pushfstring(L, "CryptoKey (EC %s, %s)", ci ? ci->name : "?",
                        k->public_only ? "public" : "private");
    }
    return 1;
}

/* ------------------------------------------------------------ parsing */

static int contains(const unsigned char *data, size_t len, const char *tag)
{
    size_t i, n = strlen(tag);
    for (i = 0; i + n <= len; i++)
        if (memcmp(data + i, tag, n) == 0)
            return 1;
    return 0;
}

/* PEM input must be passed to mbedtls with its NUL; DER without. */
static int looks_pem(const unsigned char *data, size_t len)
{
    return contains(data, len, "-----BEGIN ");
}

/* An encrypted key: a complete PEM marked as encrypted, or a DER
 * EncryptedPrivateKeyInfo (SEQUENCE { AlgorithmIdentifier, OCTET STRING };
 * a SubjectPublicKeyInfo has a BIT STRING there). */
static int is_encrypted(const unsigned char *data, size_t len)
{
    unsigned char *p = (unsigned char *)data, *end = p + len;
    size_t n;
    if (looks_pem(data, len))
        return contains(data, len, "-----END ") &&
               (contains(data, len, "Proc-Type: 4,ENCRYPTED") ||
                contains(data, len, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED |
                             MBEDTLS_ASN1_SEQUENCE) != 0 || p + n != end ||
        mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED |
                             MBEDTLS_ASN1_SEQUENCE) != 0)
        return 0;
    p += n;
    return mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_OCTET_STRING) == 0 &&
           p + n == end;
}

/*
 * A wrong password usually fails a padding or sanity check (mbedtls says
 * PASSWORD_MISMATCH), but about one time in 250 the wrong plaintext passes
 * them and only its parsing fails (ASN.1, PK, RSA, EC or bignum errors).
 * For an encrypted key given a password, such an error means a wrong
 * password too; a broken PEM or an unsupported algorithm does not.
 */
static int wrong_password(const unsigned char *data, size_t len,
                          const char *pw, int err)
{
    int high = -err & 0x7F80;         /* mbedtls' high-level error part */
    if (pw == NULL || err == 0 || !is_encrypted(data, len))
        return 0;
    if (high >= -MBEDTLS_ERR_PEM_NO_HEADER_FOOTER_PRESENT &&
        high <= -MBEDTLS_ERR_PEM_BAD_INPUT_DATA)
        return 0;
    switch (err) {
    case MBEDTLS_ERR_PK_ALLOC_FAILED:
    case MBEDTLS_ERR_PK_UNKNOWN_PK_ALG:
    case MBEDTLS_ERR_PK_FEATURE_UNAVAILABLE:
    case MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE:
    case MBEDTLS_ERR_PKCS12_FEATURE_UNAVAILABLE:
        return 0;
    default:
        return 1;
    }
}

/* The DER of the EncryptedPrivateKeyInfo in data (PEM or DER), in a
 * scratch userdata pushed on the stack; *derlen its length.  NULL (nothing
 * pushed) when data is not one. */
static unsigned char *epki_der(lua_State *L, const unsigned char *data,
                               size_t len, size_t *derlen)
{
    unsigned char *out;
    if (looks_pem(data, len)) {
        mbedtls_pem_context pem;
        size_t used;
        /* Scratch first: nothing that may raise while pem holds memory. */
        out = tp_scratch(L, len);
        mbedtls_pem_init(&pem);
        if (mbedtls_pem_read_buffer(&pem,
                                    "-----BEGIN ENCRYPTED PRIVATE KEY-----",
                                    "-----END ENCRYPTED PRIVATE KEY-----",
                                    data, NULL, 0, &used) != 0 ||
            tp_pem_buflen(&pem) > len) {
            mbedtls_pem_free(&pem);
            lua_pop(L, 1);
            return NULL;
        }
        memcpy(out, tp_pem_buf(&pem), tp_pem_buflen(&pem));
        *derlen = tp_pem_buflen(&pem);
        mbedtls_pem_free(&pem);
        return out;
    }
    if (!is_encrypted(data, len))
        return NULL;
    out = tp_scratch(L, len);
    memcpy(out, data, len);
    *derlen = len;
    return out;
}

/* Is the OID at oid (len bytes) `prefix` plus one more byte? */
static int oid_under(const unsigned char *oid, size_t len, const char *prefix,
                     size_t plen)
{
    return len == plen + 1 && memcmp(oid, prefix, plen) == 0;
}

/* The iteration count an EncryptedPrivateKeyInfo asks for: PBES2 with
 * PBKDF2, PKCS#12 PBE or PKCS#5 PBES1.  0 when there is none to read
 * (mbedtls then refuses the file itself). */
static long epki_iterations(unsigned char *p, size_t len)
{
    unsigned char *end = p + len, *alg_end, *oid;
    size_t n, oidlen;
    unsigned long count;
    if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED |
                             MBEDTLS_ASN1_SEQUENCE) != 0 ||
        mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED |
                             MBEDTLS_ASN1_SEQUENCE) != 0)
        return 0;
    alg_end = p + n;
    if (mbedtls_asn1_get_tag(&p, alg_end, &oidlen, MBEDTLS_ASN1_OID) != 0)
        return 0;
    oid = p;
    p += oidlen;
    if (oidlen == MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS5_PBES2) &&
        memcmp(oid, MBEDTLS_OID_PKCS5_PBES2, oidlen) == 0) {
        /* PBES2-params { keyDerivationFunc { pbkdf2, { salt, count ...}}} */
        if (mbedtls_asn1_get_tag(&p, alg_end, &n, MBEDTLS_ASN1_CONSTRUCTED |
                                 MBEDTLS_ASN1_SEQUENCE) != 0 ||
            mbedtls_asn1_get_tag(&p, alg_end, &n, MBEDTLS_ASN1_CONSTRUCTED |
                                 MBEDTLS_ASN1_SEQUENCE) != 0)
            return 0;
        alg_end = p + n;
        if (mbedtls_asn1_get_tag(&p, alg_end, &oidlen, MBEDTLS_ASN1_OID) != 0 ||
            oidlen != MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS5_PBKDF2) ||
            memcmp(p, MBEDTLS_OID_PKCS5_PBKDF2, oidlen) != 0)
            return 0;
        p += oidlen;
    } else if (!oid_under(oid, oidlen, MBEDTLS_OID_PKCS12_PBE,
                          MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS12_PBE)) &&
               !oid_under(oid, oidlen, MBEDTLS_OID_PKCS5,
                          MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS5)))
        return 0;
    /* { salt OCTET STRING, iterationCount INTEGER, ... } */
    if (mbedtls_asn1_get_tag(&p, alg_end, &n, MBEDTLS_ASN1_CONSTRUCTED |
                             MBEDTLS_ASN1_SEQUENCE) != 0)
        return 0;
    end = p + n;
    if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_OCTET_STRING) != 0)
        return 0;
    p += n;
    if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_INTEGER) != 0 ||
        n == 0 || (p[0] & 0x80) != 0)
        return 0;                     /* none, or negative: mbedtls refuses */
    for (count = 0; n > 0; n--, p++) {
        if (count > (unsigned long)LONG_MAX >> 8)
            return LONG_MAX;
        count = count << 8 | *p;
    }
    return count > (unsigned long)LONG_MAX ? LONG_MAX : (long)count;
}

#if TP_NEED_PBES2_AES
static int pbes2_aes_parse(lua_State *L, mbedtls_pk_context *pk,
                           const unsigned char *data, size_t len,
                           const unsigned char *pw, size_t pwlen);
#endif

/* Copies the public half of `src` into `dst` (both initialised). */
static int copy_public(lua_State *L, mbedtls_pk_context *dst,
                       mbedtls_pk_context *src)
{
    unsigned char *der = tp_scratch(L, KEY_PEM_MAX);
    int n = mbedtls_pk_write_pubkey_der(src, der, KEY_PEM_MAX);
    int err = n;
    if (n > 0)
        err = mbedtls_pk_parse_public_key(dst, der + KEY_PEM_MAX - n,
                                          (size_t)n);
    lua_pop(L, 1);
    return err;
}

/* parse_key's answer for a file that asks for too many iterations. */
#define ERR_ITERATIONS 1

/*
 * Parses `data` into `pk` (initialised, empty).  Returns 0 and sets
 * *public_only, or an mbedtls error, or ERR_ITERATIONS (the count in
 * *iterations).  `data` is NUL-terminated at len.
 */
static int parse_key(lua_State *L, mbedtls_pk_context *pk,
                     const unsigned char *data, size_t len, int want_public,
                     const char *pw, size_t pwlen, int *public_only,
                     long *iterations)
{
    int pem = looks_pem(data, len);
    size_t n = pem ? len + 1 : len;
    const unsigned char *upw = (const unsigned char *)pw;
    int err;

    if (len == 0)
        return MBEDTLS_ERR_PK_KEY_INVALID_FORMAT;
    *public_only = 0;
    if (pw != NULL) {
        /* Every decryption path (ours, mbedtls' PBES2, PKCS#12, PBES1)
         * derives its key as often as the file says: look first. */
        size_t derlen;
        unsigned char *der = epki_der(L, data, len, &derlen);
        if (der != NULL) {
            *iterations = epki_iterations(der, derlen);
            lua_pop(L, 1);
            if (*iterations > KEY_MAX_ITERATIONS)
                return ERR_ITERATIONS;
        }
    }
    if (want_public) {
        err = mbedtls_pk_parse_public_key(pk, data, n);
        if (err == 0) {
            *public_only = 1;
            return 0;
        }
        mbedtls_pk_free(pk);
        mbedtls_pk_init(pk);
    }
    err = tp_pk_parse_key(pk, data, n, upw, pwlen, tp_rng(L));
#if TP_NEED_PBES2_AES
    if (err == MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE && pw != NULL) {
        mbedtls_pk_free(pk);
        mbedtls_pk_init(pk);
        err = pbes2_aes_parse(L, pk, data, len, upw, pwlen);
    } else if (err == MBEDTLS_ERR_PK_KEY_INVALID_FORMAT && !pem &&
               pw != NULL) {
        /* 2.28 reports an unsupported PBES2 cipher in DER as an invalid
         * format: try the AES decoder, keep its answer if it decrypted. */
        int err2;
        mbedtls_pk_free(pk);
        mbedtls_pk_init(pk);
        err2 = pbes2_aes_parse(L, pk, data, len, upw, pwlen);
        if (err2 == 0 || err2 == MBEDTLS_ERR_PK_PASSWORD_MISMATCH)
            err = err2;
    }
#endif
    if (err == 0 && want_public) {
        /* A private key asked for as public: keep only the public half. */
        mbedtls_pk_context pub;
        mbedtls_pk_init(&pub);
        err = copy_public(L, &pub, pk);
        mbedtls_pk_free(pk);
        *pk = pub;                    /* ownership moves */
        *public_only = 1;
    }
    return err;
}

/* Loads into the key at index 1 from data; `what` names the source. */
static int load_into(lua_State *L, const unsigned char *data, size_t len,
                     const char *what, int isfile)
{
    tp_key *k = tp_checkobj(L, 1, TP_CRYPTOKEY);
    int want_public = tp_optboolean(L, 3, 0);
    size_t pwlen = 0;
    const char *pw = luaL_optlstring(L, 4, NULL, &pwlen);
    mbedtls_pk_context *tmp = tp_newkey(L);   /* collected if we fail */
    int public_only = 0;
    long iterations = 0;
    const char *bad = isfile ? "ERR_FILE_CORRUPT" : "ERR_INVALID_DATA";
    int err = parse_key(L, tmp, data, len, want_public, pw, pwlen,
                        &public_only, &iterations);

    if (err == 0) {
        mbedtls_pk_context old = k->pk;
        k->pk = *tmp;                 /* swap: the temporary frees the old */
        *tmp = old;
        k->public_only = (unsigned char)public_only;
        lua_pushboolean(L, 1);
        return 1;
    }
    if (err == ERR_ITERATIONS) {
        char count[32] = "more than 2^31";
        if (iterations < LONG_MAX)
            snprintf(count, sizeof count, "%ld", iterations);
        return tp_fail(L, "ERR_INVALID_DATA", "cannot load a key from %s: "
                       "iteration count too high (the file asks for %s "
                       "key-derivation iterations; at most %d are allowed)",
                       what, count, KEY_MAX_ITERATIONS);
    }
    if (err == MBEDTLS_ERR_PK_PASSWORD_REQUIRED ||
        (pw == NULL && err == MBEDTLS_ERR_PK_KEY_INVALID_FORMAT &&
         !looks_pem(data, len) && is_encrypted(data, len)))
        return tp_fail(L, "ERR_UNAUTHORIZED", "%s is an encrypted key: pass "
                       "its password as the third argument", what);
    if (err == MBEDTLS_ERR_PK_PASSWORD_MISMATCH ||
        wrong_password(data, len, pw, err))
        return tp_fail(L, "ERR_UNAUTHORIZED", "wrong password for %s", what);
    if (len == 0)
        return tp_fail(L, bad, "%s is empty", what);
    if (!want_public) {
        /* Say so when a public key was given where a private one is due. */
        mbedtls_pk_context probe;
        int pub;
        mbedtls_pk_init(&probe);
        pub = mbedtls_pk_parse_public_key(&probe, data,
                                          looks_pem(data, len) ? len + 1
                                                               : len) == 0;
        mbedtls_pk_free(&probe);
        if (pub)
            return tp_fail(L, "ERR_INVALID_DATA", "%s holds a public key, "
                           "not a private one: load it with public_only = "
                           "true", what);
    }
    return tp_fail_mbedtls(L, err, bad, "cannot load a key from %s", what);
}

/* key:load(path, public_only = false, password = nil) */
static int key_load(lua_State *L)
{
    const char *path;
    unsigned char *data;
    size_t len;
    int r;
    lua_settop(L, 4);                 /* optional arguments stay at 3, 4 */
    tp_checkobj(L, 1, TP_CRYPTOKEY);
    path = luaL_checkstring(L, 2);
    (void)tp_optboolean(L, 3, 0);     /* bad arguments raise even when */
    (void)luaL_optstring(L, 4, NULL); /* the file cannot be read */
    if (tp_readfile(L, path, KEY_FILE_MAX, &data, &len) != 0)
        return 3;
    lua_pushfstring(L, "'%s'", path);
    r = load_into(L, data, len, lua_tostring(L, -1), 1);
    mbedtls_platform_zeroize(data, len);
    return r;
}

/* key:load_from_string(pem_or_der, public_only = false, password = nil) */
static int key_load_from_string(lua_State *L)
{
    size_t len;
    const char *s;
    lua_settop(L, 4);
    tp_checkobj(L, 1, TP_CRYPTOKEY);
    s = luaL_checklstring(L, 2, &len);
    return load_into(L, (const unsigned char *)s, len, "the string", 0);
}

/* ------------------------------------------------------------- saving */

/* Writes backwards, as mbedtls' asn1write does: each step returns the
 * bytes written or a negative error, and W() stops at the first error. */
#define W(call) do { int w_ = (call); if (w_ < 0) return w_; n += (size_t)w_; } while (0)

static int write_oid(unsigned char **p, unsigned char *start, const char *oid,
                     size_t len)
{
    return mbedtls_asn1_write_oid(p, start, oid, len);
}

static int write_header(unsigned char **p, unsigned char *start, size_t len,
                        unsigned char tag)
{
    size_t n = 0;
    W(mbedtls_asn1_write_len(p, start, len));
    W(mbedtls_asn1_write_tag(p, start, tag));
    return (int)n;
}

#define SEQ (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)

/* PKCS#8 PrivateKeyInfo { 0, algorithm, OCTET STRING { PKCS#1 or SEC1 } }
 * of pk, written backwards before *p.  `tmp` (size bytes) is scratch. */
static int write_private_key_info(unsigned char **p, unsigned char *start,
                                  mbedtls_pk_context *pk, unsigned char *tmp,
                                  size_t size)
{
    unsigned char *q, *end;
    size_t n = 0, len;
    int inner, spki;
    /* The AlgorithmIdentifier is the one of the public key's SPKI. */
    spki = mbedtls_pk_write_pubkey_der(pk, tmp, size);
    if (spki < 0)
        return spki;
    q = tmp + size - spki;
    end = tmp + size;
    if (mbedtls_asn1_get_tag(&q, end, &len, SEQ) != 0 ||
        mbedtls_asn1_get_tag(&q, end, &len, SEQ) != 0)
        return MBEDTLS_ERR_PK_KEY_INVALID_FORMAT;
    q += len;                                /* q: after the algorithm */
    {
        unsigned char *alg = tmp + size - spki;
        size_t alglen;
        (void)mbedtls_asn1_get_tag(&alg, end, &len, SEQ);   /* SPKI */
        alglen = (size_t)(q - alg);
        inner = mbedtls_pk_write_key_der(pk, tmp, size - (size_t)spki);
        if (inner < 0)
            return inner;
        W(mbedtls_asn1_write_raw_buffer(p, start,
                                        tmp + size - spki - inner,
                                        (size_t)inner));
        W(write_header(p, start, (size_t)inner, MBEDTLS_ASN1_OCTET_STRING));
        W(mbedtls_asn1_write_raw_buffer(p, start, alg, alglen));
        W(mbedtls_asn1_write_int(p, start, 0));
        W(write_header(p, start, n, SEQ));
        mbedtls_platform_zeroize(tmp, size);
    }
    return (int)n;
}

/* EncryptedPrivateKeyInfo with PBES2: PBKDF2-HMAC-SHA256 (salt, count)
 * and AES-256-CBC (iv) around `ct`, written backwards before *p. */
static int write_epki(unsigned char **p, unsigned char *start,
                      const unsigned char *ct, size_t ctlen,
                      const unsigned char *salt, const unsigned char *iv)
{
    static const char aes256_cbc[] = MBEDTLS_OID_AES "\x2a";
    size_t n = 0, alg = 0, params = 0;
    W(mbedtls_asn1_write_raw_buffer(p, start, ct, ctlen));
    W(write_header(p, start, ctlen, MBEDTLS_ASN1_OCTET_STRING));
    alg = n;
    /* encryptionScheme { aes256-CBC, iv } */
    W(mbedtls_asn1_write_octet_string(p, start, iv, 16));
    W(write_oid(p, start, aes256_cbc, sizeof aes256_cbc - 1));
    W(write_header(p, start, n - alg, SEQ));
    params = n;
    /* keyDerivationFunc { PBKDF2, { salt, count, prf } } */
    W(mbedtls_asn1_write_null(p, start));
    W(write_oid(p, start, MBEDTLS_OID_HMAC_SHA256,
                MBEDTLS_OID_SIZE(MBEDTLS_OID_HMAC_SHA256)));
    W(write_header(p, start, n - params, SEQ));
    W(mbedtls_asn1_write_int(p, start, KEY_SAVE_ITERATIONS));
    W(mbedtls_asn1_write_octet_string(p, start, salt, 16));
    W(write_header(p, start, n - params, SEQ));

    W(write_oid(p, start, MBEDTLS_OID_PKCS5_PBKDF2,
                MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS5_PBKDF2)));
    W(write_header(p, start, n - params, SEQ));

    W(write_header(p, start, n - alg, SEQ));        /* PBES2-params */
    W(write_oid(p, start, MBEDTLS_OID_PKCS5_PBES2,
                MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS5_PBES2)));
    W(write_header(p, start, n - alg, SEQ));        /* AlgorithmIdentifier */
    W(write_header(p, start, n, SEQ));
    return (int)n;
}
#undef W

/* The PEM of key 1 encrypted with `pw`: PKCS#8 with PBES2, what
 * `openssl pkcs8 -topk8 -v2 aes256` writes and reads.  Into a scratch
 * buffer (pushed); returns its length or an mbedtls error. */
static int encrypted_pem(lua_State *L, mbedtls_pk_context *pk,
                         const unsigned char *pw, size_t pwlen,
                         unsigned char **out)
{
    const size_t cap = KEY_PEM_MAX;
    unsigned char *tmp = tp_scratch(L, cap), *der = tp_scratch(L, cap);
    unsigned char *p = der + cap, *plain, *ct, salt[16], iv[16], ivw[16];
    unsigned char key[32];
    size_t plen, pad, i, olen = 0;
    int n, err;
    mbedtls_aes_context aes;

    n = write_private_key_info(&p, der, pk, tmp, cap);
    if (n < 0)
        goto done_n;
    plain = p;
    plen = (size_t)n;
    pad = 16 - plen % 16;
    if ((size_t)(plain - der) < pad) {
        n = MBEDTLS_ERR_ASN1_BUF_TOO_SMALL;
        goto done_n;
    }
    /* Pad in place (PKCS#7): move the plaintext down by `pad` bytes. */
    memmove(plain - pad, plain, plen);
    plain -= pad;
    for (i = 0; i < pad; i++)
        plain[plen + i] = (unsigned char)pad;
    plen += pad;
    if ((err = tp_rng_random(tp_rng(L), salt, sizeof salt)) != 0 ||
        (err = tp_rng_random(tp_rng(L), iv, sizeof iv)) != 0 ||
        (err = tp_pkcs5_pbkdf2_sha(MBEDTLS_MD_SHA256, pw, pwlen, salt,
                                   sizeof salt, KEY_SAVE_ITERATIONS, key,
                                   sizeof key)) != 0) {
        n = err;
        goto done_n;
    }
    ct = tmp;                                 /* tmp is free again */
    memcpy(ivw, iv, sizeof iv);
    mbedtls_aes_init(&aes);
    err = mbedtls_aes_setkey_enc(&aes, key, 256);
    if (err == 0)
        err = mbedtls_aes_crypt_cbc(&aes, MBEDTLS_AES_ENCRYPT, plen, ivw,
                                    plain, ct);
    mbedtls_aes_free(&aes);
    mbedtls_platform_zeroize(key, sizeof key);
    mbedtls_platform_zeroize(der, cap);       /* the plaintext key */
    if (err != 0) {
        n = err;
        goto done_n;
    }
    p = der + cap;
    n = write_epki(&p, der, ct, plen, salt, iv);
    if (n < 0)
        goto done_n;
    memmove(tmp, p, (size_t)n);               /* DER to the front of tmp */
    err = mbedtls_pem_write_buffer("-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
                                   "-----END ENCRYPTED PRIVATE KEY-----\n",
                                   tmp, (size_t)n, der, cap, &olen);
    n = err != 0 ? err : (int)strlen((const char *)der);
done_n:
    mbedtls_platform_zeroize(tmp, cap);
    if (n < 0)
        mbedtls_platform_zeroize(der, cap);
    lua_remove(L, -2);                        /* tmp; der stays pushed */
    *out = der;
    return n;
}

/* Writes the PEM of key 1 into a scratch buffer (pushed); returns its
 * length, or pushes a failure and returns -3.  With a password (at
 * `pwarg`, a string) the private key is encrypted. */
static long key_pem(lua_State *L, int public_only, int pwarg,
                    unsigned char **out)
{
    tp_key *k = tp_checkobj(L, 1, TP_CRYPTOKEY);
    unsigned char *buf;
    size_t pwlen = 0;
    const char *pw = lua_isnoneornil(L, pwarg) ? NULL
                                               : lua_tolstring(L, pwarg, &pwlen);
    int err;
    if (key_empty(k)) {
        tp_fail(L, "ERR_UNCONFIGURED", "the CryptoKey is empty: generate or "
                "load a key first");
        return -3;
    }
    if (!public_only && k->public_only) {
        tp_fail(L, "ERR_INVALID_PARAMETER", "the CryptoKey holds only a "
                "public key: save it with public_only = true");
        return -3;
    }
    if (pw != NULL) {
        int n = encrypted_pem(L, &k->pk, (const unsigned char *)pw, pwlen,
                              out);
        if (n < 0) {
            lua_pop(L, 1);
            tp_fail_mbedtls(L, n, "FAILED", "cannot encrypt the key");
            return -3;
        }
        return n;
    }
    buf = tp_scratch(L, KEY_PEM_MAX);
    err = public_only ? mbedtls_pk_write_pubkey_pem(&k->pk, buf, KEY_PEM_MAX)
                      : mbedtls_pk_write_key_pem(&k->pk, buf, KEY_PEM_MAX);
    if (err != 0) {
        mbedtls_platform_zeroize(buf, KEY_PEM_MAX);
        lua_pop(L, 1);
        tp_fail_mbedtls(L, err, "FAILED", "cannot encode the key");
        return -3;
    }
    *out = buf;
    return (long)strlen((const char *)buf);
}

/* The optional password of save/save_to_string at `arg`: a non-empty
 * string for a private key, else an argument error. */
static void check_password(lua_State *L, int arg, int public_only)
{
    size_t len;
    if (lua_isnoneornil(L, arg))
        return;
    luaL_checklstring(L, arg, &len);
    if (public_only)
        luaL_argerror(L, arg, "a public key is not encrypted: give no "
                      "password with public_only = true");
    if (len == 0)
        luaL_argerror(L, arg, "the password is empty");
}

/* key:save(path, public_only = false, password = nil) */
static int key_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 2);
    int public_only = tp_optboolean(L, 3, 0);
    unsigned char *pem;
    long n;
    int r;
    lua_settop(L, 4);
    tp_checkobj(L, 1, TP_CRYPTOKEY);
    check_password(L, 4, public_only);
    n = key_pem(L, public_only, 4, &pem);
    if (n < 0)
        return 3;
    r = tp_writefile(L, path, pem, (size_t)n, public_only ? 0644 : 0600);
    mbedtls_platform_zeroize(pem, KEY_PEM_MAX);
    if (r != 0)
        return 3;
    lua_pushboolean(L, 1);
    return 1;
}

/* key:save_to_string(public_only = false, password = nil) */
static int key_save_to_string(lua_State *L)
{
    int public_only;
    unsigned char *pem;
    long n;
    lua_settop(L, 3);
    public_only = tp_optboolean(L, 2, 0);
    check_password(L, 3, public_only);
    n = key_pem(L, public_only, 3, &pem);
    if (n < 0)
        return 3;
    lua_pushlstring(L, (const char *)pem, (size_t)n);
    mbedtls_platform_zeroize(pem, KEY_PEM_MAX);
    return 1;
}

/* ------------------------------------------------------------ getters */

static int key_is_public_only(lua_State *L)
{
    tp_key *k = tp_checkobj(L, 1, TP_CRYPTOKEY);
    lua_pushboolean(L, k->public_only);
    return 1;
}

static int key_get_type(lua_State *L)
{
    tp_key *k = tp_checkobj(L, 1, TP_CRYPTOKEY);
    switch (mbedtls_pk_get_type(&k->pk)) {
    case MBEDTLS_PK_NONE:
        return tp_fail(L, "ERR_UNCONFIGURED", "the CryptoKey is empty");
    case MBEDTLS_PK_RSA:
        lua_pushliteral(L, "rsa");
        return 1;
    default:
        lua_pushliteral(L, "ec");
        return 1;
    }
}

static int key_get_bits(lua_State *L)
{
    tp_key *k = tp_checkobj(L, 1, TP_CRYPTOKEY);
    if (key_empty(k))
        return tp_fail(L, "ERR_UNCONFIGURED", "the CryptoKey is empty");
    lua_pushinteger(L, (lua_Integer)mbedtls_pk_get_bitlen(&k->pk));
    return 1;
}

/* ------------------------------------------- PBES2 + AES for mbedtls 2 */

#if TP_NEED_PBES2_AES
#include <mbedtls/aes.h>
#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/pkcs5.h>

/* OIDs, DER content bytes. */
static const unsigned char oid_pbes2[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                          0x01, 0x05, 0x0d};
static const unsigned char oid_pbkdf2[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                           0x01, 0x05, 0x0c};
static const unsigned char oid_hmac_prefix[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                0x0d, 0x02};
static const unsigned char oid_aes_prefix[] = {0x60, 0x86, 0x48, 0x01, 0x65,
                                               0x03, 0x04, 0x01};

static int oid_is(const mbedtls_asn1_buf *oid, const unsigned char *v,
                  size_t n)
{
    return oid->len == n && memcmp(oid->p, v, n) == 0;
}

/*
 * EncryptedPrivateKeyInfo with PBES2, PBKDF2 (HMAC-SHA1/224/256/384/512)
 * and AES-128/192/256-CBC: what OpenSSL 3 writes for `-aes256`.
 */
static int pbes2_aes_parse(lua_State *L, mbedtls_pk_context *pk,
                           const unsigned char *data, size_t len,
                           const unsigned char *pw, size_t pwlen)
{
    const int bad = MBEDTLS_ERR_PK_KEY_INVALID_FORMAT;
    unsigned char *p, *end, *q, *plain;
    size_t derlen, n, saltlen, ivlen, ctlen, keylen = 0;
    unsigned char *salt, *iv, *ct, key[32];
    int iterations, err;
    mbedtls_md_type_t md = MBEDTLS_MD_SHA1;
    mbedtls_asn1_buf oid;
    mbedtls_aes_context aes;

    if ((p = epki_der(L, data, len, &derlen)) == NULL)
        return bad;
    end = p + derlen;

#define NEED(x) do { if ((x) != 0) { err = bad; goto done; } } while (0)
    err = bad;
    NEED(mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED |
                              MBEDTLS_ASN1_SEQUENCE));
    end = p + n;
    NEED(mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED |
                              MBEDTLS_ASN1_SEQUENCE));      /* algorithm */
    q = p + n;
    NEED(mbedtls_asn1_get_tag(&p, q, &oid.len, MBEDTLS_ASN1_OID));
    oid.p = p;
    p += oid.len;
    if (!oid_is(&oid, oid_pbes2, sizeof oid_pbes2)) {
        err = MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE;
        goto done;
    }
    NEED(mbedtls_asn1_get_tag(&p, q, &n, MBEDTLS_ASN1_CONSTRUCTED |
                              MBEDTLS_ASN1_SEQUENCE));      /* PBES2 params */
    NEED(mbedtls_asn1_get_tag(&p, q, &n, MBEDTLS_ASN1_CONSTRUCTED |
                              MBEDTLS_ASN1_SEQUENCE));      /* KDF */
    {
        unsigned char *kend = p + n;
        NEED(mbedtls_asn1_get_tag(&p, kend, &oid.len, MBEDTLS_ASN1_OID));
        oid.p = p;
        p += oid.len;
        if (!oid_is(&oid, oid_pbkdf2, sizeof oid_pbkdf2)) {
            err = MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE;
            goto done;
        }
        NEED(mbedtls_asn1_get_tag(&p, kend, &n, MBEDTLS_ASN1_CONSTRUCTED |
                                  MBEDTLS_ASN1_SEQUENCE));
        kend = p + n;
        NEED(mbedtls_asn1_get_tag(&p, kend, &saltlen, MBEDTLS_ASN1_OCTET_STRING));
        salt = p;
        p += saltlen;
        NEED(mbedtls_asn1_get_int(&p, kend, &iterations));
        if (iterations <= 0 || iterations > KEY_MAX_ITERATIONS)
            goto done;
        if (p < kend && *p == MBEDTLS_ASN1_INTEGER) {
            int kl;
            NEED(mbedtls_asn1_get_int(&p, kend, &kl));
            if (kl < 0)
                goto done;
            keylen = (size_t)kl;
        }
        if (p < kend) {                                      /* prf */
            NEED(mbedtls_asn1_get_tag(&p, kend, &n, MBEDTLS_ASN1_CONSTRUCTED |
                                      MBEDTLS_ASN1_SEQUENCE));
            NEED(mbedtls_asn1_get_tag(&p, kend, &oid.len, MBEDTLS_ASN1_OID));
            oid.p = p;
            if (oid.len != sizeof oid_hmac_prefix + 1 ||
                memcmp(oid.p, oid_hmac_prefix, sizeof oid_hmac_prefix) != 0) {
                err = MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE;
                goto done;
            }
            switch (oid.p[oid.len - 1]) {
            case 7:  md = MBEDTLS_MD_SHA1; break;
            case 8:  md = MBEDTLS_MD_SHA224; break;
            case 9:  md = MBEDTLS_MD_SHA256; break;
            case 10: md = MBEDTLS_MD_SHA384; break;
            case 11: md = MBEDTLS_MD_SHA512; break;
            default:
                err = MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE;
                goto done;
            }
            p = kend;
        }
    }
    NEED(mbedtls_asn1_get_tag(&p, q, &n, MBEDTLS_ASN1_CONSTRUCTED |
                              MBEDTLS_ASN1_SEQUENCE));      /* cipher */
    NEED(mbedtls_asn1_get_tag(&p, q, &oid.len, MBEDTLS_ASN1_OID));
    oid.p = p;
    p += oid.len;
    if (oid.len != sizeof oid_aes_prefix + 1 ||
        memcmp(oid.p, oid_aes_prefix, sizeof oid_aes_prefix) != 0) {
        err = MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE;
        goto done;
    }
    switch (oid.p[oid.len - 1]) {
    case 2:  n = 16; break;      /* aes128-CBC */
    case 22: n = 24; break;      /* aes192-CBC */
    case 42: n = 32; break;      /* aes256-CBC */
    default:
        err = MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE;
        goto done;
    }
    if (keylen != 0 && keylen != n)
        goto done;
    keylen = n;
    NEED(mbedtls_asn1_get_tag(&p, q, &ivlen, MBEDTLS_ASN1_OCTET_STRING));
    if (ivlen != 16)
        goto done;
    iv = p;
    p = q;
    NEED(mbedtls_asn1_get_tag(&p, end, &ctlen, MBEDTLS_ASN1_OCTET_STRING));
    ct = p;
    if (ctlen == 0 || ctlen % 16 != 0)
        goto done;
#undef NEED

    err = tp_pkcs5_pbkdf2_sha(md, pw, pwlen, salt, saltlen,
                              (unsigned int)iterations, key, keylen);
    if (err != 0)
        goto done;
    plain = tp_scratch(L, ctlen);
    mbedtls_aes_init(&aes);
    err = mbedtls_aes_setkey_dec(&aes, key, (unsigned)keylen * 8);
    if (err == 0)
        err = mbedtls_aes_crypt_cbc(&aes, MBEDTLS_AES_DECRYPT, ctlen, iv, ct,
                                    plain);
    mbedtls_aes_free(&aes);
    if (err == 0) {
        /* PKCS#7 padding: a wrong password shows up here (or below). */
        size_t pad = plain[ctlen - 1], i;
        int ok = pad >= 1 && pad <= 16;
        for (i = 0; ok && i < pad; i++)
            ok = plain[ctlen - 1 - i] == pad;
        err = ok ? tp_pk_parse_key(pk, plain, ctlen - pad, NULL, 0, tp_rng(L))
                 : MBEDTLS_ERR_PK_PASSWORD_MISMATCH;
        if (err != 0)
            err = MBEDTLS_ERR_PK_PASSWORD_MISMATCH;
    }
    mbedtls_platform_zeroize(plain, ctlen);
    lua_pop(L, 1);
done:
    mbedtls_platform_zeroize(key, sizeof key);
    lua_pop(L, 1);
    return err;
}
#endif

/* ------------------------------------------------------------- opener */

static const luaL_Reg key_methods[] = {
    {"load", key_load},
    {"load_from_string", key_load_from_string},
    {"save", key_save},
    {"save_to_string", key_save_to_string},
    {"is_public_only", key_is_public_only},
    {"get_type", key_get_type},
    {"get_bits", key_get_bits},
    {NULL, NULL}
};

static const luaL_Reg key_meta[] = {
    {"__gc", key_gc},
    {"__close", key_close},
    {"__tostring", key_tostring},
    {NULL, NULL}
};

void tp_open_key(lua_State *L)
{
    tp_newclass(L, TP_CRYPTOKEY, key_methods, key_meta, key_new, NULL);
}
