-- Users, sessions, API tokens and the audit log. Times are milliseconds since the Unix epoch
-- (UTC). No secret is stored in clear: passwords are argon2id PHC strings, session and API
-- tokens only their SHA-256 (hex). Never edit a migration once it has shipped; add a new one.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL, -- $argon2id$v=19$m=...,t=...,p=...$salt$hash
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'deployer', 'admin')),
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER           -- a disabled user can neither sign in nor use its tokens
);

-- Server-side sessions: they survive a restart and can be revoked. The client holds the
-- token; only its hash is here.
CREATE TABLE sessions (
    id_hash      TEXT    PRIMARY KEY, -- sha256(token), hex
    user_id      INTEGER NOT NULL REFERENCES users (id),
    client       TEXT,                -- the address that signed in, if known
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,    -- updated at most once a minute
    revoked_at   INTEGER
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY, -- T + 10 letters, not secret
    user_id      INTEGER NOT NULL REFERENCES users (id),
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('viewer', 'deployer', 'admin')),
    prefix       TEXT    NOT NULL,    -- slw_ + the first 4 characters, for display
    hash         TEXT    NOT NULL UNIQUE, -- sha256(token), hex
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,             -- updated at most once a minute
    revoked_at   INTEGER
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

-- Who did what, newest last. Names, not foreign keys: the log outlives users and apps, and
-- records attempts on apps that do not exist. Never holds a password, token or env value.
-- (AUTOINCREMENT: a seq is never reused; PostgreSQL would say GENERATED ALWAYS AS IDENTITY.)
CREATE TABLE audit (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    app    TEXT,
    action TEXT    NOT NULL,          -- login, token.create, release.promote, env.reveal, ...
    target TEXT,
    result TEXT    NOT NULL CHECK (result IN ('ok', 'denied', 'failed')),
    detail TEXT                       -- why it failed
);
CREATE INDEX audit_by_actor ON audit (actor, seq);
CREATE INDEX audit_by_app ON audit (app, seq);
