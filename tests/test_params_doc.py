"""docs/params.md is generated from the schema and current; every key and section of the schema is described."""
import dataclasses
import importlib.util
import typing
from typing import get_args, get_origin, get_type_hints

import pytest
import yaml
from helpers import ROOT

from diffpipe.core.config import doc_of
from diffpipe.core.params import Params

SCRIPT = ROOT / "scripts" / "params_doc.py"


def generator():
    spec = importlib.util.spec_from_file_location("params_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections(cls=Params, path=""):
    """(dataclass, dotted path) of every section of the schema, nested ones and `sweep.points.<name>` included."""
    yield cls, path
    for f in dataclasses.fields(cls):
        tp = get_type_hints(cls)[f.name]
        if get_origin(tp) is typing.Union:
            tp = [a for a in get_args(tp) if a is not type(None)][0]
        if get_origin(tp) is dict:
            tp = get_args(tp)[1]
            name = f"{path}.{f.name}.<name>"
        else:
            name = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(tp):
            yield from sections(tp, name)


def test_docs_params_md_is_generated_from_the_schema_and_current():
    page = ROOT / "docs" / "params.md"
    fresh = generator().render()
    assert page.is_file() and page.read_text() == fresh, (
        "docs/params.md is stale (the schema in src/diffpipe/core/params.py or the root params.yaml changed): "
        f"regenerate it with `{generator().COMMAND}`")


def test_every_key_and_section_has_a_one_line_description():
    undescribed = [f"{path}.{f.name}".lstrip(".") for cls, path in sections() for f in dataclasses.fields(cls)
                   if not doc_of(f).strip() or "\n" in doc_of(f)]
    assert undescribed == [], f"declare these keys with key(\"one-line description\", …): {undescribed}"
    no_docstring = [cls.__name__ for cls, _ in sections() if cls.__doc__.startswith(f"{cls.__name__}(")]
    assert no_docstring == [], f"sections without a docstring: {no_docstring}"


def test_the_page_names_every_key_of_both_params_files():
    page = (ROOT / "docs" / "params.md").read_text()

    def keys(node, path):
        for k, v in node.items():
            if path.endswith(".points"):
                yield from keys(v, f"{path}.<name>")
                return
            yield f"{path}.{k}".lstrip(".")
            if isinstance(v, dict):
                yield from keys(v, f"{path}.{k}".lstrip("."))

    for params in (ROOT / "params.yaml", ROOT / "systems" / "emoji_ddim" / "params.yaml"):
        missing = [k for k in keys(yaml.safe_load(params.read_text()), "") if f"`{k}`" not in page]
        assert missing == [], f"{params.relative_to(ROOT)}: keys not in docs/params.md: {missing}"


@pytest.mark.parametrize("declaration", [dict(doc=""), dict(doc="two\nlines")])
def test_a_key_without_a_one_line_description_is_refused(declaration):
    from diffpipe.core.config import key
    with pytest.raises(ValueError, match="one-line description"):
        key(declaration["doc"])
