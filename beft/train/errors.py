"""The recipe's one-line error for the user (beft.cli prints it, exit 2)."""


class TrainingError(ValueError):
    pass
