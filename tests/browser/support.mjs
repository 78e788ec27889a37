// What the browser test files share: where the demo stack is, one headless Chromium for the
// file, the steps of a login as a person takes them, the emulator's test modes, and the
// accessibility check every page of the gate's must pass.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

export const BASE = process.env.BASE ?? "http://localhost:8000";
export const ARTIFACTS = process.env.ARTIFACTS ?? "../../target/browser-artifacts";
export const SESSION_COOKIE = "claveunica_session";
export const PROVIDER = `http://127.0.0.1:${process.env.PROVIDER_PORT ?? 8900}`;

let browser;

/** Starts Chromium before the file's tests and closes it after; returns a getter. */
export function useBrowser() {
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
  return () => browser;
}

/** Types a sandbox RUN and password into the emulator's form and submits it. */
export async function loginAtClaveUnica(page, run = "44.444.444-4", password = "testing") {
  await page.waitForURL(/\/openid\/authorize\//);
  assert.match(await page.title(), /ClaveÚnica/);
  await page.fill("#run", run);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL((u) => u.origin === new URL(BASE).origin), page.click("button[name=login]")]);
}

/** The ClaveÚnica button on the page, found as a screen reader finds it: by its name. */
export function claveUnicaButton(page) {
  return page.getByRole("link", { name: "Iniciar sesión con ClaveÚnica", exact: true });
}

/** On a page that shows the ClaveÚnica button: follows it and logs in at ClaveÚnica. */
export async function loginWithButton(page, run) {
  await claveUnicaButton(page).click();
  await loginAtClaveUnica(page, run);
}

/** Switches the emulator's test modes (`POST /__emulator/mode`, examples/emulator/src/modes.rs). */
export async function emulatorMode(modes) {
  const r = await fetch(`${PROVIDER}/__emulator/mode`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(modes),
  });
  assert.equal(r.status, 200, await r.text());
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * Runs axe-core (WCAG 2.x A and AA, and axe's best practices: landmarks, one h1, regions) on
 * a page or frame as the browser rendered it, and fails on any violation, naming each rule and
 * element. Returns the number of rules that passed, so a caller can tell a check that ran.
 */
export async function assertAccessible(target, name) {
  await target.addScriptTag({ content: axeSource });
  const results = await target.evaluate(() =>
    window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] }),
  );
  const found = results.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.map((n) => n.target.join(" ")).join("\n    ")}`,
  );
  assert.deepEqual(found, [], `${name}: axe-core found violations:\n${found.join("\n")}`);
  assert.ok(results.passes.length > 10, `${name}: axe-core ran only ${results.passes.length} rules`);
  return results.passes.length;
}
