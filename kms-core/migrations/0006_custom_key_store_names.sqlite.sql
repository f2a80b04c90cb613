-- envelope key store, schema 6 (SQLite): a custom key store's name is unique in its account, not on
-- the server (AWS: per account and Region), so one account's names neither block nor reveal
-- another's. SQLite cannot drop a UNIQUE constraint, so the table is rebuilt; foreign keys are on,
-- so the keys' references to their stores are set aside while the old table is dropped and put
-- back after the new one has its name. All in the migration's one transaction.
CREATE TABLE custom_key_stores_v6 (
    store_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL DEFAULT '',
    store_name TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    trust_anchor TEXT NOT NULL,
    wrapped_password BYTEA NOT NULL,
    connection_state TEXT NOT NULL,
    connection_error TEXT,
    created_at BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    UNIQUE (account_id, store_name)
);
INSERT INTO custom_key_stores_v6 (store_id, account_id, store_name, cluster_id, trust_anchor,
        wrapped_password, connection_state, connection_error, created_at, revision)
    SELECT store_id, account_id, store_name, cluster_id, trust_anchor, wrapped_password,
        connection_state, connection_error, created_at, revision
    FROM custom_key_stores;
CREATE TABLE key_store_links_v6 (key_id TEXT PRIMARY KEY, store_id TEXT NOT NULL);
INSERT INTO key_store_links_v6 (key_id, store_id)
    SELECT key_id, custom_key_store_id FROM kms_keys WHERE custom_key_store_id IS NOT NULL;
UPDATE kms_keys SET custom_key_store_id = NULL WHERE custom_key_store_id IS NOT NULL;
DROP TABLE custom_key_stores;
ALTER TABLE custom_key_stores_v6 RENAME TO custom_key_stores;
UPDATE kms_keys SET custom_key_store_id =
        (SELECT l.store_id FROM key_store_links_v6 l WHERE l.key_id = kms_keys.key_id)
    WHERE key_id IN (SELECT key_id FROM key_store_links_v6);
DROP TABLE key_store_links_v6;
