"""efg scan: transition temperature from curves with a known break, and no false transitions."""
import json

import numpy as np
import pytest

from efg.report import Estimate, SpeciesNMR
from efg.temperature_scan import order_parameter_transition, scan, transition


def test_break_point_found_within_its_uncertainty():
    rng = np.random.default_rng(4)
    T = np.arange(100.0, 701.0, 50.0)
    tc_true = 372.0
    order = np.where(T < tc_true, 8.0 * np.sqrt(np.clip(1 - T / tc_true, 0, None)), 0.0) + 0.3
    err = np.full_like(T, 0.15)
    est = transition(T, order + rng.normal(0, 0.15, T.size), err)
    assert est["significant"]
    assert abs(est["tc_K"] - tc_true) <= max(3 * est["tc_error_K"], 25.0)
    assert 0 < est["tc_error_K"] < 60


def test_straight_line_gives_no_transition():
    rng = np.random.default_rng(5)
    T = np.arange(100.0, 701.0, 50.0)
    y = 3.0 - 0.002 * T + rng.normal(0, 0.05, T.size)
    assert not transition(T, y, np.full_like(T, 0.05))["significant"]


def _run(T, tilt, tilt_err, cq):
    """A run report as efg analyze writes it (built through efg.report), with made-up numbers."""
    def entry(value, error):
        return Estimate(value, error, tau_frames=1.0, block_frames=2, n_blocks=10)

    br = SpeciesNMR(n_sites=24, isotope="79Br", cq_of_mean_tensor_mhz=entry(cq, 0.01),
                    abs_cq_of_mean_tensor_mhz=entry(cq, 0.01), eta_of_mean_tensor=entry(0.1, 0.01),
                    mean_cq_mhz=entry(cq, 0.01), mean_abs_cq_mhz=entry(cq, 0.01), mean_eta=entry(0.1, 0.01),
                    mean_abs_vzz_V_per_A2=entry(1.0, 0.01), histogram_eta={"counts": [], "edges": []})
    a = 5.9 + 1e-4 * T
    structure = {"tilt_R_deg": entry([0.1, 0.1, tilt], [0.05, 0.05, tilt_err]),
                 "tilt_M_deg": entry([0.1, 0.1, 0.1], [0.05, 0.05, 0.05]),
                 "lattice_pc_A": entry([a, a, a + (0.02 if tilt > 1 else 0.0)], [1e-3] * 3)}
    return {"efgmd": "efg analyze", "temperature_K": T, "species": {"Br": br.to_json()},
            "structure": {key: e.to_json() for key, e in structure.items()}}


def test_scan_of_runs_reports_structural_transition_and_plots(tmp_path):
    files = []
    for T in range(150, 651, 50):
        tilt = 6.0 * np.sqrt(max(0.0, 1 - T / 420.0))
        f = tmp_path / f"run_{T}.json"
        f.write_text(json.dumps(_run(float(T), tilt + 0.3, 0.2, 60.0 - (10.0 if T < 420 else 0.0) - 0.01 * T)))
        files.append(f)
    report = scan(files[::-1], tmp_path / "scan.json")
    tc = report["transition_temperature_K"]
    assert tc["tc_K"] is not None and abs(tc["tc_K"] - 420.0) <= max(3 * tc["tc_error_K"], 30.0)
    assert report["cq_transition_K"]["Br"]["significant"]
    assert report["temperatures_K"] == sorted(report["temperatures_K"])
    for png in report["plots"]:
        assert (tmp_path / png).stat().st_size > 1000
    assert json.loads((tmp_path / "scan.json").read_text())["curves"]


def test_scan_needs_temperatures(tmp_path):
    f = tmp_path / "run.json"
    f.write_text(json.dumps({**_run(300.0, 1.0, 0.1, 50.0), "temperature_K": None}))
    with pytest.raises(ValueError, match="no temperature in .*run.json"):
        scan([f])


@pytest.mark.parametrize("beta", [0.25, 0.5])
def test_order_parameter_collapse_finds_tc(beta):
    """A tilt that collapses on heating onto a finite-size floor: T_c found within its error
    (and within the temperature spacing); a flat curve gives no transition."""
    rng = np.random.default_rng(11)
    T = np.arange(100.0, 701.0, 50.0)
    tc_true = 455.0
    clean = 1.5 + 8.0 * np.clip(1.0 - T / tc_true, 0.0, None) ** beta
    err = np.full_like(T, 0.15)
    est = order_parameter_transition(T, clean + rng.normal(0.0, 0.15, T.size), err)
    assert est["significant"] and est["p_value_no_transition"] < 1e-3
    assert abs(est["tc_K"] - tc_true) <= max(2.0 * est["tc_error_K"], 25.0)
    assert est["tc_error_K"] >= 50.0 / np.sqrt(12.0) - 1e-9
    assert abs(est["floor"] - 1.5) < 0.5 and est["amplitude"] > 6.0
    flat = order_parameter_transition(T, 1.5 + rng.normal(0.0, 0.15, T.size), err)
    assert not flat["significant"]
    rising = order_parameter_transition(T, clean[::-1], err)
    assert not rising["significant"]
