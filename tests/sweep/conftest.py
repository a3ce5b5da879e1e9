import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))
from sweep_helpers import slurm, tiny_bert  # noqa: F401  (fixtures)
