"""Build fake ``/sys/class/hwmon`` trees: ACPI power meters and NVIDIA Grace telemetry.

Files and units follow the hwmon ABI (µW, µJ); the Grace meters carry the
``power1_oem_info`` strings NVIDIA's firmware declares ("Module Power Socket 0", ...).

Example:
    >>> tree = FakeHwmon(tmp_path)
    >>> tree.add_meter("hwmon3", power_uw=250_000_000)
    >>> tree.set("hwmon3", "power1_average", 300_000_000)
    >>> monkeypatch.setenv("CARBON_CALLBACKS_HWMON_ROOT", str(tree.root))
"""

from __future__ import annotations

from pathlib import Path


class FakeHwmon:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def add(self, entry: str, name: str, files: dict[str, str], *, in_device: bool = False) -> Path:
        """A ``hwmonN`` directory `entry` with ``name`` and `files` (in ``device/`` when
        `in_device`, as the ACPI power meter driver of older kernels lays them out)."""
        path = self.root / entry
        where = path / "device" if in_device else path
        where.mkdir(parents=True)
        (path / "name").write_text(name + "\n")
        for file, text in files.items():
            (where / file).write_text(text + "\n")
        return where

    def add_meter(
        self,
        entry: str,
        *,
        power_uw: int | None = None,
        energy_uj: int | None = None,
        oem_info: str = "",
        accuracy: str = "",
        in_device: bool = False,
    ) -> Path:
        files = {"power1_average_interval": "1000"}
        if power_uw is not None:
            files["power1_average"] = str(power_uw)
        if energy_uj is not None:
            files["energy1_input"] = str(energy_uj)
        if oem_info:
            files["power1_oem_info"] = oem_info
        if accuracy:
            files["power1_accuracy"] = accuracy
        return self.add(entry, "power_meter", files, in_device=in_device)

    def add_grace(self, sockets: int = 1, *, module: bool = False, start: int = 1) -> None:
        """Grace rails per socket (Grace, CPU, SysIO; Module for Grace Hopper), 0 W."""
        n = start
        for socket in range(sockets):
            kinds = ["Module"] if module else []
            for kind in [*kinds, "Grace", "CPU", "SysIO"]:
                self.add_meter(
                    f"hwmon{n}",
                    power_uw=0,
                    in_device=True,
                    oem_info=f"{kind} Power Socket {socket}",
                    accuracy="100.0%",
                )
                n += 1

    def set(self, entry: str, file: str, value: int) -> None:
        for where in (self.root / entry, self.root / entry / "device"):
            if (where / file).is_file():
                (where / file).write_text(f"{value}\n")
                return
        raise FileNotFoundError(f"{entry}/{file}")
