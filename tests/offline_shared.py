"""Shared memory per block of each kernel config, compiled for a GPU that is not here, in
child processes that share the machine's cores.

Triton fixes a block's shared memory when it lowers the kernel to LLVM IR (its `llir`
stage); the stages after it (PTX, then ptxas) cost about half of a compile on this machine
and cannot change that number, so a child stops there. The children run without
TRITON_INTERPRET: the interpreter replaces Triton's jit helpers at import. Run as a module,
a child reads its request (JSON) on stdin and prints one JSON list of bytes per config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _Lowered(Exception):
    def __init__(self, shared: int) -> None:
        super().__init__(shared)
        self.shared = shared


def _stop_after_llir() -> None:
    from triton.backends.nvidia.compiler import CUDABackend

    add_stages = CUDABackend.add_stages

    def stages_to_llir(self, stages, options, *more):
        add_stages(self, stages, options, *more)
        lower = stages["llir"]

        def llir(src, metadata):
            lower(src, metadata)
            raise _Lowered(int(metadata["shared"]))

        stages["llir"] = llir

    CUDABackend.add_stages = stages_to_llir


def _child(request: dict) -> list[int]:
    import triton

    from kernels import implicit_gemm as ig

    _stop_after_llir()
    capability, padded, precision, scalars = request["options"]
    out = []
    for kwargs, warps, stages in request["configs"]:
        config = triton.Config(kwargs, num_warps=warps, num_stages=stages)
        try:
            compiled = ig.compile_offline(
                config,
                capability,
                padded=padded,
                precision=precision,
                scalars=tuple(scalars) if scalars else None,
            )
            out.append(int(compiled.metadata.shared))  # a full compile found in the cache
        except _Lowered as lowered:
            out.append(lowered.shared)
    return out


def compiler_env(**extra: str) -> dict[str, str]:
    """The environment of a child that compiles with Triton: without TRITON_INTERPRET (the
    interpreter replaces Triton's jit at import) and with the repository importable."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def run_compiling(argv: list[str], **extra_env: str) -> subprocess.CompletedProcess:
    """``python argv`` from the repository's root in such a child, its output captured."""
    return subprocess.run(
        [sys.executable, *argv],
        env=compiler_env(**extra_env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def shared_bytes(
    configs: list,
    capability: int,
    *,
    padded: bool,
    precision: str,
    scalars: tuple[int, ...] | None = None,
    workers: int = 2,
) -> list[int]:
    """Bytes of shared memory per block of each ``triton.Config`` in ``configs``, as
    ``kernels.implicit_gemm.compiled_shared_bytes`` counts them, split over ``workers``
    child processes."""
    env = compiler_env()
    parts = [list(range(i, len(configs), workers)) for i in range(workers)]
    children = []
    for part in parts:
        request = {
            "configs": [
                [configs[i].kwargs, configs[i].num_warps, configs[i].num_stages] for i in part
            ],
            "options": [capability, padded, precision, scalars],
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.offline_shared"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None
        child.stdin.write(json.dumps(request))
        child.stdin.close()
        children.append(child)
    out = [0] * len(configs)
    for part, child in zip(parts, children):
        assert child.stdout is not None and child.stderr is not None
        stdout, stderr = child.stdout.read(), child.stderr.read()
        if child.wait() != 0:
            raise RuntimeError(f"compiling for sm_{capability} failed:\n{stderr[-3000:]}")
        for i, nbytes in zip(part, json.loads(stdout.strip().splitlines()[-1])):
            out[i] = nbytes
    return out


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.stdin.read()))))
