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
// The bulk bar (org list, queue): counts the ticked rows and offers
// "Select all N matching" once every row of the page is ticked. Without
// script the "all matching" box is simply always there.
function bulkBarUpdate(event) {
  const bar = document.querySelector("[data-bulk-bar]");
  if (!bar) return;
  const form = bar.closest("form");
  const rows = Array.from(form.querySelectorAll("input[name='orgs']"));
  const ticked = rows.filter(function (box) { return box.checked; }).length;
  const all = bar.querySelector("[data-bulk-all]");
  const allBox = all && all.querySelector("input");
  const every = rows.length > 0 && ticked === rows.length;
  if (all) {
    if (!every) allBox.checked = false;
    all.hidden = !every;
  }
  if (event && event.target === allBox) allBox.focus();
  const total = Number(bar.dataset.bulkTotal).toLocaleString("en");
  const count = bar.querySelector("[data-bulk-count]");
  if (allBox && allBox.checked) {
    count.textContent = "All " + total + " matching orgs are selected";
  } else if (ticked) {
    count.textContent = ticked + " selected";
  } else {
    count.textContent = "Tick orgs to act on them";
  }
  form.querySelectorAll("[data-check-all]").forEach(function (box) {
    box.checked = every;
  });
}
document.addEventListener("change", function (event) {
  if (event.target.closest("[data-bulk-bar]") || event.target.name === "orgs"
      || event.target.closest("[data-check-all]")) bulkBarUpdate(event);
});
document.addEventListener("DOMContentLoaded", function () { bulkBarUpdate(); });
document.addEventListener("htmx:afterSwap", function () { bulkBarUpdate(); });
// After a failed submit the page comes back with errors: put the keyboard
// (and a screen reader) on the first one instead of the top of the page.
document.addEventListener("DOMContentLoaded", function () {
  const field = document.querySelector("[aria-invalid='true']");
  if (field) { field.focus(); return; }
  const error = document.querySelector("[role='alert'] .errorlist, .messages .error");
  if (error) { error.setAttribute("tabindex", "-1"); error.focus(); }
});
