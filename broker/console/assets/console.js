// Progressive touches only: every page works without this file.
// A revoke asks first.
document.addEventListener("DOMContentLoaded", function () {
  var revoke = document.getElementById("revoke");
  if (revoke) {
    revoke.form.addEventListener("submit", function (e) {
      if (!window.confirm("Revoke this pin? The definition is held again until approved.")) e.preventDefault();
    });
  }
});
