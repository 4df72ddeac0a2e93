-- 033_trim_range.sql: trimming to max_items deletes a seq range.
--
-- The trim of publish_auto (030) and publish_batch (032) was
--     DELETE ... WHERE node_id = $1 AND seq IN
--         (SELECT seq ... WHERE node_id = $1 AND seq >= trim mark ORDER BY seq LIMIT k)
-- and its generic plan (both functions force generic plans) is a nested-loop
-- semi-join whose outer side scans every index entry of the node, live and
-- dead, and runs the subquery again for each: on a node that trims on every
-- publish, 8 ms per batch (pg_stat_statements, ejabberd fanout1: the trim
-- was 46 % of PostgreSQL's execution time, PostgreSQL at 90 % CPU).
-- Now the k-th oldest seq from the trim mark is found with one index-only
-- scan (OFFSET k - 1 LIMIT 1) and the items up to it go as one index range.
-- The caller holds the node row lock (seqs and items of the node do not
-- change underneath).  Same items deleted as before: the k oldest from the
-- trim mark, or all of them when fewer are there.

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

-- The two publish paths, unchanged but for their trim.

CREATE OR REPLACE FUNCTION pubsub.publish_auto(p_node text, p_item_id text, p_payload text,
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

CREATE OR REPLACE FUNCTION pubsub.publish_batch(p_node text, p_item_ids text[], p_payloads text[],
                                     p_publishers text[], p_payload_ns text[],
                                     p_create_config jsonb)
RETURNS TABLE (status text, seq bigint, node_id bigint, audience text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_n integer := cardinality(p_item_ids);
    v_node bigint;
    v_last bigint;
    v_count bigint;
    v_trim bigint;
    v_persist boolean;
    v_max bigint;
    v_expire integer;
    v_deliver boolean;
    v_new bigint;
    v_gone bigint;
    v_parent bigint;
    i integer;
BEGIN
    IF v_n IS NULL OR v_n = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_payloads) = v_n AND cardinality(p_publishers) = v_n
       AND cardinality(p_payload_ns) = v_n
       AND (SELECT count(DISTINCT x) FROM unnest(p_item_ids) x) = v_n THEN
        UPDATE pubsub.node nd SET last_seq = nd.last_seq + v_n
        FROM pubsub.node_config c
        WHERE nd.name = p_node AND NOT nd.deleted AND nd.kind = 'leaf'
          AND c.node_id = nd.node_id
          AND NOT EXISTS (
              SELECT 1 FROM unnest(p_payloads, p_publishers, p_payload_ns) AS u(payload, publisher, ns)
              WHERE NOT ((u.payload IS NULL OR octet_length(u.payload) <= c.max_payload_size)
                         AND (c.payload_type = '' OR u.payload IS NULL
                              OR u.ns IS NOT DISTINCT FROM c.payload_type)
                         AND CASE WHEN c.publish_model = 'open'
                                  THEN NOT EXISTS (SELECT 1 FROM pubsub.affiliation a
                                                   WHERE a.node_id = nd.node_id
                                                     AND a.jid = u.publisher
                                                     AND a.affiliation = 'outcast')
                                  ELSE EXISTS (SELECT 1 FROM pubsub.affiliation a
                                               WHERE a.node_id = nd.node_id
                                                 AND a.jid = u.publisher
                                                 AND a.affiliation IN ('owner', 'publisher',
                                                                       'publish-only')) END))
        RETURNING nd.node_id, nd.last_seq, nd.item_count, nd.trim_seq, c.persist_items,
                  c.max_items, c.item_expire, c.deliver_notifications, nd.parent_id
        INTO v_node, v_last, v_count, v_trim, v_persist, v_max, v_expire, v_deliver, v_parent;
    END IF;

    IF v_node IS NULL THEN
        -- Not the simple case: one by one, each with its own status.
        FOR i IN 1..v_n LOOP
            RETURN QUERY SELECT t.status, t.seq, t.node_id, t.audience
                FROM pubsub.publish_auto(p_node, p_item_ids[i], p_payloads[i], p_publishers[i],
                                         p_payload_ns[i], NULL, p_create_config) t;
        END LOOP;
        RETURN;
    END IF;

    -- Element k (1-based) is seq v_last - v_n + k.
    IF v_persist AND v_max > 0 THEN
        WITH ins AS (
            INSERT INTO pubsub.item AS it (node_id, item_id, seq, publisher, payload, expires_at)
            SELECT v_node, u.item_id, v_last - v_n + u.k, u.publisher, u.payload,
                   CASE WHEN v_expire > 0 THEN now() + make_interval(secs => v_expire) END
            FROM unnest(p_item_ids, p_payloads, p_publishers) WITH ORDINALITY
                 AS u(item_id, payload, publisher, k)
            ON CONFLICT ON CONSTRAINT item_pkey DO UPDATE
                SET seq = excluded.seq, publisher = excluded.publisher,
                    payload = excluded.payload, published_at = now(),
                    expires_at = excluded.expires_at
            RETURNING (it.xmax = 0) AS inserted)
        SELECT count(*) FILTER (WHERE ins.inserted) INTO v_new FROM ins;
        IF v_count + v_new > v_max THEN
            -- The oldest items go.  This sees the new items: when the batch
            -- alone is larger than max_items, its oldest go too.
            v_gone := pubsub.trim_oldest_items(v_node, v_trim, v_count + v_new - v_max);
            UPDATE pubsub.node nd SET item_count = v_max,
                trim_seq = greatest(nd.trim_seq, coalesce(v_gone + 1, nd.trim_seq))
            WHERE nd.node_id = v_node;
        ELSIF v_new > 0 THEN
            UPDATE pubsub.node nd SET item_count = nd.item_count + v_new
            WHERE nd.node_id = v_node;
        END IF;
    END IF;

    IF v_deliver THEN
        INSERT INTO pubsub.event (node_id, seq, kind, item_id, publisher, payload)
        SELECT v_node, v_last - v_n + u.k, 'publish', u.item_id, u.publisher, u.payload
        FROM unnest(p_item_ids, p_payloads, p_publishers) WITH ORDINALITY
             AS u(item_id, payload, publisher, k)
        ORDER BY u.k;
        -- node:seq of the last, so a dispatcher that already read it skips the wake-up.
        PERFORM pg_notify('pubsub_wakeup', v_node || ':' || v_last || ':'
                                           || coalesce(current_setting('pubsub.instance', true), ''));
    END IF;
    -- One row per publish (RETURN NEXT: no query to set up); the audience
    -- (see 025) with the last one only.
    FOR i IN 1..v_n LOOP
        status := 'ok';
        seq := v_last - v_n + i;
        node_id := v_node;
        IF i = v_n AND v_deliver AND current_setting('pubsub.audience', true) = 'on' THEN
            audience := pubsub.publish_audience(v_node, v_parent IS NOT NULL);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
