// TrakSense point explorer: lists the tenant's series (GET /data/series) and draws one point
// (GET /data/points) as an SVG line chart, with a min/max band for aggregated tiers; on/off
// points' state rows and counters' deltas as bars, text points' state rows as a table. "All
// points" draws every point of the device, one chart each, from one POST /data/query.
//
// The API key lives in sessionStorage (this tab only) and goes out as a Bearer header. The page
// state can also come from the URL fragment, which never reaches the server:
//   /explorer#key=tsk_…&device=<uuid>&point=<uuid>|*&range=1h|series|…&agg=auto|raw|1m|5m|1h|1d
//            &start=<ISO>&end=<ISO>
// A key found in the fragment is moved to sessionStorage and removed from the address bar.
// When the chart is drawn, #chart carries data-state="drawn", data-points and data-agg (for all
// points: data-charts, the number of charts, and data-points, their points together).
"use strict";
(function () {
  const KEY_STORAGE = "traksense.apikey";
  const MAX_PAGES = 20;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const RANGES = { "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400,
                   "30d": 30 * 86400, "365d": 365 * 86400 };
  const $ = (id) => document.getElementById(id);

  let seriesList = [];

  function setMessage(text, kind) {
    const el = $("message");
    el.textContent = text;
    el.className = "notice" + (kind ? " " + kind : "");
    el.hidden = !text;
  }

  function setChartState(state, extra) {
    const chart = $("chart");
    chart.dataset.state = state;
    for (const [k, v] of Object.entries(extra || {})) chart.dataset[k] = String(v);
  }

  function getKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (e) { /* storage disabled: the key lives until the page is left */ }
    memoryKey = key;
  }
  let memoryKey = "";
  const currentKey = () => getKey() || memoryKey;

  async function api(url, body) {
    const headers = { Authorization: "Bearer " + currentKey(), Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: headers,
      cache: "no-store",
      credentials: "omit",
    });
    let answer = null;
    try { answer = await response.json(); } catch (e) { answer = null; }
    if (!response.ok) {
      const message = answer && answer.error ? answer.error.message : response.statusText;
      const error = new Error(response.status === 401
        ? "The API key was rejected (" + message + ")." : message);
      error.status = response.status;
      throw error;
    }
    return answer;
  }

  // -- fragment state ------------------------------------------------------------------------

  function readFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const state = Object.fromEntries(params.entries());
    if (state.key) {
      storeKey(state.key);
      params.delete("key");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
    return state;
  }

  function writeFragment() {
    const params = new URLSearchParams();
    params.set("device", $("device").value);
    params.set("point", $("point").value);
    params.set("range", $("range").value);
    params.set("agg", $("agg").value);
    if ($("range").value === "custom") {
      params.set("start", $("start").value.trim());
      params.set("end", $("end").value.trim());
    }
    history.replaceState(null, "", location.pathname + location.search + "#" + params.toString());
  }

  // -- series pickers ------------------------------------------------------------------------

  function option(value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    return o;
  }

  function fillPoints(selected) {
    const device = $("device").value;
    const select = $("point");
    select.replaceChildren();
    const points = seriesList.filter((s) => s.device_id === device);
    if (points.length > 1) select.appendChild(option("*", "all " + points.length + " points"));
    for (const s of points) {
      select.appendChild(option(s.point_id, s.point_id + " (" + s.kind + ")"));
    }
    if (selected) select.value = selected;
    select.disabled = select.options.length === 0;
    $("draw").disabled = select.disabled;
  }

  async function loadSeries(state) {
    if (!currentKey()) {
      setMessage("Paste a tenant API key to list its series.");
      return false;
    }
    setMessage("Loading series…");
    const body = await api("/data/series");
    seriesList = body.series || [];
    const devices = [...new Set(seriesList.map((s) => s.device_id))];
    const select = $("device");
    select.replaceChildren(...devices.map((d) => option(d, d)));
    select.disabled = devices.length === 0;
    if (state.device && devices.includes(state.device)) select.value = state.device;
    fillPoints(state.point);
    if (devices.length === 0) {
      setMessage("This tenant has no series yet: write samples with POST /data/points.");
      return false;
    }
    setMessage(seriesList.length + " series. Pick a device, a point and a range.");
    return true;
  }

  // -- query ---------------------------------------------------------------------------------

  function selectedSeries() {
    return seriesList.find((s) => s.device_id === $("device").value
                             && s.point_id === $("point").value);
  }

  function timeRange(series) {
    const range = $("range").value;
    const now = Date.now();
    if (range === "custom") {
      const start = $("start").value.trim();
      const end = $("end").value.trim();
      return [start, end];
    }
    if (range === "series") {
      const first = series && series.first;
      const last = series && series.last;
      if (first && last) {
        // end is exclusive: one second past the last sample.
        return [new Date(first).toISOString(), new Date(Date.parse(last) + 1000).toISOString()];
      }
      return [new Date(now - 86400e3).toISOString(), new Date(now + 60e3).toISOString()];
    }
    const seconds = RANGES[range] || 86400;
    return [new Date(now - seconds * 1000).toISOString(), new Date(now + 60e3).toISOString()];
  }

  async function fetchPoints(series) {
    const [start, end] = timeRange(series);
    const maxPoints = Math.max(200, Math.min(2000, Math.round($("chart").clientWidth || 1000)));
    const params = new URLSearchParams({
      device_id: series.device_id, point_id: series.point_id, start: start, end: end,
      agg: $("agg").value,
      max_points: String(maxPoints),
    });
    let url = "/data/points?" + params.toString();
    let first = null;
    const rows = [];
    for (let page = 0; url && page < MAX_PAGES; page++) {
      const body = await api(url);
      if (!first) first = body;
      for (const row of body.data) rows.push(row);
      url = body.next || null;
    }
    return { head: first, rows: rows, truncated: Boolean(url), start: start, end: end };
  }

  async function draw() {
    if ($("point").value === "*") return drawDevice();
    const series = selectedSeries();
    if (!series) return;
    writeFragment();
    setChartState("loading");
    setMessage("Loading…");
    $("degraded").hidden = true;
    $("table-wrap").replaceChildren();
    let answer;
    try {
      answer = await fetchPoints(series);
    } catch (error) {
      setMessage(error.message, "bad");
      setChartState("error");
      $("chart").replaceChildren();
      return;
    }
    const head = answer.head;
    if (head.degraded_from) {
      const el = $("degraded");
      el.textContent = "Degraded: asked for " + head.degraded_from + ", answered from "
        + head.degraded_to + ". " + (head.reason || "");
      el.hidden = false;
    }
    const agg = head.agg;
    $("summary").textContent = answer.rows.length + (agg === "raw" ? " samples" : " buckets")
      + " from tier " + agg + ", " + head.start + " → " + head.end
      + (answer.truncated ? " (first " + MAX_PAGES + " pages only)" : "");
    if (series.kind === "text") {
      drawTable(answer.rows, agg);
      setMessage("");
      setChartState("table", { points: answer.rows.length, agg: agg });
      return;
    }
    // How to draw: a numeric tier as a line with its min/max band; an on/off point's state rows
    // as a timeline of bars (the share of each bucket it was on); a counter's buckets as bars
    // of its increase (daily bars with agg=1d); raw samples as a line.
    const counter = agg !== "raw" && answer.rows.some((r) => "delta" in r);
    const mode = agg === "raw" ? "line"
      : series.kind === "boolean" || counter ? "bars" : "band";
    const points = toPoints(answer.rows, agg, series.kind, counter);
    if (points.length === 0) {
      $("chart").replaceChildren();
      setMessage("No data in this range.", "warn");
      setChartState("empty", { points: 0, agg: agg });
      return;
    }
    drawChart(points, mode, Date.parse(answer.start), Date.parse(answer.end), BUCKET_MS[agg] || 0);
    setMessage(series.kind === "boolean" && agg !== "raw"
      ? "Bars: the share of each bucket the point was on (true)." : counter
      ? "Bars: the counter's increase in each bucket (resets counted from zero)." : "");
    // Where the chart landed on the page (for screenshots in tests): x,y,width,height in px.
    const r = $("chart").getBoundingClientRect();
    const box = [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round).join(",");
    setChartState("drawn", { points: points.length, agg: agg, box: box, mode: mode });
  }

  // Every point of the device (at most MAX_QUERY_SERIES), one chart each, from one request:
  // POST /data/query reads them all from one snapshot, each as GET /data/points would answer.
  const MAX_QUERY_SERIES = 100;

  async function drawDevice() {
    const device = $("device").value;
    const points = seriesList.filter((s) => s.device_id === device).slice(0, MAX_QUERY_SERIES);
    if (points.length === 0) return;
    writeFragment();
    setChartState("loading");
    setMessage("Loading " + points.length + " points…");
    $("degraded").hidden = true;
    $("table-wrap").replaceChildren();
    // "Whole series": from the device's first sample to its last.
    const span = {
      first: points.map((s) => s.first).filter(Boolean).sort()[0],
      last: points.map((s) => s.last).filter(Boolean).sort().pop(),
    };
    const [start, end] = timeRange(span);
    const maxPoints = Math.max(100, Math.min(1000, Math.round($("chart").clientWidth || 1000)));
    const answer = await api("/data/query", {
      start: start, end: end, agg: $("agg").value, max_points: maxPoints,
      series: points.map((s) => ({ device_id: s.device_id, point_id: s.point_id })),
    });
    const sections = [];
    let total = 0, drawn = 0;
    answer.results.forEach((result, i) => {
      const series = points[i];
      const section = document.createElement("section");
      section.className = "device-point";
      const title = document.createElement("h2");
      title.textContent = series.point_id + " (" + series.kind + ")"
        + (result.agg ? " · " + result.agg + " · " + result.data.length
                        + (result.agg === "raw" ? " samples" : " buckets") : "")
        + (result.degraded_from ? " · degraded from " + result.degraded_from : "")
        + (result.next ? " · first page only" : "");
      const target = document.createElement("div");
      target.className = "chart small";
      section.append(title, target);
      sections.push(section);
      if (result.error) {
        target.textContent = result.error.message;
        return;
      }
      if (series.kind === "text") {
        drawTable(result.data, result.agg, target);
        total += result.data.length;
        drawn += 1;
        return;
      }
      const counter = result.agg !== "raw" && result.data.some((r) => "delta" in r);
      const mode = result.agg === "raw" ? "line"
        : series.kind === "boolean" || counter ? "bars" : "band";
      const chartPoints = toPoints(result.data, result.agg, series.kind, counter);
      if (chartPoints.length === 0) {
        target.textContent = "No data in this range.";
        return;
      }
      drawChart(chartPoints, mode, Date.parse(start), Date.parse(end),
                BUCKET_MS[result.agg] || 0, target);
      total += chartPoints.length;
      drawn += 1;
    });
    $("chart").replaceChildren(...sections);
    $("summary").textContent = points.length + " points of device " + device + ", "
      + start + " → " + end + " (one request)";
    setMessage("");
    setChartState("drawn", { points: total, charts: drawn, agg: $("agg").value, mode: "device" });
  }

  const BUCKET_MS = { "1m": 60e3, "5m": 300e3, "1h": 3600e3, "1d": 86400e3 };

  function toPoints(rows, agg, kind, counter) {
    const num = (v) => (kind === "boolean" ? (v ? 1 : 0) : v);
    return rows
      .map((r) => agg === "raw"
        ? { t: Date.parse(r.ts), v: num(r.v) }
        : kind === "boolean"
        ? { t: Date.parse(r.ts), v: r.true_s / ((BUCKET_MS[agg] || 60e3) / 1000), n: r.n }
        : counter
        ? { t: Date.parse(r.ts), v: r.delta, n: r.n }
        : { t: Date.parse(r.ts), v: r.v_avg, lo: r.v_min, hi: r.v_max, n: r.n })
      .filter((p) => typeof p.v === "number" && isFinite(p.v));
  }

  // -- chart ---------------------------------------------------------------------------------

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceTicks(lo, hi, count) {
    if (hi === lo) { lo -= 1; hi += 1; }
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    // The axis runs from the tick at or below the lowest value to the one at or above the
    // highest, so nothing touches the frame.
    const first = Math.floor(lo / step) * step, last = Math.ceil(hi / step) * step;
    const ticks = [];
    for (let i = 0; first + i * step <= last + step * 1e-9; i++) ticks.push(first + i * step);
    return { lo: first, hi: last, ticks };
  }

  function timeLabel(t, span) {
    const iso = new Date(t).toISOString();
    if (span <= 2 * 86400e3) return iso.slice(11, 16);
    if (span <= 60 * 86400e3) return iso.slice(5, 10) + " " + iso.slice(11, 16);
    return iso.slice(0, 10);
  }

  function formatValue(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    return String(Math.round(v * 1000) / 1000);
  }

  function drawChart(points, mode, tStart, tEnd, bucketMs, target) {
    const band = mode === "band";
    // A chart among a device's others is lower: same width, a strip.
    const W = 1000, H = target ? 220 : 420, left = 70, right = 20, top = 16, bottom = 36;
    const pw = W - left - right, ph = H - top - bottom;
    // Bars stand on zero.
    let vmin = mode === "bars" ? 0 : Infinity, vmax = -Infinity;
    for (const p of points) {
      vmin = Math.min(vmin, band && p.lo != null ? p.lo : p.v);
      vmax = Math.max(vmax, band && p.hi != null ? p.hi : p.v);
    }
    const y = niceTicks(vmin, vmax, 5);
    const t0 = isFinite(tStart) ? Math.min(tStart, points[0].t) : points[0].t;
    let t1 = isFinite(tEnd) ? Math.max(tEnd, points[points.length - 1].t) : points[points.length - 1].t;
    if (t1 === t0) t1 = t0 + 1000;
    const X = (t) => left + ((t - t0) / (t1 - t0)) * pw;
    const Y = (v) => top + (1 - (v - y.lo) / (y.hi - y.lo)) * ph;

    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, class: "line-chart", role: "img",
                            "aria-label": "line chart of the selected point" });
    const grid = el("g", { class: "grid" });
    for (const v of y.ticks) {
      grid.appendChild(el("line", { x1: left, x2: W - right, y1: Y(v), y2: Y(v) }));
      grid.appendChild(el("text", { x: left - 8, y: Y(v) + 4, class: "ylabel" }, formatValue(v)));
    }
    const xCount = 6;
    for (let i = 0; i <= xCount; i++) {
      const t = t0 + ((t1 - t0) * i) / xCount;
      grid.appendChild(el("line", { x1: X(t), x2: X(t), y1: top, y2: top + ph, class: "v" }));
      grid.appendChild(el("text", { x: X(t), y: H - 12, class: "xlabel" }, timeLabel(t, t1 - t0)));
    }
    svg.appendChild(grid);

    // Break the line where the gap between two points is far above the usual spacing.
    const gaps = [];
    for (let i = 1; i < points.length; i++) gaps.push(points[i].t - points[i - 1].t);
    const sorted = gaps.slice().sort((a, b) => a - b);
    const usual = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
    const segments = [[]];
    points.forEach((p, i) => {
      if (i > 0 && usual > 0 && gaps[i - 1] > 5 * usual) segments.push([]);
      segments[segments.length - 1].push(p);
    });

    if (band) {
      for (const seg of segments) {
        const upper = seg.map((p) => X(p.t).toFixed(1) + "," + Y(p.hi).toFixed(1));
        const lower = seg.slice().reverse().map((p) => X(p.t).toFixed(1) + "," + Y(p.lo).toFixed(1));
        svg.appendChild(el("polygon", { points: upper.concat(lower).join(" "), class: "band" }));
      }
    }
    if (mode === "bars") {
      // One bar per bucket, as wide as the bucket (at least a pixel), from zero to its value.
      for (const p of points) {
        const x0 = X(p.t), x1 = X(p.t + (bucketMs || 60e3));
        const y0 = Y(Math.max(0, y.lo)), y1 = Y(p.v);
        svg.appendChild(el("rect", {
          x: x0.toFixed(1), width: Math.max(1, x1 - x0 - 0.5).toFixed(1),
          y: Math.min(y0, y1).toFixed(1), height: Math.abs(y0 - y1).toFixed(1), class: "bar",
        }));
      }
    } else {
      for (const seg of segments) {
        const d = seg.map((p, i) => (i ? "L" : "M") + X(p.t).toFixed(1) + " " + Y(p.v).toFixed(1));
        svg.appendChild(el("path", { d: d.join(""), class: "line" }));
        if (seg.length === 1) {
          svg.appendChild(el("circle", { cx: X(seg[0].t), cy: Y(seg[0].v), r: 3, class: "dot" }));
        }
      }
    }
    svg.appendChild(el("rect", { x: left, y: top, width: pw, height: ph, class: "frame" }));

    // A readout of the nearest point under the pointer.
    const readout = el("text", { x: left + 8, y: top + 14, class: "readout" }, "");
    const marker = el("circle", { r: 4, class: "marker", cx: -10, cy: -10 });
    svg.appendChild(marker);
    svg.appendChild(readout);
    svg.addEventListener("mousemove", (event) => {
      const box = svg.getBoundingClientRect();
      const t = t0 + (((event.clientX - box.left) * (W / box.width) - left) / pw) * (t1 - t0);
      let best = points[0];
      for (const p of points) if (Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
      marker.setAttribute("cx", X(best.t));
      marker.setAttribute("cy", Y(best.v));
      readout.textContent = new Date(best.t).toISOString().replace(".000Z", "Z") + "  "
        + formatValue(best.v)
        + (band ? "  (min " + formatValue(best.lo) + ", max " + formatValue(best.hi)
                  + ", n " + best.n + ")" : "");
    });
    (target || $("chart")).replaceChildren(svg);
  }

  // A text point: its samples, or with a rollup tier its state rows (time in each value).
  function drawTable(rows, agg, target) {
    if (!target) $("chart").replaceChildren();
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    const states = agg !== "raw";
    for (const h of states ? ["ts", "first", "last", "changes", "n", "time in (s)"] : ["ts", "value"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const r of rows.slice(-500).reverse()) {
      const tr = body.insertRow();
      tr.insertCell().textContent = r.ts;
      if (!states) {
        tr.insertCell().textContent = String(r.v);
        continue;
      }
      for (const v of [r.first, r.last, r.changes, r.n]) tr.insertCell().textContent = v ?? "–";
      tr.insertCell().textContent = Object.entries(r.time_in || {})
        .sort((a, b) => b[1] - a[1]).map(([k, s]) => k + " " + Math.round(s)).join(", ");
    }
    (target || $("table-wrap")).replaceChildren(table);
  }

  // -- wiring --------------------------------------------------------------------------------

  function fail(error) {
    setMessage(error.message, "bad");
    setChartState("error");
  }

  async function start() {
    const state = readFragment();
    if (state.range && [...$("range").options].some((o) => o.value === state.range)) {
      $("range").value = state.range;
    }
    if (state.agg && [...$("agg").options].some((o) => o.value === state.agg)) {
      $("agg").value = state.agg;
    }
    if (state.start) $("start").value = state.start;
    if (state.end) $("end").value = state.end;
    $("custom-range").hidden = $("range").value !== "custom";

    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      storeKey($("key").value.trim());
      $("key").value = "";
      loadSeries({}).catch(fail);
    });
    $("forget").addEventListener("click", () => {
      storeKey("");
      seriesList = [];
      $("device").replaceChildren();
      $("point").replaceChildren();
      $("device").disabled = $("point").disabled = $("draw").disabled = true;
      $("chart").replaceChildren();
      setChartState("idle");
      setMessage("Key forgotten.");
    });
    $("device").addEventListener("change", () => fillPoints());
    $("range").addEventListener("change", () => {
      $("custom-range").hidden = $("range").value !== "custom";
    });
    $("query-form").addEventListener("submit", (event) => {
      event.preventDefault();
      draw().catch(fail);
    });

    try {
      const ready = await loadSeries(state);
      if (ready && state.device && state.point
          && (selectedSeries() || $("point").value === "*")) await draw();
    } catch (error) {
      fail(error);
    }
  }

  start();
})();
