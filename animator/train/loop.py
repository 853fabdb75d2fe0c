"""The GANimation training loop: one process, or one per GPU under ``torchrun``.

Run folder (``--out RUN``)::

    RUN/train_config.json    the TrainConfig of the run
    RUN/checkpoint.pt        resumable state (own format, see ``_save_state``)
    RUN/generator/           the exported generator: ``animator render --checkpoint RUN/generator``
    RUN/metrics.csv          losses every ``log_every`` iterations, held-out metrics every ``eval_every``
    RUN/samples/it_NNNNNNN.png  input | target AUs | output | attention | colour | reconstruction
    RUN/summary.json         how the run ended (iterations, why it stopped, time, images/s)
    RUN/.animator-output     marks the folder as animator's: only such a folder (or an empty
                             one) may be started again in with ``--overwrite``

An iteration is one batch: one critic step, plus a generator step every ``critic_steps``-th
iteration (as the official code counts). Epoch order is a seeded permutation, so a resumed
run continues the exact batch sequence; on CPU a resumed run reproduces an uninterrupted one.

Several GPUs: ``torchrun --nproc-per-node G -m animator.train DATA --out RUN [options]`` (the
options of ``animator train``); rank 0 writes every file. Gradients are averaged with one
all-reduce per network per step rather than by the DDP wrapper, because the gradient penalty
needs a double backward that DDP's reducer does not support; ``batch_size`` is global.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist

from animator import __version__
from animator.aus import AU_CODES, AU_MAX, AU_NAMES, N_AUS, preset
from animator.errors import AnimatorError
from animator.faces.align import CropPolicy
from animator.media.images import write_image
from animator.model.checkpoint import DEFAULT_INPUT, MAX_SHARD_BYTES, ModelConfig, load_generator, save_generator
from animator.model.critic import Critic, CriticConfig
from animator.model.generator import Generator, GeneratorConfig
from animator.model.inference import instance_to_group_norm, resolve_device
from animator.outputs import atomic_output, check_output, mark_folder, writing
from animator.progress import progress
from animator.train.config import RUN_DEFINING, TrainConfig, learning_rate
from animator.train.balance import balance_weights
from animator.train.data import (Batches, FaceSet, dataset_summary, flip_where, load_split,
                                 read_manifest, sample_targets, to_network)
from animator.train.losses import (LossWeights, critic_objective, generate, generator_objective)
from animator.train.motion import LANDMARKS_FILE, RIG_FILE, WarpBatch, load_landmarks, load_rig

CHECKPOINT = "checkpoint.pt"
GENERATOR = "generator"
METRICS = "metrics.csv"
SAMPLES = "samples"
CONFIG = "train_config.json"
SUMMARY = "summary.json"
FORMAT = "animator-train-state"
WARMUP_ITERATIONS = 10  # left out of the time-per-iteration estimate of the budget check
SAMPLE_PRESETS = ("happy", "surprise", "sad", "anger", "disgust", "fear")
LOSS_KEYS = ("d_adv", "d_au", "d_gp", "d_total", "g_adv", "g_au", "g_cyc", "g_mask", "g_tv",
             "g_distill", "g_total", "attention")
EVAL_KEYS = ("eval_au_mae", "eval_real_au_mae", "eval_cycle_l1", "eval_attention")
METRIC_COLUMNS = ("iteration", "epoch", "images", "elapsed_s", "images_per_s", "lr_g", "lr_d",
                  *LOSS_KEYS, *EVAL_KEYS)


# ---------------------------------------------------------------- processes and devices

@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> Distributed:
    """Join the ``torchrun`` process group when there is one (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        backend = "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, ranks: Distributed) -> torch.device:
    """:func:`resolve_device`, with each torchrun process on its own local GPU."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", ranks.local_rank)
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- one training step

class Trainer:
    """Networks, optimisers and the step; no files. ``step`` returns nothing: loss values stay
    on the device and are summed there until ``pop_metrics`` (the only host sync).

    ``warp`` (motion mode) moves each input towards its target before the generator sees it;
    ``target_weights`` (N,) draws target AUs from the pool by weight (balanced sampling)."""

    def __init__(self, config: TrainConfig, device: torch.device,
                 ranks: Distributed = Distributed(), warp: WarpBatch | None = None,
                 target_weights: torch.Tensor | None = None) -> None:
        self.config, self.device, self.ranks = config, device, ranks
        self.warp, self.target_weights = warp, target_weights
        self.generator = Generator(GeneratorConfig(
            image_size=config.image_size, conv_dim=config.g_conv_dim, repeat_num=config.g_repeat_num))
        self.critic = Critic(CriticConfig(
            image_size=config.image_size, conv_dim=config.d_conv_dim, repeat_num=config.d_repeat_num))
        fmt = torch.channels_last if config.channels_last and device.type == "cuda" else torch.preserve_format
        self.memory_format = fmt
        self.generator.to(device, memory_format=fmt)
        self.critic.to(device, memory_format=fmt)
        if ranks.active:
            for tensor in [*self.generator.state_dict().values(), *self.critic.state_dict().values()]:
                dist.broadcast(tensor, 0)
        fused = device.type == "cuda"
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_g,
                                      betas=(config.beta1, config.beta2), fused=fused)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=config.lr_d,
                                      betas=(config.beta1, config.beta2), fused=fused)
        self.weights = LossWeights(adv=config.lambda_adv, gp=config.lambda_gp, au=config.au_weight,
                                   cyc=config.lambda_cyc, mask=config.lambda_mask, tv=config.lambda_tv,
                                   distill=config.lambda_distill)
        self.teacher = load_teacher(config.distill_from, config, device) if config.distill_from else None
        self.amp_dtype = resolve_precision(config.precision, device)
        self.rng = torch.Generator(device).manual_seed(config.seed * 7919 + 17 * ranks.rank + 1)
        self.g_forward = torch.compile(self.generator) if config.compile else self.generator
        self.iteration = 0
        self._sums: dict[str, torch.Tensor] = {}
        self._counts = {"d": 0, "g": 0}

    def set_learning_rates(self, lr_g: float, lr_d: float) -> None:
        for group in self.opt_g.param_groups:
            group["lr"] = lr_g
        for group in self.opt_d.param_groups:
            group["lr"] = lr_d

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype,
                              enabled=self.amp_dtype != torch.float32)

    def step(self, images: torch.Tensor, source_aus: torch.Tensor, target_pool: torch.Tensor,
             landmarks: torch.Tensor | None = None) -> None:
        """One iteration on a uint8 (B,H,W,3) batch with its AUs (and crop landmarks (B,P,2) in
        motion mode); targets drawn from the pool."""
        config, batch = self.config, images.shape[0]
        flip = (torch.rand(batch, device=self.device, generator=self.rng) < 0.5) if config.flip else None
        target = sample_targets(target_pool, batch, config.target_noise, self.rng, self.target_weights)
        alpha = torch.rand(batch, 1, 1, 1, device=self.device, generator=self.rng)
        train_generator = (self.iteration + 1) % config.critic_steps == 0
        real, inputs, back = self.inputs(images, source_aus, target, flip, landmarks)

        with self.autocast():
            if train_generator:
                forward = generate(self.g_forward, inputs, target)
                fake = forward[2]
            else:
                with torch.no_grad():
                    fake = generate(self.g_forward, inputs, target)[2]
            d_loss, d_parts = critic_objective(self.critic, real, fake, source_aus, alpha, self.weights)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self._average_gradients(self.critic)
        self.opt_d.step()
        self._accumulate(d_parts, "d")

        if train_generator:
            self.critic.requires_grad_(False)
            with self.autocast():
                with torch.no_grad():
                    teacher = self.teacher(inputs, target) if self.teacher is not None else None
                g_loss, g_parts = generator_objective(
                    self.g_forward, self.critic, real, source_aus, target, self.weights,
                    forward=forward, tv_scale=float(self.ranks.world), back=back, teacher=teacher)
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self._average_gradients(self.generator)
            self.opt_g.step()
            self.critic.requires_grad_(True)
            self._accumulate(g_parts, "g")
        self.iteration += 1

    def inputs(self, images: torch.Tensor, source_aus: torch.Tensor, target: torch.Tensor,
               flip: torch.Tensor | None, landmarks: torch.Tensor | None = None):
        """(real faces, what the generator sees, the cycle's way back or None), all mirrored
        where ``flip``. Motion mode warps the unmirrored face with its own landmarks towards
        ``target``; the way back un-mirrors a generated face, moves it back from the moved
        landmarks by the opposite moves and mirrors it again."""
        if self.warp is None:
            real = self._layout(to_network(images, flip))
            return real, real, None
        if landmarks is None:
            raise AnimatorError("motion mode needs the crop landmarks of every face")
        face = to_network(images)
        with torch.no_grad():
            warped, moves = self.warp(face, landmarks, source_aus, target)

        def back(fake: torch.Tensor) -> torch.Tensor:
            returned = self.warp.apply(flip_where(fake, flip), landmarks + moves, -moves)
            return self._layout(flip_where(returned, flip))

        return self._layout(flip_where(face, flip)), self._layout(flip_where(warped, flip)), back

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.memory_format if self.memory_format is torch.channels_last
                            else torch.contiguous_format)

    def init_generator(self, path: str) -> None:
        """Warm start: the generator's weights from a model folder or file of the same shape
        (``"default"``: the shipped model)."""
        from animator.model.checkpoint import load_state

        state, model_config = load_state(None if path == "default" else path)
        if model_config.generator != self.generator.config:
            raise AnimatorError(f"--init-from {path}: generator {model_config.generator} differs "
                                f"from this run's {self.generator.config}")
        self.generator.load_state_dict(state)
        if self.ranks.active:
            for tensor in self.generator.state_dict().values():
                dist.broadcast(tensor, 0)

    def _average_gradients(self, module: torch.nn.Module) -> None:
        if not self.ranks.active:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.ranks.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()

    def _accumulate(self, parts: dict[str, torch.Tensor], kind: str) -> None:
        self._counts[kind] += 1
        for key, value in parts.items():
            value = value.detach().float()
            self._sums[key] = self._sums[key] + value if key in self._sums else value

    def pop_metrics(self) -> dict[str, float]:
        """Means since the last call (one device->host copy)."""
        if not self._sums:
            return {}
        keys = list(self._sums)
        values = torch.stack([self._sums[k] for k in keys]).tolist()
        out = {k: v / max(1, self._counts["d" if k.startswith("d_") else "g"])
               for k, v in zip(keys, values)}
        self._sums, self._counts = {}, {"d": 0, "g": 0}
        return out

    # -- state

    def state(self) -> dict:
        return {"generator": self.generator.state_dict(), "critic": self.critic.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "iteration": self.iteration, "rng": self.rng.get_state()}

    def load(self, state: dict, rng_state: torch.Tensor | None) -> None:
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.iteration = int(state["iteration"])
        if rng_state is not None:
            self.rng.set_state(rng_state)


def load_teacher(path: str, config: TrainConfig, device: torch.device) -> Generator:
    """The frozen generator a distilled one learns from, in the GroupNorm form (same function,
    faster); it must work on the same faces: size, AU order and input scaling."""
    teacher, model_config = load_generator(path)
    if teacher.config.image_size != config.image_size:
        raise AnimatorError(f"--distill-from {path}: the teacher works at {teacher.config.image_size} px, "
                            f"this run at {config.image_size} px")
    if teacher.config.n_aus != N_AUS or model_config.au_order != AU_NAMES \
            or model_config.input_normalisation != DEFAULT_INPUT:
        raise AnimatorError(f"--distill-from {path}: the teacher's AU order or input scaling "
                            f"differs from animator's training layout")
    return instance_to_group_norm(teacher).to(device).eval().requires_grad_(False)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """"auto" is bf16 autocast on CUDA GPUs that support it, fp32 elsewhere."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return torch.float32
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise AnimatorError("--precision bf16: this GPU does not support bfloat16")
        return torch.float32
    return torch.bfloat16


# ---------------------------------------------------------------- the run

@dataclass(frozen=True)
class RunControl:
    """What may change between the sessions of one run (not part of what is learned)."""

    resume: bool = False
    overwrite: bool = False
    device: str = "auto"
    stop_at: int | None = None  # stop (checkpoint + export) after this iteration
    quiet: bool = False


def train(data: str | os.PathLike, out: str | os.PathLike, config: TrainConfig,
          control: RunControl = RunControl(),
          log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> dict:
    """Train (or continue) a run; returns the summary written to RUN/summary.json."""
    started = time.monotonic()
    data, out = Path(data), Path(out)
    ranks = init_distributed(control.device)
    before = {p.name for p in out.iterdir()} if out.is_dir() else None
    try:
        return _train(data, out, config, control, ranks, started, log if ranks.main else lambda _: None)
    except BaseException:
        if ranks.main:
            _undo_run_folder(out, before)
        raise
    finally:
        if ranks.active:
            dist.destroy_process_group()


def _train(data: Path, out: Path, config: TrainConfig, control: RunControl, ranks: Distributed,
           started: float, log: Callable[[str], None]) -> dict:
    device = pick_device(control.device, ranks)
    if config.batch_size % ranks.world:
        raise AnimatorError(f"--batch-size {config.batch_size} must be divisible by the "
                            f"{ranks.world} processes")
    # read the data set first: a bad DATA must not leave a half-made run folder behind
    train_set = load_split(data, "train")
    test_set = load_split(data, "test")
    motion = motion_inputs(data, config, train_set, test_set, device)
    state = _open_run(out, data, config, control, ranks) if ranks.main else None
    if ranks.active:
        box = [state["config"] if state else None, state is not None]
        dist.broadcast_object_list(box, 0)
        saved, resuming = box
        if resuming and not ranks.main:
            state = read_state(out / CHECKPOINT)
            state["config"] = saved
    if state is not None:
        config = TrainConfig.from_dict(state["config"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(config.seed + ranks.rank)

    weights = balance_weights(train_set.aus) if config.balance else None
    batches = Batches(train_set, config.image_size, config.batch_size // ranks.world, device,
                      config.seed, config.cache, config.cache_limit_gb, config.workers,
                      ranks.rank, ranks.world, weights)
    per_epoch = batches.per_epoch
    total = config.total_iterations(per_epoch)
    decay_start = config.decay_start(per_epoch)
    trainer = Trainer(config, device, ranks, motion.warp if motion else None,
                      None if weights is None else torch.as_tensor(weights, device=device))
    if config.init_from and state is None:
        trainer.init_generator(config.init_from)
        log(f"generator warm-started from {config.init_from}")
    elapsed_before = 0.0
    if state is not None:
        if state["train_faces"] != len(train_set) or state["world"] != ranks.world:
            raise AnimatorError(
                f"{out / CHECKPOINT}: saved with {state['train_faces']} training faces on "
                f"{state['world']} process(es); {data} now has {len(train_set)} on {ranks.world}: "
                f"resume with the same data and process count")
        rng_states = state["rng"]
        trainer.load(state["trainer"], rng_states["trainer"][ranks.rank])
        torch.set_rng_state(rng_states["torch"][ranks.rank])
        elapsed_before = float(state["elapsed_s"])
        log(f"resuming {out} at iteration {trainer.iteration}/{total}")
    end = min(total, control.stop_at) if control.stop_at is not None else total
    if ranks.main:
        if not len(test_set):
            log(f"{data}: no held-out split (test_ids.csv lists no labelled faces): the eval_* "
                f"metrics are measured on training faces")
        log(f"training on {len(train_set)} faces ({len(test_set)} held out), {device}, "
            f"{str(trainer.amp_dtype).replace('torch.', '')}, data cache: {batches.mode}; "
            f"{per_epoch} iterations per epoch, {total} in all (decay from {decay_start})")
    viewer = None
    if ranks.main:
        shown = test_set if len(test_set) else train_set
        shown_landmarks = None
        if motion is not None:
            shown_landmarks = motion.test_landmarks if len(test_set) else motion.train_landmarks.cpu()
        viewer = _Viewer(shown, config, device, shown_landmarks)
    metrics = _Metrics(out / METRICS, trainer.iteration) if ranks.main else None

    budget = config.max_minutes * 60.0 if config.max_minutes is not None else math.inf
    save_cost = 20.0  # seconds kept for the final checkpoint + export until one is measured
    last_save = time.monotonic()
    window_start, window_iters = time.monotonic(), 0
    stop_reason = "finished"
    bar = progress(end, "train", control.quiet or not ranks.main, unit="it")
    bar.update(trainer.iteration)
    control_every = 1 if not ranks.active else config.log_every
    first_iteration, per_iter, warm_from = trainer.iteration, 0.0, None

    while trainer.iteration < end and stop_reason == "finished":
        epoch, start = divmod(trainer.iteration, per_epoch)
        for images, rows in batches.epoch(epoch, start):
            it = trainer.iteration
            trainer.set_learning_rates(learning_rate(config.lr_g, it, total, decay_start),
                                       learning_rate(config.lr_d, it, total, decay_start))
            trainer.step(images, batches.aus[rows], batches.aus,
                         motion.train_landmarks[rows] if motion else None)
            it += 1
            window_iters += 1
            bar.update(1)
            evaluate = it % config.eval_every == 0
            if (it % config.log_every == 0 or evaluate) and ranks.main:
                now = time.monotonic()
                rate = window_iters * config.batch_size / max(now - window_start, 1e-9)
                row = _row(trainer, it, per_epoch, config, total, decay_start, now - started + elapsed_before, rate)
                if evaluate:
                    row.update(viewer.evaluate(trainer))
                metrics.write(row)
                log(_log_line(row, total, held_out=bool(len(test_set))))
                window_start, window_iters = time.monotonic(), 0
            if it % config.sample_every == 0 and viewer is not None:
                viewer.write_grid(trainer, out / SAMPLES / f"it_{it:07d}.png")
            if it % control_every == 0:
                now = time.monotonic()
                if warm_from is None and it - first_iteration >= WARMUP_ITERATIONS:
                    warm_from = (now, it)  # compilation and cudnn autotuning are behind us
                elif warm_from is not None:
                    per_iter = (now - warm_from[0]) / (it - warm_from[1])
                stop = now - started + save_cost + 3 * per_iter > budget
                save = now - last_save > config.checkpoint_minutes * 60
                stop, save = _agree(ranks, device, stop, save)
                if stop:
                    stop_reason = "time budget"
                    break
                if save:
                    t0 = time.monotonic()
                    _save_state(out, trainer, config, ranks, len(train_set), now - started + elapsed_before)
                    save_cost = max(save_cost, 2.0 * (time.monotonic() - t0) + 5.0)
                    last_save = time.monotonic()
            if it >= end:
                break
    bar.close()
    if stop_reason == "finished" and trainer.iteration < total:
        stop_reason = "stop_at"
    elapsed = time.monotonic() - started + elapsed_before
    _save_state(out, trainer, config, ranks, len(train_set), elapsed)
    summary = {}
    if ranks.main:
        leftover = trainer.pop_metrics()
        if leftover:
            row = _row(trainer, trainer.iteration, per_epoch, config, total, decay_start, elapsed, None, leftover)
            row.update(viewer.evaluate(trainer))
            metrics.write(row)
        viewer.write_grid(trainer, out / SAMPLES / f"it_{trainer.iteration:07d}.png")
        export_generator(trainer.generator, config, data, out / GENERATOR, trainer.iteration, elapsed)
        summary = {"iterations": trainer.iteration, "total_iterations": total,
                   "epochs": trainer.iteration / per_epoch, "stopped": stop_reason,
                   "elapsed_s": round(elapsed, 1), "session_s": round(time.monotonic() - started, 1),
                   "images_per_s": round((trainer.iteration - first_iteration) * config.batch_size
                                         / max(time.monotonic() - started, 1e-9), 1),
                   "device": str(device), "processes": ranks.world,
                   "precision": str(trainer.amp_dtype).replace("torch.", ""),
                   "generator": str(out / GENERATOR)}
        with atomic_output(out / SUMMARY, overwrite=True) as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
        log(f"stopped ({stop_reason}) at iteration {trainer.iteration}/{total}; "
            f"generator in {out / GENERATOR}")
    return summary


@dataclass
class _Motion:
    warp: WarpBatch
    train_landmarks: torch.Tensor  # (N,P,2) on the device, in training-set order
    test_landmarks: torch.Tensor   # (M,P,2) on the CPU


def motion_inputs(data: Path, config: TrainConfig, train_set: FaceSet, test_set: FaceSet,
                   device: torch.device) -> _Motion | None:
    """The set's rig and crop landmarks (scaled to the training size) for ``--motion rig``."""
    if config.motion == "none":
        return None
    rig = load_rig(data / RIG_FILE)
    scale = config.image_size / rig.size
    train = load_landmarks(data / LANDMARKS_FILE, train_set.names) * scale
    test = load_landmarks(data / LANDMARKS_FILE, test_set.names) * scale
    return _Motion(rig.to(device), torch.from_numpy(train).to(device), torch.from_numpy(test))


def _agree(ranks: Distributed, device: torch.device, stop: bool, save: bool) -> tuple[bool, bool]:
    """Rank 0's clock decides for everyone (all ranks must stop and save together)."""
    if not ranks.active:
        return stop, save
    flags = torch.tensor([float(stop), float(save)], device=device)
    dist.broadcast(flags, 0)
    return bool(flags[0].item()), bool(flags[1].item())


def _row(trainer: Trainer, it: int, per_epoch: int, config: TrainConfig, total: int,
         decay_start: int, elapsed: float, rate: float | None,
         losses: dict[str, float] | None = None) -> dict:
    losses = trainer.pop_metrics() if losses is None else losses
    return {"iteration": it, "epoch": round(it / per_epoch, 3), "images": it * config.batch_size,
            "elapsed_s": round(elapsed, 1), "images_per_s": "" if rate is None else round(rate, 1),
            "lr_g": learning_rate(config.lr_g, it - 1, total, decay_start),
            "lr_d": learning_rate(config.lr_d, it - 1, total, decay_start), **losses}


def _log_line(row: dict, total: int, held_out: bool) -> str:
    parts = [f"it {row['iteration']}/{total}", f"ep {row['epoch']:.2f}"]
    parts += [f"{k} {row[k]:.4g}" for k in ("d_total", "d_gp", "g_total", "g_au", "g_cyc", "attention")
              if isinstance(row.get(k), float)]
    if row.get("eval_au_mae") not in (None, ""):
        where = "held-out" if held_out else "training-face (no held-out split)"
        parts.append(f"{where} AU err {row['eval_au_mae']:.3f}")
    if row.get("images_per_s"):
        parts.append(f"{row['images_per_s']:.0f} img/s")
    return "  ".join(parts)


# ---------------------------------------------------------------- run folder and state

def _open_run(out: Path, data: Path, config: TrainConfig, control: RunControl,
              ranks: Distributed) -> dict | None:
    """Check the run folder; return the saved state when resuming (rank 0 only)."""
    checkpoint = out / CHECKPOINT
    if control.resume:
        if not checkpoint.is_file():
            raise AnimatorError(f"{checkpoint}: no checkpoint to resume from")
        state = read_state(checkpoint)
        saved = TrainConfig.from_dict(state["config"], f"{checkpoint}: config")
        changed = [k for k in RUN_DEFINING if getattr(saved, k) != getattr(config, k)]
        if changed:
            # Only options given explicitly reach here changed (the CLI fills the rest from
            # the checkpoint), so a difference is a request we cannot honour.
            raise AnimatorError(f"{checkpoint}: cannot change {', '.join(changed)} when resuming")
        state["config"] = config.to_dict()
        return state
    if os.path.lexists(out) and not control.overwrite and not _empty_folder(out):
        raise AnimatorError(f"{out}: already exists (pass --resume to continue that run, "
                            f"or --overwrite to start again)")
    # the rule of every output: only a folder animator made (marked) or an empty one is
    # replaced, never one that holds the data set
    check_output(out, [data], overwrite=True, directory=True)
    if out.is_symlink() or (os.path.lexists(out) and not out.is_dir()):
        out.unlink()  # a file or a link gives way; a link's target is never touched
    for name in (CHECKPOINT, METRICS, CONFIG, SUMMARY, GENERATOR, SAMPLES):
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    with writing(out):
        out.mkdir(exist_ok=True)
        mark_folder(out)
        (out / CONFIG).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return None


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _undo_run_folder(out: Path, before: set[str] | None) -> None:
    """After a failure before the first checkpoint, remove what this session added to the run
    folder (the folder too if it made it): with nothing to resume, it would only block the
    retry. ``before``: the folder's entries when the session started (None: no folder)."""
    if not out.is_dir() or (out / CHECKPOINT).exists():
        return
    if before is None:
        shutil.rmtree(out, ignore_errors=True)
        return
    for path in out.iterdir():
        if path.name not in before:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def saved_config(out: str | os.PathLike) -> TrainConfig:
    """The config a run was saved with (the CLI's defaults when resuming)."""
    checkpoint = Path(out) / CHECKPOINT
    if not checkpoint.is_file():
        raise AnimatorError(f"{checkpoint}: no checkpoint to resume from")
    return TrainConfig.from_dict(read_state(checkpoint)["config"], f"{checkpoint}: config")


def read_state(path: Path) -> dict:
    """A training checkpoint (plain tensors and values only: nothing else is unpickled)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError):
        raise AnimatorError(f"{path}: not a readable training checkpoint (damaged, or not "
                            f"written by animator train)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise AnimatorError(f"{path}: not an animator training checkpoint")
    return state


def _save_state(out: Path, trainer: Trainer, config: TrainConfig, ranks: Distributed,
                train_faces: int, elapsed: float) -> None:
    """Everything a resume needs, written atomically by rank 0 (RNG states of every rank)."""
    rng = {"trainer": trainer.rng.get_state(), "torch": torch.get_rng_state()}
    if ranks.active:
        gathered: list = [None] * ranks.world
        dist.all_gather_object(gathered, {k: v.cpu() for k, v in rng.items()})
        rng_all = {k: [g[k] for g in gathered] for k in rng}
    else:
        rng_all = {k: [v.cpu()] for k, v in rng.items()}
    if not ranks.main:
        return
    state = {"format": FORMAT, "version": 1, "animator": __version__, "config": config.to_dict(),
             "trainer": trainer.state(), "rng": rng_all, "world": ranks.world,
             "train_faces": train_faces, "elapsed_s": elapsed,
             "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with atomic_output(out / CHECKPOINT, overwrite=True) as tmp:
        torch.save(state, tmp)


def export_generator(generator: Generator, config: TrainConfig, data: Path, path: Path,
                     iteration: int, elapsed: float) -> None:
    """Write RUN/generator in the model format ``render --checkpoint`` reads, recording the
    crop policy of the training set (at the trained size) and where the weights came from."""
    manifest = read_manifest(data) or {}
    policy = manifest.get("crop_policy")
    policy = CropPolicy.from_dict({**policy, "size": config.image_size}) if policy else CropPolicy(size=config.image_size)
    provenance = {
        "trained_with": f"animator {__version__} (animator train)",
        "data": dataset_summary(data),
        "label_source": manifest.get("label_source", "unknown"),
        "iterations": iteration, "training_s": round(elapsed, 1),
        "train_config": config.to_dict(),
        "crop_policy_source": "training set manifest" if manifest.get("crop_policy") else
        "default (the training set has no manifest)",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    model_config = ModelConfig(generator=generator.config, crop_policy=policy.to_dict(),
                               provenance=provenance)
    save_generator(generator, model_config, path, MAX_SHARD_BYTES, overwrite=True)


# ---------------------------------------------------------------- metrics and pictures

class _Metrics:
    """metrics.csv, appended; on resume, rows after the checkpoint's iteration are dropped so
    the file matches the state that continues."""

    def __init__(self, path: Path, iteration: int) -> None:
        self.path = path
        if path.exists():
            with path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= iteration]
            with atomic_output(path, overwrite=True) as tmp:
                with tmp.open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
                    writer.writeheader()
                    writer.writerows(rows)
        else:
            with path.open("w", newline="") as handle:
                csv.writer(handle, lineterminator="\n").writerow(METRIC_COLUMNS)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


class _Viewer:
    """Held-out metrics and sample grids from a fixed set of faces and targets."""

    def __init__(self, faces: FaceSet, config: TrainConfig, device: torch.device,
                 landmarks: torch.Tensor | None = None) -> None:
        self.device, self.config = device, config
        count = min(len(faces), config.eval_images)
        self.landmarks = None if landmarks is None else landmarks[:count]
        self.images = torch.from_numpy(np.stack([faces.image(i, config.image_size) for i in range(count)])
                                       if count else np.zeros((0, config.image_size, config.image_size, 3), np.uint8))
        self.aus = torch.from_numpy(faces.aus[:count])
        generator = torch.Generator().manual_seed(12345)
        self.targets = sample_targets(self.aus, count, config.target_noise, generator) if count else self.aus
        rows = min(count, 4)
        self.grid_targets = torch.from_numpy(np.stack([preset(SAMPLE_PRESETS[i % len(SAMPLE_PRESETS)])
                                                       for i in range(rows)])) if rows else None

    @torch.no_grad()
    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        """AU error of the critic's AU head on generated faces vs their targets (0-5 scale),
        the same head on the real faces vs their labels, cycle L1 ([-1,1] scale), mean A."""
        if not len(self.images):
            return {}
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)
        for start in range(0, len(self.images), 50):
            images = self.images[start:start + 50].to(self.device)
            source = self.aus[start:start + 50].to(self.device)
            target = self.targets[start:start + 50].to(self.device)
            real, inputs, way_back = trainer.inputs(images, source, target, None, self._landmarks(start, 50))
            with trainer.autocast():
                attention, _, fake = generate(trainer.generator, inputs, target)
                _, fake_pred = trainer.critic(fake)
                _, real_pred = trainer.critic(real)
                _, _, back = generate(trainer.generator, fake if way_back is None else way_back(fake), source)
            n = images.shape[0]
            sums += torch.stack([
                (fake_pred.float() - target).abs().mean() * n,
                (real_pred.float() - source).abs().mean() * n,
                (back.float() - real).abs().mean() * n,
                attention.float().mean() * n]).double()
        values = (sums / len(self.images)).tolist()
        return dict(zip(EVAL_KEYS, values))

    @torch.no_grad()
    def write_grid(self, trainer: Trainer, path: Path) -> None:
        if self.grid_targets is None:
            return
        n = len(self.grid_targets)
        images = self.images[:n].to(self.device)
        target = self.grid_targets.to(self.device)
        source = self.aus[:n].to(self.device)
        _, inputs, way_back = trainer.inputs(images, source, target, None, self._landmarks(0, n))
        with trainer.autocast():
            attention, color, fake = generate(trainer.generator, inputs, target)
            _, _, back = generate(trainer.generator, fake if way_back is None else way_back(fake), source)
        size = self.config.image_size
        rows = []
        for i in range(n):
            cells = [images[i].cpu().numpy(), au_bars(target[i].cpu().numpy(), size),
                     _to_uint8(fake[i]), _to_uint8(attention[i].expand(3, -1, -1) * 2 - 1),
                     _to_uint8(color[i]), _to_uint8(back[i])]
            rows.append(np.concatenate(cells, axis=1))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, overwrite=True) as tmp:
            write_image(tmp, np.concatenate(rows, axis=0))


    def _landmarks(self, start: int, count: int) -> torch.Tensor | None:
        if self.landmarks is None:
            return None
        return self.landmarks[start:start + count].to(self.device)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3,H,W) in [-1,1] -> (H,W,3) uint8."""
    x = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


def au_bars(aus: np.ndarray, size: int) -> np.ndarray:
    """A size x size bar chart of a 0-5 AU vector; AU numbers under the bars in two staggered
    rows when the picture is big enough to read them."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    label = size >= 96
    bottom = size - (22 if label else 2)
    width = size / N_AUS
    for i, value in enumerate(np.clip(aus, 0, AU_MAX)):
        x0, x1 = int(round(i * width)) + 1, int(round((i + 1) * width)) - 1
        top = int(round(bottom - (bottom - 2) * value / AU_MAX))
        cv2.rectangle(canvas, (x0, top), (max(x0, x1), bottom), (40, 110, 200), thickness=-1)
        if label:
            text = str(AU_CODES[i])
            (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_PLAIN, 0.6, 1)
            x = min(int(round((i + 0.5) * width - w / 2)), size - w - 1)
            cv2.putText(canvas, text, (x, size - 12 + 10 * (i % 2)),
                        cv2.FONT_HERSHEY_PLAIN, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(canvas, (0, bottom), (size - 1, bottom), (0, 0, 0), 1)
    return canvas
