-- API tokens may expire: a token is refused from `expires_at` on (milliseconds since the Unix
-- epoch, UTC), like a revoked one. NULL: it never expires (every token made before this).
-- Plain ALTER TABLE ... ADD COLUMN of a nullable column: the same in SQLite and PostgreSQL.
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
