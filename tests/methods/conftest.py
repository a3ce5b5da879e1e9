import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "train"))
from train_helpers import need_data, tiny_dirs  # noqa: F401  (fixtures)
