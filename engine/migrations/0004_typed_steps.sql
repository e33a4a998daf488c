-- A promotion's steps as data: `step` holds the step as JSON (engine::step::Step); `message`
-- keeps it in words. NULL for steps recorded before steps were typed (read as a note).
-- Plain ALTER TABLE ... ADD COLUMN of a nullable column: the same in SQLite and PostgreSQL.
ALTER TABLE promotion_events ADD COLUMN step TEXT;
