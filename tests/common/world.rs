//! A small world for the access-control tests: two centres, one user per role and
//! one study per centre (STOWed by that centre's technician, so it belongs to it).

use std::net::SocketAddr;

use glia::auth::Role;

use super::http::{self, HttpResponse};

/// A user of the matrix and its access token.
pub struct Actor {
    pub name: &'static str,
    pub role: Option<Role>,
    pub token: String,
}

pub struct World {
    pub addr: SocketAddr,
    pub actors: Vec<Actor>,
    /// (study, series, sop) of centre A's and centre B's study.
    pub a: (String, String, String),
    pub b: (String, String, String),
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub async fn call(addr: SocketAddr, method: &str, path: &str, token: &str) -> HttpResponse {
    let auth = bearer(token);
    let mut headers = vec![("Authorization", auth.as_str())];
    if token.is_empty() {
        headers = vec![http::ANONYMOUS];
    }
    let body: &[u8] = if method == "GET" { b"" } else { b"{}" };
    if method != "GET" {
        headers.push(("Content-Type", "application/json"));
    }
    http::request(addr, method, path, &headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub async fn login(addr: SocketAddr, user: &str, password: &str) -> serde_json::Value {
    let form = format!("grant_type=password&username={user}&password={password}");
    let r = http::request(
        addr,
        "POST",
        "/api/auth/token",
        &[
            http::ANONYMOUS,
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "login {user}: {}", r.text());
    r.json()
}

/// A study of one patient, STOWed by `token` (so it belongs to that user's centre).
pub async fn stow_study(
    addr: SocketAddr,
    token: &str,
    patient: &str,
    referring: &str,
) -> (String, String, String) {
    let ids = super::gen::Ids::new(patient);
    let r = stow_instance(addr, token, &ids, referring).await;
    assert_eq!(r.status, 200, "STOW: {}", r.text());
    (ids.study, ids.series, ids.sop)
}

/// STOW one small MR instance with these UIDs as `token`; the raw response.
pub async fn stow_instance(
    addr: SocketAddr,
    token: &str,
    ids: &super::gen::Ids,
    referring: &str,
) -> HttpResponse {
    let mut obj = super::gen::mr_dataset(ids, 1, 8, 8);
    super::gen::set_str(
        &mut obj,
        dicom_dictionary_std::tags::REFERRING_PHYSICIAN_NAME,
        dicom_core::VR::PN,
        referring,
    );
    let mut part = Vec::new();
    super::gen::as_file(obj).write_all(&mut part).unwrap();
    let boundary = "glia-authz-boundary";
    let mut body = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    body.extend_from_slice(&part);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    let auth = bearer(token);
    http::request(
        addr,
        "POST",
        "/dicom-web/studies",
        &[("Authorization", &auth), ("Content-Type", &ct)],
        &body,
    )
    .await
    .unwrap()
}

pub async fn world(node: &glia::app::RunningNode) -> World {
    let addr = node.http_addr;
    let auth = &node.state.auth;
    let admin = http::token_for(addr).unwrap();
    let centre = |name: &str| {
        let name = name.to_string();
        let admin = admin.clone();
        async move {
            let body = serde_json::json!({ "name": name, "contact_email": "desk@example.org" });
            let r = http::request(
                addr,
                "POST",
                "/api/centres",
                &[
                    ("Authorization", &bearer(&admin)),
                    ("Content-Type", "application/json"),
                ],
                body.to_string().as_bytes(),
            )
            .await
            .unwrap();
            assert!(r.status == 200 || r.status == 201, "centre: {}", r.text());
            r.json()["id"].as_i64().unwrap()
        }
    };
    let (ca, cb) = (centre("Centre A").await, centre("Centre B").await);
    let mk = |name: &'static str, role: Role, centre: Option<i64>| glia::auth::service::UserSpec {
        username: name.into(),
        password: format!("{name}-password"),
        email: None,
        full_name: None,
        role,
        centre_id: centre,
        physician_name: (role == Role::ReferringPhysician).then(|| "Doe^John".into()),
        patient_ids: if role == Role::Patient {
            vec![glia::db::identity::PatientLink {
                patient_id: "PAT-A".into(),
                issuer: String::new(),
            }]
        } else {
            Vec::new()
        },
    };
    let specs = [
        mk("radiologist", Role::Radiologist, None),
        mk("tech-a", Role::Technician, Some(ca)),
        mk("tech-b", Role::Technician, Some(cb)),
        mk("manager-a", Role::CentreManager, Some(ca)),
        mk("referrer", Role::ReferringPhysician, None),
        mk("patient-a", Role::Patient, None),
    ];
    let mut actors = vec![
        Actor {
            name: "anonymous",
            role: None,
            token: String::new(),
        },
        Actor {
            name: "admin",
            role: Some(Role::Admin),
            token: admin.clone(),
        },
    ];
    for s in specs {
        auth.create_user(s.clone()).await.unwrap();
        let t = login(addr, &s.username, &s.password).await;
        actors.push(Actor {
            name: Box::leak(s.username.clone().into_boxed_str()),
            role: Some(s.role),
            token: t["access_token"].as_str().unwrap().to_string(),
        });
    }
    let token = |n: &str| actors.iter().find(|a| a.name == n).unwrap().token.clone();
    let a = stow_study(addr, &token("tech-a"), "PAT-A", "DOE^JOHN").await;
    let b = stow_study(addr, &token("tech-b"), "PAT-B", "Other^Doctor").await;
    World { addr, actors, a, b }
}

impl World {
    pub fn token(&self, name: &str) -> &str {
        &self.actors.iter().find(|a| a.name == name).unwrap().token
    }
}
