"""Networks above the size limits are refused before anything is built (issue 10.7)."""
import subprocess
import sys

import pytest
import torch

from search_space import ModelSizeError, activation_elements, check_size, cost, parse, reference, size_limits
from search_space.model import GenotypeNet, build_model

# 8e9 parameters: a 1x1 stem, one stage and a head of 89,000 channels (the head conv alone is 8e9).
HUGE = parse("relu_r8:stem_c8_k1_s1:cn_r1_k1_s1_c89000:head_c89000")


def test_huge_network_is_refused_before_building(monkeypatch):
    monkeypatch.delenv("HWNAS_MAX_PARAMS", raising=False)
    assert cost(HUGE).params > 7.9e9
    with pytest.raises(ModelSizeError) as e:
        build_model(HUGE)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"{cost(HUGE).params:,} parameters" in msg and "limit of 2,000,000,000" in msg
    assert "max_params=" in msg and "--max-params" in msg and "HWNAS_MAX_PARAMS" in msg


def test_limits_are_raised_by_keyword_and_environment(monkeypatch):
    g = reference("efficientnet-b0")
    monkeypatch.delenv("HWNAS_MAX_PARAMS", raising=False)
    assert size_limits() == (2e9, 16 * 2**30)
    with pytest.raises(ModelSizeError, match="5,288,548 parameters, above the limit of 1,000,000"):
        check_size(g, max_params=1e6)
    with torch.device("meta"):
        with pytest.raises(ModelSizeError):
            build_model(g, max_params=5_288_547)
        assert build_model(g, max_params=5_288_548) is not None
        monkeypatch.setenv("HWNAS_MAX_PARAMS", "5e6")
        with pytest.raises(ModelSizeError, match="limit of 5,000,000"):
            GenotypeNet(g)  # every builder goes through the guard, not only build_model
        assert GenotypeNet(g, max_params=6e6) is not None  # the keyword wins over the variable
    monkeypatch.setenv("HWNAS_MAX_PARAMS", "lots")
    with pytest.raises(ModelSizeError, match=r"HWNAS_MAX_PARAMS='lots' is not a number"):
        size_limits()
    monkeypatch.delenv("HWNAS_MAX_PARAMS")
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(ModelSizeError, match="max_params"):
            size_limits(max_params=bad)


def test_activation_memory_guard(monkeypatch):
    monkeypatch.delenv("HWNAS_MAX_ACTIVATION_BYTES", raising=False)
    g = reference("efficientnet-b0").replace(resolution=4096)
    assert 8 * 2**30 < 4 * activation_elements(g) < 9 * 2**30  # 8.4 GiB at batch 1: under 16 GiB
    check_size(g)
    wide = parse("swish_r4096:stem_c64_k3_s1:ir_r1_k3_s1_e6_c64:head_c64")
    with pytest.raises(ModelSizeError) as e:
        build_model(wide)
    assert "GiB of activations at batch 1 and resolution 4096, above the limit of 16.0 GiB" in str(e.value)
    assert "HWNAS_MAX_ACTIVATION_BYTES" in str(e.value)
    monkeypatch.setenv("HWNAS_MAX_ACTIVATION_BYTES", "1e12")
    check_size(wide)
    with pytest.raises(ModelSizeError, match="activations"):
        check_size(wide, max_activation_bytes=1e9)


def test_bad_channels_and_classes_are_refused():
    g = reference("mobilenet-v2")
    with pytest.raises(ValueError, match="in_channels -1 is not allowed; allowed: an integer >= 1"):
        build_model(g, in_channels=-1)
    with pytest.raises(ValueError, match="num_classes 0 is not allowed"):
        build_model(g, num_classes=0)


def test_scaling_export_max_params_flag(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scaling", "export", "efficientnet-b0", "--format", "torchscript",
                        "--out", str(tmp_path / "m.pt"), "--max-params", "1e6"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "5,288,548 parameters, above the limit of 1,000,000" in r.stderr and "--max-params" in r.stderr
    assert not (tmp_path / "m.pt").exists()
