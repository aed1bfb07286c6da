from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cpython_repro.errors import BadVersion, NoRecipe
from cpython_repro.resolve import data_dir, load_recipes, parse_version, plan


@pytest.mark.parametrize("text", ["3.12.0", "3.13.0rc2", "3.14.0a1", "3.9.19", "3.13.0b4"])
def test_valid_versions_round_trip(text: str) -> None:
    assert parse_version(text).text == text


@pytest.mark.parametrize("text", ["3.13", "3.13.5.1", "v3.13.5", "3.13.5c1", "2.7.18",
                                  "3.13.5rc", "", "3.13.5 ; rm -rf /",
                                  "\u0663.\u0661\u0663.\u0665"])
def test_malformed_versions_are_rejected(text: str) -> None:
    with pytest.raises(BadVersion) as info:
        parse_version(text)
    assert info.value.exit_code == 2
    assert "\n" not in info.value.one_line()


def test_prerelease_ordering() -> None:
    keys = [parse_version(v).sort_key() for v in
            ["3.13.0a1", "3.13.0a7", "3.13.0b1", "3.13.0rc1", "3.13.0rc2", "3.13.0", "3.13.1"]]
    assert keys == sorted(keys)


def test_plan_names_tag_artifacts_and_python_org_urls() -> None:
    p = plan("3.14.0rc2", base_url="https://www.python.org/ftp/python/")
    assert p.version.tag == "v3.14.0rc2"
    assert [a.name for a in p.artifacts] == ["Python-3.14.0rc2.tgz", "Python-3.14.0rc2.tar.xz"]
    # The directory drops the pre-release suffix.
    assert p.artifacts[0].url == "https://www.python.org/ftp/python/3.14.0/Python-3.14.0rc2.tgz"
    assert p.recipe.name == "release-tools-2023-10"


@pytest.mark.parametrize(("version", "recipe"), [
    ("3.12.0", "release-tools-legacy"), ("3.12.1", "release-tools-2023-10"),
    ("3.11.6", "release-tools-legacy"), ("3.11.7", "release-tools-2023-10"),
    ("3.13.0a1", "release-tools-2023-10"), ("3.8.18", "release-tools-legacy"),
    ("3.8.19", "release-tools-2023-10"), ("3.15.0a2", "release-tools-2023-10"),
])
def test_recipe_eras(version: str, recipe: str) -> None:
    assert plan(version).recipe.name == recipe


def test_no_recipe_for_pre_git_releases() -> None:
    with pytest.raises(NoRecipe):
        plan("3.6.15")


def test_recipes_describe_the_eras_faithfully() -> None:
    recipes = {r.name: r for r in load_recipes(data_dir("recipes"))}
    new, old = recipes["release-tools-2023-10"], recipes["release-tools-legacy"]
    assert new.strict and not old.strict
    assert "--clamp-mtime" in new.tar_options and "--clamp-mtime" not in old.tar_options
    assert [a.compress for a in new.artifacts] == [("gzip", "--no-name", "-9"), ("xz", "-T1")]
    assert old.artifacts[0].compress == ("gzip", "-9")
    # blurb and Misc/mypy follow release-tools' history by the tag's commit date.
    assert new.blurb_for(dt.date(2024, 1, 1)).value == "1.1.0"
    assert new.blurb_for(dt.date(2024, 7, 18)).value == "1.2.1"
    assert new.blurb_for(dt.date(2026, 1, 1)).value == "2.0.0"
    assert "Misc/mypy" not in new.remove_dirs_for(dt.date(2025, 4, 7))
    assert "Misc/mypy" in new.remove_dirs_for(dt.date(2025, 4, 8))


def test_malformed_recipe_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('name = "x"\n')
    with pytest.raises(NoRecipe, match=r"bad\.toml is malformed"):
        plan("3.13.5", recipes_dir=tmp_path)
