/*
 * jid.h - JID and node id checks.
 *
 * pubsubd does not run full stringprep: it compares JIDs after
 * lower-casing the ASCII letters of the local part and domain, which is
 * what the XMPP server already normalised in the 'from' it stamps.
 */
#ifndef PUBSUBD_JID_H
#define PUBSUBD_JID_H

#include <stdbool.h>
#include <stddef.h>

#include "alloc.h"

/* True when s is a syntactically valid JID (RFC 7622 shape and lengths). */
bool jid_is_valid(const char *s);
/* The bare JID of s, normalised (ASCII lower case); caller frees.  NULL
 * when s is not valid. */
char *jid_bare(const char *s) MUSTCHECK;
/* s normalised (local and domain lower-cased, resource kept); caller
 * frees.  NULL when s is not valid. */
char *jid_normalize(const char *s) MUSTCHECK;
/* True when s has no local part and no resource. */
bool jid_is_domain(const char *s);

/* Node ids: non-empty, at most max_bytes bytes, no control characters. */
bool node_id_is_valid(const char *s, size_t max_bytes);
/* Item ids follow the same rule. */
bool item_id_is_valid(const char *s, size_t max_bytes);

#endif
