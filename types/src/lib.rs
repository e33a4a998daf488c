//! Slipway's shared values, used by the engine, the Console (server and browser) and the CLI:
//! validated names and IDs (newtypes that only ever hold valid values), environments and
//! their diff, the records the API returns, roles and the auth records the API shows,
//! relative times, the steps of a rollout and what happens to running processes (typed
//! events), and the API's error body. No I/O, no async: it compiles for
//! `wasm32-unknown-unknown`.
//!
//! Features: `gen` generates IDs (a CSPRNG, for the engine); `pack` packs a source directory
//! into a `.tar.gz` and describes a git work tree (for the engine and the CLI).

#[macro_use]
mod newtype;

pub mod api;
pub mod auth;
pub mod env;
pub mod error;
pub mod ids;
pub mod model;
pub mod names;
#[cfg(feature = "pack")]
pub mod pack;
pub mod schema;
pub mod step;
pub mod time;

pub use auth::{
    ApiToken, AuditEntry, AuditFilter, AuditRecord, AuditResult, Principal, Refusal, Role, TokenId,
    TokenLifetime, User, Username, Via,
};
pub use env::{EnvChange, EnvDiff, EnvEdit, EnvEditRow, EnvKey, Environment};
pub use error::{Error, ErrorKind, FieldError, Result};
pub use ids::{BuildId, PromotionId, ReleaseId};
pub use model::*;
pub use names::{Actor, AppName, ServiceName};
pub use step::{ProcessEvent, Step};
