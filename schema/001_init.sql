-- 001_init.sql: nodes, configuration, items, affiliations, subscriptions,
-- the outbox (event) and the dispatch progress table.
-- Applied by pubsubd inside one transaction under an advisory lock.

CREATE TABLE pubsub.node (
    node_id     bigserial PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL DEFAULT 'leaf' CHECK (kind IN ('leaf', 'collection')),
    parent_id   bigint REFERENCES pubsub.node (node_id) ON DELETE SET NULL,
    creator     text NOT NULL,
    last_seq    bigint NOT NULL DEFAULT 0,     -- the node's offset: seq of its newest event
    item_count  bigint NOT NULL DEFAULT 0,     -- rows in pubsub.item, for O(1) max_items trimming
    deleted     boolean NOT NULL DEFAULT false, -- tombstone until the delete notification is delivered
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- A name is unique among live nodes; a deleted node keeps its row until its
-- delete notification has been dispatched, and the name can be reused at once.
CREATE UNIQUE INDEX node_live_name ON pubsub.node (name) WHERE NOT deleted;

CREATE TABLE pubsub.node_config (
    node_id           bigint PRIMARY KEY REFERENCES pubsub.node (node_id) ON DELETE CASCADE,
    title             text NOT NULL DEFAULT '',
    description       text NOT NULL DEFAULT '',
    payload_type      text NOT NULL DEFAULT '',
    max_items         bigint NOT NULL CHECK (max_items >= 0),
    max_payload_size  integer NOT NULL CHECK (max_payload_size > 0),
    persist_items     boolean NOT NULL DEFAULT true,
    deliver_payloads  boolean NOT NULL DEFAULT true,
    deliver_notifications boolean NOT NULL DEFAULT true,
    notify_retract    boolean NOT NULL DEFAULT true,
    notify_delete     boolean NOT NULL DEFAULT true,
    notify_config     boolean NOT NULL DEFAULT false,
    notification_type text NOT NULL DEFAULT 'headline' CHECK (notification_type IN ('headline', 'normal')),
    access_model      text NOT NULL DEFAULT 'open'
                      CHECK (access_model IN ('open', 'presence', 'roster', 'authorize', 'whitelist')),
    publish_model     text NOT NULL DEFAULT 'publishers'
                      CHECK (publish_model IN ('publishers', 'subscribers', 'open'))
);

CREATE TABLE pubsub.affiliation (
    node_id     bigint NOT NULL REFERENCES pubsub.node (node_id) ON DELETE CASCADE,
    jid         text NOT NULL, -- bare JID
    affiliation text NOT NULL
                CHECK (affiliation IN ('owner', 'publisher', 'publish-only', 'member', 'outcast')),
    PRIMARY KEY (node_id, jid)
);

-- A subscription is a Binding: it starts after the node position start_seq.
CREATE TABLE pubsub.subscription (
    sub_id      bigserial PRIMARY KEY,
    node_id     bigint NOT NULL REFERENCES pubsub.node (node_id) ON DELETE CASCADE,
    jid         text NOT NULL, -- the subscribed JID, bare or full, as requested
    subid       text NOT NULL UNIQUE,
    state       text NOT NULL DEFAULT 'subscribed'
                CHECK (state IN ('subscribed', 'pending', 'unconfigured')),
    start_seq   bigint NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (node_id, jid)
);

-- The node's current items.  seq is the seq of the publish that wrote it.
CREATE TABLE pubsub.item (
    node_id      bigint NOT NULL REFERENCES pubsub.node (node_id) ON DELETE CASCADE,
    item_id      text NOT NULL,
    seq          bigint NOT NULL,
    publisher    text NOT NULL,
    payload      text,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, item_id)
);
CREATE UNIQUE INDEX item_node_seq ON pubsub.item (node_id, seq);

-- The transactional outbox: one row per change subscribers must hear about,
-- written in the transaction of the change.  Never one row per subscriber.
CREATE TABLE pubsub.event (
    node_id     bigint NOT NULL REFERENCES pubsub.node (node_id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('publish', 'retract', 'delete')),
    item_id     text,
    publisher   text,
    payload     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, seq)
);

-- How far each node's notifications have been handed to the XMPP server:
-- every event with seq <= delivered_seq, and for event delivered_seq + 1
-- the subscriptions with sub_id <= fanout_cursor (0: none yet).
CREATE TABLE pubsub.dispatch (
    node_id        bigint PRIMARY KEY REFERENCES pubsub.node (node_id) ON DELETE CASCADE,
    delivered_seq  bigint NOT NULL DEFAULT 0,
    fanout_cursor  bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
