-- 023_bounce_origin.sql: a bounce is believed only when it names a
-- subscription of the node (or of a collection above it) and comes from
-- that subscriber's JID or domain.  A forged <message type='error'
-- id='ps-N-S-U'> could otherwise make pubsubd send node N's items to the
-- owner of subscription U.
DROP FUNCTION pubsub.record_bounce(bigint, bigint, bigint, text, integer, integer);
CREATE FUNCTION pubsub.record_bounce(p_node_id bigint, p_seq bigint, p_sub_id bigint,
                                     p_error text, p_max_attempts integer,
                                     p_base_delay_ms integer, p_from text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r pubsub.redelivery;
    v_jid text;
BEGIN
    SELECT * INTO r FROM pubsub.redelivery WHERE sub_id = p_sub_id AND seq = p_seq FOR UPDATE;
    IF FOUND AND split_part(r.jid, '/', 1) <> p_from
       AND split_part(split_part(r.jid, '/', 1), '@', 2) <> p_from THEN
        RETURN 'unknown'; -- not from the subscriber: forged
    END IF;
    IF FOUND THEN
        IF r.state = 'dead' THEN
            RETURN 'dead';
        END IF;
        r.attempts := r.attempts + 1;
    ELSE
        -- A bounce names a subscription of this node (or of a collection
        -- above it) and comes from that subscriber or its domain; anything
        -- else is forged (it would make us send the node's items to
        -- whoever owns sub_id).
        SELECT s.jid INTO v_jid FROM pubsub.subscription s
        WHERE s.sub_id = p_sub_id
          AND (split_part(s.jid, '/', 1) = p_from
               OR split_part(split_part(s.jid, '/', 1), '@', 2) = p_from)
          AND (s.node_id = p_node_id OR s.node_id IN (
                  WITH RECURSIVE up(id, depth) AS (
                      SELECT n.parent_id, 1 FROM pubsub.node n
                      WHERE n.node_id = p_node_id AND n.parent_id IS NOT NULL
                      UNION ALL
                      SELECT n.parent_id, u.depth + 1 FROM up u JOIN pubsub.node n ON n.node_id = u.id
                      WHERE n.parent_id IS NOT NULL AND u.depth < 1000)
                  SELECT id FROM up));
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
