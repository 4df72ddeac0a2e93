/*
 * schema.h - the SQL migrations compiled into pubsubd (schema/NNN_*.sql,
 * embedded by scripts/embed-schema.sh), in ascending version order.
 */
#ifndef PUBSUBD_SCHEMA_H
#define PUBSUBD_SCHEMA_H

struct schema_migration {
    int version;
    const char *name;
    const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const int schema_migration_count;

#endif
