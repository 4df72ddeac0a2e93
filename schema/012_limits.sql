-- 012_limits.sql: per-entity limits.  pubsubd sets them for its sessions
-- (SET pubsub.max_nodes_per_owner, pubsub.max_subscriptions_per_jid from
-- its configuration); a session that sets nothing (the SQL API) has no
-- limit.  The counts are read without locks: concurrent requests may pass
-- a limit by a few, never by more than the requests in flight.

CREATE OR REPLACE FUNCTION pubsub.create_node(p_name text, p_owner text, p_config jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_status text;
BEGIN
    IF (SELECT count(*) FROM pubsub.affiliation a
        WHERE a.jid = p_owner AND a.affiliation = 'owner')
       >= coalesce(nullif(current_setting('pubsub.max_nodes_per_owner', true), '')::bigint,
                   9223372036854775807) THEN
        RETURN 'max-nodes-exceeded';
    END IF;
    INSERT INTO pubsub.node (name, creator) VALUES (p_name, p_owner)
    ON CONFLICT (name) WHERE NOT deleted DO NOTHING
    RETURNING node_id INTO v_id;
    IF v_id IS NULL THEN
        RETURN 'conflict';
    END IF;
    INSERT INTO pubsub.node_config
    SELECT * FROM jsonb_populate_record(NULL::pubsub.node_config,
                                        p_config || jsonb_build_object('node_id', v_id));
    INSERT INTO pubsub.affiliation (node_id, jid, affiliation) VALUES (v_id, p_owner, 'owner');
    INSERT INTO pubsub.dispatch (node_id) VALUES (v_id);
    v_status := pubsub.set_node_graph(v_id, p_config, true);
    IF v_status <> 'ok' THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = v_status;
    END IF;
    RETURN 'ok';
EXCEPTION WHEN raise_exception THEN
    IF SQLERRM IN ('parent-not-found', 'parent-not-collection', 'cycle', 'kind-change') THEN
        RETURN SQLERRM; -- the creation is rolled back
    END IF;
    RAISE;
END
$$;

CREATE OR REPLACE FUNCTION pubsub.subscribe(p_node text, p_jid text, p_requester text, p_opts jsonb,
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
    IF NOT FOUND AND (SELECT count(*) FROM pubsub.subscription s
                      WHERE split_part(s.jid, '/', 1) = split_part(p_jid, '/', 1))
                     >= coalesce(nullif(current_setting('pubsub.max_subscriptions_per_jid', true),
                                        '')::bigint, 9223372036854775807) THEN
        status := 'too-many-subscriptions';
        RETURN;
    END IF;
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
