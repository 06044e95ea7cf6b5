"""Render a Hopper clean and under attack, as an image strip for the attacks chapter.

    MUJOCO_GL=egl .venv/bin/python scripts/render_attack_strip.py [--agent Hopper-v5/ppo/seed0]
        [--attack rs] [--out book/figures/hopper_under_attack.png]

Offscreen MuJoCo rendering needs ``MUJOCO_GL=egl`` (or ``osmesa`` with Debian's libosmesa6).
Both rows start from the same reset (episode seed 0); the attacked row perturbs the agent's
normalized observations with the named attack at the task's eps, through
``pruningrl.attacks.AttackWrapper``. The figure is 7.5 in wide (the book's content column)
with 10 pt labels, saved at 200 dpi so that the frames stay sharp on the page.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import pruningrl  # noqa: E402, F401 - first: the process computes in the portable numeric mode
import gymnasium as gym  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pruningrl.attack_suite import make_attack  # noqa: E402
from pruningrl.attacks import AttackWrapper  # noqa: E402
from pruningrl.envs import task_eps  # noqa: E402
from pruningrl.plotting import PAGE_WIDTH, use_book_style  # noqa: E402
from pruningrl.zoo import load, resolve  # noqa: E402

SIZE = 320  # rendered frame, pixels
CROP = (slice(75, SIZE - 15), slice(80, SIZE - 80))  # rows, columns: the hopper and its floor


def frames(agent, attack, every: int, count: int, seed: int = 0):
    """(step, frame, return so far, episode over) every `every` steps, and at the episode's end."""
    # the model's "track" camera follows the centre of mass, so the hopper stays in view
    env = gym.make(agent.env_id, render_mode="rgb_array", width=SIZE, height=SIZE,
                   camera_name="track")
    if attack is not None:
        env = AttackWrapper(env, agent, attack)
    shots, steps, total = [], 0, 0.0
    try:
        obs, _ = env.reset(seed=seed)
        done = False
        while len(shots) < count:
            if steps % every == 0 or done:
                shots.append((steps, env.render()[CROP], total, done))
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
    parser.add_argument("--every", type=int, default=15, help="steps between frames")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--out", default="book/figures/hopper_under_attack.png")
    args = parser.parse_args()
    use_book_style()
    agent = load(args.agent)
    eps = task_eps(agent.env_id)
    attack = make_attack(args.attack, agent, eps, victim_path=resolve(args.agent))
    rows = [("clean", frames(agent, None, args.every, args.count)),
            (f"{args.attack.upper()} attack,\neps = {eps}",
             frames(agent, attack, args.every, args.count))]
    height, width = rows[0][1][0][1].shape[:2]
    panel = PAGE_WIDTH / args.count
    fig, axes = plt.subplots(2, args.count, figsize=(PAGE_WIDTH, 2 * panel * height / width + 0.9),
                             layout="constrained")
    for r, (label, shots) in enumerate(rows):
        for c in range(args.count):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(shots):
                step, image, total, over = shots[c]
                ax.imshow(image)
                ax.set_title(f"t = {step}\nR = {total:.0f}" + (", ends" if over else ""),
                             fontsize=10)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=200)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
