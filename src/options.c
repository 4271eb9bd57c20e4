/*
 * options.c - TLSOptions: an immutable mbedtls_ssl_config built by one of
 * the static constructors client(), client_unsafe() and server(), shared by
 * every StreamPeerTLS that uses it.  The certificates and keys it points at
 * are anchored in its user value, so they live as long as it does.
 */
#include "aux.h"

#include <string.h>

#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/ssl_ticket.h>

#define ALPN_MAX   16
#define SUITES_MAX 64

enum { VERIFY_NONE = 0, VERIFY_OPTIONAL = 1, VERIFY_REQUIRED = 2 };

struct tp_options {
    tp_obj hdr;
    unsigned char server, unsafe, ready, has_trust, ticket_ready;
    unsigned char free_pending;          /* collected while still in use */
    int verify;
    int users;                           /* mbedtls contexts set up on conf */
    /* The default CA bundle while it loads on a worker (the chain the conf
     * trusts, empty until then): handshakes wait for it. */
    const mbedtls_x509_crt *pending_trust;
    mbedtls_ssl_config conf;
    mbedtls_ssl_ticket_context ticket;   /* a server's session tickets */
    const char *alpn[ALPN_MAX + 1];
    int suites[SUITES_MAX + 1];
};

/* User value 1: a table { trusted = X509, cert = X509, key = CryptoKey,
 * cn_override = string, alpn = { strings }, sessions = { [host] = session }
 * (a client's sessions to resume) }. */

/* The default suites: ECDHE key exchange and AEAD ciphers only (forward
 * secrecy, no CBC), AES-GCM first (hardware AES is the fastest on most
 * machines; ChaCha20 for those without). */
static const int default_suites[] = {
#if TP_HAVE_TLS13
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
#endif
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0
};

/* __gc frees the configuration.  __close (options_close) only marks the
 * options closed: every StreamPeerTLS that uses them anchors them and its
 * mbedtls context points into `conf`, so freeing it on close crashed the
 * peer's next poll; it goes when the last user lets go, in __gc. */
static void free_config(struct tp_options *o)
{
    if (o->ready)
        mbedtls_ssl_config_free(&o->conf);
    if (o->ticket_ready)
        mbedtls_ssl_ticket_free(&o->ticket);    /* wipes the keys */
    o->ready = o->ticket_ready = 0;
}

/* A peer anchors its options, so the collector frees them after it; but
 * when both go in the same cycle (or __gc is called by hand) the options
 * may come first: the configuration then waits for its last user. */
static int options_gc(lua_State *L)
{
    struct tp_options *o = tp_toobj(L, 1, TP_OPTIONS);
    o->hdr.closed = 1;
    if (o->users > 0)
        o->free_pending = 1;
    else
        free_config(o);
    return 0;
}

void tp_options_retain(struct tp_options *o)
{
    o->users++;
}

void tp_options_release(struct tp_options *o)
{
    if (o != NULL && --o->users == 0 && o->free_pending)
        free_config(o);
}

static int options_close(lua_State *L)
{
    struct tp_options *o = tp_toobj(L, 1, TP_OPTIONS);
    o->hdr.closed = 1;
    return 0;
}

static int options_tostring(lua_State *L)
{
    struct tp_options *o = tp_toobj(L, 1, TP_OPTIONS);
    if (o->hdr.closed)
        lua_pushliteral(L, "TLSOptions (closed)");
    else if (o->server)
        lua_pushfstring(L, "TLSOptions (server, client certificates: %s)",
                        o->verify == VERIFY_REQUIRED ? "required"
                        : o->verify == VERIFY_OPTIONAL ? "optional" : "none");
    else
        lua_pushfstring(L, "TLSOptions (client%s, %s)",
                        o->unsafe ? " unsafe" : "",
                        o->unsafe && !o->has_trust ? "no verification"
                        : o->has_trust ? "custom trusted chain"
                                       : "default CA bundle");
    return 1;
}

struct tp_options *tp_checkoptions(lua_State *L, int idx)
{
    return tp_checkobj(L, idx, TP_OPTIONS);
}

mbedtls_ssl_config *tp_options_conf(struct tp_options *o)
{
    return &o->conf;
}

int tp_options_is_server(struct tp_options *o)
{
    return o->server;
}

const mbedtls_x509_crt *tp_options_pending_trust(struct tp_options *o)
{
    return o->pending_trust;
}

void tp_options_trust_settled(struct tp_options *o)
{
    o->pending_trust = NULL;
}

int tp_options_is_unsafe(struct tp_options *o)
{
    return o->unsafe;
}

void tp_options_push_sessions(lua_State *L, int idx)
{
    lua_getiuservalue(L, idx, 1);
    lua_getfield(L, -1, "sessions");
    lua_remove(L, -2);
}

/* Pushes the common name override of options at idx ("" when none). */
void tp_options_push_cn_override(lua_State *L, int idx)
{
    lua_getiuservalue(L, idx, 1);
    lua_getfield(L, -1, "cn_override");
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
    }
}

/* ------------------------------------------------------------- options */

/* IANA name -> mbedtls ciphersuite id (0 if unknown). */
static int suite_id(const char *iana)
{
    char name[96];
    size_t i, n = strlen(iana);
    if (n + 4 >= sizeof name)
        return 0;
    if (strncmp(iana, "TLS_", 4) == 0 && strstr(iana, "_WITH_") == NULL) {
        /* TLS 1.3: TLS_AES_128_GCM_SHA256 is mbedtls' TLS1-3-AES-128-GCM-SHA256 */
        memcpy(name, "TLS1-3-", 7);
        memcpy(name + 7, iana + 4, n - 4 + 1);
    } else
        memcpy(name, iana, n + 1);
    for (i = 0; name[i]; i++)
        if (name[i] == '_')
            name[i] = '-';
    return mbedtls_ssl_get_ciphersuite_id(name);
}

/* Reads the opts table at `idx` into o and the anchor table at `anchor`.
 * Returns 0, or pushes a failure and returns 3.  Type errors raise. */
static int apply_opts(lua_State *L, int idx, int anchor, struct tp_options *o)
{
    int err;
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_checktype(L, idx, LUA_TTABLE);

    /* alpn = { "h2", "http/1.1" } */
    if (lua_getfield(L, idx, "alpn") != LUA_TNIL) {
        lua_Integer i, n;
        if (!lua_istable(L, -1))
            luaL_error(L, "bad option 'alpn' (list of strings expected)");
        n = (lua_Integer)lua_rawlen(L, -1);
        if (n < 1 || n > ALPN_MAX)
            luaL_error(L, "bad option 'alpn' (1 to %d protocol names)",
                       ALPN_MAX);
        lua_createtable(L, (int)n, 0);
        for (i = 1; i <= n; i++) {
            size_t len;
            if (lua_rawgeti(L, -2, i) != LUA_TSTRING)
                luaL_error(L, "bad option 'alpn' (entry %d is not a string)",
                           (int)i);
            lua_tolstring(L, -1, &len);
            if (len < 1 || len > 255)
                luaL_error(L, "bad option 'alpn' (entry %d must be 1 to 255 "
                           "bytes)", (int)i);
            o->alpn[i - 1] = lua_tostring(L, -1);   /* anchored below */
            lua_rawseti(L, -2, i);
        }
        o->alpn[n] = NULL;
        lua_setfield(L, anchor, "alpn");
        err = mbedtls_ssl_conf_alpn_protocols(&o->conf, o->alpn);
        if (err != 0)
            return tp_fail_mbedtls(L, err, "ERR_INVALID_PARAMETER",
                                   "cannot use the ALPN list");
    }
    lua_pop(L, 1);

    /* min_version = "1.2" | "1.3" */
    if (lua_getfield(L, idx, "min_version") != LUA_TNIL) {
        const char *v = lua_tostring(L, -1);
        if (!lua_isstring(L, -1) || v == NULL)
            luaL_error(L, "bad option 'min_version' (\"1.2\" or \"1.3\" "
                       "expected)");
        if (strcmp(v, "1.2") == 0)
            tp_ssl_conf_min_tls12(&o->conf);
        else if (strcmp(v, "1.3") == 0) {
            if (!TP_HAVE_TLS13)
                return tp_fail(L, "ERR_UNAVAILABLE", "TLS 1.3 is not "
                               "available with mbedtls %s (it needs 3.6)",
                               MBEDTLS_VERSION_STRING);
            tp_ssl_conf_min_tls13(&o->conf);
        } else
            luaL_error(L, "bad option 'min_version' (\"1.2\" or \"1.3\" "
                       "expected, got \"%s\")", v);
    }
    lua_pop(L, 1);

    /* ciphersuites = { IANA names } */
    if (lua_getfield(L, idx, "ciphersuites") != LUA_TNIL) {
        lua_Integer i, n;
        if (!lua_istable(L, -1))
            luaL_error(L, "bad option 'ciphersuites' (list of strings "
                       "expected)");
        n = (lua_Integer)lua_rawlen(L, -1);
        if (n < 1 || n > SUITES_MAX)
            luaL_error(L, "bad option 'ciphersuites' (1 to %d names)",
                       SUITES_MAX);
        for (i = 1; i <= n; i++) {
            const char *name;
            if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
                luaL_error(L, "bad option 'ciphersuites' (entry %d is not a "
                           "string)", (int)i);
            name = lua_tostring(L, -1);
            o->suites[i - 1] = suite_id(name);
            if (o->suites[i - 1] == 0)
                return tp_fail(L, "ERR_INVALID_PARAMETER", "unknown or "
                               "unavailable cipher suite '%s' (IANA names, "
                               "e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)",
                               name);
            lua_pop(L, 1);
        }
        o->suites[n] = 0;
        mbedtls_ssl_conf_ciphersuites(&o->conf, o->suites);
#if TP_HAVE_TLS13
        {
            /* Offer only the versions the chosen suites can serve. */
            int n13 = 0;
            for (i = 0; i < n; i++)
                n13 += o->suites[i] >= 0x1301 && o->suites[i] <= 0x1305;
            if (n13 == 0)
                tp_ssl_conf_max_tls12(&o->conf);
            else if (n13 == n)
                tp_ssl_conf_min_tls13(&o->conf);
        }
#endif
    }
    lua_pop(L, 1);
    return 0;
}

/* Accepts a path or a loaded object for a certificate / key option. */
static int option_object(lua_State *L, int optidx, const char *field,
                         const char *tname, int *nret)
{
    int t = lua_getfield(L, optidx, field);
    if (t == LUA_TNIL)
        return 0;
    if (tp_testobj(L, -1, tname) != NULL) {
        tp_checkobj(L, -1, tname);
        return 1;
    }
    luaL_error(L, "bad option '%s' (%s expected, got %s)", field,
               tp_classname(tname), luaL_typename(L, -1));
    (void)nret;
    return 0;
}

/* opts.session_tickets (default true) as a boolean. */
static int opt_tickets(lua_State *L, int optidx)
{
    int on = 1;
    if (lua_istable(L, optidx)) {
        int t = lua_getfield(L, optidx, "session_tickets");
        if (t != LUA_TNIL && t != LUA_TBOOLEAN)
            luaL_error(L, "bad option 'session_tickets' (boolean expected)");
        if (t == LUA_TBOOLEAN)
            on = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    return on;
}

/* A client remembers the sessions its servers give it, per host name, and
 * offers them again: a reconnect with the same options is a resumed
 * handshake (one round trip, no certificate work). */
static void client_sessions(lua_State *L, int optidx, int anchor,
                            struct tp_options *o)
{
    if (!opt_tickets(L, optidx))
        return;
    tp_ssl_conf_signal_tickets(&o->conf);
    lua_newtable(L);
    lua_setfield(L, anchor, "sessions");
}

/* A server issues session tickets (sealed with a key of its own, rotated
 * daily) unless opts.session_tickets is false. */
static int server_tickets(lua_State *L, int optidx, struct tp_options *o)
{
#if defined(MBEDTLS_SSL_SESSION_TICKETS) && defined(MBEDTLS_SSL_TICKET_C)
    int err;
    if (!opt_tickets(L, optidx))
        return 0;
    mbedtls_ssl_ticket_init(&o->ticket);
    o->ticket_ready = 1;
    err = mbedtls_ssl_ticket_setup(&o->ticket, tp_rng_random,
                                   tp_rng(L), MBEDTLS_CIPHER_AES_256_GCM,
                                   86400);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot set up session "
                               "tickets");
    mbedtls_ssl_conf_session_tickets_cb(&o->conf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &o->ticket);
#else
    (void)L; (void)optidx; (void)o;
#endif
    return 0;
}

static struct tp_options *new_options(lua_State *L, int server)
{
    struct tp_options *o = tp_newobj(L, sizeof *o, 1, TP_OPTIONS);
    mbedtls_ssl_config_init(&o->conf);
    o->ready = 1;
    o->server = (unsigned char)server;
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    return o;
}

/* Defaults shared by every configuration: TLS 1.2 or later, the state's
 * random generator, no renegotiation. */
static int base_config(lua_State *L, struct tp_options *o)
{
    int err = mbedtls_ssl_config_defaults(&o->conf,
                  o->server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
                  MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot set up a TLS "
                               "configuration");
    mbedtls_ssl_conf_rng(&o->conf, tp_rng_random, tp_rng(L));
    tp_ssl_conf_min_tls12(&o->conf);
    mbedtls_ssl_conf_ciphersuites(&o->conf, default_suites);
    tp_ssl_conf_default_groups(&o->conf);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
    mbedtls_ssl_conf_renegotiation(&o->conf,
                                   MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    return 0;
}

/* Anchors and pins the X509Certificate at `idx` as anchor[field]; `what`
 * names it in the error raised when it is something else.  Returns it, or
 * NULL when it is empty. */
static mbedtls_x509_crt *anchor_cert(lua_State *L, int idx, int anchor,
                                     const char *field, const char *what)
{
    mbedtls_x509_crt *crt;
    idx = lua_absindex(L, idx);
    if (tp_testobj(L, idx, TP_X509) == NULL)
        luaL_error(L, "bad %s (X509Certificate expected, got %s)", what,
                   luaL_typename(L, idx));
    crt = tp_checkcert(L, idx);
    lua_pushvalue(L, idx);
    lua_setfield(L, anchor, field);
    tp_pin(L, idx);
    return crt->raw.p != NULL ? crt : NULL;
}

/* Pushes the trust chain for a client: the given one or the default CA
 * bundle (*pending: still loading).  Returns 1, or pushes a failure and
 * returns 3. */
static int push_trust(lua_State *L, int idx, int *pending)
{
    if (!lua_isnoneornil(L, idx)) {
        mbedtls_x509_crt *crt = tp_checkcert(L, idx);
        if (crt->raw.p == NULL)
            return tp_fail(L, "ERR_INVALID_PARAMETER", "the trusted chain "
                           "is an empty X509Certificate");
        lua_pushvalue(L, idx);
        *pending = 0;
        return 1;
    }
    return tp_cabundle_push(L, pending);
}

/* Client certificate for mutual TLS: opts.certificate + opts.key. */
static int client_identity(lua_State *L, int optidx, int anchor,
                           struct tp_options *o)
{
    int has_cert, has_key, nret = 0, err;
    mbedtls_x509_crt *crt;
    mbedtls_pk_context *pk;
    if (lua_isnoneornil(L, optidx))
        return 0;
    has_cert = option_object(L, optidx, "certificate", TP_X509, &nret);
    has_key = option_object(L, optidx, "key", TP_CRYPTOKEY, &nret);
    if (has_cert != has_key)
        luaL_error(L, "options 'certificate' and 'key' go together");
    if (!has_cert) {
        lua_pop(L, 2);
        return 0;
    }
    crt = tp_checkcert(L, -2);
    pk = tp_checkkey(L, -1);
    if (crt->raw.p == NULL || mbedtls_pk_get_type(pk) == MBEDTLS_PK_NONE ||
        tp_key_is_public_only(L, -1))
        return tp_fail(L, "ERR_INVALID_PARAMETER", "the client certificate "
                       "needs a loaded certificate and its private key");
    if (!tp_pk_same_public(&crt->pk, pk))
        return tp_fail(L, "ERR_INVALID_PARAMETER", "the client key does not "
                       "match the client certificate");
    tp_pin(L, -1);
    tp_pin(L, -2);
    lua_setfield(L, anchor, "key");
    lua_setfield(L, anchor, "cert");
    err = mbedtls_ssl_conf_own_cert(&o->conf, crt, pk);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot use the client "
                               "certificate");
    return 0;
}

static const char *const client_opts[] = {
    "alpn", "certificate", "ciphersuites", "key", "min_version",
    "session_tickets", NULL
};
static const char *const server_opts[] = {
    "alpn", "ciphersuites", "min_version", "session_tickets", "trusted_chain",
    "verify", NULL
};

/* TLSOptions.client(trusted_chain = nil, common_name_override = "", opts) */
static int options_client(lua_State *L)
{
    struct tp_options *o;
    int anchor, r, pending;
    size_t cnlen;
    const char *cn;
    char why[120];
    lua_settop(L, 3);
    if (!lua_isnil(L, 1))
        tp_checkcert(L, 1);
    cn = luaL_optlstring(L, 2, "", &cnlen);
    if (!lua_isnil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    tp_checkoptnames(L, 3, client_opts, "client");
    /* The override is verified and sent as SNI: a whole, valid name. */
    if (cnlen > 0 && tp_check_hostname(cn, cnlen, why, sizeof why) != 0) {
        tp_pushprintable(L, cn, cnlen, 80);
        return tp_fail(L, "ERR_INVALID_PARAMETER", "invalid common name "
                       "override '%s': %s", lua_tostring(L, -1), why);
    }
    o = new_options(L, 0);                             /* 4 */
    lua_getiuservalue(L, 4, 1);                        /* 5: anchor */
    anchor = 5;
    if ((r = base_config(L, o)) != 0)
        return r;
    if ((r = push_trust(L, 1, &pending)) != 1)
        return r;
    o->has_trust = !lua_isnil(L, 1);
    mbedtls_ssl_conf_ca_chain(&o->conf, tp_checkcert(L, -1), NULL);
    if (pending)
        o->pending_trust = tp_checkcert(L, -1);
    tp_pin(L, -1);
    lua_setfield(L, anchor, "trusted");
    mbedtls_ssl_conf_authmode(&o->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    client_sessions(L, 3, anchor, o);
    if (!lua_isnil(L, 2) && lua_rawlen(L, 2) > 0) {
        lua_pushvalue(L, 2);
        lua_setfield(L, anchor, "cn_override");
    }
    if ((r = client_identity(L, 3, anchor, o)) != 0)
        return r;
    if ((r = apply_opts(L, 3, anchor, o)) != 0)
        return r;
    lua_settop(L, 4);
    return 1;
}

/* TLSOptions.client_unsafe(trusted_chain = nil, opts): the certificate is
 * not verified (with a chain, verified but failures ignored); names are
 * never checked. */
static int options_client_unsafe(lua_State *L)
{
    struct tp_options *o;
    int anchor = 4, r;
    lua_settop(L, 2);
    if (!lua_isnil(L, 1))
        tp_checkcert(L, 1);
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    tp_checkoptnames(L, 2, client_opts, "client_unsafe");
    o = new_options(L, 0);                             /* 3 */
    o->unsafe = 1;
    lua_getiuservalue(L, 3, 1);                        /* 4 */
    if ((r = base_config(L, o)) != 0)
        return r;
    if (!lua_isnil(L, 1)) {
        mbedtls_x509_crt *ca = anchor_cert(L, 1, anchor, "trusted",
                                           "argument #1 to 'client_unsafe'");
        if (ca == NULL)
            return tp_fail(L, "ERR_INVALID_PARAMETER", "the trusted chain "
                           "is an empty X509Certificate");
        mbedtls_ssl_conf_ca_chain(&o->conf, ca, NULL);
        o->has_trust = 1;
    }
    /* The certificate is still looked at (for get_peer_certificate and
     * error messages); its verification result is ignored. */
    mbedtls_ssl_conf_authmode(&o->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
    client_sessions(L, 2, anchor, o);
    if ((r = client_identity(L, 2, anchor, o)) != 0)
        return r;
    if ((r = apply_opts(L, 2, anchor, o)) != 0)
        return r;
    lua_settop(L, 3);
    return 1;
}

/* TLSOptions.server(key, certificate, opts) */
static int options_server(lua_State *L)
{
    static const char *const modes[] = {"none", "optional", "required", NULL};
    struct tp_options *o;
    mbedtls_pk_context *pk;
    mbedtls_x509_crt *crt;
    int anchor = 5, r, err;
    lua_settop(L, 3);
    pk = tp_checkkey(L, 1);
    crt = tp_checkcert(L, 2);
    if (!lua_isnil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    tp_checkoptnames(L, 3, server_opts, "server");
    o = new_options(L, 1);                             /* 4 */
    lua_getiuservalue(L, 4, 1);                        /* 5 */
    if (mbedtls_pk_get_type(pk) == MBEDTLS_PK_NONE || tp_key_is_public_only(L, 1))
        return tp_fail(L, "ERR_INVALID_PARAMETER", "a TLS server needs its "
                       "private key, and this key is %s",
                       mbedtls_pk_get_type(pk) == MBEDTLS_PK_NONE
                           ? "empty" : "public only");
    if (crt->raw.p == NULL)
        return tp_fail(L, "ERR_INVALID_PARAMETER", "the server certificate "
                       "is empty");
    if (!tp_pk_same_public(&crt->pk, pk))
        return tp_fail(L, "ERR_INVALID_PARAMETER", "the key does not match "
                       "the server certificate (the first one of the chain)");
    if ((r = base_config(L, o)) != 0)
        return r;
    lua_pushvalue(L, 1);
    lua_setfield(L, anchor, "key");
    tp_pin(L, 1);
    anchor_cert(L, 2, anchor, "cert", "argument #2 to 'server'");
    /* The whole chain (leaf first) is sent: mbedtls sends crt->next too. */
    err = mbedtls_ssl_conf_own_cert(&o->conf, crt, pk);
    if (err != 0)
        return tp_fail_mbedtls(L, err, "FAILED", "cannot use the server "
                               "certificate");

    if ((r = server_tickets(L, 3, o)) != 0)
        return r;
    o->verify = VERIFY_NONE;
    if (!lua_isnil(L, 3)) {
        int has_trust = lua_getfield(L, 3, "trusted_chain") != LUA_TNIL;
        int mode = -1, i;
        if (has_trust) {
            mbedtls_x509_crt *ca = anchor_cert(L, -1, anchor, "trusted",
                                               "option 'trusted_chain'");
            if (ca == NULL)
                return tp_fail(L, "ERR_INVALID_PARAMETER", "opts.trusted_chain "
                               "is an empty X509Certificate");
            mbedtls_ssl_conf_ca_chain(&o->conf, ca, NULL);
        }
        lua_pop(L, 1);
        o->has_trust = (unsigned char)has_trust;
        if (lua_getfield(L, 3, "verify") == LUA_TNIL)
            mode = has_trust ? VERIFY_REQUIRED : VERIFY_NONE;
        else if (lua_type(L, -1) == LUA_TSTRING)
            for (i = 0; modes[i] != NULL; i++)
                if (strcmp(lua_tostring(L, -1), modes[i]) == 0)
                    mode = i;
        if (mode < 0)
            luaL_error(L, "bad option 'verify' (\"none\", \"optional\" or "
                       "\"required\" expected)");
        lua_pop(L, 1);
        if (mode != VERIFY_NONE && !has_trust)
            return tp_fail(L, "ERR_INVALID_PARAMETER", "verifying client "
                           "certificates needs opts.trusted_chain (the CA "
                           "that issued them)");
        o->verify = mode;
        if ((r = apply_opts(L, 3, anchor, o)) != 0)
            return r;
    }
    mbedtls_ssl_conf_authmode(&o->conf,
                              o->verify == VERIFY_REQUIRED
                                  ? MBEDTLS_SSL_VERIFY_REQUIRED
                              : o->verify == VERIFY_OPTIONAL
                                  ? MBEDTLS_SSL_VERIFY_OPTIONAL
                                  : MBEDTLS_SSL_VERIFY_NONE);
    lua_settop(L, 4);
    return 1;
}

/* ------------------------------------------------------------- getters */

static int options_is_server(lua_State *L)
{
    struct tp_options *o = tp_checkoptions(L, 1);
    lua_pushboolean(L, o->server);
    return 1;
}

static int options_is_unsafe_client(lua_State *L)
{
    struct tp_options *o = tp_checkoptions(L, 1);
    lua_pushboolean(L, o->unsafe);
    return 1;
}

static int options_get_common_name_override(lua_State *L)
{
    tp_checkoptions(L, 1);
    tp_options_push_cn_override(L, 1);
    return 1;
}

static int anchored(lua_State *L, const char *field)
{
    tp_checkoptions(L, 1);
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, field);
    return 1;
}

/* While the default CA bundle loads on a worker, the chain returned is
 * still empty; it fills in place when the load ends (settled in a later
 * call on this thread). */
static int options_get_trusted_ca_chain(lua_State *L)
{
    struct tp_options *o = tp_checkoptions(L, 1);
    if (o->pending_trust != NULL &&
        tp_cabundle_settle(L, o->pending_trust, 0) != 0)
        o->pending_trust = NULL;
    return anchored(L, "trusted");
}

static int options_get_private_key(lua_State *L)
{
    return anchored(L, "key");
}

static int options_get_own_certificate(lua_State *L)
{
    return anchored(L, "cert");
}

/* ------------------------------------------------------------- opener */

static const luaL_Reg options_methods[] = {
    {"is_server", options_is_server},
    {"is_unsafe_client", options_is_unsafe_client},
    {"get_common_name_override", options_get_common_name_override},
    {"get_trusted_ca_chain", options_get_trusted_ca_chain},
    {"get_private_key", options_get_private_key},
    {"get_own_certificate", options_get_own_certificate},
    {NULL, NULL}
};

static const luaL_Reg options_meta[] = {
    {"__gc", options_gc},
    {"__close", options_close},
    {"__tostring", options_tostring},
    {NULL, NULL}
};

static int options_no_new(lua_State *L)
{
    return luaL_error(L, "TLSOptions are made by TLSOptions.client(), "
                      "TLSOptions.client_unsafe() or TLSOptions.server()");
}

void tp_open_options(lua_State *L)
{
    tp_newclass(L, TP_OPTIONS, options_methods, options_meta, options_no_new,
                NULL);
    lua_pushnil(L);
    lua_setfield(L, -2, "new");       /* only the static constructors */
    lua_pushcfunction(L, options_client);
    lua_setfield(L, -2, "client");
    lua_pushcfunction(L, options_client_unsafe);
    lua_setfield(L, -2, "client_unsafe");
    lua_pushcfunction(L, options_server);
    lua_setfield(L, -2, "server");
}
