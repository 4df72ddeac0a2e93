-- 007_collections.sql: XEP-0248 collection nodes (one parent per node).
-- A message type is TOPIC + EVENTCODE: a collection per topic, a leaf per
-- event code whose pubsub#collection is the topic.  A subscription to a
-- collection with subscription_type 'items' hears of items published to
-- the leaves below it, down to subscription_depth levels, including
-- leaves created after it subscribed.

-- One global order of events, so that a subscription to a collection can
-- say where it starts across all the leaves below it.
CREATE SEQUENCE pubsub.event_gseq;
ALTER TABLE pubsub.event ADD COLUMN gseq bigint NOT NULL DEFAULT nextval('pubsub.event_gseq');

ALTER TABLE pubsub.subscription
    ADD COLUMN sub_type text NOT NULL DEFAULT 'items' CHECK (sub_type IN ('items', 'nodes', 'all')),
    ADD COLUMN sub_depth integer NOT NULL DEFAULT 1 CHECK (sub_depth >= 0),
    ADD COLUMN start_gseq bigint NOT NULL DEFAULT 0;

CREATE INDEX node_parent ON pubsub.node (parent_id) WHERE parent_id IS NOT NULL;

-- The current end of the global event order (for a new subscription).
CREATE FUNCTION pubsub.current_gseq()
RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pubsub.event_gseq
$$;

-- Sets a node's kind and parent from a configuration (keys node_type and
-- collection, the parent's name or '').  status: ok, parent-not-found,
-- parent-not-collection, cycle, kind-change.
CREATE FUNCTION pubsub.set_node_graph(p_node_id bigint, p_config jsonb, p_new boolean)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_kind text;
    v_parent bigint;
    v_parent_kind text;
BEGIN
    IF p_config ? 'node_type' THEN
        v_kind := p_config->>'node_type';
        IF NOT p_new AND v_kind <> (SELECT kind FROM pubsub.node WHERE node_id = p_node_id) THEN
            RETURN 'kind-change';
        END IF;
        UPDATE pubsub.node SET kind = v_kind WHERE node_id = p_node_id;
    END IF;
    IF p_config ? 'collection' THEN
        IF coalesce(p_config->>'collection', '') = '' THEN
            UPDATE pubsub.node SET parent_id = NULL WHERE node_id = p_node_id;
        ELSE
            SELECT node_id, kind INTO v_parent, v_parent_kind FROM pubsub.node
            WHERE name = p_config->>'collection' AND NOT deleted;
            IF v_parent IS NULL THEN
                RETURN 'parent-not-found';
            END IF;
            IF v_parent_kind <> 'collection' THEN
                RETURN 'parent-not-collection';
            END IF;
            IF EXISTS (WITH RECURSIVE up(id, depth) AS (
                           SELECT v_parent, 0
                           UNION ALL
                           SELECT n.parent_id, u.depth + 1 FROM up u JOIN pubsub.node n ON n.node_id = u.id
                           WHERE n.parent_id IS NOT NULL AND u.depth < 1000)
                       SELECT 1 FROM up WHERE id = p_node_id) THEN
                RETURN 'cycle';
            END IF;
            UPDATE pubsub.node SET parent_id = v_parent WHERE node_id = p_node_id;
        END IF;
    END IF;
    RETURN 'ok';
END
$$;

DROP FUNCTION pubsub.create_node(text, text, jsonb);

-- Creates a node (leaf or collection) owned by p_owner with the complete
-- configuration p_config.  status: ok, conflict, and set_node_graph's.
CREATE FUNCTION pubsub.create_node(p_name text, p_owner text, p_config jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_status text;
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

-- configure_node also moves a node in the graph: wrap the 003 version.
ALTER FUNCTION pubsub.configure_node(text, text, jsonb) RENAME TO configure_node_config;

CREATE FUNCTION pubsub.configure_node(p_name text, p_requester text, p_changes jsonb,
                                      OUT status text, OUT node_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    SELECT t.status, t.node_id INTO status, node_id
    FROM pubsub.configure_node_config(p_name, p_requester, p_changes) t;
    IF status <> 'ok' THEN
        RETURN;
    END IF;
    v_status := pubsub.set_node_graph(node_id, p_changes, false);
    IF v_status <> 'ok' THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = v_status;
    END IF;
EXCEPTION WHEN raise_exception THEN
    IF SQLERRM IN ('parent-not-found', 'parent-not-collection', 'cycle', 'kind-change') THEN
        status := SQLERRM;
        RETURN;
    END IF;
    RAISE;
END
$$;

-- Publishing to a collection is refused (XEP-0248: items live in leaves).
ALTER FUNCTION pubsub.publish_auto(text, text, text, text, text, jsonb, jsonb)
    RENAME TO publish_auto_leaf;

CREATE FUNCTION pubsub.publish_auto(p_node text, p_item_id text, p_payload text,
                                    p_publisher text, p_payload_ns text,
                                    p_preconditions jsonb, p_create_config jsonb,
                                    OUT status text, OUT seq bigint, OUT node_id bigint)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pubsub.node n
               WHERE n.name = p_node AND NOT n.deleted AND n.kind = 'collection') THEN
        status := 'collection';
        RETURN;
    END IF;
    SELECT t.status, t.seq, t.node_id INTO status, seq, node_id
    FROM pubsub.publish_auto_leaf(p_node, p_item_id, p_payload, p_publisher, p_payload_ns,
                                  p_preconditions, p_create_config) t;
END
$$;

-- Subscription options gain subscription_type and subscription_depth.
CREATE OR REPLACE FUNCTION pubsub.apply_sub_options(p_sub_id bigint, p_opts jsonb)
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
        expires_at = CASE WHEN p_opts ? 'expire' THEN v_expires ELSE s.expires_at END,
        sub_type = coalesce(p_opts->>'subscription_type', s.sub_type),
        sub_depth = coalesce((p_opts->>'subscription_depth')::integer, s.sub_depth)
    WHERE s.sub_id = p_sub_id;
    RETURN true;
END
$$;

-- New subscriptions record where they start in the global order too.
ALTER TABLE pubsub.subscription ALTER COLUMN start_gseq SET DEFAULT 0;
CREATE FUNCTION pubsub.subscription_start_gseq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.start_gseq := pubsub.current_gseq();
    RETURN NEW;
END
$$;
CREATE TRIGGER subscription_start_gseq BEFORE INSERT ON pubsub.subscription
    FOR EACH ROW EXECUTE FUNCTION pubsub.subscription_start_gseq();

-- Everyone who hears of an event of leaf p_node_id: its own subscriptions
-- and the item subscriptions of the collections above it within their
-- depth, one per JID (the leaf's own subscription wins), in sub_id order
-- after p_cursor.  via: the collection a subscription came through.
CREATE FUNCTION pubsub.dispatch_audience(p_node_id bigint, p_cursor bigint, p_limit integer)
RETURNS TABLE (sub_id bigint, jid text, start_seq bigint, subid text, include_body boolean,
               via text, start_gseq bigint)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE anc(node_id, depth) AS (
        SELECT n.parent_id, 1 FROM pubsub.node n
        WHERE n.node_id = p_node_id AND n.parent_id IS NOT NULL
        UNION ALL
        SELECT n.parent_id, a.depth + 1 FROM anc a JOIN pubsub.node n ON n.node_id = a.node_id
        WHERE n.parent_id IS NOT NULL AND a.depth < 1000),
    eligible AS (
        SELECT s.sub_id, s.jid, s.start_seq, s.subid, s.include_body, NULL::text AS via,
               s.start_gseq
        FROM pubsub.subscription s
        WHERE s.node_id = p_node_id
        UNION ALL
        SELECT s.sub_id, s.jid, s.start_seq, s.subid, s.include_body, c.name, s.start_gseq
        FROM anc a JOIN pubsub.subscription s ON s.node_id = a.node_id
        JOIN pubsub.node c ON c.node_id = a.node_id
        WHERE s.sub_type IN ('items', 'all') AND s.sub_depth >= a.depth),
    one_per_jid AS (
        SELECT DISTINCT ON (e.jid) e.* FROM eligible e
        JOIN pubsub.subscription s ON s.sub_id = e.sub_id
        WHERE s.state = 'subscribed' AND s.deliver
          AND (s.expires_at IS NULL OR s.expires_at > now())
        ORDER BY e.jid, (e.via IS NOT NULL), e.sub_id)
    SELECT * FROM one_per_jid o WHERE o.sub_id > p_cursor ORDER BY o.sub_id LIMIT p_limit
$$;
