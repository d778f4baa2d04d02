// A small inline-SVG line plot of a record's utility q after each feedback (no libraries).
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // MM-DD hh:mm:ss, with milliseconds when the whole plot spans under a minute
  function shortTime(ms, fine) {
    const iso = new Date(ms).toISOString().replace("T", " ");
    return fine ? iso.slice(5, 23) : iso.slice(5, 19);
  }

  // points: [{at: ISO string, q: number|null, credit: number|null, reward, retrieval_id}]
  // current: the stored q (number|null), drawn as a dashed line when given.
  function qPlot(points, current) {
    const W = 460, H = 220, L = 44, R = 12, T = 14, B = 34;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "utility q over time" });
    const data = points.filter((p) => p.q !== null && p.q !== undefined)
      .map((p) => ({ ...p, t: Date.parse(p.at) }));
    const qs = data.map((p) => p.q);
    if (current !== null && current !== undefined) qs.push(current);
    let lo = Math.min(0, ...qs), hi = Math.max(1, ...qs);
    if (hi - lo < 1e-9) hi = lo + 1;
    const ts = data.map((p) => p.t);
    let t0 = ts.length ? Math.min(...ts) : Date.now(), t1 = ts.length ? Math.max(...ts) : t0 + 1;
    if (t1 - t0 < 1) { t0 -= 500; t1 += 500; }
    const fine = t1 - t0 < 60000;
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (q) => T + (1 - (q - lo) / (hi - lo)) * (H - T - B);

    for (let i = 0; i <= 4; i++) {
      const q = lo + ((hi - lo) * i) / 4;
      svg.appendChild(el("line", { class: "grid", x1: L, x2: W - R, y1: y(q), y2: y(q) }));
      svg.appendChild(el("text", { x: L - 6, y: y(q) + 3, "text-anchor": "end" }, q.toFixed(2)));
    }
    svg.appendChild(el("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
    svg.appendChild(el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    svg.appendChild(el("text", { x: L, y: H - B + 14 }, shortTime(t0, fine)));
    svg.appendChild(el("text", { x: W - R, y: H - B + 14, "text-anchor": "end" }, shortTime(t1, fine)));
    svg.appendChild(el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "feedback time (UTC)"));

    if (current !== null && current !== undefined) {
      const line = el("line", { class: "current", x1: L, x2: W - R, y1: y(current), y2: y(current) });
      line.appendChild(el("title", {}, `stored q = ${current.toFixed(4)}`));
      svg.appendChild(line);
    }
    if (data.length) {
      const d = data.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.q).toFixed(1)}`).join(" ");
      svg.appendChild(el("path", { class: "line", d }));
    }
    for (const p of data) {
      const c = el("circle", {
        class: p.credit === null ? "point uncredited" : "point",
        cx: x(p.t).toFixed(1), cy: y(p.q).toFixed(1), r: 4,
        "data-q": p.q, "data-retrieval": p.retrieval_id,
      });
      const credit = p.credit === null ? "not credited" : `credit ${p.credit}`;
      c.appendChild(el("title", {}, `${shortTime(p.t, true)}  q = ${p.q.toFixed(4)}  (reward ${p.reward}, ${credit})`));
      svg.appendChild(c);
    }
    return svg;
  }

  window.memqPlot = { qPlot };
})();
