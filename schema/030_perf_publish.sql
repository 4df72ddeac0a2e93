-- 030_perf_publish.sql: a cheaper publish, and the audience of the local hand-off.
--
-- Profile of the old publish (perf on the backend, pg_stat_statements): more
-- than a third of its CPU went to planning, not executing.  PL/pgSQL plans
-- each statement with the call's parameter values for its first five calls
-- and keeps doing so whenever the generic plan looks costlier, which it does
-- for these one-row statements; each nested call (publish_auto ->
-- publish_auto_leaf -> publish_trusted) was a query of its own, planned again,
-- and pubsub.affiliation_of(), a SQL function, was parsed and planned on every
-- call.  Now:
--   * one PL/pgSQL body, pubsub.publish_auto(), with generic plans
--     (plan_cache_mode = force_generic_plan: every statement here is a lookup
--     or a write by key, the generic plan is the right one);
--   * one lookup reads the node, its configuration and the publisher's
--     affiliation; the node row is updated twice per publish instead of
--     three times when the node trims (seq, then item_count and trim mark);
--   * pubsub.publish_trusted() (the SQL API's path) calls it; a publish to
--     a collection node is refused there too (status 'collection') instead
--     of storing an item in the collection.
-- Behaviour is otherwise unchanged: the same checks in the same order, the
-- same status words.
--
-- For the dispatcher of the pubsubd that published (the local hand-off,
-- see dispatcher.c): a successful publish also returns the node's audience
-- (pubsub.publish_audience(), read under the node lock, so as new as the
-- event; only when the publish wrote an outbox row), when the session asks
-- for it (SET pubsub.audience = on: pubsubd's sessions), and its NOTIFY
-- payload ends with the session's pubsub.instance, so that this pubsubd
-- can ignore the wake-ups of its own publishes.

-- The subscriptions that hear of a publish to a leaf that is in no
-- collection, as lines of sub_id, JID, start_seq, subid, include_body (t or
-- f) separated by tabs, in sub_id order ('' when none): what the
-- dispatcher's subscription query would return.  NULL when the node is in
-- a collection, has more than 64 such subscriptions, or a value holds a tab
-- or a line feed, or a JID holds several subscriptions: the dispatcher then
-- reads them itself.
CREATE FUNCTION pubsub.publish_audience(p_node_id bigint, p_in_collection boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_n bigint;
    v_clean boolean;
    v_text text;
BEGIN
    IF p_in_collection THEN
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
          ORDER BY x.sub_id LIMIT 65) s;
    IF v_n > 64 OR NOT v_clean THEN
        RETURN NULL;
    END IF;
    -- A JID with several subscriptions (any state; §6.1.7) is one
    -- recipient with SubID headers: left to the dispatcher's query.
    IF EXISTS (SELECT 1 FROM pubsub.subscription a JOIN pubsub.subscription b
                 ON b.node_id = a.node_id AND b.jid = a.jid AND b.sub_id > a.sub_id
               WHERE a.node_id = p_node_id) THEN
        RETURN NULL;
    END IF;
    RETURN v_text;
END
$$;

-- The trim to max_items.  Not "DELETE ... WHERE seq IN (SELECT seq ...
-- ORDER BY seq LIMIT k)": under a generic plan (both publish functions
-- force them) that is a nested-loop semi-join whose outer side walks every
-- index entry of the node, live and dead, running the subquery for each:
-- 8 ms per batch on a node that trims on every publish (pg_stat_statements,
-- 1 -> 1 through ejabberd, PostgreSQL at 90 % CPU).  Here the k-th oldest
-- seq from the trim mark comes from one index-only scan and the items up to
-- it go as one index range.  The caller holds the node row lock.
-- Deletes the p_n oldest items of p_node whose seq >= p_from; returns the
-- highest seq deleted (NULL when none).
CREATE FUNCTION pubsub.trim_oldest_items(p_node bigint, p_from bigint, p_n bigint)
RETURNS bigint
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_cut bigint;
BEGIN
    IF p_n IS NULL OR p_n <= 0 THEN
        RETURN NULL;
    END IF;
    SELECT i.seq INTO v_cut FROM pubsub.item i
    WHERE i.node_id = p_node AND i.seq >= p_from
    ORDER BY i.seq OFFSET p_n - 1 LIMIT 1;
    IF v_cut IS NULL THEN
        -- Fewer than p_n: all of them.
        SELECT max(i.seq) INTO v_cut FROM pubsub.item i
        WHERE i.node_id = p_node AND i.seq >= p_from;
        IF v_cut IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
    DELETE FROM pubsub.item i
    WHERE i.node_id = p_node AND i.seq >= p_from AND i.seq <= v_cut;
    RETURN v_cut;
END
$$;

-- A new OUT column (audience): drop and create.
DROP FUNCTION pubsub.publish_auto(text, text, text, text, text, jsonb, jsonb);
CREATE FUNCTION pubsub.publish_auto(p_node text, p_item_id text, p_payload text,
                                    p_publisher text, p_payload_ns text,
                                    p_preconditions jsonb, p_create_config jsonb,
                                    OUT status text, OUT seq bigint, OUT node_id bigint,
                                    OUT audience text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    r record;
    v_created text;
    v_inserted boolean;
    v_count bigint;
    v_trim bigint;
    v_gone bigint;
    v_try integer;
    v_found boolean;
    v_parent bigint;
BEGIN
    -- The common case finds the node at once; a missing node is created
    -- (auto-create, when p_create_config is given) and looked up again.
    FOR v_try IN 1..2 LOOP
        SELECT nd.kind, c.node_id, c.publish_model, c.max_payload_size, c.payload_type,
               c.persist_items, c.max_items, c.item_expire, c.deliver_notifications,
               coalesce((SELECT a.affiliation FROM pubsub.affiliation a
                         WHERE a.node_id = nd.node_id AND a.jid = p_publisher), 'none') AS aff
        INTO r
        FROM pubsub.node nd JOIN pubsub.node_config c ON c.node_id = nd.node_id
        WHERE nd.name = p_node AND NOT nd.deleted;
        v_found := FOUND;
        EXIT WHEN v_found OR v_try = 2 OR p_create_config IS NULL;
        v_created := pubsub.create_node(p_node, p_publisher,
                                        p_create_config || coalesce(p_preconditions, '{}'));
        -- 'conflict' means someone created it concurrently: publish to it.
        IF v_created NOT IN ('ok', 'conflict') THEN
            status := v_created;
            RETURN;
        END IF;
    END LOOP;
    IF NOT v_found THEN
        status := 'item-not-found';
        RETURN;
    END IF;
    IF r.kind = 'collection' THEN
        status := 'collection';
        RETURN;
    END IF;
    node_id := r.node_id;
    -- Conditions without subqueries are PL/pgSQL "simple expressions"
    -- (no executor start): the queries below run only when needed.
    IF r.aff = 'outcast' THEN
        status := 'forbidden';
        RETURN;
    END IF;
    IF r.publish_model <> 'open' AND r.aff NOT IN ('owner', 'publisher', 'publish-only') THEN
        IF r.publish_model = 'publishers'
           OR NOT EXISTS (SELECT 1 FROM pubsub.subscription s
                          WHERE s.node_id = r.node_id AND s.state = 'subscribed'
                            AND split_part(s.jid, '/', 1) = p_publisher) THEN
            status := 'forbidden';
            RETURN;
        END IF;
    END IF;
    IF p_preconditions IS NOT NULL THEN
        IF NOT (SELECT pubsub.config_json(c) @> p_preconditions
                FROM pubsub.node_config c WHERE c.node_id = r.node_id) THEN
            status := 'precondition-not-met';
            RETURN;
        END IF;
    END IF;
    IF p_payload IS NOT NULL AND octet_length(p_payload) > r.max_payload_size THEN
        status := 'payload-too-big';
        RETURN;
    END IF;
    IF r.payload_type <> '' AND p_payload IS NOT NULL
       AND p_payload_ns IS DISTINCT FROM r.payload_type THEN
        status := 'invalid-payload';
        RETURN;
    END IF;

    -- The node row lock serialises publishes per node: seq order is commit order.
    UPDATE pubsub.node nd SET last_seq = nd.last_seq + 1 WHERE nd.node_id = r.node_id
    RETURNING nd.last_seq, nd.item_count, nd.trim_seq, nd.parent_id
    INTO seq, v_count, v_trim, v_parent;

    IF r.persist_items AND r.max_items > 0 THEN
        INSERT INTO pubsub.item AS i (node_id, item_id, seq, publisher, payload, expires_at)
        VALUES (r.node_id, p_item_id, seq, p_publisher, p_payload,
                CASE WHEN r.item_expire > 0 THEN now() + make_interval(secs => r.item_expire) END)
        ON CONFLICT ON CONSTRAINT item_pkey DO UPDATE
            SET seq = excluded.seq, publisher = excluded.publisher,
                payload = excluded.payload, published_at = now(), expires_at = excluded.expires_at
        RETURNING (xmax = 0) INTO v_inserted;
        IF v_inserted THEN
            IF v_count + 1 > r.max_items THEN
                -- From the trim mark: the index range below it holds only the
                -- dead entries of earlier trims (until VACUUM).
                v_gone := pubsub.trim_oldest_items(r.node_id, v_trim, v_count + 1 - r.max_items);
                UPDATE pubsub.node nd SET item_count = r.max_items,
                    trim_seq = greatest(nd.trim_seq, coalesce(v_gone + 1, nd.trim_seq))
                WHERE nd.node_id = r.node_id;
            ELSE
                UPDATE pubsub.node nd SET item_count = nd.item_count + 1
                WHERE nd.node_id = r.node_id;
            END IF;
        END IF;
    END IF;

    IF r.deliver_notifications THEN
        INSERT INTO pubsub.event (node_id, seq, kind, item_id, publisher, payload)
        VALUES (r.node_id, seq, 'publish', p_item_id, p_publisher, p_payload);
        -- node:seq, so a dispatcher that already read this event skips the wake-up.
        PERFORM pg_notify('pubsub_wakeup', r.node_id || ':' || seq || ':'
                                           || coalesce(current_setting('pubsub.instance', true), ''));
    END IF;
    -- Only with an outbox row: no audience, no hand-off of an event that
    -- does not exist (pubsub#deliver_notifications false).
    IF r.deliver_notifications AND current_setting('pubsub.audience', true) = 'on' THEN
        audience := pubsub.publish_audience(r.node_id, v_parent IS NOT NULL);
    END IF;
    status := 'ok';
END
$$;

CREATE OR REPLACE FUNCTION pubsub.publish_trusted(p_node text, p_item_id text, p_payload text,
                                       p_publisher text, p_payload_ns text,
                                       p_preconditions jsonb,
                                       OUT status text, OUT seq bigint, OUT node_id bigint)
LANGUAGE sql AS $$
    SELECT t.status, t.seq, t.node_id
    FROM pubsub.publish_auto(p_node, p_item_id, p_payload, p_publisher, p_payload_ns,
                             p_preconditions, NULL) t
$$;

DROP FUNCTION pubsub.publish_auto_leaf(text, text, text, text, text, jsonb, jsonb);
