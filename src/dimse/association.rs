//! Association negotiation (PS3.8 §9.3.2/§9.3.3): which called AE title is accepted,
//! which presentation contexts (within the services the peer's [`Grant`] allows, see
//! `access`), and which transfer syntax for each one.

use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult, AssociationRJServiceUserReason,
    AssociationRJSource, AssociationRQ, PresentationContextResult, PresentationContextResultReason,
    UserVariableItem,
};

use super::access::Grant;
use super::sop;
use crate::config::DimseConfig;
use crate::ingest::spool::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// The DICOM application context name.
pub const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";

/// A presentation context accepted for this association.
#[derive(Debug, Clone)]
pub struct AcceptedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// The result of a successful negotiation.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub calling_ae: String,
    pub contexts: Vec<AcceptedContext>,
    pub peer_max_pdu_length: u32,
    /// Accepted SOP class extended negotiation (application information bytes).
    pub extended: Vec<(String, Vec<u8>)>,
    /// Storage SOP classes for which the requestor may act as SCP (C-GET sub-operations).
    pub requestor_scp_classes: Vec<String>,
    /// Services whose presentation contexts were refused because the peer may not
    /// use them (for the audit trail).
    pub refused_services: Vec<&'static str>,
}

impl Negotiated {
    pub fn context(&self, id: u8) -> Option<&AcceptedContext> {
        self.contexts.iter().find(|c| c.id == id)
    }

    /// Was extended negotiation byte `n` (1-based, PS3.4 C.5) accepted as 1 for a class?
    pub fn extended_flag(&self, sop_class: &str, n: usize) -> bool {
        self.extended
            .iter()
            .find(|(c, _)| c == sop_class)
            .and_then(|(_, b)| b.get(n - 1))
            .map(|b| *b == 1)
            .unwrap_or(false)
    }
}

/// Our answer to a SOP class extended negotiation item (PS3.4 C.5.1-C.5.3):
/// relational queries/retrieval (byte 1) and combined date-time matching (byte 2 of
/// FIND) are supported; fuzzy semantic matching, timezone adjustment, enhanced
/// multi-frame conversion and empty-value matching are not.
fn extended_answer(sop_class: &str, input: &[u8]) -> Option<Vec<u8>> {
    let find = sop_class == sop::PATIENT_ROOT_FIND || sop_class == sop::STUDY_ROOT_FIND;
    let retrieve = matches!(
        sop_class,
        sop::PATIENT_ROOT_MOVE | sop::STUDY_ROOT_MOVE | sop::PATIENT_ROOT_GET | sop::STUDY_ROOT_GET
    );
    if !find && !retrieve {
        return None;
    }
    let supported = if find { 2 } else { 1 };
    let n = input.len().min(if find { 7 } else { 3 });
    Some(
        input[..n]
            .iter()
            .enumerate()
            .map(|(i, b)| if i < supported && *b == 1 { 1 } else { 0 })
            .collect(),
    )
}

fn reject(reason: AssociationRJServiceUserReason) -> AssociationRJ {
    AssociationRJ {
        result: AssociationRJResult::Permanent,
        source: AssociationRJSource::ServiceUser(reason),
    }
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c == ' ')
}

/// Is this transfer syntax one the registry knows and whose data set we can parse?
fn ts_usable(uid: &str) -> bool {
    TransferSyntaxRegistry
        .get(uid)
        .map(|ts| !ts.is_unsupported())
        .unwrap_or(false)
}

/// Choose a transfer syntax from the SCU's offer according to the preference list
/// (`"*"` = any other usable syntax in the SCU's order).
pub fn choose_transfer_syntax(offered: &[String], preference: &[String]) -> Option<String> {
    let offered: Vec<&str> = offered.iter().map(|s| trim(s)).collect();
    for pref in preference {
        if pref == "*" {
            if let Some(ts) = offered.iter().find(|ts| ts_usable(ts)) {
                return Some(ts.to_string());
            }
        } else if offered.contains(&pref.as_str()) && ts_usable(pref) {
            return Some(pref.clone());
        }
    }
    None
}

/// Negotiate an A-ASSOCIATE-RQ for a peer allowed every service.
pub fn negotiate(
    rq: &AssociationRQ,
    cfg: &DimseConfig,
) -> Result<(AssociationAC, Negotiated), AssociationRJ> {
    let grant = Grant::unrestricted(trim(&rq.calling_ae_title), [0, 0, 0, 0].into());
    negotiate_for(rq, cfg, &grant)
}

/// Negotiate an A-ASSOCIATE-RQ of an admitted peer: Ok(accept) or Err(reject).
/// Presentation contexts of services `grant` does not allow are refused (user
/// rejection); storage contexts are also accepted for a peer allowed `get` that takes
/// the SCP role for them (to receive C-GET sub-operations; C-STOREs it sends on them
/// are refused at message level).
pub fn negotiate_for(
    rq: &AssociationRQ,
    cfg: &DimseConfig,
    grant: &Grant,
) -> Result<(AssociationAC, Negotiated), AssociationRJ> {
    if rq.protocol_version & 1 == 0 {
        return Err(reject(AssociationRJServiceUserReason::NoReasonGiven));
    }
    if trim(&rq.application_context_name) != APPLICATION_CONTEXT {
        return Err(reject(
            AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
        ));
    }
    let called = trim(&rq.called_ae_title);
    if cfg.check_called_ae && called != cfg.ae_title {
        return Err(reject(
            AssociationRJServiceUserReason::CalledAETitleNotRecognized,
        ));
    }
    let calling = trim(&rq.calling_ae_title).to_string();
    // Storage classes the requestor offers to be SCP for (C-GET role selection).
    let scp_role: Vec<&str> = rq
        .user_variables
        .iter()
        .filter_map(|v| match v {
            UserVariableItem::ScuScpRoleSelectionSubItem(class, roles) if roles.scp => {
                Some(trim(class))
            }
            _ => None,
        })
        .collect();
    let allowed = |service: &str, abstract_syntax: &str| {
        grant.allows(service)
            || (service == "store" && grant.allows("get") && scp_role.contains(&abstract_syntax))
    };
    let mut refused_services: Vec<&'static str> = Vec::new();

    let peer_max_pdu_length = rq
        .user_variables
        .iter()
        .find_map(|v| match v {
            UserVariableItem::MaxLength(n) => Some(*n),
            _ => None,
        })
        .filter(|n| *n != 0)
        .unwrap_or(u32::MAX)
        .min(dicom_ul::pdu::MAXIMUM_PDU_SIZE);

    let mut results = Vec::with_capacity(rq.presentation_contexts.len());
    let mut contexts = Vec::new();
    for pc in &rq.presentation_contexts {
        let abstract_syntax = trim(&pc.abstract_syntax).to_string();
        let service = sop::service_of(&abstract_syntax);
        if let Some(s) = service.filter(|s| !allowed(s, &abstract_syntax)) {
            if !refused_services.contains(&s) {
                refused_services.push(s);
            }
            results.push(PresentationContextResult {
                id: pc.id,
                reason: PresentationContextResultReason::UserRejection,
                transfer_syntax: "1.2.840.10008.1.2".into(),
            });
            continue;
        }
        let reason_ts = match service {
            Some(_) => {
                match choose_transfer_syntax(&pc.transfer_syntaxes, &cfg.transfer_syntax_preference)
                {
                    Some(ts) => Ok(ts),
                    None => Err(PresentationContextResultReason::TransferSyntaxesNotSupported),
                }
            }
            _ => Err(PresentationContextResultReason::AbstractSyntaxNotSupported),
        };
        match reason_ts {
            Ok(ts) => {
                results.push(PresentationContextResult {
                    id: pc.id,
                    reason: PresentationContextResultReason::Acceptance,
                    transfer_syntax: ts.clone(),
                });
                contexts.push(AcceptedContext {
                    id: pc.id,
                    abstract_syntax,
                    transfer_syntax: ts,
                });
            }
            Err(reason) => results.push(PresentationContextResult {
                id: pc.id,
                reason,
                transfer_syntax: "1.2.840.10008.1.2".into(),
            }),
        }
    }

    // Extended negotiation and SCP/SCU role selection.
    let mut user_variables = vec![
        UserVariableItem::MaxLength(cfg.max_pdu_length),
        UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.into()),
        UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.into()),
    ];
    let mut extended = Vec::new();
    let mut requestor_scp_classes = Vec::new();
    for v in &rq.user_variables {
        match v {
            UserVariableItem::SopClassExtendedNegotiationSubItem(class, input) => {
                let class = trim(class).to_string();
                if let Some(answer) = extended_answer(&class, input) {
                    user_variables.push(UserVariableItem::SopClassExtendedNegotiationSubItem(
                        class.clone(),
                        answer.clone(),
                    ));
                    extended.push((class, answer));
                }
            }
            UserVariableItem::ScuScpRoleSelectionSubItem(class, roles) => {
                let class = trim(class).to_string();
                // Storage classes: the requestor may be SCP (to receive C-GET results).
                if sop::is_storage(&class) && contexts.iter().any(|c| c.abstract_syntax == class) {
                    user_variables.push(UserVariableItem::ScuScpRoleSelectionSubItem(
                        class.clone(),
                        *roles,
                    ));
                    if roles.scp {
                        requestor_scp_classes.push(class);
                    }
                }
            }
            _ => {}
        }
    }

    let ac = AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT.into(),
        presentation_contexts: results,
        user_variables,
    };
    Ok((
        ac,
        Negotiated {
            calling_ae: calling,
            contexts,
            peer_max_pdu_length,
            extended,
            requestor_scp_classes,
            refused_services,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn preference_order_wins_over_scu_order() {
        let prefs = DimseConfig::default().transfer_syntax_preference;
        // SCU proposes JPEG lossless first, explicit LE second: we prefer explicit LE.
        let offered = s(&["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.1"]);
        assert_eq!(
            choose_transfer_syntax(&offered, &prefs).as_deref(),
            Some("1.2.840.10008.1.2.1")
        );
        // Only compressed offered: accepted as is.
        let offered = s(&["1.2.840.10008.1.2.4.90"]);
        assert_eq!(
            choose_transfer_syntax(&offered, &prefs).as_deref(),
            Some("1.2.840.10008.1.2.4.90")
        );
        // Unknown syntax only: refused.
        assert_eq!(choose_transfer_syntax(&s(&["1.2.3.4"]), &prefs), None);
        // Deflate is usable (the registry's deflate feature is on).
        assert!(ts_usable("1.2.840.10008.1.2.1.99"));
        assert!(ts_usable("1.2.840.10008.1.2.2"));
    }
}
