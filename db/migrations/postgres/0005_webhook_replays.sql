-- The bodies of webhook deliveries acted on lately, by their signature (the HMAC-SHA256 of the
-- body, one per body under the App's secret): the same body delivered again under another
-- delivery id is a replay, and is recorded but not acted on. Rows older than the replay window
-- (a day) are pruned as new deliveries come.
CREATE TABLE webhook_replays (
    signature   TEXT COLLATE "C" PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    seen_at     BIGINT NOT NULL
);
CREATE INDEX webhook_replays_seen ON webhook_replays(seen_at);
