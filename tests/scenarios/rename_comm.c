/*
 * A process that changes its comm with prctl(PR_SET_NAME): any process may, so a detection that
 * trusts comm is fooled by it. monitor judges executables and lineage, never comm.
 *
 *   rename_comm PORT [NAME [LISTEN_PORT]]
 *
 * It renames itself NAME ("nginx" by default), listens on 0.0.0.0:LISTEN_PORT when given (and
 * says "listening"), connects to 127.0.0.1:PORT, then runs `sh -c true` as a child and waits for
 * it; with LISTEN_PORT it then waits for stdin to close.
 *
 * Guard scenario d (tests/tests/detections.rs): a program that is NOT a web server calls itself
 * "nginx"; neither its connect nor its shell may raise an alert. Evasion (tests/tests/evasions.rs):
 * a backdoor running as www-data calls itself "sshd" or a kernel thread's name; its listener, its
 * connect and its shell must still raise theirs.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int listen_any(const char *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("socket");
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0) {
        perror("bind/listen");
        return -1;
    }
    printf("listening\n");
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s PORT [NAME [LISTEN_PORT]]\n", argv[0]);
        return 2;
    }
    const char *name = argc > 2 ? argv[2] : "nginx";
    if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0) {
        perror("prctl");
        return 1;
    }
    if (argc > 3 && listen_any(argv[3]) < 0)
        return 1;

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        return 1;
    }
    close(fd);

    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        execl("/bin/sh", "sh", "-c", "true", (char *)NULL);
        perror("execl");
        _exit(127);
    }
    int status = 0;
    if (waitpid(child, &status, 0) < 0) {
        perror("waitpid");
        return 1;
    }
    if (argc > 3) {
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
