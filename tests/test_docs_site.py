"""The built documentation site: pages, text, plots, and a real browser.

These tests check docs/_build/html as built by

    python -m sphinx -W --keep-going -b html docs docs/_build/html

(CI builds the docs before running pytest) and skip with that command as the
reason when the site has not been built. The Chromium test also skips when no
``chromium`` binary is installed. The check that the getting-started page
matches the README needs no build.
"""

import html.parser
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SITE = DOCS / "_build" / "html"
BUILD_COMMAND = "python -m sphinx -W --keep-going -b html docs docs/_build/html"

LOSSES = [
    "cross_entropy", "binary_cross_entropy", "nll_loss", "hinge_loss",
    "l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss", "log_cosh_loss",
    "gaussian_nll_loss", "kl_div_loss", "cosine_similarity_loss",
    "triplet_loss", "margin_ranking_loss",
]  # fmt: skip
BEYOND = [
    "sigmoid_focal_loss", "softmax_focal_loss", "dice_loss",
    "squared_hinge_loss", "multiclass_hinge_loss", "cosine_embedding_loss",
    "poisson_nll_loss", "info_nce_loss", "nt_xent_loss", "ctc_loss",
    "linear_cross_entropy",
]  # fmt: skip
OPTIONS = ["ignore_index", "class_weights", "pos_weight"]

needs_site = pytest.mark.skipif(
    not (SITE / "index.html").exists(),
    reason=f"documentation not built; run `{BUILD_COMMAND}` first",
)


class _Page(html.parser.HTMLParser):
    """Visible text, <img> sources and link targets of one HTML page."""

    def __init__(self, path: pathlib.Path):
        super().__init__()
        self.path = path
        self.text: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts: list[str] = []
        self._skip = 0
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
            if attrs.get("src"):
                self.scripts.append(attrs["src"])
        elif tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)

    @property
    def words(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text))

    def local(self, ref: str) -> pathlib.Path:
        target = urllib.parse.urlparse(ref).path
        return (self.path.parent / urllib.parse.unquote(target)).resolve()


@needs_site
def test_index_links_every_page():
    page = _Page(SITE / "index.html")
    assert "The 14 loss functions of MLX" in page.words
    pages = ("getting-started", "losses", "porting", "frameworks", "backends", "accuracy")
    for name in (*pages, "performance"):
        assert any(link.startswith(f"{name}.html") for link in page.links), name
        assert (SITE / f"{name}.html").exists(), name


def test_page_lists_match_the_package():
    import anyloss

    assert set(LOSSES) == {n for n in anyloss.losses.__all__ if n.endswith(("_loss", "_entropy"))}
    beyond = {n for n in anyloss.__all__ if n.endswith(("_loss", "_entropy"))} - set(LOSSES)
    assert set(BEYOND) == beyond


@needs_site
@pytest.mark.parametrize("loss", LOSSES + BEYOND)
def test_loss_page_has_docstring_plot_and_porting_link(loss):
    page = _Page(SITE / "api" / f"anyloss.{loss}.html")
    words = page.words
    for heading in ("Parameters", "Returns", "Examples", "Plot", "Porting"):
        assert heading.lower() in words.lower(), heading
    assert "reduction" in words and "Default:" in words  # parameters with defaults
    assert ">>> import anyloss" in words  # the executed example
    assert "\\[" in words or "\\(" in words  # the math block, for MathJax
    plots = [src for src in page.images if src.endswith(".png") and loss in src]
    assert plots, page.images
    png = page.local(plots[0])
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(f"porting.html#porting-{loss.replace('_', '-')}" in link for link in page.links)
    if loss in BEYOND:
        assert "beyond MLX" in words and "anyloss.losses" in words


@needs_site
def test_losses_page_lists_beyond_mlx_and_the_options():
    page = _Page(SITE / "losses.html")
    words = page.words
    assert "Beyond MLX" in words
    for loss in LOSSES + BEYOND:
        assert any(link.startswith(f"api/anyloss.{loss}.html") for link in page.links), loss
    for option in OPTIONS:
        assert option in words, option
        assert any(f"porting.html#porting-{option.replace('_', '-')}" in a for a in page.links)


@needs_site
def test_porting_page_compares_every_loss():
    words = _Page(SITE / "porting.html").words
    for loss in LOSSES:
        assert loss in words
    for text in (
        "PyTorch",
        "optax",
        "Keras",
        "Their call (tested)",
        "anyloss call",
        "log_target",
        "with_logits=False",
        "batchmean",
    ):
        assert text in words, text


@needs_site
def test_porting_page_has_the_beyond_mlx_part():
    path = SITE / "porting.html"
    page = _Page(path)
    words = page.words
    assert "Beyond MLX" in words and "Names at a glance" in words
    ids = set(re.findall(r'id="([^"]+)"', path.read_text(encoding="utf-8")))
    for entry in BEYOND + OPTIONS:
        assert f"porting-{entry.replace('_', '-')}" in ids, entry
    for text in (
        "torchvision.ops.sigmoid_focal_loss",
        "binary_focal_crossentropy",
        "categorical_hinge",
        "ntxent",
        "F.ctc_loss",
        "transpose(0, 1)",
        "logit_paddings",
        "ignore_class",
        "mean_with_sample_weight",
        "pos_weight",
        "(none)",
        "Their call (tested)",
    ):
        assert text in words, text


@needs_site
def test_results_pages_show_table_or_how_to_make_it():
    for name, marker in (("accuracy", "accuracy_table.py"), ("performance", "benchmark")):
        words = _Page(SITE / f"{name}.html").words
        assert marker in words, name


REPO_LINK = re.compile(r'href="https://github\.com/anyloss/anyloss/(edit|blob)/main/([^"?#]+)')


def _files_in_git() -> set[str] | None:
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return set(out.stdout.splitlines())


@needs_site
def test_edit_and_view_links_point_to_files_in_the_repository():
    """Every page's "Edit/View this page" button leads to a file under version control.

    The per-loss pages (api/) are generated at build time and not committed:
    their buttons must lead to the loss's source module instead.
    """
    import inspect

    import anyloss

    tracked = _files_in_git()
    for path in sorted(SITE.rglob("*.html")):
        page = path.relative_to(SITE).as_posix()
        if page.startswith(("_", "genindex", "search")):
            continue
        targets = REPO_LINK.findall(path.read_text(encoding="utf-8"))
        for kind, target in targets:
            assert not target.startswith(("docs/api/", "docs/_generated/")), (page, target)
            assert (ROOT / target).is_file(), (page, kind, target)
            if tracked is not None:
                assert target in tracked, (page, kind, target)
        if page.startswith("api/anyloss."):
            func = inspect.unwrap(getattr(anyloss, page.removeprefix("api/anyloss.")[:-5]))
            module = pathlib.Path(inspect.getsourcefile(func)).resolve()
            expected = module.relative_to(ROOT).as_posix()
            assert sorted(kind for kind, _ in targets) == ["blob", "edit"], (page, targets)
            assert {target for _, target in targets} == {expected}, (page, targets)


@needs_site
@pytest.mark.parametrize("page", ["api/anyloss.huber_loss.html", "api/anyloss.ctc_loss.html"])
def test_mathjax_is_served_by_the_site(page):
    """No script comes from a CDN; MathJax is a file of the built site."""
    parsed = _Page(SITE / page)
    assert parsed.scripts, "no scripts at all"
    remote = [s for s in parsed.scripts if re.match(r"^([a-z]+:)?//", s)]
    assert not remote, remote
    mathjax = [s for s in parsed.scripts if "mathjax" in s.lower()]
    assert mathjax, parsed.scripts
    for src in mathjax:
        assert parsed.local(src).is_file(), src
    text = (SITE / page).read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in text and "cdnjs" not in text


def test_getting_started_matches_readme_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```\n(.*?)\n```", readme, re.S)
    assert len(commands) >= 2, "the README's set-up commands moved"
    page = (DOCS / "getting-started.rst").read_text(encoding="utf-8")
    for command in commands[:2]:
        assert f"   {command.strip()}\n" in page, command
    # the test suite's time and memory, as the README states them
    (suite,) = re.findall(r"^The suite takes about .*$", readme, re.M)
    assert f"\n{suite}\n" in page, suite


@needs_site
@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="no chromium binary (Debian: apt-get install chromium)",
)
@pytest.mark.parametrize(
    "page", ["index.html", "api/anyloss.huber_loss.html", "api/anyloss.ctc_loss.html"]
)
def test_chromium_renders_page(page, tmp_path):
    """Headless Chromium loads the page with no network; its DOM holds the text,
    the typeset formulas (no raw TeX) and a loaded plot."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    profile = tempfile.mkdtemp(dir=tmp_path)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1200,1600", "--virtual-time-budget=5000",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: every host name fails
    ]  # fmt: skip
    url = (SITE / page).as_uri()
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "anyloss" in dom.stdout
    if page.startswith("api/"):
        # MathJax ran with no network: the formulas are typeset, no raw TeX shows
        assert "<mjx-container" in dom.stdout, "MathJax did not typeset the page"
        rendered = tmp_path / "rendered.html"
        rendered.write_text(dom.stdout, encoding="utf-8")
        words = _Page(rendered).words
        for delimiter in ("\\(", "\\)", "\\[", "\\]"):
            assert delimiter not in words, (delimiter, words[words.find(delimiter) - 200 :][:400])
    if "huber" in page:
        assert "huber_loss" in dom.stdout and "loss-plot" in dom.stdout
        # the plot image decodes in the browser
        src = _Page(SITE / page).images
        png = next(_Page(SITE / page).local(s) for s in src if "huber_loss" in s)
        probe = tmp_path / "probe.html"
        probe.write_text(
            f'<img src="{png.as_uri()}" onload="document.body.dataset.w = this.naturalWidth" '
            f'onerror="document.body.dataset.w = -1">'
        )
        loaded = subprocess.run(
            [browser, *flags, "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        width = re.search(r'data-w="(-?\d+)"', loaded.stdout)
        assert width and int(width.group(1)) > 100, loaded.stdout[-500:]
    shot = tmp_path / "page.png"
    run = subprocess.run(
        [browser, *flags, f"--screenshot={shot}", url],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
