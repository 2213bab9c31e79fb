/* libFuzzer target: the proc plugin's parsers of /proc text (stat, status,
 * io, limits, pidfile, net/tcp lines, fd link names). The kernel writes
 * these files, but a parser that reads past a buffer on a surprising line
 * is a bug all the same. The first input byte picks the parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proc_pid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;
    char *p;
    uint64_t a, b;
    int pid;

    if (size < 1) {
        return 0;
    }
    text = malloc(size);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    switch (data[0] % 7) {
    case 0: {
        struct proc_stat st;
        proc_stat_parse(text, &st);
        break;
    }
    case 1: {
        struct proc_status st;
        proc_status_parse(text, &st);
        break;
    }
    case 2: {
        struct proc_io io;
        proc_io_parse(text, &io);
        break;
    }
    case 3: {
        struct proc_limit l;
        proc_limits_nofile(text, &a, &b);
        p = text;
        for (int i = 0; i < 64 && proc_limits_next(&p, &l) == 1; i++) {
        }
        break;
    }
    case 4:
        proc_pidfile_parse(text, &pid);
        break;
    case 5: {
        struct proc_tcp t;
        char ep[128];
        uint64_t inode;
        if (proc_tcp_parse(text, (int)(size % 2), &t) == 1) {
            proc_tcp_endpoint(t.local, (int)(size % 2), t.lport, ep,
                              sizeof(ep));
        }
        (void)inode;
        break;
    }
    default:
        proc_link_inode(text, "net", &a);
        proc_fd_classify(text, &a);
        break;
    }
    free(text);
    return 0;
}
