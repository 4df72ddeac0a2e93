-- 017_redelivery_unsubscribed.sql: retries stop when the subscription is
-- gone (unsubscribed, removed by an owner, expired): nobody asked for
-- them any more.
CREATE OR REPLACE FUNCTION pubsub.redelivery_take(p_limit integer, p_window_ms integer)
RETURNS TABLE (node_id bigint, seq bigint, sub_id bigint, jid text, kind text, item_id text,
               payload text, node text, headline boolean, deliver_payloads boolean)
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pubsub.redelivery r WHERE r.state = 'sent' AND r.next_at <= now();
    DELETE FROM pubsub.redelivery r
    WHERE r.state <> 'dead' AND r.next_at <= now()
      AND NOT EXISTS (SELECT 1 FROM pubsub.subscription s WHERE s.sub_id = r.sub_id);
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
