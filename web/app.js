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

  var MESSAGES = {
    malformed: "A registration number is made of digits only (at most 9) and does not start with 0. Check the number on your admission slip and try again.",
    unknown: "No result was found for registration number {id}. Check the number on your admission slip. If it is right, your result may not be published yet.",
    rateLimited: "Too many lookups from your connection. Please wait {wait} and try again.",
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
  var current = null; // the AbortController of the lookup in flight, if any

  function byId(id) { return document.getElementById(id); }

  // Students type numbers with spaces or dashes from a printed slip; those are not part of it.
  function normalise(text) { return text.replace(/[\s-]+/g, ""); }

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) { return values[key]; });
  }

  function seconds(n) { return n === 1 ? "1 second" : n + " seconds"; }

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

  function fail(text) {
    showMessage(text, "error");
    result.hidden = true;
    // Back to the field, so the student can correct the number straight away.
    input.focus();
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

    fetch("/v1/results/" + id, {
      headers: { Accept: "application/json" },
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
      done();
      if (response.status === 400) fail(MESSAGES.malformed);
      else if (response.status === 404) fail(format(MESSAGES.unknown, { id: id }));
      else if (response.status === 429) fail(format(MESSAGES.rateLimited, { wait: seconds(retryAfter(response, 1)) }));
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
