// memq dashboard: plain JS over the REST API (/v1) and the dashboard's JSON (/ui/api).
// The API key stays in this tab's sessionStorage and goes out only as an Authorization header.
"use strict";

(function () {
  const KEY = "memq.apiKey";
  const $ = (sel) => document.querySelector(sel);
  const state = { mode: "browse", cursor: null, selected: null };

  // -- helpers -------------------------------------------------------------------------------------
  function td(text, cls) {
    const cell = document.createElement("td");
    if (cls) cell.className = cls;
    if (text instanceof Node) cell.appendChild(text);
    else cell.textContent = text === null || text === undefined ? "" : String(text);
    return cell;
  }

  function fmtQ(q) {
    return q === null || q === undefined ? "–" : Number(q).toFixed(3);
  }

  function fmtTime(iso) {
    return iso ? iso.replace("T", " ").slice(0, 19) : "";
  }

  function short(text, n) {
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  function showError(message) {
    const box = $("#error");
    box.textContent = message;
    box.hidden = !message;
  }

  async function api(path, opts = {}) {
    const headers = {};
    const key = sessionStorage.getItem(KEY);
    if (key) headers["Authorization"] = "Bearer " + key;
    let body;
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    const res = await fetch(path, { method: opts.method || "GET", headers, body });
    if (!res.ok) {
      let detail = res.statusText;
      let code = String(res.status);
      try {
        const problem = await res.json();
        detail = problem.detail || detail;
        code = problem.code || code;
      } catch (_) { /* not JSON */ }
      const err = new Error(`${res.status} ${code}: ${detail}`);
      err.status = res.status;
      throw err;
    }
    return opts.text ? res.text() : res.json();
  }

  async function guarded(fn) {
    try {
      showError("");
      await fn();
    } catch (err) {
      showError(err.message);
    }
  }

  // -- who am I --------------------------------------------------------------------------------------
  async function whoami() {
    try {
      const me = await api("/v1/whoami");
      const mode = me.key_id ? `key ${me.key_id}` : "dev mode (no keys)";
      $("#whoami").textContent = `tenant ${me.tenant} · ${me.scopes.join(", ")} · ${mode}`;
      $("#whoami").dataset.tenant = me.tenant;
      return true;
    } catch (err) {
      $("#whoami").textContent = err.status === 401 ? "not signed in: paste an API key" : err.message;
      delete $("#whoami").dataset.tenant;
      return false;
    }
  }

  // -- memories --------------------------------------------------------------------------------------
  function scopeFields() {
    const out = {};
    for (const f of ["user", "agent", "session"]) {
      const v = $("#scope-" + f).value.trim();
      if (v) out[f] = v;
    }
    return out;
  }

  function recordRow(i, record, score) {
    const tr = document.createElement("tr");
    tr.className = "clickable";
    tr.dataset.id = record.id;
    const u = record.utility || {};
    tr.append(
      td(i), td(short(record.text, 140)), td(record.kind), td(record.version, "num"),
      td(fmtQ(u.q), "num"), td(u.n_shown || 0, "num"),
      td(score === undefined ? "" : Number(score).toFixed(4), "num"),
    );
    tr.addEventListener("click", () => guarded(() => openRecord(record.id)));
    return tr;
  }

  async function browse(append) {
    const params = new URLSearchParams({ limit: "50", ...scopeFields() });
    const kind = $("#scope-kind").value.trim();
    if (kind) params.append("kind", kind);
    if (append && state.cursor) params.set("cursor", state.cursor);
    const page = await api("/v1/memories?" + params.toString());
    const body = $("#records tbody");
    if (!append) body.replaceChildren();
    const start = body.children.length;
    page.records.forEach((r, i) => body.appendChild(recordRow(start + i + 1, r)));
    state.mode = "browse";
    state.cursor = page.next_cursor;
    $("#more-btn").hidden = !page.next_cursor;
    $("#list-caption").textContent = `${body.children.length} record(s), oldest first`;
  }

  async function search() {
    const query = $("#search-input").value.trim();
    if (!query) return browse(false);
    const req = { query, k: 20 };
    const scope = scopeFields();
    if (Object.keys(scope).length) req.scope = scope;
    const kind = $("#scope-kind").value.trim();
    if (kind) req.kinds = [kind];
    const result = await api("/v1/search", { method: "POST", body: req });
    const body = $("#records tbody");
    body.replaceChildren();
    result.hits.forEach((h) => body.appendChild(recordRow(h.rank, h.record, h.score)));
    state.mode = "search";
    state.cursor = null;
    $("#more-btn").hidden = true;
    $("#list-caption").textContent =
      `${result.hits.length} hit(s) for “${result.query}” · policy ${result.policy} · retrieval ${result.id}`;
  }

  function field(dl, name, value, key) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value === null || value === undefined ? "–" : String(value);
    if (key) dd.dataset.key = key;
    dl.append(dt, dd);
  }

  async function openRecord(id) {
    const enc = encodeURIComponent(id);
    const [record, history, series] = await Promise.all([
      api(`/v1/memories/${enc}?include_deleted=true`),
      api(`/v1/memories/${enc}/history`),
      api(`/ui/api/memories/${enc}/utility`),
    ]);
    state.selected = id;
    for (const tr of document.querySelectorAll("#records tbody tr")) {
      tr.classList.toggle("selected", tr.dataset.id === id);
    }
    const dl = $("#detail-fields");
    dl.replaceChildren();
    const sc = record.scope;
    const u = record.utility;
    field(dl, "id", record.id);
    field(dl, "text", record.text);
    field(dl, "kind", record.kind);
    field(dl, "scope", ["user", "agent", "session"].filter((f) => sc[f]).map((f) => `${f}=${sc[f]}`).join(" ") || "tenant-wide");
    field(dl, "version", record.version);
    field(dl, "valid", `${fmtTime(record.valid_from) || "…"} → ${fmtTime(record.valid_to) || "…"}`);
    field(dl, "recorded", fmtTime(record.recorded_at));
    field(dl, "deleted", record.deleted ? "yes" : "no");
    field(dl, "metadata", JSON.stringify(record.metadata));
    field(dl, "utility", `q ${fmtQ(u.q)} · shown ${u.n_shown} · used ${u.n_used} · reward sum ${u.reward_sum}`);

    const plot = $("#q-plot");
    plot.replaceChildren(window.memqPlot.qPlot(series.points, u.q));
    const note = series.points.length
      ? `${series.points.length} feedback(s) on retrievals that showed this record; dashed: stored q.`
      : "No feedback yet on a retrieval that showed this record.";
    $("#q-note").textContent = series.matches_current || !series.points.length
      ? note
      : note + " The log does not fully explain the stored value (pruned log, accumulated feedback or an import).";

    const body = $("#versions tbody");
    body.replaceChildren();
    for (const ev of history) {
      const tr = document.createElement("tr");
      tr.append(
        td(ev.version, "num"), td(ev.op), td(fmtTime(ev.at)), td(ev.actor), td(ev.reason),
        td(ev.record ? short(ev.record.text, 100) : ""),
      );
      body.appendChild(tr);
    }
    $("#detail").hidden = false;
  }

  // -- retrieval log ---------------------------------------------------------------------------------
  async function loadLog() {
    const params = new URLSearchParams({ limit: "100" });
    if ($("#feedback-only").checked) params.set("feedback_only", "true");
    const log = await api("/ui/api/retrievals?" + params.toString());
    const body = $("#retrievals tbody");
    body.replaceChildren();
    for (const r of log.rows) {
      const tr = document.createElement("tr");
      tr.dataset.id = r.id;
      const fb = r.feedback;
      const shown = document.createElement("span");
      r.shown.forEach((s, i) => {
        const a = document.createElement("a");
        a.href = "#";
        a.className = "mono";
        a.textContent = s.id.slice(-8);
        a.title = `${s.id} · rank ${s.rank} · score ${s.score.toFixed(4)} · propensity ${s.propensity.toFixed(3)}`;
        a.addEventListener("click", (e) => {
          e.preventDefault();
          selectTab("memories");
          guarded(() => openRecord(s.id));
        });
        if (i) shown.append(" ");
        shown.append(a);
      });
      let reward = "";
      if (fb) {
        reward = document.createElement("span");
        reward.className = fb.reward < 0 ? "pill neg" : "pill";
        reward.textContent = fb.count > 1 ? `${fb.reward} (${fb.count}×)` : String(fb.reward);
      }
      tr.append(
        td(fmtTime(r.created_at)), td(short(r.query, 80)), td(r.policy), td(shown),
        td(reward), td(fb ? fb.credit : ""), td(fb && fb.used ? fb.used.map((u) => u.slice(-8)).join(" ") : ""),
      );
      body.appendChild(tr);
    }
    $("#log-caption").textContent = `${log.rows.length} newest of ${log.scanned} logged retrieval(s)`;
  }

  // -- learning --------------------------------------------------------------------------------------
  function signed(v) {
    return (v < 0 ? "−" : "+") + Math.abs(v).toFixed(3);
  }

  // Why the learner serves or not, in the words of the promotion mode.
  function servingReason(view, st) {
    if (st.learner === "similarity") return "Similarity never serves: it is the recipe's own order.";
    if (view.promotion === "never") return "Promotion never: the learner only learns, in the shadow.";
    if (view.promotion === "always") return "Promotion always: the learner ranks as soon as it is asked for.";
    return st.serving
      ? "Guarded promotion: the log showed it better than the recipe; it stops when the recipe is shown better."
      : `Guarded promotion: it takes over once the lower bound of its difference over the recipe is above 0 ` +
        `(level α = ${view.alpha}) on at least ${view.min_searches} logged searches.`;
  }

  function renderEstimate(view, st) {
    const dl = $("#estimate-fields");
    dl.replaceChildren();
    const est = st.estimate;
    if (!est) {
      $("#estimate-note").textContent = st.feedbacks
        ? "No promotion test yet: it runs each time the learner is refit from the logged feedback."
        : "No promotion test yet: no feedback on searches that trained this learner.";
      return;
    }
    const [servingName, shadowName] = st.serving ? [st.learner, "the recipe"] : ["the recipe", st.learner];
    field(dl, `serving (${servingName})`, est.serving.toFixed(3), "serving");
    field(dl, `shadow (${shadowName})`, est.shadow.toFixed(3), "shadow");
    field(dl, "difference", `${signed(est.difference)}  [${signed(est.lower)}, ${signed(est.upper)}]`, "difference");
    field(dl, "searches", est.searches, "searches");
    field(dl, "explored", est.explored, "explored");
    field(dl, "effective sample size (shadow)", Number(est.effective).toFixed(1), "effective");
    $("#estimate-note").textContent =
      "Self-normalised IPS value per shown record on the same logged searches; difference = shadow − serving, " +
      `with bootstrap bounds at α = ${view.alpha} on each side. Explored: searches whose last slot showed a shadow pick.`;
  }

  async function loadLearning() {
    const select = $("#learner-select");
    const params = new URLSearchParams();
    if (select.value) params.set("learner", select.value);
    const view = await api("/ui/api/learning?" + params.toString());
    const st = view.status;
    const options = (view.default === null ? [""] : []).concat(view.learners);
    select.replaceChildren(...options.map((name) => {
      const opt = document.createElement("option");
      opt.value = name;
      opt.textContent = name === "" ? "(none configured)" : name === view.default ? `${name} (default)` : name;
      return opt;
    }));
    select.value = st ? st.learner : "";
    $("#learning-caption").textContent = `promotion ${view.promotion} (all learners of this server)`;

    const serving = $("#serving");
    const fields = $("#learner-fields");
    fields.replaceChildren();
    $("#curve-plot").replaceChildren();
    if (!st) {
      serving.dataset.serving = "recipe";
      delete serving.dataset.learner;
      serving.replaceChildren("The ", Object.assign(document.createElement("strong"), { textContent: "recipe" }),
        " ranks every search: no learner is configured. Pick one to see what it learned from searches that named it.");
      $("#estimate-fields").replaceChildren();
      $("#estimate-note").textContent = "";
      $("#curve-note").textContent = "";
      return;
    }
    serving.dataset.serving = st.serving ? "learner" : "recipe";
    serving.dataset.learner = st.learner;
    const who = document.createElement("strong");
    who.textContent = st.serving ? st.learner : "recipe";
    serving.replaceChildren(
      st.serving ? "The learner " : "The ", who,
      st.serving ? " ranks this tenant's searches. " : ` (hybrid dense + BM25) ranks this tenant's searches; ${st.learner} learns in the shadow. `,
      servingReason(view, st),
    );
    field(fields, "learner", st.learner, "learner");
    field(fields, "trained", st.trained ? "yes" : "no", "trained");
    field(fields, "feedbacks counted", st.feedbacks, "feedbacks");
    field(fields, "model version", st.version, "version");
    field(fields, "saved state version", st.state_version, "state_version");
    renderEstimate(view, st);

    $("#curve-plot").replaceChildren(window.memqPlot.curvePlot(st.curve, view.window));
    $("#curve-note").textContent = st.curve.length
      ? `Mean reward of the last ${view.window} feedbacks, after each of the ${st.curve[st.curve.length - 1][0]} ` +
        `logged searches with feedback that trained ${st.learner} (the newest a fit reads).`
      : `No logged feedback yet on searches that trained ${st.learner}.`;
  }

  // -- reports ---------------------------------------------------------------------------------------
  async function loadReports() {
    const reports = await api("/ui/api/reports");
    const body = $("#reports tbody");
    body.replaceChildren();
    for (const r of reports) {
      const tr = document.createElement("tr");
      tr.className = "clickable";
      tr.dataset.name = r.name;
      tr.append(td(r.name), td(r.kind), td(`${(r.bytes / 1024).toFixed(1)} KiB`, "num"), td(fmtTime(r.modified)));
      tr.addEventListener("click", () => guarded(() => openReport(r)));
      body.appendChild(tr);
    }
    $("#reports-caption").textContent = reports.length
      ? `${reports.length} file(s) in the server's reports directory`
      : "No reports yet: run memq bench, which writes HTML reports and results JSON.";
  }

  async function openReport(report) {
    const text = await api(`/ui/api/reports/${encodeURIComponent(report.name)}`, { text: true });
    const view = $("#report-view");
    view.replaceChildren();
    if (report.kind === "html") {
      const frame = document.createElement("iframe");
      frame.setAttribute("sandbox", "allow-scripts"); // opaque origin: no access to this page or the key
      frame.title = report.name;
      frame.srcdoc = text;
      view.appendChild(frame);
    } else {
      const pre = document.createElement("pre");
      try {
        pre.textContent = report.kind === "json" ? JSON.stringify(JSON.parse(text), null, 2) : text;
      } catch (_) {
        pre.textContent = text;
      }
      view.appendChild(pre);
    }
  }

  // -- wiring ----------------------------------------------------------------------------------------
  function selectTab(name) {
    for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
    for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== "panel-" + name;
    if (name === "retrievals") guarded(loadLog);
    if (name === "reports") guarded(loadReports);
    if (name === "learning") guarded(loadLearning);
  }

  async function start() {
    if (await whoami()) await guarded(() => browse(false));
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => selectTab(b.dataset.tab));
    $("#key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const key = $("#api-key").value.trim();
      if (key) sessionStorage.setItem(KEY, key);
      $("#api-key").value = "";
      start();
    });
    $("#forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      $("#records tbody").replaceChildren();
      $("#detail").hidden = true;
      for (const id of ["#serving", "#learner-fields", "#estimate-fields", "#curve-plot"]) $(id).replaceChildren();
      whoami();
    });
    $("#scope-form").addEventListener("submit", (e) => {
      e.preventDefault();
      guarded(search);
    });
    $("#browse-btn").addEventListener("click", () => {
      $("#search-input").value = "";
      guarded(() => browse(false));
    });
    $("#more-btn").addEventListener("click", () => guarded(() => browse(true)));
    $("#feedback-only").addEventListener("change", () => guarded(loadLog));
    $("#refresh-log").addEventListener("click", () => guarded(loadLog));
    $("#learner-select").addEventListener("change", () => guarded(loadLearning));
    $("#refresh-learning").addEventListener("click", () => guarded(loadLearning));
    start();
  });
})();
