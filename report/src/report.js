// The report's only script: click a column header to sort its table
// (numbers by their exact value). It fetches nothing.
(function () {
  "use strict";
  function key(td) {
    if (!td) return "";
    var v = td.getAttribute("data-v");
    return v !== null ? parseFloat(v) : td.textContent;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("sorted-asc");
        heads.forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(asc ? "sorted-asc" : "sorted-desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  // Tells a reader (and the browser test) that the page's script ran.
  document.documentElement.setAttribute("data-ready", "1");
})();
