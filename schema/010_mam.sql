-- 010_mam.sql: XEP-0442 message archive management on nodes.  A node's
-- archive is its persisted items (pubsub#max_items, pubsub#item_expire
-- decide how far back it goes); an item's archive id is its seq, stable
-- and ordered, so a consumer resumes after the last id it saw.

-- Archive query.  Filters: published_at in [p_start, p_end], seq after
-- p_after / before p_before; p_last: the last page.  Returns up to p_max
-- + 1 rows so the caller knows whether the result is complete.  First
-- row: the status (and the number of items matching the time filter).
CREATE FUNCTION pubsub.mam_query(p_node text, p_requester text, p_start timestamptz,
                                 p_end timestamptz, p_after bigint, p_before bigint,
                                 p_last boolean, p_max integer)
RETURNS TABLE (status text, item_id text, payload text, seq bigint, stamp text, total bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n record;
    v_aff text;
BEGIN
    SELECT c.* INTO n FROM pubsub.node nd JOIN pubsub.node_config c USING (node_id)
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'item-not-found'::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::text, NULL::bigint;
        RETURN;
    END IF;
    v_aff := pubsub.affiliation_of(n.node_id, p_requester);
    IF v_aff = 'outcast' OR (n.access_model <> 'open'
                             AND v_aff NOT IN ('owner', 'publisher', 'publish-only', 'member')) THEN
        RETURN QUERY SELECT 'forbidden'::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF (p_after IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pubsub.item i
                                            WHERE i.node_id = n.node_id AND i.seq = p_after))
       OR (p_before IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pubsub.item i
                                                WHERE i.node_id = n.node_id AND i.seq = p_before))
    THEN
        RETURN QUERY SELECT 'no-such-id'::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::text, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text, NULL::bigint, NULL::text,
        (SELECT count(*) FROM pubsub.item i WHERE i.node_id = n.node_id
           AND (p_start IS NULL OR i.published_at >= p_start)
           AND (p_end IS NULL OR i.published_at <= p_end));
    RETURN QUERY SELECT NULL::text, r.item_id, r.payload, r.seq,
                        to_char(r.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                        NULL::bigint
    FROM (SELECT i.item_id, i.payload, i.seq, i.published_at FROM pubsub.item i
          WHERE i.node_id = n.node_id
            AND (p_start IS NULL OR i.published_at >= p_start)
            AND (p_end IS NULL OR i.published_at <= p_end)
            AND (p_after IS NULL OR i.seq > p_after)
            AND (p_before IS NULL OR i.seq < p_before)
          ORDER BY CASE WHEN p_last OR p_before IS NOT NULL THEN -i.seq ELSE i.seq END
          LIMIT p_max + 1) r
    ORDER BY CASE WHEN p_last OR p_before IS NOT NULL THEN -r.seq ELSE r.seq END;
END
$$;
