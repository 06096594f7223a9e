-- Transparent compression of old rollup partitions, and optionally of old raw partitions
-- (COMPRESS_RAW_AFTER_DAYS, off by default) (docs/compression.md). This file: the compressed
-- stores' names and codec, and the decoded views; 56_decompress.sql restores segments,
-- 57_compress.sql compresses partitions.
--
--   ts_compress_partition(name)               move a tier partition into its compressed store
--   ts_decompress_segment(tier, series, seg)  restore one series' rows of one partition
--   ts_decompress_for(tier, series[], ...)    restore the segments a write is about to touch
--   ts_measure_<tier>_zrows                   internal: the compressed rows, decoded
--   ts_measure_zrows (40_tenant_views.sql)    internal: the compressed raw samples, decoded
--   ts_compression_stats                      owner-only: bytes before/after per tier
--
-- Invariant: for each (series, tier partition) rows live either in the uncompressed partition or
-- in one row of the compressed store, never both. The only writer of old buckets, the refresh
-- engine, calls ts_decompress_for() on the keys it is about to write (and on the source rows it
-- is about to read), so late data lands in a decompressed segment that the next compression job
-- compresses again.
--
-- Locks: compression of a tier holds the tier's refresh lock (no refresh writes into the
-- partition meanwhile) and its compress lock; decompression holds the compress lock. Taken in
-- that order everywhere (refresh.<tier> before any compress.<tier>, finer tier's compress lock
-- last), so they cannot deadlock.


-- Name of the compressed partition of a tier partition: ts_measure_1m_p20260105 ->
-- ts_measure_1m_z_p20260105. Retention drops both.
CREATE OR REPLACE FUNCTION ts_compressed_name(p_partition text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT regexp_replace(p_partition, '_p([0-9]+)$', '_z_p\1')
$$;
COMMENT ON FUNCTION ts_compressed_name(text) IS
    'Name of the compressed-store partition holding the compressed rows of a tier partition.';

-- Which form a tier's segments take: the scaled form for a series whose rows hold on average at
-- most this many samples, else the float8 form. The scaled form (decimal values as small
-- integers, 0003) is the smallest, but decoding it costs a dozen integer and float operations per
-- row, which makes a read of many rows about 1.65 times as long as on uncompressed rows (30 days
-- @5m, 8,640 rows; 30 days @1m was 1.7 times). The float8 form (0002) is decoded with two
-- coalesce per row (65_read.sql), as fast as uncompressed rows. Per tier:
-- - 1m: always the float8 form. Its reads are the largest, and at one sample a minute (n = 1,
--   v_max and v_sum then stored as NULL elements) it is already the value alone: 1.6 B per row
--   at the fleet shape, against 8.5 B at the seed's 1 Hz (bench storage, bench compression).
-- - 5m: the scaled form for series sampled every 5 s or slower (n <= 60): at the fleet shape
--   (n = 5) the float8 form would take about twice the room (min, max and sum all differ), and
--   a 5m row then stands for minutes of a slow series; faster series (the seed's 1 Hz, n = 300)
--   keep the float8 form and its read speed (10.1 B per row there).
-- - 1h: always scaled: in the float8 form it would take 16.3 B per row, and its reads are small
--   (30 days: 720 rows), where the decoding weighs little.
-- Either form of any tier is read back by the same decoders, whichever wrote it.
DROP FUNCTION IF EXISTS ts_z_scaled(text);
CREATE OR REPLACE FUNCTION ts_z_scaled_up_to(p_tier text)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE p_tier WHEN '5m' THEN 60::float8 WHEN '1h' THEN 'infinity'::float8 ELSE 0::float8 END $$;
COMMENT ON FUNCTION ts_z_scaled_up_to(text) IS
    'The largest mean samples per row for which the compression of a rollup tier writes a '
    'series in the scaled form (else the float8 form; 0: never).';

-- The codec of the value columns, shared by the decoding views, ts_decompress_for and the
-- check ts_compress_partition makes before writing the scaled form (so what is written is what
-- is read). Small IMMUTABLE SQL functions: the planner inlines them into the views. The stored
-- form is in migrations 0002_compression and 0003_compression_scaled, and docs/compression.md.
CREATE OR REPLACE FUNCTION ts_z_pow10(d smallint)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ('{1,10,100,1000,10000}'::float8[])[d + 1] $$;

-- Whether x is exactly (bit for bit) round(x * 10^d) / 10^d, the way the scaled form decodes.
CREATE OR REPLACE FUNCTION ts_z_exact(x float8, d smallint)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN abs(x) < 4503599627370496 / ts_z_pow10(d)
                THEN float8send(round(x * ts_z_pow10(d))::int8::float8 / ts_z_pow10(d))
                     = float8send(x)
                ELSE false END
$$;

-- v_min: the float8 element if any (the 0002 form, or an exception of the scaled form), else
-- (k_base + k_min[i]) / p.
CREATE OR REPLACE FUNCTION ts_z_min(mi float8, p float8, kb bigint, km smallint)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(mi, (kb + km)::float8 / p) $$;

-- v_max - v_min in units of 1/p: one byte (k_max, offset by 128), else k_max_w.
CREATE OR REPLACE FUNCTION ts_z_kx(kx "char", kxw smallint)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(kx::integer + 128, kxw::integer) $$;

-- v_max: without k_min[i] (the 0002 form, or an exception) the float8 element, NULL meaning
-- v_min; else (k_base + k_min[i] + kx) / p.
CREATE OR REPLACE FUNCTION ts_z_max(ma float8, mi float8, p float8, kb bigint, km smallint,
                                    kx integer)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN km IS NULL THEN coalesce(ma, mi)
                ELSE (kb + km + kx)::float8 / p END
$$;

-- v_sum: the float8 element if any (the 0002 form, or an exception of the scaled form), else
-- v_min * n when k_sum[i] is NULL, else
-- ((n * (2 * kmin + kx)) / 2 + k_sum[i]) / p + c_sum[i] * sum_unit. `vmin`: the decoded v_min.
CREATE OR REPLACE FUNCTION ts_z_sum(su float8, vmin float8, n integer, p float8, kb bigint,
                                    km smallint, kx integer, ks smallint, cs smallint,
                                    unit float8)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN su IS NOT NULL THEN su
                WHEN ks IS NULL THEN vmin * n
                ELSE ((n::bigint * (2 * (kb + km) + kx)) / 2 + ks)::float8 / p
                     + cs * unit END
$$;

-- The decoder: elements p_i0 to p_i1 (1-based) of one segment of any tier (the compressed stores
-- share their columns), as rows in stored order, which is bucket order. The arrays are sliced
-- before they are unnested: a range read of one series (ts_read_rollup_<tier>, 65_read.sql)
-- decodes only the elements in its range, and needs neither a filter nor a sort; the views and
-- ts_decompress_for take a whole segment (1 to n_rows). The arrays are unnested in the select
-- list, in lockstep, NULL arrays padding with NULLs, rather than in FROM: a FROM unnest(...)
-- materializes every array into a tuplestore first, which made decoding twice as slow. A
-- contiguous segment's buckets (offs NULL) come from a generate_series in the same lockstep, one
-- addition per row instead of a multiplication (a quarter of the decoding time). A small SQL
-- function that PostgreSQL inlines into its callers; executable by anyone, like the codec
-- functions above: it reads nothing, and the views that call it run as their caller.
DROP FUNCTION IF EXISTS ts_z_slice(timestamptz, interval, integer, integer, float8, bigint, float8,
    float8[], float8[], float8[], integer[], smallint[], "char"[], smallint[], smallint[],
    smallint[]);  -- its first form, contiguous segments only
CREATE OR REPLACE FUNCTION ts_z_slice(
    p_seg timestamptz, p_off0 integer, p_width interval, p_i0 integer, p_i1 integer,
    p_scale float8, p_k_base bigint, p_sum_unit float8, p_offs integer[],
    p_v_min float8[], p_v_max float8[], p_v_sum float8[], p_n integer[], p_k_min smallint[],
    p_k_max "char"[], p_k_max_w smallint[], p_k_sum smallint[], p_c_sum smallint[])
RETURNS TABLE (bucket timestamptz, v_sum float8, v_min float8, v_max float8, n integer)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT CASE WHEN u.o IS NULL THEN u.b ELSE p_seg + u.o * p_width END,
       ts_z_sum(u.su, ts_z_min(u.mi, p_scale, p_k_base, u.km), u.n, p_scale, p_k_base, u.km,
                ts_z_kx(u.kx, u.kxw), u.ks, u.cs, p_sum_unit),
       ts_z_min(u.mi, p_scale, p_k_base, u.km),
       ts_z_max(u.ma, u.mi, p_scale, p_k_base, u.km, ts_z_kx(u.kx, u.kxw)), u.n
FROM (SELECT unnest(p_offs[p_i0:p_i1]) AS o,
             unnest(p_v_min[p_i0:p_i1]) AS mi, unnest(p_v_max[p_i0:p_i1]) AS ma,
             unnest(p_v_sum[p_i0:p_i1]) AS su,
             unnest(CASE WHEN cardinality(p_n) = 1 THEN array_fill(p_n[1], ARRAY[p_i1 - p_i0 + 1])
                         ELSE p_n[p_i0:p_i1] END) AS n,
             unnest(p_k_min[p_i0:p_i1]) AS km, unnest(p_k_max[p_i0:p_i1]) AS kx,
             unnest(p_k_max_w[p_i0:p_i1]) AS kxw, unnest(p_k_sum[p_i0:p_i1]) AS ks,
             unnest(p_c_sum[p_i0:p_i1]) AS cs,
             generate_series(p_seg + (p_off0 + p_i0 - 1) * p_width,
                             p_seg + (p_off0 + p_i1 - 1) * p_width, p_width) AS b) u
$$;

-- The decoded compressed rows of each tier, with the tier's columns. Internal (no grant): the
-- *_rt views union them with the uncompressed rows. A caller's series_id = X reaches the primary
-- key of every compressed partition; a bucket range filters the decoded rows (a plain view cannot
-- turn it into a seg_start range: see docs/compression.md). One definition for every rollup
-- tier, its bucket width a constant of each view.
DO $$
DECLARE
    v_tier record;
BEGIN
    FOR v_tier IN SELECT tier, bucket_width FROM ts_tier WHERE bucket_width IS NOT NULL LOOP
        EXECUTE format(
            'CREATE OR REPLACE VIEW %I AS
             SELECT z.series_id, d.bucket, d.v_sum, d.v_min, d.v_max, d.n, z.seg_start
             FROM %I z
             CROSS JOIN LATERAL ts_z_slice(z.seg_start, z.off0, interval %L, 1, z.n_rows, z.scale,
                                           z.k_base, z.sum_unit, z.offs, z.v_min, z.v_max, z.v_sum,
                                           z.n, z.k_min, z.k_max, z.k_max_w, z.k_sum, z.c_sum) d',
            'ts_measure_' || v_tier.tier || '_zrows', 'ts_measure_' || v_tier.tier || '_z',
            v_tier.bucket_width);
        EXECUTE format('COMMENT ON VIEW %I IS %L', 'ts_measure_' || v_tier.tier || '_zrows',
                       format('Internal: the compressed %s rollups, decoded.', v_tier.tier));
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', 'ts_measure_' || v_tier.tier || '_zrows');
    END LOOP;
END
$$;
