-- The seven tables of the seed's data model (see crates/core/src/store/records.rs), in
-- PostgreSQL's own types: UUID, TIMESTAMPTZ (microseconds), JSONB. `seq` keeps the order
-- rows were written in, for rows with equal timestamps.
--
-- Active-state tables (webrtc_rooms, webrtc_clients, client_in_room) hold live state only;
-- history tables (room_created, terminated_rooms, client_in_terminated_room) are append-only.

CREATE TABLE registered_clients (
    id                UUID PRIMARY KEY,
    client_id         TEXT NOT NULL UNIQUE,
    auth_token        TEXT NOT NULL,   -- salted hash, never the token
    room_id           TEXT,
    capabilities      JSONB NOT NULL DEFAULT '[]',
    registered_at     TIMESTAMPTZ NOT NULL,
    last_seen         TIMESTAMPTZ,
    status            TEXT NOT NULL,
    metadata          JSONB NOT NULL DEFAULT '{}',
    record_created_at TIMESTAMPTZ NOT NULL
);

-- Only active rooms live here, so a room_id is unique.
CREATE TABLE webrtc_rooms (
    seq                BIGINT GENERATED ALWAYS AS IDENTITY,
    id                 UUID PRIMARY KEY,
    room_id            TEXT NOT NULL UNIQUE,
    app_id             TEXT NOT NULL DEFAULT '',
    created_at         TIMESTAMPTZ NOT NULL,
    status             TEXT NOT NULL,
    sender_client_id   TEXT,
    receiver_client_id TEXT,
    session_id         TEXT,
    metadata           JSONB NOT NULL DEFAULT '{}',
    record_created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX webrtc_rooms_session_id ON webrtc_rooms (session_id);
CREATE INDEX webrtc_rooms_status_created_at ON webrtc_rooms (status, created_at);

CREATE TABLE webrtc_clients (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY,
    id                UUID PRIMARY KEY,
    client_id         TEXT NOT NULL,
    room_id           TEXT NOT NULL REFERENCES webrtc_rooms (room_id) ON DELETE CASCADE,
    role              TEXT NOT NULL,
    session_id        TEXT,
    joined_at         TIMESTAMPTZ NOT NULL,
    status            TEXT NOT NULL,
    metadata          JSONB NOT NULL DEFAULT '{}',
    record_created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT webrtc_clients_client_id_room_id UNIQUE (client_id, room_id)
);
CREATE INDEX webrtc_clients_room_id_status ON webrtc_clients (room_id, status);
CREATE INDEX webrtc_clients_client_id_status ON webrtc_clients (client_id, status);

CREATE TABLE client_in_room (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY,
    id                UUID PRIMARY KEY,
    client_id         TEXT NOT NULL,
    room_id           TEXT NOT NULL REFERENCES webrtc_rooms (room_id) ON DELETE CASCADE,
    joined_at         TIMESTAMPTZ NOT NULL,
    last_activity     TIMESTAMPTZ NOT NULL,
    status            TEXT NOT NULL,
    capabilities      JSONB NOT NULL DEFAULT '[]',
    metadata          JSONB NOT NULL DEFAULT '{}',
    record_created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT client_in_room_client_id_room_id UNIQUE (client_id, room_id)
);
CREATE INDEX client_in_room_room_id_joined_at ON client_in_room (room_id, joined_at);

-- One row per time a room id was used; room_id duplicates room_data's, for look-ups.
CREATE TABLE room_created (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY,
    id                UUID PRIMARY KEY,
    room_uuid         UUID NOT NULL,
    room_id           TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    room_data         JSONB NOT NULL DEFAULT '{}',
    created_by        TEXT,
    metadata          JSONB NOT NULL DEFAULT '{}',
    record_created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX room_created_room_id ON room_created (room_id, created_at);
CREATE INDEX room_created_room_uuid ON room_created (room_uuid);
CREATE INDEX room_created_created_at ON room_created (created_at);

CREATE TABLE terminated_rooms (
    seq                     BIGINT GENERATED ALWAYS AS IDENTITY,
    id                      UUID PRIMARY KEY,
    room_id                 TEXT NOT NULL,
    terminated_at           TIMESTAMPTZ NOT NULL,
    termination_recorded_at TIMESTAMPTZ NOT NULL,
    room_data               JSONB NOT NULL DEFAULT '{}',
    termination_reason      TEXT,
    terminated_by           TEXT,
    metadata                JSONB NOT NULL DEFAULT '{}',
    record_created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX terminated_rooms_room_id ON terminated_rooms (room_id, terminated_at);
CREATE INDEX terminated_rooms_terminated_at ON terminated_rooms (terminated_at);

CREATE TABLE client_in_terminated_room (
    seq                BIGINT GENERATED ALWAYS AS IDENTITY,
    id                 UUID PRIMARY KEY,
    client_id          TEXT NOT NULL,
    room_id            TEXT NOT NULL,
    joined_at          TIMESTAMPTZ NOT NULL,
    left_at            TIMESTAMPTZ NOT NULL,
    termination_reason TEXT NOT NULL,
    terminated_by      TEXT NOT NULL,
    final_status       TEXT NOT NULL,
    capabilities       JSONB NOT NULL DEFAULT '[]',
    metadata           JSONB NOT NULL DEFAULT '{}',
    record_created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX client_in_terminated_room_room_id ON client_in_terminated_room (room_id, left_at);
CREATE INDEX client_in_terminated_room_client_id ON client_in_terminated_room (client_id);
CREATE INDEX client_in_terminated_room_left_at ON client_in_terminated_room (left_at);
