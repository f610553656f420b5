// Read-only diagrams (bpmn-js viewer; on a case's page the navigated viewer: zoom and pan) with the case's completed and active steps marked, or
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
      // the case's diagram (navigated viewer): the wheel zooms, dragging pans; and buttons
      document.querySelectorAll("button[data-zoom][data-for='" + container.id + "']")
        .forEach(function (button) {
          button.addEventListener("click", function () {
            var how = button.getAttribute("data-zoom");
            if (how === "fit") { canvas.zoom("fit-viewport", "auto"); return; }
            var level = canvas.zoom();
            canvas.zoom(how === "in" ? level * 1.25 : level / 1.25);
          });
        });
      // what is in view (x y width height), for tests and assistive tools
      var shown = function () {
        var box = canvas.viewbox();
        container.setAttribute("data-viewbox", [box.x, box.y, box.width, box.height]
          .map(function (n) { return Math.round(n * 100) / 100; }).join(" "));
      };
      viewer.get("eventBus").on("canvas.viewbox.changed", shown);
      shown();
      container.setAttribute("data-ready", "true");
    }).catch(function (error) {
      container.textContent = String(error && error.message || error);
      container.setAttribute("data-ready", "error");
    });
  });
})();
