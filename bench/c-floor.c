/*
 * The floor of native socket I/O for the uplink: bench/node-floor.ts in C, with epoll. Per message
 * it reads the socket, finds the frame, checks its CRC and writes a 10-byte UPLINK_ACK; CONNECT gets
 * a fixed CONNACK ACCEPTED, PING a PONG. No token, no session, no store: not a gateway. Its CPU per
 * ack, measured by `vmcp bench uplink --target c-floor` with the same fleet, is what the reading and
 * acking cost without Node's event and stream layers (what a native addon could get down to).
 *
 * Build and run (the bench does both): cc -O2 -o c-floor bench/c-floor.c && ./c-floor [port]
 * Prints `FLOOR_PORT <port>` once it listens on 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
#define BUF 4096

/* A frame carried over between reads (a frame is at most 5 + 255 bytes). */
struct conn {
  unsigned char pend[BUF];
  int len;
};

static struct conn *conns[MAX_FDS];
static uint16_t crc_table[256];

/* CONNACK ACCEPTED, version 1, KEEPALIVE 30, NEXT_UPLINK_SEQ 1, as the codec encodes it. */
static const unsigned char CONNACK[] = {0x55, 0x11, 0x13, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x1e, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x16, 0x04};

static void crc_init(void) {
  for (int i = 0; i < 256; i++) {
    uint16_t c = (uint16_t)(i << 8);
    for (int b = 0; b < 8; b++) c = (c & 0x8000) ? (uint16_t)((c << 1) ^ 0x1021) : (uint16_t)(c << 1);
    crc_table[i] = c;
  }
}

/* CRC-16/CCITT-FALSE of p[0, n). */
static uint16_t crc16(const unsigned char *p, int n) {
  uint16_t crc = 0xffff;
  for (int i = 0; i < n; i++) crc = (uint16_t)((crc << 8) ^ crc_table[((crc >> 8) ^ p[i]) & 0xff]);
  return crc;
}

static void send_frame(int fd, unsigned char cmd, const unsigned char *data, int len) {
  unsigned char out[5 + 255];
  out[0] = 0x55;
  out[1] = cmd;
  out[2] = (unsigned char)len;
  memcpy(out + 3, data, (size_t)len);
  uint16_t crc = crc16(out + 1, len + 2);
  out[3 + len] = (unsigned char)(crc >> 8);
  out[4 + len] = (unsigned char)(crc & 0xff);
  if (write(fd, out, (size_t)(5 + len)) < 0 && errno != EAGAIN) { /* the peer is gone: epoll tells */
  }
}

static void on_frame(int fd, unsigned char cmd, const unsigned char *data, int len) {
  unsigned char code = cmd & 0x7f;
  if ((code == 0x20 || code == 0x21) && len >= 4) {
    unsigned char ack[5] = {data[0], data[1], data[2], data[3], 0x00};
    send_frame(fd, 0x22, ack, 5);
  } else if (code == 0x10) {
    if (write(fd, CONNACK, sizeof CONNACK) < 0 && errno != EAGAIN) {
    }
  } else if (code == 0x01) {
    send_frame(fd, 0x02, data, len);
  }
}

/* Decodes every whole frame of c->pend; keeps the incomplete tail. Bad CRC: skip the SOF byte. */
static void decode(int fd, struct conn *c) {
  int i = 0;
  while (i < c->len) {
    if (c->pend[i] != 0x55) {
      i++;
      continue;
    }
    if (c->len - i < 3) break;
    int len = c->pend[i + 2];
    if (c->len - i < 5 + len) break;
    uint16_t crc = (uint16_t)((c->pend[i + 3 + len] << 8) | c->pend[i + 4 + len]);
    if (crc16(c->pend + i + 1, len + 2) != crc) {
      i++;
      continue;
    }
    on_frame(fd, c->pend[i + 1], c->pend + i + 3, len);
    i += 5 + len;
  }
  memmove(c->pend, c->pend + i, (size_t)(c->len - i));
  c->len -= i;
}

static void close_conn(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(conns[fd]);
  conns[fd] = NULL;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  crc_init();
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 4096) < 0) {
    perror("listen");
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(ls, (struct sockaddr *)&addr, &alen);
  printf("FLOOR_PORT %d\n", ntohs(addr.sin_port));
  fflush(stdout);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  struct epoll_event events[256];
  unsigned char buf[65536];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int k = 0; k < n; k++) {
      int fd = events[k].data.fd;
      if (fd == ls) {
        for (;;) {
          int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
          if (c < 0) break;
          if (c >= MAX_FDS) {
            close(c);
            continue;
          }
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conns[c] = calloc(1, sizeof(struct conn));
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      struct conn *c = conns[fd];
      ssize_t r = read(fd, buf, sizeof buf);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        close_conn(ep, fd);
        continue;
      }
      /* Append what fits behind the carried-over tail and decode; repeat for the rest. */
      ssize_t off = 0;
      while (off < r) {
        int take = (int)(r - off) < BUF - c->len ? (int)(r - off) : BUF - c->len;
        memcpy(c->pend + c->len, buf + off, (size_t)take);
        c->len += take;
        off += take;
        decode(fd, c);
        if (c->len == BUF) c->len = 0; /* no frame is this long: garbage */
      }
    }
  }
}
