-- envelope key store, schema 4: IAM identities (accounts, users, access keys, groups, roles, inline
-- and customer managed policies, attachments). Portable SQL, as schema 1.
--
-- Entities are keyed by their unique ids (AIDA… users, AGPA… groups, AROA… roles, ANPA… policies),
-- so renames never cascade and a name reused after a deletion is a new entity. Names are unique per
-- account without regard to case (IAM's rule), through name_key = lower(name). A migration cannot
-- know the server's home account: rows it writes carry account_id '' and Kms::open fills it once.
CREATE TABLE iam_accounts (
    account_id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE iam_users (
    user_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    path TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name_key)
);
CREATE TABLE iam_access_keys (
    access_key_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES iam_users (user_id),
    wrapped_secret BYTEA NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX iam_access_keys_user ON iam_access_keys (user_id);
CREATE TABLE iam_groups (
    group_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    group_name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    path TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name_key)
);
CREATE TABLE iam_group_members (
    group_id TEXT NOT NULL REFERENCES iam_groups (group_id),
    user_id TEXT NOT NULL REFERENCES iam_users (user_id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX iam_group_members_user ON iam_group_members (user_id);
CREATE TABLE iam_roles (
    role_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    role_name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    path TEXT NOT NULL,
    trust_policy TEXT NOT NULL,
    description TEXT,
    max_session_duration BIGINT NOT NULL,
    tags TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name_key)
);
CREATE TABLE iam_managed_policies (
    policy_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    path TEXT NOT NULL,
    arn TEXT NOT NULL UNIQUE,
    document TEXT NOT NULL,
    description TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, name_key)
);
-- Inline policies of users, groups and roles; owner_id is the owner's unique id.
CREATE TABLE iam_inline_policies (
    owner_id TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (owner_id, policy_name)
);
-- Managed policies (customer managed, or AWS managed by ARN) attached to users, groups and roles.
CREATE TABLE iam_attachments (
    owner_id TEXT NOT NULL,
    policy_arn TEXT NOT NULL,
    attached_at BIGINT NOT NULL,
    PRIMARY KEY (owner_id, policy_arn)
);
CREATE INDEX iam_attachments_policy ON iam_attachments (policy_arn);
-- Every principal of schema 1 becomes a user of the home account with its access key and
-- AdministratorAccess attached, as it had every right before access control. Its unique id is the one
-- the service derived before (AIDA and the access key id after AKIA); names equal but for case get a
-- name_key of their own so that the migration cannot fail on them.
INSERT INTO iam_users (user_id, account_id, user_name, name_key, path, tags, created_at)
SELECT CASE WHEN substr(p.access_key_id, 1, 4) = 'AKIA' THEN 'AIDA' || substr(p.access_key_id, 5)
            ELSE 'AIDA' || p.access_key_id END,
       '', p.user_name,
       lower(p.user_name) || CASE WHEN (SELECT COUNT(*) FROM principals q
                                        WHERE lower(q.user_name) = lower(p.user_name)
                                          AND q.user_name < p.user_name) > 0
                                  THEN '#' || p.access_key_id ELSE '' END,
       '/', '{}', p.created_at
FROM principals p;
INSERT INTO iam_access_keys (access_key_id, user_id, wrapped_secret, status, created_at)
SELECT access_key_id,
       CASE WHEN substr(access_key_id, 1, 4) = 'AKIA' THEN 'AIDA' || substr(access_key_id, 5)
            ELSE 'AIDA' || access_key_id END,
       wrapped_secret, 'Active', created_at
FROM principals;
INSERT INTO iam_attachments (owner_id, policy_arn, attached_at)
SELECT CASE WHEN substr(access_key_id, 1, 4) = 'AKIA' THEN 'AIDA' || substr(access_key_id, 5)
            ELSE 'AIDA' || access_key_id END,
       'arn:aws:iam::aws:policy/AdministratorAccess', created_at
FROM principals;
DROP TABLE principals;
