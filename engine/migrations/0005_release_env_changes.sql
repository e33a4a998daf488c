-- What each release changed in the environment against the app's previous release, as JSON
-- (engine::env::EnvDiff: the keys added, changed and removed; never values), so that lists of
-- releases need not read environments. Filled on insert; rows older than this migration are
-- filled once by the store when it opens (Store::backfill_env_changes).
-- Plain ALTER TABLE ... ADD COLUMN of a nullable column: the same in SQLite and PostgreSQL.
ALTER TABLE releases ADD COLUMN env_changes TEXT;
