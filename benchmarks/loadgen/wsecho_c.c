/* wsecho_c: the physical reference for WebSocket echo and broadcast — a lean
 * single-threaded epoll server (RFC 6455 handshake and framing, no
 * extensions).  Idle connections cost one small struct: receive and send
 * buffers are allocated only while a partial frame or a short write is pending.
 *
 *   wsecho_c --host 127.0.0.1 --port 9000 [--mode echo|broadcast]
 * echo:      every data frame goes back to its sender with its opcode.
 * broadcast: every data frame goes to every open connection (sender included);
 *            the frame is built once and written to each socket.
 * Pings are answered with pongs, closes with closes.  Prints
 * "wsecho_c listening on ws://H:P" when ready; exits 0 on SIGINT/SIGTERM.
 *
 *   wsecho_c --port 9000 --certfile server.pem [--keyfile server.key]
 * serves wss:// instead (built with -DLG_TLS, as the Makefile does when
 * OpenSSL's headers are installed): OpenSSL on the same epoll loop, with
 * non-blocking SSL_do_handshake / SSL_read / SSL_write, the reference for
 * the TLS echo. */
#include "lg.h"
#include <sys/epoll.h>
#ifdef LG_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
static SSL_CTX *sctx;           /* NULL: plain ws:// */
#endif

/* ST_TLS: TLS handshake in progress (before the HTTP upgrade) */
enum { ST_TLS, ST_HANDSHAKE, ST_OPEN, ST_DEAD };

typedef struct conn {
    int fd, state, slot;        /* slot: index in the open-connection table */
#ifdef LG_TLS
    SSL *ssl;                   /* NULL on plain TCP */
#endif
    char *in;                   /* unparsed bytes kept between reads */
    size_t in_len, in_cap;
    char *out;                  /* bytes the socket did not take yet */
    size_t out_len, out_cap;
    struct conn *next_dead;
} conn_t;

static char rbuf[256 * 1024];
static int ep;
static int broadcast_mode = 0;
static conn_t **open_conns;
static size_t n_open, cap_open;
static conn_t *dead_list;       /* freed after each event batch */
static char *scratch;           /* outgoing frames built per read */
static size_t scratch_len, scratch_cap;

static int buf_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n) {
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n) c *= 2;
        char *nb = realloc(*buf, c);
        if (!nb) return -1;
        *buf = nb; *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

static void conn_kill(conn_t *c) {
    if (c->state == ST_DEAD) return;
    if (c->state == ST_OPEN) {  /* swap-remove from the open table */
        conn_t *last = open_conns[--n_open];
        open_conns[c->slot] = last;
        last->slot = c->slot;
    }
    c->state = ST_DEAD;
#ifdef LG_TLS
    if (c->ssl) { SSL_free(c->ssl); c->ssl = NULL; }
#endif
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->next_dead = dead_list;
    dead_list = c;
}

static void reap(void) {
    while (dead_list) {
        conn_t *c = dead_list;
        dead_list = c->next_dead;
        free(c->in); free(c->out); free(c);
    }
}

/* Writes what the socket (or TLS) takes now: bytes written, 0 when it would
 * block, -1 after killing the connection. */
static ssize_t io_send(conn_t *c, const char *p, size_t n) {
#ifdef LG_TLS
    if (c->ssl) {
        ERR_clear_error();
        int w = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (w > 0) return w;
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return 0;
        conn_kill(c);
        return -1;
    }
#endif
    for (;;) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w >= 0) return w;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return 0;
        conn_kill(c);
        return -1;
    }
}

/* Reads into buf: bytes read (> 0), 0 when nothing is there now, -1 after
 * killing the connection (error or the peer's EOF).  TLS reads records until
 * the buffer is full or OpenSSL wants more from the socket. */
static ssize_t io_recv(conn_t *c, char *buf, size_t cap) {
#ifdef LG_TLS
    if (c->ssl) {
        size_t got = 0;
        while (got < cap) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, buf + got, cap - got > INT_MAX ? INT_MAX : (int)(cap - got));
            if (r > 0) { got += (size_t)r; continue; }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
            if (got) break;             /* hand over the data; the end shows on the next call */
            conn_kill(c);
            return -1;
        }
        return (ssize_t)got;
    }
#endif
    ssize_t r = recv(c->fd, buf, cap, 0);
    if (r > 0) return r;
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    conn_kill(c);
    return -1;
}

static void conn_send(conn_t *c, const char *p, size_t n) {
    if (c->state == ST_DEAD) return;
    if (c->out_len) {
        if (buf_append(&c->out, &c->out_len, &c->out_cap, p, n) < 0) conn_kill(c);
        return;
    }
    while (n) {
        ssize_t w = io_send(c, p, n);
        if (w < 0) return;
        if (w == 0) break;
        p += w; n -= (size_t)w;
    }
    if (n) {
        if (buf_append(&c->out, &c->out_len, &c->out_cap, p, n) < 0) { conn_kill(c); return; }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void conn_flush(conn_t *c) {
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t w = io_send(c, c->out + off, c->out_len - off);
        if (w < 0) return;
        if (w == 0) break;
        off += (size_t)w;
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    if (!c->out_len) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        free(c->out); c->out = NULL; c->out_cap = 0;
    }
}

/* Appends an unmasked server frame to the scratch buffer. */
static int frame_build(int b0, const char *payload, size_t len) {
    char hdr[10];
    size_t h = 2;
    hdr[0] = (char)b0;
    if (len < 126) hdr[1] = (char)len;
    else if (len < 65536) { hdr[1] = 126; hdr[2] = (char)(len >> 8); hdr[3] = (char)len; h = 4; }
    else { hdr[1] = 127; for (int i = 0; i < 8; i++) hdr[2 + i] = (char)((uint64_t)len >> (56 - 8 * i)); h = 10; }
    if (buf_append(&scratch, &scratch_len, &scratch_cap, hdr, h) < 0) return -1;
    return buf_append(&scratch, &scratch_len, &scratch_cap, payload, len);
}

static void handshake(conn_t *c, char *p, size_t n, size_t *used) {
    char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) {
        *used = 0;
        if (n > 8192) conn_kill(c);
        return;
    }
    *used = (size_t)(end - p) + 4;
    end[2] = 0;  /* terminate the head after the last header line's CRLF */
    size_t klen;
    const char *key = find_header(p, "Sec-WebSocket-Key", &klen);
    if (!key || strncmp(p, "GET ", 4) != 0) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        io_send(c, bad, sizeof bad - 1);
        conn_kill(c);
        return;
    }
    char accept[32], resp[256];
    ws_accept(key, klen, accept);
    int rn = snprintf(resp, sizeof resp,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    c->state = ST_OPEN;
    if (n_open == cap_open) {
        cap_open = cap_open ? cap_open * 2 : 1024;
        open_conns = realloc(open_conns, cap_open * sizeof *open_conns);
        if (!open_conns) die("realloc");
    }
    c->slot = (int)n_open;
    open_conns[n_open++] = c;
    conn_send(c, resp, (size_t)rn);
}

/* Parses every complete frame in p[0..n); returns bytes consumed. */
static size_t frames(conn_t *c, char *p, size_t n) {
    size_t off = 0;
    scratch_len = 0;
    int close_after = 0;
    while (n - off >= 2 && c->state == ST_OPEN) {
        uint8_t b0 = (uint8_t)p[off], b1 = (uint8_t)p[off + 1];
        if (!(b1 & 0x80) || (b0 & 0x70)) { conn_kill(c); return n; }  /* unmasked or RSV */
        uint64_t len = b1 & 0x7F;
        size_t h = 2;
        if (len == 126) {
            if (n - off < 4) break;
            len = (uint64_t)(uint8_t)p[off + 2] << 8 | (uint8_t)p[off + 3];
            h = 4;
        } else if (len == 127) {
            if (n - off < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | (uint8_t)p[off + 2 + i];
            h = 10;
        }
        if (len > (1ull << 30)) { conn_kill(c); return n; }
        if (n - off < h + 4 + len) break;
        uint8_t *mask = (uint8_t *)p + off + h;
        char *pl = p + off + h + 4;
        for (uint64_t i = 0; i < len; i++) pl[i] ^= (char)mask[i & 3];
        int op = b0 & 0x0F;
        off += h + 4 + len;
        if (op == 0x8) {             /* close: echo the code, then close */
            frame_build(0x88, pl, len > 2 ? 2 : len);
            close_after = 1;
            break;
        } else if (op == 0x9) {
            frame_build(0x8A, pl, len);
        } else if (op == 0xA) {
            continue;
        } else if (op <= 2) {
            if (!broadcast_mode) {
                frame_build(b0, pl, len);
            } else {                  /* build once, write to everyone */
                size_t mark = scratch_len;
                frame_build(b0, pl, len);
                for (size_t i = 0; i < n_open; i++) {
                    conn_t *o = open_conns[i];
                    if (o == c) continue;
                    conn_send(o, scratch + mark, scratch_len - mark);
                    if (o->state == ST_DEAD) i--;  /* its slot now holds another */
                }
                /* the sender's copy stays in scratch, sent below */
            }
        } else {
            conn_kill(c);
            return n;
        }
    }
    if (scratch_len && c->state == ST_OPEN) conn_send(c, scratch, scratch_len);
    if (close_after && c->state == ST_OPEN) conn_kill(c);
    return off;
}

static void on_bytes(conn_t *c, ssize_t r);

static void on_readable(conn_t *c) {
    for (;;) {
        ssize_t r = io_recv(c, rbuf, sizeof rbuf);
        if (r <= 0) return;
        on_bytes(c, r);
#ifdef LG_TLS
        if (c->ssl && c->state != ST_DEAD) continue;   /* until OpenSSL has nothing more */
#endif
        return;
    }
}

#ifdef LG_TLS
/* One step of the non-blocking server handshake; reads on once it is done. */
static void tls_step(conn_t *c) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->state = ST_HANDSHAKE;
        struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        on_readable(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        struct epoll_event ev = {.events = EPOLLIN | (e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    conn_kill(c);     /* a failed handshake ends this connection only */
}
#endif

static void on_bytes(conn_t *c, ssize_t r) {
    char *p = rbuf;
    size_t n = (size_t)r;
    if (c->in_len) {  /* join with the partial frame kept from the last read */
        if (buf_append(&c->in, &c->in_len, &c->in_cap, rbuf, n) < 0) { conn_kill(c); return; }
        p = c->in; n = c->in_len;
    }
    size_t used = 0;
    if (c->state == ST_HANDSHAKE) {
        handshake(c, p, n, &used);
        if (c->state == ST_OPEN && n > used) used += frames(c, p + used, n - used);
    } else {
        used = frames(c, p, n);
    }
    if (c->state == ST_DEAD) return;
    size_t rest = n - used;
    if (p == c->in) {
        memmove(c->in, c->in + used, rest);
        c->in_len = rest;
        if (!rest) { free(c->in); c->in = NULL; c->in_cap = 0; }
    } else if (rest) {
        if (buf_append(&c->in, &c->in_len, &c->in_cap, p + used, rest) < 0) conn_kill(c);
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *certfile = NULL, *keyfile = NULL;
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: wsecho_c [--host 127.0.0.1] [--port 0] [--mode echo|broadcast]\n"
                   "                [--certfile PEM [--keyfile PEM]]   (wss://, OpenSSL)\n");
            return 0;
        }
        if (i + 1 >= argc) usage_error(argv[0], "missing value for", argv[i]);
        if (!strcmp(argv[i], "--host")) host = argv[++i];
        else if (!strcmp(argv[i], "--port")) port = (int)parse_long(argv[0], "--port", argv[++i], 0, 65535);
        else if (!strcmp(argv[i], "--certfile")) certfile = argv[++i];
        else if (!strcmp(argv[i], "--keyfile")) keyfile = argv[++i];
        else if (!strcmp(argv[i], "--mode")) {
            const char *m = argv[++i];
            if (!strcmp(m, "broadcast")) broadcast_mode = 1;
            else if (strcmp(m, "echo")) usage_error(argv[0], "--mode must be echo or broadcast", m);
        } else usage_error(argv[0], "unknown option", argv[i]);
    }
    if (keyfile && !certfile) usage_error(argv[0], "--keyfile needs --certfile", NULL);
    if (certfile) {
#ifdef LG_TLS
        sctx = SSL_CTX_new(TLS_server_method());
        if (!sctx || SSL_CTX_use_certificate_chain_file(sctx, certfile) != 1 ||
            SSL_CTX_use_PrivateKey_file(sctx, keyfile ? keyfile : certfile, SSL_FILETYPE_PEM) != 1) {
            char buf[200];
            ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
            fprintf(stderr, "error: cannot load %s / %s: %s\n", certfile, keyfile ? keyfile : certfile, buf);
            return 2;
        }
        SSL_CTX_set_mode(sctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_read_ahead(sctx, 1);     /* fewer recv() calls; on_readable drains what OpenSSL holds */
#else
        usage_error(argv[0], "--certfile: built without OpenSSL (install libssl-dev, then make -C benchmarks/loadgen)", NULL);
#endif
    }
    install_stop_signals();
    raise_nofile();
    struct sockaddr_in sa;
    if (parse_addr(host, port, &sa) < 0) usage_error(argv[0], "bad IPv4 host", host);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("wsecho_c listening on %s://%s:%d\n", certfile ? "wss" : "ws", host, ntohs(sa.sin_port));
    fflush(stdout);

    struct epoll_event evs[512];
    while (!g_stop) {
        int n = epoll_wait(ep, evs, 512, 1000);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    set_nodelay(fd);
                    conn_t *nc = calloc(1, sizeof *nc);
                    if (!nc) { close(fd); continue; }
                    nc->fd = fd;
                    nc->state = ST_HANDSHAKE;
#ifdef LG_TLS
                    if (sctx) {
                        nc->ssl = SSL_new(sctx);
                        if (!nc->ssl || SSL_set_fd(nc->ssl, fd) != 1) {
                            if (nc->ssl) SSL_free(nc->ssl);
                            close(fd); free(nc); continue;
                        }
                        SSL_set_accept_state(nc->ssl);
                        nc->state = ST_TLS;
                    }
#endif
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->state == ST_DEAD) continue;
#ifdef LG_TLS
            if (c->state == ST_TLS) { tls_step(c); continue; }
            if (c->ssl && c->out_len) conn_flush(c);   /* a TLS write may wait on a read */
            else
#endif
            if (evs[i].events & EPOLLOUT) conn_flush(c);
            if (c->state != ST_DEAD && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
        }
        reap();
    }
    return 0;
}
