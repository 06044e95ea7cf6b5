# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Attacking the agents
#
# A certificate says how far an attack *could* move the policy; an attack says how far one
# *does*. A robustness claim is only as strong as the strongest attack it survived, so this
# chapter builds seven, from the weakest to the strongest known, and measures them on the
# shipped Hopper agents against the numbers of the papers that introduced them.
#
# The threat model is the book's ({prf:ref}`def-threat-model`): the adversary sees the true
# state $s$ and hands the agent a state $\tilde s$ in the $\ell_\infty$ ball
# $B(s, \epsilon)$ around it, in the agent's *normalized* coordinates, at every step.
# $\epsilon$ is the literature's per task (Hopper 0.075). Returns are deterministic (the Gaussian
# mean), over 50 episodes with reset seeds $0, \dots, 49$, as in SA-PPO.
#
# | attack | what $\tilde s$ maximizes or minimizes | learned part | source |
# |---|---|---|---|
# | random | nothing: uniform in the ball | none | baseline |
# | critic | minimizes the agent's own $V(\tilde s)$ | none | {cite:t}`pattanaik2018robust` |
# | MAD | maximizes $\mathrm{KL}(\pi(\cdot\mid s) \,\Vert\, \pi(\cdot\mid\tilde s))$ | none | {cite:t}`zhang2020samdp` |
# | RS | minimizes a learned $Q^\pi(s, \mu(\tilde s))$ | robust-Sarsa $Q$-functions | {cite:t}`zhang2020samdp` |
# | RS+MAD | both at once | the same $Q$-functions | {cite:t}`zhang2020samdp` |
# | optimal | the return: a policy $\nu(s) = \tilde s - s$ trained on $-r$ | adversary policy | {cite:t}`zhang2021atla` |
# | PA-AD | the return: a policy picks a direction for $\mu$, a gradient step realizes it | director policy | {cite:t}`sun2022paad` |
#
# The first three are white-box gradient attacks that need nothing but the agent. The last four
# *learn* about the agent first, so each has a training budget, stated wherever a number is.

# %%
# Setup: on Colab, install the library from the repository; elsewhere this cell does nothing.
import os
import sys

if "google.colab" in sys.modules:
    os.environ.setdefault("MUJOCO_GL", "egl")
    # %pip install -q "pruningrl @ git+https://github.com/pruningrl/pruning-cannot-hurt-robustness"

# %%
# Seeding and determinism: Python, NumPy and torch, with deterministic torch kernels.
from pruningrl.reproducibility import seed_everything

generator = seed_everything(0)

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import pruningrl
from pruningrl import adversaries, attacks
from pruningrl.agent import load_agent
from pruningrl.attack_suite import SARSA_GRID, cache_dirs
from pruningrl.balls import assert_in_ball, random_in_ball
from pruningrl.envs import task_eps
from pruningrl.evaluation import visited_states
from pruningrl.ppo import policy_divergence, worst_case_states
from pruningrl.zoo import load, resolve

agent_id = "Hopper-v5/ppo/seed0"
agent = load(agent_id)
eps = task_eps(agent.env_id)
states = visited_states(agent, count=256, seed=0)  # states the agent really visits
print(f"{agent_id}: eps = {eps}, {tuple(states.shape)} visited normalized states")


def divergence(attacked: torch.Tensor) -> torch.Tensor:
    """D(pi(.|s), pi(.|s')) = ||Sigma^{-1/2}(mu(s') - mu(s))||^2 per state."""
    with torch.no_grad():
        return policy_divergence(agent.policy, agent.policy(states), agent.policy(attacked))


# %% [markdown]
# ## Each attack by hand, then the library's
#
# **Random noise.** $\tilde s = s + u$ with $u$ uniform in the cube $[-\epsilon, \epsilon]^n$.

# %%
by_hand = states + (2 * torch.rand(states.shape, generator=torch.Generator().manual_seed(1)) - 1) * eps
library = attacks.random_attack(states, eps, "inf", torch.Generator().manual_seed(1))
assert torch.equal(by_hand, library)
assert_in_ball(library - states, eps)
print(f"random noise: mean D = {divergence(library).mean():.4f}")

# %% [markdown]
# **MAD** (maximal action difference). For a Gaussian policy with a state-independent
# $\Sigma$, the KL divergence between $\pi(\cdot\mid s)$ and $\pi(\cdot\mid\tilde s)$ is
# $\tfrac12 \lVert \Sigma^{-1/2}(\mu(\tilde s) - \mu(s)) \rVert^2$, so MAD maximizes the
# Mahalanobis distance $D$ of the means. Projected gradient ascent (PGD): start uniformly in
# the ball (at $\tilde s = s$ the gradient of $D$ is zero), take 10 signed steps of
# $2.5\epsilon/10$, and clip back into the ball after each. The library's `worst_case_states`
# is the same loop with the input gradient written out by hand (`pruningrl.gradients`); the
# attack itself uses its SGLD variant, which adds a little noise to each step.

# %%
def mad_by_hand(states, eps, steps=10, seed=2):
    delta = random_in_ball(tuple(states.shape), eps, "inf", torch.Generator().manual_seed(seed))
    clean = agent.policy(states).detach()
    inv_std = torch.exp(-agent.policy.log_std.detach())
    for _ in range(steps):
        delta.requires_grad_(True)
        distance = ((agent.policy(states + delta) - clean) * inv_std).pow(2).sum()
        (grad,) = torch.autograd.grad(distance, delta)
        delta = (delta.detach() + 2.5 * eps / steps * grad.sign()).clamp(-eps, eps)
    return states + delta


by_hand = mad_by_hand(states, eps)
library = worst_case_states(agent.policy, states, eps, "inf", 10, "pgd",
                            torch.Generator().manual_seed(2))
agree = (by_hand - library).abs().le(1e-5).float().mean().item()
print(f"by hand vs library PGD: {agree:.2%} of coordinates agree; mean D {divergence(by_hand).mean():.3f}"
      f" vs {divergence(library).mean():.3f}")
assert agree > 0.99
mad = attacks.mad_attack(agent.policy, states, eps, "inf", 10, "sgld", torch.Generator().manual_seed(2))
assert_in_ball(mad - states, eps)
assert divergence(mad).mean() > 10 * divergence(attacks.random_attack(states, eps)).mean()

# %% [markdown]
# **Critic.** PGD again, now *down* the agent's own value function: the agent is shown the
# nearby state it likes least. It needs the critic, which an agent ships with but a deployed
# controller might not.

# %%
critic = attacks.critic_attack(agent.value, states, eps, "inf", 10, torch.Generator().manual_seed(3))
with torch.no_grad():
    drop = (agent.value(states) - agent.value(critic)).mean().item()
assert_in_ball(critic - states, eps)
assert drop > 0
print(f"critic attack: V falls by {drop:.3f} on average (normalized-return units)")

# %% [markdown]
# **Robust Sarsa (RS).** The critic attack trusts the agent's $V$, trained on the agent's own
# returns with reward normalization. RS instead *learns* the agent's action value
# $Q^\pi(s, a)$ from the agent's behaviour, then looks for the $\tilde s$ whose action
# $\mu(\tilde s)$ that $Q$ values least at the true state:
#
# $$\tilde s = \arg\min_{\tilde s \in B(s, \epsilon)} Q(s, \mu(\tilde s)).$$
#
# $Q$ is fitted by Sarsa($\lambda$) on transitions of the agent's stochastic policy, with
# SA-PPO's robustness term, which keeps $Q$ smooth in the action so that the attack follows real
# trends, not the fitting noise:
#
# $$L(\theta) = \mathbb E\big[(G^\lambda_t - Q_\theta(s_t, a_t))^2\big] + \kappa\,\mathbb E\big[\max_{\hat a \in B_\infty(a, \epsilon_a)} (Q_\theta(s, \hat a) - Q_\theta(s, a))^2\big].$$
#
# How smooth is smooth enough is not known in advance, so SA-PPO trained a grid of
# $(\epsilon_a, \kappa)$ and reported the strongest attack; we train a 3 x 3 subgrid of theirs
# and pick the $Q$ that hurts most on five screening episodes whose seeds are disjoint from the
# evaluation's. **RS+MAD** minimizes $(1-\rho)\,Q(s, \mu(\tilde s)) - \rho\,\overline{((\mu(\tilde s) - \mu(s))/\hat\sigma)^2}$
# with $\rho = 0.5$.
#
# The learned $Q$-functions of the shipped agents are cached beside them; here is the one the
# RS attack chose for this agent, and the attack by hand against the library's.

# %%
folder = cache_dirs(agent, resolve(agent_id))[0]
selection = json.loads((folder / "rs-eps0.075-inf-n100000-sw30-screen5-s0.json").read_text())
(action_eps, reg) = SARSA_GRID[selection["chosen"]]
from safetensors import safe_open
from safetensors.torch import load_file

from pruningrl.sarsa import QNetwork

q_file = folder / f"sarsa-n100000-sw30-ae{action_eps:g}-reg{reg:g}-s0.safetensors"
with safe_open(str(q_file), framework="pt") as handle:
    q_report = json.loads(handle.metadata()["report"])
q = QNetwork(q_report["obs_dim"], q_report["act_dim"])
q.load_state_dict(load_file(str(q_file)))
print(f"chosen Q: eps_a = {action_eps}, kappa = {reg}; {q_report['samples']} samples, "
      f"{q_report['gradient_steps']} gradient steps, TD RMSE {q_report['td_rmse']:.2f} "
      f"({q_report['td_rmse_relative']:.1%} of the targets' RMS)")


def rs_by_hand(states, eps, steps=10, seed=4):
    delta = random_in_ball(tuple(states.shape), eps, "inf", torch.Generator().manual_seed(seed))
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(q(states, agent.policy(states + delta)).sum(), delta)
        delta = (delta.detach() - 2.5 * eps / steps * grad.sign()).clamp(-eps, eps)
    return states + delta


by_hand = rs_by_hand(states, eps)
library = attacks.robust_sarsa_attack(agent.policy, q, states, eps, "inf", 10, 0.0,
                                      torch.Generator().manual_seed(4))
assert torch.allclose(by_hand, library, atol=1e-6)
with torch.no_grad():
    q_clean = q(states, agent.policy(states)).mean().item()
    q_attacked = q(states, agent.policy(library)).mean().item()
assert q_attacked < q_clean
print(f"Q(s, mu(s)) = {q_clean:.3f} -> Q(s, mu(s~)) = {q_attacked:.3f} (units of the return's RMS)")

# %% [markdown]
# **The optimal attack** (ATLA). Finding the worst $\tilde s$ for the *return*, not for a
# one-step proxy, is itself a reinforcement-learning problem: in the MDP whose state is $s$,
# whose action $a \in [-1, 1]^n$ is turned into the perturbation $\epsilon\,a$, and whose reward
# is the victim's reward negated, the optimal policy is the optimal adversary
# {cite:p}`zhang2021atla`. `pruningrl.adversaries.OptimalAttackEnv` is that MDP as a gymnasium
# env, and `pruningrl.ppo.train` learns it like any other task. Deployed, the adversary's mean
# action is clipped into the cube:
#
# **PA-AD** {cite:p}`sun2022paad` splits the search. A *director* policy picks a direction $d$
# in the agent's action space (3 numbers for Hopper instead of 11), and a gradient *actor*
# realizes it: $\tilde s = \arg\max_{\tilde s \in B(s, \epsilon)} \langle \mu(\tilde s) - \mu(s),
# d/\lVert d \rVert \rangle$ by 10 signed steps. The director is trained by PPO on the negated
# reward through `PAADEnv`.

# %%
adversary_files = {name: next(folder.glob(f"{name}-eps0.075-inf-n*-s0.safetensors"))
                   for name in ("optimal", "paad")}
optimal_adversary = load_agent(adversary_files["optimal"])
director = load_agent(adversary_files["paad"])

by_hand = states + eps * torch.clamp(
    optimal_adversary.policy(optimal_adversary.normalize(states)), -1, 1).detach()
library = adversaries.optimal_attack_fn(optimal_adversary, eps)(states)
assert torch.allclose(by_hand, library, atol=1e-5)

mlp = adversaries.NumpyMLP(agent.policy.net)
directions = np.clip(director.act(states.numpy()), -1, 1)
delta = adversaries.paad_actor(mlp, states.double().numpy(), directions, eps)
library = adversaries.paad_attack_fn(director, agent, eps)(states)
assert torch.allclose(states + torch.from_numpy(delta).float(), library, atol=1e-5)
unit = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
moved = ((mlp(delta + states.double().numpy()) - mlp(states.double().numpy())) * unit).sum(-1)
print(f"PA-AD moves mu along the director's direction by {moved.mean():.3f} on average")
assert moved.mean() > 0
for attacked in (by_hand, library):
    assert_in_ball(attacked - states, eps)

# %% [markdown]
# ## The attacks on the shipped agents
#
# `scripts/attack_agents.py` runs `python -m pruningrl evaluate --agent A --attack NAME --json`
# for every attack on the three shipped Hopper PPO agents and stores the results, with their
# commands, code version and wall time, in `pruningrl/results/attacks/`. The learned attackers
# were trained there on first use with the default budgets, and cached beside the agents.

# %%
results_dir = Path(pruningrl.__file__).parent / "results" / "attacks"
ATTACK_ORDER = ["none", "random", "critic", "mad", "rs", "rs+mad", "optimal", "paad"]
runs = {path.stem: json.loads(path.read_text())
        for path in sorted((results_dir / "Hopper-v5" / "ppo").glob("seed*.json"))}
table = {attack: [runs[seed][attack]["mean_return"] if attack in runs[seed] else np.nan
                  for seed in runs] for attack in ATTACK_ORDER}
missing = [f"{seed}/{attack}" for seed in runs for attack in ATTACK_ORDER if attack not in runs[seed]]
print("not yet measured:", ", ".join(missing) or "none")
natural = np.median(table["none"])
print(f"{'attack':8s} " + " ".join(f"{seed:>8s}" for seed in runs) + "   median  of natural")
for attack in ATTACK_ORDER:
    values = table[attack]
    print(f"{attack:8s} " + " ".join(f"{v:8.1f}" for v in values)
          + f" {np.median(values):8.1f} {np.median(values) / natural:8.1%}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
for k, seed in enumerate(runs):
    ax.scatter(np.arange(len(ATTACK_ORDER)) + 0.1 * (k - 1),
               [table[a][k] for a in ATTACK_ORDER], s=18, label=seed)
ax.bar(range(len(ATTACK_ORDER)), [np.median(table[a]) for a in ATTACK_ORDER], color="0.85",
       zorder=0, label="median")
ax.set_xticks(range(len(ATTACK_ORDER)), ATTACK_ORDER)
ax.set_ylabel("return (mean of 50 episodes)")
ax.set_title(f"Hopper-v5 PPO agents (seeds 0-2) under attack, eps = {eps} (l_inf)")
ax.legend(fontsize=8, ncol=4)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Against the literature
#
# SA-PPO's Table 1 {cite:p}`zhang2020samdp` attacked a vanilla PPO Hopper at the same $\epsilon$,
# and ATLA {cite:p}`zhang2021atla` trained the optimal attack against one. Returns differ
# between implementations, so the comparison is in *fractions of the natural return*.

# %%
literature = {  # vanilla PPO on Hopper, eps = 0.075 (SA-PPO Table 1; ATLA)
    "none": 3167.6, "critic": 1799.0, "random": 2915.2, "mad": 1505.2, "rs": 779.4,
    "rs+mad": 733.8,
}
atla_natural, atla_optimal = 3167.3, 636.4
ours = {a: np.median(table[a]) / natural for a in ATTACK_ORDER}
theirs = {a: literature[a] / literature["none"] for a in literature}
theirs["optimal"] = atla_optimal / atla_natural
print(f"{'attack':8s} {'ours':>7s} {'papers':>7s}")
for attack in ATTACK_ORDER:
    paper = f"{theirs[attack]:7.1%}" if attack in theirs else "      -"
    print(f"{attack:8s} {ours[attack]:7.1%} {paper}")

# %% [markdown]
# ## What the learned attackers learned
#
# Each adversary was trained by `pruningrl.ppo.train` with SA-PPO's hyperparameters; its
# checkpoint carries its training curve. The curve below is the *victim's* return during the
# adversary's training (the negated adversary reward, stochastic adversary actions), so it
# falls as the adversary learns.

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
for k, seed in enumerate(runs):
    victim_folder = cache_dirs(load(f"Hopper-v5/ppo/{seed}"), resolve(f"Hopper-v5/ppo/{seed}"))[0]
    for name, style in (("optimal", "-"), ("paad", "--")):
        path = next(victim_folder.glob(f"{name}-eps0.075-inf-n*-s0.safetensors"))
        curve = load_agent(path).metadata["curve"]
        steps = np.array(curve["steps"])
        victim_return = np.array([-r if r is not None else np.nan for r in curve["return"]])
        ax.plot(steps / 1e6, victim_return, style, color=f"C{k}", lw=1,
                label=f"{name}, {seed}")
ax.axhline(natural, color="0.5", lw=0.8, ls=":", label="natural (median)")
ax.set_xlabel("adversary PPO samples (millions)")
ax.set_ylabel("victim return per episode")
ax.set_title("Hopper-v5 PPO agents while their adversaries train (eps = 0.075)")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()

# %%
print(f"{'agent':6s} {'attack':8s} {'budget':>22s} {'train s':>8s} {'samples/s':>9s}")
for seed in runs:
    for name in ("rs", "rs+mad", "optimal", "paad"):
        info = runs[seed][name]["attacker"]
        budget = ", ".join(f"{k}={v}" for k, v in info["budget"].items()
                           if k in ("sarsa_samples", "adversary_steps"))
        rate = info.get("samples_per_s") or info["q_function"]["samples_per_s"]
        print(f"{seed:6s} {name:8s} {budget:>22s} {info['training_wall_time_s']:8.0f} {rate:9.0f}")

# %% [markdown]
# ## Your own agent, your own environment
#
# Every attack is a function of a batch of normalized states, and `AttackWrapper` turns any of
# them into a gymnasium observation wrapper, so an attack goes wherever an env goes. Here is
# the categorical CartPole agent under the three attacks that need no training, live (10
# episodes each). CartPole has no literature radius; the agent shrugs off $\epsilon = 0.2$
# entirely, so this uses $\epsilon = 0.5$, where MAD's KL objective (for a categorical policy
# the exact KL of the two softmax distributions) bites.

# %%
import gymnasium as gym

from pruningrl.attack_suite import make_attack
from pruningrl.evaluation import evaluate

cartpole = load("CartPole-v1/ppo/seed0")
cartpole_returns = {}
for name in ("none", "random", "critic", "mad"):
    result = evaluate(cartpole, episodes=10, attack=make_attack(name, cartpole, 0.5))
    cartpole_returns[name] = result.mean_return
    print(f"CartPole-v1/ppo/seed0 under {name:6s}: {result.mean_return:6.1f} +- {result.std_return:5.1f}")
assert cartpole_returns["mad"] < cartpole_returns["random"]

env = attacks.AttackWrapper(gym.make("CartPole-v1"), cartpole, make_attack("mad", cartpole, 0.5))
obs, _ = env.reset(seed=0)
total, done = 0.0, False
while not done:
    obs, reward, terminated, truncated, _ = env.step(int(cartpole.act(obs[None])[0]))
    total += reward
    done = terminated or truncated
env.close()
print(f"one wrapped episode under MAD: return {total:.0f}")

# %% [markdown]
# ## A Hopper falling
#
# `scripts/render_attack_strip.py` renders the first agent offscreen (MuJoCo with
# `MUJOCO_GL=egl` here; `osmesa` works too where Debian's `libosmesa6` is installed), clean
# and under the RS attack, from the same reset:
#
# ![Hopper-v5/ppo/seed0 clean (top) and under the RS attack (bottom)](../book/figures/hopper_under_attack.png)
