-- inboxd's PostgreSQL schema (store.engine = "postgres"), applied by refinery at every open and by
-- `inboxd migrate`. Never edit an applied migration: add V2__..., V3__... instead.

-- The store's tables: one per record kind, opaque sorted byte keys and byte values (src/store/engine.rs).
CREATE TABLE channels (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE tokens (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE cursors (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE ledger (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE pending (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE meta (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE floors (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE inboxd_system (key bytea PRIMARY KEY, value bytea NOT NULL);

-- Cluster mode: the nodes' heartbeats.
CREATE TABLE nodes (
    node_id text PRIMARY KEY,
    address text NOT NULL DEFAULT '',
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    draining boolean NOT NULL DEFAULT false
);

-- Cluster mode: one lease per shard (src/store/cluster.rs, SHARDS = 1024); the epoch rises on
-- every claim, and a fenced write commits only under the current owner, epoch and expiry.
CREATE TABLE shard_lease (
    shard integer PRIMARY KEY CHECK (shard >= 0 AND shard < 1024),
    owner text NULL,
    epoch bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO shard_lease (shard) SELECT generate_series(0, 1023);

-- The table sink (processor.sink = "postgres"): each message once per channel.
CREATE TABLE mail (
    id bigserial PRIMARY KEY,
    channel_id text NOT NULL,
    message_id text NOT NULL,
    record jsonb NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel_id, message_id)
);
