"""The zeroth-order Step (beft/train/step.py's protocol): forward-only training of the selected
biases (or their reparametrisation); a new task head either trains by backpropagation through the
head alone on gathered copies (zo.head=first_order, beft/zo/head.py, every backend), is probed
before the first step (zo.probe, beft/zo/probe.py), or stays frozen."""

from __future__ import annotations

import time

import torch
from torch import nn

from ..backends import dist
from ..train.batches import to_device
from ..train.errors import TrainingError


class ZOStep:
    def __init__(
        self,
        cfg,
        model: nn.Module,
        params: dict[str, torch.Tensor],
        selection,
        backend,
        task,
        head_lr: float,
        lr_fn,
    ):
        from .estimator import ZOOptimizer

        self.cfg, self.model, self.params, self.backend, self.task = (
            cfg,
            model,
            params,
            backend,
            task,
        )
        self.head_lr, self.lr_fn = head_lr, lr_fn
        head = set(selection.head) if selection is not None else set()
        head_names = [n for n in params if n in head]
        self.biases = [
            n for n in params if n not in head
        ]  # the biases, or their reparametrisation's tensors
        self.head = head_names if cfg.zo.head == "first_order" else []
        self.sites = self._example_sites() if cfg.zo.perturb == "example" else []
        if cfg.zo.probe and (selection is None or not selection.head):
            raise TrainingError(
                "zo.probe=true fits a new task head, and this run has none (decoder tasks "
                "score with the LM head); drop zo.probe"
            )
        self.gathered_head = None
        if (
            self.head or cfg.zo.probe
        ):  # the new head trains (or is probed) first-order on gathered copies
            from .head import GatheredHead
            from .probe import head_module, head_root

            try:
                root = head_root(head_names)
            except ValueError as e:  # e.g. DeBERTa-v2: a new pooler and classifier
                raise TrainingError(
                    f"{e}; use zo.head=freeze (and no zo.probe) for this model"
                ) from None
            self.gathered_head = GatheredHead(
                head_module(model, head_names),
                root,
                {n: params[n] for n in head_names},
                backend,
                cfg,
                head_lr,
                lr_fn,
            )
        self.zo = ZOOptimizer(
            [params[n] for n in self.biases],
            lr=cfg.lr,
            eps=cfg.zo.eps,
            n=cfg.zo.n,
            seed=cfg.seed,
            update=cfg.zo.update,
            betas=cfg.optim.betas,
            weight_decay=cfg.optim.weight_decay,
            full_access=backend.full_access,
            bases=self._bases(selection),
            difference=cfg.zo.difference,
        )

    def _bases(self, selection) -> list | None:
        cfg = self.cfg
        if cfg.zo.subspace:
            from .subspace import value_bases

            try:
                found = value_bases(
                    self.model,
                    self.biases,
                    cfg.zo.subspace,
                    self.backend.full_state,
                    cfg.bias_patterns,
                )
            except ValueError as e:
                raise TrainingError(str(e)) from None
            return [found[n] for n in self.biases]
        if selection is not None:
            # fused qkv biases (GPT-NeoX, Phi-3): only the selected slice is perturbed and updated
            # (first-order masks the gradient; ZO draws z over those entries alone, on every
            # backend)
            sliced = {s.param_name: s.index.cpu() for s in selection.sites if s.partial}
            if any(n in sliced for n in self.biases):
                return [sliced.get(n) for n in self.biases]
        return None

    # -- the Step protocol -------------------------------------------------------------------------
    def run(self, model, batches, step: int) -> tuple[float, float]:
        losses = []
        for batch in batches:
            loss, grad_norm = self.one(model, batch, step)
            losses.append(loss)
        return sum(losses) / len(losses), grad_norm

    def state_dict(self) -> dict:
        state = self.zo.state_dict()
        if self.gathered_head is not None:
            state["head"] = self.gathered_head.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.zo.load_state_dict(state)
        if self.gathered_head is not None and "head" in state:
            self.gathered_head.load_state_dict(state["head"])

    def before_training(self, run) -> None:
        if self.cfg.zo.probe:
            self.probe_head(run)

    # -- one ZO step
    # ---------------------------------------------------------------------------------
    def one(self, model, batch: dict, step: int) -> tuple[float, float]:
        """One ZO step on the biases (two no-grad forwards per perturbation, or one each plus a
        shared unperturbed one with zo.difference=forward; eval mode so that all see the same
        network), then the optional first-order step of the head. The head's step reuses the first
        ZO forward: its input (features at the +eps point, eps-close to the current ones; with
        forward differences the current ones exactly) is recorded there, so the head costs no
        extra pass through the model."""
        cfg = self.cfg
        feats: list[torch.Tensor] = []
        hook = None
        if self.head:
            hook = self.gathered_head.module.register_forward_hook(
                lambda m, args, out: feats.append(args[0].detach()) if not feats else None
            )

        def loss_fn() -> float:
            with self.backend.autocast():
                return dist.mean(float(self.task.loss(model, batch)))

        lr = cfg.lr * self.lr_fn(step)
        model.eval()
        try:
            if cfg.zo.perturb == "example":
                local = int(batch["labels"].shape[0])
                out = self.zo.step_examples(
                    self.example_losses_fn(model, batch),
                    step,
                    list(range(dist.rank() * local, (dist.rank() + 1) * local)),
                    cfg.batch_size,
                    lr,
                    reduce=dist.sum_tensors,
                )
            else:
                out = self.zo.step(loss_fn, step, lr)
        finally:
            if hook is not None:
                hook.remove()
            self.backend.release()
        model.train()
        if self.head and feats:
            with self.backend.autocast():
                self.gathered_head.step(feats[0], batch["labels"], self.task.loss_from_logits)
        return out["loss"], abs(out["projected_grad"])

    def _example_sites(self) -> list[tuple[nn.Module, list[int], object]]:
        """zo.perturb=example: (layer, indices into biases, its BiasDelta or None) per layer whose
        output a trained tensor shifts: a layer's own bias, or the tensors of its bias
        reparametrisation.
        """
        from ..reparam.apply import PREFIX

        sites: dict[str, list] = {}
        for i, n in enumerate(self.biases):
            if f".{PREFIX}.inner." in n:
                layer = n.split(f".{PREFIX}.")[0]
                sites.setdefault(
                    layer,
                    [
                        self.model.get_submodule(layer),
                        [],
                        self.model.get_submodule(f"{layer}.{PREFIX}"),
                    ],
                )
            elif n.endswith(".bias"):
                layer = n.rsplit(".", 1)[0]
                sites.setdefault(layer, [self.model.get_submodule(layer), [], None])
            else:
                raise TrainingError(
                    f"zo.perturb=example: {n} is neither a layer's bias nor a bias "
                    "reparametrisation's tensor; use zo.perturb=batch"
                )
            sites[layer][1].append(i)
        return [tuple(v) for v in sites.values()]

    def example_losses_fn(self, model, batch: dict):
        """zo.perturb=example: offsets (per trained tensor, per example) -> per-example losses. Each
        example's rows see their own change of the layer's bias, added to the layer's output: the
        offset itself for a bias (the same as a bias of b + offset on those rows), or
        delta(p + offset) - delta(p) for a reparametrised bias."""
        from ..tasks.scoring import row_examples

        rows = row_examples(batch)
        names = self.biases
        full = None
        if any(bd is not None for _, _, bd in self.sites):
            full = self.backend.full_state(
                {n: self.params[n] for n in names}
            )  # gathered copies (ZeRO-3, FSDP2)

        def shift(
            idx: list[int], bd, offsets: list[torch.Tensor]
        ) -> torch.Tensor:  # (B, out_features)
            if bd is None:
                return offsets[idx[0]]
            keys = [names[i].split(".inner.", 1)[1] for i in idx]
            p = {k: full[names[i]].float() for k, i in zip(keys, idx)}
            base = bd.place(bd.inner.compute(p))
            return (
                torch.stack(
                    [
                        bd.place(
                            bd.inner.compute(
                                {k: p[k] + offsets[i][e].float() for k, i in zip(keys, idx)}
                            )
                        )
                        for e in range(offsets[idx[0]].shape[0])
                    ]
                )
                - base
            )

        def hook_for(off: torch.Tensor):
            def hook(module, args, out):
                o = off[rows.to(off.device)].to(device=out.device, dtype=out.dtype)
                return out + o.view(o.shape[0], *([1] * (out.dim() - 2)), o.shape[-1])

            return hook

        def losses(offsets: list[torch.Tensor] | None) -> torch.Tensor:  # None: unperturbed
            hooks = (
                []
                if offsets is None
                else [
                    layer.register_forward_hook(hook_for(shift(idx, bd, offsets)))
                    for layer, idx, bd in self.sites
                ]
            )
            try:
                with self.backend.autocast():
                    return self.task.example_losses(model, batch).float()
            finally:
                for h in hooks:
                    h.remove()

        return losses

    def probe_head(self, run) -> None:
        """zo.probe: fit the new head on frozen features before the first ZO step. Each rank
        records the head inputs of its share of the training set (equal shares, so every rank
        runs the same number of forwards; up to world - 1 examples left out). run: the recipe
        (its split, tokenizer, state and log)."""
        from .probe import head_inputs

        cfg, world, train = self.cfg, dist.world_size(), run.splits.train
        n = len(train) // world * world
        mine = list(range(n))[dist.rank() :: world]
        bs = cfg.data.eval_batch_size
        batches = (
            to_device(run.collate([train[i] for i in mine[j : j + bs]]), self.backend.device)
            for j in range(0, len(mine), bs)
        )
        t = time.perf_counter()
        try:
            with self.backend.autocast():
                xs, ys = head_inputs(
                    self.backend.model, self.gathered_head.module, batches, self.task.logits
                )
        finally:
            self.backend.release()
        report = self.gathered_head.fit(
            xs, ys, self.task.loss_from_logits, cfg.zo.probe_steps, self.head_lr, n
        )
        report["seconds"] = time.perf_counter() - t
        run.state.probe = report
        if run.rank0:
            run.log({"step": 0, "probe": report})
            print(
                f"probe: head fitted on {report['examples']} examples' features in"
                f" {report['seconds']:.1f}s (loss {report['loss_before']:.4f} ->"
                f" {report['loss_after']:.4f})",
                flush=True,
            )
