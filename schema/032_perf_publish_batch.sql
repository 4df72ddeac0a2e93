-- 032_perf_publish_batch.sql: several publishes to one node in one call.
--
-- When publishes to one node wait on the same connection, db.c sends them
-- as one call of this function (inside the group commit's transaction).
-- Per publish, most of the CPU of pubsub.publish_auto() is executor set-up
-- of its statements, not row work; here one statement of each kind serves
-- the whole batch: one update of the node row takes seqs last_seq + 1 ..
-- last_seq + n in array order, one multi-row upsert of the items, one trim,
-- one multi-row insert into the outbox, one wake-up (node:last seq).
--
-- Same result as calling pubsub.publish_auto() for each element in order,
-- in one transaction: the same checks, the same seqs, the same items left
-- after trimming (the max_items newest), one outbox row per publish.  The
-- batch path is taken only when every publish of it would succeed (the
-- checks below are the fast-path checks of publish_auto, as a WHERE clause)
-- and the item ids are distinct; otherwise each element goes through
-- pubsub.publish_auto() in order, which gives each its own status.
-- Returns one row per element, in array order; the audience (030) comes
-- with the last one.

CREATE FUNCTION pubsub.publish_batch(p_node text, p_item_ids text[], p_payloads text[],
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
            -- The oldest items go, from the trim mark (see 021_trim_mark.sql).
            -- This sees the new items: when the batch alone is larger than
            -- max_items, its oldest go too.
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
    -- (see 030) with the last one only.
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
