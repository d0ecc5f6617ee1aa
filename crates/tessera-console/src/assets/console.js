// Tessera consoles: copy buttons and the reveal toggle. Served as a file: the pages carry a
// Content-Security-Policy that allows no inline script. Every page works without it, except
// that copying then means selecting the text.
"use strict";
document.addEventListener("click", function (event) {
  var copy = event.target.closest("button[data-copy]");
  if (copy) {
    var source = document.getElementById(copy.getAttribute("data-copy"));
    if (!source) return;
    var text = source.value !== undefined ? source.value : source.textContent;
    var done = function () {
      copy.textContent = "Copied";
      setTimeout(function () { copy.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { source.select(); });
    } else if (source.select) {
      source.select();
      document.execCommand("copy");
      done();
    }
    return;
  }
  var reveal = event.target.closest("button[data-reveal]");
  if (reveal) {
    var field = document.getElementById(reveal.getAttribute("data-reveal"));
    if (!field) return;
    var show = field.type === "password";
    field.type = show ? "text" : "password";
    reveal.setAttribute("aria-pressed", show ? "true" : "false");
    reveal.textContent = show ? "Hide" : "Reveal";
  }
});
