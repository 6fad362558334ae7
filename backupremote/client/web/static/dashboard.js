// backupremote dashboard: live updates by server-sent events. The pages read
// whole without this script; it only puts times in the reader's zone, moves
// progress bars as events arrive, and reloads the page's main part when a
// job moves (one request per event, never on a timer).
"use strict";
(function () {
  function localTimes(root) {
    var format = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
      minute: "2-digit", timeZoneName: "short"
    });
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) { el.textContent = format.format(when); }
    });
  }

  function sizeText(bytes) {
    var units = ["B", "KiB", "MiB", "GiB"], value = bytes, i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return i === 0 ? value + " B" : value.toFixed(1) + " " + units[i];
  }

  function showProgress(data) {
    document.querySelectorAll('[data-progress="' + CSS.escape(data.runId) + '"]')
      .forEach(function (box) {
        box.querySelector(".stage").textContent = data.stage;
        var bar = box.querySelector("progress");
        if (data.percent === null) { bar.removeAttribute("value"); }
        else { bar.value = data.percent; }
        box.querySelector(".percent").textContent =
          data.percent === null ? "" : data.percent + "%";
        box.querySelector(".bytes").textContent = data.bytesDone ? sizeText(data.bytesDone) : "";
      });
  }

  var reloading = false, again = false;
  function reloadMain() {
    if (reloading) { again = true; return; }
    reloading = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html", "X-Dashboard-Partial": "1" } })
      .then(function (response) {
        if (response.redirected || !response.ok) { return null; }
        return response.text();
      })
      .then(function (text) {
        if (text === null) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        var current = document.querySelector("main");
        if (!fresh || !current) { return; }
        var focused = document.activeElement && document.activeElement.closest("main")
          ? document.activeElement.textContent : null;
        var flash = current.querySelector(".flash");
        if (flash && !fresh.querySelector(".flash")) {
          fresh.insertBefore(flash, fresh.querySelector("h1").nextSibling);
        }
        current.replaceWith(fresh);
        localTimes(fresh);
        if (focused) {
          var same = Array.prototype.find.call(fresh.querySelectorAll("button, a"),
            function (el) { return el.textContent === focused; });
          if (same) { same.focus(); }
        }
      })
      .catch(function () {})
      .then(function () {
        reloading = false;
        if (again) { again = false; reloadMain(); }
      });
  }

  function live() {
    if (!document.body.hasAttribute("data-live") || !window.EventSource) { return; }
    var source = new EventSource("/events");
    function watching() { return document.querySelector("main[data-watch-runs]") !== null; }
    source.addEventListener("progress", function (event) {
      var data = JSON.parse(event.data);
      if (document.querySelector('[data-progress="' + CSS.escape(data.runId) + '"]')) {
        showProgress(data);
      } else if (watching() && document.getElementById("active") !== null) {
        reloadMain();  // a run this page does not show yet
      }
    });
    source.addEventListener("job", function () { if (watching()) { reloadMain(); } });
    source.addEventListener("schedule", function () {
      if (document.querySelector("main[data-watch-schedules]")) { reloadMain(); }
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) { window.location.reload(); }
    };
    document.body.setAttribute("data-stream", "open");
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    live();
  });
})();
