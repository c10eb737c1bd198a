//! Which studies a query may see: the authorisation filter the one query model
//! applies at every level, so QIDO-RS results (and every retrieve, which resolves
//! through the query model) are filtered in SQL, not after the fact.

use sea_orm::sea_query::{Alias, Cond, Expr, Func, SelectStatement, SimpleExpr};

/// The studies visible to a caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StudyScope {
    /// No restriction (admins, DIMSE peers, Glia itself).
    #[default]
    All,
    /// Only studies matching at least one rule of the filter (an empty filter sees
    /// nothing).
    Only(StudyFilter),
}

/// A study is visible when any listed rule matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyFilter {
    /// Studies belonging to one of these centres (`study.centre_id`).
    pub centre_ids: Vec<i64>,
    /// Studies whose ReferringPhysicianName matches this name (case-insensitive,
    /// as person-name matching is).
    pub referring_physician: Option<String>,
    /// Studies of these patients (PatientID, IssuerOfPatientID; empty issuer = any).
    pub patient_ids: Vec<(String, String)>,
    /// Studies named explicitly.
    pub study_uids: Vec<String>,
    /// Studies granted or assigned to this user (rows of `study_grant`).
    pub grants_of_user: Option<i64>,
}

impl StudyScope {
    /// Whether this scope restricts anything.
    pub fn is_all(&self) -> bool {
        matches!(self, StudyScope::All)
    }
}

/// The SQL predicate of a scope for a query at `level` (`None` = no restriction).
/// At STUDY level and below it filters the joined study (`st`) and patient (`p`); at
/// PATIENT level a patient is visible when one of its studies is (an `EXISTS`).
pub(super) fn predicate(scope: &StudyScope, level: super::Level) -> Option<SimpleExpr> {
    let StudyScope::Only(f) = scope else {
        return None;
    };
    if level >= super::Level::Study {
        return Some(study_rules(f, "st", "p"));
    }
    let mut sub = SelectStatement::new();
    sub.expr(Expr::value(1))
        .from_as(Alias::new("study"), Alias::new("vs"))
        .and_where(
            Expr::col((Alias::new("vs"), Alias::new("patient_fk")))
                .equals((Alias::new("p"), Alias::new("id"))),
        )
        .and_where(study_rules(f, "vs", "p"));
    Some(Expr::exists(sub))
}

/// A patient-level count (`p.num_studies`, `p.num_series`, `p.num_instances`)
/// computed over the studies the scope sees, so a restricted caller does not learn
/// how many other studies a patient has. `None` = the stored counter is right.
pub(super) fn patient_count(scope: &StudyScope, column: &str) -> Option<SimpleExpr> {
    let StudyScope::Only(f) = scope else {
        return None;
    };
    let vs = |c: &str| Expr::col((Alias::new("vs"), Alias::new(c)));
    let aggregate = match column {
        "p.num_studies" => vs("id").count(),
        "p.num_series" => vs("num_series").sum(),
        "p.num_instances" => vs("num_instances").sum(),
        _ => return None,
    };
    let mut sub = SelectStatement::new();
    sub.expr(aggregate)
        .from_as(Alias::new("study"), Alias::new("vs"))
        .and_where(vs("patient_fk").equals((Alias::new("p"), Alias::new("id"))))
        .and_where(study_rules(f, "vs", "p"));
    let total = Func::coalesce([
        SimpleExpr::SubQuery(None, Box::new(sub.into_sub_query_statement())),
        Expr::value(0),
    ]);
    // SUM of a BIGINT is NUMERIC on PostgreSQL: read every count as BIGINT.
    Some(Expr::expr(total).cast_as(Alias::new("BIGINT")))
}

/// The predicate of a scope on one study row aliased `st` joined to its patient `p`
/// (`None` = no restriction): what the ingest path checks before a restricted sender
/// adds to an existing study.
pub fn study_predicate(scope: &StudyScope) -> Option<SimpleExpr> {
    predicate(scope, super::Level::Study)
}

/// Any rule of the filter, on the study aliased `st` of the patient aliased `p`.
fn study_rules(f: &StudyFilter, st: &str, p: &str) -> SimpleExpr {
    let c = |t: &str, col: &str| Expr::col((Alias::new(t), Alias::new(col)));
    let mut any = Cond::any();
    if !f.centre_ids.is_empty() {
        any = any.add(c(st, "centre_id").is_in(f.centre_ids.clone()));
    }
    if let Some(name) = &f.referring_physician {
        let norm = crate::db::record::normalize_person_name(name);
        if !norm.is_empty() {
            any = any.add(c(st, "referring_physician_name_norm").eq(norm));
        }
    }
    for (id, issuer) in &f.patient_ids {
        let mut one = Cond::all().add(c(p, "patient_id").eq(id.clone()));
        if !issuer.is_empty() {
            one = one.add(c(p, "issuer_of_patient_id").eq(issuer.clone()));
        }
        any = any.add(one);
    }
    if !f.study_uids.is_empty() {
        any = any.add(c(st, "study_instance_uid").is_in(f.study_uids.clone()));
    }
    if let Some(user) = f.grants_of_user {
        let mut granted = SelectStatement::new();
        granted
            .column(Alias::new("study_instance_uid"))
            .from(Alias::new("study_grant"))
            .and_where(Expr::col(Alias::new("user_id")).eq(user));
        any = any.add(c(st, "study_instance_uid").in_subquery(granted));
    }
    if any.is_empty() {
        // An empty filter sees nothing.
        return Expr::value(false);
    }
    any.into()
}
