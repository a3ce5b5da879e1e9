from train_helpers import need_data, reference, tiny_dirs  # noqa: F401  (fixtures)
