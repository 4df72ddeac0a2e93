/*
 * main.c - command line, configuration and logging set-up, then the server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "server.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pubsubd [--config FILE]\n"
            "       pubsubd --help | --version\n"
            "\n"
            "XEP-0060 publish-subscribe as an XEP-0114 component, stored in PostgreSQL.\n"
            "Every configuration key can be set in FILE (key = value) or in the\n"
            "environment as PUBSUBD_<KEY IN UPPER CASE>, which wins over the file.\n"
            "Keys and defaults:\n");
    for (size_t i = 0; i < config_key_count(); i++)
        fprintf(out, "  %-24s %s\n", config_key_name(i), config_key_default(i));
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("pubsubd %s\n", PACKAGE_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
            continue;
        }
        fprintf(stderr, "pubsubd: unknown argument \"%s\"\n", argv[i]);
        usage(stderr);
        return 2;
    }
    struct config cfg;
    char *err = NULL;
    if (config_load(&cfg, config_path, &err) != 0) {
        fprintf(stderr, "pubsubd: configuration error: %s\n", err);
        free(err);
        config_free(&cfg);
        return 2;
    }
    enum log_level level;
    if (log_level_parse(cfg.log_level, &level) == 0)
        log_current_level = level;
    if (log_open(cfg.log_file) != 0) {
        fprintf(stderr, "pubsubd: could not open log file \"%s\"\n", cfg.log_file);
        config_free(&cfg);
        return 2;
    }
    if (cfg.component_secret[0] == '\0')
        log_warn("component_secret is empty");
    struct server s;
    server_init(&s, &cfg);
    int rc = server_run(&s);
    server_free(&s);
    config_free(&cfg);
    return rc;
}
