"""bench/supernet_kernel_bias.py without CIFAR-10: the kernel rewrite and the clean skip."""
from __future__ import annotations

from conftest import load_bench


def _bench():
    return load_bench("supernet_kernel_bias")


def test_every_block_kernel_changes_and_the_stem_keeps_its_own():
    from search_space.genotype import parse

    g = "swish_r32:stem_c16_k3_s1:ir_r1_k5_s1_e3_c8:ds_r2_k3_s2_c12_se0.25:ir_r1_k3_s2_e6_c16:head_c320"
    five = _bench().with_kernel(g, 5)
    assert five == "swish_r32:stem_c16_k3_s1:ir_r1_k5_s1_e3_c8:ds_r2_k5_s2_c12_se0.25:ir_r1_k5_s2_e6_c16:head_c320"
    assert [s.kernel for s in parse(five).stages] == [5, 5, 5] and parse(five).stem.kernel == 3


def test_skips_without_data(tmp_path, capsys):
    assert _bench().main(["--checkpoint", str(tmp_path / "s.pt"), "--data", str(tmp_path / "none.npz")]) == 0
    assert "skipped: CIFAR-10 not found" in capsys.readouterr().out
