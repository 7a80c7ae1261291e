"""The ``edgerl`` command line: thin wrappers, one library call per subcommand.

Exit status: 0 success, 2 bad input or configuration (the message names it), 1 internal failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from edgerl import __version__
from edgerl.utils.errors import InputError, NotLandedError

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

# Systems and what they are called in messages.
SYSTEMS = {
    "repose": "RE-POSE",
    "cerl": "CERL",
    "hcmappo": "HC-MAPPO-L",
    "streaming": "adaptive streaming perception",
}


def _not_landed(what: str) -> None:
    raise NotLandedError(f"{what} is not available in edgerl {__version__} yet")


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


@profile_app.command("detector")
def profile_detector() -> None:
    """Latency and precision-by-area profiles of detectors."""
    _not_landed("edgerl profile detector")


@app.command()
def synth() -> None:
    """Generate synthetic PANDA-like 4K scenes or videos with COCO labels."""
    _not_landed("edgerl synth")


@app.command()
def detect() -> None:
    """Run a detection method on images or a video."""
    _not_landed("edgerl detect")


def _system_stub(group: typer.Typer, key: str, label: str, verb: str) -> None:
    def _cmd() -> None:
        _not_landed(f"edgerl {verb} {key} ({label})")

    _cmd.__doc__ = f"{verb.capitalize()} {label}."
    group.command(key)(_cmd)


_system_stub(train_app, "detector", "the built-in detector family", "train")
for _key, _label in SYSTEMS.items():
    _system_stub(train_app, _key, _label, "train")
_system_stub(evaluate_app, "repose", SYSTEMS["repose"], "evaluate")
for _name, _label in {
    "repose-compare": "RE-POSE comparison",
    "cerl-convergence": "CERL convergence",
    "hcmappo-compare": "HC-MAPPO-L comparison",
    "streaming-table3": "streaming perception table 3",
}.items():
    _system_stub(experiment_app, _name, _label, "experiment")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map errors to exit statuses."""
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except (InputError, NotLandedError) as exc:
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
