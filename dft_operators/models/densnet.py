"""DenSNet: equivariant density coefficients from the nuclei, and the total energy from that density.

After "DenSNet" (density-first machine-learned electronic structure). Two E(3)-equivariant networks on the
atoms of a molecule (``nn.graph.AtomGraph``, e3nn-jax):

    1. density   species, positions  ->  c_a = c0_Z(a) + sigma_Z(a) Delta c_a, the coefficients of atom a in an
                 atom-centred Gaussian density basis (``DensityBasis``), as irreps 0e + 1o + 2e + 3o + 4e:
                 coefficients of l > 0 rotate with their Wigner matrices. c0 is the free spherical atom
                 (the superposition of atomic densities), so the network learns the bonding deformation,
                 in units of its typical size sigma per element and irrep copy (from the training set); the
                 last layer starts at zero, so an untrained model is the atomic superposition.
                 The electron count is then enforced exactly: the smallest change of the coefficients
                 (in the Euclidean norm) that makes sum_a q_a . c_a = N is added,

                     c_a <- c_a + q_a (N - sum_b q_b . c_b) / sum_b |q_b|^2,   q_a = int chi dr (s only),

                 which touches only invariant (s) coefficients, so it keeps the equivariance.
    2. energy    (species, positions, (c_a - c0) / sigma)  ->  E = sum_a (e_Z(a) + s eps_a): the density
                 enters as per-atom irreps features, message passing mixes them with the geometry, and an
                 MLP of the invariants gives per-atom energies around per-element baselines e_Z.

Forces are -dE/dR through both networks (``jax.grad``), the dipole moment is analytic in the
coefficients (``dipole``), and everything is a pure function of (params, positions): jit, vmap, grad and
scan it (``md.integrators``).
"""

from __future__ import annotations

import dataclasses
import functools

import e3nn_jax as e3nn
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend.core import Var

from dft_operators.nn.equivariant import AtomInteraction, NeighbourTensorReadout, RadialSpec, irreps_up_to
from dft_operators.nn.graph import AtomGraph


@dataclasses.dataclass(frozen=True)
class DenSNetConfig:
    """Hyperparameters of DenSNet (saved beside its weights)."""

    basis_irreps: str = "10x0e + 8x1o + 5x2e + 2x3o + 1x4e"  # per-atom coefficient slots (def2-universal-jkfit, H-F)
    channels: int = 32  # multiplicity of each irrep l = 0 .. lmax of the atom features
    lmax: int = 2  # highest angular momentum of atom features
    density_interactions: int = 3  # message-passing layers of the density network
    energy_interactions: int = 3  # message-passing layers of the energy network
    readout_channels: int = 8  # channels entering the neighbour tensor product of the coefficient readout
    n_radial: int = 12  # radial basis functions per filter
    radial_hidden: int = 32  # hidden width of every radial filter MLP
    energy_hidden: int = 64  # hidden width of the per-atom energy MLP (two hidden layers)
    cutoff: float = 9.0  # Bohr: atoms farther apart than this do not interact directly
    bond_radius: float = 1.0  # Bohr: r0 of the logarithmic radial basis
    max_atomic_number: int = 10  # species embedded (atomic numbers 1 .. this)

    @staticmethod
    def tiny() -> "DenSNetConfig":
        """Seconds on a CPU, for smoke tests."""
        return DenSNetConfig(channels=4, lmax=1, density_interactions=1, energy_interactions=1, readout_channels=2,
                             n_radial=4, radial_hidden=8, energy_hidden=8)


@flax.struct.dataclass
class DensityBasis:
    """Per-element tables of the density basis in the model's layout (``workflows.density_tables`` makes them).

    Row Z of every table belongs to atomic number Z (row 0: padding atoms, all zero); D = basis_irreps.dim.

    Attributes:
      atomic: [n_Z, D] coefficients of the free spherical atom (its electrons exactly).
      charges: [n_Z, D] int chi dr of each slot (nonzero for s functions).
      moments: [n_Z, D, 3] int (r - R) chi dr (nonzero for p functions), Bohr.
      mask: [n_Z, D] 1 where the element has a function in that slot.
      scale: [n_Z, D] typical size of c - c0 per slot (normalises the energy network's input).
    """

    atomic: jax.Array
    charges: jax.Array
    moments: jax.Array
    mask: jax.Array
    scale: jax.Array


@flax.struct.dataclass
class EnergyBaseline:
    """E = sum_a (atom_energies[Z_a] + scale * eps_a): per-element energies [n_Z] and the scale, Hartree."""

    atom_energies: jax.Array
    scale: jax.Array


def conserve_charge(coefficients, charges, n_electrons):
    """Adds the smallest change that makes sum q . c = n_electrons (module docstring), [n_atoms, D]."""
    missing = n_electrons - jnp.sum(charges * coefficients)
    return coefficients + charges * missing / jnp.sum(charges**2)


def dipole(coefficients, graph: AtomGraph, basis: DensityBasis):
    """Dipole moment of nuclei plus the expanded electron density, e*Bohr [3] about the origin.

    mu = sum_a Z_a R_a - sum_a (R_a (q_a . c_a) + m_a^T c_a), with q, m the charges and moments of the slots.
    Args:
      coefficients: [n_atoms, D]; graph: positions in Bohr and species (0 = padding, contributes nothing).
    """
    electrons = (jnp.sum(basis.charges[graph.species] * coefficients, axis=-1)[:, None] * graph.atom_positions
                 + jnp.einsum("ad,adx->ax", coefficients, basis.moments[graph.species]))
    nuclei = graph.species[:, None].astype(coefficients.dtype) * graph.atom_positions
    real = (graph.species > 0)[:, None]
    return jnp.sum(jnp.where(real, nuclei - electrons, 0.0), axis=0)


def _species_features(species, channels: int, max_atomic_number: int, dtype, name: str) -> e3nn.IrrepsArray:
    embedding = nn.Embed(max_atomic_number + 1, channels, name=name)(species)
    return e3nn.IrrepsArray(f"{channels}x0e", embedding.astype(dtype))


class DenSNet(nn.Module):
    """Coefficients and energy of a molecule (module docstring); build it with ``create_densnet``."""

    basis_irreps: str
    channels: int
    lmax: int
    density_interactions: int
    energy_interactions: int
    readout_channels: int
    n_radial: int
    radial_hidden: int
    energy_hidden: int
    cutoff: float
    bond_radius: float
    max_atomic_number: int

    @property
    def _radial(self) -> RadialSpec:
        return RadialSpec(self.radial_hidden, self.n_radial, self.cutoff, self.bond_radius)

    def _message_passing(self, graph, h, n: int, prefix: str):
        for t in range(n):
            h = AtomInteraction(self.lmax, self._radial, name=f"{prefix}_{t}")(graph, h)
        return h

    @nn.compact
    def __call__(self, graph: AtomGraph, basis: DensityBasis, baseline: EnergyBaseline, n_electrons):
        """(coefficients [n_atoms, D], energy in Hartree) of one molecule.

        Args:
          graph: atoms (Bohr) and species; basis, baseline: the tables of the trained model;
          n_electrons: electrons the density must hold (scalar).
        """
        irreps, out = irreps_up_to(self.channels, self.lmax), e3nn.Irreps(self.basis_irreps)
        dtype = graph.atom_positions.dtype
        real = (graph.species > 0).astype(dtype)[:, None]  # [n_atoms, 1]
        # 1. density
        h = e3nn.flax.Linear(irreps, force_irreps_out=True, name="density_embed")(
            _species_features(graph.species, self.channels, self.max_atomic_number, dtype, "density_species"))
        h = self._message_passing(graph, h, self.density_interactions, "density")
        around = NeighbourTensorReadout(self.basis_irreps, self.readout_channels, self._radial,
                                        name="neighbour_readout")(graph, h)
        delta = e3nn.flax.Linear(out, num_indexed_weights=self.max_atomic_number + 1, force_irreps_out=True,
                                 parameter_initializer=lambda: nn.initializers.zeros, name="coefficient_readout")(
            graph.species, e3nn.concatenate([h, around]).regroup())  # [n_atoms, D], in units of basis.scale
        mask = basis.mask[graph.species] * real
        atomic = basis.atomic[graph.species]
        coefficients = conserve_charge((atomic + basis.scale[graph.species] * delta.array) * mask,
                                       basis.charges[graph.species], n_electrons)  # [n_atoms, D]
        # 2. energy from the density
        scaled = (coefficients - atomic) / basis.scale[graph.species] * mask
        h = e3nn.flax.Linear(irreps, num_indexed_weights=self.max_atomic_number + 1, force_irreps_out=True,
                             name="energy_embed")(graph.species, e3nn.IrrepsArray(out, scaled))
        h = h + e3nn.flax.Linear(irreps, force_irreps_out=True, name="energy_species_embed")(
            _species_features(graph.species, self.channels, self.max_atomic_number, dtype, "energy_species"))
        h = self._message_passing(graph, h, self.energy_interactions, "energy")
        x = h.filter(keep="0e").array
        for k in range(2):
            x = nn.silu(nn.Dense(self.energy_hidden, name=f"energy_mlp_{k}")(x))
        eps = nn.Dense(1, kernel_init=nn.initializers.zeros, name="energy_out")(x)[:, 0]  # [n_atoms]
        energy = jnp.sum(real[:, 0] * (baseline.atom_energies[graph.species] + baseline.scale * eps))
        return coefficients, energy


def create_densnet(config: DenSNetConfig) -> DenSNet:
    """The DenSNet module for a config (the only place that reads ``DenSNetConfig``)."""
    return DenSNet(**dataclasses.asdict(config))


def predict_all(module: DenSNet, params, graph: AtomGraph, basis: DensityBasis, baseline: EnergyBaseline,
                n_electrons) -> dict[str, jax.Array]:
    """Everything DenSNet gives for one molecule, as a pure function (jit and vmap it).

    Returns:
      "coefficients" [n_atoms, D]; "energy" Hartree; "forces" -dE/dR [n_atoms, 3] Hartree/Bohr through both
      networks; "dipole" [3] e*Bohr.
    """

    def energy_of(positions):
        c, e = module.apply(params, graph.replace(atom_positions=positions), basis, baseline, n_electrons)
        return e, c

    (energy, coefficients), gradient = jax.value_and_grad(energy_of, has_aux=True)(graph.atom_positions)
    return {"coefficients": coefficients, "energy": energy, "forces": -gradient,
            "dipole": dipole(coefficients, graph, basis)}


def density_parameters(module: DenSNet, params, graph: AtomGraph, basis: DensityBasis, baseline: EnergyBaseline,
                       n_electrons):
    """The partition of the weights into the two networks: a tree like ``params``, True at the density network's.

    The density network is every weight the coefficients depend on, read from the computation rather than from
    names: a walk back from the coefficients over the jaxpr of ``module.apply`` marks every input some operation
    on their path reads (a nested call counts as reading all its inputs).
    """
    jaxpr = jax.make_jaxpr(lambda p: module.apply(p, graph, basis, baseline, n_electrons)[0])(params).jaxpr
    needed = {v for v in jaxpr.outvars if isinstance(v, Var)}
    for eqn in reversed(jaxpr.eqns):
        if any(v in needed for v in eqn.outvars):
            needed.update(v for v in eqn.invars if isinstance(v, Var))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), [v in needed for v in jaxpr.invars])


def potential(module: DenSNet, params, graph: AtomGraph, basis: DensityBasis, baseline: EnergyBaseline,
              n_electrons) -> jax.tree_util.Partial:
    """positions [n_atoms, 3] Bohr -> (energy Hartree, dipole [3] e*Bohr), for ``md.integrators`` (padding atoms
    are not allowed: build the graph unpadded)."""
    return jax.tree_util.Partial(functools.partial(_energy_and_dipole, module), params, graph, basis, baseline,
                                 n_electrons)


def _energy_and_dipole(module, params, graph, basis, baseline, n_electrons, positions):
    moved = graph.replace(atom_positions=positions)
    c, e = module.apply(params, moved, basis, baseline, n_electrons)
    return e, dipole(c, moved, basis)
