// Loads one candor report in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) and checks from the DOM what a reader needs (issue 14):
//  - every chart (svg.chart) has axis titles and tick labels; no other kind of svg but colour
//    legends (svg.legend) and series legends (svg.series-legend);
//  - whatever encodes a value by colour ([data-colour=value]) sits in a .fig holding a colour
//    legend with at least two numeric ticks;
//  - the summary is there; the expected class names appear and no "#0"-style placeholder does;
//  - every visible text has WCAG AA contrast (4.5:1, 3:1 for large text) against its effective
//    background, from the computed styles (SVG text over a coloured shape names that colour in
//    data-bg);
//  - no value is readable only on hover: every number in a tooltip (a title attribute or an SVG
//    <title>) is also printed in the page's text;
//  - the page does not overflow sideways and loads nothing from the network.
// Saves a full-page screenshot. Prints one JSON object: {file, screenshot, problems, stats}.
//
// usage: node check_page.js PAGE.html SCREENSHOT.png [EXPECTED_TEXT ...]
'use strict';
const path = require('path');
const fs = require('fs');

const cache = process.env.CANDOR_NPM_CACHE || path.join(process.env.HOME || '', '.cache/candor/npm');
const { chromium } = require(path.join(cache, 'node_modules', 'playwright-core'));

async function main() {
  const [page_path, shot, ...expected] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CANDOR_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--font-render-hinting=none'],
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const external = [];
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith('file:') && !u.startsWith('data:') && !u.startsWith('about:')) external.push(u);
    });
    await page.goto('file://' + path.resolve(page_path), { waitUntil: 'load', timeout: 60000 });
    const result = await page.evaluate((expected) => {
      const problems = [];
      const stats = { charts: 0, legends: 0, coloured: 0, texts: 0, min_contrast: 99 };
      const snippet = (el) => (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 60);
      const isNumber = (t) => /^[+\u2212-]?\d*\.?\d+(e[+-]?\d+)?%?$/i.test(t.trim());
      // charts
      for (const svg of document.querySelectorAll('svg')) {
        const cls = svg.classList;
        if (cls.contains('legend')) {
          stats.legends++;
          continue;
        }
        if (cls.contains('series-legend')) continue;
        if (!cls.contains('chart')) {
          problems.push('an svg that is neither a chart nor a legend: ' + svg.outerHTML.slice(0, 80));
          continue;
        }
        stats.charts++;
        const titles = [...svg.querySelectorAll('text.axis-title')].filter((t) => t.textContent.trim());
        const label = svg.getAttribute('aria-label') || snippet(svg);
        if (titles.length < 2) problems.push('chart "' + label + '" has ' + titles.length + ' axis titles');
        if (svg.querySelectorAll('text.tick').length < 2) problems.push('chart "' + label + '" has no tick labels');
      }
      // colour legends
      for (const el of document.querySelectorAll('[data-colour=value]')) {
        stats.coloured++;
        const fig = el.closest('.fig');
        const legends = fig ? [...fig.querySelectorAll('svg.legend')] : [];
        const ok = legends.some((l) =>
          [...l.querySelectorAll('text.tick')].filter((t) => isNumber(t.textContent.replace('\u2212', '-'))).length >= 2);
        if (!ok) problems.push('colour encodes a value without a legend with numbers: ' + el.tagName + ' ' + snippet(el));
      }
      // summary, class names, placeholders
      const summary = document.querySelector('section.summary');
      if (!summary || summary.textContent.trim().length < 40) problems.push('no summary at the top');
      const body = document.body.innerText;
      for (const e of expected) if (!body.includes(e)) problems.push('expected text missing: ' + e);
      const ph = body.match(/(^|[\s(])#\d+\b/m);
      if (ph) problems.push('a placeholder class or column name: "' + ph[0].trim() + '"');
      // contrast
      const parse = (c) => {
        const m = c && c.match(/rgba?\(([^)]+)\)/);
        if (!m) return null;
        const p = m[1].split(/[ ,/]+/).filter((x) => x).map(Number);
        return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
      };
      const hex = (h) => ({ r: parseInt(h.slice(1, 3), 16), g: parseInt(h.slice(3, 5), 16), b: parseInt(h.slice(5, 7), 16), a: 1 });
      const over = (top, under) => ({
        r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
        b: top.b * top.a + under.b * (1 - top.a), a: 1,
      });
      const lum = (c) => {
        const f = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
        return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
      };
      const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
      const background = (el) => {
        const layers = [];
        for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
          if (e.dataset && e.dataset.bg) { layers.push(hex(e.dataset.bg)); break; }
          if (e instanceof SVGElement && !(e instanceof SVGSVGElement)) continue;
          const c = parse(getComputedStyle(e).backgroundColor);
          if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
        }
        let bg = { r: 255, g: 255, b: 255, a: 1 };
        for (let i = layers.length - 1; i >= 0; --i) bg = over(layers[i], bg);
        return bg;
      };
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      const seen = new Set();
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (!n.textContent.trim()) continue;
        const el = n.parentElement;
        if (!el || seen.has(el)) continue;
        seen.add(el);
        if (el.closest('title,style,script')) continue;
        if (!el.getClientRects().length) continue;  // not rendered (a closed <details>)
        const cs = getComputedStyle(el);
        if (cs.visibility !== 'visible' || Number(cs.opacity) === 0) continue;
        const isSvg = el instanceof SVGElement;
        let fg = parse(isSvg ? cs.fill : cs.color);
        if (!fg) continue;
        const bg = background(el);
        fg = over(fg, bg);
        const r = ratio(fg, bg);
        const size = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
        const large = size >= 24 || (bold && size >= 18.66);
        stats.texts++;
        stats.min_contrast = Math.min(stats.min_contrast, r);
        if (r < (large ? 3 : 4.5))
          problems.push('contrast ' + r.toFixed(2) + ':1 for "' + snippet(el) + '" (' + (isSvg ? cs.fill : cs.color) +
                        ' on rgb(' + [bg.r, bg.g, bg.b].map(Math.round).join(',') + '))');
      }
      // no value only on hover: the numbers of every tooltip are printed somewhere on the page
      const numbersOf = (t) => (t.replace(/\u2212/g, '-').match(/[-+]?\d*\.?\d+(?:e[-+]?\d+)?/gi) || [])
        .map((x) => x.replace(/^\+/, ''));
      const printed = new Set();
      const pw = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let n = pw.nextNode(); n; n = pw.nextNode()) {
        const el = n.parentElement;
        if (!el || el.closest('title,style,script')) continue;
        for (const x of numbersOf(n.textContent)) printed.add(x);
      }
      const tips = [];
      for (const el of document.querySelectorAll('[title]')) tips.push([el, el.getAttribute('title')]);
      for (const t of document.querySelectorAll('svg title')) tips.push([t.parentElement, t.textContent]);
      stats.tooltips = tips.length;
      let hoverOnly = 0;
      for (const [el, tip] of tips) {
        const missing = numbersOf(tip).filter((x) => !printed.has(x));
        if (missing.length && hoverOnly++ < 5)
          problems.push('a value readable only on hover: "' + tip.slice(0, 60) + '" (' + missing.join(', ') + ' not printed)');
      }
      if (hoverOnly > 5) problems.push((hoverOnly - 5) + ' more tooltips with values readable only on hover');
      // fits the page sideways
      const doc = document.documentElement;
      if (doc.scrollWidth > doc.clientWidth + 1)
        problems.push('the page is ' + doc.scrollWidth + ' px wide in a ' + doc.clientWidth + ' px window');
      return { problems, stats };
    }, expected);
    problems.push(...result.problems);
    for (const u of external) problems.push('loads from the network: ' + u);
    fs.mkdirSync(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ file: page_path, screenshot: shot, problems, stats: result.stats }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e && e.stack || e) }));
  process.exit(2);
});
