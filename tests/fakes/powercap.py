"""Build fake ``/sys/class/powercap`` trees (flat, as the real class directory is).

Example:
    >>> tree = FakePowercap(tmp_path)
    >>> tree.add("intel-rapl:0", "package-0", energy_uj=1_000)
    >>> tree.set("intel-rapl:0", 3_000_000)  # 3 J later (same inode: open fds see it)
    >>> monkeypatch.setenv("CARBON_CALLBACKS_POWERCAP_ROOT", str(tree.root))
"""

from __future__ import annotations

from pathlib import Path

# A common real value (Skylake-SP): the counter wraps after ~262 kJ.
DEFAULT_RANGE_UJ = 262_143_328_850


class FakePowercap:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "intel-rapl").mkdir(exist_ok=True)  # the control-type directory

    def add(
        self,
        zone: str,
        name: str,
        *,
        energy_uj: int = 0,
        max_energy_range_uj: int = DEFAULT_RANGE_UJ,
    ) -> Path:
        """Add zone directory `zone` (e.g. ``intel-rapl:0:2``) whose ``name`` is `name`."""
        path = self.root / zone
        path.mkdir()
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        (path / "energy_uj").write_text(f"{energy_uj}\n")
        return path

    def set(self, zone: str, energy_uj: int) -> None:
        """Set a counter, rewriting the file in place (open descriptors see the new value)."""
        with open(self.root / zone / "energy_uj", "r+") as f:
            f.truncate(0)
            f.write(f"{energy_uj}\n")

    def get(self, zone: str) -> int:
        return int((self.root / zone / "energy_uj").read_text())

    def add_standard(self, packages: int = 2, dram: bool = True) -> None:
        """`packages` package domains, each with core and (optionally) dram subdomains."""
        for p in range(packages):
            self.add(f"intel-rapl:{p}", f"package-{p}")
            self.add(f"intel-rapl:{p}:0", "core")
            if dram:
                self.add(f"intel-rapl:{p}:1", "dram")
