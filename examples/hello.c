/*
 * examples/hello.c -- mappedpages from C: create a file, save a counter in
 * a protected page in one atomic commit, reopen and read it back.
 *
 * Build and run from the repository root after `make`:
 *   cc -std=c11 -Icsrc examples/hello.c build/libmappedpages.a -o hello && ./hello /tmp/hello.mp
 */
#include "mappedpages.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int fail(const char *what, const char *msg)
{
    fprintf(stderr, "hello: %s: %s\n", what, msg);
    return 1;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "/tmp/hello.mp";
    mp_pager *p;
    mp_error err;
    remove(path);
    if (mp_create(path, NULL, &p, &err) != MP_OK)
        return fail("create", err.msg);

    /* One transaction: a protected page holding a counter, and the user
     * root pointing at it (pid + 1, so that 0 means "nothing yet"). */
    mp_pgno pid;
    void *page;
    uint64_t counter = 42;
    if (mp_begin(p) != MP_OK || mp_alloc_protected(p, &pid) != MP_OK ||
        mp_protected_write_ptr(p, pid, &page) != MP_OK)
        return fail("transaction", mp_errmsg(p));
    memcpy(page, &counter, sizeof counter);
    if (mp_set_root(p, pid + 1) != MP_OK || mp_commit(p) != MP_OK)  /* one barrier */
        return fail("commit", mp_errmsg(p));
    mp_close(p);

    mp_options ro = { .readonly = 1 };
    if (mp_open(path, &ro, &p, &err) != MP_OK)
        return fail("open", err.msg);
    uint64_t root = mp_root(p), saved;
    memcpy(&saved, mp_protected_ptr(p, root - 1), sizeof saved);
    printf("root %llu -> protected page %llu holds %llu\n", (unsigned long long)root,
           (unsigned long long)(root - 1), (unsigned long long)saved);
    mp_close(p);
    remove(path);
    return 0;
}
