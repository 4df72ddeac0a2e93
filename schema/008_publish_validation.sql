-- 008_publish_validation.sql: the SQL API refuses what the XMPP stream
-- cannot carry.  An XML declaration, comment, processing instruction or
-- DOCTYPE inside a notification makes the XMPP server close the
-- component's stream (restricted-xml), and the dispatcher would send the
-- same batch again after every reconnect.  Item ids follow the XMPP
-- path's rule (no empty id, no control characters).  A payload that does
-- not parse as XML (an undeclared prefix) returns a status instead of
-- raising, so the application's transaction is not aborted.
CREATE OR REPLACE FUNCTION pubsub.publish(p_node text, p_item_id text, p_payload text,
                                          p_publisher text,
                                          OUT status text, OUT seq bigint, OUT item_id text)
LANGUAGE plpgsql AS $$
DECLARE
    v_node_id bigint;
    v_ns text;
BEGIN
    item_id := coalesce(p_item_id, replace(gen_random_uuid()::text, '-', ''));
    IF item_id = '' OR item_id ~ '[\x01-\x1f\x7f]' THEN
        status := 'invalid-item-id';
        RETURN;
    END IF;
    IF p_payload IS NULL OR NOT xml_is_well_formed_document(p_payload)
       OR p_payload ~ '<\?|<!(?!\[CDATA\[)' THEN
        status := 'invalid-payload';
        RETURN;
    END IF;
    BEGIN
        v_ns := (xpath('namespace-uri(/*)', p_payload::xml))[1]::text;
    EXCEPTION WHEN invalid_xml_document OR invalid_xml_content THEN
        status := 'invalid-payload';
        RETURN;
    END;
    SELECT t.status, t.seq, t.node_id INTO status, seq, v_node_id
    FROM pubsub.publish_trusted(p_node, item_id, p_payload, p_publisher,
                                coalesce(v_ns, ''), NULL) t;
END
$$;
