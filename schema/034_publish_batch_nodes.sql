-- 034_publish_batch_nodes.sql: one publish batch for several nodes.
--
-- 032's pubsub.publish_batch() took the waiting publishes of one node; with
-- publishes to several nodes waiting on a connection (4 publishers x 10
-- nodes through ejabberd: groups of about 15 publishes over 5 nodes) a
-- group was about five calls of three publishes each, and PostgreSQL's CPU
-- went mostly to setting up each call's statements (perf: ExecutorStart,
-- the foreign-key triggers' set-up).  Now one call takes the group's
-- publishes to any number of nodes, and one statement of each kind serves
-- them all (pgbench, 8 publishes over 4 nodes: 1.56 -> 0.95 ms; 8 to one
-- node: 0.80 -> 0.85 ms):
--   * with several nodes, they are locked in node_id order first, so two
--     calls that share nodes (say of two pubsubd processes) cannot deadlock
--     with each other (other statements of the same transactions can still
--     lock in another order: a deadlock aborts the group, whose members then
--     run alone);
--   * one update takes each node's seqs; a node takes the batch path when
--     every publish of the batch to it would succeed (the checks of
--     publish_auto's fast path) and its item ids are distinct;
--   * one multi-row upsert of the items, a trim per node that needs one,
--     one update of the item counts and trim marks, one multi-row insert
--     into the outbox, one wake-up per node (node:last seq:instance);
--   * the publishes to the other nodes go through pubsub.publish_auto()
--     one by one, in order, each with its own status (a missing node is
--     auto-created there).
-- Same result as calling pubsub.publish_auto() for each element in order
-- in one transaction: the k-th element of a node gets seq last_seq + k, the
-- max_items newest items stay, one outbox row per publish.  Returns one row
-- per element in array order; the audience (030) comes with each node's
-- last element.  Arrays of different lengths are refused (SQLSTATE 22023).

DROP FUNCTION pubsub.publish_batch(text, text[], text[], text[], text[], jsonb);

-- A node on the batch path, as publish_batch() reads it under its row lock.
CREATE TYPE pubsub.batch_node AS (
    node_id     bigint,
    first_seq   bigint,   -- last_seq before the batch
    taken       bigint,   -- the batch's publishes to the node
    item_count  bigint,   -- before the batch
    trim_seq    bigint,
    in_collection boolean,
    keep        boolean,  -- persist_items and max_items > 0
    max_items   bigint,
    item_expire bigint,
    deliver     boolean   -- deliver_notifications: an outbox row per publish
);

CREATE FUNCTION pubsub.publish_batch(p_nodes text[], p_item_ids text[], p_payloads text[],
                                     p_publishers text[], p_payload_ns text[],
                                     p_create_config jsonb)
RETURNS TABLE (status text, seq bigint, node_id bigint, audience text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_n integer := cardinality(p_item_ids);
    v_names text[];              -- the nodes on the batch path (index j) ...
    v_nodes pubsub.batch_node[]; -- ... and what they are
    v_new bigint[];              -- items the batch added to node j (not overwrote)
    v_gone bigint[];             -- the highest seq trimmed from node j, NULL when none
    v_used bigint[];             -- elements of node j seen so far
    -- Per element (index i): its node's index and its seq; NULL when it
    -- goes through publish_auto().
    v_node integer[];
    v_seq bigint[];
    v_audience boolean := current_setting('pubsub.audience', true) = 'on';
    i integer;
    j integer;
BEGIN
    IF v_n IS NULL OR v_n = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_nodes) IS DISTINCT FROM v_n OR cardinality(p_payloads) IS DISTINCT FROM v_n
       OR cardinality(p_publishers) IS DISTINCT FROM v_n
       OR cardinality(p_payload_ns) IS DISTINCT FROM v_n THEN
        -- A caller's bug (pubsubd builds the arrays together): refused, not
        -- guessed at.
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'publish_batch: the arrays differ in length';
    END IF;
    IF NOT (p_nodes[1] = ALL (p_nodes)) THEN
        -- Several nodes: locked in node_id order first (ORDER BY is
        -- applied before FOR UPDATE), so that two calls sharing nodes
        -- cannot deadlock with each other.
        PERFORM 1 FROM pubsub.node nd WHERE nd.name = ANY (p_nodes) AND NOT nd.deleted
        ORDER BY nd.node_id FOR UPDATE;
    END IF;
    -- One update takes each node's seqs; a node is in it when every
    -- publish of the batch to it would succeed (the checks of
    -- publish_auto's fast path) and its item ids are distinct.
    WITH k AS (
        SELECT u.node, count(*) AS taken, count(DISTINCT u.item_id) AS distinct_ids
        FROM unnest(p_nodes, p_item_ids) AS u(node, item_id)
        GROUP BY u.node),
    upd AS (
        UPDATE pubsub.node nd SET last_seq = nd.last_seq + k.taken
        FROM k, pubsub.node_config c
        WHERE nd.name = k.node AND NOT nd.deleted AND nd.kind = 'leaf'
          AND k.distinct_ids = k.taken AND c.node_id = nd.node_id
          AND NOT EXISTS (
              SELECT 1
              FROM unnest(p_nodes, p_payloads, p_publishers, p_payload_ns)
                   AS u(node, payload, publisher, ns)
              WHERE u.node = nd.name
                AND NOT ((u.payload IS NULL OR octet_length(u.payload) <= c.max_payload_size)
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
        RETURNING nd.name,
                  ROW(nd.node_id, nd.last_seq - k.taken, k.taken, nd.item_count, nd.trim_seq,
                      nd.parent_id IS NOT NULL, c.persist_items AND c.max_items > 0,
                      c.max_items, c.item_expire, c.deliver_notifications)::pubsub.batch_node
                  AS node)
    SELECT array_agg(upd.name), array_agg(upd.node) INTO v_names, v_nodes FROM upd;

    IF v_names IS NOT NULL THEN
        -- Element k of a node's elements (in array order) is seq first_seq + k.
        v_used := array_fill(0::bigint, ARRAY[cardinality(v_names)]);
        v_node := array_fill(NULL::integer, ARRAY[v_n]);
        v_seq := array_fill(NULL::bigint, ARRAY[v_n]);
        FOR i IN 1..v_n LOOP
            j := array_position(v_names, p_nodes[i]);
            IF j IS NOT NULL THEN
                v_used[j] := v_used[j] + 1;
                v_node[i] := j;
                v_seq[i] := v_nodes[j].first_seq + v_used[j];
            END IF;
        END LOOP;

        WITH ins AS (
            INSERT INTO pubsub.item AS it (node_id, item_id, seq, publisher, payload, expires_at)
            SELECT (v_nodes[u.j]).node_id, u.item_id, u.seq, u.publisher, u.payload,
                   CASE WHEN (v_nodes[u.j]).item_expire > 0
                        THEN now() + make_interval(secs => (v_nodes[u.j]).item_expire) END
            FROM unnest(v_node, v_seq, p_item_ids, p_publishers, p_payloads)
                 AS u(j, seq, item_id, publisher, payload)
            WHERE u.j IS NOT NULL AND (v_nodes[u.j]).keep
            ON CONFLICT ON CONSTRAINT item_pkey DO UPDATE
                SET seq = excluded.seq, publisher = excluded.publisher,
                    payload = excluded.payload, published_at = now(),
                    expires_at = excluded.expires_at
            RETURNING it.node_id, (it.xmax = 0) AS inserted)
        SELECT array_agg((SELECT count(*) FROM ins WHERE ins.inserted AND ins.node_id = f.node_id)
                         ORDER BY f.j)
        INTO v_new
        FROM unnest(v_nodes) WITH ORDINALITY AS f(node_id, first_seq, taken, item_count, trim_seq,
                                                  in_collection, keep, max_items, item_expire,
                                                  deliver, j);

        -- The oldest items go, from the trim mark (see 021_trim_mark.sql).
        -- This sees the new items: when a node's batch alone is larger than
        -- max_items, its oldest go too.
        v_gone := array_fill(NULL::bigint, ARRAY[cardinality(v_names)]);
        FOR j IN 1..cardinality(v_names) LOOP
            -- As publish_auto: only a publish that added an item trims (an
            -- overwrite leaves the count as it is, even above max_items).
            IF v_nodes[j].keep AND v_new[j] > 0
               AND v_nodes[j].item_count + v_new[j] > v_nodes[j].max_items THEN
                v_gone[j] := pubsub.trim_oldest_items(
                    v_nodes[j].node_id, v_nodes[j].trim_seq,
                    v_nodes[j].item_count + v_new[j] - v_nodes[j].max_items);
            END IF;
        END LOOP;

        UPDATE pubsub.node nd
        SET item_count = least(nd.item_count + v_new[f.j], f.max_items),
            trim_seq = greatest(nd.trim_seq, coalesce(v_gone[f.j] + 1, nd.trim_seq))
        FROM unnest(v_nodes) WITH ORDINALITY AS f(node_id, first_seq, taken, item_count, trim_seq,
                                                  in_collection, keep, max_items, item_expire,
                                                  deliver, j)
        WHERE nd.node_id = f.node_id AND f.keep AND v_new[f.j] > 0;

        INSERT INTO pubsub.event (node_id, seq, kind, item_id, publisher, payload)
        SELECT (v_nodes[u.j]).node_id, u.seq, 'publish', u.item_id, u.publisher, u.payload
        FROM unnest(v_node, v_seq, p_item_ids, p_publishers, p_payloads)
             AS u(j, seq, item_id, publisher, payload)
        WHERE u.j IS NOT NULL AND (v_nodes[u.j]).deliver;

        -- node:seq of each node's last, so a dispatcher that already read it
        -- skips the wake-up.
        PERFORM pg_notify('pubsub_wakeup', f.node_id || ':' || (f.first_seq + f.taken) || ':'
                                           || coalesce(current_setting('pubsub.instance', true), ''))
        FROM unnest(v_nodes) AS f
        WHERE f.deliver;
    END IF;

    -- One row per publish, in array order (RETURN NEXT: no query to set
    -- up); the others one by one.
    FOR i IN 1..v_n LOOP
        j := v_node[i];
        IF j IS NULL THEN
            RETURN QUERY SELECT t.status, t.seq, t.node_id, t.audience
                FROM pubsub.publish_auto(p_nodes[i], p_item_ids[i], p_payloads[i], p_publishers[i],
                                         p_payload_ns[i], NULL, p_create_config) t;
            CONTINUE;
        END IF;
        status := 'ok';
        seq := v_seq[i];
        node_id := v_nodes[j].node_id;
        audience := NULL;
        IF v_seq[i] = v_nodes[j].first_seq + v_nodes[j].taken AND v_nodes[j].deliver
           AND v_audience THEN
            audience := pubsub.publish_audience(v_nodes[j].node_id, v_nodes[j].in_collection);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
