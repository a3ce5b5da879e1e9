from sweep_helpers import slurm, tiny_bert  # noqa: F401  (fixtures)
