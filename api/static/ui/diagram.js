// Read-only diagrams (bpmn-js viewer) with the case's completed and active steps marked, or
// the elements that differ between two variants.
(function () {
  "use strict";
  var MARKERS = { completed: "done", active: "active", added: "added", removed: "removed",
                  changed: "changed" };

  document.querySelectorAll("script[data-diagram]").forEach(function (data) {
    var spec = JSON.parse(data.textContent);
    var container = document.getElementById(data.getAttribute("data-diagram"));
    var viewer = new BpmnJS({ container: container });
    viewer.importXML(spec.xml).then(function () {
      var canvas = viewer.get("canvas");
      var registry = viewer.get("elementRegistry");
      canvas.zoom("fit-viewport");
      Object.keys(MARKERS).forEach(function (kind) {
        (spec[kind] || []).forEach(function (id) {
          if (registry.get(id)) { canvas.addMarker(id, MARKERS[kind]); }
        });
      });
      container.setAttribute("data-ready", "true");
    }).catch(function (error) {
      container.textContent = String(error && error.message || error);
      container.setAttribute("data-ready", "error");
    });
  });
})();
