"""Run by test_generation_sharded.py under a 2-rank launcher: set a generation task up, make each
rank generate a different number of tokens (rank r: 2 + 10 r, no newline stop), evaluate, print
what each rank generated. A rank left waiting in a collective exits after TIMEOUT seconds with
its stack (faulthandler), so a hang is a non-zero exit, not a stuck test."""

import faulthandler
import sys

import beft.tasks.generation as generation
from beft.backends import dist
from beft.commands.train import parse
from beft.train import Trainer

TIMEOUT = 120

trainer = Trainer(parse(sys.argv[1:]))
trainer.setup()
generated = []
plain = generation.generate_answers


def uneven(model, tokenizer, batch, max_new_tokens=50, synced_gpus=False):
    texts, steps = plain(model, tokenizer, batch, 2 + 10 * dist.rank(), synced_gpus)
    generated.append(steps)
    return texts, steps


generation.generate_answers = uneven
generation.StopOnNewline.__call__ = lambda self, input_ids, scores, **kw: input_ids.new_zeros(
    input_ids.shape[0], dtype=bool
)
faulthandler.dump_traceback_later(TIMEOUT, exit=True)
metrics = trainer.evaluate()
faulthandler.cancel_dump_traceback_later()
print(f"rank {dist.rank()} generated {generated} f1={metrics['f1']:.4f}", flush=True)
trainer.backend.cleanup()
