-- What each release changed in the environment against the app's previous release, as JSON
-- (engine::env::EnvDiff: the keys added, changed and removed; never values), so that lists of
-- releases need not read environments. Filled on insert; rows older than this migration are
-- filled once by the store when it opens (Store::backfill_env_changes), which finds them
-- through the partial index below: empty once they are filled, so that check costs nothing
-- at later starts (a scan of the column would read every environment stored before it).
-- Plain ALTER TABLE ... ADD COLUMN of a nullable column and a partial index: the same in
-- SQLite and PostgreSQL.
ALTER TABLE releases ADD COLUMN env_changes TEXT;
CREATE INDEX releases_without_env_changes ON releases (app_id) WHERE env_changes IS NULL;
