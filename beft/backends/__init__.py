"""The only modules that import deepspeed, torch.distributed FSDP, bitsandbytes or submitit."""
