"""Sphinx extension: the files the anyloss pages include, written at build time.

On ``builder-inited`` it writes, under ``docs/_generated/``:

- ``plots/<loss>.png`` and ``plots/<loss>.rst``: one figure per loss
  (:mod:`loss_plots`), redrawn only when anyloss or the plot script changed;
- ``linear/linear_memory.png`` and ``.rst``: the memory figure of the linear
  cross entropy page, measured with ``tracemalloc`` (:mod:`linear_memory`),
  redone only when anyloss or the script changed;
- ``build/porting.rst``: the per-loss sections of the Porting page, generated
  from ``docs/porting_examples.py`` (the file ``tests/test_porting.py`` runs);
- ``build/porting_beyond.rst``: its "Beyond MLX" part, the losses and options
  MLX does not have, generated from ``docs/porting_beyond.py`` (tested alike);
- ``build/accuracy.rst`` and ``build/benchmark.rst``: the accuracy table and
  the benchmark results, converted from the committed
  ``_generated/accuracy.md`` / ``benchmark.md`` (an ``.rst`` next to them is
  used as is), or a clearly labelled placeholder saying how to produce them,
  so the build never fails on their absence.

It also warns (an error under ``-W``) when a loss of ``anyloss.losses`` has no
plot or no porting section, or a loss beyond MLX (in ``anyloss`` but not in
``anyloss.losses``) has no plot or no row in ``porting_beyond.NAMES``.
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import re
import textwrap

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

DOCS = pathlib.Path(__file__).resolve().parents[1]
GENERATED = DOCS / "_generated"
BUILD = GENERATED / "build"


# --------------------------------------------------------------------------
# Markdown (the tables the accuracy and benchmark tools print) -> reST
# --------------------------------------------------------------------------

_INLINE = re.compile(
    r"(?P<code>`[^`]+`)"
    r"|(?P<bold>(?<![\w*])\*\*(?=\S)[^*]+?(?<=\S)\*\*(?![\w*]))"
    r"|(?P<image>!\[[^\]]*\]\([^)]+\))"
    r"|(?P<link>\[[^\]]+\]\([^)]+\))"
)
_SPECIAL = re.compile(r"([\\*`|_<>\[\]])")


def _escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text)


def inline(text: str) -> str:
    """Markdown inline markup -> reST; everything else escaped literally."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(_escape(text[pos : m.start()]))
        token = m.group(0)
        if m.group("code"):
            body = token[1:-1].strip() or " "
            rst = f"``{body}``" if "``" not in body else _escape(body)
        elif m.group("bold"):
            rst = f"**{_escape(token[2:-2].strip())}**"
        elif m.group("image"):
            rst = _escape(re.match(r"!\[([^\]]*)\]", token).group(1))
        else:
            label, url = re.match(r"\[([^\]]+)\]\(([^)]+)\)", token).groups()
            rst = f"`{_escape(label)} <{url}>`__"
        out.append(f"\\ {rst}\\ ")  # null separators: valid next to any character
        pos = m.end()
    out.append(_escape(text[pos:]))
    return "".join(out).strip()


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def _is_rule(line: str) -> bool:
    return bool(re.fullmatch(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*", line))


def markdown_to_rst(md: str, image_dir: str) -> str:
    """Convert the Markdown subset the project's tools print into reST.

    Headings become rubrics (no section levels to clash with the including
    page), pipe tables become ``list-table`` directives, fenced code becomes
    ``code-block``, images become ``image`` directives resolved against
    ``image_dir`` (a docs-absolute path); other lines are paragraphs and lists.
    """
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if stripped.startswith("```"):
            lang = stripped[3:].strip() or "text"
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            i += 1
            out += [f".. code-block:: {lang}", ""] + [f"   {b}" for b in body] + [""]
            continue
        heading = re.match(r"#{1,6}\s+(.*)", stripped)
        if heading:
            out += [f".. rubric:: {inline(heading.group(1))}", ""]
            i += 1
            continue
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)\s]+)\)", stripped)
        if image:
            alt, src = image.groups()
            if not re.match(r"[a-z]+://", src):
                src = f"{image_dir}/{pathlib.PurePosixPath(src).name}"
            out += [f".. image:: {src}", f"   :alt: {alt or 'figure'}", "   :width: 100%", ""]
            i += 1
            continue
        if stripped.startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            header = _cells(stripped)
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            width = len(header)
            out += [".. list-table::", "   :header-rows: 1", "   :class: generated-table", ""]
            for row in [header, *rows]:
                row = (row + [""] * width)[:width]
                for j, cell in enumerate(row):
                    text = inline(cell)
                    out.append(f"   {'*' if j == 0 else ' '} - {text}".rstrip())
            out.append("")
            continue
        bullet = re.match(r"[-*+]\s+(.*)", stripped)
        if bullet:
            out += [f"- {inline(bullet.group(1))}"]
            i += 1
            if i < len(lines) and not re.match(r"\s*[-*+]\s+", lines[i]):
                out.append("")
            continue
        para = [stripped]
        i += 1
        while (
            i < len(lines)
            and lines[i].strip()
            and not re.match(r"\s*(#|\||```|[-*+]\s|!\[)", lines[i])
        ):
            para.append(lines[i].strip())
            i += 1
        out += [inline(" ".join(para)), ""]
    return "\n".join(out) + "\n"


def _placeholder(title: str, what: str, commands: list[str]) -> str:
    body = "\n".join(f"   {c}" for c in commands)
    return (
        f".. admonition:: {title}: not generated yet\n"
        f"   :class: warning generated-placeholder\n\n"
        f"   This build found no {what}. Produce it from the repository root with\n\n"
        f"   .. code-block:: console\n\n"
        + textwrap.indent(body, "   ")
        + "\n\n   and rebuild the documentation.\n"
    )


ACCURACY_COMMANDS = [
    "python -m pytest tests/test_accuracy.py",
    "python tools/accuracy_table.py --backends numpy,torch,dask,jax,mlx"
    " > docs/_generated/accuracy.md",
]
BENCHMARK_COMMANDS = [
    "python benchmarks/run.py --no-backward --cold"
    " --md docs/_generated/benchmark.md --plot docs/_generated/benchmark.png",
]


def write_results() -> None:
    """``build/accuracy.rst`` and ``build/benchmark.rst`` from the committed results."""
    for stem, title, what, commands, figure in (
        ("accuracy", "Accuracy table", "``docs/_generated/accuracy.md``", ACCURACY_COMMANDS, None),
        (
            "benchmark",
            "Benchmark results",
            "``docs/_generated/benchmark.md``",
            BENCHMARK_COMMANDS,
            "benchmark.png",
        ),
    ):
        rst_src, md_src = GENERATED / f"{stem}.rst", GENERATED / f"{stem}.md"
        if rst_src.exists():
            text = f".. include:: /_generated/{stem}.rst\n"
        elif md_src.exists():
            md = md_src.read_text(encoding="utf-8")
            text = markdown_to_rst(md, "/_generated")
            if figure and figure not in md and (GENERATED / figure).exists():
                text = (
                    f".. figure:: /_generated/{figure}\n   :alt: {title}\n   :width: 100%\n\n"
                    + text
                )
        else:
            text = _placeholder(title, what, commands)
            logger.info("anyloss_docs: %s missing, wrote a placeholder", md_src.name)
        _write(BUILD / f"{stem}.rst", text)


# --------------------------------------------------------------------------
# Porting sections
# --------------------------------------------------------------------------


def _statement(func: object, target: str) -> str:
    """The source of ``target = ...`` in ``func``, on one line."""
    source = textwrap.dedent(inspect.getsource(func))
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == target
        ):
            text = ast.get_source_segment(source, node.value) or ""
            text = re.sub(r"\s+", " ", text)
            return re.sub(r"\(\s+", "(", re.sub(r",?\s+\)", ")", text))
    raise ValueError(f"{func.__name__} has no `{target} = ...` statement")


def _cell(text: str) -> str:
    return text.replace("\n", " ")


def porting_rst(ex: object) -> str:
    frameworks = ex.FRAMEWORKS
    out = []
    # The reduction defaults of all 14 losses, side by side.
    out += [
        ".. _porting-defaults:",
        "",
        "Default reductions at a glance",
        "------------------------------",
        "",
        "MLX (and so anyloss) does not use one default: five losses average, the "
        "others return one value per element or example. Porting code that relied "
        "on a framework's default must say ``reduction=`` explicitly where the "
        "defaults differ.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "   :class: porting-table",
        "",
        "   * - loss",
    ]
    out += [f"     - {title}" for title, _ in frameworks.values()]
    for loss in ex.LOSSES:
        out.append(f"   * - :ref:`{loss} <porting-{loss}>`")
        for fw in frameworks:
            facts = ex.FACTS[loss][fw]
            out.append(f"     - {_cell(facts.get('reduction', facts['name']))}")
    out.append("")

    for loss in ex.LOSSES:
        out += [f".. _porting-{loss}:", "", f"``{loss}``", "-" * (len(loss) + 4), ""]
        out += [
            f"anyloss: :func:`anyloss.{loss}` (same call as ``mlx.nn.losses.{loss}``).",
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "   :stub-columns: 1",
            "   :class: porting-table",
            "",
            "   * -",
        ]
        out += [f"     - {title}" for title, _ in frameworks.values()]
        for key, row in ex.FACT_ROWS.items():
            out.append(f"   * - {row}")
            for fw in frameworks:
                facts = ex.FACTS[loss][fw]
                value = facts.get(key, "—" if key != "name" else facts["name"])
                out.append(f"     - {_cell(value)}")
        for target, row in (("theirs", "Their call (tested)"), ("ours", "anyloss call")):
            out.append(f"   * - {row}")
            for fw in frameworks:
                func = ex.EXAMPLES.get((loss, fw))
                out.append(f"     - ``{_statement(func, target)}``" if func else "     - —")
        out.append("")
        trips = ex.TRIP_UPS.get(loss, [])
        if trips:
            out += [".. rubric:: What people trip on", ""]
            out += [f"- {t}" for t in trips] + [""]
        out += [".. rubric:: Tested examples", ""]
        for fw, (title, _) in frameworks.items():
            func = ex.EXAMPLES.get((loss, fw))
            if func is None:
                continue
            out += [
                ".. literalinclude:: /porting_examples.py",
                f"   :pyobject: {func.__name__}",
                f"   :caption: {title}",
                "   :language: python",
                "",
            ]
    return "\n".join(out) + "\n"


def _anchor(entry: str) -> str:
    return f"porting-{entry}"


def _name(bx: object, entry: str) -> str:
    return f"{entry}=" if entry in bx.OPTIONS else entry


def _num(x: float) -> str:
    return f"{x:g}".replace("e-0", "e-")


def _list_table(header: list[str], rows: list[list[str]], stub: bool = True) -> list[str]:
    out = [".. list-table::", "   :header-rows: 1"]
    if stub:
        out.append("   :stub-columns: 1")
    out += ["   :class: porting-table", ""]
    for row in [header, *rows]:
        for j, cell in enumerate(row):
            out.append(f"   {'*' if j == 0 else ' '} - {_cell(cell)}".rstrip())
    return [*out, ""]


def beyond_rst(bx: object) -> str:
    """The "Beyond MLX" part of the Porting page, from ``porting_beyond``."""
    columns = bx.COLUMNS
    titles = list(columns.values())
    out = [
        ".. _porting-beyond:",
        "",
        "Beyond MLX",
        "----------",
        "",
        f"anyloss also has {len(bx.LOSSES)} losses that MLX does not, exported from "
        "``anyloss`` only (``anyloss.losses`` stays the drop-in for "
        "``mlx.nn.losses``), and keyword-only options of its core losses that MLX "
        "lacks: " + ", ".join(f":ref:`{o} <{_anchor(o)}>`" for o in bx.OPTIONS) + ". "
        "For each one the table sets anyloss's call next to the PyTorch, optax and "
        "Keras counterparts, *(none)* where a framework has none, and the last two "
        "rows give a framework call and the anyloss call that returns the same "
        "number. A counterpart written *(none; ...)* is the usual hand-written "
        "replacement, and is tested too.",
        "",
        "Every pair is a tested example: the code under *Tested examples* is "
        "``docs/porting_beyond.py``, which ``tests/test_porting.py`` runs against "
        "the installed frameworks and checks to float32 rounding (``rtol="
        f"{_num(bx.RTOL)}, atol={_num(bx.ATOL)}``); an example held to a looser bound says "
        "so, and why, below its code.",
        "",
        "The inputs of these examples (float32 NumPy arrays):",
        "",
        ".. literalinclude:: /porting_beyond.py",
        "   :language: python",
        "   :start-after: # [inputs]",
        "   :end-before: # [/inputs]",
        "",
        ".. _porting-beyond-names:",
        "",
        "Names at a glance",
        "~~~~~~~~~~~~~~~~~",
        "",
    ]
    rows = []
    for group, entries in bx.GROUPS.items():
        for entry in entries:
            first = f":ref:`{_name(bx, entry)} <{_anchor(entry)}>` ({group.lower()})"
            rows.append([first, *(bx.NAMES[entry][col]["name"] for col in columns)])
    out += _list_table(["", *titles], rows)

    for entry in bx.ENTRIES:
        title = f"``{_name(bx, entry)}``"
        out += [f".. _{_anchor(entry)}:", "", title, "~" * len(title), ""]
        if entry in bx.OPTIONS:
            funcs = " and ".join(f":func:`anyloss.{f}`" for f in bx.OPTIONS[entry])
            out += [f"anyloss: a keyword-only option of {funcs}.", ""]
        else:
            out += [
                f"anyloss: :func:`anyloss.{entry}` (in ``anyloss`` only, not in "
                "``anyloss.losses``).",
                "",
            ]
        rows = []
        for key, row in bx.ROWS.items():
            cells = []
            for col in columns:
                facts = bx.NAMES[entry][col]
                cells.append(facts.get(key, "—" if key != "name" else facts["name"]))
            rows.append([row, *cells])
        for target, row in (("theirs", "Their call (tested)"), ("ours", "anyloss call")):
            cells = [""]
            for fw in bx.FRAMEWORKS:
                func = bx.EXAMPLES.get((entry, fw))
                cells.append(f"``{_statement(func, target)}``" if func else "—")
            rows.append([row, *cells])
        out += _list_table(["", *titles], rows)
        trips = bx.TRIP_UPS.get(entry, [])
        if trips:
            out += [".. rubric:: What people trip on", ""]
            out += [f"- {t}" for t in trips] + [""]
        out += [".. rubric:: Tested examples", ""]
        for fw, (fw_title, _) in bx.FRAMEWORKS.items():
            func = bx.EXAMPLES.get((entry, fw))
            if func is None:
                continue
            out += [
                ".. literalinclude:: /porting_beyond.py",
                f"   :pyobject: {func.__name__}",
                f"   :caption: {fw_title}",
                "   :language: python",
                "",
            ]
            if (entry, fw) in bx.TOLERANCES:
                rtol, atol, why = bx.TOLERANCES[(entry, fw)]
                out += [f"Checked to ``rtol={_num(rtol)}, atol={_num(atol)}``: {why}.", ""]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Sphinx hooks
# --------------------------------------------------------------------------


def _write(path: pathlib.Path, text: str) -> None:
    """Write only on change, so Sphinx does not re-read untouched pages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def generate(app: Sphinx) -> None:
    import linear_memory
    import loss_plots
    import porting_beyond
    import porting_examples

    import anyloss

    drawn = loss_plots.write_all(GENERATED / "plots")
    if drawn:
        logger.info("anyloss_docs: drew %d loss plots", len(drawn))
    if linear_memory.write(GENERATED / "linear"):
        logger.info("anyloss_docs: measured and drew the linear cross entropy's memory")
    _write(BUILD / "porting.rst", porting_rst(porting_examples))
    _write(BUILD / "porting_beyond.rst", beyond_rst(porting_beyond))
    write_results()

    def is_loss(name: str) -> bool:
        return name.endswith(("_loss", "_entropy"))

    losses = {n for n in anyloss.losses.__all__ if is_loss(n)}
    beyond = {n for n in anyloss.__all__ if is_loss(n)} - losses
    for name in sorted(losses | beyond):
        if name not in loss_plots.PLOTS:
            logger.warning("anyloss_docs: anyloss.%s has no plot in loss_plots.PLOTS", name)
        if name in losses and name not in porting_examples.FACTS:
            logger.warning("anyloss_docs: anyloss.%s has no porting section", name)
        if name in beyond and name not in porting_beyond.NAMES:
            logger.warning("anyloss_docs: anyloss.%s has no row in porting_beyond.NAMES", name)


def source_links(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, object], doctree: object
) -> None:
    """Point a loss page's "Edit/View this page" buttons at the loss's module.

    The pages under ``api/`` are written by autosummary at build time and are
    not in the repository, so the theme's default links (built from the page
    name) would lead nowhere; the text on those pages is the docstring, whose
    real file is the loss's source module, e.g. ``src/anyloss/_focal.py``.
    """
    if not pagename.startswith("api/anyloss."):
        return
    import anyloss

    func = getattr(anyloss, pagename.removeprefix("api/anyloss."), None)
    func = inspect.unwrap(func) if func is not None else None
    source = inspect.getsourcefile(func) if func is not None else None
    root = DOCS.parent
    if source is None or not pathlib.Path(source).resolve().is_relative_to(root):
        # no file of the repository to point to: no buttons rather than dead links
        context["theme_top_of_page_buttons"] = []
        return
    path = pathlib.Path(source).resolve().relative_to(root).as_posix()
    line = inspect.getsourcelines(func)[1]
    options = app.config.html_theme_options
    repo = str(options["source_repository"]).rstrip("/")
    branch = options["source_branch"]
    context["theme_source_edit_link"] = f"{repo}/edit/{branch}/{path}"
    context["theme_source_view_link"] = f"{repo}/blob/{branch}/{path}#L{line}"


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", generate)
    app.connect("html-page-context", source_links)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
