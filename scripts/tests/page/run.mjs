// scripts/tests/page/run.mjs - the students' page (web/) end to end in Debian's headless Chromium,
// driven by playwright-core, against a running stack's NGINX. Started by scripts/tests/page_test.sh,
// which brings the throw-away stack up and reads this script's output: one line per check,
// "PASS <what>" or "FAIL <what>: <why>".
//
// Environment (set by page_test.sh):
//   PAGE_ORIGIN     the stack's public origin, e.g. http://127.0.0.1:58187 (no trailing slash)
//   PAGE_VALID_ID   a seeded registration number; PAGE_UNKNOWN_ID a well-formed unseeded one
//   PAGE_SHOTS_DIR  where page-phone.png and page-desktop.png are written
//   PAGE_XTASK      the built `cargo xtask` binary (the throw-away stack's STACK_* in the environment):
//                   the 429 case reloads NGINX with a rate limit, the 503 case stops the replicas
//   PAGE_CHROMIUM   the browser binary (/usr/bin/chromium)
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";

const ORIGIN = process.env.PAGE_ORIGIN;
const VALID_ID = process.env.PAGE_VALID_ID;
const UNKNOWN_ID = process.env.PAGE_UNKNOWN_ID;
const SHOTS = process.env.PAGE_SHOTS_DIR;
const XTASK = process.env.PAGE_XTASK;
const STACK_DIR = process.env.STACK_DIR;
if (!ORIGIN || !VALID_ID || !UNKNOWN_ID || !SHOTS || !XTASK || !STACK_DIR) {
  console.log("FAIL environment: PAGE_ORIGIN, PAGE_VALID_ID, PAGE_UNKNOWN_ID, PAGE_SHOTS_DIR, PAGE_XTASK, STACK_DIR are required");
  process.exit(1);
}

// --- checks -------------------------------------------------------------------------------------
let failures = 0;
function pass(what) { console.log(`PASS ${what}`); }
function fail(what, why) { failures++; console.log(`FAIL ${what}: ${String(why).split("\n")[0]}`); }
function check(what, ok, why = "not so") { ok ? pass(what) : fail(what, why); }
// One case: its steps run in order; an exception (a timeout, a missing element) fails the case
// and the run goes on with the next one.
async function step(what, fn) {
  try { await fn(); } catch (e) { fail(what, e && e.message ? e.message : e); }
}

// --- the browser ------------------------------------------------------------------------------
// Flags for a closed network: nothing in the browser itself may reach the internet (no
// component updates, no sync, no background fetches, no QUIC probes). Playwright gives every
// launch() a fresh temporary profile (it refuses --user-data-dir in args) and deletes it on close.
const browser = await chromium.launch({
  executablePath: process.env.PAGE_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  timeout: 30000,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check"],
});

// Every request any page makes, and everything that went wrong in a page's script.
const requests = [];
const pageErrors = [];
async function newPage(viewport, extra = {}) {
  const context = await browser.newContext({ viewport, locale: "en-GB", ...extra });
  context.setDefaultTimeout(8000);
  const page = await context.newPage();
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => pageErrors.push(`uncaught: ${e.message}`));
  page.on("console", (m) => {
    // A failed fetch logs "Failed to load resource" on its own: those are the cases under test.
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text());
  });
  return page;
}
const apiCalls = () => requests.filter((u) => u.startsWith(`${ORIGIN}/v1/results/`)).length;

const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };
const message = (page) => page.locator("#lookup-message");
async function lookUp(page, id) {
  await page.getByLabel("Registration number").fill(id);
  await page.getByRole("button", { name: "Show result" }).click();
}
async function messageAfter(page, id) {
  await lookUp(page, id);
  await page.waitForFunction(() => {
    const m = document.getElementById("lookup-message");
    return !m.hidden && m.classList.contains("message-error");
  });
  return (await message(page).textContent()).trim();
}
// The message shown must be ours: none of the server's own wording, no JSON, no stack trace.
function plain(text) { return !/[{}<>]|error:|status|stack|Exception|undefined|null/i.test(text); }

// Seeded IDs next to VALID_ID that the browser has not fetched yet: the API lets browsers keep a
// result for 5 s (Cache-Control), so a repeated lookup may never reach NGINX at all.
const OTHER_ID = (n) => String(Number(VALID_ID) + n);

const expected = await (await fetch(`${ORIGIN}/v1/results/${VALID_ID}`)).json();

// --- 1. the page, and a valid ID, at phone width -------------------------------------------
const phone = await newPage(PHONE, { deviceScaleFactor: 2, isMobile: true, hasTouch: true });
await step("the page loads", async () => {
  const response = await phone.goto(`${ORIGIN}/`);
  check("GET / is 200 text/html", response.status() === 200 && /text\/html/.test(response.headers()["content-type"]),
    `${response.status()} ${response.headers()["content-type"]}`);
  check("the page has a title", (await phone.title()) === "Examination results", await phone.title());
  check("the input is labelled 'Registration number'", (await phone.getByLabel("Registration number").count()) === 1);
  check("the input asks for the numeric keyboard", (await phone.getAttribute("#lookup-id", "inputmode")) === "numeric");
  check("the result region is aria-live=polite", (await phone.getAttribute("#result", "aria-live")) === "polite");
  check("the message region is role=alert", (await phone.getAttribute("#lookup-message", "role")) === "alert");
  check("nothing is looked up on load", apiCalls() === 0, `${apiCalls()} API requests`);
});

await step("a valid ID shows its result", async () => {
  await lookUp(phone, VALID_ID);
  await phone.locator("#result").waitFor({ state: "visible" });
  const text = async (sel) => (await phone.locator(sel).textContent()).trim();
  check("valid ID: the name is the API's", (await text("#result-name")) === expected.name, await text("#result-name"));
  check("valid ID: the total is the API's", (await text("#result-total")) === `${expected.total} / ${expected.max_total}`,
    await text("#result-total"));
  check("valid ID: the school and region are the API's",
    (await text("#result-school")) === expected.school.name && (await text("#result-region")) === expected.school.region);
  check("valid ID: the stream is named", /^(Natural|Social) science$/.test(await text("#result-stream")), await text("#result-stream"));
  const rows = await phone.locator("#result-subjects tr").allTextContents();
  const scores = rows.map((r) => Number(r.replace(/\D+/g, "")));
  check("valid ID: one row per subject with the API's scores",
    rows.length === expected.subjects.length && scores.every((s, i) => s === expected.subjects[i].score), rows.join("|"));
  check("valid ID: pass/fail is the API's",
    (await text("#result-verdict")) === (expected.passed ? "Passed" : "Not passed"), await text("#result-verdict"));
  check("valid ID: the rank in stream is the API's",
    (await text("#result-rank")).replace(/,/g, "") === `${expected.rank.in_stream} of ${expected.rank.stream_size}`,
    await text("#result-rank"));
  check("valid ID: focus moves to the result's heading", await phone.evaluate(() => document.activeElement.id) === "result-name");
  // Off by default: on a shared school computer the next student would see the number.
  check("valid ID: the address bar keeps no number unless asked", phone.url() === `${ORIGIN}/`, phone.url());
  const fits = await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  check("valid ID: nothing overflows the 390 px phone screen sideways", fits);
  await phone.screenshot({ path: path.join(SHOTS, "page-phone.png"), fullPage: true });
  pass("phone screenshot saved");
});

await step("print", async () => {
  await phone.emulateMedia({ media: "print" });
  const shown = await phone.evaluate(() => ["lookup", "result"].map((id) => getComputedStyle(document.getElementById(id)).display));
  check("print: the form is left out, the result printed", shown[0] === "none" && shown[1] !== "none", shown.join(","));
  await phone.emulateMedia({ media: "screen" });
});

await step("contrast", async () => {
  // WCAG 2 contrast of each text against the first opaque background behind it.
  const ratios = await phone.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
      .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
    const bg = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor); if (c.length === 3 || c[3] > 0) return c; } return [255, 255, 255]; };
    const sels = [".masthead-title", ".masthead-kicker", ".lookup-label", ".lookup-hint", "#lookup-submit", "#result-name",
      ".result-id", ".facts dt", ".facts dd", "#result-verdict", ".scores td", ".passmark", "#result-print", ".footer p"];
    return sels.map((s) => {
      const el = document.querySelector(s);
      const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
      return [s, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
    });
  });
  const low = ratios.filter(([, r]) => r < 4.5).map(([s, r]) => `${s} ${r.toFixed(2)}`);
  check("every text has contrast >= 4.5:1 (WCAG AA)", low.length === 0, low.join(", "));
});

// --- 2. each error answer -------------------------------------------------------------------
await step("malformed numbers", async () => {
  for (const bad of ["0", "0123456", "1234567890", "12a4567", ""]) {
    const before = apiCalls();
    const text = await messageAfter(phone, bad);
    check(`malformed '${bad}': the malformed message`, /digits only/.test(text) && !/7 digits/.test(text) && plain(text), text);
    check(`malformed '${bad}': no request sent`, apiCalls() === before, `${apiCalls() - before} requests`);
    check(`malformed '${bad}': the input is marked invalid and focused`,
      (await phone.getAttribute("#lookup-id", "aria-invalid")) === "true" &&
      await phone.evaluate(() => document.activeElement.id) === "lookup-id");
    check(`malformed '${bad}': the previous result is hidden`, await phone.locator("#result").isHidden());
  }
  // Spaces and dashes from a printed slip are not a mistake.
  await lookUp(phone, ` ${VALID_ID.slice(0, 3)} ${VALID_ID.slice(3)} `);
  await phone.locator("#result").waitFor({ state: "visible" });
  pass("a number typed with spaces is looked up");
});

await step("the server's 400", async () => {
  // The page checks exactly what the API checks, so a real 400 cannot be provoked from the form:
  // NGINX's path answers one with the API's own body instead.
  const body = JSON.stringify({ error: { status: 400, code: "invalid_id", message: "the registration number must be between 1000000 and 9999999" } });
  await phone.route("**/v1/results/**", (route) => route.fulfill({ status: 400, contentType: "application/json", body }));
  const text = await messageAfter(phone, "1000001");
  check("server 400: the malformed message, not the server's text", /digits only/.test(text) && !/between 1000000/.test(text), text);
  await phone.unrouteAll();
});

await step("unknown ID", async () => {
  const text = await messageAfter(phone, UNKNOWN_ID);
  check("unknown ID (404): the not-found message with the number", /No result was found/.test(text) && text.includes(UNKNOWN_ID) && plain(text), text);
});

await step("a second factor (results published with PINs)", async () => {
  // The stack's data set is open; the browser's route plays a data set that requires a PIN
  // (the API's exact answers: api/tests/api/factor.rs) and lets the right PIN through to the real result.
  const PIN = "004217";
  const page = await newPage(PHONE, { isMobile: true, hasTouch: true });
  await page.goto(`${ORIGIN}/`);
  check("factor: no second field until the results ask for one", await page.locator("#factor").isHidden());
  const sent = [];
  const envelope = (status, code, message, extra = {}) => JSON.stringify({ error: { status, code, message, ...extra } });
  await page.route("**/v1/results/**", (route) => {
    const pin = route.request().headers()["x-second-factor"];
    sent.push(pin);
    if (!pin) return route.fulfill({ status: 400, contentType: "application/json",
      body: envelope(400, "factor_required", "the PIN from the admission slip is needed besides the registration number", { factor: "pin" }) });
    if (pin === PIN) return route.continue();
    return route.fulfill({ status: 404, contentType: "application/json",
      body: envelope(404, "unknown_id", "no result was published for this registration number") });
  });
  const pinField = () => page.getByLabel("PIN", { exact: true });
  let text = await messageAfter(page, VALID_ID);
  check("factor required (400): a field labelled 'PIN' appears", (await pinField().count()) === 1 && await page.locator("#factor").isVisible());
  check("factor required: the message asks for the PIN and the focus is in its field",
    /enter the PIN printed on your admission slip/.test(text) && plain(text) &&
    await page.evaluate(() => document.activeElement.id) === "lookup-factor", text);
  check("factor required: the PIN field asks for the numeric keyboard", (await page.getAttribute("#lookup-factor", "inputmode")) === "numeric");
  const before = sent.length;
  await pinField().fill("12a");
  text = await messageAfter(page, VALID_ID);
  check("malformed PIN: the PIN's form, no request sent", /4 to 12 digits/.test(text) && sent.length === before && plain(text), text);
  check("malformed PIN: the PIN field is marked invalid", (await page.getAttribute("#lookup-factor", "aria-invalid")) === "true");
  await pinField().fill("999999");
  text = await messageAfter(page, VALID_ID);
  check("wrong PIN (404): one message that does not say which of the two is wrong",
    text.includes(`No result matches registration number ${VALID_ID} with this PIN`) && plain(text), text);
  await pinField().fill(PIN);
  await lookUp(page, VALID_ID);
  await page.locator("#result").waitFor({ state: "visible" });
  check("right PIN: the result", (await page.locator("#result-name").textContent()) === expected.name);
  check("the PIN travels in the X-Second-Factor header", sent.includes(PIN), sent.join(","));
  check("the PIN is in no URL, not even the address bar", !requests.some((u) => u.includes(PIN)) && !page.url().includes(PIN), page.url());
  await page.context().close();
});

await step("network failure", async () => {
  await phone.route("**/v1/results/**", (route) => route.abort("internetdisconnected"));
  const text = await messageAfter(phone, VALID_ID);
  check("network failure: the connection message", /could not be reached/.test(text) && plain(text), text);
  await phone.unrouteAll();
});

await step("the API's failed-lookup limits (429 with its code)", async () => {
  const limits = [
    { code: "too_many_failed_lookups", wait: "45", expect: /Too many lookups from your network found no result\. Please wait 45 seconds/ },
    { code: "too_many_tries", wait: "3540", expect: new RegExp(`Too many tries for registration number ${VALID_ID} .*paused for 59 minutes.*admission slip`) },
  ];
  for (const limit of limits) {
    const body = JSON.stringify({ error: { status: 429, code: limit.code, message: "refused" } });
    await phone.route("**/v1/results/**", (route) => route.fulfill({ status: 429, contentType: "application/json", headers: { "Retry-After": limit.wait }, body }));
    const text = await messageAfter(phone, VALID_ID);
    check(`429 ${limit.code}: its own message with the wait in ${limit.wait > 90 ? "minutes" : "seconds"}`, limit.expect.test(text) && plain(text), text);
    await phone.unrouteAll();
  }
});

await step("unexpected answers", async () => {
  const odd = [
    { status: 500, contentType: "text/html", body: "<h1>500</h1> panicked at src/main.rs:1: thread 'main' Exception" },
    { status: 502, contentType: "text/html", body: "<html>bad gateway</html>" },
    { status: 200, contentType: "text/html", body: "<html>not json</html>" },
    { status: 200, contentType: "application/json", body: JSON.stringify({ ...expected, student_id: 1 }) },
  ];
  for (const answer of odd) {
    await phone.route("**/v1/results/**", (route) => route.fulfill(answer));
    const text = await messageAfter(phone, VALID_ID);
    check(`a ${answer.status} ${answer.contentType} nobody expects: the generic message, no raw text`,
      /Something went wrong on our side/.test(text) && plain(text), text);
    await phone.unrouteAll();
  }
});

// --- 3. keyboard only, a bookmark, desktop -------------------------------------------------
await step("keyboard only", async () => {
  const page = await newPage(DESKTOP);
  await page.goto(`${ORIGIN}/`);
  const focused = () => page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.className));
  let tabs = 0;
  while ((await focused()) !== "lookup-id" && tabs < 5) { await page.keyboard.press("Tab"); tabs++; }
  check("keyboard: Tab reaches the input", (await focused()) === "lookup-id", `${await focused()} after ${tabs} tabs`);
  await page.keyboard.type(VALID_ID);
  await page.keyboard.press("Enter");
  await page.locator("#result").waitFor({ state: "visible" });
  check("keyboard: Enter shows the result and focuses its heading", (await focused()) === "result-name");
  await page.keyboard.press("Tab");
  check("keyboard: Tab goes on to the print button", (await focused()) === "result-print", await focused());
  await page.keyboard.press("Tab");
  check("keyboard: then to 'Look up another number'", (await focused()) === "result-again", await focused());
  await page.keyboard.press("Enter");
  check("keyboard: Enter on it clears the result and returns to the input",
    (await focused()) === "lookup-id" && await page.locator("#result").isHidden());
  const ring = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  check("keyboard: the focused input shows a focus ring", ring !== "none", ring);
  await page.context().close();
});

await step("bookmark and desktop", async () => {
  const page = await newPage(DESKTOP);
  await page.goto(`${ORIGIN}/?id=${VALID_ID}`);
  await page.locator("#result").waitFor({ state: "visible" });
  check("/?id=… (a bookmark) shows that result", (await page.locator("#result-name").textContent()) === expected.name);
  check("a bookmark without keep=1 leaves the address bar", page.url() === `${ORIGIN}/`, page.url());
  await page.locator("#lookup-keep").check();
  await lookUp(page, VALID_ID);
  await page.waitForURL(`${ORIGIN}/?id=${VALID_ID}&keep=1`, { timeout: 5000 }).catch(() => {});
  check("keep ticked: the address carries the number, to bookmark", page.url() === `${ORIGIN}/?id=${VALID_ID}&keep=1`, page.url());
  await page.locator("body").click({ position: { x: 5, y: 5 } }); // no focus ring in the picture
  await page.screenshot({ path: path.join(SHOTS, "page-desktop.png"), fullPage: true });
  pass("desktop screenshot saved");
  await page.context().close();
});

// --- 4. the edge's own 429 and 503 -----------------------------------------------------------
function stack(env) {
  execFileSync(XTASK, ["stack", "up"], { env: { ...process.env, STACK_SERVICES: "nginx", ...env }, stdio: "ignore", timeout: 60000 });
}

await step("too many requests (NGINX's 429)", async () => {
  stack({ STACK_NGINX_RATE_LIMIT: "on", STACK_NGINX_RATE: "1", STACK_NGINX_BURST: "1" });
  try {
    // One request a second per address and a burst of one (NGINX refuses burst=0): the test's
    // own two requests spend this second's, so the page's lookup right after is refused.
    let text = "";
    for (let attempt = 0; attempt < 3 && !/Too many/.test(text); attempt++) {
      // Right after the reload a kept-alive connection to an old worker may be closed under
      // the request ("fetch failed"): such a request spends nothing, and the next attempt retries.
      for (let i = 0; i < 2; i++) await fetch(`${ORIGIN}/v1/results/${VALID_ID}`).catch(() => undefined);
      text = await messageAfter(phone, OTHER_ID(1)).catch(() => "");
    }
    check("429: the too-many-requests message with Retry-After's wait", /Too many lookups.*wait 1 second\b/.test(text) && plain(text), text);
    // And once the second has passed, the same button works again.
    await phone.waitForTimeout(1100);
    await lookUp(phone, OTHER_ID(1));
    await phone.locator("#result").waitFor({ state: "visible" });
    pass("429: after the wait the lookup works");
  } finally {
    stack({ STACK_NGINX_RATE_LIMIT: "off" });
  }
});

await step("service busy (NGINX's 503, every replica stopped)", async () => {
  // Our own throw-away replicas, by their pid files: SIGTERM, then wait until they are gone.
  const pids = ["1", "2", "3"].map((n) => Number(readFileSync(path.join(STACK_DIR, "run", `api${n}.pid`), "utf8").trim()));
  for (const pid of pids) process.kill(pid, "SIGTERM");
  const alive = (pid) => { try { process.kill(pid, 0); return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8")); } catch { return false; } };
  for (let i = 0; i < 100 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
  // The freed ports may be taken at once by another throw-away stack on this machine (another
  // test running beside this one): then NGINX reaches its replicas and answers 200. The page's
  // handling is still tested, with NGINX's exact 503 served by the browser's route instead.
  const edge = await fetch(`${ORIGIN}/v1/results/${OTHER_ID(2)}`);
  if (edge.status !== 503) {
    console.log(`NOTE 503: NGINX answered ${edge.status} with our replicas stopped (their ports were reused); the 503 is replayed in the browser`);
    const body = JSON.stringify({ error: { status: 503, code: "unavailable", message: "the service is temporarily unavailable; retry shortly" } });
    await phone.route("**/v1/results/**", (route) => route.fulfill({ status: 503, contentType: "application/json", headers: { "Retry-After": "2" }, body }));
  }
  const text = await messageAfter(phone, OTHER_ID(2));
  check("503: the busy message with Retry-After's wait", /busy.*wait 2 seconds/.test(text) && plain(text), text);
  await phone.unrouteAll();
});

// --- 5. the whole run -----------------------------------------------------------------------
const foreign = requests.filter((u) => !u.startsWith(`${ORIGIN}/`) && !u.startsWith("data:"));
check(`every request (${requests.length}) went to the page's own origin`, foreign.length === 0, foreign.slice(0, 3).join(" "));
const assets = requests.filter((u) => /\/(app\.js|style\.css)/.test(u));
check("the assets are asked for with their ?v= version", assets.length > 0 && assets.every((u) => /\?v=[0-9a-f]{12}$/.test(u)), assets[0]);
check("no script error or CSP violation in any page", pageErrors.length === 0, pageErrors.slice(0, 3).join(" | "));

await browser.close();
process.exit(failures ? 1 : 0);
