-- 013_configure_fix.sql: 007 renamed configure_node to configure_node_config, but
-- the body qualified its OUT parameter by the old function name.
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
        INSERT INTO pubsub.event (node_id, seq, kind) VALUES (configure_node_config.node_id, v_seq, 'config');
        PERFORM pg_notify('pubsub_wakeup', configure_node_config.node_id::text);
    END IF;
    status := 'ok';
END
$$;
