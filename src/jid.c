/*
 * jid.c - JID parsing, normalisation and id validation.
 */
#include "jid.h"

#include <string.h>

#define JID_PART_MAX 1023

/* Splits s into parts; returns false when a part is empty or too long. */
static bool jid_split(const char *s, size_t *local_len, const char **domain,
                      size_t *domain_len, const char **resource)
{
    if (s == NULL || *s == '\0')
        return false;
    const char *slash = strchr(s, '/');
    size_t head = slash ? (size_t)(slash - s) : strlen(s);
    const char *at = memchr(s, '@', head);
    *local_len = at ? (size_t)(at - s) : 0;
    *domain = at ? at + 1 : s;
    *domain_len = head - (size_t)(*domain - s);
    *resource = slash ? slash + 1 : NULL;
    if (at && *local_len == 0)
        return false;
    if (*domain_len == 0 || *domain_len > JID_PART_MAX || *local_len > JID_PART_MAX)
        return false;
    if (slash && (strlen(*resource) == 0 || strlen(*resource) > JID_PART_MAX))
        return false;
    for (size_t i = 0; i < *local_len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || strchr("\"&'/:<>@ ", s[i]))
            return false;
    for (size_t i = 0; i < *domain_len; i++) {
        unsigned char c = (unsigned char)(*domain)[i];
        if (c <= ' ' || strchr("@/<>'\"&", c))
            return false;
    }
    if ((*domain)[0] == '.' || (*domain)[*domain_len - 1] == '.')
        return false;
    if (*resource) {
        for (const char *r = *resource; *r; r++)
            if ((unsigned char)*r < ' ')
                return false;
    }
    return true;
}

bool jid_is_valid(const char *s)
{
    size_t ll, dl;
    const char *d, *r;
    return jid_split(s, &ll, &d, &dl, &r);
}

static char *jid_build(const char *s, bool with_resource)
{
    size_t ll, dl;
    const char *d, *r;
    if (!jid_split(s, &ll, &d, &dl, &r))
        return NULL;
    size_t head = ll ? ll + 1 + dl : dl;
    size_t total = head + ((with_resource && r) ? 1 + strlen(r) : 0);
    char *out = xmalloc(total + 1);
    size_t k = 0;
    if (ll) {
        for (size_t i = 0; i < ll; i++) {
            char c = s[i];
            out[k++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        out[k++] = '@';
    }
    for (size_t i = 0; i < dl; i++) {
        char c = d[i];
        out[k++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    if (with_resource && r) {
        out[k++] = '/';
        memcpy(out + k, r, strlen(r));
        k += strlen(r);
    }
    out[k] = '\0';
    PS_ASSERT(k == total);
    return out;
}

char *jid_bare(const char *s)
{
    return jid_build(s, false);
}

char *jid_normalize(const char *s)
{
    return jid_build(s, true);
}

bool jid_is_domain(const char *s)
{
    return jid_is_valid(s) && strchr(s, '@') == NULL && strchr(s, '/') == NULL;
}

static bool id_is_valid(const char *s, size_t max_bytes)
{
    if (s == NULL || *s == '\0')
        return false;
    size_t n = strlen(s);
    if (n > max_bytes)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

bool node_id_is_valid(const char *s, size_t max_bytes)
{
    return id_is_valid(s, max_bytes);
}

bool item_id_is_valid(const char *s, size_t max_bytes)
{
    return id_is_valid(s, max_bytes);
}
