-- +goose Up
-- Call records of the history module: one row per call leg, that is per
-- (call, Elph user), built from the call.* events of the SIP edge and the
-- ECSS bridge. A call between two Elph users is two rows with the same
-- call_id. Events arrive at least once and in any order; every event is
-- merged into the row, so UNIQUE (call_id, user_id) is what makes a
-- duplicate or a late event converge on one record (and the only unique
-- key besides the primary key).
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
-- call_id, direction, end_cause and result are compared exactly, hence
-- utf8mb4_bin. No foreign key to users: accounts are disabled, never
-- deleted.
CREATE TABLE call_records (
    id               bigint       NOT NULL AUTO_INCREMENT,
    user_id          bigint       NOT NULL,
    call_id          varchar(128) COLLATE utf8mb4_bin NOT NULL,
    direction        varchar(16)  COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    local_number     varchar(64)  NOT NULL DEFAULT '',
    peer_number      varchar(64)  NOT NULL DEFAULT '',
    peer_name        varchar(255) NOT NULL DEFAULT '',
    peer_folded      varchar(330) NOT NULL DEFAULT '',
    started_at       datetime(6)  NOT NULL,
    ringing_at       datetime(6)  NULL,
    answered_at      datetime(6)  NULL,
    ended_at         datetime(6)  NULL,
    end_cause        varchar(16)  COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    duration_seconds bigint       NOT NULL DEFAULT 0,
    result           varchar(16)  COLLATE utf8mb4_bin NOT NULL,
    seen             tinyint(1)   NOT NULL DEFAULT 0,
    deleted          tinyint(1)   NOT NULL DEFAULT 0,
    updated_at       datetime(6)  NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY call_records_call_user (call_id, user_id),
    KEY call_records_user_started (user_id, started_at, id),
    KEY call_records_user_result (user_id, result, seen),
    KEY call_records_started (started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE call_records;
