//! Reading validated values out of rows, for the auth tables and the engine's alike: a column
//! that does not parse is a database error naming the column, never a panic.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::fmt::Display;

fn bad_column(col: &str, e: impl Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: format!("bad {col} in the database: {e}").into(),
    }
}

/// The text column `col` of `row`, parsed by `parse` (`AppName::parse`, `Role::parse`, ...).
pub fn parse_col<T, E: Display>(
    row: &SqliteRow,
    col: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, sqlx::Error> {
    let s: String = row.try_get(col)?;
    parse(&s).map_err(|e| bad_column(col, e))
}

/// The nullable text column `col` of `row`, parsed by `parse` when it is not NULL.
pub fn parse_opt<T, E: Display>(
    row: &SqliteRow,
    col: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, sqlx::Error> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| parse(&s).map_err(|e| bad_column(col, e)))
        .transpose()
}

/// Whether `e` is the violation of a unique constraint (a name that is taken).
pub fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .map(|d| d.is_unique_violation())
        .unwrap_or(false)
}
