-- The event outbox: lifecycle events written in the same transaction as the lifecycle
-- write they describe, drained by the publisher (see crates/core/src/events.rs).
--
--   * position orders the outbox. A room's events get their seq from event_room_seq,
--     whose row stays locked until the transaction ends, so within a room position
--     order is seq order;
--   * body is the event as JSON, without its seq (the seq column holds it);
--   * seq numbers a room's events from 1, without gaps, continued when a room id is used
--     again;
--   * delivered_at is set once every sink has the event.

CREATE TABLE event_outbox (
    position     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           UUID NOT NULL UNIQUE,
    room_id      TEXT,
    seq          BIGINT,
    body         JSONB NOT NULL,
    delivered_at TIMESTAMPTZ,
    UNIQUE (room_id, seq)
);
CREATE INDEX event_outbox_pending ON event_outbox (position) WHERE delivered_at IS NULL;

CREATE TABLE event_room_seq (
    room_id TEXT PRIMARY KEY,
    last    BIGINT NOT NULL
);
