// The students' page: looks a registration number up in the results API on the same origin
// (GET /v1/results/{id}) and shows the result, or one plain message for every other answer.
// No build step, no dependencies: NGINX serves this file as it is (nginx/nginx.conf.template).
"use strict";

(function () {
  // What the API accepts (results-core/src/id.rs, StudentId::MAX_DIGITS): one to nine digits, no
  // leading zero. Which numbers exist depends on the published data set, so the page names no
  // length or range of its own.
  var ID_PATTERN = /^[1-9][0-9]{0,8}$/;
  // A lookup the network has not answered in this time is treated as a network failure: on a
  // phone a stuck request must not leave the student watching "Looking up…" forever.
  var TIMEOUT_MS = 10000;

  var SUBJECTS = {
    english: "English",
    mathematics: "Mathematics",
    physics: "Physics",
    chemistry: "Chemistry",
    biology: "Biology",
    geography: "Geography",
    history: "History",
    economics: "Economics",
    aptitude: "Aptitude"
  };
  var STREAMS = { natural_science: "Natural science", social_science: "Social science" };

  // The second detail a data set may require besides the number (results-core/src/factor.rs):
  // its label, hint, keyboard, the form the API accepts, and the messages about it.
  var FACTORS = {
    pin: {
      label: "PIN",
      hint: "The PIN printed on your admission slip (4 to 12 digits).",
      inputMode: "numeric",
      pattern: /^[0-9]{4,12}$/,
      needed: "Your results are protected: enter the PIN printed on your admission slip as well, then press Show result.",
      malformed: "A PIN is 4 to 12 digits. Check the PIN on your admission slip and try again.",
      unknown: "No result matches registration number {id} with this PIN. Check both on your admission slip and try again."
    },
    date_of_birth: {
      label: "Date of birth",
      hint: "As on your admission slip, written year-month-day, e.g. 2008-03-25.",
      inputMode: "text",
      pattern: /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/,
      needed: "Your results are protected: enter your date of birth as well, then press Show result.",
      malformed: "Write the date of birth as year-month-day, e.g. 2008-03-25.",
      unknown: "No result matches registration number {id} with this date of birth. Check both on your admission slip and try again."
    }
  };

  var MESSAGES = {
    malformed: "A registration number is made of digits only (at most 9) and does not start with 0. Check the number on your admission slip and try again.",
    unknown: "No result was found for registration number {id}. Check the number on your admission slip. If it is right, your result may not be published yet.",
    rateLimited: "Too many lookups from your connection. Please wait {wait} and try again.",
    // The API's failed-lookup limits (a 429 with its own code): too many numbers that found
    // nothing from this network, or too many tries at this one number (someone guessing).
    tooManyFailed: "Too many lookups from your network found no result. Please wait {wait} and try again.",
    tooManyTries: "Too many tries for registration number {id} found no result, so it is paused for {wait}. Check the number and the second detail on your admission slip, then try again. If they are right and this happens again, tell your school.",
    busy: "The results service is busy right now. Please wait {wait} and try again.",
    network: "The results service could not be reached. Check your internet connection and try again.",
    other: "Something went wrong on our side. Please try again in a moment."
  };

  var form = document.getElementById("lookup");
  var input = document.getElementById("lookup-id");
  var submit = document.getElementById("lookup-submit");
  var keep = document.getElementById("lookup-keep");
  var message = document.getElementById("lookup-message");
  var result = document.getElementById("result");
  var factorBlock = document.getElementById("factor");
  var factorInput = document.getElementById("lookup-factor");
  var factor = null; // FACTORS entry once the API has said the results need one
  var current = null; // the AbortController of the lookup in flight, if any

  function byId(id) { return document.getElementById(id); }

  // Students type numbers with spaces or dashes from a printed slip; those are not part of it.
  function normalise(text) { return text.replace(/[\s-]+/g, ""); }

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) { return values[key]; });
  }

  function seconds(n) { return n === 1 ? "1 second" : n + " seconds"; }

  // A wait of a minute and more reads in minutes (a failed-lookup pause lasts up to an hour).
  function duration(n) {
    if (n < 90) return seconds(n);
    return Math.ceil(n / 60) + " minutes";
  }

  // Retry-After is delta-seconds or an HTTP date; anything unreadable falls back to `fallback`.
  function retryAfter(response, fallback) {
    var value = response.headers.get("Retry-After");
    if (value && /^\s*\d+\s*$/.test(value)) return Math.max(1, parseInt(value, 10));
    var date = value ? Date.parse(value) : NaN;
    if (!isNaN(date)) return Math.max(1, Math.ceil((date - Date.now()) / 1000));
    return fallback;
  }

  function showMessage(text, kind) {
    message.textContent = text;
    message.className = "message message-" + kind;
    message.hidden = false;
    if (kind === "error") input.setAttribute("aria-invalid", "true");
  }

  function clearMessage() {
    message.hidden = true;
    message.textContent = "";
    input.removeAttribute("aria-invalid");
  }

  function fail(text, field) {
    showMessage(text, "error");
    result.hidden = true;
    // Back to the field at fault, so the student can correct it straight away.
    var at = field || input;
    if (at !== input) input.removeAttribute("aria-invalid");
    if (at === factorInput) factorInput.setAttribute("aria-invalid", "true");
    at.focus();
  }

  // The API said which detail it needs: show its field, labelled for it.
  function askFor(kind) {
    factor = FACTORS[kind] || FACTORS.pin;
    setText("lookup-factor-label", factor.label);
    setText("lookup-factor-hint", factor.hint);
    factorInput.setAttribute("inputmode", factor.inputMode);
    factorBlock.hidden = false;
  }

  // The error envelope's code and factor, or nothing when the body is not the envelope.
  function errorOf(response) {
    return response.json().then(function (body) {
      return body && body.error ? body.error : {};
    }, function () { return {}; });
  }

  function setText(id, text) { byId(id).textContent = text; }

  function render(data) {
    setText("result-id", String(data.student_id));
    setText("result-name", data.name);
    setText("result-school", data.school.name);
    setText("result-region", data.school.region);
    setText("result-stream", STREAMS[data.stream] || data.stream);
    setText("result-rank", data.rank.in_stream.toLocaleString("en") + " of " +
      data.rank.stream_size.toLocaleString("en"));
    setText("result-total", data.total + " / " + data.max_total);
    setText("result-passmark", "Pass mark: " + data.pass_mark + " of " + data.max_total + ".");

    var verdict = byId("result-verdict");
    verdict.textContent = data.passed ? "Passed" : "Not passed";
    verdict.className = "verdict " + (data.passed ? "verdict-pass" : "verdict-fail");

    var body = byId("result-subjects");
    while (body.firstChild) body.removeChild(body.firstChild);
    data.subjects.forEach(function (s) {
      var row = document.createElement("tr");
      var name = document.createElement("th");
      name.scope = "row";
      name.textContent = SUBJECTS[s.subject] || s.subject;
      var score = document.createElement("td");
      score.className = "num";
      score.textContent = String(s.score);
      row.appendChild(name);
      row.appendChild(score);
      body.appendChild(row);
    });

    clearMessage();
    result.hidden = false;
    document.title = data.name + " – Examination results";
    // Focus on the name: screen readers read it, keyboard users continue from the result.
    byId("result-name").focus();
  }

  // A 200 is shown only if it is the result asked for, in the shape this page knows.
  function looksLikeResult(data, id) {
    return data && data.student_id === Number(id) && typeof data.name === "string" &&
      data.school && Array.isArray(data.subjects) && data.rank && typeof data.total === "number";
  }

  function lookUp(id) {
    if (current) current.abort();
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    current = controller;
    var timer = setTimeout(function () { if (controller) controller.abort(); }, TIMEOUT_MS);
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    showMessage("Looking up " + id + "…", "info");

    function done() {
      clearTimeout(timer);
      if (current === controller) {
        current = null;
        submit.disabled = false;
        form.removeAttribute("aria-busy");
      }
    }

    var headers = { Accept: "application/json" };
    var secondFactor = factor ? factorInput.value.trim() : "";
    if (secondFactor) headers["X-Second-Factor"] = secondFactor;
    fetch("/v1/results/" + id, {
      headers: headers,
      // The answer depends on the header: never a cached one (the API says no-store anyway).
      cache: secondFactor ? "no-store" : "default",
      credentials: "omit",
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      if (response.ok) {
        return response.json().then(function (data) {
          done();
          if (looksLikeResult(data, id)) render(data); else fail(MESSAGES.other);
        }, function () {
          // A 200 that is not JSON (a broken proxy page): not the student's connection.
          done();
          fail(MESSAGES.other);
        });
      }
      if (response.status === 400) {
        return errorOf(response).then(function (error) {
          done();
          if (error.code === "factor_required") {
            askFor(error.factor);
            fail(factor.needed, factorInput);
          } else if (error.code === "invalid_factor") {
            askFor(error.factor);
            fail(factor.malformed, factorInput);
          } else fail(MESSAGES.malformed);
        });
      }
      if (response.status === 429) {
        return errorOf(response).then(function (error) {
          done();
          var wait = duration(retryAfter(response, 1));
          if (error.code === "too_many_tries") fail(format(MESSAGES.tooManyTries, { id: id, wait: wait }));
          else if (error.code === "too_many_failed_lookups") fail(format(MESSAGES.tooManyFailed, { wait: wait }));
          else fail(format(MESSAGES.rateLimited, { wait: wait }));
        });
      }
      done();
      // With a second detail a 404 does not say which of the two is wrong (nor does the API).
      if (response.status === 404 && secondFactor) fail(format(factor.unknown, { id: id }));
      else if (response.status === 404) fail(format(MESSAGES.unknown, { id: id }));
      else if (response.status === 503) fail(format(MESSAGES.busy, { wait: seconds(retryAfter(response, 2)) }));
      else fail(MESSAGES.other);
    }).catch(function () {
      // A newer lookup replaced this one: it shows its own answer.
      if (current !== controller) return;
      done();
      fail(MESSAGES.network);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var id = normalise(input.value);
    if (!ID_PATTERN.test(id)) {
      fail(MESSAGES.malformed);
      return;
    }
    input.value = id;
    if (factor && factorInput.value.trim() === "") {
      fail(factor.needed, factorInput);
      return;
    }
    if (factor && !factor.pattern.test(factorInput.value.trim())) {
      fail(factor.malformed, factorInput);
      return;
    }
    // The number stays in the address bar (and the history) only when the student asked for it,
    // for a bookmark or a reload; otherwise even a number that came in the address is removed.
    if (window.history && history.replaceState) history.replaceState(null, "", keep.checked ? "/?id=" + id + "&keep=1" : "/");
    lookUp(id);
  });

  byId("result-print").addEventListener("click", function () { window.print(); });
  byId("result-again").addEventListener("click", function () {
    result.hidden = true;
    input.value = "";
    document.title = "Examination results";
    if (window.history && history.replaceState) history.replaceState(null, "", "/");
    input.focus();
  });

  // /?id=1234567 (a bookmark, or the form submitted before this script ran); &keep=1 when the
  // student chose to keep the number in the address.
  var params = new URLSearchParams(window.location.search);
  var fromUrl = params.get("id");
  keep.checked = params.get("keep") === "1";
  if (fromUrl) {
    input.value = fromUrl;
    form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
  }
})();
