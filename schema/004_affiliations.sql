-- 004_affiliations.sql: retrieval and management of subscriptions and
-- affiliations (XEP-0060 §5.6, §5.7, §8.8, §8.9).  Lists of JIDs travel
-- as newline-separated text (JIDs cannot contain control characters).

-- The requester's affiliation with a node, or the status that refuses an
-- owner operation: item-not-found, forbidden.
CREATE FUNCTION pubsub.owner_check(p_name text, p_requester text,
                                   OUT status text, OUT node_id bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT n.node_id INTO node_id FROM pubsub.node n WHERE n.name = p_name AND NOT n.deleted;
    IF node_id IS NULL THEN
        status := 'item-not-found';
    ELSIF pubsub.affiliation_of(node_id, p_requester) <> 'owner' THEN
        status := 'forbidden';
    ELSE
        status := 'ok';
    END IF;
END
$$;

-- All subscriptions of a node, for its owner.  First row: the status.
CREATE FUNCTION pubsub.node_subscriptions(p_name text, p_requester text, p_limit integer)
RETURNS TABLE (status text, jid text, subid text, state text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    RETURN QUERY SELECT c.status, NULL::text, NULL::text, NULL::text;
    IF c.status = 'ok' THEN
        RETURN QUERY SELECT NULL::text, s.jid, s.subid, s.state FROM pubsub.subscription s
            WHERE s.node_id = c.node_id ORDER BY s.sub_id LIMIT p_limit;
    END IF;
END
$$;

-- Sets subscription states ('subscribed' or 'none') for a list of JIDs,
-- all or nothing.  status: ok, item-not-found, forbidden, bad-state.
CREATE FUNCTION pubsub.modify_subscriptions(p_name text, p_requester text,
                                            p_jids text, p_states text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_jids text[] := string_to_array(p_jids, E'\n');
    v_states text[] := string_to_array(p_states, E'\n');
    v_last bigint;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    IF c.status <> 'ok' THEN
        RETURN c.status;
    END IF;
    SELECT last_seq INTO v_last FROM pubsub.node WHERE node_id = c.node_id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(v_jids, 1), 0) LOOP
        IF v_states[i] = 'none' THEN
            DELETE FROM pubsub.subscription WHERE node_id = c.node_id AND jid = v_jids[i];
        ELSIF v_states[i] = 'subscribed' THEN
            IF pubsub.affiliation_of(c.node_id, split_part(v_jids[i], '/', 1)) = 'outcast' THEN
                RETURN 'bad-state';
            END IF;
            INSERT INTO pubsub.subscription (node_id, jid, subid, start_seq, state)
            VALUES (c.node_id, v_jids[i], replace(gen_random_uuid()::text, '-', ''), v_last,
                    'subscribed')
            ON CONFLICT (node_id, jid) DO UPDATE SET state = 'subscribed';
        ELSE
            RETURN 'bad-state';
        END IF;
    END LOOP;
    RETURN 'ok';
END
$$;

-- All affiliations of a node, for its owner.  First row: the status.
CREATE FUNCTION pubsub.node_affiliations(p_name text, p_requester text, p_limit integer)
RETURNS TABLE (status text, jid text, affiliation text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    RETURN QUERY SELECT c.status, NULL::text, NULL::text;
    IF c.status = 'ok' THEN
        RETURN QUERY SELECT NULL::text, a.jid, a.affiliation FROM pubsub.affiliation a
            WHERE a.node_id = c.node_id ORDER BY a.jid LIMIT p_limit;
    END IF;
END
$$;

-- Sets affiliations (bare JIDs) all or nothing; 'none' removes one.
-- An outcast loses its subscriptions.  The node keeps at least one owner.
-- status: ok, item-not-found, forbidden, last-owner.
CREATE FUNCTION pubsub.modify_affiliations(p_name text, p_requester text,
                                           p_jids text, p_affiliations text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_jids text[] := string_to_array(p_jids, E'\n');
    v_affs text[] := string_to_array(p_affiliations, E'\n');
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    IF c.status <> 'ok' THEN
        RETURN c.status;
    END IF;
    PERFORM 1 FROM pubsub.node WHERE node_id = c.node_id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(v_jids, 1), 0) LOOP
        IF v_affs[i] = 'none' THEN
            DELETE FROM pubsub.affiliation WHERE node_id = c.node_id AND jid = v_jids[i];
        ELSE
            INSERT INTO pubsub.affiliation (node_id, jid, affiliation)
            VALUES (c.node_id, v_jids[i], v_affs[i])
            ON CONFLICT (node_id, jid) DO UPDATE SET affiliation = excluded.affiliation;
            IF v_affs[i] = 'outcast' THEN
                DELETE FROM pubsub.subscription
                WHERE node_id = c.node_id AND split_part(jid, '/', 1) = v_jids[i];
            END IF;
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pubsub.affiliation
                   WHERE node_id = c.node_id AND affiliation = 'owner') THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'last-owner';
    END IF;
    RETURN 'ok';
EXCEPTION WHEN raise_exception THEN
    IF SQLERRM = 'last-owner' THEN
        RETURN 'last-owner'; -- the block's changes are rolled back
    END IF;
    RAISE;
END
$$;

-- The requester's own subscriptions (bare JID and its full JIDs).
CREATE FUNCTION pubsub.own_subscriptions(p_requester text, p_node text, p_limit integer)
RETURNS TABLE (node text, jid text, subid text, state text)
LANGUAGE sql STABLE AS $$
    SELECT n.name, s.jid, s.subid, s.state
    FROM pubsub.subscription s JOIN pubsub.node n ON n.node_id = s.node_id
    WHERE split_part(s.jid, '/', 1) = p_requester AND NOT n.deleted
      AND (p_node IS NULL OR n.name = p_node)
    ORDER BY n.name, s.sub_id LIMIT p_limit
$$;

-- The requester's own affiliations.
CREATE FUNCTION pubsub.own_affiliations(p_requester text, p_node text, p_limit integer)
RETURNS TABLE (node text, affiliation text)
LANGUAGE sql STABLE AS $$
    SELECT n.name, a.affiliation
    FROM pubsub.affiliation a JOIN pubsub.node n ON n.node_id = a.node_id
    WHERE a.jid = p_requester AND NOT n.deleted AND (p_node IS NULL OR n.name = p_node)
    ORDER BY n.name LIMIT p_limit
$$;

CREATE INDEX subscription_bare_jid ON pubsub.subscription (split_part(jid, '/', 1));
CREATE INDEX affiliation_jid ON pubsub.affiliation (jid);
