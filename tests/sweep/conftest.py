from sweep_helpers import slurm, tiny_bert  # noqa: F401  (fixtures)
from train_helpers import need_data, reference, tiny_dirs  # noqa: F401  (fixtures: test_multinode)
