"""GPU checks: GPU-resident data, bf16, channels_last, agreement of GPU and CPU results, the memory target.

Run on a lent GPU by `experiments/gpu_check.sh`; without CUDA every test here is skipped with the reason.
No timing assertions: speed is measured by `nas bench`.
"""

import json

import pytest
import torch
import torch.nn.functional as F

import search_spaces  # noqa: F401  (registers the spaces)
from nas.arch.space import SPACES
from nas.cli import main
from nas.config import DataConfig, SearchRunConfig, SyntheticConfig, load_config
from nas.data.loaders import search_loaders
from nas.sampling import sample_architecture
from nas.search.runner import SearchRunner
from tests.conftest import ROOT, TINY_SEARCH

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: run experiments/gpu_check.sh on a lent GPU"
)

# the target setting of issue #5: DARTS space, 16 channels, 8 cells, batch 64, CIFAR-sized input
FULL = [
    "progress=false",
    "data.name=synthetic",
    "data.synthetic.image_size=32",
    "data.synthetic.train_size=1024",
    "data.synthetic.classes=10",
    "data.batch_size=64",
    "space.init_channels=16",
    "space.layers=8",
]


def _runner(tmp_path, *overrides) -> SearchRunner:
    cfg = load_config(SearchRunConfig, None, [f"out_dir={tmp_path}", *overrides])
    return SearchRunner(cfg, SPACES.get(cfg.space.name), tmp_path)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_resident_data_gives_the_cpu_batches(channels_last):
    syn = SyntheticConfig(train_size=512, image_size=32, classes=10)
    cfg = DataConfig(name="synthetic", batch_size=64, cutout=16, synthetic=syn)
    kw = {"seed": 0, "channels_last": channels_last}
    (cpu_w, _, _), (gpu_w, _, _) = (
        search_loaders(cfg, device="cpu", **kw),
        search_loaders(cfg, device="cuda", **kw),
    )
    assert gpu_w.images.is_cuda and gpu_w.images.dtype == torch.uint8  # the dataset lives on the GPU as uint8
    for (xc, yc), (xg, yg) in zip(cpu_w, gpu_w):
        assert xg.is_cuda and yg.is_cuda
        assert xg.is_contiguous(memory_format=torch.channels_last) == channels_last
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-5)
        assert torch.equal(yg.cpu(), yc)


def _loss_and_grads(runner: SearchRunner, batch, sampler: str):
    x, y = (t.to(runner.device) for t in batch)
    samples = sample_architecture(dict(runner.model.alphas), sampler, 1.0, runner.generator)
    loss = runner.criterion(runner.model(x, samples), y)
    params = runner.model.arch_parameters() + runner.model.weight_parameters()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([g.flatten().double().cpu() for g in grads if g is not None])
    return loss.item(), flat


@pytest.mark.parametrize("sampler", ["softmax", "gdas"])
def test_first_step_on_gpu_agrees_with_cpu(tmp_path, sampler):
    """Same seed: same initial weights, same batch, same sampled architecture; the loss and every gradient
    agree within TF32/cuDNN rounding."""
    common = [*TINY_SEARCH, f"sampler.name={sampler}", "deterministic=true"]
    cpu, gpu = (
        _runner(tmp_path / "cpu", *common, "device=cpu"),
        _runner(tmp_path / "gpu", *common, "device=cuda"),
    )
    batch = next(iter(cpu.val_loader))
    (loss_c, grad_c), (loss_g, grad_g) = (
        _loss_and_grads(cpu, batch, sampler),
        _loss_and_grads(gpu, batch, sampler),
    )
    assert loss_g == pytest.approx(loss_c, rel=1e-2)
    assert F.cosine_similarity(grad_c, grad_g, dim=0) > 0.99


@pytest.mark.parametrize("sampler", ["softmax", "gdas"])
def test_bf16_channels_last_search_runs_on_gpu(tmp_path, sampler):
    r = _runner(
        tmp_path, *TINY_SEARCH, f"sampler.name={sampler}", "amp=bf16", "channels_last=true", "device=cuda"
    )
    alphas = [a.detach().clone() for a in r.model.arch_parameters()]
    record = r.run()
    assert all(torch.isfinite(torch.tensor(record[k])) for k in ("train_loss", "val_loss"))
    assert any(not torch.equal(a, b) for a, b in zip(alphas, r.model.arch_parameters()))
    assert (tmp_path / "genotype.json").is_file()
    assert r.train_loader.images.is_cuda


def test_gdas_peak_memory_at_batch_64_in_bf16_is_under_1_5_gb(tmp_path):
    """The issue's target (GDAS reports 3.1 GB at batch 64), with CIFAR-10's 50k uint8 images on the GPU.
    fp32 keeps about 1.2-1.4 GB of activations for the architecture step alone (measured on the CPU), so
    its peak is recorded by the `gdas_knobs` benchmark of gpu_check.sh rather than held to this bound."""
    full = [*FULL, "data.synthetic.train_size=50000"]
    r = _runner(tmp_path, *full, "sampler.name=gdas", "amp=bf16", "channels_last=true", "device=cuda")
    torch.cuda.reset_peak_memory_stats()
    r.run_epoch(0, max_steps=4)
    peak = torch.cuda.max_memory_allocated()
    print(f"gdas peak memory, batch 64, bf16: {peak / 2**20:.0f} MiB")
    assert peak < 1.5 * 2**30


def test_bench_runs_on_gpu(tmp_path):
    out = tmp_path / "bench.json"
    config = str(ROOT / "configs" / "search" / "tiny_synthetic.yaml")
    argv = ["bench", "--config", config, *TINY_SEARCH, "device=cuda", "--compare", "amp=none,bf16"]
    assert main([*argv, "--steps", "2", "--warmup", "1", "-o", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert all(r["device"].startswith("cuda") for r in results)
    assert all(r["memory"] == "gpu_max_allocated" and r["peak_memory_mb"] > 0 for r in results)
