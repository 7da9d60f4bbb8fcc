/* tcpload: closed-loop TCP echo load generator (epoll, one thread).
 *
 *   tcpload --port 9000 --connections 50 --size 64 --inflight 1 --duration 5
 *
 * Every connection keeps INFLIGHT messages of SIZE bytes outstanding; a
 * message completes when SIZE more bytes have come back.  Prints one JSON
 * line: msgs/s, MB/s, latency p50/p99/p99.9 (histogram), errors. */
#include "client.h"

int main(int argc, char **argv) { return echo_main(argc, argv, 0); }
