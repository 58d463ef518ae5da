"""The HDF5 dataset: schema, atomic writing, reading.

One file holds a dataset: metadata attributes on the root (``schema_version``, ``level``, ``kinds``,
``settings``, ``versions``, ``seed`` as JSON strings) and one group per conformer under ``records/``:
``numbers`` [n_atoms], ``positions`` [n_atoms, 3] (Bohr), ``dipole`` [3] (a.u.), optional ``forces``,
and per field kind a subgroup (``grid/``, ``quadrature/``, ``coefficients/``, ``external/``) whose
arrays are named as in :mod:`dft_operators.data.generate`.  Scalars (energy in Hartree, convergence,
cycles, name, ...) are attributes of the record group.  ``failed/<id>`` groups keep failed SCFs with
their ``reason``.

Generation never writes into a live HDF5 file: finished records go to ``<out>.parts/`` one file each
(atomic rename), and the HDF5 file is assembled at the end into a temporary file that replaces the
old one atomically, so a kill at any moment loses no finished record and leaves no corrupt file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import h5py
import numpy as np

SCHEMA_VERSION = 1


class DatasetError(ValueError):
    """A dataset file that is missing, corrupt, of another schema, or lacks a requested field."""


Record = dict  # {"id": str, "arrays": {path: ndarray}, "attrs": {name: scalar}}


def parts_dir(out: str) -> str:
    """Where finished records wait until the HDF5 file is assembled."""
    return f"{out}.parts"


def save_part(out: str, record: Record) -> None:
    """Stores one finished record (or failure) in the parts directory, atomically."""
    folder = parts_dir(out)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{record['id']}.npz")
    tmp = path + ".tmp.npz"
    np.savez(tmp, __attrs__=json.dumps(record["attrs"]), **{k.replace("/", "|"): v for k, v in record["arrays"].items()})
    os.replace(tmp, path)


def _load_part(path: str) -> Record:
    with np.load(path) as f:
        attrs = json.loads(str(f["__attrs__"]))
        arrays = {k.replace("|", "/"): f[k] for k in f.files if k != "__attrs__"}
    return {"id": os.path.basename(path)[:-4], "arrays": arrays, "attrs": attrs}


def finished_parts(out: str) -> dict[str, str]:
    """id -> path of every complete part file (interrupted ``.tmp`` files are ignored)."""
    folder = parts_dir(out)
    if not os.path.isdir(folder):
        return {}
    return {name[:-4]: os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.endswith(".npz") and not name.endswith(".tmp.npz")}


def _write_record(group: h5py.Group, record: Record) -> None:
    g = group.create_group(record["id"])
    for key, value in record["attrs"].items():
        g.attrs[key] = value
    for path, array in record["arrays"].items():
        g.create_dataset(path, data=array, compression="gzip" if np.size(array) > 4096 else None)


def _copy_records(src: str, dst: h5py.File) -> None:
    with h5py.File(src, "r") as f:
        for name in ("records", "failed"):
            for rid in f.get(name, {}):
                f.copy(f[name][rid], dst.require_group(name), name=rid)


def assemble(out: str, metadata: dict) -> None:
    """Writes ``out`` from the old file (if any) plus all parts, atomically, then removes the parts."""
    tmp = f"{out}.tmp"
    with h5py.File(tmp, "w") as f:
        for key, value in metadata.items():
            f.attrs[key] = json.dumps(value)
        f.attrs["schema_version"] = SCHEMA_VERSION
        records, failed = f.create_group("records"), f.create_group("failed")
        if os.path.exists(out):
            _copy_records(out, f)
        for rid, path in finished_parts(out).items():
            if rid in records or rid in failed:
                continue
            record = _load_part(path)
            _write_record(failed if "reason" in record["attrs"] else records, record)
    os.replace(tmp, out)
    shutil.rmtree(parts_dir(out), ignore_errors=True)


class Dataset:
    """Read access to a dataset file: metadata, record ids, records as NumPy arrays.

    Example:
      >>> ds = Dataset("data.h5")                      # doctest: +SKIP
      >>> rho = ds.stack("grid/rho")                  # doctest: +SKIP  [n_records, nx, ny, nz]
    """

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise DatasetError(f"no dataset file {path}")
        try:
            with h5py.File(path, "r") as f:
                version = int(f.attrs.get("schema_version", -1))
                self.metadata = {k: json.loads(v) for k, v in f.attrs.items() if k != "schema_version"}
                self.ids = sorted(f["records"])
                self.failed = {rid: str(f["failed"][rid].attrs["reason"]) for rid in f.get("failed", {})}
        except (OSError, KeyError, ValueError) as err:
            raise DatasetError(f"{path} is not a readable dft_operators dataset ({err}); "
                               "regenerate it with `dft-operators generate`") from None
        if version != SCHEMA_VERSION:
            raise DatasetError(f"{path} has schema version {version}, this code reads version {SCHEMA_VERSION}")
        self.path = path

    def __len__(self) -> int:
        return len(self.ids)

    def record(self, rid: str) -> dict:
        """All arrays ({"grid/rho": ...}) and attributes of one record."""
        with h5py.File(self.path, "r") as f:
            g = f["records"][rid]
            out = dict(g.attrs)
            g.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out

    def stack(self, field: str, ids: list[str] | None = None) -> np.ndarray:
        """One field of many records stacked on a new leading axis (fields must share a shape)."""
        ids = self.ids if ids is None else ids
        with h5py.File(self.path, "r") as f:
            try:
                arrays = [f["records"][rid][field][()] for rid in ids]
            except KeyError:
                raise DatasetError(f"{self.path}: field {field!r} missing; generate with the kind that makes it "
                                   f"(kinds in this file: {self.metadata.get('kinds')})") from None
        return np.stack(arrays)

    def attribute(self, name: str, ids: list[str] | None = None) -> np.ndarray:
        """One scalar attribute (energy, cycles, ...) of many records, [n_records]."""
        ids = self.ids if ids is None else ids
        with h5py.File(self.path, "r") as f:
            return np.array([f["records"][rid].attrs[name] for rid in ids])

    def fingerprint(self) -> str:
        """A short hash of the metadata and record ids, saved with models trained on this dataset."""
        text = json.dumps([self.metadata, self.ids], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
