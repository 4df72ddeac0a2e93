-- 020_approve_by_owner.sql: an owner who sets a pending subscription to
-- subscribed (§8.8.2) approves it: the Binding starts now, not when the
-- request was made (items published while it was pending are not sent).
CREATE OR REPLACE FUNCTION pubsub.modify_subscriptions(p_name text, p_requester text,
                                            p_jids text, p_states text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c record;
    v_jids text[] := string_to_array(p_jids, E'\n');
    v_states text[] := string_to_array(p_states, E'\n');
    v_last bigint;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    IF c.status <> 'ok' THEN
        RETURN c.status;
    END IF;
    SELECT last_seq INTO v_last FROM pubsub.node WHERE node_id = c.node_id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(v_jids, 1), 0) LOOP
        IF v_states[i] = 'none' THEN
            DELETE FROM pubsub.subscription WHERE node_id = c.node_id AND jid = v_jids[i];
        ELSIF v_states[i] = 'subscribed' THEN
            IF pubsub.affiliation_of(c.node_id, split_part(v_jids[i], '/', 1)) = 'outcast' THEN
                RETURN 'bad-state';
            END IF;
            INSERT INTO pubsub.subscription (node_id, jid, subid, start_seq, state)
            VALUES (c.node_id, v_jids[i], replace(gen_random_uuid()::text, '-', ''), v_last,
                    'subscribed')
            ON CONFLICT (node_id, jid) DO UPDATE SET state = 'subscribed',
                start_seq = CASE WHEN subscription.state = 'pending' THEN v_last
                                 ELSE subscription.start_seq END,
                start_gseq = CASE WHEN subscription.state = 'pending' THEN pubsub.current_gseq()
                                  ELSE subscription.start_gseq END;
        ELSE
            RETURN 'bad-state';
        END IF;
    END LOOP;
    RETURN 'ok';
END
$$;
