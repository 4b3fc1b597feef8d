/* Status texts and the per-thread error message. The message buffer is the
 * one piece of mutable library state, and it is thread-local, so concurrent
 * calls never see each other's messages. It has a fixed size (no allocation
 * that a thread's exit would leak); a longer message, such as the
 * diagnostics of a file with very many errors, is cut with a marker. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { MSG_CAP = 16384 };
static _Thread_local char msg[MSG_CAP];

const char *spat_strerror(int status)
{
    switch (status) {
    case SPAT_OK: return "success";
    case SPAT_ESYNTAX: return "the pattern text has errors";
    case SPAT_EINVAL: return "invalid argument";
    case SPAT_ENOPATTERN: return "no such pattern";
    case SPAT_EHEADDIM: return "the kernel was not built for this head dimension";
    case SPAT_EDTYPE: return "the backend does not support this dtype";
    case SPAT_EOVERLAP: return "the output overlaps an input or itself";
    case SPAT_EDEVICE: return "pointers on the wrong device, or no such device";
    case SPAT_ELOAD: return "the kernel module is corrupt, foreign or of another version";
    case SPAT_ENOMEM: return "out of memory";
    case SPAT_EIO: return "a file could not be read or written";
    case SPAT_EBACKEND: return "the backend is not available";
    case SPAT_ECUDA: return "the CUDA driver failed";
    case SPAT_ENVRTC: return "NVRTC failed";
    }
    return "unknown status code";
}

const char *spat_last_error(void) { return msg; }

void sp_clear_error(void) { msg[0] = '\0'; }

static void truncate_with_marker(void)
{
    static const char marker[] = "\n[... message truncated]";
    memcpy(msg + MSG_CAP - sizeof marker, marker, sizeof marker);
}

int sp_set_error(int code, const char *fmt, ...)
{
    /* Format into a private buffer first: an argument may be the current
     * message (a caller adding context to it). */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        snprintf(msg, MSG_CAP, "%s", spat_strerror(code));
        return code;
    }
    char *tmp = malloc((size_t)n + 1);
    if (!tmp) {
        /* No memory for a copy: keep the fixed text, which aliases nothing. */
        snprintf(msg, MSG_CAP, "%s (out of memory formatting the message)", spat_strerror(code));
        return code;
    }
    va_start(ap, fmt);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap);
    va_end(ap);
    if ((size_t)n < MSG_CAP) {
        memcpy(msg, tmp, (size_t)n + 1);
    } else {
        memcpy(msg, tmp, MSG_CAP - 1);
        msg[MSG_CAP - 1] = '\0';
        truncate_with_marker();
    }
    free(tmp);
    return code;
}
