-- The event outbox: lifecycle events written in the same transaction as the lifecycle
-- write they describe, drained by the publisher (see crates/core/src/events.rs).
--
--   * position orders the outbox (the order events were recorded);
--   * body is the event as JSON, without its seq (the seq column holds it);
--   * seq numbers a room's events from 1, without gaps, continued when a room id is used
--     again (event_room_seq holds the last one given per room id);
--   * delivered_at is set once every sink has the event.

CREATE TABLE event_outbox (
    position     INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    room_id      TEXT,
    seq          INTEGER,
    body         TEXT NOT NULL,
    delivered_at TEXT
);
CREATE UNIQUE INDEX event_outbox_room_seq ON event_outbox (room_id, seq);
CREATE INDEX event_outbox_pending ON event_outbox (position) WHERE delivered_at IS NULL;

CREATE TABLE event_room_seq (
    room_id TEXT PRIMARY KEY NOT NULL,
    last    INTEGER NOT NULL
);
