// Small progressive enhancements; every page works without them.
document.addEventListener("click", function (event) {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy).textContent.trim();
  navigator.clipboard.writeText(text).then(function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  });
});
document.addEventListener("change", function (event) {
  const toggle = event.target.closest("[data-check-all]");
  if (!toggle) return;
  document.querySelectorAll("input[name='" + toggle.dataset.checkAll + "']")
    .forEach(function (box) { box.checked = toggle.checked; });
});
// After a failed submit the page comes back with errors: put the keyboard
// (and a screen reader) on the first one instead of the top of the page.
document.addEventListener("DOMContentLoaded", function () {
  const field = document.querySelector("[aria-invalid='true']");
  if (field) { field.focus(); return; }
  const error = document.querySelector("[role='alert'] .errorlist, .messages .error");
  if (error) { error.setAttribute("tabindex", "-1"); error.focus(); }
});
