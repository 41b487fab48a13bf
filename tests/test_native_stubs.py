"""`distilx/_native.pyi` says what the Rust module really has and returns: every public name on
both sides, every stubbed call's result checked against its annotation on real input, and the
stream options' names, types and defaults equal to their one declaration in rust/options.rs."""

import ast
import inspect
import typing
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import distilx
from distilx import _native

STUB = Path(distilx.__file__).with_name("_native.pyi")
TREE = ast.parse(STUB.read_text(encoding="utf-8"))
# What the stub's annotations name, for evaluating them.
NAMES = {**vars(typing), "np": np, "npt": npt, "Path": Path, **{k: getattr(_native, k) for k in dir(_native)}}
NAMES["_Path"] = typing.Union[str, Path]
NAMES["_Position"] = tuple[int, int, int, int, int, int, int]


def stub_defs() -> dict[str, ast.FunctionDef]:
    """Qualified name -> definition, for every public function, method and property of the stub."""
    out = {}
    for node in TREE.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                    out[f"{node.name}.{item.name}"] = item
    return out


def conforms(value, hint) -> bool:
    """Whether `value` is of the annotated type (the forms the stub uses)."""
    if hint is typing.Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return any(conforms(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is np.ndarray:  # npt.NDArray[dtype]
        return isinstance(value, np.ndarray) and value.dtype == typing.get_args(args[1])[0]
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items())
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(conforms(v, a) for v, a in zip(value, args))
    return isinstance(value, hint)


def test_every_public_name_is_stubbed_and_every_stub_exists():
    stubbed = {n.name for n in TREE.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))} | {"__version__"}
    runtime = {n for n in dir(_native) if not n.startswith("_")} | {"__version__"}
    # stage_costs exists only in builds with the `bench` cargo feature (the stub says so).
    assert runtime - stubbed == set()
    assert stubbed - runtime <= {"stage_costs"}
    for cls in (n for n in TREE.body if isinstance(n, ast.ClassDef)):
        declared = {i.name for i in cls.body if isinstance(i, ast.FunctionDef) and not i.name.startswith("_")}
        present = {n for n in dir(getattr(_native, cls.name)) if not n.startswith("_")}
        assert declared == present, cls.name


def stub_parameters(node: ast.FunctionDef) -> list[tuple]:
    """(name, kind, default) of a stub definition's parameters, `self` left out."""
    a = node.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + [ast.literal_eval(d) for d in a.defaults]
    out = [(p.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, d) for p, d in zip(positional, defaults)]
    out += [(p.arg, inspect.Parameter.KEYWORD_ONLY, None if d is None else ast.literal_eval(d))
            for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg:
        out.append((a.kwarg.arg, inspect.Parameter.VAR_KEYWORD, None))
    return [p for p in out if p[0] != "self"]


def runtime_parameters(obj) -> list[tuple]:
    out = []
    for p in inspect.signature(obj).parameters.values():
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if p.kind == inspect.Parameter.POSITIONAL_ONLY else p.kind
        out.append((p.name, kind, None if p.default is inspect.Parameter.empty else p.default))
    return [p for p in out if p[0] != "self"]


def test_every_stubbed_signature_is_the_runtime_one():
    checked, skipped = 0, 0
    for node in TREE.body:
        if isinstance(node, ast.FunctionDef):
            if not hasattr(_native, node.name):  # stage_costs without the `bench` feature
                skipped += 1
                continue
            assert stub_parameters(node) == runtime_parameters(getattr(_native, node.name)), node.name
            checked += 1
        elif isinstance(node, ast.ClassDef):
            cls = getattr(_native, node.name)
            for item in node.body:
                if not isinstance(item, ast.FunctionDef) or any(ast.unparse(d) == "property" for d in item.decorator_list):
                    continue
                target = cls if item.name == "__init__" else getattr(cls, item.name)
                assert stub_parameters(item) == runtime_parameters(target), f"{node.name}.{item.name}"
                checked += 1
    methods = [i for c in TREE.body if isinstance(c, ast.ClassDef) for i in c.body if isinstance(i, ast.FunctionDef)
               and not any(ast.unparse(d) == "property" for d in i.decorator_list)]
    functions = [n for n in TREE.body if isinstance(n, ast.FunctionDef)]
    assert checked + skipped == len(methods) + len(functions) and skipped <= 1


@pytest.fixture(scope="module")
def engine(tmp_path_factory, english_lines, tokenizer_json):
    d = tmp_path_factory.mktemp("stubs")
    (d / "c.txt").write_text("\n".join(english_lines[:200]) + "\n", encoding="utf-8")
    tok = _native.Tokenizer(str(tokenizer_json))
    files = [str(d / "c.txt")]
    opts = _native.StreamOptions(seq_len=64, batch_size=8, masking="frequency")
    stream = _native.Stream(files, tok, opts)
    _native.build_cache(files, tok, str(d / "c.dxc"))
    return tok, files, opts, stream, d


def test_every_stubbed_call_returns_what_its_annotation_says(engine):
    tok, files, opts, stream, d = engine
    calls = {
        "Tokenizer.vocab_size": lambda: tok.vocab_size,
        "Tokenizer.cls_id": lambda: tok.cls_id,
        "Tokenizer.sep_id": lambda: tok.sep_id,
        "Tokenizer.pad_id": lambda: tok.pad_id,
        "Tokenizer.mask_id": lambda: tok.mask_id,
        "Tokenizer.unk_id": lambda: tok.unk_id,
        "Tokenizer.special_ids": lambda: tok.special_ids,
        "Tokenizer.special_tokens": lambda: tok.special_tokens,
        "Tokenizer.framing": lambda: tok.framing,
        "Tokenizer.word_rule": lambda: tok.word_rule,
        "Tokenizer.backend": lambda: tok.backend,
        "Tokenizer.path": lambda: tok.path,
        "Tokenizer.encode": lambda: tok.encode(["Hello world", ""]),
        "Tokenizer.word_ids": lambda: tok.word_ids(["unbelievable tokenization"]),
        "Tokenizer.token_to_id": lambda: (tok.token_to_id("hello"), tok.token_to_id("no-such-token-xyz"))[1],
        "StreamOptions.fields": lambda: _native.StreamOptions.fields(),
        "StreamOptions.to_dict": lambda: opts.to_dict(),
        "TextFeed.name": lambda: _native.TextFeed(lambda: iter([["a text", None]]), "a feed").name,
        "Stream.next_batch": lambda: stream.next_batch(),
        "Stream.position": lambda: stream.position(),
        "Stream.seek": lambda: stream.seek(stream.position()),
        "Stream.set_epoch": lambda: stream.set_epoch(0),
        "Stream.epoch": lambda: stream.epoch,
        "Stream.batches_per_epoch": lambda: stream.batches_per_epoch,
        "Stream.count_batches": lambda: stream.count_batches(),
        "Stream.files": lambda: stream.files(),
        "Stream.options": lambda: stream.options,
        "Stream.token_counts": lambda: stream.token_counts,
        "Stream.stats": lambda: stream.stats(),
        "count_tokens": lambda: _native.count_tokens(files, tok, opts),
        "build_cache": lambda: _native.build_cache(files, tok, str(d / "again.dxc"), opts, word_starts=False),
        "cache_info": lambda: _native.cache_info(str(d / "c.dxc"), tok),
        "stage_costs": lambda: _native.stage_costs(files, tok, seq_len=64, batch_size=8, num_threads=1),
    }
    defs = stub_defs()
    assert set(defs) == set(calls), "a stubbed call without a check here (or a check without a stub)"
    for name, node in defs.items():
        if name == "stage_costs" and not hasattr(_native, "stage_costs"):
            continue  # not in this build (no `bench` feature)
        hint = eval(ast.unparse(node.returns), NAMES)  # noqa: S307 - the project's own stub
        value = calls[name]()
        assert conforms(value, hint), f"{name} returned {type(value).__name__} {value!r:.200}, the stub says {ast.unparse(node.returns)}"
    # The empty-epoch branch of next_batch's Optional: after the epoch it returns None.
    while stream.next_batch() is not None:
        pass


def test_stream_options_stub_equals_the_rust_declaration():
    cls = next(n for n in TREE.body if isinstance(n, ast.ClassDef) and n.name == "StreamOptions")
    stub = [(a.target.id, eval(ast.unparse(a.annotation), NAMES), eval(ast.unparse(a.value), {}))  # noqa: S307
            for a in cls.body if isinstance(a, ast.AnnAssign)]
    rust = [(f["name"], eval(f["type"], NAMES), f["default"]) for f in _native.StreamOptions.fields()]  # noqa: S307
    assert stub == rust
    defaults = _native.StreamOptions()
    assert all(getattr(defaults, name) == default for name, _, default in rust)
    assert all(f["doc"] for f in _native.StreamOptions.fields()), "every option has its help"
