/*
 * Guard scenario d: a process that is NOT a web server but calls itself "nginx".
 *
 * Any process may set its comm with prctl(PR_SET_NAME); a detection that trusts comm would take
 * this program for nginx. It renames itself, connects to 127.0.0.1:<port> (argv[1]), then runs
 * `sh -c true` as a child and waits for it. monitor judges lineage by executable path, so neither
 * the connect nor the shell may raise an alert.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    if (prctl(PR_SET_NAME, "nginx", 0, 0, 0) != 0) {
        perror("prctl");
        return 1;
    }

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
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
