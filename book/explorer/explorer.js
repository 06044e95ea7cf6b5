// The kernel-free sparsity explorer: a native <input type="range"> drives Plotly figures over
// the grid that scripts/export_explorer.py precomputed (window.PRUNINGRL_EXPLORER, grid.js).
// book/_ext/explorer_assets.py serves both files, and plotly.min.js, as _static/explorer/.
// Nothing is fetched: plotly.min.js and grid.js are served with the book.
(function () {
  "use strict";
  const GRID = window.PRUNINGRL_EXPLORER;
  const root = document.getElementById("pruningrl-explorer");
  if (!root || !GRID || !window.Plotly) {
    if (root) root.textContent = "The explorer's scripts did not load.";
    return;
  }
  const $ = (id) => document.getElementById(id);
  const heat = $("pe-heatmaps"), bounds = $("pe-bounds"), returns = $("pe-returns");
  const slider = $("pe-sparsity"), readout = $("pe-readout");
  const BOUNDS = [["global_bound", "global certificate (monotone)", "#1f77b4"],
                  ["local_bound", "local bound, mean over visited states", "#2ca02c"],
                  ["crown_bound", "CROWN, mean over visited states", "#ff7f0e"],
                  ["spectral_bound", "spectral product (not monotone)", "#d62728"]];
  const CONFIG = {displayModeBar: false, responsive: true};
  const fmt = (x, d) => (x === null || x === undefined ? "n/a" : Number(x).toPrecision(d || 4));

  function fill(select, values) {
    for (const v of values) select.add(new Option(v, v));
  }
  fill($("pe-agent"), Object.keys(GRID.agents));
  fill($("pe-method"), GRID.methods);
  fill($("pe-scope"), GRID.scopes);

  function current() {
    const agent = GRID.agents[$("pe-agent").value];
    const key = $("pe-method").value + "/" + $("pe-scope").value;
    return {agent: agent, series: agent.series[key], returns: agent.returns[key],
            i: Number(slider.value)};
  }

  // one row per output unit; a pruned entry is null (drawn as the grey background)
  function layerZ(layer, index, i) {
    const [rows, cols] = layer.shape, z = [];
    for (let r = 0; r < rows; r++) {
      const row = new Array(cols);
      for (let c = 0; c < cols; c++) {
        const k = r * cols + c;
        row[c] = index[k] > i ? layer.q[k] / 127 : null;
      }
      z.push(row);
    }
    return z;
  }

  function heatmaps(state) {
    const n = state.agent.layers.length, gap = 0.09, w = (1 - gap * (n - 1)) / n;
    const traces = [], layout = {height: 300, margin: {t: 40, b: 40, l: 45, r: 90},
      plot_bgcolor: "#d1d1d1", annotations: [], showlegend: false};
    state.agent.layers.forEach((layer, k) => {
      const ax = k === 0 ? "" : String(k + 1);
      traces.push({type: "heatmap", z: layerZ(layer, state.series.prune_index[k], state.i),
        xaxis: "x" + ax, yaxis: "y" + ax, zmin: -1, zmax: 1, colorscale: "RdBu",
        reversescale: true, hoverongaps: false,
        // one colour bar for all layers: each layer is scaled by its largest |weight|
        showscale: k === n - 1, colorbar: {thickness: 12, len: 0.9, x: 1.01,
          title: {text: "weight / max |w|", side: "right"}}});
      layout["xaxis" + ax] = {domain: [k * (w + gap), k * (w + gap) + w], anchor: "y" + ax,
        title: {text: "in (" + layer.shape[1] + ")"}, showgrid: false, zeroline: false};
      layout["yaxis" + ax] = {anchor: "x" + ax, autorange: "reversed", showgrid: false,
        zeroline: false, title: {text: "out (" + layer.shape[0] + ")"},
        dtick: layer.shape[0] <= 10 ? 1 : undefined};
      layout.annotations.push({text: "(a) layer " + (k + 1) + ": sparsity " +
        state.series.layer_sparsity[state.i][k].toFixed(2), xref: "paper", yref: "paper",
        x: k * (w + gap) + w / 2, y: 1.12, showarrow: false});
    });
    return [traces, layout];
  }

  function boundsFigure(state) {
    const s = GRID.sparsities, traces = [];
    for (const [name, label, colour] of BOUNDS) {
      const y = state.series[name].map((v) => (v > 0 ? v : null));
      traces.push({x: s, y: y, mode: "lines", name: label, line: {color: colour}});
      traces.push({x: [s[state.i]], y: [y[state.i]], mode: "markers", showlegend: false,
        marker: {color: colour, size: 11}, hoverinfo: "skip"});
    }
    const layout = {height: 420, margin: {t: 40, b: 45, l: 60, r: 10},
      title: {text: "(b) certificates and bounds, one-shot pruning", font: {size: 14}},
      xaxis: {title: {text: "sparsity"}, range: [0, 0.96]},
      yaxis: {title: {text: "bound on the change at eps = " + state.agent.eps}, type: "log"},
      legend: {orientation: "h", x: 0, y: -0.25},
      shapes: [vline(s[state.i])]};
    return [traces, layout];
  }

  function vline(x) {
    return {type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
            line: {dash: "dot", width: 1, color: "black"}};
  }

  function measured(state) {
    const r = state.returns, s = GRID.sparsities[state.i];
    if (!r) return null;
    const j = r.sparsities.findIndex((x) => Math.abs(x - s) < 1e-9);
    return j < 0 ? null : j;
  }

  function returnsFigure(state) {
    const r = state.returns, s = GRID.sparsities[state.i], traces = [];
    const layout = {height: 420, margin: {t: 40, b: 45, l: 60, r: 10},
      title: {text: "(c) sweet-spot returns (pruned, fine-tuned)", font: {size: 14}},
      xaxis: {title: {text: "sparsity"}, range: [0, 0.96]},
      yaxis: {title: {text: "mean return"}}, legend: {orientation: "h", x: 0, y: -0.25},
      shapes: [vline(s)], annotations: []};
    if (r) {
      const j = measured(state);
      [["clean", "#1f77b4", "rgba(31,119,180,0.2)"],
       ["attacked", "#d62728", "rgba(214,39,40,0.2)"]].forEach(([name, colour, band]) => {
        const xs = r.sparsities, v = r[name];
        const label = name === "clean" ? "clean" : "attacked (" + r.attacks.join(", ") + ")";
        traces.push({x: xs, y: v.map((p) => (p ? p[1] : null)), mode: "lines",
          line: {width: 0}, showlegend: false, hoverinfo: "skip"});
        traces.push({x: xs, y: v.map((p) => (p ? p[2] : null)), mode: "lines", fill: "tonexty",
          fillcolor: band, line: {width: 0}, name: label + ": seed range"});
        traces.push({x: xs, y: v.map((p) => (p ? p[0] : null)), mode: "lines",
          line: {color: colour}, name: label + ": median"});
        traces.push({x: j === null ? [] : [xs[j]], y: j === null || !v[j] ? [] : [v[j][0]],
          mode: "markers", marker: {color: colour, size: 11}, showlegend: false});
      });
    }
    const note = !r ? "No shipped sweet-spot results for this method, scope and agent." :
      measured(state) === null ? "not measured at sparsity " + s.toFixed(2) : "";
    if (note) {
      layout.annotations.push({text: note, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
                               showarrow: false, font: {size: 14}});
    }
    return [traces, layout];
  }

  function readoutHtml(state) {
    const series = state.series, i = state.i, radius = series.radius[i];
    const lines = [
      "(d) sparsity " + fmt(series.sparsity[i], 3) + " (target " +
        GRID.sparsities[i].toFixed(2) + ")",
      "certified radius: " + (radius === null ? "none, the policy is constant"
        : fmt(radius) + " (largest eps with certified TV \u2264 0.5)"),
      "certified TV at eps = " + state.agent.eps + ": " + fmt(series.global_tv[i]) +
        " (global), " + fmt(series.local_tv[i]) + " (local) and " + fmt(series.crown_tv[i]) +
        " (CROWN), means over " + GRID.provenance.local_states + " visited states",
      "output layer: " + (series.output_alive[i]
        ? "alive (" + (100 * (1 - series.layer_sparsity[i].at(-1))).toFixed(1) + "% kept)"
        : "<b>fully pruned: a constant policy, not a robust one</b>"),
    ];
    if (series.output_alive[i] && series.constant[i]) {
      lines.push("<b>no path from input to output is left: a constant policy</b>");
    }
    return lines.join("<br>");
  }

  function draw() {
    const state = current();
    const value = GRID.sparsities[state.i].toFixed(2);
    $("pe-value").textContent = value;
    slider.setAttribute("aria-valuetext", "sparsity " + value);
    Plotly.react(heat, ...heatmaps(state), CONFIG);
    Plotly.react(bounds, ...boundsFigure(state), CONFIG);
    Plotly.react(returns, ...returnsFigure(state), CONFIG);
    readout.innerHTML = readoutHtml(state);
  }

  slider.max = String(GRID.sparsities.length - 1);
  for (const control of [slider, $("pe-agent"), $("pe-method"), $("pe-scope")]) {
    control.addEventListener("input", draw);
    control.addEventListener("change", draw);
  }
  draw();
})();
