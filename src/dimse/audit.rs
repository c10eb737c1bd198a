//! The DIMSE side of the audit trail: one [`AuditEvent`] per access — association
//! rejected, C-STORE (per instance), C-FIND (per query), C-MOVE / C-GET (per
//! request), Storage Commitment (per request) and any request refused for lack of
//! authorisation. Events go to the batched writer ([`crate::audit::Audit::record`]
//! only queues), so auditing never waits for the database on the C-STORE hot path.
//! Details hold levels, counts and reasons — never patient names.

use std::net::IpAddr;

use super::access::Grant;
use super::{status, DimseContext};
use crate::audit::{AuditEvent, Outcome, Surface};

/// An event of `action` by the association's peer (AE title, IP, centre).
pub fn event(grant: &Grant, action: &str) -> AuditEvent {
    AuditEvent::new(Surface::Dimse, action)
        .ae(&grant.calling_ae)
        .from_ip(Some(grant.ip))
        .centre(grant.centre_id)
}

/// The audit outcome of a final DIMSE status.
pub fn outcome_of(st: u16) -> Outcome {
    if st == status::SUCCESS || status::is_warning(st) || st == status::CANCEL {
        Outcome::Success
    } else if st == status::NOT_AUTHORIZED {
        Outcome::Denied
    } else {
        Outcome::Failure
    }
}

/// `event` with the outcome of final status `st`.
pub fn with_status(grant: &Grant, action: &str, st: u16) -> AuditEvent {
    event(grant, action).outcome(outcome_of(st), Some(i32::from(st)))
}

/// Record an association refused before negotiation finished (`calling_ae` is
/// `None` when the connection failed before an A-ASSOCIATE-RQ, e.g. in the TLS
/// handshake).
pub async fn association_rejected(
    ctx: &DimseContext,
    calling_ae: Option<&str>,
    ip: IpAddr,
    outcome: Outcome,
    reason: &str,
) {
    let mut ev = AuditEvent::new(Surface::Dimse, "associate");
    if let Some(ae) = calling_ae {
        ev = ev.ae(ae);
    }
    ctx.audit
        .record(
            ev.from_ip(Some(ip))
                .outcome(outcome, None)
                .detail(format!("association rejected: {reason}")),
        )
        .await;
}

/// Record one denied use of each service whose contexts were refused in negotiation.
pub async fn services_refused(ctx: &DimseContext, grant: &Grant, services: &[&str]) {
    for s in services {
        ctx.audit
            .record(
                event(grant, s)
                    .outcome(Outcome::Denied, None)
                    .detail("presentation context refused: service not allowed for this peer"),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert_eq!(outcome_of(status::SUCCESS), Outcome::Success);
        assert_eq!(
            outcome_of(status::SUBOPERATIONS_WITH_FAILURES),
            Outcome::Success
        );
        assert_eq!(outcome_of(status::NOT_AUTHORIZED), Outcome::Denied);
        assert_eq!(outcome_of(status::OUT_OF_RESOURCES), Outcome::Failure);
    }
}
