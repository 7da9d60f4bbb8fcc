/* Client side shared by tcpload and wsload: non-blocking connections on one
 * epoll, the WebSocket client handshake and framing (masked frames, RFC 6455),
 * and the closed-loop echo driver (N connections x K messages in flight).
 *
 * Built with -DLG_TLS (the Makefile does so for tcpload when OpenSSL's headers
 * are installed), every connection can speak TLS instead: an OpenSSL client
 * driven by the same epoll loop with non-blocking SSL_do_handshake /
 * SSL_read / SSL_write.  Certificates are not verified (benchmark only); SNI
 * is sent (--sni, default "localhost").
 *
 * Built with -DLG_ZLIB (the Makefile does so for wsload when zlib's headers are
 * installed), a WebSocket client can offer permessage-deflate (RFC 7692,
 * --deflate): when the server accepts, every message it sends is compressed
 * (its own zlib stream per connection, context takeover unless negotiated
 * off) and every compressed message received is inflated and checked. */
#ifndef FASTSOCK_CLIENT_H
#define FASTSOCK_CLIENT_H

#include "lg.h"
#include <sys/epoll.h>
#ifdef LG_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif
#ifdef LG_ZLIB
#define ZLIB_CONST
#include <zlib.h>
#endif

/* C_TLS: TCP connected, TLS handshake in progress */
enum { C_IDLE, C_CONNECTING, C_TLS, C_HANDSHAKE, C_OPEN, C_DEAD };

typedef struct conn {
    int fd, state, idx;
#ifdef LG_TLS
    SSL *ssl;                   /* NULL on plain TCP */
#endif
#ifdef LG_ZLIB
    z_stream *zd, *zi;          /* permessage-deflate streams, NULL unless negotiated */
#endif
    uint8_t pmd;                /* permessage-deflate negotiated on this connection */
    uint8_t pmd_creset;         /* client_no_context_takeover: reset our compressor per message */
    uint8_t pmd_sreset;         /* server_no_context_takeover: every server message stands alone */
    uint8_t *in;                /* unparsed bytes kept between reads */
    size_t in_len, in_cap;
    uint8_t *out;               /* bytes the socket did not take yet */
    size_t out_len, out_cap;
    char accept[29];            /* expected Sec-WebSocket-Accept */
    /* echo driver */
    uint64_t *ring;             /* send times of the messages in flight */
    uint32_t *ring_off;         /* their offsets in the JSON pool (compressed JSON only) */
    uint32_t ring_head, ring_n;
    uint64_t rx_bytes, done;    /* raw TCP: bytes echoed, messages completed */
    /* c10k driver */
    uint32_t next_seq;          /* next broadcast sequence number expected */
    uint32_t pings_sent, pongs_ok;
    uint64_t t_connect;
} conn_t;

typedef struct {
    int ws;                     /* 1: WebSocket, 0: raw TCP */
    const char *host, *path;
    int port;
    struct sockaddr_in dst;
    int n_sources;              /* source addresses 127.0.0.1 .. 127.0.0.n (0: kernel's choice) */
    int ep;
    uint64_t errors;
    uint64_t open_dropped;      /* connections lost after their handshake */
    char last_error[160];
    int tls;                    /* 1: TLS over every connection (needs LG_TLS) */
    char tls_info[96];          /* negotiated version and cipher of the first connection */
    const char *sni;            /* server name sent in the TLS ClientHello */
    int deflate;                /* 1: offer permessage-deflate (needs LG_ZLIB) */
    const char *deflate_offer;  /* the Sec-WebSocket-Extensions value offered */
    int deflate_level;          /* zlib level of our compressor */
    char ext_info[160];         /* the extension the first connection's server accepted */
    uint64_t pmd_declined;      /* connections whose server answered without the extension */
    uint8_t *zbuf;              /* inflate / deflate scratch */
    size_t zbuf_cap;
#ifdef LG_TLS
    SSL_CTX *ssl_ctx;
#endif
} client_t;

static client_t CL;
static uint8_t rbuf[256 * 1024];
static uint8_t *sbuf;           /* frames built while handling one read */
static size_t sbuf_len, sbuf_cap;

static void note_error(const char *what, int err) {
    CL.errors++;
    snprintf(CL.last_error, sizeof CL.last_error, "%s: %s", what, err ? strerror(err) : "protocol");
}

static int grow(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    uint8_t *nb = realloc(*buf, c);
    if (!nb) return -1;
    *buf = nb; *cap = c;
    return 0;
}

static void sbuf_put(const void *p, size_t n) {
    if (grow(&sbuf, &sbuf_cap, sbuf_len + n) < 0) die("realloc");
    memcpy(sbuf + sbuf_len, p, n);
    sbuf_len += n;
}

static void conn_drop(conn_t *c, const char *why, int err) {
    if (c->state == C_DEAD) return;
    if (why) note_error(why, err);
    if (c->state == C_OPEN) CL.open_dropped++;
#ifdef LG_TLS
    if (c->ssl) { SSL_free(c->ssl); c->ssl = NULL; }
#endif
#ifdef LG_ZLIB
    if (c->zd) { deflateEnd(c->zd); free(c->zd); c->zd = NULL; }
    if (c->zi) { inflateEnd(c->zi); free(c->zi); c->zi = NULL; }
#endif
    c->pmd = 0;
    epoll_ctl(CL.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
    free(c->in); c->in = NULL; c->in_len = c->in_cap = 0;
    free(c->out); c->out = NULL; c->out_len = c->out_cap = 0;
}

/* ---- byte I/O: plain send/recv, or SSL_write/SSL_read on a TLS connection ---- */
enum { IO_AGAIN = -1, IO_FAILED = -2 };

#ifdef LG_TLS
/* OpenSSL's reason for the last failure, for last_error. */
static void note_tls_error(conn_t *c, const char *what, int ssl_err) {
    char buf[120];
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    else if (ssl_err == SSL_ERROR_SYSCALL && errno) snprintf(buf, sizeof buf, "%s", strerror(errno));
    else snprintf(buf, sizeof buf, "SSL error %d", ssl_err);
    ERR_clear_error();
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s", what, buf);
    CL.errors++;
    snprintf(CL.last_error, sizeof CL.last_error, "%s", msg);
    conn_drop(c, NULL, 0);
}
#endif

/* Writes what the socket takes now: bytes written (> 0), IO_AGAIN, or
 * IO_FAILED (the connection has been dropped). */
static ssize_t io_send(conn_t *c, const uint8_t *p, size_t n) {
#ifdef LG_TLS
    if (c->ssl) {
        int w = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (w > 0) return w;
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return IO_AGAIN;
        note_tls_error(c, "SSL_write", e);
        return IO_FAILED;
    }
#endif
    for (;;) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w >= 0) return w;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return IO_AGAIN;
        conn_drop(c, "send", errno);
        return IO_FAILED;
    }
}

/* Reads into buf: bytes read (> 0), 0 at the peer's EOF (or TLS close_notify),
 * IO_AGAIN, or IO_FAILED (dropped).  A TLS connection reads records until the
 * socket is drained or buf is full; io_more() says whether decrypted or
 * buffered bytes are still waiting (epoll cannot see those). */
static ssize_t io_recv(conn_t *c, uint8_t *buf, size_t cap) {
#ifdef LG_TLS
    if (c->ssl) {
        size_t got = 0;
        while (got < cap) {
            int r = SSL_read(c->ssl, buf + got, cap - got > INT_MAX ? INT_MAX : (int)(cap - got));
            if (r > 0) { got += (size_t)r; continue; }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
            if (got) break;                     /* report the data now, the end next call */
            if (e == SSL_ERROR_ZERO_RETURN) return 0;
            if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) { ERR_clear_error(); return 0; }
            note_tls_error(c, "SSL_read", e);
            return IO_FAILED;
        }
        return got ? (ssize_t)got : IO_AGAIN;
    }
#endif
    for (;;) {
        ssize_t r = recv(c->fd, buf, cap, 0);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return IO_AGAIN;
        conn_drop(c, "recv", errno);
        return IO_FAILED;
    }
}

static int io_more(conn_t *c) {
#ifdef LG_TLS
    return c->ssl && c->state != C_DEAD && SSL_has_pending(c->ssl);
#else
    (void)c;
    return 0;
#endif
}

static void conn_send(conn_t *c, const void *data, size_t n) {
    const uint8_t *p = data;
    if (c->state == C_DEAD) return;
    if (c->out_len == 0) {
        while (n) {
            ssize_t w = io_send(c, p, n);
            if (w == IO_FAILED) return;
            if (w == IO_AGAIN) break;
            p += w; n -= (size_t)w;
        }
        if (!n) return;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(CL.ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    if (grow(&c->out, &c->out_cap, c->out_len + n) < 0) { conn_drop(c, "out of memory", ENOMEM); return; }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* A TLS write that returned IO_AGAIN is retried from the start of `out`, which
 * begins with the same bytes (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows the move). */
static void conn_flush(conn_t *c) {
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t w = io_send(c, c->out + off, c->out_len - off);
        if (w == IO_FAILED) return;
        if (w == IO_AGAIN) break;
        off += (size_t)w;
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    if (!c->out_len) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(CL.ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

/* Starts a non-blocking connect; the socket reports writable when done. */
static int conn_start(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { note_error("socket", errno); c->state = C_DEAD; return -1; }
    if (CL.n_sources > 1) {     /* spread over 127.0.0.x to widen the 4-tuple space */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7F000001u + (uint32_t)(c->idx % CL.n_sources));
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            note_error("bind source address", errno); close(fd); c->state = C_DEAD; return -1;
        }
    }
    set_nodelay(fd);
    c->fd = fd;
    c->t_connect = now_ns();
    int r = connect(fd, (struct sockaddr *)&CL.dst, sizeof CL.dst);
    if (r < 0 && errno != EINPROGRESS) { note_error("connect", errno); close(fd); c->fd = -1; c->state = C_DEAD; return -1; }
    c->state = C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(CL.ep, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

/* ---- WebSocket framing (client side: frames we send are masked) ---- */

/* Builds one masked frame at out (room: len + 14); returns its size. */
static size_t ws_build_masked(uint8_t *out, int b0, const uint8_t *pl, size_t len) {
    size_t h = 2;
    out[0] = (uint8_t)b0;
    if (len < 126) out[1] = 0x80 | (uint8_t)len;
    else if (len < 65536) { out[1] = 0x80 | 126; out[2] = (uint8_t)(len >> 8); out[3] = (uint8_t)len; h = 4; }
    else { out[1] = 0x80 | 127; for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i)); h = 10; }
    uint32_t key = (uint32_t)rng_next();
    uint8_t *m = out + h;
    memcpy(m, &key, 4);
    uint8_t *dst = out + h + 4;
    for (size_t i = 0; i < len; i++) dst[i] = pl[i] ^ m[i & 3];
    return h + 4 + len;
}

/* Parses one unmasked server frame: returns its total size, 0 when
 * incomplete, -1 when the frame is invalid for a client to receive. */
static long ws_parse(const uint8_t *p, size_t n, int *b0, const uint8_t **pl, size_t *len) {
    if (n < 2) return 0;
    if (p[1] & 0x80) return -1;         /* servers must not mask */
    uint64_t l = p[1] & 0x7F;
    size_t h = 2;
    if (l == 126) { if (n < 4) return 0; l = (uint64_t)p[2] << 8 | p[3]; h = 4; }
    else if (l == 127) {
        if (n < 10) return 0;
        l = 0;
        for (int i = 0; i < 8; i++) l = l << 8 | p[2 + i];
        h = 10;
    }
    if (l > (1ull << 30)) return -1;
    if (n < h + l) return 0;
    *b0 = p[0]; *pl = p + h; *len = (size_t)l;
    return (long)(h + l);
}

/* The next server frame in p[*off..n) for the caller's loop, past the ones
 * every tool treats alike: a PING is answered with its PONG (so keepalives
 * never fail us), a CLOSE or an invalid frame drops the connection.  Returns
 * 1 with the frame's first byte and payload (*off moved past it), 0 when the
 * rest is incomplete, -1 once the connection is dropped (the caller returns n). */
static int ws_next_frame(conn_t *c, const uint8_t *p, size_t n, size_t *off,
                         int *b0, const uint8_t **pl, size_t *len) {
    while (*off < n) {
        long fl = ws_parse(p + *off, n - *off, b0, pl, len);
        if (fl == 0) return 0;
        if (fl < 0) { conn_drop(c, "bad frame from server", 0); return -1; }
        *off += (size_t)fl;
        int op = *b0 & 0x0F;
        if (op == 0x9) {
            uint8_t pong[140];
            sbuf_put(pong, ws_build_masked(pong, 0x8A, *pl, *len > 125 ? 125 : *len));
        } else if (op == 0x8) {
            conn_drop(c, "server sent close", 0); return -1;
        } else {
            return 1;
        }
    }
    return 0;
}

/* ---- permessage-deflate (RFC 7692) ---- */
static const uint8_t PMD_TAIL[4] = {0x00, 0x00, 0xFF, 0xFF};

/* Takes the server's Sec-WebSocket-Extensions answer: one permessage-deflate
 * with parameters we can honour.  Returns 0, or -1 to fail the connection as
 * RFC 7692 section 5 asks. */
static int pmd_accept(conn_t *c, const char *v, size_t vlen) {
#ifdef LG_ZLIB
    char buf[256];
    if (vlen >= sizeof buf) return -1;
    memcpy(buf, v, vlen);
    buf[vlen] = 0;
    int first = 1, cbits = 15;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ";", &save); tok; tok = strtok_r(NULL, ";", &save), first = 0) {
        while (*tok == ' ' || *tok == '\t') tok++;
        char *end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
        if (first) { if (strcmp(tok, "permessage-deflate")) return -1; continue; }
        char *eq = strchr(tok, '=');
        if (eq) *eq++ = 0;
        if (!strcmp(tok, "client_no_context_takeover") && !eq) c->pmd_creset = 1;
        else if (!strcmp(tok, "server_no_context_takeover") && !eq) c->pmd_sreset = 1;
        else if (!strcmp(tok, "client_max_window_bits") && eq) {
            cbits = atoi(eq);
            if (cbits < 8 || cbits > 15) return -1;
        } else if (!strcmp(tok, "server_max_window_bits") && eq) {
            int b = atoi(eq);          /* our inflater keeps 15 bits: any smaller window fits */
            if (b < 8 || b > 15) return -1;
        } else return -1;
    }
    if (first) return -1;
    if (cbits == 8) cbits = 9;         /* zlib's raw deflate cannot make 8-bit windows; 9 is what it emits */
    c->zd = calloc(1, sizeof *c->zd);
    c->zi = calloc(1, sizeof *c->zi);
    if (!c->zd || !c->zi || deflateInit2(c->zd, CL.deflate_level, Z_DEFLATED, -cbits, 8, Z_DEFAULT_STRATEGY) != Z_OK ||
        inflateInit2(c->zi, -15) != Z_OK) return -1;
    c->pmd = 1;
    if (!CL.ext_info[0]) snprintf(CL.ext_info, sizeof CL.ext_info, "%.*s", (int)vlen, v);
    return 0;
#else
    (void)c; (void)v; (void)vlen;
    return -1;
#endif
}

/* Compresses one message into out (room: pmd_room(n)); returns its size
 * without the 00 00 FF FF tail, or 0 when zlib failed. */
static size_t pmd_room(size_t n) { return n + n / 8 + 64; }
static size_t pmd_deflate(conn_t *c, const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
#ifdef LG_ZLIB
    z_stream *z = c->zd;
    z->next_in = in; z->avail_in = (uInt)n;
    z->next_out = out; z->avail_out = (uInt)cap;
    int r = deflate(z, Z_SYNC_FLUSH);
    if ((r != Z_OK && r != Z_BUF_ERROR) || z->avail_in || z->avail_out == 0) return 0;
    size_t len = cap - z->avail_out;
    if (len >= 4 && !memcmp(out + len - 4, PMD_TAIL, 4)) len -= 4;
    if (c->pmd_creset) deflateReset(z);
    return len;
#else
    (void)c; (void)in; (void)n; (void)out; (void)cap;
    return 0;
#endif
}

/* Inflates one compressed message into out.  prefix > 0: only its first
 * `prefix` bytes are wanted (valid when the server resets its context per
 * message).  Returns the inflated size (or the prefix size), -1 when the data
 * is not valid deflate or does not fit in cap. */
static long pmd_inflate(conn_t *c, const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t prefix) {
#ifdef LG_ZLIB
    z_stream *z = c->zi;
    if (c->pmd_sreset || prefix) inflateReset(z);
    size_t want = prefix ? prefix : cap;
    z->next_out = out; z->avail_out = (uInt)want;
    for (int part = 0; part < 2; part++) {
        z->next_in = part ? PMD_TAIL : in;
        z->avail_in = part ? 4 : (uInt)n;
        while (z->avail_in) {
            int r = inflate(z, Z_SYNC_FLUSH);
            if (prefix && z->avail_out == 0) return (long)prefix;
            if (r == Z_STREAM_END) break;
            if (r == Z_BUF_ERROR && z->avail_out == 0) return -1;   /* bigger than cap */
            if (r != Z_OK && r != Z_BUF_ERROR) return -1;
            if (r == Z_BUF_ERROR) break;
        }
    }
    return (long)(want - z->avail_out);
#else
    (void)c; (void)in; (void)n; (void)out; (void)cap; (void)prefix;
    return -1;
#endif
}

/* Room for one message's compressed or inflated bytes. */
static void pmd_reserve(size_t n) {
    if (grow(&CL.zbuf, &CL.zbuf_cap, pmd_room(n)) < 0) die("realloc");
}

/* Appends room for n bytes at the end of sbuf and returns where they go. */
static uint8_t *sbuf_room(size_t n) {
    if (grow(&sbuf, &sbuf_cap, sbuf_len + n) < 0) die("realloc");
    return sbuf + sbuf_len;
}

/* Queues one data message (opcode op) on c: compressed when negotiated. */
static void ws_put_message(conn_t *c, int op, const uint8_t *pl, size_t n, uint64_t *wire) {
    if (c->pmd) {
        pmd_reserve(n);
        size_t z = pmd_deflate(c, pl, n, CL.zbuf, CL.zbuf_cap);
        if (!z) { note_error("deflate failed", 0); return; }
        sbuf_len += ws_build_masked(sbuf_room(z + 14), 0xC0 | op, CL.zbuf, z);
        if (wire) *wire += z;
    } else {
        sbuf_len += ws_build_masked(sbuf_room(n + 14), 0x80 | op, pl, n);
        if (wire) *wire += n;
    }
}

/* JSON-like text (records with varied numbers and words, as an API would
 * send): compresses about as well as real JSON does, unlike a repeated
 * alphabet.  Deterministic for a given seed. */
static void fill_json(uint8_t *p, size_t n, uint64_t seed) {
    static const char *words[] = {"update", "create", "delete", "read", "subscribe", "price", "order",
                                  "quote", "trade", "user", "session", "status"};
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t o = 0;
    char rec[256];
    if (n) p[o++] = '[';
    while (o < n) {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        uint64_t r = s * 0x2545F4914F6CDD1Dull;
        int k = snprintf(rec, sizeof rec,
                         "{\"id\":%llu,\"user\":\"user_%llu\",\"action\":\"%s\",\"symbol\":\"%c%c%c\","
                         "\"price\":%llu.%02llu,\"qty\":%llu,\"ok\":%s},",
                         (unsigned long long)(r % 1000000), (unsigned long long)((r >> 20) % 5000),
                         words[(r >> 8) % 12], 'A' + (int)((r >> 30) % 26), 'A' + (int)((r >> 35) % 26),
                         'A' + (int)((r >> 40) % 26), (unsigned long long)((r >> 24) % 10000),
                         (unsigned long long)((r >> 44) % 100), (unsigned long long)((r >> 50) % 500),
                         (r >> 63) ? "true" : "false");
        for (int i = 0; i < k && o < n; i++) p[o++] = (uint8_t)rec[i];
    }
    if (n > 1) p[n - 1] = ']';
}

static void ws_send_handshake(conn_t *c) {
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) { uint64_t r = rng_next(); memcpy(raw + i, &r, 8); }
    char key[32], req[1024];
    base64(raw, 16, key);
    ws_accept(key, strlen(key), c->accept);
    char ext[300] = "";
    if (CL.deflate) snprintf(ext, sizeof ext, "Sec-WebSocket-Extensions: %s\r\n", CL.deflate_offer);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     CL.path, CL.host, CL.port, key, ext);
    conn_send(c, req, (size_t)n);
}

/* Checks the 101 response; returns bytes of head consumed, 0 if incomplete, -1 bad. */
static long ws_check_response(conn_t *c, uint8_t *p, size_t n) {
    uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) return n > 8192 ? -1 : 0;
    size_t used = (size_t)(end - p) + 4;
    char head[8200];
    if (used > sizeof head - 1) return -1;
    memcpy(head, p, used);
    head[used] = 0;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) return -1;
    size_t vlen;
    const char *v = find_header(head, "Sec-WebSocket-Accept", &vlen);
    if (!v || vlen != strlen(c->accept) || memcmp(v, c->accept, vlen) != 0) return -1;
    const char *ext = find_header(head, "Sec-WebSocket-Extensions", &vlen);
    if (ext) {
        if (!CL.deflate || pmd_accept(c, ext, vlen) < 0) return -1;   /* not what we offered */
    } else if (CL.deflate) {
        CL.pmd_declined++;
    }
    return (long)used;
}

/* Hooks of the driver using these connections. */
typedef struct {
    void (*on_open)(conn_t *c);
    /* consumes bytes of an open connection; returns bytes used (< n leaves a tail) */
    size_t (*on_data)(conn_t *c, uint8_t *p, size_t n);
    void (*on_fail)(conn_t *c);
} hooks_t;

/* Hands the bytes just read (in rbuf) to the handshake check or the driver. */
static void conn_consume(conn_t *c, size_t n, const hooks_t *hk) {
    uint8_t *p = rbuf;
    if (c->in_len) {
        if (grow(&c->in, &c->in_cap, c->in_len + n) < 0) { conn_drop(c, "out of memory", ENOMEM); return; }
        memcpy(c->in + c->in_len, rbuf, n);
        c->in_len += n;
        p = c->in; n = c->in_len;
    }
    size_t used = 0;
    if (c->state == C_HANDSHAKE) {
        long h = ws_check_response(c, p, n);
        if (h < 0) { conn_drop(c, "bad handshake response", 0); hk->on_fail(c); return; }
        if (h > 0) {
            used = (size_t)h;
            c->state = C_OPEN;
            hk->on_open(c);
        }
    }
    sbuf_len = 0;
    if (c->state == C_OPEN && n > used) used += hk->on_data(c, p + used, n - used);
    if (sbuf_len && c->state == C_OPEN) conn_send(c, sbuf, sbuf_len);
    if (c->state == C_DEAD) return;
    size_t rest = n - used;
    if (p == c->in) {
        memmove(c->in, c->in + used, rest);
        c->in_len = rest;
        if (!rest) { free(c->in); c->in = NULL; c->in_cap = 0; }
    } else if (rest) {
        if (grow(&c->in, &c->in_cap, rest) < 0) { conn_drop(c, "out of memory", ENOMEM); return; }
        memcpy(c->in, p + used, rest);
        c->in_len = rest;
    }
}

/* The transport is up (TCP connected, and TLS done when asked for). */
static void conn_ready(conn_t *c, const hooks_t *hk) {
    struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(CL.ep, EPOLL_CTL_MOD, c->fd, &ev);
    if (CL.ws) { c->state = C_HANDSHAKE; ws_send_handshake(c); }
    else { c->state = C_OPEN; hk->on_open(c); }
}

#ifdef LG_TLS
/* One step of the non-blocking TLS client handshake. */
static void tls_handshake_step(conn_t *c, const hooks_t *hk) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        if (!CL.tls_info[0])
            snprintf(CL.tls_info, sizeof CL.tls_info, "%s %s", SSL_get_version(c->ssl),
                     SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl)));
        conn_ready(c, hk);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        struct epoll_event ev = {.events = EPOLLIN | (e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(CL.ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    note_tls_error(c, "TLS handshake", e);
    hk->on_fail(c);
}

static void tls_start(conn_t *c, const hooks_t *hk) {
    c->ssl = SSL_new(CL.ssl_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) { note_tls_error(c, "SSL_new", 0); hk->on_fail(c); return; }
    SSL_set_connect_state(c->ssl);
    if (CL.sni && *CL.sni) SSL_set_tlsext_host_name(c->ssl, CL.sni);
    c->state = C_TLS;
    tls_handshake_step(c, hk);
}

/* Verification is off on purpose: the benchmark's certificate is made at run
 * time, and what is measured is the servers' record layer, not the PKI. */
static void tls_init(void) {
    CL.ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!CL.ssl_ctx) { fprintf(stderr, "error: SSL_CTX_new failed\n"); exit(2); }
    SSL_CTX_set_verify(CL.ssl_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(CL.ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(CL.ssl_ctx, 1);     /* fewer recv() calls; io_more() covers the buffer */
}
#endif

static void conn_event(conn_t *c, uint32_t events, const hooks_t *hk) {
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) { conn_drop(c, "connect", err); hk->on_fail(c); return; }
#ifdef LG_TLS
        if (CL.tls) { tls_start(c, hk); return; }
#endif
        conn_ready(c, hk);
        return;
    }
#ifdef LG_TLS
    if (c->state == C_TLS) { tls_handshake_step(c, hk); return; }
    /* a TLS write may wait for a read (and the reverse): retry on any event */
    if (c->ssl && c->out_len) conn_flush(c);
    else
#endif
    if (events & EPOLLOUT) conn_flush(c);
    if (c->state == C_DEAD || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    do {
        int was_open = c->state == C_OPEN;
        ssize_t r = io_recv(c, rbuf, sizeof rbuf);
        if (r == IO_AGAIN) return;
        if (r == IO_FAILED || r == 0) {
            if (r == 0) conn_drop(c, "server closed the connection", ECONNRESET);
            if (!was_open) hk->on_fail(c);
            return;
        }
        conn_consume(c, (size_t)r, hk);
    } while (io_more(c));
}
static void client_init(int ws, const char *prog) {
    CL.ws = ws;
    if (parse_addr(CL.host, CL.port, &CL.dst) < 0) usage_error(prog, "bad IPv4 host", CL.host);
#ifdef LG_TLS
    if (CL.tls) tls_init();
#else
    if (CL.tls) usage_error(prog, "--tls: built without OpenSSL (install libssl-dev, then make -C benchmarks/loadgen)", NULL);
#endif
#ifndef LG_ZLIB
    if (CL.deflate) usage_error(prog, "--deflate: built without zlib (install zlib1g-dev, then make -C benchmarks/loadgen)", NULL);
#endif
    if (!CL.deflate_offer) CL.deflate_offer = "permessage-deflate; client_max_window_bits";
    if (!CL.sni) CL.sni = "localhost";
    CL.ep = epoll_create1(0);
    if (CL.ep < 0) die("epoll_create1");
    rng_seed();
    install_stop_signals();
}

/* Ends every open connection politely so servers see a normal close, not a
 * reset: a WebSocket close frame (1000) or a TCP half-close, then waits up to
 * `timeout` seconds for the server to close its side.  Outside any measurement. */
static void close_all(conn_t *cs, int n, double timeout) {
    int waiting = 0;
    for (int i = 0; i < n; i++) {
        conn_t *c = &cs[i];
        if (c->state != C_OPEN && c->state != C_HANDSHAKE && c->state != C_CONNECTING && c->state != C_TLS)
            continue;
        if (c->state == C_OPEN && CL.ws) {
            uint8_t fr[16], code[2] = {0x03, 0xE8};
            conn_send(c, fr, ws_build_masked(fr, 0x88, code, 2));
        } else if (c->state == C_OPEN) {
#ifdef LG_TLS
            if (c->ssl) SSL_shutdown(c->ssl);  /* close_notify first, as a TLS client should */
#endif
            shutdown(c->fd, SHUT_WR);
        }
        if (c->state == C_DEAD) continue;
        if (c->state != C_OPEN) { conn_drop(c, NULL, 0); continue; }
        c->state = C_HANDSHAKE;       /* reused as "closing": only EOF matters now */
        struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(CL.ep, EPOLL_CTL_MOD, c->fd, &ev);
        waiting++;
    }
    uint64_t deadline = now_ns() + (uint64_t)(timeout * 1e9);
    struct epoll_event evs[1024];
    while (waiting > 0 && now_ns() < deadline) {
        int k = epoll_wait(CL.ep, evs, 1024, 20);
        for (int i = 0; i < k; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->state == C_DEAD) continue;
            if (evs[i].events & EPOLLOUT) conn_flush(c);
            if (c->state == C_DEAD) { waiting--; continue; }
            ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                c->state = C_HANDSHAKE;
                conn_drop(c, NULL, 0);
                waiting--;
            }
        }
    }
    for (int i = 0; i < n; i++) if (cs[i].state != C_DEAD && cs[i].fd >= 0) conn_drop(&cs[i], NULL, 0);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
}

/* ================= closed-loop echo driver ================= */

static struct {
    int conns, size, inflight, binary;
    double duration, warmup, connect_timeout;
    uint64_t max_messages;
    uint8_t *frames[16];        /* pre-masked frames, each with its own key */
    size_t frame_len;
    uint8_t *payload;
    uint64_t t_measure, t_end;
    int running;
    uint64_t total, measured;   /* messages completed: all / inside the window */
    hist_t hist;
    int opened, failed;
    int json;                   /* payload: JSON-like text instead of a repeated alphabet */
    uint8_t *pool;              /* compressed JSON: each message is a SIZE-byte window of this */
    size_t pool_len;
    uint64_t tx_msgs, tx_wire;  /* messages sent and their payload bytes on the wire */
    uint64_t rx_compressed;     /* replies that came compressed (RSV1) */
} E;

/* Parses the WebSocket-only options echo and c10k share; returns 1 when
 * argv[*i] was one of them (with *i moved past its value). */
static int ws_common_option(const char *prog, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (!strcmp(a, "--tls")) { CL.tls = 1; return 1; }
    if (!strcmp(a, "--deflate")) { CL.deflate = 1; return 1; }
    if (strcmp(a, "--sni") && strcmp(a, "--deflate-params") && strcmp(a, "--deflate-level")) return 0;
    if (*i + 1 >= argc) usage_error(prog, "missing value for", a);
    const char *v = argv[++*i];
    if (!strcmp(a, "--sni")) CL.sni = v;
    else if (!strcmp(a, "--deflate-level")) CL.deflate_level = (int)parse_long(prog, a, v, 0, 9);
    else {   /* --deflate-params: the offer's parameters, e.g. "client_no_context_takeover" */
        static char offer[256];
        if (strlen(v) > 200 || strchr(v, '\r') || strchr(v, '\n')) usage_error(prog, "bad --deflate-params", v);
        snprintf(offer, sizeof offer, "permessage-deflate%s%s", *v ? "; " : "", v);
        CL.deflate_offer = offer;
        CL.deflate = 1;
    }
    return 1;
}

/* The "deflate" and "tls" members of a result line (with a leading comma). */
static void print_transport_json(FILE *f) {
    if (CL.tls) { fprintf(f, ",\"tls\":"); json_str(f, CL.tls_info); }
    if (CL.deflate) {
        fprintf(f, ",\"deflate\":{\"offer\":");
        json_str(f, CL.deflate_offer);
        fprintf(f, ",\"accepted\":");
        json_str(f, CL.ext_info);
        fprintf(f, ",\"declined\":%llu,\"level\":%d}", (unsigned long long)CL.pmd_declined, CL.deflate_level);
    }
}

/* The message a compressed send carries: with JSON, a window at a random
 * offset of a large pool, so that the compressor's window never holds the
 * same message again (every message identical would compress to one
 * back-reference, which no real application sees). */
static const uint8_t *echo_payload(conn_t *c, uint32_t slot) {
    if (!E.pool) return E.payload;
    uint32_t off = (uint32_t)(rng_next() % (E.pool_len - (size_t)E.size + 1));
    c->ring_off[slot] = off;
    return E.pool + off;
}

static void echo_send_one(conn_t *c) {
    uint32_t slot = (c->ring_head + c->ring_n) % (uint32_t)E.inflight;
    c->ring[slot] = now_ns();
    c->ring_n++;
    E.tx_msgs++;
    if (c->pmd) ws_put_message(c, E.binary ? 2 : 1, echo_payload(c, slot), (size_t)E.size, &E.tx_wire);
    else if (CL.ws) { sbuf_put(E.frames[rng_next() & 15], E.frame_len); E.tx_wire += (uint64_t)E.size; }
    else sbuf_put(E.payload, (size_t)E.size);
}

static void echo_complete(conn_t *c) {
    uint64_t now = now_ns();
    if (c->ring_n) {
        uint64_t sent = c->ring[c->ring_head];
        c->ring_head = (c->ring_head + 1) % (uint32_t)E.inflight;
        c->ring_n--;
        if (now >= E.t_measure && now < E.t_end) {
            hist_add(&E.hist, now - sent);
            E.measured++;
        }
    }
    E.total++;
    if (E.running && now < E.t_end && E.total < E.max_messages) echo_send_one(c);
}

static void echo_on_open(conn_t *c) { E.opened++; (void)c; }
static void echo_on_fail(conn_t *c) { E.failed++; (void)c; }

static size_t echo_on_data(conn_t *c, uint8_t *p, size_t n) {
    if (!CL.ws) {
        c->rx_bytes += n;
        while (c->rx_bytes >= (c->done + 1) * (uint64_t)E.size) { c->done++; echo_complete(c); }
        return n;
    }
    size_t off = 0;
    int b0, got; const uint8_t *pl; size_t len;
    while ((got = ws_next_frame(c, p, n, &off, &b0, &pl, &len)) > 0) {
        int op = b0 & 0x0F;
        if (op == 1 || op == 2) {
            if (b0 & 0x40) {        /* compressed: inflate and compare with what we sent */
                if (!c->pmd) { conn_drop(c, "RSV1 without permessage-deflate", 0); return n; }
                pmd_reserve((size_t)E.size);
                long m = pmd_inflate(c, pl, len, CL.zbuf, CL.zbuf_cap, 0);
                const uint8_t *sent = E.pool && c->ring_n ? E.pool + c->ring_off[c->ring_head] : E.payload;
                if (m != E.size || memcmp(CL.zbuf, sent, (size_t)E.size) != 0)
                    note_error("echo mismatch (inflated message differs)", 0);
                E.rx_compressed++;
                len = (size_t)m;
            }
            if ((op == 2) != E.binary || len != (size_t)E.size || !(b0 & 0x80)) {
                note_error("echo mismatch (type, size or fragmentation)", 0);
            }
            echo_complete(c);
        }
    }
    return got < 0 ? n : off;
}

static void echo_usage(const char *prog, int ws) {
    printf("usage: %s --port N [--host 127.0.0.1] [--connections 50] [--size 64] [--inflight 1]\n"
           "       [--duration 5] [--warmup 1] [--max-messages N] [--connect-timeout 10] [--tls [--sni NAME]]%s\n"
           "Closed-loop echo load: every connection keeps INFLIGHT messages of SIZE bytes\n"
           "outstanding; prints one JSON line with msgs/s, MB/s, latency percentiles, errors.\n"
           "--tls: every connection speaks TLS (OpenSSL, certificate not verified, SNI NAME, default localhost)"
#ifndef LG_TLS
           "; not in this build (no OpenSSL headers)"
#endif
           "\n%s",
           prog, ws ? "\n       [--text|--binary] [--payload alpha|json] [--path /]\n"
                      "       [--deflate] [--deflate-params 'client_max_window_bits; ...'] [--deflate-level 6]" : "",
           ws ? "--payload json: JSON-like text records instead of a repeated alphabet\n"
                "--deflate: offer permessage-deflate (default offer: client_max_window_bits); when the server\n"
                "  accepts, messages are compressed per connection and compressed replies inflated and checked;\n"
                "  --deflate-params replaces the offer's parameters and implies --deflate"
#ifndef LG_ZLIB
                "; not in this build (no zlib headers)"
#endif
                "\n" : "");
}

static const hooks_t echo_hooks = {echo_on_open, echo_on_data, echo_on_fail};

static int echo_main(int argc, char **argv, int ws) {
    const char *prog = ws ? "wsload" : "tcpload";
    CL.host = "127.0.0.1"; CL.path = "/"; CL.port = -1; CL.deflate_level = 6;
    E.conns = 50; E.size = 64; E.inflight = 1; E.duration = 5; E.warmup = 1;
    E.connect_timeout = 10; E.max_messages = UINT64_MAX;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { echo_usage(prog, ws); exit(0); }
        if (ws && !strcmp(a, "--text")) { E.binary = 0; continue; }
        if (ws && !strcmp(a, "--binary")) { E.binary = 1; continue; }
        if (!ws && !strcmp(a, "--tls")) { CL.tls = 1; continue; }
        if (!ws && !strcmp(a, "--sni")) { if (i + 1 >= argc) usage_error(prog, "missing value for", a); CL.sni = argv[++i]; continue; }
        if (ws && ws_common_option(prog, argc, argv, &i)) continue;
        if (!strcmp(a, "--mode")) { i++; continue; }   /* "echo", checked by the caller */
        if (i + 1 >= argc) usage_error(prog, "missing value for", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) CL.host = v;
        else if (!strcmp(a, "--port")) CL.port = (int)parse_long(prog, a, v, 1, 65535);
        else if (!strcmp(a, "--path") && ws) CL.path = v;
        else if (!strcmp(a, "--payload") && ws) {
            if (!strcmp(v, "json")) E.json = 1;
            else if (strcmp(v, "alpha")) usage_error(prog, "--payload must be alpha or json", v);
        }
        else if (!strcmp(a, "--connections")) E.conns = (int)parse_long(prog, a, v, 1, 100000);
        else if (!strcmp(a, "--size")) E.size = (int)parse_long(prog, a, v, 1, 16 << 20);
        else if (!strcmp(a, "--inflight")) E.inflight = (int)parse_long(prog, a, v, 1, 4096);
        else if (!strcmp(a, "--duration")) E.duration = parse_double(prog, a, v, 0.01, 600);
        else if (!strcmp(a, "--warmup")) E.warmup = parse_double(prog, a, v, 0, 60);
        else if (!strcmp(a, "--connect-timeout")) E.connect_timeout = parse_double(prog, a, v, 0.1, 120);
        else if (!strcmp(a, "--max-messages")) E.max_messages = (uint64_t)parse_long(prog, a, v, 1, LONG_MAX);
        else usage_error(prog, "unknown option", a);
    }
    if (CL.port < 0) usage_error(prog, "--port is required", NULL);
    client_init(ws, prog);
    raise_nofile();

    E.payload = malloc((size_t)E.size);
    for (int i = 0; i < E.size; i++) E.payload[i] = E.binary ? (uint8_t)(i * 31 + 7) : (uint8_t)('a' + i % 26);
    if (E.json) fill_json(E.payload, (size_t)E.size, 1);
    if (E.json && CL.deflate) {
        E.pool_len = (size_t)E.size * 64 > (4u << 20) ? (size_t)E.size * 64 : (4u << 20);
        E.pool = malloc(E.pool_len);
        if (!E.pool) die("malloc");
        fill_json(E.pool, E.pool_len, 2);
    }
    if (ws) {
        for (int k = 0; k < 16; k++) {
            E.frames[k] = malloc((size_t)E.size + 14);
            E.frame_len = ws_build_masked(E.frames[k], 0x80 | (E.binary ? 2 : 1), E.payload, (size_t)E.size);
        }
    }
    conn_t *conns = calloc((size_t)E.conns, sizeof *conns);
    uint64_t t0 = now_ns();
    for (int i = 0; i < E.conns; i++) {
        conns[i].idx = i;
        conns[i].ring = calloc((size_t)E.inflight, sizeof(uint64_t));
        if (E.pool) conns[i].ring_off = calloc((size_t)E.inflight, sizeof(uint32_t));
        if (conn_start(&conns[i]) < 0) E.failed++;
    }
    struct epoll_event evs[1024];
    uint64_t connect_deadline = t0 + (uint64_t)(E.connect_timeout * 1e9);
    uint64_t t_connected = 0, t_run = 0;
    while (!g_stop) {
        uint64_t now = now_ns();
        if (!t_run) {
            if (E.opened + E.failed >= E.conns || now >= connect_deadline) {
                t_connected = now;
                t_run = now;
                E.t_measure = now + (uint64_t)(E.warmup * 1e9);
                E.t_end = E.t_measure + (uint64_t)(E.duration * 1e9);
                E.running = 1;
                for (int i = 0; i < E.conns; i++) {
                    conn_t *c = &conns[i];
                    if (c->state != C_OPEN) continue;
                    sbuf_len = 0;
                    for (int k = 0; k < E.inflight; k++) echo_send_one(c);
                    conn_send(c, sbuf, sbuf_len);
                }
                if (E.opened == 0) break;
            }
        } else if (now >= E.t_end || E.total >= E.max_messages) {
            break;
        }
        int n = epoll_wait(CL.ep, evs, 1024, 5);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < n; i++) conn_event(evs[i].data.ptr, evs[i].events, &echo_hooks);
    }
    uint64_t t_stop = now_ns();
    int alive = 0;
    for (int i = 0; i < E.conns; i++) alive += conns[i].state == C_OPEN;
    E.running = 0;
    close_all(conns, E.conns, 2.0);
    double window = 0;
    if (t_run) {
        uint64_t end = t_stop < E.t_end ? t_stop : E.t_end;
        window = end > E.t_measure ? (end - E.t_measure) / 1e9 : 0;
    }
    double mps = window > 0 ? E.measured / window : 0;
    printf("{\"tool\":\"%s\",\"mode\":\"echo\",\"connections\":%d,\"connected\":%d,\"alive\":%d,"
           "\"size\":%d,\"inflight\":%d,\"type\":\"%s\",\"connect_s\":%.4f,\"duration_s\":%.3f,"
           "\"messages\":%llu,\"messages_total\":%llu,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,",
           prog, E.conns, E.opened, alive, E.size, E.inflight, ws ? (E.binary ? "binary" : "text") : "raw",
           t_connected ? (t_connected - t0) / 1e9 : 0.0, window,
           (unsigned long long)E.measured, (unsigned long long)E.total, mps, mps * E.size / 1e6);
    hist_print_json(stdout, &E.hist);
    printf(",\"errors\":%llu,\"last_error\":", (unsigned long long)CL.errors);
    json_str(stdout, CL.last_error);
    print_transport_json(stdout);
    if (CL.deflate)
        printf(",\"payload\":\"%s\",\"compressed_replies\":%llu,\"wire_ratio\":%.4f", E.json ? "json" : "alpha",
               (unsigned long long)E.rx_compressed, E.tx_msgs ? (double)E.tx_wire / ((double)E.tx_msgs * E.size) : 0.0);
    printf("}\n");
    fflush(stdout);
    return E.opened == 0 ? 1 : 0;
}

#endif
