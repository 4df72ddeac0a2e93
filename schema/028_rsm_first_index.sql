-- 028_rsm_first_index.sql: XEP-0059 §2: "The <first/> element SHOULD
-- include an 'index' attribute", the position of the page's first item
-- in the full result set.  Every function behind a reply whose <set/>
-- carries a <count/> now also returns `idx`: the number of items of the
-- full set (in the order of the set) before the page's first item.
--
-- Forward pages (the first page, or after a position) start after
-- everything up to that position; backward pages (before a position, or
-- the last page with an empty <before/>) end just before the position, so
-- their first item has max(0, preceding - page size) items before it.
-- The functions are STABLE: the counts see the same snapshot as the page.

DROP FUNCTION pubsub.get_items_page(text, text, bigint, bigint, bigint, boolean);
CREATE FUNCTION pubsub.get_items_page(p_node text, p_requester text, p_max bigint,
                                      p_after bigint, p_before bigint, p_last boolean)
RETURNS TABLE (status text, item_id text, publisher text, payload text, seq bigint, total bigint,
               idx bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n record;
    v_aff text;
    v_idx bigint := 0;
BEGIN
    SELECT c.*, nd.item_count INTO n FROM pubsub.node nd JOIN pubsub.node_config c USING (node_id)
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'item-not-found'::text, NULL::text, NULL::text, NULL::text,
                            NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    v_aff := pubsub.read_access(n.node_id, n.access_model, p_requester);
    IF v_aff <> 'ok' THEN
        RETURN QUERY SELECT v_aff, NULL::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF NOT n.persist_items THEN
        RETURN QUERY SELECT 'not-persistent'::text, NULL::text, NULL::text, NULL::text,
                            NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF p_after IS NOT NULL THEN
        SELECT count(*) INTO v_idx FROM pubsub.item i
        WHERE i.node_id = n.node_id AND i.seq <= p_after;
    ELSIF p_before IS NOT NULL THEN
        SELECT greatest(count(*) - p_max, 0) INTO v_idx FROM pubsub.item i
        WHERE i.node_id = n.node_id AND i.seq < p_before;
    ELSIF p_last THEN
        v_idx := greatest(n.item_count - p_max, 0);
    END IF;
    RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text, NULL::text, NULL::bigint,
                        n.item_count, v_idx;
    IF p_after IS NOT NULL THEN
        RETURN QUERY SELECT NULL::text, i.item_id, i.publisher, i.payload, i.seq, NULL::bigint,
                            NULL::bigint
            FROM pubsub.item i WHERE i.node_id = n.node_id AND i.seq > p_after
            ORDER BY i.seq LIMIT p_max;
    ELSIF p_before IS NOT NULL OR p_last THEN
        RETURN QUERY SELECT NULL::text, r.item_id, r.publisher, r.payload, r.seq, NULL::bigint,
                            NULL::bigint FROM
            (SELECT i.item_id, i.publisher, i.payload, i.seq FROM pubsub.item i
             WHERE i.node_id = n.node_id AND (p_before IS NULL OR i.seq < p_before)
             ORDER BY i.seq DESC LIMIT p_max) r
            ORDER BY r.seq;
    ELSE
        RETURN QUERY SELECT NULL::text, i.item_id, i.publisher, i.payload, i.seq, NULL::bigint,
                            NULL::bigint
            FROM pubsub.item i WHERE i.node_id = n.node_id ORDER BY i.seq LIMIT p_max;
    END IF;
END
$$;

DROP FUNCTION pubsub.mam_query(text, text, timestamptz, timestamptz, bigint, bigint, bigint,
                               bigint, boolean, integer);
CREATE FUNCTION pubsub.mam_query(p_node text, p_requester text, p_start timestamptz,
                                 p_end timestamptz, p_after_id bigint, p_before_id bigint,
                                 p_rsm_after bigint, p_rsm_before bigint, p_last boolean,
                                 p_max integer)
RETURNS TABLE (status text, item_id text, payload text, seq bigint, stamp text, total bigint,
               idx bigint)
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
                            NULL::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    v_access := pubsub.read_access(n.node_id, n.access_model, p_requester);
    IF v_access <> 'ok' THEN
        RETURN QUERY SELECT v_access, NULL::text, NULL::text, NULL::bigint,
                            NULL::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(ARRAY[p_after_id, p_before_id, p_rsm_after, p_rsm_before]) id
               WHERE id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pubsub.item i
                                                    WHERE i.node_id = n.node_id AND i.seq = id))
    THEN
        RETURN QUERY SELECT 'no-such-id'::text, NULL::text, NULL::text, NULL::bigint,
                            NULL::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    -- The result set's size, and how many of its items precede the page:
    -- forward, those up to p_rsm_after; backward, those before
    -- p_rsm_before (all of them for the last page) minus the page.
    RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text, NULL::bigint, NULL::text,
        count(*),
        CASE WHEN v_backward
             THEN greatest(count(*) FILTER (WHERE p_rsm_before IS NULL OR rs.seq < p_rsm_before)
                           - p_max, 0)
             ELSE count(*) FILTER (WHERE p_rsm_after IS NOT NULL AND rs.seq <= p_rsm_after)
        END
    FROM (SELECT i.seq FROM pubsub.item i WHERE i.node_id = n.node_id
           AND (p_start IS NULL OR i.published_at >= p_start)
           AND (p_end IS NULL OR i.published_at <= p_end)
           AND (p_after_id IS NULL OR i.seq > p_after_id)
           AND (p_before_id IS NULL OR i.seq < p_before_id)) rs;
    RETURN QUERY SELECT NULL::text, r.item_id, r.payload, r.seq,
                        to_char(r.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                        NULL::bigint, NULL::bigint
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

-- The lists page forward only (after a key), so idx is the number of
-- entries up to that key.  An entity's own lists now start with a header
-- row (node NULL) carrying total and idx, like the owner lists: before,
-- the size came with the page's rows, so a page past the end of a
-- non-empty list said <count>0</count>.
DROP FUNCTION pubsub.own_subscriptions(text, text, integer, bigint);
CREATE FUNCTION pubsub.own_subscriptions(p_requester text, p_node text, p_limit integer,
                                         p_after bigint)
RETURNS TABLE (node text, jid text, subid text, state text, sub_id bigint, total bigint,
               idx bigint)
LANGUAGE sql STABLE AS $$
    WITH mine AS (
        SELECT n.name, s.jid, s.subid, s.state, s.sub_id
        FROM pubsub.subscription s JOIN pubsub.node n ON n.node_id = s.node_id
        WHERE split_part(s.jid, '/', 1) = p_requester AND NOT n.deleted
          AND (p_node IS NULL OR n.name = p_node))
    SELECT u.* FROM (
        SELECT NULL::text AS name, NULL::text AS jid, NULL::text AS subid, NULL::text AS state,
               NULL::bigint AS sub_id, count(*) AS total,
               count(*) FILTER (WHERE p_after IS NOT NULL AND mine.sub_id <= p_after) AS idx
        FROM mine
        UNION ALL
        (SELECT m.name, m.jid, m.subid, m.state, m.sub_id, NULL::bigint, NULL::bigint
         FROM mine m WHERE p_after IS NULL OR m.sub_id > p_after
         ORDER BY m.sub_id LIMIT p_limit)) u
    ORDER BY u.name IS NOT NULL, u.sub_id
$$;

DROP FUNCTION pubsub.own_affiliations(text, text, integer, text);
CREATE FUNCTION pubsub.own_affiliations(p_requester text, p_node text, p_limit integer,
                                        p_after text)
RETURNS TABLE (node text, affiliation text, total bigint, idx bigint)
LANGUAGE sql STABLE AS $$
    WITH mine AS (
        SELECT n.name, a.affiliation
        FROM pubsub.affiliation a JOIN pubsub.node n ON n.node_id = a.node_id
        WHERE a.jid = p_requester AND NOT n.deleted AND (p_node IS NULL OR n.name = p_node))
    SELECT u.* FROM (
        SELECT NULL::text AS name, NULL::text AS affiliation, count(*) AS total,
               count(*) FILTER (WHERE p_after IS NOT NULL AND mine.name <= p_after) AS idx
        FROM mine
        UNION ALL
        (SELECT m.name, m.affiliation, NULL::bigint, NULL::bigint
         FROM mine m WHERE p_after IS NULL OR m.name > p_after
         ORDER BY m.name LIMIT p_limit)) u
    ORDER BY u.name IS NOT NULL, u.name
$$;

DROP FUNCTION pubsub.node_subscriptions(text, text, integer, bigint);
CREATE FUNCTION pubsub.node_subscriptions(p_name text, p_requester text, p_limit integer,
                                          p_after bigint)
RETURNS TABLE (status text, jid text, subid text, state text, sub_id bigint, total bigint,
               idx bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    RETURN QUERY SELECT c.status, NULL::text, NULL::text, NULL::text, NULL::bigint,
        (SELECT count(*) FROM pubsub.subscription s WHERE s.node_id = c.node_id),
        (SELECT count(*) FROM pubsub.subscription s
         WHERE s.node_id = c.node_id AND p_after IS NOT NULL AND s.sub_id <= p_after);
    IF c.status = 'ok' THEN
        RETURN QUERY SELECT NULL::text, s.jid, s.subid, s.state, s.sub_id, NULL::bigint,
                            NULL::bigint
            FROM pubsub.subscription s
            WHERE s.node_id = c.node_id AND (p_after IS NULL OR s.sub_id > p_after)
            ORDER BY s.sub_id LIMIT p_limit;
    END IF;
END
$$;

DROP FUNCTION pubsub.node_affiliations(text, text, integer, text);
CREATE FUNCTION pubsub.node_affiliations(p_name text, p_requester text, p_limit integer,
                                         p_after text)
RETURNS TABLE (status text, jid text, affiliation text, total bigint, idx bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    RETURN QUERY SELECT c.status, NULL::text, NULL::text,
        (SELECT count(*) FROM pubsub.affiliation a WHERE a.node_id = c.node_id),
        (SELECT count(*) FROM pubsub.affiliation a
         WHERE a.node_id = c.node_id AND p_after IS NOT NULL AND a.jid <= p_after);
    IF c.status = 'ok' THEN
        RETURN QUERY SELECT NULL::text, a.jid, a.affiliation, NULL::bigint, NULL::bigint
            FROM pubsub.affiliation a
            WHERE a.node_id = c.node_id AND (p_after IS NULL OR a.jid > p_after)
            ORDER BY a.jid LIMIT p_limit;
    END IF;
END
$$;
