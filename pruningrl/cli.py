"""The command line: ``python -m pruningrl COMMAND ...``.

    agents    [--json]                               list the shipped agents
    train     --env ENV [--steps N] [--seed S] [--sa-reg K [--eps E] [--sa-method M]] --out PATH
    evaluate  --agent A [--episodes N] [--seed S] [--stochastic] [--attack NAME [--eps E]
              [--norm inf|2] [--attack-budget N]] [--json]
    prune     --agent A --method random|magnitude|gradual|micro --sparsity X [--scope S]
              [--finetune-steps N [--finetune-lr LR]] --out PATH
    certify   --agent A --eps E [--norm inf|2] [--method global|local|ibp|crown|alpha-crown]
    convert   FILE --env ENV [--vecnormalize F | --kind K [--log-std X] [--activation A]]
              --out PATH                             a reader's agent as a checkpoint
    sweep     GRID [--out DIR] [--jobs N] [--executor local|ray] [--address A] [--dry-run]
              [--only UNIT ...] [--retry-failed] [--json]  a grid of pruned agents, resumable
    results   DIR_OR_GRID [--json]                  a sweep's rows and sweet spots

An agent is a shipped id ``ENV/VARIANT/seedK`` or an agent file: a ``pruningrl`` checkpoint, a
Stable-Baselines3 PPO/A2C zip or a CleanRL PPO state dict, recognised by content. SB3 and CleanRL
files do not record their environment: name it with ``--env`` (and give an SB3 agent's
``VecNormalize.save`` file with ``--vecnormalize``). With ``--json`` a command prints exactly one
JSON object on stdout, also when interrupted (``"interrupted": true``). Bad input prints one line
on stderr and exits with status 2, before any file is touched; a file that exists is never
overwritten without ``--force``. Any other failure prints one line too, and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _sparsity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a sparsity in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"sparsity must lie in [0, 1), got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _add_agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", required=True,
                        help="shipped id, pruningrl checkpoint, SB3 zip or CleanRL state dict")
    parser.add_argument("--env", default=None,
                        help="the agent's gymnasium id (needed for SB3 and CleanRL files)")
    parser.add_argument("--vecnormalize", default=None,
                        help="an SB3 agent's VecNormalize.save file (observation statistics)")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and out.is_dir():
        raise UsageError(f"{out} is a directory; --out names a checkpoint file")
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m pruningrl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    agents = sub.add_parser("agents", help="list the shipped agents")
    agents.add_argument("--json", action="store_true", help="print one JSON object")

    _add_train(sub)

    evaluate = sub.add_parser("evaluate", help="deterministic return over episodes")
    _add_agent_options(evaluate)
    evaluate.add_argument("--episodes", type=_positive_int, default=50)
    evaluate.add_argument("--seed", type=_nonnegative_int, default=0,
                          help="episode k resets with seed S + k")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions")
    evaluate.add_argument("--attack", default=None,
                          help="none, random, critic, mad, rs, rs+mad, optimal or paad")
    evaluate.add_argument("--eps", type=_nonnegative_float, default=None,
                          help="attack radius on normalized observations (default: the task's)")
    evaluate.add_argument("--norm", choices=("inf", "2"), default="inf", help="attack ball")
    evaluate.add_argument("--attack-budget", type=_positive_int, default=None,
                          help="a learned attacker's training budget: robust-Sarsa samples per "
                               "Q-function (rs, rs+mad) or adversary PPO steps (optimal, paad)")
    evaluate.add_argument("--json", action="store_true")

    prune = sub.add_parser("prune", help="prune an agent (one-shot or with a schedule)")
    _add_agent_options(prune)
    prune.add_argument("--method", required=True, choices=("random", "magnitude", "gradual",
                                                            "micro"))
    prune.add_argument("--sparsity", type=_sparsity, required=True,
                       help="fraction of weight-matrix entries zeroed, in [0, 1)")
    prune.add_argument("--scope", choices=("global", "layer"), default="global")
    prune.add_argument("--finetune-steps", type=_nonnegative_int, default=0,
                       help="PPO steps after (one-shot) or during (gradual, micro) pruning")
    prune.add_argument("--finetune-lr", type=_positive_float, default=None,
                       help="the fine-tuning's learning rate (default: the agent's own)")
    prune.add_argument("--rate", type=float, default=0.02,
                       help="micro: fraction of the remaining weights pruned per update")
    prune.add_argument("--seed", type=_nonnegative_int, default=0)
    prune.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    prune.add_argument("--force", action="store_true", help="overwrite an existing --out")
    prune.add_argument("--no-progress", action="store_true")
    prune.add_argument("--json", action="store_true")

    certify = sub.add_parser("certify", help="certified total-variation bound")
    _add_agent_options(certify)
    certify.add_argument("--eps", type=_nonnegative_float, required=True)
    certify.add_argument("--norm", choices=("inf", "2"), default="inf")
    certify.add_argument("--method", choices=("global", "local", "ibp", "crown", "alpha-crown"),
                         default="global")
    certify.add_argument("--states", type=_positive_int, default=1000,
                         help="visited states for the per-state methods")
    certify.add_argument("--seed", type=_nonnegative_int, default=0,
                         help="first episode's reset seed for the per-state methods")
    certify.add_argument("--json", action="store_true")

    _add_convert(sub)

    _add_sweep_commands(sub)
    return parser


def _add_train(sub) -> None:
    """``train``: PPO or SA-PPO, optionally pruning during training."""
    train = sub.add_parser("train", help="train a PPO or SA-PPO agent")
    train.add_argument("--env", required=True, help="gymnasium id, e.g. Hopper-v5")
    train.add_argument("--steps", type=_positive_int, default=1_000_000, help="environment steps")
    train.add_argument("--seed", type=_nonnegative_int, default=0)
    train.add_argument("--sa-reg", type=_nonnegative_float, default=0.0,
                       help="SA-PPO regularizer weight kappa (0: plain PPO)")
    train.add_argument("--eps", type=_nonnegative_float, default=None,
                       help="SA-PPO radius (default: the task's attack eps)")
    train.add_argument("--sa-method", choices=("sgld", "pgd", "convex"), default=None,
                       help="SA-PPO's inner solver: SGLD (default) or PGD from below, or a "
                            "convex relaxation (CROWN-IBP) from above: the sappo-convex variant")
    train.add_argument("--prune-method", choices=("gradual", "micro"), default=None,
                       help="prune during training with this schedule")
    train.add_argument("--sparsity", type=_sparsity, default=None, help="final sparsity")
    train.add_argument("--prune-window", type=float, nargs=2, default=None,
                       metavar=("START", "END"),
                       help="prune from START to END of the run, as fractions (default 0 0.75; "
                            "sparse-training studies use 0.2 0.75)")
    train.add_argument("--scope", choices=("global", "layer"), default="global")
    train.add_argument("--num-envs", type=_positive_int, default=None)
    train.add_argument("--workers", type=int, default=None,
                       help="env processes (0: in-process; 2 is fastest for a lone run on 2 cores)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="any other PPO setting, e.g. --set log_std_init=-2 (repeatable)")
    train.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--force", action="store_true", help="overwrite an existing --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--json", action="store_true")


def _add_sweep_commands(sub) -> None:
    """``sweep`` (run a grid) and ``results`` (its table and sweet spots)."""
    sweep = sub.add_parser("sweep", help="run a grid of pruned agents (resumable)")
    sweep.add_argument("grid", help="a shipped grid name (e.g. smoke) or a TOML file")
    sweep.add_argument("--out", default=None, help="results folder (default runs/sweeps/NAME)")
    sweep.add_argument("--jobs", type=_positive_int, default=None,
                       help="jobs at once (default: the number of cores)")
    sweep.add_argument("--executor", choices=("local", "ray"), default="local")
    sweep.add_argument("--address", default=None, help="a Ray cluster's address (with ray)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="list the jobs and an estimated cost; run nothing")
    sweep.add_argument("--retry-failed", action="store_true", help="run failed jobs again")
    sweep.add_argument("--only", nargs="+", default=None, metavar="UNIT",
                       help="run only these units (attack names, or crown: the certificates)")
    sweep.add_argument("--no-progress", action="store_true")
    sweep.add_argument("--json", action="store_true")
    results = sub.add_parser("results", help="a sweep's results table and sweet spots")
    results.add_argument("source", metavar="DIR_OR_GRID",
                         help="a results folder, or a grid name (shipped results first)")
    results.add_argument("--json", action="store_true")


def _add_convert(sub) -> None:
    convert = sub.add_parser("convert", help="a reader's agent file as a pruningrl checkpoint")
    convert.add_argument("source", metavar="FILE",
                         help="SB3 zip, CleanRL state dict, or an nn.Sequential's state dict")
    convert.add_argument("--env", required=True, help="the agent's gymnasium id")
    convert.add_argument("--vecnormalize", default=None,
                         help="an SB3 agent's VecNormalize.save file")
    convert.add_argument("--kind", choices=("gaussian", "categorical"), default=None,
                         help="an nn.Sequential's policy kind (its outputs: mean or logits)")
    convert.add_argument("--log-std", type=float, default=None,
                         help="the Gaussian's log-standard-deviation (with --kind gaussian)")
    convert.add_argument("--activation", choices=("tanh", "relu"), default="tanh",
                         help="an nn.Sequential's activation (its state dict does not say)")
    convert.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    convert.add_argument("--force", action="store_true", help="overwrite an existing --out")
    convert.add_argument("--json", action="store_true")


def _emit(payload: dict, as_json: bool, lines: Sequence[str]) -> None:
    if as_json:  # strict JSON: a NaN or infinity is a bug to report, never a value to print
        print(json.dumps(payload, sort_keys=True, allow_nan=False))
    else:
        print("\n".join(lines))


def _warn(message: str) -> None:
    print(f"pruningrl: warning: {message}", file=sys.stderr)


def _load(args: argparse.Namespace):
    """The ``--agent`` of a command, with what its conversion assumed as warning lines."""
    from pruningrl.zoo import load

    return _saying_assumptions(load, args.agent, args.env, args.vecnormalize)


def _saying_assumptions(reader, *arguments):
    """``reader(*arguments)``, each ``InteropWarning`` it raises printed as one line."""
    from pruningrl.interop import InteropWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InteropWarning)
        agent = reader(*arguments)
    for warning in caught:
        if issubclass(warning.category, InteropWarning):
            _warn(str(warning.message))
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    return agent


def _constant_policy(policy) -> bool:
    """Whether pruning left the policy constant; says so on stderr (its certificate is 0)."""
    from pruningrl.bounds import is_constant

    constant = is_constant(policy)
    if constant:
        _warn("the policy is constant: every path from observation to action has a zero "
              "weight, so it ignores the state and certifies 0 for that reason alone")
    return constant


def cmd_agents(args: argparse.Namespace) -> int:
    from pruningrl.zoo import list_agents

    agents = list_agents()
    lines = [f"{'id':32s} {'steps':>9s} {'return':>9s}  size"]
    for a in agents:
        ret = a.get("evaluation", {}).get("mean_return")
        lines.append(f"{a['id']:32s} {a.get('steps', 0):>9} "
                     f"{'-' if ret is None else f'{ret:9.1f}':>9s}  {a['size_kb']} KB")
    _emit({"agents": agents}, args.json, lines if agents else ["no shipped agents yet"])
    return 0


def _train_plan(args: argparse.Namespace) -> tuple:
    """Every check of ``train``'s input, before any file is touched: (config, hooks, extra)."""
    from pruningrl.envs import env_spec, task_eps
    from pruningrl.ppo import PPOConfig, train_state_path

    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"{out} is a directory; --out names a checkpoint file")
    if args.resume and args.force:
        raise UsageError("--resume and --force exclude each other")
    if args.resume and not train_state_path(out).is_file():
        raise UsageError(f"nothing to resume: {train_state_path(out)} does not exist")
    if out.exists() and not (args.resume or args.force):
        raise UsageError(f"{out} exists; pass --resume to continue it or --force to overwrite")
    env_spec(args.env)  # an unknown, unsupported or uninstallable env fails here
    settings: dict = {"env_id": args.env, "total_steps": args.steps, "seed": args.seed}
    if args.sa_reg > 0:
        eps = args.eps if args.eps is not None else task_eps(args.env)
        if eps is None or eps <= 0:
            raise UsageError(f"--sa-reg needs --eps for {args.env} (no literature default)")
        settings.update(sa_reg=args.sa_reg, sa_eps=eps)
        if args.sa_method is not None:
            settings["sa_method"] = args.sa_method
    elif args.eps is not None or args.sa_method is not None:
        raise UsageError("--eps and --sa-method set the SA-PPO regularizer: give them with "
                         "--sa-reg")
    hooks, extra = [], None
    if args.prune_method is not None:
        if args.sparsity is None:
            raise UsageError("--prune-method needs --sparsity")
        from pruningrl.pruning import schedule

        window = tuple(args.prune_window or (0.0, 0.75))
        if not 0.0 <= window[0] < window[1] <= 1.0:
            raise UsageError(f"--prune-window needs 0 <= START < END <= 1, got {window}")
        hooks.append(schedule(args.prune_method, args.sparsity, args.scope, window=window))
        extra = {"pruning": {"method": args.prune_method, "scope": args.scope,
                             "target_sparsity": args.sparsity, "during": "training",
                             "window": list(window)}}
    elif args.sparsity is not None or args.prune_window is not None:
        raise UsageError("--sparsity and --prune-window need --prune-method gradual|micro "
                         "(or use `prune`)")
    if args.num_envs is not None:
        settings["num_envs"] = args.num_envs
    if args.workers is not None:
        settings["num_workers"] = args.workers
    settings.update(_ppo_settings(args.set, settings))
    return PPOConfig.from_dict(settings).validate(), hooks, extra


def cmd_train(args: argparse.Namespace) -> int:
    from pruningrl.ppo import train, train_state_path

    config, hooks, extra = _train_plan(args)
    out = Path(args.out)
    if args.force:  # only now that every input has been checked
        train_state_path(out).unlink(missing_ok=True)
    command = "python -m pruningrl " + shlex.join(sys.argv[1:]) if sys.argv else None
    result = train(config, out, hooks=hooks, resume=args.resume,
                   progress=not args.no_progress, command=command, extra_metadata=extra)
    payload = {"out": str(out), "env_id": config.env_id, "variant": config.variant,
               "seed": config.seed, "steps": result.steps, "interrupted": result.interrupted,
               "wall_time_s": round(result.wall_time_s, 1),
               "samples_per_s": round(result.samples_per_s, 1)}
    if result.interrupted:
        saved = (f"the last checkpoint {out} is intact, continue with --resume"
                 if train_state_path(out).is_file() else "before its first checkpoint; "
                 "nothing was saved")
        return _interrupted(f"interrupted at {result.steps} steps; {saved}", payload, args.json)
    curve = result.agent.metadata["curve"]["return"]
    last = next((r for r in reversed(curve) if r is not None), None)
    payload["last_training_return"] = last
    _emit(payload, args.json, [
        f"trained {config.variant} on {config.env_id} (seed {config.seed}) for {result.steps} "
        f"steps in {result.wall_time_s:.0f} s ({result.samples_per_s:.0f} samples/s); "
        f"saved {out}"])
    return 0


def _interrupted(message: str, payload: dict, as_json: bool) -> int:
    """Ctrl-C: one line on stderr and, with --json, the JSON object scripts wait for."""
    print(f"pruningrl: {message}", file=sys.stderr)
    if as_json:
        _emit({**payload, "interrupted": True, "message": message}, True, [])
    return EXIT_INTERRUPTED


def _ppo_settings(items: list[str], given: dict) -> dict:
    """``--set KEY=VALUE`` pairs as PPOConfig fields, each value parsed as JSON if it can be."""
    from pruningrl.ppo import PPOConfig

    known = PPOConfig.__dataclass_fields__
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in known:
            raise UsageError(f"--set wants KEY=VALUE with a PPO setting as KEY, got {item!r}")
        if key in given or key in out:
            raise UsageError(f"--set {key} repeats a setting given elsewhere")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        default = known[key].default
        if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, int | float) and not isinstance(value, int | float)):
            raise UsageError(f"--set {key}: expected a value like {default!r}, got {text!r}")
        out[key] = value
    return out


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pruningrl.attack_suite import ATTACKS, LEARNED, AttackBudget, make_attack
    from pruningrl.envs import task_eps
    from pruningrl.evaluation import evaluate

    name = None if args.attack in (None, "none") else args.attack  # "none": no attack
    if args.eps is not None and name is None:
        raise UsageError("--eps is an attack radius: give it with --attack NAME")
    if name is not None and name not in ATTACKS:
        raise UsageError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    if args.attack_budget is not None and name not in LEARNED:
        raise UsageError(f"--attack-budget is for a learned attack ({', '.join(LEARNED)})")
    agent = _load(args)
    attack, eps = None, None
    if name is not None:
        eps = args.eps if args.eps is not None else task_eps(agent.env_id)
        if eps is None:
            raise UsageError(f"--attack needs --eps for {agent.env_id} (no literature default)")
        budget = AttackBudget()
        if args.attack_budget is not None:
            field = "sarsa_samples" if name in ("rs", "rs+mad") else "adversary_steps"
            budget = AttackBudget(**{field: args.attack_budget})
        attack = make_attack(name, agent, eps, norm=args.norm, seed=args.seed,
                             victim_path=_checkpoint_path(args.agent), budget=budget,
                             progress=sys.stderr.isatty())
    result = evaluate(agent, episodes=args.episodes, seed=args.seed,
                      deterministic=not args.stochastic, attack=attack)
    payload = {"agent": str(args.agent), **result.to_dict(), "attack": name or "none",
               "eps": eps, "norm": args.norm if attack is not None else None,
               "attacker": attack.info if attack is not None else None}
    _emit(payload, args.json, [
        f"{args.agent}{'' if attack is None else f' under {name} (eps {eps})'}: "
        f"{result.mean_return:.1f} +- {result.std_return:.1f} over "
        f"{result.episodes} episodes ({'stochastic' if args.stochastic else 'deterministic'}, "
        f"seeds {args.seed}..{args.seed + result.episodes - 1})"])
    return 0


def _checkpoint_path(agent: str) -> Path | None:
    """The agent's own file if it is a pruningrl checkpoint (learned attackers are cached beside
    it and load it); None for a converted agent (they use the user cache and a saved copy)."""
    from pruningrl.interop import PRUNINGRL, sniff
    from pruningrl.zoo import resolve

    path = resolve(agent)
    return path if sniff(path) == PRUNINGRL else None


def cmd_prune(args: argparse.Namespace) -> int:
    from pruningrl.bounds import certified_tv
    from pruningrl.envs import task_eps
    from pruningrl.finetune import check_prune_settings, prune_and_finetune
    from pruningrl.pruning import layer_sparsity, sparsity

    out = Path(args.out)
    _check_out(out, args.force)
    check_prune_settings(args.method, args.sparsity, args.scope, args.finetune_steps)
    agent = _load(args)
    eps = task_eps(agent.env_id) or 0.05
    tv_before = certified_tv(agent.policy, eps)
    command = "python -m pruningrl " + shlex.join(sys.argv[1:]) if sys.argv else None
    result = prune_and_finetune(agent, args.method, args.sparsity, args.scope,
                                args.finetune_steps, args.seed, args.rate, out,
                                progress=not args.no_progress, command=command,
                                learning_rate=args.finetune_lr)
    if result.interrupted:
        saved = f"{out} holds the last checkpoint" if out.is_file() else "nothing was saved"
        return _interrupted(f"interrupted while fine-tuning; {saved}",
                            {"out": str(out), "env_id": agent.env_id}, args.json)
    pruned = result.agent
    record = {**pruned.metadata["pruning"], "parent": str(args.agent)}
    samples_per_s = None if result.samples_per_s is None else round(result.samples_per_s, 1)
    payload = {"out": str(out), "env_id": pruned.env_id, **record, "interrupted": False,
               "sparsity": sparsity(pruned.policy), "layer_sparsity": layer_sparsity(pruned.policy),
               "eps": eps, "certified_tv_before": tv_before,
               "certified_tv": certified_tv(pruned.policy, eps),
               "constant_policy": _constant_policy(pruned.policy),
               "finetune_samples_per_s": samples_per_s}
    _emit(payload, args.json, [
        f"pruned {args.agent} by {args.method} ({args.scope}) to sparsity "
        f"{payload['sparsity']:.4f}; certified TV at eps {eps}: {tv_before:.4g} -> "
        f"{payload['certified_tv']:.4g}{' (a constant policy)' * payload['constant_policy']}; "
        f"saved {out}"])
    return 0


def cmd_certify(args: argparse.Namespace) -> int:
    from pruningrl.bounds import certified_tv, lipschitz_abs_product, local_lipschitz
    from pruningrl.evaluation import visited_states
    from pruningrl.pruning import layer_sparsity, sparsity

    agent = _load(args)
    policy = agent.policy
    payload = {"agent": str(args.agent), "env_id": agent.env_id, "eps": args.eps,
               "norm": args.norm, "method": args.method, "sparsity": sparsity(policy),
               "layer_sparsity": layer_sparsity(policy),
               "constant_policy": _constant_policy(policy)}
    constant = " (a constant policy)" if payload["constant_policy"] else ""
    if args.method == "global":
        tv = certified_tv(policy, args.eps, args.norm, "global")
        payload.update(certified_tv=tv, lipschitz=lipschitz_abs_product(policy, args.norm))
        lines = [f"{args.agent}: certified TV <= {tv:.6g} for every state "
                 f"(eps {args.eps}, l_{args.norm}, sparsity {payload['sparsity']:.3f}){constant}"]
    else:
        states = visited_states(agent, args.states, seed=args.seed)
        tv = certified_tv(policy, args.eps, args.norm, args.method, states)
        payload.update(certified_tv=float(tv.mean()), certified_tv_max=float(tv.max()),
                       certified_fraction=float((tv <= CERTIFIED_TV).double().mean()),
                       states=int(states.shape[0]))
        if args.method == "local":
            lip = local_lipschitz(policy, states, args.eps, args.norm)
            payload.update(lipschitz=float(lip.mean()), lipschitz_max=float(lip.max()))
        else:
            payload.update(_deterministic_certificate(agent, states, args))
        lines = [f"{args.agent}: {args.method} certified TV mean {float(tv.mean()):.6g}, max "
                 f"{float(tv.max()):.6g} over {states.shape[0]} visited states "
                 f"(eps {args.eps}); {payload['certified_fraction']:.1%} at TV <= "
                 f"{CERTIFIED_TV}{constant}"]
        if "action_deviation" in payload:
            lines.append(f"  the mean action moves at most {payload['action_deviation']:.4g} "
                         "(mean over states, l_inf)")
        elif "certified_action_fraction" in payload:
            lines.append(f"  the most likely action cannot change on "
                         f"{payload['certified_action_fraction']:.1%} of the states")
    _emit(payload, args.json, lines)
    return 0


#: a state counts as certified when its certified TV is at most this
CERTIFIED_TV = 0.5


def _deterministic_certificate(agent, states, args: argparse.Namespace) -> dict:
    """The certificate of the deterministic policy: the mean action's certified deviation, or
    the fraction of states whose most likely action is certified."""
    from pruningrl.bounds import certified_action, certified_action_deviation

    if agent.discrete:
        certified = certified_action(agent.policy, args.eps, args.norm, states, args.method)
        return {"certified_action_fraction": float(certified.double().mean())}
    deviation = certified_action_deviation(agent.policy, args.eps, args.norm, states,
                                           args.method)
    return {"action_deviation": float(deviation.mean()),
            "action_deviation_max": float(deviation.max())}


def cmd_convert(args: argparse.Namespace) -> int:
    from pruningrl.agent import save_agent
    from pruningrl.interop import TORCH, cleanrl_kind, read_state_dict, sniff
    from pruningrl.zoo import load

    out = Path(args.out)
    _check_out(out, args.force)
    source = Path(args.source)
    if not source.is_file():
        raise UsageError(f"no agent file at {source}")
    bare = sniff(source) == TORCH and cleanrl_kind(read_state_dict(source)) is None
    if bare and args.kind is None:
        raise UsageError(f"{source} holds a bare network: give its --kind (and --log-std for "
                         "a Gaussian)")
    if not bare and (args.kind is not None or args.log_std is not None):
        raise UsageError(f"{source} says what its policy is: --kind and --log-std are for a "
                         "bare nn.Sequential's state dict")
    if bare:
        agent = _saying_assumptions(_from_state_dict, source, args)
    else:
        agent = _saying_assumptions(load, source, args.env, args.vecnormalize)
    save_agent(agent, out)
    payload = {"out": str(out), "env_id": agent.env_id, "source": agent.metadata["source"],
               "policy": agent.policy.config(), "notes": agent.metadata["notes"],
               "normalize_obs": agent.normalize_obs}
    _emit(payload, args.json, [f"converted {source} ({payload['source']['format']}) for "
                               f"{agent.env_id}; saved {out}"])
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pruningrl.experiments import RecordStore, estimate, load_grid, plan, run_sweep
    from pruningrl.experiments.results import SHIPPED_RESULTS

    grid = load_grid(args.grid)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / grid.name
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; --out names a results folder")
    if args.address is not None and args.executor != "ray":
        raise UsageError("--address names a Ray cluster: use it with --executor ray")
    only = tuple(args.only) if args.only else None
    if args.dry_run:
        planned = plan(grid, RecordStore(out), args.retry_failed, only=only)
        cost = estimate(planned, [RecordStore(out), *map(RecordStore, sorted(
            p for p in SHIPPED_RESULTS.glob("*") if p.is_dir()))])
        return _emit_plan(grid.name, out, planned, cost, args.json)
    summary = run_sweep(grid, out, args.executor, args.jobs, args.address, args.retry_failed,
                        progress=not args.no_progress, only=only)
    payload = summary.to_dict()
    lines = [f"sweep {grid.name}: {summary.jobs_total} jobs, {summary.jobs_run} run, "
             f"{summary.jobs_cached} cached, {summary.jobs_failed} failed, "
             f"{summary.wall_time_s:.0f} s; records in {out}/records"]
    if summary.jobs_without_agent:
        lines.append(f"  {summary.jobs_without_agent} done job(s) kept no agent that this "
                     "numeric path can remake: their new units were not run")
    lines += [f"  failed: {f['job']} [{f['id']}]: {f['error']}" for f in summary.failures]
    _emit(payload, args.json, lines)
    if summary.failures:
        print(f"pruningrl: {len(summary.failures)} job(s) failed; fix the cause and re-run with "
              "--retry-failed", file=sys.stderr)
        return 1
    return 0


def _emit_plan(name: str, out: Path, planned: list, cost: dict, as_json: bool) -> int:
    jobs = [{"id": p.job.id, "status": p.status, "todo": [u.label for u in p.todo],
             **{k: v for k, v in p.job.settings.items() if k != "agent_sha256"}}
            for p in planned]
    todo = sum(1 for p in planned if p.todo)
    payload = {"grid": name, "out": str(out), "jobs_total": len(planned), "jobs_to_run": todo,
               "jobs": jobs, **cost}
    lines = [f"{'id':16s} {'status':8s} {'job':60s} attacks to run"]
    from pruningrl.experiments.sweep import _describe

    for p, job in zip(planned, jobs, strict=True):
        lines.append(f"{p.job.id:16s} {p.status:8s} {_describe(p.job.settings):60s} "
                     f"{','.join(job['todo']) or '-'}")
    unknown = (f" (+ {cost['unknown_phases']} phases never measured for their task)"
               if cost["unknown_phases"] else "")
    lines.append(f"{todo} of {len(planned)} jobs to run; estimated {cost['estimated_s'] / 60:.1f} "
                 f"core-minutes from measured per-phase costs{unknown}")
    without = sum(p.status == "no-agent" for p in planned)
    if without:
        lines.append(f"{without} done job(s) lack units but kept no agent, and this numeric path "
                     "cannot remake it: their new units are not run")
    _emit(payload, as_json, lines)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from pruningrl.experiments.certified import (
        CERTIFIED_VARIANT,
        format_certified,
        load_certified,
    )
    from pruningrl.experiments.results import (
        format_compute,
        format_rows,
        format_stronger,
        format_sweet_spots,
        load_results,
    )

    loaded = load_results(args.source)
    if any(r["finetune_seed"] is not None for r in loaded["rows"]):
        from pruningrl.experiments.replication import replication, robust_training
        from pruningrl.experiments.results import grid_of, results_dir
        from pruningrl.experiments.store import RecordStore
        from pruningrl.experiments.sweep import owed_attacks

        store = RecordStore(results_dir(args.source))
        held_out, grid = list(store.records()), grid_of(args.source)
        owed = owed_attacks(grid, store) if grid is not None else None
        loaded["replication"] = replication(held_out, owed)
        loaded["robust_training"] = robust_training(held_out, owed=owed)
    certified = "replication" not in loaded and any(r["variant"] == CERTIFIED_VARIANT
                                                    for r in loaded["rows"])
    if certified:
        loaded.update(load_certified(args.source))
    if args.json:
        _emit(loaded, True, [])
        return 0
    lines = [f"results in {loaded['out']}: {len(loaded['rows'])} rows", *format_rows(
        loaded["rows"]), "", "sweet spots:", *format_sweet_spots(loaded["sweet_spots"]), ""]
    if loaded["stronger_attacks"]:
        lines += ["with stronger attacks, where they ran:",
                  *format_stronger(loaded["stronger_attacks"]), ""]
    if "replication" in loaded:
        from pruningrl.experiments.replication import (
            format_replication,
            format_robust_training,
        )

        lines += ["held-out replication:", *format_replication(loaded["replication"]), ""]
        if loaded["robust_training"]:
            lines += ["robust training against the pruned candidates, held-out seeds:",
                      *format_robust_training(loaded["robust_training"]), ""]
    if certified:
        lines += ["certified sweet spots (score: clean return and CROWN certificate):",
                  *format_certified(loaded), ""]
    lines += format_compute(loaded["compute_s"], loaded["cost_per_point"])
    _emit(loaded, False, lines)
    return 0


COMMANDS = {"agents": cmd_agents, "train": cmd_train, "evaluate": cmd_evaluate,
            "prune": cmd_prune, "certify": cmd_certify, "convert": cmd_convert,
            "sweep": cmd_sweep, "results": cmd_results}


def _from_state_dict(source: Path, args: argparse.Namespace):
    from pruningrl.interop import from_sequential, read_state_dict, sequential_from_state_dict

    net = sequential_from_state_dict(read_state_dict(source), args.activation)
    return from_sequential(net, args.env, args.kind, log_std=args.log_std)


def _input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (an argument, a file, an environment), not a bug."""
    import gymnasium

    return (UsageError, ValueError, gymnasium.error.Error, OSError)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0, 1 failure, 2 bad input, 130 interrupted)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        as_json = bool(getattr(args, "json", False))
        return _interrupted("interrupted", {"command": getattr(args, "command", None)}, as_json)
    except Exception as error:  # noqa: BLE001 - every failure ends as one line
        if isinstance(error, _input_errors()):
            print(f"pruningrl: error: {_first_line(error)}", file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("PRUNINGRL_DEBUG"):
            raise
        print(f"pruningrl: error: {type(error).__name__}: {_first_line(error)} (not an input "
              "problem we recognise; rerun with PRUNINGRL_DEBUG=1 for the traceback and report "
              "it)", file=sys.stderr)
        return EXIT_FAILURE
