//! The authorisation rules of every HTTP route, in one table ([`RULES`]), and the
//! study scope of each role ([`scope_for`]). The HTTP middleware
//! (`crate::http::authz`) looks every request up here; a route without a rule is
//! refused for everybody, and the role-matrix test walks this table and the served
//! routes so that a new route without a rule fails CI.

use super::{Principal, Role};
use crate::query::{StudyFilter, StudyScope};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Anyone, without a token (login, the OpenAPI spec, health, the viewer's files).
    Public,
    /// Any authenticated, active user; patient data is still filtered by the caller's
    /// study scope.
    AnyUser,
    /// Only users with one of these roles.
    Roles(&'static [Role]),
}

/// The rule of one route (or family of routes).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// HTTP method, or `*` for any.
    pub method: &'static str,
    /// Path pattern: literal segments, `:name` for one segment, a final `*` for any
    /// rest (including none).
    pub path: &'static str,
    pub allow: Allow,
    /// Whether a signed short-lived link token (`?token=`, or the viewer's cookie set
    /// from it) is accepted in place of a bearer header (GET only).
    pub link: bool,
    /// The audit action of an access to patient data through this route (`None`:
    /// the route holds no patient data, or its handler audits in more detail).
    pub audit: Option<&'static str>,
}

const ADMIN: &[Role] = &[Role::Admin];
const STAFF_ADMIN: &[Role] = &[Role::Admin, Role::CentreManager];
const READERS: &[Role] = &[Role::Admin, Role::Radiologist];
/// STOW-RS: technician or above.
const SENDERS: &[Role] = &[
    Role::Admin,
    Role::Radiologist,
    Role::Technician,
    Role::CentreManager,
];

const fn rule(
    method: &'static str,
    path: &'static str,
    allow: Allow,
    link: bool,
    audit: Option<&'static str>,
) -> Rule {
    Rule {
        method,
        path,
        allow,
        link,
        audit,
    }
}

/// Every route's rule; the first matching one applies.
pub const RULES: &[Rule] = &[
    // No patient data, no token.
    rule("GET", "/health", Allow::Public, false, None),
    rule("GET", "/api/health", Allow::Public, false, None),
    rule("GET", "/metrics", Allow::Public, false, None),
    rule("GET", "/api/openapi.json", Allow::Public, false, None),
    rule("GET", "/api/docs*", Allow::Public, false, None),
    // The viewer's own files (its handler answers other methods 405).
    rule("*", "/viewer*", Allow::Public, true, None),
    // Authentication (rate limited and audited by the auth service).
    rule("POST", "/api/auth/token", Allow::Public, false, None),
    rule("POST", "/api/auth/refresh", Allow::Public, false, None),
    rule("POST", "/api/auth/logout", Allow::Public, false, None),
    rule("*", "/api/auth/*", Allow::AnyUser, false, None),
    // Administration (handlers narrow centre managers to their own centre).
    rule("*", "/api/centres*", Allow::Roles(ADMIN), false, None),
    rule("*", "/api/users*", Allow::Roles(STAFF_ADMIN), false, None),
    rule("GET", "/api/audit*", Allow::Roles(ADMIN), false, None),
    // AI results (patient data).
    rule("*", "/api/ai/*", Allow::Roles(READERS), false, Some("ai")),
    // DICOMweb: everyone authenticated, filtered by study scope; STOW for senders.
    rule(
        "POST",
        "/dicom-web/studies*",
        Allow::Roles(SENDERS),
        false,
        Some("stow"),
    ),
    rule(
        "GET",
        "/dicom-web/*",
        Allow::AnyUser,
        true,
        Some("dicomweb"),
    ),
    rule("GET", "/wado", Allow::AnyUser, true, Some("wado")),
];

/// Whether a path matches a rule's pattern.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return if prefix.ends_with('/') {
            path.len() > prefix.len() && path.starts_with(prefix)
        } else {
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('/'))
        };
    }
    let mut p = pattern.split('/');
    let mut q = path.split('/');
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with(':') && !b.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The rule of a request, if any.
pub fn rule_for(method: &str, path: &str) -> Option<&'static Rule> {
    let method = if method == "HEAD" { "GET" } else { method };
    RULES
        .iter()
        .find(|r| (r.method == "*" || r.method == method) && path_matches(r.path, path))
}

/// Whether a principal passes a rule's role check.
pub fn allows(rule: &Rule, who: &Principal) -> bool {
    match rule.allow {
        Allow::Public | Allow::AnyUser => true,
        Allow::Roles(roles) => roles.contains(&who.role),
    }
}

/// Whether radiologists see every study or only those assigned to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RadiologistScope {
    #[default]
    All,
    Assigned,
}

/// The studies a principal may see.
pub fn scope_for(who: &Principal, radiologists: RadiologistScope) -> StudyScope {
    let only = |f: StudyFilter| StudyScope::Only(f);
    match who.role {
        Role::Admin => StudyScope::All,
        Role::Radiologist => match radiologists {
            RadiologistScope::All => StudyScope::All,
            RadiologistScope::Assigned => only(StudyFilter {
                grants_of_user: Some(who.user_id),
                ..Default::default()
            }),
        },
        Role::Technician | Role::CentreManager => only(StudyFilter {
            centre_ids: who.centre_id.into_iter().collect(),
            ..Default::default()
        }),
        Role::ReferringPhysician => only(StudyFilter {
            referring_physician: who.physician_name.clone().filter(|n| !n.trim().is_empty()),
            grants_of_user: Some(who.user_id),
            ..Default::default()
        }),
        Role::Patient => only(StudyFilter {
            patient_ids: who.patient_ids.clone(),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(path_matches("/viewer*", "/viewer"));
        assert!(path_matches("/viewer*", "/viewer/app.js"));
        assert!(!path_matches("/viewer*", "/viewerx"));
        assert!(path_matches("/api/auth/*", "/api/auth/me"));
        assert!(!path_matches("/api/auth/*", "/api/auth"));
        assert!(path_matches("/api/users*", "/api/users"));
        assert!(path_matches("/api/users*", "/api/users/3/deactivate"));
        assert!(!path_matches("/api/users*", "/api/usersx"));
        assert!(path_matches("/dicom-web/studies*", "/dicom-web/studies"));
        assert!(path_matches(
            "/dicom-web/studies*",
            "/dicom-web/studies/1.2"
        ));
        assert!(path_matches("/wado", "/wado"));
        assert!(!path_matches("/wado", "/wado/x"));
        assert!(path_matches("/a/:id/b", "/a/7/b"));
        assert!(!path_matches("/a/:id/b", "/a//b"));
    }

    #[test]
    fn rules_resolve() {
        let r = rule_for("POST", "/dicom-web/studies").unwrap();
        assert_eq!(r.audit, Some("stow"));
        assert!(matches!(r.allow, Allow::Roles(_)));
        assert_eq!(
            rule_for("GET", "/dicom-web/studies").unwrap().allow,
            Allow::AnyUser
        );
        assert_eq!(
            rule_for("POST", "/api/auth/token").unwrap().allow,
            Allow::Public
        );
        assert_eq!(
            rule_for("GET", "/api/auth/me").unwrap().allow,
            Allow::AnyUser
        );
        assert!(rule_for("DELETE", "/dicom-web/studies/1").is_none());
        assert!(rule_for("GET", "/nothing").is_none());
    }

    #[test]
    fn scopes() {
        let who = |role| Principal {
            user_id: 9,
            username: "u".into(),
            role,
            centre_id: Some(3),
            patient_ids: vec![("P1".into(), String::new())],
            physician_name: Some("Doe^John".into()),
        };
        assert_eq!(
            scope_for(&who(Role::Admin), RadiologistScope::Assigned),
            StudyScope::All
        );
        assert_eq!(
            scope_for(&who(Role::Radiologist), RadiologistScope::All),
            StudyScope::All
        );
        let StudyScope::Only(f) = scope_for(&who(Role::Technician), RadiologistScope::All) else {
            panic!()
        };
        assert_eq!(f.centre_ids, vec![3]);
        assert!(f.patient_ids.is_empty());
        let StudyScope::Only(f) = scope_for(&who(Role::Patient), RadiologistScope::All) else {
            panic!()
        };
        assert_eq!(f.patient_ids.len(), 1);
        assert!(f.centre_ids.is_empty());
        let StudyScope::Only(f) = scope_for(&who(Role::ReferringPhysician), RadiologistScope::All)
        else {
            panic!()
        };
        assert_eq!(f.grants_of_user, Some(9));
        assert_eq!(f.referring_physician.as_deref(), Some("Doe^John"));
    }
}
