"""TrainState: the checkpoint dict round trip and which evaluation is the best."""

import math

from beft.train.state import TrainState


def test_round_trip_keeps_unknown_keys_and_the_on_disk_names():
    d = {"epoch": 1, "batch_in_epoch": 2, "step": 10, "best": {"acc": 0.5}, "best_epoch": 1,
         "evals": [], "train_seconds": 3.0, "zo": {"seed": 4}, "future_key": [1]}  # fmt: skip
    st = TrainState.from_dict(d)
    assert st.step_state == {"seed": 4} and st.other == {"future_key": [1]}
    assert st.to_dict() == d


def test_best_is_the_highest_and_nan_never_wins():
    st, nan = TrainState(), math.nan
    picks = [st.record_eval(e, {"r": v}, "r") for e, v in enumerate([nan, 0.2, nan, 0.5, 0.5, 0.1])]
    assert picks == [True, True, False, True, False, False]
    assert st.best == {"r": 0.5} and st.best_epoch == 3 and len(st.evals) == 6
