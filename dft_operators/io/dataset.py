"""The dataset on disk: HDF5 shards plus a JSON manifest, appended, never rewritten.

A dataset is a directory::

    DATA/manifest.json        schema_version, level, kinds, settings, versions, seed, field shapes,
                              the shards, failed records {id: reason}, the molecules (canonical SMILES)
    DATA/shard-00000.h5       one group per record under records/ (written once, atomically)
    DATA/pending/             finished records of the shard being filled, one .npz each, and
                              pending/settings.json: the metadata they were made with

A record holds ``numbers`` [n_atoms], ``positions`` [n_atoms, 3] (Bohr), ``dipole`` [3] (a.u.), optional
``forces``, and per field kind a subgroup (``grid/``, ``quadrature/``, ``coefficients/``, ``external/``)
whose arrays are named as in :mod:`dft_operators.data.generate`.  Scalars (energy in Hartree,
convergence, cycles, name, smiles, source, ...) are attributes of the record group.

Crash safety: a record is saved to ``pending/`` the moment it is computed (atomic rename); when a shard's
worth has arrived, the shard is written to a temporary file and renamed, then the manifest is replaced
atomically, then the pending files are removed.  A kill at any moment loses no finished record: a shard
file that the manifest does not list is an interrupted flush, deleted on the next open for writing, and its
records are still pending.  :func:`merge` concatenates finished datasets into a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import h5py
import numpy as np

SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
PENDING = "pending"


class DatasetError(ValueError):
    """A dataset that is missing, corrupt, of another schema or settings, or lacks a requested field."""


Record = dict  # {"id": str, "arrays": {path: ndarray}, "attrs": {name: scalar}}


def _atomic_json(path: str, value: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, default=str)
    os.replace(tmp, path)


def read_manifest(path: str) -> dict | None:
    """The manifest of dataset directory ``path``, None if there is none yet."""
    if os.path.isfile(path):
        raise DatasetError(f"{path} is a file, not a dataset directory (schema {SCHEMA_VERSION} datasets are "
                           "directories of shards; regenerate it with `dft-operators generate`)")
    name = os.path.join(path, MANIFEST)
    if not os.path.exists(name):
        return None
    try:
        with open(name) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise DatasetError(f"{name} is not a readable manifest ({err})") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{path} has schema version {manifest.get('schema_version')}, this code reads "
                           f"version {SCHEMA_VERSION}")
    return manifest


def save_pending(path: str, record: Record) -> None:
    """Stores one finished record (or failure) in ``pending/``, atomically."""
    folder = os.path.join(path, PENDING)
    os.makedirs(folder, exist_ok=True)
    name = os.path.join(folder, f"{record['id']}.npz")
    tmp = name + ".tmp.npz"
    np.savez(tmp, __attrs__=json.dumps(record["attrs"]),
             **{k.replace("/", "|"): v for k, v in record["arrays"].items()})
    os.replace(tmp, name)


def load_pending(name: str) -> Record:
    with np.load(name) as f:
        attrs = json.loads(str(f["__attrs__"]))
        arrays = {k.replace("|", "/"): f[k] for k in f.files if k != "__attrs__"}
    return {"id": os.path.basename(name)[:-4], "arrays": arrays, "attrs": attrs}


def _pending_attrs(name: str) -> dict:
    with np.load(name) as f:  # reads only this member of the .npz
        return json.loads(str(f["__attrs__"]))


def pending_records(path: str) -> dict[str, str]:
    """id -> file of every complete pending record (interrupted ``.tmp`` files are ignored)."""
    folder = os.path.join(path, PENDING)
    if not os.path.isdir(folder):
        return {}
    return {n[:-4]: os.path.join(folder, n) for n in sorted(os.listdir(folder))
            if n.endswith(".npz") and not n.endswith(".tmp.npz")}


def _molecule_key(attrs: dict) -> str:
    """What identifies a record's molecule: its canonical SMILES, else its name."""
    return str(attrs.get("smiles") or attrs.get("name"))


def _field_shapes(arrays: dict[str, np.ndarray]) -> dict[str, dict]:
    return {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)} for k, v in sorted(arrays.items())}


class ShardWriter:
    """Appends shards to a dataset directory made with ``metadata`` (level, kinds, settings, ...).

    Args:
      path: the dataset directory (created if needed).
      metadata: what every record was made with; must equal that of existing shards and pending records.
      shard_size: records per shard.
    Raises:
      DatasetError: the existing shards or the pending records of a killed run were made with other settings.
    """

    def __init__(self, path: str, metadata: dict, shard_size: int = 256):
        self.path, self.shard_size = path, shard_size
        metadata = json.loads(json.dumps(metadata, default=str))
        os.makedirs(os.path.join(path, PENDING), exist_ok=True)
        manifest = read_manifest(path)
        for what, old in (("the finished shards", manifest), ("the unfinished records of an earlier run",
                                                               self._pending_metadata())):
            if old is None:
                continue
            for key in ("level", "kinds", "settings"):
                if old.get(key) != metadata[key]:
                    raise DatasetError(f"{path}: {what} were made with other {key} ({old.get(key)}, now "
                                       f"{metadata[key]}); write to a new directory or use the same options")
        _atomic_json(os.path.join(path, PENDING, "settings.json"), metadata)
        self.manifest = manifest or {"schema_version": SCHEMA_VERSION, **metadata, "fields": {}, "shards": [],
                                     "records": 0, "failed": {}, "molecules": []}
        self.manifest["versions"] = metadata.get("versions")
        listed = {s["file"] for s in self.manifest["shards"]}
        for name in os.listdir(path):  # an interrupted flush: its records are still pending
            if name.startswith("shard-") and name not in listed:
                os.remove(os.path.join(path, name))

    def _pending_metadata(self) -> dict | None:
        name = os.path.join(self.path, PENDING, "settings.json")
        if not pending_records(self.path) or not os.path.exists(name):
            return None
        with open(name) as f:
            return json.load(f)

    def done_ids(self) -> set[str]:
        """Ids of every good record already made, in shards or pending (failed ones are tried again)."""
        done = {rid for rid, name in pending_records(self.path).items() if "reason" not in _pending_attrs(name)}
        for shard in self.manifest["shards"]:
            with h5py.File(os.path.join(self.path, shard["file"]), "r") as f:
                done |= set(f["records"])
        return done

    def add(self, record: Record) -> None:
        """Saves a finished record; writes a shard when ``shard_size`` good records are pending."""
        save_pending(self.path, record)
        if len(pending_records(self.path)) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Moves every pending record into a new shard (failures into the manifest)."""
        pending = pending_records(self.path)
        if not pending:
            return
        records = [load_pending(name) for name in pending.values()]
        good = [r for r in records if "reason" not in r["attrs"]]
        manifest = self.manifest
        if good:
            name = f"shard-{len(manifest['shards']):05d}.h5"
            tmp = os.path.join(self.path, name + ".tmp")
            with h5py.File(tmp, "w") as f:
                group = f.create_group("records")
                for record in good:
                    _write_record(group, record)
            os.replace(tmp, os.path.join(self.path, name))
            manifest["shards"].append({"file": name, "records": len(good)})
            manifest["fields"] = manifest["fields"] or _field_shapes(good[0]["arrays"])
            manifest["records"] += len(good)
            manifest["molecules"] = sorted(set(manifest["molecules"]) | {_molecule_key(r["attrs"]) for r in good})
        manifest["failed"].update({r["id"]: r["attrs"]["reason"] for r in records if "reason" in r["attrs"]})
        for record in good:  # a failure of an earlier run that succeeded now
            manifest["failed"].pop(record["id"], None)
        _atomic_json(os.path.join(self.path, MANIFEST), manifest)
        for name in pending.values():
            os.remove(name)


def _write_record(group: h5py.Group, record: Record) -> None:
    g = group.create_group(record["id"])
    for key, value in record["attrs"].items():
        g.attrs[key] = value
    for path, array in record["arrays"].items():
        g.create_dataset(path, data=array, compression="gzip" if np.size(array) > 4096 else None)


class Dataset:
    """Read access to a dataset directory: metadata, record ids, any record at random.

    Shard files are opened once and kept open (read-only) for random access.

    Example:
      >>> ds = Dataset("data")                                  # doctest: +SKIP
      >>> rho = ds.read(ds.ids[0], ["grid/rho"])["grid/rho"]   # doctest: +SKIP  [nx, ny, nz]
    """

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise DatasetError(f"no dataset {path}")
        manifest = read_manifest(path)
        if manifest is None:
            raise DatasetError(f"{path} holds no finished shard (no {MANIFEST}); run or resume "
                               "`dft-operators generate` into it")
        self.path = path
        self.metadata = {k: v for k, v in manifest.items() if k not in ("schema_version", "shards", "failed")}
        self.shards = [s["file"] for s in manifest["shards"]]
        self.failed = dict(manifest["failed"])
        self._files: dict[int, h5py.File] = {}
        self._where: dict[str, int] = {}
        for k in range(len(self.shards)):
            try:
                names = list(self._file(k)["records"])
            except (OSError, KeyError) as err:
                raise DatasetError(f"{path}: shard {self.shards[k]} is unreadable ({err}); "
                                   "regenerate the dataset") from None
            self._where.update(dict.fromkeys(names, k))
        self.ids = sorted(self._where)

    def _file(self, shard: int) -> h5py.File:
        if shard not in self._files:  # the constructor opened every shard once: a failure here is not new
            self._files[shard] = h5py.File(os.path.join(self.path, self.shards[shard]), "r")
        return self._files[shard]

    def _group(self, rid: str) -> h5py.Group:
        if rid not in self._where:
            raise DatasetError(f"{self.path}: no record {rid!r}")
        shard = self._where[rid]
        try:
            return self._file(shard)["records"][rid]
        except (KeyError, OSError) as err:  # listed in the manifest, not readable in its shard
            raise DatasetError(f"{os.path.join(self.path, self.shards[shard])}: record {rid} is missing or damaged "
                               f"({err}); restore that shard from a copy, or generate the dataset again into a new "
                               "directory") from None

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self):  # open HDF5 handles do not pickle; reopen lazily
        return {**self.__dict__, "_files": {}}

    def read(self, rid: str, fields: list[str]) -> dict[str, np.ndarray]:
        """Some arrays of one record, {field: ndarray}."""
        g = self._group(rid)
        try:
            return {name: g[name][()] for name in fields}
        except KeyError as err:
            raise DatasetError(f"{self.path}: field missing in record {rid} ({err}); generate with the kind "
                               f"that makes it (kinds here: {self.metadata.get('kinds')})") from None
        except OSError as err:  # a damaged chunk
            raise DatasetError(f"{g.file.filename}: record {rid} cannot be read ({err}); restore that shard from a "
                               "copy, or generate the dataset again into a new directory") from None

    def record(self, rid: str) -> dict:
        """All arrays ({"grid/rho": ...}) and attributes of one record."""
        g = self._group(rid)
        out = dict(g.attrs)
        g.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out

    def stack(self, field: str, ids: list[str] | None = None) -> np.ndarray:
        """One field of many records stacked on a new leading axis (fields must share a shape)."""
        ids = self.ids if ids is None else ids
        return np.stack([self.read(rid, [field])[field] for rid in ids])

    def attribute(self, name: str, ids: list[str] | None = None) -> np.ndarray:
        """One scalar attribute (energy, cycles, smiles, ...) of many records, [n_records]."""
        ids = self.ids if ids is None else ids
        try:
            return np.array([self._group(rid).attrs[name] for rid in ids])
        except KeyError:
            raise DatasetError(f"{self.path}: records have no attribute {name!r}") from None

    def elements(self, ids: list[str] | None = None) -> list[int]:
        """The atomic numbers present in the records (all, or ``ids``), ascending."""
        ids = self.ids if ids is None else ids
        return sorted({int(z) for rid in ids for z in self.read(rid, ["numbers"])["numbers"]})

    def molecule_keys(self, ids: list[str] | None = None) -> list[str]:
        """What identifies each record's molecule (canonical SMILES, else its name), [n_records]."""
        ids = self.ids if ids is None else ids
        return [_molecule_key(dict(self._group(rid).attrs)) for rid in ids]

    def fingerprint(self) -> str:
        """A short hash of the metadata and record ids, saved with models trained on this dataset."""
        meta = {k: v for k, v in self.metadata.items() if k != "versions"}
        text = json.dumps([meta, self.ids], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def summary(self) -> dict:
        """What the dataset holds: records, failed, molecules, level, kinds, field shapes, shards."""
        return {"path": self.path, "records": len(self), "failed": len(self.failed),
                "molecules": len(self.metadata.get("molecules", [])), "level": self.metadata.get("level"),
                "kinds": self.metadata.get("kinds"), "shapes": {k: v["shape"] for k, v in
                                                               self.metadata.get("fields", {}).items()},
                "shards": len(self.shards), "settings": self.metadata.get("settings")}


def merge(sources: list[str], out: str) -> Dataset:
    """Concatenates finished datasets of one level and kinds into a new dataset ``out`` (say, displaced and
    torsion-sampled geometries of one molecule); record ``<i>-<id>`` is record ``<id>`` of ``sources[i]``.

    The merged settings keep what all sources share and list each source's settings and fingerprint under
    "merged". Merging the same sources into ``out`` again returns it as it is (a rerun resumes).
    Raises:
      DatasetError: a source is missing or unfinished, the levels or kinds differ, or ``out`` holds another
        dataset.
    """
    if not sources:
        raise DatasetError("merge needs at least one source dataset")
    for path in sources:
        if pending_records(path):
            raise DatasetError(f"{path} has unfinished records (pending/); finish its `generate` run first")
    datasets = [Dataset(s) for s in sources]
    first = datasets[0].metadata
    for path, ds in zip(sources[1:], datasets[1:]):
        for key in ("level", "kinds"):
            if ds.metadata.get(key) != first.get(key):
                raise DatasetError(f"{path} was made with other {key} ({ds.metadata.get(key)}) than {sources[0]} "
                                   f"({first.get(key)}); only datasets of one level and kinds merge")
    shared = {k: v for k, v in first["settings"].items()
              if all(ds.metadata["settings"].get(k) == v for ds in datasets)}
    settings = {**shared, "merged": [{"settings": ds.metadata["settings"], "seed": ds.metadata.get("seed"),
                                      "fingerprint": ds.fingerprint()} for ds in datasets]}
    settings = json.loads(json.dumps(settings, default=str))
    if os.path.exists(out):
        manifest = read_manifest(out)
        if manifest is None and os.listdir(out):
            raise DatasetError(f"{out} is not empty and holds no dataset; merge into a new directory")
        if manifest is not None:
            if manifest.get("settings") != settings:
                raise DatasetError(f"{out} already holds another dataset; merge into a new directory")
            return Dataset(out)
        os.rmdir(out)
    tmp = out.rstrip(os.sep) + ".merging"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    shards, failed = [], {}
    for i, ds in enumerate(datasets):
        failed.update({f"{i}-{rid}": reason for rid, reason in ds.failed.items()})
        for shard in ds.shards:
            name = f"shard-{len(shards):05d}.h5"
            with h5py.File(os.path.join(ds.path, shard), "r") as src, h5py.File(os.path.join(tmp, name), "w") as dst:
                group = dst.create_group("records")
                for rid in src["records"]:
                    src.copy(src["records"][rid], group, name=f"{i}-{rid}")
                shards.append({"file": name, "records": len(group)})
    manifest = {"schema_version": SCHEMA_VERSION, "level": first["level"], "kinds": first["kinds"],
                "settings": settings, "versions": first.get("versions"), "fields": first.get("fields", {}),
                "shards": shards, "records": sum(s["records"] for s in shards), "failed": failed,
                "molecules": sorted({m for ds in datasets for m in ds.metadata.get("molecules", [])})}
    _atomic_json(os.path.join(tmp, MANIFEST), manifest)
    os.replace(tmp, out)
    return Dataset(out)
