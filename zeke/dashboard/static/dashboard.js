// zeke dashboard: live updates and the throughput chart. Plain script, no build step.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]');

  // Every htmx request carries the CSRF token (the server checks it on POST).
  document.addEventListener("htmx:configRequest", (event) => {
    if (csrf) event.detail.headers["X-CSRF-Token"] = csrf.content;
  });

  // Job changes arrive over SSE (PostgreSQL NOTIFY); live fragments reload on "zeke:changed",
  // at most once a second however many jobs move.
  let pending = null;
  function changed() {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      document.body.dispatchEvent(new CustomEvent("zeke:changed"));
    }, 1000);
  }
  function listen() {
    if (!window.EventSource || !document.getElementById("live")) return;
    const badge = document.getElementById("live");
    const source = new EventSource("/dashboard/live");
    source.addEventListener("open", () => badge.classList.add("on"));
    source.addEventListener("error", () => badge.classList.remove("on"));
    source.addEventListener("change", changed);
    source.addEventListener("resync", changed);
  }

  // Throughput (bars) and latency (lines) over time, refreshed with the counts.
  function chart() {
    const canvas = document.getElementById("throughput");
    if (!canvas || !window.Chart) return;
    const styles = getComputedStyle(document.documentElement);
    const color = (name) => styles.getPropertyValue(name).trim();
    const instance = new Chart(canvas, {
      data: {
        labels: [],
        datasets: [
          { type: "bar", label: "completed / min", data: [], backgroundColor: color("--completed"), stack: "done", yAxisID: "jobs" },
          { type: "bar", label: "failed / min", data: [], backgroundColor: color("--failed"), stack: "done", yAxisID: "jobs" },
          { type: "line", label: "mean wait (s)", data: [], borderColor: color("--retry"), backgroundColor: color("--retry"), yAxisID: "seconds", spanGaps: true, pointRadius: 2, tension: 0.25 },
          { type: "line", label: "mean run (s)", data: [], borderColor: color("--active"), backgroundColor: color("--active"), yAxisID: "seconds", spanGaps: true, pointRadius: 2, tension: 0.25 },
        ],
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxTicksLimit: 12 } },
          jobs: { type: "linear", position: "left", stacked: true, beginAtZero: true, title: { display: true, text: "jobs" }, ticks: { precision: 0 } },
          seconds: { type: "linear", position: "right", beginAtZero: true, title: { display: true, text: "seconds" }, grid: { drawOnChartArea: false } },
        },
      },
    });
    async function load() {
      const response = await fetch(canvas.dataset.src, { credentials: "same-origin" });
      if (!response.ok) return;
      const series = await response.json();
      instance.data.labels = series.labels;
      instance.data.datasets[0].data = series.completed;
      instance.data.datasets[1].data = series.failed;
      instance.data.datasets[2].data = series.wait;
      instance.data.datasets[3].data = series.run;
      instance.update();
      canvas.dataset.loaded = "1";
    }
    load();
    let next = null;
    document.body.addEventListener("zeke:changed", () => {
      if (!next) next = setTimeout(() => { next = null; load(); }, 5000);
    });
    setInterval(load, 30000);
  }

  document.addEventListener("DOMContentLoaded", () => { listen(); chart(); });
})();
