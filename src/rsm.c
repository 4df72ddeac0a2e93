/*
 * rsm.c - XEP-0059 result set management.
 */
#include "rsm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *rsm_text(const struct xnode *n)
{
    struct buf b = BUF_INIT;
    xnode_text(n, &b);
    char *s = buf_steal(&b);
    return s;
}

int rsm_parse(const struct xnode *parent, struct rsm_request *out)
{
    memset(out, 0, sizeof *out);
    out->max = -1;
    const struct xnode *set = xnode_child(parent, "set", NS_RSM);
    if (set == NULL)
        return 0;
    out->present = true;
    const struct xnode *max = xnode_child(set, "max", NS_RSM);
    if (max) {
        char *t = rsm_text(max);
        char *end;
        errno = 0;
        long v = strtol(t, &end, 10);
        bool bad = errno || *t == '\0' || *end != '\0' || v < 0;
        free(t);
        if (bad)
            return -1;
        out->max = v;
    }
    const struct xnode *after = xnode_child(set, "after", NS_RSM);
    if (after) {
        out->after = rsm_text(after);
        if (out->after[0] == '\0')
            return -1;
    }
    const struct xnode *before = xnode_child(set, "before", NS_RSM);
    if (before) {
        out->has_before = true;
        out->before = rsm_text(before);
    }
    if (after && before)
        return -1;
    out->has_index = xnode_child(set, "index", NS_RSM) != NULL;
    return 0;
}

void rsm_free(struct rsm_request *r)
{
    free(r->after);
    free(r->before);
    r->after = r->before = NULL;
}

void rsm_reply(struct buf *b, const char *first, const char *last, long long count,
               long long index)
{
    buf_puts(b, "<set xmlns='" NS_RSM "'>");
    if (first) {
        if (index >= 0)
            buf_printf(b, "<first index='%lld'>", index);
        else
            buf_puts(b, "<first>");
        buf_put_escaped(b, first);
        buf_puts(b, "</first><last>");
        buf_put_escaped(b, last);
        buf_puts(b, "</last>");
    }
    if (count >= 0)
        buf_printf(b, "<count>%lld</count>", count);
    buf_puts(b, "</set>");
}
