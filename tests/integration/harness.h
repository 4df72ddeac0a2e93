/*
 * harness.h - the library every integration test links.
 *
 * The integration tests run against a real PostgreSQL and a real Prosody
 * that scripts/test starts (tests/integration/env.sh) and describes through
 * PST_* environment variables; `make check` adds PUBSUBD_BIN and TOP_SRCDIR.
 * This library gives the tests:
 *
 *   - the environment: h_env() fails the test, naming the variable, when one
 *     is missing (integration tests fail, they never skip);
 *   - databases: a fresh database per test (h_db_create) and blocking SQL for
 *     assertions (h_sql, h_sql_int);
 *   - processes: pubsubd as a child process with its log in $PST_DIR
 *     (h_pubsubd_start ... h_pubsubd_stop), killed by the kernel if the test
 *     process dies (PR_SET_PDEATHSIG) and by an atexit hook if the test exits;
 *   - the servers: h_envctl("pg-stop") etc. run "$PST_ENV <cmd>";
 *   - XMPP clients on libstrophe (plain TCP, no TLS, no stream management),
 *     all on one libstrophe context per process, driven only while a harness
 *     call waits (h_iq, h_next_message, h_pump, ...).  Incoming <message/>
 *     stanzas are queued per client without limit; IQ replies (result and
 *     error) are kept until a caller asks for their id;
 *   - stanza inspection: error conditions, disco features, child text.
 *
 * Memory: functions returning char * return memory the caller frees with
 * free().  Functions returning xmpp_stanza_t * return a reference the caller
 * releases with xmpp_stanza_release().  const char * results borrow from
 * their argument (or the environment) and live as long as it does.
 *
 * Failures: a helper that cannot do its job calls ck_abort_msg() (the test
 * fails with a message saying what and why); the *_try and boolean helpers
 * report instead, for teardowns and polling.  Names starting with h_ are
 * this library's; it does not use pubsubd's own code.
 */
#ifndef PUBSUBD_TEST_HARNESS_H
#define PUBSUBD_TEST_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include <check.h>
#include <libpq-fe.h>
#include <strophe.h>

#define H_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

#define H_NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define H_NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define H_NS_PING "urn:xmpp:ping"
#define H_NS_VERSION "jabber:iq:version"
#define H_NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define H_NS_PUBSUB_ERRORS "http://jabber.org/protocol/pubsub#errors"
#define H_NS_PUBSUB_EVENT "http://jabber.org/protocol/pubsub#event"
#define H_NS_PUBSUB_OWNER "http://jabber.org/protocol/pubsub#owner"
#define H_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

/* ---- environment and small utilities ---------------------------------- */

/* The value of environment variable name; fails the test, naming the
 * variable, when it is unset or empty.  Borrowed from the environment. */
const char *h_env(const char *name);

/* printf into a new string; the caller frees it. */
char *h_strf(const char *fmt, ...) H_PRINTF_LIKE(1, 2);

/* A new identifier "<prefix>-<pid>-<counter>-<random hex>", unique across
 * processes and usable as a stanza id, item id or node name.  Caller frees. */
char *h_uid(const char *prefix);

/* Milliseconds on the monotonic clock; for measuring durations. */
long long h_now_ms(void);

/* Sleeps ms milliseconds without running the XMPP loop (see h_pump). */
void h_sleep_ms(int ms);

/* ---- PostgreSQL --------------------------------------------------------- */

/* Creates a database with a unique name (t_<pid>_<counter>_<random>) through
 * PST_PG_CONNINFO and returns the conninfo string that reaches it (the same
 * parameters, dbname replaced).  The caller frees the string.  The database
 * lives until the test environment is discarded or h_db_drop(). */
char *h_db_create(void);

/* Drops the database that conninfo names, disconnecting its sessions
 * (DROP DATABASE ... WITH (FORCE)).  Borrows conninfo. */
void h_db_drop(const char *conninfo);

/* Runs sql (one or several statements; the result is the last one's) on a
 * new connection to conninfo and returns the result, which the caller frees
 * with PQclear().  Fails the test on a connection or SQL error, quoting the
 * statement, the message and the SQLSTATE. */
PGresult *h_sql(const char *conninfo, const char *sql);

/* Runs sql, which must return exactly one row of one non-NULL integer
 * column, and returns that value; fails the test otherwise. */
long long h_sql_int(const char *conninfo, const char *sql);

/* True when the server behind PST_PG_CONNINFO accepts connections
 * (PQping).  Never fails the test: usable in teardowns. */
bool h_pg_running(void);

/* ---- child processes ---------------------------------------------------- */

struct h_proc;

/*
 * Starts $PUBSUBD_BIN as a child process and returns it without waiting for
 * it to connect (see h_wait_component).  Its environment is the test's
 * without any PUBSUBD_* variable, plus
 *   PUBSUBD_XMPP_HOST=$PST_XMPP_HOST  PUBSUBD_XMPP_PORT=$PST_COMPONENT_PORT
 *   PUBSUBD_COMPONENT_JID=component_jid
 *   PUBSUBD_COMPONENT_SECRET=$PST_COMPONENT_SECRET
 *   PUBSUBD_DATABASE=conninfo  PUBSUBD_LOG_LEVEL=debug
 * then extra_env ("KEY=VALUE" strings, NULL-terminated, may be NULL), which
 * override the entries above with the same KEY.  A "KEY" without '=' removes
 * KEY.  stdin is /dev/null; stdout and stderr are appended to
 * $PST_DIR/pubsubd-<component_jid>-<pid>.log (h_proc_log_path).  Arguments
 * are borrowed; the caller ends the process with h_pubsubd_stop() or
 * h_proc_free().
 */
struct h_proc *h_pubsubd_start(const char *component_jid, const char *conninfo,
                               const char *const *extra_env);

/*
 * The general form: runs argv[0] (a path) with argv, the test's environment
 * and extra_env applied as above, output appended to
 * $PST_DIR/<label>-<pid>.log.  For other programs (load generator, CLI).
 */
struct h_proc *h_proc_spawn(const char *label, const char *const *argv,
                            const char *const *extra_env);

pid_t h_proc_pid(const struct h_proc *p);
/* Borrowed; valid until h_proc_free(). */
const char *h_proc_log_path(const struct h_proc *p);

/* Sends sig to the process unless it has already been reaped. */
void h_proc_signal(struct h_proc *p, int sig);

/* True while the process has not exited (reaps it when it has). */
bool h_proc_running(struct h_proc *p);

/*
 * Waits up to timeout_ms for the process to exit and returns its status:
 * 0..255 the exit code, 256 + N when killed by signal N.  On timeout the
 * process is killed with SIGKILL, reaped, and -1 is returned.  Once the
 * process has exited, further calls return the same status at once.
 */
int h_proc_wait_exit(struct h_proc *p, int timeout_ms);

/* Kills the process (SIGKILL) if it is still running, reaps it and frees p.
 * The log file stays.  NULL is allowed. */
void h_proc_free(struct h_proc *p);

/* SIGTERM, wait up to 10 s, then free p.  Fails the test (after printing the
 * log's tail) unless the exit status was 0.  Takes ownership of p. */
void h_pubsubd_stop(struct h_proc *p);

/* Prints the last 60 lines of the process's log to stderr, with a header
 * naming the process, its state and the log path.  NULL is allowed. */
void h_fail_dump(struct h_proc *p);

/* True when the process's log contains needle now. */
bool h_proc_log_contains(struct h_proc *p, const char *needle);

/* Waits up to timeout_ms for needle to appear in the log; false on timeout
 * or when the process exited without writing it. */
bool h_proc_wait_log(struct h_proc *p, const char *needle, int timeout_ms);

/* ---- the servers (env.sh) ----------------------------------------------- */

/* Runs "$PST_ENV" cmd (e.g. "pg-stop", "prosody-restart") with system() and
 * fails the test unless it exits 0. */
void h_envctl(const char *cmd);

/* The same, returning the exit status (-1 when it could not run) instead of
 * failing: for teardowns. */
int h_envctl_try(const char *cmd);

/* True when something accepts TCP connections on PST_XMPP_HOST:PST_C2S_PORT.
 * Never fails the test. */
bool h_prosody_running(void);

/* ---- XMPP clients ------------------------------------------------------- */

struct h_client;

/* The libstrophe context all clients of this process share (created on first
 * use; a forked child makes its own).  Borrowed.  Set H_XMPP_DEBUG=1 in the
 * environment to see libstrophe's debug log (all traffic) on stderr. */
xmpp_ctx_t *h_xmpp_ctx(void);

/*
 * Logs in user@$PST_DOMAIN with $PST_PASSWORD at $PST_XMPP_HOST:$PST_C2S_PORT
 * (no TLS, no stream management), resource resource (NULL: a unique one),
 * then sends initial presence <presence/> and waits for the server to answer
 * a ping, so the presence is in effect when this returns.  Returns NULL when
 * that does not happen within timeout_ms.  The caller ends the client with
 * h_client_disconnect().
 */
struct h_client *h_client_try_connect(const char *user, const char *resource,
                                      int timeout_ms);

/* h_client_try_connect(user, NULL, 10000), failing the test on NULL. */
struct h_client *h_client_connect(const char *user);

/* Closes the stream (bounded wait), releases the connection and frees the
 * client with its queued stanzas.  NULL is allowed. */
void h_client_disconnect(struct h_client *c);

/* The full JID the server bound ("alice@localhost/res"), and the bare JID.
 * Borrowed from c. */
const char *h_client_jid(const struct h_client *c);
const char *h_client_bare_jid(const struct h_client *c);

/* False once the stream ended (server restart, stream error, ...).  Does not
 * run the loop: call h_pump() first to notice a closed stream. */
bool h_client_connected(const struct h_client *c);

/* Sends xml as is.  Fails the test when xml is not one well-formed element
 * or when the client is not connected.  Borrows xml. */
void h_send(struct h_client *c, const char *xml);

/* Waits up to timeout_ms for the IQ reply (result or error) with this id and
 * returns it (caller releases it), or NULL on timeout or when the stream
 * ends.  For pipelining: h_send() many, then collect their replies. */
xmpp_stanza_t *h_wait_reply(struct h_client *c, const char *id,
                            int timeout_ms);

/* Sends xml, a complete <iq .../> with an id attribute, and returns
 * h_wait_reply(c, <its id>, timeout_ms). */
xmpp_stanza_t *h_iq(struct h_client *c, const char *xml, int timeout_ms);

/* Pops the oldest queued <message/> of c, running the loop up to timeout_ms
 * (0: no wait) for one to arrive.  NULL on timeout.  Caller releases. */
xmpp_stanza_t *h_next_message(struct h_client *c, int timeout_ms);

/* Fails the test (dumping p's log, when p is not NULL) if c receives a
 * <message/> within quiet_ms; `why` says what it must not be. */
void h_expect_no_message(struct h_proc *p, struct h_client *c, int quiet_ms, const char *why);

/* Number of queued messages now (does not run the loop). */
int h_message_count(const struct h_client *c);

/* Waits until c has at least count queued messages or timeout_ms passed;
 * returns the number queued. */
int h_wait_messages(struct h_client *c, int count, int timeout_ms);

/* Runs the shared libstrophe loop for ms milliseconds. */
void h_pump(int ms);

/*
 * Polls disco#info to component_jid every 100 ms until a result comes back
 * (true) or timeout_ms passes (false).  Prosody answers an error while the
 * component is not connected.  Returns false at once if c's stream ended.
 */
bool h_wait_component(struct h_client *c, const char *component_jid,
                      int timeout_ms);

/*
 * h_wait_component, then polls disco#items until it answers with a result:
 * pubsubd answers requests that need the database with a wait error until
 * its pool is connected.  Fails the test (printing p's log) after
 * timeout_ms.
 */
void h_wait_service_ready(struct h_proc *p, struct h_client *c,
                          const char *component_jid, int timeout_ms);

/* ---- stanzas ------------------------------------------------------------ */

/* The stanza as XML text; the caller frees it.  NULL gives "(no stanza)". */
char *h_stanza_to_string(xmpp_stanza_t *s);

/* The first element child of s with this name (NULL: any) and namespace
 * (NULL: any), or NULL.  Borrowed from s. */
xmpp_stanza_t *h_child(xmpp_stanza_t *s, const char *name, const char *ns);

/* The number of element children of s matching name and ns as above. */
int h_count_children(xmpp_stanza_t *s, const char *name, const char *ns);

/* The text of h_child(s, name, ns), or NULL when there is no such child.
 * The caller frees it. */
char *h_child_text(xmpp_stanza_t *s, const char *name, const char *ns);

/* For a stanza with an <error/> child: the error's type attribute, the name
 * of its RFC 6120 defined condition (the child in H_NS_STANZAS other than
 * <text/>), and the name of its application-specific condition (the first
 * child in another namespace, e.g. XEP-0060's <payload-too-big/>).  NULL when
 * absent.  Borrowed from s. */
const char *h_error_type(xmpp_stanza_t *s);
const char *h_error_condition(xmpp_stanza_t *s);
const char *h_error_app_condition(xmpp_stanza_t *s);

/* On a disco#info result: whether <query/> lists this feature, this
 * identity. */
bool h_disco_has_feature(xmpp_stanza_t *iq, const char *var);
bool h_disco_has_identity(xmpp_stanza_t *iq, const char *category,
                          const char *type);

/*
 * Assertions on IQ replies that print, when they fail, the stanza and the
 * tail of p's log (p may be NULL) and name the caller's file and line.
 * what says which request it was ("disco#info to c1.localhost").
 *   h_assert_result: iq is non-NULL with type='result'.
 *   h_assert_error:  iq is non-NULL with type='error', <error type='type'>,
 *     defined condition `condition` and application condition app_condition;
 *     app_condition NULL skips that check, H_NO_APP_CONDITION requires none.
 */
#define H_NO_APP_CONDITION ""
#define h_assert_result(p, iq, what)                                          \
    h_assert_result_at(__FILE__, __LINE__, (p), (iq), (what))
#define h_assert_error(p, iq, what, type, condition, app_condition)          \
    h_assert_error_at(__FILE__, __LINE__, (p), (iq), (what), (type),          \
                      (condition), (app_condition))
void h_assert_result_at(const char *file, int line, struct h_proc *p,
                        xmpp_stanza_t *iq, const char *what);
void h_assert_error_at(const char *file, int line, struct h_proc *p,
                       xmpp_stanza_t *iq, const char *what, const char *type,
                       const char *condition, const char *app_condition);

/* Asserts that c's next message (within 10 s) is exactly pubsubd's
 * notice that c's bare JID now has affiliation aff with node (XEP-0060
 * §8.9.4), from component.  Prints p's log when it is not. */
void h_assert_affiliation_notice(struct h_proc *p, struct h_client *c, const char *component,
                                 const char *node, const char *aff);

/* ---- canonical XML ------------------------------------------------------ */

/* A canonical form of element s: every element with its effective
 * namespace (declared, or inherited from parent_ns), its other attributes
 * sorted by name, its children in order, text escaped.  Two elements are
 * the same XML exactly when their forms are equal, whatever the quoting,
 * attribute order or namespace declarations.  Caller frees. */
char *h_canon(xmpp_stanza_t *s, const char *parent_ns);
/* The same for the element in xml, parsed standalone; fails the test when
 * xml is not one element.  Caller frees. */
char *h_canon_xml(const char *xml);

#endif
