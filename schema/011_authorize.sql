-- 011_authorize.sql: the authorize access model (XEP-0060 §4.5, §6.1.6,
-- §8.6, §8.7): subscriptions wait for an owner's approval, and only
-- subscribers (and affiliated entities) may read the node's items.

-- Who may read a node's items (retrieval, paging, archive).  Returns ok,
-- forbidden (outcast), closed-node (whitelist) or reader-not-subscribed
-- (authorize, no approved subscription).
CREATE FUNCTION pubsub.read_access(p_node_id bigint, p_access_model text, p_requester text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_aff text := pubsub.affiliation_of(p_node_id, p_requester);
BEGIN
    IF v_aff = 'outcast' THEN
        RETURN 'forbidden';
    END IF;
    IF p_access_model = 'open' OR v_aff IN ('owner', 'publisher', 'publish-only', 'member') THEN
        RETURN 'ok';
    END IF;
    IF p_access_model = 'authorize' THEN
        IF EXISTS (SELECT 1 FROM pubsub.subscription s
                   WHERE s.node_id = p_node_id AND s.state = 'subscribed'
                     AND split_part(s.jid, '/', 1) = p_requester) THEN
            RETURN 'ok';
        END IF;
        RETURN 'reader-not-subscribed';
    END IF;
    RETURN 'closed-node';
END
$$;

CREATE OR REPLACE FUNCTION pubsub.get_items(p_node text, p_requester text, p_max bigint, p_ids text[])
RETURNS TABLE (status text, item_id text, publisher text, payload text, seq bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n record;
    v_aff text;
BEGIN
    SELECT c.* INTO n FROM pubsub.node nd JOIN pubsub.node_config c USING (node_id)
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'item-not-found'::text, NULL::text, NULL::text, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    v_aff := pubsub.read_access(n.node_id, n.access_model, p_requester);
    IF v_aff <> 'ok' THEN
        RETURN QUERY SELECT v_aff, NULL::text, NULL::text, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text, NULL::text, NULL::bigint;
    IF p_ids IS NOT NULL THEN
        RETURN QUERY SELECT NULL::text, i.item_id, i.publisher, i.payload, i.seq
            FROM pubsub.item i WHERE i.node_id = n.node_id AND i.item_id = ANY (p_ids)
            ORDER BY i.seq;
    ELSE
        RETURN QUERY SELECT NULL::text, r.item_id, r.publisher, r.payload, r.seq FROM
            (SELECT i.item_id, i.publisher, i.payload, i.seq FROM pubsub.item i
             WHERE i.node_id = n.node_id ORDER BY i.seq DESC LIMIT p_max) r
            ORDER BY r.seq;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pubsub.get_items_page(p_node text, p_requester text, p_max bigint,
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
    v_aff := pubsub.read_access(n.node_id, n.access_model, p_requester);
    IF v_aff <> 'ok' THEN
        RETURN QUERY SELECT v_aff, NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::bigint;
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

CREATE OR REPLACE FUNCTION pubsub.mam_query(p_node text, p_requester text, p_start timestamptz,
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
    v_aff := pubsub.read_access(n.node_id, n.access_model, p_requester);
    IF v_aff <> 'ok' THEN
        RETURN QUERY SELECT v_aff, NULL::text, NULL::text, NULL::bigint,
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

DROP FUNCTION pubsub.subscribe(text, text, text, jsonb);

-- Subscribes p_jid (bare or full) on behalf of p_requester (bare JID),
-- with options p_opts (NULL: defaults).  On an authorize node an entity
-- without affiliation gets a pending subscription, and `owners` lists the
-- owners to ask (only when the request is new).  Otherwise the Binding
-- starts after the node's current seq, read under the node lock.
CREATE FUNCTION pubsub.subscribe(p_node text, p_jid text, p_requester text, p_opts jsonb,
                                 OUT status text, OUT subid text, OUT state text,
                                 OUT node_id bigint, OUT sub_id bigint,
                                 OUT last_seq bigint, OUT last_item_id text, OUT last_payload text,
                                 OUT owners text)
LANGUAGE plpgsql AS $$
DECLARE
    n pubsub.node_config;
    v_aff text;
    v_last bigint;
    v_pending boolean;
BEGIN
    SELECT c.* INTO n FROM pubsub.node nd JOIN pubsub.node_config c ON c.node_id = nd.node_id
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        status := 'item-not-found';
        RETURN;
    END IF;
    node_id := n.node_id;
    v_aff := pubsub.affiliation_of(n.node_id, p_requester);
    IF v_aff = 'outcast' THEN
        status := 'forbidden';
        RETURN;
    END IF;
    IF n.access_model = 'whitelist'
       AND v_aff NOT IN ('owner', 'publisher', 'publish-only', 'member') THEN
        status := 'closed-node';
        RETURN;
    END IF;
    v_pending := n.access_model = 'authorize'
                 AND v_aff NOT IN ('owner', 'publisher', 'publish-only', 'member');
    SELECT nd.last_seq INTO v_last FROM pubsub.node nd WHERE nd.node_id = n.node_id FOR UPDATE;
    SELECT s.subid, s.state, s.sub_id INTO subid, state, sub_id FROM pubsub.subscription s
    WHERE s.node_id = n.node_id AND s.jid = p_jid;
    IF NOT FOUND THEN
        INSERT INTO pubsub.subscription AS s (node_id, jid, subid, start_seq, state)
        VALUES (n.node_id, p_jid, replace(gen_random_uuid()::text, '-', ''), v_last,
                CASE WHEN v_pending THEN 'pending' ELSE 'subscribed' END)
        RETURNING s.subid, s.state, s.sub_id INTO subid, state, sub_id;
        IF v_pending THEN
            SELECT string_agg(a.jid, E'\n' ORDER BY a.jid) INTO owners FROM pubsub.affiliation a
            WHERE a.node_id = n.node_id AND a.affiliation = 'owner';
        END IF;
    END IF;
    IF p_opts IS NOT NULL AND NOT pubsub.apply_sub_options(sub_id, p_opts) THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'invalid-options';
    END IF;
    IF state = 'subscribed' AND n.send_last_published_item <> 'never' THEN
        SELECT i.seq, i.item_id, i.payload INTO last_seq, last_item_id, last_payload
        FROM pubsub.item i WHERE i.node_id = n.node_id ORDER BY i.seq DESC LIMIT 1;
    END IF;
    status := 'ok';
EXCEPTION WHEN raise_exception THEN
    IF SQLERRM = 'invalid-options' THEN
        status := 'invalid-options';
        subid := NULL; state := NULL; owners := NULL;
        RETURN;
    END IF;
    RAISE;
END
$$;

-- An owner's answer to a subscription request (§8.6).  Approving starts
-- the Binding at the node's current seq; denying removes the request.
-- status: ok, item-not-found, forbidden, not-pending.  Returns the
-- subscriber's JID and the resulting state (subscribed or none).
CREATE FUNCTION pubsub.authorize(p_node text, p_requester text, p_subid text, p_jid text,
                                 p_allow boolean, OUT status text, OUT jid text, OUT state text)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_last bigint;
    s record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_node, p_requester);
    status := c.status;
    IF c.status <> 'ok' THEN
        RETURN;
    END IF;
    SELECT nd.last_seq INTO v_last FROM pubsub.node nd WHERE nd.node_id = c.node_id FOR UPDATE;
    SELECT * INTO s FROM pubsub.subscription x
    WHERE x.node_id = c.node_id AND x.state = 'pending'
      AND (p_subid IS NULL OR x.subid = p_subid) AND (p_jid IS NULL OR x.jid = p_jid);
    IF NOT FOUND THEN
        status := 'not-pending';
        RETURN;
    END IF;
    jid := s.jid;
    IF p_allow THEN
        UPDATE pubsub.subscription x SET state = 'subscribed', start_seq = v_last,
            start_gseq = pubsub.current_gseq()
        WHERE x.sub_id = s.sub_id;
        state := 'subscribed';
    ELSE
        DELETE FROM pubsub.subscription x WHERE x.sub_id = s.sub_id;
        state := 'none';
    END IF;
END
$$;

-- Pending requests (§8.7): the nodes p_requester owns that have some
-- (p_node NULL), or the requests of one node.  First row: status.
CREATE FUNCTION pubsub.pending(p_requester text, p_node text)
RETURNS TABLE (status text, node text, jid text, subid text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
BEGIN
    IF p_node IS NULL THEN
        RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text, NULL::text;
        RETURN QUERY SELECT DISTINCT NULL::text, n.name, NULL::text, NULL::text
            FROM pubsub.subscription s JOIN pubsub.node n ON n.node_id = s.node_id
            JOIN pubsub.affiliation a ON a.node_id = n.node_id
            WHERE s.state = 'pending' AND a.jid = p_requester AND a.affiliation = 'owner'
              AND NOT n.deleted;
        RETURN;
    END IF;
    SELECT * INTO c FROM pubsub.owner_check(p_node, p_requester);
    RETURN QUERY SELECT c.status, NULL::text, NULL::text, NULL::text;
    IF c.status = 'ok' THEN
        RETURN QUERY SELECT NULL::text, p_node, s.jid, s.subid FROM pubsub.subscription s
            WHERE s.node_id = c.node_id AND s.state = 'pending' ORDER BY s.sub_id;
    END IF;
END
$$;
