/*
 * redelivery.h - bounced notifications: retry with backoff, dead letters.
 *
 * A <message type='error'> that carries one of our notification ids
 * (ps-<node>-<seq>-<sub_id>) is recorded in pubsub.redelivery; the janitor
 * tick resends due retries to that subscription alone, so other
 * subscribers are never held back.  See schema/009_redelivery.sql.
 */
#ifndef PUBSUBD_REDELIVERY_H
#define PUBSUBD_REDELIVERY_H

struct server;

/* A bounce arrived (borrowed strings; condition may be NULL). */
void redelivery_on_bounce(struct server *s, const char *id, const char *from,
                          const char *condition);
/* Periodic work: send due retries, drop expired outbox rows. */
void redelivery_tick(struct server *s);
/* The link is (again) up: retries sent on the old stream are due again. */
void redelivery_link_ready(struct server *s);

#endif
