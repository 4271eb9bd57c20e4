/*
 * tls.c - StreamPeerTLS: a TLS client or server over a StreamPeerTCP (the
 * fast path, straight to the socket) or over any Lua object that has
 * get_partial_data(n) and put_partial_data(s) (called under lua_pcall, so a
 * transport that raises fails the handshake cleanly).  Everything is
 * non-blocking; get_data/put_data wait up to the peer's timeout.
 *
 * User values: 1 = the stream, 2 = the TLSOptions.
 */
#include "aux.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl_ciphersuites.h>

#define IO_MAX       ((lua_Integer)1 << 30)
#define READ_CHUNK   16384

enum { TLS_DISCONNECTED = 0, TLS_HANDSHAKING = 1, TLS_CONNECTED = 2,
       TLS_ERROR = 3, TLS_ERROR_HOSTNAME_MISMATCH = 4 };

struct tp_tls {
    tp_obj hdr;
    int status;
    unsigned char ssl_ready, is_server, unsafe, big_endian, eof, check_name;
    unsigned char offered;       /* a cached session was offered */
    unsigned char saw_cert;      /* the verifier ran: a full handshake */
    unsigned char save_session;  /* a session to keep for next time */
    unsigned char resumed;       /* the handshake resumed a session */
    unsigned char bio_eof;       /* the transport reported its end */
    mbedtls_ssl_context ssl;
    struct tp_tcp *tcp;          /* the fast path; NULL for a Lua stream */
    lua_State *L;                /* during calls into mbedtls */
    int stream_idx;              /* the Lua stream's stack slot, then */
    int last_want;               /* WANT_READ or WANT_WRITE */
    size_t pending;              /* bytes committed to a record not flushed */
    double timeout;
    char host[256];              /* the name the certificate must carry */
    unsigned char ip[16];
    size_t iplen;                /* host is an IP literal of this length */
    char error[400];
    const char *error_code;
    char io_error[240];          /* what the transport said */
    char peer_names[200];        /* the leaf as the verifier saw it */
    char peer_not_after[24];
    tp_buf in;                   /* plaintext read but not handed out */
};

/* ------------------------------------------------------------- helpers */

static struct tp_tls *checktls(lua_State *L)
{
    return tp_checkobj(L, 1, TP_TLS);
}

static void set_error(struct tp_tls *t, const char *code, const char *fmt,
                      ...) TP_PRINTF(3, 4);

static void set_error(struct tp_tls *t, const char *code, const char *fmt,
                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof t->error, fmt, ap);
    va_end(ap);
    t->error_code = code;
}

static void mbed_text(int err, char *buf, size_t len)
{
    tp_strerror(err, buf, len);
}

/* Makes the Lua state and the stream reachable from the BIO callbacks for
 * the duration of one method.  Index 1 must be the StreamPeerTLS. */
static void begin_io(lua_State *L, struct tp_tls *t)
{
    t->L = L;
    if (t->tcp == NULL) {
        lua_getiuservalue(L, 1, 1);
        t->stream_idx = lua_gettop(L);
    }
}

/* ---------------------------------------------------------------- BIOs */

static int bio_send_tcp(void *ctx, const unsigned char *buf, size_t len)
{
    struct tp_tls *t = ctx;
    long n = tp_tcp_send(t->tcp, buf, len);
    if (n > 0)
        return (int)n;
    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    snprintf(t->io_error, sizeof t->io_error, "%s",
             tp_tcp_error(t->tcp)[0] ? tp_tcp_error(t->tcp)
                                     : "the connection is closed");
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv_tcp(void *ctx, unsigned char *buf, size_t len)
{
    struct tp_tls *t = ctx;
    long n = tp_tcp_recv(t->tcp, buf, len);
    if (n > 0)
        return (int)n;
    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n == -1) {
        t->bio_eof = 1;
        return 0;                     /* EOF: mbedtls reports CONN_EOF */
    }
    snprintf(t->io_error, sizeof t->io_error, "%s", tp_tcp_error(t->tcp));
    return MBEDTLS_ERR_NET_RECV_FAILED;
}

/* A call into the Lua stream, made under lua_pcall. */
typedef struct lua_io {
    struct tp_tls *t;
    unsigned char *rbuf;
    const unsigned char *wbuf;
    size_t len;
    int result;
} lua_io;

static int lua_io_recv(lua_State *L)
{
    lua_io *io = lua_touserdata(L, 1);       /* 2: the stream */
    size_t n;
    const char *s;
    lua_getfield(L, 2, "get_partial_data");
    lua_pushvalue(L, 2);
    lua_pushinteger(L, (lua_Integer)io->len);
    lua_call(L, 2, 3);
    if (lua_isnil(L, -3)) {
        const char *code = lua_tostring(L, -1);
        if (code != NULL && strcmp(code, "ERR_FILE_EOF") == 0) {
            io->result = 0;
            io->t->bio_eof = 1;
            return 0;
        }
        return luaL_error(L, "the stream's get_partial_data failed: %s",
                          lua_isstring(L, -2) ? lua_tostring(L, -2) : "?");
    }
    s = lua_tolstring(L, -3, &n);
    if (s == NULL)
        return luaL_error(L, "the stream's get_partial_data returned a %s, "
                          "not a string", luaL_typename(L, -3));
    if (n > io->len)
        return luaL_error(L, "the stream's get_partial_data(%d) returned %d "
                          "bytes", (int)io->len, (int)n);
    memcpy(io->rbuf, s, n);
    io->result = n > 0 ? (int)n : MBEDTLS_ERR_SSL_WANT_READ;
    return 0;
}

static int lua_io_send(lua_State *L)
{
    lua_io *io = lua_touserdata(L, 1);
    lua_Integer n;
    int isnum;
    lua_getfield(L, 2, "put_partial_data");
    lua_pushvalue(L, 2);
    lua_pushlstring(L, (const char *)io->wbuf, io->len);
    lua_call(L, 2, 3);
    if (lua_isnil(L, -3))
        return luaL_error(L, "the stream's put_partial_data failed: %s",
                          lua_isstring(L, -2) ? lua_tostring(L, -2) : "?");
    n = lua_tointegerx(L, -3, &isnum);
    if (!isnum || n < 0 || (size_t)n > io->len)
        return luaL_error(L, "the stream's put_partial_data returned %s, not "
                          "a byte count", lua_tostring(L, -3) ? lua_tostring(L, -3)
                                                              : luaL_typename(L, -3));
    io->result = n > 0 ? (int)n : MBEDTLS_ERR_SSL_WANT_WRITE;
    return 0;
}

static int lua_bio(struct tp_tls *t, lua_CFunction fn, lua_io *io, int fail)
{
    lua_State *L = t->L;
    int top;
    if (L == NULL || !lua_checkstack(L, 8)) {
        snprintf(t->io_error, sizeof t->io_error, "no Lua stack for the "
                 "stream");
        return fail;
    }
    top = lua_gettop(L);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, io);
    lua_pushvalue(L, t->stream_idx);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        snprintf(t->io_error, sizeof t->io_error, "%s",
                 msg ? msg : "the stream raised an error");
        lua_settop(L, top);
        return fail;
    }
    lua_settop(L, top);
    return io->result;
}

static int bio_send_lua(void *ctx, const unsigned char *buf, size_t len)
{
    lua_io io;
    memset(&io, 0, sizeof io);
    io.t = ctx;
    io.wbuf = buf;
    io.len = len;
    return lua_bio(ctx, lua_io_send, &io, MBEDTLS_ERR_NET_SEND_FAILED);
}

static int bio_recv_lua(void *ctx, unsigned char *buf, size_t len)
{
    lua_io io;
    memset(&io, 0, sizeof io);
    io.t = ctx;
    io.rbuf = buf;
    io.len = len;
    return lua_bio(ctx, lua_io_recv, &io, MBEDTLS_ERR_NET_RECV_FAILED);
}

/* ------------------------------------------------- certificate checks */

static int dns_match(const char *pattern, size_t plen, const char *host)
{
    size_t hlen = strlen(host);
    if (plen > 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* A wildcard stands for exactly one whole leftmost label. */
        const char *dot = strchr(host, '.');
        if (dot == NULL || dot == host)
            return 0;
        return (size_t)(hlen - (size_t)(dot - host)) == plen - 1 &&
               strncasecmp(dot, pattern + 1, plen - 1) == 0;
    }
    return plen == hlen && strncasecmp(pattern, host, plen) == 0;
}

/* Does the leaf carry the name (or IP address) we connected to?  The
 * subjectAltName decides; the CN only counts when there are no DNS names. */
static int name_matches(struct tp_tls *t, const mbedtls_x509_crt *crt)
{
    const mbedtls_x509_sequence *s;
    int has_dns = 0;
    for (s = &crt->subject_alt_names; s != NULL; s = s->next) {
        int tag = s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
        if (s->buf.p == NULL)
            continue;
        if (t->iplen > 0) {
            if (tag == 7 && s->buf.len == t->iplen &&
                memcmp(s->buf.p, t->ip, t->iplen) == 0)
                return 1;
        } else if (tag == 2) {
            has_dns = 1;
            if (dns_match((const char *)s->buf.p, s->buf.len, t->host))
                return 1;
        }
    }
    if (t->iplen == 0 && !has_dns) {
        const mbedtls_x509_name *n;
        for (n = &crt->subject; n != NULL; n = n->next)
            if (n->oid.p != NULL &&
                MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0 &&
                dns_match((const char *)n->val.p, n->val.len, t->host))
                return 1;
    }
    return 0;
}

/* Remembers what the leaf says, for error messages. */
static void note_leaf(struct tp_tls *t, const mbedtls_x509_crt *crt)
{
    const mbedtls_x509_sequence *s;
    size_t used = 0;
    t->peer_names[0] = '\0';
    for (s = &crt->subject_alt_names; s != NULL; s = s->next) {
        int tag = s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
        char item[INET6_ADDRSTRLEN + 4];
        if (s->buf.p == NULL)
            continue;
        if (tag == 2)
            snprintf(item, sizeof item, "%.*s", (int)(s->buf.len < 40 ? s->buf.len : 40),
                     (const char *)s->buf.p);
        else if (tag == 7 && (s->buf.len == 4 || s->buf.len == 16))
            inet_ntop(s->buf.len == 4 ? AF_INET : AF_INET6, s->buf.p, item,
                      sizeof item);
        else
            continue;
        used += (size_t)snprintf(t->peer_names + used,
                                 sizeof t->peer_names - used, "%s%s",
                                 used ? ", " : "", item);
        if (used >= sizeof t->peer_names - 1)
            break;
    }
    if (t->peer_names[0] == '\0') {
        const mbedtls_x509_name *n;
        for (n = &crt->subject; n != NULL; n = n->next)
            if (n->oid.p != NULL &&
                MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
                snprintf(t->peer_names, sizeof t->peer_names, "CN=%.*s",
                         (int)(n->val.len < 80 ? n->val.len : 80),
                         (const char *)n->val.p);
    }
    snprintf(t->peer_not_after, sizeof t->peer_not_after,
             "%04d-%02d-%02d %02d:%02d UTC", crt->valid_to.year,
             crt->valid_to.mon, crt->valid_to.day, crt->valid_to.hour,
             crt->valid_to.min);
}

static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth,
                     uint32_t *flags)
{
    struct tp_tls *t = ctx;
    if (depth != 0)
        return 0;
    t->saw_cert = 1;
    note_leaf(t, crt);
    if (!t->check_name)
        return 0;
    if (name_matches(t, crt))
        *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
    else
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

/* ---------------------------------------------------------- handshake */

static const char *alert_text(int alert)
{
    switch (alert) {
    case 10:  return "unexpected message";
    case 20:  return "bad record MAC";
    case 22:  return "record overflow";
    case 40:  return "handshake failure (no cipher suite or protocol version "
                     "in common, or a client certificate was required)";
    case 42:  return "bad certificate";
    case 43:  return "unsupported certificate";
    case 44:  return "certificate revoked";
    case 45:  return "certificate expired";
    case 46:  return "certificate unknown";
    case 47:  return "illegal parameter";
    case 48:  return "unknown CA (the peer does not trust our certificate)";
    case 49:  return "access denied";
    case 50:  return "decode error";
    case 51:  return "decrypt error";
    case 70:  return "protocol version (no TLS version in common)";
    case 71:  return "insufficient security";
    case 80:  return "internal error";
    case 86:  return "inappropriate fallback";
    case 90:  return "user canceled";
    case 109: return "missing extension";
    case 110: return "unsupported extension";
    case 112: return "unrecognized name";
    case 116: return "certificate required (the server wants a client "
                     "certificate)";
    case 120: return "no application protocol (no ALPN protocol in common)";
    default:  return NULL;
    }
}

/* Explains a failed certificate verification. */
static void verify_failed(struct tp_tls *t)
{
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    const char *who = t->is_server ? "the client's certificate"
                                   : "the server's certificate";
    if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
        t->status = TLS_ERROR_HOSTNAME_MISMATCH;
        set_error(t, "ERR_UNAUTHORIZED", "%s is not valid for '%s': it is "
                  "for %s", who, t->host,
                  t->peer_names[0] ? t->peer_names : "no name at all");
        return;
    }
    t->status = TLS_ERROR;
    if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
        set_error(t, "ERR_UNAUTHORIZED", "%s has expired (it was valid until "
                  "%s)", who, t->peer_not_after);
    else if (flags & MBEDTLS_X509_BADCERT_FUTURE)
        set_error(t, "ERR_UNAUTHORIZED", "%s is not valid yet (check the "
                  "clock)", who);
    else if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
        set_error(t, "ERR_UNAUTHORIZED", "%s is not trusted: no CA in the "
                  "trusted chain signed it (a self-signed or private-CA "
                  "certificate must be passed as the trusted chain)", who);
    else if (flags & MBEDTLS_X509_BADCERT_MISSING)
        set_error(t, "ERR_UNAUTHORIZED", "%s is missing: the peer sent none",
                  who);
    else if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE |
                      MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
                      MBEDTLS_X509_BADCERT_NS_CERT_TYPE))
        set_error(t, "ERR_UNAUTHORIZED", "%s is not meant for TLS %s "
                  "authentication (key usage)", who,
                  t->is_server ? "client" : "server");
    else if (flags & MBEDTLS_X509_BADCERT_REVOKED)
        set_error(t, "ERR_UNAUTHORIZED", "%s has been revoked", who);
    else {
        char info[256];
        mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
        info[strcspn(info, "\n")] = '\0';
        set_error(t, "ERR_UNAUTHORIZED", "%s failed verification: %s", who,
                  info);
    }
}

static void handshake_failed(struct tp_tls *t, int ret)
{
    char text[160];
    const char *peer = t->is_server ? "the client" : "the server";
    t->status = TLS_ERROR;
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        verify_failed(t);
        return;
    }
    mbed_text(ret, text, sizeof text);
    if (ret == MBEDTLS_ERR_SSL_BAD_INPUT_DATA && tp_ssl_in_left(&t->ssl) > 0) {
        /* mbedtls' words when a record header announces more than fits. */
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s sent "
                  "a TLS record larger than the maximum record size", peer);
        return;
    }
    switch (ret) {
    case MBEDTLS_ERR_NET_SEND_FAILED:
    case MBEDTLS_ERR_NET_RECV_FAILED:
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s",
                  t->io_error[0] ? t->io_error : text);
        break;
    case MBEDTLS_ERR_SSL_CONN_EOF:
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s closed "
                  "the connection", peer);
        break;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: {
        int alert = tp_ssl_alert_received(&t->ssl);
        const char *what = alert_text(alert);
        if (what)
            set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s "
                      "sent the alert '%s'", peer, what);
        else
            set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s "
                      "sent alert %d", peer, alert);
        break;
    }
    case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
        /* mbedtls sends no alert here: tell the client, or it waits. */
        (void)mbedtls_ssl_send_alert_message(&t->ssl,
                                             MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                             MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
        set_error(t, "ERR_UNAUTHORIZED", "TLS handshake failed: the client "
                  "sent no certificate, and this server requires one");
        break;
#ifdef MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN
    case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: no "
                  "cipher suite in common with %s", peer);
        break;
#endif
#ifdef MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION
    case MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION:
#endif
#ifdef MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION
    case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
#endif
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: no TLS "
                  "version in common with %s (%s)", peer, text);
        break;
    case MBEDTLS_ERR_SSL_INVALID_RECORD:
    case MBEDTLS_ERR_SSL_UNEXPECTED_RECORD:
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s does "
                  "not speak TLS (it sent something that is not a TLS "
                  "record)", peer);
        break;
#ifdef MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO
    case MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO:
        /* mbedtls 2.28 says this, not INVALID_RECORD, when the first bytes
         * a server reads are not a TLS record (plain HTTP, say). */
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: the "
                  "client does not speak TLS (its first message is not a "
                  "valid TLS ClientHello)");
        break;
#endif
    default:
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s", text);
        break;
    }
}

/* One non-blocking step of the handshake. */
static void handshake_step(struct tp_tls *t)
{
    int ret;
    if (t->status != TLS_HANDSHAKING)
        return;
    t->io_error[0] = '\0';
    ret = mbedtls_ssl_handshake(&t->ssl);
    if (ret == 0) {
        t->status = TLS_CONNECTED;
        t->error[0] = '\0';
        t->save_session = !t->is_server;
        /* No certificate was verified: the offered session was resumed. */
        t->resumed = !t->is_server && t->offered && !t->saw_cert;
        return;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        t->last_want = ret;
        return;
    }
    handshake_failed(t, ret);
}

/* mbedtls' suite name in IANA form: TLS-ECDHE-...-SHA256 is
 * TLS_ECDHE_..._SHA256, TLS1-3-AES-128-GCM-SHA256 is TLS_AES_128_GCM_SHA256. */
static const char *iana_suite(const mbedtls_ssl_context *ssl, char *buf,
                              size_t len)
{
    const char *p = mbedtls_ssl_get_ciphersuite(ssl);
    size_t i = 0;
    if (p == NULL)
        return NULL;
    if (strncmp(p, "TLS1-3-", 7) == 0) {
        snprintf(buf, len, "TLS_");
        i = 4;
        p += 7;
    }
    for (; *p && i + 1 < len; p++)
        buf[i++] = *p == '-' ? '_' : *p;
    buf[i] = '\0';
    return buf;
}

/* ------------------------------------------------------------ sessions */

/* A saved session, kept in the client options' cache (a userdata, so the
 * collector frees it; mbedtls_ssl_session_free wipes the secrets). */
#define TP_SESSION "tlspeer.session"

typedef struct tp_session {
    int ready;
    mbedtls_ssl_session s;
} tp_session;

static int session_gc(lua_State *L)
{
    tp_session *b = luaL_checkudata(L, 1, TP_SESSION);
    if (b->ready)
        mbedtls_ssl_session_free(&b->s);
    b->ready = 0;
    return 0;
}

/* After an I/O call: keeps the session a client may resume next time, in
 * the cache of its options (user value 2 of the peer at index 1). */
static void settle(lua_State *L, struct tp_tls *t)
{
    tp_session *b;
    if (!t->save_session || t->status != TLS_CONNECTED || t->is_server)
        return;
    t->save_session = 0;
    lua_getiuservalue(L, 1, 2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    tp_options_push_sessions(L, -1);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 2);
        return;
    }
    b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    if (luaL_newmetatable(L, TP_SESSION)) {
        lua_pushcfunction(L, session_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    mbedtls_ssl_session_init(&b->s);
    b->ready = 1;
    if (mbedtls_ssl_get_session(&t->ssl, &b->s) == 0)
        lua_setfield(L, -2, t->host);   /* sessions[host] = b */
    else
        lua_pop(L, 1);
    lua_pop(L, 2);
}

/* Offers the cached session for this host, if there is one. */
static void offer_session(lua_State *L, struct tp_tls *t, int opt)
{
    tp_session *b;
    t->offered = 0;
    tp_options_push_sessions(L, opt);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, t->host);
        b = luaL_testudata(L, -1, TP_SESSION);
        if (b != NULL && b->ready && mbedtls_ssl_set_session(&t->ssl, &b->s) == 0)
            t->offered = 1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* ------------------------------------------------------------ set-up */

static int tls_new(lua_State *L)
{
    struct tp_tls *t = tp_newobj(L, sizeof *t, 2, TP_TLS);
    t->timeout = 30.0;
    return 1;
}

/* Shared by connect_to_stream and accept_stream.  The stream is at 2, the
 * options at `opt`. */
static int setup(lua_State *L, struct tp_tls *t, int opt, int server,
                 const char *host)
{
    struct tp_options *o = tp_checkoptions(L, opt);
    int err;

    if (t->status == TLS_HANDSHAKING || t->status == TLS_CONNECTED)
        return tp_fail(L, "ERR_ALREADY_IN_USE", "the StreamPeerTLS is in use: "
                       "call disconnect_from_stream() first");
    if (tp_options_is_server(o) != server)
        return luaL_argerror(L, opt, server
                             ? "accept_stream needs TLSOptions.server()"
                             : "connect_to_stream needs client TLSOptions");
    t->tcp = tp_testtcp(L, 2);
    if (t->tcp == NULL) {
        if (!lua_istable(L, 2) && !lua_isuserdata(L, 2))
            return luaL_typeerror(L, 2, "StreamPeerTCP or stream object");
        lua_getfield(L, 2, "get_partial_data");
        lua_getfield(L, 2, "put_partial_data");
        if (!lua_isfunction(L, -1) && !luaL_getmetafield(L, -1, "__call"))
            luaL_argerror(L, 2, "the stream has no put_partial_data method");
        if (!lua_isfunction(L, -2) && !luaL_getmetafield(L, -2, "__call"))
            luaL_argerror(L, 2, "the stream has no get_partial_data method");
        lua_pop(L, 2);
    }

    /* A fresh context each time: the old one (if any) is freed. */
    if (t->ssl_ready)
        mbedtls_ssl_free(&t->ssl);
    mbedtls_ssl_init(&t->ssl);
    t->ssl_ready = 1;
    tp_buf_free(&t->in);
    t->pending = 0;
    t->eof = 0;
    t->bio_eof = 0;
    t->error[0] = t->io_error[0] = t->peer_names[0] = '\0';
    t->error_code = NULL;
    t->is_server = (unsigned char)server;
    t->unsafe = (unsigned char)tp_options_is_unsafe(o);
    t->check_name = 0;
    t->iplen = 0;
    snprintf(t->host, sizeof t->host, "%s", host ? host : "");

    err = mbedtls_ssl_setup(&t->ssl, tp_options_conf(o));
    if (err != 0) {
        t->status = TLS_ERROR;
        set_error(t, "FAILED", "cannot set up TLS");
        return tp_fail_mbedtls(L, err, "FAILED", "cannot set up TLS");
    }
    if (!server) {
        const char *name = t->host;
        if (inet_pton(AF_INET, name, t->ip) == 1)
            t->iplen = 4;
        else if (inet_pton(AF_INET6, name, t->ip) == 1)
            t->iplen = 16;
        /* SNI carries host names only; IP addresses are checked by us. */
        err = mbedtls_ssl_set_hostname(&t->ssl, t->iplen ? NULL : name);
        if (err != 0)
            return tp_fail_mbedtls(L, err, "ERR_INVALID_PARAMETER", "invalid "
                                   "host name '%s'", name);
        t->check_name = !t->unsafe;
        mbedtls_ssl_set_verify(&t->ssl, verify_cb, t);
        offer_session(L, t, opt);
    } else
        mbedtls_ssl_set_verify(&t->ssl, verify_cb, t);

    if (t->tcp != NULL) {
        tp_tcp_set_no_delay(t->tcp);
        mbedtls_ssl_set_bio(&t->ssl, t, bio_send_tcp, bio_recv_tcp, NULL);
    }
    else
        mbedtls_ssl_set_bio(&t->ssl, t, bio_send_lua, bio_recv_lua, NULL);

    /* Keep the stream and the options alive while in use. */
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, 1, 1);
    lua_pushvalue(L, opt);
    lua_setiuservalue(L, 1, 2);

    t->status = TLS_HANDSHAKING;
    t->saw_cert = 0;
    t->save_session = 0;
    t->resumed = 0;
    begin_io(L, t);
    handshake_step(t);
    settle(L, t);
    lua_pushboolean(L, 1);
    return 1;
}

/* tls:connect_to_stream(stream, common_name, client_options) */
static int tls_connect_to_stream(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    const char *name;
    lua_settop(L, 4);
    luaL_checkany(L, 2);
    name = luaL_checkstring(L, 3);
    if (lua_isnil(L, 4)) {
        /* Godot's default: TLSOptions.client() with the default bundle. */
        lua_getfield(L, lua_upvalueindex(1), "client");
        lua_call(L, 0, 3);
        if (lua_isnil(L, -3))
            return 3;                 /* no CA bundle: say why */
        lua_pop(L, 2);
        lua_replace(L, 4);
    }
    /* The override, when set, is the name checked and sent (read from a
     * checked TLSOptions: the user value of anything else is garbage). */
    tp_checkoptions(L, 4);
    tp_options_push_cn_override(L, 4);
    if (lua_rawlen(L, -1) > 0)
        lua_replace(L, 3);
    else
        lua_pop(L, 1);
    name = lua_tostring(L, 3);
    if (*name == '\0' && !tp_options_is_unsafe(tp_checkoptions(L, 4)))
        return luaL_argerror(L, 3, "the common name to verify is empty (use "
                             "TLSOptions.client_unsafe() to skip the check)");
    return setup(L, t, 4, 0, name);
}

/* tls:accept_stream(stream, server_options) */
static int tls_accept_stream(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    lua_settop(L, 3);
    luaL_checkany(L, 2);
    tp_checkoptions(L, 3);
    return setup(L, t, 3, 1, NULL);
}

/* ------------------------------------------------------------ reading */

/* Flushes a record committed by an earlier put.  0 done (or nothing), 1
 * still pending, <0 an mbedtls error. */
static int flush_pending(struct tp_tls *t)
{
    static const unsigned char dummy[1] = {0};
    int r;
    if (t->pending == 0)
        return 0;
    /* mbedtls 3.6 finishes reading a TLS 1.3 ticket that an earlier read
     * began, and says so, before it writes: call it again. */
    while ((r = mbedtls_ssl_write(&t->ssl, dummy, t->pending)) ==
           TP_ERR_NEW_SESSION_TICKET)
        t->save_session = 1;
    if (r > 0) {
        t->pending = 0;
        return 0;
    }
    if (r == MBEDTLS_ERR_SSL_WANT_WRITE || r == MBEDTLS_ERR_SSL_WANT_READ) {
        t->last_want = r;
        return 1;
    }
    return r;
}

/* After a read or write error while connected. */
static void io_failed(struct tp_tls *t, int ret)
{
    char text[160];
    if ((ret == 0 || ret == MBEDTLS_ERR_SSL_CONN_EOF) &&
        tp_ssl_in_left(&t->ssl) > 0) {
        /* The end came in the middle of a record: that is no clean end. */
        t->status = TLS_ERROR;
        set_error(t, "ERR_CONNECTION_ERROR", "TLS connection failed: %s "
                  "closed the connection in the middle of a TLS record (the "
                  "data was truncated)", t->is_server ? "the client"
                                                       : "the server");
        return;
    }
    if (ret == MBEDTLS_ERR_SSL_BAD_INPUT_DATA && tp_ssl_in_left(&t->ssl) > 0) {
        /* mbedtls' words when a record header announces more than fits. */
        t->status = TLS_ERROR;
        set_error(t, "ERR_CONNECTION_ERROR", "TLS connection failed: %s "
                  "sent a TLS record larger than the maximum record size",
                  t->is_server ? "the client" : "the server");
        return;
    }
    if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == 0 ||
        ret == MBEDTLS_ERR_SSL_CONN_EOF) {
        t->eof = 1;
        t->status = TLS_DISCONNECTED;
        return;
    }
    mbed_text(ret, text, sizeof text);
    t->status = TLS_ERROR;
    if (ret == MBEDTLS_ERR_NET_RECV_FAILED || ret == MBEDTLS_ERR_NET_SEND_FAILED)
        set_error(t, "ERR_CONNECTION_ERROR", "TLS connection failed: %s",
                  t->io_error[0] ? t->io_error : text);
    else if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
        /* TLS 1.3 clients finish before the server checks their
         * certificate: "certificate required" arrives here, not in the
         * handshake, and deserves the same words. */
        int alert = tp_ssl_alert_received(&t->ssl);
        const char *what = alert_text(alert);
        set_error(t, "ERR_CONNECTION_ERROR", "TLS connection failed: %s sent "
                  "the alert '%s' (%d)", t->is_server ? "the client"
                                                      : "the server",
                  what ? what : "unknown", alert);
    } else
        set_error(t, "ERR_CONNECTION_ERROR", "TLS connection failed: %s",
                  text);
}

/* Reads what mbedtls can give without blocking into t->in, up to `want`
 * more bytes.  Returns bytes added, 0 if it would block, -1 at the end of
 * the stream or on an error (status updated). */
static long fill(struct tp_tls *t, size_t want)
{
    long total = 0;
    while ((size_t)total < want) {
        size_t chunk = want - (size_t)total;
        int r;
        if (chunk > READ_CHUNK)
            chunk = READ_CHUNK;
        if (tp_buf_reserve(&t->in, chunk) != 0) {
            t->status = TLS_ERROR;
            set_error(t, "FAILED", "out of memory for the receive buffer");
            return total ? total : -1;
        }
        r = mbedtls_ssl_read(&t->ssl, t->in.p + t->in.off + t->in.len, chunk);
        if (r > 0) {
            t->in.len += (size_t)r;
            total += r;
            continue;
        }
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
            t->last_want = r;
            break;
        }
        if (r == TP_ERR_NEW_SESSION_TICKET) {
            t->save_session = 1;      /* TLS 1.3: a ticket, no data */
            continue;
        }
        io_failed(t, r);
        return total ? total : -1;
    }
    return total;
}

/* Hands out n bytes of t->in.  A drained buffer of one read's size is
 * released: an idle connection keeps none (bulk readers keep theirs). */
static void take_in(struct tp_tls *t, size_t n)
{
    tp_buf_consume(&t->in, n);
    if (t->in.len == 0 && t->in.cap <= READ_CHUNK)
        tp_buf_free(&t->in);
}

/* Pushes the reason nothing can be read or written now. */
static int not_ready(lua_State *L, struct tp_tls *t)
{
    if (t->eof || (t->status == TLS_DISCONNECTED && t->ssl_ready))
        return tp_fail(L, "ERR_FILE_EOF", "the TLS connection%s%s was closed "
                       "by the peer", t->host[0] ? " to " : "", t->host);
    if (t->status == TLS_ERROR || t->status == TLS_ERROR_HOSTNAME_MISMATCH)
        return tp_fail(L, t->error_code ? t->error_code : "FAILED", "%s",
                       t->error);
    return tp_fail(L, "ERR_UNCONFIGURED", "the StreamPeerTLS is not "
                   "connected");
}

/* Sleeps a little (Lua streams cannot be waited on). */
static void nap(double seconds)
{
    struct timespec ts;
    if (seconds <= 0)
        return;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

/* Waits for the transport as mbedtls asked last: poll(2) on a socket, short
 * growing naps for a Lua stream.  Returns 0 once the deadline has passed,
 * 1 when it is worth trying again. */
static int wait_io(struct tp_tls *t, double deadline, double *backoff)
{
    double left = deadline - tp_now();
    if (left <= 0)
        return 0;
    if (t->tcp != NULL && tp_tcp_fd(t->tcp) >= 0)
        return tp_wait_fd(tp_tcp_fd(t->tcp),
                          t->last_want == MBEDTLS_ERR_SSL_WANT_WRITE ? POLLOUT
                                                                     : POLLIN,
                          deadline) != 0;
    nap(*backoff < left ? *backoff : left);
    if (*backoff < 0.016)
        *backoff *= 2;
    return 1;
}

/* Drives the handshake to its end, waiting up to the deadline.  Returns 1
 * connected, 0 timed out, -1 failed. */
static int finish_handshake(struct tp_tls *t, double deadline)
{
    double backoff = 0.001;
    for (;;) {
        handshake_step(t);
        if (t->status == TLS_CONNECTED)
            return 1;
        if (t->status != TLS_HANDSHAKING)
            return -1;
        if (!wait_io(t, deadline, &backoff))
            return 0;
    }
}

static int tls_poll_io(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    begin_io(L, t);
    if (t->status == TLS_HANDSHAKING)
        handshake_step(t);
    else if (t->status == TLS_CONNECTED) {
        int r = flush_pending(t);
        if (r < 0)
            io_failed(t, r);
        else if (mbedtls_ssl_get_bytes_avail(&t->ssl) == 0) {
            /* Take in one record: application data waits in mbedtls for
             * get_*_data; a close_notify or an error changes the status. */
            unsigned char dummy;
            int n;
            while ((n = mbedtls_ssl_read(&t->ssl, &dummy, 0)) ==
                   TP_ERR_NEW_SESSION_TICKET)
                t->save_session = 1;
            if (n < 0 && n != MBEDTLS_ERR_SSL_WANT_READ &&
                n != MBEDTLS_ERR_SSL_WANT_WRITE)
                io_failed(t, n);
            else if (n == 0 && t->bio_eof &&
                     mbedtls_ssl_get_bytes_avail(&t->ssl) == 0)
                /* mbedtls_ssl_read says 0 for the end of the stream (no
                 * close_notify): without this, poll() never noticed it. */
                io_failed(t, MBEDTLS_ERR_SSL_CONN_EOF);
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int tls_get_status(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    lua_pushinteger(L, t->status);
    return 1;
}

static int tls_get_available_bytes(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    size_t n = t->in.len;
    if (t->ssl_ready && t->status == TLS_CONNECTED)
        n += mbedtls_ssl_get_bytes_avail(&t->ssl);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* tls:get_partial_data(n) -> up to n bytes, possibly ""; never blocks. */
static int tls_get_partial_data_io(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    size_t want = (size_t)tp_checkrange(L, 2, 0, IO_MAX), got;
    begin_io(L, t);
    if (t->status == TLS_HANDSHAKING) {
        handshake_step(t);
        if (t->status == TLS_HANDSHAKING) {
            lua_pushliteral(L, "");
            return 1;
        }
    }
    if (t->status == TLS_CONNECTED && t->in.len < want) {
        int r = flush_pending(t);
        if (r < 0)
            io_failed(t, r);
        else
            fill(t, want - t->in.len);
    }
    if (t->in.len == 0 && want > 0) {
        if (t->status == TLS_CONNECTED) {
            lua_pushliteral(L, "");
            return 1;
        }
        return not_ready(L, t);
    }
    got = t->in.len < want ? t->in.len : want;
    /* An empty buffer may have no memory: no pointer arithmetic on NULL. */
    lua_pushlstring(L, got ? (const char *)t->in.p + t->in.off : "", got);
    take_in(t, got);
    return 1;
}

/* tls:get_data(n) -> exactly n bytes, waiting up to the timeout. */
static int tls_get_data_io(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    size_t want = (size_t)tp_checkrange(L, 2, 0, IO_MAX);
    double deadline = tp_now() + t->timeout, backoff = 0.001;
    begin_io(L, t);
    if (t->status == TLS_HANDSHAKING && t->in.len < want) {
        int r = finish_handshake(t, deadline);
        if (r == 0)
            return tp_fail(L, "ERR_TIMEOUT", "timed out waiting for the TLS "
                           "handshake with %s", t->host[0] ? t->host
                                                           : "the client");
    }
    while (t->in.len < want) {
        long r;
        if (t->status != TLS_CONNECTED)
            return t->eof ? tp_fail(L, "ERR_FILE_EOF", "the peer closed the "
                                    "TLS connection after %d of %d bytes",
                                    (int)t->in.len, (int)want)
                          : not_ready(L, t);
        if ((r = flush_pending(t)) < 0) {
            io_failed(t, (int)r);
            continue;
        }
        r = fill(t, want - t->in.len);
        if (r > 0)
            continue;
        if (r < 0)
            continue;                 /* the status says why */
        if (!wait_io(t, deadline, &backoff))
            return tp_fail(L, "ERR_TIMEOUT", "timed out waiting for %d bytes "
                           "(%d arrived, kept for the next read)", (int)want,
                           (int)t->in.len);
    }
    lua_pushlstring(L, want ? (const char *)t->in.p + t->in.off : "", want);
    take_in(t, want);
    return 1;
}

/* ------------------------------------------------------------ writing */

/* Writes without blocking.  Returns bytes taken (0 if the transport is
 * full), or -1 with the status updated. */
static long write_some(struct tp_tls *t, const unsigned char *s, size_t len)
{
    int r = flush_pending(t);
    if (r < 0) {
        io_failed(t, r);
        return -1;
    }
    if (r == 1 || len == 0)
        return 0;
    while ((r = mbedtls_ssl_write(&t->ssl, s, len)) ==
           TP_ERR_NEW_SESSION_TICKET)
        t->save_session = 1;      /* as in flush_pending */
    if (r > 0)
        return r;
    if (r == MBEDTLS_ERR_SSL_WANT_WRITE || r == MBEDTLS_ERR_SSL_WANT_READ) {
        t->last_want = r;
        if (tp_ssl_out_left(&t->ssl) > 0) {
            /* The record is sealed and owned by mbedtls: it counts as
             * sent, and goes out with the next flush. */
            size_t max = (size_t)mbedtls_ssl_get_max_out_record_payload(&t->ssl);
            t->pending = len < max ? len : max;
            return (long)t->pending;
        }
        return 0;
    }
    io_failed(t, r);
    return -1;
}

static int tls_put_partial_data_io(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    size_t len;
    const unsigned char *s =
        (const unsigned char *)luaL_checklstring(L, 2, &len);
    long n;
    begin_io(L, t);
    if (t->status == TLS_HANDSHAKING) {
        handshake_step(t);
        if (t->status == TLS_HANDSHAKING) {
            lua_pushinteger(L, 0);
            return 1;
        }
    }
    if (t->status != TLS_CONNECTED)
        return not_ready(L, t);
    n = write_some(t, s, len);
    if (n < 0)
        return not_ready(L, t);
    lua_pushinteger(L, n);
    return 1;
}

/* Waits until pending output is flushed (best effort for disconnect). */
static int drain(struct tp_tls *t, double deadline)
{
    double backoff = 0.001;
    for (;;) {
        int r = flush_pending(t);
        if (r <= 0)
            return r == 0;
        if (!wait_io(t, deadline, &backoff))
            return 0;
    }
}

static int tls_put_data_io(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    size_t len, done = 0;
    const unsigned char *s =
        (const unsigned char *)luaL_checklstring(L, 2, &len);
    double deadline = tp_now() + t->timeout, backoff = 0.001;
    begin_io(L, t);
    if (t->status == TLS_HANDSHAKING &&
        finish_handshake(t, deadline) == 0)
        return tp_fail(L, "ERR_TIMEOUT", "timed out waiting for the TLS "
                       "handshake with %s", t->host[0] ? t->host
                                                       : "the client");
    while (done < len) {
        long n;
        if (t->status != TLS_CONNECTED)
            return not_ready(L, t);
        n = write_some(t, s + done, len - done);
        if (n < 0)
            return not_ready(L, t);
        done += (size_t)n;
        if (done < len && n == 0 && !wait_io(t, deadline, &backoff))
            return tp_fail(L, "ERR_TIMEOUT", "timed out sending %d bytes (%d "
                           "sent)", (int)len, (int)done);
    }
    /* put_data completes: the last record leaves too. */
    if (t->pending > 0 && !drain(t, deadline)) {
        if (t->status != TLS_CONNECTED)
            return not_ready(L, t);
        return tp_fail(L, "ERR_TIMEOUT", "timed out sending the last %d "
                       "bytes", (int)t->pending);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* --------------------------------------------------------- disconnect */

static int tls_disconnect_from_stream(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    begin_io(L, t);
    if (t->ssl_ready && t->status == TLS_CONNECTED) {
        double deadline = tp_now() + (t->timeout < 1.0 ? t->timeout : 1.0);
        double backoff = 0.001;
        if (drain(t, deadline)) {
            int r;
            while ((r = mbedtls_ssl_close_notify(&t->ssl)) ==
                       MBEDTLS_ERR_SSL_WANT_WRITE ||
                   r == MBEDTLS_ERR_SSL_WANT_READ) {
                t->last_want = r;
                if (!wait_io(t, deadline, &backoff))
                    break;
            }
        }
    }
    if (t->tcp != NULL)
        tp_tcp_disconnect(t->tcp);
    else if (lua_type(L, t->stream_idx) != LUA_TNIL) {
        /* A Lua stream is told too, when it can be. */
        lua_getfield(L, t->stream_idx, "disconnect_from_host");
        if (lua_isfunction(L, -1)) {
            lua_pushvalue(L, t->stream_idx);
            lua_pcall(L, 1, 0, 0);
        }
    }
    if (t->ssl_ready)
        mbedtls_ssl_free(&t->ssl);
    t->ssl_ready = 0;
    t->tcp = NULL;
    tp_buf_free(&t->in);
    t->pending = 0;
    t->status = TLS_DISCONNECTED;
    t->eof = 0;
    t->bio_eof = 0;
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 2);
    return 0;
}

/* The I/O methods, each followed by settle(): a handshake that finished or
 * a ticket that arrived leaves a session to keep. */
#define WITH_SETTLE(name)                                   \
    static int name(lua_State *L)                           \
    {                                                       \
        int n = name##_io(L);                               \
        settle(L, tp_toobj(L, 1, TP_TLS));                  \
        return n;                                           \
    }
WITH_SETTLE(tls_poll)
WITH_SETTLE(tls_get_partial_data)
WITH_SETTLE(tls_get_data)
WITH_SETTLE(tls_put_partial_data)
WITH_SETTLE(tls_put_data)

/* ------------------------------------------------------------- getters */

static int tls_get_stream(lua_State *L)
{
    checktls(L);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int tls_get_error(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    if (t->error[0] == '\0')
        return 0;
    lua_pushstring(L, t->error);
    lua_pushstring(L, t->error_code ? t->error_code : "FAILED");
    return 2;
}

static int connected_ssl(struct tp_tls *t)
{
    return t->ssl_ready && t->status == TLS_CONNECTED;
}

static int tls_get_peer_certificate(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    const mbedtls_x509_crt *peer;
    if (!connected_ssl(t) ||
        (peer = mbedtls_ssl_get_peer_cert(&t->ssl)) == NULL)
        return 0;
    {
        mbedtls_x509_crt *copy = tp_newcert(L);
        if (mbedtls_x509_crt_parse_der(copy, peer->raw.p, peer->raw.len) != 0)
            return 0;
    }
    return 1;
}

static int tls_get_alpn_protocol(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    const char *p = connected_ssl(t) ? mbedtls_ssl_get_alpn_protocol(&t->ssl)
                                     : NULL;
    if (p == NULL)
        return 0;
    lua_pushstring(L, p);
    return 1;
}


static int tls_get_cipher_suite(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    char buf[96];
    const char *name = connected_ssl(t) ? iana_suite(&t->ssl, buf, sizeof buf)
                                        : NULL;
    if (name == NULL)
        return 0;
    lua_pushstring(L, name);
    return 1;
}

static int tls_get_tls_version(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    if (!connected_ssl(t))
        return 0;
    lua_pushstring(L, mbedtls_ssl_get_version(&t->ssl));
    return 1;
}

/* Ours: whether this (client) connection resumed a cached session. */
static int tls_is_session_reused(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    lua_pushboolean(L, t->resumed);
    return 1;
}

static int tls_set_timeout(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    lua_Number s = luaL_checknumber(L, 2);
    luaL_argcheck(L, s >= 0 && s <= 1e9, 2, "timeout must be 0 or more "
                  "seconds");
    t->timeout = (double)s;
    return 0;
}

static int tls_get_timeout(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    lua_pushnumber(L, t->timeout);
    return 1;
}

static int tls_set_big_endian(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    t->big_endian = (unsigned char)lua_toboolean(L, 2);
    return 0;
}

static int tls_is_big_endian_enabled(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    lua_pushboolean(L, t->big_endian);
    return 1;
}

/* Whether get_partial_data would return something (or a final answer)
 * without the socket: used by the helpers' wait. */
static int tls_has_pending(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    lua_pushboolean(L, t->in.len > 0 ||
                       (connected_ssl(t) &&
                        (mbedtls_ssl_check_pending(&t->ssl) ||
                         mbedtls_ssl_get_bytes_avail(&t->ssl) > 0)));
    return 1;
}

int tp_tls_pollfd(lua_State *L, int idx, int *ready)
{
    struct tp_tls *t = luaL_testudata(L, idx, TP_TLS);
    if (t == NULL || t->hdr.closed || t->tcp == NULL)
        return -1;
    if (t->in.len > 0 || (connected_ssl(t) &&
                          (mbedtls_ssl_check_pending(&t->ssl) ||
                           mbedtls_ssl_get_bytes_avail(&t->ssl) > 0)))
        *ready = 1;
    return tp_tcp_fd(t->tcp);
}

static int tls_gc(lua_State *L)
{
    struct tp_tls *t = tp_toobj(L, 1, TP_TLS);
    if (!t->hdr.closed) {
        if (t->ssl_ready)
            mbedtls_ssl_free(&t->ssl);   /* frees, never sends */
        t->ssl_ready = 0;
        tp_buf_free(&t->in);
        t->tcp = NULL;
        t->status = TLS_DISCONNECTED;
        t->hdr.closed = 1;
    }
    return 0;
}

static int tls_tostring(lua_State *L)
{
    static const char *const names[] = {"disconnected", "handshaking",
                                        "connected", "error",
                                        "error: hostname mismatch"};
    struct tp_tls *t = tp_toobj(L, 1, TP_TLS);
    char addr[INET6_ADDRSTRLEN + 16] = "", suite[96] = "";
    const char *host = t->host[0] ? t->host : "?";
    if (t->hdr.closed) {
        lua_pushliteral(L, "StreamPeerTLS (closed)");
        return 1;
    }
    if (t->tcp != NULL)
        tp_tcp_peer_text(t->tcp, addr, sizeof addr);
    if (connected_ssl(t))
        iana_suite(&t->ssl, suite, sizeof suite);
    if (t->status == TLS_CONNECTED && t->is_server)
        lua_pushfstring(L, "StreamPeerTLS (connected from %s, %s %s)",
                        addr[0] ? addr : "a stream",
                        mbedtls_ssl_get_version(&t->ssl), suite);
    else if (t->status == TLS_CONNECTED)
        lua_pushfstring(L, "StreamPeerTLS (connected to %s%s%s, %s %s)",
                        host, addr[0] ? " " : "", addr,
                        mbedtls_ssl_get_version(&t->ssl), suite);
    else if (t->status == TLS_ERROR || t->status == TLS_ERROR_HOSTNAME_MISMATCH)
        lua_pushfstring(L, "StreamPeerTLS (%s: %s)", names[t->status],
                        t->error);
    else if (t->status == TLS_HANDSHAKING)
        lua_pushfstring(L, "StreamPeerTLS (handshaking %s %s%s%s)",
                        t->is_server ? "with a client" : "with", 
                        t->is_server ? "" : host, addr[0] ? " " : "", addr);
    else
        lua_pushliteral(L, "StreamPeerTLS (disconnected)");
    return 1;
}

/* ------------------------------------------------------------- opener */

static const luaL_Reg tls_methods[] = {
    {"accept_stream", tls_accept_stream},
    {"poll", tls_poll},
    {"get_status", tls_get_status},
    {"get_stream", tls_get_stream},
    {"disconnect_from_stream", tls_disconnect_from_stream},
    {"get_error", tls_get_error},
    {"get_peer_certificate", tls_get_peer_certificate},
    {"get_alpn_protocol", tls_get_alpn_protocol},
    {"get_cipher_suite", tls_get_cipher_suite},
    {"get_tls_version", tls_get_tls_version},
    {"is_session_reused", tls_is_session_reused},
    {"get_available_bytes", tls_get_available_bytes},
    {"get_partial_data", tls_get_partial_data},
    {"get_data", tls_get_data},
    {"put_partial_data", tls_put_partial_data},
    {"put_data", tls_put_data},
    {"set_timeout", tls_set_timeout},
    {"get_timeout", tls_get_timeout},
    {"set_big_endian", tls_set_big_endian},
    {"is_big_endian_enabled", tls_is_big_endian_enabled},
    {"has_pending", tls_has_pending},
    {NULL, NULL}
};

static const luaL_Reg tls_meta[] = {
    {"__gc", tls_gc},
    {"__close", tls_gc},
    {"__tostring", tls_tostring},
    {NULL, NULL}
};

static const tp_const tls_consts[] = {
    {"STATUS_DISCONNECTED", TLS_DISCONNECTED},
    {"STATUS_HANDSHAKING", TLS_HANDSHAKING},
    {"STATUS_CONNECTED", TLS_CONNECTED},
    {"STATUS_ERROR", TLS_ERROR},
    {"STATUS_ERROR_HOSTNAME_MISMATCH", TLS_ERROR_HOSTNAME_MISMATCH},
    {NULL, 0}
};

/* Expects the TLSOptions class table on top of the stack (for the default
 * client options of connect_to_stream). */
void tp_open_tls(lua_State *L)
{
    int options = lua_gettop(L);
    tp_newclass(L, TP_TLS, tls_methods, tls_meta, tls_new, tls_consts);
    luaL_getmetatable(L, TP_TLS);
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, options);
    lua_pushcclosure(L, tls_connect_to_stream, 1);
    lua_setfield(L, -2, "connect_to_stream");
    lua_pop(L, 2);
}
