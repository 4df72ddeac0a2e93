-- 031_perf_dispatch_commit.sql: a dispatch position is committed without
-- waiting for its WAL flush (synchronous_commit off for that transaction).
--
-- Why this keeps the delivery guarantee: the position only ever moves past
-- events whose notifications the XMPP server has already confirmed (the
-- ping barrier).  If PostgreSQL crashes before the position's WAL reaches
-- the disk, the position comes back older than it was: those notifications
-- are sent again (duplicates, which at-least-once allows), never lost.  WAL
-- is written in order, so a later durable commit (a publish, the janitor's
-- removal of delivered events) makes every earlier position durable too:
-- an event is never removed while its position could still roll back.
-- Cost: on a PostgreSQL crash, up to about three wal_writer_delay of
-- positions (600 ms by default) may be delivered twice.
-- Benefit: one disk flush less per dispatched batch; publishes (durable
-- before their IQ result) no longer queue behind the dispatcher's flushes.
--
-- The setting is local to the transaction and comes from inside the
-- function, so it applies whoever calls it.  A transaction that also
-- publishes must stay durable: db.c never groups a dispatch commit with a
-- publish or a retraction in one transaction (db_group_class()).

CREATE OR REPLACE FUNCTION pubsub.dispatch_commit(p_node_id bigint, p_seq bigint, p_cursor bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_deleted boolean;
    v_last bigint;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE pubsub.dispatch SET delivered_seq = p_seq, fanout_cursor = p_cursor, updated_at = now()
    WHERE node_id = p_node_id AND (delivered_seq, fanout_cursor) < (p_seq, p_cursor);
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
