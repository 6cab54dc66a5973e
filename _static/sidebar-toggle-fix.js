// Make the sidebar and "on this page" buttons work on phones and tablets.
//
// sphinx-book-theme 1.3 + pydata-sphinx-theme 0.17: each page has two buttons of each
// kind, pydata's in the (hidden) navbar and the book theme's in the article header.
// pydata wires its sidebar dialogs to `document.querySelector(".primary-toggle")`
// (and ".secondary-toggle"), i.e. only the FIRST such button, which is the hidden one;
// sphinx-book-theme's own wide-screen handler also picks the first. The visible
// buttons get no handler, so below 992 px a click does nothing. Forward their clicks
// to the wired button. (Checked by tests/test_rendering.py.)
document.addEventListener("DOMContentLoaded", () => {
  for (const name of ["primary-toggle", "secondary-toggle"]) {
    const [wired, ...others] = document.querySelectorAll("." + name);
    if (!wired) continue;
    for (const button of others) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        wired.click();
      });
    }
  }
});
