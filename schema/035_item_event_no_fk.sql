-- 035_item_event_no_fk.sql: the item and outbox rows no longer check
-- their node's key on insert; a trigger keeps the cascade on delete.
--
-- Every publish inserts one pubsub.item row and one pubsub.event row, and
-- each fired a foreign-key trigger: a query per row that locks the node
-- row again (FOR KEY SHARE).  perf on the backend running publish_batch()
-- (8 publishes to one node per call) put 8.7 % of its samples under
-- AfterTriggerEndQuery, and pg_stat_statements 16 key-check queries per
-- call.
--
-- The check adds nothing: every function that inserts these rows
-- (publish_batch, publish_auto, retract, purge_node, delete_node,
-- configure_node_config) first updates the node row in the same
-- transaction (its last_seq), holding the row's lock until commit, and
-- finds the node by name with NOT deleted (or by id FOR UPDATE, failing
-- when the row is gone).  A node row is only deleted after its tombstone
-- (deleted = true) is dispatched, by a DELETE that waits for that lock.
-- So the keys cannot dangle.  A new function that inserts items or outbox
-- rows must keep that rule: update (lock) the node row first.
--
-- The cascade stays: deleting a node row deletes its items and outbox rows,
-- now by a trigger.  It runs after the DELETE has waited for any writer of
-- the node, and its statements take a new snapshot, so they see what that
-- writer committed.

ALTER TABLE pubsub.item DROP CONSTRAINT item_node_id_fkey;
ALTER TABLE pubsub.event DROP CONSTRAINT event_node_id_fkey;

CREATE FUNCTION pubsub.node_rows_deleted() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM pubsub.item WHERE node_id = OLD.node_id;
    DELETE FROM pubsub.event WHERE node_id = OLD.node_id;
    RETURN OLD;
END
$$;

CREATE TRIGGER node_rows_deleted AFTER DELETE ON pubsub.node
    FOR EACH ROW EXECUTE FUNCTION pubsub.node_rows_deleted();
