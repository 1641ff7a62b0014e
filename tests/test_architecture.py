"""The package's shape: what remote code copies, and which modules may import which (see docs/architecture.md).

* ``save_pretrained`` copies exactly the files that transformers' own relative-import resolution
  (``dynamic_module_utils.get_relative_import_files``) finds from the modeling, configuration and tokenization
  files, and none of those files imports a subpackage, the CLI, or defines a command-line-only helper.
* A walk over every module's imports (the AST: module-level, function-level and ``TYPE_CHECKING`` imports,
  relative and absolute) finds no cycle and no import against the layers:
  core <- Hugging Face layer <- applications (data, training, finetune, hub, kernels) <- cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from model_helpers import tiny_config

import scratch_gpt

PACKAGE_DIR = Path(scratch_gpt.__file__).parent
ENTRY_FILES = ("modeling_scratch_gpt.py", "configuration_scratch_gpt.py", "tokenization_scratch_gpt.py")
SUBPACKAGES = ("data", "training", "finetune", "hub", "kernels", "cli")
CLI_ONLY_NAMES = {"encode_pieces", "train_tokenizer", "train_tokenizer_on_files", "TrainingSummary", "main"}

HF_LAYER = {
    "configuration_scratch_gpt",
    "modeling_scratch_gpt",
    "tokenization_scratch_gpt",
    "_registration",
    "",
}
APPLICATIONS = {"data", "training", "finetune", "hub", "kernels"}
LAYERS = ("core", "Hugging Face layer", "applications", "cli")


# --------------------------------------------------------------------------------------------------------
# The import graph, from the source
# --------------------------------------------------------------------------------------------------------


def module_name(path: Path) -> str:
    """``scratch_gpt/finetune/chat.py`` -> ``finetune.chat``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py" or name == ""


def imported_modules(name: str) -> set[str]:
    """The package's own modules that module ``name`` imports anywhere in its source (``""``: the package)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb level - 1 packages up from this module's package
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join([*base, node.module] if node.module else base)
                targets = [f"scratch_gpt.{stem}" if stem else "scratch_gpt"]
            else:
                targets = [node.module or ""]
            # `from package import module` imports that module
            targets += [f"{targets[0]}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target != "scratch_gpt" and not target.startswith("scratch_gpt."):
                continue
            own = target.removeprefix("scratch_gpt").removeprefix(".")
            while own not in MODULES and own:  # an attribute, not a module: its module
                own = own.rpartition(".")[0]
            if own in MODULES and own != name:
                found.add(own)
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def layer(name: str) -> int:
    top = name.split(".")[0]
    if top == "cli" or name == "__main__":
        return 3
    if top in APPLICATIONS:
        return 2
    if name in HF_LAYER:
        return 1
    return 0


def test_the_walk_sees_relative_absolute_and_function_level_imports():
    assert "atomic_io" in GRAPH["bpe"] and "bpe_train" in GRAPH["bpe"]  # module-level, relative
    assert "modeling_scratch_gpt" in GRAPH["_registration"]  # inside a function
    assert "training.pretrain" in GRAPH["finetune.instruction_pipeline"]  # two levels up
    assert "kernels" in GRAPH["training.pretrain"]  # `from ..kernels import use_fast_kernels`: the package
    assert "cli" in GRAPH["__main__"]


def test_no_import_cycles():
    """Tarjan's strongly connected components: any component with more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert cycles == [], f"import cycles: {cycles}"


def test_imports_only_go_down_the_layers():
    upward = [
        f"{name} ({LAYERS[layer(name)]}) imports {target} ({LAYERS[layer(target)]})"
        for name, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if layer(target) > layer(name) and not (name == "" and target == "_registration")
    ]
    assert upward == []


def test_the_layers_hold_what_the_docs_say():
    assert {name for name in MODULES if layer(name) == 1} == HF_LAYER
    core = {name for name in MODULES if layer(name) == 0}
    assert {
        "model",
        "attention",
        "layers",
        "bpe",
        "bpe_train",
        "byte_level",
        "atomic_io",
        "constants",
    } <= core
    assert GRAPH["constants"] == set()  # flat: anything may import it


# --------------------------------------------------------------------------------------------------------
# Remote code: exactly what transformers resolves, and nothing from the upper layers
# --------------------------------------------------------------------------------------------------------


def relative_closure() -> set[str]:
    from transformers.dynamic_module_utils import get_relative_import_files

    files = set(ENTRY_FILES)
    for entry in ENTRY_FILES:
        files |= {Path(f).name for f in get_relative_import_files(str(PACKAGE_DIR / entry))}
    return files


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    from scratch_gpt import BPETokenizer, ScratchGPTForCausalLM, ScratchGPTTokenizerFast

    folder = tmp_path_factory.mktemp("remote") / "ckpt"
    torch.manual_seed(0)
    ScratchGPTForCausalLM(tiny_config()).save_pretrained(folder)
    bpe = BPETokenizer.train("low lower lowest newer wider " * 20, vocab_size=270)
    ScratchGPTTokenizerFast.from_bpe(bpe).save_pretrained(folder)
    return folder


def test_save_pretrained_copies_exactly_the_relative_import_closure(saved_folder):
    copied = {p.name for p in saved_folder.glob("*.py")}
    assert copied == relative_closure()
    assert {"model.py", "attention.py", "layers.py", "bpe.py", "constants.py"} <= copied


def test_remote_code_files_import_no_subpackage_and_hold_no_cli_helper():
    for file_name in sorted(relative_closure()):
        name = file_name.removesuffix(".py")
        assert all(layer(target) <= 1 for target in GRAPH[name]), f"{file_name} imports {GRAPH[name]}"
        tree = ast.parse((PACKAGE_DIR / file_name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not module.startswith(SUBPACKAGES), f"{file_name} imports .{module}"
                assert not module.startswith("scratch_gpt"), f"{file_name}: absolute import of {module}"
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert node.name not in CLI_ONLY_NAMES, f"{file_name} defines the CLI-only {node.name}"
