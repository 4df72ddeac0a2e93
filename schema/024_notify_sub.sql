-- 024_notify_sub.sql: pubsub#notify_sub (XEP-0060 §8.2.1, §8.8.4): a node's
-- owners hear of every change of a subscription's state (subscribed,
-- pending, none).  A trigger queues each change in the same transaction as
-- the change; pubsubd takes the queue and sends the notifications.
CREATE TABLE pubsub.owner_notice (
    notice_id  bigserial PRIMARY KEY,
    node_id    bigint NOT NULL REFERENCES pubsub.node (node_id) ON DELETE CASCADE,
    jid        text NOT NULL,
    subid      text,
    state      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION pubsub.queue_owner_notice() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_state text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
        v_state := 'none';
    ELSE
        r := NEW;
        v_state := NEW.state;
        IF TG_OP = 'UPDATE' AND NEW.state = OLD.state THEN
            RETURN NULL;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pubsub.node_config c JOIN pubsub.node n ON n.node_id = c.node_id
               WHERE c.node_id = r.node_id AND c.notify_sub AND NOT n.deleted) THEN
        INSERT INTO pubsub.owner_notice (node_id, jid, subid, state)
        VALUES (r.node_id, r.jid, r.subid, v_state);
        PERFORM pg_notify('pubsub_wakeup', 'notice');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscription_owner_notice AFTER INSERT OR DELETE OR UPDATE OF state
    ON pubsub.subscription FOR EACH ROW EXECUTE FUNCTION pubsub.queue_owner_notice();

-- Takes up to p_limit queued notices, one row per (notice, owner).
CREATE FUNCTION pubsub.take_owner_notices(p_limit integer)
RETURNS TABLE (owner text, node text, jid text, subid text, state text)
LANGUAGE sql AS $$
    WITH taken AS (
        DELETE FROM pubsub.owner_notice o WHERE o.notice_id IN
            (SELECT x.notice_id FROM pubsub.owner_notice x ORDER BY x.notice_id
             LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING o.*)
    SELECT a.jid, n.name, t.jid, t.subid, t.state
    FROM taken t JOIN pubsub.node n ON n.node_id = t.node_id
    JOIN pubsub.affiliation a ON a.node_id = t.node_id AND a.affiliation = 'owner'
    ORDER BY t.notice_id, a.jid
$$;
