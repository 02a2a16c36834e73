"""Which implementation of a kernel runs on which platform, decided when JAX *lowers* a function
for a platform, not when it traces it on the host.

One traced function can be lowered for a platform other than the host's
(``jax.jit(f).trace(*args).lower(lowering_platforms=("cuda",))``) or for several at once (a
multi-platform ``jax.export``). ``per_platform`` binds a primitive whose lowering picks the
branch of each platform being lowered for:

  platform     backend="auto"                           backend="pallas"
  cpu          native custom call (``kernels.cpu``)     error: Pallas compiles only for GPU/TPU
               where built, else XLA
  cuda, rocm   Pallas, Triton backend                   Pallas, Triton backend
  tpu          Pallas, Mosaic TPU                       Pallas, Mosaic TPU
  other        XLA                                      error

The table is made once per call (``backend.plan``); a branch only runs its platform's entry.

The GPU backend is Triton, chosen here and nowhere else (``compiler_params``). Mosaic GPU, the
default of ``pl.pallas_call`` on GPU since jax 0.10, needs every shared-memory slice a multiple
of 128 elements and warpgroup-level programming; our one-word column slices (the K-major
accumulation shared with Mosaic TPU) are rejected there, and ``pl.pallas_call`` itself is
deprecated for Mosaic GPU in favour of ``plgpu.kernel``. Pallas Triton lowers every kernel here
on jax 0.10.2 and 0.11 (deprecated in 0.11, with a warning, still supported), and Triton
compiles the int8 tensor-core dot of the unpacking path to ``wgmma`` on Hopper.

Why a primitive and not ``lax.platform_dependent``: that prunes the other branches only when
lowering for a single platform. Lowered for several, it lowers every branch for every platform,
and ``pallas_call`` refuses the CPU (jax 0.10.2 and 0.11.2). Here each branch is lowered with
``mlir.lower_fun`` under the platforms of that branch alone, so a multi-platform export holds
the native CPU call, the Triton kernel and the Mosaic TPU kernel side by side.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import jax
from jax.extend import backend as jex_backend
from jax.extend import core as jex_core
from jax.interpreters import batching, mlir

from bnnlab.kernels import cpu

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
GPU_PLATFORMS = ("cuda", "rocm")
# The GPU that cross-lowering targets when none is attached (jax 0.11's Triton lowering reads
# the compute capability of the target device).
DEFAULT_CROSS_GPU = "NVIDIA H200"


def compiler_params(platform: str, *, num_warps: int | None = None, num_stages=None):
    """The ``pallas_call`` compiler parameters for ``platform``: Triton's on GPU (this selects
    the Triton backend), Mosaic TPU's on TPU."""
    if platform in GPU_PLATFORMS:
        from jax.experimental.pallas import triton as pl_triton

        return pl_triton.CompilerParams(num_warps=num_warps, num_stages=num_stages)
    if platform == "tpu":
        from jax.experimental.pallas import tpu as pl_tpu

        return pl_tpu.CompilerParams()
    raise ValueError(f"No compiled Pallas backend for platform {platform!r}; use {PLATFORMS[1:]}.")


def host_platform() -> str:
    """The platform of the default device, with GPUs named "cuda" or "rocm" as lowering does."""
    platform = jax.default_backend()
    if platform == "gpu":
        version = jex_backend.get_backend().platform_version.lower()
        return "rocm" if "rocm" in version else "cuda"
    return platform


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a primitive parameter
class _Branches:
    """Flat (leaves in, leaves out) functions per platform, and the output avals."""

    by_platform: dict[str, Callable]
    default: Callable
    out_avals: tuple[jax.ShapeDtypeStruct, ...]

    def select(self, platform: str) -> Callable:
        return self.by_platform.get(platform, self.default)

    def map(self, transform: Callable[[Callable], Callable], out_avals) -> _Branches:
        return _Branches(
            {p: transform(f) for p, f in self.by_platform.items()},
            transform(self.default),
            out_avals,
        )


per_platform_p = jex_core.Primitive("bnnlab_per_platform")
per_platform_p.multiple_results = True


@per_platform_p.def_impl
def _impl(*args, branches: _Branches):
    # Eagerly: the host's branch, op by op (no new compilation per call).
    return branches.select(host_platform())(*args)


@per_platform_p.def_abstract_eval
def _abstract_eval(*avals, branches: _Branches):
    like = avals[0]  # carries the manual axes of a shard_map body, if any
    return [like.update(shape=o.shape, dtype=o.dtype, weak_type=False) for o in branches.out_avals]


def _lowering(platform: str | None):
    def rule(ctx, *args, branches: _Branches):
        fn = branches.default if platform is None else branches.select(platform)
        return mlir.lower_fun(fn, multiple_results=True)(ctx, *args)

    return rule


mlir.register_lowering(per_platform_p, _lowering(None))
for _platform in PLATFORMS:
    mlir.register_lowering(per_platform_p, _lowering(_platform), platform=_platform)


def _batching_rule(args, dims, *, branches: _Branches):
    args = [
        a if d is None else jax.numpy.moveaxis(a, d, 0) for a, d in zip(args, dims, strict=True)
    ]
    in_axes = [None if d is None else 0 for d in dims]
    size = next(a.shape[0] for a, d in zip(args, dims, strict=True) if d is not None)

    def vmapped(fn):
        return jax.vmap(fn, in_axes=in_axes)

    out_avals = tuple(jax.ShapeDtypeStruct((size, *o.shape), o.dtype) for o in branches.out_avals)
    outs = per_platform_p.bind(*args, branches=branches.map(vmapped, out_avals))
    return outs, [0] * len(outs)


batching.primitive_batchers[per_platform_p] = _batching_rule


def per_platform(args, branches: dict[str, Callable], default: Callable, like=None):
    """``branches[p](*args)`` for the platform ``p`` being lowered for (``default`` for the
    others); ``args`` is a tuple of pytrees of arrays, the result any pytree of arrays.

    A branch is traced only when lowered for its platform, so one that raises (an op that has
    no kernel there) raises exactly when the function is compiled for that platform. The
    output structure comes from ``like`` (default: ``default``), traced abstractly at bind
    time; every branch must return the same.
    """
    unknown = set(branches) - set(PLATFORMS)
    if unknown:
        raise ValueError(f"Unknown platforms {sorted(unknown)}; use {PLATFORMS}.")
    leaves, in_tree = jax.tree.flatten(args)
    shapes = jax.eval_shape(like or default, *args)
    out_tree = jax.tree.structure(shapes)

    def flat(fn):
        def run(*flat_args):
            out_leaves, tree = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, flat_args)))
            if tree != out_tree:
                raise TypeError(f"Branch {fn} returns {tree}, the others {out_tree}.")
            return out_leaves

        return run

    out_avals = tuple(jax.ShapeDtypeStruct(s.shape, s.dtype) for s in jax.tree.leaves(shapes))
    bound = _Branches({p: flat(f) for p, f in branches.items()}, flat(default), out_avals)
    outs = per_platform_p.bind(*map(jax.numpy.asarray, leaves), branches=bound)
    return jax.tree.unflatten(out_tree, outs)


# Custom calls of ours that jax.export must be told to accept: they carry no compatibility
# guarantee across jax versions (the Triton kernel is compiled by the jaxlib that loads it;
# the native one needs this package's library), so an export holding them runs with the
# versions it was made with.
UNGUARANTEED_CALLS = ("__gpu$xla.gpu.triton", cpu.TARGET, cpu.PANELS_TARGET, cpu.CONV_TARGET)


def export_safety_checks() -> list:
    """``disabled_checks`` for ``jax.export.export`` of a function that uses these kernels."""
    from jax import export

    return [export.DisabledSafetyCheck.custom_call(t) for t in UNGUARANTEED_CALLS]


@contextlib.contextmanager
def cross_lowering_target(platforms, gpu: str = DEFAULT_CROSS_GPU):
    """Context for lowering for ``platforms`` on a host without their devices: names the GPU
    that Pallas Triton should compile for (jax 0.11 asks the target device for its compute
    capability; 0.10 does not need it)."""
    if not any(p in GPU_PLATFORMS for p in platforms):
        yield
        return
    device = jax.sharding.AbstractDevice(device_kind=gpu, num_cores=None, platform="gpu")
    mesh = jax.sharding.AbstractMesh((1,), ("_bnnlab",), abstract_device=device)
    with jax.sharding.use_abstract_mesh(mesh):
        yield


def lower_text(fn, *args, platforms=("cuda",), gpu: str = DEFAULT_CROSS_GPU) -> str:
    """StableHLO text of ``jax.jit(fn)`` lowered for ``platforms`` (from any host)."""
    with cross_lowering_target(platforms, gpu):
        return jax.jit(fn).trace(*args).lower(lowering_platforms=tuple(platforms)).as_text()
