// The embedded sign-up form. Paste where the form should appear:
//   <script src="https://<switchboard>/static/signup/embed.js" data-switchboard-form="<public id>" async></script>
// It fetches the form's fields from Switchboard, renders them in place with plain DOM calls (no inline
// code or styles, so a strict Content-Security-Policy only needs to allow Switchboard's origin), and
// posts the answers with fetch (CORS, allowed only from the page's allowed origins).
// data-style="none" leaves the styling to the site (classes start with "sb-").
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.getAttribute("data-switchboard-form")) return;
  var publicId = script.getAttribute("data-switchboard-form");
  var base = new URL(script.src).origin;
  var holder = document.createElement("div");
  holder.className = "sb-signup";
  script.parentNode.insertBefore(holder, script);
  if (script.getAttribute("data-style") !== "none") {
    var sheet = document.createElement("link");
    sheet.rel = "stylesheet";
    sheet.href = base + "/static/signup/embed.css";
    document.head.appendChild(sheet);
  }
  var INPUT_TYPES = { email: "email", phone: "tel", number: "number", date: "date" };
  var AUTOCOMPLETE = { email: "email", phone: "tel", name: "name", first_name: "given-name", last_name: "family-name" };

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function notice(text, className) {
    holder.textContent = "";
    var box = element("div", className, text);
    box.setAttribute("role", className === "sb-thanks" ? "status" : "alert");
    holder.appendChild(box);
  }

  function readJson(response) {
    return response.json().then(function (body) { return { status: response.status, body: body }; },
                                function () { return { status: response.status, body: {} }; });
  }

  fetch(base + "/f/" + encodeURIComponent(publicId) + "/embed.json", { credentials: "omit" })
    .then(readJson)
    .then(function (answer) {
      if (answer.status !== 200) throw new Error(answer.body.error || "The sign-up form is not available.");
      render(answer.body);
    })
    .catch(function (error) {
      notice(error instanceof TypeError ? "The sign-up form could not be loaded." : error.message, "sb-alert");
    });

  function render(form) {
    var node = element("form", "sb-form");
    node.setAttribute("novalidate", "");
    var summary = element("div", "sb-alert");
    summary.setAttribute("role", "alert");
    summary.hidden = true;
    node.appendChild(summary);
    var inputs = {}, errors = {};
    form.fields.forEach(function (field) {
      var id = "sb-" + publicId + "-" + field.name;
      var row = element("div", "sb-field" + (field.type === "checkbox" ? " sb-check" : ""));
      var label = element("label", "sb-label", field.label);
      label.htmlFor = id;
      var input;
      if (field.type === "textarea") {
        input = element("textarea", "sb-input");
        input.rows = 4;
      } else if (field.type === "select") {
        input = element("select", "sb-input");
        input.appendChild(new Option("Choose…", ""));
        (field.options || []).forEach(function (option) { input.appendChild(new Option(option, option)); });
      } else {
        input = element("input", field.type === "checkbox" ? "sb-checkbox" : "sb-input");
        input.type = field.type === "checkbox" ? "checkbox" : (INPUT_TYPES[field.type] || "text");
        if (AUTOCOMPLETE[field.name]) input.autocomplete = AUTOCOMPLETE[field.name];
        if (field.type === "number") input.step = "any";
      }
      input.id = id;
      input.name = field.name;
      if (field.required) {
        input.required = true;
        var mark = element("span", "sb-required", " *");
        mark.setAttribute("aria-hidden", "true");
        label.appendChild(mark);
      }
      var error = element("div", "sb-error");
      error.id = id + "-error";
      error.hidden = true;
      if (field.type === "checkbox") {
        label.insertBefore(input, label.firstChild);
        row.appendChild(label);
      } else {
        row.appendChild(label);
        row.appendChild(input);
      }
      row.appendChild(error);
      node.appendChild(row);
      inputs[field.name] = input;
      errors[field.name] = error;
    });
    // People never see this field; bots that fill in every input do.
    var trap = element("div", "sb-hp");
    trap.hidden = true;
    trap.setAttribute("aria-hidden", "true");
    var bait = element("input");
    bait.type = "text";
    bait.name = form.honeypot_field;
    bait.tabIndex = -1;
    bait.autocomplete = "off";
    trap.appendChild(bait);
    node.appendChild(trap);
    var button = element("button", "sb-submit", "Sign up");
    button.type = "submit";
    node.appendChild(button);
    holder.textContent = "";
    holder.appendChild(node);

    function showErrors(byField) {
      var other = [];
      Object.keys(errors).forEach(function (name) {
        var problems = byField[name];
        errors[name].hidden = !problems;
        errors[name].textContent = problems ? problems.join(" ") : "";
        if (problems) {
          inputs[name].setAttribute("aria-invalid", "true");
          inputs[name].setAttribute("aria-describedby", errors[name].id);
        } else {
          inputs[name].removeAttribute("aria-invalid");
          inputs[name].removeAttribute("aria-describedby");
        }
      });
      Object.keys(byField).forEach(function (name) { if (!inputs[name]) other.push(byField[name].join(" ")); });
      summary.textContent = other.length ? other.join(" ") : "Please correct the fields marked below.";
      summary.hidden = false;
      var first = Object.keys(byField).filter(function (name) { return inputs[name]; })[0];
      if (first) inputs[first].focus();
    }

    node.addEventListener("submit", function (event) {
      event.preventDefault();
      var values = {};
      Object.keys(inputs).forEach(function (name) {
        values[name] = inputs[name].type === "checkbox" ? inputs[name].checked : inputs[name].value;
      });
      values[form.token_field] = form.token;
      values[form.honeypot_field] = bait.value;
      button.disabled = true;
      fetch(form.submit_url, { method: "POST", credentials: "omit", headers: { "Content-Type": "application/json" },
                               body: JSON.stringify(values) })
        .then(readJson)
        .then(function (answer) {
          button.disabled = false;
          if (answer.status === 201) {
            if (answer.body.redirect_url) { window.location.assign(answer.body.redirect_url); return; }
            notice(answer.body.message || form.thank_you, "sb-thanks");
          } else if (answer.status === 400 && answer.body.errors) {
            showErrors(answer.body.errors);
          } else {
            summary.textContent = answer.body.error || "The sign-up could not be sent. Try again in a moment.";
            summary.hidden = false;
          }
        })
        .catch(function () {
          button.disabled = false;
          summary.textContent = "The sign-up could not be sent. Check your connection and try again.";
          summary.hidden = false;
        });
    });
  }
})();
