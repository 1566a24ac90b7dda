//! Reading a whole store out and copying history in (the `copy-store` command).

use signal_core::store::{RegisteredClient, RoomCreatedRecord, StoreError};

use super::{SqliteStore, classify, client_from_row, insert_created, job, rows};

impl SqliteStore {
    pub(crate) async fn export_clients_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RegisteredClient>, StoreError> {
        self.read("export_clients", || async {
            let found = sqlx::query(
                "SELECT * FROM registered_clients WHERE ?1 IS NULL OR client_id > ?1 \
                 ORDER BY client_id LIMIT ?2",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.inner.pool())
            .await
            .map_err(classify)?;
            rows(found, client_from_row)
        })
        .await
    }

    pub(crate) async fn history_room_ids_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.read("history_room_ids", || async {
            sqlx::query_scalar(
                "SELECT DISTINCT room_id FROM room_created WHERE ?1 IS NULL OR room_id > ?1 \
                 ORDER BY room_id LIMIT ?2",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.inner.pool())
            .await
            .map_err(classify)
        })
        .await
    }

    pub(crate) async fn import_created(
        &self,
        created: &RoomCreatedRecord,
    ) -> Result<(), StoreError> {
        let created = created.clone();
        self.write(
            "import_room_created",
            job(move |tx| {
                Box::pin(async move {
                    insert_created(tx, &created).await?;
                    Ok(0)
                })
            }),
        )
        .await
        .map(|_| ())
    }
}
