//! Per-level counters and study lists maintained by triggers (plus, on PostgreSQL,
//! `text_pattern_ops` indexes for prefix wildcards), so that indexing an
//! instance of a known series is one INSERT (the counters of its series, study and
//! patient, the study's SOPClassesInStudy and last-received time follow inside the
//! same statement, atomically, on SQLite and on PostgreSQL alike).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000002_counters"
    }
}

/// `list` with `item` appended when missing (backslash-separated), as SQL.
fn add_to_list(list: &str, item: &str, backend: DbBackend) -> String {
    let contains = match backend {
        DbBackend::Postgres => {
            format!("position(E'\\\\' || {item} || E'\\\\' in E'\\\\' || {list} || E'\\\\') > 0")
        }
        _ => format!("instr('\\' || {list} || '\\', '\\' || {item} || '\\') > 0"),
    };
    let sep = match backend {
        DbBackend::Postgres => "E'\\\\'",
        _ => "'\\'",
    };
    format!(
        "CASE WHEN {item} IS NULL OR {item} = '' OR {contains} THEN {list} \
         WHEN {list} = '' THEN {item} ELSE {list} || {sep} || {item} END"
    )
}

fn sqlite_sql() -> Vec<String> {
    let b = DbBackend::Sqlite;
    vec![
        format!(
            "CREATE TRIGGER instance_ai AFTER INSERT ON instance BEGIN
               UPDATE series SET num_instances = num_instances + 1, last_received_at = NEW.received_at
                 WHERE id = NEW.series_fk;
               UPDATE study SET num_instances = num_instances + 1, last_received_at = NEW.received_at,
                 sop_classes_in_study = {}
                 WHERE id = (SELECT study_fk FROM series WHERE id = NEW.series_fk);
               UPDATE patient SET num_instances = num_instances + 1, updated_at = NEW.received_at
                 WHERE id = (SELECT st.patient_fk FROM study st JOIN series se ON se.study_fk = st.id
                             WHERE se.id = NEW.series_fk);
             END",
            add_to_list("sop_classes_in_study", "NEW.sop_class_uid", b)
        ),
        "CREATE TRIGGER instance_ad AFTER DELETE ON instance BEGIN
           UPDATE series SET num_instances = num_instances - 1 WHERE id = OLD.series_fk;
           UPDATE study SET num_instances = num_instances - 1
             WHERE id = (SELECT study_fk FROM series WHERE id = OLD.series_fk);
           UPDATE patient SET num_instances = num_instances - 1
             WHERE id = (SELECT st.patient_fk FROM study st JOIN series se ON se.study_fk = st.id
                         WHERE se.id = OLD.series_fk);
         END"
        .into(),
        format!(
            "CREATE TRIGGER series_ai AFTER INSERT ON series BEGIN
               UPDATE study SET num_series = num_series + 1, modalities_in_study = {}
                 WHERE id = NEW.study_fk;
               UPDATE patient SET num_series = num_series + 1
                 WHERE id = (SELECT patient_fk FROM study WHERE id = NEW.study_fk);
             END",
            add_to_list("modalities_in_study", "NEW.modality", b)
        ),
        "CREATE TRIGGER study_ai AFTER INSERT ON study BEGIN
           UPDATE patient SET num_studies = num_studies + 1 WHERE id = NEW.patient_fk;
         END"
        .into(),
    ]
}

fn postgres_sql() -> Vec<String> {
    let b = DbBackend::Postgres;
    vec![
        format!(
            "CREATE FUNCTION glia_instance_ai() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE sid BIGINT; pid BIGINT;
             BEGIN
               UPDATE series SET num_instances = num_instances + 1, last_received_at = NEW.received_at
                 WHERE id = NEW.series_fk RETURNING study_fk INTO sid;
               UPDATE study SET num_instances = num_instances + 1, last_received_at = NEW.received_at,
                 sop_classes_in_study = {}
                 WHERE id = sid RETURNING patient_fk INTO pid;
               UPDATE patient SET num_instances = num_instances + 1, updated_at = NEW.received_at
                 WHERE id = pid;
               RETURN NULL;
             END $$",
            add_to_list("sop_classes_in_study", "NEW.sop_class_uid", b)
        ),
        "CREATE TRIGGER instance_ai AFTER INSERT ON instance FOR EACH ROW EXECUTE FUNCTION glia_instance_ai()".into(),
        "CREATE FUNCTION glia_instance_ad() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE sid BIGINT; pid BIGINT;
         BEGIN
           UPDATE series SET num_instances = num_instances - 1 WHERE id = OLD.series_fk
             RETURNING study_fk INTO sid;
           UPDATE study SET num_instances = num_instances - 1 WHERE id = sid RETURNING patient_fk INTO pid;
           UPDATE patient SET num_instances = num_instances - 1 WHERE id = pid;
           RETURN NULL;
         END $$"
        .into(),
        "CREATE TRIGGER instance_ad AFTER DELETE ON instance FOR EACH ROW EXECUTE FUNCTION glia_instance_ad()".into(),
        format!(
            "CREATE FUNCTION glia_series_ai() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE pid BIGINT;
             BEGIN
               UPDATE study SET num_series = num_series + 1, modalities_in_study = {}
                 WHERE id = NEW.study_fk RETURNING patient_fk INTO pid;
               UPDATE patient SET num_series = num_series + 1 WHERE id = pid;
               RETURN NULL;
             END $$",
            add_to_list("modalities_in_study", "NEW.modality", b)
        ),
        "CREATE TRIGGER series_ai AFTER INSERT ON series FOR EACH ROW EXECUTE FUNCTION glia_series_ai()".into(),
        "CREATE FUNCTION glia_study_ai() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           UPDATE patient SET num_studies = num_studies + 1 WHERE id = NEW.patient_fk;
           RETURN NULL;
         END $$"
        .into(),
        "CREATE TRIGGER study_ai AFTER INSERT ON study FOR EACH ROW EXECUTE FUNCTION glia_study_ai()".into(),
        // Prefix wildcards (`MUE*` → LIKE 'MUE%') can use these under any collation.
        "CREATE INDEX ix_patient_name_norm_pattern ON patient (patient_name_norm text_pattern_ops)".into(),
        "CREATE INDEX ix_patient_id_pattern ON patient (patient_id text_pattern_ops)".into(),
        "CREATE INDEX ix_study_accession_pattern ON study (accession_number text_pattern_ops)".into(),
        "CREATE INDEX ix_study_referring_pattern ON study (referring_physician_name_norm text_pattern_ops)".into(),
    ]
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let stmts = match db.get_database_backend() {
            DbBackend::Postgres => postgres_sql(),
            _ => sqlite_sql(),
        };
        for s in stmts {
            db.execute_unprepared(&s).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for t in [
            ("instance_ai", "instance"),
            ("instance_ad", "instance"),
            ("series_ai", "series"),
            ("study_ai", "study"),
        ] {
            let sql = match db.get_database_backend() {
                DbBackend::Postgres => format!("DROP TRIGGER IF EXISTS {} ON {}", t.0, t.1),
                _ => format!("DROP TRIGGER IF EXISTS {}", t.0),
            };
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }
}
