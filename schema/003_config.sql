-- 003_config.sql: the complete node configuration (XEP-0060 §8.2), purge and
-- configuration events, item expiry, publish-options preconditions.

ALTER TABLE pubsub.node_config
    ADD COLUMN notify_sub boolean NOT NULL DEFAULT false,
    ADD COLUMN send_last_published_item text NOT NULL DEFAULT 'never'
        CHECK (send_last_published_item IN ('never', 'on_sub', 'on_sub_and_presence')),
    ADD COLUMN item_expire bigint NOT NULL DEFAULT 0 CHECK (item_expire >= 0); -- seconds, 0: never

ALTER TABLE pubsub.event DROP CONSTRAINT event_kind_check;
ALTER TABLE pubsub.event ADD CONSTRAINT event_kind_check
    CHECK (kind IN ('publish', 'retract', 'delete', 'purge', 'config'));

-- Items that expire, oldest first, for the janitor.
ALTER TABLE pubsub.item ADD COLUMN expires_at timestamptz;
CREATE INDEX item_expiry ON pubsub.item (expires_at) WHERE expires_at IS NOT NULL;

-- The configuration of a node as JSON with typed values, to compare with
-- publish-options preconditions (containment: every precondition equal).
CREATE FUNCTION pubsub.config_json(c pubsub.node_config)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT to_jsonb(c) - 'node_id'
$$;

DROP FUNCTION pubsub.create_node(text, text, bigint, integer);

-- Creates a leaf node owned by p_owner with the complete configuration
-- p_config (every column, validated by pubsubd).  status: ok, conflict.
CREATE FUNCTION pubsub.create_node(p_name text, p_owner text, p_config jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
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
    RETURN 'ok';
END
$$;

-- Changes the configuration (only the keys present in p_changes).  When
-- notify_config is on (before or after), subscribers hear of it through
-- the outbox.  status: ok, item-not-found, forbidden.  Returns the node id
-- so the caller can wake the dispatcher.
CREATE FUNCTION pubsub.configure_node(p_name text, p_requester text, p_changes jsonb,
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
    SELECT * INTO c FROM pubsub.node_config nc WHERE nc.node_id = configure_node.node_id;
    c := jsonb_populate_record(c, p_changes - 'node_id');
    DELETE FROM pubsub.node_config nc WHERE nc.node_id = configure_node.node_id;
    INSERT INTO pubsub.node_config SELECT (c).*;
    -- max_items lowered: trim now.
    IF (SELECT item_count FROM pubsub.node n WHERE n.node_id = configure_node.node_id) > c.max_items
       OR NOT c.persist_items THEN
        DELETE FROM pubsub.item i WHERE i.node_id = configure_node.node_id AND i.seq IN
            (SELECT i2.seq FROM pubsub.item i2 WHERE i2.node_id = configure_node.node_id
             ORDER BY i2.seq DESC OFFSET CASE WHEN c.persist_items THEN c.max_items ELSE 0 END);
        UPDATE pubsub.node n SET item_count =
            (SELECT count(*) FROM pubsub.item i WHERE i.node_id = configure_node.node_id)
        WHERE n.node_id = configure_node.node_id;
    END IF;
    IF c.notify_config THEN
        UPDATE pubsub.node n SET last_seq = last_seq + 1 WHERE n.node_id = configure_node.node_id
        RETURNING last_seq INTO v_seq;
        INSERT INTO pubsub.event (node_id, seq, kind) VALUES (configure_node.node_id, v_seq, 'config');
        PERFORM pg_notify('pubsub_wakeup', configure_node.node_id::text);
    END IF;
    status := 'ok';
END
$$;

-- Purges every item (§8.5).  status: ok, item-not-found, forbidden,
-- not-persistent.
CREATE FUNCTION pubsub.purge_node(p_name text, p_requester text,
                                  OUT status text, OUT node_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_persist boolean;
    v_seq bigint;
BEGIN
    SELECT n.node_id, c.persist_items INTO node_id, v_persist
    FROM pubsub.node n JOIN pubsub.node_config c ON c.node_id = n.node_id
    WHERE n.name = p_name AND NOT n.deleted;
    IF node_id IS NULL THEN
        status := 'item-not-found';
        RETURN;
    END IF;
    IF pubsub.affiliation_of(node_id, p_requester) <> 'owner' THEN
        status := 'forbidden';
        RETURN;
    END IF;
    IF NOT v_persist THEN
        status := 'not-persistent';
        RETURN;
    END IF;
    UPDATE pubsub.node n SET last_seq = last_seq + 1, item_count = 0
    WHERE n.node_id = purge_node.node_id RETURNING last_seq INTO v_seq;
    DELETE FROM pubsub.item i WHERE i.node_id = purge_node.node_id;
    INSERT INTO pubsub.event (node_id, seq, kind) VALUES (purge_node.node_id, v_seq, 'purge');
    PERFORM pg_notify('pubsub_wakeup', purge_node.node_id::text);
    status := 'ok';
END
$$;

-- Removes expired items, at most p_limit per call (the janitor calls it
-- until it returns less than p_limit).  Expiry is silent: subscribers are
-- not notified.  Returns how many items were removed.
CREATE FUNCTION pubsub.expire_items(p_limit integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    WITH gone AS (
        DELETE FROM pubsub.item i
        WHERE (i.node_id, i.item_id) IN
            (SELECT e.node_id, e.item_id FROM pubsub.item e
             WHERE e.expires_at IS NOT NULL AND e.expires_at <= now()
             ORDER BY e.expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING i.node_id),
    per_node AS (SELECT g.node_id, count(*) AS n FROM gone g GROUP BY g.node_id),
    upd AS (UPDATE pubsub.node nd SET item_count = nd.item_count - p.n
            FROM per_node p WHERE nd.node_id = p.node_id RETURNING 1)
    SELECT coalesce(sum(p.n), 0)::integer INTO v_count FROM per_node p;
    RETURN v_count;
END
$$;

-- publish with preconditions (§7.1.5), payload type (pubsub#type: the
-- payload's namespace), notifications switch and item expiry.
DROP FUNCTION pubsub.publish(text, text, text, text);
DROP FUNCTION pubsub.publish_trusted(text, text, text, text);

-- Publishes one item.  Takes the node's next seq under the node row lock, so
-- seq order is commit order and readers never see a gap close later.
-- Returns (status, seq, node_id).  status: ok, item-not-found, forbidden,
-- payload-too-big, invalid-payload, precondition-not-met.  The payload is
-- trusted to be one well-formed element whose namespace is p_payload_ns:
-- pubsubd's parser checked it; applications call pubsub.publish().
CREATE FUNCTION pubsub.publish_trusted(p_node text, p_item_id text, p_payload text,
                                       p_publisher text, p_payload_ns text,
                                       p_preconditions jsonb,
                                       OUT status text, OUT seq bigint, OUT node_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n pubsub.node_config;
    v_aff text;
    v_inserted boolean;
    v_count bigint;
    v_expires timestamptz;
BEGIN
    SELECT c.* INTO n
    FROM pubsub.node nd JOIN pubsub.node_config c ON c.node_id = nd.node_id
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        status := 'item-not-found';
        RETURN;
    END IF;
    node_id := n.node_id;
    v_aff := pubsub.affiliation_of(n.node_id, p_publisher);
    IF v_aff = 'outcast'
       OR (n.publish_model = 'publishers' AND v_aff NOT IN ('owner', 'publisher', 'publish-only'))
       OR (n.publish_model = 'subscribers' AND v_aff NOT IN ('owner', 'publisher', 'publish-only')
           AND NOT EXISTS (SELECT 1 FROM pubsub.subscription s
                           WHERE s.node_id = n.node_id AND s.state = 'subscribed'
                             AND split_part(s.jid, '/', 1) = p_publisher))
    THEN
        status := 'forbidden';
        RETURN;
    END IF;
    IF p_preconditions IS NOT NULL AND NOT (pubsub.config_json(n) @> p_preconditions) THEN
        status := 'precondition-not-met';
        RETURN;
    END IF;
    IF p_payload IS NOT NULL AND octet_length(p_payload) > n.max_payload_size THEN
        status := 'payload-too-big';
        RETURN;
    END IF;
    IF n.payload_type <> '' AND p_payload IS NOT NULL
       AND p_payload_ns IS DISTINCT FROM n.payload_type THEN
        status := 'invalid-payload';
        RETURN;
    END IF;

    UPDATE pubsub.node nd SET last_seq = last_seq + 1 WHERE nd.node_id = n.node_id
    RETURNING last_seq INTO seq;

    IF n.persist_items AND n.max_items > 0 THEN
        v_expires := CASE WHEN n.item_expire > 0
                          THEN now() + make_interval(secs => n.item_expire) END;
        INSERT INTO pubsub.item AS i (node_id, item_id, seq, publisher, payload, expires_at)
        VALUES (n.node_id, p_item_id, seq, p_publisher, p_payload, v_expires)
        ON CONFLICT ON CONSTRAINT item_pkey DO UPDATE
            SET seq = excluded.seq, publisher = excluded.publisher,
                payload = excluded.payload, published_at = now(), expires_at = excluded.expires_at
        RETURNING (xmax = 0) INTO v_inserted;
        IF v_inserted THEN
            UPDATE pubsub.node nd SET item_count = item_count + 1
            WHERE nd.node_id = n.node_id RETURNING item_count INTO v_count;
            IF v_count > n.max_items THEN
                DELETE FROM pubsub.item i
                WHERE i.node_id = n.node_id AND i.seq IN
                    (SELECT i2.seq FROM pubsub.item i2 WHERE i2.node_id = n.node_id
                     ORDER BY i2.seq LIMIT v_count - n.max_items);
                UPDATE pubsub.node nd SET item_count = n.max_items WHERE nd.node_id = n.node_id;
            END IF;
        END IF;
    END IF;

    IF n.deliver_notifications THEN
        INSERT INTO pubsub.event (node_id, seq, kind, item_id, publisher, payload)
        VALUES (n.node_id, seq, 'publish', p_item_id, p_publisher, p_payload);
        PERFORM pg_notify('pubsub_wakeup', n.node_id::text);
    END IF;
    status := 'ok';
END
$$;

-- The SQL API for applications: publish inside your own transaction.
-- Same rights, seq, max_items and outbox as an XMPP publish; the payload
-- must be one well-formed XML element (status 'invalid-payload' if not).
-- p_item_id NULL: a random id is generated.  Returns (status, seq, item_id).
CREATE FUNCTION pubsub.publish(p_node text, p_item_id text, p_payload text,
                               p_publisher text,
                               OUT status text, OUT seq bigint, OUT item_id text)
LANGUAGE plpgsql AS $$
DECLARE
    v_node_id bigint;
    v_ns text;
BEGIN
    item_id := coalesce(p_item_id, replace(gen_random_uuid()::text, '-', ''));
    IF p_payload IS NULL OR NOT xml_is_well_formed_document(p_payload) THEN
        status := 'invalid-payload';
        RETURN;
    END IF;
    v_ns := (xpath('namespace-uri(/*)', p_payload::xml))[1]::text;
    SELECT t.status, t.seq, t.node_id INTO status, seq, v_node_id
    FROM pubsub.publish_trusted(p_node, item_id, p_payload, p_publisher,
                                coalesce(v_ns, ''), NULL) t;
END
$$;
