"""Shared plumbing of the image feature networks: input checks, batched no-grad forward, weight-path errors."""

from __future__ import annotations

import collections
import contextlib
import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from metrics._validate import check_device, check_positive_int
from metrics.errors import InputError
from metrics.features import PRECISIONS, check_images
from metrics.weights import WeightFile

#: whether :func:`run_batched` compiles the network's forward (set by :func:`compiled_forward` around a feature
#: network's ``extract_outputs``: a context, so that network modules, plugins included, need no extra argument)
_COMPILE: contextvars.ContextVar[bool] = contextvars.ContextVar("feature_compile", default=False)


@contextlib.contextmanager
def compiled_forward(enabled: bool) -> Iterator[None]:
    """Within the block, :func:`run_batched` on CUDA runs ``torch.compile`` of the forward, every batch at the full
    batch size (the last one padded, its padding rows dropped): one shape, one compilation."""
    token = _COMPILE.set(bool(enabled))
    try:
        yield
    finally:
        _COMPILE.reset(token)


def missing_weights(what: str, path: Path | None, how: str | WeightFile) -> FileNotFoundError:
    """The error for an absent weight file/dir: names it, where it was looked for and how to obtain it (``how``: the
    remedy, or the registered file, whose fetch command and source URL are then the remedy)."""
    where = "not set (no weights path was given)" if path is None else f"not found at {path}"
    if isinstance(how, WeightFile):
        how = (f"fetch it on a connected host with `python -m kaleido.weights fetch --config C` (or download "
               f"{how.url}, ~{how.size_mb} MB) into that place, or set the feature "
               "network's weights path")
    return FileNotFoundError(f"{what} weights {where}; {how}")


@contextlib.contextmanager
def loading_weights(what: str, path: str | Path, expected: str) -> Iterator[None]:
    """Turn any failure to load ``path`` as ``what``'s weights (another network's file, an ``.npz``, a truncated
    download) into one :class:`InputError` naming the file and the format expected, instead of a traceback that
    can list thousands of state-dict keys."""
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as err:  # torch/pickle/zip/TorchScript/transformers errors all mean "not these weights"
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise InputError(f"{path}: cannot be loaded as {what} weights ({type(err).__name__}: {first}); expected "
                         f"{expected}") from None


def out_of_memory(err: BaseException, images: np.ndarray, batch_size: int, device: torch.device) -> InputError:
    """The error for a batch that does not fit: the batch's size and the two remedies."""
    n, h, w = images.shape[:3]
    return InputError(f"out of memory on {device} extracting features of a batch of {min(batch_size, n)} images of "
                      f"{h}x{w} ({type(err).__name__}); lower the batch size (--batch-size / "
                      "metrics.feature_batch_size) or downscale the images")


#: batches read ahead of the one the network runs
PREFETCH_BATCHES = 3
#: threads reading batches (the reads release the GIL: shard files through ``os.preadv``, arrays through numpy's copy)
READ_THREADS = 2


def _read_rows(images: np.ndarray, start: int, out: np.ndarray) -> None:
    """Rows ``start .. start + len(out) - 1`` of ``images`` into ``out``: straight from the shard files for an array
    that offers ``read_into`` (:class:`metrics.store.ShardedArray`), else through one copy."""
    if hasattr(images, "read_into"):
        images.read_into(start, out)
    else:
        np.copyto(out, np.asarray(images[start:start + len(out)]))


def device_batches(images: np.ndarray, batch_size: int, *, pad: bool, device: torch.device
                   ) -> Iterator[tuple[int, torch.Tensor]]:
    """(rows, uint8 (batch_size or fewer, H, W, 3) tensor on ``device``) for consecutive batches of ``images``, read
    by :data:`READ_THREADS` background threads :data:`PREFETCH_BATCHES` ahead of the caller, so that the reads
    overlap the network's work.

    Each batch is read straight into one of a ring of buffers (no temporary; on CUDA page-locked, so no second copy
    to pin it) and, on CUDA, copied to the GPU on a stream of its own, so that the copy of the next batch runs
    while the caller's stream computes on this one (the caller's stream waits for each batch's copy, nothing else);
    a buffer is refilled only once the copy out of it has completed. On the CPU the batch handed out is the buffer
    itself: valid until the caller draws :data:`PREFETCH_BATCHES` + 1 more. ``pad``: the last batch filled up to
    ``batch_size`` with copies of its last image (``rows`` counts the real ones)."""
    cuda = device.type == "cuda"
    starts = range(0, len(images), batch_size)
    ring = PREFETCH_BATCHES + 2  # the batch being copied, the one the caller holds, those read ahead
    buffers = [torch.empty((batch_size, *images.shape[1:]), dtype=torch.uint8, pin_memory=cuda)
               for _ in range(min(ring, len(starts)))]
    copied: list[torch.cuda.Event | None] = [None] * len(buffers)  # when each buffer's last copy has completed
    feed = torch.cuda.Stream(device) if cuda else None  # host-to-GPU copies, beside the caller's computation

    def load(index: int) -> tuple[int, torch.Tensor]:
        rows, slot = min(batch_size, len(images) - starts[index]), index % len(buffers)
        if copied[slot] is not None:
            copied[slot].synchronize()  # the GPU has taken what this buffer held
        # written through numpy: the buffers may be created under the caller's inference mode, and this thread is not
        # in it (torch refuses in-place updates of inference tensors outside inference mode)
        host = buffers[slot].numpy()
        _read_rows(images, starts[index], host[:rows])
        if pad and rows < batch_size:  # the compiled shape: repeat the last image, the caller drops its outputs
            host[rows:] = host[rows - 1]
        return rows, buffers[slot] if pad else buffers[slot][:rows]

    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="feature-batches") as pool:
        ahead = collections.deque(pool.submit(load, index) for index in range(min(PREFETCH_BATCHES, len(starts))))
        for index in range(len(starts)):
            rows, batch = ahead.popleft().result()
            if cuda:
                with torch.cuda.stream(feed):
                    batch = batch.to(device, non_blocking=True)
                    copied[index % len(buffers)] = event = torch.cuda.Event()
                    event.record(feed)
                compute = torch.cuda.current_stream(device)
                compute.wait_event(event)
                batch.record_stream(compute)  # allocated on the feed's stream, freed after the caller's use
            if index + PREFETCH_BATCHES < len(starts):  # its buffer was last handed out two batches ago
                ahead.append(pool.submit(load, index + PREFETCH_BATCHES))
            yield rows, batch


class DeviceToHost:
    """Float32 host arrays (rows, ...) filled from CUDA tensors batch by batch without synchronising the caller:
    each batch's outputs are copied into page-locked memory on a stream of their own once the caller's stream has
    computed them (the GPU keeps no output beyond the batches in flight). The arrays are page-locked for the whole
    call: the features stage calls with a chunk of :data:`metrics.extract.CHUNK_ITEMS` items (0.4 GB of Inception
    outputs; torch's caching host allocator reuses the blocks from chunk to chunk), other callers with their set."""

    def __init__(self, rows: int, device: torch.device) -> None:
        self.rows = rows
        self.stream = torch.cuda.Stream(device)
        self.host: dict[str, torch.Tensor] = {}

    def add(self, start: int, outputs: dict[str, torch.Tensor]) -> None:
        """Queue the copy of rows ``start .. start + b - 1`` of every output ({name: (b, ...) CUDA tensor})."""
        compute = torch.cuda.current_stream(self.stream.device)
        ready = {name: value.float().contiguous() for name, value in outputs.items()}  # on the caller's stream
        self.stream.wait_stream(compute)
        with torch.cuda.stream(self.stream):
            for name, value in ready.items():
                if name not in self.host:
                    self.host[name] = torch.empty((self.rows, *value.shape[1:]), dtype=torch.float32,
                                                  pin_memory=True)
                value.record_stream(self.stream)  # not reused by the caller's stream before the copy is done
                self.host[name][start:start + len(value)].copy_(value, non_blocking=True)

    def arrays(self) -> dict[str, np.ndarray]:
        """{name: float32 (rows, ...)} once every queued copy has completed."""
        self.stream.synchronize()
        return {name: tensor.numpy() for name, tensor in self.host.items()}


def run_batched(images: np.ndarray, forward: Callable[[torch.Tensor], dict[str, torch.Tensor]], *, batch_size: int,
                device: str | torch.device, precision: str = "fp32", desc: str = "features") -> dict[str, np.ndarray]:
    """Apply ``forward`` to uint8 (b, 3, H, W) batches on ``device``; concatenate its outputs as float32 numpy.

    Args:
        images: uint8 (n, H, W, 3). forward: batch -> {name: (b, ...) tensor}, called under ``torch.inference_mode``.
        precision: one of :data:`metrics.features.PRECISIONS`: "fp32", or "bf16" (autocast on CUDA; ValueError
            elsewhere).
        Within :func:`compiled_forward` (CUDA): ``torch.compile(forward)``, every batch of ``batch_size`` rows.
    Returns:
        {name: float32 (n, ...)}.
    """
    from tqdm import tqdm

    images = check_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    device = check_device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}")
    if precision != "fp32" and device.type != "cuda":
        raise ValueError(f"precision={precision!r} needs a CUDA device, got device={str(device)!r}; "
                         "use precision='fp32'")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    compiled = _COMPILE.get() and device.type == "cuda"
    if compiled:
        forward = torch.compile(forward, dynamic=False)
    chunks: dict[str, list[torch.Tensor]] = {}
    host: dict[str, np.ndarray] = {}
    # On CUDA each batch's outputs are copied into page-locked arrays of the final size by a stream of their own
    # (DeviceToHost): no synchronisation until the end, so the GPU runs one batch while device_batches' threads
    # read the next ones, and nothing is left to copy when the last batch is done. On the CPU they go straight into
    # arrays of the final size: many small kept blocks between the freed batch buffers would fragment the heap, and
    # the process would grow with the number of images instead of staying at one batch. Other devices keep them
    # until the end.
    drain = DeviceToHost(len(images), device) if device.type == "cuda" else None
    batches = device_batches(images, batch_size, pad=compiled, device=device)
    progress = tqdm(batches, total=-(-len(images) // batch_size), desc=desc, unit="batch", leave=False, disable=None)
    with torch.inference_mode(), autocast, contextlib.closing(batches):
        for index, (rows, batch) in enumerate(progress):
            start = index * batch_size
            try:
                outputs = forward(batch.permute(0, 3, 1, 2).contiguous())
            except (torch.OutOfMemoryError, MemoryError) as err:
                raise out_of_memory(err, images, batch_size, device) from None
            except RuntimeError as err:  # the CPU allocator reports "can't allocate memory" as a RuntimeError
                if "allocate" not in str(err):
                    raise
                raise out_of_memory(err, images, batch_size, device) from None
            if drain is not None:
                drain.add(start, {name: value[:rows] for name, value in outputs.items()})
                continue
            for name, value in outputs.items():
                value = value[:rows]
                if device.type != "cpu":
                    chunks.setdefault(name, []).append(value.float())
                    continue
                if name not in host:
                    host[name] = np.empty((len(images), *value.shape[1:]), dtype=np.float32)
                host[name][start:start + len(value)] = value.float().numpy()
    if drain is not None:
        return drain.arrays()
    return host or {name: torch.cat(parts).cpu().numpy() for name, parts in chunks.items()}
