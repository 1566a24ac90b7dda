-- The seven tables of the seed's data model (see crates/core/src/store/records.rs).
--
-- Conventions:
--   * ids are TEXT UUIDs (hyphenated, lower case);
--   * timestamps are RFC 3339 TEXT in UTC with a fixed precision
--     ("2024-06-01T12:00:00.000000000Z"), so text order is time order;
--   * JSON values (metadata, room_data) and string arrays (capabilities) are JSON TEXT.
--
-- Active-state tables (webrtc_rooms, webrtc_clients, client_in_room) hold live state only;
-- history tables (room_created, terminated_rooms, client_in_terminated_room) are append-only.

CREATE TABLE registered_clients (
    id                TEXT PRIMARY KEY NOT NULL,
    client_id         TEXT NOT NULL,
    auth_token        TEXT NOT NULL,   -- salted hash, never the token
    room_id           TEXT,
    capabilities      TEXT NOT NULL DEFAULT '[]',
    registered_at     TEXT NOT NULL,
    last_seen         TEXT,
    status            TEXT NOT NULL,
    metadata          TEXT NOT NULL DEFAULT '{}',
    record_created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX registered_clients_client_id ON registered_clients (client_id);

-- Only active rooms live here, so a room_id is unique.
CREATE TABLE webrtc_rooms (
    id                 TEXT PRIMARY KEY NOT NULL,
    room_id            TEXT NOT NULL,
    app_id             TEXT NOT NULL DEFAULT '',
    created_at         TEXT NOT NULL,
    status             TEXT NOT NULL,
    sender_client_id   TEXT,
    receiver_client_id TEXT,
    session_id         TEXT,
    metadata           TEXT NOT NULL DEFAULT '{}',
    record_created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX webrtc_rooms_room_id ON webrtc_rooms (room_id);
CREATE INDEX webrtc_rooms_session_id ON webrtc_rooms (session_id);
CREATE INDEX webrtc_rooms_status_created_at ON webrtc_rooms (status, created_at);

CREATE TABLE webrtc_clients (
    id                TEXT PRIMARY KEY NOT NULL,
    client_id         TEXT NOT NULL,
    room_id           TEXT NOT NULL REFERENCES webrtc_rooms (room_id) ON DELETE CASCADE,
    role              TEXT NOT NULL,
    session_id        TEXT,
    joined_at         TEXT NOT NULL,
    status            TEXT NOT NULL,
    metadata          TEXT NOT NULL DEFAULT '{}',
    record_created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX webrtc_clients_client_id_room_id ON webrtc_clients (client_id, room_id);
CREATE INDEX webrtc_clients_room_id_status ON webrtc_clients (room_id, status);
CREATE INDEX webrtc_clients_client_id_status ON webrtc_clients (client_id, status);

CREATE TABLE client_in_room (
    id                TEXT PRIMARY KEY NOT NULL,
    client_id         TEXT NOT NULL,
    room_id           TEXT NOT NULL REFERENCES webrtc_rooms (room_id) ON DELETE CASCADE,
    joined_at         TEXT NOT NULL,
    last_activity     TEXT NOT NULL,
    status            TEXT NOT NULL,
    capabilities      TEXT NOT NULL DEFAULT '[]',
    metadata          TEXT NOT NULL DEFAULT '{}',
    record_created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX client_in_room_client_id_room_id ON client_in_room (client_id, room_id);
CREATE INDEX client_in_room_room_id_joined_at ON client_in_room (room_id, joined_at);

-- One row per time a room id was used; room_id duplicates room_data's, for look-ups.
CREATE TABLE room_created (
    id                TEXT PRIMARY KEY NOT NULL,
    room_uuid         TEXT NOT NULL,
    room_id           TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    room_data         TEXT NOT NULL DEFAULT '{}',
    created_by        TEXT,
    metadata          TEXT NOT NULL DEFAULT '{}',
    record_created_at TEXT NOT NULL
);
CREATE INDEX room_created_room_id ON room_created (room_id, created_at);
CREATE INDEX room_created_room_uuid ON room_created (room_uuid);
CREATE INDEX room_created_created_at ON room_created (created_at);

CREATE TABLE terminated_rooms (
    id                      TEXT PRIMARY KEY NOT NULL,
    room_id                 TEXT NOT NULL,
    terminated_at           TEXT NOT NULL,
    termination_recorded_at TEXT NOT NULL,
    room_data               TEXT NOT NULL DEFAULT '{}',
    termination_reason      TEXT,
    terminated_by           TEXT,
    metadata                TEXT NOT NULL DEFAULT '{}',
    record_created_at       TEXT NOT NULL
);
CREATE INDEX terminated_rooms_room_id ON terminated_rooms (room_id, terminated_at);
CREATE INDEX terminated_rooms_terminated_at ON terminated_rooms (terminated_at);

CREATE TABLE client_in_terminated_room (
    id                 TEXT PRIMARY KEY NOT NULL,
    client_id          TEXT NOT NULL,
    room_id            TEXT NOT NULL,
    joined_at          TEXT NOT NULL,
    left_at            TEXT NOT NULL,
    termination_reason TEXT NOT NULL,
    terminated_by      TEXT NOT NULL,
    final_status       TEXT NOT NULL,
    capabilities       TEXT NOT NULL DEFAULT '[]',
    metadata           TEXT NOT NULL DEFAULT '{}',
    record_created_at  TEXT NOT NULL
);
CREATE INDEX client_in_terminated_room_room_id ON client_in_terminated_room (room_id, left_at);
CREATE INDEX client_in_terminated_room_client_id ON client_in_terminated_room (client_id);
CREATE INDEX client_in_terminated_room_left_at ON client_in_terminated_room (left_at);
