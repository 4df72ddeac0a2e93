-- 006_subscription_options.sql: subscription options (XEP-0060 §6.3:
-- deliver, expire, include_body), subscribe-and-configure (§6.3.7),
-- leased subscriptions, send_last_published_item on_sub, auto-create.

ALTER TABLE pubsub.subscription
    ADD COLUMN deliver boolean NOT NULL DEFAULT true,
    ADD COLUMN include_body boolean NOT NULL DEFAULT false,
    ADD COLUMN expires_at timestamptz;
CREATE INDEX subscription_expiry ON pubsub.subscription (expires_at) WHERE expires_at IS NOT NULL;

-- Applies options (a JSON object: deliver, include_body, expire) to one
-- subscription.  Returns false when a value does not parse.
CREATE FUNCTION pubsub.apply_sub_options(p_sub_id bigint, p_opts jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_expires timestamptz;
BEGIN
    IF p_opts ? 'expire' THEN
        BEGIN
            v_expires := CASE WHEN p_opts->>'expire' = '' THEN NULL
                              ELSE (p_opts->>'expire')::timestamptz END;
        EXCEPTION WHEN others THEN
            RETURN false;
        END;
    END IF;
    UPDATE pubsub.subscription s SET
        deliver = coalesce((p_opts->>'deliver')::boolean, s.deliver),
        include_body = coalesce((p_opts->>'include_body')::boolean, s.include_body),
        expires_at = CASE WHEN p_opts ? 'expire' THEN v_expires ELSE s.expires_at END
    WHERE s.sub_id = p_sub_id;
    RETURN true;
END
$$;

DROP FUNCTION pubsub.subscribe(text, text, text);

-- Subscribes p_jid (bare or full) on behalf of p_requester (bare JID),
-- with options p_opts (NULL: defaults).  The Binding starts after the
-- node's current seq, read under the node lock so that it is exact.
-- Returns the subscription and, when the node sends its last published
-- item on subscription, that item (last_*).
CREATE FUNCTION pubsub.subscribe(p_node text, p_jid text, p_requester text, p_opts jsonb,
                                 OUT status text, OUT subid text, OUT state text,
                                 OUT node_id bigint, OUT sub_id bigint,
                                 OUT last_seq bigint, OUT last_item_id text, OUT last_payload text)
LANGUAGE plpgsql AS $$
DECLARE
    n pubsub.node_config;
    v_aff text;
    v_last bigint;
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
    IF n.access_model <> 'open' AND v_aff NOT IN ('owner', 'publisher', 'publish-only', 'member') THEN
        status := 'closed-node';
        RETURN;
    END IF;
    SELECT nd.last_seq INTO v_last FROM pubsub.node nd WHERE nd.node_id = n.node_id FOR UPDATE;
    SELECT s.subid, s.state, s.sub_id INTO subid, state, sub_id FROM pubsub.subscription s
    WHERE s.node_id = n.node_id AND s.jid = p_jid;
    IF NOT FOUND THEN
        INSERT INTO pubsub.subscription AS s (node_id, jid, subid, start_seq)
        VALUES (n.node_id, p_jid, replace(gen_random_uuid()::text, '-', ''), v_last)
        RETURNING s.subid, s.state, s.sub_id INTO subid, state, sub_id;
    END IF;
    IF p_opts IS NOT NULL AND NOT pubsub.apply_sub_options(sub_id, p_opts) THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'invalid-options';
    END IF;
    IF n.send_last_published_item <> 'never' THEN
        SELECT i.seq, i.item_id, i.payload INTO last_seq, last_item_id, last_payload
        FROM pubsub.item i WHERE i.node_id = n.node_id ORDER BY i.seq DESC LIMIT 1;
    END IF;
    status := 'ok';
EXCEPTION WHEN raise_exception THEN
    IF SQLERRM = 'invalid-options' THEN
        status := 'invalid-options';
        subid := NULL; state := NULL;
        RETURN;
    END IF;
    RAISE;
END
$$;

-- A subscription's options (§6.3.2) for its subscriber.  status: ok,
-- item-not-found, forbidden (another entity's), not-subscribed,
-- invalid-subid.
CREATE FUNCTION pubsub.get_sub_options(p_node text, p_jid text, p_requester text, p_subid text,
                                       OUT status text, OUT deliver boolean,
                                       OUT include_body boolean, OUT expire text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_node bigint;
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
    SELECT * INTO s FROM pubsub.subscription x WHERE x.node_id = v_node AND x.jid = p_jid;
    IF NOT FOUND THEN
        status := 'not-subscribed';
        RETURN;
    END IF;
    IF p_subid IS NOT NULL AND p_subid <> s.subid THEN
        status := 'invalid-subid';
        RETURN;
    END IF;
    deliver := s.deliver;
    include_body := s.include_body;
    expire := coalesce(to_char(s.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), '');
    status := 'ok';
END
$$;

-- Sets a subscription's options (§6.3.5).  Statuses as get_sub_options,
-- plus invalid-options.
CREATE FUNCTION pubsub.set_sub_options(p_node text, p_jid text, p_requester text, p_subid text,
                                       p_opts jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_node bigint;
    s record;
BEGIN
    SELECT n.node_id INTO v_node FROM pubsub.node n WHERE n.name = p_node AND NOT n.deleted;
    IF v_node IS NULL THEN
        RETURN 'item-not-found';
    END IF;
    IF split_part(p_jid, '/', 1) <> p_requester
       AND pubsub.affiliation_of(v_node, p_requester) <> 'owner' THEN
        RETURN 'forbidden';
    END IF;
    SELECT * INTO s FROM pubsub.subscription x WHERE x.node_id = v_node AND x.jid = p_jid;
    IF NOT FOUND THEN
        RETURN 'not-subscribed';
    END IF;
    IF p_subid IS NOT NULL AND p_subid <> s.subid THEN
        RETURN 'invalid-subid';
    END IF;
    IF NOT pubsub.apply_sub_options(s.sub_id, p_opts) THEN
        RETURN 'invalid-options';
    END IF;
    RETURN 'ok';
END
$$;

-- Removes subscriptions whose lease (pubsub#expire) ran out.
CREATE FUNCTION pubsub.expire_subscriptions(p_limit integer)
RETURNS integer LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM pubsub.subscription s WHERE s.sub_id IN
            (SELECT x.sub_id FROM pubsub.subscription x
             WHERE x.expires_at IS NOT NULL AND x.expires_at <= now()
             ORDER BY x.expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

-- Publish with auto-create (§7.1.4): when p_create_config is given and the
-- node does not exist, it is created with that configuration and the
-- publisher as owner, in the same transaction.
CREATE FUNCTION pubsub.publish_auto(p_node text, p_item_id text, p_payload text,
                                    p_publisher text, p_payload_ns text,
                                    p_preconditions jsonb, p_create_config jsonb,
                                    OUT status text, OUT seq bigint, OUT node_id bigint)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_create_config IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pubsub.node n WHERE n.name = p_node AND NOT n.deleted) THEN
        -- 'conflict' here means someone created it concurrently: publish to it.
        PERFORM pubsub.create_node(p_node, p_publisher,
                                   p_create_config || coalesce(p_preconditions, '{}'));
    END IF;
    SELECT t.status, t.seq, t.node_id INTO status, seq, node_id
    FROM pubsub.publish_trusted(p_node, p_item_id, p_payload, p_publisher, p_payload_ns,
                                p_preconditions) t;
END
$$;
