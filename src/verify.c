/*
 * verify.c - what tlspeer checks in a peer's certificate chain beyond
 * mbedtls' own path validation, and the words for what failed:
 *
 *  - host names: the syntax of a name before it is used (no NUL, CR, LF,
 *    spaces, nothing cut short), and whether a leaf carries it (DNS names
 *    with wildcards, IP addresses; the CN only without DNS names);
 *  - name constraints of every CA in the chain (mbedtls parses none: a
 *    non-critical extension was ignored, a critical one fails to parse);
 *  - the extended key usage of CA certificates (a CA limited to other
 *    purposes may not vouch for a TLS server or client);
 *  - which certificate of the chain failed, for the message.
 *
 * tp_verify_cb is the mbedtls verify callback: mbedtls calls it for each
 * certificate of the chain it built, from the top (the trust anchor) down
 * to the leaf at depth 0, so the constraints of every CA are known when the
 * certificates below it are seen.
 */
#include "aux.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>

/* ---------------------------------------------------------- host names */

/* A host name is an IPv4 or IPv6 literal, or a DNS name of letters,
 * digits, '-' and '_' in dot-separated labels of 1..63 bytes, at most 253
 * bytes in all (one trailing dot allowed).  Everything else is refused,
 * before it reaches a resolver, a Host header, SNI or a name check. */
int tp_check_hostname(const char *s, size_t len, char *why, size_t whylen)
{
    unsigned char ip[16];
    size_t i, label = 0, max = TP_HOSTNAME_MAX;
    const char *what = NULL;
    if (len == 0)
        what = "it is empty";
    else if (memchr(s, '\0', len) != NULL)
        what = "it contains a NUL byte";
    else if (inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1)
        return 0;
    else {
        if (s[len - 1] == '.')
            max++;                       /* "example.com." */
        if (len > max)
            what = "it is longer than 253 bytes";
        for (i = 0; what == NULL && i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '.') {
                if (label == 0)
                    what = "it has an empty label";
                label = 0;
            } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9') || c == '-' || c == '_') {
                if (++label > 63)
                    what = "a label is longer than 63 bytes";
            } else if (c == '\r' || c == '\n')
                what = "it contains a line break";
            else if (c == ' ' || c == '\t')
                what = "it contains a space";
            else if (c == '[' || c == ']' || c == ':')
                what = "brackets and colons belong only to an IPv6 address, "
                       "and this is not one";
            else if (c < 0x20 || c == 0x7f)
                what = "it contains a control character";
            else if (c >= 0x80)
                what = "it is not ASCII (write an international name in "
                       "its xn-- form)";
            else
                what = "it contains a character not allowed in host names";
        }
    }
    if (what == NULL)
        return 0;
    if (why != NULL)
        snprintf(why, whylen, "%s", what);
    return -1;
}

/* -------------------------------------------------------- name matching */

/* A DNS name (len bytes, not NUL-terminated) against the host we want.  A
 * wildcard stands for exactly one whole leftmost label, and needs at least
 * two labels after it: "*.example.com" matches "a.example.com", "*.com"
 * matches nothing. */
static int dns_match(const char *pattern, size_t plen, const char *host)
{
    size_t hlen = strlen(host);
    if (plen > 0 && pattern[plen - 1] == '.')
        plen--;                          /* absolute names match too */
    if (hlen > 0 && host[hlen - 1] == '.')
        hlen--;
    if (memchr(pattern, '\0', plen) != NULL)
        return 0;                        /* a NUL in a name matches nothing */
    if (plen > 2 && pattern[0] == '*' && pattern[1] == '.') {
        const char *rest = pattern + 1;  /* ".example.com" */
        size_t rlen = plen - 1;
        const char *dot = memchr(host, '.', hlen);
        if (memchr(rest + 1, '.', rlen - 1) == NULL || rest[rlen - 1] == '.')
            return 0;                    /* "*.com": one label after it */
        if (dot == NULL || dot == host)
            return 0;
        return hlen - (size_t)(dot - host) == rlen &&
               strncasecmp(dot, rest, rlen) == 0;
    }
    return plen == hlen && strncasecmp(pattern, host, plen) == 0;
}

static int is_cn(const mbedtls_x509_name *n)
{
    return n->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0;
}

/* Does the leaf carry the name (or IP address) we connected to?  The
 * subjectAltName decides; the CN only counts when there are no DNS names. */
static int name_matches(const tp_verify *v, const mbedtls_x509_crt *crt)
{
    const mbedtls_x509_sequence *s;
    const mbedtls_x509_name *n;
    int has_dns = 0;
    for (s = &crt->subject_alt_names; s != NULL; s = s->next) {
        int tag = s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
        if (s->buf.p == NULL)
            continue;
        if (v->iplen > 0) {
            if (tag == 7 && s->buf.len == v->iplen &&
                memcmp(s->buf.p, v->ip, v->iplen) == 0)
                return 1;
        } else if (tag == 2) {
            has_dns = 1;
            if (dns_match((const char *)s->buf.p, s->buf.len, v->host))
                return 1;
        }
    }
    if (v->iplen == 0 && !has_dns)
        for (n = &crt->subject; n != NULL; n = n->next)
            if (is_cn(n) &&
                dns_match((const char *)n->val.p, n->val.len, v->host))
                return 1;
    return 0;
}

/* "CN=..." of a certificate's subject, for messages. */
static void subject_text(const mbedtls_x509_crt *crt, char *buf, size_t len)
{
    int n = mbedtls_x509_dn_gets(buf, len, &crt->subject);
    if (n < 0)
        snprintf(buf, len, "?");
}

/* The leaf's names, for the message of a name mismatch (crt NULL: the
 * name matched, and no message will quote them). */
static void note_leaf(tp_verify *v, const mbedtls_x509_crt *crt)
{
    const mbedtls_x509_sequence *s;
    const mbedtls_x509_name *n;
    size_t used = 0;
    v->peer_names[0] = '\0';
    if (crt == NULL)
        return;                       /* the name matched: no message needs them */
    for (s = &crt->subject_alt_names; s != NULL; s = s->next) {
        int tag = s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
        char item[INET6_ADDRSTRLEN + 4];
        if (s->buf.p == NULL)
            continue;
        if (tag == 2)
            snprintf(item, sizeof item, "%.*s",
                     (int)(s->buf.len < 40 ? s->buf.len : 40),
                     (const char *)s->buf.p);
        else if (tag == 7 && (s->buf.len == 4 || s->buf.len == 16))
            inet_ntop(s->buf.len == 4 ? AF_INET : AF_INET6, s->buf.p, item,
                      sizeof item);
        else
            continue;
        used += (size_t)snprintf(v->peer_names + used,
                                 sizeof v->peer_names - used, "%s%s",
                                 used ? ", " : "", item);
        if (used >= sizeof v->peer_names - 1)
            break;
    }
    if (v->peer_names[0] == '\0')
        for (n = &crt->subject; n != NULL; n = n->next)
            if (is_cn(n))
                snprintf(v->peer_names, sizeof v->peer_names, "CN=%.*s",
                         (int)(n->val.len < 80 ? n->val.len : 80),
                         (const char *)n->val.p);
}

static void date_text(const mbedtls_x509_time *t, char *buf, size_t len)
{
    snprintf(buf, len, "%04d-%02d-%02d %02d:%02d UTC", t->year, t->mon,
             t->day, t->hour, t->min);
}

/* ---------------------------------------------------- name constraints */

/* The extnValue of the extension `oid` in crt's raw extensions, or 0. */
static int find_extension(const mbedtls_x509_crt *crt, const char *oid,
                          size_t oidlen, unsigned char **val, size_t *vlen)
{
    unsigned char *p = crt->v3_ext.p, *end;
    size_t len;
    if (p == NULL || crt->v3_ext.len == 0)
        return 0;
    end = p + crt->v3_ext.len;
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED |
                             MBEDTLS_ASN1_SEQUENCE) != 0)
        return 0;
    end = p + len;
    while (p < end) {
        unsigned char *ext_end, *id;
        size_t idlen;
        int critical = 0;
        if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED |
                                 MBEDTLS_ASN1_SEQUENCE) != 0)
            return 0;
        ext_end = p + len;
        if (mbedtls_asn1_get_tag(&p, ext_end, &idlen, MBEDTLS_ASN1_OID) != 0)
            return 0;
        id = p;
        p += idlen;
        (void)mbedtls_asn1_get_bool(&p, ext_end, &critical);
        if (mbedtls_asn1_get_tag(&p, ext_end, &len,
                                 MBEDTLS_ASN1_OCTET_STRING) != 0)
            return 0;
        if (idlen == oidlen && memcmp(id, oid, oidlen) == 0) {
            *val = p;
            *vlen = len;
            return 1;
        }
        p = ext_end;
    }
    return 0;
}

/* A DNS-style subtree: "example.com" covers it and every name below it;
 * ".example.com" only the names below it; "" covers everything. */
static int dns_within(const unsigned char *name, size_t nlen,
                      const unsigned char *base, size_t blen)
{
    if (nlen > 0 && name[nlen - 1] == '.')
        nlen--;
    if (blen == 0)
        return 1;
    if (base[0] == '.')
        return nlen > blen &&
               strncasecmp((const char *)name + nlen - blen,
                           (const char *)base, blen) == 0;
    if (nlen == blen)
        return strncasecmp((const char *)name, (const char *)base, blen) == 0;
    return nlen > blen && name[nlen - blen - 1] == '.' &&
           strncasecmp((const char *)name + nlen - blen, (const char *)base,
                       blen) == 0;
}

/* rfc822Name: "user@host" exactly, "host" for every mailbox at that
 * host, ".host" for every mailbox below it. */
static int email_within(const unsigned char *name, size_t nlen,
                        const unsigned char *base, size_t blen)
{
    const unsigned char *at = memchr(name, '@', nlen);
    if (memchr(base, '@', blen) != NULL)
        return nlen == blen &&
               strncasecmp((const char *)name, (const char *)base, nlen) == 0;
    if (at == NULL)
        return 0;
    at++;
    nlen -= (size_t)(at - name);
    if (blen > 0 && base[0] == '.')
        return dns_within(at, nlen, base, blen);
    return nlen == blen && strncasecmp((const char *)at, (const char *)base,
                                       blen) == 0;
}

/* The host of a URI ("scheme://host[:port]/..."), for URI constraints. */
static int uri_host(const unsigned char *uri, size_t len,
                    const unsigned char **host, size_t *hlen)
{
    const unsigned char *p = memchr(uri, ':', len), *end = uri + len, *h;
    if (p == NULL || end - p < 3 || p[1] != '/' || p[2] != '/')
        return 0;
    h = p + 3;
    for (p = h; p < end && *p != '/' && *p != ':' && *p != '?' && *p != '#';
         p++)
        if (*p == '@')
            h = p + 1;
    *host = h;
    *hlen = (size_t)(p - h);
    return *hlen > 0;
}

static int uri_within(const unsigned char *name, size_t nlen,
                      const unsigned char *base, size_t blen)
{
    const unsigned char *h;
    size_t hlen;
    if (!uri_host(name, nlen, &h, &hlen))
        return 0;
    if (blen > 0 && base[0] == '.')
        return dns_within(h, hlen, base, blen);
    return hlen == blen && strncasecmp((const char *)h, (const char *)base,
                                       blen) == 0;
}

/* iPAddress: a 4- or 16-byte address against 8 or 32 bytes of address
 * and mask. */
static int ip_within(const unsigned char *ip, size_t iplen,
                     const unsigned char *base, size_t blen)
{
    size_t i;
    if (blen != 2 * iplen)
        return 0;
    for (i = 0; i < iplen; i++)
        if ((ip[i] & base[iplen + i]) != (base[i] & base[iplen + i]))
            return 0;
    return 1;
}

/* directoryName: the subject starts with the constraint's RDNs (compared
 * as DER, RDN by RDN). */
static int dn_within(const unsigned char *name, size_t nlen,
                     const unsigned char *base, size_t blen)
{
    unsigned char *np = (unsigned char *)name, *nend = np + nlen;
    unsigned char *bp = (unsigned char *)base, *bend = bp + blen;
    size_t len;
    if (mbedtls_asn1_get_tag(&np, nend, &len, MBEDTLS_ASN1_CONSTRUCTED |
                             MBEDTLS_ASN1_SEQUENCE) != 0 ||
        mbedtls_asn1_get_tag(&bp, bend, &blen, MBEDTLS_ASN1_CONSTRUCTED |
                             MBEDTLS_ASN1_SEQUENCE) != 0)
        return 0;
    nend = np + len;
    bend = bp + blen;
    while (bp < bend) {
        unsigned char *b0 = bp, *n0 = np;
        size_t bl, nl;
        if (mbedtls_asn1_get_tag(&bp, bend, &bl, MBEDTLS_ASN1_CONSTRUCTED |
                                 MBEDTLS_ASN1_SET) != 0 ||
            mbedtls_asn1_get_tag(&np, nend, &nl, MBEDTLS_ASN1_CONSTRUCTED |
                                 MBEDTLS_ASN1_SET) != 0)
            return 0;
        bp += bl;
        np += nl;
        if (bp - b0 != np - n0 || memcmp(b0, n0, (size_t)(bp - b0)) != 0)
            return 0;
    }
    return 1;
}

/* The names of one kind that a certificate carries, one at a time. */
enum { GN_EMAIL = 1, GN_DNS = 2, GN_DIR = 4, GN_URI = 6, GN_IP = 7 };

/* Is the name (of GeneralName tag `kind`) inside the subtree `base`? */
static int within(int kind, const unsigned char *name, size_t nlen,
                  const unsigned char *base, size_t blen)
{
    switch (kind) {
    case GN_DNS:   return dns_within(name, nlen, base, blen);
    case GN_EMAIL: return email_within(name, nlen, base, blen);
    case GN_URI:   return uri_within(name, nlen, base, blen);
    case GN_IP:    return ip_within(name, nlen, base, blen);
    case GN_DIR:   return dn_within(name, nlen, base, blen);
    default:       return 0;
    }
}

/*
 * Checks one name against the constraints (the NameConstraints value at
 * nc).  Returns 0 when allowed, or sets `why` and returns -1: excluded,
 * outside every permitted subtree of its kind, or constrained by a kind or
 * a form tlspeer cannot judge (refused rather than ignored).
 */
static int check_name(int kind, const unsigned char *name, size_t nlen,
                      unsigned char *nc, size_t nclen, const char **why)
{
    unsigned char *p = nc, *end = nc + nclen;
    size_t len;
    int permitted_seen = 0, permitted_ok = 0;
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED |
                             MBEDTLS_ASN1_SEQUENCE) != 0) {
        *why = "its name constraints cannot be read";
        return -1;
    }
    end = p + len;
    while (p < end) {
        int which = *p & MBEDTLS_ASN1_TAG_VALUE_MASK;   /* 0 permitted, 1 excluded */
        unsigned char *trees_end;
        if ((*p & ~MBEDTLS_ASN1_TAG_VALUE_MASK) !=
                (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED) ||
            which > 1 || mbedtls_asn1_get_tag(&p, end, &len, *p) != 0) {
            *why = "its name constraints cannot be read";
            return -1;
        }
        trees_end = p + len;
        while (p < trees_end) {
            unsigned char *tree_end, *base;
            size_t blen;
            int tag;
            if (mbedtls_asn1_get_tag(&p, trees_end, &len,
                                     MBEDTLS_ASN1_CONSTRUCTED |
                                     MBEDTLS_ASN1_SEQUENCE) != 0 ||
                len == 0) {
                *why = "its name constraints cannot be read";
                return -1;
            }
            tree_end = p + len;
            tag = *p & MBEDTLS_ASN1_TAG_VALUE_MASK;
            if ((*p & MBEDTLS_ASN1_CONTEXT_SPECIFIC) == 0 ||
                mbedtls_asn1_get_tag(&p, tree_end, &blen, *p) != 0) {
                *why = "its name constraints cannot be read";
                return -1;
            }
            base = p;
            p += blen;
            if (p != tree_end) {
                /* minimum/maximum: RFC 5280 forbids them; so do we. */
                *why = "its name constraints use minimum/maximum, which "
                       "RFC 5280 forbids";
                return -1;
            }
            if (tag != kind)
                continue;
            if (kind != GN_DNS && kind != GN_EMAIL && kind != GN_URI &&
                kind != GN_IP && kind != GN_DIR) {
                *why = "its name constraints cover a kind of name tlspeer "
                       "cannot check";
                return -1;
            }
            if (which == 1 && within(kind, name, nlen, base, blen)) {
                *why = "a name of the certificate is in a subtree its CA "
                       "excludes";
                return -1;
            }
            if (which == 0) {
                permitted_seen = 1;
                permitted_ok |= within(kind, name, nlen, base, blen);
            }
        }
        p = trees_end;
    }
    if (permitted_seen && !permitted_ok) {
        *why = "a name of the certificate is outside the subtrees its CA "
               "permits";
        return -1;
    }
    return 0;
}

/* A CN that reads as a DNS name ("www.example.com", not "My Client"). */
static int cn_is_dns(const mbedtls_x509_name *n)
{
    char buf[TP_HOSTNAME_MAX + 2];
    unsigned char ip[16];
    if (n->val.len == 0 || n->val.len > TP_HOSTNAME_MAX ||
        memchr(n->val.p, '.', n->val.len) == NULL)
        return 0;
    memcpy(buf, n->val.p, n->val.len);
    buf[n->val.len] = '\0';
    return inet_pton(AF_INET, buf, ip) != 1 &&
           tp_check_hostname(buf, n->val.len, NULL, 0) == 0;
}

/* Checks every name of crt against the name constraints `nc`.  The leaf's
 * CN counts as a DNS name when it has no DNS names in its subjectAltName
 * (that is when name_matches() uses it). */
static int check_names(const mbedtls_x509_crt *crt, int leaf,
                       unsigned char *nc, size_t nclen, const char **why)
{
    const mbedtls_x509_sequence *s;
    int has_dns = 0;
    if (crt->subject_raw.len > 2 &&
        check_name(GN_DIR, crt->subject_raw.p, crt->subject_raw.len, nc,
                   nclen, why) != 0)
        return -1;
    for (s = &crt->subject_alt_names; s != NULL; s = s->next) {
        int tag = s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
        if (s->buf.p == NULL)
            continue;
        has_dns |= tag == GN_DNS;
        /* Kinds tlspeer cannot judge (otherName, x400Address...) are only
         * a problem when the CA constrains that kind: check_name says so. */
        if (check_name(tag, s->buf.p, s->buf.len, nc, nclen, why) != 0)
            return -1;
    }
    if (leaf && !has_dns) {
        const mbedtls_x509_name *n;
        for (n = &crt->subject; n != NULL; n = n->next)
            if (is_cn(n) && cn_is_dns(n) &&
                check_name(GN_DNS, n->val.p, n->val.len, nc, nclen, why) != 0)
                return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ callback */

/* A self-issued certificate (subject == issuer) is not bound by the name
 * constraints of the CAs above it (RFC 5280 6.1.3), unless it is the leaf. */
static int self_issued(const mbedtls_x509_crt *crt)
{
    return crt->subject_raw.len == crt->issuer_raw.len &&
           memcmp(crt->subject_raw.p, crt->issuer_raw.p,
                  crt->subject_raw.len) == 0;
}

static void note_problem(tp_verify *v, const char *fmt, ...)
    TP_PRINTF(2, 3);

static void note_problem(tp_verify *v, const char *fmt, ...)
{
    va_list ap;
    if (v->problem[0] != '\0')
        return;                          /* the first (highest) one counts */
    va_start(ap, fmt);
    vsnprintf(v->problem, sizeof v->problem, fmt, ap);
    va_end(ap);
}

void tp_verify_start(tp_verify *v, const char *host, int is_server,
                     int check_name)
{
    memset(v, 0, sizeof *v);
    v->is_server = (unsigned char)is_server;
    v->check_name = (unsigned char)check_name;
    v->last_depth = -1;
    if (host != NULL) {
        tp_copystr(v->host, sizeof v->host, host, strlen(host));
        if (inet_pton(AF_INET, host, v->ip) == 1)
            v->iplen = 4;
        else if (inet_pton(AF_INET6, host, v->ip) == 1)
            v->iplen = 16;
    }
}

int tp_verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    tp_verify *v = ctx;
    const char *why = NULL;
    int i;
    if (depth >= v->last_depth) {        /* a new chain, from its top */
        v->nconstraints = 0;
        v->problem[0] = '\0';
    }
    v->last_depth = depth;

    /* The constraints of the CAs above apply to this certificate. */
    if (depth == 0 || !self_issued(crt))
        for (i = 0; i < v->nconstraints; i++)
            if (check_names(crt, depth == 0, v->constraints[i].p,
                            v->constraints[i].len, &why) != 0) {
                *flags |= MBEDTLS_X509_BADCERT_OTHER;
                note_problem(v, "%s violates the name constraints of a CA "
                             "in its chain: %s",
                             depth == 0 ? "the certificate"
                                        : "an intermediate CA certificate",
                             why);
                break;
            }

    if (depth > 0) {
        char who[120];
        unsigned char *nc;
        size_t nclen;
        subject_text(crt, who, sizeof who);
        if (find_extension(crt, MBEDTLS_OID_NAME_CONSTRAINTS,
                           MBEDTLS_OID_SIZE(MBEDTLS_OID_NAME_CONSTRAINTS),
                           &nc, &nclen) &&
            v->nconstraints < TP_VERIFY_MAX_NC) {
            v->constraints[v->nconstraints].p = nc;
            v->constraints[v->nconstraints].len = nclen;
            v->nconstraints++;
        }
        /* A CA restricted to other purposes may not vouch for this one. */
        if (v->is_server
                ? mbedtls_x509_crt_check_extended_key_usage(crt,
                      MBEDTLS_OID_CLIENT_AUTH,
                      MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)) != 0
                : mbedtls_x509_crt_check_extended_key_usage(crt,
                      MBEDTLS_OID_SERVER_AUTH,
                      MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)) != 0) {
            *flags |= MBEDTLS_X509_BADCERT_EXT_KEY_USAGE;
            note_problem(v, "the CA certificate '%s' in its chain is not "
                         "allowed to issue TLS %s certificates (its extended "
                         "key usage excludes it)", who,
                         v->is_server ? "client" : "server");
        }
        if (*flags & MBEDTLS_X509_BADCERT_EXPIRED) {
            char date[32];
            date_text(&crt->valid_to, date, sizeof date);
            note_problem(v, "the CA certificate '%s' in its chain has expired "
                         "(it was valid until %s)", who, date);
        } else if (*flags & MBEDTLS_X509_BADCERT_FUTURE) {
            char date[32];
            date_text(&crt->valid_from, date, sizeof date);
            note_problem(v, "the CA certificate '%s' in its chain is not "
                         "valid yet (from %s; check the clock)", who, date);
        }
        return 0;
    }

    v->saw_cert = 1;
    date_text(&crt->valid_to, v->peer_not_after, sizeof v->peer_not_after);
    v->name_ok = v->iplen > 0 || v->host[0] != '\0' ? name_matches(v, crt) : 0;
    note_leaf(v, v->name_ok ? NULL : crt);
    if (v->check_name) {
        if (v->name_ok)
            *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
        else
            *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
    return 0;
}

/* After a resumed handshake (no chain was verified this time): whether the
 * session's certificate carries the name. */
void tp_verify_resumed(tp_verify *v, const mbedtls_x509_crt *peer)
{
    if (peer == NULL)
        return;
    v->name_ok = v->iplen > 0 || v->host[0] != '\0' ? name_matches(v, peer)
                                                    : 0;
    note_leaf(v, v->name_ok ? NULL : peer);
}

/* ------------------------------------------------------------ messages */

int tp_verify_explain(const tp_verify *v, uint32_t flags, char *buf,
                      size_t len)
{
    const char *who = v->is_server ? "the client's certificate"
                                   : "the server's certificate";
    if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
        snprintf(buf, len, "%s is not valid for '%s': it is for %s", who,
                 v->host, v->peer_names[0] ? v->peer_names
                                           : "no name at all");
        return 1;
    }
    if (v->problem[0] != '\0')
        snprintf(buf, len, "%s is not trusted: %s", who, v->problem);
    else if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
        snprintf(buf, len, "%s has expired (it was valid until %s)", who,
                 v->peer_not_after);
    else if (flags & MBEDTLS_X509_BADCERT_FUTURE)
        snprintf(buf, len, "%s is not valid yet (check the clock)", who);
    else if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
        snprintf(buf, len, "%s is not trusted: no CA in the trusted chain "
                 "signed it (a self-signed or private-CA certificate must be "
                 "passed as the trusted chain)", who);
    else if (flags & MBEDTLS_X509_BADCERT_MISSING)
        snprintf(buf, len, "%s is missing: the peer sent none", who);
    else if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE |
                      MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
                      MBEDTLS_X509_BADCERT_NS_CERT_TYPE))
        snprintf(buf, len, "%s is not meant for TLS %s authentication (key "
                 "usage)", who, v->is_server ? "client" : "server");
    else if (flags & MBEDTLS_X509_BADCERT_REVOKED)
        snprintf(buf, len, "%s has been revoked", who);
    else {
        char info[256];
        mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
        info[strcspn(info, "\n")] = '\0';
        snprintf(buf, len, "%s failed verification: %s", who, info);
    }
    return 0;
}
