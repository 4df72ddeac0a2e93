/*
 * forms.c - XEP-0004 data forms.
 */
#include "forms.h"

#include <string.h>

static void form_add_value(struct form_field *f, const char *v)
{
    f->values = xrealloc(f->values, (size_t)(f->nvalues + 1) * sizeof *f->values);
    f->values[f->nvalues++] = xstrdup(v);
}

int form_parse(const struct xnode *x, struct form *out)
{
    memset(out, 0, sizeof *out);
    if (strcmp(xnode_local_name(x), "x") != 0 || strcmp(xnode_ns(x), NS_DATA) != 0)
        return -1;
    const char *type = xnode_attr(x, "type");
    out->type = xstrdup(type ? type : "");
    for (const struct xnode *c = xnode_child(x, "field", NS_DATA); c;
         c = xnode_next(c, "field", NS_DATA)) {
        const char *var = xnode_attr(c, "var");
        if (var == NULL)
            return -1;
        out->fields = xrealloc(out->fields, (size_t)(out->nfields + 1) * sizeof *out->fields);
        struct form_field *f = &out->fields[out->nfields++];
        memset(f, 0, sizeof *f);
        f->var = xstrdup(var);
        for (const struct xnode *v = xnode_child(c, "value", NS_DATA); v;
             v = xnode_next(v, "value", NS_DATA)) {
            struct buf text = BUF_INIT;
            xnode_text(v, &text);
            form_add_value(f, text.data ? text.data : "");
            buf_free(&text);
        }
        if (strcmp(var, "FORM_TYPE") == 0 && f->nvalues > 0 && out->form_type == NULL)
            out->form_type = xstrdup(f->values[0]);
    }
    return 0;
}

void form_free(struct form *f)
{
    for (int i = 0; i < f->nfields; i++) {
        for (int j = 0; j < f->fields[i].nvalues; j++)
            free(f->fields[i].values[j]);
        free(f->fields[i].values);
        free(f->fields[i].var);
    }
    free(f->fields);
    free(f->type);
    free(f->form_type);
    memset(f, 0, sizeof *f);
}

const struct form_field *form_field(const struct form *f, const char *var)
{
    for (int i = 0; i < f->nfields; i++)
        if (strcmp(f->fields[i].var, var) == 0)
            return &f->fields[i];
    return NULL;
}

int form_parse_boolean(const char *s, bool *out)
{
    if (strcmp(s, "1") == 0 || strcmp(s, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(s, "0") == 0 || strcmp(s, "false") == 0) {
        *out = false;
        return 0;
    }
    return -1;
}

/* Reads exactly n digits at *p into *out, advancing *p. */
static bool read_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool expect_char(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

bool form_is_datetime(const char *s)
{
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, zh, zm;
    const char *p = s;
    if (!read_digits(&p, 4, &y) || !expect_char(&p, '-') || !read_digits(&p, 2, &mo) ||
        !expect_char(&p, '-') || !read_digits(&p, 2, &d) || !expect_char(&p, 'T') ||
        !read_digits(&p, 2, &h) || !expect_char(&p, ':') || !read_digits(&p, 2, &mi) ||
        !expect_char(&p, ':') || !read_digits(&p, 2, &sec))
        return false;
    if (*p == '.') { /* fraction: one digit or more */
        p++;
        size_t n = strspn(p, "0123456789");
        if (n == 0)
            return false;
        p += n;
    }
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        p++;
        if (!read_digits(&p, 2, &zh) || !expect_char(&p, ':') || !read_digits(&p, 2, &zm) ||
            zh > 23 || zm > 59)
            return false;
    } else {
        return false;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > days[mo - 1] || h > 23 || mi > 59 ||
        sec > 60)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(mo == 2 && d == 29 && !leap);
}

void form_open_titled(struct buf *b, const char *type, const char *form_type, const char *title,
                      const char *instructions)
{
    buf_puts(b, "<x xmlns='" NS_DATA "' type='");
    buf_puts(b, type);
    buf_puts(b, "'>");
    if (title) {
        buf_puts(b, "<title>");
        buf_put_escaped(b, title);
        buf_puts(b, "</title>");
    }
    if (instructions) {
        buf_puts(b, "<instructions>");
        buf_put_escaped(b, instructions);
        buf_puts(b, "</instructions>");
    }
    if (form_type)
        form_add_field(b, "FORM_TYPE", "hidden", NULL, form_type);
}

void form_open(struct buf *b, const char *type, const char *form_type)
{
    form_open_titled(b, type, form_type, NULL, NULL);
}

static void form_field_open(struct buf *b, const char *var, const char *type, const char *label)
{
    buf_puts(b, "<field var='");
    buf_put_escaped(b, var);
    buf_puts(b, "'");
    if (type) {
        buf_puts(b, " type='");
        buf_puts(b, type);
        buf_puts(b, "'");
    }
    if (label) {
        buf_puts(b, " label='");
        buf_put_escaped(b, label);
        buf_puts(b, "'");
    }
    buf_puts(b, ">");
}

static void form_value(struct buf *b, const char *value)
{
    buf_puts(b, "<value>");
    buf_put_escaped(b, value);
    buf_puts(b, "</value>");
}

void form_add_field(struct buf *b, const char *var, const char *type, const char *label,
                    const char *value)
{
    form_field_open(b, var, type, label);
    if (value)
        form_value(b, value);
    buf_puts(b, "</field>");
}

void form_add_list(struct buf *b, const char *var, const char *label, const char *value,
                   const char *const *options)
{
    form_field_open(b, var, "list-single", label);
    for (int i = 0; options[i]; i++) {
        buf_puts(b, "<option>");
        form_value(b, options[i]);
        buf_puts(b, "</option>");
    }
    if (value)
        form_value(b, value);
    buf_puts(b, "</field>");
}

void form_close(struct buf *b)
{
    buf_puts(b, "</x>");
}
