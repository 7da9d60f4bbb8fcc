/* udpecho_c: the physical reference for UDP echo — one socket, one thread,
 * every datagram sent back to where it came from, no Python in the way.
 *
 *   udpecho_c --host 127.0.0.1 --port 9000 [--batch 1]
 *
 * --batch 1 (default) is the lean classic: blocking recvfrom + sendto, one
 * system call per datagram each way.  --batch N > 1 uses recvmmsg
 * (MSG_WAITFORONE) + sendmmsg, the same batching fastsock's UDP transport
 * does, to show the ceiling of that technique.
 * Prints "udpecho_c listening on udp://H:P" when ready; exits 0 on SIGINT/SIGTERM. */
#include "lg.h"
#include <netdb.h>

#define MAX_BATCH 1024

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = 0, batch = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            puts("usage: udpecho_c --host H --port P [--batch N]");
            return 0;
        }
        if (i + 1 >= argc) usage_error(argv[0], "missing value for", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = parse_long(argv[0], a, v, 0, 65535);
        else if (!strcmp(a, "--batch")) batch = parse_long(argv[0], a, v, 1, MAX_BATCH);
        else usage_error(argv[0], "unknown option", a);
    }
    install_stop_signals();

    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%ld", port);
    if (getaddrinfo(host, portstr, &hints, &ai) != 0) usage_error(argv[0], "bad numeric host", host);
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) die("bind");
    freeaddrinfo(ai);

    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &blen);
    char shown[INET6_ADDRSTRLEN];
    int bport;
    if (bound.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&bound;
        inet_ntop(AF_INET6, &s6->sin6_addr, shown, sizeof shown);
        bport = ntohs(s6->sin6_port);
        printf("udpecho_c listening on udp://[%s]:%d\n", shown, bport);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&bound;
        inet_ntop(AF_INET, &s4->sin_addr, shown, sizeof shown);
        bport = ntohs(s4->sin_port);
        printf("udpecho_c listening on udp://%s:%d\n", shown, bport);
    }
    fflush(stdout);

    static char bufs[MAX_BATCH][2048];
    static struct sockaddr_storage peers[MAX_BATCH];
    static struct mmsghdr msgs[MAX_BATCH];
    static struct iovec iov[MAX_BATCH];
    unsigned long long echoed = 0;
    while (!g_stop) {
        if (batch == 1) {
            socklen_t plen = sizeof peers[0];
            ssize_t n = recvfrom(fd, bufs[0], sizeof bufs[0], 0, (struct sockaddr *)&peers[0], &plen);
            if (n < 0) {
                if (errno == EINTR) continue;
                die("recvfrom");
            }
            if (sendto(fd, bufs[0], (size_t)n, 0, (struct sockaddr *)&peers[0], plen) >= 0) echoed++;
            continue;
        }
        for (long i = 0; i < batch; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = sizeof bufs[i];
            memset(&msgs[i], 0, sizeof msgs[i]);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &peers[i];
            msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
        }
        int n = recvmmsg(fd, msgs, (unsigned)batch, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("recvmmsg");
        }
        for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
        int off = 0;
        while (off < n) {  /* a blocking socket: sendmmsg takes all or fails one */
            int w = sendmmsg(fd, msgs + off, (unsigned)(n - off), 0);
            if (w < 0) {
                if (errno == EINTR) continue;
                off++;     /* drop the failing datagram, keep serving */
                continue;
            }
            off += w;
            echoed += (unsigned long long)w;
        }
    }
    fprintf(stderr, "udpecho_c: echoed %llu datagrams\n", echoed);
    close(fd);
    return 0;
}
