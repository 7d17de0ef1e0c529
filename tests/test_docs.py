"""The documentation site and the README: complete, linked, and in the mkdocs navigation.

These tests read the Markdown sources and mkdocs.yml as text, so they need no mkdocs;
`make docs` builds the site in strict mode on top of them.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import click
import pytest

from feat3d.backbones import list_backbones
from feat3d.cli import cli

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")

# Options that have no help text yet, as (command path, option). The generated command pages
# show an empty cell for each; give it a help text and delete its line here. A line whose
# option has gained a help text (or is gone) fails the test, so the list only shrinks.
KNOWN_WITHOUT_HELP: set[tuple[str, str]] = set()


def _pages() -> set[str]:
    return {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}


def _nav_entries() -> list[str]:
    config = (ROOT / "mkdocs.yml").read_text()
    nav = config[config.index("\nnav:") :]
    return re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w./-]+\.md)\s*$", nav, re.MULTILINE)


def _options(command: click.Command, path: tuple[str, ...] = ()):
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            yield path, param
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _options(sub, (*path, name))


def _long_name(option: click.Option) -> str:
    return next((o for o in option.opts if o.startswith("--")), option.opts[0])


def test_models_page_names_every_backbone():
    models = (DOCS / "reference" / "models.md").read_text()
    assert [name for name in list_backbones() if f"`{name}`" not in models] == []


def test_every_option_of_every_command_has_a_help_text():
    missing = {
        (" ".join(path), _long_name(option))
        for path, option in _options(cli)
        if not (option.help or "").strip()
    }
    assert missing - KNOWN_WITHOUT_HELP == set(), "options without a help text"
    assert KNOWN_WITHOUT_HELP - missing == set(), "these have a help text: drop them from the list"


def test_walk_reaches_the_nested_weights_commands():
    commands = {" ".join(path) for path, _ in _options(cli)}
    assert {"extract", "train", "weights add", "weights download"} <= commands


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    nav = _nav_entries()
    assert len(nav) == len(set(nav)), "a page is listed twice"
    assert set(nav) - _pages() == set(), "nav entries without a page"
    assert _pages() - set(nav) == set(), "pages missing from the nav"


@pytest.mark.parametrize("page", sorted(_pages()))
def test_links_between_pages_resolve(page: str):
    text = (DOCS / page).read_text()
    for target in LINK.findall(text):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        path = target.split("#")[0]
        assert (DOCS / page).parent.joinpath(path).resolve().is_file(), (page, target)


def test_readme_is_short_and_links_only_to_existing_docs_pages():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 450
    targets = [t for t in LINK.findall(readme) if "://" not in t and not t.startswith("#")]
    assert targets, "the README should point into the docs"
    for target in targets:
        path = target.split("#")[0]
        assert path.startswith("docs/") and path.endswith(".md"), target
        assert (ROOT / path).is_file(), target


def test_api_page_documents_modules_that_exist():
    api = (DOCS / "reference" / "api.md").read_text()
    modules = re.findall(r"^::: ([\w.]+)\s*$", api, re.MULTILINE)
    assert "feat3d.model" in modules
    assert [m for m in modules if importlib.util.find_spec(m) is None] == []
