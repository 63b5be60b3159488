// Drives the esalert console in Debian's chromium (run by tests/console_browser.rs).
// Env: CONSOLE_URL, CONSOLE_TOKEN, SCREENSHOTS.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const base = process.env.CONSOLE_URL;
const token = process.env.CONSOLE_TOKEN;
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });

function check(cond, what) {
  if (!cond) { throw new Error("FAILED: " + what); }
  console.log("ok: " + what);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") { problems.push("console: " + m.text()); } });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("request", (r) => { if (!r.url().startsWith(base)) { problems.push("outside request: " + r.url()); } });
  page.on("dialog", (d) => d.accept());

  // The alerts table shows a firing and a throttled alert.
  await page.goto(base + "/alerts");
  await page.waitForSelector("#alert-fires[data-state=firing]", { timeout: 20000 });
  await page.waitForSelector("#alert-throttled .badge.s-throttled", { timeout: 20000 });
  check(await page.locator("#alert-fires .badge.s-firing").count() === 1, "fires is firing");
  check((await page.locator("#alert-throttled").innerText()).includes("throttled"), "throttled is throttled");
  check(await page.locator("#rejected").innerText().then((t) => t.includes("broken.json:3:")), "rejected file with its position");
  await page.screenshot({ path: shots + "/alerts.png", fullPage: true });

  // A wrong token is refused.
  await page.goto(base + "/login");
  await page.fill("#token", "not-the-token");
  const [refused] = await Promise.all([page.waitForNavigation(), page.click("#login")]);
  check(refused.status() === 401, "wrong token answered 401");
  check((await page.locator("#login-error").innerText()).includes("Wrong token"), "wrong token refused");
  await page.screenshot({ path: shots + "/login-refused.png" });
  // That 401 is the one error chromium was meant to report.
  const expected = problems.findIndex((p) => p.includes("status of 401"));
  if (expected >= 0) { problems.splice(expected, 1); }

  // The right one logs in.
  await page.fill("#token", token);
  await Promise.all([page.waitForNavigation(), page.click("#login")]);
  check(page.url().endsWith("/alerts"), "logged in");
  check((await page.locator("header .who").innerText()) === "browser-test", "the token's name shows");

  // An alert's page: history and chart.
  await page.click("#alert-fires a");
  await page.waitForSelector("#history tr.run");
  check(await page.locator("#history tr.run").count() > 0, "history rows");
  check(await page.locator("#chart circle").count() > 0, "chart points");
  check(await page.locator("#threshold").count() === 1, "threshold line");
  check(await page.locator("#definition pre").innerText().then((t) => t.includes("fires-*")), "definition");
  await page.screenshot({ path: shots + "/alert.png", fullPage: true });

  // Silence it for an hour through the button.
  await Promise.all([page.waitForNavigation(), page.click("#silence-1h")]);
  const result = await page.locator("#result").innerText();
  check(result.includes("fires is silenced until"), "silenced: " + result);
  await page.screenshot({ path: shots + "/silenced.png" });

  // The alerts page shows the silence (after a refresh by the page's own script).
  await page.goto(base + "/alerts?state=silenced");
  await page.waitForSelector("#alert-fires .silence", { timeout: 15000 });
  await page.screenshot({ path: shots + "/alerts-silenced.png", fullPage: true });

  check(problems.length === 0, "no errors, no CSP violations, nothing from outside: " + problems.join("; "));
} finally {
  await browser.close();
}
