"""Stage 1: from a version string to a Plan (recipe, tag, artifact names and URLs)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cpython_repro.errors import BadVersion, NoRecipe
from cpython_repro.models import (
    ArtifactPlan,
    ArtifactRecipe,
    AutoconfSpec,
    BaseSpec,
    Dated,
    PinnedInput,
    Plan,
    Recipe,
    Replica,
    Signers,
    SigstoreIdentity,
    Toolchain,
    Version,
)

DEFAULT_REMOTE = "https://github.com/python/cpython.git"
DEFAULT_BASE_URL = "https://www.python.org/ftp/python"
DEFAULT_REKOR = "https://rekor.sigstore.dev"

_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:(a|b|rc)(\d+))?")
_RANGE_RE = re.compile(r"(>=|<=|<|>|==)\s*([0-9][0-9a-z.]*)")


def data_dir(name: str) -> Path:
    """recipes/ and containers/ live at the repository root; a wheel carries them in _data."""
    packaged = Path(__file__).parent / "_data" / name
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / name


def parse_version(text: str) -> Version:
    m = _VERSION_RE.fullmatch(text.strip())
    if not m or (m.group(1) != "3"):
        raise BadVersion(
            f"not a CPython 3 release version: {text!r}",
            hint="expected X.Y.Z, X.Y.ZaN, X.Y.ZbN or X.Y.ZrcN, e.g. 3.13.5 or 3.14.0rc2",
        )
    major, minor, micro = int(m.group(1)), int(m.group(2)), int(m.group(3))
    level, serial = m.group(4) or "", int(m.group(5) or 0)
    return Version(major, minor, micro, level, serial)


def _in_range(version: Version, spec: str) -> bool:
    clauses = [c.strip() for c in spec.split(",") if c.strip()]
    for clause in clauses:
        m = _RANGE_RE.fullmatch(clause)
        if not m:
            raise NoRecipe(f"malformed version range in a recipe: {clause!r}")
        op, bound = m.group(1), parse_version(m.group(2)).sort_key()
        key = version.sort_key()
        ok = {
            ">=": key >= bound,
            ">": key > bound,
            "<=": key <= bound,
            "<": key < bound,
            "==": key == bound,
        }[op]
        if not ok:
            return False
    return True


def _dated(items: Iterable[dict[str, Any]], key: str) -> tuple[Dated, ...]:
    out = []
    for item in items:
        since = item.get("since", "1970-01-01")
        since_date = since if isinstance(since, dt.date) else dt.date.fromisoformat(str(since))
        out.append(Dated(since_date, str(item[key]), tuple(item.get("sha256", ()))))
    return tuple(sorted(out, key=lambda d: d.since))


def load_recipe(path: Path) -> Recipe:
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
        base = data["base"]
        export = data["export"]
        return Recipe(
            name=data["name"],
            summary=data["summary"],
            digest=hashlib.sha256(raw).hexdigest(),
            path=path,
            strict=bool(data["strict"]),
            version_ranges=tuple(data["versions"]),
            base=BaseSpec(
                suite=base["suite"],
                mirror=base["mirror"],
                variant=base.get("variant", "apt"),
                packages=tuple(base["packages"]),
                source_date_epoch=int(base["source_date_epoch"]),
                snapshot=base.get("snapshot", ""),
                upstream=base.get("upstream", ""),
            ),
            expected_tools=dict(data.get("expected_tools", {})),
            touch=tuple(export["touch"]),
            remove_files=tuple(export["remove_files"]),
            remove_dirs=_dated(export["remove_dirs"], "path"),
            blurb=_dated(data["blurb"], "version"),
            tar_options=tuple(data["tar"]["options"]),
            artifacts=tuple(
                ArtifactRecipe(a["suffix"], tuple(a["compress"])) for a in data["artifacts"]
            ),
            notes=tuple(data.get("notes", ())),
        )
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise NoRecipe(f"recipe {path.name} is malformed: {exc}") from exc


SIGNERS_FILE = "signers.toml"
AUTOCONF_FILE = "autoconf.toml"


def load_recipes(directory: Path) -> list[Recipe]:
    return [load_recipe(p) for p in sorted(directory.glob("*.toml"))
            if p.name not in (SIGNERS_FILE, AUTOCONF_FILE)]


def load_autoconf(directory: Path, base: BaseSpec) -> AutoconfSpec | None:
    """The generated-files check and its replicas, each base bootstrapped like the recipe's
    (same mirror and SOURCE_DATE_EPOCH) from the suite the replica names."""
    path = directory / AUTOCONF_FILE
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text("utf-8"))
        return AutoconfSpec(
            command=tuple(data["command"]), files=tuple(data["files"]),
            replicas=tuple(_replica(entry, base) for entry in data.get("replica", ())))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise NoRecipe(f"{path}: malformed autoconf file ({exc})") from exc


def _replica(entry: dict[str, Any], base: BaseSpec) -> Replica:
    declared = entry["toolchain"]
    return Replica(
        name=str(entry["name"]),
        reproduces=str(entry["reproduces"]),
        images=tuple(entry.get("images", ())),
        proven=tuple(entry.get("proven", ())),
        toolchain=Toolchain(str(declared["autoconf"]), str(declared["aclocal"]),
                            {str(k): str(v) for k, v in declared.get("serials", {}).items()}),
        directory=str(entry["directory"]),
        base=BaseSpec(entry["suite"], base.mirror, "apt", tuple(entry["packages"]),
                      base.source_date_epoch),
        versions=tuple(entry.get("versions", ())),
        inputs=tuple(PinnedInput(str(i["name"]), str(i["url"]), str(i["sha256"]),
                                 str(i.get("member", "")), str(i.get("member_sha256", "")))
                     for i in entry.get("inputs", ())),
        results={str(k): str(v) for k, v in entry.get("results", {}).items()},
        upstream=str(entry.get("upstream", "")),
    )


def load_signers(directory: Path, series: str) -> Signers:
    """The series' signers; a series that is not listed pins nobody (and nothing verifies)."""
    path = directory / SIGNERS_FILE
    if not path.is_file():
        return Signers(series, keys_dir=directory / "keys")
    try:
        entry = tomllib.loads(path.read_text("utf-8")).get("series", {}).get(series, {})
        return Signers(
            series,
            tuple(SigstoreIdentity(i["identity"], i["issuer"]) for i in entry.get("sigstore", ())),
            tuple(f.replace(" ", "").upper() for f in entry.get("openpgp", ())),
            bool(entry.get("pgp_expected", True)),
            directory / "keys",
            {str(k): str(v) for k, v in entry.get("commits", {}).items()},
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise NoRecipe(f"{path}: malformed signers file ({exc})") from exc


def pick_recipe(version: Version, recipes: Iterable[Recipe]) -> Recipe:
    matches = [r for r in recipes if any(_in_range(version, s) for s in r.version_ranges)]
    if not matches:
        raise NoRecipe(
            f"no recipe covers CPython {version.text}",
            hint="recipes/ describes the releases made from git tags with release.py",
        )
    if len(matches) > 1:
        names = ", ".join(r.name for r in matches)
        raise NoRecipe(f"more than one recipe covers {version.text}: {names}")
    return matches[0]


def plan(
    version_text: str,
    *,
    recipes_dir: Path | None = None,
    remote: str = DEFAULT_REMOTE,
    base_url: str = DEFAULT_BASE_URL,
    local_published: Iterable[Path] = (),
) -> Plan:
    version = parse_version(version_text)
    directory = recipes_dir or data_dir("recipes")
    recipe = pick_recipe(version, load_recipes(directory))
    prefix = f"Python-{version.text}"
    artifacts = tuple(
        ArtifactPlan(
            name=prefix + a.suffix,
            url=f"{base_url.rstrip('/')}/{version.final}/{prefix}{a.suffix}",
            recipe=a,
        )
        for a in recipe.artifacts
    )
    return Plan(version, recipe, remote, artifacts, tuple(local_published),
                load_signers(directory, version.series),
                load_autoconf(directory, recipe.base))
