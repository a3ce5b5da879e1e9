import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))
from train_helpers import need_data, reference, tiny_dirs  # noqa: F401  (fixtures)
