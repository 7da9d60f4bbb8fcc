/* udpload: UDP echo load generator.  N sender sockets, each connected to the
 * server and keeping K datagrams in flight; every echoed datagram is timed and
 * replaced by a new one.  A datagram not echoed within --timeout-ms counts as
 * lost and its slot is refilled, so loss lowers the rate instead of stalling
 * the run.  One epoll thread, recvmmsg/sendmmsg, so that the generator is not
 * the bottleneck (check it against udpecho_c).
 *
 *   udpload --host 127.0.0.1 --port 9000 --senders 50 --size 64 --inflight 4 \
 *           --duration 5 [--warmup 0.5] [--timeout-ms 200]
 *
 * Prints one JSON line: sent/received/lost/late/errors in the measured window,
 * datagrams_per_s (echoes received per second), loss_pct, RTT percentiles.
 * Payload: 8-byte sequence number, 8-byte send time, then filler. */
#include "lg.h"
#include <netdb.h>
#include <sys/epoll.h>

#define WINDOW 4096          /* per-sender sequence window (> max in-flight) */
#define RBATCH 64
#define MAX_SIZE 65507

typedef struct {
    int fd;
    uint64_t next_seq;       /* next sequence number to send */
    uint64_t base;           /* lowest sequence number that may be outstanding */
    int outstanding;
    uint64_t sent_ns[WINDOW];
    uint8_t state[WINDOW];   /* 0 free/done, 1 outstanding */
} sender_t;

static struct {
    long senders, size, inflight, timeout_ms;
    double duration, warmup;
    int measuring;
    uint64_t sent, received, lost, late, errors, short_replies;
    hist_t hist;
} g;

static char *sbufs;                 /* inflight * size: outgoing payloads */
static char rbufs[RBATCH][2048];    /* replies are only inspected up to 16 bytes */

static void usage(void) {
    puts("usage: udpload --host H --port P [--senders N] [--size BYTES] [--inflight K]\n"
         "               [--duration S] [--warmup S] [--timeout-ms MS]\n"
         "UDP echo load: N connected sockets, K datagrams in flight each; one JSON line out.");
}

/* Sends up to `want` new datagrams on s with one sendmmsg. */
static void top_up(sender_t *s, int want) {
    struct mmsghdr msgs[RBATCH];
    struct iovec iov[RBATCH];
    if (want > RBATCH) want = RBATCH;
    if (want <= 0) return;
    uint64_t t = now_ns();
    for (int i = 0; i < want; i++) {
        char *p = sbufs + (size_t)i * (size_t)g.size;
        uint64_t seq = s->next_seq + (uint64_t)i;
        memcpy(p, &seq, 8);
        memcpy(p + 8, &t, 8);
        iov[i].iov_base = p;
        iov[i].iov_len = (size_t)g.size;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(s->fd, msgs, (unsigned)want, MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) g.errors++;
        return;   /* the loss scan refills later */
    }
    for (int i = 0; i < n; i++) {
        uint64_t seq = s->next_seq++;
        s->sent_ns[seq % WINDOW] = t;
        s->state[seq % WINDOW] = 1;
        s->outstanding++;
        if (g.measuring) g.sent++;
    }
}

static void advance_base(sender_t *s) {
    while (s->base < s->next_seq && s->state[s->base % WINDOW] == 0) s->base++;
}

static void on_readable(sender_t *s) {
    struct mmsghdr msgs[RBATCH];
    struct iovec iov[RBATCH];
    for (;;) {
        for (int i = 0; i < RBATCH; i++) {
            iov[i].iov_base = rbufs[i];
            iov[i].iov_len = sizeof rbufs[i];
            memset(&msgs[i], 0, sizeof msgs[i]);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(s->fd, msgs, RBATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            g.errors++;          /* ECONNREFUSED: nobody listening (yet) */
            break;
        }
        uint64_t t = now_ns();
        for (int i = 0; i < n; i++) {
            uint64_t seq;
            if (msgs[i].msg_len < 16) { g.short_replies++; continue; }
            memcpy(&seq, rbufs[i], 8);
            if (seq >= s->next_seq || seq < s->base || s->state[seq % WINDOW] != 1) {
                g.late++;        /* already declared lost, or a duplicate */
                continue;
            }
            s->state[seq % WINDOW] = 0;
            s->outstanding--;
            if (g.measuring) {
                g.received++;
                hist_add(&g.hist, t - s->sent_ns[seq % WINDOW]);
            }
        }
        advance_base(s);
        if (g.measuring >= 0) top_up(s, (int)(g.inflight - s->outstanding));
        if (n < RBATCH) break;
    }
}

/* Declares datagrams older than the timeout lost and refills their slots. */
static void scan_losses(sender_t *s, uint64_t now, int refill) {
    uint64_t limit = (uint64_t)g.timeout_ms * 1000000ull;
    for (uint64_t q = s->base; q < s->next_seq; q++) {
        if (s->state[q % WINDOW] == 1 &&
            (now - s->sent_ns[q % WINDOW] > limit || s->next_seq - q >= WINDOW)) {
            s->state[q % WINDOW] = 0;
            s->outstanding--;
            g.lost++;
        }
    }
    advance_base(s);
    if (refill) top_up(s, (int)(g.inflight - s->outstanding));
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 0;
    g.senders = 1; g.size = 64; g.inflight = 4; g.timeout_ms = 200;
    g.duration = 5; g.warmup = 0.5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
        if (i + 1 >= argc) usage_error(argv[0], "missing value for", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = parse_long(argv[0], a, v, 1, 65535);
        else if (!strcmp(a, "--senders")) g.senders = parse_long(argv[0], a, v, 1, 10000);
        else if (!strcmp(a, "--size")) g.size = parse_long(argv[0], a, v, 16, MAX_SIZE);
        else if (!strcmp(a, "--inflight")) g.inflight = parse_long(argv[0], a, v, 1, RBATCH);
        else if (!strcmp(a, "--duration")) g.duration = parse_double(argv[0], a, v, 0.1, 3600);
        else if (!strcmp(a, "--warmup")) g.warmup = parse_double(argv[0], a, v, 0, 60);
        else if (!strcmp(a, "--timeout-ms")) g.timeout_ms = parse_long(argv[0], a, v, 1, 60000);
        else usage_error(argv[0], "unknown option", a);
    }
    if (!port) usage_error(argv[0], "--port is required", NULL);
    install_stop_signals();

    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%ld", port);
    if (getaddrinfo(host, portstr, &hints, &ai) != 0) usage_error(argv[0], "bad numeric host", host);

    sbufs = calloc((size_t)RBATCH, (size_t)g.size);
    sender_t *ss = calloc((size_t)g.senders, sizeof *ss);
    if (!sbufs || !ss) die("calloc");
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    for (long i = 0; i < g.senders; i++) {
        int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) die("connect");
        ss[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ss[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
    freeaddrinfo(ai);

    uint64_t start = now_ns();
    uint64_t t_measure = start + (uint64_t)(g.warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(g.duration * 1e9);
    uint64_t next_scan = start;
    for (long i = 0; i < g.senders; i++) top_up(&ss[i], (int)g.inflight);

    struct epoll_event evs[256];
    uint64_t now = start;
    while (!g_stop && now < t_end) {
        int n = epoll_wait(ep, evs, 256, 10);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) on_readable((sender_t *)evs[i].data.ptr);
        now = now_ns();
        if (!g.measuring && now >= t_measure) {
            g.measuring = 1;
            g.lost = g.late = g.errors = 0;
        }
        if (now >= next_scan) {
            for (long i = 0; i < g.senders; i++) scan_losses(&ss[i], now, 1);
            next_scan = now + 10000000ull;
        }
    }
    double measured = (double)(now - t_measure) / 1e9;
    /* Drain: stop sending, wait one timeout for what is still in flight;
     * whatever does not come back is lost. Drained echoes are not counted in
     * the rate (they arrived after the window). */
    g.measuring = -1;
    uint64_t drain_end = now_ns() + (uint64_t)g.timeout_ms * 1000000ull;
    uint64_t received_in_window = g.received;
    for (;;) {
        int left = 0;
        for (long i = 0; i < g.senders; i++) left += ss[i].outstanding;
        now = now_ns();
        if (!left || now >= drain_end) break;
        int n = epoll_wait(ep, evs, 256, 5);
        for (int i = 0; i < n; i++) on_readable((sender_t *)evs[i].data.ptr);
    }
    for (long i = 0; i < g.senders; i++) {
        for (uint64_t q = ss[i].base; q < ss[i].next_seq; q++)
            if (ss[i].state[q % WINDOW] == 1) g.lost++;
        close(ss[i].fd);
    }
    double rate = measured > 0 ? (double)received_in_window / measured : 0;
    double loss = g.sent ? 100.0 * (double)g.lost / (double)g.sent : 0;
    printf("{\"tool\":\"udpload\",\"host\":\"%s\",\"port\":%ld,\"senders\":%ld,\"size\":%ld,"
           "\"inflight\":%ld,\"duration_s\":%.3f,\"sent\":%llu,\"received\":%llu,\"lost\":%llu,"
           "\"late\":%llu,\"errors\":%llu,\"short_replies\":%llu,\"datagrams_per_s\":%.1f,"
           "\"loss_pct\":%.4f,",
           host, port, g.senders, g.size, g.inflight, measured,
           (unsigned long long)g.sent, (unsigned long long)received_in_window,
           (unsigned long long)g.lost, (unsigned long long)g.late,
           (unsigned long long)g.errors, (unsigned long long)g.short_replies, rate, loss);
    hist_print_json(stdout, &g.hist);
    printf("}\n");
    return 0;
}
