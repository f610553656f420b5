// Small helpers of the web app's forms; every page works without them, they only help.
(function () {
  "use strict";

  // repeated rows: "add row" copies the last row empty, "remove" drops one (keeps one)
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target.classList.contains("add-row")) {
      var rows = target.closest(".rows");
      var all = rows.querySelectorAll(".row");
      var copy = all[all.length - 1].cloneNode(true);
      // rows of several fields: every cell emptied, and their errors left behind
      copy.querySelectorAll("input, textarea").forEach(function (input) { input.value = ""; });
      copy.querySelectorAll("select").forEach(function (select) { select.selectedIndex = 0; });
      copy.querySelectorAll(".error").forEach(function (error) { error.remove(); });
      rows.insertBefore(copy, target);
      copy.querySelector("input, select, textarea").focus();
    } else if (target.classList.contains("remove-row")) {
      var row = target.closest(".row");
      var siblings = row.parentNode.querySelectorAll(".row");
      if (siblings.length > 1) {
        row.remove();
      } else {
        row.querySelectorAll("input, textarea").forEach(function (input) { input.value = ""; });
        row.querySelectorAll("select").forEach(function (select) { select.selectedIndex = 0; });
      }
    }
  });

  // dangerous actions ask first
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });

  // money in đồng: group thousands with dots as people write them (1.500.000)
  document.querySelectorAll("input[data-money]").forEach(function (input) {
    input.addEventListener("blur", function () {
      var digits = input.value.replace(/[^0-9]/g, "");
      if (digits) { input.value = digits.replace(/\B(?=(\d{3})+(?!\d))/g, "."); }
    });
  });
})();
