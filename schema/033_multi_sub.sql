-- 033_multi_sub.sql: the JIDs holding several subscriptions to a node, kept
-- in a table of their own, so the dispatcher's page of subscribers is one
-- index range scan.
--
-- The dispatcher's subscriber query (db.c, dispatch_subscribers) emits one
-- row per JID (§6.1.7: one notification per JID, SHIM SubID headers).  It
-- found each row's JID's first subscription and the aggregate of its
-- subscriptions with two probes per subscriber row; planned on a small or
-- freshly changed table they were sequential scans, so a page cost O(rows x
-- subscriptions of the node): 3.1 ms for a page of 93 subscribers through
-- ejabberd at 1 -> 100 (pg_stat_statements), 10 x the publish itself.
-- Almost no JID holds two subscriptions to one node; those that do are
-- listed here (maintained by a trigger on pubsub.subscription), and the
-- query takes single-subscription JIDs straight from the (node_id, sub_id)
-- index and only the listed JIDs through the aggregate.  The hand-off's
-- audience (030) uses the table too, and its size limit is now a setting
-- (pubsub.audience_max, from dispatch_handoff_max; 64 before).

CREATE TABLE pubsub.multi_sub (
    node_id bigint NOT NULL REFERENCES pubsub.node(node_id) ON DELETE CASCADE,
    jid     text   NOT NULL,
    PRIMARY KEY (node_id, jid)
);

-- Every change to a node's subscriptions holds the node row lock (subscribe,
-- the owner's changes, authorisation, affiliation changes, node deletion
-- already did; unsubscribe and expiry do from here on, below), so the count
-- below is stable.  Without it, an unsubscribe that cannot yet see a
-- subscription being added by another transaction removed the row of a JID
-- left with two subscriptions.
CREATE FUNCTION pubsub.multi_sub_track() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF (SELECT count(*) FROM (SELECT 1 FROM pubsub.subscription s
                                  WHERE s.node_id = OLD.node_id AND s.jid = OLD.jid
                                  LIMIT 2) t) < 2 THEN
            DELETE FROM pubsub.multi_sub m WHERE m.node_id = OLD.node_id AND m.jid = OLD.jid;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF EXISTS (SELECT 1 FROM pubsub.subscription s
                   WHERE s.node_id = NEW.node_id AND s.jid = NEW.jid AND s.sub_id <> NEW.sub_id) THEN
            INSERT INTO pubsub.multi_sub (node_id, jid) VALUES (NEW.node_id, NEW.jid)
            ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscription_multi_sub
AFTER INSERT OR DELETE OR UPDATE OF node_id, jid ON pubsub.subscription
FOR EACH ROW EXECUTE FUNCTION pubsub.multi_sub_track();

INSERT INTO pubsub.multi_sub (node_id, jid)
SELECT s.node_id, s.jid FROM pubsub.subscription s GROUP BY s.node_id, s.jid HAVING count(*) > 1;

-- Unsubscribe takes the node row lock (see above); otherwise as in 025.
CREATE OR REPLACE FUNCTION pubsub.unsubscribe(p_node text, p_jid text, p_subid text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    p record;
BEGIN
    SELECT node_id INTO v_id FROM pubsub.node WHERE name = p_node AND NOT deleted FOR UPDATE;
    IF v_id IS NULL THEN
        RETURN 'item-not-found';
    END IF;
    SELECT * INTO p FROM pubsub.pick_subscription(v_id, p_jid, p_subid);
    IF p.status = 'ok' THEN
        DELETE FROM pubsub.subscription WHERE sub_id = p.sub_id;
    END IF;
    RETURN p.status;
END
$$;

-- Expiry takes the node row lock of each node it removes subscriptions
-- from, in node_id order (no deadlock with another janitor, and functions
-- that hold one node lock never wait for a second); at most p_limit
-- subscriptions per call, as before (006).
CREATE OR REPLACE FUNCTION pubsub.expire_subscriptions(p_limit integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_node bigint;
    v_left integer := p_limit;
    v_n integer;
BEGIN
    FOR v_node IN
        SELECT DISTINCT x.node_id FROM pubsub.subscription x
        WHERE x.expires_at IS NOT NULL AND x.expires_at <= now()
        ORDER BY x.node_id LIMIT p_limit
    LOOP
        EXIT WHEN v_left <= 0;
        PERFORM 1 FROM pubsub.node n WHERE n.node_id = v_node FOR UPDATE;
        WITH gone AS (
            DELETE FROM pubsub.subscription s WHERE s.sub_id IN
                (SELECT x.sub_id FROM pubsub.subscription x
                 WHERE x.node_id = v_node AND x.expires_at IS NOT NULL AND x.expires_at <= now()
                 ORDER BY x.expires_at LIMIT v_left FOR UPDATE SKIP LOCKED)
            RETURNING 1)
        SELECT count(*)::integer INTO v_n FROM gone;
        v_left := v_left - v_n;
    END LOOP;
    RETURN p_limit - v_left;
END
$$;

-- The hand-off's audience: NULL when the node is in a collection, has more
-- eligible subscriptions than pubsub.audience_max (64 when unset) or a JID
-- with several subscriptions (left to the dispatcher's query).
CREATE OR REPLACE FUNCTION pubsub.publish_audience(p_node_id bigint, p_in_collection boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_max integer := coalesce(nullif(current_setting('pubsub.audience_max', true), '')::integer, 64);
    v_n bigint;
    v_clean boolean;
    v_text text;
BEGIN
    IF p_in_collection OR v_max <= 0
       OR EXISTS (SELECT 1 FROM pubsub.multi_sub m WHERE m.node_id = p_node_id) THEN
        RETURN NULL;
    END IF;
    SELECT count(*), coalesce(bool_and(strpos(s.jid, E'\t') = 0 AND strpos(s.jid, E'\n') = 0
                                       AND strpos(s.subid, E'\t') = 0
                                       AND strpos(s.subid, E'\n') = 0), true),
           coalesce(string_agg(concat_ws(E'\t', s.sub_id, s.jid, s.start_seq, s.subid,
                                         CASE WHEN s.include_body THEN 't' ELSE 'f' END),
                               E'\n' ORDER BY s.sub_id), '')
    INTO v_n, v_clean, v_text
    FROM (SELECT x.sub_id, x.jid, x.start_seq, x.subid, x.include_body
          FROM pubsub.subscription x
          WHERE x.node_id = p_node_id AND x.state = 'subscribed' AND x.deliver
            AND (x.expires_at IS NULL OR x.expires_at > now())
          ORDER BY x.sub_id LIMIT v_max + 1) s;
    IF v_n > v_max OR NOT v_clean THEN
        RETURN NULL;
    END IF;
    RETURN v_text;
END
$$;
