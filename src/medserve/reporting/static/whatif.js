// The what-if page: send the form again as a value changes and show the answer.
// The answer is HTML the server rendered (every value escaped there).
(function () {
  "use strict";
  var form = document.getElementById("whatif");
  var result = document.getElementById("result");
  if (!form || !result || !window.fetch) { return; }
  var timer = null;
  var sent = 0;
  function score() {
    var mine = ++sent;
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { "X-CSRF-Token": form.dataset.csrf, "X-Partial": "1" },
      credentials: "same-origin"
    }).then(function (response) {
      if (response.redirected || response.status === 401 || response.status === 303) {
        window.location.assign("/ui/login");
        return null;
      }
      var type = response.headers.get("Content-Type") || "";
      if ((response.status !== 200 && response.status !== 422) || type.indexOf("text/html") !== 0) {
        return "<p class=\"error\" role=\"alert\">Not scored (the server said " +
          String(response.status) + "): reload the page and try again.</p>";
      }
      return response.text();
    }).then(function (html) {
      if (html !== null && mine === sent) { result.innerHTML = html; }
    });
  }
  function later() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(score, 250);
  }
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  form.addEventListener("submit", function (event) { event.preventDefault(); score(); });
}());
