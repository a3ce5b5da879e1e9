import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BEFT_DATA_DIR", ROOT.parent / "shared" / "data"))
