// Drives the delayd console in headless Chromium (Debian's, via
// playwright-core). Started by tests/console.rs against the real binary:
//   DELAYD_HTTP   base URL of the HTTP listener (http://127.0.0.1:PORT)
//   DELAYD_PASSWORD  the requirepass password, if one is set
//   SHOTS_DIR     where to write the screenshots
//   QUEUE, DLQ, MEMBER  the queue a redis-cli producer filled, its
//                 dead-letter queue and the dead-lettered member
// Exits 0 once the member was requeued by a click (the Rust test then
// checks with redis-cli that it is back in QUEUE); non-zero on any failure.
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.env.DELAYD_HTTP;
const password = process.env.DELAYD_PASSWORD || "";
const shots = process.env.SHOTS_DIR || "shots";
const { QUEUE, DLQ, MEMBER } = process.env;
mkdirSync(shots, { recursive: true });

// Each run gets a fresh, empty profile (Playwright passes it to Chromium
// as --user-data-dir) and is removed after.
const profiles = [];
const contexts = [];
async function launch(viewport) {
  const profile = mkdtempSync(join(tmpdir(), "delayd-chromium-"));
  profiles.push(profile);
  return chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport,
    timeout: 60_000,
  });
}

const step = (s) => console.log("step:", s);
const errors = [];

async function login(page) {
  const form = page.locator("#login-form");
  await form.waitFor({ state: "visible", timeout: 10_000 });
  // A wrong password first: refused, the form stays.
  await page.fill("#login-form [name=password]", "wrong-" + password);
  await page.click("#login-form button[type=submit]");
  await page.locator("#login-error").filter({ hasText: /invalid/ }).waitFor({ timeout: 10_000 });
  await page.fill("#login-form [name=password]", password);
  await page.click("#login-form button[type=submit]");
  await form.waitFor({ state: "hidden", timeout: 10_000 });
}

async function run(viewport, tag, actions) {
  const context = await launch(viewport);
  contexts.push(context);
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => errors.push(`${tag}: ${e.message}`));
  // Any failed load but the 401 of the wrong password the test types.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 401/.test(m.text())) errors.push(`${tag}: console: ${m.text()}`);
  });
  page.on("dialog", (d) => d.accept());
  page.setDefaultTimeout(15_000);
  await page.goto(base + "/");
  if (password) {
    step(`${tag}: log in`);
    await page.screenshot({ path: join(shots, `login-${tag}.png`) });
    await login(page);
  }
  // Overview: the producer's queues are counted, charts drawn.
  step(`${tag}: overview`);
  await page.locator(".stat", { hasText: "Queues" }).locator(".value").filter({ hasText: new RegExp(`^${process.env.QUEUES || 2}$`) }).waitFor();
  await page.locator("svg.chart path").first().waitFor({ state: "attached" });
  await page.waitForTimeout(3500); // a few live refreshes, for the rate chart
  await page.screenshot({ path: join(shots, `overview-${tag}.png`), fullPage: true });
  // Queues: the producer's queue is listed.
  step(`${tag}: queues`);
  await page.click("header nav a[data-nav=queues]");
  await page.locator("#queues-table a", { hasText: QUEUE }).first().waitFor();
  await page.screenshot({ path: join(shots, `queues-${tag}.png`), fullPage: true });
  // Filter by glob: only the dead-letter queue is left.
  await page.fill("#queue-filter", DLQ);
  await page.press("#queue-filter", "Enter");
  await page.locator("#queues-table tbody tr").filter({ hasText: QUEUE }).filter({ hasNotText: DLQ }).waitFor({ state: "detached" });
  await page.click(`#queues-table a:text-is("${DLQ}")`);
  step(`${tag}: queue ${DLQ}`);
  await page.locator("#members-table td", { hasText: MEMBER }).first().waitFor();
  await page.screenshot({ path: join(shots, `queue-${tag}.png`), fullPage: true });
  await actions(page);
  await context.close();
}


try {
  // Phone width: the same pages, readable.
  await run({ width: 390, height: 844 }, "390x844", async (page) => {
    await page.goto(`${base}/#/find/${encodeURIComponent(DLQ)}/${encodeURIComponent(MEMBER)}`);
    await page.locator("dl.kv").waitFor();
    await page.screenshot({ path: join(shots, `find-390x844.png`), fullPage: true });
  });
  // Desktop: look, then requeue the dead-lettered member with a click.
  await run({ width: 1280, height: 800 }, "1280x800", async (page) => {
    step("requeue by a click");
    await page.fill("#requeue-to", QUEUE);
    const row = page.locator("#members-table tbody tr", { hasText: MEMBER });
    await row.locator("button.requeue").click();
    await page.locator("#toast", { hasText: "requeued 1" }).waitFor();
    await row.waitFor({ state: "detached" });
    step("find the message");
    await page.goto(`${base}/#/find/${encodeURIComponent(QUEUE)}/${encodeURIComponent(MEMBER)}`);
    await page.locator("dl.kv dd", { hasText: /^ready$|^scheduled$/ }).first().waitFor();
    await page.locator("table td", { hasText: "dead-lettered" }).first().waitFor().catch(() => {});
    await page.screenshot({ path: join(shots, `find-1280x800.png`), fullPage: true });
  });
  if (errors.length) throw new Error("page errors:\n" + errors.join("\n"));
  console.log("ok");
} catch (e) {
  console.error("FAILED:", e && e.stack ? e.stack : e);
  process.exitCode = 1;
} finally {
  for (const c of contexts) await c.close().catch(() => {});
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
}
