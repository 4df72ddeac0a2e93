/*
 * txn_publish.c - an application publishes a pubsub item inside its own
 * PostgreSQL transaction (the pubsubd SQL API, docs/examples/README.md).
 *
 * The pattern: the business change and the message commit or roll back
 * together.
 *
 *     BEGIN;
 *     INSERT INTO public.shop_order ...;                   -- the business change
 *     SELECT status, seq, item_id FROM pubsub.publish(...); -- the message
 *     COMMIT;   -- both become visible, subscribers are notified
 *  or ROLLBACK; -- neither ever existed, nothing is sent
 *
 * pubsub.publish() writes the item and the outbox row in the caller's
 * transaction and queues a NOTIFY that PostgreSQL delivers to the running
 * pubsubd processes only at COMMIT.  A rolled-back publish leaves no item,
 * no outbox row and no gap in the node's seq.
 *
 * Usage:
 *     txn_publish CONNINFO NODE PUBLISHER_JID commit|rollback|malformed ORDER_ID
 *
 *   commit     inserts order ORDER_ID (amount 42), publishes it, commits
 *   rollback   the same, then rolls back
 *   malformed  the same with a payload that is not well-formed XML: the
 *              function refuses it and the order is rolled back too
 *
 * The item id is the order id, so publishing the same order again replaces
 * its item (one item per order) instead of adding a second one.
 *
 * Output (stdout), one line per step, for example:
 *     published: status=ok seq=3 item_id=o1
 *     committed: order o1 and its notification
 * Exit status: 0 done as asked; 1 database error (message on stderr, the
 * transaction rolled back); 2 usage; 3 pubsub.publish refused the item
 * (prints "refused: status=<status>"; the transaction rolled back).
 *
 * Build: cc -o txn_publish txn_publish.c $(pkg-config --cflags --libs libpq)
 *
 * The blocking libpq API keeps the example short; a server would use its
 * own connection pool and transaction handling in the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

enum {
    EXIT_DONE = 0,
    EXIT_DB_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_REFUSED = 3,
};

/* libpq's notice receiver: drops the NOTICE of CREATE TABLE IF NOT EXISTS
 * ("relation already exists, skipping") and other informational messages,
 * prints warnings. */
static void on_notice(void *arg, const PGresult *res)
{
    (void)arg;
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (severity != NULL && strcmp(severity, "WARNING") != 0)
        return;
    fprintf(stderr, "txn_publish: %s", PQresultErrorMessage(res));
}

/* Prints the error of res (or of conn when res is NULL) with its SQLSTATE. */
static void report_error(PGconn *conn, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    fprintf(stderr, "txn_publish: %s failed%s%s%s: %s", what, state ? " (SQLSTATE " : "",
            state ? state : "", state ? ")" : "",
            res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
}

/*
 * Runs one statement with its parameters passed separately from the SQL
 * text (never spliced into it), text format both ways.  Returns the result
 * (the caller frees it with PQclear) when its status is `expect`, otherwise
 * prints the error and returns NULL.
 */
static PGresult *run(PGconn *conn, const char *what, const char *sql, int nparams,
                     const char *const *params, ExecStatusType expect)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != expect) {
        report_error(conn, res, what);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* Like run() for statements without rows; returns 0 or -1. */
static int run_command(PGconn *conn, const char *what, const char *sql, int nparams,
                       const char *const *params)
{
    PGresult *res = run(conn, what, sql, nparams, params, PGRES_COMMAND_OK);
    if (res == NULL)
        return -1;
    PQclear(res);
    return 0;
}

/* Ends the transaction after an error; a failed ROLLBACK is only printed
 * (closing the connection rolls back anyway). */
static void abandon(PGconn *conn)
{
    (void)run_command(conn, "ROLLBACK", "ROLLBACK", 0, NULL);
}

/* Appends s to out (of size cap, NUL-terminated) with the five XML special
 * characters escaped, so that the order id is safe in an attribute.
 * Returns -1 when it does not fit. */
static int append_escaped(char *out, size_t cap, const char *s)
{
    size_t len = strlen(out);
    for (; *s; s++) {
        const char *rep;
        char one[2] = {*s, '\0'};
        switch (*s) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        default: rep = one; break;
        }
        size_t n = strlen(rep);
        if (len + n + 1 > cap)
            return -1;
        memcpy(out + len, rep, n + 1);
        len += n;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: txn_publish CONNINFO NODE PUBLISHER_JID "
                    "commit|rollback|malformed ORDER_ID\n");
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        usage();
        return EXIT_USAGE;
    }
    const char *conninfo = argv[1], *node = argv[2], *publisher = argv[3];
    const char *mode = argv[4], *order_id = argv[5];
    int commit = strcmp(mode, "commit") == 0;
    int malformed = strcmp(mode, "malformed") == 0;
    if (!commit && !malformed && strcmp(mode, "rollback") != 0) {
        usage();
        return EXIT_USAGE;
    }

    /* The message: one XML element that declares its own namespace (it is
     * copied as is into the <item/> of the notifications). */
    char payload[2048];
    if (malformed) {
        snprintf(payload, sizeof payload, "%s", "<order xmlns='urn:example:shop'><unclosed></order>");
    } else {
        static const char tail[] = "'><amount>42</amount></order>";
        snprintf(payload, sizeof payload, "%s", "<order xmlns='urn:example:shop' id='");
        if (append_escaped(payload, sizeof payload, order_id) != 0 ||
            strlen(payload) + sizeof tail > sizeof payload) {
            fprintf(stderr, "txn_publish: ORDER_ID too long\n");
            return EXIT_USAGE;
        }
        strcat(payload, tail);
    }

    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "txn_publish: could not connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return EXIT_DB_ERROR;
    }
    PQsetNoticeReceiver(conn, on_notice, NULL);

    /* The application's own table, in its own schema (not pubsub's). */
    if (run_command(conn, "CREATE TABLE",
                    "CREATE TABLE IF NOT EXISTS public.shop_order ("
                    " id text PRIMARY KEY,"
                    " amount int NOT NULL,"
                    " created_at timestamptz NOT NULL DEFAULT now())",
                    0, NULL) != 0) {
        PQfinish(conn);
        return EXIT_DB_ERROR;
    }

    /* One transaction for the business change and the message. */
    if (run_command(conn, "BEGIN", "BEGIN", 0, NULL) != 0) {
        PQfinish(conn);
        return EXIT_DB_ERROR;
    }

    /* 1. The business change. */
    const char *order_params[] = {order_id, "42"};
    if (run_command(conn, "INSERT INTO shop_order",
                    "INSERT INTO public.shop_order (id, amount) VALUES ($1, $2::int)", 2,
                    order_params) != 0) {
        abandon(conn);
        PQfinish(conn);
        return EXIT_DB_ERROR;
    }

    /*
     * 2. The message, as late as possible in the transaction: from here to
     * COMMIT/ROLLBACK the transaction holds the node's row lock, which
     * orders publishes, so other publishes and subscriptions to this node
     * (from pubsubd or other applications) wait for us.  The call never
     * raises for a refusal; it returns a status word.  Item id: the order
     * id (NULL would make the function generate one).
     */
    const char *publish_params[] = {node, order_id, payload, publisher};
    PGresult *res = run(conn, "pubsub.publish",
                        "SELECT status, seq, item_id FROM pubsub.publish($1, $2, $3, $4)", 4,
                        publish_params, PGRES_TUPLES_OK);
    if (res == NULL || PQntuples(res) != 1) {
        if (res != NULL)
            fprintf(stderr, "txn_publish: pubsub.publish returned %d rows\n", PQntuples(res));
        PQclear(res);
        abandon(conn);
        PQfinish(conn);
        return EXIT_DB_ERROR;
    }
    const char *status = PQgetvalue(res, 0, 0);
    if (strcmp(status, "ok") != 0) {
        /* item-not-found, forbidden, payload-too-big, invalid-payload:
         * the message cannot go out, so the order must not exist either. */
        printf("refused: status=%s\n", status);
        PQclear(res);
        abandon(conn);
        printf("rolled back: order %s (no notification)\n", order_id);
        PQfinish(conn);
        return EXIT_REFUSED;
    }
    printf("published: status=%s seq=%s item_id=%s\n", status, PQgetvalue(res, 0, 1),
           PQgetvalue(res, 0, 2));
    PQclear(res);

    /* 3. Both, or neither.  Until here nobody outside this transaction can
     * see the order, the item or the outbox row, and no pubsubd has been
     * woken. */
    if (commit) {
        /* COMMIT in a failed transaction "succeeds" with the command tag
         * ROLLBACK: check the tag.  A COMMIT that fails (e.g. the
         * connection is lost) may or may not have committed: like after any
         * commit, the application has to find out (the order row tells). */
        res = run(conn, "COMMIT", "COMMIT", 0, NULL, PGRES_COMMAND_OK);
        if (res == NULL || strcmp(PQcmdStatus(res), "COMMIT") != 0) {
            if (res != NULL)
                fprintf(stderr, "txn_publish: COMMIT ended as %s\n", PQcmdStatus(res));
            PQclear(res);
            PQfinish(conn);
            return EXIT_DB_ERROR;
        }
        PQclear(res);
        printf("committed: order %s and its notification\n", order_id);
    } else {
        if (run_command(conn, "ROLLBACK", "ROLLBACK", 0, NULL) != 0) {
            PQfinish(conn);
            return EXIT_DB_ERROR;
        }
        printf("rolled back: order %s (no notification)\n", order_id);
    }
    PQfinish(conn);
    return EXIT_DONE;
}
