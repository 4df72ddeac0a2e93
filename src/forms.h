/*
 * forms.h - XEP-0004 data forms: parsing submitted forms and building
 * forms to send.
 */
#ifndef PUBSUBD_FORMS_H
#define PUBSUBD_FORMS_H

#include <stdbool.h>

#include "buf.h"
#include "xnode.h"

#define NS_DATA "jabber:x:data"

struct form_field {
    char *var;
    char **values;
    int nvalues;
};

struct form {
    char *type;      /* form, submit, cancel, result */
    char *form_type; /* the FORM_TYPE value, or NULL */
    struct form_field *fields;
    int nfields;
};

/* Parses <x xmlns='jabber:x:data'/>.  Returns 0, or -1 when x is not a
 * form or a field has no var.  form_free() in any case. */
int form_parse(const struct xnode *x, struct form *out) MUSTCHECK;
void form_free(struct form *f);
/* The field named var, or NULL; borrowed. */
const struct form_field *form_field(const struct form *f, const char *var);

/* XEP-0004 boolean: "1"/"true" and "0"/"false".  Returns 0 or -1. */
int form_parse_boolean(const char *s, bool *out) MUSTCHECK;
/* Whether s is an XEP-0082 DateTime, CCYY-MM-DDThh:mm:ss[.sss](Z|+hh:mm|-hh:mm),
 * with a real calendar date (leap years) and time (second 60 allowed). */
bool form_is_datetime(const char *s);

/* Building. */
void form_open(struct buf *b, const char *type, const char *form_type);
/* The same with a title and instructions, which come before the fields. */
void form_open_titled(struct buf *b, const char *type, const char *form_type, const char *title,
                      const char *instructions);
void form_add_field(struct buf *b, const char *var, const char *type, const char *label,
                    const char *value);
/* A list-single field with its options (NULL-terminated). */
void form_add_list(struct buf *b, const char *var, const char *label, const char *value,
                   const char *const *options);
void form_close(struct buf *b);

#endif
