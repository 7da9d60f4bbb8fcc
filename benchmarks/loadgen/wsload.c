/* wsload: WebSocket load generator (epoll, one thread, real RFC 6455 client:
 * handshake checked, every frame masked with its own key).
 *
 * Echo mode (default): closed-loop echo, like tcpload.
 *   wsload --port 9000 --connections 100 --size 64 --inflight 8 --duration 5 [--binary]
 *
 * C10k mode: against a broadcast server (every message goes to everyone).
 *   wsload --mode c10k --port 9000 --connections 10000
 * Phases, each announced by one JSON line {"event": ...} so a harness can
 * sample the server between them:
 *   connecting -> established   open N connections (CONCURRENCY handshakes at once)
 *   idle_begin -> idle_end      hold them, exchanging nothing, for IDLE seconds
 *   echo_begin -> echo_end      every connection sends a ping with its own payload
 *                               and expects the matching pong, PING_ROUNDS times,
 *                               spread over PING_SPREAD seconds per round
 *                               (a ping is the only per-connection echo a pure
 *                               broadcast server has)
 *   broadcast_begin -> _end     one connection sends a message, BROADCASTS times;
 *                               each waits until all N have it (time to the last)
 *   flood_begin -> flood_end    FLOOD messages every FLOOD_INTERVAL seconds without
 *                               waiting; checks every connection gets each one, in order
 * and a final {"event":"result", ...} line.
 *
 * Hold mode: what an idle connection costs the server after it has been used.
 *   wsload --mode hold --port 9000 --connections 2000 [--deflate] --size 1024 --idle 2
 *   connecting -> established   open N connections; each sends one message and
 *                               gets its echo (an echo server is needed)
 *   idle_begin -> idle_end      hold them, exchanging nothing, for IDLE seconds
 * and a final {"event":"result", ...} line.
 *
 * --tls, --sni, --deflate, --deflate-params, --deflate-level and --payload work
 * in every mode (see --help of the echo mode). */
#include "client.h"

#define MAGIC 0x54534342u   /* "BCST" little-endian */

static struct {
    int conns, concurrency, size, ping_rounds, broadcasts, flood;
    double connect_timeout, idle, ping_spread, gap, flood_interval, phase_timeout;
    int opened, failed;
    uint64_t t_last_open;
    uint64_t pings_sent, pongs_ok, pongs_bad;
    int n_trig;                 /* triggers sent so far */
    uint64_t *t_send, *t_last;  /* per trigger */
    uint32_t *delivered, *expected;
    uint64_t lost_gaps, out_of_order, foreign;
    int bcast_phase;            /* 1 while latency goes into hist */
    hist_t hist;                /* per-delivery latency in the broadcast phase */
    int json;                   /* message filler: JSON-like text (c10k: after the binary header; hold: as text) */
    uint64_t rx_compressed;     /* messages received with RSV1 */
    uint64_t replies;           /* hold mode: echoes received */
    uint8_t *hold_payload;
} K;

static conn_t *conns;
#define OPEN_NOW ((int)(K.opened - (int)CL.open_dropped))
static uint64_t T0;

static double since(uint64_t t) { return (t - T0) / 1e9; }

static void emit(const char *event, const char *extra) {
    printf("{\"event\":\"%s\",\"t\":%.4f%s%s}\n", event, since(now_ns()), extra ? "," : "", extra ? extra : "");
    fflush(stdout);
}

static void k_on_open(conn_t *c) {
    (void)c;
    K.opened++;
    K.t_last_open = now_ns();
}
static void k_on_fail(conn_t *c) { (void)c; K.failed++; }

static size_t k_on_data(conn_t *c, uint8_t *p, size_t n) {
    size_t off = 0;
    int b0, got; const uint8_t *pl; size_t len;
    while ((got = ws_next_frame(c, p, n, &off, &b0, &pl, &len)) > 0) {
        int op = b0 & 0x0F;
        if (op == 0xA) {
            uint32_t idx;
            if (len == 8 && (memcpy(&idx, pl, 4), idx == (uint32_t)c->idx)) { c->pongs_ok++; K.pongs_ok++; }
            else K.pongs_bad++;
        } else if (op == 1 || op == 2) {
            if (b0 & 0x40) {        /* compressed: the header is in the first 16 inflated bytes */
                if (!c->pmd) { conn_drop(c, "RSV1 without permessage-deflate", 0); return n; }
                pmd_reserve((size_t)K.size);
                long m = pmd_inflate(c, pl, len, CL.zbuf, CL.zbuf_cap, c->pmd_sreset ? 16 : 0);
                if (m < 0) { note_error("inflate failed", 0); continue; }
                K.rx_compressed++;
                pl = CL.zbuf; len = (size_t)m;
            }
            uint32_t magic, seq;
            if (len < 16 || (memcpy(&magic, pl, 4), magic != MAGIC)) { K.foreign++; continue; }
            memcpy(&seq, pl + 4, 4);
            if (seq >= (uint32_t)K.n_trig) { K.foreign++; continue; }
            uint64_t now = now_ns();
            K.delivered[seq]++;
            K.t_last[seq] = now;
            if (K.bcast_phase) hist_add(&K.hist, now - K.t_send[seq]);
            if (seq > c->next_seq) K.lost_gaps += seq - c->next_seq;
            else if (seq < c->next_seq) K.out_of_order++;
            c->next_seq = seq + 1;
        }
    }
    return got < 0 ? n : off;
}

static const hooks_t k_hooks = {k_on_open, k_on_data, k_on_fail};

/* One round of the event loop: the ready connections' events go to hooks. */
static void pump_with(const hooks_t *hooks, int timeout_ms) {
    static struct epoll_event evs[1024];
    int n = epoll_wait(CL.ep, evs, 1024, timeout_ms);
    if (n < 0) { if (errno == EINTR) return; die("epoll_wait"); }
    for (int i = 0; i < n; i++) {
        conn_event(evs[i].data.ptr, evs[i].events, hooks);
    }
}

static void pump(int timeout_ms) { pump_with(&k_hooks, timeout_ms); }

static int ms_until(uint64_t t) {
    uint64_t now = now_ns();
    if (t <= now) return 0;
    uint64_t ms = (t - now + 999999) / 1000000;
    return ms > 100 ? 100 : (int)ms;
}

static conn_t *first_open(void) {
    for (int i = 0; i < K.conns; i++) if (conns[i].state == C_OPEN) return &conns[i];
    return NULL;
}

/* Sends trigger number K.n_trig through the first open connection. */
static int trigger(void) {
    conn_t *c = first_open();
    if (!c) return -1;
    int seq = K.n_trig;
    uint8_t *pl = calloc(1, (size_t)K.size);
    if (K.json) fill_json(pl + 16, (size_t)K.size - 16, (uint64_t)seq + 1);
    uint32_t magic = MAGIC, s = (uint32_t)seq;
    uint64_t t = now_ns();
    memcpy(pl, &magic, 4); memcpy(pl + 4, &s, 4); memcpy(pl + 8, &t, 8);
    K.t_send[seq] = t;
    K.expected[seq] = (uint32_t)OPEN_NOW;
    K.n_trig++;
    sbuf_len = 0;   /* binary even with JSON filler: the 16-byte header is not UTF-8 */
    ws_put_message(c, 2, pl, (size_t)K.size, NULL);
    conn_send(c, sbuf, sbuf_len);
    sbuf_len = 0;
    free(pl);
    return seq;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* p-quantile (nearest rank) of n values, in ms. */
static double quant_ms(uint64_t *v, int n, double q) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    int i = (int)(q * n);
    if (i >= n) i = n - 1;
    return v[i] / 1e6;
}

/* The options c10k and hold modes share (each mode parses the rest):
 * 1 when a is one of them, its value v taken. */
static int k_shared_option(const char *prog, const char *a, const char *v) {
    if (!strcmp(a, "--mode")) return 1;
    else if (!strcmp(a, "--host")) CL.host = v;
    else if (!strcmp(a, "--port")) CL.port = (int)parse_long(prog, a, v, 1, 65535);
    else if (!strcmp(a, "--path")) CL.path = v;
    else if (!strcmp(a, "--connections")) K.conns = (int)parse_long(prog, a, v, 1, 1000000);
    else if (!strcmp(a, "--concurrency")) K.concurrency = (int)parse_long(prog, a, v, 1, 1000000);
    else if (!strcmp(a, "--sources")) CL.n_sources = (int)parse_long(prog, a, v, 1, 254);
    else if (!strcmp(a, "--connect-timeout")) K.connect_timeout = parse_double(prog, a, v, 0.1, 300);
    else if (!strcmp(a, "--idle")) K.idle = parse_double(prog, a, v, 0, 120);
    else if (!strcmp(a, "--phase-timeout")) K.phase_timeout = parse_double(prog, a, v, 0.1, 120);
    else if (!strcmp(a, "--payload")) {
        if (!strcmp(v, "json")) K.json = 1;
        else if (strcmp(v, "alpha")) usage_error(prog, "--payload must be alpha or json", v);
    }
    else return 0;
    return 1;
}

static void usage(void) {
    printf("usage: wsload --mode c10k --port N [--host 127.0.0.1] [--path /] [--connections 10000]\n"
           "  [--concurrency 1000] [--sources 1] [--connect-timeout 30] [--idle 2]\n"
           "  [--ping-rounds 2] [--ping-spread 1] [--broadcasts 10] [--broadcast-gap 0.1]\n"
           "  [--flood 40] [--flood-interval 0.05] [--size 64] [--phase-timeout 10]\n"
           "  [--payload alpha|json] [--tls [--sni NAME]] [--deflate] [--deflate-params P] [--deflate-level 6]\n"
           "usage: wsload --mode hold --port N [--connections 2000] [--concurrency 1000] [--size 1024]\n"
           "  [--idle 2] [--payload alpha|json] [--tls] [--deflate] [--deflate-params P] [--sources 1]\n");
}

static int c10k_main(int argc, char **argv) {
    const char *prog = "wsload";
    CL.host = "127.0.0.1"; CL.path = "/"; CL.port = -1; CL.n_sources = 1;
    K.conns = 10000; K.concurrency = 1000; K.size = 64; K.ping_rounds = 2; K.broadcasts = 10;
    K.flood = 40; K.connect_timeout = 30; K.idle = 2; K.ping_spread = 1; K.gap = 0.1;
    K.flood_interval = 0.05; K.phase_timeout = 10; CL.deflate_level = 6;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); exit(0); }
        if (ws_common_option(prog, argc, argv, &i)) continue;
        if (i + 1 >= argc) usage_error(prog, "missing value for", a);
        const char *v = argv[++i];
        if (k_shared_option(prog, a, v)) continue;
        else if (!strcmp(a, "--ping-rounds")) K.ping_rounds = (int)parse_long(prog, a, v, 0, 1000);
        else if (!strcmp(a, "--ping-spread")) K.ping_spread = parse_double(prog, a, v, 0, 60);
        else if (!strcmp(a, "--broadcasts")) K.broadcasts = (int)parse_long(prog, a, v, 0, 100000);
        else if (!strcmp(a, "--broadcast-gap")) K.gap = parse_double(prog, a, v, 0, 10);
        else if (!strcmp(a, "--flood")) K.flood = (int)parse_long(prog, a, v, 0, 100000);
        else if (!strcmp(a, "--flood-interval")) K.flood_interval = parse_double(prog, a, v, 0.001, 10);
        else if (!strcmp(a, "--size")) K.size = (int)parse_long(prog, a, v, 16, 65536);
        else usage_error(prog, "unknown option", a);
    }
    if (CL.port < 0) usage_error(prog, "--port is required", NULL);
    client_init(1, prog);
    long nofile = raise_nofile();
    if (nofile >= 0 && nofile < K.conns + 16) {
        fprintf(stderr, "wsload: RLIMIT_NOFILE is %ld, too low for %d connections: raise the hard "
                "limit (ulimit -Hn / limits.conf nofile) to at least %d\n", nofile, K.conns, K.conns + 16);
    }
    int total_trig = K.broadcasts + K.flood;
    K.t_send = calloc((size_t)total_trig + 1, 8); K.t_last = calloc((size_t)total_trig + 1, 8);
    K.delivered = calloc((size_t)total_trig + 1, 4); K.expected = calloc((size_t)total_trig + 1, 4);
    conns = calloc((size_t)K.conns, sizeof *conns);
    T0 = now_ns();
    char x[512];

    /* ---- connect ---- */
    emit("connecting", NULL);
    int next = 0;
    uint64_t deadline = T0 + (uint64_t)(K.connect_timeout * 1e9);
    while (!g_stop && K.opened + K.failed < K.conns && now_ns() < deadline) {
        while (next < K.conns && next - K.opened - K.failed < K.concurrency) {
            conns[next].idx = next;
            if (conn_start(&conns[next]) < 0) K.failed++;
            next++;
        }
        pump(10);
    }
    int never = K.conns - K.opened - K.failed;   /* still pending at the deadline */
    double connect_s = K.opened ? (K.t_last_open - T0) / 1e9 : 0;
    snprintf(x, sizeof x, "\"connected\":%d,\"failed\":%d,\"timed_out\":%d,\"connect_s\":%.4f",
             K.opened, K.failed, never, connect_s);
    emit("established", x);
    for (int i = 0; i < K.conns; i++)   /* drop stragglers so they do not count as open */
        if (conns[i].state == C_CONNECTING || conns[i].state == C_HANDSHAKE) conn_drop(&conns[i], "connect timeout", ETIMEDOUT);

    /* ---- idle ---- */
    emit("idle_begin", NULL);
    uint64_t t_end = now_ns() + (uint64_t)(K.idle * 1e9);
    while (!g_stop && now_ns() < t_end) pump(ms_until(t_end));
    snprintf(x, sizeof x, "\"open\":%d", OPEN_NOW);
    emit("idle_end", x);

    /* ---- echo (ping/pong on every connection) ---- */
    emit("echo_begin", NULL);
    for (int r = 0; r < K.ping_rounds && !g_stop; r++) {
        uint64_t t_round = now_ns();
        int sent_idx = 0;
        while (!g_stop && sent_idx < K.conns) {
            double frac = K.ping_spread > 0 ? (now_ns() - t_round) / (K.ping_spread * 1e9) : 1.0;
            int due = frac >= 1.0 ? K.conns : (int)(frac * K.conns);
            for (; sent_idx < due; sent_idx++) {
                conn_t *c = &conns[sent_idx];
                if (c->state != C_OPEN) continue;
                uint8_t pl[8], fr[24];
                uint32_t idx = (uint32_t)c->idx, rr = (uint32_t)r;
                memcpy(pl, &idx, 4); memcpy(pl + 4, &rr, 4);
                conn_send(c, fr, ws_build_masked(fr, 0x89, pl, 8));
                c->pings_sent++; K.pings_sent++;
            }
            pump(sent_idx < K.conns ? 1 : 0);
        }
    }
    t_end = now_ns() + (uint64_t)(K.phase_timeout * 1e9);
    while (!g_stop && K.pongs_ok < K.pings_sent && now_ns() < t_end) pump(ms_until(t_end));
    double echo_rate = K.pings_sent ? (double)K.pongs_ok / (double)K.pings_sent : 0;
    snprintf(x, sizeof x, "\"pings\":%llu,\"pongs\":%llu,\"success\":%.6f",
             (unsigned long long)K.pings_sent, (unsigned long long)K.pongs_ok, echo_rate);
    emit("echo_end", x);

    /* ---- broadcasts, one at a time ---- */
    emit("broadcast_begin", NULL);
    K.bcast_phase = 1;
    uint64_t *lat_last = calloc((size_t)K.broadcasts + 1, 8);
    int n_bc = 0, bc_incomplete = 0;
    for (int b = 0; b < K.broadcasts && !g_stop; b++) {
        int seq = trigger();
        if (seq < 0) break;
        t_end = now_ns() + (uint64_t)(K.phase_timeout * 1e9);
        while (!g_stop && K.delivered[seq] < K.expected[seq] && now_ns() < t_end) pump(ms_until(t_end));
        if (K.delivered[seq] < K.expected[seq]) bc_incomplete++;
        if (K.delivered[seq]) lat_last[n_bc++] = K.t_last[seq] - K.t_send[seq];
        t_end = now_ns() + (uint64_t)(K.gap * 1e9);
        while (!g_stop && now_ns() < t_end) pump(ms_until(t_end));
    }
    K.bcast_phase = 0;
    uint64_t bc_deliv = 0, bc_exp = 0;
    for (int s = 0; s < K.n_trig; s++) { bc_deliv += K.delivered[s]; bc_exp += K.expected[s]; }
    double bc_p50 = quant_ms(lat_last, n_bc, 0.5), bc_p99 = quant_ms(lat_last, n_bc, 0.99);
    double bc_max = n_bc ? lat_last[n_bc - 1] / 1e6 : 0;
    snprintf(x, sizeof x, "\"broadcasts\":%d,\"delivered\":%llu,\"expected\":%llu,\"last_p50_ms\":%.3f,"
             "\"last_p99_ms\":%.3f,\"last_max_ms\":%.3f,\"incomplete\":%d",
             n_bc, (unsigned long long)bc_deliv, (unsigned long long)bc_exp, bc_p50, bc_p99, bc_max, bc_incomplete);
    emit("broadcast_end", x);
    char bc_json[512];
    snprintf(bc_json, sizeof bc_json, "%s", x);

    /* ---- flood: triggers on a fixed schedule, never waiting ---- */
    emit("flood_begin", NULL);
    int first_flood = K.n_trig, n_fl = 0;
    uint64_t t_flood = now_ns();
    for (int f = 0; f < K.flood && !g_stop; f++) {
        uint64_t due = t_flood + (uint64_t)(f * K.flood_interval * 1e9);
        while (!g_stop && now_ns() < due) pump(ms_until(due));
        if (trigger() < 0) break;
        n_fl++;
    }
    t_end = now_ns() + (uint64_t)(K.phase_timeout * 1e9);
    for (;;) {
        int pending = 0;
        for (int s = first_flood; s < K.n_trig; s++) pending |= K.delivered[s] < K.expected[s];
        if (!pending || g_stop || now_ns() >= t_end) break;
        pump(ms_until(t_end));
    }
    uint64_t fl_deliv = 0, fl_exp = 0;
    uint64_t *lag = calloc((size_t)n_fl + 1, 8);
    int n_lag = 0;
    for (int s = first_flood; s < K.n_trig; s++) {
        fl_deliv += K.delivered[s]; fl_exp += K.expected[s];
        if (K.delivered[s]) lag[n_lag++] = K.t_last[s] - K.t_send[s];
    }
    double last_lag = n_fl && K.delivered[K.n_trig - 1] ? (K.t_last[K.n_trig - 1] - K.t_send[K.n_trig - 1]) / 1e6 : 0;
    double fl_p50 = quant_ms(lag, n_lag, 0.5), fl_max = n_lag ? quant_ms(lag, n_lag, 1.0) : 0;
    snprintf(x, sizeof x, "\"messages\":%d,\"interval_ms\":%.1f,\"delivered\":%llu,\"expected\":%llu,"
             "\"undelivered\":%lld,\"gaps\":%llu,\"out_of_order\":%llu,\"lag_p50_ms\":%.3f,\"lag_max_ms\":%.3f,"
             "\"lag_last_ms\":%.3f",
             n_fl, K.flood_interval * 1e3, (unsigned long long)fl_deliv, (unsigned long long)fl_exp,
             (long long)fl_exp - (long long)fl_deliv, (unsigned long long)K.lost_gaps,
             (unsigned long long)K.out_of_order, fl_p50, fl_max, last_lag);
    emit("flood_end", x);

    int open_at_end = OPEN_NOW;
    close_all(conns, K.conns, 3.0);

    /* ---- result ---- */
    printf("{\"event\":\"result\",\"tool\":\"wsload\",\"mode\":\"c10k\",\"connections\":%d,\"connected\":%d,"
           "\"failed\":%d,\"timed_out\":%d,\"connect_s\":%.4f,\"open_at_end\":%d,"
           "\"echo\":{\"pings\":%llu,\"pongs\":%llu,\"bad_pongs\":%llu,\"success\":%.6f},"
           "\"broadcast\":{%s,",
           K.conns, K.opened, K.failed, never, connect_s, open_at_end,
           (unsigned long long)K.pings_sent, (unsigned long long)K.pongs_ok,
           (unsigned long long)K.pongs_bad, echo_rate, bc_json);
    hist_print_json(stdout, &K.hist);
    printf("},\"flood\":{%s},\"foreign_messages\":%llu,\"errors\":%llu,\"last_error\":",
           x, (unsigned long long)K.foreign, (unsigned long long)CL.errors);
    json_str(stdout, CL.last_error);
    print_transport_json(stdout);
    if (CL.deflate) printf(",\"compressed_received\":%llu", (unsigned long long)K.rx_compressed);
    printf("}\n");
    fflush(stdout);
    return K.opened ? 0 : 1;
}

/* ================= hold mode ================= */

static size_t h_on_data(conn_t *c, uint8_t *p, size_t n) {
    size_t off = 0;
    int b0, got; const uint8_t *pl; size_t len;
    while ((got = ws_next_frame(c, p, n, &off, &b0, &pl, &len)) > 0) {
        int op = b0 & 0x0F;
        if (op == 1 || op == 2) {
            if (b0 & 0x40) {
                if (!c->pmd) { conn_drop(c, "RSV1 without permessage-deflate", 0); return n; }
                pmd_reserve((size_t)K.size);
                long m = pmd_inflate(c, pl, len, CL.zbuf, CL.zbuf_cap, 0);
                if (m != K.size || memcmp(CL.zbuf, K.hold_payload, (size_t)K.size) != 0)
                    note_error("echo mismatch (inflated message differs)", 0);
                K.rx_compressed++;
            } else if (len != (size_t)K.size) {
                note_error("echo mismatch (size)", 0);
            }
            c->pongs_ok++;
            K.replies++;
        }
    }
    return got < 0 ? n : off;
}

static void h_on_open(conn_t *c) {
    K.opened++;
    K.t_last_open = now_ns();
    sbuf_len = 0;   /* conn_consume clears sbuf after on_open: send now */
    ws_put_message(c, K.json ? 1 : 2, K.hold_payload, (size_t)K.size, NULL);
    conn_send(c, sbuf, sbuf_len);
    sbuf_len = 0;
}

static const hooks_t h_hooks = {h_on_open, h_on_data, k_on_fail};

static void h_pump(int timeout_ms) { pump_with(&h_hooks, timeout_ms); }

static int hold_main(int argc, char **argv) {
    const char *prog = "wsload";
    CL.host = "127.0.0.1"; CL.path = "/"; CL.port = -1; CL.n_sources = 1; CL.deflate_level = 6;
    K.conns = 2000; K.concurrency = 1000; K.size = 1024; K.idle = 2; K.connect_timeout = 30; K.phase_timeout = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); exit(0); }
        if (ws_common_option(prog, argc, argv, &i)) continue;
        if (i + 1 >= argc) usage_error(prog, "missing value for", a);
        const char *v = argv[++i];
        if (k_shared_option(prog, a, v)) continue;
        else if (!strcmp(a, "--size")) K.size = (int)parse_long(prog, a, v, 1, 16 << 20);
        else usage_error(prog, "unknown option", a);
    }
    if (CL.port < 0) usage_error(prog, "--port is required", NULL);
    client_init(1, prog);
    long nofile = raise_nofile();
    if (nofile >= 0 && nofile < K.conns + 16)
        fprintf(stderr, "wsload: RLIMIT_NOFILE is %ld, too low for %d connections\n", nofile, K.conns);
    K.hold_payload = malloc((size_t)K.size);
    for (int i = 0; i < K.size; i++) K.hold_payload[i] = (uint8_t)('a' + i % 26);
    if (K.json) fill_json(K.hold_payload, (size_t)K.size, 1);
    conns = calloc((size_t)K.conns, sizeof *conns);
    T0 = now_ns();
    char x[512];
    emit("connecting", NULL);
    int next = 0;
    uint64_t deadline = T0 + (uint64_t)(K.connect_timeout * 1e9);
    while (!g_stop && (K.opened + K.failed < K.conns || K.replies < (uint64_t)OPEN_NOW) && now_ns() < deadline) {
        while (next < K.conns && next - K.opened - K.failed < K.concurrency) {
            conns[next].idx = next;
            if (conn_start(&conns[next]) < 0) K.failed++;
            next++;
        }
        h_pump(10);
    }
    int never = K.conns - K.opened - K.failed;
    for (int i = 0; i < K.conns; i++)
        if (conns[i].state == C_CONNECTING || conns[i].state == C_HANDSHAKE || conns[i].state == C_TLS)
            conn_drop(&conns[i], "connect timeout", ETIMEDOUT);
    double connect_s = K.opened ? (K.t_last_open - T0) / 1e9 : 0;
    snprintf(x, sizeof x, "\"connected\":%d,\"failed\":%d,\"timed_out\":%d,\"replies\":%llu,\"connect_s\":%.4f",
             K.opened, K.failed, never, (unsigned long long)K.replies, connect_s);
    emit("established", x);
    emit("idle_begin", NULL);
    uint64_t t_end = now_ns() + (uint64_t)(K.idle * 1e9);
    while (!g_stop && now_ns() < t_end) h_pump(ms_until(t_end));
    snprintf(x, sizeof x, "\"open\":%d", OPEN_NOW);
    emit("idle_end", x);
    int open_at_end = OPEN_NOW;
    close_all(conns, K.conns, 3.0);
    printf("{\"event\":\"result\",\"tool\":\"wsload\",\"mode\":\"hold\",\"connections\":%d,\"connected\":%d,"
           "\"failed\":%d,\"timed_out\":%d,\"connect_s\":%.4f,\"open_at_end\":%d,\"size\":%d,\"replies\":%llu,"
           "\"compressed_received\":%llu,\"errors\":%llu,\"last_error\":",
           K.conns, K.opened, K.failed, never, connect_s, open_at_end, K.size, (unsigned long long)K.replies,
           (unsigned long long)K.rx_compressed, (unsigned long long)CL.errors);
    json_str(stdout, CL.last_error);
    print_transport_json(stdout);
    printf("}\n");
    fflush(stdout);
    return K.opened ? 0 : 1;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--mode")) {
            if (!strcmp(argv[i + 1], "c10k")) return c10k_main(argc, argv);
            if (!strcmp(argv[i + 1], "hold")) return hold_main(argc, argv);
            if (strcmp(argv[i + 1], "echo")) usage_error("wsload", "--mode must be echo, c10k or hold", argv[i + 1]);
        }
    }
    return echo_main(argc, argv, 1);
}
