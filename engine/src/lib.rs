//! Slipway's deploy engine: apps, builds, immutable releases and their environments, and
//! promotions that roll a release out on a [`runtime::Runtime`] and only complete when the
//! new processes are healthy — rolling back on their own when they are not.
//!
//! It knows nothing of HTTP frameworks or UIs; the Console and the API call [`Engine`].

pub mod artifacts;
mod backoff;
mod coordinator;
mod engine;
pub mod error;
pub mod health;
pub mod lock;
pub mod manifest;
pub mod redact;
pub mod router;
pub mod runtime;
pub mod sandbox;
pub mod store;
pub mod testing;
pub mod traffic;

// The values shared with the Console and the CLI live in the `types` crate, authentication in
// the `auth` crate; these keep their paths here (`engine::ids::ReleaseId`, `crate::model::*`,
// `crate::time::ago`, `engine::auth::ManualClock`, ...).
pub use ::auth;
pub use types::{env, ids, model, names, schema, step, time};

pub use artifacts::{ArchiveLimits, BuildSource};
pub use auth::{
    ApiToken, AuditEntry, AuditFilter, AuditRecord, AuditResult, Auth, AuthConfig, LoginOk,
    Principal, Role, TokenId, TokenLifetime, User, UserUpdate, Username, Via,
};
pub use engine::{
    Engine, EngineConfig, NewRelease, PromoteOptions, DEFAULT_DEADLINE, MAX_DEADLINE,
    MAX_DESCRIPTION,
};
pub use env::{EnvChange, EnvDiff, EnvEdit, EnvEditRow, EnvKey, Environment};
pub use error::{Error, ErrorKind, FieldError, Result};
pub use ids::{BuildId, PromotionId, ReleaseId};
pub use manifest::Manifest;
pub use model::*;
pub use names::{Actor, AppName, ServiceName};
pub use redact::Redactor;
pub use step::{ProcessEvent, Step};
