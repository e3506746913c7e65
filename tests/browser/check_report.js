#!/usr/bin/env node
// Opens a flowaudit HTML report in headless Chromium (Debian's, driven by
// puppeteer-core) and checks what a reader would meet: no console error, no
// network request, the expected steps and findings in the DOM, a click on a
// finding that highlights its statements, and the summary and findings read
// the same with JavaScript off. Writes a screenshot; prints how
// long the page took to load (the navigation's loadEventEnd, in ms).
//
//   node tests/browser/check_report.js REPORT.html --screenshot OUT.png \
//     [--step NAME]... [--rule RULE]... [--click RULE:MIN] [--keys] \
//     [--expect SELECTOR:MIN]... [--clip SELECTOR | --top PX] [--width PX] \
//     [--max-load-ms MS] [--runs N]
//
// --click RULE:MIN   click the first finding of RULE; at least MIN elements
//                    must be highlighted (statements, bands, ER tables)
// --keys             `j` must focus a finding, Escape clear the selection
// --expect SEL:MIN   at least MIN elements match the CSS selector SEL
// --clip SELECTOR    screenshot the first element SELECTOR matches (else the
//                    whole page)
// --top PX          screenshot the top PX pixels of the page
// --runs N           load the page N times; the median load time is the one
//                    printed and compared with --max-load-ms
//
// puppeteer-core is found through NODE_PATH (CI installs it in .ci/node);
// CHROMIUM names the browser (default /usr/bin/chromium). Exit 1 on a failed
// check, 2 on a usage error.
"use strict";
const path = require("path");
const { pathToFileURL } = require("url");

function usage(message) {
  console.error(`check_report: ${message}`);
  process.exit(2);
}

const args = process.argv.slice(2);
const opts = { steps: [], rules: [], clicks: [], expects: [], keys: false, width: 1200, runs: 1 };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const value = () => {
    if (i + 1 >= args.length) usage(`${a} needs a value`);
    return args[++i];
  };
  switch (a) {
    case "--screenshot": opts.screenshot = value(); break;
    case "--step": opts.steps.push(value()); break;
    case "--rule": opts.rules.push(value()); break;
    case "--click": {
      const [rule, min] = value().split(":");
      opts.clicks.push({ rule, min: Number(min || 1) });
      break;
    }
    case "--keys": opts.keys = true; break;
    case "--expect": {
      const v = value();
      const at = v.lastIndexOf(":");
      opts.expects.push(at > 0 ? { selector: v.slice(0, at), min: Number(v.slice(at + 1)) } : { selector: v, min: 1 });
      break;
    }
    case "--clip": opts.clip = value(); break;
    case "--top": opts.top = Number(value()); break;
    case "--width": opts.width = Number(value()); break;
    case "--max-load-ms": opts.maxLoad = Number(value()); break;
    case "--runs": opts.runs = Number(value()); break;
    default:
      if (a.startsWith("--") || opts.report) usage(`unknown argument ${a}`);
      opts.report = a;
  }
}
if (!opts.report) usage("name the report to open");

let puppeteer;
try {
  puppeteer = require("puppeteer-core");
} catch (e) {
  usage("puppeteer-core not found: install it (npm install --prefix .ci/node puppeteer-core) and set NODE_PATH=.ci/node/node_modules");
}

const failures = [];
const fail = (message) => failures.push(message);

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const url = pathToFileURL(path.resolve(opts.report)).href;
  const name = path.basename(opts.report);
  const loads = [];
  let page;
  try {
    for (let run = 0; run < opts.runs; run++) {
      if (page) await page.close();
      page = await browser.newPage();
      await page.setViewport({ width: opts.width, height: 900 });
      const errors = [];
      const requests = [];
      page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.setRequestInterception(true);
      page.on("request", (r) => {
        if (r.url() === url) r.continue();
        else { requests.push(r.url()); r.abort(); }
      });
      await page.goto(url, { waitUntil: "load", timeout: 120000 });
      const load = await page.evaluate(() => {
        const nav = performance.getEntriesByType("navigation")[0];
        return nav ? nav.loadEventEnd : performance.now();
      });
      loads.push(load);
      if (run === 0) {
        for (const e of errors) fail(`console error: ${e}`);
        for (const r of requests) fail(`network request: ${r}`);
      }
    }
    loads.sort((a, b) => a - b);
    const median = loads[Math.floor(loads.length / 2)];
    const size = require("fs").statSync(opts.report).size;
    console.log(`${name}: ${(size / 1024).toFixed(0)} KiB, loaded in ${median.toFixed(0)} ms (median of ${loads.length})`);
    if (opts.maxLoad && median > opts.maxLoad) fail(`loaded in ${median.toFixed(0)} ms, more than ${opts.maxLoad} ms`);

    const dom = await page.evaluate(() => ({
      steps: Array.from(document.querySelectorAll("section.step h3")).map((h) => h.textContent.replace(/\s+/g, " ").trim()),
      rules: Array.from(document.querySelectorAll("li.finding h4 code")).map((c) => c.textContent),
      title: document.title,
    }));
    for (const s of opts.steps) {
      if (!dom.steps.some((t) => t === s || t.endsWith(`› ${s}`))) fail(`step ${s} not in the page (steps: ${dom.steps.join(", ") || "none"})`);
    }
    for (const r of opts.rules) {
      if (!dom.rules.includes(r)) fail(`no finding of ${r} in the page (findings: ${dom.rules.join(", ") || "none"})`);
    }
    for (const { selector, min } of opts.expects) {
      const n = await page.evaluate((sel) => document.querySelectorAll(sel).length, selector);
      if (n < min) fail(`${n} elements match ${selector}, fewer than ${min}`);
    }
    for (const { rule, min } of opts.clicks) {
      const result = await page.evaluate(async (rule) => {
        const item = Array.from(document.querySelectorAll("li.finding")).find((li) => {
          const code = li.querySelector("h4 code");
          return code && code.textContent === rule && li.querySelector("button.show");
        });
        if (!item) return { missing: true };
        item.querySelector("button.show").click();
        return {
          highlighted: document.querySelectorAll(".hl").length,
          sources: document.querySelectorAll(".src").length,
          pressed: item.querySelector("button.show").getAttribute("aria-pressed"),
          id: item.id,
        };
      }, rule);
      if (result.missing) { fail(`no finding of ${rule} with a button to click`); continue; }
      console.log(`${name}: a click on ${rule} (${result.id}) highlights ${result.highlighted} elements and ${result.sources} source statements`);
      if (result.highlighted < min) fail(`a click on ${rule} highlighted ${result.highlighted} elements, fewer than ${min}`);
      if (result.pressed !== "true") fail(`the button of ${rule} is not pressed after the click`);
    }
    if (opts.keys) {
      await page.evaluate(() => document.activeElement && document.activeElement.blur());
      await page.keyboard.press("j");
      const focused = await page.evaluate(() => {
        const a = document.activeElement;
        return a && a.closest ? Boolean(a.closest("li.finding")) : false;
      });
      if (!focused) fail("j did not move the focus to a finding");
      await page.keyboard.press("Escape");
      const left = await page.evaluate(() => document.querySelectorAll(".hl").length);
      if (left !== 0) fail(`Escape left ${left} elements highlighted`);
      // Leave the clicked finding highlighted for the screenshot.
      if (opts.clicks.length) {
        await page.evaluate((rule) => {
          const item = Array.from(document.querySelectorAll("li.finding")).find((li) => {
            const code = li.querySelector("h4 code");
            return code && code.textContent === rule && li.querySelector("button.show");
          });
          if (item) item.querySelector("button.show").click();
        }, opts.clicks[0].rule);
      }
    }
    // Without the script the summary and every finding are still there.
    const bare = await browser.newPage();
    await bare.setJavaScriptEnabled(false);
    await bare.goto(url, { waitUntil: "load", timeout: 120000 });
    const without = await bare.evaluate(() => ({
      summary: Boolean(document.querySelector("#summary dl")),
      findings: document.querySelectorAll("li.finding").length,
      text: Array.from(document.querySelectorAll("li.finding .message")).every((p) => p.textContent.trim().length > 0),
    }));
    await bare.close();
    const withScript = await page.evaluate(() => document.querySelectorAll("li.finding").length);
    if (!without.summary) fail("without JavaScript the summary is missing");
    if (without.findings !== withScript || !without.text) {
      fail(`without JavaScript ${without.findings} findings are readable, with it ${withScript}`);
    }
    if (opts.screenshot) {
      // The status line sits over the page's bottom: not part of the picture.
      await page.evaluate(() => {
        window.scrollTo(0, 0);
        const detail = document.getElementById("detail");
        if (detail) detail.style.display = "none";
      });
      let clip;
      if (opts.clip) {
        clip = await page.evaluate((selector) => {
          const el = document.querySelector(selector);
          if (!el) return null;
          const r = el.getBoundingClientRect();
          const pad = 12;
          return {
            x: Math.max(0, r.left - pad), y: Math.max(0, r.top + window.scrollY - pad),
            width: Math.ceil(r.width + 2 * pad), height: Math.ceil(r.height + 2 * pad),
          };
        }, opts.clip);
        if (!clip) fail(`--clip ${opts.clip}: nothing matches`);
      }
      if (!clip && opts.top) clip = { x: 0, y: 0, width: opts.width, height: opts.top };
      await page.screenshot(clip ? { path: opts.screenshot, clip } : { path: opts.screenshot, fullPage: true });
      console.log(`${name}: screenshot ${opts.screenshot}`);
    }
  } finally {
    await browser.close();
  }
  if (failures.length) {
    for (const f of failures) console.error(`${name}: FAIL ${f}`);
    process.exit(1);
  }
  console.log(`${name}: ok`);
})().catch((e) => {
  console.error(`check_report: ${e.stack || e}`);
  process.exit(1);
});
