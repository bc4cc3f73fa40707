"""Checks the web UI's pages in a real browser: run by tests/server_ui.rs.

Usage: python browser_check.py PLAN.json

The plan (written by the Rust test) names the server, the browser, axe-core's
`axe.min.js`, the screenshot directory and the pages, each with the texts its
rendered DOM must contain. A page may be seen signed in (`sign_in`: the
sign-in page's URL and a token, entered in the form as a person would) and
may be reached by `steps` from its URL: fields filled or chosen (by CSS
selector) and buttons clicked (by accessible name), so that the page checked
is the answer to the last click, a form's POST (an action's confirmation
page, or its refusal). For every page this script, driving the system
Chromium through Playwright:

1. parses the HTML the server sent with html5lib (a conforming HTML5 parser)
   and reports every parse error and every duplicate id;
2. checks the DOM the browser built: the wanted texts are there, no payload
   became markup, and no <script> exists;
3. runs axe-core (the real engine) in the page and reports every violation,
   failing on those of impact "serious" or "critical";
4. presses Tab through the page: focus must reach every link and control in
   document order, each with a visible focus style, inside the viewport;
5. at a laptop viewport and a narrow one, the page must not scroll
   sideways: anything wider than the screen sits in a scroll container;
6. the text of each lineage node fits inside its box, as the browser
   measures it;
7. saves a full-page screenshot at each viewport.

axe runs at both viewports: a table that scrolls on a narrow screen must be
reachable by keyboard there.

axe is injected with `page.evaluate(source)`: Playwright evaluates it through
the DevTools protocol, which a page's Content-Security-Policy does not
govern, so the page is checked with its real CSP on (`bypass_csp` stays
off; a `<script>` tag would be refused, and turning the CSP off could hide a
stylesheet the real policy blocks).

Prints every finding readably and exits 1 if any page failed.
"""

import json
import sys

import html5lib
from playwright.sync_api import sync_playwright

LAPTOP = {"width": 1366, "height": 768}
NARROW = {"width": 390, "height": 844}
# Raw markup the payloads would form if a page failed to escape them.
PAYLOAD_MARKUP = ["<script", "<img", "onerror=alert(1)>"]
FAILING_IMPACTS = {"serious", "critical"}

FOCUSABLE_JS = """() => {
  const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]';
  const all = Array.from(document.querySelectorAll(sel)).filter(el =>
    !el.disabled && el.getAttribute('tabindex') !== '-1' && el.getClientRects().length > 0);
  all.forEach((el, i) => el.setAttribute('data-kb', String(i)));
  return all.map(el => describe(el));
  function describe(el) {
    const text = (el.textContent || el.getAttribute('aria-label') || el.getAttribute('name') || '').trim();
    return el.tagName.toLowerCase() + ' "' + text.slice(0, 40) + '"';
  }
}"""

ACTIVE_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const cs = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  const outline = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0;
  const shadow = cs.boxShadow && cs.boxShadow !== 'none';
  return {
    kb: el.getAttribute('data-kb'),
    parts: el.tagName === 'INPUT' && ['date', 'time', 'datetime-local', 'month', 'week'].includes(el.type),
    tag: el.tagName.toLowerCase(),
    text: (el.textContent || '').trim().slice(0, 40),
    visible_focus: outline || shadow,
    in_view: r.width > 0 && r.height > 0 && r.left >= -1 && r.top >= -1 &&
             r.right <= innerWidth + 1 && r.bottom <= innerHeight + 1,
  };
}"""

OVERFLOW_JS = """() => {
  const doc = document.documentElement;
  if (doc.scrollWidth <= doc.clientWidth) return [];
  const scrolls = el => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll' || o === 'hidden') return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.right > doc.clientWidth + 1 && !scrolls(el)) {
      out.push(el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined
        ? '.' + String(el.className).split(' ').join('.') : '') + ' right=' + Math.round(r.right));
    }
  }
  return [`page ${doc.scrollWidth}px wide in a ${doc.clientWidth}px viewport`].concat(out.slice(0, 12));
}"""


NODE_TEXT_JS = """() => {
  const out = [];
  for (const g of document.querySelectorAll('svg g.node')) {
    const box = g.querySelector('rect').getBBox();
    for (const t of g.querySelectorAll('text')) {
      const x = t.x.baseVal.length ? t.x.baseVal[0].value : 0;
      const right = x + t.getComputedTextLength();
      if (right > box.x + box.width) {
        out.push(`"${t.textContent}" ends at ${right.toFixed(1)}, its box at ${box.x + box.width}`);
      }
    }
  }
  return out;
}"""


def html_errors(raw):
    """html5lib's parse errors and the duplicate ids of `raw`."""
    parser = html5lib.HTMLParser(tree=html5lib.getTreeBuilder("etree"), strict=False)
    tree = parser.parse(raw)
    out = []
    lines = raw.splitlines()
    for (line, col), code, data in parser.errors:
        near = lines[line - 1][max(0, col - 60) : col + 20] if 0 < line <= len(lines) else ""
        out.append(f"HTML parse error {code} {data or ''} at {line}:{col}: …{near}…")
    seen = {}
    for el in tree.iter():
        i = el.get("id")
        if i is not None:
            seen[i] = seen.get(i, 0) + 1
    out += [f"duplicate id {i!r} ({n} times)" for i, n in sorted(seen.items()) if n > 1]
    return out


def axe_findings(page, axe_source):
    """(failures, notes): axe's violations, serious and critical ones first."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    result = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    failures, notes = [], []
    for v in result["violations"]:
        lines = [f"axe {v['impact']}: {v['id']}: {v['help']} ({v['helpUrl']})"]
        for node in v["nodes"][:8]:
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    at {' '.join(map(str, node['target']))}: {summary}")
            lines.append(f"       {node['html'][:160]}")
        if len(v["nodes"]) > 8:
            lines.append(f"    … and {len(v['nodes']) - 8} more")
        (failures if v["impact"] in FAILING_IMPACTS else notes).append("\n".join(lines))
    return failures, notes


def keyboard(page):
    """Tab through the page; every focusable element in order, focus visible.

    A page that focuses a field on load (`autofocus`) starts there; a date or
    time field takes one Tab per part (day, month, …) before focus leaves it.
    """
    expected = page.evaluate(FOCUSABLE_JS)
    problems = []
    start = page.evaluate(ACTIVE_JS)
    first = int(start["kb"]) + 1 if start and start["kb"] is not None else 0
    previous = start["kb"] if start else None
    for i in range(first, len(expected)):
        for _ in range(8):
            page.keyboard.press("Tab")
            got = page.evaluate(ACTIVE_JS)
            if not (got and got["kb"] == previous and got["parts"]):
                break
        if got is None or got["kb"] != str(i):
            where = "nothing" if got is None else f"{got['tag']} \"{got['text']}\" (#{got['kb']})"
            problems.append(f"Tab {i + 1}: focus went to {where}, expected {expected[i]}")
            break
        previous = got["kb"]
        if not got["visible_focus"]:
            problems.append(f"Tab {i + 1}: {expected[i]} has no visible focus style")
        if not got["in_view"]:
            problems.append(f"Tab {i + 1}: {expected[i]} is focused outside the viewport")
    return problems, len(expected)


def sign_in(page, how):
    """Signs in through the sign-in form, as a person would."""
    page.goto(how["url"])
    page.get_by_label("Access token").fill(how["token"])
    with page.expect_navigation():
        page.keyboard.press("Enter")


def follow(page, path, steps):
    """Loads `path` and takes `steps`: the response of the last navigation."""
    response = page.goto(path, wait_until="load")
    for step in steps:
        if "fill" in step:
            page.locator(step["fill"]).fill(step["value"])
        elif "select" in step:
            page.locator(step["select"]).select_option(step["value"])
        else:
            with page.expect_navigation(wait_until="load") as nav:
                page.get_by_role("button", name=step["click"], exact=True).click()
            response = nav.value
    return response


def check_page(browser, plan, spec):
    shots = plan["shots"]
    name, path = spec["name"], spec["url"]
    steps = spec.get("steps", [])
    failures, notes = [], []
    context = browser.new_context(viewport=LAPTOP, bypass_csp=False)
    page = context.new_page()
    if "sign_in" in spec:
        sign_in(page, spec["sign_in"])
    console = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    response = follow(page, path, steps)
    status = response.status if response else None
    if status != spec["status"]:
        how = f"after {' → '.join(s['click'] for s in steps if 'click' in s)} " if steps else ""
        return [f"{how}GET {path}: {status}, expected {spec['status']}"], notes
    failures += html_errors(response.text())

    dom = page.content()
    for w in spec["wanted"]:
        if w not in dom:
            failures.append(f"the DOM lacks {w!r}")
    for raw in PAYLOAD_MARKUP:
        if raw in dom:
            failures.append(f"the DOM has raw {raw!r}")
    if page.locator("script").count():
        failures.append("the DOM has a <script>")
    failures += [f"lineage node text overflows: {x}" for x in page.evaluate(NODE_TEXT_JS)]

    problems, count = keyboard(page)
    failures += problems
    notes.append(f"keyboard: {count} focusable elements, reached in order")
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); }")

    for label, viewport in (("", LAPTOP), ("-narrow", NARROW)):
        page.set_viewport_size(viewport)
        page.evaluate("() => window.scrollTo(0, 0)")
        f, n = axe_findings(page, plan["axe_source"])
        failures += [f"at {viewport['width']}px: {x}" for x in f]
        notes += [f"at {viewport['width']}px: {x}" for x in n]
        over = page.evaluate(OVERFLOW_JS)
        if over:
            failures.append(f"scrolls sideways at {viewport['width']}px: " + "; ".join(over))
        page.screenshot(path=f"{shots}/{name}{label}.png", full_page=True)

    for c in console:
        # A refused resource (CSP) shows as a console error; an error page's
        # own status shows as one too.
        if not (spec["status"] != 200 and "status of " + str(spec["status"]) in c):
            failures.append(f"console {c}")
    context.close()
    return failures, notes


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        plan = json.load(f)
    with open(plan["axe"], encoding="utf-8") as f:
        plan["axe_source"] = f.read()
    failed = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=plan["chromium"])
        for spec in plan["pages"]:
            failures, notes = check_page(browser, plan, spec)
            status = "FAIL" if failures else "ok"
            print(f"--- {status} {spec['name']} {spec['url']}")
            for line in failures:
                print("  FAIL " + line.replace("\n", "\n  "))
            for line in notes:
                print("  note " + line.replace("\n", "\n  "))
            failed += bool(failures)
        browser.close()
    total = len(plan["pages"])
    print(f"{failed} of {total} pages failed" if failed else f"all {total} pages passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
