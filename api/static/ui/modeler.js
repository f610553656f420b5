// The variant's diagram in the bpmn-js modeler; "validate" sends it to the REST API, "save"
// puts it in the variant's draft and "deploy" saves it and opens the draft's summary (the
// web session with its anti-forgery token); the engine's problems are marked on the
// elements they name, said in the page's language from their message codes (the page carries
// those words from the catalogues; the engine's English stays on English pages).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("modeler-data").textContent);
  var result = document.getElementById("result");
  var container = document.getElementById("modeler");
  // bpmn-js with the properties panel of the nd73 namespace (api/web/src/studio.js); the
  // keyboard binds to the diagram's own container (bpmn-js 18)
  var modeler = Nd73Studio.create({ container: container, data: data.studio,
                                    panel: document.getElementById("properties"),
                                    words: data.words });
  var marked = [];
  var english = document.documentElement.lang === "en";

  // "%(name)s" in the catalogue's words → the problem's param
  function say(code, params, english_words) {
    var words = code && data.messages[code];
    if (!words) { return english ? english_words : null; }
    return words.replace(/%\((\w+)\)s/g, function (all, name) {
      return params && params[name] !== undefined && params[name] !== null ?
        String(params[name]) : "";
    });
  }

  // the catalogue's words, completed by the engine's detail when they do not carry it
  function problemText(p) {
    var words = say(p.code, p.params, p.message) || data.labels.problem;
    var detail = p.params && p.params.detail;
    return detail && words.indexOf(detail) < 0 ? words + ": " + detail : words;
  }

  modeler.importXML(data.xml).then(function () {
    modeler.get("canvas").zoom("fit-viewport");
    container.setAttribute("data-ready", "true");
  });

  // a refused script or condition is also shown under its field in the properties panel
  function panelEntry(id) {
    var element = modeler.get("elementRegistry").get(id);
    if (!element) { return null; }
    var type = element.businessObject.$type;
    return type === "bpmn:ScriptTask" || type === "bpmn:SequenceFlow" ? "nd73-code" : null;
  }

  function clearProblems() {
    var canvas = modeler.get("canvas");
    var studio = modeler.get("nd73Studio");
    marked.forEach(function (id) {
      if (panelEntry(id)) { studio.setError(id, panelEntry(id), null); }
    });
    modeler.get("overlays").remove({ type: "problem" });
    marked.forEach(function (id) { canvas.removeMarker(id, "problem"); });
    marked = [];
  }

  function show(kind, text, problems) {
    result.className = "flash " + kind;
    result.textContent = text;
    if (problems && problems.length) {
      var list = document.createElement("ul");
      problems.forEach(function (p) {
        var item = document.createElement("li");
        item.setAttribute("data-element", p.element_id || "");
        item.textContent = (p.element_id ? "[" + p.element_id + "] " : "") +
          (p.line ? p.file + " (" + data.labels.line + " " + p.line + ") " : "") +
          problemText(p);
        list.appendChild(item);
      });
      result.appendChild(list);
    }
  }

  function markProblems(problems) {
    var registry = modeler.get("elementRegistry");
    var overlays = modeler.get("overlays");
    var canvas = modeler.get("canvas");
    problems.forEach(function (p) {
      if (!p.element_id || !registry.get(p.element_id)) { return; }
      canvas.addMarker(p.element_id, "problem");
      marked.push(p.element_id);
      if (p.code === "bpmn.code_refused" && panelEntry(p.element_id)) {
        modeler.get("nd73Studio").setError(p.element_id, panelEntry(p.element_id),
                                           problemText(p));
      }
      var badge = document.createElement("div");
      badge.className = "problem-badge";
      badge.title = problemText(p);
      badge.textContent = "!";
      badge.setAttribute("data-problem", p.element_id);
      overlays.add(p.element_id, "problem", { position: { top: -12, right: 12 }, html: badge });
    });
  }

  // a script or condition the sandbox refuses while it is typed is marked on its element too
  modeler.get("eventBus").on("nd73.errors.changed", function (event) {
    var canvas = modeler.get("canvas");
    var overlays = modeler.get("overlays");
    var messages = Object.keys(event.errors).map(function (k) { return event.errors[k]; });
    overlays.remove({ element: event.element, type: "code-problem" });
    if (!messages.length) {
      if (marked.indexOf(event.element) < 0) { canvas.removeMarker(event.element, "problem"); }
      return;
    }
    canvas.addMarker(event.element, "problem");
    var badge = document.createElement("div");
    badge.className = "problem-badge";
    badge.title = messages.join("\n");
    badge.textContent = "!";
    badge.setAttribute("data-problem", event.element);
    overlays.add(event.element, "code-problem", { position: { top: -12, right: 12 },
                                                  html: badge });
  });

  function send(url) {
    clearProblems();
    return modeler.saveXML({ format: true }).then(function (saved) {
      var form = new FormData();
      form.append("variant", data.variant);
      form.append("files", new Blob([saved.xml], { type: "application/xml" }), data.file);
      return fetch(url, {
        method: "POST", body: form, credentials: "same-origin",
        headers: { "X-CSRF-Token": document.querySelector("meta[name=csrf-token]").content,
                   "Accept-Language": document.documentElement.lang }
      });
    }).then(answered).then(function (answer) {
      return answer.ok ? answer.body : refused(answer);
    });
  }

  function answered(response) {
    return response.json().then(function (body) { return { ok: response.ok, body: body }; });
  }

  // a refusal: its problems listed and marked on the diagram (else its words); null
  function refused(answer) {
    var problems = answer.body.problems || [];
    var detail = problems.length ? null :
      say(answer.body.code, answer.body.params, answer.body.detail);
    show("error", data.labels.error + ": " + (answer.body.title || "") +
         (detail ? " — " + detail : ""), problems);
    markProblems(problems);
    return null;
  }

  document.getElementById("validate").addEventListener("click", function () {
    send("/api/v1/definitions/validate").then(function (body) {
      if (body) { show("success", data.labels.valid + ": " + body.processes.join(", ")); }
    });
  });

  // the diagram goes into the variant's draft (engine/drafts.py), checked as a file; the
  // draft's revision the page read guards against overwriting a colleague's save
  function saveDraft() {
    clearProblems();
    return modeler.saveXML({ format: true }).then(function (saved) {
      var url = "/api/v1/variants/" + encodeURIComponent(data.variant) + "/draft/files/" +
        encodeURIComponent(data.file) +
        (data.draft.revision ? "?revision=" + data.draft.revision : "");
      return fetch(url, {
        method: "PUT", body: saved.xml, credentials: "same-origin",
        headers: { "X-CSRF-Token": document.querySelector("meta[name=csrf-token]").content,
                   "Content-Type": "application/octet-stream",
                   "Accept-Language": document.documentElement.lang }
      });
    }).then(answered).then(function (answer) {
      if (!answer.ok) { return refused(answer); }
      data.draft.revision = answer.body.revision;
      show("success", data.labels.saved + " (" + answer.body.revision + ")");
      return answer.body;
    });
  }

  document.getElementById("save-draft").addEventListener("click", saveDraft);

  // deploying is an explicit step: the draft's page shows what changes, then deploys
  document.getElementById("deploy").addEventListener("click", function () {
    saveDraft().then(function (body) {
      if (!body) { return; }
      window.location.assign(data.draft.page + "?next=" +
                             encodeURIComponent(window.location.pathname));
    });
  });
})();
