"""How ``feat3d.backbones`` is put together: no import cycle, one source of each fact."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

import feat3d.backbones as backbones
from feat3d.backbones import PRESETS, BackboneSpec, default_meta, get_spec, register_backbone
from feat3d.backbones import registry as registry_module
from feat3d.backbones.catalog import CATALOG, known_weights, list_weights

PACKAGE = Path(backbones.__file__).parent
BUILDERS = {
    "c3d", "densenet", "hara_resnet", "hara_variants", "res3d", "resnet2p1d", "st_resnet",
    "video_resnet",
}  # fmt: skip
WEIGHTS_MODULES = {"catalog", "checkpoints", "layouts", "meta", "presets", "weights", "hub"}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """The ``feat3d.backbones`` modules ``path`` imports when it runs (any depth, not the
    ``if TYPE_CHECKING:`` blocks); ``"__init__"`` stands for the package itself."""
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text("utf-8"))]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative to feat3d/backbones
                module = "feat3d.backbones" + (f".{module}" if module else "")
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            module, names = "", [alias.name for alias in node.names]
            found.update(n.split(".")[2] for n in names if n.startswith("feat3d.backbones."))
            continue
        else:
            continue
        if module == "feat3d.backbones":
            for name in names:
                found.add(name if (PACKAGE / f"{name}.py").is_file() else "__init__")
        elif module.startswith("feat3d.backbones."):
            found.add(module.split(".")[2])
    return found


def _graph() -> dict[str, set[str]]:
    return {path.stem: _imports(path) - {path.stem} for path in PACKAGE.glob("*.py")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_backbones_modules_import_without_a_cycle() -> None:
    graph = _graph()
    assert {"registry", "weights", "catalog", "checkpoints"} <= set(graph)
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_the_cycle_walker_sees_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_weights_modules_import_no_network_builder() -> None:
    graph = _graph()
    for module in WEIGHTS_MODULES:
        assert not graph[module] & BUILDERS, module
        assert "__init__" not in graph[module], module


def test_st_resnet_clip_protocol_comes_from_its_preset() -> None:
    spec = get_spec("st-resnet-50")
    preset = PRESETS[spec.default_meta]
    assert spec.preset is preset
    # The extraction default has always been the preset's (the metadata): 10, not 1.
    assert (spec.default_input, spec.frame_stride) == ((preset.clip_len, preset.crop), 10)
    meta = default_meta("st-resnet-50")
    assert (meta.clip_len, meta.crop, meta.frame_stride) == (5, 224, spec.frame_stride)
    # The spec stores no clip protocol of its own.
    names = {f.name for f in fields(BackboneSpec)}
    assert not names & {"default_input", "frame_stride", "clip_len", "crop", "mean", "std"}


def test_a_registration_contradicting_its_preset_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    spec = {
        "family": "st-resnet", "block": "bottleneck", "layers": (3, 4, 6, 3),
        "feature_dim": 4096, "default_meta": "st-resnet", "formats": ("feat3d",),
    }  # fmt: skip
    with pytest.raises(TypeError, match="frame_stride"):  # the preset's, not the spec's
        register_backbone("st-test", frame_stride=1, **spec)(lambda **kw: None)
    with pytest.raises(ValueError, match="unknown preset"):
        register_backbone("st-test", **{**spec, "default_meta": "nope"})
    register_backbone("st-test", gmacs=1.5, **spec)(lambda **kw: None)
    assert get_spec("st-test").gmacs == 1.5 and get_spec("st-test").frame_stride == 10


def test_streams_say_which_networks_take_optical_flow() -> None:
    takes_flow = [name for name in backbones.list_backbones() if "flow" in get_spec(name).streams]
    assert takes_flow == ["i3d-flow", "st-resnet-50"]
    assert get_spec("st-resnet-50").streams == ("rgb", "flow")  # both in one input
    assert get_spec("i3d-flow").streams == ("flow",)  # I3D's flow network, a stream of its own
    assert get_spec("r3d_18").streams == ("rgb",) == get_spec("i3d").streams


def test_one_catalog_row_per_published_checkpoint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FEAT3D_HOME", str(tmp_path))
    assert len({entry.filename for entry in CATALOG.values()}) == len(CATALOG)
    assert all(entry.name == name for name, entry in CATALOG.items())
    assert {e.name for e in list_weights()} == {n for n, e in CATALOG.items() if e.url}
    assert all(entry.preset in PRESETS for entry in CATALOG.values())
    assert [row.name for row in known_weights()] == list(CATALOG)
    assert CATALOG["r3d_18.kinetics400_v1"].sampling == "16 consecutive frames at 15 fps"
