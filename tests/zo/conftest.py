import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import need_data, tiny_dirs  # noqa: E402,F401  (fixtures)
