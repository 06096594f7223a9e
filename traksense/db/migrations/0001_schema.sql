-- Frozen: the one-time schema of raw samples, the series catalog and the partition registry.
-- Functions and views live in traksense/db/sql/*.sql and are re-applied on every migrate.

-- The runtime role. Roles are cluster-wide, so creating it must tolerate an existing one (another
-- database on the same server) and a migrating user without CREATEROLE (then a DBA creates it:
-- see docs/operations.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_user') THEN
        BEGIN
            CREATE ROLE app_user NOLOGIN;
        EXCEPTION
            WHEN duplicate_object THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role app_user does not exist and % may not create it', current_user
                    USING HINT = 'As a superuser run: CREATE ROLE app_user NOLOGIN; GRANT app_user TO '
                                 || current_user || ';';
        END;
    END IF;
    -- The owner switches to app_user (SET LOCAL ROLE) for every tenant transaction.
    IF NOT pg_has_role(current_user, 'app_user', 'MEMBER') THEN
        EXECUTE format('GRANT app_user TO %I', current_user);
    END IF;
END
$$;

-- Tier registry: one row per stored resolution. `watermark` is the end of the last refreshed
-- window: buckets before it are read from the tier, buckets from it on are computed on the fly.
CREATE TABLE ts_tier (
    tier            text PRIMARY KEY,
    relation        text NOT NULL UNIQUE,
    bucket_width    interval,            -- NULL for raw
    source_tier     text REFERENCES ts_tier (tier),
    partition_width interval NOT NULL,
    watermark       timestamptz NOT NULL DEFAULT '-infinity',
    -- Retention dropped everything of this tier before this instant. A coarser tier never
    -- recomputes an existing bucket from a source that expired under it (it would lose data).
    expired_before  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO ts_tier (tier, relation, bucket_width, source_tier, partition_width) VALUES
    ('raw', 'ts_measure', NULL, NULL, '1 day'),
    ('1m', 'ts_measure_1m', '1 minute', 'raw', '7 days'),
    ('5m', 'ts_measure_5m', '5 minutes', '1m', '28 days'),
    ('1h', 'ts_measure_1h', '1 hour', '5m', '91 days');

-- Series catalog: the (tenant, device, point) identity of every series and its kind. Base tables
-- key their rows by series_id (8 bytes instead of three uuids, 48 bytes).
CREATE TABLE ts_series (
    series_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- No foreign key to tenant: a sharded deployment (Citus) distributes this table by series and
    -- keeps tenants elsewhere, and TRUNCATE of the tenant table stays possible for tests.
    tenant_id  uuid NOT NULL,
    device_id  uuid NOT NULL,
    point_id   uuid NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('numeric', 'boolean', 'text')),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ts_series_identity UNIQUE (tenant_id, device_id, point_id)
);

-- Raw samples. One sample per (series, ts); exactly one value column set.
CREATE TABLE ts_measure (
    series_id bigint NOT NULL,
    ts        timestamptz NOT NULL,
    v_num     float8,
    v_bool    boolean,
    v_text    text,
    CONSTRAINT ts_measure_one_value CHECK (num_nonnulls(v_num, v_bool, v_text) = 1),
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);
-- Jobs read by time across all series (real-time tails, maintenance): a BRIN index costs a few
-- pages per partition and data arrives roughly in time order.
CREATE INDEX ts_measure_ts_brin ON ts_measure USING brin (ts) WITH (pages_per_range = 32);

-- Rollup tiers. v_sum makes coarser tiers exact (sum of sums); v_avg is derived from it.
CREATE TABLE ts_measure_1m (
    series_id bigint NOT NULL,
    bucket    timestamptz NOT NULL,
    v_sum     float8 NOT NULL,
    v_min     float8 NOT NULL,
    v_max     float8 NOT NULL,
    n         integer NOT NULL CHECK (n > 0),
    PRIMARY KEY (series_id, bucket)
) PARTITION BY RANGE (bucket);
CREATE TABLE ts_measure_5m (LIKE ts_measure_1m INCLUDING ALL) PARTITION BY RANGE (bucket);
CREATE TABLE ts_measure_1h (LIKE ts_measure_1m INCLUDING ALL) PARTITION BY RANGE (bucket);

-- Buckets of a tier that must be recomputed because their source changed. Written by the raw
-- table's statement triggers (tier 1m) and by each refresh for the next tier. Duplicates are
-- allowed (cheaper than conflict checks on every write); a refresh claims them with DELETE.
CREATE TABLE ts_invalidation (
    tier      text NOT NULL,
    series_id bigint NOT NULL,
    bucket    timestamptz NOT NULL
);
CREATE INDEX ts_invalidation_tier_bucket ON ts_invalidation (tier, bucket, series_id);

-- Every partition we created, with its bounds, so retention and compression never parse pg_class
-- bound expressions.
CREATE TABLE ts_partition (
    name          text PRIMARY KEY,
    tier          text NOT NULL REFERENCES ts_tier (tier),
    lo            timestamptz NOT NULL,
    hi            timestamptz NOT NULL,
    compressed_at timestamptz,
    CONSTRAINT ts_partition_range UNIQUE (tier, lo)
);

-- app_user reaches nothing of this directly: only the *_tenant views and SECURITY DEFINER
-- functions granted in traksense/db/sql/.
REVOKE ALL ON ts_tier, ts_series, ts_measure, ts_measure_1m, ts_measure_5m, ts_measure_1h,
    ts_invalidation, ts_partition FROM PUBLIC;
