-- 014_autocreate_limit.sql: auto-create reports why it could not create
-- the node (max-nodes-exceeded, or a configuration that names a missing
-- collection) instead of publishing into the void (item-not-found).
CREATE OR REPLACE FUNCTION pubsub.publish_auto_leaf(p_node text, p_item_id text, p_payload text,
                                                   p_publisher text, p_payload_ns text,
                                                   p_preconditions jsonb, p_create_config jsonb,
                                                   OUT status text, OUT seq bigint,
                                                   OUT node_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_created text;
BEGIN
    IF p_create_config IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pubsub.node n WHERE n.name = p_node AND NOT n.deleted) THEN
        v_created := pubsub.create_node(p_node, p_publisher,
                                        p_create_config || coalesce(p_preconditions, '{}'));
        -- 'conflict' means someone created it concurrently: publish to it.
        IF v_created NOT IN ('ok', 'conflict') THEN
            status := v_created;
            RETURN;
        END IF;
    END IF;
    SELECT t.status, t.seq, t.node_id INTO status, seq, node_id
    FROM pubsub.publish_trusted(p_node, p_item_id, p_payload, p_publisher, p_payload_ns,
                                p_preconditions) t;
END
$$;
