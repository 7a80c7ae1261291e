"""The ``edgerl`` command line: thin wrappers, one library call per subcommand.

Exit status: 0 success, 2 bad input or configuration (the message names it), 1 internal failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from edgerl import __version__
from edgerl.utils.errors import InputError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="edgerl",
    help="Reinforcement-learning-driven partitioning and offloading of DNN inference at the edge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(help="Train a detector or an agent; writes a run directory.", no_args_is_help=True)
experiment_app = typer.Typer(help="Reproduce a paper figure or table.", no_args_is_help=True)
profile_app = typer.Typer(help="Profile DNNs and detectors.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate and compare methods.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(experiment_app, name="experiment")
app.add_typer(profile_app, name="profile")
app.add_typer(evaluate_app, name="evaluate")

def _version_callback(value: bool) -> None:
    if value:
        console.print(f"edgerl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """edgerl command line."""


@app.command()
def demo(
    config: Path | None = typer.Option(None, "--config", help="YAML config (defaults built in)."),
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory for the demo's outputs."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for everything random (overrides the config)."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write summary.json here."),
) -> None:
    """The main job, offline, on built-in defaults."""
    from edgerl.demo import run_demo

    run_demo(out_dir=out, seed=seed, json_path=json_path, config_path=config, console=console)


@profile_app.command("dnn")
def profile_dnn(
    name: str = typer.Argument(..., help="Model name, e.g. vgg16, resnet50, lenet7, cerl8."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the profile as JSON here."),
    num_classes: int | None = typer.Option(None, "--num-classes", help="Output classes (default per model)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Measure again instead of reading the cache."),
) -> None:
    """Per-layer MACs, FLOPs, parameter and output bytes, and the split-point view."""
    from edgerl.edge.profiler import profile_model, profile_to_json, render_profile_table

    prof = profile_model(name, num_classes=num_classes, use_cache=not no_cache)
    console.print(render_profile_table(prof))
    if json_path is not None:
        profile_to_json(prof, json_path)
        console.print(f"wrote {json_path}")


@profile_app.command("privacy")
def profile_privacy(
    model: str = typer.Option(..., "--model", help="Model name, e.g. vgg16, resnet50, lenet7."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the privacy profile as JSON here."),
    steps: int | None = typer.Option(None, "--steps", help="Adam steps per split decoder (default 160)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of victim weights, images and decoders (default 0)."),
    image_size: int | None = typer.Option(None, "--image-size", help="Image side in px (default 64 for VGG/ResNet, 32 for LeNet)."),
    n_train: int | None = typer.Option(None, "--n-train", help="Images the attacker trains on (default 256)."),
    n_test: int | None = typer.Option(None, "--n-test", help="Held-out images the SSIM is averaged over (default 64)."),
    threads: int | None = typer.Option(None, "--threads", help="Torch CPU threads (default: torch's setting)."),
) -> None:
    """Privacy leakage per split point: SSIM of model-inversion reconstructions (HC-MAPPO-L)."""
    from edgerl.edge.privacy import measure_leakage, render_privacy_table, write_leakage_table

    given = {"steps": steps, "seed": seed, "n_train": n_train, "n_test": n_test}
    prof = measure_leakage(
        model, image_size=image_size, num_threads=threads, **{k: v for k, v in given.items() if v is not None}
    )
    console.print(render_privacy_table(prof))
    if json_path is not None:
        write_leakage_table(prof, json_path)
        console.print(f"wrote {json_path}")


@profile_app.command("detector")
def profile_detector(
    model: str = typer.Option("person_n,person_s,person_m", "--model", help="Comma-separated built-in names or .onnx files."),
    data: Path | None = typer.Option(None, "--data", help="COCO-format validation set (default: synthetic frames made now)."),
    sizes: str = typer.Option("512,640,960,1280", "--sizes", help="Comma-separated input sizes (multiples of 32)."),
    frames: int = typer.Option(3, "--frames", help="Synthetic validation frames when --data is not given."),
    seed: int = typer.Option(900_000, "--seed", help="Seed of the synthetic validation frames."),
    json_path: Path = typer.Option(..., "--json", help="Write the profile here."),
    keep_latency: bool = typer.Option(
        False, "--keep-latency", help="Measure accuracy only; keep the latencies of the profile already at --json."
    ),
) -> None:
    """Latency per (model, input size) and accuracy by resized object area, as JSON."""
    from edgerl.vision.profile_run import profile_detectors

    profile_detectors(
        [m for m in model.split(",") if m], [int(v) for v in sizes.split(",") if v], json_path,
        data=data, frames=frames, seed=seed, console=console, keep_latency=keep_latency,
    )


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (images/ and annotations.json)."),
    frames: int = typer.Option(4, "--frames", min=1, help="Number of frames."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed."),
    width: int | None = typer.Option(None, "--width", help="Frame width in pixels (default 3840)."),
    height: int | None = typer.Option(None, "--height", help="Frame height in pixels (default 2160)."),
    video: bool = typer.Option(False, "--video", help="A 30 FPS video sequence instead of independent stills."),
    preset: str = typer.Option("default", "--preset", help="easy, default or hard."),
    config: Path | None = typer.Option(None, "--config", help="YAML with SynthConfig fields (overrides the preset)."),
) -> None:
    """Generate synthetic PANDA-like 4K scenes or videos with COCO labels."""
    from edgerl.utils.config import config_from_dict, read_yaml_mapping
    from edgerl.vision.synth import SynthConfig, write_dataset

    if preset not in ("easy", "default", "hard"):
        raise InputError(f"--preset: {preset!r} is not one of easy, default, hard")
    base = SynthConfig.preset(preset)
    if config is not None:
        data = {**base.model_dump(), **read_yaml_mapping(config)}
        base = config_from_dict(SynthConfig, data, str(config))
    if width is not None or height is not None:
        base = base.resized(width or base.width_px, height or base.height_px)
    summary = write_dataset(out, frames, seed, base, video=video)
    console.print(f"wrote {frames} frame(s) to {out}/images and {out}/annotations.json")
    return summary


@app.command()
def detect(
    input: Path = typer.Option(..., "--input", help="An image, a folder of images or a video."),
    out: Path = typer.Option(..., "--out", help="Output folder (detections.json, summary.json)."),
    method: str = typer.Option("repose", "--method", help="full, uniform, sahi, remix, meanshift, repose."),
    model: str | None = typer.Option(None, "--model", help="Detector name or .onnx file (default: built-in family)."),
    workers: int = typer.Option(4, "--workers", min=1, help="Edge workers E."),
    executor: str = typer.Option("local", "--executor", help="local or ray."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Join this Ray cluster."),
    budget_ms: float | None = typer.Option(None, "--budget-ms", help="Latency budget of the fine stage."),
    conf: float | None = typer.Option(None, "--conf", help="Confidence threshold."),
    config: Path | None = typer.Option(None, "--config", help="YAML with ReposeConfig fields."),
    profile: Path | None = typer.Option(None, "--profile", help="Detector profile JSON."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write summary.json here."),
) -> None:
    """Run a detection method on images or a video."""
    from edgerl.repose.pipeline import ReposeConfig
    from edgerl.repose.runner import (
        METHODS,
        build_method,
        executor_for,
        load_profile,
        profile_with_model,
        run_on_inputs,
        with_model,
    )
    from edgerl.utils.config import load_config
    from edgerl.utils.io import write_json
    from edgerl.utils.rundir import RunDir

    if method.split(":")[0] not in METHODS:
        raise InputError(f"--method: method {method!r} is not one of {', '.join(METHODS)}")
    cfg = load_config(ReposeConfig, config, overrides={"n_workers": workers, "budget_ms": budget_ms, "conf_threshold": conf})
    if not input.exists():
        raise InputError(f"--input {input}: no such file or folder")
    prof = None
    category_ids = None
    if model is not None:
        cfg = with_model(cfg, model)
        from edgerl.vision.detectors import load_detector
        from edgerl.vision.metrics import COCO_CATEGORY_IDS

        if len(load_detector(model, input_size=int(cfg.options[0].rsplit("@", 1)[1])).class_names) == 80:
            category_ids = COCO_CATEGORY_IDS
    if method.split(":")[0] in ("remix", "meanshift", "repose", "repose-parallel", "repose-coarse-full"):
        prof = load_profile(profile) if (profile is not None or model is None) else None
        if model is not None:
            prof = profile_with_model(prof if prof is not None else _maybe_default_profile(), cfg)
    with executor_for(executor, workers, ray_address) as ex:
        m = build_method(method, ex, cfg, prof)
        results, summary = run_on_inputs(input, m, console, category_ids)
    rd = RunDir(out)
    rd.write_config(cfg)
    write_json(out / "detections.json", results)
    summary = {"method": method, "executor": executor, "workers": workers, **summary}
    rd.write_summary(summary, json_path=json_path)
    console.print(
        f"{method}: {summary['frames']} frame(s), {summary['detections']} detections, "
        f"{summary['frames_skipped']} skipped, latency {summary['latency_ms_mean']:.1f} ms mean -> {out}"
    )


def _maybe_default_profile():
    from edgerl.repose.runner import DEFAULT_PROFILE_PATH, load_profile

    return load_profile() if DEFAULT_PROFILE_PATH.is_file() else None


@evaluate_app.command("repose")
def evaluate_repose(
    data: Path = typer.Option(..., "--data", help="COCO-format set (e.g. from 'edgerl synth')."),
    methods: str = typer.Option("uniform,meanshift,repose", "--methods", help="Comma-separated method names."),
    budget_ms: float | None = typer.Option(None, "--budget-ms", help="Latency budget of the fine stage."),
    workers: int = typer.Option(4, "--workers", min=1, help="Edge workers E."),
    executor: str = typer.Option("local", "--executor", help="local or ray."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Join this Ray cluster."),
    config: Path | None = typer.Option(None, "--config", help="YAML with ReposeConfig fields."),
    profile: Path | None = typer.Option(None, "--profile", help="Detector profile JSON."),
    json_path: Path = typer.Option(..., "--json", help="Write the comparison here."),
) -> None:
    """Compare methods side by side on a labelled set: AP and latency."""
    from edgerl.repose.experiment import print_table
    from edgerl.repose.pipeline import ReposeConfig
    from edgerl.repose.runner import build_method, evaluate_methods, executor_for, load_profile
    from edgerl.utils.config import load_config
    from edgerl.utils.io import write_json
    from edgerl.vision.datasets import load_dataset

    cfg = load_config(ReposeConfig, config, overrides={"n_workers": workers, "budget_ms": budget_ms})
    ds = load_dataset(data)
    names = [m for m in methods.split(",") if m]
    prof = load_profile(profile)
    with executor_for(executor, workers, ray_address) as ex:
        built = {n: build_method(n, ex, cfg, prof) for n in names}
        table, _ = evaluate_methods(ds, built)
    result = {"data": str(data), "frames": len(ds), "budget_ms": cfg.budget_ms, "workers": workers, "methods": table}
    write_json(json_path, result)
    print_table(table, console)


@train_app.command("detector")
def train_detector_cmd(
    size: str = typer.Option("n", "--size", help="n, s or m."),
    out: Path = typer.Option(..., "--out", help="Run directory."),
    config: Path | None = typer.Option(None, "--config", help="YAML with DetectorTrainConfig fields."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (overrides the config)."),
    export_to: Path | None = typer.Option(None, "--export-to", help="Also export person_SIZE.onnx into this folder."),
) -> None:
    """Train one size of the built-in detector family on synthetic scenes."""
    from edgerl.utils.config import load_config
    from edgerl.vision.builtin.export import export_run
    from edgerl.vision.builtin.train import DetectorTrainConfig, train_detector

    cfg = load_config(DetectorTrainConfig, config, overrides={"size": size, "seed": seed})
    train_detector(cfg, out, console=console)
    if export_to is not None:
        export_run(out, export_to)
        console.print(f"exported person_{cfg.size}.onnx to {export_to}")


@train_app.command("repose")
def train_repose_cmd(
    out: Path = typer.Option(..., "--out", help="Run directory (policy.pt is written there)."),
    config: Path | None = typer.Option(None, "--config", help="YAML with ReposeTrainConfig fields."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (overrides the config)."),
) -> None:
    """Train the RL-DCA agent with PPO on coarse detections of synthetic frames."""
    from edgerl.repose.train import ReposeTrainConfig, train_repose
    from edgerl.utils.config import load_config

    cfg = load_config(ReposeTrainConfig, config, overrides={"seed": seed})
    train_repose(cfg, out, console=console)


def _merged(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``; nested mappings are merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _experiment_config(cls: type, presets: dict, preset: str, config: Path | None) -> Any:
    """The preset's settings with the YAML's fields on top (None without --config)."""
    from edgerl.utils.config import config_from_dict, read_yaml_mapping

    if preset not in presets:
        raise InputError(f"--preset: {preset!r} is not one of {', '.join(presets)}")
    if config is None:
        return None
    return config_from_dict(cls, _merged(presets[preset], read_yaml_mapping(config)), str(config))


def _experiment_command(name: str, doc: str, module: str, config_cls: str) -> None:
    """Register ``edgerl experiment NAME``: ``module.run_experiment`` with ``module.PRESETS``."""

    def _cmd(
        out: Path = typer.Option(..., "--out", help="Output folder."),
        preset: str = typer.Option("quick", "--preset", help="quick or paper."),
        config: Path | None = typer.Option(None, "--config", help=f"YAML with {config_cls} fields (override the preset)."),
    ) -> None:
        import importlib

        mod = importlib.import_module(module)
        cfg = _experiment_config(getattr(mod, config_cls), mod.PRESETS, preset, config)
        mod.run_experiment(name, out, preset, cfg=cfg, console=console)

    _cmd.__doc__ = doc
    experiment_app.command(name)(_cmd)


for _name, _doc in (
    ("repose-fig3", "RE-POSE accuracy vs latency over several budgets (paper Fig. 3)."),
    ("repose-fig4", "RE-POSE coarse-detection ablation (paper Fig. 4)."),
    ("repose-fig5", "RE-POSE clustering ablation: MeanShift vs RL-DCA (paper Fig. 5)."),
):
    _experiment_command(_name, _doc, "edgerl.repose.experiment", "ReposeExperimentConfig")


@train_app.command("cerl")
def train_cerl_cmd(
    out: Path = typer.Option(..., "--out", help="Run directory (agent.pt is written there)."),
    config: Path | None = typer.Option(None, "--config", help="YAML with CerlTrainConfig fields."),
    method: str | None = typer.Option(None, "--method", help="cerl, d2qn or ddqn (overrides the config)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (overrides the config)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs (overrides the config)."),
) -> None:
    """Train CERL (or the DDQN / D2QN baselines) and compare with LC / EC / Random."""
    from edgerl.cerl.experiment import CerlTrainConfig, train_cerl
    from edgerl.utils.config import load_config

    cfg = load_config(CerlTrainConfig, config, overrides={"seed": seed, "method": method, "epochs": epochs})
    train_cerl(cfg, out, console=console)


for _name, _doc in (
    ("cerl-convergence", "CERL vs D2QN vs DDQN: cost vs epochs for every N (paper 002 Fig. 4)."),
    ("cerl-utilisation", "Remaining compute share per node before and after training (Fig. 5)."),
    ("cerl-scaling", "Cost and collaboration count of the learned methods at one N (Fig. 6)."),
    ("cerl-benchmarks", "CERL vs LC / EC / Random: cost and completion rate (Fig. 7)."),
    ("cerl-optimality", "Optimality gap of every method on tiny instances solved exactly."),
):
    _experiment_command(_name, _doc, "edgerl.cerl.experiment", "CerlExperimentConfig")


@train_app.command("hcmappo")
def train_hcmappo_cmd(
    out: Path = typer.Option(..., "--out", help="Run directory (agent.pt is written there)."),
    config: Path | None = typer.Option(None, "--config", help="YAML with HcTrainConfig fields."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (overrides the config)."),
    iterations: int | None = typer.Option(None, "--iterations", help="Training iterations (overrides the config)."),
) -> None:
    """Train HC-MAPPO-L (or an ablation) and compare with the heuristic baselines."""
    from edgerl.hcmappo.experiment import HcTrainConfig, train_hcmappo
    from edgerl.utils.config import load_config

    cfg = load_config(HcTrainConfig, config, overrides={"seed": seed, "iterations": iterations})
    train_hcmappo(cfg, out, console=console)


for _name, _doc in (
    ("hcmappo-convergence", "Delay and user cost vs iteration of every learned method, per-user cost spread (paper 003 Figs. 5-6)."),
    ("hcmappo-tradeoff", "Energy vs privacy as the energy weight sweeps (Fig. 4)."),
    ("hcmappo-scaling", "Every method vs users, servers and services (Figs. 7-10)."),
    ("hcmappo-sensitivity", "Every method vs delay limit, compute and storage (Figs. 11-14)."),
):
    _experiment_command(_name, _doc, "edgerl.hcmappo.experiment", "HcExperimentConfig")


@train_app.command("streaming")
def train_streaming_cmd(
    out: Path = typer.Option(..., "--out", help="Run directory (bandit.pt is written there)."),
    config: Path | None = typer.Option(None, "--config", help="YAML with StreamTrainConfig fields."),
    seed: int | None = typer.Option(None, "--seed", help="Seed (overrides the config)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs (overrides the config)."),
) -> None:
    """Train the streaming-perception bandit and compare it with its fixed policy on test videos."""
    from edgerl.streaming.train import StreamTrainConfig, train_streaming
    from edgerl.utils.config import load_config

    cfg = load_config(StreamTrainConfig, config, overrides={"seed": seed, "epochs": epochs})
    train_streaming(cfg, out, console=console)


for _name, _doc in (
    ("streaming-table3", "Bandit vs static expert, Streamer, AdaScale-style and random policies: sAP on held-out videos (paper 004 Table 3)."),
    ("streaming-resilience", "Bandit and static expert on a slower platform and under contention (paper 004 Tables 4-5 analogue)."),
    ("streaming-tracking", "Bandit with and without the tracker-stride dimension vs static policies (paper 004 Table 6)."),
    ("streaming-switching", "Model switching with and without the switchability context and switching cost (paper 004 Table 7)."),
):
    _experiment_command(_name, _doc, "edgerl.streaming.experiment", "StreamExperimentConfig")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map errors to exit statuses."""
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except InputError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # usage errors of the argument parser, then internal failures
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            if type(exc).__name__ != "NoArgsIsHelpError":  # help was already printed
                exc.show()
            return int(exc.exit_code)
        if type(exc).__name__ == "Abort":
            return 1
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}", highlight=False)
        if "--debug" in (argv or sys.argv):
            raise
        return 1
    return 0


def _console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _console_main()
