-- 002_functions.sql: the SQL API.  Each XEP-0060 operation is one function
-- so that it costs one round trip and one transaction.  They return a
-- status word ('ok' or the XEP-0060 error it maps to) instead of raising,
-- so pubsubd can answer with the precise error.  Applications publish in
-- their own transactions with pubsub.publish() (docs/architecture.md).

CREATE FUNCTION pubsub.affiliation_of(p_node_id bigint, p_jid text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT affiliation FROM pubsub.affiliation
                     WHERE node_id = p_node_id AND jid = p_jid), 'none')
$$;

-- Creates a leaf node owned by p_owner (bare JID).
CREATE FUNCTION pubsub.create_node(p_name text, p_owner text,
                                   p_max_items bigint, p_max_payload_size integer)
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
    INSERT INTO pubsub.node_config (node_id, max_items, max_payload_size)
    VALUES (v_id, p_max_items, p_max_payload_size);
    INSERT INTO pubsub.affiliation (node_id, jid, affiliation) VALUES (v_id, p_owner, 'owner');
    INSERT INTO pubsub.dispatch (node_id) VALUES (v_id);
    RETURN 'ok';
END
$$;

-- Deletes a node: its items go at once, the node itself stays as a
-- tombstone until the dispatcher has delivered the delete notification.
CREATE FUNCTION pubsub.delete_node(p_name text, p_requester text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_seq bigint;
BEGIN
    SELECT node_id INTO v_id FROM pubsub.node WHERE name = p_name AND NOT deleted FOR UPDATE;
    IF v_id IS NULL THEN
        RETURN 'item-not-found';
    END IF;
    IF pubsub.affiliation_of(v_id, p_requester) <> 'owner' THEN
        RETURN 'forbidden';
    END IF;
    UPDATE pubsub.node SET deleted = true, last_seq = last_seq + 1, item_count = 0
    WHERE node_id = v_id RETURNING last_seq INTO v_seq;
    DELETE FROM pubsub.item WHERE node_id = v_id;
    DELETE FROM pubsub.affiliation WHERE node_id = v_id;
    INSERT INTO pubsub.event (node_id, seq, kind) VALUES (v_id, v_seq, 'delete');
    PERFORM pg_notify('pubsub_wakeup', v_id::text);
    RETURN 'ok';
END
$$;

-- Publishes one item.  Takes the node's next seq under the node row lock, so
-- seq order is commit order and readers never see a gap close later.
-- Returns (status, seq, node_id).  status: ok, item-not-found, forbidden,
-- payload-too-big.  The payload is trusted to be one well-formed element:
-- pubsubd's XML parser has checked it; applications call pubsub.publish().
CREATE FUNCTION pubsub.publish_trusted(p_node text, p_item_id text, p_payload text,
                               p_publisher text,
                               OUT status text, OUT seq bigint, OUT node_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n record;
    v_aff text;
    v_inserted boolean;
    v_count bigint;
BEGIN
    SELECT c.*, nd.deleted INTO n
    FROM pubsub.node nd JOIN pubsub.node_config c USING (node_id)
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
    IF p_payload IS NOT NULL AND octet_length(p_payload) > n.max_payload_size THEN
        status := 'payload-too-big';
        RETURN;
    END IF;

    UPDATE pubsub.node SET last_seq = last_seq + 1 WHERE pubsub.node.node_id = n.node_id
    RETURNING last_seq INTO seq;

    IF n.persist_items AND n.max_items > 0 THEN
        INSERT INTO pubsub.item AS i (node_id, item_id, seq, publisher, payload)
        VALUES (n.node_id, p_item_id, seq, p_publisher, p_payload)
        ON CONFLICT ON CONSTRAINT item_pkey DO UPDATE
            SET seq = excluded.seq, publisher = excluded.publisher,
                payload = excluded.payload, published_at = now()
        RETURNING (xmax = 0) INTO v_inserted;
        IF v_inserted THEN
            UPDATE pubsub.node SET item_count = item_count + 1
            WHERE pubsub.node.node_id = n.node_id RETURNING item_count INTO v_count;
            IF v_count > n.max_items THEN
                DELETE FROM pubsub.item i
                WHERE i.node_id = n.node_id AND i.seq IN
                    (SELECT i2.seq FROM pubsub.item i2 WHERE i2.node_id = n.node_id
                     ORDER BY i2.seq LIMIT v_count - n.max_items);
                UPDATE pubsub.node SET item_count = n.max_items
                WHERE pubsub.node.node_id = n.node_id;
            END IF;
        END IF;
    END IF;

    INSERT INTO pubsub.event (node_id, seq, kind, item_id, publisher, payload)
    VALUES (n.node_id, seq, 'publish', p_item_id, p_publisher, p_payload);
    PERFORM pg_notify('pubsub_wakeup', n.node_id::text);
    status := 'ok';
END
$$;

-- Retracts one item.  status: ok, item-not-found (node), forbidden,
-- no-item (the item does not exist).
CREATE FUNCTION pubsub.retract(p_node text, p_item_id text, p_requester text,
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

-- Subscribes p_jid (bare or full) on behalf of p_requester (bare JID).
-- The Binding starts after the node's current seq, read under the node
-- lock so that it is exact.  Returns (status, subid, state).
CREATE FUNCTION pubsub.subscribe(p_node text, p_jid text, p_requester text,
                                 OUT status text, OUT subid text, OUT state text)
LANGUAGE plpgsql AS $$
DECLARE
    n record;
    v_aff text;
    v_last bigint;
BEGIN
    SELECT c.* INTO n FROM pubsub.node nd JOIN pubsub.node_config c USING (node_id)
    WHERE nd.name = p_node AND NOT nd.deleted;
    IF NOT FOUND THEN
        status := 'item-not-found';
        RETURN;
    END IF;
    v_aff := pubsub.affiliation_of(n.node_id, p_requester);
    IF v_aff = 'outcast' THEN
        status := 'forbidden';
        RETURN;
    END IF;
    IF n.access_model <> 'open' AND v_aff NOT IN ('owner', 'publisher', 'publish-only', 'member') THEN
        status := 'closed-node';
        RETURN;
    END IF;
    SELECT last_seq INTO v_last FROM pubsub.node WHERE node_id = n.node_id FOR UPDATE;
    SELECT s.subid, s.state INTO subid, state FROM pubsub.subscription s
    WHERE s.node_id = n.node_id AND s.jid = p_jid;
    IF FOUND THEN
        status := 'ok';
        RETURN;
    END IF;
    INSERT INTO pubsub.subscription (node_id, jid, subid, start_seq)
    VALUES (n.node_id, p_jid, replace(gen_random_uuid()::text, '-', ''), v_last)
    RETURNING subscription.subid, subscription.state INTO subid, state;
    status := 'ok';
END
$$;

-- status: ok, item-not-found, not-subscribed, invalid-subid.
CREATE FUNCTION pubsub.unsubscribe(p_node text, p_jid text, p_subid text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_subid text;
BEGIN
    SELECT node_id INTO v_id FROM pubsub.node WHERE name = p_node AND NOT deleted;
    IF v_id IS NULL THEN
        RETURN 'item-not-found';
    END IF;
    SELECT subid INTO v_subid FROM pubsub.subscription WHERE node_id = v_id AND jid = p_jid;
    IF NOT FOUND THEN
        RETURN 'not-subscribed';
    END IF;
    IF p_subid IS NOT NULL AND p_subid <> v_subid THEN
        RETURN 'invalid-subid';
    END IF;
    DELETE FROM pubsub.subscription WHERE node_id = v_id AND jid = p_jid;
    RETURN 'ok';
END
$$;

-- Item retrieval.  The first row carries the status; item rows follow in
-- publication order (the p_max most recent, or those named in p_ids).
CREATE FUNCTION pubsub.get_items(p_node text, p_requester text, p_max bigint, p_ids text[])
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
    v_aff := pubsub.affiliation_of(n.node_id, p_requester);
    IF v_aff = 'outcast' THEN
        RETURN QUERY SELECT 'forbidden'::text, NULL::text, NULL::text, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF n.access_model <> 'open' AND v_aff NOT IN ('owner', 'publisher', 'publish-only', 'member') THEN
        RETURN QUERY SELECT 'closed-node'::text, NULL::text, NULL::text, NULL::text, NULL::bigint;
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

-- Records delivery progress after the ping barrier confirmed it, drops the
-- drained outbox rows and, once a delete notification is delivered,
-- removes the node for good.  Returns true when the node is gone.
CREATE FUNCTION pubsub.dispatch_commit(p_node_id bigint, p_seq bigint, p_cursor bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_deleted boolean;
    v_last bigint;
BEGIN
    UPDATE pubsub.dispatch SET delivered_seq = p_seq, fanout_cursor = p_cursor, updated_at = now()
    WHERE node_id = p_node_id AND (delivered_seq, fanout_cursor) < (p_seq, p_cursor);
    DELETE FROM pubsub.event WHERE node_id = p_node_id AND seq <= p_seq;
    SELECT deleted, last_seq INTO v_deleted, v_last FROM pubsub.node WHERE node_id = p_node_id;
    IF NOT FOUND THEN
        RETURN true;
    END IF;
    IF v_deleted AND p_seq >= v_last THEN
        DELETE FROM pubsub.node WHERE node_id = p_node_id;
        RETURN true;
    END IF;
    RETURN false;
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
BEGIN
    item_id := coalesce(p_item_id, replace(gen_random_uuid()::text, '-', ''));
    IF p_payload IS NULL OR NOT xml_is_well_formed_document(p_payload) THEN
        status := 'invalid-payload';
        RETURN;
    END IF;
    SELECT t.status, t.seq, t.node_id INTO status, seq, v_node_id
    FROM pubsub.publish_trusted(p_node, item_id, p_payload, p_publisher) t;
END
$$;
