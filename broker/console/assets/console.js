// Progressive touches only: every page works without this file.
// A revoke asks first.
document.addEventListener("DOMContentLoaded", function () {
  var revoke = document.getElementById("revoke");
  if (revoke) {
    revoke.form.addEventListener("submit", function (e) {
      if (!window.confirm("Revoke this pin? The definition is held again until approved.")) e.preventDefault();
    });
  }
});

// The decisions page: new records appear as they are written.
document.addEventListener("DOMContentLoaded", function () {
  var table = document.getElementById("decisions");
  if (!table || !window.EventSource) return;
  var body = table.tBodies[0];
  var base = table.getAttribute("data-base");
  var state = document.getElementById("live-state");
  var source = new EventSource(table.getAttribute("data-stream"));
  source.onopen = function () { state.textContent = "Live: new records appear as they are written."; };
  source.onerror = function () { state.textContent = "Not live any more; reload the page."; };
  source.onmessage = function (e) {
    var r = JSON.parse(e.data);
    var tr = document.createElement("tr");
    tr.setAttribute("data-decision", r.decision);
    var time = document.createElement("td");
    var link = document.createElement("a");
    link.href = base + "/decisions/" + encodeURIComponent(r.id);
    link.textContent = new Date(r.time).toISOString().substring(11, 19);
    time.appendChild(link);
    tr.appendChild(time);
    [r.decision, r.event, r.subject, r.app, r.tool, r.detail].forEach(function (v) {
      var td = document.createElement("td");
      td.textContent = v || "";
      tr.appendChild(td);
    });
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 200) body.deleteRow(body.rows.length - 1);
  };
});
