import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)

DATA_DIR = Path(os.environ.get("BEFT_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture
def data_dir():
    if not (DATA_DIR / "glue").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")
    return DATA_DIR
