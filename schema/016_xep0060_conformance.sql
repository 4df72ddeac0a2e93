-- 016_xep0060_conformance.sql: requirements of XEP-0060 that
-- tests/integration/check_xep0060.c (TCase xep_conformance) checks:
--   §8.2.5.3  configuration notifications carry the form (full payloads);
--   §4.1      publish-only may neither subscribe nor retrieve items;
--   §6.5.9.5, §7.2.3.5  a node that does not persist items answers
--             retrieval and retraction with 'not-persistent' (pubsubd maps
--             it to feature-not-implemented + unsupported persistent-items);
--   §8.9.2.4  an affiliation entry that would leave no owner fails alone
--             and is returned with its existing affiliation.
-- Bodies otherwise as in 011, 012, 013 and 002.

-- The node configuration as an XEP-0004 result form: the payload of a
-- configuration notification when the node delivers payloads (§8.2.5.3).
CREATE FUNCTION pubsub.config_form(c pubsub.node_config)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT '<x xmlns=''jabber:x:data'' type=''result''><field var=''FORM_TYPE'' '
           'type=''hidden''><value>http://jabber.org/protocol/pubsub#node_config</value></field>'
           || string_agg(format('<field var=''pubsub#%s''>%s</field>',
                                CASE j.key WHEN 'payload_type' THEN 'type' ELSE j.key END,
                                xmlelement(name value, j.value)::text), '' ORDER BY j.key)
           || '</x>'
    FROM jsonb_each_text(pubsub.config_json(c)) j
$$;

CREATE OR REPLACE FUNCTION pubsub.configure_node_config(p_name text, p_requester text, p_changes jsonb,
                                      OUT status text, OUT node_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    c pubsub.node_config;
    v_seq bigint;
BEGIN
    SELECT n.node_id INTO node_id FROM pubsub.node n WHERE n.name = p_name AND NOT n.deleted
    FOR UPDATE;
    IF node_id IS NULL THEN
        status := 'item-not-found';
        RETURN;
    END IF;
    IF pubsub.affiliation_of(node_id, p_requester) <> 'owner' THEN
        status := 'forbidden';
        RETURN;
    END IF;
    SELECT * INTO c FROM pubsub.node_config nc WHERE nc.node_id = configure_node_config.node_id;
    c := jsonb_populate_record(c, p_changes - 'node_id');
    DELETE FROM pubsub.node_config nc WHERE nc.node_id = configure_node_config.node_id;
    INSERT INTO pubsub.node_config SELECT (c).*;
    -- max_items lowered: trim now.
    IF (SELECT item_count FROM pubsub.node n WHERE n.node_id = configure_node_config.node_id) > c.max_items
       OR NOT c.persist_items THEN
        DELETE FROM pubsub.item i WHERE i.node_id = configure_node_config.node_id AND i.seq IN
            (SELECT i2.seq FROM pubsub.item i2 WHERE i2.node_id = configure_node_config.node_id
             ORDER BY i2.seq DESC OFFSET CASE WHEN c.persist_items THEN c.max_items ELSE 0 END);
        UPDATE pubsub.node n SET item_count =
            (SELECT count(*) FROM pubsub.item i WHERE i.node_id = configure_node_config.node_id)
        WHERE n.node_id = configure_node_config.node_id;
    END IF;
    IF c.notify_config THEN
        UPDATE pubsub.node n SET last_seq = last_seq + 1 WHERE n.node_id = configure_node_config.node_id
        RETURNING last_seq INTO v_seq;
        INSERT INTO pubsub.event (node_id, seq, kind, payload)
        VALUES (configure_node_config.node_id, v_seq, 'config',
                CASE WHEN c.deliver_payloads THEN pubsub.config_form(c) END);
        PERFORM pg_notify('pubsub_wakeup', configure_node_config.node_id::text);
    END IF;
    status := 'ok';
END
$$;

CREATE OR REPLACE FUNCTION pubsub.read_access(p_node_id bigint, p_access_model text, p_requester text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_aff text := pubsub.affiliation_of(p_node_id, p_requester);
BEGIN
    IF v_aff IN ('outcast', 'publish-only') THEN
        RETURN 'forbidden';
    END IF;
    IF p_access_model = 'open' OR v_aff IN ('owner', 'publisher', 'member') THEN
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
    IF NOT n.persist_items THEN
        RETURN QUERY SELECT 'not-persistent'::text, NULL::text, NULL::text, NULL::text, NULL::bigint;
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
    IF NOT n.persist_items THEN
        RETURN QUERY SELECT 'not-persistent'::text, NULL::text, NULL::text, NULL::text,
                            NULL::bigint, NULL::bigint;
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

CREATE OR REPLACE FUNCTION pubsub.retract(p_node text, p_item_id text, p_requester text,
                               p_notify boolean)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n record;
    v_aff text;
    v_publisher text;
    v_seq bigint;
BEGIN
    SELECT c.* INTO n FROM pubsub.node nd JOIN pubsub.node_config c USING (node_id)
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        RETURN 'item-not-found';
    END IF;
    v_aff := pubsub.affiliation_of(n.node_id, p_requester);
    IF v_aff NOT IN ('owner', 'publisher', 'publish-only') THEN
        RETURN 'forbidden';
    END IF;
    IF NOT n.persist_items THEN
        RETURN 'not-persistent';
    END IF;
    -- Lock the node first: retractions take their seq like publishes do.
    PERFORM 1 FROM pubsub.node WHERE node_id = n.node_id FOR UPDATE;
    SELECT publisher INTO v_publisher FROM pubsub.item
    WHERE node_id = n.node_id AND item_id = p_item_id;
    IF NOT FOUND THEN
        RETURN 'no-item';
    END IF;
    IF v_aff = 'publish-only' AND v_publisher <> p_requester THEN
        RETURN 'forbidden';
    END IF;
    DELETE FROM pubsub.item WHERE node_id = n.node_id AND item_id = p_item_id;
    IF p_notify OR n.notify_retract THEN
        UPDATE pubsub.node SET last_seq = last_seq + 1, item_count = item_count - 1
        WHERE node_id = n.node_id RETURNING last_seq INTO v_seq;
        INSERT INTO pubsub.event (node_id, seq, kind, item_id) VALUES (n.node_id, v_seq, 'retract', p_item_id);
        PERFORM pg_notify('pubsub_wakeup', n.node_id::text);
    ELSE
        UPDATE pubsub.node SET item_count = item_count - 1 WHERE node_id = n.node_id;
    END IF;
    RETURN 'ok';
END
$$;

DROP FUNCTION pubsub.modify_affiliations(text, text, text, text);
CREATE FUNCTION pubsub.modify_affiliations(p_name text, p_requester text,
                                           p_jids text, p_affiliations text)
RETURNS TABLE (status text, jid text, affiliation text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    c record;
    v_jids text[] := string_to_array(p_jids, E'\n');
    v_affs text[] := string_to_array(p_affiliations, E'\n');
    v_n integer := coalesce(array_length(v_jids, 1), 0);
    v_block boolean;
    v_old text;
    v_failed text[] := '{}';
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    IF c.status <> 'ok' THEN
        RETURN QUERY SELECT c.status, NULL::text, NULL::text;
        RETURN;
    END IF;
    PERFORM 1 FROM pubsub.node n WHERE n.node_id = c.node_id FOR UPDATE;
    -- No owner left afterwards: no owner outside the request, none named.
    v_block := NOT EXISTS (SELECT 1 FROM pubsub.affiliation a
                           WHERE a.node_id = c.node_id AND a.affiliation = 'owner'
                             AND NOT (a.jid = ANY (v_jids)))
               AND NOT ('owner' = ANY (v_affs));
    FOR i IN 1 .. v_n LOOP
        v_old := pubsub.affiliation_of(c.node_id, v_jids[i]);
        IF v_block AND v_old = 'owner' THEN
            v_failed := v_failed || v_jids[i];
            CONTINUE;
        END IF;
        IF v_affs[i] = 'none' THEN
            DELETE FROM pubsub.affiliation a WHERE a.node_id = c.node_id AND a.jid = v_jids[i];
        ELSE
            INSERT INTO pubsub.affiliation AS a (node_id, jid, affiliation)
            VALUES (c.node_id, v_jids[i], v_affs[i])
            ON CONFLICT (node_id, jid) DO UPDATE SET affiliation = excluded.affiliation;
            IF v_affs[i] = 'outcast' THEN
                DELETE FROM pubsub.subscription s
                WHERE s.node_id = c.node_id AND split_part(s.jid, '/', 1) = v_jids[i];
            END IF;
        END IF;
    END LOOP;
    IF cardinality(v_failed) > 0 THEN
        RETURN QUERY SELECT 'last-owner'::text, NULL::text, NULL::text;
        RETURN QUERY SELECT NULL::text, f, 'owner'::text FROM unnest(v_failed) f;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text;
END
$$;
