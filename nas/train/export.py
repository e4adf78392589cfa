"""`nas export`: a retrained network as a file to deploy, checked against the eager network.

The format follows the file name:
- `.pt2`: a `torch.export` program of the eval-mode network (logits only, any batch size), loaded with
  `torch.export.load(path).module()`;
- `.onnx`: the same program through torch's ONNX exporter (`dynamo=True`; needs onnx and onnxscript, and
  onnxruntime for the check);
- `.safetensors`: the weights (parameters and BatchNorm statistics) under the network's own names.

Every file carries the metadata that says what it is (JSON under the key `nas`: the pt2 archive's extra
file `nas.json`, an ONNX metadata property, the safetensors header): the genotype, the training config,
the input (size, channels, normalisation, class names) and the run's result, so `load(path)` rebuilds
or runs the network from the file alone. The bytes are checked before they are written: loaded back, run
on a fixed batch, and their logits compared with the eager network's (the max abs difference is returned).
"""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas.core.atomic import atomic_write, read_json_object
from nas.core.errors import UserError
from nas.core.rundir import ALPHAS_FILE, CONFIG_FILE, GENOTYPE_FILE, RESULT_FILE

FORMAT = "nas-export/1"
SUFFIXES = (".pt2", ".onnx", ".safetensors")
META_KEY = "nas"
CHECK_BATCH = 4
TOLERANCE = 1e-4  # relative to the largest eager logit (or absolute below 1)
NEEDS = {".onnx": ("onnx", "onnxscript", "onnxruntime"), ".safetensors": ("safetensors",)}


class Logits(nn.Module):
    """The eval-mode network with one output: the logits (the auxiliary head only runs in training)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[0]


def check_format(path: str | Path) -> str:
    """The suffix of `path`, refused in one line if unknown or if its packages are not installed."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"cannot export to {path}: the file name must end in {', '.join(SUFFIXES)}")
    missing = [m for m in NEEDS.get(suffix, ()) if importlib.util.find_spec(m) is None]
    if missing:
        packages = " ".join(NEEDS[suffix])
        raise UserError(f"{suffix} export needs {', '.join(missing)}: pip install {packages}")
    return suffix


def example_input(meta: dict[str, Any], batch: int = CHECK_BATCH) -> torch.Tensor:
    """A fixed batch of normalised-image-scale inputs (float32 N(0, 1), seeded) of the network's shape."""
    data = meta["data"]
    shape = (batch, data["in_channels"], data["image_size"], data["image_size"])
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def build_network(meta: dict[str, Any]) -> nn.Module:
    """The eval-mode network described by export metadata, with fresh weights and without the auxiliary
    head (it only runs in training)."""
    from nas.arch.genotype import Genotype
    from nas.arch.space import SPACES
    from nas.config import ModelConfig

    genotype = Genotype.from_dict(meta["genotype"])
    try:
        model = ModelConfig(**{**meta["config"]["model"], "auxiliary": False})  # a training-only head
    except TypeError as exc:  # written by another version of nas
        raise UserError(f"the exported model config is not one this nas reads ({exc})") from None
    data = meta["data"]
    return (
        SPACES.get(genotype.space)
        .build_network(genotype, model, data["num_classes"], data["in_channels"])
        .eval()
    )


def run_metadata(run_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A retrain run's network (its last checkpoint's weights) and the metadata an export carries.

    Raises:
        UserError: not a retrain run directory, or no checkpoint yet.
    """
    from nas.arch.space import resolve_genotype
    from nas.config import TrainRunConfig, load_config, to_dict
    from nas.run.checkpoint import CHECKPOINT, load_checkpoint, restoring

    if (run_dir / ALPHAS_FILE).is_file() or not (run_dir / GENOTYPE_FILE).is_file():
        raise UserError(
            f"{run_dir} is not a retrain run (nas train): export the network a search found after retraining it"
        )
    cfg = load_config(TrainRunConfig, run_dir / CONFIG_FILE)
    genotype = resolve_genotype(str(run_dir / GENOTYPE_FILE))
    state = load_checkpoint(run_dir / CHECKPOINT)
    info = state.get("data_info")
    if info is None:  # a checkpoint from before exports: ask the dataset
        from dataclasses import asdict

        from nas.data.loaders import load_dataset

        info = asdict(load_dataset(cfg.data, train=True).info)
    _check_info(run_dir / CHECKPOINT, info)
    meta: dict[str, Any] = {
        "genotype": genotype.to_dict(),
        "config": to_dict(cfg),
        "data": info,
        "input": "float32 (N, C, S, S): pixels / 255 normalised per channel by data.mean and data.std "
        "(channels as trained: RGB, or one grey channel)",
        "output": "logits (N, data.num_classes), classes in the order of data.classes",
        "epochs_trained": state["epoch"],
    }
    metrics = run_dir / RESULT_FILE
    if metrics.is_file():
        result = read_json_object(metrics, "the run's result")
        meta["metrics"] = {k: v for k, v in result.items() if k != "genotype"}
    network = build_network(meta)
    with restoring(run_dir / CHECKPOINT):  # another space's or another config's weights: one line
        network.load_state_dict(
            {k: v for k, v in state["model"].items() if not k.startswith("auxiliary_head.")}
        )
    return network, meta


def _check_info(path: Path, info: Any) -> None:
    """The checkpoint's `data_info` is what `DatasetInfo` holds: sizes within the bounds of a config
    (`nas.core.limits`), statistics per channel."""
    from nas.core.limits import RANGES

    sizes = {"num_classes": RANGES["data.synthetic.classes"], "in_channels": RANGES["data.synthetic.channels"],
             "image_size": RANGES["data.image_size"]}  # fmt: skip
    ok = isinstance(info, dict) and all(
        isinstance(info.get(k), int) and not isinstance(info[k], bool) and info[k] in r
        for k, r in sizes.items()
    )
    ok = ok and all(
        isinstance(info.get(k), (list, tuple)) and len(info[k]) == info["in_channels"]
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in info[k])
        for k in ("mean", "std")
    )  # fmt: skip
    if not ok:
        raise UserError(f"{path} is not a nas checkpoint: its data_info is not a dataset description")


# ---- writing ------------------------------------------------------------------------------------------


def _pt2_bytes(model: Logits, x: torch.Tensor, meta_json: str) -> bytes:
    program = torch.export.export(model, (x,), dynamic_shapes=_batch_dim())
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={f"{META_KEY}.json": meta_json})
    return buffer.getvalue()


def _onnx_bytes(model: Logits, x: torch.Tensor, meta_json: str) -> bytes:
    program = torch.onnx.export(model, (x,), dynamic_shapes=_batch_dim(), dynamo=True, verbose=False)
    program.model.metadata_props[META_KEY] = meta_json
    return program.model_proto.SerializeToString()


def _safetensors_bytes(model: Logits, x: torch.Tensor, meta_json: str) -> bytes:
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous() for k, v in model.network.state_dict().items()}
    return save(tensors, metadata={META_KEY: meta_json})


def _batch_dim() -> dict:
    return {"x": {0: torch.export.Dim("batch", min=1, max=65536)}}


WRITERS: dict[str, Callable[[Logits, torch.Tensor, str], bytes]] = {
    ".pt2": _pt2_bytes,
    ".onnx": _onnx_bytes,
    ".safetensors": _safetensors_bytes,
}


def export(network: nn.Module, meta: dict[str, Any], path: str | Path) -> float:
    """Write `network` (eval mode, on the CPU, float32) to `path` with `meta` and return the max abs
    difference between its logits and those of the file's bytes loaded back, on `example_input(meta)`.
    Only bytes that pass the check are written (atomically).

    Raises:
        UserError: unknown suffix, missing packages, or outputs that differ beyond `TOLERANCE`.
    """
    suffix = check_format(path)
    model = Logits(network.cpu().float().eval()).eval()
    x = example_input(meta)
    with torch.no_grad():
        data = WRITERS[suffix](model, x, json.dumps({"format": FORMAT, **meta}))
        want = model(x)
        run, _ = from_bytes(suffix, data)
        got = run(x)
    diff = (got.float() - want).abs().max().item()
    if not diff <= TOLERANCE * max(1.0, want.abs().max().item()):  # also refuses NaN
        raise UserError(f"the exported {suffix} program's logits differ from the network's by {diff:.3g}")
    atomic_write(path, lambda f: f.write(data))
    return diff


# ---- reading ------------------------------------------------------------------------------------------


def metadata_from_bytes(suffix: str, data: bytes) -> dict[str, Any]:
    if suffix == ".pt2":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist() if n.endswith(f"extra/{META_KEY}.json")]
            text = z.read(names[0]).decode() if names else None
    elif suffix == ".onnx":
        import onnx

        text = {p.key: p.value for p in onnx.load_model_from_string(data).metadata_props}.get(META_KEY)
    else:  # safetensors: an 8-byte little-endian header length, then the JSON header
        n = int.from_bytes(data[:8], "little")
        text = json.loads(data[8 : 8 + n]).get("__metadata__", {}).get(META_KEY)
    if text is None:
        raise UserError(f"this {suffix} file holds no nas metadata (it was not written by nas export)")
    return json.loads(text)


def from_bytes(suffix: str, data: bytes) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    meta = metadata_from_bytes(suffix, data)
    if suffix == ".pt2":
        return torch.export.load(io.BytesIO(data)).module(), meta
    if suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.cpu().numpy()})[0]), meta
    from safetensors.torch import load as load_tensors

    network = build_network(meta)
    network.load_state_dict(load_tensors(data))
    return Logits(network).eval(), meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The `nas` metadata of an exported file (genotype, training config, input, result)."""
    return metadata_from_bytes(check_format(path), _read(path))


def load(path: str | Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """An exported file as (function from a float32 (N, C, S, S) batch to logits (N, K), its metadata).

    .pt2 runs the exported program, .onnx an onnxruntime session, .safetensors the network rebuilt from
    the metadata with the file's weights."""
    return from_bytes(check_format(path), _read(path))


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
