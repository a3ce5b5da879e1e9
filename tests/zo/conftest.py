from train_helpers import need_data, tiny_dirs  # noqa: F401  (fixtures)
