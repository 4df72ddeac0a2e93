/*
 * xnode.c - element tree, namespace lookup and serialisation.
 */
#include "xnode.h"

#include <string.h>

struct xnode *xnode_new_element(const char *name)
{
    struct xnode *n = xcalloc(1, sizeof *n);
    n->name = xstrdup(name);
    return n;
}

void xnode_set_attr(struct xnode *n, const char *name, const char *value)
{
    for (int i = 0; i < n->nattrs; i++) {
        if (strcmp(n->attrs[i].name, name) == 0) {
            free(n->attrs[i].value);
            n->attrs[i].value = xstrdup(value);
            return;
        }
    }
    n->attrs = xrealloc(n->attrs, (size_t)(n->nattrs + 1) * sizeof *n->attrs);
    n->attrs[n->nattrs].name = xstrdup(name);
    n->attrs[n->nattrs].value = xstrdup(value);
    n->nattrs++;
}

void xnode_append(struct xnode *n, struct xnode *child)
{
    child->parent = n;
    child->next = NULL;
    if (n->last)
        n->last->next = child;
    else
        n->first = child;
    n->last = child;
}

void xnode_append_text(struct xnode *n, const char *s, size_t len)
{
    struct xnode *t = n->last;
    if (t == NULL || t->name != NULL) {
        t = xcalloc(1, sizeof *t);
        t->text = xstrndup(s, len);
        t->text_len = len;
        xnode_append(n, t);
        return;
    }
    t->text = xrealloc(t->text, t->text_len + len + 1);
    memcpy(t->text + t->text_len, s, len);
    t->text_len += len;
    t->text[t->text_len] = '\0';
}

void xnode_free(struct xnode *n)
{
    while (n) {
        struct xnode *next = n->next;
        xnode_free(n->first);
        for (int i = 0; i < n->nattrs; i++) {
            free(n->attrs[i].name);
            free(n->attrs[i].value);
        }
        free(n->attrs);
        free(n->name);
        free(n->text);
        free(n);
        n = next;
    }
}

const char *xnode_attr(const struct xnode *n, const char *name)
{
    for (int i = 0; i < n->nattrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return n->attrs[i].value;
    return NULL;
}

const char *xnode_local_name(const struct xnode *n)
{
    const char *colon = strchr(n->name, ':');
    return colon ? colon + 1 : n->name;
}

/* Finds the declaration of prefix (NULL: default namespace) in scope at n. */
static const char *xnode_lookup_ns(const struct xnode *n, const char *prefix,
                                   size_t plen)
{
    for (; n; n = n->parent) {
        for (int i = 0; i < n->nattrs; i++) {
            const char *a = n->attrs[i].name;
            if (prefix == NULL) {
                if (strcmp(a, "xmlns") == 0)
                    return n->attrs[i].value;
            } else if (strncmp(a, "xmlns:", 6) == 0 &&
                       strlen(a + 6) == plen &&
                       memcmp(a + 6, prefix, plen) == 0) {
                return n->attrs[i].value;
            }
        }
    }
    return NULL;
}

const char *xnode_ns(const struct xnode *n)
{
    const char *colon = strchr(n->name, ':');
    const char *ns;
    if (colon)
        ns = xnode_lookup_ns(n, n->name, (size_t)(colon - n->name));
    else
        ns = xnode_lookup_ns(n, NULL, 0);
    return ns ? ns : "";
}

static bool xnode_matches(const struct xnode *c, const char *name,
                          const char *ns)
{
    if (c->name == NULL)
        return false;
    if (name && strcmp(xnode_local_name(c), name) != 0)
        return false;
    if (ns && strcmp(xnode_ns(c), ns) != 0)
        return false;
    return true;
}

struct xnode *xnode_child(const struct xnode *n, const char *name,
                          const char *ns)
{
    for (struct xnode *c = n->first; c; c = c->next)
        if (xnode_matches(c, name, ns))
            return c;
    return NULL;
}

struct xnode *xnode_next(const struct xnode *c, const char *name,
                         const char *ns)
{
    for (c = c->next; c; c = c->next)
        if (xnode_matches(c, name, ns))
            return (struct xnode *)c;
    return NULL;
}

int xnode_count_elements(const struct xnode *n)
{
    int count = 0;
    for (struct xnode *c = n->first; c; c = c->next)
        if (c->name)
            count++;
    return count;
}

bool xnode_has_text(const struct xnode *n)
{
    for (struct xnode *c = n->first; c; c = c->next) {
        if (c->name)
            continue;
        for (size_t i = 0; i < c->text_len; i++)
            if (!strchr(" \t\r\n", c->text[i]))
                return true;
    }
    return false;
}

void xnode_text(const struct xnode *n, struct buf *out)
{
    for (struct xnode *c = n->first; c; c = c->next)
        if (c->name == NULL)
            buf_append(out, c->text, c->text_len);
}

static void xnode_serialize_attrs(const struct xnode *n, struct buf *out)
{
    for (int i = 0; i < n->nattrs; i++) {
        buf_puts(out, " ");
        buf_puts(out, n->attrs[i].name);
        buf_puts(out, "='");
        buf_put_escaped(out, n->attrs[i].value);
        buf_puts(out, "'");
    }
}

static void xnode_serialize_children(const struct xnode *n, struct buf *out)
{
    for (struct xnode *c = n->first; c; c = c->next) {
        if (c->name)
            xnode_serialize(c, out);
        else
            buf_put_escaped_n(out, c->text, c->text_len);
    }
}

static void xnode_serialize_close(const struct xnode *n, struct buf *out)
{
    if (n->first == NULL) {
        buf_puts(out, "/>");
        return;
    }
    buf_puts(out, ">");
    xnode_serialize_children(n, out);
    buf_puts(out, "</");
    buf_puts(out, n->name);
    buf_puts(out, ">");
}

void xnode_serialize(const struct xnode *n, struct buf *out)
{
    if (n->name == NULL) {
        buf_put_escaped_n(out, n->text, n->text_len);
        return;
    }
    buf_puts(out, "<");
    buf_puts(out, n->name);
    xnode_serialize_attrs(n, out);
    xnode_serialize_close(n, out);
}

/* Is prefix (len plen) declared on top or one of its descendants' path
 * from `from` up to `top`? */
static bool xnode_declared_within(const struct xnode *from,
                                  const struct xnode *top, const char *prefix,
                                  size_t plen)
{
    for (const struct xnode *n = from;; n = n->parent) {
        for (int i = 0; i < n->nattrs; i++) {
            const char *a = n->attrs[i].name;
            if (strncmp(a, "xmlns:", 6) == 0 && strlen(a + 6) == plen &&
                memcmp(a + 6, prefix, plen) == 0)
                return true;
        }
        if (n == top)
            return false;
    }
}

static bool name_needs_outer_prefix(const char *name, const struct xnode *at,
                                    const struct xnode *top)
{
    const char *colon = strchr(name, ':');
    if (colon == NULL)
        return false;
    size_t plen = (size_t)(colon - name);
    if (plen == 3 && memcmp(name, "xml", 3) == 0)
        return false;
    if (plen == 5 && memcmp(name, "xmlns", 5) == 0)
        return false;
    return !xnode_declared_within(at, top, name, plen);
}

static bool xnode_subtree_self_contained(const struct xnode *n,
                                         const struct xnode *top)
{
    if (name_needs_outer_prefix(n->name, n, top))
        return false;
    for (int i = 0; i < n->nattrs; i++)
        if (name_needs_outer_prefix(n->attrs[i].name, n, top))
            return false;
    for (struct xnode *c = n->first; c; c = c->next)
        if (c->name && !xnode_subtree_self_contained(c, top))
            return false;
    return true;
}

/* Does an unprefixed element in the subtree at n take its default
 * namespace from above top (no xmlns on its path up to top)? */
static bool xnode_needs_outer_default(const struct xnode *n,
                                      const struct xnode *top)
{
    if (strchr(n->name, ':') == NULL) {
        for (const struct xnode *a = n;; a = a->parent) {
            if (xnode_attr(a, "xmlns") != NULL)
                break;
            if (a == top)
                return true;
        }
    }
    for (struct xnode *c = n->first; c; c = c->next)
        if (c->name && xnode_needs_outer_default(c, top))
            return true;
    return false;
}

bool xnode_is_self_contained(const struct xnode *n)
{
    if (xnode_needs_outer_default(n, n))
        return false;
    return xnode_subtree_self_contained(n, n);
}

/* Adds, on the output of top's start tag, declarations of outer prefixes
 * used in the subtree at n (each at most once). */
static void xnode_collect_outer_prefixes(const struct xnode *n,
                                         const struct xnode *top,
                                         struct buf *decls)
{
    for (int i = -1; i < n->nattrs; i++) {
        const char *name = i < 0 ? n->name : n->attrs[i].name;
        if (!name_needs_outer_prefix(name, n, top))
            continue;
        size_t plen = (size_t)(strchr(name, ':') - name);
        char *decl = xasprintf(" xmlns:%.*s='", (int)plen, name);
        if (strstr(decls->data ? decls->data : "", decl) == NULL) {
            const char *uri = xnode_lookup_ns(top->parent, name, plen);
            buf_puts(decls, decl);
            buf_put_escaped(decls, uri ? uri : "");
            buf_puts(decls, "'");
        }
        free(decl);
    }
    for (struct xnode *c = n->first; c; c = c->next)
        if (c->name)
            xnode_collect_outer_prefixes(c, top, decls);
}

bool xnode_prefixes_bound(const struct xnode *n)
{
    for (int i = -1; i < n->nattrs; i++) {
        const char *name = i < 0 ? n->name : n->attrs[i].name;
        const char *colon = strchr(name, ':');
        if (colon == NULL)
            continue;
        size_t plen = (size_t)(colon - name);
        if ((plen == 3 && memcmp(name, "xml", 3) == 0) || (plen == 5 && memcmp(name, "xmlns", 5) == 0))
            continue;
        if (xnode_lookup_ns(n, name, plen) == NULL)
            return false;
    }
    for (struct xnode *c = n->first; c; c = c->next)
        if (c->name && !xnode_prefixes_bound(c))
            return false;
    return true;
}

void xnode_serialize_standalone(const struct xnode *n, struct buf *out)
{
    buf_puts(out, "<");
    buf_puts(out, n->name);
    if (xnode_attr(n, "xmlns") == NULL && xnode_needs_outer_default(n, n)) {
        const char *def = xnode_lookup_ns(n, NULL, 0);
        buf_puts(out, " xmlns='");
        buf_put_escaped(out, def ? def : "");
        buf_puts(out, "'");
    }
    struct buf decls = BUF_INIT;
    xnode_collect_outer_prefixes(n, n, &decls);
    if (decls.len)
        buf_append(out, decls.data, decls.len);
    buf_free(&decls);
    xnode_serialize_attrs(n, out);
    xnode_serialize_close(n, out);
}
