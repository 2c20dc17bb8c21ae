/* The loopback limit: a minimal socketmap server that answers every request with the
 * same constant reply. One thread, epoll, no parsing beyond netstring framing.
 *   constserver HOST PORT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAYLOAD "OK secure match=mx1.example.com:.example.net servername=hostname"

typedef struct { int fd; char buf[16384]; size_t len; } conn_t;

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: constserver HOST PORT\n"); return 2; }
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 1024)) { perror("listen"); return 1; }
    char reply[256];
    int replylen = snprintf(reply, sizeof reply, "%zu:%s,", sizeof PAYLOAD - 1, PAYLOAD);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd = accept(ls, NULL, NULL);
                if (fd < 0) continue;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                c = calloc(1, sizeof *c);
                c->fd = fd;
                struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                continue;
            }
            ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
            if (r <= 0) { close(c->fd); free(c); continue; }
            c->len += r;
            for (;;) {
                char *colon = memchr(c->buf, ':', c->len);
                if (!colon) break;
                long len = strtol(c->buf, NULL, 10);
                size_t total = (colon - c->buf) + 1 + len + 1;
                if (c->len < total) break;
                if (write(c->fd, reply, replylen) < 0) break;
                memmove(c->buf, c->buf + total, c->len - total);
                c->len -= total;
            }
        }
    }
}
