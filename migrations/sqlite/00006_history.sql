-- +goose Up
-- Call records of the history module: one row per call leg, that is per
-- (call, Elph user), built from the call.* events of the SIP edge and the
-- ECSS bridge. A call between two Elph users is two rows with the same
-- call_id. Events arrive at least once and in any order; every event is
-- merged into the row, so UNIQUE (call_id, user_id) is what makes a
-- duplicate or a late event converge on one record.
--
-- direction is '' until call.started has arrived (then 'inbound' or
-- 'outbound'). started_at is call.started's time, or the earliest time
-- seen before it arrives. end_cause is the cause of call.ended ('' while
-- the call goes on), kept so the result can be derived again when an
-- earlier event arrives late. result and duration_seconds are derived
-- from the rest (see modules/history/record.go). peer_folded is
-- store.Fold of the peer's name and number, the text the peer filter
-- searches. seen only matters for missed calls; deleted hides the row
-- from its user (a soft delete: late events must not bring it back).
-- No foreign key to users: accounts are disabled, never deleted.
-- Timestamps are "timestamp" text in UTC (see 00002_sso.sql).
CREATE TABLE call_records (
    id               integer      NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id          integer      NOT NULL,
    call_id          varchar(128) NOT NULL,
    direction        varchar(16)  NOT NULL DEFAULT '',
    local_number     varchar(64)  NOT NULL DEFAULT '',
    peer_number      varchar(64)  NOT NULL DEFAULT '',
    peer_name        varchar(255) NOT NULL DEFAULT '',
    peer_folded      varchar(330) NOT NULL DEFAULT '',
    started_at       timestamp    NOT NULL,
    ringing_at       timestamp    NULL,
    answered_at      timestamp    NULL,
    ended_at         timestamp    NULL,
    end_cause        varchar(16)  NOT NULL DEFAULT '',
    duration_seconds integer      NOT NULL DEFAULT 0,
    result           varchar(16)  NOT NULL,
    seen             integer      NOT NULL DEFAULT 0,
    deleted          integer      NOT NULL DEFAULT 0,
    updated_at       timestamp    NOT NULL
);
CREATE UNIQUE INDEX call_records_call_user ON call_records (call_id, user_id);
-- The list (newest first, keyset on started_at, id) and the missed count.
CREATE INDEX call_records_user_started ON call_records (user_id, started_at, id);
CREATE INDEX call_records_user_result ON call_records (user_id, result, seen);
-- The retention purge.
CREATE INDEX call_records_started ON call_records (started_at);

-- +goose Down
DROP TABLE call_records;
