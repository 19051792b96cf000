"""The documentation site builds strictly, renders the API reference cleanly and works offline.

One build (scripts/docs, MkDocs in strict mode: a broken link or an unresolved cross-reference
fails it) serves every test here. The browser check runs only where Chromium is installed.
"""

from __future__ import annotations

import ast
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const|ref):`")
UNRESOLVED_REF = re.compile(r"\]\[[\w.]+\]")     # `[title][identifier]` left as text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    build = subprocess.run([str(ROOT / "scripts" / "docs"), "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def text_of(page: Path) -> str:
    """The visible text of an HTML page (tags dropped, entities decoded), scripts excluded."""
    source = page.read_text(encoding="utf-8")
    source = re.sub(r"<script\b.*?</script>", " ", source, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", source))


def api_pages(site: Path) -> list[Path]:
    return sorted((site / "reference").rglob("index.html"))


def test_docs_site_builds_strictly(site: Path) -> None:
    assert (site / "index.html").exists()
    client = (site / "reference" / "client" / "index.html").read_text(encoding="utf-8")
    assert 'id="simplexmpp.Client.send_message"' in client      # the reference was generated
    assert 'id="simplexmpp.Client.messages"' in client


def test_unresolved_cross_reference_fails_the_build(tmp_path: Path) -> None:
    """Strict mode really is strict: a cross-reference to nothing stops the build (with `-q`,
    MkDocs hid such warnings from --strict and the build passed)."""
    docs = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", docs / "docs")
    (docs / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "docs", docs / "scripts" / "docs")
    (docs / "scripts" / "setup-env").write_text(
        f'export PATH="{ROOT / ".venv" / "bin"}:$PATH"\n')
    os.symlink(ROOT / "simplexmpp", docs / "simplexmpp")
    page = docs / "docs" / "reference" / "index.md"
    page.write_text(page.read_text(encoding="utf-8")
                    + "\nSee [`Nothing`][simplexmpp.no_such.Thing].\n", encoding="utf-8")
    build = subprocess.run([str(docs / "scripts" / "docs"), "--out", str(tmp_path / "site")],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode != 0
    assert "simplexmpp.no_such.Thing" in build.stderr


def test_api_reference_has_no_raw_sphinx_markup(site: Path) -> None:
    pages = api_pages(site)
    assert len(pages) > 20
    for page in pages:
        text = text_of(page)
        rel = page.relative_to(site)
        assert not SPHINX_ROLE.search(text), f"{rel}: raw Sphinx role {SPHINX_ROLE.search(text)}"
        assert ">>>" not in text, f"{rel}: a doctest shown as text"
        assert "``" not in text, f"{rel}: reST double backticks shown as text"
        assert not UNRESOLVED_REF.search(text), f"{rel}: unresolved cross-reference"


def test_api_reference_links_its_cross_references(site: Path) -> None:
    muc = (site / "reference" / "ext" / "muc" / "index.html").read_text(encoding="utf-8")
    # :class:`Room` in the module docstring became a link to the class
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="#simplexmpp\.ext\.muc'
                     r'\.Room"', muc)
    # :class:`~errors.TimeoutError` from another module links to the errors page
    assert 'href="../../errors/#simplexmpp.errors.TimeoutError"' in muc
    client = (site / "reference" / "client" / "index.html").read_text(encoding="utf-8")
    assert client.count("autorefs-internal") > 20


def test_examples_are_highlighted_python_blocks(site: Path) -> None:
    muc = (site / "reference" / "ext" / "muc" / "index.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<div class="language-python highlight"><pre>.*?</pre>', muc, re.S)
    example = [b for b in blocks if "room.messages" in html.unescape(re.sub(r"<[^>]+>", "", b))]
    assert example, "the module's example is not a highlighted python block"
    assert '<span class="k">for</span>' in example[0]      # Pygments classes, at build time


def test_docstrings_are_google_style_markdown() -> None:
    """No Sphinx roles and no doctest prompts in any docstring (they render as raw text)."""
    bad = []
    for path in sorted((ROOT / "simplexmpp").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str):
                doc = node.value.value
                if SPHINX_ROLE.search(doc) or re.search(r"^\s*>>>", doc, re.M):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "docstrings with Sphinx roles or >>> prompts: " + ", ".join(bad)


def test_examples_in_docstrings_are_valid_python() -> None:
    fence = re.compile(r"```python\n(.*?)```", re.S)
    for path in sorted((ROOT / "simplexmpp").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str):
                for example in fence.findall(node.value.value):
                    compile(textwrap.dedent(example), f"{path}:{node.lineno}", "exec")


class _Assets(HTMLParser):
    """URLs a page loads by itself: scripts, stylesheets, images, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(a["src"] or "")
        elif tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or "") \
                or tag == "link" and (a.get("rel") or "") in ("preload", "modulepreload"):
            self.urls.append(a.get("href") or "")
        elif tag in ("img", "iframe", "source", "video", "audio") and a.get("src"):
            self.urls.append(a["src"] or "")


def test_site_needs_no_network(site: Path) -> None:
    """Nothing is loaded from a CDN: code is highlighted by Pygments when the site is built."""
    for page in site.rglob("*.html"):
        parser = _Assets()
        parser.feed(page.read_text(encoding="utf-8"))
        remote = [u for u in parser.urls if re.match(r"(https?:)?//", u)]
        assert not remote, f"{page.relative_to(site)} loads {remote}"
    for css in site.rglob("*.css"):
        imports = re.findall(r"@import\s+(?:url\()?['\"]?((?:https?:)?//[^'\")]+)",
                             css.read_text(encoding="utf-8"))
        assert not imports, f"{css.relative_to(site)} imports {imports}"
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "css/pygments.css" in index


def test_every_page_is_in_the_navigation(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    nav = set(re.findall(r'href="([^"#]*)"', index.split('role="main"')[0]))
    missing = []
    for page in sorted(DOCS.rglob("*.md")):
        rel = page.relative_to(DOCS).with_suffix("")
        url = "." if str(rel) == "index" else (
            str(rel.parent) + "/" if rel.name == "index" else str(rel) + "/")
        if url not in nav:
            missing.append(str(page.relative_to(DOCS)))
    assert not missing, f"pages not in the menu: {missing}"


def test_docs_link_only_inside_the_repository() -> None:
    """No page points at files beside the repository: relative links stay inside docs/."""
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        assert "../" + "shared" not in text and "shared" + "/API.md" not in text, page
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(DOCS), f"{page.relative_to(DOCS)} links to {target}"


# --- a real browser ----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_PAGES = [(page, 1280) for page in (
    "index.html", "getting-started/index.html", "architecture/index.html", "api/index.html",
    "reference/client/index.html", "reference/ext/muc/index.html")] + [
    ("api/index.html", 800), ("reference/client/index.html", 800)]   # a narrow window too
OVERFLOW_CHECK = """
<script>
window.addEventListener("load", function () {
  var wide = [];
  var root = document.documentElement;
  if (root.scrollWidth > window.innerWidth + 1) wide.push("page " + root.scrollWidth);
  document.querySelectorAll("pre, table, .doc-signature, img, svg").forEach(function (el) {
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
      wide.push(el.tagName + " " + el.scrollWidth + ">" + el.clientWidth + ": "
                + (el.textContent || el.getAttribute("src") || "").slice(0, 60));
  });
  var out = document.createElement("div");
  out.id = "overflow-report";
  out.setAttribute("data-wide", JSON.stringify(wide));
  document.body.appendChild(out);
});
</script>
"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_pages_fit_the_window_in_a_browser(site: Path, tmp_path: Path) -> None:
    """Rendered by headless Chromium at 1280 px (and 800): no sideways scrolling of the page,
    nor of any code block, table or signature inside it."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    for rel in {rel for rel, _ in BROWSER_PAGES}:
        page = copy / rel
        page.write_text(page.read_text(encoding="utf-8").replace("</body>",
                                                                 OVERFLOW_CHECK + "</body>"))
    for rel, width in BROWSER_PAGES:
        page = copy / rel
        profile = tempfile.mkdtemp(prefix="chromium-")
        try:
            dom = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},2000",
                 "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                capture_output=True, text=True, timeout=120)
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        report = re.search(r'id="overflow-report" data-wide="([^"]*)"', dom.stdout)
        assert report, f"{rel}: the page did not finish loading: {dom.stderr[-500:]}"
        wide = html.unescape(report.group(1))
        assert wide == "[]", f"{rel} is wider than a {width} px window: {wide}"


def test_import_lines_in_the_docs_work() -> None:
    """Every `from simplexmpp... import ...` the pages show imports what it names."""
    statements = set()
    for page in sorted(DOCS.rglob("*.md")):
        for block in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
            for m in re.finditer(r"^(from simplexmpp[\w.]* import (?:\([^)]*\)|.*)|"
                                 r"import simplexmpp[\w.]*)", block, re.M):
                statements.add(re.sub(r"\s*#.*$", "", m.group(1), flags=re.M))
    assert len(statements) > 20
    code = "\n".join(sorted(statements))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
