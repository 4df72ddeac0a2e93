-- 021_trim_mark.sql: max_items trimming stays O(trimmed items) however long
-- a node has been trimming.  node.trim_seq is a low-water mark: no live
-- item of the node has a smaller seq (items only ever get larger seqs), so
-- the oldest-first scan starts there instead of walking the dead index
-- entries that earlier trims left behind.
ALTER TABLE pubsub.node ADD COLUMN trim_seq bigint NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION pubsub.publish_trusted(p_node text, p_item_id text, p_payload text,
                                       p_publisher text, p_payload_ns text,
                                       p_preconditions jsonb,
                                       OUT status text, OUT seq bigint, OUT node_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n pubsub.node_config;
    v_aff text;
    v_inserted boolean;
    v_count bigint;
    v_expires timestamptz;
    v_trim bigint;
BEGIN
    SELECT c.* INTO n
    FROM pubsub.node nd JOIN pubsub.node_config c ON c.node_id = nd.node_id
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        status := 'item-not-found';
        RETURN;
    END IF;
    node_id := n.node_id;
    v_aff := pubsub.affiliation_of(n.node_id, p_publisher);
    IF v_aff = 'outcast'
       OR (n.publish_model = 'publishers' AND v_aff NOT IN ('owner', 'publisher', 'publish-only'))
       OR (n.publish_model = 'subscribers' AND v_aff NOT IN ('owner', 'publisher', 'publish-only')
           AND NOT EXISTS (SELECT 1 FROM pubsub.subscription s
                           WHERE s.node_id = n.node_id AND s.state = 'subscribed'
                             AND split_part(s.jid, '/', 1) = p_publisher))
    THEN
        status := 'forbidden';
        RETURN;
    END IF;
    IF p_preconditions IS NOT NULL AND NOT (pubsub.config_json(n) @> p_preconditions) THEN
        status := 'precondition-not-met';
        RETURN;
    END IF;
    IF p_payload IS NOT NULL AND octet_length(p_payload) > n.max_payload_size THEN
        status := 'payload-too-big';
        RETURN;
    END IF;
    IF n.payload_type <> '' AND p_payload IS NOT NULL
       AND p_payload_ns IS DISTINCT FROM n.payload_type THEN
        status := 'invalid-payload';
        RETURN;
    END IF;

    UPDATE pubsub.node nd SET last_seq = last_seq + 1 WHERE nd.node_id = n.node_id
    RETURNING last_seq INTO seq;

    IF n.persist_items AND n.max_items > 0 THEN
        v_expires := CASE WHEN n.item_expire > 0
                          THEN now() + make_interval(secs => n.item_expire) END;
        INSERT INTO pubsub.item AS i (node_id, item_id, seq, publisher, payload, expires_at)
        VALUES (n.node_id, p_item_id, seq, p_publisher, p_payload, v_expires)
        ON CONFLICT ON CONSTRAINT item_pkey DO UPDATE
            SET seq = excluded.seq, publisher = excluded.publisher,
                payload = excluded.payload, published_at = now(), expires_at = excluded.expires_at
        RETURNING (xmax = 0) INTO v_inserted;
        IF v_inserted THEN
            UPDATE pubsub.node nd SET item_count = item_count + 1
            WHERE nd.node_id = n.node_id RETURNING item_count, trim_seq INTO v_count, v_trim;
            IF v_count > n.max_items THEN
                -- Start at the trim mark: the index range below it holds only
                -- the dead entries of earlier trims (until VACUUM), which a
                -- scan from the lowest seq would walk on every publish.
                WITH gone AS (
                    DELETE FROM pubsub.item i
                    WHERE i.node_id = n.node_id AND i.seq IN
                        (SELECT i2.seq FROM pubsub.item i2
                         WHERE i2.node_id = n.node_id AND i2.seq >= v_trim
                         ORDER BY i2.seq LIMIT v_count - n.max_items)
                    RETURNING i.seq)
                SELECT max(g.seq) INTO v_trim FROM gone g;
                UPDATE pubsub.node nd SET item_count = n.max_items,
                    trim_seq = greatest(nd.trim_seq, coalesce(v_trim + 1, nd.trim_seq))
                WHERE nd.node_id = n.node_id;
            END IF;
        END IF;
    END IF;

    IF n.deliver_notifications THEN
        INSERT INTO pubsub.event (node_id, seq, kind, item_id, publisher, payload)
        VALUES (n.node_id, seq, 'publish', p_item_id, p_publisher, p_payload);
        -- node:seq, so a dispatcher that already read this event skips the wake-up.
        PERFORM pg_notify('pubsub_wakeup', n.node_id || ':' || seq);
    END IF;
    status := 'ok';
END
$$;
