-- 026_sql_api_text.sql: the SQL API (pubsub.publish) refuses item ids and
-- publisher JIDs that an XML stream cannot carry.  XMPP requests cannot
-- contain such characters (the XML parser refuses them), but a string
-- from an application's SQL can, and pubsubd would copy it into the
-- component stream (item ids in notifications, the publisher in item
-- retrieval), which the XMPP server then closes: one row would cut the
-- service off again at every attempt.  Not XML 1.0 Chars: U+0001-U+001F
-- (PostgreSQL text has no U+0000), U+FFFE, U+FFFF; U+007F is refused
-- too, as in the rest of pubsubd's JIDs and ids.
--
-- pubsub.publish also becomes SECURITY DEFINER: it runs with the rights of
-- its owner (the role that applied the migrations, pubsubd's), so an
-- application's role needs only USAGE on the schema and EXECUTE on this
-- one function, granted explicitly (no longer to PUBLIC), and cannot touch
-- the outbox or the items otherwise.  search_path is pinned so that the
-- caller's objects cannot stand in for built-ins.  A later CREATE OR
-- REPLACE of this function must repeat SECURITY DEFINER and the SET.

CREATE FUNCTION pubsub.is_stream_safe(p text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p !~ '[\x01-\x1f\x7f\uFFFE\uFFFF]'
$$;

CREATE OR REPLACE FUNCTION pubsub.publish(p_node text, p_item_id text, p_payload text,
    p_publisher text, OUT status text, OUT seq bigint, OUT item_id text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_node_id bigint;
    v_ns text;
BEGIN
    item_id := coalesce(p_item_id, replace(gen_random_uuid()::text, '-', ''));
    IF item_id = '' OR NOT pubsub.is_stream_safe(item_id) THEN
        status := 'invalid-item-id';
        RETURN;
    END IF;
    -- A bare JID: [local@]domain, no resource, nothing a stream cannot carry.
    IF p_publisher IS NULL OR octet_length(p_publisher) > 3071
       OR p_publisher !~ '^([^@/\s"&''<>:]+@)?[^@/\s]+$'
       OR NOT pubsub.is_stream_safe(p_publisher) THEN
        status := 'invalid-publisher';
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

REVOKE ALL ON FUNCTION pubsub.publish(text, text, text, text) FROM PUBLIC;
