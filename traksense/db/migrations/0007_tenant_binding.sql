-- Frozen: the private state behind the tenant binding and the per-tenant limits.
-- The functions that use it live in traksense/db/sql/15_tenant_binding.sql; docs/tenancy.md
-- explains the binding and why the web role can neither forge nor carry it.

-- The binding's MAC keys: two independent random 32-byte keys (gen_random_uuid() draws from the
-- server's strong random source; two uuids give 244 random bits per key). One row. Nobody but
-- the owner may read it: whoever could would be able to mint a binding for any tenant.
CREATE TABLE ts_binding_secret (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    inner_key bytea NOT NULL,
    outer_key bytea NOT NULL
);
INSERT INTO ts_binding_secret (inner_key, outer_key)
SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'),
       decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');

-- Ingest rate limiting: one token bucket per tenant, shared by every process. UNLOGGED: it is
-- state of the last seconds, not data; after a crash it starts full again, which is harmless.
CREATE UNLOGGED TABLE ts_ingest_bucket (
    tenant_id  uuid PRIMARY KEY,
    tokens     float8 NOT NULL,
    updated_at timestamptz NOT NULL
);

REVOKE ALL ON ts_binding_secret, ts_ingest_bucket FROM PUBLIC;
