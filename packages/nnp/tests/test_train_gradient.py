"""The gradient solver (rung.nnp.train.gradient, jaxani, losses) against oracles that do not use it.

- The JAX model and the numba engine agree (ANI-1x, all 8 members; a periodic box).
- Loss gradients of every layer against central differences of the loss evaluated by the engine.
- With only the last layers free, a gradient run converges to the exact read-out refit.
- Frozen parameters are bit-identical after a stage; a learning rate of 0 changes nothing.
- A killed run resumes from its checkpoint to the bit-identical result of an uninterrupted one.
- The loss types against their definitions (CRPS by numerical integration).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers of test_train_readout and test_train_cli

pytest.importorskip("jax")
pytest.importorskip("optax")

from rung.nnp.ani import ANIPotential  # noqa: E402
from rung.nnp.model import ANIModel  # noqa: E402
from rung.nnp.testing import random_model  # noqa: E402
from rung.nnp.train import jaxani  # noqa: E402
from rung.nnp.train.gradient import Options, finetune, write_back  # noqa: E402
from rung.nnp.train.readout import refit  # noqa: E402

from test_train_readout import data, labelled, theta_of  # noqa: E402


def test_jax_model_is_the_engine_ani1x(ani1x_file):
    """Energies and forces of every ANI-1x member, float64: JAX against numba to 1e-10 Hartree (/Angstrom)."""
    import jax

    from rung.nnp.model import read_model

    model = read_model(ani1x_file)
    x, z, b = data(n_conf=2, formulas=("CH3OH", "HCOOH", "H3CNH2", "N2H4"), amplitude=0.05)
    r = ANIPotential(model, dtype="float64", backend="numba").evaluate(x, z, batch=b)
    st = jaxani.structures(model, x, z, b)
    g = st.graph(np.arange(st.n_conf), st.bound(st.n_conf))
    sae = np.bincount(b, weights=model.self_energies[st.species])
    fn = jaxani.compiled_predict(jaxani.architecture(model))
    with jax.enable_x64(True):
        ga = jax.tree_util.tree_map(jax.numpy.asarray, g.arrays())
        for m in range(8):
            e, f = fn(jaxani.params_of(model, m), ga)
            one = ANIPotential(model.select(m), dtype="float64").evaluate(x, z, batch=b)
            np.testing.assert_allclose(np.asarray(e)[:st.n_conf] + sae, r.energy_members[m], rtol=0, atol=1e-10)
            np.testing.assert_allclose(np.asarray(f)[:z.size], one.forces, rtol=0, atol=1e-10)


def test_jax_model_periodic_and_gaussian():
    """A periodic water box (images across the cell) with Gaussian activations (ANI-1's): JAX = engine."""
    from rung.nnp.model import Layer, Network
    from rung.nnp.testing import water_box

    base = random_model(2, species=("H", "O"))
    nets = tuple(Network(tuple(Layer(la.weight, la.bias, "gaussian" if k < len(n.layers) - 1 else "identity")
                               for k, la in enumerate(n.layers))) for n in base.members[0])
    model = ANIModel("g", base.species, base.aev, base.self_energies, (nets,))
    x, z, cell = water_box(2)
    r = ANIPotential(model, dtype="float64").evaluate(x, z, cell=cell)
    e, f = jaxani.evaluate(model, x, z, np.zeros(z.size, np.int64), cells=cell[None])
    np.testing.assert_allclose(e, r.energy, rtol=0, atol=1e-10)
    np.testing.assert_allclose(f, r.forces, rtol=0, atol=1e-10)


def engine_loss(model, start, lab, opts, frozen=()):
    """The gradient solver's mse loss written out with the engine (numba, float64) and the model arrays
    (the labels' weights hold the stage's factors already, as Frames.labels makes them)."""
    from rung.nnp.train.gradient import free_names
    from rung.nnp.train.jaxani import params_of

    r = ANIPotential(model, dtype="float64").evaluate(lab.x, lab.numbers, batch=lab.batch)
    out = np.sum(lab.energy_weight * (r.energy - lab.energy) ** 2) + np.sum(lab.forces_weight * (r.forces - lab.forces) ** 2)
    p, p0 = params_of(model), params_of(start)
    last = {f"{sp}.{len(n.layers) - 1}.bias" for sp, n in zip(model.species, model.members[0])}
    for n in free_names(model, frozen):
        out += (opts.shift_l2sp if n in last else opts.l2sp) * np.sum((p[n] - p0[n]) ** 2)
    return out


@pytest.fixture(scope="module")
def small():
    """One-member student, labels of another random model (not representable), 12 conformations."""
    student = random_model(0)
    x, z, b = data(n_conf=2)
    return student, labelled(random_model(7), x, z, b)


@pytest.mark.parametrize("term", ["energy", "forces"])
def test_loss_gradient_finite_differences(small, term):
    """dL/dp by JAX (forces: a second derivative) against central differences of the engine's loss, for
    a few parameters of every layer of every species, away from the start (the prior's gradient too)."""
    import jax

    from rung.nnp.train.gradient import Problem
    from rung.nnp.train.jaxani import params_of

    student, lab = small
    rng = np.random.default_rng(3)
    moved = dict(params_of(student))
    for n in moved:
        moved[n] = moved[n] + 0.05 * rng.normal(size=moved[n].shape)
    point = ANIModel(student.name, student.species, student.aev, student.self_energies,
                     (write_back(student, 0, moved, np.float64),))
    # the labels' weights carry 1/sigma^2; a term is switched off through the stage's factor (0 removes the rows)
    opts = Options(energy_weight=1.0 if term == "energy" else 0.0, forces_weight=1.0 if term == "forces" else 0.0,
                   l2sp=3.0, shift_l2sp=0.5, batch_size=100)
    lab_t = lab.__class__(lab.x, lab.numbers, lab.batch, lab.energy, lab.energy_weight * opts.energy_weight, lab.forces,
                          lab.forces_weight * opts.forces_weight)
    with jax.enable_x64(True):
        prob = Problem(point, lab_t, lab_t, opts)
        free, frozen, _ = prob.split_params(0)
        _, _, start = Problem(student, lab_t, lab_t, opts).split_params(0)
        grad = {n: np.asarray(v) for n, v in prob.gradient(free, frozen, start).items()}
    L0 = engine_loss(point, student, lab_t, opts)
    assert L0 > 0
    checked = 0
    for n, g in grad.items():
        for k in rng.choice(g.size, size=min(2, g.size), replace=False):
            h = 1e-5 * max(1.0, abs(moved[n].flat[k]))
            vals = []
            for sgn in (1, -1):
                p = {m: v.copy() for m, v in moved.items()}
                p[n].flat[k] += sgn * h
                mod = ANIModel(point.name, point.species, point.aev, point.self_energies,
                               (write_back(student, 0, p, np.float64),))
                vals.append(engine_loss(mod, student, lab_t, opts))
            fd = (vals[0] - vals[1]) / (2 * h)
            assert fd == pytest.approx(g.flat[k], rel=2e-5, abs=1e-9 * L0), (n, k, fd, g.flat[k])
            checked += 1
    assert checked >= 4 * 3 * 2 * 2 - 4  # every species, layer, weight and bias


def test_converges_to_the_readout_refit():
    """Only the last layers free, loss mse, the same l2sp: full-batch Adam with reduce-on-plateau reaches
    the exact refit's loss and weights (the refit is the minimiser of the same loss)."""
    student = random_model(0)
    x, z, b = data(n_conf=2)
    lab = labelled(random_model(7), x, z, b)
    fit = refit(student, lab, l2sp=1e5, shift_l2sp=1e5)
    opts = Options(optimizer="adam", learning_rate=0.01, epochs=1000, batch_size=100, schedule="reduce_on_plateau",
                   plateau_patience=20, l2sp=1e5, shift_l2sp=1e5)
    ft = finetune(student, lab, lab, opts, frozen=["*.0.*", "*.1.*"])
    np.testing.assert_allclose(ft.loss_before, fit.loss_before, rtol=1e-12)
    np.testing.assert_allclose(ft.loss_after, fit.loss_after, rtol=1e-10)
    step = np.abs(theta_of(fit.model) - theta_of(student)).max()
    np.testing.assert_allclose(theta_of(ft.model), theta_of(fit.model), rtol=0, atol=1e-8 * step)


def test_frozen_bit_identical_and_zero_learning_rate(small):
    """Frozen arrays are the same objects (float32 bytes) after a stage; with a learning rate of 0 every
    array is; trained arrays change and are stored in the training dtype."""
    student, lab = small
    two = random_model(0, members=2)
    frozen = ["H.*", "*.0.weight"]
    opts = Options(optimizer="adamw", weight_decay=1e-3, learning_rate=0.0, epochs=2, batch_size=5, gradient_clip=10.0)
    still = finetune(two, lab, lab, opts, frozen=frozen).model
    for a, b in zip(two.members, still.members):
        for na, nb in zip(a, b):
            assert na is nb
    moved = finetune(two, lab, lab, Options(**{**opts.__dict__, "learning_rate": 1e-3}), frozen=frozen).model
    for a, b in zip(two.members, moved.members):
        for sp, na, nb in zip(two.species, a, b):
            for k, (la, lb) in enumerate(zip(na.layers, nb.layers)):
                for kind in ("weight", "bias"):
                    old, new = getattr(la, kind), getattr(lb, kind)
                    if sp == "H" or (k == 0 and kind == "weight"):
                        assert new is old and new.dtype == np.float32
                    else:
                        assert new.dtype == np.float64 and not np.array_equal(new, old)


def test_checkpoint_resume_is_the_uninterrupted_run(tmp_path):
    """A run killed in member 1 of a gradient stage (mini-batches, reduce-on-plateau, early stopping)
    resumes from its .npz checkpoint to the bit-identical model of an uninterrupted run."""
    from test_train_cli import teacher_of, write_dataset

    from rung.nnp.model import read_model, save_model
    from rung.nnp.train.config import load_config
    from rung.nnp.train.run import checkpoint_path, train

    config = """
model = "student.h5"
output = "out.h5"
plots = false
[training]
datasets = ["qmc.h5"]
energy = "qmc_total_energy"
gradient = "qmc_total_gradient"
validation_fraction = 0.25
[[stages]]
name = "shifts"
frozen = ["*.weight"]
[[stages]]
name = "tune"
solver = "gradient"
frozen = ["*.0.*"]
epochs = 5
batch_size = 4
learning_rate = 3e-3
schedule = "reduce_on_plateau"
plateau_patience = 1
patience = 3
"""
    runs = {}
    for name in ("whole", "killed"):
        d = tmp_path / name
        d.mkdir()
        student = random_model(0, members=2)
        save_model(student, d / "student.h5")
        write_dataset(d / "qmc.h5", teacher_of(student), formulas=("H2O", "NH3", "CH4"), n_conf=4)
        (d / "train.toml").write_text(config)
        runs[name] = d
    whole = train(load_config(runs["whole"] / "train.toml"), log=lambda s: None).model

    class Killed(Exception):
        pass

    def kill(line):
        if line.startswith("  member 1 epoch 3"):
            raise Killed

    d = runs["killed"]
    with pytest.raises(Killed):
        train(load_config(d / "train.toml"), log=kill)
    ckpt = checkpoint_path(d / "out.h5")
    assert ckpt.exists() and not (d / "out.h5").exists()
    with np.load(ckpt, allow_pickle=False) as z:  # readable without pickle: stage 1, member 1 in training
        meta = json.loads(str(z["meta"]))
        assert (meta["stage"], meta["member"]) == (1, 1) and "state/free/C.2.bias" in z.files
    seen = []
    resumed = train(load_config(d / "train.toml"), log=seen.append).model
    assert any(s.startswith("resuming from") for s in seen) and not ckpt.exists()
    for a, b in zip(whole.members, resumed.members):
        for na, nb in zip(a, b):
            for la, lb in zip(na.layers, nb.layers):
                assert la.weight.tobytes() == lb.weight.tobytes() and la.bias.tobytes() == lb.bias.tobytes()
    assert np.array_equal(whole.self_energies, resumed.self_energies)
    events = [json.loads(x)["event"] for x in (d / "out.log.jsonl").read_text().splitlines()]
    assert events[0] == "start" and "resume" in events and events[-1] == "done"
    a, b = read_model(runs["whole"] / "out.h5").provenance, read_model(d / "out.h5").provenance
    assert a["stages"][1]["members"] == b["stages"][1]["members"]


def test_loss_types_against_their_definitions():
    """mse, mae, log-cosh, nll and crps (NumPy and JAX alike) against their textbook forms; the CRPS of a
    Gaussian against the integral of (F(x) - 1[x >= y])^2 over x."""
    import jax
    import jax.numpy as jnp
    from scipy.integrate import quad
    from scipy.stats import norm

    from rung.nnp.train.losses import LOSSES, rho

    rng = np.random.default_rng(0)
    r, sigma = rng.normal(size=7) * 3e-3, rng.uniform(1e-3, 4e-3, 7)
    log_s = np.log(2e-3)
    v = sigma**2 + np.exp(2 * log_s)
    z = r / sigma
    expect = {"mse": z**2, "mae": np.abs(z), "log-cosh": np.log(np.cosh(z)),
              "nll": -2 * (norm.logpdf(r, scale=np.sqrt(v)) - norm.logpdf(0, scale=sigma))}
    crps = [quad(lambda t, y=y, s=s: (norm.cdf(t, scale=s) - (t >= y)) ** 2, -1, 1, points=[y], limit=200)[0]
            for y, s in zip(r, np.sqrt(v))]
    expect["crps"] = np.array(crps) / sigma
    with jax.enable_x64(True):
        for kind in LOSSES:
            np.testing.assert_allclose(rho(kind, r, sigma, log_s), expect[kind], rtol=1e-7, err_msg=kind)
            j = rho(kind, jnp.asarray(r), jnp.asarray(sigma), jnp.asarray(log_s))
            np.testing.assert_allclose(np.asarray(j), expect[kind], rtol=1e-7, err_msg=kind)


def test_inference_and_readout_do_not_import_jax(tmp_path):
    """load_model, evaluation and the read-out refit run without jax (it is an optional extra)."""
    code = ("import sys\n"
            "sys.modules['jax'] = None; sys.modules['optax'] = None\n"  # an import of either would fail
            "import numpy as np\n"
            "from rung.nnp.testing import random_model, conformations\n"
            "from rung.nnp.ani import ANIPotential\n"
            "from rung.nnp.train.readout import Labels, refit\n"
            "import rung.nnp.train.run, rung.nnp.cli\n"
            "m = random_model(0)\n"
            "(_, z, x), = conformations(('H2O',), 2)\n"
            "r = ANIPotential(m).evaluate(x.reshape(-1, 3), np.tile(z, 2), batch=np.repeat([0, 1], 3))\n"
            "refit(m, Labels(x.reshape(-1, 3), np.tile(z, 2), np.repeat([0, 1], 3), r.energy, np.ones(2),"
            " r.forces, np.ones((6, 3))))\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_plots_optional(tmp_path, monkeypatch):
    """Without matplotlib the run says so and writes no PNG (plots are an optional extra)."""
    from rung.nnp.train import run

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "rung.nnp.train.plots", None)
    import rung.nnp.train

    monkeypatch.delattr(rung.nnp.train, "plots", raising=False)  # an earlier test may have imported it
    said = []

    class Config:
        output = tmp_path / "m.h5"
        name = "m"

    assert run._plots(Config, [], None, None, None, said.append) == []
    assert said and said[0].startswith("no plots: matplotlib is not installed")
    assert not list(tmp_path.iterdir())


GRADIENT_CONFIG = """
model = "student.h5"
output = "tuned.h5"
[training]
datasets = ["qmc.h5"]
energy = "qmc_total_energy"
gradient = "qmc_total_gradient"
validation_fraction = 0.25
seed = 1
[[stages]]
name = "readout"
l2sp = 1e-6
[[stages]]
name = "all layers"
solver = "gradient"
frozen = ["*.0.bias"]
epochs = {epochs}
batch_size = 6
learning_rate = 1e-3
schedule = "cosine_onecycle"
gradient_clip = 100.0
l2sp = 1.0
"""


@pytest.mark.slow
def test_train_cli_gradient_end_to_end(tmp_path):
    """`nnp train` with a read-out stage, then every layer but the first biases (CliRunner): the model loads
    in the engine, the teacher's held-out errors fall, frozen arrays are the base's bytes, the log has one
    line per member and epoch, the provenance the members' records, and both PNGs are written."""
    from click.testing import CliRunner
    from test_train_cli import write_dataset

    from rung.nnp import load_model
    from rung.nnp.cli import main
    from rung.nnp.model import read_model, save_model
    from rung.nnp.testing import conformations

    student = random_model(0, members=2)
    save_model(student, tmp_path / "student.h5")
    teacher = random_model(5)  # other hidden layers: only a gradient stage can approach it
    write_dataset(tmp_path / "qmc.h5", teacher, formulas=("H2O", "NH3", "CH4", "CH3OH"), n_conf=8)
    (tmp_path / "train.toml").write_text(GRADIENT_CONFIG.format(epochs=30))
    r = CliRunner().invoke(main, ["train", str(tmp_path / "train.toml")])
    assert r.exit_code == 0, r.output
    assert "stage all layers" in r.output and "plot ->" in r.output
    for png in ("tuned.learning.png", "tuned.parity.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    base, new = read_model(tmp_path / "student.h5"), read_model(tmp_path / "tuned.h5")
    for nb, nn in zip(base.members[0], new.members[0]):
        assert nn.layers[0].bias.tobytes() == nb.layers[0].bias.tobytes() and nn.layers[0].bias.dtype == np.float32
        assert nn.layers[0].weight.dtype == np.float64
    lines = [json.loads(x) for x in (tmp_path / "tuned.log.jsonl").read_text().splitlines()]
    epochs = [x for x in lines if x["event"] == "epoch"]
    assert len(epochs) == 2 * 30 and {x["member"] for x in epochs} == {0, 1}
    stage = [x for x in lines if x["event"] == "stage"][1]
    assert stage["valid_after"]["forces_rmse"] < stage["valid_before"]["forces_rmse"]
    prov = new.provenance["stages"][1]
    assert prov["solver"] == "gradient" and len(prov["members"]) == 2 and "history" not in prov["members"][0]
    pot, ref = load_model(tmp_path / "tuned.h5", dtype="float64"), ANIPotential(teacher, dtype="float64")
    before = ANIPotential(student, dtype="float64")
    err = {"before": [], "after": []}
    for _, z, x in conformations(("CH3OH", "NH3"), 3, seed=11, amplitude=0.05):
        f_ref = ref.compute(x, z).forces
        err["before"].append(np.abs(before.compute(x, z).forces - f_ref).mean())
        err["after"].append(np.abs(pot.compute(x, z).forces - f_ref).mean())
    assert np.mean(err["after"]) < 0.8 * np.mean(err["before"]), err


@pytest.mark.slow
def test_killed_process_resumes(tmp_path):
    """`nnp train` killed with SIGKILL during a gradient stage, then run again with the same command:
    the same model bytes as an uninterrupted run in another folder."""
    import os
    import signal
    import time

    from test_train_cli import write_dataset

    from rung.nnp.model import read_model, save_model

    dirs = []
    for name in ("whole", "killed"):
        d = tmp_path / name
        d.mkdir()
        student = random_model(0, members=2)
        save_model(student, d / "student.h5")
        write_dataset(d / "qmc.h5", random_model(5), formulas=("H2O", "NH3", "CH4"), n_conf=6)
        (d / "train.toml").write_text(GRADIENT_CONFIG.format(epochs=40).replace("[training]", "plots = false\n[training]"))
        dirs.append(d)
    cmd = [sys.executable, "-m", "rung.nnp.cli", "train", "--quiet"]
    whole = subprocess.run(cmd + [str(dirs[0] / "train.toml")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    d = dirs[1]
    proc = subprocess.Popen(cmd + [str(d / "train.toml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = d / "tuned.log.jsonl"
    t0 = time.time()
    while time.time() - t0 < 300:  # kill once member 1 has trained a few epochs
        lines = log.read_text().splitlines() if log.exists() else []
        if sum(1 for x in lines if '"member": 1' in x and '"epoch"' in x) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (d / "tuned.h5").exists() and (d / "tuned.ckpt.npz").exists()
    again = subprocess.run(cmd + [str(d / "train.toml")], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    a, b = read_model(dirs[0] / "tuned.h5"), read_model(d / "tuned.h5")
    for ma, mb in zip(a.members, b.members):
        for na, nb in zip(ma, mb):
            for la, lb in zip(na.layers, nb.layers):
                assert la.weight.tobytes() == lb.weight.tobytes() and la.bias.tobytes() == lb.bias.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mae", "log-cosh", "nll", "crps"])
def test_loss_types_train(kind):
    """Every loss type fine-tunes the read-out towards a representable teacher whose labels carry Gaussian
    noise of 2 mHa (energies) beyond their 1 mHa error bars: the held-out error falls for all; nll and
    crps learn the model error s that their residuals need, s^2 + sigma^2 = mean r^2 (the variance's
    maximum-likelihood / minimum-CRPS value)."""
    from rung.nnp.model import Layer, Network
    from rung.nnp.train.readout import Labels

    student = random_model(0)
    rng = np.random.default_rng(1)
    nets = []
    for net in student.members[0]:
        last = net.layers[-1]
        nets.append(Network(net.layers[:-1] + (Layer(last.weight + 0.2 * rng.normal(size=last.weight.shape),
                                                     last.bias + 0.01, last.activation),)))
    teacher = ANIModel("t", student.species, student.aev, student.self_energies, (tuple(nets),))
    x, z, b = data(n_conf=30, amplitude=0.05)
    r = ANIPotential(teacher, dtype="float64").evaluate(x, z, batch=b)
    n = r.energy.size
    lab = Labels(x, z, b, r.energy + 2e-3 * rng.normal(size=n), np.full(n, 1e6), r.forces, np.zeros_like(r.forces))
    xv, zv, bv = data(n_conf=4, seed=8, amplitude=0.05)
    rv = ANIPotential(teacher, dtype="float64").evaluate(xv, zv, batch=bv)
    val = Labels(xv, zv, bv, rv.energy, np.full(rv.energy.size, 1e6), rv.forces, np.zeros_like(rv.forces))
    opts = Options(loss=kind, optimizer="adam", learning_rate=3e-3, epochs=300, batch_size=45, l2sp=0.0,
                   shift_l2sp=0.0, energy_sigma=3e-3)
    ft = finetune(student, lab, val, opts, frozen=["*.0.*", "*.1.*"])

    def rmse(model):
        return np.sqrt(np.mean((ANIPotential(model, dtype="float64").evaluate(xv, zv, batch=bv).energy - rv.energy) ** 2))

    assert rmse(ft.model) < 0.3 * rmse(student), (rmse(ft.model), rmse(student))
    if kind in ("nll", "crps"):
        s = ft.runs[0].model_sigma["energy_hartree"]
        res = ANIPotential(ft.model, dtype="float64").evaluate(x, z, batch=b).energy - lab.energy
        assert s == pytest.approx(np.sqrt(np.mean(res**2) - 1e-3**2), rel=0.25)


def test_one_padded_shape_holds_every_batch(small):
    """The padded sizes computed in advance hold every batch the stage builds: each member's epoch order,
    the stored order (losses before/after) and the validation set, with a batch size that leaves a
    short last batch; padding is the largest real batch plus one dummy row."""
    import jax

    from rung.nnp.train.gradient import Problem

    student, lab = small
    two = random_model(0, members=2)
    with jax.enable_x64(True):
        prob = Problem(two, lab, lab, Options(batch_size=5, epochs=7), ())
        shapes = set()
        for m in range(2):
            for e in range(7):
                shapes |= {g["x"].shape for (g, _), _ in prob.batches("train", prob.order(m, e))}
        shapes |= {g["x"].shape for (g, _), _ in prob.batches("train")}
        shapes |= {g["x"].shape for (g, _), _ in prob.batches("valid")}
    assert len(shapes) == 1
    st = prob.sets["train"][0]
    sizes = st.batch_sizes([prob.order(m, e) for m in range(2) for e in range(7)] + [np.arange(st.n_conf)], 5)
    assert shapes == {(int(sizes[:, 0].max()) + 1, 3)}


def test_early_stopping_keeps_the_best_weights():
    """patience = 2 with a learning rate too large to settle: the member stops early, and the weights it
    returns have the lowest validation loss of its history (measured again with the engine)."""
    student = random_model(0)
    x, z, b = data(n_conf=2)
    lab = labelled(random_model(7), x, z, b)
    opts = Options(optimizer="adam", learning_rate=0.3, epochs=60, batch_size=100, patience=2, l2sp=1e5, shift_l2sp=1e5)
    ft = finetune(student, lab, lab, opts, frozen=["*.0.*", "*.1.*"])
    run = ft.runs[0]
    h = run.history["valid_loss"]
    assert run.stopped.startswith("early stopping") and len(h) < 60
    assert run.best_epoch == int(np.argmin(h)) and len(h) == run.best_epoch + 3
    r = ANIPotential(ft.model, dtype="float64").evaluate(lab.x, lab.numbers, batch=lab.batch)
    data_loss = np.sum(lab.energy_weight * (r.energy - lab.energy) ** 2) + np.sum(lab.forces_weight * (r.forces - lab.forces) ** 2)
    assert data_loss / lab.n_conf == pytest.approx(min(h), rel=1e-9)


def test_schedules():
    """reduce_on_plateau halves the rate after every epoch without a lower validation loss (patience 1) and
    ends the stage below min_learning_rate; cosine_onecycle follows optax's schedule over all steps."""
    import optax

    student = random_model(0)
    x, z, b = data(n_conf=2)
    lab = labelled(random_model(7), x, z, b)
    common = dict(optimizer="adam", epochs=40, batch_size=100, l2sp=1e5, shift_l2sp=1e5)
    opts = Options(learning_rate=0.3, schedule="reduce_on_plateau", plateau_patience=1, plateau_factor=0.5,
                   min_learning_rate=0.3 * 0.5**3 * 1.01, **common)
    run = finetune(student, lab, lab, opts, frozen=["*.0.*", "*.1.*"]).runs[0]
    lr, v = run.history["lr"], run.history["valid_loss"]
    best = np.inf
    for k in range(1, len(lr)):
        best_before = min(best, v[k - 1])
        expect = lr[k - 1] if v[k - 1] < best else 0.5 * lr[k - 1]
        best = best_before
        assert lr[k] == pytest.approx(expect, rel=1e-12), (k, lr, v)
    assert run.stopped.startswith("learning rate below") and lr[-1] == pytest.approx(0.3 * 0.5**3 / 0.5)
    run = finetune(student, lab, lab, Options(learning_rate=0.01, schedule="cosine_onecycle", **common),
                   frozen=["*.0.*", "*.1.*"]).runs[0]
    import jax

    with jax.enable_x64(True):  # the solver evaluates it in float64 too
        sched = optax.cosine_onecycle_schedule(40, 0.01)
        expect = [float(sched(k)) for k in range(40)]
    np.testing.assert_allclose(run.history["lr"], expect, rtol=1e-12)
