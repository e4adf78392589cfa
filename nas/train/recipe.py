"""Which retrain recipe `nas train` uses when no `--config` is given: the one its genotype's space names.

A space names its standard retraining protocol as a YAML file under the project's `configs/train/`
(`SearchSpace.train_recipe`: DARTS' 600-epoch CIFAR-10 protocol, NAS-Bench-201's 200-epoch one), so a
cell is never retrained silently by another space's recipe. A space that names none, or an installation
without the `configs/` folder, is refused in one line that says to pass `--config`.
"""

from __future__ import annotations

from pathlib import Path

from nas.arch.space import SearchSpace
from nas.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]  # the project root, which holds configs/


def default_recipe(space: SearchSpace) -> Path:
    """The space's retrain recipe file.

    Raises:
        UserError: the space names none, or its file is not there.
    """
    name = getattr(space, "train_recipe", None)
    if name is None:
        raise UserError(f"nas train needs --config FILE: space {space.name} names no retrain recipe "
                        "(see configs/train/)")  # fmt: skip
    path = ROOT / name
    if not path.is_file():
        raise UserError(f"nas train needs --config FILE: space {space.name}'s recipe {name} is not in this "
                        "installation")  # fmt: skip
    return path
