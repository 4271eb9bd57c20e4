/*
 * aux.h - helpers shared by every tlspeer class: object headers and the
 * closed-object check, failure tuples, range-checked integers, the per-state
 * random generator, scratch memory and whole-file I/O.
 */
#ifndef TLSPEER_AUX_H
#define TLSPEER_AUX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>

#include "compat.h"

#if defined(__GNUC__)
#define TP_HIDDEN __attribute__((visibility("hidden")))
#define TP_EXPORT __attribute__((visibility("default")))
#define TP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TP_HIDDEN
#define TP_EXPORT
#define TP_PRINTF(f, a)
#endif

/* Every userdata starts with this header; `closed` is set by __gc/__close. */
typedef struct tp_obj {
    uintptr_t tag;            /* its class and address, mixed: see tp_testobj */
    unsigned char closed;
    unsigned char pinned;     /* a TLSOptions points into it: free in __gc */
    unsigned char big_endian; /* StreamPeers: the typed methods' order */
} tp_obj;

/* Marks the object at idx as held by a TLSOptions: closing it then only
 * makes it unusable from Lua, and its memory is freed by the collector,
 * once nothing points at it any more. */
TP_HIDDEN void tp_pin(lua_State *L, int idx);

/* Metatable names.  Each is one array in aux.c, so its address also
 * names the class: the registry holds every metatable under it too, and
 * the type checks of every method find it by that pointer (no string to
 * hash on each call). */
extern const char tp_class_crypto[], tp_class_key[], tp_class_x509[],
    tp_class_hashing[], tp_class_hmac[], tp_class_aes[], tp_class_tcp[],
    tp_class_tcpserver[], tp_class_options[], tp_class_tls[];
#define TP_CRYPTO      tp_class_crypto
#define TP_CRYPTOKEY   tp_class_key
#define TP_X509        tp_class_x509
#define TP_HASHING     tp_class_hashing
#define TP_HMAC        tp_class_hmac
#define TP_AES         tp_class_aes
#define TP_TCP         tp_class_tcp
#define TP_TCPSERVER   tp_class_tcpserver
#define TP_OPTIONS     tp_class_options
#define TP_TLS         tp_class_tls

/* Godot's HashingContext.HashType, plus SHA-512 (ours). */
enum { TP_HASH_MD5 = 0, TP_HASH_SHA1 = 1, TP_HASH_SHA256 = 2, TP_HASH_SHA512 = 3 };

/* Classes: create the metatable `tname` (methods under __index), then push
 * the class table: { new = ctor, <constants> }.  `consts` may be NULL. */
typedef struct tp_const { const char *name; lua_Integer value; } tp_const;
TP_HIDDEN void tp_newclass(lua_State *L, const char *tname,
                           const luaL_Reg *methods, const luaL_Reg *meta,
                           lua_CFunction ctor, const tp_const *consts);

/* New zeroed userdata of `size` bytes with `nuv` user values and the
 * metatable `tname`. */
TP_HIDDEN void *tp_newobj(lua_State *L, size_t size, int nuv,
                          const char *tname);

/* The `tname` object at idx, or NULL (luaL_testudata, by pointer). */
TP_HIDDEN void *tp_testobj(lua_State *L, int idx, const char *tname);
/* Checks that arg `idx` is a `tname` object and not closed (raises
 * "attempt to use a closed X" otherwise). */
TP_HIDDEN void *tp_checkobj(lua_State *L, int idx, const char *tname);
/* Same, but a closed object is returned too (for __gc/__tostring). */
TP_HIDDEN void *tp_toobj(lua_State *L, int idx, const char *tname);
/* "CryptoKey" for "tlspeer.CryptoKey". */
TP_HIDDEN const char *tp_classname(const char *tname);

/* Failure tuples: push nil, message, code and return 3.  The message of
 * tp_fail_mbedtls ends with mbedtls' own text for `err`. */
TP_HIDDEN int tp_fail(lua_State *L, const char *code, const char *fmt, ...)
    TP_PRINTF(3, 4);
TP_HIDDEN int tp_fail_mbedtls(lua_State *L, int err, const char *code,
                              const char *fmt, ...) TP_PRINTF(4, 5);
/* mbedtls' text for an error code, into buf. */
TP_HIDDEN const char *tp_strerror(int err, char *buf, size_t len);

/* Integers within [lo, hi]; raise a bad-argument error otherwise. */
TP_HIDDEN lua_Integer tp_checkrange(lua_State *L, int arg, lua_Integer lo,
                                    lua_Integer hi);
TP_HIDDEN lua_Integer tp_optrange(lua_State *L, int arg, lua_Integer def,
                                  lua_Integer lo, lua_Integer hi);
/* put_partial_data(s, from = 1): the string at arg and the optional
 * 1-based index after it (ours: a caller sending a large string in pieces
 * passes how far it got instead of copying the rest).  Returns the part
 * from `from` on and its length. */
TP_HIDDEN const char *tp_checkfrom(lua_State *L, int arg, size_t *len);
/* Optional boolean: nil/none gives `def`, anything but a boolean raises. */
TP_HIDDEN int tp_optboolean(lua_State *L, int arg, int def);

/* The Lua state's random generator (seeded once from the OS): the context
 * to give mbedtls with tp_rng_random, which reseeds in a forked child. */
TP_HIDDEN void *tp_rng(lua_State *L);
/* getpid(), without a system call where the system can tell a forked
 * child by memory alone (Linux: a MADV_WIPEONFORK page). */
TP_HIDDEN long tp_pid(void);
TP_HIDDEN int tp_rng_random(void *rng, unsigned char *out, size_t len);
TP_HIDDEN int tp_rng_open(lua_State *L); /* 0, or pushes a failure (3) */

/* Raises "unknown option 'x' to 'fname' (known: ...)" when the options
 * table at idx has a key not in `known` (NULL-terminated, sorted). */
TP_HIDDEN void tp_checkoptnames(lua_State *L, int idx,
                                const char *const known[], const char *fname);

/* Hash type enum -> mbedtls type; raises on an unknown value. */
TP_HIDDEN mbedtls_md_type_t tp_checkhash(lua_State *L, int arg);

/* Scratch memory owned by the Lua state: pushes a userdata of `size` bytes.
 * Callers wipe secrets with mbedtls_platform_zeroize before returning. */
TP_HIDDEN unsigned char *tp_scratch(lua_State *L, size_t size);

/* Reads a whole file (at most `max` bytes) into a scratch userdata pushed on
 * the stack, NUL-terminated (the NUL is not counted in *len).  Returns 0, or
 * pushes nil, message, code (ERR_FILE_NOT_FOUND, ERR_FILE_CANT_OPEN,
 * ERR_FILE_CORRUPT for a file too large) and returns 3. */
TP_HIDDEN int tp_readfile(lua_State *L, const char *path, size_t max,
                          unsigned char **data, size_t *len);

/* Writes `data` to `path` atomically (a temporary file in the same folder,
 * then rename), with permissions `mode`.  Returns 0, or pushes nil, message,
 * "ERR_FILE_CANT_WRITE" and returns 3; no partial file is left behind. */
TP_HIDDEN int tp_writefile(lua_State *L, const char *path,
                           const void *data, size_t len, unsigned int mode);

/* Pushes s (len bytes, maybe binary) as text fit for a message: control
 * and non-ASCII bytes as \xNN, cut after `max` bytes with "...". */
TP_HIDDEN const char *tp_pushprintable(lua_State *L, const char *s,
                                       size_t len, size_t max);

/* Lowercase hex of `len` bytes, pushed as a string. */
TP_HIDDEN void tp_pushhex(lua_State *L, const unsigned char *p, size_t len);

/* A growable byte queue owned by a userdata (freed by its __gc): bytes
 * read from a socket but not yet handed to Lua live here, so a read that
 * times out loses nothing. */
typedef struct tp_buf {
    unsigned char *p;
    size_t off, len, cap;     /* data is p[off .. off+len) */
    size_t hi;                /* p[0 .. hi) has held data: zeroed at the end */
} tp_buf;
TP_HIDDEN int tp_buf_reserve(tp_buf *b, size_t extra);   /* 0 or -1 */
/* n bytes were written at p + off + len (after tp_buf_reserve). */
static inline void tp_buf_wrote(tp_buf *b, size_t n)
{
    b->len += n;
    if (b->off + b->len > b->hi)
        b->hi = b->off + b->len;
}
TP_HIDDEN void tp_buf_consume(tp_buf *b, size_t n);
TP_HIDDEN void tp_buf_free(tp_buf *b);

/* src (len bytes) into dst (size bytes), cut to fit and terminated: a
 * snprintf("%s") without the formatting, for what runs per connection. */
static inline void tp_copystr(char *dst, size_t size, const char *src,
                              size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Monotonic clock in seconds. */
TP_HIDDEN double tp_now(void);
/* Waits with poll(2) until fd has `events` or the deadline (tp_now() based;
 * a negative deadline waits forever).  Returns >0 ready, 0 timeout, -1
 * error (errno set). */
TP_HIDDEN int tp_wait_fd(int fd, short events, double deadline);

/* ------------------------------------------------------ verify.c */

/* The longest DNS name (RFC 1035), without a trailing dot. */
#define TP_HOSTNAME_MAX   253
/* CAs with name constraints remembered per chain. */
#define TP_VERIFY_MAX_NC  12

/* 0 when s (len bytes) is a host name tlspeer accepts: an IPv4 or IPv6
 * literal or a DNS name (letters, digits, '-', '_', labels of 1..63 bytes,
 * at most 253 bytes).  Otherwise -1, and `why` says what is wrong. */
TP_HIDDEN int tp_check_hostname(const char *s, size_t len, char *why,
                                size_t whylen);

/* What one peer's certificate verification needs and found. */
typedef struct tp_verify {
    char host[TP_HOSTNAME_MAX + 2];  /* the name the leaf must carry */
    unsigned char ip[16];
    size_t iplen;                    /* host is an IP literal this long */
    unsigned char is_server;         /* we verify a client's certificate */
    unsigned char check_name;        /* a name mismatch fails verification */
    unsigned char saw_cert;          /* the chain was verified this time */
    unsigned char name_ok;           /* the leaf carries host */
    int last_depth, nconstraints;
    struct { unsigned char *p; size_t len; } constraints[TP_VERIFY_MAX_NC];
    char peer_names[200];            /* the leaf's names, for messages */
    char peer_not_after[24];
    char problem[300];               /* what a CA of the chain did wrong */
} tp_verify;

/* Resets v for a handshake with `host` (NULL for a server). */
TP_HIDDEN void tp_verify_start(tp_verify *v, const char *host, int is_server,
                               int check_name);
/* The mbedtls verify callback (ctx: a tp_verify). */
TP_HIDDEN int tp_verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth,
                           uint32_t *flags);
/* After a resumed handshake: name_ok for the session's certificate. */
TP_HIDDEN void tp_verify_resumed(tp_verify *v, const mbedtls_x509_crt *peer);
/* Explains failed verification `flags` into buf; returns 1 when it is a
 * name mismatch (Godot's STATUS_ERROR_HOSTNAME_MISMATCH), else 0. */
TP_HIDDEN int tp_verify_explain(const tp_verify *v, uint32_t flags,
                                char *buf, size_t len);

/* ----------------------------------------------------- workers.c */

/* A job for a worker thread: `run` does the work there (never touching
 * the Lua state); `free` releases the job when its owner has abandoned it.
 * The owner embeds tp_job at the start of its own job struct. */
enum { TP_JOB_QUEUED, TP_JOB_RUNNING, TP_JOB_DONE, TP_JOB_ABANDONED,
       TP_JOB_LOST };
typedef struct tp_pool tp_pool;
typedef struct tp_job {
    void (*run)(struct tp_job *job);
    void (*free)(struct tp_job *job);
    struct tp_job *next;
    tp_pool *pool;
    long pid;                        /* the process that queued it */
    int state;                       /* atomic: TP_JOB_* */
} tp_job;

enum { TP_POOL_CPU = 0, TP_POOL_DNS = 1 };
#define TP_DNS_THREADS 4             /* lookups that may stall in parallel */

/* The state's pool of `kind`, or NULL when work runs inline
 * (tls.set_worker_threads(0), or no thread could be started). */
TP_HIDDEN tp_pool *tp_pool_get(lua_State *L, int kind);
/* Keeps the module's code and data for the life of the process (once). */
TP_HIDDEN void tp_keep_loaded(void);
/* Queues the job (0), or -1: then nothing was queued.  The pool's threads
 * start now, or with `lazy` (a job its submitter may take back at once)
 * when a queued job is first looked at or waited for. */
TP_HIDDEN int tp_pool_submit(tp_pool *p, tp_job *job, int lazy);
/* TP_JOB_QUEUED / RUNNING / DONE; TP_JOB_LOST for a job of a parent
 * process (after fork). */
TP_HIDDEN int tp_job_state(tp_job *job);
/* Gives the job up: freed now if it is over, else by the worker. */
TP_HIDDEN void tp_job_abandon(tp_job *job);
/* Calls off a job that no worker has started: 1 (it will not run, and it
 * is freed, now or by the worker that takes it from the queue: the caller
 * may do its work itself, and must not touch the job again), or 0 when a
 * worker has it already (or it is over). */
TP_HIDDEN int tp_job_reclaim(tp_job *job);
/* Waits until the job is over or the deadline (tp_now(); < 0: forever)
 * passes; 1 when over. */
TP_HIDDEN int tp_job_wait(tp_job *job, double deadline);
/* Starts the threads of the state's pools that have jobs queued (before
 * a wait that a job's end should interrupt). */
TP_HIDDEN void tp_pools_kick(lua_State *L);
/* The descriptor that becomes readable when a job ends (-1 if none), and
 * emptying it. */
TP_HIDDEN int tp_wake_fd(lua_State *L);
TP_HIDDEN void tp_wake_drain(lua_State *L);

/* ------------------------------------------------------- event.c */

/* An object's place in the state's event loop (event.c): TCPServer and
 * StreamPeerTCP carry one; a StreamPeerTLS over TCP uses its stream's. */
typedef struct tp_loop tp_loop;
typedef struct tp_watch {
    tp_loop *loop;                   /* NULL: not watched */
    int slot;                        /* -1: not watched */
    int fd;                          /* the object's socket, or -1 */
    tp_job *job;                     /* work on a worker: wake at its end */
    struct tp_watch *next_job;
    unsigned char job_linked;
} tp_watch;

#define tp_watch_init(w) \
    (memset((w), 0, sizeof *(w)), (w)->slot = -1, (w)->fd = -1)
/* The object's socket changed (-1: closed). */
TP_HIDDEN void tp_watch_fd(tp_watch *w, int fd);
/* The object has work on a worker (NULL: no longer): a loop reports it
 * ready when that job ends. */
TP_HIDDEN void tp_watch_job(tp_watch *w, tp_job *job);
/* The next wait() reports the object (data is buffered past its socket). */
TP_HIDDEN void tp_watch_wake(tp_watch *w);
/* The object goes away: out of the loop. */
TP_HIDDEN void tp_watch_release(tp_watch *w);
/* The watch of a TCPServer/StreamPeerTCP, StreamPeerTLS (over TCP) at idx,
 * or NULL. */
TP_HIDDEN tp_watch *tp_tcp_watch(lua_State *L, int idx);
TP_HIDDEN tp_watch *tp_tls_watch(lua_State *L, int idx);
TP_HIDDEN void tp_open_event(lua_State *L);      /* core._loop */

/* Constructors other files need. */
TP_HIDDEN mbedtls_pk_context *tp_newkey(lua_State *L); /* empty CryptoKey */
TP_HIDDEN mbedtls_pk_context *tp_checkkey(lua_State *L, int idx);
TP_HIDDEN int tp_key_is_public_only(lua_State *L, int idx);
/* 1 when both keys have the same public key (a certificate's and its
 * private key's), else 0. */
TP_HIDDEN int tp_pk_same_public(mbedtls_pk_context *a, mbedtls_pk_context *b);
TP_HIDDEN void tp_key_mark_public(lua_State *L, int idx);
TP_HIDDEN mbedtls_x509_crt *tp_newcert(lua_State *L);
TP_HIDDEN mbedtls_x509_crt *tp_checkcert(lua_State *L, int idx);

/* The socket of a StreamPeerTCP, as StreamPeerTLS uses it. */
struct tp_tcp;
TP_HIDDEN struct tp_tcp *tp_testtcp(lua_State *L, int idx); /* or NULL */
TP_HIDDEN int tp_tcp_status(struct tp_tcp *t);  /* advances a connect */
TP_HIDDEN int tp_tcp_fd(struct tp_tcp *t);
/* tp_tcp_recv, waiting in recv() until the deadline (tp_now()) when the
 * socket allows: for blocking reads, on the Lua thread only. */
TP_HIDDEN long tp_tcp_recv_wait(struct tp_tcp *t, unsigned char *buf,
                                size_t len, double deadline);
/* >0 bytes, 0 would block, -1 EOF, -2 error (see tp_tcp_error). */
TP_HIDDEN long tp_tcp_recv(struct tp_tcp *t, unsigned char *buf, size_t len);
TP_HIDDEN long tp_tcp_send(struct tp_tcp *t, const unsigned char *buf,
                           size_t len);
TP_HIDDEN const char *tp_tcp_error(struct tp_tcp *t);
TP_HIDDEN const char *tp_tcp_error_code(struct tp_tcp *t);   /* or NULL */
TP_HIDDEN void tp_tcp_disconnect(struct tp_tcp *t);
TP_HIDDEN void tp_tcp_peer_text(struct tp_tcp *t, char *buf, size_t len);
/* The port connect_to_host was given (0 before one). */
TP_HIDDEN int tp_tcp_port(struct tp_tcp *t);
TP_HIDDEN void tp_tcp_set_no_delay(struct tp_tcp *t);
TP_HIDDEN tp_watch *tp_tcp_watch_of(struct tp_tcp *t);

/* The socket behind a TCPServer, StreamPeerTCP or StreamPeerTLS at idx
 * (-1 if none); *ready is set when the object has data buffered already. */
/* TP_POLLFD_WORKER: the object waits for a worker (a lookup, a
 * handshake step): wait on tp_wake_fd. */
#define TP_POLLFD_WORKER (-2)
TP_HIDDEN int tp_tcp_pollfd(lua_State *L, int idx, int *ready);
TP_HIDDEN int tp_tcp_resolving(struct tp_tcp *t);
/* A StreamPeerTLS step on a worker uses the stream (NULL: no longer). */
TP_HIDDEN void tp_tcp_lend(struct tp_tcp *t, tp_job *job);
/* Bytes are there to read (buffered, or in the socket), or the end. */
TP_HIDDEN int tp_tcp_readable(struct tp_tcp *t);
/* Waits for a connect in progress; 0 once the deadline has passed. */
TP_HIDDEN int tp_tcp_wait_connected(struct tp_tcp *t, double deadline);
TP_HIDDEN int tp_tls_pollfd(lua_State *L, int idx, int *ready);
/* Gives back the record buffer pages of the peers quiet for a while (at
 * most every quarter second); returns when it wants to look again
 * (tp_now()), or -1 when no peer waits for it. */
TP_HIDDEN double tp_tls_sweep(lua_State *L);

/* TLSOptions, as StreamPeerTLS uses them. */
struct tp_options;
TP_HIDDEN struct tp_options *tp_checkoptions(lua_State *L, int idx);
TP_HIDDEN mbedtls_ssl_config *tp_options_conf(struct tp_options *o);
TP_HIDDEN int tp_options_is_server(struct tp_options *o);
TP_HIDDEN int tp_options_is_unsafe(struct tp_options *o);
/* The default CA bundle the options trust while it still loads (NULL once
 * it is there, or for any other chain); _settled: it is there. */
TP_HIDDEN const mbedtls_x509_crt *tp_options_pending_trust(struct tp_options *o);
TP_HIDDEN void tp_options_trust_settled(struct tp_options *o);
/* A peer's mbedtls context uses the configuration from setup to free. */
TP_HIDDEN void tp_options_retain(struct tp_options *o);
TP_HIDDEN void tp_options_release(struct tp_options *o);
TP_HIDDEN void tp_options_push_cn_override(lua_State *L, int idx);
/* The client session cache of options at idx (a table), or nil. */
TP_HIDDEN void tp_options_push_sessions(lua_State *L, int idx);

/* The default CA bundle (an X509Certificate, loaded once): pushes it and
 * returns 1, or pushes a failure and returns 3.  While it loads on a
 * worker, what is pushed is the X509Certificate the load will fill, and
 * *pending is set: handshakes trusting it wait for tp_cabundle_settle. */
TP_HIDDEN int tp_cabundle_push(lua_State *L, int *pending);
/* Whether the load that fills `crt` has ended: 1 filled, 0 still loading,
 * -1 failed (tp_cabundle_error says why).  Waits until `deadline`
 * (tp_now(); 0: not at all; < 0: for ever). */
TP_HIDDEN int tp_cabundle_settle(lua_State *L, const mbedtls_x509_crt *crt,
                                 double deadline);
TP_HIDDEN const char *tp_cabundle_error(lua_State *L, const char **code);
/* The job of the load that fills `crt`, or NULL (for event loop watches). */
TP_HIDDEN tp_job *tp_cabundle_job(lua_State *L, const mbedtls_x509_crt *crt);

/* The typed StreamPeer methods (streampeer.c), added to the methods table
 * at `methods` of class `tname`, over its get_data and put_data. */
TP_HIDDEN void tp_streampeer_install(lua_State *L, int methods,
                                     const char *tname);

/* Class openers: each pushes its class table. */
TP_HIDDEN void tp_open_crypto(lua_State *L);
TP_HIDDEN void tp_open_key(lua_State *L);
TP_HIDDEN void tp_open_x509(lua_State *L);
TP_HIDDEN void tp_open_hashing(lua_State *L);
TP_HIDDEN void tp_open_tcp(lua_State *L);     /* StreamPeerTCP, TCPServer */
TP_HIDDEN void tp_open_options(lua_State *L);
TP_HIDDEN void tp_open_tls(lua_State *L);
TP_HIDDEN void tp_open_cabundle(lua_State *L); /* functions on the module */
TP_HIDDEN void tp_open_workers(lua_State *L);  /* functions on the module */
TP_HIDDEN void tp_open_zstream(lua_State *L);  /* core._zstream */
TP_HIDDEN void tp_open_wsframe(lua_State *L);  /* core._ws_* (WebSocket) */

#endif
