"""The layer table in docs/quantization.md is generated from the scheme's."""

from pathlib import Path

import pytest

from keras_tflq.quantization.default_scheme import registry

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "quantization.md"
BEGIN = "<!-- Generated from the default scheme's TABLE by "
END = "<!-- End of the generated table. -->"


def _documented_table():
    text = DOC.read_text()
    start = text.index("\n", text.index(BEGIN)) + 1
    return text[start : text.index(END)]


def test_docs_table_is_the_generated_one():
    # Regenerate with the command in the marker if this fails.
    assert _documented_table() == registry.markdown_table()


def test_every_table_class_is_in_the_docs_by_its_exact_name():
    documented = _documented_table()
    for row in registry.TABLE:
        name = getattr(row.match, "__name__", row.match)
        assert f"`{name}`" in documented, name


def test_markdown_command_prints_the_table(capsys):
    # What `python keras_tflq/quantization/default_scheme/registry.py
    # --markdown` runs.
    registry.main(["--markdown"])
    assert capsys.readouterr().out == registry.markdown_table()
    with pytest.raises(SystemExit, match="usage: python -m"):
        registry.main([])
