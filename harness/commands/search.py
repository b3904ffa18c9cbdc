"""`splitdb search`: let hypothesis find a minimal interleaving that makes a role fail with busy.

The search is `harness.interleavings.search`'s; this module reads the flags, prints the budget
and the find, writes the step script and replays it as real processes. Exit 1 when one was
found, 0 when the budget ran out without one, 2 for bad input.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import write_atomically
from harness.commands.exits import EXIT_FAILED, EXIT_OK
from harness.commands.paths import output_file, path_arg

if TYPE_CHECKING:
    from harness.interleavings.script import ScriptFile


def handle(args: argparse.Namespace) -> int:
    from harness.interleavings.interleave import run_script
    from harness.interleavings.replay import step_table
    from harness.interleavings.script import dump_script, parse_script
    from harness.interleavings.search import OPERATIONS, journal_mode_of, search
    from harness.interleavings.targets import TARGETS
    from reference.topology import BUILTIN_TOPOLOGIES, REFERENCE_ROLES, load_topology

    topology = load_topology(args.topology)
    if args.out is not None:
        output_file(args.out, "--out")
    if args.journal_mode is not None:
        topology = topology.with_settings(journal_mode=args.journal_mode)
    print(
        f"search: topology {topology.name} ({topology.layout} layout), "
        f"journal_mode={journal_mode_of(topology)}, busy_timeout_ms=0; target {args.target} "
        f"({', '.join(sorted(TARGETS[args.target]))})\n"
        f"  operations per role ({', '.join(REFERENCE_ROLES)}): {', '.join(OPERATIONS)}\n"
        f"  budget: {args.max_examples} examples, {args.max_seconds:g} s, "
        f"up to {args.max_steps} steps; seed {args.seed}",
        flush=True,
    )
    result = search(
        topology,
        target=args.target,
        max_examples=args.max_examples,
        max_seconds=args.max_seconds,
        max_steps=args.max_steps,
        seed=args.seed,
    )
    if result.found is None:
        print(
            f"none found: {result.examples} examples in {result.seconds:.1f} s gave no "
            f"{args.target} outcome; the budget ran out ({result.stopped_by})"
        )
        if args.out is not None:
            print(f"nothing written to {args.out}")
        return EXIT_OK
    bad = next(d for d in result.outcomes if d.outcome in TARGETS[args.target])
    print(
        f"found: {bad.outcome} (code {bad.code}) after {result.examples} examples; shrunk to "
        f"{len(result.found)} steps ({result.calls} runs in all, {result.seconds:.1f} s)"
    )
    out: Path | None = args.out
    name = out.stem if out is not None else f"found-{topology.name}"
    topology_ref = args.topology
    if topology_ref not in BUILTIN_TOPOLOGIES and out is not None:
        topology_ref = os.path.relpath(Path(topology_ref).resolve(), out.resolve().parent)
    script = result.script(
        name=name,
        topology_ref=topology_ref,
        description=(
            f"found by splitdb search: a minimal interleaving with a {bad.outcome} error "
            f"on the {topology.name} layout"
        ),
    )
    command = f"splitdb search --topology {args.topology} --target {args.target}"
    if args.journal_mode is not None:
        command += f" --journal-mode {args.journal_mode}"
    header = (
        f"Found by `{command} --seed {args.seed}`\n"
        f"(hypothesis: {result.examples} examples, then shrunk to this minimal sequence).\n"
        "The expectations are the outcomes the search observed; replay it as real processes:\n"
        f"  splitdb replay {out if out is not None else '<this file>'} --times 20"
    )
    text = dump_script(script, header=header)
    loaded: ScriptFile
    if out is not None:
        write_atomically(out, text)
        print(f"wrote {out}")
    else:
        print(text, end="")
    loaded = parse_script(
        script.model_dump(mode="json", exclude_unset=True),
        source=str(out or name),
        topology=topology.with_settings(busy_timeout_ms=0),
        text=text,
    )
    if args.no_replay:
        return EXIT_FAILED
    run = run_script(loaded)
    print("\n".join(step_table(run.steps)))
    verdict = "every expectation matched" if run.ok else "DID NOT MATCH"
    print(f"replayed as {len(loaded.script.processes)} real processes: {verdict}")
    return EXIT_FAILED


def _positive(kind: type[int] | type[float], most: float) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        # nan and inf are refused: a budget must end.
        if not math.isfinite(value) or not 0 < value <= most:
            raise argparse.ArgumentTypeError(f"must be above 0 and at most {most:g}, got {text}")
        return value

    return parse


def register(subparsers: Any) -> None:
    """Add the `search` command."""
    # The target names only: the search itself (hypothesis, the actors) loads when it runs.
    from harness.interleavings.targets import TARGETS

    parser = subparsers.add_parser(
        "search",
        help="find a minimal interleaving of the roles' operations that fails with busy",
        description=(
            "Generate interleavings of the three roles' operations with hypothesis, run them "
            "on real connections, shrink the first that fails with the target outcome and "
            "write it as a replayable step script. Exit 1 when one was found, 0 when the "
            "budget ran out without one, 2 for bad input."
        ),
    )
    parser.add_argument("--topology", default="seed", help="built-in name or TOML file")
    parser.add_argument(
        "--journal-mode",
        choices=("wal", "delete", "truncate", "persist"),
        default=None,
        help="override the topology's journal mode",
    )
    parser.add_argument("--target", choices=tuple(TARGETS), default="contention")
    parser.add_argument("--out", type=path_arg, default=None, help="script file to write")
    parser.add_argument("--max-examples", type=_positive(int, 1_000_000), default=300)
    parser.add_argument("--max-seconds", type=_positive(float, 86_400), default=30.0)
    parser.add_argument("--max-steps", type=_positive(int, 100), default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-replay", action="store_true", help="do not replay the find as real processes"
    )
    parser.set_defaults(handler=handle)
