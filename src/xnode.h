/*
 * xnode.h - a small XML element tree for stanzas.
 *
 * Names are kept as written (with their prefix, no namespace processing);
 * xnode_ns() resolves the namespace of an element by walking up its
 * xmlns / xmlns:prefix declarations.  Each element remembers the byte
 * range it occupied in the raw stanza text (raw_start, raw_end), so a
 * payload can be passed on exactly as received.
 *
 * Ownership: a tree is freed with xnode_free() on its root; children are
 * owned by their parent.
 */
#ifndef PUBSUBD_XNODE_H
#define PUBSUBD_XNODE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct xattr {
    char *name;
    char *value;
};

struct xnode {
    char *name;   /* element name, NULL for a text node */
    char *text;   /* text node content (NUL-terminated), NULL for elements */
    size_t text_len;
    struct xattr *attrs;
    int nattrs;
    struct xnode *parent, *first, *last, *next;
    size_t raw_start, raw_end; /* byte range in the raw stanza */
};

/* Returns a new element (caller frees the tree with xnode_free). */
struct xnode *xnode_new_element(const char *name);
void xnode_set_attr(struct xnode *n, const char *name, const char *value);
/* Appends child to n; n takes ownership. */
void xnode_append(struct xnode *n, struct xnode *child);
/* Appends text (merged with a preceding text node). */
void xnode_append_text(struct xnode *n, const char *s, size_t len);
void xnode_free(struct xnode *n);

/* Borrowed pointer to the attribute value or NULL. */
const char *xnode_attr(const struct xnode *n, const char *name);
/* The local name (after any prefix). */
const char *xnode_local_name(const struct xnode *n);
/* The namespace URI of element n, or "" when none is in scope. */
const char *xnode_ns(const struct xnode *n);
/* First child element with local name `name` (any if NULL) in namespace
 * `ns` (any if NULL); borrowed. */
struct xnode *xnode_child(const struct xnode *n, const char *name,
                          const char *ns);
/* Next sibling element after c matching the same way. */
struct xnode *xnode_next(const struct xnode *c, const char *name,
                         const char *ns);
int xnode_count_elements(const struct xnode *n);
/* True when n has a non-whitespace text child. */
bool xnode_has_text(const struct xnode *n);
/* Appends the concatenated text of n's text children. */
void xnode_text(const struct xnode *n, struct buf *out);

/* Serialises n and its subtree (escaped). */
void xnode_serialize(const struct xnode *n, struct buf *out);
/* Serialises n so that it stands alone: declarations for the default
 * namespace and every prefix it uses but inherits are added on n. */
void xnode_serialize_standalone(const struct xnode *n, struct buf *out);
/* True when every namespace prefix used in n's subtree is declared (on n,
 * inside it, or on an ancestor). */
bool xnode_prefixes_bound(const struct xnode *n);
/* True when the raw text of n stands alone: n declares its default
 * namespace and every prefix used in the subtree is declared inside it. */
bool xnode_is_self_contained(const struct xnode *n);

#endif
