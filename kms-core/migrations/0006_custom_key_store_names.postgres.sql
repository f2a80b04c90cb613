-- envelope key store, schema 6 (PostgreSQL): a custom key store's name is unique in its account, not
-- on the server (AWS: per account and Region), so one account's names neither block nor reveal
-- another's. The SQLite form rebuilds the table to the same end.
ALTER TABLE custom_key_stores DROP CONSTRAINT IF EXISTS custom_key_stores_store_name_key;
CREATE UNIQUE INDEX custom_key_stores_account_name ON custom_key_stores (account_id, store_name);
