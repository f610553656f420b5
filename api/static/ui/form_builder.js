// The form builder: the fields of a variant's form as a list the designer edits (key, kind,
// required, Vietnamese and English labels, choices, pattern, limits; moved, added, removed).
// Each change asks the server to draw the draft with the renderer officials get (the preview)
// and to check it as deployment does; "save" sends the fields to be checked and saved into
// the variant's draft. The server names what it refuses by field key, in the page's language.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("builder-data").textContent);
  var words = data.words;
  var fields = data.fields;
  var list = document.getElementById("builder-fields");
  var preview = document.getElementById("form-preview");
  var result = document.getElementById("builder-result");
  var LIMITED = ["text", "textarea", "integer", "number", "money", "choices", "list", "files"];
  var WITH_CHOICES = ["select", "choices"];
  var WITH_PATTERN = ["text", "textarea"];
  var pending = null;
  var asked = 0;
  var added = 0;

  function element(tag, attributes, text) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      node.setAttribute(name, attributes[name]);
    });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // a labelled input bound to one property of a field (or of a choice)
  function input(id, caption, value, onChange, attributes) {
    var wrap = element("span", { "class": "builder-input" });
    var box = element("input", Object.assign({ id: id }, attributes || {}));
    box.value = value === null || value === undefined ? "" : String(value);
    box.addEventListener("input", function () { onChange(box.value); changed(); });
    wrap.appendChild(element("label", { "for": id }, caption));
    wrap.appendChild(box);
    return wrap;
  }

  function button(text, onClick, attributes) {
    var node = element("button", Object.assign({ type: "button", "class": "link" },
                                               attributes || {}), text);
    node.addEventListener("click", function () { onClick(); render(); changed(); });
    return node;
  }

  function kindSelect(field, id, nested) {
    var wrap = element("span", { "class": "builder-input" });
    var select = element("select", { id: id });
    var kinds = nested ? data.row_kinds : Object.keys(data.kinds);
    if (kinds.indexOf(field.kind) < 0) {       // a group of fields: kept as it is
      select.appendChild(element("option", { value: field.kind }, words.kept_kind));
      select.disabled = true;
    }
    kinds.forEach(function (kind) {
      select.appendChild(element("option", { value: kind }, data.kinds[kind]));
    });
    select.value = field.kind;
    select.addEventListener("change", function () {
      field.kind = select.value;
      if (WITH_CHOICES.indexOf(field.kind) >= 0 && !field.choices.length) {
        field.choices.push({ value: "", label: "", label_en: "" });
      }
      if (field.kind === "rows" && !field.columns.length) { field.columns.push(newField()); }
      render();
      changed();
    });
    wrap.appendChild(element("label", { "for": id }, words.kind));
    wrap.appendChild(select);
    return wrap;
  }

  function choiceRows(field, prefix) {
    var box = element("fieldset", { "class": "builder-choices" });
    box.appendChild(element("legend", {}, words.choices));
    field.choices.forEach(function (choice, n) {
      var row = element("div", { "class": "builder-row", "data-choice": String(n) });
      var id = prefix + "-choice-" + n;
      row.appendChild(input(id + "-value", words.choice_value, choice.value,
                            function (v) { choice.value = v; }));
      row.appendChild(input(id + "-label", words.choice_label, choice.label,
                            function (v) { choice.label = v; }));
      row.appendChild(input(id + "-label-en", words.choice_label_en, choice.label_en,
                            function (v) { choice.label_en = v; }));
      row.appendChild(button(words.remove, function () { field.choices.splice(n, 1); }));
      box.appendChild(row);
    });
    box.appendChild(button(words.add_choice, function () {
      field.choices.push({ value: "", label: "", label_en: "" });
    }));
    return box;
  }

  function newField() {
    added += 1;
    var field = { key: "", origin: null, kind: "text", required: false,
                  label: words.new_field + " " + added, label_en: "", choices: [],
                  columns: [], pattern: "", min: null, max: null };
    opened.add(field);
    return field;
  }

  // the columns of rows of several fields: fields of their own, one level down
  function columnList(field, prefix) {
    var box = element("fieldset", { "class": "builder-columns" });
    box.appendChild(element("legend", {}, words.columns));
    var columns = element("ol", { "class": "builder-fields" });
    field.columns.forEach(function (column, m) {
      columns.appendChild(fieldItem(column, m, field.columns, prefix + "-col-" + m, field));
    });
    box.appendChild(columns);
    box.appendChild(button(words.add_column, function () { field.columns.push(newField()); }));
    return box;
  }

  // the name the server gives a field's problems: its key (a column's "rows.column"), or
  // its place ("#3") while it has none
  function problemName(field, n, parent, parentNumber) {
    var own = field.key || "#" + (n + 1);
    return parent ? problemName(parent, parentNumber) + "." + own : own;
  }

  // a field folded to one line (label, key, type, required) until the designer opens it
  function summaryText(field) {
    return (field.label || "…") + " · " + (field.key || "?") + " · " +
      (data.kinds[field.kind] || words.kept_kind) + (field.required ? " · " + words.required :
                                                      "");
  }

  function fieldItem(field, n, siblings, prefix, parent) {
    var item = element("li", { "class": "builder-field card", "data-key": field.key });
    shown.push({ item: item, field: field, n: n, parent: parent,
                 parentNumber: parent ? fields.indexOf(parent) : null });
    var fold = element("details", opened.has(field) ? { open: "open" } : {});
    var summary = element("summary", {}, summaryText(field));
    fold.appendChild(summary);
    fold.addEventListener("toggle", function () {
      if (fold.open) { opened.add(field); } else { opened.delete(field); }
    });
    ["input", "change"].forEach(function (type) {
      fold.addEventListener(type, function () { summary.textContent = summaryText(field); });
    });
    item.appendChild(fold);
    var head = element("div", { "class": "builder-row" });
    head.appendChild(input(prefix + "-key", words.key, field.key, function (v) {
      field.key = v;
      item.setAttribute("data-key", v);
    }, { autocomplete: "off", spellcheck: "false" }));
    head.appendChild(kindSelect(field, prefix + "-kind", !!parent));
    var required = element("input", { type: "checkbox", id: prefix + "-required" });
    required.checked = !!field.required;
    required.addEventListener("change", function () { field.required = required.checked;
                                                      changed(); });
    var check = element("label", { "class": "check", "for": prefix + "-required" });
    check.appendChild(required);
    check.appendChild(document.createTextNode(" " + words.required));
    head.appendChild(check);
    fold.appendChild(head);

    var labels = element("div", { "class": "builder-row" });
    labels.appendChild(input(prefix + "-label", words.label, field.label,
                             function (v) { field.label = v; }));
    labels.appendChild(input(prefix + "-label-en", words.label_en, field.label_en,
                             function (v) { field.label_en = v; }));
    fold.appendChild(labels);

    var rules = element("div", { "class": "builder-row" });
    if (WITH_PATTERN.indexOf(field.kind) >= 0) {
      rules.appendChild(input(prefix + "-pattern", words.pattern, field.pattern,
                              function (v) { field.pattern = v; },
                              { autocomplete: "off", spellcheck: "false" }));
    }
    if (LIMITED.indexOf(field.kind) >= 0) {
      rules.appendChild(input(prefix + "-min", words.min, field.min,
                              function (v) { field.min = v === "" ? null : v; },
                              { inputmode: "decimal" }));
      rules.appendChild(input(prefix + "-max", words.max, field.max,
                              function (v) { field.max = v === "" ? null : v; },
                              { inputmode: "decimal" }));
    }
    if (rules.childNodes.length) { fold.appendChild(rules); }
    if (WITH_CHOICES.indexOf(field.kind) >= 0) { fold.appendChild(choiceRows(field, prefix)); }
    if (field.kind === "rows") { fold.appendChild(columnList(field, prefix)); }

    var moves = element("div", { "class": "builder-row builder-moves" });
    if (n > 0) {
      moves.appendChild(button(words.up, function () {
        siblings.splice(n - 1, 0, siblings.splice(n, 1)[0]); }));
    }
    if (n < siblings.length - 1) {
      moves.appendChild(button(words.down, function () {
        siblings.splice(n + 1, 0, siblings.splice(n, 1)[0]); }));
    }
    moves.appendChild(button(words.remove, function () { siblings.splice(n, 1); },
                             { "data-action": "remove-field" }));
    fold.appendChild(moves);
    item.appendChild(element("p", { "class": "error builder-problem", role: "alert",
                                    hidden: "hidden" }));
    return item;
  }

  var shown = [];     // every field's item, with where the field stands
  var opened = new WeakSet();     // the fields whose details are open

  function render() {
    list.textContent = "";
    shown = [];
    fields.forEach(function (field, n) {
      list.appendChild(fieldItem(field, n, fields, "bf-" + n, null));
    });
  }

  function say(kind, text) {
    result.className = "flash " + kind;
    result.textContent = text;
  }

  // the server's refusals next to the fields they name (a new field without a key by "#n")
  function showProblems(problems) {
    list.querySelectorAll(".builder-problem").forEach(function (p) {
      p.hidden = true;
      p.textContent = "";
    });
    var general = [];
    problems.forEach(function (problem) {
      var target = null;
      shown.forEach(function (entry) {
        if (problemName(entry.field, entry.n, entry.parent, entry.parentNumber) ===
            problem.field) {
          target = entry.item.querySelector(":scope > .builder-problem");
        }
      });
      if (target) {
        target.parentNode.querySelector(":scope > details").open = true;
        target.hidden = false;
        target.textContent = (target.textContent ? target.textContent + " " : "") +
          problem.message;
      } else {
        general.push(problem.message);
      }
    });
    return general;
  }

  function post(url, revision) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json",
                 "X-CSRF-Token": document.querySelector("meta[name=csrf-token]").content },
      body: JSON.stringify({ fields: fields, revision: revision })
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    });
  }

  function refresh() {
    var mine = ++asked;
    post(data.preview).then(function (answer) {
      if (mine !== asked) { return; }          // a later change already asked again
      var problems = answer.body.problems || [];
      var general = showProblems(problems);
      if (answer.ok && answer.body.valid) {
        preview.innerHTML = answer.body.html;    // drawn and escaped by the server's template
        preview.classList.remove("stale");
        result.className = "";
        result.textContent = "";
      } else {
        preview.classList.add("stale");
        say("error", words.refused + (general.length ? ": " + general.join("; ") : ""));
      }
      preview.setAttribute("data-version", String(mine));
    });
  }

  function changed() {
    if (pending) { window.clearTimeout(pending); }
    pending = window.setTimeout(function () { pending = null; refresh(); }, 250);
  }

  document.getElementById("add-field").addEventListener("click", function () {
    fields.push(newField());
    render();
    changed();
    document.getElementById("bf-" + (fields.length - 1) + "-key").focus();
  });

  document.getElementById("save-form").addEventListener("click", function () {
    // the draft's revision the page read: a colleague's save since is refused, not lost
    post(data.save, data.revision).then(function (answer) {
      var general = showProblems(answer.body.problems || []);
      if (!answer.ok) {
        say("error", words.refused + (general.length ? ": " + general.join("; ") : ""));
        return;
      }
      data.revision = answer.body.revision;
      // saved fields are now the draft's: their keys are their origins
      fields.forEach(function (field) {
        field.origin = field.key;
        field.columns.forEach(function (column) { column.origin = column.key; });
      });
      say("success", answer.body.changed ? words.saved : words.unchanged);
      // deploying is the draft's explicit step, after its summary and dry-runs
      var link = element("a", { href: answer.body.draft, "data-testid": "to-draft" },
                         words.to_draft);
      result.appendChild(document.createTextNode(" "));
      result.appendChild(link);
    });
  });

  render();
})();
