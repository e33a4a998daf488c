//! Who may call which server function: the one table the server's access check reads for every
//! server function (`server/src/auth.rs`). A server function missing here is refused to
//! everyone, and the server's enumeration test fails until it is added.

use engine::Role;
use leptos::server_fn::ServerFn;

/// What calling a server function needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone, signed in or not (signing in itself).
    Anyone,
    /// A signed-in user with at least this role.
    Role(Role),
}

/// One server function's rule.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The server function's URL path (`/api/promote_release`).
    pub path: &'static str,
    pub need: Need,
    /// The audit log's name for it when it changes something or reveals a secret; `None` for
    /// reads.
    pub audit: Option<&'static str>,
}

fn read<F: ServerFn>() -> Rule {
    Rule {
        path: F::PATH,
        need: Need::Role(Role::Viewer),
        audit: None,
    }
}

fn change<F: ServerFn>(role: Role, action: &'static str) -> Rule {
    Rule {
        path: F::PATH,
        need: Need::Role(role),
        audit: Some(action),
    }
}

/// Every server function of the Console.
pub fn rules() -> Vec<Rule> {
    use crate::pages::{
        apps::*, audit::*, builds::*, env::*, login::*, release::*, releases::*, tokens::*,
        users::*,
    };
    use crate::rollout::*;
    use Role::Deployer;
    vec![
        Rule {
            path: Login::PATH,
            need: Need::Anyone,
            audit: Some("login"),
        },
        change::<Logout>(Role::Viewer, "logout"),
        read::<GetServerInfo>(),
        read::<ListApps>(),
        change::<DeployExample>(Deployer, "app.deploy_example"),
        read::<GetReleases>(),
        change::<PromoteRelease>(Deployer, "release.promote"),
        read::<GetRelease>(),
        change::<RollbackRelease>(Deployer, "release.rollback"),
        read::<GetBuilds>(),
        read::<GetRollout>(),
        change::<CancelRollout>(Deployer, "promotion.cancel"),
        read::<GetEnv>(),
        change::<RevealEnv>(Deployer, "env.reveal"),
        // Previewing compares against the stored values: a viewer could confirm a guessed
        // secret with it, so it needs the role that may reveal them.
        Rule {
            path: PreviewEnv::PATH,
            need: Need::Role(Deployer),
            audit: None,
        },
        change::<ApplyEnv>(Deployer, "env.change"),
        read::<GetAudit>(),
        read::<ListTokens>(),
        change::<CreateToken>(Role::Viewer, "token.create"),
        change::<RevokeToken>(Role::Viewer, "token.revoke"),
        Rule {
            path: ListUsers::PATH,
            need: Need::Role(Role::Admin),
            audit: None,
        },
        change::<CreateUser>(Role::Admin, "user.create"),
        change::<UpdateUser>(Role::Admin, "user.update"),
    ]
}

/// The rule for the server function at `path`, if there is one (asked on every request: the
/// table is made once).
pub fn rule(path: &str) -> Option<Rule> {
    static RULES: std::sync::OnceLock<Vec<Rule>> = std::sync::OnceLock::new();
    RULES
        .get_or_init(rules)
        .iter()
        .find(|r| r.path == path)
        .copied()
}
