"""pruningrl.numerics: the portable numeric mode, the numeric path in provenance, and the rule
that compares a re-run with its record (pruningrl.experiments.replay)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pruningrl.experiments.replay import compare, mean_disagreement
from pruningrl.numerics import (
    NATIVE,
    PORTABLE,
    PORTABLE_ENVIRONMENT,
    UNRECORDED,
    mkl_branch,
    numeric_mode,
    numeric_path,
    numpy_dispatch,
    openblas_core,
    same_path,
)
from pruningrl.reproducibility import provenance

ROOT = Path(__file__).resolve().parents[1]
#: torch and NumPy products, NumPy's tanh, and 300 steps of a shipped Hopper agent, printed
#: to the last bit
PROBE = """
import pruningrl, json, numpy as np, torch
from pruningrl.numerics import numeric_mode
from pruningrl.envs import make_env
from pruningrl.zoo import load
g = torch.Generator().manual_seed(0)
a = torch.randn(64, 11, dtype=torch.float64, generator=g)
w = torch.randn(11, 64, dtype=torch.float64, generator=g)
agent = load("Hopper-v5/ppo/seed0")
env = make_env("Hopper-v5", disable_env_checker=True)
obs, _ = env.reset(seed=2)
total = 0.0
for _ in range(300):
    obs, reward, terminated, truncated, _ = env.step(agent.act(obs[None])[0])
    total += reward
    if terminated or truncated:
        break
x = a.numpy().astype(np.float32)
print(json.dumps({"mode": numeric_mode(), "product": (a @ w).sum().item().hex(),
                  "numpy": float((x.T @ x).sum()).hex(), "tanh": np.tanh(a.numpy()).sum().hex(),
                  "return": float(total).hex(), "state": [float(x).hex() for x in obs]}))
"""


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in (*PORTABLE_ENVIRONMENT, "PRUNINGRL_NUMERICS")}
    return subprocess.run([sys.executable, "-c", code], env={**environment, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_importing_pruningrl_puts_the_process_in_the_portable_mode():
    assert numeric_mode() == PORTABLE
    assert mkl_branch() in ("compatible", None)
    assert openblas_core() in ("Nehalem", None) and numpy_dispatch() == []
    assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("before", ["import torch; torch.randn(8, 8) @ torch.randn(8, 8)",
                                    "import numpy"])
def test_numpy_or_a_product_before_the_import_leaves_the_native_mode_and_warns(before):
    done = _run(f"import warnings; {before}\n"
                "with warnings.catch_warnings(record=True) as seen:\n"
                "    warnings.simplefilter('always')\n"
                "    import pruningrl\n"
                "from pruningrl.numerics import numeric_mode\n"
                "print(numeric_mode(), [w.category.__name__ for w in seen])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [NATIVE, "['PortabilityWarning']"]


def test_the_native_mode_is_asked_for_by_name_and_a_bad_name_falls_back_to_portable():
    native = _run("import pruningrl; from pruningrl.numerics import numeric_mode; "
                  "print(numeric_mode())", PRUNINGRL_NUMERICS="native")
    assert native.stdout.strip() == NATIVE
    bad = _run("import pruningrl; from pruningrl.numerics import numeric_mode; "
               "print(numeric_mode())", PRUNINGRL_NUMERICS="fast")
    assert bad.returncode == 0 and bad.stdout.strip() == PORTABLE
    assert bad.stderr.count("PortabilityWarning: PRUNINGRL_NUMERICS must be") == 1


#: older CPUs, simulated on this one: MKL, OpenBLAS and NumPy limited to their AVX2 or SSE4.2
#: code paths
OLDER_CPUS = {
    "AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
             "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    "SSE4.2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OPENBLAS_CORETYPE": "Nehalem",
               "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"},
}


@pytest.mark.parametrize("cpu", sorted(OLDER_CPUS))
def test_portable_numbers_do_not_depend_on_the_cpu(cpu):
    """In the portable mode the products, tanh and a MuJoCo rollout keep every bit."""
    here = _run(PROBE)
    other = _run(PROBE, **OLDER_CPUS[cpu])
    assert here.returncode == 0 and other.returncode == 0, here.stderr + other.stderr
    assert json.loads(here.stdout)["mode"] == PORTABLE
    assert json.loads(other.stdout) == json.loads(here.stdout)


def test_the_probe_tells_numeric_paths_apart():
    """Without the portable mode the same probe moves: the test above can fail. What moves is
    what the CPU computes faster than the portable path: on a CPU with AVX2, NumPy's and
    PyTorch's vectorized loops (the tanh sum, and through the policy the rollout's return).
    The BLAS product moves only where MKL's own kernel differs from its compatible branch's,
    which a limit such as ``MKL_ENABLE_INSTRUCTIONS=SSE4_2`` can prevent, so it is not asked."""
    portable = json.loads(_run(PROBE).stdout)
    native = json.loads(_run(PROBE, PRUNINGRL_NUMERICS="native").stdout)
    assert native["mode"] == NATIVE
    if "avx2" not in numeric_path()["instruction_sets"]:
        pytest.skip("a CPU without AVX2 computes these natively on the portable path itself")
    assert native["tanh"] != portable["tanh"]
    assert native["return"] != portable["return"]


def test_provenance_names_the_numeric_path():
    path = provenance()["numeric_path"]
    assert path == numeric_path()
    assert path["mode"] == PORTABLE and path["machine"] == "x86_64" or path["machine"]
    for key in ("cpu", "instruction_sets", "blas", "mkl_branch", "openblas_core",
                "numpy_dispatch", "torch_cpu_capability", "threads"):
        assert key in path
    assert path["blas"]["torch"] is None or "Math Kernel Library" in path["blas"]["torch"]


def test_which_paths_reproduce_exactly():
    here = numeric_path()
    assert same_path(here, here)
    other_cpu = {**here, "cpu": "another CPU", "instruction_sets": ["sse4_2"]}
    assert same_path(other_cpu, here)  # both portable: the CPU does not matter
    native = {**here, "mode": NATIVE}
    assert same_path(native, native)
    assert not same_path({**native, "cpu": "another CPU"}, native)
    assert not same_path(native, here)
    assert not same_path(UNRECORDED, here) and not same_path(None, here)


def _record(returns, finetune_steps=0, tv=0.5, path=None):
    runs = [{"numeric_path": path}] if path else [{}]
    return {"config": {"finetune_steps": finetune_steps, "method": "magnitude"},
            "provenance": runs,
            "result": {"certified_tv": tv, "local_tv": 0.2,
                       "attacks": {"none": {"returns": returns}}}}


def test_a_rerun_on_the_same_path_must_agree_bit_for_bit():
    record = _record([1.0, 2.0, 3.0], path=numeric_path())
    same = {"certified_tv": 0.5, "local_tv": 0.2, "attacks": {"none": {"returns": [1.0, 2.0, 3.0]}}}
    assert compare(record, same).comparison == "exact" and compare(record, same).agrees
    moved = {**same, "local_tv": 0.2 + 1e-16}
    assert not compare(record, moved).agrees
    # a field today's code adds has no recorded number to disagree with; a lost one disagrees
    grown = {**same, "crown": {"certified_return": {"mean_certified": 3.8}}}
    assert compare(record, grown).agrees
    lost = {key: value for key, value in same.items() if key != "local_tv"}
    assert compare(record, lost).differences == ["/local_tv: 0.2 != None"]


def test_across_paths_a_mean_may_move_three_standard_errors():
    returns = [10.0, 12.0, 14.0, 16.0]  # sd 2.58, standard error 1.29: 3 of them 3.87
    record = _record(returns)
    near = {"certified_tv": 0.5 * (1 + 1e-7), "local_tv": 9.0,
            "attacks": {"none": {"returns": [x + 3.8 for x in returns]}}}
    agreement = compare(record, near)
    assert agreement.comparison == "statistical" and agreement.agrees
    assert agreement.not_judged == ["local_tv"]
    far = {**near, "attacks": {"none": {"returns": [x + 3.9 for x in returns]}}}
    assert compare(record, far).differences[0].startswith("attacks/none: mean 16.90")
    off = {**near, "certified_tv": 0.5 * (1 + 2e-6)}
    assert compare(record, off).differences == ["certified_tv: 0.5 != 0.500001"]


def test_a_fine_tuned_agents_certificates_are_not_judged_across_paths():
    record = _record([1.0, 2.0], finetune_steps=4096)
    again = {"certified_tv": 0.9, "local_tv": 0.1, "attacks": {"none": {"returns": [1.5, 1.5]}}}
    agreement = compare(record, again)
    assert agreement.agrees and agreement.not_judged == ["certified_tv", "local_tv"]
    assert mean_disagreement([5.0, 5.0], [5.0, 5.0]) is None
    assert mean_disagreement([5.0, 5.0], [5.0, 4.0]) is not None  # no spread: no room
    assert mean_disagreement([5.0], None) == "missing"


def test_a_trained_agent_names_the_numeric_path_it_was_trained_on(tmp_path):
    from pruningrl.agent import load_agent
    from pruningrl.ppo import PPOConfig, train

    config = PPOConfig(env_id="CartPole-v1", total_steps=2048, num_workers=0)
    train(config, tmp_path / "agent.safetensors", progress=False)
    metadata = load_agent(tmp_path / "agent.safetensors").metadata
    assert metadata["numeric_path"]["mode"] == PORTABLE
    assert metadata["numeric_path"] == {**numeric_path(), "threads": 1}


def test_a_sweep_refuses_to_record_outside_the_portable_mode(tmp_path, monkeypatch, capsys):
    from pruningrl.cli import main
    from pruningrl.experiments import sweep

    monkeypatch.setattr(sweep, "numeric_mode", lambda: NATIVE)
    code = main(["sweep", "smoke", "--out", str(tmp_path / "out"), "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "portable numeric mode" in error
    assert not (tmp_path / "out" / "records").exists()
