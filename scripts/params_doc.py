"""docs/params.md, the reference of every params key, generated from the schema (src/diffpipe/core/params.py).

    python scripts/params_doc.py --write     # rewrite docs/params.md
    python scripts/params_doc.py             # print the page
    python scripts/params_doc.py --check     # exit 1 if docs/params.md is stale

Each section gets a table: key, type, allowed values (the range the loader checks, from the field's `key(...)`
declaration), the value in the root params.yaml, and the description. tests/test_params_doc.py fails when the
committed page differs from what this script writes.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this tree's package, as the stages run it

from diffpipe.core.config import MISSING, doc_of, legacy_of, rule_of, to_dict  # noqa: E402
from diffpipe.core.params import Params, load_params  # noqa: E402

PAGE = ROOT / "docs" / "params.md"
COMMAND = "python scripts/params_doc.py --write"

HEADER = f"""# params.yaml reference

Generated from the schema, src/diffpipe/core/params.py, by `{COMMAND}`:
edit the declarations there, not this page (tests/test_params_doc.py fails when it is stale).

Every key must be written in params.yaml: the code has no defaults, and a missing or unknown key is an error
naming it. Every stage checks the whole file before any work. **Allowed** is what the loader checks for the key
alone; rules that tie keys together are the sections' `check` methods (e.g. `diffusion.beta_end` >
`diffusion.beta_start`, the `model.unet` list lengths, `sample.steps` <= `diffusion.num_timesteps`), and the
network's own arithmetic (does the U-Net's up path fit its skips, does the image size fit the down-sampling) is
checked when the network is built, before any training (nets/builder.py `check_model`). **Value** is the root
params.yaml's (System A); System B's file is systems/emoji_ddim/params.yaml.
"""


def type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return type(get_args(tp)[0]).__name__
    if origin is typing.Union:
        inner = [a for a in get_args(tp) if a is not type(None)][0]
        return f"{type_name(inner)} or null"
    if origin is tuple:
        return f"list of {type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"mapping: name → {type_name(get_args(tp)[1])}"  # a section: "mapping: name → section"
    if dataclasses.is_dataclass(tp):
        return "section"
    return tp.__name__


def allowed(f: dataclasses.Field, tp: Any) -> str:
    rule = rule_of(f)
    parts = []
    if get_origin(tp) is Literal:
        names = [f"`{v}`" for v in get_args(tp)]
        parts.append(f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0])
    if rule.length is not None:
        parts.append(f"{rule.length} entries")
    if rule.min_len is not None:
        parts.append(f"at least {rule.min_len} {'entry' if rule.min_len == 1 else 'entries'}")
    phrase = rule.phrase()
    if phrase:
        why = f" ({rule.why})" if rule.why else ""
        parts.append(f"each {phrase}{why}" if get_origin(tp) is tuple else f"{phrase}{why}")
    text = "; ".join(parts)
    if text and rule.when is not None:
        text += f", when `{rule.when[0]}` is `{rule.when[1]}`"
    return text


def show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return f"{len(value)}: " + ", ".join(value)
    return str(value)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section_title(cls: type, path: str) -> str:
    """The first paragraph of the class docstring, without a leading "`path`: " (the heading says it)."""
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature: no docstring
        raise ValueError(f"{cls.__name__} needs a docstring (the section's description in docs/params.md)")
    text = " ".join(doc.split("\n\n")[0].split())
    prefix = f"`{path}`: "
    return text[len(prefix)].upper() + text[len(prefix) + 1:] if text.startswith(prefix) else text


def describe(f: dataclasses.Field, prefix: str) -> str:
    doc = doc_of(f)
    if not doc:
        raise ValueError(f"params key `{prefix}{f.name}` has no description: declare it with key(\"…\")")
    legacy = legacy_of(f)
    if legacy is not MISSING:
        doc += f". A checkpoint written before this key existed loads it as `{show(to_dict(legacy))}`"
    return doc


def tables(cls: type, path: str, columns: list[tuple[str, Any]], optional: bool = False) -> list[str]:
    """The table of section `cls` at `path` (value columns: (title, that section's dict or None)), then those of
    its sub-sections."""
    hints = get_type_hints(cls)
    title = f"`{path}`" + (" (or `null`)" if optional else "")
    out = [f"## {title}", "", section_title(cls, path), ""]
    heads = ["key", "type", "allowed", *[c[0] for c in columns], "description"]
    out += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    later = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        sub = dataclasses.is_dataclass(tp) or get_origin(tp) in (typing.Union, dict)  # a table of its own below
        values = ["(below)" if sub and v is not None and v[f.name] is not None else show(v[f.name]) if v is not None
                  else "" for _, v in columns]
        out.append("| " + " | ".join(cell(c) for c in [f"`{path}.{f.name}`", type_name(tp), allowed(f, tp), *values,
                                                       describe(f, f"{path}.")]) + " |")
        inner = tp
        is_optional = get_origin(tp) is typing.Union
        if is_optional:
            inner = [a for a in get_args(tp) if a is not type(None)][0]
        if dataclasses.is_dataclass(inner):
            later.append((inner, f"{path}.{f.name}", [(t, v[f.name] if v else None) for t, v in columns], False))
        elif get_origin(inner) is dict and dataclasses.is_dataclass(get_args(inner)[1]):
            points = [(f"`{name}`", point) for _, v in columns for name, point in (v[f.name] or {}).items()]
            later.append((get_args(inner)[1], f"{path}.{f.name}.<name>", points, False))
    out.append("")
    for args in later:
        out += tables(*args)
    return out


def render(params_path: Path = ROOT / "params.yaml") -> str:
    values = to_dict(load_params(params_path))
    hints = get_type_hints(Params)
    out = [HEADER, "| section | type | description |", "|---|---|---|"]
    out += [f"| `{f.name}` | {type_name(hints[f.name])} | {cell(describe(f, ''))} |"
            for f in dataclasses.fields(Params)]
    out.append("")
    for f in dataclasses.fields(Params):
        tp = hints[f.name]
        optional = get_origin(tp) is typing.Union
        cls = [a for a in get_args(tp) if a is not type(None)][0] if optional else tp
        out += tables(cls, f.name, [("value", values[f.name])], optional)
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help=f"write {PAGE.relative_to(ROOT)}")
    g.add_argument("--check", action="store_true", help="exit 1 if the committed page is stale")
    args = p.parse_args()
    page = render()
    if args.write:
        PAGE.write_text(page)
    elif args.check:
        if not PAGE.is_file() or PAGE.read_text() != page:
            sys.exit(f"{PAGE.relative_to(ROOT)} is stale: regenerate it with `{COMMAND}`")
    else:
        sys.stdout.write(page)


if __name__ == "__main__":
    main()
