-- envelope key store, schema 3: accounts. Every key, alias and custom key store belongs to one AWS
-- account. A migration cannot know the server's home account, so existing rows get '' and the service
-- fills '' with the home account when it opens the store. Aliases are unique per account. Portable SQL.
ALTER TABLE kms_keys ADD COLUMN account_id TEXT NOT NULL DEFAULT '';
CREATE INDEX kms_keys_account ON kms_keys (account_id, key_id);
ALTER TABLE custom_key_stores ADD COLUMN account_id TEXT NOT NULL DEFAULT '';
CREATE TABLE kms_aliases_v3 (
    account_id TEXT NOT NULL,
    alias_name TEXT NOT NULL,
    key_id TEXT NOT NULL REFERENCES kms_keys (key_id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, alias_name)
);
INSERT INTO kms_aliases_v3 (account_id, alias_name, key_id, created_at, updated_at)
    SELECT '', alias_name, key_id, created_at, updated_at FROM kms_aliases;
DROP TABLE kms_aliases;
ALTER TABLE kms_aliases_v3 RENAME TO kms_aliases;
CREATE INDEX kms_aliases_key ON kms_aliases (key_id);
