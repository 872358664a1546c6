"""``--method tlfwr --boot A,B`` runs the transfer paper's comparison across boot features."""

from __future__ import annotations

import json

import numpy as np

from photocluster.cli import main


def test_boot_sweep_reports_each_boot_and_eta_over_them(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    code = main(["--headless", "--benchmark", "digits", "--method", "tlfwr", "--boot", "raw+kmeans,hog+kmeans",
                 "--limit", "150", "-q", "-p", "max_rounds=1", "-p", "min_steps=5", "-p", "epochs=1",
                 "--device", "cpu", "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "raw+kmeans" in printed and "hog+kmeans" in printed and "η (std/mean)" in printed

    payload = json.loads(out.read_text())  # one method: one object, as for every benchmark
    assert payload["method"] == "tlfwr" and payload["n_images"] == 150
    [sweep] = payload["boot_sweeps"]
    per_boot = sweep["per_boot"]
    assert sorted(per_boot) == ["hog+kmeans", "raw+kmeans"]
    assert per_boot["raw+kmeans"]["paper_id"] == 1 and per_boot["hog+kmeans"]["paper_id"] == 3
    # η is std/mean across the boots, for the boot clustering and for the final one
    for stage in ("boot", "final"):
        accs = np.array([per_boot[b][stage]["acc"] for b in per_boot])
        assert np.isclose(
            sweep["eta"][stage]["acc"], np.std(accs) / np.mean(accs))
