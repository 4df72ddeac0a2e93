-- 005_paging.sql: XEP-0059 result set management over stable positions.
-- Items are paged by their seq (the node's offset), never by OFFSET, so a
-- page boundary does not move when items are published meanwhile.

-- Items retrieval with paging.  p_after: items after this seq; p_before:
-- items before this seq (the last p_max of them); p_last: the last page.
-- Without any: the first page (oldest items).  First row: status and the
-- node's item count; item rows follow in seq order.
CREATE FUNCTION pubsub.get_items_page(p_node text, p_requester text, p_max bigint,
                                      p_after bigint, p_before bigint, p_last boolean)
RETURNS TABLE (status text, item_id text, publisher text, payload text, seq bigint, total bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n record;
    v_aff text;
    v_total bigint;
BEGIN
    SELECT c.*, nd.item_count INTO n FROM pubsub.node nd JOIN pubsub.node_config c USING (node_id)
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'item-not-found'::text, NULL::text, NULL::text, NULL::text,
                            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    v_aff := pubsub.affiliation_of(n.node_id, p_requester);
    IF v_aff = 'outcast' THEN
        RETURN QUERY SELECT 'forbidden'::text, NULL::text, NULL::text, NULL::text,
                            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF n.access_model <> 'open' AND v_aff NOT IN ('owner', 'publisher', 'publish-only', 'member') THEN
        RETURN QUERY SELECT 'closed-node'::text, NULL::text, NULL::text, NULL::text,
                            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text, NULL::text, NULL::bigint,
                        n.item_count;
    IF p_after IS NOT NULL THEN
        RETURN QUERY SELECT NULL::text, i.item_id, i.publisher, i.payload, i.seq, NULL::bigint
            FROM pubsub.item i WHERE i.node_id = n.node_id AND i.seq > p_after
            ORDER BY i.seq LIMIT p_max;
    ELSIF p_before IS NOT NULL OR p_last THEN
        RETURN QUERY SELECT NULL::text, r.item_id, r.publisher, r.payload, r.seq, NULL::bigint FROM
            (SELECT i.item_id, i.publisher, i.payload, i.seq FROM pubsub.item i
             WHERE i.node_id = n.node_id AND (p_before IS NULL OR i.seq < p_before)
             ORDER BY i.seq DESC LIMIT p_max) r
            ORDER BY r.seq;
    ELSE
        RETURN QUERY SELECT NULL::text, i.item_id, i.publisher, i.payload, i.seq, NULL::bigint
            FROM pubsub.item i WHERE i.node_id = n.node_id ORDER BY i.seq LIMIT p_max;
    END IF;
END
$$;

-- Node meta-data for disco#info (§5.4).
CREATE FUNCTION pubsub.node_meta(p_node text)
RETURNS TABLE (kind text, title text, description text, payload_type text, creator text,
               created_at text, access_model text, publish_model text, notification_type text,
               max_items bigint, item_count bigint, num_subscribers bigint, owners text)
LANGUAGE sql STABLE AS $$
    SELECT n.kind, c.title, c.description, c.payload_type, n.creator,
           to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           c.access_model, c.publish_model, c.notification_type, c.max_items, n.item_count,
           (SELECT count(*) FROM pubsub.subscription s
            WHERE s.node_id = n.node_id AND s.state = 'subscribed'),
           (SELECT string_agg(a.jid, E'\n' ORDER BY a.jid) FROM pubsub.affiliation a
            WHERE a.node_id = n.node_id AND a.affiliation = 'owner')
    FROM pubsub.node n JOIN pubsub.node_config c ON c.node_id = n.node_id
    WHERE n.name = p_node AND NOT n.deleted
$$;
