// A real browser (Debian's Chromium, headless, driven by playwright-core) through the whole
// ClaveÚnica login on the demo stack that run.sh starts: Envoy with the gate, the emulator and
// the demo legacy app. BASE is the gate's origin; ARTIFACTS is where screenshots go;
// PROVIDER_PORT is the emulator's port, for its test modes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const BASE = process.env.BASE ?? "http://localhost:8000";
const ARTIFACTS = process.env.ARTIFACTS ?? "../../target/browser-artifacts";
const SESSION_COOKIE = "claveunica_session";
const PROVIDER = `http://127.0.0.1:${process.env.PROVIDER_PORT ?? 8900}`;

let browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // The flags this machine needs: no sandbox as root, and no background traffic to hosts
    // that cannot be reached.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** Types a sandbox RUN and password into the emulator's form and submits it. */
async function loginAtClaveUnica(page, run = "44.444.444-4", password = "testing") {
  await page.waitForURL(/\/openid\/authorize\//);
  assert.match(await page.title(), /ClaveÚnica/);
  await page.fill("#run", run);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL((u) => u.origin === new URL(BASE).origin), page.click("button[name=login]")]);
}

test("a protected page sends the browser through ClaveÚnica and back, with the RUN", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${BASE}/tramites/certificado?id=7`);
  await loginAtClaveUnica(page);
  const landed = new URL(page.url());
  assert.equal(landed.pathname + landed.search, "/tramites/certificado?id=7");
  const body = await page.textContent("body");
  assert.match(body, /44444444-4/);
  assert.match(body, /María Carmen/);
  await page.screenshot({ path: `${ARTIFACTS}/landing.png`, fullPage: true });

  // The session cookie exists, but page JavaScript cannot see it.
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === SESSION_COOKIE);
  assert.ok(session, "the browser holds a session cookie");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Lax");
  const visible = await page.evaluate(() => document.cookie);
  assert.ok(!visible.includes(SESSION_COOKIE), `document.cookie shows the session: ${visible}`);
  await context.close();
});

test("two tabs log in at the same time and each lands on its own page", async () => {
  const context = await browser.newContext();
  const [a, b] = [await context.newPage(), await context.newPage()];
  await a.goto(`${BASE}/tramites/a`);
  await b.goto(`${BASE}/tramites/b`);
  // Both tabs wait at ClaveÚnica; finish the second first.
  await loginAtClaveUnica(b, "55.555.555-5");
  await loginAtClaveUnica(a, "55.555.555-5");
  assert.equal(new URL(a.url()).pathname, "/tramites/a");
  assert.equal(new URL(b.url()).pathname, "/tramites/b");
  assert.match(await a.textContent("body"), /55555555-5/);
  assert.match(await b.textContent("body"), /55555555-5/);
  await context.close();
});

/** A new browser context whose page logged in from the app's home and holds a session. */
async function loggedInAtHome() {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${BASE}/`);
  await loginAtClaveUnica(page);
  assert.ok((await context.cookies()).some((c) => c.name === SESSION_COOKIE));
  return { context, page };
}

test("logout ends the session in the browser", async () => {
  const { context, page } = await loggedInAtHome();
  // The logout page sends the browser to ClaveÚnica's logout, which comes back to the app,
  // which (no session any more) sends it to ClaveÚnica's login form.
  await page.goto(`${BASE}/claveunica/logout`);
  await page.waitForURL(/\/openid\/authorize\//, { timeout: 10_000 });
  assert.ok(!(await context.cookies()).some((c) => c.name === SESSION_COOKIE), "the session cookie is gone");
  await context.close();
});

/** Switches the emulator's test modes (`POST /__emulator/mode`, examples/emulator/src/modes.rs). */
async function emulatorMode(modes) {
  const r = await fetch(`${PROVIDER}/__emulator/mode`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(modes),
  });
  assert.equal(r.status, 200, await r.text());
}

test("when ClaveÚnica's logout answers 204, the logout page falls back to the app", async () => {
  const { context, page } = await loggedInAtHome();
  // The demo's post_logout_redirect: the app's home.
  const fallback = `${BASE}/`;
  await emulatorMode({ logout: "no_content" });
  try {
    const providerLogout = page.waitForResponse((r) => r.url().startsWith(`${PROVIDER}/api/v1/accounts/app/logout`));
    let requestedAt;
    const fallbackRequest = page.waitForRequest(
      (r) => r.url() === fallback && r.isNavigationRequest() && (requestedAt = Date.now()) > 0,
      { timeout: 5_000 },
    );
    const started = Date.now();
    await page.goto(`${BASE}/claveunica/logout`);
    // ClaveÚnica's logout is asked to send the browser back, and answers 204 instead...
    const answer = await providerLogout;
    assert.equal(answer.status(), 204);
    assert.equal(new URL(answer.url()).searchParams.get("redirect"), fallback);
    // ...so the page's timer takes the browser to the fallback, 1.5 s on, not a redirect.
    const request = await fallbackRequest;
    const waited = requestedAt - started;
    assert.equal(request.redirectedFrom(), null, "the fallback came as a redirect, not from the page's timer");
    assert.ok(waited >= 1_400, `the fallback came after ${waited} ms, before the page's 1.5 s`);
    // The app's home needs a session, and there is none: the browser lands on ClaveÚnica's form.
    await page.waitForURL(/\/openid\/authorize\//, { timeout: 5_000 });
    assert.ok(!(await context.cookies()).some((c) => c.name === SESSION_COOKIE), "the session cookie is still there");
  } finally {
    await emulatorMode({ logout: "normal" });
  }
  await context.close();
});

test("an XHR without a session gets the 401 JSON, not a redirect", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  // A public page of the demo app, so the page loads without a session.
  await page.goto(`${BASE}/publico`);
  const answer = await page.evaluate(async () => {
    const r = await fetch("/api/datos", { headers: { "X-Requested-With": "XMLHttpRequest" } });
    return { status: r.status, redirected: r.redirected, type: r.headers.get("content-type"), body: await r.json() };
  });
  assert.equal(answer.status, 401);
  assert.equal(answer.redirected, false);
  assert.match(answer.type, /application\/json/);
  assert.equal(answer.body.error, "login_required");
  assert.equal(answer.body.login_url, "/claveunica/login?return_to=%2Fapi%2Fdatos");
  await context.close();
});

test("a bad login attempt shows the Spanish error page", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const response = await page.goto(`${BASE}/claveunica/callback?code=x&state=${"x".repeat(43)}`);
  assert.equal(response.status(), 400);
  const body = await page.textContent("body");
  assert.match(body, /no es válido o ya expiró/);
  assert.match(body, /Código de referencia/);
  await page.screenshot({ path: `${ARTIFACTS}/error.png`, fullPage: true });
  await context.close();
});
