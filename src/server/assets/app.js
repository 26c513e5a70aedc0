// Refreshes the page's <main> without a full reload when runs change: polls /ui/stamp and,
// when it differs from the stamp the page was rendered with, fetches the page again and swaps
// its content in. Forms keep working without this script.
(function () {
  "use strict";
  var body = document.body;
  var busy = false;
  // A run page also watches its own run, which may be older than the runs the stamp covers.
  var m = location.pathname.match(/^\/ui\/runs\/([^\/]+)$/);
  var run = m ? "?run=" + m[1] : "";
  function editing() {
    var a = document.activeElement;
    return a && (a.tagName === "SELECT" || a.tagName === "INPUT" || a.tagName === "TEXTAREA");
  }
  function refresh(stamp) {
    busy = true;
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var main = doc.querySelector("main");
        var nav = doc.querySelector("nav");
        if (main) { document.querySelector("main").innerHTML = main.innerHTML; }
        if (nav) { document.querySelector("nav").innerHTML = nav.innerHTML; }
        body.setAttribute("data-stamp", doc.body.getAttribute("data-stamp") || stamp);
        body.setAttribute("data-refreshes", String(Number(body.getAttribute("data-refreshes") || "0") + 1));
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  function poll() {
    if (busy || editing() || document.hidden) { return; }
    fetch("/ui/stamp" + run, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (stamp) {
        if (stamp !== body.getAttribute("data-stamp")) { refresh(stamp); }
      })
      .catch(function () {});
  }
  setInterval(poll, 2000);
})();
