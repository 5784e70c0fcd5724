"""python -m worker.trainer.launch --processes N SPEC --out DIR [...]: one training job on N processes (DDP, one per
GPU), started by torchrun's agent, run here in this process.

The job runner spawns this in place of `python -m worker.trainer` when a run asks for several GPUs
(`resources.gpus`); the arguments after --processes are the trainer's own. Rank 0 writes the reports to stdout
(the pipe the runner reads) and the checkpoints and adapter; the others only train with it (worker.trainer.loop).

The parent-death guard holds at both levels: this agent dies with the job runner (die_with_parent), and each
rank dies with this agent, its own parent, whose pid it is given in place of the runner's.
"""

from __future__ import annotations

import argparse
import os
import sys

from worker.planning.reports import PARENT_PID_ENV


def torchrun_args(processes: int, trainer_args: list[str]) -> list[str]:
    """torchrun's arguments: one host (a rendezvous on a free local port), N ranks of `python -m worker.trainer`."""
    return ["--standalone", f"--nproc-per-node={processes}", "--module", "worker.trainer", *trainer_args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.trainer.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, required=True, help="ranks to start (one per GPU)")
    args, trainer_args = parser.parse_known_args(argv)
    from worker.trainer.__main__ import die_with_parent

    die_with_parent()
    os.environ[PARENT_PID_ENV] = str(os.getpid())  # each rank's parent is this agent
    from torch.distributed.run import main as torchrun

    try:
        torchrun(torchrun_args(args.processes, trainer_args))
    except Exception as exc:  # a rank failed: its error event is already on stdout (worker.trainer.__main__)
        print(f"torchrun: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
