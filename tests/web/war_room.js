// The war room in headless Chromium (Debian's, driven by playwright-core), against a real
// `lifeboat serve` next to a running recovery. tests/web.rs starts both, reads this script's
// lines: "release NAME" asks it to let a held step finish; the last line is the result, JSON.
"use strict";
const { chromium } = require("playwright-core");

const URL = process.env.WAR_ROOM_URL;
const RUN = process.env.WAR_ROOM_RUN;
const TOKENS = JSON.parse(process.env.WAR_ROOM_TOKENS);
const SHOTS = process.env.WAR_ROOM_SHOTS;
const result = {};

async function signIn(browser, who, viewport) {
  const context = await browser.newContext({ viewport: viewport || { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => { result.page_errors = (result.page_errors || []).concat(String(e)); });
  await page.goto(URL);
  await page.fill("#token", TOKENS[who]);
  await page.click("#login button[type=submit]");
  await page.waitForSelector(`[data-run="${RUN}"]`);
  await page.click(`[data-run="${RUN}"]`);
  await page.waitForSelector("#timeline");
  return { context, page };
}

async function approveOnPage(page, reason) {
  await page.click('[data-gate="go"] .approve');
  await page.fill("#reason", reason);
  await page.click("#confirm-ok");
}

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  // A wrong token first: refused, with the reason on the page.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(URL);
    await page.fill("#token", "lbt_not-a-token");
    await page.click("#login button[type=submit]");
    await page.waitForFunction(() => document.getElementById("login-error").textContent !== "");
    result.wrong_token = await page.textContent("#login-error");
    await context.close();
  }

  // Alice, an operator, watches the run: the copy step is running.
  const alice = await signIn(browser, "alice");
  await alice.page.waitForSelector('[data-step="copy datastore"][data-state="running"]');
  await alice.page.evaluate(() => { window.__same_page = true; });
  console.log("release copy");
  // It finishes on the page without a reload, and the gate appears.
  await alice.page.waitForSelector('[data-step="copy datastore"][data-state="succeeded"]', { timeout: 20000 });
  await alice.page.waitForSelector('[data-gate="go"]');
  result.no_reload = await alice.page.evaluate(() => window.__same_page === true);
  result.gate_message = await alice.page.textContent('[data-gate="go"] .message');

  // What the runbook put in names, logs and parameters is text, never markup.
  result.injected_elements = await alice.page.evaluate(
    () => document.querySelectorAll("#main img, #main script, #main b, #main i").length);
  result.pwned = await alice.page.evaluate(() => window.__pwned === undefined ? null : window.__pwned);
  result.injected_step_shown = await alice.page.evaluate(
    () => [...document.querySelectorAll("[data-step]")].map((e) => e.getAttribute("data-step"))
      .filter((n) => n.startsWith("<img")));
  result.params = await alice.page.evaluate(
    () => [...document.querySelectorAll("#params tr")].map((tr) => tr.textContent));
  result.secret_in_page = await alice.page.evaluate(() => document.body.innerText.includes("s3cret"));
  result.log_has_script_text = await alice.page.evaluate(
    () => document.getElementById("log").textContent.includes("<script>window.__pwned=2</script>"));
  if (SHOTS) await alice.page.screenshot({ path: `${SHOTS}/war-room-run.png`, fullPage: true });

  // Victor, a viewer: no approve button on the page, and the API refuses him.
  const victor = await signIn(browser, "victor");
  await victor.page.waitForSelector('[data-gate="go"]');
  result.viewer_buttons = await victor.page.locator('[data-gate="go"] button').count();
  const refused = await victor.context.request.post(`${URL}api/runs/${RUN}/gates/go/approve`, {
    headers: { Authorization: `Bearer ${TOKENS.victor}` }, data: { reason: "I want to" } });
  result.viewer_api = [refused.status(), (await refused.json()).error];

  // A cross-site request with Alice's session is refused: from another origin even with her
  // CSRF token, and from anywhere without it.
  const csrf = await alice.page.evaluate(() => state.me.csrf);
  const approveUrl = `${URL}api/runs/${RUN}/gates/go/approve`;
  const forged = await alice.context.request.post(approveUrl, {
    headers: { Origin: "http://evil.example", "X-Lifeboat-CSRF": csrf }, data: { reason: "forged" } });
  const tokenless = await alice.context.request.post(approveUrl, { data: { reason: "forged" } });
  result.cross_site = [forged.status(), tokenless.status(), (await forged.json()).error];

  // Alice approves on the page, with a reason: one of two.
  await approveOnPage(alice.page, "copy verified on the PCC");
  await alice.page.waitForSelector("#flash");
  result.first_approval = await alice.page.textContent("#flash");
  // Alice again: refused, the gate needs someone else.
  await approveOnPage(alice.page, "me again");
  await alice.page.waitForFunction(() => document.getElementById("confirm-error").textContent !== "");
  result.second_by_alice = await alice.page.textContent("#confirm-error");
  await alice.page.click("#confirm-cancel");

  // Bob, on a phone, approves: the run goes on, on both pages.
  const bob = await signIn(browser, "bob", { width: 390, height: 844 });
  await bob.page.waitForSelector('[data-gate="go"]');
  result.phone_overflow = await bob.page.evaluate(
    () => document.documentElement.scrollWidth > window.innerWidth);
  if (SHOTS) await bob.page.screenshot({ path: `${SHOTS}/war-room-phone.png` });
  await approveOnPage(bob.page, "second pair of eyes");
  await bob.page.waitForFunction(() => document.getElementById("run-state").textContent === "succeeded", null, { timeout: 20000 });
  await alice.page.waitForFunction(() => document.getElementById("run-state").textContent === "succeeded", null, { timeout: 20000 });
  result.alice_sees = await alice.page.getAttribute('[data-step="move ips"]', "data-state");
  result.alice_same_page = await alice.page.evaluate(() => window.__same_page === true);
  await alice.page.goto(URL);
  await alice.page.waitForSelector(`[data-run="${RUN}"] .badge`);
  result.list_state = await alice.page.textContent(`[data-run="${RUN}"] .badge`);
  if (SHOTS) await alice.page.screenshot({ path: `${SHOTS}/war-room-runs.png` });
  await browser.close();
  console.log(JSON.stringify(result));
})().catch((e) => { console.error(e); process.exit(1); });
