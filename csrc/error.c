/*
 * error.c -- errors: the bottom of the core, used by every file above it.
 *
 * Owns: the codes' names and descriptions (mp_strerror, mp_errname), the
 * pager's message of its last failure (mp_fail, mp_errmsg), the one way
 * to fill an mp_error (mp_set_error), errno -> mp_err, and mp_msg.
 *
 * Messages say what failed and why, never which API function was called:
 * the caller knows that, and the Lua binding adds it (as luaL_argerror
 * does), so "page 5 is not allocated (double free?)", not "free: page 5
 * ...".  Messages about the file start with its path.
 */
#include "mp_internal.h"

#include <errno.h>
#include <stdio.h>

static const struct { const char *name, *desc; } ERRS[MP_ERR_COUNT] = {
    [MP_OK] = { "ok", "no error" },
    [MP_EINVAL] = { "invalid", "invalid argument" },
    [MP_EEXIST] = { "exists", "file already exists" },
    [MP_ENOENT] = { "not_found", "no such file" },
    [MP_EACCES] = { "access", "permission denied" },
    [MP_EISDIR] = { "is_dir", "is a directory" },
    [MP_ENOTMP] = { "not_mappedpages", "not a mappedpages file" },
    [MP_EVERSION] = { "version", "unsupported format version" },
    [MP_ECORRUPT] = { "corrupt", "file is corrupt" },
    [MP_ELOCKED] = { "locked", "file is locked by another pager" },
    [MP_EIO] = { "io", "I/O error" },
    [MP_ENOSPC] = { "no_space", "no space left on device" },
    [MP_ENOMEM] = { "no_memory", "out of memory or address space" },
    [MP_EFULL] = { "full", "the file cannot grow further" },
    [MP_EREADONLY] = { "readonly", "pager is read-only" },
    [MP_ERANGE] = { "range", "page id out of range" },
    [MP_ERESERVED] = { "reserved", "page is used by the file itself" },
    [MP_ENOTALLOC] = { "not_allocated", "page is not allocated" },
    [MP_EDUP] = { "duplicate", "the same page twice" },
    [MP_ETXN] = { "transaction", "transaction misuse" },
    [MP_EPOISONED] = { "poisoned", "an earlier write failed; reopen the file" },
};

const char *mp_strerror(mp_err err)
{
    return (unsigned)err < MP_ERR_COUNT ? ERRS[err].desc : "unknown error";
}

const char *mp_errname(mp_err err)
{
    return (unsigned)err < MP_ERR_COUNT ? ERRS[err].name : "unknown";
}

void mp_msg(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

mp_err mp_fail(mp_pager *p, mp_err code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errmsg, sizeof p->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

const char *mp_errmsg(const mp_pager *p) { return p->errmsg; }

mp_err mp_set_error(mp_error *err, mp_err code, int sys_errno, const char *path, const char *fmt, ...)
{
    if (!err)
        return code;
    char what[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    err->code = code;
    err->sys_errno = sys_errno;
    if (sys_errno)
        mp_msg(err->msg, sizeof err->msg, "%s: %s: %s", path, what, strerror(sys_errno));
    else
        mp_msg(err->msg, sizeof err->msg, "%s: %s", path, what);
    return code;
}

mp_err mp_err_from_errno(int e)
{
    switch (e) {
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return MP_ENOSPC;
    case ENOMEM: return MP_ENOMEM;
    case ENOENT: return MP_ENOENT;
    case EACCES: case EPERM: case EROFS: return MP_EACCES;
    case EEXIST: return MP_EEXIST;
    case EISDIR: return MP_EISDIR;
    case EFBIG: return MP_EFULL;
    default: return MP_EIO;
    }
}
