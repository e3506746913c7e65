// flowaudit's HTML report: links findings to what they are about. A click
// on a finding's button (or Enter on a focused finding) highlights the
// statements, transactions, loops and chart lines that carry its number in
// `data-f` (`data-findings` in the ER diagram), and the query that drove an
// N+1 (`data-src`). j / k move between
// findings, Esc clears. The page reads whole without this script.
(function () {
  "use strict";
  var findings = Array.prototype.slice.call(document.querySelectorAll("li.finding"));
  var detail = document.createElement("div");
  detail.id = "detail";
  detail.setAttribute("role", "status");
  document.body.appendChild(detail);

  function has(el, name, n) {
    var list = (el.getAttribute(name) || "").split(" ");
    return list.indexOf(String(n)) >= 0;
  }

  function clear() {
    Array.prototype.forEach.call(document.querySelectorAll(".hl, .src, .selected"), function (el) {
      el.classList.remove("hl", "src", "selected");
    });
    Array.prototype.forEach.call(document.querySelectorAll("button.show"), function (b) {
      b.setAttribute("aria-pressed", "false");
    });
    detail.textContent = "";
  }

  function select(n, scroll) {
    clear();
    var item = document.getElementById("finding-" + n);
    if (!item) return 0;
    item.classList.add("selected");
    var button = item.querySelector("button.show");
    if (button) button.setAttribute("aria-pressed", "true");
    var marked = 0;
    var first = null;
    Array.prototype.forEach.call(document.querySelectorAll("[data-f], [data-findings]"), function (el) {
      if (has(el, "data-f", n) || has(el, "data-findings", n)) {
        el.classList.add("hl");
        marked += 1;
        if (!first) first = el;
      }
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-src]"), function (el) {
      if (has(el, "data-src", n)) {
        el.classList.add("src");
        marked += 1;
      }
    });
    var id = item.getAttribute("data-figure");
    var figure = id === null ? null : document.getElementById(id);
    detail.textContent = marked
      ? marked + " element" + (marked === 1 ? "" : "s") + " of the report show finding " +
        item.querySelector("code").textContent + "."
      : "This finding names no statement drawn in the timeline.";
    if (scroll && figure && figure.scrollIntoView) figure.scrollIntoView({ block: "nearest" });
    return marked;
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    var button = target.closest ? target.closest("button.show") : null;
    if (button) {
      var n = button.getAttribute("data-finding");
      if (button.getAttribute("aria-pressed") === "true") clear();
      else select(n, true);
      return;
    }
    var bar = target.closest ? target.closest("rect.st") : null;
    if (bar) {
      var title = bar.querySelector("title");
      Array.prototype.forEach.call(document.querySelectorAll(".picked"), function (el) {
        el.classList.remove("picked");
      });
      bar.classList.add("picked");
      detail.textContent = title ? title.textContent : "";
    }
  });

  function current() {
    var active = document.activeElement;
    var item = active && active.closest ? active.closest("li.finding") : null;
    return item ? findings.indexOf(item) : -1;
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea") return;
    if (event.key === "Escape") {
      clear();
      return;
    }
    if (event.key !== "j" && event.key !== "k") return;
    if (!findings.length) return;
    var at = current();
    var next = event.key === "j" ? at + 1 : (at < 0 ? findings.length - 1 : at - 1);
    next = Math.max(0, Math.min(findings.length - 1, next));
    var button = findings[next].querySelector("button.show, summary");
    if (button) button.focus();
    findings[next].scrollIntoView({ block: "center" });
    event.preventDefault();
  });

  // A link to #finding-N from the index selects it; one to #rule-ID opens
  // that rule's documentation.
  function fromHash() {
    var m = /^#finding-(\d+)$/.exec(window.location.hash);
    if (m) select(m[1], false);
    var rule = /^#rule-/.test(window.location.hash) && document.getElementById(window.location.hash.slice(1));
    if (rule) rule.open = true;
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  window.flowauditSelect = select;
})();
