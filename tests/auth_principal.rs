//! The principal a bearer token resolves to: its role, centre, patient links and
//! study grants, and how long a cached principal may lag behind a change (this
//! node's changes apply at once, other nodes' within `[auth] principal_cache_secs`).

mod common;

use common::auth::{api, assert_error, token};
use common::{Backend, TestEnv};
use glia::auth::Role;

const PW: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_principal_carries_links_and_grants() {
    use glia::auth::service::UserSpec;
    use glia::db::identity::PatientLink;
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let node = env.start().await;
    let auth = &node.state.auth;
    let centre = auth
        .repo()
        .create_centre(glia::db::identity::NewCentre {
            name: "North".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let link = |id: &str, issuer: &str| PatientLink {
        patient_id: id.into(),
        issuer: issuer.into(),
    };
    let user = auth
        .create_user(UserSpec {
            username: "judy".into(),
            password: PW.into(),
            email: None,
            full_name: None,
            role: Role::Patient,
            centre_id: Some(centre.id),
            physician_name: Some("Doe^Jane".into()),
            patient_ids: vec![link("PID-1", ""), link("PID-2", "HOSP")],
        })
        .await
        .unwrap();
    let t = token(node.http_addr, "judy", PW).await;
    let p = auth.authenticate_bearer(&t).await.unwrap();
    assert_eq!(p.user_id, user.id);
    assert_eq!(p.role, Role::Patient);
    assert_eq!(p.centre_id, Some(centre.id));
    assert_eq!(
        p.patient_ids,
        vec![("PID-1".into(), "".into()), ("PID-2".into(), "HOSP".into())]
    );
    assert_eq!(p.physician_name.as_deref(), Some("Doe^Jane"));
    assert!(matches!(
        auth.authenticate_bearer("").await,
        Err(glia::auth::AuthError::MissingToken)
    ));

    // A change made on this node applies to the very next request (the principal
    // cache forgets the user), whatever `principal_cache_secs` says.
    auth.update_user(
        user.id,
        glia::db::identity::UserUpdate {
            role: Some(Role::ReferringPhysician),
            patient_ids: Some(vec![link("PID-3", "")]),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    let p = auth.authenticate_bearer(&t).await.unwrap();
    assert_eq!(p.role, Role::ReferringPhysician);
    assert!(p.patient_ids.is_empty(), "links are read for patients only");

    // Explicit study grants.
    let repo = auth.repo();
    repo.grant_study(user.id, "1.2.3").await.unwrap();
    repo.grant_study(user.id, "1.2.3").await.unwrap();
    repo.grant_study(user.id, "1.2.4").await.unwrap();
    assert_eq!(
        repo.granted_studies(user.id).await.unwrap(),
        ["1.2.3", "1.2.4"]
    );
    assert!(repo.revoke_study(user.id, "1.2.3").await.unwrap());
    assert!(!repo.revoke_study(user.id, "1.2.3").await.unwrap());
    assert_eq!(repo.granted_studies(user.id).await.unwrap(), ["1.2.4"]);
    node.stop().await;
}

/// A change made behind this node's back (another node sharing the database, or
/// `glia user` beside it) applies once the cached principal expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_from_elsewhere_apply_within_the_principal_cache_time() {
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.config.auth.principal_cache_secs = 1;
    let node = env.start().await;
    let addr = node.http_addr;
    let id = node
        .state
        .auth
        .create_user(glia::auth::service::UserSpec {
            username: "mallory".into(),
            password: PW.into(),
            email: None,
            full_name: None,
            role: Role::Technician,
            centre_id: None,
            physician_name: None,
            patient_ids: vec![],
        })
        .await
        .unwrap()
        .id;
    let t = token(addr, "mallory", PW).await;
    assert_eq!(
        api(addr, "GET", "/api/auth/me", Some(&t), None)
            .await
            .status,
        200
    );
    // Straight to the database, as another node would.
    node.state
        .auth
        .repo()
        .update_user(
            id,
            glia::db::identity::UserUpdate {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(
        &api(addr, "GET", "/api/auth/me", Some(&t), None).await,
        401,
        "inactive_user",
    );
    node.stop().await;
}
