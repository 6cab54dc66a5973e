"""Execute the chapters once, then render the HTML book from the executed notebooks.

Every chapter is executed exactly once per build (two at a time, each in its own
kernel), its executed notebook kept in ``_build/executed/``, and a report says which
chapter failed and where. The HTML is then rendered by Jupyter Book 1 from those
executed notebooks without executing anything again, so ``make test`` (which checks
the reports) and ``make book`` share one execution.

Command line::

    python -m data_helpers.build                      # execute what changed, render the book
    python -m data_helpers.build execute chapters/chunking.md   # execute one chapter, report
    python -m data_helpers.build execute --force      # execute every chapter again

Example (a fingerprint changes when a chapter's source changes):

>>> from data_helpers.build import fingerprint, REPO
>>> len(fingerprint(REPO / "chapters" / "chunking.md"))
64
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "_build"
EXECUTED = BUILD / "executed"
REPORT = EXECUTED / "report.json"
#: Set in every chapter kernel the build starts; chapters use it to keep build-only
#: output (e.g. a printed copy of each glued number) out of the rendered book.
BUILD_ENV = "ZARR_BOOK_BUILD"
TIMEOUT = 600


def chapters() -> list[Path]:
    """The chapter sources: MyST notebooks in ``chapters/``."""
    return sorted(
        p for p in (REPO / "chapters").glob("*.md") if "format_name: myst" in p.read_text()
    )


def fingerprint(md: Path) -> str:
    """SHA-256 of what a chapter's outputs depend on: its source, the package, the lock."""
    h = hashlib.sha256()
    for path in [md, REPO / "uv.lock", *sorted((REPO / "data_helpers").glob("*.py"))]:
        if path.exists():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _load_report() -> dict:
    try:
        return json.loads(REPORT.read_text())
    except (OSError, ValueError):
        return {}


def execute_one(md: Path) -> dict:
    """Execute one chapter in a fresh kernel (cwd ``chapters/``); return its report entry."""
    import jupytext
    import nbclient
    import nbformat

    md = Path(md).resolve()
    nb = jupytext.read(md)
    EXECUTED.mkdir(parents=True, exist_ok=True)
    os.environ[BUILD_ENV] = "1"
    start, started_at = time.perf_counter(), datetime.now(timezone.utc)
    entry = {"chapter": md.stem, "fingerprint": fingerprint(md), "ok": True, "error": ""}
    try:
        nbclient.NotebookClient(
            nb, timeout=TIMEOUT, kernel_name="python3",
            resources={"metadata": {"path": str(md.parent)}},
        ).execute()
    except Exception as exc:  # the cell error, with its traceback, goes to the report
        entry["ok"] = False
        entry["error"] = _strip_ansi(str(exc))[-8000:]
    total = time.perf_counter() - start
    # "seconds": from starting the kernel to the last cell's reply, what a reader waits
    # for; the kernel's shutdown is reported apart (ipykernel waits up to seconds for
    # child processes that ignore SIGTERM, such as multiprocessing's resource tracker)
    replies = [c.metadata.get("execution", {}).get("shell.execute_reply") for c in nb.cells
               if c.cell_type == "code"]
    replies = [r for r in replies if r]
    if entry["ok"] and replies:
        last = datetime.fromisoformat(replies[-1].replace("Z", "+00:00"))
        entry["seconds"] = round(min(total, (last - started_at).total_seconds()), 1)
    else:
        entry["seconds"] = round(total, 1)
    entry["with kernel shutdown"] = round(total, 1)
    # Executed notebooks keep MyST markdown; myst-nb renders them with their outputs.
    nb.metadata.pop("jupytext", None)
    nbformat.write(nb, EXECUTED / f"{md.stem}.ipynb")
    return entry


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def execute(selected: list[Path] | None = None, *, force: bool = False, jobs: int = 2,
            log=print) -> dict:
    """Execute the chapters whose fingerprint changed (all with ``force``), ``jobs`` at once.

    Each chapter runs in its own process (``python -m data_helpers.build execute-one``),
    so a crashed kernel or a stuck server cannot take the others down. Returns the
    report: chapter name -> {ok, seconds, error, fingerprint}.
    """
    todo = [Path(p).resolve() for p in (selected or chapters())]
    report = _load_report()
    if not force:
        todo = [
            md for md in todo
            if not (report.get(md.stem, {}).get("ok")
                    and report[md.stem].get("fingerprint") == fingerprint(md)
                    and (EXECUTED / f"{md.stem}.ipynb").exists())
        ]
    # The slowest chapters first, so two workers finish together.
    todo.sort(key=lambda md: -report.get(md.stem, {}).get("seconds", 100.0))

    def run(md: Path) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "data_helpers.build", "execute-one", str(md)],
            capture_output=True, text=True, timeout=TIMEOUT + 120, cwd=REPO,
        )
        try:
            return json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return {"chapter": md.stem, "ok": False, "seconds": 0.0, "fingerprint": "",
                    "error": f"the executor died (exit {out.returncode}):\n{out.stderr[-4000:]}"}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for entry in pool.map(run, todo):
            report[entry["chapter"]] = entry
            state = "ok" if entry["ok"] else "FAILED"
            log(f"  {entry['chapter']:<22} {state:<7} {entry['seconds']:6.1f} s "
                f"({entry.get('with kernel shutdown', entry['seconds']):.1f} s with the "
                "kernel's shutdown)")
    EXECUTED.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=1))
    return report


def render(out: Path = BUILD) -> Path:
    """Render the HTML book from the executed notebooks (nothing is executed again).

    The sources are staged in ``_build/source``: each chapter's ``.md`` replaced by its
    executed ``.ipynb``. The build is strict (``-W -n --keep-going``).
    """
    stage = BUILD / "source"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name in ["_config.yml", "_toc.yml", "references.bib", "_static"]:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, stage / name)
        elif src.exists():
            shutil.copy2(src, stage / name)
    (stage / "chapters").mkdir()
    names = {md.stem for md in chapters()}
    for path in (REPO / "chapters").iterdir():
        if path.suffix == ".md" and path.stem in names:
            executed = EXECUTED / f"{path.stem}.ipynb"
            if not executed.exists():
                raise RuntimeError(f"{path.stem} was not executed: run `make book` again")
            _stage_notebook(executed, stage / "chapters" / executed.name, names)
        elif path.suffix == ".md" or path.is_dir() and not path.name.startswith("."):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, stage / "chapters" / path.name)
    import yaml

    config = yaml.safe_load((stage / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config["exclude_patterns"] = [
        p for p in config["exclude_patterns"] if p not in ("**/*.ipynb", ".*", "**/.*")
    ] + ["_build/*", "**/.ipynb_checkpoints"]
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    jb = Path(sys.executable).with_name("jupyter-book")
    html = out / "html"
    cmd = [str(jb), "build", str(stage), "--path-output", str(stage), "-W", "-n", "--keep-going"]
    result = subprocess.run(cmd, text=True, capture_output=True)
    sys.stdout.write(result.stdout[-4000:])
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-8000:])
        raise SystemExit(f"the strict book build failed (exit {result.returncode})")
    shutil.rmtree(html, ignore_errors=True)
    shutil.copytree(stage / "_build" / "html", html)
    return html


def _stage_notebook(src: Path, dst: Path, names: set[str]) -> None:
    """Copy an executed notebook, pointing links to other chapters' ``.md`` at their ``.ipynb``."""
    import re

    nb = json.loads(src.read_text())
    pattern = re.compile(r"\]\((" + "|".join(map(re.escape, sorted(names))) + r")\.md([#)])")
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            cell["source"] = pattern.sub(r"](\1.ipynb\2", text)
    dst.write_text(json.dumps(nb))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_helpers.build", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    ex = sub.add_parser("execute", help="execute chapters and report")
    ex.add_argument("chapters", nargs="*", type=Path)
    ex.add_argument("--force", action="store_true")
    ex.add_argument("--jobs", type=int, default=2)
    one = sub.add_parser("execute-one")
    one.add_argument("chapter", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "execute-one":
        print(json.dumps(execute_one(args.chapter)))
        return 0
    if args.cmd == "execute":
        report = execute(args.chapters or None, force=args.force, jobs=args.jobs)
        wanted = {Path(p).stem for p in args.chapters} or {md.stem for md in chapters()}
        failed = [n for n in sorted(wanted) if not report.get(n, {}).get("ok")]
        for n in failed:
            print(f"\n=== {n} failed ===\n{report.get(n, {}).get('error', 'not executed')}")
        return 1 if failed else 0
    report = execute()
    failed = [n for n, e in report.items() if not e.get("ok") and n in {m.stem for m in chapters()}]
    if failed:
        for n in failed:
            print(f"\n=== {n} failed ===\n{report[n]['error']}")
        return 1
    render()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
