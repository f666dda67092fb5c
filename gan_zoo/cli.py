"""The `ganzoo` command: assemble components by name, train, sample, list and inspect."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from typing import Any

import click

from . import __version__, kinds
from .errors import GanZooError, UsageError, install_warning_format
from .kinds import KIND_TITLES, KINDS
from .util.textsafe import bare, escape, message_block, shown


# Modules that import PyTorch (seconds) are imported inside the commands that need them, so
# a `ganzoo fid` that cannot find its weights answers at once; these commands live in
# their own modules and are loaded when named.
def _fid_command() -> click.Command:
    from .evaluation.fid_command import fid

    return fid


def _compare_command() -> click.Command:
    from .compare import compare_command

    return compare_command


def _eval_command() -> click.Command:
    from .evaluation.eval_command import eval_command

    return eval_command


def _recipes_command() -> click.Command:
    from .training.recipes import recipes_command

    return recipes_command


def _report_command() -> click.Command:
    from .visual.report import report_command

    return report_command


LAZY_COMMANDS = {"compare": _compare_command, "eval": _eval_command, "fid": _fid_command,
                 "recipes": _recipes_command, "report": _report_command}

KIND_ALIASES = kinds.KIND_ALIASES  # every name `ganzoo list` accepts for a kind, from the table


ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                      errno.EFBIG}


class GanZooGroup(click.Group):
    """Turns gan-zoo's user errors into one message and an exit code, never a traceback.

    The last line of defence for what reaches the terminal: every message is escaped and
    capped (textsafe.message_block), whatever file text it quotes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            self.add_command(LAZY_COMMANDS[name](), name)
        return super().get_command(ctx, name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["ganzoo.argv"] = list(args)  # `train --nproc N` relaunches this command line
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GanZooError as exc:
            if not getattr(exc, "quiet", False):  # quiet: already reported by rank 0
                click.echo(message_block(f"{_rank_prefix()}Error: {exc}"), err=True)
            _end_if_group_broken(exc.exit_code)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            # The environment, not a bug: a full disk, a read-only or forbidden folder.
            if exc.errno not in ENVIRONMENT_ERRNOS:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(message_block(f"Error: {exc.strerror}{where}"), err=True)
            ctx.exit(1)
        except ValueError as exc:
            # The OS cannot represent such a path at all; any command taking a path can hit it.
            if "null byte" not in str(exc):
                raise
            click.echo("Error: a path argument contains a NUL byte (\\0); no file can have that name",
                       err=True)
            ctx.exit(2)
        except click.ClickException as exc:  # click prints these itself: escape and cap them too
            exc.message = message_block(exc.message)
            raise


def _loaded_distributed() -> Any:
    """gan_zoo.training.distributed when this command loaded it (training does), else None: the other
    commands never import it, nor the PyTorch it needs."""
    return sys.modules.get(f"{__package__}.training.distributed")


def _rank_prefix() -> str:
    """"[rank N] " in a distributed run's non-zero ranks."""
    dist = _loaded_distributed()
    return dist.current().prefix() if dist is not None else ""


def _end_if_group_broken(exit_code: int) -> None:
    """A distributed run that lost a peer exits at once (distributed.end_if_broken)."""
    dist = _loaded_distributed()
    if dist is not None:
        dist.end_if_broken(exit_code)


@click.group(cls=GanZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gan-zoo")
def cli() -> None:
    """gan-zoo: train, sample and evaluate GANs assembled from plugins by name."""


# ---------------------------------------------------------------------------- train

def _progress_printer(quiet: bool):
    """A rich progress bar and the on_step callback that moves it (None, None when quiet)."""
    if quiet:
        return None, None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    prog = Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
        transient=False,
    )
    task = None

    def update(trainer: Any, stats: dict[str, float]) -> None:
        nonlocal task
        step, total = trainer.step, trainer.total_steps
        if task is None:
            task = prog.add_task("train", total=total, completed=step - 1, rate="", losses="")
        fields = {}
        if "img_per_s" in stats:
            fields["rate"] = f"{stats['img_per_s']:.0f} img/s"
        fields["losses"] = f"D {stats['loss_d']:.3f}  G {stats['loss_g']:.3f}"
        prog.update(task, completed=step, total=total, **fields)

    return prog, update


@cli.command()
@click.option("--arch", help="Architecture name (`ganzoo list arch`).")
@click.option("--data", type=click.Path(), help="Folder of images (default: built-in shapes).")
@click.option("--conditional", is_flag=True, default=None,
              help="Class-conditional GAN: one subfolder of --data per class (built-in shapes: "
              "their kind).")
@click.option("--class-balance", is_flag=True, default=None,
              help="Conditional runs: draw every class equally often, whatever its size.")
@click.option("--steps", type=int, help="Total generator steps of the run.")
@click.option("--epochs", type=float, help="Run length in passes over the data.")
@click.option("--minutes", "time_budget", type=float,
              help="Run length in minutes of training time (evaluation not counted).")
@click.option("--budget-clock", type=click.Choice(["wall", "cpu"]),
              help="What --minutes counts: wall-clock (default) or the process's CPU time.")
@click.option("--batch-size", type=int, help="Images per batch.")
@click.option("--out", type=click.Path(), help="Run directory (default runs/ARCH-TIME).")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--config", "config_file", type=click.Path(), help="TOML config file.")
@click.option("--recipe", help="Recipe name or TOML file (`ganzoo recipes`); flags override it.")
@click.option("--resume", type=click.Path(), help="Continue the run in this directory.")
@click.option("--checkpoint-every", type=int, help="Save a checkpoint every N steps.")
@click.option("--sample-every", type=int, help="Save a sample grid every N steps.")
@click.option("--loss", help="Loss name (`ganzoo list loss`).")
@click.option("--sched", "schedules", multiple=True, help="Schedule name; repeatable.")
@click.option("--augment", multiple=True, help="Augmentation name; repeatable.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Device.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              help="Precision (default auto: bf16 where the hardware runs it fast, else fp32).")
@click.option("--compile/--no-compile", default=None,
              help="torch.compile G and D (slow first step, faster after where it helps).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="Channels-last (NHWC) weights and activations (default on).")
@click.option("--lr-g", type=float, help="Generator learning rate.")
@click.option("--lr-d", type=float, help="Discriminator learning rate.")
@click.option("--real-label", type=float, help="Target for real images (0.9 = label smoothing).")
@click.option("--d-update", type=click.Choice(["joint", "separate", "alternating"]),
              help="How D sees real and fake images: separate (default; a real and a fake "
              "pass, one update), joint (one mixed batch) or alternating (two updates).")
@click.option("--ema-decay", type=float, help="Generator EMA decay (0 = off).")
@click.option("--keep-checkpoints", type=int, help="How many step checkpoints to keep.")
@click.option("--on-nonfinite", type=click.Choice(["stop", "rollback"]),
              help="On a NaN/inf loss or weight: stop, or roll back and lower the learning rates.")
@click.option("--tensorboard/--no-tensorboard", default=None,
              help="Also log to RUN/tensorboard (pip install 'gan-zoo[tensorboard]').")
@click.option("--eval-every", type=int, help="Evaluate --metric every N steps; keeps the best checkpoint.")
@click.option("--metric", help="Metric for --eval-every (`ganzoo list metric`; default fid).")
@click.option("--early-stop-patience", type=int,
              help="Stop after this many evaluations without improvement.")
@click.option("-o", "--option", "option_items", multiple=True, metavar="COMPONENT.KEY=VALUE",
              help="Component option, e.g. -o conv64.dropout=0.2; repeatable.")
@click.option("--nproc", type=click.IntRange(1, 4096),
              help="Train with N processes on this machine (torchrun; one per GPU on CUDA).")
@click.option("--sync-bn", is_flag=True, default=None,
              help="With several processes: batch norm over the global batch (CUDA).")
@click.option("--dist-timeout", type=click.FloatRange(min=1),
              help="Seconds a process waits for the others before failing (default 1800).")
@click.option("--trust-weights", is_flag=True,
              help="Let --eval-every load an Inception weights file that is not a known FID "
              "export (it can run code); command line only, never saved in the run.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def train(config_file: str | None, resume: str | None, option_items: tuple[str, ...],
          quiet: bool, out: str | None, nproc: int | None, dist_timeout: float | None,
          trust_weights: bool, **flags: Any) -> None:
    """Train a GAN. With no arguments: conv32 on the built-in shapes dataset."""
    from . import api
    from .options import parse_assignments
    from .training import distributed
    from .training.config import RUN_LENGTHS, merge_options
    from .training.recipes import start_values
    from .training.rundir import refuse_empty_paths
    from .util import hardware

    refuse_empty_paths(out, resume)  # '' would be falsy below: a new run in a default folder
    lengths = [k for k in RUN_LENGTHS if flags.get(k) is not None]
    if len(lengths) > 1:
        raise click.UsageError("give one of --steps, --epochs and --minutes")
    if resume:
        others = [k for k, v in flags.items() if v not in (None, ()) and k not in
                  (*RUN_LENGTHS, "device")]
        if others or config_file or option_items or out:
            raise click.UsageError(
                "--resume continues a run with its saved config; only --steps/--epochs/--minutes"
                "/--device may change (start a new run to change anything else)")
    recipe = flags.pop("recipe", None)  # after the --resume check, which refuses it
    values: dict[str, Any] = start_values(config_file, recipe, flags.get("arch"))
    for key, value in flags.items():
        if value is None or value == ():
            continue
        values[key] = list(value) if isinstance(value, tuple) else value
        if key in RUN_LENGTHS:  # a length on the command line replaces the file's
            for other in RUN_LENGTHS:
                if other != key:
                    values.pop(other, None)
    if option_items:
        values["options"] = merge_options(values.get("options", {}), parse_assignments(option_items))
    echo = (lambda m: None) if quiet else (lambda m: click.echo(message_block(m), err=True))
    if dist_timeout is not None:  # read when joining the process group; inherited by --nproc's
        os.environ[distributed.TIMEOUT_ENV] = str(dist_timeout)
    if nproc is not None and nproc > 1 and not distributed.launched():
        _launch(nproc, values, resume, out, echo)
        return
    prog, update = _progress_printer(quiet)
    if resume:
        trainer = api.prepare_training(
            resume=resume, steps=flags.get("steps"), epochs=flags.get("epochs"),
            minutes=flags.get("time_budget"), log=echo, trust_weights=trust_weights)
        if flags.get("device"):
            raise click.UsageError("--device cannot change on resume yet")
    else:
        trainer = api.prepare_training(values, out=out, log=echo, trust_weights=trust_weights)
    if trainer.run is None:  # a rank other than 0 of a distributed run: rank 0 reports
        stopped = trainer.train()["stopped"]
        distributed.end_finished_run(130 if stopped in ("SIGINT", "SIGTERM") else 0)
    cfg = trainer.config
    echo(f"run directory: {trainer.run.path}")
    echo(f"{cfg.arch} on {trainer.data.source} ({len(trainer.data)} images, "
         f"{trainer.data.resolution}px), {_length(trainer)} of batch {cfg.batch_size}, "
         f"loss {cfg.loss}, device {trainer.device.type}")
    if trainer.classes is not None:
        from .data.classes import describe
        echo(f"conditional: {describe(trainer.classes)}"
             + (", drawn equally often" if cfg.class_balance else ""))
    for line in hardware.run_header(trainer.precision, trainer.precision_reason,
                                    cfg.channels_last, trainer.device):
        echo(line)
    if trainer.dist.active:
        echo(f"distributed: {trainer.dist.world_size} processes ({trainer.dist.backend}), "
             f"{trainer.sampler.local_batch} images per process per step")
    if prog is not None:
        trainer.callbacks.on_step.append(update)
    with prog if prog is not None else contextlib.nullcontext():
        summary = trainer.train()
    distributed.end_finished_run()  # every rank leaves the process group together
    if summary["stopped"] in ("SIGINT", "SIGTERM"):
        echo(f"stopped by {summary['stopped']} at step {summary['step']}; checkpoint saved. "
             f"Continue with: ganzoo train --resume {trainer.run.path}")
        sys.exit(130)
    if summary["stopped"]:
        echo(f"stopped early at step {summary['step']}: {summary['stopped']}")
    echo(f"done: {summary['step']} steps in {summary['seconds']:.0f}s; samples: "
         f"{trainer.run.path / 'samples.png'}")


def _length(trainer: Any) -> str:
    """The run's length for the header: its steps, or its time budget."""
    budget = trainer.budget
    if budget is None:
        return f"{trainer.total_steps} steps"
    left = max(0.0, budget.seconds - budget.spent) / 60
    clock = "CPU" if budget.clock == "cpu" else "wall-clock"
    return f"{budget.seconds / 60:g} minutes of {clock} time ({left:.1f} left) in steps"


def _launch(nproc: int, values: dict[str, Any], resume: str | None, out: str | None,
            echo: Any) -> None:
    """`train --nproc N`: check the run once here, then start N copies of this command through
    torchrun's launcher (each joins the process group; rank 0 prints and writes)."""
    from .training import distributed
    from .training.assembly import build_components
    from .training.config import make_config
    from .training.rundir import RunDir, default_run_dir
    from .util.tomlio import read_toml

    argv = distributed.strip_nproc(click.get_current_context().meta["ganzoo.argv"])
    if resume:
        run = RunDir(resume)
        if not run.config_path.exists():
            raise GanZooError(f"--resume {resume!r} is not a run directory (no config.toml)")
        cfg = make_config(read_toml(run.config_path), f"config of run {resume!r}")
        run_dir = resume
    else:
        cfg = make_config(values)
        build_components(cfg)
        run_dir = out or str(default_run_dir(cfg.arch))
        if out is None:  # one name for every process, chosen here
            argv += ["--out", run_dir]
    RunDir(run_dir).check_start(new=not resume)  # one message here, not one per process
    distributed.per_rank_batch(cfg.batch_size, nproc)
    distributed.check_gpus(cfg.device, nproc, cfg.sync_bn)
    echo(f"starting {nproc} processes (torchrun, standalone)")
    distributed.launch(nproc, argv, run_dir)


# ---------------------------------------------------------------------------- sample

@cli.command()
@click.argument("target", type=click.Path())
@click.option("-n", "--n", "n", type=click.IntRange(1, 1_000_000), default=64, show_default=True,
              help="Number of images.")
@click.option("--out", type=click.Path(), required=True,
              help="x.png: a grid (at most 4096 images); x.npy: (N, H, W, 3) uint8 array; "
              "otherwise a new or empty folder of PNGs. Written as the images are made.")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True,
              help="Latent noise seed (0 to 2**64-1).")
@click.option("--best", is_flag=True, help="Use the run's best checkpoint instead of the latest.")
@click.option("--no-ema", is_flag=True, help="Use the raw generator weights, not the EMA.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
              show_default=True,
              help="auto: bf16 where the hardware runs it fast (conv64: 1.7x faster; pixels "
              "within about 1/255 of fp32's), else fp32.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Images generated at once.")
@click.option("--truncation", type=float, default=1.0, show_default=True,
              help="Truncation psi in (0, 1]: 1 is off; smaller trades variety for fidelity "
              "(latents redrawn within 2*psi of the mean, or a StyleGAN's w pulled toward its "
              "mean). Every form, and --interpolate.")
@click.option("--interpolate", type=click.IntRange(2, 1000), metavar="K",
              help="Instead of images: a looping walk through K seeded latents (spherical "
              "interpolation) to --out x.gif, or x.mp4 with ffmpeg on PATH.")
@click.option("--frames", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="--interpolate: frames from one latent to the next.")
@click.option("--fps", type=click.IntRange(1, 50), default=12, show_default=True,
              help="--interpolate: frames per second.")
@click.option("--class", "classes", multiple=True, metavar="NAME|INDEX",
              help="Conditional runs: only this class (repeatable: the classes in turn).")
@click.option("--class-grid", is_flag=True,
              help="Conditional runs: one row per class (or per --class), -n columns (default "
              "8) of the same latents, as one x.png.")
def sample(target: str, n: int, out: str, seed: int, best: bool, no_ema: bool,
           device: str, precision: str, batch_size: int, truncation: float,
           interpolate: int | None, frames: int, fps: int, classes: tuple[str, ...],
           class_grid: bool) -> None:
    """Generate images from a run directory or checkpoint file.

    Images are made and written one batch at a time: -n 1000000 needs the memory of -n 64.
    --out x.npy is one array at exactly that path; x.png one grid of at most 4096 images and
    64 megapixels; a name without suffix a new folder of 000000.png, 000001.png, ... (an
    existing folder must be empty), encoded by a thread pool while the next batch is made.
    Each is written under a temporary name beside it and renamed when complete: it appears
    whole or not at all. The same seed, precision and batch size give the same images in
    every form. --truncation 0.7 trades variety for fidelity (docs/quickstart.md, "Truncation
    and latent walks"); --interpolate K --out walk.gif animates a loop through K latents,
    K x --frames frames, whose K keyframes are the first K images of the same seed.
    Conditional runs: --class NAME (repeatable) draws only those classes, in turn;
    --class-grid --out grid.png draws one row per class (or per --class), -n columns of the
    same latents (docs/conditional.md)."""
    import time

    import torch

    from . import api, sampling
    from .data.sample_output import (
        ANIMATIONS,
        check_out,
        check_walk,
        check_walk_out,
        sample_precision,
        sample_to,
        walk_to,
        write_samples,
    )
    from .data.sample_output import class_grid as class_grid_images
    from .training.trainer import resolve_device
    from .util.hardware import choose_channels_last

    # Before loading anything: the truncation, the walk's options and the output.
    psi = sampling.check_psi(truncation)
    ctx = click.get_current_context()
    given = [f"--{name}" for name in ("frames", "fps")
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
    n_given = ctx.get_parameter_source("n") is not click.core.ParameterSource.DEFAULT
    if class_grid:
        if interpolate is not None:
            raise UsageError("--class-grid and --interpolate are two pictures; give one")
        if os.path.splitext(out)[1].lower() != ".png":
            raise UsageError(f"--out {shown(out)}: --class-grid draws one picture; name it "
                             "x.png")
        n = n if n_given else 8  # columns
        if n > 256:
            raise UsageError(f"-n {n}: a class grid has -n columns, at most 256")
    if interpolate is not None and len(classes) > 1:
        raise UsageError("--interpolate walks within one class: give --class once")
    if interpolate is None:
        if given:
            raise UsageError(f"{' and '.join(given)} set the animation of --interpolate K; "
                             "give --interpolate too")
        if os.path.splitext(out)[1].lower() in ANIMATIONS:
            raise UsageError(f"--out {shown(out)}: an animation is a walk through latents; add "
                             "--interpolate K (K >= 2 latents)")
        check_out(out, n)
    else:
        if n_given:
            raise UsageError("-n does not apply to --interpolate K: the walk has K x --frames "
                             "frames")
        check_walk(interpolate, frames, fps)
        check_walk_out(out)
    dev = resolve_device(device)
    used, why = sample_precision(precision, dev)
    generator, meta = api.load_generator(target, "best" if best else "latest", dev, not no_ema)
    if choose_channels_last(dev)[0]:  # faster convolutions, the same images (measured)
        generator = generator.to(memory_format=torch.channels_last)
    sampling.check_truncation(generator, psi)
    chosen = sampling.class_indices(generator, list(classes))
    truncated = f", truncation {psi:g}" if psi != 1 else ""
    start = time.perf_counter()
    if interpolate is not None:
        path = walk_to(generator, interpolate, out, frames, fps, seed, psi, batch_size,
                       precision=used, label=None if chosen is None else chosen[0])
        seconds = time.perf_counter() - start
        click.echo(escape(f"wrote a walk through {interpolate} latents ({interpolate * frames} "
                          f"frames, {fps} fps) from {meta['path']} (step {meta['step']}) to "
                          f"{path} in {seconds:.1f}s, {used} ({why}){truncated}"))
        return
    if class_grid:
        images = class_grid_images(generator, chosen, n, seed, batch_size, precision=used,
                                   truncation=psi)
        path = write_samples([images], len(images), out, nrow=n)
        click.echo(escape(f"wrote a class grid of {len(images) // n} classes x {n} from "
                          f"{meta['path']} (step {meta['step']}) to {path}, {used} ({why})"
                          f"{truncated}"))
        return
    path = sample_to(generator, n, out, seed=seed, batch_size=batch_size, precision=used,
                     truncation=psi, classes=chosen)
    seconds = time.perf_counter() - start
    # Paths come from the user and from checkpoint metadata: escaped like every other message.
    click.echo(escape(f"wrote {n} images from {meta['path']} (step {meta['step']}) to {path} "
                      f"in {seconds:.1f}s ({n / max(seconds, 1e-9):.0f} images/s), {used} "
                      f"({why}){truncated}"))


# ---------------------------------------------------------------------------- list / show

def _kind(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in KIND_ALIASES:
        raise click.BadParameter(f"unknown kind {value!r}; kinds: {', '.join(KINDS)}")
    return KIND_ALIASES[value]


@cli.command("list")
@click.argument("kind", required=False)
@click.argument("pattern", required=False, default="*")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def list_cmd(kind: str | None, pattern: str, as_json: bool) -> None:
    """List components: KIND is arch, loss, schedule, augment or metric; PATTERN a wildcard."""
    if kind and kind not in KIND_ALIASES and pattern == "*":
        kind, pattern = None, kind  # `ganzoo list 'conv*'`
    from .plugins import get_registry

    entries = get_registry().entries(_kind(kind), pattern)
    rows = [{"kind": e.kind, "name": e.name, "plugin": e.plugin,
             "distribution": e.distribution, "version": e.version,
             "description": e.cls.summary()} for e in entries]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table("kind", "name", "plugin", "description", box=None)
    for r in rows:
        provider = r["plugin"] + (f" ({r['distribution']})" if r["distribution"] else "")
        # Text cells: rich reads markup ("[bold]", "[link=...]") in plain strings, and the
        # descriptions and package names come from installed code.
        table.add_row(*(Text(escape(cell)) for cell in
                        (r["kind"], r["name"], provider, r["description"])))
    Console(width=160).print(table)


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def show(name: str, as_json: bool) -> None:
    """Show a component's options: type, default and description."""
    from .options import describe_options
    from .plugins import get_registry

    registry = get_registry()
    entry = registry.find_any(name)
    if entry is None:
        # Reuse the registry's did-you-mean over every kind.
        import difflib

        close = difflib.get_close_matches(name, registry.all_names(), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise click.UsageError(f"unknown component {name!r}.{hint}")
    rows = describe_options(entry.cls.Options)
    if as_json:
        click.echo(json.dumps({"kind": entry.kind, "name": entry.name, "plugin": entry.plugin,
                               "description": entry.cls.summary(), "options": rows},
                              indent=2, default=str))
        return
    click.echo(escape(f"{entry.name} ({KIND_TITLES[entry.kind]}, plugin {entry.plugin}): "
                      f"{entry.cls.summary()}"))
    if not rows:
        click.echo("  no options")
    for r in rows:
        click.echo(escape(f"  {entry.name}.{r['name']} ({r['type']}, default {r['default']!r}): "
                          f"{r['description']}"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def plugins(as_json: bool) -> None:
    """Installed plugins: distribution, version, hooks and components (and failures)."""
    from .plugins import ERROR_LIMIT, plugin_system

    infos = [i.as_dict() for i in plugin_system().infos.values()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    from . import PLUGIN_API_VERSION, __version__

    click.echo(f"gan-zoo {__version__}, plugin API version {PLUGIN_API_VERSION}")
    for info in infos:
        # Names, versions and errors come from installed packages' metadata and code.
        where = (f"{bare(info['distribution'])} {bare(info['version'])}" if info["distribution"]
                 else "in-process")
        api = f"api {info['api_version']}" if info["api_version"] is not None else "api ?"
        click.echo(f"{bare(info['name'])}  [{info['status']}]  {where}  {api}  "
                   f"({bare(info['module'])})")
        if info["error"]:
            click.echo(f"    error: {bare(info['error'], ERROR_LIMIT)}")
        if info["hooks"]:
            click.echo(f"    hooks: {', '.join(sorted(set(info['hooks'])))}")
        if info["components"]:
            names = ", ".join(f"{c['name']} ({c['kind']})" for c in info["components"])
            click.echo(f"    components: {names}")


def main() -> None:
    install_warning_format()
    cli(prog_name="ganzoo")
