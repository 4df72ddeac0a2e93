-- 025_multi_subscribe.sql: several subscriptions per (node, JID), told
-- apart by their SubIDs (XEP-0060 §6.1.7, "multi-subscribe").
--
-- The rule (docs/protocol.md): subscribing again WITHOUT options returns
-- the JID's existing subscription (so clients that re-subscribe at every
-- login do not pile up subscriptions); subscribing WITH options
-- (subscribe-and-configure, §6.3.7) returns an existing subscription with
-- exactly those options, or creates a new one with a new SubID.
-- Requests about one subscription (unsubscribe, options) name it by SubID
-- when the JID has several: bad-request + subid-required without one,
-- not-acceptable + invalid-subid with a wrong one.
--
-- The dispatcher still sends one notification per JID (§6.1.7), listing
-- the SubIDs that produced it in SHIM headers.

ALTER TABLE pubsub.subscription DROP CONSTRAINT subscription_node_id_jid_key;
CREATE INDEX subscription_node_jid ON pubsub.subscription (node_id, jid, sub_id);
-- The dispatcher pages through a node's subscriptions in sub_id order: a
-- page reads its rows only, however many the node has.
CREATE INDEX subscription_node_sub ON pubsub.subscription (node_id, sub_id);

-- The options a subscribe-and-configure request asks for: the defaults
-- (§6.4) overridden by p_opts.  ok is false when p_opts holds an invalid
-- value (an unparsable expiry).
CREATE FUNCTION pubsub.requested_sub_options(p_opts jsonb, OUT ok boolean,
    OUT deliver boolean, OUT include_body boolean, OUT expires_at timestamptz,
    OUT sub_type text, OUT sub_depth integer)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    ok := true;
    deliver := coalesce((p_opts->>'deliver')::boolean, true);
    include_body := coalesce((p_opts->>'include_body')::boolean, false);
    sub_type := coalesce(p_opts->>'subscription_type', 'items');
    sub_depth := coalesce((p_opts->>'subscription_depth')::integer, 1);
    IF coalesce(p_opts->>'expire', '') <> '' THEN
        BEGIN
            expires_at := (p_opts->>'expire')::timestamptz;
        EXCEPTION WHEN others THEN
            ok := false;
        END;
    END IF;
END
$$;

-- The subscription of (p_node_id, p_jid) that a request names: by SubID,
-- or the only one.  status: ok, not-subscribed, invalid-subid or
-- subid-required.
CREATE FUNCTION pubsub.pick_subscription(p_node_id bigint, p_jid text, p_subid text,
    OUT status text, OUT sub_id bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_count bigint;
BEGIN
    SELECT count(*), min(s.sub_id) FILTER (WHERE p_subid IS NULL OR s.subid = p_subid)
    INTO v_count, sub_id
    FROM pubsub.subscription s WHERE s.node_id = p_node_id AND s.jid = p_jid;
    IF v_count = 0 THEN
        status := 'not-subscribed';
    ELSIF p_subid IS NOT NULL THEN
        status := CASE WHEN sub_id IS NULL THEN 'invalid-subid' ELSE 'ok' END;
    ELSIF v_count > 1 THEN
        status := 'subid-required';
        sub_id := NULL;
    ELSE
        status := 'ok';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pubsub.subscribe(p_node text, p_jid text, p_requester text,
    p_opts jsonb, OUT status text, OUT subid text, OUT state text, OUT node_id bigint,
    OUT sub_id bigint, OUT last_seq bigint, OUT last_item_id text, OUT last_payload text,
    OUT owners text)
LANGUAGE plpgsql AS $$
DECLARE
    n pubsub.node_config;
    o record;
    v_aff text;
    v_last bigint;
    v_pending boolean;
    v_count bigint;
    v_has_pending boolean;
BEGIN
    SELECT c.* INTO n FROM pubsub.node nd JOIN pubsub.node_config c ON c.node_id = nd.node_id
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        status := 'item-not-found';
        RETURN;
    END IF;
    node_id := n.node_id;
    v_aff := pubsub.affiliation_of(n.node_id, p_requester);
    IF v_aff IN ('outcast', 'publish-only') THEN
        status := 'forbidden';
        RETURN;
    END IF;
    IF n.access_model = 'whitelist'
       AND v_aff NOT IN ('owner', 'publisher', 'member') THEN
        status := 'closed-node';
        RETURN;
    END IF;
    v_pending := n.access_model = 'authorize'
                 AND v_aff NOT IN ('owner', 'publisher', 'member');
    SELECT o2.* INTO o FROM pubsub.requested_sub_options(p_opts) o2;
    IF p_opts IS NOT NULL AND NOT o.ok THEN
        status := 'invalid-options';
        RETURN;
    END IF;
    SELECT nd.last_seq INTO v_last FROM pubsub.node nd WHERE nd.node_id = n.node_id FOR UPDATE;
    SELECT count(*), coalesce(bool_or(s.state = 'pending'), false) INTO v_count, v_has_pending
    FROM pubsub.subscription s WHERE s.node_id = n.node_id AND s.jid = p_jid;
    IF v_has_pending THEN
        IF v_pending THEN
            -- §6.1.3.7: a pending request is not repeated.
            status := 'pending-subscription';
            RETURN;
        END IF;
        -- The entity has since been given an affiliation that subscribes
        -- without approval (§6.1.4).
        UPDATE pubsub.subscription s SET state = 'subscribed', start_seq = v_last,
            start_gseq = pubsub.current_gseq()
        WHERE s.node_id = n.node_id AND s.jid = p_jid AND s.state = 'pending';
    END IF;
    IF v_count > 0 THEN
        -- The existing subscription: the first one when no options are
        -- given, else the one with exactly the requested options.
        SELECT s.subid, s.state, s.sub_id INTO subid, state, sub_id
        FROM pubsub.subscription s
        WHERE s.node_id = n.node_id AND s.jid = p_jid
          AND (p_opts IS NULL
               OR (s.deliver = o.deliver AND s.include_body = o.include_body
                   AND s.expires_at IS NOT DISTINCT FROM o.expires_at
                   AND s.sub_type = o.sub_type AND s.sub_depth = o.sub_depth))
        ORDER BY s.sub_id LIMIT 1;
    END IF;
    IF sub_id IS NULL THEN
        IF (SELECT count(*) FROM pubsub.subscription s
            WHERE split_part(s.jid, '/', 1) = split_part(p_jid, '/', 1))
           >= coalesce(nullif(current_setting('pubsub.max_subscriptions_per_jid', true),
                              '')::bigint, 9223372036854775807) THEN
            status := 'too-many-subscriptions';
            RETURN;
        END IF;
        INSERT INTO pubsub.subscription AS s (node_id, jid, subid, start_seq, state, deliver,
            include_body, expires_at, sub_type, sub_depth)
        VALUES (n.node_id, p_jid, replace(gen_random_uuid()::text, '-', ''), v_last,
                CASE WHEN v_pending THEN 'pending' ELSE 'subscribed' END,
                o.deliver, o.include_body, o.expires_at, o.sub_type, o.sub_depth)
        RETURNING s.subid, s.state, s.sub_id INTO subid, state, sub_id;
        IF v_pending THEN
            SELECT string_agg(a.jid, E'\n' ORDER BY a.jid) INTO owners FROM pubsub.affiliation a
            WHERE a.node_id = n.node_id AND a.affiliation = 'owner';
        END IF;
    END IF;
    IF state = 'subscribed' AND n.send_last_published_item <> 'never' THEN
        SELECT i.seq, i.item_id, i.payload INTO last_seq, last_item_id, last_payload
        FROM pubsub.item i WHERE i.node_id = n.node_id ORDER BY i.seq DESC LIMIT 1;
    END IF;
    status := 'ok';
END
$$;

CREATE OR REPLACE FUNCTION pubsub.unsubscribe(p_node text, p_jid text, p_subid text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    p record;
BEGIN
    SELECT node_id INTO v_id FROM pubsub.node WHERE name = p_node AND NOT deleted;
    IF v_id IS NULL THEN
        RETURN 'item-not-found';
    END IF;
    SELECT * INTO p FROM pubsub.pick_subscription(v_id, p_jid, p_subid);
    IF p.status = 'ok' THEN
        DELETE FROM pubsub.subscription WHERE sub_id = p.sub_id;
    END IF;
    RETURN p.status;
END
$$;

-- Options of one subscription (§6.3), now with its collection depth.
DROP FUNCTION pubsub.get_sub_options(text, text, text, text);
CREATE FUNCTION pubsub.get_sub_options(p_node text, p_jid text, p_requester text,
    p_subid text, OUT status text, OUT deliver boolean, OUT include_body boolean,
    OUT expire text, OUT depth text, OUT subid text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_node bigint;
    p record;
    s record;
BEGIN
    SELECT n.node_id INTO v_node FROM pubsub.node n WHERE n.name = p_node AND NOT n.deleted;
    IF v_node IS NULL THEN
        status := 'item-not-found';
        RETURN;
    END IF;
    IF split_part(p_jid, '/', 1) <> p_requester
       AND pubsub.affiliation_of(v_node, p_requester) <> 'owner' THEN
        status := 'forbidden';
        RETURN;
    END IF;
    SELECT * INTO p FROM pubsub.pick_subscription(v_node, p_jid, p_subid);
    status := p.status;
    IF p.status <> 'ok' THEN
        RETURN;
    END IF;
    SELECT * INTO s FROM pubsub.subscription x WHERE x.sub_id = p.sub_id;
    deliver := s.deliver;
    include_body := s.include_body;
    expire := coalesce(to_char(s.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), '');
    depth := CASE WHEN s.sub_depth >= 1000 THEN 'all' ELSE s.sub_depth::text END;
    subid := s.subid;
END
$$;

CREATE OR REPLACE FUNCTION pubsub.set_sub_options(p_node text, p_jid text, p_requester text,
    p_subid text, p_opts jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_node bigint;
    p record;
BEGIN
    SELECT n.node_id INTO v_node FROM pubsub.node n WHERE n.name = p_node AND NOT n.deleted;
    IF v_node IS NULL THEN
        RETURN 'item-not-found';
    END IF;
    IF split_part(p_jid, '/', 1) <> p_requester
       AND pubsub.affiliation_of(v_node, p_requester) <> 'owner' THEN
        RETURN 'forbidden';
    END IF;
    SELECT * INTO p FROM pubsub.pick_subscription(v_node, p_jid, p_subid);
    IF p.status <> 'ok' THEN
        RETURN p.status;
    END IF;
    IF NOT pubsub.apply_sub_options(p.sub_id, p_opts) THEN
        RETURN 'invalid-options';
    END IF;
    RETURN 'ok';
END
$$;

-- Owner management (§8.8.2) with optional SubIDs (p_subids: one line per
-- entry, empty when the entry has none).  An entry without a SubID
-- applies to every subscription of its JID; one with a SubID to that
-- subscription only (invalid-subid when the JID has no such SubID).
DROP FUNCTION pubsub.modify_subscriptions(text, text, text, text);
CREATE FUNCTION pubsub.modify_subscriptions(p_name text, p_requester text, p_jids text,
    p_states text, p_subids text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_jids text[] := string_to_array(p_jids, E'\n');
    v_states text[] := string_to_array(p_states, E'\n');
    v_subids text[] := string_to_array(p_subids, E'\n');
    v_subid text;
    v_last bigint;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    IF c.status <> 'ok' THEN
        RETURN c.status;
    END IF;
    SELECT last_seq INTO v_last FROM pubsub.node WHERE node_id = c.node_id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(v_jids, 1), 0) LOOP
        v_subid := nullif(v_subids[i], '');
        IF v_subid IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM pubsub.subscription s
                WHERE s.node_id = c.node_id AND s.jid = v_jids[i] AND s.subid = v_subid) THEN
            RETURN 'invalid-subid';
        END IF;
        IF v_states[i] = 'none' THEN
            DELETE FROM pubsub.subscription s WHERE s.node_id = c.node_id AND s.jid = v_jids[i]
                AND (v_subid IS NULL OR s.subid = v_subid);
        ELSIF v_states[i] = 'subscribed' THEN
            IF pubsub.affiliation_of(c.node_id, split_part(v_jids[i], '/', 1)) = 'outcast' THEN
                RETURN 'bad-state';
            END IF;
            UPDATE pubsub.subscription s SET state = 'subscribed', start_seq = v_last,
                start_gseq = pubsub.current_gseq()
            WHERE s.node_id = c.node_id AND s.jid = v_jids[i] AND s.state = 'pending'
              AND (v_subid IS NULL OR s.subid = v_subid);
            IF NOT EXISTS (SELECT 1 FROM pubsub.subscription s
                           WHERE s.node_id = c.node_id AND s.jid = v_jids[i]) THEN
                INSERT INTO pubsub.subscription (node_id, jid, subid, start_seq, state)
                VALUES (c.node_id, v_jids[i], replace(gen_random_uuid()::text, '-', ''), v_last,
                        'subscribed');
            END IF;
        ELSE
            RETURN 'bad-state';
        END IF;
    END LOOP;
    RETURN 'ok';
END
$$;

-- A leaf's audience through collections (XEP-0248), one row per JID
-- (its subscription to the leaf first).  When the JID has several
-- subscriptions, subids lists them all for per-event eligibility:
-- "L<start_seq>:<subid>" for the leaf's own, "G<start_gseq>:<subid>" for
-- a collection's; the letter is upper case for the subscriptions to the
-- node the notification is attributed to when the JID has more than one
-- there (their SubIDs go into SHIM headers, §12 "impl-shim"), lower case
-- otherwise.
DROP FUNCTION pubsub.dispatch_audience(bigint, bigint, integer);
CREATE FUNCTION pubsub.dispatch_audience(p_node_id bigint, p_cursor bigint, p_limit integer)
RETURNS TABLE(sub_id bigint, jid text, start_seq bigint, subid text, include_body boolean,
              via text, start_gseq bigint, subids text)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE anc(node_id, depth) AS (
        SELECT n.parent_id, 1 FROM pubsub.node n
        WHERE n.node_id = p_node_id AND n.parent_id IS NOT NULL
        UNION ALL
        SELECT n.parent_id, a.depth + 1 FROM anc a JOIN pubsub.node n ON n.node_id = a.node_id
        WHERE n.parent_id IS NOT NULL AND a.depth < 1000),
    candidates AS (
        SELECT s.sub_id, NULL::text AS via
        FROM pubsub.subscription s
        WHERE s.node_id = p_node_id
        UNION ALL
        SELECT s.sub_id, c.name
        FROM anc a JOIN pubsub.subscription s ON s.node_id = a.node_id
        JOIN pubsub.node c ON c.node_id = a.node_id
        WHERE s.sub_type IN ('items', 'all') AND s.sub_depth >= a.depth),
    eligible AS (
        SELECT s.sub_id, s.jid, s.start_seq, s.subid, s.include_body, e.via, s.start_gseq,
               s.node_id,
               count(*) OVER (PARTITION BY s.jid) AS n,
               count(*) OVER (PARTITION BY s.jid, s.node_id) AS n_same,
               bool_or(s.include_body) OVER (PARTITION BY s.jid) AS any_body,
               first_value(s.node_id) OVER first AS rep_node,
               row_number() OVER first AS rn
        FROM candidates e JOIN pubsub.subscription s ON s.sub_id = e.sub_id
        WHERE s.state = 'subscribed' AND s.deliver
          AND (s.expires_at IS NULL OR s.expires_at > now())
        WINDOW first AS (PARTITION BY s.jid ORDER BY (e.via IS NOT NULL), s.sub_id)),
    listed AS (
        SELECT e.*, string_agg(
                   CASE WHEN e.node_id = e.rep_node AND e.n_same > 1
                        THEN CASE WHEN e.via IS NULL THEN 'L' ELSE 'G' END
                        ELSE CASE WHEN e.via IS NULL THEN 'l' ELSE 'g' END END
                   || CASE WHEN e.via IS NULL THEN e.start_seq ELSE e.start_gseq END
                   || ':' || e.subid, ' ') OVER (PARTITION BY e.jid) AS entries
        FROM eligible e)
    SELECT l.sub_id, l.jid, l.start_seq, l.subid, l.any_body, l.via, l.start_gseq,
           CASE WHEN l.n > 1 THEN l.entries END
    FROM listed l WHERE l.rn = 1 AND l.sub_id > p_cursor ORDER BY l.sub_id LIMIT p_limit
$$;
