/*
 * bench/engine.c - mbedtls alone, for counting instructions: a client and a
 * server in one process, joined by two in-memory queues (no sockets, no
 * kernel), so that `valgrind --tool=callgrind` sees only mbedtls' work and
 * the same run gives the same count.  Used to choose tlspeer's mbedtls
 * configuration (scripts/mbedtls-tlspeer.cfg; bench/candidates.sh) and by
 * `make bench` beside the wall-clock rows.  Built against 2.28 or 3.6.
 *
 *   engine hs CERT VERSION GROUPS N     N full handshakes, then a 1-byte echo
 *   engine bulk SUITE BYTES             one handshake, BYTES each way
 *   engine mem CERT VERSION N           N idle connections, heap per side
 *   engine version                      which mbedtls this is (print_identity)
 *
 * CERT is ec or rsa (the server's certificate from $BENCH_CERTS: ec.crt/key,
 * rsa.crt/key, ca.crt, as bench/gencerts.lua makes them); VERSION 1.2 or
 * 1.3; GROUPS the key exchange groups in order, e.g. x25519,secp256r1;
 * SUITE an IANA suite name (TLS 1.3 suites make a TLS 1.3 connection).
 *
 * Each phase of the work is one function of its own, never inlined:
 * server_handshake, client_handshake, seal (the sender's mbedtls_ssl_write),
 * open (the receiver's mbedtls_ssl_read).  Under callgrind their inclusive
 * counts are the instructions of that phase (bench/callgrind.sh reads them);
 * run natively, the driver prints the wall-clock time of the same phases:
 *
 *   RESULT <phase>_ns <nanoseconds per handshake, or per byte>
 *
 * The random generator is seeded from the operating system, as in real use:
 * handshake counts vary by up to about 1 % from run to run (the blinding of
 * the public-key arithmetic, and the length of random numbers); bulk counts
 * do not vary.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/version.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#include <mbedtls/build_info.h>
#include <psa/crypto.h>
#define MBED3 1
#else
#include <mbedtls/config.h>
#define MBED3 0
#endif
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
#define ERR_TICKET MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
#else
#define ERR_TICKET (-0x7FFF0000)
#endif

/* Never inlined, cloned or folded into another (GCC merges functions with
 * the same code, as the two handshake steps are): callgrind must see each. */
#if defined(__GNUC__) && !defined(__clang__)
#define NOINLINE __attribute__((noipa))
#else
#define NOINLINE __attribute__((noinline))
#endif

/* Under callgrind, what comes before the measured work (loading the
 * certificates, a first handshake) is not counted. */
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_ZERO_STATS
#define CALLGRIND_ZERO_STATS
#endif

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_ssl_config sconf, cconf;
static mbedtls_x509_crt ca, own;
static mbedtls_pk_context own_key;
static mbedtls_ssl_ticket_context ticket;
static int suites[2];

static void die(const char *what, int err)
{
    char buf[200] = "";
    mbedtls_strerror(err, buf, sizeof buf);
    fprintf(stderr, "engine: %s: -0x%04x %s\n", what, (unsigned)-err, buf);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ------------------------------------------------------------- the pipe */

/* One direction of the connection: a growing byte queue. */
typedef struct queue {
    unsigned char *p;
    size_t off, len, cap;
} queue;

typedef struct end {
    queue *in, *out;
} end;

static int q_send(void *ctx, const unsigned char *buf, size_t len)
{
    queue *q = ((end *)ctx)->out;
    if (q->off > 0 && q->off == q->len)
        q->off = q->len = 0;
    if (q->len + len > q->cap) {
        size_t cap = q->cap ? q->cap : 65536;
        while (cap < q->len + len)
            cap *= 2;
        q->p = realloc(q->p, cap);
        if (q->p == NULL)
            die("out of memory", 0);
        q->cap = cap;
    }
    memcpy(q->p + q->len, buf, len);
    q->len += len;
    return (int)len;
}

static int q_recv(void *ctx, unsigned char *buf, size_t len)
{
    queue *q = ((end *)ctx)->in;
    size_t n = q->len - q->off;
    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (n > len)
        n = len;
    memcpy(buf, q->p + q->off, n);
    q->off += n;
    return (int)n;
}

typedef struct conn {
    queue c2s, s2c;
    end cend, send;
    mbedtls_ssl_context cli, srv;
} conn;

static void conn_init(conn *c)
{
    int err;
    memset(c, 0, sizeof *c);
    c->cend.in = &c->s2c;
    c->cend.out = &c->c2s;
    c->send.in = &c->c2s;
    c->send.out = &c->s2c;
    mbedtls_ssl_init(&c->cli);
    mbedtls_ssl_init(&c->srv);
    if ((err = mbedtls_ssl_setup(&c->cli, &cconf)) != 0)
        die("client setup", err);
    if ((err = mbedtls_ssl_setup(&c->srv, &sconf)) != 0)
        die("server setup", err);
    mbedtls_ssl_set_hostname(&c->cli, "localhost");
    mbedtls_ssl_set_bio(&c->cli, &c->cend, q_send, q_recv, NULL);
    mbedtls_ssl_set_bio(&c->srv, &c->send, q_send, q_recv, NULL);
}

static void conn_free_client(conn *c)
{
    mbedtls_ssl_free(&c->cli);
}

static void conn_free_server(conn *c)
{
    mbedtls_ssl_free(&c->srv);
}

static void conn_free_queues(conn *c)
{
    free(c->c2s.p);
    free(c->s2c.p);
    c->c2s.p = c->s2c.p = NULL;
}

/* ------------------------------------------------------------- the phases */

/* One step of each side's handshake: what mbedtls does with what it has. */
NOINLINE static int server_handshake(mbedtls_ssl_context *ssl)
{
    return mbedtls_ssl_handshake(ssl);
}

NOINLINE static int client_handshake(mbedtls_ssl_context *ssl)
{
    return mbedtls_ssl_handshake(ssl);
}

NOINLINE static int seal(mbedtls_ssl_context *ssl, const unsigned char *buf, size_t len)
{
    return mbedtls_ssl_write(ssl, buf, len);
}

NOINLINE static int open_(mbedtls_ssl_context *ssl, unsigned char *buf, size_t len)
{
    return mbedtls_ssl_read(ssl, buf, len);
}

static double t_server, t_client, t_seal, t_open;

static void handshake(conn *c)
{
    int rc = MBEDTLS_ERR_SSL_WANT_READ, rs = MBEDTLS_ERR_SSL_WANT_READ, rounds = 0;
    double t;
    while (rc != 0 || rs != 0) {
        if (rc != 0) {
            t = now();
            rc = client_handshake(&c->cli);
            t_client += now() - t;
            if (rc != 0 && rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE)
                die("client handshake", rc);
        }
        if (rs != 0) {
            t = now();
            rs = server_handshake(&c->srv);
            t_server += now() - t;
            if (rs != 0 && rs != MBEDTLS_ERR_SSL_WANT_READ && rs != MBEDTLS_ERR_SSL_WANT_WRITE)
                die("server handshake", rs);
        }
        if (++rounds > 100)
            die("handshake does not progress", 0);
    }
}

/* All of `len` from one side to the other, in writes of at most 16 KiB
 * (a TLS record's worth), read back in reads of up to 16 KiB. */
static void transfer(mbedtls_ssl_context *from, mbedtls_ssl_context *to,
                     size_t len, unsigned char *buf)
{
    size_t sent = 0, got = 0;
    double t;
    while (got < len) {
        while (sent < len) {
            size_t k = len - sent > 16384 ? 16384 : len - sent;
            int r;
            t = now();
            r = seal(from, buf, k);
            t_seal += now() - t;
            if (r <= 0)
                die("write", r);
            sent += (size_t)r;
            if (sent - got >= 65536)
                break;            /* keep the queue short: read some */
        }
        while (got < sent) {
            int r;
            t = now();
            r = open_(to, buf, 16384);
            t_open += now() - t;
            if (r == MBEDTLS_ERR_SSL_WANT_READ || r == ERR_TICKET)
                break;
            if (r <= 0)
                die("read", r);
            got += (size_t)r;
        }
    }
}

/* ------------------------------------------------------------- set-up */

static int suite_id(const char *iana)
{
    char name[128];
    size_t i;
    if (strncmp(iana, "TLS_AES_", 8) == 0 || strncmp(iana, "TLS_CHACHA20_", 13) == 0)
        snprintf(name, sizeof name, "TLS1-3-%s", iana + 4);
    else
        snprintf(name, sizeof name, "%s", iana);
    for (i = 0; name[i]; i++)
        if (name[i] == '_')
            name[i] = '-';
    return mbedtls_ssl_get_ciphersuite_id(name);
}

static const char *cert_path(const char *name)
{
    static char buf[4][512];
    static int i;
    const char *dir = getenv("BENCH_CERTS");
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir ? dir : ".", name);
    return buf[i];
}

#if MBED3
static uint16_t groups[8];
#else
static mbedtls_ecp_group_id groups[8];
#endif

static void parse_groups(const char *list)
{
    char tmp[128], *tok, *save = NULL;
    int n = 0;
    snprintf(tmp, sizeof tmp, "%s", list);
    for (tok = strtok_r(tmp, ",", &save); tok && n < 7; tok = strtok_r(NULL, ",", &save)) {
#if MBED3
        if (strcmp(tok, "x25519") == 0) groups[n++] = MBEDTLS_SSL_IANA_TLS_GROUP_X25519;
        else if (strcmp(tok, "secp256r1") == 0) groups[n++] = MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1;
        else if (strcmp(tok, "secp384r1") == 0) groups[n++] = MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1;
        else if (strcmp(tok, "secp521r1") == 0) groups[n++] = MBEDTLS_SSL_IANA_TLS_GROUP_SECP521R1;
#else
        if (strcmp(tok, "x25519") == 0) groups[n++] = MBEDTLS_ECP_DP_CURVE25519;
        else if (strcmp(tok, "secp256r1") == 0) groups[n++] = MBEDTLS_ECP_DP_SECP256R1;
        else if (strcmp(tok, "secp384r1") == 0) groups[n++] = MBEDTLS_ECP_DP_SECP384R1;
        else if (strcmp(tok, "secp521r1") == 0) groups[n++] = MBEDTLS_ECP_DP_SECP521R1;
#endif
        else {
            fprintf(stderr, "engine: unknown group %s\n", tok);
            exit(2);
        }
    }
#if MBED3
    groups[n] = MBEDTLS_SSL_IANA_TLS_GROUP_NONE;
#else
    groups[n] = MBEDTLS_ECP_DP_NONE;
#endif
}

/* Both sides as tlspeer configures them (src/options.c, src/compat.h):
 * the client verifies the server, AES-256-GCM session tickets, one version,
 * the given groups on both sides, renegotiation off. */
static void setup(const char *cert, int tls13, const char *suite)
{
    mbedtls_ssl_config *confs[2] = { &sconf, &cconf };
    char crt[16], key[16];
    int err, i;

#if MBED3
    psa_crypto_init();
#endif
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    err = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                (const unsigned char *)"engine", 6);
    if (err)
        die("drbg", err);

    mbedtls_x509_crt_init(&ca);
    if ((err = mbedtls_x509_crt_parse_file(&ca, cert_path("ca.crt"))) != 0)
        die("ca.crt", err);
    snprintf(crt, sizeof crt, "%s.crt", cert);
    snprintf(key, sizeof key, "%s.key", cert);
    mbedtls_x509_crt_init(&own);
    mbedtls_pk_init(&own_key);
    if ((err = mbedtls_x509_crt_parse_file(&own, cert_path(crt))) != 0)
        die(crt, err);
#if MBED3
    err = mbedtls_pk_parse_keyfile(&own_key, cert_path(key), NULL,
                                   mbedtls_ctr_drbg_random, &drbg);
#else
    err = mbedtls_pk_parse_keyfile(&own_key, cert_path(key), NULL);
#endif
    if (err)
        die(key, err);

    for (i = 0; i < 2; i++) {
        mbedtls_ssl_config *conf = confs[i];
        mbedtls_ssl_config_init(conf);
        err = mbedtls_ssl_config_defaults(conf, i == 0 ? MBEDTLS_SSL_IS_SERVER
                                                       : MBEDTLS_SSL_IS_CLIENT,
                                          MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
        if (err)
            die("config", err);
        mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, &drbg);
        if (suite != NULL)
            mbedtls_ssl_conf_ciphersuites(conf, suites);
#if MBED3
        mbedtls_ssl_conf_groups(conf, groups);
        if (tls13) {
            mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_3);
        } else {
            mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
            mbedtls_ssl_conf_max_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
        }
#ifdef MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED
        mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
            conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
#else
        (void)tls13;
        mbedtls_ssl_conf_curves(conf, groups);
        mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_3);
#endif
#if defined(MBEDTLS_SSL_RENEGOTIATION)
        mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    }
    if ((err = mbedtls_ssl_conf_own_cert(&sconf, &own, &own_key)) != 0)
        die("own cert", err);
    mbedtls_ssl_conf_authmode(&sconf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_ca_chain(&cconf, &ca, NULL);
    mbedtls_ssl_conf_authmode(&cconf, MBEDTLS_SSL_VERIFY_REQUIRED);
    /* The server issues tickets (as tlspeer's does by default); the client
     * takes none (as the benchmark's tlspeer client: nothing is resumed). */
    mbedtls_ssl_ticket_init(&ticket);
    err = mbedtls_ssl_ticket_setup(&ticket, mbedtls_ctr_drbg_random, &drbg,
                                   MBEDTLS_CIPHER_AES_256_GCM, 86400);
    if (err)
        die("tickets", err);
    mbedtls_ssl_conf_session_tickets_cb(&sconf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &ticket);
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
    mbedtls_ssl_conf_session_tickets(&cconf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
#endif
}

/* A 1-byte echo: both handshakes are over, TLS 1.3 tickets are read. */
static void echo(conn *c, unsigned char *buf)
{
    buf[0] = 'e';
    transfer(&c->cli, &c->srv, 1, buf);
    transfer(&c->srv, &c->cli, 1, buf);
}

/* What bench/run.sh checks before it measures a section: mbedtls' version,
 * the tlspeer-mbedtls-build marker scripts/mbedtls3.sh puts into the mbedtls
 * it builds (found in this program's own file; none in Debian's libraries)
 * and the shared mbedtls library mapped, if any:
 *   mbedtls_version V / marker M|none / library PATH|static */
static void print_identity(void)
{
    static char buf[1 << 16];
    char v[32], tag[32], line[512], marker[512] = "none", library[512] = "static";
    size_t n, keep = 0, taglen;
    FILE *f;

    mbedtls_version_get_string(v);
    /* Made at run time, so that this file's own copy is not what is found. */
    snprintf(tag, sizeof tag, "%s-%s: ", "tlspeer-mbedtls", "build");
    taglen = strlen(tag);
    if ((f = fopen("/proc/self/exe", "rb")) != NULL) {
        while ((n = fread(buf + keep, 1, sizeof buf - 1 - keep, f)) > 0) {
            size_t len = keep + n;
            char *p;
            buf[len] = 0;
            p = memmem(buf, len, tag, taglen);
            if (p != NULL && memchr(p, 0, len - (size_t)(p - buf)) != NULL) {
                snprintf(marker, sizeof marker, "%s", p + taglen);
                break;
            }
            keep = len > 1024 ? 1024 : len;    /* a marker across two reads */
            memmove(buf, buf + len - keep, keep);
        }
        fclose(f);
    }
    if ((f = fopen("/proc/self/maps", "r")) != NULL) {
        while (fgets(line, sizeof line, f) != NULL) {
            char *path = strchr(line, '/');
            if (path != NULL && strstr(path, "/libmbedtls.so") != NULL) {
                path[strcspn(path, "\n")] = 0;
                snprintf(library, sizeof library, "%s", path);
            }
        }
        fclose(f);
    }
    printf("mbedtls_version %s\nmarker %s\nlibrary %s\n", v, marker, library);
}

int main(int argc, char **argv)
{
    static unsigned char buf[16384];
    const char *mode = argc > 1 ? argv[1] : "";
    memset(buf, 'x', sizeof buf);

    if (strcmp(mode, "hs") == 0 && argc == 6) {
        long n = atol(argv[5]), i;
        parse_groups(argv[4]);
        setup(argv[2], strcmp(argv[3], "1.3") == 0, NULL);
        for (i = -1; i < n; i++) {      /* the first one is not counted */
            conn c;
            if (i == 0) {
                t_server = t_client = 0;
                CALLGRIND_ZERO_STATS;
            }
            conn_init(&c);
            handshake(&c);
            echo(&c, buf);
            conn_free_client(&c);
            conn_free_server(&c);
            conn_free_queues(&c);
        }
        printf("RESULT server_handshake_ns %.0f\n", t_server / (double)n);
        printf("RESULT client_handshake_ns %.0f\n", t_client / (double)n);
    } else if (strcmp(mode, "bulk") == 0 && argc == 4) {
        size_t bytes = (size_t)atol(argv[3]);
        conn c;
        int tls13 = strncmp(argv[2], "TLS_AES_", 8) == 0 ||
                    strncmp(argv[2], "TLS_CHACHA20_", 13) == 0;
        suites[0] = suite_id(argv[2]);
        if (suites[0] == 0) {
            fprintf(stderr, "engine: unknown suite %s\n", argv[2]);
            return 2;
        }
        parse_groups("x25519,secp256r1");
        setup("ec", tls13, argv[2]);
        conn_init(&c);
        handshake(&c);
        echo(&c, buf);
        t_seal = t_open = 0;
        CALLGRIND_ZERO_STATS;
        transfer(&c.cli, &c.srv, bytes, buf);
        transfer(&c.srv, &c.cli, bytes, buf);
        printf("RESULT seal_ns_per_byte %.3f\n", t_seal / (double)bytes / 2);
        printf("RESULT open_ns_per_byte %.3f\n", t_open / (double)bytes / 2);
    } else if (strcmp(mode, "mem") == 0 && argc == 5) {
        long n = atol(argv[4]), i;
        conn *cs = calloc((size_t)n, sizeof *cs);
        struct mallinfo2 m0, m1, m2;
        parse_groups("x25519,secp256r1");
        setup(argv[2], strcmp(argv[3], "1.3") == 0, NULL);
        m0 = mallinfo2();
        for (i = 0; i < n; i++) {
            conn_init(&cs[i]);
            handshake(&cs[i]);
            echo(&cs[i], buf);
            conn_free_queues(&cs[i]);
        }
        m1 = mallinfo2();
        for (i = 0; i < n; i++)
            conn_free_client(&cs[i]);
        m2 = mallinfo2();
        /* The contexts themselves are in cs[] (calloc'd before m0): add
         * sizeof(mbedtls_ssl_context) to each side. */
        printf("RESULT client_heap_per_conn %.1f\n",
               (double)(m1.uordblks - m2.uordblks) / (double)n +
               (double)sizeof(mbedtls_ssl_context));
        printf("RESULT server_heap_per_conn %.1f\n",
               (double)(m2.uordblks - m0.uordblks) / (double)n +
               (double)sizeof(mbedtls_ssl_context));
        for (i = 0; i < n; i++)
            conn_free_server(&cs[i]);
        free(cs);
    } else if (strcmp(mode, "version") == 0) {
        print_identity();
    } else {
        fprintf(stderr, "usage: engine hs ec|rsa 1.2|1.3 GROUPS N | bulk SUITE BYTES | "
                        "mem ec|rsa 1.2|1.3 N | version\n");
        return 2;
    }
    return 0;
}
