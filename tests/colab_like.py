"""The Colab-like check: every chapter notebook, run as Colab would run it.

A Python 3.13 environment (Colab's default runtime since 2026-08-25) holds Colab's
preinstalled versions of every package the book's tree shares with Colab, taken from
``../shared/reference/colab-pip-freeze-*-py313.txt``. Its kernel imports numpy,
matplotlib and Pillow at start, as Colab's does, and ``google.colab`` is importable.
Each chapter's committed ``.ipynb`` then runs from its first cell: the install cell
(pointed at this checkout by ``ZARR_BOOK_SOURCE``) installs only that chapter's
extras; if it stops with its restart message, the kernel is restarted and the
notebook run again, as a reader would. A chapter passes if it runs to the end
with no restart, or after exactly one restart with the message shown.

Usage: ``python tests/colab_like.py [chapter ...]`` (``make colab-check``). The
report lists, per chapter, restart or not, install and total seconds, and how many
of Colab's packages were changed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = REPO / ".venv-colab"
FREEZE_GLOB = "colab-pip-freeze-*-py313.txt"
#: What Colab's kernel has imported before the first cell runs.
PREIMPORTED = ["numpy", "matplotlib", "matplotlib.pyplot", "PIL", "PIL.Image", "google.colab"]
KERNEL = "colab-like"
#: The first chapter also starts with pydantic imported, which its install must downgrade
#: (ome-zarr-models needs pydantic<2.13; Colab has 2.13): the restart path is exercised
#: in every run, and that chapter must stop once with the message, then pass.
RESTART_PROBE = ["pydantic"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def colab_freeze() -> dict[str, str]:
    """Colab's preinstalled distributions and versions (Python 3.13 runtime)."""
    ref = REPO.parent / "shared" / "reference"
    files = sorted(ref.glob(FREEZE_GLOB))
    if not files:
        raise SystemExit(f"no Colab freeze ({FREEZE_GLOB}) in {ref}")
    out = {}
    for line in files[-1].read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            out[_norm(name)] = version.strip()
    return out


def shared_with_colab() -> dict[str, str]:
    """The packages of the book's lock that Colab preinstalls, at Colab's versions."""
    import tomllib

    lock = tomllib.loads((REPO / "uv.lock").read_text())
    colab = colab_freeze()
    names = {_norm(p["name"]) for p in lock["package"]}
    # the kernel itself, as Colab ships it
    names |= {"ipykernel", "ipython", "jupyter-client", "jupyter-core", "pyzmq", "tornado",
              "traitlets", "pillow", "pip"}
    return {n: colab[n] for n in sorted(names) if n in colab}


def python313() -> str:
    """A Python 3.13 interpreter: ``python3.13`` on PATH or one that pyenv installed."""
    cands = ["python3.13", *map(str, sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("3.13*/bin/python")))]
    for cand in cands:
        path = shutil.which(cand) or cand
        ok = subprocess.run([path, "-c", "import sys; assert sys.version_info[:2] == (3, 13)"],
                            capture_output=True).returncode == 0 if Path(path).exists() else False
        if ok:
            return path
    raise SystemExit("Python 3.13 was not found (e.g. `pyenv install 3.13`): the Colab-like check needs it")


def make_env(uv: str) -> dict[str, str]:
    """Create the Colab-like environment; return the pinned Colab versions it holds."""
    pins = shared_with_colab()
    if ENV.exists():
        shutil.rmtree(ENV)
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    subprocess.run([uv, "venv", "--quiet", "--seed", "--python", python313(), str(ENV)], check=True, env=env)
    req = ENV / "colab-preinstalled.txt"
    req.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(ENV / "bin" / "python"),
                    "-r", str(req)], check=True, env=env)
    site = Path(subprocess.run([str(ENV / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    colab = site / "google" / "colab"
    colab.mkdir(parents=True, exist_ok=True)
    (colab / "__init__.py").write_text('"""Stand-in for Colab\'s module: only its presence matters."""\n')
    return pins


def kernel_dirs(tmp: Path) -> dict[str, str]:
    """A kernelspec for the Colab-like Python and an IPython profile that pre-imports."""
    spec = tmp / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(ENV / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like (Python 3.13)", "language": "python",
    }))
    for name, modules in [("ipython", PREIMPORTED), ("ipython-restart", [*PREIMPORTED, *RESTART_PROBE])]:
        startup = tmp / name / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-colab.py").write_text("".join(f"import {m}\n" for m in modules))
    return {"JUPYTER_PATH": str(tmp / "jupyter"), "IPYTHONDIR": str(tmp / "ipython")}


def run_chapter(nb_path: Path, env_vars: dict[str, str], probe: bool = False) -> dict:
    """Run one chapter notebook in the Colab-like kernel, restarting once if asked."""
    import nbclient
    import nbformat

    result = {"chapter": nb_path.stem, "restarts": 0, "ok": False, "error": "", "install_s": None}
    start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix=f"colab-{nb_path.stem}-"))  # Colab's cwd is empty
    try:
        for attempt in range(2):
            nb = nbformat.read(nb_path, as_version=4)
            client = nbclient.NotebookClient(nb, timeout=900, kernel_name=KERNEL,
                                             resources={"metadata": {"path": str(workdir)}})
            try:
                kernel_env = {**os.environ, **env_vars}
                if probe and attempt == 0:
                    kernel_env["IPYTHONDIR"] = kernel_env["IPYTHONDIR"] + "-restart"
                client.execute(env=kernel_env)
                result["ok"] = True
            except nbclient.exceptions.CellExecutionError as exc:
                text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
                if "RestartRequired" in text and attempt == 0:
                    result["restarts"] += 1
                    result["restart_message"] = text.split("RestartRequired:")[-1].strip()[:400]
                    print(f"  {nb_path.stem}: stopped with the restart message; restarting the kernel", flush=True)
                    continue
                result["error"] = text[-5000:]
            finally:
                for cell in nb.cells:
                    if cell.cell_type == "code" and "google.colab" in cell.source:
                        timing = cell.get("metadata", {}).get("execution", {})
                        if timing.get("iopub.execute_input") and timing.get("shell.execute_reply"):
                            from datetime import datetime

                            t0 = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
                            t1 = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
                            result["install_s"] = round((t1 - t0).total_seconds(), 1)
                        break
            break
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chapters", nargs="*")
    parser.add_argument("--uv", default=str(REPO / ".tools" / "bin" / "uv"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    pins = make_env(args.uv)
    env_seconds = time.perf_counter() - t0
    print(f"Colab-like environment: Python 3.13, {len(pins)} of Colab's packages at Colab's versions "
          f"({env_seconds:.0f} s)", flush=True)
    notebooks = sorted((REPO / "chapters").glob("*.ipynb"))
    if args.chapters:
        notebooks = [n for n in notebooks if n.stem in set(args.chapters)]
    with tempfile.TemporaryDirectory() as tmp:
        env_vars = kernel_dirs(Path(tmp))
        # The book's package, built once as a wheel: what pip would build from the git URL.
        # Built from a copy of the package's sources, so nothing (build/, *.egg-info) is
        # left in the work tree.
        src, wheel_dir = Path(tmp) / "src", Path(tmp) / "wheel"
        src.mkdir()
        for name in ["pyproject.toml", "README.md", "LICENSE"]:
            shutil.copy2(REPO / name, src / name)
        shutil.copytree(REPO / "data_helpers", src / "data_helpers",
                        ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([args.uv, "build", "--wheel", "--quiet", "--out-dir", str(wheel_dir), str(src)],
                       check=True, env=dict(os.environ, UV_PYTHON_DOWNLOADS="never"))
        env_vars["ZARR_BOOK_SOURCE"] = str(next(wheel_dir.glob("*.whl")))
        env_vars["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel 6 on 3.13: debugger notice
        os.environ.pop("ZARR_BOOK_BUILD", None)
        os.environ.update(env_vars)  # the kernelspec is looked up in the driver's JUPYTER_PATH
        # the first chapter installs the most; run it alone, then the rest two at a time
        order = sorted(notebooks, key=lambda n: n.stem != "pyramids")
        results = [run_chapter(order[0], env_vars, probe=True)]
        print(_line(results[0]), flush=True)
        first = results[0]
        if first["ok"] and not (first["restarts"] == 1 and "pydantic" in first.get("restart_message", "")):
            first["ok"] = False
            first["error"] = ("the install cell did not stop with the restart message although pip "
                              f"replaced the already-imported pydantic: {first}")
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for res in pool.map(lambda n: run_chapter(n, env_vars), order[1:]):
                results.append(res)
                print(_line(res), flush=True)
    after = _freeze(ENV / "bin" / "python")
    changed = sorted(f"{n} {v} -> {after.get(n, 'removed')}" for n, v in pins.items() if after.get(n) != v)
    print(f"\nColab packages changed by the chapters' installs: {len(changed)} of {len(pins)}")
    for line in changed:
        print("  " + line)
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print(f"\n=== {r['chapter']} failed in the Colab-like run ===\n{r['error']}")
    print(f"\nColab-like check: {len(results) - len(failed)} passed, {len(failed)} failed "
          f"in {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


def _line(r: dict) -> str:
    state = "ok" if r["ok"] else "FAILED"
    restart = f", restarted once ({r.get('restart_message', '')[:120]})" if r["restarts"] else ""
    return f"  {r['chapter']:<22} {state:<7} {r['seconds']:6.1f} s (install cell {r['install_s']} s){restart}"


def _freeze(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True)
    return {_norm(p["name"]): p["version"] for p in json.loads(out.stdout or "[]")}


if __name__ == "__main__":
    sys.exit(main())
