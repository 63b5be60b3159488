// esalert console: a little vanilla JS. Pages read fine without it.
(function () {
  "use strict";
  // Auto-refresh: the region marked data-refresh="N" is fetched again every
  // N seconds and swapped in, while the tab is visible and the box is ticked.
  var region = document.getElementById("refresh");
  if (region) {
    var every = parseInt(region.getAttribute("data-refresh"), 10) || 5;
    var box = document.getElementById("auto-refresh");
    setInterval(function () {
      if (document.hidden || (box && !box.checked)) { return; }
      if (region.contains(document.activeElement) && document.activeElement !== document.body) { return; }
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (!text) { return; }
          var doc = new DOMParser().parseFromString(text, "text/html");
          var fresh = doc.getElementById("refresh");
          var current = document.getElementById("refresh");
          if (fresh && current) { current.replaceWith(document.importNode(fresh, true)); region = document.getElementById("refresh"); }
          box = document.getElementById("auto-refresh") || box;
        })
        .catch(function () { /* the next tick tries again */ });
    }, every * 1000);
  }
  // Ask before an action whose form says data-confirm.
  document.addEventListener("submit", function (e) {
    var f = e.target;
    var q = f && f.getAttribute && f.getAttribute("data-confirm");
    if (q && !window.confirm(q)) { e.preventDefault(); }
  });
})();
