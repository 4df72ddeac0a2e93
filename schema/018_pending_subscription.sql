-- 018_pending_subscription.sql: a repeated request while a
-- subscription is pending is refused with pending-subscription (XEP-0060
-- §6.1.3.7); a pending entity that has since become owner, publisher or
-- member is subscribed by a repeated request.  Body otherwise as in 016.

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
    v_existing boolean;
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
    SELECT nd.last_seq INTO v_last FROM pubsub.node nd WHERE nd.node_id = n.node_id FOR UPDATE;
    SELECT s.subid, s.state, s.sub_id INTO subid, state, sub_id FROM pubsub.subscription s
    WHERE s.node_id = n.node_id AND s.jid = p_jid;
    v_existing := FOUND;
    IF v_existing AND state = 'pending' THEN
        IF v_pending THEN
            -- §6.1.3.7: a pending request is not repeated.
            status := 'pending-subscription';
            subid := NULL; state := NULL;
            RETURN;
        END IF;
        -- The entity has since been given an affiliation that
        -- subscribes without approval (§6.1.4).
        UPDATE pubsub.subscription s SET state = 'subscribed', start_seq = v_last,
            start_gseq = pubsub.current_gseq()
        WHERE s.sub_id = subscribe.sub_id;
        state := 'subscribed';
    END IF;
    IF NOT v_existing AND (SELECT count(*) FROM pubsub.subscription s
                      WHERE split_part(s.jid, '/', 1) = split_part(p_jid, '/', 1))
                     >= coalesce(nullif(current_setting('pubsub.max_subscriptions_per_jid', true),
                                        '')::bigint, 9223372036854775807) THEN
        status := 'too-many-subscriptions';
        RETURN;
    END IF;
    IF NOT v_existing THEN
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

