-- 015_mam_filters.sql: XEP-0313 'after-id'/'before-id' are filters, RSM
-- <after/>/<before/> page.  The form fields (with start and end) define
-- the result set, which <count/> describes (XEP-0059 §2.6); RSM pages
-- through it, and only RSM <before/> pages backwards (XEP-0313 §12).
DROP FUNCTION pubsub.mam_query(text, text, timestamptz, timestamptz, bigint, bigint, boolean,
                               integer);

-- Archive query.  Result set: published_at in [p_start, p_end], seq after
-- p_after_id and before p_before_id.  Page: after p_rsm_after (oldest
-- first), before p_rsm_before or, p_last, the end (newest first).  Returns
-- up to p_max + 1 rows so the caller knows whether the page is the last in
-- its direction.  First row: the status and the size of the result set.
CREATE FUNCTION pubsub.mam_query(p_node text, p_requester text, p_start timestamptz,
                                 p_end timestamptz, p_after_id bigint, p_before_id bigint,
                                 p_rsm_after bigint, p_rsm_before bigint, p_last boolean,
                                 p_max integer)
RETURNS TABLE (status text, item_id text, payload text, seq bigint, stamp text, total bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n record;
    v_access text;
    v_backward boolean := p_last OR p_rsm_before IS NOT NULL;
BEGIN
    SELECT c.* INTO n FROM pubsub.node nd JOIN pubsub.node_config c USING (node_id)
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'item-not-found'::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::text, NULL::bigint;
        RETURN;
    END IF;
    v_access := pubsub.read_access(n.node_id, n.access_model, p_requester);
    IF v_access <> 'ok' THEN
        RETURN QUERY SELECT v_access, NULL::text, NULL::text, NULL::bigint,
                            NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(ARRAY[p_after_id, p_before_id, p_rsm_after, p_rsm_before]) id
               WHERE id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pubsub.item i
                                                    WHERE i.node_id = n.node_id AND i.seq = id))
    THEN
        RETURN QUERY SELECT 'no-such-id'::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::text, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text, NULL::bigint, NULL::text,
        (SELECT count(*) FROM pubsub.item i WHERE i.node_id = n.node_id
           AND (p_start IS NULL OR i.published_at >= p_start)
           AND (p_end IS NULL OR i.published_at <= p_end)
           AND (p_after_id IS NULL OR i.seq > p_after_id)
           AND (p_before_id IS NULL OR i.seq < p_before_id));
    RETURN QUERY SELECT NULL::text, r.item_id, r.payload, r.seq,
                        to_char(r.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                        NULL::bigint
    FROM (SELECT i.item_id, i.payload, i.seq, i.published_at FROM pubsub.item i
          WHERE i.node_id = n.node_id
            AND (p_start IS NULL OR i.published_at >= p_start)
            AND (p_end IS NULL OR i.published_at <= p_end)
            AND (p_after_id IS NULL OR i.seq > p_after_id)
            AND (p_before_id IS NULL OR i.seq < p_before_id)
            AND (p_rsm_after IS NULL OR i.seq > p_rsm_after)
            AND (p_rsm_before IS NULL OR i.seq < p_rsm_before)
          ORDER BY CASE WHEN v_backward THEN -i.seq ELSE i.seq END
          LIMIT p_max + 1) r
    ORDER BY CASE WHEN v_backward THEN -r.seq ELSE r.seq END;
END
$$;
