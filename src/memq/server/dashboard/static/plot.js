// Small inline-SVG line plots (no libraries): a record's utility q after each feedback, and a
// learner's learning curve (rolling mean reward after each search with feedback).
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 460, H = 220, L = 44, R = 12, T = 14, B = 34;

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

  // The y range of values that live in [0, 1] mostly: at least [0, 1], wider when the values are.
  function yRange(values) {
    const lo = Math.min(0, ...values);
    let hi = Math.max(1, ...values);
    if (hi - lo < 1e-9) hi = lo + 1;
    return [lo, hi];
  }

  // An svg with the frame both plots share: y grid and labels over [lo, hi], the axes, the x range's
  // two ends and the x title. Returns the svg and its scales x([x0, x1] -> px), y([lo, hi] -> px).
  function frame(label, [lo, hi], [x0, x1], [left, right], xTitle) {
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    const x = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      svg.appendChild(el("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      svg.appendChild(el("text", { x: L - 6, y: y(v) + 3, "text-anchor": "end" }, v.toFixed(2)));
    }
    svg.appendChild(el("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
    svg.appendChild(el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    svg.appendChild(el("text", { x: L, y: H - B + 14 }, left));
    svg.appendChild(el("text", { x: W - R, y: H - B + 14, "text-anchor": "end" }, right));
    svg.appendChild(el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, xTitle));
    return { svg, x, y };
  }

  // The polyline through [px, py] points (nothing when there are none).
  function line(svg, pts) {
    if (!pts.length) return;
    const d = pts.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
    svg.appendChild(el("path", { class: "line", d }));
  }

  function dot(svg, cls, px, py, r, data, title) {
    const c = el("circle", { class: cls, cx: px.toFixed(1), cy: py.toFixed(1), r, ...data });
    c.appendChild(el("title", {}, title));
    svg.appendChild(c);
  }

  // points: [{at: ISO string, q: number|null, credit: number|null, reward, retrieval_id}]
  // current: the stored q (number|null), drawn as a dashed line when given.
  function qPlot(points, current) {
    const data = points.filter((p) => p.q !== null && p.q !== undefined)
      .map((p) => ({ ...p, t: Date.parse(p.at) }));
    const hasCurrent = current !== null && current !== undefined;
    const ts = data.map((p) => p.t);
    let t0 = ts.length ? Math.min(...ts) : Date.now(), t1 = ts.length ? Math.max(...ts) : t0 + 1;
    if (t1 - t0 < 1) { t0 -= 500; t1 += 500; }
    const fine = t1 - t0 < 60000;
    const { svg, x, y } = frame(
      "utility q over time", yRange(data.map((p) => p.q).concat(hasCurrent ? [current] : [])), [t0, t1],
      [shortTime(t0, fine), shortTime(t1, fine)], "feedback time (UTC)",
    );
    if (hasCurrent) {
      const stored = el("line", { class: "current", x1: L, x2: W - R, y1: y(current), y2: y(current) });
      stored.appendChild(el("title", {}, `stored q = ${current.toFixed(4)}`));
      svg.appendChild(stored);
    }
    line(svg, data.map((p) => [x(p.t), y(p.q)]));
    for (const p of data) {
      const credit = p.credit === null ? "not credited" : `credit ${p.credit}`;
      dot(svg, p.credit === null ? "point uncredited" : "point", x(p.t), y(p.q), 4,
        { "data-q": p.q, "data-retrieval": p.retrieval_id },
        `${shortTime(p.t, true)}  q = ${p.q.toFixed(4)}  (reward ${p.reward}, ${credit})`);
    }
    return svg;
  }

  // curve: [[searches so far, mean reward of the last `window` feedbacks], ...] (memq learn status)
  function curvePlot(curve, window) {
    const last = curve.length ? curve[curve.length - 1][0] : 1;
    const { svg, x, y } = frame(
      "learning curve: rolling mean reward", yRange(curve.map(([, v]) => v)), [0, Math.max(1, last)],
      ["0", String(curve.length ? last : "")], "searches with feedback",
    );
    line(svg, curve.map(([n, v]) => [x(n), y(v)]));
    for (const [n, v] of curve) {
      dot(svg, "point", x(n), y(v), 3, { "data-searches": n, "data-reward": v },
        `after ${n} searches: mean reward ${v.toFixed(3)} over the last ${Math.min(n, window)}`);
    }
    return svg;
  }

  window.memqPlot = { qPlot, curvePlot };
})();
