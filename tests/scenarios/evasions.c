/*
 * Evasions the monitor must still see (issue 14), driven by tests/tests/evasions.rs. One mode per
 * way of doing something without the system call a naive hook watches:
 *
 *   evasions execveat DIR NAME ARG...  runs DIR/NAME with execveat(2) on a descriptor of DIR
 *                                      (the kernel's filename is /dev/fd/N/NAME)
 *   evasions fexecve SRC ARG...        copies SRC into a memfd and runs it with fexecve(3)
 *                                      (execveat(fd, "", AT_EMPTY_PATH): no path at all)
 *   evasions connect-mapped PORT       connects an AF_INET6 socket to ::ffff:127.0.0.1:PORT
 *   evasions uring-connect PORT        connects to 127.0.0.1:PORT through io_uring
 *                                      (IORING_OP_CONNECT), once inline and once from an io-wq
 *                                      worker (IOSQE_ASYNC)
 *   evasions uring-listen PORT         binds 0.0.0.0:PORT and listens through io_uring
 *                                      (IORING_OP_BIND, IORING_OP_LISTEN: Linux 6.11+), then
 *                                      waits for stdin to close; PORT `auto`: no bind, listen
 *                                      picks the port (autobind)
 *   evasions listen-connect LPORT CPORT  listens on 0.0.0.0:LPORT and connects to
 *                                      127.0.0.1:CPORT with plain system calls, then waits for
 *                                      stdin to close (run as a setuid copy)
 *   evasions seteuid-connect UID PORT  sets its effective uid to UID (the real one stays) and
 *                                      connects to 127.0.0.1:PORT: an effective uid only the
 *                                      kernel's record can know (no uid-change record is sent
 *                                      for it)
 *
 * ARG... is the new program's argv, argv[0] included. Raw io_uring system calls, no liburing.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Linux 6.11's opcodes; Debian 12's headers (6.1) predate them. */
#ifndef IORING_OP_BIND
#define IORING_OP_BIND 56
#endif
#ifndef IORING_OP_LISTEN
#define IORING_OP_LISTEN 57
#endif

extern char **environ;

static int die(const char *what) {
    perror(what);
    return 1;
}

static int do_execveat(char **argv) {
    int dir = open(argv[0], O_PATH | O_DIRECTORY);
    if (dir < 0)
        return die("open");
    syscall(SYS_execveat, dir, argv[1], &argv[2], environ, 0);
    return die("execveat");
}

static int do_fexecve(char **argv) {
    int src = open(argv[0], O_RDONLY);
    if (src < 0)
        return die("open");
    struct stat st;
    if (fstat(src, &st) != 0)
        return die("fstat");
    int mem = memfd_create("x", MFD_CLOEXEC);
    if (mem < 0)
        return die("memfd_create");
    for (off_t done = 0; done < st.st_size;) {
        ssize_t n = sendfile(mem, src, NULL, (size_t)(st.st_size - done));
        if (n <= 0)
            return die("sendfile");
        done += n;
    }
    close(src);
    fexecve(mem, &argv[1], environ);
    return die("fexecve");
}

static struct sockaddr_in loopback4(const char *port) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static int do_connect_mapped(const char *port) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return die("socket");
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)atoi(port))};
    if (inet_pton(AF_INET6, "::ffff:127.0.0.1", &sa.sin6_addr) != 1)
        return die("inet_pton");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return die("connect");
    close(fd);
    return 0;
}

/* A submission and completion ring, mapped the way io_uring_setup(2) describes. */
struct ring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static int ring_init(struct ring *r) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    r->fd = (int)syscall(SYS_io_uring_setup, 4, &p);
    if (r->fd < 0)
        return die("io_uring_setup");
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_SQ_RING);
    char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_CQ_RING);
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
        return die("mmap");
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;
}

/* Submits one entry, waits for its completion and returns its result (a negative errno). */
static int ring_run(struct ring *r, const struct io_uring_sqe *sqe) {
    unsigned tail = *r->sq_tail;
    unsigned index = tail & *r->sq_mask;
    r->sqes[index] = *sqe;
    r->sq_array[index] = index;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    unsigned to_submit = 1;
    for (;;) {
        unsigned head = __atomic_load_n(r->cq_head, __ATOMIC_ACQUIRE);
        if (head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
            int res = r->cqes[head & *r->cq_mask].res;
            __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
            return res;
        }
        if (syscall(SYS_io_uring_enter, r->fd, to_submit, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0 &&
            errno != EINTR)
            return -errno;
        to_submit = 0;
    }
}

static int uring_op(struct ring *r, unsigned char opcode, unsigned char flags, int fd,
                    const void *addr, unsigned long long addr2, unsigned len, const char *what) {
    struct io_uring_sqe sqe;
    memset(&sqe, 0, sizeof sqe);
    sqe.opcode = opcode;
    sqe.flags = flags;
    sqe.fd = fd;
    sqe.addr = (unsigned long long)(unsigned long)addr;
    sqe.addr2 = addr2; /* connect and bind: the address length */
    sqe.len = len;     /* listen: the backlog */
    int res = ring_run(r, &sqe);
    if (res < 0) {
        errno = -res;
        return die(what);
    }
    return 0;
}

static int do_uring_connect(const char *port) {
    struct ring r;
    if (ring_init(&r) != 0)
        return 1;
    struct sockaddr_in sa = loopback4(port);
    /* Inline in io_uring_enter(2), then forced onto an io-wq worker thread. */
    unsigned char flags[2] = {0, IOSQE_ASYNC};
    for (int i = 0; i < 2; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return die("socket");
        if (uring_op(&r, IORING_OP_CONNECT, flags[i], fd, &sa, sizeof sa, 0, "IORING_OP_CONNECT"))
            return 1;
        close(fd);
    }
    return 0;
}

/* Waits until the test closes our stdin (it has seen what it needed). */
static void wait_stdin(void) {
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
}

static int listen_any(const char *port, struct ring *r) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    if (r && !strcmp(port, "auto")) {
        /* No bind: listen picks a port itself. */
        if (uring_op(r, IORING_OP_LISTEN, 0, fd, NULL, 0, 16, "IORING_OP_LISTEN"))
            return -1;
    } else if (r) {
        if (uring_op(r, IORING_OP_BIND, 0, fd, &sa, sizeof sa, 0, "IORING_OP_BIND") ||
            uring_op(r, IORING_OP_LISTEN, 0, fd, NULL, 0, 16, "IORING_OP_LISTEN"))
            return -1;
    } else if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0) {
        die("bind/listen");
        return -1;
    }
    printf("listening\n");
    fflush(stdout);
    return fd;
}

static int do_uring_listen(const char *port) {
    struct ring r;
    if (ring_init(&r) != 0 || listen_any(port, &r) < 0)
        return 1;
    wait_stdin();
    return 0;
}

static int do_listen_connect(const char *lport, const char *cport) {
    if (listen_any(lport, NULL) < 0)
        return 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = loopback4(cport);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return die("connect");
    close(fd);
    wait_stdin();
    return 0;
}

static int do_seteuid_connect(const char *uid, const char *port) {
    if (seteuid((uid_t)atoi(uid)) != 0)
        return die("seteuid");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = loopback4(port);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return die("connect");
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "execveat") && argc >= 5)
        return do_execveat(&argv[2]);
    if (!strcmp(mode, "fexecve") && argc >= 4)
        return do_fexecve(&argv[2]);
    if (!strcmp(mode, "connect-mapped") && argc == 3)
        return do_connect_mapped(argv[2]);
    if (!strcmp(mode, "uring-connect") && argc == 3)
        return do_uring_connect(argv[2]);
    if (!strcmp(mode, "uring-listen") && argc == 3)
        return do_uring_listen(argv[2]);
    if (!strcmp(mode, "listen-connect") && argc == 4)
        return do_listen_connect(argv[2], argv[3]);
    if (!strcmp(mode, "seteuid-connect") && argc == 4)
        return do_seteuid_connect(argv[2], argv[3]);
    fprintf(stderr, "usage: see the comment at the top of evasions.c\n");
    return 2;
}
