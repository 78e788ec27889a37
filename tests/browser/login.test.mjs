// A real browser (Debian's Chromium, headless, driven by playwright-core) through the whole
// ClaveÚnica login on the demo stack that run.sh starts: Envoy with the gate, the emulator and
// the demo legacy app. BASE is the gate's origin; ARTIFACTS is where screenshots go;
// PROVIDER_PORT is the emulator's port, for its test modes. The demo shows the gate's page with
// the ClaveÚnica button before a protected page (pages.button_page), so each login here starts
// by following that button, as a person would.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ARTIFACTS,
  BASE,
  PROVIDER,
  SESSION_COOKIE,
  claveUnicaButton,
  emulatorMode,
  loginAtClaveUnica,
  loginWithButton,
  useBrowser,
} from "./support.mjs";

const browser = useBrowser();

test("a protected page sends the browser through ClaveÚnica and back, with the RUN", async () => {
  const context = await browser().newContext();
  const page = await context.newPage();
  await page.goto(`${BASE}/tramites/certificado?id=7`);
  await loginWithButton(page);
  const landed = new URL(page.url());
  assert.equal(landed.pathname + landed.search, "/tramites/certificado?id=7");
  const body = await page.textContent("body");
  assert.match(body, /44444444-4/);
  assert.match(body, /María Carmen/);
  // The demo app verified the gate's signed assertion (ES256, iss, aud, exp) with the keys the
  // gate publishes, and says so; a refused or missing one reads "rechazada" or "No llegó".
  const verified = await page.textContent(".verificada");
  assert.match(verified ?? "", /^Identidad verificada: firma ES256 de la puerta/);
  assert.match(await page.textContent(".verificada + table"), /sub\s*44444444-4\s*run\s*44444444-4\s*nombres\s*María Carmen/);
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
  const context = await browser().newContext();
  const [a, b] = [await context.newPage(), await context.newPage()];
  await a.goto(`${BASE}/tramites/a`);
  await b.goto(`${BASE}/tramites/b`);
  // Both tabs follow the button and wait at ClaveÚnica; finish the second first.
  for (const tab of [a, b]) {
    await claveUnicaButton(tab).click();
    await tab.waitForURL(/\/openid\/authorize\//);
  }
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
  const context = await browser().newContext();
  const page = await context.newPage();
  // The home is open to everyone and offers the button; the login comes back to it.
  await page.goto(`${BASE}/`);
  await loginWithButton(page);
  assert.equal(new URL(page.url()).pathname, "/");
  assert.match(await page.textContent("body"), /Hola, María Carmen/);
  assert.ok((await context.cookies()).some((c) => c.name === SESSION_COOKIE));
  return { context, page };
}

test("logout goes through ClaveÚnica and ends on the sesión cerrada page, not the login form", async () => {
  const { context, page } = await loggedInAtHome();
  // The logout page sends the browser to ClaveÚnica's logout, which comes back to the demo's
  // post_logout_redirect: a public page that says the session ended.
  const visited = [];
  page.on("request", (r) => r.isNavigationRequest() && r.frame() === page.mainFrame() && visited.push(r.url()));
  await page.goto(`${BASE}/claveunica/logout`);
  await page.waitForURL(`${BASE}/sesion-cerrada`, { timeout: 10_000 });
  assert.ok(visited.some((u) => u.startsWith(`${PROVIDER}/api/v1/accounts/app/logout`)), visited.join("\n"));
  assert.ok(!visited.some((u) => /\/openid\/authorize\//.test(u)), `sent to the login form: ${visited.join("\n")}`);
  assert.equal(await page.textContent("h1"), "Sesión cerrada");
  assert.ok(!(await context.cookies()).some((c) => c.name === SESSION_COOKIE), "the session cookie is gone");
  await context.close();
});

test("when ClaveÚnica's logout answers 204, the logout page falls back to the app", async () => {
  const { context, page } = await loggedInAtHome();
  // The demo's post_logout_redirect: the public sesión cerrada page.
  const fallback = `${BASE}/sesion-cerrada`;
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
    // The page that says the session ended, and no session cookie.
    await page.waitForURL(fallback, { timeout: 5_000 });
    assert.ok(!(await context.cookies()).some((c) => c.name === SESSION_COOKIE), "the session cookie is still there");
  } finally {
    await emulatorMode({ logout: "normal" });
  }
  await context.close();
});

test("an XHR without a session gets the 401 JSON, not a redirect", async () => {
  const context = await browser().newContext();
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
  const context = await browser().newContext();
  const page = await context.newPage();
  const response = await page.goto(`${BASE}/claveunica/callback?code=x&state=${"x".repeat(43)}`);
  assert.equal(response.status(), 400);
  const body = await page.textContent("body");
  assert.match(body, /no es válido o ya expiró/);
  assert.match(body, /Código de referencia: [0-9a-f]{8}\. Indícalo si pides ayuda\./);
  await page.screenshot({ path: `${ARTIFACTS}/error.png`, fullPage: true });
  await context.close();
});
