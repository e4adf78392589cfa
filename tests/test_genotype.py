"""Genotype data: JSON and string round-trips, and one clear error for every kind of bad file."""

import json
import random

import pytest

import search_spaces  # noqa: F401
from nas.arch.genotype import (
    FORMATS,
    Cell,
    Genotype,
    GenotypeFormat,
    describe,
    format_of,
    load_genotype_file,
    parse_genotype_text,
    register_format,
    save_genotype,
)
from nas.arch.space import SPACES
from nas.config import SpaceConfig
from nas.core.errors import UserError
from search_spaces.darts.formats import from_darts_string, to_darts_string
from search_spaces.nb201.formats import from_nb201_string, to_nb201_string

# printed by the DARTS code (`logging.info('genotype = %s', genotype)`) for DARTS_V2
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=range(2, 6), "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)


def test_darts_string_round_trips_exactly():
    g = from_darts_string(DARTS_V2)
    assert to_darts_string(g) == DARTS_V2
    assert g.cells["normal"].nodes[3] == (("skip_connect", 0), ("dil_conv_3x3", 2))


def test_darts_string_with_list_concat_reads_the_same():
    listed = DARTS_V2.replace("range(2, 6)", "[2, 3, 4, 5]")
    assert from_darts_string(listed) == from_darts_string(DARTS_V2)


def test_json_round_trip_keeps_cells_and_provenance(tmp_path):
    g = from_darts_string(DARTS_V2)
    g = Genotype(g.space, g.cells, {"seed": 3, "epoch": 49})
    save_genotype(tmp_path / "g.json", g)
    back = load_genotype_file(tmp_path / "g.json")
    assert back == g and back.provenance == {"seed": 3, "epoch": 49}
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["format"] == "nas.genotype" and data["version"] == 1


def test_nb201_string_round_trip():
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    g = from_nb201_string(s)
    assert to_nb201_string(g) == s
    assert parse_genotype_text(s) == g


def test_parse_detects_each_format():
    g = from_darts_string(DARTS_V2)
    assert parse_genotype_text(DARTS_V2) == g
    assert parse_genotype_text(json.dumps(g.to_dict())) == g


def test_no_eval_of_strings():
    with pytest.raises(UserError):
        from_darts_string(
            "Genotype(normal=__import__('os').system('true'), normal_concat=[2], reduce=[], reduce_concat=[2])"
        )


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "not a genotype file"),
        ('{"format": "nas.genotype", "version": 9, "space": "darts", "cells": {}}', "version"),
        (
            '{"format": "nas.genotype", "version": 1, "space": "darts", "cells": {"normal": {"nodes": 3}}}',
            "cell 'normal'",
        ),
        ("hello", "neither"),
        (
            "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2], reduce=[], reduce_concat=[2])",
            "2 per node",
        ),
        ("|nor_conv_3x3|", "bad edge"),
    ],
)
def test_bad_text_gives_one_clear_line(text, message):
    with pytest.raises(UserError, match=message) as info:
        parse_genotype_text(text)
    assert "\n" not in str(info.value)


def _darts(normal_nodes):
    reduce = from_darts_string(DARTS_V2).cells["reduce"]
    return Genotype(
        "darts", {"normal": Cell.make(normal_nodes, range(2, 2 + len(normal_nodes))), "reduce": reduce}
    )


@pytest.mark.parametrize(
    "nodes, message",
    [
        ([[("sep_conv_3x3", 0), ("conv_9x9", 1)]] * 4, "unknown op 'conv_9x9'"),
        (
            [[("sep_conv_3x3", 0), ("sep_conv_3x3", 1)], [("sep_conv_3x3", 0), ("sep_conv_3x3", 3)]]
            + [[("skip_connect", 0)] * 2] * 2,
            "input index 3 out of range",
        ),
        ([[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0)]] * 4, "3 inputs"),
    ],
)
def test_space_validation_names_the_problem(nodes, message):
    with pytest.raises(UserError, match=message):
        SPACES.get("darts").validate(_darts(nodes))


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_genotype_file(tmp_path / "nope.json")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    """Checkpoints and text files share one mechanism: a write that fails half-way leaves the previous
    file as it was, no temp file behind, and a new file gets the umask's permissions, not mkstemp's 0600."""
    import os
    import pickle
    import stat

    import torch

    from nas.core.atomic import atomic_write_text
    from nas.run.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "last.pt", {"epoch": 3})
    with pytest.raises((pickle.PicklingError, AttributeError)):
        save_checkpoint(tmp_path / "last.pt", {"epoch": 4, "unpicklable": lambda: None})
    assert load_checkpoint(tmp_path / "last.pt") == {"epoch": 3}
    atomic_write_text(tmp_path / "note.txt", "tau \u2192 0.1\n")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "tau \u2192 0.1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "note.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "note.txt").stat().st_mode) == 0o666 & ~umask
    assert torch.load(tmp_path / "last.pt", weights_only=True) == {"epoch": 3}


# --- string formats: a space registers its own --------------------------------------------------------


def _toy_parse(text: str) -> Genotype:
    """`toy:op,op,...`: a chain, node i reads state i through the i-th op."""
    ops = text.strip().removeprefix("toy:").split(",")
    return Genotype("toy", {"cell": Cell.make([[(op, i)] for i, op in enumerate(ops)], [len(ops)])})


def _toy_write(genotype: Genotype) -> str:
    return "toy:" + ",".join(op for op, _ in genotype.cells["cell"].edges())


TOY = GenotypeFormat("toy", "toy", "toy:", "a toy string", _toy_parse, _toy_write)


@pytest.fixture
def toy_format(monkeypatch):
    """The toy format registered for one test (the registry is restored after it)."""
    monkeypatch.setattr(FORMATS, "_items", dict(FORMATS._items))
    return register_format(TOY)


def test_a_format_a_space_registers_is_read_everywhere_a_genotype_is(toy_format, capsys):
    from nas.cli import main

    genotype = parse_genotype_text("  toy:skip_connect,sep_conv_3x3\n")
    assert genotype.space == "toy" and genotype.cells["cell"].nodes == (
        (("skip_connect", 0),),
        (("sep_conv_3x3", 1),),
    )
    assert format_of("toy:a") is toy_format and format_of("Genotype(") is FORMATS.get("darts")
    assert toy_format.write(genotype) == "toy:skip_connect,sep_conv_3x3"
    with pytest.raises(UserError, match=r"neither genotype JSON, .*NB201 arch string nor a toy string$"):
        parse_genotype_text("hello")
    assert main(["genotype", "show", "toy:a,b"]) == 2  # read as an inline genotype, then checked
    assert "unknown search space 'toy'" in capsys.readouterr().err


def test_convert_offers_every_registered_format(toy_format):
    from nas.cli import build_parser

    args = build_parser().parse_args(["genotype", "convert", "g.json", "--to", "toy"])
    assert args.to == "toy"
    for name in ("json", "darts", "nb201"):
        assert build_parser().parse_args(["genotype", "convert", "g.json", "--to", name]).to == name


@pytest.mark.parametrize("prefix", ["", "{", "Genotype", "Genotype(x", "|"])
def test_a_format_whose_prefix_could_be_read_two_ways_is_refused(prefix, monkeypatch):
    monkeypatch.setattr(FORMATS, "_items", dict(FORMATS._items))
    with pytest.raises(ValueError, match="prefix"):
        register_format(GenotypeFormat("other", "toy", prefix, "another string", _toy_parse, _toy_write))


@pytest.mark.parametrize("space_name", SPACES.names())
def test_every_space_names_a_format_of_its_own_and_numbers_nodes_after_its_inputs(space_name):
    space = SPACES.get(space_name)
    assert space.string_format is None or FORMATS.get(space.string_format).space == space.name
    genotype = space.sample_random(random.Random(0), SpaceConfig())
    space.validate(genotype)  # the space's own checks count nodes from input_states too
    lines = describe(genotype, space.input_states).splitlines()
    firsts = [lines[k + 1] for k, line in enumerate(lines) if " cell (output" in line]
    assert len(firsts) == len(space.cell_types)
    assert all(line.startswith(f"  node {space.input_states} <- ") for line in firsts)


@pytest.mark.parametrize(
    ("space_name", "output"), [("nb201", "state 3"), ("darts", "concat of states 2, 3, 4, 5")]
)
def test_describe_names_a_single_output_state_and_a_concat_of_several(space_name, output):
    space = SPACES.get(space_name)
    genotype = space.sample_random(random.Random(0), SpaceConfig())
    heads = [line for line in describe(genotype, space.input_states).splitlines() if " cell (output" in line]
    assert heads == [f"{name} cell (output = {output}):" for name in space.cell_types]
