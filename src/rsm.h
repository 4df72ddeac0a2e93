/*
 * rsm.h - XEP-0059 result set management: the request's <set/> and the
 * reply's <set/>.
 */
#ifndef PUBSUBD_RSM_H
#define PUBSUBD_RSM_H

#include <stdbool.h>

#include "buf.h"
#include "xnode.h"

#define NS_RSM "http://jabber.org/protocol/rsm"

struct rsm_request {
    bool present;
    long max;         /* -1: not given */
    char *after;      /* NULL: not given */
    char *before;     /* NULL: not given; "" for <before/> (the last page) */
    bool has_before;
    bool has_index;
};

/* Parses the <set xmlns='http://jabber.org/protocol/rsm'/> child of parent
 * (absent: present = false).  Returns 0, or -1 when it is malformed
 * (bad-request).  Free with rsm_free(). */
int rsm_parse(const struct xnode *parent, struct rsm_request *out) MUSTCHECK;
void rsm_free(struct rsm_request *r);

/* Appends the reply's <set/>: first/last (NULL when the page is empty),
 * count (< 0: omitted), and index, the number of items of the full set
 * before the page's first item, as <first index='...'/> (XEP-0059 §2;
 * < 0: omitted).  Borrows its arguments. */
void rsm_reply(struct buf *b, const char *first, const char *last, long long count,
               long long index);

#endif
