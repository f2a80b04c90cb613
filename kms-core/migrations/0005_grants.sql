-- envelope key store, schema 5: KMS grants. Portable SQL, as schema 1. A grant belongs to its key
-- (deleted with it) and carries the key's account. `idempotency` is set when the grant was created
-- with a Name: a digest of the key, the name and every parameter, unique, so a retried CreateGrant
-- finds the grant its first attempt made (several NULLs are allowed by both engines).
CREATE TABLE kms_grants (
    grant_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES kms_keys (key_id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    grant_name TEXT,
    grantee_principal TEXT NOT NULL,
    retiring_principal TEXT,
    operations TEXT NOT NULL,
    constraints TEXT,
    issuing_account TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    idempotency TEXT UNIQUE
);
CREATE INDEX kms_grants_key ON kms_grants (key_id, grant_id);
CREATE INDEX kms_grants_retiring ON kms_grants (retiring_principal, grant_id);
