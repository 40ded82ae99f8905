// agentcron dashboard: every page works without this script. It shows times in the
// viewer's own zone, previews a cron expression as it is typed, and refreshes live lists.
"use strict";
(function () {
  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (element) {
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) return;
      element.textContent = moment.toLocaleString(undefined, {
        dateStyle: "medium",
        timeStyle: element.hasAttribute("data-seconds") ? "medium" : "short",
      }) + " " + zoneName(moment);
      element.title = element.getAttribute("datetime");
    });
  }

  function zoneName(moment) {
    var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(moment);
    var zone = parts.find(function (part) { return part.type === "timeZoneName"; });
    return zone ? zone.value : "";
  }

  function paragraph(className, text) {
    var element = document.createElement("p");
    element.className = className;
    element.textContent = text;
    return element;
  }

  function showPreview(box, ok, body) {
    box.textContent = "";
    if (!ok) {
      var problems = Array.isArray(body.detail) ? body.detail.map(function (item) { return item.msg; }) : [String(body.detail)];
      box.append(paragraph("preview-error", problems.join("; ")));
      return;
    }
    box.append(paragraph("preview-words", body.words + " (" + body.timezone + ")"));
    var list = document.createElement("ul");
    list.className = "preview-fires";
    body.instants.forEach(function (instant) {
      var item = document.createElement("li");
      var time = document.createElement("time");
      time.setAttribute("datetime", instant);
      time.textContent = instant;
      item.append(time);
      list.append(item);
    });
    box.append(list);
    localise(box);
  }

  function livePreview() {
    var box = document.getElementById("cron-preview");
    var expr = document.getElementById("frequency");
    var zone = document.getElementById("timezone");
    if (!box || !expr || !zone) return;
    var timer = null;
    var asked = 0;
    function ask() {
      var mine = ++asked;
      if (!expr.value.trim()) { box.textContent = ""; return; }
      var query = new URLSearchParams({ expr: expr.value, timezone: zone.value.trim() || "UTC", count: "3" });
      fetch(box.dataset.url + "?" + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          return response.json().then(function (body) { return { ok: response.ok, body: body }; });
        })
        .then(function (answer) { if (mine === asked) showPreview(box, answer.ok, answer.body); })
        .catch(function () { /* the server-rendered form still works */ });
    }
    [expr, zone].forEach(function (input) {
      input.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(ask, 250);
      });
    });
  }

  function liveRefresh() {
    var regions = Array.prototype.slice.call(document.querySelectorAll("[data-refresh][id]"));
    if (!regions.length) return;
    setInterval(function () {
      if (document.hidden) return;
      fetch(location.href, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          regions.forEach(function (region) {
            var replacement = fresh.getElementById(region.id);
            if (!replacement || region.contains(document.activeElement)) return;
            region.innerHTML = replacement.innerHTML;
            localise(region);
          });
        })
        .catch(function () { /* try again at the next tick */ });
    }, 3000);
  }

  localise(document);
  livePreview();
  liveRefresh();
})();
