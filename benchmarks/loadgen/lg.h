/* Shared helpers for the fastsock load generators and reference servers:
 * clock, latency histogram, option parsing, SHA-1 + base64 for the WebSocket
 * handshake, descriptor helpers.  Header-only so every tool stays one .c file
 * built by the Makefile's pattern rule. */
#ifndef FASTSOCK_LG_H
#define FASTSOCK_LG_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void usage_error(const char *prog, const char *msg, const char *arg) {
    fprintf(stderr, "%s: %s%s%s (try --help)\n", prog, msg, arg ? ": " : "", arg ? arg : "");
    exit(2);
}

/* ---- latency histogram: 64 sub-buckets per power of two (~1.6% error) ---- */
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_SUB * 40)
typedef struct { uint64_t n[HIST_BUCKETS]; uint64_t count; uint64_t max; } hist_t;

static inline int hist_index(uint64_t v) {
    if (v < 2 * HIST_SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int e = msb - 6;                                  /* v >> e is in [64, 128) */
    int idx = (e + 1) * HIST_SUB + (int)((v >> e) - HIST_SUB);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static inline void hist_add(hist_t *h, uint64_t v) {
    h->n[hist_index(v)]++;
    h->count++;
    if (v > h->max) h->max = v;
}

static uint64_t hist_value(int idx) {  /* midpoint of a bucket */
    if (idx < 2 * HIST_SUB) return (uint64_t)idx;
    int e = idx / HIST_SUB - 1;
    uint64_t m = (uint64_t)(idx % HIST_SUB + HIST_SUB);
    return (m << e) + ((1ull << e) >> 1);
}

static uint64_t hist_quantile(const hist_t *h, double q) {
    if (h->count == 0) return 0;
    uint64_t want = (uint64_t)(q * (double)h->count);
    if (want >= h->count) want = h->count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->n[i];
        if (seen > want) {
            uint64_t v = hist_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* Prints "p50_us":..,"p99_us":..,"p999_us":..,"max_us":.. (no braces). */
static void hist_print_json(FILE *f, const hist_t *h) {
    fprintf(f, "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
            hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.99) / 1e3,
            hist_quantile(h, 0.999) / 1e3, h->max / 1e3);
}

/* ---- option parsing: --name value ---- */
static long parse_long(const char *prog, const char *name, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be an integer in [%ld, %ld]", name, lo, hi);
        usage_error(prog, msg, s);
    }
    return v;
}

static double parse_double(const char *prog, const char *name, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi)) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be a number in [%g, %g]", name, lo, hi);
        usage_error(prog, msg, s);
    }
    return v;
}

static int parse_addr(const char *host, int port, struct sockaddr_in *sa) {
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static inline void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static inline void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Raise the soft descriptor limit to the hard one; returns the new soft limit. */
static long raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}

/* ---- SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept ---- */
static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    uint8_t *buf = calloc(total, 1);
    if (!buf) die("calloc");
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) buf[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)buf[off + 4 * i] << 24 | (uint32_t)buf[off + 4 * i + 1] << 16 |
                   (uint32_t)buf[off + 4 * i + 2] << 8 | buf[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = rol32(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol32(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(buf);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24); out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8); out[4 * i + 3] = (uint8_t)h[i];
    }
}

static void base64(const uint8_t *in, size_t len, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    out[o] = 0;
}

/* Sec-WebSocket-Accept for a key (RFC 6455 section 4.2.2). out: >= 29 bytes. */
static void ws_accept(const char *key, size_t keylen, char *out) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[128];
    uint8_t digest[20];
    if (keylen > 64) keylen = 64;
    memcpy(buf, key, keylen);
    memcpy(buf + keylen, guid, sizeof guid - 1);
    sha1((const uint8_t *)buf, keylen + sizeof guid - 1, digest);
    base64(digest, 20, out);
}

/* Case-insensitive search for a header value in a request/response head. */
static const char *find_header(const char *head, const char *name, size_t *vlen) {
    size_t nlen = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ' || *v == '\t') v++;
            const char *end = strstr(v, "\r\n");
            if (!end) return NULL;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
            *vlen = (size_t)(end - v);
            return v;
        }
    }
    return NULL;
}

/* xorshift64*: cheap randomness for masking keys (not for cryptography). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static void rng_seed(void) {
    uint64_t s = now_ns() ^ ((uint64_t)getpid() << 32);
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) { if (read(fd, &s, sizeof s) < 0) s ^= 1; close(fd); }
    rng_state = s ? s : 1;
}

static volatile sig_atomic_t g_stop = 0;
static void on_stop_signal(int sig) { (void)sig; g_stop = 1; }
static void install_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

#endif
