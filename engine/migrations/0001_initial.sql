-- Slipway's initial schema. Times are milliseconds since the Unix epoch (UTC).
-- Never edit a migration once it has shipped; add a new one.

CREATE TABLE apps (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    created_at        INTEGER NOT NULL,
    created_by        TEXT    NOT NULL,
    -- The release whose processes serve traffic; NULL until the first promotion succeeds.
    active_release_id TEXT    REFERENCES releases (id)
);

CREATE TABLE builds (
    id          TEXT    PRIMARY KEY,
    app_id      INTEGER NOT NULL REFERENCES apps (id),
    seq         INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    description TEXT    NOT NULL,
    artifact    TEXT    NOT NULL, -- sha256 of the source .tar.gz under the data dir
    manifest    TEXT    NOT NULL, -- the slipway.yml text of the build
    git_sha     TEXT,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    UNIQUE (app_id, seq)
);

CREATE TABLE releases (
    id          TEXT    PRIMARY KEY,
    app_id      INTEGER NOT NULL REFERENCES apps (id),
    seq         INTEGER NOT NULL,
    build_id    TEXT    REFERENCES builds (id),
    env         TEXT    NOT NULL, -- JSON object, keys sorted
    description TEXT    NOT NULL,
    rollback_of TEXT    REFERENCES releases (id),
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    UNIQUE (app_id, seq)
);

CREATE TABLE promotions (
    id                  TEXT    PRIMARY KEY,
    app_id              INTEGER NOT NULL REFERENCES apps (id),
    release_id          TEXT    NOT NULL REFERENCES releases (id),
    previous_release_id TEXT    REFERENCES releases (id),
    actor               TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    reason              TEXT,
    failed_output       TEXT,
    deadline_ms         INTEGER NOT NULL,
    started_at          INTEGER NOT NULL,
    finished_at         INTEGER
);
-- One rollout per app at a time, enforced by the database so that it also holds across
-- several Console instances and can never stick: recovery ends 'running' rows at start-up.
CREATE UNIQUE INDEX promotions_one_running ON promotions (app_id) WHERE state = 'running';
CREATE INDEX promotions_by_release ON promotions (release_id, started_at);
CREATE INDEX promotions_by_app ON promotions (app_id, started_at);

CREATE TABLE promotion_events (
    promotion_id TEXT    NOT NULL REFERENCES promotions (id),
    seq          INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    message      TEXT    NOT NULL,
    PRIMARY KEY (promotion_id, seq)
);

-- Every OS process the local runtime starts, so that a restart after a crash can find and
-- stop the ones left behind.
CREATE TABLE processes (
    id          TEXT    PRIMARY KEY,
    app_id      INTEGER NOT NULL REFERENCES apps (id),
    release_id  TEXT    NOT NULL REFERENCES releases (id),
    service     TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    start_ticks INTEGER,
    port        INTEGER,
    started_at  INTEGER NOT NULL,
    stopped_at  INTEGER,
    exit_status TEXT,
    output_tail TEXT
);
CREATE INDEX processes_running ON processes (stopped_at) WHERE stopped_at IS NULL;
