//! The caller of the HTTP request being served: its [`Principal`] (if any) and the
//! [`StudyScope`] it may see. The authorisation middleware (`crate::http::authz`)
//! binds it to the request's task before any handler runs; the query and retrieve
//! paths of DICOMweb read it with [`scope`]. Outside a request nothing is visible,
//! so a handler that forgot to be wrapped fails closed.

use super::Principal;
use crate::query::{StudyFilter, StudyScope};

/// Who is calling, as the handlers see it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub scope: StudyScope,
}

impl Caller {
    /// Glia itself (maintenance, tests): no principal, every study.
    pub fn system() -> Self {
        Self {
            principal: None,
            scope: StudyScope::All,
        }
    }

    /// Nobody: sees no study.
    pub fn nobody() -> Self {
        Self {
            principal: None,
            scope: StudyScope::Only(StudyFilter::default()),
        }
    }
}

tokio::task_local! {
    static CALLER: Caller;
}

/// Run `fut` as `caller`.
pub async fn run_as<F: std::future::Future>(caller: Caller, fut: F) -> F::Output {
    CALLER.scope(caller, fut).await
}

/// The current caller (nobody outside a request).
pub fn caller() -> Caller {
    CALLER
        .try_with(Caller::clone)
        .unwrap_or_else(|_| Caller::nobody())
}

/// The studies the current caller may see.
pub fn scope() -> StudyScope {
    CALLER
        .try_with(|c| c.scope.clone())
        .unwrap_or_else(|_| Caller::nobody().scope)
}

/// The current caller's principal, if authenticated.
pub fn principal() -> Option<Principal> {
    CALLER.try_with(|c| c.principal.clone()).ok().flatten()
}
