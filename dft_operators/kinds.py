"""The model kinds: the one registry that ties each kind's model (config, builder) to its workflow.

A new kind is a model module under ``dft_operators.models`` (a frozen config dataclass with a ``tiny``
preset, and a builder from config to Flax module), a workflow module under ``dft_operators.workflows``
implementing :class:`dft_operators.workflows.Workflow`, and one line in ``KINDS`` (which may name an
existing card check of ``dft_operators.model_checks``, or a new one there). Modules are imported
when first used, so that a grid model's start-up never loads e3nn-jax.
"""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class Kind:
    """Where a model kind's parts live (names of modules and of attributes in them)."""

    model: str  # module under dft_operators.models
    config: str  # its config dataclass
    builder: str  # its function config -> Flax module
    workflow: str  # module under dft_operators.workflows (a ``Workflow``)
    task: str  # its task dataclass, "module.Class" under dft_operators.workflows
    check: str  # the function of ``dft_operators.model_checks`` that recomputes its card metrics

    def attribute(self, package: str, module: str, name: str):
        """``dft_operators.<package>.<module>.<name>``, the module imported when first asked for."""
        return getattr(importlib.import_module(f"dft_operators.{package}.{module}"), name)

    def workflow_module(self):
        """The workflow module (a ``workflows.Workflow``)."""
        return importlib.import_module(f"dft_operators.workflows.{self.workflow}")

    def task_type(self) -> type:
        """The task dataclass (what a training config's "task" section fills in)."""
        module, name = self.task.rsplit(".", 1)
        return self.attribute("workflows", module, name)


KINDS = {
    "fno": Kind("fno", "FNOConfig", "create_fno", "grid_density", "grid_inputs.GridTask", "grid_nmae"),
    "deepscf": Kind("deepscf", "DeepSCFConfig", "create_deepscf", "grid_density", "grid_inputs.DeepSCFTask",
                    "grid_nmae"),
    "kineticnet": Kind("kineticnet", "KineticNetConfig", "create_kineticnet", "kinetic", "kinetic.KineticTask",
                       "kinetic_errors"),
    "densnet": Kind("densnet", "DenSNetConfig", "create_densnet", "densnet", "densnet.DensityTask", "densnet_errors"),
}


def kind(name: str) -> Kind:
    """The registry entry of a model kind (ValueError naming the known kinds for another)."""
    if name not in KINDS:
        raise ValueError(f"unknown model kind {name!r}; available: {', '.join(KINDS)}")
    return KINDS[name]
