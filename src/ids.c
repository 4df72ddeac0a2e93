/*
 * ids.c - random identifiers and SHA-1 (OpenSSL).
 */
#include "ids.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int ids_random_hex(char *out, size_t nbytes)
{
    unsigned char raw[64];
    PS_ASSERT(nbytes <= sizeof raw);
    if (RAND_bytes(raw, (int)nbytes) != 1)
        return -1;
    hex_encode(raw, nbytes, out);
    return 0;
}

char *ids_new_item_id(void)
{
    char hex[33];
    if (ids_random_hex(hex, 16) != 0)
        return NULL;
    return xstrdup(hex);
}

int ids_sha1_hex(const void *data, size_t len, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return -1;
    hex_encode(md, 20, out);
    return 0;
}
