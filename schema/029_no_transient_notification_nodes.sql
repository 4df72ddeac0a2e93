-- 029_no_transient_notification_nodes.sql: a node is never both transient
-- (pubsub#persist_items = false) and notification-only
-- (pubsub#deliver_payloads = false).
--
-- XEP-0060 §7.1.3.6: on a "notification + transient" node a publish MUST
-- carry no item (item-forbidden otherwise), and the notification carries
-- none either (§7.1, note on <item/>).  pubsubd's outbox and notifications
-- are built around an item per publish, so it does not offer that event
-- type: configuring it (create-and-configure, configure, auto-create with
-- publish-options) is refused with not-acceptable, and docs/protocol.md
-- says so.  The check is a trigger so that every path into node_config,
-- the SQL API included, gets it; the functions that write node_config
-- turn it into the status word 'transient-notification'.  Nodes created
-- before this migration keep their configuration until it is changed.

CREATE FUNCTION pubsub.node_config_event_type() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.persist_items AND NOT NEW.deliver_payloads THEN
        RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'transient-notification',
            HINT = 'a node that does not persist items must deliver payloads';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER node_config_event_type
    BEFORE INSERT OR UPDATE OF persist_items, deliver_payloads ON pubsub.node_config
    FOR EACH ROW EXECUTE FUNCTION pubsub.node_config_event_type();

-- create_node (012) with 'transient-notification' among the refusals that
-- roll the creation back.
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
    IF SQLERRM IN ('parent-not-found', 'parent-not-collection', 'cycle', 'kind-change',
                   'transient-notification') THEN
        RETURN SQLERRM; -- the creation is rolled back
    END IF;
    RAISE;
END
$$;

-- configure_node (007) likewise: the configuration is left as it was.
CREATE OR REPLACE FUNCTION pubsub.configure_node(p_name text, p_requester text, p_changes jsonb,
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
    IF SQLERRM IN ('parent-not-found', 'parent-not-collection', 'cycle', 'kind-change',
                   'transient-notification') THEN
        status := SQLERRM;
        RETURN;
    END IF;
    RAISE;
END
$$;
