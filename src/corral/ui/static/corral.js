// Corral's pages: live refresh of what changed, log tailing, usage plots. No build step.
(function () {
  "use strict";

  // Which jobs does an element show? data-job-ids="1,2,3"
  function shows(el, changed) {
    if (changed === "*") return true;
    var mine = (el.getAttribute("data-job-ids") || "").split(",");
    var set = {};
    mine.forEach(function (id) { if (id) set[id] = true; });
    return changed.split(",").some(function (id) { return set[id]; });
  }

  // The batch/job stream (htmx-ext-sse) says which jobs changed: refresh only what shows them.
  document.addEventListener("htmx:sseOpen", function (evt) {
    var source = evt.detail.source;
    if (!source || source.corralHooked) return;
    source.corralHooked = true;
    document.documentElement.setAttribute("data-live", "open");  // the stream is connected
    source.addEventListener("jobs", function (msg) {
      var table = document.getElementById("jobs-table");
      if (table && shows(table, msg.data)) htmx.trigger(table, "corral:refresh");
      var progress = document.getElementById("session-progress");  // a session's services and clients
      if (progress) htmx.trigger(progress, "corral:refresh");
      var chunks = document.getElementById("sweep-chunks-frag");  // a sweep's chunks
      if (chunks) htmx.trigger(chunks, "corral:refresh");
      var dag = document.getElementById("dag-frag");  // small batches only
      if (dag) htmx.trigger(dag, "corral:refresh");
      var live = document.getElementById("live");
      var jobId = live && live.getAttribute("data-job-id");
      if (jobId && (msg.data === "*" || msg.data.split(",").indexOf(jobId) >= 0)) {
        htmx.trigger(document.getElementById("job-state-frag"), "corral:refresh");
      }
    });
    source.addEventListener("done", function () {
      ["session-progress", "sweep-chunks-frag"].forEach(function (id) {
        var frag = document.getElementById(id);
        if (frag) htmx.trigger(frag, "corral:refresh");
      });
      var dot = document.querySelector(".live-dot");
      if (dot) dot.remove();
      var cancel = document.getElementById("cancel");
      if (cancel) cancel.remove();
    });
  });

  // Forms that destroy something ask first (no inline handlers: the pages' CSP forbids them).
  document.addEventListener("submit", function (evt) {
    var question = evt.target.getAttribute && evt.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) evt.preventDefault();
  });

  // ---------------------------------------------------------------- job page: log tabs and tailing
  function setupLogs() {
    var tabs = document.querySelectorAll(".tabs .tab");
    tabs.forEach(function (tab) {
      tab.addEventListener("click", function () {
        tabs.forEach(function (t) { t.classList.toggle("on", t === tab); });
        document.querySelectorAll(".log-panel").forEach(function (p) {
          p.hidden = p.getAttribute("data-step") !== tab.getAttribute("data-step");
        });
      });
    });
    var live = document.getElementById("live");
    if (!live || live.getAttribute("data-job-id") === null) return;
    document.querySelectorAll("pre.log").forEach(function (pre) { pre.scrollTop = pre.scrollHeight; });
    if (live.getAttribute("data-live") !== "true") return;
    var timer = setInterval(function () {
      var stillLive = document.querySelector("#job-state-inner");
      var state = stillLive ? stillLive.getAttribute("data-state") : "";
      document.querySelectorAll("pre.log").forEach(tail);
      if (["Success", "Failed", "Error", "Cancelled"].indexOf(state) >= 0) {
        clearInterval(timer);
        document.querySelectorAll("pre.log").forEach(tail);  // the rest of the log, once
        drawUsage();
      }
    }, 2000);
  }

  function tail(pre) {
    var offset = parseInt(pre.getAttribute("data-offset") || "0", 10);
    if (pre.corralBusy) return;
    pre.corralBusy = true;
    fetch(pre.getAttribute("data-url") + "?offset=" + offset, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) return null;
        var end = r.headers.get("X-Log-End");
        return r.text().then(function (text) { return { text: text, end: end }; });
      })
      .then(function (got) {
        pre.corralBusy = false;
        if (!got || !got.text) return;
        // Follow the end only if the reader is at the end: scrolling up to read stops the jumping.
        var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.appendChild(document.createTextNode(got.text));
        pre.setAttribute("data-offset", got.end);
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      })
      .catch(function () { pre.corralBusy = false; });
  }

  // ---------------------------------------------------------------- job page: usage plots (uPlot)
  var plots = [];
  function drawUsage() {
    var box = document.getElementById("usage");
    if (!box || typeof uPlot === "undefined") return;
    fetch(box.getAttribute("data-url"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (u) {
        if (!u) return;
        plots.forEach(function (p) { p.destroy(); });
        plots = [];
        var empty = document.getElementById("usage-empty");
        empty.hidden = u.time.length > 0;
        if (!u.time.length) return;
        var cpuLimit = u.time.map(function () { return u.cpu_limit_cores || null; });
        var memLimit = u.time.map(function () { return u.memory_limit_bytes ? u.memory_limit_bytes / 1048576 : null; });
        var width = Math.min(620, box.clientWidth || 620);
        var peakMiB = Math.max.apply(null, u.memory_bytes) / 1048576;
        var peakCores = Math.max.apply(null, u.cpu_cores);
        var of = function (limit) { return limit ? " of " + limit : ""; };
        plots.push(new uPlot({
          title: "CPU (cores): peak " + peakCores.toFixed(2) + of(u.cpu_limit_cores), width: width, height: 220,
          series: [{}, { label: "used", stroke: "#2f80ed", width: 1.5 }, { label: "limit", stroke: "#c0392b", dash: [6, 4] }],
          axes: [{}, { size: 50 }], scales: { y: { range: function (_u, _min, max) { return [0, Math.max(max, 0.1) * 1.1]; } } },
        }, [u.time, u.cpu_cores, cpuLimit], document.getElementById("usage-cpu")));
        plots.push(new uPlot({
          title: "Memory (MiB): peak " + peakMiB.toFixed(1) + of(u.memory_limit_bytes ? (u.memory_limit_bytes / 1048576).toFixed(0) : 0), width: width, height: 220,
          series: [{}, { label: "used", stroke: "#2e8b57", width: 1.5 }, { label: "limit", stroke: "#c0392b", dash: [6, 4] }],
          axes: [{}, { size: 60 }], scales: { y: { range: function (_u, _min, max) { return [0, Math.max(max, 1) * 1.1]; } } },
        }, [u.time, u.memory_bytes.map(function (b) { return b / 1048576; }), memLimit], document.getElementById("usage-memory")));
      });
  }

  // ---------------------------------------------------------------- session page: latency vs throughput
  function drawLatency() {
    var box = document.getElementById("latency-plot");
    if (!box || typeof uPlot === "undefined") return;
    var byClient = JSON.parse(box.getAttribute("data-points") || "{}");
    Object.keys(byClient).forEach(function (client) {
      var points = byClient[client];
      var holder = document.createElement("div");
      holder.className = "latency-client";
      holder.setAttribute("data-client", client);
      box.appendChild(holder);
      new uPlot({
        title: client + ": latency (ms) against throughput (req/s), a point per cell",
        width: Math.min(620, box.clientWidth || 620), height: 240,
        series: [{ label: "throughput" },
                 { label: "p50", stroke: "#2f80ed", width: 1.5, points: { show: true, size: 7 } },
                 { label: "p99", stroke: "#c0392b", width: 1.5, dash: [6, 4], points: { show: true, size: 7 } }],
        scales: { x: { time: false } },
        axes: [{ label: "req/s" }, { size: 50, label: "ms" }],
      }, [points.map(function (p) { return p[0]; }), points.map(function (p) { return p[1]; }),
          points.map(function (p) { return p[2]; })], holder);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawLatency();
    setupLogs();
    drawUsage();
    var live = document.getElementById("live");
    if (live && live.getAttribute("data-job-id") && live.getAttribute("data-live") === "true") {
      setInterval(drawUsage, 10000);
    }
  });
})();
