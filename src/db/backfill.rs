//! Start-up maintenance of the index: filling columns added after rows were
//! indexed (the folded person names behind QIDO-RS fuzzy matching).

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::entities::{patient, study};
use super::record::fuzzy_person_name;
use super::{DbError, IndexRepo};

impl IndexRepo {
    /// Fill the folded person-name columns behind QIDO-RS fuzzy matching for rows
    /// indexed before they existed. Returns the number of rows updated; a no-op (two
    /// indexed lookups) once done. Called at start-up.
    pub async fn backfill_fuzzy_names(&self) -> Result<u64, DbError> {
        use sea_orm::sea_query::Expr;
        const BATCH: u64 = 500;
        let _guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let mut updated = 0;
        loop {
            let rows = patient::Entity::find()
                .filter(patient::Column::PatientName.is_not_null())
                .filter(patient::Column::PatientNameFuzzy.is_null())
                .limit(BATCH)
                .all(&self.db)
                .await?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let folded = fuzzy_person_name(r.patient_name.as_deref().unwrap_or(""));
                patient::Entity::update_many()
                    .col_expr(patient::Column::PatientNameFuzzy, Expr::value(folded))
                    .filter(patient::Column::Id.eq(r.id))
                    .exec(&self.db)
                    .await?;
                updated += 1;
            }
        }
        loop {
            let rows = study::Entity::find()
                .filter(study::Column::ReferringPhysicianName.is_not_null())
                .filter(study::Column::ReferringPhysicianNameFuzzy.is_null())
                .limit(BATCH)
                .all(&self.db)
                .await?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let folded = fuzzy_person_name(r.referring_physician_name.as_deref().unwrap_or(""));
                study::Entity::update_many()
                    .col_expr(
                        study::Column::ReferringPhysicianNameFuzzy,
                        Expr::value(folded),
                    )
                    .filter(study::Column::Id.eq(r.id))
                    .exec(&self.db)
                    .await?;
                updated += 1;
            }
        }
        Ok(updated)
    }
}
