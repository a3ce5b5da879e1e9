import os

import pytest
import torch

from paths import DATA_DIR
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)



@pytest.fixture
def data_dir():
    if not (DATA_DIR / "glue").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set BEFT_DATA_DIR)")
    return DATA_DIR
