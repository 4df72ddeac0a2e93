-- 027_affiliation_notices.sql: modify_affiliations also returns the
-- affiliations it changed, ('affiliation', jid, new affiliation), so that
-- pubsubd tells each entity of its new affiliation (XEP-0060 §8.9.4).
-- Entries that change nothing are not returned.

CREATE OR REPLACE FUNCTION pubsub.modify_affiliations(p_name text, p_requester text, p_jids text, p_affiliations text)
 RETURNS TABLE(status text, jid text, affiliation text)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
    c record;
    v_jids text[] := string_to_array(p_jids, E'\n');
    v_affs text[] := string_to_array(p_affiliations, E'\n');
    v_n integer := coalesce(array_length(v_jids, 1), 0);
    v_block boolean;
    v_old text;
    v_failed text[] := '{}';
    v_last bigint;
    v_notify text[] := '{}';
    v_notify_state text[] := '{}';
    v_changed text[] := '{}';
    v_changed_aff text[] := '{}';
    r record;
BEGIN
    SELECT * INTO c FROM pubsub.owner_check(p_name, p_requester);
    IF c.status <> 'ok' THEN
        RETURN QUERY SELECT c.status, NULL::text, NULL::text;
        RETURN;
    END IF;
    SELECT n.last_seq INTO v_last FROM pubsub.node n WHERE n.node_id = c.node_id FOR UPDATE;
    -- No owner left afterwards: no owner outside the request, none named.
    v_block := NOT EXISTS (SELECT 1 FROM pubsub.affiliation a
                           WHERE a.node_id = c.node_id AND a.affiliation = 'owner'
                             AND NOT (a.jid = ANY (v_jids)))
               AND NOT ('owner' = ANY (v_affs));
    FOR i IN 1 .. v_n LOOP
        v_old := pubsub.affiliation_of(c.node_id, v_jids[i]);
        IF v_block AND v_old = 'owner' THEN
            v_failed := v_failed || v_jids[i];
            CONTINUE;
        END IF;
        IF v_old IS DISTINCT FROM v_affs[i] THEN
            v_changed := v_changed || v_jids[i];
            v_changed_aff := v_changed_aff || v_affs[i];
        END IF;
        IF v_affs[i] = 'none' THEN
            DELETE FROM pubsub.affiliation a WHERE a.node_id = c.node_id AND a.jid = v_jids[i];
        ELSE
            INSERT INTO pubsub.affiliation AS a (node_id, jid, affiliation)
            VALUES (c.node_id, v_jids[i], v_affs[i])
            ON CONFLICT (node_id, jid) DO UPDATE SET affiliation = excluded.affiliation;
            IF v_affs[i] = 'outcast' THEN
                -- §8.7.4 note: pending requests rejected, the entity told
                -- (subscriptions are cancelled as before, silently).
                FOR r IN DELETE FROM pubsub.subscription s
                         WHERE s.node_id = c.node_id AND split_part(s.jid, '/', 1) = v_jids[i]
                         RETURNING s.jid AS sjid, s.state AS sstate LOOP
                    IF r.sstate = 'pending' THEN
                        v_notify := v_notify || r.sjid;
                        v_notify_state := v_notify_state || 'none'::text;
                    END IF;
                END LOOP;
            ELSIF v_affs[i] IN ('owner', 'publisher', 'member') THEN
                -- §8.7.4 note: pending requests approved (these
                -- affiliations subscribe without approval, §6.1.4).
                FOR r IN UPDATE pubsub.subscription s SET state = 'subscribed',
                             start_seq = v_last, start_gseq = pubsub.current_gseq()
                         WHERE s.node_id = c.node_id AND split_part(s.jid, '/', 1) = v_jids[i]
                           AND s.state = 'pending'
                         RETURNING s.jid AS sjid LOOP
                    v_notify := v_notify || r.sjid;
                    v_notify_state := v_notify_state || 'subscribed'::text;
                END LOOP;
            END IF;
        END IF;
    END LOOP;
    IF cardinality(v_failed) > 0 THEN
        RETURN QUERY SELECT 'last-owner'::text, NULL::text, NULL::text;
        RETURN QUERY SELECT NULL::text, f, 'owner'::text FROM unnest(v_failed) f;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'ok'::text, NULL::text, NULL::text;
    -- Subscription state changes to notify: (NULL, jid, new state).
    RETURN QUERY SELECT NULL::text, t.j, t.st FROM unnest(v_notify, v_notify_state) AS t(j, st);
    -- Affiliations changed (§8.9.4): ('affiliation', jid, new affiliation).
    RETURN QUERY SELECT 'affiliation'::text, t.j, t.a
        FROM unnest(v_changed, v_changed_aff) AS t(j, a);
END
$function$;
