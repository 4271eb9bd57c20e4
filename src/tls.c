/*
 * tls.c - StreamPeerTLS: a TLS client or server over a StreamPeerTCP (the
 * fast path, straight to the socket) or over any Lua object that has
 * get_partial_data(n) and put_partial_data(s) (called under lua_pcall, so a
 * transport that raises fails the handshake cleanly).  Everything is
 * non-blocking; get_data/put_data wait up to the peer's timeout.
 *
 * User values: 1 = the stream, 2 = the TLSOptions.
 */
#define _DEFAULT_SOURCE 1             /* madvise() */
#include "aux.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
    unsigned char ssl_ready, is_server, unsafe, eof;
    unsigned char offered;       /* a cached session was offered */
    unsigned char drop_session;  /* the offered one failed: forget it */
    unsigned char save_session;  /* a session to keep for next time */
    unsigned char resumed;       /* the handshake resumed a session */
    unsigned char bio_eof;       /* the transport reported its end */
    unsigned char in_bio;        /* inside a Lua transport's method */
    unsigned char close_deferred;/* disconnect_from_stream() from there */
    unsigned char free_deferred; /* __gc/__close from there */
    unsigned char first_step;    /* connect/accept queues it: lazily */
    mbedtls_ssl_context ssl;
    struct tp_tcp *tcp;          /* the fast path; NULL for a Lua stream */
    struct hs_job *job;          /* a handshake step on a worker thread */
    struct tp_options *opts;     /* whose configuration ssl uses */
    lua_State *L;                /* during calls into mbedtls */
    int stream_idx;              /* the Lua stream's stack slot, then */
    int last_want;               /* WANT_READ or WANT_WRITE */
    size_t pending;              /* bytes committed to a record not flushed */
    double timeout;
    double read_deadline;        /* > 0: get_data's reads may wait till then */
    char *error;                 /* the last failure (heap), or NULL */
    const char *error_code;
    char io_error[200];          /* what the transport said */
    const char *io_code;         /* its code, when a StreamPeerTCP said it */
    char *host;                  /* the name verified (heap), or NULL */
    tp_verify *v;                /* the certificate checks, while handshaking */
    unsigned char name_ok;       /* the peer's certificate carries host */
    tp_buf in;                   /* plaintext read but not handed out */
    tp_buf out;                  /* the bytes of the pending record */
    /* How far mbedtls wrote into its record buffers since their pages were
     * last given back (NULL: not at all), and when (see "idle buffers"). */
    unsigned char *in_high, *out_high;
    unsigned char wrote;         /* since the last call ended */
    double dirty_at;
    struct tp_tls *idle_next, **idle_prev;
};

/* ------------------------------------------------------------- helpers */

static void free_ssl(lua_State *L, struct tp_tls *t);
static void finish_call(lua_State *L, struct tp_tls *t);

/* Methods that do not enter mbedtls: usable everywhere. */
static struct tp_tls *checktls_any(lua_State *L)
{
    return tp_checkobj(L, 1, TP_TLS);
}

/* Methods that enter mbedtls (or change what it works on): not from
 * inside the peer's own transport, where mbedtls is running on it. */
static struct tp_tls *checktls(lua_State *L)
{
    struct tp_tls *t = tp_checkobj(L, 1, TP_TLS);
    if (t->in_bio)
        luaL_error(L, "StreamPeerTLS called from inside its own transport's "
                   "get_partial_data/put_partial_data, while it is working "
                   "on that call (only disconnect_from_stream() may be "
                   "called there; it takes effect when the call returns)");
    return t;
}

static void set_error(struct tp_tls *t, const char *code, const char *fmt,
                      ...) TP_PRINTF(3, 4);

static void set_error(struct tp_tls *t, const char *code, const char *fmt,
                      ...)
{
    char buf[400];
    char *p;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* Kept on the heap: a connection that never fails carries none. */
    p = realloc(t->error, strlen(buf) + 1);
    if (p != NULL) {
        strcpy(p, buf);
        t->error = p;
    }
    t->error_code = code;
}

static void clear_error(struct tp_tls *t)
{
    free(t->error);
    t->error = NULL;
    t->error_code = NULL;
}

static const char *error_text(const struct tp_tls *t)
{
    return t->error != NULL ? t->error : "the TLS connection failed";
}

/* The name verified ("" for a server). */
static const char *host_of(const struct tp_tls *t)
{
    return t->host != NULL ? t->host : "";
}

/* The certificate checks end with the handshake: what a connection needs
 * afterwards is kept, the rest freed. */
static void end_verify(struct tp_tls *t)
{
    if (t->v == NULL)
        return;
    t->name_ok = t->v->name_ok;
    if (t->ssl_ready)
        mbedtls_ssl_set_verify(&t->ssl, NULL, NULL);
    free(t->v);
    t->v = NULL;
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

/* Where mbedtls wrote last: its record buffers are dirty up to there. */
static void wrote_in(struct tp_tls *t, const unsigned char *buf, size_t n)
{
    if (t->in_high == NULL || buf + n > t->in_high)
        t->in_high = (unsigned char *)buf + n;
    t->wrote = 1;
}

static void wrote_out(struct tp_tls *t, const unsigned char *buf, size_t n)
{
    if (t->out_high == NULL || buf + n > t->out_high)
        t->out_high = (unsigned char *)buf + n;
    t->wrote = 1;
}

static int bio_send_tcp(void *ctx, const unsigned char *buf, size_t len)
{
    struct tp_tls *t = ctx;
    long n;
    wrote_out(t, buf, len);
    n = tp_tcp_send(t->tcp, buf, len);
    if (n > 0)
        return (int)n;
    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    snprintf(t->io_error, sizeof t->io_error, "%s",
             tp_tcp_error(t->tcp)[0] ? tp_tcp_error(t->tcp)
                                     : "the connection is closed");
    t->io_code = tp_tcp_error_code(t->tcp);
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv_tcp(void *ctx, unsigned char *buf, size_t len)
{
    struct tp_tls *t = ctx;
    /* A blocking read waits in recv() itself (never on a worker's step). */
    long n = t->read_deadline > 0
                 ? tp_tcp_recv_wait(t->tcp, buf, len, t->read_deadline)
                 : tp_tcp_recv(t->tcp, buf, len);
    if (n > 0) {
        wrote_in(t, buf, (size_t)n);
        return (int)n;
    }
    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n == -1) {
        t->bio_eof = 1;
        return 0;                     /* EOF: mbedtls reports CONN_EOF */
    }
    snprintf(t->io_error, sizeof t->io_error, "%s", tp_tcp_error(t->tcp));
    t->io_code = tp_tcp_error_code(t->tcp);
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
    int top, r;
    if (t->close_deferred || t->free_deferred) {
        snprintf(t->io_error, sizeof t->io_error, "the StreamPeerTLS was "
                 "closed from inside its transport");
        return fail;                  /* closed: the stream is not called */
    }
    if (L == NULL || !lua_checkstack(L, 8)) {
        snprintf(t->io_error, sizeof t->io_error, "no Lua stack for the "
                 "stream");
        return fail;
    }
    top = lua_gettop(L);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, io);
    lua_pushvalue(L, t->stream_idx);
    t->in_bio = 1;
    r = lua_pcall(L, 2, 0, 0);
    t->in_bio = 0;
    if (r != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        snprintf(t->io_error, sizeof t->io_error, "%s",
                 msg ? msg : "the stream raised an error");
        lua_settop(L, top);
        return fail;
    }
    lua_settop(L, top);
    /* Closed from the transport: what it took or gave in this call
     * counts (a record it accepted has left); the calls after it fail,
     * and the close itself happens once mbedtls has returned (finish_call). */
    return io->result;
}

static int bio_send_lua(void *ctx, const unsigned char *buf, size_t len)
{
    lua_io io;
    memset(&io, 0, sizeof io);
    io.t = ctx;
    io.wbuf = buf;
    io.len = len;
    wrote_out(ctx, buf, len);
    return lua_bio(ctx, lua_io_send, &io, MBEDTLS_ERR_NET_SEND_FAILED);
}

static int bio_recv_lua(void *ctx, unsigned char *buf, size_t len)
{
    lua_io io;
    memset(&io, 0, sizeof io);
    io.t = ctx;
    int r;
    io.rbuf = buf;
    io.len = len;
    r = lua_bio(ctx, lua_io_recv, &io, MBEDTLS_ERR_NET_RECV_FAILED);
    if (r > 0)
        wrote_in(ctx, buf, (size_t)r);
    return r;
}

/* ------------------------------------------------------ idle buffers */

/*
 * mbedtls allocates two record buffers per connection, whole (16 KiB in;
 * 16 KiB or, with the tuned engine, 4 KiB out): most of what an idle
 * connection costs.  Between records, with nothing half read, unread or
 * half sent, what they hold past the record counters at their start is
 * dead, so the whole pages of the part written since last time can go back
 * to the system (MADV_DONTNEED: they cost nothing until mbedtls writes
 * there again, and read as zeros then).
 *
 * A busy connection would pay for that on every record (the pages fault
 * back in), so it is done only for connections quiet for QUIET seconds:
 * a call that wrote into the buffers puts its peer on the Lua state's
 * list of dirty peers, and a sweep (at most every QUIET seconds, from any
 * call into a StreamPeerTLS or the event core's wait, which also wakes up
 * for it) gives back the pages of those quiet since.  Right after the
 * handshake the whole buffers count as written (calloc may have touched
 * them).
 */
#define QUIET 0.25

typedef struct idle_list {
    struct tp_tls *head;
    double next;                     /* the next sweep */
} idle_list;

/* Registry: &idle_key -> the state's idle_list (a userdata). */
static const char idle_key = 'd';

static void unlink_idle(struct tp_tls *t)
{
    if (t->idle_prev == NULL)
        return;
    *t->idle_prev = t->idle_next;
    if (t->idle_next != NULL)
        t->idle_next->idle_prev = t->idle_prev;
    t->idle_next = NULL;
    t->idle_prev = NULL;
}

/* At the state's close: the peers still listed forget the list. */
static int idle_gc(lua_State *L)
{
    idle_list *d = lua_touserdata(L, 1);
    while (d->head != NULL)
        unlink_idle(d->head);
    return 0;
}

static idle_list *idle_of(lua_State *L, int create)
{
    idle_list *d;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &idle_key) == LUA_TUSERDATA || !create) {
        d = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return d;
    }
    lua_pop(L, 1);
    d = lua_newuserdatauv(L, sizeof *d, 0);
    memset(d, 0, sizeof *d);
    lua_newtable(L);
    lua_pushcfunction(L, idle_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &idle_key);
    return d;
}

#if TP_TRIM_BUFFERS && defined(MADV_DONTNEED)
#define KEEP 64                      /* the counters and a record header */

static void give_back(unsigned char *from, unsigned char *to)
{
    static uintptr_t page;
    uintptr_t a, b;
    if (page == 0) {
        long n = sysconf(_SC_PAGESIZE);
        page = n > 0 ? (uintptr_t)n : 4096;
    }
    a = ((uintptr_t)from + page - 1) & ~(page - 1);
    b = (uintptr_t)to & ~(page - 1);
    if (b > a)
        (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Gives back what can go of a quiet peer's buffers; 1 when all has. */
static int rest(struct tp_tls *t)
{
    mbedtls_ssl_context *ssl = &t->ssl;
    unsigned char *in = tp_ssl_in_buf(ssl), *out = tp_ssl_out_buf(ssl);
    if (t->job != NULL || t->in_bio)
        return 0;
    if (t->in_high != NULL && in != NULL && tp_ssl_in_left(ssl) == 0 &&
        mbedtls_ssl_get_bytes_avail(ssl) == 0 &&
        !mbedtls_ssl_check_pending(ssl)) {
        if (t->in_high > in + KEEP)
            give_back(in + KEEP, t->in_high);
        t->in_high = NULL;
    }
    if (t->out_high != NULL && out != NULL && tp_ssl_out_left(ssl) == 0 &&
        t->pending == 0) {
        if (t->out_high > out + KEEP)
            give_back(out + KEEP, t->out_high);
        t->out_high = NULL;
    }
    return t->in_high == NULL && t->out_high == NULL;
}

/* The handshake is over: the buffers count as written whole. */
static void dirty_all(struct tp_tls *t)
{
    unsigned char *in = tp_ssl_in_buf(&t->ssl), *out = tp_ssl_out_buf(&t->ssl);
    if (in != NULL)
        t->in_high = in + MBEDTLS_SSL_IN_CONTENT_LEN;
    if (out != NULL)
        t->out_high = out + MBEDTLS_SSL_OUT_CONTENT_LEN;
    t->wrote = 1;
}
#else
static int rest(struct tp_tls *t) { (void)t; return 1; }
static void dirty_all(struct tp_tls *t) { (void)t; }
#endif

/* After a call: a peer whose buffers were written goes on the list. */
static void note_dirty(lua_State *L, struct tp_tls *t)
{
    idle_list *d;
    if (t->job != NULL || t->status != TLS_CONNECTED || !t->wrote)
        return;                       /* (a step on a worker writes `wrote`) */
    t->wrote = 0;
    t->dirty_at = tp_now();
    if (t->idle_prev != NULL || (d = idle_of(L, 1)) == NULL)
        return;
    t->idle_next = d->head;
    if (d->head != NULL)
        d->head->idle_prev = &t->idle_next;
    d->head = t;
    t->idle_prev = &d->head;
    if (d->next == 0)
        d->next = t->dirty_at + QUIET;
}

double tp_tls_sweep(lua_State *L)
{
    idle_list *d = idle_of(L, 0);
    struct tp_tls *t, *next;
    double now;
    if (d == NULL || d->head == NULL)
        return -1;
    now = tp_now();
    if (now < d->next)
        return d->next;
    d->next = now + QUIET;
    for (t = d->head; t != NULL; t = next) {
        next = t->idle_next;
        if (t->status != TLS_CONNECTED || t->hdr.closed)
            unlink_idle(t);
        else if (now - t->dirty_at >= QUIET && rest(t))
            unlink_idle(t);
    }
    return d->head != NULL ? d->next : -1;
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
    char text[400];
    t->status = tp_verify_explain(t->v, flags, text, sizeof text)
                    ? TLS_ERROR_HOSTNAME_MISMATCH : TLS_ERROR;
    set_error(t, "ERR_UNAUTHORIZED", "%s", text);
}

/* Every failed handshake ends with an alert, so the peer learns why
 * rather than seeing the connection drop: mbedtls sends one for most
 * failures, but not all (a client that requires a certificate on 2.28, a
 * TLS 1.3 client offering only groups we lack on 3.6).  Not when the peer
 * is gone or sent an alert itself. */
static void send_failure_alert(struct tp_tls *t, int ret, unsigned char alert)
{
    if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ||
        ret == MBEDTLS_ERR_NET_SEND_FAILED ||
        ret == MBEDTLS_ERR_NET_RECV_FAILED ||
        ret == MBEDTLS_ERR_SSL_CONN_EOF ||
        tp_ssl_last_out_type(&t->ssl) == MBEDTLS_SSL_MSG_ALERT)
        return;
    (void)mbedtls_ssl_send_alert_message(&t->ssl,
                                         MBEDTLS_SSL_ALERT_LEVEL_FATAL, alert);
}

static void handshake_failed(struct tp_tls *t, int ret)
{
    char text[160];
    const char *peer = t->is_server ? "the client" : "the server";
    unsigned char alert = MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE;
    t->status = TLS_ERROR;
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        verify_failed(t);
        send_failure_alert(t, ret, MBEDTLS_SSL_ALERT_MSG_BAD_CERT);
        return;
    }
    mbed_text(ret, text, sizeof text);
    if (ret == MBEDTLS_ERR_SSL_BAD_INPUT_DATA && tp_ssl_in_left(&t->ssl) > 0) {
        /* mbedtls' words when a record header announces more than fits. */
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s sent "
                  "a TLS record larger than the maximum record size", peer);
        send_failure_alert(t, ret, MBEDTLS_SSL_ALERT_MSG_RECORD_OVERFLOW);
        return;
    }
    switch (ret) {
    case MBEDTLS_ERR_NET_SEND_FAILED:
    case MBEDTLS_ERR_NET_RECV_FAILED:
        /* A TCP connect that failed (refused, unreachable, a name that
         * did not resolve) keeps its own code, as everywhere else:
         * ERR_CANT_CONNECT / ERR_CANT_RESOLVE. */
        set_error(t, t->io_code != NULL &&
                      (strcmp(t->io_code, "ERR_CANT_CONNECT") == 0 ||
                       strcmp(t->io_code, "ERR_CANT_RESOLVE") == 0)
                      ? t->io_code : "ERR_CONNECTION_ERROR",
                  "TLS handshake failed: %s",
                  t->io_error[0] ? t->io_error : text);
        break;
    case MBEDTLS_ERR_SSL_CONN_EOF:
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s closed "
                  "the connection", peer);
        break;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: {
        int received = tp_ssl_alert_received(&t->ssl);
        const char *what = alert_text(received);
        if (what)
            set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s "
                      "sent the alert '%s'", peer, what);
        else
            set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s "
                      "sent alert %d", peer, received);
        break;
    }
    case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
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
        alert = MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION;
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
        if ((-ret & 0xFF80) >= 0x2080 && (-ret & 0xFF80) <= 0x3000) {
            /* An X.509 parsing error: the peer's chain cannot be read. */
            set_error(t, "ERR_UNAUTHORIZED", "TLS handshake failed: %s's "
                      "certificate chain cannot be read (%s); a CA whose "
                      "name constraints or other extensions are marked "
                      "critical but not supported by mbedtls is refused",
                      peer, text);
            alert = MBEDTLS_SSL_ALERT_MSG_BAD_CERT;
            break;
        }
        set_error(t, "ERR_CONNECTION_ERROR", "TLS handshake failed: %s", text);
        break;
    }
    send_failure_alert(t, ret, alert);
}

/* ------------------------------------------------ handshake on workers */

/*
 * Over TCP, each handshake step (mbedtls_ssl_handshake until it wants the
 * network) runs on a worker thread: the public-key work of a step (ECDHE,
 * signing, verifying a chain) never holds the calling thread.  While the
 * job runs, the worker alone touches the peer's mbedtls context and its
 * socket; the peer's methods only look at its status, and a close waits
 * for the step to end.  The peer is anchored in the registry meanwhile
 * (everything it points at stays alive), until the step has ended.
 * A Lua-object transport calls Lua: its steps stay on the calling thread.
 */
typedef struct hs_job {
    tp_job job;
    struct tp_tls *t;
    int ret;
} hs_job;

/* Registry: &inflight_key -> { [job] = peer }: the anchors. */
static const char inflight_key = 'i';

static void hs_run(tp_job *job)
{
    hs_job *j = (hs_job *)job;
    j->ret = mbedtls_ssl_handshake(&j->t->ssl);
}

static void hs_free(tp_job *job)
{
    free(job);
}

/* Lets go of the anchors of steps that have ended (any peer's). */
static void release_anchors(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        hs_job *j = lua_touserdata(L, -2);
        int s = tp_job_state(&j->job);
        lua_pop(L, 1);
        if (s != TP_JOB_QUEUED && s != TP_JOB_RUNNING) {
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, -4);
        }
    }
    lua_pop(L, 1);
}

/* Sends the next step of the peer at index 1 to a worker; 0 if it runs
 * inline instead (no worker, or not over TCP). */
static int submit_step(lua_State *L, struct tp_tls *t)
{
    tp_pool *pool;
    hs_job *j;
    if (t->tcp == NULL || t->read_deadline > 0 ||
        (pool = tp_pool_get(L, TP_POOL_CPU)) == NULL)
        return 0;
    if ((j = calloc(1, sizeof *j)) == NULL)
        return 0;
    j->job.run = hs_run;
    j->job.free = hs_free;
    j->t = t;
    /* Anchor first: nothing may raise once the job is queued. */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &inflight_key);
    }
    lua_pushvalue(L, 1);
    lua_rawsetp(L, -2, j);
    lua_pop(L, 1);
    tp_tcp_lend(t->tcp, &j->job);
    /* The first step, queued by connect_to_stream/accept_stream, is the
     * one a blocking get_data/put_data takes back at once: it starts no
     * thread by itself (workers.c). */
    if (tp_pool_submit(pool, &j->job, t->first_step) != 0) {
        tp_tcp_lend(t->tcp, NULL);
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_key) == LUA_TTABLE) {
            lua_pushnil(L);
            lua_rawsetp(L, -2, j);
        }
        lua_pop(L, 1);
        free(j);
        return 0;
    }
    t->job = j;
    tp_watch_job(tp_tcp_watch_of(t->tcp), &j->job);
    return 1;
}

/* Drops the anchor of job j (before j is freed). */
static void drop_anchor(lua_State *L, hs_job *j)
{
    if (L == NULL)
        return;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &inflight_key) == LUA_TTABLE) {
        lua_pushnil(L);
        lua_rawsetp(L, -2, j);
    }
    lua_pop(L, 1);
}

/* The peer lets go of its step j: no anchor, no watch on it, its socket
 * its own again.  j itself is not read (a reclaimed one may be gone). */
static void detach_step(lua_State *L, struct tp_tls *t, hs_job *j)
{
    drop_anchor(L, j);
    tp_watch_job(tp_tcp_watch_of(t->tcp), NULL);
    tp_tcp_lend(t->tcp, NULL);
    t->job = NULL;
}

/* Takes back a step that has ended: its result, or -1 while it runs. */
static int collect_step(lua_State *L, struct tp_tls *t, int *ret)
{
    hs_job *j = t->job;
    int s = tp_job_state(&j->job);
    if (s == TP_JOB_QUEUED || s == TP_JOB_RUNNING)
        return -1;
    detach_step(L, t, j);
    if (s == TP_JOB_LOST) {
        snprintf(t->io_error, sizeof t->io_error, "the handshake step was "
                 "lost when the process forked");
        *ret = MBEDTLS_ERR_NET_RECV_FAILED;
        return 0;                     /* the parent's job: not ours to free */
    }
    *ret = j->ret;
    free(j);
    return 0;
}

/* Takes back a step no worker has started (it does not run, and its
 * worker frees the job): 1, or 0 when it is running or over. */
static int reclaim_step(lua_State *L, struct tp_tls *t)
{
    hs_job *j = t->job;
    if (!tp_job_reclaim(&j->job))
        return 0;
    detach_step(L, t, j);
    return 1;
}

/* Waits for a step on a worker to end (a close, a collection); one that
 * has not started is taken back instead. */
static void settle_step(lua_State *L, struct tp_tls *t)
{
    int ret;
    if (t->job == NULL || reclaim_step(L, t))
        return;
    tp_job_wait(&t->job->job, -1);
    (void)collect_step(L, t, &ret);
}

/* Whether a step is worth taking: the stream is connected, and what the
 * last step waited for (data to read, room to write) is there, or a
 * blocking call's reads wait for it in recv() (no poll() first). */
static int step_ready(struct tp_tls *t)
{
    int st = tp_tcp_status(t->tcp);
    if (st == 1)                          /* StreamPeerTCP STATUS_CONNECTING */
        return 0;
    if (st != 2)
        return 1;                         /* failed: let the step say so */
    if (t->last_want == MBEDTLS_ERR_SSL_WANT_READ && t->read_deadline <= 0)
        return tp_tcp_readable(t->tcp);
    return 1;
}

static void handshake_result(struct tp_tls *t, int ret);

/* Whether the default CA bundle the options trust is there (it may still
 * be loading on a worker): 1 the handshake can go on, 0 not yet (the
 * peer's loop watch waits for the load), -1 it failed (the peer failed).
 * Waits for it until `deadline` (tp_now(); 0: not at all). */
static int trust_ready(struct tp_tls *t, double deadline)
{
    const mbedtls_x509_crt *crt = tp_options_pending_trust(t->opts);
    const char *code, *msg;
    int r;
    if (crt == NULL)
        return 1;
    if (t->L == NULL)
        return 0;
    r = tp_cabundle_settle(t->L, crt, deadline);
    if (t->tcp != NULL)
        tp_watch_job(tp_tcp_watch_of(t->tcp),
                     r == 0 ? tp_cabundle_job(t->L, crt) : NULL);
    if (r == 0)
        return 0;
    if (r > 0) {
        tp_options_trust_settled(t->opts);
        return 1;
    }
    msg = tp_cabundle_error(t->L, &code);
    set_error(t, code, "TLS handshake with %s failed: %s", host_of(t), msg);
    t->status = TLS_ERROR;
    end_verify(t);
    return -1;
}

/* One non-blocking step of the handshake. */
static void handshake_step(struct tp_tls *t)
{
    int ret;
    if (t->status != TLS_HANDSHAKING)
        return;
    if (t->job != NULL) {
        if (collect_step(t->L, t, &ret) < 0)
            return;                       /* still on its worker */
        handshake_result(t, ret);
        if (t->status != TLS_HANDSHAKING)
            return;
    }
    if (t->L != NULL && t->tcp != NULL) {
        release_anchors(t->L);
        if (!step_ready(t) || trust_ready(t, 0) <= 0)
            return;
        t->io_error[0] = '\0';
        t->io_code = NULL;
        if (submit_step(t->L, t))
            return;
    } else if (trust_ready(t, 0) <= 0)
        return;
    t->io_error[0] = '\0';
    t->io_code = NULL;
    ret = mbedtls_ssl_handshake(&t->ssl);
    handshake_result(t, ret);
}

/* What a step returned: connected, waiting for the network, or failed. */
static void handshake_result(struct tp_tls *t, int ret)
{
    if (ret == 0) {
        t->status = TLS_CONNECTED;
        dirty_all(t);
        clear_error(t);
        t->save_session = !t->is_server;
        /* No certificate was verified: the offered session was resumed. */
        t->resumed = !t->is_server && t->offered && !t->v->saw_cert;
        if (!t->v->saw_cert)
            tp_verify_resumed(t->v, mbedtls_ssl_get_peer_cert(&t->ssl));
        end_verify(t);
        return;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        t->last_want = ret;
        return;
    }
    if (t->offered && !t->is_server)
        t->drop_session = 1;
    handshake_failed(t, ret);
    end_verify(t);
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

/* The cache key of a client's sessions: the name verified and the port
 * connected to, so that two servers on one host (another TLS stack,
 * another version) never get each other's sessions. */
static const char *session_key(const struct tp_tls *t, char *buf, size_t len)
{
    /* "host:port", built by hand: it is made twice per client handshake. */
    const char *host = host_of(t);
    unsigned port = t->tcp != NULL ? (unsigned)tp_tcp_port(t->tcp) : 0;
    char digits[12], *d = digits + sizeof digits;
    size_t n = strlen(host), nd;
    do
        *--d = (char)('0' + port % 10);
    while ((port /= 10) != 0);
    nd = (size_t)(digits + sizeof digits - d);
    if (n > len - nd - 2)
        n = len - nd - 2;
    memcpy(buf, host, n);
    buf[n] = ':';
    memcpy(buf + n + 1, d, nd);
    buf[n + 1 + nd] = '\0';
    return buf;
}

/* After an I/O call: keeps the session a client may resume next time, in
 * the cache of its options (user value 2 of the peer at index 1); forgets
 * an offered one whose handshake failed (mbedtls offers only the version
 * of a session it resumes: kept, it would fail every handshake after). */
static void settle(lua_State *L, struct tp_tls *t)
{
    tp_session *b;
    char key[300];
    if (t->drop_session) {
        t->drop_session = 0;
        lua_getiuservalue(L, 1, 2);
        if (!lua_isnil(L, -1)) {
            tp_options_push_sessions(L, -1);
            if (lua_istable(L, -1)) {
                lua_pushnil(L);
                lua_setfield(L, -2, session_key(t, key, sizeof key));
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
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
    session_key(t, key, sizeof key);
    /* The host's entry is refilled in place when it has one (a session
     * resumed gets its new ticket there): no new object per handshake. */
    lua_getfield(L, -1, key);
    b = luaL_testudata(L, -1, TP_SESSION);
    if (b != NULL) {
        if (b->ready)
            mbedtls_ssl_session_free(&b->s);
        b->ready = 0;
    } else {
        lua_pop(L, 1);
        b = lua_newuserdatauv(L, sizeof *b, 0);
        memset(b, 0, sizeof *b);
        if (luaL_newmetatable(L, TP_SESSION)) {
            lua_pushcfunction(L, session_gc);
            lua_setfield(L, -2, "__gc");
        }
        lua_setmetatable(L, -2);
    }
    mbedtls_ssl_session_init(&b->s);
    b->ready = 1;
    if (mbedtls_ssl_get_session(&t->ssl, &b->s) == 0)
        lua_setfield(L, -2, key);
    else {
        lua_pop(L, 1);
        lua_pushnil(L);               /* forget the old one too */
        lua_setfield(L, -2, key);
    }
    lua_pop(L, 2);
}

/* Offers the cached session for this host, if there is one. */
static void offer_session(lua_State *L, struct tp_tls *t, int opt)
{
    tp_session *b;
    char key[300];
    t->offered = 0;
    tp_options_push_sessions(L, opt);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, session_key(t, key, sizeof key));
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
    free_ssl(L, t);
    mbedtls_ssl_init(&t->ssl);
    t->ssl_ready = 1;
    t->opts = o;
    tp_options_retain(o);
    t->eof = 0;
    t->bio_eof = 0;
    clear_error(t);
    t->io_error[0] = '\0';
    t->io_code = NULL;
    free(t->host);
    t->host = NULL;
    t->name_ok = 0;
    if (!server && (t->host = malloc(strlen(host) + 1)) != NULL)
        strcpy(t->host, host);
    free(t->v);
    t->v = calloc(1, sizeof *t->v);
    if (t->v == NULL || (!server && t->host == NULL))
        return luaL_error(L, "out of memory");
    t->is_server = (unsigned char)server;
    t->unsafe = (unsigned char)tp_options_is_unsafe(o);
    tp_verify_start(t->v, host, server, !server && !t->unsafe);

    err = mbedtls_ssl_setup(&t->ssl, tp_options_conf(o));
    if (err != 0) {
        t->status = TLS_ERROR;
        set_error(t, "FAILED", "cannot set up TLS");
        return tp_fail_mbedtls(L, err, "FAILED", "cannot set up TLS");
    }
    mbedtls_ssl_set_verify(&t->ssl, tp_verify_cb, t->v);
    if (!server) {
        /* SNI carries host names only; IP addresses are checked by us. */
        err = mbedtls_ssl_set_hostname(&t->ssl, t->v->iplen || !*host ? NULL
                                                                    : host);
        if (err != 0)
            return tp_fail_mbedtls(L, err, "ERR_INVALID_PARAMETER", "invalid "
                                   "host name '%s'", host);
        offer_session(L, t, opt);
    }

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
    t->save_session = 0;
    t->resumed = 0;
    /* A server starts by reading the ClientHello: no step (nor a trip to
     * a worker) before it has come. */
    t->last_want = server ? MBEDTLS_ERR_SSL_WANT_READ : 0;
    begin_io(L, t);
    t->first_step = 1;
    handshake_step(t);
    t->first_step = 0;
    settle(L, t);
    lua_pushboolean(L, 1);
    return 1;
}

/* tls:connect_to_stream(stream, common_name, client_options) */
static int tls_connect_to_stream_io(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    const char *name;
    char why[120];
    size_t len;
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
    name = lua_tolstring(L, 3, &len);
    if (len == 0 && !tp_options_is_unsafe(tp_checkoptions(L, 4)))
        return luaL_argerror(L, 3, "the common name to verify is empty (use "
                             "TLSOptions.client_unsafe() to skip the check)");
    /* The name is verified, sent as SNI and keys the session cache: it
     * must be a whole, valid host name, never one cut short. */
    if (len > 0 && tp_check_hostname(name, len, why, sizeof why) != 0)
        return tp_fail(L, "ERR_INVALID_PARAMETER", "invalid host name to "
                       "verify '%s': %s", tp_pushprintable(L, name, len, 80), why);
    return setup(L, t, 4, 0, name);
}

/* tls:accept_stream(stream, server_options) */
static int tls_accept_stream_io(lua_State *L)
{
    struct tp_tls *t = checktls(L);
    lua_settop(L, 3);
    luaL_checkany(L, 2);
    tp_checkoptions(L, 3);
    return setup(L, t, 3, 1, NULL);
}

/* ------------------------------------------------------------ reading */

/* The record of an earlier put has left: forget its bytes. */
static void pending_done(struct tp_tls *t)
{
    t->pending = 0;
    tp_buf_free(&t->out);
}

/*
 * Sends what waits in mbedtls' output buffer: the record of an earlier put
 * (whose bytes t->out keeps: mbedtls wants the same arguments again until
 * the record has left) or one of mbedtls' own (an alert).  Returns 0 when
 * nothing waits any more, 1 when the transport is still full, or an mbedtls
 * error.
 *
 * mbedtls may flush that record itself in between, while it reads (a TLS
 * 1.3 ticket on 3.6, refusing a HelloRequest on 2.28): then it has left
 * and must not be written again (mbedtls would encrypt the bytes anew and
 * the peer would get them twice), so the buffer is checked before every
 * call.
 */
static int flush_pending(struct tp_tls *t)
{
    int r;
    for (;;) {
        if (tp_ssl_out_left(&t->ssl) == 0) {
            pending_done(t);
            return 0;
        }
        /* With bytes in the buffer, mbedtls_ssl_write only flushes it (it
         * finishes a TLS 1.3 ticket that an earlier read began first, and
         * says so: then the buffer is looked at again). */
        r = mbedtls_ssl_write(&t->ssl, t->pending ? t->out.p + t->out.off
                                                  : (const unsigned char *)"",
                              t->pending);
        if (r == TP_ERR_NEW_SESSION_TICKET) {
            t->save_session = 1;
            continue;
        }
        if (r >= 0) {
            pending_done(t);
            return 0;
        }
        if (r == MBEDTLS_ERR_SSL_WANT_WRITE || r == MBEDTLS_ERR_SSL_WANT_READ) {
            t->last_want = r;
            return 1;
        }
        return r;
    }
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
            tp_buf_wrote(&t->in, (size_t)r);
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

/* Hands out n bytes of t->in; a drained buffer is released (it only
 * holds what a blocking read could not hand out yet). */
static void take_in(struct tp_tls *t, size_t n)
{
    tp_buf_consume(&t->in, n);
    if (t->in.len == 0)
        tp_buf_free(&t->in);
}

/* Reads up to `want` bytes straight from mbedtls into a Lua string (no
 * buffer of ours kept), without blocking.  Pushes it (maybe ""). */
static void read_direct(lua_State *L, struct tp_tls *t, size_t want)
{
    luaL_Buffer b;
    size_t got = 0;
    luaL_buffinit(L, &b);
    while (got < want) {
        size_t chunk = want - got;
        char *p;
        int r;
        if (chunk > READ_CHUNK)
            chunk = READ_CHUNK;
        if (chunk > TP_BUFFER_CHUNK)
            chunk = TP_BUFFER_CHUNK;
        p = luaL_prepbuffsize(&b, chunk);
        r = mbedtls_ssl_read(&t->ssl, (unsigned char *)p, chunk);
        if (r > 0) {
            luaL_addsize(&b, (size_t)r);
            got += (size_t)r;
            continue;
        }
        if (r == TP_ERR_NEW_SESSION_TICKET) {
            t->save_session = 1;      /* TLS 1.3: a ticket, no data */
            continue;
        }
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
            t->last_want = r;
        else
            io_failed(t, r);
        break;
    }
    luaL_pushresult(&b);
}

/* Pushes the reason nothing can be read or written now. */
static int not_ready(lua_State *L, struct tp_tls *t)
{
    if (t->eof || (t->status == TLS_DISCONNECTED && t->ssl_ready))
        return tp_fail(L, "ERR_FILE_EOF", "the TLS connection%s%s was closed "
                       "by the peer", t->host ? " to " : "", host_of(t));
    if (t->status == TLS_ERROR || t->status == TLS_ERROR_HOSTNAME_MISMATCH)
        return tp_fail(L, t->error_code ? t->error_code : "FAILED", "%s",
                       error_text(t));
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

/* Lets reads wait in recv() until the deadline (0: stop waiting).  The
 * field is read by a step on a worker, so it only changes while none is in
 * flight; returns whether reads now wait. */
static int blocking_reads(struct tp_tls *t, double deadline)
{
    if (t->job != NULL)
        return 0;
    if (t->tcp == NULL)
        deadline = 0;
    if (t->read_deadline != deadline)
        t->read_deadline = deadline;
    return deadline > 0;
}

/* Waits for the transport as mbedtls asked last: poll(2) on a socket, short
 * growing naps for a Lua stream.  Returns 0 once the deadline has passed,
 * 1 when it is worth trying again. */
static int wait_io(struct tp_tls *t, double deadline, double *backoff)
{
    double left = deadline - tp_now();
    if (left <= 0)
        return 0;
    if (t->job != NULL)
        return tp_job_wait(&t->job->job, deadline);
    if (t->tcp != NULL && tp_tcp_status(t->tcp) == 1)    /* connecting */
        return tp_tcp_wait_connected(t->tcp, deadline);
    if (t->opts != NULL && tp_options_pending_trust(t->opts) != NULL)
        return trust_ready(t, deadline) != 0 || tp_now() < deadline;
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
        /* A blocking call holds its caller anyway: the steps run here, and
         * wait for the network in recv() (read_deadline), with none of the
         * hand-offs to a worker and back. */
        int ret;
        /* A step a non-blocking call left on a worker: taken back if no
         * worker has started it (it runs here, next), else its result is
         * taken once it is over, so that the next steps run here. */
        if (t->job != NULL && !reclaim_step(t->L, t) &&
            collect_step(t->L, t, &ret) == 0)
            handshake_result(t, ret);
        if (t->status == TLS_HANDSHAKING) {
            blocking_reads(t, deadline);
            handshake_step(t);
            blocking_reads(t, 0);
        }
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
    struct tp_tls *t = checktls_any(L);
    lua_pushinteger(L, t->status);
    return 1;
}

static int tls_get_available_bytes(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
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
    if (t->status == TLS_CONNECTED && t->in.len == 0 && want > 0) {
        int r = flush_pending(t);
        if (r < 0)
            io_failed(t, r);
        else {
            read_direct(L, t, want);
            if (lua_rawlen(L, -1) > 0 || t->status == TLS_CONNECTED)
                return 1;
            lua_pop(L, 1);
        }
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
                           "handshake with %s", t->host ? t->host
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
        blocking_reads(t, deadline);
        r = fill(t, want - t->in.len);
        blocking_reads(t, 0);
        if (r > 0)
            continue;
        if (r < 0)
            continue;                 /* the status says why */
        if (t->tcp != NULL && t->last_want == MBEDTLS_ERR_SSL_WANT_READ &&
            tp_tcp_status(t->tcp) == 2 && tp_now() < deadline)
            continue;                 /* recv() timed out early: again */
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
             * sent, and goes out with the next flush, which passes the
             * same bytes again (kept here). */
            size_t max = (size_t)mbedtls_ssl_get_max_out_record_payload(&t->ssl);
            size_t n = len < max ? len : max;
            if (tp_buf_reserve(&t->out, n) != 0) {
                t->status = TLS_ERROR;
                set_error(t, "FAILED", "out of memory for the send buffer");
                return -1;
            }
            memcpy(t->out.p + t->out.off, s, n);
            t->out.len = 0;
            tp_buf_wrote(&t->out, n);
            t->pending = n;
            return (long)n;
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
    const unsigned char *s = (const unsigned char *)tp_checkfrom(L, 2, &len);
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
                       "handshake with %s", t->host ? t->host
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

/* Frees the mbedtls context and the buffers: no I/O. */
static void free_ssl(lua_State *L, struct tp_tls *t)
{
    settle_step(L, t);
    unlink_idle(t);
    if (t->ssl_ready) {
        mbedtls_ssl_free(&t->ssl);
        tp_options_release(t->opts);
    }
    t->ssl_ready = 0;
    t->opts = NULL;
    tp_buf_free(&t->in);
    pending_done(t);
}

/* Sends close_notify, closes the stream and forgets it.  Never waits:
 * what the transport does not take at once (the last record of a put,
 * close_notify) is dropped; callers that must see data out first (the
 * helpers' close, put_data) finish sending before they disconnect.  The
 * peer is at index 1. */
static void disconnect(lua_State *L, struct tp_tls *t)
{
    begin_io(L, t);
    if (t->ssl_ready && t->status == TLS_CONNECTED && flush_pending(t) == 0)
        (void)mbedtls_ssl_close_notify(&t->ssl);
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
    free_ssl(L, t);
    t->tcp = NULL;
    t->status = TLS_DISCONNECTED;
    t->eof = 0;
    t->bio_eof = 0;
    t->close_deferred = 0;
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 2);
}

/* From inside the peer's own transport (mbedtls running on it) the close
 * waits until mbedtls has returned: see finish_call. */
static int tls_disconnect_from_stream(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
    int top = lua_gettop(L);
    if (t->in_bio) {
        t->close_deferred = 1;
        return 0;
    }
    if (t->job != NULL && !reclaim_step(L, t)) {
        /* A handshake step is running on a worker: the close happens once
         * it has ended (the next call that looks, or the collector), never
         * by waiting for it here.  (One still queued was taken back.) */
        t->close_deferred = 1;
        t->status = TLS_DISCONNECTED;
        return 0;
    }
    disconnect(L, t);
    finish_call(L, t);                /* a __gc from the close_notify's put */
    lua_settop(L, top);
    return 0;
}

/* After a method that entered mbedtls: a close or a collection asked for
 * by the transport in the meantime happens now.  Leaves the stack as it
 * found it. */
/* Everything a collected peer holds (from __gc, or after its transport's
 * call returned when __gc came from inside it). */
static void release(lua_State *L, struct tp_tls *t)
{
    free_ssl(L, t);
    end_verify(t);
    clear_error(t);
    free(t->host);
    t->host = NULL;
    t->tcp = NULL;
    t->status = TLS_DISCONNECTED;
}

static void finish_call(lua_State *L, struct tp_tls *t)
{
    int top = lua_gettop(L), ret;
    if (t->close_deferred && t->job != NULL && collect_step(L, t, &ret) < 0)
        return;                       /* closed during a step: not over */
    if (t->free_deferred) {
        t->free_deferred = t->close_deferred = 0;
        release(L, t);
    } else if (t->close_deferred)
        disconnect(L, t);
    else
        note_dirty(L, t);
    (void)tp_tls_sweep(L);
    lua_settop(L, top);
}

/* The methods that enter mbedtls, each followed by finish_call() and by
 * settle(): a handshake that finished or a ticket that arrived leaves a
 * session to keep. */
#define ENTERS_MBEDTLS(name)                                \
    static int name(lua_State *L)                           \
    {                                                       \
        int n = name##_io(L);                               \
        struct tp_tls *t_ = tp_toobj(L, 1, TP_TLS);         \
        finish_call(L, t_);                                 \
        settle(L, t_);                                      \
        return n;                                           \
    }
ENTERS_MBEDTLS(tls_connect_to_stream)
ENTERS_MBEDTLS(tls_accept_stream)
ENTERS_MBEDTLS(tls_poll)
ENTERS_MBEDTLS(tls_get_partial_data)
ENTERS_MBEDTLS(tls_get_data)
ENTERS_MBEDTLS(tls_put_partial_data)
ENTERS_MBEDTLS(tls_put_data)

/* ------------------------------------------------------------- getters */

static int tls_get_stream(lua_State *L)
{
    checktls_any(L);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int tls_get_error(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
    if (t->error == NULL)
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
    struct tp_tls *t = checktls_any(L);
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
    struct tp_tls *t = checktls_any(L);
    const char *p = connected_ssl(t) ? mbedtls_ssl_get_alpn_protocol(&t->ssl)
                                     : NULL;
    if (p == NULL)
        return 0;
    lua_pushstring(L, p);
    return 1;
}


static int tls_get_cipher_suite(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
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
    struct tp_tls *t = checktls_any(L);
    if (!connected_ssl(t))
        return 0;
    lua_pushstring(L, mbedtls_ssl_get_version(&t->ssl));
    return 1;
}

/* Ours: true only when the peer presented a certificate that passed
 * verification (for a client, with the host name matching; for a server
 * with verify = "optional", a failed client certificate gives false). */
static int tls_is_peer_verified(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
    int ok = connected_ssl(t) && mbedtls_ssl_get_peer_cert(&t->ssl) != NULL &&
             mbedtls_ssl_get_verify_result(&t->ssl) == 0 &&
             (t->is_server || t->name_ok);
    lua_pushboolean(L, ok);
    return 1;
}

/* Ours: whether this (client) connection resumed a cached session. */
static int tls_is_session_reused(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
    lua_pushboolean(L, t->resumed);
    return 1;
}

static int tls_set_timeout(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
    lua_Number s = luaL_checknumber(L, 2);
    luaL_argcheck(L, s >= 0 && s <= 1e9, 2, "timeout must be 0 or more "
                  "seconds");
    t->timeout = (double)s;
    return 0;
}

static int tls_get_timeout(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
    lua_pushnumber(L, t->timeout);
    return 1;
}

static int tls_set_big_endian(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    t->hdr.big_endian = (unsigned char)lua_toboolean(L, 2);
    return 0;
}

static int tls_is_big_endian_enabled(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
    lua_pushboolean(L, t->hdr.big_endian);
    return 1;
}

/* Whether get_partial_data would return something (or a final answer)
 * without the socket: used by the helpers' wait. */
static int tls_has_pending(lua_State *L)
{
    struct tp_tls *t = checktls_any(L);
    lua_pushboolean(L, t->in.len > 0 ||
                       (connected_ssl(t) &&
                        (mbedtls_ssl_check_pending(&t->ssl) ||
                         mbedtls_ssl_get_bytes_avail(&t->ssl) > 0)));
    return 1;
}

tp_watch *tp_tls_watch(lua_State *L, int idx)
{
    struct tp_tls *t = tp_testobj(L, idx, TP_TLS);
    if (t == NULL || t->hdr.closed || t->tcp == NULL)
        return NULL;
    return tp_tcp_watch_of(t->tcp);
}

int tp_tls_pollfd(lua_State *L, int idx, int *ready)
{
    struct tp_tls *t = tp_testobj(L, idx, TP_TLS);
    if (t == NULL || t->hdr.closed || t->tcp == NULL)
        return -1;
    if (tp_tcp_resolving(t->tcp) || t->job != NULL ||
        (t->status == TLS_HANDSHAKING && t->opts != NULL &&
         tp_options_pending_trust(t->opts) != NULL))
        return TP_POLLFD_WORKER;      /* a step, or the CA bundle's load */
    if (t->in.len > 0 || (connected_ssl(t) &&
                          (mbedtls_ssl_check_pending(&t->ssl) ||
                           mbedtls_ssl_get_bytes_avail(&t->ssl) > 0)))
        *ready = 1;
    return tp_tcp_fd(t->tcp);
}

/* Frees, never sends.  From inside the peer's own transport, mbedtls is
 * running on the context: it is freed when mbedtls has returned. */
static int tls_gc(lua_State *L)
{
    struct tp_tls *t = tp_toobj(L, 1, TP_TLS);
    if (t->hdr.closed)
        return 0;
    t->hdr.closed = 1;
    if (t->in_bio) {
        t->free_deferred = 1;
        return 0;
    }
    release(L, t);
    return 0;
}

static int tls_tostring(lua_State *L)
{
    static const char *const names[] = {"disconnected", "handshaking",
                                        "connected", "error",
                                        "error: hostname mismatch"};
    struct tp_tls *t = tp_toobj(L, 1, TP_TLS);
    char addr[INET6_ADDRSTRLEN + 16] = "", suite[96] = "";
    const char *host = t->host ? t->host : "?";
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
                        error_text(t));
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
    {"is_peer_verified", tls_is_peer_verified},
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
    tp_streampeer_install(L, -1, TP_TLS);
    lua_pop(L, 2);
}
