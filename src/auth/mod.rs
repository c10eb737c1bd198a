//! Identity and access: who a caller is ([`Principal`], with its [`Role`]) and which
//! studies it may see ([`crate::query::StudyScope`]). Authentication (passwords,
//! tokens, two-factor) and the authorisation rules of every route build on these.
//!
//! Submodules: `password` (argon2id), `tokens` (JWT access + hashed refresh tokens),
//! `totp` (two-factor), `throttle` (per-IP rate limit, lockout policy), `cache` (short-lived verified
//! principals) and `service`
//! ([`AuthService`], what every surface calls).

pub mod cache;
pub mod password;
pub mod service;
pub mod throttle;
pub mod tokens;
pub mod totp;

pub use service::{AuthError, AuthService};

pub mod context;
pub mod link;
pub mod policy;

use serde::{Deserialize, Serialize};

/// The roles of Glia's users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Radiologist,
    Technician,
    ReferringPhysician,
    Patient,
    CentreManager,
}

impl Role {
    /// Every role, for rule tables and tests.
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Radiologist,
        Role::Technician,
        Role::ReferringPhysician,
        Role::Patient,
        Role::CentreManager,
    ];

    /// The stable name (`admin`, `radiologist`, ...), as stored and as in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Radiologist => "radiologist",
            Role::Technician => "technician",
            Role::ReferringPhysician => "referring_physician",
            Role::Patient => "patient",
            Role::CentreManager => "centre_manager",
        }
    }

    /// Parse a stable name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated user, as every authorisation decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    /// The user's diagnostic centre, if any.
    pub centre_id: Option<i64>,
    /// For patients: the PatientIDs (with issuer, empty = none) linked to the user.
    pub patient_ids: Vec<(String, String)>,
    /// For referring physicians: the name as it appears in ReferringPhysicianName
    /// (DICOM PN, `Family^Given`).
    pub physician_name: Option<String>,
}
