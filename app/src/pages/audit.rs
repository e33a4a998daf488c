//! The Audit log (`/audit`): who did what, to which app and target, and how it ended, newest
//! first. Filters are a plain GET form (`?app=&actor=&action=`), pages are keyset links
//! (`?before=<seq>`), so the page works the same without JavaScript.

use crate::{components::ErrorList, AppError};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};
use types::AuditResult;

/// Entries per page.
pub const ENTRIES_PER_PAGE: u32 = 50;

/// One entry of the audit log as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ago: String,
    pub at_exact: String,
    pub actor: String,
    pub app: Option<String>,
    pub action: String,
    pub target: Option<String>,
    /// How it ended; a failure says why (an error message, never a secret).
    pub result: AuditResult,
}

/// One page of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditData {
    pub rows: Vec<AuditRow>,
    /// `before` for the next (older) page, if there is one.
    pub next_before: Option<i64>,
}

/// The filters of the page, as in its query string (empty fields are `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub app: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub before: Option<i64>,
}

impl AuditQuery {
    /// The page's URL with these filters, and `before` for paging.
    pub fn href(&self, before: Option<i64>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (name, value) in [
            ("app", &self.app),
            ("actor", &self.actor),
            ("action", &self.action),
        ] {
            if let Some(v) = value {
                pairs.push((name, v.clone()));
            }
        }
        if let Some(b) = before {
            pairs.push(("before", b.to_string()));
        }
        if pairs.is_empty() {
            return "/audit".into();
        }
        let query: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", encode(&v)))
            .collect();
        format!("/audit?{}", query.join("&"))
    }

    /// Whether any filter is set.
    pub fn is_filtered(&self) -> bool {
        self.app.is_some() || self.actor.is_some() || self.action.is_some()
    }
}

/// Percent-encodes a query string value (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{AuditData, AuditRow, ENTRIES_PER_PAGE};
    use engine::{time, Actor, AppName, AuditFilter, Auth};

    /// Longest actor and action filters accepted.
    const ACTOR_MAX: usize = 64;
    const ACTION_MAX: usize = 100;

    fn invalid(field: &str, message: &str) -> engine::Error {
        engine::Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A text filter: trimmed, `None` when empty; too long or with control characters is
    /// `Error::Invalid` (the message never repeats the input).
    fn text(
        field: &str,
        value: Option<String>,
        max: usize,
    ) -> Result<Option<String>, engine::Error> {
        let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        if value.chars().count() > max {
            return Err(invalid(field, &format!("must be at most {max} characters")));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid(field, "must not contain control characters"));
        }
        Ok(Some(value))
    }

    /// The engine's filter for the page's filters; a bad one is `Error::Invalid`.
    pub fn filter(
        app: Option<String>,
        actor: Option<String>,
        action: Option<String>,
        before: Option<i64>,
    ) -> Result<AuditFilter, engine::Error> {
        let app = match text("app", app, 64)? {
            Some(a) => Some(AppName::parse(&a)?),
            None => None,
        };
        Ok(AuditFilter {
            actor: text("actor", actor, ACTOR_MAX)?.map(Actor::new),
            app,
            action: text("action", action, ACTION_MAX)?,
            before_seq: before,
            // One more than shown, to know whether there is an older page.
            limit: ENTRIES_PER_PAGE + 1,
        })
    }

    pub async fn audit_page(auth: &Auth, filter: &AuditFilter) -> Result<AuditData, engine::Error> {
        let records = auth.list_audit(filter).await?;
        let now = engine::now_ms();
        let per_page = ENTRIES_PER_PAGE as usize;
        let more = records.len() > per_page;
        let rows: Vec<AuditRow> = records
            .into_iter()
            .take(per_page)
            .map(|r| AuditRow {
                seq: r.seq,
                at_ago: time::ago(r.at, now),
                at_exact: time::exact(r.at),
                actor: r.actor,
                app: r.app.map(|a| a.to_string()),
                action: r.action,
                target: r.target,
                result: r.result,
            })
            .collect();
        let next_before = if more {
            rows.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(AuditData { rows, next_before })
    }
}

/// A page of the audit log, newest first: entries about `app`, by `actor`, whose action
/// starts with `action`, older than `before` (the last `seq` of the previous page).
#[server(endpoint = "get_audit")]
pub async fn get_audit(
    app: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    before: Option<i64>,
) -> Result<AuditData, AppError> {
    let ctx = crate::context::console_context()?;
    let filter = ssr::filter(app, actor, action, before)?;
    Ok(ssr::audit_page(&ctx.auth, &filter).await?)
}

/// The page's filters from its query string.
fn audit_query(get: impl Fn(&str) -> Option<String>) -> AuditQuery {
    let field = |name: &str| {
        get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    AuditQuery {
        app: field("app"),
        actor: field("actor"),
        action: field("action"),
        before: field("before").and_then(|b| b.parse().ok()),
    }
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let current = move || audit_query(|name| query.read().get(name));
    let page = Resource::new(current, |q| get_audit(q.app, q.actor, q.action, q.before));
    let shown = audit_query(|name| query.read_untracked().get(name));
    view! {
        <Title text="Audit log" />
        <div class="page-header">
            <h1>"Audit log"</h1>
        </div>
        <AuditFilters query=shown.clone() />
        <Suspense fallback=|| view! { <p class="muted">"Loading the audit log…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || {
                    let query = shown.clone();
                    Suspend::new(async move {
                        page.await.map(|data| view! { <AuditTable data query /> })
                    })
                }}
            </ErrorBoundary>
        </Suspense>
    }
}

/// The filters: a GET form, so the filtered page has its own address.
#[component]
fn AuditFilters(query: AuditQuery) -> impl IntoView {
    let clear = query
        .is_filtered()
        .then(|| view! { <a class="button button-secondary" href="/audit">"Clear"</a> });
    view! {
        <form method="get" action="/audit" class="card filters" role="search" aria-label="Filter the audit log">
            <div class="field">
                <label for="audit-app">"App"</label>
                <input
                    id="audit-app"
                    class="input"
                    name="app"
                    value=query.app.unwrap_or_default()
                    placeholder="hello"
                    autocomplete="off"
                />
            </div>
            <div class="field">
                <label for="audit-actor">"Actor"</label>
                <input
                    id="audit-actor"
                    class="input"
                    name="actor"
                    value=query.actor.unwrap_or_default()
                    placeholder="admin"
                    autocomplete="off"
                />
            </div>
            <div class="field">
                <label for="audit-action">"Action starts with"</label>
                <input
                    id="audit-action"
                    class="input"
                    name="action"
                    value=query.action.unwrap_or_default()
                    placeholder="release."
                    autocomplete="off"
                />
            </div>
            <div class="filter-actions">
                <button type="submit" class="button">"Filter"</button>
                {clear}
            </div>
        </form>
    }
}

/// The result of an entry, styled by how it ended.
fn result_class(result: &AuditResult) -> &'static str {
    match result {
        AuditResult::Ok => "status status-ok",
        AuditResult::Denied => "status status-denied",
        AuditResult::Failed(_) => "status status-failed",
    }
}

#[component]
fn AuditTable(data: AuditData, query: AuditQuery) -> impl IntoView {
    let newer = query.before.map(|_| {
        view! { <a href=query.href(None)>"← Newest entries"</a> }
    });
    let older = data.next_before.map(|b| {
        view! { <a href=query.href(Some(b)) data-testid="audit-older">"Older entries →"</a> }
    });
    if data.rows.is_empty() {
        let message = if query.is_filtered() {
            "No entries match these filters."
        } else {
            "Nothing has been recorded yet."
        };
        return view! {
            <section class="card empty-state" data-testid="audit-empty">
                <p>{message}</p>
            </section>
            <nav class="pager" aria-label="Pages">{newer}</nav>
        }
        .into_any();
    }
    view! {
        <div class="table-wrap card">
            <table class="table audit-table" data-testid="audit">
                <caption class="visually-hidden">"Audit log entries, newest first"</caption>
                <thead>
                    <tr>
                        <th scope="col">"Time"</th>
                        <th scope="col">"Actor"</th>
                        <th scope="col">"App"</th>
                        <th scope="col">"Action"</th>
                        <th scope="col">"Target"</th>
                        <th scope="col">"Result"</th>
                    </tr>
                </thead>
                <tbody>
                    {data
                        .rows
                        .into_iter()
                        .map(|r| {
                            let class = result_class(&r.result);
                            let result_word = r.result.as_str();
                            let detail = r
                                .result
                                .detail()
                                .filter(|d| !d.is_empty())
                                .map(|d| view! { <br /><span class="muted small">{d.to_owned()}</span> });
                            view! {
                                <tr data-seq=r.seq data-result=result_word>
                                    <td>
                                        <span title=r.at_exact.clone()>{r.at_ago}</span>
                                        <br />
                                        <span class="muted small">{r.at_exact}</span>
                                    </td>
                                    <td>{r.actor}</td>
                                    <td>{r.app.map(|a| view! { <code>{a}</code> })}</td>
                                    <td><code>{r.action}</code></td>
                                    <td class="audit-target">{r.target.map(|t| view! { <code>{t}</code> })}</td>
                                    <td><span class=class>{result_word}</span>{detail}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
        <nav class="pager" aria-label="Pages">{newer}{older}</nav>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_keep_the_filters() {
        assert_eq!(AuditQuery::default().href(None), "/audit");
        let q = AuditQuery {
            app: Some("hello".into()),
            actor: None,
            action: Some("release. x&y".into()),
            before: Some(7),
        };
        assert_eq!(
            q.href(Some(3)),
            "/audit?app=hello&action=release.%20x%26y&before=3"
        );
        assert_eq!(q.href(None), "/audit?app=hello&action=release.%20x%26y");
    }

    #[test]
    fn query_fields_are_trimmed() {
        let q = audit_query(|name| match name {
            "app" => Some(" hello ".into()),
            "actor" => Some("".into()),
            "before" => Some("x".into()),
            _ => None,
        });
        assert_eq!(
            q,
            AuditQuery {
                app: Some("hello".into()),
                ..AuditQuery::default()
            }
        );
    }

    #[test]
    fn table_rows_carry_their_seq_and_paging_keeps_filters() {
        let row = |seq: i64, result: AuditResult| AuditRow {
            seq,
            at_ago: "just now".into(),
            at_exact: "2026-01-01 00:00:00 UTC".into(),
            actor: "admin".into(),
            app: Some("hello".into()),
            action: "release.promote".into(),
            target: Some("RABCDEFGHIJ".into()),
            result,
        };
        let data = AuditData {
            rows: vec![
                row(9, AuditResult::Ok),
                row(8, AuditResult::Failed("it broke".into())),
            ],
            next_before: Some(8),
        };
        let query = AuditQuery {
            app: Some("hello".into()),
            before: Some(10),
            ..AuditQuery::default()
        };
        let html = view! { <AuditTable data query /> }.to_html();
        assert!(html.contains(r#"data-testid="audit""#), "{html}");
        assert!(html.contains(r#"data-seq="9""#), "{html}");
        assert!(html.contains(r#"class="status status-failed""#), "{html}");
        assert!(html.contains("it broke"), "{html}");
        assert!(
            html.contains(r#"href="/audit?app=hello&amp;before=8""#),
            "{html}"
        );
        assert!(html.contains(r#"href="/audit?app=hello""#), "{html}");
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn bad_filters_are_readable_errors() {
        let err = ssr::filter(Some("Bad App".into()), None, None, None).unwrap_err();
        assert_eq!(err.kind(), engine::ErrorKind::Invalid);
        let err = ssr::filter(None, Some("x".repeat(65)), None, None).unwrap_err();
        assert_eq!(err.kind(), engine::ErrorKind::Invalid);
        let f = ssr::filter(
            Some(" ".into()),
            Some("alice".into()),
            Some("release.".into()),
            Some(9),
        )
        .unwrap();
        assert_eq!(f.app, None);
        assert_eq!(f.actor.map(|a| a.to_string()).as_deref(), Some("alice"));
        assert_eq!(f.action.as_deref(), Some("release."));
        assert_eq!(f.before_seq, Some(9));
    }
}
