/* tcpecho_c: the physical reference for TCP echo — a lean single-threaded
 * epoll server that writes back whatever it reads.  It shows what the machine
 * does with no Python in the way, and proves the load generator is not the
 * bottleneck.
 *
 *   tcpecho_c --host 127.0.0.1 --port 9000
 * prints "tcpecho_c listening on tcp://H:P" when ready; exits 0 on SIGINT/SIGTERM. */
#include "lg.h"
#include <sys/epoll.h>

typedef struct {
    int fd;
    char *out;          /* bytes not yet written back (only after a short write) */
    size_t out_len, out_cap;
} conn_t;

static char rbuf[256 * 1024];   /* one receive buffer for every connection */

static void conn_close(int ep, conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

/* Appends to the pending output; returns -1 on allocation failure. */
static int out_append(conn_t *c, const char *p, size_t n) {
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n) cap *= 2;
        char *nb = realloc(c->out, cap);
        if (!nb) return -1;
        c->out = nb;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

/* Writes p (after any pending bytes); buffers what the socket does not take. */
static int conn_send(int ep, conn_t *c, const char *p, size_t n) {
    if (c->out_len) return out_append(c, p, n);
    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return -1;
            break;
        }
        p += w; n -= (size_t)w;
    }
    if (n) {
        if (out_append(c, p, n) < 0) return -1;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 0;
}

static int conn_flush(int ep, conn_t *c) {
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t w = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return -1;
            break;
        }
        off += (size_t)w;
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    if (!c->out_len) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        free(c->out); c->out = NULL; c->out_cap = 0;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: tcpecho_c [--host 127.0.0.1] [--port 0]\n");
            return 0;
        }
        if (i + 1 >= argc) usage_error(argv[0], "missing value for", argv[i]);
        if (!strcmp(argv[i], "--host")) host = argv[++i];
        else if (!strcmp(argv[i], "--port")) port = (int)parse_long(argv[0], "--port", argv[++i], 0, 65535);
        else usage_error(argv[0], "unknown option", argv[i]);
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
    int ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("tcpecho_c listening on tcp://%s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);

    struct epoll_event evs[512];
    while (!g_stop) {
        int n = epoll_wait(ep, evs, 512, 1000);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {   /* listener: accept everything queued */
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    set_nodelay(fd);
                    conn_t *nc = calloc(1, sizeof *nc);
                    if (!nc) { close(fd); continue; }
                    nc->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (conn_flush(ep, c) < 0) { conn_close(ep, c); continue; }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { conn_close(ep, c); continue; }
                if (r > 0 && conn_send(ep, c, rbuf, (size_t)r) < 0) conn_close(ep, c);
            }
        }
    }
    return 0;
}
