/*
 * ids.h - random identifiers from OpenSSL's CSPRNG.
 */
#ifndef PUBSUBD_IDS_H
#define PUBSUBD_IDS_H

#include <stddef.h>

#include "alloc.h"

/* Writes 2*nbytes lower-case hex digits and a NUL to out (size at least
 * 2*nbytes+1).  Returns 0, or -1 when the CSPRNG failed. */
int ids_random_hex(char *out, size_t nbytes) MUSTCHECK;

/* A new globally unique item or node id (128 random bits, hex).  Returns
 * a string the caller frees, or NULL when the CSPRNG failed. */
char *ids_new_item_id(void) MUSTCHECK;

/* Lower-case hex SHA-1 of data (41 bytes out).  Returns 0 or -1. */
int ids_sha1_hex(const void *data, size_t len, char out[41]) MUSTCHECK;

#endif
