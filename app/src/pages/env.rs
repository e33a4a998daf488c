//! The Environment editor (`/apps/:app/env`): the newest release's variables, masked until
//! revealed one by one; edit, add, remove or paste a `.env` block; preview the change in
//! Convox's words; **Apply Changes** makes the release and promotes it in one engine step.
//! An edit based on a release that is no longer the newest is refused with what changed, and
//! the user's edits stay on the page.

use crate::error::FieldMessage;
use crate::live::LiveRegion;
use crate::rollout::{RolloutPanel, RolloutView};
use crate::{components::ErrorList, AppError};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use serde::{Deserialize, Serialize};

/// What the editor opens on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvEditorData {
    pub app: String,
    /// The newest release: the one the edit is based on. `None` for an app without releases.
    pub base: Option<String>,
    /// The active release, when there is one.
    pub active: Option<String>,
    /// Whether there is a build to run (else Apply Changes only makes the release).
    pub has_build: bool,
    /// Variable names; values are only sent when revealed.
    pub keys: Vec<String>,
    /// Whether the caller may change and reveal (viewers get a read-only list).
    pub can_deploy: bool,
}

/// One row of the editor as the form submits it (`rows[N][key]`, ...): plain strings, so that
/// it posts the same with and without JavaScript.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRowForm {
    #[serde(default)]
    pub key: String,
    /// The key the row showed when the editor opened; empty for an added row.
    #[serde(default)]
    pub original: String,
    #[serde(default)]
    pub value: String,
    /// Present while the value field still shows the masked, unchanged value.
    #[serde(default)]
    pub masked: Option<String>,
    /// Present (checkbox) when the variable is to be removed.
    #[serde(default)]
    pub remove: Option<String>,
}

/// One key's change in a preview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    /// `add`, `change` or `remove`.
    pub op: String,
    pub key: String,
}

/// What Apply Changes would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvPreview {
    /// Convox's words: `env add:FOO change:BAR remove:BAZ`.
    pub description: String,
    pub changes: Vec<KeyChange>,
}

/// What Apply Changes did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvApplied {
    pub release: String,
    pub description: String,
    /// The rollout started, unless there is no build to run yet.
    pub promotion: Option<String>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{EnvEditorData, EnvPreview, EnvRowForm, KeyChange};
    use engine::{AppName, Engine, EnvEdit, EnvEditRow, Environment, ReleaseId};

    pub async fn editor_data(
        engine: &Engine,
        app: &AppName,
    ) -> Result<EnvEditorData, engine::Error> {
        let active = engine.app(app).await?.active_release;
        let newest = engine.newest_release(app).await?;
        Ok(EnvEditorData {
            app: app.to_string(),
            base: newest.as_ref().map(|r| r.id.to_string()),
            active: active.map(|a| a.to_string()),
            has_build: newest.as_ref().is_some_and(|r| r.build.is_some()),
            keys: newest
                .map(|r| r.env.iter().map(|(k, _)| k.to_string()).collect())
                .unwrap_or_default(),
            can_deploy: false,
        })
    }

    /// The form's rows as the engine's edit: a masked, untouched value keeps the original.
    pub fn to_edit(rows: Vec<EnvRowForm>, paste: String) -> EnvEdit {
        EnvEdit {
            rows: rows
                .into_iter()
                .map(|r| EnvEditRow {
                    value: (r.masked.is_none() || !r.value.is_empty()).then_some(r.value),
                    original: (!r.original.is_empty()).then_some(r.original),
                    remove: r.remove.is_some(),
                    key: r.key,
                })
                .collect(),
            paste,
        }
    }

    /// The release the editor was opened on (empty: the app had none).
    pub fn base_id(base: &str) -> Result<Option<ReleaseId>, engine::Error> {
        Ok((!base.is_empty())
            .then(|| ReleaseId::parse(base))
            .transpose()?)
    }

    pub fn preview(old: &Environment, new: &Environment) -> EnvPreview {
        let diff = old.diff(new);
        let mut changes = Vec::new();
        for (op, keys) in [
            ("add", &diff.added),
            ("change", &diff.changed),
            ("remove", &diff.removed),
        ] {
            changes.extend(keys.iter().map(|k| KeyChange {
                op: op.into(),
                key: k.to_string(),
            }));
        }
        EnvPreview {
            description: diff.description(),
            changes,
        }
    }
}

#[server(endpoint = "get_env")]
pub async fn get_env(app: String) -> Result<EnvEditorData, AppError> {
    let ctx = crate::context::console_context()?;
    let app = crate::context::app_name(&app)?;
    let mut data = ssr::editor_data(&ctx.engine, &app).await?;
    data.can_deploy = crate::context::can_deploy();
    Ok(data)
}

/// The value of one variable of a release, for the editor's Reveal.
#[server(endpoint = "reveal_env")]
pub async fn reveal_env(app: String, release: String, key: String) -> Result<String, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Deployer)?;
    let app = crate::context::app_name(&app)?;
    let actor = crate::context::actor()?;
    let release = engine::ReleaseId::parse(&release)?;
    // Audited by the engine, naming this release and key, before the value is returned.
    Ok(ctx
        .engine
        .reveal_env_value(&app, &release, &key, &actor)
        .await?)
}

/// What Apply Changes would do with these edits.
#[server(endpoint = "preview_env")]
pub async fn preview_env(
    app: String,
    #[server(default)] base: String,
    #[server(default)] rows: Vec<EnvRowForm>,
    #[server(default)] paste: String,
) -> Result<EnvPreview, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Deployer)?;
    let app = crate::context::app_name(&app)?;
    let edit = ssr::to_edit(rows, paste);
    let (base, new) = ctx
        .engine
        .plan_env_edit(&app, ssr::base_id(&base)?.as_ref(), &edit)
        .await?;
    let old = base.map(|b| b.env).unwrap_or_default();
    Ok(ssr::preview(&old, &new))
}

/// Creates the release with these edits and promotes it (one engine step).
#[server(endpoint = "apply_env")]
pub async fn apply_env(
    app: String,
    #[server(default)] base: String,
    #[server(default)] rows: Vec<EnvRowForm>,
    #[server(default)] paste: String,
) -> Result<EnvApplied, AppError> {
    let ctx = crate::context::console_context_for(engine::Role::Deployer)?;
    let app = crate::context::app_name(&app)?;
    let actor = crate::context::actor()?;
    let edit = ssr::to_edit(rows, paste);
    let (release, promotion) = ctx
        .engine
        .apply_env_edit(
            &app,
            ssr::base_id(&base)?.as_ref(),
            &edit,
            &engine::PromoteOptions::default(),
            &actor,
        )
        .await?;
    Ok(EnvApplied {
        release: release.id.to_string(),
        description: release.description,
        promotion: promotion.map(|p| p.id.to_string()),
    })
}

#[component]
pub fn EnvPage() -> impl IntoView {
    let params = use_params_map();
    let app = move || params.read().get("app").unwrap_or_default();
    let data = Resource::new(app, |app| async move {
        let data = get_env(app.clone()).await?;
        let rollout = crate::rollout::get_rollout(app).await?;
        Ok::<_, AppError>((data, rollout))
    });
    // The title is fixed for the page: a plain string, never read after the render ended.
    let app_now = params.read_untracked().get("app").unwrap_or_default();
    let title = format!("{} environment", app_now);
    view! {
        <Title text=title />
        {move || view! { <crate::components::AppNav app=app() current="Environment" /> }}
        <div class="page-header">
            <h1>"Environment of " <code>{app}</code></h1>
        </div>
        <crate::components::ActionError />
        <Suspense fallback=|| view! { <p class="muted">"Loading the environment…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>
                {move || Suspend::new(async move {
                    data.await.map(|(data, rollout): (EnvEditorData, Option<RolloutView>)| {
                        let app = data.app.clone();
                        let panel = rollout.map(|r| view! { <RolloutPanel app=app.clone() rollout=r /> });
                        let editor = if data.can_deploy {
                            view! { <EnvEditor data /> }.into_any()
                        } else {
                            view! { <ReadOnlyEnv data /> }.into_any()
                        };
                        view! {
                            {editor}
                            <LiveRegion app=Some(app.clone()) id="env-rollout".to_string()>
                                {panel}
                            </LiveRegion>
                        }
                    })
                })}
            </ErrorBoundary>
        </Suspense>
    }
}

/// What a viewer sees: the names, values masked, and why nothing can be changed.
#[component]
fn ReadOnlyEnv(data: EnvEditorData) -> impl IntoView {
    let list = if data.keys.is_empty() {
        view! { <p class="muted">"No variables."</p> }.into_any()
    } else {
        view! {
            <ul class="env-list" data-testid="env">
                {data.keys.into_iter().map(|k| view! { <li><code>{format!("{k}=****")}</code></li> }).collect_view()}
            </ul>
        }
        .into_any()
    };
    view! {
        <section class="card">
            <p class="muted">"Changing or revealing variables needs the deployer role."</p>
            {list}
        </section>
    }
}

/// One editor row's state in the browser.
#[derive(Clone, Copy)]
struct Row {
    /// Position in the form (`rows[index][...]`); rows are only ever appended.
    index: usize,
    /// Which opening of the editor the row belongs to (it starts over after Apply Changes).
    generation: u64,
    original: StoredValue<Option<String>>,
    key: RwSignal<String>,
    value: RwSignal<String>,
    masked: RwSignal<bool>,
    remove: RwSignal<bool>,
}

impl Row {
    fn new(generation: u64, index: usize, original: Option<String>) -> Row {
        let masked = original.is_some();
        Row {
            index,
            generation,
            key: RwSignal::new(original.clone().unwrap_or_default()),
            original: StoredValue::new(original),
            value: RwSignal::new(String::new()),
            masked: RwSignal::new(masked),
            remove: RwSignal::new(false),
        }
    }

    fn form(&self) -> EnvRowForm {
        EnvRowForm {
            key: self.key.get_untracked(),
            original: self.original.get_value().unwrap_or_default(),
            value: self.value.get_untracked(),
            masked: self.masked.get_untracked().then(|| "1".into()),
            remove: self.remove.get_untracked().then(|| "1".into()),
        }
    }
}

/// The variables of `data` plus one empty row to add a variable (also without JavaScript).
fn rows_for(data: &EnvEditorData, generation: u64) -> Vec<Row> {
    let mut rows: Vec<Row> = data
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| Row::new(generation, i, Some(k.clone())))
        .collect();
    rows.push(Row::new(generation, rows.len(), None));
    rows
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Preview,
    Apply,
}

#[island(lazy)]
fn EnvEditor(data: EnvEditorData) -> impl IntoView {
    let app = data.app.clone();
    let data = RwSignal::new(data);
    let initial_base = data.get_untracked().base.unwrap_or_default();
    let rows = RwSignal::new(rows_for(&data.get_untracked(), 0));
    let paste = RwSignal::new(String::new());
    let preview = ServerAction::<PreviewEnv>::new();
    let apply = ServerAction::<ApplyEnv>::new();
    // Which of the two answered last: its errors are the ones shown next to the fields.
    let last = RwSignal::new(Last::Apply);
    // A preview is only shown for the edits it was made from.
    let preview_current = RwSignal::new(false);
    let edited = move || preview_current.set(false);

    let error = move || match last.get() {
        Last::Preview => preview.value().get().and_then(Result::err),
        Last::Apply => apply.value().get().and_then(Result::err),
    };
    let field_error = move |field: String| {
        move || match error() {
            Some(AppError::Fields(fields)) => fields
                .into_iter()
                .find(|f: &FieldMessage| f.field == field)
                .map(|f| f.message),
            _ => None,
        }
    };

    // After Apply Changes worked, the editor starts over from the new newest release.
    Effect::new(move |_| {
        if let Some(Ok(_)) = apply.value().get() {
            let app = data.get_untracked().app;
            leptos::task::spawn_local(async move {
                if let Ok(fresh) = get_env(app).await {
                    let generation = rows.with_untracked(|r| r.first().map_or(0, |r| r.generation));
                    rows.set(rows_for(&fresh, generation + 1));
                    paste.set(String::new());
                    data.set(fresh);
                }
            });
        }
    });
    Effect::new(move |_| {
        if apply.version().get() > 0 {
            last.set(Last::Apply);
        }
    });

    let add_row = move |_| {
        rows.update(|rows| {
            let index = rows.len();
            let generation = rows.first().map_or(0, |r| r.generation);
            rows.push(Row::new(generation, index, None));
        });
        edited();
    };
    let run_preview = move |_| {
        last.set(Last::Preview);
        preview_current.set(true);
        preview.dispatch(PreviewEnv {
            app: data.get_untracked().app,
            base: data.get_untracked().base.unwrap_or_default(),
            rows: rows.get_untracked().iter().map(Row::form).collect(),
            paste: paste.get_untracked(),
        });
    };

    let banner = move || {
        let d = data.get();
        match (&d.base, &d.active) {
            (Some(newest), Some(active)) if newest != active => Some(view! {
                <p class="notice notice-warning" role="note" data-testid="not-active">
                    "This is the environment of the newest release " <code>{newest.clone()}</code>
                    ", which is not the active one (" <code>{active.clone()}</code>
                    "). Apply Changes promotes the result."
                </p>
            }
            .into_any()),
            (Some(newest), None) => Some(view! {
                <p class="notice notice-warning" role="note" data-testid="not-active">
                    "This is the environment of the newest release " <code>{newest.clone()}</code>
                    ", which has never been promoted."
                </p>
            }
            .into_any()),
            _ => None,
        }
    };
    let outcome = move || {
        if last.get() == Last::Preview {
            return match error() {
                Some(AppError::Fields(_)) | None => None,
                Some(e) => Some(
                    view! { <p class="notice notice-error" role="alert" data-testid="env-result">{e.to_string()}</p> }
                        .into_any(),
                ),
            };
        }
        apply.value().get().map(|result| match result {
            Ok(done) => {
                view! {
                    <p class="notice notice-success" role="status" data-testid="env-result">
                        "Created " <code>{done.release}</code> " (" <code>{done.description}</code> ")"
                        {match done.promotion {
                            Some(p) => format!(" and started promotion {p}."),
                            None => ". There is no build yet, so nothing was promoted.".to_string(),
                        }}
                    </p>
                }
                .into_any()
            }
            Err(AppError::Fields(_)) => {
                view! {
                    <p class="notice notice-error" role="alert" data-testid="env-result">
                        "Nothing was changed: fix the fields marked below."
                    </p>
                }
                .into_any()
            }
            Err(e @ AppError::Stale(_)) => {
                view! {
                    <div class="notice notice-error" role="alert" data-testid="env-result">
                        <p>"Nothing was changed: " {e.to_string()} "."</p>
                        <p>
                            "Your edits are still below. "
                            <a href="">"Reload the editor"</a>
                            " to start from the newest release."
                        </p>
                    </div>
                }
                .into_any()
            }
            Err(e) => {
                view! { <p class="notice notice-error" role="alert" data-testid="env-result">{e.to_string()}</p> }
                    .into_any()
            }
        })
    };
    let preview_view = move || {
        if !preview_current.get() || last.get() != Last::Preview {
            return None;
        }
        preview.value().get().and_then(Result::ok).map(|p| {
            let body = if p.changes.is_empty() {
                view! { <p>"Nothing would change."</p> }.into_any()
            } else {
                view! {
                    <p>"Description: " <code data-testid="env-description">{p.description}</code></p>
                    <ul class="diff">
                        {p.changes
                            .into_iter()
                            .map(|c| {
                                let class = format!("diff-{}", c.op);
                                view! { <li class=class>{c.op} " " <code>{c.key}</code></li> }
                            })
                            .collect_view()}
                    </ul>
                }
                .into_any()
            };
            view! {
                <section class="card env-preview" aria-labelledby="preview-title" data-testid="env-preview">
                    <h2 id="preview-title">"Preview"</h2>
                    {body}
                </section>
            }
        })
    };

    let env_error = field_error("env".into());
    let table = {
        let app = app.clone();
        view! {
            <div class="table-wrap card">
                <table class="table env-table" data-testid="env-editor">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Value"</th>
                            <th scope="col">"Remove"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || rows.get() key=|row| (row.generation, row.index) let:row>
                            <EnvRow app=app.clone() base=data row field_error edited />
                        </For>
                    </tbody>
                </table>
                {move || env_error().map(|m| view! { <p class="field-error" role="alert">{m}</p> })}
            </div>
        }
        .into_any()
    };
    let paste_error = field_error("paste".into());
    let paste_invalid = {
        let e = field_error("paste".into());
        move || e().is_some().then_some("true")
    };
    let paste_block = view! {
            <details class="card paste">
                <summary>"Paste a .env block"</summary>
                <label for="env-paste">
                    "One " <code>"KEY=VALUE"</code> " per line; these variables are set over the ones above."
                </label>
                <textarea
                    id="env-paste"
                    name="paste"
                    rows="6"
                    spellcheck="false"
                    aria-invalid=paste_invalid
                    aria-describedby="env-paste-error"
                    prop:value=move || paste.get()
                    on:input=move |ev| {
                        paste.set(event_target_value(&ev));
                        edited();
                    }
                ></textarea>
                <p class="field-error" id="env-paste-error">{paste_error}</p>
            </details>
    }
    .into_any();
    let apply_label = move || {
        if apply.pending().get() {
            "Applying…"
        } else {
            "Apply Changes"
        }
    };
    view! {
        {banner}
        {outcome}
        <ActionForm action=apply>
            <input type="hidden" name="app" value=app.clone() />
            <input
                type="hidden"
                name="base"
                value=initial_base
                prop:value=move || data.get().base.unwrap_or_default()
            />
            {table}
            <div class="env-actions">
                <button type="button" class="button button-secondary needs-js" on:click=add_row>"Add variable"</button>
            </div>
            {paste_block}
            {preview_view}
            <div class="env-actions">
                <button type="button" class="button button-secondary needs-js" on:click=run_preview>"Preview changes"</button>
                <button type="submit" class="button button-primary" disabled=move || apply.pending().get()>
                    {apply_label}
                </button>
            </div>
        </ActionForm>
    }
}

/// One variable: name, value (masked until revealed or typed over) and Remove.
#[component]
fn EnvRow<F, E>(
    app: String,
    base: RwSignal<EnvEditorData>,
    row: Row,
    field_error: impl Fn(String) -> F + Copy + 'static,
    edited: E,
) -> impl IntoView
where
    F: Fn() -> Option<String> + Send + Sync + 'static,
    E: Fn() + Copy + Send + Sync + 'static,
{
    let i = row.index;
    let name = move |field: &str| format!("rows[{i}][{field}]");
    let key_error = field_error(format!("rows.{i}.key"));
    let value_error = field_error(format!("rows.{i}.value"));
    let key_error_id = format!("env-{i}-key-error");
    let value_error_id = format!("env-{i}-value-error");
    let original = row.original.get_value();
    let is_new = original.is_none();
    let reveal = move |_| {
        let (app, release) = (app.clone(), base.get_untracked().base.unwrap_or_default());
        let Some(key) = row.original.get_value() else {
            return;
        };
        leptos::task::spawn_local(async move {
            if let Ok(value) = reveal_env(app, release, key).await {
                row.value.set(value);
                row.masked.set(false);
            }
        });
    };
    let key_label = if is_new {
        format!("Name of new variable {}", i + 1)
    } else {
        format!("Name of {}", original.clone().unwrap_or_default())
    };
    let value_label = if is_new {
        format!("Value of new variable {}", i + 1)
    } else {
        format!("Value of {}", original.clone().unwrap_or_default())
    };
    let remove_label = format!(
        "Remove {}",
        original.clone().unwrap_or_else(|| "this variable".into())
    );
    let has_key_error = {
        let e = field_error(format!("rows.{i}.key"));
        move || e().is_some()
    };
    let has_value_error = {
        let e = field_error(format!("rows.{i}.value"));
        move || e().is_some()
    };
    view! {
        <tr class:removed=move || row.remove.get() data-key=original.clone().unwrap_or_default()>
            <td>
                <input type="hidden" name=name("original") value=original.clone().unwrap_or_default() />
                <input
                    type="text"
                    class="input mono"
                    name=name("key")
                    aria-label=key_label
                    autocomplete="off"
                    spellcheck="false"
                    placeholder=is_new.then_some("NEW_VARIABLE")
                    value=original.clone().unwrap_or_default()
                    aria-invalid=move || has_key_error().then_some("true")
                    aria-describedby=key_error_id.clone()
                    prop:value=move || row.key.get()
                    on:input=move |ev| {
                        row.key.set(event_target_value(&ev));
                        edited();
                    }
                />
                <p class="field-error" id=key_error_id>{key_error}</p>
            </td>
            <td>
                <div class="value-cell">
                    <input
                        type="text"
                        class="input mono"
                        name=name("value")
                        aria-label=value_label
                        autocomplete="off"
                        spellcheck="false"
                        placeholder=move || row.masked.get().then_some("•••••••• (unchanged)")
                        aria-invalid=move || has_value_error().then_some("true")
                        aria-describedby=value_error_id.clone()
                        prop:value=move || row.value.get()
                        on:input=move |ev| {
                            row.value.set(event_target_value(&ev));
                            row.masked.set(false);
                            edited();
                        }
                    />
                    {move || row.masked.get().then(|| view! {
                        <input type="hidden" name=name("masked") value="1" />
                    })}
                    {(!is_new).then(|| view! {
                        <button
                            type="button"
                            class="button button-small needs-js"
                            disabled=move || !row.masked.get()
                            on:click=reveal.clone()
                        >
                            "Reveal"
                        </button>
                    })}
                </div>
                <p class="field-error" id=value_error_id>{value_error}</p>
            </td>
            <td>
                <label class="checkbox">
                    <input
                        type="checkbox"
                        name=name("remove")
                        value="1"
                        aria-label=remove_label
                        prop:checked=move || row.remove.get()
                        on:change=move |ev| {
                            row.remove.set(event_target_checked(&ev));
                            edited();
                        }
                    />
                    <span aria-hidden="true">"Remove"</span>
                </label>
            </td>
        </tr>
    }
    .into_any()
}
