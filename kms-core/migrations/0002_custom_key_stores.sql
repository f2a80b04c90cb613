-- envelope key store, schema 2: custom key stores (AWS CloudHSM key stores backed by PKCS#11 tokens).
-- Portable SQL, as schema 1.
CREATE TABLE custom_key_stores (
    store_id TEXT PRIMARY KEY,
    store_name TEXT NOT NULL UNIQUE,
    cluster_id TEXT NOT NULL,
    trust_anchor TEXT NOT NULL,
    wrapped_password BYTEA NOT NULL,
    connection_state TEXT NOT NULL,
    connection_error TEXT,
    created_at BIGINT NOT NULL,
    revision BIGINT NOT NULL
);
ALTER TABLE kms_keys ADD COLUMN custom_key_store_id TEXT REFERENCES custom_key_stores (store_id);
CREATE INDEX kms_keys_custom_key_store ON kms_keys (custom_key_store_id);
