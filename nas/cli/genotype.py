"""`nas genotype show|convert|info|list|plot`: the genotype subcommands (text views, format conversion,
parameters and FLOPs of the retrain network, the zoo, cell pictures)."""

from __future__ import annotations

import argparse

from nas.arch.genotype import FORMATS, describe, formats, listed, save_genotype
from nas.arch.ground_truth import GroundTruthConfig, ground_truth_of
from nas.arch.space import SPACES, ZOO, resolve_genotype
from nas.core.atomic import atomic_write_text, check_output_path
from nas.core.errors import UserError


def add_parsers(sub) -> None:
    """Register `nas genotype ...` under the CLI's subparsers `sub`."""
    g = sub.add_parser("genotype", help="show, convert and measure genotypes").add_subparsers(
        dest="genotype_command", required=True, parser_class=sub._parser_class
    )
    p = g.add_parser("show", help="text view of every cell")
    p.add_argument("file")
    p.set_defaults(func=cmd_genotype_show)
    titles = ["JSON", *(fmt.title for fmt in formats())]  # the string formats the spaces registered
    p = g.add_parser("convert", help=f"convert between {listed(titles, 'and')}")
    p.add_argument("file")
    p.add_argument("--to", choices=["json", *FORMATS.names()], required=True)
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.set_defaults(func=cmd_genotype_convert)
    p = g.add_parser("info", help="parameters and FLOPs of the retrain network")
    p.add_argument("file")
    p.add_argument("--network", help="the space's network (default: its first, at the sizes its literature "
                   "uses: DARTS cifar 36 channels x 20 layers or imagenet 48 x 14; NB201 cifar 16 channels x 5 "
                   "cells per stage; the flags below change them)")  # fmt: skip
    p.add_argument("--init-channels", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--classes", type=int)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--image-size", type=int)
    add_ground_truth_args(p)
    p.set_defaults(func=cmd_genotype_info)
    p = g.add_parser("list", help="published genotypes usable as zoo:NAME")
    p.set_defaults(func=cmd_genotype_list)
    p = g.add_parser("plot", help="draw the cells (.dot always; .png/.svg with Graphviz or matplotlib)")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help="cell.svg, cell.png, cell.pdf or cell.dot")
    p.set_defaults(func=cmd_genotype_plot)


def add_ground_truth_args(p: argparse.ArgumentParser) -> None:
    """Where a space's ground truth comes from (`nas.arch.ground_truth.GroundTruthConfig`), as flags."""
    p.add_argument(
        "--ground-truth",
        default="table",
        metavar="SOURCE",
        help="table (shipped with the space, default) or nats_bench (the official NATS-Bench file)",
    )
    p.add_argument("--benchmark-file", metavar="PATH", help="nats_bench: the benchmark file or directory")
    p.add_argument("--benchmark-epochs", type=int, default=200, help="nats_bench: 12 or 200 (default)")
    p.add_argument("--benchmark-seed", type=int, help="nats_bench: one training seed (default: the mean)")


def ground_truth_config(args: argparse.Namespace) -> GroundTruthConfig:
    from nas.core.limits import GROUND_TRUTH_RANGES, check_flags

    check_flags(vars(args), GROUND_TRUTH_RANGES)
    return GroundTruthConfig(source=args.ground_truth, path=args.benchmark_file, epochs=args.benchmark_epochs,
                             trial_seed=args.benchmark_seed)  # fmt: skip


def cmd_genotype_show(args: argparse.Namespace) -> int:
    genotype = resolve_genotype(args.file)
    space = SPACES.get(genotype.space)
    print(describe(genotype, space.input_states))
    truth = ground_truth_of(space)
    if truth is not None:
        print(truth.summary(genotype))
    return 0


def cmd_genotype_convert(args: argparse.Namespace) -> int:
    if args.output:
        check_output_path(args.output)
    genotype = resolve_genotype(args.file)
    if args.to == "json" and args.output:
        save_genotype(args.output, genotype)
        return 0
    if args.to == "json":
        import json

        text = json.dumps(genotype.to_dict(), indent=2)
    else:
        text = FORMATS.get(args.to).write(genotype)
    if args.output:
        atomic_write_text(args.output, text + "\n")
    else:
        print(text)
    return 0


def cmd_genotype_info(args: argparse.Namespace) -> int:
    import torch

    from nas.config import ModelConfig
    from nas.core.limits import INFO_RANGES, check_flags
    from nas.cost.profile import model_summary
    from nas.run.memory import build_checked, check_inference

    check_flags(vars(args), INFO_RANGES)
    genotype = resolve_genotype(args.file)
    space = SPACES.get(genotype.space)
    truth = ground_truth_of(space, ground_truth_config(args))  # before any work: a bad source is refused
    network = args.network or next(iter(space.networks))
    if network not in space.networks:
        raise UserError(
            f"the {space.name} space has no {network} network (it has: {', '.join(space.networks)})"
        )
    for key, value in space.networks[network].items():  # the space's standard network, unless set
        if getattr(args, key) is None:
            setattr(args, key, value)
    cfg = ModelConfig(init_channels=args.init_channels, layers=args.layers, auxiliary=True, network=network)
    shape = (args.in_channels, args.image_size, args.image_size)
    net = build_checked(  # 4 x 3: one SGD could train here; the check: the FLOP count's pass
        lambda: space.build_network(genotype, cfg, args.classes, args.in_channels, args.image_size),
        lambda net: check_inference(net, shape, "--init-channels, --layers or --image-size"),
        torch.device("cpu"), 4 * 3, "the network", "--init-channels or --layers",
    )  # fmt: skip
    summary = model_summary(net, shape)
    print(f"space {genotype.space}, {network} network: {args.init_channels} channels, {args.layers} layers, "
          f"{args.classes} classes, {args.in_channels}x{args.image_size}x{args.image_size} input")  # fmt: skip
    if summary["params_with_auxiliary"] == summary["params"]:  # the network has no auxiliary head
        print(f"parameters: {summary['params']:,}")
    else:
        print(f"parameters (without auxiliary head): {summary['params']:,}")
        print(f"parameters (with auxiliary head):    {summary['params_with_auxiliary']:,}")
    print(f"FLOPs (batch 1): {summary['flops']:,}  ({summary['macs'] / 1e6:.1f} M multiply-adds)")
    if truth is not None:
        print(f"{truth.name}, {truth.protocol} (percentile among all {len(truth):,} cells of the space):")
        for dataset, acc in truth.accuracy(genotype).items():
            print(f"  {dataset:<16} {acc:6.2f} %   percentile {truth.percentile(dataset, acc):6.2f}")
    return 0


def cmd_genotype_list(args: argparse.Namespace) -> int:
    print(f"{'name':<20} {'space':<6} {'error %':>8}  source")
    for name in ZOO.names():
        g = ZOO.get(name)
        err = g.provenance.get("reported_test_error")
        print(
            f"{'zoo:' + name:<20} {g.space:<6} {err if err is not None else '-':>8}  {g.provenance.get('source', '')}"
        )
    return 0


def cmd_genotype_plot(args: argparse.Namespace) -> int:
    from nas.arch.plot import plot_genotype

    check_output_path(args.output)
    written = plot_genotype(resolve_genotype(args.file), args.output)
    print(f"wrote {written}")
    return 0
