-- 022_list_paging.sql: XEP-0059 pages over subscription and affiliation
-- lists, by stable keys: subscriptions by sub_id, a node's affiliations by
-- JID, an entity's affiliations by node name.  p_after NULL: the first
-- page.  The status row (owner lists) carries the list's size in `total`.

DROP FUNCTION pubsub.own_subscriptions(text, text, integer);
CREATE FUNCTION pubsub.own_subscriptions(p_requester text, p_node text, p_limit integer,
                                         p_after bigint)
RETURNS TABLE (node text, jid text, subid text, state text, sub_id bigint, total bigint)
LANGUAGE sql STABLE AS $$
    WITH mine AS (
        SELECT n.name, s.jid, s.subid, s.state, s.sub_id
        FROM pubsub.subscription s JOIN pubsub.node n ON n.node_id = s.node_id
        WHERE split_part(s.jid, '/', 1) = p_requester AND NOT n.deleted
          AND (p_node IS NULL OR n.name = p_node))
    SELECT m.name, m.jid, m.subid, m.state, m.sub_id, (SELECT count(*) FROM mine)
    FROM mine m WHERE p_after IS NULL OR m.sub_id > p_after
    ORDER BY m.sub_id LIMIT p_limit
$$;

DROP FUNCTION pubsub.own_affiliations(text, text, integer);
CREATE FUNCTION pubsub.own_affiliations(p_requester text, p_node text, p_limit integer,
                                        p_after text)
RETURNS TABLE (node text, affiliation text, total bigint)
LANGUAGE sql STABLE AS $$
    WITH mine AS (
        SELECT n.name, a.affiliation
        FROM pubsub.affiliation a JOIN pubsub.node n ON n.node_id = a.node_id
        WHERE a.jid = p_requester AND NOT n.deleted AND (p_node IS NULL OR n.name = p_node))
    SELECT m.name, m.affiliation, (SELECT count(*) FROM mine)
    FROM mine m WHERE p_after IS NULL OR m.name > p_after
    ORDER BY m.name LIMIT p_limit
$$;

DROP FUNCTION pubsub.node_subscriptions(text, text, integer);
CREATE FUNCTION pubsub.node_subscriptions(p_name text, p_requester text, p_limit integer,
                                          p_after bigint)
RETURNS TABLE (status text, jid text, subid text, state text, sub_id bigint, total bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    RETURN QUERY SELECT c.status, NULL::text, NULL::text, NULL::text, NULL::bigint,
        (SELECT count(*) FROM pubsub.subscription s WHERE s.node_id = c.node_id);
    IF c.status = 'ok' THEN
        RETURN QUERY SELECT NULL::text, s.jid, s.subid, s.state, s.sub_id, NULL::bigint
            FROM pubsub.subscription s
            WHERE s.node_id = c.node_id AND (p_after IS NULL OR s.sub_id > p_after)
            ORDER BY s.sub_id LIMIT p_limit;
    END IF;
END
$$;

DROP FUNCTION pubsub.node_affiliations(text, text, integer);
CREATE FUNCTION pubsub.node_affiliations(p_name text, p_requester text, p_limit integer,
                                         p_after text)
RETURNS TABLE (status text, jid text, affiliation text, total bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    RETURN QUERY SELECT c.status, NULL::text, NULL::text,
        (SELECT count(*) FROM pubsub.affiliation a WHERE a.node_id = c.node_id);
    IF c.status = 'ok' THEN
        RETURN QUERY SELECT NULL::text, a.jid, a.affiliation, NULL::bigint
            FROM pubsub.affiliation a
            WHERE a.node_id = c.node_id AND (p_after IS NULL OR a.jid > p_after)
            ORDER BY a.jid LIMIT p_limit;
    END IF;
END
$$;
