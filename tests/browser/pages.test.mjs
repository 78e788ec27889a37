// Every page the gate serves, in a real browser on the demo stack (run.sh starts it): each
// passes axe-core with no violation, loads nothing from anywhere, works without JavaScript, and
// is saved as a screenshot in ARTIFACTS (target/browser-artifacts/ under run.sh:
// button-page.png, login-page.png, error-page.png, logout-page.png, frame-page.png,
// signed-out.png). A login asked for inside a frame takes the whole window to ClaveÚnica.
// The 403 page for a RUN outside allowed_runs is not here: the demo has no pilot list (its
// landmarks, help and home are checked in src/web/pages.rs).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ARTIFACTS,
  BASE,
  SESSION_COOKIE,
  assertAccessible,
  claveUnicaButton,
  emulatorMode,
  loginAtClaveUnica,
  useBrowser,
} from "./support.mjs";

const browser = useBrowser();

/** A new page that records every request it makes that is not a navigation of a frame. */
async function watchedPage(options = {}) {
  const context = await browser().newContext(options);
  const page = await context.newPage();
  const fetched = [];
  page.on("request", (r) => r.isNavigationRequest() || fetched.push(r.url()));
  return { context, page, fetched };
}

/** The page fetched nothing but, at most, its own origin's favicon. */
function assertLoadsNothing(name, fetched) {
  const elsewhere = fetched.filter((u) => u !== `${BASE}/favicon.ico`);
  assert.deepEqual(elsewhere, [], `${name} fetched ${elsewhere.join(", ")}`);
}

/** The page's one button, as the button manual describes it. */
async function assertOfficialButton(page, href) {
  const button = claveUnicaButton(page);
  assert.equal(await button.count(), 1);
  assert.equal(await button.textContent(), "Iniciar sesión");
  assert.equal(await button.getAttribute("href"), href);
  const style = await button.evaluate((b) => getComputedStyle(b).backgroundColor);
  assert.equal(style, "rgb(15, 105, 196)", "the button is not ClaveÚnica's #0F69C4");
}

test("every page the gate serves passes axe-core and makes no request elsewhere", async () => {
  const pages = [
    { name: "button-page", path: "/tramites/certificado?id=7", status: 200 },
    { name: "login-page", path: "/claveunica/login", status: 200 },
    { name: "error-page", path: `/claveunica/callback?code=x&state=${"x".repeat(43)}`, status: 400 },
  ];
  for (const { name, path, status } of pages) {
    const { context, page, fetched } = await watchedPage();
    const response = await page.goto(`${BASE}${path}`);
    assert.equal(response.status(), status, name);
    assert.equal(await page.getAttribute("html", "lang"), "es");
    assert.equal(await page.locator("main h1").count(), 1, `${name}: one h1, in main`);
    assert.match(await page.textContent("header"), /Portal Legado \(demo\)/);
    assert.match(await page.textContent("footer"), /¿Necesitas ayuda\? Mesa de ayuda del Portal Legado/);
    await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
    await assertAccessible(page, name);
    assertLoadsNothing(name, fetched);
    await context.close();
  }

  // The logout page leaves for ClaveÚnica at once; ClaveÚnica answering 204 (the emulator's
  // no_content mode), and the fallback answering 204 too, keep it in view to be checked.
  await emulatorMode({ logout: "no_content" });
  try {
    const { context, page, fetched } = await watchedPage();
    await page.route(`${BASE}/sesion-cerrada`, (r) => r.fulfill({ status: 204 }));
    const fallback = page.waitForRequest(`${BASE}/sesion-cerrada`);
    // The page leaves (or tries to) before its load event: wait for the answer, then the timer.
    await page.goto(`${BASE}/claveunica/logout`, { waitUntil: "commit" });
    await fallback;
    assert.equal(new URL(page.url()).pathname, "/claveunica/logout");
    assert.equal(await page.textContent("h1"), "Sesión cerrada");
    await page.screenshot({ path: `${ARTIFACTS}/logout-page.png`, fullPage: true });
    await assertAccessible(page, "logout-page");
    assertLoadsNothing("logout-page", fetched);
    await context.close();
  } finally {
    await emulatorMode({ logout: "normal" });
  }

  // The page a framed login gets, inside its frame; the top window's move to the login
  // answered 204, so the frame stays in view.
  const { context, page } = await watchedPage();
  await page.goto(`${BASE}/publico`);
  await page.route(`${BASE}/claveunica/login?**`, (r) => r.fulfill({ status: 204 }));
  const moved = page.waitForRequest((r) => r.url().startsWith(`${BASE}/claveunica/login?`) && r.frame() === page.mainFrame());
  await page.evaluate(() => {
    const frame = document.createElement("iframe");
    frame.src = "/tramites/en-un-marco";
    frame.title = "Trámite";
    frame.style.cssText = "width:40rem;height:36rem";
    document.body.append(frame);
  });
  await moved;
  const framed = page.frames().find((f) => f.url().endsWith("/tramites/en-un-marco"));
  assert.ok(framed, `no frame: ${page.frames().map((f) => f.url())}`);
  assert.equal(await framed.textContent("h1"), "Inicia sesión en una ventana completa");
  await page.locator("iframe").screenshot({ path: `${ARTIFACTS}/frame-page.png` });
  await assertAccessible(framed, "frame-page");
  await context.close();
});

test("a login inside a frame takes the whole window to ClaveÚnica, never the frame", async () => {
  const context = await browser().newContext();
  const page = await context.newPage();
  const authorizeFrames = [];
  page.on("request", (r) => /\/openid\/authorize\//.test(r.url()) && authorizeFrames.push(r.frame() === page.mainFrame()));
  await page.goto(`${BASE}/publico`);
  await page.evaluate(() => {
    const frame = document.createElement("iframe");
    frame.src = "/tramites/en-un-marco?id=3";
    frame.title = "Trámite";
    document.body.append(frame);
  });
  // The whole window goes to ClaveÚnica, with its address in view, and comes back to the
  // page the frame asked for.
  await loginAtClaveUnica(page);
  assert.ok(authorizeFrames.length > 0, "ClaveÚnica's form was never asked for");
  assert.ok(authorizeFrames.every(Boolean), "ClaveÚnica's form was asked for inside the frame");
  const landed = new URL(page.url());
  assert.equal(landed.pathname + landed.search, "/tramites/en-un-marco?id=3");
  assert.ok((await context.cookies()).some((c) => c.name === SESSION_COOKIE));
  await context.close();
});

test("without JavaScript, the button logs in and logout still reaches ClaveÚnica", async () => {
  const context = await browser().newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(`${BASE}/tramites/sin-js`);
  await assertOfficialButton(page, "/claveunica/login?return_to=%2Ftramites%2Fsin-js");
  await claveUnicaButton(page).click();
  await loginAtClaveUnica(page);
  assert.equal(new URL(page.url()).pathname, "/tramites/sin-js");
  // The logout page's script does not run: its link takes the person to ClaveÚnica's logout,
  // which comes back to the page that says the session ended.
  await page.goto(`${BASE}/claveunica/logout`);
  assert.ok(!(await context.cookies()).some((c) => c.name === SESSION_COOKIE), "the session cookie is still there");
  await page.getByRole("link", { name: "Cerrar sesión en ClaveÚnica" }).click();
  await page.waitForURL(`${BASE}/sesion-cerrada`);
  assert.equal(await page.textContent("h1"), "Sesión cerrada");
  await page.screenshot({ path: `${ARTIFACTS}/signed-out.png`, fullPage: true });
  await context.close();
});

test("the accessibility check fails a page that breaks the rules (the control)", async () => {
  const context = await browser().newContext();
  const page = await context.newPage();
  // No lang, no landmark, no h1, grey on grey.
  await page.setContent('<!DOCTYPE html><title>x</title><p style="color:#777;background:#888">poco contraste</p>');
  await assert.rejects(assertAccessible(page, "control"), /color-contrast[\s\S]*html-has-lang|html-has-lang[\s\S]*color-contrast/);
  await context.close();
});
