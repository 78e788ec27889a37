// The demo in `parallel` migration (run.sh starts it with DEMO_MIGRATION=parallel): the pattern
// an agency copies while people move. The old login stays, offered as a plain secondary link,
// never as a second button; a person who uses it reaches the application without ClaveÚnica
// and without identity headers; the same person can then log in with ClaveÚnica. Screenshots:
// parallel-home.png, parallel-button-page.png.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ARTIFACTS, BASE, SESSION_COOKIE, assertAccessible, claveUnicaButton, loginAtClaveUnica, useBrowser } from "./support.mjs";

const browser = useBrowser();
const LEGACY_LINK = { name: "Ingresa con la clave del servicio", exact: true };
const CLAVEUNICA_BLUE = "rgb(15, 105, 196)";

/** The page offers exactly one ClaveÚnica button and the old login as a link that does not look like it. */
async function assertButtonThenLegacyLink(page, name) {
  const button = claveUnicaButton(page);
  assert.equal(await button.count(), 1, `${name}: one ClaveÚnica button`);
  assert.equal(await button.evaluate((b) => getComputedStyle(b).backgroundColor), CLAVEUNICA_BLUE);
  const legacy = page.getByRole("link", LEGACY_LINK);
  assert.equal(await legacy.count(), 1, `${name}: the old login's link`);
  assert.equal(await legacy.getAttribute("href"), "/login");
  assert.notEqual(await legacy.evaluate((a) => getComputedStyle(a).backgroundColor), CLAVEUNICA_BLUE, `${name}: the old login looks like the button`);
  // The button comes first, the old login after it.
  const order = await page.evaluate(() => {
    const links = [...document.querySelectorAll("a")];
    return [
      links.findIndex((a) => a.getAttribute("aria-label") === "Iniciar sesión con ClaveÚnica"),
      links.findIndex((a) => a.getAttribute("href") === "/login"),
    ];
  });
  assert.ok(order[0] >= 0 && order[0] < order[1], `${name}: links in order ${order}`);
}

test("the old login is a secondary link; it reaches the app without identity; ClaveÚnica then logs the same browser in", async () => {
  const context = await browser().newContext();
  const page = await context.newPage();

  await page.goto(`${BASE}/`);
  await assertButtonThenLegacyLink(page, "home");
  await page.screenshot({ path: `${ARTIFACTS}/parallel-home.png`, fullPage: true });

  // The old login, as a person who has not moved yet uses it.
  await page.getByRole("link", LEGACY_LINK).click();
  await page.waitForURL(`${BASE}/login`);
  await page.fill("input[name=run]", "11.111.111-1");
  await page.fill("input[name=clave]", "clave-antigua");
  await Promise.all([page.waitForURL(`${BASE}/`), page.click("button[type=submit]")]);
  assert.match(await page.textContent("body"), /Sesión del login antiguo activa/);

  // A page behind the gate: in parallel it passes without ClaveÚnica, and with no identity.
  const echo = await page.goto(`${BASE}/tramites/solicitudes?format=json`);
  assert.equal(echo.status(), 200);
  const seen = await echo.json();
  const names = seen.headers.map(([name]) => name.toLowerCase());
  assert.ok(!names.some((n) => n.startsWith("x-claveunica-")), `identity reached the app: ${names}`);
  assert.match(JSON.stringify(seen.headers), /PHPSESSID=/);
  assert.ok(!(await context.cookies()).some((c) => c.name === SESSION_COOKIE), "a ClaveÚnica session without a ClaveÚnica login");

  // The same browser moves to ClaveÚnica: the gate's page with the button, the old login
  // still a secondary link on it.
  await page.goto(`${BASE}/claveunica/login`);
  await assertButtonThenLegacyLink(page, "button page");
  await page.screenshot({ path: `${ARTIFACTS}/parallel-button-page.png`, fullPage: true });
  await assertAccessible(page, "parallel-button-page");
  await claveUnicaButton(page).click();
  await loginAtClaveUnica(page);
  const after = await page.goto(`${BASE}/tramites/solicitudes?format=json`);
  const identified = await after.json();
  const run = identified.headers.find(([name]) => name.toLowerCase() === "x-claveunica-run");
  assert.deepEqual(run?.[1], "44444444-4", JSON.stringify(identified.headers));
  await context.close();
});
