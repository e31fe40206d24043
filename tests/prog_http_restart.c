/* prog_http_restart.c: for tests/test_http_abuse.sh.  The program closes
 * memscope's listening socket (it may: descriptors are its own), which
 * stops the server with one line; a later memscope_http_start must serve
 * again (it once answered "already serving" while nothing was).  Prints
 * "first=R second=R" (both 0 when the second start serves) and then waits
 * for the test to fetch from the second address, for at most 10 s.
 * usage: prog_http_restart ADDR1 ADDR2 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memscope.h"

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int first = memscope_http_start(argv[1]);
    int lfd = -1;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));) {
        int fd = atoi(e->d_name), listening = 0;
        socklen_t len = sizeof listening;
        if (fd >= 3 && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening) lfd = fd;
    }
    if (d) closedir(d);
    if (lfd >= 0) close(lfd);
    sleep(2); /* the server looks at its socket once a second */
    int second = memscope_http_start(argv[2]);
    printf("first=%d second=%d\n", first, second);
    fflush(stdout);
    sleep(10);
    return 0;
}
