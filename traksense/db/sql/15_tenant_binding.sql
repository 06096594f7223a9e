-- The tenant binding: which tenant the current transaction acts for, derived inside the database
-- from an API key (or, on the owner's connection only, from a tenant id), and readable only in
-- the transaction and on the backend that made it. Every tenant view, read function and
-- ts_ingest reads it through ts_current_tenant() (20_ingest.sql), which calls ts_bound_tenant().
--
-- Form: the transaction-local setting traksense.tenant_grant holds
--     '<tenant uuid>:<scope r|w>:<hex MAC>'
-- where MAC = SHA-256(outer_key || SHA-256(inner_key || message)) (HMAC's construction, with
-- two independent random keys from ts_binding_secret, migration 0007), and message is
--     '<tenant>:<scope>:<backend pid>:<transaction start, epoch seconds to the microsecond>'
-- (a numeric, whose text form no setting changes, unlike a float's: extra_float_digits).
--
-- Why the web role (traksense_web, or app_user) can neither forge nor carry a binding:
-- - It may set traksense.tenant_grant to anything (a custom setting is writable by every role),
--   but a value only counts when its MAC matches, and computing a MAC needs the keys, which only
--   the owner can read. ts_bind_key() mints one only for the tenant of a live key it is given.
-- - A value it can read (its own transaction's) names this backend's pid and this transaction's
--   start: on another connection, or in a later transaction of the same one, the MAC no longer
--   matches. Transaction start times of one backend are distinct (each transaction starts after
--   the previous ended, and the clock has microseconds), so a grant cannot outlive its
--   transaction even when copied into a session-level setting.
-- - The grant is transaction-local (set_config(..., true)): a pooled connection drops it at
--   COMMIT or ROLLBACK, and a ROLLBACK TO SAVEPOINT drops one minted inside the savepoint.
-- - A read-only key's grant (scope r) counts only while the transaction is READ ONLY, which
--   ts_bind_key() turns on; PostgreSQL refuses to turn it off once a query has run. A copy
--   re-set after rolling back the savepoint that turned it on therefore reads NULL.
-- - The MAC is compared through a further SHA-256 of both sides, so the comparison's timing
--   tells nothing about the expected MAC.
-- - Parallel workers run with another pid: ts_bound_tenant() is PARALLEL RESTRICTED (and tenant
--   transactions plan no parallel workers at all: traksense/db/context.py).
-- docs/tenancy.md has the whole threat model.
--
-- ts_bound_tenant() and ts_binding_mac() carry no SET clause (a SET clause makes every call
-- push and pop the setting, about 0.1 ms; the tenant is read in every tenant statement):
-- every name in them is schema-qualified instead, and the web role can create no object in any
-- schema (no CREATE, no TEMPORARY: webrole.py, below), so its search_path cannot shadow them.

CREATE OR REPLACE FUNCTION ts_binding_mac(p_tenant text, p_scope text)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT pg_catalog.sha256(s.outer_key || pg_catalog.sha256(s.inner_key || pg_catalog.convert_to(
               p_tenant || ':' || p_scope || ':' || pg_catalog.pg_backend_pid()::text || ':'
               || pg_catalog.extract('epoch', pg_catalog.transaction_timestamp())::text,
               'UTF8')))
    FROM public.ts_binding_secret s
$$;
COMMENT ON FUNCTION ts_binding_mac(text, text) IS
    'Internal (owner only): the MAC of a tenant grant for this backend and transaction.';

CREATE OR REPLACE FUNCTION ts_bound_tenant()
RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
AS $$
DECLARE
    v_grant text := pg_catalog.current_setting('traksense.tenant_grant', true);
BEGIN
    -- The pattern is checked first, so that the casts below cannot fail on a crafted value.
    IF v_grant IS NULL OR v_grant OPERATOR(pg_catalog.!~)
       '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[rw]:[0-9a-f]{64}$' THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.substr(v_grant, 38, 1) = 'r'
       AND pg_catalog.current_setting('transaction_read_only') <> 'on' THEN
        RETURN NULL;
    END IF;
    IF pg_catalog.sha256(pg_catalog.decode(pg_catalog.right(v_grant, 64), 'hex'))
       = pg_catalog.sha256(public.ts_binding_mac(pg_catalog.left(v_grant, 36),
                                                 pg_catalog.substr(v_grant, 38, 1))) THEN
        RETURN pg_catalog.left(v_grant, 36)::uuid;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ts_bound_tenant() IS
    'The tenant bound to the current transaction by ts_bind_key() or ts_bind_tenant(), or NULL '
    '(no binding, or one made on another connection or in another transaction).';

-- The owner's way in: jobs, the CLI, tests and the MQTT consumer act for a tenant by id. Not a
-- SECURITY DEFINER function and executable by its owner only: app_user and the web role cannot
-- call it, and no SECURITY DEFINER function calls it with a tenant it was given.
CREATE OR REPLACE FUNCTION ts_bind_tenant(p_tenant uuid)
RETURNS uuid
LANGUAGE sql VOLATILE
AS $$
    SELECT p_tenant FROM (SELECT pg_catalog.set_config('traksense.tenant_grant',
        p_tenant::text || ':w:' || pg_catalog.encode(public.ts_binding_mac(p_tenant::text, 'w'), 'hex'),
        true)) g
$$;
COMMENT ON FUNCTION ts_bind_tenant(uuid) IS
    'Owner only: bind the current transaction to a tenant by id (jobs, CLI, MQTT consumer).';

-- The advisory lock key of a tenant's read slots (with the slot number as second key).
CREATE OR REPLACE FUNCTION ts_read_slot_key(p_tenant uuid)
RETURNS integer
LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_catalog.hashtext('traksense.read.' || p_tenant::text) $$;

-- The web role's way in: bind the current transaction to the tenant of a live API key (not
-- revoked, not expired). The key itself is the argument and is hashed here: a stolen copy of
-- api_key's hashes would bind nothing. An unknown key returns no row and binds nothing.
-- p_read_slot: also take one of the tenant's read slots (tenant.read_concurrency, 0: no limit),
-- a transaction-level advisory lock, so that the slot is held until the request's transaction
-- ends, whatever process runs it; with every slot taken, `refused` is 'read_concurrency' and
-- nothing is bound. A read-only key makes the transaction READ ONLY (see above).
CREATE OR REPLACE FUNCTION ts_bind_key(p_key text, p_read_slot boolean DEFAULT false)
RETURNS TABLE (tenant_id uuid, key_id bigint, read_only boolean, refused text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_slots integer;
BEGIN
    -- A statement PREPAREd by SQL on this session could only be someone's injected SQL (the
    -- application prepares through the protocol, not with PREPARE): re-created under the name of
    -- one of the application's statements, it would run in a later request's transaction, with
    -- that request's key or tenant. Refuse to bind such a session at all (docs/tenancy.md).
    IF EXISTS (SELECT FROM pg_prepared_statements WHERE from_sql) THEN
        RAISE EXCEPTION 'this session holds statements prepared with PREPARE: refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT k.tenant_id, k.id, k.read_only, t.read_concurrency
    INTO tenant_id, key_id, read_only, v_slots
    FROM api_key k JOIN tenant t ON t.id = k.tenant_id
    WHERE k.key_hash = encode(sha256(convert_to(p_key, 'UTF8')), 'hex')
      AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > statement_timestamp());
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_read_slot AND v_slots > 0 AND NOT EXISTS (
        SELECT FROM generate_series(1, v_slots) AS i
        WHERE pg_try_advisory_xact_lock(ts_read_slot_key(tenant_id), i)) THEN
        refused := 'read_concurrency';
        RETURN NEXT;
        RETURN;
    END IF;
    IF read_only THEN
        PERFORM set_config('transaction_read_only', 'on', true);
    END IF;
    PERFORM set_config('traksense.tenant_grant',
        tenant_id::text || CASE WHEN read_only THEN ':r:' ELSE ':w:' END
        || encode(ts_binding_mac(tenant_id::text, CASE WHEN read_only THEN 'r' ELSE 'w' END), 'hex'),
        true);
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION ts_bind_key(text, boolean) IS
    'Bind the current transaction to the tenant of a live API key (optionally taking one of its '
    'read slots); returns the tenant, key id and scope, or no row for an unknown key.';

-- Admission of an ingest batch of p_samples samples for the tenant of a live key, under the
-- tenant's ingest rate (tenant.ingest_rate samples/s, 0: no limit): a token bucket in
-- ts_ingest_bucket holding at most 10 s of the rate (c_burst_seconds), refilled continuously.
-- A batch is admitted when the bucket holds its samples and takes them; a batch larger than the
-- whole bucket waits for a full bucket and takes more than it holds, going into debt (so any
-- batch the API accepts passes eventually, and the average rate holds). Otherwise `refused` is
-- 'ingest_rate' and retry_after the seconds until the bucket holds enough. Run in a transaction
-- of its own, before the ingest transaction: the bucket row is locked for a few microseconds,
-- not for the whole write, so a tenant's concurrent batches do not queue behind each other
-- here. No row for an unknown key.
CREATE OR REPLACE FUNCTION ts_admit_ingest(p_key text, p_samples bigint)
RETURNS TABLE (tenant_id uuid, read_only boolean, refused text, retry_after float8)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    c_burst_seconds CONSTANT float8 := 10;
    v_rate integer;
    v_tokens float8;
BEGIN
    SELECT k.tenant_id, k.read_only, t.ingest_rate INTO tenant_id, read_only, v_rate
    FROM api_key k JOIN tenant t ON t.id = k.tenant_id
    WHERE k.key_hash = encode(sha256(convert_to(p_key, 'UTF8')), 'hex')
      AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > statement_timestamp());
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF read_only OR v_rate <= 0 THEN
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO ts_ingest_bucket AS b (tenant_id, tokens, updated_at)
    VALUES (ts_admit_ingest.tenant_id, v_rate * c_burst_seconds, clock_timestamp())
    ON CONFLICT ON CONSTRAINT ts_ingest_bucket_pkey DO UPDATE
    SET tokens = least(v_rate * c_burst_seconds,
                       b.tokens + v_rate * extract(epoch FROM clock_timestamp() - b.updated_at)),
        updated_at = clock_timestamp()
    RETURNING b.tokens INTO v_tokens;
    IF v_tokens < least(p_samples, v_rate * c_burst_seconds) THEN
        refused := 'ingest_rate';
        retry_after := (least(p_samples, v_rate * c_burst_seconds) - v_tokens) / v_rate;
    ELSE
        UPDATE ts_ingest_bucket b SET tokens = b.tokens - p_samples
        WHERE b.tenant_id = ts_admit_ingest.tenant_id;
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION ts_admit_ingest(text, bigint) IS
    'Admit an ingest batch under the key''s tenant''s ingest rate (token bucket); returns the '
    'tenant, the key''s scope and, when refused, the limit and the seconds to wait.';

REVOKE ALL ON FUNCTION ts_binding_mac(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_bind_tenant(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_read_slot_key(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_bound_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_bound_tenant() TO app_user;
REVOKE ALL ON FUNCTION ts_bind_key(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_bind_key(text, boolean) TO app_user;
REVOKE ALL ON FUNCTION ts_admit_ingest(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_admit_ingest(text, bigint) TO app_user;

-- No role but the owner creates anything in this database: the web role must not be able to
-- shadow a function or relation through search_path, nor keep temporary objects on a pooled
-- connection that a later request of another tenant would run into. (Revoking needs the
-- database's or schema's owner, or a superuser; otherwise PostgreSQL only warns, and
-- docs/operations.md gives the statements to run.)
DO $$
BEGIN
    EXECUTE format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CREATE, TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
END
$$;

-- Functions of pg_catalog that every role may execute by default and that would let the web
-- role reach beyond its tenant's rows without touching a table: advisory locks (holding a
-- tenant's read slots or the ingest and compression locks of 55_compression.sql: denial of
-- service), large objects (storage of its own, which outlives the transaction) and
-- pg_notify (a channel to other sessions). The owner keeps them. Only a superuser may change
-- pg_catalog's grants: otherwise this is skipped and docs/operations.md has the statements.
DO $$
DECLARE
    v_fn regprocedure;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN;
    END IF;
    FOR v_fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND (p.proname LIKE 'pg\_%advisory\_%' OR p.proname IN
               ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_import', 'lo_put', 'lo_open',
                'lo_unlink', 'lowrite', 'pg_notify'))
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_fn);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_fn, current_user);
    END LOOP;
END
$$;
