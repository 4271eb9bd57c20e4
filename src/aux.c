/*
 * aux.c - helpers shared by every tlspeer class.
 */
#define _DEFAULT_SOURCE 1             /* madvise(), MADV_WIPEONFORK */
#include "aux.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

/* ------------------------------------------------------------ classes */

const char tp_class_crypto[] = "tlspeer.Crypto";
const char tp_class_key[] = "tlspeer.CryptoKey";
const char tp_class_x509[] = "tlspeer.X509Certificate";
const char tp_class_hashing[] = "tlspeer.HashingContext";
const char tp_class_hmac[] = "tlspeer.HMACContext";
const char tp_class_aes[] = "tlspeer.AESContext";
const char tp_class_tcp[] = "tlspeer.StreamPeerTCP";
const char tp_class_tcpserver[] = "tlspeer.TCPServer";
const char tp_class_options[] = "tlspeer.TLSOptions";
const char tp_class_tls[] = "tlspeer.StreamPeerTLS";

void tp_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 const luaL_Reg *meta, lua_CFunction ctor,
                 const tp_const *consts)
{
    luaL_newmetatable(L, tname);
    lua_pushstring(L, tname);             /* what 5.3+ do, for every Lua */
    lua_setfield(L, -2, "__name");
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_rawsetp(L, LUA_REGISTRYINDEX, tname);   /* by the name's address too */

    lua_newtable(L);
    lua_pushcfunction(L, ctor);
    lua_setfield(L, -2, "new");
    for (; consts && consts->name; consts++) {
        lua_pushinteger(L, consts->value);
        lua_setfield(L, -2, consts->name);
    }
}

/* The type check of every method call reads the object's own header
 * instead of comparing metatables (a registry lookup and four more API
 * calls, about 300 instructions, paid 14 times per connection made).  The
 * tag mixes the class with the block's address, so no other userdata
 * carries it by chance, a copy of an object's bytes elsewhere does not
 * pass, and Lua code cannot write it: userdata bytes are written only by
 * C.  An object whose metatable Lua code swapped (debug.setmetatable) is
 * still one of ours, and its methods stay safe to call on it. */
#define TP_TAG_KEY ((uintptr_t)0x9e3779b97f4a7c15ull)

static uintptr_t obj_tag(const void *p, const char *tname)
{
    return ((uintptr_t)p ^ TP_TAG_KEY) + (uintptr_t)tname;
}

void *tp_newobj(lua_State *L, size_t size, int nuv, const char *tname)
{
    tp_obj *p = lua_newuserdatauv(L, size, nuv);
    memset(p, 0, size);
    p->tag = obj_tag(p, tname);
    lua_rawgetp(L, LUA_REGISTRYINDEX, tname);
    lua_setmetatable(L, -2);
    return p;
}

void tp_pin(lua_State *L, int idx)
{
    tp_obj *o = lua_touserdata(L, idx);
    if (o != NULL)
        o->pinned = 1;
}

const char *tp_classname(const char *tname)
{
    const char *dot = strrchr(tname, '.');
    return dot ? dot + 1 : tname;
}

void *tp_testobj(lua_State *L, int idx, const char *tname)
{
    tp_obj *p = lua_touserdata(L, idx);
    /* A light userdata's length is 0; a block too small for a header is
     * not ours either, and is not read past its end. */
    if (p == NULL || lua_rawlen(L, idx) < sizeof *p ||
        p->tag != obj_tag(p, tname))
        return NULL;
    return p;
}

void *tp_toobj(lua_State *L, int idx, const char *tname)
{
    void *p = tp_testobj(L, idx, tname);
    if (p == NULL)
        luaL_typeerror(L, idx, tp_classname(tname));
    return p;
}

void *tp_checkobj(lua_State *L, int idx, const char *tname)
{
    tp_obj *o = tp_toobj(L, idx, tname);
    if (o->closed)
        luaL_error(L, "attempt to use a closed %s", tp_classname(tname));
    return o;
}

/* ----------------------------------------------------------- failures */

const char *tp_strerror(int err, char *buf, size_t len)
{
    mbedtls_strerror(err, buf, len);
    return buf;
}

/* The message is on top of the stack: make it nil, message, code. */
static int pushfail(lua_State *L, const char *code)
{
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushstring(L, code);
    return 3;
}

int tp_fail(lua_State *L, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return pushfail(L, code);
}

int tp_fail_mbedtls(lua_State *L, int err, const char *code,
                    const char *fmt, ...)
{
    char text[160];
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    tp_strerror(err, text, sizeof text);
    lua_pushfstring(L, ": %s", text);
    lua_concat(L, 2);
    return pushfail(L, code);
}

/* ----------------------------------------------------------- arguments */

lua_Integer tp_checkrange(lua_State *L, int arg, lua_Integer lo,
                          lua_Integer hi)
{
    lua_Integer v = tp_checkinteger(L, arg);
    if (v < lo || v > hi) {
        char msg[96];
        snprintf(msg, sizeof msg, "value %lld out of range (%lld..%lld)",
                 (long long)v, (long long)lo, (long long)hi);
        luaL_argerror(L, arg, msg);
    }
    return v;
}

const char *tp_checkfrom(lua_State *L, int arg, size_t *len)
{
    size_t n;
    const char *s = luaL_checklstring(L, arg, &n);
    lua_Integer from = tp_optrange(L, arg + 1, 1, 1, (lua_Integer)n + 1);
    *len = n - (size_t)(from - 1);
    return s + (from - 1);
}

lua_Integer tp_optrange(lua_State *L, int arg, lua_Integer def,
                        lua_Integer lo, lua_Integer hi)
{
    if (lua_isnoneornil(L, arg))
        return def;
    return tp_checkrange(L, arg, lo, hi);
}

int tp_optboolean(lua_State *L, int arg, int def)
{
    if (lua_isnoneornil(L, arg))
        return def;
    luaL_checktype(L, arg, LUA_TBOOLEAN);
    return lua_toboolean(L, arg);
}

void tp_checkoptnames(lua_State *L, int idx, const char *const known[],
                      const char *fname)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx))
        return;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int i, ok = 0;
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING)
            for (i = 0; known[i] != NULL && !ok; i++)
                ok = strcmp(lua_tostring(L, -1), known[i]) == 0;
        if (!ok) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (i = 0; known[i] != NULL; i++) {
                if (i > 0)
                    luaL_addstring(&b, ", ");
                luaL_addstring(&b, known[i]);
            }
            luaL_pushresult(&b);
            luaL_error(L, "unknown option '%s' to '%s' (known: %s)",
                       lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                      : luaL_typename(L, -2),
                       fname, lua_tostring(L, -1));
        }
    }
}

mbedtls_md_type_t tp_checkhash(lua_State *L, int arg)
{
    switch (tp_checkinteger(L, arg)) {
    case TP_HASH_MD5:    return MBEDTLS_MD_MD5;
    case TP_HASH_SHA1:   return MBEDTLS_MD_SHA1;
    case TP_HASH_SHA256: return MBEDTLS_MD_SHA256;
    case TP_HASH_SHA512: return MBEDTLS_MD_SHA512;
    default:
        luaL_argerror(L, arg, "unknown hash type (expected HASH_MD5, "
                      "HASH_SHA1, HASH_SHA256 or HASH_SHA512)");
        return MBEDTLS_MD_NONE;
    }
}

/* ------------------------------------------------------------- random */

/* One generator per Lua state, kept in the registry under &rng_key. */
static const char rng_key = 'r';

typedef struct tp_rngbox {
    int ready;
    pid_t pid;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
} tp_rngbox;

static int rng_gc(lua_State *L)
{
    tp_rngbox *b = lua_touserdata(L, 1);
    if (b->ready) {
        mbedtls_ctr_drbg_free(&b->drbg);
        mbedtls_entropy_free(&b->entropy);
        b->ready = 0;
    }
    return 0;
}

int tp_rng_open(lua_State *L)
{
    static const char pers[] = "tlspeer";
    tp_rngbox *b = lua_newuserdatauv(L, sizeof *b, 0);
    int err;
    memset(b, 0, sizeof *b);
    lua_newtable(L);
    lua_pushcfunction(L, rng_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    mbedtls_entropy_init(&b->entropy);
    mbedtls_ctr_drbg_init(&b->drbg);
    b->ready = 1;
    err = mbedtls_ctr_drbg_seed(&b->drbg, mbedtls_entropy_func, &b->entropy,
                                (const unsigned char *)pers, sizeof pers - 1);
    if (err != 0) {
        lua_pop(L, 1);
        return tp_fail_mbedtls(L, err, "ERR_UNAVAILABLE",
                               "cannot seed the random generator from the "
                               "operating system's entropy source");
    }
    b->pid = (pid_t)tp_pid();
    lua_rawsetp(L, LUA_REGISTRYINDEX, &rng_key);
    return 0;
}

void *tp_rng(lua_State *L)
{
    void *b;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &rng_key);
    b = lua_touserdata(L, -1);
    lua_pop(L, 1);                   /* the registry keeps it alive */
    if (b == NULL)
        luaL_error(L, "tlspeer: random generator not initialised");
    return b;
}

/* The process id, cached in a page the kernel zeroes in a child made by
 * any fork (MADV_WIPEONFORK, Linux 4.14): a zero there means "ask again".
 * Every random draw and every worker job checks it, so the saved system
 * call counts.  Elsewhere (or if the page cannot be had) it is getpid(). */
static long *pid_page;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_page_init(void)
{
#ifdef MADV_WIPEONFORK
    long psz = sysconf(_SC_PAGESIZE);
    size_t size = psz > 0 ? (size_t)psz : 4096;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    if (madvise(p, size, MADV_WIPEONFORK) != 0) {
        munmap(p, size);
        return;
    }
    pid_page = p;
#endif
}

long tp_pid(void)
{
    long pid;
    (void)pthread_once(&pid_once, pid_page_init);
    if (pid_page == NULL)
        return (long)getpid();
    pid = __atomic_load_n(pid_page, __ATOMIC_ACQUIRE);
    if (pid == 0) {
        pid = (long)getpid();
        __atomic_store_n(pid_page, pid, __ATOMIC_RELEASE);
    }
    return pid;
}

/* Every draw checks the process id itself: mbedtls keeps this callback and
 * its context (TLS configurations, ticket keys) across fork(), so a child
 * of a pre-fork server must notice on its own.  It reseeds from the OS,
 * with its pid as additional input, and never replays its parent's
 * stream (ServerHello randoms, ECDHE keys, ticket IVs). */
int tp_rng_random(void *ctx, unsigned char *out, size_t len)
{
    tp_rngbox *b = ctx;
    pid_t pid = (pid_t)tp_pid();
    /* Handshake steps on worker threads draw too (the DRBG has its own
     * lock): the pid is read and set atomically, and two first draws in a
     * child both reseeding does no harm. */
    if (__atomic_load_n(&b->pid, __ATOMIC_ACQUIRE) != pid) {
        int err = mbedtls_ctr_drbg_reseed(&b->drbg,
                                          (const unsigned char *)&pid,
                                          sizeof pid);
        if (err != 0)
            return err;
        __atomic_store_n(&b->pid, pid, __ATOMIC_RELEASE);
    }
    return mbedtls_ctr_drbg_random(&b->drbg, out, len);
}

/* ------------------------------------------------------------- memory */

unsigned char *tp_scratch(lua_State *L, size_t size)
{
    return lua_newuserdatauv(L, size ? size : 1, 0);
}

void tp_pushhex(lua_State *L, const unsigned char *p, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char out[256];
    luaL_Buffer b;
    size_t i, n = 0;
    luaL_buffinit(L, &b);
    for (i = 0; i < len; i++) {
        out[n++] = digits[p[i] >> 4];
        out[n++] = digits[p[i] & 15];
        if (n == sizeof out) {
            luaL_addlstring(&b, out, n);
            n = 0;
        }
    }
    luaL_addlstring(&b, out, n);
    luaL_pushresult(&b);
}

const char *tp_pushprintable(lua_State *L, const char *s, size_t len,
                             size_t max)
{
    luaL_Buffer b;
    size_t i;
    luaL_buffinit(L, &b);
    for (i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            luaL_addchar(&b, (char)c);
        else {
            char esc[5];
            snprintf(esc, sizeof esc, "\\x%02x", c);
            luaL_addstring(&b, esc);
        }
    }
    if (len > max)
        luaL_addstring(&b, "...");
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* ------------------------------------------------------------ buffers */

int tp_buf_reserve(tp_buf *b, size_t extra)
{
    size_t need, cap;
    unsigned char *p;
    if (extra > SIZE_MAX - b->len)
        return -1;
    need = b->len + extra;
    if (need <= b->cap) {
        if (b->off + need > b->cap) {
            memmove(b->p, b->p + b->off, b->len);   /* room at the front */
            b->off = 0;
        }
        return 0;
    }
    cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    /* Not realloc(): the old block is zeroed before it goes back. */
    p = malloc(cap);
    if (p == NULL)
        return -1;
    if (b->p != NULL) {
        memcpy(p, b->p + b->off, b->len);
        mbedtls_platform_zeroize(b->p, b->hi);
        free(b->p);
    }
    b->p = p;
    b->off = 0;
    b->hi = b->len;
    b->cap = cap;
    return 0;
}

void tp_buf_consume(tp_buf *b, size_t n)
{
    if (n >= b->len) {
        b->off = b->len = 0;
        return;
    }
    b->off += n;
    b->len -= n;
}

void tp_buf_free(tp_buf *b)
{
    if (b->p != NULL) {
        mbedtls_platform_zeroize(b->p, b->hi);     /* what ever held data */
        free(b->p);
    }
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------ waiting */

double tp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int tp_wait_fd(int fd, short events, double deadline)
{
    struct pollfd pfd;
    for (;;) {
        int ms = -1, r;
        if (deadline >= 0) {
            double left = deadline - tp_now();
            if (left <= 0)
                left = 0;
            ms = (int)(left * 1000.0 + 0.999);
        }
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        r = poll(&pfd, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 && deadline >= 0 && tp_now() < deadline)
            continue;                 /* woke early: wait out the rest */
        return r;
    }
}

/* -------------------------------------------------------------- files */

int tp_readfile(lua_State *L, const char *path, size_t max,
                unsigned char **data, size_t *len)
{
    struct stat st = {0};
    unsigned char *buf;
    size_t size, got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return tp_fail(L, e == ENOENT || e == ENOTDIR ? "ERR_FILE_NOT_FOUND"
                                                       : "ERR_FILE_CANT_OPEN",
                       "cannot open '%s': %s", path, strerror(e));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int isdir = S_ISDIR(st.st_mode);
        close(fd);
        return tp_fail(L, "ERR_FILE_CANT_OPEN", "cannot read '%s': %s", path,
                       isdir ? "it is a directory" : "not a regular file");
    }
    if ((unsigned long long)st.st_size > max) {
        close(fd);
        return tp_fail(L, "ERR_FILE_CORRUPT",
                       "'%s' is too large (%lld bytes, at most %lu)", path,
                       (long long)st.st_size, (unsigned long)max);
    }
    size = (size_t)st.st_size;
    buf = tp_scratch(L, size + 1);
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            mbedtls_platform_zeroize(buf, size + 1);
            lua_pop(L, 1);
            return tp_fail(L, "ERR_FILE_CANT_OPEN", "cannot read '%s': %s",
                           path, strerror(e));
        }
        if (n == 0)
            break;                   /* the file shrank: take what is there */
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return 0;
}

int tp_writefile(lua_State *L, const char *path, const void *data,
                 size_t len, unsigned int mode)
{
    luaL_Buffer tb;
    const char *tmp;
    const unsigned char *p = data;
    int fd, e;

    luaL_buffinit(L, &tb);
    luaL_addstring(&tb, path);
    luaL_addstring(&tb, ".tmpXXXXXX");
    luaL_pushresult(&tb);
    tmp = lua_tostring(L, -1);
    /* mkstemp needs a writable copy: the scratch box holds it. */
    {
        size_t n = strlen(tmp);
        char *name = (char *)tp_scratch(L, n + 1);
        memcpy(name, tmp, n + 1);
        lua_remove(L, -2);
        tmp = name;
    }
    fd = mkstemp((char *)tmp);       /* created 0600 */
    if (fd < 0) {
        e = errno;
        lua_pop(L, 1);
        return tp_fail(L, "ERR_FILE_CANT_WRITE", "cannot write '%s': %s",
                       path, strerror(e));
    }
    if (fchmod(fd, mode) != 0)
        goto fail;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0 && errno != EINVAL)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    lua_pop(L, 1);
    return 0;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    lua_pop(L, 1);
    return tp_fail(L, "ERR_FILE_CANT_WRITE", "cannot write '%s': %s", path,
                   strerror(e));
}

/* ------------------------------------------------------------- compat */

#if !TP_MBEDTLS3
int tp_x509write_crt_set_serial_raw(mbedtls_x509write_cert *crt,
                                    unsigned char *buf, size_t len)
{
    mbedtls_mpi serial;
    int err;
    mbedtls_mpi_init(&serial);
    err = mbedtls_mpi_read_binary(&serial, buf, len);
    if (err == 0)
        err = mbedtls_x509write_crt_set_serial(crt, &serial);
    mbedtls_mpi_free(&serial);
    return err;
}
#endif

#include <mbedtls/pkcs5.h>
#if TP_MBEDTLS3
int tp_pkcs5_pbkdf2_sha(mbedtls_md_type_t md, const unsigned char *pw,
                        size_t pwlen, const unsigned char *salt,
                        size_t saltlen, unsigned int iterations,
                        unsigned char *out, size_t outlen)
{
    return mbedtls_pkcs5_pbkdf2_hmac_ext(md, pw, pwlen, salt, saltlen,
                                         iterations, (uint32_t)outlen, out);
}
#else
int tp_pkcs5_pbkdf2_sha(mbedtls_md_type_t md, const unsigned char *pw,
                        size_t pwlen, const unsigned char *salt,
                        size_t saltlen, unsigned int iterations,
                        unsigned char *out, size_t outlen)
{
    mbedtls_md_context_t ctx;
    int err;
    mbedtls_md_init(&ctx);
    err = mbedtls_md_setup(&ctx, mbedtls_md_info_from_type(md), 1);
    if (err == 0)
        err = mbedtls_pkcs5_pbkdf2_hmac(&ctx, pw, pwlen, salt, saltlen,
                                        iterations, (uint32_t)outlen, out);
    mbedtls_md_free(&ctx);
    return err;
}
#endif

#if TP_MBEDTLS3 && defined(MBEDTLS_PSA_CRYPTO_C)
#include <psa/crypto.h>
int tp_mbedtls_global_init(void)
{
    return psa_crypto_init() == PSA_SUCCESS ? 0 : -1;
}
#else
int tp_mbedtls_global_init(void)
{
    return 0;
}
#endif
