//! Small building blocks shared by pages.

use crate::AppError;
use leptos::prelude::*;

/// Shows the errors caught by an `<ErrorBoundary>` as readable messages.
#[component]
pub fn ErrorList(errors: ArcRwSignal<Errors>) -> impl IntoView {
    view! {
        <div class="notice notice-error" role="alert">
            <ul>
                {move || {
                    errors
                        .get()
                        .into_iter()
                        .map(|(_, error)| {
                            let message = error
                                .downcast_ref::<AppError>()
                                .map(ToString::to_string)
                                .unwrap_or_else(|| error.to_string());
                            view! { <li>{message}</li> }
                        })
                        .collect_view()
                }}
            </ul>
        </div>
    }
}
