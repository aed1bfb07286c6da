"""news.split() against the real blurb: its files, merged by the blurb release-tools pinned,
give back the Misc/NEWS they were split from, byte for byte.

blurb is the hash-pinned wheel from recipes/, run in a subprocess from the zip; the real
Misc/NEWS files are read out of pinned Debian orig tarballs (tests/fixtures/origs.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from cpython_repro.cache import atomic_write, sha256_file
from cpython_repro.errors import NetworkError
from cpython_repro.models import Dated
from cpython_repro.resolve import data_dir, load_recipes, parse_version, pick_recipe
from tests.conftest import require
from tests.fixtures import news, origs

WHEELS = origs.CACHE / "wheels"
PYPI = "https://pypi.org/pypi/blurb"


def blurb_pin(version: str) -> Dated:
    """The recipes' pin of that blurb version, with the sha256 values it may have."""
    for recipe in load_recipes(data_dir("recipes")):
        for pin in recipe.blurb:
            if pin.value == version:
                return pin
    raise AssertionError(f"no recipe pins blurb {version}")


def _wheel_files(version: str) -> tuple[str, list[dict[str, Any]]]:
    """PyPI's JSON for one release, and the address its file URLs are relative to."""
    url = f"{PYPI}/{version}/json"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return url, list(json.load(resp)["urls"])
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    # Some PyPI mirrors serve only the project's JSON, with every release in it.
    url = f"{PYPI}/json"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return url, list(json.load(resp)["releases"][version])


def wheel(version: str) -> Path:
    """blurb's wheel, checked against the recipes' sha256 pins, kept in the test cache."""
    pins = blurb_pin(version).sha256
    path = WHEELS / f"blurb-{version}-py3-none-any.whl"
    if path.exists() and sha256_file(path) in pins:
        return path
    data = b""
    try:
        base, files = _wheel_files(version)
        found = [f for f in files
                 if f["filename"].endswith(".whl") and f["digests"]["sha256"] in pins]
        assert found, f"PyPI has no wheel of blurb {version} with a pinned sha256"
        with urllib.request.urlopen(urljoin(base, found[0]["url"]), timeout=30) as resp:
            data = resp.read()
    except OSError as exc:  # urllib's errors are OSErrors
        require(False, f"cannot download blurb {version} from PyPI: {exc}")
    got = hashlib.sha256(data).hexdigest()
    assert got in pins, f"blurb {version} wheel has sha256 {got}, pinned {pins}"
    atomic_write(path, data)
    return path


def run_blurb(version: str, root: Path, *args: str) -> str:
    # -S: no site-packages, so the venv's own blurb cannot shadow the wheel's.
    return subprocess.run([sys.executable, "-S", *args], cwd=root, check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(wheel(version))}).stdout


# blurb 2.0.0 is a package with the code in blurb.blurb, 1.1.0 the single module blurb.
RESAVE = """\
import importlib, json, pathlib, sys
try:
    blurb = importlib.import_module("blurb.blurb")
except ModuleNotFoundError:
    blurb = importlib.import_module("blurb")
out = {}
for path in sorted(pathlib.Path("Misc/NEWS.d").glob("*.rst")):
    blurbs = blurb.Blurbs()
    blurbs.load(path)
    out[str(path)] = str(blurbs)
json.dump(out, sys.stdout)
"""


def checkout(root: Path, files: dict[str, str]) -> Path:
    """A directory blurb takes for a CPython checkout, with the Misc/NEWS.d files in it."""
    markers = {
        "README.rst": "This is Python version 3.13.5\n",
        "LICENSE": "A. HISTORY OF THE SOFTWARE\n",
        "Include/Python.h": "",
        "Python/ceval.c": "",
    }
    for name, text in {**markers, **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def blurb_merge(files: dict[str, str], version: str, root: Path) -> bytes:
    """Misc/NEWS as `blurb merge` of that version writes it from these files."""
    checkout(root, files)
    run_blurb(version, root, "-m", "blurb", "merge")
    return (root / "Misc/NEWS").read_bytes()


def round_trip(text: str, version: str, root: Path) -> dict[str, str]:
    files = news.split(text)
    assert blurb_merge(files, version, root) == text.encode()
    # The files are as blurb itself saves them: loaded and saved again, no byte changes.
    assert json.loads(run_blurb(version, root, "-c", RESAVE)) == files
    return files


def merged(*blocks: str) -> str:
    """A whole Misc/NEWS around these version blocks, as blurb's write_news frames them."""
    return news.TOP + "".join(blocks) + news.BOTTOM


def release(title: str, date: str, body: str) -> str:
    heading = f"What's New in Python {title}?"
    return f"\n{heading}\n{'=' * len(heading)}\n\n*Release date: {date}*\n\n{body}\n"


GH = release("3.13.5 final", "2025-06-11", """\
Library
-------

- gh-133967: Do not normalize :mod:`locale` name 'C.UTF-8' to 'en_US.UTF-8'.

- gh-135276: Backported bugfixes in zipfile.Path from zipp 3.23. Fixed
  ``.name``, ``.stem`` and other basename-based properties on Windows when
  working with a zipfile on disk.
""")

GH_ISSUE = release("3.11.2 final", "2023-02-07", """\
IDLE
----

- gh-issue-95411: Enable using IDLE's module browser with .pyw files.

- gh-issue-1234: blurb 1.1.0 takes any number, 2.0.0 none below 32426.
""")

BPO = release("3.6.0 final", "2016-12-23", """\
Core and Builtins
-----------------

- bpo-28147: Fix a memory leak in split-table dictionaries: setattr() must
  not convert combined table into split table. Patch written by INADA Naoki.
""")

UNPREFIXED = release("3.5.0 alpha 1", "2015-02-08", """\
Windows
-------

- The bundled version of Tcl/Tk has been updated to 8.6.3.  The most visible
  result of this change is the addition of new native file dialogs when
  running on Windows Vista or newer.
""")

NO_CHANGES = release("3.6.6 final", "2018-06-27", """\
There were no new changes in version 3.6.6.

""")

PARAGRAPHS = release("3.13.5 final", "2025-06-11", """\
Core and Builtins
-----------------

- gh-135171: Roll back changes to generator and list comprehensions that
  went into 3.13.4 to fix GH-127682.

  They involved semantic and bytecode changes not appropriate for a bugfix
  release, so blurb reflows this second paragraph on its own.
""")

BULLETS = release("3.13.0 alpha 1", "2023-10-13", """\
C API
-----

- gh-105145: Remove these functions from the C API; blurb does not reflow a
  paragraph that starts a list, however long its lines:

  * ``PyEval_CallObject()``, ``PyEval_CallObjectWithKeywords()``: use
    :c:func:`PyObject_CallNoArgs` and :c:func:`PyObject_Call` (args not *NULL*) instead.
  * ``_PyHASH_BITS``
""")

LITERAL = release("3.11.0 alpha 2", "2021-11-05", """\
Core and Builtins
-----------------

- bpo-45609: Improve the error message for a missing opening parenthesis
  after a ``def`` statement::

      >>> def f:
        File "<stdin>", line 1
          def f:
               ^
      SyntaxError: expected '('
""")

SECTIONS_AGAIN = release("3.13.4 final", "2025-06-03", """\
Library
-------

- gh-134696: Built-in HACL* and OpenSSL implementations of hash function
  constructors now correctly accept the same *documented* named arguments.

Core and Builtins
-----------------

- gh-134381: Fix :exc:`RuntimeError` when using a not-started
  :class:`threading.Thread` after calling :func:`os.fork`.

Library
-------

- gh-133982: Emit :exc:`RuntimeWarning` in the Python implementation of
  :mod:`io` when the :term:`file-like object <file object>` is not closed
  explicitly in the presence of multiple I/O layers.
""")

# The line ends although "Therefore" fits after one space: the body had two spaces there.
TWO_SPACES = release("3.13.5 final", "2025-06-11", """\
IDLE
----

- gh-135151: Add .pyi as a recognized extension for IDLE on macOS.
  Therefore stub files open by double clicking on them in the Finder.
""")

# The same, as Python-3.11.2.tgz has it (line 1327 of its Misc/NEWS).
TWO_SPACES_OLD = release("3.11.2 final", "2023-02-07", """\
IDLE
----

- gh-issue-89610: Add .pyi as a recognized extension for IDLE on macOS.
  This allows opening stub files by double clicking on them in the Finder.
""")

# The word after the prefix is too long for its line, so blurb's line ends in "gh-N:".
LONG_WORD = release("3.13.0 beta 1", "2024-05-08", """\
C API
-----

- gh-109598:
  :c:func:`PyComplex_RealAsDouble`/:c:func:`PyComplex_ImagAsDouble` now
  tries to convert an object to a :class:`complex` instance using its
  ``__complex__()`` method before falling back to the ``__float__()``
  method. Patch by Sergey B Kirpichev.
""")

CONSTRUCTS = {
    "gh-N, blurb 2.0.0": ("2.0.0", merged(GH)),
    "gh-issue-N, blurb 1.1.0": ("1.1.0", merged(GH_ISSUE)),
    "bpo-N": ("2.0.0", merged(BPO)),
    "no prefix": ("2.0.0", merged(UNPREFIXED)),
    "no changes": ("2.0.0", merged(NO_CHANGES)),
    "paragraphs": ("2.0.0", merged(PARAGRAPHS)),
    "bullet list": ("2.0.0", merged(BULLETS)),
    "literal block": ("2.0.0", merged(LITERAL)),
    "a section again": ("2.0.0", merged(SECTIONS_AGAIN)),
    "two spaces at a line end": ("2.0.0", merged(TWO_SPACES)),
    "two spaces at a line end, 1.1.0": ("1.1.0", merged(TWO_SPACES_OLD)),
    "long word after the prefix": ("2.0.0", merged(LONG_WORD)),
    "versions in blurb's order": ("2.0.0", merged(GH, SECTIONS_AGAIN, LONG_WORD, NO_CHANGES,
                                                  UNPREFIXED)),
}


@pytest.mark.parametrize("blurb,text", CONSTRUCTS.values(), ids=CONSTRUCTS.keys())
def test_construct_round_trips_through_real_blurb(blurb: str, text: str, tmp_path: Path) -> None:
    assert news.style(text) == blurb
    round_trip(text, blurb, tmp_path)


def test_the_files_are_laid_out_as_blurb_saves_them(tmp_path: Path) -> None:
    files = round_trip(merged(GH, NO_CHANGES, UNPREFIXED), "2.0.0", tmp_path)
    assert list(files) == ["Misc/NEWS.d/3.13.5.rst", "Misc/NEWS.d/3.6.6.rst",
                           "Misc/NEWS.d/3.5.0a1.rst"]
    assert files["Misc/NEWS.d/3.13.5.rst"] == """\
.. date: 2025-06-11
.. gh-issue: 133967
.. nonce: P0c24q
.. release date: 2025-06-11
.. section: Library

Do not normalize :mod:`locale` name 'C.UTF-8' to 'en_US.UTF-8'.

..

.. date: 2025-06-11
.. gh-issue: 135276
.. nonce: KOvaYi
.. section: Library

Backported bugfixes in zipfile.Path from zipp 3.23. Fixed ``.name``,
``.stem`` and other basename-based properties on Windows when working with a
zipfile on disk.
"""
    assert ".. no changes: True\n" in files["Misc/NEWS.d/3.6.6.rst"]
    assert ".. bpo: 0\n" in files["Misc/NEWS.d/3.5.0a1.rst"]


def line_of(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.split("\n"), 1) if line.startswith(start))


REFUSED = {
    "versions out of blurb's order": (
        merged(NO_CHANGES, GH), "What's New in Python 3.13.5 final?", "version order"),
    "unreleased next": (
        merged(release("next", "XXXX-XX-XX", "Library\n-------\n\n- gh-135000: Not yet.\n")),
        "What's New in Python next?", "not a released version"),
    "gh number below 32426 for 2.0.0": (
        merged(GH_ISSUE.replace("gh-issue-", "gh-")), "- gh-1234: blurb 1.1.0 takes any "
        "number, 2.0.0 none below 32426.", "refuses gh-issue numbers below 32426"),
    "body starting Issue #": (
        merged(UNPREFIXED.replace("- The bundled", "- Issue #1: bundled")),
        "- Issue #1:", "refuses a body"),
    "both prefix styles": (
        merged(GH, GH_ISSUE), "- gh-133967: Do not normalize :mod:`locale` name 'C.UTF-8' "
        "to 'en_US.UTF-8'.", "both"),
    "two spaces after the number": (
        merged(GH.replace("gh-133967: Do", "gh-133967:  Do")),
        "- gh-133967:  Do", "more than one space"),
    "a section blurb does not know": (
        merged(GH.replace("Library\n-------", "Modules\n-------")), "Modules",
        "section blurb does not know"),
    "a line blurb would have wrapped": (
        merged(GH.replace("Fixed\n  ``.name``", "Fixed ``.name``")),
        "- gh-135276: Backported", "blurb would merge"),
    "a carriage return": (
        merged(GH.replace("on disk.", "on disk.\r")), "  working with", "carriage return"),
    "an unindented line in an entry": (
        merged(GH.replace("\n  working", "\nworking")),
        "working with a zipfile on disk.", "neither a section"),
}


@pytest.mark.parametrize("text,line,why", REFUSED.values(), ids=REFUSED.keys())
def test_what_blurb_cannot_give_back_is_refused_with_its_line(text: str, line: str,
                                                              why: str) -> None:
    with pytest.raises(news.NewsError, match=why) as info:
        news.split(text)
    number = line_of(text, line)
    assert info.value.number == number, str(info.value)
    assert repr(text.split("\n")[number - 1]) in str(info.value)


REAL = ["3.13.5", "3.13.15", "3.11.2"]


@pytest.mark.parametrize("version", REAL)
def test_real_news_round_trips_byte_for_byte(version: str, tmp_path: Path) -> None:
    """Python-X.Y.Z's Misc/NEWS, split and merged again by the blurb release-tools pinned on
    its release date, is the published file byte for byte."""
    try:
        raw = origs.member(version, "Misc/NEWS")
    except NetworkError as exc:
        require(False, f"cannot download the {version} orig tarball: {exc.one_line()}")
    text = raw.decode("utf-8")
    date = text.split("*Release date: ", 1)[1].split("*", 1)[0]
    recipe = pick_recipe(parse_version(version), load_recipes(data_dir("recipes")))
    blurb = recipe.blurb_for(dt.date.fromisoformat(date)).value
    assert news.style(text) == blurb
    wheel(blurb)  # downloaded outside the timing
    start = time.perf_counter()
    files = news.split(text)
    split_s = time.perf_counter() - start
    merged_news = blurb_merge(files, blurb, tmp_path)
    merge_s = time.perf_counter() - start - split_s
    assert merged_news == raw
    assert json.loads(run_blurb(blurb, tmp_path, "-c", RESAVE)) == files
    print(f"\n{version}: {len(raw)} bytes, {len(files)} version files, split {split_s:.2f} s, "
          f"blurb {blurb} merge {merge_s:.2f} s")
