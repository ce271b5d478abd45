"""The README and the documentation site cannot drift from the code.

* the README stays short, and its two commands are the getting-started page's;
* every page is in the site's navigation, every picture a page shows exists (and every one is shown);
* the Python reference has an entry for every public name;
* the guides' code runs, on the bundled model and photos, in a folder of its own: every ```python block
  (consecutive ones share a process) unless the line before it is ``<!-- test: skip (why) -->``, every
  ```bash block marked ``<!-- test: run -->`` (a ```text block right after it is its expected output), and
  every ```text block marked ``<!-- test: transcript -->`` (``$ command`` lines and the lines they print).
Expected lines must appear in what ran printed (stdout and stderr, so progress bars may sit between
them); throughput and millisecond figures are the machine's and are compared as numbers of any value.
`mkdocs build --strict` itself runs in CI (`.ci/run`), in an environment with the `docs` extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import ov_explain

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 250
FIGURES_MAX_BYTES = 700_000  # "a few hundred kB in all"

_BLOCK = re.compile(r"^(?:<!-- test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```$", re.S | re.M)
_MACHINE_FIGURES = [(re.compile(r"\d+(\.\d+)? images/s"), "N images/s"), (re.compile(r"\b\d+(\.\d+)? ms\b"), "N ms")]


@dataclass
class Step:
    kind: str  # python | bash | transcript
    code: str
    expected: list[str] = field(default_factory=list)


def page_steps(path: Path) -> list[Step]:
    """The code of a page that the docs promise runs, in page order."""
    steps: list[Step] = []
    blocks = list(_BLOCK.finditer(path.read_text(encoding="utf-8")))
    for index, block in enumerate(blocks):
        mark, lang, code = block["mark"] or "", block["lang"], block["code"]
        if lang == "python" and not mark.startswith("skip"):
            steps.append(Step("python", code))
        elif lang == "bash" and mark == "run":
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            expected = []
            if following is not None and following["lang"] == "text" and not following["mark"] \
                    and not path.read_text(encoding="utf-8")[block.end():following.start()].strip():
                expected = following["code"].splitlines()
            steps.append(Step("bash", code, expected))
        elif lang == "text" and mark == "transcript":
            steps.append(Step("transcript", code))
    return steps


def _masked(line: str) -> str:
    for pattern, replacement in _MACHINE_FIGURES:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def assert_printed(expected: list[str], output: str, what: str) -> None:
    printed = {_masked(line) for line in output.splitlines()}
    missing = [line for line in expected if line.strip() and _masked(line) not in printed]
    assert not missing, f"{what}: these documented lines were not printed:\n" + "\n".join(missing) + \
        f"\n--- printed ---\n{output}"


def _workspace(tmp_path: Path) -> dict[str, str]:
    """A folder where the docs' relative paths mean what they mean in a checkout, and the environment."""
    for name in ("examples", "models"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # ov-explain of this env
    env["OV_EXPLAIN_CACHE_DIR"] = str(tmp_path / ".model-cache")
    env["MPLBACKEND"] = "Agg"
    return env


def run_steps(steps: list[Step], cwd: Path, env: dict[str, str], what: str) -> None:
    index = 0
    while index < len(steps):
        step = steps[index]
        if step.kind == "python":  # consecutive python blocks: one process, one namespace
            code = []
            while index < len(steps) and steps[index].kind == "python":
                code.append(steps[index].code)
                index += 1
            done = subprocess.run([sys.executable, "-c", "\n".join(code)], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=900)
            assert done.returncode == 0, f"{what}: a python block failed:\n{done.stdout}\n{done.stderr}"
            continue
        if step.kind == "bash":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", step.code], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{what}: a bash block failed:\n{step.code}\n{done.stdout}\n{done.stderr}"
            assert_printed(step.expected, done.stdout + done.stderr, what)
        else:
            command, expected = None, []
            for line in step.code.splitlines() + ["$ "]:
                if line.startswith("$ "):
                    if command:
                        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                                              text=True, timeout=900)
                        assert_printed(expected, done.stdout + done.stderr, f"{what}: {command}")
                    command, expected = line[2:].strip(), []
                else:
                    expected.append(line)
        index += 1


GUIDES = sorted(path.name for path in DOCS.glob("*.md") if page_steps(path))


def test_the_guides_that_promise_code_have_it():
    """The parser found the code of the pages that show runnable examples (an empty list would pass anything)."""
    assert {"getting-started.md", "explaining.md", "own-model.md", "audits.md", "edge.md", "adding-a-method.md",
            "errors.md"} <= set(GUIDES)
    assert [step.kind for step in page_steps(DOCS / "getting-started.md")] == ["bash", "bash", "transcript"]
    assert page_steps(DOCS / "getting-started.md")[0].expected[0].startswith("3 images audited into my_audit")
    assert not any("fiftyone" in step.code for step in page_steps(DOCS / "exports.md"))  # marked skip


@pytest.mark.slow
@pytest.mark.parametrize("page", GUIDES)
def test_a_guides_code_runs_and_prints_what_it_shows(page, tmp_path):
    run_steps(page_steps(DOCS / page), tmp_path, _workspace(tmp_path), page)


@pytest.mark.slow
def test_the_readmes_tour_prints_what_it_shows(tmp_path):
    steps = page_steps(README)
    assert [step.kind for step in steps] == ["transcript", "transcript"]
    run_steps(steps, tmp_path, _workspace(tmp_path), "README.md")


def test_a_documented_line_that_is_not_printed_fails():
    with pytest.raises(AssertionError, match="not printed"):
        assert_printed(["top-1 accuracy 0.571"], "top-1 accuracy 0.429\n", "check")
    assert_printed(["7 images audited, 29.7 images/s in 12 ms"], "bar\n7 images audited, 3.0 images/s in 8 ms\n",
                   "check")


def test_the_readme_is_short_and_its_two_commands_are_the_getting_started_ones():
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    commands = re.findall(r"^```bash\n(python3 -m venv .*)\n```", readme, re.M)
    assert len(commands) == 2 and "ov-explain audit examples/images/ground_truth.csv" in commands[0]
    assert "python -m pytest" in commands[1]
    started = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    assert all(command in started for command in commands)


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return [page for item in nav for page in _nav_pages(item)]


def test_every_page_is_in_the_navigation_and_every_link_of_the_readme_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    assert sorted(nav) == sorted(path.name for path in DOCS.glob("*.md"))
    for target in re.findall(r"\]\((docs/[^)#]+)", README.read_text(encoding="utf-8")):
        assert (ROOT / target).is_file(), target


def test_every_picture_shown_exists_and_every_picture_is_shown():
    shown = set()
    for path in [*DOCS.glob("*.md"), README]:
        for target in re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", path.read_text(encoding="utf-8")):
            picture = (path.parent / target).resolve()
            assert picture.is_file(), f"{path.name}: {target}"
            shown.add(picture)
    figures = set((DOCS / "figures").glob("*.png"))
    assert figures and figures == shown
    assert sum(picture.stat().st_size for picture in figures) <= FIGURES_MAX_BYTES


def test_the_python_reference_covers_every_public_name():
    entries = set(re.findall(r"^::: ([\w.]+)$", (DOCS / "api.md").read_text(encoding="utf-8"), re.M))
    missing = []
    for name in ov_explain.__all__:
        value = getattr(ov_explain, name)
        if isinstance(value, type(ov_explain)):  # a module
            path = value.__name__
        elif callable(value):
            path = f"{value.__module__}.{value.__qualname__}"
        else:  # a constant: documented where it is defined
            path = next((entry for entry in entries if entry.endswith(f".{name}")), name)
        if path not in entries and path.rpartition(".")[0] not in entries:  # its own entry, or its module's
            missing.append(f"{name} ({path})")
    assert not missing, "no ::: entry in docs/api.md for " + ", ".join(missing)
