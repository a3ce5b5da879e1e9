"""zo.subspace=K: value-bias perturbations along the top right-singular directions of W_o."""

import pytest
import torch

from beft.bias import apply_bias
from beft.zo.estimator import ZOOptimizer
from beft.zo.subspace import top_directions, value_bases, value_map
from tiny import tiny_inputs
from tiny import tiny_model as make_tiny
from train_helpers import adapter, base_args, launch


@pytest.mark.parametrize("family", ["bert", "llama", "mistral"])  # MHA, GQA 4/2, GQA 4/1
def test_value_map_is_the_attention_output_shift(family):
    """Adding b to the value bias shifts the output projection's output by value_map(W_o) b at
    every position (attention rows sum to one), the premise of zo.subspace."""
    torch.manual_seed(0)
    model = make_tiny(family).eval()
    sel = apply_bias(model, "v")
    ((name, bias),) = list(sel.bias_parameters().items())[:1]
    layer = name.rsplit(".", 1)[0]
    o_name = {"bert": layer.replace("attention.self.value", "attention.output.dense")}.get(
        family, layer.replace("v_proj", "o_proj")
    )
    o = model.get_submodule(o_name)
    seen = []
    h = o.register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
    ids = tiny_inputs(2, 7)["input_ids"]
    with torch.no_grad():
        model(input_ids=ids)
        b = torch.randn_like(bias) * 0.1
        bias.add_(b)
        model(input_ids=ids)
    h.remove()
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    m = value_map(o.weight.detach(), bias.numel(), head_dim)
    assert m.shape == (o.out_features, bias.numel())
    torch.testing.assert_close(seen[1] - seen[0], (m @ b).expand_as(seen[0]), atol=1e-5, rtol=1e-4)


def test_top_directions_are_the_leading_right_singular_vectors():
    torch.manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(6, 6))
    v, _ = torch.linalg.qr(torch.randn(5, 5))
    s = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.1])
    m = u[:, :5] @ torch.diag(s) @ v.T
    p = top_directions(m, 2)
    torch.testing.assert_close(p.T @ p, torch.eye(2), atol=1e-5, rtol=0)
    torch.testing.assert_close((p @ p.T), v[:, :2] @ v[:, :2].T, atol=1e-5, rtol=0)  # same span


@pytest.mark.parametrize("update,weight_decay", [("adam", 0.0), ("adam", 0.5), ("sgd", 0.5)])
def test_updates_stay_in_the_span(update, weight_decay):
    """Also with weight decay (it acts on the start's part in the span only)."""
    torch.manual_seed(2)
    basis, _ = torch.linalg.qr(torch.randn(8, 3))
    p = [torch.randn(8), torch.randn(4)]
    start = [q.clone() for q in p]
    opt = ZOOptimizer(
        p,
        lr=0.1,
        eps=1e-3,
        n=1,
        seed=0,
        update=update,
        bases=[basis, None],
        weight_decay=weight_decay,
    )
    for s in range(5):
        opt.step_examples(
            lambda offs: ((p[0] + offs[0] - 1) ** 2).sum(-1) + (offs[1] ** 2).sum(-1), s, [0, 1], 2
        )
    moved = p[0] - start[0]
    assert moved.abs().max() > 1e-3
    torch.testing.assert_close(
        basis @ (basis.T @ moved), moved, atol=1e-6, rtol=0
    )  # within span(basis)


def test_value_bases_refuses_other_biases():
    model = make_tiny("llama")
    sel = apply_bias(model, "q")
    read = lambda d: {k: v.detach() for k, v in d.items()}  # noqa: E731
    with pytest.raises(ValueError, match="applies to value biases"):
        value_bases(model, list(sel.bias_parameters()), 4, read)
    llama = make_tiny("llama")
    sel = apply_bias(llama, "v")  # GQA 4/2: 2 kv heads x 16 = 32 values per layer
    with pytest.raises(
        ValueError, match="zo.subspace=100 exceeds the 32 values of .*; use at most 32"
    ):
        value_bases(llama, list(sel.bias_parameters()), 100, read)
    neox = make_tiny("gpt_neox")
    sel = apply_bias(neox, "v")
    with pytest.raises(ValueError, match="fused"):
        value_bases(neox, list(sel.bias_parameters()), 4, read)


def test_loop_with_subspace(tiny_dirs, need_data, tmp_path):
    zo = {
        "optim.kind": "zo",
        "zo.update": "adam",
        "lr": "1e-2",
        "zo.perturb": "example",
        "zo.subspace": 3,
    }
    p = launch(base_args(tiny_dirs["llama"], tmp_path / "l", **zo))
    assert p.returncode == 0, p.stderr[-3000:]
    make_tiny("llama")
    read = lambda d: {k: v.detach() for k, v in d.items()}  # noqa: E731
    a = adapter(tmp_path / "l")  # added zero biases: the adapter is the movement
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"])
    sel = apply_bias(base, "v")
    bases = value_bases(base, list(sel.bias_parameters()), 3, read)
    for n, t in a.items():
        assert t.abs().max() > 0
        torch.testing.assert_close(
            bases[n] @ (bases[n].T @ t.float()), t.float(), atol=1e-5, rtol=0
        )
    bad = launch(base_args(tiny_dirs["llama"], tmp_path / "q", **{**zo, "bias": "q"}))
    assert (
        bad.returncode == 2
        and "zo.subspace applies to value biases" in bad.stderr
        and "Traceback" not in bad.stderr
    )
