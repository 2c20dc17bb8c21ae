/* Closed-loop socketmap load generator: N connections, each sends one request and
 * waits for its netstring reply before sending the next. One thread, epoll.
 *
 *   loadgen HOST PORT CONNS KEYFILE MAP (--duration SECS | --once)
 *
 * --once sends every key exactly once in total (first-time lookups) and reports how
 * long that took. Prints one JSON object. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    char in[8192];
    size_t inlen;
    double sent_at;
    int busy;
} conn_t;

static char **keys;
static size_t nkeys, next_key, done_keys;
static const char *mapname;
static double *lat;
static size_t nlat, caplat;
static long ok_replies, notfound_replies, other_replies, errors;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int send_request(conn_t *c, int once) {
    if (once && next_key >= nkeys) return 0;
    const char *key = keys[next_key++ % nkeys];
    char payload[10100], frame[10200];
    int plen = snprintf(payload, sizeof payload, "%s %s", mapname, key);
    int flen = snprintf(frame, sizeof frame, "%d:%s,", plen, payload);
    c->sent_at = now();
    if (write(c->fd, frame, flen) != flen) { errors++; return -1; }
    c->busy = 1;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: loadgen HOST PORT CONNS KEYFILE MAP (--duration SECS | --once)\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), nconns = atoi(argv[3]);
    mapname = argv[5];
    int once = strcmp(argv[6], "--once") == 0;
    double duration = once ? 120 : atof(argv[7]);  /* --once: give up on replies after 2 min */

    FILE *f = fopen(argv[4], "r");
    if (!f) { perror("keyfile"); return 2; }
    size_t cap = 1024; keys = malloc(cap * sizeof *keys);
    char line[10000];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        if (nkeys == cap) keys = realloc(keys, (cap *= 2) * sizeof *keys);
        keys[nkeys++] = strdup(line);
    }
    fclose(f);
    caplat = 1 << 20; lat = malloc(caplat * sizeof *lat);

    int ep = epoll_create1(0);
    conn_t *conns = calloc(nconns, sizeof *conns);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    double start = now(), deadline = start + duration;
    for (int i = 0; i < nconns; i++) send_request(&conns[i], once);
    struct epoll_event evs[256];
    int active = nconns;
    while (active > 0) {
        double t = now();
        if (t >= deadline) break;
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            ssize_t r = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
            if (r <= 0) { errors++; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); active--; continue; }
            c->inlen += r;
            for (;;) {
                char *colon = memchr(c->in, ':', c->inlen);
                if (!colon) break;
                char *end;
                long len = strtol(c->in, &end, 10);
                if (end != colon || colon == c->in || len < 0 || len > 100000) {
                    /* not a netstring: count it and drop the connection */
                    errors++; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); c->busy = 0; active--; break;
                }
                size_t total = (colon - c->in) + 1 + len + 1;
                if (c->inlen < total) break;
                char *p = colon + 1;
                if (len >= 2 && !memcmp(p, "OK", 2)) ok_replies++;
                else if (len >= 8 && !memcmp(p, "NOTFOUND", 8)) notfound_replies++;
                else other_replies++;
                if (nlat == caplat) lat = realloc(lat, (caplat *= 2) * sizeof *lat);
                lat[nlat++] = now() - c->sent_at;
                done_keys++;
                memmove(c->in, c->in + total, c->inlen - total);
                c->inlen -= total;
                c->busy = 0;
                int s = send_request(c, once);
                if (s <= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); active--; break; }
            }
        }
    }
    double elapsed = now() - start;
    long unanswered = 0;
    for (int i = 0; i < nconns; i++) unanswered += conns[i].busy;
    qsort(lat, nlat, sizeof *lat, cmp);
    double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)(nlat * 0.99)] : 0;
    printf("{\"requests\": %zu, \"seconds\": %.4f, \"rps\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
           "\"ok\": %ld, \"notfound\": %ld, \"other\": %ld, \"errors\": %ld, \"unanswered\": %ld}\n",
           nlat, elapsed, nlat / elapsed, p50 * 1e6, p99 * 1e6, ok_replies, notfound_replies, other_replies, errors, once ? unanswered : 0);
    return 0;
}
