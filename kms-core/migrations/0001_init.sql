-- envelope key store, schema 1. Portable SQL: the same text runs on SQLite and PostgreSQL
-- (and PostgreSQL-compatible distributed engines). Times are unix milliseconds.
CREATE TABLE envelope_meta (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE kms_keys (
    key_id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    description TEXT NOT NULL,
    key_state TEXT NOT NULL,
    key_usage TEXT NOT NULL,
    key_spec TEXT NOT NULL,
    origin TEXT NOT NULL,
    policy TEXT NOT NULL,
    deletion_date BIGINT,
    pending_window_days BIGINT,
    rotation_period_days BIGINT,
    next_rotation BIGINT,
    revision BIGINT NOT NULL
);
CREATE TABLE kms_key_material (
    key_id TEXT NOT NULL REFERENCES kms_keys (key_id),
    version BIGINT NOT NULL,
    wrapped BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    rotation_type TEXT,
    PRIMARY KEY (key_id, version)
);
CREATE TABLE kms_aliases (
    alias_name TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES kms_keys (key_id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX kms_aliases_key ON kms_aliases (key_id);
CREATE TABLE kms_tags (
    key_id TEXT NOT NULL REFERENCES kms_keys (key_id),
    tag_key TEXT NOT NULL,
    tag_value TEXT NOT NULL,
    PRIMARY KEY (key_id, tag_key)
);
CREATE TABLE principals (
    user_name TEXT PRIMARY KEY,
    access_key_id TEXT NOT NULL UNIQUE,
    wrapped_secret BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
