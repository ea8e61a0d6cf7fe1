"""Running one tamenet job on several processes, through PyTorch's own engine (`torch.distributed`, `torchrun`).

* `launch`: `--nproc N` on the command line re-runs the same command under ``torchrun`` (one machine), and checks
  N against the machine before anything starts;
* `group`: what a process knows about its place in the job (rank, world size, the main rank that writes), read
  from the environment ``torchrun`` sets, and the process group joined with a timeout that ends in one line
  instead of a hang.

Which job uses which: data-parallel training (`tamenet train`, I2) splits every batch over the ranks; a search
or cross-validation splits its population's chunks over them. This package imports nothing heavy at import time.
"""
