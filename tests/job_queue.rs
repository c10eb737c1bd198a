//! The durable job queue on both backends: one active job per (kind, key), claims
//! that never hand one job to two workers (separate connections = separate nodes;
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL), retries with backoff, skips, heartbeats,
//! and recovery of jobs whose worker died.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::TestEnv;
use glia::db::jobs::{JobQueue, JobState};

const KIND: &str = "test-kind";

async fn queue(env: &TestEnv, node: &str, retry_base: Duration) -> JobQueue {
    let db = glia::db::open(&env.config.database.url, 4).await.unwrap();
    JobQueue::new(db, node, retry_base)
}

async fn jobs(env: TestEnv) {
    let q = queue(&env, "node-a", Duration::from_millis(50)).await;

    // One active job per (kind, key).
    let first = q.enqueue(KIND, "study-1", "{}", 3).await.unwrap();
    assert!(first.is_some());
    assert_eq!(q.enqueue(KIND, "study-1", "{}", 3).await.unwrap(), None);
    assert!(q
        .enqueue("other-kind", "study-1", "{}", 3)
        .await
        .unwrap()
        .is_some());
    let job = q.claim(&[KIND]).await.unwrap().expect("a job");
    assert_eq!(Some(job.id), first);
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.claimed_by.as_deref(), Some("node-a"));
    assert_eq!(
        q.enqueue(KIND, "study-1", "{}", 3).await.unwrap(),
        None,
        "running counts as active"
    );
    assert!(q.heartbeat(job.id, 40.0).await.unwrap());
    assert_eq!(q.get(job.id).await.unwrap().unwrap().progress, 40.0);
    assert!(q.succeed(job.id).await.unwrap());
    let done = q.get(job.id).await.unwrap().unwrap();
    assert_eq!((done.state, done.progress), (JobState::Succeeded, 100.0));
    assert!(done.finished_at.is_some());
    assert!(
        q.enqueue(KIND, "study-1", "{}", 3).await.unwrap().is_some(),
        "a new run once done"
    );
    // Drain it.
    let j = q.claim(&[KIND]).await.unwrap().unwrap();
    assert!(q.succeed(j.id).await.unwrap());

    // Skips end the job with a reason and are not retried.
    let id = q.enqueue(KIND, "study-2", "{}", 3).await.unwrap().unwrap();
    let j = q.claim(&[KIND]).await.unwrap().unwrap();
    assert_eq!(j.id, id);
    assert!(q.skip(id, "not a brain MRI study").await.unwrap());
    let j = q.get(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Skipped);
    assert_eq!(j.reason.as_deref(), Some("not a brain MRI study"));
    assert!(q.claim(&[KIND]).await.unwrap().is_none());

    // Failures are retried after a backoff, then fail for good.
    let id = q.enqueue(KIND, "study-3", "{}", 2).await.unwrap().unwrap();
    q.claim(&[KIND]).await.unwrap().unwrap();
    assert!(q.fail(id, "model failed to load").await.unwrap());
    let j = q.get(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert!(j.run_after > chrono::Utc::now(), "backoff");
    assert!(q.claim(&[KIND]).await.unwrap().is_none(), "not due yet");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let j = q.claim(&[KIND]).await.unwrap().expect("due again");
    assert_eq!((j.id, j.attempts), (id, 2));
    assert!(q.fail(id, "model failed to load").await.unwrap());
    let j = q.get(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.reason.as_deref(), Some("model failed to load"));

    // A worker that stops heartbeating loses its job to another node; its late
    // updates are refused.
    let b = queue(&env, "node-b", Duration::from_millis(50)).await;
    let id = q.enqueue(KIND, "study-4", "{}", 3).await.unwrap().unwrap();
    q.claim(&[KIND]).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(b.requeue_stale(Duration::from_millis(10)).await.unwrap(), 1);
    let j = b.claim(&[KIND]).await.unwrap().expect("requeued");
    assert_eq!((j.id, j.attempts), (id, 2));
    assert_eq!(j.claimed_by.as_deref(), Some("node-b"));
    assert!(
        !q.succeed(id).await.unwrap(),
        "the old worker lost its claim"
    );
    assert!(!q.heartbeat(id, 50.0).await.unwrap());
    assert!(b.succeed(id).await.unwrap());

    // Many workers on separate connections: every job is claimed exactly once.
    let mut ids = HashSet::new();
    for i in 0..40 {
        ids.insert(
            q.enqueue(KIND, &format!("bulk-{i}"), "{}", 3)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let mut workers = Vec::new();
    for w in 0..4 {
        let wq = queue(&env, &format!("worker-{w}"), Duration::from_millis(50)).await;
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = wq.claim(&[KIND]).await.unwrap() {
                assert!(wq.succeed(j.id).await.unwrap());
                got.push(j.id);
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.unwrap());
    }
    let unique: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 40, "no job claimed twice");
    assert_eq!(unique, ids);
    assert_eq!(q.queued(KIND).await.unwrap(), 0);
    assert_eq!(
        q.list(Some(KIND), Some(JobState::Succeeded), None, 1000)
            .await
            .unwrap()
            .len(),
        43,
        "study-1 twice, study-4 and the 40 bulk jobs"
    );
}
both_backends!(jobs, jobs);
