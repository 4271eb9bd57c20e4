/*
 * tcp.c - StreamPeerTCP and TCPServer: non-blocking IPv4/IPv6 sockets,
 * poll-driven, with blocking get_data/put_data that wait with poll(2) up to
 * the peer's timeout.  StreamPeerTLS reaches the socket through the small
 * tp_tcp_* interface at the end of aux.h.
 */
#include "aux.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_ADDRS 8
#define IO_MAX    ((lua_Integer)1 << 30)

enum { TCP_NONE = 0, TCP_CONNECTING = 1, TCP_CONNECTED = 2, TCP_ERROR = 3 };

/* A name lookup (on a DNS worker, or inline), and then the candidate
 * addresses of the connect: it lives from connect_to_host until the
 * connect is made or has failed. */
typedef struct resolve {
    tp_job job;
    char host[TP_HOSTNAME_MAX + 2];
    char service[8];
    int numeric;                 /* an IP literal: addrs[0], no lookup */
    int err;                     /* getaddrinfo's answer */
    int naddrs, next;
    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t addrlens[MAX_ADDRS];
} resolve;

struct tp_tcp {
    tp_obj hdr;
    int fd;
    int status;
    unsigned char peer_closed;   /* EOF seen: buffered bytes still readable */
    unsigned char no_delay;
    unsigned char resolving;     /* res->job is on a DNS worker */
    unsigned char blocking;      /* the socket blocks (see "sockets") */
    double timeout;              /* seconds; get_data/put_data */
    double rcvtimeo;             /* SO_RCVTIMEO as last set (0: none) */
    char host[INET6_ADDRSTRLEN];
    int port;
    /* bind() before connect_to_host() */
    int bind_port;
    char bind_host[INET6_ADDRSTRLEN + 1];
    resolve *res;                /* while connecting */
    tp_job *lent;                /* a StreamPeerTLS step on a worker uses it */
    tp_watch w;                  /* its place in the event loop */
    char error[160];             /* why the status is ERROR */
    const char *error_code;      /* its Godot Error name */
    tp_buf in;                   /* read but not yet handed out */
};

/* ---------------------------------------------------------- utilities */

/* A timeout in seconds as text ("30", "0.25"). */
static const char *secs(double t, char *buf, size_t len)
{
    snprintf(buf, len, "%g", t);
    return buf;
}
#define SECS(t) secs((t), (char[32]){0}, 32)

static void set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    fl = fcntl(fd, F_GETFD);
    if (fl >= 0)
        fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

/* New sockets, accepted or connecting, are non-blocking and close-on-exec
 * from the start where the system can (Linux: one call instead of five).
 *
 * A connected socket is left in blocking mode: every call that must not
 * wait passes MSG_DONTWAIT, so the event core and the frame never block
 * on it, while a blocking read (get_data) can sleep in recv() itself, with
 * SO_RCVTIMEO for its deadline, instead of a recv() that says EAGAIN and a
 * poll() before the recv() that reads (two system calls fewer per read).
 * Only connect() needs O_NONBLOCK: it is dropped once connected. */
#if defined(__linux__) && defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);
static int accept_blocking(int fd, struct sockaddr *sa, socklen_t *len)
{
    return accept4(fd, sa, len, SOCK_CLOEXEC);
}
static int tp_socket_nonblock(int family)
{
    return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}
#else
static int accept_blocking(int fd, struct sockaddr *sa, socklen_t *len)
{
    int c = accept(fd, sa, len), fl;
    if (c >= 0 && (fl = fcntl(c, F_GETFD)) >= 0)
        fcntl(c, F_SETFD, fl | FD_CLOEXEC);
    if (c >= 0 && (fl = fcntl(c, F_GETFL)) >= 0 && (fl & O_NONBLOCK))
        fcntl(c, F_SETFL, fl & ~O_NONBLOCK);   /* BSDs inherit it */
    return c;
}
static int tp_socket_nonblock(int family)
{
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd >= 0)
        set_nonblock_cloexec(fd);
    return fd;
}
#endif

/* Connected: the socket may block from now on (see above). */
static void set_blocking(struct tp_tcp *t)
{
    int off = 0;
    if (ioctl(t->fd, FIONBIO, &off) == 0)     /* one call, O_NONBLOCK only */
        t->blocking = 1;
}

/* Sets SO_RCVTIMEO for a recv() that may wait `left` seconds, unless the
 * value set last is close enough (within 1 % either way): a blocking read
 * costs no extra system call.  A recv() that gives up up to 1 % early
 * says "nothing yet", and its caller waits out the rest of its deadline. */
static void set_rcvtimeo(struct tp_tcp *t, double left)
{
    struct timeval tv;
    if (t->rcvtimeo > 0 && t->rcvtimeo <= left * 1.01 &&
        t->rcvtimeo >= left * 0.99)
        return;
    tv.tv_sec = (time_t)left;
    tv.tv_usec = (long)((left - (double)tv.tv_sec) * 1e6);
    if (tv.tv_sec == 0 && tv.tv_usec == 0)
        tv.tv_usec = 1;               /* 0 would mean for ever */
    if (setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0)
        t->rcvtimeo = left;
    else
        t->rcvtimeo = 0;
}

/* Dotted IPv4 text (16 bytes fit any), by hand: inet_ntop() formats each
 * number with printf, and this runs for every connection made or taken. */
static void ipv4_text(const unsigned char *b, char *out, size_t len)
{
    char tmp[16], *o = tmp;
    int i;
    for (i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            *o++ = (char)('0' + v / 100);
        if (v >= 10)
            *o++ = (char)('0' + v / 10 % 10);
        *o++ = (char)('0' + v % 10);
        *o++ = i < 3 ? '.' : '\0';
    }
    if (len == 0)
        return;
    if ((size_t)(o - tmp) > len)
        o = tmp + len;
    o[-1] = '\0';
    memcpy(out, tmp, (size_t)(o - tmp));
}

/* Text form of an address; IPv4-mapped IPv6 shown as IPv4. */
static void addr_text(const struct sockaddr *sa, char *host, size_t hlen,
                      int *port)
{
    host[0] = '\0';
    *port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        ipv4_text((const unsigned char *)&a->sin_addr, host, hlen);
        *port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            ipv4_text(&a->sin6_addr.s6_addr[12], host, hlen);
        else
            inet_ntop(AF_INET6, &a->sin6_addr, host, (socklen_t)hlen);
        *port = ntohs(a->sin6_port);
    }
}

static int local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN];
    int port = 0;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    addr_text((struct sockaddr *)&ss, host, sizeof host, &port);
    return port;
}

static void tcp_close_fd(struct tp_tcp *t)
{
    if (t->fd >= 0) {
        tp_watch_fd(&t->w, -1);
        close(t->fd);
    }
    t->fd = -1;
    t->w.fd = -1;
    t->blocking = 0;
    t->rcvtimeo = 0;
}

/* Takes t's socket: in the event loop too, when t is watched. */
static void tcp_set_fd(struct tp_tcp *t, int fd)
{
    t->fd = fd;
    t->w.fd = fd;
    tp_watch_fd(&t->w, fd);
}

/* Drops the lookup and candidates of a connect: an unfinished lookup is
 * abandoned (its worker frees it), never waited for. */
static void drop_resolve(struct tp_tcp *t)
{
    if (t->res == NULL)
        return;
    if (t->resolving) {
        tp_watch_job(&t->w, NULL);
        tp_job_abandon(&t->res->job);
    } else
        free(t->res);
    t->res = NULL;
    t->resolving = 0;
}

static void tcp_fail(struct tp_tcp *t, const char *what, int err)
{
    snprintf(t->error, sizeof t->error, "%s: %s", what, strerror(err));
    t->error_code = "ERR_CONNECTION_ERROR";
    /* On a worker (lent to a TLS step) the socket stays open: the event
     * loop is the calling thread's; tp_tcp_lend closes it afterwards. */
    if (t->lent == NULL)
        tcp_close_fd(t);
    t->status = TCP_ERROR;
}

/* --------------------------------------------------- StreamPeerTCP core */

static struct tp_tcp *new_tcp(lua_State *L)
{
    struct tp_tcp *t = tp_newobj(L, sizeof *t, 0, TP_TCP);
    t->fd = -1;
    t->timeout = 30.0;
    tp_watch_init(&t->w);
    return t;
}

/* ------------------------------------------------------ name lookups */

static void resolve_run(tp_job *job)
{
    resolve *r = (resolve *)job;
    struct addrinfo hints, *res = NULL, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->err = getaddrinfo(r->host, r->service, &hints, &res);
    r->naddrs = r->next = 0;
    if (r->err != 0)
        return;
    for (ai = res; ai != NULL && r->naddrs < MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof r->addrs[0])
            continue;
        memcpy(&r->addrs[r->naddrs], ai->ai_addr, ai->ai_addrlen);
        r->addrlens[r->naddrs++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
}

static void resolve_free(tp_job *job)
{
    free(job);
}

/* Starts a non-blocking connect to candidate `next`, moving on to the
 * following ones when a connect fails at once.  Status afterwards:
 * CONNECTING, CONNECTED or ERROR. */
static void try_connect(struct tp_tcp *t)
{
    resolve *r = t->res;
    int err = 0;
    while (r != NULL && r->next < r->naddrs) {
        struct sockaddr *sa = (struct sockaddr *)&r->addrs[r->next];
        socklen_t salen = r->addrlens[r->next];
        int fd;
        r->next++;
        fd = tp_socket_nonblock(sa->sa_family);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (t->no_delay) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (t->bind_port > 0 || strcmp(t->bind_host, "*") != 0) {
            struct sockaddr_storage bs;
            socklen_t blen;
            int one = 1;
            memset(&bs, 0, sizeof bs);
            if (sa->sa_family == AF_INET) {
                struct sockaddr_in *b = (struct sockaddr_in *)&bs;
                b->sin_family = AF_INET;
                b->sin_port = htons((unsigned short)t->bind_port);
                if (strcmp(t->bind_host, "*") != 0 &&
                    inet_pton(AF_INET, t->bind_host, &b->sin_addr) != 1) {
                    close(fd);
                    err = EAFNOSUPPORT;
                    continue;
                }
                blen = sizeof *b;
            } else {
                struct sockaddr_in6 *b = (struct sockaddr_in6 *)&bs;
                b->sin6_family = AF_INET6;
                b->sin6_port = htons((unsigned short)t->bind_port);
                if (strcmp(t->bind_host, "*") != 0 &&
                    inet_pton(AF_INET6, t->bind_host, &b->sin6_addr) != 1) {
                    close(fd);
                    err = EAFNOSUPPORT;
                    continue;
                }
                blen = sizeof *b;
            }
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (bind(fd, (struct sockaddr *)&bs, blen) != 0) {
                err = errno;
                close(fd);
                continue;
            }
        }
        addr_text(sa, t->host, sizeof t->host, &t->port);
        if (connect(fd, sa, salen) == 0) {
            tcp_set_fd(t, fd);
            set_blocking(t);
            t->status = TCP_CONNECTED;
            drop_resolve(t);
            return;
        }
        if (errno == EINPROGRESS || errno == EINTR) {
            tcp_set_fd(t, fd);
            t->status = TCP_CONNECTING;
            return;
        }
        err = errno;
        close(fd);
    }
    snprintf(t->error, sizeof t->error, "cannot connect to %s port %d: %s",
             t->host[0] ? t->host : "?", t->port,
             strerror(err ? err : ECONNREFUSED));
    t->error_code = "ERR_CANT_CONNECT";
    t->status = TCP_ERROR;
    drop_resolve(t);
}

/* The lookup has ended (or was never needed): connect, or fail. */
static void resolved(struct tp_tcp *t)
{
    resolve *r = t->res;
    if (r->err != 0) {
        snprintf(t->error, sizeof t->error, "cannot resolve '%.100s': %s",
                 r->host, gai_strerror(r->err));
        t->error_code = "ERR_CANT_RESOLVE";
        t->status = TCP_ERROR;
        drop_resolve(t);
        return;
    }
    try_connect(t);
}

/* A lookup on a worker: moves on when it has ended. */
static void update_resolving(struct tp_tcp *t)
{
    int s = tp_job_state(&t->res->job);
    if (s == TP_JOB_QUEUED || s == TP_JOB_RUNNING)
        return;
    tp_watch_job(&t->w, NULL);
    t->resolving = 0;
    if (s == TP_JOB_LOST) {
        snprintf(t->error, sizeof t->error, "cannot resolve '%.60s': the "
                 "lookup was lost when the process forked", t->res->host);
        t->error_code = "ERR_CANT_RESOLVE";
        t->status = TCP_ERROR;
        t->res = NULL;                /* the parent's worker owns it */
        return;
    }
    resolved(t);
}

/* Advances a connect in progress without blocking. */
static void update_connecting(struct tp_tcp *t)
{
    struct pollfd pfd;
    int err = 0;
    socklen_t len = sizeof err;
    if (t->status != TCP_CONNECTING)
        return;
    if (t->resolving) {
        update_resolving(t);
        if (t->status != TCP_CONNECTING || t->resolving || t->fd < 0)
            return;
    }
    pfd.fd = t->fd;
    pfd.events = POLLOUT;
    pfd.revents = 0;
    if (poll(&pfd, 1, 0) <= 0)
        return;
    /* Writable with no error or hang-up: connected (a failed connect()
     * always shows POLLERR), without asking SO_ERROR. */
    if ((pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) &&
        getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0) {
        set_blocking(t);
        t->status = TCP_CONNECTED;
        drop_resolve(t);
        return;
    }
    tcp_close_fd(t);
    snprintf(t->error, sizeof t->error, "cannot connect to %s port %d: %s",
             t->host, t->port, strerror(err));
    t->error_code = "ERR_CANT_CONNECT";
    t->status = TCP_ERROR;
    if (t->res != NULL && t->res->next < t->res->naddrs)
        try_connect(t);               /* the next address of the name */
    else
        drop_resolve(t);
}

/* Reads what the socket has into t->in (at most `want` bytes).  Returns >0
 * bytes read, 0 nothing available, -1 EOF, -2 error (status ERROR). */
static long fill(struct tp_tcp *t, size_t want)
{
    ssize_t n;
    if (t->fd < 0 || t->peer_closed)
        return t->peer_closed ? -1 : -2;
    if (want > 65536)
        want = 65536;
    if (tp_buf_reserve(&t->in, want) != 0) {
        tcp_fail(t, "out of memory for the receive buffer", ENOMEM);
        return -2;
    }
    do
        n = recv(t->fd, t->in.p + t->in.off + t->in.len, want, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        tp_buf_wrote(&t->in, (size_t)n);
        return (long)n;
    }
    if (n == 0) {
        t->peer_closed = 1;
        return -1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    tcp_fail(t, "receive failed", errno);
    return -2;
}

/* fill(), but waiting in recv() until the deadline when the socket blocks
 * (0 then means the deadline passed). */
static long fill_until(struct tp_tcp *t, size_t want, double deadline)
{
    ssize_t n;
    double left;
    if (!t->blocking || t->fd < 0 || t->peer_closed ||
        (left = deadline - tp_now()) <= 0)
        return fill(t, want);
    if (want > 65536)
        want = 65536;
    if (tp_buf_reserve(&t->in, want) != 0) {
        tcp_fail(t, "out of memory for the receive buffer", ENOMEM);
        return -2;
    }
    set_rcvtimeo(t, left);
    do
        n = recv(t->fd, t->in.p + t->in.off + t->in.len, want, 0);
    while (n < 0 && errno == EINTR && tp_now() < deadline);
    if (n > 0) {
        tp_buf_wrote(&t->in, (size_t)n);
        return (long)n;
    }
    if (n == 0) {
        t->peer_closed = 1;
        return -1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    tcp_fail(t, "receive failed", errno);
    return -2;
}

/* The peer closed and every buffered byte has been handed out. */
static void settle_eof(struct tp_tcp *t)
{
    if (t->peer_closed && t->in.len == 0 && t->status == TCP_CONNECTED) {
        tcp_close_fd(t);
        t->status = TCP_NONE;
    }
}

/* ------------------------------------------- interface for StreamPeerTLS */

struct tp_tcp *tp_testtcp(lua_State *L, int idx)
{
    struct tp_tcp *t = tp_testobj(L, idx, TP_TCP);
    return t != NULL && !t->hdr.closed ? t : NULL;
}

int tp_tcp_status(struct tp_tcp *t)
{
    update_connecting(t);
    return t->status;
}

int tp_tcp_fd(struct tp_tcp *t)
{
    return t->fd;
}

long tp_tcp_recv(struct tp_tcp *t, unsigned char *buf, size_t len)
{
    long r;
    update_connecting(t);
    if (t->status == TCP_CONNECTING)
        return 0;
    if (t->in.len == 0) {
        /* Straight into mbedtls' record buffer: no copy, and no receive
         * buffer of our own kept per connection (4 KiB or more each). */
        ssize_t n;
        if (t->fd < 0 || t->peer_closed)
            return t->peer_closed ? -1 : -2;
        do
            n = recv(t->fd, buf, len, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n > 0)
            return (long)n;
        if (n == 0) {
            t->peer_closed = 1;
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        tcp_fail(t, "receive failed", errno);
        return -2;
    }
    r = (long)(t->in.len < len ? t->in.len : len);
    memcpy(buf, t->in.p + t->in.off, (size_t)r);
    tp_buf_consume(&t->in, (size_t)r);
    return r;
}

/* tp_tcp_recv, but a socket that blocks waits in recv() itself until
 * the deadline (0 then means it passed, or nothing came). */
long tp_tcp_recv_wait(struct tp_tcp *t, unsigned char *buf, size_t len,
                      double deadline)
{
    ssize_t n;
    double left;
    if (!t->blocking || t->in.len > 0 || t->fd < 0 || t->peer_closed ||
        t->status != TCP_CONNECTED || (left = deadline - tp_now()) <= 0)
        return tp_tcp_recv(t, buf, len);
    set_rcvtimeo(t, left);
    do
        n = recv(t->fd, buf, len, 0);
    while (n < 0 && errno == EINTR && tp_now() < deadline);
    if (n > 0)
        return (long)n;
    if (n == 0) {
        t->peer_closed = 1;
        return -1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    tcp_fail(t, "receive failed", errno);
    return -2;
}

long tp_tcp_send(struct tp_tcp *t, const unsigned char *buf, size_t len)
{
    ssize_t n;
    update_connecting(t);
    if (t->status == TCP_CONNECTING)
        return 0;
    if (t->fd < 0 || t->status != TCP_CONNECTED)
        return -2;
    do
        n = send(t->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return (long)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    tcp_fail(t, "send failed", errno);
    return -2;
}

const char *tp_tcp_error(struct tp_tcp *t)
{
    return t->error;
}

const char *tp_tcp_error_code(struct tp_tcp *t)
{
    return t->error_code;
}

/* Reads and drops what the peer sent that nobody will read, without
 * blocking: closing a socket with unread input makes the kernel send a
 * reset, which can overtake our last record (an alert, a close_notify). */
static void drain_input(struct tp_tcp *t)
{
    unsigned char junk[4096];
    int i;
    for (i = 0; i < 16 && t->fd >= 0; i++)
        if (recv(t->fd, junk, sizeof junk, MSG_DONTWAIT) <= 0)
            break;
    if (t->fd >= 0)
        shutdown(t->fd, SHUT_WR);
}

void tp_tcp_disconnect(struct tp_tcp *t)
{
    drain_input(t);
    drop_resolve(t);
    tcp_close_fd(t);
    tp_buf_free(&t->in);
    t->status = TCP_NONE;
    t->peer_closed = 0;
}

/* TLS writes its records one by one: Nagle would hold the last ones of a
 * handshake flight back for a delayed ACK. */
void tp_tcp_set_no_delay(struct tp_tcp *t)
{
    int one = 1;
    t->no_delay = 1;
    if (t->fd >= 0)
        setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* "127.0.0.1:8443", "[::1]:8443" or "" */
/* Only the address, which changes on the Lua thread alone: a handshake
 * step on a worker may be changing the status meanwhile. */
void tp_tcp_peer_text(struct tp_tcp *t, char *buf, size_t len)
{
    if (t->host[0] == '\0')
        buf[0] = '\0';
    else
        snprintf(buf, len, strchr(t->host, ':') ? "[%s]:%d" : "%s:%d",
                 t->host, t->port);
}

int tp_tcp_port(struct tp_tcp *t)
{
    return t->port;
}

/* ------------------------------------------------ StreamPeerTCP methods */

static struct tp_tcp *checktcp(lua_State *L)
{
    return tp_checkobj(L, 1, TP_TCP);
}

/* For the methods that touch the socket or its buffers: while a TLS
 * handshake step that uses this stream runs on a worker, they wait for
 * its end first (a step is short; only a caller who works the stream
 * under its StreamPeerTLS's feet meets this). */
static struct tp_tcp *checktcp_io(lua_State *L)
{
    struct tp_tcp *t = tp_checkobj(L, 1, TP_TCP);
    if (t->lent != NULL)
        tp_job_wait(t->lent, -1);
    return t;
}

static int tcp_new(lua_State *L)
{
    new_tcp(L);
    return 1;
}

static int tcp_gc(lua_State *L)
{
    struct tp_tcp *t = tp_toobj(L, 1, TP_TCP);
    if (t->lent != NULL)
        tp_job_wait(t->lent, -1);     /* a worker still has the socket */
    if (!t->hdr.closed) {
        drop_resolve(t);
        tp_watch_release(&t->w);
        tcp_close_fd(t);
        tp_buf_free(&t->in);
        t->status = TCP_NONE;
        t->hdr.closed = 1;
    }
    return 0;
}

static const char *const status_names[] = {"none", "connecting", "connected",
                                           "error"};

static int tcp_tostring(lua_State *L)
{
    struct tp_tcp *t = tp_toobj(L, 1, TP_TCP);
    if (t->hdr.closed)
        lua_pushliteral(L, "StreamPeerTCP (closed)");
    else if (t->status == TCP_ERROR)
        lua_pushfstring(L, "StreamPeerTCP (error: %s)", t->error);
    else if (t->status == TCP_NONE)
        lua_pushliteral(L, "StreamPeerTCP (none)");
    else
        lua_pushfstring(L, strchr(t->host, ':') ? "StreamPeerTCP (%s [%s]:%d)"
                                                : "StreamPeerTCP (%s %s:%d)",
                        status_names[t->status], t->host, t->port);
    return 1;
}

/* peer:bind(port, host = "*") */
static int tcp_bind(lua_State *L)
{
    struct tp_tcp *t = checktcp_io(L);
    int port = (int)tp_checkrange(L, 2, 0, 65535);
    const char *host = luaL_optstring(L, 3, "*");
    unsigned char tmp[16];
    if (t->status != TCP_NONE)
        return tp_fail(L, "ERR_ALREADY_IN_USE", "bind() must come before "
                       "connect_to_host()");
    if (strcmp(host, "*") != 0 && inet_pton(AF_INET, host, tmp) != 1 &&
        inet_pton(AF_INET6, host, tmp) != 1)
        return tp_fail(L, "ERR_INVALID_PARAMETER", "bind address '%s' is "
                       "not an IP address (or \"*\")", host);
    t->bind_port = port;
    snprintf(t->bind_host, sizeof t->bind_host, "%s", host);
    lua_pushboolean(L, 1);
    return 1;
}

/* The port as getaddrinfo's service (1..65535: at most 5 digits). */
static void port_text(char *out, int port)
{
    char tmp[8];
    int n = 0;
    do
        tmp[n++] = (char)('0' + port % 10);
    while ((port /= 10) > 0);
    while (n > 0)
        *out++ = tmp[--n];
    *out = '\0';
}

/* An IP literal is its own one candidate, without getaddrinfo (which
 * would parse it again and allocate the answer).  1 when host is one. */
static int literal_address(resolve *r, const char *host, int port)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)&r->addrs[0];
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)&r->addrs[0];
    memset(&r->addrs[0], 0, sizeof r->addrs[0]);
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        r->addrlens[0] = (socklen_t)sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        r->addrlens[0] = (socklen_t)sizeof *a6;
    } else {
        return 0;
    }
    r->err = 0;
    r->naddrs = 1;
    r->next = 0;
    return 1;
}

/* peer:connect_to_host(host, port) */
static int tcp_connect_to_host(lua_State *L)
{
    struct tp_tcp *t = checktcp_io(L);
    size_t hostlen;
    const char *host = luaL_checklstring(L, 2, &hostlen);
    int port = (int)tp_checkrange(L, 3, 1, 65535);
    char why[120];
    resolve *r;
    tp_pool *pool;

    if (t->status == TCP_CONNECTING || t->status == TCP_CONNECTED)
        return tp_fail(L, "ERR_ALREADY_IN_USE", "already connected or "
                       "connecting: call disconnect_from_host() first");
    /* The resolver would stop at a NUL; the name may end up in a Host
     * header or SNI: only a whole, valid host name goes on. */
    if (tp_check_hostname(host, hostlen, why, sizeof why) != 0) {
        tp_pushprintable(L, host, hostlen, 80);
        return tp_fail(L, "ERR_INVALID_PARAMETER", "invalid host name '%s': "
                       "%s", lua_tostring(L, -1), why);
    }
    drop_resolve(t);
    tcp_close_fd(t);
    tp_buf_free(&t->in);
    t->peer_closed = 0;
    t->error[0] = '\0';
    t->error_code = NULL;
    if (t->bind_host[0] == '\0')
        strcpy(t->bind_host, "*");
    if ((r = calloc(1, sizeof *r)) == NULL)
        return tp_fail(L, "FAILED", "out of memory");
    memcpy(r->host, host, hostlen + 1);
    port_text(r->service, port);
    r->numeric = literal_address(r, host, port);
    r->job.run = resolve_run;
    r->job.free = resolve_free;
    t->res = r;
    tp_copystr(t->host, sizeof t->host, host, hostlen);
    t->port = port;
    t->status = TCP_CONNECTING;
    /* A name is looked up on a DNS worker: the call returns at once and
     * the status moves on in later polls.  IP literals need no lookup. */
    if (!r->numeric && (pool = tp_pool_get(L, TP_POOL_DNS)) != NULL &&
        tp_pool_submit(pool, &r->job, 0) == 0) {
        t->resolving = 1;
        tp_watch_job(&t->w, &r->job);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (!r->numeric)
        resolve_run(&r->job);         /* no DNS worker: looked up here */
    resolved(t);
    if (t->status == TCP_ERROR)
        return tp_fail(L, t->error_code, "%s", t->error);
    lua_pushboolean(L, 1);
    return 1;
}

/* Ours: whether connect_to_host is still looking the name up (the status
 * is STATUS_CONNECTING meanwhile). */
static int tcp_is_resolving(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    if (t->lent == NULL)
        update_connecting(t);
    lua_pushboolean(L, t->resolving);
    return 1;
}

static int tcp_poll(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    if (t->lent != NULL) {            /* its StreamPeerTLS is at work */
        lua_pushboolean(L, 1);
        return 1;
    }
    update_connecting(t);
    if (t->status == TCP_CONNECTED && !t->peer_closed) {
        /* Notice a peer that went away, as Godot's poll does. */
        struct pollfd pfd;
        pfd.fd = t->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 0) > 0) {
            int avail = 0;
            if (ioctl(t->fd, FIONREAD, &avail) == 0 && avail == 0)
                fill(t, 1);           /* reads 0 bytes: EOF, or an error */
        }
    }
    settle_eof(t);
    lua_pushboolean(L, 1);
    return 1;
}

static int tcp_get_status(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    /* Lent to a TLS step: connected when it began (what the step did to
     * it is known when it has ended). */
    lua_pushinteger(L, t->lent != NULL ? TCP_CONNECTED : t->status);
    return 1;
}

static int tcp_get_error(lua_State *L)
{
    struct tp_tcp *t = checktcp_io(L);
    if (t->error[0] == '\0')
        return 0;
    lua_pushstring(L, t->error);
    /* The code of the failure itself: a name that did not resolve stays
     * ERR_CANT_RESOLVE, a reset after connecting ERR_CONNECTION_ERROR. */
    lua_pushstring(L, t->error_code ? t->error_code
                      : t->status == TCP_ERROR ? "ERR_CANT_CONNECT"
                                               : "ERR_CONNECTION_ERROR");
    return 2;
}

static int tcp_get_connected_host(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    lua_pushstring(L, t->status == TCP_NONE ? "" : t->host);
    return 1;
}

static int tcp_get_connected_port(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    lua_pushinteger(L, t->status == TCP_NONE ? 0 : t->port);
    return 1;
}

static int tcp_get_local_port(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    lua_pushinteger(L, t->fd >= 0 ? local_port(t->fd) : t->bind_port);
    return 1;
}

static int tcp_disconnect_from_host(lua_State *L)
{
    struct tp_tcp *t = checktcp_io(L);
    drain_input(t);
    drop_resolve(t);
    tcp_close_fd(t);
    tp_buf_free(&t->in);
    t->status = TCP_NONE;
    t->peer_closed = 0;
    t->host[0] = '\0';
    t->port = 0;
    return 0;
}

static int tcp_set_no_delay(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    int one;
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    t->no_delay = (unsigned char)lua_toboolean(L, 2);
    one = t->no_delay;
    if (t->fd >= 0)
        setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

/* The reason a peer cannot do I/O now, pushed as a failure. */
static int io_fail(lua_State *L, struct tp_tcp *t)
{
    if (t->peer_closed || (t->status == TCP_NONE && t->port != 0))
        return tp_fail(L, "ERR_FILE_EOF", "the connection to %s port %d was "
                       "closed by the peer", t->host, t->port);
    if (t->status == TCP_ERROR)
        return tp_fail(L, t->error_code ? t->error_code
                                        : "ERR_CONNECTION_ERROR",
                       "%s", t->error);
    return tp_fail(L, "ERR_UNCONFIGURED", "the StreamPeerTCP is not "
                   "connected");
}

static int tcp_get_available_bytes(lua_State *L)
{
    struct tp_tcp *t = checktcp_io(L);
    int avail = 0;
    if (t->fd >= 0 && t->status == TCP_CONNECTED &&
        ioctl(t->fd, FIONREAD, &avail) != 0)
        avail = 0;
    lua_pushinteger(L, (lua_Integer)t->in.len + avail);
    return 1;
}

/* peer:get_partial_data(n) -> string (possibly empty); never blocks. */
static int tcp_get_partial_data(lua_State *L)
{
    struct tp_tcp *t = checktcp_io(L);
    size_t want = (size_t)tp_checkrange(L, 2, 0, IO_MAX), got;
    luaL_Buffer b;
    update_connecting(t);
    if (t->in.len < want && t->status == TCP_CONNECTED && !t->peer_closed)
        fill(t, want - t->in.len);
    if (t->in.len == 0 && want > 0) {
        if (t->status == TCP_CONNECTING ||
            (t->status == TCP_CONNECTED && !t->peer_closed)) {
            lua_pushliteral(L, "");
            return 1;
        }
        settle_eof(t);
        return io_fail(L, t);
    }
    got = t->in.len < want ? t->in.len : want;
    luaL_buffinit(L, &b);
    /* An empty buffer may have no memory: no pointer arithmetic on NULL. */
    luaL_addlstring(&b, got ? (const char *)t->in.p + t->in.off : "", got);
    luaL_pushresult(&b);
    tp_buf_consume(&t->in, got);
    settle_eof(t);
    return 1;
}

/* Waits for the connect to finish, up to the deadline. */
static int wait_connected(struct tp_tcp *t, double deadline)
{
    while (t->status == TCP_CONNECTING) {
        if (t->resolving) {
            if (!tp_job_wait(&t->res->job, deadline))
                return 0;
        } else if (tp_wait_fd(t->fd, POLLOUT, deadline) == 0)
            return 0;
        update_connecting(t);
    }
    return t->status == TCP_CONNECTED;
}

/* peer:get_data(n) -> exactly n bytes, waiting up to the timeout. */
static int tcp_get_data(lua_State *L)
{
    struct tp_tcp *t = checktcp_io(L);
    size_t want = (size_t)tp_checkrange(L, 2, 0, IO_MAX);
    double deadline = tp_now() + t->timeout;
    update_connecting(t);
    if (!wait_connected(t, deadline) && t->in.len < want) {
        if (t->status == TCP_CONNECTING)
            return tp_fail(L, "ERR_TIMEOUT", "timed out after %s s "
                           "connecting to %s port %d", SECS(t->timeout), t->host,
                           t->port);
        return io_fail(L, t);
    }
    while (t->in.len < want) {
        long r = fill_until(t, want - t->in.len, deadline);
        if (r > 0)
            continue;
        if (r == -1)
            return tp_fail(L, "ERR_FILE_EOF", "the peer closed the "
                           "connection after %d of %d bytes",
                           (int)t->in.len, (int)want);
        if (r == -2)
            return io_fail(L, t);
        if (t->blocking ? tp_now() >= deadline
                        : tp_wait_fd(t->fd, POLLIN, deadline) == 0)
            return tp_fail(L, "ERR_TIMEOUT", "timed out after %s s waiting "
                           "for %d bytes (%d arrived, kept for the next "
                           "read)", SECS(t->timeout), (int)want, (int)t->in.len);
    }
    lua_pushlstring(L, want ? (const char *)t->in.p + t->in.off : "", want);
    tp_buf_consume(&t->in, want);
    settle_eof(t);
    return 1;
}

/* peer:put_partial_data(s) -> bytes sent (0 when the socket is full). */
static int tcp_put_partial_data(lua_State *L)
{
    struct tp_tcp *t = checktcp_io(L);
    size_t len;
    const char *s = tp_checkfrom(L, 2, &len);
    long n = tp_tcp_send(t, (const unsigned char *)s, len);
    if (n < 0 || (t->status != TCP_CONNECTED && t->status != TCP_CONNECTING))
        return io_fail(L, t);
    lua_pushinteger(L, n);
    return 1;
}

/* peer:put_data(s) -> true once every byte is sent. */
static int tcp_put_data(lua_State *L)
{
    struct tp_tcp *t = checktcp_io(L);
    size_t len, done = 0;
    const unsigned char *s =
        (const unsigned char *)luaL_checklstring(L, 2, &len);
    double deadline = tp_now() + t->timeout;
    update_connecting(t);
    if (!wait_connected(t, deadline)) {
        if (t->status == TCP_CONNECTING)
            return tp_fail(L, "ERR_TIMEOUT", "timed out after %s s "
                           "connecting to %s port %d", SECS(t->timeout), t->host,
                           t->port);
        return io_fail(L, t);
    }
    while (done < len) {
        long n = tp_tcp_send(t, s + done, len - done);
        if (n < 0)
            return io_fail(L, t);
        done += (size_t)n;
        if (done < len && tp_wait_fd(t->fd, POLLOUT, deadline) == 0)
            return tp_fail(L, "ERR_TIMEOUT", "timed out after %s s sending "
                           "%d bytes (%d sent)", SECS(t->timeout), (int)len,
                           (int)done);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int tcp_set_timeout(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    lua_Number s = luaL_checknumber(L, 2);
    luaL_argcheck(L, s >= 0 && s <= 1e9, 2, "timeout must be 0 or more "
                  "seconds");
    t->timeout = (double)s;
    return 0;
}

static int tcp_get_timeout(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    lua_pushnumber(L, t->timeout);
    return 1;
}

static int tcp_set_big_endian(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    t->hdr.big_endian = (unsigned char)lua_toboolean(L, 2);
    return 0;
}

static int tcp_is_big_endian_enabled(lua_State *L)
{
    struct tp_tcp *t = checktcp(L);
    lua_pushboolean(L, t->hdr.big_endian);
    return 1;
}

/* ------------------------------------------------------------ TCPServer */

typedef struct tp_server {
    tp_obj hdr;
    int fd;
    int port;
    tp_watch w;
} tp_server;

static void server_set_fd(tp_server *s, int fd)
{
    if (s->fd >= 0 && fd < 0) {
        tp_watch_fd(&s->w, -1);
        close(s->fd);
    }
    s->fd = fd;
    s->w.fd = fd;
    if (fd >= 0)
        tp_watch_fd(&s->w, fd);
}

static tp_server *checkserver(lua_State *L)
{
    return tp_checkobj(L, 1, TP_TCPSERVER);
}

static int server_new(lua_State *L)
{
    tp_server *s = tp_newobj(L, sizeof *s, 0, TP_TCPSERVER);
    s->fd = -1;
    tp_watch_init(&s->w);
    return 1;
}

static int server_gc(lua_State *L)
{
    tp_server *s = tp_toobj(L, 1, TP_TCPSERVER);
    if (!s->hdr.closed) {
        tp_watch_release(&s->w);
        server_set_fd(s, -1);
        s->hdr.closed = 1;
    }
    return 0;
}

static int server_tostring(lua_State *L)
{
    tp_server *s = tp_toobj(L, 1, TP_TCPSERVER);
    if (s->hdr.closed)
        lua_pushliteral(L, "TCPServer (closed)");
    else if (s->fd < 0)
        lua_pushliteral(L, "TCPServer (not listening)");
    else
        lua_pushfstring(L, "TCPServer (listening on port %d)", s->port);
    return 1;
}

/* Opens a listening socket on `host` ("*": IPv6 dual-stack, or IPv4 where
 * IPv6 is missing).  Returns the fd or -1 with errno set. */
static int open_listener(const char *host, int port)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    struct sockaddr *sa;
    socklen_t salen;
    int fd, one = 1, zero = 0, family;

    memset(&a6, 0, sizeof a6);
    memset(&a4, 0, sizeof a4);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((unsigned short)port);
    a4.sin_family = AF_INET;
    a4.sin_port = htons((unsigned short)port);
    if (strcmp(host, "*") == 0) {
        family = AF_INET6;
        a6.sin6_addr = in6addr_any;
    } else if (inet_pton(AF_INET, host, &a4.sin_addr) == 1)
        family = AF_INET;
    else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1)
        family = AF_INET6;
    else {
        errno = EINVAL;
        return -1;
    }
    fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0 && family == AF_INET6 && strcmp(host, "*") == 0) {
        family = AF_INET;             /* no IPv6 on this machine */
        a4.sin_addr.s_addr = htonl(INADDR_ANY);
        fd = socket(family, SOCK_STREAM, 0);
    }
    if (fd < 0)
        return -1;
    set_nonblock_cloexec(fd);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) {
        int v6only = strcmp(host, "*") == 0 ? zero : one;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        sa = (struct sockaddr *)&a6;
        salen = sizeof a6;
    } else {
        sa = (struct sockaddr *)&a4;
        salen = sizeof a4;
    }
    if (bind(fd, sa, salen) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* server:listen(port, bind_address = "*") */
static int server_listen(lua_State *L)
{
    tp_server *s = checkserver(L);
    int port = (int)tp_checkrange(L, 2, 0, 65535);
    const char *host = luaL_optstring(L, 3, "*");
    int fd;
    if (s->fd >= 0)
        return tp_fail(L, "ERR_ALREADY_IN_USE", "already listening on port "
                       "%d: call stop() first", s->port);
    fd = open_listener(host, port);
    if (fd < 0) {
        int e = errno;
        if (e == EINVAL)
            return tp_fail(L, "ERR_INVALID_PARAMETER", "bind address '%s' "
                           "is not an IP address (or \"*\")", host);
        return tp_fail(L, e == EADDRINUSE ? "ERR_ALREADY_IN_USE"
                                          : "FAILED",
                       "cannot listen on %s port %d: %s", host, port,
                       strerror(e));
    }
    server_set_fd(s, fd);
    s->port = local_port(fd);
    lua_pushboolean(L, 1);
    return 1;
}

static int server_is_listening(lua_State *L)
{
    tp_server *s = checkserver(L);
    lua_pushboolean(L, s->fd >= 0);
    return 1;
}

static int server_get_local_port(lua_State *L)
{
    tp_server *s = checkserver(L);
    lua_pushinteger(L, s->fd >= 0 ? s->port : 0);
    return 1;
}

static int server_is_connection_available(lua_State *L)
{
    tp_server *s = checkserver(L);
    struct pollfd pfd;
    pfd.fd = s->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    lua_pushboolean(L, s->fd >= 0 && poll(&pfd, 1, 0) > 0 &&
                       (pfd.revents & POLLIN));
    return 1;
}

static int server_take_connection(lua_State *L)
{
    tp_server *s = checkserver(L);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct tp_tcp *t;
    int fd;
    if (s->fd < 0)
        return tp_fail(L, "ERR_UNCONFIGURED", "the TCPServer is not "
                       "listening");
    do
        fd = accept_blocking(s->fd, (struct sockaddr *)&ss, &len);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED)
            return tp_fail(L, "ERR_UNAVAILABLE", "no connection is waiting");
        return tp_fail(L, "FAILED", "accept failed: %s", strerror(errno));
    }
    t = new_tcp(L);
    tcp_set_fd(t, fd);
    t->blocking = 1;
    t->status = TCP_CONNECTED;
    strcpy(t->bind_host, "*");
    addr_text((struct sockaddr *)&ss, t->host, sizeof t->host, &t->port);
    return 1;
}

static int server_stop(lua_State *L)
{
    tp_server *s = checkserver(L);
    server_set_fd(s, -1);
    s->port = 0;
    return 0;
}

/* ------------------------------------------------------------ waiting */

tp_watch *tp_tcp_watch(lua_State *L, int idx)
{
    struct tp_tcp *t = tp_testobj(L, idx, TP_TCP);
    tp_server *s;
    if (t != NULL)
        return t->hdr.closed ? NULL : &t->w;
    s = tp_testobj(L, idx, TP_TCPSERVER);
    return s != NULL && !s->hdr.closed ? &s->w : NULL;
}

int tp_tcp_resolving(struct tp_tcp *t)
{
    return t->resolving;
}

void tp_tcp_lend(struct tp_tcp *t, tp_job *job)
{
    t->lent = job;
    if (job == NULL && t->status == TCP_ERROR && t->fd >= 0)
        tcp_close_fd(t);              /* failed while on the worker */
}

int tp_tcp_readable(struct tp_tcp *t)
{
    struct pollfd pfd;
    if (t->in.len > 0 || t->peer_closed || t->fd < 0)
        return 1;
    pfd.fd = t->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    return poll(&pfd, 1, 0) != 0;
}

int tp_tcp_wait_connected(struct tp_tcp *t, double deadline)
{
    wait_connected(t, deadline);
    return tp_now() < deadline;
}

tp_watch *tp_tcp_watch_of(struct tp_tcp *t)
{
    return &t->w;
}

int tp_tcp_pollfd(lua_State *L, int idx, int *ready)
{
    struct tp_tcp *t = tp_testobj(L, idx, TP_TCP);
    tp_server *s;
    if (t != NULL) {
        if (t->hdr.closed)
            return -1;
        if (t->resolving)
            return TP_POLLFD_WORKER;
        if (t->in.len > 0)
            *ready = 1;
        return t->fd;
    }
    s = tp_testobj(L, idx, TP_TCPSERVER);
    if (s != NULL && !s->hdr.closed)
        return s->fd;
    return -1;
}

/* ------------------------------------------------------------- opener */

static const luaL_Reg tcp_methods[] = {
    {"bind", tcp_bind},
    {"connect_to_host", tcp_connect_to_host},
    {"poll", tcp_poll},
    {"get_status", tcp_get_status},
    {"is_resolving", tcp_is_resolving},
    {"get_error", tcp_get_error},
    {"get_connected_host", tcp_get_connected_host},
    {"get_connected_port", tcp_get_connected_port},
    {"get_local_port", tcp_get_local_port},
    {"disconnect_from_host", tcp_disconnect_from_host},
    {"set_no_delay", tcp_set_no_delay},
    {"get_available_bytes", tcp_get_available_bytes},
    {"get_partial_data", tcp_get_partial_data},
    {"get_data", tcp_get_data},
    {"put_partial_data", tcp_put_partial_data},
    {"put_data", tcp_put_data},
    {"set_timeout", tcp_set_timeout},
    {"get_timeout", tcp_get_timeout},
    {"set_big_endian", tcp_set_big_endian},
    {"is_big_endian_enabled", tcp_is_big_endian_enabled},
    {NULL, NULL}
};

static const luaL_Reg tcp_meta[] = {
    {"__gc", tcp_gc},
    {"__close", tcp_gc},
    {"__tostring", tcp_tostring},
    {NULL, NULL}
};

static const tp_const tcp_consts[] = {
    {"STATUS_NONE", TCP_NONE}, {"STATUS_CONNECTING", TCP_CONNECTING},
    {"STATUS_CONNECTED", TCP_CONNECTED}, {"STATUS_ERROR", TCP_ERROR},
    {NULL, 0}
};

static const luaL_Reg server_methods[] = {
    {"listen", server_listen},
    {"is_listening", server_is_listening},
    {"get_local_port", server_get_local_port},
    {"is_connection_available", server_is_connection_available},
    {"take_connection", server_take_connection},
    {"stop", server_stop},
    {NULL, NULL}
};

static const luaL_Reg server_meta[] = {
    {"__gc", server_gc},
    {"__close", server_gc},
    {"__tostring", server_tostring},
    {NULL, NULL}
};

void tp_open_tcp(lua_State *L)
{
    tp_newclass(L, TP_TCP, tcp_methods, tcp_meta, tcp_new, tcp_consts);
    luaL_getmetatable(L, TP_TCP);
    lua_getfield(L, -1, "__index");
    tp_streampeer_install(L, -1, TP_TCP);
    lua_pop(L, 2);
    tp_newclass(L, TP_TCPSERVER, server_methods, server_meta, server_new,
                NULL);
}
