-- 009_redelivery.sql: redelivery of bounced notifications and dead letters.
--
-- A notification the XMPP server bounces (<message type='error'> carrying
-- our id ps-<node>-<seq>-<sub_id>) is retried for that subscription alone,
-- with exponential backoff, without holding back the node's other
-- subscribers.  A retry that is not bounced within the bounce window
-- counts as delivered.  After max attempts the notification is a dead
-- letter: kept here, visible to the node's owners, and can be re-driven.
--
-- Outbox rows are no longer deleted as soon as they are dispatched: they
-- are kept for a retention period so that a late bounce can still find
-- the notification's content (the janitor removes them afterwards).

CREATE OR REPLACE FUNCTION pubsub.dispatch_commit(p_node_id bigint, p_seq bigint, p_cursor bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_deleted boolean;
    v_last bigint;
BEGIN
    UPDATE pubsub.dispatch SET delivered_seq = p_seq, fanout_cursor = p_cursor, updated_at = now()
    WHERE node_id = p_node_id AND (delivered_seq, fanout_cursor) < (p_seq, p_cursor);
    SELECT deleted, last_seq INTO v_deleted, v_last FROM pubsub.node WHERE node_id = p_node_id;
    IF NOT FOUND THEN
        RETURN true;
    END IF;
    IF v_deleted AND p_seq >= v_last THEN
        DELETE FROM pubsub.node WHERE node_id = p_node_id;
        RETURN true;
    END IF;
    RETURN false;
END
$$;

CREATE INDEX event_created ON pubsub.event (created_at);

-- Removes dispatched outbox rows older than p_retention_s, at most p_limit.
CREATE FUNCTION pubsub.expire_events(p_retention_s integer, p_limit integer)
RETURNS integer LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM pubsub.event e WHERE e.ctid IN (
            SELECT x.ctid FROM pubsub.event x JOIN pubsub.dispatch d ON d.node_id = x.node_id
            WHERE x.created_at < now() - make_interval(secs => p_retention_s)
              AND x.seq <= d.delivered_seq
            ORDER BY x.created_at LIMIT p_limit)
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

CREATE TABLE pubsub.redelivery (
    sub_id      bigint NOT NULL,     -- no foreign key: the Binding may be gone
    node_id     bigint NOT NULL REFERENCES pubsub.node (node_id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    jid         text NOT NULL,
    state       text NOT NULL CHECK (state IN ('waiting', 'sent', 'dead')),
    attempts    integer NOT NULL DEFAULT 1, -- deliveries that bounced
    next_at     timestamptz NOT NULL,       -- waiting: when to retry; sent: end of bounce window
    last_error  text NOT NULL DEFAULT '',
    kind        text,
    item_id     text,
    payload     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sub_id, seq)
);
CREATE INDEX redelivery_due ON pubsub.redelivery (next_at) WHERE state <> 'dead';
CREATE INDEX redelivery_dead ON pubsub.redelivery (node_id) WHERE state = 'dead';

-- Records a bounce of notification (node, seq, subscription).  Returns the
-- new state: waiting (will be retried), dead, or unknown (no such event or
-- subscription any more: nothing to redeliver).
CREATE FUNCTION pubsub.record_bounce(p_node_id bigint, p_seq bigint, p_sub_id bigint,
                                     p_error text, p_max_attempts integer,
                                     p_base_delay_ms integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r pubsub.redelivery;
    v_jid text;
BEGIN
    SELECT * INTO r FROM pubsub.redelivery WHERE sub_id = p_sub_id AND seq = p_seq FOR UPDATE;
    IF FOUND THEN
        IF r.state = 'dead' THEN
            RETURN 'dead';
        END IF;
        r.attempts := r.attempts + 1;
    ELSE
        SELECT s.jid INTO v_jid FROM pubsub.subscription s WHERE s.sub_id = p_sub_id;
        IF v_jid IS NULL THEN
            RETURN 'unknown';
        END IF;
        SELECT p_sub_id, e.node_id, e.seq, v_jid, 'waiting', 1, now(), p_error, e.kind,
               e.item_id, e.payload, now()
        INTO r FROM pubsub.event e WHERE e.node_id = p_node_id AND e.seq = p_seq;
        IF NOT FOUND THEN
            RETURN 'unknown';
        END IF;
    END IF;
    r.last_error := p_error;
    IF r.attempts >= p_max_attempts THEN
        r.state := 'dead';
    ELSE
        r.state := 'waiting';
        r.next_at := now() + make_interval(secs => (p_base_delay_ms::float8 / 1000)
                                                   * power(2, r.attempts - 1));
    END IF;
    INSERT INTO pubsub.redelivery VALUES (r.*)
    ON CONFLICT (sub_id, seq) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
        next_at = excluded.next_at, last_error = excluded.last_error;
    RETURN r.state;
END
$$;

-- Takes up to p_limit redeliveries that are due, marks them sent (with a
-- bounce window) and returns what to send.  Also settles: a sent retry
-- whose window passed without a bounce was delivered.
CREATE FUNCTION pubsub.redelivery_take(p_limit integer, p_window_ms integer)
RETURNS TABLE (node_id bigint, seq bigint, sub_id bigint, jid text, kind text, item_id text,
               payload text, node text, headline boolean, deliver_payloads boolean)
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pubsub.redelivery r WHERE r.state = 'sent' AND r.next_at <= now();
    RETURN QUERY
    WITH due AS (
        SELECT r.sub_id AS s, r.seq AS q FROM pubsub.redelivery r
        WHERE r.state = 'waiting' AND r.next_at <= now()
        ORDER BY r.next_at LIMIT p_limit FOR UPDATE SKIP LOCKED),
    upd AS (
        UPDATE pubsub.redelivery r
        SET state = 'sent', next_at = now() + make_interval(secs => p_window_ms::float8 / 1000)
        FROM due WHERE r.sub_id = due.s AND r.seq = due.q
        RETURNING r.*)
    SELECT u.node_id, u.seq, u.sub_id, u.jid, u.kind, u.item_id, u.payload, n.name,
           c.notification_type = 'headline', c.deliver_payloads
    FROM upd u JOIN pubsub.node n ON n.node_id = u.node_id
    JOIN pubsub.node_config c ON c.node_id = u.node_id
    ORDER BY u.node_id, u.seq;
END
$$;

-- Dead letters of a node, for its owners.  First row: status.
CREATE FUNCTION pubsub.dead_letters(p_node text, p_requester text, p_limit integer)
RETURNS TABLE (status text, seq bigint, jid text, attempts integer, last_error text,
               item_id text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_node, p_requester);
    RETURN QUERY SELECT c.status, NULL::bigint, NULL::text, NULL::integer, NULL::text, NULL::text;
    IF c.status = 'ok' THEN
        RETURN QUERY SELECT NULL::text, r.seq, r.jid, r.attempts, r.last_error, r.item_id
            FROM pubsub.redelivery r WHERE r.node_id = c.node_id AND r.state = 'dead'
            ORDER BY r.seq, r.jid LIMIT p_limit;
    END IF;
END
$$;

-- Re-drives a node's dead letters: they are retried again from now, with
-- a fresh attempt count.  Returns (status, count).
CREATE FUNCTION pubsub.redrive(p_node text, p_requester text, OUT status text, OUT count integer)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_node, p_requester);
    status := c.status;
    count := 0;
    IF c.status <> 'ok' THEN
        RETURN;
    END IF;
    UPDATE pubsub.redelivery r SET state = 'waiting', attempts = 0, next_at = now()
    WHERE r.node_id = c.node_id AND r.state = 'dead';
    GET DIAGNOSTICS count = ROW_COUNT;
END
$$;
