"""Render a Hopper clean and under attack, as an image strip for the attacks chapter.

    MUJOCO_GL=egl .venv/bin/python scripts/render_attack_strip.py [--agent Hopper-v5/ppo/seed0]
        [--attack rs] [--out book/figures/hopper_under_attack.png]

Offscreen MuJoCo rendering needs ``MUJOCO_GL=egl`` (or ``osmesa`` with Debian's libosmesa6).
Both rows start from the same reset (episode seed 0); the attacked row perturbs the agent's
normalized observations with the named attack at the task's eps, through
``pruningrl.attacks.AttackWrapper``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import pruningrl  # noqa: E402, F401 - first: the process computes in the portable numeric mode
import gymnasium as gym  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pruningrl.attack_suite import make_attack  # noqa: E402
from pruningrl.attacks import AttackWrapper  # noqa: E402
from pruningrl.envs import task_eps  # noqa: E402
from pruningrl.zoo import load, resolve  # noqa: E402


def frames(agent, attack, every: int, count: int, seed: int = 0):
    # the model's "track" camera follows the centre of mass, so the hopper stays in view
    env = gym.make(agent.env_id, render_mode="rgb_array", width=240, height=240,
                   camera_name="track")
    if attack is not None:
        env = AttackWrapper(env, agent, attack)
    shots, steps, total = [], 0, 0.0
    try:
        obs, _ = env.reset(seed=seed)
        done = False
        while len(shots) < count:
            if steps % every == 0 or done:  # every `every` steps, and the episode's last
                shots.append((steps, env.render(), total))
            if done:
                break
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs[None])[0])
            total += reward
            steps += 1
            done = terminated or truncated
    finally:
        env.close()
    return shots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="Hopper-v5/ppo/seed0")
    parser.add_argument("--attack", default="rs")
    parser.add_argument("--every", type=int, default=12, help="steps between frames")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--out", default="book/figures/hopper_under_attack.png")
    args = parser.parse_args()
    agent = load(args.agent)
    eps = task_eps(agent.env_id)
    attack = make_attack(args.attack, agent, eps, victim_path=resolve(args.agent))
    rows = [("clean", frames(agent, None, args.every, args.count)),
            (f"{args.attack}, eps {eps}", frames(agent, attack, args.every, args.count))]
    fig, axes = plt.subplots(2, args.count, figsize=(1.6 * args.count, 3.9))
    for r, (label, shots) in enumerate(rows):
        for c in range(args.count):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(shots):
                step, image, total = shots[c]
                ax.imshow(image)
                last = c == len(shots) - 1 and step % args.every
                suffix = " (terminated)" if last else ""
                ax.set_title(f"t={step}, R={total:.0f}{suffix}", fontsize=7)
            else:
                ax.imshow(np.ones((8, 8, 3)))
                ax.set_title("episode over", fontsize=7)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"{args.agent}: clean (top) and under the {args.attack} attack (bottom); "
                 f"episode seed 0, t in env steps, R = return so far", fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
