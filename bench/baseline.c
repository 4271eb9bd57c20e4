/*
 * bench/baseline.c - the C baseline of the benchmark: the same work as
 * bench/tlspeer_bench.lua, calling mbedtls directly (the limit for this
 * engine).  Built against the same mbedtls as tlspeer (2.28 or 3.6) and
 * configured as tlspeer configures it: verification of the server by the
 * client, session tickets sealed with AES-256-GCM, TCP_NODELAY.
 *
 *   baseline server TEST CERT SUITE N SIZE      prints "PORT p", then results
 *   baseline client PORT TEST CERT SUITE N SIZE prints results
 *   baseline crypto rsa|ec|sha256 N SIZE
 *   baseline version                            which mbedtls this is
 *
 * Results are lines "RESULT key value".  Certificates come from the
 * directory in $BENCH_CERTS (ca.crt, ec.crt/key, rsa.crt/key).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/version.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#include <mbedtls/build_info.h>
#include <psa/crypto.h>
#else
#include <mbedtls/config.h>
#endif
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define MBED3 1
#define ERR_TICKET MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
#else
#define MBED3 0
#define ERR_TICKET (-0x7FFF0000)
#endif

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_ssl_config conf;
static mbedtls_x509_crt ca, own;
static mbedtls_pk_context own_key;
static mbedtls_ssl_ticket_context ticket;
static int suites[2];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_bytes(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}

static void die(const char *what, int err)
{
    char buf[200] = "";
    mbedtls_strerror(err, buf, sizeof buf);
    fprintf(stderr, "baseline: %s: -0x%04x %s\n", what, (unsigned)-err, buf);
    exit(1);
}

static void seed(void)
{
    int err;
#if MBED3
    psa_crypto_init();
#endif
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    err = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                (const unsigned char *)"bench", 5);
    if (err)
        die("drbg", err);
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

/* IANA name -> mbedtls id: TLS_ECDHE_..._SHA256 is TLS-ECDHE-...-SHA256,
 * TLS_AES_128_GCM_SHA256 (TLS 1.3) is TLS1-3-AES-128-GCM-SHA256. */
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

static void set_groups(mbedtls_ssl_config *c, const char *list)
{
#if MBED3
    static uint16_t groups[8];
#else
    static mbedtls_ecp_group_id groups[8];
#endif
    static const struct { const char *name; int iana, ecp; } known[] = {
        { "x25519", 0x1d, MBEDTLS_ECP_DP_CURVE25519 },
        { "secp256r1", 0x17, MBEDTLS_ECP_DP_SECP256R1 },
        { "secp384r1", 0x18, MBEDTLS_ECP_DP_SECP384R1 },
        { "secp521r1", 0x19, MBEDTLS_ECP_DP_SECP521R1 },
    };
    char tmp[128], *tok, *save = NULL;
    int n = 0;
    size_t k;
    snprintf(tmp, sizeof tmp, "%s", list);
    for (tok = strtok_r(tmp, ",", &save); tok != NULL && n < 7;
         tok = strtok_r(NULL, ",", &save)) {
        for (k = 0; k < sizeof known / sizeof known[0]; k++)
            if (strcmp(tok, known[k].name) == 0)
                break;
        if (k == sizeof known / sizeof known[0]) {
            fprintf(stderr, "baseline: unknown group %s\n", tok);
            exit(2);
        }
#if MBED3
        groups[n++] = (uint16_t)known[k].iana;
#else
        groups[n++] = (mbedtls_ecp_group_id)known[k].ecp;
#endif
    }
#if MBED3
    groups[n] = MBEDTLS_SSL_IANA_TLS_GROUP_NONE;
    mbedtls_ssl_conf_groups(c, groups);
#else
    groups[n] = MBEDTLS_ECP_DP_NONE;
    mbedtls_ssl_conf_curves(c, groups);
#endif
}

static void setup_conf(int server, const char *cert, const char *suite)
{
    int err;
    char crt[16], key[16];
    mbedtls_ssl_config_init(&conf);
    err = mbedtls_ssl_config_defaults(&conf, server ? MBEDTLS_SSL_IS_SERVER
                                                    : MBEDTLS_SSL_IS_CLIENT,
                                      MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (err)
        die("config", err);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    suites[0] = suite_id(suite);
    suites[1] = 0;
    if (suites[0] == 0) {
        fprintf(stderr, "baseline: unknown suite %s\n", suite);
        exit(1);
    }
    mbedtls_ssl_conf_ciphersuites(&conf, suites);
    /* The key exchange groups tlspeer offers, in its order: $BENCH_GROUPS
     * (bench/run.lua reads them off a tlspeer ClientHello), else
     * src/compat.h's X25519, P-256, P-384, P-521. */
    set_groups(&conf, getenv("BENCH_GROUPS") ? getenv("BENCH_GROUPS")
                                             : "x25519,secp256r1,secp384r1,secp521r1");
#if MBED3
    {
        const mbedtls_ssl_ciphersuite_t *cs =
            mbedtls_ssl_ciphersuite_from_id(suites[0]);
        if (cs && cs->MBEDTLS_PRIVATE(max_tls_version) < MBEDTLS_SSL_VERSION_TLS1_3)
            mbedtls_ssl_conf_max_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_2);
        else
            mbedtls_ssl_conf_min_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_3);
    }
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        &conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#else
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
#endif
#if defined(MBEDTLS_SSL_RENEGOTIATION)
    mbedtls_ssl_conf_renegotiation(&conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    mbedtls_x509_crt_init(&ca);
    if ((err = mbedtls_x509_crt_parse_file(&ca, cert_path("ca.crt"))) != 0)
        die("ca.crt", err);
    if (server) {
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
        if ((err = mbedtls_ssl_conf_own_cert(&conf, &own, &own_key)) != 0)
            die("own cert", err);
        mbedtls_ssl_ticket_init(&ticket);
        err = mbedtls_ssl_ticket_setup(&ticket, mbedtls_ctr_drbg_random, &drbg,
                                       MBEDTLS_CIPHER_AES_256_GCM, 86400);
        if (err)
            die("tickets", err);
        mbedtls_ssl_conf_session_tickets_cb(&conf, mbedtls_ssl_ticket_write,
                                            mbedtls_ssl_ticket_parse, &ticket);
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
        mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
}

/* --------------------------------------------------------- connections */

typedef struct conn {
    mbedtls_net_context net;
    mbedtls_ssl_context ssl;
} conn;

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Set when the client verified a certificate: a full handshake. */
static int saw_cert;

static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    (void)ctx; (void)crt; (void)flags;
    if (depth == 0)
        saw_cert = 1;
    return 0;
}

static int do_handshake(conn *c)
{
    int r;
    while ((r = mbedtls_ssl_handshake(&c->ssl)) != 0)
        if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE)
            return r;
    return 0;
}

static void read_all(conn *c, unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        int r = mbedtls_ssl_read(&c->ssl, buf + got, len - got);
        if (r > 0)
            got += (size_t)r;
        else if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE ||
                 r == ERR_TICKET)
            continue;
        else
            die("read", r);
    }
}

static void write_all(conn *c, const unsigned char *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        int r = mbedtls_ssl_write(&c->ssl, buf + done, len - done);
        if (r > 0)
            done += (size_t)r;
        else if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE)
            die("write", r);
    }
}

/* Reads until the peer closes (close_notify or EOF). */
static void wait_close(conn *c)
{
    unsigned char buf[256];
    int r;
    do
        r = mbedtls_ssl_read(&c->ssl, buf, sizeof buf);
    while (r > 0 || r == MBEDTLS_ERR_SSL_WANT_READ || r == ERR_TICKET);
}

static void conn_free(conn *c, int notify)
{
    if (notify)
        mbedtls_ssl_close_notify(&c->ssl);
    mbedtls_net_free(&c->net);
    mbedtls_ssl_free(&c->ssl);
}

static conn *server_accept(mbedtls_net_context *lsn)
{
    conn *c = calloc(1, sizeof *c);
    int err;
    mbedtls_net_init(&c->net);
    mbedtls_ssl_init(&c->ssl);
    if ((err = mbedtls_net_accept(lsn, &c->net, NULL, 0, NULL)) != 0)
        die("accept", err);
    nodelay(c->net.fd);
    if ((err = mbedtls_ssl_setup(&c->ssl, &conf)) != 0)
        die("ssl setup", err);
    mbedtls_ssl_set_bio(&c->ssl, &c->net, mbedtls_net_send, mbedtls_net_recv, NULL);
    if ((err = do_handshake(c)) != 0)
        die("server handshake", err);
    return c;
}

static conn *client_connect(const char *port, mbedtls_ssl_session *sess,
                            int *reused)
{
    conn *c = calloc(1, sizeof *c);
    int err;
    mbedtls_net_init(&c->net);
    mbedtls_ssl_init(&c->ssl);
    if ((err = mbedtls_net_connect(&c->net, "127.0.0.1", port,
                                   MBEDTLS_NET_PROTO_TCP)) != 0)
        die("connect", err);
    nodelay(c->net.fd);
    if ((err = mbedtls_ssl_setup(&c->ssl, &conf)) != 0)
        die("ssl setup", err);
    mbedtls_ssl_set_hostname(&c->ssl, "localhost");
    mbedtls_ssl_set_bio(&c->ssl, &c->net, mbedtls_net_send, mbedtls_net_recv, NULL);
    mbedtls_ssl_set_verify(&c->ssl, verify_cb, NULL);
    saw_cert = 0;
    if (sess != NULL && reused != NULL && *reused >= 0)
        mbedtls_ssl_set_session(&c->ssl, sess);
    if ((err = do_handshake(c)) != 0)
        die("client handshake", err);
    return c;
}

static void run_server(const char *test, long n, long size)
{
    mbedtls_net_context lsn;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    unsigned char *buf = malloc(1 << 20);
    int err;
    mbedtls_net_init(&lsn);
    if ((err = mbedtls_net_bind(&lsn, "127.0.0.1", "0", MBEDTLS_NET_PROTO_TCP)) != 0)
        die("bind", err);
    getsockname(lsn.fd, (struct sockaddr *)&sa, &sl);
    printf("PORT %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    if (strcmp(test, "bulk") == 0) {
        conn *c = server_accept(&lsn);
        long left = size;
        while (left > 0) {
            size_t k = left > (1 << 20) ? (1 << 20) : (size_t)left;
            read_all(c, buf, k);
            left -= (long)k;
        }
        memset(buf, 'x', 1 << 20);
        for (left = size; left > 0;) {
            size_t k = left > (1 << 20) ? (1 << 20) : (size_t)left;
            write_all(c, buf, k);
            left -= (long)k;
        }
        wait_close(c);
        conn_free(c, 0);
    } else if (strcmp(test, "hs") == 0 || strcmp(test, "resume") == 0) {
        long i;
        for (i = 0; i < n; i++) {
            conn *c = server_accept(&lsn);
            read_all(c, buf, 1);
            write_all(c, buf, 1);
            wait_close(c);
            conn_free(c, 0);
            free(c);
        }
    } else if (strcmp(test, "mem") == 0) {
        conn **cs = calloc((size_t)n, sizeof *cs);
        long before = rss_bytes(), i;
        for (i = 0; i < n; i++) {
            cs[i] = server_accept(&lsn);
            read_all(cs[i], buf, 1);
            write_all(cs[i], buf, 1);
        }
        printf("RESULT server_mem_per_conn %.1f\n",
               (double)(rss_bytes() - before) / (double)n);
        fflush(stdout);
        for (i = 0; i < n; i++) {
            wait_close(cs[i]);
            conn_free(cs[i], 0);
        }
    } else if (strcmp(test, "poll") == 0 || strcmp(test, "echo") == 0) {
        conn *c = server_accept(&lsn);
        for (;;) {
            int r = mbedtls_ssl_read(&c->ssl, buf, 1);
            if (r == MBEDTLS_ERR_SSL_WANT_READ || r == ERR_TICKET)
                continue;
            if (r <= 0)
                break;
            write_all(c, buf, 1);
        }
        conn_free(c, 0);
    }
    mbedtls_net_free(&lsn);
}

static void run_client(const char *port, const char *test, long n, long size)
{
    unsigned char *buf = malloc(1 << 20);
    double t0, t1;
    memset(buf, 'y', 1 << 20);
    if (strcmp(test, "bulk") == 0) {
        conn *c = client_connect(port, NULL, NULL);
        long left;
        t0 = now();
        for (left = size; left > 0;) {
            size_t k = left > (1 << 20) ? (1 << 20) : (size_t)left;
            write_all(c, buf, k);
            left -= (long)k;
        }
        t1 = now();
        for (left = size; left > 0;) {
            size_t k = left > (1 << 20) ? (1 << 20) : (size_t)left;
            read_all(c, buf, k);
            left -= (long)k;
        }
        printf("RESULT bulk_mbps %.2f\n", 2.0 * (double)size / (now() - t0) / 1e6);
        (void)t1;
        conn_free(c, 1);
    } else if (strcmp(test, "hs") == 0 || strcmp(test, "resume") == 0) {
        mbedtls_ssl_session sess;
        int have = -1, reused = 0;
        long i;
        mbedtls_ssl_session_init(&sess);
        t0 = now();
        for (i = 0; i < n; i++) {
            conn *c;
            if (i == 1)
                t0 = now();          /* the first one is a full handshake */
            c = client_connect(port, &sess, &have);
            if (i > 0 && !saw_cert)
                reused++;           /* no certificate checked: resumed */
            write_all(c, buf, 1);
            read_all(c, buf, 1);
            if (strcmp(test, "resume") == 0) {
                mbedtls_ssl_session_free(&sess);
                mbedtls_ssl_session_init(&sess);
                have = mbedtls_ssl_get_session(&c->ssl, &sess) == 0 ? 0 : -1;
            }
            conn_free(c, 1);
            free(c);
        }
        t1 = now();
        printf("RESULT hs_per_s %.2f\n", (double)(n - 1) / (t1 - t0));
        printf("RESULT reused %d\n", reused);
    } else if (strcmp(test, "mem") == 0) {
        conn **cs = calloc((size_t)n, sizeof *cs);
        long before = rss_bytes(), i;
        for (i = 0; i < n; i++) {
            cs[i] = client_connect(port, NULL, NULL);
            write_all(cs[i], buf, 1);
            read_all(cs[i], buf, 1);
        }
        printf("RESULT client_mem_per_conn %.1f\n",
               (double)(rss_bytes() - before) / (double)n);
        for (i = 0; i < n; i++)
            conn_free(cs[i], 1);
    } else if (strcmp(test, "poll") == 0) {
        conn *c = client_connect(port, NULL, NULL);
        long i;
        int r = 0;
        write_all(c, buf, 1);
        read_all(c, buf, 1);
        mbedtls_net_set_nonblock(&c->net);
        t0 = now();
        for (i = 0; i < n; i++)
            r |= mbedtls_ssl_read(&c->ssl, buf, 0) != MBEDTLS_ERR_SSL_WANT_READ;
        t1 = now();
        if (r)
            fprintf(stderr, "baseline: poll: unexpected result\n");
        printf("RESULT poll_ns %.1f\n", (t1 - t0) / (double)n * 1e9);
        mbedtls_net_set_block(&c->net);
        conn_free(c, 1);
    } else if (strcmp(test, "echo") == 0) {
        conn *c = client_connect(port, NULL, NULL);
        long i;
        write_all(c, buf, 1);
        read_all(c, buf, 1);
        t0 = now();
        for (i = 0; i < n; i++) {
            write_all(c, buf, 1);
            read_all(c, buf, 1);
        }
        t1 = now();
        printf("RESULT echo_us %.2f\n", (t1 - t0) / (double)n * 1e6);
        conn_free(c, 1);
    }
}

/* -------------------------------------------------------------- crypto */

static void run_crypto(const char *what, long n, long size)
{
    double t0 = now(), t1;
    long i;
    int err;
    if (strcmp(what, "rsa") == 0 || strcmp(what, "ec") == 0) {
        for (i = 0; i < n; i++) {
            mbedtls_pk_context pk;
            mbedtls_pk_init(&pk);
            if (what[0] == 'r') {
                mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA));
                err = mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random,
                                          &drbg, 2048, 65537);
            } else {
                mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
                err = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                          mbedtls_ctr_drbg_random, &drbg);
            }
            if (err)
                die("keygen", err);
            mbedtls_pk_free(&pk);
        }
        t1 = now();
        printf("RESULT keygen_ms %.3f\n", (t1 - t0) / (double)n * 1e3);
    } else {
        unsigned char *data = malloc((size_t)size), out[32];
        memset(data, 'z', (size_t)size);
        t0 = now();
        for (i = 0; i < n; i++) {
#if MBED3
            mbedtls_sha256(data, (size_t)size, out, 0);
#else
            mbedtls_sha256_ret(data, (size_t)size, out, 0);
#endif
        }
        t1 = now();
        printf("RESULT sha256_mbps %.2f\n", (double)size * (double)n / (t1 - t0) / 1e6);
        free(data);
    }
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
    if (argc < 2)
        goto usage;
    seed();
    if (strcmp(argv[1], "server") == 0 && argc == 7) {
        setup_conf(1, argv[3], argv[4]);
        run_server(argv[2], atol(argv[5]), atol(argv[6]));
    } else if (strcmp(argv[1], "client") == 0 && argc == 8) {
        setup_conf(0, argv[4], argv[5]);
        run_client(argv[2], argv[3], atol(argv[6]), atol(argv[7]));
    } else if (strcmp(argv[1], "crypto") == 0 && argc == 5) {
        run_crypto(argv[2], atol(argv[3]), atol(argv[4]));
    } else if (strcmp(argv[1], "version") == 0) {
        print_identity();
    } else
        goto usage;
    fflush(stdout);
    return 0;
usage:
    fprintf(stderr, "usage: baseline server TEST CERT SUITE N SIZE | client PORT TEST "
            "CERT SUITE N SIZE | crypto rsa|ec|sha256 N SIZE | version\n");
    return 2;
}
