"""gan_zoo.util.hardware: the auto choices (precision, channels-last, threads) and their reasons,
on faked CPUs, GPUs and containers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_zoo.util import hardware

ZEN4_FLAGS = "fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni"
SAPPHIRE_RAPIDS_FLAGS = "fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
SKYLAKE_FLAGS = "fpu sse2 avx2 avx512f avx512bw avx512dq"


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """Returns set(flags): fakes /proc/cpuinfo with those x86 flags and torch's probes off."""
    monkeypatch.setattr(hardware, "_torch_cpu_probe", lambda name: False)

    def set_flags(flags: str, key: str = "flags") -> None:
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nmodel name\t: test\n{key}\t\t: {flags}\n\n")
        monkeypatch.setattr(hardware, "CPUINFO", info)

    return set_flags


def test_avx512_bf16_cpu_gets_bf16(cpu):
    cpu(ZEN4_FLAGS)
    assert hardware.bf16_fast("cpu") == (True, "this CPU has AVX512_BF16")
    precision, why = hardware.choose_precision("auto", torch.device("cpu"))
    assert precision == "bf16"
    assert why.startswith("auto: this CPU has AVX512_BF16")
    assert "same FID" in why


def test_amx_is_named_first(cpu):
    cpu(SAPPHIRE_RAPIDS_FLAGS)
    assert hardware.cpu_bf16_units() == ["AMX-BF16", "AVX512_BF16"]
    assert hardware.choose_precision("auto", "cpu")[0] == "bf16"
    assert "AMX-BF16" in hardware.choose_precision("auto", "cpu")[1]


@pytest.mark.parametrize("flags,key", [(SKYLAKE_FLAGS, "flags"),  # AVX-512 but no bf16 unit
                                       ("fp asimd evtstrm aes crc32", "Features")])  # old ARM
def test_cpu_without_bf16_units_stays_fp32(cpu, flags, key):
    cpu(flags, key)
    precision, why = hardware.choose_precision("auto", "cpu")
    assert precision == "fp32"
    assert why == ("auto: this CPU has neither AMX nor AVX512_BF16, so bf16 would be emulated "
                   "and slower than fp32")


def test_torch_probe_counts_without_cpuinfo(monkeypatch, tmp_path):
    """macOS/Windows have no /proc/cpuinfo: torch's own probe decides."""
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(hardware, "_torch_cpu_probe",
                        lambda name: name == "_is_avx512_bf16_supported")
    assert hardware.cpu_flags() == frozenset()
    assert hardware.bf16_fast("cpu") == (True, "this CPU has AVX512_BF16")


def test_a_named_precision_is_kept(cpu):
    cpu(ZEN4_FLAGS)
    for name in ("fp32", "bf16", "fp16"):
        assert hardware.choose_precision(name, "cpu") == (name, "as requested")
    cpu(SKYLAKE_FLAGS)
    assert hardware.choose_precision("bf16", "cpu") == ("bf16", "as requested")


@pytest.mark.parametrize("capability,expected", [((9, 0), "bf16"), ((8, 0), "bf16"),
                                                 ((7, 5), "fp32"), ((6, 1), "fp32")])
def test_cuda_needs_compute_capability_8(monkeypatch, capability, expected):
    monkeypatch.setattr(hardware, "_cuda_capability", lambda device: capability)
    monkeypatch.setattr(hardware, "_cuda_name", lambda device: "Test GPU")
    precision, why = hardware.choose_precision("auto", torch.device("cuda"))
    assert precision == expected
    major, minor = capability
    assert f"Test GPU (compute capability {major}.{minor}" in why
    assert ("has bf16 tensor cores" in why) == (expected == "bf16")


def test_mps_and_unknown_devices_stay_fp32():
    assert hardware.choose_precision("auto", "mps") == (
        "fp32", "auto: Apple MPS: bf16 is not known to be faster than fp32 there")
    assert hardware.choose_precision("auto", "xpu")[0] == "fp32"


def test_channels_last(monkeypatch):
    assert hardware.choose_channels_last("cuda")[0] is True
    assert hardware.choose_channels_last("mps")[0] is False
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    assert hardware.choose_channels_last("cpu") == (
        True, "oneDNN runs NHWC convolutions without layout reorders")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert hardware.choose_channels_last("cpu")[0] is False


def _cgroup_v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def _cgroup_v1(root: Path, quota: int, period: int = 100000, folder: str = "cpu") -> Path:
    (root / folder).mkdir(parents=True)
    (root / folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_cgroup_quota(tmp_path):
    assert hardware.cgroup_cpu_limit(_cgroup_v2(tmp_path / "a", "150000 100000")) == 1.5
    assert hardware.cgroup_cpu_limit(_cgroup_v2(tmp_path / "b", "max 100000")) is None
    assert hardware.cgroup_cpu_limit(_cgroup_v1(tmp_path / "c", 200000)) == 2.0
    assert hardware.cgroup_cpu_limit(_cgroup_v1(tmp_path / "d", -1)) is None
    assert hardware.cgroup_cpu_limit(_cgroup_v1(tmp_path / "e", 50000, folder="cpu,cpuacct")) == 0.5
    assert hardware.cgroup_cpu_limit(tmp_path / "nothing") is None


@pytest.fixture
def cores(monkeypatch):
    """Fakes the CPU affinity: cores(n)."""
    return lambda n: monkeypatch.setattr(hardware, "affinity_cores", lambda: n)


def test_threads_follow_a_container_quota(tmp_path, cores):
    cores(16)
    root = _cgroup_v2(tmp_path, "150000 100000")  # 1.5 cores: rounded up
    assert hardware.usable_cores(root) == 2
    assert hardware.choose_threads(16, {}, root) == (
        2, "lowered from 16: the container's CPU quota allows 2 cores")


def test_threads_kept_without_a_quota(tmp_path, cores):
    cores(2)
    assert hardware.choose_threads(2, {}, tmp_path) == (2, "of 2 usable cores")
    assert hardware.choose_threads(1, {}, tmp_path) == (1, "of 2 usable cores")  # user's lower count


def test_threads_never_override_the_user(tmp_path, cores):
    cores(16)
    root = _cgroup_v2(tmp_path, "200000 100000")
    assert hardware.choose_threads(16, {"OMP_NUM_THREADS": "16"}, root) == (16, "OMP_NUM_THREADS=16")
    assert hardware.choose_threads(8, {"MKL_NUM_THREADS": "8"}, root) == (8, "MKL_NUM_THREADS=8")
    # above the affinity: torch's default never is, so the user set it
    assert hardware.choose_threads(32, {}, root) == (
        32, "set by torch.set_num_threads; 2 usable cores")


def test_apply_threads_sets_torch(monkeypatch, tmp_path, cores):
    cores(4)
    monkeypatch.setattr(hardware, "CGROUP_ROOT", _cgroup_v2(tmp_path, "100000 100000"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert hardware.apply_threads() == (
            1, "lowered from 3: the container's CPU quota allows 1 core")
        assert torch.get_num_threads() == 1
        # the header then describes the count in use
        assert hardware.run_header("fp32", "as requested", False, "cpu") == [
            "precision fp32 (as requested)",
            "channels-first (channels_last off), threads 1 (of 1 usable core)"]
    finally:
        torch.set_num_threads(before)


def test_run_header_names_every_choice_and_why(cpu, monkeypatch, tmp_path, cores):
    cpu(ZEN4_FLAGS)
    cores(2)
    monkeypatch.setattr(hardware, "CGROUP_ROOT", tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    precision, why = hardware.choose_precision("auto", "cpu")
    assert hardware.run_header(precision, why, True, "cpu") == [
        f"precision bf16 ({why})",
        "channels-last (oneDNN runs NHWC convolutions without layout reorders), "
        f"threads {torch.get_num_threads()} (OMP_NUM_THREADS=2)"]
    assert hardware.run_header("fp32", "x", True, "mps")[1].startswith(
        "channels-last (as configured)")
